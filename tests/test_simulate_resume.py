"""`simulate` killed with SIGKILL at random moments leaves only complete files, and `--resume`
carries it to exactly the outputs of an uninterrupted run (real processes, the shipped model).

One test: the killed runs run in processes of their own beside the uninterrupted runs (most of a
run here is loading TensorFlow and the model). Another stops a tension run at chosen moments in
its equilibration, at the switch to the run and after it (in this process), and resumes it."""

import csv
import json
import random
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from sagesnet_tf.cli.main import main
from sagesnet_tf.io import read_structure
from sagesnet_tf.io.extxyz import read_extxyz_frames
from sagesnet_tf import simulate as simulate_module
from sagesnet_tf.rollout import Rollout
from sagesnet_tf.simulate import EQUILIBRATION_FILE, STATE_FILE, THERMO_COLUMNS, simulate

from killing import kill_9_when

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "graphene_10x6_300K.extxyz"
MODEL = ROOT / "exported_models" / "sagesnet_graphene"
#: NVT at 300 K (Langevin: its random numbers come from the seed and the step)
RUN = ["--model", str(MODEL), "--structure", str(EXAMPLE), "--temperature", "300", "--no-progress"]
FINE = RUN + ["--steps", "60", "--every", "2"]
COARSE = RUN + ["--steps", "48", "--every", "4", "--scale", "1"]
#: manifest keys that differ between an uninterrupted run and a resumed one
WALL_KEYS = ("wall_s", "resumed_at_steps")
N_ATOMS = len(read_structure(EXAMPLE))
#: the kills' random delays come from it (named in every failure message)
SEED = random.randrange(1_000_000)

pytestmark = pytest.mark.skipif(not MODEL.is_dir(), reason="no shipped model")


def cli(args) -> None:
    """A run to the end, in this process (cheaper than a new one: no TensorFlow start-up; the same
    thread settings as the killed runs, on which TensorFlow's sums depend)."""
    assert main(["simulate", *args]) == 0


def n_frames(path: Path) -> int:
    """Frames in a trajectory of whole frames (cheap enough to poll)."""
    return path.read_bytes().count(b"\n") // (N_ATOMS + 2) if path.is_file() else 0


def run_and_kill(args, out: Path, at_least: int, rng: random.Random) -> int:
    """Run the CLI, SIGKILL it a random 0–1 s after ``out`` holds ``at_least`` frames (or once it
    holds 4 more), and check that every file there is whole; returns the frames on disk."""
    trajectory = out / "trajectory.extxyz"
    kill_9_when(["simulate", *args], lambda: n_frames(trajectory) >= at_least,
                f"simulate --out {out.name} (seed {SEED}; {at_least} frames)", timeout_s=240.0,
                delay_s=rng.uniform(0.0, 1.0), enough=lambda: n_frames(trajectory) >= at_least + 4)
    return check_complete(out)


def check_complete(out: Path) -> int:
    """Every file in ``out`` parses whole and the saved state follows frames on disk; returns the frames."""
    frames = read_extxyz_frames(out / "trajectory.extxyz", validate=True)
    assert all(len(f) == N_ATOMS for f in frames)
    with open(out / "thermo.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert tuple(rows[0]) == THERMO_COLUMNS
    assert all(len(r) == len(THERMO_COLUMNS) and all(r) for r in rows[1:]), "a partial thermo row"
    # a save writes the frames before their rows: rows never run ahead of frames
    assert [int(r[0]) for r in rows[1:]] == [f.info["step"] for f in frames[:len(rows) - 1]]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "running"
    with np.load(out / STATE_FILE) as state:
        assert manifest["steps_done"] <= int(state["step"]) <= frames[-1].info["step"]
        assert int(state["n_frames"]) <= len(frames) and state["positions"].dtype == np.float32
    assert (out / "thermo.png").is_file()
    return len(frames)


def fine_chain(out: Path, stopped: Path, rng: random.Random) -> int:
    """Killed, resumed and killed again; a copy of the first killed state goes to ``stopped``.
    Returns the resumes the run will have had."""
    first = run_and_kill(FINE + ["--out", str(out)], out, 2, rng)
    shutil.copytree(out, stopped)
    run_and_kill(FINE + ["--out", str(out), "--resume"], out, first + 2, rng)
    return 2


def coarse_chain(out: Path, rng: random.Random) -> int:
    """Killed; then as if killed right after a save wrote a frame and its row but not the state
    after them, and in the middle of writing a file."""
    run_and_kill(COARSE + ["--out", str(out)], out, 2, rng)
    text = (out / "trajectory.extxyz").read_text()
    last_frame = "\n".join(text.splitlines()[-(N_ATOMS + 2):]) + "\n"
    with open(out / "trajectory.extxyz", "a") as handle:
        handle.write(last_frame)
    with open(out / "thermo.csv", "a") as handle:
        handle.write((out / "thermo.csv").read_text().splitlines()[-1] + "\n")
    (out / ".trajectory.extxyz.x1y2.tmp").write_text(last_frame[:100])
    return 1


def assert_same_run(out: Path, ref: Path, resumes: int) -> None:
    for name in ("trajectory.extxyz", "thermo.csv"):
        assert (out / name).read_bytes() == (ref / name).read_bytes(), f"{name} differs from the uninterrupted run"
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (out, ref)]
    assert len(manifests[0]["resumed_at_steps"]) == resumes and "resumed_at_steps" not in manifests[1]
    same = [{k: v for k, v in m.items() if k not in WALL_KEYS} for m in manifests]
    assert same[0] == same[1] and same[0]["status"] == "completed"
    assert not (out / STATE_FILE).exists() and not list(out.glob(".*"))
    assert (out / "thermo.png").is_file()


def test_kill_and_resume_equals_uninterrupted_run(tmp_path, capsys):
    rng = random.Random(SEED)
    stopped = tmp_path / "stopped"
    with ThreadPoolExecutor(2) as pool:  # the killed runs in their processes, the others in this one
        fine = pool.submit(fine_chain, tmp_path / "fine", stopped, random.Random(rng.random()))
        coarse = pool.submit(coarse_chain, tmp_path / "coarse", random.Random(rng.random()))
        cli(FINE + ["--out", str(tmp_path / "fine_ref")])
        cli(COARSE + ["--out", str(tmp_path / "coarse_ref")])
        for job, args, name in ((coarse, COARSE, "coarse"), (fine, FINE, "fine")):
            resumes = job.result()
            cli(args + ["--out", str(tmp_path / name), "--resume"])
            assert_same_run(tmp_path / name, tmp_path / f"{name}_ref", resumes)
    capsys.readouterr()

    def refused(args, out):
        assert main(["simulate", *args, "--out", str(out), "--resume"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1, err
        return err

    assert "holds no run to resume" in refused(FINE, tmp_path / "empty")
    assert "already finished (completed); nothing to do" in refused(FINE, tmp_path / "fine_ref")
    assert "every was 2, now 3" in refused(FINE[:-1] + ["3"], stopped)
    other = tmp_path / "other.extxyz"
    other.write_text(EXAMPLE.read_text().replace("step=2000", "step=2001", 1))
    assert "the structure differs" in refused([str(other) if a == str(EXAMPLE) else a for a in FINE], stopped)
    assert "--overwrite replaces it" in refused(FINE + ["--overwrite"], stopped)


class Killed(BaseException):
    """Stands for a kill: nothing in simulate catches it, so the files stay as the last save left them."""


def kill_at(monkeypatch, owner, name: str, when) -> None:
    """Make ``owner.name`` raise :class:`Killed` at the call for which ``when(n, args)`` is true
    (n: the calls so far, this one included)."""
    original, calls = getattr(owner, name), [0]

    def wrapper(*args, **kwargs):
        calls[0] += 1
        if when(calls[0], args):
            raise Killed
        return original(*args, **kwargs)
    monkeypatch.setattr(owner, name, wrapper)


def test_a_tension_run_resumes_across_its_equilibration(tmp_path, monkeypatch):
    """Equilibration 0.02 ps = 10 steps Δ (5 calls of 2 steps, NVT: Langevin numbers from the step),
    then 16 steps of tension: stopped in the equilibration (after 2 calls), at the switch to the run
    (its first frame not yet recorded), right after it (the run's first call) and in the run; each
    resumed equals the uninterrupted run, equilibration.csv included."""
    structure = read_structure(EXAMPLE)

    def run(out: Path, resume: bool = False) -> dict:
        return simulate(structure, out, model=MODEL, temperature_K=300.0, strain_rate=0.05, equilibrate_ps=0.02,
                        steps=16, every=2, progress=False, resume=resume)

    run(tmp_path / "ref")
    ref_rows = list(csv.reader(open(tmp_path / "ref" / EQUILIBRATION_FILE)))
    assert [int(r[0]) for r in ref_rows[1:]] == [0, 2, 4, 6, 8, 10]
    kills = {"equilibration": (Rollout, "_call", lambda n, args: n == 3),
             "switch": (simulate_module, "_frame", lambda n, args: n > 1 and args[4] == 0),
             "first_call": (Rollout, "_call", lambda n, args: n == 6),
             "run": (Rollout, "_call", lambda n, args: n == 9)}
    for name, (owner, attribute, when) in kills.items():
        out = tmp_path / name
        with monkeypatch.context() as patch:
            kill_at(patch, owner, attribute, when)
            with pytest.raises(Killed):
                run(out)
        assert json.loads((out / "manifest.json").read_text())["status"] == "running" and (out / STATE_FILE).is_file()
        manifest = run(out, resume=True)
        for file in ("trajectory.extxyz", "thermo.csv", EQUILIBRATION_FILE):
            assert (out / file).read_bytes() == (tmp_path / "ref" / file).read_bytes(), f"{name}: {file} differs"
        reference = json.loads((tmp_path / "ref" / "manifest.json").read_text())
        assert manifest["equilibration"].pop("wall_s") > 0 and reference["equilibration"].pop("wall_s") > 0
        assert {k: v for k, v in manifest.items() if k not in WALL_KEYS} == \
            {k: v for k, v in reference.items() if k not in WALL_KEYS}
        assert len(manifest["resumed_at_steps"]) == 1 and not (out / STATE_FILE).exists()
