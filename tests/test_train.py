"""Giga-SSL training: the loss goes down, resume equals an uninterrupted run, checkpoints, both backends."""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch

from gigassl.bank import bank_slide_ids
from gigassl.config import MapConfig, TrainConfig
from gigassl.errors import ConfigError
from gigassl.train import Monitor, collapse_indicator, learning_rate, load_checkpoint, train
from gigassl.checkpoints import load_checkpoint_file

CONFIG = TrainConfig(epochs=6, batch_size=8, warmup_epochs=1, checkpoint_every=2, device="cpu",
                     maps=MapConfig(downsample="tile"))


def test_a_short_run_logs_its_epochs_and_writes_checkpoints(synthetic_bank, tmp_path):
    last = train(synthetic_bank, tmp_path, CONFIG, progress=False)
    log = pd.read_csv(tmp_path / "log.csv")
    assert list(log.columns) == ["epoch", "step", "loss", "collapse", "alignment", "uniformity", "mean_cosine",
                                 "effective_rank", "lr", "seconds"] and len(log) == 6
    assert log.step.tolist() == [2, 4, 6, 8, 10, 12]  # 16 slides, batch 8
    assert np.isfinite(log.drop(columns="seconds")).all().all() and (log.loss > 0).all()
    assert (log.collapse > 0.02).all()  # not collapsed (collapsed: 0)
    assert last.is_file() and sorted(p.name for p in tmp_path.glob("checkpoint_e*.pt")) == [
        "checkpoint_e0002.pt", "checkpoint_e0004.pt", "checkpoint_e0006.pt"]
    model, state = load_checkpoint(last)
    assert state["epoch"] == 6 and state["in_dim"] == 256 and not model.training


# A bank where the two views of a slide differ as much as two slides do (each draw adds its own offset, 3 times the
# slide's signal): the untrained model is near chance, so training has something to learn. One epoch's loss is
# noise at this size (single steps range from 0.1 to 7), so the loss is measured on 16 fixed batches of held views.
HARD = TrainConfig(epochs=16, batch_size=16, warmup_epochs=1, checkpoint_every=16, device="cpu",
                   maps=MapConfig(downsample="tile"))


@pytest.fixture(scope="module")
def hard_bank(tmp_path_factory):
    from tests.conftest import write_synthetic_bank

    return write_synthetic_bank(tmp_path_factory.mktemp("hardbank"), slides=32, view_noise=3.0)


@torch.no_grad()
def held_view_loss(model, bank_dir, config: TrainConfig, batches: int = 16) -> float:
    """Mean NT-Xent (Eq. 1) of ``model`` over ``batches`` fixed batches of two views (seeds no training uses), with
    the training's BatchNorm mode (batch statistics; per view or joint)."""
    from gigassl.bankstore import PackedBank
    from gigassl.loss import NTXentLoss
    from gigassl.maps import training_views
    from gigassl.train import concat_views

    bank, criterion, losses = PackedBank(bank_dir), NTXentLoss(config.temperature), []
    model.train()
    for i in range(batches):
        pick = np.random.default_rng(1000 + i).choice(len(bank), config.batch_size, replace=False)
        v1, v2 = training_views(bank, pick, config.tiles_per_view, config.maps, 1000, i)
        z1, z2 = model(concat_views(v1, v2), chunks=2 if config.bn_views == "per_view" else 1).chunk(2)
        losses.append(float(criterion(z1, z2)))
    return float(np.mean(losses))


@pytest.mark.parametrize("bn_views", ["per_view", "joint"])
def test_training_lowers_the_loss_on_held_views(hard_bank, tmp_path, bn_views, one_thread):
    """Measured on training seeds 0-3: 2.9-3.6 before, 0.6-1.0 after 32 steps (both BatchNorm modes); chance is
    log(2B - 1) = 3.43. The margins (a fall of at least 1, below half of chance) are several times the spread over
    seeds, which is what another CPU's arithmetic changes; a loss with the wrong sign, or no optimizer step, fails."""
    from gigassl.train import build_model

    config = dataclasses.replace(HARD, bn_views=bn_views)
    chance = np.log(2 * config.batch_size - 1)
    before = held_view_loss(build_model(config, 256), hard_bank, config)  # the run's seeded initialisation
    trained, _ = load_checkpoint(train(hard_bank, tmp_path, config, progress=False))
    after = held_view_loss(trained, hard_bank, config)
    assert before > 0.75 * chance  # near chance before training
    assert after < before - 1.0 and after < 0.5 * chance, (before, after)


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


def test_steps_set_the_number_of_epochs_and_the_schedule_horizon(synthetic_bank, tmp_path):
    from gigassl.train import training_epochs

    config = dataclasses.replace(CONFIG, steps=5)
    assert training_epochs(config, 2) == 3 and training_epochs(CONFIG, 2) == 6
    train(synthetic_bank, tmp_path, config, progress=False)
    assert pd.read_csv(tmp_path / "log.csv").step.iloc[-1] == 6  # ceil(5 / 2) epochs of 2 steps
    # the cosine horizon of the authors' code (3000 epochs for a run stopped at 1000): lr stays high at the end
    long = TrainConfig(epochs=1000, schedule_epochs=3000, warmup_epochs=10, base_lr=0.03)
    end = learning_rate(long, 256, 1000 * 10 - 1, 10, epochs=1000)
    assert end == pytest.approx(0.03 * 0.5 * (1 + np.cos(np.pi * (9999 - 100) / (30000 - 100))), rel=1e-9)
    assert end > 0.02 and learning_rate(dataclasses.replace(long, schedule_epochs=None), 256, 9999, 10,
                                        epochs=1000) < 1e-6


def test_per_view_batchnorm_is_two_forward_passes():
    from gigassl.aggregators import Views
    from gigassl.train import build_model

    model = build_model(dataclasses.replace(CONFIG, aggregator="attention"), 16).train()
    g = torch.Generator().manual_seed(0)
    views = Views(torch.randn(8, 5, 16, generator=g), torch.randint(0, 6, (8, 5, 2), generator=g))
    first = Views(views.features[:4], views.coords[:4])
    second = Views(views.features[4:], views.coords[4:])
    with torch.no_grad():
        h, z = model(views, chunks=2, return_embedding=True)
        separate = torch.cat([model(first), model(second)])
        joint = model(views)
    torch.testing.assert_close(z, separate)
    assert not torch.allclose(z, joint)  # BatchNorm statistics of each view, not of both
    assert h.shape == (8, model.aggregator.out_dim)


def test_bn_views_and_init_options(synthetic_bank, tmp_path):
    from gigassl.encoders import ResNet18
    from gigassl.train import build_model

    joint = dataclasses.replace(CONFIG, epochs=1, bn_views="joint")
    train(synthetic_bank, tmp_path / "joint", joint, progress=False)
    train(synthetic_bank, tmp_path / "per_view", dataclasses.replace(joint, bn_views="per_view"), progress=False)
    a, b = (pd.read_csv(tmp_path / name / "log.csv").loss[0] for name in ("joint", "per_view"))
    assert a != b
    with pytest.raises(ConfigError, match="bn_views"):
        train(synthetic_bank, tmp_path / "bad", dataclasses.replace(joint, bn_views="both"), progress=False)
    layer4 = {k: v for k, v in ResNet18().layer4.state_dict().items()}
    from_tiles = build_model(CONFIG, 256, layer4)
    random = build_model(dataclasses.replace(CONFIG, aggregator_init="random"), 256, layer4)
    conv = next(k for k in from_tiles.aggregator.state_dict() if k.endswith("weight") and "conv" in k)
    weights = {k: v for k, v in from_tiles.aggregator.state_dict().items()}
    assert not torch.equal(weights[conv], random.aggregator.state_dict()[conv])
    with pytest.raises(ConfigError, match="aggregator_init"):
        build_model(dataclasses.replace(CONFIG, aggregator_init="imagenet"), 256, layer4)


def test_resume_with_other_settings_is_refused_naming_the_fields(synthetic_bank, tmp_path):
    short = dataclasses.replace(CONFIG, epochs=2, checkpoint_every=1)
    train(synthetic_bank, tmp_path, short, progress=False)
    for change, field in (({"seed": 1}, "config.seed: 0 there, 1 now"),
                          ({"aggregator": "attention"}, "config.aggregator: 'sparseconv' there, 'attention' now")):
        with pytest.raises(ConfigError, match=f"holds a Giga-SSL run made with other settings .*{field}"):
            train(synthetic_bank, tmp_path, dataclasses.replace(short, **change), resume=True, progress=False)
    with pytest.raises(ConfigError, match=r"inputs.slides: "):  # other training slides
        train(synthetic_bank, tmp_path, short, slide_ids=["S000", "S001", "S002", "S003", "S004", "S005", "S006",
                                                           "S007"], resume=True, progress=False)
    # the same settings (and another checkpoint interval) continue
    train(synthetic_bank, tmp_path, dataclasses.replace(short, epochs=2, checkpoint_every=2), resume=True,
          progress=False)


def test_checkpoints_load_safely_and_name_their_kind(synthetic_bank, tmp_path):
    from gigassl.errors import GigasslError

    last = train(synthetic_bank, tmp_path / "ssl", dataclasses.replace(CONFIG, epochs=1), progress=False)
    torch.load(last, weights_only=True)  # tensors and plain values only: loads without unpickling code
    model, state = load_checkpoint(last)
    assert state["inputs"]["bank"]["feature_dim"] == 256 and state["bank"]["encoder"] == "synthetic"
    csv = tmp_path / "table.csv"
    csv.write_text("a,b\n1,2\n")
    with pytest.raises(GigasslError, match=r"table.csv is not a readable torch checkpoint .*expected a Giga-SSL"):
        load_checkpoint(csv)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(GigasslError, match=r"truncated.pt is not a readable torch checkpoint"):
        load_checkpoint(truncated)
    moco = tmp_path / "moco.pt"
    torch.save({"state_dict": {"module.encoder_q.conv1.weight": torch.zeros(1)}, "epoch": 1}, moco)
    with pytest.raises(GigasslError, match=r"moco.pt is a MoCo tile-encoder checkpoint .*, not a Giga-SSL"):
        load_checkpoint(moco)


def test_training_on_trident_features_uses_plain_views_and_lists_the_empty_slide(trident_features, tmp_path):
    """Plain tile features (TRIDENT here) train: the two views differ by their tiles and the slide augmentation."""
    import os

    from gigassl.bankstore import PackedBank
    from gigassl.maps import training_views

    os.chmod(trident_features, 0o555)  # a read-only input folder: nothing is written into it
    try:
        bank = PackedBank(trident_features)
        assert not bank.augmented and "EMPTY" in bank.skipped and len(bank) == 16
        assert not (trident_features / "packed").exists()
        v1, v2 = training_views(bank, np.arange(4), 5, MapConfig(downsample="tile"), seed=0, epoch=0)
        assert v1.features.shape == (4, 5, 256) and not torch.equal(v1.features, v2.features)
        again = training_views(bank, np.arange(4), 5, MapConfig(downsample="tile"), seed=0, epoch=0)[0]
        assert torch.equal(again.features, v1.features)  # keyed, as the augmented views
        config = TrainConfig(epochs=2, batch_size=8, warmup_epochs=0, device="cpu", maps=MapConfig(downsample="tile"))
        last = train(trident_features, tmp_path / "ssl", config, progress=False,
                     slide_ids=bank_slide_ids(trident_features))
    finally:
        os.chmod(trident_features, 0o755)
    state = load_checkpoint_file(last, ("gigassl",))
    assert state["bank"]["encoder"] == "uni_v1" and state["bank"]["augmentation_mode"] == "none (plain features)"
    failures = pd.read_csv(tmp_path / "ssl" / "failures.csv")
    assert failures["slide_id"].tolist() == ["EMPTY"] and "no tile" in failures["reason"][0]
    assert sorted(p.name for p in trident_features.iterdir()) == sorted(
        [f"S{i:03d}.h5" for i in range(16)] + ["EMPTY.h5"])


def test_a_bank_of_other_weights_than_the_layer4_init_is_refused(bank_dir, tmp_path):
    from gigassl.config import EncoderConfig
    from gigassl.encoders import build_embedder

    other = tmp_path / "other.pt"
    torch.save(build_embedder(EncoderConfig(seed=7)).network.state_dict(), other)
    config = TrainConfig(epochs=1, batch_size=4, warmup_epochs=0, device="cpu", maps=MapConfig(downsample="tile"))
    with pytest.raises(ConfigError, match=r"made by tile-embedder weights random-init-seed-0 .*other.pt"):
        train(bank_dir, tmp_path / "ssl", config, encoder_weights=str(other), progress=False)


def test_views_prepared_by_dataloader_workers_train_the_same_model(synthetic_bank, tmp_path):
    """The DataLoader over training steps (the GPU path) gives the views of the main-process loop: same losses."""
    from gigassl.bankstore import PackedBank
    from gigassl.train import StepViews, step_views

    bank = PackedBank(synthetic_bank)
    config = dataclasses.replace(CONFIG, epochs=2)
    order = np.arange(16)[::-1]
    steps = StepViews(bank, order, 8, 0, 8, 2, config, epoch=1)
    inline = list(step_views(steps, 0))
    ahead = list(step_views(steps, 2))
    assert len(inline) == len(ahead) == 2
    for (a1, a2), (b1, b2) in zip(inline, ahead):
        assert torch.equal(a1.features, b1.features) and torch.equal(a2.coords, b2.coords)
    a = train(synthetic_bank, tmp_path / "inline", config, progress=False)
    b = train(synthetic_bank, tmp_path / "ahead", dataclasses.replace(config, workers=1), progress=False)
    pd.testing.assert_frame_equal(pd.read_csv(a.parent / "steps.csv"), pd.read_csv(b.parent / "steps.csv"))


# ------------------------------------------------------------------ #25: bad slides listed, no quiet overwrite
def test_slides_with_nan_zero_bytes_or_truncated_are_listed_and_train_exits_1(tmp_path, capsys):
    import h5py

    from gigassl import cli

    from .conftest import write_synthetic_bank

    bank = write_synthetic_bank(tmp_path / "bank", slides=11, draws=2, tiles=8, dim=16)
    with h5py.File(bank / "S000.h5", "r+") as fh:
        fh["plain_features"][3, 0] = np.nan  # one NaN tile row: trained on silently before
    (bank / "S001.h5").write_bytes(b"")
    data = (bank / "S002.h5").read_bytes()
    (bank / "S002.h5").write_bytes(data[: len(data) // 2])
    out = tmp_path / "ssl"
    argv = ["train", "--bank", str(bank), "--out", str(out), "--profile", "smoke", "--epochs", "1", "--batch-size",
            "4", "--device", "cpu", "--no-progress"]
    assert cli.main(argv) == 1  # trained on the 8 good slides, then exit 1 for the 3 left out
    err = capsys.readouterr().err
    assert "3 slide(s) left out" in err and "S002" in err and "truncated" in err and "Traceback" not in err
    failures = pd.read_csv(out / "failures.csv")
    assert failures.slide_id.tolist() == ["S000", "S001", "S002"] and (out / "checkpoint.pt").is_file()
    assert "1 of 48 tiles (3)" in failures.reason[0] and "empty (0 bytes)" in failures.reason[1]
    # a second run into the same folder is refused, its checkpoints kept; --resume continues, --overwrite replaces
    before = (out / "checkpoint.pt").stat().st_mtime_ns
    assert cli.main(argv) == 1 and "already holds the checkpoints of a run" in capsys.readouterr().err
    assert (out / "checkpoint.pt").stat().st_mtime_ns == before
    assert cli.main(argv + ["--resume", "--batch-size", "8"]) == 1
    assert "config.batch_size: 4 there, 8 now" in capsys.readouterr().err
    assert cli.main(argv + ["--overwrite"]) == 1 and (out / "checkpoint.pt").stat().st_mtime_ns != before


def test_a_checkpoint_without_a_newer_field_resumes_under_its_default_only(synthetic_bank, tmp_path):
    """A checkpoint written before a config field existed (here ``maps.sampling``, added with the local views) was
    made with that field's default behaviour: it resumes under the default and is refused under another value."""
    train(synthetic_bank, tmp_path, dataclasses.replace(CONFIG, epochs=2), progress=False)
    for path in [tmp_path / "checkpoint.pt", *tmp_path.glob("checkpoint_e*.pt")]:
        state = torch.load(path, weights_only=False)
        for field in ("sampling", "neighbourhood"):
            del state["config"]["maps"][field]
        torch.save(state, path)
    local = dataclasses.replace(CONFIG, epochs=2, maps=MapConfig(downsample="tile", sampling="local"))
    with pytest.raises(ConfigError, match="maps.sampling"):
        train(synthetic_bank, tmp_path, local, resume=True, progress=False)
    train(synthetic_bank, tmp_path, dataclasses.replace(CONFIG, epochs=2), resume=True, progress=False)
    assert pd.read_csv(tmp_path / "log.csv").epoch.tolist() == [1, 2]
