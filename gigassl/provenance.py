"""What made an output, and the checks that keep outputs made with different settings from being mixed.

Every stage keeps a record with its outputs: the tile folder's and the bank's ``config.json`` (the stage's full
config, the identity of its inputs), a MoCo or Giga-SSL checkpoint's ``config`` and ``inputs``, the bank
attributes a checkpoint was trained on. A rerun into the same folder, or a ``--resume``, compares the record with
the request: the same settings continue (the run resumes where it stopped), other settings are refused with every
differing field named and the way out (a new folder, or deleting the old one). Downstream stages compare their
inputs' records in the same way (:func:`refuse_mismatch`).

Fields that do not change the results (worker processes, devices, batch sizes of inference, checkpoint and
monitoring intervals, time limits) are left out of the comparison (:data:`IGNORED`), so is the package version.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from .errors import ConfigError

# settings that change how fast an output is made, not what it is
IGNORED = frozenset({"workers", "device", "batch_size", "checkpoint_every", "monitor_every", "max_minutes",
                     "heldout_tiles", "version"})
_MISSING = "<not recorded>"


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def differences(recorded: dict, requested: dict, ignored=IGNORED, prefix: str = "") -> list[tuple[str, object, object]]:
    """The fields (dotted names into nested dicts) whose values differ: [(name, recorded, requested)]; a field
    absent on one side counts as different. Tuples and lists compare equal (a record read back from JSON)."""
    out = []
    for key in sorted(set(recorded) | set(requested)):
        if key in ignored:
            continue
        old, new = recorded.get(key, _MISSING), requested.get(key, _MISSING)
        if isinstance(old, dict) and isinstance(new, dict):
            out += differences(old, new, ignored, f"{prefix}{key}.")
        elif _canonical(old) != _canonical(new):
            out.append((f"{prefix}{key}", old, new))
    return out


def with_defaults(recorded: dict, defaults: dict | None) -> dict:
    """``recorded`` with the fields it lacks taken from ``defaults`` (nested dicts merged): a record written before
    a field existed was made with that field's default behaviour, so it resumes under the default and is refused
    under any other value."""
    if not defaults:
        return recorded
    out = dict(recorded)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(out[key], dict) and isinstance(value, dict):
            out[key] = with_defaults(out[key], value)
    return out


def _listing(diffs) -> str:
    shown = "; ".join(f"{name}: {old!r} there, {new!r} now" for name, old, new in diffs[:8])
    return shown + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")


def refuse_changes(what: str, where: str | os.PathLike, recorded: dict, requested: dict, ignored=IGNORED) -> None:
    """Raise ConfigError when ``requested`` differs from the ``recorded`` settings of ``what`` found at ``where``.

    The message names every differing field with both values and the ways out.
    """
    diffs = differences(recorded, requested, ignored)
    if diffs:
        raise ConfigError(
            f"{where} holds {what} made with other settings ({_listing(diffs)}). Continuing would mix the two. "
            f"Write to a new folder (--out), or delete {where} to start afresh."
        )


def refuse_mismatch(what: str, expected: dict, got: dict, fix: str) -> None:
    """Raise ConfigError when an input's record ``got`` differs from what the consumer ``expected`` (both values
    named); fields absent from ``got`` (records of older versions) are not compared."""
    diffs = [(k, expected[k], got[k]) for k in sorted(expected) if k in got and _canonical(expected[k]) !=
             _canonical(got[k])]
    if diffs:
        shown = "; ".join(f"{name}: {a!r} expected, {b!r} found" for name, a, b in diffs)
        raise ConfigError(f"{what} do not match ({shown}). {fix}")


def check_folder(out_dir: str | os.PathLike, what: str, record: dict, ignored=IGNORED) -> None:
    """Compare ``out_dir/config.json`` (the record of a previous run) with ``record``: absent, it is written;
    the same, the run resumes; different, ConfigError (see :func:`refuse_changes`)."""
    from .files import write_text_atomic

    path = Path(out_dir) / "config.json"
    if path.exists():
        try:
            previous = json.loads(path.read_text())
        except json.JSONDecodeError:
            raise ConfigError(f"{path} is not readable JSON: it is the record of what made the files of {out_dir}. "
                              f"Delete {out_dir} to start afresh.") from None
        refuse_changes(what, out_dir, previous, json.loads(_canonical(record)), ignored)
        return
    write_text_atomic(path, json.dumps(record, indent=2, default=str))


def ids_digest(ids) -> str:
    """A short digest of a set of slide ids (order-free), to record which slides an output was made from."""
    return hashlib.sha256("\n".join(sorted(map(str, ids))).encode()).hexdigest()[:16]
