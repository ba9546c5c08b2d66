"""run_md physics on tiny real LAMMPS/AIREBO runs (160-atom graphene, 1 thread).

Bounds, stated: NVE at 300 K, 1 fs, 2 ps: total energy stays within 5e-4 eV/atom of its start and
drifts less than 5e-5 eV/atom/ps (linear fit); NVT at 300 K: the mean temperature over the last
half of 3 ps is within 15 K; tension at 4.2 K, 0.1 ps⁻¹: Young's modulus 1.0 TPa ± 20 %.
"""

import numpy as np
import pytest

from sagesnet_tf.analysis.stress_strain import sheet_stress_from_atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.md.engine import LammpsEngine
from sagesnet_tf.md.protocols import NVE, NVT, Tension
from sagesnet_tf.md.recorder import Recorder
from sagesnet_tf.md.run import run_md
from sagesnet_tf.structures import graphene_sheet
from sagesnet_tf.trajectory import ENV_FIELDS

pytestmark = pytest.mark.lammps


@pytest.fixture(scope="module")
def sheet():
    return graphene_sheet(5, 8)  # 160 atoms, 21.0 × 19.4 Å, periodic in-plane, 20 Å along z


def test_nve_conserves_energy(sheet, tmp_path):
    result = run_md(sheet, NVE(300.0, steps=2000), str(tmp_path), record_every=100, threads=1, progress=False)
    e = result.thermo["total_energy_eV"] / len(sheet)
    assert np.abs(e - e[0]).max() < 5e-4
    t = result.thermo["time_ps"]
    slope = np.polyfit(t[1:], e[1:], 1)[0]
    assert abs(slope) < 5e-5
    assert result.speed_atom_steps_per_s > 1e3


def test_nvt_holds_temperature_and_records_consistent_frames(sheet, tmp_path):
    result = run_md(sheet, NVT(300.0, steps=3000), str(tmp_path), record_every=50, threads=1, seed=7,
                    dump=True, progress=False)
    temps = result.thermo["temperature_K"]
    assert temps[0] == pytest.approx(300.0)
    assert abs(temps[len(temps) // 2:].mean() - 300.0) < 15.0
    traj = result.trajectory
    assert traj.n_frames == 61 and traj.positions.shape == (61, 160, 3) and traj.stress.shape == (61, 160, 6)
    np.testing.assert_array_equal(traj.step, np.arange(0, 3001, 50))
    np.testing.assert_allclose(traj.time_ps, traj.step * 1e-3)
    np.testing.assert_allclose(traj.positions[0], sheet.positions, atol=1e-9)
    assert traj.env_fields == ENV_FIELDS
    np.testing.assert_allclose(traj.environment[:, 0], 300.0)
    np.testing.assert_allclose(traj.environment[:, 1:], 0.0)
    # Unwrapped: no atom jumps by a box length between frames (50 fs at 300 K moves < 1 Å).
    assert np.abs(np.diff(traj.positions, axis=0)).max() < 1.0
    # Per-atom stress × volume sums to -P·V: same sheet stress as from the pressure tensor.
    from_atoms = sheet_stress_from_atoms(traj.stress, traj.cell, "x", sheet.cell[1, 1])
    np.testing.assert_allclose(from_atoms, result.thermo["stress_xx_GPa"], atol=0.02)
    # Kinetic energy from recorded velocities matches LAMMPS' (velocities are full-step values).
    mvv2 = 0.5 * 12.011 * (traj.velocities ** 2).sum(axis=(1, 2)) * 1.0364269e-4  # g/mol·Å²/ps² → eV
    np.testing.assert_allclose(mvv2, result.thermo["kinetic_energy_eV"], rtol=1e-5)
    # The LAMMPS text dump holds the same last frame.
    text = (tmp_path / "dump.lammpstrj").read_text().split("ITEM: TIMESTEP\n")[-1].splitlines()
    assert int(text[0]) == 3000
    rows = np.array([line.split() for line in text[8:]], dtype=float)
    np.testing.assert_allclose(rows[:, 2:5], traj.positions[-1], atol=1e-6)
    np.testing.assert_allclose(rows[:, 5:8], traj.velocities[-1], atol=1e-6)
    assert result.manifest["seed"] == 7 and result.manifest["engine"]["lammps_version"]


def test_tension_gives_graphene_modulus_and_first_maximum(sheet, tmp_path):
    # Early stop tuned to this small periodic sheet, whose stress drops only ~7 % after the peak.
    protocol = Tension(4.2, strain_rate_per_ps=0.1, max_strain=0.4, relax_ps=0.5, stop_drop=0.05,
                       stop_past_peak=0.01)
    result = run_md(sheet, protocol, str(tmp_path), record_every=50, threads=1, progress=False)
    curve, summary = result.stress_strain, result.summary
    assert curve["strain"][0] == 0.0
    assert abs(curve["stress_GPa"][0]) < 2.0  # relaxed along x before stretching
    assert 800.0 < summary.youngs_modulus_GPa < 1200.0
    # The first maximum (Hanakata's rule): the peak near ε 0.26, or the plateau near ε 0.18 that precedes
    # the AIREBO cutoff-switch stiffening (larger sheets show it as a local maximum).
    assert 0.15 < summary.local_max_yield_strain < 0.3
    assert 90.0 < summary.local_max_yield_stress_GPa < 200.0
    i = int(np.argmin(np.abs(curve["strain"] - summary.local_max_yield_strain)))
    assert curve["stress_GPa"][i] == pytest.approx(curve["stress_GPa"][: i + 3].max())
    env = result.trajectory.environment
    deform = result.thermo["strain_rate_per_ps"] > 0
    assert deform.sum() == len(curve["strain"]) and not deform[: 500 // 50].any()
    np.testing.assert_allclose(env[deform, 2], 0.1)
    np.testing.assert_allclose(env[deform, 3], curve["strain"])
    # fix deform in one run: strain grows exactly linearly with time. A record holds the box its
    # stress was computed in, i.e. before that step's deformation: one step behind rate · t.
    elapsed = curve["step"][1:] - curve["step"][0]
    np.testing.assert_allclose(curve["strain"][1:], 0.1 * 1e-3 * (elapsed - 1), rtol=1e-6)
    assert [p["name"] for p in result.manifest["phases"]] == ["relax", "deform"]
    # Stopped early: a point ≥ 0.01 past the peak lies ≥ 5 % below it, well before strain 0.4.
    assert result.manifest["stopped_early"] and curve["strain"][-1] < 0.38
    peak = int(np.argmax(curve["stress_GPa"]))
    after = curve["strain"] >= curve["strain"][peak] + 0.01
    assert (curve["stress_GPa"][after] <= 0.95 * curve["stress_GPa"][peak]).any()


def test_stop_request_ends_the_run_at_the_next_record(sheet, tmp_path):
    with LammpsEngine(str(tmp_path / "log.lammps"), threads=1) as engine:
        engine.load_atoms(sheet)
        engine.command("fix md_int all nve")

        def stop_late(row):
            if row["step"] >= 100:
                recorder.request_stop()

        recorder = Recorder(engine, 20, on_record=stop_late)
        engine.command("run 1000")
        recorder.flush()
        assert engine.lmp.get_thermo("step") == 120  # record 100 is seen at step 120, halt there
        assert recorder.steps == list(range(0, 121, 20))


def test_failure_inside_the_callback_surfaces(sheet, tmp_path):
    with LammpsEngine(str(tmp_path / "log.lammps"), threads=1) as engine:
        engine.load_atoms(sheet)
        engine.command("fix md_int all nve")

        def broken(row):
            raise SagesnetError("analysis failed")

        recorder = Recorder(engine, 10, on_record=broken)
        engine.command("run 200")
        assert engine.lmp.get_thermo("step") < 200
        with pytest.raises(SagesnetError, match="analysis failed"):
            recorder.check_error()


def test_bad_run_options_are_refused_before_lammps_starts(sheet, tmp_path):
    with pytest.raises(SagesnetError, match="timestep"):
        run_md(sheet, NVT(300.0, steps=10), str(tmp_path), dt_fs=0.0)
    with pytest.raises(SagesnetError, match="does not exist"):
        run_md(sheet, NVT(300.0, steps=10), str(tmp_path / "missing"))
    assert not (tmp_path / "log.lammps").exists()
