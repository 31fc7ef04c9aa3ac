"""Baselines of Table 2: AverageMIL from banks, DeepMIL (gated attention MIL) trained from scratch."""

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from sklearn.metrics import roc_auc_score

from gigassl.evaluation.baselines import (DeepMIL, DeepMILClassifier, _packed, average_embeddings, load_bags,
                                          run_averagemil, run_deepmil)
from gigassl.config import DeepMILConfig, ProbeConfig
from gigassl.errors import ManifestError
from gigassl.io import Bank, write_bank
from gigassl.evaluation.protocol import COLUMNS

SMALL = DeepMILConfig(hidden=32, attention=16, dropout=0.1, lr=5e-3, weight_decay=1e-4, batch_size=8,
                      max_steps=400, eval_every=10, patience=80, device="cpu", seed=0)


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
    assert 0 < clf.best_step_ <= clf.steps_ <= SMALL.max_steps
    assert clf.steps_ < SMALL.max_steps or clf.steps_ - clf.best_step_ < SMALL.patience
    assert [row["step"] for row in clf.history_] == list(range(10, clf.steps_ + 1, 10))
    again = DeepMILClassifier(SMALL, key=(0,)).fit(train, y_train, val, y_val).predict_proba(test)
    np.testing.assert_array_equal(proba, again)


def test_packed_bags_match_padded_bags_and_single_bags():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DeepMIL(8, 3, hidden=16, attention=8, dropout=0.0).eval()
    bags = [torch.randn(m, 8) for m in (3, 7, 5)]
    x, sizes = _packed(bags)
    assert x.shape == (15, 8) and sizes.tolist() == [3, 7, 5]
    padded = nn.utils.rnn.pad_sequence(bags, batch_first=True)
    mask = torch.arange(7)[None] < sizes[:, None]
    logits, attention = model.forward_packed(x, sizes)
    reference, padded_attention = model(padded, mask)
    single = torch.cat([model(b[None])[0] for b in bags])
    torch.testing.assert_close(logits, reference)
    torch.testing.assert_close(logits, single)
    torch.testing.assert_close(attention, padded_attention[mask])  # each bag's weights, in order
    torch.testing.assert_close(torch.stack([w.sum() for w in attention.split(sizes.tolist())]), torch.ones(3))
    assert float(padded_attention[0, 3:].detach().abs().sum()) == 0.0
    # the gradients too (what training uses): the padded rows contribute nothing
    grads = []
    for out in (logits, reference):
        model.zero_grad()
        (out * torch.arange(9.0).view(3, 3)).sum().backward(retain_graph=True)
        grads.append([p.grad.clone() for p in model.parameters()])
    for packed_grad, padded_grad in zip(*grads):
        torch.testing.assert_close(packed_grad, padded_grad)


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
    with pytest.raises(ManifestError, match="no bank file.*\\(2: 'ghost1', 'ghost2'\\)"):
        average_embeddings(tmp_path / "bank", [*bags, "ghost1", "ghost2"])


def test_run_averagemil_and_deepmil_tables(tmp_path):
    labels, bags, _ = cohort()
    write_banks(tmp_path / "bank", bags)
    probe_config = ProbeConfig(n_splits=2, test_fraction=0.3, budgets=(1.0,), train_sizes=(12,))
    avg = run_averagemil(tmp_path / "bank", labels, "label", config=probe_config)
    assert list(avg.columns)[: len(COLUMNS)] == list(COLUMNS) and len(avg) == 4 and (avg.method == "averagemil").all()
    cfg = DeepMILConfig(**{**SMALL.__dict__, "max_steps": 6, "eval_every": 2, "patience": 4})
    out = tmp_path / "deepmil.csv"
    deep = run_deepmil(tmp_path / "bank", labels, "label", config=cfg, probe_config=probe_config, out=out)
    assert list(deep.columns)[: len(COLUMNS)] == list(COLUMNS) and {"best_step", "steps"} <= set(deep.columns)
    assert (deep.method == "deepmil").all() and (deep.device == "cpu").all() and out.is_file()
    assert deep[["budget", "split", "n_train", "n_test"]].equals(avg[["budget", "split", "n_train", "n_test"]])
    assert (deep.steps <= 6).all() and deep.auc.notna().all() and (deep.cpu_seconds > 0).all()
    again = run_deepmil(bags, labels, "label", config=cfg, probe_config=probe_config)
    np.testing.assert_allclose(again.auc, run_deepmil(bags, labels, "label", config=cfg, probe_config=probe_config).auc)


def test_deepmil_standardises_with_the_training_bags():
    train, y_train = key_tile_bags(40, 0)
    shifted = [b * 50 + 1000 for b in train]
    clf = DeepMILClassifier(SMALL, key=(0,)).fit(shifted, y_train)
    tiles = np.concatenate(shifted)
    np.testing.assert_allclose(clf.mean_.numpy(), tiles.mean(0), rtol=1e-4)
    np.testing.assert_allclose(clf.std_.numpy(), tiles.std(0, ddof=1), rtol=1e-3)
    # standardised inputs: the same model as on the unshifted bags, up to float rounding
    plain = DeepMILClassifier(SMALL, key=(0,)).fit(train, y_train)
    np.testing.assert_allclose(clf.predict_proba(shifted[:5]), plain.predict_proba(train[:5]), atol=1e-3)
    raw = DeepMILClassifier(DeepMILConfig(**{**SMALL.__dict__, "standardize": False}), key=(0,)).fit(shifted, y_train)
    assert float(raw.mean_.abs().sum()) == 0 and float(raw.std_.sum()) == raw.std_.numel()


def test_deepmil_runs_on_its_first_splits_only_and_reports_curves(tmp_path):
    labels, bags, _ = cohort()
    probe_config = ProbeConfig(n_splits=4, test_fraction=0.3, budgets=(1.0,), train_sizes=())
    cfg = DeepMILConfig(**{**SMALL.__dict__, "max_steps": 20, "eval_every": 5, "patience": 10, "n_splits": 2})
    curves = []
    deep = run_deepmil(bags, labels, "label", config=cfg, probe_config=probe_config, curves=curves)
    avg = run_averagemil(bags, labels, "label", config=probe_config)
    assert deep.split.tolist() == ["split_0", "split_1"] and len(avg) == 4
    first = avg[avg.split.isin(deep.split)]
    assert first[["split", "n_train", "n_test"]].reset_index(drop=True).equals(
        deep[["split", "n_train", "n_test"]].reset_index(drop=True))  # the probe's first splits exactly
    frame = pd.DataFrame(curves)
    assert set(frame.split) == {"split_0", "split_1"} and {"step", "train_loss", "val_loss"} <= set(frame.columns)
    assert frame.groupby("split").step.apply(lambda s: (s.diff().dropna() == 5).all()).all()


def test_deepmil_beats_averagemil_where_few_tiles_carry_the_label():
    from gigassl.evaluation.baselines import few_tile_task
    from gigassl.evaluation.compare import paired

    bags, labels = few_tile_task(n_bags=80, seed=0)
    assert labels.few_tiles.value_counts().tolist() == [40, 40]
    probe_config = ProbeConfig(n_splits=3, test_fraction=0.3, budgets=(1.0,), train_sizes=())
    cfg = DeepMILConfig(**{**SMALL.__dict__, "max_steps": 300, "eval_every": 10, "patience": 100})
    both = pd.concat([run_averagemil(bags, labels, "few_tiles", config=probe_config),
                      run_deepmil(bags, labels, "few_tiles", config=cfg, probe_config=probe_config)])
    result = paired(both, "deepmil", "averagemil", n_bootstrap=200).iloc[0]
    assert result.auc_a > 0.9 and result.difference > 0.1


def test_average_halves_are_disjoint_means():
    from gigassl.evaluation.baselines import average_halves

    bags = {"a": np.arange(10, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32),
            "b": np.ones((1, 3), np.float32)}
    first, second = average_halves(bags, ["a", "b"], seed=0)
    assert first.shape == second.shape == (2, 3)
    assert first[0, 0] + second[0, 0] == pytest.approx(9.0)  # two halves of 0..9 average to 4.5 each side overall
    assert first[0, 0] != second[0, 0] and np.array_equal(first[1], second[1])


def test_both_baselines_on_trident_features_leave_out_and_list_the_empty_slide(trident_features, tmp_path):
    from gigassl.bank import bank_slide_ids

    ids = bank_slide_ids(trident_features)
    assert "EMPTY" in ids
    labels = pd.DataFrame({"slide_id": ids, "case_id": ids, "label": ["a", "b"] * (len(ids) // 2) + ["a"]})
    probe_config = ProbeConfig(n_splits=2, test_fraction=0.5, budgets=(1.0,), train_sizes=())
    cfg = DeepMILConfig(hidden=16, attention=8, max_steps=6, eval_every=2, patience=4, batch_size=4, device="cpu")
    for table in (run_averagemil(trident_features, labels, "label", config=probe_config, out=tmp_path / "avg.csv"),
                  run_deepmil(trident_features, labels, "label", config=cfg, probe_config=probe_config,
                              out=tmp_path / "deep.csv")):
        assert list(table.attrs["failures"]) == ["EMPTY"] and len(table) == 2
        assert set(table["n_train"] + table["n_test"]) == {16}  # every slide but the empty one
    for name in ("avg.csv", "deep.csv"):
        assert pd.read_csv(tmp_path / f"{name}.failures.csv")["slide_id"].tolist() == ["EMPTY"]
    with pytest.raises(ManifestError, match="no tile embedding"):
        load_bags(trident_features, ["EMPTY"])
