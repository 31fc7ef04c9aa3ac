"""The experiment runner: plan expansion, hashing (what re-runs), failures that name the cell, --only."""

import json
import textwrap

import pytest
import yaml

from gigassl.errors import ConfigError
from gigassl.book.runner import ExecutionFailed, load_plan, notebook_parameters, run_plan

NOTEBOOK = """\
# %% [markdown]
# # {title}

# %% tags=["parameters"]
profile = "demo"
run_dir = "runs"
out_dir = "runs/x"
figures_dir = "figures"
value = 1
fail = False

# %%
import os
import time
from pathlib import Path
Path(out_dir, "start.txt").write_text(repr(time.time()))
if fail:
    raise ValueError("asked to fail")
Path(out_dir, "value.txt").write_text(str(value))
Path(out_dir, "threads.txt").write_text(os.environ.get("OMP_NUM_THREADS", ""))
Path(out_dir, "end.txt").write_text(repr(time.time()))
"""


def _project(tmp_path, plan: dict):
    (tmp_path / "notebooks").mkdir()
    for name in ("first", "second", "third"):
        (tmp_path / "notebooks" / f"{name}.py").write_text(NOTEBOOK.format(title=name))
    (tmp_path / "experiments.yml").write_text(yaml.safe_dump(plan))
    return tmp_path


PLAN = {"executions": [
    {"name": "a", "notebook": "first", "parameters": {"value": 1}},
    {"name": "b_{value}", "group": "bs", "notebook": "second", "needs": ["a"], "grid": {"value": [2, 3]},
     "profiles": {"smoke": {"grid": {"value": [5]}}}},
    {"name": "c", "notebook": "third", "needs": ["bs"]},
    {"name": "d", "notebook": "first", "parameters": {"value": 4}, "profiles": {"smoke": {"skip": True}}},
]}


def test_plan_expands_grids_profiles_and_groups(tmp_path):
    path = _project(tmp_path, PLAN) / "experiments.yml"
    demo = load_plan(path, "demo")
    assert [e.name for e in demo] == ["a", "b_2", "b_3", "c", "d"]
    assert demo[1].parameters == {"value": 2} and demo[1].notebook == demo[2].notebook == "second"
    assert demo[3].needs == ("b_2", "b_3")
    shared = {"executions": [{"name": "p", "group": "g", "notebook": "first"},
                             {"name": "q", "group": "g", "notebook": "first", "needs": ["p"]},
                             {"name": "r", "notebook": "third", "needs": ["g"]}]}
    (tmp_path / "shared.yml").write_text(yaml.safe_dump(shared))
    assert load_plan(tmp_path / "shared.yml", "demo")[2].needs == ("p", "q")  # a group shared by two entries
    smoke = load_plan(path, "smoke")
    assert [e.name for e in smoke] == ["a", "b_5", "c"]
    bad = {"executions": [{"name": "x", "notebook": "first", "needs": ["later"]},
                          {"name": "later", "notebook": "first"}]}
    (tmp_path / "bad.yml").write_text(yaml.safe_dump(bad))
    with pytest.raises(ConfigError, match="x needs 'later', which is not an earlier execution"):
        load_plan(tmp_path / "bad.yml", "demo")
    with pytest.raises(ConfigError, match="profile='huge' is not allowed"):
        load_plan(path, "huge")
    assert notebook_parameters(tmp_path / "notebooks" / "first.py") == {
        "profile", "run_dir", "out_dir", "figures_dir", "value", "fail"}


def test_a_skipped_execution_leaves_the_needs_of_others_and_every_profile_of_the_real_plan_loads(tmp_path):
    plan = {"executions": [{"name": "a", "notebook": "first"},
                           {"name": "b", "notebook": "first", "needs": ["a"], "profiles": {"paper": {"skip": True}}},
                           {"name": "c", "notebook": "first", "needs": ["a", "b"]}]}
    (tmp_path / "plan.yml").write_text(yaml.safe_dump(plan))
    assert [e.needs for e in load_plan(tmp_path / "plan.yml", "demo")][2] == ("a", "b")
    assert [(e.name, e.needs) for e in load_plan(tmp_path / "plan.yml", "paper")] == [("a", ()), ("c", ("a",))]
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for profile in ("smoke", "demo", "paper"):  # paper skips the unlabelled pool, which the results page needs
        assert any(e.name == "results" for e in load_plan(root / "experiments.yml", profile))


def test_a_changed_parameter_reruns_only_what_depends_on_it(tmp_path):
    root = _project(tmp_path, PLAN)
    first = run_plan("demo", root, progress=False)
    assert [r["name"] for r in first if not r["skipped"]] == ["a", "b_2", "b_3", "c", "d"]
    assert (root / "runs" / "demo" / "b_3" / "value.txt").read_text() == "3"
    assert (root / "book" / "executed" / "runs" / "a.ipynb").is_file()  # "first" runs twice (a, d): runs/
    assert (root / "book" / "executed" / "c.ipynb").is_file()
    import nbformat

    page = nbformat.read(str(root / "book" / "executed" / "c.ipynb"), as_version=4)
    tags = [c.metadata.get("tags", []) for c in page.cells if c.cell_type == "code"]
    # the page reads like a page: code folded, the injected parameters (this machine's paths) removed
    assert ["injected-parameters", "remove-cell"] in tags and all("hide-input" in t or "remove-cell" in t for t in tags)
    assert ["parameters", "hide-input"] in tags
    again = run_plan("demo", root, progress=False)
    assert all(r["skipped"] for r in again)
    plan = json.loads(json.dumps(PLAN))
    plan["executions"][1]["grid"]["value"] = [2, 7]
    (root / "experiments.yml").write_text(yaml.safe_dump(plan))
    for name in ("a", "c"):
        (root / "runs" / "demo" / name / "stale.txt").write_text("made by the previous parameters")
    third = run_plan("demo", root, progress=False)
    assert [r["name"] for r in third if not r["skipped"]] == ["b_7", "c"]
    assert not (root / "runs" / "demo" / "c" / "stale.txt").exists()  # re-run for a new hash: from an empty folder
    assert (root / "runs" / "demo" / "a" / "stale.txt").exists()  # unchanged: untouched
    state = json.loads((root / "runs" / "demo" / "runner.json").read_text())
    assert state["c"]["seconds"] > 0 and state["c"]["peak_memory_mb"] > 0


def test_run_plan_parses_the_plan_file_once(tmp_path, monkeypatch):
    """The overrides (-p), the executions and the shared parameters all come from one parse of the plan, and the
    one scheduling path runs the executions (here a stand-in for the kernel) in plan order."""
    import gigassl.book.runner as runner

    root = _project(tmp_path, PLAN)
    text = (root / "experiments.yml").read_text()
    parsed, ran = [], []
    real = runner.yaml.safe_load
    monkeypatch.setattr(runner.yaml, "safe_load", lambda source: parsed.append(source) or real(source))
    monkeypatch.setattr(runner, "_run_one", lambda execution, *args: ran.append(execution.name) or {
        "status": "ok", "seconds": 0.0, "peak_memory_mb": 0.0})
    records = run_plan("demo", root, only=["c"], parameters={"fail": False}, progress=False)
    assert ran == [r["name"] for r in records] == ["a", "b_2", "b_3", "c"]
    assert sum(source == text for source in parsed) == 1


def test_a_failing_notebook_names_the_cell_and_stops(tmp_path):
    plan = {"executions": [{"name": "ok", "notebook": "first"},
                           {"name": "broken", "notebook": "second", "parameters": {"fail": True}},
                           {"name": "after", "notebook": "third"}]}
    root = _project(tmp_path, plan)
    with pytest.raises(ExecutionFailed, match=r"broken \(notebooks/second.py\) failed in cell \d+ .*ValueError: "
                                              r"asked to fail") as err:
        run_plan("demo", root, progress=False)
    assert "broken.failed.ipynb" in str(err.value)
    assert (root / "book" / "executed" / "broken.failed.ipynb").is_file()
    assert not (root / "book" / "executed" / "broken.ipynb").exists()
    assert not (root / "runs" / "demo" / "after").exists()
    # a failed (or interrupted) execution keeps its folder when it runs again under the same hash: it resumes
    (root / "runs" / "demo" / "broken" / "partial.txt").write_text("work done before the failure")
    with pytest.raises(ExecutionFailed):
        run_plan("demo", root, progress=False)
    assert (root / "runs" / "demo" / "broken" / "partial.txt").exists()


def test_only_runs_the_named_execution_and_what_it_needs(tmp_path):
    root = _project(tmp_path, PLAN)
    records = run_plan("demo", root, only=["b_2"], progress=False)
    assert sorted(r["name"] for r in records) == ["a", "b_2"]
    with pytest.raises(ConfigError, match="no execution has that name"):
        run_plan("demo", root, only=["zzz"], progress=False)


def test_a_changed_input_file_reruns_the_execution_that_reads_it(tmp_path):
    plan = {"executions": [{"name": "a", "notebook": "first", "parameters": {"value": 1}},
                           {"name": "b", "notebook": "second", "needs": ["a"], "inputs": ["data/input.csv"]}]}
    root = _project(tmp_path, plan)
    (root / "data").mkdir()
    (root / "data" / "input.csv").write_text("x\n1\n")
    assert [r["skipped"] for r in run_plan("smoke", root, progress=False)] == [False, False]
    assert all(r["skipped"] for r in run_plan("smoke", root, progress=False))
    (root / "data" / "input.csv").write_text("x\n2\n")  # edited in place
    assert [r["name"] for r in run_plan("smoke", root, progress=False) if not r["skipped"]] == ["b"]


def test_parallel_jobs_respect_needs_and_give_the_same_outputs(tmp_path):
    import os

    root = _project(tmp_path, PLAN)
    records = run_plan("demo", root, progress=False, jobs=2)
    assert [r["name"] for r in records] == ["a", "b_2", "b_3", "c", "d"]  # plan order, whatever the finishing order
    out = root / "runs" / "demo"
    assert [(out / n / "value.txt").read_text() for n in ("a", "b_2", "b_3", "d")] == ["1", "2", "3", "4"]
    times = {n: (float((out / n / "start.txt").read_text()), float((out / n / "end.txt").read_text()))
             for n in ("a", "b_2", "b_3", "c", "d")}
    assert times["b_2"][0] >= times["a"][1] and times["b_3"][0] >= times["a"][1]  # after what they need
    assert times["c"][0] >= max(times["b_2"][1], times["b_3"][1])
    threads = str(max(1, (os.cpu_count() or 1) // 2))
    assert (out / "c" / "threads.txt").read_text() == threads
    state = json.loads((out / "runner.json").read_text())
    assert state["c"]["threads"] == int(threads) and state["c"]["peak_memory_mb"] > 0
    assert all(r["skipped"] for r in run_plan("demo", root, progress=False, jobs=2))  # same hashes as jobs=1
    with pytest.raises(ConfigError, match="jobs must be at least 1"):
        run_plan("demo", root, progress=False, jobs=0)


def test_a_parallel_failure_stops_what_depends_on_it(tmp_path):
    plan = {"executions": [{"name": "broken", "notebook": "second", "parameters": {"fail": True}},
                           {"name": "after", "notebook": "third", "needs": ["broken"]}]}
    root = _project(tmp_path, plan)
    with pytest.raises(ExecutionFailed, match=r"broken \(notebooks/second.py\) failed in cell"):
        run_plan("demo", root, progress=False, jobs=2)
    assert not (root / "runs" / "demo" / "after").exists()
    state = json.loads((root / "runs" / "demo" / "runner.json").read_text())
    assert state["broken"]["status"] == "failed" and "after" not in state


def test_editing_a_manifest_in_place_reruns_the_notebooks_that_read_it(tmp_path):
    """A parameter naming a file (your manifest) enters the hash with its content and the slides it lists."""
    plan = {"executions": [{"name": "a", "notebook": "first", "parameters": {"value": "my/manifest.csv"}},
                           {"name": "b", "notebook": "second", "needs": ["a"]},
                           {"name": "c", "notebook": "third", "parameters": {"value": 3}}]}
    root = _project(tmp_path, plan)
    (root / "my").mkdir()
    (root / "my" / "s1.tiff").write_bytes(b"slide")
    manifest = root / "my" / "manifest.csv"
    manifest.write_text("slide_id,path\ns1,s1.tiff\n")
    assert [r["skipped"] for r in run_plan("demo", root, progress=False)] == [False, False, False]
    assert all(r["skipped"] for r in run_plan("demo", root, progress=False))
    manifest.write_text("slide_id,path,mpp\ns1,s1.tiff,0.25\n")  # edited in place: same path, new content
    assert [r["skipped"] for r in run_plan("demo", root, progress=False)] == [False, False, True]
    (root / "my" / "s1.tiff").write_bytes(b"a slide copied again, another size")  # a listed slide changed
    assert [r["skipped"] for r in run_plan("demo", root, progress=False)] == [False, False, True]


def test_parameters_sweep_a_grid_and_override_a_page(tmp_path):
    """``gigassl run -p``: a list sweeps a grid's parameter (one execution per value), a value overrides the
    parameters cell of the --only pages; unknown names and lists for one-value parameters are refused."""
    from gigassl.book.runner import parameter_overrides, parse_parameters

    root = _project(tmp_path, PLAN)
    path, notebooks = root / "experiments.yml", root / "notebooks"
    assert parse_parameters(["value=[2, 5]", "fail=false", "name=x", "n=0.5"]) == {
        "value": [2, 5], "fail": False, "name": "x", "n": 0.5}
    with pytest.raises(ConfigError, match="expected NAME=VALUE"):
        parse_parameters(["value"])
    grids, scalars = parameter_overrides(path, "demo", notebooks, ["c"], {"value": [7, 8, 9]})
    assert (grids, scalars) == ({"value": [7, 8, 9]}, {})
    assert [e.name for e in load_plan(path, "demo", grids)] == ["a", "b_7", "b_8", "b_9", "c", "d"]
    with pytest.raises(ConfigError, match=r"-p speed: no page of --only a declares 'speed'.*first: \['fail', "
                                          r"'value'\].*Fix: use one of these names"):
        parameter_overrides(path, "demo", notebooks, ["a"], {"speed": 1})
    plan = {"executions": [{"name": "a", "notebook": "first"}]}
    (root / "flat.yml").write_text(yaml.safe_dump(plan))
    with pytest.raises(ConfigError, match=r"-p value=\[1, 2\]: value of first takes one value.*Fix: run once per "
                                          r"value"):
        parameter_overrides(root / "flat.yml", "demo", notebooks, ["a"], {"value": [1, 2]})
    with pytest.raises(ConfigError, match="the runner sets profile, run_dir"):
        parameter_overrides(path, "demo", notebooks, None, {"run_dir": "elsewhere"})
    records = run_plan("demo", root, only=["a"], plan_file=str(root / "flat.yml"), parameters={"value": 11},
                       progress=False)
    assert records[0]["parameters"] == {"value": 11}
    assert (root / "runs" / "demo" / "a" / "value.txt").read_text() == "11"


def test_an_ipynb_copy_made_by_jupytext_runs_under_papermill(tmp_path):
    """The README's way for papermill users: ``jupytext --to ipynb`` then ``papermill in.ipynb out.ipynb -p ...``."""
    import subprocess
    import sys
    from pathlib import Path

    root = _project(tmp_path, {"executions": [{"name": "a", "notebook": "first"}]})
    (root / "runs" / "x").mkdir(parents=True)
    bin_dir = Path(sys.executable).parent
    subprocess.run([bin_dir / "jupytext", "--to", "ipynb", "--set-kernel", "python3", "-o", root / "first.ipynb",
                    root / "notebooks" / "first.py"], check=True, capture_output=True)
    subprocess.run([bin_dir / "papermill", root / "first.ipynb", root / "out.ipynb", "-p", "value", "42",
                    "-p", "out_dir", str(root / "runs" / "x")], check=True, capture_output=True)
    assert (root / "runs" / "x" / "value.txt").read_text() == "42"


def test_gigassl_run_p_refuses_an_unknown_parameter_naming_the_pages_parameters(tmp_path, capsys):
    from gigassl import cli

    root = _project(tmp_path, PLAN)
    assert cli.main(["run", "--root", str(root), "--only", "c", "-p", "speed=1", "--no-progress"]) != 0
    err = capsys.readouterr().err
    assert "-p speed" in err and "third: ['fail', 'value']" in err and "Fix:" in err
    assert not (root / "runs").exists()


def test_a_plan_parameter_no_notebook_declares_is_refused_before_any_work(tmp_path):
    plan = {"executions": [{"name": "a", "notebook": "first", "parameters": {"value": 1}},
                           {"name": "b", "notebook": "second", "needs": ["a"], "parameters": {"views": 50}}]}
    root = _project(tmp_path, plan)
    with pytest.raises(ConfigError, match=r"'b' sets \['views'\].*notebooks/second.py declares no such parameter"):
        run_plan("demo", root, progress=False)
    assert not (root / "runs" / "demo" / "a").exists()  # nothing ran
    # a grid's parameter must be declared too; the plan's shared parameters need not be
    plan = {"profiles": {"demo": {"parameters": {"views": 50}}},
            "executions": [{"name": "a_{tiles}", "group": "a", "notebook": "first", "grid": {"tiles": [1, 2]}}]}
    (tmp_path / "grid").mkdir()
    with pytest.raises(ConfigError, match=r"'a_1' sets \['tiles'\]"):
        run_plan("demo", _project(tmp_path / "grid", plan), progress=False)
    plan["executions"][0] = {"name": "a_{value}", "group": "a", "notebook": "first", "grid": {"value": [1, 2]}}
    (tmp_path / "shared").mkdir()
    run_plan("demo", _project(tmp_path / "shared", plan), progress=False)


def test_an_execution_marked_alone_runs_with_nothing_beside_it(tmp_path):
    from gigassl.book.runner import Execution, next_to_start

    plan = {"executions": [{"name": "first_alone", "notebook": "first", "alone": True},
                           {"name": "free", "notebook": "second"},
                           {"name": "late_alone", "notebook": "third", "alone": True},
                           {"name": "after", "notebook": "first", "needs": ["first_alone"]}]}
    root = _project(tmp_path, plan)
    loaded = load_plan(root / "experiments.yml", "demo")
    assert [e.alone for e in loaded] == [True, False, True, False]
    alone, free, late, after = ((e,) for e in loaded)
    everything = lambda item: True  # noqa: E731 (every item ready)
    assert next_to_start([alone, free], [], everything) == alone  # nothing runs: the alone one starts
    assert next_to_start([free, late], [alone[0]], everything) is None  # nothing beside an alone one
    assert next_to_start([late, after], [free[0]], everything) is None  # it waits for the others, not overtaken
    assert next_to_start([late, after], [], everything) == late
    assert next_to_start([free, after], [after[0]], everything) == free  # without the flag: side by side
    assert next_to_start([after], [], lambda item: False) is None  # nothing ready
    records = run_plan("demo", root, progress=False, jobs=2)  # the scheduler with the flag, end to end
    assert [r["name"] for r in records] == ["first_alone", "free", "late_alone", "after"]
    assert all((root / "runs" / "demo" / n / "value.txt").exists() for n in ("first_alone", "free", "after"))


def test_replay_schedules_as_the_runner_does_needs_lanes_and_alone():
    from gigassl.book.runner import Execution, replay

    a, b, c = Execution("a", "n"), Execution("b", "n", needs=("a",)), Execution("c", "n", needs=("a",))
    d = Execution("d", "n", needs=("b", "c"))
    seconds = {"a": 10, "b": 30, "c": 5, "d": 2}
    assert replay([a, b, c, d], seconds, jobs=2) == [(0, 10, "a"), (10, 40, "b"), (10, 15, "c"), (40, 42, "d")]
    assert max(end for _, end, _ in replay([a, b, c, d], seconds, jobs=1)) == 47  # one lane: the sum
    free, alone = Execution("free", "n"), Execution("alone", "n", alone=True)
    # the alone one waits for "free" to end and nothing overtakes it or runs beside it
    assert replay([free, alone, a], {"free": 4, "alone": 3, "a": 1}, jobs=2) == [(0, 4, "free"), (4, 7, "alone"),
                                                                                 (7, 8, "a")]
    with pytest.raises(ConfigError, match=r"No recorded time for \['d'\]"):
        replay([a, b, c, d], {"a": 1, "b": 1, "c": 1}, jobs=2)
