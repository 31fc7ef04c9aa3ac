"""The bank of augmented tile embeddings: layout, determinism across resume and shards, failures, imports."""

import dataclasses

import h5py
import numpy as np
import pandas as pd
import pytest

from gigassl import __version__, cli, io
from gigassl.bank import build_bank, parse_shard
from gigassl.config import ConfigError
from gigassl.manifest import read_manifest

from .conftest import SMOKE, TINY_BANK


def _same_banks(a, b):
    names = sorted(p.name for p in a.glob("*.h5"))
    assert names == sorted(p.name for p in b.glob("*.h5")) and names
    for name in names:
        x, y = io.read_bank(a / name), io.read_bank(b / name)
        for field in ("features", "coords", "plain_features", "plain_coords"):
            np.testing.assert_array_equal(getattr(x, field), getattr(y, field))
        assert x.attrs == y.attrs


def test_bank_layout(bank_dir, cohort, coords_dir):
    ids = read_manifest(cohort)["slide_id"]
    for slide_id in ids:
        with h5py.File(bank_dir / f"{slide_id}.h5") as fh:
            m = len(io.read_coords(coords_dir / f"{slide_id}.h5")[0])
            assert fh["features"].shape == (3, 8, 256) and fh["features"].dtype == np.float16
            assert fh["coords"].shape == (3, 8, 2) and fh["coords"].dtype == np.int64
            assert fh["plain_features"].shape == (m, 256) and fh["plain_coords"].shape == (m, 2)
            attrs = dict(fh.attrs)
        assert attrs["encoder"] == "resnet18" and attrs["augmentation_mode"] == "shared"
        assert attrs["weights_sha256"] == "random-init-seed-0" and attrs["version"] == __version__
        assert attrs["tile_px"] == 32 and attrs["target_mpp"] == 1.0 and attrs["seed"] == 0
        bank = io.read_bank(bank_dir / f"{slide_id}.h5")
        plain = {tuple(c) for c in bank.plain_coords}
        assert all(tuple(c) in plain for c in bank.coords.reshape(-1, 2))  # draws sample tissue tiles
        assert np.isfinite(bank.features.astype(np.float32)).all()


def test_interrupted_then_resumed_bank_is_identical(tmp_path, bank_dir, cohort, coords_dir, monkeypatch):
    import gigassl.bank as bank_module

    original, calls = bank_module.embed_slide, []

    def stop_at_the_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(bank_module, "embed_slide", stop_at_the_third)
    out = tmp_path / "bank"
    with pytest.raises(KeyboardInterrupt):
        build_bank(cohort, coords_dir, out, TINY_BANK, SMOKE.encoder, SMOKE.augment, progress=False)
    assert len(list(out.glob("*.h5"))) == 2
    monkeypatch.setattr(bank_module, "embed_slide", original)
    report = build_bank(cohort, coords_dir, out, TINY_BANK, SMOKE.encoder, SMOKE.augment, progress=False)
    assert len(report.skipped) == 2 and len(report.done) == 4
    _same_banks(bank_dir, out)


def test_two_shards_make_the_same_bank_each_slide_once(tmp_path, bank_dir, cohort, coords_dir):
    out = tmp_path / "bank"
    reports = [build_bank(cohort, coords_dir, out, TINY_BANK, SMOKE.encoder, SMOKE.augment, shard=(i, 2),
                          progress=False) for i in range(2)]
    done = [sid for r in reports for sid in r.done]
    assert sorted(done) == sorted(read_manifest(cohort)["slide_id"]) and len(done) == len(set(done))
    assert (out / "failures.shard-0-of-2.csv").is_file() and (out / "failures.shard-1-of-2.csv").is_file()
    _same_banks(bank_dir, out)
    assert parse_shard("1/4") == (1, 4)
    with pytest.raises(ConfigError, match="i/n"):
        parse_shard("4/4")


def test_independent_mode_differs_from_shared(tmp_path, bank_dir, cohort, coords_dir):
    out = tmp_path / "ns"
    augment = dataclasses.replace(SMOKE.augment, mode="independent")
    assert build_bank(cohort, coords_dir, out, TINY_BANK, SMOKE.encoder, augment, progress=False).ok
    a, b = io.read_bank(bank_dir / "S0001.h5"), io.read_bank(out / "S0001.h5")
    np.testing.assert_array_equal(a.coords, b.coords)  # same tiles drawn
    np.testing.assert_array_equal(a.plain_features, b.plain_features)
    assert not np.array_equal(a.features, b.features) and b.attrs["augmentation_mode"] == "independent"


def test_few_tiles_work_no_tissue_fails_and_plain_only_banks(tmp_path, cohort, coords_dir):
    frame = read_manifest(cohort).iloc[:3]
    manifest = tmp_path / "m.csv"
    frame.to_csv(manifest, index=False)
    coords = tmp_path / "coords"
    coords.mkdir()
    ids = list(frame["slide_id"])
    full, attrs = io.read_coords(coords_dir / f"{ids[0]}.h5")
    io.write_coords(coords / f"{ids[0]}.h5", full[:2], **attrs)  # 2 tissue tiles, N = 8 asked
    io.write_coords(coords / f"{ids[1]}.h5", full[:0], **attrs)  # no tissue
    # ids[2] has no coordinates file at all
    out = tmp_path / "bank"
    args = ["bank", "--manifest", str(manifest), "--coords", str(coords), "--out", str(out), "--profile", "smoke",
            "--augmentations", "3", "--tiles", "8", "--no-progress"]
    assert cli.main(args) == 1
    failures = pd.read_csv(out / "failures.csv").set_index("slide_id")["reason"]
    assert set(failures.index) == {ids[1], ids[2]}
    assert "no tissue tile" in failures[ids[1]] and "gigassl tile" in failures[ids[2]]
    bank = io.read_bank(out / f"{ids[0]}.h5")
    assert bank.features.shape == (3, 8, 256) and len(bank.plain_features) == 2
    plain_only = io.read_bank(_plain_only(tmp_path, manifest, coords_dir))
    assert plain_only.features is None and plain_only.plain_features.shape[1] == 256


def _plain_only(tmp_path, manifest, coords_dir):
    out = tmp_path / "plain"
    assert cli.main(["bank", "--manifest", str(manifest), "--coords", str(coords_dir), "--out", str(out),
                     "--profile", "smoke", "--augmentations", "0", "--no-progress"]) == 0
    return next(out.glob("*.h5"))


def test_trident_and_clam_features_read_as_plain(tmp_path):
    feats = np.random.default_rng(0).normal(size=(5, 1024)).astype(np.float32)
    coords = np.arange(10).reshape(5, 2) * 224
    with h5py.File(tmp_path / "trident.h5", "w") as fh:
        fh["features"] = feats
        fh["coords"] = coords
        fh["coords"].attrs["patch_size_level0"] = 448
    with h5py.File(tmp_path / "clam.h5", "w") as fh:
        fh["features"] = feats[None]
        fh["coords"] = coords
    for name in ("trident.h5", "clam.h5"):
        bank = io.read_bank(tmp_path / name)
        assert bank.features is None and bank.attrs["encoder"] == "external"
        np.testing.assert_array_equal(bank.plain_features, feats)
        np.testing.assert_array_equal(bank.plain_coords, coords)
    assert io.read_bank(tmp_path / "trident.h5").attrs["patch_size_level0"] == 448


def test_plain_embeddings_are_reused_from_a_bank_of_the_same_encoder(tmp_path, bank_dir, cohort, coords_dir,
                                                                     monkeypatch):
    from gigassl import bank as bank_module

    calls = []
    original = bank_module.embed_slide

    def spy(*args, **kwargs):
        calls.append(args[-1] if len(args) > 7 else kwargs.get("plain"))
        return original(*args, **kwargs)

    monkeypatch.setattr(bank_module, "embed_slide", spy)
    out = tmp_path / "ns"
    augment = dataclasses.replace(SMOKE.augment, mode="independent")
    ids = read_manifest(cohort)["slide_id"].tolist()
    assert build_bank(cohort, coords_dir, out, TINY_BANK, SMOKE.encoder, augment, progress=False,
                      plain_from=bank_dir, slide_ids=ids[:3]).ok
    assert sorted(p.stem for p in out.glob("*.h5")) == sorted(ids[:3])  # only the slides asked for
    assert all(c is not None for c in calls)  # every slide's plain embeddings came from the other bank
    for sid in ids[:3]:
        np.testing.assert_array_equal(io.read_bank(out / f"{sid}.h5").plain_features,
                                      io.read_bank(bank_dir / f"{sid}.h5").plain_features)
    # another encoder's bank is not reused: its weights differ
    calls.clear()
    other = dataclasses.replace(SMOKE.encoder, seed=1)
    assert build_bank(cohort, coords_dir, tmp_path / "other", TINY_BANK, other, augment, progress=False,
                      plain_from=bank_dir, slide_ids=ids[:1]).ok
    assert calls == [None]


def test_a_rerun_with_another_seed_or_tiles_is_refused(tmp_path, cohort, coords_dir):
    import json

    out = tmp_path / "bank"
    ids = pd.read_csv(cohort).slide_id.tolist()[:2]
    assert build_bank(cohort, coords_dir, out, TINY_BANK, SMOKE.encoder, SMOKE.augment, progress=False,
                      slide_ids=ids).ok
    record = json.loads((out / "config.json").read_text())
    assert record["tiles"]["tile_px"] == 32 and record["precision"] in ("fp32", "bf16")  # the tiling's record too
    for change in ({"seed": 1}, {"tiles": 4}):
        with pytest.raises(ConfigError, match=f"holds a bank made with other settings \\(bank.{list(change)[0]}: "):
            build_bank(cohort, coords_dir, out, dataclasses.replace(TINY_BANK, **change), SMOKE.encoder,
                       SMOKE.augment, progress=False, slide_ids=ids)
    other = dataclasses.replace(SMOKE.encoder, batch_size=7)  # inference batch: the same bank, so it resumes
    assert build_bank(cohort, coords_dir, out, TINY_BANK, other, SMOKE.augment, progress=False, slide_ids=ids).ok


def test_banks_from_trident_and_clam_coordinates_match_gigassl_ones(tmp_path, bank_dir, cohort, coords_dir):
    """The cohort's tiling rewritten in TRIDENT's and CLAM's layouts (one slide without tissue in each) gives the
    same bank as gigassl's coordinates; the empty slide is listed in failures.csv and the rest is done."""
    from . import layouts

    ids = read_manifest(cohort)["slide_id"].tolist()
    for slide_id in ids:
        coords, attrs = io.read_coords(coords_dir / f"{slide_id}.h5")
        keep = coords[:0] if slide_id == ids[0] else coords
        assert attrs["level0_mpp"] == 0.5 and attrs["patch_size_level0"] == 64  # 32 px at 1 um/px from 20x
        layouts.trident_coords(tmp_path / "trident", slide_id, keep, 32, 20, 10)
        layouts.clam_coords(tmp_path / "clam", slide_id, keep, patch_size=32, patch_level=1, downsample=2.0)
    job = tmp_path / "trident" / "10x_32px_0px_overlap"
    for name, folder in (("trident", job), ("clam", tmp_path / "clam")):
        report = build_bank(cohort, folder, tmp_path / name, TINY_BANK, SMOKE.encoder, SMOKE.augment, progress=False)
        assert list(report.failed) == [ids[0]] and "no tissue tile" in report.failed[ids[0]]
        assert pd.read_csv(tmp_path / name / "failures.csv")["slide_id"].tolist() == [ids[0]]
        for slide_id in ids[1:]:
            ours, theirs = io.read_bank(bank_dir / f"{slide_id}.h5"), io.read_bank(tmp_path / name / f"{slide_id}.h5")
            np.testing.assert_array_equal(ours.plain_features, theirs.plain_features)
            np.testing.assert_array_equal(ours.features, theirs.features)


# ------------------------------------------------------------------ #25: the user's encoder, checked
def test_an_encoder_returning_nan_fails_every_slide_and_writes_no_bank(cohort, coords_dir, tmp_path, capsys):
    out = tmp_path / "bank"
    code = cli.main(["bank", "--manifest", str(cohort), "--coords", str(coords_dir), "--out", str(out), "--profile",
                     "smoke", "--encoder", "tests.tiny_encoder:nan_features", "--augmentations", "2", "--tiles", "4",
                     "--no-progress"])
    assert code == 1 and not list(out.glob("*.h5"))
    failures = pd.read_csv(out / "failures.csv")
    assert len(failures) == 6 and failures.reason.str.contains(
        "plain tile features of slide .*: NaN or infinite values .*tests.tiny_encoder:nan_features").all()


def test_an_encoder_of_the_wrong_batch_size_stops_the_batch_naming_it(cohort, coords_dir, tmp_path, capsys):
    out = tmp_path / "bank"
    argv = ["bank", "--manifest", str(cohort), "--coords", str(coords_dir), "--out", str(out), "--profile", "smoke",
            "--encoder", "tests.tiny_encoder:wrong_batch", "--augmentations", "2", "--tiles", "4", "--no-progress"]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "Encoder 'tests.tiny_encoder:wrong_batch' returned features of shape" in err
    assert not list(out.glob("*.h5"))
    assert cli.main(["-v"] + argv) == 1 and "Traceback" in capsys.readouterr().err  # -v: the traceback too
    raising = [a if a != "tests.tiny_encoder:wrong_batch" else "tests.tiny_encoder:raises" for a in argv]
    assert cli.main(raising) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "raises() raised RuntimeError: the weights server is down" in err
