"""Virtual cells: a halo around the latent grid so 'valid' convolutions keep the grid's size.

The predictor's receptive field reaches ``r = (rx, ry, rz)`` cells beyond a cell (see
:attr:`ScatterPredictor.halo`). Before it runs, the grid (B, X, Y, Z, D) is padded to
(B, X+2rx, Y+2ry, Z+2rz, D) with virtual cells, per axis:

- ``periodic``: wrapped from the opposite side of the grid (equals ``np.pad(mode="wrap")``,
  also when the halo is deeper than the grid);
- ``open``: a learned latent vector for empty space (vacuum beyond a free surface);
- ``tiled``: the neighbouring tiles' cells, given by the caller. This is how a grid larger than
  one device runs as tiles: each tile is padded with the edge cells of its neighbours, stepped,
  and the result is exactly what the whole grid stepped at once gives for those cells.

Axes are padded in order x, y, z, so for a tiled axis the neighbour slabs must already carry the
halo of earlier axes (build them with :func:`tile_halo` from neighbour tiles padded along the
earlier axes, or from the whole padded neighbour).
"""

from __future__ import annotations

import keras
import tensorflow as tf

#: Boundary modes of :class:`VirtualCells`, per axis.
BOUNDARY_MODES: tuple[str, ...] = ("periodic", "open", "tiled")


def tile_halo(lower_tile: tf.Tensor, upper_tile: tf.Tensor, axis: int, depth: int):
    """The (low, high) halo slabs of a tile along grid ``axis`` (0 = x, 1 = y, 2 = z).

    Args:
        lower_tile: (B, X, Y, Z, D) the neighbour on the low side along ``axis``.
        upper_tile: (B, X, Y, Z, D) the neighbour on the high side.
        depth: halo depth r along ``axis``.

    Returns:
        (low, high): the last ``depth`` cells of ``lower_tile`` and the first ``depth`` of
        ``upper_tile`` along ``axis``.
    """
    size = tf.shape(lower_tile)[axis + 1]
    low = tf.gather(lower_tile, tf.range(size - depth, size), axis=axis + 1)
    high = tf.gather(upper_tile, tf.range(depth), axis=axis + 1)
    return low, high


@keras.saving.register_keras_serializable(package="sagesnet")
class VirtualCells(keras.layers.Layer):
    """(z (B, X, Y, Z, D), halos) -> (B, X+2rx, Y+2ry, Z+2rz, D).

    Args:
        halo: (rx, ry, rz) halo depth per axis (0: no padding along that axis).
        modes: boundary mode per axis, each one of :data:`BOUNDARY_MODES`.
        latent_dim: D (size of the learned empty-space latent used by ``open`` axes).

    Call args:
        z: (B, X, Y, Z, D).
        halos: for ``tiled`` axes, a list of 3 entries, entry a being ``(low, high)`` slabs of
            shape (B, …, r_a, …, D) (see module docstring); ``None`` elsewhere.
    """

    def __init__(self, halo, modes, latent_dim: int, **kwargs):
        super().__init__(**kwargs)
        self.halo = tuple(int(r) for r in halo)
        self.modes = tuple(str(m) for m in modes)
        self.latent_dim = int(latent_dim)
        if len(self.halo) != 3 or min(self.halo) < 0:
            raise ValueError(f"halo must be 3 non-negative integers, got {halo}")
        bad = [m for m in self.modes if m not in BOUNDARY_MODES]
        if len(self.modes) != 3 or bad:
            raise ValueError(f"modes must be 3 of {BOUNDARY_MODES}, got {modes}")
        self.empty_latent = (self.add_weight(shape=(self.latent_dim,), initializer="zeros",
                                             name="empty_latent")
                             if "open" in self.modes else None)

    def call(self, z, halos=None):
        """Pad z (B, X, Y, Z, D) along x, y, z in that order (see class docstring)."""
        for axis, (r, mode) in enumerate(zip(self.halo, self.modes)):
            if r == 0:
                continue
            dim = axis + 1
            if mode == "periodic":
                size = tf.shape(z)[dim]
                z = tf.gather(z, tf.math.floormod(tf.range(-r, size + r), size), axis=dim)
                continue
            if mode == "open":
                shape = tf.tensor_scatter_nd_update(tf.shape(z), [[dim]], [r])
                low = high = tf.broadcast_to(tf.cast(self.empty_latent, z.dtype), shape)
            else:
                if halos is None or halos[axis] is None:
                    raise ValueError(f"axis {'xyz'[axis]} is tiled: give halos[{axis}] = (low, high)")
                low, high = halos[axis]
            z = tf.concat([low, z, high], axis=dim)
        return z

    def get_config(self):
        return {**super().get_config(), "halo": list(self.halo), "modes": list(self.modes),
                "latent_dim": self.latent_dim}
