"""One training run's configuration: a YAML/JSON file validated into dataclasses.

A run is described by a single file (DeePMD-kit style). :func:`load_config` is the one loader: the
file's top-level ``kind`` picks the schema, ``md`` the MD atom model's
(:mod:`~sagesnet_tf.training.md_config`), none the cellular automata's defined here. Unknown keys
and bad values raise :class:`~sagesnet_tf.errors.SagesnetError` with a one-line message naming the
offending key and what is allowed (the checks live in :mod:`~sagesnet_tf.training.config_schema`).
``sagesnet-tf train --print-schema`` prints :func:`schema_text`: every key of both schemas with its
default and description.

Layout of a cellular-automaton file (every section optional except ``stages``)::

    name: ca_life
    seed: 0
    model: {states: 2, channels: 2, hidden: 16, latent_dim: 16, kernel_size: [3, 3, 1], ...}
    data: {batch_size: 32, validation_fraction: 0.2, shuffle_buffer: 256}
    stages:
      - {kind: predictor, steps: 400, learning_rate: 0.01, final_learning_rate: 0.001}
      - {kind: unrolled, steps: 100, unroll: 4, input_noise: 0.05}
    checkpoint: {every_steps: 100, keep: 3}
    log_every: 20
    validation: {every_steps: 200, batches: 4}
"""

from __future__ import annotations

import dataclasses
import os

import yaml

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import atomic_output
from sagesnet_tf.model import CellStateConfig, SagesnetConfig
from sagesnet_tf.training.config_schema import (CheckpointConfig, ValidationConfig, build_config, check_stages,
                                                config_field, read_config_file, schema_lines)
from sagesnet_tf.training.md_config import MDTrainConfig, md_config_from_dict

#: Stage kinds the trainer knows, in the order a multiscale run normally uses them.
STAGE_KINDS: tuple[str, ...] = (
    "predictor",              # one-step loss of the fine predictor
    "unrolled",               # multi-step unrolled loss with input noise (stable rollouts)
    "coarsener_autoencoder",  # coarsener + refiner reconstruct k×k×k cells × T steps
    "coarse_joint",           # coarsener + coarse predictor: next coarse state's block density
    "uncertainty",            # per-cell head that predicts the predictor's own loss
)


@dataclasses.dataclass
class DataConfig:
    """How training windows are drawn from ``--data DIR``."""

    batch_size: int = config_field(32, "global batch size (split over replicas)", min=1)
    validation_fraction: float = config_field(0.2, "fraction of boards held out for validation", min=0.0, max=0.9)
    shuffle_buffer: int = config_field(256, "tf.data shuffle buffer (examples)", min=1)


@dataclasses.dataclass
class StageConfig:
    """One stage of the schedule; stages run in file order."""

    kind: str = config_field("predictor", "stage kind: " + ", ".join(STAGE_KINDS), choices=STAGE_KINDS)
    name: str = config_field("", "label used in logs and metrics (default: kind, numbered if repeated)")
    steps: int = config_field(500, "optimizer steps in this stage", min=1)
    learning_rate: float = config_field(1e-2, "Adam learning rate at the start of the stage", min=0.0, exclusive_min=True)
    final_learning_rate: float = config_field(1e-3, "learning rate at the end (exponential decay)", min=0.0, exclusive_min=True)
    unroll: int = config_field(1, "predicted steps per example (loss summed over the rollout)", min=1)
    input_noise: float = config_field(0.0, "std of Gaussian noise added to the first one-hot input board (robust rollouts)", min=0.0, max=1.0)
    oversample: float = config_field(0.0, "coarsener stages: fraction of each batch redrawn from the worst-reconstructed windows", min=0.0, max=0.9)


@dataclasses.dataclass
class TrainConfig:
    """A whole training run."""

    name: str = config_field("run", "run name (used in logs)")
    seed: int = config_field(0, "seed of every random draw (init, data order, noise)", min=0)
    log_every: int = config_field(20, "write TensorBoard scalars / progress every N steps", min=1)
    model: dict = dataclasses.field(default_factory=dict, metadata={
        "help": "cell-state model hyperparameters, keys of sagesnet_tf.model.CellStateConfig", "model": True})
    data: DataConfig = dataclasses.field(default_factory=DataConfig, metadata={"help": "data drawing"})
    stages: list = dataclasses.field(default_factory=list, metadata={"help": "list of stages (see stage keys)", "item": StageConfig})
    checkpoint: CheckpointConfig = dataclasses.field(default_factory=CheckpointConfig, metadata={"help": "checkpoints"})
    validation: ValidationConfig = dataclasses.field(default_factory=ValidationConfig, metadata={"help": "validation"})

    @property
    def total_steps(self) -> int:
        """Optimizer steps over all stages."""
        return sum(s.steps for s in self.stages)

    @property
    def cell_config(self) -> CellStateConfig:
        """The model section as :class:`~sagesnet_tf.model.CellStateConfig` (defaults filled in)."""
        return CellStateConfig.from_dict(self.model)

    @property
    def window_length(self) -> int:
        """Frames per training window needed by the stages (current board + future boards)."""
        n = 2
        for s in self.stages:
            if s.kind in ("predictor", "unrolled", "uncertainty"):
                n = max(n, s.unroll + 1)
            else:  # coarse stages: one coarse state (T boards) now and the next one
                n = max(n, 2 * self.cell_config.coarse_levels[0]["steps"])
        return n

    def to_dict(self) -> dict:
        """Plain-data form (what :func:`save_config` writes), model defaults filled in."""
        out = dataclasses.asdict(self)
        out["model"] = self.cell_config.to_dict()
        return out


def from_dict(data: dict) -> TrainConfig:
    """Validate a plain mapping into a :class:`TrainConfig` (one-line SagesnetError on bad input)."""
    cfg = build_config(TrainConfig, data, "")
    try:
        model = cfg.cell_config
    except TypeError as exc:  # a value of the wrong type inside the model section
        raise SagesnetError(f"config section 'model' has a bad value ({exc}); see `sagesnet-tf train --print-schema`") from None
    if model.channels != model.states:
        raise SagesnetError(f"config 'model': channels ({model.channels}) must equal states ({model.states}) "
                            "for cellular automata (the board is fed one-hot)")
    check_stages(cfg.stages, "add at least one, e.g. stages: [{kind: predictor, steps: 500}]")
    kinds = [s.kind for s in cfg.stages]
    if any(k in ("coarsener_autoencoder", "coarse_joint") for k in kinds) and not model.coarse_levels:
        raise SagesnetError("coarse stages need a coarse level; add model.coarse_levels: [{factor: [2, 2, 1], steps: 2}]")
    if "coarse_joint" in kinds and "coarsener_autoencoder" not in kinds[: kinds.index("coarse_joint")]:
        raise SagesnetError("stage 'coarse_joint' needs a 'coarsener_autoencoder' stage before it; add one")
    if "uncertainty" in kinds and "predictor" not in kinds[: kinds.index("uncertainty")]:
        raise SagesnetError("stage 'uncertainty' needs a 'predictor' stage before it; add one")
    return cfg


def is_md_config(path: str | os.PathLike) -> bool:
    """True when the config file at ``path`` selects the MD trainer (top-level ``kind: md``)."""
    try:
        return read_config_file(path).get("kind") == "md"
    except SagesnetError:
        return False  # load_config reports the problem


def load_config(path: str | os.PathLike) -> TrainConfig | MDTrainConfig:
    """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) run config and validate it with the
    schema its top-level ``kind`` selects: ``md``, the MD atom model's
    (:class:`~sagesnet_tf.training.md_config.MDTrainConfig`); none, the cellular automata's
    (:class:`TrainConfig`)."""
    data = read_config_file(path)
    return md_config_from_dict(data) if data.get("kind") == "md" else from_dict(data)


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write the validated config (all defaults filled in) as YAML, atomically."""
    with atomic_output(path) as fh:
        yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)


def schema_text() -> str:
    """Every config key with its type, default and description (for ``--print-schema``), for
    both trainers: cellular automata (the default) and the MD atom model (``kind: md``)."""
    lines = ["# sagesnet-tf training config: one YAML/JSON file per run"]
    lines += ["", "# ---- cellular automata (the default trainer) ----", ""]
    lines += schema_lines(TrainConfig, CellStateConfig)
    lines += ["", "# ---- MD atom model (top-level kind: md) ----", ""]
    lines += schema_lines(MDTrainConfig, SagesnetConfig)
    return "\n".join(lines) + "\n"
