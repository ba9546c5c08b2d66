"""The scatter predictor: z(t+Δ) = z(t) + Δz, Δz from a residual stack of 3D convolutions.

Read as a scatter: a convolution output at cell i is Σ_o W_o · x_{i-o}, i.e. every centre cell j
sends the transform W_o · x_j — which depends on the relative position o of the receiver — to
each neighbour j+o, and every cell sums what it receives. Nothing constrains the sum's sign, so
the update can remove as well as add. Stacking ``depth`` such blocks (with a nonlinearity
between) lets information travel ``depth · (k-1)/2`` cells per axis per step.

The convolutions are 'valid': the input is the grid padded by :class:`VirtualCells` with a halo
of :attr:`ScatterPredictor.halo` cells per axis and the output has the unpadded grid's size, so
any grid size (and tiles of a larger grid) works. A kernel of (3, 3, 1) makes a 2D board.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sagesnet_tf.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="sagesnet")
class ScatterPredictor(keras.layers.Layer):
    """Padded latent grid (B, X+2rx, Y+2ry, Z+2rz, D) -> Δz (B, X, Y, Z, D).

    Per-cell input projection to ``hidden`` channels, ``depth`` pre-activation residual blocks
    ``x <- crop(x) + Conv3D_valid(gelu(x))``, then a per-cell MLP to D whose last kernel starts
    at zero (an untrained predictor leaves the state unchanged).

    Args:
        latent_dim: D.
        hidden: channels inside the stack.
        depth: residual blocks.
        kernel_size: (kx, ky, kz), odd integers.
    """

    def __init__(self, latent_dim: int, hidden: int = 64, depth: int = 2, kernel_size=(3, 3, 3),
                 **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.hidden = int(hidden)
        self.depth = int(depth)
        self.kernel_size = tuple(int(k) for k in kernel_size)
        if len(self.kernel_size) != 3 or any(k < 1 or k % 2 == 0 for k in self.kernel_size):
            raise ValueError(f"kernel_size must be 3 odd positive integers, got {kernel_size}")
        if self.depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.input_proj = keras.layers.Dense(self.hidden, name="input_proj")
        self.convs = [keras.layers.Conv3D(self.hidden, self.kernel_size, padding="valid",
                                          name=f"scatter_{i}") for i in range(self.depth)]
        self.output_mlp = MLP(self.latent_dim, self.hidden, 1, output_initializer="zeros",
                              name="output_mlp")

    @property
    def halo(self) -> tuple[int, int, int]:
        """(rx, ry, rz): virtual cells needed on each side, ``depth · (k - 1) / 2`` per axis."""
        return tuple(self.depth * (k // 2) for k in self.kernel_size)

    def build(self, padded_shape):
        shape = tuple(padded_shape)
        self.input_proj.build(shape)
        shape = shape[:-1] + (self.hidden,)
        for conv in self.convs:
            conv.build(shape)
        self.output_mlp.build(shape)

    def call(self, padded):
        """padded (B, X+2rx, Y+2ry, Z+2rz, D) -> Δz (B, X, Y, Z, D) (may be negative)."""
        x = self.input_proj(padded)
        cx, cy, cz = (k // 2 for k in self.kernel_size)
        for conv in self.convs:
            s = tf.shape(x)
            residual = x[:, cx:s[1] - cx, cy:s[2] - cy, cz:s[3] - cz, :]
            x = residual + conv(tf.nn.gelu(x))
        return self.output_mlp(x)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "hidden": self.hidden,
                "depth": self.depth, "kernel_size": list(self.kernel_size)}
