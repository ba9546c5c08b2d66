"""Strained-sheet MD data: LAMMPS/AIREBO NVT of a periodic sheet held at uniaxial strains.

``python -m sagesnet_tf.pipelines.strained_md --structure SHEET --out DIR [--strains 0.15 0.175 ...]
[--temperatures 4.2 300] [--axis x] [--steps 1000] [--seed 77] [--prefix strained] [--threads 1]``

Why (issue 20, session 19): v3's local energy was 10–23 % soft past strain 0.15 on the pristine
sheet's own tension run (``tension_4.2_0.01``, which is in its training data), and ~13 % soft at
strain 0.2 on the full-protocol kirigami ribbon: the tension runs cross the high-strain range in a few
hundred windows among ~70,000. These runs dwell there. Each strain ε of ``strains`` scales the
sheet's box and positions along ``axis`` by 1 + ε (affine, from the structure as given: the
sublattices relax in the run), and each temperature of ``temperatures`` runs NVT in that fixed box
from Maxwell–Boltzmann velocities (``seed``), 1-fs steps, a record every 2 fs (the model's Δ),
``steps`` steps. Every run is a dataset ``DIR/PREFIX_AXISε_T`` (e.g. ``strained_x0.25_4.2``, the
numbers as given on the command line) with the outputs of ``sagesnet-tf generate md`` and the strained
structure it started from (``structure.extxyz``, read back from that file so that a rerun is
identical). Deterministic for a structure, strain list, temperature list and seed.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sagesnet_tf.io.extxyz import write_extxyz_frames
from sagesnet_tf.io.structure_files import read_structure
from sagesnet_tf.md.protocols import NVT
from sagesnet_tf.md.run import run_md

#: Strains of ``make graphene-strained-data`` (v3's stress fell 10–23 % short of AIREBO's from 0.15 on).
DEFAULT_STRAINS = ("0.15", "0.175", "0.2", "0.225", "0.25", "0.275", "0.3")
#: LAMMPS timestep (fs) and record stride (steps): a record every 2 fs, the shipped model's Δ.
DT_FS, RECORD_EVERY = 1.0, 2
AXES = ("x", "y")


def strained(atoms, axis: str, strain: float):
    """A copy of the periodic ``atoms`` with its box and positions scaled by 1 + ``strain`` along ``axis``."""
    a = AXES.index(axis)
    if not atoms.pbc[a]:
        raise SystemExit(f"strained_md: the structure is not periodic along {axis}; a strained sheet needs it")
    out = atoms.copy()
    out.positions[:, a] *= 1.0 + strain
    out.cell[a] *= 1.0 + strain
    return out


def strained_run(atoms, out: Path, temperature: float, steps: int, seed: int, threads: int | None) -> None:
    """AIREBO NVT of ``atoms`` (written to ``out/structure.extxyz`` and read back) into dataset ``out``."""
    from sagesnet_tf.pipelines.writer import write_md_run  # TensorFlow: imported only when needed

    out.mkdir(parents=True, exist_ok=True)
    write_extxyz_frames(out / "structure.extxyz", [atoms])
    atoms = read_structure(str(out / "structure.extxyz"))
    result = run_md(atoms, NVT(temperature_K=temperature, steps=steps), str(out), dt_fs=DT_FS,
                    record_every=RECORD_EVERY, threads=threads, seed=seed, progress=False)
    write_md_run(result, out, extra_files=("structure.extxyz",))


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--structure", required=True, help="periodic sheet (e.g. data/graphene/sheet_10x6.extxyz)")
    parser.add_argument("--out", required=True, type=Path, help="directory of the datasets (e.g. data/graphene)")
    parser.add_argument("--strains", nargs="+", default=list(DEFAULT_STRAINS), help="engineering strains (> -1)")
    parser.add_argument("--temperatures", type=float, nargs="+", default=[4.2, 300.0], help="K")
    parser.add_argument("--axis", choices=AXES, default="x")
    parser.add_argument("--steps", type=int, default=1000, help="AIREBO steps (1 fs) of each run")
    parser.add_argument("--seed", type=int, default=77, help="velocity seed of every run")
    parser.add_argument("--prefix", default="strained", help="dataset names PREFIX_AXISSTRAIN_T")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    sheet = read_structure(args.structure)
    written = []
    for text in args.strains:
        try:
            strain = float(text)
        except ValueError:
            raise SystemExit(f"strained_md: --strains {text!r} is not a number") from None
        if not strain > -1.0:
            raise SystemExit(f"strained_md: --strains {text}: a strain must be > -1")
        for temperature in args.temperatures:
            name = f"{args.prefix}_{args.axis}{text}_{temperature:g}"
            strained_run(strained(sheet, args.axis, strain), args.out / name, temperature, args.steps, args.seed,
                         args.threads)
            written.append(name)
            print(f"wrote {args.out / name}", flush=True)
    return written


if __name__ == "__main__":
    main()
