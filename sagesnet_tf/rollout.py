"""The rollout driver: one loop that advances a model's state call by call, used by ``simulate``,
``evaluate`` and the training's held-out evaluation (:mod:`~sagesnet_tf.training.md_evaluation`).

A rollout carries a :class:`State`: positions (N, 3) Å and velocities (N, 3) Å/ps of one frame,
or (T, N, 3) of a window of T frames at a coarse scale, box lengths (3,) Å and the model steps Δ
done. The caller gives ``advance(state, n) -> (positions, velocities, box_lengths, readouts)``,
``n`` steps at the rollout's scale (``unit`` model steps each) in one call of the model; the
driver (:class:`Rollout`) owns everything between the calls:

- the calls: a frame every ``every`` model steps (whole scale steps, at least one), its steps
  split into calls of at most the model's ``max_steps_per_call`` and, with a thermostat,
  :data:`THERMOSTAT_CALL_FRACTION` of τ (τ, or τ/10 for Berendsen; one scale step when a step is
  longer); a single frame at a coarse scale first becomes a window of ``unit`` frames by ``unit`` − 1
  fine steps;
- the thermostat (:class:`Thermostat`): after every call one update
  (:func:`~sagesnet_tf.thermo.apply_thermostat`) for the call's span, its random numbers from the
  seed and the step the call ends at, so a resumed rollout draws the same numbers;
- the divergence guard: a failed in-graph check of the model (``tf.errors.InvalidArgumentError``,
  :func:`in_graph_failure`) and, at every frame, :func:`divergence_reason` (NaN/Inf, a runaway
  temperature, atoms pushed into one another) stop the rollout with the reason, what was
  recorded kept;
- progress (a tqdm bar) and the per-frame callbacks through which the caller records.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from sagesnet_tf.atoms import MIN_SEPARATION_A, Atoms
from sagesnet_tf.structures import bond_pairs
from sagesnet_tf.thermo import apply_thermostat

#: Divergence limit: temperature above min(max(10 × target, RUNAWAY_FLOOR_K), this) K. (Atoms
#: escaping the box along a non-periodic axis are caught inside the model step:
#: ``simulator.MAX_ESCAPE_FRACTION``, :meth:`~sagesnet_tf.simulator.LearnedSimulator.check_positions`.)
MAX_TEMPERATURE_K = 10000.0
#: The limit never falls below this, K: a 4.2 K run at 50 K is inaccurate, not diverged (carbon
#: sheets stay bonded far above it); the limit is for rollouts that blow up.
RUNAWAY_FLOOR_K = 1000.0
#: With the thermostat, one call (one thermostat update) spans at most this fraction of its time
#: constant τ, per kind. The Langevin and CSVR updates over a span t are exact for that span (the
#: Ornstein–Uhlenbeck step, c = exp(−t/τ); Bussi's rescaling), so the kinetic energy relaxes at the same
#: rate whether they are applied every step or every τ, and the distribution stays canonical; between
#: updates the learned dynamics run free. Berendsen's factor is first order in t/τ (at t = τ it would
#: rescale to the target at once), so it keeps τ/10. A call is the expensive unit (its last step reads
#: the uncertainty and stress out): at τ = 0.1 ps and Δ = 2 fs calls of 50 steps instead of 5 cost 3.4
#: instead of 5.6 ms per step on the 960-atom sheet
#: (idle, session 17), and a 50-ps NVT run of that sheet holds 300.5 K in-plane and 298.4 K out-of-plane
#: (``benchmarks.sheet_equipartition``; 301.0 / 299.1 K over 20 ps with updates every τ/10, session 16).
THERMOSTAT_CALL_FRACTION = {"langevin": 1.0, "csvr": 1.0, "berendsen": 0.1}


def in_graph_failure(err) -> str:
    """The message of the failed in-graph check (e.g. the atom grid overflow) of a
    ``tf.errors.InvalidArgumentError`` raised by a model step or signature."""
    found = re.search(r"assertion failed: \[([^\]]*)\]", err.message)
    return found.group(1) if found else err.message.strip().splitlines()[-1]


def divergence_reason(frame: Atoms, temperature: float, target: float | None) -> str | None:
    """Why ``frame`` (a recorded frame, positions unwrapped) at ``temperature`` K shows a diverged
    rollout, or None: NaN/Inf, a runaway temperature (limit from the ``target`` K, None: no target),
    or two atoms closer than ``MIN_SEPARATION_A`` (pushed into one another; minimum image)."""
    if not np.all(np.isfinite(frame.positions)) or not math.isfinite(temperature):
        return "NaN or Inf in the atoms"
    limit = MAX_TEMPERATURE_K if target is None else min(MAX_TEMPERATURE_K, max(10.0 * target, RUNAWAY_FLOOR_K))
    if temperature > limit:
        return f"temperature ran away to {temperature:.0f} K (limit {limit:.0f} K)"
    inside = frame.wrapped()  # one periodic image either way is then enough
    i, j, d = bond_pairs(inside.positions, inside.cell, inside.pbc, MIN_SEPARATION_A)
    if d.size:
        k = int(np.argmin(d))
        first, second = sorted((int(frame.ids[i[k]]), int(frame.ids[j[k]])))
        return f"atoms {first} and {second} overlap ({d[k]:.2f} Å apart, under {MIN_SEPARATION_A} Å)"
    return None


@dataclasses.dataclass(frozen=True)
class State:
    """Where a rollout is: ``positions`` Å and ``velocities`` Å/ps, (N, 3) or a window (T, N, 3);
    ``box_lengths`` (3,) Å; ``step``, the model steps Δ done (the window's last frame's)."""

    positions: np.ndarray
    velocities: np.ndarray
    box_lengths: np.ndarray
    step: int


@dataclasses.dataclass(frozen=True)
class Thermostat:
    """One update of ``kind`` (:data:`~sagesnet_tf.thermo.THERMOSTATS`) per call, towards
    ``target_K`` with time constant ``tau_ps``, on atoms of ``masses`` (N,) g/mol; random numbers
    from ``seed`` and the step the call ends at. With ``groups`` ((slice of the atoms, seed) pairs,
    covering them) each group gets its own update with its own seed instead: a group's velocities
    then do not depend on the others (the ribbons of a stack, :mod:`~sagesnet_tf.batched_tension`)."""

    kind: str
    tau_ps: float
    target_K: float
    masses: np.ndarray
    seed: int = 0
    groups: tuple[tuple[slice, int], ...] | None = None

    def update(self, velocities: np.ndarray, span_ps: float, step: int) -> np.ndarray:
        """Velocities (..., N, 3) Å/ps after the update for a call of ``span_ps`` ending at model
        step ``step`` (a new array; ``velocities`` is left as it is)."""
        def one(v, masses, seed):
            return apply_thermostat(self.kind, v, masses, self.target_K, span_ps, self.tau_ps, seed, step)

        if self.groups is None:
            return one(velocities, self.masses, self.seed)
        out = velocities.copy()
        for part, seed in self.groups:
            out[..., part, :] = one(velocities[..., part, :], self.masses[part], seed)
        return out


@dataclasses.dataclass(frozen=True)
class Frame:
    """A frame as the divergence guard reads it: ``atoms`` (positions unwrapped, ids, cell, pbc),
    its kinetic ``temperature_K`` and the ``target_K`` the runaway limit scales with (None: none)."""

    atoms: Atoms
    temperature_K: float
    target_K: float | None


@dataclasses.dataclass(frozen=True)
class RolloutEnd:
    """How a :meth:`Rollout.run` ended. ``state``: the last state reached (after a failed call, the
    state before it). ``diverged``: why it diverged, or None. ``stopped``: ``on_frame`` asked to
    stop. A frame that failed :func:`divergence_reason` is ``frame`` with its ``readouts`` (not
    passed to ``on_frame``; the caller may record it)."""

    state: State
    diverged: str | None = None
    stopped: bool = False
    frame: Frame | None = None
    readouts: Any = None


class _CallFailed(Exception):
    """A model call's in-graph check failed (``reason``) on ``state``."""

    def __init__(self, state: State, reason: str):
        super().__init__(reason)
        self.state, self.reason = state, reason


#: ``advance(state, n)``: n scale steps in one model call -> (positions, velocities, box_lengths, readouts).
Advance = Callable[[State, int], tuple]


class Rollout:
    """The rollout loop around a model's ``advance`` (see module docstring).

    Args:
        advance: ``advance(state, n)`` at this scale (positions/velocities as the state holds them).
        delta_ps: one model step Δ, ps.
        unit: model steps per scale step (1 fine; T of a coarse level, whose state is a window of T frames).
        max_steps_per_call: the model's bound on model steps per call (metadata ``limits``); None: none.
        thermostat: a :class:`Thermostat`, or None (free dynamics).
        fine_advance: with ``unit`` > 1, the one-frame ``advance`` whose ``unit`` − 1 steps turn a
            single starting frame into the first window.
        progress: show a tqdm bar (model steps) labelled ``desc``.
    """

    def __init__(self, advance: Advance, delta_ps: float, unit: int = 1, max_steps_per_call: int | None = None,
                 thermostat: Thermostat | None = None, fine_advance: Advance | None = None, progress: bool = False,
                 desc: str = "rollout"):
        self.advance, self.delta_ps, self.unit = advance, delta_ps, unit
        self.thermostat, self.fine_advance = thermostat, fine_advance
        self.progress, self.desc = progress, desc
        self.per_call = None if max_steps_per_call is None else max(1, max_steps_per_call // unit)
        if thermostat is not None:
            fraction = THERMOSTAT_CALL_FRACTION[thermostat.kind]
            coupling = max(1, int(fraction * thermostat.tau_ps / (unit * delta_ps) + 1e-9))
            self.per_call = coupling if self.per_call is None else min(self.per_call, coupling)

    def calls(self, every: int, remaining: int) -> list[int]:
        """Scale steps of each call up to the next frame, ``every`` model steps on (whole scale
        steps, at least one) with ``remaining`` model steps left."""
        n_frame = min(max(1, every // self.unit), remaining // self.unit)
        per_call = self.per_call or max(n_frame, 1)
        return [min(per_call, n_frame - k) for k in range(0, n_frame, per_call)]

    def _call(self, advance: Advance, state: State, n: int, unit: int) -> tuple[State, Any]:
        """``advance`` by ``n`` steps of ``unit`` model steps, then the thermostat update for their
        span; a failed in-graph check raises :class:`_CallFailed` with ``state``."""
        import tensorflow as tf

        try:
            positions, velocities, box_lengths, readouts = advance(state, n)
        except tf.errors.InvalidArgumentError as err:  # a failed in-graph check (e.g. the grid overflow)
            raise _CallFailed(state, in_graph_failure(err)) from None
        step = state.step + n * unit
        if self.thermostat is not None:
            velocities = self.thermostat.update(velocities, n * unit * self.delta_ps, step)
        return State(positions, velocities, box_lengths, step), readouts

    def run(self, state: State, total: int, every: int, observe: Callable[[State, Any], Frame],
            on_frame: Callable[[State, Any, Frame], bool]) -> RolloutEnd:
        """Advance ``state`` to model step ``total`` (the last whole scale step before it), a frame
        every ``every`` model steps: ``observe(state, readouts)`` gives the :class:`Frame` the guard
        checks, then ``on_frame(state, readouts, frame)`` records it and returns True to stop."""
        with tqdm(total=total, initial=state.step, unit="step", desc=self.desc, disable=not self.progress) as bar:
            try:
                if self.unit > 1 and np.ndim(state.positions) == 2 and total - state.step >= self.unit:
                    state = self._first_window(state)
                    bar.update(self.unit - 1)
                while total - state.step >= self.unit:
                    for n in self.calls(every, total - state.step):
                        state, readouts = self._call(self.advance, state, n, self.unit)
                        bar.update(n * self.unit)
                    frame = observe(state, readouts)
                    reason = divergence_reason(frame.atoms, frame.temperature_K, frame.target_K)
                    if reason:
                        return RolloutEnd(state, reason, frame=frame, readouts=readouts)
                    if on_frame(state, readouts, frame):
                        return RolloutEnd(state, stopped=True)
            except _CallFailed as failed:
                return RolloutEnd(failed.state, failed.reason)
        return RolloutEnd(state)

    def _first_window(self, state: State) -> State:
        """The window of ``unit`` frames ending ``unit`` − 1 fine steps after ``state``'s single frame."""
        frames_p, frames_v = [state.positions], [state.velocities]
        for _ in range(self.unit - 1):
            state, _ = self._call(self.fine_advance, state, 1, 1)
            frames_p.append(state.positions)
            frames_v.append(state.velocities)
        return State(np.stack(frames_p), np.stack(frames_v), state.box_lengths, state.step)
