#!/usr/bin/env python3
"""Profile train.py's training step: oneDNN's kernel per call and/or TensorFlow's op times.

    ONEDNN_VERBOSE=1 python benchmarks/profile_step.py --method=lpga --precision=mixed_bfloat16 \
        | python benchmarks/onednn_verbose_summary.py
    python benchmarks/profile_step.py --method=vpga --tf_profile=/tmp/prof_vpga

The step is the one the bench times (pga_tf.training.trainer.Trainer, the fused step and fast kernels
by default) on one fixed batch. `--warmup` steps run first (tracing and oneDNN's kernel set-up,
which would otherwise dominate the log); then a `== profile start` line marks where the profiled
`--steps` begin, which onednn_verbose_summary.py reads from. `--tf_profile` wraps those steps in
`tf.profiler.experimental` and prints TensorFlow's per-op self times where this TensorFlow build
can convert its trace (else the trace is left in the directory for TensorBoard's profile plugin).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _op_table(logdir: str, top: int) -> list[str]:
    """TensorFlow's per-op self times from the trace, or [] where the converter is missing."""
    import glob

    try:
        from tensorflow.python.profiler.internal import _pywrap_profiler_plugin as plugin
    except ImportError:
        return []
    paths = glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb"))
    if not paths:
        return []
    raw, ok = plugin.xspace_to_tools_data(paths, "framework_op_stats", {})
    if not ok:
        return []
    table = json.loads(raw)
    table = table[0] if isinstance(table, list) else table
    cols = [c["id"] for c in table["cols"]]
    rows = [dict(zip(cols, [cell.get("v") for cell in r["c"]])) for r in table["rows"]]
    rows = [r for r in rows if r.get("type") != "IDLE"]
    by_type: dict[str, float] = {}
    for r in rows:
        by_type[r.get("type")] = by_type.get(r.get("type"), 0.0) + float(r.get("total_self_time") or 0)
    grand = sum(by_type.values()) or 1.0
    out = [f"TensorFlow op types, self time over the profiled steps (total {grand / 1e3:.1f} ms, idle excluded):"]
    for kind, t in sorted(by_type.items(), key=lambda kv: -kv[1])[:top]:
        out.append(f"  {t / 1e3:9.1f} ms {100 * t / grand:5.1f}%  {kind}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="lpga")
    ap.add_argument("--precision", default="float32")
    ap.add_argument("--log_det", default=None)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--fused", choices=("on", "off"), default="on")
    ap.add_argument("--fast_kernels", choices=("on", "off"), default="on")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--tf_profile", default="", help="a log directory: profile with tf.profiler")
    ap.add_argument("--top", type=int, default=30)
    args = ap.parse_args(argv)

    import numpy as np
    import tensorflow as tf

    from pga_tf import config as config_lib
    from pga_tf.nets import kernels
    from pga_tf.training import trainer as trainer_lib

    kernels.set_enabled(args.fast_kernels == "on")
    cfg = config_lib.for_method(
        args.method,
        batch_size=args.batch_size,
        precision=args.precision,
        fused=args.fused == "on",
        steps_per_loop=1,
        log_det=config_lib.resolve_log_det(args.method, args.precision, args.log_det),
    )
    trainer = trainer_lib.Trainer(cfg, (28, 28, 1))
    batch = np.random.default_rng(0).uniform(-1, 1, (args.batch_size, 28, 28, 1)).astype(np.float32)
    it = iter(tf.data.Dataset.from_tensors(batch).repeat())
    trainer.train_steps(it, args.warmup)
    print("== profile start", flush=True)
    if args.tf_profile:
        tf.profiler.experimental.start(args.tf_profile)
    t0 = time.perf_counter()
    trainer.train_steps(it, args.steps)
    seconds = time.perf_counter() - t0
    if args.tf_profile:
        tf.profiler.experimental.stop()
    print(
        f"== profile end: {args.method} {cfg.precision} log_det {cfg.log_det}, {args.steps} steps "
        f"in {seconds:.3f} s ({1e3 * seconds / args.steps:.1f} ms/step)",
        flush=True,
    )
    if args.tf_profile:
        lines = _op_table(args.tf_profile, args.top)
        print(
            "\n".join(lines)
            if lines
            else f"trace written to {args.tf_profile} (no converter "
            "in this TensorFlow build: open it with TensorBoard's profile plugin)",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
