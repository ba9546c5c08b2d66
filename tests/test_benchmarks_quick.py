"""Quick kirigami + speed benchmark end to end: real LAMMPS, a real exported SavedModel."""

import json
import math
from pathlib import Path

import pytest

from benchmarks.run_benchmarks import main as cli_main, run_benchmarks
from sagesnet_tf.export import export_model
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
    ratio = [r for r in spd["rows"] if r["error_kind"] == "ratio"]
    assert ratio and all(r["lammps"] > 0 and r["sagesnet"] > 0 and math.isfinite(r["error"]) for r in ratio)
    table = (tmp_path / "results.md").read_text()
    assert "| LAMMPS | SAGESnet |" in table
    assert f"{rows['max stress']['lammps']:.4g}" in table and f"{ratio[0]['sagesnet']:.4g}" in table
    assert (tmp_path / "kirigami_stress_strain.png").stat().st_size > 0


def test_unknown_model_is_a_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--suite", "speed", "--quick", "--model", str(tmp_path / "nope"), "--out", str(tmp_path / "o")],
                 standalone_mode=True)
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("Error: ")
