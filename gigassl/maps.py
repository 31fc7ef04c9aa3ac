"""Views of slides and their sparse maps (Sec. 3.1 Steps 3-4, Sec. 3.2), read from a packed bank.

- A *view* of a slide (training): pick one augmentation draw of its bank, sample T tiles of that draw with
  replacement (paper T = 5). At inference the T tiles come from the plain (non-augmented) embeddings.
- *Sparse map* (Step 3): tile coordinates divided by a downsampling factor d (the paper: d = 224 level-0 pixels;
  ``"tile"`` = the tile's level-0 size, which puts adjacent tiles on adjacent sites), shifted so the view's minimum
  is 0, floored. Tiles landing on the same site are averaged by the aggregator (:mod:`gigassl.aggregators`).
- *Slide-level augmentation* (Step 4), on the coordinates before the map is built: a random rotation, independent
  horizontal and vertical flips, and a per-axis scale uniform in [0.5, 2] (the paper; the authors' code used
  [0.7, 1.3]: ``MapConfig.scale``).

``PackedBank`` reads a bank folder once into NumPy files (``<bank>/packed/`` for a bank of ``gigassl bank``, a cache
folder for anyone else's features) that are memory-mapped, so training reads views without reopening HDF5 files
(the data path must keep up with the model).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from . import io
from .aggregators import Views
from .bank import slide_key
from .config import MapConfig
from .errors import ConfigError, GigasslError
from .utils import cache_dir as default_cache_dir
from .utils import clean_temporaries, rng

PACK_VERSION = 2


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive advisory lock on ``path`` (fcntl; a no-op where it does not exist): processes that pack the
    same bank (torchrun ranks, parallel notebooks) pack it once."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------------- sparse map geometry
def transform_coords(coords: np.ndarray, angle: float = 0.0, flip_x: bool = False, flip_y: bool = False,
                     scale: tuple[float, float] = (1.0, 1.0)) -> np.ndarray:
    """Rotate by ``angle`` (radians, counter-clockwise in (x, y)), flip, then scale map coordinates.

    Shape: (..., 2) float -> (..., 2) float.
    """
    c = np.asarray(coords, dtype=np.float64)
    cos, sin = math.cos(angle), math.sin(angle)
    x = cos * c[..., 0] - sin * c[..., 1]
    y = sin * c[..., 0] + cos * c[..., 1]
    if flip_x:
        x = -x
    if flip_y:
        y = -y
    return np.stack([x * scale[0], y * scale[1]], axis=-1)


def to_sites(coords: np.ndarray) -> np.ndarray:
    """Shift float map coordinates so that the minimum of each view is 0 and floor them to integer sites.

    Shape: (B, T, 2) or (T, 2) float -> int64 of the same shape. Values are rounded to 1e-6 first so that an exact
    90-degree rotation of integer coordinates stays integer.
    """
    c = np.asarray(coords, dtype=np.float64)
    shifted = c - c.min(axis=-2, keepdims=True)
    return np.floor(np.round(shifted, 6)).astype(np.int64)


def map_units(coords: np.ndarray, downsample: int | str, patch_size_level0: int) -> np.ndarray:
    """Level-0 pixel coordinates -> map units (divided by d). Shape preserved, float64."""
    if downsample == "tile":
        if not isinstance(patch_size_level0, (int, float, np.integer)) or patch_size_level0 <= 0:
            raise ConfigError(f"downsample='tile' needs the tiles' level-0 size, but it is {patch_size_level0!r} "
                              "(not recorded); give the level-0 pixels per map site instead, e.g. --downsample 448.")
        d = patch_size_level0
    else:
        d = downsample
    if isinstance(d, bool) or not isinstance(d, (int, float, np.integer)) or d <= 0:
        raise ConfigError(f"map downsample must be a positive number of level-0 pixels or 'tile'; got {downsample!r}.")
    return np.asarray(coords, dtype=np.float64) / float(d)


def slide_augmentation(coords: np.ndarray, config: MapConfig, generator: np.random.Generator) -> np.ndarray:
    """Step 4: random rotation, flips and per-axis scaling of one view's map coordinates (T, 2) float."""
    if not config.slide_aug:
        return coords
    angle = generator.uniform(0, 2 * math.pi) if config.rotation else 0.0
    flip_x, flip_y = (generator.random(2) < 0.5) if config.flips else (False, False)
    scale = tuple(generator.uniform(config.scale[0], config.scale[1], 2))
    return transform_coords(coords, angle, bool(flip_x), bool(flip_y), scale)


# ---------------------------------------------------------------------------------------------- packed bank
IDENTITY = ("encoder", "weights_sha256", "tile_px", "augmentation_mode", "augmentations", "tiles", "precision")


class PackedBank:
    """A bank folder packed into memory-mapped arrays (made once, reused while the bank files are unchanged).

    ``bank_dir``: a folder of ``gigassl bank`` files, or of TRIDENT/CLAM tile features (plain features only).
    The pack is a cache: for a folder written by ``gigassl bank`` it is ``<bank_dir>/packed/``; for any other
    folder (your TRIDENT or CLAM features, or a read-only one) it goes to ``cache_dir`` or, by default,
    :func:`gigassl.utils.cache_dir` (``$GIGASSL_CACHE``, else ``~/.cache/gigassl``): nothing is written into an
    input folder. Files without any tile (a slide with no tissue) or unreadable are left out and listed in
    ``skipped`` ({slide_id: reason}).

    Shapes: ``features`` (S, A, N, F) float16, ``coords`` (S, A, N, 2) int32 (None when the bank has no augmented
    draws), ``plain_features`` (sum M, F) float16, ``plain_coords`` (sum M, 2) int32, ``offsets`` (S + 1,).
    """

    def __init__(self, bank_dir: str | os.PathLike, cache_dir: str | os.PathLike | None = None):
        self.bank_dir = Path(bank_dir)
        files = io.feature_files(self.bank_dir)
        if not files:
            raise GigasslError(f"No bank or tile-features files (*.h5, or h5_files/*.h5) in {self.bank_dir}; run "
                               "`gigassl bank`, or point to TRIDENT's features_<encoder>/ or CLAM's features folder.")
        own = (self.bank_dir / "config.json").is_file() and os.access(self.bank_dir, os.W_OK)
        if cache_dir is not None:
            self.dir = Path(cache_dir)
        elif own:
            self.dir = self.bank_dir / "packed"
            clean_temporaries(self.bank_dir)  # a packing interrupted by a kill (packed.tmp<pid>)
        else:
            where = hashlib.sha256(str(self.bank_dir.resolve()).encode()).hexdigest()[:16]
            self.dir = default_cache_dir("packed") / f"{self.bank_dir.name}-{where}"
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        clean_temporaries(self.dir.parent)
        signature = [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files.values()]
        meta_path = self.dir / "meta.json"
        with _file_lock(self.dir.with_name(f".{self.dir.name}.lock")):  # one process packs, the others wait for it
            meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
            if meta is None or meta.get("signature") != signature or meta.get("version") != PACK_VERSION \
                    or meta.get("source") != str(self.bank_dir.resolve()):
                self._pack(files, signature)
                meta = json.loads(meta_path.read_text())
        self.ids: list[str] = meta["ids"]
        self.skipped: dict[str, str] = meta.get("skipped", {})
        self.patch_size_level0 = np.asarray(meta["patch_size_level0"], np.int64)
        self.attrs: dict = meta["attrs"]
        self.feature_dim = int(meta["feature_dim"])
        self.offsets = np.load(self.dir / "offsets.npy")
        self.plain_features = np.load(self.dir / "plain_features.npy", mmap_mode="r")
        self.plain_coords = np.load(self.dir / "plain_coords.npy", mmap_mode="r")
        if meta["augmented"]:
            self.features = np.load(self.dir / "features.npy", mmap_mode="r")
            self.coords = np.load(self.dir / "coords.npy", mmap_mode="r")
        else:
            self.features = self.coords = None
        self.keys = np.array([slide_key(i) for i in self.ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def __getstate__(self) -> dict:
        """Pickled (for DataLoader workers) as the folder and the pack's location: the worker maps the same files."""
        return {"bank_dir": str(self.bank_dir), "cache_dir": str(self.dir)}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["bank_dir"], state["cache_dir"])

    @property
    def augmented(self) -> bool:
        """Whether the bank holds augmented draws (``gigassl bank`` with A > 0), or plain tile features only."""
        return self.features is not None

    def indices(self, slide_ids=None) -> np.ndarray:
        """Positions of ``slide_ids`` in the pack (all slides when None).

        Raises:
            GigasslError: some ids have no bank file, or one without any tile.
        """
        if slide_ids is None:
            return np.arange(len(self.ids))
        position = {sid: i for i, sid in enumerate(self.ids)}
        missing = [sid for sid in slide_ids if sid not in position]
        if missing:
            empty = [sid for sid in missing if sid in self.skipped]
            raise GigasslError(
                f"{len(missing)} slide(s) have no usable file in {self.bank_dir}: {missing[:10]}"
                + (f" ({len(empty)} of them left out when packing: {self.skipped[empty[0]]})" if empty else "")
                + "; leave them out (see `skipped` / failures.csv), or run `gigassl bank` for them.")
        return np.array([position[sid] for sid in slide_ids], dtype=np.int64)

    def _pack(self, files: dict[str, Path], signature: list) -> None:
        tmp = self.dir.with_name(self.dir.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        skipped, banks = {}, {}
        for sid, path in files.items():  # what is in each file (the augmented draws are read again below)
            try:
                bank = io.read_bank(path, augmented=False)
            except GigasslError as err:
                skipped[sid] = str(err)
                continue
            if len(bank.plain_features) == 0:
                skipped[sid] = f"{path.name} holds no tile (a slide without tissue tiles)"
                continue
            banks[sid] = (path, bank.attrs, bank.plain_features.shape[1])
        if not banks:
            shutil.rmtree(tmp, ignore_errors=True)
            raise GigasslError(f"No file of {self.bank_dir} holds tiles: " + "; ".join(
                f"{sid}: {why}" for sid, why in list(skipped.items())[:5]))
        first_id = next(iter(banks))
        first = io.read_bank(banks[first_id][0])
        augmented = first.features is not None
        feats = coords = None
        if augmented:
            shape = (len(banks),) + first.features.shape
            feats = np.lib.format.open_memmap(tmp / "features.npy", "w+", np.float16, shape)
            coords = np.lib.format.open_memmap(tmp / "coords.npy", "w+", np.int32, shape[:3] + (2,))
        identity = {k: first.attrs.get(k) for k in IDENTITY if k in first.attrs}
        sizes, patch, plains, plain_coords = [], [], [], []
        for i, (sid, (path, attrs, dim)) in enumerate(banks.items()):
            bank = first if i == 0 else io.read_bank(path, augmented=augmented)
            mine = {k: bank.attrs.get(k) for k in identity}
            if mine != identity or dim != first.plain_features.shape[1]:
                diff = {k: (identity[k], mine[k]) for k in identity if mine[k] != identity[k]}
                if dim != first.plain_features.shape[1]:
                    diff["feature_dim"] = (first.plain_features.shape[1], dim)
                shutil.rmtree(tmp, ignore_errors=True)
                name = banks[first_id][0].name
                raise GigasslError(
                    f"The bank {self.bank_dir} mixes files made with different settings: {path.name} differs from "
                    f"{name} in " + "; ".join(f"{k} ({a!r} in {name}, {b!r} in {path.name})"
                                              for k, (a, b) in diff.items())
                    + ". A bank folder must hold one tile embedder's features at one tile size: rebuild the odd "
                      "files, or move them to a bank folder of their own.")
            if augmented:
                if bank.features is None or bank.features.shape != feats.shape[1:]:
                    got = None if bank.features is None else bank.features.shape
                    raise GigasslError(f"{path}: augmented features {got} differ from {feats.shape[1:]} of "
                                       f"{banks[first_id][0].name}; rebuild the bank with one setting for all slides.")
                feats[i] = bank.features
                coords[i] = bank.coords
            plains.append(bank.plain_features.astype(np.float16))
            plain_coords.append(bank.plain_coords.astype(np.int32))
            sizes.append(len(bank.plain_features))
            patch.append(int(bank.attrs.get("patch_size_level0", 0)))
        if augmented:
            feats.flush()
            coords.flush()
            del feats, coords
        np.save(tmp / "plain_features.npy", np.concatenate(plains))
        np.save(tmp / "plain_coords.npy", np.concatenate(plain_coords))
        np.save(tmp / "offsets.npy", np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        attrs = {k: v for k, v in first.attrs.items() if k not in ("slide_id", "name", "savetodir")}
        (tmp / "meta.json").write_text(json.dumps({
            "version": PACK_VERSION, "signature": signature, "source": str(self.bank_dir.resolve()),
            "ids": list(banks), "skipped": skipped, "patch_size_level0": patch,
            "feature_dim": int(first.plain_features.shape[1]), "augmented": augmented, "attrs": attrs,
        }, default=str))
        shutil.rmtree(self.dir, ignore_errors=True)
        os.replace(tmp, self.dir)

    # ---------------------------------------------------------------------------------------------- views
    def _sites(self, i: int, coords: np.ndarray, config: MapConfig, generator: np.random.Generator | None):
        if config.downsample == "tile" and self.patch_size_level0[i] <= 0:
            raise ConfigError(
                f"Slide {self.ids[i]} of {self.bank_dir} records no tile size (patch_size_level0), which the sparse "
                "map needs with downsample='tile' (CLAM features of a slide with one tile carry none). Give the "
                "level-0 pixels per map site instead (--downsample 448 for 224-px tiles at 20x from a 40x scan).")
        c = map_units(coords, config.downsample, int(self.patch_size_level0[i]))
        if generator is not None:
            c = slide_augmentation(c, config, generator)
        return to_sites(c)

    def plain(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Slide ``i``'s plain tile features and their level-0 coordinates. Shape: (M, F) float16, (M, 2) int32."""
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.plain_features[start:stop], self.plain_coords[start:stop]

    def training_views(self, indices: np.ndarray, tiles: int, config: MapConfig, seed: int,
                       epoch: int) -> tuple[Views, Views]:
        """Two views of each slide in ``indices`` (Sec. 3.2): each picks its own draw and T tiles of it, then the
        slide-level augmentation. Randomness keyed by (seed, epoch, slide, view): independent of batch and rank.

        A bank of plain tile features (TRIDENT, CLAM, ``gigassl bank --augmentations 0``) has no draws: each view
        then samples its T tiles from the plain features, so that the two views differ by their tiles and the
        slide-level augmentation only (no tile augmentation).

        Shape: two ``Views`` with features (B, T, F) float32 and coords (B, T, 2) int64.
        """
        out = []
        for view in (0, 1):
            feats = np.empty((len(indices), tiles, self.feature_dim), np.float32)
            sites = np.empty((len(indices), tiles, 2), np.int64)
            for b, i in enumerate(indices):
                g = rng(seed, epoch, self.keys[i], view)
                if self.features is not None:
                    n_draws, n_tiles = self.features.shape[1:3]
                    draw = int(g.integers(n_draws))
                    pick = np.sort(g.integers(0, n_tiles, tiles))
                    feats[b] = self.features[i, draw][pick]
                    chosen = self.coords[i, draw][pick]
                else:
                    plain, coords = self.plain(i)
                    pick = np.sort(g.integers(0, len(plain), tiles))
                    feats[b] = plain[pick]
                    chosen = coords[pick]
                sites[b] = self._sites(i, chosen, config, g)
            out.append(Views(torch.from_numpy(feats), torch.from_numpy(sites)))
        return out[0], out[1]

    def inference_views(self, i: int, views: int, tiles: int, config: MapConfig, seed: int) -> Views:
        """R views of T tiles of slide ``i`` sampled from its plain embeddings, without slide augmentation
        (Sec. 4.2). Shape: features (R, T, F), coords (R, T, 2)."""
        plain, coords = self.plain(i)
        if config.downsample == "tile" and self.patch_size_level0[i] <= 0:
            self._sites(i, coords[:1], config, None)  # the error that names the slide and the fix
        return inference_views(plain, coords, int(self.patch_size_level0[i]), views, tiles, config, seed,
                               int(self.keys[i]))


def inference_views(plain: np.ndarray, coords: np.ndarray, patch_size_level0: int, views: int, tiles: int,
                    config: MapConfig, seed: int, key: int = 0) -> Views:
    """R views of T tiles sampled (with replacement, keyed by ``(seed, key)``; ``key``: :func:`gigassl.bank.slide_key`
    of the slide id) from one slide's plain tile features, mapped without slide augmentation (Sec. 4.2).

    Shape: plain (M, F), coords (M, 2) level-0 -> features (R, T, F) float32, coords (R, T, 2) int64.
    """
    g = rng(seed, key)
    pick = np.sort(g.integers(0, len(plain), (views, tiles)), axis=1)
    sites = np.stack([to_sites(map_units(np.asarray(coords)[p], config.downsample, patch_size_level0)) for p in pick])
    return Views(torch.from_numpy(np.asarray(plain[pick.ravel()], np.float32).reshape(views, tiles, -1)),
                 torch.from_numpy(sites))
