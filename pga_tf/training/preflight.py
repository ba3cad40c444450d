"""What a training checks before it starts, without TensorFlow: train.py runs it before
TensorFlow loads, so a busy run dir, a run dir of another run or a --data_dir without the data
is reported in a second; `loop.run` runs it again, for callers that start there.
"""

from __future__ import annotations

from pga_tf import config as config_lib
from pga_tf import data, run_lock


def check(cfg: config_lib.Config, lock: bool = True) -> None:
    """Raise, in one line, what would stop the run `cfg` describes before its first step; writes
    nothing.

    `lock`: check that no other training holds cfg.run_dir (only the chief worker locks it).
    Raises:
      config.ConfigError: --model's nets take images of another size than --dataset's; or
        cfg.run_dir's config.json is unusable, or is another run's (a setting a resume must
        share differs).
      run_lock.RunDirBusy: another process trains in cfg.run_dir.
      data.DataError: the training split is not where cfg.data_dir says (data.check).
    """
    image_shape = data.image_shape(cfg.dataset)
    expected = config_lib.MODEL_IMAGE_SIZES[cfg.model]
    if tuple(image_shape[:2]) != tuple(expected):
        raise config_lib.ConfigError(
            f"--model {cfg.model} takes {expected[0]}x{expected[1]} images; --dataset "
            f"{cfg.dataset} has {image_shape[0]}x{image_shape[1]}"
        )
    if lock:
        run_lock.check_free(cfg.run_dir)
    saved = config_lib.load(cfg.run_dir)
    if saved is not None and config_lib.conflicts(saved, cfg):
        raise config_lib.ConfigError(
            f"{cfg.run_dir} holds a different run "
            f"({'; '.join(config_lib.conflicts(saved, cfg))}); use another --run_dir, or give the "
            "flags (the flagfile) it was trained with to resume it"
        )
    data.check(cfg.dataset, cfg.train_split, cfg.data_dir or None)
