"""``sagesnet-tf generate ca``: random cellular-automaton rollouts written as a TFRecord dataset."""

from __future__ import annotations

import io
import os

import click
import numpy as np

from sagesnet_tf import cellular_automata
from sagesnet_tf.cli.options import SEED, FiniteFloat
from sagesnet_tf.errors import SagesnetError

#: Most cells (one byte each) of all rollouts together: they are held in memory before writing.
MAX_CELLS = 2_000_000_000


def _size(first: str, extra: list[str]) -> tuple[int, ...]:
    """``--size X Y [Z]``: Click gives the first length, the rest arrive as extra arguments."""
    words = [first, *extra]
    try:
        size = tuple(int(w) for w in words)
    except ValueError:
        raise SagesnetError(f"--size takes two or three whole numbers X Y [Z] (got {' '.join(words)})") from None
    if len(size) not in (2, 3):
        raise SagesnetError(f"--size takes two or three lengths X Y [Z] (got {len(size)}: {' '.join(words)})")
    if min(size) < 1:
        raise SagesnetError(f"--size lengths must be at least 1 cell (got {' '.join(words)})")
    return size


def plot_rollouts(boards: np.ndarray, rule: str) -> bytes:
    """PNG: alive fraction per generation for each rollout, and board 0 at its first and last generation
    (the middle z layer for 3D boards). ``boards`` is (B, T, X, Y, Z) uint8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for b, alive in enumerate(boards.reshape(*boards.shape[:2], -1).mean(axis=2)):
        axes[0].plot(alive, lw=1, label=f"board {b}" if b < 8 else None)
    axes[0].set(xlabel="generation", ylabel="alive fraction", title=f"{rule} ({cellular_automata.get_rule(rule)})")
    axes[0].legend(fontsize=7)
    z = boards.shape[-1] // 2
    for ax, t in zip(axes[1:], (0, boards.shape[1] - 1)):
        ax.imshow(boards[0, t, :, :, z].T, origin="lower", cmap="Greys", interpolation="nearest")
        ax.set(title=f"board 0, generation {t}" + (f", z = {z}" if boards.shape[-1] > 1 else ""),
               xlabel="x", ylabel="y")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


@click.command("ca", context_settings={"allow_extra_args": True})
@click.option("--rule", type=click.Choice(sorted(cellular_automata.RULES)), required=True,
              help="life: Conway B3/S23 on (X, Y, 1) boards; life3d: B6/S5678 on 3D boards.")
@click.option("--size", "size_x", required=True, metavar="X Y [Z]",
              help="Board size in cells; two lengths for a 2D board (stored as X Y 1).")
@click.option("--density", type=FiniteFloat(0.0, 1.0), default=0.3, show_default=True,
              help="Probability that a cell of the seed board is alive.")
@click.option("--boards", "n_boards", type=click.IntRange(min=1), default=8, show_default=True,
              help="Number of independent random rollouts.")
@click.option("--steps", type=click.IntRange(min=1), default=64, show_default=True,
              help="Generations per rollout (each rollout stores steps + 1 boards, the seed first).")
@click.option("--seed", type=SEED, default=0, show_default=True, help="Random seed of the seed boards.")
@click.option("--out", "out_dir", required=True, help="Output dataset directory (local path or gs://, s3:// …).")
@click.option("--overwrite", is_flag=True, help="Replace a dataset already in --out.")
@click.option("--resume", is_flag=True,
              help="Finish a write that was interrupted (killed): give the same options; the boards are "
                   "regenerated from --seed and only the missing shards are written (same bytes).")
@click.pass_context
def ca(ctx: click.Context, rule: str, size_x: str, density: float, n_boards: int, steps: int, seed: int,
       out_dir: str, overwrite: bool, resume: bool) -> None:
    """Roll out random boards of a cellular automaton and write them as a TFRecord dataset.

    Writes DIR/ca_rollouts.png, DIR/data-*.tfrecord.gz and, last, DIR/metadata.json.
    """
    import tensorflow as tf

    from sagesnet_tf.pipelines.reader import load_metadata
    from sagesnet_tf.pipelines.writer import check_writable, write_ca_dataset, write_file_atomic

    size = _size(size_x, ctx.args)
    if "://" not in out_dir and os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise SagesnetError(f"--out {out_dir} is a file; give a directory")
    cells = int(np.prod(size, dtype=object)) * n_boards * (steps + 1)
    if cells > MAX_CELLS:
        raise SagesnetError(f"{n_boards} rollouts of {steps + 1} boards of {'×'.join(map(str, size))} cells are "
                            f"{cells:,} cells, more than the {MAX_CELLS:,} generate ca holds in memory; use fewer or "
                            "smaller boards, or fewer --steps")
    if resume and overwrite:
        raise SagesnetError("--resume and --overwrite contradict each other; pass one of them")
    check_writable(out_dir, overwrite or resume)
    boards = cellular_automata.generate(rule, size, density, n_boards, steps, seed)
    source = {"generator": "sagesnet-tf generate ca", "rule": rule,
              "rule_string": str(cellular_automata.get_rule(rule)),
              "size": list(boards.shape[2:]), "density": density, "boards": n_boards, "steps": steps, "seed": seed}
    complete = None
    if resume:
        try:
            complete = load_metadata(out_dir)
        except SagesnetError:  # not (yet) a dataset: resume it
            pass
    if complete is not None:
        if complete.get("source") != source:
            raise SagesnetError(f"{out_dir} already holds a complete dataset made with other options; pass "
                                "--overwrite to replace it")
        click.echo(f"{out_dir} is already complete; nothing to resume")
        return
    tf.io.gfile.makedirs(out_dir)
    write_file_atomic(f"{out_dir.rstrip('/')}/ca_rollouts.png", plot_rollouts(boards, rule))  # before metadata.json
    out = write_ca_dataset(out_dir, boards, rule, source=source, overwrite=overwrite, resume=resume)
    final = boards[:, -1].reshape(n_boards, -1).mean()
    click.echo(f"wrote {n_boards} × {steps + 1} {rule} boards of {'×'.join(map(str, boards.shape[2:]))} cells "
               f"to {out} (alive fraction {boards[:, 0].mean():.3f} → {final:.3f})")
