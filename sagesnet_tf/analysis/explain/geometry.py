"""Where a ribbon's cut tips are, and what each atom is geometrically: the ground truth that the
sensitivity map and the latent clusters of ``explain`` are measured against.

- :func:`kirigami_geometry`: the kirigami pattern and size a structure was built with (from its
  ``info``, as ``build kirigami`` writes it and ``simulate`` keeps it in every frame, or given).
- :func:`frame_corners`: the cut corners (:func:`~sagesnet_tf.structures.kirigami_cut_corners`) carried
  into a frame: the ribbon is rebuilt, matched to the frame's atoms by id, and each corner moves with
  the atoms around it (so a stretched, drifted or buckled frame has its corners where its cuts are).
- :func:`atom_labels`: bulk / edge / cut-tip / broken from coordination and distance to a corner.

Units: Å. Positions are those of the frame as given (its cell, its periodic axes).
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.spatial import cKDTree

from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.structures import A_CC, BOND_FACTOR, bond_pairs, coordination, kirigami, kirigami_cut_corners

#: Å: a cell or atom this close (in x–y) to a cut corner is at a cut tip (the issue's 3 Å).
CUT_TIP_RADIUS_A = 3.0
#: Geometric label names, in the order of the integer labels :func:`atom_labels` returns.
LABELS = ("bulk", "edge", "cut-tip", "broken")
#: Two carbons closer than this (Å) are bonded when counting coordination (the builders' bond rule).
BOND_CUTOFF_A = BOND_FACTOR * A_CC
#: Reference atoms whose mean displacement carries a corner into the frame.
CORNER_NEIGHBOURS = 6
#: A frame is the rebuilt ribbon when at least this share of the ribbon's bonds (by atom id) are
#: shorter than :data:`BOND_KEPT_FACTOR` × :data:`BOND_CUTOFF_A` in it (stretched, not broken).
BONDS_KEPT = 0.9
BOND_KEPT_FACTOR = 1.5


@dataclasses.dataclass(frozen=True)
class KirigamiGeometry:
    """The arguments of :func:`~sagesnet_tf.structures.kirigami` a ribbon was built with."""

    pattern: str
    nx: int
    ny: int
    cut: str = "orthogonal"
    a_cc: float = A_CC
    vacuum_y: float = 20.0


def kirigami_geometry(atoms: Atoms, pattern: str | None = None, nx: int | None = None,
                      ny: int | None = None) -> KirigamiGeometry | None:
    """The kirigami build of ``atoms``: ``pattern``/``nx``/``ny`` where given, else its ``info``
    (``pattern``, ``nx``, ``ny``, ``cut``, ``a_cc_A``, ``vacuum_y_A`` of ``build kirigami``);
    None when there is no pattern (not a kirigami ribbon)."""
    info = atoms.info
    pattern = pattern if pattern is not None else info.get("pattern")
    if pattern is None:
        return None
    nx = nx if nx is not None else info.get("nx")
    ny = ny if ny is not None else info.get("ny")
    if nx is None or ny is None:
        raise SagesnetError(f"explain: kirigami pattern {pattern} needs the ribbon's size; give --nx and --ny "
                            "(the cells it was built with)")
    return KirigamiGeometry(str(pattern), int(nx), int(ny), str(info.get("cut", "orthogonal")),
                            float(info.get("a_cc_A", A_CC)), float(info.get("vacuum_y_A", 20.0)))


def frame_corners(atoms: Atoms, geometry: KirigamiGeometry) -> np.ndarray:
    """(C, 2) Å, the cut corners of ``geometry`` where they are in the frame ``atoms``.

    The ribbon is rebuilt and its atoms matched to the frame's by id (the builder numbers them
    1..N; ``simulate`` keeps ids): the frame must hold its :data:`BONDS_KEPT` share of bonds. The
    rebuilt ribbon is stretched along x to the frame's box
    length; each corner then moves by the mean displacement (minimum image along the periodic
    axes) of its :data:`CORNER_NEIGHBOURS` nearest rebuilt atoms. A frame whose atoms are not that
    ribbon's is a :class:`SagesnetError`.
    """
    g = geometry
    reference = kirigami(g.pattern, g.nx, g.ny, g.cut, g.a_cc, g.vacuum_y)
    corners = kirigami_cut_corners(g.pattern, g.nx, g.ny, g.cut, g.a_cc, g.vacuum_y)
    order = np.argsort(atoms.ids)  # frame rows in reference (id) order
    lengths, periodic = np.diag(atoms.cell), np.asarray(atoms.pbc, bool)

    def minimum_image(delta: np.ndarray) -> np.ndarray:
        delta[:, periodic] -= np.round(delta[:, periodic] / lengths[periodic]) * lengths[periodic]
        return delta

    same = len(reference) == len(atoms) and np.array_equal(atoms.ids[order], reference.ids)
    if same:  # the same bonds: a ribbon of the same size but another pattern numbers its atoms otherwise
        i, j, _ = bond_pairs(reference.positions, reference.cell, reference.pbc, BOND_CUTOFF_A)
        stretched = np.linalg.norm(minimum_image(atoms.positions[order][i] - atoms.positions[order][j]), axis=1)
        same = np.mean(stretched < BOND_KEPT_FACTOR * BOND_CUTOFF_A) >= BONDS_KEPT
    if not same:
        raise SagesnetError(f"explain: the structure's {len(atoms)} atoms are not those of kirigami pattern "
                            f"{g.pattern} "
                            f"{g.nx}×{g.ny} ({len(reference)} atoms, ids 1..{len(reference)}, {BONDS_KEPT:.0%} of its "
                            "bonds kept); give the --pattern, --nx and --ny it was built with")
    if not len(corners):
        return corners
    stretch = np.array([lengths[0] / reference.cell[0, 0], 1.0, 1.0])
    moved = minimum_image(atoms.positions[order] - reference.positions * stretch)
    _, nearest = cKDTree(reference.positions[:, :2]).query(corners, k=min(CORNER_NEIGHBOURS, len(reference)))
    return corners * stretch[:2] + moved[np.atleast_2d(nearest), :2].mean(axis=1)


def distance_to_corners(points: np.ndarray, corners: np.ndarray, atoms: Atoms) -> np.ndarray:
    """(P,) Å, the x–y distance of each of ``points`` (P, 2+) to the nearest of ``corners`` (C, 2),
    minimum image along the periodic x/y axes of ``atoms``' cell; inf without corners."""
    if not len(corners):
        return np.full(len(points), np.inf)
    lengths, periodic = np.diag(atoms.cell)[:2], np.asarray(atoms.pbc, bool)[:2]
    delta = np.asarray(points, np.float64)[:, None, :2] - corners[None]
    delta[..., periodic] -= np.round(delta[..., periodic] / lengths[periodic]) * lengths[periodic]
    return np.linalg.norm(delta, axis=-1).min(axis=1)


def atom_labels(atoms: Atoms, corners: np.ndarray) -> np.ndarray:
    """(N,) int, each atom's index into :data:`LABELS`: ``broken`` with fewer than 2 bonded
    neighbours (closer than :data:`BOND_CUTOFF_A`), else ``cut-tip`` within
    :data:`CUT_TIP_RADIUS_A` of a corner of ``corners`` (C, 2) Å, else ``edge`` with 2 neighbours,
    else ``bulk``."""
    neighbours = coordination(atoms.wrapped(), BOND_CUTOFF_A)
    labels = np.where(neighbours >= 3, LABELS.index("bulk"), LABELS.index("edge"))
    labels[distance_to_corners(atoms.positions, corners, atoms) <= CUT_TIP_RADIUS_A] = LABELS.index("cut-tip")
    labels[neighbours < 2] = LABELS.index("broken")
    return labels
