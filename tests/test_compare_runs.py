"""scripts/compare_runs.py: the before/after check of a refactor finds what moved, and only that."""

import importlib.util
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("compare_runs", ROOT / "scripts" / "compare_runs.py")
compare_runs = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare_runs)


def _write(folder: Path, auc: float, seconds: float, name: str = "table.csv"):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"method": ["a", "b"], "auc": [0.7, auc], "cpu_seconds": [1.0, seconds]}).to_csv(folder / name,
                                                                                                  index=False)


def test_identical_tables_pass_and_timings_are_ignored(tmp_path):
    _write(tmp_path / "before" / "sub", 0.8, 1.0)
    _write(tmp_path / "after" / "sub", 0.8, 9.0)
    assert compare_runs.main([str(tmp_path / "before"), str(tmp_path / "after")]) == 0


def test_a_moved_number_or_a_missing_table_fails(tmp_path, capsys):
    _write(tmp_path / "before", 0.8, 1.0)
    _write(tmp_path / "before", 0.8, 1.0, name="gone.csv")
    _write(tmp_path / "after", 0.8 + 1e-12, 1.0)
    assert compare_runs.main([str(tmp_path / "before"), str(tmp_path / "after")]) == 1
    out = capsys.readouterr().out
    assert "table.csv: auc: max |difference| 1e-12" in out and "gone.csv: missing after" in out
