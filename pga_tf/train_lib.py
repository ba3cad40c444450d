"""The training loop: models, optimizer and checkpoint under a tf.distribute strategy.

`Trainer` owns what one step updates (built inside `strategy.scope()`); `Trainer.fit` decides
when to step, log, draw sample grids and save. Neither knows which dataset it is fed: they take
a tf.data.Dataset of [-1, 1] images and a fixed numpy batch for the reconstruction grids.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from typing import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from pga_tf import checkpoints, distribution, models, samplers, step as step_lib, two_stage as two_stage_lib
from pga_tf.config import Config, default_sampler
from pga_tf.images import grid, interpolation_grid


class TrainingError(Exception):
    """The run cannot go on (non-finite loss, incompatible checkpoint); the message is one line."""


class NonFiniteLoss(TrainingError):
    def __init__(self, terms: list[str], step: int):
        super().__init__(f"non-finite {', '.join(terms)} at step {step}")
        self.terms, self.step = terms, step


# The term that holds a method's log ||J_h u|| (LPGA's decoder NLL, LVPGA's vrec).
LOG_DET_TERMS = {"lpga": "nll_dec", "lvpga": "vrec"}


def log_det_hint(cfg: Config, terms: list[str]) -> str:
    """What a non-finite log-det term means and what to change, or "" (issue 11, kind 11).

    The log-det term is log ||J_h u||: it goes to -inf when h = E(D(z)) collapses, which the
    decoder's loss rewards once the latent terms are on. With a short warm-up that happens
    before the autoencoder reconstructs (LPGA, --init_steps=5, lr 0.1: step ~160 on
    Fashion-MNIST), and the finite difference h(mu + delta) - h(mu) then rounds to exactly 0
    long before forward mode's J_h u would underflow.
    """
    term = LOG_DET_TERMS.get(cfg.method)
    if term not in terms or "img_rec" in terms:  # weights already NaN: another cause
        return ""
    finite_difference = cfg.method == "lvpga" or cfg.log_det == "finite_difference"
    cause = ("its finite difference h(mu + delta) - h(mu) rounded to 0" if finite_difference
             else "J_h u reached 0")
    remedy = f"raise --init_steps (here {cfg.init_steps}) so the autoencoder learns first"
    if cfg.method == "lpga" and finite_difference:
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
            raise TrainingError(f"--strategy multi_worker: bad TF_CONFIG "
                                f"({str(e).splitlines()[0]})") from None
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
    """Models, optimizer, random state and the compiled step of one run."""

    def __init__(self, cfg: Config, image_shape: tuple[int, int, int],
                 strategy: tf.distribute.Strategy | None = None, stage1_steps: int | None = None,
                 code_images: Callable[[], tf.data.Dataset] | None = None):
        """`stage1_steps` and `code_images` (unbatched training images, for stage 2's codes) are
        the 2-Stage VAE's: its steps past stage1_steps train stage 2."""
        self.cfg = cfg
        self.image_shape = tuple(image_shape)
        self.strategy = strategy or tf.distribute.get_strategy()
        self.global_batch = cfg.batch_size
        replicas = self.strategy.num_replicas_in_sync
        if cfg.batch_size % replicas:
            raise TrainingError(f"--batch_size {cfg.batch_size} is not divisible by the "
                             f"{replicas} replicas")
        self.local_batch = cfg.batch_size // replicas
        devices = self.strategy.extended.worker_devices if replicas > 1 else ()
        if cfg.jit_compile and devices and all("CPU" in d.upper() for d in devices):
            # XLA has no collectives on CPU ("Collectives are not yet implemented for CPU devices
            # when compiling with XLA"), and it runs every logical CPU device's cluster on CPU:0,
            # which then cannot reach the other replicas' variables.
            raise TrainingError(f"--jit_compile cannot run a step of {replicas} replicas on CPUs "
                                "(XLA has no CPU collectives); drop --jit_compile or run on one "
                                "device")
        with self.strategy.scope():
            with _dtype_policy(None if cfg.precision == "float32" else cfg.precision):
                self.encoder, self.decoder = models.build_models(
                    cfg.model, cfg.z_dim, image_shape[-1], use_bn=cfg.use_bn,
                    variational=cfg.variational, bn_momentum=cfg.bn_momentum, sync_bn=cfg.sync_bn,
                    learned_scale=cfg.method == "two_stage_vae")
            self.optimizer = make_optimizer(cfg)
            # The 2-Stage VAE's second stage (its first stage's gamma_x is the decoder's).
            self.two_stage = two_stage_lib.build(cfg) if cfg.method == "two_stage_vae" else None
            # Build the slots now: a first distributed step that creates them fails.
            self.optimizer.build(self.encoder.trainable_variables + self.decoder.trainable_variables)
            self.generator = tf.random.Generator.from_seed(cfg.seed)
            parts = {"two_stage": self.two_stage} if self.two_stage else {}
            self.checkpoint = tf.train.Checkpoint(encoder=self.encoder, decoder=self.decoder,
                                                  optimizer=self.optimizer, generator=self.generator,
                                                  **parts)
        if self.two_stage is not None and (stage1_steps is None or code_images is None):
            raise ValueError("a two_stage_vae Trainer needs stage1_steps and code_images")
        self.stage1_steps = stage1_steps
        self._code_images = code_images
        self._second_stage: two_stage_lib.SecondStage | None = None
        # What the sample grids and training-time FID draw z from: the method's own sampler.
        self.sampler = samplers.build(default_sampler(cfg.method), self.sampler_source())
        self._train_n = None
        # The fused step needs every example of a pass processed independently: no batch norm.
        self.fused = cfg.fused and not cfg.use_bn and cfg.method in step_lib.FUSED_METHODS
        # Coefficients that are 0 at every step: the fused step skips their gradient paths.
        self._zero_coefficients = frozenset(
            name for name in step_lib.COEFFICIENTS if getattr(cfg, name) == 0)

    @property
    def step(self) -> int:
        """Steps taken: the optimizer's, plus the 2-Stage VAE's stage-2 steps."""
        stage2 = int(self.two_stage.step.numpy()) if self.two_stage is not None else 0
        return int(self.optimizer.iterations.numpy()) + stage2

    @property
    def models(self) -> list[keras.Model]:
        """Every net the run trains: encoder, decoder (and the 2-Stage VAE's stage-2 nets)."""
        extra = [self.two_stage.encoder, self.two_stage.decoder] if self.two_stage is not None else []
        return [self.encoder, self.decoder, *extra]

    @property
    def in_stage2(self) -> bool:
        return self.two_stage is not None and self.step >= self.stage1_steps

    def stage_end(self, step: int, total_steps: int) -> int:
        """The step at which the stage `step` is in ends (total_steps for one-stage methods)."""
        if self.two_stage is not None and step < self.stage1_steps:
            return min(self.stage1_steps, total_steps)
        return total_steps

    def start_block(self, log: Callable[[str], None] = print) -> None:
        """Called before each block of steps: the 2-Stage VAE encodes the training set into
        stage 2's codes when it first steps in stage 2 (after stage 1, or on a resume)."""
        if self.two_stage is not None and int(self.two_stage.step.numpy()) > 0:
            done1 = int(self.optimizer.iterations.numpy())
            if done1 != self.stage1_steps:
                raise TrainingError(f"this run's stage 1 ended at step {done1} and stage 2 has begun; "
                                    f"it cannot train {self.stage1_steps} stage-1 steps (keep "
                                    "--train_steps/--epochs as they were; --stage2_steps may change)")
        if not self.in_stage2 or self._second_stage is not None:
            return
        t0 = time.time()
        mu, log_var = two_stage_lib.posterior_codes(
            lambda x: self.encoder(x, training=False), self._code_images())
        try:
            self._second_stage = two_stage_lib.SecondStage(
                self.two_stage, mu, log_var, self.global_batch, self.cfg.seed, self.strategy,
                self.generator)
        except ValueError as e:
            raise TrainingError(str(e)) from None
        log(f"stage 2 of 2 from step {self.step}: {len(mu)} training images encoded into stage 1's "
            f"posterior codes ({time.time() - t0:.0f} s)")

    # ----------------------------------------------------------------------------- the step
    def losses(self, images: tf.Tensor, noise: step_lib.Noise) -> step_lib.Losses:
        if self.fused:
            coeffs = step_lib.coefficients(self.cfg, self.optimizer.iterations)
            return step_lib.fused_method_losses(self.cfg.method, self.encoder, self.decoder, images,
                                                noise, coeffs, self._zero_coefficients,
                                                log_det=self.cfg.log_det)
        loss_fn = step_lib.LOSS_FUNCTIONS[self.cfg.method]
        return loss_fn(self.cfg, self.encoder, self.decoder, images, noise, self.optimizer.iterations)

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
            return {k: self.strategy.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
                    for k, v in per_replica.items()}

        def non_finite(metrics):
            return tf.logical_not(tf.reduce_all(tf.math.is_finite(tf.stack(list(metrics.values())))))

        @tf.function
        def train_n(iterator, n):
            # Python runs once per n steps; the first step fixes the metric structure.
            sums = distributed_step(iterator)
            first_bad = tf.where(non_finite(sums), 0, -1)
            for i in tf.range(1, n):
                out = distributed_step(iterator)
                sums = {k: sums[k] + out[k] for k in sums}
                first_bad = tf.where((first_bad < 0) & non_finite(out), i, first_bad)
            means = {k: v / tf.cast(n, tf.float32) for k, v in sums.items()}
            return means, first_bad

        return train_n

    def train_steps(self, iterator, n: int) -> dict:
        """Run `n` steps from a distributed iterator; returns the metrics averaged over them.

        Raises NonFiniteLoss (after the n steps) if any step gave a NaN or Inf loss term.
        """
        if self.in_stage2:
            if self._second_stage is None:
                self.start_block()
            out, first_bad = self._second_stage.train_steps(n)
        else:
            if self._train_n is None:
                self._train_n = self._build_train_n()
            out, first_bad = self._train_n(iterator, tf.constant(n, tf.int32))
            out = {k: float(v) for k, v in out.items()}
        if int(first_bad) >= 0:
            bad = sorted(k for k, v in out.items() if not math.isfinite(v))
            raise NonFiniteLoss(bad, self.step - n + int(first_bad) + 1)
        return out

    # ----------------------------------------------------------------------------- inference
    def sampler_source(self) -> samplers.Source:
        """What the training-time sampler is built from: the latent size and the method's extra
        nets (the 2-Stage VAE's second stage); no codes, since a sampler fitted on codes would go
        stale as E trains."""
        nets = {"two_stage": self.two_stage} if self.two_stage is not None else {}
        return samplers.Source(self.cfg.z_dim, nets=nets)

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


class _InputSignature(tf.train.experimental.PythonState):
    """What the checkpointed input position depends on, saved beside it (as JSON)."""

    KEY = "input/.ATTRIBUTES/py_state"

    def __init__(self, value: dict):
        self.value = dict(value)

    def serialize(self) -> str:
        return json.dumps(self.value, sort_keys=True)

    def deserialize(self, string) -> None:
        self.value = json.loads(string)


_ITERATOR_KEY = "iterator/.ATTRIBUTES/ITERATOR_STATE"


def _restore(trainer: Trainer, latest: str, iterator, signature: dict, log: Callable[[str], None]) -> None:
    """Restore `latest` into the trainer, and into `iterator` when its input position applies.

    The position applies when the checkpoint holds one (a multi-replica run saves none) and was
    written for the same input (`signature`); otherwise the input starts afresh, said in one line.
    A separate restore root keeps TensorFlow's deferred restoration from later filling the
    iterator anyway. Raises TrainingError (one line) for a checkpoint of another model.
    """
    name = os.path.basename(latest)
    try:
        keys = checkpoints.variable_names(latest)
    except (tf.errors.OpError, ValueError) as e:
        raise TrainingError(f"checkpoint {latest} is unreadable ({type(e).__name__}); "
                            "use another --run_dir") from None
    objects = dict(encoder=trainer.encoder, decoder=trainer.decoder, optimizer=trainer.optimizer,
                   generator=trainer.generator)
    if trainer.two_stage is not None:  # the 2-Stage VAE's second stage: nets, optimizer, step
        objects["two_stage"] = trainer.two_stage
    if iterator is not None:
        if _ITERATOR_KEY not in keys:
            log(f"{name} holds no input position (saved under another strategy): the input "
                "pipeline starts afresh")
        else:
            saved = (json.loads(checkpoints.read_tensor(latest, _InputSignature.KEY))
                     if _InputSignature.KEY in keys else signature)  # older checkpoints: trust them
            changed = [f"{_describe(k)} {saved.get(k)!r} -> {signature.get(k)!r}"
                       for k in sorted(set(saved) | set(signature)) if saved.get(k) != signature.get(k)]
            if changed:
                log(f"input changed since {name} ({'; '.join(changed)}): the input pipeline starts "
                    "afresh; weights, optimizer and step resume")
            else:
                objects["iterator"] = iterator
    elif _ITERATOR_KEY in keys:
        log(f"the input position in {name} is not restored under "
            f"{trainer.strategy.num_replicas_in_sync} replicas: the input pipeline starts afresh")
    try:
        tf.train.Checkpoint(**objects).restore(
            checkpoints.readable(latest)).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise TrainingError(f"checkpoint {latest} does not fit this model "
                            f"({type(e).__name__}); use another --run_dir") from None


def _describe(key: str) -> str:
    """A signature key as the user knows it: the flag that sets it."""
    return {"examples": "training images"}.get(key, f"--{key}")


def _next_boundary(step: int, *periods: int) -> int:
    return min(p - step % p for p in periods)


class _StopRequest:
    """Turns SIGTERM/SIGINT into a flag the loop polls, so a stop lands between steps."""

    def __init__(self):
        self.signal: int | None = None
        self._previous: dict = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        self.signal = signum

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


Callback = Callable[[int, "Trainer", tf.summary.SummaryWriter], None]


def fit(trainer: Trainer, dataset: tf.data.Dataset, total_steps: int, run_dir: str,
        fixed_images: np.ndarray, log: Callable[[str], None] = print,
        callbacks: Sequence[Callback] = (), on_start: Callable[[], None] | None = None,
        input_signature: dict | None = None) -> dict:
    """Train until `total_steps`, resuming from the latest checkpoint in `run_dir`.

    Writes TensorBoard summaries (every loss term, the totals, lr, images/s, image grids) to
    run_dir/tb, PNG grids to run_dir/samples and checkpoints to run_dir/checkpoints. The
    checkpoint holds everything that decides the rest of the run: weights, optimizer slots, the
    step, the random generator and (on one device) the input pipeline's position, so a resumed
    run continues exactly. SIGTERM/SIGINT end the run between steps with a checkpoint.
    `callbacks` run after every block of steps with (step, trainer, writer); `on_start` once the
    checkpoint has restored, before anything is written (so a failed restore changes nothing).
    `input_signature` describes what the input position depends on (data dir, batch size, ...):
    a checkpoint whose signature differs resumes everything but the input position, which starts
    afresh (said in one log line), as does a checkpoint written under another strategy.
    Returns the last logged metrics, with "stopped_by_signal" set if a signal ended the run.
    """
    from pga_tf.images import save_png  # PIL, only needed when writing grids

    cfg = trainer.cfg
    iterator = iter(trainer.strategy.experimental_distribute_dataset(
        distribution.for_workers(trainer.strategy, dataset)))
    # Only a single-device tf.data iterator is checkpointable; a multi-replica run starts its
    # input afresh from wherever it resumes.
    single = trainer.strategy.num_replicas_in_sync == 1 and isinstance(iterator, tf.data.Iterator)
    if single:
        trainer.checkpoint.iterator = iterator
        trainer.checkpoint.input = _InputSignature(input_signature or {})
    # Multi-worker: every worker saves (saving is collective), the chief into run_dir, the others
    # into scratch dirs; all of them resume from the chief's checkpoints.
    out_dir = distribution.write_dir(trainer.strategy, run_dir)
    try:
        if os.path.abspath(out_dir) == os.path.abspath(run_dir):
            latest = checkpoints.recover(os.path.join(run_dir, "checkpoints"), log)
        else:  # a worker's scratch dir: only the chief tidies the checkpoints it resumes from
            checkpoints.remove_partial(os.path.join(out_dir, "checkpoints"))
            latest = checkpoints.newest(os.path.join(run_dir, "checkpoints"), log)
    except checkpoints.CheckpointError as e:
        raise TrainingError(str(e)) from None
    manager = checkpoints.Manager(trainer.checkpoint, os.path.join(out_dir, "checkpoints"),
                                  max_to_keep=cfg.keep_checkpoints)
    if latest:
        _restore(trainer, latest, iterator if single else None, input_signature or {}, log)
        log(f"resumed from {latest} at step {trainer.step}")
        # The checkpoint holds the optimizer's learning-rate variable; the flag given now wins,
        # so a resumed run can be continued with another --lr.
        trainer.optimizer.learning_rate = cfg.lr
        if trainer.two_stage is not None:
            trainer.two_stage.optimizer.learning_rate = cfg.stage2_lr
    if not distribution.same_on_all_workers(trainer.strategy, trainer.step):
        raise TrainingError(f"workers resumed at different steps (this one at {trainer.step}); "
                            "--run_dir must be on a filesystem every worker sees")
    if on_start is not None:
        on_start()
    warning = warm_up_unfinished(cfg, total_steps)
    if warning and trainer.step < total_steps:
        log(warning)
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tb"))
    _mark_start(writer, trainer.step, resumed=bool(latest))
    samples_dir = os.path.join(out_dir, "samples")
    os.makedirs(samples_dir, exist_ok=True)

    step = trainer.step
    sums: dict[str, float] = {}
    window_steps, window_time, start_step, start_time = 0, 0.0, step, time.time()
    last: dict = {}
    with _StopRequest() as stop:
        while step < total_steps:
            stage_end = trainer.stage_end(step, total_steps)
            n = min(cfg.steps_per_loop, stage_end - step,
                    _next_boundary(step, cfg.log_every, cfg.sample_every, cfg.ckpt_every))
            trainer.start_block(log)
            t0 = time.perf_counter()
            try:
                out = trainer.train_steps(iterator, n)
            except NonFiniteLoss as e:
                # The weights are already poisoned: leave the last checkpoint as it is.
                raise TrainingError(f"{e}; stopped without saving (last good checkpoint: "
                                    f"{manager.latest_checkpoint or 'none'})"
                                    f"{log_det_hint(cfg, e.terms)}") from None
            window_time += time.perf_counter() - t0
            # One decision for all workers, taken at the same step on each.
            stopping = distribution.on_any_worker(trainer.strategy, stop.signal is not None)
            step += n
            window_steps += n
            if step - n <= cfg.init_steps < step:
                _log_warm_up_end(cfg, log)
            for k, v in out.items():
                sums[k] = sums.get(k, 0.0) + v * n
            done = step >= total_steps
            # A stage's end is logged, drawn and saved on its own: the next stage reports
            # other terms, and its first checkpoint keeps the finished stage.
            stage_done = step == stage_end
            if step % cfg.log_every == 0 or stage_done or stopping:
                last = {k: v / window_steps for k, v in sums.items()}
                ips = window_steps * trainer.global_batch / max(window_time, 1e-9)
                elapsed = time.time() - start_time
                eta = elapsed / max(step - start_step, 1) * (total_steps - step)
                with writer.as_default(step=step):
                    for k, v in last.items():
                        tf.summary.scalar(f"loss/{k}", v)
                    tf.summary.scalar("train/learning_rate", cfg.lr)
                    tf.summary.scalar("train/images_per_s", ips)
                terms = " ".join(f"{k} {v:.4g}" for k, v in sorted(last.items()))
                log(f"step {step}/{total_steps} | {terms} | {ips:.0f} img/s | ETA {_hms(eta)}")
                sums, window_steps, window_time = {}, 0, 0.0
            if step % cfg.sample_every == 0 or stage_done:
                # The same seed at every grid: the prior's z stay fixed through the run.
                z = trainer.sampler.sample(tf.constant(100), tf.constant(cfg.seed, tf.int64)).numpy()
                grids = trainer.sample_grids(z, fixed_images)
                with writer.as_default(step=step):
                    for name, g in grids.items():
                        tf.summary.image(name, g[None], max_outputs=1)
                        save_png(g, os.path.join(samples_dir, f"step_{step:07d}_{name}.png"))
            for callback in callbacks:
                callback(step, trainer, writer)
            if step % cfg.ckpt_every == 0 or stage_done or stopping:
                try:
                    manager.save(step)
                except checkpoints.SaveError as e:
                    raise TrainingError(str(e)) from None
            if stopping:
                name = signal.Signals(stop.signal).name if stop.signal else "another worker's signal"
                saved = os.path.join(run_dir, "checkpoints", f"ckpt-{step}")  # the chief's
                log(f"{name}: stopped at step {step}, checkpoint saved to {saved}; "
                    "run the same command again to resume")
                last["stopped_by_signal"] = stop.signal or signal.SIGTERM
                break
    writer.flush()
    distribution.cleanup(trainer.strategy, run_dir)
    return last


def warm_up_unfinished(cfg: Config, steps: int, subject: str = "this run") -> str | None:
    """The warning for a run (or checkpoint, `subject`) of `steps` steps that ends inside its
    warm-up, or None.

    Such a run trains (and exports) a plain autoencoder under the method's name. It is warned
    about, not refused: a few steps of a method at its default --init_steps is how a pipeline is
    smoke-tested, and a later resume with more --train_steps goes past the warm-up.
    """
    terms = [name for name in step_lib.COEFFICIENTS if getattr(cfg, name)]
    if not terms or cfg.init_steps < steps:
        return None
    return (f"warning: --init_steps={cfg.init_steps} outlasts the {steps} steps of {subject}: "
            f"{', '.join(terms)} would join the losses at step {cfg.init_steps + 1}, so "
            f"{subject} is a plain autoencoder, not {cfg.method}")


def _mark_start(writer: tf.summary.SummaryWriter, step: int, resumed: bool) -> None:
    """Write a SessionLog START event at `step` + 1 into `writer`'s events.

    A run killed after its last checkpoint has already logged summaries past it, and the resumed
    run logs those steps again, so TensorBoard's curves would run back. TensorBoard's loader takes
    a run's first START event as its start and every later one as a restart: it drops the events at
    or past that step, which leaves the summaries up to the checkpoint and then the resumed run's.
    A resume writes two, so that a run dir whose first session wrote none is purged as well (a
    second purge at the same step drops nothing more).
    """
    event = tf.compat.v1.Event(wall_time=time.time(), step=step + 1,
                               session_log=tf.compat.v1.SessionLog(status=tf.compat.v1.SessionLog.START))
    # tf.summary has no call for an Event that is not a Summary; ImportEvent is the writer's op
    # for exactly that.
    for _ in range(2 if resumed else 1):
        tf.raw_ops.ImportEvent(writer=writer._resource, event=event.SerializeToString())
    writer.flush()


def _log_warm_up_end(cfg: Config, log: Callable[[str], None]) -> None:
    """Say that the jump in enc_loss and the dark-blob grids before it are expected."""
    terms = [name for name in step_lib.COEFFICIENTS if getattr(cfg, name)]
    if cfg.init_steps > 0 and terms:
        log(f"warm-up over: from step {cfg.init_steps + 1} on (--init_steps={cfg.init_steps}) "
            f"{', '.join(terms)} join the losses, so enc_loss jumps; the sample grids of the "
            "warm-up (dark blobs: only the autoencoder was trained) are expected")


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
