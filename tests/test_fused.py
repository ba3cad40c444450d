"""The fused step computes what the plain one does: every term, both losses, both gradients."""

import numpy as np
import pytest
import tensorflow as tf

from pga_tf import config, methods
from pga_tf.methods import parts as step_lib
from pga_tf.methods import pga as pga_lib
from pga_tf.nets import models
from pga_tf.training import trainer as trainer_lib
from tests.helpers import SHAPE, fixed_noise, uniform_images

N, Z = 8, 4
METHODS = ["lpga", "vpga", "lvpga", "vae", "ae"]


def _images(n, seed=0):
    return tf.constant(uniform_images(n, seed))


def _coeffs(**values):
    return {k: tf.constant(float(values.get(k, 0.0))) for k in step_lib.COEFFICIENTS}


def _assert_close(a, b, name, rtol=2e-4):
    a, b = np.asarray(a), np.asarray(b)
    atol = 1e-6 * max(1.0, float(np.abs(b).max(initial=0.0)))
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, err_msg=name)


def _assert_close_gradient(a, b, name):
    """Float tolerance for a gradient: relative to the variable's whole gradient.

    The log-det terms difference h(z + delta) - h(z) with |delta| ~ 1e-2, which amplifies the
    rounding of h (different kernels in graph and eager mode, batched or not) about 100-fold;
    elements much smaller than the gradient's largest one carry that absolute error.
    """
    a, b = np.asarray(a), np.asarray(b)
    assert np.linalg.norm(a - b) <= 1e-4 * np.linalg.norm(b), name
    np.testing.assert_allclose(a, b, rtol=1e-3, atol=5e-5 * float(np.abs(b).max()), err_msg=name)


def _plain_and_fused(method, coeffs, zero=frozenset(), seed=0):
    tf.keras.utils.set_random_seed(seed)
    enc, dec = models.build_models("conv_mnist", Z, 1, use_bn=False, variational=methods.get(method).variational)
    images, noise = _images(N, seed), fixed_noise(N, Z, seed)
    enc_vars, dec_vars = enc.trainable_variables, dec.trainable_variables

    def plain(c):
        with tf.GradientTape(persistent=True) as tape:
            out = pga_lib.method_losses(method, enc, dec, images, noise, c)
            e, d = tf.reduce_mean(out.encoder), tf.reduce_mean(out.decoder)
        return out, [
            g if g is None else g.numpy().astype(np.float64)
            for g in tape.gradient(e, enc_vars) + tape.gradient(d, dec_vars)
        ]

    def plain_gradient_term_by_term():
        """The plain step's gradient, accumulated one latent term at a time (in float64).

        The plain step's frozen-encoder trick, z - E(sg(x)) + sg(z), subtracts the encoder's weight
        gradient of a second pass from that of the first. When another term also flows through
        the first pass (zh_rec through h(mu)), the two differ by that term's gradient and the
        difference carries the float rounding of the (large) cancelled log-det gradient: 1e-2
        relative here. One term at a time, eagerly, the cancellation is exact.
        """
        zeros = {k: tf.constant(0.0) for k in coeffs}
        _, base = plain(zeros)
        total = list(base)
        for k, value in coeffs.items():
            if float(value) == 0.0:
                continue
            _, with_k = plain({**zeros, k: value})
            total = [t if t is None else t + (w - b) for t, w, b in zip(total, with_k, base)]
        return total

    out, _ = plain(coeffs)
    plain_result = (out, plain_gradient_term_by_term())

    @tf.function
    def fused():
        with tf.GradientTape(persistent=True) as tape:
            out = pga_lib.fused_method_losses(method, enc, dec, images, noise, coeffs, zero)
            s = tf.reduce_mean(out.surrogate)
            e, d = tf.reduce_mean(out.encoder), tf.reduce_mean(out.decoder)
        return out, tape.gradient(s, enc_vars + dec_vars), tape.gradient(e, enc_vars) + tape.gradient(d, dec_vars)

    return plain_result, fused(), [v.path for v in enc_vars + dec_vars]


def _check(method, coeffs, zero=frozenset()):
    (p_out, p_grads), (f_out, f_grads, f_own_grads), names = _plain_and_fused(method, coeffs, zero)
    assert f_out.surrogate is not None and p_out.surrogate is None
    assert list(f_out.terms) == list(p_out.terms)
    for name in p_out.terms:
        _assert_close(f_out.terms[name], p_out.terms[name], f"term {name}")
    _assert_close(f_out.encoder, p_out.encoder, "encoder loss")
    _assert_close(f_out.decoder, p_out.decoder, "decoder loss")
    live = 0
    for name, g_plain, g_fused, g_own in zip(names, p_grads, f_grads, f_own_grads):
        assert (g_plain is None) == (g_fused is None), name
        if g_plain is None:
            continue
        live += bool(np.abs(g_plain).max() > 0)
        _assert_close_gradient(g_fused, g_plain, f"surrogate gradient {name}")
        _assert_close_gradient(g_own, g_plain, f"own-loss gradient {name}")
    assert live >= len(names) - 2  # not a vacuous match (log_var's is 0 during warm-up)


@pytest.mark.parametrize("method", METHODS)
def test_same_terms_losses_and_gradients_every_coefficient_on(method):
    # zh_rec on too (0 in every method's defaults), so its own gradient path is checked.
    _check(method, _coeffs(zn_rec=0.06, zh_rec=0.05, nll=0.015, vrec=0.02, vkld=0.03))


@pytest.mark.parametrize("method", ["lpga", "vpga", "lvpga"])
def test_same_with_config_defaults_and_static_zero_coefficients(method):
    cfg = config.for_method(method, init_steps=0)
    coeffs = step_lib.coefficients(cfg, tf.constant(0))
    zero = frozenset(k for k in step_lib.COEFFICIENTS if getattr(cfg, k) == 0)
    assert "zh_rec" in zero
    _check(method, coeffs, zero)


@pytest.mark.parametrize("method", ["lpga", "lvpga"])
def test_same_during_warm_up(method):
    cfg = config.for_method(method, init_steps=10)
    coeffs = step_lib.coefficients(cfg, tf.constant(0))
    _check(method, coeffs, frozenset(k for k in step_lib.COEFFICIENTS if getattr(cfg, k) == 0))


def test_frozen_model_passes_gradient_to_inputs_only():
    tf.keras.utils.set_random_seed(0)
    _, dec = models.build_models("conv_mnist", Z, 1, use_bn=False, variational=False)
    z = tf.random.normal([N, Z])
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(z)
        live, frozen = dec(z, training=True), step_lib.frozen(dec)(z)
        live_sum, frozen_sum = tf.reduce_sum(live**2), tf.reduce_sum(frozen**2)
    np.testing.assert_array_equal(frozen.numpy(), live.numpy())
    assert all(g is None for g in tape.gradient(frozen_sum, dec.trainable_variables))
    _assert_close(tape.gradient(frozen_sum, z), tape.gradient(live_sum, z), "input gradient")


def _trainer(method, fused, **kw):
    tf.keras.utils.set_random_seed(7)
    cfg = config.for_method(method, z_dim=Z, batch_size=N, lr=0.01, init_steps=1, fused=fused, **kw)
    return trainer_lib.Trainer(cfg, SHAPE)


@pytest.mark.parametrize("method", METHODS)
def test_trainer_steps_fused_on_and_off_give_the_same_weights(method):
    data = tf.data.Dataset.from_tensor_slices(_images(4 * N, seed=1)).repeat().batch(N, drop_remainder=True)
    trainers = [_trainer(method, fused) for fused in (False, True)]
    assert [t.fused for t in trainers] == [False, True]
    # Step 0 is warm-up (latent terms off), step 1 has every term on and momentum from step 0.
    metrics = [t.train_steps(iter(data), 2) for t in trainers]
    assert metrics[0].keys() == metrics[1].keys()
    for k in metrics[0]:
        assert metrics[1][k] == pytest.approx(metrics[0][k], rel=1e-4, abs=1e-6), k
    initial = _trainer(method, False)  # same seed: the weights both started from
    plain, fused, start = (t.encoder.trainable_variables + t.decoder.trainable_variables for t in trainers + [initial])
    for a, b, a0 in zip(plain, fused, start):
        update_plain, update_fused = a.numpy() - a0.numpy(), b.numpy() - a0.numpy()
        assert np.abs(update_plain).max() > 0 or "log_var" in a.path, a.path
        # The log-det terms make the gradient sensitive to rounding (see _assert_close_gradient),
        # and the plain step under tf.function carries its frozen-encoder residue: 5e-4 here.
        assert np.linalg.norm(update_fused - update_plain) <= 2e-3 * np.linalg.norm(update_plain), a.path


def test_batch_norm_uses_the_plain_step():
    assert not _trainer("lpga", True, use_bn=True).fused
    assert _trainer("lpga", True).fused
    assert config.Config().fused
