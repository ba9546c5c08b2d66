"""Read sagesnet-tf datasets: metadata, whole trajectories, and tf.data windows for training.

Every path may be local or on any filesystem TensorFlow knows (gs://, s3:// and hdfs:// once
``tensorflow_io`` is imported); all I/O goes through ``tf.io.gfile`` and ``tf.data``.

Shards are read in order, one record per frame; a window is cut only from records of one
sequence (trajectory or CA rollout) whose frame indices are consecutive, so windows never
straddle two sequences, a shard that was skipped, or any other gap.

Corrupt shards: before a window dataset is built every shard is scanned once (GZIP stream,
per-record CRC and the record count from ``metadata.json``). A corrupt, truncated or missing
shard raises :class:`SagesnetError` naming it; with ``skip_corrupt=True`` it is left out and the
number of skipped shards and records is logged (and returned by :func:`check_shards`).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import logging

import numpy as np
import tensorflow as tf

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.pipelines import schema
from sagesnet_tf.trajectory import Trajectory

log = logging.getLogger(__name__)

#: Windows held in the shuffle buffer by default.
SHUFFLE_BUFFER = 256


def _dataset_dir(path) -> str:
    path = str(path).rstrip("/")
    return path.rsplit("/", 1)[0] if path.endswith("/" + schema.METADATA_FILE) else path


def load_metadata(path) -> dict:
    """The parsed ``metadata.json`` of the dataset at ``path`` (its directory or the file itself).

    Raises SagesnetError when it is missing (not a dataset, or a write that did not finish),
    unreadable, of an unknown kind, or written by a newer schema version.
    """
    meta_path = _dataset_dir(path) + "/" + schema.METADATA_FILE
    schema.enable_filesystem(meta_path)
    try:
        found = tf.io.gfile.exists(meta_path)
    except tf.errors.OpError as exc:
        raise SagesnetError(f"cannot access {meta_path} ({type(exc).__name__}: {exc.message.splitlines()[0][:120]}); "
                            "check the path and the storage credentials") from None
    if not found and tf.io.gfile.exists(_dataset_dir(path) + "/" + schema.INCOMPLETE_FILE):
        raise SagesnetError(f"{_dataset_dir(path)} is an incomplete dataset (its write was interrupted); rerun the "
                            "`sagesnet-tf generate` command that made it with --resume (ca) or --overwrite (md)")
    if not found:
        raise SagesnetError(f"{_dataset_dir(path)} is not a sagesnet-tf dataset (no {schema.METADATA_FILE}); "
                            "give the directory written by `sagesnet-tf generate`, or, if its write was "
                            "interrupted, rerun it with --resume (generate ca) or --overwrite (generate md)")
    try:
        with tf.io.gfile.GFile(meta_path, "r") as fh:
            meta = json.loads(fh.read())
    except (json.JSONDecodeError, UnicodeDecodeError, tf.errors.OpError) as exc:
        raise SagesnetError(f"{meta_path} is unreadable ({type(exc).__name__}: {exc}); "
                            "regenerate the dataset") from None
    if not isinstance(meta, dict):
        raise SagesnetError(f"{meta_path} holds a {type(meta).__name__}, not a metadata mapping; regenerate the dataset")
    version = meta.get("schema_version")
    if not isinstance(version, int) or version > schema.SCHEMA_VERSION:
        raise SagesnetError(f"{meta_path} has schema version {version!r}; this sagesnet-tf reads up to "
                            f"{schema.SCHEMA_VERSION}: upgrade sagesnet-tf")
    if meta.get("kind") not in schema.KINDS:
        raise SagesnetError(f"{meta_path} has unknown dataset kind {meta.get('kind')!r}; "
                            f"expected one of {schema.KINDS}")
    return meta


def _require_kind(meta: dict, kind: str, data_dir) -> None:
    if meta["kind"] != kind:
        raise SagesnetError(f"{data_dir} holds a {meta['kind']!r} dataset but a {kind!r} dataset is needed here")


@dataclasses.dataclass
class ShardCheck:
    """Result of :func:`check_shards`: shard paths to read and what was skipped."""

    good: list[str]
    skipped: list[str]
    skipped_records: int
    reasons: dict[str, str]


def _scan(path: str, expected: int) -> str | None:
    """None if the shard at ``path`` holds ``expected`` intact records, else why not."""
    if not tf.io.gfile.exists(path):
        return "missing"
    try:
        count = int(tf.data.TFRecordDataset(path, compression_type=schema.COMPRESSION)
                    .reduce(np.int64(0), lambda n, _: n + 1))
    except tf.errors.OpError as exc:
        return f"{type(exc).__name__}: {exc.message.splitlines()[0][-160:]}"
    if count != expected:
        return f"holds {count} records, metadata.json says {expected} (truncated?)"
    return None


def check_shards(data_dir, *, skip_corrupt: bool = False) -> ShardCheck:
    """Scan every shard once; raise on the first corrupt one unless ``skip_corrupt``.

    Returns:
        ShardCheck with the readable shard paths in order, the skipped shard file names, the
        number of records they held (per metadata.json), and the reason for each.
    """
    data_dir = _dataset_dir(data_dir)
    meta = load_metadata(data_dir)
    paths = [f"{data_dir}/{s['file']}" for s in meta["shards"]]
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(8, len(paths)))) as pool:
        problems = list(pool.map(_scan, paths, [s["n_records"] for s in meta["shards"]]))
    good, skipped, reasons, n_skipped = [], [], {}, 0
    for path, shard, problem in zip(paths, meta["shards"], problems):
        if problem is None:
            good.append(path)
            continue
        if not skip_corrupt:
            raise SagesnetError(f"shard {path} is corrupt ({problem}); copy or generate it again, or pass "
                                "skip_corrupt=True (--skip-corrupt) to leave it out")
        skipped.append(shard["file"])
        reasons[shard["file"]] = problem
        n_skipped += shard["n_records"]
    if skipped:
        log.warning("skipped %d of %d shards (%d of %d records) in %s as corrupt: %s", len(skipped), len(paths),
                    n_skipped, meta["n_frames"], data_dir, "; ".join(f"{k}: {v}" for k, v in reasons.items()))
    return ShardCheck(good, skipped, n_skipped, reasons)


def _readable_shards(data_dir: str, skip_corrupt: bool) -> list[str]:
    good = check_shards(data_dir, skip_corrupt=skip_corrupt).good
    if not good:
        raise SagesnetError(f"{data_dir}: every shard is corrupt or missing; copy or generate the dataset again")
    return good


def _records_of(path: str, parse):
    """Iterate the parsed records of one shard as numpy dicts; read errors become SagesnetError naming it."""
    try:
        ds = tf.data.TFRecordDataset(path, compression_type=schema.COMPRESSION).map(parse)
        yield from ds.as_numpy_iterator()
    except tf.errors.OpError as exc:
        raise SagesnetError(f"shard {path} is corrupt ({type(exc).__name__}: "
                            f"{exc.message.splitlines()[0][-160:]}); copy or generate it again") from None


def read_trajectories(data_dir) -> list[Trajectory]:
    """All trajectories of an ``md`` dataset, exactly as written (float64, info restored).

    Loads everything into memory: meant for datasets that fit in it (evaluation, conversion, tests and
    the MD trainer, whose windows need random access to whole trajectories).
    """
    data_dir = _dataset_dir(data_dir)
    meta = load_metadata(data_dir)
    _require_kind(meta, "md", data_dir)
    n_env = len(meta["env_fields"])
    frames: dict[int, list[dict]] = {t["index"]: [] for t in meta["trajectories"]}
    for shard in meta["shards"]:
        path = f"{data_dir}/{shard['file']}"
        for frame in _records_of(path, lambda r: schema.parse_md_frame(r, n_env)):
            frames[int(frame["traj_index"])].append(frame)
    out = []
    for entry in meta["trajectories"]:
        fs = frames[entry["index"]]
        if [int(f["frame_index"]) for f in fs] != list(range(entry["n_frames"])):
            raise SagesnetError(f"{data_dir}: trajectory {entry['index']} has frames missing or out of order; "
                                "the dataset is incomplete, generate it again")
        first = fs[0]
        out.append(Trajectory(
            symbols=np.array([meta["elements"][i] for i in first["species"]]),
            ids=first["ids"],
            positions=np.stack([f["positions"] for f in fs]),
            velocities=np.stack([f["velocities"] for f in fs]),
            stress=np.stack([f["stress"] for f in fs]),
            cell=np.stack([f["cell"] for f in fs]),
            pbc=first["pbc"],
            step=np.array([f["step"] for f in fs]),
            time_ps=np.array([f["time_ps"] for f in fs]),
            environment=np.stack([f["environment"] for f in fs]),
            flags=first["flags"],
            env_fields=tuple(meta["env_fields"]),
            dt_fs=meta["dt_fs"],
            info=entry["info"],
        ))
    return out


def read_ca_boards(data_dir) -> np.ndarray:
    """All boards of a ``ca`` dataset as (B, T, X, Y, Z) uint8, exactly as written."""
    data_dir = _dataset_dir(data_dir)
    meta = load_metadata(data_dir)
    _require_kind(meta, "ca", data_dir)
    shape = tuple(meta["board_shape"])
    boards = np.zeros((meta["n_boards"], meta["n_frames_per_board"], *shape), np.uint8)
    seen = np.zeros(boards.shape[:2], bool)
    for shard in meta["shards"]:
        for frame in _records_of(f"{data_dir}/{shard['file']}", lambda r: schema.parse_ca_frame(r, shape)):
            b, f = int(frame["board_index"]), int(frame["frame_index"])
            boards[b, f] = frame["board"]
            seen[b, f] = True
    if not seen.all():
        raise SagesnetError(f"{data_dir}: {int((~seen).sum())} boards are missing; generate the dataset again")
    return boards


def count_windows(sequence_lengths, window: int, stride: int = 1, shift: int = 1) -> int:
    """Number of windows of ``window`` frames ``stride`` records apart, starting every ``shift``
    frames of each sequence, in sequences of the given lengths (frames)."""
    span = (window - 1) * stride + 1
    return sum(max(0, -(-(n - span + 1) // shift)) for n in sequence_lengths)


def _check_window_args(window: int, stride: int, shift: int, batch_size: int | None) -> None:
    for name, value in (("window", window), ("stride", stride), ("shift", shift)):
        if value < 1:
            raise SagesnetError(f"{name} must be at least 1 (got {value})")
    if batch_size is not None and batch_size < 1:
        raise SagesnetError(f"batch_size must be at least 1 (got {batch_size})")


def _windows(frames: tf.data.Dataset, seq_key: str, window: int, stride: int, shift: int) -> tf.data.Dataset:
    """Consecutive frames of one sequence as windows: dict of (window, …) stacked tensors."""
    span = (window - 1) * stride + 1

    def contiguous(w) -> tf.Tensor:
        seq = w[seq_key].batch(span).get_single_element()
        idx = w["frame_index"].batch(span).get_single_element()
        same_sequence = tf.reduce_all(seq == seq[0])
        consecutive = tf.reduce_all(idx - idx[0] == tf.range(span, dtype=tf.int64))
        return tf.logical_and(tf.logical_and(same_sequence, consecutive), idx[0] % shift == 0)

    def stack(w) -> tf.data.Dataset:
        return tf.data.Dataset.zip(w).batch(span).map(lambda x: {k: v[::stride] for k, v in x.items()})

    return frames.window(span, shift=1, drop_remainder=True).filter(contiguous).flat_map(stack)


def _frames(paths: list[str], parse) -> tf.data.Dataset:
    return (tf.data.TFRecordDataset(paths, compression_type=schema.COMPRESSION)
            .map(parse, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True))


def _finish(ds: tf.data.Dataset, shuffle: bool, shuffle_buffer: int, seed: int | None,
            batch_size: int | None, drop_remainder: bool) -> tf.data.Dataset:
    if shuffle:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if batch_size is not None:
        ds = ds.padded_batch(batch_size, drop_remainder=drop_remainder)
    return ds.prefetch(tf.data.AUTOTUNE)


def _no_windows_error(data_dir, lengths, window: int, stride: int) -> SagesnetError:
    span = (window - 1) * stride + 1
    return SagesnetError(f"{data_dir}: no sequence has the {span} frames a window of {window} frames "
                         f"{stride} apart needs (longest has {max(lengths)}); use a shorter window or stride")


def window_dataset(data_dir, window: int = 2, stride: int = 1, *, shift: int = 1, shuffle: bool = False,
                   shuffle_buffer: int = SHUFFLE_BUFFER, batch_size: int | None = None, seed: int | None = None,
                   skip_corrupt: bool = False, drop_remainder: bool = False,
                   float_dtype: tf.DType = tf.float32) -> tf.data.Dataset:
    """Training windows of an ``md`` dataset: frames t, t+s, …, t+(window-1)·s of one trajectory,
    evenly spaced in MD steps (windows across a gap between recorded bursts are left out).

    Args:
        data_dir: dataset directory (local or remote).
        window: frames per window (k+1 for a k-step unrolled loss), ≥ 1.
        stride: records between consecutive frames of a window (Δ = stride × record_interval_ps).
        shift: window start frames are the multiples of ``shift`` in each trajectory.
        shuffle, shuffle_buffer, seed: shuffle windows (reshuffled every epoch).
        batch_size: None for single windows, else batches of B windows; trajectories with fewer
            atoms are padded to the largest in the batch (see ``atom_mask``).
        skip_corrupt: leave corrupt shards out (logged) instead of raising SagesnetError.
        drop_remainder: drop a last batch smaller than ``batch_size``.
        float_dtype: dtype of the floating features (float32 for training; float64 is exact).

    Yields:
        dict of tensors, with a leading (B,) axis when batched (W = window, N = atoms, E = fields):
        ``positions`` (W, N, 3) Å, ``velocities`` (W, N, 3) Å/ps, ``stress`` (W, N, 6) bar·Å³,
        ``cell`` (W, 3, 3) Å, ``environment`` (W, E), ``time_ps`` (W,), ``step`` (W,) int64,
        ``frame_index`` (W,) int64, ``traj_index`` () int64, ``species`` (N,) int32,
        ``ids`` (N,) int64, ``flags`` (N,) int32, ``pbc`` (3,) bool, ``atom_mask`` (N,) bool
        (False for padding atoms).
    """
    _check_window_args(window, stride, shift, batch_size)
    data_dir = _dataset_dir(data_dir)
    meta = load_metadata(data_dir)
    _require_kind(meta, "md", data_dir)
    lengths = [t["n_frames"] for t in meta["trajectories"]]
    if count_windows(lengths, window, stride, shift) == 0:
        raise _no_windows_error(data_dir, lengths, window, stride)
    paths = _readable_shards(data_dir, skip_corrupt)
    n_env = len(meta["env_fields"])
    per_frame = ("positions", "velocities", "stress", "cell", "environment", "time_ps", "step", "frame_index")
    floats = ("positions", "velocities", "stress", "cell", "environment", "time_ps")

    def to_example(w):
        out = {k: w[k] for k in per_frame}
        out.update({k: w[k][0] for k in ("traj_index", "species", "ids", "flags", "pbc")})
        out["atom_mask"] = tf.ones_like(out["species"], dtype=tf.bool)
        for k in floats:
            out[k] = tf.cast(out[k], float_dtype)
        return out

    frames = _frames(paths, lambda r: schema.parse_md_frame(r, n_env))
    step_gap = stride * int(meta["record_stride_steps"])

    def evenly_spaced(w) -> tf.Tensor:  # False for windows across a gap between bursts
        return tf.reduce_all(w["step"][1:] - w["step"][:-1] == step_gap)

    ds = (_windows(frames, "traj_index", window, stride, shift).filter(evenly_spaced)
          .map(to_example, num_parallel_calls=tf.data.AUTOTUNE))
    return _finish(ds, shuffle, shuffle_buffer, seed, batch_size, drop_remainder)


def ca_window_dataset(data_dir, window: int = 2, stride: int = 1, *, shift: int = 1, shuffle: bool = False,
                      shuffle_buffer: int = SHUFFLE_BUFFER, batch_size: int | None = None, seed: int | None = None,
                      skip_corrupt: bool = False, drop_remainder: bool = False) -> tf.data.Dataset:
    """Windows of a ``ca`` dataset: uint8 boards (window, X, Y, Z), or (B, window, X, Y, Z) batched.

    Arguments as in :func:`window_dataset`; a window holds generations t, t+s, … of one rollout.
    """
    _check_window_args(window, stride, shift, batch_size)
    data_dir = _dataset_dir(data_dir)
    meta = load_metadata(data_dir)
    _require_kind(meta, "ca", data_dir)
    lengths = [meta["n_frames_per_board"]] * meta["n_boards"]
    if count_windows(lengths, window, stride, shift) == 0:
        raise _no_windows_error(data_dir, lengths, window, stride)
    paths = _readable_shards(data_dir, skip_corrupt)
    shape = tuple(meta["board_shape"])
    frames = _frames(paths, lambda r: schema.parse_ca_frame(r, shape))
    ds = _windows(frames, "board_index", window, stride, shift).map(lambda w: w["board"])
    return _finish(ds, shuffle, shuffle_buffer, seed, batch_size, drop_remainder)

