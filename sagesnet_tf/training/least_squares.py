"""Linear least squares for the model's linear terms (the ``pair_stress_fit``, ``pair_force_fit`` and
``local_energy_fit`` stages, :data:`~sagesnet_tf.training.md_config.LEAST_SQUARES_KINDS`): the
equations one batch gives, and their normal equations summed over a stage's batches and solved at
its end.

Each term is linear in its weights w (F,) (:func:`fitted_weights`): a pair term's radial function,
the local energy's weights; its output is ``design · w``
(:meth:`~sagesnet_tf.layers.PairStress.design`, :meth:`~sagesnet_tf.layers.PairForces.design`,
:meth:`~sagesnet_tf.layers.LocalEnergy.design`).
Adam on the same loss stalls far from the optimum (the per-cell stresses of thermal frames are
noisy, the radial features overlap; the rare stretched bonds of tension runs stay where the dense
thermal data left them), so these stages solve for w exactly. Shapes: B batch, N atoms, X/Y/Z
cells, F radial features. Units: rows and targets are unitless (divided by the stage's unit).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from sagesnet_tf.grid import affine_remap
from sagesnet_tf.layers import LocalEnergy
from sagesnet_tf.layers.pair_stress import EV_TO_BAR_A3, kinetic_stress
from sagesnet_tf.simulator import LearnedSimulator
from sagesnet_tf.thermo import MVV2E
from sagesnet_tf.training.md_batches import atom_masses, cell_sums

#: Ridge of the least-squares stages, relative to the mean diagonal of the normal equations.
LEAST_SQUARES_RIDGE = 1e-4
#: Å: in ``local_energy_fit`` a frame's virial equations (−dE/dε_aa per atom, eV, along each periodic
#: axis) together weigh as much as its 3N force equations (eV/Å) would with errors of one eV per this
#: length. Forces alone leave the energy's in-plane stress free (on a perfect periodic lattice every
#: force vanishes whatever lattice constant the energy prefers).
VIRIAL_LENGTH_A = 1.0


def fitted_weights(layer) -> tf.Variable:
    """The weights a least-squares stage fits in ``layer``: the local energy's ``energy_weights`` (F,),
    a pair term's radial kernel (F, 1)."""
    return layer.energy_weights if isinstance(layer, LocalEnergy) else layer.radial().kernel


class NormalEquations(tf.Module):
    """Normal equations of a least-squares stage, summed over its batches (checkpointed, so a resumed
    stage continues the same sums): Gram matrix (F, F) and moment (F,), float64."""

    def __init__(self, n_features: int, name: str):
        super().__init__(name=name)
        self.gram = tf.Variable(tf.zeros([n_features, n_features], tf.float64), trainable=False, name="gram")
        self.moment = tf.Variable(tf.zeros([n_features], tf.float64), trainable=False, name="moment")

    def reset(self) -> None:
        self.gram.assign(tf.zeros_like(self.gram))
        self.moment.assign(tf.zeros_like(self.moment))

    def add(self, rows, target) -> None:
        """rows (R, F), target (R,): add RᵀR and Rᵀy."""
        rows, target = tf.cast(rows, tf.float64), tf.cast(target, tf.float64)
        self.gram.assign_add(tf.matmul(rows, rows, transpose_a=True))
        self.moment.assign_add(tf.linalg.matvec(rows, target, transpose_a=True))

    def solve(self, prior) -> np.ndarray:
        """(F,) float32 least-squares weights, ridge LEAST_SQUARES_RIDGE × mean diagonal towards
        ``prior`` (F,) (weights no equation reaches stay there)."""
        gram = self.gram.numpy()
        ridge = LEAST_SQUARES_RIDGE * max(float(np.mean(np.diag(gram))), 1e-30)
        rhs = self.moment.numpy() + ridge * np.asarray(prior, np.float64)
        return np.linalg.solve(gram + ridge * np.eye(len(gram)), rhs).astype(np.float32)

    def solve_into(self, layer) -> None:
        """Set the :func:`fitted_weights` of ``layer`` to :meth:`solve`, the prior their current values."""
        weights = fitted_weights(layer)
        weights.assign(self.solve(weights.numpy().reshape(-1)).reshape(weights.shape))


def pair_stress_equations(sim: LearnedSimulator, batch: dict, unit: float):
    """One batch's per-cell equations for the pair stress weights w (F,): ``rows`` (B, X, Y, Z, 6, F)
    · w ≈ ``target`` (B, X, Y, Z, 6): the per-cell sums of the pair stress's design against the MD
    per-cell stress plus the kinetic part (empty cells give zero rows), at the batch's first frame,
    in ``unit`` bar·Å³ for every component."""
    state = sim.atoms_state(batch["positions"][:, 0], batch["velocities"][:, 0], batch["species"],
                            batch["box"][:, 0])
    grid_shape = tf.shape(state["atom_grid"])[1:4]
    design, kinetic = sim.model.pair_stress.design(grid_shape, state["assignment"], state["atom_features"],
                                                   state["spacing"])
    rows = cell_sums(state["assignment"], design, grid_shape) / unit                              # (B,X,Y,Z,6,F)
    target = cell_sums(state["assignment"], batch["stress"] + kinetic, grid_shape) / unit
    return rows, target


def pair_force_equations(sim: LearnedSimulator, batch: dict, sigma_v: float):
    """One batch's per-atom equations for the pair force weights w (F,): ``rows`` (B, N, 3, F) · w ≈
    ``target`` (B, N, 3), in units of σ_v ``sigma_v`` Å/ps: the MD velocity at t+Δ minus the model's
    predicted one without its pair forces (one :meth:`LearnedSimulator.step`, as the ``predictor``
    stage takes); returns (rows, target, that step's output)."""
    p, v, box = batch["positions"], batch["velocities"], batch["box"]
    out = sim.step(p[:, 0], v[:, 0], batch["species"], box[:, 0], batch["env"], next_box=box[:, 1])
    state = out["state"]
    pair_forces = sim.model.pair_forces
    rows = pair_forces.design(tf.shape(state["atom_grid"])[1:4], state["assignment"], state["atom_features"],
                              state["spacing"]) / sigma_v
    with_pairs = tf.linalg.matvec(rows, pair_forces.radial().kernel[:, 0])
    return rows, (v[:, 1] - out["velocities"]) / sigma_v + with_pairs, out


def local_energy_equations(sim: LearnedSimulator, batch: dict):
    """One batch's equations for the local energy's weights w (F,), in eV/Å: ``rows`` (R, F) · w ≈
    ``target`` (R,), and the simulator's step from the first frame.

    - Forces (B·N·3 rows): :meth:`~sagesnet_tf.layers.LocalEnergy.design` at the step's midpoint
      (as :meth:`~sagesnet_tf.model.SagesnetModel.energy_velocity_change` takes it) against the force
      that would turn the model's predicted velocity at t+Δ into MD's: m·(v_MD(t+Δ) − v_model(t+Δ))/Δ
      plus the current energy's own force (the rest of the model, the grid decoder, stays as it is).
    - Virial (B × periodic axes rows): :meth:`~sagesnet_tf.layers.LocalEnergy.strain_design`, the
      energy's dE/dε_aa, against MD's Σ_i (stress_i,aa + m_i v_i,a²) (−virial, from the recorded
      per-atom stress × volume at t), per atom, weighted by :data:`VIRIAL_LENGTH_A`.
    """
    model = sim.model
    energy = model.local_energy
    p, v, box = batch["positions"], batch["velocities"], batch["box"]
    out = sim.step(p[:, 0], v[:, 0], batch["species"], box[:, 0], batch["env"], next_box=box[:, 1])
    state = out["state"]
    grid_shape = tf.shape(state["atom_grid"])[1:4]
    inputs = (grid_shape, state["assignment"], state["atom_features"], state["spacing"])
    force_rows = energy.design(*inputs, lookahead_ps=0.5 * sim.delta_ps)                          # (B,N,3,F)
    masses = atom_masses(batch["species"], model.config.elements)[..., None]                       # (B,N,1)
    force_target = (masses * MVV2E / sim.delta_ps) * (v[:, 1] - out["velocities"]) \
        + tf.linalg.matvec(force_rows, energy.energy_weights)                                     # (B,N,3)
    # each axis in units of its own RMS force (relative to the mean over the axes): the out-of-plane
    # forces of a sheet, an order of magnitude below the in-plane ones, weigh as much in the fit
    axis_rms = tf.sqrt(tf.reduce_mean(tf.square(force_target), [0, 1]) + 1e-12)                   # (3,)
    axis_weight = tf.reduce_mean(axis_rms) / axis_rms
    force_rows, force_target = force_rows * axis_weight[:, None], force_target * axis_weight
    # the virial at t, of the atoms of frame 0 in their own box
    start = sim.atoms_state(p[:, 0], v[:, 0], batch["species"], box[:, 0])
    strain_rows = energy.strain_design(tf.shape(start["atom_grid"])[1:4], start["assignment"],
                                       start["atom_features"], start["spacing"])                  # (B,3,F) eV
    minus_virial = tf.reduce_sum(batch["stress"] + kinetic_stress(v[:, 0], masses), 1)[:, :3] / EV_TO_BAR_A3  # (B,3) eV
    axes = np.flatnonzero(sim.pbc)
    n_atoms = tf.cast(tf.shape(p)[2], tf.float32)
    weight = tf.sqrt(3.0 * n_atoms / len(axes)) / (n_atoms * VIRIAL_LENGTH_A)
    n_features = tf.shape(force_rows)[-1]
    rows = tf.concat([tf.reshape(force_rows, [-1, n_features]),
                      tf.reshape(tf.gather(strain_rows, axes, axis=1) * weight, [-1, n_features])], 0)
    target = tf.concat([tf.reshape(force_target, [-1]), tf.reshape(tf.gather(minus_virial, axes, axis=1) * weight, [-1])], 0)
    return rows, target, out
