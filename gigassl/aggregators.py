"""Aggregators (the pooling function p_theta2 of Sec. 3.1) and the SimCLR projector.

- ``GatedAttentionPool``: gated attention MIL pooling (Ilse et al. 2018), shared by the ``attention``
  aggregator (Fig. 3C ablation) and the DeepMIL baseline (:mod:`gigassl.baselines`).
"""

from __future__ import annotations

import torch
from torch import nn


class GatedAttentionPool(nn.Module):
    """Gated attention pooling of a bag of instances (Ilse, Tomczak & Welling, ICML 2018, Eq. 9).

    "a_k = softmax_k( w^T (tanh(V h_k) * sigm(U h_k)) )", then z = sum_k a_k h_k, where h_k = ReLU(W x_k)
    is a per-instance embedding.

    Shape:
        x: (B, K, F) instances, mask: (B, K) bool (True = real instance; None = all real)
        -> z: (B, hidden), attention weights a: (B, K) (zero on padding).
    """

    def __init__(self, in_dim: int, hidden: int = 128, attention: int = 128, dropout: float = 0.0):
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.attention_v = nn.Linear(hidden, attention)
        self.attention_u = nn.Linear(hidden, attention)
        self.attention_w = nn.Linear(attention, 1)
        self.out_dim = hidden

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.embed(x)
        scores = self.attention_w(torch.tanh(self.attention_v(h)) * torch.sigmoid(self.attention_u(h))).squeeze(-1)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=1)
        if mask is not None:
            weights = torch.nan_to_num(weights, nan=0.0)
        return torch.einsum("bk,bkh->bh", weights, h), weights
