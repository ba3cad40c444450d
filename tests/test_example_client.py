"""examples/sample_client.py is as quiet as pga-tf's own programs: none of TensorFlow's
start-up lines (abseil's notice, oneDNN, CUDA/cuInit) reach the console."""

import os
import subprocess
import sys

import pytest

from tests.helpers import ROOT, TF_LINE, USER_ENV


@pytest.mark.e2e
def test_the_example_client_prints_no_tensorflow_start_up_lines(tmp_path):
    from pga_tf import export
    from pga_tf.nets import models

    encoder, decoder = models.build_models("conv_mnist", 4, 1, use_bn=False, variational=False)
    exported = export.export(export.PGAServing(encoder, decoder, 4, (28, 28, 1), False), str(tmp_path / "sm"))
    out = tmp_path / "samples.png"
    # As a user runs it: TF_CPP_MIN_LOG_LEVEL unset, so only the client's own filter can hide them.
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "sample_client.py"), exported, str(out)],
        cwd=tmp_path,
        env=USER_ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
    assert [line for line in proc.stderr.splitlines() if TF_LINE.match(line)] == [], proc.stderr
    assert proc.stderr == "" and proc.stdout == "", proc.stderr
