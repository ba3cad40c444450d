"""runs.load against the trainer's own nets (a second code path), and every fault a user can
cause with a run dir as one RunError line."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pga_tf import checkpoints, config, runs
from pga_tf.training import trainer as trainer_lib
from tests.helpers import ROOT, SHAPE, blob_images


def _train(cfg, steps, stage2_steps=0):
    """A Trainer of `cfg` after `steps` image steps (then `stage2_steps` of a later phase), saved
    as train.py saves it: config.json and checkpoints/ckpt-<step>."""
    tf.keras.utils.set_random_seed(0)
    images = blob_images(32)
    trainer = trainer_lib.Trainer(
        cfg, SHAPE, main_steps=steps, train_images=lambda: tf.data.Dataset.from_tensor_slices(images)
    )
    batches = iter(tf.data.Dataset.from_tensor_slices(images).repeat().batch(8, drop_remainder=True))
    trainer.train_steps(batches, steps)
    if stage2_steps:
        trainer.phases[1].begin(lambda line: None)
        trainer.train_steps(batches, stage2_steps)
    config.save(cfg, cfg.run_dir)
    checkpoints.Manager(trainer.checkpoint, os.path.join(cfg.run_dir, "checkpoints"), 5).save(trainer.step)
    return trainer


@pytest.fixture(scope="module")
def lpga(tmp_path_factory):
    """(trainer, run dir) of an LPGA run with batch norm (moving statistics to restore) and a
    bn_momentum other than the default."""
    run_dir = str(tmp_path_factory.mktemp("runs") / "lpga")
    cfg = config.for_method(
        "lpga",
        run_dir=run_dir,
        dataset="mnist",
        z_dim=4,
        batch_size=8,
        lr=0.01,
        init_steps=0,
        use_bn=True,
        bn_momentum=0.9,
    )
    return _train(cfg, 5), run_dir


@pytest.fixture(scope="module")
def two_stage(tmp_path_factory):
    """(trainer, run dir) of a 2-Stage VAE run through both of its stages."""
    run_dir = str(tmp_path_factory.mktemp("runs") / "two_stage")
    cfg = config.for_method(
        "two_stage_vae",
        run_dir=run_dir,
        dataset="mnist",
        z_dim=4,
        batch_size=8,
        lr=1e-3,
        stage2_depth=2,
        stage2_width=16,
        stage2_lr=1e-3,
    )
    return _train(cfg, 4, stage2_steps=3), run_dir


def _codes(n, z_dim, seed=1):
    return tf.constant(np.random.default_rng(seed).standard_normal((n, z_dim)), tf.float32)


def test_a_restored_run_decodes_and_encodes_as_the_trainer_did(lpga):
    trainer, run_dir = lpga
    run = runs.load(run_dir, log=pytest.fail)
    assert run.step == trainer.step == 5 and run.checkpoint.endswith("ckpt-5")
    assert run.cfg == trainer.cfg and run.parts == {} and run.image_shape == SHAPE
    z = _codes(6, 4)
    np.testing.assert_array_equal(run.decoder(z, training=False), trainer.decoder(z, training=False))
    images = blob_images(6, seed=2)
    np.testing.assert_array_equal(run.encode_mean(images), trainer.encode_mean(images))
    # Not the initial weights: the checkpoint was read.
    fresh, _, _ = runs.build(run.cfg)
    assert not np.allclose(fresh(images, training=False), run.encoder(images, training=False))


def test_a_restored_two_stage_run_samples_as_the_trainer_did(two_stage):
    trainer, run_dir = two_stage
    run = runs.load(run_dir, log=pytest.fail)
    assert run.step == trainer.step == 7 and set(run.parts) == {"two_stage"}
    assert int(run.parts["two_stage"].step) == 3
    np.testing.assert_array_equal(run.decoder.log_gamma.numpy(), trainer.decoder.log_gamma.numpy())
    lines = []
    sampler = run.sampler(log=lines.append)
    assert sampler.kind == "two_stage" and lines[0].startswith(
        f"sampler two_stage: the stage-2 VAE of checkpoint {run.checkpoint}"
    )
    reference = trainer.parts["two_stage"].sampler()
    n, seed = tf.constant(5), tf.constant(3, tf.int64)
    np.testing.assert_array_equal(
        run.decoder(sampler.sample(n, seed), training=False), trainer.decoder(reference.sample(n, seed), training=False)
    )


def test_nets_are_float32_whatever_the_run_trained_in(lpga, tmp_path):
    _, run_dir = lpga
    copy = str(tmp_path / "bf16")
    shutil.copytree(run_dir, copy)
    saved = json.loads(pathlib.Path(copy, "config.json").read_text())
    with open(os.path.join(copy, "config.json"), "w") as f:
        json.dump({**saved, "precision": "mixed_bfloat16", "run_dir": copy}, f)
    run = runs.load(copy)
    assert run.cfg.precision == "mixed_bfloat16"
    assert {tf.as_dtype(v.dtype) for v in run.encoder.weights + run.decoder.weights} == {tf.float32}
    assert run.encoder.compute_dtype == run.decoder.compute_dtype == "float32"
    assert run.decoder(_codes(2, 4), training=False).dtype == tf.float32


@pytest.mark.e2e
def test_the_latest_step_is_read_without_tensorflow(lpga, tmp_path):
    _, run_dir = lpga
    code = (
        "import sys; from pga_tf import runs; "
        f"print(runs.latest_step({run_dir!r}), runs.latest_step({str(tmp_path)!r}), "
        "'tensorflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["5", "None", "False"]


def _faults(lpga_dir, two_stage_dir, tmp):
    """name -> (run dir, step, what the one line says)."""

    def copy(src, name, edit=None, config_text=None):
        dst = str(tmp / name)
        shutil.copytree(src, dst)
        path = os.path.join(dst, "config.json")
        if edit:
            with open(path, "w") as f:
                json.dump({**json.loads(pathlib.Path(src, "config.json").read_text()), **edit}, f)
        if config_text is not None:
            with open(path, "w") as f:
                f.write(config_text)
        return dst

    no_config = tmp / "no_config"
    no_config.mkdir()
    no_ckpt = tmp / "no_ckpt"
    no_ckpt.mkdir()
    shutil.copy(os.path.join(lpga_dir, "config.json"), no_ckpt)
    damaged = copy(lpga_dir, "damaged")
    data = os.path.join(damaged, "checkpoints", "ckpt-5.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.seek(os.path.getsize(data) // 2)
        f.write(b"\xff" * 64)
    return {
        "no run dir": (str(tmp / "nope"), None, "run dir {d} does not exist"),
        "no config": (str(no_config), None, "{d} has no config.json; is it a training run dir?"),
        "empty config": (copy(lpga_dir, "empty", config_text=""), None, "config.json is empty"),
        "no checkpoint": (str(no_ckpt), None, "{d} has no checkpoint yet (nothing in {d}/checkpoints)"),
        "step not kept": (lpga_dir, 3, "{d} keeps no checkpoint at step 3 (it keeps steps 5; train.py"),
        "damaged": (damaged, None, "every checkpoint in {d}/checkpoints is damaged"),
        "other z_dim": (
            copy(lpga_dir, "z7", {"z_dim": 7}),
            None,
            "does not match the run's config.json (method lpga, model conv_mnist, z_dim 7, use_bn True): ",
        ),
        "other stage-2 width": (
            copy(two_stage_dir, "w32", {"stage2_width": 32}),
            None,
            "(method two_stage_vae, model conv_mnist, z_dim 4, use_bn False, stage2_depth 2, stage2_width 32): ",
        ),
    }


def test_every_user_fault_is_one_run_error_line(lpga, two_stage, tmp_path):
    for name, (run_dir, step, needle) in _faults(lpga[1], two_stage[1], tmp_path).items():
        with pytest.raises(runs.RunError) as caught:
            runs.load(run_dir, step)
        message = str(caught.value)
        assert needle.format(d=run_dir) in message and "\n" not in message, (name, message)
