"""``gigassl train --untrained`` (gigassl.train.untrained_checkpoint): the seeded, untrained aggregator written as a
checkpoint that ``gigassl embed`` embeds with (the random-aggregator control of issue #24)."""

import dataclasses

import h5py
import numpy as np
import pytest
import torch

from gigassl import cli
from gigassl.cohorts.featsim import simulate
from gigassl.config import FeatSimConfig, MapConfig, TrainConfig
from gigassl.errors import ConfigError
from gigassl.train import build_model, load_checkpoint, untrained_checkpoint

CONFIG = TrainConfig(batch_size=4, device="cpu", aggregator_init="random", maps=MapConfig(downsample="tile"))


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    out = tmp_path_factory.mktemp("featsim")
    simulate(out, FeatSimConfig(n_train=4, n_test=4, tiles_per_slide=32, feature_dim=8, focal_tiles=2), progress=False)
    return out / "features_featsim"


def _weights(path):
    return torch.load(path, weights_only=True)["model"]


def test_same_seed_same_weights_other_seed_other_weights(features, tmp_path):
    a = untrained_checkpoint(features, tmp_path / "a", CONFIG)
    b = untrained_checkpoint(features, tmp_path / "b", CONFIG)
    c = untrained_checkpoint(features, tmp_path / "c", dataclasses.replace(CONFIG, seed=1))
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert wa.keys() == wb.keys() == wc.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    convs = [k for k in wa if wa[k].dtype.is_floating_point and wa[k].dim() >= 2]
    assert convs and all(not torch.equal(wa[k], wc[k]) for k in convs)
    # the checkpoint holds exactly the seeded initialisation of the configured architecture
    direct = build_model(CONFIG, 8).state_dict()
    assert all(torch.equal(wa[k], direct[k]) for k in direct)
    model, state = load_checkpoint(a)
    assert state["epoch"] == 0 and state["untrained"] and state["config"]["aggregator"] == "sparseconv"


def test_the_untrained_checkpoint_embeds_through_gigassl_embed(features, tmp_path):
    out = tmp_path / "untrained"
    assert cli.main(["train", "--bank", str(features), "--out", str(out), "--untrained", "--profile", "smoke",
                     "--aggregator-init", "random", "--seed", "3", "--no-progress"]) == 0
    emb = tmp_path / "emb.h5"
    assert cli.main(["embed", "--bank", str(features), "--checkpoint", str(out / "checkpoint.pt"), "--out", str(emb),
                     "--profile", "smoke", "--no-progress"]) == 0
    with h5py.File(emb) as f:
        x, ids = f["embeddings"][:], f["ids"][:]
    assert x.shape == (8, 512) and len(ids) == 8 and np.isfinite(x).all()
    assert np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-4)
    assert np.ptp(x, axis=0).max() > 1e-3  # slides differ


def test_an_existing_checkpoint_is_not_replaced_silently(features, tmp_path):
    untrained_checkpoint(features, tmp_path, CONFIG)
    with pytest.raises(ConfigError, match="--overwrite"):
        untrained_checkpoint(features, tmp_path, CONFIG)
    untrained_checkpoint(features, tmp_path, dataclasses.replace(CONFIG, seed=2), overwrite=True)
