"""Cellular automata: the cheap proving ground for SAGESnet's multiscale reduction.

Boards are uint8 grids of shape (X, Y, Z) (1 alive, 0 dead), periodic along every axis; any
leading batch axes are allowed, the rule acts on the last three. Two life-like rules:

- ``life``: Conway's Game of Life, B3/S23 on the 8-cell Moore neighbourhood in the xy plane.
  A 2D board is a one-cell-thick 3D grid (X, Y, 1); thicker boards evolve layer by layer.
- ``life3d``: B6/S5678 on the 26-cell 3D Moore neighbourhood (born with 6 live neighbours,
  survives with 5–8). Chosen because it keeps stable, non-trivial dynamics from random soup:
  from initial densities 0.1–0.4 on a periodic 16³ board it settles within ~50 generations to an
  alive fraction ≈ 0.26 with ≈ 20 % of cells changing every generation, and neither dies out nor
  freezes over 1,000 generations (Bays' 4555 and 5766 die out from the same soups; B5/S4567
  freezes within ~300 generations). Its smallest still life is the 2×2×2 block.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from tqdm import tqdm

from sagesnet_tf.errors import SagesnetError


@dataclasses.dataclass(frozen=True)
class Rule:
    """A life-like rule: neighbour counts that give birth / survival, and the axes it looks along."""

    name: str
    birth: frozenset[int]
    survive: frozenset[int]
    axes: int  # 2: Moore neighbourhood in xy (8 cells); 3: in xyz (26 cells)

    def __str__(self) -> str:
        return f"B{''.join(map(str, sorted(self.birth)))}/S{''.join(map(str, sorted(self.survive)))}"


RULES: dict[str, Rule] = {
    "life": Rule("life", frozenset({3}), frozenset({2, 3}), axes=2),
    "life3d": Rule("life3d", frozenset({6}), frozenset({5, 6, 7, 8}), axes=3),
}


def get_rule(name: str) -> Rule:
    """The rule called ``name`` (a key of :data:`RULES`)."""
    try:
        return RULES[name]
    except KeyError:
        raise SagesnetError(f"unknown cellular-automaton rule {name!r}; use one of {', '.join(RULES)}") from None


def _check_board(board: np.ndarray) -> np.ndarray:
    board = np.asarray(board)
    if board.ndim < 3:
        raise SagesnetError(f"a board must have shape (..., X, Y, Z) (got {board.shape}); a 2D board is (X, Y, 1)")
    return board.astype(np.uint8, copy=False)


def neighbour_counts(board: np.ndarray, rule: Rule) -> np.ndarray:
    """(..., X, Y, Z) uint8: live neighbours of every cell (periodic), excluding the cell itself."""
    board = _check_board(board)
    total = board.copy()
    for axis in range(-3, -3 + rule.axes):  # box sum is separable: 3 cells along each axis in turn
        total = total + np.roll(total, 1, axis) + np.roll(total, -1, axis)
    return total - board


def step(board: np.ndarray, rule: str | Rule = "life") -> np.ndarray:
    """One generation of (..., X, Y, Z) uint8 boards under ``rule``; returns the same shape."""
    rule = get_rule(rule) if isinstance(rule, str) else rule
    board = _check_board(board)
    counts = neighbour_counts(board, rule)
    alive = np.where(board == 1, np.isin(counts, list(rule.survive)), np.isin(counts, list(rule.birth)))
    return alive.astype(np.uint8)


def rollout(board: np.ndarray, steps: int, rule: str | Rule = "life", progress: bool = False) -> np.ndarray:
    """Generations 0 … ``steps`` of ``board`` (..., X, Y, Z): returns (steps + 1, ..., X, Y, Z) uint8."""
    if steps < 0:
        raise SagesnetError(f"steps must be 0 or more (got {steps})")
    frames = [_check_board(board)]
    for _ in tqdm(range(steps), desc="cellular automaton", unit="gen", disable=not progress, leave=False):
        frames.append(step(frames[-1], rule))
    return np.stack(frames)


def random_boards(n_boards: int, size: tuple[int, ...], density: float, seed: int | None = None) -> np.ndarray:
    """(n_boards, X, Y, Z) uint8 boards with each cell alive with probability ``density``.

    ``size`` is (X, Y) for a 2D board (stored as (X, Y, 1)) or (X, Y, Z).
    """
    size = tuple(int(s) for s in size)
    if len(size) == 2:
        size = (*size, 1)
    if len(size) != 3 or min(size) < 1 or n_boards < 1:
        raise SagesnetError(f"board size must be X Y or X Y Z with every length ≥ 1 and at least one board "
                            f"(got size {size}, {n_boards} boards)")
    if not 0.0 <= density <= 1.0:
        raise SagesnetError(f"density must be between 0 and 1 (got {density})")
    rng = np.random.default_rng(seed)
    return (rng.random((n_boards, *size)) < density).astype(np.uint8)


def generate(rule: str, size: tuple[int, ...], density: float, n_boards: int, steps: int,
             seed: int | None = None) -> np.ndarray:
    """Random boards and their rollouts: (n_boards, steps + 1, X, Y, Z) uint8, frame 0 the seed board."""
    rule_obj = get_rule(rule)
    boards = random_boards(n_boards, size, density, seed)
    if rule_obj.axes == 2 and boards.shape[-1] != 1:
        raise SagesnetError(f"rule {rule!r} is two-dimensional: give the size as X Y (got {tuple(size)})")
    return np.moveaxis(rollout(boards, steps, rule_obj, progress=True), 0, 1)


def block_density(boards: np.ndarray, block: int | tuple[int, int, int]) -> np.ndarray:
    """Coarse-grain (..., X, Y, Z) boards into block densities (..., X/kx, Y/ky, Z/kz) float32.

    ``block`` is (kx, ky, kz) or one k: (k, k, k), or (k, k, 1) when Z is 1 (a 2D board).
    Each coarse cell is the fraction of live cells in its block, in [0, 1].
    """
    boards = _check_board(boards)
    *lead, nx, ny, nz = boards.shape
    if isinstance(block, int):
        block = (block, block, 1 if nz == 1 else block)
    kx, ky, kz = block
    if min(block) < 1 or nx % kx or ny % ky or nz % kz:
        raise SagesnetError(f"block {tuple(block)} does not tile a board of {(nx, ny, nz)} cells; "
                            "choose block lengths that divide the board")
    blocks = boards.reshape(*lead, nx // kx, kx, ny // ky, ky, nz // kz, kz)
    n = len(lead)
    return blocks.mean(axis=(n + 1, n + 3, n + 5), dtype=np.float32)
