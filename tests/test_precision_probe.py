"""pga_tf.training.precision_probe: the warning when a 16-bit policy is not faster, its arithmetic, and
that the probe leaves the run's random state alone."""

import numpy as np
import pytest

from pga_tf.training import precision_probe

CPU = "Test CPU (family 6, model 1)"


def _scripted_clock(durations: list[tuple[float, float]]):
    """A clock for measure(): each (float32, 16-bit) pair is one interleaved repeat's timings."""
    stamps, now = [], 100.0
    for pair in durations:
        for seconds in pair:
            stamps += [now, now + seconds]
            now += seconds + 1.0
    it = iter(stamps)
    return lambda: next(it)


def _noop(dtype):
    return lambda: None


def _check(durations, environ=None, precision="mixed_bfloat16"):
    lines = []
    clock = _scripted_clock(durations)
    ratio = precision_probe.check(
        precision,
        lines.append,
        cpu=CPU,
        environ=environ or {},
        measure_ratio=lambda p: precision_probe.measure(p, workload=_noop, repeats=len(durations), clock=clock),
    )
    return ratio, lines


def test_slower_16_bit_prints_one_line_with_the_median_ratio():
    # float32: 10, 12, 11, 50, 9 ms -> median 11; bfloat16: 15, 14, 16, 13, 100 -> median 15.
    ratio, lines = _check([(0.010, 0.015), (0.012, 0.014), (0.011, 0.016), (0.050, 0.013), (0.009, 0.100)])
    assert ratio == pytest.approx(11 / 15)
    assert lines == [
        f"warning: mixed_bfloat16 ran 0.73x float32 speed on this CPU ({CPU}) in a "
        "start-up probe; --precision=float32 is faster here "
        "(PGA_TF_PRECISION_PROBE=0 skips the probe)"
    ]


def test_equal_speed_is_not_faster():
    ratio, lines = _check([(0.02, 0.02)] * 3, precision="mixed_float16")
    assert ratio == pytest.approx(1.0)
    assert len(lines) == 1 and lines[0].startswith("warning: mixed_float16 ran 1.00x float32 speed")


def test_faster_16_bit_prints_nothing():
    # float32 median 30 ms, bfloat16 median 12 ms: 2.5x.
    ratio, lines = _check([(0.030, 0.012), (0.031, 0.011), (0.029, 0.013)])
    assert ratio == pytest.approx(0.030 / 0.012)
    assert lines == []


@pytest.mark.parametrize("value", ["0", "off", "false", "No"])
def test_the_probe_is_skipped_by_the_environment(value):
    def never(precision):
        raise AssertionError("the probe ran")

    lines = []
    assert (
        precision_probe.check(
            "mixed_bfloat16", lines.append, cpu=CPU, measure_ratio=never, environ={"PGA_TF_PRECISION_PROBE": value}
        )
        is None
    )
    assert lines == []


def test_float32_is_not_probed():
    def never(precision):
        raise AssertionError("the probe ran")

    assert precision_probe.check("float32", print, cpu=CPU, measure_ratio=never, environ={}) is None
    with pytest.raises(ValueError):
        precision_probe.measure("float32")


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
def test_the_real_probe_measures_and_leaves_the_random_state_alone(precision):
    import keras
    import tensorflow as tf

    def draws(probe: bool):
        keras.utils.set_random_seed(3)  # what train.py does (TF, numpy and Python seeds)
        if probe:
            ratio = precision_probe.measure(precision, repeats=1)
            assert np.isfinite(ratio) and ratio > 0
        dense = keras.layers.Dense(3)
        dense.build((None, 2))  # a weight initialisation, as the nets' are drawn after the probe
        return tf.random.normal([4]).numpy(), np.random.random(4), dense.kernel.numpy()

    with_probe, without = draws(True), draws(False)
    for a, b in zip(with_probe, without):
        np.testing.assert_array_equal(a, b)
