"""Baselines of Table 2: AverageMIL from banks, DeepMIL (gated attention MIL) trained from scratch."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import roc_auc_score

from gigassl.baselines import (
    DeepMIL, DeepMILClassifier, _batch, average_embeddings, load_bags, run_averagemil, run_deepmil,
)
from gigassl.config import DeepMILConfig, ProbeConfig
from gigassl.errors import ManifestError
from gigassl.io import Bank, write_bank
from gigassl.probe import COLUMNS

SMALL = DeepMILConfig(hidden=32, attention=16, dropout=0.1, lr=5e-3, weight_decay=1e-4, batch_size=8,
                      max_epochs=40, patience=8, device="cpu", seed=0)


def key_tile_bags(n, seed, tiles=20, dim=16):
    """Bags of 10-20 noise tiles where one tile in ten carries a class prototype (the rest: no signal)."""
    gen = np.random.default_rng(seed)
    prototypes = np.random.default_rng(99).normal(size=(2, dim)) * 1.5
    y = gen.integers(0, 2, n)
    bags = []
    for label in y:
        m = int(gen.integers(tiles // 2, tiles + 1))
        bag = gen.normal(size=(m, dim)).astype(np.float32)
        bag[: max(1, m // 10)] += prototypes[label]
        bags.append(bag[gen.permutation(m)])
    return bags, y


def test_deepmil_learns_key_tile_task_and_is_deterministic():
    train, y_train = key_tile_bags(80, 0)
    val, y_val = key_tile_bags(20, 1)
    test, y_test = key_tile_bags(60, 2)
    before, threads = torch.random.get_rng_state(), torch.get_num_threads()
    clf = DeepMILClassifier(SMALL, key=(0,)).fit(train, y_train, val, y_val)
    proba = clf.predict_proba(test)
    assert torch.equal(before, torch.random.get_rng_state())  # the global generator is untouched
    assert torch.get_num_threads() == threads  # and so is torch's thread count
    assert list(clf.classes_) == ["0", "1"] and proba.shape == (60, 2)
    assert roc_auc_score(y_test, proba[:, 1]) > 0.95
    assert 0 <= clf.best_epoch_ < clf.epochs_ <= SMALL.max_epochs
    again = DeepMILClassifier(SMALL, key=(0,)).fit(train, y_train, val, y_val).predict_proba(test)
    np.testing.assert_array_equal(proba, again)


def test_padding_mask_matches_single_bags():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DeepMIL(8, 3, hidden=16, attention=8, dropout=0.0).eval()
    bags = [torch.randn(m, 8) for m in (3, 7, 5)]
    x, mask = _batch(bags)
    assert x.shape == (3, 7, 8) and mask.sum(1).tolist() == [3, 7, 5]
    with torch.no_grad():
        padded, attention = model(x, mask)
        single = torch.cat([model(b[None])[0] for b in bags])
    torch.testing.assert_close(padded, single)
    assert float(attention[0, 3:].abs().sum()) == 0.0


def cohort(n=40, seed=0):
    gen = np.random.default_rng(seed)
    bags, y = key_tile_bags(n, seed)
    ids = [f"slide{i:02d}" for i in range(n)]
    case = [f"case{i // 2 if i < 10 else i}" for i in range(n)]  # a few two-slide cases
    y = np.array([y[i // 2 * 2] if i < 10 else y[i] for i in range(n)])
    labels = pd.DataFrame({"slide_id": ids, "case_id": case, "label": np.array(["neg", "pos"])[y]})
    return labels, dict(zip(ids, bags)), gen


def write_banks(folder, bags):
    folder.mkdir()
    for i, (sid, bag) in enumerate(bags.items()):
        coords = np.zeros((len(bag), 2), np.int64)
        if i % 2:  # a TRIDENT / CLAM features file: features (1, M, F) + coords
            import h5py

            with h5py.File(folder / f"{sid}.h5", "w") as fh:
                fh.create_dataset("features", data=bag[None])
                fh.create_dataset("coords", data=coords)
        else:
            write_bank(folder / f"{sid}.h5", Bank(None, None, bag, coords, {"encoder": "test"}))


def test_average_embeddings_from_banks_and_trident(tmp_path):
    labels, bags, _ = cohort(6)
    write_banks(tmp_path / "bank", bags)
    ids, means = average_embeddings(tmp_path / "bank", list(bags))
    assert ids == list(bags) and means.shape == (6, 16) and means.dtype == np.float32
    expected = np.stack([b.astype(np.float16).astype(np.float64).mean(0) if i % 2 == 0 else b.mean(0)
                         for i, b in enumerate(bags.values())])
    np.testing.assert_allclose(means, expected, rtol=1e-5, atol=1e-6)
    loaded = load_bags(tmp_path / "bank", list(bags), max_tiles=5, seed=0)
    assert all(len(b) == 5 for b in loaded.values())
    assert all(np.array_equal(loaded[s], load_bags(tmp_path / "bank", [s], 5, 0)[s]) for s in bags)
    with pytest.raises(ManifestError, match="2 slide\\(s\\).*'ghost1', 'ghost2'"):
        average_embeddings(tmp_path / "bank", [*bags, "ghost1", "ghost2"])


def test_run_averagemil_and_deepmil_tables(tmp_path):
    labels, bags, _ = cohort()
    write_banks(tmp_path / "bank", bags)
    probe_config = ProbeConfig(n_splits=2, test_fraction=0.3, budgets=(1.0,), train_sizes=(12,))
    avg = run_averagemil(tmp_path / "bank", labels, "label", config=probe_config)
    assert list(avg.columns) == list(COLUMNS) and len(avg) == 4 and (avg.method == "averagemil").all()
    cfg = DeepMILConfig(**{**SMALL.__dict__, "max_epochs": 3, "patience": 2})
    out = tmp_path / "deepmil.csv"
    deep = run_deepmil(tmp_path / "bank", labels, "label", config=cfg, probe_config=probe_config, out=out)
    assert list(deep.columns)[: len(COLUMNS)] == list(COLUMNS) and {"best_epoch", "epochs"} <= set(deep.columns)
    assert (deep.method == "deepmil").all() and (deep.device == "cpu").all() and out.is_file()
    assert deep[["budget", "split", "n_train", "n_test"]].equals(avg[["budget", "split", "n_train", "n_test"]])
    assert (deep.epochs <= 3).all() and deep.auc.notna().all() and (deep.cpu_seconds > 0).all()
    again = run_deepmil(bags, labels, "label", config=cfg, probe_config=probe_config)
    np.testing.assert_allclose(again.auc, run_deepmil(bags, labels, "label", config=cfg, probe_config=probe_config).auc)
