"""``sagesnet-tf screen``: the kirigami tension protocol over many cut patterns (see docs/SCREEN.md)."""

from __future__ import annotations

import click

from sagesnet_tf.cli.options import SEED, FiniteFloat
from sagesnet_tf.errors import SagesnetError


def set_tf_threads(threads: int | None) -> None:
    """TensorFlow's op threads (intra and inter) set to ``threads``; left as they are for None."""
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)


@click.command()
@click.option("--patterns", "patterns_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="File of 15-digit cut patterns, one a line (as `build kirigami --pattern` takes them).")
@click.option("--all", "all_patterns", is_flag=True,
              help="Every pattern without a fully cut column (29,791), in increasing binary order.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output directory (results.csv, curves/, plots); a screen there is resumed.")
@click.option("--model", default=None, help="exported_models/NAME[/VERSION] (default: newest exported_models/sagesnet_graphene).")
@click.option("--quick", is_flag=True, help="The quick protocol (7x6-cell ribbons, 0.05/ps, max strain 0.5) instead "
                                            "of the full one (17x40 cells, 0.01/ps, max strain 0.8); both at 4.2 K.")
@click.option("--max-strain", type=FiniteFloat(min=0.0, min_open=True), default=None,
              help="Stop every stretch at this strain at the latest (default: the protocol's).")
@click.option("--limit", type=click.IntRange(min=1), default=None, metavar="N",
              help="Screen only the first N patterns.")
@click.option("--verify", type=click.IntRange(min=0), default=0, show_default=True, metavar="K",
              help="Run LAMMPS (same protocol) on the top K by model yield stress and on K random other screened "
                   "patterns; writes their rows (source lammps), verify.csv and verify.json.")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the model runs (initial velocities, thermostat) and of --verify's random draw.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of TensorFlow's ops and of LAMMPS [all cores].")
@click.option("--batch", type=click.IntRange(min=1), default=None, metavar="N",
              help="Ribbons stretched together, stacked apart along z, one model call stepping them all "
                   "[32]; 1: each pattern alone through `simulate` (its run resumable mid-stretch). A model "
                   "with an atom decoder runs one at a time. A resume may change N among sizes > 1, not "
                   "switch between 1 and N > 1.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bars.")
def screen(patterns_file, all_patterns, out, model, quick, max_strain, limit, verify, seed, threads, batch,
           no_progress) -> None:
    """Stretch each kirigami pattern's ribbon with the model to yield; writes results.csv and plots."""
    from sagesnet_tf import screen as screening
    from sagesnet_tf.kirigami_tension import FULL, QUICK

    if bool(patterns_file) == all_patterns:
        raise SagesnetError("screen: give exactly one of --patterns FILE and --all")
    patterns = screening.all_patterns() if all_patterns else screening.read_patterns(patterns_file)
    patterns = patterns[:limit]
    set_tf_threads(threads)
    result = screening.screen(patterns, out, QUICK if quick else FULL, model=model, max_strain=max_strain,
                              verify=verify, seed=seed, threads=threads, progress=not no_progress,
                              batch=screening.DEFAULT_BATCH if batch is None else batch)
    click.echo(f"screen: {result['screened']} patterns -> {out}/{screening.RESULTS}")
    if result["verify"] is not None:
        v = result["verify"]
        click.echo(f"verify: {v['checked']} patterns checked with LAMMPS ({v['both_yielded']} yielded in both): "
                   f"yield-strain MAE {v['yield_strain_mae']}, yield-stress mean relative error "
                   f"{v['yield_stress_mean_relative_error']}, Spearman {v['yield_stress_spearman']}, "
                   f"top-{v['k']} overlap {v['top_k_overlap']} -> {out}/{screening.VERIFY}")
