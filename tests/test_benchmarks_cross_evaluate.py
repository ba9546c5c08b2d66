"""benchmarks.cross_evaluate's pieces on the quick ribbon as built (no tension run): classes, geometry, both engines."""

from pathlib import Path

import numpy as np
import pytest

from benchmarks.cross_evaluate import (CLASSES, Evaluator, atom_classes, force_errors, geometry, ribbon_bonds)
from sagesnet_tf.analysis.stress_strain import nominal_thickness, nominal_width
from sagesnet_tf.kirigami_tension import QUICK
from sagesnet_tf.savedmodel import resolve_model_dir
from sagesnet_tf.structures import kirigami_cut_corners

PATTERN = "010000000001000"
SHIPPED = Path(__file__).resolve().parents[1] / "exported_models" / "sagesnet_graphene"


@pytest.fixture(scope="module")
def ribbon():
    atoms = QUICK.ribbon(PATTERN, periodic_y=True)
    corners = kirigami_cut_corners(PATTERN, QUICK.nx, QUICK.ny)
    return atoms, corners, atom_classes(atoms, corners), ribbon_bonds(atoms)


def test_classes_and_geometry_of_the_built_ribbon(ribbon):
    atoms, corners, classes, bonds = ribbon
    assert len(corners) and set(classes) <= set(CLASSES)
    assert all(np.sum(classes == c) > 0 for c in CLASSES)
    assert np.all(bonds[:, 0] < bonds[:, 1]) and len(np.unique(bonds, axis=0)) == len(bonds)
    g = geometry(atoms, bonds, atoms, classes, corners)
    assert g["max_bond_A"] == pytest.approx(1.397, abs=1e-3)       # a_cc of the builder
    assert g["bulk_axial_bond_A"] == pytest.approx(g["bulk_inclined_bond_A"])
    assert g["angle_min_deg"] == pytest.approx(120.0, abs=0.01) and g["angle_max_deg"] == pytest.approx(120.0, abs=0.01)
    assert g["bonds_over_1.6_A"] == 0.0 and g["z_std_A"] == 0.0
    stretched = atoms.copy()
    stretched.positions = atoms.positions * [1.1, 1.0, 1.0]
    stretched.cell = np.diag(np.diag(atoms.cell) * [1.1, 1.0, 1.0])
    s = geometry(stretched, bonds, atoms, classes, corners)
    assert s["bulk_axial_bond_A"] == pytest.approx(1.1 * 1.397, abs=1e-3)
    assert s["bulk_axial_bond_A"] > s["bulk_inclined_bond_A"]


def test_force_errors_by_class(ribbon):
    classes = ribbon[2]
    forces = np.random.default_rng(0).normal(size=(len(classes), 3))
    same = force_errors(forces, forces, classes)
    assert all(same[f"rmse_{c}"] == 0.0 for c in CLASSES) and same["rmse_all"] == 0.0
    shifted = force_errors(forces + [1.0, 0.0, 0.0], forces, classes)
    assert shifted["rmse_bulk"] == pytest.approx(np.sqrt(1 / 3)) and shifted["mean_abs_tip"] == pytest.approx(1.0)


@pytest.mark.skipif(not any(SHIPPED.glob("*/saved_model.pb")), reason="needs the shipped model")
def test_both_engines_on_a_strained_ribbon_in_any_atom_order(ribbon, tmp_path):
    atoms, _, _, _ = ribbon
    evaluator = Evaluator(resolve_model_dir(str(SHIPPED)), nominal_width(atoms, "x"), nominal_thickness(atoms), tmp_path / "log.lammps", 1)
    stretched = atoms.copy()
    stretched.positions = atoms.positions * [1.05, 1.0, 1.0]
    stretched.cell = np.diag(np.diag(atoms.cell) * [1.05, 1.0, 1.0])
    airebo, model = evaluator.airebo(stretched, relax=True), evaluator.model(stretched)
    # the affine ribbon: both stresses within 10 % (benchmarks.static_tension), forces of the same order
    assert model["stress_GPa"] == pytest.approx(airebo["stress_GPa"], rel=0.1) and airebo["stress_GPa"] > 5.0
    assert np.sqrt(np.mean((model["forces"] - airebo["forces"]) ** 2)) < 1.0
    assert airebo["relaxed_energy_eV"] < airebo["energy_eV"]
    order = np.random.default_rng(1).permutation(len(atoms))           # AIREBO's forces come back in the atoms' order
    permuted = stretched.copy()
    permuted.positions, permuted.ids = stretched.positions[order], stretched.ids[order]
    permuted.velocities = stretched.velocities[order]
    np.testing.assert_allclose(evaluator.airebo(permuted)["forces"], airebo["forces"][order], atol=1e-6)
