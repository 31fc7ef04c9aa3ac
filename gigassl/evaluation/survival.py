"""The survival probe on frozen slide embeddings (issue #26): a penalised Cox model, concordance, risk groups.

- :func:`load_survival`: a label table with time-to-event columns (``slide_id, case_id, time, event``), checked.
- :class:`CoxProbe`: an elastic-net Cox model (scikit-survival's ``CoxnetSurvivalAnalysis``) on standardised
  embeddings, its penalty chosen by an inner cross-validation on the training slides only (folds grouped by case,
  stratified by event), maximising Harrell's C; the analogue of :class:`gigassl.evaluation.probe.TunedLinearProbe`
  for time-to-event labels.
- :func:`harrell_c`, :func:`uno_c`: Harrell's concordance and Uno's IPCW concordance (truncated at ``tau``).
- :func:`risk_groups` (cut at the training risks' quantiles: the median for two groups), :func:`kaplan_meier`,
  :func:`logrank`: the Kaplan-Meier curves of predicted risk groups on test slides and their log-rank test.
- :func:`survival_runs`: every representation on identical splits (built from the labels and a seed), the tidy
  runs table of the evaluations (evaluation ``survival``, settings ``harrell`` and ``uno``, metric ``c_index``);
  :func:`survival_risks`: the per-test-slide risks and risk groups of one representation, for Kaplan-Meier plots.

Why scikit-survival (0.28) rather than lifelines: its estimators follow the scikit-learn API the project's probes
follow (``fit``/``predict``, ``get_params``, ``clone``); ``CoxnetSurvivalAnalysis`` fits the whole penalty path by
coordinate descent in one call, so the inner cross-validation over penalties costs one fit per fold (300 slides x
512 dimensions: about 1 s for 12 penalties, where a ridge Cox by Newton steps on the D x D Hessian, scikit-survival's
``CoxPHSurvivalAnalysis`` or lifelines' ``CoxPHFitter``, took 11 s for one penalty); and it holds Harrell's and Uno's
concordance, the Kaplan-Meier estimator and the log-rank test in one maintained library whose wheel matches the
pinned scikit-learn.

Defaults, with their source: the elastic-net mix ``l1_ratio = 0.5`` (the usual compromise of Zou & Hastie 2005,
as in Simon et al. 2011's Coxnet); 12 penalties from the path's largest (all coefficients 0) down to
``alpha_min_ratio = 0.01`` of it (glmnet's default ratio when features outnumber samples); 3 inner folds (as the
fair linear probe); 10 random splits with a quarter of the cases held out (the classification protocol's
``gigassl probe`` defaults). None was chosen by looking at a probe's concordance.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from .. import validate
from ..devices import limit_threads
from ..errors import ConfigError, ManifestError, format_ids
from .splits import check_ids, make_splits

SETTINGS = ("harrell", "uno")


def surv(time, event) -> np.ndarray:
    """The structured array scikit-survival takes as ``y`` (fields ``event`` bool, ``time`` float).
    Shape: time (n,), event (n,) -> (n,)."""
    from sksurv.util import Surv

    return Surv.from_arrays(event=np.asarray(event).astype(bool), time=np.asarray(time, float))


def _unpack(y) -> tuple[np.ndarray, np.ndarray]:
    """(time, event) of a structured survival array."""
    from sksurv.util import check_y_survival

    event, time = check_y_survival(y)
    return np.asarray(time, float), np.asarray(event, bool)


# --------------------------------------------------------------------------------------------------- labels
def load_survival(labels, time: str = "time", event: str = "event") -> pd.DataFrame:
    """Read a time-to-event label table as a frame ``slide_id, case_id, time (float), event (int 0/1)``.

    Args:
        labels: a CSV path or a DataFrame with ``slide_id``, the ``time`` and ``event`` columns and optionally
            ``case_id`` (a missing case is the slide's own id). Rows without a time or an event are dropped (e.g.
            the unlabelled pool); ``survival.csv`` of ``gigassl synth`` is such a table.
        time, event: the columns' names (``gigassl probe --time T --event E``); event 1 = the event was observed,
            0 = censored (True/False accepted).

    Raises:
        ManifestError: file missing or unreadable, no such column, a negative or non-finite time, an event other
            than 0/1, a repeated slide id, fewer than two events.
    """
    where = "the survival table"
    if isinstance(labels, (str, os.PathLike)):
        where = str(labels)
        validate.existing_file(labels, "Survival table", f"give a CSV with slide_id, case_id, {time}, {event}.",
                               ManifestError)
        try:
            labels = pd.read_csv(labels, dtype={"slide_id": str, "case_id": str})
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
            raise ManifestError(f"Survival table {where} is not a readable CSV file: {err}") from None
    frame = pd.DataFrame(labels)
    for column in ("slide_id", time, event):
        if column not in frame.columns:
            raise ManifestError(
                f"{where} has no column {column!r}; it has {list(frame.columns)}. A survival table needs slide_id, "
                "case_id (optional), a time and an event column; pass --time COLUMN --event COLUMN.")
    frame = frame[frame[time].notna() & frame[event].notna()]
    ids = [str(v).strip() for v in frame["slide_id"]]
    times = pd.to_numeric(frame[time], errors="coerce").to_numpy(float)
    bad = [i for i, t in zip(ids, times) if not (np.isfinite(t) and t >= 0)]
    if bad:
        raise ManifestError(f"{where}: column {time!r} holds a value that is not a finite time >= 0 for slide(s) "
                            f"{format_ids(bad)}; give times as numbers (e.g. months since diagnosis).")
    flags = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}
    raw = [str(v).strip().lower() for v in frame[event]]
    bad = sorted({v for v in raw if v not in flags})
    if bad:
        raise ManifestError(f"{where}: column {event!r} holds {bad[:5]}; allowed: 1 (event observed) or 0 "
                            "(censored), or True/False.")
    out = pd.DataFrame({"slide_id": ids, "time": times, "event": np.array([flags[v] for v in raw], int)})
    case = frame["case_id"] if "case_id" in frame.columns else pd.Series(np.nan, index=frame.index)
    out.insert(1, "case_id", [str(c).strip() if not pd.isna(c) else s for c, s in zip(case, ids)])
    repeated = out["slide_id"][out["slide_id"].duplicated()].unique()
    if len(repeated):
        raise ManifestError(f"{where}: slide_id repeated ({format_ids(repeated)}). Give each slide one row.")
    if out["event"].sum() < 2:
        raise ManifestError(f"{where}: {int(out['event'].sum())} event(s) among {len(out)} slides; a survival "
                            f"probe needs at least two observed events (column {event!r} = 1).")
    return out.reset_index(drop=True)


# -------------------------------------------------------------------------------------------------- metrics
def harrell_c(time, event, risk) -> float:
    """Harrell's concordance: among comparable pairs (the shorter time is an event), the share whose shorter time
    has the higher risk; tied risks count one half. NaN when no pair is comparable. Shape: (n,) each."""
    from sksurv.exceptions import NoComparablePairException
    from sksurv.metrics import concordance_index_censored

    event = np.asarray(event, bool)
    if len(event) < 2 or not event.any():  # no comparable pair (scikit-survival raises)
        return float("nan")
    try:  # no comparable pair left (e.g. every event at the largest time): 0/0, NaN without numpy's warning
        with np.errstate(invalid="ignore", divide="ignore"):
            return float(concordance_index_censored(event, np.asarray(time, float), np.asarray(risk, float))[0])
    except NoComparablePairException:
        return float("nan")


def uno_c(train_time, train_event, time, event, risk, tau: float | None = None) -> float:
    """Uno's concordance (IPCW; Uno et al. 2011): Harrell's pairs weighted by the inverse squared probability of
    being uncensored, the censoring distribution estimated by Kaplan-Meier on the training slides; pairs whose
    shorter time is >= ``tau`` are left out. ``tau`` None: the largest training time (the censoring distribution is
    unknown beyond it). NaN when no pair is comparable. Shape: train (n_train,), test (n,)."""
    from sksurv.exceptions import NoComparablePairException
    from sksurv.metrics import concordance_index_ipcw

    tau = float(np.max(train_time)) if tau is None else float(tau)
    event, time = np.asarray(event, bool), np.asarray(time, float)
    if len(event) < 2 or not (event & (time < tau)).any():  # no comparable pair
        return float("nan")
    # follow-up beyond tau is censored at tau (administrative censoring): it changes no comparable pair (their
    # shorter time is an event before tau) and keeps the censoring distribution from being read where it is unknown
    beyond = time >= tau
    time, event = np.where(beyond, tau, time), event & ~beyond
    try:
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 -> NaN without numpy's warning
            return float(concordance_index_ipcw(surv(train_time, train_event), surv(time, event),
                                                np.asarray(risk, float), tau=tau)[0])
    except NoComparablePairException:
        return float("nan")


def risk_groups(risk_train, risk_test, n_groups: int = 2) -> np.ndarray:
    """Risk group of each test slide, cut at the quantiles of the training risks (two groups: the training median):
    0 the lowest risk, ``n_groups - 1`` the highest; a risk equal to a cut goes to the higher group.
    Shape: (n_train,), (n,) -> (n,) int."""
    if int(n_groups) < 2:
        raise ConfigError(f"n_groups must be >= 2; got {n_groups}. Two groups cut at the training median.")
    cuts = np.quantile(np.asarray(risk_train, float), np.arange(1, int(n_groups)) / int(n_groups))
    return np.searchsorted(cuts, np.asarray(risk_test, float), side="right")


def kaplan_meier(time, event) -> tuple[np.ndarray, np.ndarray]:
    """The Kaplan-Meier survival curve: (distinct times, survival probability just after each).
    Shape: (n,) each -> (n_times,), (n_times,)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    t, s = kaplan_meier_estimator(np.asarray(event, bool), np.asarray(time, float))
    return np.asarray(t, float), np.asarray(s, float)


def logrank(time, event, groups) -> float:
    """Two-sided p-value of the log-rank test that the groups' survival curves are equal (chi-square with
    n_groups - 1 degrees of freedom); NaN where the test is undefined: fewer than two groups, no event, or a
    singular covariance (e.g. a group whose slides all leave the risk set before the first event). Shape: (n,)
    each."""
    from sksurv.compare import compare_survival

    groups = np.asarray(groups)
    if len(np.unique(groups)) < 2 or not np.asarray(event, bool).any():
        return float("nan")
    try:
        return float(compare_survival(surv(time, event), groups)[1])
    except np.linalg.LinAlgError:  # the variance of the statistic is singular: no test
        return float("nan")


# ---------------------------------------------------------------------------------------------- estimator
class CoxProbe(BaseEstimator):
    """Elastic-net Cox regression on frozen slide embeddings, its penalty chosen by inner cross-validation.

    ``fit`` standardises the features on the rows it is given, fits scikit-survival's ``CoxnetSurvivalAnalysis``
    path (``n_alphas`` penalties from the largest down to ``alpha_min_ratio`` of it) and scores every penalty by
    the mean Harrell's C over ``inner_splits`` folds of the same rows (grouped by ``groups``, stratified by event;
    each fold standardised on its own training part); the best penalty (the larger on ties) is kept. Nothing but
    the rows passed to ``fit`` enters the choice. No usable fold (too few cases or events): the middle penalty.

    Args:
        l1_ratio: the L1 share of the elastic net (0 < l1_ratio <= 1). n_alphas, alpha_min_ratio: the path.
        inner_splits: folds of the inner cross-validation (fewer when there are fewer cases or events).
        seed: the inner folds' shuffle. max_iter: coordinate descent iterations.
        n_threads: BLAS/OpenMP threads while fitting (1: cheapest on a shared CPU); None keeps the default.

    Attributes: alphas_ (n_alphas,) the penalty path, decreasing; alpha_ the chosen penalty; cv_scores_ (n_alphas,)
        mean inner Harrell's C (NaN where no fold scored); coef_ (F,) on the standardised features; scaler_, model_.

    Shape: X (S, F), y structured (S,) (:func:`surv`) -> predict (S,), the risk (higher: shorter expected time).

    >>> probe = CoxProbe().fit(X_train, surv(time, event), groups=cases)  # doctest: +SKIP
    >>> c = harrell_c(time_test, event_test, probe.predict(X_test))  # doctest: +SKIP
    """

    def __init__(self, l1_ratio: float = 0.5, n_alphas: int = 12, alpha_min_ratio: float = 0.01,
                 inner_splits: int = 3, seed: int = 0, max_iter: int = 100000, n_threads: int | None = 1):
        self.l1_ratio, self.n_alphas, self.alpha_min_ratio = l1_ratio, n_alphas, alpha_min_ratio
        self.inner_splits, self.seed, self.max_iter, self.n_threads = inner_splits, seed, max_iter, n_threads

    def _path(self, X, y, alphas=None):
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        return CoxnetSurvivalAnalysis(
            l1_ratio=self.l1_ratio, alphas=alphas, n_alphas=int(self.n_alphas),
            alpha_min_ratio=self.alpha_min_ratio, max_iter=int(self.max_iter), fit_baseline_model=False,
        ).fit(X, y)

    def _folds(self, event: np.ndarray, groups) -> list:
        from sklearn.model_selection import StratifiedGroupKFold

        groups = np.arange(len(event)) if groups is None else np.asarray(groups)
        n = int(min(self.inner_splits, len(np.unique(groups)), event.sum()))
        if n < 2:
            return []
        cv = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=int(self.seed))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an event class with fewer members than folds
            return [(tr, te) for tr, te in cv.split(np.zeros(len(event)), event, groups) if event[tr].sum() >= 1]

    def fit(self, X, y, groups=None):
        """Choose the penalty by inner cross-validation on X (S, F), y (S,) structured, groups (S,); keep the path
        fitted on all rows at that penalty. Returns self."""
        if not 0.0 < float(self.l1_ratio) <= 1.0:
            raise ConfigError(f"CoxProbe.l1_ratio must be in (0, 1]; got {self.l1_ratio}. 0.5 is the elastic net's "
                              "usual mix, 1 the lasso.")
        X = validate_data(self, X, dtype=[np.float64, np.float32])
        time, event = _unpack(y)
        if len(time) != len(X):
            raise ValueError(f"CoxProbe.fit: {len(X)} rows of X but {len(time)} survival labels.")
        if event.sum() < 2:
            raise ValueError(f"CoxProbe needs at least 2 observed events in its training rows; got "
                             f"{int(event.sum())} among {len(event)}. Check the event column and the split.")
        with limit_threads(self.n_threads, "blas"):
            self.scaler_ = StandardScaler().fit(X)
            self.model_ = self._path(self.scaler_.transform(X), y)
            self.alphas_ = np.asarray(self.model_.alphas_, float)
            scores = [[] for _ in self.alphas_]
            for train, test in self._folds(event, groups):
                scaler = StandardScaler().fit(X[train])
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # convergence at the smallest penalties of a small fold
                        fold = self._path(scaler.transform(X[train]), y[train], alphas=self.alphas_)
                except ArithmeticError:  # the fold's path diverged (weights too large): it scores nothing
                    continue
                x_test = scaler.transform(X[test])
                for k, alpha in enumerate(self.alphas_):
                    scores[k].append(harrell_c(time[test], event[test], fold.predict(x_test, alpha=alpha)))
        self.cv_scores_ = np.array([np.nanmean(s) if s and not np.all(np.isnan(s)) else np.nan for s in scores])
        if np.all(np.isnan(self.cv_scores_)):
            best = len(self.alphas_) // 2
        else:
            best = int(np.nanargmax(self.cv_scores_))  # the first maximum: the largest penalty among ties
        self.alpha_ = float(self.alphas_[best])
        self.coef_ = np.asarray(self.model_.coef_)[:, best]
        return self

    def predict(self, X) -> np.ndarray:
        """The risk score of each row (S,): the linear predictor on standardised features at ``alpha_``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        return self.scaler_.transform(X) @ self.coef_

    def score(self, X, y) -> float:
        """Harrell's C of the predicted risks of X against y (structured)."""
        time, event = _unpack(y)
        return harrell_c(time, event, self.predict(X))


# --------------------------------------------------------------------------------------------------- runs
def _table(named: dict, labels: pd.DataFrame) -> tuple[pd.DataFrame, dict]:
    """``labels`` (from :func:`load_survival`), and each representation as {name: ({slide id: row}, matrix)}, after
    checking that it holds every labelled slide (ManifestError listing the missing ones)."""
    table, rows = labels, {}
    for name, (ids, matrix) in named.items():
        ids = [str(i) for i in ids]
        check_ids([_as_split(table)], set(ids), what=f"the embeddings of {name!r}")
        rows[name] = ({s: i for i, s in enumerate(ids)}, np.asarray(matrix, float))
    return table, rows


def _as_split(table: pd.DataFrame):
    from .splits import Split

    return Split(tuple(table["slide_id"]), (), "labels")


def survival_splits(table: pd.DataFrame, n_splits: int = 10, test_fraction: float = 0.25, seed: int = 0):
    """Random train/test splits grouped by case and stratified by event (a case's majority event), drawn from the
    labels and ``seed`` only (:func:`gigassl.evaluation.splits.make_splits`), so every representation meets the same
    ones."""
    strata = table.assign(label=table["event"].astype(str))
    return make_splits(strata, n_splits, test_fraction, seed)


def survival_runs(named: dict, labels, task: str | None = None, *, time: str = "time", event: str = "event",
                  n_splits: int = 10, test_fraction: float = 0.25, seed: int = 0, tau: float | None = None,
                  probe: CoxProbe | None = None) -> pd.DataFrame:
    """Every representation's :class:`CoxProbe` over identical splits: the tidy runs table (issue #26).

    Args:
        named: {representation name: (slide ids, matrix (n_slides, D))}, e.g. from
            :func:`gigassl.evaluation.protocol.load_embeddings`. Each must hold every labelled slide.
        labels: a survival table (path or frame with ``slide_id``, ``case_id``, the ``time`` and ``event``
            columns), read by :func:`load_survival`.
        task: the name in the column ``task`` (default: the time column's name).
        n_splits, test_fraction, seed: the splits (:func:`survival_splits`), built once from the labels.
        tau: Uno's truncation time; None: each split's largest training time.
        probe: the estimator (default ``CoxProbe(seed=seed)``), cloned for each split and representation.

    Returns: one row per (method, draw, setting): columns method, evaluation (``survival``), task, setting
        (``harrell``, ``uno``), draw, metric (``c_index``), value, n_train, n_test, n_events_test, alpha.
    """
    from sklearn.base import clone

    table, rows = _table(named, load_survival(labels, time, event))
    probe = CoxProbe(seed=seed) if probe is None else probe
    splits = survival_splits(table, n_splits, test_fraction, seed)
    t_of = dict(zip(table["slide_id"], table["time"]))
    e_of = dict(zip(table["slide_id"], table["event"]))
    case_of = dict(zip(table["slide_id"], table["case_id"]))
    out = []
    for name, (row, matrix) in rows.items():
        for k, split in enumerate(splits):
            train, test = list(split.train_ids), list(split.test_ids)
            t_train, e_train = np.array([t_of[s] for s in train]), np.array([e_of[s] for s in train], bool)
            t_test, e_test = np.array([t_of[s] for s in test]), np.array([e_of[s] for s in test], bool)
            fitted = clone(probe).fit(matrix[[row[s] for s in train]], surv(t_train, e_train),
                                      groups=[case_of[s] for s in train])
            risk = fitted.predict(matrix[[row[s] for s in test]])
            values = {"harrell": harrell_c(t_test, e_test, risk),
                      "uno": uno_c(t_train, e_train, t_test, e_test, risk, tau)}
            for setting in SETTINGS:
                out.append({"method": name, "evaluation": "survival", "task": task or time, "setting": setting,
                            "draw": k, "metric": "c_index", "value": values[setting], "n_train": len(train),
                            "n_test": len(test), "n_events_test": int(e_test.sum()), "alpha": fitted.alpha_})
    return pd.DataFrame(out)


def survival_risks(ids, matrix, labels, *, time: str = "time", event: str = "event", n_splits: int = 10,
                   test_fraction: float = 0.25, seed: int = 0, n_groups: int = 2,
                   probe: CoxProbe | None = None) -> pd.DataFrame:
    """The test slides' predicted risks and risk groups of one representation on the splits of
    :func:`survival_runs` (same labels and seed, same splits), for Kaplan-Meier curves (:func:`kaplan_meier`) and
    the log-rank test (:func:`logrank`) of each draw.

    Returns: one row per (draw, test slide): draw, slide_id, case_id, time, event, risk, group (0 = low risk;
    cut at the quantiles of the draw's training risks, :func:`risk_groups`).
    """
    from sklearn.base import clone

    table, rows = _table({"representation": (ids, matrix)}, load_survival(labels, time, event))
    row, matrix = rows["representation"]
    probe = CoxProbe(seed=seed) if probe is None else probe
    frame = table.set_index("slide_id")
    out = []
    for k, split in enumerate(survival_splits(table, n_splits, test_fraction, seed)):
        train, test = frame.loc[list(split.train_ids)], frame.loc[list(split.test_ids)]
        fitted = clone(probe).fit(matrix[[row[s] for s in train.index]], surv(train["time"], train["event"]),
                                  groups=train["case_id"].to_numpy())
        risk_train = fitted.predict(matrix[[row[s] for s in train.index]])
        risk = fitted.predict(matrix[[row[s] for s in test.index]])
        out.append(pd.DataFrame({"draw": k, "slide_id": test.index, "case_id": test["case_id"].to_numpy(),
                                 "time": test["time"].to_numpy(), "event": test["event"].to_numpy(),
                                 "risk": risk, "group": risk_groups(risk_train, risk, n_groups)}))
    return pd.concat(out, ignore_index=True)
