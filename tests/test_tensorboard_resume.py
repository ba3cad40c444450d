"""TensorBoard's curves after a run is killed past its last checkpoint and resumed: the resumed
run's events make TensorBoard's own loader drop the steps logged after the checkpoint."""

import os

import pytest

from tests.helpers import TINY, run

# Every test here starts a program in a subprocess.
pytestmark = pytest.mark.e2e


def _steps(tb_dir, tag):
    # The loader TensorBoard's server reads TF2 summaries with.
    from tensorboard.backend.event_processing import plugin_event_accumulator as event_accumulator

    acc = event_accumulator.EventAccumulator(tb_dir, size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    return [e.step for e in acc.Tensors(tag)]


def test_resumed_run_makes_tensorboard_drop_the_orphaned_steps(idx_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    base = ["--data_dir", idx_dir, "--run_dir", run_dir, *TINY, "--log_every=2", "--steps_per_loop=2", "--ckpt_every=4"]
    assert run(base + ["--train_steps=8"]).returncode == 0
    # Killed after the step-4 checkpoint with steps 6 and 8 already logged: the step-8
    # checkpoint never made it to disk.
    ckpt = os.path.join(run_dir, "checkpoints")
    for f in os.listdir(ckpt):
        if f.startswith("ckpt-8."):
            os.remove(os.path.join(ckpt, f))
    tb = os.path.join(run_dir, "tb")
    assert _steps(tb, "loss/img_rec") == [2, 4, 6, 8]
    resumed = run(base + ["--train_steps=12"])
    assert resumed.returncode == 0, resumed.stderr
    assert "at step 4" in resumed.stdout
    steps = _steps(tb, "loss/img_rec")
    assert steps == sorted(set(steps)) == [2, 4, 6, 8, 10, 12], steps
