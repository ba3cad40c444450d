"""FID/KID: the Frechet distance against closed forms, KID's blocking, and FID's behaviour on real
Fashion-MNIST features (train vs test, noise, increasing blur) with a classifier trained here."""

import math
import os

import numpy as np
import pytest
import scipy.linalg
import scipy.ndimage

from pga_tf.evaluation import fid


def _closed_form(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _random_cov(rng, d):
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_distance_equals_closed_form_for_known_gaussians():
    rng = np.random.default_rng(0)
    for d in (1, 3, 8):
        mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
        s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
        np.testing.assert_allclose(fid.frechet_distance(mu1, s1, mu2, s2), _closed_form(mu1, s1, mu2, s2), rtol=1e-7)
    # Diagonal covariances: sum (sqrt(s1) - sqrt(s2))^2 + ||mu1 - mu2||^2, by hand.
    s1, s2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 4.0, 1.0])
    mu1, mu2 = np.zeros(3), np.array([1.0, 2.0, 0.0])
    want = 5.0 + (1 - 2) ** 2 + 0 + (3 - 1) ** 2
    np.testing.assert_allclose(fid.frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2)), want, rtol=1e-9)
    assert abs(fid.frechet_distance(mu1, np.diag(s1), mu1, np.diag(s1))) < 1e-9


def test_fid_from_samples_approaches_the_closed_form():
    rng = np.random.default_rng(1)
    d, n = 4, 40000
    mu1, mu2 = np.zeros(d), np.array([0.5, -0.5, 0.0, 1.0])
    s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
    a = rng.multivariate_normal(mu1, s1, n)
    b = rng.multivariate_normal(mu2, s2, n)
    want = _closed_form(mu1, s1, mu2, s2)
    got = fid.fid_from_activations(a, b)  # TF-GAN's
    assert abs(got - want) < 0.03 * want + 0.05, (got, want)
    # From cached moments: the same number as TF-GAN's from the activations.
    np.testing.assert_allclose(fid.fid(fid.stats_of(a), fid.stats_of(b)), got, rtol=1e-9)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2000, 8)), rng.standard_normal((2000, 8))
    same, _ = fid.kid(a, b)  # unbiased: near 0 (its std from 2 blocks is itself too noisy to use)
    shifted, std = fid.kid(a, b + 0.5)
    assert abs(same) < 0.02 * shifted, (same, shifted)
    assert shifted > 5 * std > 0
    # Very unequal sizes still give every block >= 2 rows of each set; < 2 rows: undefined.
    small, _ = fid.kid(a[:5], b)
    assert np.isfinite(small)
    assert all(math.isnan(x) for x in fid.kid(a[:1], b))


def test_distances_over_draws_are_per_draw_values_with_mean_and_sample_std():
    from pga_tf.evaluation import evaluators

    rng = np.random.default_rng(3)
    real = fid.stats_of(rng.standard_normal((300, 4)))
    draws = [rng.standard_normal((300, 4)) + shift for shift in (0.0, 0.5, 1.0)]
    out = evaluators.distances(real, draws, seed=0)
    fids = [_closed_form(real.mu, real.sigma, d.mean(0), np.cov(d, rowvar=False)) for d in draws]
    np.testing.assert_allclose(out["fid"]["values"], fids, rtol=1e-6)
    assert out["fid"]["values"][0] < out["fid"]["values"][1] < out["fid"]["values"][2]
    assert out["fid"]["value"] == pytest.approx(np.mean(fids), rel=1e-6)
    assert out["fid"]["std"] == pytest.approx(np.std(fids, ddof=1), rel=1e-6)
    kids = [fid.kid(real.activations, d, 0)[0] for d in draws]
    assert out["kid"]["values"] == pytest.approx(kids) and out["kid"]["std"] == pytest.approx(np.std(kids, ddof=1))
    one = evaluators.distances(real, draws[:1])
    assert one["fid"]["std"] is None and one["kid"]["std"] is None


def test_stats_of_rejects_too_few_rows():
    with pytest.raises(ValueError):
        fid.stats_of(np.zeros((1, 3)))


# ------------------------------------------------------------------------- real Fashion-MNIST
FASHION = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"


@pytest.fixture(scope="module")
def fashion_features():
    """A tiny classifier trained for one pass over 6000 Fashion-MNIST images (a few seconds), as
    an Extractor, and 2000 train / 2000 test images."""
    if not os.path.exists(FASHION):
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    import keras
    import tensorflow as tf

    from pga_tf.evaluation import classifier, features

    x, y = classifier.load_split("fashion_mnist", "train")
    model = classifier.train(x[:6000], y[:6000], epochs=1, batch_size=64, seed=0)
    feats = keras.Model(model.inputs, model.get_layer(classifier.FEATURE_LAYER).output)
    ex = features.Extractor(
        "tiny", "classifier", "test", 128, lambda im: feats(im, training=False), image_shape=(28, 28, 1), batch_size=500
    )
    test = fid.load_real_images("fashion_mnist", 2000, "test")
    return ex, x[6000:8000], test, tf


def test_fid_real_vs_real_is_far_below_real_vs_noise(fashion_features):
    ex, train, test, _ = fashion_features
    real = fid.stats_of(ex.of_array(test))
    same = fid.fid(real, fid.stats_of(ex.of_array(train)))
    noise = np.random.default_rng(0).uniform(-1, 1, test.shape).astype(np.float32)
    far = fid.fid(real, fid.stats_of(ex.of_array(noise)))
    assert same < 0.05 * far, (same, far)


def test_fid_rises_monotonically_with_blur(fashion_features):
    ex, train, test, _ = fashion_features
    real = fid.stats_of(ex.of_array(test))
    values = [
        fid.fid(
            real, fid.stats_of(ex.of_array(scipy.ndimage.gaussian_filter(train, sigma=(0, s, s, 0)) if s else train))
        )
        for s in (0.0, 0.5, 1.0, 1.5, 2.5)
    ]
    assert all(a < b for a, b in zip(values, values[1:])), values


def test_fid_below_the_feature_dimension_is_flagged():
    """The rule: a warning exactly when a side has no more images than feature dimensions."""
    assert fid.few_samples_warning(10, 10000, 128, "FID-x").startswith(
        "FID-x of 10 generated vs 10000 real images: not more than the 128 feature dimensions"
    )
    assert fid.few_samples_warning(10000, 128, 128) is not None  # the real side counts too
    assert fid.few_samples_warning(129, 129, 128) is None


def test_real_vs_real_fid_is_inflated_below_the_feature_dimension():
    """Why the rule: two draws of one Gaussian in 32 dimensions (true FID 0) score far from 0
    when N <= 32, and near 0 well above it."""
    rng = np.random.default_rng(0)
    d = 32

    def real_vs_real(n):
        return fid.fid(fid.stats_of(rng.standard_normal((n, d))), fid.stats_of(rng.standard_normal((n, d))))

    assert real_vs_real(16) > 20 * real_vs_real(4000) and real_vs_real(4000) < 0.5
