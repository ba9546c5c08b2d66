"""``sagesnet-tf build``: make structures (graphene, ribbon, kirigami, cnt, molecule)."""

import click


@click.group()
def build() -> None:
    """Build a structure and write it to a file (extxyz, POSCAR, CIF or LAMMPS data by extension)."""
