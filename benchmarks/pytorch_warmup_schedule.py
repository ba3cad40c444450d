#!/usr/bin/env python3
"""Train the PyTorch port's plain step (pytorch_reference_step.py) on Fashion-MNIST with a warm-up.

The collapsing warm-up: LPGA with `--init_steps=5` at lr 0.1 stops on a non-finite loss about 160
steps in. This runs the same schedule (latent coefficients 0 for the first --init_steps steps,
then LPGA's; SGD momentum 0.9, lr 0.1, batch 64, conv_mnist, BN off) through an independent
implementation of the step, in float32 and optionally float64, and prints every --log_every
steps the batch means of the terms plus how many examples' finite difference h(mu + delta) -
h(mu) was exactly zero (whose log is -inf). Needs only torch and numpy (benchmarks/README.md):

    /work/torchvenv/bin/python benchmarks/pytorch_warmup_schedule.py --init_steps=5 --steps=400
    /work/torchvenv/bin/python benchmarks/pytorch_warmup_schedule.py --init_steps=5 --dtype=float64
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pytorch_reference_step as port  # noqa: E402

IDX = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


def load_images(path: str) -> np.ndarray:
    """[N, 1, 28, 28] float32 in [-1, 1] from an MNIST-format IDX file."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, h, w = (int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in (1, 2, 3))
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, h, w)
    return x.astype(np.float32) / 127.5 - 1.0


def zero_differences(p: dict, images: torch.Tensor, noise: port.Noise) -> int:
    """Examples whose h(sg(mu) + delta) - h(sg(mu)) is exactly 0 in every component."""
    with torch.no_grad():
        mu, _ = port.encoder(p, images, False)
        h = lambda z: port.encoder(p, port.decoder(p, z), False)[0]  # noqa: E731
        diff = h(mu + port.lpga_direction(noise.direction)) - h(mu)
        return int((diff == 0).all(dim=1).sum())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--init_steps", type=int, default=5)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--log_every", type=int, default=10)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--images", default=IDX)
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    dtype = getattr(torch, args.dtype)
    data = load_images(args.images)
    rng = np.random.default_rng(args.seed)
    params = {k: v.detach().to(dtype).requires_grad_(True) for k, v in port.init_params(12, False, args.seed).items()}
    on = {k: port.METHODS["lpga"][k] for k in ("zn_rec", "zh_rec", "nll", "vrec", "vkld")}
    trainer = port.Trainer("lpga", params, lr=args.lr, coefficients={k: 0.0 for k in on})
    log, first_bad = [], None
    order = rng.permutation(len(data))
    for step in range(args.steps):
        if step == args.init_steps:
            trainer.coefficients = on
        start = (step * args.batch_size) % (len(data) - args.batch_size)
        images = torch.from_numpy(data[order[start : start + args.batch_size]]).to(dtype)
        noise = port.Noise(*(torch.randn(args.batch_size, 12, dtype=dtype) for _ in range(3)))
        zeros = zero_differences(params, images, noise)
        enc, dec, terms = trainer.step(images, noise)
        row = {
            "step": step + 1,
            "zero_differences": zeros,
            **{k: float(v.detach().mean()) for k, v in terms.items()},
            "min_nll_dec": float(terms["nll_dec"].detach().min()),
        }
        finite = all(math.isfinite(v) for k, v in row.items() if k != "step")
        if (step + 1) % args.log_every == 0 or not finite:
            print(json.dumps(row), flush=True)
            log.append(row)
        if not finite:
            first_bad = step + 1
            break
    result = {
        "dtype": args.dtype,
        "init_steps": args.init_steps,
        "lr": args.lr,
        "first_non_finite_step": first_bad,
        "log": log,
    }
    print(f"{args.dtype}: first non-finite step {first_bad}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
