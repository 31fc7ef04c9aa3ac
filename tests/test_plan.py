"""The run plan's contract (gigassl/book/plan.py): the names and files the pages share, checked against experiments.yml."""

import ast
import shutil
import time
from pathlib import Path

import pytest
import yaml

from gigassl.book import plan
from gigassl.errors import ConfigError
from gigassl.book.runner import _file_values, load_plan, notebook_defaults, run_plan

ROOT = Path(__file__).resolve().parents[1]
PLAN = yaml.safe_load((ROOT / "experiments.yml").read_text())["executions"]
# the parameters by which a notebook names the executions it reads (values: a name, or "<name>/<file>")
NAME_PARAMETERS = ("train", "bank", "no_pool", "plain_from", "encoder_weights", "runs", "variants", "models",
                   "baselines")


@pytest.mark.parametrize("profile", ["smoke", "demo", "paper"])
def test_the_plan_defines_every_declared_name(profile):
    plan.check(PLAN)
    names = [e.name for e in load_plan(ROOT / "experiments.yml", profile)]
    assert plan.SSL_FULL in names and plan.DEEPMIL in names


def test_renaming_an_execution_fails_at_start_up_naming_both_and_the_fix(tmp_path):
    text = (ROOT / "experiments.yml").read_text().replace("- name: ssl_full\n", "- name: ssl_main\n")
    (tmp_path / "experiments.yml").write_text(text)
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks")
    started = time.monotonic()
    with pytest.raises(ConfigError) as err:
        run_plan("demo", tmp_path, progress=False)
    assert time.monotonic() - started < 1.0
    message = str(err.value)
    assert "no execution 'ssl_full'" in message and "SSL_FULL" in message and "'ssl_main'" in message
    assert "gigassl/book/plan.py" in message and "Fix:" in message
    assert not (tmp_path / "runs").exists()  # nothing ran


def test_a_plan_without_the_pages_that_read_a_name_needs_no_declaration():
    plan.check([{"name": "a", "notebook": "first"}])  # a plan of other notebooks (the runner's own tests)
    entries = [{"name": name, "notebook": "other"} for name in ("cohort", "bank_moco_shared", "ssl_full")]
    entries += [{"name": "mil", "notebook": "16_deepmil"}, {"name": "linear_probe", "notebook": "05_linear_probe"}]
    with pytest.raises(ConfigError, match=r"no execution 'deepmil', which gigassl/book/plan.py declares as DEEPMIL and "
                                          r"05_linear_probe reads. The plan's undeclared executions of "
                                          r"notebooks/16_deepmil.py: \['mil'\]"):
        plan.check(entries)


def test_notebook_parameters_name_executions_of_the_plan():
    """A page's default names of executions (``train = "ssl_full"``, ``runs = [...]``) are executions of the plan,
    or of one of its grids (``ssl_T20``: the paper profile's T)."""
    patterns = [plan.name_pattern(str(e["name"])) for e in PLAN] + [plan.name_pattern(str(e["group"]))
                                                                    for e in PLAN if "group" in e]
    checked = 0
    for path in sorted((ROOT / "notebooks").glob("*.py")):
        for name, value in notebook_defaults(path).items():
            if name not in NAME_PARAMETERS:
                continue
            for text in _file_values(value):
                run = text.split("/", 1)[0]
                assert any(p.match(run) for p in patterns), f"{path.name}: {name} names {run!r}, not in the plan"
                checked += 1
    assert checked > 20


def test_the_page_functions_take_names_from_the_contract():
    """No string literal equal to a declared execution name in the modules that read other pages' outputs."""
    declared = {d.name for d in plan.DECLARATIONS} - {plan.DEEPMIL}  # "deepmil" is also a method's name
    for module in ("stages", "experiments", "analyses", "results", "paper"):
        tree = ast.parse((ROOT / "gigassl" / "book" / f"{module}.py").read_text())
        found = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in declared}
        assert not found, f"gigassl/book/{module}.py spells {found}: use gigassl.book.plan's constants"


def test_grid_runs_and_values(tmp_path):
    for name in ("ssl_pool120", "ssl_pool60", "ssl_T2", "ssl_ref"):
        (tmp_path / name).mkdir()
    assert [p.name for p in plan.grid_runs(tmp_path, plan.SSL_TILES)] == ["ssl_T2"]
    pools = plan.grid_runs(tmp_path, plan.SSL_POOL)
    assert [plan.grid_value(p, plan.SSL_POOL) for p in pools] == ["120", "60"]
    assert plan.table_path(tmp_path, plan.SPEED) == tmp_path / "speed.csv"
    assert plan.name_pattern(plan.SSL_TILES).match("ssl_T25") and not plan.name_pattern(plan.SSL_TILES).match("ssl_")
