"""Tests for pga_tf.nets.models: shapes, parameter counts vs. the reference's layer list, BN semantics."""

import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from pga_tf.nets.models import ARCHS, IMAGE_SHAPES, BatchNorm, Encoder, build_models, pool, unpool

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
Z = 12


# ---------------------------------------------------------------------------------------------
# Parameter counts, by hand from the reference's layer lists (zj10/PGA src/models.py).
# slim: a conv/fc followed by BN has no bias; BN has gamma+beta (trainable) and
# moving mean+variance (non-trainable), 2*C each.


def conv(k: int, cin: int, cout: int, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def fc(nin: int, nout: int, bias: bool = True) -> int:
    return nin * nout + (nout if bias else 0)


def expected_counts(arch: str, z: int, ch: int, bn: bool, variational: bool) -> dict:
    """-> {enc_trainable, enc_non_trainable, dec_trainable, dec_non_trainable}."""
    nb = not bn  # layers followed by BN have a bias only when BN is off

    def BN(c: int) -> int:  # trainable count == non-trainable count == 2c
        return 2 * c if bn else 0

    if arch == "conv_mnist":
        enc_bn = BN(128) + BN(1024)
        enc = conv(5, ch, 64) + conv(5, 64, 128, nb) + fc(7 * 7 * 128, 1024, nb) + enc_bn
        head_in = 1024
        dec_bn = BN(7 * 7 * 128)
        dec = fc(z, 1024) + fc(1024, 7 * 7 * 128, nb) + conv(5, 128, 64) + conv(5, 64, ch) + dec_bn
    elif arch == "conv_32":
        enc_bn = BN(128) + BN(256)
        enc = conv(5, ch, 64) + conv(5, 64, 128, nb) + conv(5, 128, 256, nb) + enc_bn
        head_in = 4 * 4 * 256
        dec_bn = BN(128)
        dec = fc(z, 4 * 4 * 256) + conv(5, 256, 128, nb) + conv(5, 128, 64) + conv(5, 64, ch) + dec_bn
    elif arch == "conv_64":
        enc_bn = BN(256) + BN(512)
        enc = conv(5, ch, 64) + conv(5, 64, 128) + conv(5, 128, 256, nb) + conv(5, 256, 512, nb) + enc_bn
        head_in = 4 * 4 * 512
        dec_bn = BN(256) + BN(128)
        dec = (
            fc(z, 4 * 4 * 512)
            + conv(5, 512, 256, nb)
            + conv(5, 256, 128, nb)
            + conv(5, 128, 64)
            + conv(5, 64, ch)
            + dec_bn
        )
    elif arch == "resnet_32":
        d = 512

        def res(cin: int, project: bool, in_bn: bool = True) -> tuple[int, int]:
            # [BN(cin)] ; skip 1x1 conv if projecting ; conv3 (no bias w/ BN) + BN(d) ; conv3
            bns = (BN(cin) if in_bn else 0) + BN(d)
            p = (conv(1, cin, d) if project else 0) + conv(3, cin, d, nb) + conv(3, d, d) + bns
            return p, bns

        blocks = [res(ch, True, in_bn=False), res(d, True), res(d, False), res(d, False)]
        enc, enc_bn = sum(b[0] for b in blocks), sum(b[1] for b in blocks)
        head_in = 8 * 8 * d
        blocks = [res(4 * d, True), res(d, True), res(d, True)]
        dec_bn = sum(b[1] for b in blocks)
        dec = fc(z, 4 * 4 * 4 * d) + sum(b[0] for b in blocks) + conv(3, d, ch)
    else:
        raise AssertionError(arch)
    heads = fc(head_in, z) * (2 if variational else 1)
    return dict(enc_trainable=enc + heads, enc_non_trainable=enc_bn, dec_trainable=dec, dec_non_trainable=dec_bn)


def n_params(weights) -> int:
    return int(sum(math.prod(w.shape) for w in weights))


_MODELS: dict = {}


def get_models(arch: str, bn: bool, variational: bool, ch: int = 3):
    """build_models, cached per configuration (resnet_32 is big)."""
    key = (arch, bn, variational, ch)
    if key not in _MODELS:
        _MODELS[key] = build_models(arch, Z, ch, use_bn=bn, variational=variational)
    return _MODELS[key]


CONFIGS = [(a, bn, v) for a in ARCHS for bn in (False, True) for v in (False, True)]


@pytest.mark.parametrize("arch,bn,variational", CONFIGS)
def test_shapes(arch, bn, variational):
    enc, dec = get_models(arch, bn, variational)
    h, w = IMAGE_SHAPES[arch]
    x = tf.random.uniform([2, h, w, 3], -1, 1)
    for training in (False, True):
        out = enc(x, training=training)
        if variational:
            assert isinstance(out, tuple) and len(out) == 2
            assert out[0].shape == (2, Z) and out[1].shape == (2, Z)
            mu = out[0]
        else:
            assert out.shape == (2, Z)
            mu = out
        y = dec(mu, training=training)
        assert y.shape == (2, h, w, 3)
        assert np.all(np.abs(y.numpy()) <= 1.0)


@pytest.mark.parametrize("arch,bn,variational", CONFIGS)
def test_param_counts(arch, bn, variational):
    enc, dec = get_models(arch, bn, variational)
    want = expected_counts(arch, Z, 3, bn, variational)
    got = dict(
        enc_trainable=n_params(enc.trainable_weights),
        enc_non_trainable=n_params(enc.non_trainable_weights),
        dec_trainable=n_params(dec.trainable_weights),
        dec_non_trainable=n_params(dec.non_trainable_weights),
    )
    assert got == want


def test_param_counts_one_channel():
    enc, dec = get_models("conv_mnist", True, True, ch=1)
    want = expected_counts("conv_mnist", Z, 1, True, True)
    assert n_params(enc.trainable_weights) == want["enc_trainable"]
    assert n_params(dec.trainable_weights) == want["dec_trainable"]


def test_initialisation():
    enc, dec = get_models("conv_32", False, True)
    np.testing.assert_allclose(enc.log_var.bias.numpy(), np.full(Z, 2 * np.log(0.1)), rtol=1e-6)
    np.testing.assert_array_equal(enc.mu.bias.numpy(), np.zeros(Z))
    # Every other bias starts at zero (slim's zeros_initializer).
    for m in (enc, dec):
        for v in m.trainable_weights:
            if "bias" in v.path and "log_var" not in v.path:
                assert not np.any(v.numpy()), v.path


@pytest.mark.parametrize("arch", list(ARCHS))
def test_gradients_reach_every_variable(arch):
    enc, dec = get_models(arch, True, True)
    h, w = IMAGE_SHAPES[arch]
    x = tf.random.uniform([2, h, w, 3], -1, 1)
    with tf.GradientTape() as tape:
        mu, log_var = enc(x, training=True, update_stats=False)
        loss = tf.reduce_mean(tf.square(dec(mu, training=True, update_stats=False))) + tf.reduce_mean(log_var)
    variables = enc.trainable_variables + dec.trainable_variables
    grads = tape.gradient(loss, variables)
    assert all(g is not None for g in grads)


def test_unknown_arch():
    with pytest.raises(ValueError, match="conv_mnist.*conv_32.*resnet_32.*conv_64"):
        Encoder("nope", Z)
    with pytest.raises(ValueError, match="valid"):
        build_models("conv_128", Z, 3, False, False)


def test_bad_image_size():
    enc, _ = get_models("conv_mnist", False, False, ch=1)
    with pytest.raises(ValueError, match="conv_mnist expects 28x28x1 images, got 32x32x3"):
        enc(tf.zeros([1, 32, 32, 3]))
    with pytest.raises(ValueError, match="conv_mnist expects 28x28x1 images, got 28x28x3"):
        enc(tf.zeros([1, 28, 28, 3]))
    # An unbuilt encoder fails the same way on its first call.
    with pytest.raises(ValueError, match="conv_64 expects 64x64xC images, got 32x32x3"):
        Encoder("conv_64", Z)(tf.zeros([1, 32, 32, 3]))


# ---------------------------------------------------------------------------------------------
# pool / unpool


def np_unpool_reference(x: np.ndarray) -> np.ndarray:
    """numpy transcription of tflib's unpool: reshape to [-1, W, C], concat zeros on the
    channel then the width axis, reshape to [-1, 2H, 2W, C]."""
    n, h, w, c = x.shape
    out = x.reshape(-1, w, c)
    out = np.concatenate([out, np.zeros_like(out)], axis=2)
    out = np.concatenate([out, np.zeros_like(out)], axis=1)
    return out.reshape(-1, 2 * h, 2 * w, c)


def test_unpool_matches_numpy():
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 4)).astype(np.float32)
    got = unpool(tf.constant(x)).numpy()
    np.testing.assert_array_equal(got, np_unpool_reference(x))
    # ...which is zero insertion: each input pixel at the top-left of a 2x2 cell.
    want = np.zeros((2, 6, 10, 4), np.float32)
    want[:, ::2, ::2, :] = x
    np.testing.assert_array_equal(got, want)


def test_pool_matches_numpy():
    x = np.random.default_rng(1).normal(size=(2, 4, 6, 3)).astype(np.float32)
    want = x.reshape(2, 2, 2, 3, 2, 3).mean(axis=(2, 4))
    np.testing.assert_allclose(pool(tf.constant(x)).numpy(), want, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------------
# BatchNorm


def np_bn(x, mean, var, gamma, beta, eps=1e-3):
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


@pytest.fixture
def bn_setup():
    rng = np.random.default_rng(2)
    x = (rng.normal(size=(6, 3, 3, 4)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 1.0, -2.0, 5.0]).astype(np.float32)
    bn = BatchNorm(momentum=0.9)
    bn.build(x.shape)
    gamma = rng.normal(size=4).astype(np.float32)
    beta = rng.normal(size=4).astype(np.float32)
    mm = rng.normal(size=4).astype(np.float32)
    mv = rng.uniform(0.5, 2.0, size=4).astype(np.float32)
    for var, val in ((bn.gamma, gamma), (bn.beta, beta), (bn.moving_mean, mm), (bn.moving_variance, mv)):
        var.assign(val)
    return bn, x, gamma, beta, mm, mv


def test_bn_weights():
    bn = BatchNorm()
    bn.build((None, 5))
    assert n_params(bn.trainable_weights) == 10 and n_params(bn.non_trainable_weights) == 10
    assert {w.path.split("/")[-1] for w in bn.non_trainable_weights} == {"moving_mean", "moving_variance"}


def test_bn_training_no_update(bn_setup):
    bn, x, gamma, beta, mm, mv = bn_setup
    y = bn(tf.constant(x), training=True, update_stats=False).numpy()
    axes = (0, 1, 2)
    np.testing.assert_allclose(y, np_bn(x, x.mean(axes), x.var(axes), gamma, beta), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), mm)
    np.testing.assert_array_equal(bn.moving_variance.numpy(), mv)


@pytest.mark.parametrize("explicit", [True, False])
def test_bn_training_updates(bn_setup, explicit):
    bn, x, gamma, beta, mm, mv = bn_setup
    kw = {"update_stats": True} if explicit else {}  # default: update_stats = training
    y = bn(tf.constant(x), training=True, **kw).numpy()
    axes = (0, 1, 2)
    np.testing.assert_allclose(y, np_bn(x, x.mean(axes), x.var(axes), gamma, beta), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.moving_mean.numpy(), 0.9 * mm + 0.1 * x.mean(axes), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), 0.9 * mv + 0.1 * x.var(axes), rtol=1e-5, atol=1e-6)


def test_bn_inference(bn_setup):
    bn, x, gamma, beta, mm, mv = bn_setup
    y = bn(tf.constant(x), training=False).numpy()
    np.testing.assert_allclose(y, np_bn(x, mm, mv, gamma, beta), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(bn.moving_mean.numpy(), mm)


def test_model_update_stats_flag():
    enc, _ = build_models("conv_mnist", Z, 1, use_bn=True, variational=False)
    x = tf.random.uniform([2, 28, 28, 1], -1, 1)
    before = [v.numpy().copy() for v in enc.non_trainable_weights]
    enc(x, training=True, update_stats=False)
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, enc.non_trainable_weights))
    enc(x, training=True)
    assert all(not np.array_equal(a, v.numpy()) for a, v in zip(before, enc.non_trainable_weights))


# ---------------------------------------------------------------------------------------------
# Synchronized BN under MirroredStrategy on 2 logical CPUs.  Logical devices must be configured
# before TF initialises its runtime, which this pytest process has already done: use a subprocess.

SYNC_SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    sys.path.insert(0, sys.argv[1])
    from pga_tf.nets.models import BatchNorm, build_models

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(8, 2, 2, 4)) * [1.0, 2.0, 0.5, 3.0] + [0.0, 1.0, -2.0, 5.0]).astype(np.float32)
    parts = [x[:3], x[3:]]  # unequal per-replica batches: statistics must be weighted by size
    with strategy.scope():
        bn_sync = BatchNorm(momentum=0.9, synchronized=True)
        bn_local = BatchNorm(momentum=0.9)
        bn_sync.build(x.shape)
        bn_local.build(x.shape)

    inputs = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(parts[ctx.replica_id_in_sync_group]))

    @tf.function
    def step(v):
        return strategy.run(lambda t: (bn_sync(t, training=True), bn_local(t, training=True)), args=(v,))

    ys, yl = step(inputs)
    ys, yl = strategy.experimental_local_results(ys), strategy.experimental_local_results(yl)
    axes = (0, 1, 2)
    bn = lambda a, m, v: (a - m) / np.sqrt(v + 1e-3)
    for r in range(2):
        np.testing.assert_allclose(ys[r].numpy(), bn(parts[r], x.mean(axes), x.var(axes)), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(yl[r].numpy(), bn(parts[r], parts[r].mean(axes), parts[r].var(axes)),
                                   rtol=1e-4, atol=1e-4)
    # Moving statistics: every replica's copy moved by the momentum rule with the global statistics.
    for copy in strategy.experimental_local_results(bn_sync.moving_mean.value):
        np.testing.assert_allclose(copy.numpy(), 0.1 * x.mean(axes), rtol=1e-5, atol=1e-5)
    for copy in strategy.experimental_local_results(bn_sync.moving_variance.value):
        np.testing.assert_allclose(copy.numpy(), 0.9 + 0.1 * x.var(axes), rtol=1e-5, atol=1e-5)

    # Whole models with sync BN build under the scope and train in a replica context.
    with strategy.scope():
        enc, dec = build_models("conv_mnist", 4, 1, use_bn=True, variational=True, sync_bn=True)
    imgs = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.random.uniform([2, 28, 28, 1], -1, 1))

    @tf.function
    def model_step(v):
        def fn(t):
            mu, log_var = enc(t, training=True)
            return dec(mu, training=True), log_var
        return strategy.run(fn, args=(v,))

    out, log_var = model_step(imgs)
    for o in strategy.experimental_local_results(out):
        assert o.shape == (2, 28, 28, 1) and np.all(np.isfinite(o.numpy()))
    print("SYNC_OK")
    """
)


@pytest.mark.e2e
def test_synchronized_bn_mirrored_strategy():
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run(
        [sys.executable, "-c", SYNC_SCRIPT, REPO], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0 and "SYNC_OK" in proc.stdout, proc.stdout + proc.stderr[-5000:]


# ---------------------------------------------------------------------------------------------
# Mixed precision


@pytest.mark.parametrize("arch", ["conv_mnist", "conv_32", "conv_64"])
def test_mixed_precision(arch):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        enc, dec = build_models(arch, Z, 3, use_bn=True, variational=True)
        h, w = IMAGE_SHAPES[arch]
        x = tf.random.uniform([2, h, w, 3], -1, 1)
        for training in (False, True):
            mu, log_var = enc(x, training=training)
            y = dec(mu, training=training)
            for t in (mu, log_var, y):
                assert t.dtype == tf.float32
                assert np.all(np.isfinite(t.numpy()))
        # Variables (incl. BN statistics) stay float32.
        assert all(v.dtype == "float32" for v in enc.weights + dec.weights)
    finally:
        keras.mixed_precision.set_global_policy(previous)


def test_bn_mixed_precision_dtype():
    bn = BatchNorm(dtype="mixed_float16")
    x = tf.random.normal([4, 3]) * 100.0 + 1000.0
    y = bn(tf.cast(x, tf.float16), training=True)
    assert y.dtype == tf.float16 and bn.moving_mean.dtype == "float32"
    assert np.all(np.isfinite(y.numpy()))


@pytest.mark.parametrize("arch", ["conv_mnist", "resnet_32"])
def test_checkpoint_roundtrip_includes_every_weight(tmp_path, arch):
    # tf.train.Checkpoint (what a custom training loop uses) must see every variable, BN
    # statistics included; Keras 3 layer lists alone are invisible to it.
    enc, dec = get_models(arch, True, True)
    h, w = IMAGE_SHAPES[arch]
    enc(tf.random.uniform([2, h, w, 3], -1, 1), training=True)  # move the statistics off their init
    path = tf.train.Checkpoint(enc=enc, dec=dec).write(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if name.endswith("VARIABLE_VALUE")]
    assert len(saved) == len(enc.weights) + len(dec.weights)
    enc2, dec2 = build_models(arch, Z, 3, use_bn=True, variational=True)
    tf.train.Checkpoint(enc=enc2, dec=dec2).read(path).assert_consumed()
    for a, b in zip(enc.weights + dec.weights, enc2.weights + dec2.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
