"""What a 16-bit policy does to LPGA's log-det estimate, measured on a run's weights.

    python -m pga_tf.tools.log_det_precision --run_dir=runs/lpga_fashion_mnist_conv_mnist --json=out.json

LPGA's decoder loss estimates log|det J_h(mu)| from one direction u per example, by a finite
difference or forward mode (docs/methods.md, "The log-det estimator"); under a 16-bit policy the
finite difference's two passes each round far more than their difference can afford. This
loads one checkpoint into nets built under each policy (same float32 weights), and for test
images' codes mu reports per policy and estimator:

* ``error_vs_float32``: mean |estimate - the same estimator in float32| with the same u, in nats
  of log|det J| (what the policy costs);
* ``error_vs_float32_jvp``: mean |estimate - float32 forward mode| with the same u: the error in
  (d/2) log ||J u||^2 itself, float32's finite difference included;
* ``mean_error_vs_exact``: mean (estimate - exact log|det J_h(mu)|), the exact value from a
  float32 batch Jacobian and a float64 slogdet (pga_tf/evaluation/likelihood.py); the estimator's bias
  plus the policy's error.

Both in the training step's mode (BN with batch statistics, as the loss sees it) when the run has
BN, which the MNIST settings do not.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from pga_tf import cli, config, data, jsonfile, runs  # no TensorFlow: the flags and the run are checked before it loads


def parse_args(argv: list[str]) -> argparse.Namespace:
    """The flags, with the run's config.json as `cfg`; a mistake in either (or a run whose test
    images are missing) ends in one `error:` line, before TensorFlow loads."""
    p = cli.ArgumentParser(
        prog=cli.program("python -m pga_tf.tools.log_det_precision"), description=__doc__.split("\n")[0]
    )
    p.add_argument("--run_dir", required=True, help="an LPGA run (config.json, checkpoints/)")
    p.add_argument("--examples", type=int, default=256, help="test images whose codes are used")
    p.add_argument("--seed", type=int, default=0, help="seed of the directions u")
    p.add_argument("--json", default="", help="write the table here")
    args = p.parse_args(argv)
    problem = args.json and config.output_path_problem("json", args.json)
    if problem:
        p.error(problem)
    try:
        args.cfg = runs.read_config(args.run_dir)
        data.check(args.cfg.dataset, "test", args.cfg.data_dir or None)
    except (runs.RunError, data.DataError) as e:
        cli.fail(str(e))
    return args


if __name__ == "__main__":
    parse_args(sys.argv[1:])  # main parses again, once TensorFlow has loaded

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from pga_tf import config as config_lib  # noqa: E402
from pga_tf.config import PRECISIONS  # noqa: E402
from pga_tf.evaluation import likelihood  # noqa: E402
from pga_tf.methods import objectives  # noqa: E402
from pga_tf.methods import parts as step  # noqa: E402
from pga_tf.nets import models  # noqa: E402

ESTIMATORS = config_lib.LOG_DETS


def nets_under(policy: str, cfg: config_lib.Config, image_shape: tuple, weights: list) -> tuple:
    """(encoder, decoder) built under Keras dtype policy `policy`, holding `weights` (float32)."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        encoder, decoder = models.build_models(
            cfg.model, cfg.z_dim, image_shape[-1], use_bn=cfg.use_bn, variational=cfg.variational
        )
    finally:
        keras.mixed_precision.set_global_policy(previous)
    for v, w in zip(encoder.weights + decoder.weights, weights):
        v.assign(w)
    return encoder, decoder


def directional_log_dets(
    encoder: Callable, decoder: Callable, mu: tf.Tensor, u: tf.Tensor, estimator: str, variational: bool = False
) -> np.ndarray:
    """(d/2) log ||J_h(mu) u||^2 per row, by the training step's finite difference or by forward
    mode ([N, d] mu and unit u -> [N] float64)."""

    def h(z):
        out = encoder(decoder(z, training=False), training=False)
        return out[0] if variational else out

    if estimator == "jvp":
        _, _, jvp = step.h_jvp(encoder, decoder, mu, u, training=False)
        return objectives.directional_log_det(jvp).numpy().astype(np.float64)
    delta = objectives.lpga_direction(u)  # u at the step's norm, 1e-2 sqrt(d)
    return objectives.log_det_jacobian(h(mu), h(mu + delta), delta).numpy().astype(np.float64)


def measure(
    cfg: config_lib.Config, image_shape: tuple, weights: list, images: np.ndarray, seed: int = 0, precisions=PRECISIONS
) -> dict:
    """Per precision and estimator: error vs float32 and mean error vs the exact log-det (nats).

    Args:
      cfg: the run's Config (model, z_dim, BN, variational).
      image_shape: (H, W, C).
      weights: every variable of encoder.weights + decoder.weights, float32 numpy.
      images: [N, H, W, C] in [-1, 1]; their codes under the float32 nets are the points.
    Returns:
      {"exact_mean": ..., "rows": [{precision, estimator, error_vs_float32,
      mean_error_vs_exact, ...}]}.
    """
    enc32, dec32 = nets_under("float32", cfg, image_shape, weights)
    latent = likelihood.LatentMap(enc32, dec32, cfg.variational)
    mu, _ = latent.encode(images)
    exact = likelihood.exact_log_det(latent, mu.numpy())
    noise = tf.constant(np.random.default_rng(seed).standard_normal(mu.shape), tf.float32)
    u = objectives.lpga_unit_direction(noise)
    estimates = {}
    for precision in precisions:
        nets = (enc32, dec32) if precision == "float32" else nets_under(precision, cfg, image_shape, weights)
        for estimator in ESTIMATORS:
            estimates[precision, estimator] = directional_log_dets(*nets, mu, u, estimator, cfg.variational)
    rows = []
    exact_directional = estimates.get(("float32", "jvp"), np.full_like(exact, np.nan))
    for (precision, estimator), value in estimates.items():
        reference = estimates["float32", estimator] if "float32" in precisions else value
        rows.append(
            {
                "precision": precision,
                "estimator": estimator,
                "error_vs_float32": float(np.mean(np.abs(value - reference))),
                "error_vs_float32_jvp": float(np.mean(np.abs(value - exact_directional))),
                "mean_error_vs_exact": float(np.mean(value - exact)),
                "mean_abs_error_vs_exact": float(np.mean(np.abs(value - exact))),
                "non_finite": int(np.sum(~np.isfinite(value))),
            }
        )
    return {"examples": int(len(exact)), "z_dim": int(mu.shape[1]), "exact_mean": float(np.mean(exact)), "rows": rows}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run = runs.load(args.run_dir)
    except runs.RunError as e:
        cli.fail(str(e))
    cfg = run.cfg
    weights = [v.numpy() for v in run.encoder.weights + run.decoder.weights]
    images = data.fixed_batch(cfg.dataset, args.examples, "test", cfg.data_dir or None)
    result = measure(cfg, run.image_shape, weights, images, args.seed)
    result.update(run_dir=args.run_dir, checkpoint=run.checkpoint)
    print(
        f"{result['examples']} test codes, z_dim {result['z_dim']}, exact log|det J_h| mean "
        f"{result['exact_mean']:.3f} nats"
    )
    print(
        f"{'precision':16s} {'estimator':18s} {'|err| vs float32':>17s} "
        f"{'|err| vs f32 jvp':>17s} {'mean err vs exact':>18s}"
    )
    for r in result["rows"]:
        print(
            f"{r['precision']:16s} {r['estimator']:18s} {r['error_vs_float32']:17.4f} "
            f"{r['error_vs_float32_jvp']:17.4f} "
            f"{r['mean_error_vs_exact']:18.4f}" + (f"  ({r['non_finite']} non-finite)" if r["non_finite"] else "")
        )
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)  # as parse_args allowed
        jsonfile.write(args.json, result, indent=2, allow_nan=True)  # a diverged policy's error is NaN
    return result


if __name__ == "__main__":
    main()
