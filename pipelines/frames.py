"""Trajectories assembled from frames: lists of Atoms, multi-frame extxyz files.

Sources other than the LAMMPS runner give frames without some of what a
:class:`~sagesnet_tf.trajectory.Trajectory` records; the gaps are filled the same way everywhere:

- positions are made continuous in time: a jump of more than half a periodic cell between two
  frames is taken as a wrap into the cell and undone (a no-op on positions already unwrapped;
  assumes no atom moves half a cell between frames);
- per-atom stress missing → zeros, and ``info["has_stress"] = False``;
- an environment field (:data:`~sagesnet_tf.trajectory.ENV_FIELDS`) is taken per frame from the
  frames' ``info`` when every frame has it, else from the ``environment`` mapping given by the
  caller (constant over the trajectory), else 0.0 and named in ``info["env_missing"]``.
"""

from __future__ import annotations

import numbers
from typing import Mapping

import numpy as np

from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io.extxyz import read_extxyz_frames
from sagesnet_tf.trajectory import ENV_FIELDS, Trajectory


def environment_array(n_frames: int, given: Mapping[str, float] | None = None,
                      per_frame: Mapping[str, np.ndarray] | None = None) -> tuple[np.ndarray, list[str]]:
    """(T, E) float32 environment of :data:`ENV_FIELDS` and the names of fields filled with 0.0.

    ``per_frame`` values (T,) win over constant ``given`` values; unknown names in ``given`` are an error.
    """
    given = dict(given or {})
    per_frame = dict(per_frame or {})
    unknown = sorted(set(given) - set(ENV_FIELDS))
    if unknown:
        raise SagesnetError(f"unknown environment field(s) {', '.join(unknown)}; known: {', '.join(ENV_FIELDS)}")
    env = np.zeros((n_frames, len(ENV_FIELDS)), dtype=np.float32)
    missing = []
    for j, name in enumerate(ENV_FIELDS):
        if name in per_frame:
            env[:, j] = per_frame[name]
        elif name in given:
            env[:, j] = given[name]
        else:
            missing.append(name)
    return env, missing


def unwrap(positions: np.ndarray, cells: np.ndarray, pbc: np.ndarray) -> np.ndarray:
    """Undo wrapping along periodic axes by continuity: (T, N, 3) Å in, (T, N, 3) Å out.

    ``cells`` (T, 3, 3) rows are lattice vectors; each frame's step is read in that frame's cell.
    """
    out = np.array(positions, dtype=np.float64, copy=True)
    images = np.zeros(positions.shape[1:])  # (N, 3) integer image counts along a, b, c
    for t in range(1, len(out)):
        dfrac = (positions[t] - positions[t - 1]) @ np.linalg.inv(cells[t])
        images[:, pbc] -= np.round(dfrac[:, pbc])
        if images.any():
            out[t] = positions[t] + images @ cells[t]
    return out


def trajectory_from_frames(frames: list[Atoms], dt_fs: float, stride: int, *,
                           environment: Mapping[str, float] | None = None, source: str = "frames") -> Trajectory:
    """One Trajectory from T frames of the same atoms (matched by id; rows sorted by id).

    Args:
        frames: T Atoms with the same ids, symbols and pbc (cells may differ, e.g. under strain).
        dt_fs: MD timestep, fs.
        stride: MD steps between consecutive frames. When every frame has ``info["step"]``, those
            steps are used and must be ``stride`` apart; otherwise frame t is step ``t · stride``.
        environment: constant environment values by field name (see module docstring).
        source: name used in error messages and stored as ``info["source"]``.

    Returns:
        Trajectory with positions (T, N, 3) Å, velocities (T, N, 3) Å/ps, zero stress (T, N, 6).
    """
    if not frames:
        raise SagesnetError(f"{source}: no frames; a trajectory needs at least one")
    if not (dt_fs > 0 and stride >= 1):
        raise SagesnetError(f"{source}: timestep must be > 0 fs and stride ≥ 1 step (got {dt_fs} fs, {stride})")
    first = frames[0]
    order0 = np.argsort(first.ids)
    ids = first.ids[order0]
    symbols = first.symbols[order0]
    positions, velocities, cells = [], [], []
    for t, atoms in enumerate(frames):
        order = np.argsort(atoms.ids)
        if len(atoms) != len(first) or not np.array_equal(atoms.ids[order], ids):
            raise SagesnetError(f"{source}: frame {t} holds different atoms (ids) than frame 0; "
                                "a trajectory needs the same atoms in every frame")
        if not np.array_equal(atoms.symbols[order], symbols) or not np.array_equal(atoms.pbc, first.pbc):
            raise SagesnetError(f"{source}: frame {t} changes element symbols or periodicity; "
                                "split the file where the system changes")
        positions.append(atoms.positions[order])
        velocities.append(atoms.velocities[order])
        cells.append(atoms.cell)
    if all("step" in a.info for a in frames):
        step = np.array([int(a.info["step"]) for a in frames], dtype=np.int64)
        if len(step) > 1 and np.any(np.diff(step) != stride):
            raise SagesnetError(f"{source}: frames are at steps {step[:4].tolist()}…, not {stride} steps apart; "
                                "pass the stride the file was recorded with")
    else:
        step = np.arange(len(frames), dtype=np.int64) * stride
    per_frame = {name: np.array([float(a.info[name]) for a in frames]) for name in ENV_FIELDS
                 if all(isinstance(a.info.get(name), numbers.Real) for a in frames)}
    env, missing = environment_array(len(frames), environment, per_frame)
    return Trajectory(
        symbols=symbols, ids=ids, positions=unwrap(np.stack(positions), np.stack(cells), first.pbc),
        velocities=np.stack(velocities),
        stress=np.zeros((len(frames), len(first), 6)), cell=np.stack(cells), pbc=first.pbc, step=step,
        time_ps=step * dt_fs / 1000.0, environment=env, flags=first.flags[order0], dt_fs=dt_fs,
        info={"source": source, "has_stress": False, "env_missing": missing})


def read_extxyz_trajectory(path: str, dt_fs: float, stride: int, *,
                           environment: Mapping[str, float] | None = None) -> Trajectory:
    """A multi-frame (extended) XYZ file as one Trajectory (reader: :mod:`sagesnet_tf.io.extxyz`)."""
    return trajectory_from_frames(read_extxyz_frames(path), dt_fs, stride, environment=environment,
                                  source=str(path))
