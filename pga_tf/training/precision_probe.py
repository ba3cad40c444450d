"""Is a 16-bit policy faster than float32 on this CPU? A start-up probe that says so when it is not.

Whether bfloat16 (or float16) compute pays depends on the CPU, not on the flag: on AMD EPYC
(Zen 4, AVX512-BF16) the step runs 1.55x float32 under mixed_bfloat16, on an Intel Xeon with
AVX512-BF16 but no AMX (family 6 model 207) 0.70x, and float16 without native arithmetic 5-6x
slower (docs/BENCHMARKS.md). So train.py, under a 16-bit policy, times a few of the net's own
heaviest ops in float32 and in the policy's compute dtype and prints one warning line when 16-bit
is not faster. It prints nothing when 16-bit is faster: the flag then does what it promises.

The probe runs eagerly on its own constant tensors (no TensorFlow, Keras or numpy random state
is read or advanced, so a run's results are the same with or without it) on the default device,
before any model is built. It takes a few tenths of a second on a quiet 2-core machine (most of
it oneDNN's one-time kernel set-up).
``PGA_TF_PRECISION_PROBE=0`` skips it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable

SKIP_ENV = "PGA_TF_PRECISION_PROBE"
REPEATS = 5
# Below this, 16-bit is "not faster" (a ratio of exactly 1 gains nothing for the precision lost).
FASTER = 1.0


def enabled(environ=os.environ) -> bool:
    """False when PGA_TF_PRECISION_PROBE is 0/false/no/off."""
    return environ.get(SKIP_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def compute_dtype(precision: str) -> str | None:
    """The 16-bit compute dtype of a Keras policy name, or None for a float32 policy."""
    if precision.startswith("mixed_"):
        return precision[len("mixed_") :]
    return None


def _workload(dtype: str) -> Callable[[], None]:
    """conv_mnist's heaviest ops at batch 64 in `dtype`: the encoder's 5x5 stride-2 conv 64 -> 128
    channels (14x14 -> 7x7), and the decoder's 1024 -> 6272 fc matmul. One call runs both."""
    import tensorflow as tf

    # Constant fills: the speed of a dense conv or matmul does not depend on the values, and no
    # random state (TensorFlow's, Keras's or numpy's global one) is read or advanced.
    def const(value, *shape):
        return tf.fill(shape, tf.constant(value, dtype))

    x, w = const(0.5, 64, 14, 14, 64), const(0.01, 5, 5, 64, 128)
    h, k = const(0.5, 64, 1024), const(0.01, 1024, 7 * 7 * 128)

    def run() -> None:
        y = tf.nn.conv2d(x, w, strides=2, padding="SAME")
        z = tf.linalg.matmul(h, k)
        # Reading one element back waits for both ops and fetches almost nothing.
        (y[0, 0, 0, 0] + tf.cast(z[0, 0], dtype)).numpy()

    return run


def speed_ratio(float32_seconds: float, low_seconds: float) -> float:
    """16-bit speed as a multiple of float32's (above 1: 16-bit is faster)."""
    return float32_seconds / low_seconds


def message(precision: str, ratio: float, cpu: str) -> str | None:
    """The line to print for a measured ratio: a warning when 16-bit is not faster, else None."""
    if ratio > FASTER:
        return None
    return (
        f"warning: {precision} ran {ratio:.2f}x float32 speed on this CPU ({cpu}) in a start-up "
        f"probe; --precision=float32 is faster here ({SKIP_ENV}=0 skips the probe)"
    )


def measure(
    precision: str,
    workload: Callable[[str], Callable[[], None]] = _workload,
    repeats: int = REPEATS,
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """The policy's speed as a multiple of float32's on `workload`, interleaved: float32, 16-bit,
    float32, ... so a change in the machine's load shows in both; the median of `repeats` each."""
    dtype = compute_dtype(precision)
    if dtype is None:
        raise ValueError(f"{precision} has no 16-bit compute dtype to probe")
    runs = {"float32": workload("float32"), dtype: workload(dtype)}
    for run in runs.values():
        run()  # kernel set-up, untimed
    times: dict[str, list[float]] = {d: [] for d in runs}
    for _ in range(repeats):
        for d, run in runs.items():
            t0 = clock()
            run()
            times[d].append(clock() - t0)
    return speed_ratio(statistics.median(times["float32"]), statistics.median(times[dtype]))


def check(
    precision: str,
    log: Callable[[str], None],
    cpu: str | None = None,
    measure_ratio: Callable[[str], float] = measure,
    environ=os.environ,
) -> float | None:
    """Under a 16-bit `precision`, probe and `log` the warning when 16-bit is not faster.

    Returns the measured ratio, or None when nothing ran (float32, or the probe skipped).
    """
    if compute_dtype(precision) is None or not enabled(environ):
        return None
    ratio = measure_ratio(precision)
    if cpu is None:
        from pga_tf import machine

        cpu = machine.cpu_model()
    line = message(precision, ratio, cpu)
    if line:
        log(line)
    return ratio
