"""``sagesnet-tf generate``: make training data (LAMMPS/AIREBO MD, cellular automata)."""

import click


@click.group()
def generate() -> None:
    """Generate datasets: molecular dynamics with LAMMPS/AIREBO, or cellular automata."""


from sagesnet_tf.cli.generate_ca import ca  # noqa: E402  (bottom import: avoids an import cycle)

generate.add_command(ca)

from sagesnet_tf.cli.generate_md import md  # noqa: E402  (bottom import: avoids an import cycle)

generate.add_command(md)
