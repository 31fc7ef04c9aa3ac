"""The project's set-up: the lock, pyproject and environment.yml agree; two commands; data without ../shared."""

import os
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_lock_pins_every_dependency_within_the_pyproject_ranges():
    lock = _lock()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    for text in requirements:
        req = Requirement(text)
        name = req.name.lower().replace("_", "-")
        assert name in lock, f"{name} is in pyproject.toml but not pinned in requirements.lock"
        assert req.specifier.contains(lock[name], prereleases=True), f"{name}=={lock[name]} outside {req.specifier}"


def test_environment_yml_carries_the_same_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = {}
    for item in pip:
        if "==" in item:
            name, version = item.split("==")
            pins[name.lower().replace("_", "-")] = version
    assert pins == _lock()
    assert "python=3.11" in env["dependencies"]


def test_ci_runs_the_readme_test_command_and_nothing_else():
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r"^make (\w+)", readme, flags=re.M)
    assert "test" in commands and "book" in commands
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
          if line.strip() and not line.startswith("#") and not line.startswith("set ") and not line.startswith("cd ")]
    assert ci == ["make test"]


def test_nothing_reads_the_shared_folder_at_run_time():
    for path in list((ROOT / "gigassl").rglob("*.py")) + list((ROOT / "notebooks").glob("*.py")):
        assert "../shared" not in path.read_text() and "/work/shared" not in path.read_text(), path


def test_project_data_ships_with_the_package():
    import importlib.resources

    data = importlib.resources.files("gigassl.data")
    assert (data / "tcga" / "tables" / "lung.csv").is_file()
    assert (data / "tcga" / "splits" / "brca" / "full" / "split_9.csv").is_file()
    assert (data / "paper" / "published_results.csv").is_file()
    assert "MIT" in (data / "README.md").read_text()


def test_the_gpu_check_runs_end_to_end_as_a_cpu_dry_run(tmp_path):
    """benchmarks/gpu.py --dry-run --device cpu: every stage of the GPU check at tiny sizes, torchrun included."""
    import json
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--dry-run", "--device", "cpu",
                           "--out", str(tmp_path / "gpu")], capture_output=True, text=True, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    record = json.loads((tmp_path / "gpu" / "gpu_check.json").read_text())
    stages = [row["stage"] for row in record["stages"]]
    assert stages[:7] == ["synth", "tile", "pretrain-tiles", "bank", "train", "embed", "probe"]
    assert [s for s in stages if s.startswith("torchrun")] == [f"torchrun {n} x1" for n in ("pretrain-tiles", "bank",
                                                                                            "train")]
    figures = record["figures"]
    for key in ("bank_tiles_per_second", "bare_embedder_tiles_per_second", "naive_pipeline_tiles_per_second",
                "ssl_step_seconds_workers", "ssl_step_seconds_naive", "inference_50_views_seconds_per_1000_slides"):
        assert figures[key] > 0, key
    assert figures["same_seed_largest_difference"] == 0.0  # on the CPU: bit for bit


def figure_patterns() -> dict[str, str]:
    """{file pattern: the notebook that writes it}, from the table of figures/README.md."""
    patterns = {}
    for row in (ROOT / "figures" / "README.md").read_text().splitlines():
        cells = row.split("|")
        if row.startswith("| `") and len(cells) > 3:
            notebook = re.search(r"`(notebooks/[^`]+)`", cells[2]).group(1)
            patterns.update({pattern: notebook for pattern in re.findall(r"`([^`]+)`", cells[1])})
    return patterns


def listed(name: str, patterns: dict) -> bool:
    from fnmatch import fnmatch

    return name == "README.md" or any(fnmatch(name, pattern) for pattern in patterns)


def committed_figures() -> list[Path]:
    return [p for p in (ROOT / "figures").iterdir() if p.name != "README.md"]


def test_figures_readme_lists_every_committed_file_and_its_notebook():
    patterns = figure_patterns()
    assert len(patterns) >= 20
    assert all((ROOT / notebook).is_file() for notebook in patterns.values())
    unlisted = [p.name for p in committed_figures() if not listed(p.name, patterns)]
    assert not unlisted, f"files of figures/ that figures/README.md does not list: {unlisted}"


def test_every_test_named_slow_exists():
    """`make test-fast` leaves out tests/conftest.py's SLOW_TESTS by name: a renamed test must not drop out of the
    list silently (it would then run in the fast loop)."""
    from tests.conftest import NUMERIC_MODULES, SLOW_MODULES, SLOW_TESTS

    for entry in SLOW_TESTS:
        module, name = entry.split("::")
        assert f"def {name}(" in (ROOT / "tests" / f"{module}.py").read_text(), entry
    for module in NUMERIC_MODULES | SLOW_MODULES:
        assert (ROOT / "tests" / f"{module}.py").is_file(), module
