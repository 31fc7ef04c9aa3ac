"""Distributed helpers (gigassl.dist): two CPU processes with gloo against one process on the full batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from torch import nn

from gigassl import dist
from gigassl.aggregators import Projector
from gigassl.loss import NTXentLoss
from gigassl.sparse import SparseBatchNorm
from gigassl.seeding import torch_seeded

WORLD, BATCH, DIM, CHANNELS = 2, 6, 16, 5


def full_batch():
    """The global batch every rank (and the single-process reference) starts from."""
    gen = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(BATCH, DIM, generator=gen), torch.randn(BATCH, DIM, generator=gen)
    x = 3.0 + 2.0 * torch.randn(BATCH, CHANNELS, generator=gen)
    upstream = torch.randn(BATCH, CHANNELS, generator=gen)
    return z1, z2, x, upstream


def batchnorm() -> nn.BatchNorm1d:
    with torch_seeded(0):
        bn = nn.BatchNorm1d(CHANNELS, momentum=0.3)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.normal_()
    return bn


def worker(rank: int, port: int, out_dir: str) -> None:
    tdist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        z1, z2, x, upstream = full_batch()
        part = slice(rank * BATCH // WORLD, (rank + 1) * BATCH // WORLD)
        # (a) NT-Xent with negatives gathered from both ranks
        z1_local, z2_local = z1[part].clone().requires_grad_(True), z2[part].clone().requires_grad_(True)
        loss = NTXentLoss(0.1)(z1_local, z2_local)
        loss.backward()
        # (b) synchronised BatchNorm, twice (running statistics accumulate)
        bn = dist.convert_sync_batchnorm(batchnorm()).train()
        x_local = x[part].clone().requires_grad_(True)
        for _ in range(2):
            out = bn(x_local)
        (out * upstream[part]).sum().backward()
        torch.save(
            {
                "rank": dist.rank(), "world": dist.world_size(), "loss": loss.detach(),
                "grad_z1": z1_local.grad, "grad_z2": z2_local.grad,
                "bn_out": out.detach(), "grad_x": x_local.grad, "grad_weight": bn.weight.grad,
                "running_mean": bn.running_mean, "running_var": bn.running_var,
            },
            os.path.join(out_dir, f"rank{rank}.pt"),
        )
    finally:
        tdist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_match_one_process(tmp_path):
    mp.spawn(worker, args=(free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    assert [r["rank"] for r in results] == [0, 1] and all(r["world"] == WORLD for r in results)

    z1, z2, x, upstream = full_batch()
    z1.requires_grad_(True)
    z2.requires_grad_(True)
    loss = NTXentLoss(0.1)(z1, z2)
    loss.backward()
    # (a) the mean of the per-rank losses is the full-batch loss; DDP-style averaged gradients match
    torch.testing.assert_close(torch.stack([r["loss"] for r in results]).mean(), loss.detach())
    torch.testing.assert_close(torch.cat([r["grad_z1"] for r in results]) / WORLD, z1.grad)
    torch.testing.assert_close(torch.cat([r["grad_z2"] for r in results]) / WORLD, z2.grad)

    # (b) synchronised BatchNorm = BatchNorm1d on the full batch: output, running stats, gradients
    bn = batchnorm().train()
    x.requires_grad_(True)
    for _ in range(2):
        out = bn(x)
    (out * upstream).sum().backward()
    torch.testing.assert_close(torch.cat([r["bn_out"] for r in results]), out.detach())
    for result in results:
        torch.testing.assert_close(result["running_mean"], bn.running_mean)
        torch.testing.assert_close(result["running_var"], bn.running_var)
    torch.testing.assert_close(torch.cat([r["grad_x"] for r in results]), x.grad)
    torch.testing.assert_close(sum(r["grad_weight"] for r in results), bn.weight.grad)


# ------------------------------------------------------------------------------------------ single process


def test_defaults_without_a_process_group(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert (dist.rank(), dist.world_size(), dist.is_main()) == (0, 1, True)
    assert dist.setup_from_env() is False
    x = torch.randn(3, 2)
    assert dist.gather_with_grad(x) is x


def test_convert_keeps_parameters_and_equals_batchnorm_in_one_process():
    with torch_seeded(0):
        model = nn.Sequential(Projector(8, 8, 4), SparseBatchNorm(4).bn)
        reference = nn.Sequential(Projector(8, 8, 4), SparseBatchNorm(4).bn)
    reference.load_state_dict(model.state_dict())
    weight = model[0].net[2].weight
    converted = dist.convert_sync_batchnorm(model)
    synced = [m for m in converted.modules() if isinstance(m, dist.SyncBatchNorm1d)]
    assert len(synced) == 3 and converted[0].net[2].weight is weight
    x = torch.randn(10, 8, generator=torch.Generator().manual_seed(0))
    for mode in (True, False):
        converted.train(mode)
        reference.train(mode)
        torch.testing.assert_close(converted(x), reference(x))
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(converted.state_dict()[key], value)


def test_convert_reaches_sparse_batchnorm():
    module = dist.convert_sync_batchnorm(SparseBatchNorm(3))
    assert isinstance(module.bn, dist.SyncBatchNorm1d)


@pytest.mark.parametrize("shape", [(6, 3), (6, 3, 4)])
def test_sync_batchnorm_shapes_in_one_process(shape):
    bn = dist.SyncBatchNorm1d(3)
    assert bn(torch.randn(shape)).shape == shape


def test_the_backend_follows_the_resolved_device_and_the_group_is_cleaned_up(monkeypatch):
    assert dist.backend_for("cuda") == dist.backend_for("cuda:3") == "nccl"
    assert dist.backend_for("cpu") == dist.backend_for("mps") == "gloo"  # torchrun --device cpu on a GPU node
    monkeypatch.setenv("LOCAL_RANK", "2")
    assert dist.local_device("cuda") == "cuda:2" and dist.local_device("cpu") == "cpu"
    import socket

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    for name, value in {"RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}.items():
        monkeypatch.setenv(name, value)
    assert dist.setup_from_env("cpu", timeout_minutes=1) is True
    try:
        assert torch.distributed.get_backend() == "gloo" and dist.is_initialized()
    finally:
        dist.cleanup()
    assert not dist.is_initialized()
    dist.cleanup()  # nothing to clean: no error
