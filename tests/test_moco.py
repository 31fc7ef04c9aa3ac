"""MoCo v2 pre-training of the tile embedder: the loss goes down, checkpoints load into the embedder, resume."""

import dataclasses

import pandas as pd
import torch

from gigassl.config import EncoderConfig, MocoConfig
from gigassl.encoders import build_embedder
from gigassl.moco import pretrain_tiles

# the queue holds one batch of keys, so that from the second step on every negative is a real tile; lr 0.48 at
# batch 256 is 0.03 at this batch of 16 (the linear scaling rule)
CONFIG = MocoConfig(epochs=10, tiles_per_slide=8, batch_size=16, lr=0.48, ema=0.99, queue_size=16, bn_splits=2,
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


def test_learning_rate_follows_the_linear_scaling_rule():
    from gigassl.moco import _lr

    assert _lr(MocoConfig(lr=0.03, batch_size=256, epochs=200), 0) == 0.03
    assert _lr(MocoConfig(lr=0.03, batch_size=64, epochs=200), 0) == 0.0075
    assert _lr(MocoConfig(lr=0.03, batch_size=64, epochs=200), 100) == 0.0075 * 0.5


def test_retrieval_check_knows_the_answer():
    from gigassl.config import AugmentConfig
    from gigassl.moco import retrieval_check

    import numpy as np

    # flat tiles of very different colours: crops and resizes leave them unchanged, so without colour, grey and
    # blur augmentations both views of a tile are the same image and retrieval is perfect
    colours = np.array([[230, 20, 20], [20, 230, 20], [20, 20, 230], [230, 230, 20], [20, 230, 230], [230, 20, 230],
                        [128, 128, 128], [10, 10, 10]], np.uint8)
    tiles = np.broadcast_to(colours[:, None, None, :], (8, 32, 32, 3)).copy()
    embedder = build_embedder(EncoderConfig())
    geometric = AugmentConfig(p_jitter=0.0, p_grayscale=0.0, p_blur=0.0)
    assert retrieval_check(embedder, tiles, geometric) == 1.0
    g = torch.Generator().manual_seed(0)
    tiles = torch.randint(0, 256, (24, 32, 32, 3), dtype=torch.uint8, generator=g).numpy()
    score = retrieval_check(embedder, tiles, AugmentConfig(), seed=1)
    assert 0.0 <= score <= 1.0 and score == retrieval_check(embedder, tiles, AugmentConfig(), seed=1)


def test_steps_log_and_heldout_tiles(cohort, coords_dir, tmp_path):
    from gigassl.moco import heldout_tiles

    ids = pd.read_csv(cohort).slide_id.tolist()
    pretrain_tiles(cohort, coords_dir, tmp_path, dataclasses.replace(CONFIG, epochs=1), device="cpu",
                   progress=False, slide_ids=ids[:3])
    steps = pd.read_csv(tmp_path / "steps.csv")
    assert list(steps.columns) == ["epoch", "step", "loss", "top1"] and steps.step.tolist() == list(
        range(1, len(steps) + 1))
    tiles = heldout_tiles(cohort, coords_dir, ids[3:], 10, seed=0)
    assert tiles.shape == (10, 32, 32, 3) and tiles.dtype.name == "uint8"
