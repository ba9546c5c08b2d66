"""The local energy's two-level neighbour list: a list rebuilt among its kept candidates
(LocalEnergy.neighbour_list with ``candidates``, GridPairs.search_among) equals a new window search
bit for bit (pairs, order, images, bonds, angles, dihedrals, energy and forces) on a thermal sheet
and a thermal kirigami ribbon whose atoms moved past the list's skin but not its candidates'; both
hold the same pairs, triplets and quadruplets as a brute-force search over all atom pairs; the
candidates' margin; and the simulator's kept list over a run of steps equals a search at every step."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from sagesnet_tf.atoms import ELEMENTS
from sagesnet_tf.grid import gather_atom_features, orthorhombic_box, voxelize
from sagesnet_tf.layers import LocalEnergy
from sagesnet_tf.layers.local_energy import LIST_ROUNDING, neighbour_quadruplets
from sagesnet_tf.structures import graphene_sheet, kirigami

H, SLOTS, CUTOFF, SKIN = 1.8, 3, 2.0, 0.3
SHEET = ("periodic", "periodic", "open")


def shipped_like_layer(seed=0):
    """A LocalEnergy shaped like the shipped v2's (2.0 Å, 3 dihedral orders) with random weights."""
    layer = LocalEnergy(CUTOFF, CUTOFF, H, SLOTS, SHEET, len(ELEMENTS), dihedral_orders=3)
    layer.energy_weights.assign(np.random.default_rng(seed).normal(scale=0.1, size=layer.n_features).astype("f4"))
    return layer


def grid_inputs(atoms, positions, lengths):
    """(grid_shape, assignment, atom_features, spacing) of ``atoms`` at ``positions`` (N, 3) Å in
    a box of ``lengths`` (3,) Å, B = 1, and the (positions, box) the list reads, (1, N, 3), (1, 3)."""
    _, origin = orthorhombic_box(atoms)
    grid = voxelize(positions, np.zeros_like(positions), atoms.species_index, lengths, origin, atoms.pbc, H, SLOTS,
                    len(ELEMENTS))
    state = (tf.shape(grid.atom_grid)[:3], grid.assignment[None],
             gather_atom_features(grid.atom_grid, grid.assignment)[None], grid.spacing[None])
    return state, (tf.constant(positions[None]), tf.constant(lengths[None]))


def thermal(atoms, scale, seed):
    """``atoms``' positions (N, 3) float32 with Gaussian noise of ``scale`` Å, some H atoms."""
    out = atoms.copy()
    out.symbols[::11] = "H"
    return out, (atoms.positions + np.random.default_rng(seed).normal(scale=scale, size=atoms.positions.shape)
                 ).astype("f4")


@pytest.fixture(scope="module", params=["sheet", "kirigami"])
def structure(request):
    """A thermal 10 × 6 sheet (240 atoms) or a thermal kirigami ribbon (periodic x and y, cut)."""
    if request.param == "sheet":
        return thermal(graphene_sheet(10, 6), 0.08, 1)
    return thermal(kirigami("010000000001000", nx=8, ny=12, periodic_y=True), 0.08, 2)


def brute_force(positions, lengths, pbc, reach):
    """The ordered pairs (i, j, image) closer than ``reach`` Å over all atom pairs and periodic
    images (|n| ≤ 1), their triplets {i: {j, k}} and quadruplets (k, i, j, l) by atom."""
    pairs = set()
    shifts = [np.array(n) for n in itertools.product(*[(-1, 0, 1) if p else (0,) for p in pbc])]
    for n in shifts:
        separation = positions[None, :, :] - positions[:, None, :] + n * lengths
        for i, j in zip(*np.nonzero(np.linalg.norm(separation, axis=-1) < reach)):
            if i != j:
                pairs.add((int(i), int(j), tuple(int(a) for a in n)))
    neighbours = {}
    for i, j, _ in pairs:
        neighbours.setdefault(i, []).append(j)
    triplets = {(i, frozenset((j, k))) for i, js in neighbours.items() for j, k in itertools.combinations(js, 2)}
    quadruplets = {(k, i, j, l) for i, j, _ in pairs if i < j for k in neighbours[i] if k != j
                   for l in neighbours[j] if l != i}
    return pairs, triplets, quadruplets


def list_sets(neighbours):
    """The pairs (i, j, image), triplets and quadruplets by atom of a neighbour list."""
    atom, other = neighbours["atom"][:, 1].numpy(), neighbours["other"].numpy()
    image = neighbours["image"].numpy().astype(int)
    pairs = {(int(i), int(j), tuple(n)) for i, j, n in zip(atom, other, image)}
    bond = neighbours["bond"].numpy()
    b_atom, b_other = atom[bond], other[bond]
    triplets = {(int(b_atom[p]), frozenset((int(b_other[p]), int(b_other[q]))))
                for p, q in neighbours["triplet"].numpy()}
    quadruplets = {(int(b_other[a]), int(b_atom[b]), int(b_other[b]), int(b_other[c]))
                   for a, b, c in neighbours["quadruplet"].numpy()}
    return pairs, triplets, quadruplets


def test_list_among_candidates_equals_a_new_search(structure):
    """Atoms moved past the list's skin (it no longer holds) in a stretched box, within the
    candidates' margin: the list measured among the candidates is the new search's, bit for bit,
    and both hold the brute-force pairs, angles and dihedrals (and energies and forces); moved past
    the candidates' margin too, the list is a new search with new candidates."""
    atoms, start = structure
    layer = shipped_like_layer()
    lengths = np.diag(atoms.cell).astype("f4")
    state, here = grid_inputs(atoms, start, lengths)
    first = layer.neighbour_list(*state, *here, skin=SKIN)
    candidates = first["candidates"]
    assert float(candidates["skin"]) > 0.5                      # ~0.9 Å: the window's 3.2 Å less the list's 2.3
    rng = np.random.default_rng(7)
    for step, spread in enumerate((0.14, 0.14, 0.14, 0.5)):
        stretched = lengths * np.float32([1 + 0.002 * step, 1.0, 1.0])
        moved = (start * stretched / lengths + rng.uniform(-spread, spread, start.shape)).astype("f4")
        state, here = grid_inputs(atoms, moved, stretched)
        assert not bool(layer.neighbour_list_holds(first, *here))
        assert bool(layer.neighbour_list_holds(candidates, *here)) == (spread < 0.4)
        searched = layer.neighbour_list(*state, *here, skin=SKIN)
        among = layer.neighbour_list(*state, *here, skin=SKIN, candidates=candidates)
        expected = candidates if spread < 0.4 else searched["candidates"]
        for key in expected:
            np.testing.assert_array_equal(among["candidates"][key].numpy(), expected[key].numpy(), err_msg=key)
        for key in searched.keys() - {"candidates"}:
            np.testing.assert_array_equal(among[key].numpy(), searched[key].numpy(), err_msg=key)
        for name, kept, expected in zip(("pairs", "triplets", "quadruplets"), list_sets(among),
                                        brute_force(moved, stretched, atoms.pbc, CUTOFF + SKIN)):
            assert kept == expected, name
        forces = [layer.energy_forces(n, *here) for n in (among, searched)]
        for key in forces[0]:
            np.testing.assert_array_equal(forces[0][key].numpy(), forces[1][key].numpy(), err_msg=key)


def test_candidates_margin():
    """The candidates reach the window's widest view less twice an atom's lookahead drift and the
    rounding margin; an atom spilled from its full voxel (offset outside [0, 1)) voids them."""
    layer = shipped_like_layer()
    atoms = graphene_sheet(10, 6)
    lengths = np.diag(atoms.cell).astype("f4")
    state, _ = grid_inputs(atoms, atoms.positions.astype("f4"), lengths)
    features = state[2].numpy()
    features[0, 0, -3:] = [1.0, 0.0, 0.0]                        # 10 Å/ps along x (velocity_scale 10 Å/ps)
    wide, margin = layer.candidate_reach(tf.constant(features), state[3], 0.001, 2.3)
    expected = float(layer.pairs.max_reach(state[3])) - 2 * 0.001 * 10.0 - LIST_ROUNDING
    assert float(wide) == pytest.approx(expected, abs=1e-5)
    assert float(margin) == pytest.approx(expected - 2.3 - LIST_ROUNDING, abs=1e-5)
    features[0, 5, 1 + len(ELEMENTS)] = 1.3                     # an offset past its voxel: a spilled atom
    assert float(layer.candidate_reach(tf.constant(features), state[3], 0.001, 2.3)[1]) == -1.0


def test_simulator_list_rebuilt_among_candidates_equals_a_search():
    """LearnedSimulator.energy_neighbours over hot steps of the shipped v2's energy: a list kept
    gives a new search's forces to float32 rounding, one rebuilt among the candidates exactly, and
    all three ways (kept, among the candidates, searched) occur."""
    from sagesnet_tf.export import model_from_savedmodel
    from sagesnet_tf.savedmodel import resolve_model_dir
    from sagesnet_tf.simulator import LearnedSimulator

    model, _ = model_from_savedmodel(resolve_model_dir(None))
    sim = LearnedSimulator(model)
    atoms, start = thermal(graphene_sheet(10, 6), 0.05, 3)
    rng = np.random.default_rng(3)
    positions = tf.constant(start[None])
    velocities = tf.constant(rng.normal(scale=4.0, size=start.shape)[None], tf.float32)     # Å/ps, ~500 K
    species = tf.constant(atoms.species_index[None])
    box = tf.constant(np.diag(atoms.cell)[None], tf.float32)
    neighbours, ways = sim.energy_neighbours(positions, velocities, species, box), []
    for _ in range(16):
        positions += velocities * 0.004                                                    # 4 fs
        kept = sim.energy_neighbours(positions, velocities, species, box, neighbours=neighbours)
        searched = sim.energy_neighbours(positions, velocities, species, box)
        same = [np.array_equal(a.numpy(), b.numpy()) for a, b in ((kept["reference"], neighbours["reference"]),
                (kept["candidates"]["reference"], neighbours["candidates"]["reference"]))]
        ways.append("kept" if same[0] else "among" if same[1] else "searched")
        midpoint = model.midpoint(positions, velocities)
        forces = [model.local_energy.energy_forces(n, midpoint, box)["forces"].numpy() for n in (kept, searched)]
        if ways[-1] == "kept":
            np.testing.assert_allclose(forces[0], forces[1], atol=1e-6 * np.abs(forces[1]).max())
        else:
            np.testing.assert_array_equal(forces[0], forces[1])
        neighbours = kept
    assert {"kept", "among", "searched"} <= set(ways), ways


def test_quadruplets_around_an_atom_with_more_bonds_than_any_first_atom():
    """Every bond (j, l) of a central bond's second atom enters, even where j has more bonds than
    any central bond's first atom i < j (atom 4 bonded to 0, 1, 2, 3; atom 0 also to 5)."""
    bonds = [(0, 4), (0, 5), (1, 4), (2, 4), (3, 4), (4, 0), (4, 1), (4, 2), (4, 3), (5, 0)]
    atom = tf.constant([[0, i] for i, _ in bonds], tf.int64)
    other = tf.constant([j for _, j in bonds], tf.int64)
    found = neighbour_quadruplets(atom, other, tf.constant(6)).numpy()
    assert sorted((bonds[a][1], bonds[b][0], bonds[b][1], bonds[c][1]) for a, b, c in found) == [
        (5, 0, 4, 1), (5, 0, 4, 2), (5, 0, 4, 3)]
