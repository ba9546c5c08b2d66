"""CA proof: trained on 16×16 Life boards, the model is exact on unseen boards of other sizes and
over a 100-step rollout; the coarse level beats the persistence baseline on block density. The same
holds for the 3D rule life3d (B6/S5678): trained on 8×8×8 boards, exact on 12×10×14 and 16³ boards
and over a 100-step rollout of an unseen 12×10×14 board."""

import numpy as np
import tensorflow as tf

from sagesnet_tf import cellular_automata as ca
from sagesnet_tf.pipelines.writer import write_ca_dataset
from sagesnet_tf.training.config import from_dict
from sagesnet_tf.training.trainer import Trainer, ca_datasets


def test_life_exact_on_other_sizes_and_rollout(tmp_path):
    write_ca_dataset(tmp_path / "data", ca.generate("life", (16, 16), 0.35, 40, 8, seed=1), "life")
    cfg = from_dict({"name": "life", "stages": [
        {"kind": "predictor", "steps": 150},
        {"kind": "coarsener_autoencoder", "steps": 30, "oversample": 0.25},
        {"kind": "coarse_joint", "steps": 60}],
        "checkpoint": {"every_steps": 1000}, "validation": {"every_steps": 1000}})
    train, val = ca_datasets(str(tmp_path / "data"), cfg)
    (tmp_path / "run").mkdir()
    result = Trainer(cfg, str(tmp_path / "run"), train, val, progress=False).run()
    assert (tmp_path / "run" / "metrics.json").is_file() and (tmp_path / "run" / "loss_curves.png").is_file()
    joint = result["final"]["coarse_joint"]
    assert joint["density_mse"] < joint["persistence_mse"]


def _trained_cell_model(tmp_path):
    write_ca_dataset(tmp_path / "data", ca.generate("life", (16, 16), 0.35, 40, 4, seed=2), "life")
    cfg = from_dict({"name": "life", "stages": [{"kind": "predictor", "steps": 200}],
                     "checkpoint": {"every_steps": 1000}, "validation": {"every_steps": 1000}})
    train, val = ca_datasets(str(tmp_path / "data"), cfg)
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, str(tmp_path / "run"), train, val, progress=False)
    trainer.run()
    return trainer.models.cell


def test_life_generalises(tmp_path):
    cell = _trained_cell_model(tmp_path)
    for size in ((24, 40), (64, 64)):
        boards = ca.random_boards(4, size, 0.35, seed=7)
        pred = tf.argmax(cell(tf.one_hot(boards, 2)), -1).numpy()
        assert np.array_equal(pred, ca.step(boards, "life")), size
    board = ca.random_boards(1, (24, 40), 0.35, seed=9)
    truth = ca.rollout(board, 100, "life")
    state = board
    for t in range(1, 101):
        state = tf.argmax(cell(tf.one_hot(state, 2)), -1).numpy().astype(np.uint8)
        assert np.array_equal(state, truth[t]), f"rollout diverged at step {t}"


def test_life3d_generalises(tmp_path):
    # Same model and predictor stage as configs/ca_life3d.yaml (3×3×3 kernel, batch 16).
    write_ca_dataset(tmp_path / "data", ca.generate("life3d", (8, 8, 8), 0.3, 4, 40, seed=2), "life3d")
    cfg = from_dict({"name": "life3d",
                     "model": {"kernel_size": [3, 3, 3], "coarse_levels": [{"factor": [2, 2, 2], "steps": 2}]},
                     "data": {"batch_size": 16},
                     "stages": [{"kind": "predictor", "steps": 200, "learning_rate": 0.01, "final_learning_rate": 0.001}],
                     "checkpoint": {"every_steps": 1000}, "validation": {"every_steps": 1000}})
    train, val = ca_datasets(str(tmp_path / "data"), cfg)
    (tmp_path / "run").mkdir()
    trainer = Trainer(cfg, str(tmp_path / "run"), train, val, progress=False)
    trainer.run()
    cell = trainer.models.cell

    def predict(boards):
        return tf.argmax(cell(tf.one_hot(boards, 2)), -1).numpy().astype(np.uint8)

    for size in ((12, 10, 14), (16, 16, 16)):
        boards = ca.random_boards(4, size, 0.3, seed=7)
        nxt = ca.step(boards, "life3d")
        assert 0.1 < (nxt != boards).mean() < 0.5, size  # births and deaths on these boards
        assert np.array_equal(predict(boards), nxt), size
    board = ca.random_boards(1, (12, 10, 14), 0.3, seed=9)
    truth = ca.rollout(board, 100, "life3d")
    # the truth keeps changing to the end (no die-out, no still life, no short cycle)
    changed = (truth[1:] != truth[:-1]).reshape(100, -1).mean(axis=1)
    assert changed.min() > 0.1
    assert all((truth[100] != truth[100 - k]).mean() > 0.1 for k in range(1, 6))
    alive = truth.reshape(101, -1).mean(axis=1)
    assert 0.15 < alive.min() and alive.max() < 0.4 and alive[50:].max() - alive[50:].min() > 0.02
    state = board
    for t in range(1, 101):
        state = predict(state)
        assert np.array_equal(state, truth[t]), f"rollout diverged at step {t}"
