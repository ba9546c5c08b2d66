"""The atom grid (voxelizer): exact slot contents, periodic wrap, open extent, overflow spill and errors."""

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


def _reconstructed(vg):
    """(N, 3) Å: origin + (voxel index + offset)·spacing of every atom, from the grid alone."""
    offsets = split_slot_features(gather_atom_features(vg.atom_grid, vg.assignment))["offsets"].numpy()
    return vg.origin.numpy() + (vg.assignment.numpy()[:, :3] + offsets) * vg.spacing.numpy()


def _crowded_box():
    """25 atoms in a 4 Å box (h = 1: 4×4×4 voxels): 20 spread out (none in or next to the crowd's
    voxel, the lowest at z = 0) and 5 crowded into one voxel, the last two near its y+ and z- faces."""
    spread = np.array([[3.5, y + 0.5, z] for y in range(4) for z in range(4)] + [[0.5, 3.5, z] for z in range(4)])
    crowd = np.array([[1.5, 1.5, 1.45], [1.45, 1.5, 1.55], [1.1, 1.5, 1.5], [1.5, 1.95, 1.5], [1.5, 1.5, 1.02]])
    return np.concatenate([spread, crowd]).astype(np.float32)


@pytest.mark.parametrize("pbc", [PERIODIC, [True, True, False]])
def test_crowded_voxel_spills_to_the_neighbour_across_the_nearest_face(pbc):
    pos = _crowded_box()
    vel = np.arange(pos.size, dtype=np.float32).reshape(pos.shape) / 10.0
    vg = voxelize(pos, vel, np.zeros(len(pos), np.int32), [4.0, 4.0, 4.0], [0, 0, 0], pbc, 1.0, 3)
    assign, spilled = vg.assignment.numpy(), vg.spilled.numpy()
    # every atom exactly once: distinct (voxel, slot), one occupied slot each, own velocity read back
    assert len({tuple(a) for a in assign}) == len(pos) == vg.atom_grid.numpy()[..., 0].sum()
    feats = split_slot_features(gather_atom_features(vg.atom_grid, vg.assignment))
    np.testing.assert_allclose(feats["velocities"].numpy() * 10.0, vel, atol=1e-5)
    # the three lowest-index atoms of the crowd keep their voxel and slots 0, 1, 2 (natives first)
    home = assign[20, :3]
    np.testing.assert_array_equal(assign[20:23], [[*home, 0], [*home, 1], [*home, 2]])
    np.testing.assert_array_equal(np.flatnonzero(spilled), [23, 24])
    # atom 23 is 0.05 voxel from the y+ face, atom 24 0.02 from the z- face: one face step each
    np.testing.assert_array_equal(assign[23, :3] - home, [0, 1, 0])
    np.testing.assert_array_equal(assign[24, :3] - home, [0, 0, -1])
    # offsets are relative to the new voxel, unclipped: the grid still says where each atom is
    np.testing.assert_allclose(_reconstructed(vg), pos, atol=1e-5)
    np.testing.assert_allclose(feats["offsets"].numpy()[23:], [[0.5, -0.05, 0.5], [0.5, 0.5, 1.02]], atol=1e-5)


def test_spill_wraps_periodic_axes_and_ranks_natives_before_spilled_atoms():
    # 5 atoms in voxel (0, 0, 0) of a 3×3×3 periodic grid (2 spill), the last one nearest its x- face: it
    # wraps to voxel (2, 0, 0), where two natives already sit: it takes slot 2 after them
    pos = np.array([[2.5, 0.5, 0.5], [0.5, 0.5, 0.4], [0.5, 0.4, 0.5], [0.4, 0.5, 0.5], [0.45, 0.5, 0.6],
                    [0.05, 0.5, 0.5], [2.6, 0.5, 0.5]], np.float32)
    vg = voxelize(pos, np.zeros_like(pos), np.zeros(7, np.int32), [3.0, 3.0, 3.0], [0, 0, 0], PERIODIC, 1.0, 3)
    assign = vg.assignment.numpy()
    np.testing.assert_array_equal(assign[5], [2, 0, 0, 2])
    np.testing.assert_array_equal(assign[[0, 6], 3], [0, 1])
    np.testing.assert_allclose(_reconstructed(vg)[5], [3.05, 0.5, 0.5], atol=1e-5)  # = 0.05 + one box length


def test_spilling_works_inside_a_graph():
    @tf.function(input_signature=[tf.TensorSpec([None, 3]), tf.TensorSpec([3], tf.bool)])
    def graph_voxelize(p, pbc):
        return voxelize(p, tf.zeros_like(p), tf.zeros(tf.shape(p)[:1], tf.int32), [4.0, 4.0, 4.0], tf.zeros(3),
                        pbc, 1.0, 3)

    pos = _crowded_box()
    eager = voxelize(pos, np.zeros_like(pos), np.zeros(len(pos), np.int32), [4.0, 4.0, 4.0], [0, 0, 0],
                     PERIODIC, 1.0, 3)
    g = graph_voxelize(pos, PERIODIC)
    np.testing.assert_array_equal(g.assignment.numpy(), eager.assignment.numpy())
    np.testing.assert_array_equal(g.atom_grid.numpy(), eager.atom_grid.numpy())
    assert g.spilled.numpy().sum() == 2
    with pytest.raises(tf.errors.InvalidArgumentError, match="atom grid overflow"):
        graph_voxelize(np.full((30, 3), 1.5, np.float32), PERIODIC)


def test_uncrowded_grid_is_the_plain_binning():
    """Nothing spills when no voxel overflows: slots, offsets and grid are the plain binning,
    computed here independently in numpy (periodic x, y; open z from the lowest atom - 1 voxel)."""
    sheet = graphene_sheet(4, 3)
    sheet.positions += np.random.default_rng(0).normal(scale=0.1, size=sheet.positions.shape)
    vg = voxelize_atoms(sheet, h=1.8, slots=3)
    pos = sheet.positions.astype(np.float32)
    lengths = np.diag(sheet.cell).astype(np.float32)
    n = np.ceil(lengths[:2] / np.float32(1.8) - 1e-4)
    spacing = np.array([*(lengths[:2] / n), 1.8], np.float32)
    origin = np.array([0, 0, pos[:, 2].min() - np.float32(1.8)], np.float32)
    rel = (pos - origin) / spacing
    rel[:, :2] = np.mod(rel[:, :2], n)
    index = np.floor(rel).astype(np.int32)
    slot = np.array([sum(np.array_equal(index[j], index[i]) for j in range(i)) for i in range(len(pos))])
    np.testing.assert_array_equal(vg.assignment.numpy(), np.concatenate([index, slot[:, None]], 1))
    assert not vg.spilled.numpy().any() and slot.max() < 3
    offsets = split_slot_features(gather_atom_features(vg.atom_grid, vg.assignment))["offsets"].numpy()
    np.testing.assert_allclose(offsets, rel - index, atol=1e-6)
    assert vg.atom_grid.numpy()[..., 0].sum() == len(pos)


def test_impossible_crowd_is_an_error_naming_the_voxel_and_the_fix():
    pos = np.concatenate([np.full((30, 3), 1.5), [[3.5, 3.5, 3.5]]])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=r"voxel \(ix, iy, iz\) = \(1, 1, 1\) holds 30 atoms .* 3 slots.*smaller h or more slots"):
        voxelize(pos, np.zeros_like(pos), np.zeros(31, np.int32), [4.0, 4.0, 4.0], [0, 0, 0], PERIODIC, 1.0, 3)


def test_atoms_front_end_raises_one_line_user_errors():
    crowd = Atoms(np.array(["C"] * 30), np.full((30, 3), 2.0), np.diag([4.0, 4.0, 4.0]), np.array([True] * 3))
    with pytest.raises(SagesnetError, match=r"^atom grid overflow: voxel .*smaller h or more slots$"):
        voxelize_atoms(crowd, h=1.0, slots=3)
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


def test_frames_fit_counts_a_crowded_voxel_the_spill_can_place_and_not_a_full_grid():
    from sagesnet_tf.grid import frames_fit, max_voxel_occupancy

    h, slots = 1.8, 3
    # frame 0, an 18 Å periodic box (10 voxels a side): 4 atoms in voxel (0, 0, 0), 78 alone in far
    # voxels; the spill moves one of the 4 to an empty neighbour
    crowded = np.array([[0.2, 0.2, 0.2], [0.5, 0.3, 0.4], [0.9, 0.8, 0.3], [1.2, 1.1, 1.0]])
    cells = np.stack(np.meshgrid(*[np.arange(10)] * 3, indexing="ij"), -1).reshape(-1, 3)
    alone = (cells[cells.sum(-1) >= 6][:78] + 0.5) * h
    # frame 1, a 5.4 Å periodic box (3 voxels a side): every voxel holds 3 atoms, and one more: no room
    centres = (np.stack(np.meshgrid(*[np.arange(3)] * 3, indexing="ij"), -1).reshape(-1, 3) + 0.5) * h
    full = np.concatenate([centres + d for d in (-0.3, 0.0, 0.3)] + [centres[:1] + 0.1])
    frames = np.stack([np.concatenate([crowded, alone]), full])                                  # (2, 82, 3)
    boxes = np.array([[18.0] * 3, [5.4] * 3])
    assert max_voxel_occupancy(frames, boxes, [True] * 3, h).tolist() == [4, 4]
    assert frames_fit(frames, boxes, [True] * 3, h, slots).tolist() == [True, False]
