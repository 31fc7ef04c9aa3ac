"""Small helpers shared by the stages: seeding without global state, devices, hashing, atomic files."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
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


def nearest(points: np.ndarray, centre: int, n: int, generator: np.random.Generator) -> np.ndarray:
    """The ``n`` points nearest point ``centre`` (Euclidean; the centre first; ties in a random order drawn from
    ``generator``, one number a point). Shape: points (M, D) -> indices (min(n, M),), nearest first."""
    p = np.asarray(points, np.float64)
    distance = ((p - p[centre]) ** 2).sum(1)
    return np.lexsort((generator.random(len(p)), distance))[:n]


@contextlib.contextmanager
def torch_seeded(seed: int, device: str = "cpu") -> Iterator[None]:
    """Run the block with torch's global generator (and, for a CUDA ``device``, that GPU's) set to ``seed``, and
    restore them afterwards: the one seeding helper, around ``nn.Module`` construction (whose initialisers read the
    global generator) and around training that draws dropout masks."""
    import torch

    dev = torch.device(device)
    index = (dev.index if dev.index is not None else torch.cuda.current_device()) if dev.type == "cuda" else None
    with torch.random.fork_rng(devices=[] if index is None else [index]):
        torch.random.default_generator.manual_seed(int(seed))
        if index is not None:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(int(seed))
        yield


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




def torch_version() -> tuple[int, int]:
    """(major, minor) of the installed torch."""
    import torch

    return tuple(int(v) for v in re.findall(r"\d+", torch.__version__)[:2])


def resize(x, size: int, antialias: bool = True):
    """Bilinear resize of (B, C, H, W) to (size, size) on ``x``'s device, with torch's antialiased kernel when
    ``antialias`` (the tile augmentation's, enlarging too). MPS before torch 2.7 has no antialiased bilinear kernel:
    there the resize runs on the CPU, so that the pixels are the same whatever the device."""
    import torch.nn.functional as F

    if antialias and x.device.type == "mps" and torch_version() < (2, 7):
        return F.interpolate(x.cpu(), size=(size, size), mode="bilinear", align_corners=False,
                             antialias=True).to(x.device)
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)


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


CHECKPOINT_KINDS = {
    "gigassl": "a Giga-SSL checkpoint (written by `gigassl train`)",
    "moco": "a MoCo tile-encoder checkpoint (written by `gigassl pretrain-tiles`)",
    "state_dict": "a bare state dict (e.g. torchvision's resnet18 weights)",
    "other": "an unknown torch file",
}


def checkpoint_kind(state) -> str:
    """Which of :data:`CHECKPOINT_KINDS` a loaded checkpoint is."""
    if not isinstance(state, dict):
        return "other"
    if {"model", "in_dim", "config"} <= set(state):
        return "gigassl"
    queries = ("module.encoder_q.", "encoder_q.")
    if "state_dict" in state and any(str(k).startswith(queries) for k in state["state_dict"]):
        return "moco"
    if state and all(isinstance(k, str) for k in state) and any(k.endswith(".weight") for k in state):
        return "state_dict"
    return "other"


def _torch_reason(err: Exception) -> str:
    """What a failed ``torch.load(weights_only=True)`` found, in a line (without torch's advice to load unsafely)."""
    text = str(err).strip()
    if "WeightsUnpickler error:" in text:  # Python objects a safe load refuses; torch adds advice to load unsafely
        found = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        return f"it holds objects a safe load refuses: {found[0][:200] if found else 'unknown'}"
    first = text.splitlines()[0] if text else ""
    return f"{type(err).__name__}: {first[:200]}" if first else type(err).__name__


def load_torch_file(path: str | os.PathLike, what: str, expected: str, device: str = "cpu"):
    """``torch.load`` of ``path`` with ``weights_only=True`` (tensors and plain Python values only, no code).

    Raises:
        GigasslError: saying what is true: the file is missing, a folder, empty, or unreadable (truncated, another
            kind of file); the message names ``what`` and the ``expected`` content, never advises an unsafe load.
    """
    import warnings

    import torch

    from .errors import GigasslError
    from .validate import existing_file

    path = existing_file(path, what, f"expected {expected}.")
    try:
        with warnings.catch_warnings():  # torch asks to "file an issue" about a foreign file's pickle protocol
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch's safe unpickler raises many kinds of errors on foreign files
        raise GigasslError(f"{path} is not a readable torch checkpoint ({_torch_reason(err)}). It is truncated "
                           f"(copy or write it again) or another kind of file; expected {expected}.") from None


def load_checkpoint_file(path: str | os.PathLike, expected: tuple[str, ...], device: str = "cpu") -> dict:
    """Load a checkpoint safely (:func:`load_torch_file`) and check its kind.

    Raises:
        GigasslError: the file is missing, unreadable (truncated, not a torch file), or of another kind than
            ``expected`` (keys of :data:`CHECKPOINT_KINDS`); the message names the file, both kinds and the fix.
    """
    from .errors import GigasslError

    wanted = " or ".join(CHECKPOINT_KINDS[k] for k in expected)
    state = load_torch_file(path, "Checkpoint", wanted, device)
    kind = checkpoint_kind(state)
    if kind not in expected:
        raise GigasslError(f"{path} is {CHECKPOINT_KINDS[kind]}, not {wanted}. Pass the right file.")
    return state


def plain_values(value):
    """``value`` with NumPy scalars and arrays turned into Python numbers and lists (recursively), so that a
    checkpoint holding it loads with ``torch.load(weights_only=True)``."""
    import numpy as np

    if isinstance(value, dict):
        return {k: plain_values(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain_values(v) for v in value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _owner() -> str:
    """``<host>-<pid>`` of this process, as it appears in its temporary names."""
    import socket

    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}"


# .<final name>.<host>-<pid>.<random>.tmp (a temporary of a temporary has the same ending)
_TEMPORARY = re.compile(r"^\..*\.(?P<host>[A-Za-z0-9_]+)-(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
_OLD_TEMPORARY = re.compile(r"^\..+\.[A-Za-z0-9_]{6,}\.tmp$")  # before the owner was part of the name


def temporary_path(final: str | os.PathLike) -> Path:
    """A fresh temporary name beside ``final`` (same folder, so that ``os.replace`` is atomic):
    ``.<name>.<host>-<pid>.<random>.tmp``, so that :func:`clean_temporaries` knows whose it is."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.{_owner()}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    os.chmod(name, 0o644)  # mkstemp makes 0600 files; outputs are meant to be shared
    return Path(name)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def ensure_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check that files can be written in it, before any work is done.

    Raises:
        ConfigError: the folder cannot be created or written to (read-only, permissions); names it and the fix.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".write-check.{_owner()}.", suffix=".tmp", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"Cannot write in {folder} ({err.strerror or err}); choose another output folder (--out) or "
                          "fix its permissions.") from None
    return folder


def cache_dir(*parts: str) -> Path:
    """gigassl's cache folder (``$GIGASSL_CACHE``, else ``$XDG_CACHE_HOME/gigassl``, else ``~/.cache/gigassl``),
    joined with ``parts``: where derived files of inputs gigassl did not write go (e.g. a packed TRIDENT folder)."""
    root = os.environ.get("GIGASSL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gigassl"
    return Path(root).joinpath(*parts)


def clean_temporaries(folder: str | os.PathLike, older_than: float = 3600.0) -> list[Path]:
    """Remove the temporary files (and ``*.tmp<pid>`` folders) that killed runs left in ``folder``; returns them.

    A temporary of this host is removed when the process named in it is gone; one of another host (a shared file
    system) or of an older naming only when untouched for ``older_than`` seconds, so that a live writer elsewhere
    keeps its file.
    """
    import shutil
    import time

    folder = Path(folder)
    if not folder.is_dir():
        return []
    host = _owner().rsplit("-", 1)[0]
    removed = []
    for path in folder.iterdir():
        match = _TEMPORARY.match(path.name)
        folder_tmp = re.fullmatch(r".+\.tmp(\d+)", path.name) if path.is_dir() else None
        if match:
            stale = (not _pid_alive(int(match["pid"]))) if match["host"] == host else None
        elif folder_tmp:
            stale = not _pid_alive(int(folder_tmp[1]))
        elif _OLD_TEMPORARY.match(path.name):
            stale = None
        else:
            continue
        if stale is None:
            try:
                stale = time.time() - path.stat().st_mtime > older_than
            except FileNotFoundError:
                continue
        if stale:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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


def listing(items, show: int = 5) -> str:
    """Items for a message: the first ``show`` and how many more.

    >>> listing(["a", "b", "c"], show=2)
    'a, b and 1 more'
    """
    items = list(items)
    return ", ".join(map(str, items[:show])) + (f" and {len(items) - show} more" if len(items) > show else "")


def format_ids(ids, show: int = 10) -> str:
    """Slide (or case) ids for a message: their count, the first ``show`` (quoted) and how many more.

    >>> format_ids(["a", "b", "c"], show=2)
    "3: 'a', 'b' and 1 more"
    """
    ids = list(ids)
    return f"{len(ids)}: {listing(map(repr, ids), show)}"
