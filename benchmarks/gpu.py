"""The prepared GPU check (one run, under 8 minutes on one GPU): the paper profile end to end, torchrun on every
local GPU, and the figures of BENCHMARKS.md's GPU columns.

1. A small synthetic cohort at the paper's tile size (224 px at 1 um/px from 20x slides), then, through the CLI
   with ``--profile paper`` (shortened: fewer epochs, draws and slides): tile -> pretrain-tiles (MoCo) -> bank ->
   train -> embed -> probe, each stage timed with its peak GPU memory.
2. ``torchrun --nproc_per_node <all local GPUs>`` for pretrain-tiles, bank and train (the distributed path).
3. Figures: the bank's tiles/s against the bare tile embedder and a naive pipeline (a DataLoader whose workers
   augment on the CPU in float32, as most code does); the SSL step at batch 256 with views prepared by DataLoader
   workers against the naive loop that samples them on the main thread; 50-view inference per 1000 slides; the
   largest difference between two embeddings of the same seed (CUDA's atomic additions).

The GPU machine has no internet: ``make gpu-wheels`` (here) downloads ``benchmarks/gpu_wheels.txt`` into
``benchmarks/wheels/``; carry that folder and pass ``--wheels benchmarks/wheels``, which installs them (no index)
before anything else. ``--dry-run --device cpu`` runs every step at tiny sizes (the test suite does, on CPU).

Usage: ``python benchmarks/gpu.py [--device cuda] [--out DIR] [--wheels DIR] [--dry-run]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def install_wheels(folder: Path) -> None:
    """pip install the carried wheels (no index: the GPU machine has no internet), then the project itself."""
    wheels = sorted(str(p) for p in Path(folder).glob("*.whl"))
    if not wheels:
        raise SystemExit(f"--wheels {folder}: no .whl there; run `make gpu-wheels` where there is internet.")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps", *wheels], check=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "-e",
                    str(HERE.parent)], check=True)


class Stages:
    """Times each stage and records its peak GPU memory (CUDA), printing one line per stage."""

    def __init__(self, device: str):
        self.device = device
        self.rows: list[dict] = []

    def run(self, name: str, fn, *args, **kwargs):
        import torch

        cuda = self.device.startswith("cuda")
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan")
        self.rows.append({"stage": name, "seconds": round(seconds, 2), "peak_gpu_mb": round(peak, 1)})
        print(f"stage {name}: {seconds:.1f} s, peak GPU memory {peak:.0f} MB", flush=True)
        return result


def cli(*args: str) -> None:
    from gigassl import cli as gigassl_cli

    status = gigassl_cli.main([*args, "--no-progress"] if args[0] not in ("probe", "info") else list(args))
    if status != 0:
        raise SystemExit(f"gigassl {' '.join(args)} exited with {status}")


def torchrun(nproc: int, *args: str) -> float:
    """Run ``gigassl <args>`` under torchrun on ``nproc`` processes; returns the wall time."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "gigassl.cli", *args, "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if done.returncode != 0:
        raise SystemExit(f"torchrun {' '.join(args)} failed:\n{done.stderr[-4000:]}")
    return time.perf_counter() - start


def sizes(dry: bool) -> dict:
    """The shortened paper profile of this check (``dry``: tiny, for the CPU test)."""
    if dry:
        return dict(slides=8, width=768, height=512, tile_px=32, moco_tiles=8, moco_batch=8, workers=1, draws=2,
                    tiles=8, ssl_batch=4, bench_slides=16, bench_draws=2, bench_tiles=16, bench_batch=8, steps=3,
                    infer_slides=20, naive_tiles=64)
    return dict(slides=32, width=4096, height=3072, tile_px=224, moco_tiles=64, moco_batch=256, workers=8, draws=10,
                tiles=256, ssl_batch=16, bench_slides=300, bench_draws=8, bench_tiles=256, bench_batch=256, steps=20,
                infer_slides=1000, naive_tiles=2560)


def bank_figures(manifest: Path, coords: Path, weights: Path, device: str, size: dict, bank_seconds: float,
                 bank_dir: Path) -> dict:
    """Tiles/s of the bank (measured by its stage) against the bare embedder and a naive CPU-augmenting pipeline."""
    import numpy as np
    import torch

    from gigassl import io
    from gigassl.augment import TileAugmentation
    from gigassl.config import AugmentConfig, EncoderConfig, get_profile
    from gigassl.encoders import Embedding, build_embedder
    from gigassl.slides import TileDataset
    from gigassl.seeding import torch_generator

    tiles = 0
    for path in bank_dir.glob("*.h5"):
        bank = io.read_bank(path)
        tiles += bank.features.shape[0] * bank.features.shape[1] + len(bank.plain_features)
    embedding = Embedding(build_embedder(EncoderConfig(weights=str(weights))), device)
    batch = get_profile("paper").encoder.batch_size if not size["tile_px"] < 64 else 32
    x = torch.randint(0, 256, (batch, size["tile_px"], size["tile_px"], 3), dtype=torch.uint8)
    embedding(x)
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < (3 if size["tile_px"] < 64 else 10):
        embedding(x)
        n += batch
    bare = n / (time.perf_counter() - start)
    # the naive pipeline: a DataLoader whose workers read and augment every tile on the CPU in float32
    from gigassl.manifest import read_manifest

    row = read_manifest(manifest).iloc[1]
    c, attrs = io.read_coords(coords / f"{row.slide_id}.h5")
    augment = TileAugmentation(AugmentConfig(mode="shared"), size["tile_px"])

    class Naive(torch.utils.data.Dataset):
        def __init__(self):
            self.tiles = TileDataset(row.path, c, int(attrs["patch_size_level0"]), size["tile_px"])

        def __len__(self):
            return size["naive_tiles"]

        def __getitem__(self, i):
            tile = torch.from_numpy(self.tiles[i % len(self.tiles)]).permute(2, 0, 1).float().div(255)[None]
            return augment(tile, torch_generator(0, i))[0]

    loader = torch.utils.data.DataLoader(Naive(), batch_size=batch, num_workers=min(8, os.cpu_count() or 1))
    start, n = time.perf_counter(), 0
    fp32 = build_embedder(EncoderConfig(weights=str(weights))).to(device).eval()
    with torch.inference_mode():
        for part in loader:
            fp32(part.to(device))
            n += len(part)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    naive = n / (time.perf_counter() - start)
    bank_rate = tiles / bank_seconds
    return {"bank_tiles_per_second": round(bank_rate), "bare_embedder_tiles_per_second": round(bare),
            "naive_pipeline_tiles_per_second": round(naive), "bank_efficiency": round(bank_rate / bare, 2),
            "speedup_over_naive": round(bank_rate / max(naive, 1e-9), 2), "tiles": int(np.int64(tiles))}


def ssl_figures(out: Path, device: str, size: dict) -> dict:
    """The SSL step at the paper's batch on a random bank of paper shapes: views prepared ahead by DataLoader
    workers against the naive loop (views sampled on the main thread), and 50-view inference per 1000 slides."""
    import numpy as np
    import torch

    sys.path.insert(0, str(HERE))
    from train import one_step, write_bank  # benchmarks/train.py: the step, random banks of paper shapes

    from gigassl.config import MapConfig, TrainConfig
    from gigassl.embed import embed_bank
    from gigassl.loss import NTXentLoss
    from gigassl.bankstore import PackedBank
    from gigassl.train import StepViews, build_model, step_views

    folder = out / "random_bank"
    write_bank(folder, size["bench_slides"], size["bench_draws"], size["bench_tiles"], 256, plain=300)
    bank = PackedBank(folder)
    config = TrainConfig(batch_size=size["bench_batch"], device=device, maps=MapConfig(downsample="tile"))
    model = build_model(config, bank.feature_dim).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    criterion = NTXentLoss(0.1)
    order = np.random.default_rng(0).permutation(len(bank))
    steps = min(size["steps"], len(bank) // config.batch_size)

    def run(workers: int) -> float:
        views = step_views(StepViews(bank, order, config.batch_size, 0, config.batch_size, steps, config, 0),
                           workers, pin=device.startswith("cuda"))
        start = None
        for i, (v1, v2) in enumerate(views):
            if i == 1:  # the first step pays for compilation and worker start-up
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
            one_step(model, optimizer, criterion, v1, v2, device, chunks=2)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / max(1, steps - 1)

    naive = run(0)
    ahead = run(4 if not size["tile_px"] < 64 else 1)
    model.eval()
    start = time.perf_counter()
    index = np.arange(min(len(bank), size["infer_slides"]))
    first = embed_bank(model, bank, index, 50, 5, config.maps, 0, device=device)
    seconds = time.perf_counter() - start
    second = embed_bank(model, bank, index, 50, 5, config.maps, 0, device=device)
    return {"ssl_batch": config.batch_size, "ssl_step_seconds_workers": round(ahead, 4),
            "ssl_step_seconds_naive": round(naive, 4), "ssl_step_speedup": round(naive / ahead, 2),
            "inference_50_views_seconds_per_1000_slides": round(seconds * 1000 / len(index), 2),
            "same_seed_largest_difference": float(np.abs(first - second).max())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda (default) | mps | cpu")
    parser.add_argument("--out", default="/tmp/gigassl-gpu")
    parser.add_argument("--wheels", help="folder of carried wheels to install first (make gpu-wheels)")
    parser.add_argument("--gpus", type=int, help="processes for torchrun (default: every local GPU; 1 on CPU)")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes, every step (the CPU test)")
    args = parser.parse_args(argv)
    if args.wheels:
        install_wheels(Path(args.wheels))
    import torch

    from gigassl.config import SynthConfig
    from gigassl.cohorts.synth import synthesize

    sys.path.insert(0, str(HERE))
    from _cohort import machine

    size = sizes(args.dry_run)
    device = args.device
    gpus = args.gpus or (torch.cuda.device_count() if device.startswith("cuda") else 1)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    print(f"machine: {machine()}\ndevice: {device}  torchrun processes: {gpus}  dry run: {args.dry_run}", flush=True)
    began = time.perf_counter()
    stages = Stages(device)
    synth = SynthConfig(n_slides=size["slides"], n_centers=4, width=size["width"], height=size["height"],
                        workers=min(16, os.cpu_count() or 1), pool_slides=0)
    manifest = stages.run("synth", synthesize, out / "cohort", synth, progress=False)
    common = ["--profile", "paper"]
    coords, moco, bank, ssl = out / "coords", out / "moco", out / "bank", out / "ssl"
    stages.run("tile", cli, "tile", "--manifest", str(manifest), "--out", str(coords), "--tile-px",
               str(size["tile_px"]), "--workers", str(min(16, os.cpu_count() or 1)), *common)
    stages.run("pretrain-tiles", cli, "pretrain-tiles", "--manifest", str(manifest), "--coords", str(coords),
               "--out", str(moco), "--epochs", "1", "--tiles-per-slide", str(size["moco_tiles"]), "--batch-size",
               str(size["moco_batch"]), "--workers", str(size["workers"]), "--device", device, *common)
    weights = moco / "checkpoint.pt"
    bank_args = ["--manifest", str(manifest), "--coords", str(coords), "--weights", str(weights), "--augmentations",
                 str(size["draws"]), "--tiles", str(size["tiles"]), "--device", device, *common]
    stages.run("bank", cli, "bank", "--out", str(bank), *bank_args)
    bank_seconds = stages.rows[-1]["seconds"]
    train_args = ["--encoder-weights", str(weights), "--epochs", "2", "--batch-size", str(size["ssl_batch"]),
                  "--device", device, "--workers", "1", *common]
    stages.run("train", cli, "train", "--bank", str(bank), "--out", str(ssl), *train_args)
    stages.run("embed", cli, "embed", "--bank", str(bank), "--checkpoint", str(ssl / "checkpoint.pt"), "--out",
               str(out / "embeddings.h5"), "--device", device, *common)
    stages.run("probe", cli, "probe", "--embeddings", str(out / "embeddings.h5"), "--labels", str(manifest),
               "--task", "nsclc_like", "--n-splits", "3", "--out", str(out / "probe.csv"), *common)
    for name, args_ in (("pretrain-tiles", ["pretrain-tiles", "--manifest", str(manifest), "--coords", str(coords),
                                            "--out", str(out / "moco_ddp"), "--epochs", "1", "--tiles-per-slide",
                                            str(size["moco_tiles"]), "--batch-size", str(size["moco_batch"]),
                                            "--workers", str(size["workers"]), "--device", device, *common]),
                        ("bank", ["bank", "--out", str(out / "bank_ddp"), *bank_args]),
                        ("train", ["train", "--bank", str(bank), "--out", str(out / "ssl_ddp"), *train_args])):
        seconds = torchrun(gpus, *args_)
        stages.rows.append({"stage": f"torchrun {name} x{gpus}", "seconds": round(seconds, 2), "peak_gpu_mb": None})
        print(f"stage torchrun {name} x{gpus}: {seconds:.1f} s", flush=True)
    figures = bank_figures(manifest, coords, weights, device, size, bank_seconds, bank)
    figures.update(ssl_figures(out, device, size))
    for key, value in figures.items():
        print(f"{key}: {value}")
    total = time.perf_counter() - began
    print(f"total_seconds: {total:.0f}")
    (out / "gpu_check.json").write_text(json.dumps({"machine": machine(), "device": device, "gpus": gpus,
                                                    "dry_run": args.dry_run, "stages": stages.rows,
                                                    "figures": figures, "total_seconds": total}, indent=1))
    print(f"wrote {out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
