"""Faster implementations of three ops of the nets: the same values and gradients, to float rounding.

On this project's CPUs (TensorFlow's oneDNN kernels) three ops of the conv nets run far below
the rate of the others, and each has an equivalent formulation that does not:

* A dense layer's input gradient dy @ W^T, which TensorFlow computes as MatMul(transpose_b=True):
  2-3x slower than the forward x @ W at these shapes (6272x1024). `tf.einsum` of the same product
  runs at the forward's speed, so `Dense` takes its input gradient that way.
* A stride-2 'same' transposed convolution to few channels (the decoders' image layer):
  Conv2DBackpropInput with one output channel ran at ~7 GFLOP/s where the other convolutions run
  at 150-250. Each output pixel parity (phase) is a stride-1 convolution of the input, so the
  layer is one stride-1 convolution to 4x the channels followed by depth_to_space (3x faster).
  Its gradients are the usual ones (a strided Conv2D and Conv2DBackpropFilter, both fast).
* A stride-2 'same' convolution's input gradient from few channels (the encoders' image layer,
  needed wherever an encoder's gradient reaches its input, as in h = E(D(z))): the same slow
  Conv2DBackpropInput, computed the same phase-wise way.

`Dense`, `Conv2D` and `Conv2DTranspose` are the Keras layers with these calls (same variables,
names and checkpoints); models.py builds its nets from them. `set_enabled(False)` (or the
environment variable PGA_FAST_KERNELS=0) makes them the stock layers again for functions traced
afterwards: tests compare the two, and the benchmark measures both.
"""

from __future__ import annotations

import functools
import os

import keras
import numpy as np
import tensorflow as tf

# Few-channel convolutions are the slow ones; wide ones are left to the stock kernels.
MAX_PHASE_CHANNELS = 4

_enabled = os.environ.get("PGA_FAST_KERNELS", "1") != "0"


def set_enabled(on: bool) -> None:
    """Use the fast formulations in functions traced from now on (default: on)."""
    global _enabled
    _enabled = bool(on)


def enabled() -> bool:
    return _enabled


# ------------------------------------------------------------------------------------- dense
@tf.custom_gradient
def matmul(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """x @ w for [N, K] x [K, M], whose input gradient is an einsum (not MatMul transpose_b)."""

    def grad(dy):
        return tf.einsum("nm,km->nk", dy, w), tf.matmul(x, dy, transpose_a=True)

    return tf.matmul(x, w), grad


# ----------------------------------------------------------- stride-2 transposed convolution
@functools.cache
def _phase_plan(kernel: int) -> tuple[int, int, np.ndarray, np.ndarray]:
    """How a stride-2 'same' transposed convolution with a `kernel`-wide window splits by phase.

    The forward convolution (stride 2, 'same', input 2n, output n) pads p = (kernel - 2) // 2
    before, so y[i] = sum_t z[2i + t - p] w[t], and its transpose is
    out[2r + a] = sum over taps t = a + p (mod 2) of x[r + d] w[t], d = (a + p - t) / 2.
    Returns (d_min, d_max, tap, valid): for window offset u = d - d_min and phase a, tap[u, a] is
    the kernel tap (valid[u, a] whether there is one).
    """
    p = (kernel - 2) // 2
    offsets = {a: {(a + p - t) // 2: t for t in range(kernel) if (t - a - p) % 2 == 0} for a in (0, 1)}
    d_min = min(min(o) for o in offsets.values())
    d_max = max(max(o) for o in offsets.values())
    width = d_max - d_min + 1
    tap = np.zeros((width, 2), np.int64)
    valid = np.zeros((width, 2), bool)
    for a in (0, 1):
        for d, t in offsets[a].items():
            tap[d - d_min, a], valid[d - d_min, a] = t, True
    return d_min, d_max, tap, valid


def _phase_kernel(w: tf.Tensor) -> tuple[tf.Tensor, int, int]:
    """[k, k, out, in] transposed-conv kernel -> [u, u, in, 4 * out] stride-1 phase kernel."""
    k = w.shape[0]
    assert w.shape[1] == k, "square kernels only"
    d_min, d_max, tap, valid = _phase_plan(k)
    width = d_max - d_min + 1
    c_out, c_in = w.shape[2], w.shape[3]
    # Index (u, v, a, b) -> flat tap t_a(u) * k + t_b(v); missing taps read index 0 and are masked.
    flat = tap[:, None, :, None] * k + tap[None, :, None, :]  # [u, v, a, b]
    mask = (valid[:, None, :, None] & valid[None, :, None, :]).astype(np.float32)
    taps = tf.gather(tf.reshape(w, [k * k, c_out, c_in]), flat.reshape(-1))  # [u*v*a*b, out, in]
    taps = tf.reshape(taps, [width, width, 2, 2, c_out, c_in]) * tf.cast(mask[..., None, None], w.dtype)
    # depth_to_space reads channel (a * 2 + b) * out + c as phase (a, b), channel c.
    return tf.reshape(tf.transpose(taps, [0, 1, 5, 2, 3, 4]), [width, width, c_in, 4 * c_out]), d_min, d_max


def phase_conv2d_transpose(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """tf.nn.conv2d_transpose(x, w, [n, 2h, 2w, out], strides=2, padding='SAME'), phase-wise.

    Args:
      x: [n, h, w, in].
      w: [k, k, out, in] (conv2d_transpose's filter layout).
    Returns:
      [n, 2h, 2w, out].
    """
    kernel, d_min, d_max = _phase_kernel(w)
    # Output phase row r reads input rows r + d_min .. r + d_max: pad so every window is in range.
    x = tf.pad(x, [[0, 0], [-d_min, d_max], [-d_min, d_max], [0, 0]])
    return tf.nn.depth_to_space(tf.nn.conv2d(x, kernel, 1, "VALID"), 2)


@tf.custom_gradient
def conv2d_transpose_s2(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """Phase-wise stride-2 'same' transposed convolution; stock kernels for its gradient."""
    y = phase_conv2d_transpose(x, w)

    def grad(dy):
        dx = tf.nn.conv2d(dy, w, 2, "SAME")
        dw = tf.raw_ops.Conv2DBackpropFilter(
            input=dy, filter_sizes=tf.shape(w), out_backprop=x, strides=[1, 2, 2, 1], padding="SAME"
        )
        return dx, dw

    return y, grad


@tf.custom_gradient
def conv2d_s2(x: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
    """Stride-2 'same' convolution (w: [k, k, in, out]) whose input gradient is phase-wise."""

    def grad(dy):
        dx = phase_conv2d_transpose(dy, w)
        dw = tf.raw_ops.Conv2DBackpropFilter(
            input=x, filter_sizes=tf.shape(w), out_backprop=dy, strides=[1, 2, 2, 1], padding="SAME"
        )
        return dx, dw

    return tf.nn.conv2d(x, w, 2, "SAME"), grad


# ---------------------------------------------------------------------------- Keras layers
def _phase_ok(layer, few_channels: int, in_hw, out_hw) -> bool:
    """A square-kernel stride-2 'same' NHWC conv between HxW and 2Hx2W, with few channels."""
    return (
        _enabled
        and layer.strides == (2, 2)
        and layer.padding == "same"
        and layer.data_format == "channels_last"
        and layer.dilation_rate == (1, 1)
        and layer.kernel_size[0] == layer.kernel_size[1] >= 2
        and few_channels <= MAX_PHASE_CHANNELS
        and None not in (*in_hw, *out_hw)
        and tuple(out_hw) == (2 * in_hw[0], 2 * in_hw[1])
    )


def _finish(layer, y, bias: bool = True):
    if bias and layer.use_bias:
        y = tf.nn.bias_add(y, layer.bias)
    return y if layer.activation is None else layer.activation(y)


def _linear_only(layer, bias: bool) -> None:
    # The bias-free call is the layer's linear map, which a tangent goes through (models.py's
    # jvp); an activation would make it something else.
    if not bias and layer.activation not in (None, keras.activations.linear):
        raise ValueError(f"{layer.name}: bias=False is the linear map, but the layer has an activation")


class Dense(keras.layers.Dense):
    """keras Dense (2-D inputs) whose input gradient is an einsum (see `matmul`).

    `bias=False` (here and in the two conv layers) skips the bias: the layer's linear map x @ W,
    which is how a tangent goes through it (J u = W u).
    """

    def call(self, inputs, training=None, bias: bool = True):
        _linear_only(self, bias)
        if getattr(self, "quantization_mode", None):
            if not bias:
                raise ValueError(f"{self.name}: bias=False is not available for a quantized layer")
            return super().call(inputs, training=training)
        if not _enabled or inputs.shape.rank != 2:
            if bias:
                return super().call(inputs, training=training)
            return _finish(self, keras.ops.matmul(inputs, self.kernel), bias=False)
        return _finish(self, matmul(inputs, tf.convert_to_tensor(self.kernel)), bias)


class Conv2D(keras.layers.Conv2D):
    """keras Conv2D; stride 2 from few channels takes its input gradient phase-wise."""

    def call(self, inputs, bias: bool = True):
        _linear_only(self, bias)
        in_hw, out_hw = inputs.shape[1:3], self.compute_output_shape(inputs.shape)[1:3]
        if not (self.groups == 1 and _phase_ok(self, inputs.shape[-1], out_hw, in_hw)):
            if bias:
                return super().call(inputs)
            return _finish(self, self.convolution_op(inputs, self.kernel), bias=False)
        return _finish(self, conv2d_s2(inputs, tf.convert_to_tensor(self.kernel)), bias)


class Conv2DTranspose(keras.layers.Conv2DTranspose):
    """keras Conv2DTranspose; stride 2 to few channels runs phase-wise."""

    def call(self, inputs, bias: bool = True):
        _linear_only(self, bias)
        in_hw = inputs.shape[1:3]
        out_hw = self.compute_output_shape(inputs.shape)[1:3]
        if not (self.output_padding is None and _phase_ok(self, self.filters, in_hw, out_hw)):
            if bias:
                return super().call(inputs)
            y = keras.ops.conv_transpose(
                inputs,
                self.kernel,
                strides=list(self.strides),
                padding=self.padding,
                output_padding=self.output_padding,
                dilation_rate=self.dilation_rate,
                data_format=self.data_format,
            )
            return _finish(self, y, bias=False)
        return _finish(self, conv2d_transpose_s2(inputs, tf.convert_to_tensor(self.kernel)), bias)
