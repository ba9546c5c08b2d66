"""Thermostats of `simulate`: Langevin holds every degree of freedom at the target, CSVR samples the
canonical kinetic-energy distribution, Berendsen is the old weak coupling; the per-component
temperature columns and the ensemble record of a real run with the shipped model."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sagesnet_tf.simulate import THERMO_COLUMNS
from sagesnet_tf.thermo import (KB_EV_PER_K, apply_thermostat, berendsen_factor, berendsen_rescale,
                                component_temperatures_k, kinetic_energy_ev, langevin_step,
                                maxwell_boltzmann_velocities, plane_axes, temperature_k, thermostat_rng)

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "exported_models" / "sagesnet_graphene"
EXAMPLE = ROOT / "examples" / "graphene_10x6_300K.extxyz"


def masses(n_carbon: int, n_hydrogen: int) -> np.ndarray:
    return np.array([12.011] * n_carbon + [1.008] * n_hydrogen)


def axis_temperatures(v: np.ndarray, m: np.ndarray) -> list[float]:
    """Kinetic temperature (K) of x, y and z motion separately (each the out-of-plane part of the
    plane of the other two)."""
    return [component_temperatures_k(v, m, plane)[1] for plane in ((1, 2), (0, 2), (0, 1))]


def split_start(m: np.ndarray, seed: int = 4) -> np.ndarray:
    """Velocities (N, 3) with x at 50 K, y at 300 K, z at 900 K (zero momentum) plus a drift."""
    v = maxwell_boltzmann_velocities(m, 300.0, seed=seed) * np.sqrt([50.0 / 300.0, 1.0, 3.0])
    return v + np.array([0.5, -0.2, 0.1])


def test_langevin_relaxes_every_component_to_the_target_and_keeps_the_centre_of_mass():
    m = masses(3000, 600)
    v = split_start(m)
    com = np.sum(m[:, None] * v, axis=0) / m.sum()
    assert axis_temperatures(v, m)[0] < 60.0 and axis_temperatures(v, m)[2] > 800.0
    samples = []
    for step in range(1, 201):  # updates of 10 fs, τ = 0.1 ps: 10 τ to relax, then 10 τ of samples
        v = langevin_step(v, m, 300.0, 0.01, 0.1, thermostat_rng(7, step))
        if step > 100:
            samples.append(axis_temperatures(v, m))
    for axis, mean in zip("xyz", np.mean(samples, axis=0)):
        assert mean == pytest.approx(300.0, rel=0.02), axis
    np.testing.assert_allclose(np.sum(m[:, None] * v, axis=0) / m.sum(), com, atol=1e-9)

    # the global Berendsen rescaling brings the total to 300 K but keeps the split it was given
    b = split_start(m)
    for _ in range(200):
        b = berendsen_rescale(b, m, 300.0, 0.01, 0.1)
    assert temperature_k(b - np.sum(m[:, None] * b, axis=0) / m.sum(), m) == pytest.approx(300.0, rel=0.01)
    cold, _, hot = axis_temperatures(b, m)
    assert cold < 100.0 and hot > 500.0


def test_langevin_without_zero_momentum_thermostats_the_centre_of_mass_too():
    m = masses(5000, 0)
    v = np.zeros((5000, 3)) + np.array([10.0, 0.0, 0.0])
    out = langevin_step(v, m, 300.0, 0.05, 0.1, thermostat_rng(0, 1), zero_momentum=False)
    com = np.sum(m[:, None] * out, axis=0) / m.sum()
    assert com[0] == pytest.approx(10.0 * np.exp(-0.5), abs=0.3)  # friction slowed the drift (noise σ ≈ 0.05)
    kept = langevin_step(v, m, 300.0, 0.05, 0.1, thermostat_rng(0, 1))
    np.testing.assert_allclose(np.sum(m[:, None] * kept, axis=0) / m.sum(), [10.0, 0.0, 0.0], atol=1e-9)


def test_csvr_samples_the_canonical_kinetic_energy_distribution():
    m = masses(40, 10)
    nf, kt = 3 * len(m) - 3, KB_EV_PER_K * 300.0
    drift = np.array([0.3, 0.0, -0.1])
    v = maxwell_boltzmann_velocities(m, 100.0, seed=1) + drift
    energies = []
    for step in range(1, 12001):  # τ = 0.1 ps, updates of 10 fs
        v = apply_thermostat("csvr", v, m, 300.0, 0.01, 0.1, seed=5, step=step)
        if step > 2000:
            energies.append(kinetic_energy_ev(v - drift, m))
    energies = np.array(energies)
    # canonical: K = χ²(Nf)·kT/2, mean Nf·kT/2, variance Nf·(kT)²/2
    assert energies.mean() == pytest.approx(nf * kt / 2, rel=0.02)
    assert energies.var() == pytest.approx(nf * kt * kt / 2, rel=0.15)
    np.testing.assert_allclose(np.sum(m[:, None] * v, axis=0) / m.sum(), drift, atol=1e-9)

    # Berendsen holds the mean and suppresses the fluctuations: not canonical
    b = maxwell_boltzmann_velocities(m, 100.0, seed=1)
    weak = []
    for step in range(1, 3001):
        b = apply_thermostat("berendsen", b, m, 300.0, 0.01, 0.1, seed=5, step=step)
        weak.append(kinetic_energy_ev(b, m))
    assert np.var(weak[1000:]) < 0.01 * nf * kt * kt / 2


def test_berendsen_is_unchanged_and_deterministic():
    m = masses(40, 8)
    v = (maxwell_boltzmann_velocities(m, 150.0, seed=3) + np.array([0.0, 1.0, -3.0])).astype(np.float32)
    out = apply_thermostat("berendsen", v, m, 300.0, 0.01, 0.1, seed=1, step=1)
    np.testing.assert_array_equal(out, berendsen_rescale(v, m, 300.0, 0.01, 0.1))
    np.testing.assert_array_equal(out, apply_thermostat("berendsen", v, m, 300.0, 0.01, 0.1, seed=2, step=9))
    internal = v - np.sum(m[:, None] * v, axis=0) / m.sum()
    assert temperature_k(out - (v - internal), m) == pytest.approx(
        150.0 * berendsen_factor(150.0, 300.0, 0.01, 0.1) ** 2, rel=1e-4)


def test_random_numbers_are_a_function_of_seed_and_step():
    m = masses(30, 0)
    v = maxwell_boltzmann_velocities(m, 300.0, seed=0)
    for kind in ("langevin", "csvr"):
        a = apply_thermostat(kind, v, m, 300.0, 0.01, 0.1, seed=3, step=40)
        np.testing.assert_array_equal(a, apply_thermostat(kind, v, m, 300.0, 0.01, 0.1, seed=3, step=40))
        assert not np.array_equal(a, apply_thermostat(kind, v, m, 300.0, 0.01, 0.1, seed=3, step=41))
        assert not np.array_equal(a, apply_thermostat(kind, v, m, 300.0, 0.01, 0.1, seed=4, step=40))
    window = np.stack([v, 2 * v]).astype(np.float32)  # a window of frames shares the noise
    out = apply_thermostat("langevin", window, m, 300.0, 0.01, 0.1, seed=3, step=1)
    assert out.shape == window.shape and out.dtype == np.float32
    np.testing.assert_allclose(out[1] - out[0], np.exp(-0.1) * v, atol=1e-5)


def test_plane_axes_and_component_temperatures():
    rng = np.random.default_rng(0)
    sheet_xz = rng.uniform(0, 1, (100, 3)) * [30.0, 0.5, 20.0]
    assert plane_axes(sheet_xz, (True, True, True)) == (0, 2)  # fully periodic: the widest extents
    assert plane_axes(sheet_xz, (False, False, False)) == (0, 2)
    assert plane_axes(sheet_xz, (True, True, False)) == (0, 1)  # two periodic axes
    m = masses(90, 10)
    v = maxwell_boltzmann_velocities(m, 300.0, seed=2) + 5.0  # the drift is not temperature
    inplane, outofplane = component_temperatures_k(v, m, (0, 1))
    assert (2 * inplane + outofplane) / 3 == pytest.approx(temperature_k(v - 5.0, m), rel=1e-9)
    flat = v.copy()
    flat[:, 2] = 5.0
    assert component_temperatures_k(flat, m, (0, 1))[1] == pytest.approx(0.0, abs=1e-9)


def read_rows(path: Path) -> list[dict]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


@pytest.mark.skipif(not MODEL.is_dir(), reason="no shipped model")
def test_shipped_model_run_records_the_ensemble_and_component_temperatures(tmp_path):
    out = tmp_path / "nvt"
    cmd = [sys.executable, "-m", "sagesnet_tf.cli.main", "simulate", "--model", str(MODEL), "--structure",
           str(EXAMPLE), "--temperature", "300", "--steps", "20", "--every", "10", "--no-progress", "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "it/s" not in proc.stderr and "step/s" not in proc.stderr  # --no-progress: no bar
    rows = read_rows(out / "thermo.csv")
    assert tuple(rows[0]) == THERMO_COLUMNS
    assert list(rows[0])[2:5] == ["temperature_K", "temperature_inplane_K", "temperature_outofplane_K"]
    assert [int(r["step"]) for r in rows] == [0, 10, 20]
    for r in rows:
        assert r["ensemble"] == "nvt" and r["scale"] == "0"
        total, inplane, outofplane = (float(r[c]) for c in THERMO_COLUMNS[2:5])
        assert (2 * inplane + outofplane) / 3 == pytest.approx(total, rel=1e-6)
        assert 100.0 < inplane < 600.0 and 50.0 < outofplane < 1000.0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ensemble"] == "nvt"
    assert manifest["thermostat"] == {"kind": "langevin", "tau_ps": 0.1, "seed": 0}

    # --ensemble nve with a thermostat time constant: one line, exit 2
    bad = subprocess.run(cmd[:-2] + ["--ensemble", "nve", "--thermostat-ps", "0.1", "--out", str(tmp_path / "bad")],
                         capture_output=True, text=True, timeout=300)
    errors = [line for line in bad.stderr.splitlines() if line.startswith("Error:")]
    assert bad.returncode == 2 and len(errors) == 1 and "--ensemble nve" in errors[0]
    assert "Traceback" not in bad.stderr
