"""Sheet stress, Young's modulus, yield and toughness of 2D carbon under tension.

**Stress convention.** A sheet's stress along axis a is the force per *nominal* cross-section
``W · t`` (``t`` = 3.35 Å graphene thickness, ``W`` = nominal width across the load), tension
positive, in GPa::

    σ_a = Σᵢ Sᵢ,aa / (L_a · W · t) = −P_aa · V / (L_a · W · t)

with Sᵢ,aa LAMMPS' per-atom stress × volume (``compute stress/atom``, bar·Å³: its sum over atoms is
−P·V, so it is positive in tension), P_aa the pressure-tensor component (bar, includes the kinetic
part), V the box volume (Å³) and L_a the box length along a (Å). For a sheet in a vacuum-padded
box this equals the benchmark's ``σ = −p_xx · L_y · L_z / (W · 3.35 Å)``. ``W`` is
``atoms.info["nominal_width_A"]`` when the builder set it (a ribbon in a box with vacuum), else the
cell length across the load (a sheet periodic in-plane). 1 bar = 10⁻⁴ GPa.

**Young's modulus**: least-squares slope (with intercept) of σ against ε for ε ≤ 0.02 (default),
where AIREBO graphene is linear to within a few %; GPa.

**Yield**, two rules (index into the curve, or None when the rule finds nothing):

- benchmark (default): the running maximum of stress at the first point where stress falls
  10 % below that running maximum — robust to thermal noise;
- Hanakata et al. (PRL 2018): the first point with stress > threshold (1.5 GPa) that is higher
  than the previous point and the next two.

**Toughness**: trapezoidal ∫σ dε from the first point to the yield point, GPa (= GJ/m³).

**Curve error to yield** (model against MD): the largest stress difference up to the MD's yield
strain, as a fraction of the MD's peak stress there.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
#: Nominal thickness of a graphene sheet (Å): t of the stress convention (force per cross-section W·t).
SHEET_THICKNESS_A = 3.35
BAR_TO_GPA = 1e-4
#: Strain range (0 … this) of the linear fit for Young's modulus.
YOUNG_FIT_MAX_STRAIN = 0.02
#: Benchmark yield rule: stress this fraction below its running maximum.
YIELD_DROP = 0.10
#: Hanakata's first-local-maximum rule: stress threshold, GPa.
LOCAL_MAX_THRESHOLD_GPA = 1.5

_AXES = {"x": 0, "y": 1}
#: In-plane axis across the load: the width of a sheet loaded along the key.
_ACROSS = {"x": 1, "y": 0}


def axis_index(axis: str) -> int:
    """0 for ``"x"``, 1 for ``"y"``; sheets lie in the xy plane."""
    if axis not in _AXES:
        raise SagesnetError(f"sheet stress axis must be 'x' or 'y' (sheets lie in the xy plane); got {axis!r}")
    return _AXES[axis]


def nominal_width(atoms: Atoms, axis: str = "x") -> float:
    """Nominal width W (Å) of a sheet loaded along ``axis``: ``info["nominal_width_A"]`` when set
    (only meaningful for loading along x, as the ribbon builders define it), else the cell length
    across the load."""
    if axis_index(axis) == 0 and "nominal_width_A" in atoms.info:
        return float(atoms.info["nominal_width_A"])
    return float(np.linalg.norm(atoms.cell[_ACROSS[axis]]))


def nominal_thickness(atoms: Atoms) -> float:
    """Sheet thickness t (Å): ``info["nominal_thickness_A"]`` when set, else 3.35 Å (graphene)."""
    return float(atoms.info.get("nominal_thickness_A", SHEET_THICKNESS_A))


def sheet_stress_gpa(stress_volume_bar_A3: np.ndarray, length_A: np.ndarray, width_A: float,
                     thickness_A: float = SHEET_THICKNESS_A) -> np.ndarray:
    """σ (GPa, tension positive) from Σᵢ Sᵢ,aa = −P_aa·V (bar·Å³) and the box length L_a (Å).

    Args:
        stress_volume_bar_A3: (T,) summed per-atom stress × volume along the load, bar·Å³.
        length_A: (T,) box length along the load, Å.
        width_A: nominal width across the load, Å.
        thickness_A: sheet thickness, Å (3.35 for graphene).
    Returns:
        (T,) sheet stress, GPa.
    """
    if width_A <= 0 or thickness_A <= 0:
        raise SagesnetError(f"sheet width and thickness must be positive (got W={width_A}, t={thickness_A})")
    return np.asarray(stress_volume_bar_A3) * BAR_TO_GPA / (np.asarray(length_A) * width_A * thickness_A)


def sheet_stress_from_pressure(p_aa_bar: np.ndarray, cell: np.ndarray, axis: str, width_A: float,
                               thickness_A: float = SHEET_THICKNESS_A) -> np.ndarray:
    """σ (GPa) from the pressure component P_aa (T,) in bar and the box (T, 3, 3) in Å."""
    cell = np.asarray(cell).reshape(-1, 3, 3)
    volume = np.abs(np.linalg.det(cell))
    length = np.linalg.norm(cell[:, axis_index(axis)], axis=1)
    return sheet_stress_gpa(-np.asarray(p_aa_bar) * volume, length, width_A, thickness_A)


def sheet_stress_from_atoms(stress: np.ndarray, cell: np.ndarray, axis: str, width_A: float,
                            thickness_A: float = SHEET_THICKNESS_A) -> np.ndarray:
    """σ (GPa) from per-atom stress × volume (T, N, 6) in bar·Å³ and the box (T, 3, 3) in Å."""
    a = axis_index(axis)
    cell = np.asarray(cell).reshape(-1, 3, 3)
    return sheet_stress_gpa(np.asarray(stress)[:, :, a].sum(axis=1), np.linalg.norm(cell[:, a], axis=1),
                            width_A, thickness_A)


def youngs_modulus(strain: np.ndarray, stress_gpa: np.ndarray,
                   max_strain: float = YOUNG_FIT_MAX_STRAIN) -> float:
    """Slope (GPa) of a linear fit σ = E ε + c over points with 0 ≤ ε ≤ ``max_strain``."""
    strain, stress_gpa = np.asarray(strain, float), np.asarray(stress_gpa, float)
    mask = (strain >= 0) & (strain <= max_strain)
    if mask.sum() < 3 or np.ptp(strain[mask]) <= 0:
        raise SagesnetError(
            f"only {int(mask.sum())} stress–strain point(s) lie at strain ≤ {max_strain}; record more often "
            "(smaller --record-every) or stretch further to fit Young's modulus")
    slope, _ = np.polyfit(strain[mask], stress_gpa[mask], 1)
    return float(slope)


def yield_index_drop(stress_gpa: np.ndarray, drop: float = YIELD_DROP,
                     threshold_gpa: float = LOCAL_MAX_THRESHOLD_GPA) -> int | None:
    """Benchmark rule: index of the running maximum at the first point ``drop`` below it, once the
    running maximum is above ``threshold_gpa`` (below it, the thermal noise of an unloaded ribbon
    — tenths of a GPa — would trip the rule at zero strain)."""
    stress_gpa = np.asarray(stress_gpa, float)
    best = 0
    for i, s in enumerate(stress_gpa):
        if s > stress_gpa[best]:
            best = i
        elif stress_gpa[best] > threshold_gpa and s < (1.0 - drop) * stress_gpa[best]:
            return best
    return None


def yield_index_local_max(stress_gpa: np.ndarray, threshold_gpa: float = LOCAL_MAX_THRESHOLD_GPA) -> int | None:
    """Hanakata's rule: first i with σᵢ > threshold, σᵢ > σᵢ₋₁ and σᵢ > σᵢ₊₁, σᵢ₊₂."""
    s = np.asarray(stress_gpa, float)
    for i in range(1, len(s) - 2):
        if s[i] > threshold_gpa and s[i] > s[i - 1] and s[i] > s[i + 1] and s[i] > s[i + 2]:
            return i
    return None


def toughness(strain: np.ndarray, stress_gpa: np.ndarray, upto: int) -> float:
    """∫σ dε (GPa) by the trapezoid rule from the first point to index ``upto`` inclusive."""
    e, s = np.asarray(strain, float)[: upto + 1], np.asarray(stress_gpa, float)[: upto + 1]
    return float(np.sum(0.5 * (s[1:] + s[:-1]) * np.diff(e)))


def curve_error_to_yield(ref_strain, ref_stress_gpa, strain, stress_gpa, yield_strain: float) -> float | None:
    """How far a curve strays from a reference one up to the reference's yield: the largest
    |σ(ε) − σ_ref(ε)| over the reference's points with ε ≤ ``yield_strain`` that the curve reaches
    (σ interpolated linearly at those strains), as a fraction of the reference's peak stress over the
    same points. None when the curve reaches none of them or that peak is not positive."""
    ref_strain, ref_stress = np.asarray(ref_strain, float), np.asarray(ref_stress_gpa, float)
    strain, stress = np.asarray(strain, float), np.asarray(stress_gpa, float)
    upto = ref_strain <= yield_strain
    peak = ref_stress[upto].max() if upto.any() else 0.0
    points = upto & (ref_strain >= strain[0]) & (ref_strain <= strain[-1])
    if not points.any() or peak <= 0:
        return None
    return float(np.abs(np.interp(ref_strain[points], strain, stress) - ref_stress[points]).max() / peak)


@dataclasses.dataclass
class StressStrainSummary:
    """Mechanical properties of one curve (GPa; strains dimensionless; None where undefined)."""

    youngs_modulus_GPa: float | None
    yield_strain: float | None
    yield_stress_GPa: float | None
    toughness_GPa: float | None
    local_max_yield_strain: float | None
    local_max_yield_stress_GPa: float | None
    max_stress_GPa: float
    fit_max_strain: float = YOUNG_FIT_MAX_STRAIN
    yield_rule: str = f"running max above {LOCAL_MAX_THRESHOLD_GPA:g} GPa at its first {int(YIELD_DROP * 100)} % drop"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def summarize(strain: np.ndarray, stress_gpa: np.ndarray, fit_max_strain: float = YOUNG_FIT_MAX_STRAIN,
              drop: float = YIELD_DROP, threshold_gpa: float = LOCAL_MAX_THRESHOLD_GPA) -> StressStrainSummary:
    """Young's modulus, both yield points and toughness of a stress–strain curve.

    Args:
        strain: (T,) engineering strain, increasing.
        stress_gpa: (T,) sheet stress, GPa.
    """
    strain, stress_gpa = np.asarray(strain, float), np.asarray(stress_gpa, float)
    if strain.shape != stress_gpa.shape or strain.ndim != 1 or len(strain) == 0:
        raise SagesnetError("a stress–strain curve needs two 1-D arrays of equal, non-zero length")
    try:
        modulus = youngs_modulus(strain, stress_gpa, fit_max_strain)
    except SagesnetError:
        modulus = None
    iy = yield_index_drop(stress_gpa, drop, threshold_gpa)
    il = yield_index_local_max(stress_gpa, threshold_gpa)
    return StressStrainSummary(
        youngs_modulus_GPa=modulus,
        yield_strain=None if iy is None else float(strain[iy]),
        yield_stress_GPa=None if iy is None else float(stress_gpa[iy]),
        toughness_GPa=None if iy is None else toughness(strain, stress_gpa, iy),
        local_max_yield_strain=None if il is None else float(strain[il]),
        local_max_yield_stress_GPa=None if il is None else float(stress_gpa[il]),
        max_stress_GPa=float(stress_gpa.max()),
        fit_max_strain=fit_max_strain,
        yield_rule=f"running max at first {drop * 100:g} % drop")
