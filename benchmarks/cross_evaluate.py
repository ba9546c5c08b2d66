"""Cross-evaluation of a kirigami tension run: the model on LAMMPS's frames, AIREBO on the model's (issue 20).

``python -m benchmarks.cross_evaluate --pattern P --out DIR [--protocol quick] [--frames 20] [--model M] [--threads 1]``:

1. The kirigami tension protocol (:mod:`sagesnet_tf.kirigami_tension`, quick by default) runs on the
   ribbon of cut pattern P with LAMMPS/AIREBO (records every 10 steps, as the benchmark) and then with
   the model from LAMMPS's relaxed ribbon to the strain where LAMMPS stopped (as
   :mod:`benchmarks.kirigami_tension`), recording ~``--frames`` frames.
2. About ``--frames`` frames of each run (LAMMPS's stretch, evenly spaced; all the model's) are
   evaluated by both engines at rest on the frame's own box and velocities: the model's stress
   (:meth:`~sagesnet_tf.simulator.LearnedSimulator.stress`) and forces (its local energy's,
   :class:`~sagesnet_tf.layers.LocalEnergy`), AIREBO's pressure and forces (``run 0``), both energies
   per atom, and AIREBO's stress and energy release after relaxing the frame in its box
   (:data:`RELAX_MINIMIZE`: where AIREBO would take that configuration). Each engine on its own frames
   reproduces its run's recorded stress (a check of the evaluation).
3. Per frame: force RMSE (over components, eV/Å) and mean |ΔF| (per atom) of model against AIREBO,
   split by atom class of the built ribbon — ``tip`` (within :data:`TIP_RADIUS_A` of a cut corner,
   :func:`~sagesnet_tf.structures.kirigami_cut_corners`), ``edge`` (2 neighbours closer than
   :data:`BOND_CUTOFF_A`), ``bulk`` (3); and the geometry of the ribbon's bonds (those of the
   built ribbon, followed through the frames): the longest, the fraction longer than 1.6 / 1.7 /
   1.8 Å, the extremes of the bond angles, the std of z, the mean length of the bulk's axial (along the
   load) and inclined bonds, and where the longest bonds lie (their class and distance from the
   nearest cut corner).
4. A bond scan: the longest bond of LAMMPS's frame at its stress peak, stretched alone (its two
   atoms moved apart along it, everything else fixed) from 1.3 to 2.2 Å, in LAMMPS's relaxed ribbon and
   in that peak frame: both engines' energy (relative to the unmoved frame) and bond force.

Stresses are sheet stresses σ_xx (GPa) over the ribbon's nominal width and 3.35 Å, as both runs
report them. Writes ``DIR/cross_evaluate.json``, ``DIR/cross_stress_strain.png`` (LAMMPS run, model
run, model on LAMMPS's frames, AIREBO on the model's as they are and relaxed),
``DIR/cross_force_rmse.png`` (force RMSE by class against strain, on each run's frames),
``DIR/cross_bond_scan.png``, and the runs under ``DIR/lammps`` and ``DIR/sagesnet``. LAMMPS takes
about a minute, the evaluation ~15 s a frame (the relaxation), ~15 minutes a pattern in all on 2 shared cores.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
import tensorflow as tf

from sagesnet_tf.analysis.plots import plt, save_figure
from sagesnet_tf.analysis.stress_strain import nominal_thickness, nominal_width, sheet_stress_from_pressure, sheet_stress_gpa
from sagesnet_tf.atoms import Atoms
from sagesnet_tf.export import model_from_savedmodel
from sagesnet_tf.io import write_json
from sagesnet_tf.io.extxyz import read_extxyz_frames
from sagesnet_tf.kirigami_tension import FULL, QUICK, model_periodic_y, read_model_curve
from sagesnet_tf.md.engine import LammpsEngine
from sagesnet_tf.md.run import write_md_outputs
from sagesnet_tf.savedmodel import read_metadata, resolve_model_dir
from sagesnet_tf.simulate import RolloutDiverged
from sagesnet_tf.simulator import LearnedSimulator
from sagesnet_tf.structures import bond_pairs, kirigami_cut_corners

#: Å, two atoms of the built ribbon closer than this are bonded (its bonds are 1.40 Å, second neighbours 2.42 Å).
BOND_CUTOFF_A = 1.9
#: Å, atoms within this in-plane distance of a cut corner are the ``tip`` class.
TIP_RADIUS_A = 3.0
#: Å, the bond-length thresholds whose exceeded fractions are reported.
BOND_THRESHOLDS_A = (1.6, 1.7, 1.8)
#: Atom classes, in report order.
CLASSES = ("bulk", "edge", "tip")
#: Å, the lengths of the bond scan.
SCAN_LENGTHS_A = np.round(np.arange(1.3, 2.2001, 0.05), 3)
#: The longest bonds of a frame whose position is reported.
N_LONGEST = 5
#: AIREBO's relaxation of a frame (box fixed, atoms at rest): conjugate gradient to a force tolerance of 1e-3 eV/Å.
RELAX_MINIMIZE = "minimize 0.0 1.0e-3 2000 20000"
#: A bond of the built ribbon within this angle (degrees) of x is ``axial`` (along the load), else ``inclined``.
AXIAL_DEG = 10.0


class Evaluator:
    """Both engines on one frame at rest: stress σ_xx (GPa), forces (N, 3) eV/Å and energy (eV).

    Args:
        model_dir: the exported model (its local energy gives forces and stress).
        width_A, thickness_A: the ribbon's nominal cross-section, Å (the sheet stress's).
        log_path: LAMMPS's log (overwritten at each frame).
        threads: LAMMPS OpenMP threads.
    """

    def __init__(self, model_dir: Path, width_A: float, thickness_A: float, log_path: Path, threads: int):
        model, _ = model_from_savedmodel(model_dir)
        self.sim = LearnedSimulator(model)
        self.width, self.thickness, self.log, self.threads = width_A, thickness_A, str(log_path), threads

    def model(self, atoms: Atoms) -> dict:
        """The model on ``atoms``: ``stress_GPa``, ``forces`` (N, 3) eV/Å, ``energy_eV``."""
        box = np.diag(np.asarray(atoms.cell, float))
        args = (tf.constant(atoms.positions[None], tf.float32), tf.constant(atoms.velocities[None], tf.float32),
                tf.constant(atoms.species_index[None], tf.int32), tf.constant(box[None], tf.float32))
        stress = float(self.sim.stress(None, *args)[0, 0])                                   # bar·Å³, −P_xx·V
        state = self.sim.atoms_state(*args, atom_grid=False)
        out = self.sim.model.local_energy(state["grid_shape"], state["assignment"], state["atom_features"],
                                          state["spacing"])
        return {"stress_GPa": float(sheet_stress_gpa(stress, box[0], self.width, self.thickness)),
                "forces": out["forces"][0].numpy().astype(np.float64), "energy_eV": float(out["energy"][0])}

    def airebo(self, atoms: Atoms, relax: bool = False) -> dict:
        """AIREBO (``run 0``) on ``atoms``: ``stress_GPa``, ``forces`` (N, 3) eV/Å in ``atoms``' order,
        ``energy_eV`` (potential); with ``relax`` also ``relaxed_stress_GPa`` and ``relaxed_energy_eV``,
        after :data:`RELAX_MINIMIZE` in the frame's box (where AIREBO takes the frame at rest)."""
        with LammpsEngine(self.log, threads=self.threads) as engine:
            engine.load_atoms(atoms)
            engine.command("run 0")
            pxx, energy = engine.lmp.get_thermo("pxx"), engine.lmp.get_thermo("pe")
            ids = np.array(engine.lmp.numpy.extract_atom("id")[: len(atoms)])        # copies: LAMMPS frees its arrays
            forces = np.array(engine.lmp.numpy.extract_atom("f")[: len(atoms)], dtype=np.float64)
            if relax:
                engine.command("velocity all set 0.0 0.0 0.0")
                engine.command(RELAX_MINIMIZE)
                relaxed = {"relaxed_stress_GPa": self._sheet_stress(engine.lmp.get_thermo("pxx"), atoms),
                           "relaxed_energy_eV": float(engine.lmp.get_thermo("pe"))}
        order = np.argsort(ids)
        forces = forces[order][np.searchsorted(ids[order], atoms.ids)]
        return {"stress_GPa": self._sheet_stress(pxx, atoms), "forces": forces, "energy_eV": float(energy),
                **(relaxed if relax else {})}

    def _sheet_stress(self, pxx_bar: float, atoms: Atoms) -> float:
        """σ_xx (GPa) of AIREBO's pressure P_xx (bar) in ``atoms``' box."""
        return float(sheet_stress_from_pressure([pxx_bar], np.asarray(atoms.cell, float), "x", self.width,
                                                self.thickness)[0])


def atom_classes(ribbon: Atoms, corners: np.ndarray) -> np.ndarray:
    """(N,) str, ``tip`` / ``edge`` / ``bulk`` (else ``other``) of the built ribbon's atoms."""
    i, _, _ = bond_pairs(ribbon.positions, ribbon.cell, ribbon.pbc, BOND_CUTOFF_A)
    neighbours = np.bincount(i, minlength=len(ribbon))
    labels = np.where(neighbours == 3, "bulk", np.where(neighbours == 2, "edge", "other")).astype("<U5")
    labels[corner_distance(ribbon.positions, corners) < TIP_RADIUS_A] = "tip"
    return labels


def corner_distance(points: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """(P,) Å, the in-plane distance of each point (P, ≥2) to the nearest cut corner (C, 2) (inf without one)."""
    if not len(corners):
        return np.full(len(points), np.inf)
    return np.linalg.norm(points[:, None, :2] - corners[None], axis=-1).min(axis=1)


def ribbon_bonds(ribbon: Atoms) -> np.ndarray:
    """(K, 2) int, the built ribbon's bonds, each once (i < j)."""
    i, j, _ = bond_pairs(ribbon.positions, ribbon.cell, ribbon.pbc, BOND_CUTOFF_A)
    return np.unique(np.stack([np.minimum(i, j), np.maximum(i, j)], 1), axis=0)


def bond_vectors(atoms: Atoms, bonds: np.ndarray) -> np.ndarray:
    """(K, 3) Å, r_j − r_i of ``bonds`` in ``atoms`` (orthorhombic box, minimum image along periodic axes)."""
    lengths = np.diag(np.asarray(atoms.cell, float))
    d = atoms.positions[bonds[:, 1]] - atoms.positions[bonds[:, 0]]
    return d - np.where(atoms.pbc, np.round(d / lengths) * lengths, 0.0)


def geometry(atoms: Atoms, bonds: np.ndarray, ribbon: Atoms, classes: np.ndarray, corners: np.ndarray) -> dict:
    """The frame's bond lengths, angles and buckling, the mean length of the bulk's axial and inclined
    bonds (their orientation in the built ``ribbon``), and where its longest bonds lie (the built
    ribbon's coordinates: their distance from the nearest cut corner, their atoms' classes)."""
    vectors = bond_vectors(atoms, bonds)
    length = np.linalg.norm(vectors, axis=1)
    built = bond_vectors(ribbon, bonds)
    axial = np.abs(built[:, 0]) > np.cos(np.radians(AXIAL_DEG)) * np.linalg.norm(built, axis=1)
    bulk = (classes[bonds[:, 0]] == "bulk") & (classes[bonds[:, 1]] == "bulk")
    angles = []
    for atom in range(len(atoms)):
        at_i, at_j = bonds[:, 0] == atom, bonds[:, 1] == atom
        out = np.concatenate([vectors[at_i], -vectors[at_j]])                   # bonds pointing away from atom
        for a in range(len(out)):
            for b in range(a + 1, len(out)):
                cos = out[a] @ out[b] / (np.linalg.norm(out[a]) * np.linalg.norm(out[b]))
                angles.append(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
    angles = np.asarray(angles)
    longest = np.argsort(length)[::-1][:N_LONGEST]
    midpoints = 0.5 * (ribbon.positions[bonds[longest, 0]] + ribbon.positions[bonds[longest, 1]])
    return {"max_bond_A": float(length.max()),
            **{f"bonds_over_{t}_A": float(np.mean(length > t)) for t in BOND_THRESHOLDS_A},
            "angle_min_deg": float(angles.min()), "angle_max_deg": float(angles.max()),
            "angle_p1_deg": float(np.percentile(angles, 1)), "angle_p99_deg": float(np.percentile(angles, 99)),
            "z_std_A": float(np.std(atoms.positions[:, 2])),
            "bulk_axial_bond_A": float(np.mean(length[bulk & axial])),
            "bulk_inclined_bond_A": float(np.mean(length[bulk & ~axial])),
            "longest_bonds": [{"atoms": [int(a), int(b)], "length_A": float(length[k]),
                               "classes": [str(classes[a]), str(classes[b])], "corner_distance_A": float(d)}
                              for k, (a, b), d in zip(longest, bonds[longest], corner_distance(midpoints, corners))]}


def force_errors(model_forces: np.ndarray, airebo_forces: np.ndarray, classes: np.ndarray) -> dict:
    """Force RMSE over components (eV/Å) and mean |ΔF| per atom, all atoms and per class, and the
    mean |F_AIREBO| per class for scale."""
    delta = model_forces - airebo_forces
    out = {"rmse_all": float(np.sqrt(np.mean(delta ** 2)))}
    for name in CLASSES:
        mask = classes == name
        out[f"rmse_{name}"] = float(np.sqrt(np.mean(delta[mask] ** 2))) if mask.any() else None
        out[f"mean_abs_{name}"] = float(np.mean(np.linalg.norm(delta[mask], axis=1))) if mask.any() else None
        out[f"airebo_mean_abs_{name}"] = float(np.mean(np.linalg.norm(airebo_forces[mask], axis=1))) if mask.any() else None
    return out


def evaluate_frames(frames: list[tuple[float, float, Atoms]], evaluator: Evaluator, ribbon: Atoms, bonds, classes,
                    corners) -> list[dict]:
    """Each (strain, the run's recorded stress σ_xx GPa, frame) by both engines and by geometry."""
    rows = []
    for strain, recorded, atoms in frames:
        model, airebo = evaluator.model(atoms), evaluator.airebo(atoms, relax=True)
        rows.append({"strain": float(strain), "run_stress_GPa": float(recorded),
                     "model_stress_GPa": model["stress_GPa"], "airebo_stress_GPa": airebo["stress_GPa"],
                     "airebo_relaxed_stress_GPa": airebo["relaxed_stress_GPa"],
                     "model_energy_eV_atom": model["energy_eV"] / len(atoms),
                     "airebo_energy_eV_atom": airebo["energy_eV"] / len(atoms),
                     "airebo_relaxation_eV_atom": (airebo["energy_eV"] - airebo["relaxed_energy_eV"]) / len(atoms),
                     "forces": force_errors(model["forces"], airebo["forces"], classes),
                     "geometry": geometry(atoms, bonds, ribbon, classes, corners)})
    return rows


def bond_scan(atoms: Atoms, bond: np.ndarray, evaluator: Evaluator) -> dict:
    """The bond ``bond`` (2,) of ``atoms`` set to each of :data:`SCAN_LENGTHS_A` (its atoms moved
    apart symmetrically along it): both engines' energy relative to the unmoved frame (eV) and the
    bond force −dE/dr (eV/Å; negative while the bond pulls its atoms together, minus its tension)."""
    vector = bond_vectors(atoms, bond[None])[0]
    length0 = float(np.linalg.norm(vector))
    unit = vector / length0
    base = {"model": evaluator.model(atoms)["energy_eV"], "airebo": evaluator.airebo(atoms)["energy_eV"]}
    out = {"atoms": [int(b) for b in bond], "length0_A": length0, "length_A": SCAN_LENGTHS_A.tolist()}
    for engine in ("model", "airebo"):
        out[f"{engine}_energy_eV"], out[f"{engine}_bond_force_eV_A"] = [], []
    for length in SCAN_LENGTHS_A:
        moved = copy.deepcopy(atoms)
        moved.positions = np.array(atoms.positions, float)
        moved.positions[bond[0]] -= 0.5 * (length - length0) * unit
        moved.positions[bond[1]] += 0.5 * (length - length0) * unit
        for engine, result in (("model", evaluator.model(moved)), ("airebo", evaluator.airebo(moved))):
            out[f"{engine}_energy_eV"].append(result["energy_eV"] - base[engine])
            # −dE/dr along the bond: half the difference of the two atoms' forces along it
            out[f"{engine}_bond_force_eV_A"].append(
                float(0.5 * (result["forces"][bond[1]] - result["forces"][bond[0]]) @ unit))
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pattern", required=True, help="15-digit cut pattern of the ribbon")
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--protocol", choices=("quick", "full"), default="quick")
    parser.add_argument("--frames", type=int, default=20, help="frames of each run to cross-evaluate")
    parser.add_argument("--model", default=None, help="exported_models/NAME[/VERSION] (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=1, help="LAMMPS OpenMP threads")
    args = parser.parse_args(argv)
    protocol = {"quick": QUICK, "full": FULL}[args.protocol]
    model_dir = resolve_model_dir(args.model)
    args.out.mkdir(parents=True, exist_ok=True)
    ribbon = protocol.ribbon(args.pattern, model_periodic_y(args.model))
    corners = kirigami_cut_corners(args.pattern, protocol.nx, protocol.ny)
    classes, bonds = atom_classes(ribbon, corners), ribbon_bonds(ribbon)
    evaluator = Evaluator(model_dir, nominal_width(ribbon, "x"), nominal_thickness(ribbon), args.out / "log.lammps",
                          args.threads)

    # LAMMPS's run and its frames
    md_dir = args.out / "lammps"
    md_dir.mkdir(exist_ok=True)
    md = protocol.run_lammps(ribbon, md_dir, record_every=10, threads=args.threads, progress=False)
    write_md_outputs(md, str(md_dir))
    curve = md.stress_strain
    index = np.searchsorted(md.trajectory.step, curve["step"])
    picks = np.unique(np.round(np.linspace(0, len(index) - 1, args.frames)).astype(int))
    md_frames = [(curve["strain"][k], curve["stress_GPa"][k], md.trajectory.frame(int(index[k]))) for k in picks]
    for _, _, frame in md_frames:
        frame.pbc = ribbon.pbc.copy()

    # the model's run from LAMMPS's relaxed ribbon to LAMMPS's last strain, and its frames
    relaxed = md.trajectory.frame(int(index[0]))
    relaxed.pbc = ribbon.pbc.copy()
    relaxed.info.update({k: v for k, v in ribbon.info.items() if k.startswith("nominal_")})
    final_strain = max(float(curve["strain"][-1]), 1e-3)
    model_steps = final_strain / protocol.strain_rate_per_ps / read_metadata(model_dir)["delta_ps"]
    every = max(1, int(round(model_steps / args.frames)))
    try:
        manifest = protocol.run_model(relaxed, args.out / "sagesnet", args.model, max_strain=final_strain,
                                      every=every, overwrite=True, progress=False)
    except RolloutDiverged as err:
        manifest = err.manifest
    ml_curve = read_model_curve(args.out / "sagesnet" / "thermo.csv")
    trajectory = read_extxyz_frames(args.out / "sagesnet" / "trajectory.extxyz")[-len(ml_curve["strain"]):]
    assert np.allclose([f.info["strain"] for f in trajectory], ml_curve["strain"]), "trajectory and thermo.csv differ"
    ml_frames = [(s, g, f) for s, g, f in zip(ml_curve["strain"], ml_curve["stress_GPa"], trajectory)]

    peak = int(np.argmax([row[1] for row in md_frames]))
    peak_frame = md_frames[peak][2]
    longest = int(np.argmax(np.linalg.norm(bond_vectors(peak_frame, bonds), axis=1)))
    result = {"pattern": args.pattern, "protocol": protocol.settings(), "model": str(model_dir),
              "n_atoms": len(ribbon), "n_corners": len(corners),
              "class_counts": {c: int(np.sum(classes == c)) for c in (*CLASSES, "other")},
              "lammps_final_strain": final_strain, "model_status": manifest["status"], "model_every": every,
              "lammps_frames": evaluate_frames(md_frames, evaluator, ribbon, bonds, classes, corners),
              "model_frames": evaluate_frames(ml_frames, evaluator, ribbon, bonds, classes, corners),
              "lammps_curve": {"strain": curve["strain"], "stress_GPa": curve["stress_GPa"]},
              "model_curve": {"strain": ml_curve["strain"], "stress_GPa": ml_curve["stress_GPa"]}}
    result["bond_scan"] = {
        "bond": {"atoms": bonds[longest].tolist(), "classes": classes[bonds[longest]].tolist(),
                 "corner_distance_A": float(corner_distance(
                     0.5 * (ribbon.positions[bonds[longest, 0]] + ribbon.positions[bonds[longest, 1]])[None], corners)[0]),
                 "peak_strain": float(md_frames[peak][0])},
        "relaxed": bond_scan(relaxed, bonds[longest], evaluator),
        "peak": bond_scan(peak_frame, bonds[longest], evaluator)}
    write_json(args.out / "cross_evaluate.json", result)
    _plot(result, args.out)
    _print(result)
    return result


def _plot(result: dict, out: Path) -> None:
    """The three figures of the module docstring."""
    md, ml = result["lammps_frames"], result["model_frames"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(result["lammps_curve"]["strain"], result["lammps_curve"]["stress_GPa"], "-", color="C0", label="LAMMPS run")
    ax.plot(result["model_curve"]["strain"], result["model_curve"]["stress_GPa"], "-", color="C1", label="SAGESnet run")
    ax.plot([r["strain"] for r in md], [r["model_stress_GPa"] for r in md], "o", color="C1", mfc="none",
            label="SAGESnet on LAMMPS frames")
    ax.plot([r["strain"] for r in ml], [r["airebo_stress_GPa"] for r in ml], "s", color="C0", mfc="none",
            label="AIREBO on SAGESnet frames")
    ax.plot([r["strain"] for r in ml], [r["airebo_relaxed_stress_GPa"] for r in ml], "x", color="C0",
            label="AIREBO, SAGESnet frames relaxed")
    ax.set(xlabel="strain", ylabel="σ_xx (GPa)", title=f"kirigami {result['pattern']} ({result['n_atoms']} atoms)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "cross_stress_strain.png", dpi=100)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, rows, title in ((axes[0], md, "LAMMPS frames"), (axes[1], ml, "SAGESnet frames")):
        for k, name in enumerate(CLASSES):
            ax.plot([r["strain"] for r in rows], [r["forces"][f"rmse_{name}"] for r in rows], "o-", color=f"C{k}",
                    label=name)
        ax.set(xlabel="strain", title=title)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("force RMSE, model − AIREBO (eV/Å)")
    fig.tight_layout()
    save_figure(fig, out / "cross_force_rmse.png", dpi=100)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for k, where in enumerate(("relaxed", "peak")):
        scan = result["bond_scan"][where]
        for engine, style in (("airebo", "-"), ("model", "--")):
            axes[0].plot(scan["length_A"], scan[f"{engine}_energy_eV"], style, color=f"C{k}", label=f"{engine}, {where}")
            axes[1].plot(scan["length_A"], scan[f"{engine}_bond_force_eV_A"], style, color=f"C{k}",
                         label=f"{engine}, {where}")
    axes[0].set(xlabel="bond length (Å)", ylabel="ΔE (eV)")
    axes[1].set(xlabel="bond length (Å)", ylabel="−dE/dr along the bond (eV/Å)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out / "cross_bond_scan.png", dpi=100)


def _print(result: dict) -> None:
    """One line per frame of each run, then the bond scan."""
    head = (f"{'strain':>6} {'run':>7} {'model':>7} {'AIREBO':>7} {'relaxed':>7} {'dE_rel':>6}  rmse: {'all':>5} {'bulk':>5} {'edge':>5} {'tip':>5}"
            f"  {'maxbond':>7} {'>1.7':>5} {'zstd':>5} {'axial':>5} {'incl':>5} longest@corner")
    for key, title in (("lammps_frames", "LAMMPS frames (run = LAMMPS's recorded σ)"),
                       ("model_frames", "SAGESnet frames (run = the model run's σ)")):
        print(f"{result['pattern']}: {title}\n{head}")
        for r in result[key]:
            f, g = r["forces"], r["geometry"]
            rm = [f"{f[k]:5.2f}" if f[k] is not None else "    -" for k in ("rmse_all", "rmse_bulk", "rmse_edge", "rmse_tip")]
            print(f"{r['strain']:6.3f} {r['run_stress_GPa']:7.1f} {r['model_stress_GPa']:7.1f} {r['airebo_stress_GPa']:7.1f}"
                  f" {r['airebo_relaxed_stress_GPa']:7.1f} {r['airebo_relaxation_eV_atom']:6.3f}"
                  f"  rmse: {' '.join(rm)}  {g['max_bond_A']:7.3f} {g['bonds_over_1.7_A']:5.3f} {g['z_std_A']:5.2f} "
                  f"{g['bulk_axial_bond_A']:5.3f} {g['bulk_inclined_bond_A']:5.3f} {g['longest_bonds'][0]['corner_distance_A']:.1f}Å", flush=True)
    for where in ("relaxed", "peak"):
        scan = result["bond_scan"][where]
        print(f"bond scan ({where}, bond {scan['atoms']}, {scan['length0_A']:.3f} Å): length, ΔE model / AIREBO (eV), "
              "bond force model / AIREBO (eV/Å)")
        for r, em, ea, fm, fa in zip(scan["length_A"], scan["model_energy_eV"], scan["airebo_energy_eV"],
                                     scan["model_bond_force_eV_A"], scan["airebo_bond_force_eV_A"]):
            print(f"  {r:.2f}  {em:7.3f} {ea:7.3f}  {fm:7.2f} {fa:7.2f}")


if __name__ == "__main__":
    main()
