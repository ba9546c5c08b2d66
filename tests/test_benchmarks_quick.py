"""Quick kirigami + speed benchmark end to end: real LAMMPS, a real exported SavedModel."""

import json
import math
from pathlib import Path

import pytest

from sagesnet_tf.kirigami_tension import QUICK, KirigamiTension
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


def test_kirigami_reuses_a_lammps_reference(model_dir, tmp_path, monkeypatch, capsys):
    first = run_benchmarks(["kirigami"], model_dir, tmp_path / "first", quick=True, threads=1, progress=False)
    kir = first["suites"][0]
    pattern = next(p for p in kir["details"] if p != "settings")
    ref_md = tmp_path / "first" / f"kirigami_{pattern}" / "lammps"
    assert kir["details"][pattern]["lammps_reused"] is None
    # every run leaves a reference: the relaxed ribbon carries its nominal cross-section
    relaxed = read_extxyz_frames(ref_md / "relaxed.extxyz")[0]
    ribbon = QUICK.ribbon(pattern, kir["details"]["settings"]["periodic_y"])
    assert relaxed.info["nominal_width_A"] == pytest.approx(ribbon.info["nominal_width_A"])
    ref_manifest = (ref_md / "manifest.json").read_text()

    def no_lammps(*args, **kwargs):
        raise AssertionError("LAMMPS ran although a reference was given")

    monkeypatch.setattr(KirigamiTension, "run_lammps", no_lammps)
    second = run_benchmarks(["kirigami"], model_dir, tmp_path / "second", quick=True, threads=1, progress=False,
                            lammps_reference=tmp_path / "first")
    kir2 = second["suites"][0]
    assert kir2["details"][pattern]["lammps"] == kir["details"][pattern]["lammps"]  # same curve, same yield
    reused = kir2["details"][pattern]["lammps_reused"]
    assert reused["dir"] == str(tmp_path / "first")
    assert reused["created_utc"] == json.loads(ref_manifest)["created_utc"]
    copy = tmp_path / "second" / f"kirigami_{pattern}" / "lammps"
    assert (copy / "manifest.json").read_text() == ref_manifest
    assert (copy / "stress_strain.csv").read_bytes() == (ref_md / "stress_strain.csv").read_bytes()
    rows, rows2 = ({r["metric"]: r for r in k["rows"]} for k in (kir, kir2))
    stretch = rows2["wall time of the stretch"]
    # the reference's time, shown without a ratio: not measured side by side
    assert stretch["lammps"] == rows["wall time of the stretch"]["lammps"]
    assert stretch["error"] is None and stretch["note"] and rows["wall time of the stretch"]["note"] is None
    assert rows2["yield strain (10 % drop)"]["lammps"] == rows["yield strain (10 % drop)"]["lammps"]
    assert "LAMMPS reused from" in (tmp_path / "second" / "results.md").read_text()

    # a reference of another protocol is refused, naming the file and the field
    edited = json.loads(ref_manifest)
    edited["protocol"]["strain_rate_per_ps"] *= 2
    (ref_md / "manifest.json").write_text(json.dumps(edited))
    capsys.readouterr()  # the runs' messages so far
    for suite, says in (("kirigami", [str(ref_md / "manifest.json"), "protocol.strain_rate_per_ps"]),
                        ("speed", ["--suite kirigami only"])):
        with pytest.raises(SystemExit) as exit_info:
            cli_main(["--suite", suite, "--quick", "--model", model_dir, "--out", str(tmp_path / "third"),
                      "--lammps-reference", str(tmp_path / "first")], standalone_mode=True)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith("Error: ") and err.count("\n") == 1 and all(s in err for s in says)
