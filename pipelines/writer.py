"""Write trajectories or cellular-automaton rollouts as a sharded TFRecord dataset.

Layout of ``out_dir`` (see docs/DATA_SCHEMA.md)::

    data-00000-of-0000N.tfrecord.gz   GZIP TFRecord shards, one frame per record, in order
    metadata.json                     schema version, units, counts, shard list, statistics, source

Writes survive ``kill -9``: each shard is written under a temporary name in ``out_dir`` and renamed
once whole, and ``metadata.json`` (which is what makes the directory a dataset) is written last,
also through a temporary name. From the first shard until ``metadata.json`` lands, ``.incomplete.json``
marks the directory as an interrupted write (readers refuse it saying so); ``write_ca_dataset(…,
resume=True)`` keeps its whole shards and writes the rest. Paths may be any TensorFlow filesystem (local, gs://, s3:// …): all I/O goes
through ``tf.io.gfile``.

Any trajectory source becomes a dataset this way, e.g.
``write_dataset(out, [read_lammps_dump("run.dump", {1: "C"}, dt_fs=1.0)])``.
"""

from __future__ import annotations

import datetime
import json
import uuid
from pathlib import Path
from typing import Callable

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


def _incomplete_plan(out_dir: str) -> dict | None:
    """The plan of an interrupted write in ``out_dir`` (``{"plan": …}`` in its ``schema.INCOMPLETE_FILE``), or None."""
    path = _join(out_dir, schema.INCOMPLETE_FILE)
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path, "r") as fh:
            return json.loads(fh.read())["plan"]
    except (json.JSONDecodeError, KeyError, TypeError, tf.errors.OpError):
        return {}  # unreadable: an interrupted write all the same, with a plan nothing matches


def _prepare(out_dir: str, overwrite: bool, plan: dict, resume: bool = False) -> set[str]:
    """Get ``out_dir`` ready for the write described by ``plan``; return the shard files already done.

    Refuses an existing dataset unless ``overwrite``, and an interrupted write unless ``overwrite`` or
    ``resume``. With ``resume`` and an interrupted write of the same ``plan``, its complete shards
    (every file under a final shard name is complete: shards are renamed into place whole) are
    kept and returned. Otherwise the old dataset is removed — ``metadata.json`` first, so the
    directory stops being a dataset before anything else changes — and the plan is recorded.
    Leftover temporary files of killed writes are always removed.
    """
    if plan["frames_per_shard"] < 1:
        raise SagesnetError(f"frames_per_shard must be at least 1 (got {plan['frames_per_shard']})")
    check_writable(out_dir, overwrite)
    tf.io.gfile.makedirs(out_dir)
    for pattern in (".data-*.tmp-*", ".metadata.json.tmp-*", f".{schema.INCOMPLETE_FILE}.tmp-*"):
        for stale in tf.io.gfile.glob(_join(out_dir, pattern)):
            tf.io.gfile.remove(stale)
    previous = _incomplete_plan(out_dir)
    if previous is not None and not overwrite:
        if not resume:
            raise SagesnetError(f"{out_dir} holds an interrupted write (no metadata.json yet); rerun the same command "
                                "with --resume to finish it, or pass --overwrite to start again")
        if previous != _jsonable(plan):
            raise SagesnetError(f"{out_dir} holds an interrupted write made with other options; resume it with the "
                                "same options, or pass --overwrite to start again")
        return {path.rsplit("/", 1)[-1] for path in tf.io.gfile.glob(_join(out_dir, "data-*-of-*.tfrecord.gz"))}
    meta_path = _join(out_dir, schema.METADATA_FILE)
    if tf.io.gfile.exists(meta_path):
        tf.io.gfile.remove(meta_path)
    for old in tf.io.gfile.glob(_join(out_dir, "data-*-of-*.tfrecord.gz")):
        tf.io.gfile.remove(old)
    write_file_atomic(_join(out_dir, schema.INCOMPLETE_FILE), json.dumps({"plan": _jsonable(plan)}, indent=1) + "\n")
    return set()


def _write_shards(out_dir: str, keys: list[tuple[int, int]], serialize: Callable[[int], bytes],
                  frames_per_shard: int, desc: str, done: set[str] = frozenset()) -> list[dict]:
    """Write records ``serialize(0 … len(keys) − 1)`` into shards and return the shard list for metadata.

    ``keys[i]`` is record i's ``(sequence_index, frame_index)``. Each shard is written under a
    temporary name and renamed to its final name once whole, so a killed write leaves whole shards
    only. Shards named in ``done`` are already whole (an interrupted write being resumed) and are
    not written again. Returns ``{"file", "n_records", "first": [seq, frame], "last": [seq, frame]}``
    per shard. On failure the temporary file of the shard being written is removed.
    """
    n_records = len(keys)
    count = -(-n_records // frames_per_shard)
    options = tf.io.TFRecordOptions(compression_type=schema.COMPRESSION)
    shards: list[dict] = []
    with tqdm(total=n_records, desc=desc, unit="frame", leave=False) as bar:
        for index in range(count):
            name = schema.shard_name(index, count)
            lo, hi = index * frames_per_shard, min((index + 1) * frames_per_shard, n_records)
            if name not in done:
                tmp = _join(out_dir, f".{name}.tmp-{uuid.uuid4().hex}")
                try:
                    with tf.io.TFRecordWriter(tmp, options) as writer:
                        for i in range(lo, hi):
                            writer.write(serialize(i))
                            bar.update(1)
                    tf.io.gfile.rename(tmp, _join(out_dir, name), overwrite=True)
                except BaseException:
                    if tf.io.gfile.exists(tmp):
                        tf.io.gfile.remove(tmp)
                    raise
            else:
                bar.update(hi - lo)
            shards.append({"file": name, "n_records": hi - lo, "first": list(keys[lo]), "last": list(keys[hi - 1])})
    return shards


def _publish(out_dir: str, metadata: dict) -> Path | str:
    """Write ``metadata.json`` (which makes ``out_dir`` a dataset), then drop the interrupted-write mark."""
    metadata = {"schema_version": schema.SCHEMA_VERSION, **metadata,
                "created_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "sagesnet_tf_version": __version__}
    text = json.dumps(_jsonable(metadata), indent=2, ensure_ascii=False, default=str)
    write_file_atomic(_join(out_dir, schema.METADATA_FILE), text + "\n")
    tf.io.gfile.remove(_join(out_dir, schema.INCOMPLETE_FILE))
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
    keys = [(i, f) for i, traj in enumerate(trajectories) for f in range(traj.n_frames)]
    _prepare(out, overwrite, {"kind": "md", "n_frames": len(keys), "frames_per_shard": frames_per_shard})
    species = [schema.species_of(t.symbols) for t in trajectories]

    def serialize(index: int) -> bytes:
        i, f = keys[index]
        return schema.md_frame_example(trajectories[i], i, f, species[i])

    n_records = len(keys)
    shards = _write_shards(out, keys, serialize, frames_per_shard, "writing MD dataset")
    first = trajectories[0]
    return _publish(out, {
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


def write_md_run(result, out_dir: str | Path, extra_files: tuple[str, ...] = ()) -> None:
    """An MD run (:class:`~sagesnet_tf.md.run.MDResult`) in ``out_dir`` as ``sagesnet-tf generate md``
    leaves it: its trajectory as a ``kind: md`` dataset (:func:`write_dataset`, the run's manifest as
    its source, replacing a dataset there), then :func:`~sagesnet_tf.md.run.write_md_outputs`, whose
    manifest lists the dataset's files and ``extra_files`` (written by the caller)."""
    from sagesnet_tf.md.run import write_md_outputs  # matplotlib: only for MD runs

    write_dataset(out_dir, [result.trajectory], source=result.manifest, overwrite=True)
    write_md_outputs(result, str(out_dir), extra_files=("metadata.json", "data-*.tfrecord.gz", *extra_files))


def write_ca_dataset(out_dir: str | Path, boards: np.ndarray, rule: str, *, source: dict | None = None,
                     frames_per_shard: int = FRAMES_PER_SHARD, overwrite: bool = False,
                     resume: bool = False) -> Path | str:
    """Write cellular-automaton rollouts as a ``kind: ca`` dataset and return its directory.

    Args:
        out_dir: directory (local or any TensorFlow filesystem URL); created if missing.
        boards: (B, T, X, Y, Z) uint8 of 0/1: B rollouts of T frames each (frame 0 the seed board).
        rule: rule name (e.g. ``"life"``, ``"life3d"``; see :mod:`sagesnet_tf.cellular_automata`).
        source: provenance stored as ``metadata["source"]`` (e.g. size, density, seed).
        frames_per_shard, overwrite: as in :func:`write_dataset`.
        resume: finish an interrupted write of the same boards (same ``rule``, shape, ``source`` and
            ``frames_per_shard``): its complete shards are kept, the missing ones written. The boards
            must be the same (regenerated from the same seed) — only their shape and ``source`` are
            compared.
    """
    out = str(out_dir)
    boards = np.asarray(boards)
    if boards.ndim != 5 or 0 in boards.shape:
        raise SagesnetError(f"CA boards must have shape (B, T, X, Y, Z) with no empty axis (got {boards.shape})")
    if boards.dtype != np.uint8 or boards.max() > 1:
        raise SagesnetError(f"CA boards must be uint8 with values 0 and 1 (got dtype {boards.dtype}, "
                            f"max {boards.max()})")
    n_boards, n_frames = boards.shape[:2]
    plan = {"kind": "ca", "rule": rule, "shape": list(boards.shape), "frames_per_shard": frames_per_shard,
            "source": source}
    done = _prepare(out, overwrite, plan, resume)
    keys = [(b, f) for b in range(n_boards) for f in range(n_frames)]

    def serialize(index: int) -> bytes:
        b, f = keys[index]
        return schema.ca_frame_example(boards[b, f], b, f, rule)

    shards = _write_shards(out, keys, serialize, frames_per_shard, "writing CA dataset", done)
    return _publish(out, {
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
