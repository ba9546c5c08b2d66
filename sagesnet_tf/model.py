"""SAGESnet models: the atom model (:class:`SagesnetModel`) and the cell-state model for cellular
automata (:class:`CellStateModel`), both built from :mod:`sagesnet_tf.layers`.

Shapes: B batch, X/Y/Z grid cells, S slots, F slot features, D latent width, E environment fields,
C per-cell channels, N atoms, T frames per coarsening window. Units: LAMMPS ``metal``.

Both models share the latent dynamics (:class:`LatentDynamics`)::

    step(z, env, cell_channels=None, halos=None)   z (B,X,Y,Z,D) -> z(t+Δ) = z + Δz
    apply_environment(z, env, cell_channels=None)  -> predictor input (B,X,Y,Z,D)
    coarsen(window, level=0)                       (B,T,X,Y,Z,D) -> (B,X/kx,Y/ky,Z/kz,D)
    refine(coarse, level=0)                        (B,Xc,Yc,Zc,D) -> (B,T,X,Y,Z,D)
    step_coarse(z_coarse, env, level=0, halos=None) the level's own predictor (same D)
    predict_uncertainty(z, env)                    -> (B,X,Y,Z) predicted one-step loss
    predict_coarsen_uncertainty(z_coarse, env, level=0) -> (B,Xc,Yc,Zc) predicted reconstruction loss

:class:`SagesnetModel` adds the atom side::

    encode(atom_grid (B,X,Y,Z,S,F)) -> z (B,X,Y,Z,D)
    decode(z) -> slot dict (see CellDecoder);  cell_properties(z) -> stress, kinetic_energy
    atom_stress(grid_shape, atoms_state) -> (B,N,6) per-atom stress × volume (needs pair_stress)
    pair_virials(atoms_state) -> its sum (B,6) and the per-atom diagonal virial (B,N,3)
    energy_stress(atoms_state) -> (B,6) stress × volume from the local energy
    energy_virials(atoms_state) -> its stress (B,6) and the per-atom diagonal virial (B,N,3)
    energy_neighbours(atoms_state, skin=0.0) -> the local energy's neighbour list at the step's midpoint
    energy_velocity_change(atoms_state) -> (B,N,3) the local energy's kick over Δ
    decode_atoms(z_next, atoms_state, halos=None) -> dict(positions, velocities, species,
                                                          displacement), same N and order
                                                          (z_next None: a model without atom decoder)
    call({"atom_grid", "env"}) -> dict(latent, latent_next, slots_next, uncertainty)

``atoms_state`` is a dict of batched tensors: ``positions`` (B,N,3) Å, ``velocities`` (B,N,3)
Å/ps, ``species`` (B,N) int32, ``box`` (B,3) Å, ``assignment`` (B,N,4) int32, ``atom_features``
(B,N,F), ``spacing`` (B,3) Å (the voxel edges), ``grid_shape`` (3,) int32 (X, Y, Z of the atom
grid) and, optionally, ``energy_neighbours`` (a :meth:`SagesnetModel.energy_neighbours` list to
use instead of a new search); build it with :meth:`sagesnet_tf.simulator.LearnedSimulator.atoms_state`.

:class:`CellStateModel` (board (B,X,Y,Z,C) -> per-cell logits (B,X,Y,Z,states) at t+1)::

    encode(board) -> z;  step(z, env=None);  decode(z) -> logits;  call(board, env=None) -> logits

Both are fully convolutional (any grid size, non-square too) and save/load as ``.keras`` files
(``keras.models.load_model``) with identical outputs.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import tensorflow as tf

from sagesnet_tf.atoms import ELEMENTS, MASSES
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.grid import VELOCITY_SCALE, slot_feature_size, slot_masses
from sagesnet_tf.layers import (
    MLP, AtomDecoder, BOUNDARY_MODES, CellDecoder, CellEncoder, CellHeads, Coarsener,
    EnvironmentConv, LocalEnergy, PairForces, PairStress, Refiner, ScatterPredictor, UncertaintyHead, VirtualCells)
from sagesnet_tf.layers.local_energy import ANGLE_BASES
from sagesnet_tf.layers.pair_stress import EV_TO_BAR_A3, kinetic_stress
from sagesnet_tf.thermo import MVV2E
from sagesnet_tf.trajectory import ENV_FIELDS, ENV_SCALES


def _triple(value, name: str, kind=int) -> tuple:
    """A 3-tuple of ``kind`` (x, y, z), or a SagesnetError naming the field."""
    try:
        out = tuple(kind(v) for v in value)
    except (TypeError, ValueError):
        out = ()
    if len(out) != 3:
        raise SagesnetError(f"model config: {name} must list 3 values (x, y, z), got {value!r}")
    return out


def _coarse_levels(levels) -> tuple[dict, ...]:
    """Normalise coarse levels to ({"factor": (kx, ky, kz), "steps": T}, …)."""
    out = []
    for i, level in enumerate(levels or ()):
        if not isinstance(level, dict) or set(level) - {"factor", "steps"}:
            raise SagesnetError(
                f"model config: coarse_levels[{i}] must be {{factor: [kx, ky, kz], steps: T}}, got {level!r}")
        factor = _triple(level.get("factor", (2, 2, 2)), f"coarse_levels[{i}].factor")
        steps = int(level.get("steps", 2))
        if min(factor) < 1 or steps < 1:
            raise SagesnetError(f"model config: coarse_levels[{i}] needs factors >= 1 and steps >= 1")
        out.append({"factor": factor, "steps": steps})
    return tuple(out)


class _ConfigBase:
    """to_dict/from_dict shared by the model configs (tuples become lists in JSON/YAML)."""

    def to_dict(self) -> dict[str, Any]:
        def plain(v):
            if isinstance(v, (tuple, list)):
                return [plain(x) for x in v]
            if isinstance(v, dict):
                return {k: plain(x) for k, x in v.items()}
            return v
        return {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SagesnetError(f"model config: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**data)

    def _check_common(self) -> None:
        self.kernel_size = _triple(self.kernel_size, "kernel_size")
        self.boundary = _triple(self.boundary, "boundary", str)
        self.coarse_levels = _coarse_levels(self.coarse_levels)
        if any(k < 1 or k % 2 == 0 for k in self.kernel_size):
            raise SagesnetError(f"model config: kernel_size must be odd integers, got {self.kernel_size}")
        bad = [m for m in self.boundary if m not in BOUNDARY_MODES]
        if bad:
            raise SagesnetError(f"model config: boundary {bad[0]!r} unknown; use one of {', '.join(BOUNDARY_MODES)}")
        for name in ("latent_dim", "hidden", "depth"):
            if int(getattr(self, name)) < 1:
                raise SagesnetError(f"model config: {name} must be >= 1, got {getattr(self, name)}")


@dataclasses.dataclass
class SagesnetConfig(_ConfigBase):
    """Hyperparameters of :class:`SagesnetModel` (lengths Å, velocities Å/ps).

    Attributes:
        latent_dim: D, latent width per cell at every scale.
        h: voxel edge, Å (see :mod:`sagesnet_tf.grid` for how periodic axes adjust it); with 2
            slots, h ≤ 1.8 Å holds graphene with 0.1 Å thermal noise, h = 2 Å can overflow.
        slots: S, atom slots per voxel.
        elements: element symbols of the one-hot, in order.
        velocity_scale: Å/ps per unit of the velocity features.
        displacement_scale: Å per unit of the atom decoder's displacement output.
        hidden: hidden width of the MLPs and the predictor.
        encoder_layers: hidden layers in the encoder/decoder MLPs.
        depth: residual scatter blocks in the predictor.
        kernel_size: predictor kernel (kx, ky, kz), odd; (3, 3, 1) for a board one cell thick.
        boundary: per axis 'periodic' | 'open' | 'tiled' (match the structure's pbc: periodic
            axes 'periodic', vacuum axes 'open').
        gather_radius: neighbour cells the atom decoder reads on each side, per axis.
        atom_decoder: the fine step decodes the atoms from the new latent grid (the grid decoder's
            learned correction); false: no grid decoder, the fine step is the local energy's
            position-Verlet step alone (needs ``energy_cutoff`` > 0; plus the pair forces if set),
            which reads no latent, so a simulation skips encoding and the latent step on every step
            whose readouts are not returned.
        conserve_momentum: the atom decoder removes each structure's mass-weighted mean velocity
            change and displacement (no net force from the learned decoder).
        pair_cutoff: Å; > 0 adds learned central pair forces between atoms closer than this to
            the decoded velocity change (:class:`~sagesnet_tf.layers.PairForces`), 0 for none.
        pair_bond_neighbours: k > 0 gives the pair forces one radial function for bonded pairs
            (each atom among the other's k nearest) and one for the rest; 0: one for all pairs.
        pair_stress: read the stress from the atoms, as their kinetic part plus the virial of
            learned bond tensions over the pairs closer than ``pair_cutoff``
            (:class:`~sagesnet_tf.layers.PairStress`; needs ``pair_cutoff`` > 0), instead of
            from the latent's stress head alone.
        energy_cutoff: Å; > 0 adds the forces of a learned local energy (pairs within this range,
            bond angles within ``energy_angle_cutoff``; :class:`~sagesnet_tf.layers.LocalEnergy`),
            taken at the step's midpoint, to the decoded velocity change: with the kinematic
            displacement this is a position-Verlet step of that energy (symplectic, momentum
            conserving), on which the grid decoder adds its learned correction. The stress is then
            that energy's (:meth:`SagesnetModel.energy_stress`) unless ``pair_stress`` is set. 0: none.
        energy_angle_cutoff: Å, neighbours closer than this enter the local energy's angle term
            (about the bonded neighbours; 2.0 Å for sp² carbon).
        energy_dihedral_orders: D > 0 adds the local energy's dihedral term over bonded quadruplets
            (P_1 … P_D of the dihedral angle's cosine; sp² carbon's bending stiffness needs it), 0: none.
        energy_angle_basis: the radial functions of the local energy's angle and dihedral terms
            (:data:`~sagesnet_tf.layers.local_energy.ANGLE_BASES`): ``"diagonal"`` (v1, v2) or
            ``"outer"`` (wide Gaussians, every pair of them on a triplet's two bonds: a stretched
            bond beside an unstretched one keeps its angle stiffness) or ``"outer_switch"`` (the same
            and a narrow Gaussian inside REBO's cutoff switch: the stiffening before a bond breaks).
        env_fields: names of the blanket vector's entries (E = len).
        env_scales: (E,) the scale of each field in its units: the model reads value / scale
            (:meth:`~sagesnet_tf.simulator.LearnedSimulator.normalise_env`); empty: the defaults of
            :data:`~sagesnet_tf.trajectory.ENV_SCALES` by field name (1 for others). Saved with the
            model, so a ``.keras`` file carries its own normalisation.
        cell_channels: C, per-cell input channels (forces, clamp flags); 0 for none.
        coarse_levels: list of {"factor": (kx, ky, kz), "steps": T}, finest first.
        delta_steps: MD steps per model step Δ.
        md_dt_fs: MD timestep, fs.
        stress_scale: bar·Å³ per unit of the stress head.
        energy_scale: eV per unit of the kinetic-energy head.
    """

    latent_dim: int = 32
    h: float = 1.8
    slots: int = 2
    elements: tuple = ELEMENTS
    velocity_scale: float = VELOCITY_SCALE
    displacement_scale: float = 0.1
    hidden: int = 64
    encoder_layers: int = 2
    depth: int = 2
    kernel_size: tuple = (3, 3, 3)
    boundary: tuple = ("periodic", "periodic", "open")
    gather_radius: tuple = (1, 1, 1)
    atom_decoder: bool = True
    conserve_momentum: bool = False
    pair_cutoff: float = 0.0
    pair_bond_neighbours: int = 0
    pair_stress: bool = False
    energy_cutoff: float = 0.0
    energy_angle_cutoff: float = 2.0
    energy_dihedral_orders: int = 0
    energy_angle_basis: str = "diagonal"
    env_fields: tuple = ENV_FIELDS
    env_scales: tuple = ()
    cell_channels: int = 0
    coarse_levels: tuple = ({"factor": (2, 2, 1), "steps": 2},)
    delta_steps: int = 10
    md_dt_fs: float = 1.0
    stress_scale: float = 1.0
    energy_scale: float = 1.0

    def __post_init__(self) -> None:
        self.elements = tuple(str(e) for e in self.elements)
        self.env_fields = tuple(str(e) for e in self.env_fields)
        self.env_scales = tuple(float(s) for s in self.env_scales) or tuple(
            ENV_SCALES.get(f, 1.0) for f in self.env_fields)
        if len(self.env_scales) != len(self.env_fields) or not all(s > 0 for s in self.env_scales):
            raise SagesnetError(f"model config: env_scales must give one positive scale per env field "
                                f"({', '.join(self.env_fields)}), got {list(self.env_scales)}")
        self.gather_radius = _triple(self.gather_radius, "gather_radius")
        self._check_common()
        if self.h <= 0 or self.slots < 1:
            raise SagesnetError(f"model config: h must be > 0 and slots >= 1, got h={self.h}, slots={self.slots}")
        if self.pair_cutoff < 0 or (self.pair_cutoff > 0 and "tiled" in self.boundary):
            raise SagesnetError(f"model config: pair_cutoff must be >= 0 (0: no pair forces) and needs "
                                f"periodic or open boundaries, got {self.pair_cutoff} with {self.boundary}")
        if self.pair_bond_neighbours < 0 or (self.pair_bond_neighbours and self.pair_cutoff <= 0):
            raise SagesnetError(f"model config: pair_bond_neighbours must be >= 0 and needs pair_cutoff > 0, got "
                                f"{self.pair_bond_neighbours} with pair_cutoff {self.pair_cutoff}")
        if self.energy_cutoff < 0 or (self.energy_cutoff > 0 and (
                "tiled" in self.boundary or not 0 < self.energy_angle_cutoff <= self.energy_cutoff)) \
                or self.energy_dihedral_orders < 0:
            raise SagesnetError(f"model config: energy_cutoff must be >= 0 (0: no local energy) and, when set, needs "
                                f"periodic or open boundaries, 0 < energy_angle_cutoff <= energy_cutoff and "
                                f"energy_dihedral_orders >= 0; got {self.energy_cutoff}, {self.energy_angle_cutoff}, "
                                f"{self.energy_dihedral_orders} with {self.boundary}")
        if self.energy_angle_basis not in ANGLE_BASES:
            raise SagesnetError(f"model config: energy_angle_basis must be one of {', '.join(ANGLE_BASES)}, got "
                                f"{self.energy_angle_basis!r}")
        if not self.atom_decoder and self.energy_cutoff <= 0:
            raise SagesnetError("model config: atom_decoder: false (the fine step is the local energy's) needs "
                                f"energy_cutoff > 0, got {self.energy_cutoff}")
        if self.pair_stress and self.pair_cutoff <= 0:
            raise SagesnetError("model config: pair_stress needs the pairs of pair_cutoff > 0; set pair_cutoff "
                                "(e.g. 2.7 Å for carbon) or pair_stress: false")

    @property
    def delta_ps(self) -> float:
        """Δ, the model timestep in ps."""
        return self.delta_steps * self.md_dt_fs * 1e-3

    @property
    def grid_multiple(self) -> tuple[int, int, int]:
        """(3,) the fine grid's size along each axis is a multiple of this: the product of the
        coarse levels' factors (voxelize's ``multiple``), so that every level divides evenly."""
        out = [1, 1, 1]
        for level in self.coarse_levels:
            out = [a * k for a, k in zip(out, level["factor"])]
        return tuple(out)


@dataclasses.dataclass
class CellStateConfig(_ConfigBase):
    """Hyperparameters of :class:`CellStateModel` (cellular automata; no units).

    Attributes:
        channels: C, input channels per cell (a one-hot of the state, or other per-cell inputs).
        states: output classes per cell (logits).
        latent_dim, hidden, depth, kernel_size, boundary, coarse_levels: as in
            :class:`SagesnetConfig`.
        env_dim: E, blanket vector width (0: no EnvironmentConv).
    """

    channels: int = 2
    states: int = 2
    latent_dim: int = 16
    hidden: int = 16
    depth: int = 1
    kernel_size: tuple = (3, 3, 1)
    boundary: tuple = ("periodic", "periodic", "periodic")
    coarse_levels: tuple = ({"factor": (2, 2, 1), "steps": 2},)
    env_dim: int = 0

    def __post_init__(self) -> None:
        self._check_common()
        if self.channels < 1 or self.states < 1 or self.env_dim < 0:
            raise SagesnetError("model config: channels and states must be >= 1 and env_dim >= 0")


class LatentDynamics(keras.Model):
    """The latent-grid parts shared by both models: environment conv, virtual cells, scatter
    predictor, coarse levels (coarsener, refiner, own predictor) and the uncertainty heads.

    Subclasses call :meth:`_make_dynamics` in ``__init__`` and :meth:`_build_dynamics` in
    ``build``.
    """

    def _make_dynamics(self, latent_dim: int, hidden: int, depth: int, kernel_size, boundary,
                       env_dim: int, cell_channels: int, coarse_levels) -> None:
        self.latent_dim, self.env_dim = latent_dim, env_dim
        self.env_conv = EnvironmentConv(latent_dim, hidden, cell_channels, name="env_conv") if env_dim else None
        self.predictor = ScatterPredictor(latent_dim, hidden, depth, kernel_size, name="predictor")
        self.virtual = VirtualCells(self.predictor.halo, boundary, latent_dim, name="virtual_cells")
        self.uncertainty = UncertaintyHead(hidden, env_dim=env_dim, name="uncertainty")
        self.coarseners, self.refiners, self.coarse_env_convs = [], [], []
        self.coarse_predictors, self.coarse_virtuals, self.coarse_uncertainty = [], [], []
        for i, level in enumerate(coarse_levels):
            k, t = level["factor"], level["steps"]
            self.coarseners.append(Coarsener(latent_dim, k, t, 2 * hidden, name=f"coarsener_{i}"))
            self.refiners.append(Refiner(latent_dim, k, t, 2 * hidden, name=f"refiner_{i}"))
            self.coarse_env_convs.append(
                EnvironmentConv(latent_dim, hidden, 0, name=f"coarse_env_conv_{i}") if env_dim else None)
            predictor = ScatterPredictor(latent_dim, hidden, depth, kernel_size, name=f"coarse_predictor_{i}")
            self.coarse_predictors.append(predictor)
            self.coarse_virtuals.append(VirtualCells(predictor.halo, boundary, latent_dim, name=f"coarse_virtual_{i}"))
            self.coarse_uncertainty.append(UncertaintyHead(hidden, env_dim=env_dim, name=f"coarse_uncertainty_{i}"))

    def _build_dynamics(self) -> None:
        z = (None, None, None, None, self.latent_dim)
        env = (None, self.env_dim)
        cells = (None, None, None, None, getattr(self.env_conv, "cell_channels", 0))
        for conv in [self.env_conv, *self.coarse_env_convs]:
            if conv is not None:
                conv.build(z, env, cells)
        for layer in [self.predictor, *self.coarse_predictors, *self.refiners]:
            layer.build(z)
        for layer in [self.uncertainty, *self.coarse_uncertainty]:
            layer.build(z, env)
        for layer in self.coarseners:
            layer.build((None, layer.steps) + z[1:])

    def apply_environment(self, z, env=None, cell_channels=None, level: int | None = None):
        """Predictor input: z (B,X,Y,Z,D) + conditioning on env (B,E) and cell_channels
        (B,X,Y,Z,C); z unchanged when the model has no environment. ``level`` None is the fine
        grid, else a coarse level."""
        conv = self.env_conv if level is None else self.coarse_env_convs[level]
        if conv is None:
            return z
        if env is None:
            raise ValueError(f"this model reads a blanket vector of {self.env_dim} fields; give env (B, E)")
        return conv(z, env, cell_channels)

    def step(self, z, env=None, cell_channels=None, halos=None):
        """One step Δ on the fine grid: z (B,X,Y,Z,D) -> z + Δz (B,X,Y,Z,D).

        ``halos`` (tiled axes only): slabs of the neighbour tiles' :meth:`apply_environment`
        output, as :class:`~sagesnet_tf.layers.VirtualCells` takes them (halo = predictor.halo).
        """
        conditioned = self.apply_environment(z, env, cell_channels)
        return z + self.predictor(self.virtual(conditioned, halos))

    def step_coarse(self, z_coarse, env=None, level: int = 0, halos=None):
        """One step of coarse ``level`` (its Δ is the fine Δ × that level's T … × T):
        (B,Xc,Yc,Zc,D) -> (B,Xc,Yc,Zc,D)."""
        conditioned = self.apply_environment(z_coarse, env, None, level)
        padded = self.coarse_virtuals[level](conditioned, halos)
        return z_coarse + self.coarse_predictors[level](padded)

    def coarsen(self, z_window, level: int = 0):
        """(B,T,X,Y,Z,D) -> (B,X/kx,Y/ky,Z/kz,D) for coarse ``level``."""
        return self.coarseners[level](z_window)

    def refine(self, z_coarse, level: int = 0):
        """(B,Xc,Yc,Zc,D) -> (B,T,Xc·kx,Yc·ky,Zc·kz,D) for coarse ``level``."""
        return self.refiners[level](z_coarse)

    def predict_uncertainty(self, z, env=None):
        """Predicted per-cell one-step loss (B,X,Y,Z) ≥ 0 for the state z (B,X,Y,Z,D)."""
        return self.uncertainty(z, env if self.env_dim else None)

    def predict_coarsen_uncertainty(self, z_coarse, env=None, level: int = 0):
        """Predicted per-coarse-cell reconstruction loss (B,Xc,Yc,Zc) ≥ 0."""
        return self.coarse_uncertainty[level](z_coarse, env if self.env_dim else None)

    # Every variable is created by ``build`` from the config alone, so loading needs no data.
    def get_build_config(self):
        return {"from_config": True}

    def build_from_config(self, config):
        self.build()


@keras.saving.register_keras_serializable(package="sagesnet")
class SagesnetModel(LatentDynamics):
    """The atom model (see module docstring for the methods and shapes)."""

    def __init__(self, config: SagesnetConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(config, SagesnetConfig):
            config = SagesnetConfig.from_dict(config or {})
        self.config = config
        c = config
        n_el = len(c.elements)
        self.encoder = CellEncoder(c.latent_dim, c.hidden, c.encoder_layers, name="encoder")
        self.decoder = CellDecoder(c.slots, n_el, c.hidden, c.encoder_layers, name="decoder")
        self.heads = CellHeads(c.hidden, c.encoder_layers, c.stress_scale, c.energy_scale, name="heads")
        masses = [MASSES[e] for e in c.elements]
        # without a grid decoder (atom_decoder: false) both are None: the step is the local energy's
        self.atom_virtual = (VirtualCells(c.gather_radius, c.boundary, c.latent_dim, name="atom_virtual_cells")
                             if c.atom_decoder else None)
        self.atom_decoder = (AtomDecoder(c.gather_radius, c.hidden, c.encoder_layers, c.displacement_scale,
                                         c.velocity_scale, n_el, masses if c.conserve_momentum else None,
                                         name="atom_decoder")
                             if c.atom_decoder else None)
        self.pair_forces = (PairForces(c.pair_cutoff, c.h, c.slots, c.boundary, masses,
                                       c.delta_ps, c.velocity_scale, bond_neighbours=c.pair_bond_neighbours,
                                       name="pair_forces")
                            if c.pair_cutoff > 0 else None)
        self.pair_stress = (PairStress(c.pair_cutoff, c.h, c.slots, c.boundary, masses, c.velocity_scale,
                                       name="pair_stress")
                            if c.pair_stress else None)
        self.local_energy = (LocalEnergy(c.energy_cutoff, c.energy_angle_cutoff, c.h, c.slots, c.boundary, n_el,
                                         dihedral_orders=c.energy_dihedral_orders,
                                         angle_basis=c.energy_angle_basis, name="local_energy")
                             if c.energy_cutoff > 0 else None)
        self._masses = tuple(masses)
        self._make_dynamics(c.latent_dim, c.hidden, c.depth, c.kernel_size, c.boundary,
                            len(c.env_fields), c.cell_channels, c.coarse_levels)

    def build(self, input_shape=None):
        c = self.config
        f = slot_feature_size(len(c.elements))
        z = (None, None, None, None, c.latent_dim)
        self.encoder.build((None, None, None, None, c.slots, f))
        self.decoder.build(z)
        self.heads.build(z)
        if self.atom_decoder is not None:
            self.atom_decoder.build(z, (None, None, 4), (None, None, f))
        if self.pair_forces is not None:
            self.pair_forces.build()
        if self.pair_stress is not None:
            self.pair_stress.build()
        self._build_dynamics()
        self.built = True

    def encode(self, atom_grid):
        """atom_grid (B,X,Y,Z,S,F) -> z (B,X,Y,Z,D)."""
        return self.encoder(atom_grid)

    def decode(self, z):
        """z (..., D) -> slot reconstruction dict (see :class:`~sagesnet_tf.layers.CellDecoder`)."""
        return self.decoder(z)

    def cell_properties(self, z):
        """z (..., D) -> dict(stress (..., 6) bar·Å³, kinetic_energy (...) eV)."""
        return self.heads(z)

    def atom_stress(self, grid_shape, atoms_state):
        """Per-atom stress × volume (B,N,6) bar·Å³ (xx,yy,zz,xy,xz,yz; summed over atoms −P·V) of the
        atoms of ``atoms_state`` on their atom grid of shape ``grid_shape`` (3,): their kinetic part
        plus the virial of the learned bond tensions (:class:`~sagesnet_tf.layers.PairStress`).
        Models without ``pair_stress`` have none: use :meth:`cell_properties`."""
        if self.pair_stress is None:
            raise SagesnetError("atom_stress needs a model with pair_stress: true")
        return self.pair_stress(grid_shape, atoms_state["assignment"], atoms_state["atom_features"],
                                atoms_state["spacing"])

    def pair_virials(self, atoms_state) -> dict:
        """``stress`` (B,6) bar·Å³, the :meth:`atom_stress` of the atoms of ``atoms_state`` summed,
        and ``atom_virial`` (B,N,3) bar·Å³, each atom's diagonal (xx,yy,zz) of it without its kinetic
        part: Σ_atoms atom_virial − Σ_atoms m v_a v_a = ``stress[:, :3]`` (to float32 rounding)."""
        atom_stress = self.atom_stress(atoms_state["grid_shape"], atoms_state)                     # (B,N,6)
        mass = slot_masses(atoms_state["atom_features"], self._masses, len(self._masses))          # (B,N,1)
        kinetic = kinetic_stress(atoms_state["velocities"], mass)[..., :3]                          # (B,N,3)
        return {"stress": tf.reduce_sum(atom_stress, axis=1), "atom_virial": atom_stress[..., :3] + kinetic}

    def midpoint(self, positions, velocities):
        """(B,N,3) Å, where the local energy's forces of a step are taken: the atoms at ``positions``
        (B,N,3) Å moved Δ/2 along their ``velocities`` (B,N,3) Å/ps."""
        return positions + (0.5 * self.config.delta_ps) * velocities

    def energy_neighbours(self, atoms_state, skin=0.0, candidates=None) -> dict:
        """The local energy's neighbour list (:meth:`~sagesnet_tf.layers.LocalEnergy.neighbour_list`)
        of the atoms of ``atoms_state`` at the step's :meth:`midpoint`: searched on their atom grid
        (or measured among an earlier list's ``candidates`` while they hold), complete while they
        move less than ``skin`` Å allows."""
        lookahead = 0.5 * self.config.delta_ps
        return self.local_energy.neighbour_list(
            atoms_state["grid_shape"], atoms_state["assignment"], atoms_state["atom_features"],
            atoms_state["spacing"], self.midpoint(atoms_state["positions"], atoms_state["velocities"]),
            atoms_state["box"], lookahead, skin, candidates)

    def energy_velocity_change(self, atoms_state):
        """(B,N,3) Å/ps, the velocity change over Δ the local energy's forces give the atoms of
        ``atoms_state``, F/m·Δ with F taken at the step's :meth:`midpoint`: with the kinematic
        displacement of :meth:`decode_atoms` a position-Verlet step. The pairs are those of the
        state's ``energy_neighbours`` when it has them (a list kept from an earlier step), else of a
        new search (:meth:`energy_neighbours`)."""
        neighbours = atoms_state.get("energy_neighbours")
        if neighbours is None:
            neighbours = self.energy_neighbours(atoms_state)
        forces = self.local_energy.energy_forces(
            neighbours, self.midpoint(atoms_state["positions"], atoms_state["velocities"]), atoms_state["box"])["forces"]
        mass = tf.gather(tf.constant(self._masses, tf.float32), atoms_state["species"])[..., None]   # (B,N,1) g/mol
        return forces * (self.config.delta_ps / MVV2E) / mass

    def energy_stress(self, atoms_state):
        """(B,6) bar·Å³, each structure's stress × volume (−P·V; xx,yy,zz,xy,xz,yz) from the local
        energy: the kinetic part −Σ m v_a v_b plus, on the diagonal, the virial −dE/dε_aa of a homogeneous
        strain of each axis (``strain_derivative`` of :meth:`~sagesnet_tf.layers.LocalEnergy.energy_forces`,
        the pairs of a new search at the state's positions). The shear virial is not computed (its
        components carry the kinetic part only). :meth:`energy_virials` gives it with its per-atom split."""
        return self.energy_virials(atoms_state)["stress"]

    def energy_virials(self, atoms_state) -> dict:
        """The local energy's ``stress`` (B,6) bar·Å³ of :meth:`energy_stress` and ``atom_virial``
        (B,N,3) bar·Å³, its diagonal virial (xx,yy,zz) split over the atoms (each atom's
        ``atom_strain_derivative`` of :meth:`~sagesnet_tf.layers.LocalEnergy.energy_forces`, the pairs
        whose first atom it is): Σ_atoms atom_virial − Σ_atoms m v_a v_a = ``stress[:, :3]`` (to float32
        rounding), and the sum over the atoms of one of several structures without pairs between them
        (ribbons stacked apart) is that structure's own virial."""
        energy = self.local_energy
        neighbours = energy.neighbour_list(atoms_state["grid_shape"], atoms_state["assignment"],
                                           atoms_state["atom_features"], atoms_state["spacing"],
                                           atoms_state["positions"], atoms_state["box"])
        derivatives = energy.energy_forces(neighbours, atoms_state["positions"], atoms_state["box"])
        strain_derivative = derivatives["strain_derivative"]                                      # (B,3) eV
        mass = slot_masses(atoms_state["atom_features"], self._masses, len(self._masses))          # (B,N,1)
        kinetic = tf.reduce_sum(kinetic_stress(atoms_state["velocities"], mass), 1)                 # (B,6) bar·Å³
        virial = tf.concat([strain_derivative, tf.zeros_like(strain_derivative)], -1) * EV_TO_BAR_A3
        return {"stress": virial - kinetic, "atom_virial": derivatives["atom_strain_derivative"] * EV_TO_BAR_A3}

    def decode_atoms(self, z, atoms_state, halos=None):
        """New atom positions and velocities from the new latent grid (plus, with ``pair_cutoff`` > 0,
        the pair forces between the atoms at t, and with ``energy_cutoff`` > 0 the local energy's).

        Args:
            z: (B,X,Y,Z,D), the latent grid at t+Δ; unread (None is fine) by a model without
                atom decoder, whose step is the kinematic one plus the forces' velocity change.
            atoms_state: dict of the atoms at t (see module docstring).
            halos: tiled axes only, neighbour slabs of z with depth ``gather_radius``.

        Returns:
            dict of ``positions`` (B,N,3) Å (unwrapped: positions + displacement),
            ``velocities`` (B,N,3) Å/ps, ``species`` (B,N) (the input tensor, unchanged),
            ``displacement`` (B,N,3) Å = Δ·(v(t) + v(t+Δ))/2 + the decoder's correction. Same atoms in the same order: counts, species and ids
            are conserved exactly.
        """
        if self.atom_decoder is None:
            out = {"velocities": atoms_state["velocities"], "displacement": 0.0}
        else:
            out = self.atom_decoder(self.atom_virtual(z, halos), atoms_state["assignment"],
                                    atoms_state["atom_features"])
        if self.pair_forces is not None:
            out["velocities"] += self.pair_forces(atoms_state["grid_shape"], atoms_state["assignment"],
                                                  atoms_state["atom_features"], atoms_state["spacing"])
        if self.local_energy is not None:
            out["velocities"] += self.energy_velocity_change(atoms_state)
        # Kinematics first: Δ·(v(t) + v(t+Δ))/2 is exact for constant acceleration; the decoder's
        # displacement output is the learned correction on top of it.
        kinematic = 0.5 * self.config.delta_ps * (atoms_state["velocities"] + out["velocities"])
        displacement = kinematic + out["displacement"]
        return {
            "positions": atoms_state["positions"] + displacement,
            "velocities": out["velocities"],
            "species": atoms_state["species"],
            "displacement": displacement,
        }

    def call(self, inputs):
        """inputs dict ``atom_grid`` (B,X,Y,Z,S,F), ``env`` (B,E) [, ``cell_channels``] ->
        dict ``latent`` z(t), ``latent_next`` z(t+Δ), ``slots_next`` (decoded z(t+Δ)),
        ``uncertainty`` (B,X,Y,Z)."""
        z = self.encode(inputs["atom_grid"])
        env = inputs.get("env")
        z_next = self.step(z, env, inputs.get("cell_channels"))
        return {"latent": z, "latent_next": z_next, "slots_next": self.decode(z_next),
                "uncertainty": self.predict_uncertainty(z, env)}

    def get_config(self):
        return {"name": self.name, "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(SagesnetConfig.from_dict(config.pop("config")), **config)


@keras.saving.register_keras_serializable(package="sagesnet")
class CellStateModel(LatentDynamics):
    """Cellular-automaton model: board (B,X,Y,Z,C) -> per-cell logits (B,X,Y,Z,states) at t+1.

    Per-cell input projection (a :class:`~sagesnet_tf.layers.CellEncoder` reading each cell as
    one slot), optional EnvironmentConv, VirtualCells, ScatterPredictor, per-cell MLP decoder.
    Fully convolutional: any board size.
    """

    def __init__(self, config: CellStateConfig | dict | None = None, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(config, CellStateConfig):
            config = CellStateConfig.from_dict(config or {})
        self.config = config
        c = config
        self.encoder = CellEncoder(c.latent_dim, c.hidden, 1, mask_by_occupancy=False, name="encoder")
        self.decoder = MLP(c.states, c.hidden, 1, name="decoder")
        self._make_dynamics(c.latent_dim, c.hidden, c.depth, c.kernel_size, c.boundary, c.env_dim, 0,
                            c.coarse_levels)

    def build(self, input_shape=None):
        c = self.config
        self.encoder.build((None, None, None, None, 1, c.channels))
        self.decoder.build((None, None, None, None, c.latent_dim))
        self._build_dynamics()
        self.built = True

    def encode(self, board):
        """board (B,X,Y,Z,C) float -> z (B,X,Y,Z,D)."""
        return self.encoder(tf.cast(board, tf.float32)[..., None, :])

    def decode(self, z):
        """z (B,X,Y,Z,D) -> logits (B,X,Y,Z,states)."""
        return self.decoder(z)

    def call(self, board, env=None):
        """board (B,X,Y,Z,C) [, env (B,E)] -> logits of the board at t+1 (B,X,Y,Z,states)."""
        return self.decode(self.step(self.encode(board), env))

    def get_config(self):
        return {"name": self.name, "config": self.config.to_dict()}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        return cls(CellStateConfig.from_dict(config.pop("config")), **config)
