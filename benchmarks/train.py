"""Benchmark of Giga-SSL training and inference.

1. Median time of one training step (sparseconv aggregator, T = 5, two views per slide; forward, backward, Adam)
   at batch 32 on the CPU and, where a GPU is available, at batch 256; both sparse backends, same run.
2. Time of 50-view inference per 1000 slides, both backends.
3. The data path: on a bank of ``--slides`` slides with the paper's shapes (A = 50, N = 256, F = 256; random
   features), training steps per second with views read from the (packed, memory-mapped) bank against the same
   steps on views already in memory.

Usage: ``python benchmarks/train.py [--device cpu|cuda] [--slides 500] [--skip-data-path] [--dry-run]``
(``--dry-run``: every part on banks of a few slides and 3 steps; the test suite runs it).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gigassl import io
from gigassl.config import MapConfig, TrainConfig
from gigassl.embed import embed_bank
from gigassl.loss import NTXentLoss
from gigassl.bankstore import PackedBank
from gigassl.maps import training_views
from gigassl.train import build_model, concat_views

from _cohort import dry_run_option, machine


def write_bank(folder: Path, slides: int, draws: int, tiles: int, dim: int, plain: int, seed: int = 0) -> None:
    """Random bank files with the given shapes; tiles on a 40 x 40 grid of 448-px tiles."""
    g = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(np.arange(40), np.arange(40)), -1).reshape(-1, 2) * 448
    for s in range(slides):
        keep = grid[g.choice(len(grid), plain, replace=False)]
        pick = g.integers(0, plain, (draws, tiles))
        feats = g.standard_normal((draws, tiles, dim), dtype=np.float32)
        io.write_bank(folder / f"S{s:05d}.h5", io.Bank(feats, keep[pick], g.standard_normal((plain, dim),
                                                       dtype=np.float32), keep, {"patch_size_level0": 448}))


def one_step(model, optimizer, criterion, v1, v2, device, chunks: int = 1) -> None:
    """One SimCLR step on the two views: forward (``chunks`` passes), NT-Xent, backward, optimizer."""
    z1, z2 = model(concat_views(v1, v2).to(device), chunks=chunks).chunk(2)
    loss = criterion(z1, z2)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def step_time(model, optimizer, criterion, views, device, repeats: int = 20) -> float:
    """Median seconds of one step on ``views`` (a list of (v1, v2))."""
    times = []
    for i in range(repeats):
        v1, v2 = views[i % len(views)]
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        one_step(model, optimizer, criterion, v1, v2, device)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[3:] if len(times) > 3 else times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--slides", type=int, default=500, help="slides of the data-path bank")
    parser.add_argument("--skip-data-path", action="store_true")
    parser.add_argument("--workdir", default=None)
    dry_run_option(parser)
    args = parser.parse_args(argv)
    # (slides, draws, tiles, plain) of the step bank, slides of the inference bank, (draws, tiles) of the data path
    small_shape, infer_slides, path_shape, repeats = (((20, 2, 8, 16), 20, (2, 16), 4) if args.dry_run else
                                                      ((300, 4, 32, 200), 1000, (50, 256), 20))
    if args.dry_run:
        args.slides = 8
    device = args.device
    work = Path(args.workdir or tempfile.mkdtemp(prefix="gigassl-bench-"))
    print(f"machine: {machine()}")
    maps = MapConfig(downsample=224)

    small = work / "small"
    write_bank(small, *small_shape[:3], 256, small_shape[3])
    bank = PackedBank(small)
    batches = [32] + ([256] if device.startswith("cuda") else [])
    for batch in batches:
        views = [training_views(bank, np.random.default_rng(i).choice(len(bank), batch, replace=batch > len(bank)),
                                5, maps, 0, i) for i in range(5)]
        for backend in ("torch", "spconv"):
            try:
                model = build_model(TrainConfig(backend=backend), 256).to(device).train()
            except Exception as err:  # noqa: BLE001 - report a missing backend and go on
                print(f"step_ms (batch {batch}, {backend}): unavailable ({err})")
                continue
            optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.split(":")[0] in ("cpu", "cuda"))
            seconds = step_time(model, optimizer, NTXentLoss(0.05), views, device, repeats=repeats)
            print(f"step_ms (batch {batch}, T=5, {backend}, {device}): {1000 * seconds:.1f}")

    infer = work / "infer"
    write_bank(infer, infer_slides, 1, 1, 256, 200 if not args.dry_run else 16, seed=1)
    infer_bank = PackedBank(infer)
    for backend in ("torch", "spconv"):
        model = build_model(TrainConfig(backend=backend), 256).to(device).eval()
        start = time.perf_counter()
        embed_bank(model, infer_bank, np.arange(len(infer_bank)), 50, 5, maps, 0, batch_views=8192, device=device)
        seconds = (time.perf_counter() - start) * 1000 / infer_slides
        print(f"inference_seconds_per_1000_slides (R=50, T=5, {backend}, {device}): {seconds:.2f}")

    if not args.skip_data_path:
        big = work / "paper_shapes"
        start = time.perf_counter()
        write_bank(big, args.slides, *path_shape, 256, 400, seed=2)
        written = time.perf_counter() - start
        start = time.perf_counter()
        bank = PackedBank(big)
        packed = time.perf_counter() - start
        size = sum(p.stat().st_size for p in bank.dir.iterdir()) / 2**30
        print(f"data-path bank: {args.slides} slides x A={path_shape[0]} x N={path_shape[1]} x F=256 float16, "
              f"packed {size:.1f} GiB "
              f"(writing {written:.0f} s, packing once {packed:.0f} s)")
        batch = 256 if device.startswith("cuda") else 32
        model = build_model(TrainConfig(), 256).to(device).train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.split(":")[0] in ("cpu", "cuda"))
        criterion = NTXentLoss(0.05)
        steps = 3 if args.dry_run else 30
        order = np.random.default_rng(0).permutation(len(bank))
        picks = [np.resize(np.roll(order, i * batch), batch) for i in range(steps)]
        start = time.perf_counter()
        for i, pick in enumerate(picks):  # views read from the bank at every step
            v1, v2 = training_views(bank, pick, 5, maps, 0, i)
            step_time(model, optimizer, criterion, [(v1, v2)], device, repeats=1)
        from_bank = steps / (time.perf_counter() - start)
        in_memory = [training_views(bank, pick, 5, maps, 0, i) for i, pick in enumerate(picks)]
        start = time.perf_counter()
        for views in in_memory:
            step_time(model, optimizer, criterion, [views], device, repeats=1)
        from_memory = steps / (time.perf_counter() - start)
        print(f"steps_per_second (batch {batch}, views read from the bank): {from_bank:.2f}")
        print(f"steps_per_second (batch {batch}, views already in memory): {from_memory:.2f}")
        print(f"data_path_ratio: {from_bank / from_memory:.2f}")
    if args.workdir is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
