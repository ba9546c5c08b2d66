"""Other trajectory sources: LAMMPS text dumps, HDF5 via tensorflow-io, extxyz frames; each → dataset."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io.extxyz import write_extxyz_frames
from sagesnet_tf.pipelines.frames import read_extxyz_trajectory, trajectory_from_frames
from sagesnet_tf.pipelines.hdf5_source import read_hdf5_trajectory, write_hdf5_trajectory
from sagesnet_tf.pipelines.lammps_dump import read_lammps_dump
from sagesnet_tf.pipelines.reader import read_trajectories
from sagesnet_tf.pipelines.writer import write_dataset
from sagesnet_tf.trajectory import ENV_FIELDS, Trajectory

ARRAYS = ("symbols", "ids", "positions", "velocities", "stress", "cell", "pbc", "step", "time_ps",
          "environment", "flags")

DUMP = """ITEM: TIMESTEP
0
ITEM: NUMBER OF ATOMS
3
ITEM: BOX BOUNDS pp pp ff
-1.0 9.0
0.0 10.0
-5.0 15.0
ITEM: ATOMS id type xu yu zu vx vy vz c_s[1] c_s[2] c_s[3] c_s[4] c_s[5] c_s[6]
2 1 1.0 2.0 3.0 0.1 0.2 0.3 1 2 3 4 5 6
1 2 0.0 0.5 0.0 -0.1 0 0 -1 -2 -3 -4 -5 -6
3 1 8.5 9.5 1.0 0 0 0 0 0 0 0 0 0
ITEM: TIMESTEP
10
ITEM: NUMBER OF ATOMS
3
ITEM: BOX BOUNDS pp pp ff
-1.0 9.0
0.0 10.0
-5.0 15.0
ITEM: ATOMS id type xu yu zu vx vy vz c_s[1] c_s[2] c_s[3] c_s[4] c_s[5] c_s[6]
3 1 9.5 9.6 1.1 1 1 1 7 7 7 7 7 7
1 2 0.1 0.5 0.0 -0.1 0 0 -1 -2 -3 -4 -5 -6
2 1 1.1 2.0 3.0 0.1 0.2 0.3 1 2 3 4 5 6
"""


def _frame(step: int, box: str, header: str, rows: list[str]) -> str:
    return (f"ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{len(rows)}\nITEM: BOX BOUNDS {box}\n"
            f"ITEM: ATOMS {header}\n" + "\n".join(rows) + "\n")


def test_dump_custom_unwrapped_with_stress(tmp_path):
    path = tmp_path / "run.dump"
    path.write_text(DUMP)
    traj = read_lammps_dump(str(path), {1: "C", 2: "H"}, dt_fs=0.5, environment={"temperature_K": 300.0})
    assert traj.symbols.tolist() == ["H", "C", "C"] and traj.ids.tolist() == [1, 2, 3]
    origin = np.array([-1.0, 0.0, -5.0])
    np.testing.assert_allclose(traj.positions[0], np.array([[0.0, 0.5, 0.0], [1, 2, 3], [8.5, 9.5, 1]]) - origin)
    np.testing.assert_allclose(traj.positions[1, 2], np.array([9.5, 9.6, 1.1]) - origin)
    np.testing.assert_allclose(traj.velocities[1, 2], [1, 1, 1])
    np.testing.assert_allclose(traj.stress[0, 0], [-1, -2, -3, -4, -5, -6])
    np.testing.assert_allclose(traj.stress[1, 2], [7] * 6)
    np.testing.assert_allclose(traj.cell[0], np.diag([10.0, 10.0, 20.0]))
    assert traj.pbc.tolist() == [True, True, False]
    assert traj.step.tolist() == [0, 10] and traj.time_ps.tolist() == [0.0, 0.005] and traj.dt_fs == 0.5
    assert traj.environment[:, 0].tolist() == [300.0, 300.0]
    assert traj.info["has_stress"] and traj.info["env_missing"] == list(ENV_FIELDS[1:])
    assert traj.info["box_origin"] == [-1.0, 0.0, -5.0]
    # the same with a type list instead of a mapping
    assert read_lammps_dump(str(path), ["C", "H"], dt_fs=0.5).symbols.tolist() == ["H", "C", "C"]


def test_dump_wrapped_positions_are_unwrapped(tmp_path):
    box = "pp pp pp\n0 10\n0 10\n0 10"
    plain = tmp_path / "plain.dump"
    plain.write_text(_frame(0, box, "id type x y z", ["1 1 9.8 5 5", "2 1 1 1 1"])
                     + _frame(5, box, "id type x y z", ["1 1 0.2 5 5", "2 1 1.1 1 1"])
                     + _frame(10, box, "id type x y z", ["1 1 0.6 5 5", "2 1 9.9 1 1"]))
    traj = read_lammps_dump(str(plain), ["C"], dt_fs=1.0)  # by continuity: no image flags
    np.testing.assert_allclose(traj.positions[:, 0, 0], [9.8, 10.2, 10.6])
    np.testing.assert_allclose(traj.positions[:, 1, 0], [1.0, 1.1, -0.1])
    assert not traj.info["has_stress"] and not traj.velocities.any()
    images = tmp_path / "images.dump"
    images.write_text(_frame(0, box, "id type x y z ix iy iz", ["1 1 9.8 5 5 0 0 0"])
                      + _frame(5, box, "id type x y z ix iy iz", ["1 1 0.2 5 5 3 0 -1"]))
    np.testing.assert_allclose(read_lammps_dump(str(images), ["C"], dt_fs=1.0).positions[1, 0], [30.2, 5, -5])


def test_dump_triclinic_and_scaled(tmp_path):
    path = tmp_path / "tri.dump"
    # xlo 0, xhi 10, xy 2: LAMMPS writes the bounding box xlo_bound 0, xhi_bound 12
    path.write_text(_frame(0, "xy xz yz pp pp pp\n0 12 2\n0 10 0\n0 10 0", "id element xs ys zs",
                           ["1 C 0.5 0.5 0.5", "2 H 0 0.1 0"]))
    traj = read_lammps_dump(str(path), dt_fs=1.0)
    np.testing.assert_allclose(traj.cell[0], [[10, 0, 0], [2, 10, 0], [0, 0, 10]])
    np.testing.assert_allclose(traj.positions[0], [[6.0, 5.0, 5.0], [0.2, 1.0, 0.0]])
    assert traj.symbols.tolist() == ["C", "H"]


def test_dump_errors_are_one_line(tmp_path):
    path = tmp_path / "run.dump"
    path.write_text(DUMP)
    with pytest.raises(SagesnetError, match="pass type_to_element"):
        read_lammps_dump(str(path), dt_fs=1.0)
    with pytest.raises(SagesnetError, match=r"atom type\(s\) \[2\] have no element"):
        read_lammps_dump(str(path), {1: "C"}, dt_fs=1.0)
    path.write_text(DUMP[: DUMP.rindex("3 1 9.5")])
    with pytest.raises(SagesnetError, match="truncated"):
        read_lammps_dump(str(path), ["C", "H"], dt_fs=1.0)
    path.write_text("hello\n")
    with pytest.raises(SagesnetError, match="not a LAMMPS text dump"):
        read_lammps_dump(str(path), ["C", "H"], dt_fs=1.0)


def test_dump_to_dataset_round_trip(tmp_path):
    path = tmp_path / "run.dump"
    path.write_text(DUMP)
    traj = read_lammps_dump(str(path), ["C", "H"], dt_fs=1.0)
    (back,) = read_trajectories(write_dataset(tmp_path / "ds", [traj]))
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(traj, name), err_msg=name)


def _trajectory(n_frames: int = 4, n_atoms: int = 5) -> Trajectory:
    rng = np.random.default_rng(3)
    step = 20 * np.arange(n_frames)
    return Trajectory(
        symbols=np.array(["C", "H", "C", "C", "H"][:n_atoms]), ids=np.arange(11, 11 + n_atoms),
        positions=rng.uniform(0, 9, (n_frames, n_atoms, 3)), velocities=rng.normal(size=(n_frames, n_atoms, 3)),
        stress=rng.normal(size=(n_frames, n_atoms, 6)), cell=np.tile(np.eye(3) * 9.0, (n_frames, 1, 1)),
        pbc=[True, False, True], step=step, time_ps=step * 5e-4, environment=rng.normal(size=(n_frames, 4)),
        flags=[0, 1, 2, 0, 0][:n_atoms], dt_fs=0.5)


def test_hdf5_round_trip_through_tensorflow_io(tmp_path):
    traj = _trajectory()
    path = str(tmp_path / "traj.h5")
    write_hdf5_trajectory(path, traj)
    back = read_hdf5_trajectory(path)
    for name in ARRAYS:
        x, y = getattr(traj, name), getattr(back, name)
        assert x.dtype == y.dtype and np.array_equal(x, y), name
    assert back.dt_fs == 0.5 and back.env_fields == ENV_FIELDS and back.info["has_stress"]


def _minimal_hdf5(path: str, with_step: bool = True) -> None:
    with h5py.File(path, "w") as f:
        f["positions"] = np.zeros((2, 3, 3))
        f["positions"][1] = 1.0
        f["cell"] = np.tile(np.eye(3) * 5, (2, 1, 1))
        f["species"] = np.array([0, 0, 1], np.int32)
        f["pbc"] = np.array([1, 1, 1], np.uint8)
        if with_step:
            f["step"] = np.array([0, 100])
        f["dt_fs"] = np.array([1.0])
        f["ignored_rank5"] = np.zeros((1, 1, 1, 1, 2))  # never read: tensorflow-io would abort on it


def test_hdf5_minimal_layout_and_errors(tmp_path):
    path = str(tmp_path / "min.h5")
    _minimal_hdf5(path)
    traj = read_hdf5_trajectory(path)
    assert traj.symbols.tolist() == ["C", "C", "H"] and traj.ids.tolist() == [1, 2, 3]
    assert traj.time_ps.tolist() == [0.0, 0.1] and not traj.velocities.any() and not traj.info["has_stress"]
    np.testing.assert_array_equal(traj.positions[1], np.ones((3, 3)))
    path = str(tmp_path / "no_step.h5")  # a new file: tensorflow-io keeps files it read open and locked
    _minimal_hdf5(path, with_step=False)
    with pytest.raises(SagesnetError, match="lacks /step"):
        read_hdf5_trajectory(path)
    with pytest.raises(SagesnetError, match="no such file"):
        read_hdf5_trajectory(str(tmp_path / "nope.h5"))
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(SagesnetError, match="not a readable HDF5 file"):
        read_hdf5_trajectory(str(tmp_path / "text.h5"))


def test_extxyz_frames_to_trajectory(tmp_path):
    cell = np.diag([10.0, 10.0, 20.0])
    frames = []
    for t in range(3):
        # atom 7 crosses the periodic x boundary between frames 1 and 2 (written wrapped)
        pos = np.array([[1.0 + 0.1 * t, 1, 10], [(9.7 + 0.2 * t) % 10.0, 5, 10]])
        symbols, ids = ["C", "H"], [3, 7]
        if t == 1:  # atoms listed in another order in this frame
            pos, symbols, ids = pos[::-1], symbols[::-1], ids[::-1]
        frames.append(Atoms(symbols, pos, cell, [True, True, False], velocities=np.full((2, 3), t, float),
                            ids=ids, info={"step": 50 * t, "temperature_K": 290.0 + t}))
    path = tmp_path / "traj.extxyz"
    write_extxyz_frames(path, frames)
    traj = read_extxyz_trajectory(str(path), dt_fs=1.0, stride=50, environment={"pressure_bar": 1.0})
    assert traj.ids.tolist() == [3, 7] and traj.symbols.tolist() == ["C", "H"]
    np.testing.assert_allclose(traj.positions[:, 1, 0], [9.7, 9.9, 10.1])
    np.testing.assert_allclose(traj.positions[:, 0, 0], [1.0, 1.1, 1.2])
    assert traj.step.tolist() == [0, 50, 100] and traj.time_ps.tolist() == [0.0, 0.05, 0.1]
    np.testing.assert_allclose(traj.environment[:, :2], [[290, 1], [291, 1], [292, 1]])
    assert traj.info["env_missing"] == ["strain_rate_per_ps", "strain"] and not traj.stress.any()
    with pytest.raises(SagesnetError, match="not 20 steps apart"):
        trajectory_from_frames(frames, 1.0, 20)
    (back,) = read_trajectories(write_dataset(tmp_path / "ds", [traj]))
    np.testing.assert_array_equal(back.positions, traj.positions)


@pytest.mark.lammps
def test_real_lammps_dump_matches_recorded_trajectory(tmp_path):
    from sagesnet_tf.md.protocols import NVT
    from sagesnet_tf.md.run import run_md
    from sagesnet_tf.structures import graphene_sheet

    result = run_md(graphene_sheet(3, 4), NVT(300.0, steps=40), str(tmp_path), record_every=20, threads=1,
                    dump=True, progress=False)
    recorded = result.trajectory
    dumped = read_lammps_dump(str(tmp_path / "dump.lammpstrj"), {1: "C"}, dt_fs=1.0)
    assert dumped.n_frames == recorded.n_frames == 3 and dumped.ids.tolist() == recorded.ids.tolist()
    np.testing.assert_array_equal(dumped.step, recorded.step)
    np.testing.assert_allclose(dumped.positions, recorded.positions, atol=1e-7)
    np.testing.assert_allclose(dumped.velocities, recorded.velocities, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(dumped.cell, recorded.cell, atol=1e-9)
    out = write_dataset(tmp_path / "ds", [recorded], source=result.manifest)
    (back,) = read_trajectories(out)
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(back, name), getattr(recorded, name), err_msg=name)
