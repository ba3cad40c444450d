"""The PGA family's objectives: LPGA, VPGA, LVPGA and the AE/VAE baselines on the same step.

`method_losses` is the whole PGA method, read top to bottom: it takes the models, a batch, the
step's random draws and the warm-up coefficients, and returns per-example encoder and decoder
losses plus every named term. It knows nothing of optimizers, datasets or strategies, so the
tests drive it directly with fixed noise. `fused_method_losses` computes the same losses and
gradients in fewer passes (batch norm off). `losses` and `fused_losses` are the two as the
methods' records name them (pga_tf/methods/cards/pga.py).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import tensorflow as tf

from pga_tf.config import Config
from pga_tf.methods import objectives
from pga_tf.methods.parts import (
    Losses,
    Noise,
    coefficients,
    frozen,
    frozen_jvp,
    gated,
    global_latent_rms,
    h_jvp,
    halves,
    two_views,
)


def method_losses(
    method: str,
    encoder: Callable,
    decoder: Callable,
    images: tf.Tensor,
    noise: Noise,
    coeffs: dict,
    log_det: str = "finite_difference",
) -> Losses:
    """Per-example encoder/decoder losses of `method` on one batch.

    Args:
      method: "ae", "vae", "lpga", "vpga" or "lvpga".
      encoder: Encoder model; returns mu, or (mu, log_var) for variational methods.
      decoder: Decoder model.
      images: [N, H, W, C] in [-1, 1].
      noise: this step's draws (see Noise).
      coeffs: name -> scalar coefficient (see `coefficients`). A term whose coefficient is 0
        adds exactly 0 to the losses and their gradients, even where it is not finite, and is
        reported as 0 where it is not finite (`parts.gated`).
      log_det: LPGA's J_h u: "finite_difference" (the reference's: a second pass of h at
        mu + delta) or "jvp" (forward mode along the same direction, on the pass at mu).
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

    terms = {}

    def share(name, coefficient, term, *inputs):
        """Records term `name` and returns its share of a loss (parts.gated)."""
        terms[name], out = gated(c[coefficient], term, *inputs)
        return out

    mu, log_var = encode(images, update_stats=True)
    if method == "vae":
        z = mu + tf.exp(0.5 * log_var) * noise.posterior
        rec = objectives.squared_error(images, decode(z, update_stats=True))
        terms["img_rec"] = rec
        loss = rec + share("vkld", "vkld", objectives.vae_kl, mu, log_var)
        return Losses(loss, loss, terms)
    if method == "ae":
        rec = objectives.squared_error(images, decode(mu, update_stats=True))
        return Losses(rec, rec, {"img_rec": rec})

    img_rec = objectives.squared_error(images, decode(mu))
    mu_const = tf.stop_gradient(mu)
    h_prior = h(noise.prior, update_stats=True)[0]
    if method == "lpga" and log_det == "jvp":
        h_mu, x_mu, jvp = h_jvp(encoder, decoder, mu_const, objectives.lpga_unit_direction(noise.direction))
    else:
        h_mu, x_mu = h(mu_const)
    terms["img_rec"] = img_rec
    enc = (
        img_rec
        + share("zn_rec", "zn_rec", partial(objectives.squared_error, noise.prior), h_prior)
        + share("zh_rec", "zh_rec", partial(objectives.squared_error, mu_const), h_mu)
    )
    dec = img_rec

    if method == "lpga":
        enc += share("nll_enc", "nll", objectives.prior_nll, mu)
        if log_det == "jvp":
            dec += share("nll_dec", "nll", objectives.directional_log_det_loss, jvp)
        else:
            delta = objectives.lpga_direction(noise.direction)
            dec += share("nll_dec", "nll", objectives.log_det_loss, h_mu, h(mu_const + delta)[0], delta)
        return Losses(enc, dec, terms)

    h_mu_frozen = frozen_encoder(h_mu, x_mu)
    vkld = share("vkld", "vkld", objectives.vae_kl, mu, log_var)
    if method == "vpga":
        z_noisy = mu_const + tf.exp(0.5 * log_var) * noise.posterior
        h_noisy = frozen_encoder(*h(z_noisy))
        rms = global_latent_rms(mu)
        vrec = share("vrec", "vrec", lambda a, b: objectives.vae_reconstruction(a, b, rms), h_mu_frozen, h_noisy)
    elif method == "lvpga":
        delta = objectives.lvpga_direction(noise.direction, log_var)
        h_delta = frozen_encoder(*h(mu_const + delta))
        vrec = share("vrec", "vrec", objectives.log_det_loss, h_mu_frozen, h_delta, delta)
        enc += share("nll_enc", "nll", objectives.prior_nll, mu)
    else:
        raise ValueError(f"unknown method {method!r}")
    enc += vrec + vkld
    dec += vrec
    return Losses(enc, dec, terms)


def fused_method_losses(
    method: str,
    encoder: Callable,
    decoder: Callable,
    images: tf.Tensor,
    noise: Noise,
    coeffs: dict,
    zero_coefficients=frozenset(),
    log_det: str = "finite_difference",
) -> Losses:
    """`method_losses` computed with fewer passes and one backward pass (batch norm off only).

    The losses, every term and the gradient of the encoder (decoder) loss w.r.t. the encoder's
    (decoder's) weights are those of `method_losses` (tests/test_fused.py checks that); what
    changes is how they are computed:

    * Each pass is built with exactly the gradient paths its consumers need, instead of
      computing gradients that are thrown away: `frozen(E)` (weights held constant) replaces
      the reference's frozen-encoder trick and its extra encoder pass; a pass whose input
      carries no gradient that any loss needs takes `stop_gradient` inputs.
    * Passes with the same gradient paths run as one batched call: the encoder on real images
      and on decoded prior samples; the decoder on mu and on the perturbed/noisy codes; the
      frozen encoder on both of those decodings. This is only valid because with batch norm off
      every example is processed independently: batching does not change any value.
    * The encoder's and decoder's views of the image reconstruction are two passes over mu: the
      frozen decoder D_f(mu) (gradient to mu, hence the encoder) and D(sg(mu)) (gradient to the
      decoder's weights); the latter is also h's decoding of mu, which the plain step computes
      a second time.
    * `Losses.surrogate` = (encoder-only terms) + (decoder-only terms) + (terms in both losses,
      once): every term is built so that its gradient reaches only the weights of the losses it
      appears in, so the surrogate's gradient is the encoder loss's for the encoder's weights
      and the decoder loss's for the decoder's, and one `tape.gradient` call computes both.
      The terms in both losses are img_rec (as its two views) and, for VPGA/LVPGA, vrec (its
      gradient reaches the encoder through log_var, the decoder through its weights).
    * Coefficients named in `zero_coefficients` are 0 at every step (the Config's 0s, not the
      warm-up's: during warm-up the latent terms' passes are built as usual, and `parts.gated`
      gives them a share of exactly 0). Their terms are still computed and reported, but their
      gradient path is not built: only zh_rec has one of its own (the encoder on sg(D(mu)),
      live weights), which is 0 in every method's default. The plain step builds it and
      `parts.gated` sends zeros back through it: the same values and gradients.
    * LPGA with log_det "jvp": the decoder's pass at mu carries the tangent J_D(mu) u beside
      its primal (`two_views` with a tangent; gradient to the decoder's weights only) and the
      frozen encoder carries it on to J_h u (`frozen_jvp`), in place of the passes at mu + delta.

    Returns:
      Losses with `surrogate` set; `encoder` (`decoder`) also has the right gradient for the
      encoder's (decoder's) weights on its own.
    """
    variational = method in ("vpga", "lvpga", "vae")
    c = coeffs
    n = images.shape[0] if images.shape[0] is not None else tf.shape(images)[0]

    def encode(x):
        out = encoder(x, training=True)
        return out if variational else (out, None)

    def decode(z):
        return decoder(z, training=True)

    terms = {}

    def share(name, coefficient, term, *inputs):
        """Records term `name` and returns its share of a loss (parts.gated)."""
        terms[name], out = gated(c[coefficient], term, *inputs)
        return out

    if method in ("vae", "ae"):
        # One pass each, as in the plain step; only the two backward passes become one.
        mu, log_var = encode(images)
        z = mu if method == "ae" else mu + tf.exp(0.5 * log_var) * noise.posterior
        rec = objectives.squared_error(images, decode(z))
        if method == "ae":
            return Losses(rec, rec, {"img_rec": rec}, surrogate=rec)
        terms["img_rec"] = rec
        loss = rec + share("vkld", "vkld", objectives.vae_kl, mu, log_var)
        return Losses(loss, loss, terms, surrogate=loss)

    encode_frozen = frozen(encoder)

    # Decoded prior samples feed only zn_rec, whose gradient the encoder's weights take.
    x_prior = tf.stop_gradient(decode(noise.prior))
    mu_both, log_var_both = encode(tf.concat([images, x_prior], 0))
    mu, h_prior = halves(mu_both, n)
    log_var = None if log_var_both is None else log_var_both[:n]
    mu_const = tf.stop_gradient(mu)

    # The second code decoded with mu, and the direction/noise it carries.
    jvp = None
    if method == "lpga" and log_det == "jvp":
        z2 = None
    elif method == "lpga":
        delta = objectives.lpga_direction(noise.direction)
        z2 = mu_const + delta
    elif method == "vpga":
        z2 = mu_const + tf.exp(0.5 * log_var) * noise.posterior
    elif method == "lvpga":
        delta = objectives.lvpga_direction(noise.direction, log_var)
        z2 = mu_const + delta
    else:
        raise ValueError(f"unknown method {method!r}")

    # D(mu) once, as the encoder's view (gradient to mu) and the decoder's (to its weights).
    if z2 is None:
        # ... with J_D(mu) u beside it, on to J_h u through the frozen encoder.
        x_mu_enc, x_mu, dx_mu = two_views(decoder, mu, objectives.lpga_unit_direction(noise.direction))
        h_mu, jvp = frozen_jvp(encoder)(x_mu, dx_mu)
    else:
        x_mu_enc, x_mu = two_views(decoder, mu)
        x_2 = decode(z2)
        h_both = encode_frozen(tf.concat([x_mu, x_2], 0))
        h_mu, h_2 = halves(h_both[0] if variational else h_both, n)

    img_rec = objectives.squared_error(images, x_mu_enc)
    img_rec_dec = objectives.squared_error(images, x_mu)
    if "zh_rec" in zero_coefficients:
        h_mu_live = h_mu  # value only: its coefficient is 0
    else:
        h_mu_live = encode(tf.stop_gradient(x_mu))[0]
    terms["img_rec"] = img_rec
    enc_only = (
        img_rec
        + share("zn_rec", "zn_rec", partial(objectives.squared_error, noise.prior), h_prior)
        + share("zh_rec", "zh_rec", partial(objectives.squared_error, mu_const), h_mu_live)
    )
    dec_only = img_rec_dec
    if method == "lpga":
        enc_only += share("nll_enc", "nll", objectives.prior_nll, mu)
        if jvp is not None:
            dec_only += share("nll_dec", "nll", objectives.directional_log_det_loss, jvp)
        else:
            dec_only += share("nll_dec", "nll", objectives.log_det_loss, h_mu, h_2, delta)
        shared = None
    else:
        vkld = share("vkld", "vkld", objectives.vae_kl, mu, log_var)
        if method == "vpga":
            rms = global_latent_rms(mu)
            shared = share("vrec", "vrec", lambda a, b: objectives.vae_reconstruction(a, b, rms), h_mu, h_2)
        else:
            shared = share("vrec", "vrec", objectives.log_det_loss, h_mu, h_2, delta)
            enc_only += share("nll_enc", "nll", objectives.prior_nll, mu)
        enc_only += vkld
    if shared is None:
        return Losses(enc_only, dec_only, terms, surrogate=enc_only + dec_only)
    return Losses(enc_only + shared, dec_only + shared, terms, surrogate=enc_only + dec_only + shared)


def losses(
    cfg: Config, encoder: Callable, decoder: Callable, images: tf.Tensor, noise: Noise, step: tf.Tensor
) -> Losses:
    """`method_losses` of cfg.method at `step` (its warm-up coefficients)."""
    return method_losses(cfg.method, encoder, decoder, images, noise, coefficients(cfg, step), log_det=cfg.log_det)


def fused_losses(
    cfg: Config,
    encoder: Callable,
    decoder: Callable,
    images: tf.Tensor,
    noise: Noise,
    step: tf.Tensor,
    zero_coefficients=frozenset(),
) -> Losses:
    """`fused_method_losses` of cfg.method at `step` (see `losses`)."""
    return fused_method_losses(
        cfg.method, encoder, decoder, images, noise, coefficients(cfg, step), zero_coefficients, log_det=cfg.log_det
    )


def lpga_perturbation(noise: tf.Tensor, log_var: tf.Tensor | None = None) -> tf.Tensor:
    """LPGA's finite-difference step for noise [N, z_dim] (objectives.lpga_direction); the
    posterior's log-variance is not used."""
    return objectives.lpga_direction(noise)


def lvpga_perturbation(noise: tf.Tensor, log_var: tf.Tensor) -> tf.Tensor:
    """LVPGA's finite-difference step for noise and log-variances [N, z_dim]
    (objectives.lvpga_direction)."""
    return objectives.lvpga_direction(noise, log_var)
