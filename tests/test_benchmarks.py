"""Every script in benchmarks/ runs end to end as a dry run (tiny sizes), so a benchmark that nothing runs cannot rot.

The GPU check (benchmarks/gpu.py) has its own, longer dry run in tests/test_project.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"

# {script: the keys its dry run must print as `key: <positive number>`}
EXPECTED = {
    "bank.py": ["bank_tiles_per_second", "forward_tiles_per_second", "pipeline_efficiency"],
    "profile_bank.py": ["bank_ms_per_tile", "bank_forward_share", "moco_ms_per_step", "moco_augment_share"],
    "tiles.py": ["bare_tiles_per_second"],
    "train.py": [r"step_ms \(batch 32, T=5, torch, cpu\)", r"inference_seconds_per_1000_slides \(R=50, T=5, torch, cpu\)",
                 "data_path_ratio"],
    "probe.py": ["cpu_seconds", "deepmil_cpu_seconds"],
    "fair_probe.py": ["kernel_seconds", "sklearn_seconds", "speedup"],
    "logistic.py": ["kernel_seconds", "lbfgs_seconds", "newton_cholesky_seconds", "logregcv_seconds"],
    "seeds.py": [],
    "study.py": ["cells", "seconds"],
    "schedule.py": ["recorded_span_seconds", "replayed_span_seconds", "sum_seconds", "idle_lane_seconds",
                    "critical_path_seconds"],
}


def test_every_benchmark_script_has_a_dry_run_here():
    scripts = {p.name for p in BENCHMARKS.glob("*.py") if not p.name.startswith("_")} - {"gpu.py"}
    assert scripts == set(EXPECTED), "add the new benchmark's dry run to EXPECTED"


def run_dry(script: str, tmp_path: Path, *extra: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--dry-run", *extra], capture_output=True,
                          text=True, env=env, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("script", sorted(set(EXPECTED) - {"seeds.py"}))
def test_the_benchmark_runs_as_a_dry_run(script, tmp_path):
    out = run_dry(script, tmp_path)
    assert out.startswith("machine: ") or script in ("probe.py", "fair_probe.py"), out[:500]
    for key in EXPECTED[script]:
        found = re.search(rf"^{key}: ([0-9.e+-]+)", out, re.MULTILINE)
        assert found and float(found.group(1)) > 0, f"{key} missing or not positive in:\n{out}"


def test_the_seeds_benchmark_runs_one_smoke_seed(tmp_path):
    import json

    import pandas as pd

    from gigassl.book.paper import seed_settings

    out = run_dry("seeds.py", tmp_path, "--out", str(tmp_path / "work"))
    table = pd.read_csv(tmp_path / "work" / "seeds.csv")
    assert set(table["seed"]) == {0} and {"gigassl", "averagemil", "gigassl - averagemil"} <= set(table["method"])
    difference = table["method"] == "gigassl - averagemil"
    assert table.loc[~difference, "auc_mean"].between(0, 1).all()
    assert table.loc[difference, "auc_mean"].between(-1, 1).all() and table["auc_mean"].notna().all()
    assert "seed 0:" in out
    record = json.loads((tmp_path / "work" / "seeds.json").read_text())  # what the results page checks
    assert record["settings"] == seed_settings("smoke", None) and record["commit"]
