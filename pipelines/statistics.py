"""Normalisation statistics stored in ``metadata.json`` beside the shards.

Per-component mean and standard deviation (population, ddof 0) accumulated in float64 with
Chan's parallel update, so a dataset of any size is summarised one trajectory at a time:

- ``velocities``     3 components, Å/ps, over all atoms and frames
- ``displacements``  3 components, Å, ``positions[t+1] - positions[t]`` inside each trajectory
                     (one record stride, never across a gap between bursts; unwrapped
                     positions, so no periodic jumps)
- ``stress``         6 components, bar·Å³ (xx yy zz xy xz yz), over all atoms and frames
- ``environment``    E components, in each field's unit, over all frames

A std of 0 (a field that never changes, e.g. a constant temperature) is stored as 0: consumers
normalising by it must floor it.
"""

from __future__ import annotations

import numpy as np

from sagesnet_tf.trajectory import Trajectory


class Moments:
    """Running per-component count, mean and sum of squared deviations of (M, C) samples."""

    def __init__(self, n_components: int) -> None:
        self.count = 0
        self.mean = np.zeros(n_components)
        self.m2 = np.zeros(n_components)

    def update(self, samples: np.ndarray) -> None:
        """Add (M, C) samples (any leading shape flattened to M)."""
        x = np.asarray(samples, dtype=np.float64).reshape(-1, self.mean.size)
        if len(x) == 0:
            return
        n_b = len(x)
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean = self.mean + delta * n_b / n
        self.m2 = self.m2 + m2_b + delta ** 2 * self.count * n_b / n
        self.count = n

    def as_dict(self) -> dict:
        """``{"count": M, "mean": [C floats], "std": [C floats]}`` (std 0 when count is 0)."""
        std = np.sqrt(self.m2 / self.count) if self.count else np.zeros_like(self.mean)
        return {"count": int(self.count), "mean": self.mean.tolist(), "std": std.tolist()}


def md_statistics(trajectories: list[Trajectory]) -> dict[str, dict]:
    """Statistics of velocities, per-stride displacements, stress and environment (module docstring)."""
    n_env = len(trajectories[0].env_fields)
    moments = {"velocities": Moments(3), "displacements": Moments(3), "stress": Moments(6),
               "environment": Moments(n_env)}
    for traj in trajectories:
        moments["velocities"].update(traj.velocities)
        moments["displacements"].update(np.diff(traj.positions, axis=0)[traj.consecutive()])
        moments["stress"].update(traj.stress)
        moments["environment"].update(traj.environment)
    return {name: m.as_dict() for name, m in moments.items()}


def ca_statistics(boards: np.ndarray) -> dict[str, dict]:
    """``alive_fraction``: mean and std over frames of the fraction of live cells; boards (B, T, X, Y, Z)."""
    moments = Moments(1)
    moments.update(boards.reshape(boards.shape[0] * boards.shape[1], -1).mean(axis=1))
    return {"alive_fraction": moments.as_dict()}
