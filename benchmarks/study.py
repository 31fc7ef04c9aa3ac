"""Benchmark: the full grid of the study of issue #24 (studies/mechanisms.yml: 6 cells x 3 generator seeds x 2 SSL
seeds, the pool curves of M1 and M3, every method), through gigassl.book.study, and its analysis.

About 156 Giga-SSL trainings of 600 steps: tens of CPU-hours on the 2-core reference machine (a GPU, or many
cores with ``--jobs``-free patience). It resumes: a (cell, generator seed) whose scores exist with the hash of its
current settings is kept, so it can be stopped and started again.

Usage: ``python benchmarks/study.py --out /tmp/study`` writes ``OUT/cells/*.csv`` (the scores), then
``benchmarks/results/study.csv`` (the AUC table: cell, pool, method, auc, low, high, seed_sd, n_runs),
``study_pairs.csv`` (the comparisons, Holm across all), ``study_readings.csv`` (what each run's embedding
holds, read without labels: :func:`gigassl.book.study.representation_reading`), ``study_sensitivity.csv`` and
``study_sensitivity_pairs.csv`` (the design's sensitivity: the nuisance cells beside the same runs without the
nuisance, their own Holm family; :func:`gigassl.book.study_analysis.factor_effects`) and ``study.json`` (commit,
machine, the design's sha256);
prints one line per cell and ``cells: N``. ``--dry-run``: one tiny cell (M1, two methods, a few slides) and its
sensitivity cell (M1 with a centre shift), results written into ``--out`` only; the test suite runs it.

Two processes on a 2-core machine: ``--shard 0/2`` and ``--shard 1/2`` on the same ``--out`` (one thread each) run
disjoint halves of the (cell, generator seed) units; each writes the results only when every unit is finished.
``--analyse``: run nothing; write the tables of the units finished so far into ``--out`` (``study.json`` lists
them and says ``complete: false``); only a whole grid's tables go to ``benchmarks/results``, which the book reads.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from gigassl.bank import parse_shard
from gigassl.book import study, study_analysis

from _cohort import dry_run_option, machine

ROOT = Path(__file__).resolve().parents[1]
TINY = {"cohort": {"n_train": 16, "n_test": 16, "tiles_per_slide": 48, "focal_tiles": 4},
        "train": {"steps": 2, "batch_size": 8}, "embed": {"views": 4}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="work folder (the cells' scores); default: a temporary one")
    parser.add_argument("--shard", default=None, help="K/N: run only the K-th of N disjoint shares of the units")
    parser.add_argument("--analyse", action="store_true", help="run nothing; analyse the units finished so far")
    dry_run_option(parser)
    args = parser.parse_args(argv)
    shard = parse_shard(args.shard)
    out = Path(args.out or tempfile.mkdtemp(prefix="study_"))
    print(f"machine: {machine()}")
    design_path = ROOT / study.DESIGN
    design, digest = study.read_design(design_path)
    start = time.monotonic()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    main_grid = "book" if args.dry_run else "full"
    if args.dry_run:
        import yaml

        design["book_grid"] = {"cells": ["M1"], "generator_seeds": [0], "ssl_seeds": [0], "pools": {"M1": [0]},
                               "methods": ["oracle", "gigassl"]}
        design["sensitivity"] = {"center_shift": {"cells": ["M1"], "value": 0.5, "generator_seeds": [0],
                                                  "ssl_seeds": [0], "pool": 0, "methods": ["oracle", "gigassl"]}}
        out.mkdir(parents=True, exist_ok=True)
        design_path = out / "design.yml"
        design_path.write_text(yaml.safe_dump(design))
        scale, shard, results = TINY, None, out
    else:
        scale, results = None, ROOT / "benchmarks" / "results"
    stamp = {"commit": commit, "machine": machine()}
    # the main grid's units, then the sensitivity's (the design's nuisance cells): one shard takes the second
    # while the other finishes the first
    scores, varied = (study.run_study(out, design_path, grid, scale=scale, shard=shard, run=not args.analyse,
                                      stamp=stamp) for grid in (main_grid, "sensitivity"))
    expected = {f"{c['name']}_g{g}" for grid in (main_grid, "sensitivity")
                for c, g in study.units(study.grid_of(design, grid))}
    finished = sorted({f"{c}_g{g}" for frame in (scores, varied) for c, g in zip(frame.cell, frame.generator_seed)})
    complete = set(finished) == expected
    if not complete and not args.analyse:
        print(f"units finished: {len(finished)} of {len(expected)}; results written when all are "
              "(or now with --analyse)")
        print(f"seconds: {time.monotonic() - start:.1f}")
        return 0
    if scores.empty:
        print("no unit finished yet: nothing to analyse")
        return 1
    if not complete:
        results = out  # a partial grid's tables stay in the work folder: the book reads only a whole grid's
    table, draws = study_analysis.bootstrap_aucs(scores)
    pairs = study_analysis.comparisons(table, draws, seeds=study_analysis.seed_points(scores))
    results.mkdir(parents=True, exist_ok=True)
    table.to_csv(results / "study.csv", index=False)
    pairs.to_csv(results / "study_pairs.csv", index=False)
    study.read_readings(out, design_path, main_grid).to_csv(results / "study_readings.csv", index=False)
    done = set(zip(scores.cell, scores.generator_seed))  # a varied unit is analysed once its base unit is done
    varied = varied[[(study.base_cell(c), g) in done for c, g in zip(varied.cell, varied.generator_seed)]]
    if len(varied):
        shifted, effects = study_analysis.factor_effects(scores, varied)
        shifted.to_csv(results / "study_sensitivity.csv", index=False)
        effects.to_csv(results / "study_sensitivity_pairs.csv", index=False)
    units = {}
    for u in finished:  # which commit and machine ran each unit (a grid may span sessions)
        record = json.loads((out / "cells" / f"{u}.json").read_text())
        units[u] = {k: record.get(k) for k in ("commit", "machine", "seconds", "resumed")}
    (results / "study.json").write_text(json.dumps({"commit": commit, "machine": machine(), "design_sha256": digest,
                                                   "dry_run": bool(args.dry_run), "complete": complete,
                                                   "units": units}, indent=1))
    print(table.to_string(index=False))
    if len(varied):
        print(effects.to_string(index=False))
    print(f"cells: {table.cell.nunique()}")
    print(f"seconds: {time.monotonic() - start:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
