"""Train a PGA model or a baseline on the same nets (--help's first line names every method).

  python train.py                                   # LPGA on Fashion-MNIST, reference settings
  python train.py --flagfile=flags/lpga_cifar10.cfg # a paper setting
  tensorboard --logdir runs/                        # watch it

An existing --run_dir resumes from its latest checkpoint.
"""

from __future__ import annotations

import os

from absl import flags

from pga_tf import cli, console

FLAGS = flags.FLAGS
COMMAND = "python train.py"  # how the docstring writes this program


def main() -> None:
    """`pga-train` and `python train.py`: train as the command line's flags say."""
    console.install()  # before TensorFlow loads: its harmless native lines stay off stderr
    cli.define_train_flags()
    cli.define_feature_flags()
    cli.define_fid_training_flags()
    # The first line is the registry's: a method registered later is named too.
    doc = cli.train_summary() + "\n" + __doc__.split("\n", 1)[1]
    cli.run(_train, _user_errors, cli.train_help_groups(), doc=doc, command=COMMAND)


def _train(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        cfg = cli.config_from_flags()
    except ValueError as e:
        cli.fail(str(e))
    from pga_tf import data, run_lock
    from pga_tf.evaluation import features
    from pga_tf.training import preflight

    try:
        # Before TensorFlow loads, which takes seconds. A multi-worker process learns whether it
        # is the chief, the one that locks the run dir, from its strategy: run() checks that lock.
        preflight.check(cfg, lock=cfg.strategy != "multi_worker")
        if FLAGS.fid_every:
            choice = features.from_flags(FLAGS, cfg.run_dir, cfg.dataset, same_curve=True)
            features.check(choice.kind, cfg.dataset, choice.classifier, choice.inception_weights)
    except (run_lock.RunDirBusy, ValueError, data.DataError, features.FeatureError) as e:  # ConfigError: ValueError
        cli.fail(str(e))
    if cfg.strategy == "multi_worker":
        # Before TensorFlow loads: its strategy constructor waits for the peers in C++, deaf to
        # Ctrl-C and SIGTERM, so the waiting (and a stop while waiting) happens here.
        from pga_tf.training import rendezvous

        try:
            rendezvous.wait_for_peers(
                os.environ.get("TF_CONFIG"), FLAGS.worker_timeout, log=lambda line: print(line, flush=True)
            )
        except rendezvous.ClusterError as e:
            cli.fail(str(e))
    cli.split_cpu(FLAGS.cpu_devices)
    cli.quiet_tensorflow()

    from pga_tf.training import loop
    from pga_tf.training import trainer as trainer_lib

    # Before anything else touches TensorFlow: MultiWorkerMirroredStrategy can only configure
    # its collectives before TF initialises.
    strategy = trainer_lib.make_strategy(cfg.strategy)
    loop.run(
        cfg,
        strategy,
        log=lambda line: print(line, flush=True),
        callbacks=lambda trainer: _fid_callbacks(cfg, cfg.data_dir or None, trainer.sampler),
        export=FLAGS.export,
    )


def _fid_callbacks(cfg, data_dir, sampler) -> list:
    """FID every --fid_every steps into TensorBoard (eval/FID-<features>), or nothing; samples
    are drawn from the run's own sampler (as the sample grids are)."""
    if not FLAGS.fid_every:
        return []
    from pga_tf.evaluation import features, fid

    choice = features.from_flags(FLAGS, cfg.run_dir, cfg.dataset, same_curve=True)
    extractor = features.make_extractor(choice.kind, cfg.dataset, choice.classifier, choice.inception_weights)
    features.record(cfg.run_dir, choice, cfg.dataset)  # the callbacks are made on the chief, in its run dir
    return [
        fid.FIDCallback(
            extractor,
            cfg.dataset,
            sampler,
            FLAGS.fid_every,
            FLAGS.fid_samples,
            data_dir,
            fid.StatsCache(FLAGS.stats_cache),
            seed=cfg.seed,
            log=lambda line: print(line, flush=True),
        )
    ]


def _user_errors():
    from pga_tf import config, data, export, run_lock, runs
    from pga_tf.evaluation import features
    from pga_tf.training import trainer as trainer_lib

    # OSError: a full disk or an unwritable run dir is the user's to fix, not a crash.
    return (
        data.DataError,
        trainer_lib.TrainingError,
        export.ExportError,
        runs.RunError,
        features.FeatureError,
        run_lock.RunDirBusy,
        config.ConfigError,
        OSError,
    )
