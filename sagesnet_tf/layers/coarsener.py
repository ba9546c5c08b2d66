"""The coarsener: k_x·k_y·k_z cells × T timesteps of the fine grid -> one cell of the coarse grid.

A spatio-temporal autoencoder. :class:`Coarsener` maps each block of the fine latent window
(B, T, X, Y, Z, D) to one coarse latent (B, X/kx, Y/ky, Z/kz, D) with the SAME width D, so a
coarse step costs what a fine one does; :class:`Refiner` maps a coarse latent back to the fine
window (B, T, X, Y, Z, D). Both are the block mean (broadcast back, for the refiner) plus an MLP
of the whole block, so they start near averaging and learn the rest. ``k`` may differ per axis
((2, 2, 1) coarsens a 2D board in-plane only). Levels stack: the coarse grid of one level is the
fine grid of the next.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sagesnet_tf.layers.mlp import MLP


def _check_factor(factor, steps):
    factor = tuple(int(k) for k in factor)
    if len(factor) != 3 or min(factor) < 1 or int(steps) < 1:
        raise ValueError(f"factor must be 3 positive integers and steps >= 1, got {factor}, {steps}")
    return factor, int(steps)


@keras.saving.register_keras_serializable(package="sagesnet")
class Coarsener(keras.layers.Layer):
    """Fine window (B, T, X, Y, Z, D) -> coarse grid (B, X/kx, Y/ky, Z/kz, D).

    X, Y, Z must be multiples of kx, ky, kz and the window must have exactly T = ``steps`` frames
    (InvalidArgument otherwise).

    Args:
        latent_dim: D.
        factor: (kx, ky, kz).
        steps: T.
        hidden, n_layers: MLP shape.
    """

    def __init__(self, latent_dim: int, factor=(2, 2, 2), steps: int = 2, hidden: int = 128,
                 n_layers: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.factor, self.steps = _check_factor(factor, steps)
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        self.mlp = MLP(self.latent_dim, self.hidden, self.n_layers, name="mlp")

    def build(self, window_shape):
        kx, ky, kz = self.factor
        self.mlp.build((None, None, None, None, self.steps * kx * ky * kz * self.latent_dim))

    def call(self, window):
        """window (B, T, X, Y, Z, D) -> (B, X/kx, Y/ky, Z/kz, D)."""
        kx, ky, kz = self.factor
        s = tf.shape(window)
        checks = [
            tf.debugging.assert_equal(s[1], self.steps, message=f"coarsener: the window needs T={self.steps} frames"),
            tf.debugging.assert_equal(
                s[2:5] % tf.constant(self.factor), tf.zeros(3, tf.int32),
                message=f"coarsener: grid sizes must be multiples of k={self.factor}; crop or pad the grid"),
        ]
        with tf.control_dependencies(checks):
            x = tf.reshape(window, [s[0], self.steps, s[2] // kx, kx, s[3] // ky, ky, s[4] // kz, kz,
                                    self.latent_dim])
        x = tf.transpose(x, [0, 2, 4, 6, 1, 3, 5, 7, 8])  # (B, Xc, Yc, Zc, T, kx, ky, kz, D)
        mean = tf.reduce_mean(x, axis=[4, 5, 6, 7])
        flat = tf.reshape(x, [s[0], s[2] // kx, s[3] // ky, s[4] // kz,
                              self.steps * kx * ky * kz * self.latent_dim])
        return mean + self.mlp(flat)

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "factor": list(self.factor),
                "steps": self.steps, "hidden": self.hidden, "n_layers": self.n_layers}


@keras.saving.register_keras_serializable(package="sagesnet")
class Refiner(keras.layers.Layer):
    """Coarse grid (B, Xc, Yc, Zc, D) -> fine window (B, T, Xc·kx, Yc·ky, Zc·kz, D).

    Args: as :class:`Coarsener`.
    """

    def __init__(self, latent_dim: int, factor=(2, 2, 2), steps: int = 2, hidden: int = 128,
                 n_layers: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.latent_dim = int(latent_dim)
        self.factor, self.steps = _check_factor(factor, steps)
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        kx, ky, kz = self.factor
        self.mlp = MLP(self.steps * kx * ky * kz * self.latent_dim, self.hidden, self.n_layers,
                       name="mlp")

    def build(self, coarse_shape):
        self.mlp.build(tuple(coarse_shape))

    def call(self, coarse):
        """coarse (B, Xc, Yc, Zc, D) -> (B, T, Xc·kx, Yc·ky, Zc·kz, D)."""
        kx, ky, kz = self.factor
        s = tf.shape(coarse)
        x = tf.reshape(self.mlp(coarse), [s[0], s[1], s[2], s[3], self.steps, kx, ky, kz,
                                          self.latent_dim])
        x = x + coarse[:, :, :, :, None, None, None, None, :]
        x = tf.transpose(x, [0, 4, 1, 5, 2, 6, 3, 7, 8])  # (B, T, Xc, kx, Yc, ky, Zc, kz, D)
        return tf.reshape(x, [s[0], self.steps, s[1] * kx, s[2] * ky, s[3] * kz, self.latent_dim])

    def get_config(self):
        return {**super().get_config(), "latent_dim": self.latent_dim, "factor": list(self.factor),
                "steps": self.steps, "hidden": self.hidden, "n_layers": self.n_layers}
