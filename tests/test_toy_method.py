"""A method added from outside the package trains, evaluates and exports through the normal entry
points: one module and one record, registered through the "pga_tf.methods" entry-point group of
an installed distribution, and no pga-tf file changed (docs/ARCHITECTURE.md, "Adding a method")."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import ROOT, labelled_data_and_classifier

# The toy method: an autoencoder whose codes are pulled towards 0 by a weighted mean of z^2 (a
# term no built-in method logs, so the progress line shows that its loss function ran).
TOY_LOSSES = """
import tensorflow as tf

from pga_tf.methods import objectives
from pga_tf.methods.parts import Losses


def losses(cfg, encoder, decoder, images, noise, step):
    del noise, step
    z = encoder(images, training=True, update_stats=True)
    rec = objectives.squared_error(images, decoder(z, training=True, update_stats=True))
    pull = tf.reduce_mean(tf.square(z), axis=1)
    loss = rec + 0.1 * pull
    return Losses(loss, loss, {"img_rec": rec, "toy_pull": pull})
"""
TOY_CARD = """
from pga_tf.methods import Method

METHOD = Method(name="toy_ae", label="Toy AE", paper="a test's toy method", losses="toy_method.losses:losses",
                defaults=dict(z_dim=3, init_steps=0, zn_rec=0.0, zh_rec=0.0, nll=0.0, vrec=0.0, vkld=0.0,
                              optimizer="adam", lr=1e-3))
"""


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(environment whose Python finds the toy distribution, data dir, classifier path, tmp dir)."""
    tmp = tmp_path_factory.mktemp("toy")
    site = tmp / "site"
    (site / "toy_method").mkdir(parents=True)
    (site / "toy_method" / "__init__.py").write_text("")
    (site / "toy_method" / "losses.py").write_text(TOY_LOSSES)
    (site / "toy_method" / "card.py").write_text(TOY_CARD)
    info = site / "toy_method-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-method\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[pga_tf.methods]\ntoy_ae = toy_method.card:METHOD\n")
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    data_dir, clf_dir, _ = labelled_data_and_classifier(tmp, 48, 16)
    return env, str(data_dir), str(clf_dir / "fashion_mnist_cnn.keras"), tmp


def _run(env, *args, timeout=300):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.mark.e2e
def test_without_the_distribution_the_method_is_unknown(toy):
    env, data_dir, _, tmp = toy
    env = {**env, "PYTHONPATH": ""}
    proc = subprocess.run(
        [sys.executable, "train.py", "--method=toy_ae", f"--data_dir={data_dir}", f"--run_dir={tmp / 'never'}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0 and "toy_ae" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp / "never").exists()


@pytest.mark.e2e
def test_a_registered_method_trains_evaluates_and_exports(toy):
    env, data_dir, clf, tmp = toy
    run_dir, export_dir = tmp / "run", tmp / "export"
    proc = _run(
        env,
        "train.py",
        "--method=toy_ae",
        "--train_steps=6",
        "--batch_size=8",
        "--log_every=3",
        "--steps_per_loop=3",
        "--sample_every=6",
        "--noexport",
        f"--data_dir={data_dir}",
        f"--run_dir={run_dir}",
    )
    assert "training toy_ae on fashion_mnist (conv_mnist, z_dim 3)" in proc.stdout, proc.stdout
    progress = [line for line in proc.stdout.splitlines() if line.startswith("step 6/6")]
    assert progress and "toy_pull" in progress[0], proc.stdout  # the toy's own loss function ran
    cfg = json.loads((run_dir / "config.json").read_text())
    assert cfg["method"] == "toy_ae" and cfg["z_dim"] == 3 and cfg["optimizer"] == "adam"  # its defaults

    _run(
        env,
        "evaluate.py",
        f"--run_dir={run_dir}",
        f"--classifier={clf}",
        "--num_samples=20",
        "--draws=1",
        "--batch_size=16",
        f"--stats_cache={tmp / 'cache'}",
    )
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert report["config"]["method"] == "toy_ae" and report["step"] == 6
    assert np.isfinite(report["metrics"]["FID-fashion_mnist_cnn"])
    assert "latent_nll_nats" not in report["metrics"]  # its record defines no latent likelihood

    _run(env, "export_savedmodel.py", f"--run_dir={run_dir}", f"--export_dir={export_dir}")
    # A second code path: the nets rebuilt from config.json and restored from the checkpoint by
    # TensorFlow alone decode the same images as the SavedModel.
    check = textwrap.dedent(f"""
        import json, numpy as np, tensorflow as tf
        from pga_tf.nets import models
        cfg = json.load(open({str(run_dir / "config.json")!r}))
        enc, dec = models.build_models(cfg["model"], cfg["z_dim"], 1, use_bn=cfg["use_bn"], variational=False)
        tf.train.Checkpoint(encoder=enc, decoder=dec).restore(
            tf.train.latest_checkpoint({str(run_dir / "checkpoints")!r})).expect_partial()
        z = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
        served = tf.saved_model.load({str(export_dir)!r}).signatures["decode"](z=tf.constant(z))["images"]
        print(float(np.max(np.abs(served.numpy() - dec(z, training=False).numpy()))))
    """)
    diff = float(_run(env, "-c", check).stdout.strip().splitlines()[-1])
    assert diff < 1e-5


def test_a_method_registered_at_run_time_is_a_valid_config():
    """A notebook's `methods.register` after pga_tf.config has loaded: its configs validate."""
    import dataclasses

    from pga_tf import config, methods

    toy = dataclasses.replace(methods.get("ae"), name="toy_at_run_time", label="Toy")
    methods.register(toy)
    try:
        cfg = config.for_method("toy_at_run_time")
        config.validate(cfg)
        assert cfg.method == "toy_at_run_time" and cfg.z_dim == methods.get("ae").defaults["z_dim"]
    finally:
        methods.unregister("toy_at_run_time")
    with pytest.raises(ValueError, match="unknown method 'toy_at_run_time'"):
        config.validate(cfg)
