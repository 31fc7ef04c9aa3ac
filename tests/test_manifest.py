"""Manifests: every bad value is a clear error naming the line and the fix, read once where manifests are read."""

import pandas as pd
import pytest

from gigassl.errors import ManifestError
from gigassl.manifest import labelled_ids, pool_ids, read_manifest


def _write(tmp_path, rows, name="m.csv"):
    path = tmp_path / name
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


GOOD = {"slide_id": "S1", "path": "s1.tiff", "case_id": "P1", "center": "C0", "task": "a"}


@pytest.mark.parametrize("bad", ["../escape", "a/b", "a\\b", ".hidden", "with space", ".."])
def test_slide_ids_that_cannot_name_a_file_are_refused(tmp_path, bad):
    path = _write(tmp_path, [GOOD, {**GOOD, "slide_id": bad}])
    with pytest.raises(ManifestError, match=r"unusable as file names on line\(s\) \[\(3, "):
        read_manifest(path)


def test_ids_repeated_up_to_case_are_refused(tmp_path):
    path = _write(tmp_path, [GOOD, {**GOOD, "slide_id": "s1"}])
    with pytest.raises(ManifestError, match=r"repeated: \['S1', 's1'\].*differ only in case"):
        read_manifest(path)


def test_empty_path_and_bad_mpp_name_the_line(tmp_path):
    with pytest.raises(ManifestError, match=r"empty path on line\(s\) \[3\]"):
        read_manifest(_write(tmp_path, [GOOD, {**GOOD, "slide_id": "S2", "path": ""}]))
    for value in ("abc", "-1", "0", "inf"):
        rows = [{**GOOD, "mpp": 0.5}, {**GOOD, "slide_id": "S2", "mpp": value}]
        with pytest.raises(ManifestError, match=r"mpp must be a positive number.*\(3, "):
            read_manifest(_write(tmp_path, rows))
    frame = read_manifest(_write(tmp_path, [{**GOOD, "mpp": 0.25}, {**GOOD, "slide_id": "S2", "mpp": ""}]))
    assert frame["mpp"].iloc[0] == 0.25 and pd.isna(frame["mpp"].iloc[1])  # empty: the slide's own MPP


def test_without_case_id_each_slide_is_its_own_case_and_splitting_warns(tmp_path):
    from gigassl.evaluation.labels import load_labels

    rows = [{k: v for k, v in GOOD.items() if k != "case_id"}, {"slide_id": "S2", "path": "s2.tiff", "task": None},
            {"slide_id": "S3", "path": "s3.tiff", "task": "b"}]
    path = _write(tmp_path, rows)
    frame = read_manifest(path)
    assert frame["case_id"].tolist() == ["S1", "S2", "S3"]
    assert labelled_ids(frame) == ["S1", "S3"] and pool_ids(frame) == ["S2"]
    assert frame["path"].iloc[0] == str((tmp_path / "s1.tiff").resolve())  # relative to the manifest's folder
    with pytest.warns(UserWarning, match="no case_id column.*both sides of a split"):
        load_labels(path, "task")
