"""The demo cohort shared by the benchmarks: synthesised and tiled once into a folder, reused afterwards."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from gigassl.config import get_profile


def demo_cohort(folder: str | os.PathLike) -> tuple[Path, Path]:
    """(manifest, coords dir) of the demo cohort in ``folder``, made if missing."""
    from gigassl.synth import synthesize
    from gigassl.tiling import tile_cohort

    folder = Path(folder)
    manifest = folder / "manifest.csv"
    if not manifest.exists():
        synthesize(folder, get_profile("demo").synth, progress=False)
    coords = folder / "coords"
    tile_cohort(manifest, coords, get_profile("demo").tile, progress=False)
    return manifest, coords


def machine() -> str:
    """One line describing this machine."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
