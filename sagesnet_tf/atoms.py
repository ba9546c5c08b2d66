"""The central atoms object that every reader, writer, builder and runner speaks.

Units (LAMMPS ``metal``): positions and cell in Å, velocities in Å/ps, masses in g/mol.

Shapes (N = number of atoms):

- ``symbols``    (N,)   str, element symbols (``"C"``, ``"H"``)
- ``positions``  (N, 3) float64, Å, Cartesian
- ``velocities`` (N, 3) float64, Å/ps (zeros when the source has none)
- ``cell``       (3, 3) float64, Å, rows are the lattice vectors a, b, c
- ``pbc``        (3,)   bool, periodicity along a, b, c
- ``ids``        (N,)   int64, stable atom ids (1-based, as LAMMPS)
- ``flags``      (N,)   int32, per-atom role: 0 free, 1 driven, 2 clamped (see ``FLAG_*``)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from sagesnet_tf.errors import SagesnetError

#: Elements the project knows, in the order used for one-hot encodings everywhere.
ELEMENTS: tuple[str, ...] = ("C", "H")
#: Atomic masses in g/mol (LAMMPS metal units), by element.
MASSES: dict[str, float] = {"C": 12.011, "H": 1.008}

FLAG_FREE = 0
FLAG_DRIVEN = 1
FLAG_CLAMPED = 2

#: Two atoms closer than this (Å) are an overlap: no carbon/hydrogen structure has one.
MIN_SEPARATION_A = 0.5
#: Reach of the AIREBO potential's Lennard-Jones term as md.engine runs it (``airebo 3.0``: 3.0 σ_CC,
#: σ_CC = 3.4 Å), Å: atoms farther apart (periodic images across a vacuum gap) never interact.
AIREBO_LJ_CUTOFF_A = 3.0 * 3.4


@dataclasses.dataclass
class Atoms:
    """A set of atoms in a simulation cell (see module docstring for shapes and units)."""

    symbols: np.ndarray
    positions: np.ndarray
    cell: np.ndarray
    pbc: np.ndarray
    velocities: np.ndarray | None = None
    ids: np.ndarray | None = None
    flags: np.ndarray | None = None
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        self.symbols = np.asarray(self.symbols, dtype=str).reshape(-1)
        n = len(self.symbols)
        self.positions = np.asarray(self.positions, dtype=np.float64).reshape(n, 3)
        self.cell = np.asarray(self.cell, dtype=np.float64).reshape(3, 3)
        self.pbc = np.asarray(self.pbc, dtype=bool).reshape(3)
        self.velocities = (
            np.zeros((n, 3)) if self.velocities is None
            else np.asarray(self.velocities, dtype=np.float64).reshape(n, 3))
        self.ids = (
            np.arange(1, n + 1, dtype=np.int64) if self.ids is None
            else np.asarray(self.ids, dtype=np.int64).reshape(n))
        self.flags = (
            np.zeros(n, dtype=np.int32) if self.flags is None
            else np.asarray(self.flags, dtype=np.int32).reshape(n))

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def masses(self) -> np.ndarray:
        """(N,) float64 atomic masses in g/mol."""
        return np.array([MASSES[s] for s in self.symbols])

    @property
    def species_index(self) -> np.ndarray:
        """(N,) int32 index of each atom's element in :data:`ELEMENTS`."""
        return np.array([ELEMENTS.index(s) for s in self.symbols], dtype=np.int32)

    def copy(self) -> "Atoms":
        return Atoms(self.symbols.copy(), self.positions.copy(), self.cell.copy(), self.pbc.copy(),
                     self.velocities.copy(), self.ids.copy(), self.flags.copy(), dict(self.info))

    def fractional(self) -> np.ndarray:
        """(N, 3) fractional coordinates in the cell."""
        return np.linalg.solve(self.cell.T, self.positions.T).T

    def wrapped(self) -> "Atoms":
        """A copy with atoms wrapped into the cell along periodic axes."""
        out = self.copy()
        frac = out.fractional()
        frac[:, self.pbc] %= 1.0
        out.positions = frac @ self.cell
        return out

    def validate(self, source: str = "structure", inside: bool = True) -> "Atoms":
        """Refuse structures no simulation should start from; returns ``self`` when valid.

        Raises :class:`SagesnetError` naming ``source`` for: no atoms, unknown element, NaN or
        infinite values, a singular cell, atoms spanning more than the cell along a non-periodic axis,
        with ``inside`` atoms outside the cell along a non-periodic axis (``inside=False`` lets a
        sheet centred on z = 0 through, as files hold it, for a consumer that places the atoms
        itself: :func:`sagesnet_tf.io.model_frame.to_model_frame`), and overlapping atoms (closer than
        :data:`MIN_SEPARATION_A`).
        """
        if len(self) == 0:
            raise SagesnetError(f"{source}: the structure has no atoms; give a file with at least one atom")
        unknown = sorted(set(self.symbols) - set(ELEMENTS))
        if unknown:
            raise SagesnetError(
                f"{source}: unknown element(s) {', '.join(unknown)}; sagesnet-tf models know "
                f"{', '.join(ELEMENTS)} only")
        for name in ("positions", "velocities", "cell"):
            if not np.all(np.isfinite(getattr(self, name))):
                raise SagesnetError(f"{source}: {name} contain NaN or infinite values; fix the input file")
        if abs(np.linalg.det(self.cell)) < 1e-9:
            raise SagesnetError(
                f"{source}: the simulation cell has zero volume; give a 3D cell (add vacuum along "
                "non-periodic axes)")
        frac = self.fractional()
        tol = 1e-6
        for axis in np.flatnonzero(~self.pbc):
            span = float(np.ptp(frac[:, axis]))
            if span > 1 + tol:
                height = 1.0 / np.linalg.norm(np.linalg.inv(self.cell)[:, axis])
                raise SagesnetError(
                    f"{source}: the atoms span {span * height:.2f} Å along non-periodic axis {'xyz'[axis]}, more "
                    f"than the cell's {height:.2f} Å; enlarge the cell along {'xyz'[axis]} or make that axis periodic")
            outside = np.flatnonzero((frac[:, axis] < -tol) | (frac[:, axis] > 1 + tol))
            if inside and outside.size:
                raise SagesnetError(
                    f"{source}: {outside.size} atom(s) (first id {self.ids[outside[0]]}) lie outside the "
                    f"non-periodic cell along axis {'xyz'[axis]}; shift them into it, enlarge the cell or make "
                    "that axis periodic")
        i, j, d = self.closest_pair()
        if d < MIN_SEPARATION_A:
            raise SagesnetError(
                f"{source}: atoms {self.ids[i]} and {self.ids[j]} overlap ({d:.3f} Å apart, minimum "
                f"{MIN_SEPARATION_A} Å); remove duplicates from the file")
        return self

    def closest_pair(self) -> tuple[int, int, float]:
        """Indices of the closest pair of atoms (minimum image) and their distance in Å.

        Uses a cell list so it is O(N) for large structures. Returns ``(0, 0, inf)`` for one atom.
        """
        n = len(self)
        if n < 2:
            return 0, 0, float("inf")
        frac = self.fractional()
        frac[:, self.pbc] %= 1.0
        bin_edge = 2.0  # Å; only pairs within a bin or neighbouring bins are compared
        lengths = np.linalg.norm(self.cell, axis=1)
        nbins = np.maximum(1, np.floor(lengths / bin_edge).astype(int))
        nbins[~self.pbc] = np.maximum(1, nbins[~self.pbc])
        keys = np.clip(np.floor(frac * nbins).astype(int), 0, nbins - 1)
        buckets: dict[tuple[int, int, int], list[int]] = {}
        for idx, key in enumerate(map(tuple, keys)):
            buckets.setdefault(key, []).append(idx)
        best = (0, 0, float("inf"))
        inv = np.linalg.inv(self.cell)
        offsets = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]
        for key, members in buckets.items():
            cand: list[int] = []
            for off in offsets:
                other = np.add(key, off)
                for ax in range(3):
                    if self.pbc[ax]:
                        other[ax] %= nbins[ax]
                cand.extend(buckets.get(tuple(other), []))
            cand_arr = np.unique(np.array(cand))
            for i in members:
                js = cand_arr[cand_arr > i]
                if js.size == 0:
                    continue
                delta = self.positions[js] - self.positions[i]
                dfrac = delta @ inv
                dfrac[:, self.pbc] -= np.round(dfrac[:, self.pbc])
                dist = np.linalg.norm(dfrac @ self.cell, axis=1)
                k = int(np.argmin(dist))
                if dist[k] < best[2]:
                    best = (i, int(js[k]), float(dist[k]))
        return best
