"""Atoms out: each atom reads the new latent around its voxel and gets its displacement and velocity.

Atoms stay explicit between steps. For every atom the decoder gathers the latent vectors of its
voxel and the ``(2g+1)`` neighbours per axis (a position-aware window: neighbour o's latent goes
to its own input block), concatenates its own slot features (element, offset inside the voxel,
velocity) and maps them with an MLP to a displacement (Å) and a velocity change (Å/ps). The layer
returns one row per input atom, in input order: atoms are never created or removed, so atom
counts per element and atom ids are conserved exactly, by construction. Given the elements'
masses, the decoder also conserves momentum: the mass-weighted mean of its velocity change and of
its displacement over each structure's atoms is removed (no net force, no drift of the centre of
mass beyond the atoms' own momentum).
"""

from __future__ import annotations

import itertools

import keras
import numpy as np
import tensorflow as tf

from sagesnet_tf.atoms import ELEMENTS
from sagesnet_tf.grid import VELOCITY_SCALE, slot_masses, split_slot_features
from sagesnet_tf.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="sagesnet")
class AtomDecoder(keras.layers.Layer):
    """(z_padded, assignment, atom_features) -> dict(displacement, velocities).

    Call args:
        z_padded: (B, X+2gx, Y+2gy, Z+2gz, D), the new latent grid padded by
            :class:`VirtualCells` with halo ``gather_radius``.
        assignment: (B, N, 4) int32, each atom's voxel (ix, iy, iz) in the unpadded grid and slot
            (from :func:`sagesnet_tf.grid.voxelize`; the same N for every batch entry).
        atom_features: (B, N, F) float32, each atom's slot features at time t.

    Returns:
        ``displacement`` (B, N, 3) Å and ``velocities`` (B, N, 3) Å/ps, the new velocity
        (= old velocity + predicted change). Both start as zero change (zero-initialised output).

    Args:
        gather_radius: (gx, gy, gz) neighbour cells read on each side.
        hidden, n_layers: MLP shape.
        displacement_scale: Å per unit of the displacement output.
        velocity_scale: Å/ps per unit, the same as the atom grid's.
        n_elements: element classes in the slot features.
        masses: None, or (n_elements,) atomic masses (g/mol): remove each structure's
            mass-weighted mean of both outputs (momentum conservation).
    """

    def __init__(self, gather_radius=(1, 1, 1), hidden: int = 64, n_layers: int = 2,
                 displacement_scale: float = 0.1, velocity_scale: float = VELOCITY_SCALE,
                 n_elements: int = len(ELEMENTS), masses=None, **kwargs):
        super().__init__(**kwargs)
        self.gather_radius = tuple(int(g) for g in gather_radius)
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        self.displacement_scale = float(displacement_scale)
        self.velocity_scale = float(velocity_scale)
        self.n_elements = int(n_elements)
        self.masses = None if masses is None else tuple(float(m) for m in masses)
        ranges = [range(-g, g + 1) for g in self.gather_radius]
        self.window = np.array(list(itertools.product(*ranges)), dtype=np.int32)  # (K, 3)
        self.mlp = MLP(6, self.hidden, self.n_layers, output_initializer="zeros", name="mlp")

    def build(self, z_padded_shape, assignment_shape, atom_features_shape):
        width = len(self.window) * z_padded_shape[-1] + atom_features_shape[-1]
        self.mlp.build((None, None, width))

    def call(self, z_padded, assignment, atom_features):
        """See class docstring for shapes and units."""
        voxel = assignment[..., :3] + tf.constant(self.gather_radius, tf.int32)  # (B, N, 3)
        index = voxel[:, :, None, :] + tf.constant(self.window)[None, None]       # (B, N, K, 3)
        window = tf.gather_nd(z_padded, index, batch_dims=1)                       # (B, N, K, D)
        shape = tf.shape(window)
        window = tf.reshape(window, [shape[0], shape[1], len(self.window) * z_padded.shape[-1]])
        out = self.mlp(tf.concat([window, atom_features], axis=-1))
        if self.masses is not None:
            mass = slot_masses(atom_features, self.masses, self.n_elements)  # (B,N,1)
            out -= tf.reduce_sum(mass * out, 1, keepdims=True) / tf.reduce_sum(mass, 1, keepdims=True)
        old_velocity = split_slot_features(atom_features, self.n_elements)["velocities"]
        return {
            "displacement": out[..., :3] * self.displacement_scale,
            "velocities": (old_velocity + out[..., 3:]) * self.velocity_scale,
        }

    def get_config(self):
        return {**super().get_config(), "gather_radius": list(self.gather_radius),
                "hidden": self.hidden, "n_layers": self.n_layers,
                "displacement_scale": self.displacement_scale,
                "velocity_scale": self.velocity_scale, "n_elements": self.n_elements,
                "masses": None if self.masses is None else list(self.masses)}
