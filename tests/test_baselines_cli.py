"""WAE and RAE through the entry points, in subprocesses on a tiny labelled IDX dataset:
train.py -> evaluate.py -> export_savedmodel.py, the exported signatures, and flag errors."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import assert_one_line_error, labelled_data_and_classifier, ok, run_python

# Every test here starts a program in a subprocess.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def data_and_classifier(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("baselines")
    data_dir, clf_dir, _ = labelled_data_and_classifier(tmp, 48, 16)
    return str(data_dir), str(clf_dir / "fashion_mnist_cnn.keras"), tmp


@pytest.mark.parametrize("method,extra", [("wae", []), ("rae", ["--rae_reg=gp"])])
def test_train_evaluate_export(data_and_classifier, method, extra):
    data_dir, clf, tmp = data_and_classifier
    run_dir, export_dir = str(tmp / f"run_{method}"), str(tmp / f"export_{method}")
    proc = ok(
        run_python(
            [
                "train.py",
                f"--method={method}",
                *extra,
                "--train_steps=6",
                "--z_dim=4",
                "--batch_size=8",
                "--log_every=3",
                "--steps_per_loop=3",
                "--lr=0.01",
                "--noexport",
                f"--data_dir={data_dir}",
                f"--run_dir={run_dir}",
            ]
        )
    )
    terms = {"wae": ("img_rec", "mmd"), "rae": ("img_rec", "z_l2", "dec_gp")}[method]
    last = [line for line in proc.stdout.splitlines() if line.startswith("step 6/6")][0]
    assert all(f" {t} " in last for t in terms), last
    saved = json.load(open(os.path.join(run_dir, "config.json")))
    assert saved["method"] == method and saved["z_dim"] == 4
    if method == "rae":
        assert saved["rae_reg"] == "gp" and saved["rae_beta"] == 5e-5  # the method's default

    ok(
        run_python(
            [
                "evaluate.py",
                f"--run_dir={run_dir}",
                f"--classifier={clf}",
                "--num_samples=20",
                "--draws=2",
                "--batch_size=16",
                f"--stats_cache={tmp / 'cache'}",
            ]
        )
    )
    report = json.load(open(os.path.join(run_dir, "eval", "report.json")))
    assert report["step"] == 6 and report["config"]["method"] == method
    assert np.isfinite(report["metrics"]["FID-fashion_mnist_cnn"])
    assert report["latent_nll"] is None  # no latent likelihood for these methods

    ok(run_python(["export_savedmodel.py", f"--run_dir={run_dir}", f"--export_dir={export_dir}"]))
    model = tf.saved_model.load(export_dir)
    images = np.random.default_rng(1).uniform(-1, 1, (3, 28, 28, 1)).astype(np.float32)
    encoded = model.signatures["encode"](images=tf.constant(images))
    assert set(encoded) == {"mu"} and encoded["mu"].shape == (3, 4)  # a deterministic encoder
    decoded = model.signatures["decode"](z=encoded["mu"])["images"].numpy()
    rec = model.signatures["reconstruct"](images=tf.constant(images))["images"].numpy()
    np.testing.assert_allclose(rec, decoded, atol=1e-6)

    def draw(seed):
        return model.signatures["sample"](
            num_samples=tf.constant(5),
            seed=tf.constant(seed, tf.int64),
        )["images"].numpy()

    a, b, c = draw(3), draw(3), draw(4)
    assert a.shape == (5, 28, 28, 1) and np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["--method=rae", "--rae_reg=l1"], "--rae_reg"),
        (["--method=wae", "--wae_lambda=-1"], "--wae_lambda"),
        (["--method=rae", "--rae_beta=-0.5"], "--rae_beta"),
    ],
)
def test_bad_coefficients_are_one_line_errors(tmp_path, argv, needle):
    run_dir = tmp_path / "run"
    proc = run_python(["train.py", *argv, f"--run_dir={run_dir}"], timeout=120)
    # Parse-time validation: the whole of stderr is one `error:` line naming the flag, exit 1.
    assert_one_line_error(proc, needle)
    assert not run_dir.exists()
