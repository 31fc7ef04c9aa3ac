"""Profile of the bank and of a MoCo epoch: where each millisecond of a tile goes (issue #22).

The bank (``gigassl bank``, demo profile: 64-px tiles, A = 8 draws x N = 32 tiles, 128 tiles per forward) on
``--slides`` slides of the demo cohort, step by step: reading the tiles (OpenSlide's decode and the resize to 64 px),
the plain tiles' normalisation and forward, then for the draws: gathering the drawn tiles, uint8 -> float, drawing
the parameters, each augmentation step, batching the draws, the transfer to the device, the normalisation, the
forward, writing the file. The steps are those of :func:`gigassl.bank.embed_slide`, called one by one (the features
they give are checked against ``embed_slide``'s, to the bit); with ``--kornia``, the colour jitter and the blur are
also timed as kornia's functional ops (the code before #22) on the same tiles, and checked equal.

A MoCo step (demo: batch 64, two independent views, ``bn_splits`` 4) the same way: reading the batch's tiles from the
slides, stacking, uint8 -> float, the two views' augmentation steps, normalisation, the query forward, the keys
(momentum update and forward), the loss, the backward, the optimizer step.

Each row: the milliseconds of the step in all, per tile (per tile the step sees), and its share of the total.

Usage: ``python benchmarks/profile_bank.py [--cohort DIR] [--slides 4] [--moco-steps 12] [--device cpu] [--kornia]
[--clock wall|cpu] [--dry-run]`` (``--clock cpu``: one torch thread, CPU time per step, for a busy machine) (``--dry-run``: the smoke profile's cohort in a temporary folder, 2 slides, 1 MoCo step).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gigassl import io
from gigassl.augment import TileAugmentation
from gigassl.bank import embed_slide, slide_key
from gigassl.config import get_profile
from gigassl.encoders import IMAGENET_MEAN, IMAGENET_STD, Embedding, build_embedder
from gigassl.manifest import read_manifest
from gigassl.moco import MoCo, TileSet, _lr
from gigassl.slides import read_tiles
from gigassl.devices import autocast_dtype
from gigassl.seeding import rng, sample_indices, torch_generator

from _cohort import demo_cohort, dry_run_option, machine


class Stopwatch:
    """Seconds per named step (``with watch("forward"): ...``), and the tiles each step saw."""

    clock = time.perf_counter

    def __init__(self, device: str):
        self.seconds: dict[str, float] = collections.defaultdict(float)
        self.tiles: dict[str, int] = collections.defaultdict(int)
        self.sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    @contextlib.contextmanager
    def __call__(self, name: str, tiles: int):
        self.sync()
        start = self.clock()
        yield
        self.sync()
        self.seconds[name] += self.clock() - start
        self.tiles[name] += tiles

    def table(self, title: str, total: float | None = None) -> str:
        total = total or sum(self.seconds.values())
        rows = [title, "| step | ms | us per tile | share |", "|---|---:|---:|---:|"]
        for name, seconds in self.seconds.items():
            per_tile = 1e6 * seconds / max(1, self.tiles[name])
            rows.append(f"| {name} | {1e3 * seconds:.1f} | {per_tile:.1f} | {100 * seconds / total:.1f}% |")
        rows.append(f"| total | {1e3 * total:.1f} | | 100% |")
        return "\n".join(rows)


def kornia_steps(aug: TileAugmentation, draw):
    """The colour jitter and the blur as kornia's functional ops (gigassl before #22), for ``--kornia``."""
    import kornia

    from gigassl.augment import _select

    def jitter(t, idx):
        factor = lambda v: v[idx].to(t)  # noqa: E731
        t = (t * factor(draw.brightness).view(-1, 1, 1, 1)).clamp(0, 1)
        t = kornia.enhance.adjust_contrast_with_mean_subtraction(t, factor(draw.contrast)).clamp(0, 1)
        t = kornia.enhance.adjust_saturation(t, factor(draw.saturation)).clamp(0, 1)
        return kornia.enhance.adjust_hue(t, factor(draw.hue) * 2 * math.pi).clamp(0, 1)

    k = aug.config.blur_kernel
    blur = lambda t, idx: kornia.filters.gaussian_blur2d(  # noqa: E731
        t, (k, k), draw.sigma[idx].to(t).unsqueeze(1).expand(-1, 2).contiguous())
    steps = dict(aug.steps(draw))
    steps["colour jitter"] = lambda x: _select(x, draw.jitter, jitter)
    steps["blur"] = lambda x: _select(x, draw.blur, blur)
    return list(steps.items())


def augment(aug: TileAugmentation, x: torch.Tensor, generator, watch: Stopwatch, kornia: Stopwatch | None):
    """``aug(x, generator)`` step by step, each step timed (and, with ``kornia``, kornia's jitter and blur too)."""
    with watch("draw parameters", len(x)):
        draw = aug.sample(len(x), generator)
    out = x
    for name, step in aug.steps(draw):
        with watch(f"aug: {name}", len(x)):
            out = step(out)
    if kornia is not None:
        ref = x
        for name, step in kornia_steps(aug, draw):
            with kornia(f"aug: {name}", len(x)):
                ref = step(ref)
        assert torch.equal(out, ref), "the augmentation differs from kornia's"
    return out


def profile_bank(profile, manifest, coords_dir, slides: int, device: str, kornia: bool):
    encoder = dataclasses.replace(profile.encoder, device=device)
    embedding = Embedding(build_embedder(encoder), device, encoder.precision)
    config, batch = profile.bank, encoder.batch_size
    watch, ref = Stopwatch(device), Stopwatch(device) if kornia else None
    frame = read_manifest(manifest).head(slides)
    out = Path(tempfile.mkdtemp())
    px = profile.tile.tile_px
    embedding(torch.zeros(batch, px, px, 3, dtype=torch.uint8))  # warm-up
    for row in frame.itertuples(index=False):
        coords, attrs = io.read_coords(io.coords_file(coords_dir, row.slide_id))
        tile_px = int(attrs["patch_size"])
        aug = TileAugmentation(profile.augment, tile_px)
        with watch("read tiles (OpenSlide decode, resize)", len(coords)):
            tiles = read_tiles(row.path, coords, int(attrs["patch_size_level0"]), tile_px, config.workers)
        plain = []
        for i in range(0, len(tiles), batch):
            part = torch.from_numpy(tiles[i:i + batch])
            with watch("plain: uint8 -> float, normalise", len(part)):
                x = embedding.prepare(part)
            with watch("plain: forward", len(part)):
                plain.append(embedding.forward(x))
        key, n, per_batch = slide_key(row.slide_id), config.tiles, max(1, batch // config.tiles)
        features, pending, draw_coords = [], [], []
        for a in range(config.augmentations):
            with watch("draws: gather tiles", n):
                idx = sample_indices(rng(config.seed, key, a), len(tiles), n, config.replacement)
                draw_coords.append(coords[idx])
                x = torch.from_numpy(tiles[idx])
            with watch("draws: transfer", n):
                x = x.to(device, non_blocking=True)
            with watch("draws: uint8 -> float", n):
                x = x.permute(0, 3, 1, 2).float().div_(255)
            pending.append(augment(aug, x, torch_generator(config.seed, key, a), watch, ref))
            if len(pending) == per_batch or a == config.augmentations - 1:
                with watch("draws: batching", n * len(pending)):
                    x = torch.cat(pending)
                with watch("draws: normalise", len(x)):
                    x = embedding.prepare(x)
                with watch("draws: forward", len(x)):
                    features.append(embedding.forward(x).view(len(pending), n, -1))
                pending = []
        feats, plain = torch.cat(features).numpy(), torch.cat(plain).numpy()
        with watch("write the bank file", len(plain) + feats.shape[0] * n):
            io.write_bank(out / f"{row.slide_id}.h5", io.Bank(feats, np.stack(draw_coords), plain, coords,
                                                              {"slide_id": row.slide_id}))
        # the steps above are embed_slide's: the same features, to the bit
        expected, _, expected_plain = embed_slide(tiles, coords, row.slide_id, embedding, aug, config, batch)
        assert np.array_equal(expected, feats) and np.array_equal(expected_plain, plain), row.slide_id
    return watch, sum(watch.seconds.values()), ref


def profile_moco(profile, manifest, coords_dir, steps: int, device: str, kornia: bool):
    config = profile.moco
    slides = read_manifest(manifest)["slide_id"].tolist()
    needed = math.ceil((steps + 1) * config.batch_size / config.tiles_per_slide) + 1
    tiles = TileSet(manifest, coords_dir, config.tiles_per_slide, config.seed, slides[:needed])
    model = MoCo(config).to(device).to(memory_format=torch.channels_last)
    dtype = autocast_dtype(device, config.precision)
    optimizer = torch.optim.SGD(model.encoder_q.parameters(), lr=_lr(config, 0), momentum=config.momentum,
                                weight_decay=config.weight_decay)
    aug = TileAugmentation(dataclasses.replace(profile.augment, mode="independent"), tiles.tile_px)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    watch, ref = Stopwatch(device), Stopwatch(device) if kornia else None
    order = rng(config.seed, 0).permutation(len(tiles))
    b = config.batch_size
    model.train()
    steps = min(steps, len(tiles) // b - 1)
    timed = watch, ref
    for step in range(steps + 1):  # the first step warms up, untimed
        watch, ref = timed if step else (Stopwatch(device), Stopwatch(device) if kornia else None)
        with watch("read tiles (OpenSlide decode, resize)", b):
            items = [tiles[int(i)] for i in order[step * b:(step + 1) * b]]
        with watch("stack the batch", b):
            batch = torch.from_numpy(np.stack(items))
        with watch("transfer", b):
            batch = batch.to(device, non_blocking=True)
        with watch("uint8 -> float", b):
            x = batch.permute(0, 3, 1, 2).float().div_(255)
        views = [augment(aug, x, torch_generator(config.seed, 0, step, view), watch, ref) for view in (0, 1)]
        with watch("normalise (both views)", 2 * b):
            x_q, x_k = (((v - mean) / std).contiguous(memory_format=torch.channels_last) for v in views)
        with torch.autocast(x_q.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            with watch("query forward", b):
                q = model.encoder_q(x_q)
            with watch("keys: momentum update, forward", b):
                k = model.keys(x_k)
        with watch("loss", b):
            loss, _ = model.contrast(q, k)
        with watch("backward", b):
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
        with watch("optimizer step", b):
            optimizer.step()
    tiles.close()
    return watch, sum(watch.seconds.values()), ref, steps


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cohort", default="/tmp/gigassl-bench/cohort")
    parser.add_argument("--slides", type=int, default=4, help="slides of the bank's profile")
    parser.add_argument("--moco-steps", type=int, default=12)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--kornia", action="store_true", help="time kornia's jitter and blur too (the code before #22)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: one torch thread, each step's CPU time (for a machine that is not quiet)")
    dry_run_option(parser)
    args = parser.parse_args(argv)
    name = "demo"
    if args.dry_run:
        args.cohort, args.slides, args.moco_steps, name = tempfile.mkdtemp(), 2, 1, "smoke"
    profile = get_profile(name)
    manifest, coords_dir = demo_cohort(args.cohort, name)
    if args.clock == "cpu":
        torch.set_num_threads(1)
        Stopwatch.clock = time.thread_time
    print(f"machine: {machine()}")
    print(f"profile: {name}  tile_px: {profile.tile.tile_px}  bank: A={profile.bank.augmentations} x "
          f"N={profile.bank.tiles}, batch {profile.encoder.batch_size}  moco: batch {profile.moco.batch_size}, "
          f"bn_splits {profile.moco.bn_splits}  device: {args.device}  clock: {args.clock}")

    watch, total, ref = profile_bank(profile, manifest, coords_dir, args.slides, args.device, args.kornia)
    tiles = watch.tiles["draws: forward"] + watch.tiles["plain: forward"]
    forward = watch.seconds["draws: forward"] + watch.seconds["plain: forward"]
    print(watch.table(f"\nbank, {args.slides} slides, {tiles} tiles embedded ({watch.tiles['plain: forward']} plain):",
                      total))
    if ref is not None:
        print(ref.table("\nthe same draws, the jitter and the blur as kornia's ops (before #22):"))
    print(f"bank_ms_per_tile: {1e3 * total / tiles:.3f}")
    print(f"bank_forward_share: {forward / total:.3f}")

    watch, total, ref, steps = profile_moco(profile, manifest, coords_dir, args.moco_steps, args.device, args.kornia)
    print(watch.table(f"\nMoCo, {steps} steps of {profile.moco.batch_size} tiles (two views each):", total))
    if ref is not None:
        print(ref.table("\nthe same views, the jitter and the blur as kornia's ops (before #22):"))
    augmenting = sum(s for n, s in watch.seconds.items() if n.startswith("aug: ") or n == "draw parameters")
    print(f"moco_ms_per_step: {1e3 * total / steps:.1f}")
    print(f"moco_augment_share: {augmenting / total:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
