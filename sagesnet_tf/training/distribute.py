"""tf.distribute strategies for training: ``default``, ``mirrored`` and ``multiworker``.

- ``default``: one device (tf.distribute's default strategy; no replication).
- ``mirrored``: :class:`tf.distribute.MirroredStrategy` over the host's GPUs, or — when there is
  no GPU — over the logical CPU devices made by :func:`split_cpu` (how it is tested on CPU).
- ``multiworker``: :class:`tf.distribute.MultiWorkerMirroredStrategy` configured from the
  ``TF_CONFIG`` environment variable (``{"cluster": {"worker": [...]}, "task": {...}}``); every
  worker runs the same ``sagesnet-tf train`` command.

The trainer feeds every replica the same global batch and each replica takes its slice (see
:func:`replica_slice`), so all strategies see the same examples in the same order.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from sagesnet_tf.errors import SagesnetError

STRATEGIES: tuple[str, ...] = ("default", "mirrored", "multiworker")


def split_cpu(n: int) -> None:
    """Split the first physical CPU into ``n`` logical devices (call before any TF op runs).

    Lets MirroredStrategy run ``n`` replicas on a machine without GPUs.
    """
    if n < 1:
        raise SagesnetError(f"--cpu-devices must be >= 1, got {n}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        raise SagesnetError(
            f"cannot split the CPU into {n} devices after TensorFlow has started; "
            "split it before building any model (sagesnet-tf train --cpu-devices N)") from None


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Build the strategy called ``name`` (one of :data:`STRATEGIES`)."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if tf.config.list_logical_devices("GPU"):
            return tf.distribute.MirroredStrategy()
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=cpus)
    if name == "multiworker":
        raw = os.environ.get("TF_CONFIG")
        if not raw:
            raise SagesnetError("--strategy multiworker needs the TF_CONFIG environment variable "
                                "(cluster and task of this worker); set it on every worker")
        try:
            tf_config = json.loads(raw)
            tf_config["cluster"]["worker"]
            tf_config["task"]["index"]
        except (ValueError, KeyError, TypeError):
            raise SagesnetError("TF_CONFIG is not valid: it must be JSON with cluster.worker (list of host:port) "
                                "and task.index; fix the environment variable") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise SagesnetError(f"unknown strategy {name!r}; use one of {', '.join(STRATEGIES)}")


def worker_task() -> tuple[str, int, bool]:
    """(task type, task index, is_chief) of this process from ``TF_CONFIG`` (("worker", 0, True) without it).

    The chief is the ``chief`` task when the cluster has one, else worker 0; it alone writes the
    run directory. Other workers still save checkpoints (saving is collective) into a scratch dir.
    """
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return "worker", 0, True
    cfg = json.loads(raw)
    task = cfg.get("task", {})
    typ, idx = task.get("type", "worker"), int(task.get("index", 0))
    if "chief" in cfg.get("cluster", {}):
        return typ, idx, typ == "chief"
    return typ, idx, typ == "worker" and idx == 0


def replica_slice(batch: tf.Tensor) -> tf.Tensor:
    """This replica's share of a global batch (B, ...) → (B / replicas, ...); call inside strategy.run."""
    ctx = tf.distribute.get_replica_context()
    n = ctx.num_replicas_in_sync
    i = ctx.replica_id_in_sync_group
    per = tf.shape(batch)[0] // n
    return batch[i * per:(i + 1) * per]
