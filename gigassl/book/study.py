"""The study of issue #24 ("When can slide-level SSL beat the mean of tiles?"), run through the real commands'
functions: the design file (``studies/mechanisms.yml``) expanded into runs, each cell run and written so that the
runner resumes, then analysed (:mod:`gigassl.book.study_analysis`). Companion layer: the method never imports it.

A *run* is one (cell, generator seed, pool, method, SSL seed) of the design (:func:`expand`); a *cell file* holds
every run of one (cell, generator seed): the test slides' scores of each run (``cells/<cell>_g<seed>.csv``) beside
the hash of the settings they depend on (``.json``); :func:`run_study` skips a cell whose file exists with the same
hash and reruns it otherwise. Per cell and generator seed, the steps are those of the commands:

- ``gigassl simulate`` (:func:`gigassl.cohorts.featsim.simulate`) at the cell's largest pool (a smaller pool is its
  first slides: a bigger pool extends a smaller one);
- the oracle: the slide statistic (labels.csv ``oracle``) as a one-dimensional embedding;
- AverageMIL: :func:`gigassl.evaluation.baselines.average_embeddings` of the features folder;
- DeepMIL: :class:`gigassl.evaluation.baselines.DeepMILClassifier` on the training slides (its validation part
  drawn as ``run_deepmil`` draws it); its predicted probability is its score (it is its own classifier);
- Giga-SSL arms: :func:`gigassl.train.train` on the features folder (training slides without labels + the pool),
  then :func:`gigassl.embed.embed_slides`; the untrained arms: :func:`gigassl.train.untrained_checkpoint`, then
  ``embed_slides`` (``gigassl train --untrained``, ``gigassl embed``);
- every embedding probed by the design's one protocol: :class:`gigassl.evaluation.probe.TunedLinearProbe` fitted on
  the training slides, its decision function on the cell's own test set (the scores stored).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import DeepMILConfig, EmbedConfig, FeatSimConfig, MapConfig, TrainConfig, get_profile, refused
from ..files import write_csv_atomic

DESIGN = Path("studies") / "mechanisms.yml"
GRIDS = ("full", "book", "sensitivity")
# the arms of the design (studies/mechanisms.yml, methods): T and sampling of the views, and whether SSL trains
ARMS = {
    "gigassl": (5, "random", True),
    "gigassl_local": (16, "local", True),
    "gigassl_random16": (16, "random", True),
    "random_aggregator": (5, "random", False),
    "random_aggregator_local": (16, "local", False),
}
POOL_CURVE_ARMS = ("gigassl", "gigassl_local")  # the arms run at every pool of a cell's pool list
NO_SSL_SEED = ("oracle", "averagemil", "deepmil")  # no SSL seed, no pool: run once per (cell, generator seed)
COLUMNS = ["cell", "mechanism", "generator_seed", "pool", "method", "ssl_seed", "slide_id", "label", "score"]


@dataclass(frozen=True)
class Run:
    """One run of the design: ``method`` on cell ``cell`` (its ``mechanism``) of generator seed ``generator_seed``,
    trained with an unlabelled pool of ``pool`` slides (0 for the methods that use none) and SSL seed ``ssl_seed``
    (-1 for the methods without one)."""

    cell: str
    mechanism: str
    generator_seed: int
    pool: int
    method: str
    ssl_seed: int


def run_name(run: Run) -> str:
    """A run's name in its cell's work folder (its training folder, its finished scores): method, pool, SSL seed."""
    return f"{run.method}_p{run.pool}_s{run.ssl_seed}"


def read_design(path: str | Path = DESIGN) -> tuple[dict, str]:
    """(the parsed design, the sha256 of the file's bytes) of ``path``."""
    import yaml

    data = Path(path).read_bytes()
    return yaml.safe_load(data), hashlib.sha256(data).hexdigest()


def grid_of(design: dict, grid: str = "full") -> dict:
    """The grid ``grid`` of the design: ``full`` (cells, generator_seeds, ssl_seeds, pools, every method) or ``book``
    (the ``book_grid`` section's choices over the full grid, each unset one kept from it). Returns a dict with
    ``cells`` (the cell dicts), ``generator_seeds``, ``ssl_seeds``, ``pools`` ({cell name: [pools]}), ``methods``."""
    if grid not in GRIDS:
        raise refused("study grid", grid, "full, book or sensitivity",
                      "Pass grid='full' (the benchmark), 'book' (the page) or 'sensitivity' (the benchmark's "
                      "nuisance cells).")
    pools = {c["name"]: list(design["pools"].get(c["name"], design["pools"]["default"])) for c in design["cells"]}
    full = {"cells": list(design["cells"]), "generator_seeds": list(design["generator_seeds"]),
            "ssl_seeds": list(design["ssl_seeds"]), "pools": pools, "methods": list(design["methods"])}
    if grid == "full":
        return full
    if grid == "sensitivity":
        return sensitivity_grid(design, full)
    book = design.get("book_grid") or {}
    names = book.get("cells", [c["name"] for c in full["cells"]])
    unknown = sorted(set(names) - set(pools))
    if unknown:
        raise refused("book_grid cells", unknown, f"cells of the design: {', '.join(pools)}", "Fix the design file.")
    return {"cells": [c for c in full["cells"] if c["name"] in names],
            "generator_seeds": list(book.get("generator_seeds", full["generator_seeds"])),
            "ssl_seeds": list(book.get("ssl_seeds", full["ssl_seeds"])),
            "pools": {n: list((book.get("pools") or {}).get(n, pools[n])) for n in names},
            "methods": list(book.get("methods", full["methods"]))}


def sensitivity_grid(design: dict, full: dict) -> dict:
    """The design's ``sensitivity`` section as a grid: for its one factor (a FeatSimConfig field, e.g.
    ``center_shift``), each named cell again with the factor at ``value``, named ``<cell>+<factor>`` (the same
    slides, labels and centres as the cell: only the factor differs), at the section's generator seeds, SSL seeds,
    pool and methods. An empty grid (no cell) when the design has no such section."""
    section = design.get("sensitivity") or {}
    if len(section) > 1:
        raise refused("sensitivity factors", sorted(section), "one factor",
                      "Give the design's sensitivity section one factor (run another as another design).")
    if not section:
        return {"cells": [], "generator_seeds": [], "ssl_seeds": [], "pools": {}, "methods": []}
    (factor, spec), = section.items()
    by_name = {c["name"]: c for c in full["cells"]}
    unknown = sorted(set(spec["cells"]) - set(by_name))
    if unknown:
        raise refused("sensitivity cells", unknown, f"cells of the design: {', '.join(by_name)}",
                      "Fix the design file.")
    cells = [{**by_name[n], "name": f"{n}+{factor}", factor: spec["value"]} for n in spec["cells"]]
    return {"cells": cells, "generator_seeds": list(spec["generator_seeds"]), "ssl_seeds": list(spec["ssl_seeds"]),
            "pools": {c["name"]: [int(spec["pool"])] for c in cells}, "methods": list(spec["methods"])}


def base_cell(name: str) -> str:
    """The cell a sensitivity cell varies (``M1+center_shift`` -> ``M1``); a main cell's own name."""
    return name.split("+", 1)[0]


def expand(grid: dict) -> list[Run]:
    """Every run of ``grid`` (:func:`grid_of`): per cell and generator seed, the oracle, AverageMIL and DeepMIL once;
    the untrained arms and ``gigassl_random16`` at the main pool (the largest) per SSL seed; the pool-curve arms
    (:data:`POOL_CURVE_ARMS`) at every pool of the cell per SSL seed."""
    runs = []
    for cell in grid["cells"]:
        pools = grid["pools"][cell["name"]]
        for g in grid["generator_seeds"]:
            for method in grid["methods"]:
                if method in NO_SSL_SEED:
                    runs.append(Run(cell["name"], cell["mechanism"], g, 0, method, -1))
                    continue
                trains = ARMS[method][2]
                for pool in (pools if method in POOL_CURVE_ARMS else [max(pools)]):
                    for s in grid["ssl_seeds"]:
                        runs.append(Run(cell["name"], cell["mechanism"], g, pool if trains else 0, method, s))
    return runs


# ------------------------------------------------------------------------------------------------ settings
def cohort_config(design: dict, cell: dict, generator_seed: int, n_pool: int, scale: dict | None = None) -> FeatSimConfig:
    """The FeatSimConfig of a cell: the design's ``cohort`` settings, the cell's own, the seed and the pool;
    ``scale`` (smoke runs only) replaces cohort fields."""
    fields = {"n_pool": int(n_pool), **design["cohort"], **{k: v for k, v in cell.items() if k != "name"},
              **(scale or {}), "seed": int(generator_seed)}
    fields["share_range"] = tuple(fields["share_range"])
    return FeatSimConfig(**fields)


def train_config(design: dict, method: str, ssl_seed: int, scale: dict | None = None) -> TrainConfig:
    """The TrainConfig of a Giga-SSL arm: the demo profile's, the design's ``ssl_training``, the arm's T and
    sampling, the SSL seed; ``scale`` (smoke runs only) replaces fields (e.g. steps, batch_size)."""
    settings = dict(design["ssl_training"])
    maps = MapConfig(**{**settings.pop("maps"), "sampling": ARMS[method][1], "neighbourhood": None})
    settings.update(scale or {})
    settings["maps"] = dataclasses.replace(maps, scale=tuple(maps.scale))
    return dataclasses.replace(get_profile("demo").train, **settings, tiles_per_view=ARMS[method][0],
                               seed=int(ssl_seed), device="cpu", checkpoint_every=10 ** 6)


def embed_config(design: dict, method: str, scale: dict | None = None) -> EmbedConfig:
    """R views of T tiles (T the arm's), the design's inference seed; ``scale`` replaces fields (smoke runs)."""
    return EmbedConfig(**{**design["inference"], **(scale or {})}, tiles_per_view=ARMS[method][0], device="cpu")


def deepmil_config(scale: dict | None = None) -> DeepMILConfig:
    """The demo profile's DeepMILConfig (the design's ``deepmil``), fields replaced by ``scale`` (smoke runs)."""
    return dataclasses.replace(get_profile("demo").deepmil, **(scale or {}))


def cell_settings(design: dict, grid: dict, cell: dict, generator_seed: int, scale: dict | None = None) -> dict:
    """Everything the scores of one (cell, generator seed) depend on, as plain values (hashed by :func:`cell_hash`):
    the cohort, each arm's training and inference settings, DeepMIL's, the probe protocol's, the runs."""
    scale = scale or {}
    runs = [r for r in expand(grid) if r.cell == cell["name"] and r.generator_seed == generator_seed]
    arms = sorted({r.method for r in runs} & set(ARMS))
    return {
        "cohort": dataclasses.asdict(cohort_config(design, cell, generator_seed,
                                                   max(grid["pools"][cell["name"]]), scale.get("cohort"))),
        "train": {m: dataclasses.asdict(train_config(design, m, 0, scale.get("train"))) for m in arms},
        "embed": {m: dataclasses.asdict(embed_config(design, m, scale.get("embed"))) for m in arms},
        "deepmil": dataclasses.asdict(deepmil_config(scale.get("deepmil"))),
        "probe": probe_settings(),
        "runs": [dataclasses.asdict(r) for r in runs],
    }


def cell_hash(settings: dict) -> str:
    """sha256 of the JSON of :func:`cell_settings` (keys sorted)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def probe_settings() -> dict:
    """The design's one protocol: TunedLinearProbe's grid (preprocessings, Cs), 3 inner folds, seed 0."""
    from ..config import ProbeConfig

    p = ProbeConfig()
    return {"Cs": list(p.Cs), "preprocessings": list(p.preprocessings), "inner_splits": 3, "seed": 0,
            "max_iter": p.max_iter}


# ------------------------------------------------------------------------------------------------ running
def probe_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """The design's protocol: a TunedLinearProbe fitted on the training slides; its decision function on the test
    slides. Shape: (n_train, D), (n_train,), (n_test, D) -> (n_test,)."""
    from ..evaluation.probe import TunedLinearProbe

    s = probe_settings()
    probe = TunedLinearProbe(Cs=tuple(s["Cs"]), preprocessings=tuple(s["preprocessings"]),
                             inner_splits=s["inner_splits"], max_iter=s["max_iter"], seed=s["seed"])
    return np.asarray(probe.fit(x_train, y_train).decision_function(x_test), float)


def _deepmil_scores(features: Path, table: pd.DataFrame, train: list, test: list, config: DeepMILConfig) -> np.ndarray:
    from ..evaluation.baselines import DeepMILClassifier, load_bags
    from ..evaluation.splits import budget_key, validation_split
    from ..seeding import rng

    bags = load_bags(features, train + test, config.max_tiles, config.seed)
    key = (0, budget_key(1.0))  # as run_deepmil keys its first split at the full budget
    frame = table[table.slide_id.isin(train)].assign(label=lambda t: t.label.astype(int))
    fit_ids, val_ids = validation_split(frame, train, config.val_fraction, rng(config.seed, *key, 1))
    label = dict(zip(frame.slide_id, frame.label))
    clf = DeepMILClassifier(config, key).fit([bags[i] for i in fit_ids], [label[i] for i in fit_ids],
                                             [bags[i] for i in val_ids], [label[i] for i in val_ids])
    proba = clf.predict_proba([bags[i] for i in test])
    return proba[:, [str(c) for c in clf.classes_].index("1")]  # the classifier keeps labels as text


def _embedding(features: Path, work: Path, run: Run, design: dict, ids: list, pool_ids: list,
               train: list, scale: dict) -> np.ndarray:
    """The slide embeddings (len(ids), 512) of a Giga-SSL or untrained arm, by the commands' functions."""
    from ..embed import embed_slides
    from ..train import train as train_ssl, untrained_checkpoint

    folder = work / run_name(run)
    config = train_config(design, run.method, run.ssl_seed, scale.get("train"))
    if ARMS[run.method][2]:
        checkpoint = train_ssl(features, folder, config, slide_ids=train + pool_ids[:run.pool], progress=False,
                               overwrite=True)
    else:
        checkpoint = untrained_checkpoint(features, folder, config, overwrite=True)
    out = embed_slides(features, checkpoint, folder / "embeddings.h5", embed_config(design, run.method,
                                                                                     scale.get("embed")),
                       progress=False, slide_ids=ids)
    return _rows(out, ids)


def representation_reading(x: np.ndarray, mean: np.ndarray, statistic: np.ndarray, n_train: int) -> dict:
    """What one run's slide embeddings hold, read without the task's labels: ``cka_mean`` (linear CKA with the
    mean of the tile features, AverageMIL's embedding: 1 when the embedding is a rotation and scaling of the mean),
    ``effective_rank`` (RankMe) and ``statistic_r2`` (the R^2 on the test slides of a ridge regression of the
    cohort's oracle statistic, the quantity that made the label, fitted on the training slides; the ridge penalty by
    generalised cross-validation on them: how much of the mechanism's statistic the embedding carries linearly; it
    uses the simulation's ground truth, which a real cohort does not have).
    Shape: x (S, D), mean (S, F), statistic (S,), the first ``n_train`` rows the training slides."""
    from sklearn.linear_model import RidgeCV
    from sklearn.metrics import r2_score
    from sklearn.preprocessing import StandardScaler

    from ..evaluation.diagnostics import effective_rank, linear_cka

    x = np.asarray(x, np.float64)
    scaler = StandardScaler().fit(x[:n_train])
    ridge = RidgeCV(alphas=np.logspace(-3, 4, 15)).fit(scaler.transform(x[:n_train]), statistic[:n_train])
    return {"cka_mean": linear_cka(x, mean), "effective_rank": effective_rank(x),
            "statistic_r2": float(r2_score(statistic[n_train:], ridge.predict(scaler.transform(x[n_train:]))))}


READINGS = ["cell", "mechanism", "generator_seed", "pool", "method", "ssl_seed", "cka_mean", "effective_rank",
            "statistic_r2"]


def _kept_embedding(features: Path, work: Path, run: Run, ids: list) -> np.ndarray | None:
    """The slide embeddings (len(ids), D) of a finished run, when they can be had without running it again:
    AverageMIL's from the features, an arm's from the embeddings file its folder keeps until the cell ends; None
    otherwise (the oracle, DeepMIL, an arm whose folder is gone)."""
    from ..evaluation.baselines import average_embeddings

    if run.method == "averagemil":
        return average_embeddings(features, ids)[1]
    path = work / run_name(run) / "embeddings.h5"
    return _rows(path, ids) if run.method in ARMS and path.is_file() else None


def _rows(path: Path, ids: list) -> np.ndarray:
    """The rows of embeddings file ``path`` in the order of ``ids``. Shape: -> (len(ids), D)."""
    from ..io import read_embeddings

    got_ids, x, _ = read_embeddings(path)
    order = {s: i for i, s in enumerate(got_ids)}
    return np.asarray(x)[[order[s] for s in ids]]


def run_cell(design: dict, grid: dict, cell: dict, generator_seed: int, work: str | Path,
             scale: dict | None = None, keep: bool = False, progress=None,
             readings: str | Path | None = None) -> pd.DataFrame:
    """The scores (:data:`COLUMNS`) of every run of one (cell, generator seed): one row per run and test slide.
    ``work``: the cohort, the trainings and each finished run's scores (``work/runs/``: a call on the same ``work``
    after an interruption keeps them and starts at the first unfinished run; the caller names ``work`` after the
    settings' hash); removed at the end unless ``keep``. ``progress``: called with one line per run (the run, its
    seconds, how many of the cell's runs are done; kept runs are counted, not timed), or None. ``readings``: a CSV
    path that receives :func:`representation_reading` of every run with an embedding (:data:`READINGS`; a run
    finished before readings were recorded has none)."""
    import json
    import time

    from ..cohorts.featsim import simulate
    from ..evaluation.baselines import average_embeddings

    scale = scale or {}
    work = Path(work)
    runs = [r for r in expand(grid) if r.cell == cell["name"] and r.generator_seed == generator_seed]
    config = cohort_config(design, cell, generator_seed, max(grid["pools"][cell["name"]]), scale.get("cohort"))
    labels = simulate(work / "cohort", config, progress=False)
    features = labels.parent / "features_featsim"
    table = pd.read_csv(labels, dtype={"slide_id": str, "case_id": str})
    train = table.slide_id[table.split == "train"].tolist()
    test = table.slide_id[table.split == "test"].tolist()
    pool_ids = table.slide_id[table.split == "pool"].tolist()
    y = dict(zip(table.slide_id, table.true_label.astype(int)))
    y_train, y_test = np.array([y[s] for s in train]), np.array([y[s] for s in test])
    done = work / "runs"  # each finished run's scores: a cell stopped midway resumes at its next run
    done.mkdir(parents=True, exist_ok=True)
    rows, mean = [], None
    statistic = table.set_index("slide_id").loc[train + test, "oracle"].to_numpy(float)

    def read(run: Run, x: np.ndarray, stem: str) -> None:
        nonlocal mean
        mean = average_embeddings(features, train + test)[1] if mean is None else mean
        reading = {**dataclasses.asdict(run), **representation_reading(x, mean, statistic, len(train))}
        (done / f"{stem}.reading.json").write_text(json.dumps(reading))

    for k, run in enumerate(runs, 1):
        finished = done / f"{run_name(run)}.csv"
        if finished.exists():
            rows.append(pd.read_csv(finished, dtype={"slide_id": str}))
            if readings is not None and not (done / f"{finished.stem}.reading.json").exists():
                kept = _kept_embedding(features, work, run, train + test)  # finished before readings were kept
                if kept is not None:
                    read(run, kept, finished.stem)
            continue
        start = time.monotonic()
        if run.method == "deepmil":
            scores = _deepmil_scores(features, table, train, test, deepmil_config(scale.get("deepmil")))
        else:
            if run.method == "oracle":
                x = statistic[:, None]
            elif run.method == "averagemil":
                x = mean = average_embeddings(features, train + test)[1] if mean is None else mean
            else:
                x = _embedding(features, work, run, design, train + test, pool_ids, train, scale)
            scores = probe_scores(x[:len(train)], y_train, x[len(train):])
            if readings is not None and run.method != "oracle":
                read(run, x, finished.stem)
        rows.append(pd.DataFrame({**dataclasses.asdict(run), "slide_id": test, "label": y_test, "score": scores}))
        write_csv_atomic(rows[-1], finished)
        if progress:
            progress(f"  {cell['name']}_g{generator_seed}: {run.method}, pool {run.pool}, SSL seed {run.ssl_seed}: "
                     f"{time.monotonic() - start:.0f} s ({k} of {len(runs)} runs done)")
    if readings is not None:
        found = [json.loads(f.read_text()) for f in sorted(done.glob("*.reading.json"))]
        write_csv_atomic(pd.DataFrame(found, columns=READINGS), readings)
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return pd.concat(rows, ignore_index=True)[COLUMNS]


def read_readings(out_dir: str | Path, design_path: str | Path = DESIGN, grid: str = "book") -> pd.DataFrame:
    """Every finished unit's :func:`representation_reading` rows (:data:`READINGS`) of the grid ``grid`` in
    ``out_dir/cells`` (a unit without a readings file adds none)."""
    chosen = grid_of(read_design(design_path)[0], grid)
    files = [Path(out_dir) / "cells" / f"{c['name']}_g{g}_readings.csv" for c, g in units(chosen)]
    frames = [pd.read_csv(f) for f in files if f.is_file()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=READINGS)


def units(grid: dict) -> list[tuple[dict, int]]:
    """The (cell, generator seed) pairs of ``grid`` in the order they run: generator seed first, so that a grid
    stopped partway holds every cell at its first seeds rather than some cells at every seed."""
    return [(cell, g) for g in grid["generator_seeds"] for cell in grid["cells"]]


def run_study(out_dir: str | Path, design_path: str | Path = DESIGN, grid: str = "book", scale: dict | None = None,
              progress=print, shard: tuple[int, int] | None = None, run: bool = True,
              stamp: dict | None = None) -> pd.DataFrame:
    """Run every (cell, generator seed) of the grid ``grid`` of the design file into ``out_dir/cells/``, skipping
    those whose file exists with the hash of their current settings (:func:`cell_hash`); returns all the scores.
    ``scale``: {"cohort" | "train" | "embed" | "deepmil": field changes} for smoke runs only (recorded in the
    hash). ``progress``: called with one line per cell (None: silent). ``shard``: (K, N) runs only the units
    i with i % N == K (:func:`units`; N processes on one ``out_dir`` share the grid without overlap) and returns
    the scores of every finished unit. ``run``: False runs nothing and returns the finished units' scores.
    ``stamp``: values written into each finished cell's record beside its hash (the benchmark's commit and machine:
    a grid run over several sessions says which commit ran each unit)."""
    import time

    design, _ = read_design(design_path)
    chosen = grid_of(design, grid)
    cells = Path(out_dir) / "cells"
    cells.mkdir(parents=True, exist_ok=True)
    frames = []
    for i, (cell, g) in enumerate(units(chosen)):
        name = f"{cell['name']}_g{g}"
        digest = cell_hash(cell_settings(design, chosen, cell, g, scale))
        scores, record = cells / f"{name}.csv", cells / f"{name}.json"
        if scores.exists() and record.exists() and json.loads(record.read_text()).get("design_hash") == digest:
            frames.append(pd.read_csv(scores, dtype={"slide_id": str}))
            if progress and run and (shard is None or i % shard[1] == shard[0]):
                progress(f"{name}: done before (same settings), kept")
            continue
        if not run or (shard is not None and i % shard[1] != shard[0]):
            continue
        start, work = time.monotonic(), Path(out_dir) / "work" / f"{name}_{digest[:12]}"
        resumed = any((work / "runs").glob("*.csv"))  # then "seconds" is this call's, not the whole cell's
        frame = run_cell(design, chosen, cell, g, work, scale, progress=progress,
                         readings=cells / f"{name}_readings.csv")
        write_csv_atomic(frame, scores)
        record.write_text(json.dumps({"design_hash": digest, "seconds": time.monotonic() - start,
                                      "resumed": resumed, **(stamp or {})}, indent=1))
        frames.append(frame)
        if progress:
            progress(f"{name}: {time.monotonic() - start:.0f} s")
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS)
