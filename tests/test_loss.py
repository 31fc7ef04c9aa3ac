"""NT-Xent (gigassl.loss) against a loop written straight from Eq. 1 of the paper."""

from __future__ import annotations

import math

import pytest
import torch

from gigassl.errors import ConfigError
from gigassl.loss import NTXentLoss


def eq1_reference(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> float:
    """Eq. 1: l_i = -log( exp(sim(X_i, pos_i)/tau) / sum_{x in batch, x != X_i} exp(sim(X_i, x)/tau) ),
    averaged over all 2B views; sim = cosine similarity."""
    views = [v / v.norm() for v in torch.cat([z1, z2]).double()]
    n, batch = len(views), len(z1)
    total = 0.0
    for i in range(n):
        positive = (i + batch) % n
        numerator = math.exp(float(views[i] @ views[positive]) / tau)
        denominator = sum(math.exp(float(views[i] @ views[k]) / tau) for k in range(n) if k != i)
        total += -math.log(numerator / denominator)
    return total / n


def pair(seed: int, batch: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, dim, generator=gen), torch.randn(batch, dim, generator=gen)


@pytest.mark.parametrize("batch,dim", [(2, 3), (5, 8), (16, 32)])
@pytest.mark.parametrize("tau", [0.05, 0.2, 1.0])
def test_matches_equation_1(batch, dim, tau):
    z1, z2 = pair(batch * dim, batch, dim)
    assert NTXentLoss(tau)(z1, z2).item() == pytest.approx(eq1_reference(z1, z2, tau), rel=1e-5)


def test_correlated_views_give_a_lower_loss():
    z1, noise = pair(0, 8, 16)
    loss = NTXentLoss(0.1)
    assert loss(z1, z1 + 0.01 * noise) < loss(z1, noise)


def test_invariant_to_the_scale_of_the_inputs():
    z1, z2 = pair(1, 6, 10)
    loss = NTXentLoss(0.05)
    torch.testing.assert_close(loss(3.0 * z1, 0.25 * z2), loss(z1, z2))


def test_symmetric_in_the_two_views():
    z1, z2 = pair(2, 7, 12)
    loss = NTXentLoss(0.05)
    torch.testing.assert_close(loss(z2, z1), loss(z1, z2))


def test_gradients_are_finite():
    z1, z2 = pair(3, 8, 16)
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    NTXentLoss(0.05)(z1, z2).backward()
    assert torch.isfinite(z1.grad).all() and torch.isfinite(z2.grad).all()
    assert z1.grad.abs().sum() > 0


@pytest.mark.parametrize("tau", [0, -0.1, float("nan"), "0.05"])
def test_invalid_temperature(tau):
    with pytest.raises(ConfigError, match="temperature"):
        NTXentLoss(tau)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="one shape"):
        NTXentLoss()(torch.zeros(4, 8), torch.zeros(3, 8))
