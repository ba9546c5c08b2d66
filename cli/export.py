"""``sagesnet-tf export``: a trained model as a SavedModel in TF Serving layout.

    sagesnet-tf export --run RUN|FILE.keras --out exported_models/NAME [--version V]
    sagesnet-tf export --from-savedmodel exported_models/NAME/V --out DIR [--version V]
"""

from __future__ import annotations

import click

from sagesnet_tf.errors import SagesnetError


@click.command()
@click.option("--run", "run", type=click.Path(exists=True),
              help="Training run directory (its model.keras, or the last checkpoint of a cellular-automaton run) "
                   "or a .keras file.")
@click.option("--from-savedmodel", "saved", type=click.Path(exists=True, file_okay=False),
              help="Re-export an exported atom model (NAME/VERSION) with this version's signatures and checks: "
                   "the model is rebuilt from its metadata and every variable copied.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="exported_models/NAME.")
@click.option("--version", type=int, default=None, help="Version directory (default: next integer).")
def export(run: str | None, saved: str | None, out: str, version: int | None) -> None:
    """Export a trained model to OUT/VERSION (saved_model.pb, variables/, assets/)."""
    if (run is None) == (saved is None):
        raise SagesnetError("export: pass exactly one of --run RUN and --from-savedmodel DIR")
    from sagesnet_tf.export import export_model, reexport_savedmodel
    from sagesnet_tf.savedmodel import read_metadata

    target = reexport_savedmodel(saved, out, version) if saved else export_model(run, out, version)
    meta = read_metadata(target)
    source = saved or meta["training_run"].get("model_file") or meta["training_run"].get("checkpoint") or run
    click.echo(f"exported {source} ({meta.get('kind', 'md')} model) -> {target}")
