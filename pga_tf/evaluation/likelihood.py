"""Exact latent likelihood of LPGA/LVPGA, beside the training loss's finite-difference estimate.

With h = E o D, LPGA's training loss is a negative log-likelihood of the code z = E(x) under the
density h pushes N(0, I) to (by change of variables, using h(z) ~ z near the data):

    NLL(z) = -log N(z; 0, I) + log|det J_h(z)|

The training loss estimates log|det J_h| from one random direction per example
(objectives.log_det_jacobian; docs/methods.md, "The log-det estimator"). Here the Jacobian is
computed exactly (tf.GradientTape batch_jacobian, then slogdet in float64), so a report shows
both and how far apart they are.
For LVPGA the code is the posterior mean mu. Everything runs in inference mode (BN with its
moving statistics).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import tensorflow as tf

from pga_tf import methods
from pga_tf.methods import objectives

# batch_jacobian vectorises the z_dim backward passes: keep chunk * z_dim rows per call below this.
JACOBIAN_ROWS = 1024


class LatentMap:
    """h = E o D in inference mode, with a compiled batch Jacobian."""

    def __init__(self, encoder: Callable, decoder: Callable, variational: bool):
        self.encoder, self.decoder, self.variational = encoder, decoder, variational
        self._h = tf.function(self.h, reduce_retracing=True)
        self._jacobian = tf.function(self.jacobian, reduce_retracing=True)

    def encode(self, images) -> tuple[tf.Tensor, tf.Tensor | None]:
        """(mu, log_var) of the encoder; log_var is None for a deterministic encoder."""
        out = self.encoder(tf.convert_to_tensor(images, tf.float32), training=False)
        return (out[0], out[1]) if self.variational else (out, None)

    def h(self, z: tf.Tensor) -> tf.Tensor:
        out = self.encoder(self.decoder(z, training=False), training=False)
        return out[0] if self.variational else out

    def jacobian(self, z: tf.Tensor) -> tf.Tensor:
        """[N, d, d] with [n, i, j] = d h_i / d z_j at z[n]."""
        with tf.GradientTape() as tape:
            tape.watch(z)
            out = self.h(z)
        return tape.batch_jacobian(out, z)

    def __call__(self, z) -> tf.Tensor:
        return self._h(tf.convert_to_tensor(z, tf.float32))


def exact_log_det(latent_map: LatentMap, z: np.ndarray, chunk: int | None = None) -> np.ndarray:
    """log|det J_h(z)| per row of z, exactly: batch_jacobian, then slogdet in float64.

    Args:
      latent_map: the map h.
      z: [N, d] codes.
      chunk: rows per Jacobian call (default: JACOBIAN_ROWS // d, at least 1).
    Returns:
      [N] float64.
    """
    z = np.asarray(z, np.float32)
    d = z.shape[1]
    chunk = chunk or max(1, JACOBIAN_ROWS // d)
    out = []
    for i in range(0, len(z), chunk):
        jac = latent_map._jacobian(tf.constant(z[i : i + chunk]))
        _, logabsdet = tf.linalg.slogdet(tf.cast(jac, tf.float64))
        out.append(logabsdet.numpy())
    return np.concatenate(out) if out else np.zeros([0])


Perturbation = Callable[[tf.Tensor, "tf.Tensor | None"], tf.Tensor]


def directions(noise: np.ndarray, perturbation: Perturbation, log_var: np.ndarray | None = None) -> tf.Tensor:
    """A training step's finite-difference perturbation (a method record's `likelihood` value,
    e.g. LPGA's of norm 1e-2 sqrt(d), LVPGA's noise * (sigma + 1e-2)) for noise ~ N(0, I) [N, d]."""
    lv = None if log_var is None else tf.constant(log_var, tf.float32)
    return perturbation(tf.constant(noise, tf.float32), lv)


def fd_log_det(
    latent_map: LatentMap,
    z: np.ndarray,
    noise: np.ndarray,
    perturbation: Perturbation,
    log_var: np.ndarray | None = None,
) -> np.ndarray:
    """The training loss's estimate (objectives.log_det_jacobian) of log|det J_h(z)|, in inference
    mode, for each of `draws` directions.

    Args:
      z: [N, d] codes.
      noise: [draws, N, d] standard normal draws (one direction per draw and row).
      perturbation: the training step's perturbation (Method.likelihood's values, resolved).
      log_var: [N, d] posterior log-variances (for a perturbation of the posterior's scale).
    Returns:
      [draws, N] float64.
    """
    z_t = tf.constant(z, tf.float32)
    h_z = latent_map(z_t)
    out = []
    for draw in noise:
        delta = directions(draw, perturbation, log_var)
        out.append(objectives.log_det_jacobian(h_z, latent_map(z_t + delta), delta).numpy())
    return np.asarray(out, np.float64)


def prior_nll(z: np.ndarray) -> np.ndarray:
    """-log N(z; 0, I) in nats per row (objectives.prior_nll is this divided by d)."""
    z = tf.constant(z, tf.float32)
    return -objectives.standard_normal(z.shape[-1]).log_prob(z).numpy().astype(np.float64)


def _mean_std(x: np.ndarray) -> dict:
    x = np.asarray(x, np.float64)
    return {"mean": float(np.mean(x)), "std": float(np.std(x)), "stderr": float(np.std(x) / np.sqrt(max(len(x), 1)))}


def evaluate(
    encoder: Callable,
    decoder: Callable,
    method: str,
    images: np.ndarray,
    draws: int = 16,
    seed: int = 0,
    batch_size: int = 250,
    progress: bool = True,
) -> dict:
    """Exact latent NLL of `images` and the finite-difference estimate beside it.

    Args:
      encoder, decoder: the trained models (LPGA: encoder returns mu; LVPGA: (mu, log_var)).
      method: a method whose record defines a latent likelihood (Method.likelihood: LPGA, LVPGA).
      images: [N, H, W, C] in [-1, 1].
      draws: random directions per image for the finite-difference estimate.
    Returns:
      A JSON-ready dict: summary statistics (nats; "per_dim" values are the training loss's
      scale, nll_enc + nll_dec) and, under "per_example", the arrays behind them.
    """
    record = methods.get(method)
    if not record.likelihood:
        able = [m.name for m in methods.all_methods() if m.likelihood]
        raise ValueError(f"{method} defines no latent likelihood (only {', '.join(able)})")
    from tqdm import tqdm

    latent_map = LatentMap(encoder, decoder, variational=record.variational)
    rng = np.random.default_rng(seed)
    kinds = list(record.likelihood)  # the training's own first
    perturbations = {k: methods.resolve(path) for k, path in record.likelihood.items()}
    cols: dict[str, list] = {"prior": [], "exact": [], **{k: [] for k in kinds}}
    with tqdm(total=len(images), desc="latent NLL", unit="img", disable=None if progress else True, leave=False) as bar:
        for i in range(0, len(images), batch_size):
            mu, log_var = latent_map.encode(images[i : i + batch_size])
            z = mu.numpy()
            lv = None if log_var is None else log_var.numpy()
            cols["prior"].append(prior_nll(z))
            cols["exact"].append(exact_log_det(latent_map, z))
            for kind in kinds:
                noise = rng.standard_normal((draws,) + z.shape).astype(np.float32)
                cols[kind].append(fd_log_det(latent_map, z, noise, perturbations[kind], lv).T)  # [n, draws]
            bar.update(len(z))
    prior = np.concatenate(cols["prior"])
    exact = np.concatenate(cols["exact"])
    d = int(z.shape[1])
    report = {
        "method": method,
        "code": "mu" if record.variational else "E(x)",
        "examples": int(len(prior)),
        "z_dim": d,
        "formula": "NLL(z) = -log N(z; 0, I) + log|det J_h(z)|, h = E o D, nats",
        "prior_nll": _mean_std(prior),
        "log_det_exact": _mean_std(exact),
        "nll_exact": _mean_std(prior + exact),
        "nll_exact_per_dim": float(np.mean(prior + exact) / d),
        "finite_difference": {},
        "per_example": {"prior_nll": prior.tolist(), "log_det_exact": exact.tolist()},
    }
    for kind in kinds:
        est = np.concatenate(cols[kind])  # [N, draws]
        per_image = est.mean(1)
        report["finite_difference"][f"{kind}_direction"] = {
            "used_in_training": kind == kinds[0],
            "draws": draws,
            "log_det": _mean_std(per_image),
            "spread_per_draw": float(np.mean(est.std(1))),  # one training step's noise
            "minus_exact": _mean_std(per_image - exact),
            "nll": _mean_std(prior + per_image),
            "nll_per_dim": float(np.mean(prior + per_image) / d),
        }
        report["per_example"][f"log_det_fd_{kind}"] = per_image.tolist()
    return report
