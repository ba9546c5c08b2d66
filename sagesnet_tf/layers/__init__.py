"""SAGESnet Keras layers (Keras 3, subclassed, serialisable under package ``"sagesnet"``).

Public API (stable; engineer E's training code calls it). Shapes: B batch, X/Y/Z grid cells,
S slots per voxel, F slot features (:func:`sagesnet_tf.grid.slot_feature_size`), D latent width,
E environment fields, C per-cell channels, N atoms, T timesteps of a coarsening window.

Voxelizer (:mod:`sagesnet_tf.grid`, plain functions, one structure per call)::

    voxelize(positions (N,3) Å, velocities (N,3) Å/ps, species (N,) int, box_lengths (3,) Å,
             box_origin (3,) Å, pbc (3,) bool, h, slots, n_elements=2, velocity_scale=10.0,
             margin_cells=1) -> VoxelGrid(atom_grid (X,Y,Z,S,F), assignment (N,4) int32,
                                          origin (3,) Å, spacing (3,) Å, spilled (N,) bool)
             (an overflowing voxel spills atoms to face neighbours; InvalidArgument if that fails)
    voxelize_atoms(atoms: Atoms, h, slots, ...) -> VoxelGrid      (numpy Atoms in, refuses triclinic)
    gather_atom_features(atom_grid (...,X,Y,Z,S,F), assignment (...,N,4)) -> (...,N,F)
    split_slot_features(features (...,F), n_elements) -> dict(occupancy (...), species_onehot
             (...,n_el), offsets (...,3) in [0,1), velocities (...,3) in units of velocity_scale)
    slot_masses(features (...,F), masses (n_el,), n_elements) -> (...,1) g/mol (0 for an empty slot)

Layers (``from sagesnet_tf.layers import ...``)::

    CellEncoder(latent_dim, hidden=64, n_layers=2, mask_by_occupancy=True)
        slots (..., S, F) -> latent (..., D)                      (sum over slots: permutation-invariant)
    CellDecoder(slots, n_elements=2, hidden=64, n_layers=2)
        latent (..., D) -> dict(occupancy_logits (...,S), element_logits (...,S,n_el),
                                offsets (...,S,3) in (0,1), velocities (...,S,3) /velocity_scale)
    EnvironmentConv(latent_dim, hidden=32, cell_channels=0)
        (z (B,X,Y,Z,D), env (B,E), cell_channels=None|(B,X,Y,Z,C)) -> (B,X,Y,Z,D)  (= z + conditioning)
    VirtualCells(halo=(rx,ry,rz), modes=('periodic'|'open'|'tiled',)*3, latent_dim)
        (z (B,X,Y,Z,D), halos=None|[None|(low, high)]*3) -> (B,X+2rx,Y+2ry,Z+2rz,D)
        tiled axis a: low = last r_a cells of the lower neighbour tile, high = first r_a cells of
        the upper one, both already padded along earlier axes (pad order x, y, z);
        helper ``tile_halo(lower_tile, upper_tile, axis, depth)`` -> (low, high).
    ScatterPredictor(latent_dim, hidden=64, depth=2, kernel_size=(3,3,3))
        padded (B,X+2rx,Y+2ry,Z+2rz,D) -> delta z (B,X,Y,Z,D);  ``.halo`` = (rx,ry,rz) it needs
    AtomDecoder(gather_radius=(1,1,1), hidden=64, n_layers=2, displacement_scale=0.1,
                velocity_scale=10.0, n_elements=2)
        (z_padded (B,X+2gx,Y+2gy,Z+2gz,D), assignment (B,N,4), atom_features (B,N,F))
        -> dict(displacement (B,N,3) Å, velocities (B,N,3) Å/ps)
    PairForces(cutoff, h, slots, boundary, masses, delta_ps, velocity_scale=10.0)
        (grid_shape (3,), assignment (B,N,4), atom_features (B,N,F), spacing (B,3) Å)
        -> velocity change (B,N,3) Å/ps from learned central pair forces (momentum-conserving)
    PairStress(cutoff, h, slots, boundary, masses, velocity_scale=10.0)
        (grid_shape (3,), assignment (B,N,4), atom_features (B,N,F), spacing (B,3) Å)
        -> per-atom stress × volume (B,N,6) bar·Å³: −m v⊗v + virial of learned bond tensions
    LocalEnergy(cutoff, angle_cutoff, h, slots, boundary, n_elements=2, legendre_orders=4, dihedral_orders=0)
        (grid_shape (3,), assignment (B,N,4), atom_features (B,N,F), spacing (B,3) Å)
        -> dict(energy (B,) eV, forces (B,N,3) eV/Å = −∂E/∂r): a learned local energy linear in
        its weights (pair terms + three-body angle terms, optional four-body dihedral terms);
        .design (B,N,3,F) and .strain_design (B,3,F) for least squares. The fine step's forces of a
        SagesnetModel with ``energy_cutoff`` > 0.
    (all three find their neighbours with ``grid_pairs.GridPairs``, no weights)
    CellHeads(hidden=64, n_layers=2, stress_scale=1.0, energy_scale=1.0)
        latent (..., D) -> dict(stress (...,6) bar·Å³ xx,yy,zz,xy,xz,yz, kinetic_energy (...) eV)
    MLP(units, hidden=64, n_layers=2, output_initializer="glorot_uniform")  (..., F) -> (..., units)
    Coarsener(latent_dim, factor=(kx,ky,kz), steps=T, hidden=128, n_layers=2)
        (B,T,X,Y,Z,D) -> (B,X/kx,Y/ky,Z/kz,D)
    Refiner(latent_dim, factor=(kx,ky,kz), steps=T, hidden=128, n_layers=2)
        (B,Xc,Yc,Zc,D) -> (B,T,Xc*kx,Yc*ky,Zc*kz,D)
    UncertaintyHead(hidden=32, n_layers=2, env_dim=0)
        (z (B,X,Y,Z,D), env=None|(B,E) when env_dim=E) -> predicted per-cell loss (B,X,Y,Z) ≥ 0 (softplus)

Models (:mod:`sagesnet_tf.model`; full method list in that module's docstring)::

    SagesnetModel(SagesnetConfig(latent_dim=32, h=1.8, slots=2, hidden=64, depth=2,
                  kernel_size=(3,3,3), boundary=("periodic","periodic","open"), env_fields=ENV_FIELDS,
                  coarse_levels=[{"factor": (2,2,1), "steps": 2}], ...))
        .build(); encode(atom_grid); apply_environment(z, env, cell_channels=None);
        step(z, env, cell_channels=None, halos=None); decode(z); cell_properties(z);
        decode_atoms(z, atoms_state, halos=None); coarsen(window, level=0); refine(coarse, level=0);
        step_coarse(z_coarse, env, level=0); predict_uncertainty(z, env);
        predict_coarsen_uncertainty(z_coarse, env, level=0)
        (atoms_state from LearnedSimulator.atoms_state; a whole step: :mod:`sagesnet_tf.simulator`)
    CellStateModel(CellStateConfig(channels=C, states=C, latent_dim=16, hidden=16, depth=1,
                   kernel_size=(3,3,1), boundary=("periodic",)*3,
                   coarse_levels=[{"factor": (k if axis else 1 for each axis), "steps": T}], env_dim=0))
        .build(); call(board (B,X,Y,Z,C), env=None) -> logits (B,X,Y,Z,states) at t+1;
        encode(board) -> z; step(z, env=None); decode(z) -> logits; and the same coarse/uncertainty
        methods as SagesnetModel (env optional when env_dim=0).

Several output kernels start at zero (EnvironmentConv, ScatterPredictor, AtomDecoder, PairForces,
PairStress): an untrained model is the identity step (and reads only the kinetic stress). Both models save/load as ``.keras`` (identical outputs).
"""

from sagesnet_tf.layers.atom_decoder import AtomDecoder
from sagesnet_tf.layers.cell_autoencoder import CellDecoder, CellEncoder
from sagesnet_tf.layers.coarsener import Coarsener, Refiner
from sagesnet_tf.layers.environment import EnvironmentConv
from sagesnet_tf.layers.heads import CellHeads
from sagesnet_tf.layers.local_energy import LocalEnergy
from sagesnet_tf.layers.mlp import MLP
from sagesnet_tf.layers.pair_forces import PairForces
from sagesnet_tf.layers.pair_stress import PairStress
from sagesnet_tf.layers.predictor import ScatterPredictor
from sagesnet_tf.layers.uncertainty import UncertaintyHead
from sagesnet_tf.layers.virtual_cells import BOUNDARY_MODES, VirtualCells, tile_halo

__all__ = [
    "AtomDecoder", "BOUNDARY_MODES", "CellDecoder", "CellEncoder", "CellHeads", "Coarsener",
    "EnvironmentConv", "LocalEnergy", "MLP", "PairForces", "PairStress", "Refiner", "ScatterPredictor",
    "UncertaintyHead", "VirtualCells", "tile_halo",
]
