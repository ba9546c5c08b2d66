"""Benchmark results: one JSON file, one Markdown table and the PNG plots beside them.

Every suite returns a dict ``{"suite": name, "rows": [row, ...], "details": {...}}``; a row is
``{"case", "metric", "unit", "lammps", "sagesnet", "error", "error_kind", "note"}`` with floats or
None (not defined, e.g. no yield point on a curve). ``error`` is SAGESnet − LAMMPS for accuracy
metrics and the SAGESnet/LAMMPS ratio for speed rows (the row's metric name says which); ``note``
(a string or None) qualifies the row, e.g. LAMMPS's time taken from another run. A suite may add
``"notes"``: lines printed under the table.
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

from sagesnet_tf.io import atomic_output


def row(case: str, metric: str, unit: str, lammps, sagesnet, error: str = "difference",
        note: str | None = None) -> dict:
    """One table row; ``error`` is ``"difference"`` (S − L), ``"ratio"`` (S / L) or ``"none"``;
    ``note`` is shown in the error column."""
    value = None
    if lammps is not None and sagesnet is not None:
        if error == "difference":
            value = float(sagesnet) - float(lammps)
        elif error == "ratio" and float(lammps) != 0.0:
            value = float(sagesnet) / float(lammps)
    return {"case": case, "metric": metric, "unit": unit, "lammps": _num(lammps), "sagesnet": _num(sagesnet),
            "error": value, "error_kind": error, "note": note}


def _num(x):
    return None if x is None else float(x)


def _fmt(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.4g}"


def markdown_table(results: list[dict]) -> str:
    """All suites' rows as one Markdown table, then the suites' notes as a list."""
    lines = ["| suite | case | metric | unit | LAMMPS | SAGESnet | SAGESnet − LAMMPS (or ratio) |",
             "|---|---|---|---|---|---|---|"]
    for res in results:
        for r in res["rows"]:
            err = _fmt(r["error"]) + (" ×" if r["error_kind"] == "ratio" and r["error"] is not None else "")
            if r.get("note"):
                err += f" ({r['note']})"
            lines.append(f"| {res['suite']} | {r['case']} | {r['metric']} | {r['unit']} | {_fmt(r['lammps'])} | "
                         f"{_fmt(r['sagesnet'])} | {err} |")
    notes = [f"- {res['suite']}: {note}" for res in results for note in res.get("notes", [])]
    return "\n".join(lines) + "\n" + ("\n" + "\n".join(notes) + "\n" if notes else "")


def write_report(out_dir: str | Path, results: list[dict], settings: dict) -> dict:
    """Write ``results.json`` and ``results.md`` into ``out_dir``; returns the JSON document."""
    out = Path(out_dir)
    doc = {"settings": settings, "machine": {"platform": platform.platform(), "python": platform.python_version()},
           "suites": results}
    with atomic_output(out / "results.json") as handle:
        json.dump(doc, handle, indent=2, ensure_ascii=False)
    header = (f"# SAGESnet vs LAMMPS/AIREBO benchmarks\n\nModel: `{settings.get('model')}` · quick: "
              f"{settings.get('quick')} · LAMMPS threads: {settings.get('threads')}\n\n")
    plots = [p for res in results for p in res.get("plots", [])]
    body = markdown_table(results) + "".join(f"\n![{p}]({p})\n" for p in plots)
    with atomic_output(out / "results.md") as handle:
        handle.write(header + body)
    return doc

