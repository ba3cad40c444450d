#!/usr/bin/env python3
"""torch.profiler over the PyTorch port's training step (benchmarks/pytorch_reference_step.py),
for a side-by-side with benchmarks/profile_step.py's TensorFlow op table.

    /work/torchvenv/bin/python benchmarks/profile_pytorch_step.py --method=lpga --threads=1
"""

from __future__ import annotations

import argparse
import os
import sys

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_reference_step as port  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", default="lpga", choices=sorted(port.METHODS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    spec = port.METHODS[args.method]
    trainer = port.Trainer(args.method, port.init_params(spec["z_dim"], args.method in port.VARIATIONAL, 0))
    images = torch.rand(64, port.CHANNELS, port.HW, port.HW, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for _ in range(args.warmup):
        trainer.step(images)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(args.steps):
            trainer.step(images)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
