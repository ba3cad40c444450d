"""The 2-Stage VAE: its losses against numpy, stage 2 on synthetic codes, the two-stage sampler,
learning, resume inside stage 2, and train -> evaluate -> export end to end."""

import json
import math
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pga_tf import config, export, runs, samplers
from pga_tf.methods import baseline_objectives as baselines
from pga_tf.methods import parts as step_lib
from pga_tf.methods import two_stage_vae as two_stage
from pga_tf.training import trainer as trainer_lib
from tests.helpers import ENV, ROOT, SHAPE, assert_one_line_error, blob_images, labelled_data_and_classifier, parse
from tests.helpers import run as train_cli
from tests.helpers import start as train_start

# A tiny two_stage_vae run: 10 stage-1 steps then --stage2_steps, small stage-2 nets.
TINY = [
    "--method=two_stage_vae",
    "--z_dim=4",
    "--batch_size=8",
    "--log_every=5",
    "--sample_every=1000",
    "--ckpt_every=5",
    "--steps_per_loop=5",
    "--optimizer=adam",
    "--lr=0.001",
    "--stage2_lr=0.001",
    "--stage2_depth=2",
    "--stage2_width=16",
    "--train_steps=10",
    "--noexport",
]


def _cfg(**kw):
    kw = {
        "z_dim": 4,
        "batch_size": 8,
        "lr": 1e-3,
        "optimizer": "adam",
        "model": "conv_mnist",
        "stage2_depth": 2,
        "stage2_width": 32,
        "stage2_lr": 1e-3,
        **kw,
    }
    return config.for_method("two_stage_vae", **kw)


def _trainer(cfg, images, stage1_steps):
    return trainer_lib.Trainer(
        cfg, SHAPE, main_steps=stage1_steps, train_images=lambda: tf.data.Dataset.from_tensor_slices(images)
    )


def _batches(images, batch):
    return iter(tf.data.Dataset.from_tensor_slices(images).repeat().batch(batch, drop_remainder=True))


def moment_distance(z):
    """(||mean||, ||cov - I||_F / sqrt(d)): how far the codes' first two moments are from N(0, I)'s."""
    z = np.asarray(z, np.float64)
    d = z.shape[1]
    return np.linalg.norm(z.mean(0)), np.linalg.norm(np.cov(z, rowvar=False) - np.eye(d)) / math.sqrt(d)


# ------------------------------------------------------------------------------------- losses
def test_gaussian_nll_and_kl_against_numpy():
    rng = np.random.default_rng(0)
    x, x_hat = rng.normal(size=(2, 3, 5, 5, 2))
    mu, log_var = rng.normal(size=(2, 3, 4))
    log_gamma = -0.7
    gamma = math.exp(log_gamma)
    # The official gen_loss1 / kl_loss1 per example (network/two_stage_vae_model.py).
    nll = np.sum(np.square((x - x_hat) / gamma) / 2 + log_gamma + 0.91893853320467, axis=(1, 2, 3))
    sd = np.exp(0.5 * log_var)
    kl = np.sum(np.square(mu) + np.square(sd) - 2 * np.log(sd) - 1, axis=1) / 2
    np.testing.assert_allclose(baselines.gaussian_nll(x, x_hat, tf.constant(log_gamma)), nll, rtol=1e-5)
    np.testing.assert_allclose(baselines.gaussian_kl(mu, log_var), kl, rtol=1e-5)
    loss, terms = baselines.vae_loss(x, x_hat, tf.constant(log_gamma), mu, log_var)
    np.testing.assert_allclose(loss, nll + kl, rtol=1e-5)
    np.testing.assert_allclose(terms["gamma"], [gamma] * 3, rtol=1e-6)


def test_stage1_loss_with_learned_gamma_against_numpy():
    """The step's stage-1 loss and its gradient w.r.t. log gamma_x, against numpy on the same
    encoder/decoder outputs: d loss / d log gamma = sum_pixels (1 - (x - x_hat)^2 / gamma^2)."""
    tf.keras.utils.set_random_seed(0)
    cfg = _cfg()
    trainer = _trainer(cfg, blob_images(16), 10)
    trainer.decoder.log_gamma.assign(-0.4)
    images = blob_images(6, seed=1)
    noise = step_lib.Noise(
        *(tf.constant(np.random.default_rng(s).standard_normal((6, 4)), tf.float32) for s in range(3))
    )
    with tf.GradientTape() as tape:
        out = two_stage.losses(cfg, trainer.encoder, trainer.decoder, images, noise, tf.constant(0))
        mean = tf.reduce_mean(out.decoder)
    grad = tape.gradient(mean, trainer.decoder.log_gamma)

    mu, log_var = (t.numpy().astype(np.float64) for t in trainer.encoder(images, training=True))
    z = mu + np.exp(0.5 * log_var) * noise.posterior.numpy()
    x_hat = trainer.decoder(tf.constant(z, tf.float32), training=True).numpy().astype(np.float64)
    gamma = math.exp(-0.4)
    sq = np.square(images - x_hat).reshape(6, -1)
    nll = np.sum(sq / (2 * gamma**2) - 0.4 + 0.5 * math.log(2 * math.pi), axis=1)
    kl = 0.5 * np.sum(mu**2 + np.exp(log_var) - log_var - 1, axis=1)
    np.testing.assert_allclose(out.terms["nll_x"], nll, rtol=1e-4)
    np.testing.assert_allclose(out.terms["kl"], kl, rtol=1e-4)
    np.testing.assert_allclose(out.decoder, nll + kl, rtol=1e-4)
    np.testing.assert_allclose(out.terms["img_rec"], sq.mean(1), rtol=1e-4)
    np.testing.assert_allclose(float(grad), np.mean(np.sum(1 - sq / gamma**2, axis=1)), rtol=1e-3)
    assert trainer.decoder.log_gamma in trainer.decoder.trainable_variables  # the optimizer trains it


@pytest.mark.slow_inproc
def test_200_steps_lower_the_reconstruction_loss_and_learn_gamma():
    tf.keras.utils.set_random_seed(0)
    cfg = _cfg()
    images = blob_images(256)
    trainer = _trainer(cfg, images, 1000)
    batches = _batches(images, 8)
    first = trainer.train_steps(batches, 10)
    for _ in range(18):
        trainer.train_steps(batches, 10)
    last = trainer.train_steps(batches, 10)
    assert trainer.step == 200 and trainer.phase_at(trainer.step)[0] == 0
    assert last["img_rec"] < 0.6 * first["img_rec"], (first, last)
    # gamma_x follows the reconstruction error down (its optimum is the RMS error per pixel).
    assert last["gamma_x"] < first["gamma_x"] < 1.0


# ------------------------------------------------------------------------------------ stage 2
def _skewed_codes(n, seed=0):
    """Non-Gaussian 2-d codes far from N(0, I): shifted, scaled, skewed and curved."""
    g = np.random.default_rng(seed).standard_normal((n, 2))
    return np.stack([3.0 + np.exp(0.8 * g[:, 0]), 0.5 * g[:, 1] + 0.8 * g[:, 0] ** 2], 1).astype(np.float32)


def test_stage2_moves_the_codes_moments_towards_standard_normal():
    tf.keras.utils.set_random_seed(0)
    z = _skewed_codes(4096)
    log_var = np.full_like(z, math.log(1e-4))  # a sharp stage-1 posterior, as gamma_x -> 0 gives
    parts = two_stage.TwoStage(2, depth=2, width=64, lr=1e-3)
    stage2 = two_stage.SecondStage(
        parts, 64, seed=0, strategy=tf.distribute.get_strategy(), generator=tf.random.Generator.from_seed(0)
    )
    stage2.set_codes(z, log_var)
    for _ in range(15):
        metrics, bad = stage2.train_steps(None, 100)
        assert bad == -1
    assert int(parts.step) == 1500
    before = moment_distance(z)
    mu_u, log_var_u = parts.encoder(tf.constant(z))
    u = mu_u.numpy() + np.exp(0.5 * log_var_u.numpy()) * np.random.default_rng(1).standard_normal(z.shape)
    after = moment_distance(u)
    assert before[0] > 3 and before[1] > 0.5, before
    # The aggregate posterior of u is near N(0, I): a small fraction of where the codes started.
    assert after[0] < 0.25 and after[1] < 0.35, (before, after)
    # ... and u ~ N(0, I) through the stage-2 decoder gives codes with the codes' moments.
    sampled = parts.sampler().sample(tf.constant(4096), tf.constant(3, tf.int64)).numpy()
    np.testing.assert_allclose(sampled.mean(0), z.mean(0), atol=0.25)
    np.testing.assert_allclose(np.cov(sampled, rowvar=False), np.cov(z, rowvar=False), atol=0.35)
    assert metrics["stage2_gamma"] < 0.95  # gamma_z is learned: down from 1


def test_stage2_batches_are_reshuffled_epochs():
    n, b = 20, 6  # 3 batches per epoch, 2 codes dropped
    epoch0 = np.concatenate([two_stage.epoch_indices(s, n, b, seed=5).numpy() for s in range(3)])
    epoch1 = np.concatenate([two_stage.epoch_indices(s, n, b, seed=5).numpy() for s in range(3, 6)])
    for epoch in (epoch0, epoch1):
        assert len(epoch) == 18 and len(set(epoch.tolist())) == 18 and set(epoch.tolist()) <= set(range(n))
    assert not np.array_equal(epoch0, epoch1)
    np.testing.assert_array_equal(two_stage.epoch_indices(4, n, b, seed=5), epoch1[6:12])  # stateless


def test_two_stage_sampler_shapes_and_composition():
    """sample(N, seed) -> z [N, z_dim] = z_hat(u) + gamma_z * eps, u, eps ~ N(0, I) from the seed
    (streams 0 and 1); the stage-1 decoder turns it into [N, H, W, C] images."""
    tf.keras.utils.set_random_seed(0)
    cfg = _cfg(z_dim=3)
    trainer = _trainer(cfg, blob_images(16), 10)
    parts = trainer.parts["two_stage"]
    parts.decoder.log_gamma.assign(-1.5)
    sampler = parts.sampler()
    assert isinstance(sampler, samplers.LatentSampler) and sampler.kind == "two_stage"
    z = sampler.sample(tf.constant(5), tf.constant(11, tf.int64))
    assert z.shape == (5, 3) and z.dtype == tf.float32
    np.testing.assert_array_equal(z, sampler.sample(tf.constant(5), tf.constant(11, tf.int64)))
    assert not np.allclose(z, sampler.sample(tf.constant(5), tf.constant(12, tf.int64)))
    u = tf.random.stateless_normal([5, 3], seed=tf.constant([11, 0], tf.int64))
    eps = tf.random.stateless_normal([5, 3], seed=tf.constant([11, 1], tf.int64))
    np.testing.assert_allclose(z, parts.decoder(u)[0] + math.exp(-1.5) * eps, rtol=1e-5, atol=1e-6)
    assert trainer.decoder(z, training=False).shape == (5, *SHAPE)
    assert sampler.sample(tf.constant(0), tf.constant(0, tf.int64)).shape == (0, 3)


def test_trainer_switches_to_stage2_after_stage1_steps():
    tf.keras.utils.set_random_seed(0)
    cfg = _cfg()
    images = blob_images(32)
    trainer = _trainer(cfg, images, 10)
    batches = _batches(images, 8)
    assert [p.name for p in trainer.phases] == ["stage 1", "stage 2"]
    assert trainer.phase_at(0, 25) == (0, 10)
    one = trainer.train_steps(batches, 10)
    assert "img_rec" in one and trainer.step == 10
    assert trainer.phase_at(10, 25) == (1, 25)
    lines = []
    trainer.phases[1].begin(lines.append)
    assert lines and lines[0].startswith("stage 2 of 2 from step 10: 32 training images")
    dec_before = [v.numpy() for v in trainer.decoder.weights]
    two = trainer.train_steps(batches, 5)
    assert set(two) == {"stage2_loss", "stage2_nll", "stage2_kl", "stage2_gamma"}
    assert trainer.step == 15 and int(trainer.optimizer.iterations) == 10
    assert int(trainer.parts["two_stage"].step) == 5
    for a, b in zip(dec_before, trainer.decoder.weights):  # stage 1 is frozen in stage 2
        np.testing.assert_array_equal(a, b.numpy())
    # Stage 1 ended at step 10 (e.g. a resume with a larger --train_steps): refused.
    trainer.phases[0].steps = 12
    with pytest.raises(trainer_lib.TrainingError, match="stage 1 ended at step 10"):
        trainer.check_phases()


def test_stage2_steps_default_to_the_official_ratio():
    assert config.later_steps(_cfg(), 3000) == 6000  # epochs2 / epochs = 800 / 400
    assert config.later_steps(_cfg(stage2_ratio=1.0), 3000) == 3000
    assert config.later_steps(_cfg(stage2_steps=7), 3000) == 7
    assert config.later_steps(config.for_method("vae"), 3000) == 0


# The official demo.py argument names and ours (daib13/TwoStageVAE).
OFFICIAL_NAMES = {
    "--batch-size": "batch_size",
    "--latent-dim": "z_dim",
    "--lr": "lr",
    "--lr2": "stage2_lr",
    "--second-depth": "stage2_depth",
    "--second-dim": "stage2_width",
}


@pytest.mark.parametrize("dataset", ["fashion_mnist", "mnist", "cifar10", "celeba"])
def test_flagfiles_hold_the_official_settings(dataset):
    """Each flagfile against the official arguments its first line quotes, read independently."""
    path = os.path.join(ROOT, "flags", f"two_stage_vae_{dataset}.cfg")
    cfg = parse([f"--flagfile={path}"])
    with open(path) as f:
        words = f.readline().replace("(", " ").replace(")", " ").replace(";", " ").replace(":", " ").split()
    official = {w: words[i + 1] for i, w in enumerate(words[:-1]) if w.startswith("--")}
    for name, key in OFFICIAL_NAMES.items():
        assert getattr(cfg, key) == pytest.approx(float(official[name])), name
    assert cfg.method == "two_stage_vae" and cfg.optimizer == "adam" and "Adam" in words
    assert cfg.epochs == int(official["--epochs"])
    assert cfg.stage2_ratio == pytest.approx(int(official["--epochs2"]) / int(official["--epochs"]))
    assert cfg.dataset == {"celeba": "celeb_a"}.get(dataset, dataset)


# ------------------------------------------------------------------------- train.py: resume
def _tensors(run_dir, prefixes=("encoder/", "decoder/", "two_stage/", "optimizer/")):
    reader = tf.train.load_checkpoint(os.path.join(run_dir, "checkpoints"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k.startswith(prefixes)}


def _steps(run_dir):
    t = _tensors(run_dir)
    return int(t["optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]), int(
        t["two_stage/optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE"]
    )


@pytest.mark.e2e
def test_a_run_stopped_in_stage2_resumes_there_bitwise(idx_dir, tmp_path):
    """A step budget ends a run inside stage 2; raising --stage2_steps resumes it in stage 2 at
    the right step, and it ends bitwise where an uninterrupted run does (--deterministic)."""
    common = ["--data_dir", idx_dir, *TINY, "--deterministic"]
    whole = str(tmp_path / "whole")
    proc = train_cli(common + ["--run_dir", whole, "--stage2_steps=20"])
    assert proc.returncode == 0, proc.stderr
    assert "for 30 steps (stage 1: 10, stage 2: 20)" in proc.stdout
    assert "stage 2 of 2 from step 10" in proc.stdout

    part = str(tmp_path / "part")
    proc = train_cli(common + ["--run_dir", part, "--stage2_steps=5"])
    assert proc.returncode == 0, proc.stderr
    assert _steps(part) == (10, 5)
    proc = train_cli(common + ["--run_dir", part, "--stage2_steps=20"])
    assert proc.returncode == 0, proc.stderr
    assert "at step 15" in proc.stdout and "stage 2 of 2 from step 15" in proc.stdout, proc.stdout
    assert "step 20/30 | stage2_" in proc.stdout and "img_rec" not in proc.stdout  # no stage-1 step
    assert _steps(part) == (10, 20)
    a, b = _tensors(whole), _tensors(part)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


@pytest.mark.e2e
def test_sigterm_in_stage2_stops_with_a_checkpoint_and_resumes(idx_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    args = [
        "--data_dir",
        idx_dir,
        *TINY,
        "--run_dir",
        run_dir,
        "--stage2_steps=100000",
        "--steps_per_loop=1",
        "--ckpt_every=100000",
    ]
    proc = train_start(args)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step ") and "stage2_loss" in line:  # a stage-2 block has run
            proc.send_signal(signal.SIGTERM)
            break
    rest, _ = proc.communicate(timeout=120)
    out = "".join(lines) + rest
    assert proc.returncode == 0, out
    stopped = int(out.split("SIGTERM: stopped at step ")[1].split(",")[0])
    assert stopped > 10
    assert _steps(run_dir) == (10, stopped - 10)
    proc = train_cli(args[:-3] + ["--stage2_steps", str(stopped - 10 + 5), "--steps_per_loop=5"])
    assert proc.returncode == 0, proc.stderr
    assert f"at step {stopped}" in proc.stdout and f"stage 2 of 2 from step {stopped}" in proc.stdout
    assert _steps(run_dir) == (10, stopped - 10 + 5)


@pytest.mark.e2e
def test_bad_stage2_flags_are_one_line_errors(tmp_path):
    for flag, needle in (
        ("--stage2_lr=0", "--stage2_lr must be positive"),
        ("--stage2_steps=-1", "--stage2_steps must be >= 0"),
        ("--stage2_width=0", "--stage2_width must be positive"),
    ):
        proc = train_cli(["--method=two_stage_vae", flag, f"--run_dir={tmp_path / 'r'}"])
        assert_one_line_error(proc, needle)  # checked at parse time
        assert not os.path.exists(tmp_path / "r")


# ------------------------------------------------------------- train -> evaluate -> export
@pytest.fixture(scope="module")
def labelled(tmp_path_factory):
    """(data dir with labelled IDX files, domain classifier) for evaluate.py."""
    tmp = tmp_path_factory.mktemp("e2e")
    data_dir, clf_dir, _ = labelled_data_and_classifier(tmp, 64, 24)
    return str(data_dir), str(clf_dir / "fashion_mnist_cnn.keras"), tmp


@pytest.mark.e2e
def test_train_evaluate_export_end_to_end(labelled):
    data_dir, clf, tmp = labelled
    run_dir = str(tmp / "run")
    proc = train_cli(["--data_dir", data_dir, *TINY[:-1], "--stage2_steps=10", "--run_dir", run_dir])
    assert proc.returncode == 0, proc.stderr
    assert "(step 20) written to" in proc.stdout and "saved_model" in proc.stdout

    proc = subprocess.run(
        [
            sys.executable,
            "evaluate.py",
            f"--run_dir={run_dir}",
            f"--classifier={clf}",
            "--num_samples=20",
            "--draws=2",
            "--batch_size=16",
            f"--stats_cache={tmp / 'cache'}",
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "FID-fashion_mnist_cnn-two_stage" in proc.stdout and "sampler two_stage: the stage-2 VAE" in proc.stdout
    report = json.load(open(os.path.join(run_dir, "eval", "report-two_stage.json")))
    assert report["sampler"]["kind"] == "two_stage" and report["step"] == 20
    assert report["config"]["method"] == "two_stage_vae" and report["latent_nll"] is None
    assert np.isfinite(report["metrics"]["FID-fashion_mnist_cnn-two_stage"])
    assert 0 < report["reconstruction"]["mean"] < 4

    # The export's sample signature is the in-memory two-stage sampler and stage-1 decoder.
    sampler = runs.load(run_dir).parts["two_stage"].sampler()
    module = export.from_run(run_dir)
    assert module.sampler.kind == "two_stage"
    loaded = tf.saved_model.load(os.path.join(run_dir, "saved_model"))
    served = loaded.signatures["sample"](num_samples=tf.constant(6), seed=tf.constant(3, tf.int64))["images"]
    again = loaded.signatures["serving_default"](num_samples=tf.constant(6), seed=tf.constant(3, tf.int64))["images"]
    want = module.decoder(sampler.sample(tf.constant(6), tf.constant(3, tf.int64)), training=False)
    assert served.shape == (6, *SHAPE)
    np.testing.assert_array_equal(served, again)
    np.testing.assert_allclose(served, want, atol=1e-5)
    prior = module.decoder(samplers.PriorSampler(4).sample(tf.constant(6), tf.constant(3, tf.int64)), training=False)
    assert not np.allclose(served, prior, atol=1e-3)  # it is not the prior's sample
    empty = loaded.signatures["sample"](num_samples=tf.constant(0), seed=tf.constant(3, tf.int64))["images"]
    assert empty.shape == (0, *SHAPE)


def test_a_stage1_checkpoint_has_no_sampler_yet(tmp_path):
    tf.keras.utils.set_random_seed(0)
    cfg = _cfg(run_dir=str(tmp_path / "run"), dataset="mnist")
    images = blob_images(16)
    trainer = _trainer(cfg, images, 10)
    trainer.train_steps(_batches(images, 8), 2)
    config.save(cfg, cfg.run_dir)
    tf.train.CheckpointManager(trainer.checkpoint, os.path.join(cfg.run_dir, "checkpoints"), 1).save(2)
    with pytest.raises(samplers.SamplerError, match="from stage 1 of the 2-Stage VAE"):
        export.from_run(cfg.run_dir)
    assert export.from_run(cfg.run_dir, sampler="prior").sampler.kind == "prior"  # stage 1's own samples
