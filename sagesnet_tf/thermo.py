"""Kinetic energy and temperature from velocities (LAMMPS ``metal``: g/mol, Å/ps, eV, K)."""

from __future__ import annotations

import math

import numpy as np

#: LAMMPS metal ``mvv2e``: (g/mol)·(Å/ps)² -> eV.
MVV2E = 1.0364269e-4
#: Boltzmann constant, eV/K.
KB_EV_PER_K = 8.617333262e-5


def kinetic_energy_ev(velocities: np.ndarray, masses: np.ndarray) -> float:
    """Total kinetic energy (eV) of velocities (N, 3) Å/ps and masses (N,) g/mol."""
    v = np.asarray(velocities, dtype=np.float64)
    return float(0.5 * MVV2E * np.sum(np.asarray(masses, dtype=np.float64)[:, None] * v * v))


def temperature_k(velocities: np.ndarray, masses: np.ndarray) -> float:
    """Kinetic temperature (K) with 3N − 3 degrees of freedom (LAMMPS ``compute temp``)."""
    dof = max(3 * len(masses) - 3, 1)
    return 2.0 * kinetic_energy_ev(velocities, masses) / (dof * KB_EV_PER_K)


def maxwell_boltzmann_velocities(masses: np.ndarray, temperature: float, seed: int = 0) -> np.ndarray:
    """Random velocities (N, 3) Å/ps at exactly ``temperature`` K (by :func:`temperature_k`) with
    zero total momentum, like LAMMPS ``velocity create T seed mom yes dist gaussian``."""
    m = np.asarray(masses, dtype=np.float64)
    v = np.random.default_rng(seed).normal(size=(len(m), 3)) * np.sqrt(KB_EV_PER_K * temperature / (m[:, None] * MVV2E))
    v -= np.sum(m[:, None] * v, axis=0) / np.sum(m)
    current = temperature_k(v, m)
    return v * np.sqrt(temperature / current) if current > 0 else v


#: Bounds of one Berendsen rescaling factor (keeps one bad step from being amplified).
BERENDSEN_LAMBDA_RANGE = (0.8, 1.25)


def berendsen_factor(temperature: float, target: float, delta_ps: float, tau_ps: float) -> float:
    """Velocity scale λ = sqrt(1 + Δ/τ·(T0/T − 1)) for one step of Δ ps, clipped to
    :data:`BERENDSEN_LAMBDA_RANGE`; 1 for a system at rest (T = 0)."""
    if temperature <= 0.0:
        return 1.0
    lam = math.sqrt(max(1.0 + delta_ps / tau_ps * (target / temperature - 1.0), 0.0))
    return min(max(lam, BERENDSEN_LAMBDA_RANGE[0]), BERENDSEN_LAMBDA_RANGE[1])


def berendsen_rescale(velocities: np.ndarray, masses: np.ndarray, target: float, delta_ps: float,
                      tau_ps: float) -> np.ndarray:
    """Velocities (..., N, 3) Å/ps after one Berendsen rescaling towards ``target`` K over Δ ps.

    The motion relative to the centre of mass is scaled by :func:`berendsen_factor` of its own
    temperature, taken on the last (N, 3) frame (LAMMPS ``fix temp/berendsen`` with a
    ``compute temp/com``); the centre-of-mass velocity is kept as it is. Scaling it too would
    amplify any drift whenever the system runs colder than the target, until the drift carried
    the kinetic energy the thermostat asks for. Masses (N,) g/mol. Same dtype out as in.
    """
    v = np.asarray(velocities)
    m = np.asarray(masses, dtype=np.float64)[:, None]
    com = np.sum(m * v, axis=-2, keepdims=True) / m.sum()              # (..., 1, 3)
    internal = v - com
    last = internal.reshape(-1, *v.shape[-2:])[-1]
    lam = berendsen_factor(temperature_k(last, masses), target, delta_ps, tau_ps)
    return (com + internal * lam).astype(v.dtype)
