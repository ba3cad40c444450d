#!/usr/bin/env python3
"""Dump one plain pga_tf training step (weights, inputs, noise, losses, gradients, updates) to .npz.

Run with the project's venv; `pytorch_reference_step.py --check=FILE` then recomputes the same
step in PyTorch and compares:

    .venv/bin/python benchmarks/dump_tf_step.py --method=lpga --out=/tmp/bench/lpga_step.npz
    /work/torchvenv/bin/python benchmarks/pytorch_reference_step.py --check=/tmp/bench/lpga_step.npz

Everything goes through pga_tf's own code paths, unchanged:

* the configuration is `config.for_method(method)` (what flags/{method}_fashion_mnist.cfg
  resolves to: conv_mnist, batch 64, lr 0.1, the method's coefficients) with `fused=False`, i.e.
  the plain step (`step.method_losses`) that `train.py --nofused` runs;
* models, optimizer and step come from `trainer_lib.Trainer`; its optimizer's iteration counter is
  set to `init_steps` so that every latent term is on (the step after warm-up);
* the weights are the Trainer's Glorot initialisation, with every bias then set to small random
  values (zero biases would leave the bias layouts untested);
* the noise is `step.draw_noise` on a seeded `tf.random.Generator` (the call `replica_step`
  makes), the images uniform in [-1, 1];
* losses and gradients: the tape of `Trainer.replica_step` (per-example losses from
  `Trainer.losses`, their batch mean via `tf.nn.compute_average_loss`, the encoder's gradient
  of the encoder loss and the decoder's of the decoder loss);
* updates: `Trainer.replica_step(images, noise)` run `--update_steps` times (SGD momentum 0.9),
  and the weights after.

Weights and gradients are stored in the Keras layouts under the names pytorch_reference_step.py
uses (enc.conv1.w, ..., dec.dconv2.b).
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pga_tf import config as config_lib
from pga_tf.methods import parts as step_lib  # noqa: E402
from pga_tf.nets import kernels, models
from pga_tf.training import trainer as trainer_lib


def named_variables(trainer: trainer_lib.Trainer) -> dict:
    """name -> Keras variable, for the conv_mnist nets (checked to cover every trainable one)."""
    enc, dec = trainer.encoder, trainer.decoder
    layers = {
        "enc.conv1": enc.blocks[0].layer,
        "enc.conv2": enc.blocks[1].layer,
        "enc.fc": enc.blocks[2].layer,
        "enc.mu": enc.mu,
        "dec.fc1": dec.blocks[0].layer,
        "dec.fc2": dec.blocks[1].layer,
        "dec.dconv1": dec.blocks[3].layer,
        "dec.dconv2": dec.blocks[4].layer,
    }
    if enc.log_var is not None:
        layers["enc.log_var"] = enc.log_var
    out = {}
    for name, layer in layers.items():
        out[name + ".w"], out[name + ".b"] = layer.kernel, layer.bias
    covered = {v.path for v in out.values()}
    every = {v.path for v in enc.trainable_variables + dec.trainable_variables}
    if covered != every:
        raise SystemExit(
            f"variable mapping does not cover the nets: missing {sorted(every - covered)}, "
            f"extra {sorted(covered - every)}"
        )
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", choices=("lpga", "vpga"), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch_size", type=int, default=64)
    ap.add_argument("--update_steps", type=int, default=2)
    ap.add_argument(
        "--fast_kernels",
        choices=("on", "off"),
        default="on",
        help="pga_tf.nets.kernels' formulations (train.py's default: on)",
    )
    args = ap.parse_args(argv)

    kernels.set_enabled(args.fast_kernels == "on")
    keras.utils.set_random_seed(args.seed)  # the Glorot initialisation
    cfg = config_lib.for_method(
        args.method,
        model="conv_mnist",
        dataset="fashion_mnist",
        batch_size=args.batch_size,
        fused=False,
        use_bn=False,
        seed=args.seed,
    )
    shape = (*models.IMAGE_SHAPES[cfg.model], 1)
    trainer = trainer_lib.Trainer(cfg, shape)
    assert not trainer.fused
    variables = named_variables(trainer)
    rng = np.random.default_rng(args.seed)
    for name, v in variables.items():
        if name.endswith(".b"):
            v.assign(v.numpy() + rng.normal(0.0, 0.05, v.shape).astype(np.float32))
    trainer.optimizer.iterations.assign(cfg.init_steps)  # the first step with every latent term on

    images = tf.constant(rng.uniform(-1.0, 1.0, (args.batch_size, *shape)).astype(np.float32))
    noise = step_lib.draw_noise(tf.random.Generator.from_seed(args.seed), args.batch_size, cfg.z_dim)
    coeffs = {k: float(v) for k, v in step_lib.coefficients(cfg, trainer.optimizer.iterations).items()}

    enc_vars, dec_vars = trainer.encoder.trainable_variables, trainer.decoder.trainable_variables

    def mean(per_example):
        return tf.nn.compute_average_loss(per_example, global_batch_size=trainer.global_batch)

    # The gradient computation of Trainer.replica_step (plain step: two tape.gradient calls).
    with tf.GradientTape(persistent=True) as tape:
        out = trainer.losses(images, noise)
        enc_loss, dec_loss = mean(out.encoder), mean(out.decoder)
    assert out.surrogate is None, "expected the plain step"
    grads = dict(
        zip(
            [v.path for v in enc_vars + dec_vars], tape.gradient(enc_loss, enc_vars) + tape.gradient(dec_loss, dec_vars)
        )
    )
    del tape

    dump = {
        "method": np.array(args.method),
        "z_dim": np.array(cfg.z_dim),
        "lr": np.array(cfg.lr),
        "tf_version": np.array(tf.__version__),
        "fast_kernels": np.array(kernels.enabled()),
        "update_steps": np.array(args.update_steps),
        "images": images.numpy(),
        **{f"noise/{k}": getattr(noise, k).numpy() for k in step_lib.Noise._fields},
        **{f"coeff/{k}": np.array(v, np.float32) for k, v in coeffs.items()},
        **{f"w/{n}": v.numpy() for n, v in variables.items()},
        **{f"term/{k}": v.numpy() for k, v in out.terms.items()},
        "loss/encoder": out.encoder.numpy(),
        "loss/decoder": out.decoder.numpy(),
        **{f"grad/{n}": grads[v.path].numpy() for n, v in variables.items()},
    }
    for _ in range(args.update_steps):
        metrics = trainer.replica_step(images, noise)
    dump.update({f"after/{n}": v.numpy() for n, v in variables.items()})
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    np.savez(args.out, **dump)
    print(
        f"{args.method}: encoder loss {float(enc_loss):.6f}, decoder loss {float(dec_loss):.6f}, "
        f"terms {{{', '.join(f'{k}: {float(mean(v)):.6f}' for k, v in out.terms.items())}}}, "
        f"coefficients {coeffs}; after {args.update_steps} steps enc_loss {float(metrics['enc_loss']):.6f}; "
        f"wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
