"""pga_tf.curves: the FID series taken back out of TensorBoard files, and its plot."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from pga_tf import curves


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
