"""Per-cell physical read-outs of the latent grid: stress (virial) and kinetic energy."""

from __future__ import annotations

import keras
import tensorflow as tf

from sagesnet_tf.layers.mlp import MLP


@keras.saving.register_keras_serializable(package="sagesnet")
class CellHeads(keras.layers.Layer):
    """Latent (..., D) -> dict(stress (..., 6), kinetic_energy (...)).

    ``stress`` is the cell's summed per-atom stress × volume in bar·Å³, ordered xx, yy, zz, xy,
    xz, yz (LAMMPS ``compute stress/atom`` convention: −P·V summed, positive in tension); ``kinetic_energy`` is
    the cell's kinetic energy in eV, ≥ 0 (softplus). Outputs are ``stress_scale`` and
    ``energy_scale`` times the network's unit-scale outputs (set them from dataset statistics).

    Args:
        hidden, n_layers: MLP shape.
        stress_scale: bar·Å³ per unit output.
        energy_scale: eV per unit output.
    """

    def __init__(self, hidden: int = 64, n_layers: int = 2, stress_scale: float = 1.0,
                 energy_scale: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.hidden = int(hidden)
        self.n_layers = int(n_layers)
        self.stress_scale = float(stress_scale)
        self.energy_scale = float(energy_scale)
        self.mlp = MLP(7, self.hidden, self.n_layers, name="mlp")

    def build(self, latent_shape):
        self.mlp.build(tuple(latent_shape))

    def call(self, latent):
        """latent (..., D) -> stress (..., 6) bar·Å³, kinetic_energy (...) eV."""
        out = self.mlp(latent)
        return {"stress": out[..., :6] * self.stress_scale,
                "kinetic_energy": tf.nn.softplus(out[..., 6]) * self.energy_scale}

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "n_layers": self.n_layers,
                "stress_scale": self.stress_scale, "energy_scale": self.energy_scale}
