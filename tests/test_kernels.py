"""pga_tf.nets.kernels: the fast formulations compute what the stock Keras layers do."""

import numpy as np
import pytest
import tensorflow as tf

from pga_tf.nets import kernels, models


@pytest.fixture
def stock_and_fast():
    """Run a function with the fast kernels off, then on; restores the setting."""
    before = kernels.enabled()

    def run(fn):
        out = []
        for on in (False, True):
            kernels.set_enabled(on)
            out.append(fn())
        return out

    yield run
    kernels.set_enabled(before)


def _close(a, b, name="", rtol=1e-5):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = max(np.abs(b).max(initial=0.0), 1e-12)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale, err_msg=name)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
@pytest.mark.parametrize("hw", [(7, 7), (14, 6)])
@pytest.mark.parametrize("c_out", [1, 3])
def test_phase_transposed_conv_equals_conv2d_transpose(k, hw, c_out):
    rng = np.random.default_rng(k)
    x = tf.constant(rng.standard_normal((2, *hw, 8)), tf.float32)
    w = tf.constant(rng.standard_normal((k, k, c_out, 8)), tf.float32)
    want = tf.nn.conv2d_transpose(x, w, [2, 2 * hw[0], 2 * hw[1], c_out], 2, "SAME")
    _close(kernels.phase_conv2d_transpose(x, w), want)


def _layer_case(layer, x):
    def run():
        xv = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xv)
            y = layer(xv)
            loss = tf.reduce_sum(tf.sin(y))  # a non-uniform upstream gradient
        return [y] + tape.gradient(loss, [xv] + layer.trainable_variables)

    return run


@pytest.mark.parametrize(
    "make, shape",
    [
        (lambda: kernels.Dense(7), (5, 12)),
        (lambda: kernels.Conv2D(16, 5, strides=2, padding="same"), (2, 28, 28, 1)),
        (lambda: kernels.Conv2D(16, 5, strides=2, padding="same"), (2, 32, 32, 3)),
        (lambda: kernels.Conv2DTranspose(1, 5, strides=2, padding="same"), (2, 14, 14, 16)),
        (lambda: kernels.Conv2DTranspose(3, 5, strides=2, padding="same"), (2, 16, 16, 16)),
    ],
)
def test_layers_match_stock_values_and_gradients(stock_and_fast, make, shape):
    layer = make()
    layer.build(shape)
    layer.bias.assign(np.random.default_rng(1).standard_normal(layer.bias.shape))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    stock, fast = stock_and_fast(_layer_case(layer, x))
    for i, (a, b) in enumerate(zip(fast, stock)):
        _close(a, b, f"output {i}")


def test_layers_keep_stock_names():
    assert kernels.Dense(3).name.startswith("dense")
    assert kernels.Conv2D(3, 3).name.startswith("conv2d")
    assert kernels.Conv2DTranspose(3, 3).name.startswith("conv2d_transpose")


# conv_64's input gradient at this seed sits near a ReLU kink: perturbing the stock decoder's
# output by 1e-7 (relative) moves it by 0.55%, as the fast kernels' float rounding does. The
# layer tests above pin the kernels themselves to float rounding.
@pytest.mark.parametrize("arch, channels, rtol", [("conv_mnist", 1, 1e-4), ("conv_32", 3, 1e-4), ("conv_64", 3, 2e-2)])
def test_models_match_stock_values_and_gradients(stock_and_fast, arch, channels, rtol):
    tf.keras.utils.set_random_seed(0)
    enc, dec = models.build_models(arch, 4, channels, use_bn=False, variational=True)
    z = tf.random.normal([2, 4])

    @tf.function
    def run():
        # Encoder gradients reach the images too: h = E(D(z)), as in the PGA step.
        with tf.GradientTape() as tape:
            tape.watch(z)
            x = dec(z, training=True)
            mu, log_var = enc(x, training=True)
            loss = tf.reduce_sum(tf.sin(mu)) + tf.reduce_sum(log_var) + tf.reduce_sum(x**3)
        return [x, mu] + tape.gradient(loss, [z] + enc.trainable_variables + dec.trainable_variables)

    stock, fast = stock_and_fast(lambda: [t.numpy() for t in tf.function(run.python_function)()])
    _close(fast[0], stock[0], "decoder output")
    _close(fast[1], stock[1], "encoder output", rtol=1e-5)
    for i, (a, b) in enumerate(zip(fast[2:], stock[2:])):
        assert np.linalg.norm(a - b) <= rtol * np.linalg.norm(b), f"gradient {i}"


def test_mixed_precision_layers_run_in_float16(stock_and_fast):
    layer = kernels.Conv2DTranspose(1, 5, strides=2, padding="same", dtype="mixed_float16")
    layer.build((2, 14, 14, 8))
    x = np.random.default_rng(0).standard_normal((2, 14, 14, 8)).astype(np.float32)
    stock, fast = stock_and_fast(lambda: layer(tf.constant(x)))
    assert fast.dtype == tf.float16
    _close(fast, stock, rtol=3e-3)
