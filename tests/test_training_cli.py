"""Config validation, the train CLI's refusals, and resume after SIGKILL."""

import fnmatch
import json
import os

import pytest
import yaml

from sagesnet_tf import cellular_automata as ca
from sagesnet_tf.cli.main import main
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.pipelines.writer import write_ca_dataset
from sagesnet_tf.training.config import from_dict, is_md_config, load_config, schema_text
from sagesnet_tf.training.md_config import MDTrainConfig, md_config_from_dict

from killing import kill_9_when

CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


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


def test_load_config_dispatches_on_kind_and_names_repeats_alike(tmp_path):
    # one loader for both trainers; a repeated stage without a name is numbered by its kind's count
    # in both schemas (kind, kind2, ...), a stage named in the file counting too
    stages = [{"kind": "predictor"}, {"kind": "unrolled"}, {"kind": "unrolled", "name": "clean"}, {"kind": "unrolled"}]
    (tmp_path / "ca.yaml").write_text(yaml.safe_dump({"stages": stages}))
    (tmp_path / "md.yaml").write_text(yaml.safe_dump({"kind": "md", "stages": stages}))
    ca_cfg, md_cfg = load_config(tmp_path / "ca.yaml"), load_config(tmp_path / "md.yaml")
    assert not isinstance(ca_cfg, MDTrainConfig) and isinstance(md_cfg, MDTrainConfig)
    assert [s.name for s in ca_cfg.stages] == [s.name for s in md_cfg.stages] == [
        "predictor", "unrolled", "clean", "unrolled3"]


@pytest.mark.parametrize("strategy", ["mirrored", "multiworker"])
def test_md_config_refuses_a_distribution_strategy(tmp_path, capsys, strategy):
    # the MD trainer runs on one device: --strategy is refused in one line before --data or --out is touched
    (tmp_path / "md.yaml").write_text(yaml.safe_dump({"kind": "md", "stages": [{"kind": "predictor"}]}))
    run = tmp_path / "run"
    code = main(["train", "--config", str(tmp_path / "md.yaml"), "--data", str(tmp_path / "no_data"),
                 "--out", str(run), "--strategy", strategy, "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(f"Error: --strategy {strategy} trains cellular-automaton configs only") and "kind: md" in err
    assert not run.exists()


def _shipped_config(name):
    with open(os.path.join(CONFIGS_DIR, name), encoding="utf-8") as fh:
        return yaml.safe_load(fh)


@pytest.mark.parametrize("name", sorted(f for f in os.listdir(CONFIGS_DIR) if f.endswith(".yaml")))
def test_shipped_configs_are_valid(name):
    # Every config in configs/ parses and validates. A chained one starts from `runs/NAME`, the run of
    # configs/NAME.yaml (docs/TRAINING.md), which CI has not trained: its model section is taken from
    # that config (and so on up the chain) instead of the run's model_info.json; or from a SavedModel
    # shipped in exported_models/, whose metadata gives the model config.
    data = _shipped_config(name)
    if not is_md_config(os.path.join(CONFIGS_DIR, name)):
        assert from_dict(data).total_steps > 0
        return
    model, parent = dict(data.get("model") or {}), data.pop("init_from", "")
    while parent.startswith("runs/"):
        above = _shipped_config(parent[len("runs/"):] + ".yaml")
        model, parent = {**(above.get("model") or {}), **model}, above.get("init_from", "")
    if parent:
        shipped = os.path.join(CONFIGS_DIR, "..", parent)
        assert parent.startswith("exported_models/") and os.path.isdir(shipped), \
            f"{name}: init_from {parent!r} is neither a run of a shipped config nor a shipped SavedModel"
        data["init_from"] = shipped
    cfg = md_config_from_dict({**data, "model": model})
    assert cfg.stages and cfg.model_config
    # a weight's key (a name or a shell wildcard) picks at least one dataset entry of the config
    unmatched = [key for key in cfg.data.dataset_weights
                 if key not in cfg.data.datasets and not fnmatch.filter(cfg.data.datasets, key)]
    assert not unmatched, f"{name}: data.dataset_weights {unmatched} match no entry of data.datasets"


def test_cli_resume_after_kill(tmp_path, capsys):
    write_ca_dataset(tmp_path / "data", ca.generate("life", (16, 16), 0.35, 10, 5, seed=3), "life")
    cfg = {"name": "resume", "stages": [{"kind": "predictor", "steps": 400}, {"kind": "unrolled", "steps": 20, "unroll": 2}],
           "checkpoint": {"every_steps": 20}, "validation": {"every_steps": 1000}}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    args = ["train", "--config", str(tmp_path / "c.yaml"), "--data", str(tmp_path / "data"), "--out", str(run), "--no-progress"]
    import tensorflow as tf

    def latest():  # the newest *complete* checkpoint (its index file appears before it is recorded)
        return tf.train.latest_checkpoint(str(run / "checkpoints"))

    kill_9_when(args, lambda: latest() is not None, "train", timeout_s=120.0)
    saved = int(latest().rsplit("-", 1)[1])
    assert saved < 420
    assert main(args) == 2  # existing run without --resume is refused
    assert "already exists" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr()
    assert f"at step {saved} " in out.out + out.err  # continued from the checkpoint, not from 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["stages"] == ["predictor", "unrolled"]
    assert set(metrics["final"]) == {"predictor", "unrolled"}
    train_steps = [r["step"] for r in metrics["history"] if r["split"] == "train"]
    assert train_steps == sorted(train_steps) and train_steps[-1] == 420
