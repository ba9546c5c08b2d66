"""PairForces and PairStress: neighbours found through the atom grid give the same sums as brute
force over periodic images, momentum is conserved exactly (pair forces alone, and the whole decoder
with ``conserve_momentum``), the stress has LAMMPS's kinetic part and sign, and such a model
round-trips through .keras."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from sagesnet_tf.atoms import MASSES
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.grid import orthorhombic_box
from sagesnet_tf.layers.grid_pairs import BASIS_SPACING, TAPER_WIDTH
from sagesnet_tf.layers.pair_forces import PairForces
from sagesnet_tf.layers.pair_stress import EV_TO_BAR_A3, TENSION_SCALE_EV_PER_A, VOIGT, PairStress
from sagesnet_tf.model import SagesnetConfig, SagesnetModel
from sagesnet_tf.simulator import LearnedSimulator
from sagesnet_tf.structures import graphene_sheet
from sagesnet_tf.thermo import MVV2E

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


def with_random_kernel(layer, dense, seed=0):
    layer.build()
    dense.kernel.assign(np.random.default_rng(seed).normal(size=dense.kernel.shape).astype("float32"))
    return layer


def random_pair_layer(seed=0):
    layer = PairForces(CUTOFF, H, SLOTS, ("periodic", "periodic", "open"), [MASSES["C"], MASSES["H"]], DELTA_PS)
    return with_random_kernel(layer, layer.magnitude, seed)


def random_stress_layer(seed=1):
    layer = PairStress(CUTOFF, H, SLOTS, ("periodic", "periodic", "open"), [MASSES["C"], MASSES["H"]])
    return with_random_kernel(layer, layer.tension, seed)


def atoms_state(atoms, model=None):
    """The atoms_state (B = 1) of a structure from LearnedSimulator.atoms_state, voxelized as
    ``model`` does (default: a model of h = H, SLOTS slots, no coarse levels), and its grid shape (3,)."""
    model = model or SagesnetModel(SagesnetConfig(h=H, slots=SLOTS, coarse_levels=()))
    lengths, origin = orthorhombic_box(atoms)
    state = LearnedSimulator(model).atoms_state(atoms.positions[None], atoms.velocities[None],
                                                atoms.species_index[None], lengths[None], origin[None])
    return state, tf.shape(state["atom_grid"])[1:4]


def apply(layer, atoms):
    state, grid_shape = atoms_state(atoms)
    return layer(grid_shape, state["assignment"], state["atom_features"], state["spacing"])[0].numpy()


def brute_pairs(layer, dense, atoms, lookahead_ps):
    """(i, j, r_j − r_i, learned radial value) of every pair closer than the cutoff over every
    periodic image (float64 numpy), positions extrapolated ``lookahead_ps`` along the velocities."""
    lengths = np.diag(atoms.cell)
    pos = atoms.positions + lookahead_ps * atoms.velocities
    centers = layer.grid_pairs.centers
    kernel = dense.kernel.numpy()[:, 0].reshape(len(centers), 2)
    onehot = np.eye(2)[atoms.species_index]
    for i in range(len(atoms)):
        d = pos - pos[i]
        d[:, :2] -= lengths[:2] * np.round(d[:, :2] / lengths[:2])
        r = np.linalg.norm(d, axis=1)
        for j in np.flatnonzero((r < CUTOFF) & (np.arange(len(atoms)) != i)):
            taper = 0.5 + 0.5 * np.cos(np.pi * np.clip((r[j] - CUTOFF + TAPER_WIDTH) / TAPER_WIDTH, 0, 1))
            basis = np.exp(-((r[j] - centers) / BASIS_SPACING) ** 2) * taper
            yield i, j, d[j], basis @ kernel @ (onehot[i] + onehot[j])


def brute_force(layer, atoms):
    """The pair forces' velocity change (N, 3) Å/ps by brute force."""
    masses = np.array([MASSES["C"], MASSES["H"]])[atoms.species_index]
    out = np.zeros_like(atoms.positions)
    for i, j, d, g in brute_pairs(layer, layer.magnitude, atoms, 0.5 * DELTA_PS):
        out[i] += g * layer.velocity_scale * d / np.linalg.norm(d) * MASSES["C"] / masses[i]
    return out


def brute_force_stress(layer, atoms):
    """The pair stress (N, 6) bar·Å³ by brute force: −m v⊗v + ½ Σ_j w d⊗d / r."""
    out = np.zeros((len(atoms), 6))
    for i, j, d, w in brute_pairs(layer, layer.tension, atoms, 0.0):
        out[i] += 0.5 * w * TENSION_SCALE_EV_PER_A * EV_TO_BAR_A3 * np.array([d[a] * d[b] for a, b in VOIGT]) / np.linalg.norm(d)
    v = atoms.velocities
    return out - atoms.masses[:, None] * np.stack([v[:, a] * v[:, b] for a, b in VOIGT], 1) * MVV2E * EV_TO_BAR_A3


def test_grid_neighbours_give_the_brute_force_pair_sum_and_conserve_momentum(hot_sheet):
    layer = random_pair_layer()
    change = apply(layer, hot_sheet)
    expected = brute_force(layer, hot_sheet)
    assert np.abs(expected).max() > 1.0  # the pairs contribute
    np.testing.assert_allclose(change, expected, atol=2e-3 * np.abs(expected).max())
    momentum = (hot_sheet.masses[:, None] * change).sum(0)
    assert np.abs(momentum).max() < 1e-4 * (hot_sheet.masses[:, None] * np.abs(change)).sum(0).max()


def test_pair_stress_is_the_brute_force_virial_plus_the_kinetic_part(hot_sheet):
    layer = random_stress_layer()
    stress = apply(layer, hot_sheet)
    expected = brute_force_stress(layer, hot_sheet)
    np.testing.assert_allclose(stress, expected, atol=2e-3 * np.abs(expected).max())
    # with no bond tension, the summed stress is −Σ m v⊗v: trace −3 N k_B T_kinetic, as LAMMPS's −P·V
    layer.tension.kernel.assign(np.zeros(layer.tension.kernel.shape, "float32"))
    kinetic = apply(layer, hot_sheet).sum(0)
    assert np.all(kinetic[:3] < 0)
    v = hot_sheet.velocities
    np.testing.assert_allclose(kinetic[:3], -(hot_sheet.masses[:, None] * v * v).sum(0) * MVV2E * EV_TO_BAR_A3,
                               rtol=1e-4)


def test_design_times_the_weights_is_each_pair_terms_output(hot_sheet):
    # the least-squares stages (pair_force_fit, pair_stress_fit) fit w through `design`: design · w must be
    # exactly what the layer computes with those weights
    state, grid_shape = atoms_state(hot_sheet)
    args = (grid_shape, state["assignment"], state["atom_features"], state["spacing"])
    forces, stress = random_pair_layer(), random_stress_layer()
    design = forces.design(*args)                                                      # (1, N, 3, F)
    np.testing.assert_allclose(tf.linalg.matvec(design, forces.magnitude.kernel[:, 0]).numpy(), forces(*args).numpy(),
                               rtol=1e-4, atol=1e-4)
    design, kinetic = stress.design(*args)                                             # (1, N, 6, F), (1, N, 6)
    np.testing.assert_allclose((tf.linalg.matvec(design, stress.tension.kernel[:, 0]) - kinetic).numpy(),
                               stress(*args).numpy(), rtol=1e-4, atol=1e-3 * np.abs(stress(*args).numpy()).max())


def test_bonded_pairs_get_their_own_radial_function(hot_sheet):
    # pair_bond_neighbours = 3: a pair is bonded when each atom is among the other's 3 nearest (in a thermal
    # sheet, its C–C bonds, all under 1.8 Å; second neighbours are beyond 2.2 Å)
    def layer(bond_neighbours):
        return PairForces(CUTOFF, H, SLOTS, ("periodic", "periodic", "open"), [MASSES["C"], MASSES["H"]], DELTA_PS,
                          bond_neighbours=bond_neighbours)
    plain = random_pair_layer()
    split = layer(3)
    split.build()
    # the same function for both kinds of pair is the unsplit layer (how init_from starts a split model)
    split.magnitude.kernel.assign(split.split_kernel(plain.magnitude.kernel.numpy()))
    np.testing.assert_allclose(apply(split, hot_sheet), apply(plain, hot_sheet), rtol=1e-5, atol=1e-4)
    # a function for bonded pairs only acts along the bonds
    bonded_only = split.split_kernel(plain.magnitude.kernel.numpy()) * np.tile([[1.0], [0.0]], (36, 1))
    split.magnitude.kernel.assign(bonded_only.astype("float32"))
    masses = np.array([MASSES["C"], MASSES["H"]])[hot_sheet.species_index]
    expected = np.zeros_like(hot_sheet.positions)
    for i, j, d, g in brute_pairs(plain, plain.magnitude, hot_sheet, 0.5 * DELTA_PS):
        if np.linalg.norm(d) < 1.8:
            expected[i] += g * plain.velocity_scale * d / np.linalg.norm(d) * MASSES["C"] / masses[i]
    np.testing.assert_allclose(apply(split, hot_sheet), expected, atol=2e-3 * np.abs(expected).max())
    with pytest.raises(SagesnetError, match="pair_bond_neighbours"):
        SagesnetConfig(pair_bond_neighbours=3)


def test_a_box_too_small_for_the_cutoff_is_refused():
    layer = random_pair_layer()
    with pytest.raises(tf.errors.InvalidArgumentError, match="fewer than 5 voxels"):
        apply(layer, graphene_sheet(2, 2))  # 3 voxels along x, the window needs 5
    with pytest.raises(tf.errors.InvalidArgumentError, match="narrower than pair_cutoff"):
        apply(layer, graphene_sheet(2, 1))  # 1.2 Å voxels along y: 2 of them < 2.7 Å
    with pytest.raises(SagesnetError, match="pair_cutoff"):
        SagesnetConfig(pair_cutoff=-1.0)
    with pytest.raises(SagesnetError, match="pair_stress needs .*pair_cutoff"):
        SagesnetConfig(pair_stress=True)


def test_model_with_pair_terms_and_momentum_conservation_saves_and_loads(tmp_path, hot_sheet):
    cfg = SagesnetConfig(latent_dim=8, hidden=16, depth=1, encoder_layers=1, slots=SLOTS, h=H,
                         pair_cutoff=CUTOFF, pair_stress=True, conserve_momentum=True, delta_steps=2)
    model = SagesnetModel(cfg)
    model.build()
    rng = np.random.default_rng(2)
    for w in model.weights:  # nonzero everywhere: the grid decoder's outputs start at zero
        w.assign(rng.normal(scale=0.2, size=w.shape).astype("float32"))
    state, grid_shape = atoms_state(hot_sheet, model)
    z = model.encode(state["atom_grid"])
    out = model.decode_atoms(z, state)
    stress = model.atom_stress(grid_shape, state).numpy()
    change = out["velocities"].numpy()[0] - hot_sheet.velocities
    m = hot_sheet.masses[:, None]
    assert np.abs(change).max() > 1.0
    assert np.abs((m * change).sum(0)).max() < 1e-4 * (m * np.abs(change)).sum(0).max()  # no net force
    drift = (m * (out["displacement"].numpy()[0] - cfg.delta_ps * hot_sheet.velocities)).sum(0)
    assert np.abs(drift).max() < 1e-5 * m.sum()  # the centre of mass moves with the momentum only
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(loaded.decode_atoms(z, state)["velocities"].numpy(), out["velocities"].numpy(), atol=1e-5)
    np.testing.assert_allclose(loaded.atom_stress(grid_shape, state).numpy(), stress,
                               rtol=1e-5, atol=1e-6 * np.abs(stress).max())
