"""The epoch loop shared by MoCo and Giga-SSL: checkpoint schedule, atomic files, logs, resume, wall time."""

import pandas as pd
import pytest
import torch

from gigassl.errors import ConfigError
from gigassl.loop import TrainingLoop, prepare_out_dir


def _state(epoch: int, loop: TrainingLoop, config: dict) -> dict:
    """A Giga-SSL-shaped checkpoint (the kind the loop resumes from)."""
    return {"model": {"w": torch.full((2,), float(epoch))}, "optimizer": {"step": epoch}, "epoch": epoch,
            "in_dim": 2, "config": config, "inputs": {"slides": "abc"}, "log": list(loop.log),
            "steps": list(loop.steps)}


def _run(out, epochs: int, every: int, stop_after: int | None = None, resume: bool = False, config=None, **kwargs):
    """A run of the loop whose step does nothing; ``stop_after``: raise KeyboardInterrupt in that epoch."""
    config = config or {"lr": 0.1}
    loop = TrainingLoop(out, "gigassl", "a test run", epochs, every, progress=False, **kwargs)
    if resume:
        loop.resume({"config": config, "inputs": {"slides": "abc"}})
    ran = []
    for epoch in loop.epochs():
        if epoch == stop_after:
            raise KeyboardInterrupt
        for step in loop.bar(range(2), epoch):
            loop.steps.append({"epoch": epoch + 1, "step": 2 * epoch + step + 1})
        loop.log.append({"epoch": epoch + 1, "loss": 1.0 / (epoch + 1)})
        ran.append(epoch)
        if loop.end_epoch(epoch, lambda: _state(epoch + 1, loop, config)):
            break
    return loop.finish(), ran


def test_checkpoints_every_k_epochs_and_at_the_end_and_snapshots_without_optimizer(tmp_path):
    last, ran = _run(tmp_path, epochs=5, every=2, snapshot_optimizer=False)
    assert ran == [0, 1, 2, 3, 4] and last == tmp_path / "checkpoint.pt"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "checkpoint.pt", "checkpoint_e0002.pt", "checkpoint_e0004.pt", "log.csv", "steps.csv"]  # no temporary
    assert torch.load(last, weights_only=True)["epoch"] == 5
    snapshot = torch.load(tmp_path / "checkpoint_e0004.pt", weights_only=True)
    assert snapshot["epoch"] == 4 and "optimizer" not in snapshot
    assert pd.read_csv(tmp_path / "log.csv").epoch.tolist() == [1, 2, 3, 4, 5]
    assert pd.read_csv(tmp_path / "steps.csv").step.tolist() == list(range(1, 11))


def test_snapshots_keep_the_optimizer_when_asked(tmp_path):
    _run(tmp_path, epochs=2, every=1, snapshot_optimizer=True)
    assert torch.load(tmp_path / "checkpoint_e0001.pt", weights_only=True)["optimizer"] == {"step": 1}


def test_resume_drops_the_rows_logged_after_the_checkpoint_and_continues(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, epochs=6, every=2, stop_after=3)  # epochs 1-3 logged, checkpoint after epoch 2
    assert len(pd.read_csv(tmp_path / "log.csv")) == 3
    _, ran = _run(tmp_path, epochs=6, every=2, resume=True)
    assert ran == [2, 3, 4, 5]  # from the checkpoint's epoch
    straight = tmp_path / "straight"
    _run(straight, epochs=6, every=2)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "log.csv"), pd.read_csv(straight / "log.csv"))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "steps.csv"), pd.read_csv(straight / "steps.csv"))


def test_resume_with_another_config_is_refused_and_without_a_checkpoint_starts_afresh(tmp_path):
    loop = TrainingLoop(tmp_path, "gigassl", "a test run", 3, 1, progress=False)
    assert loop.resume({"config": {}, "inputs": {}}) is None and loop.start == 0
    _run(tmp_path, epochs=1, every=1)
    with pytest.raises(ConfigError, match=r"holds a test run made with other settings \(config.lr: 0.1 there, 0.2"):
        _run(tmp_path, epochs=2, every=1, resume=True, config={"lr": 0.2})


def test_the_wall_time_limit_stops_after_the_first_epoch_with_a_checkpoint(tmp_path):
    last, ran = _run(tmp_path, epochs=10, every=4, max_minutes=0.0)
    assert ran == [0] and torch.load(last, weights_only=True)["epoch"] == 1
    assert not list(tmp_path.glob("checkpoint_e*.pt"))
    assert not TrainingLoop(tmp_path, "gigassl", "x", 1, 1).out_of_time()  # no limit


def test_prepare_out_dir_makes_the_folder(tmp_path):
    assert prepare_out_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b" and (tmp_path / "a" / "b").is_dir()


# ------------------------------------------------------------------ #25: no quiet overwrite, no NaN written
def _loop(out, epochs: int = 2):
    return TrainingLoop(out, "gigassl", "a test run", epochs, 1, progress=False)


def test_a_folder_with_checkpoints_is_refused_unless_resumed_or_overwritten(tmp_path, caplog):
    requested = {"config": {"lr": 0.1}, "inputs": {"slides": "abc"}}
    with caplog.at_level("WARNING"):
        assert _loop(tmp_path).begin(requested, resume=True) is None  # nothing to resume: epoch 0, said so
    assert "--resume: no checkpoint.pt in" in caplog.text
    _run(tmp_path, epochs=2, every=1)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"already holds the checkpoints of a run \(checkpoint.pt, "
                                          r"checkpoint_e0001.pt, .*--resume .*--overwrite"):
        _loop(tmp_path).begin(requested)
    assert _loop(tmp_path).begin(requested, resume=True)["epoch"] == 2
    with pytest.raises(ConfigError, match="--resume and --overwrite contradict"):
        _loop(tmp_path).begin(requested, resume=True, overwrite=True)
    assert _loop(tmp_path).begin(requested, overwrite=True) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]  # the run's files only were removed


def test_resume_compares_the_batch_size_which_changes_the_result(tmp_path):
    _run(tmp_path, epochs=2, every=1, config={"lr": 0.1, "batch_size": 8, "workers": 0})
    loop = _loop(tmp_path)
    with pytest.raises(ConfigError, match="config.batch_size: 8 there, 16 now"):
        loop.resume({"config": {"lr": 0.1, "batch_size": 16, "workers": 0}, "inputs": {"slides": "abc"}})
    assert loop.resume({"config": {"lr": 0.1, "batch_size": 8, "workers": 4}, "inputs": {"slides": "abc"}})


def test_a_diverged_run_writes_no_checkpoint(tmp_path):
    from gigassl.errors import DataError

    loop = _loop(tmp_path)
    loop.log.append({"epoch": 1, "loss": float("nan")})
    with pytest.raises(DataError, match="a test run diverged: the loss of epoch 1 is nan"):
        loop.end_epoch(0, lambda: _state(1, loop, {}))
    loop.log[-1]["loss"] = 0.5
    with pytest.raises(DataError, match=r"weight tensors hold NaN or infinite values \(w\)"):
        loop.end_epoch(0, lambda: {**_state(1, loop, {}), "model": {"w": torch.tensor([float("inf")])}})
    assert list(tmp_path.iterdir()) == []
