"""Stress–strain analysis on synthetic curves (no LAMMPS): stress convention, Young's modulus,
both yield rules, toughness, the curve error to yield, the tension early-stop rule and the PNG plots."""

import numpy as np
import pytest

from sagesnet_tf.analysis.plots import plot_stress_strain, plot_thermo
from sagesnet_tf.analysis.stress_strain import (
    LOCAL_MAX_THRESHOLD_GPA, curve_error_to_yield, nominal_thickness, nominal_width, sheet_stress_from_atoms, sheet_stress_from_pressure, summarize, toughness,
    yield_index_drop, yield_index_local_max, youngs_modulus)
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.md.protocols import EarlyStop
from sagesnet_tf.structures import graphene_sheet


def _curve(peak_strain=0.25, modulus=1000.0, n=201, noise=0.0, seed=0):
    """Linear rise to a peak, then a 40 % drop: (strain (n,), stress GPa (n,))."""
    strain = np.linspace(0.0, 0.4, n)
    stress = np.where(strain <= peak_strain, modulus * strain * (1 - strain),  # softening towards the peak
                      modulus * peak_strain * (1 - peak_strain) * 0.6)
    return strain, stress + np.random.default_rng(seed).normal(0.0, noise, n)


def test_sheet_stress_from_pressure_matches_hand_value_and_per_atom_sum():
    cell = np.diag([10.0, 20.0, 30.0])[None]
    # P_xx = -1e4 bar (1 GPa tension in the box) over a 3.35 Å sheet of width 20 Å in a 30 Å box:
    sigma = sheet_stress_from_pressure(np.array([-1.0e4]), cell, "x", width_A=20.0)
    assert sigma[0] == pytest.approx(30.0 / 3.35)
    # Per-atom stress × volume summing to -P·V gives the same number.
    per_atom = np.zeros((1, 4, 6))
    per_atom[0, :, 0] = 1.0e4 * 10 * 20 * 30 / 4
    assert sheet_stress_from_atoms(per_atom, cell, "x", 20.0)[0] == pytest.approx(sigma[0])


def test_nominal_width_and_thickness_come_from_info_or_cell():
    sheet = graphene_sheet(3, 2)
    assert nominal_width(sheet, "x") == pytest.approx(sheet.cell[1, 1])
    assert nominal_width(sheet, "y") == pytest.approx(sheet.cell[0, 0])
    sheet.info["nominal_width_A"] = 7.5
    sheet.info["nominal_thickness_A"] = 3.4
    assert nominal_width(sheet, "x") == 7.5
    assert nominal_thickness(sheet) == 3.4
    with pytest.raises(SagesnetError, match="axis"):
        nominal_width(sheet, "z")


def test_youngs_modulus_recovers_slope_and_refuses_too_few_points():
    strain = np.linspace(0, 0.05, 51)
    stress = 950.0 * strain + 0.3 + np.random.default_rng(1).normal(0, 0.05, 51)
    assert youngs_modulus(strain, stress) == pytest.approx(950.0, rel=0.02)
    with pytest.raises(SagesnetError, match="strain ≤ 0.02"):
        youngs_modulus(np.array([0.0, 0.1, 0.2]), np.array([0.0, 1.0, 2.0]))


def test_benchmark_yield_ignores_small_wiggles_that_trip_the_local_max_rule():
    strain, stress = _curve()
    stress = stress.copy()
    stress[40] += 5.0  # a 7 % bump at strain 0.08 (above the next two points): not a failure
    i_drop = yield_index_drop(stress)
    i_local = yield_index_local_max(stress)
    assert strain[i_drop] == pytest.approx(0.25)
    assert strain[i_local] == pytest.approx(0.08)
    assert yield_index_drop(np.linspace(0, 10, 20)) is None  # never falls: no yield
    # thermal noise of an unloaded ribbon (0.7 -> 0.6 GPa) is below the threshold: the yield is the real peak
    noisy = np.concatenate([[0.7, 0.6], stress[1:]])
    assert yield_index_drop(noisy) == i_drop + 1


def test_local_max_rule_respects_threshold():
    stress = np.array([0.0, 1.0, 1.2, 1.1, 1.0, 2.0, 3.0, 4.0, 3.0, 2.5, 2.0])
    assert yield_index_local_max(stress) == 7  # the bump at 1.2 GPa is below 1.5 GPa
    assert yield_index_local_max(stress, threshold_gpa=1.0) == 2


def test_toughness_is_area_under_curve_up_to_yield():
    strain = np.linspace(0, 0.2, 101)
    assert toughness(strain, 1000.0 * strain, 100) == pytest.approx(1000.0 * 0.2 ** 2 / 2)
    assert toughness(strain, 1000.0 * strain, 50) == pytest.approx(1000.0 * 0.1 ** 2 / 2)


def test_curve_error_to_yield_is_the_worst_stress_difference_before_yield_over_the_peak():
    strain, stress = _curve()
    peak = stress[strain <= 0.25].max()
    assert curve_error_to_yield(strain, stress, strain, stress, 0.25) == 0.0
    # 10 % softer everywhere: the worst difference before yield is 10 % of the peak
    assert curve_error_to_yield(strain, stress, strain, 0.9 * stress, 0.25) == pytest.approx(0.1, rel=1e-6)
    # a model curve sampled elsewhere is interpolated; what happens past yield does not count
    coarse = np.linspace(0.0, 0.4, 41)
    broken = np.where(coarse <= 0.25, np.interp(coarse, strain, stress), 0.0)
    assert curve_error_to_yield(strain, stress, coarse, broken, 0.24) < 0.01
    # a model curve that stopped at 0.1 is judged on what it reached; one that reached nothing is None
    assert curve_error_to_yield(strain, stress, strain[:51], 1.2 * stress[:51], 0.25) == pytest.approx(
        0.2 * stress[50] / peak, rel=1e-6)
    assert curve_error_to_yield(strain, stress, [0.3, 0.4], [1.0, 1.0], 0.25) is None


def test_summarize_reports_all_properties():
    strain, stress = _curve(noise=0.2)
    s = summarize(strain, stress)
    assert s.youngs_modulus_GPa == pytest.approx(1000.0 * (1 - 0.01), rel=0.03)  # slope of E ε (1 − ε) near 0
    assert s.yield_strain == pytest.approx(0.25, abs=0.01)
    assert s.yield_stress_GPa == pytest.approx(187.5, rel=0.02)
    assert s.toughness_GPa > 0
    assert s.to_dict()["max_stress_GPa"] == pytest.approx(stress.max())
    with pytest.raises(SagesnetError):
        summarize(strain, stress[:-1])


def test_early_stop_waits_for_drop_and_strain_past_peak():
    stop = EarlyStop(past_peak=0.05, drop=0.30)
    strain, stress = _curve(n=401)
    fired = next(i for i, (e, s) in enumerate(zip(strain, stress)) if stop.update(e, s))
    assert stop.peak_strain == pytest.approx(0.25)
    assert strain[fired] == pytest.approx(0.30, abs=1.5e-3)  # the 40 % drop comes at once; 0.05 past peak
    quiet = EarlyStop()
    assert not any(quiet.update(e, s) for e, s in zip(strain, np.minimum(stress, 150.0)))  # plateau: no stop
    # a spring's noise peak below the yield rules' threshold never stops the run, however far it drops
    spring = EarlyStop()
    assert not any(spring.update(e, s) for e, s in zip(strain, 0.005 * stress))
    assert spring.peak_stress < LOCAL_MAX_THRESHOLD_GPA


def test_plots_write_png_files(tmp_path):
    strain, stress = _curve()
    plot_stress_strain(strain, stress, str(tmp_path / "ss.png"), summarize(strain, stress))
    thermo = {"time_ps": np.arange(5) * 0.1, "temperature_K": np.full(5, 300.0),
              "potential_energy_eV": -np.arange(5.0), "total_energy_eV": -np.arange(5.0) + 1,
              "stress_xx_GPa": np.arange(5.0)}
    plot_thermo(thermo, str(tmp_path / "thermo.png"))
    for name in ("ss.png", "thermo.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ss.png", "thermo.png"]  # no temp files left
