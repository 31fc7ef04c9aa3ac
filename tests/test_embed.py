"""R-view inference: one unit-norm embedding per slide, deterministic for a seed."""

import dataclasses

import h5py
import numpy as np
import pandas as pd
import pytest

from gigassl import cli, io
from gigassl.config import EmbedConfig, MapConfig, TrainConfig
from gigassl.embed import embed_slides
from gigassl.errors import ConfigError
from gigassl.train import train


@pytest.fixture(scope="module")
def checkpoint(synthetic_bank, tmp_path_factory):
    config = TrainConfig(epochs=1, batch_size=8, warmup_epochs=0, device="cpu", maps=MapConfig(downsample="tile"))
    return train(synthetic_bank, tmp_path_factory.mktemp("ssl"), config, progress=False)


def test_embeddings_are_unit_norm_deterministic_and_documented(synthetic_bank, checkpoint, tmp_path):
    config = EmbedConfig(views=6, tiles_per_view=5, device="cpu", batch_views=16)
    a = embed_slides(synthetic_bank, checkpoint, tmp_path / "a.h5", config, progress=False)
    b = embed_slides(synthetic_bank, checkpoint, tmp_path / "b.h5", config, progress=False)
    c = embed_slides(synthetic_bank, checkpoint, tmp_path / "c.h5", dataclasses.replace(config, seed=1), progress=False)
    ids, emb, attrs = io.read_embeddings(a)
    assert ids == [f"S{i:03d}" for i in range(16)] and emb.shape == (16, 512) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(emb, io.read_embeddings(b)[1])
    assert not np.allclose(emb, io.read_embeddings(c)[1])
    assert attrs["views"] == 6 and attrs["tiles_per_view"] == 5 and len(attrs["checkpoint_sha256"]) == 64
    import json

    assert json.loads(attrs["bank_identity"])["encoder"] == "synthetic" and attrs["bank"] == str(synthetic_bank)
    # the batch size of the forward passes does not change the result
    d = embed_slides(synthetic_bank, checkpoint, tmp_path / "d.h5", dataclasses.replace(config, batch_views=1000),
                     progress=False)
    np.testing.assert_allclose(io.read_embeddings(d)[1], emb, rtol=1e-4, atol=1e-5)


def test_more_views_give_embeddings_closer_to_the_limit(synthetic_bank, checkpoint, tmp_path):
    def run(views, seed):
        path = embed_slides(synthetic_bank, checkpoint, tmp_path / f"{views}-{seed}.h5",
                            EmbedConfig(views=views, device="cpu", seed=seed), progress=False)
        return io.read_embeddings(path)[1]

    spread = {r: np.linalg.norm(run(r, 0) - run(r, 1), axis=1).mean() for r in (1, 16)}
    assert spread[16] < spread[1]  # averaging R views reduces the sampling noise of one view


def test_cli_embed_and_errors(synthetic_bank, checkpoint, tmp_path):
    out = tmp_path / "e.h5"
    assert cli.main(["embed", "--bank", str(synthetic_bank), "--checkpoint", str(checkpoint), "--out", str(out),
                     "--views", "3", "--tiles-per-view", "4", "--profile", "smoke", "--no-progress"]) == 0
    assert io.read_embeddings(out)[2]["tiles_per_view"] == 4
    assert cli.main(["embed", "--bank", str(synthetic_bank), "--checkpoint", str(tmp_path / "none.pt"),
                     "--out", str(out)]) == 1
    with pytest.raises(ConfigError, match="views"):
        embed_slides(synthetic_bank, checkpoint, out, EmbedConfig(views=0, device="cpu"), progress=False)


def test_a_bank_from_another_tile_size_or_encoder_is_refused(tmp_path):
    from .conftest import write_synthetic_bank

    def bank(name, **attrs):
        folder = write_synthetic_bank(tmp_path / name, slides=8)
        for path in folder.glob("*.h5"):
            data = io.read_bank(path)
            io.write_bank(path, io.Bank(data.features, data.coords, data.plain_features, data.plain_coords,
                                        {**data.attrs, **attrs}))
        return folder

    small = bank("px32", tile_px=32, weights_sha256="abc")
    config = TrainConfig(epochs=1, batch_size=8, warmup_epochs=0, device="cpu", maps=MapConfig(downsample="tile"))
    checkpoint = train(small, tmp_path / "ssl", config, progress=False)
    embed_slides(small, checkpoint, tmp_path / "ok.h5", EmbedConfig(views=2, device="cpu"), progress=False)
    for name, attrs, named in (("px48", {"tile_px": 48, "weights_sha256": "abc"}, "tile_px: 32 expected, 48 found"),
                               ("w", {"tile_px": 32, "weights_sha256": "def"}, "weights_sha256: 'abc' expected")):
        with pytest.raises(ConfigError, match=named):
            embed_slides(bank(name, **attrs), checkpoint, tmp_path / f"{name}.h5", EmbedConfig(views=2, device="cpu"),
                         progress=False)
    with pytest.raises(ConfigError, match="encoder: 'synthetic' expected, 'uni_v1' found"):
        embed_slides(bank("enc", tile_px=32, weights_sha256="abc", encoder="uni_v1"), checkpoint, tmp_path / "e.h5",
                     EmbedConfig(views=2, device="cpu"), progress=False)
    narrow = write_synthetic_bank(tmp_path / "dim128", slides=8, dim=128)
    with pytest.raises(ConfigError, match="128-d tile features but the checkpoint .* 256-d"):
        embed_slides(narrow, checkpoint, tmp_path / "d.h5", EmbedConfig(views=2, device="cpu"), progress=False)


def test_trident_and_clam_features_embed_with_their_own_checkpoint_only(trident_features, tmp_path):
    """Fixtures in TRIDENT's and CLAM's layouts: train (plain views) and embed; the empty slide is listed; a
    checkpoint trained on one tool's features refuses another encoder's; the in-memory embedder gives the same."""
    from gigassl.embed import GigaSSLEmbedder
    from gigassl.bankstore import PackedBank

    from . import layouts

    config = TrainConfig(epochs=1, batch_size=8, warmup_epochs=0, device="cpu", maps=MapConfig(downsample="tile"))
    checkpoint = train(trident_features, tmp_path / "ssl", config, progress=False)
    embed_config = EmbedConfig(views=4, tiles_per_view=5, device="cpu")
    for out in (tmp_path / "emb.h5", tmp_path / "emb.parquet", tmp_path / "slide_features_gigassl"):
        embed_slides(trident_features, checkpoint, out, embed_config, progress=False)
        ids, emb, _ = io.read_embeddings(out)
        assert len(ids) == 16 and "EMPTY" not in ids and emb.shape == (16, 512)
    failures = pd.read_csv(tmp_path / "emb.h5.failures.csv")
    assert failures["slide_id"].tolist() == ["EMPTY"]
    ids, emb, _ = io.read_embeddings(tmp_path / "emb.h5")
    bank = PackedBank(trident_features)
    i = bank.ids.index(ids[3])
    plain, coords = bank.plain(i)
    embedder = GigaSSLEmbedder(checkpoint, views=4, tiles_per_view=5)
    one = embedder.transform(np.asarray(plain), np.asarray(coords), patch_size_level0=64, slide_id=ids[3])
    np.testing.assert_allclose(one, emb[3], rtol=1e-4, atol=1e-5)
    assert one.shape == (512,) and abs(np.linalg.norm(one) - 1) < 1e-5
    with pytest.raises(ConfigError, match=r"features \(M, 256\)"):
        embedder.transform(np.zeros((3, 8)), np.zeros((3, 2)))
    # the same features in CLAM's layout (no encoder recorded): refused by the checkpoint trained on uni_v1's
    clam = tmp_path / "clam"
    for path in sorted(trident_features.glob("S*.h5")):
        feats, coords, _ = io.read_features(path)
        layouts.clam_features(clam, path.stem, feats, coords)
    with pytest.raises(ConfigError, match="encoder: 'uni_v1' expected, 'external' found"):
        embed_slides(clam, checkpoint, tmp_path / "clam.h5", embed_config, progress=False)
    assert sorted(p.name for p in clam.iterdir()) == ["h5_files"]  # no cache written into the input folder


# ------------------------------------------------------------------ #25: the in-memory API and the output checked
def test_transform_refuses_nan_and_coordinates_of_another_shape(synthetic_bank, checkpoint):
    from gigassl.bankstore import PackedBank
    from gigassl.embed import GigaSSLEmbedder

    bank = PackedBank(synthetic_bank)
    plain, coords = (np.asarray(a) for a in bank.plain(0))
    embedder = GigaSSLEmbedder(checkpoint, views=2, tiles_per_view=4)
    good = embedder.transform(plain, coords, patch_size_level0=64, slide_id="S000")
    assert np.isfinite(good).all()
    nan = plain.astype(np.float32)
    nan[5] = np.nan
    with pytest.raises(ConfigError, match=r"features of slide S000: NaN or infinite values in 1 of 48 tiles "
                                          r"\(5\)"):
        embedder.transform(nan, coords, patch_size_level0=64, slide_id="S000")
    for bad in (coords.T, coords.reshape(-1, 4), coords.ravel()):  # reshape(-1, 2) would scramble or fail
        with pytest.raises(ConfigError, match=r"coords of the slide has shape .*; expected \(M, 2\)"):
            embedder.transform(plain, bad, patch_size_level0=64)
    with pytest.raises(ConfigError, match=r"no tile"):
        embedder.transform(np.empty((0, 256)), np.empty((0, 2)))


def test_a_checkpoint_folder_is_called_a_folder(checkpoint):
    from gigassl.embed import GigaSSLEmbedder
    from gigassl.errors import GigasslError

    with pytest.raises(GigasslError, match=r"is a folder, not a file \(it holds .*checkpoint.pt"):
        GigaSSLEmbedder(checkpoint.parent)


def test_embed_replaces_its_own_output_and_refuses_anyone_elses(synthetic_bank, checkpoint, tmp_path):
    config = EmbedConfig(views=2, tiles_per_view=4, device="cpu")
    ours = embed_slides(synthetic_bank, checkpoint, tmp_path / "e.h5", config, progress=False)
    embed_slides(synthetic_bank, checkpoint, ours, config, progress=False)  # a rerun replaces gigassl's own file
    theirs = tmp_path / "theirs.h5"
    with h5py.File(theirs, "w") as fh:
        fh["precious"] = np.arange(3)
    args = ["embed", "--bank", str(synthetic_bank), "--checkpoint", str(checkpoint), "--out", str(theirs),
            "--views", "2", "--tiles-per-view", "4", "--profile", "smoke", "--no-progress"]
    assert cli.main(args) == 1
    with h5py.File(theirs) as fh:
        assert list(fh) == ["precious"]  # untouched
    assert cli.main(args + ["--overwrite"]) == 0 and io.read_embeddings(theirs)[1].shape == (16, 512)


# ------------------------------------------------------------------------------------------ early fusion (cases)
class _TwoSlides:
    """A bank-like pair of slides whose tiles overlap in level-0 coordinates (both start at (0, 0)); feature 0 says
    which slide a tile comes from, feature 1 its row in that slide."""

    def __init__(self, patch=64):
        g = np.random.default_rng(0)
        self.ids, self.keys, self.bank_dir = ["A", "B"], np.array([11, 12]), "fake"
        self.patch_size_level0 = np.array([patch, patch])
        self._plain = []
        for s, n in enumerate((9, 14)):
            coords = np.stack([np.arange(n) % 4, np.arange(n) // 4], 1) * patch
            feats = np.concatenate([np.full((n, 1), float(s)), np.arange(n, dtype=np.float32)[:, None],
                                    g.normal(size=(n, 6))], 1).astype(np.float32)
            self._plain.append((feats, coords.astype(np.int64)))

    def plain(self, i):
        return self._plain[i]


def test_case_views_lay_slides_side_by_side_without_collisions():
    from gigassl.maps import packed_case_views, to_sites

    bank = _TwoSlides()
    maps = MapConfig(downsample="tile")
    views = packed_case_views(bank, [0, 1], views=40, tiles=12, config=maps, seed=3, key=99)
    feats, sites = views.features.numpy(), views.coords.numpy()
    slide, row = feats[..., 0].astype(int), feats[..., 1].astype(int)
    assert set(np.unique(slide)) == {0, 1}  # the views draw from both slides
    for r in range(40):
        a = {tuple(s) for s in sites[r][slide[r] == 0]}
        b = {tuple(s) for s in sites[r][slide[r] == 1]}
        assert not a & b  # tiles of different slides never share a site
        if a and b:  # slide B to the right of slide A with an empty column of sites between them
            assert min(x for x, _ in b) >= max(x for x, _ in a) + 2
        for s in (0, 1):  # each slide keeps its own arrangement (whole-site shifts only)
            mine = slide[r] == s
            own = to_sites(bank.plain(s)[1][row[r][mine]] / 64.0)
            np.testing.assert_array_equal(sites[r][mine] - sites[r][mine].min(0), own - own.min(0))
    again = packed_case_views(bank, [0, 1], views=40, tiles=12, config=maps, seed=3, key=99)
    np.testing.assert_array_equal(again.coords.numpy(), sites)
    with pytest.raises(ConfigError, match="at least one slide"):
        packed_case_views(bank, [], views=2, tiles=2, config=maps, seed=0, key=0)


def test_a_one_slide_case_is_embedded_as_its_slide_and_a_two_slide_case_from_both(synthetic_bank):
    from gigassl.bankstore import PackedBank
    from gigassl.embed import embed_bank, embed_cases
    from gigassl.train import build_model

    bank = PackedBank(synthetic_bank)
    maps = MapConfig(downsample="tile")
    model = build_model(TrainConfig(maps=maps), bank.feature_dim).eval()
    slides = embed_bank(model, bank, np.arange(4), views=4, tiles=5, maps=maps, seed=2)
    names, cases = embed_cases(model, bank, {"p0": [0], "p1": [1], "p2": [2, 3], "p3": [3]}, views=4, tiles=5,
                               maps=maps, seed=2)
    assert names == ["p0", "p1", "p2", "p3"] and cases.shape == (4, slides.shape[1])
    np.testing.assert_allclose(cases[[0, 1, 3]], slides[[0, 1, 3]], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(cases, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(cases[2], slides[2], atol=1e-4) and not np.allclose(cases[2], slides[3], atol=1e-4)
    _, again = embed_cases(model, bank, {"p2": [2, 3]}, views=4, tiles=5, maps=maps, seed=2, batch_views=4)
    np.testing.assert_allclose(again[0], cases[2], rtol=1e-5, atol=1e-6)


def test_cli_embed_cases_writes_one_embedding_per_patient(synthetic_bank, checkpoint, tmp_path):
    import pandas as pd

    table = tmp_path / "cases.csv"
    pd.DataFrame({"slide_id": ["S000", "S001", "S002", "S999"], "case_id": ["p1", "p0", "p0", "p2"]}).to_csv(
        table, index=False)  # S999 is not in the bank: left out, and p2 with it
    common = ["--bank", str(synthetic_bank), "--checkpoint", str(checkpoint), "--views", "3", "--tiles-per-view", "4",
              "--profile", "smoke", "--no-progress"]
    assert cli.main(["embed", *common, "--out", str(tmp_path / "cases.h5"), "--cases", str(table)]) == 0
    assert cli.main(["embed", *common, "--out", str(tmp_path / "slides.h5")]) == 0
    ids, cases, attrs = io.read_embeddings(tmp_path / "cases.h5")
    slide_ids, slides, _ = io.read_embeddings(tmp_path / "slides.h5")
    assert ids == ["p0", "p1"] and attrs["fusion"] == "early"
    np.testing.assert_allclose(cases[1], slides[slide_ids.index("S000")], rtol=1e-5, atol=1e-6)  # one slide: itself
    assert not np.allclose(cases[0], slides[slide_ids.index("S001")], atol=1e-4)  # two slides: both
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"slide_id": ["S000"]}).to_csv(bad, index=False)
    assert cli.main(["embed", *common, "--out", str(tmp_path / "x.h5"), "--cases", str(bad)]) != 0
    with pytest.raises(ConfigError, match="case_id"):
        embed_slides(synthetic_bank, checkpoint, tmp_path / "y.h5", EmbedConfig(views=2, device="cpu"),
                     progress=False, cases=bad)
