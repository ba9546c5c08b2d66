"""Kinetic energy, temperatures and thermostats of velocities (LAMMPS ``metal``: g/mol, Å/ps, eV, K).

Thermostats (:func:`apply_thermostat`, used by ``simulate``): Langevin (local, per degree of
freedom, canonical), Bussi's CSVR (global, canonical) and Berendsen (global weak coupling, not
canonical). Temperatures: total (:func:`temperature_k`) and in-plane / out-of-plane for sheets
(:func:`component_temperatures_k`).
"""

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


def _internal(velocities: np.ndarray, masses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(centre-of-mass velocity (..., 1, 3), motion relative to it (..., N, 3)) of velocities
    (..., N, 3) Å/ps with masses (N,) g/mol."""
    m = np.asarray(masses, dtype=np.float64)[:, None]
    com = np.sum(m * velocities, axis=-2, keepdims=True) / m.sum()
    return com, velocities - com


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
    Not canonical: it holds the mean temperature but suppresses the kinetic-energy fluctuations,
    and, one factor for all atoms, it leaves the split of the energy among the degrees of freedom
    to the dynamics.
    """
    v = np.asarray(velocities)
    com, internal = _internal(v, masses)
    last = internal.reshape(-1, *v.shape[-2:])[-1]
    lam = berendsen_factor(temperature_k(last, masses), target, delta_ps, tau_ps)
    return (com + internal * lam).astype(v.dtype)


def plane_axes(positions: np.ndarray, pbc) -> tuple[int, int]:
    """The two in-plane axes of a sheet: its two periodic axes when exactly two are periodic,
    otherwise the two axes along which the atoms (positions (N, 3) Å) spread widest."""
    periodic = [i for i, p in enumerate(pbc) if p]
    if len(periodic) == 2:
        return periodic[0], periodic[1]
    extent = np.ptp(np.asarray(positions, dtype=np.float64), axis=0)
    first, second = sorted(np.argsort(-extent, kind="stable")[:2].tolist())
    return first, second


def component_temperatures_k(velocities: np.ndarray, masses: np.ndarray, plane: tuple[int, int]) -> tuple[float, float]:
    """(in-plane, out-of-plane) kinetic temperature (K) of velocities (N, 3) Å/ps, masses (N,) g/mol.

    The motion is taken relative to the centre of mass, so each Cartesian component has N − 1
    degrees of freedom: the in-plane temperature (the two axes of ``plane``, e.g. from
    :func:`plane_axes`) counts 2N − 2, the out-of-plane one N − 1, and their dof-weighted mean
    (2·T_in + T_out)/3 is :func:`temperature_k`.
    """
    m = np.asarray(masses, dtype=np.float64)
    _, internal = _internal(np.asarray(velocities, dtype=np.float64), m)
    per_axis = MVV2E * np.sum(m[:, None] * internal * internal, axis=0)  # (3,) 2·KE per axis, eV
    dof = max(len(m) - 1, 1)
    normal = ({0, 1, 2} - set(plane)).pop()
    return (float(per_axis[list(plane)].sum() / (2 * dof * KB_EV_PER_K)),
            float(per_axis[normal] / (dof * KB_EV_PER_K)))


def langevin_step(velocities: np.ndarray, masses: np.ndarray, target: float, span_ps: float, tau_ps: float,
                  rng: np.random.Generator, zero_momentum: bool = True) -> np.ndarray:
    """Velocities (..., N, 3) Å/ps after the exact Ornstein–Uhlenbeck (Langevin "O") update over
    ``span_ps``: v ← c·v + sqrt((1 − c²)·kB·T/m)·ξ per degree of freedom, c = exp(−span/τ).

    Each Cartesian component of each atom is coupled on its own (a local thermostat: it drives
    every degree of freedom to ``target`` K, whatever the dynamics do to their split). ξ (N, 3) is
    standard normal from ``rng``; leading axes (a window of frames) share it. ``zero_momentum``
    subtracts the net momentum the update adds (friction and noise), so the centre-of-mass velocity
    is kept and the internal motion (3N − 3 dof) is thermostatted, as LAMMPS ``fix langevin … zero
    yes`` keeps the noise from kicking the centre of mass. Masses (N,) g/mol. Same dtype out as in.
    """
    v = np.asarray(velocities)
    m = np.asarray(masses, dtype=np.float64)[:, None]
    c = math.exp(-span_ps / tau_ps)
    noise = rng.standard_normal((len(m), 3)) * np.sqrt((1.0 - c * c) * KB_EV_PER_K * target / (m * MVV2E))
    out = c * v.astype(np.float64) + noise
    if zero_momentum:
        out -= np.sum(m * (out - v), axis=-2, keepdims=True) / m.sum()
    return out.astype(v.dtype)


def csvr_step(velocities: np.ndarray, masses: np.ndarray, target: float, span_ps: float, tau_ps: float,
              rng: np.random.Generator) -> np.ndarray:
    """Velocities (..., N, 3) Å/ps after one Bussi–Donadio–Parrinello stochastic velocity rescaling
    (CSVR, J. Chem. Phys. 126, 014101, 2007) over ``span_ps`` with time constant ``tau_ps``.

    The motion relative to the centre of mass (Nf = 3N − 3 dof, kinetic energy K of the last (N, 3)
    frame) is scaled by α = sqrt(K'/K), with K' drawn exactly from the process that relaxes K to
    the canonical distribution at ``target`` K in time τ (c = exp(−span/τ), K̄ = Nf·kB·T/2,
    R ~ N(0, 1), χ² with Nf − 1 dof): K' = (√(c·K) + √((1 − c)·K̄/Nf)·R)² + (1 − c)·(K̄/Nf)·χ².
    Global (one α for all atoms and for all frames of a window), canonical; the centre-of-mass
    velocity is kept. A system at rest (K = 0) is returned as it is. Masses (N,) g/mol.
    """
    v = np.asarray(velocities)
    com, internal = _internal(v.astype(np.float64), masses)
    last = internal.reshape(-1, *v.shape[-2:])[-1]
    kinetic = kinetic_energy_ev(last, masses)
    if kinetic <= 0.0:
        return v
    nf = max(3 * len(masses) - 3, 1)
    c = math.exp(-span_ps / tau_ps)
    per_dof = 0.5 * KB_EV_PER_K * target  # K̄ / Nf
    r = rng.standard_normal()
    new = (math.sqrt(c * kinetic) + math.sqrt((1.0 - c) * per_dof) * r) ** 2 \
        + (1.0 - c) * per_dof * (rng.chisquare(nf - 1) if nf > 1 else 0.0)
    return (com + internal * math.sqrt(new / kinetic)).astype(v.dtype)


#: Thermostats of ``simulate --thermostat``: kind -> whether it samples the canonical ensemble.
THERMOSTATS = {"langevin": True, "csvr": True, "berendsen": False}


def thermostat_rng(seed: int, step: int) -> np.random.Generator:
    """The random stream of the thermostat update that ends at model step ``step`` of a run with
    ``seed``: a function of the two alone, so a resumed run draws the same numbers without saving
    any generator state."""
    return np.random.default_rng([seed, step])


def apply_thermostat(kind: str, velocities: np.ndarray, masses: np.ndarray, target: float, span_ps: float,
                     tau_ps: float, seed: int, step: int) -> np.ndarray:
    """Velocities (..., N, 3) Å/ps after one update of thermostat ``kind`` (:data:`THERMOSTATS`)
    over ``span_ps`` towards ``target`` K with time constant ``tau_ps``; random numbers from
    :func:`thermostat_rng` (``seed``, ``step``)."""
    if kind == "langevin":
        return langevin_step(velocities, masses, target, span_ps, tau_ps, thermostat_rng(seed, step))
    if kind == "csvr":
        return csvr_step(velocities, masses, target, span_ps, tau_ps, thermostat_rng(seed, step))
    if kind == "berendsen":
        return berendsen_rescale(velocities, masses, target, span_ps, tau_ps)
    raise ValueError(f"unknown thermostat {kind!r}; one of {', '.join(THERMOSTATS)}")
