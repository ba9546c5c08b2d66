"""The MD trainer: runs the stages of a ``kind: md`` config (:mod:`~sagesnet_tf.training.md_losses`)
in order on the atom model (:class:`~sagesnet_tf.model.SagesnetModel`) and writes the run directory.

Each training step draws a batch of windows from a generator seeded by (seed, step) (so a resumed
run draws the same batches), optionally redraws part of it from the hard-example buffer
(``oversample``), augments it (``data.random_shift`` / ``random_mirror``) and takes one optimizer
step of the stage, or, for a least-squares stage, adds the batch's equations to its normal
equations (solved at the stage's last step). Validation reads the same batches every time.

Run directory: ``config.yaml``, ``checkpoints/`` (model, every stage's optimizer, the step counters,
the hard-example buffer, the least-squares sums), ``metrics.json`` + ``loss_curves.png``
(:class:`~sagesnet_tf.training.reports.MetricsLog`), ``model.keras`` (the trained model; it
carries its config, environment scales included), ``model_info.json`` (for people: model config,
env fields and scales, Δ, pbc, statistics), ``evaluation.json`` + ``rollout.png`` (held-out
figures, :func:`~sagesnet_tf.training.md_evaluation.evaluate`).
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf
import yaml
from tqdm import tqdm

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import atomic_output, write_json
from sagesnet_tf.model import SagesnetModel
from sagesnet_tf.savedmodel import is_exported
from sagesnet_tf.simulator import LearnedSimulator
from sagesnet_tf.training import md_batches
from sagesnet_tf.training.checkpoints import Checkpointer, RunState
from sagesnet_tf.training.hard_examples import HardExamples
from sagesnet_tf.training.least_squares import NormalEquations, fitted_weights
from sagesnet_tf.training.md_config import LEAST_SQUARES_KINDS, MD_COARSE_KINDS, MDTrainConfig
from sagesnet_tf.training.md_data import MDData, load_md_data
from sagesnet_tf.training.md_evaluation import evaluate
from sagesnet_tf.training.md_losses import CoarseJoint, LeastSquaresStage, MDStage, make_md_stage
from sagesnet_tf.training.reports import MetricsLog

#: Windows the hard-example buffer keeps.
HARD_EXAMPLES_CAPACITY = 64


def initialise_from_run(model: SagesnetModel, run_dir: str, skip=()) -> int:
    """Copy into ``model`` every variable of ``RUN/model.keras`` (or of the exported SavedModel
    ``run_dir``) with the same path (below the model's own name) and shape, except those of the
    sublayers named in ``skip``; returns how many were copied (at least one, else a SagesnetError).
    A model that splits its pair forces into bonded and other pairs (``pair_bond_neighbours``) where
    the run's did not starts both radial functions as the run's one."""
    path = os.path.join(run_dir, "model.keras")
    if is_exported(run_dir):
        from sagesnet_tf.export import model_from_savedmodel

        source, path = model_from_savedmodel(run_dir)[0], run_dir
    elif not os.path.isfile(path):
        raise SagesnetError(f"init_from: {path} does not exist; point init_from at a finished training run directory")
    else:
        source = keras.models.load_model(path)

    def key(variable, owner):
        return variable.path.removeprefix(owner.name + "/")

    by_key = {key(v, source): v for v in source.variables}
    copied = 0
    split = (model.pair_forces is not None and model.config.pair_bond_neighbours
             and source.pair_forces is not None and not source.config.pair_bond_neighbours)
    skip = tuple(f"{name}/" for name in skip)
    for v in model.variables:
        match = None if key(v, model).startswith(skip) else by_key.get(key(v, model))
        if split and match is not None and match is source.pair_forces.magnitude.kernel:
            v.assign(model.pair_forces.split_kernel(match.numpy()))
            copied += 1
        elif match is not None and tuple(match.shape) == tuple(v.shape):
            v.assign(match.value)
            copied += 1
    if copied == 0:
        raise SagesnetError(f"init_from: no variable of {path} matches this model; use a run of the same architecture")
    return copied


def _to_tensors(batch: dict) -> dict:
    return {k: tf.constant(v) for k, v in batch.items()}


def _stage_functions(stage: MDStage, opt, fit: NormalEquations | None = None):
    """tf.functions (train_step(batch, noise), eval_step(batch)) of ``stage``; both return batch means
    of its metrics (train_step also the per-example loss (B,)). For a least-squares stage the train
    step adds the batch's equations to ``fit`` instead of taking an optimizer step."""
    variables = stage.trainable_variables()

    @tf.function(reduce_retracing=True)
    def accumulate_step(batch, noise):
        rows, target, metrics = stage.equations(batch)
        n_features = tf.shape(rows)[-1]
        fit.add(tf.reshape(rows, [-1, n_features]), tf.reshape(target, [-1]))
        return {k: tf.reduce_mean(v) for k, v in metrics.items()}, metrics["loss"]

    @tf.function(reduce_retracing=True)
    def train_step(batch, noise):
        with tf.GradientTape() as tape:
            per_ex, mets = stage.loss(batch, noise)
            loss = tf.reduce_mean(per_ex)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {k: tf.reduce_mean(v) for k, v in mets.items()}, per_ex

    @tf.function(reduce_retracing=True)
    def eval_step(batch):
        return {k: tf.reduce_mean(v) for k, v in stage.loss(batch)[1].items()}

    return (accumulate_step if isinstance(stage, LeastSquaresStage) else train_step), eval_step


def _check_data(cfg: MDTrainConfig, data: MDData) -> None:
    """SagesnetError when the model config or the stages do not fit the data."""
    mcfg = cfg.model_config
    if mcfg.delta_steps != data.record_stride or abs(mcfg.md_dt_fs - data.dt_fs) > 1e-9:
        raise SagesnetError(f"model.delta_steps {mcfg.delta_steps} / md_dt_fs {mcfg.md_dt_fs} differ from the data's "
                            f"record stride {data.record_stride} / dt {data.dt_fs} fs; set them equal (Δ = one record)")
    expected = tuple("periodic" if p else "open" for p in data.train.pbc)
    if tuple(mcfg.boundary) != expected:
        raise SagesnetError(f"model.boundary {list(mcfg.boundary)} does not match the data's pbc; use {list(expected)}")
    if tuple(mcfg.env_fields) != data.train.env_fields:
        raise SagesnetError(f"model.env_fields must be the data's {list(data.train.env_fields)}")
    changing = [seg.name for seg, c in zip(data.train.segments, data.train.changing_box) if c]
    if changing and any(s.kind in MD_COARSE_KINDS for s in cfg.stages):
        raise SagesnetError(f"coarse stages train on constant boxes, but {changing[0]} changes its box (tension/NPT); "
                            "leave such datasets out of data.datasets of the coarse run")
    held_out_changing = [seg.name for seg, c in zip(data.validation.segments, data.validation.changing_box) if c]
    if held_out_changing:
        raise SagesnetError(f"the held-out {held_out_changing[0]} changes its box, but the held-out evaluation rolls "
                            "out a constant box; set data.validation_dataset to an NVT/NVE dataset")


def train_md(cfg: MDTrainConfig, data_dir: str, run_dir: str, resume: bool = False, progress: bool = True) -> dict:
    """Run the MD stages of ``cfg`` on ``data_dir``, write the run dir and the held-out evaluation.

    Returns the metrics dict (``metrics.json`` content; ``summary`` holds the evaluation figures).
    """
    data = load_md_data(data_dir, cfg)
    mcfg = cfg.model_config
    _check_data(cfg, data)
    left_out = {name: n for name, n in {**data.train.overfull, **data.validation.overfull}.items() if n}
    if left_out and progress:
        tqdm.write(f"left out {sum(left_out.values())} windows whose atoms the grid cannot place (more than "
                   f"{mcfg.slots} in a voxel and no room around it: broken, clumped frames): "
                   f"{', '.join(f'{name} {n}' for name, n in left_out.items())}")
    os.makedirs(run_dir, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    model = SagesnetModel(mcfg)
    model.build()
    if cfg.init_from:
        initialise_from_run(model, cfg.init_from, cfg.init_skip)
    open_cells = max(data.train.open_axis_cells(mcfg.h), data.validation.open_axis_cells(mcfg.h))
    open_cells = -(-open_cells // max(mcfg.grid_multiple)) * max(mcfg.grid_multiple)
    sim = LearnedSimulator(model, open_cells=open_cells)
    stages = [make_md_stage(s, sim, data) for s in cfg.stages]
    optimizers = {}
    for s, stage in zip(cfg.stages, stages):
        schedule = keras.optimizers.schedules.ExponentialDecay(
            s.learning_rate, s.steps, s.final_learning_rate / s.learning_rate)
        optimizers[s.name] = keras.optimizers.Adam(schedule)
        optimizers[s.name].build(stage.trainable_variables())  # built before a restore, so its moments restore too
    state = RunState()
    hard = HardExamples(HARD_EXAMPLES_CAPACITY, (2,), tf.int64)  # rows: (window index, time-reversed)
    fits = {kind: NormalEquations(fitted_weights(getattr(model, layer)).shape.num_elements(), kind)
            for kind, layer in LEAST_SQUARES_KINDS.items() if any(s.kind == kind for s in cfg.stages)}
    checkpointer = Checkpointer(os.path.join(run_dir, "checkpoints"), cfg.checkpoint.keep, state,
                                optional=("oversampling",), model=model, optimizers=optimizers,
                                oversampling=hard, **fits)
    metrics = MetricsLog(run_dir, cfg.name, [s.name for s in cfg.stages])
    restored = checkpointer.restore_latest() if resume else None
    if restored:
        metrics.load(int(state.step.numpy()))
        tqdm.write(f"resumed from {restored} at step {int(state.step.numpy())}")
    with atomic_output(os.path.join(run_dir, "config.yaml")) as fh:
        yaml.safe_dump({**dataclasses.asdict(cfg), "model": mcfg.to_dict()}, fh, sort_keys=False)

    val_batches = [_to_tensors(data.validation.sample(np.random.default_rng([cfg.seed, 999_999, j]), cfg.data.batch_size))
                   for j in range(cfg.validation.batches)]
    total = sum(s.steps for s in cfg.stages)
    bar = tqdm(total=total, initial=int(state.step.numpy()), disable=not progress, unit="step")
    start = time.time()
    for index, (s, stage) in enumerate(zip(cfg.stages, stages)):
        if index < int(state.stage_index.numpy()):
            continue
        fit = fits.get(s.kind)
        train_step, eval_step = _stage_functions(stage, optimizers[s.name], fit)
        bar.set_description(f"{cfg.name}:{s.name}")
        if fit is not None and int(state.stage_step.numpy()) == 0:
            fit.reset()
        while int(state.stage_step.numpy()) < s.steps:
            step = int(state.step.numpy())
            rng = np.random.default_rng([cfg.seed, step])
            picks, reverse = data.train.draw(rng, cfg.data.batch_size, cfg.data.time_reversal)
            if s.oversample > 0:
                first = int(picks[0])  # buffered windows join only a batch of their structure group
                rows = hard.mix(np.stack([picks, reverse], axis=1), s.oversample, rng,
                                eligible=lambda held: data.train.same_group(first, held[:, 0]))
                picks, reverse = rows[:, 0], rows[:, 1].astype(bool)
            batch = data.train.batch(picks, reverse)
            if cfg.data.random_shift:
                batch = md_batches.shift_windows(batch, rng, data.train.pbc)
            if cfg.data.random_mirror:
                batch = md_batches.mirror_windows(batch, rng, data.train.pbc)
            batch = _to_tensors(batch)
            noise = None
            if s.kind == "unrolled" and s.input_noise > 0:
                noise = tf.constant(rng.normal(0.0, s.input_noise, (cfg.data.batch_size, batch["positions"].shape[2], 6)),
                                    tf.float32)
            means, per_example = train_step(batch, noise)
            if s.oversample > 0:
                hard.update(np.stack([picks, reverse], axis=1), per_example.numpy())
            state.step.assign_add(1)
            state.stage_step.assign_add(1)
            step, stage_step = step + 1, int(state.stage_step.numpy())
            bar.update(1)
            last = stage_step == s.steps
            if last and fit is not None:
                fit.solve_into(stage.layer)
            if step % cfg.log_every == 0 or last:
                values = {k: float(v) for k, v in means.items()}
                metrics.record(s.name, step, stage_step, "train", values)
                bar.set_postfix(loss=f"{values['loss']:.3g}")
            if step % cfg.validation.every_steps == 0 or last:
                vals = [eval_step(b) for b in val_batches]
                metrics.record(s.name, step, stage_step, "validation",
                               {k: float(np.mean([v[k] for v in vals])) for k in vals[0]})
                metrics.write()
            if last:
                state.stage_index.assign_add(1)
                state.stage_step.assign(0)
            if step % cfg.checkpoint.every_steps == 0 or last:
                metrics.write()  # before the checkpoint: a resumed run trims rows past it, leaving no gap
                checkpointer.save()
            if last:
                break
    bar.close()
    model.save(os.path.join(run_dir, "model.keras.tmp.keras"))
    os.replace(os.path.join(run_dir, "model.keras.tmp.keras"), os.path.join(run_dir, "model.keras"))
    write_json(os.path.join(run_dir, "model_info.json"), {
        "model_config": mcfg.to_dict(), "env_fields": list(mcfg.env_fields),
        "env_scales": dict(zip(mcfg.env_fields, mcfg.env_scales)),
        "delta_ps": mcfg.delta_ps, "pbc": data.train.pbc.tolist(), "open_axis_cells": open_cells,
        "statistics": {"sigma_displacement_A": data.sigma_d, "sigma_velocity_A_per_ps": data.sigma_v,
                       "sigma_stress_bar_A3": data.sigma_stress.tolist()}})
    coarse_joint = next((stage for stage in stages if isinstance(stage, CoarseJoint)), None)
    figures = evaluate(sim, data.validation, cfg.evaluation, run_dir, progress=progress, coarse_joint=coarse_joint)
    metrics.summarize(wall_seconds_last_session=round(time.time() - start, 1), total_steps=total, evaluation=figures,
                      windows_left_out_overfull=left_out)
    metrics.write()
    return metrics.data
