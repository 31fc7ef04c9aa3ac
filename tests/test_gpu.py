"""Tests that need an accelerator (CUDA or MPS). They are marked ``gpu``: the default run (CI, ``make test``) leaves
them out, and ``make test-gpu`` runs only them and FAILS (it does not skip) where no accelerator exists, so that a
green result always means they ran. The same checks run end to end in ``benchmarks/gpu.py``."""

import dataclasses

import numpy as np
import pytest
import torch

from gigassl.augment import TileAugmentation
from gigassl.config import AugmentConfig, EmbedConfig, MapConfig, TrainConfig
from gigassl.seeding import torch_generator

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    pytest.fail("make test-gpu needs a CUDA or MPS device; this machine has none (torch "
                f"{torch.__version__}). Run it on a GPU machine, or `make test` for the CPU suite.")


def test_augmentation_draws_are_the_same_on_the_device(device):
    x = torch.rand(16, 3, 64, 64)
    for mode in ("shared", "independent"):
        augment = TileAugmentation(AugmentConfig(mode=mode), out_px=48)
        on_cpu = augment(x, torch_generator(0, 1, 2))
        on_device = augment(x.to(device), torch_generator(0, 1, 2)).cpu()
        torch.testing.assert_close(on_device, on_cpu, atol=2e-3, rtol=0)  # the same draw; float kernels differ


def test_train_and_embed_on_the_device_agree_with_the_cpu(synthetic_bank, tmp_path, device):
    from gigassl import io
    from gigassl.embed import embed_slides
    from gigassl.train import train

    config = TrainConfig(epochs=1, batch_size=8, warmup_epochs=0, device=device, workers=1,
                         maps=MapConfig(downsample="tile"))
    checkpoint = train(synthetic_bank, tmp_path / "ssl", config, progress=False)
    embed = EmbedConfig(views=8, device=device)
    a = io.read_embeddings(embed_slides(synthetic_bank, checkpoint, tmp_path / "a.h5", embed, progress=False))[1]
    b = io.read_embeddings(embed_slides(synthetic_bank, checkpoint, tmp_path / "b.h5", embed, progress=False))[1]
    c = io.read_embeddings(embed_slides(synthetic_bank, checkpoint, tmp_path / "c.h5",
                                        dataclasses.replace(embed, device="cpu"), progress=False))[1]
    assert np.abs(a - b).max() < 1e-5  # atomic additions: equal to the stated tolerance, not bit for bit
    assert np.abs(a - c).max() < 1e-3


def test_a_device_out_of_memory_stops_a_batch(device, tmp_path):
    from gigassl.batch import run_batch
    from gigassl.errors import DeviceError

    def work(slide_id, tmp):
        torch.empty(1 << 50, dtype=torch.uint8, device=device)  # a petabyte: out of memory

    with pytest.raises(DeviceError):
        run_batch([("s", tmp_path / "s.txt")], work, tmp_path, progress=False)
