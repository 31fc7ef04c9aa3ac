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


def _shortcut_cohort(n_cases=160, seed=0):
    """Label mostly follows the centre (c0, c1: 80% a; c2, c3: 80% b); one slide a case."""
    import numpy as np

    g = np.random.default_rng(seed)
    rows = []
    for case in range(n_cases):
        centre = case % 4
        label = ("a" if centre < 2 else "b") if g.random() < 0.8 else ("b" if centre < 2 else "a")
        rows.append((f"s{case:03d}", f"p{case:03d}", label, f"c{centre}"))
    return pd.DataFrame(rows, columns=["slide_id", "case_id", "y", "center"])


def test_unseen_centres_expose_a_centre_shortcut():
    import numpy as np

    from gigassl.evaluation.centres import unseen_centre_runs

    frame = _shortcut_cohort()
    g = np.random.default_rng(1)
    signature = {f"c{i}": g.normal(size=8) * 3 for i in range(4)}
    biology = {"a": g.normal(size=8) * 1.5, "b": g.normal(size=8) * 1.5}
    noise = g.normal(size=(len(frame), 8))
    shortcut = np.stack([signature[c] for c in frame.center]) + noise
    true = np.stack([biology[y] for y in frame.y]) + noise
    ids = list(frame.slide_id)
    out = unseen_centre_runs({"shortcut": (ids, shortcut), "biology": (ids, true)}, frame, "y", n_random=3)
    auroc = out[out.metric == "auroc"].assign(kind=lambda t: t.setting.str.split(":").str[0])
    mean = auroc.groupby(["method", "kind"])["value"].mean()
    assert mean["shortcut", "random"] > 0.7 and mean["shortcut", "held_out"] < 0.65  # the shortcut falls
    assert mean["biology", "held_out"] > 0.9 and mean["biology", "random"] > 0.9  # biology holds
    assert set(out.setting) == {f"{k}:c{i}" for k in ("held_out", "random") for i in range(4)}
    key = ["setting", "draw", "metric"]
    a, b = (out[out.method == m].set_index(key) for m in ("shortcut", "biology"))
    assert (a["n_train"] == b.loc[a.index, "n_train"]).all() and (a["n_test"] == b.loc[a.index, "n_test"]).all()
    held = out[out.setting.str.startswith("held_out")].groupby("centre")["n_train"].first()
    rand = out[out.setting.str.startswith("random")].groupby("centre")["n_train"].max()
    assert (rand <= held).all()


def test_held_out_auroc_equals_a_direct_probe_and_skipped_centres_are_recorded():
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.preprocessing import normalize

    from gigassl.evaluation.centres import unseen_centre_runs

    frame = _shortcut_cohort(n_cases=80)
    frame.loc[frame.center == "c3", "y"] = "b"
    twins = frame[frame.center == "c1"].head(12).assign(center="c2")  # patients of c1 with a slide in c2 too
    frame = pd.concat([frame, twins.assign(slide_id=twins.slide_id + "-2")], ignore_index=True)
    x = np.random.default_rng(2).normal(size=(len(frame), 5)) + (frame.y == "a").to_numpy()[:, None]
    out = unseen_centre_runs({"m": (list(frame.slide_id), x)}, frame, "y", n_random=1)
    test = (frame.center == "c1").to_numpy()
    train = ~test & ~frame.case_id.isin(frame.case_id[test]).to_numpy()
    model = LogisticRegression(C=10, class_weight="balanced", max_iter=1000).fit(normalize(x[train]), frame.y[train])
    expected = roc_auc_score(frame.y[test] == "b", model.predict_proba(normalize(x[test]))[:, 1])
    got = out[(out.setting == "held_out:c1") & (out.metric == "auroc")]["value"].item()
    assert abs(got - expected) < 1e-6
    sizes = out[out.centre == "c1"].groupby("setting")["n_train"].first()
    assert sizes["held_out:c1"] == train.sum() == (~test).sum() - 12  # the twins' c2 slides leave the training side
    assert sizes["random:c1"] == sizes["held_out:c1"]  # the random split's training part cut to the same size
    skipped = out[out.centre == "c3"]
    assert len(skipped) == 1 and np.isnan(skipped["value"].item()) and "skipped" in skipped["note"].item()
