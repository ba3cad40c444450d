"""What one training step computes: the forward passes of each method and its two losses.

`method_losses` is the whole method, read top to bottom: it takes the models, a batch, the
step's random draws and the warm-up coefficients, and returns per-example encoder and decoder
losses plus every named term. It knows nothing of optimizers, datasets or strategies, so the
tests drive it directly with fixed noise.

Batch norm (when on) follows the reference's training semantics: every pass of a step is
normalised with that pass's own batch statistics. Only two passes feed the moving averages used
for sampling and export: the encoder's pass on real images and the decoder's pass on prior
samples z ~ N(0, I) (its reconstruction pass for the AE/VAE baselines, which have no prior pass).
Those are the inputs each network sees at inference, so the exported sampler is coherent.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import tensorflow as tf

from pga_tf import objectives
from pga_tf.config import Config

COEFFICIENTS = ("zn_rec", "zh_rec", "nll", "vrec", "vkld")


class Noise(NamedTuple):
    """The random draws of one step, per example: [N, z_dim] standard normal each."""

    prior: tf.Tensor  # z ~ N(0, I) for the zn latent reconstruction
    direction: tf.Tensor  # the log-det finite-difference direction
    posterior: tf.Tensor  # eps of the reparameterisation mu + sigma * eps


class Losses(NamedTuple):
    encoder: tf.Tensor  # [N] per-example loss whose gradient the encoder's weights take
    decoder: tf.Tensor  # [N] per-example loss whose gradient the decoder's weights take
    terms: dict  # name -> [N] per-example term, for summaries


def draw_noise(generator: tf.random.Generator, batch_size: int, z_dim: int) -> Noise:
    shape = [batch_size, z_dim]
    return Noise(*(generator.normal(shape) for _ in range(3)))


def coefficients(cfg: Config, step: tf.Tensor) -> dict:
    """The latent-term coefficients at `step`: 0 for the first `init_steps` steps, then cfg's."""
    on = tf.cast(tf.cast(step, tf.int64) >= cfg.init_steps, tf.float32)
    return {name: on * getattr(cfg, name) for name in COEFFICIENTS}


def cross_replica_mean(x: tf.Tensor) -> tf.Tensor:
    """Mean of `x` over replicas (identity outside a multi-replica step).

    Batches are split evenly (drop_remainder), so the mean of per-replica means is the global mean.
    """
    ctx = tf.distribute.get_replica_context()
    if ctx is None or ctx.num_replicas_in_sync == 1:
        return x
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, x)


def global_latent_rms(mu: tf.Tensor) -> tf.Tensor:
    """VPGA's per-dimension RMS of mu over the *global* batch, held constant."""
    mean_sq = cross_replica_mean(tf.reduce_mean(tf.square(tf.cast(mu, tf.float32)), axis=0))
    return tf.stop_gradient(tf.sqrt(mean_sq))


def method_losses(method: str, encoder: Callable, decoder: Callable, images: tf.Tensor,
                  noise: Noise, coeffs: dict) -> Losses:
    """Per-example encoder/decoder losses of `method` on one batch.

    Args:
      method: one of config.METHODS.
      encoder: Encoder model; returns mu, or (mu, log_var) for variational methods.
      decoder: Decoder model.
      images: [N, H, W, C] in [-1, 1].
      noise: this step's draws (see Noise).
      coeffs: name -> scalar coefficient (see `coefficients`).
    Returns:
      Losses.
    """
    variational = method in ("vpga", "lvpga", "vae")
    c = coeffs

    def encode(x, update_stats=False):
        out = encoder(x, training=True, update_stats=update_stats)
        return out if variational else (out, None)

    def decode(z, update_stats=False):
        return decoder(z, training=True, update_stats=update_stats)

    def h(z, update_stats=False):
        """h = E o D; returns h(z) and the decoded image (for `frozen_encoder`)."""
        x = decode(z, update_stats)
        return encode(x)[0], x

    def frozen_encoder(z_rec, x):
        # The reference's "no encoder gradient" path: same value as z_rec, but the encoder's
        # weights get no gradient through it while the decoder still does (through x).
        return z_rec - encode(tf.stop_gradient(x))[0] + tf.stop_gradient(z_rec)

    mu, log_var = encode(images, update_stats=True)
    if method == "vae":
        z = mu + tf.exp(0.5 * log_var) * noise.posterior
        rec = objectives.squared_error(images, decode(z, update_stats=True))
        kl = objectives.vae_kl(mu, log_var)
        loss = rec + c["vkld"] * kl
        return Losses(loss, loss, {"img_rec": rec, "vkld": kl})
    if method == "ae":
        rec = objectives.squared_error(images, decode(mu, update_stats=True))
        return Losses(rec, rec, {"img_rec": rec})

    img_rec = objectives.squared_error(images, decode(mu))
    mu_const = tf.stop_gradient(mu)
    zn_rec = objectives.squared_error(noise.prior, h(noise.prior, update_stats=True)[0])
    h_mu, x_mu = h(mu_const)
    zh_rec = objectives.squared_error(mu_const, h_mu)
    terms = {"img_rec": img_rec, "zn_rec": zn_rec, "zh_rec": zh_rec}
    enc = img_rec + c["zn_rec"] * zn_rec + c["zh_rec"] * zh_rec
    dec = img_rec

    if method == "lpga":
        delta = objectives.lpga_direction(noise.direction)
        terms["nll_enc"] = objectives.prior_nll(mu)
        terms["nll_dec"] = objectives.log_det_loss(h_mu, h(mu_const + delta)[0], delta)
        enc += c["nll"] * terms["nll_enc"]
        dec += c["nll"] * terms["nll_dec"]
        return Losses(enc, dec, terms)

    h_mu_frozen = frozen_encoder(h_mu, x_mu)
    terms["vkld"] = objectives.vae_kl(mu, log_var)
    if method == "vpga":
        z_noisy = mu_const + tf.exp(0.5 * log_var) * noise.posterior
        h_noisy = frozen_encoder(*h(z_noisy))
        terms["vrec"] = objectives.vae_reconstruction(h_mu_frozen, h_noisy, global_latent_rms(mu))
    elif method == "lvpga":
        delta = objectives.lvpga_direction(noise.direction, log_var)
        h_delta = frozen_encoder(*h(mu_const + delta))
        terms["vrec"] = objectives.log_det_loss(h_mu_frozen, h_delta, delta)
        terms["nll_enc"] = objectives.prior_nll(mu)
        enc += c["nll"] * terms["nll_enc"]
    else:
        raise ValueError(f"unknown method {method!r}")
    enc += c["vrec"] * terms["vrec"] + c["vkld"] * terms["vkld"]
    dec += c["vrec"] * terms["vrec"]
    return Losses(enc, dec, terms)
