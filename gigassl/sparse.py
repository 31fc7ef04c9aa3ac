"""Sparse 2-D convolutions for the sparse maps of Sec. 3.1 (Steps 3 and 5), with two backends.

A slide's sparse map holds one feature vector per occupied site of a coarse grid (Step 3); the pooling
function p_theta2 is ResNet18's ``layer4`` "converted into a submanifold convolutional network [14]"
(Step 5). This module provides the few layers that network needs, behind one interface:

- ``backend="torch"`` (default): pure PyTorch, runs on any device. Sites are addressed by linear keys
  ``(b * H + y) * W + x``; the kernel map (pairs of input/output rows per kernel offset) comes from one sort and
  ``torch.searchsorted``; a convolution is, per kernel offset, gather -> matmul, then one ``index_add``.
  Kernel maps are cached in the :class:`SparseTensor` (``cache``) and shared by every layer that uses the same
  sites and geometry during a forward pass (e.g. the 3x3 submanifold convs of a block, or the strided conv and
  the average pool of the first block, whose outputs then share their sites and cache).
- ``backend="spconv"``: the convolutions run in spconv 2.x (``pip install spconv``; ``spconv-cuXXX`` on GPU),
  pooling and everything else in PyTorch.

Parameters are always stored in the dense torch layout ``weight: (C_out, C_in, kh, kw)``, so checkpoints do not
depend on the backend and dense ResNet weights load as they are. Semantics (both backends; ``S`` is a spatial size):

- :class:`SubMConv2d` (k in {1, 3}): output sites = input sites; equals ``F.conv2d(padding=k // 2)`` on the dense
  map (zeros at inactive sites) read at the active sites.
- :class:`SparseConv2d` (3x3, stride 2, no padding): output site ``o`` (per axis) covers inputs ``2o .. 2o+2``; the
  output sites are every ``o`` whose window holds an active input; the output size is ``(S - 3) // 2 + 1``; equals
  ``F.conv2d(stride=2, padding=0)`` read at those sites. Inputs must lie in a window: use a spatial size from
  :func:`valid_spatial_size`.
- :class:`SparseAvgPool2d` (3, stride 2): same output sites; the sum of the active inputs of a window divided by 9
  (``F.avg_pool2d`` of the dense map, padding 0).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import BACKENDS, choice
from .errors import ConfigError


def valid_spatial_size(max_coord: int) -> int:
    """The smallest odd size ``>= max(3, max_coord + 1)``: with it no input of a strided layer is lost.

    With an odd size ``S``, the last window of :class:`SparseConv2d` ends at ``S - 1``, so every site
    ``0 .. max_coord`` lies in at least one window.
    """
    size = max(3, int(max_coord) + 1)
    return size if size % 2 == 1 else size + 1


@dataclass
class SparseTensor:
    """A batch of sparse 2-D maps (Sec. 3.1, Step 3).

    Shape:
        features: (n, C) float, one row per active site; coords: (n, 3) int64 ``(batch, y, x)``, unique rows;
        ``spatial_size = (H, W)``; ``cache`` holds kernel maps built for these sites (shared by derived tensors).
    """

    features: torch.Tensor
    coords: torch.Tensor
    batch_size: int
    spatial_size: tuple[int, int]
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_sites(cls, coords: torch.Tensor, features: torch.Tensor, batch_size: int,
                   spatial_size: tuple[int, int] | None = None) -> "SparseTensor":
        """Build a tensor from per-tile sites, averaging the features of tiles on the same ``(batch, y, x)``.

        The result's rows are sorted by linear key. ``spatial_size`` defaults to
        ``valid_spatial_size`` of the largest y and x.

        Shape:
            coords: (n, 3) ints ``(batch, y, x)``, features: (n, C) -> a tensor with ``m <= n`` sites.

        Raises:
            ValueError: shapes disagree, or a coordinate is negative or outside ``spatial_size``.
        """
        coords = coords.to(device=features.device, dtype=torch.long)
        if coords.dim() != 2 or coords.shape[1] != 3 or features.dim() != 2 or features.shape[0] != coords.shape[0]:
            raise ValueError(
                f"Expected coords (n, 3) and features (n, C); got {tuple(coords.shape)} and {tuple(features.shape)}."
            )
        if spatial_size is None:
            top = coords[:, 1:].amax(0).tolist() if len(coords) else [0, 0]
            spatial_size = (valid_spatial_size(top[0]), valid_spatial_size(top[1]))
        height, width = int(spatial_size[0]), int(spatial_size[1])
        if len(coords):
            low, high = coords.amin(0).tolist(), coords.amax(0).tolist()
            if min(low) < 0 or high[0] >= batch_size or high[1] >= height or high[2] >= width:
                raise ValueError(
                    f"Site coordinates span (batch, y, x) {low}..{high}, outside batch_size={batch_size} and "
                    f"spatial_size={(height, width)}. Shift the sites to be >= 0 and size the map with "
                    "valid_spatial_size(max_coord)."
                )
        keys = (coords[:, 0] * height + coords[:, 1]) * width + coords[:, 2]
        unique, inverse = torch.unique(keys, sorted=True, return_inverse=True)
        sums = features.new_zeros(len(unique), features.shape[1]).index_add(0, inverse, features)
        counts = torch.bincount(inverse, minlength=len(unique)).to(features.dtype)
        sites = torch.stack([unique // (height * width), (unique // width) % height, unique % width], 1)
        return cls(sums / counts[:, None], sites, int(batch_size), (height, width))

    def replace(self, features: torch.Tensor) -> "SparseTensor":
        """The same sites (and kernel-map cache) with new features."""
        return SparseTensor(features, self.coords, self.batch_size, self.spatial_size, self.cache)

    def to_dense(self) -> torch.Tensor:
        """The dense map, zeros at inactive sites. Shape: (B, C, H, W)."""
        b, y, x = self.coords.unbind(1)
        dense = self.features.new_zeros(self.batch_size, *self.spatial_size, self.features.shape[1])
        dense = dense.index_put((b, y, x), self.features)
        return dense.permute(0, 3, 1, 2)

    def keys(self) -> torch.Tensor:
        """Linear keys ``(b * H + y) * W + x`` of the sites. Shape: (n,)."""
        height, width = self.spatial_size
        return (self.coords[:, 0] * height + self.coords[:, 1]) * width + self.coords[:, 2]


def check_backend(backend: str) -> str:
    """Return ``backend`` if it is one of :data:`BACKENDS`, else raise a ConfigError naming them."""
    return choice(backend, BACKENDS, "sparse backend", "Set TrainConfig.backend (gigassl train --backend).")


def set_backend(module: nn.Module, backend: str) -> nn.Module:
    """Switch every sparse layer inside ``module`` to ``backend`` (weights are layout-independent)."""
    check_backend(backend)
    for sub in module.modules():
        if isinstance(getattr(sub, "backend", None), str):
            sub.backend = backend
    return module


# ----------------------------------------------------------------------------------------------- kernel maps


def _split_by_offset(offset: torch.Tensor, n_offsets: int) -> list[tuple[int, int, int]]:
    """``(offset index, start, end)`` of each non-empty run of pairs (pairs are sorted by offset)."""
    counts = torch.bincount(offset, minlength=n_offsets).tolist()
    runs, start = [], 0
    for k, count in enumerate(counts):
        if count:
            runs.append((k, start, start + count))
        start += count
    return runs


def _subm_map(x: SparseTensor, kernel_size: int):
    """Pairs (in_row, out_row) per non-centre offset of a ``k x k`` submanifold conv on ``x``'s sites."""
    key = ("subm", kernel_size)
    if key not in x.cache:
        height, width = x.spatial_size
        keys = x.keys()
        sorted_keys, order = torch.sort(keys)
        r = kernel_size // 2
        grid = torch.arange(-r, r + 1, device=keys.device)
        dy, dx = torch.meshgrid(grid, grid, indexing="ij")
        dy, dx = dy.reshape(-1, 1), dx.reshape(-1, 1)
        y, xx = x.coords[:, 1][None], x.coords[:, 2][None]
        ny, nx = y + dy, xx + dx
        inside = (ny >= 0) & (ny < height) & (nx >= 0) & (nx < width)
        query = keys[None] + dy * width + dx
        pos = torch.searchsorted(sorted_keys, query).clamp_(max=max(len(keys) - 1, 0))
        hit = inside & (sorted_keys[pos] == query) if len(keys) else inside
        hit[kernel_size * kernel_size // 2] = False  # the centre is a plain matmul
        offset, out_row = hit.nonzero(as_tuple=True)
        in_row = order[pos[offset, out_row]]
        x.cache[key] = (in_row, out_row, _split_by_offset(offset, kernel_size * kernel_size))
    return x.cache[key]


def _down_map(x: SparseTensor):
    """Output sites and pairs of the 3x3 stride-2 window (SparseConv2d and SparseAvgPool2d share it)."""
    key = ("down", 3, 2)
    if key not in x.cache:
        height, width = x.spatial_size
        out_h, out_w = (height - 3) // 2 + 1, (width - 3) // 2 + 1
        k = torch.arange(3, device=x.coords.device)
        ky, kx = torch.meshgrid(k, k, indexing="ij")
        ky, kx = ky.reshape(-1, 1), kx.reshape(-1, 1)
        oy2, ox2 = x.coords[:, 1][None] - ky, x.coords[:, 2][None] - kx
        hit = (oy2 >= 0) & (oy2 % 2 == 0) & (oy2 < 2 * out_h) & (ox2 >= 0) & (ox2 % 2 == 0) & (ox2 < 2 * out_w)
        covered = hit.any(0)
        if not bool(covered.all()):
            lost = x.coords[~covered][0].tolist()
            raise ValueError(
                f"Site (batch, y, x) = {lost} lies in no 3x3 stride-2 window of a map of size {x.spatial_size}. "
                "Size the map with valid_spatial_size(max_coord) (odd, >= 3)."
            )
        offset, in_row = hit.nonzero(as_tuple=True)
        out_keys = (x.coords[in_row, 0] * out_h + oy2[offset, in_row] // 2) * out_w + ox2[offset, in_row] // 2
        unique, out_row = torch.unique(out_keys, sorted=True, return_inverse=True)
        sites = torch.stack([unique // (out_h * out_w), (unique // out_w) % out_h, unique % out_w], 1)
        out_cache: dict = {}  # shared by every tensor on the output sites
        x.cache[key] = (in_row, out_row, _split_by_offset(offset, 9), sites, (out_h, out_w), out_cache)
    return x.cache[key]


class _KernelMapConv(torch.autograd.Function):
    """``out[o] = sum over pairs (i, o, k) of features[i] @ W_k^T`` (+ ``features @ W_centre^T`` for submanifold
    convs), with ``W_k = weight[:, :, i, j]`` for offset ``k = i * kw + j``.

    The layers keep their (C_out, C_in, kh, kw) weight in channels_last memory, i.e. (C_out, kh * kw, C_in)
    in memory, where every ``W_k`` is a matrix with unit inner stride that BLAS reads in place: no copy of the
    weight in forward (a weight in the plain layout is copied once). The hand-written backward writes the weight
    gradient offset by offset into one buffer (autograd on per-offset slices would zero-fill a full-size gradient
    per offset), returns it in the weight's memory format, and recomputes gathered rows instead of storing them.
    It computes in the dtype of ``features`` with autocast off (a lower-precision input runs in that precision).
    """

    @staticmethod
    def forward(ctx, features, weight, in_row, out_row, runs, n_out, centre):
        c_out, c_in, kh, kw = weight.shape
        w = weight.permute(0, 2, 3, 1).reshape(c_out, kh * kw, c_in)  # w[:, k] = W_k (a view when channels_last)
        w = w.to(features.dtype)
        with torch.autocast(features.device.type, enabled=False):
            if centre is not None:
                out = features @ w[:, centre].t()
            else:
                out = features.new_zeros(n_out, c_out)
            if runs:
                gathered = features.index_select(0, in_row)
                contrib = features.new_empty(len(in_row), c_out)
                for k, start, end in runs:
                    torch.mm(gathered[start:end], w[:, k].t(), out=contrib[start:end])
                out.index_add_(0, out_row, contrib)
        ctx.save_for_backward(features, w, in_row, out_row)
        ctx.runs, ctx.centre, ctx.shape, ctx.weight_dtype = runs, centre, (c_out, c_in, kh, kw), weight.dtype
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        features, w, in_row, out_row = ctx.saved_tensors
        runs, centre, (c_out, c_in, kh, kw) = ctx.runs, ctx.centre, ctx.shape
        need_x, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_out = grad_out.contiguous().to(features.dtype)
        grad_x = grad_w = None
        if need_w:  # (C_out, kh * kw, C_in) = the weight's channels_last memory; offsets without pairs stay zero
            complete = len(runs) + (centre is not None) == kh * kw
            grad_w = w.new_empty(c_out, kh * kw, c_in) if complete else w.new_zeros(c_out, kh * kw, c_in)
        if centre is not None:
            if need_w:
                torch.mm(grad_out.t(), features, out=grad_w[:, centre])
            if need_x:
                grad_x = grad_out @ w[:, centre]
        elif need_x:
            grad_x = features.new_zeros(features.shape)
        if runs:
            grad_gathered = grad_out.index_select(0, out_row)
            if need_w:
                gathered = features.index_select(0, in_row)
                for k, start, end in runs:
                    torch.mm(grad_gathered[start:end].t(), gathered[start:end], out=grad_w[:, k])
            if need_x:
                contrib = features.new_empty(len(in_row), c_in)
                for k, start, end in runs:
                    torch.mm(grad_gathered[start:end], w[:, k], out=contrib[start:end])
                grad_x.index_add_(0, in_row, contrib)
        if need_w:
            grad_w = grad_w.view(c_out, kh, kw, c_in).permute(0, 3, 1, 2).to(ctx.weight_dtype)
        return grad_x, grad_w, None, None, None, None, None


# ------------------------------------------------------------------------------------------------------ spconv


def _import_spconv():
    """Import ``spconv.pytorch`` (lazily) and, on a torch without CUDA, make its backward usable on CPU."""
    try:
        import spconv.pytorch as spconv_torch
        import spconv.pytorch.ops as spconv_ops
    except ImportError as error:
        raise ConfigError(
            f"The sparse backend 'spconv' needs the spconv package, which cannot be imported ({error}). "
            "Install it with `pip install spconv` (CPU) or `pip install spconv-cu1xx` matching your CUDA "
            "(e.g. spconv-cu120), or use backend='torch'."
        ) from None
    if not torch.cuda.is_available():
        # spconv's CPU build asks for the current CUDA stream in backward; there is none on a CPU-only torch.
        spconv_ops.get_current_stream = lambda: 0
    return spconv_torch


@functools.lru_cache(maxsize=None)
def _spconv_layer(c_in: int, c_out: int, kernel_size: int, subm: bool):
    """A weightless spconv layer whose ``_conv_forward`` we call with our own weight."""
    spconv_torch = _import_spconv()
    if subm:
        layer = spconv_torch.SubMConv2d(c_in, c_out, kernel_size, bias=False, indice_key=f"gigassl_subm{kernel_size}")
    else:
        layer = spconv_torch.SparseConv2d(c_in, c_out, kernel_size, stride=2, padding=0, bias=False)
    del layer.weight
    return layer


def _spconv_run(layer, x: SparseTensor, weight: torch.Tensor, training: bool):
    spconv_torch = _import_spconv()
    indices = x.coords.to(torch.int32).contiguous()  # spconv reads raw memory: must be contiguous
    tensor = spconv_torch.SparseConvTensor(
        x.features.contiguous(), indices, list(x.spatial_size), x.batch_size,
        indice_dict=x.cache.get("spconv_indices", {}),
    )
    return layer._conv_forward(training, tensor, weight, None)


# ------------------------------------------------------------------------------------------------------ layers


class _SparseConvBase(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool, backend: str):
        super().__init__()
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, kernel_size
        self.backend = check_backend(backend)
        # channels_last: shape (C_out, C_in, k, k) as nn.Conv2d (checkpoints, dense ResNet weights), memory
        # (C_out, k, k, C_in), the layout both backends compute with (see _KernelMapConv)
        weight = torch.empty(out_channels, in_channels, kernel_size, kernel_size)
        self.weight = nn.Parameter(weight.contiguous(memory_format=torch.channels_last))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        nn.init.kaiming_uniform_(self.weight, a=5**0.5)  # nn.Conv2d's default
        if self.bias is not None:
            bound = 1 / (in_channels * kernel_size * kernel_size) ** 0.5
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, backend={self.backend!r}"

    def _add_bias(self, features: torch.Tensor) -> torch.Tensor:
        return features if self.bias is None else features + self.bias


class SubMConv2d(_SparseConvBase):
    """Submanifold convolution (Graham et al. [14]), stride 1: the output sites are the input sites.

    Equals ``F.conv2d(dense, weight, padding=k // 2)`` read at the active sites (Sec. 3.1, Step 5).

    Shape:
        SparseTensor with features (n, C_in) -> same sites, features (n, C_out).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = False,
                 backend: str = "torch"):
        if kernel_size not in (1, 3):
            raise ConfigError(f"SubMConv2d supports kernel_size 1 or 3; got {kernel_size}.")
        super().__init__(in_channels, out_channels, kernel_size, bias, backend)

    def forward(self, x: SparseTensor) -> SparseTensor:
        if self.backend == "spconv":
            layer = _spconv_layer(self.in_channels, self.out_channels, self.kernel_size, True)
            if self.kernel_size == 1:
                # spconv's 1x1 fast path multiplies by weight.view(C_in, C_out), whatever the declared layout
                weight = self.weight[:, :, 0, 0].t().contiguous()
            else:
                weight = self.weight.permute(0, 2, 3, 1).contiguous()  # spconv 2.x layout KRSC (C_out, kh, kw, C_in)
            out = _spconv_run(layer, x, weight, self.training)
            x.cache["spconv_indices"] = out.indice_dict
            return x.replace(self._add_bias(out.features))
        if self.kernel_size == 1:
            return x.replace(self._add_bias(x.features @ self.weight[:, :, 0, 0].t()))
        in_row, out_row, runs = _subm_map(x, self.kernel_size)
        centre = self.kernel_size * self.kernel_size // 2
        out = _KernelMapConv.apply(x.features, self.weight, in_row, out_row, runs, len(x.features), centre)
        return x.replace(self._add_bias(out))


class SparseConv2d(_SparseConvBase):
    """Strided 3x3 sparse convolution without padding (the "regular" sparse conv of SparseConvNet/spconv).

    Output site ``o`` covers inputs ``2o .. 2o+2`` per axis; the output sites are the windows holding at least one
    active input; spatial size ``(S - 3) // 2 + 1``. Equals ``F.conv2d(stride=2, padding=0)`` read at those sites.
    The input's spatial size must come from :func:`valid_spatial_size` (else a site could lie in no window).

    Shape:
        SparseTensor (n, C_in) on (H, W) -> SparseTensor (m, C_out) on ((H - 3) // 2 + 1, (W - 3) // 2 + 1),
        rows sorted by linear key.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 2,
                 bias: bool = False, backend: str = "torch"):
        if kernel_size != 3 or stride != 2:
            raise ConfigError(f"SparseConv2d supports kernel_size=3, stride=2 only; got {kernel_size}, {stride}.")
        super().__init__(in_channels, out_channels, kernel_size, bias, backend)

    def forward(self, x: SparseTensor) -> SparseTensor:
        in_row, out_row, runs, sites, size, out_cache = _down_map(x)
        if self.backend == "spconv":
            layer = _spconv_layer(self.in_channels, self.out_channels, 3, False)
            out = _spconv_run(layer, x, self.weight.permute(0, 2, 3, 1).contiguous(), self.training)
            theirs = out.indices.long()
            their_keys = (theirs[:, 0] * size[0] + theirs[:, 1]) * size[1] + theirs[:, 2]
            their_keys, order = torch.sort(their_keys)
            ours = (sites[:, 0] * size[0] + sites[:, 1]) * size[1] + sites[:, 2]
            if their_keys.shape != ours.shape or not bool((their_keys == ours).all()):
                raise RuntimeError("spconv returned other output sites than the stride-2 window rule; report this.")
            features = out.features[order]
        else:
            features = _KernelMapConv.apply(x.features, self.weight, in_row, out_row, runs, len(sites), None)
        return SparseTensor(self._add_bias(features), sites, x.batch_size, size, out_cache)


class SparseAvgPool2d(nn.Module):
    """3x3 stride-2 average pool on the sites of :class:`SparseConv2d`: sum of the active inputs / 9.

    Equals ``F.avg_pool2d(dense, 3, 2, padding=0)`` read at the output sites. Always computed in PyTorch
    (``backend`` is accepted for a uniform interface).

    Shape:
        SparseTensor (n, C) -> SparseTensor (m, C), same sites as ``SparseConv2d`` on the same input.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2, backend: str = "torch"):
        super().__init__()
        if kernel_size != 3 or stride != 2:
            raise ConfigError(f"SparseAvgPool2d supports kernel_size=3, stride=2 only; got {kernel_size}, {stride}.")
        self.backend = check_backend(backend)

    def forward(self, x: SparseTensor) -> SparseTensor:
        in_row, out_row, _, sites, size, out_cache = _down_map(x)
        summed = x.features.new_zeros(len(sites), x.features.shape[1])
        summed = summed.index_add(0, out_row, x.features.index_select(0, in_row))
        return SparseTensor(summed / 9.0, sites, x.batch_size, size, out_cache)


class SparseBatchNorm(nn.Module):
    """BatchNorm over the active sites of the whole batch (a ``BatchNorm1d`` named ``bn`` inside, so that
    :func:`gigassl.dist.convert_sync_batchnorm` synchronises it). Shape: (n, C) -> (n, C)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1):
        super().__init__()
        self.bn = nn.BatchNorm1d(num_features, eps=eps, momentum=momentum)

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(self.bn(x.features))


class SparseReLU(nn.Module):
    """ReLU on the features of the active sites."""

    def forward(self, x: SparseTensor) -> SparseTensor:
        return x.replace(F.relu(x.features))


def global_average(x: SparseTensor) -> torch.Tensor:
    """Mean of the features over each batch element's active sites (zeros for an element without sites).

    Shape: SparseTensor (n, C) -> (B, C).
    """
    batch = x.coords[:, 0]
    sums = x.features.new_zeros(x.batch_size, x.features.shape[1]).index_add(0, batch, x.features)
    counts = torch.bincount(batch, minlength=x.batch_size).clamp_(min=1).to(x.features.dtype)
    return sums / counts[:, None]
