"""A run shorter than its warm-up trains a plain autoencoder under the method's name: train.py
says so at the start, and the export of such a checkpoint says so in its log."""

import os

import pytest

from pga_tf import config as config_lib
from tests.helpers import TINY, run

# Every test here starts a program in a subprocess.
pytestmark = pytest.mark.e2e


def test_a_run_inside_its_warm_up_is_warned_about_at_start_and_in_the_export(idx_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    args = ["--data_dir", idx_dir, "--run_dir", run_dir, *TINY, "--ckpt_every=5", "--train_steps=10", "--init_steps=50"]
    proc = run(args)
    assert proc.returncode == 0, proc.stderr
    terms = [t for t in ("zn_rec", "zh_rec", "nll", "vrec", "vkld") if getattr(config_lib.for_method("lpga"), t)]
    warnings = [l for l in proc.stdout.splitlines() if l.startswith("warning:")]
    assert len(warnings) == 1, proc.stdout
    assert "--init_steps=50" in warnings[0] and "10 steps" in warnings[0] and "step 51" in warnings[0]
    assert all(t in warnings[0] for t in terms) and "plain autoencoder" in warnings[0]
    assert proc.stderr.strip() == ""

    from pga_tf import export

    lines = []
    module = export.from_run(run_dir, log=lines.append)
    ckpt = os.path.join(run_dir, "checkpoints", "ckpt-10")
    assert module.step == 10
    assert any(
        l.startswith("warning:") and f"checkpoint {ckpt}" in l and "step 51" in l and "plain autoencoder" in l
        for l in lines
    ), lines
    # Resumed past the warm-up: nothing to warn about, and the export of step 60 neither.
    past = run(args[:-2] + ["--train_steps=60", "--init_steps=50"])
    assert past.returncode == 0 and "warning:" not in past.stdout, past.stdout
    lines.clear()
    assert export.from_run(run_dir, log=lines.append).step == 60
    assert not any(l.startswith("warning:") for l in lines), lines
