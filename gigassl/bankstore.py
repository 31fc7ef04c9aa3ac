"""The packed bank: a bank folder read once into memory-mapped NumPy arrays, the storage training and inference
read from (Sec. 3.2: the data path must keep up with the model).

:class:`PackedBank` packs the HDF5 files of a bank folder (``gigassl bank``, read by :mod:`gigassl.io`; or TRIDENT
or CLAM tile features) into ``features.npy`` / ``coords.npy`` (the augmented draws), ``plain_features.npy`` /
``plain_coords.npy`` (every tissue tile, concatenated over slides, with ``offsets.npy``) and ``meta.json`` (ids,
attributes, the signature of the files). The pack goes to ``<bank>/packed/`` for a bank of ``gigassl bank``, to a
cache folder for anyone else's features, and is made again when a file of the bank changes. Views of the packed
slides are drawn by :mod:`gigassl.maps`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np

from . import io
from .bank import slide_key
from .errors import GigasslError
from .files import cache_dir as default_cache_dir
from .files import clean_temporaries
from .errors import format_ids

PACK_VERSION = 2  # of the pack's layout: a pack of another version is made again
# the attributes every file of a bank folder must share (one tile embedder, one tile size, one augmentation setting)
IDENTITY = ("encoder", "weights_sha256", "tile_px", "augmentation_mode", "augmentations", "tiles", "precision")


@contextlib.contextmanager
def _file_lock(path: Path):
    """An exclusive advisory lock on ``path`` (fcntl; a no-op where it does not exist): processes that pack the
    same bank (torchrun ranks, parallel notebooks) pack it once. The lock file is removed when released; a process
    that waited on a file removed meanwhile locks the path's new file instead."""
    try:
        import fcntl
    except ImportError:  # Windows
        yield
        return
    while True:
        handle = open(path, "a")
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        handle.close()  # removed by the process it waited for: lock the file there now
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # removed while held, so nothing is left behind and no waiter keeps a stale one
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def _keep_first(path: Path, rows: int, chunk: int = 64) -> None:
    """Rewrite the ``.npy`` file ``path`` with its first ``rows`` rows only (copied ``chunk`` rows at a time)."""
    old = np.load(path, mmap_mode="r")
    part = path.with_name("part." + path.name)
    new = np.lib.format.open_memmap(part, "w+", old.dtype, (rows,) + old.shape[1:])
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        new[start:stop] = old[start:stop]
    new.flush()
    del new, old
    os.replace(part, path)


class PackedBank:
    """A bank folder packed into memory-mapped arrays (made once, reused while the bank files are unchanged).

    ``bank_dir``: a folder of ``gigassl bank`` files, or of TRIDENT/CLAM tile features (plain features only).
    The pack is a cache: for a folder written by ``gigassl bank`` it is ``<bank_dir>/packed/``; for any other
    folder (your TRIDENT or CLAM features, or a read-only one) it goes to ``cache_dir`` or, by default,
    :func:`gigassl.files.cache_dir` (``$GIGASSL_CACHE``, else ``~/.cache/gigassl``): nothing is written into an
    input folder. Files without any tile (a slide with no tissue) or unreadable are left out and listed in
    ``skipped`` ({slide_id: reason}). Views of its slides: :func:`gigassl.maps.training_views`,
    :func:`gigassl.maps.packed_inference_views`.

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
                f"Slides have no usable file in {self.bank_dir} ({format_ids(missing)})"
                + (f" ({len(empty)} of them left out when packing: {self.skipped[empty[0]]})" if empty else "")
                + "; leave them out (see `skipped` / failures.csv), or run `gigassl bank` for them.")
        return np.array([position[sid] for sid in slide_ids], dtype=np.int64)

    def _pack(self, files: dict[str, Path], signature: list) -> None:
        tmp = self.dir.with_name(self.dir.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            self._write_pack(tmp, files, signature)
        except BaseException:  # a refused bank or an interrupted packing leaves no temporary folder behind
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(self.dir, ignore_errors=True)
        os.replace(tmp, self.dir)

    def _write_pack(self, tmp: Path, files: dict[str, Path], signature: list) -> None:
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
        first = None
        for sid in list(banks):  # the first file whose augmented draws read (finite, of the right shape)
            try:
                first, first_id = io.read_bank(banks[sid][0]), sid
                break
            except GigasslError as err:
                skipped[sid] = str(err)
                del banks[sid]
        if first is None:
            raise GigasslError(f"No file of {self.bank_dir} holds usable tiles: " + "; ".join(
                f"{sid}: {why}" for sid, why in list(skipped.items())[:5]))
        augmented = first.features is not None
        feats = coords = None
        if augmented:
            shape = (len(banks),) + first.features.shape
            feats = np.lib.format.open_memmap(tmp / "features.npy", "w+", np.float16, shape)
            coords = np.lib.format.open_memmap(tmp / "coords.npy", "w+", np.int32, shape[:3] + (2,))
        identity = {k: first.attrs.get(k) for k in IDENTITY if k in first.attrs}
        kept, sizes, patch, plains, plain_coords = [], [], [], [], []
        for i, (sid, (path, attrs, dim)) in enumerate(banks.items()):
            try:
                bank = first if i == 0 else io.read_bank(path, augmented=augmented)
            except GigasslError as err:  # NaN or a wrong shape in its augmented draws: left out and listed
                skipped[sid] = str(err)
                continue
            mine = {k: bank.attrs.get(k) for k in identity}
            if mine != identity or dim != first.plain_features.shape[1]:
                diff = {k: (identity[k], mine[k]) for k in identity if mine[k] != identity[k]}
                if dim != first.plain_features.shape[1]:
                    diff["feature_dim"] = (first.plain_features.shape[1], dim)
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
                feats[len(kept)] = bank.features
                coords[len(kept)] = bank.coords
            kept.append(sid)
            plains.append(bank.plain_features.astype(np.float16))
            plain_coords.append(bank.plain_coords.astype(np.int32))
            sizes.append(len(bank.plain_features))
            patch.append(int(bank.attrs.get("patch_size_level0", 0)))
        if augmented:
            feats.flush()
            coords.flush()
            del feats, coords
            if len(kept) < len(banks):  # slides left out above: the arrays keep the packed ones only
                for name in ("features.npy", "coords.npy"):
                    _keep_first(tmp / name, len(kept))
        np.save(tmp / "plain_features.npy", np.concatenate(plains))
        np.save(tmp / "plain_coords.npy", np.concatenate(plain_coords))
        np.save(tmp / "offsets.npy", np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64))
        attrs = {k: v for k, v in first.attrs.items() if k not in ("slide_id", "name", "savetodir")}
        (tmp / "meta.json").write_text(json.dumps({
            "version": PACK_VERSION, "signature": signature, "source": str(self.bank_dir.resolve()),
            "ids": kept, "skipped": skipped, "patch_size_level0": patch,
            "feature_dim": int(first.plain_features.shape[1]), "augmented": augmented, "attrs": attrs,
        }, default=str))

    def plain(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """Slide ``i``'s plain tile features and their level-0 coordinates. Shape: (M, F) float16, (M, 2) int32."""
        start, stop = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.plain_features[start:stop], self.plain_coords[start:stop]
