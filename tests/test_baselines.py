"""WAE-MMD and RAE: the loss terms against numpy and finite differences, the step's combination of
them, their batch statistics on two replicas, and 200 training steps of each method on synthetic
data. The two-replica check runs in a subprocess (this file as a script): logical CPU devices must
be configured before TensorFlow initialises."""

import itertools
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from pga_tf import config, methods
from pga_tf.methods import baseline_objectives as baselines
from pga_tf.methods import parts as step_lib
from pga_tf.training import trainer as trainer_lib

SCALES = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)  # tolstikhin/wae wae.py mmd_penalty, written out again


def numpy_imq_mmd(q, p, scales=SCALES, var=1.0):
    """The U-statistic of WAE Algorithm 2, one pair at a time."""
    n, m, d = len(q), len(p), q.shape[1]
    total = 0.0
    for s in scales:
        c = 2 * d * var * s

        def k(a, b, c=c):
            return c / (c + np.sum((a - b) ** 2))

        qq = sum(k(q[i], q[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
        pp = sum(k(p[i], p[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
        qp = sum(k(q[i], p[j]) for i in range(n) for j in range(m)) / (n * m)
        total += qq + pp - 2 * qp
    return total


def numpy_imq_mmd_biased(q, p, scales=SCALES):
    """The V-statistic (diagonal included): what a biased estimator would return."""
    d = q.shape[1]
    total = 0.0
    for s in scales:
        c = 2 * d * s

        def k(a, b, c=c):
            return (c / (c + ((a[:, None] - b[None]) ** 2).sum(-1))).mean()

        total += k(q, q) + k(p, p) - 2 * k(q, p)
    return total


def test_imq_mmd_matches_numpy_on_fixed_tensors():
    rng = np.random.default_rng(0)
    q = rng.normal(0.5, 1.5, (7, 3)).astype(np.float32)
    p = rng.normal(size=(5, 3)).astype(np.float32)
    got = float(baselines.imq_mmd(tf.constant(q), tf.constant(p)))
    np.testing.assert_allclose(got, numpy_imq_mmd(q.astype(np.float64), p.astype(np.float64)), rtol=1e-5, atol=2e-6)
    # One scale at a time, and another prior variance (C = 2 * z_dim * var * s).
    for s in (0.1, 1.0, 10.0):
        got = float(baselines.imq_mmd(tf.constant(q), tf.constant(p), scales=(s,), prior_variance=2.0))
        np.testing.assert_allclose(
            got, numpy_imq_mmd(q.astype(np.float64), p.astype(np.float64), (s,), 2.0), atol=2e-6, rtol=1e-5
        )
    assert baselines.IMQ_SCALES == SCALES


def test_imq_mmd_is_unbiased_when_the_codes_follow_the_prior():
    rng = np.random.default_rng(1)
    n, d, trials = 8, 4, 400
    q, p = rng.normal(size=(2, trials, n, d)).astype(np.float32)
    stats = tf.vectorized_map(lambda qp: baselines.imq_mmd(qp[0], qp[1]), tf.stack([q, p], 1)).numpy()
    tolerance = 4 * stats.std(ddof=1) / np.sqrt(trials)  # 4 standard errors
    assert abs(stats.mean()) < tolerance, (stats.mean(), tolerance)
    # The test has teeth: a biased (V-statistic) estimate is further from 0 than that tolerance,
    # and codes that do not follow the prior give a clearly positive value.
    biased = np.mean([numpy_imq_mmd_biased(a, b) for a, b in zip(q[:100], p[:100])])
    assert biased > 2 * tolerance, (biased, tolerance)
    shifted = float(baselines.imq_mmd(tf.constant(q[0] + 1.0), tf.constant(p[0])))
    assert shifted > 10 * tolerance


def test_rae_terms_match_numpy():
    rng = np.random.default_rng(2)
    z = rng.normal(size=(5, 3)).astype(np.float32)
    np.testing.assert_allclose(baselines.latent_l2(tf.constant(z)).numpy(), 0.5 * (z**2).sum(1), rtol=1e-6)
    kernels = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=(2, 2, 4, 1)).astype(np.float32)]
    np.testing.assert_allclose(
        float(baselines.weight_decay([tf.constant(k) for k in kernels])),
        sum((k.astype(np.float64) ** 2).sum() for k in kernels),
        rtol=1e-6,
    )


def _tiny_decoder():
    """A float64 decoder z [N, 3] -> images [N, 2, 3, 1] in [-1, 1], for exact finite differences."""
    keras.utils.set_random_seed(0)
    return keras.Sequential(
        [
            keras.Input((3,), dtype="float64"),
            keras.layers.Dense(8, activation="tanh", dtype="float64"),
            keras.layers.Dense(6, activation="tanh", dtype="float64"),
            keras.layers.Reshape((2, 3, 1), dtype="float64"),
        ]
    )


def test_gradient_penalty_matches_a_finite_difference_of_the_decoder():
    decoder = _tiny_decoder()
    z = np.random.default_rng(3).normal(size=(4, 3))
    gp, images = baselines.decoder_gradient_penalty(decoder, tf.constant(z))
    np.testing.assert_allclose(images.numpy(), decoder(z).numpy())

    def energy(codes):  # the official code's sum of squared [0, 1] pixels, per example
        unit = (decoder(codes).numpy() + 1) / 2
        return (unit**2).reshape(len(codes), -1).sum(1)

    h = 1e-6
    grad = np.stack([(energy(z + h * e) - energy(z - h * e)) / (2 * h) for e in np.eye(3)], axis=1)
    np.testing.assert_allclose(gp.numpy(), (grad**2).mean(1), rtol=1e-6)

    # Double backprop: the penalty's gradient w.r.t. a decoder weight is that of the weight's
    # finite difference.
    kernel = decoder.layers[0].kernel
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(baselines.decoder_gradient_penalty(decoder, tf.constant(z))[0])
    analytic = tape.gradient(total, kernel).numpy()[1, 2]
    value = kernel.numpy()
    fd = []
    for sign in (1, -1):
        bumped = value.copy()
        bumped[1, 2] += sign * 1e-6
        kernel.assign(bumped)
        fd.append(float(tf.reduce_sum(baselines.decoder_gradient_penalty(decoder, tf.constant(z))[0])))
    kernel.assign(value)
    np.testing.assert_allclose(analytic, (fd[0] - fd[1]) / 2e-6, rtol=1e-5)


def _synthetic_images(n, seed=0):
    """Images from a 3-dim latent: smooth enough to reconstruct, varied enough to need codes."""
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(3, 28 * 28))
    return np.tanh(rng.normal(size=(n, 3)) @ basis / 2).reshape(n, 28, 28, 1).astype(np.float32)


@pytest.mark.parametrize(
    "method,extra", [("wae", {}), ("rae", {}), ("rae", {"rae_reg": "gp"})], ids=["wae", "rae_l2", "rae_gp"]
)
def test_step_adds_the_terms_with_their_coefficients(method, extra):
    cfg = config.for_method(method, z_dim=4, batch_size=8, wae_lambda=0.7, rae_beta=0.3, rae_lambda=0.2, **extra)
    trainer = trainer_lib.Trainer(cfg, (28, 28, 1))
    images = tf.constant(_synthetic_images(8))
    noise = step_lib.draw_noise(tf.random.Generator.from_seed(0), 8, 4)
    out = methods.get(method).resolve("losses")(cfg, trainer.encoder, trainer.decoder, images, noise, tf.constant(0))
    z = trainer.encoder(images, training=True)
    rec = ((images - trainer.decoder(z, training=True)) ** 2).numpy().reshape(8, -1).mean(1)
    np.testing.assert_allclose(out.terms["img_rec"].numpy(), rec, rtol=1e-5)
    if method == "wae":
        mmd = numpy_imq_mmd(z.numpy().astype(np.float64), noise.prior.numpy().astype(np.float64))
        np.testing.assert_allclose(out.terms["mmd"].numpy(), np.full(8, mmd), rtol=1e-4)
        want = rec + 0.7 * mmd
    else:
        z_l2 = 0.5 * (z.numpy() ** 2).sum(1)
        reg = out.terms[f"dec_{cfg.rae_reg}"].numpy()
        if cfg.rae_reg == "l2":
            kernels = [v.numpy() for v in trainer.decoder.trainable_variables if "kernel" in v.path]
            assert len(kernels) == 4  # conv_mnist's decoder: 2 dense, 2 transposed conv
            np.testing.assert_allclose(
                reg, np.full(8, sum((k.astype(np.float64) ** 2).sum() for k in kernels)), rtol=1e-5
            )
        else:
            assert reg.shape == (8,) and np.all(reg > 0)
        want = rec + 0.3 * z_l2 + 0.2 * reg
    np.testing.assert_allclose(out.encoder.numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(out.decoder.numpy(), want, rtol=1e-5)
    np.testing.assert_allclose(out.surrogate.numpy(), want, rtol=1e-5)


@pytest.mark.slow_inproc
@pytest.mark.parametrize(
    "method,extra", [("wae", {}), ("rae", {}), ("rae", {"rae_reg": "gp"})], ids=["wae", "rae_l2", "rae_gp"]
)
def test_200_steps_lower_the_reconstruction_loss(method, extra):
    # Adam: SGD on these nets needs more than 200 steps to leave the mean image (so does the AE).
    cfg = config.for_method(method, z_dim=4, batch_size=16, optimizer="adam", lr=1e-3, seed=0, **extra)
    trainer = trainer_lib.Trainer(cfg, (28, 28, 1))
    data = tf.data.Dataset.from_tensor_slices(_synthetic_images(256)).repeat().batch(16)
    iterator = iter(data)
    first = trainer.train_steps(iterator, 10)
    trainer.train_steps(iterator, 180)
    last = trainer.train_steps(iterator, 10)
    assert trainer.step == 200
    assert last["img_rec"] < 0.5 * first["img_rec"], (first, last)
    assert all(np.isfinite(v) for v in last.values())


# ------------------------------------------------------------------------ two replicas
def check_two_replicas():
    """One mirrored step of WAE and RAE-L2: the metrics they report for the global batch."""
    from pga_tf import cli

    cli.split_cpu(2)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    images = _synthetic_images(8)
    prior = np.random.default_rng(5).normal(size=(8, 4)).astype(np.float32)

    def halves(ctx):
        i = ctx.replica_id_in_sync_group
        return images[4 * i : 4 * i + 4], prior[4 * i : 4 * i + 4]

    out = {}
    for method in ("wae", "rae"):
        cfg = config.for_method(method, z_dim=4, batch_size=8, wae_lambda=0.7, rae_beta=0.3, rae_lambda=0.2)
        trainer = trainer_lib.Trainer(cfg, (28, 28, 1), strategy)
        z = trainer.encoder(images, training=True).numpy().astype(np.float64)
        kernels = [v.numpy().astype(np.float64) for v in trainer.decoder.trainable_variables if "kernel" in v.path]

        @tf.function
        def mirrored_step(values):
            x, p = values
            return strategy.run(trainer.replica_step, args=(x, step_lib.Noise(p, p, p)))

        per_replica = mirrored_step(strategy.experimental_distribute_values_from_function(halves))
        metrics = {k: float(strategy.reduce("SUM", v, axis=None)) for k, v in per_replica.items()}
        if method == "wae":
            expected = np.mean(
                [numpy_imq_mmd(z[:4], prior[:4].astype(np.float64)), numpy_imq_mmd(z[4:], prior[4:].astype(np.float64))]
            )
            out[method] = [metrics["mmd"], float(expected)]
        else:
            out[method] = [metrics["dec_l2"], float(sum((k**2).sum() for k in kernels))]
    return out


@pytest.mark.e2e
def test_batch_statistics_on_two_replicas():
    """The MMD is each replica's estimate on its half, averaged; the weight decay counts once."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": root}
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__)], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    out = json.loads(lines[-1][len("RESULTS ") :])
    np.testing.assert_allclose(*out["wae"], rtol=1e-4)
    np.testing.assert_allclose(*out["rae"], rtol=1e-5)


if __name__ == "__main__":
    print("RESULTS " + json.dumps(check_two_replicas()))
