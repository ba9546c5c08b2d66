"""One training run's configuration: a YAML/JSON file validated into dataclasses.

A run is described by a single file (DeePMD-kit style). Unknown keys and bad values raise
:class:`~sagesnet_tf.errors.SagesnetError` with a one-line message naming the offending key and
what is allowed. ``sagesnet-tf train --print-schema`` prints :func:`schema_text`: every key with
its default and description.

Layout of the file (every section optional except ``stages``)::

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
import difflib
import json
import math
import os
import typing
from typing import Any

import yaml

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import atomic_output
from sagesnet_tf.model import CellStateConfig

#: Stage kinds the trainer knows, in the order a multiscale run normally uses them.
STAGE_KINDS: tuple[str, ...] = (
    "predictor",              # one-step loss of the fine predictor
    "unrolled",               # multi-step unrolled loss with input noise (stable rollouts)
    "coarsener_autoencoder",  # coarsener + refiner reconstruct k×k×k cells × T steps
    "coarse_joint",           # coarsener + coarse predictor: next coarse state's block density
    "uncertainty",            # per-cell head that predicts the predictor's own loss
)


def _field(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field carrying its description for the schema printer."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return dataclasses.field(default=default, metadata={"help": help, **kw})


@dataclasses.dataclass
class DataConfig:
    """How training windows are drawn from ``--data DIR``."""

    batch_size: int = _field(32, "global batch size (split over replicas)", min=1)
    validation_fraction: float = _field(0.2, "fraction of boards held out for validation", min=0.0, max=0.9)
    shuffle_buffer: int = _field(256, "tf.data shuffle buffer (examples)", min=1)


@dataclasses.dataclass
class StageConfig:
    """One stage of the schedule; stages run in file order."""

    kind: str = _field("predictor", "stage kind: " + ", ".join(STAGE_KINDS), choices=STAGE_KINDS)
    name: str = _field("", "label used in logs and metrics (default: kind, numbered if repeated)")
    steps: int = _field(500, "optimizer steps in this stage", min=1)
    learning_rate: float = _field(1e-2, "Adam learning rate at the start of the stage", min=0.0, exclusive_min=True)
    final_learning_rate: float = _field(1e-3, "learning rate at the end (exponential decay)", min=0.0, exclusive_min=True)
    unroll: int = _field(1, "predicted steps per example (loss summed over the rollout)", min=1)
    input_noise: float = _field(0.0, "std of Gaussian noise added to the first one-hot input board (robust rollouts)", min=0.0, max=1.0)
    oversample: float = _field(0.0, "coarsener stages: fraction of each batch redrawn from the worst-reconstructed windows", min=0.0, max=0.9)


@dataclasses.dataclass
class CheckpointConfig:
    """tf.train.CheckpointManager settings."""

    every_steps: int = _field(100, "save a checkpoint every N global steps (and at each stage end)", min=1)
    keep: int = _field(3, "checkpoints kept on disk", min=1)


@dataclasses.dataclass
class ValidationConfig:
    """Validation during training."""

    every_steps: int = _field(200, "validate every N global steps (and at each stage end)", min=1)
    batches: int = _field(4, "validation batches per evaluation", min=1)


@dataclasses.dataclass
class TrainConfig:
    """A whole training run."""

    name: str = _field("run", "run name (used in logs)")
    seed: int = _field(0, "seed of every random draw (init, data order, noise)", min=0)
    log_every: int = _field(20, "write TensorBoard scalars / progress every N steps", min=1)
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


def _check_value(where: str, f: dataclasses.Field, value: Any) -> Any:
    """Validate and coerce one scalar/list field; raise a one-line SagesnetError if bad."""
    typ = f.type  # annotations are strings (``from __future__ import annotations``)
    meta = f.metadata
    expected = {"int": int, "float": float, "str": str, "list": list, "dict": dict, "bool": bool}[typ]
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is float and isinstance(value, str):  # YAML reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if (isinstance(value, bool) and expected is not bool) or not isinstance(value, expected):
        raise SagesnetError(f"config key '{where}' must be a {typ}, got {value!r}; fix the value in the config file")
    if expected is float and not math.isfinite(value):
        raise SagesnetError(f"config key '{where}' is {value!r}; it must be a finite number")
    if "choices" in meta and value not in meta["choices"]:
        raise SagesnetError(f"config key '{where}' is {value!r}; allowed: {', '.join(meta['choices'])}")
    if "min" in meta:
        lo = meta["min"]
        if value < lo or (meta.get("exclusive_min") and value == lo):
            op = ">" if meta.get("exclusive_min") else ">="
            raise SagesnetError(f"config key '{where}' is {value!r}; it must be {op} {lo}")
    if "max" in meta and value > meta["max"]:
        raise SagesnetError(f"config key '{where}' is {value!r}; it must be <= {meta['max']}")
    return value


def _build(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SagesnetError(f"config section '{where or 'top level'}' must be a mapping of keys to values, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields), key=str)
    if unknown:
        prefix = f"{where}." if where else ""
        nearest = difflib.get_close_matches(str(unknown[0]).lower().replace("-", "_"), list(fields), n=1)
        hint = f"did you mean '{prefix}{nearest[0]}'? " if nearest else ""
        raise SagesnetError(
            f"unknown config key '{prefix}{unknown[0]}'; {hint}allowed keys here: {', '.join(fields)} "
            "(run `sagesnet-tf train --print-schema`)")
    kwargs = {}
    for name, value in data.items():
        f = fields[name]
        key = f"{where}.{name}" if where else name
        sub = typing.get_type_hints(cls).get(name)
        if f.metadata.get("model"):
            if not isinstance(value, dict):
                raise SagesnetError(f"config key '{key}' must be a mapping of model hyperparameters")
            kwargs[name] = dict(value)
        elif dataclasses.is_dataclass(sub):
            kwargs[name] = _build(sub, value, key)
        elif "item" in f.metadata:
            if not isinstance(value, list):
                raise SagesnetError(f"config key '{key}' must be a list of mappings")
            kwargs[name] = [_build(f.metadata["item"], v, f"{key}[{i}]") for i, v in enumerate(value)]
        else:
            kwargs[name] = _check_value(key, f, value)
    return cls(**kwargs)


def from_dict(data: dict) -> TrainConfig:
    """Validate a plain mapping into a :class:`TrainConfig` (one-line SagesnetError on bad input)."""
    cfg = _build(TrainConfig, data, "")
    try:
        model = cfg.cell_config
    except TypeError as exc:  # a value of the wrong type inside the model section
        raise SagesnetError(f"config section 'model' has a bad value ({exc}); see `sagesnet-tf train --print-schema`") from None
    if model.channels != model.states:
        raise SagesnetError(f"config 'model': channels ({model.channels}) must equal states ({model.states}) "
                            "for cellular automata (the board is fed one-hot)")
    if not cfg.stages:
        raise SagesnetError("config has no 'stages'; add at least one, e.g. stages: [{kind: predictor, steps: 500}]")
    seen: dict[str, int] = {}
    for s in cfg.stages:
        seen[s.kind] = seen.get(s.kind, 0) + 1
        if not s.name:
            s.name = s.kind if seen[s.kind] == 1 else f"{s.kind}{seen[s.kind]}"
        if s.final_learning_rate > s.learning_rate:
            raise SagesnetError(f"stage '{s.name}': final_learning_rate {s.final_learning_rate} exceeds learning_rate {s.learning_rate}; lower it")
    names = [s.name for s in cfg.stages]
    if len(set(names)) != len(names):
        raise SagesnetError(f"stage names must be unique, got {names}; rename the repeated stage")
    kinds = [s.kind for s in cfg.stages]
    if any(k in ("coarsener_autoencoder", "coarse_joint") for k in kinds) and not model.coarse_levels:
        raise SagesnetError("coarse stages need a coarse level; add model.coarse_levels: [{factor: [2, 2, 1], steps: 2}]")
    if "coarse_joint" in kinds and "coarsener_autoencoder" not in kinds[: kinds.index("coarse_joint")]:
        raise SagesnetError("stage 'coarse_joint' needs a 'coarsener_autoencoder' stage before it; add one")
    if "uncertainty" in kinds and "predictor" not in kinds[: kinds.index("uncertainty")]:
        raise SagesnetError("stage 'uncertainty' needs a 'predictor' stage before it; add one")
    return cfg


def read_config_file(path: str | os.PathLike) -> dict:
    """The mapping in a YAML (``.yaml``/``.yml``) or JSON (``.json``) config file; a one-line
    SagesnetError when it is missing, not UTF-8 text, not valid YAML/JSON or not a mapping."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        what = "is a directory" if os.path.isdir(path) else "does not exist"
        raise SagesnetError(f"config file {path} {what}; pass an existing YAML or JSON file with --config")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError:
        raise SagesnetError(f"config file {path} is not a text file (not UTF-8); pass a YAML or JSON config") from None
    try:
        data = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        first = " ".join(str(exc).split())
        raise SagesnetError(f"config file {path} is not valid YAML/JSON ({first}); fix its syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SagesnetError(f"config file {path} holds a {type(data).__name__}, not a mapping of keys to values; "
                            "see `sagesnet-tf train --print-schema`")
    return data


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a YAML (``.yaml``/``.yml``) or JSON (``.json``) run config and validate it."""
    return from_dict(read_config_file(path))


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write the validated config (all defaults filled in) as YAML, atomically."""
    with atomic_output(path) as fh:
        yaml.safe_dump(cfg.to_dict(), fh, sort_keys=False)


def schema_text() -> str:
    """Every config key with its type, default and description (for ``--print-schema``), for
    both trainers: cellular automata (the default) and the MD atom model (``kind: md``)."""
    from sagesnet_tf.model import SagesnetConfig
    from sagesnet_tf.training.md_stages import MDTrainConfig

    lines = ["# sagesnet-tf training config: one YAML/JSON file per run"]

    def walk(cls: type, indent: str, model_cls: type) -> None:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            sub = hints[f.name]
            if f.metadata.get("model"):
                lines.append(f"{indent}{f.name}:            # {f.metadata['help']}")
                for key, default in model_cls().to_dict().items():
                    lines.append(f"{indent}  {key}: {json.dumps(default)}")
            elif dataclasses.is_dataclass(sub):
                lines.append(f"{indent}{f.name}:            # {f.metadata['help']}")
                walk(sub, indent + "  ", model_cls)
            elif "item" in f.metadata:
                lines.append(f"{indent}{f.name}:            # {f.metadata['help']}; each item:")
                walk(f.metadata["item"], indent + "    ", model_cls)
            else:
                default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
                lines.append(f"{indent}{f.name}: {json.dumps(default)}    # ({f.type}) {f.metadata['help']}")

    lines += ["", "# ---- cellular automata (the default trainer) ----", ""]
    walk(TrainConfig, "", CellStateConfig)
    lines += ["", "# ---- MD atom model (top-level kind: md) ----", ""]
    walk(MDTrainConfig, "", SagesnetConfig)
    return "\n".join(lines) + "\n"
