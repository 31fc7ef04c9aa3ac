"""The notebook rule: a notebook sets parameters, calls tested package functions and draws; no logic lives in it.

The rule, checked on the code of every notebook under ``notebooks/`` (the jupytext sources the book runs):

1. The cell tagged ``parameters`` holds assignments of literals only (numbers, strings, booleans, None, and
   lists, tuples and dicts of them): what papermill and ``experiments.yml`` set.
2. Every other code cell holds imports, assignments, calls, ``if`` on a parameter and expressions to display, and
   none of:
   - a function, lambda or class definition (logic belongs in ``gigassl`` with a test);
   - a loop: ``for``, ``while``, or a comprehension (a loop over results is a computation);
   - a literal number (a number is either a parameter, so it goes to the parameters cell, or a choice of the
     method, so it goes to the package with its source); booleans and None are not numbers here;
   - arithmetic other than ``/`` (which joins paths), comparisons and augmented assignments (a filter such as
     ``table[table["protocol"] == p]`` or a difference of two columns is a computation on results);
   - the pandas reshaping and aggregating methods (``groupby``, ``merge``, ``concat``, ``pivot``, ``pivot_table``,
     ``assign``, ``apply``, ``agg``, ``rolling``, ``query``, ``melt``, ``crosstab``, ``join``, ``map``), for the
     same reason.

What the rule cannot see: a call of a pandas method not in the list, or a chain of attribute accesses, may still
compute; the review of a notebook change catches those, and the list grows when one is found.
"""

from __future__ import annotations

import ast
from pathlib import Path

import jupytext
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.py"))
RESHAPING = {"groupby", "merge", "concat", "pivot", "pivot_table", "assign", "apply", "agg", "aggregate", "rolling",
             "query", "melt", "crosstab", "join", "map"}
DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
LOOPS = (ast.For, ast.AsyncFor, ast.While, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


def _literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _literal(node.operand)
    if isinstance(node, (ast.List, ast.Tuple)):
        return all(_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _literal(k) and _literal(v) for k, v in zip(node.keys, node.values))
    return False


def parameter_violations(source: str) -> list[str]:
    """What breaks rule 1 in the source of a parameters cell."""
    problems = []
    for statement in ast.parse(source).body:
        if not (isinstance(statement, ast.Assign) and all(isinstance(t, ast.Name) for t in statement.targets)
                and _literal(statement.value)):
            problems.append(f"line {statement.lineno}: not an assignment of a literal")
    return problems


def code_violations(source: str) -> list[str]:
    """What breaks rule 2 in the source of a code cell."""
    problems = []
    for node in ast.walk(ast.parse(source)):
        line = getattr(node, "lineno", "?")
        if isinstance(node, DEFINITIONS):
            problems.append(f"line {line}: a definition ({type(node).__name__})")
        elif isinstance(node, LOOPS):
            problems.append(f"line {line}: a loop ({type(node).__name__})")
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, complex):
            problems.append(f"line {line}: the literal number {node.value!r}")
        elif isinstance(node, ast.BinOp) and not isinstance(node.op, ast.Div):
            problems.append(f"line {line}: arithmetic ({type(node.op).__name__})")
        elif isinstance(node, (ast.Compare, ast.AugAssign)):
            problems.append(f"line {line}: a {'comparison' if isinstance(node, ast.Compare) else 'computation'}")
        elif isinstance(node, ast.Attribute) and node.attr in RESHAPING:
            problems.append(f"line {line}: the reshaping method .{node.attr}")
    return problems


def violations(path: Path) -> list[str]:
    """Every break of the rule in one notebook, each with its cell number."""
    notebook = jupytext.read(path)
    problems, tagged = [], 0
    for number, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        if "parameters" in cell.metadata.get("tags", []):
            tagged += 1
            problems += [f"cell {number} (parameters), {p}" for p in parameter_violations(cell.source)]
        else:
            problems += [f"cell {number}, {p}" for p in code_violations(cell.source)]
    if tagged != 1:
        problems.append(f"{tagged} cells tagged parameters; exactly one is required")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_holds_parameters_calls_and_plots_only(path):
    problems = violations(path)
    assert not problems, f"{path.name} breaks the notebook rule (see this test's docstring):\n" + "\n".join(problems)


@pytest.mark.parametrize("source, broken", [
    ("def f(x):\n    return x\n", "definition"),
    ("g = lambda t: t\n", "definition"),
    ("for run in runs:\n    print(run)\n", "loop"),
    ("names = [r for r in runs]\n", "loop"),
    ("head = table.head(8)\n", "literal number"),
    ("gain = table['a'] - table['b']\n", "arithmetic"),
    ("part = table[table['protocol'] == 'fair']\n", "comparison"),
    ("mean = table.groupby('task').mean()\n", "reshaping"),
])
def test_the_rule_catches_each_kind_of_logic(source, broken):
    assert any(broken in p for p in code_violations(source)), source


def test_the_rule_accepts_calls_paths_and_a_branch_on_a_parameter():
    source = ("from pathlib import Path\nfrom gigassl import experiments\nresult = experiments.table2(Path(run_dir) / "
              "'cohort', tasks=tasks)\nif monitor_every:\n    show(result.monitor)\nresult.table\n")
    assert code_violations(source) == []
    assert parameter_violations("profile = 'demo'\nviews = [1, 2, 5]\nruns = {'a': 'ssl_ref'}\nx = -1.5\n") == []
    assert parameter_violations("n = len(runs)\n")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_page_opens_with_its_finding(path):
    """The first cell, under the title, holds the finding the notebook glues at its end (gigassl.book.figures.finding):
    a sentence computed from the run, not written by hand."""
    notebook = jupytext.read(path)
    first = notebook.cells[0]
    assert first.cell_type == "markdown" and "{glue:md}`finding`" in first.source.split("\n\n")[1]
    calls = [cell.source for cell in notebook.cells if cell.cell_type == "code" and "finding(" in cell.source]
    assert calls and "from gigassl.book.figures import" in path.read_text()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_name_a_notebook_uses_is_bound(path):
    """Each name a notebook reads is a builtin, a parameter, an import or an assignment of the notebook (a missing
    import fails here, not after twenty minutes of make book)."""
    import builtins

    tree = ast.parse("\n".join(c.source for c in jupytext.read(path).cells if c.cell_type == "code"))
    bound = set(dir(builtins))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
    used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)}
    assert not used - bound, f"{path.name} uses names it never binds: {sorted(used - bound)}"


# ---------------------------------------------------------------------- parameters map onto the configs by name
ROOT = Path(__file__).resolve().parents[1]
RUN_CELL = {"02_augmentation_bank": "bank", "03_train_gigassl": "train"}  # the stage call each page makes first


def config_fields() -> set[str]:
    """The names of every field of a profile's stage configs (nested ones flattened: ``slide_aug``)."""
    import dataclasses

    from gigassl.config import get_profile

    def names(config):
        for f in dataclasses.fields(config):
            value = getattr(config, f.name)
            yield from names(value) if dataclasses.is_dataclass(value) else (f.name,)

    profile = get_profile("demo")
    return {name for f in dataclasses.fields(profile) if dataclasses.is_dataclass(getattr(profile, f.name))
            for name in names(getattr(profile, f.name))}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_parameter_named_like_a_config_field_defaults_to_the_profiles_value(path):
    """A parameter named like a config field is that field: None (the profile's value, gigassl.config.override)
    unless the plan sets it; a page's own parameter takes another name (09's ``view_counts``, not ``views``)."""
    from gigassl.book.runner import notebook_defaults

    defaults = notebook_defaults(path)
    named = sorted(set(defaults) & config_fields())
    assert all(defaults[name] is None for name in named), {name: defaults[name] for name in named}


def run_stage_cell(path: Path, parameters: dict) -> dict:
    """Run a notebook's parameters cell, then ``parameters`` (as papermill injects them), then the cell after it
    (the page's stage call); returns the notebook's names."""
    cells = [c for c in jupytext.read(path).cells if c.cell_type == "code"]
    index = next(i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", []))
    namespace: dict = {}
    exec(cells[index].source, namespace)
    namespace.update(parameters)
    exec(cells[index + 1].source, namespace)
    return namespace


@pytest.mark.parametrize("notebook", sorted(RUN_CELL))
def test_a_parameter_left_at_none_takes_the_profiles_value(monkeypatch, tmp_path, notebook):
    """The page run with its parameters cell as it is, on a profile whose training and augmentation fields all
    differ from the former literals of the cell: the training (the bank) receives the profile's config."""
    from tests.test_stages import VARIANT, fake_run

    seen = fake_run(monkeypatch, tmp_path)
    monkeypatch.setattr("gigassl.config.get_profile", lambda name: VARIANT)
    run_stage_cell(ROOT / "notebooks" / f"{notebook}.py",
                   {"profile": "smoke", "run_dir": str(tmp_path), "out_dir": str(tmp_path / "out")})
    if notebook == "03_train_gigassl":
        assert seen["train"] == VARIANT.train  # bn_views joint, aggregator attention, no slide augmentation, ...
        assert seen["monitor_maps"] == VARIANT.train.maps  # the profile's monitor_every (2) started the monitor
    else:
        assert seen["bank"][5] == VARIANT.augment  # mode independent


# what the pages did before #21 item 4, rewritten: the cell's literals, then the plan's values, replaced the profile's
FORMER_TRAIN_CELL = {"steps": None, "tiles_per_view": None, "aggregator": "sparseconv",
                     "aggregator_init": "tile_embedder", "bn_views": "per_view", "schedule_epochs": None,
                     "slide_aug": True, "monitor_every": 0}


def former_train_config(train, parameters: dict, n_slides: int):
    import dataclasses

    p = {**FORMER_TRAIN_CELL, **{k: v for k, v in parameters.items() if k in FORMER_TRAIN_CELL}}
    config = dataclasses.replace(
        train, tiles_per_view=p["tiles_per_view"] or train.tiles_per_view, aggregator=p["aggregator"],
        steps=p["steps"], aggregator_init=p["aggregator_init"], bn_views=p["bn_views"],
        schedule_epochs=p["schedule_epochs"], monitor_every=p["monitor_every"],
        maps=dataclasses.replace(train.maps, slide_aug=p["slide_aug"]))
    return dataclasses.replace(config, batch_size=min(config.batch_size, n_slides))


@pytest.mark.parametrize("profile", ["smoke", "demo", "paper"])
def test_every_execution_of_the_plan_trains_and_banks_with_the_configs_it_had_before(monkeypatch, tmp_path, profile):
    """The book's numbers do not move: for each training and bank execution of experiments.yml, the config the
    page now builds (the profile's, then the plan's values through override) equals the one the former cells built
    (their literals and the plan's values over the profile's)."""
    import dataclasses

    from gigassl.book.runner import load_plan, notebook_parameters
    from gigassl.config import get_profile
    from tests.test_stages import fake_run

    config = get_profile(profile)
    seen = fake_run(monkeypatch, tmp_path)
    changed = []
    for execution in load_plan(ROOT / "experiments.yml", profile):
        if execution.notebook not in RUN_CELL:
            continue
        path = ROOT / "notebooks" / f"{execution.notebook}.py"
        declared = notebook_parameters(path)
        given = {k: v for k, v in execution.parameters.items() if k in declared}
        run_stage_cell(path, {**given, "profile": profile, "run_dir": str(tmp_path),
                              "out_dir": str(tmp_path / execution.name)})
        if execution.notebook == "03_train_gigassl":
            before = former_train_config(config.train, given, len(seen["train_kwargs"]["slide_ids"]))
            assert seen.pop("train") == before, execution.name
            changed += [execution.name] if before != dataclasses.replace(config.train, batch_size=before.batch_size) \
                else []
        else:
            assert seen.pop("bank")[5] == dataclasses.replace(config.augment, mode=given.get("mode", "shared")), \
                execution.name
    assert {"ssl_bn_joint", "ssl_random_init", "ssl_no_slide_aug", "ssl_attention"} <= set(changed)  # not vacuous
