"""LocalEnergy: energy and forces equal a straightforward reference (one search per cutoff);
forces are the negative gradient of the energy (finite differences), sum to zero (momentum),
vanish on a perfect flat periodic sheet (symmetry), are linear in the weights through ``design``
(and the strain derivatives through ``strain_design``); the energy is invariant under rotations
and translations; a tf.function computing the forces round-trips through a SavedModel. The
dihedral term (``dihedral_orders``) equals a loop over the bonded quadruplets and passes the same
checks with only its weights switched on; without it the features and energies are the pair and
angle terms' alone."""

import numpy as np
import pytest
import tensorflow as tf

from sagesnet_tf.atoms import ELEMENTS
from sagesnet_tf.grid import VELOCITY_SCALE, gather_atom_features, orthorhombic_box, slot_feature_size, voxelize
from sagesnet_tf.layers import LocalEnergy
from sagesnet_tf.layers.grid_pairs import BASIS_SPACING, TAPER_WIDTH, GridPairs, switch
from sagesnet_tf.layers.local_energy import (OUTER_GAUSSIANS, legendre, neighbour_quadruplets,
                                             neighbour_triplets)
from sagesnet_tf.structures import graphene_sheet

H, SLOTS, CUTOFF, ANGLE_CUTOFF = 1.8, 3, 3.2, 2.0
#: Legendre orders of the dihedral term in its tests.
DIHEDRAL_ORDERS = 3
SHEET = ("periodic", "periodic", "open")
CLUSTER = ("open", "open", "open")


def random_layer(boundary, seed=0, scale=0.1, angle_basis="diagonal"):
    """A LocalEnergy with random weights (every pair and angle term switched on)."""
    layer = LocalEnergy(CUTOFF, ANGLE_CUTOFF, H, SLOTS, boundary, len(ELEMENTS), angle_basis=angle_basis)
    weights = np.random.default_rng(seed).normal(scale=scale, size=layer.n_features).astype("float32")
    layer.energy_weights.assign(weights)
    return layer


def dihedral_layer(boundary, seed=0, scale=0.3):
    """A LocalEnergy with :data:`DIHEDRAL_ORDERS` whose dihedral weights alone are random (the others 0)."""
    layer = LocalEnergy(CUTOFF, ANGLE_CUTOFF, H, SLOTS, boundary, len(ELEMENTS), dihedral_orders=DIHEDRAL_ORDERS)
    weights = np.zeros(layer.n_features, np.float32)
    weights[-layer.n_dihedral_features:] = np.random.default_rng(seed).normal(scale=scale,
                                                                              size=layer.n_dihedral_features)
    layer.energy_weights.assign(weights)
    return layer


def inputs(positions, atoms):
    """The layer's inputs (grid_shape, assignment, atom_features, spacing), B = 1, of a structure
    ``atoms`` at ``positions`` (N, 3) Å."""
    lengths, origin = orthorhombic_box(atoms)
    grid = voxelize(positions, np.zeros_like(positions), atoms.species_index, lengths, origin, atoms.pbc,
                    H, SLOTS, len(ELEMENTS))
    return (tf.shape(grid.atom_grid)[:3], grid.assignment[None],
            gather_atom_features(grid.atom_grid, grid.assignment)[None], grid.spacing[None])


@pytest.fixture(scope="module")
def hot_sheet():
    """A thermal 6×4 graphene sheet (96 atoms, periodic x/y) with some atoms made hydrogen."""
    atoms = graphene_sheet(6, 4)
    atoms.positions += np.random.default_rng(0).normal(scale=0.08, size=atoms.positions.shape)
    atoms.symbols[::9] = "H"
    return atoms


@pytest.fixture(scope="module")
def flake(hot_sheet):
    """The atoms of the hot sheet within 4 Å of its centre: positions (N, 3) Å, species (N,)."""
    p = hot_sheet.positions
    near = np.linalg.norm(p - p.mean(0), axis=1) < 4.0
    return p[near], hot_sheet.species_index[near]


def cluster_inputs(positions, species):
    """Inputs of an open cluster (all three axes open: the box lengths are not used)."""
    grid = voxelize(positions, np.zeros_like(positions), species, np.ones(3), np.zeros(3), [False] * 3, H, SLOTS,
                    len(ELEMENTS))
    return (tf.shape(grid.atom_grid)[:3], grid.assignment[None],
            gather_atom_features(grid.atom_grid, grid.assignment)[None], grid.spacing[None])


def test_legendre_and_triplets():
    c = tf.constant([-1.0, -0.3, 0.2, 0.9])
    expected = np.stack([np.polynomial.legendre.legval(c.numpy(), np.eye(4)[l]) for l in range(4)], -1)
    np.testing.assert_allclose(legendre(c, 4).numpy(), expected, atol=1e-6)
    # atoms (0: 3 neighbours, 1: 1, 2: 2) -> 3 + 0 + 1 triplets, both pairs of each from one atom
    atom = tf.constant([[0, 0], [0, 0], [0, 0], [0, 1], [0, 2], [0, 2]], tf.int64)
    triplets = neighbour_triplets(atom, tf.constant(3)).numpy()
    assert sorted(map(tuple, triplets)) == [(0, 1), (0, 2), (1, 2), (4, 5)]


def outer_radial(layer, bonds, atom_features, triplet):
    """(T, R·n_el) an outer angle basis's radial factors of the class docstring (the layer's
    :data:`OUTER_GAUSSIANS`), every pair f ≤ g of the Gaussians on a triplet's two bonds summed one by
    one, × the product of the bonds' element codes (``bonds``: a search at ``angle_cutoff``, ``triplet``
    (T, 2) its bonds)."""
    distance = bonds["distance"]
    gaussians = OUTER_GAUSSIANS[layer.angle_basis]
    psi = tf.stack([tf.exp(-tf.square((distance - centre) / width)) for centre, width in gaussians], 1) \
        * switch(distance, layer.angle_cutoff)[:, None]                                        # (Pb, K)
    first, second = tf.gather(psi, triplet[:, 0]), tf.gather(psi, triplet[:, 1])
    n = len(gaussians)
    factors = tf.stack([first[:, f] * second[:, g] + first[:, g] * second[:, f] for f in range(n) for g in range(f, n)],
                       1)                                                                       # (T, R)
    code = layer.bonds.element_code(atom_features, bonds["atom"], bonds["other"])
    codes = tf.gather(code, triplet[:, 0]) * tf.gather(code, triplet[:, 1])                     # (T, n_el)
    return tf.reshape(factors[:, :, None] * codes[:, None, :], [-1, factors.shape[1] * layer.n_elements])


def reference_energy(layer, grid_shape, assignment, atom_features, spacing, lookahead_ps=0.0):
    """(B,) eV: the energy of the class docstring computed straightforwardly: one neighbour search
    per cutoff, the angles from the bonds' own search (either angle basis; no dihedral term)."""
    n_batch, n_atoms = tf.shape(assignment)[0], tf.shape(assignment)[1]
    pairs = GridPairs(layer.cutoff, H, SLOTS, layer.boundary, layer.n_elements, VELOCITY_SCALE)(
        grid_shape, assignment, atom_features, spacing, lookahead_ps)
    pair_sums = 0.5 * tf.math.unsorted_segment_sum(pairs["features"], pairs["atom"][:, 0], n_batch)
    bond_pairs = GridPairs(layer.angle_cutoff, H, SLOTS, layer.boundary, layer.n_elements, VELOCITY_SCALE)
    bonds = bond_pairs(grid_shape, assignment, atom_features, spacing, lookahead_ps)
    triplet = neighbour_triplets(bonds["atom"], n_atoms)
    first, second = tf.gather(bonds["separation"], triplet[:, 0]), tf.gather(bonds["separation"], triplet[:, 1])
    cosine = tf.reduce_sum(first * second, -1) / (tf.gather(bonds["distance"], triplet[:, 0])
                                                   * tf.gather(bonds["distance"], triplet[:, 1]))
    if layer.angle_basis == "diagonal":
        radial = tf.gather(bonds["features"], triplet[:, 0]) * tf.gather(bonds["features"], triplet[:, 1])
    else:
        radial = outer_radial(layer, bond_pairs.search(grid_shape, assignment, atom_features, spacing, lookahead_ps),
                              atom_features, triplet)
    angular = tf.reshape(radial[:, :, None] * legendre(cosine, layer.legendre_orders)[:, None, :],
                         [-1, layer.n_angle_features])
    angle_sums = tf.math.unsorted_segment_sum(angular, tf.gather(bonds["atom"][:, 0], triplet[:, 0]), n_batch)
    return tf.linalg.matvec(tf.concat([pair_sums, angle_sums], -1), layer.energy_weights)


@pytest.mark.parametrize("lookahead_ps, angle_basis", [(0.0, "diagonal"), (0.0005, "diagonal"), (0.0005, "outer"),
                                                       (0.0005, "outer_switch")])
def test_call_equals_the_reference(hot_sheet, lookahead_ps, angle_basis):
    """The layer's single search (bonds among the pairs, gradient through the found pairs only) and
    its energy contracted without forming the features (``"outer"``: a bilinear form of each
    triplet's two bonds' Gaussians) give the straightforward energy and forces (and features ·
    weights the energy), two structures batched."""
    layer = random_layer(SHEET, seed=9, angle_basis=angle_basis)
    moved = hot_sheet.positions + np.random.default_rng(10).normal(scale=0.1, size=hot_sheet.positions.shape)
    batch = [inputs(p, hot_sheet) for p in (hot_sheet.positions, moved)]
    np.testing.assert_array_equal(batch[0][0], batch[1][0])
    velocities = np.random.default_rng(11).normal(scale=0.5, size=(2, len(moved), 3)).astype("float32")
    features = tf.concat([b[2] for b in batch], 0)
    features = tf.concat([features[..., :-3], velocities], -1)                # velocities for the lookahead
    state = (batch[0][0], tf.concat([b[1] for b in batch], 0), features, tf.concat([b[3] for b in batch], 0))
    with tf.GradientTape() as tape:
        tape.watch(features)
        energy = reference_energy(layer, *state, lookahead_ps=lookahead_ps)
    forces = -tape.gradient(energy, features)[..., layer._offsets] / state[3][:, None, :]
    out = tf.function(lambda *s: layer(*s, lookahead_ps=lookahead_ps))(*state)
    np.testing.assert_allclose(out["energy"].numpy(), energy.numpy(), rtol=1e-5)  # float32 sums, other order
    features_energy = tf.linalg.matvec(layer.features(*state, lookahead_ps=lookahead_ps), layer.energy_weights)
    np.testing.assert_allclose(features_energy.numpy(), energy.numpy(), rtol=1e-5)
    assert np.abs(forces).max() > 1.0
    np.testing.assert_allclose(out["forces"].numpy(), forces.numpy(), atol=1e-6 * np.abs(forces).max())


def test_angle_cutoff_beyond_the_pair_cutoff_is_refused():
    with pytest.raises(ValueError, match="angle_cutoff"):
        LocalEnergy(2.0, 2.5, H, SLOTS, SHEET)


def test_forces_sum_to_zero(hot_sheet):
    forces = random_layer(SHEET)(*inputs(hot_sheet.positions, hot_sheet))["forces"].numpy()[0]
    assert np.abs(forces).max() > 1.0
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-5 * np.abs(forces).max() * len(forces))


def assert_forces_are_minus_the_gradient(layer, sheet):
    """The layer's forces on three atoms of ``sheet`` equal the central finite differences of its energy."""
    positions = sheet.positions.astype(np.float64)
    forces = layer(*inputs(positions, sheet))["forces"].numpy()[0]
    eps = 2e-3
    for atom in (0, 17, 50):
        for axis in range(3):
            shifted = []
            for sign in (1, -1):
                p = positions.copy()
                p[atom, axis] += sign * eps
                shifted.append(float(layer(*inputs(p, sheet))["energy"][0]))
            numeric = -(shifted[0] - shifted[1]) / (2 * eps)
            assert numeric == pytest.approx(forces[atom, axis], abs=0.02 + 0.01 * abs(forces[atom, axis]))


def test_forces_are_minus_the_gradient(hot_sheet):
    assert_forces_are_minus_the_gradient(random_layer(SHEET, seed=1), hot_sheet)


def test_energy_invariant_under_rotation_and_translation(flake):
    positions, species = flake
    layer = random_layer(CLUSTER, seed=2)
    out = layer(*cluster_inputs(positions, species))
    q, _ = np.linalg.qr(np.random.default_rng(3).normal(size=(3, 3)))
    moved = positions @ q.T + np.array([3.3, -7.1, 0.4])
    turned = layer(*cluster_inputs(moved, species))
    assert float(turned["energy"][0]) == pytest.approx(float(out["energy"][0]), rel=1e-5, abs=1e-4)
    np.testing.assert_allclose(turned["forces"].numpy()[0], out["forces"].numpy()[0] @ q.T, atol=2e-4 * np.abs(
        out["forces"]).max())


def test_flat_sheet_is_stationary():
    atoms = graphene_sheet(6, 4)
    out = random_layer(SHEET, seed=4)(*inputs(atoms.positions, atoms))
    thermal = random_layer(SHEET, seed=4)(*inputs(
        atoms.positions + np.random.default_rng(5).normal(scale=0.05, size=atoms.positions.shape), atoms))
    assert np.abs(thermal["forces"]).max() > 1.0
    assert np.abs(out["forces"]).max() < 1e-4 * np.abs(thermal["forces"]).max()


def test_design_times_weights_is_the_force(hot_sheet):
    layer = random_layer(SHEET, seed=6)
    state = inputs(hot_sheet.positions, hot_sheet)
    design = layer.design(*state).numpy()
    assert design.shape == (1, len(hot_sheet.positions), 3, layer.n_features)
    forces = layer(*state)["forces"].numpy()
    np.testing.assert_allclose(design @ layer.energy_weights.numpy(), forces, atol=1e-4 * np.abs(forces).max())


def assert_strain_design_is_the_strain_derivative(layer, hot_sheet):
    """The layer's strain_design · weights along x and y equal central finite differences of its energy
    under a homogeneous strain of ``hot_sheet``."""
    derivative = layer.strain_design(*inputs(hot_sheet.positions, hot_sheet)).numpy()[0] @ layer.energy_weights.numpy()
    eps = 1e-3
    for axis in range(2):
        energies = []
        for sign in (1, -1):
            scale = np.ones(3)
            scale[axis] += sign * eps
            strained = hot_sheet.copy()
            strained.positions, strained.cell = hot_sheet.positions * scale, hot_sheet.cell * scale[:, None]
            energies.append(float(layer(*inputs(strained.positions, strained))["energy"][0]))
        assert (energies[0] - energies[1]) / (2 * eps) == pytest.approx(derivative[axis], rel=2e-3, abs=0.5)


def test_strain_design_is_the_strain_derivative(hot_sheet):
    assert_strain_design_is_the_strain_derivative(random_layer(SHEET, seed=8), hot_sheet)


@pytest.mark.parametrize("dihedral", [False, True])
def test_saved_model_round_trip(hot_sheet, tmp_path, dihedral):
    layer = dihedral_layer(SHEET, seed=7) if dihedral else random_layer(SHEET, seed=7)
    state = inputs(hot_sheet.positions, hot_sheet)
    module = tf.Module()
    module.layer = layer
    module.forces = tf.function(lambda g, a, f, s: layer(g, a, f, s)["forces"], input_signature=[
        tf.TensorSpec([3], tf.int32), tf.TensorSpec([None, None, 4], tf.int32),
        tf.TensorSpec([None, None, slot_feature_size(len(ELEMENTS))], tf.float32), tf.TensorSpec([None, 3], tf.float32)])
    expected = module.forces(*state).numpy()
    tf.saved_model.save(module, str(tmp_path / "forces"))
    loaded = tf.saved_model.load(str(tmp_path / "forces"))
    np.testing.assert_array_equal(loaded.forces(*state).numpy(), expected)
    clone = LocalEnergy.from_config(layer.get_config())
    assert clone.n_features == layer.n_features and clone.get_config() == layer.get_config()


def test_neighbour_quadruplets():
    """Bonds 0–1, 1–2, 2–3, 1–4 (both directions, sorted by atom) in batch entry 0 and 0–1, 1–2 in
    entry 1: the dihedrals k–i–j–l are 0–1–2–3 and 4–1–2–3 (each bond once, i < j), none in entry 1."""
    edges = {0: [(0, 1), (1, 2), (2, 3), (1, 4)], 1: [(0, 1), (1, 2)]}
    rows = sorted((b, i, j) for b, pairs in edges.items() for p, q in pairs for i, j in ((p, q), (q, p)))
    atom = tf.constant([[b, i] for b, i, _ in rows], tf.int64)
    other = tf.constant([j for _, _, j in rows], tf.int64)
    quadruplets = neighbour_quadruplets(atom, other, tf.constant(5)).numpy()
    atom, other = atom.numpy(), other.numpy()
    found = []
    for a, b, c in quadruplets:
        assert atom[a, 1] == atom[b, 1] and other[b] == atom[c, 1] and atom[a, 0] == atom[b, 0] == atom[c, 0]
        found.append((atom[b, 0], other[a], atom[b, 1], other[b], other[c]))
    assert sorted(found) == [(0, 0, 1, 2, 3), (0, 4, 1, 2, 3)]


def reference_dihedral_features(layer, atoms, positions) -> np.ndarray:
    """(n_dihedral_features,) the dihedral features of the class docstring, float64, by a loop over
    the bonds i < j and their neighbours k ≠ j of i, l ≠ i of j (minimum image on periodic axes)."""
    lengths = np.diag(atoms.cell)
    d = positions[None, :, :] - positions[:, None, :]                                  # (N,N,3) r_j − r_i
    d -= np.where(atoms.pbc, lengths * np.round(d / lengths), 0.0)
    r = np.linalg.norm(d, axis=-1)
    bonded = (r < layer.angle_cutoff) & ~np.eye(len(positions), dtype=bool)

    def switch(x):
        return 0.5 + 0.5 * np.cos(np.pi * np.clip((x - layer.angle_cutoff + TAPER_WIDTH) / TAPER_WIDTH, 0, 1))

    onehot = np.eye(layer.n_elements)[atoms.species_index]
    legendre_m = np.eye(layer.dihedral_orders + 1)[1:]                                    # P_1 … P_D
    features = np.zeros((len(layer.bonds.centers), layer.n_elements, layer.dihedral_orders))
    for i, j in zip(*np.nonzero(bonded)):
        if i > j:
            continue
        radial = np.exp(-np.square((r[i, j] - layer.bonds.centers) / BASIS_SPACING)) * switch(r[i, j])
        for k in np.nonzero(bonded[i])[0]:
            for l in np.nonzero(bonded[j])[0]:
                if k == j or l == i:
                    continue
                first, second = np.cross(d[i, k], d[i, j]), np.cross(d[i, j], d[j, l])
                cosine = first @ second / (np.linalg.norm(first) * np.linalg.norm(second))
                polynomials = np.array([np.polynomial.legendre.legval(cosine, c) for c in legendre_m])
                features += ((radial * switch(r[i, k]) * switch(r[j, l]))[:, None, None]
                             * (onehot[i] + onehot[j])[None, :, None] * polynomials[None, None, :])
    return features.reshape(-1)


def test_dihedral_features_equal_a_loop_over_quadruplets(hot_sheet):
    """The layer's dihedral features (and energy = features · weights) against the loop, on a hot
    sheet some of whose bonds are in the switch-off (the sheet stretched 20 % in x)."""
    layer = dihedral_layer(SHEET, seed=12)
    stretched = hot_sheet.copy()
    stretched.positions, stretched.cell = hot_sheet.positions * [1.2, 1, 1], hot_sheet.cell * [[1.2], [1], [1]]
    for atoms in (hot_sheet, stretched):
        state = inputs(atoms.positions, atoms)
        features = layer.features(*state).numpy()[0]
        expected = reference_dihedral_features(layer, atoms, atoms.positions.astype(np.float64))
        assert features.shape == (layer.n_features,) and np.abs(expected).max() > 1.0
        np.testing.assert_allclose(features[:layer.n_pair_features + layer.n_angle_features],
                                   random_layer(SHEET).features(*state).numpy()[0], rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(features[-layer.n_dihedral_features:], expected, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer(*state)["energy"].numpy()[0], expected @ layer.energy_weights.numpy()[
            -layer.n_dihedral_features:], rtol=1e-5)


def test_no_dihedral_term_leaves_the_energy_unchanged(hot_sheet):
    """dihedral_orders 0 (the default) has the pair and angle features alone; a layer with the
    dihedral term and its weights zero gives the same energy and forces."""
    plain = random_layer(SHEET, seed=13)
    assert plain.dihedral_orders == 0 and plain.n_dihedral_features == 0
    assert plain.n_features == plain.n_pair_features + plain.n_angle_features == 134
    layer = LocalEnergy(CUTOFF, ANGLE_CUTOFF, H, SLOTS, SHEET, len(ELEMENTS), dihedral_orders=DIHEDRAL_ORDERS)
    assert layer.n_features == plain.n_features + layer.n_dihedral_features
    layer.energy_weights.assign(np.concatenate([plain.energy_weights.numpy(), np.zeros(layer.n_dihedral_features,
                                                                                      np.float32)]))
    state = inputs(hot_sheet.positions, hot_sheet)
    expected, out = plain(*state), layer(*state)
    np.testing.assert_allclose(out["energy"].numpy(), expected["energy"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(out["forces"].numpy(), expected["forces"].numpy(),
                               atol=1e-6 * np.abs(expected["forces"]).max())


def test_dihedral_forces_are_minus_the_gradient_and_sum_to_zero(hot_sheet):
    layer = dihedral_layer(SHEET, seed=14)
    forces = layer(*inputs(hot_sheet.positions, hot_sheet))["forces"].numpy()[0]
    assert np.abs(forces).max() > 1.0
    np.testing.assert_allclose(forces.sum(0), 0.0, atol=1e-5 * np.abs(forces).max() * len(forces))
    assert_forces_are_minus_the_gradient(layer, hot_sheet)


def test_dihedral_energy_invariant_under_rotation_and_translation(flake):
    positions, species = flake
    layer = dihedral_layer(CLUSTER, seed=15)
    out = layer(*cluster_inputs(positions, species))
    assert np.abs(out["forces"]).max() > 1.0
    q, _ = np.linalg.qr(np.random.default_rng(16).normal(size=(3, 3)))
    moved = positions @ q.T + np.array([-2.3, 5.1, 1.4])
    turned = layer(*cluster_inputs(moved, species))
    assert float(turned["energy"][0]) == pytest.approx(float(out["energy"][0]), rel=1e-5, abs=1e-4)
    np.testing.assert_allclose(turned["forces"].numpy()[0], out["forces"].numpy()[0] @ q.T, atol=2e-4 * np.abs(
        out["forces"]).max())


def test_dihedral_flat_sheet_is_stationary_and_design_is_linear(hot_sheet):
    """A perfect flat sheet feels no dihedral force; on the hot sheet design · weights is the force
    and strain_design · weights the strain derivative of the energy."""
    atoms = graphene_sheet(6, 4)
    layer = dihedral_layer(SHEET, seed=17)
    flat = layer(*inputs(atoms.positions, atoms))["forces"].numpy()
    state = inputs(hot_sheet.positions, hot_sheet)
    forces = layer(*state)["forces"].numpy()
    assert np.abs(forces).max() > 1.0
    assert np.abs(flat).max() < 1e-4 * np.abs(forces).max()
    design = layer.design(*state).numpy()
    assert design.shape == (1, len(hot_sheet.positions), 3, layer.n_features)
    np.testing.assert_allclose(design @ layer.energy_weights.numpy(), forces, atol=1e-4 * np.abs(forces).max())
    assert_strain_design_is_the_strain_derivative(layer, hot_sheet)


def list_layer(seed=0):
    """A LocalEnergy at the shipped model's cutoffs (2.0 Å, bonds only) with random pair, angle
    and dihedral weights."""
    layer = LocalEnergy(2.0, 2.0, H, SLOTS, SHEET, len(ELEMENTS), dihedral_orders=DIHEDRAL_ORDERS)
    layer.energy_weights.assign(np.random.default_rng(seed).normal(scale=0.1, size=layer.n_features).astype("f4"))
    return layer


def test_neighbour_list_forces_equal_a_new_search_while_it_holds(hot_sheet):
    """A neighbour list with a skin, read from later positions (unwrapped across the periodic
    boundaries, moved, in a stretched box) gives the energy and forces of a new search there while it holds
    (no pair can have crossed cutoff + skin; and those of :meth:`LocalEnergy.call` to float32
    rounding), and stops holding once the atoms moved too far."""
    layer, skin = list_layer(), 0.3
    lengths = np.diag(hot_sheet.cell).astype("f4")
    rng = np.random.default_rng(5)
    start = hot_sheet.positions.astype("f4")
    start[::5, :2] += lengths[:2] * rng.integers(-2, 3, (len(start[::5]), 2))  # unwrapped: other periodic images
    neighbours = layer.neighbour_list(*inputs(start, hot_sheet), tf.constant(start[None]), tf.constant(lengths[None]),
                                      skin=skin)
    assert float(neighbours["skin"]) == pytest.approx(skin)
    for step in range(4):
        stretched = lengths * np.float32([1 + 0.0004 * step, 1.0, 1.0])            # a tension run's box
        moved = start * stretched / lengths + rng.uniform(-0.03, 0.03, start.shape).astype("f4")
        assert bool(layer.neighbour_list_holds(neighbours, tf.constant(moved[None]), tf.constant(stretched[None])))
        here = (tf.constant(moved[None]), tf.constant(stretched[None]))
        kept = layer.energy_forces(neighbours, *here)
        state = inputs(moved, hot_sheet_in(hot_sheet, stretched))
        searched = layer.energy_forces(layer.neighbour_list(*state, *here), *here)
        on_grid = layer(*state)  # the separations from the atoms' voxel offsets: another float32 rounding
        scale = np.abs(searched["forces"].numpy()).max()
        for reference, tolerance in ((searched, 1e-6), (on_grid, 5e-5)):
            np.testing.assert_allclose(kept["energy"].numpy(), reference["energy"].numpy(), rtol=tolerance)
            np.testing.assert_allclose(kept["forces"].numpy(), reference["forces"].numpy(), atol=tolerance * scale)
    assert not bool(layer.neighbour_list_holds(neighbours, tf.constant(start[None] + np.float32([0.0, 0.0, 0.16])),
                                               tf.constant(lengths[None])))
    assert not bool(layer.neighbour_list_holds(neighbours, tf.constant(start[None]),
                                               tf.constant(lengths[None] + np.float32([0.31, 0.0, 0.0]))))


def hot_sheet_in(atoms, lengths):
    """``atoms`` with its box lengths (3,) Å set to ``lengths``."""
    out = atoms.copy()
    out.cell = np.diag(lengths).astype(np.float64)
    return out


def test_neighbour_list_skin_is_narrowed_to_the_search_window(hot_sheet):
    """On voxels too narrow for cutoff + skin the skin shrinks to what the window sees."""
    layer = list_layer()
    lengths = np.diag(hot_sheet.cell).astype("f4")
    state = inputs(hot_sheet.positions.astype("f4"), hot_sheet)
    reach = float(layer.pairs.max_reach(state[3]))
    neighbours = layer.neighbour_list(*state, tf.constant(hot_sheet.positions[None], tf.float32),
                                      tf.constant(lengths[None]), skin=10.0)
    assert float(neighbours["skin"]) == pytest.approx(reach - 2.0)


def test_neighbour_list_strain_derivative_equals_strain_design(hot_sheet):
    """energy_forces' strain derivatives Σ r_a ∂E/∂r_a are strain_design · weights (the virial the
    fits match, from the separations' gradient instead of three forward passes over the features)."""
    layer = list_layer(seed=3)
    lengths = np.diag(hot_sheet.cell).astype("f4")
    state = inputs(hot_sheet.positions.astype("f4"), hot_sheet)
    here = (tf.constant(hot_sheet.positions[None], tf.float32), tf.constant(lengths[None]))
    derivative = layer.energy_forces(layer.neighbour_list(*state, *here), *here)["strain_derivative"].numpy()
    expected = layer.strain_design(*state).numpy() @ layer.energy_weights.numpy()
    np.testing.assert_allclose(derivative, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def outer_layer(boundary, seed=0, scale=0.1, basis="outer"):
    """A LocalEnergy with an outer angle basis (``basis``) and :data:`DIHEDRAL_ORDERS`, random weights."""
    layer = LocalEnergy(CUTOFF, ANGLE_CUTOFF, H, SLOTS, boundary, len(ELEMENTS), dihedral_orders=DIHEDRAL_ORDERS,
                        angle_basis=basis)
    layer.energy_weights.assign(np.random.default_rng(seed).normal(scale=scale, size=layer.n_features).astype("float32"))
    return layer


@pytest.mark.parametrize("basis", ["outer", "outer_switch"])
def test_outer_angle_basis_is_a_smooth_linear_energy(hot_sheet, flake, basis):
    layer = outer_layer(SHEET, seed=11, basis=basis)
    n_radial = len(OUTER_GAUSSIANS[basis])
    assert layer.n_angle_features == n_radial * (n_radial + 1) // 2 * len(ELEMENTS) * layer.legendre_orders
    assert layer.n_dihedral_features == n_radial * len(ELEMENTS) * DIHEDRAL_ORDERS
    state = inputs(hot_sheet.positions, hot_sheet)
    forces = layer(*state)["forces"].numpy()
    assert np.abs(forces).max() > 1.0
    np.testing.assert_allclose(layer.design(*state).numpy() @ layer.energy_weights.numpy(), forces,
                               atol=1e-4 * np.abs(forces).max())
    np.testing.assert_allclose(forces[0].sum(0), 0.0, atol=1e-5 * np.abs(forces).max() * forces.shape[1])
    assert_forces_are_minus_the_gradient(layer, hot_sheet)
    assert_strain_design_is_the_strain_derivative(layer, hot_sheet)
    restored = LocalEnergy.from_config(layer.get_config())
    assert restored.angle_basis == basis and restored.n_features == layer.n_features


def angle_energy(layer, first_A, second_A, degrees):
    """Energy of a C3 fragment, an atom with bonds of ``first_A`` and ``second_A`` Å at ``degrees``."""
    theta = np.radians(degrees)
    positions = np.array([[0.0, 0.0, 0.0], [first_A, 0.0, 0.0],
                          [second_A * np.cos(theta), second_A * np.sin(theta), 0.0]])
    return float(layer(*cluster_inputs(positions, np.zeros(3, np.int64)))["energy"][0])


def test_only_the_outer_basis_keeps_the_angle_stiffness_of_unequal_bonds():
    """With the angle term alone (P_1 weights 1), the energy change of closing a triplet's angle from 120° to
    90°: the diagonal basis loses it once the two bonds differ by 0.25 Å (1.42 and 1.67 Å), the outer one keeps
    it within a factor of a few."""
    stiffness = {}
    for basis in ("diagonal", "outer"):
        layer = LocalEnergy(ANGLE_CUTOFF, ANGLE_CUTOFF, H, SLOTS, CLUSTER, len(ELEMENTS), angle_basis=basis)
        weights = np.zeros(layer.n_features, np.float32)
        weights[layer.n_pair_features + 1::layer.legendre_orders] = 1.0    # every radial function × element, P_1
        layer.energy_weights.assign(weights)
        stiffness[basis] = [angle_energy(layer, 1.42, second, 90) - angle_energy(layer, 1.42, second, 120)
                            for second in (1.42, 1.67)]
    equal, unequal = stiffness["diagonal"]
    assert equal > 0.1 and unequal < 0.05 * equal, stiffness
    equal, unequal = stiffness["outer"]
    assert equal > 0.1 and unequal > 0.3 * equal, stiffness
