"""The per-slide batch runner: a bad slide is listed and the batch goes on; a device failure stops it."""

import pandas as pd
import pytest

from gigassl.batch import run_batch
from gigassl.errors import DeviceError
from gigassl.devices import is_device_error


def test_a_bad_slide_is_listed_but_a_device_failure_stops_the_batch(tmp_path):
    def work(slide_id, tmp):
        if slide_id == "bad":
            raise ValueError("no tissue")
        if slide_id == "oom":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        tmp.write_text(slide_id)

    report = run_batch([(s, tmp_path / f"{s}.txt") for s in ("a", "bad", "b")], work, tmp_path, progress=False)
    assert report.done == ["a", "b"] and list(report.failed) == ["bad"]
    assert pd.read_csv(tmp_path / "failures.csv")["slide_id"].tolist() == ["bad"]
    with pytest.raises(DeviceError, match=r"while processing oom .*lower --batch-size") as err:
        run_batch([(s, tmp_path / f"{s}.txt") for s in ("c", "oom", "d")], work, tmp_path, progress=False)
    assert isinstance(err.value.__cause__, RuntimeError)
    assert (tmp_path / "c.txt").exists() and not (tmp_path / "d.txt").exists()  # done work is kept; resumes


def test_device_errors_are_told_from_data_errors():
    import torch

    assert is_device_error(torch.cuda.OutOfMemoryError("CUDA out of memory"))
    assert is_device_error(RuntimeError("CUDA error: device-side assert triggered"))
    assert is_device_error(RuntimeError("MPS backend out of memory (MPS allocated: 8.00 GB)"))
    assert is_device_error(MemoryError())
    assert not is_device_error(RuntimeError("shape '[2, 3]' is invalid for input of size 5"))
    assert not is_device_error(ValueError("CUDA"))  # only runtime and memory errors
