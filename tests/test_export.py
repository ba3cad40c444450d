"""SavedModel export: export_savedmodel.py, the loaded signatures in a fresh process, bad input,
user errors, a run trained under MirroredStrategy, and the example client."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from pga_tf import checkpoints, config, export, runs, samplers
from pga_tf.training import trainer as trainer_lib
from tests.helpers import ENV, ROOT, SHAPE, assert_one_line_error, run_python, uniform_images

BIN = os.path.dirname(sys.executable)
Z_DIM = 4

# Runs in a fresh process: every signature of the SavedModel at argv[1] on the inputs in
# argv[2] (npz), outputs to argv[3] (npz).
LOAD_AND_RUN = """
import sys
import numpy as np
import tensorflow as tf
sig = tf.saved_model.load(sys.argv[1]).signatures
x = np.load(sys.argv[2])
out = {}
for k, v in sig["decode"](z=tf.constant(x["z"])).items(): out["decode/" + k] = v.numpy()
for k, v in sig["encode"](images=tf.constant(x["images"])).items(): out["encode/" + k] = v.numpy()
for k, v in sig["reconstruct"](images=tf.constant(x["images"])).items(): out["reconstruct/" + k] = v.numpy()
for name in ("sample", "serving_default"):
    for seed in (7, 7, 8):
        r = sig[name](num_samples=tf.constant(5), seed=tf.constant(seed, tf.int64))
        out.setdefault(f"{name}/{seed}", []).append(r["images"].numpy())
np.savez(sys.argv[3], **{k: np.stack(v) if isinstance(v, list) else v for k, v in out.items()})
"""


def export_cli(*args):
    return [os.path.join(ROOT, "export_savedmodel.py"), *args]


def _save_run(trainer, cfg, run_dir):
    """What train.py leaves behind that the export reads: config.json and checkpoints/."""
    config.save(cfg, run_dir)
    # As the training loop saves: ckpt-<step>, the name the step is read from.
    checkpoints.Manager(trainer.checkpoint, os.path.join(run_dir, "checkpoints"), 1).save(trainer.step)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A VPGA run with batch norm (so inference must use the moving statistics), a few steps in.

    Returns (run dir, the in-memory serving module of its trainer)."""
    tf.keras.utils.set_random_seed(0)
    cfg = config.for_method(
        "vpga", z_dim=Z_DIM, batch_size=8, use_bn=True, lr=0.01, model="conv_mnist", dataset="mnist"
    )
    trainer = trainer_lib.Trainer(cfg, SHAPE)
    data = tf.data.Dataset.from_tensor_slices(uniform_images(32)).repeat().batch(8, drop_remainder=True)
    trainer.train_steps(iter(data), 3)
    path = str(tmp_path_factory.mktemp("run") / "run")
    _save_run(trainer, cfg, path)
    return path, export.PGAServing(trainer.encoder, trainer.decoder, Z_DIM, SHAPE, True)


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    export_dir = str(tmp_path_factory.mktemp("export") / "sm")
    proc = run_python(export_cli(f"--run_dir={run_dir[0]}", f"--export_dir={export_dir}"))
    assert proc.returncode == 0, proc.stderr
    ckpt = tf.train.latest_checkpoint(os.path.join(run_dir[0], "checkpoints"))
    assert f"SavedModel of {ckpt} (step 3) written to {export_dir}" in proc.stdout
    return export_dir


@pytest.mark.e2e
def test_fresh_process_reproduces_the_in_memory_model(run_dir, exported, tmp_path):
    _, module = run_dir
    z = np.random.default_rng(1).standard_normal((6, Z_DIM)).astype(np.float32)
    images = uniform_images(6, seed=2)
    np.savez(tmp_path / "in.npz", z=z, images=images)
    proc = run_python(["-c", LOAD_AND_RUN, exported, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")])
    assert proc.returncode == 0, proc.stderr
    got = dict(np.load(tmp_path / "out.npz"))
    want = {
        "decode/images": module.decode(z)["images"],
        "reconstruct/images": module.reconstruct(images)["images"],
        **{f"encode/{k}": v for k, v in module.encode(images).items()},
    }
    assert sorted(k for k in got if not k.startswith(("sample", "serving"))) == sorted(want)
    for k, v in want.items():
        np.testing.assert_allclose(got[k], v.numpy(), rtol=1e-5, atol=1e-5, err_msg=k)
    assert got["decode/images"].min() >= -1 and got["decode/images"].max() <= 1
    # sample: the same seed gives the same images, within a process and across processes (the
    # in-memory module is this one); another seed gives others. serving_default is sample.
    in_memory = module.sample(tf.constant(5), tf.constant(7, tf.int64))["images"].numpy()
    for name in ("sample", "serving_default"):
        first, again = got[f"{name}/7"]
        np.testing.assert_array_equal(first, again)
        np.testing.assert_allclose(first, in_memory, rtol=1e-5, atol=1e-5)
        assert first.shape == (5, *SHAPE)
        assert not np.allclose(first, got[f"{name}/8"][0])
    # The prior sampler draws what the export always drew: D(z), z = stateless_normal(seed [s, 0]).
    z_before = tf.random.stateless_normal([5, Z_DIM], seed=tf.constant([7, 0], tf.int64))
    np.testing.assert_allclose(got["sample/7"][0], module.decode(z_before)["images"].numpy(), rtol=1e-5, atol=1e-5)


GMM_ARGS = ["--sampler=gmm", "--gmm_components=3", "--gmm_seed=4"]


@pytest.fixture(scope="module")
def exported_gmm(run_dir, idx_dir, tmp_path_factory):
    """The run exported with --sampler=gmm, fitted on the codes of idx_dir's 32 training images."""
    export_dir = str(tmp_path_factory.mktemp("export_gmm") / "sm")
    proc = run_python(
        export_cli(f"--run_dir={run_dir[0]}", f"--export_dir={export_dir}", f"--data_dir={idx_dir}", *GMM_ARGS)
    )
    assert proc.returncode == 0, proc.stderr
    assert "sampler gmm: 3 full-covariance components fitted on 32 training codes" in proc.stdout
    assert f"written to {export_dir} (sample: the gmm sampler)" in proc.stdout
    return export_dir


@pytest.mark.e2e
def test_gmm_export_serves_the_in_memory_gmm_without_scikit_learn(run_dir, idx_dir, exported, exported_gmm, tmp_path):
    np.savez(tmp_path / "in.npz", z=np.zeros((2, Z_DIM), np.float32), images=uniform_images(2))
    # A fresh process in which scikit-learn cannot be imported: the fit lives in the variables.
    no_sklearn = "import sys\nsys.modules['sklearn'] = None\n" + LOAD_AND_RUN
    proc = run_python(["-c", no_sklearn, exported_gmm, str(tmp_path / "in.npz"), str(tmp_path / "out.npz")])
    assert proc.returncode == 0, proc.stderr
    got = dict(np.load(tmp_path / "out.npz"))
    first, again = got["sample/7"]
    np.testing.assert_array_equal(first, again)  # deterministic per seed
    np.testing.assert_array_equal(first, got["serving_default/7"][0])
    assert not np.allclose(first, got["sample/8"][0])
    # The same fit in this process (same codes, same seed) samples the same images.
    module = export.from_run(run_dir[0], "gmm", samplers.Options(gmm_components=3, gmm_seed=4), idx_dir)
    assert isinstance(module.sampler, samplers.GMMSampler)
    np.testing.assert_allclose(
        first, module.sample(tf.constant(5), tf.constant(7, tf.int64))["images"].numpy(), rtol=1e-5, atol=1e-5
    )
    loaded = tf.saved_model.load(exported_gmm)
    assert loaded.sampler_kind.numpy() == b"gmm"
    empty = loaded.signatures["sample"](num_samples=tf.constant(0), seed=tf.constant(7, tf.int64))
    assert empty["images"].shape == (0, *SHAPE)
    for name in ("logits", "loc", "scale_tril"):
        np.testing.assert_allclose(
            getattr(loaded.sampler, name).numpy(), getattr(module.sampler, name).numpy(), rtol=1e-5, atol=1e-6
        )
    # Not the prior's images.
    prior = tf.saved_model.load(exported)
    assert prior.sampler_kind.numpy() == b"prior"
    assert not np.allclose(
        first, prior.signatures["sample"](num_samples=tf.constant(5), seed=tf.constant(7, tf.int64))["images"]
    )


@pytest.mark.e2e
def test_gmm_export_with_too_few_codes_is_refused_in_one_line(run_dir, idx_dir, tmp_path):
    export_dir = tmp_path / "sm"
    proc = run_python(
        export_cli(
            f"--run_dir={run_dir[0]}",
            f"--export_dir={export_dir}",
            f"--data_dir={idx_dir}",
            "--sampler=gmm",
            "--gmm_components=40",
        )
    )
    assert_one_line_error(proc, "a 40-component GMM needs at least 40 training codes; got 32")
    assert not export_dir.exists()


@pytest.mark.e2e
def test_saved_model_cli_lists_the_signatures(exported):
    proc = subprocess.run(
        [os.path.join(BIN, "saved_model_cli"), "show", "--dir", exported, "--all"],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("decode", "encode", "reconstruct", "sample", "serving_default"):
        assert f"signature_def['{name}']" in proc.stdout
    # The input shapes document what each signature takes.
    assert f"shape: (-1, {Z_DIM})" in proc.stdout
    assert "shape: (-1, 28, 28, 1)" in proc.stdout
    assert "inputs['num_samples']" in proc.stdout and "inputs['seed']" in proc.stdout
    assert "outputs['log_var']" in proc.stdout  # VPGA is variational


@pytest.mark.e2e
@pytest.mark.parametrize(
    "signature,arg,shape,message",
    [
        ("decode", "z", [3, Z_DIM + 1], rf"tensor z \[3,5\] is not compatible with expected shape \[\?,{Z_DIM}\]"),
        ("decode", "z", [Z_DIM], rf"tensor z \[4\] is not compatible with expected shape \[\?,{Z_DIM}\]"),
        (
            "encode",
            "images",
            [2, 32, 32, 1],
            r"tensor images \[2,32,32,1\] is not compatible with expected shape \[\?,28,28,1\]",
        ),
        ("encode", "images", [2, 28, 28, 3], r"tensor images \[2,28,28,3\] is not compatible"),
        ("reconstruct", "images", [28, 28, 1], r"tensor images \[28,28,1\] is not compatible"),
    ],
)
def test_bad_input_to_a_loaded_signature_names_the_expected_shape(exported, signature, arg, shape, message):
    fn = tf.saved_model.load(exported).signatures[signature]
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        fn(**{arg: tf.zeros(shape)})


@pytest.mark.e2e
def test_negative_sample_count_is_refused(exported):
    fn = tf.saved_model.load(exported).signatures["sample"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="sample: num_samples must be >= 0"):
        fn(num_samples=tf.constant(-1), seed=tf.constant(0, tf.int64))


# Every signature on an empty batch, in a fresh process: argv[1] the SavedModel; prints the
# output shapes as JSON.
EMPTY_BATCH = """
import json, sys
import tensorflow as tf
sig = tf.saved_model.load(sys.argv[1]).signatures
z_dim, image_shape = int(sys.argv[2]), [int(d) for d in sys.argv[3].split(",")]
calls = {"decode": dict(z=tf.zeros([0, z_dim])), "encode": dict(images=tf.zeros([0, *image_shape])),
         "reconstruct": dict(images=tf.zeros([0, *image_shape])),
         "sample": dict(num_samples=tf.constant(0), seed=tf.constant(3, tf.int64)),
         "serving_default": dict(num_samples=tf.constant(0), seed=tf.constant(3, tf.int64))}
print("SHAPES " + json.dumps({f"{name}/{k}": [list(v.shape), v.dtype.name]
                              for name, kw in calls.items() for k, v in sig[name](**kw).items()}))
"""


@pytest.mark.e2e
@pytest.mark.parametrize("onednn", ["default", "off"])
def test_every_signature_takes_an_empty_batch(exported, onednn):
    """N = 0 gives empty outputs of the documented shapes (oneDNN's kernels reject it inside)."""
    env = {k: v for k, v in ENV.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if onednn == "off":
        env["TF_ENABLE_ONEDNN_OPTS"] = "0"
    proc = subprocess.run(
        [sys.executable, "-c", EMPTY_BATCH, exported, str(Z_DIM), ",".join(map(str, SHAPE))],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith("SHAPES ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    images, codes = [[0, *SHAPE], "float32"], [[0, Z_DIM], "float32"]
    assert json.loads(lines[0][len("SHAPES ") :]) == {
        "decode/images": images,
        "encode/mu": codes,
        "encode/log_var": codes,
        "reconstruct/images": images,
        "sample/images": images,
        "serving_default/images": images,
    }


def test_non_variational_encode_returns_mu_only(tmp_path):
    cfg = config.for_method("lpga", z_dim=Z_DIM, batch_size=8, model="conv_mnist")
    trainer = trainer_lib.Trainer(cfg, SHAPE)
    module = export.PGAServing(trainer.encoder, trainer.decoder, Z_DIM, SHAPE, variational=False)
    loaded = tf.saved_model.load(export.export(module, str(tmp_path / "sm")))
    out = loaded.signatures["encode"](images=tf.constant(uniform_images(2)))
    assert list(out) == ["mu"] and out["mu"].shape == (2, Z_DIM)
    empty = loaded.signatures["encode"](images=tf.zeros([0, *SHAPE]))
    assert list(empty) == ["mu"] and empty["mu"].shape == (0, Z_DIM)


# --------------------------------------------------------------------------- user errors
def _snapshot(directory):
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                out[os.path.relpath(os.path.join(root, name), directory)] = f.read()
    return out


@pytest.fixture(scope="module")
def bad_runs(run_dir, tmp_path_factory):
    """Run dirs a user might point the export at by mistake."""
    tmp = tmp_path_factory.mktemp("bad_runs")
    no_config = tmp / "no_config"
    no_config.mkdir()
    no_ckpt = tmp / "no_ckpt"
    no_ckpt.mkdir()
    shutil.copy(os.path.join(run_dir[0], config.CONFIG_FILE), no_ckpt)
    tampered = tmp / "tampered"
    shutil.copytree(run_dir[0], tampered)
    cfg = json.loads((tampered / config.CONFIG_FILE).read_text())
    (tampered / config.CONFIG_FILE).write_text(json.dumps({**cfg, "z_dim": Z_DIM + 3}))
    return {"no_config": str(no_config), "no_checkpoint": str(no_ckpt), "tampered_z_dim": str(tampered)}


@pytest.mark.parametrize(
    "case,message",
    [
        ("no_config", "has no config.json"),
        ("no_checkpoint", "has no checkpoint yet"),
        (
            "tampered_z_dim",
            r"does not match the run's config.json \(.*z_dim 7.*\): Received incompatible tensor",
        ),
    ],
)
def test_a_run_dir_that_cannot_be_exported_is_named(bad_runs, case, message):
    with pytest.raises(runs.RunError, match=message):
        export.from_run(bad_runs[case])


def test_overwrite_never_replaces_a_dir_that_is_not_an_export(run_dir, bad_runs):
    before = _snapshot(bad_runs["no_checkpoint"])
    with pytest.raises(export.ExportError, match="is not a SavedModel; refusing to replace it"):
        export.export(run_dir[1], bad_runs["no_checkpoint"], overwrite=True)
    assert _snapshot(bad_runs["no_checkpoint"]) == before


@pytest.fixture(scope="module")
def cli_errors(run_dir, exported, bad_runs, tmp_path_factory):
    """export_savedmodel.py on bad requests, all at once (each one is a TF start-up).

    Returns case -> (CompletedProcess, the export dir it was given)."""
    tmp = tmp_path_factory.mktemp("cli_errors")
    not_a_dir = tmp / "file"
    not_a_dir.write_text("")
    cases = {
        "tampered_z_dim": (bad_runs["tampered_z_dim"], str(tmp / "out")),
        "exists": (run_dir[0], exported),
        "unwritable": (run_dir[0], str(not_a_dir / "sm")),
    }
    before = _snapshot(exported)
    procs = {
        name: subprocess.Popen(
            [sys.executable, *export_cli(f"--run_dir={r}", f"--export_dir={e}")],
            cwd=ROOT,
            env=ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (r, e) in cases.items()
    }
    results = {}
    for name, proc in procs.items():
        try:
            out, err = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        results[name] = (subprocess.CompletedProcess(proc.args, proc.returncode, out, err), cases[name][1])
    assert _snapshot(exported) == before  # refused, so untouched
    return results


@pytest.mark.e2e
@pytest.mark.parametrize(
    "case,needles",
    [
        ("tampered_z_dim", ["does not match the run's config.json", "z_dim 7", "incompatible tensor"]),
        ("exists", ["already exists; pass --overwrite"]),
        ("unwritable", ["cannot write to", "a file is in the way"]),
    ],
)
def test_user_error_ends_in_one_line(cli_errors, case, needles):
    proc, export_dir = cli_errors[case]
    assert_one_line_error(proc, *needles)
    if case != "exists":
        assert not os.path.exists(export_dir)


def test_overwrite_replaces_an_existing_export(run_dir, tmp_path):
    export_dir = str(tmp_path / "sm")
    module = run_dir[1]
    export.export(module, export_dir)
    stale = os.path.join(export_dir, "stale.txt")
    open(stale, "w").close()
    with pytest.raises(export.ExportError, match="already exists"):
        export.export(module, export_dir)
    assert os.path.exists(stale)
    export.export(module, export_dir, overwrite=True)
    assert not os.path.exists(stale) and os.path.exists(os.path.join(export_dir, "saved_model.pb"))
    assert [p for p in os.listdir(tmp_path) if p.startswith(".export")] == []  # no leftovers


# --------------------------------------------------------------- mirrored run, example client
@pytest.mark.e2e
def test_export_of_a_run_trained_under_mirrored(idx_dir, tmp_path):
    trained = str(tmp_path / "run")
    train = run_python(
        [
            os.path.join(ROOT, "train.py"),
            "--strategy=mirrored",
            "--cpu_devices=2",
            "--dataset=mnist",
            f"--data_dir={idx_dir}",
            f"--run_dir={trained}",
            "--method=lpga",
            "--use_bn",
            "--sync_bn",
            f"--z_dim={Z_DIM}",
            "--batch_size=8",
            "--lr=0.01",
            "--init_steps=0",
            "--train_steps=2",
            "--steps_per_loop=2",
        ]
    )
    assert train.returncode == 0, train.stderr
    assert "on 2 replica(s)" in train.stdout
    export_dir = str(tmp_path / "sm")
    proc = run_python(export_cli(f"--run_dir={trained}", f"--export_dir={export_dir}"))
    assert proc.returncode == 0, proc.stderr
    sig = tf.saved_model.load(export_dir).signatures
    images = sig["sample"](num_samples=tf.constant(3), seed=tf.constant(0, tf.int64))["images"]
    assert images.shape == (3, *SHAPE) and np.all(np.isfinite(images.numpy()))
    assert list(sig["encode"](images=images)) == ["mu"]
    # train.py's own end-of-run export is the same model.
    at_end = tf.saved_model.load(os.path.join(trained, "saved_model")).signatures["sample"]
    np.testing.assert_array_equal(at_end(num_samples=tf.constant(3), seed=tf.constant(0, tf.int64))["images"], images)


@pytest.mark.e2e
def test_example_client_writes_a_png(exported, tmp_path):
    from PIL import Image

    out = str(tmp_path / "samples.png")
    proc = run_python([os.path.join(ROOT, "examples", "sample_client.py"), exported, out])
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as img:
        assert img.size == (4 * 28, 4 * 28) and img.mode == "L"
    # Quiet like pga-tf's own programs: none of TensorFlow's start-up lines (cuInit, oneDNN, ...).
    assert proc.stderr == "", proc.stderr
