"""--log_det=jvp: LPGA's J_h(z) u by forward-mode autodiff, its value and its gradient."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from pga_tf import config, kernels, models, objectives, step as step_lib, train_lib

SHAPE = (28, 28, 1)


def _rng_tensor(shape, seed, dtype=tf.float32):
    return tf.constant(np.random.default_rng(seed).standard_normal(shape), dtype)


def _conv_mnist(z_dim=3):
    keras.utils.set_random_seed(0)
    return models.build_models("conv_mnist", z_dim, 1, use_bn=False, variational=False)


def test_directional_derivative_matches_batch_jacobian():
    """J u from forward mode against the reverse-mode Jacobian (tape.batch_jacobian) times u."""
    encoder, decoder = _conv_mnist()
    z, u = _rng_tensor((4, 3), 0), objectives.lpga_unit_direction(_rng_tensor((4, 3), 1))

    def h(z):
        return encoder(decoder(z, training=True), training=True)

    @tf.function
    def both(z, u):
        out, jvp = step_lib.directional_derivative(h, z, u)
        with tf.GradientTape() as tape:
            tape.watch(z)
            out_again = h(z)
        return out, jvp, tf.einsum("nij,nj->ni", tape.batch_jacobian(out_again, z), u)

    out, jvp, reference = both(z, u)
    np.testing.assert_allclose(out, h(z), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(jvp, reference, rtol=1e-4, atol=1e-6 * np.abs(reference).max())


def _tiny_float64_nets():
    """A 2-layer encoder and decoder of smooth activations, float64, built from kernels.Dense (the
    custom-gradient layer of the real nets), so a finite difference in weight space is exact to
    ~1e-9."""
    keras.utils.set_random_seed(1)
    dense = lambda n, act=None: kernels.Dense(n, activation=act, dtype="float64")  # noqa: E731
    decoder = keras.Sequential([keras.Input((3,), dtype="float64"), dense(8, "tanh"), dense(6)])
    encoder = keras.Sequential([keras.Input((6,), dtype="float64"), dense(8, "softplus"), dense(3)])
    return encoder, decoder


def test_jvp_log_det_gradient_reaches_the_decoder_weights_as_a_float64_finite_difference():
    encoder, decoder = _tiny_float64_nets()
    z = _rng_tensor((5, 3), 2, tf.float64)
    u = objectives.lpga_unit_direction(_rng_tensor((5, 3), 3, tf.float64))

    def loss():
        _, jvp = step_lib.directional_derivative(lambda z: encoder(decoder(z)), z, u)
        return tf.reduce_mean(objectives.directional_log_det_loss(jvp))

    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, decoder.trainable_variables)
    assert value.dtype == tf.float64 and all(g is not None for g in grads)
    # Directional derivative of the loss along a random direction V in the decoder's weights.
    rng = np.random.default_rng(4)
    directions = [rng.standard_normal(v.shape) for v in decoder.trainable_variables]
    analytic = sum(float(tf.reduce_sum(g * d)) for g, d in zip(grads, directions))
    start = [v.numpy() for v in decoder.trainable_variables]
    eps, values = 1e-5, []
    for sign in (1, -1):
        for v, w, d in zip(decoder.trainable_variables, start, directions):
            v.assign(w + sign * eps * d)
        values.append(float(loss()))
    for v, w in zip(decoder.trainable_variables, start):
        v.assign(w)
    numeric = (values[0] - values[1]) / (2 * eps)
    assert analytic == pytest.approx(numeric, rel=1e-6)
    assert abs(analytic) > 1e-3  # not a trivially zero gradient


def _cfg(**kw):
    return config.for_method("lpga", **{"z_dim": 4, "batch_size": 8, "init_steps": 0, **kw})


def _step_results(**kw):
    """Mean terms and both gradients of one LPGA step on a fixed batch and noise, fixed init."""
    images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (8, *SHAPE)), tf.float32)
    noise = step_lib.Noise(*(_rng_tensor((8, 4), s) for s in range(3)))
    keras.utils.set_random_seed(0)
    trainer = train_lib.Trainer(_cfg(**kw), SHAPE)
    enc_vars = trainer.encoder.trainable_variables
    dec_vars = trainer.decoder.trainable_variables

    @tf.function
    def run():
        with tf.GradientTape(persistent=True) as tape:
            out = trainer.losses(images, noise)
            enc, dec = tf.reduce_mean(out.encoder), tf.reduce_mean(out.decoder)
        # The exact directional log-det at sg(mu), by reverse mode: an independent reference.
        mu = trainer.encoder(images, training=True)
        with tf.GradientTape() as jac_tape:
            jac_tape.watch(mu)
            h_mu = trainer.encoder(trainer.decoder(mu, training=True), training=True)
        jac = jac_tape.batch_jacobian(h_mu, mu)
        u = objectives.lpga_unit_direction(noise.direction)
        exact = objectives.directional_log_det_loss(tf.einsum("nij,nj->ni", jac, u))
        return ({k: tf.reduce_mean(v) for k, v in out.terms.items()}, tf.reduce_mean(exact),
                tape.gradient(enc, enc_vars), tape.gradient(dec, dec_vars))

    return run()


def _close(a, b, rtol):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * float(tf.reduce_max(tf.abs(y))))


@pytest.fixture(scope="module")
def steps():
    return {(log_det, fused): _step_results(log_det=log_det, fused=fused)
            for log_det in ("finite_difference", "jvp") for fused in (False, True)}


@pytest.mark.parametrize("fused", [False, True])
def test_jvp_step_takes_the_exact_directional_log_det(steps, fused):
    terms, exact, _, _ = steps["jvp", fused]
    assert float(terms["nll_dec"]) == pytest.approx(float(exact), abs=1e-4)
    # The finite difference at the Glorot initialisation (||J u|| ~ 5e-4) is off by ~0.06.
    fd_terms, _, _, _ = steps["finite_difference", fused]
    assert float(fd_terms["nll_dec"]) == pytest.approx(float(exact), abs=0.2)


def test_fused_jvp_step_equals_the_plain_jvp_step(steps):
    """Two code paths (forward mode on the plain h pass; on the fused step's frozen-encoder pass)."""
    plain, fused = steps["jvp", False], steps["jvp", True]
    for name in plain[0]:
        assert float(fused[0][name]) == pytest.approx(float(plain[0][name]), rel=1e-5, abs=1e-6), name
    _close(fused[2], plain[2], 1e-4)
    _close(fused[3], plain[3], 1e-3)


@pytest.mark.parametrize("fused", [False, True])
def test_jvp_changes_only_the_decoders_log_det_term(steps, fused):
    """Every other term, and the encoder's gradient, are the finite-difference step's."""
    fd, jvp = steps["finite_difference", fused], steps["jvp", fused]
    for name in fd[0]:
        if name != "nll_dec":
            assert float(jvp[0][name]) == pytest.approx(float(fd[0][name]), rel=1e-5, abs=1e-6), name
    _close(jvp[2], fd[2], 1e-4)


def test_log_det_jvp_is_refused_outside_lpga():
    with pytest.raises(ValueError, match="--log_det=jvp is for --method=lpga only"):
        config.validate(config.for_method("lvpga", log_det="jvp"))


# ------------------------------------------------ issue 11, kind 11: a collapsing h = E(D(z))
def test_collapsed_h_keeps_a_finite_exact_log_det_where_the_finite_difference_rounds_to_zero():
    """LPGA with a short warm-up drives J_h toward 0 (the decoder's loss rewards it). Once
    ||J_h delta|| is below float32's resolution of h, h(mu + delta) - h(mu) is exactly 0 and
    the reference's estimate is log 0 = -inf (the non-finite loss of kind 11), while forward
    mode still gives the exact value."""
    images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (8, *SHAPE)), tf.float32)
    noise = step_lib.Noise(*(_rng_tensor((8, 4), s) for s in range(3)))
    out = {}
    for log_det in ("finite_difference", "jvp"):
        keras.utils.set_random_seed(0)
        trainer = train_lib.Trainer(_cfg(log_det=log_det, fused=False), SHAPE)
        image_layer = trainer.decoder.blocks[-1].layer  # the last transposed conv, before tanh
        image_layer.kernel.assign(image_layer.kernel * 1e-9)  # J_D, hence J_h, scaled by 1e-9
        image_layer.bias.assign(tf.fill(image_layer.bias.shape, 0.3))
        out[log_det] = trainer.losses(images, noise).terms["nll_dec"].numpy()
        mu = trainer.encoder(images, training=True)
        with tf.GradientTape() as tape:
            tape.watch(mu)
            h_mu = trainer.encoder(trainer.decoder(mu, training=True), training=True)
        jac = tape.batch_jacobian(h_mu, mu)
    u = objectives.lpga_unit_direction(noise.direction)
    exact = objectives.directional_log_det_loss(tf.einsum("nij,nj->ni", jac, u)).numpy()
    assert np.all(exact < -20)  # ||J_h u|| < e^-20: a collapsed map
    assert np.all(np.isneginf(out["finite_difference"]))
    np.testing.assert_allclose(out["jvp"], exact, atol=1e-3)


@pytest.mark.parametrize("log_det,terms,expected", [
    ("finite_difference", ["dec_loss", "nll_dec"], "rounded to 0; raise --init_steps (here 5) so "
     "the autoencoder learns first, or use --log_det=jvp)"),
    ("jvp", ["dec_loss", "nll_dec"], "J_h u reached 0; raise --init_steps (here 5)"),
    ("finite_difference", ["dec_loss", "img_rec", "nll_dec"], None),  # NaN weights: no hint
    ("finite_difference", ["zn_rec"], None),
])
def test_non_finite_log_det_names_its_cause_and_remedy(log_det, terms, expected):
    hint = train_lib.log_det_hint(_cfg(log_det=log_det, init_steps=5), terms)
    if expected is None:
        assert hint == ""
    else:
        assert hint.startswith(" (nll_dec = log ||J_h u||: h = E(D(z)) collapsed") and expected in hint
