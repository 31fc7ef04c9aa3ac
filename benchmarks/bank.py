"""Benchmark of the bank: tiles per second of ``gigassl bank`` end to end (read, augment, embed, write) on the demo
cohort, against the tile embedder's forward pass alone on random tensors of the same batch size, in the same run.
The ratio is the pipeline efficiency (the goal of #22: at least 0.85); ``outside_forward_ms_per_tile`` is what a bank
tile costs beyond the forward. ``benchmarks/profile_bank.py`` says where that time goes.

Usage: ``python benchmarks/bank.py [--cohort DIR] [--slides 30] [--device cpu|cuda] [--dry-run]``
(``--dry-run``: the smoke profile's cohort in a temporary folder, 2 slides, a 1-second forward; the test suite runs it).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import torch

from gigassl import io
from gigassl.bank import build_bank
from gigassl.config import get_profile
from gigassl.encoders import Embedding, build_embedder
from gigassl.manifest import read_manifest

from _cohort import demo_cohort, dry_run_option, machine


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cohort", default="/tmp/gigassl-bench/cohort")
    parser.add_argument("--slides", type=int, default=30)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", default="demo")
    parser.add_argument("--forward-seconds", type=float, default=10.0, help="how long the bare forward is timed")
    dry_run_option(parser)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.cohort, args.slides, args.profile, args.forward_seconds = tempfile.mkdtemp(), 2, "smoke", 1.0
    profile = get_profile(args.profile)
    manifest, coords_dir = demo_cohort(args.cohort, "smoke" if args.dry_run else "demo")
    subset = tempfile.mkdtemp() + "/manifest.csv"
    read_manifest(manifest).head(args.slides).to_csv(subset, index=False)
    encoder = dataclasses.replace(profile.encoder, device=args.device)
    batch = encoder.batch_size
    tile_px = get_profile("smoke" if args.dry_run else "demo").tile.tile_px
    print(f"machine: {machine()}")

    out = tempfile.mkdtemp()
    start = time.perf_counter()
    report = build_bank(subset, coords_dir, out, profile.bank, encoder, profile.augment, progress=False)
    seconds = time.perf_counter() - start
    tiles = 0
    for path in sorted(Path(out).glob("*.h5")):
        bank = io.read_bank(path)
        tiles += bank.features.shape[0] * bank.features.shape[1] + len(bank.plain_features)
    pipeline = tiles / seconds
    shutil.rmtree(out)

    embedding = Embedding(build_embedder(encoder), args.device)
    x = torch.randint(0, 256, (batch, tile_px, tile_px, 3), dtype=torch.uint8)
    embedding(x)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < args.forward_seconds:
        embedding(x)
        n += batch
    forward = n / (time.perf_counter() - start)
    print(f"slides: {len(report.done)}  tiles embedded: {tiles} (A={profile.bank.augmentations} x "
          f"N={profile.bank.tiles} + plain)  tile_px: {tile_px}  batch: {batch}  device: {embedding.device}")
    print(f"bank_tiles_per_second: {pipeline:.0f}")
    print(f"forward_tiles_per_second: {forward:.0f}")
    print(f"pipeline_efficiency: {pipeline / forward:.2f}")
    print(f"outside_forward_ms_per_tile: {1e3 * (1 / pipeline - 1 / forward):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
