"""MoCo v2 pre-training of the tile embedder: the loss goes down, checkpoints load into the embedder, resume."""

import dataclasses

import pandas as pd
import torch

import numpy as np

from gigassl.config import AugmentConfig, EncoderConfig, MocoConfig
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
    from gigassl.moco import retrieval_scores

    perfect = retrieval_scores(embedder, tiles, geometric, temperature=0.01)
    assert perfect["hits"].all() and perfect["infonce"] < np.log(8)  # below chance: the positive stands out
    g = torch.Generator().manual_seed(0)
    tiles = torch.randint(0, 256, (24, 32, 32, 3), dtype=torch.uint8, generator=g).numpy()
    score = retrieval_check(embedder, tiles, AugmentConfig(), seed=1)
    assert 0.0 <= score <= 1.0 and score == retrieval_check(embedder, tiles, AugmentConfig(), seed=1)


def test_steps_log_and_heldout_tiles(cohort, coords_dir, tmp_path):
    from gigassl.moco import heldout_tiles

    ids = pd.read_csv(cohort).slide_id.tolist()
    pretrain_tiles(cohort, coords_dir, tmp_path, dataclasses.replace(CONFIG, epochs=1, checkpoint_every=1),
                   device="cpu", progress=False, slide_ids=ids[:3])
    steps = pd.read_csv(tmp_path / "steps.csv")
    assert list(steps.columns) == ["epoch", "step", "loss", "top1"] and steps.step.tolist() == list(
        range(1, len(steps) + 1))
    tiles = heldout_tiles(cohort, coords_dir, ids[3:], 10, seed=0)
    assert tiles.shape == (10, 32, 32, 3) and tiles.dtype.name == "uint8"
    from gigassl.moco import retrieval_curve

    curve = retrieval_curve(tmp_path, tiles, EncoderConfig(device="cpu"), AugmentConfig(), n_bootstrap=50)
    assert curve.epoch.tolist() == [0, 1]  # the random init, then the checkpoint of epoch 1
    assert curve.gain.iloc[0] == 0.0 and curve.chance_top1.iloc[0] == 0.1
    assert np.isclose(curve.chance_infonce.iloc[0], np.log(10)) and curve.ci_low.iloc[1] <= curve.ci_high.iloc[1]


def test_bfloat16_autocast_keeps_the_loss_in_float32():
    from gigassl.moco import MoCo

    import copy

    model = MoCo(dataclasses.replace(CONFIG, queue_size=8)).train()
    twin = copy.deepcopy(model)  # the same queue and key encoder for both precisions
    x = torch.randn(4, 3, 32, 32)
    loss32, _ = twin(x, x.flip(3))
    loss16, _ = model(x, x.flip(3), dtype=torch.bfloat16)
    assert loss16.dtype == torch.float32 and torch.isfinite(loss16)
    loss16.backward()
    assert model.encoder_q.conv1.weight.grad is not None
    assert model.encoder_k.conv1.weight.grad is None  # the key encoder only follows the query encoder
    # same inputs, the same loss to bfloat16's precision (amplified by the 1 / 0.2 of the temperature)
    assert abs(loss16.item() - loss32.detach().item()) < 0.25 * loss32.item()


def test_resume_with_other_settings_is_refused(cohort, coords_dir, tmp_path):
    from gigassl.errors import ConfigError

    import pytest

    short = dataclasses.replace(CONFIG, epochs=1, checkpoint_every=1)
    pretrain_tiles(cohort, coords_dir, tmp_path, short, device="cpu", progress=False)
    with pytest.raises(ConfigError, match=r"holds a MoCo run made with other settings \(config.lr: 0.48 there, 0.1 now"):
        pretrain_tiles(cohort, coords_dir, tmp_path, dataclasses.replace(short, lr=0.1), device="cpu", progress=False)
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # safe to load
    assert state["inputs"]["tile_px"] == 32


def test_tileset_keeps_a_bounded_number_of_slides_open(cohort, coords_dir):
    import pickle

    from gigassl.moco import TileSet

    tiles = TileSet(cohort, coords_dir, tiles_per_slide=3, seed=0, max_open=2)
    assert len(tiles.readers) == 6
    for index in range(len(tiles)):  # every slide in turn
        tiles[index]
        assert sum(r._slide is not None for r in tiles.readers) <= 2
    clone = pickle.loads(pickle.dumps(tiles))  # what a DataLoader worker gets: every slide closed
    assert all(r._slide is None for r in clone.readers) and not clone._open
    assert (clone[0] == tiles[0]).all()
    tiles.close()
    assert all(r._slide is None for r in tiles.readers)


def test_a_shared_augmentation_is_used_independently_and_said(cohort, coords_dir, tmp_path, caplog):
    """MoCo's two crops of a tile are drawn independently for every tile: a shared AugmentConfig (the bank's, as
    the CLI passes the profile's) trains exactly as the independent one, with an INFO message."""
    import logging

    short = dataclasses.replace(CONFIG, epochs=1, checkpoint_every=1)
    with caplog.at_level(logging.INFO, logger="gigassl.moco"):
        pretrain_tiles(cohort, coords_dir, tmp_path / "shared", short, AugmentConfig(mode="shared"), device="cpu",
                       progress=False)
    assert "augment.mode='independent' instead of 'shared'" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gigassl.moco"):
        pretrain_tiles(cohort, coords_dir, tmp_path / "independent", short, AugmentConfig(mode="independent"),
                       device="cpu", progress=False)
    assert "instead of" not in caplog.text
    a = torch.load(tmp_path / "shared" / "checkpoint.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "independent" / "checkpoint.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
