"""The result charts (gigassl.book.charts) draw what they are given: one panel per task, one line per method, counts in
the confusion matrix, the paper's two-curve Fig. 2."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest

from gigassl.book import charts


def _predictions(seed=0):
    gen = np.random.default_rng(seed)
    rows = []
    for method, signal in (("gigassl", 2.0), ("averagemil", 0.5)):
        for task, classes in (("two", ["a", "b"]), ("three", ["x", "y", "z"])):
            for split in ("split_0", "split_1"):
                for i in range(30):
                    label = classes[i % len(classes)]
                    logits = gen.normal(size=len(classes)) + signal * (np.array(classes) == label)
                    p = np.exp(logits) / np.exp(logits).sum()
                    rows.append({"method": method, "task": task, "split": split, "slide_id": f"s{i}", "label": label,
                                 "predicted": classes[int(np.argmax(p))], **{f"p:{c}": v for c, v in zip(classes, p)}})
    return pd.DataFrame(rows)


def test_roc_curves_one_panel_per_task_one_line_per_method_with_the_mean_auc():
    fig = charts.roc_curves(_predictions())
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[0].startswith("gigassl (AUC ") and labels[1].startswith("averagemil (AUC ")
    assert float(labels[0][-6:-1]) > float(labels[1][-6:-1])  # the stronger signal has the higher AUC


def test_confusion_matrix_writes_the_counts():
    predictions = _predictions()
    fig = charts.confusion_matrices(predictions, "three")
    texts = [int(t.get_text()) for t in fig.axes[0].texts]
    assert sum(texts) == int(((predictions["task"] == "three") & (predictions["method"] == "gigassl")).sum())


def test_split_strips_and_fig2_draw_each_cell():
    rows = [{"method": m, "protocol": "paper", "task": t, "budget": b, "split": f"split_{k}", "auc": 0.7 + 0.01 * k}
            for m in ("gigassl", "averagemil") for t in ("t1", "t2") for b in ("full", "25p") for k in range(5)]
    fig = charts.split_strips(pd.DataFrame(rows))
    assert len(fig.axes) == 4 and fig.axes[0].get_title() == "t1, full"
    tiny = pd.DataFrame([{"method": m, "protocol": "fair", "task": t, "budget": str(n), "split": f"split_{k}",
                          "auc": 0.6 + (0.1 if m == "gigassl" else 0) + 0.001 * n}
                         for m in ("gigassl", "deepmil") for t in ("t1", "t2") for n in (10, 20) for k in range(3)])
    from gigassl.evaluation.compare import paired

    gains = paired(tiny, "gigassl", "deepmil", n_bootstrap=50)
    gains = gains.assign(train_size=gains["budget"].astype(int))
    fig = charts.plot_fig2(tiny, gains, protocol="fair")
    top, bottom = fig.axes
    assert len(top.get_lines()) == 2 and bottom.get_ylabel() == "gain (AUC)"
    mean_line = [line for line in bottom.get_lines() if line.get_label() == "mean over tasks"][0]
    assert np.allclose(mean_line.get_ydata(), 0.1)


def test_retrieval_bars_mark_chance():
    precision = pd.DataFrame([{"representation": r, "attribute": a, "k": k, "precision": 0.5, "chance": 0.25}
                              for r in ("gigassl", "averagemil") for a in ("t", "center") for k in (1, 5)])
    fig = charts.retrieval_bars(precision)
    assert len(fig.axes) == 2
    assert any(np.allclose(line.get_ydata(), 0.25) for line in fig.axes[0].get_lines())


def test_split_strips_draw_the_same_picture_twice():
    rows = [{"method": m, "protocol": "paper", "task": "t", "budget": "full", "split": f"split_{k}", "auc": 0.6 + 0.03 * k}
            for m in ("gigassl", "averagemil") for k in range(6)]
    first, second = (charts.split_strips(pd.DataFrame(rows)) for _ in range(2))
    dots = [[c.get_offsets().data.tolist() for c in fig.axes[0].collections if len(c.get_offsets()) == 6]
            for fig in (first, second)]
    assert dots[0] == dots[1] and len(dots[0]) == 2
