"""The MD trainer's config schema (top-level ``kind: md``; :func:`~sagesnet_tf.training.config.load_config`
dispatches here): data, stages, checkpoints, validation and the held-out evaluation, validated into
dataclasses. What each stage kind trains is described in :mod:`~sagesnet_tf.training.md_losses`;
``sagesnet-tf train --print-schema`` prints every key with its default and description.

    kind: md
    name: graphene
    seed: 0
    model: {...keys of SagesnetConfig...}
    data: {datasets: [nvt_4.2, ...], batch_size: 4, validation_dataset: nvt_300, validation_from: 0.5}
    stages: [{kind: autoencoder, steps: 200, learning_rate: 3e-3, final_learning_rate: 1e-3}, ...]
    checkpoint: {every_steps: 100, keep: 2}
    validation: {every_steps: 100, batches: 4}
    evaluation: {onestep_frames: 64, rollout_steps: 200, bond_cutoff: 1.9}
"""

from __future__ import annotations

import dataclasses
import json
import os

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.model import SagesnetConfig
from sagesnet_tf.savedmodel import is_exported, read_metadata
from sagesnet_tf.thermo import THERMOSTATS
from sagesnet_tf.training.config_schema import (CheckpointConfig, ValidationConfig, build_config, check_stages,
                                                config_field)

#: Stage kinds of the MD trainer, in their usual order.
MD_STAGE_KINDS: tuple[str, ...] = ("autoencoder", "heads", "pair_stress_fit", "local_energy_fit", "predictor",
                                   "pair_force_fit", "unrolled", "coarsener_autoencoder", "coarse_joint", "uncertainty",
                                   "coarse_uncertainty")
#: Stages that set a linear term's weights by least squares, and the model attribute of that term.
LEAST_SQUARES_KINDS: dict[str, str] = {"pair_stress_fit": "pair_stress", "pair_force_fit": "pair_forces",
                                       "local_energy_fit": "local_energy"}
#: Stages that train coarse level 0 (the model needs ``coarse_levels``).
MD_COARSE_KINDS: tuple[str, ...] = ("coarsener_autoencoder", "coarse_joint", "coarse_uncertainty")
#: Stages that train the layers between the latent grid and the atoms (the step's grid decoder): a model
#: with ``atom_decoder: false`` (the fine step is the local energy's) has nothing there for them to train.
MD_GRID_DECODING_KINDS: tuple[str, ...] = ("predictor", "pair_force_fit", "unrolled", "coarse_joint")


@dataclasses.dataclass
class MDDataConfig:
    """Which datasets under ``--data`` are used and how validation is held out."""

    datasets: list = config_field([], "dataset subdirectories of --data to train on (default: all with metadata.json)")
    batch_size: int = config_field(4, "windows per batch", min=1)
    validation_dataset: str = config_field("", "dataset whose frames from validation_from on are held out (default: the last)")
    validation_from: float = config_field(0.5, "fraction of the validation dataset's frames used for training", min=0.0, max=0.95)
    time_reversal: bool = config_field(False, "draw each training window time-reversed with probability 1/2 (velocities negated; "
                                              "removes learnable friction, see md_batches)")
    random_shift: bool = config_field(False, "translate each training window by a random fraction of its box along the periodic "
                                             "axes (a symmetry of periodic MD: the lattice at every offset to the voxel grid)")
    random_mirror: bool = config_field(False, "reflect each training window through the mid-plane of its open axis with "
                                              "probability 1/2 (a symmetry of a free sheet, seen both ways up)")
    dataset_weights: dict = config_field({}, "dataset name -> how much more often each of its windows is drawn than one of "
                                             "another dataset's (default 1), e.g. to oversample a few large runs")


@dataclasses.dataclass
class MDStageConfig:
    """One MD stage."""

    kind: str = config_field("predictor", "stage kind: " + ", ".join(MD_STAGE_KINDS), choices=MD_STAGE_KINDS)
    name: str = config_field("", "label in logs and metrics (default: kind, numbered if repeated)")
    steps: int = config_field(200, "optimizer steps", min=1)
    learning_rate: float = config_field(3e-3, "Adam learning rate at the start", min=0.0, exclusive_min=True)
    final_learning_rate: float = config_field(1e-3, "learning rate at the end (exponential decay)", min=0.0, exclusive_min=True)
    unroll: int = config_field(1, "unrolled: model steps per example; coarse_joint: coarse steps per example", min=1)
    oversample: float = config_field(0.0, "coarse stages: fraction of each batch redrawn from the training windows with the "
                                          "highest recent loss (same structure group)", min=0.0, max=0.9)
    input_noise: float = config_field(0.0, "unrolled stage: input noise std in units of σ_d (positions) and σ_v (velocities)", min=0.0)


@dataclasses.dataclass
class MDEvaluationConfig:
    """Held-out evaluation after training."""

    onestep_frames: int = config_field(64, "held-out frames scored for one-step RMSE", min=1)
    rollout_steps: int = config_field(200, "model steps of the held-out rollout", min=1)
    bond_cutoff: float = config_field(1.9, "C–C distance (Å) below which an initial bond counts as kept", min=0.0, exclusive_min=True)
    thermostat_ps: float = config_field(0.1, "time constant (ps) of a second, thermostatted rollout (towards the target, "
                                             "as `simulate --thermostat-ps`); 0: free rollout only", min=0.0)
    thermostat: str = config_field("langevin", "thermostat of that rollout, as `simulate --thermostat` (berendsen: not "
                                               "canonical)", choices=THERMOSTATS)


@dataclasses.dataclass
class MDTrainConfig:
    """A whole MD training run."""

    kind: str = config_field("md", "trainer: 'md' (atom model on MD data)", choices=("md",))
    name: str = config_field("md", "run name")
    seed: int = config_field(0, "seed of init, data order and noise", min=0)
    log_every: int = config_field(20, "log training metrics every N steps", min=1)
    init_from: str = config_field("", "run directory whose model.keras, or exported SavedModel (NAME/VERSION), "
                                      "initialises every variable of the same name and shape (e.g. a trained fine "
                                      "model before adding a coarse level); empty: random init")
    init_skip: list = config_field([], "sublayers of the model (e.g. atom_decoder) that init_from leaves at their "
                                       "fresh initial values")
    model: dict = dataclasses.field(default_factory=dict, metadata={
        "help": "keys of SagesnetConfig (with init_from: that run's model, these keys changed)", "model": True})
    data: MDDataConfig = dataclasses.field(default_factory=MDDataConfig, metadata={"help": "data"})
    stages: list = dataclasses.field(default_factory=list, metadata={"help": "stages", "item": MDStageConfig})
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig, metadata={"help": "checkpoints"})
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig, metadata={"help": "validation"})
    evaluation: MDEvaluationConfig = dataclasses.field(default_factory=MDEvaluationConfig, metadata={"help": "evaluation"})

    @property
    def model_config(self) -> SagesnetConfig:
        return SagesnetConfig.from_dict(self.model)

    @property
    def window_length(self) -> int:
        """Frames per window: the current frame plus the longest unroll (T·(1 + unroll) for coarse
        stages: the first window of T frames plus ``unroll`` coarse steps)."""
        levels = self.model_config.coarse_levels
        return 1 + max(s.unroll if s.kind == "unrolled" else
                       levels[0]["steps"] * (1 + (s.unroll if s.kind == "coarse_joint" else 1))
                       if s.kind in MD_COARSE_KINDS else 1 for s in self.stages)


def md_config_from_dict(data: dict) -> MDTrainConfig:
    """Validate a mapping into :class:`MDTrainConfig` (one-line SagesnetError on bad input)."""
    cfg = build_config(MDTrainConfig, data, "")
    if cfg.init_from:
        cfg.model = {**_run_model_config(cfg.init_from), **cfg.model}
    try:
        cfg.model_config
    except TypeError as exc:
        raise SagesnetError(f"config section 'model' has a bad value ({exc}); use keys of SagesnetConfig") from None
    check_stages(cfg.stages, "add e.g. stages: [{kind: predictor, steps: 200}]")
    kinds = [s.kind for s in cfg.stages]
    if set(kinds) & set(MD_COARSE_KINDS) and not cfg.model_config.coarse_levels:
        raise SagesnetError("coarse stages need a coarse level; add model.coarse_levels: [{factor: [2, 2, 1], steps: 2}]")
    bad = [s.name for s in cfg.stages if s.oversample > 0 and s.kind not in ("coarsener_autoencoder", "coarse_joint")]
    if bad:
        raise SagesnetError(f"stage '{bad[0]}': oversample applies to coarsener_autoencoder and coarse_joint only; remove it")
    if "pair_stress_fit" in kinds and not cfg.model_config.pair_stress:
        raise SagesnetError("stage 'pair_stress_fit' fits the pair stress; set model.pair_stress: true (needs pair_cutoff)")
    if "pair_force_fit" in kinds and not cfg.model_config.pair_cutoff > 0:
        raise SagesnetError("stage 'pair_force_fit' fits the pair forces; set model.pair_cutoff (Å, e.g. 2.7)")
    if "local_energy_fit" in kinds and not cfg.model_config.energy_cutoff > 0:
        raise SagesnetError("stage 'local_energy_fit' fits the local energy; set model.energy_cutoff (Å, e.g. 2.9)")
    decoding = [k for k in kinds if k in MD_GRID_DECODING_KINDS]
    if decoding and not cfg.model_config.atom_decoder:
        raise SagesnetError(f"stage '{decoding[0]}' trains the grid decoder, but model.atom_decoder is false (the "
                            "step is the local energy's alone); remove the stage or set model.atom_decoder: true")
    if "uncertainty" in kinds and "predictor" not in kinds[:kinds.index("uncertainty")]:
        raise SagesnetError("stage 'uncertainty' needs a 'predictor' stage before it; add one")
    return cfg


def _run_model_config(run_dir: str) -> dict:
    """The model config of a finished training run (``RUN/model_info.json``) or of an exported
    SavedModel (its metadata's ``model_config``, ``env_scales`` its ``env_std``)."""
    if is_exported(run_dir):
        metadata = read_metadata(run_dir)
        return {**metadata["model_config"], "env_scales": metadata["env_std"]}
    path = os.path.join(run_dir, "model_info.json")
    if not os.path.isfile(path):
        raise SagesnetError(f"init_from: {path} does not exist; point init_from at a finished training run directory")
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)["model_config"]
