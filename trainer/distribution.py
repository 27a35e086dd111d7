"""One function from a strategy name (and a TPU address) to a `tf.distribute.Strategy`.

| name           | strategy                                   | when                                 |
|----------------|--------------------------------------------|--------------------------------------|
| `tpu`          | TPUStrategy over the resolved TPU cluster  | `--tpu=<name>`, `local`, `grpc://...` |
| `mirrored`     | MirroredStrategy over the local GPUs       | one host, several GPUs               |
| `multi_worker` | MultiWorkerMirroredStrategy (TF_CONFIG)    | several hosts with GPUs              |
| `one_device`   | OneDeviceStrategy on the first GPU or CPU  | one GPU, or a plain CPU              |
| `auto`         | `tpu` when a TPU is named, else `multi_worker` when TF_CONFIG names several workers, `mirrored` with 2+ GPUs, else `one_device` | |
"""

from __future__ import annotations

import json
import os

import tensorflow as tf
from absl import logging

STRATEGY_NAMES = ("auto", "tpu", "mirrored", "multi_worker", "one_device")


class TpuResolutionError(RuntimeError):
    """The TPU named by --tpu could not be found, reached or initialised."""


def resolve_strategy_name(name: str, *, tpu: str = "") -> str:
    """The concrete strategy name that `name` stands for on this machine.

    Args:
      name: one of STRATEGY_NAMES.
      tpu: the --tpu flag ("" when none was given).

    Returns:
      "tpu", "mirrored", "multi_worker" or "one_device".

    Raises:
      ValueError: an unknown name, or a TPU given together with a non-TPU strategy.
    """
    if name not in STRATEGY_NAMES:
        raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGY_NAMES)}")
    if tpu and name not in ("auto", "tpu"):
        raise ValueError(f"--tpu={tpu!r} needs --strategy=tpu (or auto), not --strategy={name}")
    if name != "auto":
        return name
    if tpu:
        return "tpu"
    if _tf_config_workers() > 1:
        return "multi_worker"
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return "mirrored"
    return "one_device"


def _tf_config_workers() -> int:
    try:
        cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON: {error}") from error
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def resolve_tpu(tpu: str) -> tf.distribute.cluster_resolver.TPUClusterResolver:
    """Finds the TPU, connects to it and initialises its system.

    Args:
      tpu: a Cloud TPU name in this VM's project and zone (e.g. "pod-v3-32"), "local" on a TPU
        VM, or a "grpc://host:8470" address.

    Raises:
      TpuResolutionError: the TPU is unknown, unreachable or not there; the message says which
        and what --tpu accepts.
    """
    if not tpu:
        raise TpuResolutionError("--strategy=tpu needs --tpu (a TPU name, 'local' or grpc://...)")
    help_text = (
        "--tpu takes the name of a Cloud TPU in this VM's project and zone "
        "(`gcloud compute tpus tpu-vm list`), 'local' when running on a TPU VM, "
        "or a grpc://host:8470 address"
    )
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    except Exception as error:
        # The resolver asks the GCE metadata server and the Cloud TPU API; off GCE or for an
        # unknown name these fail with URL, HTTP or value errors that do not name the TPU.
        raise TpuResolutionError(
            f"could not resolve TPU {tpu!r}: {type(error).__name__}: {error}. {help_text}"
        ) from error
    try:
        if tpu != "local":
            tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (tf.errors.OpError, ValueError, RuntimeError) as error:
        where = "on this machine" if tpu == "local" else f"at {resolver.master() or tpu!r}"
        raise TpuResolutionError(
            f"no TPU could be initialised {where} (--tpu={tpu!r}): "
            f"{type(error).__name__}: {error or 'no TPU devices found'}. {help_text}"
        ) from error
    return resolver


def get_strategy(name: str, *, tpu: str = "") -> tf.distribute.Strategy:
    """The tf.distribute strategy for a name of STRATEGY_NAMES (see the module table).

    Raises:
      ValueError: an unknown name or an inconsistent --tpu.
      TpuResolutionError: the TPU could not be resolved.
    """
    resolved = resolve_strategy_name(name, tpu=tpu)
    if resolved == "tpu":
        strategy = tf.distribute.TPUStrategy(resolve_tpu(tpu))
    elif resolved == "mirrored":
        strategy = tf.distribute.MirroredStrategy()
    elif resolved == "multi_worker":
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
    else:
        gpus = tf.config.list_logical_devices("GPU")
        strategy = tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0")
    logging.info(
        "strategy %s (asked: %s): %d replica(s)", resolved, name, strategy.num_replicas_in_sync
    )
    return strategy


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's outputs: always, except under
    MultiWorkerMirroredStrategy, where only the chief does (TF_CONFIG's `chief` task, else
    worker 0). Every worker still runs every step, evaluation and checkpoint save: they are
    collective."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return True
    resolver = strategy.cluster_resolver
    task_type, task_id = resolver.task_type, resolver.task_id
    if not task_type or task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_name(strategy: tf.distribute.Strategy) -> str:
    """This process's task in the cluster, e.g. "worker-1" ("chief" outside a cluster)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) or not (
        resolver and resolver.task_type
    ):
        return "chief"
    return f"{resolver.task_type}-{resolver.task_id}"
