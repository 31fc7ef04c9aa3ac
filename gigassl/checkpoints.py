"""Checkpoint files: the kinds gigassl writes, and loading one with a message that names the file and the fix.
"""

from __future__ import annotations

import os







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
