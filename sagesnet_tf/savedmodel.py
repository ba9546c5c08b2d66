"""The SavedModel layout every SAGESnet export shares (atom models, :mod:`sagesnet_tf.export`;
cellular automata, :mod:`sagesnet_tf.ca_serving`): ``NAME/VERSION/{saved_model.pb, variables/,
assets/sagesnet_metadata.json}`` written atomically, the metadata asset, the bounds of one
serving call (metadata ``limits``), and finding and loading an exported model
(:func:`resolve_model_dir`, :func:`load_exported`) for ``simulate``, ``evaluate`` and ``ca simulate``.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from sagesnet_tf.errors import SagesnetError

#: The model ``simulate`` runs when none is given (its newest version).
DEFAULT_MODEL = Path("exported_models") / "sagesnet_graphene"
#: Version of the exported signature set and metadata layout.
EXPORT_SCHEMA_VERSION = 1
METADATA_ASSET = "sagesnet_metadata.json"
#: Upper bounds of one simulate call, so that a request can neither run for hours nor allocate
#: without bound (refused with InvalidArgument; stored in the metadata as ``limits``): fine
#: steps Δ per call (a coarse step counts T), |strain rate| in 1/ps, and cells of the atom grid
#: (at the largest box of the call; along an open axis counted over the box plus the escape margins).
#: The rate bound is twice the CLI's ±1 ps⁻¹: ``simulate`` passes the rate relative to the current
#: box (L0·rate / L), which exceeds |rate| once a box is compressed.
MAX_STEPS_PER_CALL = 10_000
MAX_CALL_STRAIN_RATE_PER_PS = 2.0
MAX_GRID_CELLS = 2 ** 24


def serving_limits() -> dict:
    """The ``limits`` entry of the metadata: the bounds above, by name."""
    return {"max_steps_per_call": MAX_STEPS_PER_CALL, "max_strain_rate_per_ps": MAX_CALL_STRAIN_RATE_PER_PS,
            "max_grid_cells": MAX_GRID_CELLS}


def resolve_model_dir(model: str | Path | None) -> Path:
    """``NAME/VERSION`` as given, or the newest integer version under ``NAME`` (default
    ``exported_models/sagesnet_graphene``)."""
    base = Path(model) if model else DEFAULT_MODEL
    if (base / "saved_model.pb").is_file():
        return base
    versions = sorted((int(p.name), p) for p in base.glob("*") if p.name.isdigit() and (p / "saved_model.pb").is_file()) \
        if base.is_dir() else []
    if not versions:
        if model is None:
            raise SagesnetError(f"no default model at {DEFAULT_MODEL}; pass --model exported_models/NAME[/VERSION] "
                                "(create one with `sagesnet-tf export`)")
        raise SagesnetError(f"{base} holds no SavedModel (NAME/VERSION/saved_model.pb); check --model")
    return versions[-1][1]


def load_exported(model_dir: Path, kind: str = "md"):
    """(loaded SavedModel, metadata dict) of an exported model of ``kind`` (metadata ``kind``:
    ``md`` atom models, ``ca`` cellular automata; models exported before the key existed are ``md``).
    The last :data:`LOADED_MODELS_KEPT` models loaded stay loaded (a process that simulates several
    structures loads its model once); a directory whose files changed since is loaded again."""
    model_dir = Path(model_dir)
    try:
        stamp = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size)
                      for p in sorted(model_dir.rglob("*")) if p.is_file())
    except OSError:
        stamp = ()
    loaded, metadata = _load_savedmodel(str(model_dir), stamp)
    metadata = copy.deepcopy(metadata)  # the caller's to change; the cached one stays as read
    found = metadata.get("kind", "md")
    if found != kind:
        usage = {"md": "`sagesnet-tf simulate --structure FILE`", "ca": "`sagesnet-tf ca simulate --board FILE`"}
        raise SagesnetError(f"{model_dir} holds a {found!r} model, not {kind!r}; run it with "
                            f"{usage.get(found, 'the command for its kind')}")
    return loaded, metadata


#: Loaded SavedModels :func:`load_exported` keeps (each holds its variables and traced graphs).
LOADED_MODELS_KEPT = 2


@functools.lru_cache(maxsize=LOADED_MODELS_KEPT)
def _load_savedmodel(model_dir: str, stamp: tuple):
    """(loaded SavedModel, metadata) of ``model_dir``; ``stamp`` (its files' names, times and sizes)
    only keys the cache. A one-line SagesnetError when it is not a readable SAGESnet SavedModel."""
    import tensorflow as tf
    try:
        loaded = tf.saved_model.load(model_dir)
        metadata = json.loads(loaded.signatures["metadata"]()["metadata"].numpy().decode("utf-8"))
    except Exception as exc:  # corrupt protobuf, missing or truncated variables, no metadata signature
        first = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise SagesnetError(f"{model_dir} is not a readable SAGESnet SavedModel ({type(exc).__name__}: {first}); "
                            "export the model again with `sagesnet-tf export` or check --model") from None
    return loaded, metadata


def is_exported(model_dir: str | os.PathLike) -> bool:
    """Whether ``model_dir`` holds an exported SAGESnet model (NAME/VERSION with its metadata asset)."""
    return (Path(model_dir) / "assets" / METADATA_ASSET).is_file()


def read_metadata(model_dir: str | os.PathLike) -> dict:
    """The metadata of the SavedModel in ``model_dir`` (NAME/VERSION) from its asset file, without
    loading the model (the same JSON as its ``metadata`` signature)."""
    return json.loads((Path(model_dir) / "assets" / METADATA_ASSET).read_text())


def next_version(base: Path) -> int:
    """1 + the largest integer version directory under ``base`` (1 if none)."""
    versions = [int(p.name) for p in base.iterdir() if p.is_dir() and re.fullmatch(r"\d+", p.name)] if base.is_dir() else []
    return max(versions, default=0) + 1


def write_savedmodel(module: tf.Module, signatures: dict, metadata: dict, out: str | os.PathLike,
                     version: int | None = None) -> Path:
    """Save ``module`` with ``signatures`` and the metadata asset as ``out/VERSION`` (TF Serving
    layout), atomically (a temporary directory renamed into place); returns that directory."""
    import tensorflow as tf
    base = Path(out)
    version = next_version(base) if version is None else int(version)
    if version < 1:
        raise SagesnetError(f"export: --version must be a positive integer, got {version}")
    target = base / str(version)
    if target.exists():
        raise SagesnetError(f"export: {target} already exists; pick another --version or leave it out")
    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.tmp", dir=base))
    try:
        tf.saved_model.save(module, str(tmp), signatures=signatures)
        (tmp / "assets").mkdir(exist_ok=True)
        (tmp / "assets" / METADATA_ASSET).write_text(json.dumps(metadata, indent=2, ensure_ascii=False))
        tmp.chmod(0o755)  # mkdtemp makes it private; a model directory is read by servers of other users
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
