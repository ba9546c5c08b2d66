"""Read and write structure files through :class:`~sagesnet_tf.atoms.Atoms`, format chosen by name.

=============  =====================================  =====================================
format         file names                             stores
=============  =====================================  =====================================
extxyz         ``*.extxyz``, ``*.xyz``                everything: cell, pbc, ids, velocities,
                                                      flags, scalar info, extra per-atom columns
poscar         ``POSCAR*``, ``CONTCAR*``, ``*.vasp``,  cell, positions, pbc (in the comment line);
               ``*.poscar``                           velocities read from VASP's block (Å/fs),
                                                      not written; ids 1..N on reading
cif            ``*.cif``                              cell, positions (fractional, 8 decimals,
                                                      wrapped into the cell), pbc (in a comment)
lammps-data    ``*.data``, ``*.lmp``                  cell (restricted triclinic), ids, positions
                                                      with image flags, velocities, pbc (in the
                                                      title line); written atom_style atomic, read
                                                      atomic, charge, full, molecular, bond, angle
=============  =====================================  =====================================

Every reader sets ``atoms.info["velocity_source"]`` (:data:`~sagesnet_tf.io.extxyz.VELOCITY_SOURCE_KEY`):
one line saying where the velocities came from and in which units they were read.

POSCAR and CIF go through pymatgen's ``Structure``; extended XYZ and LAMMPS data have their own
readers and writers here and in :mod:`sagesnet_tf.io.extxyz`. Units are LAMMPS ``metal``
(Å, Å/ps) and every file written says so. :func:`read_structure` validates what it reads
(:meth:`Atoms.validate`), so a bad file is one :class:`SagesnetError` line naming the file.
Every writer is atomic (:func:`sagesnet_tf.io.atomic_output`).
"""

from __future__ import annotations

import os
import re
import warnings
from typing import Any

import numpy as np

from sagesnet_tf.atoms import ELEMENTS, MASSES, Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io.atomic import atomic_output
from sagesnet_tf.io.extxyz import PER_ATOM_KEY, VELOCITY_SOURCE_KEY, format_frame, iter_extxyz_frames

#: Format name -> file-name suffixes (lower case) that select it.
FORMATS: dict[str, tuple[str, ...]] = {
    "extxyz": (".extxyz", ".xyz"),
    "poscar": (".vasp", ".poscar"),
    "cif": (".cif",),
    "lammps-data": (".data", ".lmp"),
}
#: Columns of a LAMMPS data ``Atoms`` line per atom style read here (then optionally ix iy iz);
#: velocities (``Velocities`` section, ``id vx vy vz``) are the same for all of them.
LAMMPS_ATOM_COLUMNS: dict[str, tuple[str, ...]] = {
    "atomic": ("id", "type", "x", "y", "z"),
    "charge": ("id", "type", "q", "x", "y", "z"),
    "full": ("id", "mol", "type", "q", "x", "y", "z"),
    "molecular": ("id", "mol", "type", "x", "y", "z"),
    "bond": ("id", "mol", "type", "x", "y", "z"),
    "angle": ("id", "mol", "type", "x", "y", "z"),
}
#: VASP writes POSCAR velocities in Å/fs; this turns them into Å/ps.
VASP_VELOCITY_TO_A_PER_PS = 1000.0
#: File-name prefixes that select POSCAR whatever the suffix (VASP's own names).
POSCAR_PREFIXES = ("POSCAR", "CONTCAR")
#: LAMMPS atom type of each element: type k + 1 is ``ELEMENTS[k]`` (``pair_coeff * * CH.airebo C H``).
LAMMPS_TYPES = {element: k + 1 for k, element in enumerate(ELEMENTS)}

_PBC_RE = re.compile(r"pbc=\"?([TF])\s+([TF])\s+([TF])\"?")


def detect_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format name for ``path`` (``fmt`` if given), one of :data:`FORMATS`."""
    path = os.fspath(path)
    if fmt is not None:
        if fmt not in FORMATS:
            raise SagesnetError(f"unknown structure format {fmt!r}; use one of {', '.join(FORMATS)}")
        return fmt
    name = os.path.basename(path)
    if name.startswith(POSCAR_PREFIXES):
        return "poscar"
    suffix = os.path.splitext(name)[1].lower()
    for format_name, suffixes in FORMATS.items():
        if suffix in suffixes:
            return format_name
    known = ", ".join(s for suffixes in FORMATS.values() for s in suffixes)
    raise SagesnetError(
        f"{path}: cannot tell the structure format from the name; use one of {known}, POSCAR or CONTCAR "
        "(or give the format explicitly)")


def read_structure(path: str | os.PathLike, fmt: str | None = None) -> Atoms:
    """Read one structure (the last frame of a multi-frame extxyz) and validate it.

    Args:
        path: the file; the format comes from its name (see :data:`FORMATS`) unless ``fmt`` is given.
        fmt: ``"extxyz"``, ``"poscar"``, ``"cif"`` or ``"lammps-data"``.

    Returns:
        Atoms (positions Å, velocities Å/ps) with ``info["source"]`` = the path.

    Raises:
        SagesnetError naming the file: missing/unreadable/garbled file, unknown format, or a
        structure :meth:`Atoms.validate` refuses (empty, unknown element, NaN, atoms spanning more
        than a non-periodic box, overlapping atoms). Atoms outside a non-periodic box but fitting
        in it (a sheet centred on z = 0) are accepted; ``simulate`` shifts them into the grid, and
        the LAMMPS engine refuses them (``md input``).
    """
    path = os.fspath(path)
    fmt = detect_format(path, fmt)
    if not os.path.isfile(path):
        raise SagesnetError(f"{path}: no such file; check the path")
    if fmt == "extxyz":
        for atoms in iter_extxyz_frames(path):  # keep only the last frame in memory
            pass
    else:
        try:
            with open(path, encoding="utf-8") as handle:
                text = handle.read()
        except UnicodeDecodeError:
            raise SagesnetError(f"{path}: not a text file (undecodable bytes); give a {fmt} file") from None
        if not text.strip():
            raise SagesnetError(f"{path}: the file is empty; give a structure file with atoms")
        atoms = _lammps_data_from_text(path, text) if fmt == "lammps-data" else _pymatgen_read(path, fmt, text)
    atoms.info["source"] = path
    return atoms.validate(source=path, inside=False)


def write_structure(atoms: Atoms, path: str | os.PathLike, fmt: str | None = None) -> None:
    """Write ``atoms`` to ``path`` atomically in the format its name selects (or ``fmt``).

    Parent directories are created. POSCAR and CIF drop velocities, ids and flags; the extxyz file
    keeps everything (see the module table).
    """
    path = os.fspath(path)
    fmt = detect_format(path, fmt)
    if fmt == "extxyz":
        text = format_frame(atoms, atoms.info.get(PER_ATOM_KEY))
    elif fmt == "lammps-data":
        text = _lammps_data_text(atoms)
    else:
        text = _pymatgen_text(atoms, fmt)
    with atomic_output(path) as handle:
        handle.write(text)


# --------------------------------------------------------------------------------------------
# POSCAR and CIF through pymatgen


def _pbc_words(pbc: np.ndarray) -> str:
    return " ".join("T" if p else "F" for p in pbc)


def _pbc_from_text(text: str) -> np.ndarray:
    """pbc written by this module into a comment or title; all periodic when absent (the format's default)."""
    match = _PBC_RE.search(text)
    return np.array([g == "T" for g in match.groups()]) if match else np.ones(3, dtype=bool)


def _pymatgen_text(atoms: Atoms, fmt: str) -> str:
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter
    from pymatgen.io.vasp import Poscar

    structure = Structure(Lattice(atoms.cell), atoms.symbols.tolist(), atoms.positions,
                          coords_are_cartesian=True)
    tag = f"sagesnet-tf pbc={_pbc_words(atoms.pbc)} units=metal"
    if fmt == "poscar":
        formula = "".join(f"{e}{int(np.sum(atoms.symbols == e))}" for e in ELEMENTS if e in atoms.symbols)
        return Poscar(structure, comment=f"{formula} {tag}").get_str()
    return f"# {tag}\n" + str(CifWriter(structure))


def _pymatgen_read(path: str, fmt: str, text: str) -> Atoms:
    from pymatgen.io.cif import CifParser
    from pymatgen.io.vasp import Poscar

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            velocities = None
            if fmt == "poscar":
                poscar = Poscar.from_str(text)
                structure, comment, velocities = poscar.structure, poscar.comment, poscar.velocities
            else:
                # frac_tolerance=0: keep coordinates as written (the default snaps them to 1/3, 1/2, … within 1e-4)
                structures = CifParser.from_str(text, frac_tolerance=0.0).parse_structures(primitive=False)
                if len(structures) != 1:
                    raise ValueError(f"{len(structures)} structures in the file, expected 1")
                structure, comment = structures[0], "\n".join(
                    line for line in text.splitlines() if line.lstrip().startswith("#"))
    except SagesnetError:
        raise
    except Exception as exc:  # pymatgen raises many types for a bad file; all mean "cannot read it"
        reason = str(exc).strip().splitlines()[0][:120] if str(exc).strip() else type(exc).__name__
        raise SagesnetError(f"{path}: cannot read as {fmt.upper()} ({reason}); check the file") from None
    order = _cif_label_order(structure) if fmt == "cif" else None
    symbols = [site.specie.symbol if hasattr(site.specie, "symbol") else str(site.specie) for site in structure]
    positions = structure.cart_coords
    if order is not None:
        symbols, positions = [symbols[k] for k in order], positions[order]
    if velocities is None:
        source = f"none ({fmt.upper()} file without velocities)"
    else:
        velocities = np.asarray(velocities, dtype=np.float64) * VASP_VELOCITY_TO_A_PER_PS
        source = "POSCAR velocity block (VASP Å/fs -> Å/ps)"
    return Atoms(symbols, positions, structure.lattice.matrix, _pbc_from_text(comment), velocities,
                 info={VELOCITY_SOURCE_KEY: source})


def _cif_label_order(structure: Any) -> np.ndarray | None:
    """Indices that restore the order the sites were written in, from CifWriter's labels ``<El><k>``.

    pymatgen's CIF parser groups sites by element; the labels keep the original index. Returns
    None (parser order kept) when the labels are not of that form.
    """
    keys = []
    for site in structure:
        match = re.fullmatch(r"[A-Za-z]+(\d+)", str(getattr(site, "label", "")))
        if match is None:
            return None
        keys.append(int(match.group(1)))
    if len(set(keys)) != len(keys):
        return None
    return np.argsort(keys, kind="stable")


# --------------------------------------------------------------------------------------------
# LAMMPS data (written atom_style atomic; read the styles of LAMMPS_ATOM_COLUMNS)


def _lammps_cell(cell: np.ndarray) -> np.ndarray:
    """The same cell rotated into LAMMPS's restricted triclinic form (a ∥ x, b in the xy plane).

    Returns (3, 3) Å with rows (lx, 0, 0), (xy, ly, 0), (xz, yz, lz); ``cell`` itself when it
    already has that form.
    """
    if np.allclose(np.triu(cell, 1), 0.0, atol=1e-12) and np.all(np.diag(cell) > 0):
        return cell
    a, b, c = cell
    lx = np.linalg.norm(a)
    xy = np.dot(b, a) / lx
    ly = np.sqrt(np.dot(b, b) - xy**2)
    xz = np.dot(c, a) / lx
    yz = (np.dot(b, c) - xy * xz) / ly
    lz_sq = np.dot(c, c) - xz**2 - yz**2
    if np.linalg.det(cell) <= 0 or lz_sq <= 0:
        raise SagesnetError("the cell is left-handed or flat; LAMMPS needs a right-handed cell (swap two lattice vectors)")
    return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, np.sqrt(lz_sq)]])


def _lammps_data_text(atoms: Atoms) -> str:
    """atoms as a LAMMPS data file (atom_style atomic, units metal), positions wrapped + image flags."""
    unknown = sorted(set(atoms.symbols) - set(LAMMPS_TYPES))
    if unknown:
        raise SagesnetError(f"cannot write element(s) {', '.join(unknown)} to LAMMPS data; known: {', '.join(ELEMENTS)}")
    cell = _lammps_cell(atoms.cell)
    frac = atoms.fractional()
    image = np.where(atoms.pbc, np.floor(frac), 0.0)
    positions = (frac - image) @ cell
    types = [LAMMPS_TYPES[s] for s in atoms.symbols]
    lines = [
        f"sagesnet-tf LAMMPS data file: units metal, atom_style atomic, pbc={_pbc_words(atoms.pbc)}",
        "",
        f"{len(atoms)} atoms",
        f"{len(ELEMENTS)} atom types",
        "",
        f"0.0 {cell[0, 0]!r} xlo xhi",
        f"0.0 {cell[1, 1]!r} ylo yhi",
        f"0.0 {cell[2, 2]!r} zlo zhi",
    ]
    if np.any(cell[[1, 2, 2], [0, 0, 1]] != 0):
        lines.append(f"{cell[1, 0]!r} {cell[2, 0]!r} {cell[2, 1]!r} xy xz yz")
    lines += ["", "Masses", ""]
    lines += [f"{LAMMPS_TYPES[e]} {MASSES[e]} # {e}" for e in ELEMENTS]
    lines += ["", "Atoms # atomic", ""]
    lines += [f"{i} {t} {x:.10f} {y:.10f} {z:.10f} {ix:d} {iy:d} {iz:d}"
              for i, t, (x, y, z), (ix, iy, iz) in zip(atoms.ids.tolist(), types, positions.tolist(),
                                                        image.astype(int).tolist())]
    lines += ["", "Velocities", ""]
    lines += [f"{i} {vx:.10f} {vy:.10f} {vz:.10f}" for i, (vx, vy, vz) in zip(atoms.ids.tolist(), atoms.velocities.tolist())]
    return "\n".join(lines) + "\n"


def _is_number(word: str) -> bool:
    try:
        float(word)
        return True
    except ValueError:
        return False


def _lammps_data_from_text(path: str, text: str) -> Atoms:
    """Parse a LAMMPS data file (units metal; an atom style of :data:`LAMMPS_ATOM_COLUMNS`, from the
    ``Atoms # style`` comment, else atomic or full by the number of fields). Positions are shifted so
    the box starts at 0; charges and molecule ids are not kept."""
    lines = text.splitlines()
    header: dict[str, list[float]] = {}
    sections: dict[str, list[tuple[int, list[str], str]]] = {}  # name -> (line number, words, comment)
    styles: dict[str, str] = {}
    current = None
    for lineno, raw in enumerate(lines[1:], start=2):  # line 1 is the title
        body, _, comment = raw.partition("#")
        words = body.split()
        if not words:
            continue
        if not _is_number(words[0]):
            current = " ".join(words)
            if current in sections:
                raise SagesnetError(f"{path}:{lineno}: section {current!r} appears twice; the file is garbled")
            sections[current] = []
            styles[current] = comment.strip()
            continue
        if current is None:
            numbers = [w for w in words if _is_number(w)]
            keyword = " ".join(w for w in words if not _is_number(w))
            if not keyword:
                raise SagesnetError(f"{path}:{lineno}: header line {raw.strip()!r} has no keyword; the file is garbled")
            header[keyword] = [float(w) for w in numbers]
        else:
            sections[current].append((lineno, words, comment.strip()))
    if "atoms" not in header or "Atoms" not in sections:
        raise SagesnetError(f"{path}: no 'N atoms' header or Atoms section; not a LAMMPS data file")
    n = int(header["atoms"][0])
    rows = sections["Atoms"]
    if len(rows) != n:
        raise SagesnetError(f"{path}: header says {n} atoms but the Atoms section has {len(rows)} lines; the file is truncated or garbled")
    style = styles["Atoms"] or {5: "atomic", 8: "atomic", 7: "full", 10: "full"}.get(len(rows[0][1]) if rows else 5, "")
    if style not in LAMMPS_ATOM_COLUMNS:
        raise SagesnetError(
            f"{path}: Atoms section is atom_style {style or '(not named, ' + str(len(rows[0][1])) + ' fields)'}; "
            f"name one of {', '.join(LAMMPS_ATOM_COLUMNS)} after it ('Atoms # full') or convert the file")
    columns = LAMMPS_ATOM_COLUMNS[style]
    at_type, at_x = columns.index("type"), columns.index("x")

    try:
        lo = np.array([header[f"{a}lo {a}hi"][0] for a in "xyz"])
        hi = np.array([header[f"{a}lo {a}hi"][1] for a in "xyz"])
        xy, xz, yz = header.get("xy xz yz", [0.0, 0.0, 0.0])
    except (KeyError, IndexError, ValueError):
        raise SagesnetError(f"{path}: box bounds (xlo xhi, ylo yhi, zlo zhi) missing or incomplete") from None
    cell = np.array([[hi[0] - lo[0], 0.0, 0.0], [xy, hi[1] - lo[1], 0.0], [xz, yz, hi[2] - lo[2]]])

    type_symbol = _lammps_type_symbols(path, sections.get("Masses", []))
    ids = np.empty(n, dtype=np.int64)
    symbols = []
    positions = np.empty((n, 3))
    image = np.zeros((n, 3))
    for k, (lineno, words, _) in enumerate(rows):
        layout = " ".join(columns)
        if len(words) not in (len(columns), len(columns) + 3):
            raise SagesnetError(
                f"{path}:{lineno}: a {style}-style atom line has {len(columns)} or {len(columns) + 3} fields "
                f"({layout} [ix iy iz]), found {len(words)}")
        try:
            ids[k], atom_type = int(words[0]), int(words[at_type])
            positions[k] = [float(w) for w in words[at_x:at_x + 3]]
            image[k] = [int(w) for w in words[len(columns):]] if len(words) > len(columns) else 0
        except ValueError:
            raise SagesnetError(
                f"{path}:{lineno}: bad atom line {' '.join(words)!r} ({layout} [ix iy iz]: integers and "
                "numbers); the file is garbled") from None
        if atom_type not in type_symbol:
            raise SagesnetError(f"{path}:{lineno}: atom type {atom_type} has no element; give it a mass in Masses")
        symbols.append(type_symbol[atom_type])
    if len(np.unique(ids)) != n:
        raise SagesnetError(f"{path}: atom ids are not unique; renumber the atoms")
    positions = positions - lo + image @ cell

    velocities = np.zeros((n, 3))
    vel_rows = sections.get("Velocities", [])
    if vel_rows:
        row_of = {int(i): k for k, i in enumerate(ids)}
        if len(vel_rows) != n:
            raise SagesnetError(f"{path}: the Velocities section has {len(vel_rows)} lines for {n} atoms")
        for lineno, words, _ in vel_rows:
            try:
                velocities[row_of[int(words[0])]] = [float(w) for w in words[1:4]]
            except (KeyError, ValueError, IndexError):
                raise SagesnetError(f"{path}:{lineno}: bad Velocities line (id vx vy vz, id must exist)") from None
    source = ("LAMMPS data Velocities section (units metal: Å/ps)" if vel_rows
              else "none (LAMMPS data file without a Velocities section)")
    return Atoms(symbols, positions, cell, _pbc_from_text(lines[0] if lines else ""), velocities, ids,
                 info={VELOCITY_SOURCE_KEY: source})


def _lammps_type_symbols(path: str, rows: list[tuple[int, list[str], str]]) -> dict[int, str]:
    """Atom type -> element from Masses lines (``type mass # El``, or the mass alone).

    Without a Masses section, types follow :data:`LAMMPS_TYPES` (1 = C, 2 = H).
    """
    if not rows:
        return {t: e for e, t in LAMMPS_TYPES.items()}
    out = {}
    for lineno, words, comment in rows:
        try:
            atom_type, mass = int(words[0]), float(words[1])
        except (ValueError, IndexError):
            raise SagesnetError(f"{path}:{lineno}: a Masses line is 'type mass'") from None
        named = comment.split()[0] if comment else ""
        if named in MASSES:
            out[atom_type] = named
            continue
        element = min(MASSES, key=lambda e: abs(MASSES[e] - mass))
        if abs(MASSES[element] - mass) > 0.1:
            raise SagesnetError(
                f"{path}:{lineno}: atom type {atom_type} has mass {mass}, which is none of "
                f"{', '.join(f'{e} ({m})' for e, m in MASSES.items())}; sagesnet-tf knows C and H only")
        out[atom_type] = element
    return out
