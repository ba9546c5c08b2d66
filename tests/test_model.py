"""SagesnetModel and CellStateModel: end to end on real voxelized graphene, conservation, save/load."""

import numpy as np
import pytest
import tensorflow as tf
import keras

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.grid import orthorhombic_box
from sagesnet_tf.model import CellStateConfig, CellStateModel, SagesnetConfig, SagesnetModel
from sagesnet_tf.simulator import LearnedSimulator
from sagesnet_tf.structures import graphene_sheet

SMALL = dict(latent_dim=8, hidden=16, depth=1, encoder_layers=1, kernel_size=(3, 3, 1))


def randomize(model, scale=0.2, seed=3):
    """Nonzero weights everywhere (several layers start with zero output kernels)."""
    rng = np.random.default_rng(seed)
    for w in model.weights:
        w.assign(rng.normal(scale=scale, size=w.shape).astype("float32"))


@pytest.fixture(scope="module")
def sheet():
    atoms = graphene_sheet(4, 3)  # 48 atoms, periodic x, y; z open
    rng = np.random.default_rng(0)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    atoms.velocities = rng.normal(scale=4.6, size=atoms.positions.shape)
    atoms.symbols[::7] = "H"
    return atoms


@pytest.fixture(scope="module")
def model():
    m = SagesnetModel(SagesnetConfig(**SMALL))
    m.build()
    randomize(m)
    return m


def inputs_of(atoms, model):
    """(normalised env (1,E), atoms_state of the structure, B = 1, from LearnedSimulator.atoms_state:
    ``atom_grid`` (1,X,Y,Z,S,F) and the atoms)."""
    lengths, origin = orthorhombic_box(atoms)
    state = LearnedSimulator(model).atoms_state(atoms.positions[None], atoms.velocities[None],
                                                atoms.species_index[None], lengths[None], origin[None])
    return tf.constant([[300.0, 0.0, 0.0, 0.0]]) / 300.0, state


def test_one_step_from_atoms_to_atoms_conserves_every_atom(model, sheet):
    env, state = inputs_of(sheet, model)
    grid = state["atom_grid"]
    out = model({"atom_grid": grid, "env": env})
    z, z_next = out["latent"], out["latent_next"]
    assert z.shape == (1, *grid.shape[1:4], 8) == z_next.shape
    assert out["uncertainty"].shape == z.shape[:-1] and out["uncertainty"].numpy().min() >= 0
    assert out["slots_next"]["occupancy_logits"].shape == (1, *grid.shape[1:4], 2)
    assert not np.allclose(z.numpy(), z_next.numpy())
    atoms = model.decode_atoms(z_next, state)
    assert atoms["positions"].shape == atoms["velocities"].shape == (1, len(sheet), 3)
    np.testing.assert_array_equal(atoms["species"].numpy()[0], sheet.species_index)
    assert np.abs(atoms["displacement"].numpy()).max() > 0
    # ids ride with rows: shuffling the atoms (and their ids) gives the same atom-by-atom answer
    perm = np.random.default_rng(1).permutation(len(sheet))
    shuffled = sheet.copy()
    for name in ("symbols", "positions", "velocities", "ids"):
        setattr(shuffled, name, getattr(sheet, name)[perm])
    _, state2 = inputs_of(shuffled, model)
    z2 = model.step(model.encode(state2["atom_grid"]), env)
    atoms2 = model.decode_atoms(z2, state2)
    np.testing.assert_allclose(atoms2["positions"].numpy()[0], atoms["positions"].numpy()[0][perm], atol=1e-4)
    counts = np.bincount(atoms2["species"].numpy()[0], minlength=2)
    np.testing.assert_array_equal(counts, np.bincount(sheet.species_index, minlength=2))


def test_coarse_level_and_uncertainty_methods(model, sheet):
    env, state = inputs_of(sheet, model)
    z = model.encode(state["atom_grid"])[:, :8, :4]  # cropped (grids are multiples of k = 2 already)
    window = tf.stack([z, model.step(z, env)], axis=1)
    coarse = model.coarsen(window)
    assert coarse.shape == (1, z.shape[1] // 2, z.shape[2] // 2, z.shape[3], 8)
    assert model.step_coarse(coarse, env).shape == coarse.shape
    assert model.refine(coarse).shape == window.shape
    assert model.predict_coarsen_uncertainty(coarse, env).shape == coarse.shape[:-1]
    assert model.predict_uncertainty(z, env).shape == z.shape[:-1]


def test_model_keras_save_load_gives_identical_outputs(model, sheet, tmp_path):
    env, state = inputs_of(sheet, model)
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SagesnetModel) and loaded.config == model.config
    a = model({"atom_grid": state["atom_grid"], "env": env})
    b = loaded({"atom_grid": state["atom_grid"], "env": env})
    tf.nest.map_structure(lambda x, y: np.testing.assert_array_equal(x.numpy(), y.numpy()), a, b)
    np.testing.assert_array_equal(model.decode_atoms(a["latent_next"], state)["positions"].numpy(),
                                  loaded.decode_atoms(b["latent_next"], state)["positions"].numpy())
    window = tf.stack([a["latent"][:, :8, :4]] * 2, axis=1)
    np.testing.assert_array_equal(model.coarsen(window).numpy(), loaded.coarsen(window).numpy())


def test_cell_state_model_any_board_size_and_save_load(tmp_path):
    model = CellStateModel(CellStateConfig(channels=2, states=2, latent_dim=8, hidden=8))
    model.build()
    randomize(model, scale=0.5)
    for shape in [(5, 7, 1), (8, 3, 1), (4, 4, 4)]:
        board = tf.one_hot(np.random.default_rng(0).integers(0, 2, size=(2, *shape)), 2)
        logits = model(board)
        assert logits.shape == (2, *shape, 2)
    # periodic boundaries: rolling the board rolls the prediction
    board = tf.one_hot(np.random.default_rng(2).integers(0, 2, size=(1, 6, 5, 1)), 2)
    np.testing.assert_allclose(model(tf.roll(board, 2, axis=1)).numpy(),
                               tf.roll(model(board), 2, axis=1).numpy(), atol=1e-5)
    path = str(tmp_path / "ca.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    np.testing.assert_array_equal(loaded(board).numpy(), model(board).numpy())
    z = model.encode(board)
    coarse = model.coarsen(tf.stack([z[:, :6, :4], z[:, :6, :4]], axis=1))
    assert coarse.shape == (1, 3, 2, 1, 8)
    np.testing.assert_array_equal(loaded.step_coarse(coarse).numpy(), model.step_coarse(coarse).numpy())


def test_config_round_trip_and_bad_keys():
    cfg = SagesnetConfig(**SMALL, coarse_levels=[{"factor": [2, 2, 1], "steps": 3}])
    assert SagesnetConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.coarse_levels == ({"factor": (2, 2, 1), "steps": 3},)
    assert cfg.delta_ps == pytest.approx(0.01)
    with pytest.raises(SagesnetError, match="unknown key.*latent"):
        SagesnetConfig.from_dict({"latnet_dim": 8})
    with pytest.raises(SagesnetError, match="kernel_size must be odd"):
        CellStateConfig(kernel_size=(2, 3, 1))
    with pytest.raises(SagesnetError, match="boundary 'wrap' unknown"):
        SagesnetConfig(boundary=("wrap", "periodic", "open"))


def test_atoms_to_atoms_exports_as_a_savedmodel_with_in_graph_checks(model, sheet, tmp_path):
    """The simulator's step (voxelizer + model) in one tf.function: SavedModel round trip, overflow
    is InvalidArgument."""
    module = tf.Module()
    module.model = model
    sim = LearnedSimulator(model)

    @tf.function(input_signature=[tf.TensorSpec([None, 3]), tf.TensorSpec([None, 3]),
                                  tf.TensorSpec([None], tf.int32), tf.TensorSpec([3]), tf.TensorSpec([4])])
    def step_atoms(positions, velocities, species, box_lengths, env):
        out = sim.step(positions[None], velocities[None], species[None], box_lengths[None], env[None])
        return {"positions": out["positions"][0]}

    module.step_atoms = step_atoms
    args = dict(positions=sheet.positions.astype("float32"), velocities=sheet.velocities.astype("float32"),
                species=sheet.species_index, box_lengths=np.diag(sheet.cell).astype("float32"),
                env=np.array([300.0, 0.0, 0.0, 0.0], "float32"))
    expected = step_atoms(**args)["positions"].numpy()
    tf.saved_model.save(module, str(tmp_path / "sm"), signatures={"serving_default": step_atoms})
    served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    np.testing.assert_allclose(served(**args)["positions"].numpy(), expected, atol=1e-5)
    # two more atoms in atom 5's voxel spill to its neighbours; thirty cannot be placed
    extra = args["positions"][[5] * 30] + np.linspace(0.001, 0.03, 30)[:, None]
    crowded = dict(args, positions=np.concatenate([args["positions"], extra]).astype("float32"),
                   velocities=np.zeros((len(sheet) + 30, 3), "float32"),
                   species=np.zeros(len(sheet) + 30, np.int32))
    spilled = dict(crowded, **{k: crowded[k][:len(sheet) + 2] for k in ("positions", "velocities", "species")})
    assert np.isfinite(served(**spilled)["positions"].numpy()).all()
    overflow = r"atom grid overflow: voxel .* holds \d+ atoms but the grid has 2 slots"
    with pytest.raises(tf.errors.InvalidArgumentError, match=overflow):
        served(**crowded)


def test_atom_decoder_false_needs_an_energy_cutoff():
    with pytest.raises(SagesnetError, match="atom_decoder: false .*needs energy_cutoff > 0"):
        SagesnetConfig(atom_decoder=False)
    assert SagesnetModel(SagesnetConfig(atom_decoder=False, energy_cutoff=2.0)).atom_decoder is None


def energy_sheet():
    """A thermal periodic 6×4 graphene sheet (96 atoms; the local energy needs 5 voxels per periodic axis)."""
    atoms = graphene_sheet(6, 4)
    rng = np.random.default_rng(4)
    atoms.positions += rng.normal(scale=0.05, size=atoms.positions.shape)
    atoms.velocities = rng.normal(scale=4.6, size=atoms.positions.shape)
    return atoms


def assert_energy_step_equals_decoder_step(with_decoder, without, atoms, tolerance):
    """The step of ``without`` (no atom decoder) equals that of ``with_decoder`` (same weights, the
    decoder's output zero), by the full path, with ``latents`` False, and with the neighbour list
    kept (LearnedSimulator.energy_neighbours), to ``tolerance`` (velocities: × their largest)."""
    lengths, origin = orthorhombic_box(atoms)
    args = [tf.constant(a[None], tf.float32) for a in (atoms.positions, atoms.velocities)]
    args += [tf.constant(atoms.species_index[None]), tf.constant(lengths[None], tf.float32)]
    env = tf.constant([[300.0, 0.0, 0.0, 0.0]])
    next_box = args[3] * tf.constant([1.001, 1.0, 1.0])
    reference = LearnedSimulator(with_decoder).step(*args, env, next_box=next_box)
    sim = LearnedSimulator(without)
    full = sim.step(*args, env, next_box=next_box)
    np.testing.assert_array_equal(full["latent"].numpy(), reference["latent"].numpy())
    np.testing.assert_array_equal(full["latent_next"].numpy(), reference["latent_next"].numpy())
    remapped = args[0] * tf.constant([1.001, 1.0, 1.0])
    neighbours = sim.energy_neighbours(remapped, *args[1:3], next_box)
    for out in (full, sim.step(*args, env, next_box=next_box, latents=False),
                sim.step(*args, env, next_box=next_box, latents=False, neighbours=neighbours)):
        assert ("latent" in out) == (out is full)
        np.testing.assert_allclose(out["positions"].numpy(), reference["positions"].numpy(), atol=tolerance)
        scale = np.abs(reference["velocities"].numpy()).max()
        np.testing.assert_allclose(out["velocities"].numpy(), reference["velocities"].numpy(), atol=tolerance * scale)


def test_a_model_without_atom_decoder_loads_the_weights_it_shares_and_steps_as_a_zero_decoder(tmp_path):
    """init_from copies every variable of a model with an atom decoder into one without (the
    decoder's are left out); with the decoder's output layer at zero both step alike."""
    config = dict(SMALL, energy_cutoff=2.0, energy_angle_cutoff=2.0, energy_dihedral_orders=2)
    with_decoder = SagesnetModel(SagesnetConfig(**config))
    with_decoder.build()
    randomize(with_decoder)
    with_decoder.local_energy.energy_weights.assign(
        np.random.default_rng(1).normal(scale=0.01, size=with_decoder.local_energy.n_features).astype("f4"))
    for w in with_decoder.atom_decoder.weights:
        if "/output/" in w.path:
            w.assign(tf.zeros_like(w))
    with_decoder.save(tmp_path / "model.keras")
    without = SagesnetModel(SagesnetConfig(**config, atom_decoder=False))
    without.build()
    from sagesnet_tf.training.md_trainer import initialise_from_run

    assert initialise_from_run(without, str(tmp_path)) == len(without.variables) < len(with_decoder.variables)
    assert_energy_step_equals_decoder_step(with_decoder, without, energy_sheet(), 2e-5)


def test_shipped_default_model_steps_as_its_zero_decoder_did():
    """The shipped v2 (atom_decoder: false) steps as the same weights with v1's grid decoder at zero
    correction (how v2 was trained) do, to float32 rounding."""
    from sagesnet_tf.export import model_from_savedmodel
    from sagesnet_tf.savedmodel import resolve_model_dir

    v2, metadata = model_from_savedmodel(resolve_model_dir(None))
    assert v2.atom_decoder is None
    with_decoder = SagesnetModel(SagesnetConfig.from_dict(
        {**metadata["model_config"], "env_scales": metadata["env_std"], "atom_decoder": True}))
    with_decoder.build()
    theirs = {v.path.removeprefix(v2.name + "/"): v for v in v2.variables}
    for v in with_decoder.variables:
        key = v.path.removeprefix(with_decoder.name + "/")
        v.assign(theirs[key] if key in theirs else tf.zeros_like(v))  # atom decoder: zero (its output layer was)
    assert_energy_step_equals_decoder_step(with_decoder, v2, energy_sheet(), 2e-5)
