"""Extended XYZ files: one or many frames of :class:`~sagesnet_tf.atoms.Atoms`.

Each frame is an atom count line, a comment line of ``key=value`` pairs, and one line per atom::

    96
    Lattice="25.146 0 0 0 9.678 0 0 0 20" Properties=species:S:1:pos:R:3:velo:R:3:id:I:1:flags:I:1 pbc="T T F" units=metal structure="graphene"
    C 0.0000000000 0.0000000000 10.0000000000 0.0000000000 0.0000000000 0.0000000000 1 0
    ...

Units are LAMMPS ``metal`` (positions Å, velocities Å/ps) and every file written says so
(``units=metal``); a file that states other units is refused. Columns written: ``species``,
``pos`` (3), ``velo`` (3), ``id``, ``flags``, then any extra per-atom columns (``name:R:k``, floats).

Reading is lenient about what other programs write: only ``species`` and ``pos`` are required
(``id`` → 1..N, ``flags`` → 0 when missing). Velocities come from the first of these columns
(:data:`VELOCITY_COLUMNS`): ``velo``, ``velocities`` or ``vel`` (Å/ps, as the file's ``units=metal``
says or implies), or ASE's ``momenta`` (amu·Å per ASE time unit, divided by the masses and converted
with :data:`ASE_VELOCITY_TO_A_PER_PS`); none → zeros. ``atoms.info["velocity_source"]`` says which
was used. Other columns are kept as extra per-atom
arrays in ``atoms.info["per_atom"][name]`` ((N,) for one column, (N, k) for k); without
``Lattice`` the frame gets a non-periodic box with :data:`PLAIN_XYZ_VACUUM_A` of vacuum around the
atoms (atoms shifted into it); with ``Lattice`` but no ``pbc``, all axes are periodic. Other
``key=value`` pairs become ``atoms.info`` entries (quoted values stay strings; unquoted ones are
read as int, float or T/F when they look like one); scalar ``atoms.info`` entries are written back.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from sagesnet_tf.atoms import MASSES, Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io.atomic import atomic_output

#: Columns every frame written here starts with.
STANDARD_PROPERTIES = "species:S:1:pos:R:3:velo:R:3:id:I:1:flags:I:1"
#: Vacuum (Å) on each side of the atoms when a plain XYZ frame has no Lattice.
PLAIN_XYZ_VACUUM_A = 10.0
#: ASE's time unit is Å·√(amu/eV) = 10.1805 fs (CODATA 2014, ASE's default constants), so an ASE
#: velocity (Å per that unit; ASE momenta are amu × that) is this many Å/ps: 1 ps / 10.1805 fs.
ASE_VELOCITY_TO_A_PER_PS = 1e-12 / (1e-10 * math.sqrt(1.660539040e-27 / 1.6021766208e-19))
#: Velocity columns in the order they are looked for, each -> (factor to Å/ps, divide by the mass?).
#: ``velo`` is what this module writes; ``velocities`` and ``vel`` are other programs' names for the
#: same thing, taken in the file's units (metal: Å/ps); ``momenta`` is what ASE writes.
VELOCITY_COLUMNS: dict[str, tuple[float, bool]] = {
    "velo": (1.0, False), "velocities": (1.0, False), "vel": (1.0, False),
    "momenta": (ASE_VELOCITY_TO_A_PER_PS, True)}
#: ``atoms.info`` key naming where the velocities were read from (one line, for logs and manifests).
VELOCITY_SOURCE_KEY = "velocity_source"
#: Comment-line keys handled by the format itself (not copied into ``atoms.info``).
RESERVED_KEYS = ("Lattice", "Properties", "pbc", "units")
#: ``atoms.info`` key holding extra per-atom arrays read from or written to extra columns.
PER_ATOM_KEY = "per_atom"

_STANDARD_NAMES = ("species", "pos", "velo", "id", "flags")
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PAIR_RE = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.\-]*)(?:=("(?:[^"\\]|\\.)*"|[^\s"]+))?')
_DTYPES = {"R": np.float64, "I": np.int64, "S": str, "L": bool}


# --------------------------------------------------------------------------------------------
# Writing


def write_extxyz_frames(path: str | os.PathLike, frames: Sequence[Atoms],
                        per_atom_extra: dict[str, Sequence[np.ndarray]] | None = None,
                        append: bool = False) -> None:
    """Write frames to an extended XYZ file.

    Args:
        path: output file; a new file is written atomically (temporary file + ``os.replace``).
        frames: the frames, T Atoms (atom counts may differ between frames).
        per_atom_extra: extra float columns, ``name -> list of T arrays`` each (N_t,) or (N_t, k)
            (e.g. ``{"uncertainty": [...]}``). Columns in a frame's ``info["per_atom"]`` are
            written too; ``per_atom_extra`` wins on a clash.
        append: add the frames to the end of an existing file (created if missing) instead of
            replacing it. A copy of the file with the new frames after it replaces the file in one
            step, so on disk it is at every moment the old content or the new one, never part of a
            frame (a ``kill -9`` included); this costs a copy of the file.
    """
    frames = list(frames)
    extra = per_atom_extra or {}
    for name, values in extra.items():
        if len(values) != len(frames):
            raise SagesnetError(
                f"per-atom column {name!r} has {len(values)} arrays for {len(frames)} frames; give one per frame")
    text = "".join(format_frame(atoms, {**atoms.info.get(PER_ATOM_KEY, {}),
                                        **{name: values[t] for name, values in extra.items()}})
                   for t, atoms in enumerate(frames))
    with atomic_output(path, "wb") as handle:
        if append and os.path.exists(path):
            with open(path, "rb") as old:
                shutil.copyfileobj(old, handle)
        handle.write(text.encode("utf-8"))


def format_frame(atoms: Atoms, per_atom: dict[str, np.ndarray] | None = None) -> str:
    """One frame as extended XYZ text (ends with a newline); ``per_atom``: name -> (N,) or (N, k) floats."""
    n = len(atoms)
    columns: list[tuple[str, np.ndarray]] = []
    properties = STANDARD_PROPERTIES
    for name, values in (per_atom or {}).items():
        if not _NAME_RE.match(name) or name in _STANDARD_NAMES:
            raise SagesnetError(
                f"per-atom column name {name!r} is not allowed; use letters, digits and '_' and none of "
                f"{', '.join(_STANDARD_NAMES)}")
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim not in (1, 2) or arr.shape[0] != n:
            raise SagesnetError(f"per-atom column {name!r} has shape {arr.shape}; expected ({n},) or ({n}, k)")
        arr = arr.reshape(n, -1)
        columns.append((name, arr))
        properties += f":{name}:R:{arr.shape[1]}"
    lattice = " ".join(_format_float(v) for v in atoms.cell.reshape(-1))
    pbc = " ".join("T" if p else "F" for p in atoms.pbc)
    header = f'Lattice="{lattice}" Properties={properties} pbc="{pbc}" units=metal'
    info = _format_info(atoms.info)
    if info:
        header += " " + info
    fmt = "%-2s %.10f %.10f %.10f %.10f %.10f %.10f %d %d" + "".join(
        " %.10g" * arr.shape[1] for _, arr in columns)
    rows = zip(atoms.symbols.tolist(), *atoms.positions.T.tolist(), *atoms.velocities.T.tolist(),
               atoms.ids.tolist(), atoms.flags.tolist(), *(c for _, arr in columns for c in arr.T.tolist()))
    body = "\n".join(fmt % row for row in rows)
    return f"{n}\n{header}\n{body}\n" if n else f"{n}\n{header}\n"


def _format_float(value: float) -> str:
    return repr(float(value))


def _format_info(info: dict[str, Any]) -> str:
    """Scalar ``info`` entries as ``key=value`` pairs; non-scalar entries are not written, nor
    :data:`VELOCITY_SOURCE_KEY` (it describes a file read, not the atoms)."""
    parts = []
    for key, value in info.items():
        if key in RESERVED_KEYS or key in (PER_ATOM_KEY, VELOCITY_SOURCE_KEY) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.\-]*", key):
            continue
        if isinstance(value, (bool, np.bool_)):
            parts.append(f"{key}={'T' if value else 'F'}")
        elif isinstance(value, (int, np.integer)):
            parts.append(f"{key}={int(value)}")
        elif isinstance(value, (float, np.floating)):
            parts.append(f"{key}={_format_float(value)}")
        elif isinstance(value, str):
            escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", " ")
            parts.append(f'{key}="{escaped}"')
    return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Reading


def read_extxyz_frames(path: str | os.PathLike, validate: bool = False) -> list[Atoms]:
    """All frames of an (extended) XYZ file as a list of Atoms (see :func:`iter_extxyz_frames`)."""
    return list(iter_extxyz_frames(path, validate=validate))


def iter_extxyz_frames(path: str | os.PathLike, validate: bool = False) -> Iterator[Atoms]:
    """Frames of an (extended) XYZ file, one at a time (for files too large to hold at once).

    Args:
        path: the file.
        validate: also run :meth:`Atoms.validate` on every frame (off by default: the overlap
            check costs about as much as parsing).

    Yields:
        Atoms per frame; ``info["frame"]`` is the 0-based frame index.

    Raises:
        SagesnetError naming the file and line for anything garbled or truncated.
    """
    path = os.fspath(path)
    try:
        handle = open(path, encoding="utf-8")
    except OSError as exc:
        raise SagesnetError(f"{path}: cannot open ({exc.strerror}); check the path") from None
    with handle:
        lines = _numbered(handle, path)
        frame = 0
        for lineno, count_line in lines:
            if not count_line.strip():
                continue  # blank lines between or after frames
            try:
                n = int(count_line.strip())
                if n < 0:
                    raise ValueError
            except ValueError:
                raise SagesnetError(
                    f"{path}:{lineno}: expected the atom count of frame {frame}, got {count_line.strip()[:40]!r}; "
                    "the file is not (extended) XYZ") from None
            comment = next(lines, None)
            if comment is None:
                raise SagesnetError(f"{path}: file ends after the atom count of frame {frame}; the file is truncated")
            atom_lines = []
            for _ in range(n):
                item = next(lines, None)
                if item is None:
                    raise SagesnetError(
                        f"{path}: file ends inside frame {frame} (expected {n} atom lines, found {len(atom_lines)}); "
                        "the file is truncated")
                atom_lines.append(item)
            atoms = _parse_frame(path, n, comment, atom_lines)
            atoms.info["frame"] = frame
            if validate:
                atoms.validate(source=f"{path} (frame {frame})")
            yield atoms
            frame += 1
        if frame == 0:
            raise SagesnetError(f"{path}: no frames found; the file is empty")


def _numbered(handle: Iterable[str], path: str) -> Iterator[tuple[int, str]]:
    try:
        for lineno, line in enumerate(handle, start=1):
            yield lineno, line.rstrip("\n")
    except UnicodeDecodeError:
        raise SagesnetError(f"{path}: not a text file (undecodable bytes); give an extended XYZ file") from None


def _parse_comment(path: str, lineno: int, line: str) -> dict[str, Any]:
    """``key=value`` pairs of a comment line; a free-text comment (plain XYZ) gives ``{"comment": line}``."""
    pairs: dict[str, Any] = {}
    pos = 0
    text = line.strip()
    while pos < len(text):
        match = _PAIR_RE.match(text, pos)
        if match is None or match.end() == pos:
            break
        key, value = match.group(1), match.group(2)
        pos = match.end()
        if pos < len(text) and not text[pos].isspace():
            break
        if value is None:
            pairs[key] = True
        elif value.startswith('"'):
            pairs[key] = re.sub(r"\\(.)", r"\1", value[1:-1])
        else:
            pairs[key] = _parse_scalar(value)
        pos = len(text) - len(text[pos:].lstrip())
    else:
        return pairs
    if "Lattice=" in line or "Properties=" in line:
        raise SagesnetError(
            f"{path}:{lineno}: cannot parse the extended XYZ comment line near {text[pos:pos + 30]!r}; "
            "check the quoting of key=value pairs")
    return {"comment": line.strip()}


def _parse_scalar(value: str) -> Any:
    if value in ("T", "True", "true"):
        return True
    if value in ("F", "False", "false"):
        return False
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value


def _parse_properties(path: str, lineno: int, spec: str) -> list[tuple[str, str, int]]:
    fields = spec.split(":")
    if len(fields) % 3:
        raise SagesnetError(f"{path}:{lineno}: Properties={spec!r} is not name:type:count triples")
    out = []
    for k in range(0, len(fields), 3):
        name, kind, count = fields[k:k + 3]
        if kind not in _DTYPES or not count.isdigit() or int(count) < 1:
            raise SagesnetError(
                f"{path}:{lineno}: bad column {name}:{kind}:{count} in Properties; types are R, I, S, L")
        out.append((name, kind, int(count)))
    names = [name for name, _, _ in out]
    if "species" not in names or "pos" not in names:
        raise SagesnetError(f"{path}:{lineno}: Properties must include species:S:1 and pos:R:3 (got {spec!r})")
    return out


def _parse_frame(path: str, n: int, comment: tuple[int, str], atom_lines: list[tuple[int, str]]) -> Atoms:
    lineno, comment_text = comment
    meta = _parse_comment(path, lineno, comment_text)
    spec = meta.pop("Properties", "species:S:1:pos:R:3")
    columns = _parse_properties(path, lineno, str(spec))
    width = sum(count for _, _, count in columns)
    units = meta.pop("units", "metal")
    if units != "metal":
        raise SagesnetError(f"{path}:{lineno}: units={units} is not supported; convert the file to LAMMPS metal units")

    tokens = [line.split() for _, line in atom_lines]
    for (num, line), row in zip(atom_lines, tokens):
        if len(row) != width:
            raise SagesnetError(
                f"{path}:{num}: expected {width} columns ({spec}), found {len(row)}; the file is garbled")
    data: dict[str, np.ndarray] = {}
    start = 0
    for name, kind, count in columns:
        block = [row[start:start + count] for row in tokens]
        try:
            if kind == "L":
                values = np.isin(np.array(block, dtype=str), ("T", "True", "true", "1"))
            else:
                values = np.array(block, dtype=_DTYPES[kind])
        except ValueError:
            bad = next(k for k in range(n) if not _row_parses(block[k], _DTYPES[kind]))
            raise SagesnetError(
                f"{path}:{atom_lines[bad][0]}: column {name!r} is not a number ({' '.join(block[bad])!r}); "
                "the file is garbled") from None
        values = values.reshape(n, count)
        data[name] = values[:, 0] if count == 1 else values
        start += count
    if data["pos"].ndim != 2 or data["pos"].shape[1] != 3:
        raise SagesnetError(f"{path}:{lineno}: pos must be R:3 (got {spec!r})")

    positions = data.pop("pos")
    pbc_value = meta.pop("pbc", None)
    lattice = meta.pop("Lattice", None)
    if lattice is not None:
        try:
            cell = np.array(str(lattice).split(), dtype=np.float64).reshape(3, 3)
        except ValueError:
            raise SagesnetError(f"{path}:{lineno}: Lattice must be 9 numbers (got {lattice!r})") from None
        pbc = np.ones(3, dtype=bool) if pbc_value is None else _parse_pbc(path, lineno, pbc_value)
    else:
        pbc = np.zeros(3, dtype=bool) if pbc_value is None else _parse_pbc(path, lineno, pbc_value)
        if pbc.any():
            raise SagesnetError(f"{path}:{lineno}: pbc has periodic axes but there is no Lattice; add Lattice=\"…\"")
        lo = positions.min(axis=0) if n else np.zeros(3)
        hi = positions.max(axis=0) if n else np.zeros(3)
        cell = np.diag(hi - lo + 2.0 * PLAIN_XYZ_VACUUM_A)
        positions = positions - lo + PLAIN_XYZ_VACUUM_A
    symbols = data.pop("species")
    velocities, velocity_source = _velocities(path, lineno, spec, data, symbols, units)
    ids = data.pop("id", None)
    flags = data.pop("flags", None)
    if ids is not None and len(np.unique(ids)) != n:
        raise SagesnetError(f"{path}:{lineno}: atom ids in column 'id' are not unique; renumber them")
    info = {**meta, VELOCITY_SOURCE_KEY: velocity_source}
    if data:
        info[PER_ATOM_KEY] = data
    return Atoms(symbols, positions, cell, pbc, velocities, ids, flags, info)


def _velocities(path: str, lineno: int, spec: str, data: dict[str, np.ndarray], symbols: np.ndarray,
                units: str) -> tuple[np.ndarray | None, str]:
    """(N, 3) Å/ps velocities from the first :data:`VELOCITY_COLUMNS` column in ``data`` (popped
    from it), or None, and a one-line description of the source."""
    name = next((column for column in VELOCITY_COLUMNS if column in data), None)
    if name is None:
        return None, "none (the file has no velocity column)"
    values = data.pop(name)
    if np.shape(values) != (len(symbols), 3) or values.dtype.kind != "f":
        raise SagesnetError(f"{path}:{lineno}: {name} must be R:3 (got {spec!r})")
    factor, per_mass = VELOCITY_COLUMNS[name]
    if not per_mass:
        return values * factor, f"extxyz column {name} (Å/ps, units={units})"
    masses = np.array([MASSES.get(str(s), np.nan) for s in symbols])  # unknown elements: validate says so
    return values * factor / masses[:, None], (f"extxyz column {name} (ASE momenta, amu·Å/{1e3 / ASE_VELOCITY_TO_A_PER_PS:.4f} fs, "
                                               "divided by the masses -> Å/ps)")


def _row_parses(row: list[str], dtype: type) -> bool:
    try:
        np.array(row, dtype=dtype)
        return True
    except ValueError:
        return False


def _parse_pbc(path: str, lineno: int, value: Any) -> np.ndarray:
    words = str(value).split() if not isinstance(value, bool) else ["T" if value else "F"]
    if len(words) != 3 or set(words) - {"T", "F", "True", "False", "1", "0"}:
        raise SagesnetError(f"{path}:{lineno}: pbc must be three of T/F (got {value!r})")
    return np.array([w in ("T", "True", "1") for w in words])
