"""MD windows -> batches of atoms and training targets for :class:`SagesnetModel`.

Shapes: B batch, L window length (frames), N atoms, E environment fields, X/Y/Z cells, S slots,
F slot features. Units: LAMMPS ``metal`` (Å, ps, Å/ps, eV, bar).

A *window* is L consecutive recorded frames of one trajectory (one record stride apart = one
model step Δ). :class:`MDWindows` holds the frames of several trajectories in memory and draws
batches of windows as plain arrays:

- ``positions`` (B, L, N, 3) Å, **unwrapped** along the window (frame k = frame 0 + the sum of
  minimum-image displacements), so ``positions[:, k] - positions[:, 0]`` is the true motion.
- ``velocities`` (B, L, N, 3) Å/ps.
- ``species`` (B, N) int32, index into the model's elements.
- ``box`` (B, L, 3) Å, orthorhombic box lengths of every frame (origin 0). Constant for NVT/NVE;
  under tension (``fix deform … remap x``) or NPT the box grows and LAMMPS rescales the atom
  coordinates with it, so frame k+1 follows from frame k stretched affinely to box k+1 (what
  ``simulate`` does before each model step) plus the motion the model predicts.
- ``env`` (B, E) float32, the raw environment of frame 0, in the units of its field names (the
  :class:`~sagesnet_tf.simulator.LearnedSimulator` normalises it with the model's ``env_scales``).
- ``stress`` (B, N, 6) bar·Å³, per-atom stress × volume at frame 0.

A window may be drawn **time-reversed** (``sample(..., time_reversal=True)``): frames in reverse
order with every velocity negated. Constant-box NVT/NVE dynamics (velocity Verlet, Nosé–Hoover
chains) are time-reversible, so a reversed window is another valid trajectory of the same
ensemble; training on both directions removes any learnable friction (a velocity change
correlated with −v), which would otherwise cool free rollouts. Windows whose box changes are
never reversed (a reversed tension run would be a compression the data does not hold).
:func:`shift_windows` translates training windows by random fractions of the box along the
periodic axes (``data.random_shift``); :func:`mirror_windows` reflects half of them through the
mid-plane of the open axis (``data.random_mirror``).

The stage losses voxelize a batch inside the graph with
:meth:`~sagesnet_tf.simulator.LearnedSimulator.atoms_state` (so the unrolled stage can
re-voxelize its own predictions), padding the open axis to a fixed number of cells so that a batch
stacks; :func:`cell_sums` / :func:`cell_targets` sum per-atom targets per cell.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from sagesnet_tf.analysis.structure_metrics import minimum_image
from sagesnet_tf.atoms import MASSES
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.thermo import MVV2E
from sagesnet_tf.trajectory import Trajectory


@dataclasses.dataclass
class Segment:
    """Frames [start, stop) of one trajectory, the unit of the train/validation split."""

    trajectory: Trajectory
    start: int
    stop: int
    name: str = ""
    #: relative draw probability of each of its windows (``data.dataset_weights``)
    weight: float = 1.0


class MDWindows:
    """Random windows of L frames drawn from trajectory segments.

    Segments may hold different structures (atom counts, box sizes): windows are grouped by their
    atoms and grid shape, and a batch is drawn from one group at a time (the group chosen with
    probability proportional to its windows' summed :attr:`Segment.weight`), so the windows of a
    batch share N and the grid shape; within a group a window is drawn with probability proportional
    to its segment's weight.
    A window never spans a gap between recorded bursts (:meth:`Trajectory.consecutive`).

    Args:
        segments: :class:`Segment` list; each needs at least L frames and orthorhombic boxes; all
            share the periodic axes and the environment fields.
        length: L, frames per window.
        elements: the model's element symbols (species index order).
        grid_cells: box lengths (F, 3) Å -> (F, 3) int, the model's grid cells along the periodic
            axes (:func:`periodic_cells`). Needed for segments whose box changes (tension, NPT):
            their windows are grouped by grid shape, and a window whose frames would not share
            one (the box grew past a cell boundary inside it) is never drawn. Without it such
            segments are refused, and windows are grouped by box.
        fits: positions (F, N, 3) Å, box lengths (F, 3) Å -> (F,) bool, whether the model's atom
            grid holds each frame (every atom in a slot, the overflow spill included;
            :func:`~sagesnet_tf.grid.frames_fit`). Windows with a frame that does not fit (atoms
            clumped together in a broken sheet) are never drawn; :attr:`overfull` counts them per
            segment. None: every frame fits.
    """

    def __init__(self, segments: list[Segment], length: int, elements, grid_cells=None, fits=None):
        self.length = int(length)
        self.elements = tuple(elements)
        if not segments:
            raise SagesnetError("no trajectory segments to draw windows from; check data.datasets")
        self.segments, groups, group_of_window, window_weights = [], {}, [], []
        #: per segment, whether its box changes (tension, NPT)
        self.changing_box: list[bool] = []
        #: per segment name, the windows left out because a frame does not fit the atom grid
        self.overfull: dict[str, int] = {}
        first = segments[0].trajectory
        self.pbc = np.asarray(first.pbc, bool)
        self.env_fields = tuple(first.env_fields)
        for seg in segments:
            traj = seg.trajectory
            if seg.stop - seg.start < self.length:
                raise SagesnetError(f"segment {seg.name or '?'} has {seg.stop - seg.start} frames; "
                                    f"windows need {self.length}; use more frames")
            cells = traj.cell[seg.start:seg.stop]
            lengths = np.diagonal(cells, axis1=1, axis2=2)  # (F, 3)
            if np.abs(cells - lengths[:, :, None] * np.eye(3)[None]).max() > 1e-6:
                raise SagesnetError(f"segment {seg.name or '?'}: the box is triclinic; MD training takes "
                                    "orthorhombic boxes")
            changing = bool(np.abs(lengths - lengths[0]).max() > 1e-6)
            if changing and grid_cells is None:
                raise SagesnetError(f"segment {seg.name or '?'}: the box changes; pass grid_cells to group its "
                                    "windows by grid shape")
            unknown = sorted(set(traj.symbols) - set(self.elements))
            if unknown:
                raise SagesnetError(f"segment {seg.name or '?'} has element {unknown[0]} the model does not know; "
                                    f"model.elements is {list(self.elements)}")
            if not np.array_equal(traj.pbc, self.pbc) or tuple(traj.env_fields) != self.env_fields:
                raise SagesnetError(f"segment {seg.name or '?'}: periodic axes or environment fields differ from "
                                    f"{segments[0].name or 'the first segment'}; train on one kind of boundary")
            n_windows = seg.stop - seg.start - self.length + 1
            if grid_cells is None:
                keys = [(tuple(traj.symbols), tuple(np.round(lengths[0], 4)))] * n_windows
                same = np.ones(len(lengths) - 1, bool)
            else:
                frame_cells = np.asarray(grid_cells(lengths))                            # (F, 3)
                same = np.all(frame_cells[:-1] == frame_cells[1:], axis=1)                 # (F-1,)
                keys = [(tuple(traj.symbols), tuple(frame_cells[w])) for w in range(n_windows)]
            # a window is drawn only if its frames are consecutive records sharing one grid shape
            breaks = ~same | ~traj.consecutive()[seg.start:seg.stop - 1]
            runs = np.concatenate([[0], np.cumsum(breaks)])                                # (F,) run id
            keys = [k if runs[w] == runs[w + self.length - 1] else None for w, k in enumerate(keys)]
            if all(k is None for k in keys):
                raise SagesnetError(f"segment {seg.name or '?'} has no {self.length} consecutive records "
                                    "(bursts too short?); record longer bursts or use shorter windows")
            if fits is not None:
                bad = np.concatenate([[0], np.cumsum(~np.asarray(fits(traj.positions[seg.start:seg.stop], lengths)))])
                crowded = [k is not None and bad[w + self.length] > bad[w] for w, k in enumerate(keys)]
                self.overfull[seg.name] = int(sum(crowded))
                keys = [None if c else k for k, c in zip(keys, crowded)]
            group_of_window.append([None if k is None else groups.setdefault(k, len(groups)) for k in keys])
            window_weights.append(np.full(len(keys), float(seg.weight)))
            self.segments.append(seg)
            self.changing_box.append(changing)
        self._starts = np.concatenate([[0], np.cumsum([len(g) for g in group_of_window])])
        flat = np.array([-1 if g is None else g for gs in group_of_window for g in gs])
        #: per group, the global indices of its windows
        self._group_windows = [np.flatnonzero(flat == group) for group in range(len(groups))]
        weight = np.concatenate(window_weights)
        #: per group, the draw weights of its windows
        self._group_weights = [weight[w] for w in self._group_windows]

    @property
    def n_windows(self) -> int:
        """How many distinct windows the segments hold."""
        return int(self._starts[-1])

    def window(self, index: int, reverse: bool = False) -> dict[str, np.ndarray]:
        """Window ``index`` in [0, n_windows) as unbatched arrays (see module docstring); ``reverse``:
        the same frames time-reversed (last frame first, velocities negated; constant boxes only)."""
        seg_i = int(np.searchsorted(self._starts, index, side="right") - 1)
        seg = self.segments[seg_i]
        traj = seg.trajectory
        frames = np.arange(self.length) + seg.start + index - int(self._starts[seg_i])
        if reverse:
            if self.changing_box[seg_i]:
                raise SagesnetError(f"segment {seg.name or '?'}: a window whose box changes cannot be time-reversed")
            frames = frames[::-1]
        t0 = int(frames[0])
        box = np.diagonal(traj.cell[frames], axis1=1, axis2=2).astype(np.float64)  # (L, 3)
        raw = traj.positions[frames]
        steps = minimum_image(np.diff(raw, axis=0), box[1:, None], self.pbc)
        pos = np.concatenate([raw[:1], raw[:1] + np.cumsum(steps, axis=0)], axis=0)
        return {
            "positions": pos.astype(np.float32),
            "velocities": (-1.0 if reverse else 1.0) * traj.velocities[frames].astype(np.float32),
            "species": np.array([self.elements.index(s) for s in traj.symbols], np.int32),
            "box": box.astype(np.float32),
            "env": np.asarray(traj.environment[t0], np.float32),
            "stress": traj.stress[t0].astype(np.float32),
        }

    def batch(self, indices, reverse=None) -> dict[str, np.ndarray]:
        """Windows ``indices`` stacked along a new batch axis B; ``reverse`` (B,) bool, optional."""
        reverse = np.zeros(len(indices), bool) if reverse is None else reverse
        items = [self.window(int(i), bool(r)) for i, r in zip(indices, reverse)]
        return {k: np.stack([it[k] for it in items]) for k in items[0]}

    def draw(self, rng: np.random.Generator, batch_size: int, time_reversal: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Window indices (B,) of one group (see the class docstring) drawn with ``rng``, and their
        time-reversal flags (B,) bool (each True with probability 1/2 with ``time_reversal``)."""
        sizes = np.array([w.sum() for w in self._group_weights], dtype=np.float64)
        group = int(rng.choice(len(sizes), p=sizes / sizes.sum()))
        windows, weights = self._group_windows[group], self._group_weights[group]
        if np.all(weights == weights[0]):
            picks = windows[rng.integers(0, len(windows), size=batch_size)]
        else:
            picks = rng.choice(windows, size=batch_size, p=weights / weights.sum())
        reverse = rng.random(batch_size) < 0.5 if time_reversal else np.zeros(batch_size, bool)
        segment = np.searchsorted(self._starts, picks, side="right") - 1
        return picks, reverse & ~np.asarray(self.changing_box)[segment]

    def sample(self, rng: np.random.Generator, batch_size: int, time_reversal: bool = False) -> dict[str, np.ndarray]:
        """:meth:`batch` of :meth:`draw`."""
        return self.batch(*self.draw(rng, batch_size, time_reversal))

    def same_group(self, index: int, candidates: np.ndarray) -> np.ndarray:
        """(len(candidates),) bool: which window indices share window ``index``'s group (may batch with it)."""
        group = next(w for w in self._group_windows if index in w)
        return np.isin(candidates, group)

    def open_axis_cells(self, h: float, margin_cells: int = 1) -> int:
        """Cells the atom grid needs along the (single) non-periodic axis for every frame, + 1 spare."""
        open_axes = np.flatnonzero(~self.pbc)
        if len(open_axes) == 0:
            return 0
        worst = 0.0
        for seg in self.segments:
            p = seg.trajectory.positions[seg.start:seg.stop][..., open_axes]
            worst = max(worst, float((p.max(axis=1) - p.min(axis=1)).max()))
        return int(np.floor(worst / h)) + 1 + 2 * margin_cells + 1


def shift_windows(batch: dict[str, np.ndarray], rng: np.random.Generator, pbc) -> dict[str, np.ndarray]:
    """``batch`` with each window's atoms translated along the periodic axes by a random fraction
    (uniform in [0, 1) per axis and window) of its box, applied to every frame as that fraction of
    the frame's box, so that affinely stretched windows stay consistent (LAMMPS remaps about the
    box origin). Periodic MD is invariant under translation; the model sees the lattice at every
    offset to its voxel grid instead of the one the data were generated at.

    Args:
        batch: as :meth:`MDWindows.batch` (positions (B, L, N, 3) Å, box (B, L, 3) Å, ...).
        rng: the draw's generator. pbc: (3,) bool.
    """
    fraction = rng.random((batch["positions"].shape[0], 1, 3)) * np.asarray(pbc, dtype=bool)
    shift = (fraction * batch["box"]).astype(np.float32)  # (B, L, 3)
    return {**batch, "positions": batch["positions"] + shift[:, :, None, :]}


#: (xx, yy, zz, xy, xz, yz): the Voigt stress components that change sign in a mirror through a
#: plane normal to axis 0, 1, 2 (those with that axis exactly once).
_MIRROR_FLIPS = {0: (3, 4), 1: (3, 5), 2: (4, 5)}


def mirror_windows(batch: dict[str, np.ndarray], rng: np.random.Generator, pbc) -> dict[str, np.ndarray]:
    """``batch`` with each window reflected, with probability 1/2, through the mid-plane of every
    non-periodic axis: coordinate a -> box_a − a, velocity and the stress components xz, yz (for
    z) negated. A free sheet is symmetric under it (AIREBO is): the model sees the open axis both
    ways up, so it cannot learn a net force along it from the data's one orientation (the
    open-axis grid is anchored at the lowest atom, which no symmetry of the network undoes).

    Args:
        batch: as :meth:`MDWindows.batch`. rng: the draw's generator. pbc: (3,) bool.
    """
    flip = rng.random(batch["positions"].shape[0]) < 0.5  # (B,)
    positions, velocities, stress = (batch[k].copy() for k in ("positions", "velocities", "stress"))
    for axis in np.flatnonzero(~np.asarray(pbc, dtype=bool)):
        positions[flip, ..., axis] = batch["box"][flip][:, :, None, axis] - positions[flip, ..., axis]
        velocities[flip, ..., axis] *= -1.0
        for component in _MIRROR_FLIPS[int(axis)]:
            stress[flip, :, component] *= -1.0
    return {**batch, "positions": positions, "velocities": velocities, "stress": stress}


def atom_masses(species, elements) -> tf.Tensor:
    """(B, N) float32 masses (g/mol) of species (B, N) int, indices into ``elements``."""
    return tf.gather(tf.constant([MASSES[e] for e in elements], tf.float32), species)


def cell_sums(assignment, values, grid_shape) -> tf.Tensor:
    """Per-cell sums of per-atom values: assignment (B, N, 4) int32, values (B, N, ...) float32,
    grid_shape (3,) int32 (X, Y, Z) -> (B, X, Y, Z, ...)."""
    b, n = tf.shape(assignment)[0], tf.shape(assignment)[1]
    index = tf.concat([tf.tile(tf.range(b)[:, None, None], [1, n, 1]), assignment[..., :3]], axis=-1)
    shape = tf.concat([[b], tf.cast(grid_shape, tf.int32), tf.shape(values)[2:]], 0)
    return tf.scatter_nd(index, tf.cast(values, tf.float32), shape)


def cell_targets(assignment, masses, velocities, stress, grid_shape) -> dict[str, tf.Tensor]:
    """Per-cell sums of per-atom quantities: the targets of the stress and kinetic-energy heads.

    Args:
        assignment: (B, N, 4) int32. masses: (B, N) g/mol. velocities: (B, N, 3) Å/ps.
        stress: (B, N, 6) bar·Å³. grid_shape: (3,) int32 tensor (X, Y, Z).

    Returns:
        ``stress`` (B, X, Y, Z, 6) bar·Å³, ``kinetic_energy`` (B, X, Y, Z) eV.
    """
    ke = 0.5 * masses * tf.reduce_sum(tf.square(velocities), -1) * MVV2E
    return {"stress": cell_sums(assignment, stress, grid_shape),
            "kinetic_energy": cell_sums(assignment, ke, grid_shape)}

