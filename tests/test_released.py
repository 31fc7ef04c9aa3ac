"""The authors' released models: a file written in their layout (random values) loads into gigassl's aggregators and
computes what their network computes (a dense float64 rewrite of it here, on their weights in their shapes); files of
another layout are refused naming what differs; ``gigassl embed`` embeds a bank with such a file."""

import argparse
import sys
import types

import numpy as np
import pytest
import torch

from gigassl import cli, io
from gigassl.aggregators import ResidualMLPAggregator, Views
from gigassl.errors import GigasslError
from gigassl.released import SCM_PREFIXES, is_released, load_released

SCM = SCM_PREFIXES[0]  # trislaz/gigassl: backbone.net.mil_model.sparse_pooling.0.
BN = ("weight", "bias", "running_mean", "running_var")


def _bn(g, n=512):
    return {"weight": torch.from_numpy(g.uniform(0.5, 1.5, n)), "bias": torch.from_numpy(g.normal(0, 0.1, n)),
            "running_mean": torch.from_numpy(g.normal(0, 0.2, n)),
            "running_var": torch.from_numpy(g.uniform(0.5, 1.5, n))}


def their_scm(g) -> dict:
    """Their sparse layer4 keys (with the prefix) and random values in SparseConvNet's shapes (float32)."""
    conv = {"0.conv1": (9, 256, 512), "0.conv2": (9, 512, 512), "0.convd": (1, 256, 512), "1.conv1": (9, 512, 512),
            "1.conv2": (9, 512, 512)}
    out = {f"{SCM}{k}.weight": torch.from_numpy(g.normal(0, (2 / (v * c)) ** 0.5, (v, 1, c, o)))
           for k, (v, c, o) in conv.items()}
    for block, norms in (("0", ("norm1", "norm2", "normd")), ("1", ("norm1", "norm2"))):
        for n in norms:
            out |= {f"{SCM}{block}.{n}.{p}": t for p, t in _bn(g).items()}
    projector = {"layer1.0.weight": (512, 512), "layer1.0.bias": (512,), "layer2.0.weight": (512, 512),
                 "layer2.0.bias": (512,), "layer3.weight": (256, 512), "layer3.bias": (256,)}
    out |= {f"projector.{k}": torch.from_numpy(g.normal(0, 0.05, s)) for k, s in projector.items()}
    for layer in ("layer1.2", "layer2.2"):
        out |= {f"projector.{layer}.{p}": t for p, t in _bn(g).items()}
        out[f"projector.{layer}.num_batches_tracked"] = torch.tensor(7)
    out |= {f"encoder.0.net.mil_model.sparse_pooling.0.{k[len(SCM):]}": v for k, v in out.items() if k.startswith(SCM)}
    return {k: v.float() for k, v in out.items()}


def their_mlp(g, in_dim=256) -> dict:
    """Their Democratizing_WSI ResidualMLP tile-encoder keys and random values."""
    out = {}
    for name, fan_in in (("0.block.0", in_dim), ("0.block.1", 512), ("0.residual_lin", in_dim), ("1.block.0", 512),
                         ("1.block.1", 512)):
        p = f"backbone.mil.tile_encoder.{name}"
        out[f"{p}.block.0.weight"] = torch.from_numpy(g.normal(0, fan_in ** -0.5, (512, fan_in)))
        out[f"{p}.block.0.bias"] = torch.from_numpy(g.normal(0, 0.1, 512))
        out |= {f"{p}.norm.{k}": t for k, t in _bn(g).items()} | {f"{p}.norm.num_batches_tracked": torch.tensor(3)}
    out["backbone.mil.classifier.weight"] = torch.zeros(512, 512)
    return {k: v.float() if v.is_floating_point() else v for k, v in out.items()}


def save_theirs(path, state, monkeypatch, downmap=224, namespace=True):
    """torch.save as their training script does; the config as their argparse/arguments.Namespace objects (whose
    module only exists while saving) or, with ``namespace=False``, a dict as in the Democratizing_WSI files."""
    if namespace:
        module = types.ModuleType("arguments")
        Namespace = type("Namespace", (), {"__module__": "arguments"})
        module.Namespace = Namespace
        monkeypatch.setitem(sys.modules, "arguments", module)
        model, dataset = Namespace(), Namespace()
        model.__dict__.update(downmap=downmap, num_class=512, name="simclrmil")
        dataset.__dict__.update(nb_tiles=5, Naug=50)
        config = argparse.Namespace(model=model, dataset=dataset, name="tcga")
    else:
        config = {"downmap": downmap, "num_class": 512, "feature_depth": 256, "bn": True, "dropout": 0.0}
    torch.save({"epoch": 1001, "state_dict": state, "config": config}, path)
    if namespace:
        monkeypatch.delitem(sys.modules, "arguments")
    return path


# ------------------------------------------------------------------ their network, rewritten densely in float64

def _theirs(state: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v.double().numpy() for k, v in state.items() if k.startswith(prefix)}


def _norm(w, name, x, act):
    y = (x - w[f"{name}.running_mean"][:, None, None]) / np.sqrt(w[f"{name}.running_var"][:, None, None] + 1e-5)
    return (y * w[f"{name}.weight"][:, None, None] + w[f"{name}.bias"][:, None, None]) * act


def _subm(x, act, weight):
    """SubmanifoldConvolution on a dense (C, X, Y) map: weight[a * k + b, 0] (C_in, C_out) applies to the input at
    offset (a - r, b - r) along (x, y); outputs at the active sites only."""
    k = int(round(weight.shape[0] ** 0.5))
    r = k // 2
    xp = np.pad(x, ((0, 0), (r, r), (r, r)))
    out = np.zeros((weight.shape[3],) + x.shape[1:])
    for a in range(k):
        for b in range(k):
            out += np.einsum("cxy,cd->dxy", xp[:, a:a + x.shape[1], b:b + x.shape[2]], weight[a * k + b, 0])
    return out * act


def _windows(x):
    """The 3x3 stride-2 windows of a (C, X, Y) map with odd X, Y: (C, 3, 3, O_x, O_y)."""
    ox, oy = (x.shape[1] - 3) // 2 + 1, (x.shape[2] - 3) // 2 + 1
    return np.stack([np.stack([x[:, a:a + 2 * ox:2, b:b + 2 * oy:2] for b in range(3)], 1) for a in range(3)], 1)


def _strided(x, weight):
    win = _windows(x)
    return sum(np.einsum("cxy,cd->dxy", win[:, a, b], weight[a * 3 + b, 0]) for a in range(3) for b in range(3))


def their_scm_forward(w: dict, feats: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Their SparseConvMIL on one view: sites = coords - min (x first), tiles on a site averaged, layer4 of
    SparseBasicBlocks, the mean over the active sites. Shape: (T, 256), (T, 2) -> (512,)."""
    loc = coords - coords.min(0)
    size = []
    for m in loc.max(0):  # their __correct_size_for_convs
        s = max(m + 1, 5)
        s += s % 2 == 0
        size.append(s + 2 * (s // 2 % 2 == 0))
    x, count = np.zeros((256, *size)), np.zeros(size)
    for f, (i, j) in zip(feats, loc):
        x[:, i, j] += f
        count[i, j] += 1
    act = (count > 0).astype(float)
    x = x / np.maximum(count, 1)
    act2 = (_windows(act[None])[0].sum((0, 1)) > 0).astype(float)
    a = np.maximum(_norm(w, "0.norm1", _strided(x, w["0.conv1.weight"]), act2), 0)
    a = _norm(w, "0.norm2", _subm(a, act2, w["0.conv2.weight"]), act2)
    s = _windows(x).sum((1, 2)) / 9
    s = _norm(w, "0.normd", _subm(s, act2, w["0.convd.weight"]), act2)
    x = np.maximum(a + s, 0) * act2
    a = np.maximum(_norm(w, "1.norm1", _subm(x, act2, w["1.conv1.weight"]), act2), 0)
    a = _norm(w, "1.norm2", _subm(a, act2, w["1.conv2.weight"]), act2)
    x = np.maximum(a + x, 0) * act2
    return x.sum((1, 2)) / act2.sum()


def their_mlp_forward(w: dict, feats: np.ndarray) -> np.ndarray:
    """Their ResidualMLP on one view: two residual blocks per tile, the mean over the tiles. (T, F) -> (512,)."""
    def lbn(name, x, relu):
        y = x @ w[f"{name}.block.0.weight"].T + w[f"{name}.block.0.bias"]
        y = np.maximum(y, 0) if relu else y
        return (y - w[f"{name}.norm.running_mean"]) / np.sqrt(w[f"{name}.norm.running_var"] + 1e-5) \
            * w[f"{name}.norm.weight"] + w[f"{name}.norm.bias"]

    x = feats
    x = np.maximum(lbn("0.block.1", lbn("0.block.0", x, True), False) + lbn("0.residual_lin", x, False), 0)
    x = np.maximum(lbn("1.block.1", lbn("1.block.0", x, True), False) + x, 0)
    return x.mean(0)


def _views(g, offsets, t=12, dim=256):
    coords = np.stack([g.integers(0, [9, 7], (t, 2)) + np.asarray(o) for o in offsets])
    return g.normal(size=(len(offsets), t, dim)), coords


# ------------------------------------------------------------------------------------------------------ tests

@pytest.mark.parametrize("namespace", [True, False])
def test_their_sparse_cnn_computes_their_forward(tmp_path, monkeypatch, namespace):
    g = np.random.default_rng(0)
    state = their_scm(g)
    if not namespace:  # the Democratizing_WSI releases: backbone.mil. prefix, a dict config, no projector
        state = {k.replace("backbone.", "backbone.mil."): v for k, v in state.items() if k.startswith("backbone.")}
    path = save_theirs(tmp_path / "theirs.pth", state, monkeypatch, namespace=namespace)
    assert is_released(path)
    model, info = load_released(path)
    assert isinstance(model, torch.nn.Module) and not model.training
    assert info["kind"] == "scm" and info["downsample"] == 224 and info["epoch"] == 1001
    assert info["tiles_per_view"] == 5 and (info["projector"] is not None) == namespace
    # views whose smallest coordinates have every parity (the origin matters for stride-2 windows)
    feats, coords = _views(g, [(0, 0), (3, 8), (5, 2), (2, 5)])
    with torch.no_grad():
        ours = model.double()(Views(torch.from_numpy(feats), torch.from_numpy(coords))).numpy()
    prefix = [p for p in SCM_PREFIXES if any(k.startswith(p) for k in state)][0]
    w = _theirs(state, prefix)
    ref = np.stack([their_scm_forward(w, f, c) for f, c in zip(feats, coords)])
    assert np.abs(ref).max() > 0.1
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_gigassl_origin_is_another_map(tmp_path, monkeypatch):
    g = np.random.default_rng(1)
    path = save_theirs(tmp_path / "theirs.pth", their_scm(g), monkeypatch)
    theirs, ours = load_released(path)[0].double(), load_released(path, origin="gigassl")[0].double()
    feats, coords = _views(g, [(0, 0), (1, 1)])
    views = Views(torch.from_numpy(feats), torch.from_numpy(coords))
    with torch.no_grad():
        a, b = theirs(views).numpy(), ours(views).numpy()
    assert not np.allclose(a[0], b[0], rtol=1e-3)  # even smallest site: a window corner vs a window centre


def test_their_mlp_computes_their_forward(tmp_path, monkeypatch):
    g = np.random.default_rng(2)
    state = their_mlp(g, in_dim=64)
    path = save_theirs(tmp_path / "mlp.pth", state, monkeypatch, namespace=False)
    model, info = load_released(path)
    assert isinstance(model, ResidualMLPAggregator) and info["kind"] == "mlp" and info["in_dim"] == 64
    feats, coords = _views(g, [(0, 0), (4, 1)], dim=64)
    with torch.no_grad():
        ours = model.double()(Views(torch.from_numpy(feats), torch.from_numpy(coords))).numpy()
    w = _theirs(state, "backbone.mil.tile_encoder.")
    ref = np.stack([their_mlp_forward(w, f) for f in feats])
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-9 * np.abs(ref).max())


def test_files_of_another_layout_are_refused_naming_what_differs(tmp_path, monkeypatch):
    g = np.random.default_rng(3)
    state = their_scm(g)
    torch.save({"model": {"aggregator.x": torch.zeros(1)}, "in_dim": 256, "config": {}}, tmp_path / "ours.pt")
    with pytest.raises(GigasslError, match="written by `gigassl train`"):
        load_released(tmp_path / "ours.pt")
    missing = {k: v for k, v in state.items() if k != f"{SCM}0.convd.weight"}
    with pytest.raises(GigasslError, match=r"missing 0\.convd\.weight") as err:
        load_released(save_theirs(tmp_path / "missing.pth", missing, monkeypatch))
    assert "missing.pth" in str(err.value)
    dense = state | {f"{SCM}0.conv1.weight": torch.zeros(512, 256, 3, 3)}  # torch's layout, not SparseConvNet's
    with pytest.raises(GigasslError, match=r"0\.conv1\.weight \(512, 256, 3, 3\) \(expected \(9, 1, 256, 512\)\)"):
        load_released(save_theirs(tmp_path / "dense.pth", dense, monkeypatch))
    extra = state | {f"{SCM}2.conv1.weight": torch.zeros(9, 1, 512, 512)}
    with pytest.raises(GigasslError, match=r"unexpected 2\.conv1\.weight"):
        load_released(save_theirs(tmp_path / "extra.pth", extra, monkeypatch))
    resnet = {"backbone.layer4.0.conv1.weight": torch.zeros(512, 256, 3, 3)}
    with pytest.raises(GigasslError, match="holds neither their sparse CNN"):
        load_released(save_theirs(tmp_path / "resnet.pth", resnet, monkeypatch))
    with pytest.raises(GigasslError, match="no 'state_dict'"):
        torch.save({"epoch": 1, "weights": {"backbone.x": torch.zeros(1)}}, tmp_path / "flat.pth")
        load_released(tmp_path / "flat.pth")


def test_embed_with_their_file(synthetic_bank, tmp_path, monkeypatch):
    g = np.random.default_rng(4)
    path = save_theirs(tmp_path / "gigassl_e1000.pth", their_scm(g), monkeypatch, downmap=64)
    out = tmp_path / "e.h5"
    assert cli.main(["embed", "--bank", str(synthetic_bank), "--checkpoint", str(path), "--out", str(out),
                     "--views", "3", "--tiles-per-view", "4", "--profile", "smoke", "--no-progress"]) == 0
    ids, emb, attrs = io.read_embeddings(out)
    assert len(ids) == 16 and emb.shape == (16, 512) and np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    assert attrs["aggregator"] == "released-scm" and attrs["epoch"] == 1001
    assert np.abs(emb[0] - emb[1]).max() > 1e-3  # slides differ
