"""Every command on bad inputs: a clear message naming the file or option, an exit code, no traceback, nothing
partial left (the bad-input suite of the command line)."""

import pytest
import torch

from gigassl import cli


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """A folder of bad inputs: a CSV where a checkpoint is expected, a truncated checkpoint, a MoCo checkpoint, a
    non-HDF5 bank file, a manifest with an unsafe id, a text file posing as a slide."""
    root = tmp_path_factory.mktemp("bad")
    (root / "table.csv").write_text("a,b\n1,2\n")
    (root / "truncated.pt").write_bytes(b"PK\x03\x04 truncated")
    torch.save({"state_dict": {"module.encoder_q.conv1.weight": torch.zeros(1)}}, root / "moco.pt")
    (root / "bank").mkdir()
    (root / "bank" / "S1.h5").write_text("not hdf5")
    (root / "unsafe.csv").write_text("slide_id,path\n../escape,x.tiff\n")
    (root / "slide.svs").write_text("not a slide")
    ids = [f"s{i:02d}" for i in range(40)]  # #25: slide embeddings and labels, one with a NaN
    (root / "labels.csv").write_text("slide_id,case_id,y\n" + "".join(f"{s},{s},{'ab'[i % 2]}\n"
                                                                     for i, s in enumerate(ids)))
    (root / "emb.csv").write_text("slide_id,f0,f1\n" + "".join(f"{s},{i},{i % 3}\n" for i, s in enumerate(ids)))
    (root / "nan.csv").write_text((root / "emb.csv").read_text().replace("s07,7,1", "s07,nan,1"))
    (root / "twice.yaml").write_text("train:\n  epochs: 3\ntrain:\n  epochs: 30\n")
    return root


CASES = {
    "synth, no slides": (["synth", "--out", "{o}", "--slides", "0"], "n_slides=0"),
    "info, not a slide": (["info", "{bad}/slide.svs"], "slide.svs"),
    "tile, missing manifest": (["tile", "--manifest", "{bad}/none.csv", "--out", "{o}"], "none.csv does not exist"),
    "tile, unsafe slide id": (["tile", "--manifest", "{bad}/unsafe.csv", "--out", "{o}"], "'../escape'"),
    "tile, bad option": (["tile", "--manifest", "{bad}/unsafe.csv", "--out", "{o}", "--tile-px", "0"], "tile_px=0"),
    "pretrain, no coords": (["pretrain-tiles", "--manifest", "{bad}/unsafe.csv", "--coords", "{bad}/none",
                             "--out", "{o}"], "unsafe.csv"),
    "bank, bad shard": (["bank", "--manifest", "{bad}/table.csv", "--coords", "{bad}", "--out", "{o}", "--shard",
                         "3/2"], "--shard '3/2'"),
    "train, no bank": (["train", "--bank", "{bad}/none", "--out", "{o}"], "none"),
    "train, corrupt bank file": (["train", "--bank", "{bad}/bank", "--out", "{o}", "--profile", "smoke"], "S1.h5"),
    "train, zero epochs": (["train", "--bank", "{bad}/bank", "--out", "{o}", "--epochs", "0"], "epochs=0"),
    "embed, CSV checkpoint": (["embed", "--bank", "{bad}/bank", "--checkpoint", "{bad}/table.csv", "--out",
                               "{o}/e.h5"], "table.csv is not a readable torch checkpoint"),
    "embed, truncated checkpoint": (["embed", "--bank", "{bad}/bank", "--checkpoint", "{bad}/truncated.pt", "--out",
                                     "{o}/e.h5"], "truncated.pt is not a readable torch checkpoint"),
    "embed, MoCo checkpoint": (["embed", "--bank", "{bad}/bank", "--checkpoint", "{bad}/moco.pt", "--out",
                                "{o}/e.h5"], "moco.pt is a MoCo tile-encoder checkpoint"),
    "probe, missing embeddings": (["probe", "--embeddings", "{bad}/none.h5", "--labels", "{bad}/table.csv",
                                   "--task", "b"], "none.h5"),
    "probe, zero splits": (["probe", "--embeddings", "{bad}/none.h5", "--labels", "{bad}/table.csv", "--task", "b",
                            "--n-splits", "0"], "n_splits"),
    "run, unknown profile": (["run", "--profile", "huge", "--root", "{bad}"], "huge"),
    # #25: NaN, folders for files, foreign outputs, duplicate keys, missing options, budgets
    "probe, NaN embedding": (["probe", "--embeddings", "{bad}/nan.csv", "--labels", "{bad}/labels.csv", "--task",
                              "y"], "nan.csv: NaN or infinite values in 1 of 40 slides (s07)"),
    "probe, budget too small": (["probe", "--embeddings", "{bad}/emb.csv", "--labels", "{bad}/labels.csv", "--task",
                                 "y", "--budget", "0.01"], "Choose a larger --train-size/--budget"),
    "probe, foreign --out": (["probe", "--embeddings", "{bad}/emb.csv", "--labels", "{bad}/labels.csv", "--task",
                              "y", "--out", "{bad}/table.csv"], "table.csv is an existing file that is not a probe"),
    "probe, embeddings folder": (["probe", "--embeddings", "{bad}", "--labels", "{bad}/labels.csv", "--task",
                                  "y"], "not slide embeddings"),
    "embed, checkpoint folder": (["embed", "--bank", "{bad}/bank", "--checkpoint", "{bad}", "--out", "{o}/e.h5"],
                                 "is a folder, not a file"),
    "train, config key twice": (["train", "--bank", "{bad}/bank", "--out", "{o}", "--config", "{bad}/twice.yaml"],
                                "key 'train' appears twice"),
    "train, monitor labels without task": (["train", "--bank", "{bad}/bank", "--out", "{o}", "--monitor-labels",
                                            "{bad}/labels.csv"], "add --monitor-task COLUMN"),
    "train, monitor task without labels": (["train", "--bank", "{bad}/bank", "--out", "{o}", "--monitor-task", "y"],
                                           "--monitor-task y needs --monitor-labels"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gives_a_named_error_and_no_traceback(name, bad, tmp_path, capsys):
    argv, named = CASES[name]
    out = tmp_path / "out"
    argv = [a.format(bad=bad, o=out) for a in argv]
    try:
        code = cli.main(argv)
    except SystemExit as exit_:  # argparse: usage errors
        code = exit_.code
    err = capsys.readouterr().err
    assert code != 0, name
    assert "Traceback" not in err and named.format(bad=bad) in err, err
    partial = [p for p in out.rglob("*") if p.is_file() and p.name.endswith(".tmp")] if out.exists() else []
    assert not partial
