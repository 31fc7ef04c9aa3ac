"""Seeded randomness without global state: every random choice of gigassl goes through a generator built
from explicit integers (NumPy and torch), or runs inside :func:`torch_seeded`.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import numpy as np


def rng(*key: int) -> np.random.Generator:
    """A NumPy generator determined by ``key`` (e.g. ``rng(seed, epoch, slide_index)``).

    Every random choice in gigassl goes through a generator built from explicit integers, so that results
    do not depend on the order of work (workers, ranks, shards, resumed runs).
    """
    return np.random.default_rng([int(k) for k in key])


def sample_indices(generator: np.random.Generator, n: int, k: int, replacement: bool = True) -> np.ndarray:
    """``k`` indices into ``n`` items drawn from ``generator``: with replacement (the authors' bank draws and views,
    Sec. 3.2), or without while ``n >= k`` (every item at most once; when ``n < k``, every item once in a random
    order, then ``k - n`` more drawn with replacement). Shape: -> (k,) int64, unsorted."""
    if replacement:
        return generator.integers(0, n, k)
    if n >= k:
        return generator.choice(n, k, replace=False)
    return np.concatenate([generator.permutation(n), generator.integers(0, n, k - n)])


def nearest(points: np.ndarray, centre: int, n: int, generator: np.random.Generator) -> np.ndarray:
    """The ``n`` points nearest point ``centre`` (Euclidean; the centre first; ties in a random order drawn from
    ``generator``, one number a point). Shape: points (M, D) -> indices (min(n, M),), nearest first."""
    p = np.asarray(points, np.float64)
    distance = ((p - p[centre]) ** 2).sum(1)
    return np.lexsort((generator.random(len(p)), distance))[:n]


@contextlib.contextmanager
def torch_seeded(seed: int, device: str = "cpu") -> Iterator[None]:
    """Run the block with torch's global generator (and, for a CUDA ``device``, that GPU's) set to ``seed``, and
    restore them afterwards: the one seeding helper, around ``nn.Module`` construction (whose initialisers read the
    global generator) and around training that draws dropout masks."""
    import torch

    dev = torch.device(device)
    index = (dev.index if dev.index is not None else torch.cuda.current_device()) if dev.type == "cuda" else None
    with torch.random.fork_rng(devices=[] if index is None else [index]):
        torch.random.default_generator.manual_seed(int(seed))
        if index is not None:
            with torch.cuda.device(index):
                torch.cuda.manual_seed(int(seed))
        yield


def torch_generator(*key: int, device: str = "cpu"):
    """A ``torch.Generator`` seeded from ``key`` (see :func:`rng`)."""
    import torch

    seed = int(rng(*key).integers(0, 2**62))
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    return gen
