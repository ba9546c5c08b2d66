"""The MD stage losses: one class per stage ``kind`` (:data:`MD_STAGES`), each naming the layers it
trains (:meth:`MDStage.trainable_layers`) and computing its per-example loss and metrics from a
batch (:meth:`MDStage.loss`). Every step of the atoms is the
:class:`~sagesnet_tf.simulator.LearnedSimulator`'s (fine step, window latents, frame-by-frame
decode), as in ``simulate``; the batches carry the raw environment, which the simulator normalises.

Shapes: B batch, L window frames, N atoms, X/Y/Z cells, S slots, D latent width, T the frames of
coarse level 0's window. Units: LAMMPS ``metal`` (Å, ps, Å/ps, eV, bar). Losses are per example (B,)
and unitless: each error is divided by a dataset statistic of
:class:`~sagesnet_tf.training.md_data.MDData`: σ_d, the per-axis atom displacement over one
record stride (Å); σ_v, the per-axis velocity (Å/ps); σ_stress, per-atom stress·volume (bar·Å³).

Stages (``kind``; the config runs them in file order):

- ``autoencoder``: atom grid at t -> encode -> decode; slot reconstruction: occupancy
  (binary cross-entropy), element (cross-entropy on occupied slots), offset and velocity (MSE on
  occupied slots; offsets in voxel units, velocities in units of σ_v), plus the per-cell stress and
  kinetic-energy heads (MSE of the per-cell sums, in units of σ_stress and of one atom's mean
  kinetic energy). Trains encoder, slot decoder and heads. With ``pair_stress`` it also reports
  ``pair_stress``, the MSE of the pair stress's per-cell sums (not trained here).
- ``heads``: the autoencoder's loss with only the stress and kinetic-energy heads training (the
  latents stay as the trained dynamics read them), e.g. to teach a trained model new stresses.
- ``pair_stress_fit`` (models with ``pair_stress``): the pair stress's bond tensions by linear least
  squares instead of gradient steps. Each step adds one batch's per-cell equations (the per-cell
  sums of :meth:`~sagesnet_tf.layers.PairStress.design` against the MD per-cell stress plus the
  kinetic part, all components in one unit, σ_stress pooled over them) to the normal equations
  (:class:`~sagesnet_tf.training.least_squares.NormalEquations`, checkpointed); the last step
  solves them (ridge :data:`~sagesnet_tf.training.least_squares.LEAST_SQUARES_RIDGE` × the mean
  diagonal towards the weights the stage started from, so radial functions no pair reaches keep
  their values) and sets the weights. ``learning_rate`` is
  unused. Reports the ``pair_stress`` loss of the current weights. Adam on the same loss stalls far
  from this optimum: the per-cell stresses of thermal frames are noisy, the radial features overlap
  (fitted on the tension data it read 65 % of the held-out peak stress, the least-squares weights
  105 %).
- ``pair_force_fit`` (models with ``pair_cutoff`` > 0): the pair forces' magnitudes g(r) by linear
  least squares, as ``pair_stress_fit``: each step adds one batch's equations — every atom's three
  velocity components after one step, :meth:`~sagesnet_tf.layers.PairForces.design` · w against
  the MD velocity at t+Δ minus the rest of the model's prediction (the grid decoder's, which stays
  as it is), in units of σ_v — and the last step solves them. Reports the predictor's loss. Why:
  Adam fits g where the data is dense (bonds of 1.3–1.5 Å in thermal frames) and leaves the rare
  stretched bonds of the tension runs (1.5–1.9 Å, where AIREBO's bond force keeps rising until the
  bond breaks) near where the thermal data put them; weighting the tension data
  (``data.dataset_weights``) and solving exactly gives them their share.
- ``local_energy_fit`` (models with ``energy_cutoff`` > 0): the local energy's weights by linear
  least squares, as ``pair_force_fit``, on two sets of equations per batch
  (:func:`~sagesnet_tf.training.least_squares.local_energy_equations`, in eV/Å): every atom's
  force at the step's midpoint (:meth:`~sagesnet_tf.layers.LocalEnergy.design`) against the force
  that takes the model's predicted velocity at t+Δ to MD's, and the energy's strain derivative
  along each periodic axis against the MD virial (from the recorded per-atom stress), which the
  forces alone leave free. Reports the predictor's figures. The energy conserves momentum and,
  integrated by the step's position Verlet, is Hamiltonian: its NVE runs share the kinetic energy
  evenly between in-plane and out-of-plane motion, which the grid decoder alone does not
  (docs/BENCHMARKS.md).
- ``predictor``: one step Δ (one record stride): encode(t) -> step -> decode_atoms; MSE of the
  displacement (units σ_d) and of the new velocity (units σ_v) against frame t+Δ. The atom
  decoder reads each atom's own velocity, so the constant-velocity guess v·Δ is a linear function
  of its input; the loss counts the error against the true motion, the same figure the
  constant-velocity baseline is scored on.
- ``unrolled``: ``unroll`` steps fed back through the atoms (re-voxelized every step, as the
  simulator does); Gaussian input noise of std ``input_noise``·σ_d on positions and
  ``input_noise``·σ_v on velocities at the first step (targets stay the true frames, so the model
  learns to pull drifted states back, GNS-style); loss = mean over the rollout of the predictor's.
  Both report ``onestep_kinetic_ratio``, the kinetic energy of the predicted velocities over the
  true one's after one step (below 1: the prediction is colder than MD).
- ``coarsener_autoencoder`` (coarse level 0: factor k, T steps): the frozen encoder's latents of
  frames 1..T form a window W (B,T,X,Y,Z,D); W -> coarsen -> refine -> R. Loss: MSE(R, W) in
  units of the window's latent variance, plus the predictor's atom loss of decoding each refined
  frame k from the true atoms of frame k−1 (the atom decoder stays frozen). Trains coarsener and
  refiner.
- ``coarse_joint``: windows W_a = frames 1..T and W_b = frames T+1..2T; c' = step_coarse(coarsen(W_a)).
  Loss: latent MSE of c' to coarsen(W_b) (target held fixed), the reconstruction MSE of W_a, and
  the atom loss of decoding refine(c') frame by frame from the true atoms of frame T, each frame's
  atoms fed back (re-voxelized) into the next — what ``simulate --scale 1`` does; with ``unroll``
  > 1 the decoded window is encoded and coarsened again for the next coarse step (loss averaged
  over the steps, gradient through the decoded atoms). Reports the
  position RMSE after the coarse step (T·Δ) and the constant-velocity baseline over the same span.
  Trains coarsener, refiner and the level's environment conv and predictor.
  Both coarse stages may oversample (``oversample``): part of each batch is redrawn from the
  training windows with the highest recent loss
  (:class:`~sagesnet_tf.training.hard_examples.HardExamples`, checkpointed).
- ``uncertainty``: the per-cell head learns the predictor's per-cell loss (mean over the cell's
  atoms of the normalised squared displacement error; 0 for empty cells), model frozen otherwise.
- ``coarse_uncertainty``: level 0's head learns, from the coarse latent, the reconstruction loss of
  its coarse cell (the latent MSE of refine(coarsen(W)) against W over the cell's k blocks × T
  frames, in units of the window's latent variance), everything else frozen.
"""

from __future__ import annotations

import tensorflow as tf

from sagesnet_tf.grid import affine_remap, split_slot_features
from sagesnet_tf.simulator import LearnedSimulator
from sagesnet_tf.training import least_squares
from sagesnet_tf.training.losses import mean_squared
from sagesnet_tf.training.md_batches import atom_masses, cell_sums, cell_targets
from sagesnet_tf.training.md_config import LEAST_SQUARES_KINDS, MDStageConfig
from sagesnet_tf.training.md_data import MDData


class MDStage:
    """One MD stage: the layers it trains and its per-example loss.

    Args:
        cfg: the stage's config entry (``kind``, ``unroll``, ...).
        sim: the :class:`LearnedSimulator` of the model being trained, with the run's ``open_cells``.
        data: the run's :class:`MDData` (loss scales).
    """

    def __init__(self, cfg: MDStageConfig, sim: LearnedSimulator, data: MDData):
        self.cfg, self.sim, self.model, self.data = cfg, sim, sim.model, data

    def trainable_layers(self) -> list:
        """The sublayers of the model whose variables this stage trains."""
        raise NotImplementedError

    def trainable_variables(self) -> list:
        """The variables of :meth:`trainable_layers`, in order."""
        return [v for layer in self.trainable_layers() for v in layer.trainable_variables]

    def loss(self, batch: dict, noise: tf.Tensor | None = None) -> tuple[tf.Tensor, dict]:
        """(per-example loss (B,), dict of per-example metrics (B,), ``loss`` among them) of a batch
        (:meth:`~sagesnet_tf.training.md_batches.MDWindows.batch` as tensors); ``noise`` (B,N,6) the
        unrolled stage's input noise in units of σ_d (positions) and σ_v (velocities), else None."""
        raise NotImplementedError


# --------------------------------------------------------------------------------- autoencoder
def pair_stress_loss(model, state: dict, stress, unit: float) -> tf.Tensor:
    """(B,) MSE of the pair stress's per-cell sums against the MD's, in ``unit`` bar·Å³ (every
    component); ``state`` the batch's atoms_state, ``stress`` (B,N,6) the MD per-atom stress, bar·Å³."""
    grid_shape = tf.shape(state["atom_grid"])[1:4]
    predicted = cell_sums(state["assignment"], model.atom_stress(grid_shape, state), grid_shape)
    return mean_squared(predicted, cell_sums(state["assignment"], stress, grid_shape), unit)


class Autoencoder(MDStage):
    """``autoencoder``: slot reconstruction of the atom grid at t and the per-cell heads."""

    def trainable_layers(self) -> list:
        return [self.model.encoder, self.model.decoder, self.model.heads]

    def loss(self, batch, noise=None):
        model, data = self.model, self.data
        velocities, species, stress = batch["velocities"][:, 0], batch["species"], batch["stress"]
        state = self.sim.atoms_state(batch["positions"][:, 0], velocities, species, batch["box"][:, 0])
        grid = state["atom_grid"]
        z = model.encode(grid)
        dec = model.decode(z)
        target = split_slot_features(grid, len(model.config.elements))
        occ = target["occupancy"]                                                   # (B,X,Y,Z,S)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=occ, logits=dec["occupancy_logits"])
        ce = tf.nn.softmax_cross_entropy_with_logits(labels=target["species_onehot"], logits=dec["element_logits"])
        n_occ = tf.maximum(tf.reduce_sum(occ, [1, 2, 3, 4]), 1.0)

        def masked(err):  # (B,X,Y,Z,S) -> (B,) mean over occupied slots
            return tf.reduce_sum(err * occ, [1, 2, 3, 4]) / n_occ

        offset = masked(tf.reduce_mean(tf.square(dec["offsets"] - target["offsets"]), -1) / (1.0 / 12.0))
        vscale = model.config.velocity_scale / data.sigma_v
        vel = masked(tf.reduce_mean(tf.square((dec["velocities"] - target["velocities"]) * vscale), -1))
        occupancy = tf.reduce_mean(bce, [1, 2, 3, 4])
        element = masked(ce)
        masses = atom_masses(species, model.config.elements)
        cells = cell_targets(state["assignment"], masses, velocities, stress, tf.shape(grid)[1:4])
        props = model.cell_properties(z)
        stress_l = mean_squared(props["stress"], cells["stress"], tf.constant(data.sigma_stress))
        ke_l = mean_squared(props["kinetic_energy"], cells["kinetic_energy"], data.sigma_ke)
        per_ex = occupancy + element + offset + vel + stress_l + ke_l
        metrics = {"occupancy": occupancy, "element": element, "offset": offset, "velocity": vel,
                   "stress": stress_l, "kinetic_energy": ke_l}
        if model.pair_stress is not None:  # reported; fitted by the pair_stress_fit stage
            metrics["pair_stress"] = pair_stress_loss(model, state, stress, data.stress_unit)
        return per_ex, {"loss": per_ex, **metrics}


class Heads(Autoencoder):
    """``heads``: the autoencoder's loss, only the stress and kinetic-energy heads training."""

    def trainable_layers(self) -> list:
        return [self.model.heads]


# ------------------------------------------------------------------------------ least squares
class LeastSquaresStage(MDStage):
    """A stage that sets a pair term's radial weights by linear least squares
    (:data:`~sagesnet_tf.training.md_config.LEAST_SQUARES_KINDS`): each step adds a batch's
    :meth:`equations` to the stage's :class:`~sagesnet_tf.training.least_squares.NormalEquations`,
    the last solves them into :attr:`layer`; no optimizer step."""

    @property
    def layer(self):
        """The pair term this stage fits."""
        return getattr(self.model, LEAST_SQUARES_KINDS[self.cfg.kind])

    def trainable_layers(self) -> list:
        return [self.layer]

    def equations(self, batch: dict) -> tuple[tf.Tensor, tf.Tensor, dict]:
        """(rows (..., F), target (...), per-example metrics (B,)) of one batch."""
        raise NotImplementedError


class PairStressFit(LeastSquaresStage):
    """``pair_stress_fit``: the pair stress's bond tensions against the MD per-cell stresses."""

    def loss(self, batch, noise=None):
        state = self.sim.atoms_state(batch["positions"][:, 0], batch["velocities"][:, 0], batch["species"],
                                     batch["box"][:, 0])
        per_ex = pair_stress_loss(self.model, state, batch["stress"], self.data.stress_unit)
        return per_ex, {"loss": per_ex, "pair_stress": per_ex}

    def equations(self, batch):
        rows, target = least_squares.pair_stress_equations(self.sim, batch, self.data.stress_unit)
        # the current weights' misfit from the same equations (= loss)
        per_ex = mean_squared(tf.linalg.matvec(rows, self.layer.radial().kernel[:, 0]), target)
        return rows, target, {"loss": per_ex, "pair_stress": per_ex}


# ---------------------------------------------------------------------------------- fine steps
def _rmse(a, b):
    """Per-example root mean squared 3-D distance (B,) of atom positions (B,N,3), Å."""
    return tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(a - b), -1), -1))


class Predictor(MDStage):
    """``predictor``: one fine step Δ against frame t+Δ (:meth:`rollout` of one step)."""

    def trainable_layers(self) -> list:
        m = self.model
        dyn = [m.encoder, m.predictor, m.virtual, m.atom_virtual, m.atom_decoder]
        return dyn + [layer for layer in (m.env_conv, m.pair_forces) if layer is not None]

    @property
    def steps(self) -> int:
        """Fine steps per example."""
        return 1

    def loss(self, batch, noise=None):
        return self.rollout(batch, noise)

    def rollout(self, batch: dict, noise=None, first_step: dict | None = None) -> tuple[tf.Tensor, dict]:
        """:attr:`steps` simulator steps from the batch's first frame (each frame's box; the atoms fed
        back, re-voxelized), the mean over them of the displacement and velocity MSE (units σ_d,
        σ_v); ``first_step``: the simulator's step from the first frame when the caller has it."""
        p, v, sp, box, env = (batch["positions"], batch["velocities"], batch["species"], batch["box"], batch["env"])
        d = self.data
        if noise is not None:
            p0, v0 = p[:, 0] + noise[..., :3] * d.sigma_d, v[:, 0] + noise[..., 3:] * d.sigma_v
        else:
            p0, v0 = p[:, 0], v[:, 0]
        steps = self.steps
        masses = atom_masses(sp, self.model.config.elements)[..., None]  # (B,N,1)
        total_pos, total_vel = 0.0, 0.0
        first_rmse = None
        for k in range(1, steps + 1):
            if k == 1 and first_step is not None:
                out = first_step
            else:
                out = self.sim.step(p0, v0, sp, box[:, k - 1], env, next_box=box[:, k])
            total_pos = total_pos + mean_squared(out["positions"], p[:, k], d.sigma_d)
            total_vel = total_vel + mean_squared(out["velocities"], v[:, k], d.sigma_v)
            if first_rmse is None:
                first_rmse = _rmse(out["positions"], p[:, 1])
                # kinetic energy of the predicted velocities over the true one's (1: right temperature)
                kinetic_ratio = tf.reduce_sum(masses * tf.square(out["velocities"]), [1, 2]) / tf.maximum(
                    tf.reduce_sum(masses * tf.square(v[:, 1]), [1, 2]), 1e-6)
            p0, v0 = out["positions"], out["velocities"]
        pos_loss, vel_loss = total_pos / steps, total_vel / steps
        per_ex = pos_loss + vel_loss
        baseline = affine_remap(p[:, 0], box[:, 0], box[:, 1]) + v[:, 0] * self.model.config.delta_ps
        return per_ex, {"loss": per_ex, "position_loss": pos_loss, "velocity_loss": vel_loss,
                        "onestep_kinetic_ratio": kinetic_ratio, "onestep_rmse_A": first_rmse,
                        "const_velocity_rmse_A": _rmse(baseline, p[:, 1])}


class Unrolled(Predictor):
    """``unrolled``: ``unroll`` fine steps fed back through the atoms, input noise on the first."""

    @property
    def steps(self) -> int:
        return self.cfg.unroll


class PairForceFit(LeastSquaresStage, Predictor):
    """``pair_force_fit``: the pair forces' radial magnitudes against the one-step MD velocities;
    reports the predictor's figures."""

    def loss(self, batch, noise=None):
        return self.rollout(batch)

    def equations(self, batch):
        rows, target, first = least_squares.pair_force_equations(self.sim, batch, self.data.sigma_v)
        # the predictor's figures of the same step, as before the fit
        return rows, target, self.rollout(batch, first_step=first)[1]


class LocalEnergyFit(LeastSquaresStage, Predictor):
    """``local_energy_fit``: the local energy's weights against the one-step MD velocities and the MD
    virial; reports the predictor's figures."""

    def loss(self, batch, noise=None):
        return self.rollout(batch)

    def equations(self, batch):
        rows, target, first = least_squares.local_energy_equations(self.sim, batch)
        return rows, target, self.rollout(batch, first_step=first)[1]


class Uncertainty(MDStage):
    """``uncertainty``: the per-cell head learns the predictor's per-cell loss."""

    def trainable_layers(self) -> list:
        return [self.model.uncertainty]

    def loss(self, batch, noise=None):
        p, v, box, env = batch["positions"], batch["velocities"], batch["box"], batch["env"]
        out = self.sim.step(p[:, 0], v[:, 0], batch["species"], box[:, 0], env, next_box=box[:, 1])
        z = out["latent"]
        per_atom = tf.reduce_mean(tf.square((out["positions"] - p[:, 1]) / self.data.sigma_d), -1)  # (B,N)
        b_index = tf.tile(tf.range(tf.shape(per_atom)[0])[:, None, None], [1, tf.shape(per_atom)[1], 1])
        index = tf.concat([b_index, out["state"]["assignment"][..., :3]], -1)
        shape = tf.shape(z)[:4]
        total = tf.scatter_nd(index, per_atom, shape)
        count = tf.scatter_nd(index, tf.ones_like(per_atom), shape)
        target = tf.stop_gradient(tf.math.divide_no_nan(total, count))
        pred = self.sim.cell_uncertainty(tf.stop_gradient(z), env)
        per_ex = mean_squared(pred, target)
        return per_ex, {"loss": per_ex, "mean_target": tf.reduce_mean(target, [1, 2, 3])}


# -------------------------------------------------------------------------------- coarse level 0
def _latent_variance(z):
    """Per-example variance of a latent tensor (B, ...) -> (B, 1, ..., 1), held fixed."""
    axes = list(range(1, z.shape.rank))
    return tf.stop_gradient(tf.math.reduce_variance(z, axis=axes, keepdims=True) + 1e-6)


class CoarseStage(MDStage):
    """A stage of coarse level 0 (constant boxes only; ``train_md`` checks): shared window helpers."""

    def window(self, positions, velocities, species, box, first: int, frozen: bool = True):
        """Encoder latents (B,T,X,Y,Z,D) of frames first..first+T−1 of (B,L,N,3) atoms in ``box``
        (B,3); ``frozen``: no gradient (true frames), else it flows back into predicted atoms."""
        t = self.sim.window_steps
        frames, _ = self.sim.window_latent(positions[:, first:first + t], velocities[:, first:first + t],
                                           species, box)
        return tf.stop_gradient(frames) if frozen else frames

    def reconstruct(self, batch: dict):
        """Window W of frames 1..T, its coarse latent c = coarsen(W) (B,Xc,Yc,Zc,D), R = refine(c)
        and the reconstruction MSE of R against W (B,) in units of the window's latent variance."""
        w = self.window(batch["positions"], batch["velocities"], batch["species"], batch["box"][:, 0], 1)
        coarse = self.model.coarsen(w, 0)
        refined = self.model.refine(coarse, 0)
        return w, coarse, refined, mean_squared(refined, w, tf.sqrt(_latent_variance(w)))

    def frame_errors(self, pred_p, pred_v, true_p, true_v):
        """Mean over the T frames of the position and velocity MSE (B,) (units σ_d, σ_v) of decoded
        atoms (B,T,N,3) against the true ones."""
        steps = pred_p.shape[1]
        pos_l, vel_l = 0.0, 0.0
        for k in range(steps):
            pos_l = pos_l + mean_squared(pred_p[:, k], true_p[:, k], self.data.sigma_d) / steps
            vel_l = vel_l + mean_squared(pred_v[:, k], true_v[:, k], self.data.sigma_v) / steps
        return pos_l, vel_l


class CoarsenerAutoencoder(CoarseStage):
    """``coarsener_autoencoder``: coarsen -> refine a window, and decode each refined frame from the
    true atoms of the frame before."""

    def trainable_layers(self) -> list:
        return [self.model.coarseners[0], self.model.refiners[0]]

    def loss(self, batch, noise=None):
        p, v = batch["positions"], batch["velocities"]
        t = self.sim.window_steps
        _, _, refined, recon = self.reconstruct(batch)
        truth = (p[:, 1:t + 1], v[:, 1:t + 1])
        pred_p, pred_v, _ = self.sim.decode_window(refined, p[:, 0], v[:, 0], batch["species"], batch["box"][:, 0],
                                                   teacher=truth)
        pos_l, vel_l = self.frame_errors(pred_p, pred_v, *truth)
        per_ex = recon + pos_l + vel_l
        return per_ex, {"loss": per_ex, "latent_reconstruction": recon, "position_loss": pos_l,
                        "velocity_loss": vel_l}


class CoarseJoint(CoarseStage):
    """``coarse_joint``: ``unroll`` coarse steps, each decoded frame by frame from the atoms the step
    before decoded (as ``simulate --scale 1``)."""

    def trainable_layers(self) -> list:
        m = self.model
        return [layer for layer in (m.coarseners[0], m.refiners[0], m.coarse_env_convs[0], m.coarse_predictors[0],
                                    m.coarse_virtuals[0]) if layer is not None]

    def loss(self, batch, noise=None):
        p, v, sp, env = batch["positions"], batch["velocities"], batch["species"], batch["env"]
        box = batch["box"][:, 0]
        model, t, unroll = self.model, self.sim.window_steps, self.cfg.unroll
        _, c_cur, _, recon = self.reconstruct(batch)
        latent, pos_l, vel_l, first_rmse = 0.0, 0.0, 0.0, None
        last_p, last_v = p[:, t], v[:, t]  # the atoms each coarse step decodes from
        for j in range(1, unroll + 1):
            c_b = tf.stop_gradient(model.coarsen(self.window(p, v, sp, box, j * t + 1), 0))
            c_next = self.sim.coarse_latent_step(c_cur, env)
            latent += mean_squared(c_next, c_b, tf.sqrt(_latent_variance(c_b))) / unroll
            pred_p, pred_v, _ = self.sim.decode_window(model.refine(c_next, 0), last_p, last_v, sp, box)
            targets = slice(j * t + 1, (j + 1) * t + 1)
            pe, ve = self.frame_errors(pred_p, pred_v, p[:, targets], v[:, targets])
            pos_l, vel_l = pos_l + pe / unroll, vel_l + ve / unroll
            if first_rmse is None:
                first_rmse = _rmse(pred_p[:, -1], p[:, 2 * t])
            if j < unroll:
                c_cur = model.coarsen(self.window(pred_p, pred_v, sp, box, 0, frozen=False), 0)
            last_p, last_v = pred_p[:, -1], pred_v[:, -1]
        per_ex = latent + recon + pos_l + vel_l
        baseline = p[:, t] + v[:, t] * (t * model.config.delta_ps)
        return per_ex, {"loss": per_ex, "coarse_latent": latent, "latent_reconstruction": recon,
                        "position_loss": pos_l, "velocity_loss": vel_l, "coarse_step_rmse_A": first_rmse,
                        "const_velocity_rmse_A": _rmse(baseline, p[:, 2 * t])}


class CoarseUncertainty(CoarseStage):
    """``coarse_uncertainty``: level 0's head learns each coarse cell's reconstruction loss."""

    def trainable_layers(self) -> list:
        return [self.model.coarse_uncertainty[0]]

    def loss(self, batch, noise=None):
        w, coarse, refined, _ = self.reconstruct(batch)
        err = tf.square(refined - w) / _latent_variance(w)                                    # (B,T,X,Y,Z,D)
        k = self.model.config.coarse_levels[0]["factor"]
        per_cell = tf.nn.avg_pool3d(tf.reduce_mean(err, axis=[1, 5])[..., None], k, k, "VALID")[..., 0]
        target = tf.stop_gradient(per_cell)                                                   # (B,Xc,Yc,Zc)
        pred = self.sim.coarse_cell_uncertainty(tf.stop_gradient(coarse), batch["env"])
        per_ex = mean_squared(pred, target)
        return per_ex, {"loss": per_ex, "mean_target": tf.reduce_mean(target, [1, 2, 3])}


#: The stage class of each kind.
MD_STAGES: dict[str, type[MDStage]] = {
    "autoencoder": Autoencoder, "heads": Heads, "pair_stress_fit": PairStressFit, "predictor": Predictor,
    "pair_force_fit": PairForceFit, "local_energy_fit": LocalEnergyFit, "unrolled": Unrolled,
    "coarsener_autoencoder": CoarsenerAutoencoder, "coarse_joint": CoarseJoint, "uncertainty": Uncertainty, "coarse_uncertainty": CoarseUncertainty}


def make_md_stage(cfg: MDStageConfig, sim: LearnedSimulator, data: MDData) -> MDStage:
    """The :class:`MDStage` of a config entry."""
    return MD_STAGES[cfg.kind](cfg, sim, data)
