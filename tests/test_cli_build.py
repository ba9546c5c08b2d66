"""``sagesnet-tf build``: every subcommand writes a readable file; bad input is one line and exit 2."""

import os
import subprocess
import sys

import pytest

from sagesnet_tf.cli.main import main
from sagesnet_tf.io import read_structure


@pytest.mark.parametrize("args,out,n_atoms,pbc", [
    (["graphene", "--nx", "6", "--ny", "4"], "g.extxyz", 96, [True, True, False]),
    (["ribbon", "--nx", "4", "--ny", "3", "--orientation", "zigzag"], "r.data", 48, [True, False, False]),
    (["kirigami", "--pattern", "000000010000000", "--nx", "13", "--ny", "10"], "k.xyz", None, [True, False, False]),
    (["cnt", "--n", "5", "--m", "5", "--length-cells", "2"], "POSCAR", 40, [False, False, True]),
    (["molecule", "benzene"], "benzene.cif", 12, [False, False, False]),
])
def test_build_writes_the_structure_and_one_summary_line(tmp_path, capsys, args, out, n_atoms, pbc):
    path = tmp_path / "sub" / out
    assert main(["build", *args, "--out", str(path)]) == 0
    atoms = read_structure(path)
    if n_atoms is not None:
        assert len(atoms) == n_atoms
    else:
        assert 0 < len(atoms) < 13 * 10 * 4
    assert atoms.pbc.tolist() == pbc
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"wrote {path}: {len(atoms)} atoms") and "cell" in lines[0]


def test_build_format_option_overrides_the_extension(tmp_path, capsys):
    path = tmp_path / "graphene.out"
    assert main(["build", "graphene", "--nx", "2", "--ny", "2", "--format", "lammps-data", "--out", str(path)]) == 0
    assert len(read_structure(path, fmt="lammps-data")) == 16


@pytest.mark.parametrize("args,expected", [
    (["kirigami", "--pattern", "111110000000000"], "severs the ribbon"),
    (["kirigami", "--pattern", "0101"], "15 binary digits"),
    (["molecule", "water"], "unknown molecule"),
    (["cnt", "--n", "2", "--m", "5"], "bad nanotube"),
    (["graphene", "--nx", "2", "--ny", "2", "--vacuum", "-1"], "vacuum must be positive"),
])
def test_bad_input_is_one_error_line_and_exit_2(tmp_path, capsys, args, expected):
    path = tmp_path / "x.extxyz"
    assert main(["build", *args, "--out", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: ") and expected in err[0]
    assert not path.exists()


def test_unknown_extension_is_refused(tmp_path, capsys):
    assert main(["build", "graphene", "--nx", "1", "--ny", "1", "--out", str(tmp_path / "g.txt")]) == 2
    assert "cannot tell the structure format" in capsys.readouterr().err


def test_installed_command_exits_2_with_one_error_line(tmp_path):
    """The real console script as a user runs it (one subprocess: CLI start-up is slow)."""
    exe = os.path.join(os.path.dirname(sys.executable), "sagesnet-tf")
    out = tmp_path / "k.extxyz"
    bad = subprocess.run([exe, "build", "kirigami", "--pattern", "000001111100000", "--out", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    errors = [line for line in bad.stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and "severs the ribbon" in errors[0]
    assert "Traceback" not in bad.stderr
    assert not out.exists()


def test_preview_png_is_written(tmp_path, capsys):
    png = tmp_path / "pics" / "k.png"
    assert main(["build", "kirigami", "--pattern", "010100101001010", "--nx", "13", "--ny", "10",
                 "--out", str(tmp_path / "k.extxyz"), "--preview", str(png)]) == 0
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
