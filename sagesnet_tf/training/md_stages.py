"""MD training of the atom model (:class:`~sagesnet_tf.model.SagesnetModel`): data, stages and the
staged loop; the held-out evaluation is :mod:`~sagesnet_tf.training.md_evaluation`.

Shapes: B batch, L window frames, N atoms, X/Y/Z cells, S slots, D latent width. Units: LAMMPS
``metal`` (Å, ps, Å/ps, eV, bar). Losses are per example (B,) and unitless: each error is divided
by a dataset statistic (metadata.json ``statistics``, pooled over the training datasets as the
root mean square of their standard deviations): σ_d, the per-axis atom displacement over one
record stride (Å); σ_v, the per-axis velocity (Å/ps); σ_stress, per-atom stress·volume (bar·Å³).

Stages (``kind``), run in file order:

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
  (:class:`NormalEquations`, checkpointed); the last step solves them (ridge
  :data:`LEAST_SQUARES_RIDGE` × the mean diagonal towards the weights the stage started from, so
  radial functions no pair reaches keep their values) and sets the weights. ``learning_rate`` is
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
  training windows with the highest recent loss (:class:`HardWindows`, checkpointed).
- ``uncertainty``: the per-cell head learns the predictor's per-cell loss (mean over the cell's
  atoms of the normalised squared displacement error; 0 for empty cells), model frozen otherwise.
- ``coarse_uncertainty``: level 0's head learns, from the coarse latent, the reconstruction loss of
  its coarse cell (the latent MSE of refine(coarsen(W)) against W over the cell's k blocks × T
  frames, in units of the window's latent variance), everything else frozen.

The config (``kind: md``) is :class:`~sagesnet_tf.training.md_config.MDTrainConfig`.

Run directory: ``config.yaml``, ``checkpoints/``, ``metrics.json`` + ``loss_curves.png`` (E's
:class:`~sagesnet_tf.training.reports.MetricsLog`), ``model.keras`` (trained model),
``model_info.json`` (what an exporter needs: model config, env fields and scales, Δ, pbc,
statistics), ``evaluation.json`` + ``rollout.png`` (held-out figures, see
:func:`~sagesnet_tf.training.md_evaluation.evaluate`).
"""

from __future__ import annotations

import dataclasses
import os
import time

import keras
import numpy as np
import tensorflow as tf
import yaml
from tqdm import tqdm

from sagesnet_tf.atoms import MASSES
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.grid import affine_remap, max_voxel_occupancy, periodic_cells, split_slot_features
from sagesnet_tf.io import atomic_output, write_json
from sagesnet_tf.model import SagesnetModel
from sagesnet_tf.pipelines import reader
from sagesnet_tf.training import md_batches
from sagesnet_tf.training.checkpoints import Checkpointer, RunState
from sagesnet_tf.training.losses import mean_squared
from sagesnet_tf.training.md_config import LEAST_SQUARES_KINDS, MD_COARSE_KINDS, MDStageConfig, MDTrainConfig
from sagesnet_tf.training.md_evaluation import evaluate
from sagesnet_tf.training.reports import MetricsLog
from sagesnet_tf.thermo import MVV2E

# ------------------------------------------------------------------------------------- data
@dataclasses.dataclass
class MDData:
    """Training and validation windows plus the normalisation scales (see module docstring)."""

    train: md_batches.MDWindows
    validation: md_batches.MDWindows
    sigma_d: float
    sigma_v: float
    sigma_stress: np.ndarray
    record_stride: int
    dt_fs: float


def load_md_data(data_dir: str, cfg: MDTrainConfig) -> MDData:
    """Read the datasets, split off validation (the last part of ``validation_dataset``), pool stats."""
    dirs = md_batches.dataset_dirs(data_dir, cfg.data.datasets or None)
    names = [os.path.basename(os.path.normpath(d)) for d in dirs]
    val_name = cfg.data.validation_dataset or names[-1]
    if val_name not in names:
        raise SagesnetError(f"data.validation_dataset {val_name!r} is not among the datasets {names}; pick one of them")
    unknown = sorted(set(cfg.data.dataset_weights) - set(names))
    if unknown:
        raise SagesnetError(f"data.dataset_weights names {unknown[0]!r}, which is not among the datasets {names}; "
                            "fix the name or drop it")
    weights = {name: cfg.data.dataset_weights.get(name, 1.0) for name in names}
    bad = [(n, w) for n, w in weights.items() if isinstance(w, bool) or not isinstance(w, (int, float)) or w <= 0]
    if bad:
        raise SagesnetError(f"data.dataset_weights[{bad[0][0]}] is {bad[0][1]!r}; a weight must be a number > 0")
    length = cfg.window_length
    train_segs, val_segs, stats, strides, dts = [], [], [], set(), set()
    for d, name in zip(dirs, names):
        meta = reader.load_metadata(d)
        if meta.get("kind") != "md":
            raise SagesnetError(f"{d} holds a {meta.get('kind')!r} dataset; MD training needs `generate md` data")
        stats.append(meta["statistics"])
        strides.add(int(meta["record_stride_steps"]))
        dts.add(float(meta["dt_fs"]))
        for traj in reader.read_trajectories(d):
            if name == val_name:
                cut = int(round(cfg.data.validation_from * traj.n_frames))
                if cut >= length:
                    train_segs.append(md_batches.Segment(traj, 0, cut, f"{name}[:{cut}]", weights[name]))
                val_segs.append(md_batches.Segment(traj, cut, traj.n_frames, f"{name}[{cut}:]"))
            else:
                train_segs.append(md_batches.Segment(traj, 0, traj.n_frames, name, weights[name]))
    if len(strides) != 1 or len(dts) != 1:
        raise SagesnetError(f"datasets mix record strides {sorted(strides)} or timesteps {sorted(dts)}; train on one Δ")
    elements = cfg.model_config.elements

    def pooled(key):
        return float(np.sqrt(np.mean([np.mean(np.square(s[key]["std"])) for s in stats])))

    sigma_stress = np.sqrt(np.mean([np.square(s["stress"]["std"]) for s in stats], axis=0))
    mcfg = cfg.model_config

    def grid_cells(lengths):
        return np.asarray(periodic_cells(lengths, mcfg.h, mcfg.grid_multiple)).astype(int)

    pbc = (train_segs or val_segs)[0].trajectory.pbc

    def fits(positions, lengths):
        return max_voxel_occupancy(positions, lengths, pbc, mcfg.h, mcfg.grid_multiple) <= mcfg.slots

    return MDData(md_batches.MDWindows(train_segs, length, elements, grid_cells, fits),
                  md_batches.MDWindows(val_segs, length, elements, grid_cells, fits),
                  pooled("displacements"), pooled("velocities"), np.maximum(sigma_stress, 1.0).astype(np.float32),
                  strides.pop(), dts.pop())


# ----------------------------------------------------------------------------------- stages
def stage_layers(model: SagesnetModel, kind: str) -> list:
    """The sublayers whose variables stage ``kind`` trains."""
    if kind == "autoencoder":
        return [model.encoder, model.decoder, model.heads]
    if kind == "heads":
        return [model.heads]
    if kind in LEAST_SQUARES_KINDS:  # set by least squares (NormalEquations), not by the optimizer
        return [getattr(model, LEAST_SQUARES_KINDS[kind])]
    if kind == "uncertainty":
        return [model.uncertainty]
    if kind == "coarsener_autoencoder":
        return [model.coarseners[0], model.refiners[0]]
    if kind == "coarse_uncertainty":
        return [model.coarse_uncertainty[0]]
    if kind == "coarse_joint":
        return [layer for layer in (model.coarseners[0], model.refiners[0], model.coarse_env_convs[0],
                                    model.coarse_predictors[0], model.coarse_virtuals[0]) if layer is not None]
    dyn = [model.encoder, model.predictor, model.virtual, model.atom_virtual, model.atom_decoder]
    return dyn + [layer for layer in (model.env_conv, model.pair_forces) if layer is not None]


class MDStageRunner:
    """Per-example losses of the MD stages for one model and dataset (see module docstring).

    Args:
        model: a built :class:`SagesnetModel`.
        data: :class:`MDData` (scales, pbc, atom masses).
        open_cells: cells along the open axis every batch is padded to.
    """

    def __init__(self, model: SagesnetModel, data: MDData, open_cells: int):
        self.model, self.data, self.open_cells = model, data, open_cells
        c = model.config
        self.pbc = data.train.pbc
        self.n_el = len(c.elements)
        self.sigma_d, self.sigma_v = data.sigma_d, data.sigma_v
        carbon = MASSES["C"] if "C" in c.elements else MASSES[c.elements[0]]
        kt = 0.5 * carbon * 3 * self.sigma_v ** 2 * MVV2E  # one (carbon) atom's mean kinetic energy
        self.sigma_ke = max(kt, 1e-6)

    def inputs(self, positions, velocities, species, box):
        """atoms_state + atom_grid of a batch (see :func:`md_batches.voxelize_batch`)."""
        c = self.model.config
        return md_batches.voxelize_batch(positions, velocities, species, box, self.pbc, c.h, c.slots,
                                         self.n_el, c.velocity_scale, self.open_cells, c.grid_multiple)

    def one_step(self, positions, velocities, species, box, env, next_box=None):
        """One model step Δ of atoms in ``box`` (B,3) Å: returns (decode_atoms dict, z (B,X,Y,Z,D),
        inputs dict). With ``next_box`` (B,3) the box changes over the step: the atoms are first
        carried to it affinely (``grid.affine_remap``, as ``simulate`` stretches before each step)."""
        if next_box is not None:
            positions, box = affine_remap(positions, box, next_box), next_box
        inp = self.inputs(positions, velocities, species, box)
        z = self.model.encode(inp["atom_grid"])
        out = self.model.decode_atoms(self.model.step(z, env), inp)
        return out, z, inp

    def step_errors(self, out, positions_next, velocities_next):
        """Per-example normalised squared errors (B,) of displacement/position and velocity."""
        pos = mean_squared(out["positions"], positions_next, self.sigma_d)
        vel = mean_squared(out["velocities"], velocities_next, self.sigma_v)
        return pos, vel

    def loss(self, kind: str, batch: dict, noise: tf.Tensor | None, unroll: int = 1, first_step: dict | None = None):
        """(per-example loss (B,), dict of per-example metrics (B,)) of stage ``kind``. ``first_step``:
        the :meth:`one_step` output from the batch's first frame, when the caller already has it (no noise)."""
        p, v, sp, box, env = (batch["positions"], batch["velocities"], batch["species"], batch["box"], batch["env"])
        if kind in ("autoencoder", "heads"):
            return self._autoencoder(p[:, 0], v[:, 0], sp, box[:, 0], batch["stress"])
        if kind == "pair_stress_fit":
            inp = self.inputs(p[:, 0], v[:, 0], sp, box[:, 0])
            per_ex = self.pair_stress_loss(inp, batch["stress"])
            return per_ex, {"loss": per_ex, "pair_stress": per_ex}
        if kind in MD_COARSE_KINDS:  # constant boxes only (train_md checks)
            return self._coarse(kind, p, v, sp, box[:, 0], env, unroll)
        if kind == "uncertainty":
            out, z, inp = self.one_step(p[:, 0], v[:, 0], sp, box[:, 0], env, next_box=box[:, 1])
            per_atom = tf.reduce_mean(tf.square((out["positions"] - p[:, 1]) / self.sigma_d), -1)  # (B,N)
            b_index = tf.tile(tf.range(tf.shape(per_atom)[0])[:, None, None], [1, tf.shape(per_atom)[1], 1])
            index = tf.concat([b_index, inp["assignment"][..., :3]], -1)
            shape = tf.shape(z)[:4]
            total = tf.scatter_nd(index, per_atom, shape)
            count = tf.scatter_nd(index, tf.ones_like(per_atom), shape)
            target = tf.stop_gradient(tf.math.divide_no_nan(total, count))
            pred = self.model.predict_uncertainty(tf.stop_gradient(z), env)
            per_ex = mean_squared(pred, target)
            return per_ex, {"loss": per_ex, "mean_target": tf.reduce_mean(target, [1, 2, 3])}
        if noise is not None:
            p0, v0 = p[:, 0] + noise[..., :3] * self.sigma_d, v[:, 0] + noise[..., 3:] * self.sigma_v
        else:
            p0, v0 = p[:, 0], v[:, 0]
        steps = unroll if kind == "unrolled" else 1
        masses = md_batches.atom_masses(sp, self.model.config.elements)[..., None]  # (B,N,1)
        total_pos, total_vel = 0.0, 0.0
        first_rmse = None
        for k in range(1, steps + 1):
            if k == 1 and first_step is not None:
                out = first_step
            else:
                out, _, _ = self.one_step(p0, v0, sp, box[:, k - 1], env, next_box=box[:, k])
            pos_err, vel_err = self.step_errors(out, p[:, k], v[:, k])
            total_pos, total_vel = total_pos + pos_err, total_vel + vel_err
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

    def latent_window(self, p, v, sp, box, first: int, steps: int, frozen: bool = True):
        """Encoder latents of frames first..first+steps−1: (B,T,X,Y,Z,D); ``frozen``: no gradient
        (true frames), else the gradient flows back into predicted atoms."""
        frames = tf.stack([self.model.encode(self.inputs(p[:, k], v[:, k], sp, box)["atom_grid"])
                           for k in range(first, first + steps)], axis=1)
        return tf.stop_gradient(frames) if frozen else frames

    def decode_window(self, refined, p0, v0, sp, box, targets_p=None, targets_v=None, feed_back=True):
        """Atoms of each frame of ``refined`` (B,T,X,Y,Z,D), decoded one frame after the other
        from the atoms (p0, v0) (B,N,3) of the frame before the window. ``feed_back``: each
        decoded frame's atoms start the next (as in simulation); else the true frame k−1
        (``targets_*`` (B,T,N,3)) does. Returns (decoded positions (B,T,N,3), velocities
        (B,T,N,3), mean position loss (B,), mean velocity loss (B,)); losses are 0 without targets."""
        steps = refined.shape[1]
        pos_l, vel_l, frames_p, frames_v = 0.0, 0.0, [], []
        for k in range(steps):
            out = self.model.decode_atoms(refined[:, k], self.inputs(p0, v0, sp, box))
            frames_p.append(out["positions"])
            frames_v.append(out["velocities"])
            if targets_p is not None:
                pe, ve = self.step_errors(out, targets_p[:, k], targets_v[:, k])
                pos_l, vel_l = pos_l + pe / steps, vel_l + ve / steps
            p0, v0 = (out["positions"], out["velocities"]) if feed_back else (targets_p[:, k], targets_v[:, k])
        return tf.stack(frames_p, axis=1), tf.stack(frames_v, axis=1), pos_l, vel_l

    def _coarse(self, kind, p, v, sp, box, env, unroll: int = 1):
        t = self.model.config.coarse_levels[0]["steps"]
        w_a = self.latent_window(p, v, sp, box, 1, t)
        c_a = self.model.coarsen(w_a, 0)
        refined_a = self.model.refine(c_a, 0)
        recon = mean_squared(refined_a, w_a, tf.sqrt(_latent_variance(w_a)))
        if kind == "coarse_uncertainty":
            err = tf.square(refined_a - w_a) / _latent_variance(w_a)                          # (B,T,X,Y,Z,D)
            k = self.model.config.coarse_levels[0]["factor"]
            per_cell = tf.nn.avg_pool3d(tf.reduce_mean(err, axis=[1, 5])[..., None], k, k, "VALID")[..., 0]
            target = tf.stop_gradient(per_cell)                                               # (B,Xc,Yc,Zc)
            per_ex = mean_squared(self.model.predict_coarsen_uncertainty(tf.stop_gradient(c_a), env, 0), target)
            return per_ex, {"loss": per_ex, "mean_target": tf.reduce_mean(target, [1, 2, 3])}
        if kind == "coarsener_autoencoder":
            _, _, pos_l, vel_l = self.decode_window(refined_a, p[:, 0], v[:, 0], sp, box,
                                                    p[:, 1:t + 1], v[:, 1:t + 1], feed_back=False)
            per_ex = recon + pos_l + vel_l
            return per_ex, {"loss": per_ex, "latent_reconstruction": recon, "position_loss": pos_l,
                            "velocity_loss": vel_l}
        # `unroll` coarse steps, each from the atoms the previous one decoded (as simulate_coarse)
        latent, pos_l, vel_l, c_cur, first_rmse = 0.0, 0.0, 0.0, c_a, None
        last_p, last_v = p[:, t], v[:, t]  # the atoms each coarse step decodes from
        for j in range(1, unroll + 1):
            c_b = tf.stop_gradient(self.model.coarsen(self.latent_window(p, v, sp, box, j * t + 1, t), 0))
            c_next = self.model.step_coarse(c_cur, env, 0)
            latent += mean_squared(c_next, c_b, tf.sqrt(_latent_variance(c_b))) / unroll
            targets = slice(j * t + 1, (j + 1) * t + 1)
            pred_p, pred_v, pe, ve = self.decode_window(self.model.refine(c_next, 0), last_p, last_v, sp, box,
                                                        p[:, targets], v[:, targets])
            pos_l, vel_l = pos_l + pe / unroll, vel_l + ve / unroll
            if first_rmse is None:
                first_rmse = _rmse(pred_p[:, -1], p[:, 2 * t])
            if j < unroll:
                c_cur = self.model.coarsen(self.latent_window(pred_p, pred_v, sp, box, 0, t, frozen=False), 0)
            last_p, last_v = pred_p[:, -1], pred_v[:, -1]
        per_ex = latent + recon + pos_l + vel_l
        span = t * self.model.config.delta_ps
        baseline = p[:, t] + v[:, t] * span
        return per_ex, {"loss": per_ex, "coarse_latent": latent, "latent_reconstruction": recon,
                        "position_loss": pos_l, "velocity_loss": vel_l, "coarse_step_rmse_A": first_rmse,
                        "const_velocity_rmse_A": _rmse(baseline, p[:, 2 * t])}

    def _autoencoder(self, positions, velocities, species, box, stress):
        inp = self.inputs(positions, velocities, species, box)
        grid = inp["atom_grid"]
        z = self.model.encode(grid)
        dec = self.model.decode(z)
        target = split_slot_features(grid, self.n_el)
        occ = target["occupancy"]                                                   # (B,X,Y,Z,S)
        bce = tf.nn.sigmoid_cross_entropy_with_logits(labels=occ, logits=dec["occupancy_logits"])
        ce = tf.nn.softmax_cross_entropy_with_logits(labels=target["species_onehot"], logits=dec["element_logits"])
        n_occ = tf.maximum(tf.reduce_sum(occ, [1, 2, 3, 4]), 1.0)

        def masked(err):  # (B,X,Y,Z,S) -> (B,) mean over occupied slots
            return tf.reduce_sum(err * occ, [1, 2, 3, 4]) / n_occ

        offset = masked(tf.reduce_mean(tf.square(dec["offsets"] - target["offsets"]), -1) / (1.0 / 12.0))
        vscale = self.model.config.velocity_scale / self.sigma_v
        vel = masked(tf.reduce_mean(tf.square((dec["velocities"] - target["velocities"]) * vscale), -1))
        occupancy = tf.reduce_mean(bce, [1, 2, 3, 4])
        element = masked(ce)
        masses = md_batches.atom_masses(species, self.model.config.elements)
        cells = md_batches.cell_targets(inp["assignment"], masses, velocities, stress, tf.shape(grid)[1:4])
        props = self.model.cell_properties(z)
        stress_l = mean_squared(props["stress"], cells["stress"], tf.constant(self.data.sigma_stress))
        ke_l = mean_squared(props["kinetic_energy"], cells["kinetic_energy"], self.sigma_ke)
        per_ex = occupancy + element + offset + vel + stress_l + ke_l
        metrics = {"occupancy": occupancy, "element": element, "offset": offset, "velocity": vel,
                   "stress": stress_l, "kinetic_energy": ke_l}
        if self.model.pair_stress is not None:  # reported; fitted by the pair_stress_fit stage
            metrics["pair_stress"] = self.pair_stress_loss(inp, stress)
        return per_ex, {"loss": per_ex, **metrics}

    @property
    def stress_unit(self) -> float:
        """bar·Å³, one unit for every component of the pair stress: σ_stress pooled over the six
        (per-component units would weight the small out-of-plane components of a sheet ~200 times
        more than xx, and a pair virial cannot follow those: its fit to them spoils xx)."""
        return float(np.sqrt(np.mean(np.square(self.data.sigma_stress))))

    def pair_stress_loss(self, inp, stress):
        """(B,) MSE of the pair stress's per-cell sums against the MD's (units :attr:`stress_unit`);
        ``inp`` the batch's :meth:`inputs`, ``stress`` (B,N,6) the MD per-atom stress, bar·Å³."""
        grid_shape = tf.shape(inp["atom_grid"])[1:4]
        predicted = md_batches.cell_sums(inp["assignment"], self.model.atom_stress(grid_shape, inp), grid_shape)
        target = md_batches.cell_sums(inp["assignment"], stress, grid_shape)
        return mean_squared(predicted, target, self.stress_unit)

    def pair_stress_equations(self, batch):
        """One batch's per-cell least-squares equations for the pair stress weights w (F,):
        ``rows`` (B, X, Y, Z, 6, F) · w ≈ ``target`` (B, X, Y, Z, 6) (empty cells give zero rows), in
        units of :attr:`stress_unit`; the misfit of the current w is :meth:`pair_stress_loss`."""
        inp = self.inputs(batch["positions"][:, 0], batch["velocities"][:, 0], batch["species"], batch["box"][:, 0])
        grid_shape = tf.shape(inp["atom_grid"])[1:4]
        design, kinetic = self.model.pair_stress.design(grid_shape, inp["assignment"], inp["atom_features"],
                                                        inp["spacing"])
        rows = md_batches.cell_sums(inp["assignment"], design, grid_shape) / self.stress_unit         # (B,X,Y,Z,6,F)
        target = md_batches.cell_sums(inp["assignment"], batch["stress"] + kinetic, grid_shape) / self.stress_unit
        return rows, target

    def pair_force_equations(self, batch):
        """One batch's per-atom least-squares equations for the pair force weights w (F,): ``rows``
        (B, N, 3, F) · w ≈ ``target`` (B, N, 3), in units of σ_v: the MD velocity at t+Δ minus the
        model's predicted one without its pair forces (one step, as the ``predictor`` stage); and that
        step's :meth:`one_step` output."""
        p, v, box = batch["positions"], batch["velocities"], batch["box"]
        out, _, inp = self.one_step(p[:, 0], v[:, 0], batch["species"], box[:, 0], batch["env"], next_box=box[:, 1])
        rows = self.model.pair_forces.design(tf.shape(inp["atom_grid"])[1:4], inp["assignment"], inp["atom_features"],
                                             inp["spacing"]) / self.sigma_v
        with_pairs = tf.linalg.matvec(rows, self.model.pair_forces.radial().kernel[:, 0])
        return rows, (v[:, 1] - out["velocities"]) / self.sigma_v + with_pairs, out


#: Windows the oversampling buffer keeps.
HARD_WINDOWS_CAPACITY = 64


class HardWindows(tf.Module):
    """The training windows with the highest recent per-example loss, for a stage's ``oversample``
    (checkpointed, so a resumed run draws the same batches): global window index (C,) int64, its
    time-reversal flag (C,) bool and loss (C,) float32; empty slots have loss −inf."""

    def __init__(self, capacity: int):
        super().__init__(name="hard_windows")
        self.index = tf.Variable(tf.zeros(capacity, tf.int64), trainable=False, name="index")
        self.reverse = tf.Variable(tf.zeros(capacity, tf.bool), trainable=False, name="reverse")
        self.loss = tf.Variable(tf.fill([capacity], float("-inf")), trainable=False, name="loss")

    def mix(self, windows: md_batches.MDWindows, picks: np.ndarray, reverse: np.ndarray, fraction: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Replace the first round(fraction·B) of a drawn batch (picks (B,), reverse (B,)) by buffered
        windows of the same structure group (fewer while the buffer holds fewer)."""
        index, loss = self.index.numpy(), self.loss.numpy()
        candidates = np.flatnonzero(np.isfinite(loss) & windows.same_group(int(picks[0]), index))
        n = min(int(round(fraction * len(picks))), len(candidates))
        if n == 0:
            return picks, reverse
        chosen = candidates[rng.integers(0, len(candidates), size=n)]
        return (np.concatenate([index[chosen], picks[n:]]),
                np.concatenate([self.reverse.numpy()[chosen], reverse[n:]]))

    def update(self, picks: np.ndarray, reverse: np.ndarray, losses: np.ndarray) -> None:
        """Merge a trained batch's windows and losses (B,): a window already held takes its new loss;
        the ``capacity`` highest losses stay."""
        held = {(i, r): l for i, r, l in zip(self.index.numpy().tolist(), self.reverse.numpy().tolist(),
                                             self.loss.numpy().tolist()) if np.isfinite(l)}
        held.update(zip(zip(np.asarray(picks).tolist(), np.asarray(reverse).tolist()), np.asarray(losses).tolist()))
        best = sorted(((l, k) for k, l in held.items()), reverse=True)[:int(self.loss.shape[0])]
        pad = int(self.loss.shape[0]) - len(best)
        self.index.assign(np.array([k[0] for _, k in best] + [0] * pad, np.int64))
        self.reverse.assign(np.array([k[1] for _, k in best] + [False] * pad, bool))
        self.loss.assign(np.array([l for l, _ in best] + [-np.inf] * pad, np.float32))


#: Ridge of the least-squares stages, relative to the mean diagonal of the normal equations.
LEAST_SQUARES_RIDGE = 1e-4


class NormalEquations(tf.Module):
    """Normal equations of a least-squares stage (:data:`LEAST_SQUARES_KINDS`), summed over its
    batches (checkpointed, so a resumed stage continues the same sums): Gram matrix (F, F) and
    moment (F,), float64."""

    def __init__(self, n_features: int, name: str):
        super().__init__(name=name)
        self.gram = tf.Variable(tf.zeros([n_features, n_features], tf.float64), trainable=False, name="gram")
        self.moment = tf.Variable(tf.zeros([n_features], tf.float64), trainable=False, name="moment")

    def reset(self) -> None:
        self.gram.assign(tf.zeros_like(self.gram))
        self.moment.assign(tf.zeros_like(self.moment))

    def add(self, rows, target) -> None:
        """rows (R, F), target (R,): add RᵀR and Rᵀy."""
        rows, target = tf.cast(rows, tf.float64), tf.cast(target, tf.float64)
        self.gram.assign_add(tf.matmul(rows, rows, transpose_a=True))
        self.moment.assign_add(tf.linalg.matvec(rows, target, transpose_a=True))

    def solve(self, prior) -> np.ndarray:
        """(F,) float32 least-squares weights, ridge LEAST_SQUARES_RIDGE × mean diagonal towards
        ``prior`` (F,) (weights no equation reaches stay there)."""
        gram = self.gram.numpy()
        ridge = LEAST_SQUARES_RIDGE * max(float(np.mean(np.diag(gram))), 1e-30)
        rhs = self.moment.numpy() + ridge * np.asarray(prior, np.float64)
        return np.linalg.solve(gram + ridge * np.eye(len(gram)), rhs).astype(np.float32)


def _latent_variance(z):
    """Per-example variance of a latent tensor (B, ...) -> (B, 1, ..., 1), held fixed."""
    axes = list(range(1, z.shape.rank))
    return tf.stop_gradient(tf.math.reduce_variance(z, axis=axes, keepdims=True) + 1e-6)


def _rmse(a, b):
    """Per-example root mean squared 3-D distance (B,) of atom positions (B,N,3), Å."""
    return tf.sqrt(tf.reduce_mean(tf.reduce_sum(tf.square(a - b), -1), -1))


def initialise_from_run(model: SagesnetModel, run_dir: str) -> int:
    """Copy into ``model`` every variable of ``RUN/model.keras`` with the same path (below the model's
    own name) and shape; returns how many were copied (at least one, else a SagesnetError). A model
    that splits its pair forces into bonded and other pairs (``pair_bond_neighbours``) where the
    run's did not starts both radial functions as the run's one."""
    path = os.path.join(run_dir, "model.keras")
    if not os.path.isfile(path):
        raise SagesnetError(f"init_from: {path} does not exist; point init_from at a finished training run directory")
    source = keras.models.load_model(path)

    def key(variable, owner):
        return variable.path.removeprefix(owner.name + "/")

    by_key = {key(v, source): v for v in source.variables}
    copied = 0
    split = (model.pair_forces is not None and model.config.pair_bond_neighbours
             and source.pair_forces is not None and not source.config.pair_bond_neighbours)
    for v in model.variables:
        match = by_key.get(key(v, model))
        if split and match is not None and match is source.pair_forces.magnitude.kernel:
            v.assign(model.pair_forces.split_kernel(match.numpy()))
            copied += 1
        elif match is not None and tuple(match.shape) == tuple(v.shape):
            v.assign(match.value)
            copied += 1
    if copied == 0:
        raise SagesnetError(f"init_from: no variable of {path} matches this model; use a run of the same architecture")
    return copied


def _to_tensors(batch: dict) -> dict:
    return {k: tf.constant(v) for k, v in batch.items()}


# ------------------------------------------------------------------------------------- loop
def _stage_functions(runner: MDStageRunner, s: MDStageConfig, opt, variables, fit: NormalEquations | None = None):
    """tf.functions (train_step(batch, noise), eval_step(batch)) of stage ``s``; both return batch means
    (train_step also the per-example loss). For a least-squares stage (:data:`LEAST_SQUARES_KINDS`)
    the train step adds the batch to ``fit``'s normal equations instead of taking an optimizer step."""

    if s.kind in LEAST_SQUARES_KINDS:
        @tf.function(reduce_retracing=True)
        def accumulate_step(batch, noise):
            if s.kind == "pair_force_fit":
                rows, target, out = runner.pair_force_equations(batch)
                # the predictor's figures of the same step, as before the fit
                metrics = runner.loss(s.kind, batch, None, first_step=out)[1]
            else:
                rows, target = runner.pair_stress_equations(batch)
                # the current weights' misfit from the same equations (= runner.pair_stress_loss)
                per_ex = mean_squared(tf.linalg.matvec(rows, runner.model.pair_stress.radial().kernel[:, 0]), target)
                metrics = {"loss": per_ex, "pair_stress": per_ex}
            n_features = tf.shape(rows)[-1]
            fit.add(tf.reshape(rows, [-1, n_features]), tf.reshape(target, [-1]))
            return {k: tf.reduce_mean(v) for k, v in metrics.items()}, metrics["loss"]

    @tf.function(reduce_retracing=True)
    def train_step(batch, noise):
        """(batch means of the metrics, per-example loss (B,))."""
        with tf.GradientTape() as tape:
            per_ex, mets = runner.loss(s.kind, batch, noise, s.unroll)
            loss = tf.reduce_mean(per_ex)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return {k: tf.reduce_mean(v) for k, v in mets.items()}, per_ex

    @tf.function(reduce_retracing=True)
    def eval_step(batch):
        return {k: tf.reduce_mean(v) for k, v in runner.loss(s.kind, batch, None, s.unroll)[1].items()}

    return (accumulate_step if s.kind in LEAST_SQUARES_KINDS else train_step), eval_step


def train_md(cfg: MDTrainConfig, data_dir: str, run_dir: str, resume: bool = False, progress: bool = True) -> dict:
    """Run the MD stages of ``cfg`` on ``data_dir``, write the run dir and the held-out evaluation.

    Returns the metrics dict (``metrics.json`` content; ``summary`` holds the evaluation figures).
    """
    data = load_md_data(data_dir, cfg)
    mcfg = cfg.model_config
    if mcfg.delta_steps != data.record_stride or abs(mcfg.md_dt_fs - data.dt_fs) > 1e-9:
        raise SagesnetError(f"model.delta_steps {mcfg.delta_steps} / md_dt_fs {mcfg.md_dt_fs} differ from the data's "
                            f"record stride {data.record_stride} / dt {data.dt_fs} fs; set them equal (Δ = one record)")
    expected = tuple("periodic" if p else "open" for p in data.train.pbc)
    if tuple(mcfg.boundary) != expected:
        raise SagesnetError(f"model.boundary {list(mcfg.boundary)} does not match the data's pbc; use {list(expected)}")
    if tuple(mcfg.env_fields) != data.train.env_fields:
        raise SagesnetError(f"model.env_fields must be the data's {list(data.train.env_fields)}")
    changing = [seg.name for seg, c in zip(data.train.segments, data.train.changing_box) if c]
    if changing and any(s.kind in MD_COARSE_KINDS for s in cfg.stages):
        raise SagesnetError(f"coarse stages train on constant boxes, but {changing[0]} changes its box (tension/NPT); "
                            "leave such datasets out of data.datasets of the coarse run")
    held_out_changing = [seg.name for seg, c in zip(data.validation.segments, data.validation.changing_box) if c]
    if held_out_changing:
        raise SagesnetError(f"the held-out {held_out_changing[0]} changes its box, but the held-out evaluation rolls "
                            "out a constant box; set data.validation_dataset to an NVT/NVE dataset")
    left_out = {name: n for name, n in {**data.train.overfull, **data.validation.overfull}.items() if n}
    if left_out and progress:
        tqdm.write(f"left out {sum(left_out.values())} windows with more than {mcfg.slots} atoms in a voxel (broken, "
                   f"crowded frames): {', '.join(f'{name} {n}' for name, n in left_out.items())}")
    os.makedirs(run_dir, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    model = SagesnetModel(mcfg)
    model.build()
    if cfg.init_from:
        initialise_from_run(model, cfg.init_from)
    open_cells = max(data.train.open_axis_cells(mcfg.h), data.validation.open_axis_cells(mcfg.h))
    open_cells = -(-open_cells // max(mcfg.grid_multiple)) * max(mcfg.grid_multiple)
    runner = MDStageRunner(model, data, open_cells)
    optimizers, stage_variables = {}, {}
    for s in cfg.stages:
        schedule = keras.optimizers.schedules.ExponentialDecay(
            s.learning_rate, s.steps, s.final_learning_rate / s.learning_rate)
        stage_variables[s.name] = [v for layer in stage_layers(model, s.kind) for v in layer.trainable_variables]
        optimizers[s.name] = keras.optimizers.Adam(schedule)
        optimizers[s.name].build(stage_variables[s.name])  # built before a restore, so its moments restore too
    state = RunState()
    # the oversampling buffer is checkpointed only by runs that use it (older checkpoints lack it)
    hard = HardWindows(HARD_WINDOWS_CAPACITY) if any(s.oversample > 0 for s in cfg.stages) else None
    fits = {kind: NormalEquations(getattr(model, layer).grid_pairs.n_features, kind)
            for kind, layer in LEAST_SQUARES_KINDS.items() if any(s.kind == kind for s in cfg.stages)}
    extra = {name: obj for name, obj in (("hard_windows", hard), *fits.items()) if obj is not None}
    checkpointer = Checkpointer(os.path.join(run_dir, "checkpoints"), cfg.checkpoint.keep, state,
                                model=model, optimizers=optimizers, **extra)
    metrics = MetricsLog(run_dir, cfg.name, [s.name for s in cfg.stages])
    restored = checkpointer.restore_latest() if resume else None
    if restored:
        metrics.load(int(state.step.numpy()))
        tqdm.write(f"resumed from {restored} at step {int(state.step.numpy())}")
    with atomic_output(os.path.join(run_dir, "config.yaml")) as fh:
        yaml.safe_dump({**dataclasses.asdict(cfg), "model": mcfg.to_dict()}, fh, sort_keys=False)

    val_batches = [_to_tensors(data.validation.sample(np.random.default_rng([cfg.seed, 999_999, j]), cfg.data.batch_size))
                   for j in range(cfg.validation.batches)]
    total = sum(s.steps for s in cfg.stages)
    bar = tqdm(total=total, initial=int(state.step.numpy()), disable=not progress, unit="step")
    start = time.time()
    for index, s in enumerate(cfg.stages):
        if index < int(state.stage_index.numpy()):
            continue
        fit = fits.get(s.kind)
        train_step, eval_step = _stage_functions(runner, s, optimizers[s.name], stage_variables[s.name], fit)
        bar.set_description(f"{cfg.name}:{s.name}")
        if fit is not None and int(state.stage_step.numpy()) == 0:
            fit.reset()
        while int(state.stage_step.numpy()) < s.steps:
            step = int(state.step.numpy())
            rng = np.random.default_rng([cfg.seed, step])
            picks, reverse = data.train.draw(rng, cfg.data.batch_size, cfg.data.time_reversal)
            if s.oversample > 0:
                picks, reverse = hard.mix(data.train, picks, reverse, s.oversample, rng)
            batch = data.train.batch(picks, reverse)
            if cfg.data.random_shift:
                batch = md_batches.shift_windows(batch, rng, data.train.pbc)
            if cfg.data.random_mirror:
                batch = md_batches.mirror_windows(batch, rng, data.train.pbc)
            batch = _to_tensors(batch)
            noise = None
            if s.kind == "unrolled" and s.input_noise > 0:
                noise = tf.constant(rng.normal(0.0, s.input_noise, (cfg.data.batch_size, batch["positions"].shape[2], 6)),
                                    tf.float32)
            means, per_example = train_step(batch, noise)
            if s.oversample > 0:
                hard.update(picks, reverse, per_example.numpy())
            state.step.assign_add(1)
            state.stage_step.assign_add(1)
            step, stage_step = step + 1, int(state.stage_step.numpy())
            bar.update(1)
            last = stage_step == s.steps
            if last and fit is not None:
                kernel = getattr(model, LEAST_SQUARES_KINDS[s.kind]).radial().kernel
                kernel.assign(fit.solve(kernel.numpy()[:, 0])[:, None])
            if step % cfg.log_every == 0 or last:
                values = {k: float(v) for k, v in means.items()}
                metrics.record(s.name, step, stage_step, "train", values)
                bar.set_postfix(loss=f"{values['loss']:.3g}")
            if step % cfg.validation.every_steps == 0 or last:
                vals = [eval_step(b) for b in val_batches]
                metrics.record(s.name, step, stage_step, "validation",
                               {k: float(np.mean([v[k] for v in vals])) for k in vals[0]})
                metrics.write()
            if last:
                state.stage_index.assign_add(1)
                state.stage_step.assign(0)
            if step % cfg.checkpoint.every_steps == 0 or last:
                metrics.write()  # before the checkpoint: a resumed run trims rows past it, leaving no gap
                checkpointer.save()
            if last:
                break
    bar.close()
    model.save(os.path.join(run_dir, "model.keras.tmp.keras"))
    os.replace(os.path.join(run_dir, "model.keras.tmp.keras"), os.path.join(run_dir, "model.keras"))
    write_json(os.path.join(run_dir, "model_info.json"), {
        "model_config": mcfg.to_dict(), "env_fields": list(mcfg.env_fields),
        "env_scales": {f: md_batches.ENV_SCALES.get(f, 1.0) for f in mcfg.env_fields},
        "delta_ps": mcfg.delta_ps, "pbc": data.train.pbc.tolist(), "open_axis_cells": open_cells,
        "statistics": {"sigma_displacement_A": data.sigma_d, "sigma_velocity_A_per_ps": data.sigma_v,
                       "sigma_stress_bar_A3": data.sigma_stress.tolist()}})
    figures = evaluate(runner, data.validation, cfg.evaluation, run_dir, progress,
                       coarse_trained=any(s.kind == "coarse_joint" for s in cfg.stages))
    metrics.summarize(wall_seconds_last_session=round(time.time() - start, 1), total_steps=total, evaluation=figures,
                      windows_left_out_overfull=left_out)
    metrics.write()
    return metrics.data
