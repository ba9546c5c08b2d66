"""The hard-example buffer both trainers oversample from, and resuming a checkpoint that lacks it."""

import numpy as np
import tensorflow as tf

from sagesnet_tf.training.checkpoints import Checkpointer, RunState
from sagesnet_tf.training.hard_examples import HardExamples


def test_buffer_keeps_the_highest_losses_and_a_held_row_takes_its_new_loss():
    hard = HardExamples(3, (2,), tf.int64)
    hard.update(np.array([[0, 0], [1, 1], [2, 0]]), [1.0, 3.0, 2.0])
    hard.update(np.array([[3, 0], [1, 1]]), [2.5, 0.5])  # row (1, 1) is held: its loss falls to 0.5
    np.testing.assert_array_equal(hard.rows.numpy(), [[3, 0], [2, 0], [0, 0]])
    np.testing.assert_array_equal(hard.losses.numpy(), [2.5, 2.0, 1.0])
    hard.update(np.array([[4, 1]]), [np.nan])  # non-finite losses are not kept
    np.testing.assert_array_equal(hard.losses.numpy(), [2.5, 2.0, 1.0])


def test_mix_replaces_the_first_rows_by_eligible_held_ones():
    hard = HardExamples(4, (2,), tf.int64)
    batch = np.array([[10, 0], [11, 0], [12, 0], [13, 0]])
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(hard.mix(batch, 0.5, rng), batch)  # empty buffer: unchanged
    hard.update(np.array([[1, 0], [2, 1], [3, 0]]), [3.0, 2.0, 1.0])
    mixed = hard.mix(batch, 0.5, rng, eligible=lambda held: held[:, 0] != 2)
    assert {tuple(r) for r in mixed[:2]} <= {(1, 0), (3, 0)}
    np.testing.assert_array_equal(mixed[2:], batch[2:])
    one = hard.mix(batch, 0.75, rng, eligible=lambda held: held[:, 0] == 3)  # fewer while fewer are eligible
    np.testing.assert_array_equal(one, [[3, 0], [11, 0], [12, 0], [13, 0]])


def test_checkpoint_without_the_buffer_resumes_without_it(tmp_path):
    # written by an older version: no `oversampling` object in the checkpoint
    old_state, weights = RunState(), tf.Variable([1.0, 2.0])
    old_state.step.assign(7)
    Checkpointer(str(tmp_path), 2, old_state, weights=tf.train.Checkpoint(w=weights)).save()
    state, hard = RunState(), HardExamples(2, (2,), tf.int64)
    restored_weights = tf.Variable([0.0, 0.0])
    ckpt = Checkpointer(str(tmp_path), 2, state, optional=("oversampling",),
                        weights=tf.train.Checkpoint(w=restored_weights), oversampling=hard)
    assert ckpt.restore_latest()
    assert int(state.step.numpy()) == 7 and restored_weights.numpy().tolist() == [1.0, 2.0]
    assert not np.isfinite(hard.losses.numpy()).any()
    # a new checkpoint holds the buffer and restores it
    hard.update(np.array([[5, 1]]), [4.0])
    state.step.assign(8)
    ckpt.save()
    again = HardExamples(2, (2,), tf.int64)
    Checkpointer(str(tmp_path), 2, RunState(), optional=("oversampling",),
                 weights=tf.train.Checkpoint(w=tf.Variable([0.0, 0.0])), oversampling=again).restore_latest()
    np.testing.assert_array_equal(again.rows.numpy()[0], [5, 1])
