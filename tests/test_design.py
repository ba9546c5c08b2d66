"""`sagesnet-tf design`: the search on synthetic distances, and the shipped model over tiny kirigami
ribbons (the quick protocol stretched to 0.03, as tests/test_screen.py) with a budget of 3: ranked
candidates, a real `kill -9` and resume that evaluates no pattern twice, --start-from, bad targets.

Model runs in this process and in the killed subprocess use TensorFlow's default thread settings,
on which their sums depend (the resumed design is compared with the uninterrupted one)."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from sagesnet_tf.cli.main import main
from sagesnet_tf.design import CANDIDATE_COLUMNS, search
from sagesnet_tf.screen import severed

from killing import kill_9_when, without_wall

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "exported_models" / "sagesnet_graphene"
#: target 0.02 under a 0.03 max strain: some tiny ribbons yield (at small peaks) and some do not
OPTIONS = ["--target-yield-strain", "0.02", "--model", str(MODEL), "--quick", "--max-strain", "0.03", "--budget", "3",
           "--candidates", "2", "--no-progress"]

needs_model = pytest.mark.skipif(not MODEL.is_dir(), reason="no shipped model")


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_search_is_deterministic_new_and_goes_to_the_target():
    goal = "010010100100010"

    def run(known, budget, seed=0):
        calls = []

        def evaluate(pattern):
            calls.append(pattern)
            return math.inf if pattern[0] == "1" else sum(a != b for a, b in zip(pattern, goal))  # "1…": no yield

        return list(search(evaluate, dict(known), budget, seed)), calls

    found, calls = run({}, 80)
    assert found == calls and len(set(found)) == 80 and not any(severed(p) for p in found)
    assert found == run({}, 80)[0] and found != run({}, 80, seed=1)[0]  # deterministic given the seed
    assert goal in found  # Hamming distance 15 at most: the flips walk there within the budget
    known = {"010010100100011": 1.0, "000000000000000": 5.0}
    found, _ = run(known, 10)
    assert not set(known) & set(found)  # a start screen's patterns are never evaluated again


@pytest.fixture(scope="module")
def designed(tmp_path_factory) -> tuple[Path, str]:
    """An uninterrupted design (budget 3) and what it printed."""
    out = tmp_path_factory.mktemp("design") / "out"
    proc = subprocess.run([sys.executable, "-m", "sagesnet_tf.cli.main", "design", *OPTIONS, "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-800:]
    return out, proc.stdout


@needs_model
def test_design_writes_candidates_ranked_by_distance(designed):
    out, printed = designed
    with open(out / "candidates.csv", newline="") as handle:
        assert next(csv.reader(handle)) == list(CANDIDATE_COLUMNS)
    candidates = _rows(out / "candidates.csv")
    model = [r for r in _rows(out / "results.csv") if r["source"] == "model"]
    assert len(model) == 3 == len({r["pattern"] for r in model}) == len(candidates)
    assert [int(c["rank"]) for c in candidates] == [1, 2, 3]
    distances = [float(c["distance"]) if c["distance"] else math.inf for c in candidates]
    assert distances == sorted(distances)
    by_pattern = {r["pattern"]: r for r in model}
    for c in candidates:
        row = by_pattern[c["pattern"]]
        assert c["yield_strain"] == row["yield_strain"] and c["lammps_yield_strain"] == ""
        if row["yield_strain"]:
            assert float(c["distance"]) == pytest.approx(abs(float(row["yield_strain"]) - 0.02))
        else:
            assert c["distance"] == ""  # no yield: no distance, ranked last
        assert model[int(c["evaluation"]) - 1]["pattern"] == c["pattern"]
    assert (out / "design_search.png").stat().st_size > 0 and not (out / "work").exists()
    summary = json.loads((out / "design.json").read_text())
    assert summary["evaluated"] == 3 and [t["pattern"] for t in summary["top"]] == [c["pattern"] for c in
                                                                                   candidates[:2]]
    assert all(c["pattern"] in printed for c in candidates[:2])  # the top K printed


@needs_model
def test_design_resumes_after_kill_without_evaluating_again(designed, tmp_path):
    reference, _ = designed
    out = tmp_path / "out"

    def running_second() -> bool:  # one row written and the next run has saved a state to resume from
        return ((out / "results.csv").is_file() and len(_rows(out / "results.csv")) == 1
                and any((out / "work").glob("*_model/state.npz")))

    kill_9_when(["design", *OPTIONS, "--out", str(out)], running_second, "design")
    before = (out / "results.csv").read_text()
    assert main(["design", *OPTIONS, "--out", str(out)]) == 0
    after = (out / "results.csv").read_text()
    assert after.startswith(before)  # the finished row is kept as it was (wall time too): not recomputed
    assert without_wall(_rows(out / "results.csv")) == without_wall(_rows(reference / "results.csv"))
    assert (out / "candidates.csv").read_text() == (reference / "candidates.csv").read_text()
    assert main(["design", *OPTIONS, "--out", str(out)]) == 0
    assert (out / "results.csv").read_text() == after  # a finished design run again evaluates nothing


@needs_model
def test_start_from_a_screen(designed, tmp_path, capsys):
    reference, _ = designed
    start = [r["pattern"] for r in _rows(reference / "results.csv")]
    out = tmp_path / "out"
    options = [o if o != "3" else "1" for o in OPTIONS]  # budget 1
    assert main(["design", *options, "--start-from", str(reference), "--out", str(out)]) == 0
    rows = _rows(out / "results.csv")
    assert len(rows) == 1 and rows[0]["pattern"] not in start  # the screen's patterns are not evaluated again
    candidates = _rows(out / "candidates.csv")
    assert len(candidates) == 4 and {c["pattern"] for c in candidates} == {*start, rows[0]["pattern"]}
    assert sum(c["evaluation"] == "" for c in candidates) == 3
    capsys.readouterr()
    assert main(["design", *options, "--max-strain", "0.04", "--start-from", str(reference),
                 "--out", str(tmp_path / "other")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "other settings (max_strain)" in err and not (tmp_path / "other").exists()


def test_bad_targets_are_one_line_errors(tmp_path, capsys):
    for options, what in ((["--target-yield-strain", "-0.1"], "outside (0, 0.8)"),
                          (["--target-yield-strain", "0.6", "--quick"], "outside (0, 0.5)"),
                          (["--target-yield-stress", "1"], "outside (1.5, 140] GPa"),
                          (["--target-yield-stress", "500"], "outside (1.5, 140] GPa"),
                          ([], "exactly one of"),
                          (["--target-yield-strain", "0.1", "--target-yield-stress", "10"], "exactly one of"),
                          (["--target-yield-strain", "nan"], "not a finite number")):
        assert main(["design", *options, "--out", str(tmp_path / "o"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("Error: ") and what in err
        assert not (tmp_path / "o").exists()
