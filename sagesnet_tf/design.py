"""``sagesnet-tf design``: search the kirigami patterns for a target yield strain or yield stress.

The search runs over the 15-digit patterns without a fully cut column; every pattern it
evaluates is one screen evaluation (:meth:`~sagesnet_tf.screen.Screen.finish`: the model's
kirigami tension run, one row in the design directory's ``results.csv``, its curve), so the
directory is a screen directory too, and a design that is killed and run again replays its search
reading the rows it already has — a pattern is never evaluated twice. docs/SCREEN.md, "Design".

**Search** (:func:`search`, a steady-state evolutionary loop, deterministic given the seed and the
rows): the start is ``start_from``'s ``results.csv`` (a screen with the same protocol, model
and max strain; its patterns are known, never evaluated again, its best become the parents), else
:data:`RANDOM_START` patterns drawn at random; then each step takes one of the :data:`PARENTS`
patterns closest to the target so far, crosses it with another (probability
:data:`CROSSOVER`, uniform per digit), flips one or two of its digits, and evaluates the child
when it is new and keeps every column; ``budget`` evaluations in all (cached rows included).

**Distance** to the target: ``|yield_strain − X|`` (strain) or ``|yield_stress_GPa − Y|`` (GPa)
of the model's row; a pattern without a yield in its run has none (ranked last, never a parent
unless fewer than :data:`PARENTS` patterns yielded).

Outputs besides the screen's: ``candidates.csv`` (:data:`CANDIDATE_COLUMNS`, every known
pattern by distance), ``design_search.png`` (distance of each evaluation and the best so far)
and ``design.json`` (target, search settings, top candidates); ``verify`` runs LAMMPS on the
top ``candidates`` (screen's verify runs: source ``lammps`` rows) and fills candidates.csv's LAMMPS
columns.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from tqdm import tqdm

from sagesnet_tf.analysis.plots import save_figure
from sagesnet_tf.analysis.stress_strain import LOCAL_MAX_THRESHOLD_GPA
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import atomic_output, write_json
from sagesnet_tf.kirigami_tension import KirigamiTension
from sagesnet_tf.screen import (MANIFEST, RESULTS, Screen, all_patterns, cell_float, format_cell, open_screen,
                                read_results, severed, verify_row)

#: Patterns the search keeps as parents (the closest to the target so far).
PARENTS = 4
#: Random patterns evaluated first when no screen is given to start from.
RANDOM_START = 8
#: Probability that a child is a uniform crossover of two parents before its flips.
CROSSOVER = 0.3
#: Upper bound of a yield-stress target, GPa: graphene's measured intrinsic strength, 130 ± 10
#: GPa (Lee et al., Science 321, 385 (2008)), with its error; a cut ribbon cannot exceed pristine.
MAX_YIELD_STRESS_GPA = 140.0
#: Columns of ``candidates.csv``: ``rank`` (1 = closest), the model's yield, ``distance`` to the
#: target (empty without a yield), ``evaluation`` (its row among the design directory's model
#: rows, 1-based; empty for a pattern of the start screen) and, for the patterns checked with
#: ``--verify``, LAMMPS's yield and the model's errors (as verify.csv's).
CANDIDATE_COLUMNS = ("rank", "pattern", "yield_strain", "yield_stress_GPa", "distance", "evaluation",
                     "lammps_yield_strain", "lammps_yield_stress_GPa", "yield_strain_error",
                     "yield_stress_relative_error")
CANDIDATES, PLOT, DESIGN = "candidates.csv", "design_search.png", "design.json"
TARGET_COLUMNS = {"yield_strain": "yield_strain", "yield_stress": "yield_stress_GPa"}


def check_target(yield_strain: float | None, yield_stress_GPa: float | None, max_strain: float) -> tuple[str, float]:
    """The target as (``"yield_strain"`` or ``"yield_stress"``, value); exactly one must be given,
    a strain in (0, ``max_strain``) (a run sees no yield beyond its max strain), a stress above the
    yield rule's threshold and at most :data:`MAX_YIELD_STRESS_GPA`, else a one-line
    :class:`SagesnetError`."""
    if (yield_strain is None) == (yield_stress_GPa is None):
        raise SagesnetError("design: give exactly one of --target-yield-strain and --target-yield-stress")
    if yield_strain is not None:
        if not (math.isfinite(yield_strain) and 0 < yield_strain < max_strain):
            raise SagesnetError(f"design: --target-yield-strain {yield_strain:g} is outside (0, {max_strain:g}): a "
                                f"yield strain is positive and the runs stop at the max strain {max_strain:g} "
                                "(--max-strain)")
        return "yield_strain", float(yield_strain)
    if not (math.isfinite(yield_stress_GPa) and LOCAL_MAX_THRESHOLD_GPA < yield_stress_GPa <= MAX_YIELD_STRESS_GPA):
        raise SagesnetError(f"design: --target-yield-stress {yield_stress_GPa:g} GPa is outside "
                            f"({LOCAL_MAX_THRESHOLD_GPA:g}, {MAX_YIELD_STRESS_GPA:g}] GPa: the yield rule counts "
                            f"peaks above {LOCAL_MAX_THRESHOLD_GPA:g} GPa, and no ribbon exceeds graphene's "
                            f"intrinsic strength (130 ± 10 GPa)")
    return "yield_stress", float(yield_stress_GPa)


def distance(row: dict, target: tuple[str, float]) -> float:
    """|model value − target| of a results row, in the target's unit; ``inf`` without a yield."""
    value = cell_float(row[TARGET_COLUMNS[target[0]]])
    return math.inf if value is None else abs(value - target[1])


def _flip(pattern: str, rng: np.random.Generator, parents: list[str]) -> str:
    """A child of ``pattern``: maybe crossed with another parent, then one or two digits flipped."""
    digits = np.array([c == "1" for c in pattern])
    if len(parents) > 1 and rng.random() < CROSSOVER:
        other = np.array([c == "1" for c in parents[rng.integers(len(parents))]])
        digits = np.where(rng.random(len(digits)) < 0.5, digits, other)
    for i in rng.choice(len(digits), size=rng.integers(1, 3), replace=False):
        digits[i] = not digits[i]
    return "".join("1" if d else "0" for d in digits)


def search(evaluate, known: dict[str, float], budget: int, seed: int):
    """Yield the patterns the search evaluates, ``budget`` of them. ``evaluate(pattern)`` returns
    its distance to the target; ``known``: pattern → distance of patterns known before (a start
    screen's; never evaluated). Deterministic given ``seed`` and the distances."""
    rng = np.random.default_rng(seed)
    space = all_patterns()
    scores = dict(known)
    order = {p: i for i, p in enumerate(scores)}

    def parents() -> list[str]:
        return sorted(scores, key=lambda p: (scores[p], order[p]))[:PARENTS]

    def new_random() -> str:
        while True:
            pattern = space[rng.integers(len(space))]
            if pattern not in scores:
                return pattern

    for n in range(budget):
        if n < RANDOM_START and not known:
            child = new_random()
        else:
            pool = parents()
            for _ in range(100):
                child = _flip(pool[rng.integers(len(pool))], rng, pool)
                if child not in scores and not severed(child):
                    break
            else:  # every nearby pattern is known
                child = new_random()
        order[child] = len(order)
        scores[child] = evaluate(child)
        yield child


def _start_rows(start_from: Path, settings: dict) -> dict[str, dict]:
    """The model rows of the screen in ``start_from`` (same protocol, model and max strain as
    ``settings``), by pattern."""
    manifest = start_from / MANIFEST
    if not manifest.is_file() or not (start_from / RESULTS).is_file():
        raise SagesnetError(f"design: --start-from {start_from} holds no screen ({MANIFEST}, {RESULTS}); give a "
                            "directory `sagesnet-tf screen` wrote")
    theirs = json.loads(manifest.read_text(encoding="utf-8"))["settings"]
    changed = sorted(k for k in settings if k != "seed" and theirs.get(k) != settings[k])
    if changed:
        raise SagesnetError(f"design: --start-from {start_from} was screened with other settings "
                            f"({', '.join(changed)}); give the same --model, --quick and --max-strain")
    return {r["pattern"]: r for r in read_results(start_from / RESULTS) if r["source"] == "model"}


def design(out: str | Path, protocol: KirigamiTension, target_yield_strain: float | None = None,
           target_yield_stress_GPa: float | None = None, model: str | None = None, max_strain: float | None = None,
           budget: int = 50, candidates: int = 5, seed: int = 0, start_from: str | Path | None = None,
           verify: bool = False, threads: int | None = None, progress: bool = True) -> dict:
    """Search for patterns whose model yield is closest to the target (exactly one of
    ``target_yield_strain`` and ``target_yield_stress_GPa``, GPa) with ``budget`` evaluations into
    ``out`` (a screen directory: resumed); ``verify``: LAMMPS on the top ``candidates``. Returns
    design.json's dict (``top``: the top candidates as candidates.csv rows)."""
    if budget < 1 or candidates < 1:
        raise SagesnetError(f"design: --budget and --candidates must be >= 1, got {budget} and {candidates}")
    target = check_target(target_yield_strain, target_yield_stress_GPa,
                          protocol.max_strain if max_strain is None else max_strain)
    out = Path(out)
    start = {}
    if start_from is not None:  # checked before the design directory is made
        settings = Screen(out, protocol, model, protocol.max_strain if max_strain is None else max_strain, seed,
                          threads).settings()
        start = _start_rows(Path(start_from), settings)
    run, results = open_screen(out, protocol, model, max_strain, seed, threads, verb="design")
    rows = {r["pattern"]: r for r in results.rows if r["source"] == "model"}
    known = {p: distance(r, target) for p, r in start.items()}

    def evaluate(pattern: str) -> float:
        if pattern not in rows:
            run.finish(results, pattern, "model")
            rows[pattern] = results.rows[-1]
        bar.update()
        return distance(rows[pattern], target)

    with tqdm(total=budget, unit="pattern", desc="design", disable=not progress, dynamic_ncols=True) as bar:
        for _ in search(evaluate, known, min(budget, len(all_patterns()) - len(known)), seed):
            pass

    evaluation = {p: i + 1 for i, p in enumerate(rows)}
    ranked = sorted({**start, **rows}.items(), key=lambda item: (distance(item[1], target), evaluation.get(item[0], 0)))
    checked = {}
    if verify:
        done = results.done()
        for pattern, row in ranked[:candidates]:
            if (pattern, "lammps") not in done:
                run.finish(results, pattern, "lammps")
            lammps = next(r for r in results.rows if r["pattern"] == pattern and r["source"] == "lammps")
            checked[pattern] = verify_row(row, lammps, "top")
    table = []
    for rank, (pattern, row) in enumerate(ranked, 1):
        v = checked.get(pattern, {})
        d = distance(row, target)
        table.append({"rank": rank, "pattern": pattern, "yield_strain": cell_float(row["yield_strain"]),
                      "yield_stress_GPa": cell_float(row["yield_stress_GPa"]), "distance": d if d < math.inf else None,
                      "evaluation": evaluation.get(pattern), **{c: v.get(c) for c in CANDIDATE_COLUMNS[6:]}})
    with atomic_output(out / CANDIDATES) as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(CANDIDATE_COLUMNS)
        writer.writerows([[format_cell(r[c]) for c in CANDIDATE_COLUMNS] for r in table])
    plot_search(out / PLOT, [distance(r, target) for r in rows.values()], target)
    summary = {"kind": "sagesnet-tf design", "target": {"quantity": target[0], "value": target[1],
                                                          "unit": "1" if target[0] == "yield_strain" else "GPa"},
               "budget": budget, "evaluated": len(rows), "start_from": None if start_from is None else str(start_from),
               "seed": seed, "search": {"parents": PARENTS, "random_start": RANDOM_START, "crossover": CROSSOVER},
               "candidates": CANDIDATES, "top": table[:candidates]}
    write_json(out / DESIGN, summary)
    return summary


def plot_search(path: Path, distances: list[float], target: tuple[str, float]) -> None:
    """Distance to the target of each evaluation (the design directory's model rows in order; no
    yield: a cross on the top edge) and the best so far."""
    import matplotlib.pyplot as plt

    d = np.array(distances, float)
    n = np.arange(1, len(d) + 1)
    finite = np.isfinite(d)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(n[finite], d[finite], "o", ms=4, color="C0", label="evaluation")
    if finite.any():
        best = np.minimum.accumulate(np.where(finite, d, np.inf))
        ax.step(n[np.isfinite(best)], best[np.isfinite(best)], where="post", color="C3", label="best so far")
    if not finite.all():
        top = ax.get_ylim()[1] if finite.any() else 1.0
        ax.plot(n[~finite], np.full((~finite).sum(), top), "x", color="grey", label="no yield")
    quantity, stress = target[0].replace("_", " "), target[0] == "yield_stress"
    ax.set(xlabel="evaluation", ylabel=f"|{quantity} - target|" + (" (GPa)" if stress else ""),
           title=f"design: target {quantity} {target[1]:g}" + (" GPa" if stress else ""))
    ax.xaxis.set_major_locator(plt.MaxNLocator(integer=True))
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


__all__ = ["CANDIDATE_COLUMNS", "MAX_YIELD_STRESS_GPA", "check_target", "design", "distance", "plot_search", "search"]
