"""Many kirigami ribbons of one tension protocol stretched together: one model call steps them all.

A model call on the quick protocol's ~160-atom ribbon is mostly TensorFlow's per-op overhead
(0.86 ms a step; six such ribbons in one call cost about what one does), so
:class:`BatchedTension` stacks the ribbons of a batch along z, the model's open axis, into one
structure: every ribbon of a :class:`~sagesnet_tf.kirigami_tension.KirigamiTension` protocol has
the same cells (nx, ny), hence the same x/y box, and the ribbons lie
:data:`STACK_GAP_A` or a little more apart (whole grid cells). The local energy's pairs reach :data:`~sagesnet_tf.simulator.NEIGHBOUR_SKIN`
beyond its cutoff (2.0 + 0.3 Å for the shipped model), so no pair joins two ribbons and each
ribbon's dynamics are its own: the ``serving_default`` signature steps the stack as it steps one
ribbon. A model whose step reads its latent grid (an atom decoder, whose convolutions reach across
cells) would couple them; only models stepping by their local energy alone (``atom_decoder:
false``, with the ``atom_virial`` output) are batched. The per-atom ``uncertainty`` is read from the
encoder's cells, the ribbons whole cells apart: it is a ribbon's own (tested at 0 K) while the
ribbons' lowest atoms, which set where each lies in its cells, move alike (sub-Å ripples).

The protocol runs as :func:`~sagesnet_tf.simulate.simulate` runs it for one ribbon, through the
same pieces: the ribbons placed in the model's frame (:func:`~sagesnet_tf.io.model_frame.to_model_frame`),
the signature called by :func:`~sagesnet_tf.simulate.signature_advance` inside
:class:`~sagesnet_tf.rollout.Rollout` (calls, divergence guard), first
:data:`~sagesnet_tf.simulate.DEFAULT_EQUILIBRATE_PS` with the box held, then the stretch at the
protocol's rate with a frame every ``every`` model steps. Per ribbon and frame: the strain (the
shared box's), σ_xx in GPa by simulate's thermo.csv formula
(:func:`~sagesnet_tf.analysis.stress_strain.sheet_stress_gpa` of the ribbon's Σ ``atom_virial``
minus its kinetic part, its own nominal width and thickness), its temperature and mean
uncertainty. Each ribbon stops on its own: past its stress peak
(:class:`~sagesnet_tf.md.protocols.EarlyStop`), diverged (:func:`~sagesnet_tf.rollout.divergence_reason`
on its own atoms) or at the max strain; its :class:`RibbonRun` is handed to the caller at once and
its atoms leave the stack, which runs on until every ribbon has stopped.

Thermostat: the run's Langevin (simulate's default, :func:`~sagesnet_tf.simulate.resolve_ensemble`)
is applied to each ribbon on its own, after every call, with random numbers from
:func:`ribbon_seed` (the screen's seed and the pattern) and the step, and each ribbon's initial
velocities are drawn with that seed: a ribbon's run does not depend on which ribbons share its
batch, nor on its place in it, up to float32 rounding (sums over the stack in another order, its z
offset). A call spans what :class:`~sagesnet_tf.rollout.Rollout` gives a thermostatted run.

A ribbon that comes within the energy's reach (plus :data:`REACH_MARGIN_A`) of the next one
(buckled out of plane, or broken and curling up past its yield) is checked at every frame: the
stack is then spread, every ribbon above moved up by whole grid cells (:meth:`BatchedTension._spread`).
A failed call (an in-graph check: NaN, an atom escaped) or a stack-level divergence that no ribbon
shows on its own cannot be pinned on one ribbon: :meth:`BatchedTension.run` returns the ribbons
still running then, which the caller runs again, each alone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import numpy as np

from sagesnet_tf.analysis.stress_strain import nominal_thickness, nominal_width, sheet_stress_gpa
from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io.model_frame import to_model_frame
from sagesnet_tf.kirigami_tension import KirigamiTension
from sagesnet_tf.layers.pair_stress import kinetic_stress
from sagesnet_tf.md.protocols import EarlyStop
from sagesnet_tf.rollout import Frame, Rollout, State, Thermostat, divergence_reason
from sagesnet_tf.savedmodel import load_exported
from sagesnet_tf.simulate import DEFAULT_EQUILIBRATE_PS, env_vector, resolve_ensemble, signature_advance
from sagesnet_tf.simulator import NEIGHBOUR_SKIN
from sagesnet_tf.thermo import maxwell_boltzmann_velocities, temperature_k

#: Å, at least this between the levels of stacked ribbons (each ribbon's lowest atom; the flat
#: ribbons start that far apart), and between a ribbon's highest atom and the next one's lowest when
#: the stack is spread. The energy's pairs reach 2.3 Å (cutoff 2.0 + skin 0.3); a quick ribbon
#: buckles out of plane to 2–6 Å thick before its yield, and past it curls up to 16 Å (32 random
#: patterns, docs/SCREEN.md), so the stack is spread now and then (:data:`REACH_MARGIN_A`). The
#: pitch used is the smallest whole number of grid cells h not below this
#: (:attr:`BatchedTension.pitch`), so that every ribbon sits on the atom grid (whose open-axis
#: origin is the lowest atom) as it would alone: the per-atom uncertainty, read from the atoms'
#: voxels, depends on where in its cell an atom lies.
STACK_GAP_A = 10.0
#: Å: a ribbon whose atoms come within the energy's reach plus this of the next ribbon's spreads the
#: stack: between two frames (10 steps of 2 fs) no atom moves that far.
REACH_MARGIN_A = 1.0
#: The status of a ribbon stopped past its stress peak, of one that reached the max strain
#: (simulate's manifest statuses), and the prefix of one that diverged.
STOPPED, COMPLETED, DIVERGED = "completed: stopped past the stress peak", "completed", "diverged: "


def unbatchable(model_dir) -> str | None:
    """Why the exported model in ``model_dir`` cannot step stacked ribbons apart, or None: it needs
    a step by the local energy alone (``atom_decoder: false``; an atom decoder reads the latent
    grid, whose convolutions reach across the gap) and the ``atom_virial`` output."""
    loaded, meta = load_exported(model_dir)
    if meta["model_config"].get("atom_decoder", True):
        return (f"{model_dir} steps through its latent grid (an atom decoder), which would couple stacked "
                "ribbons")
    if "atom_virial" not in loaded.signatures["serving_default"].structured_outputs:
        return f"{model_dir} has no atom_virial output (exported before it); export it again with this version"
    return None


def ribbon_seed(seed: int, pattern: str) -> int:
    """The seed of a pattern's initial velocities and thermostat in a screen with ``seed``: one per
    (seed, pattern), whatever batch the ribbon runs in."""
    return (seed << len(pattern)) + int(pattern, 2)


@dataclasses.dataclass
class RibbonRun:
    """One ribbon's stretch. ``strain``, ``stress_GPa`` (σ_xx), ``temperature_K``, ``uncertainty``
    (the mean over its atoms): one entry per frame of the stretch, the first at its start (strain 0,
    stress and uncertainty 0, as simulate's thermo.csv); empty when the ribbon diverged before.
    ``status``: :data:`STOPPED`, :data:`COMPLETED` or :data:`DIVERGED` + why."""

    pattern: str
    n_atoms: int
    strain: list[float] = dataclasses.field(default_factory=list)
    stress_GPa: list[float] = dataclasses.field(default_factory=list)
    temperature_K: list[float] = dataclasses.field(default_factory=list)
    uncertainty: list[float] = dataclasses.field(default_factory=list)
    status: str = ""


@dataclasses.dataclass(eq=False)
class _Ribbon:
    """A ribbon of the stack: its run, atoms in the model's frame (z at its stack level), masses
    (N,) g/mol, nominal width and thickness Å, seed and early stop (compared by identity)."""

    run: RibbonRun
    atoms: Atoms
    masses: np.ndarray
    width: float
    thickness: float
    seed: int
    stop: EarlyStop


class BatchedTension:
    """A protocol's stretch of many ribbons per model call (module docstring).

    Args:
        protocol: the :class:`KirigamiTension` (ribbon size, rate, temperature, early stop).
        model_dir: an exported model version directory (local energy step, ``atom_virial`` output).
        max_strain: the stretch ends here at the latest.
        seed: the screen's seed (:func:`ribbon_seed`).
        every: model steps per frame.
        equilibrate_ps: the equilibration before the stretch (box held), ps.
    """

    def __init__(self, protocol: KirigamiTension, model_dir, max_strain: float, seed: int, every: int,
                 equilibrate_ps: float = DEFAULT_EQUILIBRATE_PS):
        self.protocol, self.max_strain, self.seed, self.every = protocol, max_strain, seed, every
        why = unbatchable(model_dir)
        if why:
            raise SagesnetError(f"batched tension: {why}")
        loaded, self.meta = load_exported(model_dir)
        config = self.meta["model_config"]
        self.signature = loaded.signatures["serving_default"]
        #: Å, the closest two ribbons may come: the energy's pairs' reach plus a margin
        self.min_gap = float(config["energy_cutoff"]) + NEIGHBOUR_SKIN + REACH_MARGIN_A
        self.pbc = np.array([b != "open" for b in self.meta["boundary"]])
        self.periodic_y = bool(self.pbc[1])
        self.delta = float(self.meta["delta_ps"])
        self.n_equilibrate = math.ceil(equilibrate_ps / self.delta - 1e-9)
        self.n_stretch = math.ceil(max_strain / (protocol.strain_rate_per_ps * self.delta) - 1e-9)
        _, self.thermostat = resolve_ensemble(protocol.temperature_K, None, None, None)

    # ---- the stack -----------------------------------------------------------------------------
    @property
    def pitch(self) -> float:
        """Å between the levels of the stack: :data:`STACK_GAP_A` rounded up to whole grid cells."""
        h = float(self.meta["h"])
        return h * math.ceil(STACK_GAP_A / h - 1e-9)

    def _ribbon(self, pattern: str, level: int) -> _Ribbon:
        """The ribbon of ``pattern`` in the model's frame, its lowest atom at z = level·pitch +
        :data:`STACK_GAP_A`/2 (the stack's box starts at 0)."""
        atoms = to_model_frame(self.protocol.ribbon(pattern, self.periodic_y), self.meta["boundary"]).atoms
        z = atoms.positions[:, 2]
        atoms.positions[:, 2] = z - z.min() + level * self.pitch + 0.5 * STACK_GAP_A
        seed = ribbon_seed(self.seed, pattern)
        temperature = self.protocol.temperature_K
        atoms.velocities = (maxwell_boltzmann_velocities(atoms.masses, temperature, seed) if temperature
                            else np.zeros_like(atoms.positions))
        return _Ribbon(RibbonRun(pattern, len(atoms)), atoms, atoms.masses, nominal_width(atoms, "x"),
                       nominal_thickness(atoms), seed, EarlyStop())

    def run(self, patterns: list[str], on_done: Callable[[RibbonRun], None], progress: bool = False) -> list[str]:
        """Run the protocol on ``patterns`` stacked; ``on_done(run)`` as each ribbon stops. Returns
        the patterns that left the stack unfinished (module docstring; none when it holds one
        ribbon), to run again alone."""
        ribbons = [self._ribbon(p, k) for k, p in enumerate(patterns)]
        cells = {tuple(np.round(np.diag(r.atoms.cell)[:2], 6)) for r in ribbons}
        if len(cells) != 1:
            raise SagesnetError(f"batched tension: the ribbons' x/y boxes differ ({sorted(cells)}); a batch needs "
                                "ribbons of one protocol")
        lengths0 = np.array([*np.diag(ribbons[0].atoms.cell)[:2], len(ribbons) * self.pitch], np.float32)
        state = State(np.concatenate([r.atoms.positions for r in ribbons]).astype(np.float32),
                      np.concatenate([r.atoms.velocities for r in ribbons]).astype(np.float32), lengths0, 0)
        active, retry = ribbons, []
        for stretching, end in ((False, self.n_equilibrate), (True, self.n_equilibrate + self.n_stretch)):
            if stretching:
                for r, part in zip(active, _slices(active)):  # the stretch's first point, as simulate's thermo.csv
                    r.run.strain.append(0.0), r.run.stress_GPa.append(0.0), r.run.uncertainty.append(0.0)
                    r.run.temperature_K.append(temperature_k(state.velocities[part], r.masses))
            state, active = self._phase(state, active, lengths0, stretching, end, on_done, retry, progress)
        for r in active:
            r.run.status = COMPLETED
            on_done(r.run)
        return [r.run.pattern for r in retry]

    # ---- one phase: equilibration or stretch ---------------------------------------------------
    def _phase(self, state: State, active: list[_Ribbon], lengths0: np.ndarray, stretching: bool, end: int,
               on_done: Callable[[RibbonRun], None], retry: list[_Ribbon], progress: bool):
        """Run the ``active`` ribbons to model step ``end``, the stack re-formed without each ribbon
        that stops (handed to ``on_done``) or must run again alone (added to ``retry``); returns the
        state and the ribbons still running."""
        rate = self.protocol.strain_rate_per_ps if stretching else 0.0
        while active and state.step < end:
            finished: list[_Ribbon] = []
            crowded: list[bool] = []

            def observe(state: State, res) -> Frame:
                atoms = Atoms(np.concatenate([r.atoms.symbols for r in active]), state.positions,
                              np.diag(state.box_lengths), self.pbc, state.velocities)
                return Frame(atoms, temperature_k(state.velocities, atoms.masses), self.protocol.temperature_K)

            def on_frame(state: State, res, frame: Frame) -> bool:
                finished.extend(self._record(state, res, active, lengths0, stretching))
                crowded.append(self._crowded(state, active))
                return bool(finished) or crowded[-1]

            result = self._rollout(active, lengths0, rate, progress).run(state, end, self.every, observe, on_frame)
            leaving = list(finished)
            if result.diverged:  # the stack's own check or a call failed: what each ribbon shows on its own
                if result.frame is not None:
                    leaving += self._record(result.state, result.readouts, active, lengths0, stretching)
                if not leaving and len(active) == 1:
                    active[0].run.status = DIVERGED + result.diverged
                    leaving = active
                elif not leaving:  # no ribbon to blame: each runs again alone
                    retry.extend(active)
                    return result.state, []
            for r in leaving:
                on_done(r.run)
            keep = np.concatenate([np.full(r.run.n_atoms, r not in leaving) for r in active])
            state = State(result.state.positions[keep], result.state.velocities[keep], result.state.box_lengths,
                          result.state.step)
            active = [r for r in active if r not in leaving]
            if crowded and crowded[-1]:
                state = self._spread(state, active)
        return state, active

    def _rollout(self, active: list[_Ribbon], lengths0: np.ndarray, rate: float, progress: bool) -> Rollout:
        """The rollout of the stack of ``active`` ribbons at ``rate`` 1/ps: the signature's calls
        (their span a thermostatted run's), each followed by every ribbon's own thermostat update."""
        masses = np.concatenate([r.masses for r in active])
        species = np.array([self.meta["elements"].index(s) for r in active for s in r.atoms.symbols], np.int32)

        def env_of(state: State) -> np.ndarray:
            return env_vector(self.meta, self.protocol.temperature_K, rate, float(state.box_lengths[0] / lengths0[0] - 1))

        call = signature_advance(self.signature, species, self.pbc, lengths0, 0, rate, env_of)
        limit = self.meta.get("limits", {}).get("max_steps_per_call")
        t = self.thermostat
        thermostat = t and Thermostat(t["kind"], t["tau_ps"], self.protocol.temperature_K, masses,
                                      groups=tuple(zip(_slices(active), (r.seed for r in active))))
        return Rollout(call, self.delta, 1, limit, thermostat, progress=progress, desc="batch")

    def _record(self, state: State, res, active: list[_Ribbon], lengths0: np.ndarray, stretching: bool) -> list:
        """Check each ribbon of a frame on its own and, in the stretch, add its point; the ribbons
        that stop here (diverged, or past their peak), their status set."""
        virial = res["atom_virial"].numpy()[:, 0]
        masses = np.concatenate([r.masses for r in active])[:, None]
        kinetic = kinetic_stress(res["velocities"].numpy(), masses).numpy()[:, 0]          # (N,) bar·Å³, m v_x²
        uncertainty = res["uncertainty"].numpy()
        strain = float(state.box_lengths[0] / lengths0[0] - 1.0)
        stopped = []
        for r, part in zip(active, _slices(active)):
            velocities = state.velocities[part]
            temperature = temperature_k(velocities, r.masses)
            frame = r.atoms.copy()
            frame.positions, frame.velocities = state.positions[part], velocities
            frame.cell = np.diag([*state.box_lengths[:2], r.atoms.cell[2, 2]])
            reason = divergence_reason(frame, temperature, self.protocol.temperature_K)
            if stretching:
                stress = sheet_stress_gpa(float(np.sum(virial[part]) - np.sum(kinetic[part])),
                                          float(state.box_lengths[0]), r.width, r.thickness)
                r.run.strain.append(strain), r.run.stress_GPa.append(float(stress))
                r.run.temperature_K.append(temperature), r.run.uncertainty.append(float(np.mean(uncertainty[part])))
            if reason:
                r.run.status = DIVERGED + reason
            elif stretching and self.protocol.early_stop and r.stop.update(strain, r.run.stress_GPa[-1]):
                r.run.status = STOPPED
            else:
                continue
            stopped.append(r)
        return stopped

    def _crowded(self, state: State, active: list[_Ribbon]) -> bool:
        """Whether a ribbon's atoms came within :attr:`min_gap` of the next ribbon's along z."""
        extents = [(state.positions[p, 2].min(), state.positions[p, 2].max()) for p in _slices(active)]
        return any(upper[0] - lower[1] < self.min_gap for lower, upper in zip(extents, extents[1:]))

    def _spread(self, state: State, active: list[_Ribbon]) -> State:
        """The stack with each ribbon moved up, by whole grid cells (its place in its cells kept),
        until its lowest atom is :data:`STACK_GAP_A` or more above the highest of the one below; the
        box's open z grown to hold them. A ribbon's dynamics do not change with its height."""
        h = float(self.meta["h"])
        positions, box = state.positions.copy(), state.box_lengths.copy()
        shift, top = 0.0, None
        for part in _slices(active):
            if top is not None:
                shift += h * max(0, math.ceil((top + STACK_GAP_A - positions[part, 2].min() - shift) / h - 1e-9))
            positions[part, 2] += np.float32(shift)
            top = float(positions[part, 2].max())
        box[2] = max(float(box[2]), top + 0.5 * STACK_GAP_A)
        return State(positions, state.velocities, box, state.step)


def _slices(active: list[_Ribbon]) -> list[slice]:
    """Each ribbon's atoms in the stack of ``active`` ribbons (in order)."""
    starts = np.cumsum([0] + [r.run.n_atoms for r in active])
    return [slice(a, b) for a, b in zip(starts[:-1], starts[1:])]


__all__ = ["COMPLETED", "DIVERGED", "REACH_MARGIN_A", "STACK_GAP_A", "STOPPED", "BatchedTension", "RibbonRun",
           "ribbon_seed", "unbatchable"]
