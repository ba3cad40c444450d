"""Evaluate a trained run: FID/KID of samples, test reconstruction MSE, exact latent NLL.

  python -m pga_tf.evaluation.classifier --dataset=mnist --data_dir=DIR --out=classifiers # once; fashion_mnist's ships
  python evaluate.py --run_dir=runs/lpga_fashion_mnist_conv_mnist       # -> <run_dir>/eval/report.json
  python evaluate.py --run_dir=... --features=inception --inception_weights=/path/to/notop.h5
  python evaluate.py --run_dir=... --sampler=gmm   # z from a GMM fitted on E(x): report-gmm.json
  python evaluate.py --run_dir=... --checkpoint_step=3000   # a kept earlier checkpoint: eval/step-3000/
  python evaluate.py --run_dir=... --real_split=validation  # vs the images --holdout kept out: eval/validation/
  python evaluate.py --baselines --dataset=fashion_mnist   # floor (real train) and ceiling (noise) rows

The latest checkpoint (or --checkpoint_step's) is loaded with the run's saved config.json. FID and KID are the mean and
standard deviation over --draws independent draws of --num_samples samples.
"""

from __future__ import annotations

from absl import flags

from pga_tf import cli, console

FLAGS = flags.FLAGS
COMMAND = "python evaluate.py"  # how the docstring writes this program


def main() -> None:
    """`pga-evaluate` and `python evaluate.py`: evaluate as the command line's flags say."""
    console.install()  # before TensorFlow loads: its harmless native lines stay off stderr
    cli.define_eval_flags()
    cli.run(_evaluate, _user_errors, doc=__doc__, command=COMMAND)


def _evaluate(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    from pga_tf import config as config_lib  # no TensorFlow yet: run-dir mistakes fail fast

    problem = FLAGS.out and config_lib.output_path_problem("out", FLAGS.out)
    if problem:  # the report is written last: found now, not after the evaluation
        cli.fail(problem)
    if FLAGS.baselines:
        return baselines()
    from pga_tf import data, runs
    from pga_tf.evaluation import features

    for flag in ("run_dir", "out"):
        try:  # reports and HParams logs are written beside these paths
            config_lib.check_path_encoding(flag, FLAGS[flag].value or "")
        except ValueError as e:
            cli.fail(str(e))

    try:
        cfg = runs.read_config(FLAGS.run_dir)
        if FLAGS["dataset"].present and FLAGS.dataset != cfg.dataset:
            raise ValueError(
                f"--dataset={FLAGS.dataset} is for --baselines: the run in {FLAGS.run_dir} trained on "
                f"{cfg.dataset} and is scored on it (--data_dir points at another copy of it)"
            )
        runs.check_checkpoint(FLAGS.run_dir, FLAGS.checkpoint_step or None)
        split, data_dir = config_lib.real_data(cfg, FLAGS.real_split, FLAGS.data_dir)
        data.check(cfg.dataset, split, data_dir)
        choice = features.from_flags(FLAGS, FLAGS.run_dir, cfg.dataset)
        features.check(choice.kind, cfg.dataset, choice.classifier, choice.inception_weights)
    except (runs.RunError, ValueError, data.DataError, features.FeatureError) as e:
        cli.fail(str(e))
    cli.quiet_tensorflow()

    from pga_tf.evaluation import evaluators, fid  # TensorFlow loads here

    extractor = features.make_extractor(
        choice.kind, cfg.dataset, choice.classifier, choice.inception_weights, FLAGS.batch_size
    )
    options = evaluators.Options(
        num_samples=FLAGS.num_samples,
        draws=FLAGS.draws,
        sampler=FLAGS.sampler,
        sampler_options=cli.sampler_options(),
        nll_examples=FLAGS.nll_examples,
        fd_draws=FLAGS.fd_draws,
        batch_size=FLAGS.batch_size,
        seed=FLAGS.seed,
        step=FLAGS.checkpoint_step or None,
        real_split=FLAGS.real_split,
        data_dir=FLAGS.data_dir or None,
        out=FLAGS.out or None,
    )
    evaluators.evaluate_run(
        FLAGS.run_dir,
        extractor,
        options,
        cache=fid.StatsCache(FLAGS.stats_cache),
        log=lambda line: print(line, flush=True),
    )


def baselines():
    """The floor and ceiling rows of a results table, scored exactly as evaluate_run scores a model."""
    from pga_tf import data
    from pga_tf.evaluation import features

    try:  # before TensorFlow loads: the floor reads train images, both rows score against test
        for split in ("test", "train"):
            data.check(FLAGS.dataset, split, FLAGS.data_dir or None)
        features.check(FLAGS.features, FLAGS.dataset, FLAGS.classifier, FLAGS.inception_weights)
    except (data.DataError, features.FeatureError) as e:
        cli.fail(str(e))
    cli.quiet_tensorflow()
    from pga_tf.evaluation import evaluators, fid

    extractor = features.make_extractor(
        FLAGS.features, FLAGS.dataset, FLAGS.classifier, FLAGS.inception_weights, FLAGS.batch_size
    )
    evaluators.baselines(
        extractor,
        FLAGS.dataset,
        FLAGS.num_samples,
        FLAGS.draws,
        FLAGS.seed,
        FLAGS.data_dir or None,
        fid.StatsCache(FLAGS.stats_cache),
        FLAGS.out or f"baselines_{FLAGS.dataset}.json",
        lambda line: print(line, flush=True),
    )


def _user_errors():
    from pga_tf import data, runs, samplers
    from pga_tf.evaluation import evaluators, features

    return (data.DataError, runs.RunError, evaluators.EvalError, features.FeatureError, samplers.SamplerError, OSError)
