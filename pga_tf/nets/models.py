"""Encoder/decoder architectures of PGA (Zhang et al., ICML 2020), in Keras 3.

The layer lists follow the reference TF1/slim code (zj10/PGA, ``src/models.py``) layer for layer.
Conventions carried over from slim:

* kernels are Xavier/Glorot-uniform, biases start at zero;
* a conv/fc that feeds a batch norm has *no* bias: BN's ``beta`` would absorb it anyway.  With
  ``use_bn=False`` the same layer gets its bias back, exactly as slim does when
  ``normalizer_fn=None``;
* BN has ``center=True, scale=True, epsilon=1e-3`` (slim's default decay is 0.999; our
  ``bn_momentum`` defaults to 0.99, pass 0.999 to match the reference exactly);
* ``lrelu`` is ``tf.nn.leaky_relu`` with its default slope 0.2; all padding is 'SAME';
* an fc layer flattens its input first (``tflib.flatten_fully_connected``).

Every layer creates its variables in ``build`` (never lazily inside ``call``), so a model built
under a ``tf.distribute`` strategy scope gets distributed variables; ``build_models`` does that
building for you.

Every block, and ``Encoder``/``Decoder``, also has ``jvp(x, dx, training)``: the same pass in
forward mode, (y, J(x) dx), exact, by hand-written tangent rules (the layer's linear map without
its bias, the activations' masks, batch norm's tangent through its batch statistics), for LPGA's
``--log_det=jvp`` (parts.h_jvp). Why not ``ForwardAccumulator``:
docs/methods.md, "The log-det estimator"; tests/test_log_det_jvp.py compares the two.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import NamedTuple

import keras
import tensorflow as tf

from pga_tf import config as config_lib
from pga_tf.nets import kernels

# Initial bias of the log-variance head: log(sigma^2) = 2 ln(0.1), i.e. sigma = 0.1 at the start.
LOG_VAR_BIAS_INIT = 2.0 * math.log(0.1)


def _lrelu(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.leaky_relu(x, alpha=0.2)  # tf.nn.leaky_relu's default slope, as in the reference


def _relu(x: tf.Tensor) -> tf.Tensor:
    return tf.nn.relu(x)


def _activation_jvp(fn: Callable, x: tf.Tensor, dx: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """(fn(x), J_fn(x) dx) for the nets' elementwise activations (a diagonal Jacobian)."""
    if fn is _relu:
        return fn(x), tf.where(x > 0, dx, tf.zeros_like(dx))
    if fn is _lrelu:
        return fn(x), tf.where(x > 0, dx, 0.2 * dx)
    raise ValueError(f"no tangent rule for the activation {fn!r}")


def pool(x: tf.Tensor) -> tf.Tensor:
    """2x2 average pooling, stride 2, 'SAME' padding (tflib ``pool``)."""
    return tf.nn.avg_pool2d(x, ksize=2, strides=2, padding="SAME")


def unpool(x: tf.Tensor) -> tf.Tensor:
    """Zero-insertion 2x unpooling of an NHWC tensor (tflib ``unpool``).

    ``out[:, 2i, 2j, :] = x[:, i, j, :]`` and every other entry is zero.  tflib builds this by
    concatenating zeros and reshaping; for 4-D inputs that is exactly this zero insertion.
    """
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    y = tf.stack([x, tf.zeros_like(x)], axis=3)  # [n, h, w, 2, c]: a zero pixel after each pixel
    y = tf.reshape(y, [-1, h, 2 * w, c])
    y = tf.stack([y, tf.zeros_like(y)], axis=2)  # [n, h, 2, 2w, c]: a zero row after each row
    return tf.reshape(y, [-1, 2 * h, 2 * w, c])


class BatchNorm(keras.layers.Layer):
    """Batch normalisation whose moving-statistics update is controlled by the caller.

    ``training=True`` normalises with the batch statistics (over every axis but the last) and
    updates the moving statistics only if ``update_stats`` (default: ``update_stats=training``);
    ``training=False`` normalises with the moving statistics.  ``training``/``update_stats`` must
    be Python bools.

    With ``synchronized=True``, inside a ``tf.distribute`` replica context with more than one
    replica the batch statistics are all-reduced over replicas (weighted by each replica's
    batch size), so every replica normalises with the statistics of the global batch.

    Statistics are always float32 (safe under mixed precision); the output has the input's dtype.
    """

    def __init__(self, momentum: float = 0.99, epsilon: float = 1e-3, synchronized: bool = False, **kw):
        super().__init__(**kw)
        self.momentum = momentum
        self.epsilon = epsilon
        self.synchronized = synchronized

    def build(self, input_shape) -> None:
        shape = (input_shape[-1],)
        # autocast=False: we do the float32 arithmetic ourselves, also under mixed precision.
        self.gamma = self.add_weight(shape=shape, name="gamma", initializer="ones", autocast=False)
        self.beta = self.add_weight(shape=shape, name="beta", initializer="zeros", autocast=False)
        # Non-trainable weights so they are checkpointed.  aggregation="mean" lets each replica
        # assign them in a replica context under tf.distribute (with sync BN all replicas
        # assign the same value anyway).
        self.moving_mean = self.add_weight(
            shape=shape,
            name="moving_mean",
            initializer="zeros",
            trainable=False,
            autocast=False,
            aggregation="mean",
        )
        self.moving_variance = self.add_weight(
            shape=shape,
            name="moving_variance",
            initializer="ones",
            trainable=False,
            autocast=False,
            aggregation="mean",
        )

    def _sync_context(self):
        """The replica context whose replicas share batch statistics, or None (one replica, or
        sync off)."""
        ctx = tf.distribute.get_replica_context()
        if self.synchronized and ctx is not None and ctx.num_replicas_in_sync > 1:
            return ctx
        return None

    @staticmethod
    def _global_means(ctx, *tensors: tf.Tensor) -> list[tf.Tensor]:
        """Per-channel means of each tensor over every replica's batch, in one all-reduce of
        [sums..., count]: replicas may hold different batch sizes, so sums (not per-replica
        means) are what add up to the global statistics."""
        axes = list(range(tensors[0].shape.rank - 1))
        count = tf.cast(tf.reduce_prod(tf.shape(tensors[0])[:-1]), tf.float32)
        local = tf.concat([tf.reduce_sum(t, axes) for t in tensors] + [count[None]], 0)
        total = ctx.all_reduce(tf.distribute.ReduceOp.SUM, local)
        c = tensors[0].shape[-1]
        return [total[i * c : (i + 1) * c] / total[-1] for i in range(len(tensors))]

    def _batch_moments(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        ctx = self._sync_context()
        if ctx is None:
            return tf.nn.moments(x, list(range(x.shape.rank - 1)))
        mean, mean_sq = self._global_means(ctx, x, tf.square(x))
        # E[x^2] - E[x]^2 can dip slightly below zero by round-off.
        return mean, tf.maximum(mean_sq - tf.square(mean), 0.0)

    def _batch_means(self, *tensors: tf.Tensor) -> list[tf.Tensor]:
        """Per-channel means of each tensor, over the global batch when synchronized."""
        ctx = self._sync_context()
        if ctx is None:
            return [tf.reduce_mean(t, list(range(t.shape.rank - 1))) for t in tensors]
        return self._global_means(ctx, *tensors)

    def _statistics(self, x32: tf.Tensor, training: bool) -> tuple:
        """(mean, variance): the batch's in training mode, the moving ones in inference mode."""
        return self._batch_moments(x32) if training else (self.moving_mean, self.moving_variance)

    def call(self, x, training: bool = False, update_stats: bool | None = None):
        if update_stats is None:
            update_stats = training
        x32 = tf.cast(x, tf.float32)
        mean, variance = self._statistics(x32, training)
        if training and update_stats:
            m = self.momentum
            self.moving_mean.assign(m * self.moving_mean + (1.0 - m) * mean)
            self.moving_variance.assign(m * self.moving_variance + (1.0 - m) * variance)
        y = (x32 - mean) * (tf.math.rsqrt(variance + self.epsilon) * self.gamma) + self.beta
        return tf.cast(y, x.dtype)

    def jvp(self, x: tf.Tensor, dx: tf.Tensor, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """(BN(x), J dx), the moving statistics untouched.

        In training mode the batch statistics depend on x: with r = 1/sqrt(var + eps) and
        x_hat = (x - mean) r, the tangent is gamma r (dx - mean(dx) - x_hat mean(x_hat dx))
        (the batch-norm backward pass, transposed). In inference mode it is gamma r dx.
        """
        x32, dx32 = tf.cast(x, tf.float32), tf.cast(dx, tf.float32)
        mean, variance = self._statistics(x32, training)
        scale = tf.math.rsqrt(variance + self.epsilon)
        x_hat = (x32 - mean) * scale
        y = x_hat * self.gamma + self.beta
        if training:
            d_mean, d_projection = self._batch_means(dx32, x_hat * dx32)
            dx32 = dx32 - d_mean - x_hat * d_projection
        dy = dx32 * (scale * self.gamma)
        return tf.cast(y, x.dtype), tf.cast(dy, dx.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape


class _Block(keras.layers.Layer):
    """A stage of an encoder/decoder body; all take (x, training, update_stats).

    `jvp(x, dx, training)` is the same stage's forward mode: (y, J(x) dx), exact, with the
    moving statistics of batch norm left untouched.
    """

    def call(self, x, training: bool = False, update_stats: bool | None = None):
        raise NotImplementedError

    def jvp(self, x, dx, training: bool = False):
        raise NotImplementedError


class _Fn(_Block):
    """A parameter-free op (activation, reshape) in a body."""

    def __init__(
        self, fn: Callable[[tf.Tensor], tf.Tensor], out_shape: tuple | None = None, linear: bool = False, **kw
    ):
        super().__init__(**kw)
        self.fn = fn
        self.out_shape = out_shape  # per-example output shape if fn changes it (reshape)
        self.linear = linear  # fn is linear (a reshape): its tangent is fn(dx)

    def call(self, x, training: bool = False, update_stats: bool | None = None):
        return self.fn(x)

    def jvp(self, x, dx, training: bool = False):
        if self.linear:
            return self.fn(x), self.fn(dx)
        return _activation_jvp(self.fn, x, dx)

    def compute_output_shape(self, input_shape):
        return input_shape if self.out_shape is None else (input_shape[0], *self.out_shape)


class _Unit(_Block):
    """conv | deconv | fc, then optional BN, then optional activation (a slim layer)."""

    def __init__(
        self,
        kind: str,
        width: int,
        kernel: int = 5,
        stride: int = 2,
        norm: BatchNorm | None = None,
        activation: Callable | None = None,
        **kw,
    ):
        super().__init__(**kw)
        common = dict(
            kernel_initializer="glorot_uniform", bias_initializer="zeros", use_bias=norm is None
        )  # no bias before BN: beta plays that role
        if kind == "fc":
            self.layer = kernels.Dense(width, **common)
        else:
            # The stock Keras layers, with faster kernels for a few slow cases (pga_tf/nets/kernels.py).
            cls = {"conv": kernels.Conv2D, "dconv": kernels.Conv2DTranspose}[kind]
            self.layer = cls(width, kernel, strides=stride, padding="same", **common)
        self.flatten = kind == "fc"
        self.norm = norm
        self.activation = activation

    def _flat_shape(self, input_shape):
        if self.flatten and len(input_shape) > 2:
            return (input_shape[0], math.prod(input_shape[1:]))
        return tuple(input_shape)

    def build(self, input_shape) -> None:
        shape = self._flat_shape(input_shape)
        self.layer.build(shape)
        if self.norm is not None:
            self.norm.build(self.layer.compute_output_shape(shape))

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(self._flat_shape(input_shape))

    def call(self, x, training: bool = False, update_stats: bool | None = None):
        if self.flatten and x.shape.rank > 2:
            x = tf.reshape(x, [tf.shape(x)[0], -1])
        y = self.layer(x)
        if self.norm is not None:
            y = self.norm(y, training=training, update_stats=update_stats)
        return y if self.activation is None else self.activation(y)

    def jvp(self, x, dx, training: bool = False):
        if self.flatten and x.shape.rank > 2:
            x, dx = (tf.reshape(t, [tf.shape(t)[0], -1]) for t in (x, dx))
        y, dy = self.layer(x), self.layer(dx, bias=False)
        if self.norm is not None:
            y, dy = self.norm.jvp(y, dy, training=training)
        return (y, dy) if self.activation is None else _activation_jvp(self.activation, y, dy)


class _ResBlock(_Block):
    """The reference's ``res_block``.

    skip = x; res = relu(bn(x)) (skipped for the encoder's first block, which sees the image);
    both unpooled for scale='up'; skip gets a 1x1 conv if the width or scale changes;
    res = conv3(relu(bn(conv3(res)))); out = skip + res, average-pooled for scale='down'.
    """

    def __init__(
        self,
        in_width: int | None,
        width: int,
        scale: str | None,
        new_bn: Callable[[], BatchNorm | None],
        first: bool = False,
        **kw,
    ):
        super().__init__(**kw)
        assert scale in ("up", "down", None)
        self.scale = scale
        self.in_norm = None if first else new_bn()
        self.pre_act = not first
        # in_width None (the image's channels) only occurs for a scaled block, which projects anyway.
        needs_proj = scale is not None or in_width != width
        self.skip_conv = _Unit("conv", width, 1, 1) if needs_proj else None
        self.conv_a = _Unit("conv", width, 3, 1, norm=new_bn(), activation=_relu)
        self.conv_b = _Unit("conv", width, 3, 1)

    def build(self, input_shape) -> None:
        if self.in_norm is not None:
            self.in_norm.build(input_shape)
        shape = tuple(input_shape)
        if self.scale == "up":
            shape = (shape[0], 2 * shape[1], 2 * shape[2], shape[3])
        if self.skip_conv is not None:
            self.skip_conv.build(shape)
        self.conv_a.build(shape)
        self.conv_b.build(self.conv_a.compute_output_shape(shape))

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape
        if self.scale == "up":
            h, w = 2 * h, 2 * w
        elif self.scale == "down":
            h, w = -(-h // 2), -(-w // 2)
        return (n, h, w, self.conv_b.layer.filters)

    def call(self, x, training: bool = False, update_stats: bool | None = None):
        skip, res = x, x
        if self.in_norm is not None:
            res = self.in_norm(res, training=training, update_stats=update_stats)
        if self.pre_act:
            res = tf.nn.relu(res)
        if self.scale == "up":
            skip, res = unpool(skip), unpool(res)
        if self.skip_conv is not None:
            skip = self.skip_conv(skip)
        res = self.conv_a(res, training=training, update_stats=update_stats)
        res = self.conv_b(res)
        out = skip + res
        return pool(out) if self.scale == "down" else out

    def jvp(self, x, dx, training: bool = False):
        (skip, d_skip), (res, d_res) = (x, dx), (x, dx)
        if self.in_norm is not None:
            res, d_res = self.in_norm.jvp(res, d_res, training=training)
        if self.pre_act:
            res, d_res = _activation_jvp(_relu, res, d_res)
        if self.scale == "up":
            skip, d_skip, res, d_res = (unpool(t) for t in (skip, d_skip, res, d_res))
        if self.skip_conv is not None:
            skip, d_skip = self.skip_conv.jvp(skip, d_skip)
        res, d_res = self.conv_a.jvp(res, d_res, training=training)
        res, d_res = self.conv_b.jvp(res, d_res)
        out, d_out = skip + res, d_skip + d_res
        return (pool(out), pool(d_out)) if self.scale == "down" else (out, d_out)


@dataclasses.dataclass(frozen=True)
class _Layers:
    """Block factory for one model: knows whether BN is on and how to configure it."""

    use_bn: bool
    bn_momentum: float
    sync_bn: bool

    def bn(self) -> BatchNorm | None:
        return BatchNorm(self.bn_momentum, synchronized=self.sync_bn) if self.use_bn else None

    def conv(self, width: int, kernel: int, stride: int, act: Callable | None = None, bn: bool = False) -> _Unit:
        return _Unit("conv", width, kernel, stride, norm=self.bn() if bn else None, activation=act)

    def dconv(self, width: int, kernel: int, stride: int, act: Callable | None = None, bn: bool = False) -> _Unit:
        return _Unit("dconv", width, kernel, stride, norm=self.bn() if bn else None, activation=act)

    def fc(self, width: int, act: Callable | None = None, bn: bool = False) -> _Unit:
        return _Unit("fc", width, norm=self.bn() if bn else None, activation=act)

    def res(self, in_width: int | None, width: int, scale: str | None = None, first: bool = False) -> _ResBlock:
        return _ResBlock(in_width, width, scale, self.bn, first=first)


def _reshape(*shape: int) -> _Fn:
    return _Fn(lambda y: tf.reshape(y, [-1, *shape]), out_shape=shape, linear=True)


# One builder per architecture: returns the encoder body (part="encoder"; it ends before the fc
# head(s)) or the decoder body (part="decoder"; it ends before the final tanh).  Widths as in the
# reference (dim=64 for the conv nets, 512 for the resnet).


def _conv_mnist(L: _Layers, part: str, channels: int, dim: int = 64) -> list[_Block]:
    if part == "encoder":
        return [
            L.conv(dim, 5, 2, _lrelu),  # 28 -> 14
            L.conv(dim * 2, 5, 2, _lrelu, bn=True),  # 14 -> 7
            L.fc(1024, _lrelu, bn=True),
        ]
    return [
        L.fc(1024, _relu),
        L.fc(7 * 7 * dim * 2, _relu, bn=True),
        _reshape(7, 7, dim * 2),
        L.dconv(dim, 5, 2, _relu),  # 7 -> 14
        L.dconv(channels, 5, 2),  # 14 -> 28
    ]


def _conv_32(L: _Layers, part: str, channels: int, dim: int = 64) -> list[_Block]:
    if part == "encoder":
        return [
            L.conv(dim, 5, 2, _lrelu),  # 32 -> 16
            L.conv(dim * 2, 5, 2, _lrelu, bn=True),  # 16 -> 8
            L.conv(dim * 4, 5, 2, _lrelu, bn=True),  # 8 -> 4
        ]
    return [
        L.fc(4 * 4 * dim * 4, _relu),
        _reshape(4, 4, dim * 4),
        L.dconv(dim * 2, 5, 2, _relu, bn=True),  # 4 -> 8
        L.dconv(dim, 5, 2, _relu),  # 8 -> 16
        L.dconv(channels, 5, 2),  # 16 -> 32
    ]


def _resnet_32(L: _Layers, part: str, channels: int, dim: int = 512) -> list[_Block]:
    if part == "encoder":
        return [
            L.res(None, dim, "down", first=True),  # 32 -> 16
            L.res(dim, dim, "down"),  # 16 -> 8
            L.res(dim, dim),
            L.res(dim, dim),
            _Fn(_relu),
        ]
    return [
        L.fc(4 * 4 * dim * 4),  # no activation here: the res block pre-activates
        _reshape(4, 4, dim * 4),
        L.res(dim * 4, dim, "up"),  # 4 -> 8
        L.res(dim, dim, "up"),  # 8 -> 16
        L.res(dim, dim, "up"),  # 16 -> 32
        _Fn(_relu),
        L.conv(channels, 3, 1),
    ]


def _conv_64(L: _Layers, part: str, channels: int, dim: int = 64) -> list[_Block]:
    if part == "encoder":
        return [
            L.conv(dim, 5, 2, _lrelu),  # 64 -> 32
            L.conv(dim * 2, 5, 2, _lrelu),  # 32 -> 16
            L.conv(dim * 4, 5, 2, _lrelu, bn=True),  # 16 -> 8
            L.conv(dim * 8, 5, 2, _lrelu, bn=True),  # 8 -> 4
        ]
    return [
        L.fc(4 * 4 * dim * 8, _relu),
        _reshape(4, 4, dim * 8),
        L.dconv(dim * 4, 5, 2, _relu, bn=True),  # 4 -> 8
        L.dconv(dim * 2, 5, 2, _relu, bn=True),  # 8 -> 16
        L.dconv(dim, 5, 2, _relu),  # 16 -> 32
        L.dconv(channels, 5, 2),  # 32 -> 64
    ]


class _Arch(NamedTuple):
    build: Callable[[_Layers, str, int], list[_Block]]
    image_shape: tuple[int, int]


ARCHS: dict[str, _Arch] = {
    name: _Arch(build, config_lib.MODEL_IMAGE_SIZES[name])
    for name, build in (
        ("conv_mnist", _conv_mnist),
        ("conv_32", _conv_32),
        ("resnet_32", _resnet_32),
        ("conv_64", _conv_64),
    )
}
IMAGE_SHAPES: dict[str, tuple[int, int]] = {name: a.image_shape for name, a in ARCHS.items()}


def _arch(name: str) -> _Arch:
    if name not in ARCHS:
        raise ValueError(f"unknown arch {name!r}; valid: {', '.join(ARCHS)}")
    return ARCHS[name]


def _run(blocks: list[_Block], x, training: bool, update_stats: bool | None):
    for block in blocks:
        x = block(x, training=training, update_stats=update_stats)
    return x


def _run_jvp(blocks: list[_Block], x, dx, training: bool):
    for block in blocks:
        x, dx = block.jvp(x, dx, training=training)
    return x, dx


def _name_blocks(model: keras.Model) -> None:
    # tf.train.Checkpoint does not follow Keras 3's tracked lists (only SavedModel export does),
    # so a list-only body would be silently missing from checkpoints: give each block an attribute.
    for i, block in enumerate(model.blocks):
        setattr(model, f"block{i}", block)


def _build_chain(blocks: list[_Block], shape: tuple) -> tuple:
    for block in blocks:
        block.build(shape)
        shape = block.compute_output_shape(shape)
    return shape


class Encoder(keras.Model):
    """Image -> mu (or (mu, log_var) if variational).  Heads are float32 under mixed precision."""

    def __init__(
        self,
        arch: str,
        z_dim: int,
        use_bn: bool = False,
        variational: bool = False,
        bn_momentum: float = 0.99,
        sync_bn: bool = False,
        name: str = "encoder",
        **kw,
    ):
        super().__init__(name=name, **kw)
        self.arch = arch
        self.image_hw = _arch(arch).image_shape
        self.z_dim = z_dim
        self.variational = variational
        self.channels: int | None = None  # fixed by the first build
        # The encoder body does not depend on the image channels (only the first conv's kernel does,
        # and that is sized in build).
        self.blocks = _arch(arch).build(_Layers(use_bn, bn_momentum, sync_bn), "encoder", 0)
        _name_blocks(self)
        self.mu = keras.layers.Dense(z_dim, kernel_initializer="glorot_uniform", dtype="float32", name="mu")
        self.log_var = (
            keras.layers.Dense(
                z_dim,
                kernel_initializer="glorot_uniform",
                dtype="float32",
                name="log_var",
                bias_initializer=keras.initializers.Constant(LOG_VAR_BIAS_INIT),
            )
            if variational
            else None
        )

    def _check_shape(self, shape) -> None:
        # Fail here with a readable message rather than deep inside a conv or the fc head.
        shape = tuple(shape)
        want = (*self.image_hw, self.channels)  # channels is None until the first build
        if len(shape) != 4 or any(a is not None and b is not None and a != b for a, b in zip(shape[1:], want)):
            want_s = "x".join("C" if d is None else str(d) for d in want)
            got_s = "x".join(str(d) for d in shape[1:])
            raise ValueError(f"{self.arch} expects {want_s} images, got {got_s}")

    def build(self, images_shape) -> None:
        images_shape = tuple(images_shape)
        self._check_shape(images_shape)
        self.channels = images_shape[-1]
        shape = _build_chain(self.blocks, images_shape)
        flat = (shape[0], math.prod(shape[1:]))
        self.mu.build(flat)
        if self.log_var is not None:
            self.log_var.build(flat)

    def call(self, images, training: bool = False, update_stats: bool | None = None):
        self._check_shape(images.shape)
        y = _run(self.blocks, images, training, update_stats)
        y = tf.reshape(y, [tf.shape(y)[0], -1])
        mu = self.mu(y)
        return (mu, self.log_var(y)) if self.variational else mu

    def jvp(self, images: tf.Tensor, d_images: tf.Tensor, training: bool = False) -> tuple:
        """This encoder's output and J_mu(images) d_images, exact (forward mode by tangent rules).

        The tangent runs beside the primal through each layer's linear map (no bias), the
        activations' diagonal Jacobians and batch norm's tangent, so it costs about a second
        forward pass; a GradientTape around it differentiates both (reverse over forward).
        Moving statistics are not updated.

        Args:
          images: [N, H, W, C].
          d_images: [N, H, W, C], the direction.
        Returns:
          (this model's call output: mu or (mu, log_var); [N, z_dim] float32 tangent of mu).
        """
        self._check_shape(images.shape)
        y, dy = _run_jvp(self.blocks, images, d_images, training)
        y, dy = (tf.reshape(t, [tf.shape(t)[0], -1]) for t in (y, dy))
        mu = self.mu(y)
        d_mu = tf.matmul(tf.cast(dy, mu.dtype), tf.convert_to_tensor(self.mu.kernel))
        return ((mu, self.log_var(y)) if self.variational else mu), d_mu


class Decoder(keras.Model):
    """z -> images in [-1, 1]; the final tanh runs in float32 even under mixed precision.

    With `learned_scale` the decoder also holds `log_gamma`, a trainable float32 scalar (initially
    0): the log of the scale gamma of its Gaussian likelihood N(x; D(z), gamma^2 I), which the
    2-Stage VAE learns (methods/two_stage_vae.py `losses`). The output does not depend on it.
    """

    def __init__(
        self,
        arch: str,
        channels: int,
        use_bn: bool = False,
        bn_momentum: float = 0.99,
        sync_bn: bool = False,
        learned_scale: bool = False,
        name: str = "decoder",
        **kw,
    ):
        super().__init__(name=name, **kw)
        self.arch = arch
        self.channels = channels
        self.learned_scale = learned_scale
        self.blocks = _arch(arch).build(_Layers(use_bn, bn_momentum, sync_bn), "decoder", channels)
        _name_blocks(self)
        self.tanh = keras.layers.Activation("tanh", dtype="float32")
        self.log_gamma = None

    def build(self, z_shape) -> None:
        _build_chain(self.blocks, tuple(z_shape))
        if self.learned_scale and self.log_gamma is None:
            self.log_gamma = self.add_weight(shape=(), initializer="zeros", dtype="float32", name="log_gamma")

    def call(self, z, training: bool = False, update_stats: bool | None = None):
        return self.tanh(_run(self.blocks, z, training, update_stats))

    def jvp(self, z: tf.Tensor, dz: tf.Tensor, training: bool = False) -> tuple[tf.Tensor, tf.Tensor]:
        """(D(z), J_D(z) dz), exact; see Encoder.jvp.

        Args:
          z: [N, z_dim]; dz: [N, z_dim], the direction.
        Returns:
          ([N, H, W, C] images, [N, H, W, C] float32 tangent).
        """
        y, dy = _run_jvp(self.blocks, z, dz, training)
        x = self.tanh(y)
        return x, (1.0 - tf.square(x)) * tf.cast(dy, x.dtype)


def build_models(
    arch: str,
    z_dim: int,
    channels: int,
    use_bn: bool,
    variational: bool,
    bn_momentum: float = 0.99,
    sync_bn: bool = False,
    learned_scale: bool = False,
) -> tuple[Encoder, Decoder]:
    """Construct an (Encoder, Decoder) pair and create all their variables.

    Call this inside ``strategy.scope()`` to get distributed variables. `learned_scale`: see
    Decoder.
    """
    h, w = _arch(arch).image_shape
    enc = Encoder(arch, z_dim, use_bn=use_bn, variational=variational, bn_momentum=bn_momentum, sync_bn=sync_bn)
    dec = Decoder(arch, channels, use_bn=use_bn, bn_momentum=bn_momentum, sync_bn=sync_bn, learned_scale=learned_scale)
    enc(tf.zeros([1, h, w, channels]))
    dec(tf.zeros([1, z_dim]))
    return enc, dec
