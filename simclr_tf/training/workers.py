"""Which worker writes: under MultiWorkerMirroredStrategy every worker must take part in a
checkpoint save, but only the chief's copy is kept (the others write to scratch dirs)."""

from __future__ import annotations

import os

import tensorflow as tf


def task(strategy: tf.distribute.Strategy) -> tuple[str | None, int]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return None, 0
    return resolver.task_type, int(resolver.task_id or 0)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    task_type, task_id = task(strategy)
    if task_type is None or task_type == "chief":
        return True
    # Without a "chief" task in the cluster, worker 0 is the chief.
    has_chief = "chief" in strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and not has_chief


def worker_dir(strategy: tf.distribute.Strategy, model_dir: str) -> str:
    if is_chief(strategy):
        return model_dir
    task_type, task_id = task(strategy)
    return os.path.join(model_dir, ".workers", f"{task_type}_{task_id}")
