"""LAMMPS text dumps (``dump custom``) → :class:`~sagesnet_tf.trajectory.Trajectory`.

Reads every frame of a file written by e.g.::

    dump d all custom 10 run.dump id type xu yu zu vx vy vz c_s[1] c_s[2] c_s[3] c_s[4] c_s[5] c_s[6]

Columns understood (others are ignored):

- ``id`` (else atoms are numbered 1..N in file order), ``type`` (mapped to elements by the
  ``type_to_element`` argument) or ``element``;
- positions, first found of: ``xu yu zu`` (unwrapped), ``x y z`` (wrapped; unwrapped with
  ``ix iy iz`` when present, else by continuity between frames), ``xsu ysu zsu``, ``xs ys zs``
  (scaled; wrapped ones likewise);
- ``vx vy vz`` Å/ps (else zeros);
- per-atom stress: six columns ``NAME[1]`` … ``NAME[6]`` of one compute (``stress_columns``
  names it, e.g. ``"c_s"``; by default the single such group is used if there is exactly one),
  in bar·Å³ as ``compute stress/atom`` gives them (else zeros, ``info["has_stress"] = False``).

Orthogonal (``ITEM: BOX BOUNDS pp pp ff``) and triclinic (``ITEM: BOX BOUNDS xy xz yz …``) boxes
are read; positions are stored relative to the box origin (lo corner), which goes into
``info["box_origin"]`` of the first frame. Boundary flags ``p`` make an axis periodic.
Atoms are sorted by id in every frame; every frame must hold the same atoms.
Environment fields are filled as :mod:`sagesnet_tf.pipelines.frames` describes.
Files are read with ``tf.io.gfile`` (local or remote paths).
"""

from __future__ import annotations

import re
from typing import Iterator, Mapping, Sequence

import numpy as np
import tensorflow as tf

from sagesnet_tf.atoms import ELEMENTS
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.pipelines import schema
from sagesnet_tf.pipelines.frames import environment_array, unwrap
from sagesnet_tf.trajectory import Trajectory

_POSITION_SETS = (("xu", "yu", "zu"), ("x", "y", "z"), ("xsu", "ysu", "zsu"), ("xs", "ys", "zs"))
_VECTOR_RE = re.compile(r"(.+)\[([1-6])\]\Z")


def _frames(path: str) -> Iterator[tuple[int, int, list[str], list[list[float]], list[str], list[str]]]:
    """Yield (line number, step, box flags, box lines, column names, atom lines) per frame."""
    schema.enable_filesystem(path)
    try:
        fh = tf.io.gfile.GFile(path, "r")
        lines = iter(enumerate(fh, start=1))
    except tf.errors.OpError as exc:
        raise SagesnetError(f"{path}: cannot open ({exc.message}); check the path") from None

    def next_line(what: str) -> tuple[int, str]:
        item = next(lines, None)
        if item is None:
            raise SagesnetError(f"{path}: file ends while reading {what}; the dump is truncated")
        return item[0], item[1].strip()

    with fh:
        for lineno, line in lines:
            line = line.strip()
            if not line:
                continue
            if line != "ITEM: TIMESTEP":
                raise SagesnetError(f"{path}:{lineno}: expected 'ITEM: TIMESTEP', got {line[:40]!r}; "
                                    "the file is not a LAMMPS text dump")
            try:
                step = int(next_line("the timestep")[1])
                _, item = next_line("the atom count")
                if item != "ITEM: NUMBER OF ATOMS":
                    raise ValueError(item)
                n = int(next_line("the atom count")[1])
                _, bounds = next_line("the box")
                if not bounds.startswith("ITEM: BOX BOUNDS"):
                    raise ValueError(bounds)
                box_lines = [[float(w) for w in next_line("the box")[1].split()] for _ in range(3)]
                at, header = next_line("the atom header")
                if not header.startswith("ITEM: ATOMS"):
                    raise ValueError(header)
            except ValueError as exc:
                raise SagesnetError(f"{path}: frame starting at line {lineno} has a garbled header "
                                    f"({str(exc)[:40]!r}); the file is not a LAMMPS text dump") from None
            atom_lines = [next_line(f"the atoms of step {step}")[1] for _ in range(n)]
            yield at, step, bounds.split()[3:], box_lines, header.split()[2:], atom_lines


def _box(bounds_flags: list[str], box_lines: list[list[float]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin (3,), cell (3, 3) rows a, b, c, pbc (3,)) from a dump's BOX BOUNDS item."""
    triclinic = bounds_flags[:3] == ["xy", "xz", "yz"]
    flags = bounds_flags[3:] if triclinic else bounds_flags
    (xlo_b, xhi_b, *t0), (ylo_b, yhi_b, *t1), (zlo, zhi, *t2) = box_lines
    xy, xz, yz = (t0[0], t1[0], t2[0]) if triclinic else (0.0, 0.0, 0.0)
    xlo = xlo_b - min(0.0, xy, xz, xy + xz)
    xhi = xhi_b - max(0.0, xy, xz, xy + xz)
    ylo = ylo_b - min(0.0, yz)
    yhi = yhi_b - max(0.0, yz)
    cell = np.array([[xhi - xlo, 0.0, 0.0], [xy, yhi - ylo, 0.0], [xz, yz, zhi - zlo]])
    pbc = np.array([f.startswith("p") for f in flags[:3]]) if len(flags) >= 3 else np.ones(3, bool)
    return np.array([xlo, ylo, zlo]), cell, pbc


def _stress_columns(path: str, columns: list[str], name: str | None) -> list[str] | None:
    groups: dict[str, set[str]] = {}
    for col in columns:
        m = _VECTOR_RE.match(col)
        if m:
            groups.setdefault(m.group(1), set()).add(m.group(2))
    complete = sorted(g for g, idx in groups.items() if idx == set("123456"))
    if name is not None:
        if name not in complete:
            raise SagesnetError(f"{path}: no stress columns {name}[1] … {name}[6] "
                                f"(found {', '.join(complete) or 'none'})")
        return [f"{name}[{i}]" for i in range(1, 7)]
    if len(complete) > 1:
        raise SagesnetError(f"{path}: several six-column groups ({', '.join(complete)}); say which is the "
                            "per-atom stress with stress_columns=")
    return [f"{complete[0]}[{i}]" for i in range(1, 7)] if complete else None


def _element_map(type_to_element: Mapping[int, str] | Sequence[str] | None) -> dict[int, str] | None:
    if type_to_element is None:
        return None
    if isinstance(type_to_element, Mapping):
        return {int(k): str(v) for k, v in type_to_element.items()}
    return {i + 1: str(v) for i, v in enumerate(type_to_element)}


def read_lammps_dump(path: str, type_to_element: Mapping[int, str] | Sequence[str] | None = None, *,
                     dt_fs: float, stress_columns: str | None = None,
                     environment: Mapping[str, float] | None = None) -> Trajectory:
    """All frames of a LAMMPS text dump as one Trajectory (see module docstring).

    Args:
        path: the dump file (local or remote).
        type_to_element: LAMMPS atom type → element, e.g. ``{1: "C", 2: "H"}`` or ``["C", "H"]``
            (type 1 first); may be omitted when the dump has an ``element`` column.
        dt_fs: MD timestep the run used, fs (dumps do not record it).
        stress_columns: name of the six-column per-atom stress group, e.g. ``"c_s"``.
        environment: constant environment values by field name (dumps do not record them).

    Returns:
        Trajectory: positions (T, N, 3) Å unwrapped relative to the box origin, velocities (T, N, 3)
        Å/ps, stress (T, N, 6) bar·Å³, cell (T, 3, 3) Å, step (T,), time_ps = step · dt_fs / 1000.
    """
    path = str(path)
    if not dt_fs > 0:
        raise SagesnetError(f"timestep must be a positive number of fs (got {dt_fs})")
    elements = _element_map(type_to_element)
    steps, positions, velocities, stresses, cells = [], [], [], [], []
    ids0 = symbols0 = pbc0 = origin0 = None
    has_stress = continuity = False
    for lineno, step, flags, box_lines, columns, atom_lines in _frames(path):
        origin, cell, pbc = _box(flags, box_lines)
        where = f"{path}:{lineno} (step {step})"
        col = {name: i for i, name in enumerate(columns)}
        table = np.array(" ".join(atom_lines).split(), dtype=object).reshape(len(atom_lines), len(columns))

        def numbers(names, dtype=np.float64) -> np.ndarray:
            try:
                return table[:, [col[c] for c in names]].astype(dtype)
            except ValueError:
                raise SagesnetError(f"{where}: non-numeric value in columns {' '.join(names)}") from None

        pos_set = next((s for s in _POSITION_SETS if all(c in col for c in s)), None)
        if pos_set is None:
            raise SagesnetError(f"{where}: no position columns (xu yu zu, x y z, xs ys zs or xsu ysu zsu) "
                                f"in {' '.join(columns)}; dump positions")
        pos = numbers(pos_set)
        if pos_set[0].startswith("xs"):
            pos = pos @ cell
        else:
            pos = pos - origin
        wrapped = not pos_set[0].endswith("u")
        has_images = all(c in col for c in ("ix", "iy", "iz"))
        if wrapped and has_images:
            pos = pos + numbers(("ix", "iy", "iz")) @ cell
        ids = numbers(["id"], np.int64)[:, 0] if "id" in col else np.arange(1, len(table) + 1)
        if "element" in col and elements is None:
            symbols = table[:, col["element"]].astype(str)
        elif "type" in col and elements is not None:
            types = numbers(["type"], np.int64)[:, 0]
            unknown = sorted(set(types.tolist()) - set(elements))
            if unknown:
                raise SagesnetError(f"{where}: atom type(s) {unknown} have no element; add them to type_to_element")
            symbols = np.array([elements[t] for t in types])
        else:
            raise SagesnetError(f"{where}: cannot tell elements; pass type_to_element (e.g. {{1: 'C', 2: 'H'}}) "
                                "for a dump with a type column, or dump an element column")
        bad = sorted(set(symbols.tolist()) - set(ELEMENTS))
        if bad:
            raise SagesnetError(f"{where}: element(s) {', '.join(bad)} unknown; "
                                f"sagesnet-tf knows {', '.join(ELEMENTS)}")
        order = np.argsort(ids)
        if ids0 is None:
            ids0, symbols0, pbc0, origin0 = ids[order], symbols[order], pbc, origin
            stress_cols = _stress_columns(path, columns, stress_columns)
            has_stress = stress_cols is not None
            continuity = wrapped and not has_images
        elif not np.array_equal(ids[order], ids0) or not np.array_equal(symbols[order], symbols0):
            raise SagesnetError(f"{where}: the frame holds other atoms than the first frame; "
                                "a trajectory needs the same atoms in every frame")
        steps.append(step)
        positions.append(pos[order])
        cells.append(cell)
        velocities.append(numbers(("vx", "vy", "vz"))[order] if "vx" in col else np.zeros_like(pos))
        stresses.append(numbers(stress_cols)[order] if has_stress else np.zeros((len(pos), 6)))
    if ids0 is None:
        raise SagesnetError(f"{path}: no frames found; the dump is empty")
    positions = np.stack(positions)
    cells = np.stack(cells)
    if continuity:
        positions = unwrap(positions, cells, pbc0)
    env, missing = environment_array(len(steps), environment)
    step_arr = np.array(steps, dtype=np.int64)
    return Trajectory(
        symbols=symbols0, ids=ids0, positions=positions, velocities=np.stack(velocities),
        stress=np.stack(stresses), cell=cells, pbc=pbc0, step=step_arr, time_ps=step_arr * dt_fs / 1000.0,
        environment=env, dt_fs=dt_fs,
        info={"source": f"lammps dump {path}", "has_stress": has_stress, "env_missing": missing,
              "box_origin": origin0.tolist()})
