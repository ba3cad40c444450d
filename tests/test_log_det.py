"""The finite-difference log-det estimator against exact Jacobians (batch_jacobian + slogdet).

The estimator (d/2) log ||J u||^2, u a random unit direction, equals log|det J| exactly when J is
a scaled orthogonal matrix; for other J it is the paper's approximation, whose expectation over u
is a second, independently computable number (numpy Monte Carlo with the exact J).
"""

import numpy as np
import tensorflow as tf

from pga_tf.methods import objectives
from pga_tf.nets import models

D = 6


def _estimate(h, z, noise):
    delta = objectives.lpga_direction(noise)
    return objectives.log_det_jacobian(h(z), h(z + delta), delta).numpy()


def _random_orthogonal(rng, d):
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def test_exact_for_scaled_orthogonal_map():
    rng = np.random.default_rng(1)
    a = 1.7 * _random_orthogonal(rng, D)
    h = lambda z: tf.matmul(z, a, transpose_b=True)  # noqa: E731
    z = tf.constant(rng.standard_normal((4, D)), tf.float32)
    exact = np.linalg.slogdet(a.astype(np.float64))[1]
    got = _estimate(h, z, tf.constant(rng.standard_normal((4, D)), tf.float32))
    np.testing.assert_allclose(got, exact, rtol=1e-4)


def test_matches_directional_formula_for_general_linear_map():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((D, D)).astype(np.float32)
    h = lambda z: tf.matmul(z, a, transpose_b=True)  # noqa: E731
    z = tf.constant(rng.standard_normal((3, D)), tf.float32)
    noise = rng.standard_normal((3, D)).astype(np.float32)
    u = noise / np.linalg.norm(noise, axis=1, keepdims=True)
    want = D / 2 * np.log(((u.astype(np.float64) @ a.T.astype(np.float64)) ** 2).sum(1))
    np.testing.assert_allclose(_estimate(h, z, tf.constant(noise)), want, rtol=2e-3)


def _exact_jacobian(h, z):
    z = tf.constant(z)
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = h(z)
    return tape.batch_jacobian(out, z).numpy().astype(np.float64)


def test_on_a_tiny_encoder_decoder():
    tf.keras.utils.set_random_seed(3)
    z_dim = 4
    enc, dec = models.build_models("conv_mnist", z_dim, 1, use_bn=False, variational=False)
    h = lambda z: enc(dec(z, training=True), training=True)  # noqa: E731
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, z_dim)).astype(np.float32)
    jac = _exact_jacobian(h, z)  # [2, d, d]
    exact = np.linalg.slogdet(jac)[1]

    draws = 64
    z_rep = tf.constant(np.repeat(z, draws, axis=0))
    noise = rng.standard_normal((2 * draws, z_dim)).astype(np.float32)
    est = _estimate(h, z_rep, tf.constant(noise)).reshape(2, draws)

    # 1) Per draw: the finite difference agrees with (d/2) log ||J u||^2 from the exact Jacobian.
    u = (noise / np.linalg.norm(noise, axis=1, keepdims=True)).reshape(2, draws, z_dim)
    directional = z_dim / 2 * np.log((np.einsum("bij,bkj->bki", jac, u) ** 2).sum(-1))
    np.testing.assert_allclose(est, directional, rtol=0.05)

    # 2) Averaged over draws: agrees with the estimator's expectation, computed from the exact
    #    Jacobian by an independent numpy Monte Carlo, within the estimator's spread.
    v = rng.standard_normal((20000, z_dim))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    samples = z_dim / 2 * np.log((np.einsum("bij,kj->bki", jac, v) ** 2).sum(-1))
    expectation, mc_error = samples.mean(1), samples.std(1) / np.sqrt(samples.shape[1])
    spread = est.std(axis=1) / np.sqrt(draws)
    print("estimate", est.mean(1), "+-", spread, "expectation", expectation, "exact", exact)
    assert np.all(np.abs(est.mean(1) - expectation) < 4 * spread + 0.02), (est.mean(1), expectation)

    # 3) Its bias is one-sided: log(u'Au) >= u'(log A)u for unit u (Jensen over A's
    #    eigenbasis), whose mean over u is log det(A) / d; with A = J'J the expectation of the
    #    estimate is never below the exact log|det J|.
    assert np.all(expectation >= exact - 4 * mc_error), (expectation, exact)
