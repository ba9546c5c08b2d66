"""Linear least squares for the pair terms (the ``pair_stress_fit`` and ``pair_force_fit`` stages,
:data:`~sagesnet_tf.training.md_config.LEAST_SQUARES_KINDS`): the equations one batch gives, and
their normal equations summed over a stage's batches and solved at its end.

A pair term is linear in the weights w (F,) of its radial function: its output is ``design · w``
(:meth:`~sagesnet_tf.layers.PairStress.design`, :meth:`~sagesnet_tf.layers.PairForces.design`).
Adam on the same loss stalls far from the optimum (the per-cell stresses of thermal frames are
noisy, the radial features overlap; the rare stretched bonds of tension runs stay where the dense
thermal data left them), so these stages solve for w exactly. Shapes: B batch, N atoms, X/Y/Z
cells, F radial features. Units: rows and targets are unitless (divided by the stage's unit).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from sagesnet_tf.simulator import LearnedSimulator
from sagesnet_tf.training.md_batches import cell_sums

#: Ridge of the least-squares stages, relative to the mean diagonal of the normal equations.
LEAST_SQUARES_RIDGE = 1e-4


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
        """Set the radial weights of ``layer`` (a pair term) to :meth:`solve`, the prior its current ones."""
        kernel = layer.radial().kernel
        kernel.assign(self.solve(kernel.numpy()[:, 0])[:, None])


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
