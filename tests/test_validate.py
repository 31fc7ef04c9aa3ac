"""The checks where data enters and before it is written: shapes and dtypes as promised, finite values, the truth
about a path (#25)."""

import numpy as np
import pytest
import torch

from gigassl import validate
from gigassl.errors import ConfigError, DataError, GigasslError


def test_coordinates_of_another_shape_are_refused_never_reshaped():
    good = np.array([[0, 0], [64, 0], [64, 64]])
    np.testing.assert_array_equal(validate.coords(good, "c"), good)
    assert validate.coords(good.astype(np.float32), "c").dtype == np.int64  # integral floats are positions
    assert validate.coords(np.empty((0,)), "c").shape == (0, 2)  # TRIDENT's slide without tissue
    for bad, named in ((good.T, r"shape \(2, 3\); expected \(M, 2\)"),  # reshape(-1, 2) would scramble it
                       (np.zeros((31, 3)), r"shape \(31, 3\)"),  # "cannot reshape array of size 93"
                       (np.zeros(6), r"shape \(6,\)"),
                       (good + 0.5, "non-integral"),
                       (np.array([[0.0, np.nan]]), "NaN or infinite values in 1 of 1 tiles"),
                       (np.array([["a", "b"]]), "dtype <U1; expected numbers")):
        with pytest.raises(DataError, match=named):
            validate.coords(bad, "The coords of s.h5")


def test_non_finite_values_are_refused_naming_their_rows_or_slides():
    x = np.ones((6, 3), np.float32)
    assert validate.finite(x, "x") is x  # nothing copied, nothing changed
    x[[1, 4], 0] = [np.nan, np.inf]
    with pytest.raises(DataError, match=r"The features of S1: NaN or infinite values in 2 of 6 tiles \(1, 4\)"):
        validate.features(x, "The features of S1", "Extract them again.")
    with pytest.raises(DataError, match=r"in 2 of 6 slides \(b, e\); expected finite numbers\. Embed again\."):
        validate.embeddings(list("abcdef"), x, "The slide embeddings of e.csv", "Embed again.")
    with pytest.raises(DataError, match=r"\(8, 3\) for 6 slide ids; expected \(6, D\)"):
        validate.embeddings(list("abcdef"), np.ones((8, 3)), "e")
    with pytest.raises(DataError, match=r"shape \(6, 3\); expected \(M, 256\)"):
        validate.features(np.ones((6, 3)), "transform", dim=256)


def test_a_state_with_a_nan_weight_is_named():
    validate.finite_state({"a.weight": torch.ones(2), "steps": torch.tensor(3)}, "ckpt")
    with pytest.raises(DataError, match=r"ckpt: 1 weight tensors hold NaN or infinite values \(b.bias\)"):
        validate.finite_state({"a.weight": torch.ones(2), "b.bias": torch.tensor([np.nan])}, "ckpt")


def test_a_path_is_described_as_it_is(tmp_path):
    (tmp_path / "ckpt.pt").write_bytes(b"x")
    assert validate.existing_file(tmp_path / "ckpt.pt", "Checkpoint", "fix") == tmp_path / "ckpt.pt"
    with pytest.raises(GigasslError, match=r"is a folder, not a file \(it holds ckpt.pt\)"):
        validate.existing_file(tmp_path, "Checkpoint", "fix")
    with pytest.raises(GigasslError, match="none.pt does not exist; run train"):
        validate.existing_file(tmp_path / "none.pt", "Checkpoint", "run train")
    (tmp_path / "zero.pt").write_bytes(b"")
    with pytest.raises(GigasslError, match=r"is empty \(0 bytes\)"):
        validate.existing_file(tmp_path / "zero.pt", "Checkpoint", "fix")


def test_an_output_gigassl_did_not_write_is_not_replaced(tmp_path):
    mine, theirs = tmp_path / "mine.csv", tmp_path / "theirs.csv"
    mine.write_text("slide_id,f0\n")
    theirs.write_text("my precious table\n")
    ours = lambda p: p.read_text().startswith("slide_id")  # noqa: E731
    validate.refuse_overwrite(mine, ours, "embeddings")
    validate.refuse_overwrite(tmp_path / "new.csv", ours, "embeddings")
    validate.refuse_overwrite(theirs, ours, "embeddings", overwrite=True)
    with pytest.raises(ConfigError, match="theirs.csv is an existing file that is not embeddings.*--overwrite"):
        validate.refuse_overwrite(theirs, ours, "embeddings")
