"""A run's checkpoints when what is on disk and what the state file says disagree: a state file
missing, empty, garbage or naming a checkpoint that is gone; a damaged newest checkpoint; a
checkpoint pruned by a training while a reader reads it. In-process on checkpoints of one
variable, then once through train.py and export_savedmodel.py."""

import hashlib
import os
import shutil
import subprocess
import sys

import pytest
import tensorflow as tf

from pga_tf import checkpoints
from tests.helpers import ROOT, TINY, run, snapshot

STATE = checkpoints.STATE_FILE


def _save_run(directory, steps=(5, 10)):
    """Checkpoints of one variable whose value is the step it was saved at."""
    v = tf.Variable(0.0)
    manager = checkpoints.Manager(tf.train.Checkpoint(v=v), str(directory), max_to_keep=5)
    for step in steps:
        v.assign(float(step))
        manager.save(step)
    return str(directory)


def _value(prefix):
    v = tf.Variable(-1.0)
    tf.train.Checkpoint(v=v).restore(checkpoints.readable(prefix)).assert_existing_objects_matched()
    return float(v.numpy())


def _ckpt_files(directory):
    return {k: v for k, v in snapshot(directory).items() if k.split(os.sep)[-1].startswith("ckpt-")}


STATE_FAULTS = {
    "names a missing checkpoint": 'model_checkpoint_path: "ckpt-99"\nall_model_checkpoint_paths: "ckpt-99"\n',
    "garbage": "\x00\x17garbage { not a proto\n",
    "empty": "",
    "deleted": None,
    "lists only the older one": 'model_checkpoint_path: "ckpt-5"\nall_model_checkpoint_paths: "ckpt-5"\n',
}


def _break_state(directory, fault):
    path = os.path.join(directory, STATE)
    if STATE_FAULTS[fault] is None:
        os.remove(path)
    else:
        with open(path, "w") as f:
            f.write(STATE_FAULTS[fault])


@pytest.mark.parametrize("fault", sorted(STATE_FAULTS))
def test_a_bad_state_file_never_hides_a_complete_checkpoint(tmp_path, fault):
    directory = _save_run(tmp_path / "checkpoints")
    before = _ckpt_files(directory)
    _break_state(directory, fault)
    state_before = snapshot(directory)
    lines = []
    # A reader uses the disk and writes nothing.
    found = checkpoints.newest(directory, lines.append)
    assert found == os.path.join(directory, "ckpt-10") and _value(found) == 10.0
    assert snapshot(directory) == state_before
    assert len(lines) == 1 and "state file" in lines[0] and "ckpt-10" in lines[0], lines
    # A resume uses the disk, deletes nothing and rewrites the state file from it.
    lines.clear()
    assert checkpoints.recover(directory, lines.append) == os.path.join(directory, "ckpt-10")
    assert _ckpt_files(directory) == before
    assert len(lines) == 1 and "rewritten" in lines[0], lines
    state = tf.train.get_checkpoint_state(directory)
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-5", "ckpt-10"]
    assert checkpoints.remove_partial(directory) == [] and _ckpt_files(directory) == before


def _digest(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def _damage(prefix, how):
    data = prefix + ".data-00000-of-00001"
    if how == "data cut to half":
        os.truncate(data, os.path.getsize(data) // 2)
    elif how == "index cut to 100 bytes":
        os.truncate(prefix + ".index", 100)
    elif how == "zeroed bytes in data":
        with open(data, "r+b") as f:
            f.write(b"\0" * min(64, os.path.getsize(data)))
    elif how == "data deleted":
        os.remove(data)


DAMAGES = ("data cut to half", "index cut to 100 bytes", "zeroed bytes in data", "data deleted")


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_newest_checkpoint_is_named_stepped_over_and_kept_aside(tmp_path, how):
    directory = _save_run(tmp_path / "checkpoints")
    ten = os.path.join(directory, "ckpt-10")
    _damage(ten, how)
    damaged = {f: _digest(os.path.join(directory, f)) for f in os.listdir(directory) if f.startswith("ckpt-10.")}
    untouched = snapshot(directory)
    lines = []
    found = checkpoints.newest(directory, lines.append)
    assert found == os.path.join(directory, "ckpt-5") and _value(found) == 5.0
    assert snapshot(directory) == untouched  # a reader moves nothing
    if how != "data deleted":  # an index without data is not a complete checkpoint to a reader
        assert len(lines) == 1 and "ckpt-10 is damaged" in lines[0] and "ckpt-5" in lines[0], lines
    lines.clear()
    assert checkpoints.recover(directory, lines.append) == os.path.join(directory, "ckpt-5")
    assert any("ckpt-10 is damaged" in l and "moved aside" in l and "resuming from" in l for l in lines), lines
    aside = os.path.join(directory, checkpoints.DAMAGED_DIR)
    assert {f: _digest(os.path.join(aside, f)) for f in os.listdir(aside)} == damaged
    assert not any(f.startswith("ckpt-10") for f in os.listdir(directory))
    state = tf.train.get_checkpoint_state(directory)
    assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-5"]


def test_every_checkpoint_damaged_is_refused_and_nothing_moves(tmp_path):
    directory = _save_run(tmp_path / "checkpoints")
    for step in (5, 10):
        _damage(os.path.join(directory, f"ckpt-{step}"), "zeroed bytes in data")
    before = snapshot(directory)
    for find in (checkpoints.newest, checkpoints.recover):
        with pytest.raises(checkpoints.CheckpointError, match="every checkpoint .* is damaged: ckpt-10"):
            find(directory, lambda line: None)
        assert snapshot(directory) == before


def test_a_checkpoint_pruned_while_it_is_read_still_restores(tmp_path):
    directory = _save_run(tmp_path / "checkpoints")
    found = checkpoints.newest(directory, lambda line: None)
    for f in os.listdir(directory):  # what a training's --keep_checkpoints pruning does meanwhile
        if f.startswith("ckpt-10."):
            os.remove(os.path.join(directory, f))
    assert _value(found) == 10.0


def test_a_checkpoint_pruned_before_it_is_held_is_retried_on_the_next(tmp_path, monkeypatch):
    directory = _save_run(tmp_path / "checkpoints")
    on_disk = checkpoints._on_disk
    # A listing taken just before a training pruned ckpt-12: it is named, then gone.
    monkeypatch.setattr(checkpoints, "_on_disk", lambda d: (on_disk(d)[0] + ["ckpt-12"], [], []))
    found = checkpoints.newest(directory, lambda line: None)
    assert found == os.path.join(directory, "ckpt-10") and _value(found) == 10.0
    # Every listed checkpoint gone each time it is read: one line saying why.
    monkeypatch.setattr(checkpoints, "_on_disk", lambda d: (["ckpt-12", "ckpt-13"], [], []))
    with pytest.raises(checkpoints.CheckpointError, match="checkpoints changed while reading"):
        checkpoints.newest(directory, lambda line: None)


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it in the process runs (not an Exception, so no
    handler of the code under test catches it)."""


def test_a_prune_cut_anywhere_leaves_no_damaged_checkpoint_and_an_honest_state_file(tmp_path, monkeypatch):
    # --keep_checkpoints prunes after each save; a kill -9 can land between any two deletions.
    remove = checkpoints._remove
    for cut in range(10):
        directory = str(tmp_path / f"cut{cut}")
        v = tf.Variable(0.0)
        manager = checkpoints.Manager(tf.train.Checkpoint(v=v), directory, max_to_keep=2)
        for step in (5, 10):
            v.assign(float(step))
            manager.save(step)
        calls = []

        def cut_short(d, name, cut=cut, calls=calls):
            if len(calls) == cut:
                raise _Killed
            calls.append(name)
            remove(d, name)

        monkeypatch.setattr(checkpoints, "_remove", cut_short)
        v.assign(15.0)
        try:
            manager.save(15)
        except _Killed:
            pass
        monkeypatch.setattr(checkpoints, "_remove", remove)
        lines = []
        found = checkpoints.recover(directory, lines.append)
        assert found == os.path.join(directory, "ckpt-15") and _value(found) == 15.0
        assert not any("damaged" in line or "state file" in line for line in lines), (cut, calls, lines)
        assert not os.path.exists(os.path.join(directory, checkpoints.DAMAGED_DIR)), (cut, calls)
        kept = {STATE, "ckpt-10.data-00000-of-00001", "ckpt-10.index", "ckpt-15.data-00000-of-00001", "ckpt-15.index"}
        left = set(os.listdir(directory)) - kept
        # What the cut prune left: nothing, or all of ckpt-5 (whole), which the next save prunes.
        assert left in (set(), {"ckpt-5.data-00000-of-00001", "ckpt-5.index"}), (cut, calls, left)
        state = tf.train.get_checkpoint_state(directory)
        assert [os.path.basename(p) for p in state.all_model_checkpoint_paths] == ["ckpt-10", "ckpt-15"]
        v.assign(20.0)
        checkpoints.Manager(tf.train.Checkpoint(v=v), directory, max_to_keep=2).save(20)
        assert sorted(os.listdir(directory)) == sorted(
            {STATE, "ckpt-15.data-00000-of-00001", "ckpt-15.index", "ckpt-20.data-00000-of-00001", "ckpt-20.index"}
        )
        if len(calls) < cut:  # the prune ran to its end before the cut: every point was tried
            break
    else:
        pytest.fail("the prune made more deletions than the test cuts at")


# ------------------------------------------------------------------ through the entry points
def _export(run_dir, out):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "export_savedmodel.py"), f"--run_dir={run_dir}", f"--export_dir={out}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.mark.e2e
def test_train_and_export_use_the_checkpoints_on_disk(idx_dir, tmp_path):
    run_dir = str(tmp_path / "run")
    base = ["--data_dir", idx_dir, *TINY, "--ckpt_every=5"]
    assert run(base + ["--run_dir", run_dir, "--train_steps=10"]).returncode == 0
    copies = {}
    for name in ("state", "garbage", "cut"):
        copies[name] = str(tmp_path / name)
        shutil.copytree(run_dir, copies[name])
    _break_state(os.path.join(copies["state"], "checkpoints"), "names a missing checkpoint")
    _break_state(os.path.join(copies["garbage"], "checkpoints"), "garbage")
    _damage(os.path.join(copies["cut"], "checkpoints", "ckpt-10"), "data cut to half")
    five = {k: v for k, v in snapshot(copies["state"]).items() if "ckpt-5" in k}

    resumed = run(base + ["--run_dir", copies["state"], "--train_steps=15"])
    assert resumed.returncode == 0, resumed.stderr
    assert "the checkpoints on disk are the truth" in resumed.stdout
    assert "at step 10" in resumed.stdout and "removed" not in resumed.stdout  # was: both deleted
    assert {k: v for k, v in snapshot(copies["state"]).items() if "ckpt-5" in k} == five

    exported = _export(copies["garbage"], str(tmp_path / "e1"))
    assert exported.returncode == 0, exported.stderr
    assert "(step 10)" in exported.stdout and "state file" in exported.stdout

    exported = _export(copies["cut"], str(tmp_path / "e2"))
    assert exported.returncode == 0, exported.stderr  # was: IndexError traceback
    assert "ckpt-10 is damaged" in exported.stdout and "(step 5)" in exported.stdout
    resumed = run(base + ["--run_dir", copies["cut"], "--train_steps=15"])
    assert resumed.returncode == 0, resumed.stderr
    assert "ckpt-10 is damaged" in resumed.stdout and "at step 5" in resumed.stdout
    assert sorted(os.listdir(os.path.join(copies["cut"], "checkpoints", "damaged"))) == [
        "ckpt-10.data-00000-of-00001",
        "ckpt-10.index",
    ]
