"""The stage pages' functions (gigassl.book.stages): what each page shows, on small real files; and that the
profile's values reach the training and the bank a page runs, a page's value replacing only its own field."""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gigassl import io
from gigassl.book import stages
from gigassl.config import get_profile
from gigassl.errors import ConfigError

SMOKE = get_profile("smoke")
# a profile whose every training field a page can change differs from the notebooks' former literals
VARIANT = dataclasses.replace(SMOKE, train=dataclasses.replace(
    SMOKE.train, bn_views="joint", aggregator="attention", aggregator_init="random", tiles_per_view=3, steps=7,
    schedule_epochs=50, monitor_every=2, maps=dataclasses.replace(SMOKE.train.maps, slide_aug=False)),
    augment=dataclasses.replace(SMOKE.augment, mode="independent"))


def _frame():
    return pd.DataFrame({"slide_id": ["a", "b", "c", "d"], "path": ["x"] * 4, "case_id": ["p1", "p1", "p2", "p3"],
                         "center": ["c1", "c1", "c2", "c2"], "task": ["y", "n", "y", None]})


def test_cohort_counts_count_slides_cases_tiles_and_labels(tmp_path):
    frame = _frame()
    for sid, n in (("a", 3), ("b", 5), ("c", 1)):
        io.write_coords(tmp_path / f"{sid}.h5", np.zeros((n, 2), np.int64), patch_size=32, patch_size_level0=64,
                        patch_level=0, level0_mpp=0.5, target_mpp=1.0)
    counts = stages.cohort_counts(frame, tmp_path, failed=["d"]).set_index("what")["value"]
    assert counts["slides"] == 4 and counts["cases"] == 3 and counts["centres"] == 2
    assert counts["tiles per slide (mean)"] == 3.0  # the failed slide is left out
    assert counts["slides that failed tiling"] == 1
    assert counts["task = y"] == 2 and counts["task = n"] == 1


def test_slides_by_centre_and_without_centres():
    table = stages.slides_by_centre(_frame())
    assert list(table["slides"]) == [2, 2] and table.loc["c1", "y"] == 1
    assert stages.slides_by_centre(_frame().drop(columns="center")).empty


def test_bank_encoder_names_the_weights_or_refuses():
    config = get_profile("smoke")
    moco = stages.bank_encoder(config, "moco", "runs/x")
    assert moco.name == "resnet18" and moco.weights.endswith("tile_encoder/moco/checkpoint.pt")
    assert stages.bank_encoder(config, "imagenet", "runs/x").name == "efficientnet_lite0"
    with pytest.raises(ConfigError, match="imagenet"):
        stages.bank_encoder(config, "uni", "runs/x")


def test_training_finding_states_the_last_epoch_against_chance():
    log = pd.DataFrame({"step": [10, 20], "loss": [4.0, 3.5], "alignment": [1.0, 0.5], "uniformity": [-1.0, -2.0],
                        "mean_cosine": [0.9, 0.8], "effective_rank": [3.0, 4.0]})
    said = stages.training_finding(log, batch_size=32)
    assert stages.chance_loss(32) == pytest.approx(math.log(63))
    assert "20 steps in 2 epochs" in said and "loss 3.500" in said and f"{math.log(63):.3f}" in said


def test_monitor_over_training_joins_the_fair_probe_to_the_diagnostics(tmp_path):
    assert stages.monitor_over_training(tmp_path).empty
    pd.DataFrame([
        {"kind": "probe", "protocol": "fair", "epoch": 1, "auc": 0.6},
        {"kind": "probe", "protocol": "fair", "epoch": 1, "auc": 0.8},
        {"kind": "probe", "protocol": "paper", "epoch": 1, "auc": 0.1},
        {"kind": "diagnostics", "epoch": 1, "alignment": 0.3},
    ]).to_csv(tmp_path / "monitor.csv", index=False)
    table = stages.monitor_over_training(tmp_path)
    assert table["probe_auc"].tolist() == [pytest.approx(0.7)] and table["alignment"].tolist() == [0.3]


def test_moco_finding_reads_the_curve_and_the_comparison():
    curve = pd.DataFrame({"epoch": [0, 10], "infonce": [7.0, 6.0], "chance_infonce": [7.6, 7.6], "top1": [0.1, 0.2],
                          "chance_top1": [0.001, 0.001], "gain": [0.0, 0.1], "ci_low": [0.0, 0.05],
                          "ci_high": [0.0, 0.15], "verdict": ["undecided", "trained better"]})
    useful = pd.DataFrame({"task": ["a", "b"], "MoCo - random": [0.02, -0.01]})
    said = stages.moco_finding(curve, useful, 64)
    assert "On 64 held-out tiles" in said and "1 of 2 tasks" in said and "trained better" in said


def test_pretrain_finding_reads_the_first_and_last_epochs_of_the_log():
    log = pd.DataFrame({"epoch": [1, 2, 3], "loss": [6.3, 6.0, 6.4]})
    said = stages.pretrain_finding(log)
    assert "trained 3 epochs" in said and "6.300 (epoch 1) to 6.400 (epoch 3)" in said


def test_run_embeddings_and_the_standardised_average(tmp_path):
    (tmp_path / "cohort").mkdir()
    _frame().to_csv(tmp_path / "cohort" / "manifest.csv", index=False)
    (tmp_path / "ssl").mkdir()
    matrix = np.eye(4, 8, dtype=np.float32)
    io.write_embeddings(tmp_path / "ssl" / "embeddings.h5", ["c", "a", "b", "d"], matrix, views=3, tiles_per_view=2)
    emb = stages.run_embeddings(tmp_path, "ssl")
    assert list(emb.manifest["slide_id"]) == ["c", "a", "b", "d"]  # manifest rows in the embeddings' order
    assert "4 slides, 8-d, R = 3 views of T = 2 tiles; row norms 1.0000-1.0000" == emb.describe()


# ------------------------------------------------------------------------------- the profile's values reach a page
def fake_run(monkeypatch, run_dir: Path, labelled: int = 40, pool: int = 10) -> dict:
    """A run folder with a manifest (``labelled`` slides over 4 centres, then ``pool`` unlabelled ones) and the
    expensive calls of :func:`stages.train_ssl` and :func:`stages.make_bank` replaced by recorders: returns the dict
    where each call leaves its arguments (``train``: the TrainConfig the training received, ...)."""
    ids = [f"L{i:03d}" for i in range(labelled)] + [f"U{i:03d}" for i in range(pool)]
    frame = pd.DataFrame({"slide_id": ids, "path": "x", "case_id": [f"p{i}" for i in range(len(ids))],
                          "center": [f"c{i % 4}" for i in range(len(ids))],
                          "nsclc_like": ["y" if i % 2 else "n" for i in range(labelled)] + [None] * pool})
    (run_dir / "cohort").mkdir(parents=True, exist_ok=True)
    frame.to_csv(run_dir / "cohort" / "manifest.csv", index=False)
    seen: dict = {}

    def train(bank_dir, out_dir, config, **kwargs):
        seen.update(train=config, train_kwargs=kwargs)
        return Path(out_dir) / "checkpoint.pt"

    def embed_slides(bank_dir, checkpoint, out, config, **kwargs):
        seen.update(embed=config)
        return Path(out)

    def training_monitor(labels, tasks, maps, **kwargs):
        seen.update(monitor_tasks=tasks, monitor_maps=maps, monitor_kwargs=kwargs)
        return "monitor"

    class Report:
        def summary(self):
            return "no bank built"

    monkeypatch.setattr("gigassl.train.train", train)
    monkeypatch.setattr("gigassl.embed.embed_slides", embed_slides)
    monkeypatch.setattr("gigassl.evaluation.monitor.training_monitor", training_monitor)
    monkeypatch.setattr("gigassl.bank.bank_slide_ids", lambda bank_dir: sorted(ids))
    monkeypatch.setattr("gigassl.bank.build_bank", lambda *args, **kwargs: seen.update(bank=args) or Report())
    return seen


@pytest.mark.parametrize("given", [{}, {"bn_views": None, "slide_aug": None, "steps": None, "monitor_every": None}],
                         ids=["absent", "None"])
def test_train_ssl_trains_with_the_profiles_values_when_a_page_gives_none(monkeypatch, tmp_path, given):
    seen = fake_run(monkeypatch, tmp_path)
    run = stages.train_ssl(VARIANT, tmp_path, tmp_path / "out", "bank", **given)
    assert seen["train"] == VARIANT.train  # every field the profile's: bn_views, aggregator, maps.slide_aug, ...
    assert run.config == VARIANT.train and len(seen["train_kwargs"]["slide_ids"]) == 40  # labelled only (pool=0)
    assert seen["embed"].tiles_per_view == 3 and seen["monitor_maps"] == VARIANT.train.maps
    assert seen["monitor_kwargs"]["tiles"] == 3


def test_train_ssl_a_given_value_replaces_its_field_only(monkeypatch, tmp_path):
    seen = fake_run(monkeypatch, tmp_path)
    stages.train_ssl(VARIANT, tmp_path, tmp_path / "out", "bank", bn_views="per_view", slide_aug=True, steps=None,
                     monitor_every=0)
    train = VARIANT.train
    assert seen["train"] == dataclasses.replace(train, bn_views="per_view", monitor_every=0,
                                                maps=dataclasses.replace(train.maps, slide_aug=True))
    assert "monitor_maps" not in seen  # monitor_every=0: no monitor
    stages.train_ssl(VARIANT, tmp_path, tmp_path / "out", "bank", pool=None)  # the page's pool: every pool slide
    assert len(seen["train_kwargs"]["slide_ids"]) == 50 and seen["train"] == VARIANT.train


def test_train_ssl_clamps_the_batch_to_the_slides(monkeypatch, tmp_path):
    seen = fake_run(monkeypatch, tmp_path, labelled=3, pool=0)
    stages.train_ssl(VARIANT, tmp_path, tmp_path / "out", "bank")
    assert seen["train"] == dataclasses.replace(VARIANT.train, batch_size=3)


def test_train_ssl_refuses_a_name_that_is_no_training_field_before_training(monkeypatch, tmp_path):
    seen = fake_run(monkeypatch, tmp_path)
    with pytest.raises(ConfigError, match="'bn_view'.*'bn_views'"):  # the name given, then the allowed ones
        stages.train_ssl(VARIANT, tmp_path, tmp_path / "out", "bank", bn_view=None)
    with pytest.raises(ConfigError, match=r"TrainConfig.bn_views='both'"):
        stages.train_ssl(VARIANT, tmp_path, tmp_path / "out", "bank", bn_views="both")
    assert "train" not in seen


def test_make_bank_takes_the_profiles_augmentation_unless_the_page_gives_one(monkeypatch, tmp_path):
    seen = fake_run(monkeypatch, tmp_path)
    stages.make_bank(VARIANT, tmp_path, tmp_path / "bank")
    assert seen["bank"][5] == VARIANT.augment and seen["bank"][3] == VARIANT.bank  # mode: the profile's independent
    stages.make_bank(VARIANT, tmp_path, tmp_path / "bank", mode=None)
    assert seen["bank"][5].mode == "independent"
    stages.make_bank(VARIANT, tmp_path, tmp_path / "bank", mode="shared")
    assert seen["bank"][5] == dataclasses.replace(VARIANT.augment, mode="shared")
    with pytest.raises(ConfigError, match="'mod'"):
        stages.make_bank(VARIANT, tmp_path, tmp_path / "bank", mod="shared")
