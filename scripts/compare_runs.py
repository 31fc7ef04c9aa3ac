"""Compare every CSV table of two runs, column by column: does a change move the book's numbers?

    python scripts/compare_runs.py BEFORE_DIR AFTER_DIR

BEFORE_DIR and AFTER_DIR are two folders of the same layout (two clones' ``figures/``, or their ``runs/<profile>/``).
Timing and memory columns (their names say seconds, cpu, wall, memory, peak, ...) and the tables of the code's size
and of the resources are left out: they move with the machine's load, not with the method. A float is compared
exactly (a refactor that keeps the arithmetic keeps every bit on the same machine and thread count); the report names
each table that differs, its columns and the largest difference. Exit status: 0 when every table is identical,
1 otherwise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TIMING = ("seconds", "cpu", "wall", "memory", "peak", "time_", "per_s", "_ms", "elapsed", "throughput")
SKIPPED_TABLES = ("code_", "resources", "speed", "runner")


def compare_tables(before: pd.DataFrame, after: pd.DataFrame) -> list[str]:
    """What differs between two tables, one line per column (none: identical, timing columns aside)."""
    problems = [] if len(before) == len(after) else [f"rows {len(before)} -> {len(after)}"]
    for column in before.columns:
        if any(word in column.lower() for word in TIMING):
            continue
        if column not in after.columns:
            problems.append(f"{column}: missing after")
            continue
        x, y = before[column], after[column]
        if len(x) != len(y):
            continue
        if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
            a, b = x.to_numpy(float), y.to_numpy(float)
            if not np.array_equal(a, b, equal_nan=True):
                problems.append(f"{column}: max |difference| {np.nanmax(np.abs(a - b)):.3g}")
        elif not x.astype(str).equals(y.astype(str)):
            changed = x.astype(str) != y.astype(str)
            problems.append(f"{column}: {int(changed.sum())} values differ, e.g. {x.astype(str)[changed].iloc[0]!r} "
                            f"-> {y.astype(str)[changed].iloc[0]!r}")
    return problems


def compare_runs(before: Path, after: Path) -> tuple[int, list[str]]:
    """(number of tables compared, report lines of the tables that differ or are missing after)."""
    compared, report = 0, []
    for path in sorted(before.rglob("*.csv")):
        relative = path.relative_to(before)
        if any(word in str(relative) for word in SKIPPED_TABLES):
            continue
        if not (after / relative).exists():
            report.append(f"{relative}: missing after")
            continue
        try:
            problems = compare_tables(pd.read_csv(path), pd.read_csv(after / relative))
        except pd.errors.EmptyDataError:
            continue
        compared += 1
        if problems:
            report.append(f"{relative}: " + "; ".join(problems))
    return compared, report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("before", type=Path)
    parser.add_argument("after", type=Path)
    args = parser.parse_args(argv)
    for folder in (args.before, args.after):
        if not folder.is_dir():
            parser.error(f"{folder} is not a folder: give two run folders (e.g. figures/ of two clones).")
    compared, report = compare_runs(args.before, args.after)
    print(f"{compared} tables compared, {len(report)} differ or are missing after")
    print("\n".join(report))
    return 1 if report else 0


if __name__ == "__main__":
    sys.exit(main())
