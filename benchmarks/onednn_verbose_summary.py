#!/usr/bin/env python3
"""Which oneDNN kernel ran each convolution/matmul, and for how long: a summary of ONEDNN_VERBOSE.

    ONEDNN_VERBOSE=1 python benchmarks/profile_step.py --method=lpga --precision=mixed_bfloat16 \
        2> /dev/null | python benchmarks/onednn_verbose_summary.py

TensorFlow and PyTorch both print one `onednn_verbose,...,exec,cpu,<kind>,<implementation>,...,
<problem>,<ms>` line per primitive call. The implementation names the ISA the kernel was built
for (`avx512_core`, `avx512_core_bf16`, `avx512_core_amx`, ...), which is what decides whether a
16-bit call is fast. Lines are grouped by (kind, implementation, data types, problem), with the
calls and total milliseconds of each; the table is sorted by total time. Standard library only.

Each convolution, matmul, gemm and inner-product problem is also counted in floating-point
operations (2 per multiply-add, the convention of the bench's executed-FLOP figures), so every
kernel gets its achieved GFLOP/s; `--peak` (GFLOP/s of a large matmul in the same run, as
`python -m pga_tf.tools.bench` prints it) turns that into a fraction of the peak. A kernel far
below the peak is where the step loses; the FLOP-weighted rate of all kernels bounds what the step
can reach without faster kernels.
"""

from __future__ import annotations

import collections
import re
import sys

# Each memory argument's data type and layout tag: "src:bf16::blocked:acdb::f0" in primitive lines,
# "src_f32::blocked:ab:f0" in gemm_api lines -> ("src", "bf16", "acdb").
_MEM = re.compile(r"\b((?:diff_)?(?:src|wei|dst|bia))[_:](\w+?):\w*:\w+:(\w*)")


def memories(line: str) -> dict[str, tuple[str, str]]:
    """{argument: (data type, layout tag)} of an exec line, e.g. {"src": ("f32", "ab")}."""
    return {arg: (dtype, tag) for arg, dtype, tag in _MEM.findall(line)}


def parse(line: str) -> tuple[str, str, str, str, float] | None:
    """(kind, implementation, dtypes, problem, ms) of one exec line, or None."""
    if "onednn_verbose" not in line or ",exec," not in line:
        return None
    fields = line.rstrip("\n").split(",")
    try:
        at = fields.index("exec")
        kind, impl = fields[at + 2], fields[at + 3]
        ms = float(fields[-1])
    except (ValueError, IndexError):
        return None
    dtypes = " ".join(f"{a}:{t}" for a, (t, _) in memories(",".join(fields[at + 4 : -2])).items())
    return kind, impl, dtypes, fields[-2], ms


_CONV_DIM = re.compile(r"([a-z]+)(\d+)")


def conv_dims(problem: str) -> dict[str, int]:
    """The sizes of a convolution problem, every spatial axis filled in.

    oneDNN names them `[g<G>]mb<N>_ic<C>oc<K>_[id..od..kd..sd..dd..pd.._]ih..oh..kh..sh..dh..ph.._iw..ow..kw..`
    and leaves out the axes equal to the one before (a square 2-D problem prints only h, a cubic 3-D
    one only d); a 1-D problem has w only. Keys: g, mb, ic, oc and i/o/k/s/d/p + d/h/w.
    """
    dims: dict[str, int] = {}
    for key, value in _CONV_DIM.findall(problem):
        dims.setdefault(key, int(value))
    axes = "dhw"["dhw".index(next(a for a in "dhw" if f"o{a}" in dims)) :]
    for prev, axis in zip(axes, axes[1:]):
        for kind in "iokspd":
            dims.setdefault(f"{kind}{axis}", dims.get(f"{kind}{prev}", 0 if kind in "pd" else 1))
    dims.setdefault("g", 1)
    dims["axes"] = len(axes)
    return dims


def flops(kind: str, problem: str) -> float:
    """Floating-point operations of one call (2 per multiply-add); 0 for other primitives and
    for a problem this does not parse.

    convolution (conv_dims): 2 N (C/G) K prod(output sizes) prod(kernel sizes), the same for
    forward, backward data and backward weights. matmul/gemm_api `[B..x]MxK:[B..x]KxN`:
    2 B M K N, B the broadcast batch. inner_product `mb<N>ic<C>[id<D>][ih<H>][iw<W>]oc<K>`:
    2 N C D H W K.
    """
    try:
        if kind == "convolution":
            d = conv_dims(problem)
            axes = "dhw"[3 - d["axes"] :]
            out = kernel = 1
            for a in axes:
                out, kernel = out * d[f"o{a}"], kernel * d[f"k{a}"]
            return 2.0 * d["mb"] * (d["ic"] // d["g"]) * d["oc"] * out * kernel
        if kind in ("matmul", "gemm_api"):
            a, b = problem.split(":")[:2]
            a_dims, b_dims = [int(x) for x in a.split("x")], [int(x) for x in b.split("x")]
            a_batch, b_batch = a_dims[:-2], b_dims[:-2]
            width = max(len(a_batch), len(b_batch))
            a_batch, b_batch = [1] * (width - len(a_batch)) + a_batch, [1] * (width - len(b_batch)) + b_batch
            batch = 1
            for x, y in zip(a_batch, b_batch):
                batch *= max(x, y)
            return 2.0 * batch * a_dims[-2] * a_dims[-1] * b_dims[-1]
        if kind == "inner_product":
            d = {key: int(value) for key, value in _CONV_DIM.findall(problem)}
            spatial = d.get("id", 1) * d.get("ih", 1) * d.get("iw", 1)
            return 2.0 * d["mb"] * d["ic"] * spatial * d["oc"]
    except (KeyError, ValueError, IndexError, StopIteration):
        return 0.0
    return 0.0


def summarise(lines) -> list[tuple[str, str, str, str, int, float]]:
    """(kind, impl, dtypes, problem, calls, total ms), by total ms, largest first."""
    calls: collections.Counter = collections.Counter()
    total: collections.Counter = collections.Counter()
    for line in lines:
        row = parse(line)
        if row:
            calls[row[:4]] += 1
            total[row[:4]] += row[4]
    return sorted(((*k, calls[k], total[k]) for k in calls), key=lambda r: -r[5])


def profiled(lines):
    """The lines between profile_step.py's `== profile start` and `== profile end` markers, or
    every line when there is no start marker (a log from another program)."""
    lines = list(lines)
    starts = [i for i, line in enumerate(lines) if line.startswith("== profile start")]
    if not starts:
        return lines
    body = lines[starts[-1] + 1 :]
    ends = [i for i, line in enumerate(body) if line.startswith("== profile end")]
    return body[: ends[0]] if ends else body


def _rate(gflop: float, ms: float, peak: float | None) -> str:
    if not gflop:
        return ""
    rate = gflop / (ms / 1e3) if ms else float("inf")
    return f"{rate:7.1f} GFLOP/s" + (f" {rate / peak:5.2f} of peak" if peak else "")


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--peak", type=float, default=None, help="GFLOP/s of a large matmul, same run")
    ap.add_argument("--top", type=int, default=25)
    args = ap.parse_args(argv)
    rows = summarise(profiled(sys.stdin))
    grand = sum(r[5] for r in rows) or 1.0
    by_impl: collections.Counter = collections.Counter()
    gflop_by_impl: collections.Counter = collections.Counter()
    for kind, impl, _, problem, n, ms in rows:
        by_impl[(kind, impl)] += ms
        gflop_by_impl[(kind, impl)] += n * flops(kind, problem) / 1e9
    gflop = sum(gflop_by_impl.values())
    print(f"total {grand:.1f} ms in oneDNN primitives, {gflop:.2f} GFLOP: {_rate(gflop, grand, args.peak)}")
    print("by kernel:")
    for (kind, impl), ms in by_impl.most_common():
        rate = _rate(gflop_by_impl[(kind, impl)], ms, args.peak)
        print(f"  {ms:9.1f} ms {100 * ms / grand:5.1f}%  {rate}  {kind} {impl}")
    print(f"by call (top {args.top}):")
    for kind, impl, dtypes, problem, n, ms in rows[: args.top]:
        rate = _rate(n * flops(kind, problem) / 1e9, ms, args.peak)
        print(f"  {ms:9.1f} ms {n:5d} calls {ms / n:7.3f} ms/call {rate}  {kind} {impl} [{dtypes}] {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
