"""The strained-sheet pipeline end to end: a real sheet strained affinely, real LAMMPS NVT in that box, a real
TFRecord dataset that the MD trainer's reader loads; the same command gives the same dataset."""

import numpy as np
import pytest

from sagesnet_tf.pipelines import reader, strained_md
from sagesnet_tf.structures import graphene_sheet


@pytest.fixture()
def sheet(tmp_path):
    from sagesnet_tf.io.extxyz import write_extxyz_frames

    path = tmp_path / "sheet.extxyz"
    write_extxyz_frames(path, [graphene_sheet(6, 4)])
    return path


def test_a_strained_sheet_runs_in_its_stretched_box_and_is_a_dataset(tmp_path, sheet):
    args = ["--structure", str(sheet), "--strains", "0.2", "--temperatures", "4.2", "--steps", "8", "--threads", "1"]
    written = strained_md.main(args + ["--out", str(tmp_path / "a")])
    assert written == ["strained_x0.2_4.2"]
    (trajectory,) = reader.read_trajectories(str(tmp_path / "a" / written[0]))
    built = graphene_sheet(6, 4)
    assert trajectory.n_frames == 5 and trajectory.n_atoms == len(built)
    assert trajectory.cell[0][0, 0] == pytest.approx(built.cell[0, 0] * 1.2, rel=1e-9)   # x stretched by 20 %
    assert trajectory.cell[0][1, 1] == pytest.approx(built.cell[1, 1], rel=1e-9)         # y as built
    assert np.all(np.isfinite(trajectory.positions))
    # the same command writes the same data (the strained structure goes through its file both times)
    strained_md.main(args + ["--out", str(tmp_path / "b")])
    (again,) = reader.read_trajectories(str(tmp_path / "b" / written[0]))
    np.testing.assert_array_equal(again.positions, trajectory.positions)


def test_an_open_axis_cannot_be_strained():
    ribbon = graphene_sheet(6, 4)
    ribbon.pbc[1] = False
    with pytest.raises(SystemExit, match="not periodic along y"):
        strained_md.strained(ribbon, "y", 0.1)
