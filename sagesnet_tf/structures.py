"""Structure builders: graphene sheets, ribbons, kirigami, nanotubes, small hydrocarbons.

Every builder returns an :class:`~sagesnet_tf.atoms.Atoms` in Å. Sheets lie in the xy plane at
the middle of a cell of height ``vacuum`` along z (z is not periodic).
"""

from __future__ import annotations

import numpy as np

from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError

#: Carbon–carbon bond length of graphene used by default (Å), as in the kirigami benchmark.
A_CC = 1.397
#: Nominal thickness of a graphene sheet (Å) for stress per cross-section.
SHEET_THICKNESS_A = 3.35


def _rect_cell_basis(a_cc: float, orientation: str) -> tuple[np.ndarray, np.ndarray]:
    """The 4-atom orthorhombic graphene cell: (lengths (2,) Å in x, y; positions (4, 2) Å).

    ``armchair``: x = 3·a_cc (a bond parallel to x), y = √3·a_cc. ``zigzag``: x and y swapped.
    """
    h = np.sqrt(3.0) / 2.0 * a_cc
    xy = np.array([[0.0, 0.0], [a_cc, 0.0], [1.5 * a_cc, h], [2.5 * a_cc, h]])
    lengths = np.array([3.0 * a_cc, np.sqrt(3.0) * a_cc])
    if orientation == "armchair":
        return lengths, xy
    if orientation == "zigzag":
        return lengths[::-1].copy(), xy[:, ::-1].copy()
    raise SagesnetError(f"unknown orientation {orientation!r}; use 'armchair' or 'zigzag'")


def graphene_sheet(nx: int, ny: int, orientation: str = "armchair", a_cc: float = A_CC,
                   vacuum: float = 20.0) -> Atoms:
    """A periodic graphene sheet of ``nx`` × ``ny`` 4-atom orthorhombic cells (4·nx·ny atoms).

    Args:
        nx, ny: cells along x and y (≥ 1).
        orientation: ``"armchair"`` or ``"zigzag"``: the edge direction that runs along x.
        a_cc: C–C bond length, Å.
        vacuum: cell height along z, Å; the sheet sits at z = vacuum / 2.

    Returns:
        Atoms with pbc (True, True, False).
    """
    if nx < 1 or ny < 1:
        raise SagesnetError(f"graphene needs at least one cell along x and y (got nx={nx}, ny={ny})")
    lengths, basis = _rect_cell_basis(a_cc, orientation)
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    shifts = np.stack([ii.ravel() * lengths[0], jj.ravel() * lengths[1]], axis=1)
    xy = (shifts[:, None, :] + basis[None, :, :]).reshape(-1, 2)
    positions = np.column_stack([xy, np.full(len(xy), vacuum / 2.0)])
    cell = np.diag([nx * lengths[0], ny * lengths[1], vacuum])
    return Atoms(["C"] * len(positions), positions, cell, [True, True, False],
                 info={"structure": "graphene", "orientation": orientation, "nx": nx, "ny": ny})
