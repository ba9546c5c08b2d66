"""Export a :class:`~sagesnet_tf.model.SagesnetModel` as a SavedModel in TF Serving layout.

``exported_models/NAME/VERSION/{saved_model.pb, variables/, assets/sagesnet_metadata.json}``.
Loading needs TensorFlow alone (``tf.saved_model.load``, TF Serving). Signatures, called by
keyword (N atoms, E environment fields, D latent width, B batch, T window steps)::

    serving_default(positions (N,3) f32 Å, velocities (N,3) f32 Å/ps, species (N,) i32,
                    box_lengths (3,) f32 Å, box_origin (3,) f32 Å, pbc (3,) bool,
                    env (E,) f32 raw physical values (normalised in the graph),
                    n_steps () i32 ≥ 0, strain_rate_per_ps () f32, axis () i32 in {0,1,2})
        -> positions (N,3) Å (unwrapped), velocities (N,3) Å/ps, box_lengths (3,) Å,
           box_origin (3,) Å, uncertainty (N,) predicted one-step loss of each atom's cell,
           stress (6,) bar·Å³ the structure's stress × volume (−P·V, xx,yy,zz,xy,xz,yz: the atoms'
           pair stress summed when the model has ``pair_stress``, else the local energy's when it
           has one, else the latent head's per-cell stress summed), atom_virial (N,3) bar·Å³ the diagonal virial (xx,yy,zz) split over the
           atoms (Σ_atoms atom_virial − Σ_atoms m v_a v_a = stress[:3]: with ``pair_stress`` each
           atom's pair stress without its kinetic part, with the local energy the strain
           derivatives of the pairs whose first atom it is; zeros when the stress is the latent
           head's, which has no per-atom split; a group of atoms without pairs to the others, as a
           ribbon of a stack, has its own virial as its atoms' sum), strain () engineering
           strain of this call along ``axis`` (box length / input box length − 1)
    simulate_mirror_average(the inputs of serving_default) -> its outputs, but every step Δ is
        the mean of the step of the atoms and the mirrored step of their mirror image through the
        box's mid-plane along each open axis (exactly mirror-symmetric dynamics, twice the cost)
    encode(positions, velocities, species, box_lengths, box_origin, pbc)
        -> latent (1,X,Y,Z,D), assignment (N,4) i32, grid_origin (3,) Å, spacing (3,) Å
    step(latent (B,X,Y,Z,D), env (B,E) raw) -> latent (B,X,Y,Z,D), uncertainty (B,X,Y,Z)
    decode(latent (B,X,Y,Z,D)) -> occupancy_logits, element_logits, offsets, velocities (slots),
                                  stress (B,X,Y,Z,6) bar·Å³, kinetic_energy (B,X,Y,Z) eV
    coarsen(window (B,T,X,Y,Z,D)) -> coarse (B,Xc,Yc,Zc,D)          (coarse level 0)
    refine(coarse (B,Xc,Yc,Zc,D)) -> window (B,T,X,Y,Z,D)
    simulate_coarse(window_positions (T,N,3), window_velocities (T,N,3), species, box_lengths,
                    box_origin, pbc, env, n_steps () coarse steps of T·Δ, strain_rate_per_ps, axis)
        -> as serving_default, but positions/velocities (T,N,3): the last T frames (Δ apart), and
           uncertainty (N,) the predicted reconstruction loss of each atom's coarse cell, and stress
           that of the last frame (no atom_virial)
    metadata() -> metadata: JSON string (same as the asset file)

Each step Δ of ``serving_default`` applies the affine tension first (box and atom coordinates
along ``axis`` scaled about the box origin so that the box grows by input_length·rate·Δ, as
LAMMPS ``fix deform … remap x``), then re-voxelizes, encodes, steps and decodes the atoms
(atoms stay explicit); a model without atom decoder (``atom_decoder: false``) steps by its local
energy alone, with no atom grid, encoding or latent step but on a call's last step (its
readouts), and keeps the energy's neighbour list from step to step while it holds
(:meth:`LearnedSimulator.energy_neighbours`). The signatures only validate their inputs and call
:class:`~sagesnet_tf.simulator.LearnedSimulator`, the one place a step is defined; the raw env is
normalised there by the model's ``config.env_scales`` (metadata ``env_std``, ``env_mean`` 0).
All inputs are validated in the graph: a bad request raises InvalidArgumentError, never crashes
the server. Bounds of one call (metadata ``limits``):
``n_steps`` ≤ :data:`MAX_STEPS_PER_CALL` fine steps, |``strain_rate_per_ps``| ≤
:data:`MAX_CALL_STRAIN_RATE_PER_PS`, at most :data:`MAX_GRID_CELLS` grid cells, ``pbc`` equal to the
model's ``boundary`` (periodic ↔ True).

Dtypes are fixed by the signatures and cannot be checked in the graph: a Python caller of a
loaded signature passing NumPy arrays or lists has them cast by ``tf.convert_to_tensor`` before
the graph runs (float64 → float32 rounded; a float → int32 truncated, so species 0.9 becomes 0);
a ``tf.Tensor`` of another dtype, or a missing argument, raises TypeError in Python; a gRPC
TensorProto of another dtype is refused by TF Serving. docs/SERVING.md spells this out.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import keras
import tensorflow as tf

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.model import SagesnetConfig, SagesnetModel
from sagesnet_tf.savedmodel import (EXPORT_SCHEMA_VERSION, MAX_CALL_STRAIN_RATE_PER_PS, MAX_GRID_CELLS,
                                    MAX_STEPS_PER_CALL, read_metadata, serving_limits, write_savedmodel)
from sagesnet_tf.simulator import MAX_ESCAPE_FRACTION, LearnedSimulator

def _spec(dtype):
    """Fully unknown shape: the shape is checked inside the graph (InvalidArgument, not a crash)."""
    return tf.TensorSpec(None, dtype)


def build_metadata(config: SagesnetConfig, run_info: dict | None = None) -> dict:
    """Metadata stored with the model: elements, h, slots, Δ, scales, env fields and their
    normalisation (``env_mean`` 0 and ``env_std`` the config's ``env_scales``: what the
    simulator divides the raw env by), the model config and the training run."""
    return {
        "schema_version": EXPORT_SCHEMA_VERSION,
        "kind": "md",
        "limits": serving_limits(),
        "units": {"length": "Å", "time": "ps", "velocity": "Å/ps", "stress": "bar·Å³ (stress × volume, summed)",
                  "energy": "eV", "temperature": "K"},
        "elements": list(config.elements),
        "h": config.h, "slots": config.slots,
        "delta_ps": config.delta_ps, "delta_steps": config.delta_steps, "md_dt_fs": config.md_dt_fs,
        "coarse_levels": [{"factor": list(l["factor"]), "steps": l["steps"]} for l in config.coarse_levels],
        "boundary": list(config.boundary),
        "env_fields": list(config.env_fields), "env_mean": [0.0] * len(config.env_fields),
        "env_std": list(config.env_scales),
        "model_config": config.to_dict(),
        "training_run": run_info or {},
    }


#: Inputs of the simulate signatures: positions/window, velocities/window, species, box_lengths,
#: box_origin, pbc, env, n_steps, strain_rate_per_ps, axis.
_SIMULATE_INPUTS = [_spec(tf.float32), _spec(tf.float32), _spec(tf.int32), _spec(tf.float32), _spec(tf.float32),
                    _spec(tf.bool), _spec(tf.float32), _spec(tf.int32), _spec(tf.float32), _spec(tf.int32)]


class SagesnetServing(tf.Module):
    """The exported module: a SagesnetModel plus its metadata, with the signatures above.

    Every signature validates its inputs (serving's contract: shapes, values, ``limits``) and then
    calls :attr:`simulator` (a :class:`~sagesnet_tf.simulator.LearnedSimulator` with the escape
    guard on) for the step itself, on a batch of one structure."""

    def __init__(self, model: SagesnetModel, metadata: dict):
        super().__init__(name="sagesnet_serving")
        self.model = model
        self.simulator = LearnedSimulator(model, check_escape=True)
        c = model.config
        self._n_el = len(c.elements)
        self._n_env = len(c.env_fields)
        self._delta_ps = float(c.delta_ps)
        self._periodic = tf.constant(self.simulator.pbc)
        self._boundary_text = ", ".join(c.boundary)
        self._metadata_json = tf.constant(json.dumps(metadata, ensure_ascii=False))

    # ---- validation -------------------------------------------------------------------------
    def _check_atoms(self, positions, velocities, species, box_lengths, box_origin, pbc):
        """In-graph checks (shapes, equal N, finite values, species in range, ``pbc`` equal to the
        model's boundary, no atom escaped along an open axis); returns the inputs with static
        shapes fixed."""
        positions = tf.ensure_shape(positions, [None, 3], name="positions_must_be_N_by_3")
        velocities = tf.ensure_shape(velocities, [None, 3], name="velocities_must_be_N_by_3")
        species = tf.ensure_shape(species, [None], name="species_must_be_N")
        box_lengths = tf.ensure_shape(box_lengths, [3], name="box_lengths_must_be_3")
        box_origin = tf.ensure_shape(box_origin, [3], name="box_origin_must_be_3")
        pbc = tf.ensure_shape(pbc, [3], name="pbc_must_be_3")
        n = tf.shape(positions)[0]
        checks = [
            tf.debugging.assert_positive(n, message="positions: no atoms"),
            tf.debugging.assert_equal(tf.shape(velocities)[0], n, message="velocities and positions differ in N"),
            tf.debugging.assert_equal(tf.shape(species)[0], n, message="species and positions differ in N"),
            tf.debugging.assert_non_negative(species, message="species: negative element index"),
            tf.debugging.assert_less(species, self._n_el, message=f"species: unknown element (index >= {self._n_el})"),
            tf.debugging.assert_all_finite(positions, "positions: NaN or Inf"),
            tf.debugging.assert_all_finite(velocities, "velocities: NaN or Inf"),
            tf.debugging.assert_all_finite(box_origin, "box_origin: NaN or Inf"),
            tf.debugging.assert_all_finite(box_lengths, "box_lengths: NaN or Inf"),
            tf.debugging.assert_positive(box_lengths, message="box_lengths must be > 0"),
            tf.debugging.assert_equal(pbc, self._periodic,
                                      message=f"pbc must match the boundary of the model ({self._boundary_text}): "
                                              "True on periodic axes, False on open ones"),
        ]
        with tf.control_dependencies(checks):
            positions = self.simulator.check_positions(positions[None], box_lengths[None], box_origin[None])[0]
            return (positions, tf.identity(velocities), tf.identity(species),
                    tf.identity(box_lengths), tf.identity(box_origin), tf.identity(pbc))

    def _check_grid_size(self, box_lengths, pbc):
        """InvalidArgument when the atom grid of a box (3,) Å would exceed ``MAX_GRID_CELLS`` cells
        (along an open axis counted over the box and both escape margins)."""
        extent = tf.where(pbc, box_lengths, box_lengths * (1.0 + 2.0 * MAX_ESCAPE_FRACTION))
        cells = tf.reduce_prod(tf.math.ceil(extent / self.model.config.h) + 2.0)
        return tf.debugging.assert_less_equal(
            cells, float(MAX_GRID_CELLS),
            message=f"the box needs more than {MAX_GRID_CELLS} grid cells (max_grid_cells); split the structure")

    def _check_env(self, env):
        """env (B,E) raw, checked finite (the simulator normalises it)."""
        env = tf.ensure_shape(env, [None, self._n_env], name=f"env_must_have_{self._n_env}_fields")
        with tf.control_dependencies([tf.debugging.assert_all_finite(env, "env: NaN or Inf")]):
            return tf.identity(env)

    def _check_latent(self, latent, rank=5):
        latent = tf.ensure_shape(latent, [None] * (rank - 1) + [self.model.config.latent_dim],
                                 name=f"latent_must_be_rank_{rank}_with_D_last")
        checks = [tf.debugging.assert_all_finite(latent, "latent: NaN or Inf"),
                  tf.debugging.assert_positive(tf.shape(latent), message="latent: empty (a dimension is 0)"),
                  tf.debugging.assert_less_equal(tf.reduce_prod(tf.shape(latent)[1:-1]), MAX_GRID_CELLS,
                                                 message=f"latent: more than {MAX_GRID_CELLS} grid cells")]
        with tf.control_dependencies(checks):
            return tf.identity(latent)

    def _tension_inputs(self, n_steps, strain_rate_per_ps, axis, box_lengths, pbc, steps_per_call_step=1):
        """Validated (n_steps, axis one-hot (3,), growth (3,) Å per Δ) of a simulate call whose
        ``n_steps`` each span ``steps_per_call_step`` Δ; the grid is checked at the call's largest box."""
        n_steps = tf.ensure_shape(n_steps, [], name="n_steps_must_be_scalar")
        rate = tf.ensure_shape(strain_rate_per_ps, [], name="strain_rate_must_be_scalar")
        axis = tf.ensure_shape(axis, [], name="axis_must_be_scalar")
        max_steps = MAX_STEPS_PER_CALL // steps_per_call_step
        checks = [
            tf.debugging.assert_non_negative(n_steps, message="n_steps must be >= 0"),
            tf.debugging.assert_less_equal(n_steps, max_steps,
                                           message=f"n_steps must be <= {max_steps} per call (max_steps_per_call "
                                                   f"{MAX_STEPS_PER_CALL} fine steps); split the run into calls"),
            tf.debugging.assert_all_finite(rate, "strain_rate_per_ps: NaN or Inf"),
            tf.debugging.assert_less_equal(tf.abs(rate), MAX_CALL_STRAIN_RATE_PER_PS,
                                           message=f"|strain_rate_per_ps| must be <= {MAX_CALL_STRAIN_RATE_PER_PS:g} "
                                                   "(max_strain_rate_per_ps)"),
            tf.debugging.assert_non_negative(axis, message="axis must be 0, 1 or 2"),
            tf.debugging.assert_less(axis, 3, message="axis must be 0, 1 or 2"),
        ]
        with tf.control_dependencies(checks):
            axis_mask = tf.one_hot(axis, 3, dtype=tf.float32)
        growth = box_lengths * axis_mask * rate * self._delta_ps
        total = growth * tf.cast(n_steps * steps_per_call_step, tf.float32)
        checks = [tf.debugging.assert_greater(box_lengths + total, 0.5 * box_lengths,
                                              message="strain_rate_per_ps × n_steps would shrink the box below "
                                                      "half its length in one call"),
                  self._check_grid_size(box_lengths + tf.maximum(total, 0.0), pbc)]
        with tf.control_dependencies(checks):
            return tf.identity(n_steps), axis_mask, tf.identity(growth)

    # ---- the simulate signatures -------------------------------------------------------------
    @tf.function(input_signature=_SIMULATE_INPUTS)
    def simulate(self, positions, velocities, species, box_lengths, box_origin, pbc, env, n_steps,
                 strain_rate_per_ps, axis):
        return self._simulate(positions, velocities, species, box_lengths, box_origin, pbc, env, n_steps,
                              strain_rate_per_ps, axis, mirror_average=False)

    @tf.function(input_signature=_SIMULATE_INPUTS)
    def simulate_mirror_average(self, positions, velocities, species, box_lengths, box_origin, pbc, env, n_steps,
                                strain_rate_per_ps, axis):
        return self._simulate(positions, velocities, species, box_lengths, box_origin, pbc, env, n_steps,
                              strain_rate_per_ps, axis, mirror_average=True)

    def _simulate(self, positions, velocities, species, box_lengths, box_origin, pbc, env, n_steps,
                  strain_rate_per_ps, axis, mirror_average: bool):
        """``n_steps`` steps of :meth:`LearnedSimulator.step` (the body of both simulate signatures,
        see the module docstring); the box grows by ``growth`` every step (``next_box``)."""
        positions, velocities, species, box_lengths, box_origin, pbc = self._check_atoms(
            positions, velocities, species, box_lengths, box_origin, pbc)
        env = self._check_env(tf.ensure_shape(env, [self._n_env], name=f"env_must_have_{self._n_env}_fields")[None])
        n_steps, axis_mask, growth = self._tension_inputs(n_steps, strain_rate_per_ps, axis, box_lengths, pbc)
        sim, species_b, origin_b = self.simulator, species[None], box_origin[None]
        n = tf.shape(positions)[0]
        # a model without atom decoder steps by its local energy alone, keeping the energy's
        # neighbour list from step to step while it holds (LearnedSimulator.energy_neighbours)
        keep_list = self.model.atom_decoder is None and not mirror_average

        def advance(pos, vel, box, neighbours, readouts):
            """One Δ of one structure: (box (3,), positions (N,3), velocities (N,3), the neighbour
            list to keep ({} if none)) and, with ``readouts``, the per-atom uncertainty (N,), the
            stress (6,) and the per-atom virial (N,3) (the heads run only on the step whose
            readouts are returned, and a model without atom decoder encodes only there)."""
            out = sim.step(pos[None], vel[None], species_b, box[None], env, origin_b, next_box=(box + growth)[None],
                           mirror_average=mirror_average, latents=False, neighbours=neighbours or None)
            stepped = (out["box"][0], out["positions"][0], out["velocities"][0], out.get("neighbours", {}))
            if not readouts:
                return stepped
            unc, stress, atom_virial = sim.readouts(out, env, origin_b)
            return (*stepped[:3], unc[0], stress[0], atom_virial[0])

        def body(i, pos, vel, box, neighbours):
            box, pos, vel, neighbours = advance(pos, vel, box, neighbours, readouts=False)
            return i + 1, pos, vel, box, neighbours

        neighbours = (sim.energy_neighbours(positions[None], velocities[None], species_b, box_lengths[None], origin_b)
                      if keep_list else {})
        loop_vars = (tf.constant(0), positions, velocities, box_lengths, neighbours)
        # n_steps − 1 steps without the heads, then the last one with them
        _, pos, vel, box, neighbours = tf.while_loop(
            lambda i, *_: i < n_steps - 1, body, loop_vars,
            shape_invariants=(*(t.shape for t in loop_vars[:4]),
                              tf.nest.map_structure(lambda t: tf.TensorShape(None) if t.shape.rank == 0
                                                    else tf.TensorShape([None] + t.shape[1:]), neighbours)))
        box, pos, vel, unc, stress, atom_virial = tf.cond(
            n_steps > 0, lambda: advance(pos, vel, box, neighbours, readouts=True),
            lambda: (box, pos, vel, tf.zeros([n]), tf.zeros([6]), tf.zeros([n, 3])))
        strain = tf.reduce_sum((box / box_lengths - 1.0) * axis_mask)
        return {"positions": pos, "velocities": vel, "box_lengths": box, "box_origin": box_origin,
                "uncertainty": unc, "stress": stress, "atom_virial": atom_virial, "strain": strain}

    @tf.function(input_signature=_SIMULATE_INPUTS)
    def simulate_coarse(self, window_positions, window_velocities, species, box_lengths, box_origin, pbc, env,
                        n_steps, strain_rate_per_ps, axis):
        """``n_steps`` steps of coarse level 0 (each T·Δ) from a window of T atom frames.

        Each coarse step encodes the window's T frames (:meth:`LearnedSimulator.window_latent`,
        their grids padded alike with spare cells), coarsens them into one coarse latent, advances
        and refines it into T fine latents (:meth:`LearnedSimulator.coarse_step`) and decodes the
        atoms from them one frame after the other (:meth:`LearnedSimulator.decode_window`, each
        frame's atoms re-voxelized to read the next), with the affine tension applied every Δ as
        in ``serving_default``: the loop closes through the atoms every coarse step, as the
        ``coarse_joint`` stage trained it. Returns the last T frames (they start the next call);
        per atom, ``uncertainty`` is the predicted reconstruction loss of its coarse cell for the
        returned window (the coarse level's uncertainty head); ``stress`` is that of the window's
        last frame (from its atoms with ``pair_stress``, else from its refined latent). Within a
        coarse step the decoded frames keep the window's grid (cell counts) while their box is
        stretched.
        """
        if not self.model.config.coarse_levels:
            return {"positions": self._no_coarse_levels(window_positions)}
        sim = self.simulator
        steps = sim.window_steps
        pos_w = tf.ensure_shape(window_positions, [steps, None, 3], name=f"window_positions_must_be_{steps}_by_N_by_3")
        vel_w = tf.ensure_shape(window_velocities, [steps, None, 3], name=f"window_velocities_must_be_{steps}_by_N_by_3")
        frames = [self._check_atoms(pos_w[k], vel_w[k], species, box_lengths, box_origin, pbc) for k in range(steps)]
        _, _, species, box_lengths, box_origin, pbc = frames[-1]
        pos_w, vel_w = tf.stack([f[0] for f in frames]), tf.stack([f[1] for f in frames])
        env = self._check_env(tf.ensure_shape(env, [self._n_env], name=f"env_must_have_{self._n_env}_fields")[None])
        n_steps, axis_mask, growth = self._tension_inputs(n_steps, strain_rate_per_ps, axis, box_lengths, pbc,
                                                          steps_per_call_step=steps)
        species_b, origin_b = species[None], box_origin[None]

        def coarse_latent(pos_w, vel_w, box):
            """Coarse latent (1,Xc,Yc,Zc,D) of the T frames (T,N,3) and the open-axis cells used (3,)."""
            latents, open_cells = sim.window_latent(pos_w[None], vel_w[None], species_b, box[None], origin_b,
                                                    spare_cells=True)
            return self.model.coarsen(latents, 0), open_cells

        def body(i, pos_w, vel_w, box):
            coarse, open_cells = coarse_latent(pos_w, vel_w, box)
            # decoded on the window's grid, padded like its latents (fails if the sheet outgrew them)
            pos, vel, box = sim.decode_window(sim.coarse_step(coarse, env), pos_w[-1][None], vel_w[-1][None], species_b,
                                              box[None], origin_b, growth=growth[None], open_cells=open_cells)
            return i + 1, pos[0], vel[0], box[0]

        _, pos_w, vel_w, box = tf.while_loop(lambda i, *_: i < n_steps, body, (tf.constant(0), pos_w, vel_w, box_lengths))
        coarse, _ = coarse_latent(pos_w, vel_w, box)
        last = sim.atoms_state(pos_w[-1][None], vel_w[-1][None], species_b, box[None], origin_b)
        unc = sim.coarse_atom_uncertainty(coarse, env, last)[0]
        stress = sim.stress(self.model.refine(coarse, 0)[:, -1], pos_w[-1][None], vel_w[-1][None], species_b, box[None],
                            origin_b)[0]
        strain = tf.reduce_sum((box / box_lengths - 1.0) * axis_mask)
        return {"positions": pos_w, "velocities": vel_w, "box_lengths": box, "box_origin": box_origin,
                "uncertainty": unc, "stress": stress, "strain": strain}

    # ---- the latent signatures ---------------------------------------------------------------
    @tf.function(input_signature=[_spec(tf.float32), _spec(tf.float32), _spec(tf.int32), _spec(tf.float32),
                                  _spec(tf.float32), _spec(tf.bool)])
    def encode(self, positions, velocities, species, box_lengths, box_origin, pbc):
        positions, velocities, species, box_lengths, box_origin, pbc = self._check_atoms(
            positions, velocities, species, box_lengths, box_origin, pbc)
        with tf.control_dependencies([self._check_grid_size(box_lengths, pbc)]):
            state = self.simulator.atoms_state(positions[None], velocities[None], species[None], box_lengths[None],
                                               box_origin[None])
        return {"latent": self.model.encode(state["atom_grid"]), "assignment": state["assignment"][0],
                "grid_origin": state["grid_origin"][0], "spacing": state["spacing"][0]}

    @tf.function(input_signature=[_spec(tf.float32), _spec(tf.float32)])
    def step(self, latent, env):
        latent = self._check_latent(latent)
        env = self._check_env(env)
        with tf.control_dependencies([tf.debugging.assert_equal(
                tf.shape(env)[0], tf.shape(latent)[0], message="env and latent differ in batch size")]):
            env = tf.identity(env)
        return {"latent": self.simulator.latent_step(latent, env),
                "uncertainty": self.simulator.cell_uncertainty(latent, env)}

    @tf.function(input_signature=[_spec(tf.float32)])
    def decode(self, latent):
        latent = self._check_latent(latent)
        out = dict(self.model.decode(latent))
        out.update(self.model.cell_properties(latent))
        return out

    @staticmethod
    def _no_coarse_levels(tensor):
        """Traced only for models without coarse levels (the signature is not exported then)."""
        with tf.control_dependencies([tf.debugging.Assert(False, ["this model has no coarse levels"])]):
            return tf.identity(tensor)

    @tf.function(input_signature=[_spec(tf.float32)])
    def coarsen(self, window):
        window = self._check_latent(window, rank=6)
        if not self.model.config.coarse_levels:
            return {"coarse": self._no_coarse_levels(window)}
        level = self.model.config.coarse_levels[0]
        k = tf.constant(level["factor"], tf.int32)
        shape = tf.shape(window)
        checks = [
            tf.debugging.assert_equal(shape[1], level["steps"], message=f"window must hold T={level['steps']} steps"),
            tf.debugging.assert_equal(shape[2:5] % k, tf.zeros(3, tf.int32),
                                      message=f"grid dims must be multiples of the coarsening factor {level['factor']}"),
        ]
        with tf.control_dependencies(checks):
            return {"coarse": self.model.coarsen(tf.identity(window), 0)}

    @tf.function(input_signature=[_spec(tf.float32)])
    def refine(self, coarse):
        if not self.model.config.coarse_levels:
            return {"window": self._no_coarse_levels(coarse)}
        return {"window": self.model.refine(self._check_latent(coarse), 0)}

    @tf.function(input_signature=[])
    def metadata(self):
        return {"metadata": self._metadata_json}


#: The model file a finished ``sagesnet-tf train`` run of the atom model leaves in its run
#: directory (:func:`sagesnet_tf.training.md_trainer.train_md`); ``export --run RUN`` exports exactly
#: this file.
RUN_MODEL_FILE = "model.keras"


def load_model_source(source) -> tuple[SagesnetModel, dict]:
    """A SagesnetModel and run info from an in-memory model, a ``.keras`` file, or a training
    run directory (its :data:`RUN_MODEL_FILE`). ``run_info["model_file"]`` names the file
    exported. The model is self-contained: its config carries the environment scales."""
    if isinstance(source, SagesnetModel):
        return source, {}
    path = Path(source)
    if path.is_dir():
        model_file, run_info = path / RUN_MODEL_FILE, {"run_dir": str(path.resolve())}
        if not model_file.is_file():
            raise SagesnetError(f"export: run directory {path} has no {RUN_MODEL_FILE} (written when an atom-model "
                                "`sagesnet-tf train` run finishes) and is not a cellular-automaton run (config.yaml "
                                "+ checkpoints/); pass a finished run directory or a .keras file")
    elif path.suffix == ".keras" and path.is_file():
        model_file, run_info = path, {}
    else:
        raise SagesnetError(f"export: {path} is neither a training run directory nor a .keras file")
    try:
        model = keras.models.load_model(model_file)
    except (ValueError, OSError, TypeError, KeyError) as err:
        raise SagesnetError(f"export: cannot load {model_file} ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                            "pass a .keras file written by `sagesnet-tf train`") from None
    if not isinstance(model, SagesnetModel):
        raise SagesnetError(f"export: {model_file} holds a {type(model).__name__}, not a SagesnetModel")
    run_info["model_file"] = str(model_file.resolve())
    return model, run_info


def model_from_savedmodel(model_dir: str | os.PathLike) -> tuple[SagesnetModel, dict]:
    """(SagesnetModel, metadata) rebuilt from an exported atom model (NAME/VERSION): the model
    from the metadata's ``model_config`` with ``env_scales`` its ``env_std`` (the normalisation
    the SavedModel applied; a nonzero ``env_mean`` is refused), every variable assigned from the
    SavedModel's variables checkpoint, matched by variable path (the Keras ``Variable.path``, saved as its TensorFlow
    name, below the model's own name, which Keras numbers per process) and shape. Raises
    SagesnetError unless every variable of each side is matched once."""
    from tensorflow.core.protobuf import trackable_object_graph_pb2

    model_dir = Path(model_dir)
    try:
        metadata = read_metadata(model_dir)
        reader = tf.train.load_checkpoint(str(model_dir / "variables" / "variables"))
    except (OSError, ValueError, tf.errors.OpError) as err:
        raise SagesnetError(f"export: {model_dir} is not an exported SAGESnet SavedModel "
                            f"({str(err).splitlines()[0] if str(err) else type(err).__name__})") from None
    if metadata.get("kind", "md") != "md":
        raise SagesnetError(f"export: {model_dir} holds a {metadata['kind']!r} model; --from-savedmodel re-exports "
                            "atom models")
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    saved = {a.full_name: a.checkpoint_key for node in graph.nodes for a in node.attributes
             if a.name == "VARIABLE_VALUE"}
    if any(float(m) != 0.0 for m in metadata["env_mean"]):
        raise SagesnetError(f"export: {model_dir} normalises env with a nonzero env_mean {metadata['env_mean']}; "
                            "a model's env normalisation is a scale only (config env_scales)")
    model = SagesnetModel(SagesnetConfig.from_dict({**metadata["model_config"], "env_scales": metadata["env_std"]}))
    model.build()

    def below(path, root):
        return path[len(root) + 1:] if path.startswith(root + "/") else path

    ours = {below(v.path, model.name): v for v in model.variables}
    root = max({n.split("/")[0] for n in saved}, key=lambda r: len(ours.keys() & {below(n, r) for n in saved}))
    theirs = {below(n, root): key for n, key in saved.items()}
    missing, extra = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if missing or extra or len(ours) != len(model.variables) or len(theirs) != len(saved):
        raise SagesnetError(f"export: the variables of {model_dir} do not match its model_config "
                            f"({len(missing)} missing, e.g. {missing[:2]}; {len(extra)} unexpected, e.g. {extra[:2]})")
    for path, variable in ours.items():
        value = reader.get_tensor(theirs[path])
        if tuple(value.shape) != tuple(variable.shape):
            raise SagesnetError(f"export: variable {variable.path} has shape {value.shape} in {model_dir}, "
                                f"{tuple(variable.shape)} in its model_config")
        variable.assign(value)
    return model, metadata


def export_model(source, out: str | os.PathLike, version: int | None = None) -> Path:
    """Write ``out/VERSION`` (TF Serving layout) atomically; returns that directory.

    ``source``: SagesnetModel, ``.keras`` file or training run dir (see :func:`load_model_source`;
    a cellular-automaton run dir is exported by :func:`sagesnet_tf.ca_serving.export_ca_run`).
    The raw env values are normalised by the model's own ``config.env_scales``.
    """
    if not isinstance(source, SagesnetModel):
        from sagesnet_tf import ca_serving

        if ca_serving.is_ca_run(source):
            return ca_serving.export_ca_run(source, out, version)
    model, run_info = load_model_source(source)
    return _export_atom_model(model, build_metadata(model.config, run_info), out, version)


def reexport_savedmodel(model_dir: str | os.PathLike, out: str | os.PathLike, version: int | None = None) -> Path:
    """Export again an exported atom model (with this version's signatures and checks) from its
    SavedModel alone: same variables and env normalisation (:func:`model_from_savedmodel`), the
    old ``training_run`` kept and ``reexported_from`` added to it."""
    model, old = model_from_savedmodel(model_dir)
    run_info = dict(old.get("training_run", {}), reexported_from=str(model_dir))
    metadata = build_metadata(model.config, run_info)
    return _export_atom_model(model, metadata, out, version)


def _export_atom_model(model: SagesnetModel, metadata: dict, out, version) -> Path:
    if not model.built:
        model.build()
    module = SagesnetServing(model, metadata)
    signatures = {"serving_default": module.simulate, "simulate_mirror_average": module.simulate_mirror_average,
                  "encode": module.encode, "step": module.step,
                  "decode": module.decode, "metadata": module.metadata}
    if model.config.coarse_levels:
        signatures.update(coarsen=module.coarsen, refine=module.refine, simulate_coarse=module.simulate_coarse)
    return write_savedmodel(module, signatures, metadata, out, version)
