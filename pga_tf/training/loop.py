"""The training loop: when to step, log, draw sample grids, save and stop (`fit`), and `run(cfg)`,
what train.py does once its flags are a Config.

`fit` takes a `trainer.Trainer` (what one step updates), a tf.data.Dataset of [-1, 1] images and
a fixed numpy batch for the reconstruction grids; it knows neither the dataset nor the method.
It trains the trainer's phases in order (pga_tf/training/trainer.py says what a phase is),
resumes from the newest intact checkpoint, and stops cleanly on SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import tensorflow as tf

from pga_tf import checkpoints
from pga_tf import config as config_lib
from pga_tf.config import Config
from pga_tf.training import distribution
from pga_tf.training import trainer as trainer_lib


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


def _restore(trainer: trainer_lib.Trainer, latest: str, iterator, signature: dict, log: Callable[[str], None]) -> None:
    """Restore `latest` into the trainer, and into `iterator` when its input position applies.

    The position applies when the checkpoint holds one (a multi-replica run saves none) and was
    written for the same input (`signature`); otherwise the input starts afresh, said in one line.
    A separate restore root keeps TensorFlow's deferred restoration from later filling the
    iterator anyway. Raises trainer_lib.TrainingError (one line) for a checkpoint of another model.
    """
    name = os.path.basename(latest)
    try:
        keys = checkpoints.variable_names(latest)
    except (tf.errors.OpError, ValueError) as e:
        raise trainer_lib.TrainingError(
            f"checkpoint {latest} is unreadable ({type(e).__name__}); use another --run_dir"
        ) from None
    objects = dict(
        encoder=trainer.encoder,
        decoder=trainer.decoder,
        optimizer=trainer.optimizer,
        generator=trainer.generator,
        **trainer.parts,
    )
    if iterator is not None:
        if _ITERATOR_KEY not in keys:
            log(f"{name} holds no input position (saved under another strategy): the input pipeline starts afresh")
        else:
            saved = (
                json.loads(checkpoints.read_tensor(latest, _InputSignature.KEY))
                if _InputSignature.KEY in keys
                else signature
            )  # older checkpoints: trust them
            changed = [
                f"{_describe(k)} {saved.get(k)!r} -> {signature.get(k)!r}"
                for k in sorted(set(saved) | set(signature))
                if saved.get(k) != signature.get(k)
            ]
            if changed:
                log(
                    f"input changed since {name} ({'; '.join(changed)}): the input pipeline starts "
                    "afresh; weights, optimizer and step resume"
                )
            else:
                objects["iterator"] = iterator
    elif _ITERATOR_KEY in keys:
        log(
            f"the input position in {name} is not restored under "
            f"{trainer.strategy.num_replicas_in_sync} replicas: the input pipeline starts afresh"
        )
    try:
        tf.train.Checkpoint(**objects).restore(
            checkpoints.readable(latest)
        ).expect_partial().assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise trainer_lib.TrainingError(
            f"checkpoint {latest} does not fit this model ({type(e).__name__}); use another --run_dir"
        ) from None


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


Callback = Callable[[int, "trainer_lib.Trainer", tf.summary.SummaryWriter], None]


def fit(
    trainer: trainer_lib.Trainer,
    dataset: tf.data.Dataset,
    total_steps: int | None,
    run_dir: str,
    fixed_images: np.ndarray,
    log: Callable[[str], None] = print,
    callbacks: Sequence[Callback] = (),
    on_start: Callable[[], None] | None = None,
    input_signature: dict | None = None,
) -> dict:
    """Train every phase until `total_steps` (None: the run's, Trainer.total_steps), resuming from
    the latest checkpoint in `run_dir`.

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
    A phase's end is logged, drawn and saved on its own: the next phase reports other terms, and
    its first checkpoint keeps the finished phase.
    Returns the last logged metrics, with "stopped_by_signal" set if a signal ended the run.
    """
    cfg = trainer.cfg
    total_steps = trainer.total_steps if total_steps is None else total_steps
    iterator, single = _input_iterator(trainer, dataset, input_signature)
    # Multi-worker: every worker saves (saving is collective), the chief into run_dir, the others
    # into scratch dirs; all of them resume from the chief's checkpoints.
    out_dir = distribution.write_dir(trainer.strategy, run_dir)
    manager, resumed = _resume(trainer, run_dir, out_dir, iterator if single else None, input_signature or {}, log)
    if on_start is not None:
        on_start()
    warning = config_lib.warm_up_unfinished(cfg, total_steps)
    if warning and trainer.step < total_steps:
        log(warning)
    if trainer.step >= total_steps:
        log(f"nothing to train: the run is at step {trainer.step} of {total_steps} (more steps: raise --train_steps)")
    writer = tf.summary.create_file_writer(os.path.join(out_dir, "tb"))
    _mark_start(writer, trainer.step, resumed=resumed)
    samples_dir = os.path.join(out_dir, "samples")
    os.makedirs(samples_dir, exist_ok=True)
    progress = _Progress(trainer, total_steps, writer, log)

    step = trainer.step
    with _StopRequest() as stop:
        while step < total_steps:
            phase, phase_end = _begin_block(trainer, step, total_steps, log)
            n = min(
                cfg.steps_per_loop,
                phase_end - step,
                _next_boundary(step, cfg.log_every, cfg.sample_every, cfg.ckpt_every),
            )
            t0 = time.perf_counter()
            out = _train_block(trainer, phase, iterator, n, manager)
            seconds = time.perf_counter() - t0  # images/s counts the steps' time only
            # One decision for all workers, taken at the same step on each.
            stopping = distribution.on_any_worker(trainer.strategy, stop.signal is not None)
            step += n
            if step - n <= cfg.init_steps < step:
                _log_warm_up_end(cfg, log)
            progress.add(out, n, seconds)
            phase_done = step == phase_end
            if step % cfg.log_every == 0 or phase_done or stopping:
                progress.report(step)
            if step % cfg.sample_every == 0 or phase_done:
                _draw_grids(trainer, fixed_images, writer, samples_dir, step)
            for callback in callbacks:
                callback(step, trainer, writer)
            if step % cfg.ckpt_every == 0 or phase_done or stopping:
                _save(manager, step)
            if stopping:
                _log_stop(stop.signal, run_dir, step, log)
                progress.last["stopped_by_signal"] = stop.signal or signal.SIGTERM
                break
    writer.flush()
    distribution.cleanup(trainer.strategy, run_dir)
    return progress.last


def _input_iterator(trainer: trainer_lib.Trainer, dataset: tf.data.Dataset, input_signature: dict | None):
    """The distributed input iterator, and whether it is checkpointed (then it is in
    trainer.checkpoint, beside its signature)."""
    iterator = iter(
        trainer.strategy.experimental_distribute_dataset(distribution.for_workers(trainer.strategy, dataset))
    )
    # Only a single-device tf.data iterator is checkpointable; a multi-replica run starts its
    # input afresh from wherever it resumes.
    single = trainer.strategy.num_replicas_in_sync == 1 and isinstance(iterator, tf.data.Iterator)
    if single:
        trainer.checkpoint.iterator = iterator
        trainer.checkpoint.input = _InputSignature(input_signature or {})
    return iterator, single


def _resume(
    trainer: trainer_lib.Trainer, run_dir: str, out_dir: str, iterator, signature: dict, log: Callable[[str], None]
) -> tuple[checkpoints.Manager, bool]:
    """Restore the newest whole checkpoint of run_dir (if any) into the trainer; the checkpoint
    manager writing into out_dir, and whether the run resumed."""
    try:
        if os.path.abspath(out_dir) == os.path.abspath(run_dir):
            latest = checkpoints.recover(os.path.join(run_dir, "checkpoints"), log)
        else:  # a worker's scratch dir: only the chief tidies the checkpoints it resumes from
            checkpoints.remove_partial(os.path.join(out_dir, "checkpoints"))
            latest = checkpoints.newest(os.path.join(run_dir, "checkpoints"), log)
    except checkpoints.CheckpointError as e:
        raise trainer_lib.TrainingError(str(e)) from None
    manager = checkpoints.Manager(
        trainer.checkpoint, os.path.join(out_dir, "checkpoints"), max_to_keep=trainer.cfg.keep_checkpoints
    )
    if latest:
        _restore(trainer, latest, iterator, signature, log)
        log(f"resumed from {latest} at step {trainer.step}")
        for phase in trainer.phases:
            phase.resumed()
    if not distribution.same_on_all_workers(trainer.strategy, trainer.step):
        raise trainer_lib.TrainingError(
            f"workers resumed at different steps (this one at {trainer.step}); "
            "--run_dir must be on a filesystem every worker sees"
        )
    trainer.check_phases()
    return manager, bool(latest)


def _begin_block(trainer: trainer_lib.Trainer, step: int, total_steps: int, log: Callable[[str], None]):
    """The phase the next block of steps belongs to (begun) and the step at which it ends."""
    index, end = trainer.phase_at(step, total_steps)
    phase = trainer.phases[index]
    try:
        phase.begin(log)
    except ValueError as e:
        raise trainer_lib.TrainingError(str(e)) from None
    return phase, end


def _train_block(trainer: trainer_lib.Trainer, phase, iterator, n: int, manager: checkpoints.Manager) -> dict:
    """n steps of `phase`; trainer_lib.TrainingError (the last good checkpoint untouched) if one was not finite."""
    out, first_bad = phase.train_steps(iterator, n)
    if first_bad < 0:
        return out
    # The weights are already poisoned: leave the last checkpoint as it is.
    bad = sorted(k for k, v in out.items() if not math.isfinite(v))
    e = trainer_lib.NonFiniteLoss(bad, trainer.step - n + first_bad + 1)
    raise trainer_lib.TrainingError(
        f"{e}; stopped without saving (last good checkpoint: "
        f"{manager.latest_checkpoint or 'none'}){trainer_lib.log_det_hint(trainer.cfg, e.terms)}"
    )


class _Progress:
    """The metrics of the steps since the last progress line, and that line (with TensorBoard's
    scalars) when asked."""

    def __init__(self, trainer: trainer_lib.Trainer, total_steps: int, writer, log: Callable[[str], None]):
        self.trainer, self.total_steps, self.writer, self.log = trainer, total_steps, writer, log
        self.sums: dict[str, float] = {}
        self.steps, self.seconds = 0, 0.0
        self.start_step, self.start_time = trainer.step, time.time()
        self.last: dict = {}

    def add(self, out: dict, n: int, seconds: float) -> None:
        self.seconds += seconds
        self.steps += n
        for k, v in out.items():
            self.sums[k] = self.sums.get(k, 0.0) + v * n

    def report(self, step: int) -> None:
        self.last = {k: v / self.steps for k, v in self.sums.items()}
        ips = self.steps * self.trainer.global_batch / max(self.seconds, 1e-9)
        elapsed = time.time() - self.start_time
        eta = elapsed / max(step - self.start_step, 1) * (self.total_steps - step)
        with self.writer.as_default(step=step):
            for k, v in self.last.items():
                tf.summary.scalar(f"loss/{k}", v)
            tf.summary.scalar("train/learning_rate", self.trainer.cfg.lr)
            tf.summary.scalar("train/images_per_s", ips)
        terms = " ".join(f"{k} {v:.4g}" for k, v in sorted(self.last.items()))
        # Whole images per second, but three figures below 100: a big net on a CPU trains < 1 img/s.
        rate = f"{ips:.0f}" if ips >= 100 else f"{ips:.3g}"
        self.log(f"step {step}/{self.total_steps} | {terms} | {rate} img/s | ETA {_hms(eta)}")
        self.sums, self.steps, self.seconds = {}, 0, 0.0


def _draw_grids(trainer: trainer_lib.Trainer, fixed_images: np.ndarray, writer, samples_dir: str, step: int) -> None:
    """The sample, reconstruction and interpolation grids, into TensorBoard and PNG files."""
    from pga_tf.images import save_png  # PIL, only needed when writing grids

    # The same seed at every grid: the prior's z stay fixed through the run.
    z = trainer.sampler.sample(tf.constant(100), tf.constant(trainer.cfg.seed, tf.int64)).numpy()
    grids = trainer.sample_grids(z, fixed_images)
    with writer.as_default(step=step):
        for name, g in grids.items():
            tf.summary.image(name, g[None], max_outputs=1)
            save_png(g, os.path.join(samples_dir, f"step_{step:07d}_{name}.png"))


def _save(manager: checkpoints.Manager, step: int) -> None:
    try:
        manager.save(step)
    except checkpoints.SaveError as e:
        raise trainer_lib.TrainingError(str(e)) from None


def _log_stop(signum: int | None, run_dir: str, step: int, log: Callable[[str], None]) -> None:
    name = signal.Signals(signum).name if signum else "another worker's signal"
    saved = os.path.join(run_dir, "checkpoints", f"ckpt-{step}")  # the chief's
    log(f"{name}: stopped at step {step}, checkpoint saved to {saved}; run the same command again to resume")


def run(
    cfg: Config,
    strategy: tf.distribute.Strategy | None = None,
    *,
    log: Callable[[str], None] = print,
    callbacks: Callable[[trainer_lib.Trainer], Sequence[Callback]] = lambda t: (),
    export: bool = False,
) -> dict:
    """Train the run `cfg` describes, from its data to its last checkpoint (and SavedModel):
    what train.py does once its flags are a Config, callable from a notebook too.

    Resumes from cfg.run_dir's latest checkpoint; holds the run dir's lock while training. Only
    the chief worker writes. `callbacks(trainer)` gives fit's callbacks (train.py's FID);
    `export` writes <run_dir>/saved_model at the end. Returns {"trainer", "metrics" (the last
    logged), "stopped" (a signal ended it), "export" (its path or None)}.
    Raises trainer_lib.TrainingError, data.DataError, run_lock.RunDirBusy, config.ConfigError, OSError (each
    one line: train.py prints them as `error:`).
    """
    from pga_tf import data, run_lock
    from pga_tf.training import precision_probe, preflight

    strategy = strategy or trainer_lib.make_strategy(cfg.strategy)
    chief = distribution.is_chief(strategy)  # only the chief writes (and locks) the run dir
    # A second training, another run's dir or missing data: refused now, not after the start-up.
    preflight.check(cfg, lock=chief)
    # Before any net exists, on constant tensors: a 16-bit policy that is slower than float32 on
    # this CPU is said once, and the run's random state is untouched.
    precision_probe.check(cfg.precision, log=log)
    # Seeds weight initialisation (and Python/numpy); noise comes from the checkpointed generator.
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()

    image_shape = data.image_shape(cfg.dataset)

    data_dir = cfg.data_dir or None
    dataset = data.make_train_dataset(
        cfg.dataset, cfg.batch_size, data_dir=data_dir, seed=cfg.seed, split=cfg.train_split
    )
    examples = data.num_examples(cfg.dataset, cfg.train_split, data_dir)
    log(f"data: {data.describe(cfg.dataset, cfg.train_split, data_dir)}")
    main_steps = main_steps_of(cfg, examples)
    trainer = trainer_lib.Trainer(
        cfg,
        image_shape,
        strategy,
        main_steps=main_steps,
        train_images=lambda: data.load_images(cfg.dataset, cfg.train_split, data_dir),
    )
    fixed = preview_images(cfg)
    phases = " (" + ", ".join(f"{p.name}: {p.steps}" for p in trainer.phases) + ")" if len(trainer.phases) > 1 else ""
    log(
        f"training {cfg.method} on {cfg.dataset} ({cfg.model}, z_dim {cfg.z_dim}) for "
        f"{trainer.total_steps} steps{phases} on {strategy.num_replicas_in_sync} replica(s); run dir "
        f"{cfg.run_dir}"
    )
    # What the checkpointed input position depends on; a resume with another one starts the
    # input afresh (fit says so) instead of silently reading the old data.
    signature = dict(
        dataset=cfg.dataset,
        data_dir=os.path.realpath(data_dir) if data_dir else "",
        batch_size=cfg.batch_size,
        examples=examples,
    )
    # Held until the run (export included) ends; the kernel drops it if the process dies.
    lock = run_lock.RunDirLock(cfg.run_dir).acquire() if chief else None
    try:
        last = fit(
            trainer,
            dataset,
            None,
            cfg.run_dir,
            fixed,
            log=log,
            on_start=(lambda: config_lib.save(cfg, cfg.run_dir)) if chief else None,
            callbacks=list(callbacks(trainer)) if chief else [],
            input_signature=signature,
        )
        result = {"trainer": trainer, "metrics": last, "stopped": bool(last.get("stopped_by_signal")), "export": None}
        if result["stopped"]:
            return result
        # Equal digests on every worker (and run to run with --deterministic) mean equal weights.
        log(
            f"finished at step {trainer.step}; weights digest (sha256, first 16 hex digits) "
            f"{distribution.weights_digest(*trainer.models)}"
        )
        if export and chief:
            from pga_tf import export as export_lib
            from pga_tf import export_paths

            # What export_savedmodel.py writes: the run's last checkpoint in float32 nets (a 16-bit
            # --precision run's compute pays off for training; serving stays exact and portable).
            module = export_lib.from_run(cfg.run_dir)
            result["export"] = export_lib.export(module, os.path.join(cfg.run_dir, "saved_model"), overwrite=True)
            log(export_paths.written(module.checkpoint, module.step, result["export"], module.sampler.kind))
        return result
    finally:
        if lock is not None:
            lock.release()


def main_steps_of(cfg: Config, examples: int) -> int:
    """The image nets' steps of a run on `examples` training images: --train_steps, or --epochs
    epochs of full batches (a method's later phases come after them)."""
    return cfg.train_steps if cfg.train_steps > 0 else cfg.epochs * (examples // cfg.batch_size)


def preview_images(cfg: Config) -> np.ndarray:
    """The 16 fixed test images of the reconstruction grids (training images without a test split)."""
    from pga_tf import data

    data_dir = cfg.data_dir or None
    try:
        return data.fixed_batch(cfg.dataset, 16, "test", data_dir)
    except data.BadImages:
        raise  # a bad test file is named now, not discovered by a later FID
    except data.DataError:  # no test split: preview train images
        return data.fixed_batch(cfg.dataset, 16, cfg.train_split, data_dir)


def _mark_start(writer: tf.summary.SummaryWriter, step: int, resumed: bool) -> None:
    """Write a SessionLog START event at `step` + 1 into `writer`'s events.

    A run killed after its last checkpoint has already logged summaries past it, and the resumed
    run logs those steps again, so TensorBoard's curves would run back. TensorBoard's loader takes
    a run's first START event as its start and every later one as a restart: it drops the events at
    or past that step, which leaves the summaries up to the checkpoint and then the resumed run's.
    A resume writes two, so that a run dir whose first session wrote none is purged as well (a
    second purge at the same step drops nothing more).
    """
    event = tf.compat.v1.Event(
        wall_time=time.time(), step=step + 1, session_log=tf.compat.v1.SessionLog(status=tf.compat.v1.SessionLog.START)
    )
    # tf.summary has no call for an Event that is not a Summary; ImportEvent is the writer's op
    # for exactly that.
    for _ in range(2 if resumed else 1):
        tf.raw_ops.ImportEvent(writer=writer._resource, event=event.SerializeToString())
    writer.flush()


def _log_warm_up_end(cfg: Config, log: Callable[[str], None]) -> None:
    """Say that the jump in the loss totals and the dark-blob grids before it are expected."""
    terms = [name for name in config_lib.COEFFICIENTS if getattr(cfg, name)]
    if cfg.init_steps > 0 and terms:
        verb = "joins" if len(terms) == 1 else "join"
        log(
            f"warm-up over: from step {cfg.init_steps + 1} on (--init_steps={cfg.init_steps}) "
            f"{', '.join(terms)} {verb} the losses, so the loss totals jump; the sample grids of the "
            "warm-up (dark blobs: only the autoencoder was trained) are expected"
        )


def _hms(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
