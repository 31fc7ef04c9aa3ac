"""Benchmark: the main comparison (Giga-SSL against AverageMIL) on several synthetic cohorts.

For each cohort seed: the demo cohort with that seed (labelled slides and unlabelled pool), tiling, MoCo on the
labelled slides, the plain and the shared augmented bank, the main Giga-SSL run (the ``ssl_full`` execution of
``experiments.yml``: labelled + pool, 1800 steps), R-view inference, and both probe protocols at 100% and 25% of the
labels. Seed s sets every seed of that path (cohort, MoCo, bank draws, SSL, views: :func:`seeded_profile`). It
reports every AUC's mean and std over the splits of its cohort, the main comparison's corrected standard error
(what the results page's split interval holds), and the spread of the same numbers from one cohort to another (the
variation a second demo run with another seed would show), next to each other; and the 3-seed reversal check
(``seeds_reversals.csv``: each seed's verdict with the split interval alone and widened by the cohort variance of
the other seeds).

The demo run of ``make book`` is seed 0: ``--reuse runs/demo`` takes its embeddings and bank instead of
recomputing them (they are identical: every random choice is keyed).

Usage: ``python benchmarks/seeds.py --out /tmp/seeds --seeds 0 1 2 [--reuse runs/demo]``; writes
``benchmarks/results/seeds.csv`` (one row per seed, protocol, method, task and budget; the rows of seeds not run
this time are kept) and ``seeds.json`` beside it (the commit and the settings digest the results page checks) and prints the summary over all the seeds it holds. ``--dry-run``: one seed of the smoke
profile (its own training length), results written into ``--out``; the test suite runs it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from gigassl.evaluation.baselines import average_embeddings
from gigassl.bank import build_bank
from gigassl.evaluation.compare import corrected_t, per_split, split_ratio, t_interval
from gigassl.config import get_profile
from gigassl.embed import embed_slides
from gigassl.manifest import labelled_ids, task_columns
from gigassl.moco import pretrain_tiles
from gigassl.evaluation.metrics import summarize
from gigassl.book.paper import reversals, seed_settings
from gigassl.evaluation.protocol import probe_runs
from gigassl.cohorts.synth import synthesize
from gigassl.tiling import tile_cohort
from gigassl.train import train

from _cohort import dry_run_option, machine

MAIN_STEPS = 1800  # the ssl_full execution of experiments.yml (demo)
SEEDED = ("synth", "moco", "bank", "train", "embed")  # the sections whose seed a cohort seed sets


def seeded_profile(profile, seed: int):
    """The profile with every seed of the main comparison's path set to ``seed``: the cohort, MoCo, the bank's
    draws, the SSL training and the inference views (the probe's splits keep theirs). Seed 0 is the profile itself
    (the ``make book`` run), so the spread over seeds holds the cohort and the training's randomness together."""
    return dataclasses.replace(profile, **{name: dataclasses.replace(getattr(profile, name), seed=seed)
                                           for name in SEEDED})


def difference_rows(splits: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The main comparison of one cohort: Giga-SSL minus AverageMIL per protocol, task and budget, its mean and std
    over splits, and the corrected resampled t statistic (Nadeau & Bengio) the results page uses: se, df and the
    split-only verdict (above 0, below 0, undecided at 95%)."""
    rows = []
    for (protocol, task, budget), part in splits.groupby(["protocol", "task", "budget"]):
        pairs = per_split(part, "gigassl", "averagemil", by=())
        mean, se, df = corrected_t(pairs["difference"], split_ratio(part))
        low, high = t_interval(mean, se, df)
        verdict = "above 0" if low > 0 else "below 0" if high < 0 else "undecided"
        rows.append({"seed": seed, "protocol": protocol, "method": "gigassl - averagemil", "task": task,
                     "budget": budget, "auc_mean": mean, "auc_std": float(pairs["difference"].std(ddof=1)),
                     "se": se, "df": df, "verdict": verdict})
    return pd.DataFrame(rows)


def run_seed(seed: int, folder: Path, reuse: Path | None, profile_name: str = "demo",
             steps: int | None = MAIN_STEPS) -> tuple[Path, Path, pd.DataFrame]:
    """(embeddings, bank, manifest frame) of the main run on the cohort of ``seed`` (``steps``: None keeps the
    profile's training length)."""
    profile = seeded_profile(get_profile(profile_name), seed)
    if reuse is not None and seed == get_profile(profile_name).synth.seed:
        manifest = pd.read_csv(reuse / "cohort" / "manifest.csv", dtype={"slide_id": str, "case_id": str})
        return reuse / "ssl_full" / "embeddings.h5", reuse / "bank_moco_shared", manifest
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = synthesize(folder / "cohort", profile.synth, progress=False)
    coords = folder / "coords"
    tile_cohort(manifest_path, coords, profile.tile, progress=False)
    frame = pd.read_csv(manifest_path, dtype={"slide_id": str, "case_id": str})
    labelled = labelled_ids(frame)
    moco = pretrain_tiles(manifest_path, coords, folder / "moco", profile.moco, profile.augment,
                          device=profile.encoder.device, progress=False, slide_ids=labelled)
    encoder = dataclasses.replace(profile.encoder, weights=str(moco))
    plain = dataclasses.replace(profile.bank, augmentations=0)
    build_bank(manifest_path, coords, folder / "plain", plain, encoder, profile.augment, progress=False,
               slide_ids=labelled)
    bank = folder / "bank"
    build_bank(manifest_path, coords, bank, profile.bank, encoder, profile.augment, progress=False,
               plain_from=folder / "plain")
    config = dataclasses.replace(profile.train, steps=steps)
    checkpoint = train(bank, folder / "ssl", config, encoder_weights=str(moco), progress=False)
    embeddings = embed_slides(bank, checkpoint, folder / "ssl" / "embeddings.h5", profile.embed, progress=False,
                              slide_ids=labelled)
    return embeddings, bank, frame


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="work folder (one sub-folder per seed)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--reuse", help="the demo run folder (runs/demo) to take seed 0 from")
    parser.add_argument("--results", default=str(Path(__file__).parent / "results" / "seeds.csv"))
    dry_run_option(parser)
    args = parser.parse_args(argv)
    profile_name, steps = ("smoke", None) if args.dry_run else ("demo", MAIN_STEPS)
    if args.dry_run:
        args.seeds, args.reuse, args.results = [0], None, str(Path(args.out) / "seeds.csv")
    profile = get_profile(profile_name)
    print(f"machine: {machine()}")
    rows, pairs = [], []
    for seed in args.seeds:
        start = time.perf_counter()
        embeddings, bank, frame = run_seed(seed, Path(args.out) / f"seed{seed}", args.reuse and Path(args.reuse),
                                           profile_name, steps)
        tasks = ["nsclc_like"] if args.dry_run else task_columns(frame)  # smoke: too few cases for the others
        average = average_embeddings(bank, labelled_ids(frame))
        splits = probe_runs({"gigassl": (embeddings, "l2"), "averagemil": (average, "standard")}, frame, tasks,
                            budgets=profile.probe.budgets, train_sizes=(), config=profile.probe)
        summary = summarize(splits, n_bootstrap=0)
        rows.append(summary.assign(seed=seed)[["seed", "protocol", "method", "task", "budget", "auc_mean",
                                               "auc_std"]])
        pairs.append(difference_rows(splits, seed))
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s")
    per_seed = pd.concat(rows, ignore_index=True)
    table = pd.concat([per_seed, pd.concat(pairs, ignore_index=True)], ignore_index=True)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    record = results.with_suffix(".json")
    same = record.is_file() and json.loads(record.read_text()).get("settings") == seed_settings(profile_name, steps)
    if results.is_file() and not same:
        print(f"{results} was recorded with other settings (or without a record): its rows are replaced")
    if results.is_file() and same:  # keep the rows of the seeds not run this time, recorded with the same settings
        before = pd.read_csv(results, dtype={"budget": str})
        table = pd.concat([before[~before["seed"].isin(args.seeds)], table], ignore_index=True).sort_values(
            ["seed", "protocol", "method", "task", "budget"], kind="stable")
    table.to_csv(results, index=False)
    # the record the results page compares with its own run's settings (gigassl.book.paper.seed_spread)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip() or "unknown"
    results.with_suffix(".json").write_text(json.dumps(
        {"commit": commit, "settings": seed_settings(profile_name, steps), "machine": machine()}, indent=1) + "\n")
    spread = table.groupby(["protocol", "method", "task", "budget"]).agg(
        seeds=("seed", "nunique"), mean=("auc_mean", "mean"), std_over_seeds=("auc_mean", "std"),
        std_over_splits=("auc_std", "mean")).reset_index()
    with pd.option_context("display.width", 200, "display.max_rows", 200):
        print(spread.round(3).to_string(index=False))
        if table["seed"].nunique() > 1 and "se" in table:
            check = reversals(table)
            check.to_csv(results.with_name("seeds_reversals.csv"), index=False)
            print(check.pivot_table(index=["protocol", "task", "budget"], columns="seed",
                                    values=["splits_only", "with_cohort"], aggfunc="first").to_string())
            for column in ("splits_only", "with_cohort"):
                n = int(check.drop_duplicates(["protocol", "task", "budget"])[f"{column}_reverses"].sum())
                print(f"reversals ({column}): {n} of {check.groupby(['protocol', 'task', 'budget']).ngroups}")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(2)
    raise SystemExit(main())
