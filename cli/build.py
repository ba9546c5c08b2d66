"""``sagesnet-tf build``: make structures (graphene, ribbon, kirigami, cnt, molecule).

Each subcommand builds with :mod:`sagesnet_tf.structures`, writes ``--out`` atomically in the
format its name selects (:func:`sagesnet_tf.io.write_structure`) and prints one summary line.
"""

from __future__ import annotations

from collections import Counter
from typing import Callable

import click
import numpy as np

from sagesnet_tf import structures
from sagesnet_tf.atoms import Atoms
from sagesnet_tf.io import FORMATS, write_structure


@click.group()
def build() -> None:
    """Build a structure and write it to a file (extxyz, POSCAR, CIF or LAMMPS data by extension)."""


def _output_options(func: Callable) -> Callable:
    func = click.option("--preview", type=click.Path(dir_okay=False), default=None,
                        help="Also write a PNG picture of the structure (projected on the plane of its "
                             "two longest cell vectors).")(func)
    func = click.option("--format", "fmt", type=click.Choice(list(FORMATS)), default=None,
                        help="File format; default: from the --out file name.")(func)
    return click.option("--out", required=True, type=click.Path(dir_okay=False),
                        help="Output file (.extxyz/.xyz, POSCAR/.vasp, .cif, .data/.lmp).")(func)


def _a_cc_option(func: Callable) -> Callable:
    return click.option("--a-cc", type=float, default=structures.A_CC, show_default=True,
                        help=f"C–C bond length, Å ({structures.A_CC_RANGE_A[0]}–{structures.A_CC_RANGE_A[1]}).")(func)


def _orientation_option(func: Callable) -> Callable:
    return click.option("--orientation", type=click.Choice(["armchair", "zigzag"]), default="armchair",
                        show_default=True, help="Edge direction that runs along x.")(func)


def _periodic_y_option(func: Callable) -> Callable:
    return click.option("--periodic-y", is_flag=True,
                        help="Mark y periodic too: a row of ribbons --vacuum-y apart (≥ the AIREBO cutoff, so the "
                             "same physical ribbon) for models whose grid is periodic in y, like the default "
                             "graphene model.")(func)


def _write(atoms: Atoms, out: str, fmt: str | None, preview: str | None) -> None:
    """Write ``atoms`` (and the ``preview`` PNG) and print one line: file, atoms, formula, cell, pbc."""
    write_structure(atoms, out, fmt)
    if preview:
        _write_preview(atoms, preview)
    counts = Counter(atoms.symbols.tolist())
    formula = "".join(f"{e}{counts[e]}" for e in sorted(counts))
    lengths = " × ".join(f"{v:.2f}" for v in (atoms.cell ** 2).sum(axis=1) ** 0.5)
    pbc = " ".join("T" if p else "F" for p in atoms.pbc)
    extra = f", {atoms.info['n_removed']} atoms cut" if "n_removed" in atoms.info else ""
    click.echo(f"wrote {out}: {len(atoms)} atoms ({formula}{extra}), cell {lengths} Å, pbc {pbc}")


def _write_preview(atoms: Atoms, path: str) -> None:
    """PNG of the atoms projected on the plane of the two longest cell axes, with the cell outline."""
    from sagesnet_tf.analysis.plots import save_figure  # selects the Agg backend first

    import matplotlib.pyplot as plt

    lengths = np.linalg.norm(atoms.cell, axis=1)
    u, v = sorted(np.argsort(lengths)[-2:])
    fig, ax = plt.subplots(figsize=(6, 6 * min(2.0, max(0.3, lengths[v] / lengths[u]))))
    corners = np.array([[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]) @ atoms.cell[[u, v]][:, [u, v]]
    ax.plot(corners[:, 0], corners[:, 1], color="0.6", lw=0.8, label="cell")
    points_per_a = 0.8 * 6 * 72 / lengths[u]  # the axes take about 80 % of the 6-inch width
    for element, colour, diameter_a in (("C", "0.2", 0.7), ("H", "tab:cyan", 0.5)):
        mask = atoms.symbols == element
        if mask.any():
            ax.scatter(atoms.positions[mask, u], atoms.positions[mask, v], s=(diameter_a * points_per_a) ** 2,
                       color=colour,
                       label=f"{element} ({mask.sum()})", linewidths=0)
    ax.set_aspect("equal")
    ax.set_xlabel(f"{'xyz'[u]} (Å)")
    ax.set_ylabel(f"{'xyz'[v]} (Å)")
    ax.set_title(f"{atoms.info.get('structure', 'structure')}: {len(atoms)} atoms", fontsize=10)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


@build.command()
@click.option("--nx", type=click.IntRange(min=1), required=True, help="4-atom cells along x.")
@click.option("--ny", type=click.IntRange(min=1), required=True, help="4-atom cells along y.")
@_orientation_option
@_a_cc_option
@click.option("--vacuum", type=float, default=20.0, show_default=True, help="Cell height along z, Å.")
@_output_options
def graphene(nx: int, ny: int, orientation: str, a_cc: float, vacuum: float, out: str, fmt: str | None,
             preview: str | None) -> None:
    """Periodic graphene sheet of NX × NY orthorhombic cells (4·NX·NY atoms), periodic in x and y."""
    _write(structures.graphene_sheet(nx, ny, orientation, a_cc, vacuum), out, fmt, preview)


@build.command()
@click.option("--nx", type=click.IntRange(min=1), required=True, help="4-atom cells along x (periodic).")
@click.option("--ny", type=click.IntRange(min=1), required=True, help="4-atom cells across the width.")
@_orientation_option
@_a_cc_option
@click.option("--vacuum-y", type=float, default=20.0, show_default=True, help="Vacuum across the width, Å.")
@click.option("--vacuum-z", type=float, default=20.0, show_default=True, help="Cell height along z, Å.")
@_periodic_y_option
@_output_options
def ribbon(nx: int, ny: int, orientation: str, a_cc: float, vacuum_y: float, vacuum_z: float, periodic_y: bool,
           out: str, fmt: str | None, preview: str | None) -> None:
    """Graphene ribbon periodic along x only, vacuum in y and z."""
    _write(structures.ribbon(nx, ny, orientation, a_cc, vacuum_y, vacuum_z, periodic_y), out, fmt, preview)


@build.command()
@click.option("--pattern", required=True,
              help="15 digits 0/1; digit k cuts block column k//5 (x), row k%5 (y).")
@click.option("--nx", type=click.IntRange(min=1), default=17, show_default=True, help="4-atom cells along x (loading direction).")
@click.option("--ny", type=click.IntRange(min=1), default=40, show_default=True, help="4-atom cells along y.")
@click.option("--cut", type=click.Choice(["orthogonal", "parallel"]), default="orthogonal", show_default=True,
              help="Cut across (orthogonal) or along (parallel) the loading direction x.")
@_a_cc_option
@click.option("--vacuum-y", type=float, default=20.0, show_default=True, help="Vacuum across the width, Å.")
@click.option("--vacuum-z", type=float, default=20.0, show_default=True, help="Cell height along z, Å.")
@_periodic_y_option
@_output_options
def kirigami(pattern: str, nx: int, ny: int, cut: str, a_cc: float, vacuum_y: float, vacuum_z: float,
             periodic_y: bool, out: str, fmt: str | None, preview: str | None) -> None:
    """Hanakata-style graphene kirigami ribbon (default 17 × 40 cells, 2,720 atoms uncut)."""
    _write(structures.kirigami(pattern, nx, ny, cut, a_cc, vacuum_y, vacuum_z, periodic_y), out, fmt, preview)


@build.command()
@click.option("--n", "n", type=int, required=True, help="Chiral index n (≥ 1).")
@click.option("--m", "m", type=int, required=True, help="Chiral index m (0 ≤ m ≤ n).")
@click.option("--length-cells", type=click.IntRange(min=1), default=1, show_default=True, help="Translational cells along z.")
@_a_cc_option
@click.option("--vacuum", type=float, default=20.0, show_default=True,
              help="Vacuum across the tube (x and y), Å, both sides together.")
@_output_options
def cnt(n: int, m: int, length_cells: int, a_cc: float, vacuum: float, out: str, fmt: str | None,
        preview: str | None) -> None:
    """(N, M) single-wall carbon nanotube along z, periodic along z."""
    _write(structures.nanotube(n, m, length_cells, a_cc, vacuum), out, fmt, preview)


@build.command()
@click.argument("name")
@click.option("--vacuum", type=float, default=structures.MOLECULE_VACUUM_A, show_default=True,
              help="Vacuum on each side of the molecule, Å.")
@_output_options
def molecule(name: str, vacuum: float, out: str, fmt: str | None, preview: str | None) -> None:
    """Small hydrocarbon NAME: benzene, methane, ethane, propane, butane or alkane-N (C_N H_2N+2)."""
    _write(structures.molecule(name, vacuum), out, fmt, preview)
