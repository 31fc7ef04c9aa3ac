"""Files written safely: atomic writes (a temporary name, then a rename), temporaries and their cleaning, the cache
folder, writability checks and file hashes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterator





from .errors import ConfigError


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
