"""Equipartition of the shipped model on a sheet of an untrained size, against LAMMPS/AIREBO (issue 20).

``python -m benchmarks.sheet_equipartition --out DIR [--model M] [--nve-ps 10] [--nvt-ps 20] [--threads 1]``:

1. LAMMPS/AIREBO: the 960-atom periodic 12 × 20 graphene sheet (a size the default model was not
   trained on), 1 ps of NVT at 300 K from velocities drawn with seed 20 (the snapshot), then
   ``--nve-ps`` of NVE from it (1 fs, a frame every 50 fs).
2. SAGESnet from the same snapshot (positions and velocities): ``simulate --ensemble nve`` for
   ``--nve-ps`` and plain ``simulate --temperature 300`` (the default thermostat) for ``--nvt-ps``,
   a frame every 50 fs.
3. For each run: in-plane and out-of-plane temperatures (mean over the second half, and per
   ``--nve-ps``/5 window), the snapshot's C–C bonds (< 1.9 Å) kept at the end, the first RDF peak
   of the last frame against the MD one's; and the wall time.

Writes ``DIR/sheet_equipartition.json`` and ``DIR/sheet_equipartition.png``.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np

from sagesnet_tf.analysis.plots import plt, save_figure
from sagesnet_tf.analysis.structure_metrics import bonded_fraction, bonds
from sagesnet_tf.grid import orthorhombic_box
from sagesnet_tf.io import write_json
from sagesnet_tf.io.extxyz import read_extxyz_frames
from sagesnet_tf.md.protocols import make_protocol
from sagesnet_tf.md.run import run_md
from sagesnet_tf.simulate import simulate
from sagesnet_tf.structures import graphene_sheet
from sagesnet_tf.thermo import component_temperatures_k, plane_axes

from benchmarks.local_energy_equipartition import BOND_CUTOFF, first_rdf_peak

#: The sheet (orthorhombic cells), its temperature (K) and the snapshot's NVT length (ps) and seed.
SHEET, TEMPERATURE_K, SNAPSHOT_PS, SEED = (12, 20), 300.0, 1.0, 20
#: ps between recorded frames, both sides.
FRAME_PS = 0.05


def md_nve(snapshot, nve_ps: float, work: Path, threads: int) -> dict:
    """LAMMPS/AIREBO NVE from ``snapshot`` (its velocities kept): times (F,) ps, in/out temperatures
    (F,) K, last positions, wall s."""
    t0 = time.perf_counter()
    result = run_md(snapshot, make_protocol("nve", temperature_K=TEMPERATURE_K, steps=int(round(nve_ps * 1000))),
                    str(work), record_every=int(round(FRAME_PS * 1000)), threads=threads, progress=False,
                    keep_velocities=True)
    wall = time.perf_counter() - t0
    traj = result.trajectory
    plane = plane_axes(traj.positions[0], snapshot.pbc)
    temps = np.array([component_temperatures_k(v, snapshot.masses, plane) for v in traj.velocities])
    return {"time_ps": (traj.step - traj.step[0]) * 1e-3, "in_plane_K": temps[:, 0], "out_of_plane_K": temps[:, 1],
            "positions": traj.positions[-1], "wall_s": wall}


def model_run(snapshot, out: Path, model, run_ps: float, ensemble: str) -> dict:
    """``simulate`` from ``snapshot`` (``ensemble`` nve, or nvt with the default thermostat)."""
    t0 = time.perf_counter()
    manifest = simulate(snapshot, out, model=model, time_ps=run_ps, temperature_K=TEMPERATURE_K, ensemble=ensemble,
                        every=int(round(FRAME_PS / 0.002)), overwrite=True, progress=False)
    wall = time.perf_counter() - t0
    with open(out / "thermo.csv") as handle:
        rows = list(csv.DictReader(handle))
    last = read_extxyz_frames(out / "trajectory.extxyz")[-1]
    return {"time_ps": np.array([float(r["time_ps"]) for r in rows]),
            "in_plane_K": np.array([float(r["temperature_inplane_K"]) for r in rows]),
            "out_of_plane_K": np.array([float(r["temperature_outofplane_K"]) for r in rows]),
            "positions": last.positions, "wall_s": wall, "status": manifest["status"]}


def summarise(run: dict, snapshot, initial_bonds, md_peak: float | None) -> dict:
    """Means over the second half and per fifth of the run, bonds kept, first RDF peak."""
    t, end = run["time_ps"], run["time_ps"][-1]
    half = t >= 0.5 * end
    edges = np.linspace(0.0, end, 6)
    windows = [[float(edges[k]), float(edges[k + 1]),
                float(np.mean(run["in_plane_K"][(t >= edges[k]) & (t <= edges[k + 1])])),
                float(np.mean(run["out_of_plane_K"][(t >= edges[k]) & (t <= edges[k + 1])]))] for k in range(5)]
    box, _ = orthorhombic_box(snapshot)
    peak = first_rdf_peak(run["positions"], snapshot)
    return {"time_ps": float(end), "in_plane_K": float(np.mean(run["in_plane_K"][half])),
            "out_of_plane_K": float(np.mean(run["out_of_plane_K"][half])),
            "windows_ps_in_out_K": windows,
            "bonds_kept": bonded_fraction(run["positions"], initial_bonds, box, snapshot.pbc, BOND_CUTOFF),
            "first_rdf_peak_A": peak, "rdf_peak_minus_md_A": None if md_peak is None else peak - md_peak,
            "wall_s": run["wall_s"], **({"status": run["status"]} if "status" in run else {})}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--model", default=None, help="exported_models/NAME[/VERSION] (default: the shipped one)")
    parser.add_argument("--nve-ps", type=float, default=10.0)
    parser.add_argument("--nvt-ps", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=1, help="LAMMPS threads")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.out / "lammps"
    for sub in ("nvt", "nve"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    sheet = graphene_sheet(*SHEET)
    nvt = run_md(sheet, make_protocol("nvt", temperature_K=TEMPERATURE_K, steps=int(SNAPSHOT_PS * 1000)), str(work / "nvt"),
                 record_every=100, threads=args.threads, progress=False, seed=SEED)
    snapshot = nvt.trajectory.frame(nvt.trajectory.n_frames - 1)
    box, _ = orthorhombic_box(snapshot)
    initial_bonds = bonds(snapshot.positions, box, snapshot.pbc, BOND_CUTOFF)
    runs = {"LAMMPS NVE": md_nve(snapshot, args.nve_ps, work / "nve", args.threads)}
    md_peak = first_rdf_peak(runs["LAMMPS NVE"]["positions"], snapshot)
    runs["SAGESnet --ensemble nve"] = model_run(snapshot, args.out / "sagesnet_nve", args.model, args.nve_ps, "nve")
    if args.nvt_ps > 0:
        runs["SAGESnet NVT (default thermostat)"] = model_run(snapshot, args.out / "sagesnet_nvt", args.model,
                                                             args.nvt_ps, "nvt")
    snap_t = component_temperatures_k(snapshot.velocities, snapshot.masses, plane_axes(snapshot.positions, snapshot.pbc))
    result = {"sheet": list(SHEET), "n_atoms": len(snapshot.positions), "snapshot_in_out_K": list(snap_t),
              "model": args.model, **{name: summarise(run, snapshot, initial_bonds, md_peak) for name, run in runs.items()}}
    write_json(args.out / "sheet_equipartition.json", result)
    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, run) in enumerate(runs.items()):
        ax.plot(run["time_ps"], run["in_plane_K"], color=f"C{i}", label=f"{name}, in-plane")
        ax.plot(run["time_ps"], run["out_of_plane_K"], "--", color=f"C{i}", label=f"{name}, out-of-plane")
    ax.axhline(TEMPERATURE_K, color="k", lw=0.5)
    ax.set(xlabel="time (ps)", ylabel="temperature (K)", title=f"{len(snapshot.positions)}-atom sheet from a 300 K MD snapshot")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, args.out / "sheet_equipartition.png", dpi=100)
    for name in runs:
        print(name, {k: v for k, v in result[name].items() if k != "windows_ps_in_out_K"}, flush=True)
    return result


if __name__ == "__main__":
    main()
