"""Export a training run's latest checkpoint as a SavedModel.

  python export_savedmodel.py --run_dir=runs/lpga_mnist_conv_mnist --export_dir=/tmp/pga [--overwrite]
  python export_savedmodel.py --run_dir=... --sampler=gmm    # `sample` draws z from a GMM fitted on E(x)

Signatures (see pga_tf/export.py): decode, encode, reconstruct, sample; serving_default = sample.
"""

from __future__ import annotations

import os

from absl import flags

from pga_tf import cli, console

FLAGS = flags.FLAGS
COMMAND = "python export_savedmodel.py"  # how the docstring writes this program


def main() -> None:
    """`pga-export` and `python export_savedmodel.py`: export as the command line's flags say."""
    console.install()  # before TensorFlow loads: its harmless native lines stay off stderr
    cli.define_export_flags()
    cli.run(_export, _user_errors, doc=__doc__, command=COMMAND)


def _export(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    from pga_tf import config as config_lib
    from pga_tf import data, export_paths, runs

    export_dir = FLAGS.export_dir or os.path.join(FLAGS.run_dir, "saved_model")
    try:  # before TensorFlow loads, and before anything is written
        config_lib.check_path_encoding("export_dir" if FLAGS.export_dir else "run_dir", export_dir)
        export_paths.check_destination(export_dir, FLAGS.overwrite)
        cfg = runs.read_config(FLAGS.run_dir)
        runs.check_checkpoint(FLAGS.run_dir)
        if FLAGS.data_dir:  # a data dir given must hold the run's training images
            data.check(cfg.dataset, cfg.train_split, FLAGS.data_dir)
    except (ValueError, runs.RunError, export_paths.ExportError, data.DataError) as e:
        cli.fail(str(e))
    cli.quiet_tensorflow()
    from pga_tf import export

    say = lambda line: print(line, flush=True)  # noqa: E731
    module = export.from_run(FLAGS.run_dir, FLAGS.sampler, cli.sampler_options(), FLAGS.data_dir, say)
    path = export.export(module, export_dir, overwrite=FLAGS.overwrite)
    say(export_paths.written(module.checkpoint, module.step, path, module.sampler.kind))


def _user_errors():
    from pga_tf import data, export, runs, samplers

    return (export.ExportError, runs.RunError, samplers.SamplerError, data.DataError)
