"""Export: TF Serving layout, signatures, metadata, loading in a TensorFlow-only process."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.export import SagesnetServing, build_metadata, export_model
from sagesnet_tf.savedmodel import METADATA_ASSET, read_metadata
from sagesnet_tf.io import read_structure
from sagesnet_tf.model import SagesnetConfig, SagesnetModel

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "examples", "graphene.extxyz")


def small_model(random: bool) -> SagesnetModel:
    model = SagesnetModel(SagesnetConfig(latent_dim=8, hidden=8, depth=1, encoder_layers=1))
    model.build()
    if random:  # non-zero output kernels so that steps change the state
        rng = np.random.default_rng(0)
        model.set_weights([rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in model.get_weights()])
    return model


def request(n_steps=3):
    atoms = read_structure(EXAMPLE)
    rng = np.random.default_rng(1)
    return {"positions": atoms.positions.astype("f4"), "velocities": rng.normal(0, 2, (len(atoms), 3)).astype("f4"),
            "species": atoms.species_index, "box_lengths": np.diag(atoms.cell).astype("f4"),
            "box_origin": np.zeros(3, "f4"), "pbc": np.asarray(atoms.pbc, bool),
            "env": np.array([300, 0, 0.05, 0], "f4"), "n_steps": np.int32(n_steps),
            "strain_rate_per_ps": np.float32(0.05), "axis": np.int32(0)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = small_model(random=True)
    base = tmp_path_factory.mktemp("exp") / "sagesnet_test"
    path = export_model(model, base)
    return model, base, path


def test_layout_versions_and_metadata(exported, tmp_path):
    model, base, path = exported
    assert path == base / "1"
    assert (path / "saved_model.pb").is_file() and (path / "variables").is_dir()
    meta = json.loads((path / "assets" / METADATA_ASSET).read_text())
    assert meta["elements"] == ["C", "H"] and meta["h"] == model.config.h
    assert meta["delta_ps"] == pytest.approx(model.config.delta_ps)
    assert meta["env_fields"] == list(model.config.env_fields)
    loaded = tf.saved_model.load(str(path))
    assert json.loads(loaded.signatures["metadata"]()["metadata"].numpy().decode()) == meta == read_metadata(path)
    assert set(loaded.signatures) == {"serving_default", "simulate_mirror_average", "encode", "step", "decode",
                                     "coarsen", "refine", "simulate_coarse", "metadata"}
    with pytest.raises(SagesnetError, match="already exists"):
        export_model(model, base, version=1)


def test_saved_model_cli_lists_signatures(exported):
    _, _, path = exported
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    cmd = [cli] if os.path.exists(cli) else [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli"]
    out = subprocess.run(cmd + ["show", "--dir", str(path), "--all"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for name in ("serving_default", "encode", "step", "decode", "coarsen", "refine", "metadata"):
        assert f"signature_def['{name}']" in out.stdout


def test_tension_strain_in_graph(exported):
    model, _, path = exported
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    req = request(n_steps=4)
    out = fn(**req)
    expected = 4 * 0.05 * model.config.delta_ps
    assert float(out["strain"]) == pytest.approx(expected, rel=1e-4)
    assert float(out["box_lengths"][0]) == pytest.approx(req["box_lengths"][0] * (1 + expected), rel=1e-5)
    assert out["positions"].shape == req["positions"].shape and out["uncertainty"].shape == (len(req["species"]),)
    assert not np.allclose(out["positions"].numpy(), req["positions"])  # the random model moves atoms


def test_one_call_of_n_steps_equals_n_calls_of_one(exported):
    """The heads run only on a call's last step; its readouts are those of n single calls."""
    _, _, path = exported
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    req = dict(request(n_steps=3), strain_rate_per_ps=np.float32(0.0))
    together = fn(**req)
    state = req
    for _ in range(3):
        single = fn(**dict(state, n_steps=np.int32(1)))
        state = dict(state, positions=single["positions"].numpy(), velocities=single["velocities"].numpy())
    for key in ("positions", "velocities", "uncertainty", "stress"):
        np.testing.assert_allclose(together[key].numpy(), single[key].numpy(), rtol=1e-4, atol=1e-5)
    idle = fn(**dict(req, n_steps=np.int32(0)))
    np.testing.assert_array_equal(idle["positions"].numpy(), req["positions"])
    assert not np.any(idle["stress"].numpy()) and not np.any(idle["uncertainty"].numpy())


def test_mirror_average_signature_is_exactly_mirror_symmetric(exported):
    """The mirror image (through the box's mid-plane along the open axis z) of a structure advances to
    the mirror image of what the structure advances to; the model's own step does not."""
    _, _, path = exported
    signatures = tf.saved_model.load(str(path)).signatures
    req = dict(request(n_steps=2), strain_rate_per_ps=np.float32(0.0))
    req["positions"][:, 2] += np.random.default_rng(3).normal(0.0, 0.2, len(req["positions"])).astype("f4")
    lz = float(req["box_lengths"][2])
    flip = np.array([1.0, 1.0, -1.0], "f4")
    mirrored = dict(req, positions=req["positions"] * flip + np.array([0, 0, lz], "f4"),
                    velocities=req["velocities"] * flip)

    def mismatch(name):
        out, out_m = signatures[name](**req), signatures[name](**mirrored)
        pos_back = (out_m["positions"].numpy() - np.array([0, 0, lz], "f4")) * flip
        return (np.abs(pos_back - out["positions"].numpy()).max(),
                np.abs(out_m["velocities"].numpy() * flip - out["velocities"].numpy()).max())

    assert max(mismatch("simulate_mirror_average")) < 1e-4
    assert min(mismatch("serving_default")) > 1e-3


PROBE = textwrap.dedent('''
    import json, sys, numpy as np, tensorflow as tf
    assert "sagesnet_tf" not in sys.modules
    path, req_file, out_file = sys.argv[1:]
    req = dict(np.load(req_file))
    m = tf.saved_model.load(path)
    s = m.signatures
    res = {}
    sim = s["serving_default"](**{k: tf.constant(v) for k, v in req.items() if not k.startswith("_")})
    res.update({"sim_" + k: v.numpy() for k, v in sim.items()})
    enc = s["encode"](**{k: tf.constant(req[k]) for k in ("positions", "velocities", "species", "box_lengths", "box_origin", "pbc")})
    res["enc_latent"] = enc["latent"].numpy()
    st = s["step"](latent=enc["latent"], env=tf.constant(req["env"][None]))
    res["step_latent"] = st["latent"].numpy()
    res["dec_stress"] = s["decode"](latent=st["latent"])["stress"].numpy()
    res["coarse"] = s["coarsen"](window=tf.constant(req["_window"]))["coarse"].numpy()
    res["refined"] = s["refine"](coarse=tf.constant(res["coarse"]))["window"].numpy()
    bad = {"rank": dict(req, positions=req["positions"][None]),
           "nan": dict(req, positions=np.where(np.arange(req["positions"].size).reshape(-1, 3) == 0, np.nan, req["positions"]).astype("f4")),
           "element": dict(req, species=np.full_like(req["species"], 7)),
           "steps": dict(req, n_steps=np.int32(-1))}
    errors = {}
    for name, r in bad.items():
        try:
            s["serving_default"](**{k: tf.constant(v) for k, v in r.items() if not k.startswith("_")})
            errors[name] = "no error"
        except tf.errors.InvalidArgumentError as e:
            errors[name] = "InvalidArgumentError"
    res["after_errors"] = s["serving_default"](**{k: tf.constant(v) for k, v in req.items() if not k.startswith("_")})["positions"].numpy()
    np.savez(out_file, **res)
    print(json.dumps(errors))
''')


@pytest.fixture(scope="module")
def exported_energy_only(tmp_path_factory):
    """A small model without atom decoder (its step is the local energy's), random weights."""
    model = SagesnetModel(SagesnetConfig(latent_dim=8, hidden=8, depth=1, encoder_layers=1, atom_decoder=False,
                                         energy_cutoff=2.0, energy_angle_cutoff=2.0, energy_dihedral_orders=2))
    model.build()
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(0, 0.2, w.shape).astype(w.dtype) for w in model.get_weights()])
    energy = model.local_energy
    energy.energy_weights.assign(rng.normal(0, 0.002, energy.n_features).astype("f4"))  # a stable step
    return model, None, export_model(model, tmp_path_factory.mktemp("exp") / "sagesnet_energy")


def test_energy_only_simulate_equals_the_steps_of_the_simulator(exported_energy_only):
    """A call of n steps (the energy's neighbour list kept between steps, no latents but on the
    last) gives the atoms of n LearnedSimulator steps by the full path (a new search each step),
    with the box stretched every step (12 steps of 0.01 ps at ~4 Å/ps: the list is searched again
    several times)."""
    from sagesnet_tf.simulator import LearnedSimulator

    model, _, path = exported_energy_only
    req = request(n_steps=12)
    out = tf.saved_model.load(str(path)).signatures["serving_default"](**req)
    sim = LearnedSimulator(model)
    pos, vel, box = (tf.constant(req[k][None]) for k in ("positions", "velocities", "box_lengths"))
    growth = req["box_lengths"] * np.float32([1, 0, 0]) * req["strain_rate_per_ps"] * model.config.delta_ps
    for _ in range(int(req["n_steps"])):
        step = sim.step(pos, vel, tf.constant(req["species"][None]), box, tf.constant(req["env"][None]),
                        next_box=box + growth)
        pos, vel, box = step["positions"], step["velocities"], step["box"]
    np.testing.assert_allclose(out["box_lengths"].numpy(), box.numpy()[0], rtol=1e-6)
    np.testing.assert_allclose(out["positions"].numpy(), pos.numpy()[0], atol=1e-5)
    np.testing.assert_allclose(out["velocities"].numpy(), vel.numpy()[0], atol=2e-4 * np.abs(vel.numpy()).max())
    assert np.abs(out["velocities"].numpy() - req["velocities"]).max() > 0.1  # the energy's forces act
    uncertainty = sim.atom_uncertainty(step["latent"], tf.constant(req["env"][None]), step["state"])[0]
    np.testing.assert_allclose(out["uncertainty"].numpy(), uncertainty.numpy(), rtol=1e-3, atol=1e-5)


def test_energy_only_coarse_level_decodes_energy_steps(exported_energy_only):
    """simulate_coarse of a model without atom decoder decodes every frame as an energy step from
    the frame before: n coarse steps of T from a window end where n·T fine steps from its last frame do."""
    _, _, path = exported_energy_only
    signatures = tf.saved_model.load(str(path)).signatures
    req = request(n_steps=2)
    window = signatures["serving_default"](**dict(req, n_steps=np.int32(1)))
    frames = {"window_positions": np.stack([req["positions"], window["positions"].numpy()]),
              "window_velocities": np.stack([req["velocities"], window["velocities"].numpy()])}
    rest = {k: v for k, v in req.items() if k not in ("positions", "velocities")}
    coarse = signatures["simulate_coarse"](**frames, **dict(rest, box_lengths=window["box_lengths"].numpy()))
    fine = signatures["serving_default"](**dict(req, positions=window["positions"].numpy(),
                                                velocities=window["velocities"].numpy(),
                                                box_lengths=window["box_lengths"].numpy(), n_steps=np.int32(4)))
    np.testing.assert_allclose(coarse["box_lengths"].numpy(), fine["box_lengths"].numpy(), rtol=1e-6)
    np.testing.assert_allclose(coarse["positions"].numpy()[-1], fine["positions"].numpy(), atol=1e-5)
    np.testing.assert_allclose(coarse["velocities"].numpy()[-1], fine["velocities"].numpy(),
                               atol=1e-4 * np.abs(fine["velocities"].numpy()).max())


def test_tensorflow_only_process_matches_in_process(exported, tmp_path):
    assert_tensorflow_only_process_matches(*exported[::2], tmp_path)


def test_tensorflow_only_process_serves_an_energy_only_model(exported_energy_only, tmp_path):
    assert_tensorflow_only_process_matches(*exported_energy_only[::2], tmp_path)


def assert_tensorflow_only_process_matches(model, path, tmp_path):
    """The signatures of the SavedModel at ``path``, loaded in a process without sagesnet_tf, give
    what ``model``'s serving module and layers give in this one, and refuse bad requests."""
    req = request(n_steps=2)
    rng = np.random.default_rng(2)
    req["_window"] = rng.normal(size=(1, 2, 4, 4, 2, 8)).astype("f4")
    np.savez(tmp_path / "req.npz", **req)
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, str(script), str(path), str(tmp_path / "req.npz"), str(tmp_path / "res.npz")],
                          capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    errors = json.loads(proc.stdout.strip().splitlines()[-1])
    assert errors == {"rank": "InvalidArgumentError", "nan": "InvalidArgumentError",
                      "element": "InvalidArgumentError", "steps": "InvalidArgumentError"}
    res = np.load(tmp_path / "res.npz")

    module = SagesnetServing(model, build_metadata(model.config))
    call = {k: tf.constant(v) for k, v in req.items() if not k.startswith("_")}
    sim = module.simulate(**call)
    for key in ("positions", "velocities", "box_lengths", "uncertainty", "stress", "strain"):
        np.testing.assert_allclose(res["sim_" + key], sim[key].numpy(), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(res["after_errors"], sim["positions"].numpy(), rtol=1e-4, atol=1e-4)
    enc = module.encode(*[call[k] for k in ("positions", "velocities", "species", "box_lengths", "box_origin", "pbc")])
    np.testing.assert_allclose(res["enc_latent"], enc["latent"].numpy(), rtol=1e-4, atol=1e-5)
    z1 = module.simulator.latent_step(enc["latent"], tf.constant(req["env"][None]))  # raw env / env_scales
    np.testing.assert_allclose(res["step_latent"], z1.numpy(), rtol=1e-4, atol=1e-5)
    assert not np.allclose(res["step_latent"], res["enc_latent"])
    np.testing.assert_allclose(res["dec_stress"], model.cell_properties(z1)["stress"].numpy(), rtol=1e-4, atol=1e-4)
    coarse = model.coarsen(tf.constant(req["_window"]))
    np.testing.assert_allclose(res["coarse"], coarse.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res["refined"], model.refine(coarse).numpy(), rtol=1e-4, atol=1e-5)


def test_export_cli_from_keras_file(tmp_path, capsys):
    from sagesnet_tf.cli.main import main

    model = small_model(random=False)
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "exp"), "--version", "3"]) == 0
    assert (tmp_path / "exp" / "3" / "saved_model.pb").is_file()
    meta = json.loads((tmp_path / "exp" / "3" / "assets" / METADATA_ASSET).read_text())
    assert meta["training_run"]["run_dir"] == str(run.resolve())
    assert meta["training_run"]["model_file"] == str((run / "model.keras").resolve())
    assert f"exported {(run / 'model.keras').resolve()}" in capsys.readouterr().out
    # the .keras file alone carries the env normalisation (its config's env_scales)
    assert meta["env_std"] == list(model.config.env_scales) != [1.0] * len(model.config.env_fields)
    assert meta["env_mean"] == [0.0] * len(model.config.env_fields)
    # the run's model.keras is exported, not whichever .keras file is newest
    small_model(random=True).save(run / "newer.keras")
    assert main(["export", "--run", str(run), "--out", str(tmp_path / "exp"), "--version", "4"]) == 0
    meta4 = json.loads((tmp_path / "exp" / "4" / "assets" / METADATA_ASSET).read_text())
    assert meta4["training_run"]["model_file"] == str((run / "model.keras").resolve())
    assert main(["export", "--run", str(tmp_path / "exp"), "--out", str(tmp_path / "x")]) == 2
    assert "has no model.keras" in capsys.readouterr().err


def test_reexport_from_savedmodel_keeps_variables_and_results(exported, tmp_path, capsys):
    """`export --from-savedmodel` rebuilds the model from the metadata, copies every variable and
    exports again: the same variables and bit-identical results."""
    from sagesnet_tf.cli.main import main

    _, _, path = exported
    assert main(["export", "--from-savedmodel", str(path), "--out", str(tmp_path / "re"), "--version", "1"]) == 0
    new = tmp_path / "re" / "1"
    assert f"exported {path}" in capsys.readouterr().out
    old_reader, new_reader = (tf.train.load_checkpoint(str(p / "variables" / "variables")) for p in (path, new))
    names = old_reader.get_variable_to_shape_map()
    assert names == new_reader.get_variable_to_shape_map()
    for name in names:
        if name != "_CHECKPOINTABLE_OBJECT_GRAPH":
            np.testing.assert_array_equal(old_reader.get_tensor(name), new_reader.get_tensor(name))
    old_meta, new_meta = read_metadata(path), read_metadata(new)
    assert new_meta["training_run"]["reexported_from"] == str(path)
    assert {k: v for k, v in new_meta.items() if k != "training_run"} == \
        {k: v for k, v in old_meta.items() if k != "training_run"}
    req = request(n_steps=3)
    out_old = tf.saved_model.load(str(path)).signatures["serving_default"](**req)
    out_new = tf.saved_model.load(str(new)).signatures["serving_default"](**req)
    for key in out_old:
        np.testing.assert_array_equal(out_old[key].numpy(), out_new[key].numpy())
    assert main(["export", "--from-savedmodel", str(tmp_path), "--out", str(tmp_path / "x")]) == 2
    assert "not an exported SAGESnet SavedModel" in capsys.readouterr().err


def test_rebuilt_model_normalises_env_as_its_savedmodel_did(exported, tmp_path):
    """A SavedModel's env_std becomes the rebuilt config's env_scales (also for a model_config
    written before configs had them); a nonzero env_mean is refused in one line."""
    import shutil

    from sagesnet_tf.export import model_from_savedmodel

    _, _, path = exported
    copy = tmp_path / "1"
    shutil.copytree(path, copy)
    meta_file = copy / "assets" / METADATA_ASSET
    meta = json.loads(meta_file.read_text())
    del meta["model_config"]["env_scales"]
    meta["env_std"] = [500.0, 1.0e4, 0.02, 0.1]
    meta_file.write_text(json.dumps(meta))
    assert model_from_savedmodel(copy)[0].config.env_scales == (500.0, 1.0e4, 0.02, 0.1)
    meta_file.write_text(json.dumps(dict(meta, env_mean=[300.0, 0.0, 0.0, 0.0])))
    with pytest.raises(SagesnetError, match="nonzero env_mean"):
        model_from_savedmodel(copy)


def _bad(req, **changes):
    return dict(req, **changes)


def _nan_at_0(a):
    a = a.copy()
    a.flat[0] = np.nan
    return a


BAD_REQUESTS = {  # name -> (change to a good request, words of the InvalidArgument message)
    "positions_rank3": (lambda r: _bad(r, positions=r["positions"][None]), "positions"),
    "positions_N_by_2": (lambda r: _bad(r, positions=r["positions"][:, :2]), "positions"),
    "velocities_other_N": (lambda r: _bad(r, velocities=r["velocities"][:-1]), "velocities and positions differ"),
    "species_other_N": (lambda r: _bad(r, species=r["species"][:-1]), "species and positions differ"),
    "species_rank2": (lambda r: _bad(r, species=r["species"][:, None]), "species"),
    "no_atoms": (lambda r: _bad(r, positions=np.zeros((0, 3), "f4"), velocities=np.zeros((0, 3), "f4"),
                                species=np.zeros(0, "i4")), "no atoms"),
    "species_unknown": (lambda r: _bad(r, species=np.full_like(r["species"], 7)), "unknown element"),
    "species_negative": (lambda r: _bad(r, species=np.full_like(r["species"], -1)), "negative element"),
    "positions_nan": (lambda r: _bad(r, positions=_nan_at_0(r["positions"])), "positions: NaN or Inf"),
    "velocities_inf": (lambda r: _bad(r, velocities=r["velocities"] * np.float32(np.inf)), "velocities: NaN or Inf"),
    "box_nan": (lambda r: _bad(r, box_lengths=_nan_at_0(r["box_lengths"])), "box_lengths: NaN or Inf"),
    "box_zero": (lambda r: _bad(r, box_lengths=np.zeros(3, "f4")), "box_lengths must be > 0"),
    "box_2_values": (lambda r: _bad(r, box_lengths=r["box_lengths"][:2]), "box_lengths"),
    "box_huge": (lambda r: _bad(r, box_lengths=np.array([1e9, 1e9, 20], "f4")), "grid cells"),
    "origin_inf": (lambda r: _bad(r, box_origin=np.array([np.inf, 0, 0], "f4")), "box_origin: NaN or Inf"),
    "pbc_TTT": (lambda r: _bad(r, pbc=np.ones(3, bool)), "pbc must match the boundary of the model"),
    "pbc_4": (lambda r: _bad(r, pbc=np.ones(4, bool)), "pbc"),
    "atoms_far_outside_open_axis": (lambda r: _bad(r, positions=r["positions"] + np.array([0, 0, 1e6], "f4")),
                                    "left the box"),
    "env_3_fields": (lambda r: _bad(r, env=r["env"][:3]), "env"),
    "env_empty": (lambda r: _bad(r, env=np.zeros(0, "f4")), "env"),
    "env_nan": (lambda r: _bad(r, env=_nan_at_0(r["env"])), "env: NaN or Inf"),
    "n_steps_negative": (lambda r: _bad(r, n_steps=np.int32(-1)), "n_steps must be >= 0"),
    "n_steps_huge": (lambda r: _bad(r, n_steps=np.int32(2 ** 31 - 1)), "n_steps must be <= 10000"),
    "n_steps_vector": (lambda r: _bad(r, n_steps=np.array([3], "i4")), "n_steps"),
    "strain_rate_huge": (lambda r: _bad(r, strain_rate_per_ps=np.float32(1e6)), "strain_rate_per_ps| must be <= 2"),
    "strain_rate_nan": (lambda r: _bad(r, strain_rate_per_ps=np.float32(np.nan)), "strain_rate_per_ps: NaN"),
    "box_collapses": (lambda r: _bad(r, strain_rate_per_ps=np.float32(-1.0), n_steps=np.int32(10_000)),
                      "shrink the box"),
    "axis_3": (lambda r: _bad(r, axis=np.int32(3)), "axis must be 0, 1 or 2"),
}


def test_bad_requests_are_invalid_argument(exported):
    """Every malformed request is an InvalidArgumentError naming what is wrong (never a hang, a
    crash or a silent answer), and the model still answers a good request afterwards."""
    _, _, path = exported
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    good = request(n_steps=1)
    for name, (change, words) in BAD_REQUESTS.items():
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(words)):
            fn(**change(good))
    assert fn(**good)["positions"].shape == good["positions"].shape


def test_bad_requests_other_signatures(exported):
    _, _, path = exported
    s = tf.saved_model.load(str(path)).signatures
    req = request()
    atoms = {k: req[k] for k in ("positions", "velocities", "species", "box_lengths", "box_origin", "pbc")}
    cases = [  # simulate_mirror_average shares serving_default's checks
        *[("simulate_mirror_average", BAD_REQUESTS[name][0](req), BAD_REQUESTS[name][1])
          for name in ("pbc_TTT", "n_steps_huge", "strain_rate_huge", "positions_nan")],
        ("encode", dict(atoms, pbc=np.ones(3, bool)), "pbc must match"),
        ("encode", dict(atoms, box_lengths=np.array([1e9, 1e9, 20], "f4")), "grid cells"),
        ("step", dict(latent=np.zeros((1, 4, 4, 2, 8), "f4"), env=np.zeros((2, 4), "f4")), "differ in batch size"),
        ("step", dict(latent=np.zeros((1, 0, 4, 2, 8), "f4"), env=np.zeros((1, 4), "f4")), "empty"),
        ("decode", dict(latent=np.zeros((1, 4, 4, 2, 5), "f4")), "latent"),
        ("decode", dict(latent=np.full((1, 4, 4, 2, 8), np.nan, "f4")), "latent: NaN"),
        ("simulate_coarse", dict(req, positions=None, velocities=None, n_steps=np.int32(2 ** 30),
                                 window_positions=np.stack([req["positions"]] * 2),
                                 window_velocities=np.stack([req["velocities"]] * 2)), "n_steps must be <= 5000"),
    ]
    for name, inputs, words in cases:
        inputs = {k: v for k, v in inputs.items() if v is not None}
        with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(words)):
            s[name](**inputs)


def test_dtypes_are_cast_or_refused_before_the_graph(exported):
    """What docs/SERVING.md states about dtypes a Python caller passes: NumPy float64 is cast to
    float32 (the same answer as float32 input); a tf.Tensor of another dtype, or a missing input,
    is a TypeError raised before the graph runs."""
    _, _, path = exported
    fn = tf.saved_model.load(str(path)).signatures["serving_default"]
    req = request(n_steps=1)
    as_f64 = fn(**dict(req, positions=req["positions"].astype("f8")))
    np.testing.assert_array_equal(as_f64["positions"].numpy(), fn(**req)["positions"].numpy())
    with pytest.raises(TypeError, match="float64"):
        fn(**dict(req, positions=tf.constant(req["positions"], tf.float64)))
    with pytest.raises(TypeError, match="species"):
        fn(**dict(req, species=tf.constant(req["species"], tf.float32)))
    with pytest.raises(TypeError, match="missing a required argument: 'env'"):
        fn(**{k: v for k, v in req.items() if k != "env"})


def test_metadata_names_the_limits(exported):
    _, _, path = exported
    meta = read_metadata(path)
    assert meta["kind"] == "md"
    assert meta["limits"] == {"max_steps_per_call": 10_000, "max_strain_rate_per_ps": 2.0, "max_grid_cells": 2 ** 24}


@pytest.mark.parametrize("version, signature", [(1, "serving_default"), (2, "serving_default"),
                                                (2, "simulate_mirror_average")])
def test_atom_virial_sums_to_the_stress(version, signature):
    """The shipped models' per-atom diagonal virial (v1: pair stress, v2: local energy) minus the
    atoms' kinetic part sums to the structure's stress[:3], on a warm quick kirigami ribbon."""
    from sagesnet_tf.atoms import MASSES
    from sagesnet_tf.kirigami_tension import QUICK
    from sagesnet_tf.layers.pair_stress import kinetic_stress
    from sagesnet_tf.savedmodel import DEFAULT_MODEL
    from sagesnet_tf.thermo import maxwell_boltzmann_velocities

    ribbon = QUICK.ribbon("010000000001000", periodic_y=True)
    masses = np.array([MASSES[s] for s in ribbon.symbols])
    velocities = maxwell_boltzmann_velocities(masses, 300.0, seed=0).astype("f4")
    positions = ribbon.positions + [0.0, 0.0, 5.0 - ribbon.positions[:, 2].mean()]  # inside the open z
    req = {"positions": positions.astype("f4"), "velocities": velocities, "species": np.zeros(len(ribbon), np.int32),
           "box_lengths": np.diag(ribbon.cell).astype("f4") * np.float32([1, 1, 0.5]), "box_origin": np.zeros(3, "f4"),
           "pbc": np.array([True, True, False]), "env": np.array([300, 0, 0.05, 0], "f4"), "n_steps": np.int32(2),
           "strain_rate_per_ps": np.float32(0.05), "axis": np.int32(0)}
    out = tf.saved_model.load(str(DEFAULT_MODEL / str(version))).signatures[signature](**req)
    kinetic = kinetic_stress(out["velocities"].numpy().astype("f8"), masses[:, None]).numpy()[:, :3].sum(0)
    stress = out["stress"].numpy()[:3]
    virial = out["atom_virial"].numpy()
    assert virial.shape == (len(ribbon), 3) and np.abs(virial).max() > 0
    np.testing.assert_allclose(virial.sum(0) - kinetic, stress, rtol=1e-4, atol=1e-4 * np.abs(stress).max())
