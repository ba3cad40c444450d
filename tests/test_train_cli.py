"""train.py end to end in subprocesses: outputs, resume, kills, signals, NaN guard, bad input."""

import gzip
import os
import signal
import struct
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.helpers import TINY, assert_one_line_error, run, snapshot, start, write_idx

# Every test here starts a program in a subprocess.
pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (64, 28, 28)))
    write_idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (16, 28, 28)))
    return str(d)


def weights(run_dir):
    """Every model/optimizer tensor of the latest checkpoint (not the save counter)."""
    reader = tf.train.load_checkpoint(os.path.join(run_dir, "checkpoints"))
    return {
        k: reader.get_tensor(k)
        for k in reader.get_variable_to_shape_map()
        if k.startswith(("encoder/", "decoder/", "optimizer/", "generator/"))
    }


def test_train_writes_outputs_and_resumes(idx_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    args = ["--data_dir", idx_dir, "--run_dir", run_dir, *TINY, "--sample_every=10"]
    first = run(args + ["--train_steps=10", "--export"])
    assert first.returncode == 0, first.stderr
    assert "step 10/10" in first.stdout
    files = os.listdir(os.path.join(run_dir, "samples"))
    assert {"step_0000010_samples.png", "step_0000010_reconstructions.png", "step_0000010_interpolations.png"} <= set(
        files
    )
    assert os.path.exists(os.path.join(run_dir, "saved_model", "saved_model.pb"))
    assert os.path.exists(os.path.join(run_dir, "config.json"))
    events = [os.path.join(run_dir, "tb", f) for f in os.listdir(os.path.join(run_dir, "tb"))]
    tags = {v.tag for e in events for ev in tf.compat.v1.train.summary_iterator(e) for v in ev.summary.value}
    assert {
        "loss/img_rec",
        "loss/zn_rec",
        "loss/nll_dec",
        "loss/enc_loss",
        "loss/dec_loss",
        "train/learning_rate",
        "train/images_per_s",
        "samples",
    } <= tags, tags

    second = run(args + ["--train_steps=15"])
    assert second.returncode == 0, second.stderr
    assert "resumed from" in second.stdout and "at step 10" in second.stdout
    assert "step 15/15" in second.stdout
    assert tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints")).endswith("ckpt-15")
    third = run(args + ["--train_steps=15", "--noexport"])  # the same command again: says so
    assert third.returncode == 0, third.stderr
    assert "nothing to train: the run is at step 15 of 15" in third.stdout and "step 15/15" not in third.stdout


def test_kill_9_and_resume_is_bitwise_equal_to_an_uninterrupted_run(idx_dir, tmp_path):
    common = ["--data_dir", idx_dir, *TINY, "--deterministic", "--train_steps=40", "--ckpt_every=5"]
    ref_dir, killed_dir = str(tmp_path / "ref"), str(tmp_path / "killed")
    ref = run(common + ["--run_dir", ref_dir])
    assert ref.returncode == 0, ref.stderr

    ckpt_dir = os.path.join(killed_dir, "checkpoints")
    for kill_after in (5, 15, 30):  # kill once the checkpoint of this step exists
        proc = start(common + ["--run_dir", killed_dir])
        deadline = time.time() + 120
        while not os.path.exists(os.path.join(ckpt_dir, f"ckpt-{kill_after}.index")):
            assert proc.poll() is None, proc.stdout.read()
            assert time.time() < deadline
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    final = run(common + ["--run_dir", killed_dir])
    assert final.returncode == 0, final.stderr
    assert "resumed from" in final.stdout

    want, got = weights(ref_dir), weights(killed_dir)
    assert want.keys() == got.keys() and len(want) > 10
    for k in want:
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def test_sigterm_saves_a_checkpoint_and_exits_0(idx_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    proc = start(["--data_dir", idx_dir, "--run_dir", run_dir, *TINY, "--train_steps=100000"])
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("step 10/"):
            proc.send_signal(signal.SIGTERM)
            break
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, "".join(lines) + out
    assert "SIGTERM: stopped at step" in out
    latest = tf.train.latest_checkpoint(os.path.join(run_dir, "checkpoints"))
    assert latest is not None and int(latest.rsplit("-", 1)[1]) >= 10


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(idx_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    args = ["--data_dir", idx_dir, "--run_dir", run_dir, *TINY]
    assert run(args + ["--train_steps=10"]).returncode == 0
    before = snapshot(os.path.join(run_dir, "checkpoints"))
    # An absurd learning rate drives the weights to Inf/NaN within a few steps.
    bad = run(args + ["--train_steps=60", "--lr=1e30"])
    assert_one_line_error(bad, "non-finite", "at step", "ckpt-10")
    assert snapshot(os.path.join(run_dir, "checkpoints")) == before
    assert all(np.all(np.isfinite(v)) for v in weights(run_dir).values())


def _bad_input_cases(idx_dir, tmp):
    rng = np.random.default_rng(1)
    empty = tmp / "empty"
    empty.mkdir()
    corrupt = tmp / "corrupt"
    corrupt.mkdir()
    with gzip.open(corrupt / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\x12\x34\x08\x03" + b"\x00" * 100)
    truncated = tmp / "truncated"
    truncated.mkdir()
    with gzip.open(truncated / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">HBB", 0, 8, 3) + struct.pack(">III", 64, 28, 28) + b"\x00" * 1000)
    wrong_size = tmp / "wrong_size"
    wrong_size.mkdir()
    write_idx(wrong_size / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (16, 32, 32)))
    blocker = tmp / "a_file"
    blocker.write_text("not a directory")
    return {
        "missing data dir": (["--data_dir", str(tmp / "nope")], "nope"),
        "empty data dir": (["--data_dir", str(empty)], "empty"),
        "corrupt idx": (["--data_dir", str(corrupt)], "train-images-idx3-ubyte.gz"),
        "truncated idx": (["--data_dir", str(truncated)], "train-images-idx3-ubyte.gz"),
        "wrong image size": (["--data_dir", str(wrong_size)], "32"),
        "unknown dataset": (["--data_dir", idx_dir, "--dataset=svhn"], "svhn"),
        "unknown method": (["--data_dir", idx_dir, "--method=gan"], "gan"),
        "unknown model": (["--data_dir", idx_dir, "--model=vgg"], "vgg"),
        "zero lr": (["--data_dir", idx_dir, "--lr=0"], "--lr"),
        "negative batch": (["--data_dir", idx_dir, "--batch_size=-8"], "--batch_size"),
        "zero z_dim": (["--data_dir", idx_dir, "--z_dim=0"], "--z_dim"),
        "negative steps": (["--data_dir", idx_dir, "--train_steps=-1"], "--train_steps"),
        "model/dataset mismatch": (["--data_dir", idx_dir, "--model=conv_32"], "conv_32"),
        "batch not divisible": (
            ["--data_dir", idx_dir, "--strategy=mirrored", "--cpu_devices=2", "--batch_size=7"],
            "divisible",
        ),
        "unwritable run dir": (["--data_dir", idx_dir, "--run_dir", str(blocker / "run")], "a_file"),
    }


def test_bad_input_gives_one_line_and_changes_nothing(idx_dir, tmp_path):
    run_dir = tmp_path / "run"
    assert run(["--data_dir", idx_dir, "--run_dir", str(run_dir), *TINY, "--train_steps=5"]).returncode == 0
    before = snapshot(run_dir)
    failures = []
    for name, (args, needle) in _bad_input_cases(idx_dir, tmp_path).items():
        if "--run_dir" not in args:
            args = args + ["--run_dir", str(run_dir)]
        given = {a.split("=")[0] for a in args}
        defaults = [a for a in TINY + ["--train_steps=10"] if a.split("=")[0] not in given]
        proc = run(args + defaults)
        try:
            assert_one_line_error(proc, needle)
        except AssertionError as e:
            failures.append(f"{name}: {e}")
        assert snapshot(run_dir) == before, name
    assert not failures, "\n".join(failures)


def test_run_dir_conflict_and_foreign_checkpoint(idx_dir, tmp_path):
    run_dir = tmp_path / "run"
    base = ["--data_dir", idx_dir, "--run_dir", str(run_dir), *TINY, "--train_steps=5"]
    assert run(base).returncode == 0
    before = snapshot(run_dir)
    conflict = run(base + ["--z_dim=6"])
    assert_one_line_error(conflict, "--z_dim", "4", "6")
    assert snapshot(run_dir) == before
    # A checkpoint from another architecture behind a config that claims otherwise.
    cfg = (run_dir / "config.json").read_text().replace('"z_dim": 4', '"z_dim": 6')
    (run_dir / "config.json").write_text(cfg)
    before = snapshot(run_dir)
    foreign = run(base + ["--z_dim=6", "--train_steps=10"])
    assert_one_line_error(foreign, "does not fit")
    assert snapshot(run_dir) == before
