"""Roles in a multi-worker run (MultiWorkerMirroredStrategy from TF_CONFIG).

Every worker runs the same program and takes part in every collective (steps, checkpoint saves),
but only the chief writes the run dir: the others write to a scratch dir inside it that is
removed at the end. Every worker resumes from the chief's checkpoints, so the run dir must be on a
filesystem all workers see. With one worker (default/mirrored) the process is the chief.
"""

from __future__ import annotations

import hashlib
import os
import shutil

import numpy as np
import tensorflow as tf


def _task(strategy: tf.distribute.Strategy) -> tuple[str | None, int | None, dict]:
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return None, None, {}
    return resolver.task_type, resolver.task_id, resolver.cluster_spec().as_dict()


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    _, _, cluster = _task(strategy)
    return sum(len(tasks) for tasks in cluster.values()) > 1


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The chief task, or worker 0 of a cluster without one (TF's convention)."""
    task_type, task_id, cluster = _task(strategy)
    if task_type is None or task_type == "chief":
        return True
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def write_dir(strategy: tf.distribute.Strategy, run_dir: str) -> str:
    """Where this process writes checkpoints, summaries and samples: the run dir for the chief,
    <run_dir>/.worker-<type>-<id> (removed by `cleanup`) for the other workers."""
    if is_chief(strategy):
        return run_dir
    task_type, task_id, _ = _task(strategy)
    return os.path.join(run_dir, f".worker-{task_type}-{task_id}")


def cleanup(strategy: tf.distribute.Strategy, run_dir: str) -> None:
    """Remove a non-chief worker's scratch dir (nothing for the chief)."""
    if not is_chief(strategy):
        shutil.rmtree(write_dir(strategy, run_dir), ignore_errors=True)


def for_workers(strategy: tf.distribute.Strategy, dataset: tf.data.Dataset) -> tf.data.Dataset:
    """`dataset` set to be split between workers by element (DATA auto-sharding).

    File sharding (tf.data's AUTO default) fails for in-memory IDX arrays and for TFDS datasets
    with fewer files than workers; by element, every worker reads the same seeded shuffle and
    keeps its share of each global batch, which is correct for any source.
    """
    if not is_multi_worker(strategy):
        return dataset
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _sum_over_replicas(strategy: tf.distribute.Strategy, values: list[float]) -> np.ndarray:
    per_replica = strategy.run(lambda: tf.constant(values, tf.float64))
    return strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None).numpy()


def same_on_all_workers(strategy: tf.distribute.Strategy, value: int) -> bool:
    """Whether every worker passes the same integer (e.g. the step it resumed at); a collective
    that every worker must call. Without it a worker that found no checkpoint would train on
    from step 0 beside a resumed chief, its weights silently different."""
    if not is_multi_worker(strategy):
        return True
    total = _sum_over_replicas(strategy, [value, value * value])
    n = strategy.num_replicas_in_sync
    return bool(total[1] * n == total[0] ** 2)  # equality in Cauchy-Schwarz: all values equal


def on_any_worker(strategy: tf.distribute.Strategy, flag: bool) -> bool:
    """Whether `flag` is set on some worker (e.g. "a stop signal arrived"); a collective that
    every worker must call. Workers that stopped on their own would leave the others waiting
    forever in the next step's all-reduce."""
    if not is_multi_worker(strategy):
        return flag
    return bool(_sum_over_replicas(strategy, [float(flag)])[0] > 0)


def weights_digest(*models: tf.keras.Model) -> str:
    """A short SHA-256 of every weight of `models`, to check replicas/workers ended identical."""
    h = hashlib.sha256()
    for model in models:
        for w in model.weights:
            h.update(np.ascontiguousarray(w.numpy()).tobytes())
    return h.hexdigest()[:16]
