"""``sagesnet-tf generate md`` end to end on a 160-atom sheet (real LAMMPS, real TFRecords)."""

import csv
import json

import numpy as np
import pytest

from sagesnet_tf.cli.main import main
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import read_structure, write_structure
from sagesnet_tf.structures import graphene_sheet
from sagesnet_tf.thermo import temperature_k

pytestmark = pytest.mark.lammps


@pytest.fixture(scope="module")
def structure(tmp_path_factory):
    path = tmp_path_factory.mktemp("structure") / "graphene.extxyz"
    write_structure(graphene_sheet(5, 8), str(path))
    return str(path)


def _rows(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_nvt_writes_dataset_thermo_plots_and_manifest(structure, tmp_path, capsys):
    out = tmp_path / "nvt"
    args = ["generate", "md", "--structure", structure, "--protocol", "nvt", "--temperature", "300",
            "--steps", "200", "--record-every", "50", "--threads", "1", "--seed", "3", "--out", str(out)]
    assert main(args) == 0
    assert "atom-steps/s" in capsys.readouterr().out
    names = {p.name for p in out.iterdir()}
    assert {"manifest.json", "thermo.csv", "thermo.png", "metadata.json", "log.lammps"} <= names
    assert any(n.startswith("data-") and n.endswith(".tfrecord.gz") for n in names)
    assert not any(n.endswith(".tmp") or ".tmp-" in n for n in names)
    rows = _rows(out / "thermo.csv")
    assert [int(r["step"]) for r in rows] == [0, 50, 100, 150, 200]
    assert float(rows[0]["temperature_K"]) == pytest.approx(300.0)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["protocol"]["protocol"] == "nvt" and manifest["seed"] == 3
    assert manifest["speed_atom_steps_per_s"] > 0 and manifest["n_frames"] == 5
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["n_frames"] == 5 and metadata["source"]["protocol"]["protocol"] == "nvt"
    # final.extxyz: the last recorded frame, velocities included, ready to restart from
    final = read_structure(out / "final.extxyz")
    assert final.info["step"] == 200 and len(final) == len(read_structure(structure))
    assert temperature_k(final.velocities, final.masses) == pytest.approx(float(rows[-1]["temperature_K"]), rel=1e-3)
    assert "final.extxyz" in manifest["files"]
    # A non-empty output directory is refused without --overwrite.
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error:") and "--overwrite" in err and "\n" not in err
    assert main(args + ["--overwrite"]) == 0


def test_tension_is_capped_by_steps_and_writes_the_curve(structure, tmp_path):
    out = tmp_path / "tension"
    assert main(["generate", "md", "--structure", structure, "--protocol", "tension", "--temperature", "4.2",
                 "--strain-rate", "0.1", "--relax-ps", "0.1", "--steps", "400", "--record-every", "50",
                 "--threads", "1", "--out", str(out)]) == 0
    curve = _rows(out / "stress_strain.csv")
    assert [int(r["step"]) for r in curve] == [100, 150, 200, 250, 300, 350, 400]
    assert float(curve[-1]["strain"]) == pytest.approx(0.1 * 0.299, rel=1e-6)  # 299 deformation steps
    assert float(curve[-1]["stress_GPa"]) > 15.0
    assert (out / "stress_strain.png").read_bytes()[:4] == b"\x89PNG"
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["summary"]["youngs_modulus_GPa"] is not None


def test_bursts_record_sparsely_and_windows_never_span_a_gap(structure, tmp_path):
    from sagesnet_tf.pipelines import reader
    from sagesnet_tf.training.md_batches import MDWindows, Segment

    out = tmp_path / "bursts"
    assert main(["generate", "md", "--structure", structure, "--protocol", "nvt", "--temperature", "300",
                 "--steps", "200", "--record-every", "2", "--burst-frames", "3", "--burst-every", "50",
                 "--threads", "1", "--out", str(out)]) == 0
    kept = [0, 2, 4, 50, 52, 54, 100, 102, 104, 150, 152, 154, 200]
    assert [int(r["step"]) for r in _rows(out / "thermo.csv")] == kept
    metadata = json.loads((out / "metadata.json").read_text())
    assert metadata["record_stride_steps"] == 2 and metadata["n_frames"] == len(kept)
    assert metadata["source"]["burst"] == {"frames": 3, "every_steps": 50}
    # per-stride displacements: 2 pairs in each of the 4 full bursts, none across a gap (< 0.2 Å in 2 fs)
    assert metadata["statistics"]["displacements"]["count"] == 8 * 160
    assert max(metadata["statistics"]["displacements"]["std"]) < 0.1
    windows = [w["step"].numpy().tolist() for w in reader.window_dataset(str(out), window=3)]
    assert windows == [[0, 2, 4], [50, 52, 54], [100, 102, 104], [150, 152, 154]]
    assert len(list(reader.window_dataset(str(out), window=2))) == 8
    traj = next(iter(reader.read_trajectories(str(out))))
    md_windows = MDWindows([Segment(traj, 0, traj.n_frames, "bursts")], 3, ("C", "H"))
    picks, _ = md_windows.draw(np.random.default_rng(0), 64)
    assert sorted(set(traj.step[picks].tolist())) == [0, 50, 100, 150]  # window starts: whole bursts only
    with pytest.raises(SagesnetError, match="no 5 consecutive records"):
        MDWindows([Segment(traj, 0, traj.n_frames, "bursts")], 5, ("C", "H"))


@pytest.mark.parametrize("extra, message", [
    (["--protocol", "nvt", "--steps", "10", "--burst-frames", "3"], "--burst-every together"),
    (["--protocol", "nvt", "--steps", "10", "--record-every", "2", "--burst-frames", "3", "--burst-every", "5"],
     "do not fit a record stride"),
    (["--protocol", "nvt"], "--steps"),
    (["--protocol", "nvt", "--steps", "10", "--strain-rate", "0.1"], "does not take strain_rate_per_ps"),
    (["--protocol", "tension", "--axis", "y", "--strain-rate", "-1"], "strain rate"),
])
def test_bad_options_are_one_line_errors(structure, tmp_path, capsys, extra, message):
    code = main(["generate", "md", "--structure", structure, "--temperature", "300", *extra,
                 "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert not (tmp_path / "o").exists()
