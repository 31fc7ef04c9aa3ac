"""Label tables: one task read into slide_id, case_id, label; ids matched across tools; errors name the fix."""

import numpy as np
import pandas as pd
import pytest

from gigassl.errors import ManifestError
from gigassl.evaluation.labels import load_labels, normalize_id


def test_load_labels():
    frame = pd.DataFrame({"slide_id": ["a", "b", "c", "d"], "y": [1.0, 0.0, np.nan, 1.0]})
    with pytest.warns(UserWarning, match="no case_id column"):  # each slide its own case
        labels = load_labels(frame, "y")
    assert list(labels.label) == ["1", "0", "1"] and list(labels.case_id) == ["a", "b", "d"]
    with pytest.raises(ManifestError, match="no column 'z'"):
        load_labels(frame, "z")
    with pytest.raises(ManifestError, match="at least two"):
        load_labels(frame.assign(y=1), "y")


def test_normalize_id():
    assert normalize_id("/data/TCGA-X.ABC.svs") == "tcga-x.abc"
    assert normalize_id("slide.h5") == normalize_id("SLIDE") == "slide"


def test_repeated_slide_ids_are_listed(tmp_path):
    frame = pd.DataFrame({"slide_id": ["a", "a", "b", "b", "c"], "case_id": list("aabbc"), "y": [0, 0, 1, 1, 0]})
    with pytest.raises(ManifestError, match=r"slide_id repeated \(2: 'a', 'b'\)"):
        load_labels(frame, "y")
    with pytest.raises(ManifestError, match="does not exist"):
        load_labels(tmp_path / "none.csv", "y")
