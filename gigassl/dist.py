"""All distributed helpers of gigassl: rank and world size, gathering with gradients, synchronised BatchNorm.

Every function works without ``torch.distributed`` (or before it is initialised): rank 0 of a world of 1.
``SyncBatchNorm1d`` works on CPU with the gloo backend (torch's ``nn.SyncBatchNorm`` needs CUDA).
"""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist
from torch import nn


def is_initialized() -> bool:
    """True when a torch.distributed process group is up."""
    return tdist.is_available() and tdist.is_initialized()


def rank() -> int:
    """This process's rank (0 when torch.distributed is not initialised)."""
    return tdist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """The number of processes (1 when torch.distributed is not initialised)."""
    return tdist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0: the process that writes files and logs."""
    return rank() == 0


def backend_for(device: str) -> str:
    """The process-group backend for a resolved device: ``nccl`` for CUDA, ``gloo`` for anything else (a
    ``torchrun ... --device cpu`` on a GPU node gets gloo, whose collectives take CPU tensors)."""
    return "nccl" if str(device).split(":")[0] == "cuda" else "gloo"


def setup_from_env(device: str = "cpu", timeout_minutes: float = 60.0) -> bool:
    """Initialise the process group from torchrun's environment, if present.

    Reads ``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT`` (and ``LOCAL_RANK`` for the GPU); the backend
    follows the resolved ``device`` (:func:`backend_for`). ``timeout_minutes`` bounds every collective (NCCL's default
    is 10 minutes; work that can take longer, such as packing a large bank, is done before this call). Returns True
    when running distributed (already initialised or initialised now), False when those variables are absent (a
    plain single process). Call :func:`cleanup` at the end.
    """
    import datetime

    if is_initialized():
        return True
    if not all(name in os.environ for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")):
        return False
    backend = backend_for(device)
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    tdist.init_process_group(backend=backend, init_method="env://",
                             timeout=datetime.timedelta(minutes=float(timeout_minutes)))
    return True


def cleanup() -> None:
    """Destroy the process group (if any): the end of a distributed run."""
    if is_initialized():
        tdist.destroy_process_group()


def local_device(device: str) -> str:
    """``cuda:<LOCAL_RANK>`` for a CUDA device under torchrun (one GPU per process), else ``device``."""
    if str(device).split(":")[0] == "cuda" and "LOCAL_RANK" in os.environ:
        return f"cuda:{int(os.environ['LOCAL_RANK'])}"
    return device


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward: sum the gradients of all ranks and keep this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor):
        parts = [torch.empty_like(x) for _ in range(tdist.get_world_size())]
        tdist.all_gather(parts, x.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack(grads).contiguous()
        tdist.all_reduce(stacked)
        return stacked[tdist.get_rank()]


class _AllReduceSum(torch.autograd.Function):
    """all_reduce (sum) forward; backward: all_reduce (sum) of the gradients (each rank's output feeds its own
    loss, and the gradient of the sum of the losses w.r.t. the input sums over ranks)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone(memory_format=torch.contiguous_format)
        tdist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        tdist.all_reduce(grad)
        return grad


def all_reduce_with_grad(x: torch.Tensor) -> torch.Tensor:
    """The sum of ``x`` over ranks, differentiable (what ``torch.distributed.nn.functional.all_reduce`` does; that
    function warns that it is deprecated in torch 2.13). ``x`` itself when not distributed. Shape: unchanged."""
    return _AllReduceSum.apply(x) if world_size() > 1 else x


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` of all ranks along dim 0, letting gradients flow back to every rank's ``x``.

    The gradient each rank receives is that of the SUM of all ranks' losses (DDP then averages parameter
    gradients over ranks, i.e. the gradient of the mean loss). Every rank must pass the same shape
    (use ``drop_last=True`` in the sampler).

    Shape:
        (B, ...) -> (world_size * B, ...); ``x`` itself when not distributed.

    Raises:
        ValueError: the ranks passed different shapes.
    """
    if world_size() == 1:
        return x
    shape = torch.tensor(list(x.shape), dtype=torch.long, device=x.device)
    shapes = [torch.empty_like(shape) for _ in range(world_size())]
    tdist.all_gather(shapes, shape)
    if any(not torch.equal(s, shape) for s in shapes):
        raise ValueError(
            f"gather_with_grad needs the same shape on every rank; got {[tuple(s.tolist()) for s in shapes]}. "
            "Give every rank the same batch size (drop_last=True)."
        )
    return torch.cat(_GatherWithGrad.apply(x), 0)


class SyncBatchNorm1d(nn.BatchNorm1d):
    """BatchNorm1d whose training statistics are computed over the batches of all ranks.

    In training mode with ``world_size() > 1`` the batch mean and (biased) variance come from autograd-aware
    all_reduces (:func:`all_reduce_with_grad`) of each rank's sum, count and sum of squared deviations from the
    global mean, so that gradients also flow across ranks; the running statistics are
    updated as in BatchNorm1d (with the unbiased variance). Otherwise it is exactly ``nn.BatchNorm1d``.
    Works with gloo (CPU) and nccl.

    Shape:
        (N, C) or (N, C, L) -> same.
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not (self.training and world_size() > 1):
            return super().forward(input)
        self._check_input_dim(input)
        channels_last = input.transpose(1, -1) if input.dim() == 3 else input
        flat = channels_last.reshape(-1, self.num_features)
        local = torch.cat([flat.sum(0), flat.new_full((1,), flat.shape[0])])
        total = all_reduce_with_grad(local)
        count, mean = total[-1], total[:-1] / total[-1]
        centred = flat - mean
        var = all_reduce_with_grad((centred * centred).sum(0)) / count
        out = centred * torch.rsqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                factor = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.mul_(1 - factor).add_(mean.detach(), alpha=factor)
                self.running_var.mul_(1 - factor).add_(unbiased.detach(), alpha=factor)
        out = out.reshape(channels_last.shape)
        return out.transpose(1, -1) if input.dim() == 3 else out


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``nn.BatchNorm1d`` inside ``module`` (those of ``SparseBatchNorm`` included) by
    :class:`SyncBatchNorm1d`, keeping the parameters (the same objects), buffers and training mode.

    Returns the converted module (a new object only when ``module`` itself is a BatchNorm1d).
    """
    if isinstance(module, nn.BatchNorm1d) and not isinstance(module, SyncBatchNorm1d):
        synced = SyncBatchNorm1d(module.num_features, module.eps, module.momentum, module.affine,
                                 module.track_running_stats)
        if module.affine:
            synced.weight, synced.bias = module.weight, module.bias
        if module.track_running_stats:
            synced.running_mean, synced.running_var = module.running_mean, module.running_var
            synced.num_batches_tracked = module.num_batches_tracked
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        converted = convert_sync_batchnorm(child)
        if converted is not child:
            module.add_module(name, converted)
    return module
