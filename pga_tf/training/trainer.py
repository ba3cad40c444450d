"""What one training step updates: the nets, optimizer, random state and the method's extra parts
under a tf.distribute strategy (built inside `strategy.scope()`), and the compiled n-step loop of
each training phase.

The trainer knows no method: the method's record (pga_tf/methods/) gives the loss functions,
the extra checkpointed parts and any later training phases. A run is a list of phases, trained
one after the other: the image nets' own (`ImagePhase`), then those the method adds
(Method.later_phases: the 2-Stage VAE's second stage). A phase has
  name: str                     how log lines call it ("stage 2")
  steps: int                    its steps in the whole run
  done() -> int                 its steps taken (from checkpointed state)
  begin(log)                    before its first block in this process (may raise ValueError)
  resumed()                     after a checkpoint restored (the flags given now win)
  train_steps(iterator, n) -> (metrics averaged over the n steps, first non-finite step or -1)
and every phase's train_steps is a `parts.n_step_loop`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from pga_tf import config as config_lib
from pga_tf import methods, samplers
from pga_tf.config import Config, default_sampler
from pga_tf.images import grid, interpolation_grid
from pga_tf.methods import parts as step_lib
from pga_tf.nets import models


class TrainingError(Exception):
    """The run cannot go on (non-finite loss, incompatible checkpoint); the message is one line."""


class NonFiniteLoss(TrainingError):
    def __init__(self, terms: list[str], step: int):
        super().__init__(f"non-finite {', '.join(terms)} at step {step}")
        self.terms, self.step = terms, step


def log_det_hint(cfg: Config, terms: list[str]) -> str:
    """What a non-finite log-det term (Method.log_det_term) means and what to change, or "".

    The log-det term goes to -inf when h = E(D(z)) collapses after too short a warm-up
    (docs/methods.md, "Warm-up" and "The log-det estimator").
    """
    method = methods.get(cfg.method)
    term = method.log_det_term
    if term is None or term not in terms or "img_rec" in terms:  # weights already NaN: another cause
        return ""
    finite_difference = not method.forward_mode_log_det or cfg.log_det == "finite_difference"
    cause = "its finite difference h(mu + delta) - h(mu) rounded to 0" if finite_difference else "J_h u reached 0"
    remedy = f"raise --init_steps (here {cfg.init_steps}) so the autoencoder learns first"
    if method.forward_mode_log_det and finite_difference:
        remedy += ", or use --log_det=jvp"
    return f" ({term} = log ||J_h u||: h = E(D(z)) collapsed and {cause}; {remedy})"


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()  # the cluster comes from TF_CONFIG
        except ValueError as e:  # bad JSON, a task missing from the cluster, ...
            raise TrainingError(f"--strategy multi_worker: bad TF_CONFIG ({str(e).splitlines()[0]})") from None
    raise ValueError(f"unknown strategy {name!r}")


def make_optimizer(cfg: Config) -> keras.optimizers.Optimizer:
    if cfg.optimizer == "sgd":
        # tf.train.MomentumOptimizer in the reference; Keras' SGD momentum update is the same
        # for a constant learning rate.
        opt = keras.optimizers.SGD(learning_rate=cfg.lr, momentum=0.9)
    else:
        opt = keras.optimizers.Adam(learning_rate=cfg.lr)
    if cfg.mixed_precision:  # float16 only: bfloat16 has float32's exponent range
        opt = _CountingLossScaleOptimizer(opt)
    return opt


class _CountingLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """A LossScaleOptimizer whose `iterations` counts the steps it skips on overflow too.

    Keras' counts only applied steps, so `Trainer.step`, the warm-up switch and checkpoint
    numbers would fall behind the loop's step count after every overflow, and a resumed run
    would train extra steps.
    """

    def _stateful_handle_non_finite_grads(self):
        super()._stateful_handle_non_finite_grads()
        self.inner_optimizer.iterations.assign_add(1)


def _agree_on_overflow(grads: list) -> list:
    """Make every replica's gradients non-finite if any replica's are.

    Keras 3's LossScaleOptimizer tests each replica's *local* gradients for inf/NaN and
    all-reduces them only afterwards (inside the inner optimizer), so with several replicas one
    could skip the step while another applies the all-reduced, non-finite gradients. One scalar
    all-reduce makes them decide together.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return grads
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None])
    overflowed = ctx.all_reduce(tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    all_finite = overflowed == 0.0  # (ReduceOp has no MIN: count the replicas that overflowed)
    poison = tf.where(all_finite, 0.0, float("nan"))  # + 0.0 leaves a gradient exactly as it is
    return [None if g is None else g + tf.cast(poison, g.dtype) for g in grads]


@contextlib.contextmanager
def _dtype_policy(name: str | None):
    """Keras' global dtype policy set to `name` (None: unchanged) while layers are constructed.

    Layers fix their policy when constructed, so the policy need not stay global: restoring it
    keeps one mixed-precision Trainer from turning every later model in the process float16.
    """
    if name is None:
        yield
        return
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


class Trainer:
    """Models, optimizer, random state, the method's extra parts and the compiled step of one run."""

    def __init__(
        self,
        cfg: Config,
        image_shape: tuple[int, int, int],
        strategy: tf.distribute.Strategy | None = None,
        main_steps: int | None = None,
        train_images: Callable[[], tf.data.Dataset] | None = None,
    ):
        """`main_steps` (the image nets' steps) and `train_images` (unbatched training images) are
        needed by a method with later phases (Method.later_phases), which train after them."""
        self.cfg = cfg
        self.method = methods.get(cfg.method)
        self.image_shape = tuple(image_shape)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.global_batch = cfg.batch_size
        replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:
            raise TrainingError(f"--batch_size {cfg.batch_size} is not divisible by the {replicas} replicas")
        self.local_batch = cfg.batch_size // replicas
        devices = self.strategy.extended.worker_devices if replicas > 1 else ()
        if cfg.jit_compile and devices and all("CPU" in d.upper() for d in devices):
            # XLA has no collectives on CPU ("Collectives are not yet implemented for CPU devices
            # when compiling with XLA"), and it runs every logical CPU device's cluster on CPU:0,
            # which then cannot reach the other replicas' variables.
            raise TrainingError(
                f"--jit_compile cannot run a step of {replicas} replicas on CPUs "
                "(XLA has no CPU collectives); drop --jit_compile or run on one "
                "device"
            )
        with self.strategy.scope():
            with _dtype_policy(None if cfg.precision == "float32" else cfg.precision):
                self.encoder, self.decoder = models.build_models(
                    cfg.model,
                    cfg.z_dim,
                    image_shape[-1],
                    use_bn=cfg.use_bn,
                    variational=cfg.variational,
                    bn_momentum=cfg.bn_momentum,
                    sync_bn=cfg.sync_bn,
                    learned_scale=self.method.decoder_scale,
                )
            self.optimizer = make_optimizer(cfg)
            # The method's extra checkpointed modules (the 2-Stage VAE's second stage).
            self.parts = self.method.build_parts(cfg)
            # Build the slots now: a first distributed step that creates them fails.
            self.optimizer.build(self.encoder.trainable_variables + self.decoder.trainable_variables)
            self.generator = tf.random.Generator.from_seed(cfg.seed)
            self.checkpoint = tf.train.Checkpoint(
                encoder=self.encoder,
                decoder=self.decoder,
                optimizer=self.optimizer,
                generator=self.generator,
                **self.parts,
            )
        self.train_images = train_images
        self.phases: list = [ImagePhase(self, main_steps)]
        if self.method.later_phases:
            if main_steps is None or train_images is None:
                raise ValueError(
                    f"a {cfg.method} Trainer needs main_steps and train_images (its "
                    "later phases train after the image nets' steps)"
                )
            self.phases += list(self.method.resolve("later_phases")(self, main_steps))
        # What the sample grids and training-time FID draw z from: the method's own sampler.
        self.sampler = samplers.build(default_sampler(cfg.method), self.sampler_source())
        self._train_n = None
        # The fused step needs every example of a pass processed independently: no batch norm.
        self.fused = cfg.fused and not cfg.use_bn and self.method.fused_losses is not None
        self._loss_fn = self.method.resolve("fused_losses" if self.fused else "losses")
        # Coefficients that are 0 at every step: the fused step skips their gradient paths.
        self._zero_coefficients = frozenset(name for name in config_lib.COEFFICIENTS if getattr(cfg, name) == 0)

    @property
    def step(self) -> int:
        """Steps taken, over every phase."""
        return int(self.optimizer.iterations.numpy()) + sum(p.done() for p in self.phases[1:])

    @property
    def models(self) -> list[keras.Model]:
        """Every net the run trains: encoder, decoder and the nets of the method's parts."""
        extra = [m for part in self.parts.values() for m in getattr(part, "models", ())]
        return [self.encoder, self.decoder, *extra]

    @property
    def total_steps(self) -> int:
        """Steps of the whole run (every phase's)."""
        return sum(p.steps for p in self.phases)

    def phase_at(self, step: int, total_steps: int | None = None) -> tuple[int, int]:
        """(index of the phase that step `step` + 1 belongs to, the step at which it ends: the
        last phase ends at `total_steps`, by default the run's)."""
        end = 0
        for i, phase in enumerate(self.phases[:-1]):
            end += phase.steps
            if step < end:
                return i, end if total_steps is None else min(end, total_steps)
        return len(self.phases) - 1, self.total_steps if total_steps is None else total_steps

    def check_phases(self) -> None:
        """TrainingError if a later phase has begun but an earlier one took other steps than this
        run asks of it (a resume with another --train_steps/--epochs)."""
        for i, phase in enumerate(self.phases[:-1]):
            if any(p.done() > 0 for p in self.phases[i + 1 :]) and phase.done() != phase.steps:
                nxt = self.phases[i + 1].name
                raise TrainingError(
                    f"this run's {phase.name} ended at step {phase.done()} and {nxt} "
                    f"has begun; it cannot train {phase.steps} {phase.name} steps "
                    "(keep --train_steps/--epochs as they were)"
                )

    # ----------------------------------------------------------------------------- the step
    def losses(self, images: tf.Tensor, noise: step_lib.Noise) -> step_lib.Losses:
        if self.fused:
            return self._loss_fn(
                self.cfg, self.encoder, self.decoder, images, noise, self.optimizer.iterations, self._zero_coefficients
            )
        return self._loss_fn(self.cfg, self.encoder, self.decoder, images, noise, self.optimizer.iterations)

    def replica_step(self, images: tf.Tensor, noise: step_lib.Noise | None = None) -> dict:
        """One update on this replica's share of the batch; returns global-batch means."""
        if noise is None:
            noise = step_lib.draw_noise(self.generator, self.local_batch, self.cfg.z_dim)
        enc_vars = self.encoder.trainable_variables
        dec_vars = self.decoder.trainable_variables

        def mean(per_example):
            return tf.nn.compute_average_loss(per_example, global_batch_size=self.global_batch)

        scale = self.optimizer.scale_loss if self.cfg.mixed_precision else (lambda loss: loss)
        with tf.GradientTape(persistent=True) as tape:
            out = self.losses(images, noise)
            enc_loss, dec_loss = mean(out.encoder), mean(out.decoder)
            if out.surrogate is None:
                scaled = (scale(enc_loss), scale(dec_loss))
            else:
                scaled = scale(mean(out.surrogate))
        # Each network takes the gradient of its own loss (reference: enc_gvs + dec_gvs); the
        # fused step's surrogate has exactly those gradients, in one backward pass.
        if out.surrogate is None:
            grads = tape.gradient(scaled[0], enc_vars) + tape.gradient(scaled[1], dec_vars)
        else:
            grads = tape.gradient(scaled, enc_vars + dec_vars)
        del tape
        if self.cfg.mixed_precision:
            grads = _agree_on_overflow(grads)
        self.optimizer.apply_gradients(zip(grads, enc_vars + dec_vars))
        metrics = {name: mean(value) for name, value in out.terms.items()}
        metrics.update(enc_loss=enc_loss, dec_loss=dec_loss)
        return metrics

    def _build_train_n(self) -> Callable:
        replica_step = self.replica_step
        if self.cfg.jit_compile:
            replica_step = tf.function(replica_step, jit_compile=True)

        def distributed_step(iterator):
            per_replica = self.strategy.run(replica_step, args=(next(iterator),))
            return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None) for k, v in per_replica.items()}

        return step_lib.n_step_loop(distributed_step)

    def train_steps(self, iterator, n: int) -> dict:
        """Run `n` steps of the current phase from a distributed iterator; returns the metrics
        averaged over them.

        Raises NonFiniteLoss (after the n steps) if any step gave a NaN or Inf loss term.
        """
        phase = self.phases[self.phase_at(self.step)[0]]
        phase.begin(lambda line: None)
        out, first_bad = phase.train_steps(iterator, n)
        if first_bad >= 0:
            bad = sorted(k for k, v in out.items() if not math.isfinite(v))
            raise NonFiniteLoss(bad, self.step - n + first_bad + 1)
        return out

    def image_steps(self, iterator, n: int) -> tuple[dict, int]:
        """n steps of the image nets (ImagePhase.train_steps)."""
        if self._train_n is None:
            self._train_n = self._build_train_n()
        out, first_bad = self._train_n(tf.constant(n, tf.int32), iterator)
        return {k: float(v) for k, v in out.items()}, int(first_bad)

    # ----------------------------------------------------------------------------- inference
    def sampler_source(self) -> samplers.Source:
        """What the training-time sampler is built from: the latent size and the method's extra
        parts (the 2-Stage VAE's second stage); no codes, since a sampler fitted on codes would go
        stale as E trains."""
        return samplers.Source(self.cfg.z_dim, nets=self.parts, training=True)

    def encode_mean(self, images: tf.Tensor) -> tf.Tensor:
        out = self.encoder(images, training=False)
        return out[0] if self.cfg.variational else out

    def sample_grids(self, z: np.ndarray, images: np.ndarray) -> dict[str, np.ndarray]:
        """Samples D(z), input/reconstruction pairs and interpolations, as uint8 grids."""
        samples = self.decoder(tf.constant(z, tf.float32), training=False).numpy()
        mu = self.encode_mean(tf.constant(images, tf.float32))
        rec = self.decoder(mu, training=False).numpy()
        pairs = np.stack([images, rec], axis=1).reshape((-1,) + images.shape[1:])
        decode = lambda z: self.decoder(tf.constant(z), training=False).numpy()  # noqa: E731
        return {
            "samples": grid(samples),
            "reconstructions": grid(pairs, ncol=2 * max(1, int(math.sqrt(len(images) / 2)))),
            "interpolations": interpolation_grid(images, mu.numpy(), decode),
        }


class ImagePhase:
    """The image nets' phase: the method's own training step (`Trainer.replica_step`)."""

    def __init__(self, trainer: Trainer, steps: int | None):
        self.trainer, self.steps = trainer, steps if steps is not None else 0
        # A method with later phases calls its first one "stage 1" (they say "stage 2").
        self.name = "stage 1" if trainer.method.later_phases else "training"

    def done(self) -> int:
        return int(self.trainer.optimizer.iterations.numpy())

    def begin(self, log: Callable[[str], None]) -> None:
        pass

    def resumed(self) -> None:
        # The checkpoint holds the optimizer's learning-rate variable; the flag given now wins,
        # so a resumed run can be continued with another --lr.
        self.trainer.optimizer.learning_rate = self.trainer.cfg.lr

    def train_steps(self, iterator, n: int) -> tuple[dict, int]:
        return self.trainer.image_steps(iterator, n)
