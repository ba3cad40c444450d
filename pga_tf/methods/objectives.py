"""PGA loss terms as pure functions of tensors.

Every function returns a *per-example* loss of shape [N]; the reference's batch means are the
mean of these over the batch, and under tf.distribute the step reduces them with
`tf.nn.compute_average_loss` against the global batch. Each mirrors one line of the reference
(zj10/PGA src/train_{lpga,vpga,lvpga}.py); the docstring names it.
"""

from __future__ import annotations

import math

import tensorflow as tf
import tensorflow_probability as tfp

tfd = tfp.distributions


def _mean_over_features(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.reshape(x, [tf.shape(x)[0], -1]), axis=1)


def squared_error(target: tf.Tensor, prediction: tf.Tensor) -> tf.Tensor:
    """Mean squared error per example, over all non-batch axes.

    The reference's `tf.losses.mean_squared_error(a, b)` is the batch mean of this; it is used
    for the image reconstruction loss and both latent reconstruction losses (zn_rec, zh_rec).

    Args:
      target: [N, ...] tensor.
      prediction: tensor of the same shape.
    Returns:
      [N] float32 tensor.
    """
    diff = tf.cast(target, tf.float32) - tf.cast(prediction, tf.float32)
    return _mean_over_features(tf.square(diff))


def standard_normal(z_dim: int) -> tfd.Distribution:
    """The prior N(0, I) over the latent space."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([z_dim]), scale_diag=tf.ones([z_dim]))


def prior_nll(z: tf.Tensor) -> tf.Tensor:
    """Encoder NLL term of LPGA/LVPGA: -log N(z; 0, I) / z_dim per example.

    Args:
      z: [N, z_dim] codes E(x).
    Returns:
      [N] tensor.
    """
    z = tf.cast(z, tf.float32)
    z_dim = z.shape[-1]
    return -standard_normal(z_dim).log_prob(z) / z_dim


def lpga_unit_direction(noise: tf.Tensor) -> tf.Tensor:
    """LPGA's random direction u = noise / ||noise|| per row ([N, z_dim] -> [N, z_dim])."""
    return tf.math.l2_normalize(noise, axis=1)


def lpga_direction(noise: tf.Tensor) -> tf.Tensor:
    """LPGA's finite-difference step: a random direction scaled to norm 1e-2 * sqrt(z_dim).

    Args:
      noise: [N, z_dim] standard normal draws.
    Returns:
      [N, z_dim] perturbation delta with ||delta|| = 1e-2 * sqrt(z_dim) per row.
    """
    z_dim = noise.shape[-1]
    epsilon = 1e-2 * math.sqrt(z_dim)
    return lpga_unit_direction(noise) * epsilon


def lvpga_direction(noise: tf.Tensor, log_var: tf.Tensor) -> tf.Tensor:
    """LVPGA's finite-difference step: noise scaled by the posterior std plus 1e-2.

    The gradient reaches the log-variance head through this step (the reference does not stop it).
    """
    return noise * (tf.exp(0.5 * log_var) + 1e-2)


def log_det_jacobian(h_z: tf.Tensor, h_z_delta: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
    """Finite-difference estimate of log|det J_h(z)| along the direction of `delta`.

    J u ~ (h(z + delta) - h(z)) / ||delta||, u = delta / ||delta||, with ||delta|| held constant
    for the gradient as in the reference; see docs/methods.md, "The log-det estimator".

    Args:
      h_z: [N, z_dim] h(z).
      h_z_delta: [N, z_dim] h(z + delta).
      delta: [N, z_dim] the perturbation.
    Returns:
      [N] estimates of log|det J_h(z)| (not yet divided by z_dim).
    """
    norm = tf.stop_gradient(tf.norm(tf.cast(delta, tf.float32), axis=1, keepdims=True))
    return directional_log_det((tf.cast(h_z_delta, tf.float32) - tf.cast(h_z, tf.float32)) / norm)


def directional_log_det(jvp: tf.Tensor) -> tf.Tensor:
    """The estimate (z_dim / 2) * log ||J u||^2 of log|det J| from J u, u a unit direction.

    Args:
      jvp: [N, z_dim] J_h(z) u, exact (forward mode) or a finite difference.
    Returns:
      [N] estimates of log|det J_h(z)| (not yet divided by z_dim), float32 (float64 for a
      float64 jvp).
    """
    if jvp.dtype != tf.float64:
        jvp = tf.cast(jvp, tf.float32)
    return 0.5 * jvp.shape[-1] * tf.math.log(tf.reduce_sum(tf.square(jvp), axis=1))


def log_det_loss(h_z: tf.Tensor, h_z_delta: tf.Tensor, delta: tf.Tensor) -> tf.Tensor:
    """Decoder NLL term of LPGA (and LVPGA's vrec term): log|det J_h| / z_dim per example."""
    return log_det_jacobian(h_z, h_z_delta, delta) / h_z.shape[-1]


def directional_log_det_loss(jvp: tf.Tensor) -> tf.Tensor:
    """LPGA's decoder NLL term from an exact J_h(z) u (--log_det=jvp): log|det J_h| / z_dim,
    as log_det_loss estimates it by a finite difference (docs/methods.md, "The log-det estimator")."""
    return directional_log_det(jvp) / jvp.shape[-1]


def latent_rms(mu: tf.Tensor) -> tf.Tensor:
    """Per-dimension RMS of the codes over the batch, held constant (VPGA's `z_mu_norm`).

    Under tf.distribute the step computes this over the global batch instead
    (parts.global_latent_rms),
    so that a mirrored step equals the single-device one.
    """
    mu = tf.cast(mu, tf.float32)
    return tf.stop_gradient(tf.sqrt(tf.reduce_mean(tf.square(mu), axis=0)))


def vae_reconstruction(h_mu: tf.Tensor, h_noisy: tf.Tensor, mu_rms: tf.Tensor) -> tf.Tensor:
    """VPGA's latent VAE reconstruction term between h(mu) and h(mu + noise), RMS-normalised.

    Args:
      h_mu: [N, z_dim] h(mu).
      h_noisy: [N, z_dim] h(mu + sigma * eps).
      mu_rms: [z_dim] per-dimension RMS of mu over the batch (constant).
    Returns:
      [N] tensor.
    """
    return squared_error(tf.cast(h_mu, tf.float32) / mu_rms, tf.cast(h_noisy, tf.float32) / mu_rms)


def vae_kl(mu: tf.Tensor, log_var: tf.Tensor) -> tf.Tensor:
    """KL(N(mu, sigma^2) || N(0, I)) averaged over latent dimensions, per example (`vkld`)."""
    mu = tf.cast(mu, tf.float32)
    log_var = tf.cast(log_var, tf.float32)
    return -tf.reduce_mean(0.5 * (1.0 + log_var - tf.square(mu) - tf.exp(log_var)), axis=1)
