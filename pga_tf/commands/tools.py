"""The console scripts of the tools: `pga-results`, `pga-bench`, `pga-classifier`, `pga-standins`.

Each does what `python -m <its module>` does. The console filter is installed before the tool's
module is imported, since bench imports TensorFlow at the top of its module.
"""

from __future__ import annotations

import runpy

from pga_tf import console


def results() -> None:
    """`pga-results`: `python -m pga_tf.tools.results`."""
    console.install()
    from pga_tf.tools import results as tool  # defines its flags

    tool.run()


def bench() -> None:
    """`pga-bench`: `python -m pga_tf.tools.bench`."""
    console.install()
    # As `python -m` runs it: its flags are checked before its module imports TensorFlow.
    runpy.run_module("pga_tf.tools.bench", run_name="__main__")


def classifier() -> None:
    """`pga-classifier`: `python -m pga_tf.evaluation.classifier`."""
    console.install()
    from pga_tf.evaluation import classifier as tool

    tool.run()


def standins() -> None:
    """`pga-standins`: `python -m pga_tf.tools.standins`."""
    console.install()
    from pga_tf.tools import standins as tool

    tool.run()
