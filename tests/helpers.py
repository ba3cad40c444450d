"""What several test files share: paths, tiny training flags, synthetic data, the programs run in
subprocesses and the checks on what they print. Test files import from here, never from each other
(tests/test_layout.py checks it), so a test file can be moved, renamed or run alone.

TensorFlow is imported inside the functions that need it: conftest imports this module, and a test
of the TensorFlow-free modules should not pay for TF's start-up."""

import gzip
import hashlib
import os
import re
import subprocess
import sys

import numpy as np

from pga_tf import console

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPE = (28, 28, 1)
# The programs' environment in a subprocess: no TF C++ log lines, output as it is written.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
# As a user runs a program: no TF_CPP_MIN_LOG_LEVEL of ours (conftest sets one for in-process tests).
USER_ENV = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", console.SHOW_ENV)}
# A line of TensorFlow's native start-up logging (abseil's prefix, or its pre-init notice).
TF_LINE = re.compile(r"^([IWEF]\d{4} \S+\s+\d+ [\w.-]+:\d+\]|WARNING: All log messages before absl)")
# train.py flags of a run that takes seconds: tiny nets' latent, small batches, nothing exported.
TINY = [
    "--z_dim=4",
    "--batch_size=8",
    "--init_steps=0",
    "--log_every=5",
    "--sample_every=1000",
    "--ckpt_every=1000",
    "--steps_per_loop=5",
    "--lr=0.01",
    "--noexport",
]


# ------------------------------------------------------------------------------ synthetic data
_IDX_TYPES = {np.uint8: 0x08, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}


def idx_bytes(arr: np.ndarray) -> bytes:
    """Encodes an array as IDX independently of the parser: magic 0,0,type,ndim; big-endian dims.
    An integer array of another type (numpy's default int64) is written as uint8, MNIST's type."""
    if arr.dtype.type not in _IDX_TYPES:
        arr = arr.astype(np.uint8)
    header = bytes([0, 0, _IDX_TYPES[arr.dtype.type], arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def write_idx(path, arr: np.ndarray, gz: bool | None = None) -> str:
    """Writes `arr` as an IDX file, gzipped if `gz` (by default: if the name ends in .gz)."""
    path = str(path)
    if gz is None:
        gz = path.endswith(".gz")
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(idx_bytes(arr))
    return path


def uniform_images(n, seed=0, shape=SHAPE) -> np.ndarray:
    """Noise images, uniform in [-1, 1], float32: for checks of values, not of learning."""
    return np.random.default_rng(seed).uniform(-1, 1, (n, *shape)).astype(np.float32)


def blob_images(n, seed=0) -> np.ndarray:
    """Smooth synthetic images in [-1, 1]: random blobs an autoencoder can learn."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28] / 27.0
    cy, cx = rng.uniform(0.2, 0.8, (2, n, 1, 1))
    r = rng.uniform(0.1, 0.25, (n, 1, 1))
    img = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r**2))
    return (img[..., None] * 2 - 1).astype(np.float32)


def fixed_noise(n, z_dim, seed=0):
    """A step's three noise tensors, standard normal, float32."""
    import tensorflow as tf

    from pga_tf.methods import parts

    rng = np.random.default_rng(seed)
    return parts.Noise(*(tf.constant(rng.standard_normal((n, z_dim)), tf.float32) for _ in range(3)))


def tiny_cfg(method, **kw):
    """The method's config on the conv MNIST nets with a 4-dim latent, batches of 8, lr 0.01, no warm-up."""
    from pga_tf import config

    return config.for_method(
        method, **{"z_dim": 4, "batch_size": 8, "lr": 0.01, "init_steps": 0, "model": "conv_mnist", **kw}
    )


# ------------------------------------------------------------------------- programs and output
def run(args, timeout=240, **kw):
    """train.py with `args`, to the end; stdout and stderr captured apart."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "train.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kw,
    )


def start(args):
    """train.py with `args`, started and not waited for; stderr goes into stdout."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "train.py"), *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_python(args, timeout=300):
    """`python *args` in the checkout's root, to the end (args: a script or -m module, then flags)."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def assert_one_line_error(proc, *needles):
    """A user error: exit 1, and the whole of stderr is one `error:` line."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    last = proc.stderr.strip()
    assert last.startswith("error: "), proc.stderr
    for needle in needles:
        assert needle in last, last


def assert_error_last_line(proc, needle):
    """A failure without a traceback whose last stderr line is the `error:` line; lines before it
    are allowed (evaluate.py reports what it got through first), as is any non-zero exit."""
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and needle in last, proc.stderr


def snapshot(directory):
    """{relative path: sha256} of every file below `directory`."""
    out = {}
    for root, _, files in os.walk(directory):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return out


def parse(argv):
    """The Config train.py's flags give for `argv`, parsed in this process."""
    from absl import flags

    from pga_tf import cli

    flags.FLAGS.unparse_flags()
    flags.FLAGS(["train.py", *argv])
    try:
        return cli.config_from_flags()
    finally:
        flags.FLAGS.unparse_flags()


def read_session(logdir):
    """(session start info, {scalar tag: (step, value)}) of a log dir, decoded as TensorBoard's
    hparams plugin decodes them (plugin name, then its own proto parser)."""
    import tensorflow as tf
    from tensorboard.plugins.hparams import metadata

    session, scalars = None, {}
    for path in tf.io.gfile.glob(os.path.join(logdir, "events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(path):
            for v in event.summary.value:
                if v.metadata.plugin_data.plugin_name == metadata.PLUGIN_NAME:
                    assert v.tag == metadata.SESSION_START_INFO_TAG
                    assert session is None, "one session per log dir"
                    session = metadata.parse_session_start_info_plugin_data(v.metadata.plugin_data.content)
                elif v.HasField("tensor"):
                    scalars[v.tag] = (event.step, float(tf.make_ndarray(v.tensor)))
    return session, scalars


def labelled_data_and_classifier(tmp, n_train: int, n_test: int):
    """Labelled IDX files in tmp/data and a 1-epoch domain classifier trained on them in
    tmp/classifiers; returns (data dir, classifier dir, the classifier run's process)."""
    data_dir = tmp / "data"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    for stem, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        # Class k: a bright horizontal band at rows 2k..2k+4 over noise, so the labels mean something.
        images = rng.integers(0, 80, (n, 28, 28))
        for i, k in enumerate(labels):
            images[i, 2 * k : 2 * k + 5] = 255
        write_idx(data_dir / f"{stem}-images-idx3-ubyte.gz", images)
        write_idx(data_dir / f"{stem}-labels-idx1-ubyte.gz", labels)
    clf_dir = tmp / "classifiers"
    proc = ok(
        run_python(
            [
                "-m",
                "pga_tf.evaluation.classifier",
                f"--data_dir={data_dir}",
                f"--out={clf_dir}",
                "--epochs=1",
                "--batch_size=16",
            ]
        )
    )
    return data_dir, clf_dir, proc
