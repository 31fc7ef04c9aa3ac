"""MoCo v2 pre-training of the tile embedder: the loss goes down, checkpoints load into the embedder, resume."""

import dataclasses

import pandas as pd
import torch

from gigassl.config import EncoderConfig, MocoConfig
from gigassl.encoders import build_embedder
from gigassl.moco import pretrain_tiles

# the queue holds one batch of keys, so that from the second step on every negative is a real tile
CONFIG = MocoConfig(epochs=10, tiles_per_slide=8, batch_size=16, lr=0.03, ema=0.99, queue_size=16, bn_splits=2,
                    checkpoint_every=5, seed=0)


def test_a_short_run_lowers_the_loss_and_the_embedder_loads_it(cohort, coords_dir, tmp_path):
    last = pretrain_tiles(cohort, coords_dir, tmp_path, CONFIG, device="cpu", progress=False)
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log.epoch) == list(range(1, 11))
    assert log.loss.iloc[-3:].mean() < log.loss.iloc[1:4].mean()
    assert sorted(p.name for p in tmp_path.glob("checkpoint_e*.pt")) == ["checkpoint_e0005.pt", "checkpoint_e0010.pt"]
    state = torch.load(last, weights_only=False)
    assert any(k.startswith("module.encoder_q.layer3.") for k in state["state_dict"])
    trained = build_embedder(EncoderConfig(weights=str(last)))
    random = build_embedder(EncoderConfig())
    tiles = torch.randint(0, 256, (2, 32, 32, 3), dtype=torch.uint8)
    with torch.no_grad():
        assert not torch.allclose(trained(tiles), random(tiles))
    torch.testing.assert_close(trained.network.conv1.weight, state["state_dict"]["module.encoder_q.conv1.weight"])


def test_resume_continues_as_an_uninterrupted_run(cohort, coords_dir, tmp_path):
    short = dataclasses.replace(CONFIG, epochs=4, checkpoint_every=2)
    straight = tmp_path / "straight"
    pretrain_tiles(cohort, coords_dir, straight, short, device="cpu", progress=False)
    stopped = tmp_path / "stopped"
    pretrain_tiles(cohort, coords_dir, stopped, dataclasses.replace(short, max_minutes=0.0), device="cpu",
                   progress=False)  # stops (with a checkpoint) after its first epoch
    assert len(pd.read_csv(stopped / "log.csv")) == 1
    pretrain_tiles(cohort, coords_dir, stopped, short, device="cpu", progress=False)
    a, b = pd.read_csv(straight / "log.csv"), pd.read_csv(stopped / "log.csv")
    pd.testing.assert_series_equal(a.loss, b.loss, rtol=1e-5)
