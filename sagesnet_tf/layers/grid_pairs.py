"""Atom pairs closer than a cutoff, found through the atom grid, and their radial features.

The learned pair terms of the atom model (:class:`~sagesnet_tf.layers.PairForces`,
:class:`~sagesnet_tf.layers.PairStress`) both need, for every atom, its neighbours within a cutoff
and a description of each pair's distance and elements. Neighbours come from the atom grid: each
atom reads the slots of the voxels within ``radius = ceil(cutoff / h)`` cells per axis (periodic
axes wrap, open axes see empty space) and measures the occupied ones (:meth:`GridPairs.search`),
so the cost is linear in the number of atoms. This is exact while ``radius × voxel edge ≥ cutoff``
on every axis and every periodic axis has at least
``2·radius + 1`` cells; both are checked in the graph.

A pair's features are Gaussian radial functions of its distance (centres from
:data:`BASIS_START` to the cutoff, :data:`BASIS_SPACING` apart and wide, switched off smoothly over
the last :data:`TAPER_WIDTH`) times the pair's element code (one-hot of i + one-hot of j, so the
learned function is symmetric in the two elements): a learned term linear in them is a smooth
radial function per element pair that vanishes at the cutoff.
"""

from __future__ import annotations

import itertools
import math

import keras
import numpy as np
import tensorflow as tf

from sagesnet_tf.grid import VELOCITY_SCALE, split_slot_features

#: Spacing (and width) of the Gaussian radial features, Å.
BASIS_SPACING = 0.1
#: Distance of the first radial feature, Å (closer pairs get no learned term).
BASIS_START = 0.9
#: Width of the smooth switch-off below the cutoff, Å.
TAPER_WIDTH = 0.3


def switch(distance: tf.Tensor, cutoff: float) -> tf.Tensor:
    """(P,) the smooth switch-off of the pair features at ``cutoff`` Å for pairs at ``distance`` (P,) Å:
    1 below cutoff − :data:`TAPER_WIDTH`, 0 from the cutoff on, a half cosine between."""
    return 0.5 + 0.5 * tf.cos(np.pi * tf.clip_by_value((distance - cutoff + TAPER_WIDTH) / TAPER_WIDTH, 0., 1.))


class GridPairs:
    """Neighbour search and pair features for one model's atom grid (no weights).

    Args:
        cutoff: Å, pairs farther apart are left out.
        h: the model's nominal voxel edge, Å (sets the neighbour window).
        slots: S, atom slots per voxel.
        boundary: per axis ``'periodic'`` or ``'open'`` (``'tiled'`` is refused: the neighbour
            atoms of other tiles are not available).
        n_elements: element classes in the slot features.
        velocity_scale: Å/ps per unit of the slot velocity features.
        bond_neighbours: k > 0 splits every pair's features in two: one set for bonded pairs (each
            atom among the other's k nearest neighbours), one for the rest, so that the learned
            function of a stretched bond and that of a non-bonded pair at the same distance differ
            (for sp² carbon k = 3: a bond stretched to 1.9 Å pulls hard, a second neighbour squeezed
            to 1.9 Å does not). 0: one set for all pairs.
    """

    def __init__(self, cutoff: float, h: float, slots: int, boundary, n_elements: int, velocity_scale: float,
                 bond_neighbours: int = 0):
        self.cutoff, self.h, self.slots = float(cutoff), float(h), int(slots)
        self.bond_neighbours = int(bond_neighbours)
        self.boundary = tuple(str(b) for b in boundary)
        self.n_elements, self.velocity_scale = int(n_elements), float(velocity_scale)
        if "tiled" in self.boundary:
            raise ValueError("pair terms need the neighbour atoms: 'tiled' boundaries are not supported")
        self.radius = math.ceil(self.cutoff / self.h - 1e-6)
        ranges = [range(-self.radius, self.radius + 1)] * 3
        self.window = np.array(list(itertools.product(*ranges)), dtype=np.int32)          # (K, 3)
        self.candidate_cells = np.repeat(self.window, self.slots, axis=0).astype(np.float32)  # (K·S, 3) = M
        self.centers = np.arange(BASIS_START, self.cutoff, BASIS_SPACING, dtype=np.float32)

    @property
    def n_features(self) -> int:
        """Features per pair: radial functions × elements (× 2, bonded or not, with ``bond_neighbours``)."""
        return len(self.centers) * self.n_elements * (2 if self.bond_neighbours else 1)

    def _slot_table(self, grid_shape, assignment):
        """(B, X+2r, Y+2r, Z+2r, S) int32: 1 + index of the atom in each slot, 0 for an empty one,
        padded by the neighbour window (wrapped on periodic axes, empty on open ones)."""
        shape = tf.shape(assignment)
        batch = tf.broadcast_to(tf.range(shape[0])[:, None, None], [shape[0], shape[1], 1])
        atoms = tf.broadcast_to(tf.range(1, shape[1] + 1)[None], shape[:2])
        table = tf.scatter_nd(tf.concat([batch, assignment], -1), atoms,
                              tf.concat([shape[:1], grid_shape, [self.slots]], 0))
        r = self.radius
        for axis, mode in enumerate(self.boundary):
            dim = axis + 1
            if mode == "periodic":
                size = grid_shape[axis]
                table = tf.gather(table, tf.math.floormod(tf.range(-r, size + r), size), axis=dim)
            else:
                table = tf.pad(table, [[r, r] if d == dim else [0, 0] for d in range(5)])
        return table

    def _check_window(self, grid_shape, spacing, reach) -> list:
        """The graph checks that a search at ``reach`` () Å on a grid of ``grid_shape`` (3,) int32
        voxels of edge ``spacing`` (B, 3) Å is exact: the window reaches that far, and every
        periodic axis holds at least 2·radius + 1 voxels (no atom seen twice)."""
        r = self.radius
        checks = [tf.debugging.assert_greater_equal(
            self.max_reach(spacing), reach - 1e-4,
            message=f"pair terms: voxels narrower than pair_cutoff / {self.radius} Å would miss neighbours; "
                    "use a box whose periodic lengths are not just above a multiple of h")]
        for axis, mode in enumerate(self.boundary):
            if mode == "periodic":
                checks.append(tf.debugging.assert_greater_equal(
                    grid_shape[axis], 2 * r + 1,
                    message=f"pair terms: a periodic axis has fewer than {2 * r + 1} voxels (box narrower than "
                            f"{2 * r + 1} × h); use a larger box (replicate the cell) or a smaller pair_cutoff"))
        return checks

    def search(self, grid_shape, assignment, atom_features, spacing, lookahead_ps: float = 0.0,
               reach=None) -> dict:
        """Every ordered pair (i, j) of atoms closer than the cutoff (both (i, j) and (j, i) appear),
        sorted by batch entry, atom i and window slot; no features.

        Only the occupied slots of each atom's window are measured (a sheet fills a few of them).

        Args: as :meth:`__call__`; ``reach``: None, or () float32 Å, find the pairs closer than
            this instead (at least the cutoff, at most :meth:`max_reach`: a neighbour list with a skin).

        Returns:
            dict: ``atom`` (P, 2) int64 (batch entry, atom i), ``other`` (P,) int64 atom j,
            ``slot`` (P,) int64 index of j's slot in i's window (0 … M−1, M = window voxels × S),
            ``cell`` (P, 3) float32 the window cell of j's voxel relative to i's (voxel edges),
            ``separation`` (P, 3) Å (r_j − r_i), ``distance`` (P,) Å.
        """
        grid_shape = tf.cast(grid_shape, tf.int32)
        reach = self.cutoff if reach is None else reach
        with tf.control_dependencies(self._check_window(grid_shape, spacing, reach)):
            table = self._slot_table(grid_shape, assignment)                                  # (B,X',Y',Z',S)
        padded, shape = tf.shape(table), tf.shape(assignment)
        strides = tf.stack([padded[2] * padded[3], padded[3], 1])         # of the table's voxels (ix, iy, iz)
        voxel = (tf.reduce_sum((assignment[:, :, :3] + self.radius) * strides, -1)
                 + tf.range(shape[0])[:, None] * tf.reduce_prod(padded[1:4]))                        # (B,N)
        window = voxel[:, :, None] + tf.reduce_sum(tf.constant(self.window) * strides, -1)          # (B,N,K)
        candidates = tf.reshape(tf.gather(tf.reshape(table, [-1, self.slots]), window),
                                [shape[0], shape[1], -1])                                            # (B,N,M)
        own_atom = tf.range(1, shape[1] + 1)[None, :, None]
        occupied = tf.where((candidates > 0) & (candidates != own_atom))                           # (Q,3)
        other = tf.cast(tf.gather_nd(candidates, occupied), tf.int64) - 1                           # (Q,)
        cell = tf.gather(tf.constant(self.candidate_cells), occupied[:, 2])                          # (Q,3)
        separation = self.separation(atom_features, occupied[:, :2], other, cell, spacing, lookahead_ps)
        distance = tf.norm(separation, axis=-1)
        near = tf.where(distance < reach)[:, 0]                                                     # (P,)
        return self._found(occupied[:, :2], other, occupied[:, 2], cell, separation, distance, near)

    def search_among(self, atom, other, grid_shape, assignment, atom_features, spacing, lookahead_ps: float = 0.0,
                     reach=None) -> dict:
        """:meth:`search` over the candidate pairs ``atom`` (C, 2) int64 (batch entry, atom i),
        ``other`` (C,) int64 atom j instead of every atom's window: each candidate's window cell and
        slot from the atoms' voxels, its separation by :meth:`separation`, kept when it lies in i's
        window and closer than ``reach``, in the window search's order (batch entry, atom i, window
        slot). Whenever the candidates hold every pair the window search at ``reach`` finds, the
        result is that search's, bit for bit (a two-level neighbour list: candidates found rarely,
        at a wider reach, and measured again at every rebuild of the list: on a 300 K graphene
        sheet three candidates per atom are within reach, against ~26 occupied window slots).

        Args: ``atom``, ``other`` (any order, each ordered pair once); the others as :meth:`search`.
        Returns: as :meth:`search`.
        """
        grid_shape = tf.cast(grid_shape, tf.int32)
        reach = self.cutoff if reach is None else reach
        r, n_atoms = self.radius, tf.shape(assignment, out_type=tf.int64)[1]
        with tf.control_dependencies(self._check_window(grid_shape, spacing, reach)):
            other_atom = tf.stack([atom[:, 0], other], -1)
        step = tf.gather_nd(assignment[..., :3], other_atom) - tf.gather_nd(assignment[..., :3], atom)   # (C,3)
        periodic = tf.constant([b == "periodic" for b in self.boundary])
        cell = tf.where(periodic, tf.math.floormod(step + r, grid_shape) - r, step)          # (C,3) window cell
        side = 2 * r + 1
        slot = (tf.reduce_sum((cell + r) * tf.constant([side * side, side, 1]), -1) * self.slots
                + tf.gather_nd(assignment[..., 3], other_atom))                                 # (C,) 0 … M−1
        cell = tf.cast(cell, tf.float32)
        separation = self.separation(atom_features, atom, other, cell, spacing, lookahead_ps)
        distance = tf.norm(separation, axis=-1)
        near = tf.where(tf.reduce_all(tf.abs(cell) <= r, -1) & (distance < reach))[:, 0]         # (P,)
        key = ((atom[:, 0] * n_atoms + atom[:, 1]) * len(self.candidate_cells)
               + tf.cast(slot, tf.int64))                                                           # (C,)
        near = tf.gather(near, tf.argsort(tf.gather(key, near), stable=True))
        return self._found(atom, other, tf.cast(slot, tf.int64), cell, separation, distance, near)

    @staticmethod
    def _found(atom, other, slot, cell, separation, distance, near) -> dict:
        """The dict of :meth:`search`: the pairs ``near`` (P,) int64 of the measured ``atom`` (Q, 2),
        ``other`` (Q,), ``slot`` (Q,), ``cell`` (Q, 3), ``separation`` (Q, 3), ``distance`` (Q,)."""
        return {"atom": tf.gather(atom, near), "other": tf.gather(other, near), "slot": tf.gather(slot, near),
                "cell": tf.gather(cell, near), "separation": tf.gather(separation, near),
                "distance": tf.gather(distance, near)}

    def max_reach(self, spacing) -> tf.Tensor:
        """() Å, the farthest a search over the neighbour window sees in every direction on voxels of
        edge ``spacing`` (B, 3) Å: ``radius`` × the narrowest edge."""
        return self.radius * tf.reduce_min(spacing)

    def separation(self, atom_features, atom, other, cell, spacing, lookahead_ps: float = 0.0) -> tf.Tensor:
        """(P, 3) Å, r_j − r_i of the pairs ``atom`` (P, 2) int64 (batch entry, atom i), ``other``
        (P,) int64 atom j, whose voxels are ``cell`` (P, 3) voxel edges apart; the other args as
        :meth:`__call__` (differentiable in ``atom_features`` and ``spacing``)."""
        slots, pair = split_slot_features(atom_features, self.n_elements), tf.stack([atom[:, 0], other], -1)
        separation = ((cell + tf.gather_nd(slots["offsets"], pair) - tf.gather_nd(slots["offsets"], atom))
                      * tf.gather(spacing, atom[:, 0]))
        if lookahead_ps:
            separation += ((tf.gather_nd(slots["velocities"], pair) - tf.gather_nd(slots["velocities"], atom))
                           * (self.velocity_scale * lookahead_ps))
        return separation

    def element_code(self, atom_features, atom, other) -> tf.Tensor:
        """(P, n_elements) the pairs' element code, one-hot of i + one-hot of j (pairs as in :meth:`separation`);
        its width is static even where the slot features' is not (graphs traced for any feature width)."""
        code = (split_slot_features(tf.gather_nd(atom_features, tf.stack([atom[:, 0], other], -1)),
                                    self.n_elements)["species_onehot"]
                + split_slot_features(tf.gather_nd(atom_features, atom), self.n_elements)["species_onehot"])
        return tf.reshape(code, [-1, self.n_elements])

    def basis(self, distance) -> tf.Tensor:
        """(P, Kb) the Gaussian radial functions (Kb = ``len(centers)``), switched off over the last
        :data:`TAPER_WIDTH` below the cutoff, of pairs at ``distance`` (P,) Å."""
        return tf.exp(-tf.square((distance[:, None] - self.centers) / BASIS_SPACING)) * switch(distance, self.cutoff)[:, None]

    def __call__(self, grid_shape, assignment, atom_features, spacing, lookahead_ps: float = 0.0) -> dict:
        """Every ordered pair (i, j) of atoms closer than the cutoff (both (i, j) and (j, i) appear).

        Args:
            grid_shape: (3,) int32, X, Y, Z of the atom grid the assignment refers to.
            assignment: (B, N, 4) int32, each atom's voxel (ix, iy, iz) and slot.
            atom_features: (B, N, F) float32, each atom's slot features.
            spacing: (B, 3) float32, Å, the voxel edge per axis.
            lookahead_ps: the separations are extrapolated this far ahead along the atoms'
                relative velocity (0: the positions as given).

        Returns:
            dict: ``atom`` (P, 2) int64 (batch entry, atom i), ``separation`` (P, 3) Å (r_j − r_i),
            ``distance`` (P,) Å, ``features`` (P, n_features).
        """
        found = self.search(grid_shape, assignment, atom_features, spacing, lookahead_ps)
        r = found["distance"]
        code = self.element_code(atom_features, found["atom"], found["other"])                  # (P,n_el)
        features = self.basis(r)[:, :, None] * code[:, None, :]                                  # (P,Kb,n_el)
        if self.bond_neighbours:
            # the k-th nearest neighbour's distance of every atom; a pair is bonded if it is within both
            index = tf.concat([found["atom"], found["slot"][:, None]], -1)                       # (P,3) b,i,m
            window = tf.concat([tf.shape(assignment, out_type=tf.int64)[:2], [len(self.candidate_cells)]], 0)
            farthest = tf.fill(tf.cast(window, tf.int32), -np.inf)
            nearest = -tf.math.top_k(tf.tensor_scatter_nd_update(farthest, index, -r), k=self.bond_neighbours).values
            kth = nearest[..., -1]                                                                  # (B,N)
            other_atom = tf.stack([found["atom"][:, 0], found["other"]], -1)
            # (j's own k-th distance is computed from j's side: equal to r_ij up to rounding, hence the 1e-4 Å)
            bonded = (r <= tf.gather_nd(kth, found["atom"]) + 1e-4) & (r <= tf.gather_nd(kth, other_atom) + 1e-4)
            split = tf.cast(tf.stack([bonded, ~bonded], -1), tf.float32)                            # (P,2)
            features = features[..., None] * split[:, None, None, :]
        features = tf.reshape(features, [-1, self.n_features])
        return {"atom": found["atom"], "separation": found["separation"], "distance": r, "features": features}


class PairTerm(keras.layers.Layer):
    """Base of the learned pair terms: the atom grid's :class:`GridPairs` and one learned radial
    function per element pair (a bias-free, zero-initialised Dense layer over the pair features,
    returned by :meth:`radial`).

    Args:
        cutoff: Å, pairs farther apart are left out.
        h: the model's nominal voxel edge, Å (sets the neighbour window).
        slots: S, atom slots per voxel.
        boundary: per axis ``'periodic'`` or ``'open'``.
        masses: (n_elements,) atomic masses, g/mol.
        velocity_scale: Å/ps per unit of the slot velocity features.
        bond_neighbours: see :class:`GridPairs` (0: one radial function for all pairs).
    """

    def __init__(self, cutoff: float, h: float, slots: int, boundary, masses,
                 velocity_scale: float = VELOCITY_SCALE, bond_neighbours: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.cutoff = float(cutoff)
        self.h = float(h)
        self.slots = int(slots)
        self.boundary = tuple(str(b) for b in boundary)
        self.masses = tuple(float(m) for m in masses)
        self.velocity_scale = float(velocity_scale)
        self.bond_neighbours = int(bond_neighbours)
        self.grid_pairs = GridPairs(cutoff, h, slots, boundary, len(self.masses), velocity_scale, self.bond_neighbours)

    def radial(self) -> keras.layers.Dense:
        """The learned radial function (pair features (P, F) -> (P, 1))."""
        raise NotImplementedError

    @staticmethod
    def split_kernel(kernel: np.ndarray) -> np.ndarray:
        """The radial kernel (F, 1) of a term without ``bond_neighbours`` as that of one with it (2F, 1):
        the same function for bonded and other pairs (features are radial × element × {bonded, other})."""
        return np.repeat(kernel, 2, axis=0)

    def build(self, *args):
        self.radial().build((None, self.grid_pairs.n_features))

    def get_config(self):
        return {**super().get_config(), "cutoff": self.cutoff, "h": self.h, "slots": self.slots,
                "boundary": list(self.boundary), "masses": list(self.masses), "velocity_scale": self.velocity_scale,
                "bond_neighbours": self.bond_neighbours}
