"""Aggregators (the pooling function p_theta2 of Sec. 3.1) and the SimCLR projector.

Forward contract: every aggregator is an ``nn.Module`` with an ``out_dim`` attribute and
``forward(views: Views) -> (B, out_dim)``, where :class:`Views` holds one view per row:

- ``features``: (B, T, F) float, the T tile embeddings of each view (from the bank);
- ``coords``: (B, T, 2) integers, each tile's site on the sparse map as ``(x, y)`` (column, row), i.e. the
  tile's level-0 position divided by the downsampling factor d and floored, after the slide-level augmentation
  (Sec. 3.1 Steps 3-4). Any integers work, negative included: only differences within a view and the parity
  of the view's smallest coordinate matter (see :meth:`SparseConvAggregator.to_sparse`);
- ``mask``: (B, T) bool, True for real tiles, False for padding (``None``: all real).

Aggregators:

- ``SparseConvAggregator`` (``sparseconv``, the paper's): ResNet18 ``layer4`` as a sparse network on the map;
- ``AttentionAggregator`` (``attention``, Fig. 3C ablation): gated attention MIL over the tiles, no coordinates;
- ``MeanAggregator`` (``mean``): the average of the tile embeddings, no parameters;
- ``ResidualMLPAggregator``: a residual MLP per tile then the mean (the authors' released "mlp" variant, loaded by
  :mod:`gigassl.released`; not built by ``gigassl train``);
- ``GatedAttentionPool``: gated attention MIL pooling (Ilse et al. 2018), shared by the ``attention``
  aggregator and the DeepMIL baseline (:mod:`gigassl.evaluation.baselines`).

``Projector`` is the SimCLR head g (Step 6); ``GigaSSL`` chains aggregator and projector.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .config import AGGREGATORS, choice
from .sparse import (SparseAvgPool2d, SparseBatchNorm, SparseConv2d, SparseReLU, SparseTensor, SubMConv2d,
                     check_backend, global_average, valid_spatial_size)


@dataclass
class Views:
    """A batch of views of slides, the input of every aggregator (see the module docstring).

    Shape:
        features: (B, T, F) float; coords: (B, T, 2) ints ``(x, y)`` in map units; mask: (B, T) bool or None.
    """

    features: torch.Tensor
    coords: torch.Tensor
    mask: torch.Tensor | None = None

    def __post_init__(self):
        b, t = self.features.shape[:2] if self.features.dim() == 3 else (None, None)
        if b is None or tuple(self.coords.shape) != (b, t, 2) or (
            self.mask is not None and tuple(self.mask.shape) != (b, t)
        ):
            raise ValueError(
                f"Views expects features (B, T, F), coords (B, T, 2) and mask (B, T); got "
                f"{tuple(self.features.shape)}, {tuple(self.coords.shape)}, "
                f"{None if self.mask is None else tuple(self.mask.shape)}."
            )

    def valid(self) -> torch.Tensor:
        """The mask, all True when ``mask`` is None. Shape: (B, T) bool."""
        if self.mask is None:
            return torch.ones(self.features.shape[:2], dtype=torch.bool, device=self.features.device)
        return self.mask.to(torch.bool)

    def to(self, device) -> "Views":
        """The same views on ``device`` (asynchronous from pinned memory)."""
        mask = None if self.mask is None else self.mask.to(device, non_blocking=True)
        return Views(self.features.to(device, non_blocking=True), self.coords.to(device, non_blocking=True), mask)

    def pin_memory(self) -> "Views":
        """The same views in pinned (page-locked) memory: what a DataLoader with ``pin_memory=True`` calls."""
        mask = None if self.mask is None else self.mask.pin_memory()
        return Views(self.features.pin_memory(), self.coords.pin_memory(), mask)


class GatedAttentionPool(nn.Module):
    """Gated attention pooling of a bag of instances (Ilse, Tomczak & Welling, ICML 2018, Eq. 9).

    "a_k = softmax_k( w^T (tanh(V h_k) * sigm(U h_k)) )", then z = sum_k a_k h_k, where h_k = ReLU(W x_k)
    is a per-instance embedding.

    Shape:
        x: (B, K, F) instances, mask: (B, K) bool (True = real instance; None = all real)
        -> z: (B, hidden), attention weights a: (B, K) (zero on padding).
    """

    def __init__(self, in_dim: int, hidden: int = 128, attention: int = 128, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attention_v = nn.Linear(hidden, attention)
        self.attention_u = nn.Linear(hidden, attention)
        self.attention_w = nn.Linear(attention, 1)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(x)
        scores = self.attention_w(torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        if mask is not None:
            weights = torch.nan_to_num(weights, nan=0.0)
        return torch.einsum("bk,bkh->bh", weights, h), weights

    def forward_packed(self, x: torch.Tensor, sizes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The same pooling on bags stored end to end (no padding): bag ``b`` is the ``sizes[b]`` rows of ``x``
        after those of bags ``0 .. b-1``; every bag holds at least one instance. What :meth:`forward` computes
        on the padded bags, up to floating-point rounding, at the cost of the real instances only (the padded
        rows of a batch of unequal bags are computed and then discarded by :meth:`forward`).

        Shape: x (N, F), sizes (B,) int64 summing to N -> z (B, hidden), attention weights (N,) (each bag's sum to 1).
        """
        h = self.embed(x)
        scores = self.attention_w(torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))).squeeze(-1)
        bag = torch.repeat_interleave(torch.arange(len(sizes), device=x.device), sizes)
        top = scores.new_full((len(sizes),), float("-inf")).scatter_reduce(0, bag, scores.detach(), "amax")
        e = torch.exp(scores - top[bag])
        weights = e / e.new_zeros(len(sizes)).index_add(0, bag, e)[bag]
        return h.new_zeros(len(sizes), h.shape[1]).index_add(0, bag, weights[:, None] * h), weights


class _SparseBasicBlock(nn.Module):
    """A ResNet BasicBlock on a sparse map, with torchvision's attribute names.

    Downsampling block: strided 3x3 :class:`SparseConv2d` + BN + ReLU, 3x3 :class:`SubMConv2d` + BN; shortcut
    ``SparseAvgPool2d(3, 2)`` then 1x1 SubMConv2d + BN. Otherwise two 3x3 SubMConv2d and the identity shortcut.
    """

    def __init__(self, c_in: int, c_out: int, downsample: bool, backend: str):
        super().__init__()
        if downsample:
            self.conv1 = SparseConv2d(c_in, c_out, 3, 2, backend=backend)
        else:
            self.conv1 = SubMConv2d(c_in, c_out, 3, backend=backend)
        self.bn1, self.relu = SparseBatchNorm(c_out), SparseReLU()
        self.conv2, self.bn2 = SubMConv2d(c_out, c_out, 3, backend=backend), SparseBatchNorm(c_out)
        self.downsample = nn.Sequential(
            SparseAvgPool2d(3, 2, backend=backend), SubMConv2d(c_in, c_out, 1, backend=backend), SparseBatchNorm(c_out)
        ) if downsample else None

    def main(self, x: SparseTensor) -> SparseTensor:
        """The residual branch (before the sum)."""
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def shortcut(self, x: SparseTensor) -> SparseTensor:
        """The shortcut branch: identity, or average pool + 1x1 conv + BN."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: SparseTensor) -> SparseTensor:
        main = self.main(x)
        return main.replace(torch.relu(main.features + self.shortcut(x).features))


class SparseConvAggregator(nn.Module):
    """ResNet18's ``layer4`` as a sparse network, then the mean over each map's active sites (Sec. 3.1, Step 5).

    "p_theta2 [...] has been converted into a submanifold convolutional network [14] with the same architecture
    such that it can process sparse data." Structure (as the authors' code): block 0 = strided 3x3 sparse conv
    256->512 + BN + ReLU, 3x3 submanifold conv + BN, shortcut avgpool(3, 2) + 1x1 conv + BN, sum, ReLU; block 1 =
    two 3x3 submanifold convs with BN/ReLU and the identity shortcut; global average: the slide vector W.
    If ``in_dim != 256`` a learned ``Linear(in_dim, 256)`` comes first.

    The shortcut of block 0 departs from torchvision's strided 1x1 conv, which on a sparse map would keep only the
    sites at even coordinates, a different site set from the strided 3x3 conv's; the 3x3 stride-2 average pool has
    exactly the sites of the strided conv, so the two branches can be summed. On a fully active map the network
    therefore equals the dense ``layer4`` in which the shortcut's sampling is replaced by a 3x3 box average
    (tests/test_aggregators.py). ``load_dense_layer4`` puts the dense 1x1 weight after the pool.

    Shape:
        Views (B, T, in_dim) -> (B, 512).
    """

    out_dim = 512

    def __init__(self, in_dim: int = 256, backend: str = "torch"):
        super().__init__()
        self.in_dim, self.backend = int(in_dim), check_backend(backend)
        self.input_proj = nn.Linear(in_dim, 256) if in_dim != 256 else nn.Identity()
        self.blocks = nn.ModuleList(
            [_SparseBasicBlock(256, 512, True, backend), _SparseBasicBlock(512, 512, False, backend)]
        )

    def to_sparse(self, views: Views) -> SparseTensor:
        """Place each view's tiles on a sparse map, averaging tiles that share a site (Sec. 3.1, Step 3).

        Each view is translated by an odd amount, per axis, so that its smallest coordinate becomes 1 (if it was
        even) or 2 (if odd). Hence (i) an even translation of a view leaves its map unchanged (the stride-2 layers
        see the same grid); (ii) a site at an even input coordinate is the centre of a 3x3 stride-2 window, as in
        the dense ResNet, whose padded conv centres its windows on even pixels; (iii) with the spatial size
        ``valid_spatial_size(max + 1)`` no window touching a tile is clipped by a border, so a view's output does
        not depend on the other views of the batch (except through BatchNorm's batch statistics in training).

        Shape:
            Views (B, T, F) -> SparseTensor with features (n_sites, F), coords (n_sites, 3) ``(b, y, x)``.
        """
        valid = views.valid()
        coords = views.coords.to(torch.long)
        big = torch.iinfo(torch.long).max
        low = torch.where(valid[..., None], coords, big).amin(1)  # (B, 2)
        low = torch.where(low == big, 0, low)
        placed = coords - 2 * torch.div(low, 2, rounding_mode="floor")[:, None, :] + 1
        batch = torch.arange(coords.shape[0], device=coords.device)[:, None].expand_as(valid)
        sites = torch.stack([batch[valid], placed[..., 1][valid], placed[..., 0][valid]], 1)
        top = sites[:, 1:].amax(0).tolist() if len(sites) else [0, 0]
        size = (valid_spatial_size(top[0] + 1), valid_spatial_size(top[1] + 1))
        return SparseTensor.from_sites(sites, views.features[valid], coords.shape[0], size)

    def forward_sparse(self, x: SparseTensor) -> torch.Tensor:
        """The network on a prepared sparse map. Shape: SparseTensor (n, in_dim) -> (B, 512)."""
        x = x.replace(self.input_proj(x.features))
        for block in self.blocks:
            x = block(x)
        return global_average(x)

    def forward(self, views: Views) -> torch.Tensor:
        return self.forward_sparse(self.to_sparse(views))

    def load_dense_layer4(self, state_dict: dict) -> "SparseConvAggregator":
        """Initialise from a dense torchvision ``resnet.layer4.state_dict()`` ("initialised from the dense layer4").

        Keys ``0.conv1.weight``, ``0.bn1.{weight,bias,running_mean,running_var,num_batches_tracked}``, ...,
        ``0.downsample.0.weight`` (the strided 1x1 conv, loaded into the 1x1 conv that follows the average pool),
        ``0.downsample.1.*``, ``1.conv1.weight``, ... A ``layer4.`` prefix is stripped. The input projection
        (``in_dim != 256``) is left as it is.

        Raises:
            ValueError: keys are missing or unexpected, or a shape differs.
        """
        state = {k.removeprefix("layer4."): v for k, v in state_dict.items()}
        renames = (("downsample.0.", "downsample.1."), ("downsample.1.", "downsample.2.bn."),
                   ("bn1.", "bn1.bn."), ("bn2.", "bn2.bn."))
        mapped = {}
        for key, value in state.items():
            block, _, rest = key.partition(".")
            for dense, sparse in renames:
                if rest.startswith(dense):
                    rest = sparse + rest[len(dense):]
                    break
            mapped[f"blocks.{block}.{rest}"] = value
        own = {k: v for k, v in self.state_dict().items() if k.startswith("blocks.")}
        optional = {k for k in own if k.endswith("num_batches_tracked")}
        missing, unexpected = sorted(set(own) - set(mapped) - optional), sorted(set(mapped) - set(own))
        bad = [k for k in set(own) & set(mapped) if tuple(own[k].shape) != tuple(mapped[k].shape)]
        if missing or unexpected or bad:
            raise ValueError(
                f"Not a ResNet18 layer4 state dict: missing {missing}, unexpected {unexpected}, wrong shape {bad}. "
                "Pass resnet.layer4.state_dict() of a torchvision-style ResNet18."
            )
        self.load_state_dict(mapped, strict=False)
        return self


class AttentionAggregator(nn.Module):
    """Gated attention MIL over the tiles of a view, coordinates ignored (Fig. 3C ablation).

    Shape:
        Views (B, T, in_dim) -> (B, out_dim).
    """

    def __init__(self, in_dim: int, out_dim: int = 512, attention: int = 128, dropout: float = 0.0):
        super().__init__()
        self.pool = GatedAttentionPool(in_dim, hidden=out_dim, attention=attention, dropout=dropout)
        self.out_dim = out_dim

    def forward(self, views: Views) -> torch.Tensor:
        return self.pool(views.features, views.valid())[0]


class MeanAggregator(nn.Module):
    """The average of a view's tile embeddings (no parameters); zeros for a view without tiles.

    Shape:
        Views (B, T, F) -> (B, F).
    """

    def __init__(self, in_dim: int):
        super().__init__()
        self.out_dim = int(in_dim)

    def forward(self, views: Views) -> torch.Tensor:
        weights = views.valid().to(views.features.dtype)
        total = torch.einsum("bt,btf->bf", weights, views.features)
        return total / weights.sum(1, keepdim=True).clamp(min=1.0)


class ResidualMLPAggregator(nn.Module):
    """A residual MLP applied to every tile, then the mean over the tiles: the authors' released "mlp" Giga-SSL
    variant (a coordinate-free alternative to the sparse CNN; not in the paper). Loaded by
    :func:`gigassl.released.load_released`; it is not one of the aggregators ``gigassl train`` builds.

    Each block: ``h = BN(ReLU(Linear(x)))``, ``h = BN(Linear(h))``, ``out = ReLU(h + skip(x))`` where ``skip`` is
    ``BN(Linear(x))`` in the first block (``in_dim -> width``) and the identity in the others. With
    ``batchnorm=False`` the BNs are identities. Dropout (inactive at inference) is left out.

    Shape:
        Views (B, T, in_dim) -> (B, width).
    """

    def __init__(self, in_dim: int = 256, width: int = 512, n_blocks: int = 2, batchnorm: bool = True):
        super().__init__()
        norm = (lambda n: nn.BatchNorm1d(n)) if batchnorm else (lambda n: nn.Identity())
        self.blocks = nn.ModuleList()
        for i in range(int(n_blocks)):
            c_in = int(in_dim) if i == 0 else int(width)
            block = nn.Module()
            block.fc1, block.bn1 = nn.Linear(c_in, width), norm(width)
            block.fc2, block.bn2 = nn.Linear(width, width), norm(width)
            block.skip = nn.Sequential(nn.Linear(c_in, width), norm(width)) if i == 0 else nn.Identity()
            self.blocks.append(block)
        self.in_dim, self.out_dim = int(in_dim), int(width)

    def tiles(self, x: torch.Tensor) -> torch.Tensor:
        """The MLP on each tile. Shape: (n, in_dim) -> (n, width)."""
        for b in self.blocks:
            h = b.bn2(b.fc2(b.bn1(torch.relu(b.fc1(x)))))
            x = torch.relu(h + b.skip(x))
        return x

    def forward(self, views: Views) -> torch.Tensor:
        b, t, f = views.features.shape
        h = self.tiles(views.features.reshape(b * t, f)).view(b, t, -1)
        weights = views.valid().to(h.dtype)
        return torch.einsum("bt,btf->bf", weights, h) / weights.sum(1, keepdim=True).clamp(min=1.0)


def build_aggregator(name: str, in_dim: int = 256, backend: str = "torch") -> nn.Module:
    """The aggregator called ``name`` (TrainConfig.aggregator): ``sparseconv``, ``attention`` or ``mean``.

    Raises:
        ConfigError: unknown name or backend.
    """
    choice(name, AGGREGATORS, "aggregator", "Set TrainConfig.aggregator (gigassl train --aggregator).")
    if name == "sparseconv":
        return SparseConvAggregator(in_dim, backend=backend)
    if name == "attention":
        return AttentionAggregator(in_dim)
    return MeanAggregator(in_dim)


class Projector(nn.Module):
    """The projection head g of SimCLR (Sec. 3.1, Step 6), in the authors' layer order.

    SimCLR (Chen et al. 2020, Sec. 2.1): "A small neural network projection head g(.) that maps representations
    to the space where contrastive loss is applied. We use a MLP with one hidden layer to obtain
    z_i = g(h_i) = W(2) sigma(W(1) h_i) where sigma is a ReLU non-linearity." Giga-SSL's code uses two hidden
    layers, each Linear -> ReLU -> BatchNorm1d, then a Linear. The BatchNorm1d layers are synchronised across
    processes by :func:`gigassl.dist.convert_sync_batchnorm`.

    Shape:
        (B, in_dim) -> (B, out_dim).
    """

    def __init__(self, in_dim: int = 512, hidden: int = 512, out_dim: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.BatchNorm1d(hidden),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.BatchNorm1d(hidden),
            nn.Linear(hidden, out_dim),
        )
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class GigaSSL(nn.Module):
    """Aggregator p_theta2 followed by the projector g (Sec. 3.1, Steps 5-6).

    ``embed`` gives the slide representation W (Step 5, used downstream); ``forward`` its projection, on which
    the NT-Xent loss is computed.

    Shape:
        Views (B, T, F) -> embed: (B, aggregator.out_dim); forward: (B, projector.out_dim).
    """

    def __init__(self, aggregator: nn.Module, projector: nn.Module):
        super().__init__()
        self.aggregator, self.projector = aggregator, projector

    def embed(self, views: Views) -> torch.Tensor:
        return self.aggregator(views)

    def forward(self, views: Views, chunks: int = 1, return_embedding: bool = False):
        """Project the views; ``chunks > 1`` runs consecutive equal parts of the batch through separate forward
        passes, so that each part (e.g. the first and the second view of every slide) has its own BatchNorm
        statistics, as in the authors' code. ``return_embedding``: also return W (before the projector).

        Shape: (B, T, F) views -> (B, projector.out_dim), and (B, aggregator.out_dim) with ``return_embedding``.
        """
        if chunks > 1:
            parts = [self.forward(Views(f, c, None if views.mask is None else m), return_embedding=True)
                     for f, c, m in zip(views.features.chunk(chunks), views.coords.chunk(chunks),
                                        (views.mask if views.mask is not None else views.coords).chunk(chunks))]
            h, z = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        else:
            h = self.embed(views)
            z = self.projector(h)
        return (h, z) if return_embedding else z
