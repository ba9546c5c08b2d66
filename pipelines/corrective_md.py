"""Corrective MD data: LAMMPS/AIREBO dynamics started from the model's own kirigami tension frames.

``python -m sagesnet_tf.pipelines.corrective_md --out DIR --patterns P [P ...] [--model M]
[--strains 0.025 0.05 ...] [--steps 200] [--rattle 0.0] [--prefix corrective] [--threads 1] [--seed 0]``

Why (issue 20): ``benchmarks.cross_evaluate`` (docs/BENCHMARKS.md, session 17) found the learned local
energy right on the frames MD visits but soft on distortions its own tension runs reach: the quick
kirigami ribbon takes up strain by rotating its bonds (angles 82–150° at strain 0.1 against MD's
106–142°) at 0.2–0.6 eV/atom above AIREBO's relaxed state, and plateaus at half of MD's stress. MD never
visits those configurations, so a fit to MD alone never sees what they cost. This is the data that
shows it (the DAgger idea: label the states the learned policy reaches):

1. the quick kirigami protocol (:data:`~sagesnet_tf.kirigami_tension.QUICK`) runs each pattern's
   ribbon under the model (plain ``simulate`` with its defaults, a frame every 0.005 of strain);
2. at each of ``strains`` reached, the frame nearest to it (positions, velocities, box) starts a
   LAMMPS/AIREBO NVT run at the protocol's temperature in that box, 1-fs steps, a record every 2 fs
   (the model's Δ), ``steps`` steps: its first windows hold AIREBO's forces and virial at the
   model's distorted configuration, the later ones AIREBO's relaxation away from it;
3. each run is written as a dataset ``DIR/PREFIX_PATTERN_STRAIN`` (``--prefix``, default
   ``corrective``; TFRecords and the outputs of ``sagesnet-tf generate md``), ready for the local
   energy's fit (``configs/graphene_energy.yaml``).

A window of the fit is one Δ: with the default 200 steps only the first of a run's 100 windows holds
the model's distorted frame and the rest AIREBO's relaxation (and the heat it releases), so the fit
sees the distortion in ~1 % of the data. ``--steps 10`` keeps every window within 10 fs of it
(``make graphene-corrective-short-data``). ``--rattle σ`` (Å) first displaces every atom by a
Gaussian of that width per component (seeded by ``--seed``, the pattern and the strain): bonds
compressed to 1.1–1.3 Å and bent angles that neither MD nor the model's runs reach, so that the fit
sees AIREBO's repulsion there.

A pattern whose model run stops before a strain has no dataset at that strain. Deterministic for a
model, pattern list and seed (the model's thermostat and LAMMPS's Nosé–Hoover chain start from the
frame's velocities). Use patterns outside every benchmark's held-out set.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from sagesnet_tf.io.extxyz import read_extxyz_frames
from sagesnet_tf.kirigami_tension import QUICK, model_periodic_y
from sagesnet_tf.md.engine import AIREBO_LJ_CUTOFF_A
from sagesnet_tf.md.protocols import NVT
from sagesnet_tf.md.run import run_md

#: Strains at which a model frame starts an AIREBO run (the plateau the cross-evaluation found lies at 0.05–0.2).
DEFAULT_STRAINS = (0.025, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25)
#: Model steps between the model run's frames (0.005 of strain at the quick protocol's 0.05 ps⁻¹ and Δ = 2 fs).
FRAME_EVERY = 50
#: LAMMPS timestep (fs) and record stride (steps): a record every 2 fs, the shipped model's Δ.
DT_FS, RECORD_EVERY = 1.0, 2


def dataset_name(pattern: str, strain: float, prefix: str = "corrective") -> str:
    """``PREFIX_PATTERN_STRAIN`` (strain with three decimals)."""
    return f"{prefix}_{pattern}_{strain:.3f}"


def rattled(frame, sigma_a: float, seed: int, pattern: str, strain: float):
    """A copy of ``frame`` with every atom displaced by a Gaussian of ``sigma_a`` Å per component
    (0: the frame itself), seeded by ``seed``, ``pattern`` and ``strain``."""
    if sigma_a <= 0:
        return frame
    rng = np.random.default_rng([seed, int(pattern, 2), int(round(strain * 1e4))])
    out = frame.copy()
    out.positions = frame.positions + rng.normal(0.0, sigma_a, frame.positions.shape)
    return out


def model_frames(pattern: str, model: str | None, work: Path, seed: int, max_strain: float) -> list:
    """The model's quick-protocol frames of ``pattern`` to ``max_strain`` (list of Atoms, ``info["strain"]``)."""
    ribbon = QUICK.ribbon(pattern, periodic_y=model_periodic_y(model))
    QUICK.run_model(ribbon, work, model, max_strain=max_strain, every=FRAME_EVERY, seed=seed, overwrite=True,
                    progress=False)
    return read_extxyz_frames(work / "trajectory.extxyz")


def with_vacuum(frame):
    """``frame``, or, where an open axis's vacuum is thinner than AIREBO's cutoff (which
    :func:`~sagesnet_tf.md.engine.check_input` refuses), a copy with that axis lengthened to the
    atoms' extent plus twice the cutoff (atoms centred): the model's runs can crumple a ribbon further
    out of plane than the box it started in allows."""
    lengths = np.diag(frame.cell).astype(float)
    extent = np.ptp(frame.positions, axis=0)
    short = ~np.asarray(frame.pbc, bool) & (lengths - extent < AIREBO_LJ_CUTOFF_A)
    if not short.any():
        return frame
    out = frame.copy()
    wanted = np.where(short, extent + 2 * AIREBO_LJ_CUTOFF_A, lengths)
    out.cell = np.diag(wanted)
    centre = 0.5 * (frame.positions.min(0) + frame.positions.max(0))
    out.positions = frame.positions + np.where(short, 0.5 * wanted - centre, 0.0)
    return out


def corrective_run(frame, out: Path, steps: int, threads: int | None) -> None:
    """AIREBO NVT from ``frame`` (its positions, velocities and box; open axes lengthened by
    :func:`with_vacuum` where needed) into dataset ``out``."""
    from sagesnet_tf.pipelines.writer import write_md_run  # TensorFlow: imported only when needed

    out.mkdir(parents=True, exist_ok=True)
    frame = with_vacuum(frame)
    result = run_md(frame, NVT(temperature_K=QUICK.temperature_K, steps=steps), str(out), dt_fs=DT_FS,
                    record_every=RECORD_EVERY, threads=threads, keep_velocities=True, progress=False)
    write_md_run(result, out)


def main(argv=None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="directory of the datasets (e.g. data/graphene)")
    parser.add_argument("--patterns", required=True, nargs="+", help="15-digit cut patterns (none held out)")
    parser.add_argument("--model", default=None, help="exported_models/NAME[/VERSION] (default: the shipped one)")
    parser.add_argument("--strains", type=float, nargs="+", default=list(DEFAULT_STRAINS))
    parser.add_argument("--steps", type=int, default=200, help="AIREBO steps (1 fs) from each frame")
    parser.add_argument("--rattle", type=float, default=0.0,
                        help="Å, Gaussian displacement of every atom per component before the AIREBO run (0: none)")
    parser.add_argument("--prefix", default="corrective", help="dataset names PREFIX_PATTERN_STRAIN")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0, help="seed of the model runs' thermostat and of --rattle")
    args = parser.parse_args(argv)
    written = []
    for pattern in args.patterns:
        with tempfile.TemporaryDirectory(prefix="corrective_") as tmp:
            frames = model_frames(pattern, args.model, Path(tmp) / "model", args.seed,
                                  max_strain=min(QUICK.max_strain, max(args.strains) + 0.01))
            strains = np.array([f.info["strain"] for f in frames])
            for target in args.strains:
                if strains.max() < target:
                    print(f"{pattern}: the model's run stopped at strain {strains.max():.3f} < {target}", flush=True)
                    continue
                frame = frames[int(np.argmin(np.abs(strains - target)))]
                out = args.out / dataset_name(pattern, target, args.prefix)
                shutil.rmtree(out, ignore_errors=True)
                corrective_run(rattled(frame, args.rattle, args.seed, pattern, target), out, args.steps, args.threads)
                written.append(out.name)
                print(f"{out.name}: from the model's frame at strain {frame.info['strain']:.4f}", flush=True)
    return written


if __name__ == "__main__":
    main()
