"""Latent clusters: the encoder's latent vector of every occupied cell over the frames of a run,
grouped by k-means, and how well the groups match the atoms' geometric labels.

Shapes: N atoms, D latent width, M occupied cells over all frames, K clusters, L labels.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.simulator import LearnedSimulator

#: Lloyd iterations of one k-means start at most (it stops earlier once no point changes cluster).
KMEANS_ITERATIONS = 300
#: k-means starts (k-means++ seeds); the one with the least inertia is kept.
KMEANS_STARTS = 8


def cell_latents(simulator: LearnedSimulator, positions: np.ndarray, velocities: np.ndarray, species: np.ndarray,
                 box: np.ndarray, env: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The latents of one frame's occupied cells: the encoder's z(t) (each from its own cell's
    atoms only), or with ``env`` the latent step's z(t+Δ) (each from its neighbourhood, the
    predictor's receptive field).

    Args:
        positions: (N, 3) Å, velocities (N, 3) Å/ps, species (N,) int, box (3,) Å (origin 0), in the
            model's grid. env: None, or (E,) the raw environment of the latent step.

    Returns:
        (latents (C, D) of the C occupied cells, cell (N,) int: the row of each atom's cell).
    """
    state = simulator.atoms_state(tf.constant(positions[None], tf.float32), tf.constant(velocities[None], tf.float32),
                                  tf.constant(species[None], tf.int32), tf.constant(box[None], tf.float32))
    latent = simulator.model.encode(state["atom_grid"])
    if env is not None:
        latent = simulator.latent_step(latent, tf.constant(env[None], tf.float32))
    latent = latent[0].numpy()
    cells, row = np.unique(state["assignment"][0, :, :3].numpy(), axis=0, return_inverse=True)
    return latent[tuple(cells.T)], row.reshape(-1)


def kmeans(points: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded k-means (Lloyd's algorithm from k-means++ seeds, best of :data:`KMEANS_STARTS`).

    Args:
        points: (M, D) float. k: clusters, 1 ≤ k ≤ the number of distinct points. seed: the
            generator's seed (same points and seed, same result).

    Returns:
        (labels (M,) int in 0..k−1, numbered by first appearance; centres (k, D)).
    """
    points = np.asarray(points, np.float64)
    distinct = len(np.unique(points, axis=0))
    if not 1 <= k <= distinct:
        raise SagesnetError(f"explain: --clusters {k} must be between 1 and the {distinct} distinct cell latents")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(KMEANS_STARTS):
        centres = _kmeans_pp(points, k, rng)
        labels = None
        for _ in range(KMEANS_ITERATIONS):
            new = np.argmin(_squared_distances(points, centres), axis=1)
            if labels is not None and np.array_equal(new, labels):
                break
            labels = new
            centres = np.array([points[labels == c].mean(0) if np.any(labels == c) else centres[c] for c in range(k)])
        inertia = float(np.sum((points - centres[labels]) ** 2))
        if best is None or inertia < best[0]:
            best = (inertia, labels, centres)
    _, labels, centres = best
    order = list(dict.fromkeys(labels.tolist())) + [c for c in range(k) if c not in labels]  # first appearance
    renumber = np.empty(k, np.int64)
    renumber[order] = np.arange(k)
    return renumber[labels], centres[order]


def cluster_latents(latents: np.ndarray, k: int, seed: int) -> np.ndarray:
    """(M,) int cluster of each cell latent of ``latents`` (M, D): :func:`kmeans` on the latents
    standardised per component (each of the D components weighs the same, whatever its scale)."""
    scale = latents.std(0)
    return kmeans((latents - latents.mean(0)) / np.where(scale > 0, scale, 1.0), k, seed)[0]


def _squared_distances(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """(M, K) squared Euclidean distances."""
    return np.maximum((points ** 2).sum(1)[:, None] - 2.0 * points @ centres.T + (centres ** 2).sum(1)[None], 0.0)


def _kmeans_pp(points: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """(k, D) k-means++ seeds: each next seed drawn with probability ∝ squared distance to the nearest seed."""
    centres = [points[rng.integers(len(points))]]
    for _ in range(1, k):
        weight = _squared_distances(points, np.array(centres)).min(1)
        centres.append(points[rng.choice(len(points), p=weight / weight.sum())] if weight.sum() > 0
                       else points[rng.integers(len(points))])
    return np.array(centres)


def purity(clusters: np.ndarray, labels: np.ndarray, n_clusters: int, n_labels: int) -> tuple[float, np.ndarray]:
    """How well ``clusters`` (M,) int separate ``labels`` (M,) int: (purity, table (K, L) int of
    counts). Purity = Σ_k max_l table[k, l] / M, 1 when every cluster holds one label; a single
    cluster scores the largest label's share (the baseline to beat)."""
    table = np.zeros((n_clusters, n_labels), np.int64)
    np.add.at(table, (clusters, labels), 1)
    return float(table.max(1).sum() / max(len(clusters), 1)), table
