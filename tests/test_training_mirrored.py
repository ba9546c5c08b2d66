"""MirroredStrategy over two logical CPU devices: one short stage runs and records metrics."""

import json
import subprocess
import sys

import yaml

from sagesnet_tf import cellular_automata as ca
from sagesnet_tf.pipelines.writer import write_ca_dataset


def test_mirrored_two_cpu_devices(tmp_path):
    write_ca_dataset(tmp_path / "data", ca.generate("life", (16, 16), 0.35, 10, 3, seed=4), "life")
    cfg = {"name": "mirrored", "stages": [{"kind": "predictor", "steps": 20}], "data": {"batch_size": 8}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "sagesnet_tf.cli", "train", "--config", str(tmp_path / "c.yaml"),
                           "--data", str(tmp_path / "data"), "--out", str(run), "--strategy", "mirrored",
                           "--cpu-devices", "2", "--no-progress"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    first = [r["loss"] for r in metrics["history"] if r["split"] == "train"]
    assert metrics["final"]["predictor"]["loss"] < 0.69 and first[-1] < 0.69
