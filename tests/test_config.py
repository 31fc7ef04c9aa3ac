"""Configs validate themselves when built: every entry point (Python, notebook, CLI) gets the same named error."""

import dataclasses
import math

import pytest

from gigassl import cli
from gigassl.config import (PROFILES, AugmentConfig, BankConfig, DeepMILConfig, EmbedConfig, EncoderConfig, MapConfig,
                            MocoConfig, ProbeConfig, SynthConfig, TileConfig, TrainConfig)
from gigassl.errors import ConfigError


def test_every_profile_is_valid():
    for profile in PROFILES.values():
        for f in dataclasses.fields(profile):
            value = getattr(profile, f.name)
            if dataclasses.is_dataclass(value):
                dataclasses.replace(value)  # validates again


@pytest.mark.parametrize("config, field, value", [
    (TrainConfig, "epochs", 0), (TrainConfig, "tiles_per_view", 0), (TrainConfig, "batch_size", 0),
    (TrainConfig, "checkpoint_every", 0), (TrainConfig, "aggregator", "transformer"), (TrainConfig, "base_lr", math.nan),
    (TrainConfig, "steps", 0), (BankConfig, "tiles", 0), (EncoderConfig, "batch_size", 0),
    (EncoderConfig, "precision", "fp16"), (ProbeConfig, "n_splits", 0), (ProbeConfig, "test_fraction", 1.0),
    (ProbeConfig, "preprocessings", ("minmax",)), (TileConfig, "mpp", math.nan), (TileConfig, "min_tissue", 1.5),
    (TileConfig, "tile_px", 0), (MocoConfig, "batch_size", 1), (MocoConfig, "temperature", 0.0),
    (EmbedConfig, "views", 0), (MapConfig, "scale", (2.0, 0.5)), (AugmentConfig, "p_blur", 1.2),
    (AugmentConfig, "mode", "shuffled"), (DeepMILConfig, "patience", 0), (SynthConfig, "n_slides", 0),
    (TrainConfig, "epochs", True),  # a bool is not a number of epochs
])
def test_a_bad_value_names_the_field_the_value_and_the_option(config, field, value):
    with pytest.raises(ConfigError) as err:
        config(**{field: value})
    text = str(err.value)
    assert f"{config.__name__}.{field}={value!r} is not allowed: it must be" in text
    assert f"--{field.replace('_', '-')}" in text


@pytest.mark.parametrize("argv, option", [
    (["train", "--bank", "b", "--out", "o", "--epochs", "0"], "TrainConfig.epochs=0"),
    (["train", "--bank", "b", "--out", "o", "--tiles-per-view", "0"], "TrainConfig.tiles_per_view=0"),
    (["tile", "--manifest", "m.csv", "--out", "o", "--min-tissue", "1.5"], "TileConfig.min_tissue=1.5"),
    (["tile", "--manifest", "m.csv", "--out", "o", "--mpp", "nan"], "TileConfig.mpp=nan"),
    (["bank", "--manifest", "m.csv", "--coords", "c", "--out", "o", "--batch-size", "0"], "EncoderConfig.batch_size=0"),
])
def test_the_cli_refuses_bad_options_before_any_work(tmp_path, capsys, monkeypatch, argv, option):
    """A value a config refuses is a usage error (exit 2) that names the option it came from."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    flag = next(a for a in argv if a.startswith("--") and a not in ("--bank", "--out", "--manifest", "--coords"))
    assert f"argument {flag}" in err
    assert option in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()  # nothing written


# ------------------------------------------------------------------------------------- override: one way to change
def test_override_keeps_the_value_of_a_change_given_as_none_and_replaces_the_others():
    from gigassl.config import get_profile, override

    train = get_profile("demo").train
    assert override(train) == train
    assert override(train, bn_views=None, steps=None, aggregator=None, slide_aug=None) == train
    assert override(train, bn_views="joint", steps=None, epochs=3) == dataclasses.replace(train, bn_views="joint",
                                                                                        epochs=3)
    # a nested config's field by its own name, as on the command line (--no-slide-aug), with the outer ones
    maps = dataclasses.replace(train.maps, slide_aug=False, scale=(0.7, 1.3))
    assert override(train, slide_aug=False, scale=(0.7, 1.3), aggregator="mean") == dataclasses.replace(
        train, maps=maps, aggregator="mean")
    # a whole nested config, then one of its fields over it
    other = MapConfig(downsample=448)
    assert override(train, maps=other, slide_aug=False) == dataclasses.replace(
        train, maps=dataclasses.replace(other, slide_aug=False))
    assert override(train, slide_aug=False).maps.downsample == "tile"  # the demo's other map fields kept


def test_override_refuses_an_unknown_name_even_as_none_and_lists_the_allowed_ones():
    from gigassl.config import get_profile, override

    train = get_profile("demo").train
    for change in ({"bn_view": "joint"}, {"bn_view": None}):
        with pytest.raises(ConfigError) as err:
            override(train, **change)
        text = str(err.value)
        assert "TrainConfig field name='bn_view' is not allowed" in text
        assert "'bn_views'" in text and "'slide_aug'" in text and "'epochs'" in text  # own and nested fields
        assert "Check the spelling" in text
    with pytest.raises(ConfigError, match=r"TrainConfig.bn_views='both' is not allowed"):
        override(train, bn_views="both")  # a value is checked as the config checks itself
    with pytest.raises(ConfigError, match=r"MapConfig.scale=\(2.0, 0.5\) is not allowed"):
        override(train, scale=(2.0, 0.5))
    # a name two nested configs share is reached through its own config only (Profile: train's and embed's T)
    profile = get_profile("smoke")
    with pytest.raises(ConfigError, match="'tiles_per_view'"):
        override(profile, tiles_per_view=3)
    assert override(profile, train=override(profile.train, tiles_per_view=3)).train.tiles_per_view == 3
    assert override(profile, mode="independent").augment.mode == "independent"  # a name only one of them has
