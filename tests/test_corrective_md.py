"""The corrective-data pipeline end to end: the shipped model's quick kirigami run, real LAMMPS from its frame, a
real TFRecord dataset that the MD trainer's reader loads."""

import json

import numpy as np
import pytest

from sagesnet_tf.pipelines import corrective_md, reader


def test_a_model_frame_starts_an_airebo_run_written_as_a_dataset(tmp_path):
    written = corrective_md.main(["--out", str(tmp_path), "--patterns", "010001100111000", "--strains", "0.01",
                                  "--steps", "8", "--threads", "1"])
    assert written == ["corrective_010001100111000_0.010"]
    out = tmp_path / written[0]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["velocities"] == "from structure"          # the model frame's own velocities
    (trajectory,) = reader.read_trajectories(str(out))
    assert trajectory.n_frames == 5 and trajectory.n_atoms > 100
    # LAMMPS started from the model's stretched box: 1 % longer along x than the ribbon as built
    built = corrective_md.QUICK.ribbon("010001100111000", periodic_y=True)
    assert trajectory.cell[0][0, 0] == pytest.approx(built.cell[0, 0] * 1.01, rel=2e-3)
    assert np.all(np.isfinite(trajectory.positions))


def test_rattle_displaces_every_atom_reproducibly():
    frame = corrective_md.QUICK.ribbon("010001100111000", periodic_y=True)
    assert corrective_md.rattled(frame, 0.0, 0, "010001100111000", 0.1) is frame
    first = corrective_md.rattled(frame, 0.08, 0, "010001100111000", 0.1)
    again = corrective_md.rattled(frame, 0.08, 0, "010001100111000", 0.1)
    other = corrective_md.rattled(frame, 0.08, 0, "010001100111000", 0.125)
    shift = first.positions - frame.positions
    assert np.array_equal(first.positions, again.positions) and not np.array_equal(first.positions, other.positions)
    assert np.std(shift) == pytest.approx(0.08, rel=0.15) and abs(np.mean(shift)) < 0.02  # ~450 draws
    assert np.array_equal(first.cell, frame.cell) and np.array_equal(first.velocities, frame.velocities)
    assert corrective_md.dataset_name("010001100111000", 0.1, "crattle") == "crattle_010001100111000_0.100"


def test_a_crumpled_frame_gets_airebo_vacuum_along_its_open_axis():
    from sagesnet_tf.md.engine import AIREBO_LJ_CUTOFF_A, check_input

    frame = corrective_md.QUICK.ribbon("010001100111000", periodic_y=True)
    assert corrective_md.with_vacuum(frame) is frame                   # as built: vacuum enough
    crumpled = frame.copy()
    crumpled.positions[::2, 2] += 0.6 * frame.cell[2, 2]                  # half the atoms far out of plane
    padded = corrective_md.with_vacuum(crumpled)
    check_input(padded)                                                   # LAMMPS takes it
    assert padded.cell[2, 2] == pytest.approx(np.ptp(crumpled.positions[:, 2]) + 2 * AIREBO_LJ_CUTOFF_A)
    assert np.array_equal(padded.cell[:2], crumpled.cell[:2])
    shift = padded.positions - crumpled.positions                       # one rigid shift along z only
    assert np.allclose(shift[:, :2], 0) and np.allclose(shift[:, 2], shift[0, 2])
