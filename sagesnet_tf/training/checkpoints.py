"""Checkpoints of a training run, so ``--resume`` continues exactly where a killed run stopped.

A checkpoint (``RUN/checkpoints/ckpt-N``, written by :class:`tf.train.CheckpointManager`) holds:
the model variables, every stage's optimizer (slots and iteration counters, hence learning-rate
schedule position), the :class:`RunState` counters (global step, stage index, step inside the
stage), the random generator used for input noise and resampling, the data iterator's position
(tf.data iterator state) and the oversampling buffer of badly reconstructed windows
(:class:`~sagesnet_tf.training.hard_examples.HardExamples`).
"""

from __future__ import annotations

import os

import tensorflow as tf
from tqdm import tqdm

from sagesnet_tf.errors import SagesnetError


class RunState(tf.Module):
    """Where the run is in its schedule: scalar int64 variables ``step``, ``stage_index``, ``stage_step``."""

    def __init__(self):
        super().__init__(name="run_state")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        self.stage_index = tf.Variable(0, dtype=tf.int64, trainable=False, name="stage_index")
        self.stage_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="stage_step")


class Checkpointer:
    """Saves and restores every tracked object of a run.

    Args:
        directory: where checkpoints go (``RUN/checkpoints``; a scratch dir on non-chief workers).
        keep: checkpoints kept on disk.
        state: the run's :class:`RunState`.
        optional: names among ``objects`` that a checkpoint may lack (one written before they were
            checkpointed under that name): restored when it holds them, else left as they are.
        **objects: trackables to save (model, optimizers, rng, iterator, buffers).
    """

    def __init__(self, directory: str, keep: int, state: RunState, optional: tuple[str, ...] = (), **objects):
        self.state = state
        self.objects = objects
        self.optional = tuple(optional)
        self.checkpoint = tf.train.Checkpoint(state=state, **objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=keep,
                                                  step_counter=state.step)

    @property
    def latest(self) -> str | None:
        """Path prefix of the newest checkpoint, or None."""
        return self.manager.latest_checkpoint

    def restore_latest(self) -> str | None:
        """Restore the newest readable checkpoint and return its path prefix; None when there is none.

        A checkpoint that cannot be read (truncated or missing files: a save torn by a storage fault,
        or files damaged since) is skipped with a log line, and the one before it is restored; a
        ``kill -9`` never leaves one, since TensorFlow records a checkpoint as the latest only after
        its files are complete. A checkpoint that reads but does not fit this run's objects (another
        config) is an error, not skipped. An ``optional`` object the checkpoint lacks is left as it is,
        with a log line.
        """
        for path in reversed(self.manager.checkpoints):
            try:
                saved = {name.split("/")[0] for name, _ in tf.train.list_variables(path)}
                missing = [name for name in self.optional if name not in saved]
                checkpoint = self.checkpoint if not missing else tf.train.Checkpoint(
                    state=self.state, **{k: v for k, v in self.objects.items() if k not in missing})
                status = checkpoint.restore(path).assert_existing_objects_matched()
                if missing:
                    status.expect_partial()  # the older version's name for the missing object stays unread
            except (tf.errors.OpError, IndexError) as exc:  # IndexError: a truncated data file
                first = str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__
                tqdm.write(f"checkpoint {path} is unreadable ({first}); trying the one before it")
                continue
            except (AssertionError, ValueError) as exc:
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise SagesnetError(
                    f"checkpoint {path} does not match this run's model/config ({first}); "
                    "resume with the same config or start a new run directory") from None
            if missing:
                tqdm.write(f"checkpoint {path} holds no {', '.join(missing)} (written by an older version); "
                           "resuming without")
            return path
        if self.manager.checkpoints:
            raise SagesnetError(f"no readable checkpoint in {self.manager.directory} (all "
                                f"{len(self.manager.checkpoints)} are damaged); start a new run with --overwrite")
        return None

    def save(self) -> str:
        """Write a checkpoint numbered by the global step; returns its path prefix."""
        return self.manager.save(checkpoint_number=int(self.state.step.numpy()))


def scratch_dir(run_dir: str, task_index: int) -> str:
    """Checkpoint directory of a non-chief worker (its saves are needed for the collective, then dropped)."""
    return os.path.join(run_dir, f".worker{task_index}_checkpoints")
