"""The sensitivity grid: how much the ribbon's tensile stress a short rollout later depends on the
atoms of each cell of the model's grid now.

For a frame (positions r_i(0), velocities), the model is rolled out ``steps`` steps Δ
(:meth:`~sagesnet_tf.simulator.LearnedSimulator.step`, the step every other part of the package
uses; free dynamics, the box stretched at the given strain rate as ``simulate`` stretches it) and
the sheet stress σ_aa (GPa, along the load axis a) of the last step is read
(:meth:`~sagesnet_tf.simulator.LearnedSimulator.stress`, as ``simulate``'s thermo.csv reads it).
``tf.GradientTape`` differentiates σ_aa through the whole rollout with respect to the starting
positions; the forces of an energy model are themselves a gradient, so this is a second-order
derivative (TensorFlow nests the tapes). The sensitivity of a cell is

    S_c = Σ_{i in cell c} |∂σ_aa(t + steps·Δ) / ∂r_i(0)|        (GPa/Å)

over the atoms voxelized into cell c at t = 0 (norm of each atom's 3-vector, summed per cell); an
empty cell has S_c = 0. With ``steps`` = 0 it is the stress of the frame itself (its virial's
dependence on each atom). Atoms change cell only where they cross a voxel face, where σ is
continuous; the voxel assignment itself carries no gradient.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf

from sagesnet_tf.analysis.stress_strain import sheet_stress_gpa
from sagesnet_tf.simulator import LearnedSimulator


@dataclasses.dataclass(frozen=True)
class Sensitivity:
    """The sensitivity grid of one frame.

    Attributes:
        cells: (X, Y, Z) GPa/Å, S_c of every cell of the frame's grid.
        counts: (X, Y, Z) int, atoms in each cell at t = 0.
        atoms: (N,) GPa/Å, |∂σ/∂r_i(0)| of each atom.
        assignment: (N, 3) int, each atom's cell (ix, iy, iz).
        origin: (3,) Å, the grid's lower corner; ``spacing`` (3,) Å its voxel edges (cell centre
            ``origin + (index + ½)·spacing``).
        stress_gpa: σ_aa after the rollout, GPa.
        steps: model steps rolled out; ``wall_s`` seconds the rollout and its gradient took.
    """

    cells: np.ndarray
    counts: np.ndarray
    atoms: np.ndarray
    assignment: np.ndarray
    origin: np.ndarray
    spacing: np.ndarray
    stress_gpa: float
    steps: int
    wall_s: float

    def centres(self) -> np.ndarray:
        """(X, Y, Z, 3) Å, the centre of every cell."""
        index = np.stack(np.meshgrid(*[np.arange(n) for n in self.cells.shape], indexing="ij"), axis=-1)
        return self.origin + (index + 0.5) * self.spacing


def stress_sensitivity(simulator: LearnedSimulator, positions: np.ndarray, velocities: np.ndarray,
                       species: np.ndarray, box: np.ndarray, env: np.ndarray, axis: int, steps: int,
                       growth: np.ndarray, width_A: float, thickness_A: float) -> Sensitivity:
    """The :class:`Sensitivity` of one frame (see module docstring).

    Args:
        simulator: the model's :class:`LearnedSimulator`.
        positions: (N, 3) Å, velocities (N, 3) Å/ps, species (N,) int, box (3,) Å (origin 0): the
            frame in the model's grid (:func:`~sagesnet_tf.io.model_frame.to_model_frame`).
        env: (E,) raw environment of the model's ``env_fields``.
        axis: 0, 1 or 2, the load axis a (σ_aa).
        steps: model steps Δ of the rollout (≥ 0).
        growth: (3,) Å the box grows by per step (affine tension; zeros: a fixed box).
        width_A, thickness_A: the sheet's nominal width across the load and thickness (σ in GPa,
            DESIGN.md §4).
    """
    began = time.time()
    species_b, env_b = tf.constant(species[None], tf.int32), tf.constant(env[None], tf.float32)
    start = tf.constant(positions[None], tf.float32)
    box0 = tf.constant(box[None], tf.float32)
    growth_b = tf.constant(growth[None], tf.float32)
    first = simulator.atoms_state(start, velocities[None], species_b, box0)
    with tf.GradientTape() as tape:
        tape.watch(start)
        p, v, b = start, tf.constant(velocities[None], tf.float32), box0
        latent = simulator.model.encode(simulator.atoms_state(p, v, species_b, b)["atom_grid"]) if steps == 0 else None
        for _ in range(steps):
            out = simulator.step(p, v, species_b, b, env_b, next_box=b + growth_b)
            p, v, b, latent = out["positions"], out["velocities"], out["box"], out["latent_next"]
        stress = simulator.stress(latent, p, v, species_b, b)[0, axis]                      # bar·Å³
    gradient = tape.gradient(stress, start)[0].numpy()                                      # bar·Å³/Å
    length = float(b[0, axis])
    per_atom = np.linalg.norm(sheet_stress_gpa(gradient, length, width_A, thickness_A), axis=1)
    assignment = first["assignment"][0, :, :3].numpy()
    shape = tuple(int(n) for n in first["atom_grid"].shape[1:4])
    cells, counts = np.zeros(shape), np.zeros(shape, np.int64)
    np.add.at(cells, tuple(assignment.T), per_atom)
    np.add.at(counts, tuple(assignment.T), 1)
    return Sensitivity(cells, counts, per_atom, assignment, first["grid_origin"][0].numpy().astype(np.float64),
                       first["spacing"][0].numpy().astype(np.float64),
                       float(sheet_stress_gpa(float(stress), length, width_A, thickness_A)), steps,
                       round(time.time() - began, 3))


def top_cells(sensitivity: Sensitivity, fraction: float) -> np.ndarray:
    """(M, 3) int, the indices of the occupied cells in the top ``fraction`` by sensitivity
    (at least one cell), largest first."""
    occupied = np.argwhere(sensitivity.counts > 0)
    values = sensitivity.cells[tuple(occupied.T)]
    n_top = max(1, int(np.ceil(fraction * len(occupied))))
    return occupied[np.argsort(-values, kind="stable")[:n_top]]
