"""Loss terms of the non-PGA comparison models (WAE-MMD, RAE, 2-Stage VAE) as pure functions of tensors.

Like objectives.py, every term is per example ([N]) or, for a batch statistic, a scalar that the
step spreads over the batch; each docstring names the paper equation and the official code line
it follows:

* WAE-MMD: Tolstikhin et al., "Wasserstein Auto-Encoders", ICLR 2018, Algorithm 2; official code
  github.com/tolstikhin/wae, wae.py `WAE.mmd_penalty` (IMQ branch).
* RAE: Ghosh et al., "From Variational to Deterministic Autoencoders", ICLR 2020, eq. 11;
  official code github.com/ParthaEth/Regularized_autoencoders-RAE-,
  models/rae/loss_functions.py and models/rae/rae_mnist.py.
* 2-Stage VAE: Dai & Wipf, "Diagnosing and Enhancing VAE Models", ICLR 2019, sec. 4; official
  code github.com/daib13/TwoStageVAE, network/two_stage_vae_model.py `loss1`/`loss2`.

The step (step.py's `wae_losses`, `rae_losses`, `two_stage_vae_losses`; two_stage.py for the
2-Stage VAE's second stage) runs the nets and combines these terms.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import tensorflow as tf

# The IMQ kernel's scales in WAE's official code (wae.py `mmd_penalty`): C = 2 * z_dim *
# sigma_z^2 * scale for each of these, and the statistic is the sum over them.
IMQ_SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


def _float(x: tf.Tensor) -> tf.Tensor:
    """float16 (mixed precision) -> float32; float32 and float64 (the tests' references) kept."""
    return x if x.dtype in (tf.float32, tf.float64) else tf.cast(x, tf.float32)


def _squared_distances(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    # Differences, not |a|^2 + |b|^2 - 2ab (wae.py's form): exact, never negative; the batches are
    # small enough that the [N, M, z_dim] intermediate costs nothing.
    return tf.reduce_sum(tf.square(a[:, None, :] - b[None, :, :]), axis=-1)


def imq_mmd(
    codes: tf.Tensor, prior: tf.Tensor, scales: Sequence[float] = IMQ_SCALES, prior_variance: float = 1.0
) -> tf.Tensor:
    """Unbiased estimate of MMD^2 between the codes' and the prior's distributions, IMQ kernels.

    k_C(x, y) = C / (C + ||x - y||^2) with C = 2 * z_dim * prior_variance * s for each scale s,
    summed over `scales` (wae.py `mmd_penalty`, kernel 'IMQ'). The U-statistic of WAE Algorithm 2:

      sum_{i != j} k(q_i, q_j) / (n (n - 1)) + sum_{i != j} k(p_i, p_j) / (m (m - 1))
        - 2 sum_{i, j} k(q_i, p_j) / (n m)

    Its expectation is the population MMD^2 (0 when the codes follow the prior), so it can be
    negative on a batch. It is a statistic of the whole batch: under tf.distribute each replica
    computes it on its own share (as WAE's code does per batch), see step.wae_losses.

    Args:
      codes: [n, z_dim] encoder outputs E(x), n >= 2.
      prior: [m, z_dim] samples of the prior N(0, prior_variance * I), m >= 2.
      scales: the multiples of 2 * z_dim * prior_variance used as C.
      prior_variance: sigma_z^2 (wae.py's `pz_scale ** 2`).
    Returns:
      float32 scalar.
    """
    q = tf.cast(codes, tf.float32)
    p = tf.cast(prior, tf.float32)
    n = tf.cast(tf.shape(q)[0], tf.float32)
    m = tf.cast(tf.shape(p)[0], tf.float32)
    z_dim = q.shape[-1]
    d_qq, d_pp, d_qp = _squared_distances(q, q), _squared_distances(p, p), _squared_distances(q, p)
    off_q = 1.0 - tf.eye(tf.shape(q)[0])
    off_p = 1.0 - tf.eye(tf.shape(p)[0])
    stat = tf.constant(0.0)
    for s in scales:
        c = 2.0 * z_dim * prior_variance * s
        stat += tf.reduce_sum(off_q * c / (c + d_qq)) / (n * (n - 1.0))
        stat += tf.reduce_sum(off_p * c / (c + d_pp)) / (m * (m - 1.0))
        stat -= 2.0 * tf.reduce_sum(c / (c + d_qp)) / (n * m)
    return stat


def latent_l2(z: tf.Tensor) -> tf.Tensor:
    """RAE's code penalty L_z = ||z||^2 / 2 per example (paper eq. 11, `embeddig_loss`).

    The official code takes mean(z^2) over the latent dimensions instead, i.e. 2 / z_dim times
    this; the flagfiles convert its `embedding_weight` accordingly.

    Args:
      z: [N, z_dim] codes E(x).
    Returns:
      [N] float32 tensor.
    """
    return 0.5 * tf.reduce_sum(tf.square(tf.cast(z, tf.float32)), axis=1)


def weight_decay(kernels: Sequence[tf.Tensor]) -> tf.Tensor:
    """RAE-L2's decoder regulariser ||theta||^2: the sum of squares of the given weights.

    Keras' `l2(w)` regulariser (w * sum(x^2), no 1/2), as rae_mnist.py sets it on the decoder's
    layers; the step passes every kernel of the decoder (not biases or BN parameters).

    Args:
      kernels: the weight tensors.
    Returns:
      float32 scalar.
    """
    return tf.add_n([tf.reduce_sum(tf.square(tf.cast(k, tf.float32))) for k in kernels])


def decoder_gradient_penalty(decode: Callable[[tf.Tensor], tf.Tensor], z: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """RAE-GP's decoder regulariser, and the decoded images (one decoder pass for both).

    The official code (loss_functions.py `grad_pen_loss`) penalises the gradient of the decoded
    image's squared norm w.r.t. the code, g = d/dz sum_pixels D(z)^2, as mean(g^2); its decoder
    outputs images in [0, 1]. Ours outputs [-1, 1], so the same quantity is taken of the image
    mapped to [0, 1], (D(z) + 1) / 2. The gradient is recorded, so a training tape around this
    call differentiates the penalty (double backprop) w.r.t. the decoder's weights and z.

    Args:
      decode: z -> images in [-1, 1] (the decoder's training-mode pass).
      z: [N, z_dim] codes.
    Returns:
      ([N] float32 penalty mean_d(g^2) per example, [N, H, W, C] decoded images D(z)).
    """
    with tf.GradientTape() as tape:
        tape.watch(z)
        images = decode(z)
        unit = (_float(images) + 1.0) / 2.0
        energy = tf.reduce_sum(tf.square(unit))
    grad = _float(tape.gradient(energy, z))
    return tf.reduce_mean(tf.square(grad), axis=1), images


# ------------------------------------------------------------------------------- 2-Stage VAE
HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)


def _sum_over_features(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def gaussian_nll(x: tf.Tensor, x_hat: tf.Tensor, log_gamma: tf.Tensor) -> tf.Tensor:
    """-log N(x; x_hat, gamma^2 I), summed over the non-batch axes, per example.

    The 2-Stage VAE's reconstruction term with a learned scalar scale gamma (Dai & Wipf, ICLR
    2019, sec. 4; daib13/TwoStageVAE network/two_stage_vae_model.py, `gen_loss1` and `gen_loss2`:
    sum((x - x_hat) / gamma)^2 / 2 + log gamma + log(2 pi) / 2). gamma is a standard deviation in
    the units of x; the method relies on learning it (gamma -> 0 as the reconstruction sharpens),
    so the term is a sum over pixels (or latent dimensions), not a mean: its balance against the
    KL term is what the paper's analysis is about.

    Args:
      x: [N, ...] targets (images in [-1, 1], or stage 1's codes for stage 2).
      x_hat: tensor of the same shape, the decoder's mean.
      log_gamma: scalar log gamma.
    Returns:
      [N] float32 tensor, in nats.
    """
    x = tf.cast(x, tf.float32)
    log_gamma = tf.cast(log_gamma, tf.float32)
    scaled = (x - tf.cast(x_hat, tf.float32)) * tf.exp(-log_gamma)
    per_element = 0.5 * tf.square(scaled) + log_gamma + HALF_LOG_TWO_PI
    return _sum_over_features(per_element)


def gaussian_kl(mu: tf.Tensor, log_var: tf.Tensor) -> tf.Tensor:
    """KL(N(mu, diag(sigma^2)) || N(0, I)) summed over latent dimensions, per example.

    The 2-Stage VAE's `kl_loss1`/`kl_loss2` (sum(mu^2 + sigma^2 - 2 log sigma - 1) / 2), with
    log_var = 2 log sigma. (objectives.vae_kl is the same KL averaged over dimensions, the PGA
    reference's weighting.)

    Args:
      mu, log_var: [N, z_dim] posterior mean and log-variance.
    Returns:
      [N] float32 tensor, in nats.
    """
    mu = tf.cast(mu, tf.float32)
    log_var = tf.cast(log_var, tf.float32)
    return 0.5 * tf.reduce_sum(tf.square(mu) + tf.exp(log_var) - log_var - 1.0, axis=1)


def vae_loss(
    x: tf.Tensor, x_hat: tf.Tensor, log_gamma: tf.Tensor, mu: tf.Tensor, log_var: tf.Tensor
) -> tuple[tf.Tensor, dict]:
    """One stage of the 2-Stage VAE: the negative ELBO with a learned decoder scale gamma.

    Args:
      x, x_hat: [N, ...] targets and decoder means; log_gamma: scalar log gamma.
      mu, log_var: [N, z_dim] the encoder's posterior.
    Returns:
      ([N] loss = gaussian_nll + gaussian_kl, {"nll": [N], "kl": [N], "gamma": [N] (gamma,
      broadcast for summaries)}).
    """
    nll = gaussian_nll(x, x_hat, log_gamma)
    kl = gaussian_kl(mu, log_var)
    gamma = tf.fill(tf.shape(nll), tf.exp(tf.cast(log_gamma, tf.float32)))
    return nll + kl, {"nll": nll, "kl": kl, "gamma": gamma}
