"""Uncertainty: a per-cell estimate of the loss a prediction will incur (a confidence map).

One instance sits on the predictor (trained on the per-cell one-step loss, with gradients stopped
into the latent), one on the coarsener (trained on the per-coarse-cell reconstruction error).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sagesnet_tf.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="sagesnet")
class UncertaintyHead(keras.layers.Layer):
    """(z (B, X, Y, Z, D), env (B, E) or None) -> predicted loss (B, X, Y, Z), ≥ 0 (softplus).

    The output is in the units of the loss it is trained on (normalised MSE).

    Args:
        hidden, n_layers: MLP shape.
        env_dim: E, width of the blanket vector it reads (0: ``env`` is not used).
    """

    def __init__(self, hidden: int = 32, n_layers: int = 2, env_dim: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        self.env_dim = int(env_dim)
        self.mlp = MLP(1, self.hidden, self.n_layers, name="mlp")

    def build(self, z_shape, env_shape=None):
        self.mlp.build(tuple(z_shape[:-1]) + (z_shape[-1] + self.env_dim,))

    def call(self, z, env=None):
        """z (B, X, Y, Z, D), env (B, E) -> (B, X, Y, Z)."""
        x = z
        if self.env_dim:
            if env is None:
                raise ValueError(f"UncertaintyHead was built with env_dim={self.env_dim}; give env")
            field = tf.broadcast_to(env[:, None, None, None, :],
                                    tf.concat([tf.shape(z)[:-1], [self.env_dim]], 0))
            x = tf.concat([z, field], axis=-1)
        return tf.nn.softplus(self.mlp(x)[..., 0])

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "n_layers": self.n_layers,
                "env_dim": self.env_dim}
