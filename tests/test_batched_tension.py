"""Batched tension (sagesnet_tf.batched_tension): ribbons stacked along z run as they run alone.

At 0 K (zero velocities, the Langevin thermostat's friction alone: no random numbers) a run is
deterministic, so a ribbon's curve in a stack of three is compared with the same ribbon alone and
with ``simulate``'s thermo.csv: any pair across the gap, or a stress not the ribbon's own, would
show. Tiny protocol: 0.02 ps of equilibration, stretched to 0.01."""

import contextlib
import io

import numpy as np
import pytest

from sagesnet_tf.batched_tension import COMPLETED, STACK_GAP_A, BatchedTension, ribbon_seed
from sagesnet_tf.kirigami_tension import KirigamiTension, read_model_curve
from sagesnet_tf.savedmodel import DEFAULT_MODEL, resolve_model_dir

PATTERNS = ("010000000001000", "101010000010101", "000000000000000")
COLD = KirigamiTension("cold", nx=7, ny=6, strain_rate_per_ps=0.05, relax_ps=0.0, max_strain=0.01, temperature_K=0.0)

pytestmark = pytest.mark.skipif(not DEFAULT_MODEL.is_dir(), reason="no shipped model")


@pytest.fixture(scope="module")
def runner():
    return BatchedTension(COLD, resolve_model_dir(None), COLD.max_strain, seed=0, every=10, equilibrate_ps=0.02)


def _run(runner, patterns):
    done = {}
    assert runner.run(list(patterns), lambda run: done.setdefault(run.pattern, run)) == []
    return done


def test_a_stacked_ribbon_runs_as_it_runs_alone_and_as_simulate(runner, tmp_path):
    stacked = _run(runner, PATTERNS)
    assert set(stacked) == set(PATTERNS)
    for pattern in PATTERNS:
        alone = _run(runner, [pattern])[pattern]
        run = stacked[pattern]
        assert run.status == COMPLETED and len(run.strain) == 11 and run.strain[-1] == pytest.approx(0.01, abs=1e-4)
        assert np.abs(alone.stress_GPa).max() > 1.0  # the ribbon carries load: a real comparison
        np.testing.assert_allclose(run.strain, alone.strain, atol=1e-6)
        np.testing.assert_allclose(run.stress_GPa, alone.stress_GPa, rtol=0, atol=1e-3 * np.abs(alone.stress_GPa).max())
        np.testing.assert_allclose(run.uncertainty[1:], alone.uncertainty[1:], rtol=1e-3)
    # the formula of simulate's thermo.csv (there σ_xx from the summed stress, here from atom_virial)
    with contextlib.redirect_stderr(io.StringIO()):
        COLD.run_model(COLD.ribbon(PATTERNS[0], True), tmp_path / "sim", None, every=10, equilibrate_ps=0.02,
                       progress=False)
    curve = read_model_curve(tmp_path / "sim" / "thermo.csv")
    np.testing.assert_allclose(stacked[PATTERNS[0]].strain, curve["strain"], atol=1e-6)
    np.testing.assert_allclose(stacked[PATTERNS[0]].stress_GPa, curve["stress_GPa"], rtol=0,
                               atol=1e-3 * np.abs(curve["stress_GPa"]).max())


def test_ribbon_seeds_and_stack_layout(runner):
    assert ribbon_seed(0, "000000000000011") == 3 and ribbon_seed(1, "000000000000000") == 2 ** 15
    assert len({ribbon_seed(s, p) for s in range(3) for p in PATTERNS}) == 9
    # levels whole grid cells (h = 1.8 Å) apart, at least STACK_GAP_A
    assert runner.pitch == pytest.approx(10.8) and runner.pitch >= STACK_GAP_A
    ribbons = [runner._ribbon(p, k) for k, p in enumerate(PATTERNS)]
    np.testing.assert_allclose(np.diff([r.atoms.positions[:, 2].min() for r in ribbons]), runner.pitch)


def test_a_crowded_stack_is_spread_by_whole_cells(runner):
    """Ribbons that came within the energy's reach are moved apart, each by whole grid cells, to
    STACK_GAP_A between one's top and the next one's bottom; the box grows to hold them."""
    from sagesnet_tf.rollout import State

    ribbons = [runner._ribbon(p, k) for k, p in enumerate(PATTERNS)]
    positions = np.concatenate([r.atoms.positions for r in ribbons]).astype("f4")
    n = ribbons[0].run.n_atoms
    positions[n - 1, 2] += 9.0  # the first ribbon curls up to 0.8 Å below the second
    state = State(positions, np.zeros_like(positions), np.float32([30, 30, 3 * runner.pitch]), 7)
    assert runner._crowded(state, ribbons)
    spread = runner._spread(state, ribbons)
    assert not runner._crowded(spread, ribbons) and spread.step == 7
    shifts = spread.positions[:, 2] - positions[:, 2]
    assert np.all(shifts[:n] == 0) and np.ptp(shifts[n:]) < 1e-4 and shifts[n] > 0
    assert shifts[n] / 1.8 == pytest.approx(round(shifts[n] / 1.8), abs=1e-4)
    bottom = spread.positions[n:n + ribbons[1].run.n_atoms, 2].min()
    assert bottom - spread.positions[:n, 2].max() >= STACK_GAP_A - 1e-4
    assert spread.box_lengths[2] >= spread.positions[:, 2].max()
