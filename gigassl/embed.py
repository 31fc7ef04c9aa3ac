"""R-view inference of one embedding per slide (``gigassl embed``; Sec. 4.2 "Default settings", Sec. 5).

"For a slide X, we bootstrap R = 50 views without tile augmentation (i.e. differing only in the sampled tiles),
compute their embedding {W_r} and consider the WSI representation as the elementwise average of the {W_r}.
[...] the Giga-SSL embeddings are normalized using the L2 unit."

Views of T tiles are sampled with replacement from a slide's plain (non-augmented) tile embeddings, mapped without
slide augmentation, embedded by the aggregator in eval mode (the representation W, before the projector),
averaged over the R views and L2-normalised. The same seed gives the same embeddings: bit for bit on
the CPU, to about 1e-6 on CUDA (whose atomic ``index_add_`` sums in a varying order). Works on banks made by
``gigassl bank`` and on TRIDENT/CLAM tile features (plain features only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm  # not tqdm.auto, which warns in kernels without ipywidgets

from . import __version__, io, provenance, validate
from .aggregators import Views
from .config import EmbedConfig, MapConfig
from .errors import ConfigError, GigasslError
from .bankstore import PackedBank
from .maps import packed_case_views, packed_inference_views
from .train import load_checkpoint
from .files import ensure_writable, sha256_file
from .devices import resolve_device


def _mean_view_embedding(model, pending: list[Views], views: int, device: str) -> torch.Tensor:
    """The L2-normalised mean of the R view embeddings of each slide. Shape: list of S Views (R, T, F) -> (S, D)."""
    feats = torch.cat([v.features for v in pending]).to(device)
    coords = torch.cat([v.coords for v in pending]).to(device)
    w = model.embed(Views(feats, coords)).float().view(len(pending), views, -1).mean(1)
    return torch.nn.functional.normalize(w, dim=1).cpu()


@torch.inference_mode()
def embed_bank(model, bank: PackedBank, indices: np.ndarray, views: int, tiles: int, maps: MapConfig, seed: int,
               batch_views: int = 4096, device: str = "cpu", progress: bool = False) -> np.ndarray:
    """Slide embeddings of ``bank`` slides ``indices``: the L2-normalised mean of R view embeddings.

    Shape: -> (len(indices), D) float32 (D = the aggregator's out_dim, 512 for the sparse CNN).
    """
    if views < 1 or tiles < 1:
        raise ConfigError(f"views ({views}) and tiles per view ({tiles}) must both be >= 1.")
    model.eval()
    out, pending = [], []
    per_batch = max(1, batch_views // views)
    for i in tqdm(indices, desc="embed", unit="slide", disable=not progress):
        pending.append(packed_inference_views(bank, int(i), views, tiles, maps, seed))
        if len(pending) == per_batch:
            out.append(_mean_view_embedding(model, pending, views, device))
            pending = []
    if pending:
        out.append(_mean_view_embedding(model, pending, views, device))
    return torch.cat(out).numpy() if out else np.empty((0, 0), np.float32)


@torch.inference_mode()
def embed_cases(model, bank: PackedBank, case_slides: dict, views: int, tiles: int, maps: MapConfig, seed: int,
                batch_views: int = 4096, device: str = "cpu", progress: bool = False) -> tuple[list[str], np.ndarray]:
    """Patient embeddings by early fusion (issue #26 item 3, beyond the paper): each of the R views of a case draws
    its T tiles across all of the case's slides (:func:`gigassl.maps.packed_case_views`: the slides side by side on
    one sparse map), then the mean over the R views, L2-normalised, as :func:`embed_bank` does for a slide.

    Args:
        case_slides: {case id: [bank slide index, ...]}. A case of one slide gets exactly that slide's row of
            :func:`embed_bank` (same views, tiles, maps and seed); a case of several is keyed by
            ``gigassl.bank.slide_key(case id)``.

    Returns: (case ids in the order of ``case_slides``, (C, D) float32).
    """
    from .bank import slide_key

    if views < 1 or tiles < 1:
        raise ConfigError(f"views ({views}) and tiles per view ({tiles}) must both be >= 1.")
    model.eval()
    names, out, pending = [str(c) for c in case_slides], [], []
    per_batch = max(1, batch_views // views)
    for case, indices in tqdm(case_slides.items(), desc="embed cases", unit="case", disable=not progress):
        pending.append(packed_case_views(bank, indices, views, tiles, maps, seed, slide_key(str(case))))
        if len(pending) == per_batch:
            out.append(_mean_view_embedding(model, pending, views, device))
            pending = []
    if pending:
        out.append(_mean_view_embedding(model, pending, views, device))
    return names, (torch.cat(out).numpy() if out else np.empty((0, 0), np.float32))


def case_indices(cases, bank: PackedBank, ids: list[str]) -> dict[str, np.ndarray]:
    """{case id: bank indices of its slides among ``ids``}, cases in sorted order, from a ``slide_id, case_id`` table
    (the slides of the table that the bank lacks are left out; a case left without slides is dropped)."""
    import pandas as pd

    table = cases if isinstance(cases, pd.DataFrame) else pd.read_csv(
        validate.existing_file(cases, "Cases table", "give a CSV with slide_id and case_id (e.g. the manifest)."),
        dtype={"slide_id": str, "case_id": str})
    missing = [c for c in ("slide_id", "case_id") if c not in table.columns]
    if missing:
        raise ConfigError(f"The cases table {cases if not isinstance(cases, pd.DataFrame) else ''} lacks "
                          f"{missing}; it needs slide_id and case_id (one row per slide, e.g. the manifest).")
    present = set(ids)
    table = table[table["slide_id"].astype(str).isin(present)]
    if table.empty:
        raise ConfigError("No slide of the cases table is in the bank: check that its slide_id values are the "
                          "bank's slide ids.")
    return {str(case): bank.indices(list(group["slide_id"].astype(str)))
            for case, group in table.groupby("case_id", sort=True)}


def check_bank(bank: PackedBank, state: dict, bank_dir, checkpoint) -> None:
    """Refuse a bank whose tile features are not those the checkpoint was trained on: another encoder, other
    weights, another tile size or feature dimension (the message names both sides)."""
    from .train import bank_identity

    if bank.feature_dim != state["in_dim"]:
        raise ConfigError(f"The bank {bank_dir} has {bank.feature_dim}-d tile features but the checkpoint "
                          f"{checkpoint} was trained on {state['in_dim']}-d ones; use the bank of its encoder.")
    trained_on = {k: v for k, v in (state.get("bank") or {}).items()
                  if k in ("encoder", "weights_sha256", "tile_px", "feature_dim")}
    provenance.refuse_mismatch(
        f"The tile embeddings of the bank {bank_dir} and those the checkpoint {checkpoint} was trained on",
        trained_on, {k: v for k, v in bank_identity(bank).items() if v is not None},
        "Embed with a bank made by the checkpoint's tile embedder at its tile size (gigassl bank --weights ...).")


def embed_slides(bank_dir: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike,
                 config: EmbedConfig, backend: str | None = None, progress: bool = True, slide_ids=None,
                 fmt: str | None = None, overwrite: bool = False, cases=None) -> Path:
    """Embed every slide of a bank (or the bank's slides ``slide_ids``) with a trained checkpoint; write ``out``.

    ``cases`` (``gigassl embed --cases TABLE``): a table (CSV path or frame) with ``slide_id`` and ``case_id``; then
    ``out`` holds one embedding per case (patient) instead, by early fusion (:func:`embed_cases`: each view draws its
    tiles across all of the case's slides in the bank), its ids the case ids (attribute ``fusion`` = ``early``).

    ``out``: ``.h5`` (ids + (S, D) float32), ``.csv``, ``.parquet``, or a folder (TRIDENT's per-slide layout), see
    :func:`gigassl.io.write_embeddings` (``fmt`` overrides the suffix). Slides asked for that have no file, or
    one without any tile or with non-finite features, are left out and listed in ``<out>.failures.csv``.
    An existing ``out`` is replaced when gigassl wrote it (:func:`gigassl.io.written_by_gigassl`); any other is
    refused unless ``overwrite`` (``--overwrite``).
    """
    kind = io.embeddings_format(out, fmt)
    validate.refuse_overwrite(out, lambda p: io.written_by_gigassl(p, kind), "slide embeddings written by gigassl",
                              overwrite)
    ensure_writable(Path(out).parent)
    device = resolve_device(config.device)
    model, state = load_checkpoint(checkpoint, device, backend)
    maps = MapConfig(**state["config"]["maps"])
    bank = PackedBank(bank_dir)
    check_bank(bank, state, bank_dir, checkpoint)
    from .batch import write_failures
    from .train import bank_identity

    wanted = list(bank.ids) + list(bank.skipped) if slide_ids is None else [str(s) for s in slide_ids]
    present = set(bank.ids)
    ids = [s for s in bank.ids if s in set(wanted)]
    failed = {s: bank.skipped.get(s, f"no bank or tile-features file in {bank_dir}")
              for s in wanted if s not in present}
    fusion = {}
    if cases is not None:
        case_slides = case_indices(cases, bank, ids)
        ids, embeddings = embed_cases(model, bank, case_slides, config.views, config.tiles_per_view, maps,
                                      config.seed, config.batch_views, device, progress)
        fusion = {"fusion": "early"}
        coords = None
    else:
        embeddings = embed_bank(model, bank, bank.indices(ids), config.views, config.tiles_per_view, maps,
                                config.seed, config.batch_views, device, progress)
        coords = {sid: bank.plain(i)[1] for sid, i in zip(ids, bank.indices(ids))} if kind == "trident" else None
    io.write_embeddings(out, ids, embeddings, fmt=kind, coords=coords, **fusion, checkpoint_sha256=sha256_file(checkpoint),
                        views=config.views, tiles_per_view=config.tiles_per_view, seed=config.seed,
                        epoch=int(state["epoch"]), aggregator=state["config"]["aggregator"], bank=str(bank_dir),
                        bank_identity=json.dumps(bank_identity(bank), default=str), version=__version__)
    write_failures(Path(f"{Path(out)}.failures.csv") if kind != "trident" else Path(out) / "failures.csv", failed)
    return Path(out)


class GigaSSLEmbedder:
    """One slide's Giga-SSL embedding in memory, from its tile features: no bank folder needed.

    ``GigaSSLEmbedder(checkpoint).transform(features, coords)`` samples R views of T tiles from the features
    (as :func:`embed_slides` does, keyed by ``slide_id``), embeds them with the aggregator and returns the
    L2-normalised mean (Sec. 4.2). Given the ``slide_id`` of a bank slide, it returns that slide's row of
    :func:`embed_slides` with the same R, T and seed.

    Args:
        checkpoint: a ``gigassl train`` checkpoint.
        views, tiles_per_view: R and T (None: the paper's R = 50; T as in training).
        seed: the view seed; device: where the aggregator runs.
    """

    def __init__(self, checkpoint: str | os.PathLike, views: int = 50, tiles_per_view: int | None = None,
                 seed: int = 0, device: str = "cpu"):
        self.device = resolve_device(device)
        self.model, self.state = load_checkpoint(checkpoint, self.device)
        self.maps = MapConfig(**self.state["config"]["maps"])
        self.views = int(views)
        self.tiles_per_view = int(tiles_per_view or self.state["config"]["tiles_per_view"])
        self.seed = int(seed)
        self.in_dim = int(self.state["in_dim"])

    @torch.inference_mode()
    def transform(self, features, coords, patch_size_level0: int | None = None, slide_id: str | None = None):
        """Shape: features (M, F) (numpy or torch), coords (M, 2) level-0 top-left (x, y) -> (D,) float32 numpy.

        ``patch_size_level0``: the tiles' level-0 size, needed when the model maps with ``downsample='tile'``
        (the default); ``slide_id`` keys the view sampling (None: key 0).
        """
        from .bank import slide_key
        from .maps import inference_views

        name = f"slide {slide_id}" if slide_id is not None else "the slide"
        fix = f"transform needs features (M, {self.in_dim}) and coords (M, 2), finite, with M >= 1."
        try:
            features = validate.features(features, f"transform: the features of {name}", fix, self.in_dim)
            coords = validate.coords(coords, f"transform: the coords of {name}", fix)
            validate.same_tile_count(features, coords, f"transform ({name})", fix)
        except GigasslError as err:  # a bad argument of the in-memory API: a usage error of the caller
            raise ConfigError(str(err)) from None
        if not len(coords):
            raise ConfigError(f"transform: {name} has no tile (features of shape {features.shape}). {fix}")
        views = inference_views(features, coords, int(patch_size_level0 or 0), self.views, self.tiles_per_view,
                                self.maps, self.seed, slide_key(slide_id) if slide_id is not None else 0)
        return _mean_view_embedding(self.model, [views], self.views, self.device)[0].numpy()
