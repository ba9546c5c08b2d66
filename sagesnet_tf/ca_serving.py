"""Cellular-automaton models through the CLI: export a trained CA run, and roll boards out with it.

``sagesnet-tf export --run RUN --out DIR`` on a run of ``sagesnet-tf train`` with a CA config
(RUN/config.yaml + RUN/checkpoints/, e.g. configs/ca_life.yaml on ``generate ca`` data) writes
DIR/VERSION in TF Serving layout (:func:`export_ca_run`) with the signatures::

    serving_default(board (X,Y,Z) int32 cell states in [0, states), n_steps () int32 in
                    [1, max_steps_per_call]) -> frames (n_steps, X, Y, Z) int32: the boards after
                    1 … n_steps generations, each the most likely state (argmax of the model's
                    logits) of every cell given the previous board
    metadata() -> metadata: JSON string (kind "ca", states, boundary, model_config, limits,
                  training_run)

``sagesnet-tf ca simulate --model DIR --board FILE --steps N --out OUT`` (:func:`simulate_board`)
reads a board (:func:`read_board`), calls ``serving_default`` in chunks of at most
``max_steps_per_call`` generations, and writes OUT/frames.npy (N+1, X, Y, Z) uint8 (generation
0 the input), OUT/frames.txt for one-cell-thick boards and OUT/manifest.json.

Board files: ``.npy``, an integer array (X, Y) or (X, Y, Z); or text, the array ``board[:, :, 0]``
row by row (line = x index, character = y index, as ``np.savetxt``/``np.loadtxt`` see it), one
digit per cell (``0`` dead, ``1`` alive), spaces ignored, blank lines and lines starting with
``#`` skipped. A 2D board is the one-cell-thick board (X, Y, 1) that the ``life`` rule steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.savedmodel import (EXPORT_SCHEMA_VERSION, MAX_GRID_CELLS, MAX_STEPS_PER_CALL, load_exported,
                                    resolve_model_dir, serving_limits, write_savedmodel)
from sagesnet_tf.io import atomic_output

#: Most cells of all frames one call returns (n_steps × X·Y·Z), besides ``savedmodel.MAX_GRID_CELLS``
#: per board: a call's frames stay within 256 MiB of int32.
MAX_FRAME_CELLS = 2 ** 26
#: Files a CA run writes into its output directory.
OUTPUT_FILES = ("frames.npy", "frames.txt", "manifest.json")


def is_ca_run(path) -> bool:
    """True for a training run directory of the cellular-automaton trainer (a config.yaml that is
    not a ``kind: md`` config)."""
    from sagesnet_tf.training.config import is_md_config

    config = Path(path) / "config.yaml"
    return Path(path).is_dir() and config.is_file() and not is_md_config(str(config))


def load_ca_run(run_dir) -> tuple:
    """(CellStateModel, run info) of a finished CA run: the model built from RUN/config.yaml and its
    variables read from the newest checkpoint.

    The trainer's checkpoint holds the weights a stage trains under that stage's optimizer
    (``optimizers/STAGE/_trainable_variables/I``, I the index in the stage's variable list), not
    under ``models/``, so each variable is read from there (shape checked); the few stored under
    ``models/`` are read by path. Every variable of the fine step (what ``serving_default`` runs:
    encoder, predictor, virtual cells, decoder) must be found.
    """
    from sagesnet_tf.training.config import load_config
    from sagesnet_tf.training.stages import CAModels, make_stage

    run_dir = Path(run_dir)
    cfg = load_config(str(run_dir / "config.yaml"))
    latest = tf.train.latest_checkpoint(str(run_dir / "checkpoints"))
    if latest is None:
        raise SagesnetError(f"export: CA run {run_dir} has no checkpoint in checkpoints/; train it first")
    models = CAModels(cfg.cell_config)
    models.build()
    reader = tf.train.load_checkpoint(latest)
    shapes = reader.get_variable_to_shape_map()
    done, total = int(reader.get_tensor("state/stage_index/.ATTRIBUTES/VARIABLE_VALUE")), len(cfg.stages)
    if done < total:
        raise SagesnetError(f"export: CA run {run_dir} stopped in stage {done + 1} of {total}; finish it with "
                            "`sagesnet-tf train --resume` before exporting")
    found = set()
    tf.train.Checkpoint(models=models.tracked()).read(latest).expect_partial()
    for stage in (make_stage(s, models) for s in cfg.stages):
        for index, variable in enumerate(stage.trainable_variables()):
            key = f"optimizers/{stage.name}/_trainable_variables/{index}/.ATTRIBUTES/VARIABLE_VALUE"
            if key in shapes:
                if tuple(shapes[key]) != tuple(variable.shape):
                    raise SagesnetError(f"export: checkpoint {latest} does not match {run_dir}/config.yaml "
                                        f"({variable.path}: {tuple(shapes[key])} vs {tuple(variable.shape)})")
                variable.assign(reader.get_tensor(key))
                found.add(variable.path)
    c = models.cell
    fine = [v.path for part in (c.encoder, c.predictor, c.virtual, c.decoder) for v in part.variables]
    missing = [p for p in fine if p not in found]
    if missing:
        raise SagesnetError(f"export: checkpoint {latest} lacks {len(missing)} variable(s) of the fine step "
                            f"(e.g. {missing[0]}); was the run trained with a predictor stage?")
    info = {"run_dir": str(run_dir.resolve()), "config": cfg.name, "checkpoint": str(Path(latest).resolve()),
            "step": int(reader.get_tensor("state/step/.ATTRIBUTES/VARIABLE_VALUE"))}
    return models.cell, info


class CAServing(tf.Module):
    """The exported module of a CellStateModel ``cell`` (signatures in the module docstring)."""

    def __init__(self, cell, metadata: dict):
        super().__init__(name="ca_serving")
        self.model = cell
        self._states = cell.config.states
        self._metadata_json = tf.constant(json.dumps(metadata, ensure_ascii=False))

    @tf.function(input_signature=[tf.TensorSpec(None, tf.int32), tf.TensorSpec(None, tf.int32)])
    def simulate(self, board, n_steps):
        states = self._states
        board = tf.ensure_shape(board, [None, None, None], name="board_must_be_X_by_Y_by_Z")
        n_steps = tf.ensure_shape(n_steps, [], name="n_steps_must_be_scalar")
        cells = tf.reduce_prod(tf.shape(board))
        checks = [
            tf.debugging.assert_positive(tf.shape(board), message="board: empty (a dimension is 0)"),
            tf.debugging.assert_less_equal(cells, MAX_GRID_CELLS,
                                           message=f"board: more than {MAX_GRID_CELLS} cells (max_grid_cells)"),
            tf.debugging.assert_non_negative(board, message="board: negative cell state"),
            tf.debugging.assert_less(board, states, message=f"board: cell state >= {states} (states)"),
            tf.debugging.assert_positive(n_steps, message="n_steps must be >= 1"),
            tf.debugging.assert_less_equal(n_steps, MAX_STEPS_PER_CALL,
                                           message=f"n_steps must be <= {MAX_STEPS_PER_CALL} per call "
                                                   "(max_steps_per_call)"),
            tf.debugging.assert_less_equal(tf.cast(n_steps, tf.int64) * tf.cast(cells, tf.int64),
                                           tf.constant(MAX_FRAME_CELLS, tf.int64),
                                           message=f"n_steps × board cells must be <= {MAX_FRAME_CELLS} per call "
                                                   "(max_frame_cells); ask for fewer steps per call"),
        ]
        with tf.control_dependencies(checks):
            board, n_steps = tf.identity(board), tf.identity(n_steps)

        def body(i, current, frames):
            nxt = tf.argmax(self.model(tf.one_hot(current[None], states))[0], axis=-1, output_type=tf.int32)
            return i + 1, nxt, frames.write(i, nxt)

        frames = tf.TensorArray(tf.int32, size=n_steps)
        _, _, frames = tf.while_loop(lambda i, *_: i < n_steps, body, (tf.constant(0), board, frames))
        return {"frames": frames.stack()}

    @tf.function(input_signature=[])
    def metadata(self):
        return {"metadata": self._metadata_json}


def export_ca_run(run_dir, out, version: int | None = None) -> Path:
    """Export the CA run ``run_dir`` (:func:`load_ca_run`) as ``out/VERSION``; returns that directory."""
    cell, info = load_ca_run(run_dir)
    c = cell.config
    if c.channels != c.states or c.env_dim:
        raise SagesnetError(f"export: CA model with {c.channels} input channels, {c.states} states and env_dim "
                            f"{c.env_dim}: the board signature feeds the one-hot state alone (channels = states, no env)")
    metadata = {"schema_version": EXPORT_SCHEMA_VERSION, "kind": "ca", "states": c.states,
                "boundary": list(c.boundary), "model_config": c.to_dict(),
                "limits": dict(serving_limits(), max_frame_cells=MAX_FRAME_CELLS),
                "board": "(X, Y, Z) int32 cell states; a 2D board is (X, Y, 1)", "training_run": info}
    module = CAServing(cell, metadata)
    return write_savedmodel(module, {"serving_default": module.simulate, "metadata": module.metadata},
                            metadata, out, version)


def read_board(path) -> np.ndarray:
    """(X, Y, Z) uint8 board of a ``.npy`` or text file (format in the module docstring)."""
    path = Path(path)
    if path.suffix == ".npy":
        try:
            board = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise SagesnetError(f"board {path}: not a readable .npy array ({err})") from None
        if board.dtype.kind not in "iub" or board.ndim not in (2, 3):
            raise SagesnetError(f"board {path}: a .npy board is an integer array (X, Y) or (X, Y, Z), "
                                f"got {board.dtype} {board.shape}")
    else:
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            raise SagesnetError(f"board {path}: not a readable text file ({type(err).__name__})") from None
        rows = [line.replace(" ", "").replace("\t", "") for line in lines if line.strip() and not line.startswith("#")]
        bad = next((r for r in rows if not set(r) <= set("0123456789")), None)
        if bad is not None:
            raise SagesnetError(f"board {path}: a text board holds digits 0/1 only (row {bad[:40]!r})")
        if not rows or len({len(r) for r in rows}) != 1:
            raise SagesnetError(f"board {path}: a text board needs rows of one length (got lengths "
                                f"{sorted({len(r) for r in rows})})")
        board = np.array([[int(ch) for ch in r] for r in rows])
    if board.size == 0:
        raise SagesnetError(f"board {path}: empty board {board.shape}")
    if board.min() < 0 or board.max() > 255:
        raise SagesnetError(f"board {path}: cell states must be small non-negative integers (0 dead, 1 alive)")
    return (board[..., None] if board.ndim == 2 else board).astype(np.uint8)


def _frames_text(frames: np.ndarray) -> str:
    """frames (T, X, Y, 1) as text: per generation a ``# generation t`` line, then X rows of Y digits."""
    out = []
    for t, frame in enumerate(frames[..., 0]):
        out.append(f"# generation {t}")
        out.extend("".join(map(str, row)) for row in frame)
    return "\n".join(out) + "\n"


def simulate_board(board_file, model, steps: int, out, overwrite: bool = False) -> dict:
    """Roll the board in ``board_file`` out ``steps`` generations with the CA SavedModel ``model``
    (NAME or NAME/VERSION); writes OUT/frames.npy, OUT/frames.txt (boards one cell thick) and
    OUT/manifest.json; returns the manifest."""
    if steps < 1:
        raise SagesnetError(f"ca simulate: --steps must be >= 1 (got {steps})")
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise SagesnetError(f"ca simulate: {out} is not an empty directory; pass --overwrite or choose another --out")
    board = read_board(board_file)
    model_dir = resolve_model_dir(model)
    loaded, meta = load_exported(model_dir, kind="ca")
    if board.max() >= meta["states"]:
        raise SagesnetError(f"ca simulate: board {board_file} has cell state {board.max()}; the model knows "
                            f"states 0..{meta['states'] - 1}")
    limits = meta["limits"]
    per_call = max(1, min(limits["max_steps_per_call"], limits["max_frame_cells"] // board.size))
    fn = loaded.signatures["serving_default"]
    frames, start = [board], time.time()
    while len(frames) <= steps:
        n = min(per_call, steps + 1 - len(frames))
        try:
            got = fn(board=tf.constant(frames[-1], tf.int32), n_steps=tf.constant(n, tf.int32))["frames"].numpy()
        except tf.errors.InvalidArgumentError as err:
            raise SagesnetError(f"ca simulate: the model refused the board ({err.message.strip().splitlines()[-1]})") \
                from None
        frames.extend(got.astype(np.uint8))
    stacked = np.stack(frames)
    manifest = {"model": str(model_dir), "board": str(board_file), "shape": list(board.shape), "steps": steps,
                "alive_fraction": [float(f.mean()) for f in stacked], "wall_s": round(time.time() - start, 3),
                "files": [f for f in OUTPUT_FILES if f != "frames.txt" or board.shape[-1] == 1]}
    out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUT_FILES:  # --overwrite: no file of an earlier run stays beside this one's
        (out / name).unlink(missing_ok=True)
    with atomic_output(out / "frames.npy", "wb") as handle:
        np.save(handle, stacked)
    if board.shape[-1] == 1:
        with atomic_output(out / "frames.txt") as handle:
            handle.write(_frames_text(stacked))
    with atomic_output(out / "manifest.json") as handle:
        json.dump(manifest, handle, indent=2)
    return manifest
