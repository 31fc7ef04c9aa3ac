"""The stage pages' functions (gigassl.book.stages): what each page shows, on small real files."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from gigassl import io
from gigassl.book import stages
from gigassl.config import get_profile
from gigassl.errors import ConfigError


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


def test_run_embeddings_and_the_standardised_average(tmp_path):
    (tmp_path / "cohort").mkdir()
    _frame().to_csv(tmp_path / "cohort" / "manifest.csv", index=False)
    (tmp_path / "ssl").mkdir()
    matrix = np.eye(4, 8, dtype=np.float32)
    io.write_embeddings(tmp_path / "ssl" / "embeddings.h5", ["c", "a", "b", "d"], matrix, views=3, tiles_per_view=2)
    emb = stages.run_embeddings(tmp_path, "ssl")
    assert list(emb.manifest["slide_id"]) == ["c", "a", "b", "d"]  # manifest rows in the embeddings' order
    assert "4 slides, 8-d, R = 3 views of T = 2 tiles; row norms 1.0000-1.0000" == emb.describe()
