"""``sagesnet-tf export``: a trained model as a SavedModel in TF Serving layout.

    sagesnet-tf export --run RUN --out exported_models/NAME [--version V]
"""

from __future__ import annotations

import click


@click.command()
@click.option("--run", "run", required=True, type=click.Path(exists=True),
              help="Training run directory (its newest .keras model) or a .keras file.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="exported_models/NAME.")
@click.option("--version", type=int, default=None, help="Version directory (default: next integer).")
def export(run: str, out: str, version: int | None) -> None:
    """Export a SagesnetModel to OUT/VERSION (saved_model.pb, variables/, assets/)."""
    from sagesnet_tf.export import export_model

    target = export_model(run, out, version)
    click.echo(f"exported {target}")
