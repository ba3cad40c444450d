"""What one training step computes: the forward passes of each method and its two losses.

`LOSS_FUNCTIONS` is the one table the trainer picks a method's loss function from, by method
name. The PGA methods and their AE/VAE baselines share `method_losses`; other families (WAE,
RAE, ...) have their own entry, with their terms in baselines.py.

`method_losses` is the whole PGA method, read top to bottom: it takes the models, a batch, the
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

import keras
import tensorflow as tf

from pga_tf import baselines, objectives
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
    # [N] (fused step only): one loss whose gradient is the encoder loss's for the encoder's
    # weights and the decoder loss's for the decoder's, so one backward pass serves both.
    surrogate: tf.Tensor | None = None


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


def h_jvp(encoder, decoder, z: tf.Tensor, u: tf.Tensor, training: bool = True) -> tuple:
    """h(z) = E(D(z)) and J_h(z) u, the latter exactly, in forward mode (--log_det=jvp).

    The nets' tangent rules (models.Encoder.jvp / Decoder.jvp) carry u beside z through every
    layer, so the tangent costs about one more forward pass of h: the cost of the finite
    difference's second pass h(z + delta). Run inside a GradientTape, the tape records the
    tangent's computation too, so J_h(z) u has a gradient with respect to the weights (reverse
    over forward), as (h(z + eps u) - h(z)) / eps does. Moving BN statistics are not updated.

    Args:
      encoder, decoder: models.Encoder / models.Decoder (anything with their `jvp`).
      z: [N, d] primal; u: [N, d] tangent (a unit direction per row).
    Returns:
      (h(z) [N, d] (mu for a variational encoder), D(z) [N, H, W, C], J_h u [N, d] float32).
    """
    x, dx = decoder.jvp(z, u, training=training)
    out, jvp = encoder.jvp(x, dx, training=training)
    return (out[0] if isinstance(out, tuple) else out), x, jvp


def method_losses(method: str, encoder: Callable, decoder: Callable, images: tf.Tensor,
                  noise: Noise, coeffs: dict, log_det: str = "finite_difference") -> Losses:
    """Per-example encoder/decoder losses of `method` on one batch.

    Args:
      method: one of config.METHODS.
      encoder: Encoder model; returns mu, or (mu, log_var) for variational methods.
      decoder: Decoder model.
      images: [N, H, W, C] in [-1, 1].
      noise: this step's draws (see Noise).
      coeffs: name -> scalar coefficient (see `coefficients`).
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
    if method == "lpga" and log_det == "jvp":
        h_mu, x_mu, jvp = h_jvp(encoder, decoder, mu_const,
                                objectives.lpga_unit_direction(noise.direction))
    else:
        h_mu, x_mu = h(mu_const)
    zh_rec = objectives.squared_error(mu_const, h_mu)
    terms = {"img_rec": img_rec, "zn_rec": zn_rec, "zh_rec": zh_rec}
    enc = img_rec + c["zn_rec"] * zn_rec + c["zh_rec"] * zh_rec
    dec = img_rec

    if method == "lpga":
        terms["nll_enc"] = objectives.prior_nll(mu)
        if log_det == "jvp":
            terms["nll_dec"] = objectives.directional_log_det_loss(jvp)
        else:
            delta = objectives.lpga_direction(noise.direction)
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


# -------------------------------------------------------------- the other families' losses
def _spread(statistic: tf.Tensor, like: tf.Tensor) -> tf.Tensor:
    """A batch statistic as a per-example [N] loss: tf.nn.compute_average_loss of it (over this
    replica's N of the global batch, summed over replicas) gives the mean of the replicas'
    statistics."""
    return tf.fill(tf.shape(like)[:1], statistic)


def wae_losses(cfg: Config, encoder: Callable, decoder: Callable, images: tf.Tensor,
               noise: Noise, step: tf.Tensor) -> Losses:
    """WAE-MMD (Tolstikhin et al., ICLR 2018, Algorithm 2): ||x - D(E(x))||^2 + lambda * MMD.

    Deterministic encoder; the MMD (baselines.imq_mmd) compares the batch's codes with as many
    prior samples (`noise.prior`). Under tf.distribute it is computed on each replica's share and
    the replicas' estimates are averaged: each is unbiased, with the variance of a smaller batch
    (WAE's own code estimates it per batch). One loss trains both nets. Batch norm: the encoder
    pass and the reconstruction pass update the moving statistics (there is no prior pass).
    """
    del step  # no warm-up
    z = encoder(images, training=True, update_stats=True)
    rec = objectives.squared_error(images, decoder(z, training=True, update_stats=True))
    mmd = _spread(baselines.imq_mmd(z, noise.prior), rec)
    loss = rec + cfg.wae_lambda * mmd
    return Losses(loss, loss, {"img_rec": rec, "mmd": mmd}, surrogate=loss)


def rae_losses(cfg: Config, encoder: Callable, decoder: Callable, images: tf.Tensor,
               noise: Noise, step: tf.Tensor) -> Losses:
    """RAE (Ghosh et al., ICLR 2020, eq. 11): ||x - D(E(x))||^2 + beta ||z||^2 / 2 + lambda L_REG.

    L_REG is `cfg.rae_reg`: "l2", the sum of squares of the decoder's kernels (RAE-L2), or "gp",
    the decoder's gradient penalty at z = E(x) (RAE-GP, baselines.decoder_gradient_penalty). The
    weight decay is one number per batch, spread over its examples. One loss trains both nets.
    Batch norm as in `wae_losses`.
    """
    del noise, step  # deterministic, no warm-up
    z = encoder(images, training=True, update_stats=True)
    decode = lambda codes: decoder(codes, training=True, update_stats=True)  # noqa: E731
    if cfg.rae_reg == "gp":
        reg, x_rec = baselines.decoder_gradient_penalty(decode, z)
    else:
        x_rec = decode(z)
        kernels = [v for v in decoder.trainable_variables if v.name == "kernel"]
        reg = _spread(baselines.weight_decay(kernels), z)
    rec = objectives.squared_error(images, x_rec)
    z_l2 = baselines.latent_l2(z)
    loss = rec + cfg.rae_beta * z_l2 + cfg.rae_lambda * reg
    return Losses(loss, loss, {"img_rec": rec, "z_l2": z_l2, f"dec_{cfg.rae_reg}": reg},
                  surrogate=loss)


def two_stage_vae_losses(cfg: Config, encoder: Callable, decoder: Callable, images: tf.Tensor,
                         noise: Noise, step: tf.Tensor) -> Losses:
    """Stage 1 of the 2-Stage VAE (Dai & Wipf, ICLR 2019): a VAE whose decoder scale gamma_x is
    learned (daib13/TwoStageVAE network/two_stage_vae_model.py, `loss1`).

    Per example: -log N(x; D(z), gamma_x^2 I) summed over pixels, plus KL(q(z|x) || N(0, I))
    summed over dimensions, z = mu + sigma * eps. Both nets (log gamma_x is the decoder's) take
    the gradient of this one loss. Stage 2 is trained apart (two_stage.SecondStage).

    Args:
      cfg, step: unused (no coefficient, no warm-up).
      encoder: variational Encoder, images -> (mu, log_var).
      decoder: Decoder with `learned_scale` (its `log_gamma` is log gamma_x).
      images: [N, H, W, C] in [-1, 1].
      noise: this step's draws; `posterior` is eps.
    Returns:
      Losses; terms: img_rec (per-pixel MSE, as every method reports it), nll_x, kl, gamma_x.
    """
    del cfg, step
    mu, log_var = encoder(images, training=True, update_stats=True)
    z = mu + tf.exp(0.5 * log_var) * noise.posterior
    x_hat = decoder(z, training=True, update_stats=True)
    loss, parts = baselines.vae_loss(images, x_hat, decoder.log_gamma, mu, log_var)
    terms = {"img_rec": objectives.squared_error(images, x_hat), "nll_x": parts["nll"],
             "kl": parts["kl"], "gamma_x": parts["gamma"]}
    return Losses(loss, loss, terms)


LossFunction = Callable[[Config, Callable, Callable, tf.Tensor, Noise, tf.Tensor], Losses]


def _pga_family(cfg: Config, encoder: Callable, decoder: Callable, images: tf.Tensor,
                noise: Noise, step: tf.Tensor) -> Losses:
    return method_losses(cfg.method, encoder, decoder, images, noise, coefficients(cfg, step),
                         log_det=cfg.log_det)


# method name -> its loss function (cfg, encoder, decoder, images, noise, step) -> Losses, whose
# per-example losses the trainer averages with tf.nn.compute_average_loss. The only place a
# method's objective is chosen; a new method is a new entry.
LOSS_FUNCTIONS: dict[str, LossFunction] = {
    "lpga": _pga_family,
    "vpga": _pga_family,
    "lvpga": _pga_family,
    "vae": _pga_family,
    "ae": _pga_family,
    "wae": wae_losses,
    "rae": rae_losses,
    "two_stage_vae": two_stage_vae_losses,
}

# The methods `fused_method_losses` computes (the others always take their LOSS_FUNCTIONS entry).
FUSED_METHODS = frozenset({"lpga", "vpga", "lvpga", "vae", "ae"})


# ------------------------------------------------------------------------------ the fused step
def frozen(model: Callable) -> Callable:
    """`model`'s training-mode forward with its weights held constant.

    Same values as `model(x, training=True)`; the gradient reaches `x` but none of the model's
    weights. This is the reference's "no encoder gradient" path, z - E(sg(x)) + sg(z), without
    the second encoder pass it costs: the weights enter the pass through stop_gradient.
    """

    def call(x):
        weights = [tf.stop_gradient(v) for v in model.trainable_variables]
        # stateless_call runs the model's body without the model's own name scope.
        with tf.name_scope(f"{model.name}_frozen"):
            out, _ = model.stateless_call(weights, list(model.non_trainable_variables), x,
                                          training=True)
        return out

    return call


def frozen_jvp(model) -> Callable:
    """`model.jvp(x, dx, training=True)` with its weights held constant (see `frozen`)."""

    def call(x, dx):
        mapping = [(v, tf.stop_gradient(v)) for v in model.trainable_variables]
        with tf.name_scope(f"{model.name}_frozen"), keras.StatelessScope(state_mapping=mapping):
            return model.jvp(x, dx, training=True)

    return call


def two_views(model: Callable, x: tf.Tensor, tangent: tf.Tensor | None = None) -> tuple:
    """One training-mode pass y = model(x), returned as two tensors of the same value.

    The first's gradient reaches `x` only (as `frozen(model)(x)` would), the second's reaches
    the model's weights only (as `model(stop_gradient(x))` would): the two passes those take,
    for the price of one forward pass. The backward pass is the two vector-Jacobian products
    of the recorded forward pass, each with its own upstream gradient.

    With `tangent` ([N, ...] like x), the pass is `model.jvp(x, tangent)` and J_model(x) tangent
    comes third; like the second view, its gradient reaches the weights only.
    """

    @tf.custom_gradient
    def views(x):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            if tangent is None:
                y, outs = model(x, training=True), []
            else:
                y, dy = model.jvp(x, tangent, training=True)
                outs = [dy]

        def grad(dy_input_view, dy_weights_view, *d_outs, variables=None):
            # The input's VJP with the first view's gradient, the weights' with the others'.
            dx = tape.gradient(y, x, output_gradients=dy_input_view)
            dw = tape.gradient([y, *outs], variables,
                               output_gradients=[dy_weights_view, *d_outs])
            return dx, dw

        return (y, tf.identity(y), *outs), grad

    return views(x)


def _halves(x: tf.Tensor, n: int) -> tuple[tf.Tensor, tf.Tensor]:
    return x[:n], x[n:]


def fused_method_losses(method: str, encoder: Callable, decoder: Callable, images: tf.Tensor,
                        noise: Noise, coeffs: dict, zero_coefficients=frozenset(),
                        log_det: str = "finite_difference") -> Losses:
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
      warm-up's: during warm-up the latent terms are computed and differentiated as usual).
      Their terms are still computed and reported, but their gradient path is not built: only
      zh_rec has one of its own (the encoder on sg(D(mu)), live weights), which is 0 in every
      method's default. The plain step adds 0 * zh_rec and back-propagates zeros; the values are
      equal (for finite zh_rec) and so are the gradients.
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

    if method in ("vae", "ae"):
        # One pass each, as in the plain step; only the two backward passes become one.
        mu, log_var = encode(images)
        z = mu if method == "ae" else mu + tf.exp(0.5 * log_var) * noise.posterior
        rec = objectives.squared_error(images, decode(z))
        if method == "ae":
            return Losses(rec, rec, {"img_rec": rec}, surrogate=rec)
        kl = objectives.vae_kl(mu, log_var)
        loss = rec + c["vkld"] * kl
        return Losses(loss, loss, {"img_rec": rec, "vkld": kl}, surrogate=loss)

    encode_frozen = frozen(encoder)

    # Decoded prior samples feed only zn_rec, whose gradient the encoder's weights take.
    x_prior = tf.stop_gradient(decode(noise.prior))
    mu_both, log_var_both = encode(tf.concat([images, x_prior], 0))
    mu, h_prior = _halves(mu_both, n)
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
        x_mu_enc, x_mu, dx_mu = two_views(decoder, mu,
                                          objectives.lpga_unit_direction(noise.direction))
        h_mu, jvp = frozen_jvp(encoder)(x_mu, dx_mu)
    else:
        x_mu_enc, x_mu = two_views(decoder, mu)
        x_2 = decode(z2)
        h_both = encode_frozen(tf.concat([x_mu, x_2], 0))
        h_mu, h_2 = _halves(h_both[0] if variational else h_both, n)

    img_rec = objectives.squared_error(images, x_mu_enc)
    img_rec_dec = objectives.squared_error(images, x_mu)
    if "zh_rec" in zero_coefficients:
        zh_rec = objectives.squared_error(mu_const, h_mu)  # value only: its coefficient is 0
    else:
        h_mu_live = encode(tf.stop_gradient(x_mu))[0]
        zh_rec = objectives.squared_error(mu_const, h_mu_live)
    terms = {"img_rec": img_rec,
             "zn_rec": objectives.squared_error(noise.prior, h_prior),
             "zh_rec": zh_rec}
    enc_only = img_rec + c["zn_rec"] * terms["zn_rec"] + c["zh_rec"] * zh_rec
    dec_only = img_rec_dec
    if method == "lpga":
        terms["nll_enc"] = objectives.prior_nll(mu)
        if jvp is not None:
            terms["nll_dec"] = objectives.directional_log_det_loss(jvp)
        else:
            terms["nll_dec"] = objectives.log_det_loss(h_mu, h_2, delta)
        enc_only += c["nll"] * terms["nll_enc"]
        dec_only += c["nll"] * terms["nll_dec"]
        shared = None
    else:
        terms["vkld"] = objectives.vae_kl(mu, log_var)
        if method == "vpga":
            terms["vrec"] = objectives.vae_reconstruction(h_mu, h_2, global_latent_rms(mu))
        else:
            terms["vrec"] = objectives.log_det_loss(h_mu, h_2, delta)
            terms["nll_enc"] = objectives.prior_nll(mu)
            enc_only += c["nll"] * terms["nll_enc"]
        enc_only += c["vkld"] * terms["vkld"]
        shared = c["vrec"] * terms["vrec"]
    if shared is None:
        return Losses(enc_only, dec_only, terms, surrogate=enc_only + dec_only)
    return Losses(enc_only + shared, dec_only + shared, terms,
                  surrogate=enc_only + dec_only + shared)
