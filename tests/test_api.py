"""The Python API (pga_tf.train, pga_tf.load, Run.sample) runs the CLI's code paths: a run trained
from Python equals, weight for weight, the same run trained by train.py (both deterministic)."""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from tests.helpers import ENV, ROOT

SETTINGS = dict(
    train_steps=4, batch_size=8, z_dim=3, log_every=2, steps_per_loop=2, sample_every=4, deterministic=True, seed=3
)


def _digest(stdout: str) -> str:
    found = re.findall(r"weights digest \(sha256, first 16 hex digits\) ([0-9a-f]+)", stdout)
    assert found, stdout
    return found[-1]


@pytest.fixture(scope="module")
def twin_runs(idx_dir, tmp_path_factory):
    """(run dir trained by train.py, run dir trained by pga_tf.train, their stdouts)."""
    tmp = tmp_path_factory.mktemp("api")
    cli_dir, api_dir = str(tmp / "cli"), str(tmp / "api")
    flags = [f"--{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in SETTINGS.items()]
    cli = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--method=vae",
            "--noexport",
            f"--data_dir={idx_dir}",
            f"--run_dir={cli_dir}",
            *flags,
        ],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    script = textwrap.dedent(f"""
        import pga_tf
        run = pga_tf.train("vae", data_dir={idx_dir!r}, run_dir={api_dir!r}, **{SETTINGS!r})
        print("restored step", run.step, run.cfg.method, run.cfg.z_dim)
    """)
    api = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert api.returncode == 0, api.stdout + api.stderr
    return cli_dir, api_dir, cli.stdout, api.stdout


@pytest.mark.e2e
def test_python_training_equals_the_cli_run(twin_runs):
    cli_dir, api_dir, cli_out, api_out = twin_runs
    assert "restored step 4 vae 3" in api_out
    assert _digest(api_out) == _digest(cli_out)
    import pga_tf

    a, b = pga_tf.load(cli_dir), pga_tf.load(api_dir)
    z = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    np.testing.assert_array_equal(a.decode(z), b.decode(z))


@pytest.mark.e2e
def test_sample_is_the_prior_through_the_decoder(twin_runs):
    import tensorflow as tf

    import pga_tf

    run = pga_tf.load(twin_runs[0])
    images = run.sample(6, seed=7)
    assert images.shape == (6, 28, 28, 1) and np.all(np.abs(images) <= 1)
    np.testing.assert_array_equal(images, run.sample(6, seed=7))
    assert not np.array_equal(images, run.sample(6, seed=8))
    z = run.sampler().sample(tf.constant(6), tf.constant(7, tf.int64)).numpy()
    assert z.shape == (6, 3)
    np.testing.assert_allclose(images, run.decode(z), atol=1e-6)


def test_unknown_settings_are_one_line_errors():
    import pga_tf

    with pytest.raises(ValueError, match="unknown setting train_stepz"):
        pga_tf.train("vae", train_stepz=3)
    with pytest.raises(ValueError, match="unknown method 'vea'"):
        pga_tf.train("vea")
    with pytest.raises(ValueError, match="--batch_size must be positive"):
        pga_tf.train("vae", batch_size=0)
