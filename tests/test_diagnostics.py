"""Label-free diagnostics on embeddings with a known answer: collapsed, uniform on the sphere, two clusters."""

import numpy as np
import pytest

from gigassl.evaluation.diagnostics import (alignment, centre_predictability, diagnose, effective_rank, mean_cosine,
                                            uniformity)
from gigassl.errors import ConfigError


def sphere(n=2000, d=64, seed=0):
    x = np.random.default_rng(seed).normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_collapsed_embeddings():
    x = np.tile(np.random.default_rng(0).normal(size=(1, 32)), (50, 1)) * 3.0
    assert mean_cosine(x) == pytest.approx(1.0)
    assert uniformity(x) == pytest.approx(0.0, abs=1e-9)
    assert effective_rank(x) == pytest.approx(1.0, abs=1e-6)
    assert alignment(x, x) == pytest.approx(0.0)


def test_uniform_on_the_sphere():
    x = sphere()
    assert abs(mean_cosine(x)) < 0.01
    # E exp(-2 |x - y|^2) = exp(-4) E exp(4 x.y); in high dimension x.y ~ N(0, 1/d): log = -4 + 8/d
    assert uniformity(x) == pytest.approx(-4 + 8 / 64, abs=0.05)
    assert effective_rank(x) > 0.9 * 64
    assert alignment(x, -x) == pytest.approx(4.0)  # antipodal pairs


def test_two_clusters():
    g = np.random.default_rng(1)
    centres = np.stack([np.eye(16)[0], np.eye(16)[1]])
    labels = np.repeat([0, 1], 100)
    x = centres[labels] + 1e-4 * g.normal(size=(200, 16))
    assert effective_rank(x) == pytest.approx(2.0, abs=0.1)
    assert mean_cosine(x) == pytest.approx(0.5 * 99 / 199 * 2, abs=0.02)  # same-cluster pairs cos 1, others 0
    assert -4 < uniformity(x) < -0.5


def test_alignment_is_wang_and_isola():
    a, b = sphere(100, 8, 0), sphere(100, 8, 1)
    assert alignment(a, b) == pytest.approx(np.mean(np.sum((a - b) ** 2, axis=1)))
    assert alignment(a * 5, b) == pytest.approx(alignment(a, b))  # rows are L2-normalised first
    with pytest.raises(ConfigError, match="one shape"):
        alignment(a, b[:10])


def test_centre_predictability_finds_a_stain_signature_and_not_noise():
    g = np.random.default_rng(2)
    centres = np.repeat(np.array(["C0", "C1", "C2", "C3"]), 30)
    signature = g.normal(size=(4, 24))[np.searchsorted(["C0", "C1", "C2", "C3"], centres)]
    x = g.normal(size=(120, 24)) + 2.0 * signature
    assert centre_predictability(x, centres) > 0.9
    noise = g.normal(size=(120, 24))
    assert centre_predictability(noise, centres) < 0.45  # chance 0.25
    groups = np.repeat(np.arange(60), 2)  # two slides per case, always on one side
    assert centre_predictability(x, centres, groups) > 0.9


def test_diagnose_row():
    x = sphere(60, 16)
    row = diagnose(x, second=x, centres=np.repeat(["a", "b"], 30))
    assert set(row) >= {"alignment", "uniformity", "mean_cosine", "effective_rank", "centre_accuracy",
                        "centre_chance"}
    assert row["alignment"] == 0 and row["centre_chance"] == 0.5 and row["slides"] == 60
    assert np.isnan(diagnose(x)["alignment"]) and np.isnan(diagnose(x)["centre_accuracy"])


def test_neighbour_agreement_against_its_chance_level():
    """An embedding organised by a label puts each row's neighbours in its class (agreement 1); one that ignores it
    agrees at the chance level of random neighbours."""
    from gigassl.evaluation.diagnostics import label_agreement_chance, neighbour_agreement

    gen = np.random.default_rng(0)
    labels = np.repeat(["a", "b", "c"], 20)
    clustered = np.eye(3)[np.repeat([0, 1, 2], 20)] + 0.01 * gen.normal(size=(60, 3))
    assert neighbour_agreement(clustered, labels, k=5) == 1.0
    chance = label_agreement_chance(labels, k=5)
    assert chance == pytest.approx(3 * 20 * 19 / (60 * 59))
    noise = gen.normal(size=(60, 16))
    assert abs(neighbour_agreement(noise, labels, k=5) - chance) < 0.12


def test_centre_predictability_on_centres_smaller_than_its_folds_uses_fewer(caplog):
    """#20: every centre smaller than the 5 folds (scikit-learn's "n_splits=5 cannot be greater than the number of
    members in each class"): as many folds as the largest centre has slides, said in the log; NaN with 1 each."""
    g = np.random.default_rng(0)
    centres = np.repeat(list("ABCD"), 2)
    x = g.normal(size=(8, 16)) + 3 * (centres[:, None] == np.array(list("ABCD"))).astype(float) @ g.normal(size=(4, 16))
    with caplog.at_level("WARNING"):
        assert 0 <= centre_predictability(x, centres) <= 1
    assert "2 folds instead of 5" in caplog.text
    assert np.isnan(centre_predictability(x[:4], list("ABCD")))


def test_linear_cka_is_one_under_rotation_and_scaling_and_low_for_independent_rows():
    from gigassl.evaluation.diagnostics import linear_cka

    g = np.random.default_rng(0)
    x = g.normal(size=(300, 12))
    rotation, _ = np.linalg.qr(g.normal(size=(12, 12)))
    assert linear_cka(x, 3.0 * x @ rotation + 5.0) == pytest.approx(1.0, abs=1e-9)  # rotation, scale, shift
    assert linear_cka(x, g.normal(size=(300, 20))) < 0.15  # independent: near 0 (bias ~ D / S)
    # a representation that keeps only part of x's variance lies in between, and the measure is symmetric
    part = x[:, :6]
    assert 0.3 < linear_cka(x, part) < 0.9 and linear_cka(x, part) == pytest.approx(linear_cka(part, x))
    # the formula: ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)
    y = np.tanh(x[:, :4] * 2) + 0.1 * g.normal(size=(300, 4))
    xc, yc = x - x.mean(0), y - y.mean(0)
    direct = np.sum((yc.T @ xc) ** 2) / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))
    assert linear_cka(x, y) == pytest.approx(direct)
    with pytest.raises(Exception, match="same S"):
        linear_cka(x, x[:10])
    assert np.isnan(linear_cka(np.ones((5, 3)), x[:5]))
