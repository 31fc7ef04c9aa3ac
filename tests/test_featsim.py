"""The feature-level cohort of known mechanisms (gigassl.cohorts.featsim): each mechanism produces the property it claims,
the oracle is calibrated, slides are keyed, the files are TRIDENT's layout and the CLI writes them."""

import dataclasses

import h5py
import numpy as np
import pandas as pd
import pytest

from gigassl import cli, io
from gigassl.cohorts import featsim
from gigassl.config import FeatSimConfig
from gigassl.errors import ConfigError

SMALL = FeatSimConfig(n_train=40, n_test=2, tiles_per_slide=96, feature_dim=16, seed=3)


def slides(mechanism: str, n: int = 40, **changes) -> tuple[list, FeatSimConfig]:
    config = dataclasses.replace(SMALL, mechanism=mechanism, **changes)
    return [featsim.simulate_slide(config, "train", i) for i in range(n)], config


def by_label(values, items) -> tuple[np.ndarray, np.ndarray]:
    labels = np.array([s.label for s in items])
    values = np.asarray(values, np.float64)
    return values[labels == 0], values[labels == 1]


def welch_t(a: np.ndarray, b: np.ndarray) -> float:
    return float((b.mean() - a.mean()) / np.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b)))


# ------------------------------------------------------------------------------------------- the oracle
@pytest.mark.parametrize("mechanism", ["M1", "M2", "M3", "M4"])
def test_the_calibrated_effect_gives_the_oracle_auc_asked_for(mechanism):
    effect = featsim.calibrated_effect(mechanism, 0.85)
    assert featsim.oracle_auc(mechanism, effect) == pytest.approx(0.85)
    fitted = [featsim.oracle_fit_auc(FeatSimConfig(mechanism=mechanism, n_train=100, n_test=1000, seed=s))
              for s in range(2)]
    assert abs(np.mean(fitted) - 0.85) < 0.04  # sd over seeds about 0.01 at 1,000 test slides


def test_calibration_refuses_what_an_oracle_cannot_reach():
    with pytest.raises(ConfigError, match=r"auc=0.3 is not allowed: it must be a number in \[0.5, 1\]"):
        featsim.calibrated_effect("M1", 0.3)
    with pytest.raises(ConfigError, match="mechanism='M9'"):
        featsim.calibrated_effect("M9")


def test_the_null_oracle_is_at_chance_and_the_null_has_no_effect():
    fitted = [featsim.oracle_fit_auc(FeatSimConfig(mechanism="M0", n_train=100, n_test=1000, seed=s))
              for s in range(3)]
    assert abs(np.mean(fitted) - 0.5) < 0.05
    assert featsim.effect_of(FeatSimConfig(mechanism="M0")) == 0
    table = featsim.cohort_table(FeatSimConfig(mechanism="M0", n_train=400, n_test=2))
    low, high = (table.oracle[table.true_label == k] for k in (0, 1))
    assert abs(high.mean() - low.mean()) < 0.03 and abs(high.std() - low.std()) < 0.03


def test_the_diffuse_and_focal_oracles_separate_the_labels():
    for mechanism in ("M1", "M2"):
        assert featsim.oracle_fit_auc(FeatSimConfig(mechanism=mechanism, n_train=100, n_test=400)) > 0.75


# ------------------------------------------------------------------------------------------- the mechanisms
def test_m1_the_target_share_is_the_oracle_and_higher_in_label_1():
    items, config = slides("M1")
    shares = [featsim.statistics(s, config)["target_share"] for s in items]
    np.testing.assert_allclose(shares, [round(s.oracle * config.tiles_per_slide) / config.tiles_per_slide
                                        for s in items])
    low, high = by_label(shares, items)
    assert welch_t(low, high) > 3


def test_m2_focal_tiles_only_in_label_1_as_one_neighbourhood():
    items, config = slides("M2", 60)
    focal_class = config.n_classes - 1
    counts = np.array([(s.classes == focal_class).sum() for s in items])
    zero, one = by_label(counts, items)
    assert (zero == 0).all()  # label 0 never has the focal class
    assert set(one) == {0, config.focal_tiles} and (one > 0).mean() > 0.4  # effect 0.7: most label-1 slides
    for s in items:
        focal = np.flatnonzero(s.classes == focal_class)
        if len(focal):  # the n tiles nearest one of them: no other tile closer to it than the farthest focal tile
            d = np.sqrt(((s.sites[:, None] - s.sites[focal][None]) ** 2).sum(-1))  # (M, n)
            others = np.setdiff1d(np.arange(len(s.sites)), focal)
            assert any(d[focal, j].max() <= d[others, j].min() for j in range(len(focal)))


def test_m3_equal_mean_tile_feature_unequal_within_slide_spread():
    items, config = slides("M3", 60)
    means = featsim.class_means(config)
    a, b, c = config.n_classes - 3, config.n_classes - 2, config.n_classes - 1
    np.testing.assert_allclose(means[c], (means[a] + means[b]) / 2)
    u = (means[a] - means[b]) / np.linalg.norm(means[a] - means[b])
    for s in items:  # exactly: as many A as B tiles, so the region's noiseless mean is C's whatever the oracle
        region = s.classes >= a
        assert (s.classes == a).sum() == (s.classes == b).sum()
        np.testing.assert_allclose(means[s.classes[region]].mean(0), means[c], atol=1e-12)
    projected_mean = [s.features.mean(0) @ u for s in items]
    projected_spread = [np.var(s.features @ u) for s in items]
    low, high = by_label(projected_mean, items)
    assert abs(welch_t(low, high)) < 3  # the means: no difference beyond sampling
    low, high = by_label(projected_spread, items)
    assert welch_t(low, high) > 3 and high.mean() > 1.1 * low.mean()  # the spread along A - B: larger in label 1
    separated = [featsim.statistics(s, config)["separated_share"] for s in items]
    assert np.corrcoef(separated, [s.oracle for s in items])[0, 1] > 0.99


def test_m4_equal_composition_different_adjacency():
    items, config = slides("M4", 60)
    p, q = config.n_classes - 2, config.n_classes - 1
    counts = {((s.classes == p).sum(), (s.classes == q).sum()) for s in items}
    assert len(counts) == 1 and len({n for pair in counts for n in pair}) == 1  # P = Q, the same in every slide
    adjacency = [featsim.same_class_adjacency(s.sites, s.classes, (p, q)) for s in items]
    low, high = by_label(adjacency, items)
    assert welch_t(high, low) > 3  # segregated (label 0) has more same-class neighbours than intermixed (1)
    assert np.corrcoef(adjacency, [s.oracle for s in items])[0, 1] < -0.5
    fully = dataclasses.replace(config, effect=1.0)  # t in [0, 0.5] against [0.5, 1]
    segregated = featsim.simulate_slide(fully, "train", 0)
    intermixed = featsim.simulate_slide(fully, "train", 1)
    assert featsim.same_class_adjacency(segregated.sites, segregated.classes, (p, q)) > 0.65
    assert featsim.same_class_adjacency(intermixed.sites, intermixed.classes, (p, q)) < 0.6


def test_adjacency_matches_a_direct_count():
    sites = np.array([[0, 0], [0, 1], [1, 0], [1, 1], [0, 2]])
    classes = np.array([1, 1, 2, 1, 2])  # pairs: (00,01) same, (00,10) diff, (01,11) same, (10,11) diff, (01,02) diff
    assert featsim.same_class_adjacency(sites, classes, (1, 2)) == pytest.approx(2 / 5)


# ------------------------------------------------------------------------------------------- the randomness
def test_slides_are_keyed_by_seed_split_and_index():
    config = FeatSimConfig(mechanism="M3", n_train=4, n_test=4, tiles_per_slide=32, feature_dim=8)
    one = featsim.simulate_slide(config, "test", 2)
    other = featsim.simulate_slide(dataclasses.replace(config, n_train=50, n_pool=7), "test", 2)
    np.testing.assert_array_equal(one.features, other.features)
    reseeded = featsim.simulate_slide(dataclasses.replace(config, seed=1), "test", 2)
    assert not np.array_equal(one.features, reseeded.features)
    assert not np.array_equal(one.features, featsim.simulate_slide(config, "train", 2).features)
    small = featsim.cohort_table(dataclasses.replace(config, n_pool=3))
    large = featsim.cohort_table(dataclasses.replace(config, n_pool=6))
    pd.testing.assert_frame_equal(small, large.iloc[:len(small)])  # a bigger pool extends a smaller one


def test_the_centre_nuisance_is_one_affine_map_per_centre():
    config = dataclasses.replace(SMALL, mechanism="M1", n_centers=3)
    shifted = dataclasses.replace(config, center_shift=0.5)
    for i in range(4):
        plain, moved = featsim.simulate_slide(config, "train", i), featsim.simulate_slide(shifted, "train", i)
        matrix, shift = featsim.center_map(shifted, moved.center)
        np.testing.assert_array_equal(plain.classes, moved.classes)
        np.testing.assert_allclose(moved.features, plain.features.astype(np.float64) @ matrix.T + shift, atol=1e-4)
    assert np.allclose(featsim.center_map(config, 1)[0], np.eye(config.feature_dim))


# ------------------------------------------------------------------------------------------- the files
def test_the_cohort_round_trips_through_the_trident_reader(tmp_path):
    config = FeatSimConfig(mechanism="M2", n_train=4, n_test=4, n_pool=2, tiles_per_slide=32, feature_dim=8,
                           focal_tiles=3)
    labels = featsim.simulate(tmp_path, config, progress=False)
    table = pd.read_csv(labels, dtype={"slide_id": str})
    assert list(table.columns[:6]) == ["slide_id", "case_id", "center", "label", "split", "oracle"]
    assert table.label[table.split == "pool"].isna().all() and table.split.value_counts().to_dict() == {
        "train": 4, "test": 4, "pool": 2}
    files = io.feature_files(tmp_path / "features_featsim")
    assert sorted(files) == sorted(table.slide_id)
    for sid, path in files.items():
        split, index = sid.split("_")
        slide = featsim.simulate_slide(config, split, int(index))
        features, coords, attrs = io.read_features(path)
        np.testing.assert_array_equal(features, slide.features)
        np.testing.assert_array_equal(coords, slide.coords)
        assert attrs["patch_size_level0"] == 512 and attrs["encoder"] == "featsim" and attrs["feature_dim"] == 8
        with h5py.File(path) as fh:  # TRIDENT's datasets and attributes (tests/layouts.py trident_features)
            assert set(fh) == {"features", "coords"} and fh["features"].dtype == np.float32
            assert set(fh["features"].attrs) == {"name", "savetodir", "encoder"}
            assert {"patch_size", "patch_size_level0", "level0_magnification", "target_magnification", "overlap",
                    "name", "savetodir", "level0_width", "level0_height"} == set(fh["coords"].attrs)
            assert fh["coords"].maxshape == (None, 2) and fh["coords"].chunks == (1, 2)
    from gigassl.evaluation.splits import read_splits

    split = read_splits(tmp_path / "splits")[0]
    assert sorted(split.train_ids) == sorted(table.slide_id[table.split == "train"])
    ids, oracle, _ = io.read_embeddings(tmp_path / "oracle.csv")
    assert oracle.shape == (8, 1) and ids == table.slide_id[table.split != "pool"].tolist()
    with pytest.raises(ConfigError, match="other settings"):  # another cohort into the same folder
        featsim.simulate(tmp_path, dataclasses.replace(config, seed=1), progress=False)


def test_the_simulate_command_writes_the_cohort(tmp_path, capsys):
    out = tmp_path / "cohort"
    assert cli.main(["simulate", "--out", str(out), "--profile", "smoke", "--mechanism", "M3", "--n-test", "4",
                     "--no-progress"]) == 0
    assert "labels.csv" in capsys.readouterr().out
    table = pd.read_csv(out / "labels.csv")
    assert len(table) == 8 + 4 + 2 and (out / "splits" / "split_0.csv").is_file() and (out / "oracle.csv").is_file()
    assert len(list((out / "features_featsim").glob("*.h5"))) == len(table)
    assert cli.main(["simulate", "--print-config", "--mechanism", "M4"]) == 0
    assert "mechanism: M4" in capsys.readouterr().out


@pytest.mark.parametrize("changes, named", [
    ({"mechanism": "M5"}, ["mechanism='M5'", "one of 'M0', 'M1'", "--mechanism"]),
    ({"effect": 1.5}, ["effect=1.5", "[0, 1]", "--effect"]),
    ({"mechanism": "M0", "effect": 0.3}, ["effect=0.3", "M0, the null, has no effect", "--effect"]),
    ({"mechanism": "M3", "n_classes": 4}, ["n_classes=4", ">= 5", "--n-classes"]),
    ({"mechanism": "M2", "tiles_per_slide": 32, "focal_tiles": 20},
     ["focal_tiles=20", "[1, tiles_per_slide / 2 = 16]"]),
    ({"share_range": (0.5, 0.2)}, ["share_range=(0.5, 0.2)", "0 < low <= high < 1", "--share-range"]),
    ({"tiles_per_slide": 8}, ["tiles_per_slide=8", ">= 16", "--tiles-per-slide"]),
])
def test_bad_parameters_name_the_value_what_is_allowed_and_the_fix(changes, named):
    with pytest.raises(ConfigError) as err:
        FeatSimConfig(**changes)
    for text in named:
        assert text in str(err.value), (text, str(err.value))


def test_a_bad_option_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        cli.main(["simulate", "--out", str(tmp_path), "--mechanism", "M2", "--focal-tiles", "0"])
    assert err.value.code == 2 and "focal_tiles=0" in capsys.readouterr().err


def test_the_real_commands_run_unchanged_on_a_cohort(tmp_path, one_thread):
    """A smoke check that train (local views), embed and the AverageMIL baseline take a cohort as it is written (no
    result is looked at)."""
    from gigassl.config import MapConfig, get_profile
    from gigassl.embed import embed_slides
    from gigassl.evaluation.methods import run_method
    from gigassl.train import train

    smoke = get_profile("smoke")
    config = dataclasses.replace(smoke.featsim, mechanism="M4", n_train=4, n_test=4, n_pool=0, tiles_per_slide=32)
    labels = featsim.simulate(tmp_path / "cohort", config, progress=False)
    features = tmp_path / "cohort" / "features_featsim"
    local = dataclasses.replace(smoke.train, epochs=1, maps=MapConfig(downsample="tile", sampling="local",
                                                                       neighbourhood=8))
    checkpoint = train(features, tmp_path / "ssl", local, progress=False)
    embeddings = embed_slides(features, checkpoint, tmp_path / "embeddings.h5", smoke.embed, progress=False)
    ids, matrix, _ = io.read_embeddings(embeddings)
    assert len(ids) == 8 and matrix.shape == (8, 512) and np.isfinite(matrix).all()
    table = run_method("averagemil", bank=features, labels=labels, task="label", splits=tmp_path / "cohort" / "splits",
                       probe=smoke.probe)
    assert len(table) >= 1 and set(table.method) == {"averagemil"}


def test_the_study_design_is_complete_and_its_cohorts_valid():
    """studies/mechanisms.yml (issue #24): seeds, pools, methods and a prediction per cell; every cell a valid
    FeatSimConfig whose effect is the one calibrated on the oracle; the SSL settings a valid TrainConfig."""
    from pathlib import Path

    import yaml

    from gigassl.config import MapConfig, TrainConfig

    design = yaml.safe_load((Path(__file__).parents[1] / "studies" / "mechanisms.yml").read_text())
    assert len(design["generator_seeds"]) >= 3 and len(design["ssl_seeds"]) >= 2
    n_train = design["cohort"]["n_train"]
    for mechanism in ("M1", "M3"):
        pools = design["pools"][mechanism]
        assert len(pools) >= 3 and min(pools) == 0 and max(pools) >= 10 * n_train
    cohort = {k: tuple(v) if isinstance(v, list) else v for k, v in design["cohort"].items()}
    for cell in design["cells"]:
        settings = {k: v for k, v in cell.items() if k != "name"}
        for pool in design["pools"].get(cell["name"], design["pools"]["default"]):
            FeatSimConfig(**cohort, **settings, n_pool=pool)
        assert cell["effect"] == round(featsim.calibrated_effect(cell["mechanism"], 0.85), 4)
        assert design["calibration"][cell["mechanism"]]["effect"] == pytest.approx(cell["effect"], abs=1e-4)
        assert len(design["predictions"][cell["name"]]) > 100
    methods = {"oracle", "averagemil", "deepmil", "gigassl", "gigassl_local", "random_aggregator"}
    assert methods <= set(design["methods"])
    training = dict(design["ssl_training"])
    maps = {k: tuple(v) if isinstance(v, list) else v for k, v in training.pop("maps").items()}
    TrainConfig(**training, maps=MapConfig(**maps))
