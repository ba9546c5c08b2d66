"""MD protocols → LAMMPS phases (no LAMMPS needed): commands, step counts, option errors."""

import pytest

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.md.protocols import NPT, NVE, NVT, Tension, make_protocol


def test_nvt_nve_npt_commands():
    (nvt,) = NVT(300.0, steps=1000).phases(dt_fs=0.5)
    assert nvt.steps == 1000
    assert nvt.commands == ("fix md_int all nvt temp 300.0 300.0 0.05",)  # Tdamp = 100 dt
    (nve,) = NVE(300.0, steps=10).phases(1.0)
    assert nve.commands == ("fix md_int all nve",)
    (npt,) = NPT(4.2, steps=10, pressure_bar=1.0, release=("x", "y")).phases(1.0)
    assert npt.commands == ("fix md_int all npt temp 4.2 4.2 0.1 x 1.0 1.0 1.0 y 1.0 1.0 1.0 couple none",)
    assert npt.pressure_bar == 1.0


def test_tension_is_relax_then_one_deform_run_to_max_strain():
    relax, deform = Tension(4.2, strain_rate_per_ps=0.01, max_strain=0.8, relax_ps=10.0).phases(1.0)
    assert relax.steps == 10_000 and "x 0.0 0.0 1.0 couple none" in relax.commands[0]
    assert deform.steps == 80_000  # 0.8 / (0.01 ps⁻¹ · 0.001 ps)
    assert "fix md_deform all deform 1 x erate 0.01 remap x" in deform.commands
    assert deform.early_stop and deform.strain_rate_per_ps == 0.01 and deform.deform_axis == "x"
    # --steps caps relax + stretch.
    _, capped = Tension(4.2, steps=12_000, relax_ps=10.0).phases(1.0)
    assert capped.steps == 2_000


@pytest.mark.parametrize("protocol, message", [
    (Tension(300.0, axis="z"), "axis"),
    (Tension(300.0, strain_rate_per_ps=-1.0), "strain rate"),
    (Tension(300.0, steps=100, relax_ps=1.0), "no steps for stretching"),
    (NVT(300.0), "--steps"),
    (NVT(-5.0, steps=10), "temperature"),
    (NPT(300.0, steps=10, release=("q",)), "release"),
])
def test_bad_protocol_options_are_one_line_errors(protocol, message):
    with pytest.raises(SagesnetError, match=message) as err:
        protocol.phases(1.0)
    assert "\n" not in str(err.value)


def test_make_protocol_ignores_unset_and_refuses_foreign_options():
    p = make_protocol("tension", temperature_K=4.2, strain_rate_per_ps=0.05, axis=None, pressure_bar=None)
    assert isinstance(p, Tension) and p.strain_rate_per_ps == 0.05 and p.axis == "x"
    assert p.params()["protocol"] == "tension"
    with pytest.raises(SagesnetError, match="does not take strain_rate_per_ps"):
        make_protocol("nvt", temperature_K=300.0, steps=10, strain_rate_per_ps=0.1)
    with pytest.raises(SagesnetError, match="unknown protocol"):
        make_protocol("nph", temperature_K=300.0)
