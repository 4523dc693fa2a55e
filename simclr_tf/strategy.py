"""Which tf.distribute strategy a run uses: TPU, several hosts, several GPUs/CPUs, or one device.

One strategy per process: strategies created one after another in a process
reuse collective keys and break each other's all-reduces (seen with TF 2.21), so the
CLI builds exactly one, here, before any model or dataset exists.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from simclr_tf.config import StrategyConfig
from simclr_tf.errors import UserError


class StrategyError(UserError, ValueError):
    """The requested devices or batch layout cannot be used; the message names the config field."""


def _cluster_size_from_tf_config() -> int:
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
    except json.JSONDecodeError as error:
        raise StrategyError(f"TF_CONFIG is not valid JSON: {error}") from error
    return sum(len(tasks) for role, tasks in cluster.items() if role in ("chief", "worker"))


def split_cpu(num_devices: int) -> None:
    """Splits the host CPU into `num_devices` logical devices (before TF's runtime starts)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
    except RuntimeError as error:
        if len(tf.config.list_logical_devices("CPU")) != num_devices:
            raise StrategyError(
                f"StrategyConfig.cpu_replicas={num_devices}: TensorFlow was initialised before the CPU could be "
                f"split ({error})"
            ) from error


def build_strategy(config: StrategyConfig) -> tf.distribute.Strategy:
    """TPU if `use_tpu`; MultiWorkerMirrored if TF_CONFIG lists several tasks; Mirrored over
    `cpu_replicas` CPU devices or over all GPUs when there are several; else the default strategy."""
    if config.use_tpu:
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu=config.tpu_name, zone=config.tpu_zone, project=config.gcp_project
            )
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as error:
            raise StrategyError(f"StrategyConfig.use_tpu: no TPU found (StrategyConfig.tpu_name={config.tpu_name!r}): "
                                f"{error}") from error
        return tf.distribute.TPUStrategy(resolver)

    if config.cpu_replicas > 1:
        split_cpu(config.cpu_replicas)
    if _cluster_size_from_tf_config() > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if config.cpu_replicas > 1:
        return tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1:
        return tf.distribute.MirroredStrategy([d.name for d in gpus])
    return tf.distribute.get_strategy()


def per_replica_batch_size(global_batch_size: int, num_replicas: int, field: str) -> int:
    """The global batch divided evenly over the replicas, or an error naming `field`, the
    config field the batch size comes from (e.g. "TrainConfig.train_batch_size")."""
    if global_batch_size % num_replicas:
        raise StrategyError(
            f"{field}={global_batch_size} is not divisible by the {num_replicas} replicas in sync; "
            f"use a multiple of {num_replicas}"
        )
    return global_batch_size // num_replicas


def check_cpu_gradient_batch(per_replica_batch: int, strategy: tf.distribute.Strategy, field: str) -> None:
    """Refuses an odd per-replica batch for gradients through the ResNet on a oneDNN CPU.

    TensorFlow 2.21's oneDNN Conv2DBackpropFilter aborts or corrupts the process at
    random (reorder-primitive errors, double free, segfault) on the 1x1 stride-2
    shortcut convolutions when the batch is odd (seen with 1-9 at 16 and 32 px, never
    with even sizes). Failing before the first step beats a crash hours in.
    Pretraining is never affected: its batch holds two views of every image.
    """
    on_cpu = not isinstance(strategy, tf.distribute.TPUStrategy) and not tf.config.list_logical_devices("GPU")
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0"
    if per_replica_batch % 2 and on_cpu and onednn:
        raise StrategyError(
            f"{field}: the per-replica batch of {per_replica_batch} is odd, which crashes TensorFlow 2.21's "
            f"oneDNN convolution gradients on CPU; use an even per-replica batch or set TF_ENABLE_ONEDNN_OPTS=0"
        )


def describe(strategy: tf.distribute.Strategy) -> str:
    """e.g. "MultiWorkerMirroredStrategy with 2 replica(s)" (public names, not TF's internal classes)."""
    public_names = {
        "_DefaultDistributionStrategy": "default strategy (one device)",
        "CollectiveAllReduceStrategy": "MultiWorkerMirroredStrategy",
        "TPUStrategyV2": "TPUStrategy",
    }
    name = type(strategy).__name__
    return f"{public_names.get(name, name)} with {strategy.num_replicas_in_sync} replica(s)"
