"""Train a PGA model (or the AE/VAE baselines).

  python train.py                                   # LPGA on Fashion-MNIST, reference settings
  python train.py --flagfile=flags/lpga_cifar10.cfg # a paper setting
  tensorboard --logdir runs/                        # watch it

An existing --run_dir resumes from its latest checkpoint.
"""

from __future__ import annotations

import os

from pga_tf import console

console.install()  # first of all: TensorFlow's harmless native lines stay off stderr

from absl import flags  # noqa: E402

from pga_tf import cli  # noqa: E402

cli.define_train_flags()
cli.define_feature_flags()
cli.define_fid_training_flags()
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        cfg = cli.config_from_flags()
    except ValueError as e:
        cli.fail(str(e))
    if cfg.strategy == "multi_worker":
        # Before TensorFlow loads: its strategy constructor waits for the peers in C++, deaf to
        # Ctrl-C and SIGTERM, so the waiting (and a stop while waiting) happens here.
        from pga_tf import rendezvous

        try:
            rendezvous.wait_for_peers(os.environ.get("TF_CONFIG"), FLAGS.worker_timeout,
                                      log=lambda line: print(line, flush=True))
        except rendezvous.ClusterError as e:
            cli.fail(str(e))
    cli.split_cpu(FLAGS.cpu_devices)
    cli.quiet_tensorflow()

    from pga_tf import distribution, run_lock, train_lib

    # Before anything else touches TensorFlow: MultiWorkerMirroredStrategy can only configure
    # its collectives before TF initialises.
    strategy = train_lib.make_strategy(cfg.strategy)
    chief = distribution.is_chief(strategy)  # only the chief writes (and locks) the run dir
    if chief:
        run_lock.check_free(cfg.run_dir)  # refuse a second training now, not after the start-up

    import keras
    import tensorflow as tf

    from pga_tf import config as config_lib, data, export, models, precision_probe

    # Before any net exists, on constant tensors: a 16-bit policy that is slower than float32 on
    # this CPU is said once, and the run's random state is untouched.
    precision_probe.check(cfg.precision, log=lambda line: print(line, flush=True))

    # Seeds weight initialisation (and Python/numpy); noise comes from the checkpointed generator.
    keras.utils.set_random_seed(cfg.seed)
    if cfg.deterministic:
        tf.config.experimental.enable_op_determinism()

    image_shape = data.image_shape(cfg.dataset)
    expected = models.IMAGE_SHAPES[cfg.model]
    if tuple(image_shape[:2]) != tuple(expected):
        cli.fail(f"--model {cfg.model} takes {expected[0]}x{expected[1]} images; --dataset "
                 f"{cfg.dataset} has {image_shape[0]}x{image_shape[1]}")
    saved = config_lib.load(cfg.run_dir)
    if saved is not None and config_lib.conflicts(saved, cfg):
        cli.fail(f"{cfg.run_dir} holds a different run ({'; '.join(config_lib.conflicts(saved, cfg))}); "
                 "use another --run_dir")

    data_dir = cfg.data_dir or None
    dataset = data.make_train_dataset(cfg.dataset, cfg.batch_size, data_dir=data_dir, seed=cfg.seed,
                                      split=cfg.train_split)
    examples = data.num_examples(cfg.dataset, cfg.train_split, data_dir)
    print(f"data: {data.describe(cfg.dataset, cfg.train_split, data_dir)}", flush=True)
    if cfg.train_steps > 0:
        stage1_steps = cfg.train_steps
    else:
        stage1_steps = cfg.epochs * (examples // cfg.batch_size)
    # The 2-Stage VAE trains its second stage after the first: its run is longer.
    stage2_steps = config_lib.stage2_steps(cfg, stage1_steps)
    total_steps = stage1_steps + stage2_steps
    try:
        fixed = data.fixed_batch(cfg.dataset, 16, "test", data_dir)
    except data.BadImages:
        raise  # a bad test file is named now, not discovered by a later FID
    except data.DataError:  # no test split: preview train images
        fixed = data.fixed_batch(cfg.dataset, 16, cfg.train_split, data_dir)

    trainer = train_lib.Trainer(cfg, image_shape, strategy, stage1_steps=stage1_steps,
                                code_images=lambda: data.load_images(cfg.dataset, cfg.train_split, data_dir))
    callbacks = _fid_callbacks(cfg, data_dir, trainer.sampler) if chief else []
    stages = f" (stage 1: {stage1_steps}, stage 2: {stage2_steps})" if stage2_steps else ""
    print(f"training {cfg.method} on {cfg.dataset} ({cfg.model}, z_dim {cfg.z_dim}) for "
          f"{total_steps} steps{stages} on {strategy.num_replicas_in_sync} replica(s); run dir "
          f"{cfg.run_dir}", flush=True)
    # What the checkpointed input position depends on; a resume with another one starts the
    # input afresh (train_lib.fit says so) instead of silently reading the old data.
    signature = dict(dataset=cfg.dataset, data_dir=os.path.realpath(data_dir) if data_dir else "",
                     batch_size=cfg.batch_size, examples=examples)
    # Held until the process ends (export included); the kernel drops it if the process dies.
    lock = run_lock.RunDirLock(cfg.run_dir).acquire() if chief else None  # noqa: F841
    last = train_lib.fit(trainer, dataset, total_steps, cfg.run_dir, fixed,
                         log=lambda line: print(line, flush=True),
                         on_start=(lambda: config_lib.save(cfg, cfg.run_dir)) if chief else None,
                         callbacks=callbacks, input_signature=signature)
    if last.get("stopped_by_signal"):
        return
    # Equal digests on every worker (and run to run with --deterministic) mean equal weights.
    print(f"finished at step {trainer.step}; weights sha256 "
          f"{distribution.weights_digest(*trainer.models)}", flush=True)
    if FLAGS.export and chief:
        # What export_savedmodel.py writes: the run's last checkpoint in float32 nets (a 16-bit
        # --precision run's compute pays off for training; serving stays exact and portable).
        module = export.from_run(cfg.run_dir)
        path = export.export(module, os.path.join(cfg.run_dir, "saved_model"), overwrite=True)
        print(f"SavedModel of {module.checkpoint} (step {module.step}) written to {path}", flush=True)


def _fid_callbacks(cfg, data_dir, sampler) -> list:
    """FID every --fid_every steps into TensorBoard (eval/FID-<features>), or nothing; samples
    are drawn from the run's own sampler (as the sample grids are)."""
    if not FLAGS.fid_every:
        return []
    from pga_tf import features, fid

    extractor = features.make_extractor(FLAGS.features, cfg.dataset, FLAGS.classifier,
                                        FLAGS.inception_weights)
    return [fid.FIDCallback(extractor, cfg.dataset, sampler, FLAGS.fid_every, FLAGS.fid_samples,
                            data_dir, fid.StatsCache(FLAGS.stats_cache), seed=cfg.seed,
                            log=lambda line: print(line, flush=True))]


def _user_errors():
    from pga_tf import config, data, export, features, run_lock, train_lib

    # OSError: a full disk or an unwritable run dir is the user's to fix, not a crash.
    return (data.DataError, train_lib.TrainingError, export.ExportError, features.FeatureError,
            run_lock.RunDirBusy, config.ConfigError, OSError)


if __name__ == "__main__":
    cli.run(main, _user_errors, cli.TRAIN_HELP_GROUPS)
