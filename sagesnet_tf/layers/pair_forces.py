"""Pair forces: a learned central force between every two atoms closer than a cutoff.

The latent grid carries where atoms are only to within its resolution, and a bond's force changes
sharply with its length; so the atom decoder's velocity change gets a second term computed from
the atoms themselves. Every pair (i, j) with ``r_ij < cutoff`` pulls both atoms along their
separation with the same magnitude ``g_{e_i e_j}(r_ij)`` (a learned radial function per element
pair, linear in Gaussian radial features)::

    Δv_i = (m_ref / m_i) · Σ_j g(r_ij) · r̂_ij        (Å/ps over one model step Δ)

The forces are equal and opposite, so this term conserves momentum exactly. ``r_ij`` is taken at
the step's midpoint extrapolated from the current velocities, ``r(t) + (v_j − v_i)·Δ/2``: on
AIREBO graphene NVT data such a pair term, fitted alone by least squares, explains R² ≈ 0.97
(x, y) and 0.93 (z) of the 2-fs velocity change with a 2.6 Å cutoff (0.88 / 0.92 at r(t)).

Neighbours and pair features come from :class:`~sagesnet_tf.layers.grid_pairs.GridPairs` (cost
linear in the number of atoms; exact while the box is large enough, checked in the graph).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sagesnet_tf.grid import VELOCITY_SCALE, slot_masses
from sagesnet_tf.layers.grid_pairs import PairTerm


@keras.saving.register_keras_serializable(package="sagesnet")
class PairForces(PairTerm):
    """(grid_shape, assignment, atom_features, spacing) -> velocity change (B, N, 3) Å/ps.

    Call args:
        grid_shape: (3,) int32, X, Y, Z of the atom grid the assignment refers to.
        assignment: (B, N, 4) int32, each atom's voxel (ix, iy, iz) and slot.
        atom_features: (B, N, F) float32, each atom's slot features (offset in voxel edges,
            velocity in units of ``velocity_scale``).
        spacing: (B, 3) float32, Å, the voxel edge per axis.

    Args:
        cutoff: Å, pairs farther apart get no force.
        h: the model's nominal voxel edge, Å (sets the neighbour window).
        slots: S, atom slots per voxel.
        boundary: per axis ``'periodic'`` or ``'open'`` (``'tiled'`` is refused: the neighbour
            atoms of other tiles are not available here).
        masses: (n_elements,) atomic masses, g/mol; the velocity change of an atom is scaled by
            the first element's mass over its own.
        delta_ps: Δ, the model step, ps (for the midpoint extrapolation).
        velocity_scale: Å/ps per unit of the velocity features and of the learned magnitudes.
    """

    def __init__(self, cutoff: float, h: float, slots: int, boundary, masses, delta_ps: float,
                 velocity_scale: float = VELOCITY_SCALE, **kwargs):
        super().__init__(cutoff, h, slots, boundary, masses, velocity_scale, **kwargs)
        self.delta_ps = float(delta_ps)
        self.magnitude = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="magnitude")

    def radial(self) -> keras.layers.Dense:
        return self.magnitude

    def _pairs(self, grid_shape, assignment, atom_features, spacing):
        """(atom (P,2) int64, features (P,F), unit separation r̂_ij (P,3), m_ref/m_i (B,N,1),
        output shape (B,N,3) int64), pairs taken at the step's midpoint."""
        found = self.grid_pairs(grid_shape, assignment, atom_features, spacing, lookahead_ps=0.5 * self.delta_ps)
        unit = found["separation"] / found["distance"][:, None]
        mass_ratio = self.masses[0] / tf.maximum(slot_masses(atom_features, self.masses, len(self.masses)), 1e-6)
        shape = tf.shape(assignment, out_type=tf.int64)
        return found["atom"], found["features"], unit, mass_ratio, tf.stack([shape[0], shape[1], 3])

    def call(self, grid_shape, assignment, atom_features, spacing):
        """See class docstring for shapes and units."""
        atom, features, unit, mass_ratio, shape = self._pairs(grid_shape, assignment, atom_features, spacing)
        magnitude = self.magnitude(features)[:, 0] * self.velocity_scale                             # (P,) Å/ps
        return tf.scatter_nd(atom, magnitude[:, None] * unit, shape) * mass_ratio

    def design(self, grid_shape, assignment, atom_features, spacing):
        """The velocity change as a linear function of the learned weights w (F,): change = design · w.

        Returns:
            (B, N, 3, F) Å/ps per unit of each weight (for fitting w by least squares, the
            ``pair_force_fit`` training stage).
        """
        atom, features, unit, mass_ratio, shape = self._pairs(grid_shape, assignment, atom_features, spacing)
        per_pair = unit[:, :, None] * features[:, None, :] * self.velocity_scale                      # (P,3,F)
        n_features = tf.cast(tf.shape(features)[1:], tf.int64)
        return tf.scatter_nd(atom, per_pair, tf.concat([shape, n_features], 0)) * mass_ratio[..., None]

    def get_config(self):
        return {**super().get_config(), "delta_ps": self.delta_ps}
