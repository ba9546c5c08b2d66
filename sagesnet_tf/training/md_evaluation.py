"""Held-out evaluation of an MD training run (:func:`~sagesnet_tf.training.md_trainer.train_md` calls
:func:`evaluate` after the last stage): one-step and coarse-step position errors, and rollouts from
the first held-out frame (the rollout driver, :mod:`sagesnet_tf.rollout`), written to
``RUN/evaluation.json`` and ``RUN/rollout.png``.

Units: LAMMPS ``metal`` (Å, ps, Å/ps); temperatures in K.
"""

from __future__ import annotations

import os

import matplotlib
import numpy as np
import tensorflow as tf

from sagesnet_tf.analysis.plots import save_figure
from sagesnet_tf.analysis.structure_metrics import bonded_fraction, bonds
from sagesnet_tf.atoms import MASSES, Atoms
from sagesnet_tf.io import write_json
from sagesnet_tf.rollout import Frame, Rollout, State, Thermostat
from sagesnet_tf.simulator import LearnedSimulator
from sagesnet_tf.training import md_batches
from sagesnet_tf.training.md_config import MDEvaluationConfig
from sagesnet_tf.training.md_losses import CoarseJoint
from sagesnet_tf.thermo import temperature_k

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def evaluate(sim: LearnedSimulator, held_out: md_batches.MDWindows, ecfg: MDEvaluationConfig, run_dir: str,
             progress: bool = True, coarse_joint: CoarseJoint | None = None) -> dict:
    """Held-out figures of the run's simulator ``sim`` (its batches' padding), written to
    ``RUN/evaluation.json`` and ``RUN/rollout.png``; ``held_out`` windows carry the raw env.

    - one-step position RMSE (Å, root mean squared 3-D error per atom) of the model and of the
      constant-velocity extrapolation r + v·Δ, over ``onestep_frames`` evenly spaced windows;
    - a rollout of ``rollout_steps`` model steps from the first held-out frame (atoms
      re-voxelized every step; :class:`~sagesnet_tf.rollout.Rollout`, whose divergence guard stops
      it with the reason as ``failure``), and with ``thermostat_ps`` a second one with an update of
      ``thermostat`` (default Langevin, as ``simulate``) every step: atoms kept, fraction of the initial C–C bonds (< bond_cutoff Å, minimum
      image) still shorter than bond_cutoff, kinetic temperature against the target and the MD's
      own temperature over the held-out frames;
    - with ``coarse_joint`` (the run's ``coarse_joint`` stage), one coarse step of level 0 (T·Δ, as
      that stage: atoms decoded frame by frame from the refined prediction) over the same windows:
      position RMSE at its last frame and the constant-velocity extrapolation over T·Δ.
    """
    model = sim.model
    delta = model.config.delta_ps
    idx = np.linspace(0, held_out.n_windows - 1, min(ecfg.onestep_frames, held_out.n_windows)).astype(int)
    sq_model, sq_base = [], []
    step_fn = _atom_step(sim)
    for i in idx:
        w = held_out.batch([i])
        positions, _ = step_fn(w["positions"][:, 0], w["velocities"][:, 0], w["species"], w["box"][:, 0], w["env"])
        true = w["positions"][0, 1]
        sq_model.append(np.sum((positions.numpy()[0] - true) ** 2, -1).mean())
        sq_base.append(np.sum((w["positions"][0, 0] + w["velocities"][0, 0] * delta - true) ** 2, -1).mean())
    onestep = {"model_rmse_A": float(np.sqrt(np.mean(sq_model))),
               "const_velocity_rmse_A": float(np.sqrt(np.mean(sq_base))), "frames": int(len(idx))}
    coarse = _coarse_step_figures(coarse_joint, model, held_out, idx) if coarse_joint is not None else None

    w = held_out.window(0)
    seg = held_out.segments[0]
    traj = seg.trajectory
    masses = np.array([MASSES[e] for e in traj.symbols], np.float32)
    target_T = float(traj.environment[seg.start, list(traj.env_fields).index("temperature_K")]) \
        if "temperature_K" in traj.env_fields else float("nan")
    md_T = [temperature_k(v, masses) for v in traj.velocities[seg.start:seg.stop]]
    box, pbc = w["box"][0].astype(np.float64), held_out.pbc
    carbon = np.flatnonzero(w["species"] == list(model.config.elements).index("C"))
    p0 = w["positions"][0].astype(np.float64)
    pairs = bonds(p0[carbon], box, pbc, ecfg.bond_cutoff)
    roll = _atom_step(LearnedSimulator(model))  # one structure: no open-axis padding
    target = float(target_T) if np.isfinite(target_T) else None  # the runaway limit's reference

    def advance(state: State, n: int):
        """n model steps of the atoms (N, 3) in the held-out box, one model call each."""
        p, v = state.positions[None], state.velocities[None]
        for _ in range(n):
            p, v = roll(*(tf.constant(x) for x in (p, v, w["species"][None], state.box_lengths[None], w["env"][None])))
            p, v = p.numpy(), v.numpy()
        return p[0], v[0], state.box_lengths, None

    def observe(state: State, _) -> Frame:
        atoms = Atoms(traj.symbols, state.positions, np.diag(box), pbc, state.velocities, ids=traj.ids)
        return Frame(atoms, temperature_k(state.velocities, masses), target)

    def rollout(thermostat_ps: float) -> tuple[dict, list, list]:
        """One rollout from the first held-out frame, thermostatted (``ecfg.thermostat``) towards the
        target every step with ``thermostat_ps`` > 0: (figures, temperatures K, kept bond fractions),
        one per frame."""
        temps, bonded = [temperature_k(w["velocities"][0], masses)], [1.0]

        def on_frame(state: State, _, frame: Frame) -> bool:
            temps.append(frame.temperature_K)
            positions = state.positions.astype(np.float64)[carbon]
            bonded.append(bonded_fraction(positions, pairs, box, pbc, ecfg.bond_cutoff))
            return False

        thermostat = Thermostat(ecfg.thermostat, thermostat_ps, target_T, masses) if thermostat_ps else None
        desc = "held-out rollout" + (f" (thermostat {thermostat_ps:g} ps)" if thermostat_ps else "")
        end = Rollout(advance, delta, thermostat=thermostat, progress=progress, desc=desc).run(
            State(w["positions"][0], w["velocities"][0], w["box"][0], 0), ecfg.rollout_steps, 1, observe, on_frame)
        completed, p = len(temps) - 1, end.state.positions
        tail = temps[len(temps) // 2:]
        return {
            "steps_requested": ecfg.rollout_steps, "steps_completed": completed, "failure": end.diverged,
            "thermostat": {"kind": ecfg.thermostat, "tau_ps": thermostat_ps} if thermostat_ps else None,
            "model_time_ps": completed * delta, "atoms_initial": int(len(w["species"])), "atoms_final": int(p.shape[0]),
            "atoms_kept": bool(p.shape[0] == len(w["species"])), "initial_cc_bonds": int(len(pairs)),
            "bonded_fraction_final": float(bonded[-1]), "bonded_fraction_min": float(min(bonded)),
            "temperature_target_K": target_T, "temperature_md_mean_K": float(np.mean(md_T)),
            "temperature_model_mean_second_half_K": float(np.mean(tail)), "temperature_model_final_K": float(temps[-1]),
        }, temps, bonded

    free, temps, bonded = rollout(0.0)
    curves = {"free": (temps, bonded)}
    thermostatted = None
    if ecfg.thermostat_ps and np.isfinite(target_T):
        thermostatted, *curves["thermostat"] = rollout(ecfg.thermostat_ps)
    figures = {"held_out": [s.name for s in held_out.segments], "delta_ps": delta, "one_step": onestep,
               "rollout": free}
    if thermostatted:
        figures["rollout_thermostat"] = thermostatted
    if coarse:
        figures["coarse_step"] = coarse
    write_json(os.path.join(run_dir, "evaluation.json"), figures)
    _plot_rollout(os.path.join(run_dir, "rollout.png"), curves, md_T, target_T, delta)
    return figures


def _atom_step(sim: LearnedSimulator):
    """tf.function (positions, velocities, species, box, raw env) -> (positions, velocities)
    (B, N, 3) Å, Å/ps after one step Δ of ``sim``."""
    def step(positions, velocities, species, box, env):
        out = sim.step(positions, velocities, species, box, env)
        return out["positions"], out["velocities"]
    return tf.function(step, reduce_retracing=True)


def _coarse_step_figures(coarse_joint: CoarseJoint, model, held_out: md_batches.MDWindows, idx) -> dict:
    """RMSE (Å) after one coarse step of ``model`` (its ``coarse_joint`` stage's metrics) and of
    r + v·T·Δ, over the held-out windows ``idx``."""
    fn = tf.function(lambda b: coarse_joint.loss(b, None)[1], reduce_retracing=True)
    model_sq, base_sq = [], []
    for i in idx:
        mets = fn({k: tf.constant(v) for k, v in held_out.batch([i]).items()})
        model_sq.append(float(mets["coarse_step_rmse_A"][0]) ** 2)
        base_sq.append(float(mets["const_velocity_rmse_A"][0]) ** 2)
    steps = model.config.coarse_levels[0]["steps"]
    return {"span_ps": steps * model.config.delta_ps, "model_rmse_A": float(np.sqrt(np.mean(model_sq))),
            "const_velocity_rmse_A": float(np.sqrt(np.mean(base_sq))), "frames": int(len(idx))}


def _plot_rollout(path: str, curves: dict, md_T, target_T, delta) -> None:
    """Temperature and kept bonds over time of each rollout in ``curves`` (label -> (temps, bonded))."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.3))
    for label, (temps, bonded) in curves.items():
        t = np.arange(len(temps)) * delta
        axes[0].plot(t, temps, label=f"SAGESnet ({label})")
        axes[1].plot(t, bonded, label=label)
    axes[0].plot(np.arange(len(md_T)) * delta, md_T, alpha=0.6, label="MD (held out)")
    axes[0].axhline(target_T, color="k", ls="--", lw=0.8, label="target")
    axes[0].set_xlabel("time (ps)")
    axes[0].set_ylabel("temperature (K)")
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_xlabel("time (ps)")
    axes[1].set_ylabel("initial C–C bonds kept")
    fig.tight_layout()
    save_figure(fig, path, dpi=90)
