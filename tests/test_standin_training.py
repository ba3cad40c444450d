"""A CIFAR-10 paper setting trained on the stand-in images (pga_tf/tools/standins.py) for a few
hundred steps: batch norm on, RGB data path, FID on a classifier trained on the same stand-in.
The FID must fall once the latent terms join (docs/RESULTS.md, "CIFAR-10 and CelebA settings on
stand-in images", has the same runs at 3000 steps). Slow: minutes on 2 cores (--runslow)."""

import os
import re

import pytest

from pga_tf.tools import standins
from tests.helpers import ROOT, ok, run, run_python

pytestmark = [pytest.mark.slow, pytest.mark.e2e]
SOURCE = "/usr/share/datasets/fashion-mnist"


def test_lpga_cifar10_setting_learns_on_the_stand_in(tmp_path):
    if not os.path.exists(os.path.join(SOURCE, "train-images-idx3-ubyte.gz")):
        pytest.skip(f"no Fashion-MNIST IDX files in {SOURCE} (install.sh installs them)")
    data = tmp_path / "cifar10"
    standins.write("cifar10", str(data), SOURCE, (6000, 1000), log=lambda s: None)
    classifier = ["-m", "pga_tf.evaluation.classifier", "--dataset=cifar10", f"--data_dir={data}"]
    ok(run_python([*classifier, f"--out={tmp_path}", "--name=standin_cnn", "--epochs=1"], timeout=1800))
    proc = ok(
        run(
            [
                f"--flagfile={os.path.join(ROOT, 'flags', 'lpga_cifar10.cfg')}",
                f"--data_dir={data}",
                f"--classifier={tmp_path / 'standin_cnn.keras'}",
                "--train_steps=600",
                "--init_steps=200",
                "--fid_every=200",
                "--fid_samples=1000",
                "--sample_every=600",
                "--noexport",
                f"--run_dir={tmp_path / 'run'}",
            ],
            timeout=3600,
        )
    )
    fid = {int(s): float(v) for s, v in re.findall(r"step (\d+) \| FID-\S+ ([0-9.]+)", proc.stdout)}
    assert sorted(fid) == [200, 400, 600], proc.stdout
    # Step 200 ends the warm-up: the decoder has seen no prior codes yet, so its samples are far off.
    assert fid[600] < 0.7 * fid[200], fid
