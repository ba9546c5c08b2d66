"""The TFRecord record format of sagesnet-tf datasets (see docs/DATA_SCHEMA.md).

A dataset is a directory of GZIP-compressed shards ``data-00000-of-0000N.tfrecord.gz`` and a
``metadata.json`` beside them. Every record is one ``tf.train.Example`` holding **one frame**:

- kind ``md``: one frame of one MD trajectory, keyed by ``traj_index`` and ``frame_index``.
  Per-trajectory constants (species, ids, flags, pbc) are repeated in every frame so that each
  record is self-contained; float64 arrays are stored as raw little-endian bytes so that a
  dataset round-trips a :class:`~sagesnet_tf.trajectory.Trajectory` bit for bit.
- kind ``ca``: one board of one cellular-automaton rollout, keyed by ``board_index`` and
  ``frame_index``; the board is an ``(X, Y, Z)`` uint8 grid (1 alive, 0 dead).

Frames are written in order (trajectory by trajectory, frame by frame), so a reader that walks
the shards in order sees every sequence as a contiguous run of records; windows are cut only
inside one run whose frame indices are consecutive, so they never straddle two sequences or a gap.

MD frame features (N atoms, E environment fields):

==================  ========  =========  ===================================================
name                dtype     shape      meaning, units
==================  ========  =========  ===================================================
traj_index          int64     ()         trajectory number inside the dataset (0-based)
frame_index         int64     ()         frame number inside the trajectory (0-based)
step                int64     ()         MD step number
time_ps             float64   ()         simulated time, ps (raw bytes, 8)
n_atoms             int64     ()         N
species             int64     (N,)       index into ``metadata.elements``
ids                 int64     (N,)       atom ids (LAMMPS, 1-based)
flags               int64     (N,)       0 free, 1 driven, 2 clamped
pbc                 int64     (3,)       1 where the cell axis is periodic
positions           float64   (N, 3)     unwrapped Cartesian positions, Å (raw bytes)
velocities          float64   (N, 3)     Å/ps (raw bytes)
stress              float64   (N, 6)     per-atom stress × volume, bar·Å³, xx yy zz xy xz yz
cell                float64   (3, 3)     Å, rows are lattice vectors (raw bytes)
environment         float32   (E,)       values of ``metadata.env_fields``
==================  ========  =========  ===================================================

CA frame features: ``board_index`` int64 (), ``frame_index`` int64 (), ``shape`` int64 (3,)
= (X, Y, Z), ``board`` uint8 (X, Y, Z) as raw bytes, ``rule`` string (the rule name).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from sagesnet_tf.atoms import ELEMENTS
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.trajectory import Trajectory

#: Version of the record format and metadata layout; bump on any incompatible change.
SCHEMA_VERSION = 1
#: Dataset kinds: molecular dynamics frames, cellular-automaton boards.
KINDS = ("md", "ca")
METADATA_FILE = "metadata.json"
#: Present from the first shard of a write until its ``metadata.json`` lands: an interrupted write.
INCOMPLETE_FILE = ".incomplete.json"
SHARD_PATTERN = "data-{index:05d}-of-{count:05d}.tfrecord.gz"
COMPRESSION = "GZIP"

#: Units of every stored MD quantity (LAMMPS metal).
MD_UNITS = {
    "positions": "Å", "velocities": "Å/ps", "stress": "bar·Å³ (per-atom stress × volume)",
    "cell": "Å", "time_ps": "ps", "dt_fs": "fs", "environment": "see env_fields (name carries the unit)",
}
#: Names of the per-frame sequence key in each kind.
SEQUENCE_KEY = {"md": "traj_index", "ca": "board_index"}

#: URL schemes whose TensorFlow filesystem comes from tensorflow-io (TensorFlow itself knows local
#: paths and gs://); importing tensorflow_io registers them.
TFIO_SCHEMES = ("s3", "hdfs", "viewfs", "az", "http", "https")

_F64 = np.dtype("<f8")


def enable_filesystem(path) -> None:
    """Make ``path``'s filesystem usable by ``tf.io.gfile`` / ``tf.data`` (loads tensorflow-io for s3:// etc.)."""
    scheme = str(path).split("://", 1)[0] if "://" in str(path) else ""
    if scheme in TFIO_SCHEMES:
        import tensorflow_io  # noqa: F401  (import registers the filesystem plugins)


def shard_name(index: int, count: int) -> str:
    """File name of shard ``index`` of ``count`` (0-based), e.g. ``data-00000-of-00003.tfrecord.gz``."""
    return SHARD_PATTERN.format(index=index, count=count)


def _int64(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=np.asarray(values, np.int64).reshape(-1)))


def _bytes(value: bytes) -> tf.train.Feature:
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))


def _f64(values) -> tf.train.Feature:
    return _bytes(np.ascontiguousarray(values, dtype=_F64).tobytes())


def species_of(symbols: np.ndarray) -> np.ndarray:
    """(N,) int64 indices of ``symbols`` in :data:`ELEMENTS`; unknown elements are an error."""
    unknown = sorted(set(symbols.tolist()) - set(ELEMENTS))
    if unknown:
        raise SagesnetError(
            f"element(s) {', '.join(unknown)} cannot be stored: datasets hold {', '.join(ELEMENTS)} only")
    return np.array([ELEMENTS.index(s) for s in symbols], dtype=np.int64)


def md_frame_example(traj: Trajectory, traj_index: int, frame: int, species: np.ndarray) -> bytes:
    """Serialized ``tf.train.Example`` of frame ``frame`` of ``traj`` (``species``: (N,) int64)."""
    feature = {
        "traj_index": _int64(traj_index),
        "frame_index": _int64(frame),
        "step": _int64(traj.step[frame]),
        "time_ps": _f64(traj.time_ps[frame]),
        "n_atoms": _int64(traj.n_atoms),
        "species": _int64(species),
        "ids": _int64(traj.ids),
        "flags": _int64(traj.flags),
        "pbc": _int64(traj.pbc.astype(np.int64)),
        "positions": _f64(traj.positions[frame]),
        "velocities": _f64(traj.velocities[frame]),
        "stress": _f64(traj.stress[frame]),
        "cell": _f64(traj.cell[frame]),
        "environment": tf.train.Feature(float_list=tf.train.FloatList(value=traj.environment[frame])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_md_frame(serialized: tf.Tensor, n_env: int) -> dict[str, tf.Tensor]:
    """Decode one serialized MD frame into tensors (shapes and dtypes in the module table).

    Args:
        serialized: scalar tf.string, one record.
        n_env: E, the number of environment fields (``len(metadata["env_fields"])``).

    Returns:
        dict with int64 scalars ``traj_index``, ``frame_index``, ``step``; float64 ``time_ps``;
        int32 ``species`` (N,), int64 ``ids`` (N,), int32 ``flags`` (N,), bool ``pbc`` (3,);
        float64 ``positions`` (N, 3), ``velocities`` (N, 3), ``stress`` (N, 6), ``cell`` (3, 3);
        float32 ``environment`` (E,).
    """
    scalar = tf.io.FixedLenFeature([], tf.int64)
    raw = tf.io.FixedLenFeature([], tf.string)
    ints = tf.io.FixedLenSequenceFeature([], tf.int64, allow_missing=True)
    spec = {
        "traj_index": scalar, "frame_index": scalar, "step": scalar, "n_atoms": scalar,
        "time_ps": raw, "positions": raw, "velocities": raw, "stress": raw, "cell": raw,
        "species": ints, "ids": ints, "flags": ints,
        "pbc": tf.io.FixedLenFeature([3], tf.int64),
        "environment": tf.io.FixedLenFeature([n_env], tf.float32),
    }
    ex = tf.io.parse_single_example(serialized, spec)
    n = ex["n_atoms"]

    def f64(name: str, shape) -> tf.Tensor:
        return tf.reshape(tf.io.decode_raw(ex[name], tf.float64, little_endian=True), shape)

    return {
        "traj_index": ex["traj_index"],
        "frame_index": ex["frame_index"],
        "step": ex["step"],
        "time_ps": f64("time_ps", []),
        "species": tf.cast(ex["species"], tf.int32),
        "ids": ex["ids"],
        "flags": tf.cast(ex["flags"], tf.int32),
        "pbc": tf.cast(ex["pbc"], tf.bool),
        "positions": f64("positions", tf.stack([n, 3])),
        "velocities": f64("velocities", tf.stack([n, 3])),
        "stress": f64("stress", tf.stack([n, 6])),
        "cell": f64("cell", [3, 3]),
        "environment": ex["environment"],
    }


def ca_frame_example(board: np.ndarray, board_index: int, frame: int, rule: str) -> bytes:
    """Serialized ``tf.train.Example`` of one (X, Y, Z) uint8 board of rollout ``board_index``."""
    board = np.ascontiguousarray(board, dtype=np.uint8)
    feature = {
        "board_index": _int64(board_index),
        "frame_index": _int64(frame),
        "shape": _int64(board.shape),
        "board": _bytes(board.tobytes()),
        "rule": _bytes(rule.encode()),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def parse_ca_frame(serialized: tf.Tensor, shape: tuple[int, int, int]) -> dict[str, tf.Tensor]:
    """Decode one serialized CA frame: int64 ``board_index``, ``frame_index``; uint8 ``board`` (X, Y, Z).

    ``shape`` is (X, Y, Z) from ``metadata["board_shape"]``; a record of another shape is an
    InvalidArgument error at read time.
    """
    spec = {
        "board_index": tf.io.FixedLenFeature([], tf.int64),
        "frame_index": tf.io.FixedLenFeature([], tf.int64),
        "shape": tf.io.FixedLenFeature([3], tf.int64),
        "board": tf.io.FixedLenFeature([], tf.string),
    }
    ex = tf.io.parse_single_example(serialized, spec)
    check = tf.debugging.assert_equal(ex["shape"], tf.constant(shape, tf.int64),
                                      message="CA record has a board shape other than metadata.board_shape")
    with tf.control_dependencies([check]):
        board = tf.reshape(tf.io.decode_raw(ex["board"], tf.uint8), shape)
    return {"board_index": ex["board_index"], "frame_index": ex["frame_index"], "board": board}
