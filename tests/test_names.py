"""One name, one meaning (issue #21): no two modules of gigassl define a public function or class of the same name.

A reader who meets `read_splits` or `heat_maps` in a notebook should find one definition, not two that return
different things. The test reads every module of the package (subpackages included) with `ast`, without importing
it, and lists each public (no leading underscore) top-level `def`/`class` name defined in more than one module.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gigassl"


def public_definitions(source: str) -> set[str]:
    """The public top-level function and class names that a module's source defines (re-exports do not count)."""
    tree = ast.parse(source)
    return {node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and not node.name.startswith("_")}


def name_collisions(package: Path) -> dict[str, list[str]]:
    """Each public name defined in two or more modules of `package`, with those modules (dotted, sorted)."""
    owners: dict[str, list[str]] = defaultdict(list)
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts)
        for name in public_definitions(path.read_text(encoding="utf-8")):
            owners[name].append(module)
    return {name: modules for name, modules in sorted(owners.items()) if len(modules) > 1}


def test_the_walk_finds_a_collision_it_is_shown(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("def read_splits():\n    pass\n\nclass Kept:\n    pass\n\ndef _private():\n    pass\n")
    (pkg / "sub" / "b.py").write_text("def read_splits():\n    pass\n\ndef _private():\n    pass\n"
                                      "from pkg.a import Kept\n\ndef outer():\n    def Kept():\n        pass\n")
    assert name_collisions(pkg) == {"read_splits": ["pkg.a", "pkg.sub.b"]}


def test_no_two_modules_define_a_public_name_twice():
    assert any(PACKAGE.glob("book/*.py")) and any(PACKAGE.glob("evaluation/*.py"))
    collisions = name_collisions(PACKAGE)
    shown = "\n".join(f"  {name}: {', '.join(modules)}" for name, modules in collisions.items())
    assert not collisions, (f"{len(collisions)} public names are defined in more than one module of gigassl; "
                            f"rename one of each so that each says what it is:\n{shown}")
