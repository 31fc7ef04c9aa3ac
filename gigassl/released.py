"""The authors' released Giga-SSL models, loaded into gigassl's aggregators (``gigassl embed --checkpoint THEIR_FILE``).

The layout below was read from the authors' public code (facts only, no code taken), not from a released file:
it is unverified against a real checkpoint (none is available offline here).

Files read: ``trislaz/gigassl`` ``gigassl/networks.py`` (``SparseConvMIL``, ``SparseBasicBlock``,
``cut_resnet_dense_sparse``, ``FullSparseConvMIL``), ``gigassl/simclr.py`` (``projection_MLP``, ``SimCLRMIL``),
``gigassl/main_sharedaug.py`` (the save), ``gigassl/inference.py`` (the load), ``gigassl/arguments.py`` (the
config object), ``gigassl/configs/simclr_mil_scm.yaml``; ``trislaz/Democratizing_WSI`` ``src/networks.py``
(``ResidualMLP``, ``ResidualMLPBlock``, ``LinearBatchNorm``), ``src/encode_slide.py`` (the load of the released
``gigassl-{scm,mlp}-{moco,ctranspath,phikon}`` files), ``src/encode_tiles.py`` and ``src/tile_slide.py`` (tile
coordinates ``[col, row]`` = level-0 ``(x, y)``; tile features cut to 256 by a PCA); facebookresearch/SparseConvNet's
``SubmanifoldConvolution`` / ``Convolution`` (weight ``(filter_volume, groups, nIn // groups, nOut // groups)``) and
``RectangularRegion.offset`` (the kernel offset index runs over the region with the LAST coordinate fastest).

The file: ``torch.save({'epoch': int, 'state_dict': SimCLRMIL.state_dict(), 'config': config})``. ``config`` is an
``argparse.Namespace`` holding their ``arguments.Namespace`` objects (``config.model.downmap = 224``,
``config.dataset.nb_tiles = 5``) in ``trislaz/gigassl``, a flat dict (``downmap``, ``num_class``, ``feature_depth``,
``bn``, ``dropout``) in the Democratizing_WSI releases. State-dict keys:

- sparse CNN ("scm"): ``backbone.net.mil_model.sparse_pooling.0.{b}.*`` (``trislaz/gigassl``; the same modules
  again under ``encoder.0.``) or ``backbone.mil.net.mil_model.sparse_pooling.0.{b}.*`` (the Democratizing_WSI
  releases, whose loader strips ``backbone.mil.``). Block ``b = 0``: ``conv1.weight`` (9, 1, 256, 512), a strided
  3x3 ``Convolution``; ``conv2.weight`` (9, 1, 512, 512), a 3x3 ``SubmanifoldConvolution``; ``convd.weight``
  (1, 1, 256, 512), the 1x1 submanifold conv after ``AveragePooling(3, 2)``; ``norm1``, ``norm2``, ``normd``:
  SparseConvNet BatchNormalization (eps 1e-5) with ``weight``, ``bias``, ``running_mean``, ``running_var`` (512,).
  Block ``b = 1``: ``conv1.weight``, ``conv2.weight`` (9, 1, 512, 512) submanifold, ``norm1``, ``norm2``.
- projector (``trislaz/gigassl`` only): ``projector.layer{1,2}.0`` Linear(512, 512), ``projector.layer{1,2}.2``
  BatchNorm1d(512), ``projector.layer3`` Linear(512, 256) (again under ``encoder.1.``).
- residual MLP ("mlp", Democratizing_WSI): ``backbone.mil.tile_encoder.{b}.block.{0,1}.block.0.{weight,bias}``
  (Linear), ``...block.{0,1}.norm.*`` (BatchNorm1d, absent when ``bn`` is off), block 0 also
  ``residual_lin.block.0.*`` and ``residual_lin.norm.*`` (the projection of the skip); ``classifier.*`` (unused).
  The slide vector is the mean over the tiles of the MLP output (the input of their classifier).

Weight conversion: SparseConvNet's ``W[k, 0, c_in, c_out]``, with ``k = a * 3 + b`` for the offset ``a`` along their
first coordinate (x, the column) and ``b`` along the second (y, the row), becomes torch's
``weight[c_out, c_in, b, a]`` (kh along y, kw along x as in gigassl's maps): ``W.reshape(3, 3, c_in, c_out)
.permute(3, 2, 1, 0)``.

Inference conventions applied with their weights (the facts file lists their differences):

- coordinate scale: level-0 coordinates divided by their ``downmap`` (224 level-0 pixels per site), the scale they
  trained at; their inference script's extra division by 4 (a bug) is not reproduced;
- map origin: ``origin="authors"`` (default) puts each view's smallest site at 0, as their ``SparseConvMIL`` does:
  that site lies in the first stride-2 window only (a window corner), so gigassl computes their network on the same
  sites; ``origin="gigassl"`` keeps gigassl's origin (smallest site at 1 or 2, :meth:`SparseConvAggregator.to_sparse`,
  where an even smallest coordinate sits at a window centre);
- views: gigassl's R views of T tiles (T = their ``nb_tiles``, 5), averaged and L2-normalised (Sec. 4.2).
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path

import torch

from .aggregators import GigaSSL, Projector, ResidualMLPAggregator, SparseConvAggregator, Views
from .errors import GigasslError, listing
from .sparse import SparseTensor, global_average, valid_spatial_size

SCM_PREFIXES = ("backbone.net.mil_model.sparse_pooling.0.", "backbone.mil.net.mil_model.sparse_pooling.0.")
MLP_PREFIXES = ("backbone.mil.tile_encoder.", "backbone.tile_encoder.")
_BN = ("weight", "bias", "running_mean", "running_var")
_FIX = ("Pass a Giga-SSL checkpoint released by the authors (trislaz/gigassl's training output, or the "
        "Democratizing_WSI gigassl-scm-* / gigassl-mlp-* files) unchanged; a `gigassl train` checkpoint is "
        "passed to gigassl embed as it is.")


class _Namespace:
    """Stands in for the authors' config objects (``argparse.Namespace``, their ``arguments.Namespace``) when their
    file is unpickled, so that it loads with ``weights_only=True`` (no code of theirs is run or needed)."""

    def __setstate__(self, state):
        self.__dict__.update(state)


def _scm_spec() -> dict[str, tuple[int, ...]]:
    """Their sparse layer4's keys (below the sparse_pooling prefix) and shapes."""
    spec = {"0.conv1.weight": (9, 1, 256, 512), "0.conv2.weight": (9, 1, 512, 512), "0.convd.weight": (1, 1, 256, 512),
            "1.conv1.weight": (9, 1, 512, 512), "1.conv2.weight": (9, 1, 512, 512)}
    for block, norms in (("0", ("norm1", "norm2", "normd")), ("1", ("norm1", "norm2"))):
        spec |= {f"{block}.{n}.{p}": (512,) for n in norms for p in _BN}
    return spec


def _scm_target(key: str) -> str:
    """gigassl's name for one of their sparse layer4 keys."""
    block, layer, param = key.split(".")
    name = {"conv1": "conv1", "conv2": "conv2", "convd": "downsample.1", "norm1": "bn1.bn", "norm2": "bn2.bn",
            "normd": "downsample.2.bn"}[layer]
    return f"blocks.{block}.{name}.{param}"


def convert_sparse_weight(weight: torch.Tensor) -> torch.Tensor:
    """SparseConvNet's ``(k * k, 1, c_in, c_out)`` weight (offset index: first coordinate x major) as torch's
    ``(c_out, c_in, k, k)`` (kh along y, kw along x). Shape: (k*k, 1, C_in, C_out) -> (C_out, C_in, k, k)."""
    k = int(round(weight.shape[0] ** 0.5))
    return weight.reshape(k, k, weight.shape[2], weight.shape[3]).permute(3, 2, 1, 0).contiguous()


def _mlp_spec(in_dim: int, n_blocks: int, batchnorm: bool, width: int = 512) -> dict[str, tuple[int, ...]]:
    """Their ResidualMLP tile encoder's keys (below the tile_encoder prefix) and shapes."""
    spec = {}
    for b in range(n_blocks):
        c_in = in_dim if b == 0 else width
        parts = [(f"{b}.block.0", c_in), (f"{b}.block.1", width)] + ([(f"{b}.residual_lin", c_in)] if b == 0 else [])
        for name, fan_in in parts:
            spec |= {f"{name}.block.0.weight": (width, fan_in), f"{name}.block.0.bias": (width,)}
            if batchnorm:
                spec |= {f"{name}.norm.{p}": (width,) for p in _BN}
    return spec


def _mlp_target(key: str) -> str:
    """gigassl's name (:class:`ResidualMLPAggregator`) for one of their tile-encoder keys."""
    block, rest = key.split(".", 1)
    for theirs, ours in (("block.0.block.0.", "fc1."), ("block.0.norm.", "bn1."), ("block.1.block.0.", "fc2."),
                         ("block.1.norm.", "bn2."), ("residual_lin.block.0.", "skip.0."),
                         ("residual_lin.norm.", "skip.1.")):
        if rest.startswith(theirs):
            return f"blocks.{block}.{ours}{rest[len(theirs):]}"
    raise KeyError(key)


_PROJECTOR = {"layer1.0.": "net.0.", "layer1.2.": "net.2.", "layer2.0.": "net.3.", "layer2.2.": "net.5.",
              "layer3.": "net.6."}


def _config_value(config, paths: tuple[tuple[str, ...], ...], default):
    """The first of ``paths`` found in their config (a dict or attribute object), else ``default``."""
    for path in paths:
        value = config
        for part in path:
            value = value.get(part) if isinstance(value, dict) else getattr(value, "__dict__", {}).get(part)
            if value is None:
                break
        if value is not None:
            return value
    return default


def read_released(path: str | os.PathLike, device: str = "cpu") -> dict:
    """Load one of their files safely (``weights_only=True``, their config classes replaced by a plain stand-in).

    Raises:
        GigasslError: missing, unreadable, or holding other Python objects; the message names the file and the fix.
    """
    from .validate import existing_file

    path = existing_file(path, "Released Giga-SSL checkpoint", _FIX)
    stand_ins = [(_Namespace, "argparse.Namespace"), (_Namespace, "arguments.Namespace")]
    try:
        with torch.serialization.safe_globals(stand_ins):
            state = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch's safe unpickler raises many kinds of errors on foreign files
        from .checkpoints import _torch_reason

        raise GigasslError(f"{path} is not a readable released Giga-SSL checkpoint ({_torch_reason(err)}). "
                           f"{_FIX}") from None
    return state


def is_released(path: str | os.PathLike) -> bool:
    """Whether ``path`` looks like one of the authors' files (its pickle names ``backbone.`` state-dict keys), read
    without unpickling: lets ``gigassl embed`` tell their files from gigassl's."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                pickles = [n for n in z.namelist() if n.endswith("data.pkl")]
                head = z.read(pickles[0]) if pickles else b""
        else:
            with open(path, "rb") as f:
                head = f.read(1 << 22)
    except (OSError, zipfile.BadZipFile, IndexError):
        return False
    return b"state_dict" in head and b"backbone." in head


def _refuse(path, what: str, missing, unexpected, wrong) -> None:
    if missing or unexpected or wrong:
        parts = [f"missing {listing(missing)}" if missing else "", f"unexpected {listing(unexpected)}" if unexpected
                 else "", "wrong shape " + listing(f"{k} {tuple(a)} (expected {tuple(b)})" for k, a, b in wrong)
                 if wrong else ""]
        raise GigasslError(f"{path} does not hold the authors' {what} as their code lays it out: "
                           f"{'; '.join(p for p in parts if p)}. {_FIX}")


def _check(path, what: str, found: dict, spec: dict, optional: dict | None = None) -> None:
    """Refuse ``found`` (their keys below a prefix) unless it has exactly ``spec``'s keys and shapes (and any of
    ``optional``'s, e.g. the BatchNorm counters a torch version may not save)."""
    missing = sorted(set(spec) - set(found))
    spec = spec | {k: v for k, v in (optional or {}).items() if k in found}
    unexpected = sorted(set(found) - set(spec))
    wrong = [(k, found[k].shape, spec[k]) for k in sorted(set(spec) & set(found)) if tuple(found[k].shape) != spec[k]]
    _refuse(path, what, missing, unexpected, wrong)


def _below(state_dict: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}


def load_released(path: str | os.PathLike, origin: str = "authors", backend: str = "torch", device: str = "cpu"):
    """(aggregator in eval mode, info) from one of the authors' released Giga-SSL files (see the module docstring).

    The sparse-CNN files give a :class:`ReleasedSparseConvAggregator` (gigassl's sparse layer4 with their map
    origin, or gigassl's with ``origin="gigassl"``), the MLP files a :class:`gigassl.aggregators.ResidualMLPAggregator`.
    ``info``: ``kind`` ("scm" or "mlp"), ``prefix``, ``in_dim``, ``downsample`` (level-0 pixels per site, their
    ``downmap``), ``tiles_per_view`` (their ``nb_tiles``), ``epoch``, ``origin``, ``projector`` (their projector's
    state dict in gigassl's :class:`Projector` names, or None when the file has none).

    Raises:
        GigasslError: not one of their files: a gigassl checkpoint, another layout, a key missing or unexpected,
            a shape that differs; the message names the file, the keys and shapes, and the fix.
        ConfigError: ``origin`` or ``backend`` not allowed.
    """
    from .checkpoints import checkpoint_kind
    from .config import choice

    choice(origin, ("authors", "gigassl"), "map origin", "origin='authors' (their corner origin) or 'gigassl'.")
    ckpt = read_released(path, device)
    if checkpoint_kind(ckpt) == "gigassl":
        raise GigasslError(f"{path} is a checkpoint written by `gigassl train`, not one of the authors' files: pass "
                           "it to gigassl embed --checkpoint as it is (gigassl.train.load_checkpoint).")
    state = ckpt.get("state_dict") if isinstance(ckpt, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = listing(sorted(map(str, ckpt))) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise GigasslError(f"{path} has no 'state_dict' of tensors (found {found}); the authors save "
                           f"{{'epoch', 'state_dict', 'config'}}. {_FIX}")
    config = ckpt.get("config") or {}
    scm = [p for p in SCM_PREFIXES if any(k.startswith(p) for k in state)]
    mlp = [p for p in MLP_PREFIXES if any(k.startswith(p) for k in state)]
    if not scm and not mlp:
        raise GigasslError(f"{path} holds neither their sparse CNN (keys starting {' or '.join(SCM_PREFIXES)}) nor "
                           f"their MLP ({' or '.join(MLP_PREFIXES)}); its keys start {listing(sorted(state))}. {_FIX}")
    info = {"epoch": int(ckpt.get("epoch") or 0), "origin": origin, "projector": None,
            "downsample": _config_value(config, (("model", "downmap"), ("downmap",)), 224),
            "tiles_per_view": int(_config_value(config, (("dataset", "nb_tiles"), ("nb_tiles",)), 5))}
    if scm:
        prefix = scm[0]
        found = _below(state, prefix)
        _check(path, "sparse ResNet18 layer4", found, _scm_spec())
        model = ReleasedSparseConvAggregator(origin=origin, backend=backend)
        mapped = {_scm_target(k): convert_sparse_weight(v) if k.endswith("weight") and v.dim() == 4 else v
                  for k, v in found.items()}
        model.load_state_dict(mapped, strict=False)
        info |= {"kind": "scm", "prefix": prefix, "in_dim": 256}
    else:
        prefix = mlp[0]
        found = _below(state, prefix)
        first = found.get("0.block.0.block.0.weight")
        in_dim = int(first.shape[1]) if first is not None and first.dim() == 2 else 256
        n_blocks = len({k.split(".", 1)[0] for k in found if k.split(".", 1)[0].isdigit()}) or 2
        batchnorm = any(".norm." in k for k in found)
        spec = _mlp_spec(in_dim, n_blocks, batchnorm)
        counters = {k.rsplit(".", 1)[0] + ".num_batches_tracked": () for k in spec if k.endswith(".norm.weight")}
        _check(path, "residual MLP", found, spec, optional=counters)
        model = ResidualMLPAggregator(in_dim, 512, n_blocks, batchnorm)
        model.load_state_dict({_mlp_target(k): v for k, v in found.items()}, strict=False)
        info |= {"kind": "mlp", "prefix": prefix, "in_dim": in_dim}
    projector = _below(state, "projector.")
    if projector:
        spec = {"layer1.0.weight": (512, 512), "layer2.0.weight": (512, 512), "layer3.weight": (256, 512),
                "layer3.bias": (256,)} | {f"{a}.{p}": (512,) for a in ("layer1.0", "layer2.0") for p in ("bias",)}
        spec |= {f"{a}.{p}": (512,) for a in ("layer1.2", "layer2.2") for p in _BN}
        _check(path, "projector", projector, spec, optional={"layer1.2.num_batches_tracked": (),
                                                             "layer2.2.num_batches_tracked": ()})
        info["projector"] = {next(o + k[len(t):] for t, o in _PROJECTOR.items() if k.startswith(t)): v
                             for k, v in projector.items()}
    return model.to(device).eval(), info


class ReleasedSparseConvAggregator(SparseConvAggregator):
    """gigassl's sparse layer4 aggregator holding the authors' weights, with their map origin by default.

    ``origin="authors"``: each view is translated so that its smallest coordinate is 0 on each axis, as in their
    ``SparseConvMIL``: that site lies in the first stride-2 window only (windows ``2o .. 2o + 2``, ``o >= 0``), so
    a view has fewer windows along its lower borders than with gigassl's origin; along its upper borders only the
    windows their map size allows exist (``S = max + 1``, at least 5, odd, ``S // 2`` odd: a window starting at
    ``S - 1`` is dropped), computed for each view alone as their inference does. ``origin="gigassl"``:
    :meth:`SparseConvAggregator.to_sparse` unchanged (the smallest site at 1 or 2, by parity).

    Shape:
        Views (B, T, 256) -> (B, 512).
    """

    def __init__(self, origin: str = "authors", backend: str = "torch"):
        super().__init__(256, backend=backend)
        self.origin = origin

    def to_sparse(self, views: Views) -> SparseTensor:
        """Tiles on the map with the view's smallest site at 0, tiles sharing a site averaged (``origin="authors"``).

        Shape:
            Views (B, T, F) -> SparseTensor with features (n_sites, F), coords (n_sites, 3) ``(b, y, x)``.
        """
        if self.origin != "authors":
            return super().to_sparse(views)
        valid = views.valid()
        coords = views.coords.to(torch.long)
        big = torch.iinfo(torch.long).max
        low = torch.where(valid[..., None], coords, big).amin(1)
        placed = coords - torch.where(low == big, 0, low)[:, None, :]
        batch = torch.arange(coords.shape[0], device=coords.device)[:, None].expand_as(valid)
        sites = torch.stack([batch[valid], placed[..., 1][valid], placed[..., 0][valid]], 1)
        top = sites[:, 1:].amax(0).tolist() if len(sites) else [0, 0]
        size = (valid_spatial_size(top[0] + 1), valid_spatial_size(top[1] + 1))
        x = SparseTensor.from_sites(sites, views.features[valid], coords.shape[0], size)
        # their map size per axis (each view alone, as their inference runs it): S = max + 1, at least 5, odd, with
        # S // 2 odd; the stride-2 windows o <= (S - 3) // 2 exist, a window starting at S - 1 does not
        extent = torch.where(valid[..., None], placed, 0).amax(1) + 1  # (B, 2) (x, y)
        extent = torch.clamp(extent, min=5)
        extent = extent + (extent % 2 == 0)
        extent = extent + 2 * ((extent // 2) % 2 == 0)
        x.cache["authors_last_window"] = (extent - 3) // 2
        return x

    def forward_sparse(self, x: SparseTensor) -> torch.Tensor:
        """Their network: block 0 with only the stride-2 windows their map size has (origin "authors"), block 1.
        Shape: SparseTensor (n, 256) -> (B, 512)."""
        last = x.cache.get("authors_last_window")
        if last is None:
            return super().forward_sparse(x)
        first = self.blocks[0]

        def clip(t: SparseTensor) -> SparseTensor:
            limit = last[t.coords[:, 0]]  # (n, 2) (x, y)
            keep = (t.coords[:, 2] <= limit[:, 0]) & (t.coords[:, 1] <= limit[:, 1])
            return SparseTensor(t.features[keep], t.coords[keep], t.batch_size, t.spatial_size)

        main = clip(first.conv1(x))
        main = first.bn2(first.conv2(first.relu(first.bn1(main))))
        pool, conv, norm = first.downsample
        short = norm(conv(clip(pool(x))))
        x = main.replace(torch.relu(main.features + short.features))
        return global_average(self.blocks[1](x))


def load_released_checkpoint(path: str | os.PathLike, device: str = "cpu", backend: str | None = None,
                             origin: str = "authors"):
    """(model in eval mode, checkpoint-like dict) for :func:`gigassl.train.load_checkpoint`: their aggregator (and
    projector when the file has one) in :class:`GigaSSL`, and the fields :func:`gigassl.embed.embed_slides` reads
    (``in_dim``, ``epoch``, ``config.maps`` with their ``downmap`` and no slide augmentation, ``config.aggregator``
    = ``released-scm`` / ``released-mlp``, ``config.tiles_per_view``, ``released``: the info of
    :func:`load_released` without the projector's tensors)."""
    from .config import MapConfig

    aggregator, info = load_released(path, origin=origin, backend=backend or "torch", device=device)
    projector = Projector(aggregator.out_dim)
    if info["projector"] is not None:
        projector.load_state_dict(info["projector"])
    model = GigaSSL(aggregator, projector).to(device).eval()
    maps = dataclasses.asdict(MapConfig(downsample=info["downsample"], slide_aug=False, scale=(0.7, 1.3)))
    described = {k: v for k, v in info.items() if k != "projector"} | {"projector": info["projector"] is not None,
                                                                       "file": str(Path(path))}
    return model, {"in_dim": info["in_dim"], "epoch": info["epoch"], "bank": None, "released": described,
                   "config": {"maps": maps, "aggregator": f"released-{info['kind']}",
                              "tiles_per_view": info["tiles_per_view"]}}
