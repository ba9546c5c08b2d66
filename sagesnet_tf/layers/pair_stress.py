"""Pair stress: each atom's stress × volume from its motion and its bonds (virial read-out).

The stress of a carbon sheet under tension is carried by its stretched bonds. Read from the latent
grid, it does not follow the bonds: a head on the latent learned a stress–strain curve that stayed
flat while the model's bonds stretched and broke. This layer computes it from the atoms
themselves, as a virial (LAMMPS ``compute stress/atom`` convention: summed over atoms it is −P·V,
positive in tension; bar·Å³)::

    S_i = −m_i v_i ⊗ v_i  +  ½ Σ_j w_{e_i e_j}(r_ij) · r_ij ⊗ r_ij / r_ij

with ``r_ij = r_j − r_i`` at the frame's positions and ``w`` a learned bond tension per element
pair (eV/Å, positive pulls the two atoms together), linear in the radial features of
:class:`~sagesnet_tf.layers.grid_pairs.GridPairs`. The kinetic part is exact; the pair part is a
pair-virial model of AIREBO's many-body virial; being linear in its weights, it is fitted by least
squares (the ``pair_stress_fit`` training stage, :meth:`PairStress.design`). Fitted to the per-atom
stresses of the AIREBO tension runs of two kirigami patterns, a pristine sheet and a 300 K sheet
(2.7 Å cutoff), it gives the summed xx stress of a third, held-out pattern with R² = 0.977 up to
fracture. It supplies the stress of ``simulate``.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sagesnet_tf.grid import VELOCITY_SCALE, slot_masses, split_slot_features
from sagesnet_tf.layers.grid_pairs import PairTerm
from sagesnet_tf.thermo import MVV2E

#: 1 eV = this many bar·Å³.
EV_TO_BAR_A3 = 1.602176634e6
#: eV/Å of bond tension per unit of the learned output (bonds carry up to ≈ 10 eV/Å before breaking).
TENSION_SCALE_EV_PER_A = 10.0
#: bar·Å³ of a pair's stress × volume per unit of the learned output and per Å of ½ r⊗r/r.
BAR_A3_PER_UNIT = TENSION_SCALE_EV_PER_A * EV_TO_BAR_A3
#: Voigt order of the six stress components.
VOIGT = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def kinetic_stress(velocities, mass) -> tf.Tensor:
    """(..., 6) bar·Å³, each atom's m v_a v_b in :data:`VOIGT` order (minus its kinetic stress × volume)
    of velocities (..., 3) Å/ps and masses (..., 1) g/mol."""
    return tf.stack([velocities[..., a] * velocities[..., b] for a, b in VOIGT], -1) * mass * (MVV2E * EV_TO_BAR_A3)


@keras.saving.register_keras_serializable(package="sagesnet")
class PairStress(PairTerm):
    """(grid_shape, assignment, atom_features, spacing) -> per-atom stress × volume (B, N, 6) bar·Å³.

    Call args: as :class:`~sagesnet_tf.layers.PairForces` (the atoms' slot features carry their
    element, offset and velocity); components xx, yy, zz, xy, xz, yz.

    Args:
        cutoff: Å, farther pairs carry no stress.
        h, slots, boundary: the atom grid (see :class:`~sagesnet_tf.layers.grid_pairs.GridPairs`).
        masses: (n_elements,) atomic masses, g/mol (kinetic part).
        velocity_scale: Å/ps per unit of the velocity features.
    """

    def __init__(self, cutoff: float, h: float, slots: int, boundary, masses,
                 velocity_scale: float = VELOCITY_SCALE, **kwargs):
        super().__init__(cutoff, h, slots, boundary, masses, velocity_scale, **kwargs)
        self.tension = keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros", name="tension")

    def radial(self) -> keras.layers.Dense:
        return self.tension

    def _pairs(self, grid_shape, assignment, atom_features, spacing):
        """(atom (P,2) int64, features (P,F), ½ r⊗r/r (P,6) Å, kinetic part (B,N,6) bar·Å³, output shape)."""
        found = self.grid_pairs(grid_shape, assignment, atom_features, spacing)
        d, r = found["separation"], found["distance"]
        half_outer = 0.5 * tf.stack([d[:, a] * d[:, b] for a, b in VOIGT], -1) / r[:, None]          # (P,6) Å
        v = split_slot_features(atom_features, len(self.masses))["velocities"] * self.velocity_scale   # (B,N,3)
        mass = slot_masses(atom_features, self.masses, len(self.masses))                            # (B,N,1)
        kinetic = kinetic_stress(v, mass)
        shape = tf.shape(assignment, out_type=tf.int64)
        return found["atom"], found["features"], half_outer, kinetic, tf.stack([shape[0], shape[1], 6])

    def call(self, grid_shape, assignment, atom_features, spacing):
        """See class docstring for shapes and units."""
        atom, features, half_outer, kinetic, shape = self._pairs(grid_shape, assignment, atom_features, spacing)
        tension = self.tension(features)[:, 0] * BAR_A3_PER_UNIT                                    # (P,)
        return tf.scatter_nd(atom, tension[:, None] * half_outer, shape) - kinetic

    def design(self, grid_shape, assignment, atom_features, spacing):
        """The stress as a linear function of the learned weights w (F,): stress = design · w − kinetic.

        Returns:
            ``design`` (B, N, 6, F) bar·Å³ per unit of each weight, ``kinetic`` (B, N, 6) bar·Å³
            (for fitting w by least squares, ``pair_stress_fit`` stage).
        """
        atom, features, half_outer, kinetic, shape = self._pairs(grid_shape, assignment, atom_features, spacing)
        per_pair = half_outer[:, :, None] * features[:, None, :] * BAR_A3_PER_UNIT                   # (P,6,F)
        n_features = tf.cast(tf.shape(features)[1:], tf.int64)
        return tf.scatter_nd(atom, per_pair, tf.concat([shape, n_features], 0)), kinetic
