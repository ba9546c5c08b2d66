"""The atom grid: atoms binned into voxels with a fixed number of atom slots each (TF ops).

:func:`voxelize` turns one structure into an atom grid of shape ``(X, Y, Z, S, F)``: ``X·Y·Z``
voxels, ``S`` slots per voxel, ``F`` features per slot laid out as

====================  ==========================  ===================================
features              slice                       meaning
====================  ==========================  ===================================
occupancy             ``[0]``                     1 for an atom, 0 for an empty slot
element one-hot       ``[1 : 1+n_el]``            index into :data:`sagesnet_tf.atoms.ELEMENTS`
offset                ``[1+n_el : 4+n_el]``       position inside the voxel / spacing, in [0, 1)
velocity              ``[4+n_el : 7+n_el]``       velocity / ``velocity_scale`` (Å/ps / Å/ps)
====================  ==========================  ===================================

so ``F = 7 + n_el`` (9 for C and H). Empty slots are all zeros. :func:`voxel_slots` places the
atoms alone (each one's voxel, slot and features), without the dense grid.

Geometry (orthorhombic cells only; :func:`voxelize_atoms` refuses triclinic cells):

- **Periodic axis** of box length ``L``: ``n = ceil(L / h)`` voxels (``L/h`` within 1e-4 of an
  integer counts as that integer) of edge ``L / n`` ≤ ``h``: the edge is shrunk from ``h`` so
  the grid tiles the box exactly and wraps, and never grows (so a slot count that suffices for
  ``h`` suffices for the adjusted edge). The grid starts at the box origin; positions are
  wrapped into the box first.
- **Non-periodic axis**: voxels of edge exactly ``h`` spanning the atoms' extent plus
  ``margin_cells`` empty voxels on each side: vacuum in the box costs nothing. The grid's lower
  corner is ``min(position) - margin_cells·h``.

Slots inside a voxel are filled in increasing atom index (deterministic). **Overflow spills to a
neighbour** (bookkeeping must not end a physically healthy run): an atom whose rank in its voxel
is ≥ ``S`` moves to the voxel across its nearest face (smallest distance to a face of its own
voxel; a periodic axis wraps, a non-periodic one offers only faces inside the grid), with its
offset taken relative to the new voxel, so ``origin + (index + offset)·spacing`` is still its
position (a spilled offset lies in [-0.5, 1.5) along the axis it crossed, never clipped). Native
atoms keep their slots before spilled ones (slots ranked by voxel, spilled?, atom index). An atom
that again finds no free slot tries the next-nearest face of its own voxel, for
:data:`SPILL_PASSES` passes; only a voxel still over ``S`` after those raises
``tf.errors.InvalidArgumentError`` naming the voxel and the fix (smaller ``h`` or more slots);
atoms are never dropped silently. When no voxel overflows nothing moves: the result is the plain
binning, and the spill passes are skipped (a ``tf.cond``).

Batching: one structure per call (the grid shape depends on the structure); batch several
structures of the same grid shape by stacking the results, or use ``tf.map_fn`` with a fixed
signature. Every op is a core TensorFlow op, so the function can live inside an exported
SavedModel.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from sagesnet_tf.atoms import ELEMENTS, Atoms
from sagesnet_tf.errors import SagesnetError

#: Default velocity normalisation (Å/ps): thermal C velocities at 300 K are ~4.6 Å/ps per axis.
VELOCITY_SCALE = 10.0

#: Faces an overflowing atom tries, nearest first, before :func:`voxelize` reports an overflow
#: (the three nearest faces of a voxel are each at most half a voxel edge away).
SPILL_PASSES = 3


def slot_feature_size(n_elements: int = len(ELEMENTS)) -> int:
    """F, the number of features per slot: occupancy, element one-hot, offset (3), velocity (3)."""
    return 7 + n_elements


class VoxelGrid(NamedTuple):
    """Result of :func:`voxelize` for one structure.

    Attributes:
        atom_grid: (X, Y, Z, S, F) float32, slot features (see module docstring).
        assignment: (N, 4) int32, each atom's voxel index (ix, iy, iz) and slot.
        origin: (3,) float32, Å, the grid's lower corner (voxel (0, 0, 0) starts here).
        spacing: (3,) float32, Å, voxel edge per axis.
        spilled: (N,) bool, the atoms placed in a neighbour of their own voxel (overflow spill).
    """

    atom_grid: tf.Tensor
    assignment: tf.Tensor
    origin: tf.Tensor
    spacing: tf.Tensor
    spilled: tf.Tensor


def periodic_cells(box_lengths, h: float, multiple=(1, 1, 1)) -> tf.Tensor:
    """Grid cells along each axis if it is periodic: (..., 3) box lengths Å -> (..., 3) float32,
    the fewest cells no wider than ``h`` (at least one), rounded up to a multiple of ``multiple``."""
    k = tf.constant(multiple, tf.float32)
    return k * tf.maximum(1.0, tf.math.ceil(tf.cast(box_lengths, tf.float32) / (h * k) - 1e-4))


def affine_remap(positions, box_from, box_to, box_origin=0.0):
    """Atom coordinates carried along when an orthorhombic box changes from ``box_from`` to
    ``box_to`` (both (..., 3) Å, origin ``box_origin`` fixed), as LAMMPS ``fix deform … remap x``
    and the barostats do: scaled about the origin by box_to / box_from per axis.
    positions (..., N, 3) Å with box (..., 3) broadcasting over N."""
    factor = (box_to / box_from)[..., None, :]
    return box_origin + (positions - box_origin) * factor


class VoxelSlots(NamedTuple):
    """Where :func:`voxel_slots` places one structure's atoms (the atom grid without its dense array).

    Attributes:
        assignment: (N, 4) int32, each atom's voxel index (ix, iy, iz) and slot.
        atom_features: (N, F) float32, each atom's slot features (see module docstring).
        dims: (3,) int32, X, Y, Z of the grid.
        origin: (3,) float32, Å, the grid's lower corner (voxel (0, 0, 0) starts here).
        spacing: (3,) float32, Å, voxel edge per axis.
        spilled: (N,) bool, the atoms placed in a neighbour of their own voxel (overflow spill).
    """

    assignment: tf.Tensor
    atom_features: tf.Tensor
    dims: tf.Tensor
    origin: tf.Tensor
    spacing: tf.Tensor
    spilled: tf.Tensor


def voxelize(positions, velocities, species, box_lengths, box_origin, pbc, h: float, slots: int,
             n_elements: int = len(ELEMENTS), velocity_scale: float = VELOCITY_SCALE,
             margin_cells: int = 1, multiple=(1, 1, 1), periodic_counts=None) -> VoxelGrid:
    """Bin one structure's atoms into an atom grid: :func:`voxel_slots` (args, raises) with the
    slot features scattered into the dense (X, Y, Z, S, F) array.

    Returns:
        :class:`VoxelGrid`.
    """
    placed = voxel_slots(positions, velocities, species, box_lengths, box_origin, pbc, h, slots, n_elements,
                         velocity_scale, margin_cells, multiple, periodic_counts)
    return VoxelGrid(slot_grid(placed, slots), placed.assignment, placed.origin, placed.spacing, placed.spilled)


def slot_grid(placed: VoxelSlots, slots: int) -> tf.Tensor:
    """(X, Y, Z, S, F) float32, the atom grid of the atoms :func:`voxel_slots` placed (``placed``),
    with ``slots`` S slots per voxel: each atom's features in its slot, empty slots all zeros."""
    shape = tf.concat([placed.dims, [slots, placed.atom_features.shape[-1]]], axis=0)
    return tf.scatter_nd(placed.assignment, placed.atom_features, shape)


def voxel_slots(positions, velocities, species, box_lengths, box_origin, pbc, h: float, slots: int,
                n_elements: int = len(ELEMENTS), velocity_scale: float = VELOCITY_SCALE,
                margin_cells: int = 1, multiple=(1, 1, 1), periodic_counts=None) -> VoxelSlots:
    """Each atom's voxel, slot and slot features, as :func:`voxelize` bins them, without forming
    the dense atom grid (whose size grows with the box's volume: vacuum along a periodic axis).

    Args:
        positions: (N, 3) Å, Cartesian (any float dtype; computed in float32).
        velocities: (N, 3) Å/ps.
        species: (N,) int, index into :data:`~sagesnet_tf.atoms.ELEMENTS`.
        box_lengths: (3,) Å, orthorhombic box edge lengths.
        box_origin: (3,) Å, box lower corner.
        pbc: (3,) bool, periodicity per axis (a tensor is fine: the shape logic is in-graph).
        h: voxel edge, Å (exact along non-periodic axes, shrunk to fit along periodic ones).
        slots: S, atom slots per voxel.
        n_elements: size of the element one-hot.
        velocity_scale: Å/ps that maps to 1.0 in the velocity features.
        margin_cells: empty voxels added on each side along non-periodic axes.
        multiple: (3,) int, the grid size along each axis is rounded up to a multiple of this (a
            model with coarse levels needs its fine grid divisible by the coarsening factors):
            periodic axes take more, narrower voxels; non-periodic axes extra empty voxels at the
            upper side.
        periodic_counts: None, or (3,) int: the cells along each periodic axis, instead of
            :func:`periodic_cells` (e.g. to keep a grid while its box is stretched a little:
            the voxels widen with the box).

    Returns:
        :class:`VoxelSlots`.

    Raises:
        tf.errors.InvalidArgumentError: no atoms, a species out of range, or a voxel overflow that
            the spill passes could not place.
    """
    positions = tf.cast(tf.convert_to_tensor(positions), tf.float32)
    velocities = tf.cast(tf.convert_to_tensor(velocities), tf.float32)
    species = tf.cast(tf.convert_to_tensor(species), tf.int32)
    box_lengths = tf.cast(tf.convert_to_tensor(box_lengths), tf.float32)
    box_origin = tf.cast(tf.convert_to_tensor(box_origin), tf.float32)
    pbc = tf.cast(tf.convert_to_tensor(pbc), tf.bool)
    n_atoms = tf.shape(positions)[0]
    checks = [
        tf.debugging.assert_positive(n_atoms, message="voxelize: the structure has no atoms"),
        tf.debugging.assert_non_negative(species, message="voxelize: negative species index"),
        tf.debugging.assert_less(species, n_elements,
                                 message=f"voxelize: species index >= n_elements ({n_elements})"),
    ]
    with tf.control_dependencies(checks):
        index, offset, dims, origin, spacing = _voxel_coordinates(positions, box_lengths, box_origin, pbc, h,
                                                                   margin_cells, multiple, periodic_counts)
    slot = _slot_ranks(index, dims)
    index, offset, slot, spilled = tf.cond(
        tf.reduce_max(slot) < slots,
        lambda: (index, offset, slot, tf.zeros_like(slot, tf.bool)),
        lambda: _spill(index, offset, slot, dims, pbc, slots))
    assignment = tf.concat([index, slot[:, None]], axis=1)
    features = tf.concat([
        tf.ones_like(positions[:, :1]),
        tf.one_hot(species, n_elements, dtype=tf.float32),
        offset,
        velocities / velocity_scale,
    ], axis=1)
    return VoxelSlots(assignment, features, dims, origin, spacing, spilled)


def _spill(index, offset, slot, dims, pbc, slots: int):
    """The overflow spill of :func:`voxelize` (rule in the module docstring), or InvalidArgument.

    ``index`` (N, 3) int32 voxels and ``offset`` (N, 3) in [0, 1) of the plain binning, ``slot``
    (N,) int32 its ranks, ``dims`` (3,) int32 grid shape, ``pbc`` (3,) bool. Returns the final
    ``index`` (N, 3), ``offset`` (N, 3) (relative to the final voxel), ``slot`` (N,) < ``slots``
    and ``spilled`` (N,) bool.
    """
    # the six faces: x-, x+, y-, y+, z-, z+ as a step to the neighbour voxel
    step = tf.constant(np.repeat(np.eye(3), 2, axis=0) * np.tile([-1, 1], 3)[:, None], tf.int32)  # (6, 3)
    axis = tf.constant([0, 0, 1, 1, 2, 2])
    target = index[:, None, :] + step                                                          # (N, 6, 3)
    inside = tf.reduce_all((target >= 0) & (target < dims), axis=-1)                           # (N, 6)
    usable = tf.where(tf.gather(pbc, axis), tf.gather(dims, axis) > 1, inside)                 # (N, 6)
    target = tf.math.floormod(target, dims)
    face_distance = tf.reshape(tf.stack([offset, 1.0 - offset], axis=-1), [-1, 6])            # (N, 6) voxels
    faces = tf.argsort(tf.where(usable, face_distance, np.inf), axis=-1, stable=True)[:, :SPILL_PASSES]
    attempt = tf.zeros_like(slot)  # 0: own voxel, k: the k-th nearest face
    new_index, new_offset = index, offset
    for _ in range(SPILL_PASSES):
        attempt += tf.cast(slot >= slots, tf.int32)
        face = tf.gather(faces, tf.maximum(attempt - 1, 0), batch_dims=1)                     # (N,)
        # an atom whose face leads off the grid stays home, ranked after the natives: it overflows
        moved = (attempt > 0) & tf.gather(usable, face, batch_dims=1)
        new_index = tf.where(moved[:, None], tf.gather(target, face, batch_dims=1), index)
        new_offset = tf.where(moved[:, None], offset - tf.cast(tf.gather(step, face), tf.float32), offset)
        slot = _slot_ranks(new_index, dims, spilled=attempt > 0)
    worst = tf.argmax(slot, output_type=tf.int32)
    home = index[worst]
    crowd = tf.reduce_sum(tf.cast(tf.reduce_all(index == home, axis=-1), tf.int32))
    msg = tf.strings.format(
        "atom grid overflow: voxel (ix, iy, iz) = ({}, {}, {}) holds {} atoms but the grid has "
        f"{slots} slots per voxel and its neighbours have no room for the rest; use a smaller h or more slots",
        (home[0], home[1], home[2], crowd))
    overflow = tf.debugging.Assert(tf.reduce_max(slot) < slots, [msg])
    with tf.control_dependencies([overflow]):
        return tf.identity(new_index), tf.identity(new_offset), tf.identity(slot), attempt > 0


def _voxel_coordinates(positions, box_lengths, box_origin, pbc, h: float, margin_cells: int, multiple,
                       periodic_counts=None):
    """Where :func:`voxelize` bins atoms, for one structure or a batch of frames.

    positions (..., N, 3) float32 Å; box_lengths, box_origin (..., 3) Å; pbc (3,) bool;
    periodic_counts None or (3,) cells along periodic axes (default :func:`periodic_cells`). Returns
    ``index`` (..., N, 3) int32 voxel, ``offset`` (..., N, 3) in [0, 1) inside it, ``dims``
    (..., 3) int32 grid shape, ``origin`` and ``spacing`` (..., 3) Å.
    """
    n_periodic = (periodic_cells(box_lengths, h, multiple) if periodic_counts is None
                  else tf.cast(periodic_counts, tf.float32))
    h = tf.constant(h, tf.float32)
    k = tf.constant(multiple, tf.float32)
    lowest, highest = tf.reduce_min(positions, axis=-2), tf.reduce_max(positions, axis=-2)
    n_open = k * tf.math.ceil((tf.floor((highest - lowest) / h) + 1.0 + 2.0 * margin_cells) / k)
    dims_f = tf.where(pbc, n_periodic, n_open)
    spacing = tf.where(pbc, box_lengths / n_periodic, h)
    origin = tf.where(pbc, box_origin, lowest - margin_cells * h)
    dims = tf.cast(dims_f, tf.int32)
    rel = (positions - origin[..., None, :]) / spacing[..., None, :]  # (..., N, 3) in voxel units
    rel = tf.where(pbc, tf.math.floormod(rel, dims_f[..., None, :]), rel)
    index = tf.clip_by_value(tf.cast(tf.floor(rel), tf.int32), 0, dims[..., None, :] - 1)
    offset = tf.clip_by_value(rel - tf.cast(index, tf.float32), 0.0, np.nextafter(np.float32(1), 0))
    return index, offset, dims, origin, spacing


def max_voxel_occupancy(positions, box_lengths, pbc, h: float, multiple=(1, 1, 1)) -> np.ndarray:
    """The most atoms :func:`voxelize` bins into one voxel before any overflow spill, per frame:
    positions (F, N, 3) Å, box_lengths (F, 3) Å (origin at 0), pbc (3,) -> (F,) int (a frame fits
    S slots without spilling if ≤ S)."""
    positions = tf.cast(positions, tf.float32)
    index, _, dims, _, _ = _voxel_coordinates(positions, tf.cast(box_lengths, tf.float32), tf.zeros(3),
                                              tf.cast(pbc, tf.bool), h, 0, multiple)
    _, rank = _voxel_runs(index, dims)
    return (tf.reduce_max(rank, axis=-1) + 1).numpy()


def frames_fit(positions, box_lengths, pbc, h: float, slots: int, multiple=(1, 1, 1)) -> np.ndarray:
    """Whether :func:`voxelize` places every atom of each frame: positions (F, N, 3) Å, box_lengths
    (F, 3) Å (origin at 0), pbc (3,) -> (F,) bool. True when no voxel holds more than ``slots``
    atoms, or when the overflow spill finds the extra atoms room in neighbour voxels (only those
    frames are voxelized: a crowded voxel in a buckled sheet fits, a clump of broken atoms may not)."""
    positions = np.asarray(positions, np.float32)
    box_lengths = np.asarray(box_lengths, np.float32)
    fit = max_voxel_occupancy(positions, box_lengths, pbc, h, multiple) <= slots
    for f in np.flatnonzero(~fit):
        n = positions.shape[1]
        try:
            voxelize(positions[f], np.zeros((n, 3), np.float32), np.zeros(n, np.int32), box_lengths[f],
                     np.zeros(3, np.float32), pbc, h, slots, multiple=multiple)
            fit[f] = True
        except tf.errors.InvalidArgumentError:  # the spill found no room: the atom grid overflows
            pass
    return fit


def pad_open_axes(atom_grid: tf.Tensor, pbc, open_cells) -> tf.Tensor:
    """Pad an atom grid (X, Y, Z, S, F) with empty voxels at the upper side of each non-periodic
    axis up to ``open_cells`` cells (int, or (3,) per axis; ignored along periodic axes), so that
    grids of frames whose extents differ stack. InvalidArgument if a grid already has more."""
    dims = tf.shape(atom_grid)[:3]
    extra = tf.where(tf.cast(pbc, tf.bool), tf.zeros(3, tf.int32), tf.cast(open_cells, tf.int32) - dims)
    check = tf.debugging.assert_non_negative(
        extra, message="the structure is thicker along its open axis than the atom grid allows "
                       "(it has grown or broken apart)")
    with tf.control_dependencies([check]):
        pads = tf.concat([tf.stack([tf.zeros(3, tf.int32), extra], axis=1), tf.zeros([2, 2], tf.int32)], axis=0)
        return tf.pad(atom_grid, pads)


def _voxel_runs(index: tf.Tensor, dims: tf.Tensor, spilled=None) -> tuple[tf.Tensor, tf.Tensor]:
    """Atoms grouped by voxel, for one structure or a batch of frames.

    ``index`` (..., N, 3) int32 voxel indices, ``dims`` (..., 3) int32 grid shape, ``spilled``
    None or (..., N) bool. Returns ``order`` (..., N), the atoms sorted by voxel (stably: inside a
    voxel the atoms not spilled first, each group in increasing atom index), and ``rank`` (..., N)
    int32, each sorted atom's rank among the atoms of its voxel.
    """
    dims = dims[..., None, :]
    flat = (index[..., 0] * dims[..., 1] + index[..., 1]) * dims[..., 2] + index[..., 2]
    key = flat if spilled is None else 2 * flat + tf.cast(spilled, tf.int32)
    order = tf.argsort(key, axis=-1, stable=True)
    sorted_flat = tf.gather(flat, order, batch_dims=len(flat.shape) - 1)
    first = tf.searchsorted(sorted_flat, sorted_flat, side="left")
    return order, tf.range(tf.shape(flat)[-1], dtype=tf.int32) - tf.cast(first, tf.int32)


def _slot_ranks(index: tf.Tensor, dims: tf.Tensor, spilled=None) -> tf.Tensor:
    """(N,) int32 rank of each atom among the atoms of its voxel, in increasing atom index (the
    ``spilled`` (N,) bool atoms, if given, after the others).

    ``index`` is (N, 3) int32 voxel indices, ``dims`` (3,) int32 grid shape.
    """
    order, rank = _voxel_runs(index, dims, spilled)
    return tf.gather(rank, tf.math.invert_permutation(order))


def orthorhombic_box(atoms: Atoms) -> tuple[np.ndarray, np.ndarray]:
    """Box lengths (3,) Å and origin (3,) Å of an orthorhombic cell (origin at 0).

    Raises:
        SagesnetError: the cell is triclinic (off-diagonal components).
    """
    cell = np.asarray(atoms.cell, dtype=np.float64)
    off = cell - np.diag(np.diag(cell))
    if np.any(np.abs(off) > 1e-8 * max(1.0, np.abs(cell).max())) or np.any(np.diag(cell) <= 0):
        raise SagesnetError(
            "the atom grid needs an orthorhombic cell (diagonal cell matrix with positive lengths); "
            "convert the structure to an orthogonal supercell first")
    return np.diag(cell).copy(), np.zeros(3)


def voxelize_atoms(atoms: Atoms, h: float, slots: int, velocity_scale: float = VELOCITY_SCALE,
                   margin_cells: int = 1) -> VoxelGrid:
    """:func:`voxelize` for an :class:`~sagesnet_tf.atoms.Atoms` (elements from ``ELEMENTS``).

    Raises:
        SagesnetError: triclinic cell, or a voxel overflow that spilling could not place (message
            names the voxel and the fix).
    """
    lengths, origin = orthorhombic_box(atoms)
    try:
        return voxelize(atoms.positions, atoms.velocities, atoms.species_index, lengths, origin,
                        atoms.pbc, h, slots, len(ELEMENTS), velocity_scale, margin_cells)
    except tf.errors.InvalidArgumentError as err:
        found = re.search(r"atom grid overflow[^'\n]*", err.message)
        if found is None:
            raise
        raise SagesnetError(found.group(0)) from None


def gather_atom_features(atom_grid: tf.Tensor, assignment: tf.Tensor) -> tf.Tensor:
    """Each atom's own slot features.

    Args:
        atom_grid: (..., X, Y, Z, S, F) with leading batch dims ``...`` (possibly none).
        assignment: (..., N, 4) int32 from :func:`voxelize`.

    Returns:
        (..., N, F) float32.
    """
    batch_dims = len(assignment.shape) - 2
    return tf.gather_nd(atom_grid, assignment, batch_dims=batch_dims)


def split_slot_features(features: tf.Tensor, n_elements: int = len(ELEMENTS)) -> dict[str, tf.Tensor]:
    """Named views of slot features (..., F): the targets a :class:`CellDecoder` is trained on.

    Returns:
        dict with ``occupancy`` (...), ``species_onehot`` (..., n_elements), ``offsets`` (..., 3) in
        [0, 1) of the voxel edge, ``velocities`` (..., 3) in units of ``velocity_scale``.
    """
    return {
        "occupancy": features[..., 0],
        "species_onehot": features[..., 1:1 + n_elements],
        "offsets": features[..., 1 + n_elements:4 + n_elements],
        "velocities": features[..., 4 + n_elements:7 + n_elements],
    }


def slot_masses(features: tf.Tensor, masses, n_elements: int = len(ELEMENTS)) -> tf.Tensor:
    """(..., 1) mass (g/mol) of each slot's atom from the element one-hot of its features (..., F);
    ``masses`` (n_elements,) g/mol in element order; 0 for an empty slot."""
    onehot = split_slot_features(features, n_elements)["species_onehot"]
    return tf.reduce_sum(onehot * tf.constant(masses, tf.float32), -1, keepdims=True)
