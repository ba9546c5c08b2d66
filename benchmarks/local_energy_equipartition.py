"""A learned local energy fitted to AIREBO forces, and equipartition in its own NVE dynamics (issue 20).

``python -m benchmarks.local_energy_equipartition --out DIR`` (LAMMPS and TensorFlow on ``--threads``):

1. LAMMPS/AIREBO NVT (1 fs, Nosé–Hoover τ = 0.1 ps) of small periodic graphene sheets, none the
   96-atom sheet of the tests: training frames of an 8 × 6 sheet (192 atoms) at 300 K, 1000 K and
   4.2 K and of a 5 × 10 sheet (200 atoms) at 300 K; held-out frames of a 7 × 8 sheet (224 atoms) at
   300 K and 1000 K. Each frame keeps the positions, the AIREBO forces and the potential virial.
2. Least-squares fits (ridge, float64 normal equations: :class:`~sagesnet_tf.training.least_squares.
   NormalEquations`) of the :class:`~sagesnet_tf.layers.LocalEnergy` weights (:data:`FITS`): the
   pair term alone and pair + angle on the training forces, pair + angle on the forces and the
   in-plane virial (W_xx, W_yy), and pair + angle + dihedral (:data:`DIHEDRAL_ORDERS`) on the forces
   and the in-plane virial. Force R² per axis (x, y, z) and the in-plane virial error on the
   held-out frames.
3. Static checks on the flat 960-atom 12 × 20 sheet: the energy of the sheet rippled by
   z = A·sin(2πx/λ) and strained biaxially, above the flat one, AIREBO against each fit.
4. NVE velocity Verlet (1 fs, float64 integration of float32 forces) with each fitted energy
   (``--nve-fits``) on the 12 × 20 sheet from a LAMMPS NVT 300 K snapshot (1 ps, seed 20; positions
   and velocities), and LAMMPS/AIREBO NVE from the same snapshot: in-plane / out-of-plane
   temperatures over time, the initial C–C bonds (< 1.9 Å) kept, the first RDF peak against the
   snapshot's, the total-energy drift, and the wall time per step (same process, same threads).

Writes ``DIR/local_energy_equipartition.json`` and ``DIR/local_energy_temperatures.png``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from sagesnet_tf.analysis.plots import plt, save_figure
from sagesnet_tf.analysis.structure_metrics import bonded_fraction, bonds, pair_distances
from sagesnet_tf.atoms import ELEMENTS
from sagesnet_tf.grid import gather_atom_features, orthorhombic_box, slot_feature_size, voxelize
from sagesnet_tf.io import write_json
from sagesnet_tf.layers import LocalEnergy
from sagesnet_tf.layers.pair_stress import EV_TO_BAR_A3
from sagesnet_tf.md.engine import LammpsEngine
from sagesnet_tf.structures import graphene_sheet
from sagesnet_tf.thermo import MVV2E, component_temperatures_k, kinetic_energy_ev, plane_axes
from sagesnet_tf.training.least_squares import NormalEquations

#: The energy's ranges (Å): pairs out to second neighbours and the third (2.84 Å) in the switch-off (the
#: model's energy cutoff: periodic voxels of the training sheets are 1.45 Å wide, radius 2 covers 2.9 Å),
#: angles and dihedrals between bonded neighbours.
CUTOFF, ANGLE_CUTOFF = 2.9, 2.0
#: Legendre orders P_1 … P_D of the dihedral term (the fit that uses it).
DIHEDRAL_ORDERS = 3
#: Atom grid of the energy: voxel edge (Å) and slots per voxel.
H, SLOTS = 1.8, 3
#: MD timestep, ps, and the Nosé–Hoover damping of the NVT runs, ps.
DT_PS, TDAMP_PS = 0.001, 0.1
#: A bond: two atoms closer than this, Å.
BOND_CUTOFF = 1.9
#: (name, nx, ny, temperature K, frames, MD steps between frames, velocity seed, held out?)
SAMPLES = [
    ("train_8x6_300K", 8, 6, 300.0, 60, 25, 11, False),
    ("train_5x10_300K", 5, 10, 300.0, 30, 25, 12, False),
    ("train_8x6_1000K", 8, 6, 1000.0, 20, 25, 13, False),
    ("train_8x6_4K", 8, 6, 4.2, 6, 50, 14, False),
    ("heldout_7x8_300K", 7, 8, 300.0, 20, 25, 21, True),
    ("heldout_7x8_1000K", 7, 8, 1000.0, 10, 25, 22, True),
]
#: NVT steps before the first recorded frame.
EQUILIBRATE_STEPS = 1000
#: Å: in the fit with the virial, a frame's in-plane virial equations (W_xx, W_yy per atom, eV) weigh
#: as much as its 3N force equations (eV/Å) would with errors of one eV per this length.
VIRIAL_LENGTH_A = 1.0
#: The fits: name -> label (the name says the terms fitted and whether the virial is: see :func:`fit_columns`).
FITS = {"pair": "pair energy", "pair_angle": "pair + angle energy",
        "pair_angle_virial": "pair + angle energy, fitted with the virial",
        "pair_angle_dihedral_virial": "pair + angle + dihedral energy, fitted with the virial"}


def snapshot(engine: LammpsEngine) -> dict[str, np.ndarray]:
    """Positions (N, 3) Å, velocities (N, 3) Å/ps and forces (N, 3) eV/Å of the atoms in id order,
    and the potential virial W_aa (3,) eV (x, y, z) of the whole box."""
    n = engine.natoms
    order = np.argsort(np.array(engine.lmp.numpy.extract_atom("id")[:n]))
    frame = {name: np.array(engine.lmp.numpy.extract_atom(key)[:n], np.float64)[order]
             for name, key in (("positions", "x"), ("velocities", "v"), ("forces", "f"))}
    _, cell = engine.box()
    pressure = np.array(engine.lmp.numpy.extract_compute("md_virial", 0, 1)[:3], np.float64)   # bar
    frame["virial"] = pressure * np.linalg.det(cell) / EV_TO_BAR_A3
    return frame


def nvt_engine(atoms, temperature: float, seed: int, log: Path, threads: int) -> LammpsEngine:
    """A LAMMPS engine with ``atoms`` thermalised: velocities at ``temperature`` K and
    :data:`EQUILIBRATE_STEPS` of NVT (the thermostat fix ``md_int`` left on)."""
    engine = LammpsEngine(str(log), threads)
    engine.load_atoms(atoms)
    engine.command(f"timestep {DT_PS!r}")
    engine.command(f"velocity all create {temperature!r} {seed} mom yes rot no dist gaussian")
    engine.command(f"fix md_int all nvt temp {temperature!r} {temperature!r} {TDAMP_PS!r}")
    engine.command("compute md_virial all pressure NULL virial")
    engine.command(f"run {EQUILIBRATE_STEPS}")
    return engine


def sample_frames(nx, ny, temperature, n_frames, every, seed, log, threads) -> dict:
    """LAMMPS NVT frames of an nx × ny sheet: ``positions``/``forces`` (F, N, 3), ``virial`` (F, 3),
    and the sheet."""
    atoms = graphene_sheet(nx, ny)
    with nvt_engine(atoms, temperature, seed, log, threads) as engine:
        frames = []
        for _ in range(n_frames):
            engine.command(f"run {every} pre no post no")
            frames.append(snapshot(engine))
    return {"atoms": atoms, **{key: np.stack([f[key] for f in frames]) for key in ("positions", "forces", "virial")}}


def grid_inputs(positions, atoms) -> tuple:
    """The LocalEnergy inputs (grid_shape, assignment, atom_features, spacing), B = 1, of one frame."""
    lengths, origin = orthorhombic_box(atoms)
    grid = voxelize(positions, tf.zeros_like(positions), atoms.species_index, lengths, origin, atoms.pbc,
                    H, SLOTS, len(ELEMENTS))
    return (tf.shape(grid.atom_grid)[:3], grid.assignment[None],
            gather_atom_features(grid.atom_grid, grid.assignment)[None], grid.spacing[None])


def r2_per_axis(predicted: np.ndarray, target: np.ndarray) -> list[float]:
    """Coefficient of determination per Cartesian axis of (..., 3) forces."""
    p, t = predicted.reshape(-1, 3), target.reshape(-1, 3)
    return [float(1.0 - np.sum((t[:, a] - p[:, a]) ** 2) / np.sum((t[:, a] - t[:, a].mean()) ** 2)) for a in range(3)]


def fit_columns(layer: LocalEnergy, kind: str) -> int:
    """The leading features (pair, then angle, then dihedral) that the fit ``kind`` of :data:`FITS` uses."""
    if kind == "pair":
        return layer.n_pair_features
    if "dihedral" in kind:
        return layer.n_features
    return layer.n_pair_features + layer.n_angle_features


def fit(layer: LocalEnergy, samples: dict) -> dict:
    """Fit the weights of :data:`FITS` (those named ``*_virial`` on the forces and the in-plane
    virial, the others on the forces; each on its :func:`fit_columns`, the other weights zero); force
    R² per axis and in-plane virial error of each on the held-out samples."""
    signature = [tf.TensorSpec([3], tf.int32), tf.TensorSpec([1, None, 4], tf.int32),
                 tf.TensorSpec([1, None, slot_feature_size(len(ELEMENTS))], tf.float32),
                 tf.TensorSpec([1, 3], tf.float32)]
    design = tf.function(layer.design, input_signature=signature)
    strain_design = tf.function(layer.strain_design, input_signature=signature)
    equations = {kind: NormalEquations(fit_columns(layer, kind), kind) for kind in FITS}
    held_out, t0 = {}, time.perf_counter()
    for name, sample in samples.items():
        rows = []
        n_atoms = sample["positions"].shape[1]
        for positions, forces, virial in zip(sample["positions"], sample["forces"], sample["virial"]):
            state = grid_inputs(tf.constant(positions, tf.float32), sample["atoms"])
            frame = design(*state)[0].numpy().reshape(-1, layer.n_features)                    # (3N, F)
            strain = -strain_design(*state)[0, :2].numpy()                                      # (2, F) W_xx, W_yy
            if sample["held_out"]:
                rows.append((frame, strain))
                continue
            weight = np.sqrt(1.5 * n_atoms) / (n_atoms * VIRIAL_LENGTH_A)
            for kind, eq in equations.items():
                width = fit_columns(layer, kind)
                eq.add(frame[:, :width], forces.reshape(-1))
                if kind.endswith("_virial"):
                    eq.add(strain[:, :width] * weight, virial[:2] * weight)
        if sample["held_out"]:
            held_out[name] = rows
    design_s = time.perf_counter() - t0
    weights = {}
    for kind, eq in equations.items():
        solved = eq.solve(np.zeros(eq.gram.shape[0]))
        weights[kind] = np.concatenate([solved, np.zeros(layer.n_features - len(solved), np.float32)])
    r2, virial_error = {}, {}
    for kind, w in weights.items():
        r2[kind] = {name: r2_per_axis(np.stack([f @ w for f, _ in rows]), samples[name]["forces"])
                    for name, rows in held_out.items()}
        virial_error[kind] = {name: {
            "rms_eV_per_atom": float(np.sqrt(np.mean((np.stack([s @ w for _, s in rows]) - samples[name]["virial"][:, :2]) ** 2))
                                     / samples[name]["positions"].shape[1]),
            "md_mean_eV_per_atom": float(np.mean(samples[name]["virial"][:, :2]) / samples[name]["positions"].shape[1]),
            "fit_mean_eV_per_atom": float(np.mean([s @ w for _, s in rows]) / samples[name]["positions"].shape[1])}
            for name, rows in held_out.items()}
    return {"weights": weights, "r2_xyz": r2, "virial": virial_error, "design_wall_s": design_s}


def deformations(sheet) -> list[tuple[dict, object]]:
    """The static checks' structures: the flat ``sheet`` rippled by z = A·sin(2πx/λ) (λ = the box
    length and half of it; A = 0.2, 0.5, 1 Å) and strained biaxially (ε = ±0.5 %, ±1 %, box and atoms)."""
    out = []
    for wavelength in (sheet.cell[0, 0], sheet.cell[0, 0] / 2):
        for amplitude in (0.2, 0.5, 1.0):
            rippled = sheet.copy()
            rippled.positions[:, 2] += amplitude * np.sin(2 * np.pi * sheet.positions[:, 0] / wavelength)
            out.append(({"ripple_wavelength_A": float(wavelength), "amplitude_A": amplitude}, rippled))
    for strain in (-0.01, -0.005, 0.005, 0.01):
        strained = sheet.copy()
        scale = np.array([1 + strain, 1 + strain, 1.0])
        strained.positions = sheet.positions * scale
        strained.cell = sheet.cell * scale[:, None]
        out.append(({"biaxial_strain": strain}, strained))
    return out


def deformation_energies(layer: LocalEnergy, weights: dict, sheet, log: Path, threads: int) -> list[dict]:
    """Energy (meV/atom) of each of :func:`deformations` above the flat ``sheet``, from AIREBO
    (LAMMPS ``run 0``) and from each fitted energy (``weights``: name -> (n_features,))."""

    def energies(structure) -> dict:
        with LammpsEngine(str(log), threads) as engine:
            engine.load_atoms(structure)
            engine.command("run 0")
            found = {"airebo": engine.lmp.get_thermo("pe")}
        for kind, w in weights.items():
            layer.energy_weights.assign(w)
            found[kind] = float(layer(*grid_inputs(tf.constant(structure.positions, tf.float32), structure))["energy"][0])
        return found

    flat = energies(sheet)
    return [{**label, **{key: (value - flat[key]) * 1000 / len(sheet) for key, value in energies(structure).items()}}
            for label, structure in deformations(sheet)]


def first_rdf_peak(positions, atoms) -> float:
    """Å, the most frequent pair distance below 2 Å (0.005-Å bins) of one frame."""
    lengths, _ = orthorhombic_box(atoms)
    d = pair_distances(positions, lengths, atoms.pbc)[np.triu_indices(len(positions), 1)]
    hist, edges = np.histogram(d, bins=200, range=(1.0, 2.0))
    return float(edges[np.argmax(hist)] + 0.5 * (edges[1] - edges[0]))


def record(rows: list, step: int, velocities, masses, plane, potential: float) -> None:
    t_in, t_out = component_temperatures_k(velocities, masses, plane)
    rows.append({"time_ps": step * DT_PS, "in_plane_K": t_in, "out_of_plane_K": t_out,
                 "total_eV": kinetic_energy_ev(velocities, masses) + potential})


def learned_nve(layer: LocalEnergy, atoms, start: dict, steps: int, every: int) -> dict:
    """Velocity Verlet with the layer's forces from ``start`` (positions, velocities)."""
    masses = atoms.masses

    @tf.function(input_signature=[tf.TensorSpec([None, 3], tf.float32)])
    def energy_forces(positions):
        out = layer(*grid_inputs(positions, atoms))
        return out["energy"][0], out["forces"][0]

    def accelerations(x):
        energy, forces = energy_forces(tf.constant(x, tf.float32))
        return float(energy), forces.numpy().astype(np.float64) / (masses[:, None] * MVV2E)

    x, v = start["positions"].copy(), start["velocities"].copy()
    plane = plane_axes(x, atoms.pbc)
    potential, a = accelerations(x)
    rows, stopped, t0 = [], None, time.perf_counter()
    record(rows, 0, v, masses, plane, potential)
    for step in range(1, steps + 1):
        v += 0.5 * DT_PS * a
        x += DT_PS * v
        try:
            potential, a = accelerations(x)
        except tf.errors.InvalidArgumentError as err:  # NaN positions, a grid overflow: the run blew up
            stopped = f"step {step}: {err.message.splitlines()[0]}"
            break
        v += 0.5 * DT_PS * a
        if step % every == 0:
            record(rows, step, v, masses, plane, potential)
    return {"rows": rows, "positions": x, "stopped": stopped,
            "wall_s_per_step": (time.perf_counter() - t0) / (step if stopped is None else max(step - 1, 1))}


def lammps_nve(start_engine: LammpsEngine, atoms, steps: int, every: int) -> dict:
    """LAMMPS/AIREBO NVE from the engine's current state (its thermostat removed)."""
    masses = atoms.masses
    engine = start_engine
    engine.command("unfix md_int")
    engine.command("fix md_nve all nve")
    engine.command("run 0")
    plane = plane_axes(snapshot(engine)["positions"], atoms.pbc)
    rows, t0 = [], time.perf_counter()
    for step in range(0, steps + 1, every):
        if step:
            engine.command(f"run {every} pre no post no")
        record(rows, step, snapshot(engine)["velocities"], masses, plane, float(engine.lmp.get_thermo("pe")))
    return {"rows": rows, "positions": snapshot(engine)["positions"], "stopped": None,
            "wall_s_per_step": (time.perf_counter() - t0) / steps}


def summarise(run: dict, atoms, start_positions, start_peak: float, nve_ps: float) -> dict:
    """Means over the second half, bonds kept, RDF peak, drift of one NVE run."""
    rows = run["rows"]
    late = [r for r in rows if r["time_ps"] >= 0.5 * nve_ps]
    lengths, _ = orthorhombic_box(atoms)
    initial = bonds(start_positions, lengths, atoms.pbc, BOND_CUTOFF)
    finite = np.all(np.isfinite(run["positions"]))
    energies = np.array([r["total_eV"] for r in rows])
    return {
        "completed_ps": rows[-1]["time_ps"], "stopped": run["stopped"],
        "mean_in_plane_K_second_half": float(np.mean([r["in_plane_K"] for r in late])) if late else None,
        "mean_out_of_plane_K_second_half": float(np.mean([r["out_of_plane_K"] for r in late])) if late else None,
        "bonds_kept": bonded_fraction(run["positions"], initial, lengths, atoms.pbc, BOND_CUTOFF) if finite else 0.0,
        "n_initial_bonds": int(len(initial)),
        "first_rdf_peak_A": first_rdf_peak(run["positions"], atoms) if finite else None,
        "start_rdf_peak_A": start_peak,
        "total_energy_drift_eV": float(energies[-1] - energies[0]),
        "total_energy_std_eV": float(np.std(energies)),
        "wall_s_per_step": run["wall_s_per_step"],
    }


def plot(runs: dict, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, run), color in zip(runs.items(), ("k", "tab:blue", "tab:orange", "tab:green", "tab:red")):
        t = [r["time_ps"] for r in run["rows"]]
        ax.plot(t, [r["in_plane_K"] for r in run["rows"]], color=color, label=f"{name} in-plane")
        ax.plot(t, [r["out_of_plane_K"] for r in run["rows"]], color=color, ls="--", label=f"{name} out-of-plane")
    ax.axhline(300.0, color="grey", lw=0.5)
    ax.set_xlabel("time (ps)")
    ax.set_ylabel("temperature (K)")
    ax.set_title("NVE, 960-atom graphene sheet from a 300 K AIREBO snapshot")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--nve-ps", type=float, default=2.0, help="NVE length, ps (default 2)")
    parser.add_argument("--every", type=int, default=10, help="NVE steps between recorded rows (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="LAMMPS and TensorFlow threads (default 1)")
    parser.add_argument("--nve-fits", nargs="+", choices=list(FITS), default=list(FITS),
                        help="the fitted energies to run NVE with (default all)")
    args = parser.parse_args(argv)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    out = Path(args.out)
    (out / "lammps").mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    samples = {}
    for name, nx, ny, temperature, n_frames, every, seed, held_out in SAMPLES:
        samples[name] = {**sample_frames(nx, ny, temperature, n_frames, every, seed,
                                         out / "lammps" / f"{name}.log", args.threads), "held_out": held_out}
    sampling_s = time.perf_counter() - t0
    print(f"LAMMPS frames: {sum(len(s['positions']) for s in samples.values())} in {sampling_s:.0f} s", flush=True)

    layer = LocalEnergy(CUTOFF, ANGLE_CUTOFF, H, SLOTS, ("periodic", "periodic", "open"), len(ELEMENTS),
                        dihedral_orders=DIHEDRAL_ORDERS)
    fitted = fit(layer, samples)
    print(f"held-out force R² (x, y, z): {fitted['r2_xyz']}\nheld-out in-plane virial: {fitted['virial']}", flush=True)

    sheet = graphene_sheet(12, 20)
    steps = int(round(args.nve_ps / DT_PS))
    engine = nvt_engine(sheet, 300.0, 20, out / "lammps" / "sheet_12x20.log", args.threads)
    with engine:
        start = snapshot(engine)
        runs = {"LAMMPS AIREBO": lammps_nve(engine, sheet, steps, args.every)}
    start_peak = first_rdf_peak(start["positions"], sheet)
    deformed = deformation_energies(layer, fitted["weights"], sheet, out / "lammps" / "deformations.log", args.threads)
    for kind in args.nve_fits:
        layer.energy_weights.assign(fitted["weights"][kind])
        label = FITS[kind]
        runs[label] = learned_nve(layer, sheet, start, steps, args.every)
        print(f"NVE {label}: {runs[label]['rows'][-1]}", flush=True)
    plot(runs, out / "local_energy_temperatures.png")

    start_t = component_temperatures_k(start["velocities"], sheet.masses, plane_axes(start["positions"], sheet.pbc))
    result = {
        "cutoff_A": CUTOFF, "angle_cutoff_A": ANGLE_CUTOFF, "h_A": H, "slots": SLOTS,
        "legendre_orders": layer.legendre_orders, "dihedral_orders": layer.dihedral_orders,
        "n_pair_features": layer.n_pair_features, "n_angle_features": layer.n_angle_features,
        "n_dihedral_features": layer.n_dihedral_features, "threads": args.threads,
        "samples": {name: {"atoms": int(s["positions"].shape[1]), "frames": int(s["positions"].shape[0]),
                           "held_out": s["held_out"]} for name, s in samples.items()},
        "lammps_sampling_wall_s": sampling_s, "design_wall_s": fitted["design_wall_s"],
        "heldout_force_r2_xyz": fitted["r2_xyz"],
        "heldout_inplane_virial": fitted["virial"],
        "weights_eV": {kind: w.tolist() for kind, w in fitted["weights"].items()},
        "deformation_energy_meV_per_atom": deformed,
        "nve": {"atoms": len(sheet), "dt_fs": DT_PS * 1000, "steps": steps,
                "start_in_plane_K": start_t[0], "start_out_of_plane_K": start_t[1],
                "runs": {name: summarise(run, sheet, start["positions"], start_peak, args.nve_ps)
                         for name, run in runs.items()},
                "rows": {name: run["rows"] for name, run in runs.items()}},
    }
    write_json(out / "local_energy_equipartition.json", result)
    return result


if __name__ == "__main__":
    main()
