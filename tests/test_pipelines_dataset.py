"""TFRecord datasets: writer → reader round trip, metadata statistics, windows, corrupt shards."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import tensorflow as tf

from sagesnet_tf.errors import SagesnetError
from sagesnet_tf.pipelines import schema
from sagesnet_tf.pipelines.reader import (check_shards, count_windows, load_metadata, read_trajectories,
                                          window_dataset)
from sagesnet_tf.pipelines.writer import write_dataset
from sagesnet_tf.trajectory import ENV_FIELDS, Trajectory

ARRAYS = ("symbols", "ids", "positions", "velocities", "stress", "cell", "pbc", "step", "time_ps",
          "environment", "flags")


def make_trajectory(n_frames: int, n_atoms: int, seed: int, first_step: int = 0, stride: int = 10) -> Trajectory:
    """Random but physically shaped frames: a drifting cloud in a periodic box, H atoms last."""
    rng = np.random.default_rng(seed)
    step = first_step + stride * np.arange(n_frames)
    positions = rng.uniform(0, 10, (1, n_atoms, 3)) + np.cumsum(rng.normal(0, 0.05, (n_frames, n_atoms, 3)), axis=0)
    return Trajectory(
        symbols=np.array(["C"] * (n_atoms - 1) + ["H"]), ids=rng.permutation(n_atoms) + 1, positions=positions,
        velocities=rng.normal(0, 5, (n_frames, n_atoms, 3)), stress=rng.normal(0, 1e4, (n_frames, n_atoms, 6)),
        cell=np.tile(np.diag([10.0, 11.0, 20.0]), (n_frames, 1, 1)) * (1 + 0.01 * np.arange(n_frames))[:, None, None],
        pbc=[True, True, False], step=step, time_ps=step * 1e-3,
        environment=np.column_stack([np.full(n_frames, 300.0), rng.normal(0, 1, n_frames),
                                     np.full(n_frames, 0.01), 0.01 * np.arange(n_frames)]),
        flags=rng.integers(0, 3, n_atoms), dt_fs=1.0, info={"protocol": "nvt", "seed": seed})


@pytest.fixture()
def trajs() -> list[Trajectory]:
    return [make_trajectory(5, 7, seed=1), make_trajectory(8, 4, seed=2, first_step=100)]


@pytest.fixture()
def dataset(tmp_path, trajs) -> str:
    # 13 frames in shards of 3: trajectory 0 ends inside shard 1, trajectory 1 spans shards 1-4.
    return str(write_dataset(tmp_path / "ds", trajs, source={"manifest": {"protocol": "nvt"}}, frames_per_shard=3))


def test_round_trip_is_exact(dataset, trajs):
    back = read_trajectories(dataset)
    assert len(back) == len(trajs)
    for a, b in zip(trajs, back):
        for name in ARRAYS:
            x, y = getattr(a, name), getattr(b, name)
            assert x.dtype == y.dtype and np.array_equal(x, y), name
        assert a.dt_fs == b.dt_fs and a.env_fields == b.env_fields and a.info == b.info


def test_shards_and_metadata(dataset, trajs):
    files = sorted(tf.io.gfile.listdir(dataset))
    shards = [f"data-{i:05d}-of-00005.tfrecord.gz" for i in range(5)]
    assert files == sorted(shards + ["metadata.json"])  # no temporary files left behind
    meta = load_metadata(dataset)
    assert meta["schema_version"] == schema.SCHEMA_VERSION and meta["kind"] == "md"
    assert meta["elements"] == ["C", "H"] and meta["env_fields"] == list(ENV_FIELDS)
    assert meta["dt_fs"] == 1.0 and meta["record_stride_steps"] == 10
    assert meta["record_interval_ps"] == pytest.approx(0.01)
    assert (meta["n_trajectories"], meta["n_frames"], meta["n_atoms"]) == (2, 13, 7)
    assert [s["file"] for s in meta["shards"]] == shards
    assert [s["n_records"] for s in meta["shards"]] == [3, 3, 3, 3, 1]
    assert meta["shards"][1]["first"] == [0, 3] and meta["shards"][1]["last"] == [1, 0]
    assert meta["source"] == {"manifest": {"protocol": "nvt"}}
    assert meta["units"]["positions"] == "Å"


def test_statistics_match_numpy(dataset, trajs):
    stats = load_metadata(dataset)["statistics"]
    expected = {
        "velocities": np.concatenate([t.velocities.reshape(-1, 3) for t in trajs]),
        # displacements inside each trajectory only, never across the boundary between two
        "displacements": np.concatenate([np.diff(t.positions, axis=0).reshape(-1, 3) for t in trajs]),
        "stress": np.concatenate([t.stress.reshape(-1, 6) for t in trajs]),
        "environment": np.concatenate([t.environment.astype(np.float64) for t in trajs]),
    }
    for name, samples in expected.items():
        assert stats[name]["count"] == len(samples)
        np.testing.assert_allclose(stats[name]["mean"], samples.mean(axis=0), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(stats[name]["std"], samples.std(axis=0), rtol=1e-10, atol=1e-12)
    assert stats["environment"]["std"][0] == 0.0  # constant temperature


def test_windows_in_order_never_straddle(dataset, trajs):
    windows = list(window_dataset(dataset, window=3, float_dtype=tf.float64))
    assert len(windows) == count_windows([5, 8], 3) == 3 + 6
    got = [(int(w["traj_index"]), w["frame_index"].numpy().tolist()) for w in windows]
    assert got == [(0, [f, f + 1, f + 2]) for f in range(3)] + [(1, [f, f + 1, f + 2]) for f in range(6)]
    for w in windows:
        traj = trajs[int(w["traj_index"])]
        f = int(w["frame_index"][0])
        np.testing.assert_array_equal(w["positions"].numpy(), traj.positions[f:f + 3])
        np.testing.assert_array_equal(w["stress"].numpy(), traj.stress[f:f + 3])
        np.testing.assert_array_equal(w["step"].numpy(), traj.step[f:f + 3])
        np.testing.assert_array_equal(w["ids"].numpy(), traj.ids)
        np.testing.assert_array_equal(w["species"].numpy(), (traj.symbols == "H").astype(np.int32))
        assert w["atom_mask"].numpy().all() and w["positions"].shape == (3, traj.n_atoms, 3)


def test_stride_shift_batching_and_padding(dataset):
    ds = window_dataset(dataset, window=2, stride=2, shift=2, batch_size=3)
    batches = list(ds)
    # trajectory 0 (5 frames): starts 0, 2; trajectory 1 (8 frames): starts 0, 2, 4
    assert [b["positions"].shape[0] for b in batches] == [3, 2]
    assert batches[0]["positions"].dtype == tf.float32
    starts = [(int(t), fi.tolist()) for b in batches for t, fi in zip(b["traj_index"], b["frame_index"].numpy())]
    assert starts == [(0, [0, 2]), (0, [2, 4]), (1, [0, 2]), (1, [2, 4]), (1, [4, 6])]
    # batch 0 mixes trajectory 0 (7 atoms) and 1 (4 atoms): the smaller is padded and masked
    assert batches[0]["positions"].shape == (3, 2, 7, 3) and batches[1]["positions"].shape == (2, 2, 4, 3)
    mask = batches[0]["atom_mask"].numpy()
    assert mask.sum(axis=1).tolist() == [7, 7, 4] and not mask[2, 4:].any()
    assert not batches[0]["positions"].numpy()[2, :, 4:].any()


def test_shuffle_is_seeded_and_complete(dataset):
    def keys(seed):
        ds = window_dataset(dataset, window=2, shuffle=True, seed=seed, batch_size=4)
        return [(int(t), int(f[0])) for b in ds for t, f in zip(b["traj_index"], b["frame_index"])]
    a, b = keys(7), keys(7)
    assert a == b
    assert sorted(a) == [(0, f) for f in range(4)] + [(1, f) for f in range(7)]
    assert a != sorted(a)


def test_window_longer_than_every_trajectory(dataset):
    with pytest.raises(SagesnetError, match="no sequence has the 9 frames"):
        window_dataset(dataset, window=9)


def _shard(dataset: str, index: int) -> str:
    return f"{dataset}/data-{index:05d}-of-00005.tfrecord.gz"


def test_truncated_shard_raises_or_is_skipped(dataset, caplog):
    path = _shard(dataset, 2)  # frames (1,1) (1,2) (1,3)
    data = tf.io.gfile.GFile(path, "rb").read()
    with tf.io.gfile.GFile(path, "wb") as fh:
        fh.write(data[: len(data) * 2 // 3])
    with pytest.raises(SagesnetError, match="data-00002-of-00005.tfrecord.gz is corrupt"):
        window_dataset(dataset, window=2)
    with pytest.raises(SagesnetError, match="data-00002-of-00005.tfrecord.gz is corrupt"):
        read_trajectories(dataset)
    check = check_shards(dataset, skip_corrupt=True)
    assert check.skipped == ["data-00002-of-00005.tfrecord.gz"] and check.skipped_records == 3
    assert len(check.good) == 4
    with caplog.at_level(logging.WARNING):
        windows = list(window_dataset(dataset, window=2, skip_corrupt=True))
    assert "skipped 1 of 5 shards (3 of 13 records)" in caplog.text
    got = [(int(w["traj_index"]), w["frame_index"].numpy().tolist()) for w in windows]
    # trajectory 1 lost frames 1-3: windows (1,[0,1]) … (1,[3,4]) are gone, none bridges the gap
    assert got == [(0, [f, f + 1]) for f in range(4)] + [(1, [f, f + 1]) for f in range(4, 7)]


def test_flipped_bytes_are_detected(dataset):
    path = _shard(dataset, 0)
    data = bytearray(tf.io.gfile.GFile(path, "rb").read())
    for k in range(len(data) // 2, len(data) // 2 + 4):
        data[k] ^= 0xFF
    with tf.io.gfile.GFile(path, "wb") as fh:
        fh.write(bytes(data))
    with pytest.raises(SagesnetError, match="data-00000-of-00005.tfrecord.gz is corrupt"):
        check_shards(dataset)
    with pytest.raises(SagesnetError, match="data-00000-of-00005.tfrecord.gz is corrupt"):
        read_trajectories(dataset)
    assert check_shards(dataset, skip_corrupt=True).skipped == ["data-00000-of-00005.tfrecord.gz"]


def test_missing_shard_and_missing_metadata(dataset, tmp_path):
    tf.io.gfile.remove(_shard(dataset, 4))
    with pytest.raises(SagesnetError, match="data-00004-of-00005.tfrecord.gz is corrupt \\(missing\\)"):
        check_shards(dataset)
    with pytest.raises(SagesnetError, match="not a sagesnet-tf dataset"):
        load_metadata(tmp_path)


def test_existing_dataset_needs_overwrite(dataset, trajs):
    with pytest.raises(SagesnetError, match="already holds a dataset"):
        write_dataset(dataset, trajs)
    write_dataset(dataset, trajs[:1], frames_per_shard=10, overwrite=True)
    assert sorted(tf.io.gfile.listdir(dataset)) == ["data-00000-of-00001.tfrecord.gz", "metadata.json"]
    assert json.loads(tf.io.gfile.GFile(f"{dataset}/metadata.json").read())["n_frames"] == 5


def test_refuses_mixed_timesteps_and_bad_values(tmp_path, trajs):
    other = make_trajectory(3, 4, seed=3)
    other.dt_fs = 0.5
    with pytest.raises(SagesnetError, match="timestep 0.5 fs"):
        write_dataset(tmp_path / "a", [trajs[0], other])
    other = make_trajectory(3, 4, seed=3, stride=20)
    with pytest.raises(SagesnetError, match="different step intervals"):
        write_dataset(tmp_path / "b", [trajs[0], other])
    other = make_trajectory(3, 4, seed=3)
    other.positions[1, 0, 0] = np.nan
    with pytest.raises(SagesnetError, match="positions contain NaN"):
        write_dataset(tmp_path / "c", [other])
    assert not tf.io.gfile.exists(str(tmp_path / "c" / "metadata.json"))


def test_url_paths_go_through_tensorflow_filesystems(tmp_path, trajs):
    url = f"file://{tmp_path}/remote-like"
    out = write_dataset(url, trajs, frames_per_shard=4)
    assert out == url  # URLs come back as strings, local paths as Path
    assert (tmp_path / "remote-like" / "data-00003-of-00004.tfrecord.gz").exists()
    back = read_trajectories(url)
    np.testing.assert_array_equal(back[1].velocities, trajs[1].velocities)
    assert len(list(window_dataset(url, window=2))) == 4 + 7
