"""simulate CLI end to end on examples/graphene.extxyz with small exported models."""

import csv
import json
import os

import numpy as np
import pytest

from sagesnet_tf.cli.main import main
from sagesnet_tf.analysis.stress_strain import nominal_thickness, nominal_width, sheet_stress_gpa
from sagesnet_tf.export import export_model
from sagesnet_tf.io import read_structure, write_structure
from sagesnet_tf.io.extxyz import read_extxyz_frames
from sagesnet_tf.layers.pair_stress import EV_TO_BAR_A3
from sagesnet_tf.model import SagesnetConfig, SagesnetModel
from sagesnet_tf import simulate as simulate_module
from sagesnet_tf.simulate import EQUILIBRATION_FILE, THERMO_COLUMNS
from sagesnet_tf.structures import ribbon
from sagesnet_tf.thermo import MVV2E, berendsen_factor, berendsen_rescale, maxwell_boltzmann_velocities

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "graphene.extxyz")


def make_model(weight_std: float, coarse_levels=(), pair_cutoff: float = 0.0) -> SagesnetModel:
    # Δ = 1 fs and 3 slots: constant-velocity motion over a test's steps cannot crowd 4 atoms together
    model = SagesnetModel(SagesnetConfig(latent_dim=8, hidden=8, depth=1, encoder_layers=1, coarse_levels=coarse_levels,
                                         slots=3, delta_steps=1, pair_cutoff=pair_cutoff, pair_stress=pair_cutoff > 0))
    model.build()
    if weight_std:
        rng = np.random.default_rng(0)
        model.set_weights([rng.normal(0, weight_std, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    return {"identity": export_model(make_model(0.0), base / "identity"),
            "huge": export_model(make_model(3.0), base / "huge"),
            "coarse": export_model(make_model(0.0, ({"factor": (2, 2, 1), "steps": 2},)), base / "coarse"),
            "pair": export_model(make_model(0.0, ({"factor": (2, 2, 1), "steps": 2},), pair_cutoff=2.7), base / "pair"),
            "softening": export_model(softening_model(), base / "softening")}


def softening_model() -> SagesnetModel:
    """Untrained dynamics whose C–C bonds carry tension only near 1.4 Å: stretched, the sheet's
    stress peaks at once and then falls."""
    model = make_model(0.0, pair_cutoff=2.7)
    kernel = np.zeros(model.pair_stress.tension.kernel.shape, np.float32)
    kernel[2 * int(np.argmin(np.abs(model.pair_stress.grid_pairs.centers - 1.4))), 0] = 1.0  # carbon pairs at 1.4 Å
    model.pair_stress.tension.kernel.assign(kernel)
    return model


def read_thermo(path):
    with open(path) as handle:
        return list(csv.DictReader(handle))


def test_simulate_steps_writes_outputs(models, tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["simulate", "--model", str(models["identity"].parent), "--structure", EXAMPLE, "--steps", "20",
               "--every", "5", "--temperature", "300", "--ensemble", "nve", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    rows = read_thermo(out / "thermo.csv")
    assert tuple(rows[0]) == THERMO_COLUMNS
    assert [int(r["step"]) for r in rows] == [0, 5, 10, 15, 20]
    frames = read_extxyz_frames(out / "trajectory.extxyz")
    start = read_structure(EXAMPLE)
    assert len(frames) == 5
    assert all(len(f) == len(start) for f in frames) and all(int(r["n_atoms"]) == len(start) for r in rows)
    np.testing.assert_array_equal(frames[-1].ids, start.ids)
    # the example has no velocities: they start Maxwell-Boltzmann at --temperature
    assert float(rows[0]["temperature_K"]) == pytest.approx(300.0, rel=1e-4)
    np.testing.assert_allclose(frames[0].positions, start.positions, atol=1e-6)
    # the untrained model moves atoms at constant velocity (its learned corrections start at zero)
    delta = json.loads((out / "manifest.json").read_text())["model_metadata"]["delta_ps"]
    np.testing.assert_allclose(frames[-1].velocities, frames[0].velocities, atol=1e-4)
    np.testing.assert_allclose(frames[-1].positions, start.positions + 20 * delta * frames[0].velocities, atol=1e-3)
    with open(out / "trajectory.extxyz") as handle:
        header = [handle.readline(), handle.readline()][1]
    assert "uncertainty:R:1" in header and "velo:R:3" in header and "units=metal" in header
    assert (out / "thermo.png").stat().st_size > 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "completed" and manifest["steps_done"] == 20
    assert manifest["ensemble"] == "nve" and manifest["thermostat"] is None
    assert {r["ensemble"] for r in rows} == {"nve"} and {r["scale"] for r in rows} == {"0"}

    # a non-empty --out is refused without --overwrite, accepted with it
    assert main(["simulate", "--model", str(models["identity"].parent), "--structure", EXAMPLE, "--steps", "2",
                 "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["simulate", "--model", str(models["identity"].parent), "--structure", EXAMPLE, "--steps", "2",
                 "--overwrite", "--out", str(out)]) == 0
    assert len(read_thermo(out / "thermo.csv")) == 2


def test_berendsen_factor():
    assert berendsen_factor(300.0, 300.0, 0.01, 0.1) == pytest.approx(1.0)
    assert berendsen_factor(400.0, 300.0, 0.01, 0.1) < 1.0 < berendsen_factor(200.0, 300.0, 0.01, 0.1)
    assert berendsen_factor(1.0, 300.0, 0.01, 0.01) == 1.25  # clipped
    assert berendsen_factor(0.0, 300.0, 0.01, 0.1) == 1.0


def test_thermostat_pulls_temperature_to_target(models, tmp_path):
    """The untrained model keeps velocities; the thermostat alone takes 300 K to 600 K."""
    out = tmp_path / "thermostat"
    rc = main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--steps", "40",
               "--every", "10", "--temperature", "600", "--thermostat", "berendsen", "--thermostat-ps", "0.01",
               "--seed", "3", "--out", str(out)])
    assert rc == 0
    temps = [float(r["temperature_K"]) for r in read_thermo(out / "thermo.csv")]
    assert temps[0] == pytest.approx(600.0, rel=1e-4)  # drawn at the target
    out2 = tmp_path / "heat"
    start = read_structure(EXAMPLE)
    start.velocities = maxwell_boltzmann_velocities(start.masses, 300.0, seed=1)
    hot = tmp_path / "start300.extxyz"
    write_structure(start, hot)
    assert main(["simulate", "--model", str(models["identity"]), "--structure", str(hot), "--steps", "40",
                 "--every", "10", "--temperature", "600", "--thermostat", "berendsen", "--thermostat-ps", "0.01",
                 "--out", str(out2)]) == 0
    temps = [float(r["temperature_K"]) for r in read_thermo(out2 / "thermo.csv")]
    assert temps[0] == pytest.approx(300.0, rel=1e-4)
    assert all(b > a for a, b in zip(temps, temps[1:])) and 550.0 < temps[-1] < 620.0
    manifest = json.loads((out2 / "manifest.json").read_text())
    assert manifest["ensemble"] == "nvt" and manifest["thermostat"] == {"kind": "berendsen", "tau_ps": 0.01, "seed": 0}
    assert manifest["initial_velocities"] == "from the structure"


def test_thermostat_rescales_once_per_tenth_of_tau(models, tmp_path):
    """τ = 0.05 ps, Δ = 1 fs: the velocities are rescaled every 5 steps, by the factor for 5 fs."""
    start = read_structure(EXAMPLE)
    start.velocities = maxwell_boltzmann_velocities(start.masses, 300.0, seed=1)
    warm = tmp_path / "start300.extxyz"
    write_structure(start, warm)
    out = tmp_path / "chunked"
    assert main(["simulate", "--model", str(models["identity"]), "--structure", str(warm), "--steps", "10",
                 "--every", "10", "--temperature", "600", "--thermostat", "berendsen", "--thermostat-ps", "0.05",
                 "--out", str(out)]) == 0
    temps = [float(r["temperature_K"]) for r in read_thermo(out / "thermo.csv")]
    expected = 300.0
    for _ in range(2):  # two calls of 5 steps (the untrained model keeps the velocities)
        expected *= berendsen_factor(expected, 600.0, 0.005, 0.05) ** 2
    assert temps[-1] == pytest.approx(expected, rel=1e-3)
    assert temps[-1] != pytest.approx(300.0 * berendsen_factor(300.0, 600.0, 0.01, 0.05) ** 2, rel=1e-3)


def test_tension_reaches_max_strain(models, tmp_path):
    out = tmp_path / "tension"
    rc = main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--strain-rate", "1.0",
               "--axis", "x", "--max-strain", "0.05", "--every", "2", "--equilibrate-ps", "0", "--out", str(out)])
    assert rc == 0
    rows = read_thermo(out / "thermo.csv")
    strain = float(rows[-1]["strain"])
    assert strain == pytest.approx(0.05, abs=1e-3)
    start = read_structure(EXAMPLE)
    last = read_extxyz_frames(out / "trajectory.extxyz")[-1]
    assert last.cell[0, 0] == pytest.approx(start.cell[0, 0] * (1 + strain), rel=1e-4)
    assert last.cell[1, 1] == pytest.approx(start.cell[1, 1], rel=1e-6)
    assert (out / "stress_strain.png").is_file()


def test_divergence_keeps_partial_trajectory(models, tmp_path, capsys):
    out = tmp_path / "diverge"
    rc = main(["simulate", "--model", str(models["huge"]), "--structure", EXAMPLE, "--steps", "50", "--every", "1",
               "--temperature", "300", "--ensemble", "nve", "--out", str(out)])
    err = capsys.readouterr().err
    errors = [line for line in err.replace("\r", "\n").splitlines() if line.startswith("Error:")]
    assert rc == 2 and len(errors) == 1 and "diverged" in errors[0] and "trajectory so far" in errors[0]
    rows = read_thermo(out / "thermo.csv")
    assert 2 <= len(rows) <= 51
    assert len(read_extxyz_frames(out / "trajectory.extxyz")) == len(rows)
    assert json.loads((out / "manifest.json").read_text())["status"].startswith("diverged")


def test_bad_requests(models, tmp_path, capsys):
    assert main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--out", str(tmp_path / "a")]) == 2
    assert "at least one" in capsys.readouterr().err
    assert main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--steps", "1",
                 "--scale", "1", "--out", str(tmp_path / "b")]) == 2
    assert "--scale" in capsys.readouterr().err
    assert main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--steps", "1",
                 "--thermostat-ps", "0.1", "--out", str(tmp_path / "d")]) == 2
    assert "--temperature" in capsys.readouterr().err
    assert main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--steps", "1",
                 "--temperature", "300", "--ensemble", "nve", "--thermostat-ps", "0.1",
                 "--out", str(tmp_path / "f")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--ensemble nve" in errors[0]
    assert main(["simulate", "--model", str(models["coarse"]), "--structure", EXAMPLE, "--steps", "2",
                 "--scale", "1", "--mirror-average", "--out", str(tmp_path / "m")]) == 2
    assert "--mirror-average runs the fine scale only" in capsys.readouterr().err
    ribbon_file = tmp_path / "ribbon.extxyz"
    write_structure(ribbon(4, 3), ribbon_file)  # open along y; the test models' grid is periodic in y
    assert main(["simulate", "--model", str(models["identity"]), "--structure", str(ribbon_file), "--steps", "1",
                 "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "periodic along y but the structure is open along y" in err and "--periodic-y" in err
    assert main(["simulate", "--model", str(tmp_path / "nothing"), "--structure", EXAMPLE, "--steps", "1",
                 "--out", str(tmp_path / "c")]) == 2


def test_mirror_average_leaves_constant_velocity_motion_unchanged(models, tmp_path):
    """The identity model moves atoms at constant velocity, a mirror-symmetric motion: averaging each
    step with the mirrored step of the mirror image (through the box's mid-plane) gives the same
    trajectory, so the mirror and its inverse match."""
    runs = {}
    for flag in ([], ["--mirror-average"]):
        out = tmp_path / ("mirror" if flag else "plain")
        assert main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--steps", "4",
                     "--every", "2", "--temperature", "300", "--ensemble", "nve", "--out", str(out), *flag]) == 0
        runs[bool(flag)] = read_extxyz_frames(out / "trajectory.extxyz")
        assert json.loads((out / "manifest.json").read_text())["mirror_average"] is bool(flag)
    assert len(runs[True]) == len(runs[False]) == 3
    for plain, mirrored in zip(runs[False], runs[True]):
        np.testing.assert_allclose(mirrored.positions, plain.positions, atol=1e-4)
        np.testing.assert_allclose(mirrored.velocities, plain.velocities, atol=1e-4)
    assert not np.allclose(runs[False][-1].positions, runs[False][0].positions)  # the atoms did move


def test_several_structures_run_into_their_own_directories(models, tmp_path):
    second = tmp_path / "sheet_b.extxyz"
    write_structure(read_structure(EXAMPLE), second)
    out = tmp_path / "many"
    assert main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--structure", str(second),
                 "--steps", "4", "--every", "2", "--out", str(out)]) == 0
    for name in ("graphene", "sheet_b"):
        assert [int(r["step"]) for r in read_thermo(out / name / "thermo.csv")] == [0, 2, 4]
    assert main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--structure", EXAMPLE,
                 "--steps", "1", "--out", str(tmp_path / "dup")]) == 2


def test_stop_past_peak_ends_a_tension_run_once_the_stress_has_fallen(models, tmp_path, capsys):
    out = tmp_path / "stop"
    assert main(["simulate", "--model", str(models["softening"]), "--structure", EXAMPLE, "--strain-rate", "1.0",
                 "--max-strain", "0.3", "--every", "5", "--stop-past-peak", "--equilibrate-ps", "0",
                 "--out", str(out)]) == 0, \
        capsys.readouterr().err
    manifest = json.loads((out / "manifest.json").read_text())
    stress = [float(r["stress_xx_GPa"]) for r in read_thermo(out / "thermo.csv")][1:]
    assert manifest["status"] == "completed: stopped past the stress peak"
    assert manifest["final_strain"] < 0.2 and stress[-1] <= 0.7 * max(stress)
    assert main(["simulate", "--model", str(models["softening"]), "--structure", EXAMPLE, "--steps", "2",
                 "--stop-past-peak", "--out", str(tmp_path / "no_rate")]) == 2
    assert "--strain-rate" in capsys.readouterr().err


def test_a_pair_model_reports_the_stress_of_its_atoms_at_both_scales(models, tmp_path, capsys):
    # untrained bond tensions: the stress is the atoms' kinetic part alone, −Σ m v_x² per sheet volume
    start = read_structure(EXAMPLE)
    width, thickness = nominal_width(start, "x"), nominal_thickness(start)
    for scale in ("0", "1"):
        out = tmp_path / f"scale{scale}"
        assert main(["simulate", "--model", str(models["pair"]), "--structure", EXAMPLE, "--temperature", "300",
                     "--ensemble", "nve", "--strain-rate", "1.0", "--axis", "x", "--steps", "8", "--every", "2",
                     "--scale", scale, "--equilibrate-ps", "0",
                     "--out", str(out)]) == 0, capsys.readouterr().err
        rows, frames = read_thermo(out / "thermo.csv"), read_extxyz_frames(out / "trajectory.extxyz")
        assert len(rows) == len(frames) >= 4
        for row, frame in list(zip(rows, frames))[1:]:
            kinetic = -(frame.masses * frame.velocities[:, 0] ** 2).sum() * MVV2E * EV_TO_BAR_A3
            expected = sheet_stress_gpa(kinetic, frame.cell[0, 0], width, thickness)
            assert expected < -0.1
            assert float(row["stress_xx_GPa"]) == pytest.approx(expected, rel=1e-3)


def test_coarse_scale_runs_whole_coarse_steps_and_decodes_every_atom(models, tmp_path, capsys):
    fine, coarse = tmp_path / "fine", tmp_path / "coarse"
    common = ["--structure", EXAMPLE, "--temperature", "300", "--ensemble", "nve",
              "--model", str(models["coarse"].parent)]
    assert main(["simulate", *common, "--steps", "19", "--every", "19", "--out", str(fine)]) == 0
    assert main(["simulate", *common, "--scale", "1", "--steps", "20", "--every", "4", "--out", str(coarse)]) == 0, \
        capsys.readouterr().err
    rows = read_thermo(coarse / "thermo.csv")
    # one warm-up fine step builds the first 2-frame window, then 2 coarse steps (4 Δ) per frame
    assert [int(r["step"]) for r in rows] == [0, 5, 9, 13, 17, 19]
    manifest = json.loads((coarse / "manifest.json").read_text())
    assert manifest["scale"] == 1 and manifest["model_steps_per_scale_step"] == 2
    frames = read_extxyz_frames(coarse / "trajectory.extxyz")
    start = read_structure(EXAMPLE)
    assert all(len(f) == len(start) for f in frames)
    np.testing.assert_array_equal(frames[-1].ids, start.ids)
    # an untrained model's atom decoder adds no correction: both scales move atoms at constant
    # velocity, so after 19 Δ they agree
    last_fine = read_extxyz_frames(fine / "trajectory.extxyz")[-1]
    np.testing.assert_allclose(frames[-1].positions, last_fine.positions, atol=1e-3)
    moved = np.abs(frames[-1].positions - frames[0].positions).max()
    assert moved > 1e-3


def test_scale_beyond_the_models_levels_is_refused(models, tmp_path, capsys):
    rc = main(["simulate", "--structure", EXAMPLE, "--steps", "4", "--scale", "1", "--temperature", "300",
               "--model", str(models["identity"].parent), "--out", str(tmp_path / "x")])
    assert rc != 0 and "--scale 1" in capsys.readouterr().err


def test_berendsen_rescale_scales_the_motion_about_the_centre_of_mass():
    masses = np.array([12.011] * 40 + [1.008] * 8)
    internal = maxwell_boltzmann_velocities(masses, 150.0, seed=3)  # zero momentum, 150 K
    drift = np.array([0.0, 1.0, -3.0])
    v = (internal + drift).astype(np.float32)
    out = berendsen_rescale(v, masses, 300.0, 0.01, 0.1)
    lam = berendsen_factor(150.0, 300.0, 0.01, 0.1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, drift + lam * internal, atol=1e-4)  # drift kept, internal motion heated
    frames = berendsen_rescale(np.stack([v, v]), masses, 300.0, 0.01, 0.1)  # (frames, N, 3): one λ
    np.testing.assert_allclose(frames[0], out, atol=1e-6)


def test_a_stretching_run_starts_from_an_equilibration_with_the_box_held(models, tmp_path, monkeypatch, capsys):
    """The default equilibration (shortened here to 4 Δ) runs before a run with a strain rate, the box
    held; the run's outputs start from its end at step 0, strain 0; its rows go to equilibration.csv."""
    monkeypatch.setattr(simulate_module, "DEFAULT_EQUILIBRATE_PS", 0.004)
    out = tmp_path / "stretch"
    assert main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--temperature", "300",
                 "--ensemble", "nve", "--strain-rate", "1.0", "--max-strain", "0.004", "--every", "2",
                 "--out", str(out)]) == 0, capsys.readouterr().err
    assert "equilibrating 0.004 ps (4 model steps) with the box held" in capsys.readouterr().err
    start = read_structure(EXAMPLE)
    eq_rows, rows = read_thermo(out / EQUILIBRATION_FILE), read_thermo(out / "thermo.csv")
    assert tuple(eq_rows[0]) == THERMO_COLUMNS
    assert [int(r["step"]) for r in eq_rows] == [0, 2, 4] and {float(r["strain"]) for r in eq_rows} == {0.0}
    assert [int(r["step"]) for r in rows] == [0, 2, 4] and float(rows[0]["strain"]) == 0.0
    assert float(rows[-1]["strain"]) == pytest.approx(0.004, abs=1e-5)  # the run's own max strain
    frames = read_extxyz_frames(out / "trajectory.extxyz")
    # the untrained model moves atoms at constant velocity: the run starts 4 Δ on, in the input's box
    np.testing.assert_allclose(frames[0].positions, start.positions + 0.004 * frames[0].velocities, atol=1e-3)
    np.testing.assert_allclose(frames[0].cell, start.cell, atol=1e-5)
    assert frames[0].info["step"] == 0 and frames[0].info["time_ps"] == 0.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["equilibration"].pop("wall_s") > 0
    assert manifest["equilibration"] == {"ps": 0.004, "steps": 4, "steps_done": 4, "box": "held",
                                         "file": EQUILIBRATION_FILE}
    assert manifest["steps_done"] == 4 and manifest["options"]["equilibrate_ps"] is None

    # --equilibrate-ps 0 turns it off: the run starts from the structure
    off = tmp_path / "off"
    assert main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--temperature", "300",
                 "--ensemble", "nve", "--strain-rate", "1.0", "--max-strain", "0.004", "--every", "2",
                 "--equilibrate-ps", "0", "--out", str(off)]) == 0
    assert not (off / EQUILIBRATION_FILE).exists()
    assert json.loads((off / "manifest.json").read_text())["equilibration"] is None
    np.testing.assert_allclose(read_extxyz_frames(off / "trajectory.extxyz")[0].positions, start.positions, atol=1e-6)


def test_the_equilibration_runs_at_the_coarse_scale_too(models, tmp_path, capsys):
    """--scale 1 (coarse steps of 2 Δ): 0.005 ps rounds up to 6 Δ; the first window takes one fine
    step, so the equilibration ends at step 5, and the run goes on from that window."""
    out = tmp_path / "coarse"
    assert main(["simulate", "--model", str(models["coarse"].parent), "--structure", EXAMPLE, "--temperature", "300",
                 "--ensemble", "nve", "--scale", "1", "--strain-rate", "1.0", "--equilibrate-ps", "0.005",
                 "--steps", "8", "--every", "4", "--out", str(out)]) == 0, capsys.readouterr().err
    assert [int(r["step"]) for r in read_thermo(out / EQUILIBRATION_FILE)] == [0, 5]
    rows = read_thermo(out / "thermo.csv")
    assert [int(r["step"]) for r in rows] == [0, 4, 8]
    assert float(rows[-1]["strain"]) == pytest.approx(0.008, abs=1e-5)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["equilibration"]["steps"] == 6 and manifest["equilibration"]["steps_done"] == 5


def test_a_run_without_strain_rate_has_no_equilibration_unless_asked(models, tmp_path, capsys):
    runs = {}
    for name, flag in (("default", []), ("zero", ["--equilibrate-ps", "0"]), ("asked", ["--equilibrate-ps", "0.002"])):
        out = runs[name] = tmp_path / name
        assert main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--temperature", "300",
                     "--steps", "4", "--every", "2", "--out", str(out), *flag]) == 0, capsys.readouterr().err
    for name in ("trajectory.extxyz", "thermo.csv"):  # the default is no equilibration: the same bytes
        assert (runs["default"] / name).read_bytes() == (runs["zero"] / name).read_bytes()
    assert not (runs["default"] / EQUILIBRATION_FILE).exists()
    assert json.loads((runs["default"] / "manifest.json").read_text())["equilibration"] is None
    assert [int(r["step"]) for r in read_thermo(runs["asked"] / EQUILIBRATION_FILE)] == [0, 2]
    assert [int(r["step"]) for r in read_thermo(runs["asked"] / "thermo.csv")] == [0, 2, 4]


def test_a_divergence_in_the_equilibration_stops_before_the_run(models, tmp_path, capsys):
    out = tmp_path / "diverge"
    rc = main(["simulate", "--model", str(models["huge"]), "--structure", EXAMPLE, "--steps", "10", "--every", "1",
               "--temperature", "300", "--ensemble", "nve", "--strain-rate", "0.1", "--equilibrate-ps", "0.05",
               "--out", str(out)])
    errors = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines() if line.startswith("Error:")]
    assert rc == 2 and len(errors) == 1 and "diverged at equilibration step" in errors[0]
    assert 2 <= len(read_thermo(out / EQUILIBRATION_FILE)) <= 51
    assert read_thermo(out / "thermo.csv") == [] and (out / "thermo.csv").read_text().startswith("step,time_ps,")
    assert not (out / "trajectory.extxyz").exists()
    assert json.loads((out / "manifest.json").read_text())["status"].startswith("diverged")


@pytest.mark.parametrize("value", ["-1", "nan", "inf"])
def test_a_bad_equilibration_is_refused_in_one_line(models, tmp_path, capsys, value):
    assert main(["simulate", "--model", str(models["identity"]), "--structure", EXAMPLE, "--steps", "1",
                 "--strain-rate", "0.1", "--equilibrate-ps", value, "--out", str(tmp_path / "x")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and "--equilibrate-ps" in errors[0], errors
    with pytest.raises(simulate_module.SagesnetError, match="--equilibrate-ps must be a finite number of ps >= 0"):
        simulate_module.simulate(read_structure(EXAMPLE), tmp_path / "y", model=models["identity"], steps=1,
                                 equilibrate_ps=float(value))


def test_the_help_gives_the_default_equilibration(capsys):
    assert main(["simulate", "--help"]) == 0
    assert f"Default: {simulate_module.DEFAULT_EQUILIBRATE_PS:g} ps with a nonzero --strain-rate" in \
        " ".join(capsys.readouterr().out.split())
