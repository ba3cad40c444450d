"""The machine a benchmark ran on, read without TensorFlow.

Speed figures from two CPUs are not comparable, so every benchmark record names its CPU. The
PyTorch baseline in benchmarks/ imports this module too (it has no TensorFlow), so both records
name the CPU the same way.
"""

from __future__ import annotations

import platform

CPUINFO = "/proc/cpuinfo"
# The vector and matrix extensions that decide float32/bfloat16/float16 matmul speed: AVX512-BF16
# and AMX run bfloat16 natively; without them TensorFlow emulates 16-bit compute in float32.
PRECISION_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_fp16")


def cpuinfo(path: str = CPUINFO) -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo ({} where there is none)."""
    fields: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    if fields:
                        break  # the first processor's block is enough
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model(path: str = CPUINFO) -> str:
    """The CPU's name, family/model and widest vector units, e.g. 'AMD EPYC (family 25, model 17, avx2, avx512f)'.

    A hypervisor may show just the vendor's name ("AMD EPYC"); the family/model numbers and the
    vector and matrix extensions still tell CPU generations apart.
    """
    info = cpuinfo(path)
    name = info.get("model name") or platform.processor() or platform.machine()
    details = [f"family {info['cpu family']}, model {info['model']}"] if "cpu family" in info else []
    flags = set(info.get("flags", "").split())
    details += [f for f in ("avx2", "avx512f", "amx_tile") if f in flags]
    return f"{name} ({', '.join(details)})" if details else name


def precision_flags(path: str = CPUINFO) -> list[str]:
    """Which of PRECISION_FLAGS the first processor has, e.g. ['avx2', 'avx512f', 'avx512_bf16']."""
    flags = set(cpuinfo(path).get("flags", "").split())
    return [f for f in PRECISION_FLAGS if f in flags]
