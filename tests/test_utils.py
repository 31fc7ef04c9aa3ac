"""Shared helpers: keyed randomness, worker processes that die with their parent, precision."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from gigassl.utils import rng

# a parent that starts a pool worker with die_with_parent, prints the worker's pid, then sleeps until killed
PARENT = textwrap.dedent("""
    import multiprocessing, os, sys, time
    from concurrent.futures import ProcessPoolExecutor
    from gigassl.utils import die_with_parent

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
