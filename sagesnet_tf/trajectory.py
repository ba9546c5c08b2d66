"""A recorded trajectory: what MD generation produces and what datasets store.

Units (LAMMPS ``metal``). Shapes (T = frames, N = atoms, E = environment fields):

- ``symbols``      (N,)      str, element symbols, constant over the trajectory
- ``ids``          (N,)      int64, atom ids, rows of every per-atom array are in this order
- ``positions``    (T, N, 3) float64, Å, unwrapped Cartesian positions
- ``velocities``   (T, N, 3) float64, Å/ps
- ``stress``       (T, N, 6) float64, per-atom virial stress × volume in bar·Å³, ordered
                   xx, yy, zz, xy, xz, yz (LAMMPS ``compute stress/atom``, which sums to −P·V:
                   positive in tension)
- ``cell``         (T, 3, 3) float64, Å, rows are lattice vectors
- ``pbc``          (3,)      bool
- ``step``         (T,)      int64, MD step number
- ``time_ps``      (T,)      float64, ps
- ``environment``  (T, E)    float32, values of ``env_fields`` (see :data:`ENV_FIELDS`)
- ``flags``        (N,)      int32, per-atom role as in :mod:`sagesnet_tf.atoms`

Frames are one record stride apart, or come in bursts of consecutive records with gaps between
them (``generate md --burst-frames``): :meth:`Trajectory.consecutive` says which neighbours are one
stride apart, so windows and per-stride statistics never span a gap.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sagesnet_tf.atoms import Atoms

#: Environment fields recorded with every frame, in this order (the "blanket vector").
ENV_FIELDS: tuple[str, ...] = ("temperature_K", "pressure_bar", "strain_rate_per_ps", "strain")
#: Default scale of each environment field, in its units: a model reads value / scale (the
#: ``env_scales`` of :class:`~sagesnet_tf.model.SagesnetConfig`, saved with the model); fields not
#: listed have scale 1.
ENV_SCALES: dict[str, float] = {"temperature_K": 1000.0, "pressure_bar": 1.0e4,
                                "strain_rate_per_ps": 0.01, "strain": 0.1}


@dataclasses.dataclass
class Trajectory:
    """Frames of one MD run (see module docstring for shapes and units)."""

    symbols: np.ndarray
    ids: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray
    stress: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    step: np.ndarray
    time_ps: np.ndarray
    environment: np.ndarray
    flags: np.ndarray | None = None
    env_fields: tuple[str, ...] = ENV_FIELDS
    dt_fs: float = 1.0
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.symbols = np.asarray(self.symbols, dtype=str)
        n = len(self.symbols)
        self.ids = np.asarray(self.ids, dtype=np.int64).reshape(n)
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(-1, n, 3)
        t = self.positions.shape[0]
        self.velocities = np.asarray(self.velocities, dtype=np.float64).reshape(t, n, 3)
        self.stress = np.asarray(self.stress, dtype=np.float64).reshape(t, n, 6)
        self.cell = np.asarray(self.cell, dtype=np.float64).reshape(t, 3, 3)
        self.pbc = np.asarray(self.pbc, dtype=bool).reshape(3)
        self.step = np.asarray(self.step, dtype=np.int64).reshape(t)
        self.time_ps = np.asarray(self.time_ps, dtype=np.float64).reshape(t)
        self.environment = np.asarray(self.environment, dtype=np.float32).reshape(t, len(self.env_fields))
        self.flags = (np.zeros(n, dtype=np.int32) if self.flags is None
                      else np.asarray(self.flags, dtype=np.int32).reshape(n))

    @property
    def n_frames(self) -> int:
        return self.positions.shape[0]

    @property
    def n_atoms(self) -> int:
        return len(self.symbols)

    def consecutive(self) -> np.ndarray:
        """(T-1,) bool: frame t+1 is one record stride after frame t (the smallest step gap of the
        trajectory); False across the gaps between bursts."""
        gaps = np.diff(self.step)
        return gaps == (gaps.min() if gaps.size else 0)

    def frame(self, t: int) -> Atoms:
        """Frame ``t`` as an :class:`Atoms`."""
        return Atoms(self.symbols, self.positions[t], self.cell[t], self.pbc, self.velocities[t],
                     self.ids, self.flags, {"step": int(self.step[t]), "time_ps": float(self.time_ps[t])})
