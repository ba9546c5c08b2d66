"""PNG plots of MD (and, later, learned-simulation) results: stress–strain and thermo.

Both plot functions take plain arrays/columns so the ``simulate`` outputs can reuse them. Every
PNG the project writes goes through :func:`save_figure` (atomic: temporary file in the same
directory, then ``os.replace``).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (backend chosen first)
import numpy as np  # noqa: E402

from sagesnet_tf.analysis.stress_strain import StressStrainSummary  # noqa: E402
from sagesnet_tf.io import atomic_output  # noqa: E402


def save_figure(fig: "plt.Figure", path, dpi: int = 120) -> None:
    """Write ``fig`` as PNG to ``path`` atomically and close it."""
    try:
        with atomic_output(path, "wb") as handle:
            fig.savefig(handle, dpi=dpi, format="png")
    finally:
        plt.close(fig)


def plot_stress_strain(strain: Sequence[float], stress_gpa: Sequence[float], path: str,
                       summary: StressStrainSummary | None = None, title: str = "Stress–strain",
                       label: str = "MD") -> None:
    """Stress (GPa) against engineering strain, with the Young's-modulus fit and yield marked.

    Args:
        strain: (T,) engineering strain.
        stress_gpa: (T,) sheet stress, GPa.
        path: output PNG.
        summary: optional result of :func:`~sagesnet_tf.analysis.stress_strain.summarize`.
    """
    fig, ax = plt.subplots(figsize=(6, 4.2))
    ax.plot(strain, stress_gpa, lw=1.2, label=label)
    if summary is not None:
        if summary.youngs_modulus_GPa is not None:
            e = np.linspace(0.0, summary.fit_max_strain * 2, 10)
            ax.plot(e, summary.youngs_modulus_GPa * e, "k--", lw=0.8,
                    label=f"E = {summary.youngs_modulus_GPa / 1000:.3f} TPa (fit ε ≤ {summary.fit_max_strain:g})")
        if summary.yield_strain is not None:
            ax.plot([summary.yield_strain], [summary.yield_stress_GPa], "rv",
                    label=f"yield ({summary.yield_rule}): ε = {summary.yield_strain:.3f}, "
                          f"σ = {summary.yield_stress_GPa:.0f} GPa")
        if summary.local_max_yield_strain is not None:
            ax.plot([summary.local_max_yield_strain], [summary.local_max_yield_stress_GPa], "g^",
                    label=f"first local max: ε = {summary.local_max_yield_strain:.3f}")
    ax.set_xlabel("engineering strain")
    ax.set_ylabel("sheet stress (GPa, t = 3.35 Å)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    save_figure(fig, path)


#: Thermo columns plotted by :func:`plot_thermo` (panel title, column names), when present.
_THERMO_PANELS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("temperature (K)", ("temperature_K", "temperature_inplane_K", "temperature_outofplane_K")),
    ("energy (eV)", ("potential_energy_eV", "total_energy_eV")),
    ("pressure (bar)", ("pxx_bar", "pyy_bar", "pzz_bar")),
    ("sheet stress (GPa)", ("stress_xx_GPa", "stress_yy_GPa")),
)


def plot_thermo(thermo: Mapping[str, Sequence[float]], path: str, title: str = "Thermo") -> None:
    """Panels of temperature, energies, pressure and sheet stress against ``time_ps``.

    Args:
        thermo: columns (each (T,)) including ``time_ps``; panels whose columns are absent are skipped.
        path: output PNG.
    """
    panels = [(name, [c for c in cols if c in thermo]) for name, cols in _THERMO_PANELS]
    panels = [(name, cols) for name, cols in panels if cols]
    fig, axes = plt.subplots(len(panels), 1, figsize=(6, 2.0 * len(panels) + 0.6), sharex=True, squeeze=False)
    t = np.asarray(thermo["time_ps"])
    for ax, (name, cols) in zip(axes[:, 0], panels):
        for c in cols:
            ax.plot(t, np.asarray(thermo[c]), lw=1.0, label=c)
        ax.set_ylabel(name, fontsize=8)
        ax.grid(alpha=0.3)
        if len(cols) > 1:
            ax.legend(fontsize=7)
    axes[-1, 0].set_xlabel("time (ps)")
    axes[0, 0].set_title(title)
    fig.tight_layout()
    save_figure(fig, path)
