"""``sagesnet-tf evaluate``: an exported model against an MD reference (see docs/SIMULATE.md)."""

from __future__ import annotations

import json

import click

from sagesnet_tf.cli.options import FiniteFloat


@click.command()
@click.option("--model", default=None, help="exported_models/NAME[/VERSION] (default: newest exported_models/sagesnet_graphene).")
@click.option("--reference", required=True, type=click.Path(exists=True),
              help="MD dataset directory (metadata.json + shards) or a LAMMPS text dump.")
@click.option("--dt-fs", type=FiniteFloat(min=0.0, min_open=True, unit="fs"), default=1.0, show_default=True, help="MD timestep of a LAMMPS dump reference, fs.")
@click.option("--out", default=None, type=click.Path(dir_okay=False), help="Metrics JSON (a PNG is written beside it).")
def evaluate(model, reference, dt_fs, out) -> None:
    """One-step and rollout errors, baseline, temperature, bonds, RDF, stress–strain vs MD."""
    from sagesnet_tf.evaluate import evaluate as run

    click.echo(json.dumps(run(model, reference, out, dt_fs), indent=2))
