"""The method installs lean: slides to embeddings to probes run without the book's packages (issue #21).

`pip install gigassl` gives the method (tiling, encoders, bank, training, inference, probes, the CLI); the book's
pictures need the `book` extra (matplotlib, seaborn, umap-learn, bokeh, papermill, jupytext, jupyter-book). The test
runs the README's commands in a subprocess in which importing any of those packages fails, as in an environment
without them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
BOOK_ONLY = ("matplotlib", "seaborn", "umap", "bokeh", "papermill", "jupytext", "jupyter_book", "numba")

BLOCKED_RUN = textwrap.dedent('''
    import importlib.abc, sys

    BLOCKED = {blocked!r}

    class Absent(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked: the book's packages are absent)")
            return None

    sys.meta_path.insert(0, Absent())
    from gigassl.cli import main

    work = sys.argv[1]
    steps = [
        ["synth", "--profile", "smoke", "--out", f"{{work}}/cohort", "--no-progress"],
        ["tile", "--profile", "smoke", "--manifest", f"{{work}}/cohort/manifest.csv", "--out", f"{{work}}/coords",
         "--no-progress"],
        ["bank", "--profile", "smoke", "--manifest", f"{{work}}/cohort/manifest.csv", "--coords", f"{{work}}/coords",
         "--out", f"{{work}}/bank", "--no-progress"],
        ["train", "--profile", "smoke", "--bank", f"{{work}}/bank", "--out", f"{{work}}/ssl", "--epochs", "1",
         "--no-progress"],
        ["embed", "--profile", "smoke", "--bank", f"{{work}}/bank", "--checkpoint", f"{{work}}/ssl/checkpoint.pt",
         "--out", f"{{work}}/embeddings.h5", "--no-progress"],
        ["probe", "--profile", "smoke", "--embeddings", f"{{work}}/embeddings.h5", "--labels",
         f"{{work}}/cohort/manifest.csv", "--task", "nsclc_like", "--n-splits", "2"],
    ]
    for step in steps:
        code = main(step)
        print(step[0], code, flush=True)
        if code != 0:
            sys.exit(f"{{step[0]}} exited {{code}}")
    leaked = sorted(name for name in sys.modules if name.split(".")[0] in BLOCKED)
    sys.exit(f"imported {{leaked}}" if leaked else 0)
''')


def test_the_book_packages_are_an_extra_not_a_dependency():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {dep.split(">")[0].split("=")[0].split("<")[0].strip().lower() for dep in project["dependencies"]}
    book = {dep.split(">")[0].split("=")[0].split("<")[0].strip().lower()
            for dep in project["optional-dependencies"]["book"]}
    for package in ("matplotlib", "seaborn", "umap-learn", "bokeh", "papermill", "jupytext", "jupyter-book"):
        assert package not in names and package in book, package


def test_slides_to_embeddings_to_probes_run_without_the_book_packages(tmp_path):
    script = tmp_path / "blocked.py"
    script.write_text(BLOCKED_RUN.format(blocked=BOOK_ONLY))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "work")], capture_output=True, text=True,
                          env=env, timeout=900, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    finished = [line.split()[0] for line in done.stdout.splitlines() if re.fullmatch(r"[a-z]+ 0", line)]
    assert finished == ["synth", "tile", "bank", "train", "embed", "probe"], done.stdout[-2000:]


def test_the_blocker_blocks(tmp_path):
    """The subprocess's blocker really makes an import of a book package fail (so the test above can fail)."""
    script = tmp_path / "check.py"
    script.write_text(BLOCKED_RUN.format(blocked=BOOK_ONLY).split("from gigassl.cli import main")[0]
                      + "import matplotlib\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "blocked: the book's packages are absent" in done.stderr


def _book_imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, the imported module, at module level) of every import of gigassl.book in a method module."""
    import ast

    tree = ast.parse(path.read_text())
    top = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            names = [module + "." + a.name for a in node.names] if not node.module else [module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        for name in names:
            if name.lstrip(".").startswith("book") or name.startswith("gigassl.book"):
                found.append((node.lineno, name, id(node) in top))
    return found


def test_the_method_never_imports_the_companion():
    """The two layers (issue #21): no module outside gigassl/book/ imports it, but for `gigassl run`, the CLI
    command that runs the book's plan, which imports its runner when (and only when) that command runs."""
    package = ROOT / "gigassl"
    offenders = {}
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] == "book":
            continue
        found = _book_imports(path)
        if path.name == "cli.py" and path.parent == package:
            assert [(name, top) for _, name, top in found] == [(".book.runner", False)], found
            continue
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert not offenders, offenders


def test_the_layer_check_sees_an_import_of_the_companion(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from .book.figures import table2\n\ndef f():\n    from gigassl.book import runner\n")
    assert [(name, top) for _, name, top in _book_imports(bad)] == [(".book.figures", True), ("gigassl.book", False)]
