"""Centres in the evaluation.

- The independent-centre experiment (Table 4): which centres the linear probe is evaluated on, the SSL model
  being trained on the slides of the other centres only (:func:`gigassl.manifest.ssl_slide_ids` with
  ``exclude_centres``): :func:`centre_holdout`.
- Unseen centres (issue #26 item 4, beyond the paper): the probe trained on some centres and tested on another,
  each centre in turn, beside random splits of the same sizes: :func:`unseen_centre_runs`.
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

from ..config import ProbeConfig
from ..errors import ManifestError
from ..manifest import labelled_ids
from ..seeding import rng
from .fewshot import COLUMNS, method_rows
from .labels import task_table
from .metrics import classification_scores
from .probe import LinearProbe
from .splits import budget_split, centre_splits, make_splits


def centre_holdout(manifest: pd.DataFrame, seed: int = 0) -> list[str]:
    """The probe centres of the independent-centre experiment (Table 4): about half the slides, whole centres.

    Only the labelled slides count (the unlabelled pool takes no part in the probe). Centres are taken largest first (ties in a seeded random order) and each goes to the side that has fewer
    slides so far, probe side first; the SSL model of the experiment trains on the other centres only.

    Raises:
        ManifestError: no ``center`` column, or fewer than two centres.
    """
    manifest = manifest[manifest["slide_id"].astype(str).isin(set(labelled_ids(manifest)))]  # the probe's slides
    if "center" not in manifest.columns or manifest["center"].nunique() < 2:
        raise ManifestError("The independent-centre experiment needs a `center` column with at least two centres "
                            "in the manifest.")
    sizes = manifest["center"].astype(str).value_counts()
    order = rng(seed).permutation(len(sizes))
    centres = sorted(sizes.index[order], key=lambda c: -sizes[c])
    probe, train, n_probe, n_train = [], [], 0, 0
    for centre in centres:
        if n_probe <= n_train:
            probe.append(centre)
            n_probe += sizes[centre]
        else:
            train.append(centre)
            n_train += sizes[centre]
    return sorted(probe)


def unseen_centre_runs(named: dict, labels, task: str, *, min_per_class: int = 1, n_random: int = 5,
                       preprocessing="l2", config=None, seed: int = 0) -> pd.DataFrame:
    """Site-preserved evaluation (issue #26 item 4): the linear probe trained on some centres, tested on another,
    every centre held out in turn (:func:`gigassl.evaluation.splits.centre_splits`), beside random splits of the
    same sizes: whether a representation carries the biology or the centre (a stain/scanner shortcut scores well on
    random splits, whose test centres are seen in training, and falls on unseen ones).

    Contrast, per held-out centre: ``n_random`` random splits grouped by case and stratified
    (:func:`gigassl.evaluation.splits.make_splits`) whose test part holds the same share of the labelled slides as
    the centre, seeded by (seed, centre); their training part is cut to the held-out split's training size when
    larger (:func:`gigassl.evaluation.splits.budget_split`, whole cases). All representations get the same splits.

    Args:
        named: {representation name: (slide ids, (S, D) matrix)}. labels: a label frame with ``center``
            (:func:`gigassl.evaluation.labels.task_table`). preprocessing: the probe's (``"l2"`` Giga-SSL,
            ``"standard"`` AverageMIL), or {name: preprocessing}. config: a ProbeConfig (C, max_iter; the paper's).

    Returns: the tidy table (``method, evaluation, task, setting, draw, metric, value`` + ``centre, n_train,
        n_test, note``): ``evaluation="unseen_centres"``, ``setting`` ``"held_out:<centre>"`` (draw 0) or
        ``"random:<centre>"`` (draws 0..n_random-1), metrics ``auroc`` and ``balanced_accuracy``; a skipped centre
        has one ``auroc`` row of value NaN per representation whose ``note`` says why.
    """
    config = config or ProbeConfig()
    frame = task_table(labels, task)
    held, skipped = centre_splits(frame, min_per_class)
    plan = []  # (centre, setting, draw, split)
    for split in held:
        centre = split.name.split(":", 1)[1]
        plan.append((centre, split.name, 0, split))
        fraction = len(split.test_ids) / len(frame)
        key = int(rng(seed, zlib.crc32(centre.encode())).integers(2**31))
        for draw, random_split in enumerate(make_splits(frame, int(n_random), fraction, seed=key)):
            if len(random_split.train_ids) > len(split.train_ids):
                random_split = budget_split(random_split, frame, size=len(split.train_ids), seed=key, index=draw)
            plan.append((centre, f"random:{centre}", draw, random_split))
    label_of = dict(zip(frame["slide_id"], frame["label"].astype(str)))
    rows = []
    index = {s: i for i, s in enumerate(frame["slide_id"])}
    for method, prep, x in method_rows(named, frame, preprocessing):
        for centre, setting, draw, split in plan:
            train, test = [index[s] for s in split.train_ids], [index[s] for s in split.test_ids]
            probe = LinearProbe(C=config.C, max_iter=config.max_iter, preprocessing=prep)
            probe.fit(x[train], [label_of[s] for s in split.train_ids])
            scores = classification_scores(np.array([label_of[s] for s in split.test_ids]),
                                           probe.predict_proba(x[test]), probe.classes_,
                                           f"{method}/{task}/unseen_centres/{setting}/{draw}")
            for metric, value in scores.items():
                rows.append({"method": method, "evaluation": "unseen_centres", "task": task, "setting": setting,
                             "draw": draw, "metric": metric, "value": value, "centre": centre,
                             "n_train": len(train), "n_test": len(test), "note": ""})
        for centre, reason in skipped.items():
            rows.append({"method": method, "evaluation": "unseen_centres", "task": task,
                         "setting": f"held_out:{centre}", "draw": 0, "metric": "auroc", "value": float("nan"),
                         "centre": centre, "n_train": 0, "n_test": 0, "note": f"skipped: {reason}"})
    return pd.DataFrame(rows, columns=[*COLUMNS, "centre", "n_train", "n_test", "note"])
