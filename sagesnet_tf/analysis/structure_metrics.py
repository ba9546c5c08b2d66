"""Distances and bonds of atoms in an orthorhombic box, for scoring rollouts against MD.

Shapes: N atoms, M bonds. Units: Å. ``box`` (3,) holds the box lengths, ``pbc`` (3,) bool the
periodic axes; distances along a periodic axis are taken to the nearest image (minimum image),
along an open axis as they are. Arrays keep the caller's float dtype.

Used by training (window unwrapping, the held-out rollout), ``evaluate`` (bond survival, RDF).
"""

from __future__ import annotations

import numpy as np


def minimum_image(delta: np.ndarray, box: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """(..., 3) displacement Å -> its minimum image in an orthorhombic box (3,) Å, periodic axes only."""
    wrapped = delta - box * np.round(delta / box)
    return np.where(pbc, wrapped, delta)


def pair_distances(positions: np.ndarray, box: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """(N, N) minimum-image distances between all atoms ``positions`` (N, 3), Å (symmetric, zero diagonal)."""
    return np.linalg.norm(minimum_image(positions[:, None, :] - positions[None, :, :], box, pbc), axis=-1)


def bonds(positions: np.ndarray, box: np.ndarray, pbc: np.ndarray, cutoff: float) -> np.ndarray:
    """(M, 2) index pairs i < j of atoms closer than ``cutoff`` Å (minimum image)."""
    i, j = np.nonzero(np.triu(pair_distances(positions, box, pbc) < cutoff, k=1))
    return np.stack([i, j], 1)


def bonded_fraction(positions: np.ndarray, pairs: np.ndarray, box: np.ndarray, pbc: np.ndarray,
                    cutoff: float) -> float:
    """Fraction of the bonds ``pairs`` (M, 2) (e.g. :func:`bonds` of the first frame) whose atoms in
    ``positions`` (N, 3) are still closer than ``cutoff`` Å; 1.0 when there are none."""
    if len(pairs) == 0:
        return 1.0
    d = minimum_image(positions[pairs[:, 0]] - positions[pairs[:, 1]], box, pbc)
    return float(np.mean(np.linalg.norm(d, axis=-1) < cutoff))
