"""``sagesnet-tf generate``: make training data (LAMMPS/AIREBO MD, cellular automata)."""

import click


@click.group()
def generate() -> None:
    """Generate datasets: molecular dynamics with LAMMPS/AIREBO, or cellular automata."""
