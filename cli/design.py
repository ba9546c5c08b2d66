"""``sagesnet-tf design``: search the kirigami patterns for a target yield (see docs/SCREEN.md, "Design")."""

from __future__ import annotations

import click

from sagesnet_tf.cli.options import SEED, FiniteFloat
from sagesnet_tf.cli.screen import set_tf_threads


@click.command()
@click.option("--target-yield-strain", type=FiniteFloat(), default=None, metavar="X",
              help="Target yield strain, in (0, max strain).")
@click.option("--target-yield-stress", type=FiniteFloat(unit="GPa"), default=None, metavar="Y",
              help="Target yield stress in GPa, above 1.5 (the yield rule's threshold) and at most 140.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output directory (a screen directory: results.csv, curves/, candidates.csv, design_search.png); "
                   "a design there is resumed without evaluating a pattern again.")
@click.option("--model", default=None, help="exported_models/NAME[/VERSION] (default: newest exported_models/sagesnet_graphene).")
@click.option("--quick", is_flag=True, help="The quick protocol (7x6-cell ribbons, max strain 0.5) instead of the "
                                            "full one (17x40 cells, max strain 0.8), as screen's.")
@click.option("--max-strain", type=FiniteFloat(min=0.0, min_open=True), default=None,
              help="Stop every stretch at this strain at the latest (default: the protocol's).")
@click.option("--budget", type=click.IntRange(min=1), default=50, show_default=True, metavar="N",
              help="Model evaluations of the search; run again, it reads those already in --out instead of running "
                   "them again.")
@click.option("--candidates", type=click.IntRange(min=1), default=5, show_default=True, metavar="K",
              help="Top candidates printed (and checked with --verify).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the search's draws and of the model runs (initial velocities, thermostat).")
@click.option("--start-from", type=click.Path(exists=True, file_okay=False), default=None, metavar="SCREEN_DIR",
              help="Start from the best patterns of this screen's results.csv (same protocol, model and max "
                   "strain); its patterns are not evaluated again.")
@click.option("--verify", is_flag=True, help="Run LAMMPS (same protocol) on the top K candidates; candidates.csv "
                                             "gains their LAMMPS yields and the model's errors.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Threads of TensorFlow's ops and of LAMMPS [all cores].")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def design(target_yield_strain, target_yield_stress, out, model, quick, max_strain, budget, candidates, seed,
           start_from, verify, threads, no_progress) -> None:
    """Search the kirigami patterns for the model yield closest to a target; writes candidates.csv."""
    from sagesnet_tf import design as designing
    from sagesnet_tf.kirigami_tension import FULL, QUICK

    protocol = QUICK if quick else FULL
    designing.check_target(target_yield_strain, target_yield_stress,
                           protocol.max_strain if max_strain is None else max_strain)  # before TensorFlow loads
    set_tf_threads(threads)
    result = designing.design(out, protocol, target_yield_strain, target_yield_stress, model=model,
                              max_strain=max_strain, budget=budget, candidates=candidates, seed=seed,
                              start_from=start_from, verify=verify, threads=threads, progress=not no_progress)
    target = result["target"]
    unit = " GPa" if target["unit"] == "GPa" else ""
    click.echo(f"design: {result['evaluated']} patterns evaluated, target {target['quantity']} {target['value']:g}"
               f"{unit}; top {len(result['top'])} -> {out}/{designing.CANDIDATES}")
    click.echo("rank  pattern          yield_strain  yield_stress_GPa  distance" +
               ("  lammps_yield_strain  lammps_yield_stress_GPa" if verify else ""))
    for row in result["top"]:
        cells = [row["yield_strain"], row["yield_stress_GPa"], row["distance"]]
        line = f"{row['rank']:>4}  {row['pattern']}  " + "  ".join(_number(v, w) for v, w in zip(cells, (12, 16, 8)))
        if verify:
            line += "  " + "  ".join(_number(row[c], w) for c, w in (("lammps_yield_strain", 19),
                                                                     ("lammps_yield_stress_GPa", 23)))
        click.echo(line)


def _number(value: float | None, width: int) -> str:
    """``value`` in ``width`` columns, 4 significant digits; ``-`` for none (no yield)."""
    return f"{'-' if value is None else format(value, '.4g'):>{width}}"
