"""The book's page on the code: read from the package, so it cannot drift from it."""

import dataclasses
from pathlib import Path

from gigassl.book import codemap
from gigassl.config import PROFILES

PACKAGE = Path(codemap.__file__).parents[1]


def test_every_module_is_listed_with_what_it_does():
    table = codemap.modules()
    files = {f"gigassl/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    assert set(table["module"]) == files
    assert (table["what it does"].str.len() > 10).all() and (table["lines"] > 0).all()
    layers = dict(zip(table["module"], table["layer"]))
    assert layers["gigassl/book/runner.py"] == "companion" and layers["gigassl/train.py"] == "method"
    assert {m for m, layer in layers.items() if layer == "companion"} == {m for m in files if m.startswith("gigassl/book/")}


def test_every_pointer_resolves_to_a_documented_function_and_a_real_config():
    table = codemap.where_to_change()
    assert len(table) == len(codemap.WHERE) and (table["what it does"].str.len() > 10).all()
    configs = {type(getattr(PROFILES["demo"], f.name)).__name__ for f in dataclasses.fields(PROFILES["demo"])
               if f.name != "name"} | {"MapConfig"}
    assert set(table["its parameters"]) <= configs


def test_every_stage_field_is_listed_with_its_values_and_a_real_option():
    table = codemap.stage_options()
    demo = PROFILES["demo"]
    expected = sum(len(dataclasses.fields(getattr(demo, f.name))) - 1 + len(dataclasses.fields(demo.train.maps))
                   if f.name == "train" else len(dataclasses.fields(getattr(demo, f.name)))
                   for f in dataclasses.fields(demo) if f.name != "name")
    assert len(table) == expected
    assert table.loc[(table["stage"] == "tile") & (table["field"] == "tile_px"), ["demo", "paper"]].values.tolist() == [
        ["64", "224"]]
    options = codemap.cli_options()
    for value in table["option"]:
        if value != "-":
            command, flag = value.split(" ")
            assert flag in options[command]
    assert "train --tiles-per-view" in set(table["option"]) and "tile --tile-px" in set(table["option"])
