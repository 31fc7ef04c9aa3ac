"""Aggregators, projector and the GigaSSL wrapper (gigassl.aggregators)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gigassl.aggregators import (AttentionAggregator, GigaSSL, MeanAggregator, Projector, SparseConvAggregator, Views,
                                 build_aggregator)
from gigassl.errors import ConfigError
from gigassl.seeding import torch_seeded


pytestmark = pytest.mark.usefixtures("one_thread")


def random_views(seed: int, batch: int = 4, tiles: int = 6, dim: int = 256, span: int = 12, padding: bool = True):
    gen = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, tiles, generator=gen) < 0.75 if padding else None
    if mask is not None:
        mask[:, 0] = True
    coords = torch.randint(0, span, (batch, tiles, 2), generator=gen)
    return Views(torch.randn(batch, tiles, dim, generator=gen), coords, mask)


def build(name: str, in_dim: int = 256) -> nn.Module:
    with torch_seeded(0):
        return build_aggregator(name, in_dim)


# ------------------------------------------------------------------------------------------- shapes, masks


@pytest.mark.parametrize("name,cls,out_dim", [
    ("sparseconv", SparseConvAggregator, 512), ("attention", AttentionAggregator, 512), ("mean", MeanAggregator, 256),
])
def test_shapes(name, cls, out_dim):
    model = build(name)
    assert isinstance(model, cls) and model.out_dim == out_dim
    assert model(random_views(0)).shape == (4, out_dim)


def test_sparse_aggregator_with_another_feature_size():
    model = build("sparseconv", in_dim=64)
    assert model(random_views(0, dim=64)).shape == (4, 512)


@pytest.mark.parametrize("name", ["sparseconv", "attention", "mean"])
@pytest.mark.parametrize("training", [False, True])
def test_padding_tiles_do_not_change_outputs(name, training):
    model = build(name).train(training)
    views = random_views(1, padding=False)
    gen = torch.Generator().manual_seed(2)
    padded = Views(
        torch.cat([views.features, 100 * torch.randn(4, 3, 256, generator=gen)], 1),
        torch.cat([views.coords, torch.randint(-50, 500, (4, 3, 2), generator=gen)], 1),
        torch.cat([torch.ones(4, 6, dtype=torch.bool), torch.zeros(4, 3, dtype=torch.bool)], 1),
    )
    torch.testing.assert_close(model(padded), model(views), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["attention", "mean"])
def test_tile_permutation_invariance(name):
    model = build(name)
    views = random_views(3)
    perm = torch.randperm(views.features.shape[1], generator=torch.Generator().manual_seed(0))
    permuted = Views(views.features[:, perm], views.coords[:, perm], views.mask[:, perm])
    torch.testing.assert_close(model(permuted), model(views), rtol=1e-5, atol=1e-6)


def test_sparse_translation_invariance_for_even_shifts():
    """The strided layers see the grid of windows {2o, 2o+1, 2o+2}: an even shift maps it onto itself (and
    to_sparse removes the shift), an odd shift moves the tiles across windows and changes the output."""
    model = build("sparseconv").eval()
    views = random_views(4, padding=False)
    base = model(views)
    for shift in ([2, 0], [4, -6], [-10, 14], [1000, 2]):
        moved = Views(views.features, views.coords + torch.tensor(shift), views.mask)
        assert torch.equal(model(moved), base), shift
    odd = Views(views.features, views.coords + torch.tensor([1, 0]), views.mask)
    assert not torch.allclose(model(odd), base, atol=1e-4)


def test_views_in_one_batch_do_not_affect_each_other_in_eval():
    model = build("sparseconv").eval()
    views = random_views(5, padding=False)
    alone = model(Views(views.features[:1], views.coords[:1]))
    big = Views(views.features, views.coords.clone())
    big.coords[1:] *= 7  # other views span a much larger map
    torch.testing.assert_close(model(big)[:1], alone, rtol=1e-5, atol=1e-6)


def test_construction_is_seedable():
    for name in ("sparseconv", "attention"):
        first, second = build(name).state_dict(), build(name).state_dict()
        assert all(torch.equal(first[k], second[k]) for k in first)
    with torch_seeded(0):
        projector_a = Projector()
    with torch_seeded(0):
        projector_b = Projector()
    with torch_seeded(1):
        projector_c = Projector()
    assert torch.equal(projector_a.net[0].weight, projector_b.net[0].weight)
    assert not torch.equal(projector_a.net[0].weight, projector_c.net[0].weight)


def test_projector_and_wrapper():
    with torch_seeded(0):
        model = GigaSSL(build_aggregator("sparseconv"), Projector())
    views = random_views(6)
    assert model.embed(views).shape == (4, 512)
    assert model(views).shape == (4, 256)
    layers = [type(m).__name__ for m in model.projector.net]
    assert layers == ["Linear", "ReLU", "BatchNorm1d", "Linear", "ReLU", "BatchNorm1d", "Linear"]


def test_errors():
    with pytest.raises(ConfigError, match="it must be one of 'sparseconv', 'attention', 'mean'"):
        build_aggregator("transformer", 256)
    with pytest.raises(ValueError, match="coords"):
        Views(torch.zeros(2, 3, 4), torch.zeros(2, 3), None)
    with pytest.raises(ValueError, match="missing"):
        SparseConvAggregator().load_dense_layer4({"0.conv1.weight": torch.zeros(512, 256, 3, 3)})


# ------------------------------------------------------------------------- equivalence with the dense layer4


class DenseBasicBlock(nn.Module):
    """torchvision's BasicBlock (same attribute names), with an optional average-pool shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (
            nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out)) if stride != 1 else None
        )

    def main(self, x):
        return self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))

    def shortcut(self, x, avgpool: bool):
        if self.downsample is None:
            return x
        if avgpool:  # the sparse shortcut: 3x3 stride-2 box average (zero padding counted), then the 1x1 conv
            pooled = F.avg_pool2d(x, 3, 2, padding=1, count_include_pad=True)
            return self.downsample[1](F.conv2d(pooled, self.downsample[0].weight))
        return self.downsample(x)

    def forward(self, x, avgpool: bool = False):
        return F.relu(self.main(x) + self.shortcut(x, avgpool))


def dense_layer4() -> nn.Sequential:
    with torch_seeded(11):
        layer4 = nn.Sequential(DenseBasicBlock(256, 512, 2), DenseBasicBlock(512, 512, 1))
        for module in layer4.modules():  # non-trivial BatchNorm statistics
            if isinstance(module, nn.BatchNorm2d):
                module.weight.data.uniform_(0.5, 1.5)
                module.bias.data.normal_(0, 0.1)
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return layer4.eval()


def full_map_views(dense: torch.Tensor) -> Views:
    """Every site of a (B, C, n, n) map active: tile (x, y) carries dense[:, :, y, x]."""
    batch, channels, height, width = dense.shape
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    coords = torch.stack([x.reshape(-1), y.reshape(-1)], 1).expand(batch, -1, -1)
    return Views(dense.permute(0, 2, 3, 1).reshape(batch, -1, channels), coords)


@pytest.mark.parametrize("size", [5, 7])
def test_fully_dense_map_equals_dense_layer4(size):
    """On a fully active map of odd size the sparse aggregator loaded with load_dense_layer4 equals the dense
    torchvision layer4, except for the shortcut of block 0.

    - Main branch of block 0: to_sparse places tile (0, 0) at site (1, 1), so the unpadded stride-2 window
      o covers tiles 2o-1 .. 2o+1, the window of the dense conv with padding 1 (the inactive site 0 plays the
      zero padding); with an odd size both have (size + 1) / 2 outputs per axis. Submanifold 3x3 convs on a fully
      active map are dense convs with padding 1. Hence the main branch agrees exactly (BN in eval mode).
    - Shortcut: torchvision samples every second pixel (strided 1x1 conv); the sparse network averages the 3x3
      window first (SparseAvgPool2d). They differ, and the sparse one equals a dense shortcut
      ``1x1 conv(avg_pool2d(x, 3, 2, padding=1, count_include_pad=True))``.
    - Block 1 agrees exactly, and so does the whole network against the dense layer4 with that shortcut.
    """
    layer4 = dense_layer4()
    with torch_seeded(0):
        sparse = SparseConvAggregator(256).load_dense_layer4(layer4.state_dict()).eval()
    dense = torch.randn(2, 256, size, size, generator=torch.Generator().manual_seed(size))
    x = sparse.to_sparse(full_map_views(dense))
    block0, block1 = sparse.blocks

    with torch.no_grad():
        main = block0.main(x)
        torch.testing.assert_close(main.to_dense(), layer4[0].main(dense), rtol=1e-4, atol=1e-4)
        shortcut = block0.shortcut(x).to_dense()
        torch.testing.assert_close(shortcut, layer4[0].shortcut(dense, avgpool=True), rtol=1e-4, atol=1e-4)
        assert not torch.allclose(shortcut, layer4[0].shortcut(dense, avgpool=False), atol=1e-2)

        hidden = layer4[0](dense, avgpool=True)
        hidden_sparse = block0(x)
        torch.testing.assert_close(hidden_sparse.to_dense(), hidden, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(block1(hidden_sparse).to_dense(), layer4[1](hidden), rtol=1e-4, atol=1e-4)

        expected = layer4[1](hidden).mean((2, 3))
        torch.testing.assert_close(sparse(full_map_views(dense)), expected, rtol=1e-4, atol=1e-4)


def test_load_dense_layer4_accepts_a_resnet_prefix_and_copies_every_tensor():
    layer4 = dense_layer4()
    state = {f"layer4.{k}": v for k, v in layer4.state_dict().items()}
    sparse = SparseConvAggregator(256).load_dense_layer4(state)
    assert torch.equal(sparse.blocks[0].downsample[1].weight, layer4[0].downsample[0].weight)
    assert torch.equal(sparse.blocks[1].bn2.bn.running_var, layer4[1].bn2.running_var)
    assert torch.equal(sparse.blocks[0].conv1.weight, layer4[0].conv1.weight)
