"""Each SAGESnet layer: output shapes, config round trip, and the property it exists for."""

import numpy as np
import pytest
import tensorflow as tf

from sagesnet_tf.layers import (MLP, AtomDecoder, CellDecoder, CellEncoder, CellHeads, Coarsener,
                                EnvironmentConv, Refiner, ScatterPredictor, UncertaintyHead,
                                VirtualCells, tile_halo)

B, X, Y, Z, S, F, D, E = 2, 4, 6, 2, 2, 9, 8, 4
RNG = np.random.default_rng(0)


def randomize(layer, scale=0.3, seed=1):
    """Nonzero weights everywhere (several layers start with zero output kernels)."""
    rng = np.random.default_rng(seed)
    for w in layer.weights:
        w.assign(rng.normal(scale=scale, size=w.shape).astype("float32"))


def normal(*shape):
    return tf.constant(RNG.normal(size=shape).astype("float32"))


def assert_config_round_trip(layer, *args, **kwargs):
    """A layer rebuilt from its config with copied weights gives the same outputs."""
    first = layer(*args, **kwargs)
    clone = type(layer).from_config(layer.get_config())
    clone(*args, **kwargs)
    clone.set_weights(layer.get_weights())
    second = clone(*args, **kwargs)
    tf.nest.map_structure(lambda a, b: np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6),
                          first, second)
    return first


def test_cell_encoder_shapes_round_trip_and_slot_permutation_invariance():
    slots = normal(B, X, Y, Z, S, F)
    enc = CellEncoder(D, hidden=16)
    enc(slots)
    randomize(enc)
    z = assert_config_round_trip(enc, slots)
    assert z.shape == (B, X, Y, Z, D)
    np.testing.assert_allclose(enc(slots[..., ::-1, :]).numpy(), z.numpy(), atol=1e-5)
    # a slot with occupancy 0 contributes nothing, whatever its other features hold
    ghost = slots.numpy().copy()
    ghost[..., 1, 0] = 0.0
    ghost[..., 1, 1:] = 7.0
    empty = ghost.copy()
    empty[..., 1, :] = 0.0
    np.testing.assert_allclose(enc(ghost).numpy(), enc(empty).numpy(), atol=1e-5)


def test_cell_decoder_shapes_and_ranges():
    dec = CellDecoder(S, n_elements=2, hidden=16)
    out = assert_config_round_trip(dec, normal(B, X, Y, Z, D))
    assert out["occupancy_logits"].shape == (B, X, Y, Z, S)
    assert out["element_logits"].shape == (B, X, Y, Z, S, 2)
    assert out["offsets"].shape == out["velocities"].shape == (B, X, Y, Z, S, 3)
    assert np.all((out["offsets"].numpy() > 0) & (out["offsets"].numpy() < 1))


def test_environment_conv_adds_blanket_and_cell_channels():
    z, env, cells = normal(B, X, Y, Z, D), normal(B, E), normal(B, X, Y, Z, 3)
    conv = EnvironmentConv(D, hidden=8, cell_channels=3)
    np.testing.assert_allclose(conv(z, env, cells).numpy(), z.numpy())  # identity at init
    randomize(conv)
    out = assert_config_round_trip(conv, z, env, cells)
    assert out.shape == (B, X, Y, Z, D)
    blanket = conv(z, env) - z  # same shift in every cell of a structure
    np.testing.assert_allclose(blanket.numpy(), np.broadcast_to(blanket.numpy()[:, :1, :1, :1], blanket.shape), atol=1e-5)
    assert not np.allclose(blanket[0].numpy(), blanket[1].numpy())


def test_periodic_virtual_cells_equal_numpy_wrap_even_deeper_than_the_grid():
    z = normal(B, 3, 4, 1, D)
    vc = VirtualCells((2, 5, 1), ("periodic",) * 3, D)
    expected = np.pad(z.numpy(), [(0, 0), (2, 2), (5, 5), (1, 1), (0, 0)], mode="wrap")
    np.testing.assert_array_equal(assert_config_round_trip(vc, z).numpy(), expected)


def test_open_virtual_cells_are_the_learned_empty_latent():
    vc = VirtualCells((0, 1, 2), ("periodic", "open", "open"), D)
    vc.empty_latent.assign(np.arange(D, dtype="float32"))
    out = assert_config_round_trip(vc, normal(B, X, Y, Z, D)).numpy()
    assert out.shape == (B, X, Y + 2, Z + 4, D)
    np.testing.assert_array_equal(out[:, :, 0], np.broadcast_to(np.arange(D), out[:, :, 0].shape))
    np.testing.assert_array_equal(out[:, :, :, -1], np.broadcast_to(np.arange(D), out[:, :, :, -1].shape))


def test_scatter_predictor_keeps_grid_size_and_reaches_exactly_its_halo():
    pred = ScatterPredictor(D, hidden=8, depth=2, kernel_size=(3, 3, 1))
    assert pred.halo == (2, 2, 0)
    vc = VirtualCells(pred.halo, ("periodic",) * 3, D)
    z = normal(1, 9, 9, 2, D)
    pred(vc(z))
    randomize(pred)
    dz = assert_config_round_trip(pred, vc(z))
    assert dz.shape == z.shape
    assert dz.numpy().min() < 0 < dz.numpy().max()
    # scatter reading: changing one cell changes Δz only within the halo around it, and in-plane
    bumped = z.numpy().copy()
    bumped[0, 4, 4, 0] += 1.0
    changed = np.abs(pred(vc(bumped)).numpy() - dz.numpy()).max(axis=-1)[0] > 1e-6
    ix, iy, iz = np.nonzero(changed)
    assert changed[4, 4, 0] and changed[2, 6, 0]
    assert ix.min() == 2 and ix.max() == 6 and iy.min() == 2 and iy.max() == 6 and set(iz) == {0}


def test_tiles_with_exchanged_halos_equal_the_whole_periodic_grid():
    pred = ScatterPredictor(D, hidden=8, depth=2, kernel_size=(3, 3, 3))
    rx, ry, rz = pred.halo
    whole_pad = VirtualCells(pred.halo, ("periodic",) * 3, D)
    tile_pad = VirtualCells(pred.halo, ("tiled", "periodic", "periodic"), D)
    z = normal(B, 8, 5, 3, D)
    pred(whole_pad(z))
    randomize(pred)
    whole = pred(whole_pad(z)).numpy()
    left, right = z[:, :4], z[:, 4:]
    out_left = pred(tile_pad(left, [tile_halo(right, right, 0, rx), None, None]))
    out_right = pred(tile_pad(right, [tile_halo(left, left, 0, rx), None, None]))
    np.testing.assert_allclose(np.concatenate([out_left, out_right], axis=1), whole, atol=1e-5)
    with pytest.raises(ValueError, match="tiled"):
        tile_pad(left)


def test_atom_decoder_reads_only_its_window_and_keeps_atom_rows():
    dec = AtomDecoder(gather_radius=(1, 1, 0), hidden=16, displacement_scale=0.1, velocity_scale=10.0)
    vc = VirtualCells((1, 1, 0), ("periodic",) * 3, D)
    z = normal(B, X, Y, Z, D)
    assignment = tf.constant([[[0, 0, 0, 0], [2, 3, 1, 1], [1, 5, 0, 0]]] * B, tf.int32)
    feats = normal(B, 3, F)
    out = dec(vc(z), assignment, feats)
    # zero-initialised output: no displacement, velocity unchanged (features hold v / 10 Å/ps)
    np.testing.assert_allclose(out["displacement"].numpy(), 0.0)
    np.testing.assert_allclose(out["velocities"].numpy(), feats.numpy()[..., 6:9] * 10.0, rtol=1e-6)
    randomize(dec)
    out = assert_config_round_trip(dec, vc(z), assignment, feats)
    assert out["displacement"].shape == out["velocities"].shape == (B, 3, 3)
    # atom 1 sits in voxel (2, 3, 1): cell (0, 0, 0) is outside its 3×3×1 window, inside atom 0's
    far = z.numpy().copy()
    far[:, 0, 0, 0] += 5.0
    far_out = dec(vc(far), assignment, feats)
    np.testing.assert_allclose(far_out["displacement"][:, 1].numpy(), out["displacement"][:, 1].numpy())
    assert not np.allclose(far_out["displacement"][:, 0].numpy(), out["displacement"][:, 0].numpy())
    # rows follow the atoms: permuting the atoms permutes the outputs
    perm = [2, 0, 1]
    permuted = dec(vc(z), tf.gather(assignment, perm, axis=1), tf.gather(feats, perm, axis=1))
    np.testing.assert_allclose(permuted["displacement"].numpy(), out["displacement"].numpy()[:, perm], atol=1e-6)


def test_cell_heads_and_uncertainty_heads():
    z, env = normal(B, X, Y, Z, D), normal(B, E)
    heads = CellHeads(hidden=16, stress_scale=100.0, energy_scale=0.5)
    out = assert_config_round_trip(heads, z)
    assert out["stress"].shape == (B, X, Y, Z, 6) and out["kinetic_energy"].shape == (B, X, Y, Z)
    assert out["kinetic_energy"].numpy().min() >= 0
    unc = UncertaintyHead(hidden=8, env_dim=E)
    u = assert_config_round_trip(unc, z, env)
    assert u.shape == (B, X, Y, Z) and u.numpy().min() >= 0
    assert not np.allclose(unc(z, env).numpy(), unc(z, env + 1.0).numpy())
    assert UncertaintyHead(hidden=8)(z).shape == (B, X, Y, Z)


def test_coarsener_and_refiner_shapes_for_a_2d_board():
    window = normal(B, 2, X, Y, Z, D)
    coarsener = Coarsener(D, factor=(2, 2, 1), steps=2, hidden=16)
    refiner = Refiner(D, factor=(2, 2, 1), steps=2, hidden=16)
    coarse = assert_config_round_trip(coarsener, window)
    assert coarse.shape == (B, X // 2, Y // 2, Z, D)
    fine = assert_config_round_trip(refiner, coarse)
    assert fine.shape == window.shape
    # a block is one coarse cell: changing a cell of block (0, 0, 0) changes only that coarse cell
    bumped = window.numpy().copy()
    bumped[:, 1, 1, 1, 0] += 1.0
    diff = np.abs(coarsener(bumped).numpy() - coarse.numpy()).max(axis=(0, -1))
    assert diff[0, 0, 0] > 0 and diff.sum() == diff[0, 0, 0]
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiples of k"):
        coarsener(normal(B, 2, 3, Y, Z, D))


def test_mlp_round_trip():
    assert assert_config_round_trip(MLP(5, hidden=7, n_layers=2), normal(3, 4)).shape == (3, 5)
