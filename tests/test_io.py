"""HDF5 round trips (coords, banks, embeddings), atomic writes and clear errors on bad files."""

import os
import stat

import h5py
import numpy as np
import pytest

from gigassl import io
from gigassl.errors import GigasslError, ManifestError
from gigassl.utils import atomic_path, rng, torch_generator, write_text_atomic


def test_coords_round_trip(tmp_path):
    coords = np.array([[0, 448], [896, 0]])
    io.write_coords(tmp_path / "s.h5", coords, patch_size=224, patch_size_level0=448, target_mpp=1.0,
                    level0_mpp=0.5, level0_width=2000, level0_height=1000, name="s")
    back, attrs = io.read_coords(tmp_path / "s.h5")
    np.testing.assert_array_equal(back, coords)
    assert back.dtype == np.int64 and attrs["patch_size_level0"] == 448 and attrs["name"] == "s"
    with h5py.File(tmp_path / "s.h5") as fh:  # TRIDENT reads the attributes from the coords dataset
        assert fh["coords"].attrs["patch_size"] == 224


def test_bank_and_embeddings_round_trip(tmp_path):
    g = np.random.default_rng(0)
    bank = io.Bank(g.normal(size=(2, 3, 4)), g.integers(0, 9, (2, 3, 2)), g.normal(size=(5, 4)),
                   g.integers(0, 9, (5, 2)), {"encoder": "resnet18", "seed": 3, "weights": None})
    io.write_bank(tmp_path / "b.h5", bank)
    back = io.read_bank(tmp_path / "b.h5")
    assert back.features.dtype == np.float16 and back.attrs["seed"] == 3 and back.attrs["weights"] == ""
    np.testing.assert_allclose(back.features, bank.features, atol=1e-2)
    plain = io.read_bank(tmp_path / "b.h5", augmented=False)
    assert plain.features is None and plain.plain_features.shape == (5, 4)
    assert io.read_bank_attrs(tmp_path / "b.h5")["shape"] == (2, 3, 4)
    io.write_embeddings(tmp_path / "e.h5", ["a", "b"], np.eye(2), views=50)
    ids, emb, attrs = io.read_embeddings(tmp_path / "e.h5")
    assert ids == ["a", "b"] and emb.dtype == np.float32 and attrs["views"] == 50
    np.save(tmp_path / "e.npy", np.eye(3))
    np.save(tmp_path / "ids.npy", np.array(["x", "y", "z"]))
    assert io.read_embeddings(tmp_path / "e.npy", tmp_path / "ids.npy")[0] == ["x", "y", "z"]
    with pytest.raises(ManifestError, match="--ids"):
        io.read_embeddings(tmp_path / "e.npy")


def test_bad_files_are_reported(tmp_path):
    with pytest.raises(GigasslError, match="does not exist"):
        io.read_coords(tmp_path / "none.h5")
    (tmp_path / "junk.h5").write_bytes(b"junk")
    with pytest.raises(GigasslError, match="not a readable HDF5 file"):
        io.read_bank(tmp_path / "junk.h5")
    with h5py.File(tmp_path / "other.h5", "w") as fh:
        fh["x"] = np.zeros(3)
    with pytest.raises(GigasslError, match=r"has datasets \[.x.\]; expected .features."):
        io.read_bank(tmp_path / "other.h5")


def test_atomic_writes_leave_nothing_half_written(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(tmp_path.iterdir()) == []
    write_text_atomic(target, "whole")
    assert target.read_text() == "whole"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644


def test_random_streams_are_keyed():
    assert rng(1, 2).integers(1000) == rng(1, 2).integers(1000)
    assert rng(1, 2).integers(10**9) != rng(2, 1).integers(10**9)
    import torch

    assert torch.equal(torch.rand(3, generator=torch_generator(4, 5)), torch.rand(3, generator=torch_generator(4, 5)))


def test_a_file_locked_by_a_writer_is_told_apart_from_a_corrupt_one(tmp_path):
    import subprocess
    import sys

    import pytest

    from gigassl.errors import GigasslError
    from gigassl.io import read_bank_attrs

    path = tmp_path / "busy.h5"
    writer = subprocess.Popen([sys.executable, "-c", f"import h5py, time\nf = h5py.File({str(path)!r}, 'w')\n"
                               "print('open', flush=True)\ntime.sleep(30)"], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "open"
        with pytest.raises(GigasslError, match="open for writing in another process"):
            read_bank_attrs(path)
    finally:
        writer.kill()
        writer.wait()
    (tmp_path / "bad.h5").write_bytes(b"not hdf5 at all")
    with pytest.raises(GigasslError, match="truncated or another kind of file") as err:
        read_bank_attrs(tmp_path / "bad.h5")
    assert "delete" not in str(err.value).lower()  # an input is never to be deleted
