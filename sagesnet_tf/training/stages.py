"""Training stages of the cellular-automaton model and the model bundle they train.

Shapes: B batch, L window length (boards), X/Y/Z cells, C cell states, D latent width,
k = coarsen factor per axis (1 on axes that are not coarsened), T = coarsen steps,
Xc = X / kx etc. Windows are int cell states (B, L, X, Y, Z); the model sees one-hot boards
(B, X, Y, Z, C) float32.

Stages (``kind`` in the config):

- ``predictor``: one-step cross-entropy of the fine model, board t -> board t+1.
- ``unrolled``: the fine model is rolled out ``unroll`` steps, feeding back its softmax; the loss
  is the mean cross-entropy over the rollout. Gaussian ``input_noise`` (std, on the one-hot
  channels) is added to the first input so that slightly-off states are pulled back.
- ``coarsener_autoencoder``: fine latents of T boards are coarsened (k³ cells × T steps -> one
  coarse cell of width D) and refined back; loss = cross-entropy of the decoded boards. The fine
  model is frozen. Windows reconstructed badly are oversampled (``oversample``).
- ``coarse_joint``: coarsener + coarse predictor (VirtualCells + ScatterPredictor on the coarse
  grid) + block-density head, trained jointly: the predicted next coarse state must match the
  coarsened next T boards (latent MSE), decode to their block density (MSE, cells alive per
  cell of the block averaged over T steps) and still refine to the current boards.
  Reported with the persistence baseline (next density = current density).
- ``uncertainty``: a per-cell head on the fine latent predicts the per-cell cross-entropy the
  (frozen) fine model will incur on noisy inputs.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.layers import MLP
from sagesnet_tf.model import CellStateConfig, CellStateModel
from sagesnet_tf.training.config import StageConfig
from sagesnet_tf.training.losses import cell_accuracy, cell_cross_entropy, mean_squared


class CAModels:
    """The trainable parts of a cellular-automaton run.

    - ``cell``: :class:`~sagesnet_tf.model.CellStateModel` (encoder, fine predictor, decoder,
      coarse level 0's coarsener / refiner / predictor, uncertainty heads).
    - ``density_head``: coarse latent (..., D) -> logit of the block density (..., 1), a probe
      that reads the coarse state as something people can check (cells alive per block).
    """

    def __init__(self, cfg: CellStateConfig):
        self.cfg = cfg
        self.cell = CellStateModel(cfg, name="cell_state_model")
        level = cfg.coarse_levels[0] if cfg.coarse_levels else {"factor": (1, 1, 1), "steps": 1}
        self.factor, self.steps = tuple(level["factor"]), int(level["steps"])
        self.density_head = MLP(1, cfg.hidden, 1, name="density_head")

    def build(self) -> None:
        """Create every variable (shapes come from the config alone)."""
        self.cell.build()
        self.density_head.build((None, None, None, None, self.cfg.latent_dim))

    def check_board(self, board_shape) -> None:
        """Raise SagesnetError if boards of spatial shape (X, Y, Z) cannot be coarsened."""
        for a, (n, k) in enumerate(zip(board_shape, self.factor)):
            if int(n) % k:
                raise SagesnetError(f"board axis {'xyz'[a]} has {int(n)} cells, not a multiple of the coarsen "
                                    f"factor {k}; use boards whose size is a multiple of {k}")

    def encode_window(self, boards: tf.Tensor) -> tf.Tensor:
        """Int boards (B,T,X,Y,Z) -> fine latents (B,T,X,Y,Z,D)."""
        s = tf.shape(boards)
        flat = tf.reshape(boards, tf.concat([[-1], s[2:]], 0))
        z = self.cell.encode(tf.one_hot(flat, self.cfg.states))
        return tf.reshape(z, tf.concat([s, [self.cfg.latent_dim]], 0))

    def decode_window(self, z: tf.Tensor) -> tf.Tensor:
        """Fine latents (B,T,X,Y,Z,D) -> logits (B,T,X,Y,Z,C)."""
        s = tf.shape(z)
        logits = self.cell.decode(tf.reshape(z, tf.concat([[-1], s[2:]], 0)))
        return tf.reshape(logits, tf.concat([s[:-1], [self.cfg.states]], 0))

    def block_density(self, boards: tf.Tensor) -> tf.Tensor:
        """Int boards (B,T,X,Y,Z) -> fraction of live (state > 0) cells per coarse block over the
        T boards (B,Xc,Yc,Zc)."""
        alive = tf.cast(boards > 0, tf.float32)
        kx, ky, kz = self.factor
        s = tf.shape(alive)
        blocks = tf.reshape(alive, [s[0], s[1], s[2] // kx, kx, s[3] // ky, ky, s[4] // kz, kz])
        return tf.reduce_mean(blocks, axis=[1, 3, 5, 7])

    def density(self, z_coarse: tf.Tensor) -> tf.Tensor:
        """Coarse latent (B,Xc,Yc,Zc,D) -> block density in (0, 1), (B,Xc,Yc,Zc)."""
        return tf.sigmoid(self.density_head(z_coarse)[..., 0])

    def tracked(self) -> dict:
        """Name -> trackable, for the checkpoint."""
        return {"cell": self.cell, "density_head": self.density_head}


class Stage:
    """One stage: which variables it trains and how it computes its per-example metrics."""

    def __init__(self, cfg: StageConfig, models: CAModels):
        self.cfg = cfg
        self.name = cfg.name
        self.models = models

    def trainable_variables(self) -> list:
        """Variables this stage updates."""
        m, c = self.models, self.models.cell
        fine = [c.encoder, c.decoder, c.predictor, c.virtual] + ([c.env_conv] if c.env_conv else [])
        coarse = [c.coarseners[0], c.refiners[0]] if c.coarseners else []
        parts = {
            "predictor": fine,
            "unrolled": fine,
            "coarsener_autoencoder": coarse,
            "coarse_joint": coarse + ([c.coarse_predictors[0], c.coarse_virtuals[0], m.density_head]
                                      if c.coarseners else []),
            "uncertainty": [c.uncertainty],
        }[self.cfg.kind]
        return [v for p in parts for v in p.trainable_variables]

    def make_optimizer(self) -> keras.optimizers.Optimizer:
        """Adam with exponential decay from ``learning_rate`` to ``final_learning_rate`` over the stage (built)."""
        c = self.cfg
        schedule = keras.optimizers.schedules.ExponentialDecay(
            c.learning_rate, decay_steps=c.steps, decay_rate=c.final_learning_rate / c.learning_rate)
        opt = keras.optimizers.Adam(schedule, name=f"adam_{c.name}")
        opt.build(self.trainable_variables())
        return opt

    def compute(self, windows: tf.Tensor, noise: tf.Tensor | None, training: bool) -> dict[str, tf.Tensor]:
        """Per-example metrics (each (B,)) of this stage, including ``loss``.

        Args:
            windows: (B, L, X, Y, Z) int32 boards.
            noise: (B, X, Y, Z, C) float32 added to the first one-hot input, or None.
        """
        return getattr(self, f"_{self.cfg.kind}")(windows, noise)

    # ------------------------------------------------------------------------- stage bodies
    def _input(self, windows, noise):
        board = tf.one_hot(windows[:, 0], self.models.cfg.states)
        return board if noise is None else board + noise

    def _rollout(self, windows, noise, steps):
        state = self._input(windows, noise)
        ce, acc = [], []
        for k in range(1, steps + 1):
            logits = self.models.cell(state)
            ce.append(cell_cross_entropy(windows[:, k], logits))
            acc.append(cell_accuracy(windows[:, k], logits))
            state = tf.nn.softmax(logits)
        return {"loss": tf.add_n(ce) / steps, "accuracy": tf.add_n(acc) / steps,
                "last_step_accuracy": acc[-1]}

    def _predictor(self, windows, noise):
        return self._rollout(windows, noise, 1)

    def _unrolled(self, windows, noise):
        return self._rollout(windows, noise, self.cfg.unroll)

    def _reconstruct(self, boards):
        m = self.models
        z_coarse = m.cell.coarsen(tf.stop_gradient(m.encode_window(boards)))
        logits = m.decode_window(m.cell.refine(z_coarse))
        flat = lambda t: tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))  # noqa: E731
        b = tf.shape(boards)[0]
        ce = tf.reduce_mean(tf.reshape(cell_cross_entropy(flat(boards), flat(logits)), [b, -1]), axis=1)
        acc = tf.reduce_mean(tf.reshape(cell_accuracy(flat(boards), flat(logits)), [b, -1]), axis=1)
        return z_coarse, ce, acc

    def _coarsener_autoencoder(self, windows, noise):
        _, ce, acc = self._reconstruct(windows[:, : self.models.steps])
        return {"loss": ce, "reconstruction_accuracy": acc}

    def _coarse_joint(self, windows, noise):
        m, t = self.models, self.models.steps
        now, nxt = windows[:, :t], windows[:, t:2 * t]
        z_now, recon_ce, acc = self._reconstruct(now)
        z_next_target = tf.stop_gradient(m.cell.coarsen(m.encode_window(nxt)))
        z_next = m.cell.step_coarse(z_now)
        density_now, density_next = m.block_density(now), m.block_density(nxt)
        predicted, current = m.density(z_next), m.density(z_now)
        density_mse = mean_squared(predicted, density_next)
        loss = (recon_ce + mean_squared(z_next, z_next_target) + 10.0 * density_mse
                + 10.0 * mean_squared(current, density_now))
        return {"loss": loss, "reconstruction_accuracy": acc, "density_mse": density_mse,
                "persistence_mse": mean_squared(density_now, density_next)}

    def _uncertainty(self, windows, noise):
        m = self.models
        board = self._input(windows, noise)
        z = m.cell.encode(board)
        logits = m.cell.decode(m.cell.step(z))
        per_cell = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=windows[:, 1], logits=logits)
        predicted = m.cell.predict_uncertainty(tf.stop_gradient(z))
        return {"loss": mean_squared(predicted, tf.stop_gradient(per_cell)),
                "mean_cell_loss": tf.reduce_mean(per_cell, axis=[1, 2, 3])}


def make_stage(cfg: StageConfig, models: CAModels) -> Stage:
    """The :class:`Stage` for one config entry."""
    return Stage(cfg, models)
