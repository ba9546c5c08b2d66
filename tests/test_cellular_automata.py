"""Cellular automata: known Life patterns, the 3D rule, block densities, CA datasets and the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from sagesnet_tf import cellular_automata as ca
from sagesnet_tf.cli.main import main
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.pipelines.reader import ca_window_dataset, load_metadata, read_ca_boards
from sagesnet_tf.pipelines.writer import write_ca_dataset


def board2d(shape: tuple[int, int], cells: list[tuple[int, int]]) -> np.ndarray:
    board = np.zeros((*shape, 1), np.uint8)
    for x, y in cells:
        board[x, y, 0] = 1
    return board


def test_blinker_oscillates_with_period_two():
    horizontal = board2d((5, 5), [(1, 2), (2, 2), (3, 2)])
    vertical = board2d((5, 5), [(2, 1), (2, 2), (2, 3)])
    np.testing.assert_array_equal(ca.step(horizontal, "life"), vertical)
    np.testing.assert_array_equal(ca.step(vertical, "life"), horizontal)


def test_block_is_a_still_life_even_across_the_periodic_edge():
    block = board2d((6, 6), [(5, 5), (0, 5), (5, 0), (0, 0)])  # a 2×2 block wrapped over the corner
    np.testing.assert_array_equal(ca.step(block, "life"), block)


def test_glider_returns_translated_after_four_generations_on_a_torus():
    glider = board2d((8, 8), [(1, 0), (2, 1), (0, 2), (1, 2), (2, 2)])
    frames = ca.rollout(glider, 32, "life")
    assert frames.shape == (33, 8, 8, 1)
    for t in range(0, 33, 4):  # moves (+1, +1) every 4 generations, wrapping round the 8×8 torus
        np.testing.assert_array_equal(frames[t], np.roll(glider, (t // 4, t // 4), axis=(0, 1)))
    assert (frames.reshape(33, -1).sum(axis=1) == 5).all()
    assert not np.array_equal(frames[1], frames[0])


def test_batched_step_equals_per_board_step():
    boards = ca.random_boards(3, (9, 7), 0.4, seed=0)
    assert boards.shape == (3, 9, 7, 1)
    stepped = ca.step(boards, "life")
    for b in range(3):
        np.testing.assert_array_equal(stepped[b], ca.step(boards[b], "life"))


def test_life3d_rule_sanity():
    rule = ca.RULES["life3d"]
    assert str(rule) == "B6/S5678"
    cube = np.zeros((6, 6, 6), np.uint8)
    cube[2:4, 2:4, 2:4] = 1  # every cell has 7 live neighbours; no empty cell has 6
    np.testing.assert_array_equal(ca.step(cube, "life3d"), cube)
    single = np.zeros((5, 5, 5), np.uint8)
    single[2, 2, 2] = 1
    assert not ca.step(single, "life3d").any()
    assert not ca.step(np.ones((4, 4, 4), np.uint8), "life3d").any()  # 26 neighbours: overcrowded
    counts = ca.neighbour_counts(cube, rule)
    assert counts[2, 2, 2] == 7 and counts[1, 1, 1] == 1 and counts[2, 2, 1] == 4
    # rotation and translation equivariance on a random board
    board = ca.random_boards(1, (8, 8, 8), 0.3, seed=1)[0]
    np.testing.assert_array_equal(ca.step(np.rot90(board, axes=(0, 2)), "life3d"),
                                  np.rot90(ca.step(board, "life3d"), axes=(0, 2)))
    np.testing.assert_array_equal(ca.step(np.roll(board, 3, axis=1), "life3d"),
                                  np.roll(ca.step(board, "life3d"), 3, axis=1))
    # from random soup it neither dies out nor freezes
    frames = ca.rollout(ca.random_boards(1, (12, 12, 12), 0.3, seed=2)[0], 60, "life3d")
    alive = frames.reshape(61, -1).mean(axis=1)
    assert 0.15 < alive[-10:].mean() < 0.4
    assert (frames[-1] != frames[-2]).mean() > 0.05


def test_random_boards_density_and_seed():
    a = ca.random_boards(4, (16, 16, 16), 0.25, seed=5)
    assert a.dtype == np.uint8 and a.shape == (4, 16, 16, 16)
    assert abs(a.mean() - 0.25) < 0.02
    np.testing.assert_array_equal(a, ca.random_boards(4, (16, 16, 16), 0.25, seed=5))
    assert not np.array_equal(a, ca.random_boards(4, (16, 16, 16), 0.25, seed=6))
    with pytest.raises(SagesnetError, match="density must be between 0 and 1"):
        ca.random_boards(1, (4, 4), 1.5)
    with pytest.raises(SagesnetError, match="two-dimensional"):
        ca.generate("life", (4, 4, 4), 0.3, 1, 1)
    with pytest.raises(SagesnetError, match="unknown cellular-automaton rule"):
        ca.step(a[0], "life4d")


def test_block_density():
    board = np.zeros((4, 6, 1), np.uint8)
    board[:2, :3] = 1
    board[2, 3] = 1
    dens = ca.block_density(board, (2, 3, 1))
    np.testing.assert_allclose(dens[..., 0], [[1.0, 0.0], [0.0, 1 / 6]])
    assert ca.block_density(board[None], 2).shape == (1, 2, 3, 1)  # (k, k, 1) for a 2D board
    cube = ca.random_boards(2, (8, 8, 8), 0.5, seed=0)
    coarse = ca.block_density(cube, 4)
    assert coarse.shape == (2, 2, 2, 2) and coarse.dtype == np.float32
    np.testing.assert_allclose(coarse.mean(axis=(1, 2, 3)), cube.mean(axis=(1, 2, 3)), rtol=1e-6)
    with pytest.raises(SagesnetError, match="does not tile"):
        ca.block_density(cube, 3)


def test_ca_dataset_round_trip_and_windows(tmp_path):
    boards = ca.generate("life", (6, 5), 0.4, n_boards=3, steps=4, seed=1)
    assert boards.shape == (3, 5, 6, 5, 1)
    out = write_ca_dataset(tmp_path / "ca", boards, "life", source={"seed": 1}, frames_per_shard=4)
    np.testing.assert_array_equal(read_ca_boards(out), boards)
    meta = load_metadata(out)
    assert meta["kind"] == "ca" and meta["rule"] == "life" and meta["board_shape"] == [6, 5, 1]
    assert (meta["n_boards"], meta["n_frames_per_board"], len(meta["shards"])) == (3, 5, 4)
    assert meta["statistics"]["alive_fraction"]["mean"][0] == pytest.approx(boards.mean())
    windows = list(ca_window_dataset(out, window=3, stride=2, batch_size=2))
    # per rollout of 5 generations one window (0, 2, 4); 3 rollouts → batches of 2 and 1
    assert [w.shape for w in windows] == [(2, 3, 6, 5, 1), (1, 3, 6, 5, 1)]
    assert windows[0].dtype == tf.uint8
    got = np.concatenate([w.numpy() for w in windows])
    np.testing.assert_array_equal(got, boards[:, ::2])
    # each window really is consecutive generations of the rule
    for t in range(2):
        np.testing.assert_array_equal(ca.step(ca.step(got[:, t], "life"), "life"), got[:, t + 1])


def test_cli_generate_ca(tmp_path, capsys):
    out = tmp_path / "life3d"
    args = ["generate", "ca", "--rule", "life3d", "--size", "6", "6", "4", "--density", "0.3", "--boards", "2",
            "--steps", "3", "--seed", "4", "--out", str(out)]
    assert main(args) == 0
    assert "wrote 2 × 4 life3d boards of 6×6×4 cells" in capsys.readouterr().out
    boards = read_ca_boards(out)
    np.testing.assert_array_equal(boards, ca.generate("life3d", (6, 6, 4), 0.3, 2, 3, seed=4))
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["source"]["rule_string"] == "B6/S5678" and meta["source"]["seed"] == 4
    assert (out / "ca_rollouts.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(args) == 2
    assert "already holds a dataset" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0
    assert main(["generate", "ca", "--rule", "life", "--size", "6", "--out", str(tmp_path / "x")]) == 2
    assert "--size takes two or three lengths" in capsys.readouterr().err
    assert main(["generate", "ca", "--rule", "life", "--size", "6", "6", "6", "--out", str(tmp_path / "y")]) == 2
    assert "is two-dimensional" in capsys.readouterr().err
