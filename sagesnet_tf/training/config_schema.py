"""How a training config file becomes validated dataclasses, for both trainers.

The pieces every config schema (:mod:`~sagesnet_tf.training.config` for cellular automata,
:mod:`~sagesnet_tf.training.md_config` for the MD atom model) is built from:

- :func:`config_field`: a dataclass field with its description and limits (``min``, ``max``,
  ``exclusive_min``, ``choices``), which :func:`build_config` checks and ``--print-schema`` prints;
- :func:`build_config`: a mapping -> a dataclass, unknown keys and bad values refused with a
  one-line :class:`~sagesnet_tf.errors.SagesnetError` naming the key;
- :func:`read_config_file`: the mapping in a YAML/JSON file;
- :func:`check_stages`: the stage list's default names (``kind``, then ``kind2``, ``kind3`` … for
  repeats) and the checks both schemas make of it;
- :func:`schema_lines`: every key of a schema with its default and description;
- the sections both trainers share: :class:`CheckpointConfig`, :class:`ValidationConfig`.
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


def config_field(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field carrying its description for the schema printer."""
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return dataclasses.field(default=default, metadata={"help": help, **kw})


@dataclasses.dataclass
class CheckpointConfig:
    """tf.train.CheckpointManager settings."""

    every_steps: int = config_field(100, "save a checkpoint every N global steps (and at each stage end)", min=1)
    keep: int = config_field(3, "checkpoints kept on disk", min=1)


@dataclasses.dataclass
class ValidationConfig:
    """Validation during training."""

    every_steps: int = config_field(200, "validate every N global steps (and at each stage end)", min=1)
    batches: int = config_field(4, "validation batches per evaluation", min=1)


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


def build_config(cls: type, data: Any, where: str) -> Any:
    """Build dataclass ``cls`` from a mapping, rejecting unknown keys (``where``: the key path of
    ``data`` in the file, "" at the top level)."""
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
            kwargs[name] = build_config(sub, value, key)
        elif "item" in f.metadata:
            if not isinstance(value, list):
                raise SagesnetError(f"config key '{key}' must be a list of mappings")
            kwargs[name] = [build_config(f.metadata["item"], v, f"{key}[{i}]") for i, v in enumerate(value)]
        else:
            kwargs[name] = _check_value(key, f, value)
    return cls(**kwargs)


def check_stages(stages: list, example: str) -> None:
    """Name and check a schema's ``stages`` list (items with ``kind``, ``name``, ``learning_rate``,
    ``final_learning_rate``), raising a one-line SagesnetError: there is at least one stage
    (``example`` suggests a list); every stage without a ``name`` is called by its ``kind``, numbered
    from 2 when that kind came before (``unrolled``, ``unrolled2``, …; stages named in the file count
    too); no learning rate grows over a stage; the names are unique."""
    if not stages:
        raise SagesnetError(f"config has no 'stages'; {example}")
    seen: dict[str, int] = {}
    for s in stages:
        seen[s.kind] = seen.get(s.kind, 0) + 1
        if not s.name:
            s.name = s.kind if seen[s.kind] == 1 else f"{s.kind}{seen[s.kind]}"
    for s in stages:
        if s.final_learning_rate > s.learning_rate:
            raise SagesnetError(f"stage '{s.name}': final_learning_rate {s.final_learning_rate} exceeds learning_rate "
                                f"{s.learning_rate}; lower it")
    names = [s.name for s in stages]
    if len(set(names)) != len(names):
        raise SagesnetError(f"stage names must be unique, got {names}; rename the repeated stage")


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


def schema_lines(cls: type, model_cls: type, indent: str = "") -> list[str]:
    """Every key of schema ``cls`` as ``key: default    # (type) description`` lines, sections and
    stage items indented; the ``model`` section lists the keys and defaults of ``model_cls``."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        sub = hints[f.name]
        if f.metadata.get("model"):
            lines.append(f"{indent}{f.name}:            # {f.metadata['help']}")
            for key, default in model_cls().to_dict().items():
                lines.append(f"{indent}  {key}: {json.dumps(default)}")
        elif dataclasses.is_dataclass(sub):
            lines.append(f"{indent}{f.name}:            # {f.metadata['help']}")
            lines += schema_lines(sub, model_cls, indent + "  ")
        elif "item" in f.metadata:
            lines.append(f"{indent}{f.name}:            # {f.metadata['help']}; each item:")
            lines += schema_lines(f.metadata["item"], model_cls, indent + "    ")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            lines.append(f"{indent}{f.name}: {json.dumps(default)}    # ({f.type}) {f.metadata['help']}")
    return lines
