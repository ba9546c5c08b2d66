"""``kill -9`` at random moments of ``train`` and ``generate``, then resume: real processes, real files.

Each test starts the real CLI in a subprocess, waits (polling the files it writes) until it is
under way, kills it with SIGKILL at a random moment, checks that what is left is complete, and
resumes. The random seed of the kill moments is in every assertion message.
"""

import json
import os
import random
import re

import numpy as np
import pytest
import yaml

from sagesnet_tf import cellular_automata as ca
from sagesnet_tf.cli.main import main
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.pipelines.writer import write_ca_dataset

from killing import kill_9_when

SEED = random.randrange(1_000_000)
RNG = random.Random(SEED)


def _kill_when(args, ready, what):
    """``kill -9`` the CLI run of ``args`` a random 0–0.3 s after ``ready()`` holds."""
    kill_9_when(args, ready, f"{what} (seed {SEED})", timeout_s=120.0, delay_s=RNG.uniform(0.0, 0.3))


# ----------------------------------------------------------------------------------------------- train
def _latest_step(run):
    import tensorflow as tf

    path = tf.train.latest_checkpoint(str(run / "checkpoints"))  # recorded only once its files are complete
    return -1 if path is None else int(path.rsplit("-", 1)[1])


def _checkpoint_values(prefix):
    """Every numeric tensor of a checkpoint (the data iterator's variant state left out)."""
    import tensorflow as tf

    reader = tf.train.load_checkpoint(str(prefix))
    return {k: reader.get_tensor(k) for k, dtype in reader.get_variable_to_dtype_map().items()
            if dtype not in (tf.variant, tf.string)}


def test_train_killed_twice_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path, capsys):
    write_ca_dataset(tmp_path / "data", ca.generate("life", (8, 8), 0.35, 6, 8, seed=1), "life")
    cfg = {"name": "kill", "seed": 0,
           "model": {"channels": 2, "states": 2, "latent_dim": 8, "hidden": 8, "depth": 1, "kernel_size": [3, 3, 1],
                     "coarse_levels": [{"factor": [2, 2, 1], "steps": 2}]},
           "data": {"batch_size": 8, "shuffle_buffer": 64},
           # noise (the checkpointed generator), the shuffled data iterator and the oversampling buffer all resume
           "stages": [{"kind": "predictor", "steps": 20, "input_noise": 0.05},
                      {"kind": "coarsener_autoencoder", "steps": 20, "oversample": 0.25}],
           "checkpoint": {"every_steps": 5, "keep": 2}, "validation": {"every_steps": 10, "batches": 2}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))

    def args(out):
        return ["train", "--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "data"), "--out", str(out),
                "--no-progress"]

    assert main(args(tmp_path / "reference")) == 0
    run = tmp_path / "run"
    first, second = RNG.randrange(5, 15), RNG.randrange(20, 30)
    _kill_when(args(run), lambda: _latest_step(run) >= first, "train")
    killed_at = _latest_step(run)
    assert 0 < killed_at < 40, SEED
    # metrics.json is whole (its history may still be empty: rows come every log_every / validation step)
    assert isinstance(json.loads((run / "metrics.json").read_text())["history"], list), SEED
    _kill_when([*args(run), "--resume"], lambda: _latest_step(run) >= max(second, killed_at + 5), "train --resume")
    assert killed_at < _latest_step(run) < 40, SEED
    capsys.readouterr()

    # A torn newest checkpoint (what a storage fault could leave): resume falls back to the one before it.
    newest = _latest_step(run)
    data_file = run / "checkpoints" / f"ckpt-{newest}.data-00000-of-00001"
    os.truncate(data_file, os.path.getsize(data_file) // 2)
    assert main([*args(run), "--resume"]) == 0
    out = capsys.readouterr().out
    assert f"ckpt-{newest} is unreadable" in out and f"at step {newest - 5} " in out, (SEED, out)

    reference, resumed = (_checkpoint_values(d / "checkpoints" / "ckpt-40") for d in (tmp_path / "reference", run))
    assert reference.keys() == resumed.keys() and len(reference) > 50
    differing = [k for k in reference if not np.array_equal(reference[k], resumed[k])]
    assert not differing, (SEED, killed_at, differing[:5])  # bit-identical weights, optimizer moments, buffers
    history = [json.loads((d / "metrics.json").read_text())["history"] for d in (tmp_path / "reference", run)]
    assert history[0] == history[1], SEED  # the same training and validation rows, none lost or repeated


# -------------------------------------------------------------------------------------------- generate
def _files(directory):
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def _records(path):
    import tensorflow as tf

    return sum(1 for _ in tf.data.TFRecordDataset(str(path), compression_type="GZIP"))


def test_generate_ca_killed_leaves_whole_shards_and_resumes_to_the_same_bytes(tmp_path, capsys):
    from sagesnet_tf.pipelines.reader import load_metadata

    # 8 rollouts × 160 boards of 128 × 128 cells: 1,280 records in 5 shards of 256 (4 MB each before GZIP)
    args = ["generate", "ca", "--rule", "life", "--size", "128", "128", "--boards", "8", "--steps", "159",
            "--seed", "5", "--out"]
    out = tmp_path / "killed"
    _kill_when([*args, str(out)], lambda: any(n.startswith("data-") for n in os.listdir(out)) if out.exists()
               else False, "generate ca")
    names = os.listdir(out)
    shards = sorted(n for n in names if n.startswith("data-"))
    assert "metadata.json" not in names and ".incomplete.json" in names, (SEED, names)
    assert 1 <= len(shards) < 5 and all(n.endswith("-of-00005.tfrecord.gz") for n in shards), (SEED, names)
    assert all(_records(out / n) == 256 for n in shards), SEED  # every shard under its final name is whole
    assert set(names) <= {*shards, ".incomplete.json", "ca_rollouts.png"} | {n for n in names if ".tmp-" in n}
    with pytest.raises(SagesnetError, match="is an incomplete dataset .*--resume"):
        load_metadata(out)  # what every reader (train, check_shards …) says first
    assert main([*args, str(out)]) == 2
    assert "interrupted write" in capsys.readouterr().err

    kept = {n: os.stat(out / n).st_mtime_ns for n in shards}
    assert main([*args, str(out), "--resume"]) == 0
    assert {n: os.stat(out / n).st_mtime_ns for n in shards} == kept, SEED  # only the missing shards written
    assert main([*args, str(tmp_path / "whole")]) == 0
    resumed, whole = _files(out), _files(tmp_path / "whole")
    assert resumed.keys() == whole.keys() and len([n for n in whole if n.startswith("data-")]) == 5
    for name in whole:
        if name == "metadata.json":
            a, b = (json.loads(files[name]) for files in (resumed, whole))
            a.pop("created_utc"), b.pop("created_utc")
            assert a == b
        else:
            assert resumed[name] == whole[name], (SEED, name)  # byte for byte
    assert main([*args, str(out), "--resume"]) == 0 and "already complete" in capsys.readouterr().out


@pytest.mark.lammps
def test_generate_md_killed_mid_run_is_refused_until_overwritten(tmp_path, capsys):
    from sagesnet_tf.io import write_structure
    from sagesnet_tf.pipelines.reader import load_metadata, read_trajectories
    from sagesnet_tf.structures import graphene_sheet

    write_structure(graphene_sheet(5, 8), str(tmp_path / "sheet.extxyz"))
    out = tmp_path / "md"
    args = ["generate", "md", "--structure", str(tmp_path / "sheet.extxyz"), "--protocol", "nvt", "--temperature", "300",
            "--record-every", "50", "--threads", "1", "--seed", "3", "--out", str(out)]

    def running():  # LAMMPS has printed its first thermo rows
        log = out / "log.lammps"
        return log.exists() and re.search(r"^\s+50\s", log.read_text(errors="replace"), re.M) is not None

    # 4,000 steps: LAMMPS is still running (seconds) when the kill lands 0-0.3 s after step 50; with 400 the
    # run could end and rename its dump within that wait (seen once in CI)
    _kill_when([*args, "--steps", "4000", "--dump"], running, "generate md")
    names = os.listdir(out)
    assert "metadata.json" not in names and "manifest.json" not in names, (SEED, names)
    assert not [n for n in names if n.startswith("data-")], (SEED, names)  # no shard, whole or partial
    assert "dump.lammpstrj" not in names and [n for n in names if n.startswith("dump.lammpstrj.tmp-")], (SEED, names)
    with pytest.raises(SagesnetError, match="not a sagesnet-tf dataset .*interrupted.*--overwrite"):
        load_metadata(out)
    assert main([*args, "--steps", "100"]) == 2
    err = capsys.readouterr().err
    assert "interrupted `generate md` run" in err and "--overwrite" in err and len(err.strip().splitlines()) == 1
    assert main([*args, "--steps", "100", "--overwrite"]) == 0
    assert read_trajectories(out)[0].n_frames == 3  # steps 0, 50, 100
    assert not [n for n in os.listdir(out) if ".tmp" in n]  # the killed run's partial dump is gone too
