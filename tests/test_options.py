"""The command line generated from the configs (gigassl.options): help for every field, --config files and their
round trip with --print-config, the order of the layers, usage errors, the profile defaults, and the same values
reaching the stage functions as the hand-written command line gave."""

import dataclasses
import typing

import pytest
import yaml

from gigassl import cli, options
from gigassl.config import PROFILES, MapConfig, Profile, get_profile, override

CONFIG_CLASSES = [typing.get_type_hints(Profile)[s] for s in options.SECTIONS] + [MapConfig, Profile]
REAL_DATA = ("tile", "pretrain-tiles", "bank", "train", "embed", "probe", "evaluate")


def _subparser(command):
    sub = next(a for a in cli.build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    return sub.choices[command]


@pytest.mark.parametrize("cls", CONFIG_CLASSES, ids=lambda c: c.__name__)
def test_every_config_field_has_help_in_its_attributes_section(cls):
    helps = options.field_help(cls)
    missing = [f.name for f in dataclasses.fields(cls) if len(helps.get(f.name, "")) < 3]
    assert not missing, f"{cls.__name__}: no Attributes entry for {missing}"
    assert set(helps) == {f.name for f in dataclasses.fields(cls)}  # and no entry for a field that is not there


def test_help_keeps_the_calibration_notes():
    assert "Calibrated once on AverageMIL alone (2026-11-26)" in options.field_help(PROFILES["demo"].synth.__class__)[
        "task_effects"]
    assert "0.0226" in options.field_help(type(PROFILES["demo"].train))["schedule_epochs"]


@pytest.mark.parametrize("command", sorted(cli.STAGES))
def test_every_field_of_a_commands_configs_is_an_option_with_help_and_default(command):
    parser = _subparser(command)
    text = parser.format_help()
    generated = parser.get_default("options")
    spec = cli.STAGES[command]
    for section in spec.sections:
        cls = typing.get_type_hints(Profile)[section.name]
        paths = [p for p, _, _ in options._fields(cls) if section.only is None or p[0] in section.only]
        assert {(section.name, p) for p in paths} <= {(o.section, o.path) for o in generated}
    actions = {a.dest: a for a in parser._actions}
    for option in generated:
        action = actions[option.dest]
        assert option.flags[0] in text and "(default: " in action.help and len(action.help) > 20, option
    assert "%%" not in text


def test_the_default_shows_every_profile_with_the_commands_first():
    action = next(a for a in _subparser("train")._actions if "--epochs" in a.option_strings)
    assert "(default: paper 1000 | smoke 3 | demo 60)" in action.help
    action = next(a for a in _subparser("synth")._actions if "--n-slides" in a.option_strings)
    assert "default: demo 120 | smoke 8 | paper 120" in action.help and "--slides" in action.option_strings


def test_the_old_option_names_still_work():
    parser = cli.build_parser()
    args = parser.parse_args(["train", "--bank", "b", "--out", "o", "--no-slide-aug", "--scale", "0.7", "1.3",
                              "--encoder-weights", "w.pt", "--monitor-every", "2", "--resume", "--slides", "s.csv"])
    config = args.stage.resolve(args, args.options)
    assert config.train.maps.slide_aug is False and config.train.maps.scale == (0.7, 1.3)
    assert config.train.monitor_every == 2 and args.resume and args.encoder_weights == "w.pt"
    args = parser.parse_args(["bank", "--manifest", "m", "--coords", "c", "--out", "o", "--augmentations", "0",
                              "--tiles", "4", "--encoder", "efficientnet_lite0", "--weights", "w", "--shard", "0/2"])
    config = args.stage.resolve(args, args.options)
    assert (config.bank.augmentations, config.bank.tiles, config.encoder.name) == (0, 4, "efficientnet_lite0")
    args = parser.parse_args(["synth", "--out", "o", "--slides", "10"])
    assert args.stage.resolve(args, args.options).synth.n_slides == 10


@pytest.mark.parametrize("command", REAL_DATA)
def test_real_data_commands_default_to_the_paper_profile(command):
    assert _subparser(command).get_default("profile") == "paper"


@pytest.mark.parametrize("command", ["synth", "run"])
def test_the_synthetic_cohort_and_the_book_default_to_demo(command):
    assert _subparser(command).get_default("profile") == "demo"


def _print_config(argv, capsys) -> str:
    assert cli.main([*argv, "--print-config"]) == 0
    return capsys.readouterr().out


def _resolved(argv) -> Profile:
    args = cli.build_parser(require_inputs=False).parse_args(argv)
    budget = cli._budget_options(args) if args.command == "probe" else {}
    return args.stage.resolve(args, args.options, budget)


def _sections(profile):
    return {s: getattr(profile, s) for s in options.SECTIONS}


@pytest.mark.parametrize("argv", [
    ["train", "--profile", "smoke", "--epochs", "7", "--scale", "0.7", "1.3", "--no-slide-aug", "--steps", "none"],
    ["bank", "--profile", "demo", "--encoder", "mypkg.enc:build", "--crop-scale", "0.3", "0.9", "--no-flips"],
    ["probe", "--train-size", "12", "--deepmil-max-tiles", "none", "--Cs", "0.1", "1"],
    ["tile", "--mpp", "0.25", "--force-mpp"],
    ["synth", "--task-effects", "1", "2", "3"],
])
def test_print_config_round_trips_through_a_config_file(argv, tmp_path, capsys):
    text = _print_config(argv, capsys)
    assert text.startswith("# gigassl ")
    assert set(yaml.safe_load(text)) == set(options.SECTIONS)
    path = tmp_path / "run.yaml"
    path.write_text(text)
    expected = _sections(_resolved(argv))
    for profile in PROFILES:  # every field is in the file: the profile under it does not matter
        assert _sections(_resolved([argv[0], "--config", str(path), "--profile", profile])) == expected
    assert _print_config([argv[0], "--config", str(path)], capsys).split("\n", 1)[1] == text.split("\n", 1)[1]


def test_the_command_line_overrides_the_file_which_overrides_the_profile(tmp_path):
    path = tmp_path / "part.yaml"
    path.write_text("train:\n  epochs: 5\n  base_lr: 1e-3\n  maps:\n    scale: [0.8, 1.2]\nembed:\n  views: 7\n")
    config = _resolved(["train", "--profile", "demo", "--config", str(path)])
    assert (config.train.epochs, config.train.base_lr, config.train.maps.scale) == (5, 0.001, (0.8, 1.2))
    assert config.embed.views == 7 and config.train.batch_size == 32  # the rest: the demo profile's
    config = _resolved(["train", "--profile", "demo", "--config", str(path), "--epochs", "9"])
    assert config.train.epochs == 9 and config.train.base_lr == 0.001


@pytest.mark.parametrize("text, named", [
    ("train:\n  epoch: 5\n", ["'train.epoch'", "epochs, steps", "part.yaml"]),
    ("trian:\n  epochs: 5\n", ["'trian'", "synth, tile", "part.yaml"]),
    ("train:\n  maps:\n    scales: [1, 2]\n", ["'train.maps.scales'", "downsample, slide_aug", "part.yaml"]),
    ("- 1\n- 2\n", ["mapping of sections", "part.yaml"]),
    ("train: [1\n", ["not valid YAML", "part.yaml"]),
    ("train:\n  epochs: 0\n", ["key train.epochs", "TrainConfig.epochs=0 is not allowed", "part.yaml"]),
])
def test_a_bad_config_file_is_a_usage_error_naming_the_key_and_the_file(text, named, tmp_path, capsys):
    path = tmp_path / "part.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--bank", "b", "--out", str(tmp_path / "o"), "--config", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert all(n in err for n in named), err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("argv, named", [
    (["train", "--aggregator", "transformer"], "argument --aggregator: TrainConfig.aggregator='transformer'"),
    (["train", "--downsample", "big"], "argument --downsample: MapConfig.downsample='big'"),
    (["probe", "--deepmil-n-splits", "0"], "argument --deepmil-n-splits: DeepMILConfig.n_splits=0"),
    (["bank", "--encoder-seed", "-1"], "argument --encoder-seed: EncoderConfig.seed=-1"),
    (["train", "--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
])
def test_a_refused_option_value_exits_2_naming_the_option(argv, named, tmp_path, capsys):
    inputs = {"train": ["--bank", "b", "--out", "o"], "probe": [], "bank": ["--manifest", "m", "--coords", "c",
                                                                           "--out", "o"]}[argv[0]]
    with pytest.raises(SystemExit) as exit_:
        cli.main([argv[0], *inputs, *argv[1:]])
    assert exit_.value.code == 2
    assert named in capsys.readouterr().err


# ---------------------------------------------------------------------------- the same values as before
class Called(Exception):
    """Raised by a stand-in stage function once it has recorded what it was given."""


def _capture(monkeypatch, module, name):
    import importlib

    seen = {}

    def stand_in(*args, **kwargs):
        seen.update(args=args, kwargs=kwargs)
        raise Called

    monkeypatch.setattr(importlib.import_module(f"gigassl.{module}"), name, stand_in)
    return seen


def _run(argv):
    with pytest.raises(Called):
        cli.main(argv)


def test_the_stage_functions_get_the_values_the_hand_written_cli_gave(monkeypatch, tmp_path):
    """For representative command lines, the configs each stage function receives equal what the hand-written CLI
    built (``override(get_profile(P).x, ...)``; its profile given explicitly, as the default changed)."""
    demo, smoke = get_profile("demo"), get_profile("smoke")
    seen = _capture(monkeypatch, "train", "train")
    _run(["train", "--bank", "b", "--out", "o", "--profile", "smoke", "--epochs", "7", "--no-slide-aug", "--scale",
          "0.7", "1.3", "--downsample", "448", "--bn-views", "joint", "--steps", "5", "--workers", "1", "--seed", "3",
          "--encoder-weights", "w.pt"])
    maps = override(smoke.train.maps, downsample=448, slide_aug=False, scale=(0.7, 1.3))
    old = dataclasses.replace(override(smoke.train, epochs=7, steps=5, bn_views="joint", workers=1, seed=3), maps=maps)
    assert seen["args"][2] == old and seen["kwargs"]["encoder_weights"] == "w.pt"
    _run(["train", "--bank", "b", "--out", "o", "--profile", "demo", "--downsample", "tile"])
    assert seen["args"][2] == demo.train

    seen = _capture(monkeypatch, "bank", "build_bank")
    _run(["bank", "--manifest", "m", "--coords", "c", "--out", "o", "--profile", "demo", "--augmentations", "4",
          "--tiles", "16", "--mode", "independent", "--encoder", "efficientnet_lite0", "--weights", "w.pt",
          "--device", "cpu", "--batch-size", "8", "--precision", "fp32", "--workers", "2", "--seed", "5"])
    assert seen["args"][3:] == (override(demo.bank, augmentations=4, tiles=16, seed=5, workers=2),
                                override(demo.encoder, name="efficientnet_lite0", weights="w.pt", device="cpu",
                                         batch_size=8, precision="fp32"),
                                override(demo.augment, mode="independent"))

    seen = _capture(monkeypatch, "tiling", "tile_cohort")
    _run(["tile", "--manifest", "m", "--out", "o", "--profile", "smoke", "--target-mpp", "0.5", "--tile-px", "48",
          "--min-tissue", "0.3", "--mpp", "0.25", "--force-mpp", "--workers", "2"])
    assert seen["args"][2] == override(smoke.tile, target_mpp=0.5, tile_px=48, min_tissue=0.3, mpp=0.25,
                                       force_mpp=True, workers=2)

    seen = _capture(monkeypatch, "cohorts.synth", "synthesize")
    _run(["synth", "--out", "o", "--profile", "smoke", "--slides", "3", "--pool-slides", "1", "--seed", "2"])
    assert seen["args"][1] == override(smoke.synth, n_slides=3, pool_slides=1, seed=2)
    _run(["synth", "--out", "o"])
    assert seen["args"][1] == demo.synth

    seen = _capture(monkeypatch, "moco", "pretrain_tiles")
    _run(["pretrain-tiles", "--manifest", "m", "--coords", "c", "--out", "o", "--profile", "smoke", "--epochs", "1",
          "--batch-size", "8", "--lr", "0.01", "--tiles-per-slide", "4", "--seed", "1", "--max-minutes", "2",
          "--precision", "fp32", "--device", "cpu", "--workers", "3", "--restart"])
    config = seen["args"][3]
    assert dataclasses.replace(config, workers=smoke.moco.workers) == override(
        smoke.moco, epochs=1, batch_size=8, lr=0.01, tiles_per_slide=4, seed=1, max_minutes=2.0, precision="fp32")
    workers = seen["kwargs"].get("workers")
    assert (config.workers if workers is None else workers) == 3  # given as an argument then, in the config now
    assert seen["args"][4] == smoke.augment and seen["kwargs"]["device"] == "cpu" and not seen["kwargs"]["resume"]

    seen = _capture(monkeypatch, "embed", "embed_slides")
    _run(["embed", "--bank", "b", "--checkpoint", "c.pt", "--out", "e.h5", "--profile", "smoke", "--views", "3",
          "--tiles-per-view", "4", "--device", "cpu", "--seed", "1", "--backend", "torch"])
    assert seen["args"][3] == override(smoke.embed, views=3, tiles_per_view=4, device="cpu", seed=1)
    assert seen["kwargs"]["backend"] == "torch"

    seen = _capture(monkeypatch, "evaluation.protocol", "run_probe")
    for extra, budgets, sizes in ((["--budget", "0.5"], (0.5,), ()), (["--train-size", "10"], (), (10,)),
                                  ([], (1.0,), ())):
        _run(["probe", "--embeddings", "e.h5", "--labels", "l.csv", "--task", "y", "--profile", "demo",
              "--n-splits", "3", "--protocol", "fair", *extra])
        config, kwargs = seen["kwargs"]["config"], seen["kwargs"]
        # the hand-written CLI passed n_splits and the budgets as arguments beside the profile's config; they
        # are now fields of the config, passed on as the same arguments
        assert (kwargs["n_splits"], tuple(kwargs["budgets"]), tuple(kwargs["train_sizes"])) == (3, budgets, sizes)
        assert dataclasses.replace(config, n_splits=10, budgets=demo.probe.budgets,
                                   train_sizes=demo.probe.train_sizes) == demo.probe
        assert kwargs["protocol"] == "fair" and seen["args"] == ("e.h5", "l.csv", "y")


@pytest.mark.parametrize("text, named", [
    ("train:\n  epochs: 3\ntrain:\n  seed: 2\n", r"key 'train' appears twice in one mapping \(lines 1 and 3\)"),
    ("train:\n  epochs: 3\n  epochs: 30\n", r"key 'epochs' appears twice in one mapping \(lines 2 and 3\)"),
])
def test_a_key_given_twice_in_a_config_file_is_refused(text, named, tmp_path, capsys):
    """#25: YAML keeps the last of two equal keys silently; a config file with a section twice is refused."""
    import re

    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["train", "--bank", "b", "--out", "o", "--config", str(path)])
    assert exit_.value.code == 2
    assert re.search(named, capsys.readouterr().err)
    with pytest.raises(options.ConfigUsageError, match="is a folder, not a file"):
        options.read_config_file(tmp_path)
