"""The bank of augmented tile embeddings (``gigassl bank``; Sec. 3.2, "Freezing the tile encoder").

"For encoding a WSI, this is implemented by: (i) sampling 50 tile-level augmentation functions, (ii) for each k,
randomly subsampling 256 tiles from the WSI and augment them with t_k, and (iii) concurrently and independently
forwarding each augmented tile into e_theta1 and storing them."

Per slide: A augmentation draws; for each, N tiles sampled with replacement from the slide's tissue tiles and
transformed by the draw (``shared``) or by one draw per tile (``independent``, the NS ablation); embedded. Also the
plain (non-augmented) embedding of every tissue tile, used by inference and the baselines. One HDF5 per slide
(layout in :mod:`gigassl.io`). A slide's tissue tiles are read once into memory (M x tile_px^2 x 3 bytes) and the
draws index into them.

Randomness is keyed by (seed, slide_id, draw), so the bank does not depend on shards, resumption or slide order.
Scale-out: ``shard=(i, n)`` processes slides i, i+n, ...; under ``torchrun`` each rank takes its shard and its GPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch

from . import __version__, io
from .augment import TileAugmentation
from .batch import BatchReport, run_batch
from .config import AugmentConfig, BankConfig, EncoderConfig
from .encoders import Embedding, build_embedder
from .errors import ConfigError, SlideError, suggest
from .manifest import read_manifest
from .provenance import IGNORED, check_folder
from .slides import read_tiles
from .seeding import rng, sample_indices, torch_generator


def slide_key(slide_id: str) -> int:
    """A stable 62-bit integer of a slide id, used to key its random draws."""
    return int.from_bytes(hashlib.sha256(slide_id.encode()).digest()[:8], "little") >> 2


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    if text is None:
        return None
    try:
        i, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r} must look like i/n, e.g. 0/4 (slides 0, 4, 8, ...).") from None
    if not 0 <= i < n:
        raise ConfigError(f"--shard {text!r}: need 0 <= i < n in i/n (e.g. 0/4 ... 3/4).")
    return i, n


def bank_slide_ids(bank_dir: str | os.PathLike) -> list[str]:
    """The slides that have a bank (or TRIDENT/CLAM tile-features) file in ``bank_dir``, sorted."""
    return list(io.feature_files(bank_dir))


def torchrun_shard() -> tuple[int, int] | None:
    """(rank, world size) when launched by torchrun (RANK and WORLD_SIZE set), else None."""
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        return int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    return None


def embed_slide(
    tiles: np.ndarray,
    coords: np.ndarray,
    slide_id: str,
    embedding: Embedding,
    augmentation: TileAugmentation,
    config: BankConfig,
    batch_size: int,
    plain: np.ndarray | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray]:
    """Embed one slide's tiles: A augmented draws of N tiles, and every tile plainly (unless ``plain``, the plain
    embeddings already computed with the same embedder, is given). The draws are augmented on the embedder's device
    and ``batch_size // N`` of them go through each forward pass.

    Shapes: tiles uint8 (M, px, px, 3), coords (M, 2) -> features (A, N, F) | None, draw coords (A, N, 2) | None,
    plain features (M, F).
    """
    if plain is None:
        plain = torch.cat([embedding(torch.from_numpy(tiles[i:i + batch_size]))
                           for i in range(0, len(tiles), batch_size)]).numpy()
    if config.augmentations == 0:
        return None, None, plain
    key = slide_key(slide_id)
    n = config.tiles
    draws_per_batch = max(1, batch_size // n)
    features, draw_coords = [], []
    pending: list[torch.Tensor] = []
    device = torch.device(embedding.device)
    for a in range(config.augmentations):
        idx = sample_indices(rng(config.seed, key, a), len(tiles), n, config.replacement)
        draw_coords.append(coords[idx])
        # uint8 tiles to the device (pinned for an asynchronous copy to a GPU), then the augmentation there: its
        # parameters come from the keyed CPU generator, so the draw is the same on every device
        x = torch.from_numpy(tiles[idx])
        if device.type == "cuda":
            x = x.pin_memory()
        x = x.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
        pending.append(augmentation(x, torch_generator(config.seed, key, a)))
        if len(pending) == draws_per_batch or a == config.augmentations - 1:
            features.append(embedding(torch.cat(pending)).view(len(pending), n, -1))
            pending = []
    return torch.cat(features).numpy(), np.stack(draw_coords), plain


def _reused_plain(plain_from, slide_id: str, coords: np.ndarray, weights_id: str) -> np.ndarray | None:
    """The plain embeddings of ``slide_id`` from the bank folder ``plain_from`` when they were made by the same
    weights on the same tiles; None otherwise (they are then computed)."""
    if plain_from is None:
        return None
    path = Path(plain_from) / f"{slide_id}.h5"
    if not path.is_file():
        return None
    other = io.read_bank(path, augmented=False)
    if other.attrs.get("weights_sha256") != weights_id or not np.array_equal(other.plain_coords, coords):
        return None
    return np.asarray(other.plain_features, np.float32)


def build_bank(
    manifest: str | os.PathLike,
    coords_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: BankConfig,
    encoder: EncoderConfig,
    augment: AugmentConfig,
    shard: tuple[int, int] | None = None,
    progress: bool = True,
    slide_ids=None,
    plain_from: str | os.PathLike | None = None,
) -> BatchReport:
    """Write ``out_dir/<slide_id>.h5`` for every slide of the manifest (of this shard) that has none yet.

    ``slide_ids``: only these slides of the manifest (None: all). ``plain_from``: a bank folder made with the same
    encoder and weights (e.g. ``--augmentations 0``) whose plain embeddings are reused instead of recomputed (the
    plain embeddings depend only on the encoder: one computation serves every bank of that encoder).

    Failures (no coordinates, no tissue tile, unreadable slide) are listed in ``out_dir/failures.csv``
    (``failures.shard-i-of-n.csv`` for a shard) and the batch goes on.
    """
    frame = read_manifest(manifest)
    coords_dir, out_dir = Path(coords_dir), Path(out_dir)
    device = encoder.device
    if shard is None and (shard := torchrun_shard()) is not None and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    index, count = shard or (0, 1)
    if slide_ids is not None:
        frame = frame[frame["slide_id"].isin(set(slide_ids))]
    rows = frame.iloc[index::count]
    embedder = build_embedder(encoder)
    embedding = Embedding(embedder, device, encoder.precision)
    out_dir.mkdir(parents=True, exist_ok=True)
    tiles = coords_dir / "config.json"  # the record of the tiling these coordinates come from
    check_folder(out_dir, "a bank", {
        "bank": dataclasses.asdict(config), "encoder": dataclasses.asdict(encoder),
        "augment": dataclasses.asdict(augment), "weights_sha256": embedder.weights_id,
        "precision": embedding.precision, "tiles": json.loads(tiles.read_text()) if tiles.exists() else None,
        "version": __version__,
    }, ignored=IGNORED | {"weights"})  # the weights file is identified by its sha256, not its path
    paths = dict(zip(frame["slide_id"], frame["path"]))

    def work(slide_id: str, tmp: Path) -> None:
        coords_path = io.coords_file(coords_dir, slide_id)
        if coords_path is None:
            raise SlideError(f"No tile coordinates for {slide_id} in {coords_dir} (looked for "
                             f"{', '.join(p.format(slide_id) for p in io.COORDS_PATTERNS)}: gigassl, TRIDENT and "
                             "CLAM names); run `gigassl tile` (or TRIDENT / CLAM) for it.")
        coords, attrs = io.read_coords(coords_path)
        if len(coords) == 0:
            raise SlideError(suggest(f"Slide {slide_id} has no tissue tile in {coords_path}.",
                                     "Check the slide, or lower --min-tissue when tiling."))
        tile_px = int(attrs["patch_size"])
        augmentation = TileAugmentation(augment, out_px=tile_px)
        tiles = read_tiles(paths[slide_id], coords, int(attrs["patch_size_level0"]), tile_px, config.workers)
        plain = _reused_plain(plain_from, slide_id, coords, embedder.weights_id)
        feats, draw_coords, plain = embed_slide(tiles, coords, slide_id, embedding, augmentation, config,
                                                encoder.batch_size, plain)
        io.write_bank(tmp, io.Bank(feats, draw_coords, plain, coords, {
            "slide_id": slide_id, "encoder": encoder.name, "weights_sha256": embedder.weights_id,
            "feature_dim": int(plain.shape[1]), "tile_px": tile_px, "target_mpp": float(attrs.get("target_mpp", "nan")),
            "patch_size_level0": int(attrs["patch_size_level0"]), "level0_mpp": float(attrs.get("level0_mpp", "nan")),
            "augmentation_mode": augment.mode, "augmentations": config.augmentations, "tiles": config.tiles,
            "seed": config.seed, "precision": embedding.precision, "version": __version__,
        }))

    items = [(sid, out_dir / f"{sid}.h5") for sid in rows["slide_id"]]
    failures = "failures.csv" if count == 1 else f"failures.shard-{index}-of-{count}.csv"
    return run_batch(items, work, out_dir, desc=f"bank {index}/{count}" if count > 1 else "bank",
                     progress=progress, failures_name=failures)
