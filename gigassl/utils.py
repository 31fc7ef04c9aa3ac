"""Small helpers shared by the stages: seeding without global state, devices, hashing, atomic files."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import ConfigError


def rng(*key: int) -> np.random.Generator:
    """A NumPy generator determined by ``key`` (e.g. ``rng(seed, epoch, slide_index)``).

    Every random choice in gigassl goes through a generator built from explicit integers, so that results
    do not depend on the order of work (workers, ranks, shards, resumed runs).
    """
    return np.random.default_rng([int(k) for k in key])


@contextlib.contextmanager
def torch_seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's global generator set to ``seed`` and restore it afterwards.

    Used only around ``nn.Module`` construction, whose parameter initialisers read the global generator.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        yield


def torch_generator(*key: int, device: str = "cpu"):
    """A ``torch.Generator`` seeded from ``key`` (see :func:`rng`)."""
    import torch

    seed = int(rng(*key).integers(0, 2**62))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen


def die_with_parent(interval: float = 0.5) -> None:
    """Initializer of worker processes (``ProcessPoolExecutor(initializer=die_with_parent)``): end this process as
    soon as its parent is gone, even after a ``kill -9`` of the parent, which would otherwise leave idle workers
    behind. A daemon thread watches the parent's pid (a dead parent's children are re-parented)."""
    import threading
    import time

    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()




def autocast_dtype(device: str, precision: str = "auto"):
    """The dtype dense convolutions run in under autocast on ``device``, or None for float32.

    ``precision``: ``fp32``; ``bf16`` (bfloat16 autocast, float32 weights and accumulation); ``auto``: bfloat16 on a
    GPU (CUDA, MPS) and on a CPU that computes it natively (oneDNN reports AVX512-BF16 or AMX; about 1.7x faster
    for the tile embedder there), float32 on any other CPU (where bfloat16 is emulated and slower). The precision
    changes embeddings in about the third significant digit; the one used is recorded with the outputs.
    """
    import torch

    from .config import PRECISIONS, choice

    choice(precision, PRECISIONS, "precision")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if device.split(":")[0] in ("cuda", "mps"):
        return torch.bfloat16
    supported = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return torch.bfloat16 if torch.backends.mkldnn.is_available() and supported is not None and supported() else None


def resolve_device(name: str = "auto") -> str:
    """Return a torch device string for ``name`` in ``auto | cuda | mps | cpu``.

    Raises:
        ConfigError: the device is unknown or not available here.
    """
    import torch

    allowed = ("auto", "cuda", "mps", "cpu")
    base = name.split(":")[0]
    if base not in allowed:
        raise ConfigError(f"Unknown device {name!r}; allowed: {', '.join(allowed)} (cuda:N for a given GPU).")
    if base == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"Device {name!r} was asked for but this torch ({torch.__version__}) sees no CUDA GPU. "
            "Use --device cpu, or install a CUDA build of torch (see README, 'Running on a GPU')."
        )
    if base == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"Device {name!r} was asked for but MPS is not available; use --device cpu.")
    return name


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def temporary_path(final: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``final`` (same folder, so that ``os.replace`` is atomic)."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared
    return Path(name)


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it is renamed to ``final``, on error removed.

    A reader therefore never sees a half-written ``final``: it exists only once complete.
    """
    tmp = temporary_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv_atomic(frame, path: str | os.PathLike) -> None:
    """Write a pandas DataFrame as CSV through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)
