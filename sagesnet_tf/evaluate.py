"""Evaluate an exported model against an MD reference trajectory.

The reference is a dataset directory (``metadata.json`` + TFRecord shards, first trajectory)
or a LAMMPS text dump (C, H types 1, 2). Its frame interval must be a whole number k of model
steps Δ. Metrics (units Å, Å/ps, K, GPa):

- ``one_step``: position/velocity RMSE of k model steps from every reference frame to the next,
  and the same for the constant-velocity baseline (x + v·Δt, v unchanged);
- ``rollout``: RMSE over all frames of one rollout from frame 0 (and the baseline's), run by
  the rollout driver (:class:`~sagesnet_tf.rollout.Rollout`, no thermostat, the environment of
  each reference frame), the frames it completed and, when it diverged (the model's in-graph
  checks failed, or a frame failed :func:`~sagesnet_tf.rollout.divergence_reason`: NaN/Inf, a
  runaway temperature, two atoms under 0.5 Å apart), ``diverged``: the reason; the other metrics
  then cover the frames completed (the rollout RMSEs are None when it stopped at its first step);
- ``temperature_mae_K``; ``bond_survival`` (fraction of the initial C–C pairs < 1.9 Å still
  < 1.9 Å at the last frame, model and reference, 1 without any;
  :mod:`~sagesnet_tf.analysis.structure_metrics`); ``rdf_l1`` (L1 distance of normalised pair
  distance histograms up to 5 Å at the last frame);
- tension runs (strain rate ≠ 0): ``stress_rmse_GPa`` and ``yield_strain_error``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sagesnet_tf.analysis.plots import save_figure
from sagesnet_tf.analysis.structure_metrics import bonded_fraction, bonds, pair_distances
from sagesnet_tf.analysis.stress_strain import nominal_thickness, nominal_width, sheet_stress_gpa, yield_index_drop
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import atomic_output
from sagesnet_tf.rollout import Frame, Rollout, State
from sagesnet_tf.savedmodel import load_exported, resolve_model_dir
from sagesnet_tf.simulate import env_vector, signature_advance
from sagesnet_tf.thermo import temperature_k
from sagesnet_tf.trajectory import Trajectory

BOND_CUTOFF_A = 1.9
RDF_MAX_A = 5.0


def load_reference(path: str | Path, dt_fs: float = 1.0) -> Trajectory:
    """First trajectory of a dataset directory, or a LAMMPS dump file; a one-line SagesnetError
    when it is neither, or holds NaN/Inf positions or velocities."""
    path = Path(path)
    if path.is_dir():
        from sagesnet_tf.pipelines.reader import read_trajectories
        trajectories = read_trajectories(str(path))
        if not trajectories:
            raise SagesnetError(f"evaluate: {path} holds no trajectories")
        reference = trajectories[0]
    elif path.is_file():
        from sagesnet_tf.pipelines.lammps_dump import read_lammps_dump
        try:
            reference = read_lammps_dump(str(path), ["C", "H"], dt_fs=dt_fs)
        except UnicodeDecodeError:
            raise SagesnetError(f"evaluate: reference {path} is not a text file; give a LAMMPS text dump or a "
                                "dataset directory") from None
    else:
        raise SagesnetError(f"evaluate: reference {path} not found; give a dataset directory or a LAMMPS dump")
    for name in ("positions", "velocities"):
        if not np.all(np.isfinite(getattr(reference, name))):
            raise SagesnetError(f"evaluate: reference {path} has NaN or infinite {name}; give a trajectory of "
                                "finite values")
    return reference


def _rdf(positions, lengths, pbc) -> np.ndarray:
    dist = pair_distances(positions, lengths, pbc)[np.triu_indices(len(positions), 1)]
    hist, _ = np.histogram(dist, bins=50, range=(0.0, RDF_MAX_A))
    return hist / max(hist.sum(), 1)


def _rms_after_start(errors: list[float]) -> float | None:
    """RMS of a rollout's per-frame errors after frame 0; None when it stopped before frame 1."""
    return float(np.sqrt(np.mean(np.square(errors[1:])))) if len(errors) > 1 else None


def _rmse(a, b) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def evaluate(model: str | Path | None, reference: str | Path, out: str | Path | None = None,
             dt_fs: float = 1.0) -> dict:
    """Metrics dict (see module docstring); written as JSON to ``out`` with PNG plots beside it."""
    ref = load_reference(reference, dt_fs)
    if ref.n_frames < 2:
        raise SagesnetError("evaluate: the reference needs at least 2 frames")
    loaded, meta = load_exported(resolve_model_dir(model))
    fn = loaded.signatures["serving_default"]
    interval = int(ref.step[1] - ref.step[0])
    k = interval // int(meta["delta_steps"])
    if k < 1 or k * int(meta["delta_steps"]) != interval:
        raise SagesnetError(f"evaluate: reference frames are {interval} MD steps apart, not a multiple of the "
                            f"model's Δ = {meta['delta_steps']} steps")
    unknown = sorted(set(ref.symbols) - set(meta["elements"]))
    if unknown:
        raise SagesnetError(f"evaluate: element(s) {', '.join(unknown)} not known to the model")
    species = np.array([meta["elements"].index(s) for s in ref.symbols], np.int32)
    masses = ref.frame(0).masses
    lengths = np.array([np.diag(c) for c in ref.cell], np.float32)  # (T, 3)
    pbc = np.asarray(ref.pbc, bool)
    grid_periodic = [b != "open" for b in meta["boundary"]]
    if pbc.tolist() != grid_periodic:
        flags = " ".join("T" if p else "F" for p in pbc)
        raise SagesnetError(f"evaluate: the reference's periodic axes (pbc {flags}) differ from the model's grid "
                            f"({', '.join(meta['boundary'])}); evaluate it with a model trained on that boundary")
    fields = list(ref.env_fields)
    env_of = {name: ref.environment[:, fields.index(name)] if name in fields else np.zeros(ref.n_frames)
              for name in ("temperature_K", "strain_rate_per_ps", "strain")}
    rate = float(env_of["strain_rate_per_ps"][0])
    axis = int(np.argmax(np.abs(lengths[-1] - lengths[0])))
    frame_dt = float(ref.time_ps[1] - ref.time_ps[0])

    def reference_env(state: State) -> np.ndarray:  # the reference's environment at the frame the call starts from
        t = state.step // k
        return env_vector(meta, float(env_of["temperature_K"][t]), rate, float(env_of["strain"][t]))

    advance = signature_advance(fn, species, pbc, lengths[0], axis, rate, reference_env)

    def reference_state(t: int) -> State:
        return State(ref.positions[t].astype(np.float32), ref.velocities[t].astype(np.float32), lengths[t], t * k)

    one_pos, one_vel, base_pos, base_vel = [], [], [], []
    for t in range(ref.n_frames - 1):
        positions, velocities, _, _ = advance(reference_state(t), k)
        one_pos.append(_rmse(positions, ref.positions[t + 1]))
        one_vel.append(_rmse(velocities, ref.velocities[t + 1]))
        base_pos.append(_rmse(ref.positions[t] + ref.velocities[t] * frame_dt, ref.positions[t + 1]))
        base_vel.append(_rmse(ref.velocities[t], ref.velocities[t + 1]))

    pos, box = ref.positions[0], lengths[0]  # the rollout's last frame
    roll_pos, roll_vel, cv_pos, stress, strain = [0.0], [0.0], [0.0], [np.nan], [0.0]
    temps = [temperature_k(ref.velocities[0], masses)]

    def observe(state: State, res) -> Frame:
        t = state.step // k
        frame = ref.frame(t)  # the model's atoms under the reference's ids, for the divergence rule
        frame.positions, frame.velocities = state.positions.astype(np.float64), state.velocities.astype(np.float64)
        frame.cell = np.diag(state.box_lengths.astype(np.float64))
        return Frame(frame, temperature_k(state.velocities, masses), float(env_of["temperature_K"][t]) or None)

    def on_frame(state: State, res, frame: Frame) -> bool:
        nonlocal pos, box
        t, pos, box = state.step // k, state.positions, state.box_lengths
        roll_pos.append(_rmse(state.positions, ref.positions[t]))
        roll_vel.append(_rmse(state.velocities, ref.velocities[t]))
        cv_pos.append(_rmse(ref.positions[0] + ref.velocities[0] * frame_dt * t, ref.positions[t]))
        temps.append(frame.temperature_K)
        stress.append(float(res["stress"].numpy()[axis]))
        strain.append(float(state.box_lengths[axis] / lengths[0][axis] - 1.0))
        return False

    rollout = Rollout(advance, float(meta["delta_ps"]),
                      max_steps_per_call=meta.get("limits", {}).get("max_steps_per_call"))
    diverged = rollout.run(reference_state(0), (ref.n_frames - 1) * k, k, observe, on_frame).diverged
    done = len(roll_pos)  # frames 0 .. done-1 of the rollout exist
    ref_temps = [temperature_k(v, masses) for v in ref.velocities[:done]]

    first, last_ref = ref.positions[0], ref.positions[done - 1]
    is_c = np.asarray(ref.symbols) == "C"
    pairs = bonds(first[is_c], lengths[0], pbc, BOND_CUTOFF_A)
    survival_model = bonded_fraction(pos[is_c], pairs, box, pbc, BOND_CUTOFF_A)
    survival_ref = bonded_fraction(last_ref[is_c], pairs, lengths[done - 1], pbc, BOND_CUTOFF_A)

    metrics = {
        "reference": str(reference), "n_frames": ref.n_frames, "n_atoms": ref.n_atoms,
        "model_steps_per_frame": k, "frame_interval_ps": frame_dt,
        "one_step": {"position_rmse_A": float(np.mean(one_pos)), "velocity_rmse_A_per_ps": float(np.mean(one_vel)),
                     "baseline_position_rmse_A": float(np.mean(base_pos)),
                     "baseline_velocity_rmse_A_per_ps": float(np.mean(base_vel))},
        "rollout": {"position_rmse_A": _rms_after_start(roll_pos),
                    "velocity_rmse_A_per_ps": _rms_after_start(roll_vel),
                    "baseline_position_rmse_A": _rms_after_start(cv_pos),
                    "final_position_rmse_A": roll_pos[-1], "frames_completed": done, "diverged": diverged},
        "temperature_mae_K": float(np.mean(np.abs(np.array(temps) - np.array(ref_temps)))),
        "bond_survival": {"model": survival_model, "reference": survival_ref,
                          "n_initial_bonds": 2 * len(pairs)},  # each bond counted from both of its atoms
        "rdf_l1": float(np.abs(_rdf(pos, box, pbc) - _rdf(last_ref, lengths[done - 1], pbc)).sum()),
    }
    if rate != 0.0:
        atoms0 = ref.frame(0)
        width, thick = nominal_width(atoms0, "xyz"[axis]), nominal_thickness(atoms0)
        model_gpa = sheet_stress_gpa(np.array(stress[1:]), lengths[1:done, axis], width, thick)
        ref_gpa = sheet_stress_gpa(ref.stress[1:done, :, axis].sum(axis=1), lengths[1:done, axis], width, thick)
        ref_strain = lengths[:done, axis] / lengths[0, axis] - 1.0
        yi_m, yi_r = yield_index_drop(model_gpa), yield_index_drop(ref_gpa)
        metrics["tension"] = {
            "stress_rmse_GPa": _rmse(model_gpa, ref_gpa),
            "yield_strain_model": None if yi_m is None else float(strain[1:][yi_m]),
            "yield_strain_reference": None if yi_r is None else float(ref_strain[1:][yi_r]),
            "yield_strain_error": None if yi_m is None or yi_r is None else abs(float(strain[1:][yi_m] - ref_strain[1:][yi_r])),
        }
    if out is not None:
        _write(Path(out), metrics, ref.time_ps[:done], roll_pos, cv_pos, temps, ref_temps)
    return metrics


def _write(out: Path, metrics: dict, time_ps, roll_pos, cv_pos, temps, ref_temps) -> None:
    import matplotlib.pyplot as plt  # the Agg backend is selected by analysis.plots

    with atomic_output(out) as handle:
        json.dump(metrics, handle, indent=2)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot(time_ps, roll_pos, label="SAGESnet rollout")
    ax1.plot(time_ps, cv_pos, "--", label="constant velocity")
    ax1.set(xlabel="time (ps)", ylabel="position RMSE (Å)")
    ax1.legend()
    ax2.plot(time_ps, temps, label="SAGESnet")
    ax2.plot(time_ps, ref_temps, "--", label="MD")
    ax2.set(xlabel="time (ps)", ylabel="temperature (K)")
    ax2.legend()
    fig.tight_layout()
    save_figure(fig, out.with_suffix(".png"), dpi=100)
