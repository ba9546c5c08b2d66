"""The learned simulator: SAGESnet's step, defined once for training, simulation and serving.

:class:`LearnedSimulator` wraps a built :class:`~sagesnet_tf.model.SagesnetModel` and owns the
path from atoms to atoms at every scale, as DeepMind's learning_to_simulate ``LearnedSimulator``
does for particles::

    preprocess   atoms (positions, velocities, species, box) -> atom grid, atoms_state  (voxelize)
                 raw environment -> model input                                  (normalise_env)
    core         encode -> environment conv + latent step (fine), or
                 coarsen a window of T frames -> coarse step -> refine (coarse level 0)
    postprocess  decode the atoms from the new latent grid (grid decoder + pair forces and/or the
                 local energy's forces at the step's midpoint: a position-Verlet step),
                 readouts: per-atom uncertainty, stress × volume and its per-atom diagonal virial

A model without atom decoder (``atom_decoder: false``) reads no latent in its step: with
``latents=False`` :meth:`LearnedSimulator.step` is the local energy's position-Verlet step alone
(no atom grid, no core), its neighbour list kept between steps while it holds
(:meth:`LearnedSimulator.energy_neighbours`).

The training losses (:mod:`sagesnet_tf.training.md_losses`) and the exported SavedModel's
signatures (:mod:`sagesnet_tf.export`, which ``simulate``, ``evaluate`` and the benchmarks call)
call these methods; nothing else composes encode/step/decode into a step.

Shapes: B batch (static), T frames of a coarse window, N atoms, X/Y/Z cells, S slots, F slot
features, D latent width, E environment fields. Units: LAMMPS ``metal`` (Å, ps, Å/ps, bar·Å³).
Every method is made of core TensorFlow ops (it traces into a SavedModel) and takes batched
tensors; ``box`` (B,3) Å are orthorhombic box lengths with lower corner ``box_origin`` (B,3) Å
(default 0). The environment is given raw, in the units of the model's ``env_fields``.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from sagesnet_tf.grid import affine_remap, pad_open_axes, slot_grid, voxel_slots
from sagesnet_tf.model import SagesnetModel

#: Å, the skin of the local energy's neighbour list in a run of steps (:meth:`LearnedSimulator.energy_neighbours`):
#: the list holds the pairs within the cutoff + this and is rebuilt (among its candidates, or by a new search)
#: only once the atoms have moved (or the box stretched) by up to this much; 0.3 Å keeps a 300 K graphene sheet's
#: list ~5 steps of 2 fs, and adds no second neighbours (2.46 Å) to a 2.0-Å list of bonds.
NEIGHBOUR_SKIN = 0.3

#: Atoms further outside the box than this fraction of its length along a non-periodic axis stop a
#: step of a simulator built with ``check_escape`` (InvalidArgument): the rollout has diverged,
#: and the open-axis grid would grow without bound.
MAX_ESCAPE_FRACTION = 0.5


class LearnedSimulator:
    """One step at each scale of a :class:`SagesnetModel` (see module docstring).

    Args:
        model: a built :class:`SagesnetModel`.
        open_cells: None, or cells every atom grid is padded to along the open axes (int or (3,)),
            so that grids of a batch whose extents differ stack (training); None leaves each grid
            as tight as its atoms (a batch of one structure, as in serving).
        check_escape: every step first checks that no atom left the box along an open axis by more
            than :data:`MAX_ESCAPE_FRACTION` of its length and that positions are finite
            (InvalidArgument otherwise; serving turns a diverged rollout into an error this way).
    """

    def __init__(self, model: SagesnetModel, open_cells=None, check_escape: bool = False):
        self.model = model
        self.config = model.config
        #: (3,) bool, the grid's periodic axes (``boundary`` periodic or tiled).
        self.pbc = np.array([b != "open" for b in model.config.boundary])
        self.open_cells = open_cells
        self.check_escape = check_escape
        self._n_elements = len(model.config.elements)
        self._env_scale = tf.constant(model.config.env_scales, tf.float32)

    @property
    def delta_ps(self) -> float:
        """Δ, one fine step, ps."""
        return self.config.delta_ps

    @property
    def window_steps(self) -> int:
        """T, the fine steps one step of coarse level 0 spans (its window of frames)."""
        return self.config.coarse_levels[0]["steps"]

    # ---- preprocessing ---------------------------------------------------------------------
    def normalise_env(self, env):
        """Raw environment (..., E), units of ``env_fields`` -> the model's input (..., E): divided
        by the config's ``env_scales`` (saved with the model)."""
        return tf.cast(env, tf.float32) / self._env_scale

    def atoms_state(self, positions, velocities, species, box, box_origin=None, periodic_counts=None,
                    open_cells=None, atom_grid: bool = True) -> dict[str, tf.Tensor]:
        """Voxelize each structure of a batch and stack (differentiable in the offsets).

        Args:
            positions: (B,N,3) Å (unwrapped is fine: periodic axes wrap). velocities: (B,N,3) Å/ps.
            species: (B,N) int. box: (B,3) Å. box_origin: (B,3) Å or None (0).
            periodic_counts: None, or (3,) int cells along the periodic axes instead of the box's
                own (:func:`~sagesnet_tf.grid.voxelize`: a grid kept while its box stretches).
            open_cells: padding along the open axes, default the simulator's ``open_cells``.
            atom_grid: False leaves out the dense atom grid (:func:`~sagesnet_tf.grid.voxel_slots`:
                enough for the pair terms and the local energy, nothing to encode; its size grows
                with the box's volume).

        Returns:
            dict ``atom_grid`` (B,X,Y,Z,S,F) (with ``atom_grid``), ``assignment`` (B,N,4) int32,
            ``atom_features`` (B,N,F), ``positions`` (B,N,3), ``velocities`` (B,N,3), ``species``
            (B,N) int32, ``box`` (B,3) Å, ``spacing`` (B,3) Å, ``grid_shape`` (3,) int32: the
            ``atoms_state`` of :meth:`SagesnetModel.decode_atoms`; and ``grid_origin`` (B,3) Å, the
            lower corner of each grid.
        """
        c = self.config
        open_cells = self.open_cells if open_cells is None else open_cells
        placed = []
        for b in range(positions.shape[0]):
            origin = tf.zeros(3) if box_origin is None else box_origin[b]
            placed.append(voxel_slots(positions[b], velocities[b], species[b], box[b], origin, self.pbc, c.h, c.slots,
                                      self._n_elements, c.velocity_scale, multiple=c.grid_multiple,
                                      periodic_counts=periodic_counts))
        state = {"assignment": tf.stack([p.assignment for p in placed]),
                 "atom_features": tf.stack([p.atom_features for p in placed]),
                 "positions": tf.cast(positions, tf.float32), "velocities": tf.cast(velocities, tf.float32),
                 "species": tf.cast(species, tf.int32), "box": tf.cast(box, tf.float32),
                 "spacing": tf.stack([p.spacing for p in placed]), "grid_origin": tf.stack([p.origin for p in placed])}
        if atom_grid:
            grids = [slot_grid(p, c.slots) for p in placed]
            if open_cells is not None:
                grids = [pad_open_axes(g, self.pbc, open_cells) for g in grids]
            state["atom_grid"] = tf.stack(grids)
            state["grid_shape"] = tf.shape(state["atom_grid"])[1:4]
        else:  # the grid the atom grid would have: the largest of the batch, open axes padded to open_cells
            dims = tf.reduce_max(tf.stack([p.dims for p in placed]), axis=0)
            state["grid_shape"] = dims if open_cells is None else tf.where(self.pbc, dims, open_cells)
        return state

    def check_positions(self, positions, box, box_origin=None):
        """positions (B,N,3) Å, unchanged; with ``check_escape`` InvalidArgument when they are
        NaN/Inf or atoms left the box (B,3) Å along an open axis by more than
        :data:`MAX_ESCAPE_FRACTION` of its length. Every step runs it first."""
        if not self.check_escape:
            return positions
        positions = tf.debugging.assert_all_finite(positions, "positions: NaN or Inf (the rollout diverged)")
        origin = tf.zeros_like(box) if box_origin is None else box_origin
        margin = MAX_ESCAPE_FRACTION * box
        escaped = tf.logical_and(tf.logical_not(self.pbc), tf.logical_or(
            tf.reduce_min(positions, axis=1) < origin - margin,
            tf.reduce_max(positions, axis=1) > origin + box + margin))
        check = tf.debugging.assert_equal(
            tf.reduce_any(escaped), False,
            message=f"atoms left the box along a non-periodic axis by more than {MAX_ESCAPE_FRACTION:g} of its length")
        with tf.control_dependencies([check]):
            return tf.identity(positions)

    # ---- the fine step ---------------------------------------------------------------------
    def step(self, positions, velocities, species, box, env, box_origin=None, next_box=None,
             mirror_average: bool = False, latents: bool = True, neighbours=None) -> dict[str, tf.Tensor]:
        """One step Δ of the atoms.

        With ``next_box`` (B,3) Å the box changes over the step: the atoms are first carried to it
        affinely about ``box_origin`` (LAMMPS ``fix deform … remap x``), then stepped in it.
        ``mirror_average``: the step is the mean of this one and the mirrored step of the atoms'
        mirror image through the box's mid-plane along each open axis (exactly mirror-symmetric
        dynamics, twice the cost; the readouts are those of the unmirrored step).

        A model without atom decoder (``atom_decoder: false``) reads no latent: with ``latents``
        False its step is the local energy's alone (no atom grid, encoding or latent step), and with
        ``neighbours`` (the ``neighbours`` of the step before, or of :meth:`energy_neighbours`) the
        energy's neighbour list is kept while it holds (:meth:`energy_neighbours`). Other models
        ignore both.

        Returns:
            dict ``positions`` (B,N,3) Å (unwrapped), ``velocities`` (B,N,3) Å/ps, ``displacement``
            (B,N,3) Å, ``species`` (B,N), ``state`` (the atoms_state the step read, in the box it
            stepped in), ``box`` (B,3) Å; unless the step skipped them, ``latent`` z(t)
            (B,X,Y,Z,D) and ``latent_next`` z(t+Δ); with ``neighbours``, the list used
            (``neighbours``).
        """
        if next_box is not None:
            positions, box = affine_remap(positions, box, next_box, 0.0 if box_origin is None else box_origin[:, None]), next_box
        positions = self.check_positions(positions, box, box_origin)
        energy_only = self.model.atom_decoder is None
        if energy_only and neighbours is not None:
            neighbours = self.energy_neighbours(positions, velocities, species, box, box_origin, neighbours)
            state = {"positions": tf.cast(positions, tf.float32), "velocities": tf.cast(velocities, tf.float32),
                     "species": tf.cast(species, tf.int32), "box": tf.cast(box, tf.float32),
                     "energy_neighbours": neighbours}
        else:
            state = self.atoms_state(positions, velocities, species, box, box_origin,
                                     atom_grid=latents or not energy_only)
        out, readouts = {}, {}
        if latents or not energy_only:
            if "atom_grid" not in state:
                state.update(self.atoms_state(positions, velocities, species, box, box_origin))
            readouts["latent"] = self.model.encode(state["atom_grid"])
            readouts["latent_next"] = self.latent_step(readouts["latent"], env)
        out.update(self.model.decode_atoms(readouts.get("latent_next"), state))
        if mirror_average:
            # x -> flip·x + shift is the mirror through the box's mid-plane along each open axis
            flip = tf.where(self.pbc, 1.0, -1.0)
            origin = tf.zeros_like(box) if box_origin is None else box_origin
            shift = tf.where(self.pbc, 0.0, 2.0 * origin + box)[:, None]
            mirrored = self.step(positions * flip + shift, velocities * flip, species, box, env, box_origin,
                                 latents=False)
            out["positions"] = 0.5 * (out["positions"] + (mirrored["positions"] - shift) * flip)
            out["velocities"] = 0.5 * (out["velocities"] + mirrored["velocities"] * flip)
        if neighbours is not None and energy_only:
            out["neighbours"] = neighbours
        return {**out, **readouts, "state": state, "box": box}

    def energy_neighbours(self, positions, velocities, species, box, box_origin=None, neighbours=None) -> dict:
        """The local energy's neighbour list for a step of the atoms (B,N,3) Å, (B,N,3) Å/ps,
        species (B,N), in boxes (B,3) Å: ``neighbours`` (a list this method returned for an earlier
        step) while it still holds at this step's midpoint
        (:meth:`~sagesnet_tf.layers.LocalEnergy.neighbour_list_holds`), else a new list with a skin
        of :data:`NEIGHBOUR_SKIN` on the atoms' voxels without the dense grid: measured among the
        old list's candidates while they hold, else searched (the list's two levels, see
        :meth:`~sagesnet_tf.layers.LocalEnergy.neighbour_list`; without ``neighbours``
        :meth:`~sagesnet_tf.model.SagesnetModel.energy_neighbours`). Either way the forces are
        those of a search at every step."""
        def rebuild(candidates=None):
            state = self.atoms_state(positions, velocities, species, box, box_origin, atom_grid=False)
            return self.model.energy_neighbours(state, NEIGHBOUR_SKIN, candidates)

        if neighbours is None:
            return rebuild()
        midpoint = self.model.midpoint(tf.cast(positions, tf.float32), tf.cast(velocities, tf.float32))
        holds = self.model.local_energy.neighbour_list_holds(neighbours, midpoint, tf.cast(box, tf.float32))
        return tf.cond(holds, lambda: neighbours, lambda: rebuild(neighbours["candidates"]))

    def latent_step(self, z, env):
        """The core of :meth:`step`: latent grid z(t) (B,X,Y,Z,D), raw env (B,E) -> z(t+Δ)."""
        return self.model.step(z, self.normalise_env(env))

    # ---- readouts --------------------------------------------------------------------------
    def readouts(self, out, env, box_origin=None) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """The readouts of a :meth:`step`'s output ``out``, raw env (B,E): the per-atom uncertainty
        (B,N) from the z(t) the step read (encoded here from the atoms it stepped when it skipped
        the latents), and the stress (B,6) bar·Å³ and per-atom diagonal virial (B,N,3) bar·Å³ of the
        atoms after it (:meth:`virials`)."""
        state = out["state"]
        if "latent" in out:
            latent = out["latent"]
        else:
            state = self.atoms_state(state["positions"], state["velocities"], state["species"], out["box"], box_origin)
            latent = self.model.encode(state["atom_grid"])
        virials = self.virials(out.get("latent_next"), out["positions"], out["velocities"], out["species"], out["box"],
                               box_origin)
        return self.atom_uncertainty(latent, env, state), virials["stress"], virials["atom_virial"]

    def cell_uncertainty(self, latent, env):
        """(B,X,Y,Z) the predicted one-step loss of each cell of the latent grid (B,X,Y,Z,D), raw
        env (B,E)."""
        return self.model.predict_uncertainty(latent, self.normalise_env(env))

    def atom_uncertainty(self, latent, env, state):
        """(B,N) the predicted one-step loss of each atom's cell, from the latent grid z(t)
        (B,X,Y,Z,D) the step read and its ``state``."""
        return tf.gather_nd(self.cell_uncertainty(latent, env), state["assignment"][..., :3], batch_dims=1)

    def stress(self, latent, positions, velocities, species, box, box_origin=None):
        """(B,6) bar·Å³, each structure's stress × volume (−P·V; xx,yy,zz,xy,xz,yz) of its atoms
        (re-voxelized): the pair stress when the model has ``pair_stress``, else the local energy's
        (:meth:`~sagesnet_tf.model.SagesnetModel.energy_stress`) when it has one (``latent`` unread:
        None is fine), else the latent head's per-cell stress of ``latent`` (B,X,Y,Z,D) summed."""
        return self.virials(latent, positions, velocities, species, box, box_origin)["stress"]

    def virials(self, latent, positions, velocities, species, box, box_origin=None) -> dict[str, tf.Tensor]:
        """The :meth:`stress` (B,6) bar·Å³ (``stress``) and its diagonal virial split over the atoms,
        ``atom_virial`` (B,N,3) bar·Å³ (xx,yy,zz): with ``pair_stress`` each atom's pair stress
        without its kinetic part (:meth:`~sagesnet_tf.model.SagesnetModel.pair_virials`), with the
        local energy its :meth:`~sagesnet_tf.model.SagesnetModel.energy_virials` split (the pairs whose first atom it
        is), so that Σ_atoms atom_virial − Σ_atoms m v_a v_a = stress[:, :3] (float32 rounding); a
        model whose stress is the latent head's has no per-atom split: zeros. A group of atoms
        without pairs to the rest (a ribbon of a stack) has its own virial as its atoms' sum."""
        model = self.model
        if model.pair_stress is None and model.local_energy is None:
            stress = tf.reduce_sum(model.cell_properties(latent)["stress"], axis=[1, 2, 3])
            return {"stress": stress, "atom_virial": tf.zeros_like(tf.cast(positions, tf.float32))}
        state = self.atoms_state(positions, velocities, species, box, box_origin, atom_grid=False)
        if model.pair_stress is None:
            return model.energy_virials(state)
        return model.pair_virials(state)

    # ---- coarse level 0 --------------------------------------------------------------------
    def window_latent(self, positions, velocities, species, box, box_origin=None, spare_cells: bool = False):
        """Encoder latents of a window of T frames and the open-axis cells their grids share.

        Args:
            positions, velocities: (B,T,N,3). species (B,N); box, box_origin (B,3).
            spare_cells: without the simulator's ``open_cells``, pad every frame's grid to the
                largest of them plus two coarse cells (the sheet may roughen within a coarse step;
                serving); else each frame's own grid (all must agree).

        Returns:
            (latents (B,T,X,Y,Z,D), open_cells (3,) int32 or the simulator's ``open_cells``).
        """
        steps = positions.shape[1]
        open_cells = self.open_cells
        if open_cells is None and spare_cells:
            grids = [self.atoms_state(positions[:, k], velocities[:, k], species, box, box_origin)["atom_grid"]
                     for k in range(steps)]
            open_cells = (tf.reduce_max(tf.stack([tf.shape(g)[1:4] for g in grids]), axis=0)
                          + 2 * tf.constant(self.config.grid_multiple))
            grids = [tf.stack([pad_open_axes(g[b], self.pbc, open_cells) for b in range(g.shape[0])]) for g in grids]
        else:
            grids = [self.atoms_state(positions[:, k], velocities[:, k], species, box, box_origin, open_cells=open_cells)
                     ["atom_grid"] for k in range(steps)]
        return tf.stack([self.model.encode(g) for g in grids], axis=1), open_cells

    def coarse_latent_step(self, coarse, env):
        """The core of :meth:`coarse_step`: coarse latent (B,Xc,Yc,Zc,D), raw env (B,E) -> the
        coarse latent T·Δ later (B,Xc,Yc,Zc,D)."""
        return self.model.step_coarse(coarse, self.normalise_env(env), 0)

    def coarse_step(self, coarse, env):
        """One step of coarse level 0 and its refinement: coarse latent (B,Xc,Yc,Zc,D) -> the T
        fine latents (B,T,X,Y,Z,D) it predicts (each T·Δ/T = Δ apart)."""
        return self.model.refine(self.coarse_latent_step(coarse, env), 0)

    def decode_window(self, refined, positions, velocities, species, box, box_origin=None, growth=None,
                      open_cells=None, teacher=None):
        """The atoms of each frame of ``refined`` (B,T,X,Y,Z,D), decoded one frame after the other
        from the atoms of the frame before the window, positions/velocities (B,N,3).

        Each frame's atoms are voxelized on the window's grid (its cell counts along the periodic
        axes, ``open_cells`` along the open ones) and read by the atom decoder with the frame's
        latents. ``growth`` (B,3) Å: the box grows by this much per Δ (affine tension applied
        before each frame, as :meth:`step` does with ``next_box``). ``teacher``: None (each decoded
        frame's atoms start the next, as in simulation), or (positions, velocities) (B,T,N,3) of
        the true frames, the true frame k−1 then starts frame k.

        Returns:
            positions (B,T,N,3) Å, velocities (B,T,N,3) Å/ps, box (B,3) Å at the last frame.
        """
        counts = tf.shape(refined)[2:5]
        frames_p, frames_v = [], []
        for k in range(refined.shape[1]):
            if growth is not None:
                origin = 0.0 if box_origin is None else box_origin[:, None]
                positions, box = affine_remap(positions, box, box + growth, origin), box + growth
            positions = self.check_positions(positions, box, box_origin)
            state = self.atoms_state(positions, velocities, species, box, box_origin, periodic_counts=counts,
                                     open_cells=open_cells)
            out = self.model.decode_atoms(refined[:, k], state)
            frames_p.append(out["positions"])
            frames_v.append(out["velocities"])
            positions, velocities = ((out["positions"], out["velocities"]) if teacher is None
                                     else (teacher[0][:, k], teacher[1][:, k]))
        return tf.stack(frames_p, axis=1), tf.stack(frames_v, axis=1), box

    def coarse_cell_uncertainty(self, coarse, env):
        """(B,Xc,Yc,Zc) the predicted reconstruction loss of each coarse cell (level 0's head) of the
        coarse latent (B,Xc,Yc,Zc,D), raw env (B,E)."""
        return self.model.predict_coarsen_uncertainty(coarse, self.normalise_env(env), 0)

    def coarse_atom_uncertainty(self, coarse, env, state):
        """(B,N) the predicted reconstruction loss of each atom's coarse cell (level 0's head),
        from the coarse latent (B,Xc,Yc,Zc,D) and the atoms_state of a frame on its fine grid."""
        cells = self.coarse_cell_uncertainty(coarse, env)
        factor = tf.constant(self.config.coarse_levels[0]["factor"], tf.int32)
        return tf.gather_nd(cells, state["assignment"][..., :3] // factor, batch_dims=1)

    # ---- tiles -----------------------------------------------------------------------------
    def step_latent_tiled(self, z, env, n_tiles: int):
        """One fine latent step with the grid split into ``n_tiles`` tiles along x, each padded
        with its neighbours' conditioned edge cells (``tiled`` virtual cells) and stepped on its
        own: equal to ``model.step(z, normalise_env(env))`` for a model periodic along x. z
        (B,X,Y,Z,D), env (B,E) raw -> (B,X,Y,Z,D)."""
        from sagesnet_tf.errors import SagesnetError
        from sagesnet_tf.layers import VirtualCells, tile_halo

        model = self.model
        if model.virtual.modes[0] != "periodic":
            raise SagesnetError("step_latent_tiled: the model must be periodic along x to tile along x")
        rx = model.predictor.halo[0]
        sizes = [len(part) for part in np.array_split(np.arange(int(z.shape[1])), n_tiles)]
        if min(sizes) < max(rx, 1):
            raise SagesnetError(f"step_latent_tiled: {n_tiles} tiles of {min(sizes)} cells are thinner than the halo "
                                f"({rx}); use fewer tiles")
        virtual = VirtualCells(model.predictor.halo, ("tiled",) + model.virtual.modes[1:], model.latent_dim)
        virtual.build(z.shape)
        if virtual.empty_latent is not None and model.virtual.empty_latent is not None:
            virtual.empty_latent.assign(model.virtual.empty_latent)
        conditioned = tf.split(model.apply_environment(z, self.normalise_env(env)), sizes, axis=1)
        states = tf.split(z, sizes, axis=1)
        out = []
        for i in range(n_tiles):
            halo_x = tile_halo(conditioned[i - 1], conditioned[(i + 1) % n_tiles], axis=0, depth=rx)
            out.append(states[i] + model.predictor(virtual(conditioned[i], [halo_x, None, None])))
        return tf.concat(out, axis=1)
