"""Static uniaxial tension of a periodic graphene sheet: the model's stress against LAMMPS/AIREBO's.

``python -m benchmarks.static_tension --out DIR [--model M] [--pattern P] [--max-strain 0.3] [--strain-step 0.025]``:

The 96-atom periodic 6 × 4 sheet (armchair along x), or with ``--pattern`` the quick protocol's 7 × 6
kirigami ribbon of that cut pattern (as built, y periodic), is strained affinely along x (no
relaxation, atoms at rest) to each strain; at every strain the same positions go to LAMMPS/AIREBO (``run 0``,
its virial pressure) and to the model (:meth:`~sagesnet_tf.simulator.LearnedSimulator.stress`: for
the shipped model its learned local energy's virial). Both as sheet stress σ_xx in GPa over the
graphene thickness (−p_xx · L_z / 3.35 Å; for a ribbon the same box formula on both sides, so
compare the two columns, not their scale). It isolates the energy's bond-stretch response from the
dynamics and from the ribbon geometry: where a tension run's stress departs from LAMMPS's but this
one does not, the cause lies elsewhere (edges, cut tips, buckling).

Writes ``DIR/static_tension.json`` and ``DIR/static_tension.png``.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

from sagesnet_tf.analysis.plots import plt, save_figure
from sagesnet_tf.analysis.stress_strain import SHEET_THICKNESS_A
from sagesnet_tf.io import write_json
from sagesnet_tf.kirigami_tension import QUICK
from sagesnet_tf.savedmodel import resolve_model_dir
from sagesnet_tf.structures import graphene_sheet

from benchmarks.cross_evaluate import Evaluator

#: The sheet: orthorhombic 4-atom cells along x (load) and y.
SHEET = (6, 4)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--model", default=None, help="exported_models/NAME[/VERSION] (default: the shipped one)")
    parser.add_argument("--pattern", default=None, help="15-digit cut pattern: the quick 7x6 kirigami ribbon instead of the sheet")
    parser.add_argument("--max-strain", type=float, default=0.3)
    parser.add_argument("--strain-step", type=float, default=0.025)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sheet = graphene_sheet(*SHEET) if args.pattern is None else QUICK.ribbon(args.pattern, periodic_y=True)
    lengths = np.diag(np.asarray(sheet.cell, float))
    # both engines' stress over the box's width (y): the sheet's own, and a ribbon's on the same scale
    evaluator = Evaluator(resolve_model_dir(args.model), lengths[1], SHEET_THICKNESS_A, args.out / "log.lammps",
                          threads=1)
    strains = np.arange(0.0, args.max_strain + 1e-9, args.strain_step)
    lammps_gpa, model_gpa = [], []
    for strain in strains:
        stretched = copy.deepcopy(sheet)
        stretched.positions = np.asarray(sheet.positions, float) * [1.0 + strain, 1.0, 1.0]
        box = lengths * [1.0 + strain, 1.0, 1.0]
        stretched.cell = np.diag(box)
        lammps_gpa.append(evaluator.airebo(stretched)["stress_GPa"])
        model_gpa.append(evaluator.model(stretched)["stress_GPa"])
    result = {"sheet": list(SHEET) if args.pattern is None else None, "pattern": args.pattern, "n_atoms": len(sheet.positions), "model": args.model, "strain": strains,
              "lammps_stress_GPa": lammps_gpa, "sagesnet_stress_GPa": model_gpa}
    write_json(args.out / "static_tension.json", result)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(strains, lammps_gpa, "o-", label="LAMMPS/AIREBO")
    ax.plot(strains, model_gpa, "s--", label="SAGESnet")
    ax.set(xlabel="strain (affine, unrelaxed)", ylabel="σ_xx (GPa)", title=f"{len(sheet.positions)}-atom " + ("periodic sheet" if args.pattern is None else f"ribbon {args.pattern}"))
    ax.legend()
    fig.tight_layout()
    save_figure(fig, args.out / "static_tension.png", dpi=100)
    for strain, lmp, ml in zip(strains, lammps_gpa, model_gpa):
        print(f"strain {strain:.3f}  LAMMPS {lmp:8.2f} GPa  SAGESnet {ml:8.2f} GPa", flush=True)
    return result


if __name__ == "__main__":
    main()
