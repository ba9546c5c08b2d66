"""The LAMMPS engine on tiny real systems: box and atoms from an Atoms, error surfacing."""

import numpy as np
import pytest

from sagesnet_tf.atoms import Atoms
from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.md.engine import LammpsEngine
from sagesnet_tf.structures import graphene_sheet

pytestmark = pytest.mark.lammps


def test_atoms_box_and_potential_reach_lammps(tmp_path):
    sheet = graphene_sheet(3, 2)
    sheet.positions[0, 0] -= 0.3  # outside the cell along periodic x: wrapped with an image flag
    with LammpsEngine(str(tmp_path / "log.lammps"), threads=2) as engine:
        engine.load_atoms(sheet)
        engine.command("run 0")
        assert engine.lmp.get_natoms() == len(sheet)
        origin, cell = engine.box()
        np.testing.assert_allclose(origin, 0.0)
        np.testing.assert_allclose(cell, sheet.cell)
        ids = np.array(engine.lmp.numpy.extract_atom("id")[:len(sheet)])
        wrapped = np.array(engine.lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)
        image = np.array(engine.lmp.gather_atoms("image", 0, 1))
        assert engine.lmp.decode_image_flags(int(image[0]))[0] == -1
        assert wrapped[0, 0] == pytest.approx(sheet.positions[0, 0] + sheet.cell[0, 0])
        # Cohesive energy of graphene with AIREBO is ≈ -7.4 eV/atom.
        pe = engine.lmp.get_thermo("pe") / len(sheet)
        assert -7.6 < pe < -7.2
        assert sorted(ids) == list(range(1, len(sheet) + 1))
    assert "airebo/omp" in (tmp_path / "log.lammps").read_text()


def test_triclinic_cell_becomes_prism(tmp_path):
    sheet = graphene_sheet(3, 2)
    sheet.cell[1, 0] = 1.0  # tilt b along x
    with LammpsEngine(str(tmp_path / "log.lammps"), threads=1) as engine:
        engine.load_atoms(sheet)
        _, cell = engine.box()
        assert cell[1, 0] == pytest.approx(1.0)


def test_lammps_error_names_text_and_command(tmp_path):
    with LammpsEngine(str(tmp_path / "log.lammps"), threads=1) as engine:
        engine.load_atoms(graphene_sheet(3, 2))
        with pytest.raises(SagesnetError) as err:
            engine.command("fix broken all nvt temp 300 300")
    message = str(err.value)
    assert "`fix broken all nvt temp 300 300`" in message and "fix nvt" in message.lower()
    assert "\n" not in message and "ERROR" not in message


@pytest.mark.parametrize("make, match", [
    (lambda a: setattr(a, "cell", np.diag([a.cell[0, 0], a.cell[1, 1], 8.0])), "vacuum along non-periodic axis z"),
    (lambda a: a.cell.__setitem__((0, 1), 0.5), "lower-triangular"),
    (lambda a: a.positions.__setitem__(1, a.positions[0] + [0.1, 0, 0]), "overlap"),
])
def test_structures_lammps_cannot_run_are_refused(tmp_path, make, match):
    sheet = graphene_sheet(3, 2)
    sheet.positions[:, 2] = 4.0 if "vacuum" in match else sheet.positions[:, 2]
    make(sheet)
    with LammpsEngine(str(tmp_path / "log.lammps"), threads=1) as engine:
        with pytest.raises(SagesnetError, match=match):
            engine.load_atoms(Atoms(sheet.symbols, sheet.positions, sheet.cell, sheet.pbc))
