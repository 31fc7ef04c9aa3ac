"""Giga-SSL training: the loss goes down, resume equals an uninterrupted run, checkpoints, both backends."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from gigassl.config import MapConfig, TrainConfig
from gigassl.errors import ConfigError
from gigassl.train import Monitor, collapse_indicator, learning_rate, load_checkpoint, train

CONFIG = TrainConfig(epochs=6, batch_size=8, warmup_epochs=1, checkpoint_every=2, device="cpu",
                     maps=MapConfig(downsample="tile"))


def test_a_short_run_lowers_the_loss_and_writes_checkpoints(synthetic_bank, tmp_path):
    last = train(synthetic_bank, tmp_path, CONFIG, progress=False)
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log.columns) == ["epoch", "loss", "collapse", "lr", "seconds"] and len(log) == 6
    assert log.loss.iloc[-2:].mean() < 0.5 * log.loss.iloc[0]
    assert (log.collapse > 0.02).all()  # not collapsed
    assert last.is_file() and sorted(p.name for p in tmp_path.glob("checkpoint_e*.pt")) == [
        "checkpoint_e0002.pt", "checkpoint_e0004.pt", "checkpoint_e0006.pt"]
    model, state = load_checkpoint(last)
    assert state["epoch"] == 6 and state["in_dim"] == 256 and not model.training


def test_resume_reproduces_an_uninterrupted_run(synthetic_bank, tmp_path):
    straight = tmp_path / "straight"
    train(synthetic_bank, straight, CONFIG, progress=False)

    def stop_after_epoch_4(model, bank, epoch):
        if epoch == 5:
            raise KeyboardInterrupt
        return []

    resumed = tmp_path / "resumed"
    interrupting = dataclasses.replace(CONFIG, monitor_every=1)
    with pytest.raises(KeyboardInterrupt):
        train(synthetic_bank, resumed, interrupting, monitor=Monitor(stop_after_epoch_4), progress=False)
    assert len(pd.read_csv(resumed / "log.csv")) == 4
    train(synthetic_bank, resumed, CONFIG, resume=True, progress=False)
    a, b = pd.read_csv(straight / "log.csv"), pd.read_csv(resumed / "log.csv")
    np.testing.assert_allclose(a.loss, b.loss, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(a.lr, b.lr)
    sa = torch.load(straight / "checkpoint.pt", weights_only=False)["model"]
    sb = torch.load(resumed / "checkpoint.pt", weights_only=False)["model"]
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=1e-5, atol=1e-6)


def test_monitor_rows_are_logged(synthetic_bank, tmp_path):
    config = dataclasses.replace(CONFIG, epochs=2, monitor_every=1, aggregator="attention")
    train(synthetic_bank, tmp_path, config, monitor=Monitor(lambda model, bank, epoch: [{"task": "t", "auc_mean": 0.5}]),
          progress=False)
    monitor = pd.read_csv(tmp_path / "monitor.csv")
    assert monitor.epoch.tolist() == [1, 2] and (monitor.task == "t").all()


def test_spconv_backend_trains(synthetic_bank, tmp_path):
    config = dataclasses.replace(CONFIG, epochs=1, backend="spconv")
    train(synthetic_bank, tmp_path, config, progress=False)
    assert np.isfinite(pd.read_csv(tmp_path / "log.csv").loss).all()


def test_schedule_and_errors(synthetic_bank, tmp_path):
    config = TrainConfig(epochs=10, warmup_epochs=2, base_lr=0.03)
    lrs = [learning_rate(config, 256, step, 5) for step in range(50)]
    assert lrs[9] == pytest.approx(0.03) and lrs[0] == pytest.approx(0.003)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] < 1e-4
    assert learning_rate(config, 128, 20, 5) == pytest.approx(0.5 * learning_rate(config, 256, 20, 5))
    with pytest.raises(ConfigError, match="batch size 64 is larger than the 16 training slides"):
        train(synthetic_bank, tmp_path, dataclasses.replace(CONFIG, batch_size=64), progress=False)
    z = torch.randn(64, 32)
    assert collapse_indicator(z) > 0.1 and collapse_indicator(torch.ones(64, 32)) == 0.0
