"""``sagesnet-tf ca``: cellular-automaton models exported by ``sagesnet-tf export`` (see docs/SERVING.md).

    sagesnet-tf ca simulate --model DIR --board FILE --steps N --out OUT [--overwrite]
"""

from __future__ import annotations

import click


@click.group()
def ca() -> None:
    """Cellular-automaton models: roll a board out with an exported CA model."""


@ca.command("simulate")
@click.option("--model", required=True, type=click.Path(exists=True, file_okay=False),
              help="Exported CA model: exported_models/NAME[/VERSION] (from `sagesnet-tf export --run CA_RUN`).")
@click.option("--board", "board", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Board file: .npy integer array (X, Y) or (X, Y, Z), or text rows of 0/1 digits "
                   "(line = x, character = y; '#' lines skipped).")
@click.option("--steps", required=True, type=click.IntRange(min=1), help="Generations to roll out.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--overwrite", is_flag=True, help="Replace the frames of an earlier run in a non-empty --out.")
def simulate(model: str, board: str, steps: int, out: str, overwrite: bool) -> None:
    """Roll BOARD out STEPS generations; writes OUT/frames.npy (STEPS+1, X, Y, Z) uint8 (generation 0
    the input), OUT/frames.txt (boards one cell thick) and OUT/manifest.json."""
    from sagesnet_tf.ca_serving import simulate_board

    manifest = simulate_board(board, model, steps, out, overwrite=overwrite)
    click.echo(f"ca simulate: {steps} generations of a {'×'.join(map(str, manifest['shape']))} board "
               f"(alive {manifest['alive_fraction'][0]:.3f} → {manifest['alive_fraction'][-1]:.3f}), "
               f"{manifest['wall_s']} s -> {out}")
