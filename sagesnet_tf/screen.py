"""``sagesnet-tf screen``: the kirigami tension protocol over many cut patterns with the model.

For each 15-digit pattern (:func:`read_patterns`, or :func:`all_patterns`: the 29,791 without a
fully cut column) the ribbon of :mod:`sagesnet_tf.kirigami_tension`'s protocol is stretched by the
model to its yield (early stop past the peak) or the max strain, and one row is appended to
``results.csv`` (:data:`RESULT_COLUMNS`): ``batch`` ribbons at a time stacked into one structure
(:meth:`Screen.finish_batch`, :class:`~sagesnet_tf.batched_tension.BatchedTension`), or with
``batch`` 1 each alone (:meth:`Screen.finish`,
:meth:`~sagesnet_tf.kirigami_tension.KirigamiTension.run_model`). ``verify`` K runs the same protocol in LAMMPS on the top K by model yield
stress and on K other screened patterns drawn with the seed, appends their rows (source
``lammps``) and writes ``verify.csv`` (:data:`VERIFY_COLUMNS`) and ``verify.json`` (the model's
errors on them). docs/SCREEN.md.

**Resume.** A row is one ``write`` + flush + fsync of a whole line (:class:`ResultsFile`); on
start a torn last line is dropped and every (pattern, source) with a row is skipped. A batch keeps
nothing on disk: its ribbons without a row form a batch again and start over. A lone run in
progress lives in ``work/PATTERN_SOURCE/``: a killed model run resumes there from its last saved
frame (``simulate --resume``: the outputs of an uninterrupted run), a finished one is read back,
a killed LAMMPS run starts again. The run's stress–strain curve is kept in
``curves/PATTERN_SOURCE.csv`` (strain, stress_GPa; one point per :data:`CURVE_STRAIN_STEP`) and its
work directory deleted once the row is written, so an output directory holds
``results.csv``, ``screen.json``, the curves and the plots (:data:`PLOTS`, replaced whole).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sagesnet_tf.analysis.plots import save_figure
from sagesnet_tf.analysis.stress_strain import summarize, youngs_modulus
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import atomic_output, write_json
from sagesnet_tf.kirigami_tension import DT_FS, KirigamiTension, model_periodic_y, read_model_curve
from sagesnet_tf.savedmodel import read_metadata, resolve_model_dir
from sagesnet_tf.simulate import RolloutDiverged, run_status
from sagesnet_tf.structures import KIRIGAMI_COLUMNS, KIRIGAMI_ROWS

#: Columns of ``results.csv``. Strains dimensionless; stresses, ``toughness`` (∫σ dε to yield,
#: GJ/m³ = GPa) and ``stiffness`` (slope of σ–ε for ε ≤ 0.02) in GPa; ``uncertainty``: the model's
#: mean predicted uncertainty over the stretch (empty for LAMMPS); ``scale``: the model's scale
#: (empty for LAMMPS); ``wall_s``: wall seconds of the run; ``failed``: the 10 % drop yield rule
#: found a yield (``true``/``false``; a spring-like ribbon that never carries 1.5 GPa has none, and
#: its yield columns stay empty); ``stress_at_max_strain``: σ at the run's last point
#: (``final_strain``: the max strain unless the run stopped past a peak); ``source``: ``model`` or
#: ``lammps``; ``status``: how the run ended.
RESULT_COLUMNS = ("pattern", "yield_strain", "yield_stress_GPa", "toughness", "stiffness", "uncertainty", "scale",
                  "wall_s", "failed", "stress_at_max_strain", "source", "final_strain", "n_atoms", "status")
#: Columns of ``verify.csv``: per checked pattern, how it was picked (``top`` / ``random``), both
#: engines' values and the model's error (model − LAMMPS; relative: over LAMMPS's).
VERIFY_COLUMNS = ("pattern", "picked", "model_failed", "lammps_failed", "model_yield_strain", "lammps_yield_strain",
                  "model_yield_stress_GPa", "lammps_yield_stress_GPa", "yield_strain_error",
                  "yield_stress_relative_error")
SOURCES = ("model", "lammps")
#: Strain between the recorded points of a run (model frames and LAMMPS records).
CURVE_STRAIN_STEP = 0.001
#: Ribbons per model call of ``screen`` by default (``--batch``): on the quick protocol, 32 random
#: patterns on this 2-core CPU, 155 patterns/h one by one, 248 / 294 / 365 with 8 / 16 / 32 a call
#: (docs/SCREEN.md, measured rate): still rising at 32, where a full-protocol batch holds ~80,000 atoms.
DEFAULT_BATCH = 32
#: Curves drawn in the top-K stress–strain plot.
TOP_PLOTTED = 10
PLOTS = ("yield_strain_histogram.png", "top_stress_strain.png", "design_space.png")
RESULTS, MANIFEST, VERIFY, VERIFY_SUMMARY = "results.csv", "screen.json", "verify.csv", "verify.json"


# ----------------------------------------------------------------------------------------- patterns
def severed(pattern: str) -> bool:
    """Whether a 15-digit pattern cuts a whole column (the ribbon then falls apart)."""
    return any(pattern[c * KIRIGAMI_ROWS:(c + 1) * KIRIGAMI_ROWS] == "1" * KIRIGAMI_ROWS
               for c in range(KIRIGAMI_COLUMNS))


def all_patterns() -> list[str]:
    """The 29,791 (31³) patterns without a fully cut column, in increasing binary order."""
    n = KIRIGAMI_COLUMNS * KIRIGAMI_ROWS
    return [p for p in (format(i, f"0{n}b") for i in range(2 ** n)) if not severed(p)]


def read_patterns(path: str | Path) -> list[str]:
    """The patterns of a file, one 15-digit pattern a line (blank lines skipped); every line is
    checked before any is used: a bad one is a :class:`SagesnetError` naming it."""
    n = KIRIGAMI_COLUMNS * KIRIGAMI_ROWS
    seen: dict[str, int] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            text = line.strip()
            if not text:
                continue
            where = f"screen: {path} line {number} ({text[:40]!r})"
            if len(text) != n or set(text) - {"0", "1"}:
                raise SagesnetError(f"{where} is not a pattern of {n} digits 0/1 (digit k cuts block column k//5, "
                                    "row k%5); fix that line")
            if severed(text):
                raise SagesnetError(f"{where} cuts a whole column, so the ribbon falls apart; leave a block of "
                                    "every column uncut")
            if text in seen:
                raise SagesnetError(f"{where} repeats line {seen[text]}; list each pattern once")
            seen[text] = number
    if not seen:
        raise SagesnetError(f"screen: {path} holds no pattern; give one 15-digit pattern a line")
    return list(seen)


# ------------------------------------------------------------------------------------------- results
def format_cell(value) -> str:
    """A value as results.csv writes it: floats as repr (read back exactly), None empty, bools
    ``true``/``false``."""
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    return str(value)


class ResultsFile:
    """``results.csv``, append-only: :meth:`append` writes one whole line and fsyncs it. Opening
    drops a torn last line (a kill inside a write), writes the header into a new file and refuses
    a file with other columns."""

    def __init__(self, path: Path):
        self.path = path
        header = ",".join(RESULT_COLUMNS) + "\n"
        if path.is_file():
            data = path.read_bytes()
            if not data.endswith(b"\n"):
                with open(path, "r+b") as handle:
                    handle.truncate(data.rfind(b"\n") + 1)
                    os.fsync(handle.fileno())
        if not path.is_file() or path.stat().st_size == 0:
            self._write(header)
        self.rows = read_results(path)

    def _write(self, text: str) -> None:
        with open(self.path, "a", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    def done(self) -> set[tuple[str, str]]:
        """The (pattern, source) pairs with a row."""
        return {(r["pattern"], r["source"]) for r in self.rows}

    def append(self, row: dict) -> None:
        """Append ``row`` (every column of :data:`RESULT_COLUMNS`) as one line."""
        buffer = _LineBuffer()
        csv.writer(buffer, lineterminator="\n").writerow([format_cell(row[c]) for c in RESULT_COLUMNS])
        self._write(buffer.text)
        self.rows.append({c: format_cell(row[c]) for c in RESULT_COLUMNS})


def read_results(path: Path) -> list[dict]:
    """The rows of a ``results.csv`` (column → text), without a torn last line; a file with
    other columns than :data:`RESULT_COLUMNS` is a :class:`SagesnetError`. Reads only."""
    text = path.read_text(encoding="utf-8")
    lines = text[:text.rfind("\n") + 1].splitlines(keepends=True)
    if not lines or lines[0] != ",".join(RESULT_COLUMNS) + "\n":
        raise SagesnetError(f"{path} has other columns than {', '.join(RESULT_COLUMNS)}: not a screen's "
                            "results.csv; choose another directory")
    return list(csv.DictReader(lines[1:], fieldnames=RESULT_COLUMNS))


class _LineBuffer:
    """What a csv.writer writes, kept as one string."""

    def __init__(self):
        self.text = ""

    def write(self, text: str) -> None:
        self.text += text


def curve_row(pattern: str, source: str, strain: np.ndarray, stress_gpa: np.ndarray, **extra) -> dict:
    """The results row of one run's stretch: ``strain`` and ``stress_gpa`` (T,) through
    :func:`~sagesnet_tf.analysis.stress_strain.summarize` (10 % drop yield); ``extra``: the
    columns that are not the curve's (uncertainty, scale, wall_s, n_atoms, status). A run that
    diverged before its stretch (T = 0) has empty curve columns and is not counted as failed."""
    if len(strain) == 0:
        return {"pattern": pattern, "source": source, "yield_strain": None, "yield_stress_GPa": None,
                "toughness": None, "stiffness": None, "failed": False, "stress_at_max_strain": None,
                "final_strain": None, **extra}
    summary = summarize(strain, stress_gpa)
    try:
        stiffness = youngs_modulus(strain, stress_gpa)
    except SagesnetError:  # the run ended before 0.02 strain
        stiffness = None
    return {"pattern": pattern, "source": source, "yield_strain": summary.yield_strain,
            "yield_stress_GPa": summary.yield_stress_GPa, "toughness": summary.toughness_GPa, "stiffness": stiffness,
            "failed": summary.yield_strain is not None, "stress_at_max_strain": float(stress_gpa[-1]),
            "final_strain": float(strain[-1]), **extra}


def cell_float(text: str) -> float | None:
    """A number cell of results.csv as a float; None for an empty cell."""
    return float(text) if text not in ("", None) else None


def _write_curve(path: Path, strain: np.ndarray, stress_gpa: np.ndarray) -> None:
    with atomic_output(path) as handle:
        handle.write("strain,stress_GPa\n")
        handle.writelines(f"{e:.6g},{s:.6g}\n" for e, s in zip(strain, stress_gpa))


def _read_curve(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file() or path.read_text(encoding="utf-8").count("\n") < 2:  # none, or a header alone
        return None
    data = np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)
    return data[:, 0], data[:, 1]


# -------------------------------------------------------------------------------------------- screen
@dataclasses.dataclass
class Screen:
    """One screen's settings and output directory (see :func:`screen`)."""

    out: Path
    protocol: KirigamiTension
    model: str | None
    max_strain: float
    seed: int
    threads: int | None

    def __post_init__(self):
        self.model_dir = resolve_model_dir(self.model)
        self.periodic_y = model_periodic_y(self.model_dir)
        self.delta_ps = float(read_metadata(self.model_dir)["delta_ps"])
        self._batched = None  # the BatchedTension of finish_batch, made on first use

    def work_dir(self, pattern: str, source: str) -> Path:
        return self.out / "work" / f"{pattern}_{source}"

    def curve_path(self, pattern: str, source: str) -> Path:
        return self.out / "curves" / f"{pattern}_{source}.csv"

    def run(self, pattern: str, source: str) -> tuple[dict, np.ndarray, np.ndarray]:
        """Run ``pattern`` with ``source``'s engine; (results row, strain (T,), stress GPa (T,))."""
        atoms = self.protocol.ribbon(pattern, self.periodic_y)
        work = self.work_dir(pattern, source)
        if source == "model":
            manifest = self._model_run(atoms, work, self.every(self.delta_ps))
            curve = read_model_curve(work / "thermo.csv")
            extra = {"uncertainty": float(np.mean(curve["uncertainty"][1:])) if len(curve["strain"]) > 1 else None,
                     "scale": manifest["scale"], "wall_s": round(float(manifest["wall_s"]), 3),
                     "status": manifest["status"]}
            strain, stress = curve["strain"], curve["stress_GPa"]
        else:
            shutil.rmtree(work, ignore_errors=True)  # a killed LAMMPS run starts again
            work.mkdir(parents=True)
            md = self.protocol.run_lammps(atoms, work, self.every(DT_FS / 1000.0), self.max_strain,
                                          threads=self.threads, progress=False)
            strain, stress = md.stress_strain["strain"], md.stress_strain["stress_GPa"]
            extra = {"uncertainty": None, "scale": None, "wall_s": md.manifest["timings"]["total_s"],
                     "status": "completed: stopped past the stress peak" if md.manifest["stopped_early"]
                     else "completed"}
        return curve_row(pattern, source, strain, stress, n_atoms=len(atoms), **extra), strain, stress

    def _model_run(self, atoms, work: Path, every: int) -> dict:
        """The model run of ``atoms`` in ``work``: resumed when a kill left it running, read back
        when it finished, else started; its manifest."""
        status = run_status(work) if work.is_dir() else None
        if status not in (None, "running"):
            return json.loads((work / "manifest.json").read_text(encoding="utf-8"))
        resume = status == "running"
        try:
            with contextlib.redirect_stderr(io.StringIO()):  # simulate's notes per pattern; its manifest keeps them
                return self.protocol.run_model(atoms, work, self.model_dir, max_strain=self.max_strain, every=every,
                                               seed=self.seed, progress=False, resume=resume, overwrite=not resume)
        except RolloutDiverged as err:  # a result too: the curve up to where the model broke down
            return err.manifest

    def finish(self, results: ResultsFile, pattern: str, source: str) -> None:
        """Run ``pattern`` with ``source`` and record it: curve file, row, work directory removed."""
        row, strain, stress = self.run(pattern, source)
        _write_curve(self.curve_path(pattern, source), strain, stress)
        results.append(row)
        shutil.rmtree(self.work_dir(pattern, source), ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.out / "work").rmdir()  # once empty

    def every(self, dt_ps: float) -> int:
        """Steps of ``dt_ps`` between the recorded points of a run (:data:`CURVE_STRAIN_STEP`)."""
        return max(1, round(CURVE_STRAIN_STEP / (self.protocol.strain_rate_per_ps * dt_ps)))

    def finish_batch(self, results: ResultsFile, patterns: list[str], on_row=None) -> None:
        """Run the model on ``patterns`` stacked (:class:`~sagesnet_tf.batched_tension.BatchedTension`:
        one model call steps them all) and record each as it stops: curve file, then row (``wall_s``:
        the batch's wall time up to the ribbon's stop over the ribbons in the batch); ``on_row()``
        after each. A ribbon the stack could not finish runs again, alone."""
        from sagesnet_tf.batched_tension import BatchedTension

        if self._batched is None:  # the model loaded once per screen
            self._batched = BatchedTension(self.protocol, self.model_dir, self.max_strain, self.seed,
                                           self.every(self.delta_ps))
        queue = [list(patterns)]
        while queue:
            batch = queue.pop(0)

            def record(ribbon, began=time.time(), size=len(batch)) -> None:
                strain, stress = np.array(ribbon.strain), np.array(ribbon.stress_GPa)
                row = curve_row(ribbon.pattern, "model", strain, stress, n_atoms=ribbon.n_atoms, scale=0,
                                uncertainty=float(np.mean(ribbon.uncertainty[1:])) if len(strain) > 1 else None,
                                wall_s=round((time.time() - began) / size, 3), status=ribbon.status)
                _write_curve(self.curve_path(ribbon.pattern, "model"), strain, stress)
                results.append(row)
                if on_row is not None:
                    on_row()

            queue.extend([pattern] for pattern in self._batched.run(batch, record))

    def settings(self) -> dict:
        return {"protocol": self.protocol.settings(), "max_strain": self.max_strain, "model": str(self.model_dir),
                "periodic_y": self.periodic_y, "seed": self.seed, "curve_strain_step": CURVE_STRAIN_STEP}


def open_screen(out: str | Path, protocol: KirigamiTension, model: str | None = None,
                max_strain: float | None = None, seed: int = 0, threads: int | None = None,
                verb: str = "screen", batch: int = 1) -> tuple[Screen, ResultsFile]:
    """The screen in ``out`` (made when new): its :class:`Screen` and :class:`ResultsFile`.
    ``batch``: the model's ribbons per call this time (recorded in screen.json's settings).
    ``out`` holding a screen with other settings (:func:`changed_settings`) is a
    :class:`SagesnetError` (``verb`` names the command in it); work directories of runs whose row
    was written are removed."""
    if max_strain is not None and not (math.isfinite(max_strain) and max_strain > 0):
        raise SagesnetError(f"{verb}: --max-strain must be a positive number, got {max_strain}")
    out = Path(out)
    run = Screen(out, protocol, model, protocol.max_strain if max_strain is None else max_strain, seed, threads)
    settings = {**run.settings(), "batch": batch}
    if (out / MANIFEST).is_file():
        previous = json.loads((out / MANIFEST).read_text(encoding="utf-8"))["settings"]
        changed = changed_settings(previous, settings)
        if changed:
            detail = ", ".join(changed)
            if "batch" in changed:
                detail += (f"; --batch {previous['batch']} there, {batch} now: one at a time (1) and stacked (any "
                           "N > 1) draw other thermostat numbers")
            raise SagesnetError(f"{verb}: {out} holds a screen with other settings ({detail}); give the same options "
                                "to resume it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / MANIFEST, {"kind": "sagesnet-tf screen", "settings": settings, "results": RESULTS,
                                "columns": list(RESULT_COLUMNS), "units": "strain 1; stress, toughness, stiffness GPa"})
    results = ResultsFile(out / RESULTS)
    for pattern, source in results.done():  # killed after its row was written, before its work directory went
        shutil.rmtree(run.work_dir(pattern, source), ignore_errors=True)
    return run, results


def changed_settings(previous: dict, settings: dict) -> list[str]:
    """The keys in which a screen's recorded ``previous`` settings and this call's ``settings``
    differ, sorted. ``batch`` differs only across 1 / more than 1: in a batch of any size above one
    a ribbon draws the same velocities and thermostat numbers (seeded by the screen's seed and its
    pattern) and its run changes only by float32 rounding (which the dynamics amplify within the
    thermal noise), as it does when a resume forms its batch again; ``batch`` 1 runs it through
    ``simulate``, with other draws. A screen recorded without ``batch`` (before it was) resumes with any."""
    def differs(key: str) -> bool:
        if key == "batch":
            return key in previous and (previous[key] > 1) != (settings[key] > 1)
        return previous.get(key) != settings.get(key)

    return sorted(k for k in previous.keys() | settings.keys() if differs(k))


def _finish_all(run: Screen, results: ResultsFile, patterns, source: str, desc: str, progress: bool,
                batch: int = 1) -> None:
    """Run ``source`` (model or lammps) on each of ``patterns`` (a sized iterable, in order) that has
    no row of that source yet, appending its row, with a progress bar (patterns done / total, ETA,
    patterns/h); model runs ``batch`` patterns at a time (:meth:`Screen.finish_batch`) when
    ``batch`` > 1, else each through ``simulate`` (:meth:`Screen.finish`)."""
    done = results.done()
    todo = [p for p in patterns if (p, source) not in done]
    began, finished = time.time(), 0
    with tqdm(total=len(patterns), initial=len(patterns) - len(todo), unit="pattern", desc=desc,
              disable=not progress, dynamic_ncols=True) as bar:
        def advanced() -> None:
            nonlocal finished
            finished += 1
            bar.update()
            bar.set_postfix_str(f"{3600.0 * finished / max(time.time() - began, 1e-9):.0f} patterns/h")

        if source == "model" and batch > 1:
            for k in range(0, len(todo), batch):
                run.finish_batch(results, todo[k:k + batch], on_row=advanced)
            return
        for pattern in todo:
            run.finish(results, pattern, source)
            advanced()


def screen(patterns: list[str], out: str | Path, protocol: KirigamiTension, model: str | None = None,
           max_strain: float | None = None, verify: int = 0, seed: int = 0, threads: int | None = None,
           progress: bool = True, batch: int = DEFAULT_BATCH) -> dict:
    """Screen ``patterns`` (checked 15-digit strings) into ``out``; with ``verify`` K > 0 then run
    LAMMPS on the top K by model yield stress and K random others. ``max_strain``: the stretch's
    limit (default the protocol's). ``seed``: the model runs' velocities and thermostat, and the
    random draw of ``verify``. ``batch``: ribbons per model call (1: each pattern through
    ``simulate``; a model that cannot step stacked ribbons apart,
    :func:`~sagesnet_tf.batched_tension.unbatchable`, runs them one by one, said on stderr).
    Resumes what ``out`` holds (same settings, :func:`changed_settings`, else a
    :class:`SagesnetError`). Returns ``{"screened": n, "verify": verify.json's dict or None}``."""
    from sagesnet_tf.batched_tension import unbatchable

    if verify < 0:
        raise SagesnetError(f"screen: --verify must be >= 0 patterns, got {verify}")
    if batch < 1:
        raise SagesnetError(f"screen: --batch must be >= 1 pattern, got {batch}")
    why = unbatchable(resolve_model_dir(model)) if batch > 1 else None
    if why:
        print(f"screen: one pattern per model call: {why}", file=sys.stderr)
        batch = 1
    run, results = open_screen(out, protocol, model, max_strain, seed, threads, batch=batch)
    out = run.out
    _finish_all(run, results, patterns, "model", "screen", progress, batch)
    summary = None
    if verify:
        picked = pick_verify(_rows(results, patterns, "model"), verify, seed)
        _finish_all(run, results, picked, "lammps", "verify (LAMMPS)", progress)
        summary = write_verify(out, picked, _rows(results, patterns, "model"), _rows(results, patterns, "lammps"),
                               verify)
    plot_screen(out, _rows(results, patterns, "model"), _rows(results, patterns, "lammps"))
    return {"screened": len(patterns), "verify": summary}


def _rows(results: ResultsFile, patterns: list[str], source: str) -> dict[str, dict]:
    """The rows of ``source`` for ``patterns``, by pattern, in the order of ``patterns``."""
    by_pattern = {r["pattern"]: r for r in results.rows if r["source"] == source}
    return {p: by_pattern[p] for p in patterns if p in by_pattern}


def _ranked(rows: dict[str, dict]) -> list[str]:
    """Patterns by yield stress, highest first (those without a yield last, in their order)."""
    return sorted(rows, key=lambda p: -(cell_float(rows[p]["yield_stress_GPa"]) or -math.inf))


def pick_verify(model_rows: dict[str, dict], k: int, seed: int) -> dict[str, str]:
    """The patterns LAMMPS checks, pattern → ``"top"`` / ``"random"``: the top ``k`` by model
    yield stress, then ``k`` of the others drawn with ``numpy.random.default_rng(seed)``."""
    ranked = _ranked(model_rows)
    picked = {p: "top" for p in ranked[:k]}
    others = [p for p in model_rows if p not in picked]
    draw = np.random.default_rng(seed).choice(len(others), size=min(k, len(others)), replace=False)
    picked.update({others[i]: "random" for i in sorted(draw)})
    return picked


def verify_row(model_row: dict, lammps_row: dict, picked: str) -> dict:
    """One pattern's :data:`VERIFY_COLUMNS` from its model and LAMMPS results rows: both engines'
    yields and the model's errors (model − LAMMPS; the stress's relative to LAMMPS's), None
    unless both found a yield."""
    me, le = cell_float(model_row["yield_strain"]), cell_float(lammps_row["yield_strain"])
    ms, ls = cell_float(model_row["yield_stress_GPa"]), cell_float(lammps_row["yield_stress_GPa"])
    both = me is not None and le is not None
    return {"pattern": model_row["pattern"], "picked": picked, "model_failed": model_row["failed"],
            "lammps_failed": lammps_row["failed"], "model_yield_strain": me, "lammps_yield_strain": le,
            "model_yield_stress_GPa": ms, "lammps_yield_stress_GPa": ls,
            "yield_strain_error": me - le if both else None,
            "yield_stress_relative_error": (ms - ls) / ls if both and ls else None}


def write_verify(out: Path, picked: dict[str, str], model_rows: dict[str, dict], lammps_rows: dict[str, dict],
                 k: int) -> dict:
    """``verify.csv`` (:data:`VERIFY_COLUMNS`, one row per checked pattern) and ``verify.json``:
    over the checked patterns where both found a yield, the yield-strain mean absolute error, the
    yield-stress mean relative error (|Δσ| / σ_LAMMPS) and Spearman rank correlation; whether both
    agree on failing; and how many of LAMMPS's top ``k`` by yield stress are in the model's top
    ``k`` among the checked patterns. Returns verify.json's dict."""
    rows = [verify_row(model_rows[p], lammps_rows[p], how) for p, how in picked.items()]
    pairs = [(r["model_yield_strain"], r["lammps_yield_strain"], r["model_yield_stress_GPa"],
              r["lammps_yield_stress_GPa"]) for r in rows if r["yield_strain_error"] is not None]
    e = np.array(pairs, float).reshape(-1, 4)
    spearman = None
    if len(e) >= 3 and np.ptp(e[:, 2]) > 0 and np.ptp(e[:, 3]) > 0:
        from scipy.stats import spearmanr
        spearman = float(spearmanr(e[:, 2], e[:, 3]).statistic)
    checked_model = {p: model_rows[p] for p in picked}
    checked_lammps = {p: lammps_rows[p] for p in picked}
    summary = {
        "checked": len(picked), "k": k, "both_yielded": len(e),
        "failed_agreement": sum(model_rows[p]["failed"] == lammps_rows[p]["failed"] for p in picked) / len(picked),
        "yield_strain_mae": float(np.mean(np.abs(e[:, 0] - e[:, 1]))) if len(e) else None,
        "yield_stress_mean_relative_error": float(np.mean(np.abs(e[:, 2] - e[:, 3]) / np.abs(e[:, 3])))
        if len(e) and np.all(e[:, 3]) else None,
        "yield_stress_spearman": spearman,
        "top_k_overlap": len(set(_ranked(checked_model)[:k]) & set(_ranked(checked_lammps)[:k])),
        "definitions": "over the checked patterns where both engines found a yield (10 % drop rule); "
                       "top_k_overlap: patterns in both engines' top k by yield stress among the checked ones"}
    with atomic_output(out / VERIFY) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(VERIFY_COLUMNS)
        writer.writerows([[format_cell(r[c]) for c in VERIFY_COLUMNS] for r in rows])
    write_json(out / VERIFY_SUMMARY, summary)
    return summary


# --------------------------------------------------------------------------------------------- plots
def plot_screen(out: Path, model_rows: dict[str, dict], lammps_rows: dict[str, dict]) -> None:
    """The screen's :data:`PLOTS`: histogram of the model's yield strains; σ–ε of the top
    :data:`TOP_PLOTTED` by yield stress (LAMMPS dashed where checked); the design space: yield stress
    against the number of cut blocks, and per block the mean yield stress of the patterns cutting it."""
    import matplotlib.pyplot as plt

    failed = [p for p, r in model_rows.items() if r["failed"] == "true"]
    strains = [float(model_rows[p]["yield_strain"]) for p in failed]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(strains, bins=min(50, max(5, len(strains) // 5)) if strains else 5, color="C0")
    ax.set(xlabel="yield strain", ylabel="patterns",
           title=f"Model yield strain: {len(failed)} of {len(model_rows)} patterns yielded")
    fig.tight_layout()
    save_figure(fig, out / PLOTS[0], dpi=100)

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, pattern in enumerate(_ranked(model_rows)[:TOP_PLOTTED]):
        for source, style in (("model", "-"), ("lammps", "--")):
            curve = _read_curve(out / "curves" / f"{pattern}_{source}.csv")
            if curve is not None:
                ax.plot(*curve, style, color=f"C{i}", lw=1, label=f"{pattern} {source}")
    ax.set(xlabel="strain", ylabel="stress (GPa)", title=f"Top {TOP_PLOTTED} by model yield stress")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    save_figure(fig, out / PLOTS[1], dpi=100)

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [3, 2]})
    n_cuts = {p: p.count("1") for p in model_rows}
    peak = {p: cell_float(r["yield_stress_GPa"]) or cell_float(r["stress_at_max_strain"]) or 0.0
            for p, r in model_rows.items()}
    colours = ["C3" if model_rows[p]["failed"] == "true" else "C0" for p in model_rows]
    left.scatter([n_cuts[p] for p in model_rows], [peak[p] for p in model_rows], s=8, c=colours, alpha=0.6)
    left.set(xlabel="cut blocks", ylabel="stress (GPa)",
             title="yield stress (red) / stress at max strain (blue)")
    bits = np.array([[c == "1" for c in p] for p in model_rows], bool).reshape(-1, KIRIGAMI_COLUMNS, KIRIGAMI_ROWS)
    values = np.array([peak[p] for p in model_rows])
    with np.errstate(invalid="ignore"):
        per_block = np.array([[values[bits[:, c, r]].mean() if bits[:, c, r].any() else np.nan
                               for c in range(KIRIGAMI_COLUMNS)] for r in range(KIRIGAMI_ROWS)])
    image = right.imshow(per_block, origin="lower", cmap="viridis")
    right.set(xlabel="block column (x, load)", ylabel="block row (y)", xticks=range(KIRIGAMI_COLUMNS),
              title="mean stress of patterns cutting the block")
    fig.colorbar(image, ax=right, label="GPa")
    fig.tight_layout()
    save_figure(fig, out / PLOTS[2], dpi=100)


__all__ = ["DEFAULT_BATCH", "PLOTS", "RESULT_COLUMNS", "VERIFY_COLUMNS", "ResultsFile", "Screen", "all_patterns",
           "cell_float", "changed_settings", "curve_row", "format_cell", "open_screen", "pick_verify", "plot_screen",
           "read_patterns", "read_results", "screen", "severed", "verify_row", "write_verify"]
