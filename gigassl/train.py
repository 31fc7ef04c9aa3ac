"""Giga-SSL training (``gigassl train``; Sec. 3.1 Steps 3-6, Sec. 3.2, Sec. 4.1).

"Giga-SSL is then trained, starting from step 3 by performing the following to sample a view of a WSI: (i) sample
one of the 50 tile-level augmentations, (ii) sample a subset T of the 256 embeddings obtained from this
augmentation, (iii) build the sparse map, and (iv) carry on from step 4."

Adam with learning rate ``base_lr * B / 256`` (B the global batch), a linear warm-up over ``warmup_epochs`` then a
cosine decay (per step) reaching 0 at ``schedule_epochs`` (default: the end of training). The length is ``epochs``
or, when set, ``steps`` optimizer steps. The two views of a batch go through the network in two forward passes
(``bn_views="per_view"``, BatchNorm statistics per view, as in the authors' code) or one (``"joint"``). Every random
choice is keyed by (seed, epoch, slide, view), so that a resumed run
reproduces an uninterrupted one and the batch seen by K processes is the batch seen by one.

Outputs in ``out_dir``: ``checkpoint.pt`` (the last, with the optimizer state, to resume from),
``checkpoint_eNNNN.pt`` every ``checkpoint_every`` epochs (the model only, to embed with),
``log.csv`` (epoch, step, loss, collapse = std of the L2-normalised projections, the batch diagnostics alignment,
uniformity, mean_cosine, effective_rank (:func:`batch_diagnostics`), lr, seconds), ``steps.csv`` (the loss of every
step) and, with a monitor, ``monitor.csv`` (the rows of :func:`gigassl.evaluation.monitor.training_monitor`:
per-split probe AUCs, the data of Fig. 3C, and slide-embedding diagnostics), written by the epoch loop shared with MoCo
(:class:`gigassl.loop.TrainingLoop`: resume, atomic checkpoints, logs, progress).

Distributed: under ``torchrun --nproc_per_node K gigassl train ...`` each rank takes B/K slides of every global
batch, DistributedDataParallel averages gradients, NT-Xent gathers negatives across ranks (with gradients) and
BatchNorm statistics are synchronised (:mod:`gigassl.dist`), as SimCLR does.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from . import __version__, dist, provenance
from .aggregators import GigaSSL, Projector, Views, build_aggregator
from .bankstore import PackedBank
from .batch import write_failures
from .config import MapConfig, TrainConfig
from .errors import ConfigError
from .loop import TrainingLoop, prepare_out_dir
from .loss import NTXentLoss
from .maps import training_views
from .checkpoints import load_checkpoint_file, plain_values
from .devices import resolve_device
from .seeding import rng, torch_seeded
from .files import sha256_file

log = logging.getLogger(__name__)



def build_model(config: TrainConfig, in_dim: int, layer4: dict | None = None) -> GigaSSL:
    """The aggregator named in ``config`` + projector. The sparse layer4 starts from the dense ``layer4`` weights when
    given and ``config.aggregator_init`` is ``tile_embedder``; else from a seeded random initialisation."""
    with torch_seeded(config.seed):
        aggregator = build_aggregator(config.aggregator, in_dim, config.backend)
        if layer4 is not None and config.aggregator == "sparseconv" and config.aggregator_init == "tile_embedder":
            aggregator.load_dense_layer4(layer4)
        projector = Projector(aggregator.out_dim)
    return GigaSSL(aggregator, projector)


def concat_views(first: Views, second: Views) -> Views:
    """The views of ``first`` then those of ``second`` in one batch. Shape: 2 x (B, T, F) -> (2B, T, F)."""
    return Views(torch.cat([first.features, second.features]), torch.cat([first.coords, second.coords]))


def training_epochs(config: TrainConfig, steps_per_epoch: int) -> int:
    """Epochs of a run: ``ceil(steps / steps_per_epoch)`` when ``config.steps`` is set, else ``config.epochs``."""
    if config.steps is None:
        return int(config.epochs)
    return max(1, math.ceil(int(config.steps) / max(1, steps_per_epoch)))


def learning_rate(config: TrainConfig, batch_size: int, step: int, steps_per_epoch: int,
                  epochs: int | None = None) -> float:
    """Linear warm-up over ``warmup_epochs``, then cosine decay reaching 0 at the end of ``schedule_epochs``
    (None: of the ``epochs`` trained, so at the last step)."""
    peak = config.base_lr * batch_size / 256
    horizon = config.schedule_epochs or epochs or config.epochs
    total = horizon * steps_per_epoch
    warm = config.warmup_epochs * steps_per_epoch
    if step < warm:
        return peak * (step + 1) / warm
    return peak * 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))


def collapse_indicator(z: torch.Tensor) -> float:
    """Mean over dimensions of the std across the batch of L2-normalised outputs: 0 when collapsed,
    about 1/sqrt(D) when spread uniformly."""
    return float(torch.nn.functional.normalize(z.detach().float(), dim=1).std(0).mean())


def batch_diagnostics(h: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor) -> dict:
    """Label-free diagnostics of one training batch (:mod:`gigassl.evaluation.diagnostics`): alignment of the two views'
    projections and uniformity of the projections (the space of the loss, Wang & Isola 2020), mean pairwise cosine
    and effective rank of the representations W (the space used downstream). Shapes: h (2B, D), z1, z2 (B, P)."""
    from .evaluation import diagnostics

    z1, z2 = z1.detach().float().cpu().numpy(), z2.detach().float().cpu().numpy()
    w = h.detach().float().cpu().numpy()
    return {"alignment": diagnostics.alignment(z1, z2), "uniformity": diagnostics.uniformity(np.concatenate([z1, z2])),
            "mean_cosine": diagnostics.mean_cosine(w), "effective_rank": diagnostics.effective_rank(w)}


def _layer4_from(weights: str | None) -> dict | None:
    """Dense layer4 weights of a tile-encoder checkpoint (torchvision or MoCo layout), or None."""
    if not weights:
        return None
    from .config import EncoderConfig
    from .encoders import build_embedder

    return build_embedder(EncoderConfig(name="resnet18", weights=weights)).layer4_state_dict()


class StepViews(torch.utils.data.Dataset):
    """The two views of every step of one epoch for this rank: item ``step`` -> (v1, v2), the
    :func:`gigassl.maps.training_views` of the rank's slice of the epoch's slide order. The views are keyed by (seed,
    epoch, slide, view), so a DataLoader that prepares the next steps in worker processes while the device trains
    gives exactly the views of the main-process loop."""

    def __init__(self, bank: PackedBank, order: np.ndarray, batch: int, rank: int, local: int, steps: int,
                 config: TrainConfig, epoch: int):
        self.bank, self.order, self.batch, self.rank, self.local = bank, order, batch, rank, local
        self.steps, self.config, self.epoch = steps, config, epoch

    def __len__(self) -> int:
        return self.steps

    def __getitem__(self, step: int) -> tuple[Views, Views]:
        start = step * self.batch + self.rank * self.local
        return training_views(self.bank, self.order[start:start + self.local], self.config.tiles_per_view,
                              self.config.maps, self.config.seed, self.epoch)


def step_views(steps: StepViews, workers: int, pin: bool = False):
    """Iterate over the steps' views: in this process (``workers`` 0), or prepared ahead by a DataLoader with
    ``workers`` processes (two steps each in advance; pinned memory for a fast copy to a GPU with ``pin``)."""
    if workers <= 0:
        return (steps[i] for i in range(len(steps)))
    return torch.utils.data.DataLoader(steps, batch_size=None, shuffle=False, num_workers=int(workers),
                                       prefetch_factor=2, pin_memory=pin,
                                       multiprocessing_context="spawn" if os.name != "nt" else None)


@dataclass(frozen=True)
class Monitor:
    """Runs every ``TrainConfig.monitor_every`` epochs: ``fn(model, bank, epoch) -> list of dict rows``."""

    fn: Callable


def load_checkpoint(path: str | os.PathLike, device: str = "cpu", backend: str | None = None):
    """(model in eval mode, checkpoint dict) from a ``gigassl train`` checkpoint; ``backend`` overrides the
    sparse backend (the weights do not depend on it). One of the authors' released files loads through
    :func:`gigassl.released.load_released_checkpoint` (their map origin)."""
    from .released import is_released, load_released_checkpoint

    if is_released(path):
        return load_released_checkpoint(path, device, backend)
    state = load_checkpoint_file(path, ("gigassl",))
    config = TrainConfig(**{**state["config"], "maps": MapConfig(**state["config"]["maps"])})
    if backend is not None:
        config = dataclasses.replace(config, backend=backend)
    model = build_model(config, state["in_dim"])
    model.load_state_dict(state["model"])
    return model.to(device).eval(), state


def train(
    bank_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: TrainConfig,
    encoder_weights: str | None = None,
    slide_ids: list[str] | None = None,
    resume: bool = False,
    monitor: Monitor | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Train Giga-SSL on a bank; returns the path of the last checkpoint.

    ``bank_dir``: a ``gigassl bank`` folder, or plain tile features (TRIDENT, CLAM, ``--augmentations 0``), whose
    views differ by their tiles and the slide-level augmentation only (no tile augmentation; recorded in the
    checkpoint's ``bank.augmentation_mode``). Slides whose file holds no tile are left out and listed in
    ``out_dir/failures.csv``.

    Args:
        encoder_weights: tile-encoder checkpoint whose dense layer4 initialises the sparse aggregator (Sec. 3.1);
            None: seeded random initialisation.
        slide_ids: train on these slides only (e.g. the independent-centre experiment, Table 4); None: all.
        resume: continue from ``out_dir/checkpoint.pt`` (same curve as an uninterrupted run); every setting that
            changes the result (the batch size included) must equal the checkpoint's. Without a checkpoint there,
            the run starts at epoch 0 with a warning.
        overwrite: start afresh in an ``out_dir`` that holds a run's checkpoints, removing them; without it (and
            without ``resume``) such a folder is refused (:meth:`gigassl.loop.TrainingLoop.begin`).
    """
    device = dist.local_device(resolve_device(config.device))
    out_dir = prepare_out_dir(out_dir)
    # pack before the process group exists: packing a large bank can outlast any collective's timeout, and the
    # pack's file lock makes one process pack while the others wait for it
    bank = PackedBank(bank_dir)
    distributed = dist.setup_from_env(device)
    try:
        return _train(bank, bank_dir, out_dir, config, device, distributed, encoder_weights, slide_ids, resume,
                      monitor, progress, overwrite)
    finally:
        dist.cleanup()


def _train(bank: PackedBank, bank_dir, out_dir: Path, config: TrainConfig, device: str, distributed: bool,
           encoder_weights, slide_ids, resume: bool, monitor, progress: bool, overwrite: bool = False) -> Path:
    world, rank = dist.world_size(), dist.rank()
    failed = {sid: why for sid, why in bank.skipped.items() if slide_ids is None or sid in set(slide_ids)}
    if slide_ids is not None:  # slides without any tile are left out and listed in failures.csv
        slide_ids = [sid for sid in slide_ids if sid not in bank.skipped]
    weights_id = sha256_file(encoder_weights) if encoder_weights else None
    made_by = bank.attrs.get("weights_sha256")
    if weights_id is not None and made_by is not None and made_by != weights_id:
        raise ConfigError(
            f"The bank {bank_dir} was made by tile-embedder weights {made_by} ({bank.attrs.get('encoder')}) but "
            f"the aggregator would start from the layer4 of {encoder_weights} (sha256 {weights_id}): they must be "
            "the same tile embedder. Pass --encoder-weights of the bank's encoder, or none (a random init).")
    indices = bank.indices(slide_ids)
    if not bank.augmented:
        log.info("%s holds plain tile features only: the views differ by their tiles and the slide-level "
                 "augmentation (no tile augmentation).", bank_dir)
    batch = config.batch_size
    if batch > len(indices):
        raise ConfigError(f"batch size {batch} is larger than the {len(indices)} training slides; lower --batch-size.")
    if batch % world:
        raise ConfigError(f"batch size {batch} must be divisible by the {world} processes.")
    steps_per_epoch = len(indices) // batch
    epochs = training_epochs(config, steps_per_epoch)
    chunks = 2 if config.bn_views == "per_view" else 1  # validated by TrainConfig
    model = build_model(config, bank.feature_dim, _layer4_from(encoder_weights)).to(device)
    if distributed:
        model = dist.convert_sync_batchnorm(model)
        ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.startswith("cuda") else None)
    else:
        ddp = model
    optimizer = torch.optim.Adam(model.parameters(), lr=config.base_lr * batch / 256,
                                 fused=device.split(":")[0] in ("cpu", "cuda"))
    criterion = NTXentLoss(config.temperature)
    loop = TrainingLoop(out_dir, "gigassl", "a Giga-SSL run", epochs, config.checkpoint_every, name="train",
                        snapshot_optimizer=False, progress=progress, leave=False, device=device,
                        distributed=distributed)
    inputs = {"bank": bank_identity(bank), "slides": provenance.ids_digest(np.asarray(bank.ids)[indices]),
              "encoder_weights": weights_id}
    state = loop.begin({"config": dataclasses.asdict(config), "inputs": inputs}, device, resume, overwrite,
                       defaults=dataclasses.asdict(TrainConfig()))
    if dist.is_main():  # after the folder was accepted: a refused run leaves the previous run's list
        write_failures(out_dir / "failures.csv", failed)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
    steps = loop.steps
    local = batch // world
    for epoch in loop.epochs():
        model.train()
        order = rng(config.seed, epoch).permutation(indices)
        losses, collapse, diags, t0 = [], [], [], time.monotonic()
        views = step_views(StepViews(bank, order, batch, rank, local, steps_per_epoch, config, epoch), config.workers,
                           pin=device.startswith("cuda"))
        for step, (v1, v2) in enumerate(loop.bar(views, epoch, total=steps_per_epoch)):
            lr = learning_rate(config, batch, epoch * steps_per_epoch + step, steps_per_epoch, epochs)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # per_view: each view its own forward pass (BatchNorm statistics per view); joint: one pass of 2B
            h, z = ddp(concat_views(v1, v2).to(device), chunks=chunks, return_embedding=True)
            z1, z2 = z.chunk(2)
            loss = criterion(z1, z2)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(loss.detach())
            steps.append({"epoch": epoch + 1, "step": step + 1, "loss": loss.detach(), "lr": lr})
            collapse.append(collapse_indicator(z))
            diags.append(batch_diagnostics(h, z1, z2))
        step_losses = torch.stack(losses)
        if distributed:  # the loss of the global batch is the mean of the ranks' losses
            torch.distributed.all_reduce(step_losses)
            step_losses /= world
        for row, value in zip(steps[-len(losses):], step_losses.tolist()):
            row["loss"] = value
        epoch_loss = step_losses.mean()
        loop.log.append({"epoch": epoch + 1, "step": (epoch + 1) * steps_per_epoch, "loss": float(epoch_loss),
                        "collapse": float(np.mean(collapse)),
                        **{k: float(np.mean([d[k] for d in diags])) for k in diags[0]},
                        "lr": lr, "seconds": time.monotonic() - t0})
        if monitor is not None and config.monitor_every and (epoch + 1) % config.monitor_every == 0:
            model.eval()
            loop.monitor += [{"epoch": epoch + 1, **row} for row in monitor.fn(model, bank, epoch + 1)]
        loop.end_epoch(epoch, lambda: _checkpoint(model, optimizer, config, bank, epoch + 1, loop, inputs))
    return loop.finish()


def untrained_checkpoint(bank_dir: str | os.PathLike, out_dir: str | os.PathLike, config: TrainConfig,
                         overwrite: bool = False) -> Path:
    """Write ``out_dir/checkpoint.pt``: the aggregator and projector of ``config`` at their seeded initialisation
    (``config.seed``; :func:`build_model` with no layer4), no optimizer step: the "random aggregator" control of
    issue #24 (what the architecture's nonlinearity gives without SSL), which ``gigassl embed`` then embeds with
    exactly the code of a trained model (``gigassl train --untrained``). In eval mode its BatchNorm layers hold their
    initial statistics (mean 0, variance 1). ``bank_dir`` gives the feature dimension and the bank's identity.

    Raises:
        ConfigError: ``out_dir`` already holds a run's checkpoint and ``overwrite`` is false.
    """
    from .files import atomic_path

    out_dir = prepare_out_dir(out_dir)
    last = out_dir / "checkpoint.pt"
    if last.exists() and not overwrite:
        raise ConfigError(f"{out_dir} already holds a checkpoint ({last.name}): writing the untrained aggregator "
                          "would replace it. Pass --overwrite to replace it, or choose another --out.")
    bank = PackedBank(bank_dir)
    model = build_model(config, bank.feature_dim)  # no layer4: the seeded random initialisation
    inputs = {"bank": bank_identity(bank), "slides": provenance.ids_digest(np.asarray(bank.ids)),
              "encoder_weights": None}
    state = {"model": model.state_dict(), "epoch": 0,
             **plain_values({"log": [], "steps": [], "monitor": [], "untrained": True,
                             "config": dataclasses.asdict(config), "in_dim": bank.feature_dim,
                             "bank": {"dir": str(bank.bank_dir), **bank_identity(bank)}, "inputs": inputs,
                             "version": __version__})}
    with atomic_path(last) as tmp:
        torch.save(state, tmp)
    return last


def bank_identity(bank: PackedBank) -> dict:
    """What a Giga-SSL model depends on in a bank: the tile embedder (encoder, weights), the tile size, the feature
    dimension and the augmentation mode (recorded in checkpoints; ``gigassl embed`` checks it)."""
    return {"encoder": bank.attrs.get("encoder"), "weights_sha256": bank.attrs.get("weights_sha256"),
            "tile_px": bank.attrs.get("tile_px"), "feature_dim": int(bank.feature_dim),
            "augmentation_mode": bank.attrs.get("augmentation_mode") if bank.augmented else "none (plain features)"}


def _checkpoint(model, optimizer, config: TrainConfig, bank: PackedBank, epoch: int, loop: TrainingLoop,
                inputs: dict) -> dict:
    """The checkpoint after ``epoch`` epochs: model, optimizer, epoch, logs, config, the bank's identity, inputs."""
    return {
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
        **plain_values({"log": loop.log, "steps": loop.steps, "monitor": loop.monitor,
                        "config": dataclasses.asdict(config), "in_dim": bank.feature_dim,
                        "bank": {"dir": str(bank.bank_dir), **bank_identity(bank)}, "inputs": inputs,
                        "version": __version__}),
    }
