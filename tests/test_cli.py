"""The command line: complete help for every command, `info`, `synth` and usage errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gigassl import cli

COMMANDS = {
    "synth": ["--out", "--slides", "--seed", "--profile"],
    "tile": ["--manifest", "--out", "--target-mpp", "--tile-px", "--mpp", "--workers", "--min-tissue"],
    "info": ["slides", "--json"],
    "pretrain-tiles": ["--manifest", "--coords", "--out", "--epochs", "--device", "--restart"],
    "bank": ["--manifest", "--coords", "--out", "--augmentations", "--tiles", "--mode", "--encoder", "--weights",
             "--device", "--shard"],
    "train": ["--bank", "--out", "--tiles-per-view", "--epochs", "--batch-size", "--aggregator", "--backend",
              "--no-slide-aug", "--resume", "--monitor-labels", "--steps", "--schedule-epochs", "--bn-views",
              "--aggregator-init"],
    "embed": ["--bank", "--checkpoint", "--out", "--views", "--tiles-per-view"],
    "probe": ["--embeddings", "--labels", "--task", "--splits", "--n-splits", "--budget", "--train-size",
              "--allow-case-overlap", "--method", "--bank", "--ids", "--tcga-task", "--out", "--protocol", "--time",
              "--event"],
    "evaluate": ["--embeddings", "--ids", "--labels", "--task", "--time", "--event", "--evaluations", "--out",
                 "--n-splits", "--shots", "--draws", "--classifiers", "--neighbours", "--top-k", "--protocol"],
    "run": ["--profile", "--only", "--force", "--parameter"],
}


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_has_complete_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main([command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in COMMANDS[command]:
        assert option in out, f"{command} --help lacks {option}"


def test_console_script_is_installed():
    exe = Path(sys.executable).with_name("gigassl")
    result = subprocess.run([str(exe), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "pretrain-tiles" in result.stdout


def test_info_prints_what_openslide_sees(cmu_slide, capsys, tmp_path):
    assert cli.main(["info", str(cmu_slide)]) == 0
    out = capsys.readouterr().out
    assert "vendor: aperio" in out and "level 0: 2220 x 2967 px" in out and "mpp: 0.499" in out
    assert cli.main(["info", "--json", str(cmu_slide)]) == 0
    assert json.loads(capsys.readouterr().out)["level_count"] == 1
    assert cli.main(["info", str(tmp_path / "none.svs")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_synth_writes_a_cohort(tmp_path, capsys):
    assert cli.main(["synth", "--out", str(tmp_path), "--profile", "smoke", "--slides", "4", "--pool-slides", "1",
                     "--no-progress"]) == 0
    assert len(list((tmp_path / "slides").glob("*.tiff"))) == 5 and (tmp_path / "manifest.csv").is_file()


def test_usage_errors_exit_2_and_input_errors_exit_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["tile", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert cli.main(["tile", "--manifest", str(tmp_path / "none.csv"), "--out", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert cli.main(["probe", "--embeddings", str(tmp_path / "e.h5")]) == 1
    assert "--labels" in capsys.readouterr().err


def test_probe_command_on_the_authors_tcga_splits_and_on_a_manifest(tmp_path, capsys):
    import numpy as np
    import pandas as pd

    from gigassl.io import write_embeddings
    from gigassl.evaluation.tcga import released_ids

    ids = released_ids()
    np.save(tmp_path / "embeddings.npy", np.random.default_rng(0).normal(size=(len(ids), 16)).astype(np.float32))
    np.save(tmp_path / "ids.npy", np.array(ids))
    out = tmp_path / "lung.csv"
    assert cli.main(["probe", "--embeddings", str(tmp_path / "embeddings.npy"), "--ids", str(tmp_path / "ids.npy"),
                     "--tcga-task", "lung", "--n-splits", "2", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    assert set(table.budget) == {"full", "25p", "100", "50"} and (table.case_overlap > 0).any()
    assert "auc_mean" in capsys.readouterr().out
    # a manifest with labels, generated splits, a budget and a tiny training set
    g = np.random.default_rng(1)
    slides = [f"s{i}" for i in range(40)]
    labels = pd.DataFrame({"slide_id": slides, "case_id": slides, "y": ["a", "b"] * 20})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    write_embeddings(tmp_path / "e.h5", slides, g.normal(size=(40, 8)))
    for extra in (["--budget", "0.5"], ["--train-size", "10"]):
        assert cli.main(["probe", "--embeddings", str(tmp_path / "e.h5"), "--labels", str(tmp_path / "labels.csv"),
                         "--task", "y", "--n-splits", "3", "--out", str(tmp_path / "p.csv"), *extra]) == 0
    assert pd.read_csv(tmp_path / "p.csv")["n_train"].eq(10).all()
    assert cli.main(["probe", "--embeddings", str(tmp_path / "e.h5"), "--labels", str(tmp_path / "labels.csv"),
                     "--task", "y", "--n-splits", "3", "--protocol", "fair", "--out", str(tmp_path / "f.csv")]) == 0
    fair = pd.read_csv(tmp_path / "f.csv")
    assert (fair.protocol == "fair").all() and fair.preprocessing.isin(["l2", "standard", "l2+standard"]).all()


def test_the_readme_commands_for_trident_features(trident_features, tmp_path, capsys):
    """`Coming from TRIDENT or CLAM`: train on the features, embed to TRIDENT's per-slide layout, probe both ways."""
    import pandas as pd

    from gigassl import io
    from gigassl.bank import bank_slide_ids

    ids = bank_slide_ids(trident_features)
    labels = tmp_path / "labels.csv"
    pd.DataFrame({"slide_id": ids, "case_id": ids, "t": ["a", "b"] * (len(ids) // 2) + ["a"]}).to_csv(labels)
    # the slide without tissue is left out, listed, and the exit status says so (1, as tile says it of a blank slide)
    assert cli.main(["train", "--bank", str(trident_features), "--out", str(tmp_path / "ssl"), "--profile", "smoke",
                     "--batch-size", "8", "--no-progress"]) == 1
    assert "EMPTY" in capsys.readouterr().err
    out = tmp_path / "slide_features_gigassl"
    assert cli.main(["embed", "--bank", str(trident_features), "--checkpoint", str(tmp_path / "ssl" / "checkpoint.pt"),
                     "--out", str(out), "--profile", "smoke", "--no-progress"]) == 1
    assert len(list(out.glob("S*.h5"))) == 16 and pd.read_csv(out / "failures.csv")["slide_id"].tolist() == ["EMPTY"]
    common = ["--labels", str(labels), "--task", "t", "--n-splits", "2", "--profile", "smoke"]
    # the label table still names the empty slide: probing embeddings that lack it is a mismatch, named
    assert cli.main(["probe", "--embeddings", str(out), *common]) == 1
    assert "'EMPTY'" in capsys.readouterr().err
    embedded = tmp_path / "embedded.csv"
    pd.read_csv(labels).query("slide_id != 'EMPTY'").to_csv(embedded)
    assert cli.main(["probe", "--embeddings", str(out), "--out", str(tmp_path / "p.csv"), "--labels", str(embedded),
                     *common[2:]]) == 0
    assert cli.main(["probe", "--method", "averagemil", "--bank", str(trident_features),
                     "--out", str(tmp_path / "a.csv"), *common]) == 1
    assert pd.read_csv(tmp_path / "a.csv.failures.csv")["slide_id"].tolist() == ["EMPTY"]
    capsys.readouterr()
    assert cli.main(["probe", "--embeddings", str(trident_features), *common]) != 0
    err = capsys.readouterr().err
    assert "not slide embeddings" in err and "--bank" in err and "delete" not in err.lower()
    assert io.read_embeddings(out)[1].shape == (16, 512)


def test_verbose_is_accepted_before_and_after_the_command():
    parser = cli.build_parser()
    assert parser.parse_args(["-v", "info", "a.svs"]).verbose is True
    assert parser.parse_args(["info", "a.svs", "-v"]).verbose is True
    assert parser.parse_args(["info", "a.svs"]).verbose is False
    assert parser.parse_args(["-v", "train", "--bank", "b", "--out", "o"]).verbose is True
    assert parser.parse_args(["train", "--bank", "b", "--out", "o", "-v"]).verbose is True
    probe_help = parser._subparsers._group_actions[0].choices["probe"].format_help()
    assert "95% interval" in probe_help and "95%%" not in probe_help
