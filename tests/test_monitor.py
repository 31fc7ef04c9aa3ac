"""The training monitor (gigassl.evaluation.monitor): probes and diagnostics every k epochs, and its tables."""

import numpy as np
import pandas as pd
import pytest

from gigassl.bankstore import PackedBank
from gigassl.config import MapConfig, ProbeConfig, TrainConfig
from gigassl.errors import ConfigError, GigasslError, ManifestError
from gigassl.evaluation.monitor import monitor_table, training_monitor
from gigassl.train import build_model


def test_training_monitor_resolves_auto_device(synthetic_bank):
    """The paper profile's device is "auto": the monitor must move tensors to a real device, not to "auto"."""
    bank = PackedBank(synthetic_bank)
    labels = pd.DataFrame({"slide_id": bank.ids, "case_id": bank.ids, "center": ["C0", "C1"] * 8,
                           "t": ["a", "b"] * 8})
    monitor = training_monitor(labels, ["t"], MapConfig(downsample="tile"), views=2, tiles=3,
                               probe=ProbeConfig(n_splits=2, Cs=(1.0,)), device="auto")
    model = build_model(TrainConfig(aggregator="mean"), bank.feature_dim).eval()
    rows = monitor.fn(model, bank, 1)
    kinds = [r["kind"] for r in rows]
    assert kinds.count("probe") == 4 and kinds.count("diagnostics") == 1  # 2 protocols x 2 splits, 1 diagnostics row


def test_the_monitor_names_a_missing_task_and_checks_its_labels_before_training(tmp_path):
    labels = pd.DataFrame({"slide_id": [f"S{i:03d}" for i in range(8)], "case_id": [f"C{i}" for i in range(8)],
                           "center": list("AABBCCDD"), "t": ["a"] * 7 + ["b"]})
    with pytest.raises(ConfigError, match="needs the task columns to probe.*--monitor-task COLUMN"):
        training_monitor(labels, [], MapConfig(), views=2, tiles=3)
    with pytest.raises(ManifestError, match="single case"):  # not an error after the first epoch
        training_monitor(labels, ["t"], MapConfig(), views=2, tiles=3)
    with pytest.raises(GigasslError, match="Monitor label table .*none.csv does not exist"):
        training_monitor(tmp_path / "none.csv", ["t"], MapConfig(), views=2, tiles=3)


def test_the_monitor_on_a_small_labelled_set_uses_fewer_folds_and_says_so(synthetic_bank, caplog):
    """#20: 4 slides per class in 4 centres of 2 slides: centre predictability's 5 folds cannot be made."""
    bank = PackedBank(synthetic_bank)
    ids = bank.ids[:8]
    labels = pd.DataFrame({"slide_id": ids, "case_id": ids, "center": list("AABBCCDD"), "t": ["a", "b"] * 4})
    monitor = training_monitor(labels, ["t"], MapConfig(downsample="tile"), views=2, tiles=3,
                               probe=ProbeConfig(n_splits=2, Cs=(1.0,)), device="cpu")
    model = build_model(TrainConfig(aggregator="mean"), bank.feature_dim).eval()
    with caplog.at_level("WARNING"):
        rows = monitor.fn(model, bank, 1)
    diagnostics = [r for r in rows if r["kind"] == "diagnostics"]
    assert len(diagnostics) == 1 and 0 <= diagnostics[0]["centre_accuracy"] <= 1
    assert "2 folds instead of 5 (the largest centre has 2 slides" in caplog.text


def test_monitor_table_names_each_epoch_and_averages_its_splits():
    rows = [{"kind": "probe", "epoch": e, "task": "t", "protocol": p, "budget": "full", "split": s, "auc": a}
            for e, p, s, a in [(2, "paper", 0, 0.6), (2, "paper", 1, 0.8), (4, "paper", 0, 0.7), (4, "paper", 1, 0.9),
                               (2, "fair", 0, 0.5), (2, "fair", 1, 0.5)]]
    monitor = pd.DataFrame(rows + [{"kind": "diagnostics", "epoch": 2, "alignment": 0.1}])
    per_split, per_epoch = monitor_table(monitor, "sparse")
    assert len(per_split) == 6 and per_split["method"].tolist() == ["sparse@2"] * 2 + ["sparse@4"] * 2 + ["sparse@2"] * 2
    means = per_epoch.set_index(["protocol", "epoch"])["auc_mean"]
    assert abs(means[("paper", 2)] - 0.7) < 1e-12 and abs(means[("paper", 4)] - 0.8) < 1e-12
    assert abs(means[("fair", 2)] - 0.5) < 1e-12 and np.isclose(per_epoch.set_index(["protocol", "epoch"]).loc[
        ("paper", 2), "auc_std"], np.std([0.6, 0.8], ddof=1))
    assert set(per_epoch["aggregator"]) == {"sparse"}
