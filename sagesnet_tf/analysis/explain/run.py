"""``sagesnet-tf explain``: the sensitivity grid and the latent clusters of a structure, written
to an output directory (docs/EXPLAIN.md).

Outputs (every file written atomically, replaced whole; units Å, GPa):

- ``sensitivity.csv``: :data:`SENSITIVITY_COLUMNS`, one row per cell of the model's grid of the
  explained frame (:mod:`~sagesnet_tf.analysis.explain.sensitivity`): cell index, its centre x/y
  (Å, in the model's grid), its atoms, S_c (GPa/Å).
- ``sensitivity.png``: S_c summed over z as a heat map over x–y, the atoms, the cut corners and the
  top :data:`TOP_FRACTION` cells.
- ``clusters.extxyz``: every frame of the structure file with per-atom columns ``cluster`` (its
  cell's k-means cluster) and ``geometry`` (index into
  :data:`~sagesnet_tf.analysis.explain.geometry.LABELS`).
- ``clusters.png``: the explained frame's atoms coloured by cluster and by geometric label.
- ``explain.json``: the options, the figures (cut-tip fraction of the top cells, cluster purity)
  and their baselines.
"""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sagesnet_tf.analysis.explain.geometry import (CUT_TIP_RADIUS_A, LABELS, atom_labels, distance_to_corners,
                                                   frame_corners, kirigami_geometry)
from sagesnet_tf.analysis.stress_strain import axis_index, nominal_thickness, nominal_width
from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import atomic_output, read_structure, write_json
from sagesnet_tf.io.extxyz import iter_extxyz_frames, write_extxyz_frames
from sagesnet_tf.io.model_frame import to_model_frame
from sagesnet_tf.io.structure_files import detect_format
from sagesnet_tf.limits import MAX_STRAIN_RATE_PER_PS, STRAIN_RATE_LIMIT_WHY

if TYPE_CHECKING:  # TensorFlow is imported when a run starts, so that ``explain --help`` stays quick
    from sagesnet_tf.analysis.explain.sensitivity import Sensitivity

#: Rollout before the stress is read, ps, when none is given: 3 steps of the shipped models' 2 fs (the
#: cut-tip figure of docs/EXPLAIN.md is highest at 1–3 steps and back at chance by 10).
DEFAULT_HORIZON_PS = 0.006
#: Longest rollout differentiated, model steps (the tape keeps every step's tensors).
MAX_HORIZON_STEPS = 250
#: The share of occupied cells, by sensitivity, whose distance to the cut corners is reported.
TOP_FRACTION = 0.05
#: sensitivity.png's colour scale ends at this percentile of the occupied columns (one hot cell
#: would otherwise leave the rest of the map black).
COLOUR_PERCENTILE = 99.0
SENSITIVITY_COLUMNS = ("ix", "iy", "iz", "x_A", "y_A", "n_atoms", "sensitivity")
#: The cell latents ``--latent`` clusters: the encoder's z(t), or z(t+Δ) after the latent step.
LATENTS = ("encoder", "stepped")
#: Most k-means clusters ``--clusters`` takes.
MAX_CLUSTERS = 64
OUTPUT_FILES = ("sensitivity.csv", "sensitivity.png", "clusters.extxyz", "clusters.png", "explain.json")


def read_frames(path: str | Path) -> list[Atoms]:
    """Every frame of ``path`` (an extxyz file may hold several, e.g. a ``simulate`` trajectory;
    other formats one), each validated as :func:`~sagesnet_tf.io.read_structure` validates."""
    path = str(path)
    if detect_format(path) != "extxyz":
        return [read_structure(path)]
    return [frame.validate(source=f"{path} (frame {k})", inside=False)
            for k, frame in enumerate(iter_extxyz_frames(path))]


def explain(structure: str | Path, out_dir: str | Path, model: str | None = None, frame: int = -1,
            horizon_ps: float = DEFAULT_HORIZON_PS, strain_rate: float = 0.0, axis: str = "x",
            temperature_K: float | None = None, n_clusters: int = 4, seed: int = 0, latent: str = "encoder",
            pattern: str | None = None, nx: int | None = None, ny: int | None = None) -> dict:
    """Write the explain outputs (module docstring) for the structure file ``structure``.

    Args:
        structure: structure file; all its frames are clustered, frame ``frame`` (Python index) is
            the one whose sensitivity grid is computed.
        out_dir: output directory (created; the files of :data:`OUTPUT_FILES` in it are replaced).
        model: exported model NAME[/VERSION] (default: the shipped one).
        horizon_ps: rollout before σ is read, ps (≥ 0; rounded to whole model steps).
        strain_rate: engineering strain rate along ``axis`` during the rollout, 1/ps of the frame's
            unstrained length (its ``info["strain"]``, 0 when absent), as ``simulate`` stretches it.
        axis: ``"x"`` or ``"y"``, the load axis of σ.
        temperature_K: the model's environment temperature (as ``simulate --temperature``; None: 0).
        n_clusters, seed: k-means clusters and seed.
        latent: the cell latents clustered, one of :data:`LATENTS`: ``encoder`` z(t) or ``stepped``
            z(t+Δ) (:func:`~sagesnet_tf.analysis.explain.clusters.cell_latents`; the environment of
            each frame as for the sensitivity, at the frame's own strain).
        pattern, nx, ny: the kirigami build, when the structure's info lacks it (cut-tip figures).

    Returns:
        The summary written to ``explain.json``.
    """
    from sagesnet_tf.analysis.explain.clusters import cell_latents, cluster_latents, purity
    from sagesnet_tf.analysis.explain.sensitivity import stress_sensitivity
    from sagesnet_tf.export import model_from_savedmodel
    from sagesnet_tf.grid import orthorhombic_box
    from sagesnet_tf.savedmodel import resolve_model_dir
    from sagesnet_tf.simulate import env_vector
    from sagesnet_tf.simulator import LearnedSimulator

    a = axis_index(axis)
    if latent not in LATENTS:
        raise SagesnetError(f"explain: --latent must be one of {', '.join(LATENTS)}, got {latent!r}")
    if not (math.isfinite(horizon_ps) and horizon_ps >= 0):
        raise SagesnetError(f"explain: --horizon-ps must be a finite time ≥ 0 ps, got {horizon_ps}")
    if not (math.isfinite(strain_rate) and abs(strain_rate) <= MAX_STRAIN_RATE_PER_PS):
        raise SagesnetError(f"explain: --strain-rate {strain_rate} 1/ps is outside ±{MAX_STRAIN_RATE_PER_PS:g} 1/ps "
                            f"({STRAIN_RATE_LIMIT_WHY})")
    frames = read_frames(structure)
    if not -len(frames) <= frame < len(frames):
        raise SagesnetError(f"explain: --frame {frame} is not a frame of {structure}, which holds {len(frames)}; "
                            f"give -{len(frames)}..{len(frames) - 1}")
    model_dir = resolve_model_dir(model)
    net, meta = model_from_savedmodel(model_dir)
    simulator = LearnedSimulator(net)
    delta = float(meta["delta_ps"])
    steps = int(round(horizon_ps / delta))
    if steps > MAX_HORIZON_STEPS:
        raise SagesnetError(f"explain: --horizon-ps {horizon_ps} is {steps} model steps of {delta} ps, more than the "
                            f"{MAX_HORIZON_STEPS} differentiated at most; give a shorter horizon")
    placed = []
    for atoms in frames:
        unknown = sorted(set(atoms.symbols) - set(meta["elements"]))
        if unknown:
            raise SagesnetError(f"explain: element(s) {', '.join(unknown)} not known to the model "
                                f"({', '.join(meta['elements'])})")
        orthorhombic_box(atoms)
        placed.append(to_model_frame(atoms, meta["boundary"]).atoms)
    species = [np.array([meta["elements"].index(s) for s in atoms.symbols], np.int32) for atoms in placed]

    # (a) the sensitivity grid of the explained frame
    target = placed[frame]
    box = np.diag(target.cell).astype(np.float64)
    strain = float(target.info.get("strain", 0.0))
    growth = np.zeros(3)
    growth[a] = box[a] / (1.0 + strain) * strain_rate * delta
    env = env_vector(meta, temperature_K or 0.0, strain_rate, strain)
    sens = stress_sensitivity(simulator, target.positions, target.velocities, species[frame], box, env, a, steps,
                              growth, nominal_width(target, axis), nominal_thickness(target))
    geometry = kirigami_geometry(frames[frame], pattern, nx, ny)
    corners = [frame_corners(atoms, geometry) if geometry else np.zeros((0, 2)) for atoms in placed]
    labels = [atom_labels(atoms, c) for atoms, c in zip(placed, corners)]

    # (b) latent clusters over all frames
    began = time.time()
    def latent_env(atoms: Atoms) -> np.ndarray | None:
        if latent == "encoder":
            return None
        return env_vector(meta, temperature_K or 0.0, strain_rate, float(atoms.info.get("strain", 0.0)))

    latents, rows = zip(*[cell_latents(simulator, atoms.positions, atoms.velocities, s, np.diag(atoms.cell),
                                       latent_env(atoms)) for atoms, s in zip(placed, species)])
    cells = cluster_latents(np.concatenate(latents), n_clusters, seed)
    offsets = np.cumsum([0] + [len(z) for z in latents])
    atom_clusters = [cells[offset + row] for offset, row in zip(offsets, rows)]
    cluster_purity, table = purity(np.concatenate(atom_clusters), np.concatenate(labels), n_clusters, len(LABELS))
    cluster_wall = round(time.time() - began, 3)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_sensitivity_csv(out / "sensitivity.csv", sens)
    write_extxyz_frames(out / "clusters.extxyz", frames, {"cluster": atom_clusters, "geometry": labels})
    summary = {
        "structure": str(structure), "model": str(model_dir), "frame": frame % len(frames), "n_frames": len(frames),
        "n_atoms": len(target), "units": "Å, GPa, ps",
        "sensitivity": {
            "definition": f"sum over a cell's atoms of |d sigma_{axis}{axis}(t + horizon) / d r_i(t)|, GPa/Å",
            "horizon_ps": steps * delta, "steps": steps, "strain_rate_per_ps": strain_rate, "axis": axis,
            "temperature_K": temperature_K, "frame_strain": strain, "stress_gpa": sens.stress_gpa,
            "wall_s": sens.wall_s, "grid_shape": list(sens.cells.shape),
            "occupied_cells": int((sens.counts > 0).sum()), "max": float(sens.cells.max()),
            "mean_by_label": _mean_by_label(sens.atoms, labels[frame]),
            **_cut_tip_figures(sens, corners[frame], target)},
        "clusters": {
            "latent": latent, "k": n_clusters, "seed": seed, "frames": len(frames), "cells": int(offsets[-1]),
            "latent_width": int(latents[0].shape[1]), "wall_s": cluster_wall,
            "labels": list(LABELS), "label_atoms": np.bincount(np.concatenate(labels), minlength=len(LABELS)).tolist(),
            "purity": cluster_purity,
            "majority_baseline": float(table.sum(0).max() / table.sum()),
            "table": {f"cluster_{k}": dict(zip(LABELS, table[k].tolist())) for k in range(n_clusters)}},
        "kirigami": None if geometry is None else {"pattern": geometry.pattern, "nx": geometry.nx, "ny": geometry.ny,
                                                   "cut": geometry.cut, "corners_A": corners[frame].round(3).tolist()},
    }
    _plot_sensitivity(out / "sensitivity.png", sens, target, corners[frame], summary)
    _plot_clusters(out / "clusters.png", target, atom_clusters[frame], labels[frame], n_clusters, summary)
    write_json(out / "explain.json", summary)
    return summary


def _cut_tip_figures(sens: "Sensitivity", corners: np.ndarray, atoms: Atoms) -> dict:
    """The issue's figure: the share of the top :data:`TOP_FRACTION` occupied cells whose centre
    lies within :data:`CUT_TIP_RADIUS_A` (x–y) of a cut corner, and the same share over all
    occupied cells (what cells drawn at random would score) and the most it can be (all cells near a
    corner among the top ones: below 1 when they are fewer than the top cells); the first two for
    atoms too (per-atom sensitivity, free of how the lattice falls on the voxels); None without corners."""
    from sagesnet_tf.analysis.explain.sensitivity import top_cells

    top = top_cells(sens, TOP_FRACTION)
    figures = {"top_fraction": TOP_FRACTION, "top_cells": top.tolist(), "cut_tip_radius_A": CUT_TIP_RADIUS_A,
               "top_within_radius": None, "occupied_within_radius": None, "top_within_radius_attainable": None,
               "top_atoms_within_radius": None,
               "atoms_within_radius": None}
    if len(corners):
        centres = sens.centres()
        near = distance_to_corners(centres[sens.counts > 0], corners, atoms) <= CUT_TIP_RADIUS_A
        near_atoms = distance_to_corners(atoms.positions, corners, atoms) <= CUT_TIP_RADIUS_A
        top_atoms = np.argsort(-sens.atoms, kind="stable")[:max(1, int(np.ceil(TOP_FRACTION * len(atoms))))]
        figures.update(
            top_within_radius=float(np.mean(distance_to_corners(centres[tuple(top.T)], corners, atoms)
                                            <= CUT_TIP_RADIUS_A)),
            occupied_within_radius=float(near.mean()),
            top_within_radius_attainable=float(min(1.0, near.sum() / len(top))),
            top_atoms_within_radius=float(near_atoms[top_atoms].mean()),
            atoms_within_radius=float(near_atoms.mean()))
    return figures


def _mean_by_label(values: np.ndarray, labels: np.ndarray) -> dict:
    """Mean of per-atom ``values`` (N,) for each geometric label present in ``labels`` (N,)."""
    return {name: float(values[labels == k].mean()) for k, name in enumerate(LABELS) if np.any(labels == k)}


def _write_sensitivity_csv(path: Path, sens: "Sensitivity") -> None:
    centres = sens.centres()
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(SENSITIVITY_COLUMNS)
    for index in np.ndindex(*sens.cells.shape):
        writer.writerow([*index, round(float(centres[index][0]), 4), round(float(centres[index][1]), 4),
                         int(sens.counts[index]), float(sens.cells[index])])
    with atomic_output(path) as handle:
        handle.write(buf.getvalue())


def _xy(atoms: Atoms) -> np.ndarray:
    """(N, 2) Å, the atoms' x, y wrapped into the cell along its periodic axes (as the grid holds them)."""
    return atoms.wrapped().positions[:, :2]


def _plot_sensitivity(path: Path, sens: "Sensitivity", atoms: Atoms, corners: np.ndarray, summary: dict) -> None:
    import matplotlib.pyplot as plt

    from sagesnet_tf.analysis.plots import save_figure

    s = summary["sensitivity"]
    (x0, y0), (dx, dy) = sens.origin[:2], sens.spacing[:2]
    nx, ny = sens.cells.shape[:2]
    fig, ax = plt.subplots(figsize=(8, 8 * ny * dy / (nx * dx) + 1.2))
    columns = sens.cells.sum(2)
    top_colour = np.percentile(columns[columns > 0], COLOUR_PERCENTILE) if np.any(columns > 0) else 1.0
    image = ax.imshow(columns.T, origin="lower", extent=(x0, x0 + nx * dx, y0, y0 + ny * dy), cmap="magma",
                      interpolation="nearest", vmin=0.0, vmax=top_colour)
    fig.colorbar(image, ax=ax, label=f"sensitivity of σ_{s['axis']}{s['axis']} (GPa/Å), summed over z "
                                     f"(colours end at the {COLOUR_PERCENTILE:g}th percentile)")
    xy = _xy(atoms)
    ax.scatter(xy[:, 0], xy[:, 1], s=6, c="cyan", linewidths=0, label="atoms")
    top = np.asarray(s["top_cells"]).reshape(-1, 3)
    ax.scatter(x0 + (top[:, 0] + 0.5) * dx, y0 + (top[:, 1] + 0.5) * dy, s=80, facecolors="none", edgecolors="lime",
               label=f"top {TOP_FRACTION:.0%} cells")
    if len(corners):
        ax.scatter(corners[:, 0], corners[:, 1], marker="x", s=60, c="white", label="cut corners")
    share = s["top_within_radius"]
    ax.set_title(f"horizon {s['horizon_ps']:g} ps, σ = {s['stress_gpa']:.2f} GPa"
                 + ("" if share is None else f"; top cells within {CUT_TIP_RADIUS_A:g} Å of a corner: {share:.0%} "
                                              f"(all cells: {s['occupied_within_radius']:.0%})"), fontsize=9)
    ax.set_xlabel("x (Å)")
    ax.set_ylabel("y (Å)")
    ax.legend(loc="upper right", fontsize=7)
    save_figure(fig, path)


def _plot_clusters(path: Path, atoms: Atoms, clusters: np.ndarray, labels: np.ndarray, n_clusters: int,
                   summary: dict) -> None:
    import matplotlib.pyplot as plt

    from sagesnet_tf.analysis.plots import save_figure

    xy = _xy(atoms)
    fig, axes = plt.subplots(2, 1, figsize=(8, 9), sharex=True)
    colours = plt.get_cmap("tab10" if n_clusters <= 10 else "tab20")
    for k in range(n_clusters):
        mine = clusters == k
        axes[0].scatter(xy[mine, 0], xy[mine, 1], s=14, color=colours(k % colours.N), label=f"cluster {k}")
    for k, name in enumerate(LABELS):
        mine = labels == k
        if mine.any():
            axes[1].scatter(xy[mine, 0], xy[mine, 1], s=14, color=plt.get_cmap("Set1")(k), label=name)
    c = summary["clusters"]
    axes[0].set_title(f"latent clusters (k-means, k = {c['k']}, seed {c['seed']}, {c['cells']} cells over "
                      f"{c['frames']} frame(s))", fontsize=9)
    axes[1].set_title(f"geometric labels; purity {c['purity']:.3f} (one cluster: {c['majority_baseline']:.3f})",
                      fontsize=9)
    for ax in axes:
        ax.set_aspect("equal")
        ax.set_ylabel("y (Å)")
        ax.legend(loc="upper right", fontsize=7, markerscale=1.5)
    axes[1].set_xlabel("x (Å)")
    save_figure(fig, path)
