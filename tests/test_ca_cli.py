"""CA models through the CLI: `generate ca` → `train` → `export` → `ca simulate` in a separate process."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from sagesnet_tf import cellular_automata as ca
from sagesnet_tf.cli.main import main
from sagesnet_tf.savedmodel import METADATA_ASSET

GLIDER = """# a glider on a 12x10 board (line = x, character = y)
0100000000
0010000000
1110000000
""" + "0000000000\n" * 9

CONFIG = """name: life_tiny
stages:
  - {kind: predictor, steps: 200}
checkpoint: {every_steps: 1000}
validation: {every_steps: 1000}
"""


@pytest.fixture(scope="module")
def exported_life(tmp_path_factory):
    """A Life model trained for 200 steps through the CLI (the schedule test_ca_proof shows exact) and exported."""
    tmp = tmp_path_factory.mktemp("ca")
    assert main(["generate", "ca", "--rule", "life", "--size", "16", "16", "--density", "0.35", "--boards", "40",
                 "--steps", "4", "--seed", "2", "--out", str(tmp / "data")]) == 0
    (tmp / "life.yaml").write_text(CONFIG)
    assert main(["train", "--config", str(tmp / "life.yaml"), "--data", str(tmp / "data"), "--out", str(tmp / "run"),
                 "--no-progress"]) == 0
    assert main(["export", "--run", str(tmp / "run"), "--out", str(tmp / "exported")]) == 0
    return tmp, tmp / "exported" / "1"


def cli(*args, cwd):
    """`sagesnet-tf ARGS` in a fresh process."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, "-m", "sagesnet_tf.cli", *args], capture_output=True, text=True,
                          timeout=300, cwd=cwd, env=env)


def test_export_writes_a_ca_savedmodel(exported_life):
    tmp, path = exported_life
    meta = json.loads((path / "assets" / METADATA_ASSET).read_text())
    assert meta["kind"] == "ca" and meta["states"] == 2
    assert meta["training_run"]["checkpoint"].startswith(str((tmp / "run" / "checkpoints").resolve()))
    assert meta["limits"]["max_steps_per_call"] == 10_000
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    board = ca.random_boards(1, (24, 40), 0.35, seed=3)[0].astype(np.int32)
    frames = fn(board=board, n_steps=np.int32(5))["frames"].numpy()
    assert frames.shape == (5, 24, 40, 1)
    np.testing.assert_array_equal(frames, ca.rollout(board, 5, "life")[1:])
    bad = [dict(board=board[..., 0], n_steps=np.int32(1)), dict(board=board * 2, n_steps=np.int32(1)),
           dict(board=board[:0], n_steps=np.int32(1)), dict(board=board, n_steps=np.int32(0)),
           dict(board=board, n_steps=np.int32(2 ** 31 - 1))]
    for inputs in bad:
        with pytest.raises(tf.errors.InvalidArgumentError):
            fn(**inputs)


def test_ca_simulate_text_and_npy_boards_in_a_separate_process(exported_life, tmp_path):
    _, path = exported_life
    (tmp_path / "glider.txt").write_text(GLIDER)
    proc = cli("ca", "simulate", "--model", str(path), "--board", "glider.txt", "--steps", "40", "--out", "glider",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = np.load(tmp_path / "glider" / "frames.npy")
    board = np.array([[int(c) for c in line] for line in GLIDER.splitlines() if not line.startswith("#")], np.uint8)
    assert frames.shape == (41, 12, 10, 1) and frames.dtype == np.uint8 and set(np.unique(frames)) <= {0, 1}
    np.testing.assert_array_equal(frames, ca.rollout(board[..., None], 40, "life"))  # the glider keeps gliding
    text = (tmp_path / "glider" / "frames.txt").read_text().splitlines()
    assert text[0] == "# generation 0" and text[13] == "# generation 1" and len(text) == 41 * 13
    assert json.loads((tmp_path / "glider" / "manifest.json").read_text())["steps"] == 40

    board3 = ca.random_boards(1, (20, 16, 2), 0.35, seed=4)[0]
    np.save(tmp_path / "soup.npy", board3)
    proc = cli("ca", "simulate", "--model", str(path), "--board", "soup.npy", "--steps", "10", "--out", "soup",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    frames = np.load(tmp_path / "soup" / "frames.npy")
    np.testing.assert_array_equal(frames, ca.rollout(board3, 10, "life"))  # layer by layer
    assert not (tmp_path / "soup" / "frames.txt").exists()


def test_ca_simulate_user_errors(exported_life, tmp_path, capsys):
    _, path = exported_life
    (tmp_path / "letters.txt").write_text("01x\n010\n")
    (tmp_path / "ragged.txt").write_text("010\n01\n")
    (tmp_path / "three.txt").write_text("012\n010\n")
    np.save(tmp_path / "float.npy", np.full((4, 4), 0.9))
    for board, words in (("letters.txt", "digits 0/1 only"), ("ragged.txt", "rows of one length"),
                         ("three.txt", "has cell state 2"), ("float.npy", "integer array")):
        assert main(["ca", "simulate", "--model", str(path), "--board", str(tmp_path / board), "--steps", "2",
                     "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert words in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()
    atom_model = os.path.join(os.path.dirname(__file__), "..", "exported_models", "sagesnet_graphene")
    (tmp_path / "ok.txt").write_text("010\n010\n010\n")
    assert main(["ca", "simulate", "--model", atom_model, "--board", str(tmp_path / "ok.txt"), "--steps", "2",
                 "--out", str(tmp_path / "o")]) == 2
    assert "holds a 'md' model, not 'ca'; run it with `sagesnet-tf simulate --structure FILE`" in capsys.readouterr().err
    assert main(["simulate", "--model", str(path), "--structure", os.path.join(os.path.dirname(__file__), "..",
                 "examples", "graphene.extxyz"), "--steps", "2", "--out", str(tmp_path / "o")]) == 2
    assert "holds a 'ca' model, not 'md'; run it with `sagesnet-tf ca simulate" in capsys.readouterr().err
