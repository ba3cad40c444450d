"""Each loss term against a numpy transcription of the reference formula on fixed inputs."""

import math

import numpy as np
import pytest
import tensorflow as tf

from pga_tf.methods import objectives

RNG = np.random.default_rng(0)
N, D = 5, 7


def _f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def test_squared_error_is_per_example_mean():
    a, b = _f32(N, 4, 4, 3), _f32(N, 4, 4, 3)
    got = objectives.squared_error(a, b).numpy()
    want = ((a - b) ** 2).reshape(N, -1).mean(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    # The reference's tf.losses.mean_squared_error is the batch mean of it.
    np.testing.assert_allclose(got.mean(), ((a - b) ** 2).mean(), rtol=1e-6)


def test_prior_nll_matches_gaussian_density():
    z = _f32(N, D)
    want = -(-0.5 * (z**2).sum(1) - 0.5 * D * math.log(2 * math.pi)) / D
    np.testing.assert_allclose(objectives.prior_nll(z).numpy(), want, rtol=1e-5)


def test_lpga_direction_has_reference_norm():
    delta = objectives.lpga_direction(tf.constant(_f32(N, D))).numpy()
    np.testing.assert_allclose(np.linalg.norm(delta, axis=1), 1e-2 * math.sqrt(D), rtol=1e-5)


def test_log_det_jacobian_matches_reference_formula():
    h_z, h_zd, noise = _f32(N, D), _f32(N, D), _f32(N, D)
    delta = objectives.lpga_direction(tf.constant(noise)).numpy()
    eps = 1e-2 * math.sqrt(D)
    # Reference: z_dim / 2 * log(sum(square(1 / epsilon * (h(z + delta) - h(z))), 1))
    want = D / 2 * np.log((((h_zd - h_z) / eps) ** 2).sum(1))
    got = objectives.log_det_jacobian(h_z, h_zd, delta).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(objectives.log_det_loss(h_z, h_zd, delta).numpy(), want / D, rtol=1e-5)


def test_lvpga_direction_and_log_det():
    noise, log_var = _f32(N, D), _f32(N, D)
    delta = objectives.lvpga_direction(tf.constant(noise), tf.constant(log_var)).numpy()
    np.testing.assert_allclose(delta, noise * (np.exp(0.5 * log_var) + 1e-2), rtol=1e-6)
    h_z, h_zd = _f32(N, D), _f32(N, D)
    eps = np.sqrt((delta**2).sum(1, keepdims=True))
    want = D / 2 * np.log((((h_zd - h_z) / eps) ** 2).sum(1)) / D
    np.testing.assert_allclose(objectives.log_det_loss(h_z, h_zd, delta).numpy(), want, rtol=1e-5)


def test_log_det_norm_is_constant_for_the_gradient():
    # The reference stops the gradient through epsilon; only (h(z+d) - h(z)) carries it.
    h_z, h_zd, delta = (tf.Variable(_f32(N, D)) for _ in range(3))
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(objectives.log_det_jacobian(h_z, h_zd, delta))
    assert tape.gradient(loss, delta) is None


def test_vae_reconstruction_rms_normalised():
    mu, h_mu, h_noisy = _f32(N, D), _f32(N, D), _f32(N, D)
    norm = np.sqrt((mu**2).mean(0))
    rms = objectives.latent_rms(mu).numpy()
    np.testing.assert_allclose(rms, norm, rtol=1e-6)
    want = ((h_mu / norm - h_noisy / norm) ** 2).mean(1)
    np.testing.assert_allclose(objectives.vae_reconstruction(h_mu, h_noisy, rms).numpy(), want, rtol=1e-5)


def test_vae_kl_matches_closed_form():
    mu, log_var = _f32(N, D), _f32(N, D)
    # KL(N(mu, s^2) || N(0, 1)) = 0.5 (s^2 + mu^2 - 1 - log s^2), averaged over dimensions.
    want = (0.5 * (np.exp(log_var) + mu**2 - 1 - log_var)).mean(1)
    np.testing.assert_allclose(objectives.vae_kl(mu, log_var).numpy(), want, rtol=1e-5)


@pytest.mark.parametrize("fn", ["squared_error", "vae_kl"])
def test_terms_are_float32_for_float16_inputs(fn):
    a, b = tf.constant(_f32(N, D), tf.float16), tf.constant(_f32(N, D), tf.float16)
    assert getattr(objectives, fn)(a, b).dtype == tf.float32
