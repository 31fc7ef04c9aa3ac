"""HDF5 round trips (coords, banks, embeddings), atomic writes and clear errors on bad files."""

import os
import stat

import h5py
import numpy as np
import pytest

from gigassl import io
from gigassl.errors import GigasslError, ManifestError
from gigassl.files import atomic_path, write_text_atomic
from gigassl.seeding import rng, torch_generator


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


# ------------------------------------------------------------------------------ TRIDENT and CLAM layouts
def test_trident_and_clam_coordinates_read_the_same_geometry(tmp_path):
    from tests import layouts

    coords = np.array([[0, 0], [128, 0], [128, 128]])
    trident = layouts.trident_coords(tmp_path / "job", "s1", coords, patch_size=64, level0_mag=20, target_mag=10)
    clam = layouts.clam_coords(tmp_path / "clam", "s1", coords, patch_size=64, patch_level=1, downsample=2.0)
    legacy = layouts.clam_legacy_bag(tmp_path / "legacy", "s1", np.zeros((3, 64, 64, 3), np.uint8), coords // 2,
                                     patch_level=1, downsample=2.0)
    for path, layout in ((trident, "trident"), (clam, "clam"), (legacy, "clam")):
        read, attrs = io.read_coords(path)
        np.testing.assert_array_equal(read, coords)  # legacy coords (at patch_level) come back in level-0 pixels
        assert read.dtype == np.int64
        assert (attrs["patch_size"], attrs["patch_size_level0"], attrs["layout"]) == (64, 128, layout)
    # the file is found under each tool's name, from the folder a user points at
    assert io.coords_file(trident.parent.parent, "s1") == trident
    assert io.coords_file(trident.parent, "s1") == trident
    assert io.coords_file(tmp_path / "clam", "s1") == clam
    assert io.coords_file(tmp_path / "clam", "other") is None


def test_gigassl_coordinates_carry_what_trident_reads(tmp_path):
    io.write_coords(tmp_path / "s.h5", [[0, 0], [128, 0]], patch_size=64, patch_size_level0=128, target_mpp=1.0,
                    level0_mpp=0.5, level0_width=1000, level0_height=800, name="s")
    with h5py.File(tmp_path / "s.h5", "r") as fh:
        dset = fh["coords"]
        assert dset.dtype == np.int64 and dset.chunks == (1, 2) and dset.maxshape == (None, 2)
        attrs = dict(dset.attrs)
    # TRIDENT's required attributes, consistent with its rule patch_size_level0 = patch_size * level0_mag / target_mag
    assert attrs["level0_magnification"] == 20 and attrs["target_magnification"] == 10 and attrs["overlap"] == 0
    assert attrs["patch_size"] * attrs["level0_magnification"] // attrs["target_magnification"] == 128
    assert io.magnification(0.2527) == 40 and io.magnification(0.5) == 20 and io.magnification(1.0) == 10


def test_trident_and_clam_features_current_legacy_and_empty(tmp_path):
    from tests import layouts

    g = np.random.default_rng(0)
    coords = np.array([[0, 0], [128, 0], [256, 128]])
    feats = g.normal(size=(3, 16)).astype(np.float32)
    trident = layouts.trident_coords(tmp_path / "job", "s1", coords, 64, 20, 10)
    tf = layouts.trident_features(trident, "uni_v1", feats.astype(np.float16))  # float16 under CUDA autocast
    plain, read_coords, attrs = io.read_features(tf)
    np.testing.assert_allclose(plain, feats, atol=1e-2)
    np.testing.assert_array_equal(read_coords, coords)
    assert attrs["encoder"] == "uni_v1" and attrs["patch_size_level0"] == 128 and attrs["feature_dim"] == 16
    for legacy in (False, True):
        cf = layouts.clam_features(tmp_path / f"clam{legacy}", "s1", feats, coords, legacy=legacy)
        plain, read_coords, attrs = io.read_features(cf)
        np.testing.assert_array_equal(plain, feats)
        assert read_coords.dtype == np.int64
        # CLAM records no tile size: the step of the coordinate grid stands in for it, and says so
        assert attrs["encoder"] == "external" and attrs["patch_size_level0"] == 128
        assert "grid step" in attrs["patch_size_level0_source"]
        assert io.feature_files(tmp_path / f"clam{legacy}") == {"s1": cf}  # found under h5_files/
    empty = layouts.trident_coords(tmp_path / "job", "s2", np.empty((0, 2)), 64, 20, 10)
    for shape in ((0,), (0, 16)):
        plain, read_coords, _ = io.read_features(layouts.trident_features(empty, "uni_v1", np.empty(shape, np.float32)))
        assert plain.shape[0] == 0 and read_coords.shape == (0, 2)


def test_embeddings_round_trip_in_every_format(tmp_path):
    ids, emb = ["a", "b", "c"], np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    for name in ("e.h5", "e.csv", "e.parquet", "slide_features_gigassl"):
        io.write_embeddings(tmp_path / name, ids, emb, views=50, seed=0, coords={"a": np.zeros((2, 2))})
        back_ids, back, attrs = io.read_embeddings(tmp_path / name)
        assert back_ids == ids and int(attrs["views"]) == 50
        np.testing.assert_array_equal(back, emb)
    with h5py.File(tmp_path / "slide_features_gigassl" / "a.h5", "r") as fh:  # TRIDENT's slide_features layout
        assert fh["features"].shape == (5,) and fh["coords"].shape == (2, 2)
    with pytest.raises(ManifestError, match="suffix"):
        io.write_embeddings(tmp_path / "e.txt", ids, emb)


def test_a_tile_features_folder_is_not_taken_for_embeddings(tmp_path, synthetic_bank):
    with pytest.raises(ManifestError, match="not slide embeddings.*--bank"):
        io.read_embeddings(synthetic_bank)
    with pytest.raises(GigasslError, match="lacks 'ids' or 'embeddings' \\(a bank"):
        io.read_embeddings(next(synthetic_bank.glob("*.h5")))


# ------------------------------------------------------------------ #25: what enters and leaves is checked
def _features_file(path, features, coords):
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        fh["features"] = features
        fh["coords"] = coords
    return path


def test_features_with_nan_or_coordinates_of_another_shape_are_refused_naming_the_file(tmp_path):
    from gigassl.errors import DataError

    g = np.random.default_rng(0)
    feats, coords = g.normal(size=(31, 8)).astype(np.float32), np.arange(62).reshape(31, 2) * 64
    one_row = feats.copy()
    one_row[7] = np.nan
    with pytest.raises(DataError, match=r"S1.h5: NaN or infinite values in 1 of 31 tiles \(7\)"):
        io.read_features(_features_file(tmp_path / "S1.h5", one_row, coords))
    with pytest.raises(DataError, match=r"in 31 of 31 tiles"):
        io.read_features(_features_file(tmp_path / "S2.h5", feats * np.nan, coords))
    for name, bad in (("T.h5", coords.T), ("W.h5", np.zeros((31, 3), np.int64))):  # scrambled, or of size 93
        with pytest.raises(DataError, match=rf"'coords' dataset of .*{name} has shape .*; expected \(M, 2\)"):
            io.read_features(_features_file(tmp_path / name, feats, bad))
    with pytest.raises(DataError, match=r"features of 31 tiles .* but coordinates of 30"):
        io.read_features(_features_file(tmp_path / "N.h5", feats, coords[:30]))
    with h5py.File(tmp_path / "C.h5", "w") as fh:
        fh["coords"] = coords.T
        fh["coords"].attrs.update(patch_size=64, patch_size_level0=64)
    with pytest.raises(DataError, match=r"shape \(2, 31\)"):
        io.read_coords(tmp_path / "C.h5")
    with pytest.raises(DataError, match=r"shape \(62,\)"):
        io.write_coords(tmp_path / "w.h5", np.arange(62))


def test_a_bank_is_never_written_nor_read_with_non_finite_features(tmp_path):
    from gigassl.errors import DataError

    grid = np.arange(8).reshape(4, 2)
    plain = np.ones((4, 3))
    for feats, named in ((np.full((2, 4, 3), np.nan), "augmented tile features of slide S1: .* 2 of 2 augmentation"),
                         (np.full((2, 4, 3), 1e5), "augmented tile features"),  # float16 overflows to inf
                         (None, "plain tile features of slide S1")):
        bad_plain = plain * np.nan if feats is None else plain
        bank = io.Bank(feats, None if feats is None else grid[None].repeat(2, 0), bad_plain, grid,
                       {"slide_id": "S1", "encoder": "mine:factory"})
        with pytest.raises(DataError, match=named) as err:
            io.write_bank(tmp_path / "S1.h5", bank)
        assert "mine:factory" in str(err.value) and not (tmp_path / "S1.h5").exists()
    with h5py.File(tmp_path / "B.h5", "w") as fh:  # a bank written by something else, with a NaN draw
        fh["plain_features"], fh["plain_coords"] = plain, grid
        fh["features"], fh["coords"] = np.full((2, 4, 3), np.nan, np.float16), grid[None].repeat(2, 0)
    assert io.read_bank(tmp_path / "B.h5", augmented=False).features is None
    with pytest.raises(DataError, match="augmented 'features' of the bank .*B.h5: NaN"):
        io.read_bank(tmp_path / "B.h5")


def test_embeddings_with_nan_or_text_are_refused_naming_the_slides(tmp_path):
    from gigassl.errors import DataError

    emb = np.eye(3, dtype=np.float32)
    with pytest.raises(DataError, match=r"to write to .*e.h5: NaN .* in 1 of 3 slides \(b\)"):
        io.write_embeddings(tmp_path / "e.h5", ["a", "b", "c"], emb * [[1], [np.nan], [1]])
    (tmp_path / "e.csv").write_text("slide_id,f0,f1\na,0.1,0.2\nb,nan,0.3\nc,0.5,\n")
    with pytest.raises(DataError, match=r"e.csv: NaN or infinite values in 2 of 3 slides \(b, c\)"):
        io.read_embeddings(tmp_path / "e.csv")
    (tmp_path / "t.csv").write_text("slide_id,f0\na,0.1\nb,high\n")
    with pytest.raises(DataError, match="columns f0 are not numbers"):
        io.read_embeddings(tmp_path / "t.csv")
    io.write_embeddings(tmp_path / "per_slide", ["a", "b"], np.eye(2))
    io.write_embeddings(tmp_path / "other", ["c"], np.ones((1, 3)))
    (tmp_path / "other" / "c.h5").rename(tmp_path / "per_slide" / "c.h5")
    with pytest.raises(DataError, match=r"differ in length \(\[2, 3\]\)"):
        io.read_embeddings(tmp_path / "per_slide")


def test_a_truncated_empty_or_folder_file_is_called_what_it_is(tmp_path):
    with h5py.File(tmp_path / "whole.h5", "w") as fh:
        fh["plain_features"] = np.zeros((4000, 64))
    data = (tmp_path / "whole.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(GigasslError, match="cut.h5 is truncated") as err:
        io.read_bank(tmp_path / "cut.h5")
    assert "another process" not in str(err.value) and "LOCKING" not in str(err.value)
    (tmp_path / "zero.h5").write_bytes(b"")
    with pytest.raises(GigasslError, match=r"zero.h5 is empty \(0 bytes\)"):
        io.read_bank(tmp_path / "zero.h5")
    (tmp_path / "dir.h5").mkdir()
    with pytest.raises(GigasslError, match="dir.h5 is a folder, not a file"):
        io.read_coords(tmp_path / "dir.h5")


def test_only_outputs_gigassl_wrote_count_as_its_own(tmp_path):
    ids, emb = ["a", "b"], np.eye(2, dtype=np.float32)
    for name in ("e.h5", "e.csv", "e.parquet", "slide_features_gigassl"):
        io.write_embeddings(tmp_path / name, ids, emb)
        assert io.written_by_gigassl(tmp_path / name)
    (tmp_path / "notes.csv").write_text("patient,comment\n1,keep me\n")
    _features_file(tmp_path / "tile_features.h5", np.zeros((2, 3)), np.zeros((2, 2)))
    _features_file(tmp_path / "features_uni" / "S1.h5", np.zeros((2, 3)), np.zeros((2, 2)))
    (tmp_path / "junk.parquet").write_bytes(b"junk")
    for name in ("notes.csv", "tile_features.h5", "features_uni", "junk.parquet"):
        assert not io.written_by_gigassl(tmp_path / name), name
