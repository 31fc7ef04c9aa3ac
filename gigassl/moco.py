"""MoCo v2 pre-training of the tile embedder (``gigassl pretrain-tiles``; Sec. 4.1, "e_theta1 pre-training").

"We choose to pre-train e_theta1 using MoCo. We trained a full ResNet18 on a subset of 6 million of these tiles
extracted from a random set of 3000 slides from the TCGA for 200 epochs."

MoCo v2 (He et al. 2020; Chen et al. 2020): a query encoder (ResNet18 whose ``fc`` is a 2-layer MLP head), a
momentum key encoder, a queue of negative keys, InfoNCE with temperature 0.2. Each tile is augmented twice
(independent draws of :mod:`gigassl.augment`). Single process (one GPU or the CPU); in place of MoCo's shuffling
BatchNorm across GPUs, the keys are computed in shuffled sub-batches (``MocoConfig.bn_splits``) with their own
BatchNorm statistics.

Checkpoints (``checkpoint.pt``, plus ``checkpoint_eNNNN.pt`` every ``checkpoint_every`` epochs; written by the epoch
loop shared with Giga-SSL, :mod:`gigassl.loop`) hold the query
encoder under ``module.encoder_q.`` with torchvision names, the layout of the authors' MoCo checkpoints, so
:func:`gigassl.encoders.build_embedder` loads them. Training resumes from ``checkpoint.pt``; randomness is keyed by
(seed, epoch, step) so a resumed run continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from . import dist, io, provenance
from .augment import TileAugmentation
from .bank import slide_key
from .config import AugmentConfig, EncoderConfig, MocoConfig
from .encoders import IMAGENET_MEAN, IMAGENET_STD, ResNet18
from .errors import GigasslError
from .loop import TrainingLoop, prepare_out_dir
from .manifest import read_manifest
from .slides import TileReader
from .devices import autocast_dtype, resolve_device
from .seeding import rng, torch_generator, torch_seeded

log = logging.getLogger(__name__)


class TileSet(torch.utils.data.Dataset):
    """Tiles drawn once (seeded) from each slide's tissue tiles; item -> uint8 (px, px, 3), read on demand.

    ``slide_ids``: only these slides of the manifest (None: all). At most ``max_open`` slides are open at once in a
    process (the least recently read is closed), so a cohort of thousands of slides does not exhaust file handles
    in every DataLoader worker.
    """

    def __init__(self, manifest: str | os.PathLike, coords_dir: str | os.PathLike, tiles_per_slide: int, seed: int,
                 slide_ids=None, max_open: int = 64):
        frame = read_manifest(manifest)
        if slide_ids is not None:
            frame = frame[frame["slide_id"].isin(set(slide_ids))]
        self.readers: list[TileReader] = []
        self.slide_ids: list[str] = []
        items = []
        tile_px = None
        for row in frame.itertuples(index=False):
            path = io.coords_file(coords_dir, row.slide_id)
            if path is None:
                continue  # slides that failed tiling are listed in the tiling's failures.csv
            coords, attrs = io.read_coords(path)
            if len(coords) == 0:
                continue
            if tile_px is not None and int(attrs["patch_size"]) != tile_px:
                raise GigasslError(f"{path} holds {attrs['patch_size']}-px tiles but the slides before it "
                                   f"{tile_px}-px ones: tile the cohort with one --tile-px into one folder.")
            tile_px = int(attrs["patch_size"])
            pick = rng(seed, slide_key(row.slide_id)).permutation(len(coords))[:tiles_per_slide]
            items += [(len(self.readers), int(x), int(y)) for x, y in coords[np.sort(pick)]]
            self.readers.append(TileReader(row.path, int(attrs["patch_size_level0"]), tile_px))
            self.slide_ids.append(str(row.slide_id))
        if not items:
            raise GigasslError(f"No tiles found in {coords_dir} for the slides of {manifest}; run `gigassl tile` first.")
        self.items = np.array(items, dtype=np.int64)
        self.tile_px = tile_px
        self.max_open = int(max_open)
        self._open: collections.OrderedDict[int, None] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> np.ndarray:
        slide, x, y = (int(v) for v in self.items[index])
        self._open.pop(slide, None)
        self._open[slide] = None
        while len(self._open) > self.max_open:  # at most max_open OpenSlide handles per process
            self.readers[self._open.popitem(last=False)[0]].close()
        return self.readers[slide].read_one(x, y)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = collections.OrderedDict()  # the readers travel closed (TileReader.__getstate__)
        return state

    def close(self) -> None:
        """Close every open slide."""
        for slide in list(self._open):
            self.readers[slide].close()
        self._open.clear()


class MoCo(nn.Module):
    """Query and momentum key encoders with MLP heads and a queue of negatives (MoCo v2).

    Shape: ``forward(x_q, x_k)`` with normalised tiles (B, 3, H, W) -> (loss, top-1 accuracy of the positive).
    """

    def __init__(self, config: MocoConfig):
        super().__init__()
        self.config = config
        with torch_seeded(config.seed):
            self.encoder_q = ResNet18()
            self.encoder_q.fc = nn.Sequential(nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, config.proj_dim))
            queue = F.normalize(torch.randn(config.proj_dim, config.queue_size), dim=0)
        self.encoder_k = copy.deepcopy(self.encoder_q)
        for p in self.encoder_k.parameters():
            p.requires_grad_(False)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def _momentum_update(self) -> None:
        m = self.config.ema
        for q, k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
            k.mul_(m).add_(q.detach(), alpha=1 - m)

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor) -> None:
        size = self.queue.shape[1]
        ptr = int(self.queue_ptr)
        idx = (ptr + torch.arange(len(keys), device=keys.device)) % size
        self.queue[:, idx] = keys.T
        self.queue_ptr.fill_((ptr + len(keys)) % size)

    def _shuffled_keys(self, x_k: torch.Tensor) -> torch.Tensor:
        """Keys computed in ``bn_splits`` shuffled sub-batches, each with its own BatchNorm statistics: the
        single-device stand-in for MoCo's shuffling BN across GPUs, so that a query and its key do not share batch
        statistics (which lets the network cheat). The shuffle is keyed by the queue pointer (deterministic)."""
        splits = self.config.bn_splits
        if splits <= 1 or len(x_k) < 2 * splits:
            return self.encoder_k(x_k)
        gen = torch.Generator().manual_seed(int(self.queue_ptr) + 7919 * self.config.seed)
        order = torch.randperm(len(x_k), generator=gen).to(x_k.device)
        keys = torch.cat([self.encoder_k(part) for part in x_k[order].chunk(splits)])
        return keys[torch.argsort(order)]

    def forward(self, x_q: torch.Tensor, x_k: torch.Tensor, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
        """``dtype``: autocast dtype of the two encoders (None: float32); the logits and the loss stay float32."""
        with torch.autocast(x_q.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            q = self.encoder_q(x_q)
            k = self.keys(x_k)
        return self.contrast(q, k)

    @torch.no_grad()
    def keys(self, x_k: torch.Tensor) -> torch.Tensor:
        """The momentum update of the key encoder, then the keys of ``x_k`` (:meth:`_shuffled_keys`)."""
        self._momentum_update()
        return self._shuffled_keys(x_k)

    def contrast(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """InfoNCE of the queries against their keys and the queue (then the keys join the queue).

        Shape: q, k (B, proj_dim) -> (loss, top-1 accuracy of the positive)."""
        q, k = F.normalize(q.float(), dim=1), F.normalize(k.float(), dim=1)
        logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.clone().detach()], 1)
        logits = logits / self.config.temperature
        labels = torch.zeros(len(q), dtype=torch.long, device=q.device)
        loss = F.cross_entropy(logits, labels)
        self._enqueue(dist.gather_with_grad(k.detach()))  # under DDP the queue gets the keys of every rank
        return loss, (logits.argmax(1) == 0).float().mean()


def _stack(items: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(items))


def _lr(config: MocoConfig, epoch: int) -> float:
    """Cosine schedule over epochs (MoCo v2) from ``lr * batch_size / 256`` (the linear scaling rule)."""
    return config.lr * config.batch_size / 256 * 0.5 * (1 + math.cos(math.pi * epoch / config.epochs))


@torch.no_grad()
def retrieval_scores(embedder, tiles: np.ndarray, augment: AugmentConfig, seed: int = 0, device: str = "cpu",
                     batch_size: int = 256, precision: str = "auto", temperature: float = 0.2) -> dict:
    """A label-free check of a tile embedder on held-out tiles: for each tile, retrieve its other augmented view
    among the second views of all the tiles (cosine similarity of the embeddings).

    Each tile gets two independent draws of ``augment`` (keyed by ``seed``); an embedder that keeps what the
    augmentations do not change scores high, one that sees mostly colour or position scores low. Returns
    ``top1`` (the fraction retrieved first; chance 1 / M), ``hits`` (bool (M,), for paired comparisons) and
    ``infonce``: MoCo's loss with fixed negatives, the cross-entropy of the true second view among all M at
    MoCo's ``temperature`` (chance log M). Unlike MoCo's training loss, whose negatives (the queue) get harder as
    the key encoder learns, both are comparable from one checkpoint to the next. ``precision``: of the embedder's
    forward (see :class:`gigassl.encoders.Embedding`). Shape: tiles uint8 (M, px, px, 3).
    """
    from .encoders import Embedding

    if len(tiles) < 2:
        raise GigasslError(f"The retrieval check needs at least 2 tiles; got {len(tiles)}.")
    augmentation = TileAugmentation(dataclasses.replace(augment, mode="independent"), tiles.shape[1])
    embedding = Embedding(embedder, device, precision)
    x = torch.from_numpy(np.ascontiguousarray(tiles)).permute(0, 3, 1, 2).float().div_(255)
    views = []
    for view in (0, 1):
        out = []
        for start in range(0, len(x), batch_size):
            part = augmentation(x[start:start + batch_size], torch_generator(seed, view, start))
            out.append(embedding(part))
        views.append(F.normalize(torch.cat(out), dim=1))
    similarity = views[0] @ views[1].T
    target = torch.arange(len(x))
    hits = (similarity.argmax(1) == target).numpy()
    infonce = float(F.cross_entropy(similarity / temperature, target))
    return {"top1": float(hits.mean()), "infonce": infonce, "hits": hits}


def retrieval_check(embedder, tiles: np.ndarray, augment: AugmentConfig, seed: int = 0, device: str = "cpu",
                    batch_size: int = 256, precision: str = "auto") -> float:
    """The top-1 of :func:`retrieval_scores`: the fraction of held-out tiles whose other augmented view is their
    nearest neighbour (chance 1 / M)."""
    return retrieval_scores(embedder, tiles, augment, seed, device, batch_size, precision)["top1"]


def retrieval_curve(moco_dir: str | os.PathLike, tiles: np.ndarray, encoder: EncoderConfig, augment: AugmentConfig,
                    seed: int = 0, n_bootstrap: int = 2000) -> pd.DataFrame:
    """:func:`retrieval_scores` of the random initialisation (epoch 0) and of every ``checkpoint_eNNNN.pt`` of a
    MoCo run: the label-free learning curve of the tile embedder (Sec. 4.1).

    One row per epoch: epoch, weights, top1, infonce, chance_top1 (1 / M), chance_infonce (log M), and the
    difference of top-1 with the random init, paired over the tiles, with its bootstrap interval (gain, ci_low,
    ci_high) and verdict.
    """
    from .evaluation.compare import paired_interval, verdict
    from .encoders import build_embedder

    paths = sorted(Path(moco_dir).glob("checkpoint_e*.pt"))
    runs = [(0, None)] + [(int(p.stem.split("_e")[1]), str(p)) for p in paths]
    rows, base = [], None
    for epoch, weights in runs:
        embedder = build_embedder(dataclasses.replace(encoder, weights=weights))
        scores = retrieval_scores(embedder, tiles, augment, seed=seed, device=encoder.device,
                                  precision=encoder.precision)
        hits = scores["hits"].astype(float)
        base = hits if base is None else base
        low, high = paired_interval(hits - base, n_bootstrap=n_bootstrap, seed=seed) if epoch else (0.0, 0.0)
        rows.append({"epoch": epoch, "weights": weights or f"random init (seed {encoder.seed})",
                     "top1": scores["top1"], "infonce": scores["infonce"], "chance_top1": 1 / len(tiles),
                     "chance_infonce": math.log(len(tiles)), "gain": float(np.mean(hits - base)), "ci_low": low,
                     "ci_high": high, "verdict": verdict(low, high, "trained", "random init") if epoch else ""})
    return pd.DataFrame(rows)


def heldout_tiles(manifest: str | os.PathLike, coords_dir: str | os.PathLike, slide_ids, n: int,
                  seed: int = 0) -> np.ndarray:
    """``n`` tiles (uint8 (n, px, px, 3)) drawn (seeded) evenly from the slides ``slide_ids``: for
    :func:`retrieval_check` on slides the tile embedder was not trained on."""
    tiles = TileSet(manifest, coords_dir, max(1, -(-n // max(1, len(slide_ids)))), seed, slide_ids)
    pick = rng(seed, 1).permutation(len(tiles))[:n]
    return np.stack([tiles[int(i)] for i in np.sort(pick)])


def pretrain_tiles(
    manifest: str | os.PathLike,
    coords_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: MocoConfig,
    augment: AugmentConfig = AugmentConfig(mode="independent"),
    device: str = "auto",
    workers: int | None = None,
    resume: bool = True,
    progress: bool = True,
    slide_ids=None,
) -> Path:
    """Train MoCo v2 on tiles of a tiled cohort; returns the path of the last checkpoint.

    Writes ``out_dir/checkpoint.pt`` (and every ``checkpoint_every`` epochs ``checkpoint_eNNNN.pt``),
    ``out_dir/log.csv`` (epoch, loss, top1, lr, seconds) and ``out_dir/steps.csv`` (the loss and top-1 of every
    step) through :class:`gigassl.loop.TrainingLoop`. ``slide_ids``: train on the tiles of these slides only (None:
    every slide of the manifest). ``workers``: DataLoader processes reading tiles (None: ``config.workers``).

    ``augment``: the tile augmentations of the two crops. They are always drawn independently for every tile
    (``mode="independent"``): MoCo contrasts the two crops of one tile against the other tiles, so a ``shared``
    draw (one draw for all the tiles of a batch, the mode of a bank's slides, Sec. 3.2) would make every query of a
    batch differ from its key in the same way. A ``shared`` ``augment`` (e.g. the profile's, made for the bank) is
    therefore used with ``mode="independent"``, and an INFO message says so; its other fields apply as given.

    Under ``torchrun`` every process takes its slice of each global batch of ``config.batch_size`` tiles (one GPU
    each), the query encoder is wrapped in DistributedDataParallel and the queue receives the keys of all ranks, so
    the run is MoCo v2 at the global batch; rank 0 writes the files.
    """
    device = dist.local_device(resolve_device(device))
    out_dir = prepare_out_dir(out_dir)
    if augment.mode != "independent":
        log.info("MoCo draws the tile augmentations of its two crops independently for every tile: using "
                 "augment.mode='independent' instead of %r (the other augmentation settings apply as given).",
                 augment.mode)
        augment = dataclasses.replace(augment, mode="independent")
    distributed = dist.setup_from_env(device)
    try:
        return _pretrain(manifest, coords_dir, out_dir, config, augment, device,
                         config.workers if workers is None else int(workers), resume, progress, slide_ids, distributed)
    finally:
        dist.cleanup()


def _pretrain(manifest, coords_dir, out_dir: Path, config: MocoConfig, augment: AugmentConfig, device: str,
              workers: int, resume: bool, progress: bool, slide_ids, distributed: bool) -> Path:
    world, rank = dist.world_size(), dist.rank()
    if config.batch_size % world:
        raise GigasslError(f"MoCo batch size {config.batch_size} must be divisible by the {world} processes.")
    local = config.batch_size // world
    tiles = TileSet(manifest, coords_dir, config.tiles_per_slide, config.seed, slide_ids)
    if len(tiles) < config.batch_size:
        raise GigasslError(f"{len(tiles)} tiles for MoCo but batch size {config.batch_size}; lower --batch-size "
                           "or raise tiles_per_slide.")
    model = MoCo(config).to(device).to(memory_format=torch.channels_last)
    dtype = autocast_dtype(device, config.precision)
    optimizer = torch.optim.SGD(model.encoder_q.parameters(), lr=_lr(config, 0), momentum=config.momentum,
                                weight_decay=config.weight_decay)
    augmentation = TileAugmentation(augment, tiles.tile_px)
    mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)
    loop = TrainingLoop(out_dir, "moco", "a MoCo run", config.epochs, config.checkpoint_every, name="moco",
                        max_minutes=config.max_minutes, progress=progress, device=device, distributed=distributed)
    inputs = {"slides": provenance.ids_digest(tiles.slide_ids), "tile_px": tiles.tile_px}
    state = loop.resume({"config": dataclasses.asdict(config), "inputs": inputs}, device) if resume else None
    if state is not None:
        model.load_state_dict({k.replace("module.", "", 1): v for k, v in state["state_dict"].items()})
        optimizer.load_state_dict(state["optimizer"])
    runner = model
    if distributed:  # the key encoder has no gradient; the queue and BN buffers stay per rank (identical queues)
        runner = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.startswith("cuda") else None, broadcast_buffers=False)
    steps = len(tiles) // config.batch_size

    def checkpoint(epoch: int) -> dict:
        return {
            "state_dict": {f"module.{k}": v.cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(), "epoch": epoch + 1, "log": loop.log, "steps": loop.steps,
            "config": dataclasses.asdict(config), "arch": "resnet18",
            "precision": "fp32" if dtype is None else "bf16", "inputs": inputs,
        }

    for epoch in loop.epochs():
        for group in optimizer.param_groups:
            group["lr"] = _lr(config, epoch)
        order = rng(config.seed, epoch).permutation(len(tiles))[: steps * config.batch_size]
        mine = order.reshape(steps, world, local)[:, rank].reshape(-1)  # this rank's slice of every global batch
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(tiles, mine.tolist()), batch_size=local, num_workers=workers,
            collate_fn=_stack, pin_memory=device.startswith("cuda"),
        )
        model.train()
        losses, accs, t0 = [], [], time.monotonic()
        for step, batch in enumerate(loop.bar(loader, epoch)):
            x = batch.to(device, non_blocking=True).permute(0, 3, 1, 2).float().div_(255)
            x_q = augmentation(x, torch_generator(config.seed, epoch, step, rank, 0) if distributed
                               else torch_generator(config.seed, epoch, step, 0))
            x_k = augmentation(x, torch_generator(config.seed, epoch, step, rank, 1) if distributed
                               else torch_generator(config.seed, epoch, step, 1))
            loss, acc = runner(((x_q - mean) / std).contiguous(memory_format=torch.channels_last),
                               ((x_k - mean) / std).contiguous(memory_format=torch.channels_last), dtype)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            accs.append(acc.detach())
        tiles.close()
        measured = torch.stack([torch.stack(losses), torch.stack(accs)])
        if distributed:  # the loss and top-1 of the global batch: the mean over ranks
            torch.distributed.all_reduce(measured)
            measured /= world
        step_loss, step_acc = measured.cpu().tolist()
        loop.steps += [{"epoch": epoch + 1, "step": epoch * steps + i + 1, "loss": a, "top1": b}
                       for i, (a, b) in enumerate(zip(step_loss, step_acc))]
        loop.log.append({"epoch": epoch + 1, "loss": float(np.mean(step_loss)), "top1": float(np.mean(step_acc)),
                         "lr": _lr(config, epoch), "seconds": time.monotonic() - t0})
        if loop.end_epoch(epoch, lambda: checkpoint(epoch)):
            break
    return loop.finish()
