"""``sagesnet-tf generate md``: run LAMMPS/AIREBO on a structure and write a dataset.

Writes into ``--out DIR`` (each file atomically): the TFRecord dataset (shards + metadata.json),
``manifest.json``, ``thermo.csv`` + ``thermo.png``, ``stress_strain.csv`` + ``stress_strain.png``
(tension), ``log.lammps`` and, with ``--dump``, ``dump.lammpstrj``. See docs/MD_PROTOCOLS.md.
"""

from __future__ import annotations

import glob
import os

import click

from sagesnet_tf.cli.options import TEMPERATURE_K, FiniteFloat
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.md.protocols import PROTOCOLS, TENSION_AXES, make_protocol


def _prepare_out(out: str, overwrite: bool) -> None:
    """Create ``out``; refuse a non-empty one unless ``overwrite`` (then clear our old outputs)."""
    from sagesnet_tf.md.run import OUTPUT_FILES

    if os.path.exists(out) and not os.path.isdir(out):
        raise SagesnetError(f"--out {out} is a file; give a directory")
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite and not os.path.isfile(os.path.join(out, "manifest.json")):  # written last
            raise SagesnetError(f"--out {out} holds an interrupted `generate md` run (no manifest.json); MD runs "
                                "cannot be resumed: rerun the same command with --overwrite")
        if not overwrite:
            raise SagesnetError(f"--out {out} is not empty; pass --overwrite or choose another directory")
        for name in OUTPUT_FILES:
            if os.path.isfile(os.path.join(out, name)):
                os.remove(os.path.join(out, name))
        for stale in glob.glob(os.path.join(out, "dump.lammpstrj.tmp-*")):  # the partial dump of a killed run
            os.remove(stale)
    os.makedirs(out, exist_ok=True)


@click.command("md")
@click.option("--structure", "structure", required=True, type=click.Path(dir_okay=False),
              help="Input structure (extxyz, POSCAR, CIF or LAMMPS data).")
@click.option("--protocol", type=click.Choice(PROTOCOLS), required=True, help="MD protocol.")
@click.option("--temperature", type=TEMPERATURE_K, required=True, help="Thermostat target / initial temperature, K.")
@click.option("--strain-rate", type=FiniteFloat(unit="1/ps"), default=None, help="tension: engineering strain rate, 1/ps [0.01].")
@click.option("--axis", type=click.Choice(TENSION_AXES), default=None, help="tension: loading axis [x].")
@click.option("--max-strain", type=FiniteFloat(min=0.0, min_open=True), default=None, help="tension: final strain [0.8].")
@click.option("--relax-ps", type=FiniteFloat(min=0.0, unit="ps"), default=None, help="tension: relaxation before stretching, ps [10].")
@click.option("--no-early-stop", is_flag=True,
              help="tension: run to --max-strain even after failure (default: stop 0.05 strain past the "
                   "peak once stress is 30 % below it).")
@click.option("--pressure", type=FiniteFloat(unit="bar"), default=None, help="npt: target pressure, bar [0].")
@click.option("--release", default=None, help="npt: stress components to release, comma-separated "
                                              "(x,y,z,xy,xz,yz) [x].")
@click.option("--dt-fs", type=FiniteFloat(min=0.0, min_open=True, unit="fs"), default=1.0, show_default=True, help="MD timestep, fs.")
@click.option("--record-every", type=click.IntRange(min=1), default=100, show_default=True, help="Record stride, steps.")
@click.option("--burst-frames", type=click.IntRange(min=1), default=None,
              help="Record sparsely: keep only this many consecutive records (--record-every apart) at the "
                   "start of every --burst-every steps (training windows of up to this many frames).")
@click.option("--burst-every", type=click.IntRange(min=1), default=None, help="Steps between the starts of recorded bursts.")
@click.option("--steps", type=click.IntRange(1, 2**31 - 1), default=None,
              help="MD steps (required except for tension, where it caps relax + stretch).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="OpenMP threads [all cores].")
@click.option("--seed", type=click.IntRange(1, 2**31 - 1), default=12345, show_default=True, help="Velocity seed.")
@click.option("--dump", is_flag=True, help="Also write a LAMMPS text dump (dump.lammpstrj) at the record stride.")
@click.option("--overwrite", is_flag=True, help="Replace the outputs in a non-empty --out.")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output directory.")
def md(structure: str, protocol: str, temperature: float, strain_rate: float | None, axis: str | None,
       max_strain: float | None, relax_ps: float | None, no_early_stop: bool, pressure: float | None,
       release: str | None, dt_fs: float, record_every: int, burst_frames: int | None, burst_every: int | None,
       steps: int | None, threads: int | None,
       seed: int, dump: bool, overwrite: bool, out: str) -> None:
    """Run LAMMPS/AIREBO MD on a structure and write a TFRecord dataset, thermo and plots."""
    from sagesnet_tf.io.structure_files import read_structure
    from sagesnet_tf.md.engine import check_input
    from sagesnet_tf.md.recorder import check_burst
    from sagesnet_tf.md.run import run_md

    chosen = make_protocol(
        protocol, temperature_K=temperature, steps=steps, strain_rate_per_ps=strain_rate, axis=axis,
        max_strain=max_strain, relax_ps=relax_ps, early_stop=False if no_early_stop else None,
        pressure_bar=pressure, release=None if release is None else tuple(c.strip() for c in release.split(",")))
    chosen.phases(dt_fs)  # check the options before reading files or starting LAMMPS
    if (burst_frames is None) != (burst_every is None):
        raise SagesnetError("give --burst-frames and --burst-every together (or neither)")
    burst = check_burst(None if burst_frames is None else (burst_frames, burst_every), record_every)
    atoms = read_structure(structure)
    try:
        check_input(atoms)  # what LAMMPS would refuse, before --out is touched
    except SagesnetError as err:
        raise SagesnetError(f"--structure {structure}: {err}") from None
    _prepare_out(out, overwrite)
    result = run_md(atoms, chosen, out, dt_fs=dt_fs, record_every=record_every, threads=threads, seed=seed,
                    dump=dump, burst=burst)
    from sagesnet_tf.pipelines.writer import write_md_run  # TensorFlow: imported only when needed

    write_md_run(result, out)
    m = result.manifest
    click.echo(f"{result.trajectory.n_frames} frames of {result.trajectory.n_atoms} atoms, "
               f"{m['phases'][-1]['end_step']} steps in {m['timings']['run_s']:.1f} s: "
               f"LAMMPS speed {result.speed_atom_steps_per_s:.3g} atom-steps/s ({m['engine']['threads']} threads)")
    if result.summary is not None:
        s = result.summary
        parts = [f"Young's modulus {s.youngs_modulus_GPa / 1000:.3f} TPa" if s.youngs_modulus_GPa else
                 "Young's modulus: too few points at small strain"]
        if s.yield_strain is not None:
            parts.append(f"yield strain {s.yield_strain:.3f}, stress {s.yield_stress_GPa:.1f} GPa")
        if s.local_max_yield_strain is not None:
            parts.append(f"first local max at strain {s.local_max_yield_strain:.3f} "
                         f"({s.local_max_yield_stress_GPa:.1f} GPa)")
        click.echo("; ".join(parts) + (" (stopped early after failure)" if m["stopped_early"] else ""))
    click.echo(f"wrote {out}")
