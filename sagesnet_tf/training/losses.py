"""Loss and metric functions of the training stages.

Every loss returns a **per-example** value of shape (B,) so that the trainer can (a) average it
over the *global* batch under tf.distribute and (b) keep per-example losses for oversampling the
badly reconstructed windows. Shapes: B batch, X/Y/Z cells, C cell states, D latent width.
"""

from __future__ import annotations

import tensorflow as tf


def cell_cross_entropy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Mean per-cell softmax cross-entropy of each example.

    Args:
        labels: (B, X, Y, Z) int, true cell state.
        logits: (B, X, Y, Z, C) float, unnormalised log-probabilities of each state.
    Returns:
        (B,) float32, nats per cell.
    """
    ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(labels, tf.int32), logits=logits)
    return tf.reduce_mean(ce, axis=[1, 2, 3])


def cell_accuracy(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Fraction of cells whose most likely state is the true one, per example.

    Args:
        labels: (B, X, Y, Z) int; logits: (B, X, Y, Z, C) float.
    Returns:
        (B,) float32 in [0, 1].
    """
    pred = tf.argmax(logits, axis=-1, output_type=tf.int32)
    hit = tf.cast(tf.equal(pred, tf.cast(labels, tf.int32)), tf.float32)
    return tf.reduce_mean(hit, axis=[1, 2, 3])


def board_exact(labels: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """1.0 for each example whose whole predicted board is right, else 0.0; shape (B,)."""
    return tf.cast(tf.equal(cell_accuracy(labels, logits), 1.0), tf.float32)


def mean_squared(pred: tf.Tensor, target: tf.Tensor, scale: tf.Tensor | float = 1.0) -> tf.Tensor:
    """Per-example mean squared error of ``(pred - target) / scale`` over all non-batch axes.

    Args:
        pred, target: (B, ...) float, same shape. scale: broadcastable normalisation (e.g. the
            dataset standard deviation of the quantity, in its units), so the loss is unitless.
    Returns:
        (B,) float32.
    """
    err = tf.square((tf.cast(pred, tf.float32) - tf.cast(target, tf.float32)) / scale)
    return tf.reduce_mean(tf.reshape(err, [tf.shape(err)[0], -1]), axis=1)


def global_mean(per_example: tf.Tensor, global_batch: int) -> tf.Tensor:
    """Sum of a replica's per-example losses divided by the *global* batch size.

    Under tf.distribute the replicas' gradients are summed, so this gives the gradient of the
    global-batch mean. With one replica it is the plain mean.
    """
    return tf.reduce_sum(per_example) / tf.cast(global_batch, per_example.dtype)
