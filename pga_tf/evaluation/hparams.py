"""TensorBoard HParams: each evaluated (run, sampler) is one session of the HParams dashboard.

evaluate.py writes, beside its report, a log dir `hparams[-<sampler>]/` holding the run's
hyperparameters (method, z_dim, every coefficient, lr, batch size, the sampler, the features) as
`tensorboard.plugins.hparams.api.hparams` session info, and its final metrics (FID, KID,
precision, recall, reconstruction MSE, latent NLL) as scalars at the checkpoint's step. `tensorboard --logdir
runs/results` then lists every run and sampler in one table. TensorBoard infers the table's
columns from the sessions, so runs of methods with different coefficients sit side by side.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

# Config fields that decide how a run is executed or logged, not which model it trains.
RUN_CONTROL = frozenset(
    {
        "run_dir",
        "data_dir",
        "log_every",
        "sample_every",
        "ckpt_every",
        "keep_checkpoints",
        "steps_per_loop",
        "strategy",
        "sync_bn",
        "mixed_precision",
        "jit_compile",
        "fused",
        "deterministic",
    }
)
# Metric tags of a session (scalars in its log dir), as the dashboard's metric columns name them.
METRICS = ("FID", "KID", "precision", "recall", "reconstruction_mse", "latent_nll_nats")


def of_config(cfg, sampler: str, features: str, step: int) -> dict:
    """A run's hyperparameters: every model-defining Config field (new coefficients included),
    the sampler, the FID features and the step the checkpoint was taken at."""
    values = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg) if f.name not in RUN_CONTROL}
    values = {k: v for k, v in values.items() if isinstance(v, (bool, int, float, str))}
    return {**values, "sampler": sampler, "features": features, "step": int(step)}


def write(logdir: str, hparams: dict, metrics: dict, step: int) -> None:
    """Write one HParams session to `logdir`, replacing an earlier one there.

    Args:
      hparams: name -> bool/int/float/str.
      metrics: tag (METRICS) -> float, or None for a metric the run has not (skipped).
      step: the step the metrics are recorded at (the checkpoint's).
    """
    # One session per dir: a re-evaluation must not leave two session infos for TensorBoard to
    # choose between. The dir is ours (hparams[-<sampler>] beside the report).
    shutil.rmtree(logdir, ignore_errors=True)
    os.makedirs(logdir, exist_ok=True)
    writer = tf.summary.create_file_writer(logdir)
    with writer.as_default(step=step):
        hp.hparams(hparams)
        for tag, value in metrics.items():
            if value is not None:
                tf.summary.scalar(tag, float(value))
    writer.close()
