"""MD training of the atom model on a tiny real LAMMPS/AIREBO dataset (engineer G)."""

import json
import os

import numpy as np
import pytest

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.md.protocols import Tension, make_protocol
from sagesnet_tf.md.run import run_md
from sagesnet_tf.pipelines.writer import write_dataset
from sagesnet_tf.structures import graphene_sheet
from sagesnet_tf.training import md_config, md_trainer


@pytest.fixture(scope="module")
def md_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("md")
    work = root / "work"
    work.mkdir()
    result = run_md(graphene_sheet(4, 3), make_protocol("nvt", temperature_K=300.0, steps=400), str(work),
                    record_every=10, threads=1, progress=False)
    write_dataset(str(root / "data" / "nvt_300"), [result.trajectory])
    # a second, smaller sheet: training mixes structures of different sizes
    small = run_md(graphene_sheet(3, 3), make_protocol("nvt", temperature_K=600.0, steps=400), str(work),
                   record_every=10, threads=1, progress=False)
    write_dataset(str(root / "data" / "nvt_small_600"), [small.trajectory])
    return str(root / "data")


@pytest.fixture(scope="module")
def tension_data(md_data, tmp_path_factory):
    """md_data's nvt_300 plus a fast tension run of the same sheet (box x grows 1 % per 10 fs record)."""
    root = tmp_path_factory.mktemp("tension")
    work = root / "work"
    work.mkdir()
    protocol = Tension(300.0, strain_rate_per_ps=1.0, max_strain=0.2, relax_ps=0.05, early_stop=False)
    result = run_md(graphene_sheet(4, 3), protocol, str(work), record_every=10, threads=1, progress=False)
    write_dataset(str(root / "data" / "tension_300"), [result.trajectory])
    os.symlink(os.path.join(md_data, "nvt_300"), root / "data" / "nvt_300")
    return str(root / "data")


def test_windows_of_different_structures_are_batched_per_structure(md_data):
    from sagesnet_tf.pipelines import reader
    from sagesnet_tf.training.md_batches import MDWindows, Segment

    trajs = [reader.read_trajectories(os.path.join(md_data, name))[0] for name in ("nvt_300", "nvt_small_600")]
    windows = MDWindows([Segment(t, 0, t.n_frames, str(t.n_atoms)) for t in trajs], 3, ("C", "H"))
    assert windows.n_windows == sum(t.n_frames - 2 for t in trajs)
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(20):
        batch = windows.sample(rng, 4)
        n = batch["positions"].shape[2]
        assert batch["positions"].shape == (4, 3, n, 3) and batch["species"].shape == (4, n)
        assert len({tuple(b.ravel()) for b in batch["box"]}) == 1  # one structure per batch
        seen.add(n)
    assert seen == {t.n_atoms for t in trajs}


def test_dataset_weights_set_how_often_windows_are_drawn(md_data, tmp_path):
    from sagesnet_tf.pipelines import reader
    from sagesnet_tf.training.md_batches import MDWindows, Segment

    big, small = (reader.read_trajectories(os.path.join(md_data, name))[0] for name in ("nvt_300", "nvt_small_600"))
    half = big.n_frames // 2
    # the first half of the big sheet weighs 4: its windows are drawn 4x as often as those of its second
    # half (same structure, so same group) and its group gains against the small sheet's
    segments = [Segment(big, 0, half, "first", 4.0), Segment(big, half, big.n_frames, "second"),
                Segment(small, 0, small.n_frames, "small")]
    windows = MDWindows(segments, 3, ("C", "H"))
    n_first, n_second, n_small = half - 2, big.n_frames - half - 2, small.n_frames - 2
    rng = np.random.default_rng(1)
    picks = np.concatenate([windows.draw(rng, 4)[0] for _ in range(3000)])
    first = np.mean(picks < n_first)
    small_share = np.mean(picks >= n_first + n_second)
    expected_first = 4 * n_first / (4 * n_first + n_second + n_small)
    assert abs(first - expected_first) < 0.03, (first, expected_first)
    assert abs(small_share - n_small / (4 * n_first + n_second + n_small)) < 0.03, small_share
    cfg = _config()
    cfg.data.dataset_weights = {"nvt_typo": 2.0}
    with pytest.raises(SagesnetError, match="dataset_weights names 'nvt_typo'"):
        md_trainer.train_md(cfg, md_data, str(tmp_path / "run"), progress=False)
    cfg.data.dataset_weights = {"nvt_300": 0}
    with pytest.raises(SagesnetError, match=r"dataset_weights\[nvt_300\] is 0"):
        md_trainer.train_md(cfg, md_data, str(tmp_path / "run"), progress=False)


def test_dataset_names_and_weights_take_wildcards(md_data):
    from sagesnet_tf.training.md_data import dataset_dirs, load_md_data

    assert [os.path.basename(d) for d in dataset_dirs(md_data, ["nvt_*"])] == ["nvt_300", "nvt_small_600"]
    with pytest.raises(SagesnetError, match="'cshort_\\*' matches no dataset"):
        dataset_dirs(md_data, ["nvt_300", "cshort_*"])
    cfg = _config()
    cfg.data.datasets = ["nvt_*"]
    cfg.data.dataset_weights = {"nvt_small_*": 3.0}
    data = load_md_data(md_data, cfg)
    weights = {seg.name.split("[")[0]: seg.weight for seg in data.train.segments}
    assert weights == {"nvt_300": 1.0, "nvt_small_600": 3.0}
    cfg.data.dataset_weights = {"corrective_*": 3.0}
    with pytest.raises(SagesnetError, match="dataset_weights names 'corrective_\\*'"):
        load_md_data(md_data, cfg)


def _config(**extra):
    data = {
        "kind": "md", "name": "tiny", "seed": 0, "log_every": 5,
        "model": {"latent_dim": 8, "hidden": 16, "depth": 1, "h": 1.8, "slots": 2, "coarse_levels": [],
                  "boundary": ["periodic", "periodic", "open"], "delta_steps": 10},
        "data": {"batch_size": 2, "validation_dataset": "nvt_300", "validation_from": 0.6},
        "stages": [{"kind": "autoencoder", "steps": 5}, {"kind": "predictor", "steps": 30, "learning_rate": 3e-3},
                   {"kind": "unrolled", "steps": 5, "unroll": 2, "input_noise": 0.1},
                   {"kind": "uncertainty", "steps": 5}],
        "checkpoint": {"every_steps": 100, "keep": 1}, "validation": {"every_steps": 100, "batches": 2},
        "evaluation": {"onestep_frames": 4, "rollout_steps": 5}}
    data.update(extra)
    return md_config.md_config_from_dict(data)


def test_md_training_runs_stages_in_order_and_reduces_loss(md_data, tmp_path):
    run = str(tmp_path / "run")
    result = md_trainer.train_md(_config(), md_data, run, progress=False)
    stages = [r["stage"] for r in result["history"] if r["split"] == "train"]
    firsts = [stages.index(s) for s in ("autoencoder", "predictor", "unrolled", "uncertainty")]
    assert firsts == sorted(firsts)
    pred = [r["loss"] for r in result["history"] if r["stage"] == "predictor" and r["split"] == "train"]
    assert pred[-1] < pred[0]
    ev = json.load(open(os.path.join(run, "evaluation.json")))
    assert ev["rollout"]["atoms_kept"] and ev["rollout"]["atoms_final"] == 48
    assert np.isfinite(ev["one_step"]["model_rmse_A"])
    # the thermostatted rollout runs simulate's default thermostat
    assert ev["rollout_thermostat"]["thermostat"] == {"kind": "langevin", "tau_ps": 0.1}
    assert ev["rollout_thermostat"]["steps_completed"] == 5
    for name in ("model.keras", "model_info.json", "rollout.png", "metrics.json"):
        assert os.path.isfile(os.path.join(run, name))


def test_tension_windows_carry_every_frames_box_and_share_a_grid_shape(tension_data):
    from sagesnet_tf.grid import affine_remap, periodic_cells
    from sagesnet_tf.pipelines import reader
    from sagesnet_tf.training.md_batches import MDWindows, Segment

    traj = reader.read_trajectories(os.path.join(tension_data, "tension_300"))[0]
    segments = [Segment(traj, 0, traj.n_frames, "tension")]
    with pytest.raises(SagesnetError, match="box changes"):
        MDWindows(segments, 3, ("C", "H"))

    def cells(lengths):
        return np.asarray(periodic_cells(lengths, 1.8)).astype(int)

    windows = MDWindows(segments, 3, ("C", "H"), cells)
    assert windows.changing_box == [True]
    drawable = np.concatenate(windows._group_windows)
    assert 0 < len(drawable) < windows.n_windows  # windows across a change of the cell count are left out
    for _ in range(10):
        batch = windows.sample(np.random.default_rng(_), 4, time_reversal=True)
        assert batch["box"].shape == (4, 3, 3)
        shapes = {tuple(cells(box).ravel()) for box in batch["box"]}
        assert len(shapes) == 1  # one grid shape per batch, every frame
    # a window whose box changes is never time-reversed (it would be a compression)
    assert not windows.draw(np.random.default_rng(0), 64, time_reversal=True)[1].any()
    last = windows.window(int(drawable[-1]))
    assert np.all(np.diff(last["box"][:, 0]) > 0) and np.allclose(last["box"][:, 1:], last["box"][:1, 1:], atol=1e-4)
    # LAMMPS remaps the atoms with the box: frame k+1 is frame k stretched plus the thermal motion,
    # so the stretched constant-velocity guess beats the plain one
    w = windows.window(int(drawable[len(drawable) // 2]))
    delta = float(traj.time_ps[1] - traj.time_ps[0])
    plain = w["positions"][0] + w["velocities"][0] * delta
    stretched = affine_remap(w["positions"][0], w["box"][0], w["box"][1]) + w["velocities"][0] * delta
    err = [np.sqrt(np.mean(np.sum((x - w["positions"][1]) ** 2, -1))) for x in (plain, np.asarray(stretched))]
    assert err[1] < 0.8 * err[0], err


def test_random_shift_translates_each_window_along_periodic_axes_with_its_box(tension_data):
    from sagesnet_tf.grid import affine_remap, periodic_cells
    from sagesnet_tf.pipelines import reader
    from sagesnet_tf.training.md_batches import MDWindows, Segment, shift_windows

    traj = reader.read_trajectories(os.path.join(tension_data, "tension_300"))[0]
    windows = MDWindows([Segment(traj, 0, traj.n_frames, "tension")], 3, ("C", "H"),
                        lambda lengths: np.asarray(periodic_cells(lengths, 1.8)).astype(int))
    batch = windows.sample(np.random.default_rng(0), 4)
    shifted = shift_windows(batch, np.random.default_rng(1), windows.pbc)
    moved = shifted["positions"] - batch["positions"]  # (B, L, N, 3)
    assert np.allclose(moved, moved[:, :, :1], atol=1e-4)  # a rigid translation of each frame
    assert np.all(moved[..., 2] == 0.0)  # never along the open axis
    fraction = moved[:, :, 0, :2] / batch["box"][..., :2]  # the same fraction of every frame's box
    assert np.allclose(fraction, fraction[:, :1], atol=1e-5) and np.all((fraction >= 0) & (fraction < 1))
    assert len({tuple(f.round(4)) for f in fraction[:, 0]}) == 4  # each window its own shift
    # the stretched windows stay consistent: frame 1 minus frame 0 remapped about the origin (the
    # thermal motion) is the same with and without the shift
    motion = [b["positions"][:, 1] - np.asarray(affine_remap(b["positions"][:, 0], b["box"][:, 0], b["box"][:, 1]))
              for b in (batch, shifted)]
    np.testing.assert_allclose(motion[1], motion[0], atol=2e-3)


def test_windows_with_a_frame_too_crowded_for_the_grid_are_left_out(md_data):
    import dataclasses

    from sagesnet_tf.grid import max_voxel_occupancy
    from sagesnet_tf.pipelines import reader
    from sagesnet_tf.training.md_batches import MDWindows, Segment

    traj = reader.read_trajectories(os.path.join(md_data, "nvt_300"))[0]
    positions = traj.positions.copy()
    positions[20, :5] = positions[20, 5:6] + np.linspace(0.0, 0.04, 5)[:, None]  # frame 20: 6 atoms within 0.07 Å
    crowded = dataclasses.replace(traj, positions=positions)
    lengths = np.diagonal(traj.cell, axis1=1, axis2=2)
    occupancy = max_voxel_occupancy(positions, lengths, traj.pbc, 1.8)
    assert occupancy[20] >= 5 and occupancy[19] <= 3

    def fits(p, box):
        return max_voxel_occupancy(p, box, traj.pbc, 1.8) <= 3

    windows = MDWindows([Segment(crowded, 0, crowded.n_frames, "crowded")], 3, ("C", "H"), fits=fits)
    assert windows.overfull == {"crowded": 3}  # the windows starting at frames 18, 19 and 20
    picks, _ = windows.draw(np.random.default_rng(0), 400)
    assert not np.isin(picks, [18, 19, 20]).any() and len(set(picks.tolist())) == traj.n_frames - 2 - 3


def test_random_mirror_reflects_half_the_windows_through_the_open_axis(md_data):
    from sagesnet_tf.pipelines import reader
    from sagesnet_tf.training.md_batches import MDWindows, Segment, mirror_windows

    traj = reader.read_trajectories(os.path.join(md_data, "nvt_300"))[0]
    windows = MDWindows([Segment(traj, 0, traj.n_frames, "nvt")], 3, ("C", "H"))
    batch = windows.sample(np.random.default_rng(0), 64)
    mirrored = mirror_windows(batch, np.random.default_rng(1), windows.pbc)
    flipped = np.any(mirrored["velocities"][..., 2] != batch["velocities"][..., 2], axis=(1, 2))
    assert 16 < flipped.sum() < 48  # about half
    box_z = batch["box"][flipped][:, :, None, 2]
    np.testing.assert_allclose(mirrored["positions"][flipped][..., 2], box_z - batch["positions"][flipped][..., 2], atol=1e-4)
    np.testing.assert_array_equal(mirrored["positions"][..., :2], batch["positions"][..., :2])
    np.testing.assert_array_equal(mirrored["velocities"][flipped][..., 2], -batch["velocities"][flipped][..., 2])
    np.testing.assert_array_equal(mirrored["stress"][flipped][..., 4:], -batch["stress"][flipped][..., 4:])  # xz, yz
    np.testing.assert_array_equal(mirrored["stress"][..., :4], batch["stress"][..., :4])
    for key in ("positions", "velocities", "stress"):  # the others untouched
        np.testing.assert_array_equal(mirrored[key][~flipped], batch[key][~flipped])


def test_training_on_tension_data_and_coarse_stages_refusing_it(tension_data, tmp_path):
    import keras
    import tensorflow as tf
    from sagesnet_tf.pipelines import reader
    from sagesnet_tf.simulator import LearnedSimulator
    from sagesnet_tf.training.least_squares import pair_force_equations
    from sagesnet_tf.training.md_data import load_md_data

    cfg = _config(stages=[{"kind": "autoencoder", "steps": 3}, {"kind": "predictor", "steps": 60, "learning_rate": 3e-3},
                          {"kind": "unrolled", "steps": 3, "unroll": 2}, {"kind": "uncertainty", "steps": 2}])
    cfg.model.update(pair_cutoff=2.8, pair_stress=True)  # pair forces and stress (the 7.3 Å box: 5 voxels of 1.45 Å)
    cfg.data.datasets = ["nvt_300", "tension_300"]
    cfg.data.random_shift = cfg.data.random_mirror = True  # translated/mirrored windows, stretched ones included
    cfg.evaluation.rollout_steps = 2
    result = md_trainer.train_md(cfg, tension_data, str(tmp_path / "run"), progress=False)
    pred = [r["loss"] for r in result["history"] if r["stage"] == "predictor" and r["split"] == "train"]
    assert np.all(np.isfinite(pred)) and np.mean(pred[-3:]) < np.mean(pred[:3]), pred
    # a `heads` stage teaches the trained model's stress/kinetic-energy heads, a `pair_stress_fit` stage
    # the pair stress's bond tensions (least squares), nothing else
    heads = _config(init_from=str(tmp_path / "run"), model={},
                    stages=[{"kind": "heads", "steps": 4}, {"kind": "pair_stress_fit", "steps": 20}])
    heads.data.datasets = ["nvt_300", "tension_300"]
    heads.evaluation.rollout_steps = 1
    md_trainer.train_md(heads, tension_data, str(tmp_path / "heads"), progress=False)
    before, after = (keras.models.load_model(str(tmp_path / r / "model.keras")) for r in ("run", "heads"))
    frozen = before.encoder.weights + before.predictor.weights + before.pair_forces.weights
    for a, b in zip(frozen, after.encoder.weights + after.predictor.weights + after.pair_forces.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for layer in ("heads", "pair_stress"):
        assert any(not np.array_equal(a.numpy(), b.numpy())
                   for a, b in zip(getattr(before, layer).weights, getattr(after, layer).weights)), layer
    # the pair stress read from the atoms of the MD frames follows the MD's stress as the sheet is stretched
    traj = reader.read_trajectories(os.path.join(tension_data, "tension_300"))[0]
    c = after.config
    pair_xx = [float(tf.reduce_sum(after.atom_stress(tf.shape(inp["atom_grid"])[1:4], inp)[..., 0]))
               for inp in (LearnedSimulator(after).atoms_state(traj.positions[t:t + 1], traj.velocities[t:t + 1],
                                                               np.zeros((1, traj.n_atoms), np.int32),
                                                               traj.cell[t:t + 1].diagonal(0, 1, 2))
                           for t in range(traj.n_frames))]
    md_xx = traj.stress[:, :, 0].sum(1)
    assert np.ptp(md_xx) > 10 * np.std(np.diff(md_xx)), "the MD stress should rise with strain"
    # (0.98 here; the kinetic part alone, untrained bond tensions, gives −0.18)
    assert np.corrcoef(pair_xx, md_xx)[0, 1] > 0.9, (pair_xx, md_xx.tolist())
    # a `pair_force_fit` stage sets the pair forces' radial magnitudes by least squares, nothing else (here
    # of a model that splits them into bonded and other pairs, both starting as the run's one function): on
    # the training windows their one-step velocity misfit is below that of the Adam-trained magnitudes
    forces = _config(init_from=str(tmp_path / "run"), model={"pair_bond_neighbours": 3},
                     stages=[{"kind": "pair_force_fit", "steps": 40}])
    forces.data.datasets = ["nvt_300", "tension_300"]
    forces.evaluation.rollout_steps = 1
    md_trainer.train_md(forces, tension_data, str(tmp_path / "forces"), progress=False)
    fitted = keras.models.load_model(str(tmp_path / "forces" / "model.keras"))
    moved = {v.path.split("/")[1] for v, w in zip(before.variables, fitted.variables) if not np.array_equal(v.numpy(), w.numpy())}
    assert moved == {"pair_forces"}, moved
    data = load_md_data(tension_data, forces)
    sim = LearnedSimulator(fitted, open_cells=max(data.train.open_axis_cells(c.h), data.validation.open_axis_cells(c.h)))
    misfit = {"adam": 0.0, "least_squares": 0.0}
    for seed in range(6):
        batch = {k: tf.constant(v) for k, v in data.train.sample(np.random.default_rng(seed), 2).items()}
        rows, target, _ = pair_force_equations(sim, batch, data.sigma_v)
        for name, kernel in (("adam", before.pair_forces.split_kernel(before.pair_forces.magnitude.kernel.numpy())),
                             ("least_squares", fitted.pair_forces.magnitude.kernel.numpy())):
            misfit[name] += float(tf.reduce_mean(tf.square(tf.linalg.matvec(rows, kernel[:, 0]) - target)))
    assert misfit["least_squares"] < 0.9 * misfit["adam"], misfit
    coarse = _coarse_config(stages=[{"kind": "coarsener_autoencoder", "steps": 2}])
    coarse.data.datasets = ["nvt_300", "tension_300"]
    with pytest.raises(SagesnetError, match="constant boxes.*tension_300"):
        md_trainer.train_md(coarse, tension_data, str(tmp_path / "coarse"), progress=False)
    held_out_tension = _config(data={"batch_size": 2, "datasets": ["nvt_300", "tension_300"],
                                     "validation_dataset": "tension_300", "validation_from": 0.6})
    with pytest.raises(SagesnetError, match="held-out tension_300.*changes its box"):
        md_trainer.train_md(held_out_tension, tension_data, str(tmp_path / "held_out"), progress=False)


def test_bad_md_config_is_one_line_error():
    with pytest.raises(SagesnetError, match="stage kind|allowed"):
        md_config.md_config_from_dict({"kind": "md", "stages": [{"kind": "bogus"}]})


def test_time_reversed_window_is_the_same_frames_backwards_with_negated_velocities(md_data):
    from sagesnet_tf.pipelines import reader
    from sagesnet_tf.training.md_batches import MDWindows, Segment

    traj = reader.read_trajectories(os.path.join(md_data, "nvt_300"))[0]
    windows = MDWindows([Segment(traj, 0, traj.n_frames, "a")], 4, ("C", "H"))
    fwd, back = windows.window(3), windows.window(3, reverse=True)
    np.testing.assert_allclose(back["velocities"], -fwd["velocities"][::-1], atol=1e-6)
    # positions are unwrapped from the window's first frame: same displacements, reversed
    np.testing.assert_allclose(back["positions"] - back["positions"][0],
                               (fwd["positions"] - fwd["positions"][-1])[::-1], atol=1e-4)
    np.testing.assert_allclose(back["box"], fwd["box"])
    batch = windows.sample(np.random.default_rng(1), 64, time_reversal=True)
    firsts = {round(float(b[0, 0, 0]), 4) for b in batch["velocities"]}
    assert len(firsts) > 1


def _coarse_config(**extra):
    data = {
        "kind": "md", "name": "tiny_coarse", "seed": 0, "log_every": 5,
        "model": {"latent_dim": 8, "hidden": 16, "depth": 1, "h": 1.8, "slots": 2,
                  "coarse_levels": [{"factor": [2, 2, 1], "steps": 2}],
                  "boundary": ["periodic", "periodic", "open"], "delta_steps": 10},
        "data": {"batch_size": 2, "validation_dataset": "nvt_300", "validation_from": 0.6, "time_reversal": True},
        "stages": [{"kind": "predictor", "steps": 10},
                   {"kind": "coarsener_autoencoder", "steps": 10, "learning_rate": 3e-3},
                   {"kind": "coarse_joint", "steps": 40, "learning_rate": 3e-3, "unroll": 2},
                   {"kind": "coarse_uncertainty", "steps": 20, "learning_rate": 1e-2}],
        "checkpoint": {"every_steps": 100, "keep": 1}, "validation": {"every_steps": 100, "batches": 2},
        "evaluation": {"onestep_frames": 4, "rollout_steps": 3}}
    data.update(extra)
    return md_config.md_config_from_dict(data)


def test_coarse_stages_train_level_0_and_init_from_keeps_the_fine_model(md_data, tmp_path):
    import keras

    run = str(tmp_path / "fine_and_coarse")
    result = md_trainer.train_md(_coarse_config(), md_data, run, progress=False)
    joint = [r for r in result["history"] if r["stage"] == "coarse_joint" and r["split"] == "train"]
    losses = [r["loss"] for r in joint]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses
    unc = [r for r in result["history"] if r["stage"] == "coarse_uncertainty" and r["split"] == "train"]
    assert unc[-1]["loss"] < unc[0]["loss"] and unc[-1]["mean_target"] > 0
    coarse = json.load(open(os.path.join(run, "evaluation.json")))["coarse_step"]
    assert coarse["span_ps"] == pytest.approx(0.02) and np.isfinite(coarse["model_rmse_A"])

    # a second run starts from the first (model section taken from it) and trains only coarse parts
    cfg = _coarse_config(init_from=run, model={}, stages=[{"kind": "coarse_joint", "steps": 3}])
    assert cfg.model_config.coarse_levels[0]["factor"] == (2, 2, 1)
    run2 = str(tmp_path / "continued")
    md_trainer.train_md(cfg, md_data, run2, progress=False)
    before, after = (keras.models.load_model(os.path.join(r, "model.keras")) for r in (run, run2))
    for a, b in zip(before.encoder.weights + before.atom_decoder.weights, after.encoder.weights + after.atom_decoder.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert any(not np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(before.coarse_predictors[0].weights, after.coarse_predictors[0].weights))


def test_coarse_stage_without_coarse_level_and_bad_bool_are_one_line_errors():
    with pytest.raises(SagesnetError, match="coarse_levels"):
        _coarse_config(model={"coarse_levels": []})
    with pytest.raises(SagesnetError, match="time_reversal"):
        _coarse_config(data={"time_reversal": "yes"})
    with pytest.raises(SagesnetError, match="init_from"):
        _coarse_config(init_from="/nonexistent/run", model={})


def test_coarse_oversampling_keeps_the_worst_windows_and_resumes_exactly(md_data, tmp_path, capsys):
    import tensorflow as tf

    stages = [{"kind": "coarsener_autoencoder", "steps": 12, "oversample": 0.5}]
    cfg = _coarse_config(stages=stages, checkpoint={"every_steps": 6, "keep": 3})
    run = str(tmp_path / "run")
    result = md_trainer.train_md(cfg, md_data, run, progress=False)
    reader = tf.train.load_checkpoint(os.path.join(run, "checkpoints"))
    keys = [k for k in reader.get_variable_to_shape_map() if k.startswith("oversampling/losses")]
    losses = reader.get_tensor(keys[0])
    assert np.isfinite(losses).sum() > 2  # the buffer holds the worst windows seen
    held = np.sort(losses[np.isfinite(losses)])[::-1]
    assert np.all(np.diff(held) <= 0)

    # the same run stopped after its step-6 checkpoint and resumed ends exactly as the uninterrupted one
    import shutil

    cut = tmp_path / "cut"
    shutil.copytree(run, cut)
    for path in (cut / "checkpoints").glob("ckpt-12.*"):
        path.unlink()
    # (without a timestamp the CheckpointManager would list no checkpoint, and the run start afresh)
    (cut / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-6"\n'
                                                    'all_model_checkpoint_paths: "ckpt-6"\n'
                                                    'all_model_checkpoint_timestamps: 1.0\n')
    capsys.readouterr()
    resumed = md_trainer.train_md(cfg, md_data, str(cut), resume=True, progress=False)
    assert "resumed from" in capsys.readouterr().out
    last = [r for r in result["history"] if r["split"] == "train"][-1]
    last_resumed = [r for r in resumed["history"] if r["split"] == "train"][-1]
    assert last["step"] == last_resumed["step"] == 12
    assert last_resumed["loss"] == last["loss"]
    # bit-identical: every variable of the final checkpoints (model, Adam, the buffer) is equal
    final, final_resumed = (tf.train.load_checkpoint(os.path.join(r, "checkpoints", "ckpt-12")) for r in (run, cut))
    names = [k for k in final.get_variable_to_shape_map() if k != "_CHECKPOINTABLE_OBJECT_GRAPH"]
    assert any(k.startswith("oversampling/") for k in names)
    for k in names:
        np.testing.assert_array_equal(final.get_tensor(k), final_resumed.get_tensor(k), err_msg=k)


def test_oversample_outside_coarse_stages_is_refused():
    with pytest.raises(SagesnetError, match="oversample"):
        _coarse_config(stages=[{"kind": "predictor", "steps": 2, "oversample": 0.5}])


def test_local_energy_fit_sets_the_energy_to_follow_md_forces_and_stress(tension_data, tmp_path):
    import keras
    import tensorflow as tf

    from sagesnet_tf.pipelines import reader
    from sagesnet_tf.simulator import LearnedSimulator
    from sagesnet_tf.training.md_data import load_md_data
    # a `local_energy_fit` stage sets the local energy's weights by least squares on the one-step MD
    # velocities and the MD virial: its one-step velocity error is below the model without
    # it, and the energy's stress follows the MD stress of the stretched sheet
    cfg = _config(model={"latent_dim": 8, "hidden": 16, "depth": 1, "h": 1.8, "slots": 3, "coarse_levels": [],
                         "boundary": ["periodic", "periodic", "open"], "delta_steps": 10,
                         "energy_cutoff": 2.9, "energy_angle_cutoff": 2.0},
                  stages=[{"kind": "local_energy_fit", "steps": 12}])
    cfg.data.datasets = ["nvt_300", "tension_300"]
    cfg.evaluation.rollout_steps = 1
    md_trainer.train_md(cfg, tension_data, str(tmp_path / "run"), progress=False)
    fitted = keras.models.load_model(str(tmp_path / "run" / "model.keras"))
    assert np.any(fitted.local_energy.energy_weights.numpy() != 0)
    data = load_md_data(tension_data, cfg)
    open_cells = max(data.train.open_axis_cells(1.8), data.validation.open_axis_cells(1.8))
    errors = {}
    for name, model in (("fitted", fitted), ("without", fitted)):
        if name == "without":
            model.local_energy.energy_weights.assign(tf.zeros_like(model.local_energy.energy_weights))
        sim = LearnedSimulator(model, open_cells=open_cells)
        errors[name] = 0.0
        for seed in range(4):
            batch = {k: tf.constant(v) for k, v in data.train.sample(np.random.default_rng(seed), 2).items()}
            out = sim.step(batch["positions"][:, 0], batch["velocities"][:, 0], batch["species"], batch["box"][:, 0],
                           batch["env"], next_box=batch["box"][:, 1])
            errors[name] += float(tf.reduce_mean(tf.square(out["velocities"] - batch["velocities"][:, 1])))
    assert errors["fitted"] < 0.7 * errors["without"], errors
    fitted = keras.models.load_model(str(tmp_path / "run" / "model.keras"))
    sim = LearnedSimulator(fitted)
    traj = reader.read_trajectories(os.path.join(tension_data, "tension_300"))[0]
    energy_xx = [float(sim.stress(None, traj.positions[t:t + 1], traj.velocities[t:t + 1],
                                  np.zeros((1, traj.n_atoms), np.int32), traj.cell[t:t + 1].diagonal(0, 1, 2))[0, 0])
                 for t in range(traj.n_frames)]
    md_xx = traj.stress[:, :, 0].sum(1)
    assert np.corrcoef(energy_xx, md_xx)[0, 1] > 0.9, (energy_xx, md_xx.tolist())


def test_local_energy_fit_without_energy_cutoff_is_one_line_error():
    with pytest.raises(SagesnetError, match="local_energy_fit.*energy_cutoff"):
        _config(stages=[{"kind": "local_energy_fit", "steps": 2}])


def test_grid_decoding_stage_without_a_grid_decoder_is_one_line_error():
    energy_only = {"latent_dim": 8, "hidden": 16, "depth": 1, "h": 1.8, "slots": 2, "coarse_levels": [],
                   "boundary": ["periodic", "periodic", "open"], "delta_steps": 10, "energy_cutoff": 2.0,
                   "atom_decoder": False}
    for kind in ("predictor", "unrolled"):
        with pytest.raises(SagesnetError, match=f"stage '{kind}' trains the grid decoder.*atom_decoder"):
            _config(model=energy_only, stages=[{"kind": kind, "steps": 2}])
    assert _config(model=energy_only, stages=[{"kind": "local_energy_fit", "steps": 2}]).model_config.atom_decoder is False


def test_init_from_an_exported_savedmodel_copies_all_but_the_skipped_layers():
    # the shipped model initialises a model with a local energy in place of its pair terms; the grid
    # decoder named in init_skip keeps its fresh (zero-output) values
    from sagesnet_tf.export import model_from_savedmodel
    from sagesnet_tf.model import SagesnetModel

    shipped_dir = os.path.join(os.path.dirname(__file__), "..", "exported_models", "sagesnet_graphene", "1")
    cfg = _config(init_from=shipped_dir, init_skip=["atom_decoder"],
                  model={"pair_cutoff": 0, "pair_stress": False, "pair_bond_neighbours": 0, "energy_cutoff": 2.9},
                  stages=[{"kind": "local_energy_fit", "steps": 1}])
    shipped, metadata = model_from_savedmodel(shipped_dir)
    assert cfg.model_config.latent_dim == metadata["model_config"]["latent_dim"]
    assert cfg.model_config.env_scales == tuple(metadata["env_std"])
    model = SagesnetModel(cfg.model_config)
    model.build()
    copied = md_trainer.initialise_from_run(model, cfg.init_from, cfg.init_skip)
    assert copied == len(model.variables) - len(model.atom_decoder.variables) - len(model.local_energy.variables)
    np.testing.assert_array_equal(model.encoder.variables[0].numpy(), shipped.encoder.variables[0].numpy())
    assert not np.array_equal(model.atom_decoder.variables[0].numpy(), shipped.atom_decoder.variables[0].numpy())
    assert not np.any(model.atom_decoder.mlp.variables[-1].numpy())  # zero-initialised output: no correction
