"""Graphene NVT benchmark at 300 K: LAMMPS/AIREBO reference and SAGESnet rollout from its frame 0.

LAMMPS equilibrates a periodic sheet (quick: 6 × 4 cells; full: 10 × 6 cells) for 2 ps of
``fix nvt``, then runs the reference from there (quick: 1 ps, full: 5 ps; velocities kept),
recording a frame every model step Δ (written as a dataset); its wall time is the reference run's. The comparison is :func:`sagesnet_tf.evaluate.evaluate`
(engineer F's metrics, reused): one-step and rollout position RMSE against MD and against the
constant-velocity baseline, temperature MAE, bond survival and the RDF L1 distance of the final
frames; its ``evaluate.png`` plots RMSE and temperature over time.
"""

from __future__ import annotations

import time
from pathlib import Path

from sagesnet_tf.evaluate import evaluate
from sagesnet_tf.md.protocols import NVT
from sagesnet_tf.md.run import run_md
from sagesnet_tf.pipelines.writer import write_dataset
from sagesnet_tf.savedmodel import load_exported, resolve_model_dir
from sagesnet_tf.structures import graphene_sheet

from benchmarks.report import row

TEMPERATURE_K = 300.0
QUICK = {"nx": 6, "ny": 4, "time_ps": 1.0}
FULL = {"nx": 10, "ny": 6, "time_ps": 5.0}
#: 1-fs MD steps of NVT before the reference starts (the model learned from equilibrated sheets).
EQUILIBRATION_STEPS = 2000


def run(model: str, out_dir: Path, quick: bool = False, threads: int = 2, progress: bool = True) -> dict:
    """Run the suite into ``out_dir``; returns the suite dict of :mod:`benchmarks.report`."""
    cfg = QUICK if quick else FULL
    _, meta = load_exported(resolve_model_dir(model))
    delta_steps = int(meta["delta_steps"])
    steps = max(delta_steps, int(round(cfg["time_ps"] * 1000.0 / delta_steps)) * delta_steps)
    md_dir = out_dir / "nvt" / "lammps"
    (md_dir / "equilibration").mkdir(parents=True, exist_ok=True)
    sheet = graphene_sheet(cfg["nx"], cfg["ny"])
    equilibration = run_md(sheet, NVT(temperature_K=TEMPERATURE_K, steps=EQUILIBRATION_STEPS),
                           str(md_dir / "equilibration"), dt_fs=1.0, record_every=EQUILIBRATION_STEPS,
                           threads=threads, progress=progress)
    atoms = equilibration.trajectory.frame(equilibration.trajectory.n_frames - 1)
    t0 = time.perf_counter()
    md = run_md(atoms, NVT(temperature_K=TEMPERATURE_K, steps=steps), str(md_dir), dt_fs=1.0,
                record_every=delta_steps, threads=threads, keep_velocities=True, progress=progress)
    md_wall = time.perf_counter() - t0
    # the reference as a dataset: unlike a dump it keeps the open axis and the environment (300 K)
    write_dataset(str(md_dir / "dataset"), [md.trajectory], source=md.manifest, overwrite=True)
    t0 = time.perf_counter()
    m = evaluate(model, md_dir / "dataset", out_dir / "nvt_evaluate.json")
    ml_wall = time.perf_counter() - t0
    case = f"graphene {cfg['nx']}×{cfg['ny']} ({len(atoms)} atoms), {steps / 1000:g} ps"
    roll = m["rollout"]
    rows = [row(case, "rollout position RMSE vs MD (LAMMPS column: constant-velocity baseline)", "Å",
                roll["baseline_position_rmse_A"], roll["position_rmse_A"], "none"),
            row(case, "one-step position RMSE vs MD (LAMMPS column: constant-velocity baseline)", "Å",
                m["one_step"]["baseline_position_rmse_A"], m["one_step"]["position_rmse_A"], "none"),
            row(case, "bond survival", "", m["bond_survival"]["reference"], m["bond_survival"]["model"]),
            row(case, "temperature MAE vs MD", "K", None, m["temperature_mae_K"], "none"),
            row(case, "RDF L1 distance of final frames", "", None, m["rdf_l1"], "none"),
            row(case, "wall time (SAGESnet: evaluate incl. one-step sweep)", "s", md_wall, ml_wall, "ratio")]
    return {"suite": "nvt", "rows": rows, "details": m, "plots": ["nvt_evaluate.png"]}
