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

The sum over the step's calls of those solo times, less the cost of calling an empty op (a
`tf.function` call and `.numpy()`, measured the same way), is the step's **kernel time**: what
the step would take doing nothing but its convolutions and matmuls, one after another, each at
its speed alone. Its FLOPs over that time, against a large square matmul's rate in the same run
(measured as `python -m pga_tf.tools.bench` measures it), is the **kernel ceiling**. It is an
estimate, not a strict bound: the step runs independent ops at the same time (TensorFlow's
inter-op threads), which helps where one op alone does not fill the cores, as the smallest ones
do not. The measured step, from the log's `== profile end` line, is set against it.

Each call is replayed in its logged layout: a matmul whose source or weights are stored
transposed (layout tag `ba`) is replayed with the same operand transposed (`adj_x`/`adj_y`), on
BatchMatMulV2 for oneDNN's `matmul` and MatMul for its `gemm_api`, the ops TensorFlow sends there.

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


class Call(collections.namedtuple("Call", "kind prop problem dtype layout bias", defaults=("", False))):
    """One distinct primitive call: kind (convolution, matmul, gemm_api, inner_product),
    propagation (forward_training, backward_data, backward_weights; '' for matmuls), problem,
    source data type, for matmuls which operands are stored transposed ("", "a", "b" or "ab"),
    and whether an inner product adds a bias."""


def _transposed(tag: str) -> bool:
    # A layout tag lists the dimensions outermost first: "ab" row-major, "ba" (or "acb" for a
    # batch) with its last two swapped.
    return len(tag) >= 2 and tag[-2:] == "".join(sorted(tag[-2:]))[::-1]


def parse(lines) -> tuple[collections.Counter, int | None, float | None]:
    """(Counter of Call -> calls, profiled steps, profiled seconds) from a profile_step.py log;
    steps and seconds are None without its `== profile end` line."""
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
        kind, problem = row[0], row[3]
        fields = line.split(",")
        at = fields.index("exec")
        prop = fields[at + 4] if kind in ("convolution", "inner_product") else ""
        mem = summary.memories(",".join(fields[at + 4 : -2]))
        dtype = _DTYPE.get(mem.get("src", ("f32", ""))[0], "float32")
        layout = ""
        if kind in ("matmul", "gemm_api"):
            layout = "a" * _transposed(mem.get("src", ("", ""))[1]) + "b" * _transposed(mem.get("wei", ("", ""))[1])
        bias = kind == "inner_product" and mem.get("bia", ("undef", ""))[0] != "undef"
        calls[Call(kind, prop, problem, dtype, layout, bias)] += 1
    return calls, steps, seconds


def _same_pad(size: int, out: int, kernel: int, stride: int) -> list[int]:
    total = max((out - 1) * stride + kernel - size, 0)
    return [total // 2, total - total // 2]


def op_for(call: Call):
    """(function, args): a tf.function running `call`'s problem once, and its inputs.

    Layouts: convolutions NHWC input [mb, ih, iw, ic], HWIO filter [kh, kw, ic, oc], output
    [mb, oh, ow, oc]; matmuls [..., M, K] x [..., K, N] (each operand stored [..., K, M] or
    [..., N, K] where the call had it transposed); inner products [mb, ic*ih*iw] x [.., oc].
    Raises ValueError for what it does not replay (grouped, dilated or non-2-D convolutions,
    backward inner products).
    """
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def tensor(*shape):
        return tf.cast(tf.constant(rng.standard_normal(shape).astype(np.float32)), call.dtype)

    if call.kind == "convolution":
        d = summary.conv_dims(call.problem)
        if d["g"] != 1 or d["axes"] != 2 or d["dh"] or d["dw"]:
            raise ValueError(f"only plain 2-D convolutions are replayed, not {call.problem}")
        # oneDNN logs the padding before; the one after is what the sizes leave (none when the
        # window never reaches past the input, as in a strided VALID convolution).
        pad_h = [d["ph"], max(0, (d["oh"] - 1) * d["sh"] + d["kh"] - d["ih"] - d["ph"])]
        pad_w = [d["pw"], max(0, (d["ow"] - 1) * d["sw"] + d["kw"] - d["iw"] - d["pw"])]
        strides = [1, d["sh"], d["sw"], 1]
        # Named paddings where they fit: TensorFlow sends EXPLICIT backprops down other paths.
        same = [_same_pad(d["ih"], d["oh"], d["kh"], d["sh"]), _same_pad(d["iw"], d["ow"], d["kw"], d["sw"])]
        same_out = (d["oh"], d["ow"]) == (-(-d["ih"] // d["sh"]), -(-d["iw"] // d["sw"]))
        valid_out = (d["oh"], d["ow"]) == ((d["ih"] - d["kh"]) // d["sh"] + 1, (d["iw"] - d["kw"]) // d["sw"] + 1)
        if same_out and [pad_h, pad_w] == same:
            common = dict(strides=strides, padding="SAME")
        elif valid_out and d["ph"] == d["pw"] == 0:
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
        adj_a, adj_b = "a" in call.layout, "b" in call.layout
        if adj_a:
            a_shape[-2:] = a_shape[-1], a_shape[-2]
        if adj_b:
            b_shape[-2:] = b_shape[-1], b_shape[-2]
        if call.kind == "matmul":
            fn = tf.function(lambda a, b: tf.raw_ops.BatchMatMulV2(x=a, y=b, adj_x=adj_a, adj_y=adj_b))
        else:
            fn = tf.function(lambda a, b: tf.raw_ops.MatMul(a=a, b=b, transpose_a=adj_a, transpose_b=adj_b))
        return fn, (tensor(*a_shape), tensor(*b_shape))
    if call.kind == "inner_product":
        if not call.prop.startswith("forward"):
            raise ValueError(f"only forward inner products are replayed, not {call.prop}")
        d = {k: int(v) for k, v in summary._CONV_DIM.findall(call.problem)}
        k = d["ic"] * d.get("id", 1) * d.get("ih", 1) * d.get("iw", 1)
        x, w = tensor(d["mb"], k), tensor(k, d["oc"])
        if call.bias:
            return tf.function(lambda x, w, b: tf.nn.bias_add(tf.matmul(x, w), b)), (x, w, tensor(d["oc"]))
        return tf.function(lambda x, w: tf.matmul(x, w)), (x, w)
    raise ValueError(f"no op for {call.kind}")


def solo_ms(fn, args, warmup: int, reps: int) -> float:
    """Median milliseconds of `fn(*args).numpy()` over `reps` calls after `warmup` (the call's
    own overhead included; main() subtracts an empty op's)."""
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
    if not steps:
        print(f"error: {args.log} has no '== profile end: ... N steps' line: profile with benchmarks/profile_step.py")
        return 2
    import tensorflow as tf

    from pga_tf.tools import bench  # the bench's own peak measurement, so the fractions compare

    dtypes = sorted({c.dtype for c in calls})
    peaks = {dt: bench.matmul_peak(2048, dtype=dt) for dt in dtypes}
    one = tf.constant(1.0)
    overhead = solo_ms(tf.function(lambda x: tf.identity(x)), (one,), args.warmup, 4 * args.reps)
    rows = []
    for call, n in calls.items():
        ms = max(solo_ms(*op_for(call), args.warmup, args.reps) - overhead, 1e-3)
        rows.append((call, n / steps, ms, summary.flops(call.kind, call.problem) / 1e9))
    rows.sort(key=lambda r: -r[1] * r[2])
    kernel_ms = sum(n * ms for _, n, ms, _ in rows)
    gflop = sum(n * g for _, n, _, g in rows)
    peak = peaks[dtypes[0]] if len(dtypes) == 1 else peaks.get("bfloat16", max(peaks.values()))
    print("matmul peak (2048^3): " + ", ".join(f"{dt} {p:.1f} GFLOP/s" for dt, p in peaks.items()))
    print(f"per step: {gflop:.2f} GFLOP in {len(rows)} distinct problems; an empty op's call {overhead:.3f} ms")
    print(f"{'calls/step':>10} {'solo ms':>8} {'ms/step':>8} {'GFLOP/s':>8} {'of peak':>7}  problem")
    for call, n, ms, g in rows:
        extra = (f" transposed {call.layout}" if call.layout else "") + (" +bias" if call.bias else "")
        print(
            f"{n:10.1f} {ms:8.3f} {n * ms:8.2f} {g / ms * 1e3:8.1f} {g / ms * 1e3 / peaks[call.dtype]:7.2f}  "
            f"{call.kind} {call.prop} {call.dtype} {call.problem}{extra}"
        )
    print(
        f"kernel time {kernel_ms:.1f} ms/step: {gflop / kernel_ms * 1e3:.1f} GFLOP/s, "
        f"kernel ceiling {gflop / kernel_ms * 1e3 / peak:.2f} of the matmul peak"
    )
    step_ms = 1e3 * seconds / steps
    print(
        f"measured step {step_ms:.1f} ms: {gflop / step_ms * 1e3:.1f} GFLOP/s, "
        f"{gflop / step_ms * 1e3 / peak:.2f} of the matmul peak "
        f"(kernel time / step time {kernel_ms / step_ms:.2f})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
