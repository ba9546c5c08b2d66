"""MD protocols as LAMMPS phases: ``nvt``, ``nve``, ``npt`` and ``tension`` (kirigami benchmark).

A protocol is a list of :class:`Phase` objects; each phase is one LAMMPS ``run`` with its own
fixes (see docs/MD_PROTOCOLS.md for the commands). Units: temperature K, pressure bar, time ps,
strain rate ps⁻¹ (engineering strain per ps), timestep fs at the interface (LAMMPS gets ps).

Thermostat/barostat damping defaults follow the LAMMPS manual's advice: ``Tdamp = 100 dt`` and
``Pdamp = 1000 dt``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from sagesnet_tf.analysis.stress_strain import LOCAL_MAX_THRESHOLD_GPA
from sagesnet_tf.errors import SagesnetError

#: Stress components a barostat may release (LAMMPS ``fix npt`` keywords).
STRESS_COMPONENTS: tuple[str, ...] = ("x", "y", "z", "xy", "xz", "yz")
#: In-plane loading axes of the tension protocol (sheets lie in the xy plane).
TENSION_AXES: tuple[str, ...] = ("x", "y")
PROTOCOLS: tuple[str, ...] = ("nvt", "nve", "npt", "tension")


@dataclasses.dataclass(frozen=True)
class Phase:
    """One LAMMPS ``run``: the fixes defined for it and what it applies.

    Attributes:
        name: phase label (``"nvt"``, ``"relax"``, ``"deform"`` …).
        steps: MD steps of this phase.
        commands: LAMMPS commands defining the phase's fixes (IDs in ``fix_ids``).
        fix_ids: fixes removed (``unfix``) when the phase ends.
        pressure_bar: applied pressure recorded in the environment vector (0 when none).
        strain_rate_per_ps: applied engineering strain rate along ``deform_axis`` (0 when none).
        deform_axis: ``"x"``/``"y"`` when the box is deformed, else None.
        early_stop: whether the tension early-stop rule may end this phase.
    """

    name: str
    steps: int
    commands: tuple[str, ...]
    fix_ids: tuple[str, ...]
    pressure_bar: float = 0.0
    strain_rate_per_ps: float = 0.0
    deform_axis: str | None = None
    early_stop: bool = False


def _positive(name: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise SagesnetError(f"{name} must be a positive number (got {value})")
    return float(value)


def _steps(name: str, value: int | None) -> int:
    if value is None or int(value) < 1:
        raise SagesnetError(f"{name} must be a positive number of MD steps (got {value}); pass --steps N")
    return int(value)


@dataclasses.dataclass(frozen=True)
class Protocol:
    """Common settings. ``temperature_K`` is the thermostat target (or the initial temperature
    of NVE velocities); damping times in ps default to 100·dt (T) and 1000·dt (P)."""

    temperature_K: float
    steps: int | None = None
    tdamp_ps: float | None = None
    pdamp_ps: float | None = None

    name = "protocol"

    def _tdamp(self, dt_ps: float) -> float:
        return self.tdamp_ps if self.tdamp_ps is not None else 100.0 * dt_ps

    def _pdamp(self, dt_ps: float) -> float:
        return self.pdamp_ps if self.pdamp_ps is not None else 1000.0 * dt_ps

    def _nh_temp(self, dt_ps: float) -> str:
        t = _positive("temperature (K)", self.temperature_K)
        return f"temp {t!r} {t!r} {self._tdamp(dt_ps)!r}"

    def phases(self, dt_fs: float) -> list[Phase]:
        """The LAMMPS phases of this protocol at timestep ``dt_fs`` (fs)."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        """The protocol's parameters for the manifest."""
        return {"protocol": self.name, **dataclasses.asdict(self)}


@dataclasses.dataclass(frozen=True)
class NVT(Protocol):
    """Canonical ensemble: Nosé–Hoover chain thermostat (``fix nvt``) for ``steps`` steps."""

    name = "nvt"

    def phases(self, dt_fs: float) -> list[Phase]:
        dt_ps = dt_fs / 1000.0
        return [Phase("nvt", _steps("steps", self.steps), (f"fix md_int all nvt {self._nh_temp(dt_ps)}",),
                      ("md_int",))]


@dataclasses.dataclass(frozen=True)
class NVE(Protocol):
    """Microcanonical ensemble (``fix nve``); velocities start at ``temperature_K``."""

    name = "nve"

    def phases(self, dt_fs: float) -> list[Phase]:
        _positive("temperature (K)", self.temperature_K)
        return [Phase("nve", _steps("steps", self.steps), ("fix md_int all nve",), ("md_int",))]


@dataclasses.dataclass(frozen=True)
class NPT(Protocol):
    """Nosé–Hoover thermostat and barostat releasing the stress components in ``release`` to
    ``pressure_bar`` (``fix npt … couple none``); other box dimensions stay fixed. Tilt
    components (xy, xz, yz) need a triclinic cell."""

    pressure_bar: float = 0.0
    release: tuple[str, ...] = ("x",)

    name = "npt"

    def phases(self, dt_fs: float) -> list[Phase]:
        dt_ps = dt_fs / 1000.0
        return [Phase("npt", _steps("steps", self.steps), (_npt_command(self, dt_ps, self.release),),
                      ("md_int",), pressure_bar=float(self.pressure_bar))]


def _npt_command(protocol: Protocol, dt_ps: float, release: tuple[str, ...]) -> str:
    """``fix npt`` releasing ``release`` components to the protocol's pressure (bar)."""
    bad = [c for c in release if c not in STRESS_COMPONENTS]
    if not release or bad:
        raise SagesnetError(f"stress components to release must be among {', '.join(STRESS_COMPONENTS)} "
                            f"(got {', '.join(release) or 'none'})")
    p = float(getattr(protocol, "pressure_bar", 0.0))
    pdamp = protocol._pdamp(dt_ps)
    barostat = " ".join(f"{c} {p!r} {p!r} {pdamp!r}" for c in release)
    return f"fix md_int all npt {protocol._nh_temp(dt_ps)} {barostat} couple none"


@dataclasses.dataclass(frozen=True)
class Tension(Protocol):
    """The kirigami benchmark: relax, then stretch at constant engineering strain rate.

    Phase ``relax``: ``relax_ps`` of Nosé–Hoover NPT at ``temperature_K`` with only the loading-axis
    stress released to 0 bar. Phase ``deform``: ``fix nvt`` plus ``fix deform <axis> erate <rate>
    remap x`` in ONE ``run`` up to ``max_strain`` (``fix deform`` measures strain from the box at the
    start of its run, so the run is never chunked). With ``early_stop`` the run ends once the sheet
    stress has fallen ``stop_drop`` (30 %) below its peak and the strain is ``stop_past_peak``
    (0.05) beyond the peak strain. ``steps`` (optional) caps the total of both phases.
    """

    strain_rate_per_ps: float = 0.01
    axis: str = "x"
    max_strain: float = 0.8
    relax_ps: float = 10.0
    early_stop: bool = True
    stop_past_peak: float = 0.05
    stop_drop: float = 0.30

    name = "tension"

    def phases(self, dt_fs: float) -> list[Phase]:
        dt_ps = dt_fs / 1000.0
        if self.axis not in TENSION_AXES:
            raise SagesnetError(f"tension axis must be one of {', '.join(TENSION_AXES)} (sheets lie in the xy "
                                f"plane); got {self.axis!r}")
        rate = _positive("strain rate (1/ps)", self.strain_rate_per_ps)
        _positive("max strain", self.max_strain)
        if self.relax_ps < 0:
            raise SagesnetError(f"relaxation time must be ≥ 0 ps (got {self.relax_ps})")
        relax_steps = int(round(self.relax_ps / dt_ps))
        deform_steps = int(math.ceil(self.max_strain / (rate * dt_ps) - 1e-9))
        if self.steps is not None:
            total = _steps("steps", self.steps)
            if total <= relax_steps:
                raise SagesnetError(
                    f"--steps {total} leaves no steps for stretching after {relax_steps} relaxation steps "
                    f"({self.relax_ps} ps); raise --steps or lower --relax-ps")
            deform_steps = min(deform_steps, total - relax_steps)
        phases = []
        if relax_steps:
            phases.append(Phase("relax", relax_steps, (_npt_command(self, dt_ps, (self.axis,)),), ("md_int",)))
        phases.append(Phase(
            "deform", deform_steps,
            (f"fix md_int all nvt {self._nh_temp(dt_ps)}",
             f"fix md_deform all deform 1 {self.axis} erate {rate!r} remap x"),
            ("md_int", "md_deform"), strain_rate_per_ps=rate, deform_axis=self.axis,
            early_stop=self.early_stop))
        return phases


class EarlyStop:
    """The benchmark's early-stop rule, fed one (strain, stress) point at a time.

    Stop once stress ≤ (1 − ``drop``) × peak stress and strain ≥ peak strain + ``past_peak``, and only
    after the peak passed ``min_peak_gpa`` (the first-local-maximum yield rule's threshold): a
    spring-like kirigami that carries < 1 GPa runs on to the maximum strain instead of stopping past
    a noise peak, as the yield rules (which ignore such peaks) expect.
    """

    def __init__(self, past_peak: float = 0.05, drop: float = 0.30,
                 min_peak_gpa: float = LOCAL_MAX_THRESHOLD_GPA) -> None:
        self.past_peak = past_peak
        self.drop = drop
        self.min_peak_gpa = min_peak_gpa
        self.peak_stress = -math.inf
        self.peak_strain = 0.0

    def update(self, strain: float, stress_gpa: float) -> bool:
        """Add a point; True when the run should stop."""
        if stress_gpa > self.peak_stress:
            self.peak_stress, self.peak_strain = stress_gpa, strain
            return False
        return (self.peak_stress > self.min_peak_gpa and stress_gpa <= (1.0 - self.drop) * self.peak_stress
                and strain >= self.peak_strain + self.past_peak)


def make_protocol(name: str, **params: Any) -> Protocol:
    """Build a protocol by name (``nvt``, ``nve``, ``npt``, ``tension``) from keyword parameters;
    parameters a protocol does not take are ignored when None, refused otherwise."""
    classes = {"nvt": NVT, "nve": NVE, "npt": NPT, "tension": Tension}
    if name not in classes:
        raise SagesnetError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    cls = classes[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    unused = sorted(k for k, v in params.items() if k not in fields and v is not None)
    if unused:
        raise SagesnetError(f"protocol {name} does not take {', '.join(unused)}; drop those options")
    return cls(**{k: v for k, v in params.items() if k in fields and v is not None})
