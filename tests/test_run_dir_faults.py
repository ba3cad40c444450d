"""Field reports on run dirs, each through train.py itself in subprocesses: resuming with
changed input or optimizer flags, across strategies, under paths with glob characters, two
trainings at once, a full disk and the leftovers of interrupted saves."""

import json
import os
import shutil
import signal
import subprocess
import time

import numpy as np
import pytest

from tests.helpers import ROOT, TINY, assert_one_line_error, run, snapshot, start, write_idx

# Every test here starts a program in a subprocess.
pytestmark = pytest.mark.e2e

QUICK = TINY + ["--ckpt_every=5"]


@pytest.fixture(scope="module")
def two_dirs(tmp_path_factory):
    """Two MNIST-format datasets, A (64 train images) and B (48), with different pixels."""
    dirs = []
    for name, n, seed in (("A", 64, 0), ("B", 48, 1)):
        d = tmp_path_factory.mktemp(name)
        rng = np.random.default_rng(seed)
        write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (16, 28, 28)))
        dirs.append(str(d))
    return dirs


def _config(run_dir):
    with open(os.path.join(run_dir, "config.json")) as f:
        return json.load(f)


# ------------------------------------------------------------------ changed input flags
def test_resume_with_another_data_dir_starts_the_input_afresh_and_says_so(two_dirs, tmp_path):
    a, b = two_dirs
    run_dir = str(tmp_path / "run")
    assert run(["--data_dir", a, "--run_dir", run_dir, *QUICK, "--train_steps=10"]).returncode == 0
    other = run(["--data_dir", b, "--run_dir", run_dir, *QUICK, "--train_steps=15"])
    assert other.returncode == 0, other.stderr
    line = next(l for l in other.stdout.splitlines() if l.startswith("input changed"))
    assert "--data_dir" in line and a in line and b in line and "starts afresh" in line, line
    assert "resumed from" in other.stdout and "at step 10" in other.stdout
    assert _config(run_dir)["data_dir"] == b
    # The same input again: the position restores, nothing is said.
    same = run(["--data_dir", b, "--run_dir", run_dir, *QUICK, "--train_steps=20"])
    assert same.returncode == 0, same.stderr
    assert "input changed" not in same.stdout and "at step 15" in same.stdout


def test_resume_with_another_batch_size_starts_the_input_afresh(two_dirs, tmp_path):
    a, _ = two_dirs
    run_dir = str(tmp_path / "run")
    assert run(["--data_dir", a, "--run_dir", run_dir, *QUICK, "--train_steps=10"]).returncode == 0
    other = run(["--data_dir", a, "--run_dir", run_dir, *QUICK, "--train_steps=15", "--batch_size=16"])
    assert other.returncode == 0, other.stderr  # was: a traceback, after config.json was rewritten
    assert "Traceback" not in other.stderr
    assert any(l.startswith("input changed") and "--batch_size 8 -> 16" in l for l in other.stdout.splitlines())
    assert "step 15/15" in other.stdout and _config(run_dir)["batch_size"] == 16


# -------------------------------------------------- refusals name the flag that changed
@pytest.mark.parametrize("flag, value", [("--optimizer", "adam"), ("--mixed_precision", True), ("--seed", 3)])
def test_resume_with_another_optimizer_precision_or_seed_names_the_flag(idx_dir, tmp_path, flag, value):
    run_dir = tmp_path / "run"
    base = ["--data_dir", idx_dir, "--run_dir", str(run_dir), *QUICK, "--train_steps=5"]
    assert run(base).returncode == 0
    before = snapshot(run_dir)
    arg = f"{flag}={value}" if value is not True else flag
    refused = run(base + [arg, "--train_steps=10"])
    assert_one_line_error(refused, flag, "run has")
    assert "does not fit" not in refused.stderr
    assert snapshot(run_dir) == before


# ------------------------------------------------------ mirrored and back, via train.py
def test_one_device_to_mirrored_and_back_resumes_each_time(idx_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    base = ["--data_dir", idx_dir, "--run_dir", run_dir, *QUICK]
    first = run(base + ["--train_steps=5"])
    assert first.returncode == 0, first.stderr
    mirrored = run(base + ["--train_steps=10", "--strategy=mirrored", "--cpu_devices=2"])
    assert mirrored.returncode == 0, mirrored.stderr
    assert "at step 5" in mirrored.stdout and "2 replica(s)" in mirrored.stdout
    back = run(base + ["--train_steps=15"])
    assert back.returncode == 0, back.stderr  # was: "does not fit this model"
    assert "resumed from" in back.stdout and "at step 10" in back.stdout
    assert "holds no input position" in back.stdout and "step 15/15" in back.stdout


# -------------------------------------------------------- glob characters in the run dir
@pytest.mark.parametrize("name", ["exp [v1]", "a*b?c", "back\\slash"])
def test_run_dir_with_glob_characters_resumes_prunes_and_exports(idx_dir, tmp_path, name):
    run_dir = str(tmp_path / name)
    # A sibling run whose names the pattern matches: a glob-based pruning deleted its checkpoint.
    decoy = tmp_path / {"exp [v1]": "exp v", "a*b?c": "aXbYc", "back\\slash": "backslash"}[name] / "checkpoints"
    decoy.mkdir(parents=True)
    for suffix in (".index", ".data-00000-of-00001"):
        (decoy / f"ckpt-5{suffix}").write_bytes(b"another run's checkpoint")
    base = ["--data_dir", idx_dir, "--run_dir", run_dir, *QUICK, "--keep_checkpoints=1"]
    assert run(base + ["--train_steps=10"]).returncode == 0
    again = run(base + ["--train_steps=20"])
    assert again.returncode == 0, again.stderr
    assert "resumed from" in again.stdout and "at step 10" in again.stdout  # was: from step 0
    ckpt_files = sorted(f for f in os.listdir(os.path.join(run_dir, "checkpoints")) if f.startswith("ckpt-"))
    assert ckpt_files == ["ckpt-20.data-00000-of-00001", "ckpt-20.index"], ckpt_files  # pruned
    assert sorted(os.listdir(decoy)) == ["ckpt-5.data-00000-of-00001", "ckpt-5.index"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = str(tmp_path / "export")
    exported = subprocess.run(
        [os.sys.executable, os.path.join(ROOT, "export_savedmodel.py"), f"--run_dir={run_dir}", f"--export_dir={out}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert exported.returncode == 0, exported.stderr
    from pga_tf import runs

    assert runs.load(run_dir).step == 20


# ------------------------------------------------------------- two trainings at once
def _wait_for_line(proc, prefix, timeout=180):
    deadline = time.time() + timeout
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return lines
        assert time.time() < deadline, "".join(lines)
    raise AssertionError("".join(lines))


def test_second_training_on_a_busy_run_dir_is_refused_and_a_killed_one_does_not_block(idx_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    # The AE at a small lr: a long first run that no NaN guard stops while the second tries.
    base = ["--data_dir", idx_dir, "--run_dir", run_dir, *TINY, "--method=ae", "--lr=0.001"]
    first = start(base + ["--train_steps=100000"])
    try:
        _wait_for_line(first, "step 5/")
        config = _config(run_dir)
        second = run(base + ["--train_steps=10", "--sample_every=5"])
        assert_one_line_error(second, run_dir, "in use")
        assert _config(run_dir) == config  # the second wrote nothing
        assert first.poll() is None, first.stdout.read()
    finally:
        first.send_signal(signal.SIGKILL)  # like a crash: the lock must not outlive the process
        first.wait()
    after = run(base + ["--train_steps=10"])
    assert after.returncode == 0, after.stderr


# ------------------------------------------------- a full disk, leftovers of kill -9
def test_leftovers_of_interrupted_saves_are_removed_at_start(idx_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    base = ["--data_dir", idx_dir, "--run_dir", run_dir, *QUICK]
    assert run(base + ["--train_steps=5"]).returncode == 0
    ckpt = os.path.join(run_dir, "checkpoints")
    # What a kill -9 during a save leaves: the shards before the merge, and a checkpoint whose
    # data was moved into place but whose index (written last) never was.
    os.makedirs(os.path.join(ckpt, "ckpt-8_temp"))
    with open(os.path.join(ckpt, "ckpt-8_temp", "part-00000-of-00001.data-00000-of-00001"), "wb") as f:
        f.write(b"\0" * 1000)
    shutil.copy(os.path.join(ckpt, "ckpt-5.data-00000-of-00001"), os.path.join(ckpt, "ckpt-7.data-00000-of-00001"))
    again = run(base + ["--train_steps=10"])
    assert again.returncode == 0, again.stderr
    assert "removed what interrupted saves or prunes left" in again.stdout and "ckpt-8_temp" in again.stdout
    assert "at step 5" in again.stdout
    left = sorted(os.listdir(ckpt))
    assert not any(f.startswith(("ckpt-7", "ckpt-8")) for f in left), left


@pytest.fixture
def small_fs(tmp_path):
    """A 160 MB tmpfs (a checkpoint of the tiny conv_mnist run is about 100 MB): needs root."""
    mount = tmp_path / "small"
    mount.mkdir()
    if (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", str(mount)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs (needs root)")
    try:
        yield str(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_while_saving_gives_one_line_and_leaves_no_partial_save(idx_dir, small_fs):
    run_dir = os.path.join(small_fs, "run")
    base = ["--data_dir", idx_dir, "--run_dir", run_dir, *QUICK, "--keep_checkpoints=1"]
    first = run(base + ["--train_steps=5"])
    assert first.returncode == 0, first.stderr
    full = run(base + ["--train_steps=10"])  # ckpt-10 does not fit beside ckpt-5
    assert_one_line_error(
        full,
        "cannot save checkpoint",
        "ckpt-10",
        "(No space left on device)",
        "last good checkpoint: " + os.path.join(run_dir, "checkpoints", "ckpt-5"),
    )
    left = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))
    assert left == ["checkpoint", "ckpt-5.data-00000-of-00001", "ckpt-5.index"], left
    again = run(base + ["--train_steps=5"])  # the last good checkpoint still restores
    assert again.returncode == 0 and "at step 5" in again.stdout, again.stderr


# --------------------------------------------------- a bad file further into a folder
@pytest.mark.parametrize(
    "split, name, fault",
    [("train", "img_0050.png", "empty"), ("train", "img_0100.png", "rgb"), ("test", "img_0030.png", "empty")],
)
def test_bad_image_further_into_a_folder_is_named_before_the_run_dir_is_touched(tmp_path, split, name, fault):
    from PIL import Image

    rng = np.random.default_rng(0)
    for sub, n in (("train", 200), ("test", 40)):
        (tmp_path / "folder" / sub).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(
                tmp_path / "folder" / sub / f"img_{i:04d}.png"
            )
    bad = tmp_path / "folder" / split / name
    if fault == "empty":
        open(bad, "wb").close()
    else:
        Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8)).save(bad)
    run_dir = tmp_path / "run"
    proc = run(["--data_dir", str(tmp_path / "folder"), "--run_dir", str(run_dir), *QUICK, "--train_steps=40"])
    assert_one_line_error(proc, os.path.join(split, name))
    assert not run_dir.exists()
