"""evaluate.py and `python -m pga_tf.evaluation.classifier` end to end, in subprocesses, on a tiny synthetic
IDX dataset: a 5-step LPGA run, a 1-epoch classifier, then the report."""

import json
import os

import numpy as np
import pytest

from tests.helpers import (
    assert_error_last_line,
    idx_bytes,
    labelled_data_and_classifier,
    ok,
    read_session,
    run_python,
    write_idx,
)

# Every test here starts a program in a subprocess.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(data dir, classifier path, run dir, stats cache dir) after training both."""
    tmp = tmp_path_factory.mktemp("eval")
    data_dir, clf_dir, proc = labelled_data_and_classifier(tmp, 64, 24)
    assert "test accuracy" in proc.stdout
    meta = json.load(open(clf_dir / "fashion_mnist_cnn.json"))
    assert meta["train_examples"] == 64 and meta["test_examples"] == 24 and 0 <= meta["test_accuracy"] <= 1

    run_dir, cache = tmp / "run", tmp / "cache"
    clf = clf_dir / "fashion_mnist_cnn.keras"
    proc = ok(
        run_python(
            [
                "train.py",
                "--method=lpga",
                "--train_steps=5",
                "--z_dim=4",
                "--batch_size=8",
                "--init_steps=0",
                "--log_every=5",
                "--steps_per_loop=5",
                "--lr=0.01",
                "--noexport",
                f"--data_dir={data_dir}",
                f"--run_dir={run_dir}",
                "--fid_every=5",
                "--fid_samples=20",
                f"--classifier={clf}",
                f"--stats_cache={cache}",
            ]
        )
    )
    assert "step 5 | FID-fashion_mnist_cnn" in proc.stdout, proc.stdout
    # 20 samples, 128 feature dimensions: said before training starts.
    assert (
        "warning: FID-fashion_mnist_cnn of 20 generated vs 20 real images: not more than the 128 feature dimensions"
    ) in proc.stdout.split("step 5 |")[0], proc.stdout
    return str(data_dir), str(clf), str(run_dir), str(cache)


def test_training_writes_fid_to_tensorboard(trained):
    import tensorflow as tf

    _, _, run_dir, _ = trained
    found = []
    for path in tf.io.gfile.glob(os.path.join(run_dir, "tb", "*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            found += [(event.step, v.tag) for v in event.summary.value if v.tag.startswith("eval/")]
    assert found == [(5, "eval/FID-fashion_mnist_cnn")]


def test_training_fid_needs_a_classifier(trained, tmp_path):
    data_dir, _, _, _ = trained
    proc = run_python(
        [
            "train.py",
            "--train_steps=5",
            f"--data_dir={data_dir}",
            f"--run_dir={tmp_path / 'r'}",
            "--fid_every=5",
            f"--classifier={tmp_path / 'none.keras'}",
        ]
    )
    assert_error_last_line(proc, "no domain classifier")


def test_evaluate_scores_with_the_classifier_the_run_trained_with(trained, tmp_path):
    # The run's FID used a classifier outside classifiers/ (where a different one of the same
    # name ships): evaluate.py without --classifier must score with the run's, not the default.
    _, clf, run_dir, cache = trained
    want = json.load(open(os.path.splitext(clf)[0] + ".json"))["sha256"]
    assert json.load(open(os.path.join(run_dir, "features.json")))["classifier"] == os.path.abspath(clf)
    out = tmp_path / "report.json"
    args = ["evaluate.py", f"--run_dir={run_dir}", "--num_samples=20", "--nll_examples=0", f"--out={out}"]
    ok(run_python([*args, f"--stats_cache={cache}", "--draws=1"]))
    assert json.load(open(out))["features"]["checksum"] == want
    # A flag on the command line still wins: the shipped classifier, by name.
    shipped = os.path.join("classifiers", "fashion_mnist_cnn.keras")
    ok(run_python([*args, f"--stats_cache={cache}", "--draws=1", f"--classifier={shipped}"]))
    assert json.load(open(out))["features"]["checksum"] == json.load(open(shipped[:-6] + ".json"))["sha256"] != want
    # Resuming its FID curve with the shipped classifier instead is refused, before anything runs.
    data_dir = json.load(open(os.path.join(run_dir, "config.json")))["data_dir"]
    resume = ["train.py", f"--run_dir={run_dir}", "--method=lpga", "--z_dim=4", "--batch_size=8", "--train_steps=10"]
    proc = run_python([*resume, f"--data_dir={data_dir}", "--fid_every=5", f"--classifier={shipped}"])
    assert_error_last_line(proc, "would put two feature extractors' FIDs on one curve")
    assert "ckpt-10.index" not in os.listdir(os.path.join(run_dir, "checkpoints"))


def test_evaluate_writes_a_well_formed_report(trained):
    _, clf, run_dir, cache = trained
    args = [
        "evaluate.py",
        f"--run_dir={run_dir}",
        f"--classifier={clf}",
        "--num_samples=30",
        "--nll_examples=6",
        "--fd_draws=2",
        "--batch_size=16",
        f"--stats_cache={cache}",
        "--draws=2",
    ]
    proc = ok(run_python(args))
    report_path = os.path.join(run_dir, "eval", "report.json")
    with open(report_path) as f:
        report = json.load(f)  # strict JSON: no NaN
    assert report["step"] == 5 and report["checkpoint"].endswith("ckpt-5")
    assert report["config"]["method"] == "lpga" and report["config"]["z_dim"] == 4
    assert report["features"]["name"] == "fashion_mnist_cnn" and report["features"]["kind"] == "classifier"
    metrics = report["metrics"]
    assert set(metrics) == {
        "FID-fashion_mnist_cnn",
        "KID-fashion_mnist_cnn",
        "precision",
        "recall",
        "reconstruction_mse",
        "latent_nll_nats",
    }
    for name in ("precision", "recall"):  # per draw, in [0, 1], their mean the metric
        values = report[name]["values"]
        assert report[name]["k"] == 3 and len(values) == 2 and all(0 <= v <= 1 for v in values)
        assert metrics[name] == pytest.approx(np.mean(values))
    assert report["fid"]["num_generated"] == 30 and report["fid"]["num_real"] == 24  # the whole test split
    fids = report["fid"]["values"]
    assert len(fids) == 2 and fids[0] != fids[1] and report["fid"]["seeds"] == [0, 1]
    assert metrics["FID-fashion_mnist_cnn"] == pytest.approx(np.mean(fids))
    assert report["fid"]["std"] == pytest.approx(np.std(fids, ddof=1))
    assert np.isfinite(metrics["FID-fashion_mnist_cnn"]) and metrics["FID-fashion_mnist_cnn"] >= 0
    assert report["reconstruction"]["n"] == 24 and 0 < report["reconstruction"]["mean"] < 4
    nll = report["latent_nll"]
    assert nll["examples"] == 6 and nll["z_dim"] == 4
    fd = nll["finite_difference"]["lpga_direction"]
    assert fd["used_in_training"] and fd["draws"] == 2
    np.testing.assert_allclose(nll["nll_exact"]["mean"], nll["prior_nll"]["mean"] + nll["log_det_exact"]["mean"])
    arrays = np.load(os.path.join(run_dir, "eval", "latent_nll.npz"))
    assert arrays["log_det_exact"].shape == (6,)
    for path in report["grids"].values():
        assert os.path.getsize(path) > 0 and path.endswith(".png")
    assert "FID-fashion_mnist_cnn" in proc.stdout and "report written to" in proc.stdout
    # 30 generated and 24 real images against 128 feature dimensions: flagged, in log and report.
    warning = (
        "FID-fashion_mnist_cnn of 30 generated vs 24 real images: not more than the 128 "
        "feature dimensions, so the covariances are singular"
    )
    assert report["fid"]["warning"].startswith(warning) and report["warnings"] == [report["fid"]["warning"]]
    assert f"warning: {warning}" in proc.stdout

    # Second run: the real statistics come from the cache; --out puts the report elsewhere.
    out = os.path.join(os.path.dirname(cache), "other", "r.json")
    proc = ok(run_python(args + [f"--out={out}", "--nll_examples=0"]))
    assert "cached" in proc.stdout
    again = json.load(open(out))
    assert again["latent_nll"] is None and "latent_nll_nats" not in again["metrics"]
    assert again["metrics"]["FID-fashion_mnist_cnn"] == pytest.approx(metrics["FID-fashion_mnist_cnn"], rel=1e-6)


def test_evaluate_with_the_gmm_sampler_names_it_everywhere(trained):
    _, clf, run_dir, cache = trained
    prior_report = os.path.join(run_dir, "eval", "report.json")
    before = open(prior_report).read() if os.path.exists(prior_report) else None
    proc = ok(
        run_python(
            [
                "evaluate.py",
                f"--run_dir={run_dir}",
                f"--classifier={clf}",
                "--num_samples=30",
                "--nll_examples=0",
                "--batch_size=16",
                f"--stats_cache={cache}",
                "--draws=2",
                "--sampler=gmm",
                "--gmm_components=3",
            ]
        )
    )
    assert "sampler gmm: 3 full-covariance components fitted on 64 training codes" in proc.stdout
    report = json.load(open(os.path.join(run_dir, "eval", "report-gmm.json")))
    assert set(report["metrics"]) == {
        "FID-fashion_mnist_cnn-gmm",
        "KID-fashion_mnist_cnn-gmm",
        "precision-gmm",
        "recall-gmm",
        "reconstruction_mse",
    }
    assert report["fid"]["name"] == "FID-fashion_mnist_cnn-gmm" and len(report["fid"]["values"]) == 2
    assert np.isfinite(report["metrics"]["FID-fashion_mnist_cnn-gmm"])
    sampler = report["sampler"]
    assert sampler["kind"] == "gmm" and sampler["components"] == 3 and sampler["codes"] == 64
    assert len(sampler["weights"]) == 3 and abs(sum(sampler["weights"]) - 1) < 1e-4
    assert report["grids"]["samples"].endswith(os.path.join("eval", "samples-gmm.png"))
    assert os.path.getsize(report["grids"]["samples"]) > 0
    assert "FID-fashion_mnist_cnn-gmm" in proc.stdout
    # The TensorBoard HParams session of this (run, sampler), beside the prior's.
    session, scalars = read_session(report["hparams_logdir"])
    assert report["hparams_logdir"] == os.path.join(run_dir, "eval", "hparams-gmm")
    assert session.hparams["sampler"].string_value == "gmm" and session.hparams["method"].string_value == "lpga"
    assert session.hparams["z_dim"].number_value == 4
    assert scalars["FID"] == (5, pytest.approx(report["fid"]["value"], rel=1e-6))
    assert "latent_nll_nats" not in scalars  # --nll_examples=0
    if before is not None:  # the prior's report is where it was, untouched
        assert open(prior_report).read() == before


def test_a_gmm_that_cannot_be_fitted_is_one_line_and_writes_nothing(trained, tmp_path):
    _, clf, run_dir, cache = trained
    out = tmp_path / "eval" / "r.json"
    proc = run_python(
        [
            "evaluate.py",
            f"--run_dir={run_dir}",
            f"--classifier={clf}",
            f"--stats_cache={cache}",
            "--sampler=gmm",
            "--gmm_components=100",
            f"--out={out}",
        ]
    )
    assert_error_last_line(proc, "a 100-component GMM needs at least 100 training codes; got 64")
    assert not out.parent.exists()
    proc = run_python(["evaluate.py", f"--run_dir={run_dir}", "--sampler=gmm", "--gmm_components=0"])
    assert proc.returncode != 0 and "--gmm_components must be positive" in proc.stderr


def test_baselines_floor_is_far_below_the_noise_ceiling(trained, tmp_path):
    data_dir, clf, _, cache = trained
    out = tmp_path / "baselines.json"
    proc = ok(
        run_python(
            [
                "evaluate.py",
                "--baselines",
                f"--data_dir={data_dir}",
                f"--classifier={clf}",
                "--num_samples=20",
                "--draws=3",
                "--batch_size=16",
                f"--stats_cache={cache}",
                f"--out={out}",
            ]
        )
    )
    report = json.load(open(out))
    assert report["num_real"] == 20 and report["draws"] == 3
    floor, ceiling = report["floor"]["fid"], report["ceiling"]["fid"]
    assert len(floor["values"]) == len(ceiling["values"]) == 3
    assert max(floor["values"]) < min(ceiling["values"]) / 5, (floor, ceiling)
    assert "floor" in proc.stdout and "ceiling" in proc.stdout
    assert report["warnings"] and report["warnings"][0].startswith("FID-fashion_mnist_cnn of 20 generated vs 20 real")
    # 3 disjoint draws of 30 need 90 train images; the tiny set has 64.
    proc = run_python(
        [
            "evaluate.py",
            "--baselines",
            f"--data_dir={data_dir}",
            f"--classifier={clf}",
            "--num_samples=30",
            "--draws=3",
            f"--stats_cache={cache}",
            f"--out={tmp_path / 'b.json'}",
        ]
    )
    assert_error_last_line(proc, "train split has 64 images")


def test_run_dir_or_baselines():
    for args in ([], ["--run_dir=x", "--baselines"]):
        proc = run_python(["evaluate.py", *args])
        assert proc.returncode != 0 and "give either --run_dir" in proc.stderr, proc.stderr


def test_user_errors_are_one_line(trained, tmp_path):
    data_dir, clf, run_dir, cache = trained
    assert_error_last_line(run_python(["evaluate.py", f"--run_dir={tmp_path / 'nope'}"]), "does not exist")
    tampered = tmp_path / "fashion_mnist_cnn.keras"
    blob = bytearray(open(clf, "rb").read())
    blob[100] ^= 0xFF
    tampered.write_bytes(bytes(blob))
    (tmp_path / "fashion_mnist_cnn.json").write_text(open(clf[:-6] + ".json").read())
    assert_error_last_line(
        run_python(["evaluate.py", f"--run_dir={run_dir}", f"--classifier={tampered}", f"--stats_cache={cache}"]),
        "checksum mismatch",
    )


def test_results_table_trains_evaluates_and_reuses_finished_runs(trained, tmp_path):
    import shutil

    data_dir, clf, run_dir, cache = trained
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    shutil.copytree(run_dir, runs / "lpga")  # trained to step 5 already: evaluated, not retrained
    proc = ok(
        run_python(
            [
                "-m",
                "pga_tf.tools.results",
                "--methods=ae,lpga",
                "--train_steps=5",
                "--num_samples=20",
                "--draws=2",
                f"--runs_dir={runs}",
                f"--docs_dir={docs}",
                f"--data_dir={data_dir}",
                f"--classifier={clf}",
                f"--stats_cache={cache}",
                "--samplers=prior,gmm",
            ],
            timeout=900,
        )
    )
    assert "lpga: " in proc.stdout and "not training" in proc.stdout
    summary = json.load(open(docs / "results.json"))
    ae, lpga = summary["methods"]["ae"], summary["methods"]["lpga"]
    assert ae["timing"]["train_seconds"] > 0 and "train_seconds" not in lpga["timing"]
    assert ae["report"]["step"] == 5 and ae["report"]["config"]["method"] == "ae"
    assert "--flagfile=flags/ae_fashion_mnist.cfg" in ae["timing"]["train_command"]
    assert len(lpga["report"]["fid"]["values"]) == 2
    lines = [line for line in (docs / "table.md").read_text().splitlines() if line.startswith("|")]
    assert [line.split("|")[1].strip() for line in lines[2:]] == [
        "AE",
        "LPGA",
        "real train images (floor)",
        "Gaussian noise (ceiling)",
    ]
    assert (docs / "table.md").read_text().count("**Warning:** FID-fashion_mnist_cnn of 20 generated") == 1
    assert "warning: FID-fashion_mnist_cnn of 20 generated" in proc.stdout
    assert [c.strip() for c in lines[0].split("|")[2:6]] == [
        "FID-fashion_mnist_cnn",
        "FID-fashion_mnist_cnn-gmm",
        "KID-fashion_mnist_cnn",
        "KID-fashion_mnist_cnn-gmm",
    ]
    for column, sampler in ((2, "prior"), (3, "gmm")):
        fid_ae = ae["reports"][sampler]["fid"]
        assert lines[2].split("|")[column].strip() == f"{fid_ae['value']:.1f} ± {fid_ae['std']:.1f}"
    assert ae["report"] == ae["reports"]["prior"] and ae["reports"]["gmm"]["sampler"]["kind"] == "gmm"
    assert ae["reports"]["gmm"]["fid"]["values"] != ae["reports"]["prior"]["fid"]["values"]
    assert "--sampler=gmm" in ae["timing"]["eval"]["gmm"]["command"] and summary["samplers"] == ["prior", "gmm"]
    for m in ("ae", "lpga"):
        for name in ("samples", "samples-gmm", "interpolations"):
            assert (docs / f"{m}_{name}.png").stat().st_size > 0


def test_results_reports_a_failed_child_in_one_line(tmp_path):
    # Data that passes the command's own check (which reads the IDX header, before TensorFlow
    # loads) but not the training's, which reads the images: the failure is the child's.
    data = tmp_path / "truncated"
    data.mkdir()
    rng = np.random.default_rng(0)
    whole = idx_bytes(rng.integers(0, 256, (32, 28, 28), dtype=np.uint8))
    (data / "train-images-idx3-ubyte").write_bytes(whole[: len(whole) // 2])
    write_idx(data / "t10k-images-idx3-ubyte", rng.integers(0, 256, (16, 28, 28), dtype=np.uint8))
    proc = run_python(
        [
            "-m",
            "pga_tf.tools.results",
            "--methods=ae",
            "--train_steps=2",
            f"--runs_dir={tmp_path / 'r'}",
            f"--docs_dir={tmp_path / 'd'}",
            f"--data_dir={data}",
        ]
    )
    assert_error_last_line(proc, "train.py (ae) failed (exit 1)")
    assert "is truncated" in proc.stderr, proc.stderr


def test_bad_test_image_is_named_before_the_report_is_started(trained, tmp_path):
    """A bad test image for evaluate.py: a zero-byte file among the test split's PNGs."""
    from PIL import Image

    _, clf, run_dir, cache = trained
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        (tmp_path / "folder" / split).mkdir(parents=True)
        for i in range(60):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(
                tmp_path / "folder" / split / f"img_{i:04d}.png"
            )
    open(tmp_path / "folder" / "test" / "img_0050.png", "wb").close()
    out = tmp_path / "report" / "report.json"
    proc = run_python(
        [
            "evaluate.py",
            f"--run_dir={run_dir}",
            f"--classifier={clf}",
            f"--stats_cache={cache}",
            f"--data_dir={tmp_path / 'folder'}",
            "--num_samples=20",
            "--draws=1",
            "--nll_examples=0",
            f"--out={out}",
        ]
    )
    assert_error_last_line(proc, os.path.join("test", "img_0050.png"))
    assert not out.parent.exists()


def _fid_events(run_dir):
    """(step, value) of every eval/FID-* summary in the run's TensorBoard files, read with TF's own
    reader (curves.read goes through TensorBoard's event accumulator)."""
    import tensorflow as tf

    found = {}
    for path in sorted(tf.io.gfile.glob(os.path.join(run_dir, "tb", "*"))):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                if v.tag.startswith("eval/FID-"):
                    found[event.step] = float(tf.make_ndarray(v.tensor))
    return sorted(found.items())


def test_results_epochs_and_fid_curves(trained, tmp_path):
    """--epochs counts train.py's steps (64 images // the flagfile's batch of 64 = 1 step an
    epoch), --fid_every keeps the curve in results.json with a checkpoint at each point, and a
    second invocation reuses both the training and the evaluation."""
    data_dir, clf, _, cache = trained
    runs, docs = tmp_path / "runs", tmp_path / "docs"
    args = [
        "-m",
        "pga_tf.tools.results",
        "--methods=ae",
        "--epochs=5",
        "--fid_every=2",
        "--fid_samples=20",
        "--num_samples=20",
        "--draws=1",
        "--samplers=own",
        f"--runs_dir={runs}",
        f"--docs_dir={docs}",
        f"--data_dir={data_dir}",
        f"--classifier={clf}",
        f"--stats_cache={cache}",
    ]
    ok(run_python(args, timeout=900))
    summary = json.load(open(docs / "results.json"))
    ae = summary["methods"]["ae"]
    assert "--train_steps=5 " in ae["timing"]["train_command"] + " "
    assert summary["epochs"] == 5 and summary["fid_every"] == 2
    events = _fid_events(runs / "ae")
    assert [s for s, _ in events] == ae["curve"]["steps"] == [2, 4]
    np.testing.assert_allclose([v for _, v in events], ae["curve"]["fid"], rtol=1e-6)
    kept = sorted(p.name for p in (runs / "ae" / "checkpoints").glob("ckpt-*.index"))
    assert kept == ["ckpt-2.index", "ckpt-4.index", "ckpt-5.index"]
    assert (docs / "fid_curves.png").stat().st_size > 0
    text = (docs / "table.md").read_text()
    assert "![FID against training steps](fid_curves.png)" in text
    header = [line for line in text.splitlines() if line.startswith("| method |")][0]
    assert "FID-fashion_mnist_cnn (own sampler)" in header

    again = ok(run_python(args, timeout=900))
    assert "not training" in again.stdout and "not evaluating" in again.stdout, again.stdout
    assert json.load(open(docs / "results.json"))["methods"]["ae"]["reports"] == ae["reports"]

    # An evaluate.py run by hand with other flags overwrites the report: it is not reused.
    ok(
        run_python(
            [
                "evaluate.py",
                f"--run_dir={runs / 'ae'}",
                f"--classifier={clf}",
                f"--stats_cache={cache}",
                "--num_samples=21",
                "--draws=1",
            ]
        )
    )
    third = ok(run_python(args, timeout=900))
    assert "not evaluating" not in third.stdout and "ae: python evaluate.py" in third.stdout, third.stdout
    assert json.load(open(docs / "results.json"))["methods"]["ae"]["report"]["fid"]["num_generated"] == 20
    # Another seed in the same runs dir is refused, not silently given the seed-0 run.
    assert_error_last_line(run_python([*args, "--seed=1"]), "holds a run with --seed=0, not 1")


def test_evaluate_an_earlier_kept_checkpoint(trained, tmp_path):
    """--checkpoint_step evaluates that checkpoint (its own report dir); one not kept is a one-line
    error naming the kept steps, before anything is written."""
    data_dir, clf, _, cache = trained
    run_dir = tmp_path / "run"
    ok(
        run_python(
            [
                "train.py",
                "--method=ae",
                "--train_steps=4",
                "--z_dim=4",
                "--batch_size=8",
                "--ckpt_every=2",
                "--log_every=2",
                "--lr=0.01",
                "--noexport",
                f"--data_dir={data_dir}",
                f"--run_dir={run_dir}",
            ]
        )
    )
    common = [f"--run_dir={run_dir}", f"--classifier={clf}", f"--stats_cache={cache}", "--num_samples=20", "--draws=1"]
    ok(run_python(["evaluate.py", *common]))
    ok(run_python(["evaluate.py", *common, "--checkpoint_step=2"]))
    latest = json.load(open(run_dir / "eval" / "report.json"))
    early = json.load(open(run_dir / "eval" / "step-2" / "report.json"))
    assert (latest["step"], early["step"]) == (4, 2) and early["checkpoint"].endswith("ckpt-2")
    # Other weights, other reconstructions: the step-2 report did not read ckpt-4.
    assert early["reconstruction"]["mean"] != latest["reconstruction"]["mean"]
    proc = run_python(["evaluate.py", *common, "--checkpoint_step=3"])
    assert_error_last_line(proc, "keeps no checkpoint at step 3 (it keeps steps 2, 4;")
    assert not (run_dir / "eval" / "step-3").exists()


def test_validation_split_scores_against_the_held_out_images(trained, tmp_path):
    data_dir, clf, run_dir, cache = trained
    # A run that held nothing out has no validation split: refused before TensorFlow loads.
    proc = run_python(["evaluate.py", f"--run_dir={run_dir}", "--real_split=validation", f"--classifier={clf}"])
    assert_error_last_line(proc, "--real_split=validation needs a run trained with --holdout=N")

    held = str(tmp_path / "held")
    ok(
        run_python(
            [
                "train.py",
                "--method=ae",
                "--train_steps=3",
                "--z_dim=4",
                "--batch_size=8",
                "--holdout=40",
                "--log_every=3",
                "--steps_per_loop=3",
                "--noexport",
                f"--data_dir={data_dir}",
                f"--run_dir={held}",
            ]
        )
    )
    assert json.load(open(os.path.join(held, "config.json")))["holdout"] == 40
    ok(
        run_python(
            [
                "evaluate.py",
                f"--run_dir={held}",
                "--real_split=validation",
                f"--classifier={clf}",
                "--num_samples=30",
                "--draws=1",
                "--batch_size=16",
                f"--stats_cache={cache}",
            ]
        )
    )
    report = json.load(open(os.path.join(held, "eval", "validation", "report.json")))
    # The last 40 of the 64 training images are the real side and the reconstructions' images.
    assert report["fid"]["real_split"] == "validation" and report["fid"]["num_real"] == 30
    assert report["reconstruction"]["n"] == 40
    assert not os.path.exists(os.path.join(held, "eval", "report.json"))  # the test report's place is free
