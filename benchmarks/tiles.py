"""Benchmark of the tile reader: tiles per second of ``gigassl.slides.read_tiles`` on the demo cohort, against a
bare OpenSlide ``read_region`` loop over the same tiles, in the same run.

Usage: ``python benchmarks/tiles.py [--cohort /tmp/gigassl-bench/cohort] [--workers 0 2] [--dry-run]``
(``--dry-run``: the smoke cohort in a temporary folder, 2 slides, one pass each; the test suite runs it).
Prints ``reader_tiles_per_second``, ``bare_tiles_per_second`` and their ratio.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import openslide
from PIL import Image

from gigassl import io
from gigassl.manifest import read_manifest
from gigassl.slides import best_level, read_tiles

from _cohort import demo_cohort, dry_run_option, machine


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cohort", default="/tmp/gigassl-bench/cohort")
    parser.add_argument("--slides", type=int, default=40)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    dry_run_option(parser)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.cohort, args.slides = tempfile.mkdtemp(), 2
    manifest, coords_dir = demo_cohort(args.cohort, "smoke" if args.dry_run else "demo")
    passes = 1 if args.dry_run else 3
    frame = read_manifest(manifest).head(args.slides)
    jobs = []
    for row in frame.itertuples():
        coords, attrs = io.read_coords(coords_dir / f"{row.slide_id}.h5")
        jobs.append((row.path, coords, int(attrs["patch_size_level0"]), int(attrs["patch_size"])))
    n = sum(len(c) for _, c, _, _ in jobs)
    print(f"machine: {machine()}")
    print(f"slides: {len(jobs)}  tiles: {n}  tile_px: {jobs[0][3]}  level-0 size: {jobs[0][2]}")

    def bare_loop() -> int:  # open, read_region at the best level, resize: what a script would do
        count = 0
        for path, coords, size0, px in jobs:
            slide = openslide.OpenSlide(path)
            level = best_level(list(slide.level_downsamples), size0 / px)
            read = round(size0 / slide.level_downsamples[level])
            for x, y in coords:
                img = slide.read_region((int(x), int(y)), level, (read, read)).convert("RGB")
                if read != px:
                    img = img.resize((px, px), Image.Resampling.BILINEAR)
                count += len(np.asarray(img)) > 0
            slide.close()
        return count

    def rate(fn) -> float:  # median of three passes (the files are in the page cache after the first)
        rates = []
        for _ in range(passes):
            start = time.perf_counter()
            rates.append(fn() / (time.perf_counter() - start))
        return float(np.median(rates))

    bare_rate = rate(bare_loop)
    print(f"bare_tiles_per_second: {bare_rate:.0f}")
    for workers in args.workers:
        reader = rate(lambda: sum(len(read_tiles(path, coords, size0, px, workers=workers, batch_size=32))
                                  for path, coords, size0, px in jobs))
        print(f"reader_tiles_per_second (workers={workers}): {reader:.0f}  ratio to bare: {reader / bare_rate:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
