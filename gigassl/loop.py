"""The epoch loop shared by the two trainings (MoCo of the tile embedder, :mod:`gigassl.moco`, Sec. 4.1; Giga-SSL,
:mod:`gigassl.train`, Sec. 3.2): resume, progress bar, logs, checkpoints and a wall-time limit.

What happens in a step (the model, the views, the loss) stays in the training's module; :class:`TrainingLoop` does
the rest, identically for both:

- resume: ``out_dir/checkpoint.pt`` is loaded safely, its recorded config and inputs must equal the requested ones
  (:func:`gigassl.provenance.refuse_changes`), and the run continues at the next epoch with the logs it had
  (the rows of epochs after the checkpoint, logged by an interrupted run, are dropped);
- logs: ``log.csv`` (a row per epoch), ``steps.csv`` (a row per step) and, when rows were logged, ``monitor.csv``,
  rewritten atomically at the end of every epoch;
- checkpoints, written atomically (a temporary name, then a rename, :func:`gigassl.files.atomic_path`):
  ``checkpoint.pt`` (to resume from) every ``checkpoint_every`` epochs and at the end, and a snapshot
  ``checkpoint_eNNNN.pt`` every ``checkpoint_every`` epochs;
- a wall-time limit: the run stops, with a checkpoint, after the first epoch that ends past ``max_minutes`` (every
  rank at the same epoch under torchrun).

Only the main process (rank 0) writes files. The loop draws no random number and touches no tensor of the model, so
a resumed run continues exactly as an uninterrupted one when the step's randomness is keyed by (seed, epoch, step).

The shape of both trainings::

    loop = TrainingLoop(out_dir, "moco", "a MoCo run", epochs=10, checkpoint_every=5)
    state = loop.resume({"config": asdict(config), "inputs": inputs}) if resume else None
    for epoch in loop.epochs():
        for batch in loop.bar(loader, epoch):
            ...  # one optimizer step
        loop.log.append({"epoch": epoch + 1, "loss": loss})
        if loop.end_epoch(epoch, lambda: {"model": model.state_dict(), "epoch": epoch + 1, "log": loop.log}):
            break
    return loop.finish()
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import torch
from tqdm import tqdm  # not tqdm.auto, which warns in kernels without ipywidgets

from . import dist, provenance, validate
from .errors import ConfigError
from .files import atomic_path, clean_temporaries, ensure_writable, write_csv_atomic
from .checkpoints import load_checkpoint_file

log = logging.getLogger(__name__)
# what a run writes in its folder (removed by a run that starts afresh there with ``overwrite``)
RUN_FILES = ("checkpoint.pt", "checkpoint_e*.pt", "log.csv", "steps.csv", "monitor.csv")
# settings that change the result of a training although they change only how fast an inference is made
TRAINING_SETTINGS = frozenset({"batch_size"})


def prepare_out_dir(out_dir: str | os.PathLike) -> Path:
    """The output folder of a training, on the main process made (writable, or a clear error) and cleared of the
    temporaries of a killed run (e.g. a checkpoint being written). Call before the process group exists."""
    out_dir = Path(out_dir)
    if int(os.environ.get("RANK", 0)) == 0:
        ensure_writable(out_dir)
        clean_temporaries(out_dir)
    return out_dir


class TrainingLoop:
    """The epochs of one training run written to ``out_dir`` (see the module docstring).

    Args:
        out_dir: the run's folder (``checkpoint.pt``, ``checkpoint_eNNNN.pt``, ``log.csv``, ``steps.csv``,
            ``monitor.csv``).
        kind: the checkpoint kind (a key of :data:`gigassl.checkpoints.CHECKPOINT_KINDS`) that ``resume`` accepts.
        what: the run in messages (``"a MoCo run"``).
        epochs: the epochs of the whole run; ``checkpoint_every``: period of the checkpoints (epochs).
        name: the progress bar's label (``moco`` -> ``moco 3/10``).
        max_minutes: stop after the first epoch that ends past this wall time (None: no limit).
        snapshot_optimizer: whether the snapshots ``checkpoint_eNNNN.pt`` keep the optimizer state (they are for
            embedding with; ``checkpoint.pt`` always keeps it, to resume from).
        progress: show a progress bar per epoch (on the main process); ``leave``: keep it once the epoch is done.
        device, distributed: where the wall-time flag is reduced across ranks under torchrun.

    Attributes:
        log, steps, monitor: the rows logged so far (restored by :meth:`resume`); the training appends to them.
        start: the first epoch to run (0, or the checkpoint's epoch after :meth:`resume`).
        last: ``out_dir/checkpoint.pt``.
    """

    def __init__(self, out_dir: str | os.PathLike, kind: str, what: str, epochs: int, checkpoint_every: int, *,
                 name: str = "train", max_minutes: float | None = None, snapshot_optimizer: bool = True,
                 progress: bool = True, leave: bool = True, device: str = "cpu", distributed: bool = False):
        self.out_dir = Path(out_dir)
        self.last = self.out_dir / "checkpoint.pt"
        self.kind, self.what, self.name = kind, what, name
        self.n_epochs, self.checkpoint_every = int(epochs), int(checkpoint_every)
        self.max_minutes, self.snapshot_optimizer = max_minutes, snapshot_optimizer
        self.progress, self.leave = progress, leave
        self.device, self.distributed = device, distributed
        self.main = dist.is_main()
        self.start = 0
        self.log: list[dict] = []
        self.steps: list[dict] = []
        self.monitor: list[dict] = []
        self._started: float | None = None

    def resume(self, requested: dict, device: str = "cpu", defaults: dict | None = None) -> dict | None:
        """Load ``checkpoint.pt`` if it exists and return it (None when there is none): the training loads its
        model and optimizer from it; the loop takes its epoch and logs.

        ``requested``: ``{"config": ..., "inputs": ...}`` of this run, compared with the checkpoint's record.
        ``defaults``: the config's default values, standing for the fields a checkpoint of an older version lacks
        (:func:`gigassl.provenance.with_defaults`).

        Raises:
            ConfigError: the checkpoint was made with another config or other inputs (every differing field named).
            GigasslError: the checkpoint is unreadable or of another kind.
        """
        if not self.last.exists():
            return None
        state = load_checkpoint_file(self.last, (self.kind,), device)
        provenance.refuse_changes(self.what, self.last, {"config": provenance.with_defaults(state.get("config", {}),
                                                                                           defaults),
                                                         "inputs": state.get("inputs", {})}, requested,
                                  ignored=provenance.IGNORED - TRAINING_SETTINGS)
        self.start, self.log = state["epoch"], state["log"]
        self.steps, self.monitor = state.get("steps", []), state.get("monitor", [])
        return state

    def begin(self, requested: dict, device: str = "cpu", resume: bool = False,
              overwrite: bool = False, defaults: dict | None = None) -> dict | None:
        """Start the run in ``out_dir``: resume it (``resume``: see :meth:`resume`), or start afresh.

        A folder that holds a run's checkpoints is never overwritten silently: without ``resume`` it is refused
        unless ``overwrite``, which removes that run's files (:data:`RUN_FILES`) first. ``resume`` where there is no
        checkpoint starts at epoch 0 and says so with a warning (a script may always pass ``--resume``).

        Raises:
            ConfigError: checkpoints there and neither ``resume`` nor ``overwrite``; both asked for; or the
                checkpoint's settings differ (:meth:`resume`).
        """
        if resume and overwrite:
            raise ConfigError("--resume and --overwrite contradict each other: --resume continues the run in "
                              f"{self.out_dir}, --overwrite replaces it. Give one.")
        found = sorted(p.name for pattern in RUN_FILES[:2] for p in self.out_dir.glob(pattern))
        if resume:
            state = self.resume(requested, device, defaults)
            if state is None:
                log.warning("--resume: no checkpoint.pt in %s, so %s starts at epoch 0.", self.out_dir, self.what)
            return state
        if found and not overwrite:
            raise ConfigError(f"{self.out_dir} already holds the checkpoints of a run ({', '.join(found[:4])}"
                              f"{' ...' if len(found) > 4 else ''}): starting afresh would overwrite them. Pass "
                              "--resume to continue that run, --overwrite to replace it, or choose another --out.")
        if found and self.main:
            for pattern in RUN_FILES:
                for path in self.out_dir.glob(pattern):
                    path.unlink(missing_ok=True)
        return None

    def epochs(self) -> range:
        """The epochs left to run (0-based); starts the wall clock."""
        self._started = time.monotonic()
        return range(self.start, self.n_epochs)

    def bar(self, iterable: Iterable, epoch: int, total: int | None = None):
        """``iterable`` (the steps of ``epoch``) with a progress bar on the main process when ``progress``."""
        return tqdm(iterable, total=total, desc=f"{self.name} {epoch + 1}/{self.n_epochs}", leave=self.leave,
                    disable=not self.progress or not self.main)

    def out_of_time(self) -> bool:
        """Whether the wall time since :meth:`epochs` exceeds ``max_minutes`` (on any rank, under torchrun)."""
        if self.max_minutes is None:
            return False
        timed_out = self._started is not None and time.monotonic() - self._started > 60 * self.max_minutes
        if self.distributed:  # every rank stops at the same epoch
            flag = torch.tensor([float(timed_out)], device=self.device)
            torch.distributed.all_reduce(flag)
            timed_out = bool(flag.item())
        return timed_out

    def end_epoch(self, epoch: int, state: Callable[[], dict]) -> bool:
        """Close epoch ``epoch`` (0-based): checkpoint when due (``state()`` builds the checkpoint's dict, called
        only then), write the logs; return whether the run stops here (its last epoch, or out of time).

        Call it on every rank (the wall-time flag is reduced across them); only the main process writes.
        """
        done = epoch + 1
        loss = self.log[-1].get("loss") if self.log else None
        if loss is not None and not math.isfinite(float(loss)):  # on every rank: they all stop here
            raise validate.DataError(
                f"{self.what} diverged: the loss of epoch {done} is {loss}. Nothing of this epoch was written; the "
                f"last checkpoint in {self.out_dir} (if any) is kept. Lower the learning rate, or check the inputs "
                "(gigassl refuses non-finite features, so look at the settings first).")
        stop = done == self.n_epochs or self.out_of_time()
        if self.main:
            periodic = done % self.checkpoint_every == 0
            if stop or periodic:
                checkpoint = state()
                weights = checkpoint.get("model", checkpoint.get("state_dict", {}))  # Giga-SSL's, MoCo's
                validate.finite_state(weights, f"The checkpoint of {self.what} after epoch {done}",
                                      "Nothing was written; lower the learning rate, or check the inputs.")
                with atomic_path(self.last) as tmp:
                    torch.save(checkpoint, tmp)
                if periodic:
                    snapshot = checkpoint if self.snapshot_optimizer else {
                        k: v for k, v in checkpoint.items() if k != "optimizer"}
                    with atomic_path(self.out_dir / f"checkpoint_e{done:04d}.pt") as tmp:
                        torch.save(snapshot, tmp)
            self.write_logs()
        return stop

    def write_logs(self) -> None:
        """Write ``log.csv``, ``steps.csv`` and (when it has rows) ``monitor.csv`` atomically."""
        write_csv_atomic(pd.DataFrame(self.log), self.out_dir / "log.csv")
        write_csv_atomic(pd.DataFrame(self.steps), self.out_dir / "steps.csv")
        if self.monitor:
            write_csv_atomic(pd.DataFrame(self.monitor), self.out_dir / "monitor.csv")

    def finish(self) -> Path:
        """Wait for every rank (under torchrun) and return the path of the last checkpoint."""
        if self.distributed:
            torch.distributed.barrier()
        return self.last
