"""--log_det=jvp: LPGA's J_h(z) u by forward-mode autodiff, its value and its gradient."""

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from pga_tf import config
from pga_tf.methods import objectives
from pga_tf.methods import parts as step_lib
from pga_tf.nets import models
from pga_tf.training import trainer as trainer_lib

SHAPE = (28, 28, 1)


def _rng_tensor(shape, seed, dtype=tf.float32):
    return tf.constant(np.random.default_rng(seed).standard_normal(shape), dtype)


def _accumulator_jvp(f, z, u):
    """J_f(z) u by TF's generic forward mode (ForwardAccumulator): a second code path."""
    with tf.autodiff.ForwardAccumulator(primals=z, tangents=u) as acc:
        out = f(z)
    return acc.jvp(out)


# Each net with batch norm off and on; BN in training mode (batch statistics, whose dependence on
# the batch the tangent rule must carry) and in inference mode (moving statistics).
NETS = [(arch, bn) for arch in models.ARCHS for bn in (False, True)]


@pytest.mark.parametrize("arch,use_bn", NETS)
@pytest.mark.parametrize("training", [True, False])
def test_tangent_rules_match_the_reverse_mode_jacobian_and_forward_accumulator(arch, use_bn, training, monkeypatch):
    """h_jvp's J_h u against the reverse-mode Jacobian of h times u and ForwardAccumulator."""
    keras.utils.set_random_seed(0)
    z_dim, channels = 3, 3
    # The resnet's width is the reference's 512: a narrower one keeps the check quick.
    monkeypatch.setitem(
        models.ARCHS,
        "resnet_32",
        models._Arch(functools.partial(models._resnet_32, dim=32), models.IMAGE_SHAPES["resnet_32"]),
    )
    encoder, decoder = models.build_models(arch, z_dim, channels, use_bn=use_bn, variational=False)
    for v in encoder.non_trainable_variables + decoder.non_trainable_variables:  # moving stats
        low, high = (0.5, 1.5) if "variance" in v.path else (-0.1, 0.1)
        v.assign(tf.random.uniform(v.shape, low, high))
    z, u = _rng_tensor((4, z_dim), 0), objectives.lpga_unit_direction(_rng_tensor((4, z_dim), 1))

    def h(z):
        return encoder(decoder(z, training=training), training=training)

    @tf.function
    def both(z, u):
        h_z, x, jvp = step_lib.h_jvp(encoder, decoder, z, u, training=training)
        with tf.GradientTape() as tape:
            tape.watch(z)
            out_again = h(z)
        # The full [N, d, N, d] Jacobian: with batch statistics every row of h depends on every z.
        reference = tf.einsum("nimj,mj->ni", tape.jacobian(out_again, z), u)
        return h_z, x, jvp, reference, _accumulator_jvp(h, z, u)

    h_z, x, jvp, reference, accumulated = both(z, u)
    np.testing.assert_allclose(h_z, h(z), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(x, decoder(z, training=training), rtol=1e-5, atol=1e-6)
    scale = np.abs(reference).max()
    assert scale > 0
    np.testing.assert_allclose(jvp, reference, rtol=1e-3, atol=1e-4 * scale)
    np.testing.assert_allclose(jvp, accumulated, rtol=1e-3, atol=1e-4 * scale)


def test_tangent_rules_leave_the_moving_statistics_alone():
    keras.utils.set_random_seed(0)
    encoder, decoder = models.build_models("conv_mnist", 3, 1, use_bn=True, variational=False)
    before = [v.numpy() for v in encoder.non_trainable_variables + decoder.non_trainable_variables]
    step_lib.h_jvp(encoder, decoder, _rng_tensor((4, 3), 0), _rng_tensor((4, 3), 1))
    after = [v.numpy() for v in encoder.non_trainable_variables + decoder.non_trainable_variables]
    assert len(before) > 0
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)


def test_tangent_gradient_equals_forward_accumulators_gradient():
    """Reverse over forward on conv_mnist without BN: d(log-det of the tangent rules' J_h u)/d
    (decoder weights) against the same through ForwardAccumulator."""
    keras.utils.set_random_seed(0)
    encoder, decoder = models.build_models("conv_mnist", 3, 1, use_bn=False, variational=False)
    z, u = _rng_tensor((6, 3), 0), objectives.lpga_unit_direction(_rng_tensor((6, 3), 1))

    def h(z):
        return encoder(decoder(z, training=True), training=True)

    @tf.function
    def grads():
        with tf.GradientTape(persistent=True) as tape:
            rules = tf.reduce_mean(objectives.directional_log_det_loss(step_lib.h_jvp(encoder, decoder, z, u)[2]))
            generic = tf.reduce_mean(objectives.directional_log_det_loss(_accumulator_jvp(h, z, u)))
        return (
            rules,
            generic,
            tape.gradient(rules, decoder.trainable_variables),
            tape.gradient(generic, decoder.trainable_variables),
        )

    rules, generic, g_rules, g_generic = grads()
    assert float(rules) == pytest.approx(float(generic), rel=1e-4)
    _close(g_rules, g_generic, 1e-3)
    assert max(float(tf.reduce_max(tf.abs(g))) for g in g_rules) > 1e-3


def test_batch_norm_tangent_gradient_matches_a_finite_difference():
    """Training-mode BN's tangent differentiated w.r.t. the weights before it and gamma, against a
    central difference of the (smooth) loss. ForwardAccumulator does not pass this one: it
    differentiates tf.nn.moments' variance, which holds its mean under stop_gradient, so its
    reverse-over-forward gradient misses the mean's dependence on the weights (0.2% off here,
    about 20% on conv_mnist's decoder) — the reason the nets carry their own tangent rules."""
    rng = np.random.default_rng(0)
    x, u = (tf.constant(rng.standard_normal((16, 5)), tf.float32) for _ in range(2))
    w = tf.Variable(rng.standard_normal((5, 4)).astype(np.float32))
    bn = models.BatchNorm()
    bn.build((16, 4))
    bn.gamma.assign(rng.uniform(0.5, 1.5, 4))
    bn.beta.assign(rng.uniform(-0.5, 0.5, 4))

    def loss():
        _, dy = bn.jvp(x @ w, u @ w, training=True)
        return tf.reduce_mean(tf.math.log(tf.reduce_sum(tf.square(dy), 1)))

    variables = [w, bn.gamma]
    with tf.GradientTape() as tape:
        value = loss()
    grads = tape.gradient(value, variables)
    directions = [rng.standard_normal(v.shape).astype(np.float32) for v in variables]
    analytic = sum(float(tf.reduce_sum(g * d)) for g, d in zip(grads, directions))
    start, values, eps = [v.numpy() for v in variables], [], 1e-2
    for sign in (1, -1):
        for v, s, d in zip(variables, start, directions):
            v.assign(s + sign * eps * d)
        values.append(float(loss()))
    numeric = (values[0] - values[1]) / (2 * eps)
    assert abs(numeric) > 0.1
    assert analytic == pytest.approx(numeric, rel=2e-4)


def _cfg(**kw):
    return config.for_method("lpga", **{"z_dim": 4, "batch_size": 8, "init_steps": 0, **kw})


def _step_results(**kw):
    """Mean terms and both gradients of one LPGA step on a fixed batch and noise, fixed init."""
    images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (8, *SHAPE)), tf.float32)
    noise = step_lib.Noise(*(_rng_tensor((8, 4), s) for s in range(3)))
    keras.utils.set_random_seed(0)
    trainer = trainer_lib.Trainer(_cfg(**kw), SHAPE)
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
        return (
            {k: tf.reduce_mean(v) for k, v in out.terms.items()},
            tf.reduce_mean(exact),
            tape.gradient(enc, enc_vars),
            tape.gradient(dec, dec_vars),
        )

    return run()


def _close(a, b, rtol):
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=rtol, atol=rtol * float(tf.reduce_max(tf.abs(y))))


@pytest.fixture(scope="module")
def steps():
    return {
        (log_det, fused): _step_results(log_det=log_det, fused=fused)
        for log_det in ("finite_difference", "jvp")
        for fused in (False, True)
    }


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


# --------------------------------------------------------------- a collapsing h = E(D(z))
def test_collapsed_h_keeps_a_finite_exact_log_det_where_the_finite_difference_rounds_to_zero():
    """LPGA with a short warm-up drives J_h toward 0 (the decoder's loss rewards it). Once
    ||J_h delta|| is below float32's resolution of h, h(mu + delta) - h(mu) is exactly 0 and
    the reference's estimate is log 0 = -inf (the non-finite loss of a collapsed warm-up), while forward
    mode still gives the exact value."""
    images = tf.constant(np.random.default_rng(0).uniform(-1, 1, (8, *SHAPE)), tf.float32)
    noise = step_lib.Noise(*(_rng_tensor((8, 4), s) for s in range(3)))
    out = {}
    for log_det in ("finite_difference", "jvp"):
        keras.utils.set_random_seed(0)
        trainer = trainer_lib.Trainer(_cfg(log_det=log_det, fused=False), SHAPE)
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


@pytest.mark.parametrize(
    "log_det,terms,expected",
    [
        (
            "finite_difference",
            ["dec_loss", "nll_dec"],
            "rounded to 0; raise --init_steps (here 5) so the autoencoder learns first, or use --log_det=jvp)",
        ),
        ("jvp", ["dec_loss", "nll_dec"], "J_h u reached 0; raise --init_steps (here 5)"),
        ("finite_difference", ["dec_loss", "img_rec", "nll_dec"], None),  # NaN weights: no hint
        ("finite_difference", ["zn_rec"], None),
    ],
)
def test_non_finite_log_det_names_its_cause_and_remedy(log_det, terms, expected):
    hint = trainer_lib.log_det_hint(_cfg(log_det=log_det, init_steps=5), terms)
    if expected is None:
        assert hint == ""
    else:
        assert hint.startswith(" (nll_dec = log ||J_h u||: h = E(D(z)) collapsed") and expected in hint
