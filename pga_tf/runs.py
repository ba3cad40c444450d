"""A trained run read back: its config, its nets and its method's extra modules, from one checkpoint.

Training writes a run dir (config.json, checkpoints/ckpt-<step>); `load` is the one way the rest
of pga-tf reads it back (evaluation, export, the samplers, the tools):

  run = runs.load("runs/lpga")                 # the newest checkpoint that reads back whole
  run = runs.load("runs/lpga", step=3000)      # a kept earlier one
  images = run.decoder(z, training=False)      # float32 nets, inference mode
  sampler = run.sampler()                      # the method's own latent sampler (samplers.py)

Every fault a user can cause (no run dir, no or damaged config.json, no checkpoint, none kept at
`step`, a checkpoint that does not fit the config) is one `RunError` with a one-line message.

A restored run's step is read from its checkpoint's counters (`trained_steps`); the checkpoints
on disk are listed and chosen by the step in their names (`step_of`, `latest_step`, --checkpoint_step),
which train.py saves them under, so for its runs the two agree. This module imports TensorFlow
only when a run is restored, so TensorFlow-free tools (pga_tf.tools.results) can ask for a run's
latest step.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Callable, Mapping
from typing import Any

from pga_tf import checkpoints
from pga_tf import config as config_lib

CHECKPOINT_DIR = "checkpoints"  # where train.py saves a run's checkpoints, inside its run dir


class RunError(Exception):
    """A run dir that cannot be restored (no dir, no or damaged config.json, no checkpoint, none
    kept at the step asked for, a checkpoint that does not fit the config); one line."""


@dataclasses.dataclass(frozen=True, eq=False)
class Run:
    """A run restored from one checkpoint.

    Attributes:
      run_dir: the run dir it was read from.
      cfg: its config.json.
      encoder: models.Encoder, images [N, H, W, C] in [-1, 1] -> codes [N, z_dim] (a (mu, log_var)
        pair for variational methods); float32 whatever --precision the run trained with.
      decoder: models.Decoder, codes [N, z_dim] -> images [N, H, W, C] in [-1, 1]; float32.
      parts: the method's extra modules (Method.parts, e.g. {"two_stage": TwoStage}), restored
        from the same checkpoint; empty for most methods.
      checkpoint: the checkpoint's path prefix (<run_dir>/checkpoints/ckpt-<step>).
      step: the steps it had trained, over all of the method's phases (trained_steps).
    """

    run_dir: str
    cfg: config_lib.Config
    encoder: Any
    decoder: Any
    parts: Mapping[str, Any]
    checkpoint: str
    step: int

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the run's images."""
        from pga_tf import data

        return tuple(data.image_shape(self.cfg.dataset))

    def encode_mean(self, images) -> Any:
        """The codes [N, z_dim] of images [N, H, W, C] in inference mode (mu for variational
        encoders)."""
        import tensorflow as tf

        out = self.encoder(tf.convert_to_tensor(images, tf.float32), training=False)
        return out[0] if self.cfg.variational else out

    def decode(self, z) -> Any:
        """Images [N, H, W, C] in [-1, 1] (numpy) of codes z [N, z_dim], in inference mode."""
        import tensorflow as tf

        return self.decoder(tf.convert_to_tensor(z, tf.float32), training=False).numpy()

    def sample(self, num_samples: int, seed: int = 0, sampler: str | None = None, **sampler_args) -> Any:
        """`num_samples` generated images [N, H, W, C] in [-1, 1] (numpy): the run's `sampler`
        (default the method's own, e.g. the prior) draws the codes from `seed`, the decoder
        decodes them. The same seed gives the same images (the SavedModel's `sample` too).
        `sampler_args` go to `Run.sampler` (options, data_dir, log)."""
        import tensorflow as tf

        latent = self.sampler(sampler, **sampler_args)
        z = latent.sample(tf.constant(num_samples), tf.constant(seed, tf.int64))
        return self.decode(z)

    def sampler(
        self,
        kind: str | None = None,
        options=None,
        data_dir: str | None = None,
        log: Callable[[str], None] = lambda line: None,
    ):
        """The run's `kind` latent sampler (samplers.py; default the method's own), built from
        its encoder, its parts and, for a fitted sampler, the codes of its training images
        (`data_dir`, default the run's).

        Raises:
          samplers.SamplerError: the sampler cannot be built from this run (e.g. a GMM of more
            components than codes, a 2-Stage VAE whose second stage has not trained).
          data.DataError: the training images cannot be read.
        """
        from pga_tf import data, samplers

        cfg = self.cfg
        data_dir = data_dir or cfg.data_dir or None
        source = samplers.run_source(
            cfg.z_dim,
            self.encoder,
            cfg.variational,
            lambda: data.load_images(cfg.dataset, cfg.train_split, data_dir),
            nets=self.parts,
            origin=f"checkpoint {self.checkpoint}",
        )
        return samplers.build(
            kind or config_lib.default_sampler(cfg.method), source, options or samplers.Options(), log
        )


def read_config(run_dir: str) -> config_lib.Config:
    """The config.json of `run_dir`, without TensorFlow (for checks before it loads).

    Raises:
      RunError: no such dir, no config.json in it, or one that cannot be used (config.ConfigError's
        message).
    """
    if not os.path.isdir(run_dir):
        raise RunError(f"run dir {run_dir} does not exist")
    try:
        cfg = config_lib.load(run_dir)
    except config_lib.ConfigError as e:
        raise RunError(str(e)) from None
    if cfg is None:
        raise RunError(f"{run_dir} has no {config_lib.CONFIG_FILE}; is it a training run dir?")
    return cfg


def step_of(checkpoint: str) -> int:
    """The training step the checkpoint `checkpoint` (a ckpt-<step> prefix) was saved at."""
    return checkpoints.step_of(checkpoint)


def latest_step(run_dir: str) -> int | None:
    """The step of the newest complete checkpoint on disk in `run_dir`, or None without one; not
    read back (`load` is what reads it), and without TensorFlow."""
    found = checkpoints.latest(os.path.join(run_dir, CHECKPOINT_DIR))
    return None if found is None else step_of(found)


def find_checkpoint(run_dir: str, step: int | None = None, log: Callable[[str], None] = print) -> str:
    """The checkpoint of `run_dir` to restore, held for reading (a training that prunes it
    meanwhile does not pull it away): the newest that reads back whole, or the one saved at `step`.

    Raises:
      RunError: no checkpoint at all; none kept at `step`; every one damaged, or the one at
        `step` damaged; checkpoints pruned while read.
    """
    ckpt_dir = os.path.join(run_dir, CHECKPOINT_DIR)
    try:
        ckpt = checkpoints.newest(ckpt_dir, log) if step is None else checkpoints.at_step(ckpt_dir, step)
    except checkpoints.CheckpointError as e:
        raise RunError(str(e)) from None
    if ckpt is not None:
        return ckpt
    check_checkpoint(run_dir, step)
    raise RunError(f"{run_dir} has no checkpoint to read (nothing complete in {ckpt_dir})")


def check_checkpoint(run_dir: str, step: int | None = None) -> None:
    """Without TensorFlow: `run_dir` has a complete checkpoint on disk (at `step` if given).
    Whether it reads back whole is find_checkpoint's to say, which needs TensorFlow.

    Raises:
      RunError: no checkpoint at all, or none kept at `step` (naming the steps kept).
    """
    ckpt_dir = os.path.join(run_dir, CHECKPOINT_DIR)
    kept = [step_of(p) for p in checkpoints.complete(ckpt_dir)]
    if not kept:
        raise RunError(f"{run_dir} has no checkpoint yet (nothing in {ckpt_dir})")
    if step is not None and step not in kept:
        raise RunError(
            f"{run_dir} keeps no checkpoint at step {step} (it keeps steps "
            f"{', '.join(map(str, kept))}; train.py --ckpt_every and --keep_checkpoints "
            "decide which are kept)"
        )


def build(cfg: config_lib.Config) -> tuple[Any, Any, dict[str, Any]]:
    """Fresh (encoder, decoder, parts) of the shapes `cfg`'s checkpoints hold, in float32.

    Float32 whatever --precision the run trained with: its checkpointed variables are float32
    either way, and 16-bit compute pays off only for training. Built as the trainer builds them
    (the same bn_momentum, the learned decoder scale of the methods that have one), so every
    variable a checkpoint holds has its place.

    Raises:
      ValueError: a dataset or model config.validate would have refused.
    """
    from pga_tf import data, methods
    from pga_tf.nets import models

    method = methods.get(cfg.method)
    encoder, decoder = models.build_models(
        cfg.model,
        cfg.z_dim,
        data.image_shape(cfg.dataset)[-1],
        use_bn=cfg.use_bn,
        variational=cfg.variational,
        bn_momentum=cfg.bn_momentum,
        learned_scale=method.decoder_scale,
    )
    return encoder, decoder, method.build_parts(cfg)


def _describe(cfg: config_lib.Config) -> str:
    """The config fields that shape a checkpoint's variables, for a mismatch message."""
    from pga_tf import methods

    keys = ("model", "z_dim", "use_bn") + tuple(methods.get(cfg.method).resume_keys)
    return ", ".join([f"method {cfg.method}"] + [f"{k} {getattr(cfg, k)}" for k in keys])


def restore(cfg: config_lib.Config, checkpoint: str) -> tuple[Any, Any, dict[str, Any]]:
    """(encoder, decoder, parts) of `cfg` holding the weights of `checkpoint`.

    Only these are read: the optimizer, the random generator and the input position a
    checkpoint also holds are training-only.

    Raises:
      RunError: the checkpoint does not fit `cfg` (another z_dim, model, method...).
    """
    import tensorflow as tf

    try:
        encoder, decoder, parts = build(cfg)
    except ValueError as e:
        raise RunError(str(e)) from None
    try:
        tf.train.Checkpoint(encoder=encoder, decoder=decoder, **parts).restore(
            checkpoints.readable(checkpoint)
        ).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        reason = str(e).split("\n")[0].split(". ")[0]
        raise RunError(
            f"checkpoint {checkpoint} does not match the run's {config_lib.CONFIG_FILE} ({_describe(cfg)}): {reason}"
        ) from None
    return encoder, decoder, parts


def load(run_dir: str, step: int | None = None, log: Callable[[str], None] = print) -> Run:
    """The run in `run_dir` restored from its newest checkpoint that reads back whole, or from the
    one saved at `step`.

    `log` gets the lines that say what was stepped over (a damaged newer checkpoint, a checkpoint
    state file that disagrees with the disk).

    Raises:
      RunError: see the module docstring; the message is one line.
    """
    cfg = read_config(run_dir)
    checkpoint = find_checkpoint(run_dir, step, log)
    encoder, decoder, parts = restore(cfg, checkpoint)
    return Run(
        run_dir,
        cfg,
        encoder,
        decoder,
        types.MappingProxyType(dict(parts)),
        checkpoint,
        trained_steps(checkpoint, parts),
    )


_ITERATIONS = "optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"


def trained_steps(checkpoint: str, parts: Mapping[str, Any]) -> int:
    """The steps the run of `checkpoint` had trained, counted as the trainer counts them: the
    image nets' optimizer iterations plus each later phase's own counter (a restored part's
    `step`, e.g. the 2-Stage VAE's stage 2). For a checkpoint train.py wrote this is the step in
    its name; read from the counters, it is right for one saved under another numbering too. The
    name's step for a checkpoint without an optimizer."""
    if _ITERATIONS not in checkpoints.variable_names(checkpoint):
        return step_of(checkpoint)
    later = sum(int(p.step.numpy()) for p in parts.values() if hasattr(p, "step"))
    return int(checkpoints.read_tensor(checkpoint, _ITERATIONS)) + later
