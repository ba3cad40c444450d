"""pga-tf: Perceptual Generative Autoencoders (Zhang et al., ICML 2020) in TensorFlow 2 / Keras.

From Python, the same code paths as train.py and evaluate.py:

    import pga_tf
    run = pga_tf.train("lpga", train_steps=3000, run_dir="runs/lpga")  # any Config field
    run = pga_tf.load("runs/lpga")                  # a trained run, its newest checkpoint
    images = run.sample(16, seed=0)                 # [16, 28, 28, 1] in [-1, 1]
    codes = run.encode_mean(images)                 # [16, z_dim]

Importing pga_tf loads no TensorFlow; these functions do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pga_tf import runs


def train(
    method: str | None = None, *, export: bool = False, log: Callable[[str], None] = print, **settings: Any
) -> runs.Run:
    """Train (or resume) a run as `python train.py --method=<method> --<setting>=<value> ...`
    does, then return it restored from its last checkpoint.

    Args:
      method: a registered method (pga_tf.methods.names()); default LPGA.
      export: also write <run_dir>/saved_model (train.py's --export).
      log: where the progress lines go.
      settings: Config fields (pga_tf.config.Config), e.g. train_steps=3000, data_dir="...",
        run_dir="runs/x"; unset ones take the method's defaults, as train.py's flags do.
    Raises:
      ValueError: an unknown method or setting, or a value the flags would refuse (one line).
      pga_tf.training.trainer.TrainingError, pga_tf.data.DataError, pga_tf.run_lock.RunDirBusy,
      pga_tf.config.ConfigError, OSError: what train.py reports as `error:` lines.
    """
    from pga_tf import config, methods

    cfg = config.resolve(method or methods.DEFAULT, **settings)
    from pga_tf.training import loop

    result = loop.run(cfg, log=log, export=export)
    if result["stopped"]:
        log(f"stopped by a signal; {cfg.run_dir} resumes where it stopped")
    return load(cfg.run_dir, log=log)


def load(run_dir: str, step: int | None = None, log: Callable[[str], None] = print) -> runs.Run:
    """The run in `run_dir`, restored from its newest intact checkpoint (or the one at `step`):
    pga_tf.runs.load. Raises pga_tf.runs.RunError (one line) for a run dir that cannot be read."""
    from pga_tf import runs

    return runs.load(run_dir, step, log)
