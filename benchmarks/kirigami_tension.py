"""Kirigami tension benchmark: the REFERENCE.md protocol run by LAMMPS/AIREBO and by SAGESnet.

The protocol (ribbon size, 4.2 K, strain rate, relaxation, max strain, early stop; ``FULL`` and
``QUICK``) is :mod:`sagesnet_tf.kirigami_tension`'s, the one ``sagesnet-tf screen`` runs. Full run:
half-size ribbons (17 × 40 cells) with each cut pattern of :data:`HELD_OUT_PATTERNS` (no kirigami
pattern is in the default model's training data, so all are held out), 0.01 ps⁻¹ to ≤ 0.8 strain
(LAMMPS alone takes 5–10+ minutes per pattern). ``quick``: one pattern on a 7 × 6-cell ribbon (~160
atoms), 0.05 ps⁻¹, max strain 0.5 (early stop usually ends it sooner).

SAGESnet starts from the ribbon LAMMPS relaxed (the first frame of its stretch phase: positions,
velocities and box, as written to ``kirigami_<pattern>/lammps/relaxed.extxyz``) and is stretched at
the same rate to the strain where LAMMPS stopped, its temperature held by plain ``simulate`` with its defaults (the issue's protocol): NVT with the default
Langevin thermostat, whose default time constant (0.1 ps) is the Tdamp of LAMMPS's ``fix nvt`` in the
stretching phase, with the same early stop as LAMMPS (0.05 strain past the peak once the
stress is 30 % below it); both wall times compared are of the stretch alone (LAMMPS's relaxation
and simulate's default equilibration under the model, with the model's loading, are reported on
rows of their own). When the model's grid is periodic along y (the default model's is),
both runs get the ribbon marked periodic along y (``periodic_y``: a row of ribbons 20 Å apart,
the same physics, since LAMMPS runs every box periodic). Both curves go through
:func:`sagesnet_tf.analysis.stress_strain.summarize` (10 % drop rule and first-local-max rule).

LAMMPS's side does not depend on the model: with a reference directory (``--lammps-reference DIR``,
any past suite run) a pattern whose ``DIR/kirigami_<pattern>/lammps/`` holds :data:`REFERENCE_FILES`
of the same protocol and ribbon reuses that run (its files copied into this run's directory) instead
of running LAMMPS again. Its speed rows then show the reference's wall times without a ratio: speed is
compared only side by side.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path

import numpy as np

from sagesnet_tf.analysis.plots import save_figure
from sagesnet_tf.analysis.stress_strain import curve_error_to_yield, summarize
from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io.extxyz import read_extxyz_frames, write_extxyz_frames
from sagesnet_tf.kirigami_tension import DT_FS, FULL, QUICK, KirigamiTension, model_periodic_y, read_model_curve
from sagesnet_tf.md.run import write_md_outputs
from sagesnet_tf.simulate import RolloutDiverged

from benchmarks.report import row

#: 15-digit cut patterns (see ``structures.parse_kirigami_pattern``) kept out of training.
HELD_OUT_PATTERNS: tuple[str, ...] = ("010000000001000", "101010000010101", "000001010100000")
#: Five more held-out patterns, drawn at random (numpy ``default_rng(2026)``, uniform over the patterns
#: without a fully cut column, skipping the training and suite patterns; the same draw's first two
#: are training patterns of ``make graphene-energy-data``). The suite runs them after
#: :data:`HELD_OUT_PATTERNS` when asked for more than three patterns.
RANDOM_HELD_OUT_PATTERNS: tuple[str, ...] = ("110001000010010", "101111110001111", "001000100000100",
                                             "100110011101000", "010100111101001")
#: Patterns run by default: the full suite, the quick one.
DEFAULT_PATTERNS = {"full": 3, "quick": 1}
#: LAMMPS's record stride, steps (a frame and a thermo row, and the early stop's check, every this many).
RECORD_EVERY = 10
#: The first frame of LAMMPS's stretch (positions, velocities, box; the ribbon's ``nominal_*`` in its
#: info), written beside ``write_md_outputs``'s files: the model's starting point.
RELAXED_FILE = "relaxed.extxyz"
#: What ``--lammps-reference DIR`` needs in ``DIR/kirigami_<pattern>/lammps/`` to reuse that LAMMPS run.
REFERENCE_FILES: tuple[str, ...] = ("manifest.json", "stress_strain.csv", RELAXED_FILE)
#: The note on the speed rows of a pattern whose LAMMPS run was reused.
NOT_SIDE_BY_SIDE = "LAMMPS from the reference run: not measured side by side, no ratio"


def run(model: str, out_dir: Path, quick: bool = False, threads: int = 2, progress: bool = True,
        patterns: int | None = None, lammps_reference: Path | None = None) -> dict:
    """Run the suite into ``out_dir``; returns the suite dict of :mod:`benchmarks.report`. ``patterns``:
    how many of :data:`HELD_OUT_PATTERNS` then :data:`RANDOM_HELD_OUT_PATTERNS` to run (default 3
    for the full suite, 1 quick). ``lammps_reference``: a past suite run's directory (or any directory
    of the same layout) whose ``kirigami_<pattern>/lammps/`` LAMMPS runs are reused (see
    :func:`reference_files`); patterns without one run LAMMPS here."""
    protocol = QUICK if quick else FULL
    n_patterns = DEFAULT_PATTERNS[protocol.name] if patterns is None else patterns
    periodic_y = model_periodic_y(model)
    rows, curves, notes = [], {}, []
    s = protocol.settings()
    details = {"settings": {**{k: s[k] for k in ("nx", "ny", "strain_rate_per_ps", "relax_ps", "max_strain")},
                            "patterns": n_patterns, "temperature_K": s["temperature_K"], "dt_fs": s["dt_fs"],
                            "periodic_y": periodic_y}}
    for pattern in (HELD_OUT_PATTERNS + RANDOM_HELD_OUT_PATTERNS)[:n_patterns]:
        atoms = protocol.ribbon(pattern, periodic_y)
        case_dir = out_dir / f"kirigami_{pattern}"
        md_dir = case_dir / "lammps"
        md_dir.mkdir(parents=True, exist_ok=True)
        reference = None if lammps_reference is None else reference_files(Path(lammps_reference), pattern)
        if reference is None:
            t0 = time.perf_counter()
            md = protocol.run_lammps(atoms, md_dir, record_every=RECORD_EVERY, threads=threads, progress=progress)
            md_wall = time.perf_counter() - t0
            write_md_outputs(md, str(md_dir))
            relaxed = md.trajectory.frame(int(np.searchsorted(md.trajectory.step, md.stress_strain["step"][0])))
            # the ribbon's nominal width and thickness: both stresses over the same cross-section (without
            # them simulate would divide by the box across the load, vacuum included)
            relaxed.info.update({k: v for k, v in atoms.info.items() if k.startswith("nominal_")})
            write_extxyz_frames(md_dir / RELAXED_FILE, [relaxed])
            md_manifest, source = md.manifest, None
        else:
            md_manifest = reuse_reference(protocol, atoms, reference, md_dir)
            md_wall = md_manifest["timings"]["total_s"]
            source = {"dir": str(lammps_reference), "created_utc": md_manifest.get("created_utc"),
                      "threads": md_manifest["engine"].get("threads")}
            notes.append(f"{pattern}: LAMMPS reused from `{source['dir']}` (run {source['created_utc']}, "
                         f"{source['threads']} thread(s)); its wall times are that run's, not measured side by "
                         "side with SAGESnet's")
        md_curve = read_lammps_curve(md_dir / "stress_strain.csv")
        md_strain, md_stress = md_curve["strain"], md_curve["stress_GPa"]
        md_walls = {p["name"]: p["wall_s"] for p in md_manifest["phases"]}
        # the model starts from the relaxed ribbon as stored, so a run and a later run reusing it start alike
        relaxed = read_extxyz_frames(md_dir / RELAXED_FILE)[0]
        t0 = time.perf_counter()
        try:
            manifest = protocol.run_model(relaxed, case_dir / "sagesnet", model,
                                          max_strain=max(float(md_strain[-1]), 1e-3), every=10, overwrite=True,
                                          progress=progress)
        except RolloutDiverged as err:  # compare the curve up to where the model broke down
            manifest = err.manifest
        ml_total_wall = time.perf_counter() - t0
        # simulate's default equilibration under the model (box held) is its counterpart of LAMMPS's
        # relaxation: the stretch's wall time is the rest (the switch's wall_s includes loading the model)
        ml_wall = ml_total_wall - ((manifest.get("equilibration") or {}).get("wall_s") or 0.0)
        ml_curve = read_model_curve(case_dir / "sagesnet" / "thermo.csv")
        ml_strain, ml_stress = ml_curve["strain"], ml_curve["stress_GPa"]
        s_md, s_ml = summarize(md_strain, md_stress), summarize(ml_strain, ml_stress)
        case = f"{pattern} ({len(atoms)} atoms)"
        # speed is compared only side by side: a reused run's times are shown without a ratio
        speed, timing_note = ("ratio", None) if reference is None else ("none", NOT_SIDE_BY_SIDE)
        rows += [row(case, "yield strain (10 % drop)", "", s_md.yield_strain, s_ml.yield_strain),
                 row(case, "yield stress (10 % drop)", "GPa", s_md.yield_stress_GPa, s_ml.yield_stress_GPa),
                 row(case, "yield strain (first max)", "", s_md.local_max_yield_strain, s_ml.local_max_yield_strain),
                 row(case, "yield stress (first max)", "GPa", s_md.local_max_yield_stress_GPa,
                     s_ml.local_max_yield_stress_GPa),
                 row(case, "max stress", "GPa", s_md.max_stress_GPa, s_ml.max_stress_GPa),
                 row(case, "stress error up to yield (max |Δσ| / LAMMPS peak, 10 % drop yield)", "", None,
                     None if s_md.yield_strain is None else
                     curve_error_to_yield(md_strain, md_stress, ml_strain, ml_stress, s_md.yield_strain), "none"),
                 row(case, "wall time of the stretch", "s", md_walls["deform"], ml_wall, speed, timing_note),
                 row(case, "strain per wall second of the stretch (ratio: SAGESnet speed-up)", "1/s",
                     float(md_strain[-1]) / md_walls["deform"], manifest["final_strain"] / ml_wall, speed,
                     timing_note),
                 row(case, "LAMMPS wall time incl. relaxation", "s", md_wall, None, "none", timing_note),
                 row(case, "SAGESnet wall time incl. loading and equilibration", "s", None, ml_total_wall, "none")]
        details[pattern] = {"n_atoms": len(atoms), "lammps": s_md.to_dict(), "sagesnet": s_ml.to_dict(),
                            "sagesnet_status": manifest["status"], "final_strain": float(md_strain[-1]),
                            "lammps_reused": source}
        curves[pattern] = (md_strain, md_stress, ml_strain, ml_stress)
    rows += _over_patterns(rows, details)
    _plot(curves, out_dir / "kirigami_stress_strain.png")
    return {"suite": "kirigami", "rows": rows, "details": details, "plots": ["kirigami_stress_strain.png"],
            "notes": notes}


def reference_files(reference_dir: Path, pattern: str) -> Path | None:
    """``reference_dir/kirigami_<pattern>/lammps`` when it holds every file of
    :data:`REFERENCE_FILES` (a LAMMPS run to reuse), else None (LAMMPS runs)."""
    md_dir = reference_dir / f"kirigami_{pattern}" / "lammps"
    return md_dir if all((md_dir / name).is_file() for name in REFERENCE_FILES) else None


def check_reference(protocol: KirigamiTension, atoms: Atoms, md_dir: Path) -> dict:
    """The manifest of the LAMMPS run in ``md_dir``, after checking that it ran ``protocol`` (every
    parameter of its phases, the timestep and the record stride) on the ribbon ``atoms`` (pattern,
    size, atom count, periodicity) as this suite would, and that its ``relaxed.extxyz`` carries the
    ribbon's nominal cross-section; raises :class:`SagesnetError` naming the file and the first field
    that differs."""
    manifest = json.loads((md_dir / "manifest.json").read_text(encoding="utf-8"))
    structure = manifest.get("structure", {})
    relaxed = read_extxyz_frames(md_dir / RELAXED_FILE)[0]
    checks = [*(("manifest.json", f"protocol.{k}", v, manifest.get("protocol", {}).get(k, "missing"))
                for k, v in protocol.md_protocol().params().items()),
              ("manifest.json", "dt_fs", DT_FS, manifest.get("dt_fs")),
              ("manifest.json", "record_every", RECORD_EVERY, manifest.get("record_every")),
              *(("manifest.json", f"structure.info.{k}", atoms.info[k], structure.get("info", {}).get(k))
                for k in ("pattern", "nx", "ny")),
              ("manifest.json", "structure.n_atoms", len(atoms), structure.get("n_atoms")),
              ("manifest.json", "structure.pbc", atoms.pbc.tolist(), structure.get("pbc")),
              *((RELAXED_FILE, k, atoms.info[k], relaxed.info.get(k))
                for k in ("nominal_width_A", "nominal_thickness_A"))]
    for name, field, expected, found in checks:
        if found != expected:
            raise SagesnetError(f"LAMMPS reference {md_dir / name} does not match this run: {field} is {found!r} "
                                f"there, {expected!r} here")
    return manifest


def reuse_reference(protocol: KirigamiTension, atoms: Atoms, reference: Path, md_dir: Path) -> dict:
    """Check the LAMMPS run in ``reference`` (:func:`check_reference`) and copy its files into
    ``md_dir`` (unless it is ``md_dir``); returns its manifest."""
    manifest = check_reference(protocol, atoms, reference)
    if reference.resolve() != md_dir.resolve():
        for path in sorted(reference.iterdir()):
            if path.is_file():
                shutil.copyfile(path, md_dir / path.name)
    return manifest


def read_lammps_curve(stress_strain_csv: Path) -> dict[str, np.ndarray]:
    """LAMMPS's stretch from the ``stress_strain.csv`` of ``write_md_outputs``: ``strain`` and
    ``stress_GPa`` (σ along the load, tension positive), each (T,)."""
    with open(stress_strain_csv, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {key: np.array([float(r[key]) for r in rows]) for key in ("strain", "stress_GPa")}


def _over_patterns(rows: list[dict], details: dict) -> list[dict]:
    """The issue's targets over all patterns: yield-strain mean absolute error (both rules; a curve
    without a yield point counts as missing it, and the MAE is then None) and the worst stress
    error up to yield."""
    case = f"all {len(details) - 1} patterns"
    out = []
    for label, key in (("10 % drop", "yield_strain"), ("first max", "local_max_yield_strain")):
        pairs = [(d["lammps"][key], d["sagesnet"][key]) for p, d in details.items() if p != "settings"]
        mae = None if any(m is None or s is None for m, s in pairs) else float(np.mean([abs(s - m) for m, s in pairs]))
        out.append(row(case, f"yield strain mean absolute error ({label})", "", None, mae, "none"))
    errors = [r["sagesnet"] for r in rows if r["metric"].startswith("stress error up to yield")]
    out.append(row(case, "worst stress error up to yield (fraction of the peak)", "", None,
                   None if any(e is None for e in errors) else max(errors), "none"))
    return out


def _plot(curves: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, (pattern, (ms, mg, ls, lg)) in enumerate(curves.items()):
        ax.plot(ms, mg, color=f"C{i}", label=f"LAMMPS {pattern}")
        ax.plot(ls, lg, "--", color=f"C{i}", label=f"SAGESnet {pattern}")
    ax.set(xlabel="strain", ylabel="stress (GPa)", title="Kirigami tension, 4.2 K")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


__all__ = ["HELD_OUT_PATTERNS", "RANDOM_HELD_OUT_PATTERNS", "REFERENCE_FILES", "check_reference", "read_lammps_curve",
           "reference_files", "reuse_reference", "run"]
