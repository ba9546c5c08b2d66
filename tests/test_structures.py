"""Builders: atom counts, bond lengths, kirigami cuts and refusals, nanotube radius, molecule formulas."""

import math

import numpy as np
import pytest

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.structures import (
    A_CC, BOND_FACTOR, bond_pairs, coordination, graphene_sheet, kirigami, molecule, nanotube,
    parse_kirigami_pattern, ribbon)

CUTOFF = BOND_FACTOR * A_CC


@pytest.mark.parametrize("orientation", ["armchair", "zigzag"])
def test_graphene_every_carbon_has_three_neighbours_at_a_cc(orientation):
    sheet = graphene_sheet(4, 3, orientation)
    assert len(sheet) == 4 * 4 * 3
    assert sheet.pbc.tolist() == [True, True, False]
    i, _, d = bond_pairs(sheet.positions, sheet.cell, sheet.pbc, CUTOFF)
    assert np.all(np.bincount(i, minlength=len(sheet)) == 3)
    np.testing.assert_allclose(d, A_CC, atol=1e-9)
    sheet.validate()


def test_graphene_smallest_cell_counts_bonds_through_images():
    sheet = graphene_sheet(1, 1)
    assert coordination(sheet, CUTOFF).tolist() == [3, 3, 3, 3]


def test_ribbon_is_periodic_along_x_only_with_armchair_edges():
    rib = ribbon(5, 4, vacuum_y=12.0, vacuum_z=15.0)
    assert len(rib) == 80
    assert rib.pbc.tolist() == [True, False, False]
    width = 4 * math.sqrt(3) * A_CC
    assert rib.info["nominal_width_A"] == pytest.approx(width)
    assert rib.info["nominal_thickness_A"] == 3.35
    np.testing.assert_allclose(np.diag(rib.cell), [5 * 3 * A_CC, width + 12.0, 15.0])
    y = rib.positions[:, 1]
    assert y.min() == pytest.approx(6.0) and y.max() < rib.cell[1, 1] - 6.0 + 1e-9
    coord = coordination(rib, CUTOFF)
    # Armchair edges: 2 edge atoms per cell on each edge keep 2 neighbours, the rest have 3.
    assert (coord == 2).sum() == 2 * 2 * 5 and (coord == 3).sum() == 80 - 20
    rib.validate()


def test_ribbon_refuses_no_vacuum():
    with pytest.raises(SagesnetError, match="vacuum"):
        ribbon(3, 3, vacuum_y=0.0)


def test_periodic_y_ribbon_is_the_same_atoms_with_y_periodic():
    open_y, periodic = kirigami("110000011000110", 7, 6), kirigami("110000011000110", 7, 6, periodic_y=True)
    assert periodic.pbc.tolist() == [True, True, False] and open_y.pbc.tolist() == [True, False, False]
    np.testing.assert_array_equal(periodic.positions, open_y.positions)
    np.testing.assert_array_equal(periodic.cell, open_y.cell)
    # the images across y stay further apart than the AIREBO cutoff: coordination is unchanged
    np.testing.assert_array_equal(coordination(periodic, 10.2), coordination(open_y, 10.2))
    with pytest.raises(SagesnetError, match="AIREBO cutoff"):
        ribbon(3, 3, vacuum_y=8.0, periodic_y=True)


def test_kirigami_default_size_and_uncut_count():
    uncut = kirigami("0" * 15)
    assert len(uncut) == 2720
    assert uncut.info["n_removed"] == 0
    assert uncut.pbc.tolist() == [True, False, False]


def test_pattern_digit_order_is_column_major():
    grid = parse_kirigami_pattern("100000000000001")
    assert grid.shape == (3, 5)
    assert grid[0, 0] and grid[2, 4] and grid.sum() == 2


@pytest.mark.parametrize("cut", ["orthogonal", "parallel"])
def test_kirigami_cut_removes_atoms_in_its_block_only(cut):
    nx, ny = 13, 10
    uncut = kirigami("0" * 15, nx, ny, cut)
    # One cut: column 1 (middle), row 2 (middle) = digit 1*5 + 2.
    atoms = kirigami("000000010000000", nx, ny, cut)
    assert 0 < atoms.info["n_removed"] == len(uncut) - len(atoms)
    assert atoms.ids.tolist() == list(range(1, len(atoms) + 1))
    cell_x = 3 * A_CC
    block_w = (nx - 4) * cell_x / 3
    block_h = ribbon(nx, ny).info["nominal_width_A"] / 5
    x0, y0 = 2 * cell_x + block_w, 10.0 + 2 * block_h
    # Every atom that disappeared lies in the cut block (dangling atoms are removed next to it).
    kept = {tuple(np.round(p, 6)) for p in atoms.positions}
    gone = np.array([p for p in uncut.positions if tuple(np.round(p, 6)) not in kept])
    assert len(gone) == atoms.info["n_removed"]
    assert np.all((gone[:, 0] > x0 - A_CC) & (gone[:, 0] < x0 + block_w + A_CC))
    assert np.all((gone[:, 1] > y0 - A_CC) & (gone[:, 1] < y0 + block_h + A_CC))
    if cut == "orthogonal":  # slit across x: the middle third of the block in x
        assert np.ptp(gone[:, 0]) < block_w / 3 + 3 * A_CC and np.ptp(gone[:, 1]) > block_h - 3 * A_CC
    else:  # slit along x: the middle third of the block in y
        assert np.ptp(gone[:, 1]) < block_h / 3 + 3 * A_CC and np.ptp(gone[:, 0]) > block_w - 3 * A_CC
    # No atom is left with fewer than 2 neighbours.
    assert coordination(atoms, CUTOFF).min() >= 2
    atoms.validate()


def test_kirigami_refuses_patterns_that_sever_the_ribbon():
    with pytest.raises(SagesnetError, match="severs the ribbon"):
        kirigami("000001111100000", 13, 10)
    # Parallel slits never sever: the same digits are fine.
    assert len(kirigami("000001111100000", 13, 10, "parallel")) < 13 * 10 * 4


@pytest.mark.parametrize("pattern", ["0101", "01010010100101x", "0" * 16, "2" * 15])
def test_kirigami_refuses_malformed_patterns(pattern):
    with pytest.raises(SagesnetError, match="15 binary digits"):
        kirigami(pattern, 13, 10)


def test_kirigami_refuses_bad_cut_and_small_ribbon():
    with pytest.raises(SagesnetError, match="cut"):
        kirigami("0" * 15, 13, 10, cut="diagonal")
    with pytest.raises(SagesnetError, match="at least"):
        kirigami("0" * 15, 6, 10)


@pytest.mark.parametrize("n,m,per_cell", [(10, 0, 40), (5, 5, 20), (6, 3, 84)])
def test_nanotube_counts_radius_and_bonds(n, m, per_cell):
    tube = nanotube(n, m, length_cells=2)
    assert len(tube) == 2 * per_cell
    assert tube.pbc.tolist() == [False, False, True]
    expected_r = math.sqrt(3) * A_CC * math.sqrt(n * n + n * m + m * m) / (2 * math.pi)
    axis = np.diag(tube.cell)[:2] / 2
    radii = np.linalg.norm(tube.positions[:, :2] - axis, axis=1)
    np.testing.assert_allclose(radii, expected_r, rtol=1e-9)
    assert tube.info["radius_A"] == pytest.approx(expected_r)
    i, _, d = bond_pairs(tube.positions, tube.cell, tube.pbc, CUTOFF)
    assert np.all(np.bincount(i, minlength=len(tube)) == 3)
    assert np.all((d > 0.98 * A_CC) & (d <= A_CC + 1e-9))  # rolling shortens bonds slightly
    tube.validate()


def test_nanotube_refuses_bad_indices():
    with pytest.raises(SagesnetError, match="nanotube"):
        nanotube(3, 5)


@pytest.mark.parametrize("name,formula,n_cc", [
    ("benzene", "C6H6", 6), ("methane", "C1H4", 0), ("ethane", "C2H6", 1), ("propane", "C3H8", 2),
    ("butane", "C4H10", 3), ("alkane-8", "C8H18", 7)])
def test_molecule_formula_and_geometry(name, formula, n_cc):
    mol = molecule(name)
    assert mol.info["formula"] == formula
    assert mol.pbc.tolist() == [False, False, False]
    i, j, d = bond_pairs(mol.positions, mol.cell, mol.pbc, 1.6)
    pairs = {(a, b): dist for a, b, dist in zip(i, j, d) if a < b}
    kinds = [(("".join(sorted(mol.symbols[[a, b]]))), dist) for (a, b), dist in pairs.items()]
    ch = [dist for kind, dist in kinds if kind == "CH"]
    cc = [dist for kind, dist in kinds if kind == "CC"]
    assert len(ch) == (mol.symbols == "H").sum()
    np.testing.assert_allclose(ch, 1.09, atol=1e-9)
    assert len(cc) == n_cc
    np.testing.assert_allclose(cc, 1.40 if name == "benzene" else 1.54, atol=1e-9)
    assert not [k for k, _ in kinds if k == "HH"]
    # Centred in its box with vacuum on every side.
    centre = (mol.positions.min(axis=0) + mol.positions.max(axis=0)) / 2
    np.testing.assert_allclose(centre, np.diag(mol.cell) / 2, atol=1e-9)
    mol.validate()


def test_alkane_angles_are_tetrahedral():
    mol = molecule("propane")
    c = mol.positions[mol.symbols == "C"]
    v1, v2 = c[0] - c[1], c[2] - c[1]
    angle = math.degrees(math.acos(np.dot(v1, v2) / np.linalg.norm(v1) / np.linalg.norm(v2)))
    assert angle == pytest.approx(109.47, abs=0.01)


@pytest.mark.parametrize("name", ["water", "alkane-0", "alkane-x"])
def test_molecule_refuses_unknown_names(name):
    with pytest.raises(SagesnetError, match="unknown molecule"):
        molecule(name)
