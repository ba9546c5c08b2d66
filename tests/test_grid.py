"""The atom grid (voxelizer): exact slot contents, periodic wrap, open extent, overflow errors."""

import numpy as np
import pytest
import tensorflow as tf

from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.grid import (gather_atom_features, slot_feature_size, split_slot_features, voxelize,
                              voxelize_atoms)
from sagesnet_tf.structures import graphene_sheet

PERIODIC = [True, True, True]


def test_hand_placed_atoms_fill_exact_slots_in_atom_order():
    # atoms 0 and 2 share voxel (0, 0, 0); atom 2 has the smaller coordinates but the larger index
    pos = np.array([[0.6, 0.5, 0.5], [1.5, 0.25, 0.75], [0.2, 0.1, 0.3]])
    vel = np.array([[1.0, -2.0, 3.0], [0.0, 0.0, 5.0], [-10.0, 0.0, 0.0]])
    vg = voxelize(pos, vel, [0, 1, 0], [4.0, 4.0, 4.0], [0, 0, 0], PERIODIC, h=1.0, slots=2,
                  velocity_scale=10.0)
    assert vg.atom_grid.shape == (4, 4, 4, 2, slot_feature_size(2)) == (4, 4, 4, 2, 9)
    np.testing.assert_array_equal(vg.assignment.numpy(), [[0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])
    grid = vg.atom_grid.numpy()
    np.testing.assert_allclose(grid[0, 0, 0, 0], [1, 1, 0, 0.6, 0.5, 0.5, 0.1, -0.2, 0.3], atol=1e-6)
    np.testing.assert_allclose(grid[0, 0, 0, 1], [1, 1, 0, 0.2, 0.1, 0.3, -1.0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(grid[1, 0, 0, 0], [1, 0, 1, 0.5, 0.25, 0.75, 0, 0, 0.5], atol=1e-6)
    assert grid[1, 0, 0, 1].sum() == 0
    assert grid[..., 0].sum() == 3  # nothing else is occupied
    np.testing.assert_allclose(vg.spacing.numpy(), [1, 1, 1])
    np.testing.assert_allclose(vg.origin.numpy(), [0, 0, 0])
    # each atom reads back its own features
    feats = split_slot_features(gather_atom_features(vg.atom_grid, vg.assignment))
    np.testing.assert_allclose(feats["velocities"].numpy() * 10.0, vel, atol=1e-5)
    np.testing.assert_array_equal(feats["species_onehot"].numpy().argmax(-1), [0, 1, 0])


def test_periodic_axes_wrap_and_adjust_the_voxel_edge():
    pos = np.array([[-0.2, 1.0, 1.0], [10.1, 1.0, 1.0], [5.0, 1.0, 1.0]])
    vg = voxelize(pos, np.zeros_like(pos), [0, 0, 0], [10.0, 10.0, 10.0], [0, 0, 0], PERIODIC,
                  h=3.0, slots=1)
    # ceil(10 / 3) = 4 voxels of 2.5 Å (the edge shrinks to fit the box, never grows)
    assert vg.atom_grid.shape[:3] == (4, 4, 4)
    np.testing.assert_allclose(vg.spacing.numpy(), [2.5] * 3, rtol=1e-6)
    assign = vg.assignment.numpy()
    assert assign[0, 0] == 3 and assign[1, 0] == 0 and assign[2, 0] == 2
    offsets = split_slot_features(gather_atom_features(vg.atom_grid, vg.assignment))["offsets"].numpy()
    np.testing.assert_allclose(offsets[0, 0], (9.8 - 7.5) / 2.5, atol=1e-5)
    np.testing.assert_allclose(offsets[1, 0], 0.1 / 2.5, atol=1e-5)
    np.testing.assert_allclose(offsets[2, 0], 0.0, atol=1e-5)
    exact = voxelize(pos, np.zeros_like(pos), [0, 0, 0], [10.0, 10.0, 10.0], [0, 0, 0], PERIODIC,
                     h=2.0, slots=1)
    assert exact.atom_grid.shape[:3] == (5, 5, 5)
    assert np.all((offsets >= 0) & (offsets < 1))


def test_non_periodic_axis_spans_atoms_plus_margin_only():
    pos = np.array([[0.5, 0.5, 50.0], [1.5, 0.5, 52.5], [0.5, 1.5, 51.0]])
    vg = voxelize(pos, np.zeros_like(pos), [0, 0, 0], [2.0, 2.0, 100.0], [0, 0, 0],
                  [True, True, False], h=1.0, slots=1, margin_cells=1)
    # z: extent 2.5 Å -> floor(2.5) + 1 voxels + 1 margin each side, from z = 49 Å (not 100 Å)
    assert vg.atom_grid.shape[:3] == (2, 2, 5)
    np.testing.assert_allclose(vg.origin.numpy(), [0, 0, 49.0])
    z_index = vg.assignment.numpy()[:, 2]
    np.testing.assert_array_equal(z_index, [1, 3, 2])
    occupancy = vg.atom_grid.numpy()[..., 0]
    assert occupancy[:, :, 0].sum() == 0 and occupancy[:, :, -1].sum() == 0


def test_overflow_is_an_error_naming_the_voxel_and_the_fix():
    pos = np.array([[0.1, 0.1, 0.1], [1.2, 2.1, 0.3], [1.5, 2.5, 0.5], [1.7, 2.9, 0.7]])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"voxel \(ix, iy, iz\) = \(1, 2, 0\) holds 3 atoms .* 2 slots.*smaller h or more slots"):
        voxelize(pos, np.zeros_like(pos), [0, 0, 0, 0], [4.0, 4.0, 4.0], [0, 0, 0], PERIODIC, 1.0, 2)


def test_atoms_front_end_raises_one_line_user_errors():
    sheet = graphene_sheet(2, 2)
    with pytest.raises(SagesnetError, match=r"^atom grid overflow: voxel .*smaller h or more slots$"):
        voxelize_atoms(sheet, h=4.0, slots=2)
    tri = Atoms(["C"], [[0.0, 0.0, 0.0]], [[4, 0, 0], [1, 4, 0], [0, 0, 4]], [True] * 3)
    with pytest.raises(SagesnetError, match="orthorhombic"):
        voxelize_atoms(tri, h=1.0, slots=1)


def test_thermal_graphene_fits_two_slots_at_h_1_8_and_works_in_a_graph():
    sheet = graphene_sheet(4, 3)
    sheet.positions += np.random.default_rng(0).normal(scale=0.1, size=sheet.positions.shape)
    vg = voxelize_atoms(sheet, h=1.8, slots=2)
    assert vg.atom_grid.numpy()[..., 0].sum() == len(sheet)

    @tf.function(input_signature=[tf.TensorSpec([None, 3]), tf.TensorSpec([None, 3]),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([3]),
                                  tf.TensorSpec([3]), tf.TensorSpec([3], tf.bool)])
    def graph_voxelize(p, v, s, lengths, origin, pbc):
        return voxelize(p, v, s, lengths, origin, pbc, 1.8, 2)

    g = graph_voxelize(sheet.positions.astype(np.float32), sheet.velocities.astype(np.float32),
                       sheet.species_index, np.diag(sheet.cell).astype(np.float32),
                       np.zeros(3, np.float32), sheet.pbc)
    np.testing.assert_array_equal(g.assignment.numpy(), vg.assignment.numpy())
    np.testing.assert_allclose(g.atom_grid.numpy(), vg.atom_grid.numpy())
