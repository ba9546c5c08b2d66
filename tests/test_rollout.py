"""The rollout driver (sagesnet_tf.rollout) around a stand-in model step: calls, thermostat, divergence guard.

The stand-in ``advance`` moves the atoms at constant velocity (what an untrained model does) and
logs its calls; the simulate/evaluate tests run the driver with exported models.
"""

import numpy as np
import pytest
import tensorflow as tf

from sagesnet_tf.atoms import Atoms
from sagesnet_tf.rollout import RUNAWAY_FLOOR_K, THERMOSTAT_CALL_FRACTION, Frame, Rollout, State, Thermostat, divergence_reason
from sagesnet_tf.thermo import apply_thermostat, temperature_k

DELTA = 0.001  # ps per model step
N = 4
MASSES = np.full(N, 12.011)


def start() -> State:
    positions = np.array([[2.0 + 2.0 * i, 5.0, 5.0] for i in range(N)], np.float32)
    velocities = np.random.default_rng(0).normal(0, 5.0, (N, 3)).astype(np.float32)
    return State(positions, velocities, np.full(3, 20.0, np.float32), 0)


class Stepper:
    """advance(state, n) of constant-velocity motion over n·unit steps; logs (first step, n) of each call.
    ``fail_at``: the call starting at this step raises the model's in-graph failure;
    ``blow_up_at``: the call starting at this step returns NaN positions."""

    def __init__(self, unit: int = 1, fail_at: int | None = None, blow_up_at: int | None = None):
        self.unit, self.fail_at, self.blow_up_at, self.log = unit, fail_at, blow_up_at, []

    def __call__(self, state: State, n: int):
        self.log.append((state.step, n))
        if state.step == self.fail_at:
            raise tf.errors.InvalidArgumentError(None, None, "assertion failed: [grid overflow: 4 atoms in a voxel] "
                                                 "[Condition x <= y did not hold]")
        positions = state.positions + state.velocities * (n * self.unit * DELTA)
        if state.step == self.blow_up_at:
            positions = np.full_like(positions, np.nan)
        return positions, state.velocities.copy(), state.box_lengths, {"n": n}


def observe(state: State, readouts) -> Frame:
    last_p = state.positions.reshape(-1, N, 3)[-1]
    last_v = state.velocities.reshape(-1, N, 3)[-1]
    atoms = Atoms(["C"] * N, last_p, np.diag(state.box_lengths), (True, True, False), last_v)
    return Frame(atoms, temperature_k(last_v, MASSES), 300.0)


def run(rollout: Rollout, total: int, every: int, state: State | None = None):
    frames = []

    def on_frame(state, readouts, frame) -> bool:
        frames.append(state)
        return False

    return rollout.run(state or start(), total, every, observe, on_frame), frames


def test_a_frames_steps_are_split_at_the_per_call_bound_and_at_the_thermostat_coupling():
    free = Stepper()
    end, frames = run(Rollout(free, DELTA, max_steps_per_call=4), total=25, every=10)
    assert [s for s, _ in free.log] == [0, 4, 8, 10, 14, 18, 20, 24]
    assert [n for _, n in free.log] == [4, 4, 2, 4, 4, 2, 4, 1]
    assert [f.step for f in frames] == [10, 20, 25] and end.state.step == 25 and end.diverged is None
    # one Berendsen update (one call) per THERMOSTAT_CALL_FRACTION·τ = 0.002 ps = 2 steps, below the per-call bound
    coupled = Stepper()
    tau = 0.002 / THERMOSTAT_CALL_FRACTION["berendsen"]
    rollout = Rollout(coupled, DELTA, max_steps_per_call=4, thermostat=Thermostat("berendsen", tau, 300.0, MASSES))
    run(rollout, total=10, every=5)
    assert [n for _, n in coupled.log] == [2, 2, 1, 2, 2, 1]
    assert rollout.calls(every=7, remaining=100) == [2, 2, 2, 1] and rollout.calls(every=7, remaining=3) == [2, 1]
    # the exact updates (Langevin, CSVR) come once per τ = 3 steps
    for kind in ("langevin", "csvr"):
        exact = Rollout(Stepper(), DELTA, max_steps_per_call=10, thermostat=Thermostat(kind, 0.003, 300.0, MASSES))
        assert exact.calls(every=10, remaining=100) == [3, 3, 3, 1]


def test_a_coarse_rollout_starts_its_window_with_fine_steps_and_counts_model_steps():
    fine, coarse = Stepper(), Stepper(unit=2)
    rollout = Rollout(coarse, DELTA, unit=2, max_steps_per_call=5, fine_advance=fine)
    end, frames = run(rollout, total=12, every=8)
    assert fine.log == [(0, 1)]  # the window of 2 frames: the start and one fine step
    assert coarse.log == [(1, 2), (5, 2), (9, 1)]  # 4 coarse steps a frame, at most 5 // 2 a call; ends at 11
    assert [f.step for f in frames] == [9, 11] and frames[0].positions.shape == (2, N, 3)
    np.testing.assert_allclose(end.state.positions[-1], start().positions + start().velocities * 11 * DELTA,
                               rtol=1e-5)


def test_divergence_stops_with_the_reason_and_keeps_the_frames_before():
    end, frames = run(Rollout(Stepper(blow_up_at=20), DELTA), total=50, every=10)
    assert [f.step for f in frames] == [10, 20]
    assert end.diverged == "NaN or Inf in the atoms" and end.state.step == 30 and not end.stopped
    assert end.frame is not None and end.readouts == {"n": 10}  # the frame that diverged, for the caller to keep
    failing = Stepper(fail_at=14)
    end, frames = run(Rollout(failing, DELTA, max_steps_per_call=4), total=50, every=10)
    assert end.diverged == "grid overflow: 4 atoms in a voxel" and end.frame is None
    assert end.state.step == 14 and [f.step for f in frames] == [10]  # the state before the failed call
    end = Rollout(Stepper(), DELTA).run(start(), 50, 10, observe, lambda state, readouts, frame: state.step >= 20)
    assert end.stopped and end.state.step == 20 and end.diverged is None


def test_thermostat_numbers_are_a_function_of_seed_and_step():
    def langevin(seed):
        return Rollout(Stepper(), DELTA, thermostat=Thermostat("langevin", 0.05, 300.0, MASSES, seed))

    straight, _ = run(langevin(3), total=40, every=10)
    half, _ = run(langevin(3), total=20, every=10)
    resumed, _ = run(langevin(3), total=40, every=10, state=half.state)  # as `simulate --resume` continues
    np.testing.assert_array_equal(straight.state.velocities, resumed.state.velocities)
    other, _ = run(langevin(4), total=40, every=10)
    assert not np.array_equal(straight.state.velocities, other.state.velocities)
    # each call's update is apply_thermostat over the call's span, drawn from (seed, the step it ends at)
    one, _ = run(langevin(3), total=5, every=5)
    expected = apply_thermostat("langevin", start().velocities, MASSES, 300.0, 5 * DELTA, 0.05, 3, 5)
    np.testing.assert_array_equal(one.state.velocities, expected)


def _two_carbons(positions, pbc=(True, True, False)):
    """Two carbon atoms (ids 7 and 9) in a 10 Å cube."""
    return Atoms(["C", "C"], positions, np.diag([10.0, 10.0, 10.0]), pbc, ids=[7, 9])


def test_divergence_limit_is_ten_times_the_target_but_never_below_the_floor():
    frame = _two_carbons([[1.0, 1.0, 5.0], [2.4, 1.0, 5.0]])
    assert divergence_reason(frame, 50.0, 4.2) is None  # inaccurate, not diverged
    assert "ran away" in divergence_reason(frame, RUNAWAY_FLOOR_K + 1.0, 4.2)
    assert divergence_reason(frame, 2900.0, 300.0) is None and "3000 K" in divergence_reason(frame, 3100.0, 300.0)
    assert "10000 K" in divergence_reason(frame, 10001.0, None)  # no target: the absolute limit
    assert "NaN" in divergence_reason(_two_carbons(np.full((2, 3), np.nan)), 300.0, 300.0)


def test_atoms_pushed_into_one_another_are_a_divergence():
    """Two atoms 0.3 Å apart through the periodic boundary (unwrapped coordinates) stop the run."""
    apart = [[0.1, 1.0, 5.0], [29.8, 1.0, 5.0]]  # 0.3 Å through the x boundary, two boxes away
    reason = divergence_reason(_two_carbons(apart), 300.0, 300.0)
    assert reason is not None and "atoms 7 and 9 overlap (0.30 Å" in reason
    bonded = [[0.1, 1.0, 5.0], [8.7, 1.0, 5.0]]  # 1.4 Å through the boundary: a bond
    assert divergence_reason(_two_carbons(bonded), 300.0, 300.0) is None
    assert divergence_reason(_two_carbons(apart, (False, True, False)), 300.0, 300.0) is None  # x open
