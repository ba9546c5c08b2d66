"""``sagesnet-tf explain``: the sensitivity grid (a gradient through the learned step, checked against
finite differences), the latent clusters (seeded k-means), the cut geometry they are measured
against, and one-line errors."""

import csv
import json

import numpy as np
import pytest

from sagesnet_tf.analysis.explain.clusters import kmeans, purity
from sagesnet_tf.analysis.explain.geometry import LABELS, atom_labels, frame_corners, kirigami_geometry
from sagesnet_tf.cli.main import main
from sagesnet_tf.io import read_extxyz_frames, write_extxyz_frames, write_structure
from sagesnet_tf.structures import kirigami, kirigami_cut_corners

PATTERN = "010000000001000"


@pytest.fixture(scope="module")
def ribbon_file(tmp_path_factory):
    """A 7 × 6 kirigami ribbon (the training size) as ``build kirigami`` writes it, two frames: the
    built ribbon and the same stretched 5 % along x with small velocities."""
    atoms = kirigami(PATTERN, 7, 6, periodic_y=True)
    stretched = atoms.copy()
    stretched.positions[:, 0] *= 1.05
    stretched.cell[0, 0] *= 1.05
    stretched.velocities = np.random.default_rng(0).normal(0.0, 0.5, stretched.positions.shape)
    stretched.info["strain"] = 0.05
    path = tmp_path_factory.mktemp("explain") / "ribbon.extxyz"
    write_extxyz_frames(path, [atoms, stretched])
    return path


@pytest.fixture(scope="module")
def explained(ribbon_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("explain_out")
    rc = main(["explain", "--structure", str(ribbon_file), "--horizon-ps", "0.002", "--strain-rate", "0.05",
               "--temperature", "4.2", "--clusters", "3", "--seed", "1", "--latent", "stepped", "--out", str(out)])
    assert rc == 0
    return out


def test_explain_writes_every_output(explained):
    for name in ("sensitivity.csv", "sensitivity.png", "clusters.extxyz", "clusters.png", "explain.json"):
        assert (explained / name).stat().st_size > 0, name
    summary = json.loads((explained / "explain.json").read_text())
    s = summary["sensitivity"]
    assert summary["frame"] == 1 and summary["n_frames"] == 2 and s["steps"] == 1
    assert 0.0 <= s["top_within_radius"] <= s["top_within_radius_attainable"] <= 1.0
    assert 0.0 < s["occupied_within_radius"] < 1.0 and 0.0 <= s["top_atoms_within_radius"] <= 1.0
    assert summary["kirigami"]["pattern"] == PATTERN and len(summary["kirigami"]["corners_A"]) == 8
    c = summary["clusters"]
    assert c["k"] == 3 and c["latent"] == "stepped" and c["majority_baseline"] <= c["purity"] <= 1.0
    assert sum(sum(row.values()) for row in c["table"].values()) == sum(c["label_atoms"])


def test_sensitivity_is_finite_non_negative_and_nonzero_on_the_atoms(explained):
    with open(explained / "sensitivity.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["ix", "iy", "iz", "x_A", "y_A", "n_atoms", "sensitivity"]
    values = np.array([float(r["sensitivity"]) for r in rows])
    atoms = np.array([int(r["n_atoms"]) for r in rows])
    assert np.all(np.isfinite(values)) and np.all(values >= 0)
    assert values.max() > 0 and np.all(values[atoms == 0] == 0) and np.all(values[atoms > 0] > 0)
    assert atoms.sum() == 164


def test_clusters_extxyz_colours_every_atom_of_every_frame(explained, ribbon_file):
    frames = read_extxyz_frames(explained / "clusters.extxyz")
    assert len(frames) == 2
    for frame, original in zip(frames, read_extxyz_frames(ribbon_file)):
        columns = frame.info["per_atom"]
        assert set(np.unique(columns["cluster"])) <= {0, 1, 2}
        assert set(np.unique(columns["geometry"])) <= set(range(len(LABELS)))
        np.testing.assert_allclose(frame.positions, original.positions)


def test_sensitivity_gradient_matches_finite_differences(ribbon_file):
    """∂σ/∂r through one learned step (second order: the step's forces are a gradient) against a
    central difference of σ along the gradient of the most sensitive atom."""
    import tensorflow as tf

    from sagesnet_tf.export import model_from_savedmodel
    from sagesnet_tf.savedmodel import resolve_model_dir
    from sagesnet_tf.simulator import LearnedSimulator

    frame = read_extxyz_frames(ribbon_file)[1]
    simulator = LearnedSimulator(model_from_savedmodel(resolve_model_dir(None))[0])
    species, box = tf.zeros((1, len(frame)), tf.int32), tf.constant(np.diag(frame.cell)[None], tf.float32)
    env = tf.constant([[4.2, 0.0, 0.05, 0.05]], tf.float32)

    def stress(positions):
        out = simulator.step(positions, tf.constant(frame.velocities[None], tf.float32), species, box, env)
        return simulator.stress(out["latent_next"], out["positions"], out["velocities"], species, box)[0, 0]

    start = tf.constant(frame.positions[None], tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(start)
        value = stress(start)
    gradient = tape.gradient(value, start)[0].numpy()
    atom = int(np.argmax(np.linalg.norm(gradient, axis=1)))
    direction = gradient[atom] / np.linalg.norm(gradient[atom])
    eps = 3e-3
    shift = np.zeros_like(frame.positions)
    shift[atom] = eps * direction
    difference = (float(stress(start + shift[None])) - float(stress(start - shift[None]))) / (2 * eps)
    assert difference == pytest.approx(np.linalg.norm(gradient[atom]), rel=0.03)


def test_cell_latents_of_the_encoder_and_the_step(ribbon_file):
    from sagesnet_tf.analysis.explain.clusters import cell_latents
    from sagesnet_tf.export import model_from_savedmodel
    from sagesnet_tf.savedmodel import resolve_model_dir
    from sagesnet_tf.simulator import LearnedSimulator

    frame = read_extxyz_frames(ribbon_file)[1]
    simulator = LearnedSimulator(model_from_savedmodel(resolve_model_dir(None))[0])
    args = (frame.positions, frame.velocities, np.zeros(len(frame), np.int32), np.diag(frame.cell))
    encoded, rows = cell_latents(simulator, *args)
    stepped, same_rows = cell_latents(simulator, *args, env=np.array([4.2, 0.0, 0.05, 0.05], np.float32))
    np.testing.assert_array_equal(rows, same_rows)
    assert encoded.shape == stepped.shape and encoded.shape[0] == rows.max() + 1 < len(frame)
    assert not np.allclose(encoded, stepped)


def test_kmeans_is_deterministic_with_a_seed_and_finds_separated_groups():
    rng = np.random.default_rng(3)
    points = np.concatenate([rng.normal(centre, 0.1, (40, 5)) for centre in (0.0, 3.0, -3.0)])
    truth = np.repeat([0, 1, 2], 40)
    first, centres = kmeans(points, 3, seed=7)
    again, _ = kmeans(points, 3, seed=7)
    np.testing.assert_array_equal(first, again)
    assert first[0] == 0 and centres.shape == (3, 5)
    assert purity(first, truth, 3, 3)[0] == 1.0
    assert purity(np.zeros(120, int), truth, 1, 3)[0] == pytest.approx(1 / 3)


def test_cut_corners_of_joined_slits_and_at_the_edges():
    # one slit: 4 corners; two joined rows: one slit of 4 corners; a slit from the edge: its 2 inner corners
    assert kirigami_cut_corners("010000000000000", 7, 6).shape == (4, 2)
    joined = kirigami_cut_corners("011000000000000", 7, 6)
    assert joined.shape == (4, 2) and np.ptp(joined[:, 1]) == pytest.approx(2 * 6 * np.sqrt(3) * 1.397 / 5)
    assert kirigami_cut_corners("100000000000000", 7, 6).shape == (2, 2)
    assert kirigami_cut_corners("000000000000000", 7, 6).shape == (0, 2)


def test_frame_corners_move_with_the_ribbon():
    atoms = kirigami(PATTERN, 7, 6, periodic_y=True)
    corners = kirigami_cut_corners(PATTERN, 7, 6)
    geometry = kirigami_geometry(atoms)
    np.testing.assert_allclose(frame_corners(atoms, geometry), corners, atol=1e-9)
    moved = atoms.copy()
    moved.positions = moved.positions * [1.1, 1.0, 1.0] + [0.0, 0.7, 0.0]
    moved.cell[0, 0] *= 1.1
    np.testing.assert_allclose(frame_corners(moved, geometry), corners * [1.1, 1.0] + [0.0, 0.7], atol=1e-9)
    labels = atom_labels(atoms, corners)
    assert {LABELS[k] for k in np.unique(labels)} == {"bulk", "edge", "cut-tip"}


def test_structure_of_another_ribbon_is_one_line(tmp_path, capsys):
    path = tmp_path / "other.extxyz"
    write_structure(kirigami("000001000000000", 7, 6, periodic_y=True), path)
    rc = main(["explain", "--structure", str(path), "--pattern", PATTERN, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "are not those of kirigami pattern" in err


@pytest.mark.parametrize("args,expected", [
    (["--frame", "5"], "is not a frame of"),
    (["--horizon-ps", "-1"], "--horizon-ps"),
    (["--horizon-ps", "nan"], "--horizon-ps"),
    (["--horizon-ps", "10"], "more than the 250"),
    (["--clusters", "0"], "--clusters"),
    (["--strain-rate", "5"], "--strain-rate"),
    (["--latent", "decoder"], "--latent"),
])
def test_bad_options_are_one_line(ribbon_file, tmp_path, capsys, args, expected):
    rc = main(["explain", "--structure", str(ribbon_file), *args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("Error:") and expected in err


@pytest.mark.parametrize("text", ["3\nnot a frame\nC 0 0 0\n", "",
                                  "2\nLattice=\"1 0 0 0 1 0 0 0 1\" pbc=\"T T T\"\nC 0 0 0\nC 0 0 0.1\n"])
def test_bad_structure_is_one_line(tmp_path, capsys, text):
    path = tmp_path / "bad.extxyz"
    path.write_text(text)
    rc = main(["explain", "--structure", str(path), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and err.startswith("Error:")
    assert not (tmp_path / "o").exists()
