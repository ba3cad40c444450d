"""The TF-GAN metrics shim: TF-GAN's classifier_metrics.py loaded without its package __init__."""

import sys

import numpy as np
import tensorflow as tf

from pga_tf.evaluation import tfgan_metrics


def test_shim_loads_the_installed_file_and_leaves_no_half_package_behind():
    path = tfgan_metrics.classifier_metrics.__file__
    assert path.endswith("tensorflow_gan/python/eval/classifier_metrics.py"), path
    # The placeholders used while loading are gone: `import tensorflow_gan` is not shadowed.
    assert not [m for m in sys.modules if m == "tensorflow_gan" or m.startswith("tensorflow_gan.")]


def test_fid_and_kid_functions_run_and_agree_with_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((300, 3))
    b = rng.standard_normal((200, 3)) * 1.5 + 0.7
    fid = float(tfgan_metrics.frechet_classifier_distance_from_activations(tf.constant(a), tf.constant(b)))
    # FID of the sample moments, computed with numpy's eigen-decomposition.
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(s1)
    r = v @ np.diag(np.sqrt(w)) @ v.T
    tr_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh(r @ s2 @ r), 0, None)).sum()
    want = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2) - 2 * tr_sqrt
    np.testing.assert_allclose(fid, want, rtol=1e-8)

    kid, std = tfgan_metrics.kernel_classifier_distance_and_std_from_activations(
        tf.constant(a), tf.constant(b), max_block_size=100
    )
    assert np.isfinite(float(kid)) and float(kid) > 0 and float(std) > 0
    np.testing.assert_allclose(
        float(tfgan_metrics.trace_sqrt_product(tf.constant(s1), tf.constant(s2))), tr_sqrt, rtol=1e-8
    )
