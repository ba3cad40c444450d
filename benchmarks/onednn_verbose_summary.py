#!/usr/bin/env python3
"""Which oneDNN kernel ran each convolution/matmul, and for how long: a summary of ONEDNN_VERBOSE.

    ONEDNN_VERBOSE=1 python benchmarks/profile_step.py --method=lpga --precision=mixed_bfloat16 \
        2> /dev/null | python benchmarks/onednn_verbose_summary.py

TensorFlow and PyTorch both print one `onednn_verbose,...,exec,cpu,<kind>,<implementation>,...,
<problem>,<ms>` line per primitive call. The implementation names the ISA the kernel was built
for (`avx512_core`, `avx512_core_bf16`, `avx512_core_amx`, ...), which is what decides whether a
16-bit call is fast. Lines are grouped by (kind, implementation, data types, problem), with the
calls and total milliseconds of each; the table is sorted by total time. Standard library only.
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


def main() -> int:
    rows = summarise(profiled(sys.stdin))
    grand = sum(r[5] for r in rows) or 1.0
    by_impl: collections.Counter = collections.Counter()
    for kind, impl, _, _, _, ms in rows:
        by_impl[(kind, impl)] += ms
    print(f"total {grand:.1f} ms in oneDNN primitives")
    print("by kernel:")
    for (kind, impl), ms in by_impl.most_common():
        print(f"  {ms:9.1f} ms {100 * ms / grand:5.1f}%  {kind} {impl}")
    print("by call (top 25):")
    for kind, impl, dtypes, problem, n, ms in rows[:25]:
        print(f"  {ms:9.1f} ms {n:5d} calls {ms / n:7.3f} ms/call  {kind} {impl} [{dtypes}] {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
