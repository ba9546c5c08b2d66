"""The kirigami tension protocol: one definition for the benchmark and ``sagesnet-tf screen``.

A Hanakata-style kirigami ribbon (:func:`~sagesnet_tf.structures.kirigami`, armchair along x) is
stretched along x at a constant engineering strain rate at 4.2 K, with the MD tension protocol's
early stop (the stress 30 % below its peak and the strain 0.05 past it), up to a maximum strain:

- :data:`FULL` (the benchmark's and the issue's protocol): half-size ribbon, 17 × 40 cells
  (~2,400–2,700 atoms), 0.01 ps⁻¹, 10 ps NPT relaxation in LAMMPS, max strain 0.8;
- :data:`QUICK`: 7 × 6 cells (~160 atoms), 0.05 ps⁻¹, 0.5 ps relaxation, max strain 0.5.

LAMMPS runs it as :class:`~sagesnet_tf.md.protocols.Tension` (1 fs steps: NPT relaxation with the
load axis released, then ``fix deform`` + ``fix nvt``); the model runs it through
:func:`~sagesnet_tf.simulate.simulate` with its defaults (NVT Langevin at the temperature, the
default equilibration before stretching) at the same rate and early stop, or, many ribbons of one
protocol at once, through :class:`~sagesnet_tf.batched_tension.BatchedTension` (``screen --batch``).
When the model's grid is periodic along y, both get the ribbon marked periodic along y
(:func:`model_periodic_y`).
"""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np

from sagesnet_tf.atoms import Atoms
from sagesnet_tf.md.protocols import Tension
from sagesnet_tf.md.run import MDResult, run_md
from sagesnet_tf.savedmodel import read_metadata, resolve_model_dir
from sagesnet_tf.simulate import simulate
from sagesnet_tf.structures import kirigami

#: LAMMPS timestep of the protocol, fs.
DT_FS = 1.0


@dataclasses.dataclass(frozen=True)
class KirigamiTension:
    """One version of the protocol.

    Attributes:
        name: ``"full"`` or ``"quick"`` (or a test's own).
        nx, ny: ribbon size in 4-atom cells along x (load) and y.
        strain_rate_per_ps: engineering strain rate along x, 1/ps.
        relax_ps: LAMMPS NPT relaxation before the stretch, ps.
        max_strain: the stretch ends here at the latest.
        temperature_K: thermostat target, K.
        early_stop: stop past the stress peak (both engines' rule).
    """

    name: str
    nx: int
    ny: int
    strain_rate_per_ps: float
    relax_ps: float
    max_strain: float
    temperature_K: float = 4.2
    early_stop: bool = True

    def ribbon(self, pattern: str, periodic_y: bool) -> Atoms:
        """The ribbon of a 15-digit cut ``pattern`` (N atoms, vacuum around it)."""
        return kirigami(pattern, self.nx, self.ny, periodic_y=periodic_y)

    def md_protocol(self, max_strain: float | None = None) -> Tension:
        """The LAMMPS phases of this protocol, stretching to ``max_strain`` (default the protocol's)."""
        return Tension(temperature_K=self.temperature_K, strain_rate_per_ps=self.strain_rate_per_ps,
                       relax_ps=self.relax_ps, max_strain=self.max_strain if max_strain is None else max_strain,
                       early_stop=self.early_stop)

    def run_lammps(self, atoms: Atoms, workdir: str | Path, record_every: int, max_strain: float | None = None,
                   threads: int | None = None, progress: bool = True) -> MDResult:
        """Run the protocol on ``atoms`` with LAMMPS/AIREBO in the existing ``workdir`` (1 fs steps,
        a record every ``record_every`` steps) to ``max_strain`` (default the protocol's)."""
        return run_md(atoms, self.md_protocol(max_strain), str(workdir), dt_fs=DT_FS, record_every=record_every,
                      threads=threads, progress=progress)

    def run_model(self, structure: Atoms, out_dir: str | Path, model: str | Path | None,
                  max_strain: float | None = None, **options) -> dict:
        """Stretch ``structure`` with the model (:func:`~sagesnet_tf.simulate.simulate` with its
        defaults otherwise) into ``out_dir`` to ``max_strain`` (default the protocol's); ``options``
        go to ``simulate`` (``every``, ``seed``, ``overwrite``, ``resume``, ``progress``). Returns
        its manifest; raises :class:`~sagesnet_tf.simulate.RolloutDiverged` as it does."""
        return simulate(structure, out_dir, model=model, temperature_K=self.temperature_K,
                        strain_rate=self.strain_rate_per_ps,
                        max_strain=self.max_strain if max_strain is None else max_strain,
                        stop_past_peak=self.early_stop, **options)

    def settings(self) -> dict:
        """The protocol's parameters (JSON-ready), with the LAMMPS timestep."""
        return {**dataclasses.asdict(self), "dt_fs": DT_FS}


FULL = KirigamiTension("full", nx=17, ny=40, strain_rate_per_ps=0.01, relax_ps=10.0, max_strain=0.8)
QUICK = KirigamiTension("quick", nx=7, ny=6, strain_rate_per_ps=0.05, relax_ps=0.5, max_strain=0.5)


def model_periodic_y(model: str | Path | None) -> bool:
    """Whether the model's grid is periodic along y (its ribbons are then marked periodic in y)."""
    return read_metadata(resolve_model_dir(model))["boundary"][1] == "periodic"


def read_model_curve(thermo_csv: str | Path) -> dict[str, np.ndarray]:
    """The stretch of a model run from its thermo.csv: ``strain``, ``stress_GPa`` (σ_xx) and
    ``uncertainty`` (mean predicted uncertainty per frame), each (T,), from the last frame at zero
    strain (the start of the stretch; earlier zero-strain rows are the equilibration before it)."""
    with open(thermo_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    strain = np.array([float(r["strain"]) for r in rows])
    start = int(np.nonzero(strain <= 0.0)[0][-1]) if np.any(strain <= 0.0) else 0
    return {"strain": strain[start:],
            "stress_GPa": np.array([float(r["stress_xx_GPa"]) for r in rows[start:]]),
            "uncertainty": np.array([float(r["mean_uncertainty"]) for r in rows[start:]])}


__all__ = ["DT_FS", "FULL", "QUICK", "KirigamiTension", "model_periodic_y", "read_model_curve"]
