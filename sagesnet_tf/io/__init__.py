"""Structure and trajectory files, all through the one :class:`~sagesnet_tf.atoms.Atoms` type.

- :func:`read_structure` / :func:`write_structure`: extxyz, POSCAR/CONTCAR, CIF, LAMMPS data,
  chosen by file extension (see :mod:`sagesnet_tf.io.structure_files`).
- :func:`read_extxyz_frames` / :func:`iter_extxyz_frames` / :func:`write_extxyz_frames`:
  multi-frame extended XYZ (see :mod:`sagesnet_tf.io.extxyz`).
- :func:`atomic_output`: how every writer here makes its file appear whole or not at all;
  :func:`write_json`: a JSON file written through it (both in :mod:`sagesnet_tf.io.atomic`).
"""

from __future__ import annotations

from sagesnet_tf.io.atomic import atomic_output, write_json
from sagesnet_tf.io.extxyz import iter_extxyz_frames, read_extxyz_frames, write_extxyz_frames
from sagesnet_tf.io.structure_files import FORMATS, detect_format, read_structure, write_structure

__all__ = [
    "FORMATS", "atomic_output", "detect_format", "iter_extxyz_frames", "read_extxyz_frames",
    "read_structure", "write_extxyz_frames", "write_json", "write_structure",
]
