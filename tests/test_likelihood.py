"""The exact latent likelihood (likelihood.py) against Jacobians computed independently here, and
its finite-difference column against the training loss's estimator (see test_log_det.py)."""

import numpy as np
import pytest
import tensorflow as tf

from pga_tf.evaluation import likelihood
from pga_tf.methods import objectives, pga
from pga_tf.nets import models


def _linear_models(a, b):
    """decoder z -> z A' (as a [N, d] 'image'), encoder x -> x B': h = E o D has J = B A."""
    decoder = lambda z, training=False: tf.matmul(z, a, transpose_b=True)  # noqa: E731
    encoder = lambda x, training=False: tf.matmul(x, b, transpose_b=True)  # noqa: E731
    return encoder, decoder


def test_exact_log_det_of_a_linear_map_in_any_chunking():
    rng = np.random.default_rng(0)
    d = 5
    a, b = rng.standard_normal((d, d)).astype(np.float32), rng.standard_normal((d, d)).astype(np.float32)
    lm = likelihood.LatentMap(*_linear_models(a, b), variational=False)
    z = rng.standard_normal((7, d)).astype(np.float32)
    want = np.linalg.slogdet(b.astype(np.float64) @ a.astype(np.float64))[1]
    for chunk in (None, 1, 3):
        np.testing.assert_allclose(likelihood.exact_log_det(lm, z, chunk), np.full(7, want), rtol=1e-4)


def _tiny(variational, seed=3, z_dim=4):
    tf.keras.utils.set_random_seed(seed)
    return models.build_models("conv_mnist", z_dim, 1, use_bn=False, variational=variational)


def _independent_log_det(enc, dec, z, variational):
    """slogdet of a Jacobian built row by row with tape.jacobian (no pfor batch_jacobian)."""
    out = []
    for row in z:
        zr = tf.constant(row[None])
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(zr)
            e = enc(dec(zr, training=False), training=False)
            h = e[0] if variational else e
        jac = tape.jacobian(h, zr, experimental_use_pfor=False).numpy()[0, :, 0, :]
        out.append(np.linalg.slogdet(jac.astype(np.float64))[1])
    return np.array(out)


@pytest.mark.parametrize("variational", [False, True])
def test_exact_log_det_matches_an_independent_jacobian(variational):
    enc, dec = _tiny(variational)
    z = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    got = likelihood.exact_log_det(likelihood.LatentMap(enc, dec, variational), z, chunk=2)
    np.testing.assert_allclose(got, _independent_log_det(enc, dec, z, variational), rtol=1e-4, atol=1e-4)


def test_finite_difference_column_is_the_training_estimator_and_sits_above_exact():
    # test_log_det.py's tiny model: the estimate per draw is the training loss's own estimator,
    # its mean over draws agrees with E_u[(d/2) log ||J u||^2] from the exact Jacobian, and that
    # expectation is never below the exact log|det J| (Jensen).
    enc, dec = _tiny(False)
    lm = likelihood.LatentMap(enc, dec, variational=False)
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, 4)).astype(np.float32)
    draws = 64
    noise = rng.standard_normal((draws, 2, 4)).astype(np.float32)
    est = likelihood.fd_log_det(lm, z, noise, pga.lpga_perturbation)  # [draws, 2]

    h = lambda v: enc(dec(v, training=False), training=False)  # noqa: E731
    for k in (0, draws - 1):
        delta = objectives.lpga_direction(tf.constant(noise[k]))
        training_estimator = objectives.log_det_jacobian(h(z), h(z + delta), delta).numpy()
        np.testing.assert_allclose(est[k], training_estimator, rtol=1e-6)

    exact = likelihood.exact_log_det(lm, z)
    np.testing.assert_allclose(exact, _independent_log_det(enc, dec, z, False), rtol=1e-4)
    jac = np.stack([lm.jacobian(tf.constant(z)).numpy().astype(np.float64)])[0]
    v = rng.standard_normal((20000, 4))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    samples = 4 / 2 * np.log((np.einsum("bij,kj->bki", jac, v) ** 2).sum(-1))
    expectation, mc_error = samples.mean(1), samples.std(1) / np.sqrt(samples.shape[1])
    spread = est.std(0) / np.sqrt(draws)
    assert np.all(np.abs(est.mean(0) - expectation) < 4 * spread + 0.02), (est.mean(0), expectation)
    assert np.all(expectation >= exact - 4 * mc_error), (expectation, exact)


def test_prior_nll_is_the_training_term_times_z_dim():
    z = np.random.default_rng(0).standard_normal((6, 5)).astype(np.float32)
    np.testing.assert_allclose(likelihood.prior_nll(z), objectives.prior_nll(tf.constant(z)).numpy() * 5, rtol=1e-6)
    np.testing.assert_allclose(
        likelihood.prior_nll(z), 0.5 * (z.astype(np.float64) ** 2).sum(1) + 2.5 * np.log(2 * np.pi), rtol=1e-5
    )


@pytest.mark.parametrize("method", ["lpga", "lvpga"])
def test_evaluate_report(method):
    enc, dec = _tiny(method == "lvpga")
    images = np.random.default_rng(0).uniform(-1, 1, (7, 28, 28, 1)).astype(np.float32)
    r = likelihood.evaluate(enc, dec, method, images, draws=3, seed=0, batch_size=4, progress=False)
    assert r["examples"] == 7 and r["z_dim"] == 4 and r["code"] == ("mu" if method == "lvpga" else "E(x)")
    per = r["per_example"]
    prior, exact = np.array(per["prior_nll"]), np.array(per["log_det_exact"])
    assert prior.shape == exact.shape == (7,) and np.all(np.isfinite(exact))
    np.testing.assert_allclose(r["nll_exact"]["mean"], np.mean(prior + exact))
    np.testing.assert_allclose(r["nll_exact_per_dim"], np.mean(prior + exact) / 4)
    # The code the NLL is evaluated at is E(x) (LVPGA: mu).
    out = enc(tf.constant(images), training=False)
    mu = (out[0] if method == "lvpga" else out).numpy()
    np.testing.assert_allclose(prior, likelihood.prior_nll(mu), rtol=1e-5)
    fd = r["finite_difference"]
    assert list(fd) == ([f"{method}_direction"] + (["lpga_direction"] if method == "lvpga" else []))
    assert fd[f"{method}_direction"]["used_in_training"]
    for entry in fd.values():
        assert entry["draws"] == 3 and np.isfinite(entry["log_det"]["mean"])
        per_image = np.array(per["log_det_fd_" + entry_name(fd, entry)])
        np.testing.assert_allclose(entry["minus_exact"]["mean"], np.mean(per_image - exact), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="no latent likelihood"):
        likelihood.evaluate(enc, dec, "vpga", images)


def entry_name(fd, entry):
    return next(k for k, v in fd.items() if v is entry).replace("_direction", "")
