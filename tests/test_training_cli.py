"""Config validation, the train CLI's refusals, and resume after SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from sagesnet_tf import cellular_automata as ca
from sagesnet_tf.cli.main import main
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.pipelines.writer import write_ca_dataset
from sagesnet_tf.training.config import from_dict, schema_text


def test_config_errors_are_one_line():
    with pytest.raises(SagesnetError, match="unknown config key 'stages\\[0\\].stepz'"):
        from_dict({"stages": [{"stepz": 3}]})
    with pytest.raises(SagesnetError, match="allowed: predictor"):
        from_dict({"stages": [{"kind": "nope"}]})
    with pytest.raises(SagesnetError, match="must be >= 1"):
        from_dict({"stages": [{"steps": 0}]})
    with pytest.raises(SagesnetError, match="coarsener_autoencoder"):
        from_dict({"stages": [{"kind": "coarse_joint"}]})
    assert "oversample" in schema_text() and "latent_dim" in schema_text()
    assert "time_reversal" in schema_text() and "coarse_joint" in schema_text()  # the MD trainer too


def test_cli_resume_after_kill(tmp_path, capsys):
    write_ca_dataset(tmp_path / "data", ca.generate("life", (16, 16), 0.35, 10, 5, seed=3), "life")
    cfg = {"name": "resume", "stages": [{"kind": "predictor", "steps": 400}, {"kind": "unrolled", "steps": 20, "unroll": 2}],
           "checkpoint": {"every_steps": 20}, "validation": {"every_steps": 1000}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    args = ["train", "--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "data"), "--out", str(run), "--no-progress"]
    proc = subprocess.Popen([sys.executable, "-m", "sagesnet_tf.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import tensorflow as tf

    def latest():  # the newest *complete* checkpoint (its index file appears before it is recorded)
        return tf.train.latest_checkpoint(str(run / "checkpoints"))

    deadline = time.time() + 120
    while time.time() < deadline and latest() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    saved = [int(latest().rsplit("-", 1)[1])]
    assert saved[-1] < 420
    assert main(args) == 2  # existing run without --resume is refused
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr()
    assert f"at step {saved[-1]} " in out.out + out.err  # continued from the checkpoint, not from 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stages"] == ["predictor", "unrolled"]
    assert set(metrics["final"]) == {"predictor", "unrolled"}
    train_steps = [r["step"] for r in metrics["history"] if r["split"] == "train"]
    assert train_steps == sorted(train_steps) and train_steps[-1] == 420
