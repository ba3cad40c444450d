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

# The data type of each memory argument, e.g. "src:bf16::blocked:acdb::f0" -> "src:bf16".
_MEM = re.compile(r"\b(src|wei|dst|bia|diff_src|diff_wei|diff_dst|diff_bia)_?\w*:(\w+):")


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
    dtypes = " ".join(f"{a}:{t}" for a, t in _MEM.findall(",".join(fields[at + 4 : -2])))
    return kind, impl, dtypes, fields[-2], ms


_CONV_DIM = re.compile(r"([a-z]+)(\d+)")


def flops(kind: str, problem: str) -> float:
    """Floating-point operations of one call (2 per multiply-add), or 0 for other primitives.

    convolution `[g<G>]mb<N>_ic<C>oc<K>_ih<H>oh<P>kh<R>..._iw<W>ow<Q>kw<S>...` (oneDNN omits the
    w dimensions of a square problem): 2 N (C/G) K P Q R S, the same for forward, backward data
    and backward weights. matmul/gemm_api `[B x]MxK:[B x]KxN`: 2 B M K N. inner_product
    `mb<N>ic<C>[ih<H>iw<W>]oc<K>`: 2 N C H W K.
    """
    if kind == "convolution":
        dims: dict[str, int] = {}
        for key, value in _CONV_DIM.findall(problem):
            dims.setdefault(key, int(value))
        for h, w in (("ih", "iw"), ("oh", "ow"), ("kh", "kw")):
            dims.setdefault(w, dims.get(h, 1))
        groups = dims.get("g", 1)
        return 2.0 * dims["mb"] * dims["ic"] // groups * dims["oc"] * dims["oh"] * dims["ow"] * dims["kh"] * dims["kw"]
    if kind in ("matmul", "gemm_api"):
        a, b = problem.split(":")[:2]
        a_dims, b_dims = [int(d) for d in a.split("x")], [int(d) for d in b.split("x")]
        batch = 1
        for d in a_dims[:-2]:
            batch *= d
        return 2.0 * batch * a_dims[-2] * a_dims[-1] * b_dims[-1]
    if kind == "inner_product":
        dims = {key: int(value) for key, value in _CONV_DIM.findall(problem)}
        return 2.0 * dims["mb"] * dims["ic"] * dims.get("ih", 1) * dims.get("iw", 1) * dims["oc"]
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
