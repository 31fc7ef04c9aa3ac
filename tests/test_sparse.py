"""Sparse layers (gigassl.sparse) against a masked dense computation, for both backends."""

from __future__ import annotations

import sys

import pytest
import torch
import torch.nn.functional as F

from gigassl.errors import ConfigError
from gigassl.sparse import (SparseAvgPool2d, SparseConv2d, SparseTensor, SubMConv2d, global_average, set_backend,
                            valid_spatial_size)
from gigassl.seeding import torch_seeded

BACKENDS = ["torch", "spconv"]
C_IN, C_OUT = 5, 7


pytestmark = pytest.mark.usefixtures("one_thread")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def random_sparse(seed: int, batch: int = 4) -> SparseTensor:
    """Random maps: one density per batch element (isolated sites to dense clusters), plus a 3x3 cluster,
    an isolated corner site and a site on the far border, on an odd spatial size from valid_spatial_size."""
    gen = torch.Generator().manual_seed(seed)
    max_y, max_x = 6 + seed % 5, 9 + seed % 3
    height, width = valid_spatial_size(max_y), valid_spatial_size(max_x)
    densities = [0.05, 0.2, 0.5, 0.9]
    sites = []
    for b in range(batch):
        occupied = torch.rand(max_y + 1, max_x + 1, generator=gen) < densities[b % len(densities)]
        occupied[0, 0] = True
        occupied[max_y, max_x] = True
        if b % 2 == 0:
            occupied[2:5, 3:6] = True
        yx = occupied.nonzero()
        sites.append(torch.cat([torch.full((len(yx), 1), b), yx], 1))
    coords = torch.cat(sites)
    features = torch.randn(len(coords), C_IN, generator=gen)
    return SparseTensor.from_sites(coords, features, batch, (height, width))


def dense_at(dense: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Rows of a (B, C, H, W) map at the sites ``coords`` (n, 3)."""
    b, y, x = coords.unbind(1)
    return dense[b, :, y, x]


LAYERS = {
    "subm3": (lambda be: SubMConv2d(C_IN, C_OUT, 3, backend=be), lambda d, w: F.conv2d(d, w, padding=1)),
    "subm1": (lambda be: SubMConv2d(C_IN, C_OUT, 1, backend=be), lambda d, w: F.conv2d(d, w)),
    "conv3s2": (lambda be: SparseConv2d(C_IN, C_OUT, 3, 2, backend=be), lambda d, w: F.conv2d(d, w, stride=2)),
    "avgpool": (lambda be: SparseAvgPool2d(3, 2, backend=be), lambda d, w: F.avg_pool2d(d, 3, 2)),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_layer_matches_masked_dense(backend, layer, seed):
    build, dense_op = LAYERS[layer]
    with torch_seeded(seed):
        module = build(backend)
    x = random_sparse(seed)
    feats = x.features.clone().requires_grad_(True)
    out = module(x.replace(feats))
    weight = getattr(module, "weight", None)
    params = [feats] + ([weight] if weight is not None else [])

    dense_in = x.to_dense().clone().requires_grad_(True)
    ref_dense = dense_op(dense_in, weight)

    # output sites: submanifold = input sites; strided = windows holding an active input (the dense rule)
    if layer.startswith("subm"):
        assert torch.equal(out.coords, x.coords)
    else:
        active = F.max_pool2d(x.to_dense().abs().sum(1, keepdim=True).gt(0).float(), 3, 2) > 0
        assert torch.equal(out.coords, active[:, 0].nonzero())  # both sorted by (b, y, x)
        assert out.spatial_size == tuple(ref_dense.shape[2:])
    ref = dense_at(ref_dense, out.coords)
    assert rel_err(out.features.detach(), ref.detach()) <= 1e-4

    # gradients w.r.t. the input features (dense gradient read at the active sites) and the weight
    upstream = torch.randn(out.features.shape, generator=torch.Generator().manual_seed(seed + 100))
    grads = torch.autograd.grad((out.features * upstream).sum(), params)
    ref_grads = torch.autograd.grad((ref * upstream).sum(), [dense_in] + params[1:])
    assert rel_err(grads[0], dense_at(ref_grads[0], x.coords)) <= 1e-4
    if weight is not None:
        assert rel_err(grads[1], ref_grads[1]) <= 1e-4


def test_from_sites_averages_duplicates_and_to_dense():
    coords = torch.tensor([[0, 1, 2], [0, 1, 2], [1, 0, 0], [0, 1, 2], [1, 2, 1]])
    feats = torch.tensor([[1.0], [2.0], [5.0], [6.0], [7.0]])
    x = SparseTensor.from_sites(coords, feats, 2, (3, 3))
    assert x.coords.tolist() == [[0, 1, 2], [1, 0, 0], [1, 2, 1]]
    assert x.features[:, 0].tolist() == [3.0, 5.0, 7.0]
    dense = x.to_dense()
    assert dense.shape == (2, 1, 3, 3) and dense[0, 0, 1, 2] == 3.0 and dense.sum() == 15.0


def test_global_average_is_the_mean_over_each_element_sites():
    x = random_sparse(3)
    expected = torch.stack([x.features[x.coords[:, 0] == b].mean(0) for b in range(x.batch_size)])
    assert rel_err(global_average(x), expected) <= 1e-6
    empty = SparseTensor(torch.ones(1, 2), torch.tensor([[1, 0, 0]]), 3, (3, 3))
    assert global_average(empty).tolist() == [[0.0, 0.0], [1.0, 1.0], [0.0, 0.0]]


def test_valid_spatial_size():
    assert [valid_spatial_size(m) for m in range(7)] == [3, 3, 3, 5, 5, 7, 7]


def test_kernel_maps_are_cached_and_shared():
    x = random_sparse(0)
    with torch_seeded(0):
        conv, pool = SparseConv2d(C_IN, C_OUT), SparseAvgPool2d()
        subm_a, subm_b = SubMConv2d(C_OUT, C_OUT, 3), SubMConv2d(C_OUT, C_OUT, 3)
    y, z = conv(x), pool(x)
    assert y.coords is z.coords and y.cache is z.cache  # conv and pool share their output sites
    subm_a(y)
    first = y.cache[("subm", 3)]
    subm_b(y)
    assert y.cache[("subm", 3)] is first


def test_errors():
    with pytest.raises(ConfigError, match="sparse backend='cuda' is not allowed: it must be one of 'torch', 'spconv'"):
        SubMConv2d(2, 2, 3, backend="cuda")
    with pytest.raises(ConfigError, match="kernel_size 1 or 3"):
        SubMConv2d(2, 2, 5)
    with pytest.raises(ValueError, match="valid_spatial_size"):
        SparseTensor.from_sites(torch.tensor([[0, 5, 0]]), torch.ones(1, 2), 1, (5, 5))
    lost = SparseTensor(torch.ones(1, 2), torch.tensor([[0, 3, 0]]), 1, (4, 3))  # even size: row 3 is in no window
    with pytest.raises(ValueError, match="no 3x3 stride-2 window"):
        SparseAvgPool2d()(lost)


def test_missing_spconv_gives_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "spconv", None)
    monkeypatch.setitem(sys.modules, "spconv.pytorch", None)
    monkeypatch.setitem(sys.modules, "spconv.pytorch.ops", None)
    import gigassl.sparse as sparse

    with pytest.raises(ConfigError, match="pip install spconv"):
        sparse._import_spconv()


def test_backends_agree_on_the_whole_aggregator():
    from gigassl.aggregators import SparseConvAggregator, Views

    gen = torch.Generator().manual_seed(7)
    views = Views(torch.randn(6, 8, 256, generator=gen), torch.randint(-3, 12, (6, 8, 2), generator=gen),
                  torch.rand(6, 8, generator=gen) < 0.8)
    results = {}
    for backend in BACKENDS:
        with torch_seeded(0):
            model = SparseConvAggregator(256, backend="torch")
        set_backend(model, backend)
        feats = views.features.clone().requires_grad_(True)
        out = model(Views(feats, views.coords, views.mask))
        upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        (out * upstream).sum().backward()
        grads = {name: p.grad.clone() for name, p in model.named_parameters()}
        results[backend] = (out.detach(), feats.grad, grads)
    (out_a, gx_a, gw_a), (out_b, gx_b, gw_b) = results["torch"], results["spconv"]
    assert rel_err(out_b, out_a) <= 1e-4
    assert rel_err(gx_b, gx_a) <= 1e-4
    for name in gw_a:
        assert rel_err(gw_b[name], gw_a[name]) <= 1e-4, name
