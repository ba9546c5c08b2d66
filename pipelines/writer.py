"""Write trajectories or cellular-automaton rollouts as a sharded TFRecord dataset.

Layout of ``out_dir`` (see docs/DATA_SCHEMA.md)::

    data-00000-of-0000N.tfrecord.gz   GZIP TFRecord shards, one frame per record, in order
    metadata.json                     schema version, units, counts, shard list, statistics, source

Writes are atomic: shards are written under temporary names in ``out_dir`` and renamed, and
``metadata.json`` (which is what makes the directory a dataset) is written last, also through a
temporary name. Paths may be any TensorFlow filesystem (local, gs://, s3:// …): all I/O goes
through ``tf.io.gfile``.

Any trajectory source becomes a dataset this way, e.g.
``write_dataset(out, [read_lammps_dump("run.dump", {1: "C"}, dt_fs=1.0)])``.
"""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import Path
from typing import Iterable

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from sagesnet_tf import __version__
from sagesnet_tf.atoms import ELEMENTS
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.pipelines import schema
from sagesnet_tf.pipelines.statistics import ca_statistics, md_statistics
from sagesnet_tf.trajectory import Trajectory

#: Default number of frames (records) per shard.
FRAMES_PER_SHARD = 256


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name


def _as_result(out_dir: str) -> Path | str:
    """A local directory as :class:`Path`; a URL (gs://, s3:// …) unchanged as str."""
    return out_dir if "://" in out_dir else Path(out_dir)


def _jsonable(value):
    """``value`` with numpy scalars/arrays turned into Python numbers/lists (other objects: ``str`` on dump)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def write_file_atomic(path: str, data: str | bytes) -> None:
    """Write ``data`` (text or bytes) to ``path`` through a temporary name in the same directory, then rename."""
    head, _, name = str(path).rpartition("/")
    tmp = _join(head or ".", f".{name}.tmp-{uuid.uuid4().hex}")
    with tf.io.gfile.GFile(tmp, "wb" if isinstance(data, bytes) else "w") as fh:
        fh.write(data)
    tf.io.gfile.rename(tmp, str(path), overwrite=True)


def check_writable(out_dir: str | Path, overwrite: bool) -> None:
    """Raise SagesnetError if ``out_dir`` cannot be reached, or holds a dataset and ``overwrite`` is False.

    Call it before expensive generation so a run does not fail only at the end.
    """
    meta = _join(str(out_dir), schema.METADATA_FILE)
    schema.enable_filesystem(meta)
    try:
        exists = tf.io.gfile.exists(meta)
    except tf.errors.OpError as exc:
        raise SagesnetError(f"cannot access {out_dir} ({type(exc).__name__}: {exc.message.splitlines()[0][:120]}); "
                            "check the path and the storage credentials") from None
    if not overwrite and exists:
        raise SagesnetError(f"{out_dir} already holds a dataset (metadata.json); pass --overwrite "
                            "(overwrite=True) or choose another output directory")


def _prepare(out_dir: str, overwrite: bool) -> None:
    """Create ``out_dir`` (refusing an existing dataset unless ``overwrite``); drop leftovers of crashed writes."""
    check_writable(out_dir, overwrite)
    tf.io.gfile.makedirs(out_dir)
    for pattern in (".data-*.tmp-*", ".metadata.json.tmp-*"):
        for stale in tf.io.gfile.glob(_join(out_dir, pattern)):
            tf.io.gfile.remove(stale)


def _write_shards(out_dir: str, records: Iterable[tuple[bytes, tuple[int, int]]], n_records: int,
                  frames_per_shard: int, desc: str) -> tuple[list[dict], list[tuple[str, str]]]:
    """Write ``n_records`` serialized records into shards under temporary names.

    ``records`` yields ``(serialized, (sequence_index, frame_index))``. Returns the shard list for
    metadata (``{"file", "n_records", "first": [seq, frame], "last": [seq, frame]}`` each) and the
    ``(temporary, final)`` path pairs for :func:`_publish`. On failure the temporary files are removed.
    """
    if frames_per_shard < 1:
        raise SagesnetError(f"frames_per_shard must be at least 1 (got {frames_per_shard})")
    count = -(-n_records // frames_per_shard)
    options = tf.io.TFRecordOptions(compression_type=schema.COMPRESSION)
    shards: list[dict] = []
    temps: list[tuple[str, str]] = []
    it = iter(records)
    try:
        with tqdm(total=n_records, desc=desc, unit="frame", leave=False) as bar:
            for index in range(count):
                name = schema.shard_name(index, count)
                temps.append((_join(out_dir, f".{name}.tmp-{uuid.uuid4().hex}"), _join(out_dir, name)))
                n_here = min(frames_per_shard, n_records - index * frames_per_shard)
                keys = []
                with tf.io.TFRecordWriter(temps[-1][0], options) as writer:
                    for _ in range(n_here):
                        serialized, key = next(it)
                        writer.write(serialized)
                        keys.append([int(key[0]), int(key[1])])
                        bar.update(1)
                shards.append({"file": name, "n_records": n_here, "first": keys[0], "last": keys[-1]})
    except BaseException:
        for tmp, _ in temps:
            if tf.io.gfile.exists(tmp):
                tf.io.gfile.remove(tmp)
        raise
    return shards, temps


def _publish(out_dir: str, temps: list[tuple[str, str]], metadata: dict) -> Path | str:
    """Replace any old dataset in ``out_dir`` by the new shards, then write ``metadata.json`` last."""
    meta_path = _join(out_dir, schema.METADATA_FILE)
    if tf.io.gfile.exists(meta_path):
        tf.io.gfile.remove(meta_path)  # from here on the directory is not a dataset until the new metadata lands
    new = {final for _, final in temps}
    for old in tf.io.gfile.glob(_join(out_dir, "data-*-of-*.tfrecord.gz")):
        if _join(out_dir, old.rsplit("/", 1)[-1]) not in new:
            tf.io.gfile.remove(old)
    for tmp, final in temps:
        tf.io.gfile.rename(tmp, final, overwrite=True)
    metadata = {"schema_version": schema.SCHEMA_VERSION, **metadata,
                "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "sagesnet_tf_version": __version__}
    text = json.dumps(_jsonable(metadata), indent=2, ensure_ascii=False, default=str)
    write_file_atomic(meta_path, text + "\n")
    return _as_result(out_dir)


def _record_stride(trajectories: list[Trajectory]) -> int | None:
    """MD steps between consecutive records, the same in every trajectory (None if all have one
    frame): each trajectory's smallest step gap; bursts (larger gaps, multiples of it) are allowed."""
    strides = set()
    for i, traj in enumerate(trajectories):
        diffs = np.diff(traj.step)
        if diffs.size and (diffs.min() <= 0 or np.any(diffs % diffs.min())):
            raise SagesnetError(
                f"trajectory {i}: frames are not at increasing steps a whole number of record strides apart "
                f"(steps {traj.step[:4].tolist()}…); record at a fixed interval (or in bursts) or split the trajectory")
        strides.update([int(diffs.min())] if diffs.size else [])
    if len(strides) > 1:
        raise SagesnetError(f"trajectories are recorded at different step intervals {sorted(strides)}; "
                            "write one dataset per record interval")
    return strides.pop() if strides else None


def _check_trajectories(trajectories: list[Trajectory]) -> None:
    if not trajectories:
        raise SagesnetError("no trajectories to write; give at least one trajectory")
    first = trajectories[0]
    for i, traj in enumerate(trajectories):
        if traj.n_frames == 0 or traj.n_atoms == 0:
            raise SagesnetError(f"trajectory {i} has {traj.n_frames} frames and {traj.n_atoms} atoms; "
                                "every trajectory needs at least one frame and one atom")
        if traj.dt_fs != first.dt_fs:
            raise SagesnetError(f"trajectory {i} has timestep {traj.dt_fs} fs but trajectory 0 has "
                                f"{first.dt_fs} fs; write one dataset per timestep")
        if tuple(traj.env_fields) != tuple(first.env_fields):
            raise SagesnetError(f"trajectory {i} records environment fields {list(traj.env_fields)} but "
                                f"trajectory 0 records {list(first.env_fields)}; use the same fields")
        for name in ("positions", "velocities", "stress", "cell", "time_ps", "environment"):
            if not np.all(np.isfinite(getattr(traj, name))):
                raise SagesnetError(f"trajectory {i}: {name} contain NaN or infinite values; "
                                    "fix or drop the broken frames before writing a dataset")
        schema.species_of(traj.symbols)


def write_dataset(out_dir: str | Path, trajectories: list[Trajectory], *, source: dict | None = None,
                  frames_per_shard: int = FRAMES_PER_SHARD, overwrite: bool = False) -> Path | str:
    """Write MD trajectories as a ``kind: md`` dataset and return its directory.

    Args:
        out_dir: directory (local or any TensorFlow filesystem URL); created if missing.
        trajectories: list of :class:`Trajectory` with the same ``dt_fs``, ``env_fields`` and
            record interval (steps between frames); atoms may differ between trajectories.
        source: provenance stored verbatim as ``metadata["source"]`` (e.g. the MD manifest).
        frames_per_shard: records per shard (a trajectory may continue in the next shard).
        overwrite: replace a dataset already in ``out_dir``.

    Returns:
        ``out_dir`` as a Path (local) or the URL string (remote).
    """
    out = str(out_dir)
    trajectories = list(trajectories)
    _check_trajectories(trajectories)
    stride = _record_stride(trajectories)
    _prepare(out, overwrite)
    species = [schema.species_of(t.symbols) for t in trajectories]

    def records():
        for i, traj in enumerate(trajectories):
            for f in range(traj.n_frames):
                yield schema.md_frame_example(traj, i, f, species[i]), (i, f)

    n_records = sum(t.n_frames for t in trajectories)
    shards, temps = _write_shards(out, records(), n_records, frames_per_shard, "writing MD dataset")
    first = trajectories[0]
    return _publish(out, temps, {
        "kind": "md",
        "units": schema.MD_UNITS,
        "elements": list(ELEMENTS),
        "dt_fs": float(first.dt_fs),
        "record_stride_steps": stride,
        "record_interval_ps": None if stride is None else stride * first.dt_fs / 1000.0,
        "env_fields": list(first.env_fields),
        "n_trajectories": len(trajectories),
        "n_frames": n_records,
        "n_atoms": max(t.n_atoms for t in trajectories),
        "trajectories": [
            {"index": i, "n_frames": t.n_frames, "n_atoms": t.n_atoms, "first_step": int(t.step[0]),
             "last_step": int(t.step[-1]), "info": t.info}
            for i, t in enumerate(trajectories)],
        "shards": shards,
        "statistics": md_statistics(trajectories),
        "source": source,
    })


def write_ca_dataset(out_dir: str | Path, boards: np.ndarray, rule: str, *, source: dict | None = None,
                     frames_per_shard: int = FRAMES_PER_SHARD, overwrite: bool = False) -> Path | str:
    """Write cellular-automaton rollouts as a ``kind: ca`` dataset and return its directory.

    Args:
        out_dir: directory (local or any TensorFlow filesystem URL); created if missing.
        boards: (B, T, X, Y, Z) uint8 of 0/1: B rollouts of T frames each (frame 0 the seed board).
        rule: rule name (e.g. ``"life"``, ``"life3d"``; see :mod:`sagesnet_tf.cellular_automata`).
        source: provenance stored as ``metadata["source"]`` (e.g. size, density, seed).
        frames_per_shard, overwrite: as in :func:`write_dataset`.
    """
    out = str(out_dir)
    boards = np.asarray(boards)
    if boards.ndim != 5 or 0 in boards.shape:
        raise SagesnetError(f"CA boards must have shape (B, T, X, Y, Z) with no empty axis (got {boards.shape})")
    if boards.dtype != np.uint8 or boards.max() > 1:
        raise SagesnetError(f"CA boards must be uint8 with values 0 and 1 (got dtype {boards.dtype}, "
                            f"max {boards.max()})")
    _prepare(out, overwrite)
    n_boards, n_frames = boards.shape[:2]

    def records():
        for b in range(n_boards):
            for f in range(n_frames):
                yield schema.ca_frame_example(boards[b, f], b, f, rule), (b, f)

    shards, temps = _write_shards(out, records(), n_boards * n_frames, frames_per_shard, "writing CA dataset")
    return _publish(out, temps, {
        "kind": "ca",
        "rule": rule,
        "units": {"board": "1 alive, 0 dead; one record per generation"},
        "board_shape": list(boards.shape[2:]),
        "n_boards": n_boards,
        "n_frames_per_board": n_frames,
        "n_frames": n_boards * n_frames,
        "shards": shards,
        "statistics": ca_statistics(boards),
        "source": source,
    })
