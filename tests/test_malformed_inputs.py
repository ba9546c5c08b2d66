"""A corpus of generated malformed inputs: every one is a one-line ``Error:`` and nothing left behind.

Categories (counts in docs/RELIABILITY.md): structure files of every format (empty, truncated,
NaN/inf, unknown elements, overlapping atoms, zero/negative/skewed cells, wrong counts, binary
junk, other formats' text) fed to ``simulate`` and ``generate md``; options of every verb (out of
range, not numbers, wrong units, impossible combinations, unwritable outputs); training configs
(YAML/JSON syntax, binary, unknown keys, wrong types, NaN/inf, out of range, impossible
schedules); data directories; model directories; ``evaluate`` references.

Each case runs in-process through :func:`sagesnet_tf.cli.main.main` and asserts: a non-zero exit
(2: a user error, never the internal-error fallback), exactly one line on stderr starting with
``Error:``, no traceback, and no file left in the case's output folder (an output directory may
be left empty; a pre-existing output is unchanged). Validation fails before any TensorFlow model
is loaded except in the model-directory cases. A few cases run the installed ``sagesnet-tf``
entry point in a subprocess to check it behaves the same.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sagesnet_tf import structures  # noqa: E402
from sagesnet_tf.cli.main import main  # noqa: E402
from sagesnet_tf.io import write_structure  # noqa: E402
from sagesnet_tf.training import md_config  # noqa: E402
from sagesnet_tf.training.config import (CheckpointConfig, DataConfig, StageConfig, TrainConfig,  # noqa: E402
                                         ValidationConfig)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = str(ROOT / "examples" / "graphene_10x6_300K.extxyz")
MODEL = str(ROOT / "exported_models" / "sagesnet_graphene")

# ------------------------------------------------------------------------------- structure files
#: File name of each format the readers take (two spellings of each of the four formats).
STRUCTURE_NAMES = ("s.extxyz", "s.xyz", "POSCAR", "s.vasp", "s.cif", "s.data", "s.lmp")


def _kind(name: str) -> str:
    return {"extxyz": "xyz", "xyz": "xyz", "vasp": "poscar", "cif": "cif", "data": "data", "lmp": "data"}.get(
        name.rsplit(".", 1)[-1], "poscar")


@functools.lru_cache(maxsize=None)
def valid_text(kind: str) -> str:
    """A valid 2 × 2-cell graphene sheet (16 atoms) in ``kind``'s format."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / {"xyz": "v.extxyz", "poscar": "v.vasp", "cif": "v.cif", "data": "v.data"}[kind]
        write_structure(structures.graphene_sheet(2, 2), path)
        return path.read_text()


def _atom_lines(kind: str, lines: list[str]) -> list[int]:
    """Indices of the atom lines (in file order) of a valid text of ``kind``."""
    if kind == "xyz":
        return list(range(2, 2 + int(lines[0])))
    if kind == "poscar":
        return list(range(8, 8 + int(lines[6])))
    if kind == "cif":
        return [i for i, l in enumerate(lines) if l.startswith("  C  C")]
    start = lines.index("Atoms # atomic") + 2
    return list(range(start, start + int(lines[2].split()[0])))


def _xyz_columns(kind: str) -> slice:
    return {"xyz": slice(1, 4), "poscar": slice(0, 3), "cif": slice(3, 6), "data": slice(2, 5)}[kind]


def _set_atom(kind: str, text: str, index: int, column: int, value: str) -> str:
    """``text`` with coordinate ``column`` (0 x, 1 y, 2 z) of atom ``index`` replaced by ``value``."""
    lines = text.split("\n")
    row = _atom_lines(kind, lines)[index]
    words = lines[row].split()
    at = _xyz_columns(kind).start + column
    lines[row] = " ".join(words[:at] + ([value] if value else []) + words[at + 1:])
    return "\n".join(lines)


def _coordinate(kind: str, text: str, index: int, column: int) -> float:
    lines = text.split("\n")
    return float(lines[_atom_lines(kind, lines)[index]].split()[_xyz_columns(kind)][column])


def _cell_length(kind: str) -> float:
    return 2 * 3 * structures.A_CC  # the 2 × 2 armchair sheet's x length (each cell 3·a_cc)


def _overlap(kind: str, text: str, distance: float) -> str:
    """Atom 2 moved to ``distance`` Å from atom 1 along x."""
    x0 = _coordinate(kind, text, 0, 0)
    y0, z0 = _coordinate(kind, text, 0, 1), _coordinate(kind, text, 0, 2)
    scale = 1.0 / _cell_length(kind) if kind in ("poscar", "cif") else 1.0
    for column, value in ((0, x0 + distance * scale), (1, y0), (2, z0)):
        text = _set_atom(kind, text, 1, column, f"{value:.10f}")
    return text


def _element(kind: str, text: str, symbol: str) -> str:
    lines = text.split("\n")
    if kind == "xyz":
        row = _atom_lines(kind, lines)[1]
        lines[row] = symbol + lines[row][1:]
    elif kind == "poscar":
        lines[5] = symbol
        lines[0] = lines[0].replace("C16", f"{symbol}16")
        for row in _atom_lines(kind, lines):
            lines[row] = lines[row].rsplit(" ", 1)[0] + " " + symbol
    elif kind == "cif":
        row = _atom_lines(kind, lines)[1]
        lines[row] = lines[row].replace("  C  C1", f"  {symbol}  {symbol}1")
    else:
        row = lines.index("Masses") + 2
        lines[row] = f"1 {99.5 if symbol != 'U' else 238.03} # {symbol}"
    return "\n".join(lines)


def _count(kind: str, text: str, count: str) -> str:
    lines = text.split("\n")
    if kind == "xyz":
        lines[0] = count
    elif kind == "poscar":
        lines[6] = count
    else:
        lines[2] = f"{count} atoms"
    return "\n".join(lines)


def _duplicate_atom(kind: str, text: str, adjust_count: bool) -> str:
    lines = text.split("\n")
    rows = _atom_lines(kind, lines)
    n = len(rows)
    extra = lines[rows[0]]
    if kind == "data":
        extra = f"{n + 1} " + extra.split(" ", 1)[1]
    elif kind == "cif":
        extra = extra.replace("C0", f"C{n}")
    lines.insert(rows[-1] + 1, extra)
    text = "\n".join(lines)
    if adjust_count and kind != "cif":
        text = _count(kind, text, str(n + 1))
    if kind == "data" and adjust_count:  # the Velocities section needs the extra atom too
        text = text.rstrip("\n") + f"\n{n + 1} 0.0 0.0 0.0\n"
    return text


def _cell(kind: str, text: str, lengths: tuple[str, str, str], tilt: str | None = None) -> str:
    """The cell's three lengths replaced (and, with ``tilt``, a non-orthogonal cell)."""
    lines = text.split("\n")
    if kind == "xyz":
        start = lines[1].index('Lattice="') + 9
        end = lines[1].index('"', start)
        ax, by, cz = lengths
        xy = tilt or "0.0"
        lines[1] = lines[1][:start] + f"{ax} 0.0 0.0 {xy} {by} 0.0 0.0 0.0 {cz}" + lines[1][end:]
    elif kind == "poscar":
        ax, by, cz = lengths
        lines[2:5] = [f"{ax} 0.0 0.0", f"{tilt or '0.0'} {by} 0.0", f"0.0 0.0 {cz}"]
    elif kind == "cif":
        for key, value in zip(("_cell_length_a", "_cell_length_b", "_cell_length_c"), lengths):
            lines = [f"{key}   {value}" if l.startswith(key) else l for l in lines]
        if tilt:
            lines = [f"_cell_angle_gamma   {tilt}" if l.startswith("_cell_angle_gamma") else l for l in lines]
    else:
        for value, tag in zip(lengths, ("xlo xhi", "ylo yhi", "zlo zhi")):
            lines = [f"0.0 {value} {tag}" if l.endswith(tag) else l for l in lines]
        if tilt:
            row = [i for i, l in enumerate(lines) if l.endswith("zlo zhi")][0]
            lines.insert(row + 1, f"{tilt} 0.0 0.0 xy xz yz")
    return "\n".join(lines)


def _truncate(text: str, fraction: float) -> str:
    return text[: int(len(text) * fraction)]


@functools.lru_cache(maxsize=None)
def _structure_mutations(kind: str) -> dict[str, object]:
    """name -> file content (str or bytes) of every malformed variant of ``kind``."""
    text = valid_text(kind)
    out: dict[str, object] = {}
    for value in ("nan", "NaN", "inf", "-inf", "1e999", "abc", "", "1.0.0", "0x10"):
        out[f"x_{value or 'missing'}"] = _set_atom(kind, text, 1, 0, value)
    for column in (1, 2):
        out[f"{'xyz'[column]}_nan"] = _set_atom(kind, text, 1, column, "nan")
        out[f"{'xyz'[column]}_inf"] = _set_atom(kind, text, 1, column, "inf")
    for symbol in ("Xx", "U", "Si", "Q", "Fe", "N", "O", "Zz"):
        out[f"element_{symbol}"] = _element(kind, text, symbol)
    for distance in (0.0, 0.05, 0.1, 0.2, 0.3, 0.45):
        out[f"overlap_{distance}"] = _overlap(kind, text, distance)
    out["duplicate_atom"] = _duplicate_atom(kind, text, adjust_count=True)
    if kind != "cif":
        # (POSCAR: lines after the counted atoms are not atoms, as in VASP: a count below the lines is valid)
        if kind != "poscar":
            out["duplicate_line"] = _duplicate_atom(kind, text, adjust_count=False)
        for count in ("17", "0", "-1", "abc", "1000000000000", "1.5") + (("15",) if kind != "poscar" else ()):
            out[f"count_{count}"] = _count(kind, text, count)
    length = f"{_cell_length(kind):.6f}"
    for name, lengths in (("zero", ("0.0", "0.0", "0.0")), ("zero_z", (length, "4.839", "0.0")),
                          ("nan", ("nan", "4.839", "20.0")), ("inf", (length, "inf", "20.0")),
                          ("tiny", ("0.1", "0.1", "20.0")), ("negative_x", (f"-{length}", "4.839", "20.0")),
                          ("negative_z", (length, "4.839", "-20.0"))):
        if kind == "cif" and name in ("zero", "zero_z"):
            continue  # pymatgen reads a zero CIF length as a degenerate lattice too; kept below as "zero_cif"
        out[f"cell_{name}"] = _cell(kind, text, lengths)
    if kind == "cif":
        out["cell_zero_cif"] = _cell(kind, text, ("0", "0", "0"))
    for fraction in (0.05, 0.15, 0.3, 0.45):
        out[f"truncated_{fraction}"] = _truncate(text, fraction)
    if kind in ("xyz", "poscar"):
        for fraction in (0.6, 0.75, 0.9):
            out[f"truncated_{fraction}"] = _truncate(text, fraction)
    out["empty"] = ""
    out["blank"] = "   \n\n  \n"
    for seed in range(3):
        out[f"binary_{seed}"] = np.random.default_rng(seed).integers(0, 256, 2000, dtype=np.uint8).tobytes()
    out["nul_bytes"] = b"\0" * 500
    out["utf16"] = text.encode("utf-16")
    out["latin1"] = "é\xe9ü\n".encode("latin-1") * 20
    out["prose"] = "this is not a structure file\njust words\n"
    for other in ("xyz", "poscar", "cif", "data"):
        if other != kind:
            out[f"as_{other}"] = valid_text(other)
    return out


def _structure_cases() -> list:
    cases = []
    for name in STRUCTURE_NAMES:
        kind = _kind(name)
        for mutation in _structure_mutations(kind):
            for verb in ("simulate", "generate md"):
                cases.append(pytest.param(verb, name, mutation, id=f"{verb.replace(' ', '_')}-{name}-{mutation}"))
    return cases


STRUCTURE_CASES = _structure_cases()
#: The verb's arguments around ``--structure FILE`` (each refuses the file before any run starts).
VERB_ARGS = {"simulate": (["simulate", "--steps", "1"], ["--out"]),
             "generate md": (["generate", "md", "--protocol", "nvt", "--temperature", "300", "--steps", "10"],
                             ["--out"])}


@pytest.fixture(scope="module")
def corpus_dir(tmp_path_factory) -> Path:
    """Files shared by the cases (a config, a CA dataset-like directory, junk files)."""
    base = tmp_path_factory.mktemp("corpus")
    (base / "junk.bin").write_bytes(np.random.default_rng(7).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (base / "file.txt").write_text("a file, not a directory\n")
    (base / "emptydir").mkdir()
    ca = {"name": "c", "stages": [{"kind": "predictor", "steps": 2}]}
    (base / "ca.yaml").write_text(json.dumps(ca))
    one = structures.graphene_sheet(1, 1)
    write_structure(one.__class__(["C"], one.positions[:1], one.cell, one.pbc), base / "one_atom.extxyz")
    return base


def _check(capfd, rc: int, out_dir: Path, unchanged: dict | None = None) -> str:
    """The assertions every case makes; returns the error line."""
    captured = capfd.readouterr()
    lines = [l for l in captured.err.splitlines() if l.strip()]
    assert rc == 2, f"exit {rc}, stderr: {captured.err[-2000:]}"
    assert "Traceback" not in captured.err + captured.out
    assert len(lines) == 1, f"stderr has {len(lines)} lines: {captured.err[-2000:]}"
    assert lines[0].startswith("Error: ") and "internal error" not in lines[0], lines[0]
    left = [p for p in out_dir.rglob("*") if not p.is_dir()] if out_dir.exists() else []
    assert not left, f"left behind: {left}"
    for path, content in (unchanged or {}).items():
        assert Path(path).read_bytes() == content, f"{path} changed"
    return lines[0]


@pytest.mark.parametrize("verb,name,mutation", STRUCTURE_CASES)
def test_malformed_structure_file(tmp_path, capfd, verb, name, mutation):
    content = _structure_mutations(_kind(name))[mutation]
    path = tmp_path / "in" / name
    path.parent.mkdir()
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    before, after = VERB_ARGS[verb]
    out = tmp_path / "o"
    rc = main([*before, "--structure", str(path), *after, str(out / "run")])
    line = _check(capfd, rc, out)
    assert str(path) in line or name in line or "structure" in line.lower(), line


def test_structure_directory_and_missing_file(tmp_path, capfd):
    for verb in VERB_ARGS:
        before, after = VERB_ARGS[verb]
        for path in (tmp_path, tmp_path / "missing.extxyz", ""):
            rc = main([*before, "--structure", str(path), *after, str(tmp_path / "o" / "run")])
            _check(capfd, rc, tmp_path / "o")


# ------------------------------------------------------------------------------------- options
NUMBER_JUNK = ("nan", "NaN", "inf", "-inf", "1e999", "abc", "", "1.2.3", "5ps", "300K")


def _option_cases() -> list:
    s = ["simulate", "--structure", EXAMPLE]
    cases = []

    def add(name, argv, out="{OUT}/run"):
        cases.append(pytest.param(argv, out, id=name))

    # simulate: every numeric option with junk and out-of-range values
    for value in (*NUMBER_JUNK, "-1", "0", "-0.0"):
        add(f"simulate--time-ps={value}", [*s, "--time-ps", value])
    for value in (*NUMBER_JUNK, "-1", "0"):
        add(f"simulate--max-strain={value}", [*s, "--strain-rate", "0.01", "--max-strain", value])
    for value in (*NUMBER_JUNK, "-50", "-0.001", "-273.16", "10000", "1e5"):
        add(f"simulate--temperature={value}", [*s, "--steps", "1", "--temperature", value])
    for value in (*NUMBER_JUNK, "1e6", "2", "-2", "1.000001", "-1e3"):
        add(f"simulate--strain-rate={value}", [*s, "--steps", "1", "--strain-rate", value])
    for value in ("nan", "inf", "-inf", "abc", "-1", "0", ""):
        add(f"simulate--thermostat-ps={value}", [*s, "--steps", "1", "--temperature", "300", "--thermostat-ps", value])
    for value in ("-1", "-2147483648", "2147483648", "1e3", "abc", "1.5", "", "nan"):
        add(f"simulate--seed={value}", [*s, "--steps", "1", "--seed", value])
    for value in ("-1", "3000000000", "2147483648", "abc", "1.5", "", "nan", "1e3"):
        add(f"simulate--steps={value}", [*s, "--steps", value])
    for value in ("0", "-1", "2147483648", "abc", "1.5", "nan"):
        add(f"simulate--every={value}", [*s, "--steps", "1", "--every", value])
    for value in ("-1", "abc", "1.5"):
        add(f"simulate--scale={value}", [*s, "--steps", "1", "--scale", value])
    for value in ("w", "X", "", "xy", "0"):
        add(f"simulate--axis={value}", [*s, "--steps", "1", "--axis", value])
    # simulate: impossible combinations and bad paths
    add("simulate-no-stop", [*s])
    add("simulate-one-atom-at-a-temperature", ["simulate", "--structure", "{ONE}", "--steps", "1", "--temperature", "300"])
    add("simulate-time-past-int32-steps", [*s, "--time-ps", "1e12"])  # checked once Δ is known (model loaded)
    add("simulate-max-strain-no-rate", [*s, "--max-strain", "0.1"])
    add("simulate-max-strain-negative-rate", [*s, "--max-strain", "0.1", "--strain-rate", "-0.01"])
    add("simulate-stop-past-peak-no-rate", [*s, "--steps", "5", "--stop-past-peak"])
    add("simulate-mirror-and-scale", [*s, "--steps", "5", "--mirror-average", "--scale", "1"])
    add("simulate-thermostat-no-temperature", [*s, "--steps", "5", "--thermostat-ps", "0.1"])
    add("simulate-same-names", [*s, "--structure", EXAMPLE, "--steps", "1"])
    add("simulate-missing-out", [*s, "--steps", "1"], out=None)
    add("simulate-missing-structure", ["simulate", "--steps", "1"])
    add("simulate-unknown-option", [*s, "--steps", "1", "--tempurature", "300"])
    add("simulate-extra-argument", [*s, "--steps", "1", "extra"])
    add("simulate-out-unwritable", [*s, "--steps", "1"], out="/proc/sagesnet-corpus/run")
    add("simulate-out-under-a-file", [*s, "--steps", "1"], out="{FILE}/run")
    add("simulate-out-is-a-file", [*s, "--steps", "1"], out="{FILE}")
    add("simulate-out-not-empty", [*s, "--steps", "1"], out="{FULL}")

    # build: every builder with bad sizes, lengths and outputs
    builders = {"graphene": ["build", "graphene", "--nx", "2", "--ny", "2"],
                "ribbon": ["build", "ribbon", "--nx", "2", "--ny", "2"],
                "kirigami": ["build", "kirigami", "--pattern", "000000010000000", "--nx", "13", "--ny", "10"],
                "cnt": ["build", "cnt", "--n", "5", "--m", "5"],
                "molecule": ["build", "molecule", "benzene"]}
    lengths = ("nan", "inf", "-inf", "abc", "", "0", "-1.4", "100", "1.0", "2.0", "1e999")
    vacua = ("nan", "inf", "abc", "0", "-5", "1e9", "")
    for b, base in builders.items():
        if b != "molecule":
            for value in lengths:
                add(f"build-{b}--a-cc={value}", [*base, "--a-cc", value], out="{OUT}/s.extxyz")
        for option in {"graphene": ["--vacuum"], "ribbon": ["--vacuum-y", "--vacuum-z"],
                       "kirigami": ["--vacuum-y", "--vacuum-z"], "cnt": ["--vacuum"], "molecule": ["--vacuum"]}[b]:
            for value in vacua:
                add(f"build-{b}{option}={value}", [*base, option, value], out="{OUT}/s.extxyz")
        for value in ("bogus", ""):
            add(f"build-{b}--format={value}", [*base, "--format", value], out="{OUT}/s.extxyz")
        add(f"build-{b}-unknown-extension", base, out="{OUT}/s.unknown")
        add(f"build-{b}-out-unwritable", base, out="/proc/sagesnet-corpus/s.extxyz")
        add(f"build-{b}-out-under-a-file", base, out="{FILE}/s.extxyz")
        add(f"build-{b}-out-is-a-directory", base, out="{OUT}")
        add(f"build-{b}-missing-out", base, out=None)
    for b in ("graphene", "ribbon"):
        for nx, ny in (("0", "2"), ("2", "0"), ("-1", "2"), ("abc", "2"), ("1.5", "2"), ("100000", "100000"),
                       ("10000000", "1"), ("", "2")):
            add(f"build-{b}-nx={nx},ny={ny}", ["build", b, "--nx", nx, "--ny", ny], out="{OUT}/s.extxyz")
        for value in ("diagonal", "", "ARMCHAIR"):
            add(f"build-{b}--orientation={value}", [*builders[b], "--orientation", value], out="{OUT}/s.extxyz")
    add("build-ribbon-periodic-y-narrow-vacuum", [*builders["ribbon"], "--periodic-y", "--vacuum-y", "5"],
        out="{OUT}/s.extxyz")
    for pattern in ("", "0", "2" * 15, "01" * 8, "abcdefghijklmno", "0" * 14 + "x", "1" * 15, "11111" + "0" * 10,
                    "0 0 0 0 0 0 0 0"):
        add(f"build-kirigami--pattern={pattern!r}", ["build", "kirigami", "--pattern", pattern], out="{OUT}/s.extxyz")
    for nx, ny in (("6", "10"), ("13", "4"), ("0", "10"), ("-3", "10"), ("100000", "100000"), ("abc", "10")):
        add(f"build-kirigami-nx={nx},ny={ny}", ["build", "kirigami", "--pattern", "0" * 15, "--nx", nx, "--ny", ny],
            out="{OUT}/s.extxyz")
    for value in ("diagonal", ""):
        add(f"build-kirigami--cut={value}", [*builders["kirigami"], "--cut", value], out="{OUT}/s.extxyz")
    for n, m in (("0", "0"), ("-1", "0"), ("2", "5"), ("abc", "1"), ("5", "-1"), ("1.5", "1"), ("100000", "100000")):
        add(f"build-cnt-n={n},m={m}", ["build", "cnt", "--n", n, "--m", m], out="{OUT}/s.extxyz")
    for value in ("0", "-1", "1000000000", "abc"):
        add(f"build-cnt--length-cells={value}", [*builders["cnt"], "--length-cells", value], out="{OUT}/s.extxyz")
    for name in ("water", "", "alkane-0", "alkane--1", "alkane-x", "alkane-100000000000", "benzene2", "alkane-"):
        add(f"build-molecule-{name!r}", ["build", "molecule", name], out="{OUT}/s.extxyz")
    add("build-no-subcommand-option", ["build", "sheet", "--nx", "2"], out="{OUT}/s.extxyz")

    # generate md: options are checked before the structure is read or LAMMPS starts
    g = ["generate", "md", "--structure", EXAMPLE, "--protocol", "nvt", "--temperature", "300", "--steps", "10"]
    gt = ["generate", "md", "--structure", EXAMPLE, "--protocol", "tension", "--temperature", "300"]
    for value in (*NUMBER_JUNK, "-1", "-273.16"):
        add(f"generate-md--temperature={value}", [*g[:6], "--temperature", value, "--steps", "10"])
    for option, values in (("--strain-rate", (*NUMBER_JUNK, "0", "-0.01")), ("--max-strain", ("nan", "inf", "-1", "0", "abc")),
                           ("--relax-ps", ("nan", "inf", "-1", "abc"))):
        for value in values:
            add(f"generate-md-tension{option}={value}", [*gt, option, value])
    for option, values in (("--dt-fs", ("0", "-1", "nan", "inf", "abc", "")), ("--record-every", ("0", "-1", "abc", "1.5")),
                           ("--steps", ("0", "-1", "abc", "3000000000")), ("--threads", ("0", "-1", "abc")),
                           ("--seed", ("0", "-1", "2147483648", "abc")), ("--burst-frames", ("0", "-5")),
                           ("--burst-every", ("0", "-5"))):
        for value in values:
            add(f"generate-md{option}={value}", [*g, option, value])
    for value in ("nan", "inf", "abc"):
        add(f"generate-md-npt--pressure={value}", [*g[:4], "--protocol", "npt", "--temperature", "300",
                                                   "--steps", "10", "--pressure", value])
    for value in ("w", "x,q", "", "xx"):
        add(f"generate-md-npt--release={value!r}", [*g[:4], "--protocol", "npt", "--temperature", "300",
                                                    "--steps", "10", "--release", value])
    for protocol in ("langevin", "", "NVT"):
        add(f"generate-md--protocol={protocol!r}", [*g[:4], "--protocol", protocol, "--temperature", "300"])
    add("generate-md-nvt-no-steps", g[:8])
    add("generate-md-nvt-with-strain-rate", [*g, "--strain-rate", "0.01"])
    add("generate-md-nvt-with-pressure", [*g, "--pressure", "1"])
    add("generate-md-burst-frames-alone", [*g, "--burst-frames", "3"])
    add("generate-md-burst-every-alone", [*g, "--burst-every", "100"])
    add("generate-md-missing-structure", g[:2] + g[4:])
    add("generate-md-missing-file", [*g[:2], "--structure", "/nonexistent.extxyz", *g[4:]])
    add("generate-md-out-is-a-file", g, out="{FILE}")
    add("generate-md-out-not-empty", g, out="{FULL}")

    # generate ca
    c = ["generate", "ca", "--rule", "life", "--size", "8", "8", "--boards", "2", "--steps", "2"]
    for size in (["0", "8"], ["8"], ["8", "8", "8", "8"], ["a", "b"], ["-5", "5"], ["8", "1.5"], ["100000", "100000"]):
        add(f"generate-ca--size={'x'.join(size)}", ["generate", "ca", "--rule", "life", "--size", *size])
    for value in ("nan", "-0.1", "1.5", "abc", "inf"):
        add(f"generate-ca--density={value}", [*c, "--density", value])
    for option in ("--boards", "--steps"):
        for value in ("0", "-1", "abc"):
            add(f"generate-ca{option}={value}", [*c, option, value])
    for value in ("-1", "abc", "2147483648"):
        add(f"generate-ca--seed={value}", [*c, "--seed", value])
    for value in ("conway", "", "LIFE"):
        add(f"generate-ca--rule={value!r}", ["generate", "ca", "--rule", value, "--size", "8", "8"])
    add("generate-ca-life-3d-size", ["generate", "ca", "--rule", "life", "--size", "8", "8", "8"])
    add("generate-ca-huge", ["generate", "ca", "--rule", "life3d", "--size", "1000", "1000", "1000"])
    add("generate-ca-out-is-a-file", c, out="{FILE}")
    add("generate-unknown-generator", ["generate", "dft"])

    # evaluate
    e = ["evaluate", "--reference"]
    for value in ("0", "-1", "nan", "inf", "abc"):
        add(f"evaluate--dt-fs={value}", [*e, "{DUMP}", "--dt-fs", value], out=None)
    add("evaluate-missing-reference", ["evaluate"], out=None)
    add("evaluate-reference-missing", [*e, "/nonexistent/ref"], out=None)

    # train: options
    t = ["train", "--config", "{CA}", "--data", "{EMPTY}"]
    add("train-missing-config", ["train", "--data", "{EMPTY}"])
    add("train-missing-data", ["train", "--config", "{CA}"])
    add("train-resume-and-overwrite", [*t, "--resume", "--overwrite"])
    add("train-resume-nothing", [*t, "--resume"])
    add("train-strategy-bogus", [*t, "--strategy", "tpu"])
    for value in ("-1", "abc", "100000"):
        add(f"train--cpu-devices={value}", [*t, "--cpu-devices", value])
    add("train-config-is-a-directory", ["train", "--config", "{EMPTY}", "--data", "{EMPTY}"])
    add("unknown-verb", ["simulat"], out=None)
    return cases


OPTION_CASES = _option_cases()


def _fill(argv: list[str], tmp_path: Path, corpus_dir: Path) -> list[str]:
    values = {"{OUT}": str(tmp_path / "o"), "{FILE}": str(tmp_path / "file.txt"), "{FULL}": str(tmp_path / "full"),
              "{CA}": str(corpus_dir / "ca.yaml"), "{EMPTY}": str(corpus_dir / "emptydir"),
              "{DUMP}": str(corpus_dir / "junk.bin"), "{ONE}": str(corpus_dir / "one_atom.extxyz")}
    filled = []
    for word in argv:
        for key, value in values.items():
            word = word.replace(key, value)
        filled.append(word)
    return filled


@pytest.mark.parametrize("argv,out", OPTION_CASES)
def test_bad_option(tmp_path, capfd, corpus_dir, argv, out):
    (tmp_path / "file.txt").write_text("keep me\n")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("keep me\n")
    keep = {tmp_path / "file.txt": b"keep me\n", tmp_path / "full" / "keep.txt": b"keep me\n"}
    args = _fill(argv, tmp_path, corpus_dir)
    if out is not None:
        args += ["--out", _fill([out], tmp_path, corpus_dir)[0]]
    rc = main(args)
    _check(capfd, rc, tmp_path / "o", keep)


# ------------------------------------------------------------------------------------- configs
def _typo(key: str, i: int) -> str:
    """A few misspellings of ``key``: a letter dropped, doubled, two swapped, an s added."""
    variants = [key[1:], key[:-1] + key[-1] * 2, key[:1] + key[2:1:-1] + key[1:2] + key[3:] if len(key) > 3 else key + "x",
                key + "s", key.replace("_", "-") if "_" in key else key.upper()]
    return variants[i % len(variants)]


def _bad_values(typ: str) -> list:
    return {"int": ["abc", 1.5, [1], {"a": 1}, True, None, float("nan")],
            "float": ["abc", [1.0], {"a": 1}, True, None, float("nan"), float("inf"), float("-inf")],
            "str": [5, [1], {"a": 1}, True],
            "bool": ["yes please", 2, [True]],
            "list": ["abc", 5, {"a": 1}],
            "dict": ["abc", 5, [1]]}[typ]


def _config_cases() -> list:
    import dataclasses

    cases = []
    ca_base = {"name": "c", "stages": [{"kind": "predictor", "steps": 2}]}
    md_base = {"kind": "md", "name": "m", "stages": [{"kind": "predictor", "steps": 2}]}

    def add(name, content, expect=None, suffix=".yaml"):
        cases.append(pytest.param(content, expect, suffix, id=name))

    def sections(top, subs):
        """(label, path into the config, dataclass) of every section."""
        yield "top", (), top
        for key, cls in subs.items():
            yield key, (key,), cls

    for label, base, top, subs in (
            ("ca", ca_base, TrainConfig, {"data": DataConfig, "checkpoint": CheckpointConfig,
                                          "validation": ValidationConfig, "stages[0]": StageConfig}),
            ("md", md_base, md_config.MDTrainConfig, {"data": md_config.MDDataConfig,
                                                      "checkpoint": CheckpointConfig,
                                                      "validation": ValidationConfig,
                                                      "evaluation": md_config.MDEvaluationConfig,
                                                      "stages[0]": md_config.MDStageConfig})):
        def put(key_path: tuple, key: str, value, base=base):
            data = json.loads(json.dumps(base))
            if not key_path:
                data[key] = value
            elif key_path[0] == "stages[0]":
                data["stages"][0][key] = value
            else:
                data.setdefault(key_path[0], {})[key] = value
            return data

        for section, key_path, cls in sections(top, subs):
            for i, f in enumerate(dataclasses.fields(cls)):
                if f.name in ("kind",) and section == "top" and label == "md":
                    continue
                typo = _typo(f.name, i)
                if typo not in {g.name for g in dataclasses.fields(cls)}:
                    add(f"{label}-{section}-unknown-key-{typo}", put(key_path, typo, 1), f"{f.name}'?")
                if f.metadata.get("model") or dataclasses.is_dataclass(f.type) or "item" in f.metadata:
                    continue
                typ = f.type if isinstance(f.type, str) else f.type.__name__
                if typ not in ("int", "float", "str", "bool", "list", "dict"):
                    continue
                for j, value in enumerate(_bad_values(typ)):
                    add(f"{label}-{section}-{f.name}-bad-{j}", put(key_path, f.name, value), f.name)
                if "min" in f.metadata and typ in ("int", "float"):
                    low = f.metadata["min"] - (0 if f.metadata.get("exclusive_min") else 1)
                    add(f"{label}-{section}-{f.name}-below-min", put(key_path, f.name, low), f.name)
                if "max" in f.metadata:
                    add(f"{label}-{section}-{f.name}-above-max", put(key_path, f.name, f.metadata["max"] + 1), f.name)
                if "choices" in f.metadata:
                    add(f"{label}-{section}-{f.name}-bad-choice", put(key_path, f.name, "bogus"), f.name)
        # schedules that cannot run
        add(f"{label}-no-stages", {k: v for k, v in base.items() if k != "stages"}, "stages")
        add(f"{label}-empty-stages", {**base, "stages": []}, "stages")
        add(f"{label}-stages-not-a-list", {**base, "stages": {"kind": "predictor"}}, "stages")
        add(f"{label}-stage-not-a-mapping", {**base, "stages": ["predictor"]}, "stages")
        add(f"{label}-final-lr-above-lr", {**base, "stages": [{"kind": "predictor", "learning_rate": 0.001,
                                                                "final_learning_rate": 0.01}]}, "final_learning_rate")
        add(f"{label}-duplicate-stage-names", {**base, "stages": [{"kind": "predictor", "name": "a"},
                                                                   {"kind": "predictor", "name": "a"}]}, "unique")
        add(f"{label}-uncertainty-first", {**base, "stages": [{"kind": "uncertainty"}]}, "predictor")
        add(f"{label}-learning-rate-nan-yaml", "kind: md\n" * (label == "md") +
            "stages:\n  - {kind: predictor, steps: 2, learning_rate: .nan}\n", "learning_rate")
        add(f"{label}-learning-rate-inf-yaml", "kind: md\n" * (label == "md") +
            "stages:\n  - {kind: predictor, steps: 2, learning_rate: .inf}\n", "learning_rate")
        add(f"{label}-model-not-a-mapping", {**base, "model": [1, 2]}, "model")
        add(f"{label}-model-unknown-key", {**base, "model": {"hiden": 8}}, "hiden")
        add(f"{label}-section-not-a-mapping", {**base, "data": [1]}, "data")
    add("md-init-from-missing", {**md_base, "init_from": "/nonexistent/run"}, "init_from")
    add("md-pair-stress-fit-without-pair-stress", {**md_base, "stages": [{"kind": "pair_stress_fit"}]}, "pair_stress")
    add("md-oversample-on-predictor", {**md_base, "stages": [{"kind": "predictor", "oversample": 0.5}]}, "oversample")
    add("ca-channels-not-states", {**ca_base, "model": {"states": 2, "channels": 3}}, "channels")
    # syntax and encoding
    for i, text in enumerate(("stages: [", "a: b: c", "stages:\n\t- kind: predictor", "name: 'unterminated",
                              "{", "- [", "stages: [{kind: predictor,]", "? [a\n", "key: @reserved",
                              "stages: *missing_anchor", "%YAML 9.9\n---\nname: x", "name: x\n  bad_indent: 1",
                              "---\nname: a\n---\nname: b", "!!python/object/apply:os.system ['true']")):
        add(f"yaml-syntax-{i}", text, "config")
    for i, text in enumerate(('{"stages": [', "{'single': 1}", '{"a": 1,}', "[1, 2", "not json", "")):
        add(f"json-syntax-{i}", text, "config", suffix=".json")
    for i, text in enumerate(("- 1\n- 2\n", "42\n", "just a string\n", '"quoted"\n', "[]\n", "true\n")):
        add(f"top-level-not-a-mapping-{i}", text, "config")
    for seed in range(4):
        add(f"binary-{seed}", np.random.default_rng(seed).integers(0, 256, 1000, dtype=np.uint8).tobytes(), "config")
    add("utf16", "stages: [{kind: predictor}]\n".encode("utf-16"), "config")
    add("nul-bytes", b"\0" * 100, "config")
    add("empty-file", "", "stages")
    return cases


CONFIG_CASES = _config_cases()


@pytest.mark.parametrize("content,expect,suffix", CONFIG_CASES)
def test_bad_config(tmp_path, capfd, corpus_dir, content, expect, suffix):
    path = tmp_path / f"config{suffix}"
    if isinstance(content, (dict, list)):
        content = json.dumps(content)  # JSON is YAML (.yaml suffix: the YAML loader reads it)
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    rc = main(["train", "--config", str(path), "--data", str(corpus_dir / "emptydir"), "--out",
               str(tmp_path / "o" / "run"), "--no-progress"])
    line = _check(capfd, rc, tmp_path / "o")
    if expect:
        assert expect in line, line


# ------------------------------------------------------------------------------ data/model dirs
def _dir_cases() -> list:
    def metadata(value):
        return lambda d: (d / "metadata.json").write_text(value if isinstance(value, str) else json.dumps(value))

    def shards_only(d):
        (d / "data-00000-of-00001.tfrecord.gz").write_bytes(b"junk")

    makers = {"missing": None, "empty": lambda d: None, "metadata-junk": metadata("{bad"),
              "metadata-list": metadata([1, 2]), "metadata-empty": metadata(""),
              "metadata-binary": lambda d: (d / "metadata.json").write_bytes(bytes(range(256))),
              "metadata-new-schema": metadata({"schema_version": 99, "kind": "ca"}),
              "metadata-unknown-kind": metadata({"schema_version": 1, "kind": "dft"}),
              "metadata-no-kind": metadata({"schema_version": 1}),
              "shards-without-metadata": shards_only, "a-file": "file"}
    cases = []
    for name, maker in makers.items():
        cases.append(pytest.param("train-ca", name, maker, id=f"train-ca-data-{name}"))
        cases.append(pytest.param("train-md", name, maker, id=f"train-md-data-{name}"))
        cases.append(pytest.param("evaluate", name, maker, id=f"evaluate-reference-{name}"))
    return cases


DIR_CASES = _dir_cases()


@pytest.mark.parametrize("verb,name,maker", DIR_CASES)
def test_bad_data_directory(tmp_path, capfd, corpus_dir, verb, name, maker):
    data = tmp_path / "data"
    if maker == "file":
        data.write_text("a file\n")
    elif maker is not None:
        data.mkdir()
        maker(data)
    config = tmp_path / "c.yaml"
    base = {"name": "c", "stages": [{"kind": "predictor", "steps": 2}]}
    config.write_text(json.dumps({**base, "kind": "md"} if verb == "train-md" else base))
    if verb == "evaluate":
        rc = main(["evaluate", "--reference", str(data), "--out", str(tmp_path / "o" / "m.json")])
    else:
        rc = main(["train", "--config", str(config), "--data", str(data), "--out", str(tmp_path / "o" / "run"),
                   "--no-progress"])
    _check(capfd, rc, tmp_path / "o")


def _dump(n_frames: int = 2) -> str:
    frame = ("ITEM: TIMESTEP\n{t}\nITEM: NUMBER OF ATOMS\n2\nITEM: BOX BOUNDS pp pp ff\n0 10\n0 10\n0 20\n"
             "ITEM: ATOMS id type x y z vx vy vz\n1 1 1.0 1.0 10.0 0 0 0\n2 1 2.4 1.0 10.0 0 0 0\n")
    return "".join(frame.format(t=t) for t in range(n_frames))


REFERENCE_CASES = {f"truncated-{f}": _dump()[: int(len(_dump()) * f)] for f in (0.1, 0.3, 0.55, 0.7, 0.9)}
REFERENCE_CASES.update({"empty": "", "prose": "hello\nworld\n", "binary": bytes(range(256)) * 8,
                        "nan-position": _dump().replace("1.0 1.0 10.0", "nan 1.0 10.0"),
                        "unknown-type": _dump().replace("\n2 1 2.4", "\n2 7 2.4"),
                        "no-positions": _dump().replace("x y z", "a b c"),
                        "words-in-columns": _dump().replace("2.4 1.0", "two 1.0"),
                        "one-frame": _dump(1), "utf16": _dump().encode("utf-16")})


@pytest.mark.parametrize("name", sorted(REFERENCE_CASES))
def test_bad_evaluate_reference_file(tmp_path, capfd, name):
    content = REFERENCE_CASES[name]
    path = tmp_path / "ref.dump"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    rc = main(["evaluate", "--reference", str(path), "--model", MODEL, "--out", str(tmp_path / "o" / "m.json")])
    _check(capfd, rc, tmp_path / "o")


MODEL_CASES = ("missing", "empty", "a-file", "junk-pb", "no-variables", "non-integer-versions", "empty-pb",
               "truncated-variables")


@pytest.mark.parametrize("name", MODEL_CASES)
def test_bad_model_directory(tmp_path, capfd, name):
    model = tmp_path / "model"
    shipped = sorted(p for p in Path(MODEL).iterdir() if p.name.isdigit())[-1] if \
        not (Path(MODEL) / "saved_model.pb").is_file() else Path(MODEL)
    if name == "empty":
        model.mkdir()
    elif name == "a-file":
        model.write_text("not a model\n")
    elif name == "junk-pb":
        (model / "1").mkdir(parents=True)
        (model / "1" / "saved_model.pb").write_bytes(b"junk" * 100)
    elif name == "empty-pb":
        (model / "1").mkdir(parents=True)
        (model / "1" / "saved_model.pb").write_bytes(b"")
    elif name == "no-variables":
        (model / "1").mkdir(parents=True)
        shutil.copy(shipped / "saved_model.pb", model / "1" / "saved_model.pb")
    elif name == "truncated-variables":
        shutil.copytree(shipped, model / "1")
        for path in (model / "1" / "variables").glob("variables.data-*"):
            path.write_bytes(path.read_bytes()[:100])
    elif name == "non-integer-versions":
        (model / "latest").mkdir(parents=True)
        shutil.copy(shipped / "saved_model.pb", model / "latest" / "saved_model.pb")
    rc = main(["simulate", "--structure", EXAMPLE, "--steps", "1", "--model", str(model),
               "--out", str(tmp_path / "o" / "run")])
    line = _check(capfd, rc, tmp_path / "o")
    assert "model" in line.lower() or "SavedModel" in line, line


# ------------------------------------------------------------------------ the real entry point
ENTRY_CASES = [
    (["simulate", "--structure", EXAMPLE, "--time-ps", "nan"], "--time-ps"),
    (["simulate", "--structure", EXAMPLE, "--steps", "1", "--temperature", "-50"], "absolute zero"),
    (["build", "graphene", "--nx", "100000", "--ny", "100000"], "atoms"),
    (["build", "graphene", "--nx", "2", "--ny", "2", "--a-cc", "100"], "a_cc"),
    (["generate", "ca", "--rule", "life", "--size", "8", "8", "--density", "nan"], "--density"),
]


@pytest.mark.parametrize("argv,expect", ENTRY_CASES)
def test_installed_entry_point_is_one_line(tmp_path, argv, expect):
    exe = Path(sys.executable).with_name("sagesnet-tf")
    out = tmp_path / "o" / ("s.extxyz" if argv[0] == "build" else "run")
    proc = subprocess.run([str(exe), *argv, "--out", str(out)], capture_output=True, text=True, timeout=300)
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expect in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and not out.exists()


def test_corpus_holds_at_least_1000_cases():
    n = len(STRUCTURE_CASES) + len(OPTION_CASES) + len(CONFIG_CASES) + len(DIR_CASES) + len(REFERENCE_CASES) + \
        len(MODEL_CASES) + len(ENTRY_CASES)
    assert n >= 1000, n


def test_debug_adds_the_traceback_before_the_error_line(tmp_path, capfd):
    rc = main(["--debug", "simulate", "--structure", EXAMPLE, "--steps", "1", "--temperature", "-50",
               "--out", str(tmp_path / "o")])
    err = capfd.readouterr().err
    assert rc == 2 and "Traceback" in err
    assert err.strip().splitlines()[-1].startswith("Error: Invalid value for '--temperature'")


@pytest.mark.parametrize("argv", [[], ["build"], ["generate"]])
def test_a_group_without_a_verb_prints_its_help(capfd, argv):
    assert main(argv) == 0
    captured = capfd.readouterr()
    assert captured.out.startswith("Usage: sagesnet-tf") and "Commands:" in captured.out and not captured.err
