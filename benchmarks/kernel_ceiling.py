#!/usr/bin/env python3
"""How fast could the step be with these kernels? Each oneDNN call of a profiled step, timed alone.

    ONEDNN_VERBOSE=1 python benchmarks/profile_step.py --method=lpga --warmup=3 --steps=3 \
        > lpga.log 2> /dev/null
    python benchmarks/kernel_ceiling.py lpga.log

The verbose log (benchmarks/onednn_verbose_summary.py reads the same lines) lists every
convolution, matmul and inner product the step ran, with its problem and direction. This script
runs each distinct problem again on its own, as a TensorFlow op of the same shape, data type and
direction (Conv2D, Conv2DBackpropInput, Conv2DBackpropFilter, MatMul, MatMul + BiasAdd), on all
the threads the step had, and times it (median of `--reps` calls after `--warmup`).

The sum over the step's calls of those solo times is the step's **kernel time**: what the step
would take if it did nothing but its convolutions and matmuls, one after another, each at its
best measured speed. Its FLOPs over that time, against a large square matmul's rate in the same
run (measured as `python -m pga_tf.tools.bench` measures it), is the **kernel ceiling**: the
fraction of the matmul peak this step cannot pass without faster kernels (running two ops at
once on a 2-core machine cannot beat it either, since each solo op already uses both cores).
The measured step, from the log's `== profile end` line, is set against it.

FLOPs are counted as onednn_verbose_summary.py counts them (2 per multiply-add).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import onednn_verbose_summary as summary  # noqa: E402

_STEPS = re.compile(r"== profile end: .*?(\d+) steps in ([\d.]+) s")
_DTYPE = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


class Call(collections.namedtuple("Call", "kind prop problem dtype")):
    """One distinct primitive call: kind (convolution/matmul/gemm_api/inner_product), propagation
    (forward_training, backward_data, backward_weights, or '' for matmuls), problem, src dtype."""


def parse(lines) -> tuple[collections.Counter, int | None, float | None]:
    """(Counter of Call -> calls, profiled steps, profiled seconds) from a profile_step.py log."""
    lines = list(lines)
    steps = seconds = None
    for line in lines:
        m = _STEPS.search(line)
        if m:
            steps, seconds = int(m.group(1)), float(m.group(2))
    calls: collections.Counter = collections.Counter()
    for line in summary.profiled(lines):
        row = summary.parse(line)
        if row is None or not summary.flops(row[0], row[3]):
            continue
        fields = line.split(",")
        at = fields.index("exec")
        prop = fields[at + 4] if row[0] in ("convolution", "inner_product") else ""
        src = re.search(r"\bsrc_?\w*:(\w+):", line)
        dtype = _DTYPE.get(src.group(1) if src else "f32", "float32")
        calls[Call(row[0], prop, row[3], dtype)] += 1
    return calls, steps, seconds


def conv_dims(problem: str) -> dict[str, int]:
    dims: dict[str, int] = {}
    for key, value in summary._CONV_DIM.findall(problem):
        dims.setdefault(key, int(value))
    for h, w in (("ih", "iw"), ("oh", "ow"), ("kh", "kw"), ("sh", "sw"), ("ph", "pw")):
        dims.setdefault(w, dims.get(h, 0 if h == "ph" else 1))
    return dims


def _same_pad(size: int, out: int, kernel: int, stride: int) -> list[int]:
    total = max((out - 1) * stride + kernel - size, 0)
    return [total // 2, total - total // 2]


def op_for(call: Call):
    """(function, args): a tf.function that runs `call`'s problem once, and its inputs."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def tensor(*shape):
        return tf.cast(tf.constant(rng.standard_normal(shape).astype(np.float32)), call.dtype)

    if call.kind == "convolution":
        d = conv_dims(call.problem)
        if d.get("g", 1) != 1:
            raise ValueError(f"grouped convolution not covered: {call.problem}")
        pad_h = [d["ph"], (d["oh"] - 1) * d["sh"] + d["kh"] - d["ih"] - d["ph"]]
        pad_w = [d["pw"], (d["ow"] - 1) * d["sw"] + d["kw"] - d["iw"] - d["pw"]]
        strides = [1, d["sh"], d["sw"], 1]
        # Named paddings where they fit: TensorFlow sends EXPLICIT backprops down other paths.
        same = [_same_pad(d["ih"], d["oh"], d["kh"], d["sh"]), _same_pad(d["iw"], d["ow"], d["kw"], d["sw"])]
        same_out = (d["oh"], d["ow"]) == (-(-d["ih"] // d["sh"]), -(-d["iw"] // d["sw"]))
        if same_out and [pad_h, pad_w] == same:
            common = dict(strides=strides, padding="SAME")
        elif pad_h == pad_w == [0, 0]:
            common = dict(strides=strides, padding="VALID")
        else:
            common = dict(strides=strides, padding="EXPLICIT", explicit_paddings=[0, 0, *pad_h, *pad_w, 0, 0])
        x = tensor(d["mb"], d["ih"], d["iw"], d["ic"])
        w = tensor(d["kh"], d["kw"], d["ic"], d["oc"])
        dy = tensor(d["mb"], d["oh"], d["ow"], d["oc"])
        if call.prop.startswith("forward"):
            fn = tf.function(lambda x, w: tf.raw_ops.Conv2D(input=x, filter=w, **common))
            return fn, (x, w)
        if call.prop == "backward_data":
            sizes = tf.constant(x.shape.as_list())
            fn = tf.function(
                lambda w, dy: tf.raw_ops.Conv2DBackpropInput(input_sizes=sizes, filter=w, out_backprop=dy, **common)
            )
            return fn, (w, dy)
        if call.prop.startswith("backward_weights"):
            sizes = tf.constant(w.shape.as_list())
            fn = tf.function(
                lambda x, dy: tf.raw_ops.Conv2DBackpropFilter(input=x, filter_sizes=sizes, out_backprop=dy, **common)
            )
            return fn, (x, dy)
        raise ValueError(f"unknown convolution direction {call.prop!r}")
    if call.kind in ("matmul", "gemm_api"):
        a, b = call.problem.split(":")[:2]
        a_shape, b_shape = [int(v) for v in a.split("x")], [int(v) for v in b.split("x")]
        return tf.function(lambda a, b: tf.matmul(a, b)), (tensor(*a_shape), tensor(*b_shape))
    if call.kind == "inner_product":
        d = {k: int(v) for k, v in summary._CONV_DIM.findall(call.problem)}
        k = d["ic"] * d.get("ih", 1) * d.get("iw", 1)
        fn = tf.function(lambda x, w, b: tf.nn.bias_add(tf.matmul(x, w), b))
        return fn, (tensor(d["mb"], k), tensor(k, d["oc"]), tensor(d["oc"]))
    raise ValueError(f"no op for {call.kind}")


def solo_ms(fn, args, warmup: int, reps: int) -> float:
    for _ in range(warmup):
        fn(*args).numpy()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn(*args).numpy()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log", help="ONEDNN_VERBOSE output of benchmarks/profile_step.py")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--reps", type=int, default=11)
    args = ap.parse_args(argv)
    with open(args.log) as f:
        calls, steps, seconds = parse(f)
    if not calls:
        print(f"error: no oneDNN convolution/matmul calls in {args.log} (was ONEDNN_VERBOSE=1 set?)")
        return 2
    steps = steps or 1
    dtypes = sorted({c.dtype for c in calls})
    from pga_tf.tools import bench  # the bench's own peak measurement, so the fractions compare

    peaks = {dt: bench.matmul_peak(2048, dtype=dt) for dt in dtypes}
    rows = []
    for call, n in calls.items():
        ms = solo_ms(*op_for(call), args.warmup, args.reps)
        rows.append((call, n / steps, ms, summary.flops(call.kind, call.problem) / 1e9))
    rows.sort(key=lambda r: -r[1] * r[2])
    kernel_ms = sum(n * ms for _, n, ms, _ in rows)
    gflop = sum(n * g for _, n, _, g in rows)
    peak = peaks[dtypes[0]] if len(dtypes) == 1 else peaks.get("bfloat16", max(peaks.values()))
    print("matmul peak (2048^3): " + ", ".join(f"{dt} {p:.1f} GFLOP/s" for dt, p in peaks.items()))
    print(f"per step: {gflop:.2f} GFLOP in {len(rows)} distinct problems")
    print(f"{'calls/step':>10} {'solo ms':>8} {'ms/step':>8} {'GFLOP/s':>8} {'of peak':>7}  problem")
    for call, n, ms, g in rows:
        print(
            f"{n:10.1f} {ms:8.3f} {n * ms:8.2f} {g / ms * 1e3:8.1f} {g / ms * 1e3 / peaks[call.dtype]:7.2f}  "
            f"{call.kind} {call.prop} {call.dtype} {call.problem}"
        )
    print(
        f"kernel time {kernel_ms:.1f} ms/step: {gflop / kernel_ms * 1e3:.1f} GFLOP/s, "
        f"kernel ceiling {gflop / kernel_ms * 1e3 / peak:.2f} of the matmul peak"
    )
    if seconds:
        step_ms = 1e3 * seconds / steps
        print(
            f"measured step {step_ms:.1f} ms: {gflop / step_ms * 1e3:.1f} GFLOP/s, "
            f"{gflop / step_ms * 1e3 / peak:.2f} of the matmul peak "
            f"({kernel_ms / step_ms:.2f} of the step is kernel time)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
