"""The hard-example buffer both trainers oversample from (a stage's ``oversample``).

:class:`HardExamples` keeps the training examples with the highest recent per-example loss, each as
an integer payload row of one fixed shape: the cellular-automaton trainer stores whole windows of
cell states (L, X, Y, Z) int32, the MD trainer a window's global index and time-reversal flag (2,)
int64 (the frames are reread from its :class:`~sagesnet_tf.training.md_batches.MDWindows`). It is
a ``tf.Module`` checkpointed with the run, so a resumed run draws exactly the batches an
uninterrupted one would; the host-side bookkeeping is numpy and draws with the caller's
``np.random.Generator`` (the trainers seed it by (seed, step)).
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tensorflow as tf


class HardExamples(tf.Module):
    """The ``capacity`` examples with the highest recent loss.

    Variables: ``rows`` (capacity, *row_shape) of ``dtype``, ``losses`` (capacity,) float32, sorted
    by loss, highest first; empty slots have loss −inf and trail.

    Args:
        capacity: C, the examples kept.
        row_shape: the shape of one example's payload row.
        dtype: an integer dtype of the payload.
    """

    def __init__(self, capacity: int, row_shape, dtype=tf.int32):
        super().__init__(name="hard_examples")
        self.rows = tf.Variable(tf.zeros((capacity, *[int(s) for s in row_shape]), dtype), trainable=False,
                                name="rows")
        self.losses = tf.Variable(tf.fill([capacity], float("-inf")), trainable=False, name="losses")

    def update(self, rows, losses) -> None:
        """Merge a trained batch: payload rows (B, *row_shape) and their per-example losses (B,). A row
        already held takes its new loss; non-finite losses are dropped; the ``capacity`` highest stay
        (equal losses in the order held first, then the batch's)."""
        held_rows, held_losses = self.rows.numpy(), self.losses.numpy()
        merged = {row.tobytes(): (row, loss) for row, loss in zip(held_rows, held_losses) if np.isfinite(loss)}
        for row, loss in zip(np.asarray(rows, held_rows.dtype), np.asarray(losses, np.float32)):
            key = row.tobytes()
            if np.isfinite(loss):
                merged[key] = (row, loss)
            else:
                merged.pop(key, None)
        best = sorted(merged.values(), key=lambda item: item[1], reverse=True)[:len(held_losses)]
        pad = len(held_losses) - len(best)
        self.rows.assign(np.stack([r for r, _ in best] + [np.zeros_like(held_rows[0])] * pad))
        self.losses.assign(np.array([l for _, l in best] + [-np.inf] * pad, np.float32))

    def mix(self, rows, fraction: float, rng: np.random.Generator,
            eligible: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
        """A drawn batch of payload rows (B, *row_shape) with its first round(fraction·B) replaced by
        held rows drawn uniformly (with replacement) with ``rng``; fewer while fewer are held.
        ``eligible``: held rows (C, *row_shape) -> (C,) bool, which of them may join this batch
        (e.g. MD windows of the batch's structure); default all."""
        held_rows, held_losses = self.rows.numpy(), self.losses.numpy()
        ok = np.isfinite(held_losses)
        if eligible is not None:
            ok &= np.asarray(eligible(held_rows), bool)
        candidates = np.flatnonzero(ok)
        rows = np.asarray(rows, held_rows.dtype)
        n = min(int(round(fraction * len(rows))), len(candidates))
        if n == 0:
            return rows
        chosen = candidates[rng.integers(0, len(candidates), size=n)]
        return np.concatenate([held_rows[chosen], rows[n:]])
