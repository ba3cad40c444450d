"""The training step: warm-up, gradient routing, the frozen-encoder path, learning, resume."""

import numpy as np
import pytest
import tensorflow as tf

from pga_tf import config
from pga_tf.methods import parts as step_lib
from pga_tf.methods import pga as pga_lib
from pga_tf.training import trainer as trainer_lib
from tests.helpers import SHAPE, blob_images, fixed_noise


def _cfg(method, **kw):
    kw = {"z_dim": 4, "batch_size": 8, "lr": 0.01, "model": "conv_mnist", **kw}
    return config.for_method(method, **kw)


@pytest.mark.parametrize("method", ["lpga", "lvpga"])
def test_warm_up_coefficients(method):
    cfg = _cfg(method, init_steps=100)
    before = {k: float(v) for k, v in step_lib.coefficients(cfg, tf.constant(99)).items()}
    after = {k: float(v) for k, v in step_lib.coefficients(cfg, tf.constant(100)).items()}
    assert all(v == 0.0 for v in before.values())
    assert after == pytest.approx({k: getattr(cfg, k) for k in step_lib.COEFFICIENTS})


def _variables(trainer):
    return [v.numpy().copy() for v in trainer.encoder.trainable_variables], [
        v.numpy().copy() for v in trainer.decoder.trainable_variables
    ]


def _changed(before, after):
    return [not np.array_equal(b, a.numpy()) for b, a in zip(before, after)]


# The network whose loss is cut off has no gradient on purpose, and Keras' optimizer says so.
@pytest.mark.filterwarnings("ignore:Gradients do not exist for variables:UserWarning")
@pytest.mark.parametrize("zero", ["encoder", "decoder"])
def test_each_network_takes_only_its_own_loss(zero, monkeypatch):
    tf.keras.utils.set_random_seed(0)
    # The plain step's routing: two gradients of two losses. (The fused step takes one gradient
    # of a surrogate; tests/test_fused.py checks that it routes the same way.)
    trainer = trainer_lib.Trainer(_cfg("lpga", init_steps=0, fused=False), SHAPE)
    real = trainer.losses

    def one_sided(images, noise):
        out = real(images, noise)
        zeros = tf.zeros_like(out.encoder)
        if zero == "encoder":
            return out._replace(encoder=zeros)
        return out._replace(decoder=zeros)

    monkeypatch.setattr(trainer, "losses", one_sided)
    enc0, dec0 = _variables(trainer)
    trainer.replica_step(tf.constant(blob_images(8)), fixed_noise(8, 4))
    enc_changed = _changed(enc0, trainer.encoder.trainable_variables)
    dec_changed = _changed(dec0, trainer.decoder.trainable_variables)
    if zero == "encoder":
        assert not any(enc_changed) and all(dec_changed)
    else:
        assert all(enc_changed) and not any(dec_changed)


@pytest.mark.parametrize("method", ["lpga", "vpga", "lvpga", "vae", "ae"])
def test_update_is_sgd_on_each_networks_own_loss(method):
    """Second code path: gradients taken separately, applied by hand (first momentum step)."""
    tf.keras.utils.set_random_seed(1)
    trainer = trainer_lib.Trainer(_cfg(method, init_steps=0, lr=0.05), SHAPE)
    images, noise = tf.constant(blob_images(8)), fixed_noise(8, 4)
    enc_vars, dec_vars = trainer.encoder.trainable_variables, trainer.decoder.trainable_variables
    with tf.GradientTape(persistent=True) as tape:
        out = trainer.losses(images, noise)
        enc_loss, dec_loss = tf.reduce_mean(out.encoder), tf.reduce_mean(out.decoder)
    want = [
        v.numpy() - 0.05 * g.numpy()
        for v, g in zip(enc_vars + dec_vars, tape.gradient(enc_loss, enc_vars) + tape.gradient(dec_loss, dec_vars))
    ]
    trainer.replica_step(images, noise)
    for w, v in zip(want, enc_vars + dec_vars):
        np.testing.assert_allclose(v.numpy(), w, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["vpga", "lvpga"])
def test_frozen_encoder_path_matches_a_constant_copy_of_the_encoder(method):
    """The no-encoder-gradient trick vs a second code path: h built on a weight copy."""
    tf.keras.utils.set_random_seed(2)
    cfg = _cfg(method, init_steps=0)
    trainer = trainer_lib.Trainer(cfg, SHAPE)
    copy = trainer_lib.Trainer(cfg, SHAPE)
    for src, dst in zip(trainer.encoder.weights, copy.encoder.weights):
        dst.assign(src)
    images, noise = tf.constant(blob_images(8)), fixed_noise(8, 4)
    coeffs = {k: tf.constant(0.0) for k in step_lib.COEFFICIENTS}
    enc, dec = trainer.encoder, trainer.decoder

    def vrec_with(encoder_for_h):
        def split_encoder(x, training=False, update_stats=None):
            # The first call encodes the data batch (the real encoder); the others are inside h.
            split_encoder.calls += 1
            model = enc if split_encoder.calls == 1 else encoder_for_h
            return model(x, training=training, update_stats=update_stats)

        split_encoder.calls = 0
        return split_encoder

    variables = enc.trainable_variables + dec.trainable_variables
    grads = []
    for encoder in (enc, vrec_with(copy.encoder)):
        with tf.GradientTape() as tape:
            out = pga_lib.method_losses(method, encoder, dec, images, noise, coeffs)
            vrec = tf.reduce_mean(out.terms["vrec"])
        grads.append(tape.gradient(vrec, variables))
    for (name, g_trick), g_copy in zip(((v.path, g) for v, g in zip(variables, grads[0])), grads[1]):
        if g_copy is None:
            assert g_trick is None or np.allclose(g_trick.numpy(), 0, atol=1e-7), name
        else:
            np.testing.assert_allclose(g_trick.numpy(), g_copy.numpy(), rtol=1e-3, atol=1e-6, err_msg=name)


@pytest.mark.slow_inproc
@pytest.mark.parametrize("method", ["lpga", "vpga", "lvpga", "vae", "ae"])
def test_training_lowers_reconstruction_loss(method):
    # Not every seed trains here: with Adam at this lr the codes grow to ~100 during warm-up, and
    # where h is locally constant LPGA's log-det is log(0) = -inf, and 0 * -inf = NaN even in
    # warm-up (as in the reference). Which seeds reach such a point is float chaos: seed 0 with
    # the plain step, seed 3 with the fused one (both fine at seeds 1, 2, 4, 5).
    tf.keras.utils.set_random_seed(1)
    # Adam: on this tiny set plain SGD sits on the mean-image plateau for hundreds of steps.
    cfg = _cfg(method, batch_size=32, lr=1e-3, optimizer="adam", init_steps=50)
    trainer = trainer_lib.Trainer(cfg, SHAPE)
    data = tf.data.Dataset.from_tensor_slices(blob_images(256, seed=4)).repeat().batch(32, drop_remainder=True)
    it = iter(trainer.strategy.experimental_distribute_dataset(data))
    first = trainer.train_steps(it, 10)
    for _ in range(19):
        last = trainer.train_steps(it, 10)
    assert trainer.step == 200
    assert all(np.isfinite(v) for v in last.values()), last
    assert last["img_rec"] < 0.5 * first["img_rec"], (first["img_rec"], last["img_rec"])


def test_resume_continues_step_and_optimizer_slots(tmp_path):
    tf.keras.utils.set_random_seed(5)
    cfg = _cfg("lpga", init_steps=0)
    data = tf.data.Dataset.from_tensor_slices(blob_images(64)).repeat().batch(8, drop_remainder=True)
    a = trainer_lib.Trainer(cfg, SHAPE)
    a.train_steps(iter(data), 7)
    path = a.checkpoint.save(str(tmp_path / "ckpt"))
    b = trainer_lib.Trainer(cfg, SHAPE)
    b.checkpoint.restore(path).assert_existing_objects_matched()
    assert b.step == 7
    slots_a = [v.numpy() for v in a.optimizer.variables]
    slots_b = [v.numpy() for v in b.optimizer.variables]
    assert len(slots_a) == len(slots_b) and len(slots_a) > 2
    for x, y in zip(slots_a, slots_b):
        np.testing.assert_array_equal(x, y)
    assert any(np.abs(s).sum() > 0 for s in slots_b[2:])  # momentum buffers, not just counters
    # The random state is part of the checkpoint: both draw the same next noise.
    np.testing.assert_array_equal(a.generator.normal([3]).numpy(), b.generator.normal([3]).numpy())
