"""Quick kirigami + speed benchmark end to end: real LAMMPS, a real exported SavedModel."""

import json
import math
from pathlib import Path

import pytest

from sagesnet_tf.kirigami_tension import QUICK
from benchmarks.run_benchmarks import main as cli_main, run_benchmarks
from sagesnet_tf.export import export_model
from sagesnet_tf.io.extxyz import read_extxyz_frames
from sagesnet_tf.model import SagesnetConfig, SagesnetModel

SHIPPED = Path(__file__).resolve().parents[1] / "exported_models" / "sagesnet_graphene"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    if any((p / "saved_model.pb").is_file() for p in SHIPPED.glob("*")):
        return str(SHIPPED)
    # untrained: atoms coast at constant velocity; 8 slots so that the voxels never overflow
    model = SagesnetModel(SagesnetConfig(latent_dim=8, hidden=8, depth=1, encoder_layers=1, coarse_levels=(), slots=8))
    model.build()
    return str(export_model(model, tmp_path_factory.mktemp("models") / "untrained"))


def test_quick_kirigami_and_speed(model_dir, tmp_path):
    doc = run_benchmarks(["kirigami", "speed"], model_dir, tmp_path, quick=True, threads=1, progress=False)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["suites"] == json.loads(json.dumps(doc["suites"]))
    kir, spd = on_disk["suites"]
    rows = {r["metric"]: r for r in kir["rows"]}
    for metric in ("max stress", "wall time of the stretch"):
        assert math.isfinite(rows[metric]["lammps"]) and math.isfinite(rows[metric]["sagesnet"])
    # the relaxation is LAMMPS's alone; the stretch is timed on both sides
    assert rows["LAMMPS wall time incl. relaxation"]["lammps"] > rows["wall time of the stretch"]["lammps"] > 0
    assert rows["strain per wall second of the stretch (ratio: SAGESnet speed-up)"]["lammps"] > 0
    # LAMMPS stretched a real ribbon: it carries load
    assert rows["max stress"]["lammps"] > 1.0
    # the targets over the patterns (one here): yield-strain MAE and the stress error up to yield
    assert {"yield strain mean absolute error (10 % drop)", "yield strain mean absolute error (first max)",
            "worst stress error up to yield (fraction of the peak)"} <= set(rows)
    assert rows["yield strain mean absolute error (10 % drop)"]["case"] == "all 1 patterns"
    curve_error = rows["stress error up to yield (max |Δσ| / LAMMPS peak, 10 % drop yield)"]["sagesnet"]
    assert curve_error is None or curve_error >= 0
    ratio = [r for r in spd["rows"] if r["error_kind"] == "ratio"]
    assert ratio and all(r["lammps"] > 0 and r["sagesnet"] > 0 and math.isfinite(r["error"]) for r in ratio)
    table = (tmp_path / "results.md").read_text()
    assert "| LAMMPS | SAGESnet |" in table
    assert f"{rows['max stress']['lammps']:.4g}" in table and f"{ratio[0]['sagesnet']:.4g}" in table
    assert (tmp_path / "kirigami_stress_strain.png").stat().st_size > 0
    # SAGESnet's stress is over the ribbon's nominal cross-section, as LAMMPS's
    pattern = next(p for p in kir["details"] if p != "settings")
    first = read_extxyz_frames(tmp_path / f"kirigami_{pattern}" / "sagesnet" / "trajectory.extxyz")[0]
    ribbon = QUICK.ribbon(pattern, kir["details"]["settings"]["periodic_y"])
    assert first.info["nominal_width_A"] == pytest.approx(ribbon.info["nominal_width_A"])
    assert first.info["nominal_width_A"] < first.cell[1, 1] - 10.0  # the box holds vacuum across the ribbon


def test_unknown_model_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--suite", "speed", "--quick", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                 standalone_mode=True)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("Error: ")
