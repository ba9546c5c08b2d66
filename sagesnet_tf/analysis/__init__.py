"""Analysis of MD and learned-simulation results.

- :mod:`~sagesnet_tf.analysis.stress_strain`: sheet stress convention, Young's modulus, yield
  (benchmark and Hanakata rules), toughness.
- :mod:`~sagesnet_tf.analysis.structure_metrics`: minimum-image distances, bonds and the fraction
  of bonds kept (training's held-out rollout, ``evaluate``).
- :mod:`~sagesnet_tf.analysis.plots`: stress–strain and thermo PNGs (matplotlib Agg; imported on
  demand so this package stays light).
"""

from sagesnet_tf.analysis.stress_strain import (
    StressStrainSummary, nominal_thickness, nominal_width, sheet_stress_from_atoms, sheet_stress_from_pressure,
    summarize)

__all__ = ["StressStrainSummary", "nominal_thickness", "nominal_width", "sheet_stress_from_atoms",
           "sheet_stress_from_pressure", "summarize"]
