"""Environment conditioning: the blanket vector and per-cell channels mapped into every cell.

The blanket vector (temperature, pressure, strain rate, strain …, normalised by the dataset
statistics before it gets here) goes through a small MLP and is broadcast into every cell — a
1×1×1 convolution of a spatially constant input. Per-cell channels (applied forces, clamp flags,
…) go through their own 1×1×1 convolution. Both are added to the latent grid; the result is the
predictor's input, never the stored state.
"""

from __future__ import annotations

import keras

from sagesnet_tf.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="sagesnet")
class EnvironmentConv(keras.layers.Layer):
    """(z (B, X, Y, Z, D), env (B, E), cell_channels (B, X, Y, Z, C) or None) -> (B, X, Y, Z, D).

    Output = z + MLP(env) broadcast over cells + Dense(cell_channels). Both branches start at zero
    (zero-initialised output kernels), so an untrained layer is the identity.

    Args:
        latent_dim: D.
        hidden: hidden width of the blanket MLP.
        cell_channels: C, per-cell input channels (0: none accepted).
    """

    def __init__(self, latent_dim: int, hidden: int = 32, cell_channels: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.hidden = int(hidden)
        self.cell_channels = int(cell_channels)
        self.env_mlp = MLP(self.latent_dim, self.hidden, 1, output_initializer="zeros", name="env_mlp")
        self.cell_conv = (keras.layers.Dense(self.latent_dim, kernel_initializer="zeros", name="cell_conv")
                          if self.cell_channels else None)

    def build(self, z_shape, env_shape, cell_channels_shape=None):
        self.env_mlp.build(tuple(env_shape))
        if self.cell_conv is not None:
            self.cell_conv.build(tuple(z_shape[:-1]) + (self.cell_channels,))

    def call(self, z, env, cell_channels=None):
        """z (B, X, Y, Z, D), env (B, E) float32, cell_channels (B, X, Y, Z, C) -> (B, X, Y, Z, D)."""
        out = z + self.env_mlp(env)[:, None, None, None, :]
        if cell_channels is not None:
            if self.cell_conv is None:
                raise ValueError("EnvironmentConv was built with cell_channels=0; give cell_channels=C")
            out = out + self.cell_conv(cell_channels)
        return out

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "hidden": self.hidden,
                "cell_channels": self.cell_channels}
