"""Place a structure, as people keep it, in a model's grid, and positions back in the file's frame.

Files seldom match a model's ``boundary`` exactly: LAMMPS, VASP and most builders mark every axis
periodic and put vacuum in the cell, and many builders centre a sheet on z = 0, so half its atoms
lie below the cell. :func:`to_model_frame` adapts such a structure, axis by axis:

=================  ================  =====================================================
file axis          model grid        what happens
=================  ================  =====================================================
periodic           periodic          nothing
periodic           open              with a vacuum gap of at least :data:`REACH_A` (the
                                     largest gap between the wrapped atoms): taken as open,
                                     the atoms unwrapped across that gap; otherwise refused
open               open              nothing, unless atoms lie outside the cell (below)
open               periodic          refused: the grid would join the open edges
=================  ================  =====================================================

Along every axis taken as open, atoms outside the cell are shifted (one shift for all of them) so
that their extent is centred in the cell, where the model's escape check measures from. The
model's open-axis grid starts at the lowest atom, so the shift does not change the dynamics.
:meth:`ModelFrame.to_input` takes positions back to the file's frame (the same atom images, the
same origin), which is where ``simulate`` writes its trajectory.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from sagesnet_tf.atoms import AIREBO_LJ_CUTOFF_A, Atoms
from sagesnet_tf.errors import SagesnetError

#: A periodic axis whose vacuum gap is at least this (Å) is open for the model: the AIREBO LJ
#: cutoff, the longest reach of the MD the models learn from, so images that far apart never
#: interacted in their training data (the MD engine keeps every non-periodic axis at least this).
REACH_A = AIREBO_LJ_CUTOFF_A
#: Atoms this far (fraction of the cell) outside it along an open axis still count as inside.
INSIDE_TOLERANCE = 1e-6


@dataclasses.dataclass
class ModelFrame:
    """A structure placed in a model's grid.

    Attributes:
        atoms: the adapted copy: ``pbc`` = the model's periodic axes, positions (N, 3) Å inside the
            cell along its open axes; velocities, ids, flags, info as the input's.
        shift: (N, 3) Å, ``atoms.positions`` − the input positions (whole cells along an axis whose
            atoms were unwrapped, plus the centring shift).
        input_pbc: (3,) bool, the input's periodicity (output frames keep it).
        actions: one phrase per change made; empty when the input already matched.
    """

    atoms: Atoms
    shift: np.ndarray
    input_pbc: np.ndarray
    actions: list[str]

    def to_input(self, positions: np.ndarray) -> np.ndarray:
        """(N, 3) Å model-frame positions -> the input file's frame."""
        return np.asarray(positions, dtype=np.float64) - self.shift

    def describe(self) -> str:
        """One line: what was done, or that nothing was."""
        return "; ".join(self.actions) if self.actions else "none (the structure matches the model's grid)"


def to_model_frame(atoms: Atoms, boundary: Sequence[str], reach_A: float = REACH_A) -> ModelFrame:
    """Adapt ``atoms`` to a model's grid (module docstring).

    Args:
        atoms: the structure as read (any cell; positions Å).
        boundary: (3,) the model's grid per axis, ``"periodic"`` or ``"open"`` (metadata ``boundary``).
        reach_A: the smallest vacuum gap, Å, that lets a periodic axis be taken as open.

    Returns:
        :class:`ModelFrame`.

    Raises:
        SagesnetError: an axis open in the file where the grid is periodic, or periodic in the file
            with less vacuum than ``reach_A`` where the grid is open; each says how to fix the file.
    """
    frac = atoms.fractional()
    heights = 1.0 / np.linalg.norm(np.linalg.inv(atoms.cell), axis=0)  # Å between opposite cell faces
    actions = []
    for axis, mode in enumerate(boundary):
        name = "xyz"[axis]
        if mode != "open":
            if not atoms.pbc[axis]:
                raise SagesnetError(
                    f"simulate: the model's grid is periodic along {name} but the structure is open along {name}; "
                    f"mark {name} periodic in the file with at least {reach_A:.1f} Å of vacuum between images "
                    "(a ribbon: `build ribbon/kirigami --periodic-y`)")
            continue
        f = frac[:, axis]
        if atoms.pbc[axis]:
            f, gap = _unwrap_across_largest_gap(f)
            if gap * heights[axis] < reach_A:
                raise SagesnetError(
                    f"simulate: the structure is periodic along {name} with {gap * heights[axis]:.1f} Å of vacuum, "
                    f"but the model's grid is open along {name} and needs at least {reach_A:.1f} Å (the AIREBO LJ "
                    f"cutoff); enlarge the cell along {name} to {(1 - gap) * heights[axis] + reach_A:.1f} Å or more")
            actions.append(f"{name} periodic in the file with {gap * heights[axis]:.1f} Å of vacuum "
                           f"(≥ {reach_A:.1f} Å, the AIREBO LJ cutoff) taken as open, as the model's grid")
        lo, hi = f.min(), f.max()
        if lo < -INSIDE_TOLERANCE or hi > 1.0 + INSIDE_TOLERANCE:
            f = f + 0.5 - 0.5 * (lo + hi)
            moved = (f - frac[:, axis]) * heights[axis]  # whole cells apart where atoms were unwrapped
            amount = (f"{moved[0]:+.3f} Å" if np.ptp(moved) < 1e-6
                      else f"{moved.min():+.3f} … {moved.max():+.3f} Å (atoms unwrapped)")
            actions.append(f"atoms shifted along {name} by {amount} into the cell (shifted back on output)")
        frac[:, axis] = f
    adapted = atoms.copy()
    adapted.positions = frac @ atoms.cell
    adapted.pbc = np.array([mode != "open" for mode in boundary])
    shift = adapted.positions - atoms.positions
    shift[np.abs(shift) < 1e-9] = 0.0  # round-off of the fractional round trip: keep untouched atoms exact
    adapted.positions = atoms.positions + shift
    return ModelFrame(adapted, shift, atoms.pbc.copy(), actions)


def _unwrap_across_largest_gap(frac: np.ndarray) -> tuple[np.ndarray, float]:
    """Fractional coordinates (N,) along a periodic axis made contiguous: the largest empty gap
    between the wrapped atoms becomes the outside. Returns (unwrapped (N,), that gap as a fraction
    of the cell). Atoms already contiguous inside the cell keep their coordinates (to round-off)."""
    wrapped = np.mod(frac, 1.0)
    ordered = np.sort(wrapped)
    gaps = np.diff(np.concatenate([ordered, ordered[:1] + 1.0]))  # gap after each atom, the last one wrapping
    k = int(np.argmax(gaps))
    start = ordered[(k + 1) % len(ordered)]  # the first atom after the gap
    return start + np.mod(wrapped - start, 1.0), float(gaps[k])
