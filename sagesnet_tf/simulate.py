"""Run an exported SAGESnet SavedModel on a structure: trajectory, thermo table, plots, manifest.

The model is loaded with ``tf.saved_model.load`` (TensorFlow alone, as TF Serving does) and its
``serving_default`` signature is called in chunks of ``every`` model steps (each chunk is one
compiled ``tf.while_loop``) by the rollout driver (:class:`~sagesnet_tf.rollout.Rollout`:
calls, thermostat, divergence guard, progress); this module gives it the signature call
(:func:`signature_advance`) and records the frames. One model step is Δ = ``delta_ps`` of the
model's metadata. At ``scale`` 1 the model's ``simulate_coarse`` signature advances windows of
T frames by coarse steps of T·Δ instead (the first window from T − 1 fine steps; ``every``
rounded down to whole coarse steps; the run ends at the last whole coarse step); docs/SIMULATE.md.

Outputs in ``out_dir`` (units LAMMPS metal):

- ``trajectory.extxyz``: the initial frame and one frame per chunk; positions Å (in the structure
  file's frame: the structure is placed in the model's grid by
  :func:`~sagesnet_tf.io.model_frame.to_model_frame` and frames are moved back), velocities Å/ps,
  per-atom ``uncertainty`` (predicted one-step loss of the atom's cell); ids kept.
- ``thermo.csv``: :data:`THERMO_COLUMNS`: step (model steps), time_ps, temperature_K, its
  in-plane / out-of-plane parts, strain, stress_*_GPa (sheet convention, DESIGN.md §4), n_atoms,
  mean_uncertainty, scale, ensemble.
- ``thermo.png``, ``stress_strain.png`` (tension runs), ``manifest.json``, and while the run is
  on ``state.npz`` (:data:`STATE_FILE`).
- ``equilibration.csv`` (:data:`EQUILIBRATION_FILE`; runs with an equilibration): the thermo rows of
  the equilibration (below), its own steps from 0, strain 0.

Equilibration: a run that deforms the box (nonzero ``strain_rate``) first runs
:data:`DEFAULT_EQUILIBRATE_PS` (``equilibrate_ps``: any, 0 for none; the default for runs without
a strain rate is none) of dynamics under the model at the run's temperature and ensemble with the
box held (strain rate 0), so that a structure relaxed under another potential (the LAMMPS/AIREBO
ribbon of the kirigami benchmark) is at rest under the model before it is stretched; its ringing
would otherwise be read as a yield. The run's outputs (trajectory, thermo.csv, plots) start at the
equilibrated state, step 0, strain 0, as LAMMPS users ``reset_timestep 0`` before ``fix deform``;
the equilibration's rows go to ``equilibration.csv``. Inside, steps are counted from the start of
the equilibration (the thermostat's random numbers, ``state.npz``, ``resumed_at_steps``); the
outputs count the run's from its own start.

Every file is replaced whole, never appended to: frames are saved (trajectory, thermo, state,
manifest) as they come unless saving costs more than :data:`SAVE_OVERHEAD` of the run, so a
``kill -9`` at any moment leaves complete files, and ``resume`` continues from the last saved
frame to the uninterrupted run's outputs (docs/SIMULATE.md, kill and resume).

Ensembles (:func:`resolve_ensemble`): ``nvt`` (the default with a target temperature) updates
the velocities between model calls with a thermostat of :data:`~sagesnet_tf.thermo.THERMOSTATS`
(default Langevin, per degree of freedom; :func:`~sagesnet_tf.thermo.apply_thermostat`, time
constant τ, one update for the call's span, random numbers from the run's seed and the step the
update ends at); a call then spans at most :data:`~sagesnet_tf.rollout.THERMOSTAT_CALL_FRACTION`
of τ: τ, or τ/10 for Berendsen (one step when a step is longer). ``nve`` leaves the learned dynamics free (the kinetic
temperature is then the model's own).

A diverging rollout (:func:`~sagesnet_tf.rollout.divergence_reason`: NaN, runaway temperature,
atoms pushed into one another; or a failed in-graph check) stops with :class:`RolloutDiverged`
after writing what it has so far, the diverged frame included.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from sagesnet_tf.analysis.plots import plot_stress_strain, plot_thermo
from sagesnet_tf.analysis.stress_strain import axis_index, nominal_thickness, nominal_width, sheet_stress_gpa
from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import atomic_output
from sagesnet_tf.io.extxyz import PER_ATOM_KEY, VELOCITY_SOURCE_KEY, write_extxyz_frames
from sagesnet_tf.io.model_frame import ModelFrame, to_model_frame
from sagesnet_tf.limits import MAX_STEPS, MAX_STRAIN_RATE_PER_PS, STRAIN_RATE_LIMIT_WHY
from sagesnet_tf.md.protocols import EarlyStop
from sagesnet_tf.rollout import MAX_TEMPERATURE_K, Frame, Rollout, State, Thermostat
from sagesnet_tf.savedmodel import load_exported, resolve_model_dir
from sagesnet_tf.thermo import (THERMOSTATS, component_temperatures_k, maxwell_boltzmann_velocities, plane_axes,
                                temperature_k)

THERMO_COLUMNS = ("step", "time_ps", "temperature_K", "temperature_inplane_K", "temperature_outofplane_K",
                  "strain", "stress_xx_GPa", "stress_yy_GPa", "stress_zz_GPa", "stress_xy_GPa", "stress_xz_GPa",
                  "stress_yz_GPa", "n_atoms", "mean_uncertainty", "scale", "ensemble")
#: Time constant τ (ps) of the NVT thermostat when none is given.
DEFAULT_THERMOSTAT_PS = 0.1
#: A frame is saved at once (trajectory, thermo, state, manifest) unless the last save took more
#: than this fraction of the wall time since it; then it waits in memory for a later save. Saves
#: are per frame while they are cheap; the trajectory copy each save makes (it grows with the
#: file) then costs at most this fraction of the run.
SAVE_OVERHEAD = 0.05
#: The plots are redrawn at a save at most this often (wall seconds), and at the end.
PLOT_INTERVAL_S = 30.0
#: The state ``--resume`` continues from, in the output directory while the run is running.
STATE_FILE = "state.npz"
#: The thermo rows (:data:`THERMO_COLUMNS`) of the equilibration before a run, when it has one.
EQUILIBRATION_FILE = "equilibration.csv"
#: Everything a run writes into its output directory.
OUTPUT_FILES = ("trajectory.extxyz", "thermo.csv", "manifest.json", STATE_FILE, "thermo.png", "stress_strain.png",
                EQUILIBRATION_FILE)
#: Equilibration (ps) under the model, box held, before a run with a nonzero strain rate when none is
#: given: the kirigami benchmark's LAMMPS-relaxed ribbons ring (4–12 GPa) and heat (to 35–100 K)
#: under the shipped model; with the default thermostat (Langevin, τ 0.1 ps, 4.2 K) the stress
#: settles within 0.5 ps and the temperature within 0.6–1.5 ps (docs/SIMULATE.md, equilibration).
DEFAULT_EQUILIBRATE_PS = 2.0
#: Arguments of :func:`simulate` that do not change its results (not compared on ``--resume``).
NOT_RUN_OPTIONS = ("structure", "out_dir", "overwrite", "progress", "resume")


class RolloutDiverged(SagesnetError):
    """A rollout left the physical range and stopped; its outputs so far are on disk and
    ``manifest`` is the run's manifest (``status`` = ``diverged: …``, ``steps_done``, ``wall_s``)."""

    def __init__(self, message: str, manifest: dict):
        super().__init__(message)
        self.manifest = manifest


def env_vector(metadata: dict, temperature_K: float, strain_rate: float, strain: float) -> np.ndarray:
    """Raw env (E,) in the model's field order; fields this run does not set are 0."""
    values = {"temperature_K": temperature_K, "pressure_bar": 0.0, "strain_rate_per_ps": strain_rate, "strain": strain}
    return np.array([values.get(name, 0.0) for name in metadata["env_fields"]], dtype=np.float32)


def signature_advance(signature, species: np.ndarray, pbc: np.ndarray, lengths0: np.ndarray, axis: int,
                      strain_rate: float, env_of, window: bool = False):
    """The ``advance(state, n)`` of a :class:`~sagesnet_tf.rollout.Rollout` through an exported
    step signature: ``serving_default`` or ``simulate_mirror_average`` (a frame (N, 3) in and out),
    or ``simulate_coarse`` (``window``: T frames (T, N, 3), n coarse steps). Atoms ``species`` (N,)
    in a box with periodic axes ``pbc`` (3,), origin 0; the box is stretched along ``axis`` at
    ``strain_rate`` 1/ps of its initial length ``lengths0[axis]`` Å (sent as a rate of the current
    length); ``env_of(state)``: the raw env (E,) of the call. Returns (positions, velocities, box
    lengths) as numpy and the signature's outputs (tensors: ``uncertainty``, ``stress``, ...)."""
    origin = np.zeros(3, np.float32)
    keys = ("window_positions", "window_velocities") if window else ("positions", "velocities")

    def advance(state: State, n: int):
        res = signature(**{keys[0]: state.positions, keys[1]: state.velocities}, species=species,
                        box_lengths=state.box_lengths, box_origin=origin, pbc=pbc, env=env_of(state),
                        n_steps=np.int32(n), axis=np.int32(axis),
                        strain_rate_per_ps=np.float32(strain_rate * lengths0[axis] / state.box_lengths[axis]))
        return res["positions"].numpy(), res["velocities"].numpy(), res["box_lengths"].numpy(), res
    return advance


def resolve_ensemble(temperature_K: float | None, ensemble: str | None, thermostat: str | None,
                     thermostat_ps: float | None) -> tuple[str, dict | None]:
    """(ensemble, thermostat) of a run: ``nvt`` (the default with a ``temperature_K``) with
    ``{"kind": thermostat or "langevin", "tau_ps": thermostat_ps or DEFAULT_THERMOSTAT_PS}``, or
    ``nve`` (the default without one) with None. Conflicting options are a :class:`SagesnetError`."""
    if ensemble not in (None, "nvt", "nve"):
        raise SagesnetError(f"simulate: --ensemble must be nvt or nve, got {ensemble!r}")
    if thermostat not in (None, *THERMOSTATS):
        raise SagesnetError(f"simulate: --thermostat must be one of {', '.join(THERMOSTATS)}, got {thermostat!r}")
    if ensemble == "nve" and (thermostat_ps is not None or thermostat is not None):
        raise SagesnetError("simulate: --thermostat/--thermostat-ps set the NVT thermostat; drop them with "
                            "--ensemble nve")
    ensemble = ensemble or ("nve" if temperature_K is None and thermostat_ps is None and thermostat is None else "nvt")
    if ensemble == "nve":
        return "nve", None
    if temperature_K is None:
        raise SagesnetError("simulate: --ensemble nvt (and --thermostat/--thermostat-ps) needs a --temperature, "
                            "the thermostat's target")
    if thermostat_ps is not None and thermostat_ps <= 0:
        raise SagesnetError(f"simulate: --thermostat-ps must be a positive time constant (ps), got {thermostat_ps}")
    return "nvt", {"kind": thermostat or "langevin", "tau_ps": thermostat_ps or DEFAULT_THERMOSTAT_PS}


def _orthorhombic(atoms: Atoms) -> np.ndarray:
    cell = np.asarray(atoms.cell, dtype=np.float64)
    if np.abs(cell - np.diag(np.diag(cell))).max() > 1e-6:
        raise SagesnetError("simulate: only orthorhombic cells are supported; rebuild the structure with an orthorhombic box")
    return np.diag(cell).copy()


def _write_thermo(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=THERMO_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_output(path) as handle:
        handle.write(buf.getvalue())


def _read_thermo(path: Path) -> list[dict]:
    """The rows of a thermo.csv of :func:`_write_thermo`, each value as it was written (int, float
    or str; csv writes a float as its repr, so it reads back exactly and writes back the same)."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [{key: _csv_value(text) for key, text in row.items()} for row in csv.DictReader(handle)]


def _csv_value(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _run_options(arguments: dict, structure: Atoms, model_dir: Path) -> dict:
    """The options of a run, as its manifest records them and ``--resume`` compares them: the
    arguments of :func:`simulate` that shape its results (JSON values; ``model`` as the absolute
    path of the version directory it resolved to) and ``structure_sha256``, a digest of the input
    ``structure``."""
    options = {k: str(v) if isinstance(v, Path) else v for k, v in arguments.items() if k not in NOT_RUN_OPTIONS}
    options["model"] = str(Path(model_dir).resolve())
    digest = hashlib.sha256()
    for array in (structure.symbols.astype("U"), structure.positions, structure.velocities, structure.cell,
                  structure.pbc, structure.ids, structure.flags):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(repr(sorted((k, v) for k, v in structure.info.items() if isinstance(v, (str, int, float)))).encode())
    options["structure_sha256"] = digest.hexdigest()
    return json.loads(json.dumps(options))


def run_status(out_dir: str | Path) -> str | None:
    """The ``status`` in ``out_dir``'s manifest.json (``running`` while a run is on, or was killed),
    or None when there is none."""
    path = Path(out_dir) / "manifest.json"
    if not path.is_file():
        return None
    try:
        return str(json.loads(path.read_text(encoding="utf-8"))["status"])
    except (OSError, ValueError, KeyError, TypeError):
        raise SagesnetError(f"simulate: {path} is not a manifest this command wrote; choose another --out") from None


def _open_output(out: Path, options: dict, overwrite: bool, resume: bool) -> dict | None:
    """Prepare ``out`` for a run. A new run needs it empty (or ``overwrite``: :data:`OUTPUT_FILES`
    removed); ``resume`` needs a killed run there (status ``running``, a :data:`STATE_FILE`) with
    the same ``options``, and returns its manifest (None for a new run). Either way the temporary
    files a kill left behind (``atomic_output``'s ``.NAME.*.tmp``) go."""
    for stray in out.glob(".*.tmp") if out.is_dir() else []:
        if any(stray.name.startswith(f".{name}.") for name in OUTPUT_FILES):
            stray.unlink(missing_ok=True)
    if not resume:
        if out.exists() and any(out.iterdir()) and not overwrite:
            raise SagesnetError(f"simulate: {out} is not empty; pass --overwrite or --resume, or choose another --out")
        out.mkdir(parents=True, exist_ok=True)
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
        return None
    if overwrite:
        raise SagesnetError("simulate: --resume continues the run in --out and --overwrite replaces it; drop one")
    status = run_status(out)
    if status is None or (status == "running" and not (out / STATE_FILE).is_file()):
        raise SagesnetError(f"simulate: --resume: {out} holds no run to resume (no manifest.json and {STATE_FILE}); "
                            "run without --resume")
    if status != "running":
        raise SagesnetError(f"simulate: --resume: the run in {out} has already finished ({status}); nothing to do")
    previous = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    ran = previous.get("options", {})
    changed = [("the structure differs from the run's" if key == "structure_sha256"
                else f"{key} was {ran.get(key)!r}, now {options.get(key)!r}")
               for key in sorted(set(ran) | set(options)) if ran.get(key) != options.get(key)]
    if changed:
        raise SagesnetError(f"simulate: --resume needs the options of the run in {out}, but {'; '.join(changed)} "
                            "(its manifest.json lists them under \"options\")")
    return previous


def _frame(placed: ModelFrame, positions, velocities, lengths, step: int, time_ps: float, strain: float) -> Atoms:
    """An output frame from the model's (N, 3) positions Å and velocities Å/ps and its box lengths
    (3,) Å: positions and pbc back in the input file's frame (:meth:`ModelFrame.to_input`), and only
    the model's own per-atom columns (the input's extra columns, e.g. a stale ``vel``, are dropped)."""
    frame = placed.atoms.copy()
    frame.positions = placed.to_input(positions)
    frame.pbc = placed.input_pbc.copy()
    frame.velocities = np.asarray(velocities, dtype=np.float64)
    frame.cell = np.diag(np.asarray(lengths, dtype=np.float64))
    info = {k: v for k, v in placed.atoms.info.items() if k not in (PER_ATOM_KEY, VELOCITY_SOURCE_KEY)}
    frame.info = {**info, "units": "metal", "step": step, "time_ps": round(time_ps, 9), "strain": strain,
                  "uncertainty_units": "predicted one-step loss (normalised)"}
    return frame


def simulate(structure: Atoms, out_dir: str | Path, model: str | Path | None = None, steps: int | None = None,
             time_ps: float | None = None, temperature_K: float | None = None, strain_rate: float = 0.0,
             axis: str = "x", max_strain: float | None = None, every: int = 10, scale: int = 0,
             ensemble: str | None = None, thermostat: str | None = None, thermostat_ps: float | None = None,
             seed: int = 0, stop_past_peak: bool = False,
             mirror_average: bool = False, equilibrate_ps: float | None = None, overwrite: bool = False,
             progress: bool = True, resume: bool = False) -> dict:
    """Run the model from ``structure`` and write the outputs; returns the manifest dict.

    The run ends at ``steps`` model steps, ``time_ps`` or ``max_strain`` (with ``strain_rate`` >
    0), whichever comes first; at least one is required. ``ensemble``, ``thermostat`` (kind) and
    ``thermostat_ps`` (τ, ps) as :func:`resolve_ensemble` resolves them (default: NVT with a
    Langevin thermostat, τ = 0.1 ps, when ``temperature_K`` is given; NVE without); the
    thermostat's random numbers come from ``seed`` and the step. A structure
    without velocities (none, or all zero) starts from Maxwell–Boltzmann velocities at
    ``temperature_K`` drawn with ``seed``. ``scale``: 0 fine, 1 the model's coarse level 0.
    ``stop_past_peak`` (tension runs): stop once the stress along the axis has fallen 30 % below its
    peak and the strain is 0.05 past it, the MD tension protocol's early stop
    (:class:`~sagesnet_tf.md.protocols.EarlyStop`; status ``completed: stopped past the stress peak``).
    ``mirror_average`` (scale 0): every step is the mean of the model's step and the mirrored step of
    the structure's mirror image through the box's mid-plane along the open axis (the
    ``simulate_mirror_average`` signature: exactly mirror-symmetric dynamics at twice the cost).
    ``equilibrate_ps``: ps of dynamics with the box held (strain rate 0) at the run's temperature
    and ensemble before the run, recorded in :data:`EQUILIBRATION_FILE` (module docstring); None:
    :data:`DEFAULT_EQUILIBRATE_PS` when ``strain_rate`` is nonzero, else none; 0: none.
    ``resume``: continue the killed run in ``out_dir`` from its last saved frame (same arguments and
    structure, else a :class:`SagesnetError`), in the equilibration or after it; the outputs then
    equal an uninterrupted run's.
    """
    arguments = dict(locals())  # the call's arguments, before anything below rebinds them
    if not 1 <= every <= MAX_STEPS:
        raise SagesnetError(f"simulate: --every must be between 1 and {MAX_STEPS} model steps, got {every}")
    for name, value in (("--time-ps", time_ps), ("--max-strain", max_strain), ("--thermostat-ps", thermostat_ps)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise SagesnetError(f"simulate: {name} must be a positive finite number, got {value}")
    if equilibrate_ps is not None and not (math.isfinite(equilibrate_ps) and equilibrate_ps >= 0):
        raise SagesnetError(f"simulate: --equilibrate-ps must be a finite number of ps >= 0 (0: no equilibration), "
                            f"got {equilibrate_ps}")
    if steps is not None and not 0 <= steps <= MAX_STEPS:
        raise SagesnetError(f"simulate: --steps must be between 0 and {MAX_STEPS} (the model counts steps in an "
                            f"int32), got {steps}")
    if not (math.isfinite(strain_rate) and abs(strain_rate) <= MAX_STRAIN_RATE_PER_PS):
        raise SagesnetError(f"simulate: --strain-rate {strain_rate} 1/ps is outside ±{MAX_STRAIN_RATE_PER_PS:g} 1/ps "
                            f"({STRAIN_RATE_LIMIT_WHY}); give a slower rate")
    if temperature_K is not None and not (math.isfinite(temperature_K) and 0 <= temperature_K < MAX_TEMPERATURE_K):
        raise SagesnetError(f"simulate: --temperature must be in [0, {MAX_TEMPERATURE_K:g}) K (absolute zero up to "
                            f"the rollout's runaway limit), got {temperature_K}")
    if seed < 0:
        raise SagesnetError(f"simulate: --seed must be a non-negative integer, got {seed}")
    if np.any(np.diag(np.asarray(structure.cell)) <= 0):
        raise SagesnetError(f"simulate: the cell's lengths {np.diag(structure.cell).round(3).tolist()} Å must be positive "
                            "(a right-handed cell); fix the cell of the structure file")
    if temperature_K and len(structure) < 2 and (structure.velocities is None or not np.any(structure.velocities)):
        raise SagesnetError(f"simulate: a structure of {len(structure)} atom(s) has no temperature (its motion "
                            "relative to the centre of mass is zero), so --temperature cannot draw velocities; "
                            "give at least 2 atoms or drop --temperature")
    if (max_strain is not None or stop_past_peak) and strain_rate <= 0:
        raise SagesnetError("simulate: --max-strain and --stop-past-peak need a positive --strain-rate")
    if steps is None and time_ps is None and max_strain is None:
        raise SagesnetError("simulate: give at least one of --steps, --time-ps, --max-strain")
    ensemble, thermostat = resolve_ensemble(temperature_K, ensemble, thermostat, thermostat_ps)
    if mirror_average and scale:
        raise SagesnetError("simulate: --mirror-average runs the fine scale only; drop --scale or --mirror-average")
    out = Path(out_dir)
    model_dir = resolve_model_dir(model)
    options = _run_options(arguments, structure, model_dir)
    previous = _open_output(out, options, overwrite, resume)  # the killed run's manifest, or None
    loaded, meta = load_exported(model_dir)
    n_levels = len(meta.get("coarse_levels", [])) if "simulate_coarse" in loaded.signatures else 0
    if scale > min(n_levels, 1):
        raise SagesnetError(f"simulate: --scale {scale} needs coarse level {scale - 1}, but {model_dir} exports "
                            f"scales 0..{min(n_levels, 1)}; use a smaller --scale")
    unit = meta["coarse_levels"][0]["steps"] if scale else 1  # model steps Δ per step at this scale
    unknown = sorted(set(structure.symbols) - set(meta["elements"]))
    if unknown:
        raise SagesnetError(f"simulate: element(s) {', '.join(unknown)} not known to the model ({', '.join(meta['elements'])})")
    placed = to_model_frame(structure, meta["boundary"])  # vacuum axes opened, atoms shifted into the cell
    velocity_source = structure.info.get(VELOCITY_SOURCE_KEY, "the structure's velocities")
    structure = placed.atoms  # from here on the structure as the model sees it; outputs go back via _frame
    delta = float(meta["delta_ps"])
    a = axis_index(axis)
    limits = [s for s in (steps,
                          None if time_ps is None else math.ceil(time_ps / delta - 1e-9),
                          None if max_strain is None else math.ceil(max_strain / (strain_rate * delta) - 1e-9))
              if s is not None]
    total = max(0, min(limits))
    equilibrate = (DEFAULT_EQUILIBRATE_PS if strain_rate else 0.0) if equilibrate_ps is None else equilibrate_ps
    n_equilibrate = unit * math.ceil(equilibrate / (unit * delta) - 1e-9) if equilibrate else 0  # whole scale steps
    if n_equilibrate + total > MAX_STEPS:
        raise SagesnetError(f"simulate: the run would take {n_equilibrate + total} model steps of {delta} ps "
                            f"(equilibration included), more than the {MAX_STEPS} the model's int32 step count "
                            "holds; ask for a shorter --time-ps/--max-strain/--equilibrate-ps")

    lengths0 = _orthorhombic(structure)
    origin = np.zeros(3, np.float32)
    pbc = np.asarray(structure.pbc, dtype=bool)
    species = np.array([meta["elements"].index(s) for s in structure.symbols], np.int32)
    masses = structure.masses
    pos = np.asarray(structure.positions, np.float32)
    vel = np.zeros_like(pos) if structure.velocities is None else np.asarray(structure.velocities, np.float32)
    initial_velocities = "from the structure"
    if temperature_K and not np.any(vel):
        vel = maxwell_boltzmann_velocities(masses, temperature_K, seed).astype(np.float32)
        initial_velocities = f"Maxwell-Boltzmann at {temperature_K} K, seed {seed}"
    print(f"simulate: input adaptation: {placed.describe()}; initial velocities: {initial_velocities} "
          f"(structure's velocities: {velocity_source})", file=sys.stderr)
    if n_equilibrate:
        print(f"simulate: equilibrating {equilibrate:g} ps ({n_equilibrate} model steps) with the box held, then the "
              f"run from the equilibrated state (equilibration rows: {EQUILIBRATION_FILE})", file=sys.stderr)
    lengths = lengths0.astype(np.float32)
    width, thick = nominal_width(structure, axis), nominal_thickness(structure)
    plane = plane_axes(structure.positions, structure.pbc)  # in-plane axes of temperature_inplane_K
    target = temperature_K
    if mirror_average and "simulate_mirror_average" not in loaded.signatures:
        raise SagesnetError(f"simulate: {model_dir} has no simulate_mirror_average signature (exported before it "
                            "existed); export the model again with this version or drop --mirror-average")
    fn = loaded.signatures["simulate_mirror_average" if mirror_average else "serving_default"]
    coarse_fn = loaded.signatures["simulate_coarse"] if scale else None

    rows, eq_rows, traj = [], [], out / "trajectory.extxyz"  # the run's thermo rows, the equilibration's
    pending = []  # (frame, per-atom uncertainty) recorded since the last save
    manifest = {"model": str(model_dir), "model_metadata": {k: meta[k] for k in ("schema_version", "delta_ps", "h", "slots", "elements")},
                "n_atoms": len(structure), "steps_asked": steps, "time_ps_asked": time_ps, "max_strain": max_strain,
                "strain_rate_per_ps": strain_rate, "axis": axis, "temperature_K": temperature_K, "every": every,
                "scale": scale, "model_steps_per_scale_step": unit, "mirror_average": mirror_average,
                "initial_velocities": initial_velocities, "velocity_source": velocity_source,
                "input_adaptation": placed.describe(),
                "ensemble": ensemble, "thermostat": thermostat and {**thermostat, "seed": seed},
                "equilibration": {"ps": equilibrate, "steps": n_equilibrate, "steps_done": 0, "box": "held",
                                  "file": EQUILIBRATION_FILE} if n_equilibrate else None,
                "units": "metal (Å, ps, Å/ps, K, GPa)", "options": options, "status": "running"}
    # model steps of the equilibration before the run (the run's output step is the state's minus
    # this); None while the equilibration is on
    offset = None if n_equilibrate else 0

    def output_frame(step: int, p, v, box, strain: float) -> Frame:
        """The output frame of model positions (N, 3) Å, velocities (N, 3) Å/ps, box lengths (3,) Å at
        output step ``step``, as the divergence guard reads it."""
        return Frame(_frame(placed, p, v, box, step, step * delta, strain), temperature_k(v, masses), target)

    def record(frame: Frame, box, unc, stress) -> None:
        """Add ``frame`` (box lengths (3,) Å, per-atom uncertainty (N,), stress·volume (6,) bar·Å³)
        to the outputs: the run's (written at the next save), or the equilibration's row."""
        atoms, step = frame.atoms, frame.atoms.info["step"]
        gpa = sheet_stress_gpa(np.asarray(stress, np.float64), box[a], width, thick)
        row = dict(zip(THERMO_COLUMNS, [step, step * delta, frame.temperature_K,
                                        *component_temperatures_k(atoms.velocities, masses, plane),
                                        atoms.info["strain"], *[float(x) for x in gpa], len(atoms),
                                        float(np.mean(unc)), scale, ensemble]))
        if offset is None:
            eq_rows.append(row)
            return
        rows.append(row)
        pending.append((atoms, np.asarray(unc, np.float64)))

    def save(state: State | None) -> None:
        """Write the frames recorded since the last save (trajectory.extxyz, thermo.csv,
        equilibration.csv), then the rollout ``state`` after them (:data:`STATE_FILE`; None: the run
        has ended and the file goes), the plots when due and manifest.json, each file replaced whole:
        a kill at any moment leaves complete files."""
        nonlocal saved_at, save_cost, plotted_at, eq_saved
        began = time.time()
        if pending:
            write_extxyz_frames(traj, [f for f, _ in pending], {"uncertainty": [u for _, u in pending]},
                                append=True)
            pending.clear()
        if rows or state is None:  # at the end, a run that diverged in its equilibration: the header alone
            _write_thermo(out / "thermo.csv", rows)
        if len(eq_rows) != eq_saved:
            _write_thermo(out / EQUILIBRATION_FILE, eq_rows)
            eq_saved = len(eq_rows)
        if state is not None:
            with atomic_output(out / STATE_FILE, "wb") as handle:
                np.savez(handle, positions=state.positions, velocities=state.velocities,
                         box_lengths=state.box_lengths, step=state.step, n_frames=len(rows),
                         trajectory_bytes=traj.stat().st_size if traj.is_file() else 0,
                         n_equilibration_frames=len(eq_rows), offset=-1 if offset is None else offset)
        save_cost = time.time() - began
        if rows and (state is None or time.time() - plotted_at >= PLOT_INTERVAL_S):
            cols = {c: [r[c] for r in rows] for c in THERMO_COLUMNS}
            plot_thermo(cols, str(out / "thermo.png"), title="SAGESnet simulate")
            if strain_rate > 0:
                plot_stress_strain(cols["strain"], cols[f"stress_{axis}{axis}_GPa"], str(out / "stress_strain.png"),
                                   label="SAGESnet")
            plotted_at = time.time()
        manifest.update(steps_done=rows[-1]["step"] if rows else 0, final_strain=rows[-1]["strain"] if rows else 0.0,
                        wall_s=round(wall_before + time.time() - start, 3))
        if eq_rows:
            manifest["equilibration"]["steps_done"] = eq_rows[-1]["step"]
        with atomic_output(out / "manifest.json") as handle:
            json.dump(manifest, handle, indent=2, ensure_ascii=False)
        if state is None:
            (out / STATE_FILE).unlink(missing_ok=True)
        saved_at = time.time()

    def finish(status: str) -> None:
        manifest["status"] = status
        save(None)

    def restore() -> State:
        """The killed run's rollout state from :data:`STATE_FILE` (in the equilibration or after it);
        frames and rows it wrote after that state (killed between their save and the state's) are
        cut off, and the early stop is fed the thermo rows again."""
        nonlocal wall_before, offset, eq_saved
        with np.load(out / STATE_FILE) as state:
            saved = State(state["positions"], state["velocities"], state["box_lengths"], int(state["step"]))
            n_frames, size = int(state["n_frames"]), int(state["trajectory_bytes"])
            # a state saved before equilibrations existed: none
            n_eq, saved_offset = (int(state[k]) if k in state else 0 for k in ("n_equilibration_frames", "offset"))
        written, eq_written = ([] if not path.is_file() else _read_thermo(path)
                               for path in (out / "thermo.csv", out / EQUILIBRATION_FILE))
        if (traj.stat().st_size if traj.is_file() else 0) < size or len(written) < n_frames or len(eq_written) < n_eq:
            raise SagesnetError(f"simulate: --resume: trajectory.extxyz, thermo.csv or {EQUILIBRATION_FILE} in {out} "
                                f"is shorter than its {STATE_FILE} says (changed after the run); start the run again "
                                "with --overwrite")
        if size:
            os.truncate(traj, size)
        else:  # killed before the run's first frame was saved with its state
            traj.unlink(missing_ok=True)
        rows.extend(written[:n_frames])
        eq_rows.extend(eq_written[:n_eq])
        for name, kept in (("thermo.csv", rows), (EQUILIBRATION_FILE, eq_rows)):
            if kept:
                _write_thermo(out / name, kept)
            else:
                (out / name).unlink(missing_ok=True)
        eq_saved = len(eq_rows)
        for row in rows[1:] if stopper is not None else []:
            stopper.update(row["strain"], row[f"stress_{axis}{axis}_GPa"])
        manifest["resumed_at_steps"] = [*previous.get("resumed_at_steps", []), saved.step]
        wall_before = float(previous.get("wall_s", 0.0))
        offset = None if saved_offset < 0 else saved_offset
        if offset and previous.get("equilibration"):  # past the switch: the equilibration's wall time
            manifest["equilibration"]["wall_s"] = previous["equilibration"].get("wall_s")
        return saved

    def strain_of(state: State) -> float:
        return float(state.box_lengths[a] / lengths0[a] - 1.0)

    def last_frame(state: State, step: int, strain: float) -> Frame:
        """The output frame (at output step ``step``, ``strain``) of the state's frame, the last of a window."""
        p, v = state.positions.reshape(-1, len(species), 3)[-1], state.velocities.reshape(-1, len(species), 3)[-1]
        return output_frame(step, p, v, state.box_lengths, strain)

    def observe(state: State, res) -> Frame:
        """The frame of ``state``; in the equilibration at strain 0 (the box held; its float32 lengths
        differ from the input's by rounding)."""
        if offset is None:
            return last_frame(state, state.step, 0.0)
        return last_frame(state, state.step - offset, strain_of(state))

    def on_frame(state: State, res, frame: Frame) -> bool:
        """Record a frame; True stops the run (early stop past the stress peak)."""
        record(frame, state.box_lengths, res["uncertainty"].numpy(), res["stress"].numpy())
        if offset is not None and stopper is not None and stopper.update(frame.atoms.info["strain"],
                                                                         rows[-1][f"stress_{axis}{axis}_GPa"]):
            return True
        if time.time() - saved_at >= save_cost / SAVE_OVERHEAD:
            save(state)
        return False

    def rollout_at(rate: float, desc: str) -> Rollout:
        """The rollout of this run's model and thermostat with the box stretched at ``rate`` 1/ps."""
        def env_of(state: State) -> np.ndarray:
            return env_vector(meta, temperature_K or 0.0, rate, strain_of(state))

        step_args = (species, pbc, lengths0, a, rate, env_of)
        fine = signature_advance(fn, *step_args)
        return Rollout(signature_advance(coarse_fn, *step_args, window=True) if scale else fine, delta, unit,
                       meta.get("limits", {}).get("max_steps_per_call"),
                       thermostat and Thermostat(thermostat["kind"], thermostat["tau_ps"], target, masses, seed),
                       fine_advance=fine, progress=progress, desc=desc)

    def diverged(end, where: str) -> RolloutDiverged:
        """Record the frame that diverged (it stays in the outputs), end the run and say so."""
        if end.frame is not None:
            record(end.frame, end.state.box_lengths, end.readouts["uncertainty"].numpy(),
                   end.readouts["stress"].numpy())
        finish(f"diverged: {end.diverged}")
        return RolloutDiverged(f"simulate: rollout diverged at {where}step {end.state.step - (offset or 0)} "
                               f"({end.diverged}); the trajectory so far is in {out}", manifest)

    start = saved_at = time.time()
    save_cost, plotted_at, wall_before, eq_saved = 0.0, -math.inf, 0.0, 0
    stopper = EarlyStop() if stop_past_peak else None
    if previous is None:
        state = State(pos, vel, lengths, 0)
        record(output_frame(0, pos, vel, lengths, 0.0), lengths, np.zeros(len(pos)), np.zeros(6))
        save(state)
    else:
        state = restore()
    if offset is None:  # the equilibration: the box held, then the run from where it ends
        end = rollout_at(0.0, "equilibrate").run(state, n_equilibrate, every, observe, on_frame)
        if end.diverged:
            raise diverged(end, "equilibration ")
        state, offset = end.state, end.state.step
        manifest["equilibration"]["wall_s"] = round(wall_before + time.time() - start, 3)
        record(last_frame(state, 0, 0.0), state.box_lengths, np.zeros(len(pos)), np.zeros(6))
        save(state)
    end = rollout_at(strain_rate, "simulate").run(state, offset + total, every, observe, on_frame)
    if end.diverged:
        raise diverged(end, "")
    finish("completed: stopped past the stress peak" if end.stopped else "completed")
    return manifest
