"""Shared helpers: keyed randomness, worker processes that die with their parent, precision."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from gigassl.seeding import rng

# a parent that starts a pool worker with die_with_parent, prints the worker's pid, then sleeps until killed
PARENT = textwrap.dedent("""
    import multiprocessing, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from gigassl.devices import die_with_parent

    if __name__ == "__main__":
        pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=die_with_parent)
        print(pool.submit(os.getpid).result(), flush=True)
        time.sleep(60)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (dead, not yet reaped by init) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_workers_die_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    worker = int(parent.stdout.readline())
    assert _alive(worker)
    parent.send_signal(signal.SIGKILL)  # kill -9: no clean-up code of the parent runs
    parent.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(worker)


def test_rng_is_keyed_by_integers():
    assert rng(1, 2).integers(1000) == rng(1, 2).integers(1000)
    assert not np.array_equal(rng(1, 2).random(4), rng(2, 1).random(4))


def test_clean_temporaries_removes_what_dead_processes_left_and_keeps_live_ones(tmp_path):
    from gigassl.files import _owner, atomic_path, clean_temporaries, temporary_path

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = _owner().rsplit("-", 1)[0]
    stale = tmp_path / f".checkpoint.pt.{host}-{dead.pid}.abc123.tmp"
    nested = tmp_path / f"..S1.h5.{host}-{dead.pid}.k1.tmp.{host}-{dead.pid}.k2.tmp"  # a temporary of a temporary
    packing = tmp_path / f"packed.tmp{dead.pid}"
    old = tmp_path / ".S2.h5.x7k2m9.tmp"  # the naming before the owner was in it
    for path in (stale, nested, old):
        path.write_text("half-written")
    packing.mkdir()
    live = temporary_path(tmp_path / "S3.h5")  # this (live) process's
    keep = tmp_path / "S4.h5"
    keep.write_text("a finished output")
    removed = clean_temporaries(tmp_path)
    assert set(removed) == {stale, nested, packing} and live.exists() and keep.exists() and old.exists()
    os.utime(old, (0, 0))  # untouched for long: removed
    assert clean_temporaries(tmp_path) == [old]
    with atomic_path(tmp_path / "S5.h5") as tmp:
        assert tmp.name.startswith(f".S5.h5.{_owner()}.") and tmp.name.endswith(".tmp")
        tmp.write_text("x")
    assert (tmp_path / "S5.h5").read_text() == "x"


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    import pytest

    from gigassl.errors import ConfigError
    from gigassl.files import ensure_writable

    assert ensure_writable(tmp_path / "new" / "out").is_dir()
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match=r"Cannot write in .*a_file/out .*choose another output folder"):
        ensure_writable(blocker / "out")


def test_mps_before_torch_2_5_runs_without_autocast(monkeypatch):
    import torch

    from gigassl import devices
    from gigassl.errors import ConfigError

    monkeypatch.setattr(devices, "torch_version", lambda: (2, 4))
    assert devices.autocast_dtype("mps", "auto") is None
    with pytest.raises(ConfigError, match="MPS needs torch >= 2.5"):
        devices.autocast_dtype("mps", "bf16")
    monkeypatch.setattr(devices, "torch_version", lambda: (2, 5))
    assert devices.autocast_dtype("mps", "auto") is torch.bfloat16
    assert devices.autocast_dtype("cuda", "fp32") is None


def test_resize_is_torchs_bilinear_kernel_bit_for_bit():
    """The augmentation's crops are enlarged with the antialiased kernel, as before the helper existed: a change of
    kernel changes every bank and MoCo run (it moved MoCo's held-out verdict once)."""
    import torch
    import torch.nn.functional as F

    from gigassl.devices import resize

    x = torch.rand(2, 3, 40, 40)
    for size in (32, 64):
        assert torch.equal(resize(x, size), F.interpolate(x, size=(size, size), mode="bilinear", antialias=True))
        assert torch.equal(resize(x, size, antialias=False), F.interpolate(x, size=(size, size), mode="bilinear"))


def test_format_ids_gives_the_count_the_first_ids_and_how_many_more():
    from gigassl.errors import format_ids

    assert format_ids(["a", "b"]) == "2: 'a', 'b'"
    assert format_ids([f"s{i}" for i in range(12)]) == "12: " + ", ".join(f"'s{i}'" for i in range(10)) + " and 2 more"
    assert format_ids(iter(["x", "y", "z"]), show=1) == "3: 'x' and 2 more"


def test_sample_indices_without_replacement_repeats_only_what_it_must():
    from gigassl.seeding import sample_indices

    for n, k in ((40, 8), (8, 8), (200, 32)):
        pick = sample_indices(rng(0, n), n, k, replacement=False)
        assert len(pick) == k and len(set(pick.tolist())) == k and pick.min() >= 0 and pick.max() < n
    pick = sample_indices(rng(1), 5, 12, replacement=False)  # fewer items than asked: each once, then repeats
    assert len(pick) == 12 and set(pick[:5].tolist()) == set(range(5)) and pick.max() < 5
    # with replacement: the authors' draw, the generator's integers as before (a draw of 32 of 22 tiles repeats)
    np.testing.assert_array_equal(sample_indices(rng(2), 22, 32), rng(2).integers(0, 22, 32))
    assert len(set(sample_indices(rng(2), 22, 32).tolist())) < 22
    np.testing.assert_array_equal(sample_indices(rng(3), 50, 7, False), sample_indices(rng(3), 50, 7, False))
