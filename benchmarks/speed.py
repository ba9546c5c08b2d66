"""Speed benchmark: simulated time per wall second, LAMMPS/AIREBO vs SAGESnet, same sheet, same run.

System: a periodic graphene sheet (quick: 6 × 4 cells, 96 atoms; full: 20 × 12 cells, 960 atoms)
at 300 K. LAMMPS runs ``fix nvt`` with 1 fs steps on ``threads`` OpenMP threads; SAGESnet starts
from the last LAMMPS frame (equilibrated, with velocities) and rolls out its model steps (Δ from
the model metadata) at every scale of :data:`SCALES` the model supports (scale 0 the fine level,
scale 1 its coarse level 0; others are skipped with the reason recorded). Both record a frame every
:data:`FRAME_PS` (SAGESnet's with its per-atom uncertainty and stress). Speed =
simulated ps / wall s (a rollout that diverges counts the steps it completed; SAGESnet runs free,
``--ensemble nve``, so the figure is the learned step's alone); both timings
include set-up (LAMMPS initialisation; SavedModel loading and tracing for SAGESnet), which dominates the quick run
and any SAGESnet rollout that diverges early; a second row per scale gives SAGESnet's speed from its first step on
(``simulate``'s ``wall_s``: model calls, thermo and trajectory writing, no loading).

One more row gives the cost of the learned latent dynamics per Δ: the SavedModel's ``step``
signature alone (the latent grid of the same sheet stepped :data:`LATENT_STEPS` times: predictor
and uncertainty head, no voxelizing, encoding or decoding), timed after one warm-up call. It is
not a simulation (nothing is decoded or fed back: a latent fed back to itself leaves the states
the model was trained on within tens of steps). For a model with an atom decoder it bounds what
the fine scale could reach without the atoms; a model without one (``atom_decoder: false``, the
shipped version 2) runs no latent step in its fine steps but a call's last (docs/MODEL.md), so
there the row is the cost a latent stride would start from, not a bound.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.savedmodel import read_metadata
from sagesnet_tf.md.protocols import NVT
from sagesnet_tf.md.run import run_md
from sagesnet_tf.savedmodel import resolve_model_dir
from sagesnet_tf.simulate import RolloutDiverged, env_vector, simulate
from sagesnet_tf.structures import graphene_sheet

from benchmarks.report import row

TEMPERATURE_K = 300.0
QUICK = {"nx": 6, "ny": 4, "md_steps": 1000, "model_ps": 2.0}
FULL = {"nx": 20, "ny": 12, "md_steps": 5000, "model_ps": 5.0}
SCALES: tuple[int, ...] = (0, 1, 2)
#: ps between recorded frames, both engines (LAMMPS: every 100 of its 1-fs steps; SAGESnet: the model
#: steps nearest to it, at least one). Until session 17 SAGESnet recorded every 10 model steps (20 fs),
#: five times as often as LAMMPS, each frame with its uncertainty and stress readout.
FRAME_PS = 0.1
#: Latent steps timed for the latent-step bound.
LATENT_STEPS = 50


def run(model: str, out_dir: Path, quick: bool = False, threads: int = 2, progress: bool = True) -> dict:
    """Run the suite into ``out_dir``; returns the suite dict of :mod:`benchmarks.report`."""
    cfg = QUICK if quick else FULL
    atoms = graphene_sheet(cfg["nx"], cfg["ny"])
    md_dir = out_dir / "speed" / "lammps"
    md_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    md = run_md(atoms, NVT(temperature_K=TEMPERATURE_K, steps=cfg["md_steps"]), str(md_dir), dt_fs=1.0,
                record_every=round(FRAME_PS / 1e-3), threads=threads, progress=progress)
    equilibrated = md.trajectory.frame(md.trajectory.n_frames - 1)  # SAGESnet starts where MD ended
    md_wall = time.perf_counter() - t0
    md_speed = cfg["md_steps"] * 1e-3 / md_wall
    case = f"graphene {cfg['nx']}×{cfg['ny']} ({len(atoms)} atoms)"
    rows = [row(case, "LAMMPS wall time", "s", md_wall, None, "none")]
    details = {"n_atoms": len(atoms), "lammps_threads": threads, "lammps_ps_per_wall_s": md_speed, "scales": {}}
    for scale in SCALES:
        t0 = time.perf_counter()
        every = max(1, round(FRAME_PS / read_metadata(resolve_model_dir(model))["delta_ps"]))
        try:
            manifest = simulate(equilibrated, out_dir / "speed" / f"sagesnet_scale{scale}", model=model,
                                time_ps=cfg["model_ps"], temperature_K=TEMPERATURE_K, ensemble="nve", every=every,
                                scale=scale,
                                overwrite=True, progress=progress)
        except RolloutDiverged as err:  # the speed of the steps it did run still counts
            manifest = err.manifest
        except SagesnetError as err:
            details["scales"][scale] = {"skipped": str(err)}
            continue
        wall = time.perf_counter() - t0
        simulated = manifest["steps_done"] * manifest["model_metadata"]["delta_ps"]
        ml_speed = simulated / wall
        stepping_speed = simulated / manifest["wall_s"]  # from the first step on: no loading or tracing
        details["scales"][scale] = {"wall_s": wall, "simulated_ps": simulated, "ps_per_wall_s": ml_speed,
                                    "stepping_ps_per_wall_s": stepping_speed, "status": manifest["status"]}
        rows.append(row(case, f"simulated ps per wall s (scale {scale}; SAGESnet/LAMMPS ratio)", "ps/s",
                        md_speed, ml_speed, "ratio"))
        rows.append(row(case, f"the same, SAGESnet stepping only (scale {scale}, after loading; ratio)", "ps/s",
                        md_speed, stepping_speed, "ratio"))
    latent_speed = _latent_step_speed(model, equilibrated)
    details["latent_step_ps_per_wall_s"] = latent_speed
    rows.append(row(case, "latent step alone, no atoms (`step` signature; bound, not a simulation; ratio)", "ps/s",
                    md_speed, latent_speed, "ratio"))
    return {"suite": "speed", "rows": rows, "details": details, "plots": []}


def _latent_step_speed(model: str, atoms) -> float:
    """Simulated ps per wall s of :data:`LATENT_STEPS` calls of the ``step`` signature on the
    latent grid of ``atoms`` at 300 K, after one warm-up call."""
    model_dir = resolve_model_dir(model)
    signatures = tf.saved_model.load(str(model_dir)).signatures
    meta = read_metadata(model_dir)
    latent = signatures["encode"](
        positions=tf.constant(atoms.positions, tf.float32), velocities=tf.constant(atoms.velocities, tf.float32),
        species=tf.constant([meta["elements"].index(e) for e in atoms.symbols], tf.int32),
        box_lengths=tf.constant(np.diag(atoms.cell), tf.float32), box_origin=tf.zeros(3),
        pbc=tf.constant(atoms.pbc))["latent"]
    env = tf.constant(env_vector(meta, TEMPERATURE_K, 0.0, 0.0)[None])
    signatures["step"](latent=latent, env=env)["latent"].numpy()  # warm-up
    t0 = time.perf_counter()
    for _ in range(LATENT_STEPS):
        stepped = signatures["step"](latent=latent, env=env)["latent"]
    stepped.numpy()
    return LATENT_STEPS * meta["delta_ps"] / (time.perf_counter() - t0)
