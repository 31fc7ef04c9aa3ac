"""Train/test splits of the evaluation protocol (Sec. 4.2, 4.3): predefined, generated, label budgets, checks.

- Predefined splits in the authors' format: a folder of ``split_0.csv`` ... ``split_9.csv`` with columns
  ``train`` and ``test`` (slide ids; the shorter column padded with blanks): :func:`read_splits`,
  :func:`write_splits`.
- Generated splits: K repeated stratified train/test splits grouped by ``case_id`` (no patient on both
  sides), seeded: :func:`make_splits`.
- Label budgets: a fraction of each training split (the 25% regime of Table 2) or a tiny training set of
  exactly N slides (N = 250, 100, 50 in Fig. 2), stratified, grouped by case, seeded; the test set is
  untouched: :func:`budget_split`, :func:`plan_splits`.
- Leakage and consistency checks: a case on both sides (:func:`case_overlap`, :func:`check_splits`),
  ids absent from the embeddings or the labels (:func:`check_ids`).

The label tables themselves are read by :mod:`gigassl.evaluation.labels`. Randomness: every draw comes from
:func:`gigassl.seeding.rng` keyed by ``(seed, split index[, budget])``, so a split does not depend on which other
splits or budgets were asked for.
"""

from __future__ import annotations

import os
import re
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, ManifestError, suggest
from .labels import normalize_id
from ..files import atomic_path
from ..errors import format_ids
from ..seeding import rng


@dataclass(frozen=True)
class Split:
    """One train/test split of slide ids; ``budget`` names the label budget (``full``, ``25p``, ``100`` ...)."""

    train_ids: tuple[str, ...]
    test_ids: tuple[str, ...]
    name: str
    budget: str = "full"


def budget_name(fraction: float | None = None, size: int | None = None) -> str:
    """Name of a budget as in the authors' folders: 1.0 -> ``full``, 0.25 -> ``25p``, size 100 -> ``100``."""
    if size is not None:
        return str(int(size))
    if fraction is None or float(fraction) == 1.0:
        return "full"
    return f"{float(fraction) * 100:g}p"


def budget_key(budget: str) -> int:
    """A stable integer for a budget name (a seed key)."""
    return zlib.crc32(str(budget).encode())


# ------------------------------------------------------------------------------------------ predefined splits
def _split_files(folder) -> list:
    entries = [e for e in folder.iterdir() if re.fullmatch(r"split_\d+\.csv", e.name)]
    return sorted(entries, key=lambda e: int(e.name[6:-4]))


def _column(frame: pd.DataFrame, name: str, where: str) -> tuple[str, ...]:
    values = [str(v).strip() for v in frame[name] if not pd.isna(v)]
    values = tuple(v for v in values if v)  # blank padding of the shorter column
    repeated = sorted(v for v, n in Counter(values).items() if n > 1)
    if repeated:
        raise ManifestError(f"{where}: column {name!r} repeats slide id(s) {format_ids(repeated)}; list each once.")
    return values


def read_splits(folder, budget: str = "full") -> list[Split]:
    """Read ``split_0.csv`` ... ``split_K.csv`` (columns ``train``, ``test``; blanks = padding) in index order.

    Args:
        folder: a directory path, or an ``importlib.resources`` Traversable (the packaged TCGA splits).
        budget: the budget name stored in each :class:`Split`.

    Raises:
        ManifestError: no split file, a missing column, a repeated id, or a slide on both sides.
    """
    folder = Path(folder) if isinstance(folder, (str, os.PathLike)) else folder
    if not folder.is_dir():
        raise ManifestError(f"Split folder {folder} does not exist; give a folder of split_0.csv ... split_9.csv.")
    files = _split_files(folder)
    if not files:
        raise ManifestError(
            f"Split folder {folder} holds no split_<k>.csv file; expected split_0.csv ... with columns train, test."
        )
    splits = []
    for entry in files:
        where = f"{folder}/{entry.name}"
        with entry.open("r") as fh:
            try:
                frame = pd.read_csv(fh, dtype=str, keep_default_na=False)
            except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
                raise ManifestError(f"{where} is not a readable CSV file: {err}") from None
        missing = [c for c in ("train", "test") if c not in frame.columns]
        if missing:
            raise ManifestError(
                f"{where} lacks column(s) {missing}; it has {list(frame.columns)}. Expected train, test."
            )
        split = Split(_column(frame, "train", where), _column(frame, "test", where), entry.name[:-4], budget)
        both = sorted(set(split.train_ids) & set(split.test_ids))
        if both:
            raise ManifestError(f"{where}: slide(s) on both sides {format_ids(both)}; a slide cannot test itself.")
        splits.append(split)
    return splits


def write_splits(splits: list[Split], folder: str | os.PathLike) -> list[Path]:
    """Write splits in the authors' format (``<folder>/<name>.csv``, columns train, test, blank padding)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for split in splits:
        n = max(len(split.train_ids), len(split.test_ids))
        pad = lambda ids: list(ids) + [""] * (n - len(ids))  # noqa: E731
        frame = pd.DataFrame({"train": pad(split.train_ids), "test": pad(split.test_ids)})
        path = folder / f"{split.name}.csv"
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
        paths.append(path)
    return paths


# ------------------------------------------------------------------------------------------ generated splits
@dataclass
class _Cases:
    """The cases among some slides: ids, stratum (majority label, ties -> first sorted), slides, size."""

    ids: list
    strata: np.ndarray
    slides: list
    sizes: np.ndarray

    def members(self, mask: np.ndarray) -> list[str]:
        return [s for i in np.flatnonzero(mask) for s in self.slides[i]]


def _case_table(labels: pd.DataFrame, ids) -> _Cases:
    """Group ``ids`` by case (cases sorted by id, slides in the order given)."""
    case_of = dict(zip(labels["slide_id"], labels["case_id"]))
    label_of = dict(zip(labels["slide_id"], labels["label"]))
    groups: dict[str, list[str]] = {}
    for sid in ids:
        groups.setdefault(case_of[sid], []).append(sid)
    names = sorted(groups)
    strata = []
    for name in names:
        counts = Counter(label_of[s] for s in groups[name])
        top = max(counts.values())
        strata.append(min(c for c, n in counts.items() if n == top))
    return _Cases(names, np.array(strata, dtype=object), [tuple(groups[n]) for n in names],
                  np.array([len(groups[n]) for n in names], dtype=int))


def _holdout(cases: _Cases, fraction: float, gen: np.random.Generator, strict: bool) -> np.ndarray:
    """Boolean mask of held-out cases: per stratum, a shuffled prefix whose slide count is closest to
    ``fraction`` of the stratum's slides, with at least one case on each side (strata of one case stay in)."""
    held = np.zeros(len(cases.ids), bool)
    for stratum in sorted(set(cases.strata)):
        idx = np.flatnonzero(cases.strata == stratum)
        if len(idx) < 2:
            if strict:
                raise ManifestError(
                    f"Class {stratum!r} has a single case ({cases.ids[idx[0]]!r}); grouped by case, it "
                    "cannot be on both sides of a split. Remove the class or add cases."
                )
            continue
        order = idx[gen.permutation(len(idx))]
        cum = np.cumsum(cases.sizes[order])
        target = fraction * cum[-1]
        take = int(np.argmin(np.abs(cum[:-1] - target))) + 1  # between 1 and len - 1 cases
        held[order[:take]] = True
    return held


def make_splits(labels: pd.DataFrame, n_splits: int = 10, test_fraction: float = 0.25, seed: int = 0) -> list[Split]:
    """K repeated stratified train/test splits grouped by case (Sec. 4.2, "10 bootstrapped splits").

    Split k is drawn from ``rng(seed, k)``: per class (a case's class is its slides' majority label), the
    cases are shuffled and a prefix holding about ``test_fraction`` of the class's slides goes to test.

    Args:
        labels: frame from :func:`gigassl.evaluation.labels.load_labels` (``slide_id``, ``case_id``, ``label``).

    Raises:
        ConfigError: n_splits < 1 or test_fraction outside (0, 1).
        ManifestError: a class with fewer than two cases.
    """
    if int(n_splits) < 1:
        raise ConfigError(f"n_splits must be >= 1; got {n_splits}.")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1); got {test_fraction}. The paper's splits use about 0.1.")
    cases = _case_table(labels, labels["slide_id"])
    splits = []
    for k in range(int(n_splits)):
        held = _holdout(cases, float(test_fraction), rng(seed, k), strict=True)
        train, test = tuple(cases.members(~held)), tuple(cases.members(held))
        splits.append(Split(train, test, f"split_{k}", "full"))
    return splits


def validation_split(labels: pd.DataFrame, ids, fraction: float, gen: np.random.Generator):
    """Split ``ids`` into (fit ids, validation ids), stratified and grouped by case (DeepMIL early stopping).

    Classes with a single case stay in the fit part; the validation part may therefore lack a class.
    """
    cases = _case_table(labels, ids)
    held = _holdout(cases, float(fraction), gen, strict=False)
    return cases.members(~held), cases.members(held)


# ---------------------------------------------------------------------------------------------- label budgets
def _allocate(total: int, weights: np.ndarray) -> np.ndarray:
    """Integer allocation of ``total`` proportional to ``weights`` (largest remainder), each at least 1."""
    raw = total * weights / weights.sum()
    out = np.maximum(np.floor(raw).astype(int), 1)
    while out.sum() > total:  # the "at least 1" floors overshot: take from the largest
        out[np.argmax(out - raw)] -= 1
    order = np.argsort(-(raw - out), kind="stable")
    for i in range(total - out.sum()):
        out[order[i % len(out)]] += 1
    return out


def _exact_cases(cases: _Cases, size: int, gen: np.random.Generator) -> np.ndarray:
    """Pick cases whose slide count is exactly ``size``, stratified, at least one case per stratum.

    Per stratum, cases are taken in shuffled order while they fit the stratum's quota; the remainder is
    filled from all unused cases in shuffled order; a last gap is closed by swapping a chosen case for an
    unused one one slide larger. Returns a boolean mask, or raises ManifestError if no swap closes the gap.
    """
    sizes, strata = cases.sizes, cases.strata
    names = sorted(set(strata))
    weights = np.array([sizes[strata == s].sum() for s in names], float)
    quota = dict(zip(names, _allocate(size, weights)))
    smallest = {s: int(sizes[strata == s].min()) for s in names}
    if sum(smallest.values()) > size:
        raise ManifestError(
            f"Cannot select exactly {size} training slides with a whole case of each of the {len(names)} classes: "
            f"the smallest cases of the classes hold {smallest} slides (at least {sum(smallest.values())} in all). "
            "Choose a larger --train-size."
        )
    for s in names:  # a stratum whose cases are all larger than its quota gets its smallest case ...
        quota[s] = max(quota[s], smallest[s])
    for s in sorted(names, key=lambda s: -quota[s]):  # ... taken from the largest quotas
        excess = sum(quota.values()) - size
        if excess > 0:
            quota[s] -= min(excess, quota[s] - smallest[s])
    chosen = np.zeros(len(cases.ids), bool)
    order = gen.permutation(len(cases.ids))
    for s in names:
        room = quota[s]
        for i in order[strata[order] == s]:
            if sizes[i] <= room:
                chosen[i], room = True, room - sizes[i]
    gap = size - int(sizes[chosen].sum())
    for i in order:  # fill from everything left
        if gap > 0 and not chosen[i] and sizes[i] <= gap:
            chosen[i], gap = True, gap - sizes[i]
    if gap > 0:  # swap a chosen case for an unused one `gap` slides larger, keeping every stratum present
        for i in order[chosen[order]]:
            alone = (chosen & (strata == strata[i])).sum() == 1
            fits = [j for j in order if not chosen[j] and sizes[j] == sizes[i] + gap
                    and (not alone or strata[j] == strata[i])]
            if fits:
                chosen[i], chosen[fits[0]], gap = False, True, 0
                break
    if gap != 0:
        raise ManifestError(
            suggest(
                f"Cannot select exactly {size} training slides grouped by case: the {len(cases.ids)} cases hold "
                f"{int(sizes.sum())} slides in cases of {sorted(set(sizes.tolist()))} slides, at least one case "
                "of each class.",
                f"choose a size the cases can make up (e.g. {size - 1} or {size + 1})",
                "or give predefined splits (--splits DIR)",
            )
        )
    return chosen


def budget_split(split: Split, labels: pd.DataFrame, *, fraction: float | None = None, size: int | None = None,
                 seed: int = 0, index: int = 0) -> Split:
    """The training part of ``split`` reduced to a label budget; the test part is unchanged.

    Exactly ``size`` slides, or ``round(fraction * n_train)`` slides, are kept: whole cases, stratified by
    class, at least one slide of every class of the training split, drawn from ``rng(seed, index, budget)``.
    ``fraction=1.0`` returns ``split`` itself, with its budget name (so a list of splits that already carry
    their budgets, e.g. the authors' TCGA folders, passes through :func:`plan_splits` unchanged).

    Raises:
        ConfigError: both or neither of fraction/size, a fraction outside (0, 1], a size < number of classes
            or larger than the training split.
        ManifestError: no set of whole cases makes up exactly that many slides.
    """
    if (fraction is None) == (size is None):
        raise ConfigError("Give exactly one of fraction (--budget F) or size (--train-size N).")
    name = budget_name(fraction, size)
    n_train = len(split.train_ids)
    if fraction is not None:
        if not 0.0 < float(fraction) <= 1.0:
            raise ConfigError(f"A label budget fraction must be in (0, 1]; got {fraction}. E.g. --budget 0.25.")
        if float(fraction) == 1.0:
            return split  # the whole training set: the split keeps its own budget name
        target = int(round(float(fraction) * n_train))
    else:
        target = int(size)
    check_ids([split], set(labels["slide_id"]), what="the label table")
    cases = _case_table(labels, split.train_ids)
    n_classes = len(set(cases.strata))
    if not n_classes <= target <= n_train:
        direction = "larger" if target < n_classes else "smaller"  # one slide per class at least, all at most
        raise ConfigError(
            f"Budget {name!r} asks for {target} training slides but {split.name} has {n_train} training slides "
            f"in {n_classes} classes; allowed: {n_classes} to {n_train}. Choose a {direction} --train-size/--budget"
            + (f" (--budget {n_classes / n_train:.2g} or more keeps a slide of every class)."
               if direction == "larger" and fraction is not None else ".")
        )
    if target == n_train:
        return replace(split, budget=name)
    chosen = _exact_cases(cases, target, rng(seed, index, budget_key(name)))
    keep = set(cases.members(chosen))
    train = tuple(s for s in split.train_ids if s in keep)
    return Split(train, split.test_ids, split.name, name)


def plan_splits(labels: pd.DataFrame, *, splits=None, n_splits: int = 10, test_fraction: float = 0.25,
                budgets=(1.0,), train_sizes=(), seed: int = 0) -> list[Split]:
    """Every (budget, split) pair of a protocol: base splits, then each budget applied to each of them.

    Args:
        splits: a folder of predefined splits, a list of :class:`Split`, or None (generate ``n_splits``).
        budgets: fractions of each training split (1.0 = ``full``); train_sizes: exact training-set sizes.

    Returns: splits ordered by budget (as given: fractions, then sizes), then split index.
    """
    if splits is None:
        base = make_splits(labels, n_splits, test_fraction, seed)
    elif isinstance(splits, (str, os.PathLike)):
        base = read_splits(splits)
    else:
        base = list(splits)
    check_ids(base, set(labels["slide_id"]), what="the label table")
    plan = []
    for fraction in budgets or ():
        plan += [budget_split(s, labels, fraction=fraction, seed=seed, index=k) for k, s in enumerate(base)]
    for size in train_sizes or ():
        plan += [budget_split(s, labels, size=size, seed=seed, index=k) for k, s in enumerate(base)]
    if not plan:
        raise ConfigError("No budget given: pass --budget F (e.g. 1.0) or --train-size N.")
    return plan


# ------------------------------------------------------------------------------------------------------ checks
def check_ids(splits: list[Split], known, what: str = "the embeddings") -> None:
    """Raise if a split names slide ids that ``known`` (a set) lacks, listing them (first 10 and the count)."""
    missing = sorted({i for s in splits for i in (*s.train_ids, *s.test_ids) if i not in known})
    if not missing:
        return
    hint = "ids must match exactly (same case, no file extension)"
    normalized = {normalize_id(k) for k in known}
    if any(normalize_id(m) in normalized for m in missing):
        hint = ("some ids differ only by case, folder or file extension: make the ids of splits, labels and "
                "embeddings identical")
    raise ManifestError(
        suggest(
            f"Slide ids named in the splits are absent from {what} ({format_ids(missing)}).",
            f"embed or label those slides, or remove them from the split files; {hint}",
        )
    )


def case_overlap(split: Split, case_of: dict[str, str]) -> list[str]:
    """Cases (patients) with slides on both sides of ``split``, sorted."""
    train = {case_of.get(i, i) for i in split.train_ids}
    return sorted({case_of.get(i, i) for i in split.test_ids} & train)


def check_splits(splits: list[Split], labels: pd.DataFrame, allow_case_overlap: bool = False) -> list[int]:
    """Check every split for leakage; return the number of overlapping cases of each split.

    Raises:
        ManifestError: a slide on both sides (always), or a case on both sides unless ``allow_case_overlap``
            (needed to reproduce the authors' TCGA splits; the count is then recorded in the result table).
    """
    case_of = dict(zip(labels["slide_id"], labels["case_id"]))
    counts = []
    for split in splits:
        both = sorted(set(split.train_ids) & set(split.test_ids))
        if both:
            raise ManifestError(f"{split.name} ({split.budget}): slide(s) on both sides {format_ids(both)}.")
        cases = case_overlap(split, case_of)
        if cases and not allow_case_overlap:
            raise ManifestError(
                suggest(
                    f"{split.name} ({split.budget}) has case(s) on both train and test sides ({format_ids(cases)}): "
                    "slides of one patient would leak into the test set.",
                    "use splits grouped by case (generated ones are: --n-splits K)",
                    "or, to reproduce published splits that have such overlaps, pass --allow-case-overlap "
                    "(the overlap is then recorded per split in the column case_overlap)",
                )
            )
        counts.append(len(cases))
    return counts


# ------------------------------------------------------------------------------------------------ unseen centres
def centre_splits(labels: pd.DataFrame, min_per_class: int = 1) -> tuple[list[Split], dict[str, str]]:
    """Site-preserved splits: each centre held out in turn (train on the other centres, test on it).

    Split ``held_out:<centre>`` tests on every labelled slide of the centre and trains on the slides of the other
    centres, less those of a patient who also has a slide in the held-out centre (no patient on both sides). A
    centre is skipped, with the reason recorded, when its slides hold fewer than two classes with at least
    ``min_per_class`` slides each (the AUROC would be undefined or rest on fewer slides than asked), or when the
    other centres hold fewer than two classes. Centres in sorted order; the splits draw nothing.

    Args:
        labels: a label frame with a ``center`` column (:func:`gigassl.evaluation.labels.task_table` keeps it);
            slides with no centre take part in no test set but train every split.

    Returns: (splits, {skipped centre: reason}).

    Raises:
        ConfigError: min_per_class < 1. ManifestError: no ``center`` column, or fewer than two centres.
    """
    if int(min_per_class) < 1:
        raise ConfigError(f"min_per_class must be >= 1; got {min_per_class}. 1 keeps every centre whose AUROC is "
                          "defined.")
    if "center" not in labels.columns or labels["center"].dropna().nunique() < 2:
        found = sorted(labels["center"].dropna().astype(str).unique()) if "center" in labels.columns else None
        raise ManifestError(suggest(
            f"Unseen-centre splits need a `center` column with at least two centres; the label table has "
            f"{'no such column' if found is None else found}.",
            "pass the manifest (slide_id, case_id, center, task) or a frame from labels.task_table"))
    centre = labels["center"].where(labels["center"].notna(), None).map(lambda c: None if c is None else str(c))
    slides, cases, classes = (labels[c].astype(str).to_numpy() for c in ("slide_id", "case_id", "label"))
    splits, skipped = [], {}
    for name in sorted(set(centre.dropna())):
        test = (centre == name).to_numpy()
        counts = Counter(classes[test])
        enough = sorted(c for c, n in counts.items() if n >= int(min_per_class))
        train = ~test & ~np.isin(cases, cases[test])
        if len(enough) < 2:
            skipped[name] = (f"its {int(test.sum())} slides hold {dict(sorted(counts.items()))}: fewer than two "
                             f"classes with at least {int(min_per_class)} slide(s)")
        elif len(set(classes[train])) < 2:
            skipped[name] = f"the other centres hold a single class ({sorted(set(classes[train]))})"
        else:
            splits.append(Split(tuple(slides[train]), tuple(slides[test]), f"held_out:{name}", "full"))
    return splits, skipped
