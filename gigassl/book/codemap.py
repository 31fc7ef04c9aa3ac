"""How the code is organised, read from the package itself (the book's page "How the code is organised").

:func:`modules` lists every module with the first line of its docstring and its size; :func:`stage_options` lists
every field of every stage config with its value in each profile and the CLI option that sets it; :data:`WHERE`
says which function a student edits to change one part of the method.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from pathlib import Path

import pandas as pd

# the stage of each part of the method, in pipeline order: what to change | the function that implements it | the
# config whose fields set it | the section of the paper
_WHERE = """
tiles: size, resolution, tissue threshold | tiling.tile_cohort | TileConfig | Sec. 4.1
the tile embedder (ResNet18, your encoder) | encoders.build_embedder | EncoderConfig | Sec. 3.1
MoCo pre-training of the tile embedder | moco.pretrain_tiles | MocoConfig | Sec. 4.1
the tile augmentations (colour, geometry) | augment.TileAugmentation | AugmentConfig | Sec. 3.1, Step 1
the augmentation bank (A draws of N tiles) | bank.build_bank | BankConfig | Sec. 3.2
views, sparse maps, slide augmentation | maps.training_views | MapConfig | Sec. 3.1, Steps 3-4
the aggregator (sparse CNN, attention, mean) | aggregators.build_aggregator | TrainConfig | Sec. 3.1
the loss (NT-Xent) | loss.NTXentLoss | TrainConfig | Sec. 3.1, Eq. 1
the training loop | train.train | TrainConfig | Sec. 4.2
R-view inference of slide embeddings | embed.embed_slides | EmbedConfig | Sec. 4.2
the linear probe and its protocols | evaluation.probe.LinearProbe | ProbeConfig | Sec. 4.2
the baselines (AverageMIL, DeepMIL) | evaluation.baselines.run_deepmil | DeepMILConfig | Table 2
a page's experiment (Table 2, Fig. 2, the ablations) | book.experiments.run_table2 | ProbeConfig | Sec. 4.3, Sec. 5
pictures on slides (tiling, a view, heat maps) | book.slideviews.view_pictures | MapConfig | Sec. 3.1, Steps 3-4
"""
WHERE = tuple(tuple(part.strip() for part in line.split("|")) for line in _WHERE.strip().splitlines())


# the two layers of the tree: the method (what ``pip install gigassl`` gives) and the companion that builds the book
LAYERS = {"book": "companion"}


def layer(name: str) -> str:
    """The layer of a module named under ``gigassl`` (``"book.runner"`` -> ``"companion"``, else ``"method"``)."""
    return LAYERS.get(name.split(".")[0], "method")


def modules() -> pd.DataFrame:
    """Every module of the package, subpackages included: layer, module (its file), what it does (its docstring's
    first line), lines."""
    import gigassl

    rows = []
    for info in sorted(pkgutil.walk_packages(gigassl.__path__, prefix="gigassl."), key=lambda m: m.name):
        if info.ispkg or info.name == "gigassl.data":
            continue
        module = importlib.import_module(info.name)
        doc = (inspect.getdoc(module) or "").split("\n")[0]
        lines = len(Path(module.__file__).read_text().splitlines())
        name = info.name.removeprefix("gigassl.")
        rows.append({"layer": layer(name), "module": f"gigassl/{name.replace('.', '/')}.py", "what it does": doc,
                     "lines": lines})
    return pd.DataFrame(rows).sort_values(["layer", "module"], ascending=[False, True], ignore_index=True)


def where_to_change() -> pd.DataFrame:
    """:data:`WHERE` as a table, each function with the module file and the first line of its docstring."""
    rows = []
    for what, target, config, section in WHERE:
        parts = target.split(".")
        cut = 1 + (parts[0] in ("book", "cohorts", "evaluation"))  # a subpackage's module is two names long
        module_name, attrs = ".".join(parts[:cut]), parts[cut:]
        obj = importlib.import_module(f"gigassl.{module_name}")
        for attr in attrs:
            obj = getattr(obj, attr)
        rows.append({"to change": what, "edit": f"gigassl/{module_name.replace('.', '/')}.py: {'.'.join(attrs)}",
                     "its parameters": config, "paper": section,
                     "what it does": (inspect.getdoc(obj) or "").split("\n")[0]})
    return pd.DataFrame(rows)


# the CLI command of each stage config
COMMANDS = {"synth": "synth", "tile": "tile", "encoder": "bank", "augment": "bank", "moco": "pretrain-tiles",
            "bank": "bank", "train": "train", "embed": "embed", "probe": "probe", "deepmil": "probe",
            "featsim": "simulate"}


def cli_options() -> dict[str, set[str]]:
    """{command: its option strings}, read from the CLI's parser."""
    import argparse

    from ..cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o for action in p._actions for o in action.option_strings} for name, p in sub.choices.items()}


def stage_options() -> pd.DataFrame:
    """Every field of every stage config of the profiles: stage, config, field, the CLI option that sets it (or
    ``-`` when only Python and the notebooks set it), and its value in the smoke, demo and paper profiles (the
    nested MapConfig of training as ``maps.<field>``)."""
    from ..cli import config_options
    from ..config import PROFILES

    generated = config_options()  # the options gigassl.options generates from the configs, per command

    def option(stage: str, path: tuple) -> str:
        command = COMMANDS.get(stage, stage)
        flags = [o.flags[0] for o in generated.get(command, []) if o.section == stage and o.path == path]
        return f"{command} {flags[0]}" if flags else "-"

    rows = []
    names = list(PROFILES)
    stages = [f.name for f in dataclasses.fields(PROFILES[names[0]]) if f.name != "name"]
    for stage in stages:
        configs = {p: getattr(PROFILES[p], stage) for p in names}
        first = configs[names[0]]
        for field in dataclasses.fields(first):
            values = {p: getattr(configs[p], field.name) for p in names}
            if dataclasses.is_dataclass(values[names[0]]):
                for inner in dataclasses.fields(values[names[0]]):
                    rows.append({"stage": stage, "config": type(values[names[0]]).__name__,
                                 "field": f"{field.name}.{inner.name}", "option": option(stage, (field.name, inner.name)),
                                 **{p: repr(getattr(values[p], inner.name)) for p in names}})
                continue
            rows.append({"stage": stage, "config": type(first).__name__, "field": field.name,
                         "option": option(stage, (field.name,)), **{p: repr(values[p]) for p in names}})
    return pd.DataFrame(rows)


def summary() -> str:
    """The package in one sentence: modules and lines."""
    table = modules()
    return (f"{len(table)} modules, {int(table['lines'].sum())} lines; the largest is {table.loc[table['lines'].idxmax(), 'module']} "
            f"({int(table['lines'].max())} lines).")
