"""The cell autoencoder: slots of one voxel <-> one latent vector of width D (the simulation grid).

:class:`CellEncoder` maps each voxel's slot features (..., S, F) (see :mod:`sagesnet_tf.grid`) to a
latent (..., D) as a deep set: a per-slot MLP, masked by occupancy, summed over slots, then a
per-cell MLP. It is therefore invariant to the order of the slots. :class:`CellDecoder` maps the
latent back to slots in the grid's canonical slot order (increasing atom index); it is trained
first, with an occupancy/element cross-entropy and an MSE on offsets and velocities
(:func:`sagesnet_tf.grid.split_slot_features` gives the targets).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sagesnet_tf.atoms import ELEMENTS
from sagesnet_tf.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="sagesnet")
class CellEncoder(keras.layers.Layer):
    """Slots (..., S, F) -> latent (..., D).

    Args:
        latent_dim: D.
        hidden: hidden width of both MLPs.
        n_layers: hidden layers per MLP.
        mask_by_occupancy: multiply each slot's embedding by its occupancy (feature 0) so empty
            slots contribute nothing. Set False for inputs without an occupancy feature (cellular
            automata boards, fed as one slot per cell).
    """

    def __init__(self, latent_dim: int, hidden: int = 64, n_layers: int = 2,
                 mask_by_occupancy: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        self.mask_by_occupancy = bool(mask_by_occupancy)
        self.slot_mlp = MLP(self.hidden, self.hidden, max(0, self.n_layers - 1), name="slot_mlp")
        self.cell_mlp = MLP(self.latent_dim, self.hidden, self.n_layers, name="cell_mlp")

    def build(self, slots_shape):
        self.slot_mlp.build(tuple(slots_shape))
        self.cell_mlp.build(tuple(slots_shape[:-2]) + (self.hidden,))

    def call(self, slots):
        """slots (..., S, F) float32 -> latent (..., D)."""
        embedded = self.slot_mlp(slots)
        if self.mask_by_occupancy:
            embedded = embedded * slots[..., :1]
        return self.cell_mlp(tf.reduce_sum(embedded, axis=-2))

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "hidden": self.hidden,
                "n_layers": self.n_layers, "mask_by_occupancy": self.mask_by_occupancy}


@keras.saving.register_keras_serializable(package="sagesnet")
class CellDecoder(keras.layers.Layer):
    """Latent (..., D) -> slot reconstruction.

    Returns a dict:

    - ``occupancy_logits`` (..., S): logit that slot s holds an atom.
    - ``element_logits`` (..., S, n_elements): logits over :data:`~sagesnet_tf.atoms.ELEMENTS`.
    - ``offsets`` (..., S, 3): position inside the voxel / voxel edge, in (0, 1) (sigmoid).
    - ``velocities`` (..., S, 3): velocity / velocity_scale (the atom grid's normalised units).

    Args:
        slots: S.
        n_elements: element classes.
        hidden, n_layers: MLP shape.
    """

    def __init__(self, slots: int, n_elements: int = len(ELEMENTS), hidden: int = 64,
                 n_layers: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.slots = int(slots)
        self.n_elements = int(n_elements)
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        self.per_slot = 1 + self.n_elements + 6
        self.mlp = MLP(self.slots * self.per_slot, self.hidden, self.n_layers, name="mlp")

    def build(self, latent_shape):
        self.mlp.build(tuple(latent_shape))

    def call(self, latent):
        """latent (..., D) -> dict of slot predictions (see class docstring)."""
        out = self.mlp(latent)
        out = tf.reshape(out, tf.concat([tf.shape(latent)[:-1], [self.slots, self.per_slot]], 0))
        n = self.n_elements
        return {
            "occupancy_logits": out[..., 0],
            "element_logits": out[..., 1:1 + n],
            "offsets": tf.sigmoid(out[..., 1 + n:4 + n]),
            "velocities": out[..., 4 + n:7 + n],
        }

    def get_config(self):
        return {**super().get_config(), "slots": self.slots, "n_elements": self.n_elements,
                "hidden": self.hidden, "n_layers": self.n_layers}
