"""A latent term whose coefficient is 0 (the warm-up) adds exactly nothing to either loss or
gradient, even where the term is not finite: log 0 = -inf where h = E(D(z)) is locally
constant, and 0 * -inf is NaN. Checked for the plain and the fused step against the
autoencoder's own loss ||x - D(E(x))||^2, differentiated on its own."""

import numpy as np
import pytest
import tensorflow as tf

from pga_tf import config
from pga_tf.methods import objectives
from pga_tf.methods import parts as step_lib
from pga_tf.methods import pga as pga_lib
from pga_tf.nets import models
from pga_tf.training import trainer as trainer_lib
from tests.helpers import SHAPE, fixed_noise, uniform_images

N, Z = 8, 4
COLLAPSING = [("lpga", "finite_difference"), ("lpga", "jvp"), ("lvpga", "finite_difference")]


def _images(n=N, seed=0):
    return tf.constant(uniform_images(n, seed))


def _noise(seed=0):
    return fixed_noise(N, Z, seed)


def _cfg(method, **kw):
    return config.for_method(
        method, **{"z_dim": Z, "batch_size": N, "model": "conv_mnist", "init_steps": 10, "use_bn": False, **kw}
    )


def _nets(cfg, seed=0):
    tf.keras.utils.set_random_seed(seed)
    return models.build_models(cfg.model, cfg.z_dim, SHAPE[-1], use_bn=cfg.use_bn, variational=cfg.variational)


def _collapse(encoder):
    """Make mu = E(x) constant: h = E(D(z)) is then constant, so both h(mu + delta) - h(mu) and
    J_h u are exactly 0. The decoder and the mu head still take img_rec's gradient."""
    encoder.mu.kernel.assign(tf.zeros_like(encoder.mu.kernel))
    encoder.mu.bias.assign(tf.constant(np.linspace(-0.5, 0.5, Z), tf.float32))


def _mu(encoder, x):
    out = encoder(x, training=True)
    return out[0] if encoder.variational else out


def _variables(encoder, decoder):
    return encoder.trainable_variables + decoder.trainable_variables


def _losses_and_gradients(cfg, encoder, decoder, images, noise, fused, step=0):
    """Per-example (encoder, decoder) losses, the terms, and each net's gradient of its own
    mean loss (the fused step's: of its surrogate), as the trainer takes them."""
    enc_vars, dec_vars = encoder.trainable_variables, decoder.trainable_variables
    zero = frozenset(k for k in step_lib.COEFFICIENTS if getattr(cfg, k) == 0)

    @tf.function
    def run():
        with tf.GradientTape(persistent=True) as tape:
            if fused:
                out = pga_lib.fused_losses(cfg, encoder, decoder, images, noise, tf.constant(step), zero)
            else:
                out = pga_lib.losses(cfg, encoder, decoder, images, noise, tf.constant(step))
            e, d = tf.reduce_mean(out.encoder), tf.reduce_mean(out.decoder)
            s = None if out.surrogate is None else tf.reduce_mean(out.surrogate)
        grads = tape.gradient(e, enc_vars) + tape.gradient(d, dec_vars)
        if s is not None:
            grads = tape.gradient(s, enc_vars + dec_vars)
        return out, grads

    out, grads = run()
    return out, [np.zeros(v.shape) if g is None else g.numpy() for v, g in zip(enc_vars + dec_vars, grads)]


def _autoencoder(method, encoder, decoder, images, noise):
    """The loss with every latent term removed, and its gradient: the reference."""
    with tf.GradientTape() as tape:
        z = _mu(encoder, images)
        if method == "vae":
            z = z + tf.exp(0.5 * encoder(images, training=True)[1]) * noise.posterior
        rec = objectives.squared_error(images, decoder(z, training=True))
        loss = tf.reduce_mean(rec)
    variables = _variables(encoder, decoder)
    grads = tape.gradient(loss, variables)
    return rec.numpy(), [np.zeros(v.shape) if g is None else g.numpy() for v, g in zip(variables, grads)]


def _assert_autoencoder(method, encoder, decoder, images, noise, out, grads):
    rec, want = _autoencoder(method, encoder, decoder, images, noise)
    np.testing.assert_allclose(out.encoder.numpy(), rec, rtol=1e-6, err_msg="encoder loss")
    np.testing.assert_allclose(out.decoder.numpy(), rec, rtol=1e-6, err_msg="decoder loss")
    live = 0
    for v, g, w in zip(_variables(encoder, decoder), grads, want):
        assert np.all(np.isfinite(g)), v.path
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6 * np.abs(w).max(initial=1.0), err_msg=v.path)
        live += bool(np.abs(w).max() > 0)
    assert live >= 4  # the decoder's and the mu head's gradients: not a match of zeros
    for name, value in out.terms.items():
        assert np.all(np.isfinite(value.numpy())), name  # the trainer stops on a non-finite metric


@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("method,log_det", COLLAPSING)
def test_a_log_det_of_minus_infinity_during_warm_up_leaves_the_autoencoders_loss(method, log_det, fused):
    cfg = _cfg(method, log_det=log_det)
    encoder, decoder = _nets(cfg)
    _collapse(encoder)
    images, noise = _images(), _noise()
    mu = _mu(encoder, images)
    delta = objectives.lpga_direction(noise.direction)
    h = lambda z: _mu(encoder, decoder(z, training=True))  # noqa: E731
    # The term itself is -inf for every example: what the step has to keep out of the losses.
    assert np.all(np.isneginf(objectives.log_det_loss(h(mu), h(mu + delta), delta).numpy()))

    out, grads = _losses_and_gradients(cfg, encoder, decoder, images, noise, fused)
    _assert_autoencoder(method, encoder, decoder, images, noise, out, grads)


@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("method,log_det", COLLAPSING)
def test_after_the_warm_up_the_same_term_is_in_the_loss_and_stops_the_run(method, log_det, fused):
    """The term is switched off while its coefficient is 0, not hidden: once on, its -inf is
    reported and reaches the loss (the trainer then stops with the log-det hint)."""
    cfg = _cfg(method, log_det=log_det)
    encoder, decoder = _nets(cfg)
    _collapse(encoder)
    out, _ = _losses_and_gradients(cfg, encoder, decoder, _images(), _noise(), fused, step=10)
    term = {"lpga": "nll_dec", "lvpga": "vrec"}[method]
    assert np.all(np.isneginf(out.terms[term].numpy())), term
    assert not np.all(np.isfinite(out.decoder.numpy()))


# Each latent term's function, and which of its arguments is a net's output.
POISONED = {
    "prior_nll": 0,
    "vae_kl": 1,
    "vae_reconstruction": 0,
    "log_det_loss": 0,
    "directional_log_det_loss": 0,
    "squared_error": 1,
}


def _poisoned(fn, arg):
    """`fn` plus log(0 * x), x its argument `arg`: the value -inf and, under a 0 upstream
    gradient, NaN into x. squared_error is left alone on images (img_rec), poisoned on codes."""

    def poisoned(*args):
        value, x = fn(*args), args[arg]
        if len(x.shape) != 2:
            return value
        return value + tf.math.log(0.0 * tf.reduce_sum(tf.cast(x, tf.float32), axis=1))

    return poisoned


@pytest.mark.parametrize("fused", [False, True], ids=["plain", "fused"])
@pytest.mark.parametrize("method", ["lpga", "vpga", "lvpga", "vae"])
def test_every_latent_term_that_is_off_adds_nothing(method, fused, monkeypatch):
    """Each latent term made -inf with a NaN gradient into the nets' outputs it is computed
    from (zn_rec and zh_rec through squared_error on codes; img_rec, on images, untouched)."""
    for name, arg in POISONED.items():
        monkeypatch.setattr(objectives, name, _poisoned(getattr(objectives, name), arg))
    cfg = _cfg(method, zh_rec=0.05)  # every coefficient of the method non-zero after warm-up
    encoder, decoder = _nets(cfg)
    images, noise = _images(), _noise()
    out, grads = _losses_and_gradients(cfg, encoder, decoder, images, noise, fused)
    assert len(out.terms) > 2 or method == "vae"
    monkeypatch.undo()
    _assert_autoencoder(method, encoder, decoder, images, noise, out, grads)


@pytest.mark.parametrize("use_bn", [True, False], ids=["plain_bn", "fused"])
def test_a_collapsed_h_does_not_stop_a_run_during_warm_up(use_bn):
    """The reported failure: LPGA stopped at step 2 with a non-finite dec_loss, nll_dec."""
    cfg = _cfg("lpga", init_steps=10, use_bn=use_bn, lr=0.01)
    tf.keras.utils.set_random_seed(0)
    trainer = trainer_lib.Trainer(cfg, SHAPE)
    assert trainer.fused != use_bn
    _collapse(trainer.encoder)
    data = tf.data.Dataset.from_tensors(_images()).repeat()
    metrics = trainer.train_steps(iter(data), 3)
    assert trainer.step == 3 and all(np.isfinite(v) for v in metrics.values()), metrics
    assert all(
        np.all(np.isfinite(v.numpy()))
        for v in trainer.encoder.trainable_variables + trainer.decoder.trainable_variables
    )


@pytest.mark.parametrize(
    "method, kw, said",
    [("vae", {}, "vkld joins the losses"), ("lpga", dict(zn_rec=0.1, zh_rec=0.1, nll=0.1), "nll join the losses")],
)
def test_the_warm_up_line_agrees_in_number_with_its_terms(method, kw, said):
    from pga_tf.training import loop
    from tests.helpers import tiny_cfg

    lines = []
    loop._log_warm_up_end(tiny_cfg(method, init_steps=5, **kw), lines.append)
    assert len(lines) == 1 and said in lines[0], lines
