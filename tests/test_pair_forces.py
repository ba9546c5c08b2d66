"""PairForces: neighbours found through the atom grid equal a brute-force pair sum, momentum is
conserved exactly (pair forces alone, and the whole decoder with ``conserve_momentum``), and such a
model round-trips through .keras."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from sagesnet_tf.atoms import MASSES
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.grid import voxelize_atoms
from sagesnet_tf.layers.pair_forces import BASIS_SPACING, TAPER_WIDTH, PairForces
from sagesnet_tf.model import SagesnetConfig, SagesnetModel, atoms_state_from_grid
from sagesnet_tf.structures import graphene_sheet

H, SLOTS, CUTOFF, DELTA_PS = 1.8, 3, 2.7, 0.002


@pytest.fixture(scope="module")
def hot_sheet():
    """A thermal 6×4 graphene sheet (96 atoms, periodic x/y) with some atoms made hydrogen."""
    atoms = graphene_sheet(6, 4)
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(scale=0.08, size=atoms.positions.shape)
    atoms.velocities = rng.normal(scale=6.0, size=atoms.positions.shape)
    atoms.symbols[::9] = "H"
    return atoms


def random_pair_layer(seed=0):
    layer = PairForces(CUTOFF, H, SLOTS, ("periodic", "periodic", "open"), [MASSES["C"], MASSES["H"]], DELTA_PS)
    layer.build()
    kernel = np.random.default_rng(seed).normal(size=layer.magnitude.kernel.shape).astype("float32")
    layer.magnitude.kernel.assign(kernel)
    return layer


def velocity_change(layer, atoms):
    vg = voxelize_atoms(atoms, H, SLOTS)
    state = atoms_state_from_grid(vg, atoms.positions, atoms.velocities, atoms.species_index)
    return layer(tf.shape(vg.atom_grid)[:3], state["assignment"], state["atom_features"], state["spacing"])[0].numpy()


def brute_force(layer, atoms):
    """Σ_j over every periodic image closer than the cutoff (float64 numpy), the same radial function."""
    lengths = np.diag(atoms.cell)
    mid = atoms.positions + 0.5 * DELTA_PS * atoms.velocities
    kernel = layer.magnitude.kernel.numpy()[:, 0].reshape(len(layer.centers), 2)
    onehot = np.eye(2)[atoms.species_index]
    masses = np.array([MASSES["C"], MASSES["H"]])[atoms.species_index]
    out = np.zeros_like(mid)
    for i in range(len(atoms)):
        d = mid - mid[i]
        d[:, :2] -= lengths[:2] * np.round(d[:, :2] / lengths[:2])
        r = np.linalg.norm(d, axis=1)
        for j in np.flatnonzero((r < CUTOFF) & (np.arange(len(atoms)) != i)):
            taper = 0.5 + 0.5 * np.cos(np.pi * np.clip((r[j] - CUTOFF + TAPER_WIDTH) / TAPER_WIDTH, 0, 1))
            basis = np.exp(-((r[j] - layer.centers) / BASIS_SPACING) ** 2) * taper
            g = basis @ kernel @ (onehot[i] + onehot[j]) * layer.velocity_scale
            out[i] += g * d[j] / r[j] * MASSES["C"] / masses[i]
    return out


def test_grid_neighbours_give_the_brute_force_pair_sum_and_conserve_momentum(hot_sheet):
    layer = random_pair_layer()
    change = velocity_change(layer, hot_sheet)
    expected = brute_force(layer, hot_sheet)
    assert np.abs(expected).max() > 1.0  # the pairs contribute
    np.testing.assert_allclose(change, expected, atol=2e-3 * np.abs(expected).max())
    momentum = (hot_sheet.masses[:, None] * change).sum(0)
    assert np.abs(momentum).max() < 1e-4 * (hot_sheet.masses[:, None] * np.abs(change)).sum(0).max()


def test_a_box_too_small_for_the_cutoff_is_refused():
    layer = random_pair_layer()
    with pytest.raises(tf.errors.InvalidArgumentError, match="fewer than 5 voxels"):
        velocity_change(layer, graphene_sheet(2, 2))  # 3 voxels along x, the window needs 5
    with pytest.raises(tf.errors.InvalidArgumentError, match="narrower than pair_cutoff"):
        velocity_change(layer, graphene_sheet(2, 1))  # 1.2 Å voxels along y: 2 of them < 2.7 Å
    with pytest.raises(SagesnetError, match="pair_cutoff"):
        SagesnetConfig(pair_cutoff=-1.0)


def test_model_with_pair_forces_and_momentum_conservation_saves_and_loads(tmp_path, hot_sheet):
    cfg = SagesnetConfig(latent_dim=8, hidden=16, depth=1, encoder_layers=1, slots=SLOTS, h=H,
                         pair_cutoff=CUTOFF, conserve_momentum=True, delta_steps=2)
    model = SagesnetModel(cfg)
    model.build()
    rng = np.random.default_rng(2)
    for w in model.weights:  # nonzero everywhere: the grid decoder's outputs start at zero
        w.assign(rng.normal(scale=0.2, size=w.shape).astype("float32"))
    vg = voxelize_atoms(hot_sheet, H, SLOTS)
    state = atoms_state_from_grid(vg, hot_sheet.positions, hot_sheet.velocities, hot_sheet.species_index)
    z = model.encode(vg.atom_grid[None])
    out = model.decode_atoms(z, state)
    change = out["velocities"].numpy()[0] - hot_sheet.velocities
    m = hot_sheet.masses[:, None]
    assert np.abs(change).max() > 1.0
    assert np.abs((m * change).sum(0)).max() < 1e-4 * (m * np.abs(change)).sum(0).max()  # no net force
    drift = (m * (out["displacement"].numpy()[0] - cfg.delta_ps * hot_sheet.velocities)).sum(0)
    assert np.abs(drift).max() < 1e-5 * m.sum()  # the centre of mass moves with the momentum only
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.decode_atoms(z, state)["velocities"].numpy(), out["velocities"].numpy(), atol=1e-5)
