"""The per-slide batch runner shared by ``tile`` and ``bank``.

It shows a progress bar, skips slides whose output already exists (outputs appear only complete, through a
temporary name and a rename, so existence means done: a stopped run resumes where it stopped), keeps going
past a bad slide, and lists every failure in ``<out>/failures.csv`` (slide_id, reason). It stops on a failure that
is not the slide's: the device's (:class:`~gigassl.errors.DeviceError`) or the user's encoder's
(:class:`~gigassl.errors.UserCodeError`).
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
from tqdm import tqdm  # not tqdm.auto, which warns in kernels without ipywidgets

from .errors import DeviceError, UserCodeError
from .files import atomic_path, clean_temporaries, ensure_writable, write_csv_atomic
from .devices import die_with_parent, is_device_error

log = logging.getLogger(__name__)


@dataclass
class BatchReport:
    """What a batch run did: ids processed now, ids skipped (already done), failures (slide_id -> reason)."""

    done: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        text = f"{len(self.done)} done, {len(self.skipped)} already done, {len(self.failed)} failed"
        if self.failed:
            text += ":\n" + "\n".join(f"  {sid}: {why}" for sid, why in self.failed.items())
        return text


def _run_one(work: Callable[[str, Path], None], slide_id: str, final: Path) -> str | None:
    """Run one item through a temporary file; return None on success, else the reason it failed."""
    try:
        with atomic_path(final) as tmp:
            work(slide_id, tmp)
    except UserCodeError:  # the user's encoder failed: every slide would fail the same way, so the batch stops
        raise
    except Exception as err:  # noqa: BLE001 - a bad slide must not stop the batch; it is reported
        if is_device_error(err):  # the accelerator failed, not this slide: stop, and say how to fix it
            raise DeviceError(f"The device failed while processing {slide_id} ({type(err).__name__}: {err}). This "
                              "is not a problem of the slide: lower --batch-size (or --tiles), free the GPU, or use "
                              "--device cpu; the slides done so far are kept and the run resumes.") from err
        return f"{type(err).__name__}: {err}".replace("\n", " ")
    return None


def run_batch(
    items: Iterable[tuple[str, Path]],
    work: Callable[[str, Path], None],
    out_dir: str | os.PathLike,
    desc: str = "slides",
    progress: bool = True,
    workers: int = 1,
    failures_name: str = "failures.csv",
) -> BatchReport:
    """Run ``work(slide_id, tmp_path)`` for every ``(slide_id, final_path)`` whose final path is missing.

    ``work`` writes its output to ``tmp_path``; on success it is renamed to ``final_path``. An exception in
    ``work`` is recorded as a failure of that slide (its type and message) and the batch goes on.
    With ``workers > 1`` slides are processed by that many processes (``work`` must then be picklable).
    ``out_dir/<failures_name>`` is rewritten at the end with this run's failures (empty when none).
    """
    out_dir = ensure_writable(out_dir)
    report = BatchReport()
    clean_temporaries(out_dir)  # what killed runs left (temporaries of dead processes)
    todo = []
    for slide_id, final in items:
        final = Path(final)
        if final.exists():
            report.skipped.append(slide_id)
            continue
        for stale in final.parent.glob(f".{final.name}.*.tmp"):  # left by a run that was killed
            stale.unlink(missing_ok=True)
        todo.append((slide_id, final))
    bar = tqdm(total=len(todo), desc=desc, unit="slide", disable=not progress)

    def record(slide_id: str, reason: str | None) -> None:
        if reason is None:
            report.done.append(slide_id)
        else:
            report.failed[slide_id] = reason
            log.warning("%s failed: %s", slide_id, reason)
        bar.update(1)

    if workers > 1 and len(todo) > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"),
                                 initializer=die_with_parent) as pool:
            futures = {pool.submit(_run_one, work, sid, final): sid for sid, final in todo}
            for future in as_completed(futures):
                record(futures[future], future.result())
    else:
        for slide_id, final in todo:
            bar.set_postfix_str(slide_id)
            record(slide_id, _run_one(work, slide_id, final))
    bar.close()
    write_failures(out_dir / failures_name, report.failed)
    return report


def write_failures(path: str | os.PathLike, failed: dict[str, str]) -> None:
    """Write ``failed`` ({slide_id: reason}) as the CSV every stage lists its failed slides in (slide_id, reason;
    only the header when none failed)."""
    frame = pd.DataFrame({"slide_id": list(failed), "reason": list(failed.values())}, columns=["slide_id", "reason"])
    write_csv_atomic(frame, path)
