"""Structure builders: graphene sheets, ribbons, kirigami, nanotubes, small hydrocarbons.

Every builder returns an :class:`~sagesnet_tf.atoms.Atoms` in Å. Sheets lie in the xy plane at
the middle of a cell of height ``vacuum`` along z (z is not periodic). See docs/STRUCTURES.md.

The neighbour helpers here (:func:`bond_pairs`, :func:`coordination`) are what the builders use to
find dangling atoms and severed kirigami; tests and analysis may use them too.
"""

from __future__ import annotations

import math
import re

import numpy as np
from scipy.spatial import cKDTree

from sagesnet_tf.analysis.stress_strain import SHEET_THICKNESS_A
from sagesnet_tf.atoms import AIREBO_LJ_CUTOFF_A, Atoms
from sagesnet_tf.errors import SagesnetError

#: Carbon–carbon bond length of graphene used by default (Å), as in the kirigami benchmark.
A_CC = 1.397
#: Two carbons of a sheet closer than ``BOND_FACTOR · a_cc`` are bonded (second neighbours are at √3·a_cc).
BOND_FACTOR = 1.2

#: Kirigami cut grid: blocks along x (loading direction) and along y.
KIRIGAMI_COLUMNS = 3
KIRIGAMI_ROWS = 5
#: Uncut 4-atom cells kept at each x end of a kirigami ribbon.
KIRIGAMI_END_CELLS = 2

#: Molecule geometry (Å, degrees).
C_C_SINGLE_A = 1.54
C_C_AROMATIC_A = 1.40
C_H_A = 1.09
TETRAHEDRAL_DEG = math.degrees(math.acos(-1.0 / 3.0))  # 109.47°
MOLECULE_VACUUM_A = 10.0
#: Most atoms a builder makes (arrays of about 1 GB); bigger requests are refused before anything
#: is allocated.
MAX_ATOMS = 10_000_000
#: C–C bond lengths a builder accepts, Å: from a triple bond (1.20 Å) to a single bond stretched
#: to breaking (1.80 Å).
A_CC_RANGE_A = (1.2, 1.8)
#: Longest vacuum a builder accepts, Å (far beyond any interaction range; keeps boxes finite).
MAX_VACUUM_A = 1000.0
_ALKANE_NAMES = {"methane": 1, "ethane": 2, "propane": 3, "butane": 4}
MOLECULES = ("benzene", *_ALKANE_NAMES, "alkane-N")


# --------------------------------------------------------------------------------------------
# Neighbours


def bond_pairs(positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray,
               cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All directed pairs of atoms closer than ``cutoff``, through periodic images along ``pbc``.

    Args:
        positions: (N, 3) Å.
        cell: (3, 3) Å, rows are lattice vectors.
        pbc: (3,) bool; images are taken one cell either way along periodic axes, so the cutoff
            must be shorter than the periodic cell lengths (true for any bond in a real structure).
        cutoff: Å.

    Returns:
        ``(i, j, d)``: (P,) int64, (P,) int64, (P,) float64 Å. Every bond appears from both ends
        (once per image it is made through), so ``np.bincount(i)`` is the coordination number.
    """
    positions = np.asarray(positions, dtype=np.float64)
    tree = cKDTree(positions)
    ranges = [(-1, 0, 1) if periodic else (0,) for periodic in np.asarray(pbc, dtype=bool)]
    out_i, out_j, out_d = [], [], []
    for a in ranges[0]:
        for b in ranges[1]:
            for c in ranges[2]:
                shift = np.array([a, b, c], dtype=np.float64) @ np.asarray(cell, dtype=np.float64)
                pairs = tree.sparse_distance_matrix(cKDTree(positions + shift), cutoff,
                                                    output_type="ndarray")
                i, j, d = pairs["i"], pairs["j"], pairs["v"]
                if a == b == c == 0:
                    keep = i != j
                    i, j, d = i[keep], j[keep], d[keep]
                out_i.append(i)
                out_j.append(j)
                out_d.append(d)
    return (np.concatenate(out_i).astype(np.int64), np.concatenate(out_j).astype(np.int64),
            np.concatenate(out_d))


def coordination(atoms: Atoms, cutoff: float) -> np.ndarray:
    """(N,) int64 number of neighbours of each atom within ``cutoff`` Å (periodic images included)."""
    i, _, _ = bond_pairs(atoms.positions, atoms.cell, atoms.pbc, cutoff)
    return np.bincount(i, minlength=len(atoms)).astype(np.int64)


def _components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """(n,) int64 connected-component label of each node of the graph with edges (i, j)."""
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(i.tolist(), j.tolist()):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[ra] = rb
    return np.array([find(x) for x in range(n)], dtype=np.int64)


def _subset(atoms: Atoms, keep: np.ndarray) -> Atoms:
    """Atoms with only the rows where ``keep`` (N,) bool is true; ids are renumbered 1..M."""
    return Atoms(atoms.symbols[keep], atoms.positions[keep], atoms.cell, atoms.pbc,
                 atoms.velocities[keep], None, atoms.flags[keep], dict(atoms.info))


# --------------------------------------------------------------------------------------------
# Sheets, ribbons, kirigami


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
    _check_size(4 * nx * ny, f"a {nx} × {ny}-cell sheet")
    _check_lengths(a_cc, vacuum=vacuum)
    lengths, basis = _rect_cell_basis(a_cc, orientation)
    ii, jj = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    shifts = np.stack([ii.ravel() * lengths[0], jj.ravel() * lengths[1]], axis=1)
    xy = (shifts[:, None, :] + basis[None, :, :]).reshape(-1, 2)
    positions = np.column_stack([xy, np.full(len(xy), vacuum / 2.0)])
    cell = np.diag([nx * lengths[0], ny * lengths[1], vacuum])
    return Atoms(["C"] * len(positions), positions, cell, [True, True, False],
                 info={"structure": "graphene", "orientation": orientation, "nx": nx, "ny": ny,
                       "a_cc_A": a_cc, "nominal_thickness_A": SHEET_THICKNESS_A})


def ribbon(nx: int, ny: int, orientation: str = "armchair", a_cc: float = A_CC,
           vacuum_y: float = 20.0, vacuum_z: float = 20.0, periodic_y: bool = False) -> Atoms:
    """A graphene ribbon: ``nx`` × ``ny`` 4-atom cells, periodic along x only (4·nx·ny atoms).

    The sheet of :func:`graphene_sheet` with ``vacuum_y`` Å of empty space added along y (split
    evenly on both edges) and a cell height of ``vacuum_z`` Å (sheet at z = vacuum_z / 2).

    ``periodic_y`` marks y periodic too: a row of ribbons ``vacuum_y`` apart (at least the AIREBO
    cutoff, so they never interact). That is the same physical ribbon (LAMMPS runs every box
    periodic anyway), labelled for models whose grid is periodic in y, like the default graphene
    model, which would otherwise see an open axis it was not trained on.

    Returns:
        Atoms with pbc (True, ``periodic_y``, False); ``info["nominal_width_A"]`` is W = ny · (cell y
        length) in Å and ``info["nominal_thickness_A"]`` is 3.35 Å (stress per cross-section W·3.35).
    """
    if not vacuum_y > 0:
        raise SagesnetError(f"a ribbon needs vacuum along y (got vacuum_y={vacuum_y}); give a positive value in Å")
    _check_lengths(a_cc, vacuum_y=vacuum_y)
    if periodic_y and vacuum_y < AIREBO_LJ_CUTOFF_A:
        raise SagesnetError(f"ribbons repeated along y need at least {AIREBO_LJ_CUTOFF_A:.1f} Å of vacuum between them "
                            f"(the AIREBO cutoff; got vacuum_y={vacuum_y}); raise --vacuum-y")
    sheet = graphene_sheet(nx, ny, orientation, a_cc, vacuum_z)
    width = float(sheet.cell[1, 1])
    sheet.positions[:, 1] += vacuum_y / 2.0
    sheet.cell[1, 1] = width + vacuum_y
    sheet.pbc = np.array([True, bool(periodic_y), False])
    sheet.info.update(structure="ribbon", nominal_width_A=width, nominal_thickness_A=SHEET_THICKNESS_A,
                      vacuum_y_A=vacuum_y)
    return sheet


def parse_kirigami_pattern(pattern: str) -> np.ndarray:
    """The cut grid of a kirigami pattern string: (3, 5) bool, ``[column (x), row (y)]``, True = cut.

    Digit ``k`` of the 15-digit string (0-based, left to right) is block column ``k // 5``
    (x, from the low-x end) and row ``k % 5`` (y, from the low-y edge): the string lists column 0
    bottom to top, then column 1, then column 2.
    """
    n = KIRIGAMI_COLUMNS * KIRIGAMI_ROWS
    if not isinstance(pattern, str) or len(pattern) != n or set(pattern) - {"0", "1"}:
        raise SagesnetError(
            f"kirigami pattern {pattern!r} is not {n} binary digits; give a string of {n} '0'/'1' "
            "(digit k cuts block column k//5, row k%5)")
    return np.array([c == "1" for c in pattern]).reshape(KIRIGAMI_COLUMNS, KIRIGAMI_ROWS)


def _ribbon_width(ny: int, a_cc: float) -> float:
    """The nominal width W (Å) of an armchair ribbon ``ny`` 4-atom cells wide (its sheet's y length)."""
    return float(ny * _rect_cell_basis(a_cc, "armchair")[0][1])


def kirigami_cuts(grid: np.ndarray, nx: int, ny: int, cut: str = "orthogonal", a_cc: float = A_CC,
                  vacuum_y: float = 20.0) -> np.ndarray:
    """The regions :func:`kirigami` removes: (K, 4) Å rectangles ``x_lo, x_hi, y_lo, y_hi`` in the
    frame of the built ribbon, one per cut block of ``grid`` ((3, 5) bool,
    :func:`parse_kirigami_pattern`), in ``np.nonzero(grid)`` order. Arguments as :func:`kirigami`
    (not validated here)."""
    cell_x = 3.0 * a_cc
    x0 = KIRIGAMI_END_CELLS * cell_x
    block_w = (nx - 2 * KIRIGAMI_END_CELLS) * cell_x / KIRIGAMI_COLUMNS
    y0 = vacuum_y / 2.0
    block_h = _ribbon_width(ny, a_cc) / KIRIGAMI_ROWS
    rectangles = []
    for col, row in zip(*np.nonzero(grid)):
        bx, by = x0 + col * block_w, y0 + row * block_h
        if cut == "orthogonal":
            rectangles.append((bx + block_w / 3, bx + 2 * block_w / 3, by, by + block_h))
        else:
            rectangles.append((bx, bx + block_w, by + block_h / 3, by + 2 * block_h / 3))
    return np.array(rectangles, dtype=np.float64).reshape(-1, 4)


def kirigami_cut_corners(pattern: str, nx: int, ny: int, cut: str = "orthogonal", a_cc: float = A_CC,
                         vacuum_y: float = 20.0) -> np.ndarray:
    """The corners of the cuts of a :func:`kirigami` ribbon: (C, 2) Å, x and y in the frame of the
    built ribbon (the stress concentrators of a ribbon under tension).

    The cut blocks of neighbouring rows (orthogonal) or columns (parallel) join into one slit, so a
    corner is a corner of the union of :func:`kirigami_cuts`' rectangles: a rectangle's corner that
    lies on no other cut rectangle. Corners on the ribbon's free edges (a slit that opens onto an
    edge) are not counted: the slit has no tip there. Arguments as :func:`kirigami`.
    """
    grid = parse_kirigami_pattern(pattern)
    rectangles = kirigami_cuts(grid, nx, ny, cut, a_cc, vacuum_y)
    tol = 1e-6 * a_cc
    edges = (vacuum_y / 2.0, vacuum_y / 2.0 + _ribbon_width(ny, a_cc))
    corners = []
    for k, (x_lo, x_hi, y_lo, y_hi) in enumerate(rectangles):
        for x, y in ((x_lo, y_lo), (x_hi, y_lo), (x_lo, y_hi), (x_hi, y_hi)):
            others = np.delete(rectangles, k, axis=0)
            shared = ((others[:, 0] - tol <= x) & (x <= others[:, 1] + tol)
                      & (others[:, 2] - tol <= y) & (y <= others[:, 3] + tol)).any()
            if not shared and min(abs(y - e) for e in edges) > tol:
                corners.append((x, y))
    return np.array(corners, dtype=np.float64).reshape(-1, 2)


def kirigami(pattern: str, nx: int = 17, ny: int = 40, cut: str = "orthogonal", a_cc: float = A_CC,
             vacuum_y: float = 20.0, vacuum_z: float = 20.0, periodic_y: bool = False) -> Atoms:
    """A Hanakata-style graphene kirigami ribbon (armchair along x = loading direction).

    Start from :func:`ribbon` (``nx`` × ``ny`` cells, periodic along x). The inner region —
    everything but :data:`KIRIGAMI_END_CELLS` uncut cells at each x end — is split into a 3 (x) ×
    5 (y) grid of equal blocks over the nominal width W; see :func:`parse_kirigami_pattern` for the
    digit order. A ``"1"`` block is cut:

    - ``cut="orthogonal"``: atoms in the middle third (in x) of the block, over the block's whole
      height, are removed (a slit across the loading direction; cuts in neighbouring rows join);
    - ``cut="parallel"``: atoms in the middle third (in y) of the block, over the block's whole
      length, are removed (a slit along the loading direction).

    Block edges are half-open in Å (an atom on a lower edge belongs to the block). Afterwards,
    atoms left with fewer than 2 bonded neighbours are removed, repeatedly, until none is left
    (a 1-coordinated carbon is not a physical edge). A pattern whose remaining atoms no longer
    join the two x ends by bonds (not counting the periodic wrap along x) is refused: it would
    carry no load; for orthogonal cuts that is any pattern with a fully cut column.

    Args:
        pattern: 15 characters ``'0'``/``'1'``.
        nx, ny: 4-atom cells along x (≥ 2·2 + 3) and y (≥ 5). Default 17 × 40 = 2,720 atoms uncut.
        cut: ``"orthogonal"`` or ``"parallel"``.
        a_cc, vacuum_y, vacuum_z, periodic_y: as :func:`ribbon` (Å).

    Returns:
        Atoms with pbc (True, ``periodic_y``, False), ids 1..N renumbered after the cuts; ``info`` holds
        ``pattern``, ``cut``, ``n_removed``, ``nominal_width_A`` and ``nominal_thickness_A``.
    """
    grid = parse_kirigami_pattern(pattern)
    if cut not in ("orthogonal", "parallel"):
        raise SagesnetError(f"unknown kirigami cut {cut!r}; use 'orthogonal' or 'parallel'")
    min_nx = 2 * KIRIGAMI_END_CELLS + KIRIGAMI_COLUMNS
    if nx < min_nx or ny < KIRIGAMI_ROWS:
        raise SagesnetError(
            f"kirigami needs at least {min_nx} cells along x and {KIRIGAMI_ROWS} along y (got nx={nx}, "
            f"ny={ny}); use larger --nx/--ny")
    base = ribbon(nx, ny, "armchair", a_cc, vacuum_y, vacuum_z, periodic_y)
    cell_x = 3.0 * a_cc
    x0 = KIRIGAMI_END_CELLS * cell_x
    tol = 1e-6 * a_cc  # so an atom exactly on a lower block edge counts as inside despite rounding
    x, y = base.positions[:, 0], base.positions[:, 1]

    def within(v: np.ndarray, lo: float, hi: float) -> np.ndarray:
        return (v >= lo - tol) & (v < hi - tol)

    removed = np.zeros(len(base), dtype=bool)
    for x_lo, x_hi, y_lo, y_hi in kirigami_cuts(grid, nx, ny, cut, a_cc, vacuum_y):
        removed |= within(x, x_lo, x_hi) & within(y, y_lo, y_hi)
    atoms = _subset(base, ~removed)

    cutoff = BOND_FACTOR * a_cc
    while len(atoms):
        dangling = coordination(atoms, cutoff) < 2
        if not dangling.any():
            break
        atoms = _subset(atoms, ~dangling)

    # Connectivity between the two uncut ends, without the periodic wrap along x.
    i, j, _ = bond_pairs(atoms.positions, atoms.cell, [False, False, False], cutoff)
    label = _components(len(atoms), i, j)
    x = atoms.positions[:, 0]
    left = set(label[x < x0 - tol].tolist())
    right = set(label[x >= (nx - KIRIGAMI_END_CELLS) * cell_x - tol].tolist())
    if not left & right:
        raise SagesnetError(
            f"kirigami pattern {pattern} with {cut} cuts severs the ribbon: no bonded path joins its "
            "two x ends; leave at least one uncut block in every column")
    spanning = np.isin(label, sorted(left & right))
    atoms = _subset(atoms, spanning)  # drops islands cut free (none for these cut shapes)
    atoms.info.update(structure="kirigami", pattern=pattern, cut=cut,
                      n_removed=len(base) - len(atoms))
    return atoms


# --------------------------------------------------------------------------------------------
# Nanotubes


def nanotube(n: int, m: int, length_cells: int = 1, a_cc: float = A_CC, vacuum: float = 20.0) -> Atoms:
    """An (n, m) single-wall carbon nanotube along z, periodic along z.

    The graphene sheet spanned by the chiral vector C = n·a1 + m·a2 (|a1| = |a2| = √3·a_cc, 60°
    apart) and the translation vector T = t1·a1 + t2·a2 (t1 = (2m+n)/d_R, t2 = −(2n+m)/d_R,
    d_R = gcd(2m+n, 2n+m)) is rolled so C becomes the circumference: radius R = |C| / 2π. One
    translational cell holds 4·(n² + nm + m²)/d_R atoms.

    Args:
        n, m: chiral indices, n ≥ 1, 0 ≤ m ≤ n.
        length_cells: translational cells along z (≥ 1); length = length_cells · |T| Å.
        a_cc: C–C bond length on the flat sheet, Å.
        vacuum: empty space between the tube wall and the box faces summed over both sides, Å;
            the box is (2R + vacuum) along x and y, with the axis at its centre.

    Returns:
        Atoms with pbc (False, False, True); ``info["radius_A"]`` = R.
    """
    if not (n >= 1 and 0 <= m <= n) or length_cells < 1:
        raise SagesnetError(
            f"bad nanotube ({n}, {m}) × {length_cells} cells; use n ≥ 1, 0 ≤ m ≤ n and length_cells ≥ 1")
    _check_lengths(a_cc, vacuum=vacuum)
    d_r = math.gcd(2 * m + n, 2 * n + m)
    _check_size(4 * (n * n + n * m + m * m) // d_r * length_cells, f"a ({n}, {m}) tube of {length_cells} cells")
    a = math.sqrt(3.0) * a_cc
    a1 = a * np.array([1.0, 0.0])
    a2 = a * np.array([0.5, math.sqrt(3.0) / 2.0])
    t1, t2 = (2 * m + n) // d_r, -(2 * n + m) // d_r
    chiral = n * a1 + m * a2
    trans = t1 * a1 + t2 * a2
    c_len, t_len = float(np.linalg.norm(chiral)), float(np.linalg.norm(trans))
    # Lattice points covering the C × T rectangle.
    corners = np.array([[0, 0], [n, m], [t1, t2], [n + t1, m + t2]])
    lo, hi = corners.min(axis=0) - 1, corners.max(axis=0) + 1
    _check_size(2 * int(np.prod(hi - lo + 1, dtype=object)), f"the flat sheet a ({n}, {m}) tube is cut from",
                "use smaller chiral indices")
    ii, jj = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
    points = ii.reshape(-1, 1) * a1 + jj.reshape(-1, 1) * a2
    sheet = np.concatenate([points, points + (a1 + a2) / 3.0])
    u = sheet @ chiral / c_len**2  # fraction of the circumference
    v = sheet @ trans / t_len**2  # fraction of the translational period
    eps = 1e-9
    inside = (u >= -eps) & (u < 1 - eps) & (v >= -eps) & (v < 1 - eps)
    u, v = u[inside], v[inside]
    expected = 4 * (n * n + n * m + m * m) // d_r
    if len(u) != expected:  # guards the construction itself
        raise SagesnetError(f"nanotube ({n}, {m}) construction found {len(u)} atoms per cell, expected {expected}")
    radius = c_len / (2.0 * math.pi)
    box_xy = 2.0 * radius + vacuum
    phi = 2.0 * math.pi * u
    ring = np.column_stack([box_xy / 2 + radius * np.cos(phi), box_xy / 2 + radius * np.sin(phi), v * t_len])
    positions = np.concatenate([ring + [0.0, 0.0, k * t_len] for k in range(length_cells)])
    cell = np.diag([box_xy, box_xy, length_cells * t_len])
    return Atoms(["C"] * len(positions), positions, cell, [False, False, True],
                 info={"structure": "nanotube", "n": n, "m": m, "length_cells": length_cells,
                       "radius_A": radius, "a_cc_A": a_cc})


# --------------------------------------------------------------------------------------------
# Molecules


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _perpendicular(axis: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Unit vector ⟂ ``axis`` along the part of ``reference`` ⟂ ``axis`` (any ⟂ vector if parallel)."""
    p = reference - np.dot(reference, axis) * axis
    if np.linalg.norm(p) < 1e-8:
        p = np.cross(axis, [1.0, 0.0, 0.0] if abs(axis[0]) < 0.9 else [0.0, 1.0, 0.0])
    return _unit(p)


def _alkane(n_carbon: int) -> tuple[list[str], np.ndarray]:
    """C_N H_2N+2 in the all-trans, staggered conformation: (symbols, (3N+2, 3) positions Å)."""
    theta = math.radians(TETRAHEDRAL_DEG)
    if n_carbon == 1:
        dirs = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / math.sqrt(3.0)
        return ["C"] + ["H"] * 4, np.vstack([np.zeros(3), C_H_A * dirs])
    # Zigzag carbon backbone in the xy plane.
    dx, dy = C_C_SINGLE_A * math.sin(theta / 2), C_C_SINGLE_A * math.cos(theta / 2)
    carbons = np.array([[k * dx, (k % 2) * dy, 0.0] for k in range(n_carbon)])
    hydrogens = []
    alpha = math.pi - theta  # angle between a C–H bond and the continuation of the C–C bond
    for k in range(n_carbon):
        bonded = [carbons[q] - carbons[k] for q in (k - 1, k + 1) if 0 <= q < n_carbon]
        if len(bonded) == 2:  # CH2: the two H in the plane ⟂ the C–C–C plane
            b1, b2 = _unit(bonded[0]), _unit(bonded[1])
            bis, perp = _unit(-(b1 + b2)), _unit(np.cross(b1, b2))
            for sign in (1.0, -1.0):
                hydrogens.append(carbons[k] + C_H_A * (math.cos(theta / 2) * bis + sign * math.sin(theta / 2) * perp))
        else:  # CH3: three H around the C–C axis, one anti to the next carbon along the chain
            axis = _unit(-bonded[0])
            neighbour = k + 1 if k == 0 else k - 1
            beyond = [q for q in (neighbour - 1, neighbour + 1) if 0 <= q < n_carbon and q != k]
            if beyond:
                reference = carbons[beyond[0]] - carbons[neighbour]
            elif hydrogens:  # ethane's second methyl: stagger against the first
                reference = hydrogens[0] - carbons[neighbour]
            else:
                reference = np.array([0.0, 1.0, 0.0])
            e1 = -_perpendicular(axis, reference)
            e2 = np.cross(axis, e1)
            for phi in (0.0, 2 * math.pi / 3, 4 * math.pi / 3):
                direction = math.cos(alpha) * axis + math.sin(alpha) * (math.cos(phi) * e1 + math.sin(phi) * e2)
                hydrogens.append(carbons[k] + C_H_A * direction)
    return ["C"] * n_carbon + ["H"] * len(hydrogens), np.vstack([carbons, np.array(hydrogens)])


def _benzene() -> tuple[list[str], np.ndarray]:
    """C6H6, planar in xy: (symbols, (12, 3) positions Å)."""
    phi = np.arange(6) * math.pi / 3
    ring = np.column_stack([np.cos(phi), np.sin(phi), np.zeros(6)])
    return ["C"] * 6 + ["H"] * 6, np.vstack([C_C_AROMATIC_A * ring, (C_C_AROMATIC_A + C_H_A) * ring])


def molecule(name: str, vacuum: float = MOLECULE_VACUUM_A) -> Atoms:
    """A small hydrocarbon centred in a non-periodic box.

    Args:
        name: ``benzene`` (aromatic C–C 1.40 Å), ``methane``, ``ethane``, ``propane``, ``butane``
            or ``alkane-N`` (C_N H_2N+2, N ≥ 1; all-trans, staggered, C–C 1.54 Å, tetrahedral
            angles). C–H is 1.09 Å throughout.
        vacuum: empty space between the molecule's extent and the box faces on each side, Å.

    Returns:
        Atoms with pbc (False, False, False); carbons first, then hydrogens.
    """
    key = name.strip().lower()
    match = re.fullmatch(r"alkane-(\d+)", key)
    if key == "benzene":
        symbols, positions = _benzene()
    elif key in _ALKANE_NAMES or (match and int(match.group(1)) >= 1):
        n_carbon = _ALKANE_NAMES.get(key) or int(match.group(1))
        _check_size(3 * n_carbon + 2, f"alkane-{n_carbon}", "use a smaller N")
        symbols, positions = _alkane(n_carbon)
    else:
        raise SagesnetError(f"unknown molecule {name!r}; use one of {', '.join(MOLECULES)} (N ≥ 1)")
    _check_lengths(None, vacuum=vacuum)
    lo, hi = positions.min(axis=0), positions.max(axis=0)
    box = hi - lo + 2.0 * vacuum
    positions = positions - (lo + hi) / 2.0 + box / 2.0
    formula = f"C{symbols.count('C')}H{symbols.count('H')}"
    return Atoms(symbols, positions, np.diag(box), [False, False, False],
                 info={"structure": "molecule", "name": key, "formula": formula})


def _check_size(n_atoms: int, what: str, fix: str = "use fewer cells") -> None:
    """Refuse a structure of more than :data:`MAX_ATOMS` atoms before it is allocated."""
    if n_atoms > MAX_ATOMS:
        raise SagesnetError(f"{what} would hold {n_atoms:,} atoms, more than the {MAX_ATOMS:,} a builder makes; {fix}")


def _check_lengths(a_cc: float | None, **vacuum: float) -> None:
    """``a_cc`` (Å, None: not used) inside :data:`A_CC_RANGE_A`; each vacuum length (Å) positive
    and at most :data:`MAX_VACUUM_A`."""
    lo, hi = A_CC_RANGE_A
    if a_cc is not None and not lo <= a_cc <= hi:
        raise SagesnetError(f"a_cc {a_cc} Å is not a C–C bond length; give one between {lo} and {hi} Å "
                            f"(graphene: {A_CC})")
    for name, value in vacuum.items():
        if not 0 < value <= MAX_VACUUM_A:
            raise SagesnetError(f"{name} must be positive and at most {MAX_VACUUM_A:g} Å (got {value}); give a "
                                "length in Å")
