"""pga_tf.tools.curves: the FID series taken back out of TensorBoard files, and its plot."""

import json
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pga_tf.tools import curves
from tests.helpers import ROOT


def _write(logdir, points, tag="eval/FID-fashion_mnist_cnn"):
    writer = tf.summary.create_file_writer(str(logdir))
    with writer.as_default():
        for step, value in points:
            tf.summary.scalar(tag, value, step=step)
            tf.summary.scalar("train/img_rec", 0.5, step=step)  # another tag: not the curve
    writer.close()


def test_read_takes_every_point_and_the_last_value_of_a_step_written_twice(tmp_path):
    _write(tmp_path, [(1000, 190.3), (2000, 120.0)])
    # A resumed run (from ckpt-1000) writes a second event file that evaluates step 2000 again.
    _write(tmp_path, [(2000, 118.5), (3000, 95.25)])
    assert len(list(tmp_path.iterdir())) == 2
    curve = curves.read(str(tmp_path))
    assert curve["tag"] == "eval/FID-fashion_mnist_cnn"
    assert curve["steps"] == [1000, 2000, 3000]
    np.testing.assert_allclose(curve["fid"], [190.3, 118.5, 95.25], rtol=1e-6)


def test_read_without_a_curve_is_none(tmp_path):
    assert curves.read(str(tmp_path / "missing")) is None
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        tf.summary.scalar("train/img_rec", 0.5, step=1)
    writer.close()
    assert curves.read(str(tmp_path)) is None


def test_plot_draws_a_band_only_where_seeds_differ(tmp_path):
    one = {"tag": "eval/FID-x", "steps": [1000, 2000, 3000], "fid": [200.0, 100.0, 80.0]}
    other = {**one, "fid": [220.0, 130.0, 70.0]}

    def pale_pixels(runs, name):
        img = np.asarray(Image.open(curves.plot({"LPGA": runs}, str(tmp_path / name))).convert("RGB"))
        # The band is the line's colour at alpha 0.2 over white: pale, neither white nor the line.
        return img.shape, int(np.sum(np.all((img > 180) & (img < 250), axis=-1)))

    shape_1, single = pale_pixels([one], "a.png")
    shape_2, banded = pale_pixels([one, other], "b.png")
    _, same = pale_pixels([one, dict(one)], "c.png")  # two seeds that agree: a band of no width
    assert shape_1 == shape_2 and shape_1[0] > 100
    assert banded > single + 1000
    assert abs(same - single) < 300  # only the legend's "(2 seeds)" differs
    with pytest.raises(ValueError, match="no FID curve"):
        curves.plot({"LPGA": [None]}, str(tmp_path / "d.png"))


def _curve_table(tmp_path, extra_seed):
    """results.curve_section on two seed-0 curves (VAE, LPGA) and an --extra_results file (read by
    results.extra_curves) whose seed `extra_seed` has a VAE curve only; in a subprocess, as
    results.py defines its own flags."""
    extra = tmp_path / f"seed{extra_seed}.json"
    extra.write_text(
        json.dumps(
            {
                "seed": extra_seed,
                "dataset": "fashion_mnist",
                "train_steps": 3000,
                "epochs": 0,
                "fid_every": 1000,
                "fid_samples": 5000,
                "methods": {"vae": {"curve": {"steps": [1000, 2000], "fid": [120.0, 99.5]}}},
            }
        )
    )
    script = (
        "from absl import flags\n"
        "from pga_tf.tools import results\n"
        f"flags.FLAGS(['results', '--fid_every=1000', '--docs_dir={tmp_path}', '--extra_results={extra}'])\n"
        "curve = lambda fid: {'curve': {'steps': [1000, 2000], 'fid': fid}}\n"
        "print(results.curve_section({'vae': curve([123.1, 100.1]), 'lpga': curve([190.3, 86.5])},"
        " 'fashion_mnist_cnn', results.extra_curves()))\n"
    )
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.e2e
def test_results_curve_table_gives_each_method_the_seeds_it_was_run_with(tmp_path):
    """--extra_results: VAE (two seeds) shows both values a step, LPGA (one seed) its own alone."""
    proc = _curve_table(tmp_path, 1)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "| VAE | 123.1 / 120.0 | 100.1 / 99.5 |" in lines
    assert "| LPGA | 190.3 | 86.5 |" in lines
    assert "at each step (seed 0; VAE seeds 0 / 1):" in proc.stdout
    assert (tmp_path / "fid_curves.png").stat().st_size > 0


@pytest.mark.e2e
def test_results_refuses_an_extra_results_file_of_the_same_seed(tmp_path):
    proc = _curve_table(tmp_path, 0)
    assert proc.returncode != 0
    assert "has seed 0, which is already plotted" in proc.stderr


def _events(path, wall_times):
    """An event file of bare events at the given wall times (the first one as a file-version
    record), written record by record so the times are ours, not the clock's."""
    from tensorboard.compat.proto import event_pb2

    with tf.io.TFRecordWriter(str(path)) as w:
        for i, t in enumerate(wall_times):
            event = event_pb2.Event(wall_time=t, step=i)
            if i == 0:
                event.file_version = "brain.Event:2"
            w.write(event.SerializeToString())


def test_train_seconds_adds_each_starts_span(tmp_path):
    assert curves.train_seconds(str(tmp_path)) is None
    _events(tmp_path / "events.out.tfevents.100.vm.1.0.v2", [100.0, 100.5, 130.0])
    # A second start, hours later: the gap between starts is not training time.
    _events(tmp_path / "events.out.tfevents.5000.vm.2.0.v2", [5000.0, 5004.0, 5010.0])
    assert curves.train_seconds(str(tmp_path)) == pytest.approx(30.0 + 10.0)
    # A file cut short by a kill counts up to its last whole record.
    cut = tmp_path / "events.out.tfevents.9000.vm.3.0.v2"
    _events(cut, [9000.0, 9002.0, 9007.0])
    data = cut.read_bytes()
    cut.write_bytes(data[: len(data) - 5])
    assert curves.train_seconds(str(tmp_path)) == pytest.approx(40.0 + 2.0)
