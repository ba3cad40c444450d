"""train.py and export_savedmodel.py end an export with the same line (export_paths.written):
same wording, absolute paths, whichever directory they ran in."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT, TINY, write_idx

LINE = re.compile(r"^SavedModel of (\S+) \(step (\d+)\) written to (\S+) \(sample: the (\w+) sampler\)$")


def _run(script: str, args: list[str], cwd: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def _export_line(stdout: str) -> re.Match:
    lines = [line for line in stdout.splitlines() if line.startswith("SavedModel of ")]
    assert len(lines) == 1, stdout
    match = LINE.match(lines[0])
    assert match, lines[0]
    return match


@pytest.mark.e2e
def test_train_and_export_report_an_export_alike_with_absolute_paths(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    rng = np.random.default_rng(0)
    write_idx(data_dir / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (32, 28, 28)))
    write_idx(data_dir / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (16, 28, 28)))
    cwd = str(tmp_path)
    train_args = [f"--data_dir={data_dir}", "--run_dir=run", *TINY, "--train_steps=2", "--steps_per_loop=1", "--export"]
    trained = _run("train.py", train_args, cwd)
    assert trained.returncode == 0, trained.stderr
    exported = _run("export_savedmodel.py", ["--run_dir=run", "--export_dir=exported"], cwd)
    assert exported.returncode == 0, exported.stderr

    by_train, by_export = _export_line(trained.stdout), _export_line(exported.stdout)
    run_dir = os.path.join(cwd, "run")
    assert by_train.groups() == (
        os.path.join(run_dir, "checkpoints", "ckpt-2"),
        "2",
        os.path.join(run_dir, "saved_model"),
        "prior",
    )
    assert by_export.groups() == (
        os.path.join(run_dir, "checkpoints", "ckpt-2"),
        "2",
        os.path.join(cwd, "exported"),
        "prior",
    )


@pytest.mark.e2e
def test_train_names_its_weights_digest_for_what_it_is(tmp_path):
    """16 hex digits of a sha256 are called a digest, and the line says which part of which hash."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    write_idx(data_dir / "train-images-idx3-ubyte.gz", np.zeros((16, 28, 28)))
    trained = _run(
        "train.py",
        [f"--data_dir={data_dir}", "--run_dir=run", *TINY, "--train_steps=1", "--steps_per_loop=1"],
        str(tmp_path),
    )
    assert trained.returncode == 0, trained.stderr
    assert re.search(
        r"^finished at step 1; weights digest \(sha256, first 16 hex digits\) [0-9a-f]{16}$", trained.stdout, re.M
    )
