"""The packed bank (gigassl.bankstore): packed once, reused while the files are unchanged, packed once by
processes opening it together, refused when its files were made with different settings."""

import numpy as np
import pytest

from gigassl import io
from gigassl.bankstore import PackedBank
from gigassl.errors import GigasslError

from .conftest import write_synthetic_bank


def test_packed_bank_is_reused_and_refreshed(bank_dir, tmp_path):
    import shutil

    copy = tmp_path / "bank"
    shutil.copytree(bank_dir, copy, ignore=shutil.ignore_patterns("packed"))
    PackedBank(copy)
    stamp = (copy / "packed" / "meta.json").stat().st_mtime_ns
    PackedBank(copy)
    assert (copy / "packed" / "meta.json").stat().st_mtime_ns == stamp  # unchanged bank: no repacking
    (copy / "S0006.h5").unlink()
    assert len(PackedBank(copy)) == 5  # a changed bank is packed again


def test_a_bank_folder_mixing_encoders_is_refused_when_packed(tmp_path):
    folder = write_synthetic_bank(tmp_path / "mixed", slides=2)
    data = io.read_bank(folder / "S001.h5")
    io.write_bank(folder / "S001.h5", io.Bank(data.features, data.coords, data.plain_features, data.plain_coords,
                                              {**data.attrs, "encoder": "other"}))
    with pytest.raises(GigasslError, match=r"mixes files made with different settings: S001.h5 differs from S000.h5 "
                                           r"in encoder \('synthetic' in S000.h5, 'other' in S001.h5\)"):
        PackedBank(folder)


def test_missing_slides_are_listed_and_plain_gives_each_slides_tiles(tmp_path):
    folder = write_synthetic_bank(tmp_path / "bank", slides=3)
    bank = PackedBank(folder)
    np.testing.assert_array_equal(bank.indices(["S002", "S000"]), [2, 0])
    features, coords = bank.plain(1)
    assert features.shape == (48, 256) and coords.shape == (48, 2) and bank.offsets.tolist() == [0, 48, 96, 144]
    with pytest.raises(GigasslError, match=r"no usable file in .* \(2: 'S009', 'S010'\)"):
        bank.indices(["S000", "S009", "S010"])


def _open_bank(folder):
    """A process that opens (and, if needed, packs) a bank; returns its packed ids and pack time stamp."""
    bank = PackedBank(folder)
    return bank.ids, (bank.dir / "meta.json").stat().st_mtime_ns


def test_processes_opening_a_bank_at_once_pack_it_once(bank_dir, tmp_path):
    """torchrun ranks (or parallel notebooks) open the same bank: one packs under the file lock, the others use it."""
    import multiprocessing
    import pickle
    import shutil

    copy = tmp_path / "bank"
    shutil.copytree(bank_dir, copy, ignore=shutil.ignore_patterns("packed"))
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        results = pool.map(_open_bank, [copy, copy])
    assert results[0] == results[1]  # the same pack: packed once, the second process waited and reused it
    bank = PackedBank(copy)
    clone = pickle.loads(pickle.dumps(bank))  # what a DataLoader worker receives: the folder, not the arrays
    assert len(pickle.dumps(bank)) < 1000 and clone.ids == bank.ids
    np.testing.assert_array_equal(clone.features[2], bank.features[2])


# ------------------------------------------------------------------ #25: bad slides left out and listed
def test_slides_with_nan_features_are_left_out_and_listed(tmp_path):
    import h5py

    folder = write_synthetic_bank(tmp_path / "bank", slides=4, draws=2, tiles=4, dim=8)
    with h5py.File(folder / "S001.h5", "r+") as fh:  # one NaN tile row in the plain features
        fh["plain_features"][7, 3] = np.nan
    with h5py.File(folder / "S002.h5", "r+") as fh:  # one NaN in an augmented draw only
        fh["features"][1, 2, 0] = np.inf
    (folder / "S003.h5").write_bytes(b"")  # zero bytes
    bank = PackedBank(folder)
    assert bank.ids == ["S000"] and sorted(bank.skipped) == ["S001", "S002", "S003"]
    assert "1 of 48 tiles (7)" in bank.skipped["S001"] and "1 of 2 augmentation draws (1)" in bank.skipped["S002"]
    assert "empty (0 bytes)" in bank.skipped["S003"]
    assert bank.features.shape == (1, 2, 4, 8) and np.isfinite(bank.features.astype(np.float32)).all()
    assert np.isfinite(np.asarray(bank.plain_features, np.float32)).all()


def test_packing_leaves_no_lock_and_no_temporary_behind(tmp_path):
    folder = write_synthetic_bank(tmp_path / "bank", slides=2, dim=8)
    bank = PackedBank(folder, cache_dir=tmp_path / "cache" / "pack")
    assert len(bank) == 2 and sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["pack"]
    (folder / "S000.h5").write_bytes(b"")
    (folder / "S001.h5").write_bytes(b"junk")
    with pytest.raises(GigasslError, match="No file of .* holds usable tiles"):
        PackedBank(folder, cache_dir=tmp_path / "cache" / "pack")
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["pack"]  # no .lock, no pack.tmp<pid>
