"""evaluate against a small synthetic MD reference dataset (written with the pipelines writer)."""

import json
import os

import numpy as np

from sagesnet_tf.cli.main import main
from sagesnet_tf.evaluate import evaluate
from sagesnet_tf.export import export_model
from sagesnet_tf.io import read_structure
from sagesnet_tf.model import SagesnetConfig, SagesnetModel
from sagesnet_tf.pipelines.writer import write_dataset
from sagesnet_tf.trajectory import Trajectory

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "graphene.extxyz")


def reference_dataset(path, rate: float, collide: bool = False):
    """5 frames 10 fs apart: atoms drift at constant thermal velocities, box stretched along x.
    ``collide``: atom 0 and its nearest neighbour also close on each other at 50 Å/ps (0.5 Å a frame)."""
    atoms = read_structure(EXAMPLE)
    rng = np.random.default_rng(0)
    n, t = len(atoms), 5
    vel = rng.normal(0, 1.5, (n, 3))
    if collide:
        gap = atoms.positions - atoms.positions[0]
        other = int(np.argsort(np.linalg.norm(gap, axis=1))[1])
        toward = gap[other] / np.linalg.norm(gap[other])
        vel[0], vel[other] = 25.0 * toward, -25.0 * toward
    times = np.arange(t) * 0.01
    scale = 1 + rate * times
    pos = np.stack([atoms.positions * [s, 1, 1] + vel * tt for s, tt in zip(scale, times)])
    cells = np.stack([np.diag(np.diag(atoms.cell) * [s, 1, 1]) for s in scale])
    stress = rng.normal(0, 1e3, (t, n, 6))
    env = np.stack([np.full(t, 300.0), np.zeros(t), np.full(t, rate), scale - 1], axis=1)
    traj = Trajectory(atoms.symbols, atoms.ids, pos, np.repeat(vel[None], t, 0), stress, cells, atoms.pbc,
                      np.arange(t) * 10, times, env, dt_fs=1.0)
    write_dataset(path, [traj])
    return path


def test_evaluate_reports_finite_metrics_and_baseline(tmp_path):
    model = SagesnetModel(SagesnetConfig(latent_dim=8, hidden=8, depth=1, encoder_layers=1, coarse_levels=()))
    model.build()
    exported = export_model(model, tmp_path / "m")
    ref = reference_dataset(tmp_path / "ref", rate=0.0)
    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--model", str(exported), "--reference", str(ref), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics["n_frames"] == 5 and metrics["model_steps_per_frame"] == 1
    # the reference moves at constant velocity: the baseline is exact, and so is the untrained
    # model (its learned corrections start at zero, leaving the kinematic step x + v·Δ)
    assert metrics["one_step"]["baseline_position_rmse_A"] < 1e-6
    assert metrics["one_step"]["position_rmse_A"] < 1e-4
    assert metrics["rollout"]["baseline_position_rmse_A"] < 1e-6
    assert metrics["rollout"]["position_rmse_A"] < 1e-3 and np.isfinite(metrics["temperature_mae_K"])
    assert 0.0 <= metrics["bond_survival"]["model"] <= 1.0 and metrics["bond_survival"]["n_initial_bonds"] > 0
    assert np.isfinite(metrics["rdf_l1"]) and "tension" not in metrics
    assert (tmp_path / "metrics.png").stat().st_size > 0

    tension = reference_dataset(tmp_path / "tension", rate=0.5)
    assert main(["evaluate", "--model", str(exported), "--reference", str(tension), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert np.isfinite(metrics["tension"]["stress_rmse_GPa"]) and metrics["tension"]["stress_rmse_GPa"] > 0
    # the affine stretch plus the kinematic step follow the stretched constant-velocity reference
    assert metrics["one_step"]["position_rmse_A"] < 1e-3


def test_evaluate_rejects_mismatched_interval(tmp_path, capsys):
    model = SagesnetModel(SagesnetConfig(latent_dim=8, hidden=8, depth=1, encoder_layers=1, coarse_levels=(),
                                         delta_steps=3))
    model.build()
    exported = export_model(model, tmp_path / "m")
    ref = reference_dataset(tmp_path / "ref", rate=0.0)
    assert main(["evaluate", "--model", str(exported), "--reference", str(ref)]) == 2
    assert "multiple" in capsys.readouterr().err


def test_diverging_rollout_is_reported_not_raised(tmp_path):
    model = SagesnetModel(SagesnetConfig(latent_dim=8, hidden=8, depth=1, encoder_layers=1, coarse_levels=()))
    model.build()
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 3.0, w.shape).astype(w.dtype) for w in model.get_weights()])
    exported = export_model(model, tmp_path / "m")
    ref = reference_dataset(tmp_path / "ref", rate=0.0)
    metrics = evaluate(str(exported), ref, tmp_path / "metrics.json")
    roll = metrics["rollout"]
    assert roll["diverged"] and 1 <= roll["frames_completed"] < metrics["n_frames"]
    stopped_at_once = roll["frames_completed"] == 1  # no rollout frame to average over
    assert (roll["position_rmse_A"] is None) if stopped_at_once else np.isfinite(roll["position_rmse_A"])
    assert 0.0 <= metrics["bond_survival"]["model"] <= 1.0
    assert json.loads((tmp_path / "metrics.json").read_text())["rollout"]["diverged"] == roll["diverged"]


def test_rollout_that_pushes_atoms_together_stops_as_simulate_would(tmp_path):
    # The untrained model steps x + v·Δ: the two colliding atoms, 1.4 Å apart, are 0.4 Å apart after
    # two frames, which simulate's rule calls an overlap; the rollout stops there.
    model = SagesnetModel(SagesnetConfig(latent_dim=8, hidden=8, depth=1, encoder_layers=1, coarse_levels=()))
    model.build()
    exported = export_model(model, tmp_path / "m")
    metrics = evaluate(str(exported), reference_dataset(tmp_path / "ref", rate=0.0, collide=True))
    roll = metrics["rollout"]
    assert roll["diverged"] is not None and "overlap" in roll["diverged"], roll["diverged"]
    assert roll["frames_completed"] == 2
