"""The demo cohort shared by the benchmarks: synthesised and tiled once into a folder, reused afterwards."""

from __future__ import annotations

import os
import platform
from pathlib import Path

from gigassl.config import get_profile


def demo_cohort(folder: str | os.PathLike, profile: str = "demo") -> tuple[Path, Path]:
    """(manifest, coords dir) of the ``profile``'s cohort in ``folder`` (the demo's; ``smoke`` for dry runs), made
    if missing."""
    from gigassl.cohorts.synth import synthesize
    from gigassl.tiling import tile_cohort

    folder = Path(folder)
    manifest = folder / "manifest.csv"
    if not manifest.exists():
        synthesize(folder, get_profile(profile).synth, progress=False)
    coords = folder / "coords"
    tile_cohort(manifest, coords, get_profile(profile).tile, progress=False)
    return manifest, coords


def dry_run_option(parser) -> None:
    """The ``--dry-run`` flag every benchmark has: every step at tiny sizes, so the test suite runs it."""
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, every step (run by the test suite)")


def machine() -> str:
    """One line describing this machine."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU cores, {gpu}, torch {torch.__version__} ({torch.get_num_threads()} threads)"
