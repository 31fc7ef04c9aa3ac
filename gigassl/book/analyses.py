"""What the slide-level models see, beyond one AUC: every test slide's prediction, slide retrieval, and heat maps of
the tiles (Sec. 4.3; the book's linear-probe and slide-embeddings pages)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..config import Profile
from ..manifest import labelled_ids, task_columns
from .plan import BANK_MOCO_SHARED, EMBEDDINGS, SSL_FULL
from .stages import cohort_manifest


def main_predictions(config: Profile, run_dir, tasks=None, train: str = SSL_FULL, bank: str = BANK_MOCO_SHARED,
                     protocol: str = "paper") -> pd.DataFrame:
    """Every test slide's probabilities for Giga-SSL and AverageMIL at 100% of the labels, on the splits and fits of
    the linear-probe page (:func:`gigassl.evaluation.protocol.predictions`): the input of the ROC curves and confusion
    matrices."""
    from ..evaluation.baselines import average_embeddings
    from ..evaluation.protocol import predictions

    manifest = cohort_manifest(run_dir)
    tasks = tasks or task_columns(manifest)
    average = average_embeddings(Path(run_dir) / bank, labelled_ids(manifest))
    named = {"gigassl": (Path(run_dir) / train / EMBEDDINGS, "l2"), "averagemil": (average, "standard")}
    return pd.concat([predictions(embeddings, manifest, task, preprocessing=preprocessing, method=method,
                                  config=config.probe, protocol=protocol)
                      for method, (embeddings, preprocessing) in named.items() for task in tasks], ignore_index=True)


@dataclass(frozen=True)
class Retrieval:
    """Slide retrieval: precision at k per representation and attribute, and the nearest neighbours of the query
    slides."""

    precision: pd.DataFrame
    neighbours: pd.DataFrame


def retrieval(run_dir, ks=(1, 5, 10), queries: int = 3, shown: int = 4, train: str = SSL_FULL,
              bank: str = BANK_MOCO_SHARED, seed: int = 0) -> Retrieval:
    """Slide retrieval with Giga-SSL and AverageMIL embeddings (cosine; AverageMIL standard-scaled as its probe sees
    it): for each k of ``ks``, the share of a slide's k nearest neighbours that share each label and the centre
    (:func:`gigassl.evaluation.retrieval.precision_at_k`), against chance; and the ``shown`` nearest neighbours of
    ``queries`` labelled slides (drawn with ``seed``, one per centre first)."""
    from ..evaluation.diagnostics import nearest_neighbours
    from ..evaluation.retrieval import precision_at_k
    from .stages import run_embeddings, standardized_average
    from ..seeding import rng

    embeddings = run_embeddings(run_dir, train)
    frame = embeddings.manifest
    tasks = task_columns(frame)
    keep = frame[tasks].notna().any(axis=1).to_numpy()
    frame = frame[keep].reset_index(drop=True)
    named = {"gigassl": embeddings.matrix[keep],
             "averagemil": standardized_average(Path(run_dir) / bank, list(frame["slide_id"]))}
    precision = precision_at_k(named, frame, [*tasks, "center"], ks)
    picks = frame.groupby("center").head(1).index.to_numpy()
    picks = rng(seed).permutation(picks)[:queries]
    shown_rows = []
    for representation, matrix in named.items():
        order = nearest_neighbours(matrix, shown)
        for query in picks:
            for rank, row in enumerate([query, *order[query]]):
                shown_rows.append({"query": frame.loc[query, "slide_id"], "representation": representation,
                                   "rank": rank, **frame.loc[row, ["slide_id", *tasks, "center"]].to_dict()})
    return Retrieval(precision, pd.DataFrame(shown_rows))


@dataclass(frozen=True)
class HeatMaps:
    """Per tile of a few test slides of the first split: DeepMIL's attention weight and the Giga-SSL linear probe's
    score of a view made of that tile alone, beside the slide's true label and both methods' predictions."""

    tiles: pd.DataFrame
    slides: pd.DataFrame
    positive: str


def heat_map_values(config: Profile, run_dir, task: str, train: str = SSL_FULL, bank: str = BANK_MOCO_SHARED,
              shown: int = 2) -> HeatMaps:
    """Tile-level pictures of the two slide-level models on ``task`` (binary), trained on the first split of the
    linear-probe page at 100% of the labels (same plan, seed and fits):

    - DeepMIL (gated attention, :class:`gigassl.evaluation.baselines.DeepMILClassifier`, the DeepMIL page's settings): the
      attention weight of every tile of a test slide;
    - Giga-SSL: the paper's linear probe on the slide embeddings; each tile's score is the probe's decision value
      (towards the second class, ``positive``) of the embedding of a view holding that tile alone.

    ``shown`` test slides are drawn: the first of each class. Returns the tiles (slide_id, x, y,
    patch_size_level0, attention, tile_score) and the slides (slide_id, label, deepmil, gigassl: predicted class).
    """
    import torch

    from ..aggregators import Views
    from ..evaluation.baselines import DeepMILClassifier, load_bags
    from ..bankstore import PackedBank
    from ..evaluation.labels import load_labels
    from ..evaluation.probe import LinearProbe
    from ..evaluation.splits import budget_key, plan_splits, validation_split
    from ..train import load_checkpoint
    from ..seeding import rng

    manifest = cohort_manifest(run_dir)
    frame = load_labels(manifest, task)
    classes = sorted(frame["label"].astype(str).unique())
    if len(classes) != 2:
        raise ValueError(f"heat_maps draws a binary task; {task!r} has {len(classes)} classes ({classes}).")
    probe_config = config.probe
    split = plan_splits(frame, n_splits=probe_config.n_splits, test_fraction=probe_config.test_fraction,
                        budgets=(1.0,), train_sizes=(), seed=probe_config.seed)[0]
    label_of = dict(zip(frame["slide_id"], frame["label"].astype(str)))
    test = [s for s in split.test_ids]
    picks = [next(s for s in test if label_of[s] == c) for c in classes][:shown]
    bank_dir = Path(run_dir) / bank
    deep = config.deepmil
    bags = load_bags(bank_dir, [*split.train_ids, *picks], deep.max_tiles, deep.seed)
    key = (0, budget_key(split.budget))
    fit_ids, val_ids = validation_split(frame, split.train_ids, deep.val_fraction, rng(deep.seed, *key, 1))
    mil = DeepMILClassifier(deep, key).fit([bags[i] for i in fit_ids], [label_of[i] for i in fit_ids],
                                           [bags[i] for i in val_ids], [label_of[i] for i in val_ids])
    ids, matrix, _ = io.read_embeddings(Path(run_dir) / train / EMBEDDINGS)
    row = {s: i for i, s in enumerate(ids)}
    probe = LinearProbe(C=probe_config.C, max_iter=probe_config.max_iter, preprocessing="l2").fit(
        matrix[[row[s] for s in split.train_ids]], [label_of[s] for s in split.train_ids])
    model, _ = load_checkpoint(Path(run_dir) / train / "checkpoint.pt")
    packed = PackedBank(bank_dir)
    tiles, slides = [], []
    for sid in picks:
        i = int(packed.indices([sid])[0])
        plain, coords = packed.plain(i)
        with torch.inference_mode():
            single = Views(torch.from_numpy(np.asarray(plain, np.float32))[:, None],
                           torch.zeros((len(plain), 1, 2), dtype=torch.int64))
            alone = torch.nn.functional.normalize(model.embed(single).float(), dim=1).numpy()
        full = load_bags(bank_dir, [sid])[sid]
        attention = mil.attention(full)
        tiles += [{"slide_id": sid, "x": int(x), "y": int(y), "patch_size_level0": int(packed.patch_size_level0[i]),
                   "attention": float(a), "tile_score": float(s)}
                  for (x, y), a, s in zip(coords, attention, probe.decision_function(alone))]
        slides.append({"slide_id": sid, "label": label_of[sid],
                       "deepmil": str(mil.classes_[int(np.argmax(mil.predict_proba([full])[0]))]),
                       "gigassl": str(probe.predict(matrix[[row[sid]]])[0])})
    return HeatMaps(pd.DataFrame(tiles), pd.DataFrame(slides), classes[1])
