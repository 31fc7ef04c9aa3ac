"""Benchmark: the full grid of the study of issue #24 (studies/mechanisms.yml: 6 cells x 3 generator seeds x 2 SSL
seeds, the pool curves of M1 and M3, every method), through gigassl.book.study, and its analysis.

About 156 Giga-SSL trainings of 600 steps: tens of CPU-hours on the 2-core reference machine (a GPU, or many
cores with ``--jobs``-free patience). It resumes: a (cell, generator seed) whose scores exist with the hash of its
current settings is kept, so it can be stopped and started again.

Usage: ``python benchmarks/study.py --out /tmp/study`` writes ``OUT/cells/*.csv`` (the scores), then
``benchmarks/results/study.csv`` (the AUC table: cell, pool, method, auc, low, high, seed_sd, n_runs),
``study_pairs.csv`` (the comparisons, Holm across all) and ``study.json`` (commit, machine, the design's sha256);
prints one line per cell and ``cells: N``. ``--dry-run``: one tiny cell (M1, two methods, a few slides), results
written into ``--out`` only; the test suite runs it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from gigassl.book import study, study_analysis

from _cohort import dry_run_option, machine

ROOT = Path(__file__).resolve().parents[1]
TINY = {"cohort": {"n_train": 16, "n_test": 16, "tiles_per_slide": 48, "focal_tiles": 4},
        "train": {"steps": 2, "batch_size": 8}, "embed": {"views": 4}}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="work folder (the cells' scores); default: a temporary one")
    dry_run_option(parser)
    args = parser.parse_args(argv)
    out = Path(args.out or tempfile.mkdtemp(prefix="study_"))
    print(f"machine: {machine()}")
    design_path = ROOT / study.DESIGN
    _, digest = study.read_design(design_path)
    start = time.monotonic()
    if args.dry_run:
        import yaml

        design, _ = study.read_design(design_path)
        design["book_grid"] = {"cells": ["M1"], "generator_seeds": [0], "ssl_seeds": [0], "pools": {"M1": [0]},
                               "methods": ["oracle", "gigassl"]}
        out.mkdir(parents=True, exist_ok=True)
        design_path = out / "design.yml"
        design_path.write_text(yaml.safe_dump(design))
        scores = study.run_study(out, design_path, "book", scale=TINY)
        results = out
    else:
        scores = study.run_study(out, design_path, "full")
        results = ROOT / "benchmarks" / "results"
    table, draws = study_analysis.bootstrap_aucs(scores)
    pairs = study_analysis.comparisons(table, draws)
    results.mkdir(parents=True, exist_ok=True)
    table.to_csv(results / "study.csv", index=False)
    pairs.to_csv(results / "study_pairs.csv", index=False)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    (results / "study.json").write_text(json.dumps({"commit": commit, "machine": machine(), "design_sha256": digest,
                                                   "dry_run": bool(args.dry_run)}, indent=1))
    print(table.to_string(index=False))
    print(f"cells: {table.cell.nunique()}")
    print(f"seconds: {time.monotonic() - start:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
