"""The ``gigassl`` command: parses arguments and calls the stage functions, nothing more.

Every subcommand takes ``--profile smoke|demo|paper`` (default ``demo``) for its defaults; options given on the
command line override the profile's values. Exit status: 0 on success, 1 when a slide or an input failed
(after finishing the others), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys

from .config import PROFILES, get_profile, override
from .errors import GigasslError

EPILOG = "Run `gigassl <command> --help` for a command's options. Docs: README.md and the book (make book)."


def _profile(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="demo", choices=list(PROFILES),
                        help="run profile giving the defaults (default: demo)")


def _tiled_cohort(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--manifest", required=True, help="CSV with slide_id, path[, case_id, center, mpp, ...]")
    parser.add_argument("--coords", required=True, help="folder of tile coordinates (gigassl tile)")
    parser.add_argument("--out", required=True, help="output folder")


def _quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _report(report) -> int:
    print(report.summary())
    return 0 if report.ok else 1


# ------------------------------------------------------------------------------------------------ commands
def cmd_synth(args) -> int:
    from .synth import synthesize

    config = override(get_profile(args.profile).synth, n_slides=args.slides, seed=args.seed, workers=args.workers,
                      pool_slides=args.pool_slides)
    manifest = synthesize(args.out, config, progress=not args.no_progress)
    print(f"wrote {config.n_slides} labelled and {config.pool_slides} unlabelled slides and {manifest}")
    return 0


def cmd_tile(args) -> int:
    from .tiling import tile_cohort

    config = override(get_profile(args.profile).tile, target_mpp=args.target_mpp, tile_px=args.tile_px,
                      min_tissue=args.min_tissue, mpp=args.mpp, force_mpp=args.force_mpp,
                      workers=args.workers)
    return _report(tile_cohort(args.manifest, args.out, config, progress=not args.no_progress))


def cmd_info(args) -> int:
    from .slides import slide_info

    status = 0
    for path in args.slides:
        try:
            info = slide_info(path)
        except GigasslError as err:
            print(f"{path}: {err}", file=sys.stderr)
            status = 1
            continue
        if args.json:
            print(json.dumps(info))
            continue
        print(f"{info['path']}\n  vendor: {info['vendor']}\n  levels: {info['level_count']}")
        for level, (dims, down) in enumerate(zip(info["dimensions"], info["downsamples"])):
            print(f"    level {level}: {dims[0]} x {dims[1]} px, downsample {down:g}")
        print(f"  mpp: {info['mpp']} um/px (from {info['mpp_source']}; openslide.mpp-x/y: {info['mpp_x']} x "
              f"{info['mpp_y']})\n"
              f"  objective power: {info['objective_power']}")
    return status


def cmd_pretrain_tiles(args) -> int:
    from .moco import pretrain_tiles

    profile = get_profile(args.profile)
    config = override(profile.moco, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                      tiles_per_slide=args.tiles_per_slide, seed=args.seed, max_minutes=args.max_minutes,
                      precision=args.precision)
    path = pretrain_tiles(args.manifest, args.coords, args.out, config, profile.augment,
                          device=args.device or profile.encoder.device, workers=args.workers,
                          resume=not args.restart, progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


def cmd_bank(args) -> int:
    from .bank import build_bank, parse_shard

    profile = get_profile(args.profile)
    bank = override(profile.bank, augmentations=args.augmentations, tiles=args.tiles, seed=args.seed,
                    workers=args.workers)
    encoder = override(profile.encoder, name=args.encoder, weights=args.weights, device=args.device,
                       batch_size=args.batch_size, precision=args.precision)
    augment = override(profile.augment, mode=args.mode)
    return _report(build_bank(args.manifest, args.coords, args.out, bank, encoder, augment,
                              shard=parse_shard(args.shard), progress=not args.no_progress))


def _slide_list(path: str | None) -> list[str] | None:
    if path is None:
        return None
    import pandas as pd

    frame = pd.read_csv(path, dtype=str)
    column = "slide_id" if "slide_id" in frame.columns else frame.columns[0]
    return frame[column].dropna().tolist()


def cmd_train(args) -> int:
    from .train import train

    profile = get_profile(args.profile)
    maps = override(profile.train.maps, downsample=_downsample(args.downsample),
                    slide_aug=False if args.no_slide_aug else None,
                    scale=tuple(args.scale) if args.scale else None)
    config = override(profile.train, tiles_per_view=args.tiles_per_view, epochs=args.epochs, steps=args.steps,
                      schedule_epochs=args.schedule_epochs, bn_views=args.bn_views,
                      aggregator_init=args.aggregator_init,
                      batch_size=args.batch_size, base_lr=args.base_lr, aggregator=args.aggregator,
                      backend=args.backend, checkpoint_every=args.checkpoint_every, monitor_every=args.monitor_every,
                      device=args.device, workers=args.workers, seed=args.seed)
    config = dataclasses.replace(config, maps=maps)
    monitor = None
    if args.monitor_labels:
        from .embed import training_monitor
        from .utils import resolve_device

        monitor = training_monitor(args.monitor_labels, args.monitor_task, config.maps, profile.embed.views,
                                   config.tiles_per_view, profile.probe, config.seed, resolve_device(config.device))
    path = train(args.bank, args.out, config, encoder_weights=args.encoder_weights,
                 slide_ids=_slide_list(args.slides), resume=args.resume, monitor=monitor,
                 progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


def _downsample(value: str | None):
    if value is None or value == "tile":
        return value
    return int(value)


def cmd_embed(args) -> int:
    from .embed import embed_slides

    config = override(get_profile(args.profile).embed, views=args.views, tiles_per_view=args.tiles_per_view,
                      device=args.device, seed=args.seed)
    path = embed_slides(args.bank, args.checkpoint, args.out, config, backend=args.backend,
                        progress=not args.no_progress, fmt=args.format)
    print(f"wrote {path}")
    return 0


def cmd_probe(args) -> int:
    from .metrics import summarize
    from .protocol import run_probe

    profile = get_profile(args.profile)
    override(profile.probe, n_splits=args.n_splits)  # options checked before any file is read
    budgets = (args.budget,) if args.budget is not None else (() if args.train_size is not None else (1.0,))
    sizes = (args.train_size,) if args.train_size is not None else ()
    if args.tcga_task:
        from .tcga import run_tcga, run_tcga_baseline

        if args.method == "gigassl":
            if not args.embeddings:
                raise GigasslError("--tcga-task with the gigassl method needs --embeddings (and --ids for a .npy).")
            table = run_tcga(args.embeddings, args.tcga_task, ids_path=args.ids, n_splits=args.n_splits,
                             config=profile.probe, out=args.out)
        else:
            table = run_tcga_baseline(_need_bank(args), args.tcga_task, method=args.method, n_splits=args.n_splits,
                                      config=profile.probe, deepmil=profile.deepmil, out=args.out)
    else:
        if not args.labels or not args.task:
            raise GigasslError("gigassl probe needs --labels CSV and --task COLUMN (or --tcga-task).")
        common = dict(splits=args.splits, n_splits=args.n_splits, budgets=budgets, train_sizes=sizes,
                      allow_case_overlap=args.allow_case_overlap, out=args.out)
        if args.method == "gigassl":
            if not args.embeddings:
                raise GigasslError("--method gigassl needs --embeddings FILE (gigassl embed).")
            table = run_probe(args.embeddings, args.labels, args.task, ids_path=args.ids, config=profile.probe,
                              protocol=args.protocol, **common)
        elif args.method == "averagemil":
            from .baselines import run_averagemil

            table = run_averagemil(_need_bank(args), args.labels, args.task, config=profile.probe,
                                   protocol=args.protocol, **common)
        else:
            from .baselines import run_deepmil

            table = run_deepmil(_need_bank(args), args.labels, args.task, config=profile.deepmil,
                                probe_config=profile.probe, **common)
    summary = summarize(table, n_bootstrap=profile.probe.n_bootstrap, seed=profile.probe.seed)
    columns = ["method", "protocol", "task", "budget", "n_splits", "auc_mean", "auc_std", "ci_low", "ci_high",
               "cpu_seconds"]
    print(summary[columns].to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if args.out:
        print(f"wrote {args.out}")
    return 0


def _need_bank(args) -> str:
    if not args.bank:
        raise GigasslError(f"--method {args.method} needs --bank DIR (the plain tile embeddings of gigassl bank, "
                           "or a folder of TRIDENT/CLAM features).")
    return args.bank


def cmd_run(args) -> int:
    from .runner import run_plan

    records = run_plan(args.profile, root=args.root, only=args.only, force=args.force, plan_file=args.plan,
                       progress=not args.no_progress, jobs=args.jobs)
    ran = [r for r in records if not r["skipped"]]
    print(f"{len(ran)} executed, {len(records) - len(ran)} unchanged (skipped)")
    for record in ran:
        print(f"  {record['name']}: {record['seconds']:.1f} s, peak {record['peak_memory_mb']:.0f} MB")
    return 0


# ------------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gigassl",
        description="Giga-SSL: self-supervised slide embeddings for gigapixel images. Stages: synth -> tile -> "
                    "pretrain-tiles -> bank -> train -> embed -> probe; `run` executes the notebooks of the book.",
        epilog=EPILOG,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("synth", help="write a synthetic cohort of pyramidal TIFF slides and its manifest",
                       description="Write DIR/slides/*.tiff (pyramidal, tiled, JPEG, with MPP) and DIR/manifest.csv "
                                   "(slide_id, path, case_id, center, nsclc_like, rcc_like, brca_like).")
    p.add_argument("--out", required=True, help="output folder")
    _profile(p)
    p.add_argument("--slides", type=int, help="number of slides (default: the profile's)")
    p.add_argument("--pool-slides", type=int, help="unlabelled pool slides for SSL only (default: the profile's)")
    p.add_argument("--seed", type=int, help="random seed (same seed, byte-identical cohort)")
    p.add_argument("--workers", type=int, help="processes rendering slides")
    _quiet(p)
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("tile", help="detect tissue and write tile coordinates for every slide of a manifest",
                       description="Writes OUT/<slide_id>.h5 (TRIDENT-compatible `coords`), OUT/thumbnails/*.png, "
                                   "OUT/failures.csv. Resumes: slides already tiled are skipped.")
    p.add_argument("--manifest", required=True, help="CSV with slide_id, path[, mpp, ...]")
    p.add_argument("--out", required=True, help="output folder")
    _profile(p)
    p.add_argument("--target-mpp", type=float, help="microns per pixel of the tiles (1.0 ~ 10x)")
    p.add_argument("--tile-px", type=int, help="tile edge in pixels at the target MPP")
    p.add_argument("--min-tissue", type=float, help="minimum tissue fraction of a kept tile (0-1)")
    p.add_argument("--mpp", type=float, help="level-0 MPP of the slides that record none (openslide.mpp-x, "
                   "aperio.MPP, TIFF resolution); a manifest `mpp` column wins")
    p.add_argument("--force-mpp", action="store_true", default=None,
                   help="use --mpp for every slide, even those that record an MPP")
    p.add_argument("--workers", type=int, help="processes tiling slides in parallel")
    _quiet(p)
    p.set_defaults(func=cmd_tile)

    p = sub.add_parser("info", help="print what OpenSlide sees in slides: vendor, levels, dimensions, MPP",
                       description="Print vendor, pyramid levels (dimensions, downsamples), MPP and objective power.")
    p.add_argument("slides", nargs="+", help="slide files")
    p.add_argument("--json", action="store_true", help="one JSON object per slide")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("pretrain-tiles", help="MoCo v2 pre-training of the ResNet18 tile embedder",
                       description="Writes OUT/checkpoint.pt (query encoder under module.encoder_q., torchvision "
                                   "names), periodic checkpoint_eNNNN.pt and OUT/log.csv. Resumes from "
                                   "OUT/checkpoint.pt unless --restart.")
    _tiled_cohort(p)
    _profile(p)
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--tiles-per-slide", type=int)
    p.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this wall time")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="autocast of the encoder: auto = bf16 on GPUs and bf16-capable CPUs, else fp32")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto | cuda | mps | cpu")
    p.add_argument("--workers", type=int, help="DataLoader worker processes reading tiles (default: the profile's)")
    p.add_argument("--restart", action="store_true", help="ignore an existing checkpoint")
    _quiet(p)
    p.set_defaults(func=cmd_pretrain_tiles)

    p = sub.add_parser("bank", help="embed augmented tiles of every slide (the augmentation bank)",
                       description="Writes OUT/<slide_id>.h5 with features (A, N, F), coords (A, N, 2), "
                                   "plain_features (M, F), plain_coords (M, 2). Resumes; --shard i/n for scale-out "
                                   "(automatic under torchrun).")
    _tiled_cohort(p)
    _profile(p)
    p.add_argument("--augmentations", type=int, help="A: augmentation draws per slide (0: plain embeddings only)")
    p.add_argument("--tiles", type=int, help="N: tiles per draw, sampled with replacement")
    p.add_argument("--mode", choices=["shared", "independent"], help="one draw for all tiles, or one per tile (NS)")
    p.add_argument("--encoder", help="tile encoder: resnet18 | efficientnet_lite0 | module:factory (your own, "
                   "see gigassl.encoders)")
    p.add_argument("--weights", help="local weights file (torchvision or MoCo for resnet18; a state dict for "
                   "module:factory); default: random init / ImageNet / the factory's own")
    p.add_argument("--device", help="auto | cuda | mps | cpu")
    p.add_argument("--batch-size", type=int, help="tiles per forward pass")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"],
                   help="autocast of the encoder: auto = bf16 on GPUs and bf16-capable CPUs, else fp32")
    p.add_argument("--workers", type=int, help="DataLoader worker processes reading tiles")
    p.add_argument("--seed", type=int)
    p.add_argument("--shard", help="i/n: process slides i, i+n, ... (0-based)")
    _quiet(p)
    p.set_defaults(func=cmd_bank)

    p = sub.add_parser("train", help="train the Giga-SSL aggregator on a bank (SimCLR, NT-Xent)",
                       description="Writes OUT/checkpoint.pt, OUT/checkpoint_eNNNN.pt, OUT/log.csv (loss, collapse, "
                                   "lr, seconds per epoch) and, with --monitor-labels, OUT/monitor.csv. Under "
                                   "`torchrun --nproc_per_node K` it trains with DistributedDataParallel.")
    p.add_argument("--bank", required=True, help="bank folder (gigassl bank), or plain tile features (TRIDENT's "
                   "features_<encoder>/, CLAM's features folder): views then differ by tiles and slide augmentation")
    p.add_argument("--out", required=True)
    _profile(p)
    p.add_argument("--tiles-per-view", type=int, help="T: tiles sampled per view (paper: 5)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--steps", type=int, help="optimizer steps to train for (overrides --epochs)")
    p.add_argument("--schedule-epochs", type=int,
                   help="horizon of the cosine decay (default: the training length; the authors' code: 3000)")
    p.add_argument("--bn-views", choices=["per_view", "joint"],
                   help="BatchNorm statistics per view (two forward passes, the authors') or over both views")
    p.add_argument("--aggregator-init", choices=["tile_embedder", "random"],
                   help="sparse layer4 from the tile embedder's layer4 (the paper) or a random init")
    p.add_argument("--batch-size", type=int, help="slides per global batch (paper: 256)")
    p.add_argument("--base-lr", type=float, help="learning rate for batch 256 (scaled by batch/256; paper: 0.03)")
    p.add_argument("--aggregator", choices=["sparseconv", "attention", "mean"])
    p.add_argument("--backend", choices=["torch", "spconv"], help="sparse convolution backend")
    p.add_argument("--no-slide-aug", action="store_true", help="no slide-level augmentation (Table 3 ablation)")
    p.add_argument("--scale", type=float, nargs=2, metavar=("LOW", "HIGH"),
                   help="per-axis scale range of the slide augmentation (paper 0.5 2; authors' code 0.7 1.3)")
    p.add_argument("--downsample", help="level-0 pixels per sparse-map site (paper: 224), or 'tile'")
    p.add_argument("--encoder-weights", help="tile-encoder checkpoint whose dense layer4 initialises the aggregator")
    p.add_argument("--slides", help="CSV (slide_id column) of the slides to train on; default: the whole bank")
    p.add_argument("--checkpoint-every", type=int)
    p.add_argument("--monitor-labels", help="labels CSV (slide_id, case_id, tasks) for the linear-probe monitor")
    p.add_argument("--monitor-task", action="append", default=[], help="task column to monitor (repeatable)")
    p.add_argument("--monitor-every", type=int, help="run the monitor every k epochs")
    p.add_argument("--device", help="auto | cuda | mps | cpu")
    p.add_argument("--seed", type=int)
    p.add_argument("--workers", type=int, help="DataLoader processes preparing the next steps' views (0: none)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    _quiet(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("embed", help="one embedding per slide: the mean of R views of T plain tiles",
                       description="Writes one HDF5 file with `ids` and `embeddings` (slides, 512) float32, "
                                   "L2-normalised, plus the checkpoint's sha256, R and T (Sec. 4.2).")
    p.add_argument("--bank", required=True, help="bank folder (gigassl bank, or TRIDENT/CLAM features)")
    p.add_argument("--checkpoint", required=True, help="checkpoint of gigassl train")
    p.add_argument("--out", required=True, help="output: .h5, .csv or .parquet file, or a folder (TRIDENT's "
                   "per-slide slide_features layout); slides left out are listed in OUT.failures.csv")
    p.add_argument("--format", choices=["h5", "csv", "parquet", "trident"], help="output format (default: from --out)")
    _profile(p)
    p.add_argument("--views", type=int, help="R: views per slide (paper: 50)")
    p.add_argument("--tiles-per-view", type=int, help="T: tiles per view (as in training; paper: 5)")
    p.add_argument("--backend", choices=["torch", "spconv"], help="override the checkpoint's sparse backend")
    p.add_argument("--device", help="auto | cuda | mps | cpu")
    p.add_argument("--seed", type=int)
    _quiet(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("probe", help="linear probe (or AverageMIL / DeepMIL) over splits: the Table 2 protocol",
                       description="Logistic regression (C=10, balanced) on frozen slide embeddings over splits; "
                                   "ROC AUC per split in a tidy CSV (--out) and a summary (mean, std, bootstrap "
                                   "95% interval). --method averagemil|deepmil --bank DIR runs the baselines.")
    p.add_argument("--embeddings", help="slide embeddings: gigassl embed's .h5 / .csv / .parquet / per-slide "
                   "folder, or a .npy with --ids")
    p.add_argument("--ids", help="slide ids (.npy) of a .npy embedding matrix")
    p.add_argument("--labels", help="labels CSV: slide_id, case_id, task columns (a manifest works)")
    p.add_argument("--task", help="label column")
    p.add_argument("--splits", help="folder of split_0.csv ... (columns train, test); default: generated")
    p.add_argument("--n-splits", type=int, help="number of generated splits (case-grouped, stratified)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--budget", type=float, help="fraction of each training split to use (e.g. 0.25)")
    group.add_argument("--train-size", type=int, help="tiny training sets of exactly N slides")
    p.add_argument("--allow-case-overlap", action="store_true",
                   help="accept splits with a case on both sides (the authors' TCGA splits); recorded in the table")
    p.add_argument("--method", choices=["gigassl", "averagemil", "deepmil"], default="gigassl")
    p.add_argument("--protocol", choices=["paper", "fair"], default="paper",
                   help="paper: C = 10 and the method's preprocessing (l2 for gigassl, standard for averagemil); "
                        "fair: preprocessing and C chosen by cross-validation on each split's training slides")
    p.add_argument("--bank", help="bank folder for --method averagemil|deepmil")
    p.add_argument("--tcga-task", choices=["lung", "brca", "kidney", "mhrd", "thrd", "tnbc"],
                   help="the paper's TCGA protocol with the authors' labels and splits (data/tcga)")
    _profile(p)
    p.add_argument("--out", help="tidy CSV of every split's result")
    p.set_defaults(func=cmd_probe)

    p = sub.add_parser("run", help="execute the notebooks of the run plan (experiments.yml) with papermill",
                       description="Runs every execution of the plan for a profile into book/executed/ and "
                                   "runs/<profile>/, skipping executions whose notebook, parameters, package source "
                                   "and inputs are unchanged. Stops at the first failing notebook (with --jobs, "
                                   "after the running ones finish).")
    _profile(p)
    p.add_argument("--only", action="append", help="run only this execution or notebook (repeatable), and what "
                                                    "it needs when that changed")
    p.add_argument("--force", action="store_true", help="run even executions whose hash is unchanged")
    p.add_argument("--root", default=".", help="project root holding notebooks/, experiments.yml, book/")
    p.add_argument("--plan", help="run plan file (default: ROOT/experiments.yml)")
    p.add_argument("--jobs", "-j", type=int, default=1,
                   help="executions at once, each in its own process with cpu_count // jobs threads (default 1)")
    _quiet(p)
    p.set_defaults(func=cmd_run)
    return parser


def _verbose_everywhere(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """-v/--verbose accepted after the command too (``gigassl bank ... -v``), not only before it."""
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for command in sub.choices.values():
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="log more")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _verbose_everywhere(build_parser())
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        return int(args.func(args) or 0)
    except GigasslError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
