"""TensorBoard HParams sessions: what evaluate.py writes is what TensorBoard's hparams plugin reads."""

import pytest

from pga_tf import config
from pga_tf.evaluation import hparams
from tests.helpers import read_session


def test_a_session_holds_the_runs_hyperparameters_and_final_metrics(tmp_path):
    cfg = config.for_method("vpga", z_dim=16, lr=0.05, batch_size=32, run_dir="/somewhere/else")
    hp = hparams.of_config(cfg, "gmm", "fashion_mnist_cnn", 3000)
    logdir = str(tmp_path / "hparams-gmm")
    hparams.write(logdir, hp, {"FID": 12.5, "KID": 0.01, "reconstruction_mse": 0.03, "latent_nll_nats": None}, 3000)
    hparams.write(
        logdir, hp, {"FID": 11.5, "KID": 0.01, "reconstruction_mse": 0.03, "latent_nll_nats": None}, 3000
    )  # a re-evaluation replaces the session
    session, scalars = read_session(logdir)
    got = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in session.hparams.items()}
    assert got["method"] == "vpga" and got["sampler"] == "gmm" and got["features"] == "fashion_mnist_cnn"
    assert got["z_dim"] == 16 and got["lr"] == pytest.approx(0.05) and got["batch_size"] == 32
    assert got["step"] == 3000 and got["use_bn"] is False
    for name in ("zn_rec", "vrec", "vkld", "nll", "zh_rec"):  # every coefficient
        assert got[name] == pytest.approx(getattr(cfg, name)), name
    assert not set(got) & hparams.RUN_CONTROL  # where and how it ran is no hyperparameter
    assert scalars == {
        "FID": (3000, 11.5),
        "KID": (3000, pytest.approx(0.01)),
        "reconstruction_mse": (3000, pytest.approx(0.03)),
    }
