"""Benchmark: the main comparison (Giga-SSL against AverageMIL) on several synthetic cohorts.

For each cohort seed: the demo cohort with that seed (labelled slides and unlabelled pool), tiling, MoCo on the
labelled slides, the plain and the shared augmented bank, the main Giga-SSL run (the ``ssl_full`` execution of
``experiments.yml``: labelled + pool, 1800 steps), R-view inference, and both probe protocols at 100% and 25% of the
labels. It reports every AUC's mean and std over the splits of its cohort, and the spread of the same number from
one cohort to another (the variation a second demo run with another seed would show), next to each other.

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

import pandas as pd
import torch

from gigassl.evaluation.baselines import average_embeddings
from gigassl.bank import build_bank
from gigassl.evaluation.compare import paired
from gigassl.config import get_profile
from gigassl.embed import embed_slides
from gigassl.manifest import labelled_ids, task_columns
from gigassl.moco import pretrain_tiles
from gigassl.evaluation.metrics import summarize
from gigassl.book.paper import seed_settings
from gigassl.evaluation.protocol import probe_runs
from gigassl.cohorts.synth import synthesize
from gigassl.tiling import tile_cohort
from gigassl.train import train

from _cohort import dry_run_option, machine

MAIN_STEPS = 1800  # the ssl_full execution of experiments.yml (demo)


def run_seed(seed: int, folder: Path, reuse: Path | None, profile_name: str = "demo",
             steps: int | None = MAIN_STEPS) -> tuple[Path, Path, pd.DataFrame]:
    """(embeddings, bank, manifest frame) of the main run on the cohort of ``seed`` (``steps``: None keeps the
    profile's training length)."""
    profile = get_profile(profile_name)
    if reuse is not None and seed == profile.synth.seed:
        manifest = pd.read_csv(reuse / "cohort" / "manifest.csv", dtype={"slide_id": str, "case_id": str})
        return reuse / "ssl_full" / "embeddings.h5", reuse / "bank_moco_shared", manifest
    folder.mkdir(parents=True, exist_ok=True)
    manifest_path = synthesize(folder / "cohort", dataclasses.replace(profile.synth, seed=seed), progress=False)
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
        pairs.append(paired(splits, "gigassl", "averagemil", n_bootstrap=profile.probe.n_bootstrap,
                            seed=profile.probe.seed).assign(seed=seed))
        print(f"seed {seed}: {time.perf_counter() - start:.0f} s")
    per_seed = pd.concat(rows, ignore_index=True)
    differences = pd.concat(pairs, ignore_index=True)
    diff_rows = differences.rename(columns={"difference": "auc_mean", "difference_std": "auc_std"}).assign(
        method="gigassl - averagemil")[["seed", "protocol", "method", "task", "budget", "auc_mean", "auc_std"]]
    table = pd.concat([per_seed, diff_rows], ignore_index=True)
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
        verdicts = differences.pivot_table(index=["protocol", "task", "budget"], columns="seed", values="verdict",
                                           aggfunc="first")
        print(verdicts.to_string())
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(2)
    raise SystemExit(main())
