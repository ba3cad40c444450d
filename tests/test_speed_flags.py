"""--mixed_precision and --jit_compile: a few steps on CPU, finite, float32 where it matters."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pga_tf.training import trainer as trainer_lib
from tests.helpers import SHAPE, fixed_noise, tiny_cfg, uniform_images


@pytest.fixture(autouse=True)
def float32_policy():
    """No test here may leave the process in mixed precision, whatever it asserts."""
    yield
    keras.mixed_precision.set_global_policy("float32")


def _images(n, seed=0):
    return tf.constant(uniform_images(n, seed))


def _dataset():
    return tf.data.Dataset.from_tensors(_images(8)).repeat()


# BN off takes the fused step (step.fused_method_losses), BN on the plain one.
@pytest.mark.slow_inproc
@pytest.mark.parametrize("method,use_bn", [("lpga", False), ("vpga", True)])
def test_mixed_precision_runs_float16_nets_with_float32_losses(method, use_bn):
    trainer = trainer_lib.Trainer(tiny_cfg(method, precision="mixed_float16", use_bn=use_bn), SHAPE)
    # The Trainer's policy stays with its models: later models in the process are float32.
    assert keras.mixed_precision.global_policy().name == "float32"
    assert isinstance(trainer.optimizer, keras.optimizers.LossScaleOptimizer)
    # The bodies compute in float16; the heads and the decoder's tanh in float32.
    assert trainer.encoder.blocks[0].layer.compute_dtype == "float16"
    assert trainer.decoder.blocks[0].layer.compute_dtype == "float16"
    assert trainer.encoder.mu.compute_dtype == trainer.decoder.tanh.compute_dtype == "float32"
    assert all(v.dtype == "float32" for v in trainer.encoder.weights + trainer.decoder.weights)
    images = _images(8)
    assert trainer.decoder(tf.zeros([2, 4]), training=False).dtype == tf.float32
    mu = trainer.encode_mean(images)
    assert mu.dtype == tf.float32
    out = trainer.losses(images, fixed_noise(8, 4))
    losses = {"encoder": out.encoder, "decoder": out.decoder, **out.terms}
    if out.surrogate is not None:
        losses["surrogate"] = out.surrogate
    for name, value in losses.items():
        assert value.dtype == tf.float32, name  # log-dets and NLLs included
    metrics = trainer.train_steps(iter(_dataset()), 3)
    assert trainer.step == 3
    assert all(np.isfinite(v) for v in metrics.values()), metrics


@pytest.mark.parametrize("method", ["lpga"])
def test_jit_compiled_step_matches_the_plain_step(method):
    images, noise = _images(8), fixed_noise(8, 4)
    results = []
    for jit in (False, True):
        tf.keras.utils.set_random_seed(0)  # the same initial weights for both
        trainer = trainer_lib.Trainer(tiny_cfg(method, jit_compile=jit), SHAPE)
        before = [v.numpy() for v in trainer.encoder.weights + trainer.decoder.weights]
        step = tf.function(trainer.replica_step, jit_compile=jit)
        metrics = step(images, noise)
        after = [v.numpy() for v in trainer.encoder.weights + trainer.decoder.weights]
        results.append((before, after, {k: float(v) for k, v in metrics.items()}))
    (before, plain, plain_metrics), (_, jitted, jit_metrics) = results
    assert plain_metrics == pytest.approx(jit_metrics, rel=1e-4, abs=1e-6)
    # XLA fuses and reorders float arithmetic, and the log-det's finite difference amplifies
    # round-off, so the updates agree to about 1e-2 of their size (checked per variable).
    for b, p, j in zip(before, plain, jitted):
        np.testing.assert_allclose(j, p, rtol=0, atol=1e-2 * np.abs(p - b).max() + 1e-7)


def test_jit_compile_trains_a_few_finite_steps():
    trainer = trainer_lib.Trainer(tiny_cfg("lpga", jit_compile=True, use_bn=True), SHAPE)
    metrics = trainer.train_steps(iter(_dataset()), 3)
    assert trainer.step == 3
    assert all(np.isfinite(v) for v in metrics.values()), metrics
