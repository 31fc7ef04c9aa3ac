"""Where computation runs: the device, autocast precision, thread limits, device errors, and the watchdog of worker
processes; the bilinear resize that gives the same pixels on every device.
"""

from __future__ import annotations

import contextlib
import os
import re
from typing import Iterator





from .errors import ConfigError


_BLAS = None  # threadpoolctl's controller of the BLAS/OpenMP pools, made at first use (it inspects the loaded libraries)


@contextlib.contextmanager
def limit_threads(n: int | None, library: str = "torch") -> Iterator[None]:
    """Run the block with at most ``n`` threads (None: unchanged) and restore the previous setting: the one thread
    limiter.

    ``library``: ``"torch"`` (``torch.set_num_threads``: the tile embedder, the aggregators, DeepMIL) or ``"blas"``
    (the BLAS/OpenMP pools of numpy, scipy and scikit-learn, through threadpoolctl: the linear probes, the
    diagnostics).
    """
    if library == "blas":
        global _BLAS
        if n is None:
            yield
            return
        if _BLAS is None:
            from threadpoolctl import ThreadpoolController

            _BLAS = ThreadpoolController()
        with _BLAS.limit(limits=int(n)):
            yield
        return
    from .config import choice

    choice(library, ("torch", "blas"), "limit_threads' library")
    import torch

    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


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


def torch_version() -> tuple[int, int]:
    """(major, minor) of the installed torch."""
    import torch

    return tuple(int(v) for v in re.findall(r"\d+", torch.__version__)[:2])


def is_device_error(err: BaseException) -> bool:
    """True for a failure of the accelerator or of memory (CUDA or MPS out of memory, a device-side assert, NCCL,
    cuDNN, a CPU allocation) rather than of the data: it must stop a batch run, not be listed as a failure of every
    slide."""
    import sys

    torch = sys.modules.get("torch")  # no torch loaded: no torch error
    kinds = tuple(k for k in (getattr(torch, "OutOfMemoryError", None),
                              getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)) if k is not None)
    if kinds and isinstance(err, kinds):
        return True
    return isinstance(err, (RuntimeError, MemoryError)) and (isinstance(err, MemoryError) or any(
        mark in str(err) for mark in ("CUDA", "CUBLAS", "cuDNN", "NCCL", "MPS backend", "out of memory",
                                      "device-side assert", "can't allocate memory")))


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
    if device.split(":")[0] == "mps" and torch_version() < (2, 5):  # autocast on MPS came with torch 2.5
        if precision == "bf16":
            raise ConfigError(f"bfloat16 autocast on MPS needs torch >= 2.5 (this is {torch.__version__}); "
                              "use --precision fp32 or a newer torch.")
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

    from .config import refused

    allowed = ("auto", "cuda", "mps", "cpu")
    base = name.split(":")[0]
    if base not in allowed:
        raise refused("device", name, "one of " + ", ".join(map(repr, allowed)), "Use cuda:N for a given GPU.")
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


def resize(x, size: int, antialias: bool = True):
    """Bilinear resize of (B, C, H, W) to (size, size) on ``x``'s device, with torch's antialiased kernel when
    ``antialias`` (the tile augmentation's, enlarging too). MPS before torch 2.7 has no antialiased bilinear kernel:
    there the resize runs on the CPU, so that the pixels are the same whatever the device."""
    import torch.nn.functional as F

    if antialias and x.device.type == "mps" and torch_version() < (2, 7):
        return F.interpolate(x.cpu(), size=(size, size), mode="bilinear", align_corners=False,
                             antialias=True).to(x.device)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
