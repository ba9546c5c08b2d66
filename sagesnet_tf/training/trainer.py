"""The training loop: a staged schedule of custom tf.function steps under a tf.distribute strategy.

Data: a tf.data dataset of unbatched windows, each (L, X, Y, Z) int cell states of L consecutive
boards (L = :attr:`TrainConfig.window_length`). The trainer shuffles (seeded), repeats and batches
it; every replica receives the same global batch and takes its slice, so runs with different
strategies see the same examples in the same order.

Host side, between steps, the trainer draws the random input noise from a checkpointed
:class:`tf.random.Generator` and, in coarsener stages with ``oversample > 0``, replaces part of the
batch with windows from the :class:`~sagesnet_tf.training.hard_examples.HardExamples` buffer (drawn
with a numpy generator seeded by (seed, step)). All of this state, the data iterator, the
optimizers and the schedule position are checkpointed, so a killed run resumed with ``--resume``
continues from its last checkpoint with the same schedule.

Run directory (written by the chief only)::

    RUN/config.yaml         validated config, defaults filled in
    RUN/checkpoints/        tf.train.CheckpointManager checkpoints (ckpt-<global step>)
    RUN/logs/               TensorBoard scalars (train/validation per stage)
    RUN/metrics.json        history and final validation metrics per stage (see reports.py)
    RUN/loss_curves.png     loss against step per stage
"""

from __future__ import annotations

import os
import time

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.pipelines import reader
from sagesnet_tf.training import stages as stages_mod
from sagesnet_tf.training.checkpoints import Checkpointer, RunState, scratch_dir
from sagesnet_tf.training.config import StageConfig, TrainConfig, save_config
from sagesnet_tf.training.distribute import replica_slice, worker_task
from sagesnet_tf.training.hard_examples import HardExamples
from sagesnet_tf.training.losses import global_mean
from sagesnet_tf.training.reports import MetricsLog


def ca_datasets(data_dir: str, cfg: TrainConfig) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """Training and validation windows (L, X, Y, Z) uint8 of a ``ca`` dataset, split by rollout.

    The last ``data.validation_fraction`` of the rollouts (at least one) are held out, so no
    board is seen in both splits. L = ``cfg.window_length``.
    """
    meta = reader.load_metadata(data_dir)
    if meta.get("kind") != "ca":
        raise SagesnetError(f"{data_dir} holds a {meta.get('kind')!r} dataset; the CA trainer needs one written by "
                            "`sagesnet-tf generate ca`")
    length, n_boards = cfg.window_length, int(meta["n_boards"])
    n_val = max(1, int(round(cfg.data.validation_fraction * n_boards)))
    if n_boards - n_val < 1:
        raise SagesnetError(f"{data_dir} has {n_boards} rollout(s): too few to hold out validation boards; "
                            "generate at least 2")
    per_board = reader.count_windows([int(meta["n_frames_per_board"])], length)
    windows = reader.ca_window_dataset(data_dir, window=length)
    n_train = (n_boards - n_val) * per_board
    return windows.take(n_train), windows.skip(n_train)


class Trainer:
    """Runs ``cfg.stages`` in order on the cellular-automaton model bundle.

    Args:
        cfg: validated run config.
        run_dir: output directory (must exist).
        train_windows, val_windows: tf.data datasets of unbatched (L, X, Y, Z) int windows with
            L >= ``cfg.window_length``; every window of one dataset has the same shape.
        strategy: a tf.distribute strategy (see :mod:`sagesnet_tf.training.distribute`).
        progress: show tqdm progress bars.
    """

    def __init__(self, cfg: TrainConfig, run_dir: str, train_windows: tf.data.Dataset,
                 val_windows: tf.data.Dataset, strategy: tf.distribute.Strategy | None = None,
                 progress: bool = True):
        self.cfg = cfg
        self.run_dir = run_dir
        self.strategy = strategy or tf.distribute.get_strategy()
        self.progress = progress
        self.replicas = self.strategy.num_replicas_in_sync
        if cfg.data.batch_size % self.replicas:
            raise SagesnetError(f"data.batch_size {cfg.data.batch_size} is not divisible by the "
                                f"{self.replicas} replicas; use a multiple of {self.replicas}")
        _, task_index, self.chief = worker_task()
        length = cfg.window_length
        spec = train_windows.element_spec
        if spec.shape.rank != 4 or (spec.shape[0] is not None and spec.shape[0] < length):
            raise SagesnetError(f"training windows have shape {spec.shape}; the stages need (L>={length}, X, Y, Z) "
                                "cell states — regenerate the data with longer windows")
        batch = cfg.data.batch_size
        # Seeded before the datasets: the shuffle's seeds pair the global seed with its own, so the data
        # order is the same in a fresh process and after another run in the same process.
        keras.utils.set_random_seed(cfg.seed)
        options = tf.data.Options()
        # The readers' window ops are stateless in effect but TF cannot tell; let the iterator
        # position be checkpointed anyway.
        options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
        self._train_ds = (train_windows.map(lambda w: tf.cast(w[:length], tf.int32))
                          .shuffle(cfg.data.shuffle_buffer, seed=cfg.seed, reshuffle_each_iteration=True)
                          .repeat().batch(batch, drop_remainder=True).prefetch(2).with_options(options))
        self._val_ds = val_windows.map(lambda w: tf.cast(w[:length], tf.int32)).repeat().batch(batch, drop_remainder=True)
        example = next(iter(self._train_ds.take(1)))
        with self.strategy.scope():
            self.models = stages_mod.CAModels(cfg.cell_config)
            self.models.build()
            self.models.check_board(example.shape[2:])
            self.stages = [stages_mod.make_stage(s, self.models) for s in cfg.stages]
            self.optimizers = [st.make_optimizer() for st in self.stages]
        self.state = RunState()
        self.rng = tf.random.Generator.from_seed(cfg.seed)
        self.hard = HardExamples(capacity=4 * batch, row_shape=example.shape[1:], dtype=tf.int32)
        self._iterator = iter(self._train_ds)
        ckpt_dir = os.path.join(run_dir, "checkpoints") if self.chief else scratch_dir(run_dir, task_index)
        self.checkpointer = Checkpointer(
            ckpt_dir, cfg.checkpoint.keep, self.state, models=self.models.tracked(),
            optimizers={st.name: opt for st, opt in zip(self.stages, self.optimizers)},
            rng=self.rng, iterator=self._iterator, oversampling=self.hard, optional=("oversampling",))
        self.metrics = MetricsLog(run_dir, cfg.name, [s.name for s in cfg.stages])
        self._writer = tf.summary.create_file_writer(os.path.join(run_dir, "logs")) if self.chief else tf.summary.create_noop_writer()
        self._train_fns: dict[int, tf.types.experimental.GenericFunction] = {}
        self._eval_fns: dict[int, tf.types.experimental.GenericFunction] = {}

    # ----------------------------------------------------------------------------------- steps
    def _train_fn(self, index: int):
        """tf.function running one optimizer step of stage ``index`` on a global batch."""
        if index in self._train_fns:
            return self._train_fns[index]
        stage, opt = self.stages[index], self.optimizers[index]
        batch = self.cfg.data.batch_size
        strategy = self.strategy

        def replica_step(windows, noise):
            windows, noise = replica_slice(windows), replica_slice(noise)
            variables = stage.trainable_variables()
            with tf.GradientTape() as tape:
                out = stage.compute(windows, noise, training=True)
                loss = global_mean(out["loss"], batch)
            grads = tape.gradient(loss, variables)
            opt.apply_gradients(zip(grads, variables))
            means = {k: global_mean(v, batch) for k, v in out.items()}
            return means, out["loss"]

        @tf.function
        def step(windows, noise):
            means, per_example = strategy.run(replica_step, args=(windows, noise))
            means = {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in means.items()}
            return means, strategy.gather(per_example, axis=0)

        self._train_fns[index] = step
        return step

    def _eval_fn(self, index: int):
        """tf.function computing stage ``index``'s metrics on a global batch (no noise, no update)."""
        if index in self._eval_fns:
            return self._eval_fns[index]
        stage, batch, strategy = self.stages[index], self.cfg.data.batch_size, self.strategy

        def replica_eval(windows):
            windows = replica_slice(windows)
            out = stage.compute(windows, None, training=False)
            return {k: global_mean(v, batch) for k, v in out.items()}

        @tf.function
        def evaluate(windows):
            means = strategy.run(replica_eval, args=(windows,))
            return {k: strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in means.items()}

        self._eval_fns[index] = evaluate
        return evaluate

    # ------------------------------------------------------------------------------------ loop
    def _next_batch(self, stage_cfg: StageConfig) -> tuple[tf.Tensor, tf.Tensor]:
        """Next global batch: windows (B, L, X, Y, Z) int32 (with ``oversample``, the first ones
        redrawn from the hard-example buffer) and input noise (B, X, Y, Z, C) float32."""
        windows = next(self._iterator)
        if stage_cfg.oversample > 0.0:
            rng = np.random.default_rng([self.cfg.seed, int(self.state.step.numpy())])
            windows = tf.constant(self.hard.mix(windows.numpy(), stage_cfg.oversample, rng))
        shape = tf.concat([tf.shape(windows)[:1], tf.shape(windows)[2:], [self.models.cfg.states]], 0)
        noise = self.rng.normal(shape, stddev=stage_cfg.input_noise) if stage_cfg.input_noise > 0 else tf.zeros(shape)
        return windows, noise

    def validate(self, index: int) -> dict[str, float]:
        """Mean metrics of stage ``index`` over the first ``validation.batches`` validation batches
        (the same batches every time, so curves compare and a resumed run validates as an
        uninterrupted one)."""
        fn = self._eval_fn(index)
        totals: dict[str, float] = {}
        n = self.cfg.validation.batches
        for windows in self._val_ds.take(n):
            for k, v in fn(windows).items():
                totals[k] = totals.get(k, 0.0) + float(v) / n
        return totals

    def _log(self, split: str, stage: str, step: int, stage_step: int, metrics: dict[str, float]) -> None:
        self.metrics.record(stage, step, stage_step, split, metrics)
        with self._writer.as_default(step=step):
            for k, v in metrics.items():
                tf.summary.scalar(f"{stage}/{split}/{k}", v)

    def _save(self) -> None:
        """Write ``metrics.json`` then the checkpoint: killed between the two, the resumed run trims the
        metrics rows past its checkpoint (:meth:`MetricsLog.load`), so its history has no gap."""
        if self.chief:
            self.metrics.write()
        self.checkpointer.save()

    def run(self, resume: bool = False) -> dict:
        """Run (or, with ``resume``, continue) the schedule; returns the metrics dict.

        A checkpoint is written every ``checkpoint.every_steps`` global steps and at each stage
        end; validation runs every ``validation.every_steps`` steps and at each stage end.
        """
        cfg = self.cfg
        if self.chief:
            save_config(cfg, os.path.join(self.run_dir, "config.yaml"))
        restored = self.checkpointer.restore_latest() if resume else None
        if restored:
            self.metrics.load(int(self.state.step.numpy()))
            tqdm.write(f"resumed from {restored} at step {int(self.state.step.numpy())} "
                       f"(stage {cfg.stages[int(self.state.stage_index.numpy())].name if int(self.state.stage_index.numpy()) < len(cfg.stages) else 'done'})")
        total = cfg.total_steps
        bar = tqdm(total=total, initial=int(self.state.step.numpy()), desc=cfg.name, unit="step",
                   disable=not (self.progress and self.chief), dynamic_ncols=True)
        start = time.time()
        while int(self.state.stage_index.numpy()) < len(self.stages):
            index = int(self.state.stage_index.numpy())
            stage_cfg, stage = cfg.stages[index], self.stages[index]
            step_fn = self._train_fn(index)
            bar.set_description(f"{cfg.name}:{stage_cfg.name}")
            while int(self.state.stage_step.numpy()) < stage_cfg.steps:
                windows, noise = self._next_batch(stage_cfg)
                means, per_example = step_fn(windows, noise)
                if stage_cfg.oversample > 0.0:
                    self.hard.update(windows.numpy(), per_example.numpy())
                self.state.step.assign_add(1)
                self.state.stage_step.assign_add(1)
                step, stage_step = int(self.state.step.numpy()), int(self.state.stage_step.numpy())
                bar.update(1)
                last = stage_step == stage_cfg.steps
                if step % cfg.log_every == 0 or last:
                    values = {k: float(v) for k, v in means.items()}
                    self._log("train", stage_cfg.name, step, stage_step, values)
                    bar.set_postfix(loss=f"{values['loss']:.3g}")
                if step % cfg.validation.every_steps == 0 or last:
                    self._log("validation", stage_cfg.name, step, stage_step, self.validate(index))
                if last:
                    self.state.stage_index.assign_add(1)
                    self.state.stage_step.assign(0)
                if step % cfg.checkpoint.every_steps == 0 or last:
                    self._save()
                if last:
                    break
        bar.close()
        self.metrics.summarize(wall_seconds_last_session=round(time.time() - start, 2), total_steps=total)
        if self.chief:
            self.metrics.write()
        self._writer.flush()
        return self.metrics.data
