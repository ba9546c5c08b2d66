"""A learned local energy with pair, three-body (angle) and four-body (dihedral) terms; forces are its negative gradient.

The learned pair forces (:class:`~sagesnet_tf.layers.PairForces`) are central, so they cannot hold a
bond angle or resist the pyramidalization of an sp² atom; and a learned step that is not the flow
of some Hamiltonian need not share energy evenly among the degrees of freedom (equipartition). This
layer learns an energy instead, and forces ``F = −∂E/∂r`` from it: a velocity-Verlet integrator then
conserves the energy (to its O(dt²) error) and its dynamics is Hamiltonian, whose long-time average
gives every degree of freedom the same kinetic energy (equipartition, once the motions have mixed);
the forces sum to zero (the energy depends on separations only), so momentum is conserved too. The
energy is::

    E = ½ Σ_{i≠j} Σ_f w_f φ_f(r_ij)                                              (pairs, r < cutoff)
      + Σ_i Σ_{j<k ∈ N(i)} Σ_{f,l} u_{fl} ψ_f(r_ij) ψ_f(r_ik) P_l(cos θ_jik)     (angles, r < angle_cutoff)
      + Σ_{i<j ∈ N(i)} Σ_{k ∈ N(i)∖j, l ∈ N(j)∖i} Σ_{f,m} v_{fm} ψ_f(r_ij) s(r_ik) s(r_jl) P_m(cos φ_kijl)
                                                                                 (dihedrals, m = 1 … D)

with φ the pair features of :class:`~sagesnet_tf.layers.grid_pairs.GridPairs` at ``cutoff`` and ψ
those at ``angle_cutoff`` (Gaussian radial functions × the pair's element code, switched off
smoothly at the cutoff), P_l the Legendre polynomials l = 0 … ``legendre_orders − 1`` and θ_jik the
angle at atom i between its neighbours j and k. N(i) are i's bonded neighbours (closer than
``angle_cutoff``). The dihedral term (``dihedral_orders`` D > 0; none by default) counts each bond
(i, j) once (the ordered pair with i < j) and, around it, every neighbour k of i other than j and l
of j other than i (by atom: an atom is never bonded to two images of one atom); φ_kijl is the angle
between the planes (k, i, j) and (i, j, l), ``cos φ = (r_ik × r_ij)·(r_ij × r_jl) / (|r_ik × r_ij|
|r_ij × r_jl|)`` (r_ab = r_b − r_a: +1 when k and l lie flat on opposite sides of the bond, −1 on the
same side), and s the smooth switch of the bonds' radial functions (1 below ``angle_cutoff`` −
:data:`~sagesnet_tf.layers.grid_pairs.TAPER_WIDTH`, 0 at it), so the term fades as an outer bond
breaks. The angle term gives an sp² sheet a bending stiffness through its bond angles; the dihedral
term adds the part that comes from the twist of neighbouring bonds (in REBO about 40 % of graphene's
bending modulus, Lu & Huang 2009). E is LINEAR in its weights (w, u, v): :meth:`design`
gives the forces per unit of each weight, for fitting them exactly by least squares on reference
forces (and :meth:`strain_design` the strain derivatives, for the virial: on a perfect periodic
lattice every force vanishes whatever lattice constant the energy prefers, so forces alone leave
the energy's in-plane stress free). Without the dihedral term there is no out-of-plane term: the
three bond angles around an sp² atom sum to 360° only when it is flat, so the angle term resists
pyramidalization (docs/BENCHMARKS.md, "A learned local energy", measures the bending and
equipartition it gives).

Everything is core TensorFlow (the gradient is a ``tf.GradientTape`` over the atoms' grid offsets,
or over their positions in :meth:`LocalEnergy.energy_forces`), so a ``tf.function`` computing the
forces serves from a SavedModel. The neighbours are searched once, at ``cutoff`` (the bonds are the
pairs closer than ``angle_cutoff``), outside the tape, which covers only the found pairs'
separations (the angles' triplets and the dihedrals' quadruplets are indexed there too);
:meth:`LocalEnergy.call` contracts the weights with the element and Legendre factors before the
radial ones and never forms the features. Energy and forces of the 960-atom periodic 12 × 20 sheet
take ~7 ms on one CPU thread at cutoff 3.2 Å, ~6 ms at 2.9 Å and ~9 ms at 2.9 Å with
``dihedral_orders`` 3 (111 ms with one search per cutoff inside the tape and the features formed;
session 15). A step of a simulation keeps the search as a Verlet list instead
(:meth:`LocalEnergy.neighbour_list`: the pairs within ``cutoff`` + a skin with their periodic
images, read from positions by :meth:`LocalEnergy.energy_forces` while
:meth:`LocalEnergy.neighbour_list_holds`), with a second level: the candidate pairs within the
search window's widest reach, among which a list that no longer holds is measured again instead
of searched while they hold (the same list, bit for bit). At the shipped 2.0 Å with 3 dihedral
orders, on the equilibrated 300 K sheet (one TensorFlow thread, session 18, shared cores): ~5 ms
for energy and forces from the list; a rebuild every ~5 steps of 2 fs, 3.2 ms among the
candidates (voxels 0.5, the candidates within reach and their grid separations 1.2, bonds,
angles and dihedrals 1.4), and about every fifth one (the candidates hold ~20 steps) a search,
6.2 ms (the window search 3.3: ~26 occupied window slots per atom measured); before the second
level every rebuild was a search, 6.2 ms (XLA compilation of ``energy_forces`` measured 4.5 ms
against 5.4 in session 16, and would recompile for every list size). The ``"outer"`` angle basis
(v3) costs no more than the diagonal one: its energy is a bilinear form of each triplet's two
bonds' Gaussians (:meth:`LocalEnergy._energy`) and every outer product is two matmuls
(:func:`outer_product`); session 19, same sheet and thread, CPU time, the v3 layer's forces
from the list 3.6–4.0 ms (4.6–5.2 with the four gathers per triplet and broadcast products
before), and v3's served step 4.2 ms against 5.3 before and v2's 4.9.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from sagesnet_tf.grid import VELOCITY_SCALE, split_slot_features
from sagesnet_tf.layers.grid_pairs import GridPairs, switch

#: Default Legendre orders of the angle term (l = 0 … 3).
LEGENDRE_ORDERS = 4
#: Å⁸: floor of |r_ik × r_ij|² |r_ij × r_jl|² in the dihedral cosine (collinear bonds; ~9 Å⁸ in graphene).
CROSS_FLOOR = 1e-6
#: The radial functions of the angle and dihedral terms (``angle_basis``). ``"diagonal"`` (v1, v2):
#: ψ_f are the bonds' Gaussians (:class:`~sagesnet_tf.layers.grid_pairs.GridPairs`, 0.1 Å apart and
#: wide) and a triplet's factor is ψ_f(r_ij) ψ_f(r_ik), one Gaussian on both bonds. That product
#: vanishes once the two bonds differ by more than ~0.15 Å, so a stretched bond beside an unstretched
#: one has no angle stiffness: the soft bond rotation of v2's kirigami runs (docs/TRAINING.md, session
#: 18). ``"outer"`` and ``"outer_switch"``: ψ_f are the basis's :data:`OUTER_GAUSSIANS`, and a
#: triplet's factors are every pair of them on its two bonds, ψ_f(r_ij) ψ_g(r_ik) + ψ_g(r_ij) ψ_f(r_ik), f ≤ g.
ANGLE_BASES = ("diagonal", "outer", "outer_switch")
#: Å, (centre, width) of each Gaussian ψ_f of an outer basis. ``"outer"`` (v3, v4): four wide ones, a
#: bond from 1.0 to ~1.9 Å. ``"outer_switch"`` (session 20; no shipped model uses it yet): the same and
#: a narrow one at 1.85 Å, inside REBO's cutoff switch (1.7–2.0 Å), where a stretched bond's neighbours
#: stiffen before it breaks: v4, without it, was 1.0 eV/Å off AIREBO's forces on AIREBO's sheet held at
#: strain 0.25 and relaxed that sheet to 26 % less stress.
OUTER_GAUSSIANS = {"outer": ((1.0, 0.25), (1.25, 0.25), (1.5, 0.25), (1.75, 0.25))}
OUTER_GAUSSIANS["outer_switch"] = OUTER_GAUSSIANS["outer"] + ((1.85, 0.1),)
#: Å, the margin a neighbour list's candidates leave (twice) for the float32 rounding between the
#: separations measured on the grid and those of the positions (:meth:`LocalEnergy.candidate_reach`).
LIST_ROUNDING = 1e-3


def legendre(cosine: tf.Tensor, orders: int) -> tf.Tensor:
    """Legendre polynomials P_0 … P_{orders−1} of ``cosine`` (T,) -> (T, orders) (Bonnet's recursion)."""
    values = [tf.ones_like(cosine), cosine][:orders]
    for n in range(1, orders - 1):
        values.append(((2 * n + 1) * cosine * values[n] - n * values[n - 1]) / (n + 1))
    return tf.stack(values, -1)


def outer_product(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """Each row's outer product, (X, A) and (X, B) -> (X, A·B), column i·B + j: a_i b_j. Two matmuls
    with constant 0/1 matrices (exact: one 1 per column) and one elementwise product: a broadcast
    (X, A, 1) × (X, 1, B) product and its gradient cost TensorFlow on CPU about twice as much."""
    n_a, n_b = a.shape[1], b.shape[1]
    return (tf.matmul(a, np.kron(np.eye(n_a, dtype=np.float32), np.ones((1, n_b), np.float32)))
            * tf.matmul(b, np.tile(np.eye(n_b, dtype=np.float32), (1, n_a))))


def atom_ranges(atom: tf.Tensor, n_atoms: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Where each atom's pairs lie in a pair list whose ``atom`` (P, 2) int64 (batch entry, atom
    i) is sorted (as ``tf.where`` gives it): (R,) int64 the first pair and (R,) int64 the number
    of pairs of each row ``batch entry × N + i`` (R = batch entries × N; ``n_atoms``: N)."""
    n = tf.cast(n_atoms, tf.int64)
    rows = (tf.reduce_max(tf.concat([atom[:, 0], [0]], 0)) + 1) * n
    bounds = tf.searchsorted(atom[:, 0] * n + atom[:, 1], tf.range(rows + 1), side="left", out_type=tf.int64)
    return bounds[:-1], bounds[1:] - bounds[:-1]


def neighbour_triplets(atom: tf.Tensor, n_atoms: tf.Tensor) -> tf.Tensor:
    """Every unordered pair of neighbours of each atom: (T, 2) int64 indices (p, q), p < q, into a
    pair list whose ``atom`` (P, 2) int64 (batch entry, atom i) is sorted (as ``tf.where`` gives it),
    with p and q the pairs (i, j) and (i, k) of one atom i, by atom, then p, then q. ``n_atoms``: N
    atoms per batch entry."""
    first, count = atom_ranges(atom, n_atoms)                                                   # (R,)
    width = tf.reduce_max(tf.concat([count, [0]], 0))                   # K, the most neighbours of an atom
    upper = tf.where(tf.linalg.band_part(tf.ones([width, width]), 0, -1) - tf.eye(width) > 0)   # (C,2) j<k
    found = tf.where(upper[:, 1] < count[:, None])                                      # (T,2) row, combination
    return tf.gather(first, found[:, 0])[:, None] + tf.gather(upper, found[:, 1])


def neighbour_quadruplets(atom: tf.Tensor, other: tf.Tensor, n_atoms: tf.Tensor) -> tf.Tensor:
    """The dihedral quadruplets k–i–j–l of a bond list: (Q, 3) int64 indices (a, b, c) into the bonds
    ``atom`` (Pb, 2) int64 (batch entry, atom i), sorted (as ``tf.where`` gives it), ``other`` (Pb,)
    int64 atom j, listing both directions of every bond: b the bond (i, j) with i < j, a a bond
    (i, k) with k ≠ j, c a bond (j, l) with l ≠ i (by b, then a, then c). ``n_atoms``: N atoms per
    batch entry."""
    n = tf.cast(n_atoms, tf.int64)
    flat = atom[:, 0] * n + atom[:, 1]                                                          # (Pb,)
    central = tf.where(atom[:, 1] < other)[:, 0]                                                # (C,) bonds i<j
    i_flat, j_flat = tf.gather(flat, central), tf.gather(atom[:, 0] * n + other, central)
    i_first, j_first = (tf.searchsorted(flat, f, side="left", out_type=tf.int64) for f in (i_flat, j_flat))
    i_count = tf.searchsorted(flat, i_flat, side="right", out_type=tf.int64) - i_first           # (C,)
    j_count = tf.searchsorted(flat, j_flat, side="right", out_type=tf.int64) - j_first
    rank = tf.range(tf.reduce_max(tf.concat([i_count, j_count, [0]], 0)))                      # (K,)
    last = tf.maximum(tf.size(flat, tf.int64) - 1, 0)
    ik = tf.minimum(i_first[:, None] + rank, last)                                              # (C,K) bonds of i
    jl = tf.minimum(j_first[:, None] + rank, last)                                              # (C,K) bonds of j
    keep_ik = (rank < i_count[:, None]) & (tf.gather(other, ik) != tf.gather(other, central)[:, None])
    keep_jl = (rank < j_count[:, None]) & (tf.gather(other, jl) != tf.gather(atom[:, 1], central)[:, None])
    found = tf.where(keep_ik[:, :, None] & keep_jl[:, None, :])                                 # (Q,3) c,a,b
    return tf.stack([tf.gather_nd(ik, found[:, :2]), tf.gather(central, found[:, 0]),
                     tf.gather_nd(jl, found[:, ::2])], -1)


@keras.saving.register_keras_serializable(package="sagesnet")
class LocalEnergy(keras.layers.Layer):
    """(grid_shape, assignment, atom_features, spacing) -> dict(energy (B,) eV, forces (B,N,3) eV/Å).

    Call args (as :class:`~sagesnet_tf.layers.PairForces`, e.g. from
    :meth:`~sagesnet_tf.simulator.LearnedSimulator.atoms_state`):
        grid_shape: (3,) int32, X, Y, Z of the atom grid the assignment refers to.
        assignment: (B, N, 4) int32, each atom's voxel (ix, iy, iz) and slot.
        atom_features: (B, N, F) float32, each atom's slot features (offset in voxel edges).
        spacing: (B, 3) float32, Å, the voxel edge per axis.

    Args:
        cutoff: Å, range of the pair term.
        angle_cutoff: Å, a neighbour j of i enters the angle term while r_ij < angle_cutoff
            (about the bonded neighbours: 2.0 Å for sp² carbon); at most ``cutoff``.
        h: the atom grid's nominal voxel edge, Å (sets the neighbour window).
        slots: S, atom slots per voxel.
        boundary: per axis ``'periodic'`` or ``'open'``.
        n_elements: element classes in the slot features.
        legendre_orders: L, the angle term's Legendre polynomials P_0 … P_{L−1}.
        dihedral_orders: D, the dihedral term's Legendre polynomials P_1 … P_D (0: no dihedral
            term, the features and weights of the pair and angle terms alone).
        angle_basis: the angle and dihedral terms' radial functions, one of :data:`ANGLE_BASES`.

    Weights: ``energy_weights`` (n_features,) eV, the pair weights w (``n_pair_features``), then the
    angle weights u (``n_angle_features``, radial-major: index f·L + l, f over radial functions (or,
    an outer basis, pairs of them, f ≤ g in row order) × elements), then the dihedral weights v (``n_dihedral_features``, index f·D + m − 1), zero-initialised.
    """

    def __init__(self, cutoff: float, angle_cutoff: float, h: float, slots: int, boundary, n_elements: int = 2,
                 legendre_orders: int = LEGENDRE_ORDERS, dihedral_orders: int = 0, angle_basis: str = "diagonal",
                 **kwargs):
        super().__init__(**kwargs)
        if angle_cutoff > cutoff:
            raise ValueError(f"angle_cutoff {angle_cutoff} Å beyond cutoff {cutoff} Å: the bonds are taken from the "
                             "pairs")
        self.cutoff, self.angle_cutoff, self.h = float(cutoff), float(angle_cutoff), float(h)
        self.slots, self.n_elements, self.legendre_orders = int(slots), int(n_elements), int(legendre_orders)
        self.dihedral_orders = int(dihedral_orders)
        self.boundary = tuple(str(b) for b in boundary)
        self.pairs = GridPairs(cutoff, h, slots, boundary, n_elements, VELOCITY_SCALE)
        self.bonds = GridPairs(angle_cutoff, h, slots, boundary, n_elements, VELOCITY_SCALE)
        if angle_basis not in ANGLE_BASES:
            raise ValueError(f"angle_basis {angle_basis!r}: one of {', '.join(ANGLE_BASES)}")
        self.angle_basis = str(angle_basis)
        n_radial = len(self.bonds.centers) if self.angle_basis == "diagonal" else len(OUTER_GAUSSIANS[self.angle_basis])
        #: (R, 2) int32, an outer basis's pairs (f, g), f ≤ g, in the order of the angle features
        self._outer_pairs = np.array([(f, g) for f in range(n_radial) for g in range(f, n_radial)], np.int32)
        #: (K², R) float32 (outer bases; None: ``"diagonal"``), the symmetrisation that sums a triplet's
        #: products ψ_f(r_ij) ψ_g(r_ik) (row f·K + g, :meth:`_triplet_basis`) into its factors
        #: ψ_f ψ_g + ψ_g ψ_f of the pairs (f, g), f ≤ g (column; 2 ψ_f ψ_f where f = g)
        self._symmetrisation = None
        if self.angle_basis != "diagonal":
            self._symmetrisation = np.zeros((n_radial * n_radial, len(self._outer_pairs)), np.float32)
            for column, (f, g) in enumerate(self._outer_pairs):
                for row in (f * n_radial + g, g * n_radial + f):
                    self._symmetrisation[row, column] += 1.0
        n_angle_radial = n_radial if self.angle_basis == "diagonal" else len(self._outer_pairs)
        self.n_pair_features = self.pairs.n_features
        self.n_angle_features = n_angle_radial * self.n_elements * self.legendre_orders
        self.n_dihedral_features = n_radial * self.n_elements * self.dihedral_orders
        self.n_features = self.n_pair_features + self.n_angle_features + self.n_dihedral_features
        self.energy_weights = self.add_weight(shape=(self.n_features,), initializer="zeros", name="energy_weights")

    def _neighbours(self, grid_shape, assignment, atom_features, spacing, lookahead_ps: float = 0.0) -> dict:
        """The energy's pairs, bonds and angles and their elements: one neighbour search at
        ``cutoff`` (the bonds are the pairs closer than ``angle_cutoff``), no gradient. Args as
        :meth:`call`; returns :meth:`_pair_neighbours`."""
        found = self.pairs.search(grid_shape, assignment, tf.stop_gradient(atom_features), tf.stop_gradient(spacing),
                                  lookahead_ps)
        return self._pair_neighbours(found, atom_features, tf.shape(assignment)[1], self.angle_cutoff)

    def _pair_neighbours(self, found: dict, atom_features, n_atoms, bond_reach) -> dict:
        """The energy's neighbours from the pairs ``found`` by a search
        (:meth:`~sagesnet_tf.layers.grid_pairs.GridPairs.search`) of the atoms ``atom_features`` (B,
        N, F) (``n_atoms`` N), the bonds those closer than ``bond_reach`` () Å.

        Returns:
            dict: ``atom`` (P, 2) int64 (batch entry, atom i), ``other`` (P,) int64 atom j, ``cell``
            (P, 3) float32 voxel edges from i's voxel to j's, ``separation`` (P, 3) Å as searched,
            ``code`` (P, n_el) element code (the pairs, sorted by atom i); ``bond`` (Pb,) int64 the pairs closer than
            ``bond_reach``; ``triplet`` (T, 2) int64 the two bonds (into ``bond``) of each angle j–i–k, ``triplet_code``
            (T, n_el) the product of their element codes, ``triplet_batch`` (T,) int64 its batch entry;
            with ``dihedral_orders``: ``quadruplet`` (Q, 3) int64 the bonds (i, k), (i, j), (j, l) of
            each dihedral k–i–j–l (:func:`neighbour_quadruplets`), ``quadruplet_code`` (Q, n_el) the
            element code of its bond (i, j), ``quadruplet_batch`` (Q,) int64 its batch entry.
        """
        atom, other = found["atom"], found["other"]
        code = self.pairs.element_code(tf.stop_gradient(atom_features), atom, other)
        bond = tf.where(found["distance"] < bond_reach)[:, 0]
        triplet = neighbour_triplets(tf.gather(atom, bond), n_atoms)
        pair_of = tf.gather(bond, triplet)                                                       # (T,2) pairs
        neighbours = {"atom": atom, "other": other, "cell": found["cell"], "separation": found["separation"],
                      "code": code, "bond": bond,
                      "triplet": triplet, "triplet_code": tf.reduce_prod(tf.gather(code, pair_of), 1),
                      "triplet_batch": tf.gather(atom[:, 0], pair_of[:, 0])}
        if self.dihedral_orders:
            quadruplet = neighbour_quadruplets(tf.gather(atom, bond), tf.gather(other, bond), n_atoms)
            central = tf.gather(bond, quadruplet[:, 1])                                          # (Q,) pairs
            neighbours.update(quadruplet=quadruplet, quadruplet_code=tf.gather(code, central),
                              quadruplet_batch=tf.gather(atom[:, 0], central))
        return neighbours

    def _grid_separation(self, neighbours: dict, atom_features, spacing, lookahead_ps: float) -> tf.Tensor:
        """(P, 3) Å, the pairs' r_j − r_i from the atoms' grid offsets (differentiable in
        ``atom_features`` and ``spacing``; ``neighbours``: :meth:`_neighbours`)."""
        return self.pairs.separation(atom_features, neighbours["atom"], neighbours["other"], neighbours["cell"],
                                     spacing, lookahead_ps)

    def _bond_basis(self, distance) -> tf.Tensor:
        """(Pb, K) the angle and dihedral terms' radial functions ψ_f of bonds at ``distance`` (Pb,) Å
        (:data:`ANGLE_BASES`), switched off over the last ``TAPER_WIDTH`` below ``angle_cutoff``."""
        if self.angle_basis == "diagonal":
            return self.bonds.basis(distance)
        centers, widths = (tf.constant(values, tf.float32) for values in zip(*OUTER_GAUSSIANS[self.angle_basis]))
        return tf.exp(-tf.square((distance[:, None] - centers) / widths)) * switch(distance, self.angle_cutoff)[:, None]

    def _triplet_basis(self, first, second) -> tf.Tensor:
        """(T, Kt) a triplet's radial products from its two bonds' :meth:`_bond_basis` ``first``,
        ``second`` (T, K): ψ_f ψ_f (``"diagonal"``, Kt = K: its radial factors) or every ψ_f ψ_g
        (an outer basis, Kt = K², column f·K + g: :func:`outer_product`; its factors are these @
        ``_symmetrisation``)."""
        if self.angle_basis == "diagonal":
            return first * second
        return outer_product(first, second)

    def _terms(self, neighbours: dict, separation) -> dict:
        """The factors of the energy's terms, differentiable in the pairs' ``separation`` (P, 3) Å
        (``neighbours``: :meth:`_neighbours` or :meth:`neighbour_list`): ``pair_basis`` (P, Kp) the pairs' radial functions at
        ``cutoff``; ``angle_basis`` (T, Kt) the two bonds' radial products (:meth:`_triplet_basis`), ``angle_code`` (T, n_el·L) the triplet code × P_l(cos θ), element-major;
        with ``dihedral_orders``: ``dihedral_basis`` (Q, K) the radial functions of the bond (i, j)
        times the switches s(r_ik) s(r_jl), ``dihedral_code`` (Q, n_el·D) its element code ×
        P_m(cos φ), m = 1 … D. A pair feature is pair_basis ⊗ code, an angle feature (angle_basis @
        ``_symmetrisation`` with an outer basis) ⊗ angle_code, a dihedral one dihedral_basis ⊗ dihedral_code."""
        distance = tf.norm(separation, axis=-1)                                                  # (P,) Å
        bond, triplet = neighbours["bond"], neighbours["triplet"]
        bond_separation, bond_distance = tf.gather(separation, bond), tf.gather(distance, bond)
        bond_basis = self._bond_basis(bond_distance)                                             # (Pb, K)
        first, second = tf.gather(bond_separation, triplet[:, 0]), tf.gather(bond_separation, triplet[:, 1])
        cosine = tf.reduce_sum(first * second, -1) / (tf.gather(bond_distance, triplet[:, 0])
                                                       * tf.gather(bond_distance, triplet[:, 1]))
        # the angle code before the dict and the dihedral code before its basis, as before session 19: the ops'
        # order sets that of the gradient's sums, and so v1's and v2's forces bit for bit
        angle_code = outer_product(neighbours["triplet_code"], legendre(cosine, self.legendre_orders))
        terms = {"pair_basis": self.pairs.basis(distance),
                 "angle_basis": self._triplet_basis(tf.gather(bond_basis, triplet[:, 0]),
                                                    tf.gather(bond_basis, triplet[:, 1])),
                 "angle_code": angle_code}
        if self.dihedral_orders:
            quadruplet = neighbours["quadruplet"]
            ik, ij, jl = (tf.gather(bond_separation, quadruplet[:, n]) for n in range(3))        # (Q,3) Å
            first, second = tf.linalg.cross(ik, ij), tf.linalg.cross(ij, jl)                   # plane normals
            cosine = tf.reduce_sum(first * second, -1) * tf.math.rsqrt(tf.maximum(
                tf.reduce_sum(tf.square(first), -1) * tf.reduce_sum(tf.square(second), -1), CROSS_FLOOR))
            outer = tf.gather(switch(bond_distance, self.angle_cutoff), quadruplet[:, ::2])       # (Q,2)
            dihedral_code = outer_product(neighbours["quadruplet_code"], legendre(cosine, self.dihedral_orders + 1)[:, 1:])
            # s(r_ik) s(r_jl) as one product of the columns: tf.reduce_prod's gradient takes two cumulative products
            terms.update(dihedral_basis=tf.gather(bond_basis, quadruplet[:, 1]) * (outer[:, 0] * outer[:, 1])[:, None],
                         dihedral_code=dihedral_code)
        return terms

    def _parts(self, neighbours: dict, terms: dict) -> list:
        """The energy's terms, pair, angle, then dihedral, each (basis (X, Kb), code (X, C), batch
        entry (X,) int64, weight of its sums, mix (Kb, K) or None (the identity)): its features are
        (basis @ mix) ⊗ code (K·C), summed per batch entry. ``neighbours``, ``terms``:
        :meth:`_neighbours`, :meth:`_terms`."""
        parts = [(terms["pair_basis"], neighbours["code"], neighbours["atom"][:, 0], 0.5, None),  # ordered pairs: ½
                 (terms["angle_basis"], terms["angle_code"], neighbours["triplet_batch"], 1.0, self._symmetrisation)]
        if self.dihedral_orders:
            parts.append((terms["dihedral_basis"], terms["dihedral_code"], neighbours["quadruplet_batch"], 1.0, None))
        return parts

    def features(self, grid_shape, assignment, atom_features, spacing, lookahead_ps: float = 0.0) -> tf.Tensor:
        """(B, n_features) the energy's features summed over each structure: E = features · weights.
        ``lookahead_ps``: of the atoms moved this far ahead along their velocities (0: as given)."""
        neighbours = self._neighbours(grid_shape, assignment, atom_features, spacing, lookahead_ps)
        separation = self._grid_separation(neighbours, atom_features, spacing, lookahead_ps)
        return self._features(neighbours, separation, tf.shape(assignment)[0])

    def _features(self, neighbours: dict, separation, n_batch) -> tf.Tensor:
        """:meth:`features` of ``n_batch`` structures from their :meth:`_neighbours` and the pairs'
        ``separation`` (P, 3) Å."""
        terms = self._terms(neighbours, separation)
        sums = []
        for basis, code, batch, weight, mix in self._parts(neighbours, terms):
            if mix is not None:
                basis = tf.matmul(basis, mix)                                                   # (X, K)
            features = tf.reshape(basis[:, :, None] * code[:, None, :], [-1, basis.shape[1] * code.shape[1]])
            sums.append(weight * tf.math.unsorted_segment_sum(features, batch, n_batch))
        return tf.concat(sums, -1)

    def _energy(self, neighbours: dict, separation, n_batch) -> tf.Tensor:
        """(B,) eV, :meth:`_features` · weights without forming the features: the weights are
        contracted with the element (and Legendre) factors first, then with the radial ones (the
        outer bases' angle term's mixed into its products' first: a (K², C) bilinear form of each
        triplet's two bonds, no radial factors formed)."""
        terms = self._terms(neighbours, separation)
        energy, start = None, 0
        for basis, code, batch, weight, mix in self._parts(neighbours, terms):
            width = (basis.shape[1] if mix is None else mix.shape[1]) * code.shape[1]
            weights = tf.reshape(self.energy_weights[start:start + width], [-1, code.shape[1]])       # (K, C)
            start += width
            if mix is not None:
                weights = tf.matmul(mix, weights)                                                 # (Kb, C)
            term = weight * tf.math.unsorted_segment_sum(
                tf.reduce_sum(basis * tf.matmul(code, weights, transpose_b=True), -1), batch, n_batch)
            energy = term if energy is None else energy + term
        return energy

    @property
    def _offsets(self) -> slice:
        """The offset columns of the slot features (see :mod:`sagesnet_tf.grid`)."""
        return slice(1 + self.n_elements, 4 + self.n_elements)

    def call(self, grid_shape, assignment, atom_features, spacing, lookahead_ps: float = 0.0):
        """See class docstring for shapes and units; ``lookahead_ps``: the energy and forces of the
        atoms moved this far ahead along their velocities (0: as given)."""
        neighbours = self._neighbours(grid_shape, assignment, atom_features, spacing, lookahead_ps)
        n_batch = tf.shape(assignment)[0]
        with tf.GradientTape() as tape:
            tape.watch(atom_features)
            energy = self._energy(neighbours, self._grid_separation(neighbours, atom_features, spacing, lookahead_ps),
                                  n_batch)
        gradient = tape.gradient(energy, atom_features)[..., self._offsets]     # (B,N,3) eV/offset
        return {"energy": energy, "forces": -gradient / spacing[:, None, :]}

    def neighbour_list(self, grid_shape, assignment, atom_features, spacing, positions, box, lookahead_ps: float = 0.0,
                       skin: float = 0.0, candidates: dict | None = None) -> dict:
        """The energy's neighbours as a list that :meth:`energy_forces` reads from positions, valid
        for later positions while :meth:`neighbour_list_holds` (a Verlet list with a skin, as
        LAMMPS's ``neighbor skin``: rebuilt only when atoms have moved far enough to matter).

        A list with a skin is two-level: it also keeps its ``candidates``, the pairs within the
        widest reach of the search window (:meth:`candidate_reach`), which hold for longer (a
        margin of ~0.9 Å against the list's 0.3 on the shipped model's 300 K sheet). Given them
        back, a rebuild measures the new list among them while they hold
        (:meth:`neighbour_list_holds` on them;
        :meth:`~sagesnet_tf.layers.grid_pairs.GridPairs.search_among`) instead of searching every
        atom's window, and equals a new search bit for bit (same pairs, order, separations, angles
        and dihedrals); once they no longer hold, it searches (new candidates).

        Args:
            grid_shape, assignment, atom_features, spacing, lookahead_ps: the atoms on their grid,
                as :meth:`call` takes them (the search).
            positions: (B, N, 3) Å, the same atoms' positions moved ``lookahead_ps`` ahead (any
                periodic image: unwrapped is fine), where the energy will be taken.
            box: (B, 3) Å, the orthorhombic box lengths.
            skin: float Å, the list holds the pairs closer than ``cutoff`` + skin and the bonds closer than
                ``angle_cutoff`` + skin; a skin wider than the neighbour window allows (the voxels'
                :meth:`~sagesnet_tf.layers.grid_pairs.GridPairs.max_reach`) is narrowed to it.
            candidates: None (a new search), or the ``candidates`` of a list this method returned
                for these atoms (positions unwrapped alike).

        Returns:
            dict: the neighbours of :meth:`_pair_neighbours` without their grid cells, with ``image``
            (P, 3) float32, each pair's periodic image of j (box lengths to add to r_j − r_i),
            ``reference`` (B, N, 3) Å the ``positions`` searched, ``reference_box`` (B, 3) Å and
            ``skin`` () Å the skin used; with a skin (or ``candidates``) ``candidates``: dict of
            ``atom`` (C, 2) int64, ``other`` (C,) int64 the candidate pairs and ``image`` (C, 3)
            float32 theirs, and ``reference``, ``reference_box`` and ``skin`` () Å as a list's
            (negative: they never hold), for :meth:`neighbour_list_holds`.
        """
        skin_limit = skin
        skin = tf.clip_by_value(self.pairs.max_reach(spacing) - self.cutoff, 0.0, skin)
        reach = self.cutoff + skin
        grid = (grid_shape, assignment, tf.stop_gradient(atom_features), tf.stop_gradient(spacing))

        def search() -> tuple[dict, dict]:
            """The pairs within reach of a window search at the candidates' reach, and the candidates."""
            wide, margin = self.candidate_reach(atom_features, spacing, lookahead_ps, reach)
            found = self.pairs.search(*grid, lookahead_ps, tf.maximum(wide, reach))
            near = tf.where(found["distance"] < reach)[:, 0]
            return {key: tf.gather(value, near) for key, value in found.items()}, {
                "atom": found["atom"], "other": found["other"],
                "image": self._image(found["atom"], found["other"], found["separation"], positions, box),
                "reference": positions, "reference_box": box, "skin": margin}

        def among() -> tuple[dict, dict]:
            """The pairs within reach measured among the ``candidates`` (only those within reach at
            the positions, where the grid's separations differ by rounding alone), and the candidates."""
            separation = self._list_separation(candidates, positions) + self._shift(candidates, box)    # (C,3) Å
            near = tf.where(tf.norm(separation, axis=-1) < reach + LIST_ROUNDING)[:, 0]
            return self.pairs.search_among(tf.gather(candidates["atom"], near), tf.gather(candidates["other"], near),
                                           *grid, lookahead_ps, reach), candidates

        if candidates is not None:
            found, candidates = tf.cond(self.neighbour_list_holds(candidates, positions, box), among, search)
        elif skin_limit:
            found, candidates = search()
        else:
            found = self.pairs.search(*grid, lookahead_ps, reach)
        neighbours = self._pair_neighbours(found, atom_features, tf.shape(assignment)[1], self.angle_cutoff + skin)
        neighbours.pop("cell")
        image = self._image(neighbours["atom"], neighbours["other"], neighbours.pop("separation"), positions, box)
        kept = {} if candidates is None else {"candidates": candidates}
        return {**neighbours, "image": image, "reference": positions, "reference_box": box, "skin": skin, **kept}

    def _image(self, atom, other, separation, positions, box) -> tf.Tensor:
        """(P, 3) float32, the periodic image of j (box lengths to add to r_j − r_i at ``positions``
        (B, N, 3) Å in boxes ``box`` (B, 3) Å) of the pairs ``atom`` (P, 2), ``other`` (P,) found at
        ``separation`` (P, 3) Å; 0 along open axes."""
        periodic = tf.constant([b == "periodic" for b in self.boundary])
        unshifted = self._list_separation({"atom": atom, "other": other}, positions)
        return tf.where(periodic, tf.round((separation - unshifted) / tf.gather(box, atom[:, 0])), 0.0)

    def candidate_reach(self, atom_features, spacing, lookahead_ps, reach) -> tuple[tf.Tensor, tf.Tensor]:
        """The reach () Å of a :meth:`neighbour_list`'s candidates and their margin () Å over the
        list's ``reach`` () Å (their skin): the widest the window sees of pairs at the atoms'
        lookahead positions (:meth:`~sagesnet_tf.layers.grid_pairs.GridPairs.max_reach` less twice
        the farthest an atom moves in ``lookahead_ps``, since the window is that of the atoms' voxels)
        and :data:`LIST_ROUNDING` less. No margin (−1: the candidates never hold) when an atom was
        spilled from its voxel (an offset outside [0, 1): the window may miss its near pairs).
        ``atom_features`` (B, N, F), ``spacing`` (B, 3) Å as :meth:`call` takes them."""
        slots = split_slot_features(tf.stop_gradient(atom_features), self.n_elements)
        drift = 2.0 * abs(lookahead_ps) * self.pairs.velocity_scale * tf.reduce_max(tf.norm(slots["velocities"], axis=-1))
        wide = self.pairs.max_reach(tf.stop_gradient(spacing)) - drift - LIST_ROUNDING
        placed = tf.reduce_all((slots["offsets"] >= 0.0) & (slots["offsets"] < 1.0))
        return wide, tf.where(placed, wide - reach - LIST_ROUNDING, -1.0)

    @staticmethod
    def _list_separation(neighbours: dict, positions) -> tf.Tensor:
        """(P, 3) Å, r_j − r_i of the list's pairs from ``positions`` (B, N, 3), the images left out."""
        atom = neighbours["atom"]
        return tf.gather_nd(positions, tf.stack([atom[:, 0], neighbours["other"]], -1)) - tf.gather_nd(positions, atom)

    @staticmethod
    def _shift(neighbours: dict, box) -> tf.Tensor:
        """(P, 3) Å, what the list's pairs' periodic ``image`` adds to their r_j − r_i in boxes ``box`` (B, 3) Å."""
        return neighbours["image"] * tf.gather(box, neighbours["atom"][:, 0])

    @staticmethod
    def neighbour_list_holds(neighbours: dict, positions, box) -> tf.Tensor:
        """() bool: the :meth:`neighbour_list` ``neighbours`` still holds every pair (and bond) of
        the atoms at ``positions`` (B, N, 3) Å in boxes ``box`` (B, 3) Å: twice the largest
        displacement since the search plus the change of the box (its norm) is within the skin. A
        pair's separation r_j − r_i + n·L changes by at most that (|n_a| ≤ 1: a periodic axis holds
        at least 2·radius + 1 voxels), so no pair left out can have come within the cutoff."""
        moved = tf.reduce_max(tf.norm(positions - neighbours["reference"], axis=-1))
        stretched = tf.reduce_max(tf.norm(box - neighbours["reference_box"], axis=-1))
        return 2.0 * moved + stretched <= neighbours["skin"]

    def energy_forces(self, neighbours: dict, positions, box) -> dict:
        """The energy (B,) eV, forces (B, N, 3) eV/Å and strain derivatives (B, 3) eV of the atoms at
        ``positions`` (B, N, 3) Å in boxes ``box`` (B, 3) Å, over the pairs of the
        :meth:`neighbour_list` ``neighbours`` (equal to :meth:`call`'s at those positions while
        :meth:`neighbour_list_holds`). ``strain_derivative``: dE/dε_aa of a homogeneous strain of each
        axis, Σ_pairs r_a ∂E/∂r_a (as :meth:`strain_design` · weights; the virial W_aa = −dE/dε_aa);
        ``atom_strain_derivative`` (B, N, 3) eV: the same sum over the pairs of each atom as their
        first atom i (r = r_j − r_i), so that its sum over the atoms is ``strain_derivative`` (to
        float32 rounding: summed in another order): the per-atom split of the diagonal virial, whose
        sum over any set of atoms without pairs to the others (a ribbon of a stack) is that set's own."""
        shift = self._shift(neighbours, box)
        with tf.GradientTape() as tape:
            tape.watch(positions)
            separation = self._list_separation(neighbours, positions) + shift
            energy = self._energy(neighbours, separation, tf.shape(positions)[0])
        position_gradient, separation_gradient = tape.gradient(energy, [positions, separation])
        pair_derivative = separation * separation_gradient                                      # (P,3) eV
        strain_derivative = tf.math.unsorted_segment_sum(pair_derivative, neighbours["atom"][:, 0],
                                                         tf.shape(positions)[0])
        atom_strain_derivative = tf.scatter_nd(neighbours["atom"], pair_derivative,
                                               tf.shape(positions, out_type=neighbours["atom"].dtype))   # (B,N,3)
        return {"energy": energy, "forces": -position_gradient, "strain_derivative": strain_derivative,
                "atom_strain_derivative": atom_strain_derivative}

    def design(self, grid_shape, assignment, atom_features, spacing, lookahead_ps: float = 0.0) -> tf.Tensor:
        """The forces as a linear function of the weights (n_features,): forces = design · weights
        (``lookahead_ps`` as in :meth:`call`).

        Returns:
            (B, N, 3, n_features) eV/Å per unit of each weight (for fitting the weights by least squares).
        """
        neighbours = self._neighbours(grid_shape, assignment, atom_features, spacing, lookahead_ps)
        n_batch = tf.shape(assignment)[0]
        with tf.GradientTape() as tape:
            tape.watch(atom_features)
            features = self._features(
                neighbours, self._grid_separation(neighbours, atom_features, spacing, lookahead_ps), n_batch)
        jacobian = tape.batch_jacobian(features, atom_features)[..., self._offsets]  # (B,F,N,3)
        return -tf.transpose(jacobian, [0, 2, 3, 1]) / spacing[:, None, :, None]

    def strain_design(self, grid_shape, assignment, atom_features, spacing, lookahead_ps: float = 0.0) -> tf.Tensor:
        """The energy's derivatives under a homogeneous strain of each axis, linear in the weights:
        dE/dε_aa = strain_design · weights (the virial W_aa = −dE/dε_aa).

        Straining axis a scales every separation's a-component (the voxel edge ``spacing[:, a]``
        with the offsets kept), and a periodic axis's box length with it.

        Returns:
            (B, 3, n_features) eV per unit of each weight, the axes x, y, z.
        """
        neighbours = self._neighbours(grid_shape, assignment, atom_features, spacing, lookahead_ps)
        n_batch = tf.shape(assignment)[0]
        derivatives = []
        for axis in range(3):  # forward mode: one pass per axis instead of one per feature
            with tf.autodiff.ForwardAccumulator(spacing, tf.one_hot([axis], 3) * spacing) as accumulator:
                features = self._features(
                    neighbours, self._grid_separation(neighbours, atom_features, spacing, lookahead_ps), n_batch)
            derivatives.append(accumulator.jvp(features))
        return tf.stack(derivatives, 1)

    def get_config(self):
        return {**super().get_config(), "cutoff": self.cutoff, "angle_cutoff": self.angle_cutoff, "h": self.h,
                "slots": self.slots, "boundary": list(self.boundary), "n_elements": self.n_elements,
                "legendre_orders": self.legendre_orders, "dihedral_orders": self.dihedral_orders,
                "angle_basis": self.angle_basis}
