"""Structures as people keep them: every format, fully periodic files with vacuum, sheets at z < 0,
velocities from every usual place, all reaching the shipped model's grid the same way."""

import json
import os

import numpy as np
import pytest

from sagesnet_tf.atoms import Atoms
from sagesnet_tf.cli.main import main
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.io import read_extxyz_frames, read_structure, write_structure
from sagesnet_tf.io.extxyz import ASE_VELOCITY_TO_A_PER_PS
from sagesnet_tf.io.model_frame import REACH_A, to_model_frame

ROOT = os.path.join(os.path.dirname(__file__), "..")
SHEET = os.path.join(ROOT, "examples", "graphene_10x6_300K.extxyz")  # held-out 300 K LAMMPS snapshot
MODEL = os.path.join(ROOT, "exported_models", "sagesnet_graphene")
GRID = ("periodic", "periodic", "open")  # the shipped model's boundary


def _periodic_everywhere(atoms: Atoms, dz: float = 0.0) -> Atoms:
    """The sheet as LAMMPS/VASP keep it: every axis periodic, the vacuum in the cell, moved by dz Å."""
    out = atoms.copy()
    out.pbc = np.ones(3, bool)
    out.positions[:, 2] += dz
    return out


def _lammps_full(path, atoms: Atoms) -> None:
    """``atoms`` as a LAMMPS ``atom_style full`` data file (id mol type q x y z ix iy iz) with a
    Velocities section and a box whose lower corner is not at 0, as write_data leaves it."""
    lo = np.array([-3.0, 2.0, -10.0])
    lines = ["LAMMPS data file via write_data, units = metal", "", f"{len(atoms)} atoms", "1 atom types",
             "1 bond types", "", *(f"{lo[k]!r} {lo[k] + atoms.cell[k, k]!r} {'xyz'[k]}lo {'xyz'[k]}hi" for k in range(3)),
             "", "Masses", "", "1 12.011", "", "Atoms # full", ""]
    lines += [f"{i} 1 1 0.0 {x + lo[0]!r} {y + lo[1]!r} {z + lo[2]!r} 0 0 0"
              for i, (x, y, z) in zip(atoms.ids.tolist(), atoms.positions.tolist())]
    lines += ["", "Velocities", ""]
    lines += [f"{i} {vx!r} {vy!r} {vz!r}" for i, (vx, vy, vz) in zip(atoms.ids.tolist(), atoms.velocities.tolist())]
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def sheet():
    return read_structure(SHEET)


@pytest.fixture(scope="module")
def files(sheet, tmp_path_factory):
    """The held-out sheet in every form a user may bring it: name -> path."""
    base = tmp_path_factory.mktemp("inputs")
    ttt, below = _periodic_everywhere(sheet), _periodic_everywhere(sheet, dz=-10.0)  # centred on z = 0
    below_open = below.copy()
    below_open.pbc = sheet.pbc.copy()
    paths = {"ttt.extxyz": ttt, "POSCAR": ttt, "sheet.cif": ttt, "atomic.data": ttt, "below.extxyz": below_open,
             "below.vasp": below}
    out = {}
    for name, atoms in paths.items():
        write_structure(atoms, base / name)
        out[name] = base / name
    for name, text in {"ttt.extxyz": "pbc=\"T T T\"", "POSCAR": "pbc=T T T", "atomic.data": "pbc=T T T"}.items():
        path = out[name]  # as other programs write them: no pbc stated, so every axis periodic
        path.write_text(path.read_text().replace(text, ""))
    _lammps_full(base / "full.data", below)
    out["full.data"] = base / "full.data"
    return out


def _model_input(path) -> tuple[Atoms, np.ndarray]:
    atoms = read_structure(path)
    placed = to_model_frame(atoms, GRID)
    np.testing.assert_allclose(placed.to_input(placed.atoms.positions), atoms.positions, atol=1e-9)
    return placed.atoms, atoms.positions


@pytest.mark.parametrize("name", ["ttt.extxyz", "POSCAR", "sheet.cif", "atomic.data", "below.extxyz", "below.vasp",
                                  "full.data"])
def test_every_form_of_the_sheet_reaches_the_model_as_the_same_input(sheet, files, name):
    reference = to_model_frame(sheet, GRID).atoms
    got, as_read = _model_input(files[name])
    assert got.pbc.tolist() == [True, True, False]
    assert got.symbols.tolist() == reference.symbols.tolist()
    np.testing.assert_allclose(got.cell, reference.cell, atol=1e-6)
    # x, y: the same atoms modulo the periodic cell (CIF and LAMMPS data wrap them); z: the same
    # sheet up to one translation, inside the cell (the open-axis grid starts at the lowest atom)
    d = got.fractional()[:, :2] - reference.fractional()[:, :2]
    assert np.abs(d - np.round(d)).max() < 1e-7
    z, z_ref = got.positions[:, 2], reference.positions[:, 2]
    np.testing.assert_allclose(z - z.min(), z_ref - z_ref.min(), atol=1e-6)
    assert 0.0 <= z.min() and z.max() <= got.cell[2, 2]
    if name.startswith(("below", "full")):
        assert as_read[:, 2].min() < 0  # the file's sheet is centred on z = 0 ...
        assert abs(0.5 * (z.min() + z.max()) - 0.5 * got.cell[2, 2]) < 1e-9  # ... the model's in mid-cell


def test_velocities_come_from_the_file_in_its_units(sheet, files, tmp_path):
    full = read_structure(files["full.data"])
    assert full.info["velocity_source"].startswith("LAMMPS data Velocities section")
    np.testing.assert_allclose(full.velocities, sheet.velocities, atol=1e-9)
    assert read_structure(files["POSCAR"]).info["velocity_source"].startswith("none")
    # VASP's velocity block is Å/fs
    poscar = tmp_path / "POSCAR_v"
    text = files["POSCAR"].read_text().rstrip("\n")
    poscar.write_text(text + "\n\n" + "\n".join(f"{vx / 1000!r} {vy / 1000!r} {vz / 1000!r}"
                                                for vx, vy, vz in sheet.velocities.tolist()) + "\n")
    np.testing.assert_allclose(read_structure(poscar).velocities, sheet.velocities, atol=1e-9)
    # extxyz: velo / velocities / vel in Å/ps, ASE momenta in amu·Å per ASE time unit (10.1805 fs)
    v = np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]])
    masses = np.array([12.011, 1.008])
    for column, values, factor in [("velo", v, 1.0), ("velocities", v, 1.0), ("vel", v, 1.0),
                                   ("momenta", v * masses[:, None] / ASE_VELOCITY_TO_A_PER_PS, 1.0)]:
        path = tmp_path / f"{column}.extxyz"
        rows = "\n".join(f"{s} {x} 1 1 {a!r} {b!r} {c!r}" for s, x, (a, b, c) in zip("CH", (1, 3), values.tolist()))
        path.write_text(f'2\nLattice="10 0 0 0 10 0 0 0 10" Properties=species:S:1:pos:R:3:{column}:R:3\n{rows}\n')
        atoms = read_structure(path)
        np.testing.assert_allclose(atoms.velocities, v * factor, rtol=1e-12)
        assert f"column {column}" in atoms.info["velocity_source"]
        assert "per_atom" not in atoms.info  # the velocity column is not kept as an extra column
    assert ASE_VELOCITY_TO_A_PER_PS == pytest.approx(98.2269479, rel=1e-8)  # 1 ps in ASE time units


def test_lammps_charge_style_and_unnamed_styles(tmp_path):
    box = "0 10 xlo xhi\n0 10 ylo yhi\n0 20 zlo zhi\n"
    charge = tmp_path / "charge.data"
    charge.write_text(f"title\n\n2 atoms\n1 atom types\n{box}\nAtoms # charge\n\n1 1 0.1 1 1 1\n2 1 -0.1 2.4 1 1\n")
    np.testing.assert_allclose(read_structure(charge).positions, [[1, 1, 1], [2.4, 1, 1]])
    unnamed = tmp_path / "unnamed.data"  # 7 fields without a style comment: full
    unnamed.write_text(f"title\n\n1 atoms\n1 atom types\n{box}\nAtoms\n\n1 5 1 0.0 1 2 3\n")
    np.testing.assert_allclose(read_structure(unnamed).positions, [[1, 2, 3]])
    ambiguous = tmp_path / "ambiguous.data"  # 6 fields: charge or molecular, cannot tell
    ambiguous.write_text(f"title\n\n1 atoms\n1 atom types\n{box}\nAtoms\n\n1 1 1 1 2 3\n")
    with pytest.raises(SagesnetError, match="Atoms # full"):
        read_structure(ambiguous)


def test_what_cannot_be_placed_is_one_line_saying_how_to_fix_it(sheet, files):
    below = read_structure(files["below.extxyz"])  # read as it is: pbc T T F, half the sheet under z = 0
    with pytest.raises(SagesnetError, match="lie outside the non-periodic cell along axis z; shift them"):
        below.validate("md input")  # LAMMPS (generate md) takes atoms inside the cell only
    thin = _periodic_everywhere(sheet)
    thin.cell[2, 2] = 0.66 + REACH_A - 0.5  # the sheet spans 0.66 Å; vacuum 0.5 Å short of the reach
    thin.positions[:, 2] -= 9.6
    with pytest.raises(SagesnetError, match=r"with 9\.7 Å of vacuum.*enlarge the cell along z to 10\.9 Å") as err:
        to_model_frame(thin, GRID)
    assert "\n" not in str(err.value)
    ribbon_open_y = sheet.copy()
    ribbon_open_y.pbc = np.array([True, False, False])
    with pytest.raises(SagesnetError, match="periodic along y but the structure is open along y"):
        to_model_frame(ribbon_open_y, GRID)
    assert not to_model_frame(sheet, GRID).actions  # a file that already matches is left exactly alone
    assert not to_model_frame(sheet, GRID).shift.any()


def test_simulate_runs_a_fully_periodic_sheet_below_zero_and_keeps_its_frame_and_vel_column(sheet, tmp_path, capsys):
    # every axis periodic with the vacuum in the cell, the sheet centred on z = 0, velocities in a
    # `vel` column: as other tools write it (the other forms reach the model alike, test above)
    vel_file = tmp_path / "vel_ttt.extxyz"
    rows = "\n".join(f"C {x!r} {y!r} {z - 10.0!r} {a!r} {b!r} {c!r}" for (x, y, z), (a, b, c)
                     in zip(sheet.positions.tolist(), sheet.velocities.tolist()))
    lattice = " ".join(repr(float(v)) for v in sheet.cell.reshape(-1))
    vel_file.write_text(f'{len(sheet)}\nLattice="{lattice}" Properties=species:S:1:pos:R:3:vel:R:3 pbc="T T T"\n{rows}\n')
    start = read_structure(vel_file)
    assert start.positions[:, 2].min() < 0
    out = tmp_path / "run"
    rc = main(["simulate", "--model", MODEL, "--structure", str(vel_file), "--steps", "2", "--every", "2",
               "--temperature", "300", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "input adaptation: z periodic in the file" in err and "column vel" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert "taken as open" in manifest["input_adaptation"] and "shifted along z by +10.0" in manifest["input_adaptation"]
    assert "column vel" in manifest["velocity_source"]
    assert manifest["status"] == "completed" and manifest["steps_done"] == 2
    frames = read_extxyz_frames(out / "trajectory.extxyz")
    assert len(frames) == 2
    # the file's own velocities are kept (not redrawn at --temperature), positions stay in its frame
    assert manifest["initial_velocities"].startswith("from the structure")
    np.testing.assert_allclose(frames[0].velocities, start.velocities, atol=1e-5)
    np.testing.assert_allclose(frames[0].positions, start.positions, atol=1e-5)
    assert frames[1].pbc.tolist() == [True, True, True]
    moved = np.abs(frames[1].positions - start.positions).max()
    assert 0 < moved < 0.2  # two steps of 2 fs: thermal motion in the input's frame, no shift left
    assert frames[1].positions[:, 2].min() < 0
    header = (out / "trajectory.extxyz").read_text().splitlines()[1]  # only the model's own columns
    assert ":vel:" not in header and "velocity_source" not in header
    assert "Properties=species:S:1:pos:R:3:velo:R:3:id:I:1:flags:I:1:uncertainty:R:1 " in header
