"""The independent-centre experiment: whole centres, about half the labelled slides on the probe side."""

import pandas as pd
import pytest

from gigassl.evaluation.centres import centre_holdout
from gigassl.errors import ManifestError


def _manifest(sizes: dict[str, int], pool: int = 0) -> pd.DataFrame:
    rows = [{"slide_id": f"{c}-{i}", "path": "x", "case_id": f"{c}-{i}", "center": c, "task": "a"}
            for c, n in sizes.items() for i in range(n)]
    rows += [{"slide_id": f"U{i}", "path": "x", "case_id": f"U{i}", "center": "C9", "task": None} for i in range(pool)]
    return pd.DataFrame(rows)


def test_whole_centres_balance_the_labelled_slides_and_ignore_the_pool():
    manifest = _manifest({"C0": 10, "C1": 6, "C2": 5, "C3": 1}, pool=30)
    probe = centre_holdout(manifest, seed=0)
    assert probe == sorted(probe) and "C9" not in probe
    on_probe = manifest[manifest.center.isin(probe) & manifest.task.notna()]
    assert abs(len(on_probe) - 11) <= 1  # of the 22 labelled slides
    assert centre_holdout(manifest, seed=0) == probe


def test_fewer_than_two_centres_is_refused():
    with pytest.raises(ManifestError, match="at least two centres"):
        centre_holdout(_manifest({"C0": 4}))
