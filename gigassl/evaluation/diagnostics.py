"""Label-free diagnostics of a representation: what an SSL run learnt, without looking at a task label.

For any set of embeddings (slide embeddings of Giga-SSL, of AverageMIL, of an ablation; or the projections of a
training batch), on L2-normalised rows:

- :func:`alignment` (Wang & Isola, ICML 2020, Eq. 4): mean squared distance between two embeddings of the same
  slide (two views, two sets of views, two halves of its tiles). 0: the two always coincide; 4: opposite.
- :func:`uniformity` (Wang & Isola, Eq. 5): ``log E exp(-t ||x - y||^2)`` over pairs of different slides, t = 2.
  0 when collapsed (all rows equal); about -4 (= -2t) for rows spread uniformly on a high-dimensional sphere.
- :func:`mean_cosine`: mean cosine between different rows. 1 when collapsed; about 0 when spread (a highly
  anisotropic embedding, every row near one direction, has a mean cosine near 1 although it is not collapsed).
- :func:`effective_rank` (Roy & Vetterli 2007; RankMe, Garrido et al. 2023): exp of the entropy of the normalised
  singular values of the (uncentred) matrix: 1 when collapsed, up to min(S, D) when every direction is used.
- :func:`linear_cka` (Kornblith et al., ICML 2019): linear centred kernel alignment of two representations of the
  same slides (e.g. Giga-SSL's against the mean of the tile embeddings): 1 when one is a rotation and scaling of the
  other, near 0 when they share no linear structure.
- :func:`centre_predictability`: cross-validated balanced accuracy of a logistic regression predicting each slide's
  centre from its embedding, against chance 1 / n_centres. High means the embedding encodes the stain and scanner
  signature that every tile of a slide shares: the shortcut of Sec. 5 ("key features linked to the slide
  preparation [...] are still available for shortcut learning").

:func:`diagnose` returns all of them as one dict (a row of the book's diagnostics tables).
"""

from __future__ import annotations

import logging
import warnings

import numpy as np

from ..errors import ConfigError
from ..devices import limit_threads

log = logging.getLogger(__name__)


def _unit(x) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ConfigError(f"embeddings must be a 2-d array (slides, dimensions); got shape {x.shape}.")
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def alignment(a, b, alpha: float = 2.0) -> float:
    """Mean ``||a_i - b_i||^alpha`` of L2-normalised paired rows (Wang & Isola 2020). Shape: a, b (S, D)."""
    a, b = _unit(a), _unit(b)
    if a.shape != b.shape:
        raise ConfigError(f"alignment pairs rows of two arrays of one shape; got {a.shape} and {b.shape}.")
    return float(np.mean(np.linalg.norm(a - b, axis=1) ** alpha))


def _pair_distances(x: np.ndarray) -> np.ndarray:
    """Squared distances of the unit rows of ``x`` over pairs i < j. Shape: (S, D) -> (S (S - 1) / 2,)."""
    gram = x @ x.T
    i, j = np.triu_indices(len(x), k=1)
    return np.clip(2.0 - 2.0 * gram[i, j], 0.0, 4.0)


def uniformity(x, t: float = 2.0) -> float:
    """``log mean exp(-t ||x_i - x_j||^2)`` over pairs i < j of L2-normalised rows (Wang & Isola 2020).

    Shape: x (S, D), S >= 2.
    """
    x = _unit(x)
    if len(x) < 2:
        raise ConfigError(f"uniformity needs at least 2 rows; got {len(x)}.")
    d = _pair_distances(x)
    m = -t * d
    top = m.max()
    return float(top + np.log(np.mean(np.exp(m - top))))


def mean_cosine(x) -> float:
    """Mean cosine similarity over pairs of different rows. Shape: x (S, D), S >= 2."""
    x = _unit(x)
    if len(x) < 2:
        raise ConfigError(f"mean_cosine needs at least 2 rows; got {len(x)}.")
    return float(1.0 - _pair_distances(x).mean() / 2.0)


def effective_rank(x, eps: float = 1e-12) -> float:
    """exp(entropy of p), p the singular values of the L2-normalised rows divided by their sum (RankMe).

    Shape: x (S, D) -> float in [1, min(S, D)].
    """
    s = np.linalg.svd(_unit(x), compute_uv=False)
    p = s / max(s.sum(), eps) + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def linear_cka(x, y) -> float:
    """Linear CKA between two representations of the same items: ``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F
    ||Yc^T Yc||_F)``, the columns centred (Kornblith et al., ICML 2019, Eq. 2 with linear kernels). Invariant to
    rotations and isotropic scaling of either; 1 for ``y = c x R``.

    Shape: x (S, D1), y (S, D2) -> float in [0, 1] (NaN when either has no variance).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ConfigError(f"linear_cka needs two (S, D) matrices of the same S; got shapes {x.shape} and {y.shape}.")
    x, y = x - x.mean(0), y - y.mean(0)
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(np.linalg.norm(y.T @ x) ** 2 / denominator) if denominator > 0 else float("nan")


def centre_predictability(x, centres, groups=None, n_splits: int = 5, seed: int = 0) -> float:
    """Balanced accuracy of predicting ``centres`` from ``x``, cross-validated over folds grouped by ``groups``
    (cases: the slides of a patient stay on one side), with standard scaling and a logistic regression (C = 1).

    Centres with fewer slides than folds take part in training only as far as the folds allow; when even the largest
    centre has fewer slides (or there are fewer cases) than ``n_splits``, that many folds are used and a warning
    is logged (NaN when every centre has one slide). The chance level is 1 / (number of centres).
    Shape: x (S, D), centres (S,), groups (S,) or None (each slide its own group).
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = _unit(x)
    centres = np.asarray(centres).astype(str)
    groups = np.arange(len(x)) if groups is None else np.asarray(groups).astype(str)
    if len(centres) != len(x) or len(groups) != len(x):
        raise ConfigError(f"centres ({len(centres)}) and groups ({len(groups)}) must have one value per row "
                          f"({len(x)}).")
    if len(set(centres)) < 2:
        raise ConfigError("centre_predictability needs slides of at least 2 centres.")
    largest = int(np.unique(centres, return_counts=True)[1].max())
    folds = min(int(n_splits), len(set(groups.tolist())), largest)
    if folds < 2:
        log.warning("centre predictability is undefined (NaN): every centre has a single slide, so no fold can "
                    "train on a centre and test on it.")
        return float("nan")
    if folds < int(n_splits):  # StratifiedGroupKFold refuses more folds than the largest centre has slides
        log.warning("centre predictability: %d folds instead of %d (the largest centre has %d slides, in %d "
                    "cases); give more slides per centre for the full number.", folds, int(n_splits), largest,
                    len(set(groups.tolist())))
    predicted = np.empty(len(x), dtype=object)
    cv = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=int(seed))
    with limit_threads(1, "blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # folds lacking a small centre warn; the score accounts for it
        for train, test in cv.split(x, centres, groups):
            if len(set(centres[train])) < 2:
                predicted[test] = centres[train][0]
                continue
            model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000))
            predicted[test] = model.fit(x[train], centres[train]).predict(x[test])
    return float(balanced_accuracy_score(centres, predicted.astype(str)))


def diagnose(x, second=None, centres=None, groups=None, seed: int = 0) -> dict:
    """Every diagnostic of one representation, as a dict (a table row).

    Args:
        x: (S, D) embeddings. second: (S, D) a second, independent embedding of the same slides (alignment; NaN
            when None). centres, groups: per-slide centre and case (centre predictability; NaN when None).
    """
    row = {"slides": len(np.asarray(x)), "dimension": int(np.asarray(x).shape[1]),
           "alignment": alignment(x, second) if second is not None else float("nan"),
           "uniformity": uniformity(x), "mean_cosine": mean_cosine(x), "effective_rank": effective_rank(x)}
    if centres is not None:
        row["centre_accuracy"] = centre_predictability(x, centres, groups, seed=seed)
        row["centre_chance"] = 1.0 / len(set(np.asarray(centres).astype(str).tolist()))
    else:
        row["centre_accuracy"] = row["centre_chance"] = float("nan")
    return row


def nearest_neighbours(matrix: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` nearest other rows of each row (cosine), nearest first: (S, k) row indices."""
    x = np.asarray(matrix, np.float64)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    return np.argsort(-sim, axis=1)[:, :min(k, len(x) - 1)]


def neighbour_agreement(matrix: np.ndarray, labels, k: int = 5) -> float:
    """Mean fraction of each row's ``k`` nearest neighbours (cosine) that share its label, e.g. its centre: the
    precision at k of slide retrieval by that label.

    A measure of how much an embedding is organised by a slide-level attribute (Sec. 5: shortcut features shared by
    all the tiles of a slide); its chance level is :func:`label_agreement_chance`.
    Shape: matrix (S, D), labels (S,) -> float in [0, 1].
    """
    neighbours = nearest_neighbours(matrix, k)
    labels = np.asarray(labels)
    return float((labels[neighbours] == labels[:, None]).mean())


def label_agreement_chance(labels, k: int = 5) -> float:
    """The expected :func:`neighbour_agreement` of an embedding that ignores ``labels`` (neighbours drawn at random
    among the other rows)."""
    labels = np.asarray(labels)
    n = len(labels)
    _, counts = np.unique(labels, return_counts=True)
    return float((counts * (counts - 1)).sum() / (n * (n - 1)))


# How to read each column, for the book's captions.
READING = {
    "alignment": "two independent embeddings of one slide: 0 = identical, larger = less stable (Wang & Isola)",
    "uniformity": "spread over the sphere: 0 = collapsed, more negative = more uniform (about -4 at best)",
    "mean_cosine": "1 = every slide points the same way (collapse or strong anisotropy), 0 = spread",
    "effective_rank": "how many directions carry the slides: 1 = collapsed",
    "centre_accuracy": "how well the centre is predicted (balanced accuracy; chance = 1 / centres): the stain "
                       "shortcut",
}


def reading() -> "pd.DataFrame":
    """:data:`READING` as a table: diagnostic, how to read it."""
    import pandas as pd

    return pd.DataFrame({"diagnostic": list(READING), "how to read it": list(READING.values())})
