"""Latent samplers: the GMM fit against the mixture that made the codes, its samples' moments
against the fitted parameters (computed here in numpy), stateless seeding, and the builder."""

import numpy as np
import pytest
import tensorflow as tf

from pga_tf import samplers
from pga_tf.nets import models

# The mixture the codes come from: 3 components in 2-D, unequal weights, full covariances.
WEIGHTS = np.array([0.2, 0.3, 0.5])
MEANS = np.array([[-4.0, 0.0], [0.0, 4.0], [4.0, -1.0]])
COVS = np.array([[[1.0, 0.5], [0.5, 1.0]], [[0.5, -0.2], [-0.2, 0.8]], [[1.5, 0.0], [0.0, 0.3]]])
N = 6000


def mixture_codes(n=N, seed=0):
    rng = np.random.default_rng(seed)
    k = rng.choice(3, size=n, p=WEIGHTS)
    eps = rng.standard_normal((n, 2))
    return MEANS[k] + np.einsum("nij,nj->ni", np.linalg.cholesky(COVS)[k], eps)


@pytest.fixture(scope="module")
def fitted():
    return samplers.GMMSampler.fit(mixture_codes(), components=3, seed=0)


def _params(sampler):
    return (
        tf.nn.softmax(sampler.logits).numpy().astype(np.float64),
        sampler.loc.numpy().astype(np.float64),
        sampler.scale_tril.numpy().astype(np.float64),
    )


def test_fit_recovers_the_mixture(fitted):
    weights, means, tril = _params(fitted)
    order = [int(np.argmin(np.linalg.norm(means - m, axis=1))) for m in MEANS]
    assert sorted(order) == [0, 1, 2]
    # Tolerances: a weight's standard error is sqrt(w (1 - w) / N) <= 0.0065, so 0.02 is 3 of
    # them; a mean's is at most sqrt(1.5 / (0.2 N)) = 0.035 per coordinate, so 0.12 is 3.5.
    np.testing.assert_allclose(weights[order], WEIGHTS, atol=0.02)
    np.testing.assert_allclose(means[order], MEANS, atol=0.12)
    covs = tril @ np.transpose(tril, (0, 2, 1))
    np.testing.assert_allclose(covs[order], COVS, atol=0.15)
    info = fitted.describe()
    assert info["kind"] == "gmm" and info["components"] == 3 and info["codes"] == N
    assert info["converged"] and np.isfinite(info["mean_log_likelihood"])


def test_samples_have_the_fitted_mixtures_mean_and_covariance(fitted):
    weights, means, tril = _params(fitted)
    covs = tril @ np.transpose(tril, (0, 2, 1))
    # Moments of a mixture: E z = sum_k w_k mu_k; Cov z = sum_k w_k (S_k + mu_k mu_k^T) - E z E z^T.
    mean = weights @ means
    cov = np.einsum("k,kij->ij", weights, covs + np.einsum("ki,kj->kij", means, means)) - np.outer(mean, mean)
    n = 200_000
    z = fitted.sample(tf.constant(n), tf.constant(3, tf.int64)).numpy().astype(np.float64)
    assert z.shape == (n, 2) and z.dtype == np.float64
    # 5 standard errors: the mean's is sqrt(var / n); a covariance entry's is below
    # sqrt((S_ii S_jj + S_ij^2) / n) times the kurtosis excess of a 3-mode mixture (< 2).
    np.testing.assert_allclose(z.mean(0), mean, atol=5 * np.sqrt(np.diag(cov) / n).max())
    se = 2 * np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(np.cov(z, rowvar=False) - cov) < 5 * se), (np.cov(z, rowvar=False), cov)


def test_the_sampled_density_is_scikit_learns_fit(fitted):
    from sklearn.mixture import GaussianMixture

    # The same EM (same codes, same seed) in scikit-learn directly: the TFP mixture the sampler
    # draws from must have its density (weights, means and the Cholesky factors' orientation).
    gmm = GaussianMixture(3, covariance_type="full", random_state=0).fit(mixture_codes())
    x = mixture_codes(500, seed=1).astype(np.float32)
    np.testing.assert_allclose(fitted.distribution().log_prob(x).numpy(), gmm.score_samples(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", ["prior", "gmm"])
def test_sampling_is_stateless(kind, fitted):
    sampler = fitted if kind == "gmm" else samplers.PriorSampler(2)
    seed = tf.constant(2**40 + 5, tf.int64)  # above int32: still its own seed
    a = sampler.sample(tf.constant(7), seed).numpy()
    traced = tf.function(sampler.sample, input_signature=[tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int64)])
    np.testing.assert_array_equal(traced(tf.constant(7), seed).numpy(), a)
    np.testing.assert_array_equal(sampler.sample(tf.constant(7), seed).numpy(), a)
    assert a.shape == (7, 2) and a.dtype == np.float32
    for other in (5, 2**40 + 6):
        assert not np.allclose(sampler.sample(tf.constant(7), tf.constant(other, tf.int64)).numpy(), a)


def test_gmm_needs_as_many_codes_as_components():
    with pytest.raises(samplers.SamplerError, match="10-component GMM needs at least 10 training codes; got 4"):
        samplers.GMMSampler.fit(np.zeros((4, 3)), components=10)
    with pytest.raises(samplers.SamplerError, match="NaN or Inf"):
        samplers.GMMSampler.fit(np.full((20, 3), np.nan), components=2)


def test_build_fits_the_gmm_on_the_encoders_mean_codes():
    encoder, _ = models.build_models("conv_mnist", 3, 1, use_bn=False, variational=True)
    images = np.random.default_rng(0).uniform(-1, 1, (40, 28, 28, 1)).astype(np.float32)
    source = samplers.run_source(3, encoder, True, lambda: tf.data.Dataset.from_tensor_slices(images), batch_size=16)
    mu = encoder(images, training=False)[0].numpy()
    np.testing.assert_allclose(source.codes(0), mu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(source.codes(25), mu[:25], rtol=1e-5, atol=1e-6)
    logs = []
    sampler = samplers.build("gmm", source, samplers.Options(gmm_components=2, gmm_codes=30, gmm_seed=1), logs.append)
    reference = samplers.GMMSampler.fit(mu[:30], components=2, seed=1)
    for got, want in zip(_params(sampler), _params(reference)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert sampler.info["codes"] == 30 and "2 full-covariance components fitted on 30 training codes" in logs[0]
    assert isinstance(samplers.build("prior", samplers.Source(3)), samplers.PriorSampler)
    with pytest.raises(samplers.SamplerError, match="needs the run's training images"):
        samplers.build("gmm", samplers.Source(3))
    with pytest.raises(ValueError, match="unknown sampler 'flow'"):
        samplers.build("flow", samplers.Source(3))


@pytest.mark.parametrize("case", ["two distinct codes", "as many codes as components"])
def test_a_degenerate_gmm_fit_is_named_in_one_line_and_no_library_warning_leaks(case, capfd):
    import warnings

    rng = np.random.default_rng(0)
    if case == "two distinct codes":
        codes, k = np.repeat(rng.normal(size=(2, 4)), 100, axis=0), 10
        expected = f"only {len(np.unique(codes, axis=0))} distinct codes for {k} components"
    else:
        codes, k = rng.normal(size=(64, 4)), 64
        expected = "components hold at most one code"
    source = samplers.Source(4, codes=lambda n: codes)
    lines = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sampler = samplers.build("gmm", source, samplers.Options(gmm_components=k), lines.append)
    assert not caught, [str(w.message) for w in caught]
    assert capfd.readouterr().err == ""
    warned = [l for l in lines if l.startswith("warning:")]
    assert len(warned) == 1 and expected in warned[0], lines
    assert expected in sampler.describe()["degenerate"]


def test_a_sound_gmm_fit_is_not_called_degenerate(fitted):
    assert fitted.describe()["degenerate"] is None
