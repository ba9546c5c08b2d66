"""Run the SAGESnet-vs-LAMMPS benchmarks and write DIR/results.json, DIR/results.md and PNGs.

    python -m benchmarks.run_benchmarks --suite {kirigami,nvt,speed,all} [--quick] [--kirigami-patterns N] \
        --model exported_models/sagesnet_graphene --out DIR [--threads 2] [--lammps-reference PAST_DIR]

See docs/BENCHMARKS.md for what each suite runs and measures.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.savedmodel import resolve_model_dir

from benchmarks import graphene_nvt, kirigami_tension, speed
from benchmarks.report import write_report

SUITES = {"kirigami": kirigami_tension.run, "nvt": graphene_nvt.run, "speed": speed.run}


def run_benchmarks(suites: list[str], model: str | None, out: str | Path, quick: bool = False, threads: int = 2,
                   progress: bool = True, kirigami_patterns: int | None = None,
                   lammps_reference: str | Path | None = None) -> dict:
    """Run ``suites`` (names of :data:`SUITES`) in this process; returns the results.json document.
    ``kirigami_patterns``: held-out patterns of the kirigami suite (its default when None).
    ``lammps_reference``: a past kirigami suite run's directory whose LAMMPS runs are reused (the
    kirigami suite alone)."""
    unknown = sorted(set(suites) - set(SUITES))
    if unknown:
        raise SagesnetError(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)} or all")
    if threads < 1:
        raise SagesnetError(f"--threads must be >= 1, got {threads}")
    n_patterns = len(kirigami_tension.HELD_OUT_PATTERNS + kirigami_tension.RANDOM_HELD_OUT_PATTERNS)
    if kirigami_patterns is not None and not 1 <= kirigami_patterns <= n_patterns:
        raise SagesnetError(f"--kirigami-patterns must be 1-{n_patterns}, got {kirigami_patterns}")
    if lammps_reference is not None:
        if list(suites) != ["kirigami"]:
            raise SagesnetError("--lammps-reference applies to --suite kirigami only")
        if not Path(lammps_reference).is_dir():
            raise SagesnetError(f"--lammps-reference {lammps_reference} is not a directory")
    model_dir = str(resolve_model_dir(model))
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = None if lammps_reference is None else Path(lammps_reference)
    options = {"kirigami": {"patterns": kirigami_patterns, "lammps_reference": reference}}
    results = [SUITES[name](model_dir, out_dir, quick=quick, threads=threads, progress=progress, **options.get(name, {}))
               for name in suites]
    return write_report(out_dir, results, {"model": model_dir, "quick": quick, "threads": threads,
                                           "suites": list(suites), "kirigami_patterns": kirigami_patterns,
                                           "lammps_reference": None if reference is None else str(reference)})


@click.command()
@click.option("--suite", type=click.Choice([*SUITES, "all"]), default="all", show_default=True)
@click.option("--quick", is_flag=True, help="Small systems and fast strain rate (minutes, not hours).")
@click.option("--model", default=None, help="exported_models/NAME[/VERSION] (default: sagesnet_graphene).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
@click.option("--threads", default=2, show_default=True, help="LAMMPS OpenMP threads.")
@click.option("--kirigami-patterns", type=int, default=None,
              help="Held-out kirigami patterns to run: the suite's 3, then 5 drawn at random (1-8; default 3, "
                   "1 with --quick).")
@click.option("--lammps-reference", type=click.Path(file_okay=False), default=None,
              help="--suite kirigami: reuse the LAMMPS runs of this past suite run's directory "
                   "(DIR/kirigami_<pattern>/lammps/, refused if its protocol or ribbon differ); patterns without "
                   "one run LAMMPS. Their speed rows then have no ratio (not measured side by side).")
def main(suite: str, quick: bool, model: str | None, out: str, threads: int, kirigami_patterns: int | None,
         lammps_reference: str | None) -> None:
    """Benchmark SAGESnet against LAMMPS/AIREBO on the same systems."""
    try:
        run_benchmarks(list(SUITES) if suite == "all" else [suite], model, out, quick, threads,
                       kirigami_patterns=kirigami_patterns, lammps_reference=lammps_reference)
    except SagesnetError as err:
        click.echo(f"Error: {err}", err=True)
        sys.exit(2)
    click.echo(f"wrote {Path(out) / 'results.json'} and {Path(out) / 'results.md'}")


if __name__ == "__main__":
    main()
