"""Provenance records: what differs between a record and a request, named; folders resume or refuse."""

import json

import pytest

from gigassl.errors import ConfigError
from gigassl.provenance import check_folder, differences, ids_digest, refuse_changes, refuse_mismatch


def test_differences_are_nested_named_and_skip_what_does_not_change_results():
    recorded = {"tile_px": 64, "maps": {"scale": [0.5, 2.0], "flips": True}, "workers": 2, "version": "0.1"}
    requested = {"tile_px": 48, "maps": {"scale": (0.5, 2.0), "flips": False}, "workers": 8, "version": "0.2",
                 "seed": 1}
    assert differences(recorded, requested) == [("maps.flips", True, False), ("seed", "<not recorded>", 1),
                                                ("tile_px", 64, 48)]
    assert differences(recorded, recorded) == []


def test_a_folder_resumes_with_the_same_record_and_refuses_another(tmp_path):
    check_folder(tmp_path, "tiles", {"tile_px": 64, "workers": 1})
    assert json.loads((tmp_path / "config.json").read_text()) == {"tile_px": 64, "workers": 1}
    check_folder(tmp_path, "tiles", {"tile_px": 64, "workers": 4})  # same result: resumes
    with pytest.raises(ConfigError, match=r"holds tiles made with other settings \(tile_px: 64 there, 48 now\)"
                                          r".*new folder.*delete"):
        check_folder(tmp_path, "tiles", {"tile_px": 48, "workers": 1})
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        check_folder(tmp_path, "tiles", {"tile_px": 64})


def test_mismatches_name_both_values_and_skip_unrecorded_fields():
    refuse_mismatch("x", {"tile_px": 32, "encoder": "resnet18"}, {"encoder": "resnet18"}, "fix")  # older record
    with pytest.raises(ConfigError, match=r"tile_px: 32 expected, 48 found\)\. Use the right bank"):
        refuse_mismatch("The banks", {"tile_px": 32}, {"tile_px": 48}, "Use the right bank.")
    with pytest.raises(ConfigError, match="seed: 0 there, 1 now"):
        refuse_changes("a run", "out", {"seed": 0}, {"seed": 1})


def test_ids_digest_ignores_order():
    assert ids_digest(["b", "a"]) == ids_digest(["a", "b"]) != ids_digest(["a"])
