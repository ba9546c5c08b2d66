"""``sagesnet-tf simulate``: run an exported model on a structure (see docs/SIMULATE.md)."""

from __future__ import annotations

import click

from sagesnet_tf.cli.options import POSITIVE_PS, SEED, TEMPERATURE_K, FiniteFloat
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.limits import MAX_STEPS, MAX_STRAIN_RATE_PER_PS, STRAIN_RATE_LIMIT_WHY


@click.command()
@click.option("--model", default=None, help="exported_models/NAME[/VERSION] (default: newest exported_models/sagesnet_graphene).")
@click.option("--structure", "structures", required=True, multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Structure file (extxyz, POSCAR, CIF, LAMMPS data). Repeat for several: each runs in "
                   "turn into OUT/NAME (NAME = the file name without its extension).")
@click.option("--steps", type=click.IntRange(0, MAX_STEPS), default=None, help="Model steps (each Δ of the model).")
@click.option("--time-ps", type=POSITIVE_PS, default=None, help="Simulated time, ps (> 0).")
@click.option("--scale", type=click.IntRange(min=0), default=0,
              help="0 = fine grid; 1 = coarse level 0 (each step T·Δ on the coarse grid, atoms decoded from its "
                   "refined frames; the run ends at the last whole coarse step). Needs a model with a coarse level.")
@click.option("--temperature", type=TEMPERATURE_K, default=None,
              help="Target temperature, K (environment input; the NVT thermostat's target).")
@click.option("--ensemble", type=click.Choice(["nvt", "nve"]), default=None,
              help="nvt: thermostatted (the default with --temperature); nve: the learned dynamics run free "
                   "(the default without).")
@click.option("--thermostat", type=click.Choice(["langevin", "csvr", "berendsen"]), default=None,
              help="NVT thermostat: langevin (default; per degree of freedom, canonical), csvr (Bussi's stochastic "
                   "velocity rescaling, global, canonical) or berendsen (global weak coupling, not canonical).")
@click.option("--thermostat-ps", type=float, default=None,
              help="NVT thermostat time constant τ, ps (default 0.1); the velocities are updated between model "
                   "calls at least every τ (τ/10 for berendsen).")
@click.option("--seed", type=SEED, default=0, show_default=True,
              help="Seed of the initial velocities drawn at --temperature when the structure has none, and of "
                   "the thermostat's random numbers.")
@click.option("--strain-rate", type=FiniteFloat(-MAX_STRAIN_RATE_PER_PS, MAX_STRAIN_RATE_PER_PS, unit="1/ps",
                                                why=STRAIN_RATE_LIMIT_WHY), default=0.0,
              help="Engineering strain rate, 1/ps (affine tension; |rate| ≤ 1).")
@click.option("--axis", type=click.Choice(["x", "y", "z"]), default="x", help="Tension axis.")
@click.option("--max-strain", type=FiniteFloat(min=0.0, min_open=True), default=None,
              help="Stop at this engineering strain (> 0; needs a positive --strain-rate).")
@click.option("--stop-past-peak", is_flag=True,
              help="Tension: stop once the stress has fallen 30 % below its peak and the strain is 0.05 past "
                   "it (the MD tension protocol's early stop).")
@click.option("--mirror-average", is_flag=True,
              help="Average every step with the mirrored step of the structure's mirror image through the box's "
                   "mid-plane along the open axis: exactly mirror-symmetric dynamics at twice the cost (fine scale).")
@click.option("--equilibrate-ps", type=FiniteFloat(min=0.0, unit="ps"), default=None,
              help="Before the run, this many ps of dynamics at the run's temperature and ensemble with the box "
                   "held (strain rate 0), so that the structure is at rest under the model before it is stretched; "
                   "the run's outputs start from the equilibrated state, the equilibration's rows go to "
                   "equilibration.csv. Default: 2 ps with a nonzero --strain-rate, else 0 (none).")
@click.option("--every", type=click.IntRange(1, MAX_STEPS), default=10,
              help="Model steps Δ per output frame (at --scale 1 rounded down to whole coarse steps, at least one).")
@click.option("--overwrite", is_flag=True, help="Replace the contents of a non-empty --out.")
@click.option("--resume", is_flag=True,
              help="Continue the killed run in --out from its last saved frame, with the run's options and "
                   "structure given again; the outputs equal an uninterrupted run's. With several --structure, "
                   "finished runs are skipped and runs not begun are started.")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output directory.")
def simulate(model, structures, steps, time_ps, scale, temperature, ensemble, thermostat, thermostat_ps, seed,
             strain_rate, axis, max_strain, stop_past_peak, mirror_average, equilibrate_ps, every, overwrite, resume,
             no_progress, out) -> None:
    """Run a SAGESnet SavedModel from each --structure; writes trajectory.extxyz, thermo.csv, plots, manifest.json."""
    from pathlib import Path

    from sagesnet_tf.io import read_structure
    from sagesnet_tf.simulate import RolloutDiverged, run_status, simulate as run

    names = [Path(s).stem for s in structures]
    if len(set(names)) != len(names):
        raise SagesnetError("simulate: several --structure files share a name; their outputs would collide in "
                            "OUT/NAME, rename them")
    atoms = [read_structure(s) for s in structures]  # every file is checked before any run starts
    diverged = []
    for name, structure in zip(names, atoms):
        target = out if len(atoms) == 1 else str(Path(out) / name)
        status = run_status(target) if resume and len(atoms) > 1 else None
        if status not in (None, "running"):
            click.echo(f"simulate {name}: already finished ({status}), skipped", err=True)
            continue
        fresh = resume and len(atoms) > 1 and status is None  # --resume of several: one not begun starts anew
        try:
            manifest = run(structure, target, model=model, steps=steps, time_ps=time_ps, temperature_K=temperature,
                           ensemble=ensemble, thermostat=thermostat, thermostat_ps=thermostat_ps, seed=seed,
                           strain_rate=strain_rate, axis=axis,
                           max_strain=max_strain, stop_past_peak=stop_past_peak, mirror_average=mirror_average,
                           equilibrate_ps=equilibrate_ps, every=every, scale=scale,
                           overwrite=overwrite or fresh, resume=resume and not fresh, progress=not no_progress)
        except RolloutDiverged as err:
            if len(atoms) == 1:
                raise
            click.echo(f"simulate {name}: {err}", err=True)
            diverged.append(name)
            continue
        click.echo(f"simulate: {manifest['steps_done']} steps, strain {round(manifest['final_strain'], 4) + 0.0:.4f}, "
                   f"{manifest['wall_s']} s -> {target}")
    if diverged:
        raise SagesnetError(f"simulate: {len(diverged)} of {len(atoms)} rollouts diverged ({', '.join(diverged)}); "
                            f"their trajectories so far are in {out}")
