"""The NT-Xent contrastive loss of SimCLR, Eq. 1 of the paper (Sec. 3.1, Step 6)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from . import dist
from .errors import ConfigError


class NTXentLoss(nn.Module):
    """Normalised temperature-scaled cross entropy (NT-Xent) between two views of each slide.

    For every one of the 2B views (anchors) i of a batch of B slides, with z L2-normalised and
    sim(u, v) = u . v,

        l_i = -log( exp(sim(z_i, z_pos(i)) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) ),

    the positive being the other view of the same slide and the 2B - 2 other views the negatives (Eq. 1);
    the loss is the mean of l_i over all 2B anchors. When torch.distributed runs with more than one process
    and ``gather_distributed`` is True, the negatives are the views of all ranks (gathered with gradients by
    :func:`gigassl.dist.gather_with_grad`); the mean over ranks of the per-rank losses then equals the loss of
    the global batch.

    - [0] SimCLR, 2020, https://arxiv.org/abs/2002.05709
    - [1] Giga-SSL, 2023, https://arxiv.org/abs/2212.03273 (Eq. 1)

    Attributes:
        temperature: tau in Eq. 1 (the paper's code: 0.05).
        gather_distributed: gather negatives from all ranks when distributed.

    Raises:
        ConfigError: ``temperature`` is not a positive number.
        ValueError: ``z1`` and ``z2`` are not two (B, D) tensors of one shape.

    Shape:
        z1, z2: (B, D) projections of the two views (row i of each: the same slide) -> scalar.

    Examples:
        >>> loss_fn = NTXentLoss(temperature=0.05)
        >>> z1, z2 = torch.randn(8, 256), torch.randn(8, 256)  # e.g. model(views_1), model(views_2)
        >>> loss = loss_fn(z1, z2)
        >>> loss.shape
        torch.Size([])
    """

    def __init__(self, temperature: float = 0.05, gather_distributed: bool = True):
        super().__init__()
        if not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ConfigError(
                f"NT-Xent temperature must be a number > 0; got {temperature!r}. The paper's value is 0.05 "
                "(TrainConfig.temperature)."
            )
        self.temperature = float(temperature)
        self.gather_distributed = bool(gather_distributed)

    def forward(self, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
        if z1.dim() != 2 or z1.shape != z2.shape:
            raise ValueError(
                f"NTXentLoss expects two (B, D) tensors of one shape; got {tuple(z1.shape)} and {tuple(z2.shape)}."
            )
        z1, z2 = F.normalize(z1, dim=1), F.normalize(z2, dim=1)
        batch = z1.shape[0]
        if self.gather_distributed and dist.world_size() > 1:
            all1, all2, offset = dist.gather_with_grad(z1), dist.gather_with_grad(z2), dist.rank() * batch
        else:
            all1, all2, offset = z1, z2, 0
        labels = torch.arange(batch, device=z1.device) + offset
        is_self = F.one_hot(labels, all1.shape[0]).bool()
        tau = self.temperature
        same1 = (z1 @ all1.t() / tau).masked_fill(is_self, float("-inf"))  # view-1 anchors vs view-1 views
        same2 = (z2 @ all2.t() / tau).masked_fill(is_self, float("-inf"))
        cross1, cross2 = z1 @ all2.t() / tau, z2 @ all1.t() / tau  # positives on column `labels`
        logits = torch.cat([torch.cat([cross1, same1], 1), torch.cat([cross2, same2], 1)], 0)
        return F.cross_entropy(logits, torch.cat([labels, labels]))
