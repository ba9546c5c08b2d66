"""HDF5 trajectories, read through tensorflow-io (``tfio.IODataset.from_hdf5``).

Layout of one trajectory per file (T frames, N atoms, E environment fields; metal units):

================  ========  =========  ========  ============================================
dataset           dtype     shape      required  meaning
================  ========  =========  ========  ============================================
/positions        float64   (T, N, 3)  yes       unwrapped Cartesian positions, Å
/cell             float64   (T, 3, 3)  yes       Å, rows are lattice vectors
/species          int32     (N,)       yes       index into ELEMENTS (0 = C, 1 = H)
/pbc              uint8     (3,)       yes       1 where the axis is periodic
/step             int64     (T,)       yes       MD step of each frame
/dt_fs            float64   (1,)       yes       MD timestep, fs
/velocities       float64   (T, N, 3)  no        Å/ps (zeros if absent)
/stress           float64   (T, N, 6)  no        per-atom stress × volume, bar·Å³ (zeros if absent)
/ids              int64     (N,)       no        atom ids (1..N if absent)
/flags            int32     (N,)       no        0 free, 1 driven, 2 clamped (0 if absent)
/time_ps          float64   (T,)       no        ps (step · dt_fs / 1000 if absent)
/environment      float32   (T, E)     no        with /env_fields (E,) strings; zeros if absent
================  ========  =========  ========  ============================================

Every dataset has rank ≤ 3. Reading goes through tensorflow-io, which has sharp edges this module
guards against: it aborts the process on rank-5 datasets (only the datasets above are read, and
their rank is checked first) and crashes on files that are not HDF5 (the signature is checked
first; a file that has the signature but is damaged inside can still crash it). It also keeps
every file it has read open, and locked, until the process exits: do not rewrite such a file in
place with h5py in the same process. :func:`write_hdf5_trajectory` uses h5py on a local path.
"""

from __future__ import annotations

import os
import tempfile

import h5py
import numpy as np
import tensorflow as tf
import tensorflow_io as tfio

from sagesnet_tf.atoms import ELEMENTS
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.trajectory import ENV_FIELDS, Trajectory

REQUIRED = ("/positions", "/cell", "/species", "/pbc", "/step", "/dt_fs")
OPTIONAL = ("/velocities", "/stress", "/ids", "/flags", "/time_ps", "/environment", "/env_fields")
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Highest dataset rank tensorflow-io reads safely.
MAX_RANK = 4


def write_hdf5_trajectory(path: str, traj: Trajectory) -> None:
    """Write ``traj`` to a local HDF5 file in the layout above (atomically: temp file + rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(suffix=".h5.tmp", dir=directory)
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as f:
            f["positions"] = traj.positions
            f["velocities"] = traj.velocities
            f["stress"] = traj.stress
            f["cell"] = traj.cell
            f["species"] = np.array([ELEMENTS.index(s) for s in traj.symbols], dtype=np.int32)
            f["ids"] = traj.ids
            f["flags"] = traj.flags
            f["pbc"] = traj.pbc.astype(np.uint8)
            f["step"] = traj.step
            f["time_ps"] = traj.time_ps
            f["dt_fs"] = np.array([traj.dt_fs], dtype=np.float64)
            f["environment"] = traj.environment
            f["env_fields"] = np.array([name.encode() for name in traj.env_fields])
            f.attrs["units"] = "metal"
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _is_hdf5(path: str) -> bool:
    """True if the HDF5 signature is at offset 0 or at a user-block boundary (512, 1024, … bytes)."""
    with tf.io.gfile.GFile(path, "rb") as fh:
        size = fh.size()
        offset = 0
        while offset + 8 <= size and offset <= 1 << 20:
            fh.seek(offset)
            if fh.read(8) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def _read(path: str, key: str) -> np.ndarray:
    """The whole HDF5 dataset ``key`` as a numpy array, through tensorflow-io."""
    return tfio.IODataset.from_hdf5(path, dataset=key).batch(1 << 30).get_single_element().numpy()


def read_hdf5_trajectory(path: str) -> Trajectory:
    """One trajectory from an HDF5 file in the layout above.

    Raises SagesnetError naming the file when it is missing, not HDF5, lacks a required dataset,
    or its shapes disagree.
    """
    path = str(path)
    if not tf.io.gfile.exists(path):
        raise SagesnetError(f"{path}: no such file; check the path")
    if not _is_hdf5(path):  # tensorflow-io crashes the process on a file that is not HDF5
        raise SagesnetError(f"{path}: not a readable HDF5 file (no HDF5 signature); give an .h5 trajectory")
    try:
        table = tfio.IOTensor.from_hdf5(path)
        keys = {k.numpy().decode() for k in table.keys}
        missing = [k for k in REQUIRED if k not in keys]
        if missing:
            raise SagesnetError(f"{path}: HDF5 trajectory lacks {', '.join(missing)}; see the layout in "
                                "docs/DATA_SCHEMA.md")
        wanted = [k for k in REQUIRED + OPTIONAL if k in keys]
        for key in wanted:  # refuse before reading: tensorflow-io aborts the process on rank 5
            rank = int(tf.size(table(key).shape))
            if rank > MAX_RANK:
                raise SagesnetError(f"{path}{key} has rank {rank}; the HDF5 layout uses rank ≤ 3")
        data = {k[1:]: _read(path, k) for k in wanted}
    except tf.errors.OpError as exc:
        raise SagesnetError(f"{path}: not a readable HDF5 file ({exc.message.splitlines()[0][:120]})") from None
    species = data["species"].astype(np.int64)
    if species.min(initial=0) < 0 or species.max(initial=0) >= len(ELEMENTS):
        raise SagesnetError(f"{path}: /species holds indices outside 0..{len(ELEMENTS) - 1} ({', '.join(ELEMENTS)})")
    t, n = data["positions"].shape[:2]
    if data["cell"].shape != (t, 3, 3) or species.shape != (n,) or data["step"].shape != (t,):
        raise SagesnetError(f"{path}: shapes disagree: /positions {data['positions'].shape}, /cell "
                            f"{data['cell'].shape}, /species {species.shape}, /step {data['step'].shape}")
    dt_fs = float(data["dt_fs"].reshape(-1)[0])
    env_fields = (tuple(f.decode() for f in data["env_fields"]) if "env_fields" in data else ENV_FIELDS)
    try:
        return Trajectory(
            symbols=np.array([ELEMENTS[i] for i in species]),
            ids=data.get("ids", np.arange(1, n + 1)),
            positions=data["positions"],
            velocities=data.get("velocities", np.zeros((t, n, 3))),
            stress=data.get("stress", np.zeros((t, n, 6))),
            cell=data["cell"], pbc=data["pbc"].astype(bool), step=data["step"],
            time_ps=data.get("time_ps", data["step"] * dt_fs / 1000.0),
            environment=data.get("environment", np.zeros((t, len(env_fields)), np.float32)),
            flags=data.get("flags"), env_fields=env_fields, dt_fs=dt_fs,
            info={"source": f"hdf5 {path}", "has_stress": "stress" in data})
    except ValueError as exc:
        raise SagesnetError(f"{path}: a dataset has the wrong shape ({exc}); see the HDF5 layout in "
                            "docs/DATA_SCHEMA.md") from None
