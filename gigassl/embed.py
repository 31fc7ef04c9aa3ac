"""R-view inference of one embedding per slide (``gigassl embed``; Sec. 4.2 "Default settings", Sec. 5).

"For a slide X, we bootstrap R = 50 views without tile augmentation (i.e. differing only in the sampled tiles),
compute their embedding {W_r} and consider the WSI representation as the elementwise average of the {W_r}.
[...] the Giga-SSL embeddings are normalized using the L2 unit."

Views of T tiles are sampled with replacement from a slide's plain (non-augmented) tile embeddings, mapped without
slide augmentation, embedded by the aggregator in eval mode (the representation W, before the projector),
averaged over the R views and L2-normalised. The same seed gives the same embeddings. Works on banks made by
``gigassl bank`` and on TRIDENT/CLAM tile features (plain features only).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import __version__, io
from .aggregators import Views
from .config import EmbedConfig, MapConfig
from .errors import ConfigError
from .maps import PackedBank
from .train import load_checkpoint
from .utils import resolve_device, sha256_file


@torch.inference_mode()
def embed_bank(model, bank: PackedBank, indices: np.ndarray, views: int, tiles: int, maps: MapConfig, seed: int,
               batch_views: int = 4096, device: str = "cpu", progress: bool = False) -> np.ndarray:
    """Slide embeddings of ``bank`` slides ``indices``: the L2-normalised mean of R view embeddings.

    Shape: -> (len(indices), D) float32 (D = the aggregator's out_dim, 512 for the sparse CNN).
    """
    if views < 1 or tiles < 1:
        raise ConfigError(f"views ({views}) and tiles per view ({tiles}) must both be >= 1.")
    model.eval()
    out, pending, owners = [], [], []
    per_batch = max(1, batch_views // views)

    def flush() -> None:
        feats = torch.cat([v.features for v in pending]).to(device)
        coords = torch.cat([v.coords for v in pending]).to(device)
        w = model.embed(Views(feats, coords)).float().view(len(pending), views, -1).mean(1)
        out.append(torch.nn.functional.normalize(w, dim=1).cpu())
        pending.clear()

    for i in tqdm(indices, desc="embed", unit="slide", disable=not progress):
        pending.append(bank.inference_views(int(i), views, tiles, maps, seed))
        if len(pending) == per_batch:
            flush()
    if pending:
        flush()
    return torch.cat(out).numpy() if out else np.empty((0, 0), np.float32)


def embed_slides(bank_dir: str | os.PathLike, checkpoint: str | os.PathLike, out: str | os.PathLike,
                 config: EmbedConfig, backend: str | None = None, progress: bool = True) -> Path:
    """Embed every slide of a bank with a trained checkpoint; write ``out`` (ids + (S, D) float32, see io)."""
    device = resolve_device(config.device)
    model, state = load_checkpoint(checkpoint, device, backend)
    maps = MapConfig(**state["config"]["maps"])
    bank = PackedBank(bank_dir)
    if bank.feature_dim != state["in_dim"]:
        raise ConfigError(f"The bank {bank_dir} has {bank.feature_dim}-d tile features but the checkpoint "
                          f"{checkpoint} was trained on {state['in_dim']}-d ones; use the bank of its encoder.")
    embeddings = embed_bank(model, bank, np.arange(len(bank)), config.views, config.tiles_per_view, maps,
                            config.seed, config.batch_views, device, progress)
    io.write_embeddings(out, bank.ids, embeddings, checkpoint_sha256=sha256_file(checkpoint), views=config.views,
                        tiles_per_view=config.tiles_per_view, seed=config.seed, epoch=int(state["epoch"]),
                        aggregator=state["config"]["aggregator"], version=__version__)
    return Path(out)


def probe_monitor(labels, tasks: list[str], maps: MapConfig, views: int, tiles: int, probe=None, seed: int = 0,
                  device: str = "cpu"):
    """A training monitor (Fig. 3C): every k epochs, embed the labelled slides of the bank with R views and run the
    linear probe (generated, case-grouped splits, 100% budget) on each task; rows: task, auc_mean, auc_std."""
    from .config import ProbeConfig
    from .probe import run_probe, summarize
    from .splits import load_labels
    from .train import Monitor

    probe = probe or ProbeConfig()
    labelled = {task: set(load_labels(labels, task)["slide_id"]) for task in tasks}

    def fn(model, bank: PackedBank, epoch: int) -> list[dict]:
        rows = []
        for task in tasks:
            ids = [sid for sid in bank.ids if sid in labelled[task]]
            emb = embed_bank(model, bank, bank.indices(ids), views, tiles, maps, seed, device=device)
            result = summarize(run_probe((ids, emb), labels, task, n_splits=probe.n_splits, budgets=(1.0,),
                                         train_sizes=(), config=probe), n_bootstrap=0)
            rows.append({"task": task, "auc_mean": float(result["auc_mean"].iloc[0]),
                         "auc_std": float(result["auc_std"].iloc[0])})
        return rows

    return Monitor(fn)
