"""The experiment runner (``gigassl run``): executes the run plan ``experiments.yml`` with papermill.

The plan lists executions in order. Each runs one notebook of ``notebooks/`` (a jupytext ``py:percent`` file) with
parameters; a ``grid`` expands one entry into several executions of the same notebook (an ablation); ``needs``
names the executions whose outputs it reads; ``profiles`` gives per-profile parameter overrides (and grids); a
top-level ``profiles.<p>.parameters`` applies to every execution of profile p whose notebook declares it;
``alone: true`` runs an execution with nothing beside it (one that uses every core itself).

Every execution receives ``profile``, ``run_dir`` (``<root>/runs/<profile>``: the outputs of every execution, in a
folder named after it), ``out_dir`` (its own folder) and ``figures_dir`` (``<root>/figures``); its executed notebook
goes to ``<root>/book/executed/`` (those of a notebook executed several times, e.g. the training runs of the
ablations, to ``book/executed/runs/`` under a title of their own), where the book reads it.

An execution is skipped when its hash is unchanged: the hash covers the notebook source, its parameters, the
source of the gigassl package and the hashes of the executions it needs, so that a changed parameter re-runs that
execution and those downstream of it, and nothing else. An execution that runs for another hash starts from an
empty folder (nothing made by other code or parameters is resumed); one interrupted or failed under the same hash
keeps its folder, so that its stages resume where they stopped. Wall time and peak memory (the kernel's resident set,
sampled) of every execution are recorded in ``runs/<profile>/runner.json``. On a failure the runner stops and names
the notebook, the cell and the error. ``jobs`` executions can run at once (``gigassl run --jobs N``), each as soon
as what it needs is done. ``gigassl run -p NAME=VALUE`` overrides a parameter (a list sweeps a grid's:
:func:`parameter_overrides`). The names of executions the pages read from each other are declared in
:mod:`gigassl.book.plan` and checked against the plan when it is loaded.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from tqdm import tqdm  # not tqdm.auto, which warns in kernels without ipywidgets

from ..book import plan as contract
from ..config import PROFILES, choice
from ..errors import ConfigError, GigasslError
from ..devices import die_with_parent
from ..files import write_text_atomic

PACKAGE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Execution:
    """One notebook run: its name, notebook, parameters and the executions it reads from."""

    name: str
    notebook: str
    parameters: dict = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    title: str | None = None
    inputs: tuple[str, ...] = ()  # files (relative to the root) the notebook reads: their content enters the hash
    alone: bool = False  # runs with no other execution beside it (it uses every core itself), whatever --jobs


class ExecutionFailed(GigasslError):
    """A notebook raised: names the execution, the notebook, the cell and the error."""


def _format(template: str, values: dict) -> str:
    try:
        return template.format(**values)
    except (KeyError, IndexError) as err:
        raise ConfigError(f"Name template {template!r} uses {err} which the grid does not define.") from None


def read_plan(path: str | os.PathLike) -> dict:
    """The run plan file (``experiments.yml``) parsed: a mapping with a list ``executions`` (and optionally
    ``profiles``). :func:`run_plan` reads it once and hands the mapping to :func:`load_plan` and
    :func:`parameter_overrides`.

    Raises:
        ConfigError: the file is not such a mapping.
    """
    plan = yaml.safe_load(Path(path).read_text())
    if not isinstance(plan, dict) or not isinstance(plan.get("executions"), list):
        raise ConfigError(f"{path}: expected a mapping with a list `executions`.")
    return plan


def load_plan(path: str | os.PathLike, profile: str, grids: dict | None = None,
              plan: dict | None = None) -> list[Execution]:
    """The executions of ``profile`` in plan order, grids expanded.

    A grid entry's ``name`` is a template (``ssl_T{tiles_per_view}``) and its ``group`` (default: the template) is
    the name by which later entries ``need`` all of its executions. ``grids`` ({parameter: values}, from
    ``gigassl run -p``) replaces the values of every grid over that parameter. ``plan``: the file already parsed
    (:func:`read_plan`); without it ``path`` is read.

    Raises:
        ConfigError: unknown profile, malformed entry, duplicate name, a ``needs`` that is not earlier in the plan,
            or a name that :mod:`gigassl.book.plan` declares and the plan lacks (:func:`gigassl.book.plan.check`).
    """
    choice(profile, tuple(PROFILES), "profile", "Pass one of them to --profile (gigassl run --profile).")
    plan = read_plan(path) if plan is None else plan
    contract.check(plan["executions"], where=str(path))
    out: list[Execution] = []
    groups: dict[str, list[str]] = {}
    skipped: set[str] = set()
    shared = _shared_parameters(plan, profile)
    for entry in plan["executions"]:
        if "name" not in entry or "notebook" not in entry:
            raise ConfigError(f"{path}: every execution needs `name` and `notebook`; got {entry}.")
        per_profile = (entry.get("profiles") or {}).get(profile) or {}
        if per_profile.get("skip"):  # and what needs it goes without it (its page reads only what ran)
            skipped.update({entry["name"], entry.get("group", entry["name"])})
            continue
        params = {**shared, **(entry.get("parameters") or {}), **(per_profile.get("parameters") or {})}
        grid = {**(entry.get("grid") or {}), **(per_profile.get("grid") or {})}
        grid.update({k: list(v) for k, v in (grids or {}).items() if k in grid})
        needs = []
        for need in entry.get("needs") or ():
            if need in skipped and need not in groups:
                continue
            if need not in groups:
                raise ConfigError(f"{path}: {entry['name']} needs {need!r}, which is not an earlier execution "
                                  f"of profile {profile}.")
            needs += groups[need]
        if not grid:
            expanded = [Execution(entry["name"], entry["notebook"], params, tuple(needs), title=entry.get("title"),
                                  inputs=tuple(entry.get("inputs") or ()), alone=bool(entry.get("alone", False)))]
        else:
            keys = list(grid)
            expanded = []
            for values in itertools.product(*(grid[k] for k in keys)):
                point = dict(zip(keys, values))
                resolved = {k: _format(v, point) if isinstance(v, str) and "{" in v else v for k, v in params.items()}
                title = _format(entry["title"], point) if entry.get("title") else None
                expanded.append(Execution(_format(entry["name"], point), entry["notebook"], {**resolved, **point},
                                          tuple(needs), title=title, inputs=tuple(entry.get("inputs") or ()),
                                          alone=bool(entry.get("alone", False))))
        if "group" in entry:  # several entries may share a group: it stands for all of their executions
            groups[entry["group"]] = groups.get(entry["group"], []) + [e.name for e in expanded]
        else:
            groups[entry["name"]] = [e.name for e in expanded]
        for e in expanded:
            if any(e.name == o.name for o in out):
                raise ConfigError(f"{path}: execution name {e.name!r} repeated for profile {profile}.")
            groups[e.name] = [e.name]
        out += expanded
    return out


def source_hash() -> str:
    """sha256 of the gigassl package's Python sources."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _file_values(value) -> list[str]:
    """The strings in a parameter value (nested lists and dicts included)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _file_values(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _file_values(v)]
    return []


def input_digest(path: Path) -> bytes:
    """What an input file contributes to a hash: its content, and for a manifest (a CSV with a ``path`` column) the
    size and modification time of every file it lists (the slides), so that editing either re-runs its readers."""
    digest = hashlib.sha256(path.read_bytes())
    if path.suffix.lower() == ".csv":
        import pandas as pd

        try:
            listed = pd.read_csv(path, usecols=["path"], dtype=str)["path"].dropna()
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError):  # not a manifest
            listed = []
        for name in listed:
            slide = Path(name) if Path(name).is_absolute() else path.parent / name
            stat = slide.stat() if slide.exists() else None
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode() if stat else f"{name}:-".encode())
    return digest.digest()


def execution_hash(execution: Execution, notebooks: Path, upstream: dict[str, str], package: str) -> str:
    """The hash that decides whether an execution must run again: the notebook, its parameters, the package, the
    hashes of what it needs, and the input files it reads: its declared ``inputs`` (files under the root, e.g. a
    recorded benchmark; a missing one hashes as missing) and every parameter naming an existing file (e.g. your
    ``manifest``, with the slides it lists; :func:`input_digest`)."""
    root = notebooks.parent
    digest = hashlib.sha256()
    digest.update((notebooks / f"{execution.notebook}.py").read_bytes())
    for name in execution.inputs:
        path = root / name
        digest.update(name.encode() + (input_digest(path) if path.is_file() else b"<missing>"))
    for value in _file_values(execution.parameters):
        path = Path(value) if Path(value).is_absolute() else root / value
        if value and path.is_file():
            digest.update(value.encode() + input_digest(path))
    digest.update(json.dumps(execution.parameters, sort_keys=True, default=str).encode())
    digest.update(package.encode())
    for need in execution.needs:
        digest.update(upstream[need].encode())
    return digest.hexdigest()


class _PeakMemory:
    """Samples the resident memory of this process's children (the kernel) until stopped; peak in MB."""

    def __init__(self, interval: float = 0.25):
        import psutil

        self.process, self.interval, self.peak = psutil.Process(), interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for child in self.process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    continue
            self.peak = max(self.peak, total / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> "_PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _execute(execution: Execution, notebooks: Path, output: Path, parameters: dict, cwd: Path,
             retitle: bool) -> None:
    import jupytext
    import nbformat
    import papermill

    notebook = jupytext.read(notebooks / f"{execution.notebook}.py")
    if retitle:  # one of several executions of a notebook: its page gets its own title
        title = execution.title or execution.name
        notebook.cells.insert(0, nbformat.v4.new_markdown_cell(f"# {title}\n\nExecution `{execution.name}` "
                                                               f"of `notebooks/{execution.notebook}.py`."))
        if len(notebook.cells) > 1 and notebook.cells[1].cell_type == "markdown":
            notebook.cells[1].source = notebook.cells[1].source.replace("# ", "## ", 1)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.stem}.running.ipynb")  # the page appears only once complete
    failed = output.with_name(output.stem + ".failed.ipynb")
    failed.unlink(missing_ok=True)
    try:
        papermill.execute_notebook(notebook, str(tmp), parameters=parameters, kernel_name="python3",
                                   language="python", cwd=str(cwd), progress_bar=False, log_output=False)
    except papermill.PapermillExecutionError as err:
        if tmp.exists():
            os.replace(tmp, failed)
        raise ExecutionFailed(
            f"{execution.name} (notebooks/{execution.notebook}.py) failed in cell {err.cell_index} "
            f"(execution count {err.exec_count}): {err.ename}: {err.evalue}\n"
            f"The partly executed notebook is in {failed}."
        ) from None
    except BaseException:
        tmp.unlink(missing_ok=True)  # interrupted: no half-executed page
        raise
    fold_code(tmp)
    os.replace(tmp, output)


def fold_code(path: str | os.PathLike) -> None:
    """Make an executed notebook read like a page: every code cell folded (Jupyter Book's ``hide-input``: one click
    shows the code), the cell papermill injected (the run's parameters, with this machine's paths) removed."""
    import nbformat

    notebook = nbformat.read(str(path), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        wanted = "remove-cell" if "injected-parameters" in tags else "hide-input"
        if wanted not in tags:
            cell.metadata["tags"] = tags + [wanted]
    nbformat.write(notebook, str(path))


def _run_one(execution: Execution, notebooks: Path, output: Path, parameters: dict, cwd: Path, retitle: bool,
             threads: int | None) -> dict:
    """Run one execution (in this process or in a worker process of :func:`run_plan`); its kernel gets ``threads``
    BLAS/OpenMP/torch threads when given. Returns seconds and the kernel's peak memory, or the failure's message."""
    if threads:  # read by the kernel's libraries when they start
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[name] = str(threads)
    started = time.monotonic()
    with _PeakMemory() as memory:
        try:
            _execute(execution, notebooks, output, parameters, cwd, retitle=retitle)
        except ExecutionFailed as err:
            return {"status": "failed", "error": str(err)}
    return {"status": "ok", "seconds": round(time.monotonic() - started, 2), "peak_memory_mb": round(memory.peak, 1)}


def run_plan(profile: str, root: str | os.PathLike = ".", only: list[str] | None = None, force: bool = False,
             plan_file: str | None = None, progress: bool = True, jobs: int = 1,
             parameters: dict | None = None) -> list[dict]:
    """Execute the plan of ``profile`` under ``root``; returns one record per execution (ran or skipped), in plan
    order.

    Args:
        only: run only these executions (names or notebook names; grids by their unexpanded name); the executions
            they need run too when their hash changed.
        force: run even when the hash is unchanged.
        parameters: values overriding the plan's (``gigassl run -p name=value``; :func:`parameter_overrides`): a
            grid's parameter takes a list (one execution per value) or one value; any other parameter is set on
            the executions named by ``only`` (every execution without it) whose notebook declares it. They enter
            the hash like any parameter.
        jobs: executions run at once, each in its own process, as soon as the executions it ``needs`` are done
            (in plan order among those ready). With ``jobs > 1`` each kernel gets ``cpu_count // jobs`` threads
            (at least 1), recorded as ``threads``: kernels that share cores with more threads than cores stall
            each other (BENCHMARKS.md measures it). Floating-point reduction orders may differ from a ``jobs=1``
            run, so numbers may differ in their last digits. On a failure no new execution starts,
            those running finish, and the failure is raised.
    """
    if int(jobs) < 1:
        raise ConfigError(f"jobs must be at least 1; got {jobs}.")
    root = Path(root).resolve()
    plan_path = Path(plan_file) if plan_file else root / "experiments.yml"
    notebooks = root / "notebooks"
    raw = read_plan(plan_path)  # parsed once: the overrides, the executions and the shared parameters read it
    grids, scalars = parameter_overrides(plan_path, profile, notebooks, only, parameters or {}, plan=raw)
    plan = load_plan(plan_path, profile, grids, plan=raw)
    if scalars:
        named = _matches(plan, only) if only else {e.name for e in plan}
        plan = [dataclasses.replace(e, parameters={**e.parameters, **{
            k: v for k, v in scalars.items() if k in notebook_parameters(notebooks / f"{e.notebook}.py")}})
            if e.name in named else e for e in plan]
    shared = set(_shared_parameters(raw, profile))
    declared = check_parameters(plan, notebooks, shared, where=str(plan_path))
    run_dir = root / "runs" / profile
    state_path = run_dir / "runner.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    package = source_hash()
    hashes: dict[str, str] = {}
    for execution in plan:
        hashes[execution.name] = execution_hash(execution, notebooks, hashes, package)
    selected = _select(plan, only)
    uses = {}
    for execution in plan:
        uses[execution.notebook] = uses.get(execution.notebook, 0) + 1
    threads = None if jobs == 1 else max(1, (os.cpu_count() or 1) // int(jobs))
    records: dict[str, dict] = {}
    todo: list[tuple[Execution, Path, dict, bool]] = []
    for execution in plan:
        if execution.name not in selected:
            continue
        repeated = uses[execution.notebook] > 1
        output = root / "book" / "executed" / ("runs" if repeated else "") / f"{execution.name}.ipynb"
        previous = state.get(execution.name, {})
        if not force and previous.get("hash") == hashes[execution.name] and previous.get("status") == "ok" \
                and output.exists():
            records[execution.name] = {**previous, "name": execution.name, "skipped": True}
            continue
        parameters = {"profile": profile, "run_dir": str(run_dir), "out_dir": str(run_dir / execution.name),
                      "figures_dir": str(root / "figures"),
                      **{k: v for k, v in execution.parameters.items()
                         if k in declared[execution.notebook] or k not in shared}}
        todo.append((execution, output, parameters, repeated))
    bar = tqdm(total=len(todo), desc=f"run {profile}", unit="notebook", disable=not progress)

    def finish(execution: Execution, result: dict) -> None:
        record = {"name": execution.name, "notebook": execution.notebook, "hash": hashes[execution.name],
                  "parameters": execution.parameters}
        if result["status"] != "ok":
            state[execution.name] = {**record, "status": "failed"}
        else:
            record.update(status="ok", seconds=result["seconds"], peak_memory_mb=result["peak_memory_mb"],
                          finished=time.strftime("%Y-%m-%dT%H:%M:%S"), **({"threads": threads} if threads else {}))
            state[execution.name] = record
            records[execution.name] = {**record, "skipped": False}
        write_text_atomic(state_path, json.dumps(state, indent=1, default=str))
        bar.update(1)

    pending = {e.name for e, *_ in todo}

    def start(execution: Execution) -> None:
        """Before an execution runs: outputs made for another hash (other code, parameters or inputs) are removed,
        those of an interrupted or failed run of the same hash are kept (its stages resume); then it is recorded
        as running."""
        folder = run_dir / execution.name
        previous = state.get(execution.name)
        if previous is not None and previous.get("hash") != hashes[execution.name] and folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state[execution.name] = {"name": execution.name, "notebook": execution.notebook,
                                 "hash": hashes[execution.name], "parameters": execution.parameters,
                                 "status": "running"}
        write_text_atomic(state_path, json.dumps(state, indent=1, default=str))

    def ready(item) -> bool:
        return not any(need in pending for need in item[0].needs)

    # one scheduling path: each execution starts, in plan order, as soon as what it needs is done and fewer than
    # ``jobs`` run; ``jobs == 1`` runs each in this process, one after the other, ``jobs > 1`` in worker processes.
    # An execution marked ``alone`` (it uses every core itself, e.g. the cohort's synthesis processes) starts only
    # when nothing runs, and nothing starts beside it; while it waits for the others to end, nothing overtakes it.
    failures: list[str] = []
    waiting = list(todo)
    running: dict = {}
    with _executor(int(jobs)) as pool:
        while waiting or running:
            while not failures and len(running) < int(jobs):
                item = next_to_start(waiting, list(running.values()), ready)
                if item is None:
                    break
                waiting.remove(item)
                execution, output, parameters, repeated = item
                start(execution)
                bar.set_postfix_str(", ".join([e.name for e in running.values()] + [execution.name]))
                running[pool.submit(_run_one, execution, notebooks, output, parameters, root, repeated,
                                    threads)] = execution
            if not running:
                break  # a failure left executions that cannot start
            done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for future in done:
                execution = running.pop(future)
                result = future.result()
                finish(execution, result)
                if result["status"] != "ok":
                    failures.append(result["error"])
                else:
                    pending.discard(execution.name)
    if failures:  # on a failure no new execution started; those running finished
        raise ExecutionFailed("\n".join(failures))
    bar.close()
    return [records[e.name] for e in plan if e.name in records]


def next_to_start(waiting: list, running: list[Execution], ready) -> tuple | None:
    """The item of ``waiting`` (tuples whose first element is an :class:`Execution`, in plan order) to start now
    beside the executions ``running``: the first one ``ready`` accepts, unless an execution marked ``alone`` runs, or
    that first one is marked ``alone`` and something runs (it then waits, and nothing overtakes it); else None."""
    item = next((i for i in waiting if ready(i)), None)
    if item is None or any(e.alone for e in running) or (item[0].alone and running):
        return None
    return item


def replay(plan: list[Execution], seconds: dict[str, float], jobs: int = 2) -> list[tuple[float, float, str]]:
    """The schedule ``gigassl run --jobs jobs`` makes of ``plan`` when each execution takes ``seconds[name]``: the
    rule of :func:`next_to_start` (plan order, ``needs``, ``alone``) on ``jobs`` lanes, an execution starting the
    moment one ends. Returns (start, end, name) per execution in starting order; a run's recorded times
    (``runner.json``) replayed this way give its span, and a changed plan what it would save (benchmarks/schedule.py).

    Raises:
        ConfigError: an execution of ``plan`` without a time in ``seconds`` (a record of another plan).
    """
    missing = [e.name for e in plan if e.name not in seconds]
    if missing:
        raise ConfigError(f"No recorded time for {missing}: replay a plan with the record of a run of that plan "
                          "(runs/<profile>/runner.json after `gigassl run`).")
    waiting = [(e,) for e in plan]
    running: list[tuple[float, Execution]] = []
    done: set[str] = set()
    now, schedule = 0.0, []
    while waiting or running:
        while len(running) < jobs:
            item = next_to_start(waiting, [e for _, e in running], lambda i: set(i[0].needs) <= done)
            if item is None:
                break
            waiting.remove(item)
            running.append((now + float(seconds[item[0].name]), item[0]))
            schedule.append((now, now + float(seconds[item[0].name]), item[0].name))
        if not running:  # nothing runs and nothing can start: a need that no execution of the plan provides
            raise ConfigError(f"{[i[0].name for i in waiting]} need executions the plan does not run.")
        running.sort(key=lambda r: r[0])
        now, finished = running.pop(0)
        done.add(finished.name)
    return schedule


class _InProcess:
    """The executor of ``jobs=1``: a submitted call runs at once, in this process, and its future is done when
    ``submit`` returns (an exception other than a notebook's failure, e.g. an interrupt, propagates as it is)."""

    def __enter__(self) -> "_InProcess":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def submit(self, fn, *args) -> futures.Future:
        future = futures.Future()
        future.set_result(fn(*args))
        return future


def _executor(jobs: int):
    """Where executions run: in this process for one job, else in ``jobs`` worker processes (spawned, each ending
    with this process)."""
    if jobs == 1:
        return _InProcess()
    import multiprocessing

    return futures.ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=die_with_parent)


def check_parameters(plan: list[Execution], notebooks: Path, shared: set[str] = frozenset(),
                     where: str = "experiments.yml") -> dict[str, set[str]]:
    """Refuse a plan that gives an execution a parameter its notebook's ``parameters`` cell does not declare (papermill
    would inject it as a new variable that nothing reads: a setting silently without effect). The plan's shared
    parameters (``profiles.<p>.parameters``) are exempt: they reach only the notebooks that declare them.

    Returns {notebook: the names its parameters cell declares} (each notebook parsed once), for the run.

    Raises:
        ConfigError: naming the execution, the parameter, the notebook's parameters and the fix.
    """
    declared: dict[str, set[str]] = {}
    for execution in plan:
        if execution.notebook not in declared:
            declared[execution.notebook] = notebook_parameters(notebooks / f"{execution.notebook}.py")
        unknown = sorted(set(execution.parameters) - declared[execution.notebook] - set(shared))
        if unknown:
            raise ConfigError(
                f"{where}: execution {execution.name!r} sets {unknown} but notebooks/{execution.notebook}.py declares "
                f"no such parameter (its parameters cell has {sorted(declared[execution.notebook])}). Fix: correct "
                "the name in the plan, or add it to the notebook's parameters cell and use it there.")
    return declared


def _shared_parameters(plan: dict, profile: str) -> dict:
    """The plan's ``profiles.<profile>.parameters``: values for every execution whose notebook declares them."""
    return ((plan.get("profiles") or {}).get(profile) or {}).get("parameters") or {}


def notebook_parameters(path: Path) -> set[str]:
    """Names assigned in the cell tagged ``parameters`` of a jupytext notebook."""
    return set(notebook_defaults(path))


def notebook_defaults(path: Path) -> dict:
    """{name: default} of the cell tagged ``parameters`` of a jupytext notebook (None where not a literal)."""
    import ast

    import jupytext

    def literal(node):
        try:
            return ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError):
            return None

    for cell in jupytext.read(path).cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            return {t.id: literal(node.value) for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)}
    return {}


def _matches(plan: list[Execution], only: list[str]) -> set[str]:
    """The executions ``only`` names (by name, notebook or name prefix)."""
    return {e.name for e in plan if any(e.name == o or e.notebook == o or e.name.startswith(o) for o in only)}


def _select(plan: list[Execution], only: list[str] | None) -> set[str]:
    """Names to consider: everything, or ``only`` (by name, notebook or name prefix) and what they need."""
    if not only:
        return {e.name for e in plan}
    by_name = {e.name: e for e in plan}
    chosen = _matches(plan, only)
    if not chosen:
        raise ConfigError(f"--only {only}: no execution has that name or notebook; names: {sorted(by_name)}.")
    stack = list(chosen)
    while stack:
        for need in by_name[stack.pop()].needs:
            if need not in chosen:
                chosen.add(need)
                stack.append(need)
    return chosen


RUNNER_PARAMETERS = ("profile", "run_dir", "out_dir", "figures_dir")  # given by the runner to every execution


def parse_parameters(items: list[str] | None) -> dict:
    """``gigassl run -p name=value`` (repeatable) as {name: value}, each value parsed as YAML (``[2, 5]`` a list,
    ``true`` a bool, ``null`` None, ``0.5`` a float; anything else a string).

    Raises:
        ConfigError: an item without ``=`` or a value YAML cannot read.
    """
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"-p {item!r}: expected NAME=VALUE, e.g. -p tiles_per_view=[2,5,10,20].")
        try:
            out[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            raise ConfigError(f"-p {item!r}: the value is not YAML ({err.problem}). Quote a string or write a list "
                              f"as [a, b].") from None
    return out


def parameter_overrides(path: Path, profile: str, notebooks: Path, only: list[str] | None,
                        parameters: dict, plan: dict | None = None) -> tuple[dict, dict]:
    """Split ``gigassl run -p`` values into grid values ({parameter: list}, for :func:`load_plan`) and values set on
    the executions ``only`` names (every execution without ``only``) whose notebook declares them. A list is
    refused for a parameter whose default is a number, a bool or a string (not a grid's: it would not sweep).
    ``plan``: the file already parsed (:func:`read_plan`); without it ``path`` is read.

    Raises:
        ConfigError: a parameter the runner sets, one neither a grid of the plan nor a parameter of those pages
            (the message lists both), or a list given to a parameter that is not a grid's.
    """
    if not parameters:
        return {}, {}
    for name in parameters:
        if name in RUNNER_PARAMETERS:
            raise ConfigError(f"-p {name}: the runner sets {', '.join(RUNNER_PARAMETERS)} itself. Fix: choose the "
                              f"profile with --profile and the project with --root.")
    raw = read_plan(path) if plan is None else plan
    plan = load_plan(path, profile, plan=raw)
    targets = _matches(plan, only) if only else {e.name for e in plan}
    if not targets:
        _select(plan, only)  # raises, naming the executions
    pages = sorted({e.notebook for e in plan if e.name in targets})
    defaults = {page: notebook_defaults(notebooks / f"{page}.py") for page in pages}
    declared = {page: set(defaults[page]) - set(RUNNER_PARAMETERS) for page in pages}
    grid_of = {}
    for entry in raw["executions"]:
        per_profile = (entry.get("profiles") or {}).get(profile) or {}
        for key in {**(entry.get("grid") or {}), **(per_profile.get("grid") or {})}:
            grid_of.setdefault(key, []).append(str(entry.get("group", entry["name"])))
    grids, scalars = {}, {}
    for name, value in parameters.items():
        if name in grid_of:  # one value also reaches the --only pages that declare it (every page without --only)
            grids[name] = value if isinstance(value, list) else [value]
            if not isinstance(value, list):
                scalars[name] = value
            continue
        users = [page for page in pages if name in declared[page]]
        if not users:
            chosen = f"--only {' '.join(only)}" if only else "the plan"
            raise ConfigError(
                f"-p {name}: no page of {chosen} declares {name!r} in its parameters cell, and no grid of the plan "
                f"is over it. Parameters: " + "; ".join(f"{page}: {sorted(declared[page])}" for page in pages)
                + "; grids: " + ", ".join(f"{k} ({', '.join(v)})" for k, v in sorted(grid_of.items()))
                + ". Fix: use one of these names, or --only the page that declares it.")
        if isinstance(value, list) and all(isinstance(defaults[page][name], (bool, int, float, str)) for page in users):
            raise ConfigError(
                f"-p {name}={value}: {name} of {', '.join(users)} takes one value, and only a grid's parameter "
                f"sweeps a list (grids: {', '.join(sorted(grid_of))}). Fix: run once per value (gigassl run --only "
                f"... -p {name}=<value>), or add a grid entry over {name} to the plan.")
        scalars[name] = value
    return grids, scalars

