"""Checkpoint files of a run: list, save, prune and clean up, without ever globbing a user path.

TensorFlow's own helpers (`tf.train.latest_checkpoint`, `tf.train.CheckpointManager`, and the
V1 fallback of the checkpoint reader) look files up through a glob, so in a run dir such as
`runs/exp [v1]` they find nothing: a resumed run silently started from step 0, old checkpoints
were never pruned and export found none. Here files are found by exact names (`os.listdir`,
`os.path.exists`), and a checkpoint under such a path is read through a glob-free alias.

The `checkpoint` state file keeps TensorFlow's text format (relative `ckpt-N` names), so
`tf.train.latest_checkpoint` and TensorBoard still read run dirs with ordinary paths.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile

import tensorflow as tf

STATE_FILE = "checkpoint"
_NAME = re.compile(r"^ckpt-(\d+)(?:\.index|\.data-\d+-of-\d+|_temp)$")
# Characters TensorFlow's file-pattern matching (tsl::Env::MatchPath) treats specially.
_GLOB_CHARS = frozenset("*?[\\")


class SaveError(Exception):
    """A checkpoint could not be written (disk full, I/O error); the partial save is removed."""


def _state(directory: str) -> list[str] | None:
    """The checkpoint names the state file lists, oldest first (latest last), or None without one.

    The file is TensorFlow's CheckpointState text proto; `tf.train.get_checkpoint_state` reads it
    by its exact name (no glob).
    """
    if not os.path.isfile(os.path.join(directory, STATE_FILE)):
        return None
    state = tf.train.get_checkpoint_state(directory)
    if state is None:
        return None
    names = [os.path.basename(p) for p in state.all_model_checkpoint_paths]
    latest = os.path.basename(state.model_checkpoint_path)
    if latest and latest not in names:
        names.append(latest)
    return names


def _step(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def listed(directory: str) -> list[str]:
    """Prefixes of the complete checkpoints in `directory` that its state file lists, oldest first."""
    names = _state(directory) or []
    return [os.path.join(directory, n) for n in names
            if re.fullmatch(r"ckpt-\d+", n) and os.path.isfile(os.path.join(directory, n + ".index"))]


def latest(directory: str) -> str | None:
    """The newest complete checkpoint's prefix (e.g. <dir>/ckpt-1000), or None.

    Replaces `tf.train.latest_checkpoint`, which globs `directory` and so finds nothing under a
    path holding `[`, `*`, `?` or a backslash.
    """
    found = listed(directory)
    return found[-1] if found else None


def at_step(directory: str, step: int) -> str | None:
    """The complete checkpoint saved at `step` that the state file still lists, or None (never
    saved there, or pruned: --keep_checkpoints keeps only the newest)."""
    found = [p for p in listed(directory) if _step(os.path.basename(p)) == step]
    return found[-1] if found else None


def step_of(prefix: str) -> int:
    """The step a `ckpt-N` prefix was saved at."""
    return _step(os.path.basename(prefix))


_alias_root: str | None = None


def readable(prefix: str) -> str:
    """A path TensorFlow can restore `prefix` from.

    The checkpoint reader falls back to glob matching (and then fails) when the path holds glob
    characters, so such a checkpoint is read through a symlink to its directory, under a private
    temporary directory that lives as long as the process (restores may be deferred).
    """
    if not _GLOB_CHARS & set(prefix):
        return prefix
    global _alias_root
    if _alias_root is None:
        _alias_root = tempfile.mkdtemp(prefix="pga-ckpt-")
        atexit.register(shutil.rmtree, _alias_root, True)
    link = tempfile.mktemp(dir=_alias_root)
    os.symlink(os.path.dirname(os.path.abspath(prefix)), link)
    return os.path.join(link, os.path.basename(prefix))


def variable_names(prefix: str) -> set[str]:
    """The keys stored in a checkpoint (e.g. 'iterator/.ATTRIBUTES/ITERATOR_STATE')."""
    return set(tf.train.load_checkpoint(readable(prefix)).get_variable_to_shape_map())


def read_tensor(prefix: str, key: str):
    return tf.train.load_checkpoint(readable(prefix)).get_tensor(key)


def _write_state(directory: str, names: list[str]) -> None:
    """The state file, atomically (write then rename), in TensorFlow's text format."""
    lines = [f'model_checkpoint_path: "{names[-1]}"'] + [f'all_model_checkpoint_paths: "{n}"' for n in names]
    path = os.path.join(directory, STATE_FILE)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


def _remove(directory: str, name: str) -> None:
    path = os.path.join(directory, name)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def remove_partial(directory: str) -> list[str]:
    """Delete what interrupted or failed saves left in `directory`; returns the names removed.

    That is every `ckpt-N_temp/` (a save's shards before they are merged) and, when the state
    file exists, every `ckpt-N.*` file of a checkpoint it does not list (a save whose state was
    never recorded, or a pruned checkpoint a glob failed to delete). Without a state file only the
    `_temp` dirs go: nothing says which files are complete. Call it only while holding the run
    dir (run_lock), so no other process is saving there.
    """
    if not os.path.isdir(directory):
        return []
    names = _state(directory)
    keep = set(names or ())
    removed = []
    for entry in sorted(os.listdir(directory)):
        match = _NAME.match(entry)
        if not match:
            continue
        prefix = f"ckpt-{match.group(1)}"
        if entry.endswith("_temp") or (names is not None and prefix not in keep):
            _remove(directory, entry)
            removed.append(entry)
    return removed


class Manager:
    """Saves `checkpoint` as <directory>/ckpt-<step>, keeps the last `max_to_keep`.

    Like `tf.train.CheckpointManager`, but files are found and deleted by exact name, and a failed
    save is cleaned up and reported as SaveError naming the last good checkpoint.
    """

    def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, max_to_keep: int):
        self.checkpoint = checkpoint
        self.directory = directory
        self.max_to_keep = max_to_keep

    @property
    def latest_checkpoint(self) -> str | None:
        return latest(self.directory)

    def save(self, step: int) -> str:
        """Write ckpt-<step>, record it in the state file, then delete the oldest beyond max_to_keep.

        The state file is replaced atomically after the checkpoint's files are complete, so at every
        moment it names complete checkpoints only. Raises SaveError (after removing the partial
        files) if the write fails.
        """
        name = f"ckpt-{step}"
        prefix = os.path.join(self.directory, name)
        try:
            os.makedirs(self.directory, exist_ok=True)
            # As tf.train.CheckpointManager does: Checkpoint.restore expects a save counter.
            self.checkpoint.save_counter.assign_add(1)
            self.checkpoint.write(prefix)
            names = [n for n in (_state(self.directory) or []) if n != name] + [name]
            _write_state(self.directory, names)
        except (tf.errors.OpError, OSError) as e:
            _remove(self.directory, STATE_FILE + ".tmp")
            for entry in os.listdir(self.directory) if os.path.isdir(self.directory) else ():
                if _NAME.match(entry) and entry.split(".")[0].removesuffix("_temp") == name:
                    _remove(self.directory, entry)
            reason = e.message if isinstance(e, tf.errors.OpError) else (e.strerror or str(e))
            last = self.latest_checkpoint
            raise SaveError(f"cannot save checkpoint {prefix} ({_short(reason)}); last good "
                            f"checkpoint: {last or 'none'}") from None
        for old in names[:-self.max_to_keep]:
            for entry in os.listdir(self.directory):
                if _NAME.match(entry) and entry.split(".")[0].removesuffix("_temp") == old:
                    _remove(self.directory, entry)
        if len(names) > self.max_to_keep:
            _write_state(self.directory, names[-self.max_to_keep:])
        return prefix


def _short(reason: str) -> str:
    """The cause in a TensorFlow error message, e.g. 'No space left on device' out of
    '{{function_node ...SaveV2...}} <dir>/ckpt-10_temp/part-...; No space left on device [Op:SaveV2]'."""
    line = reason.strip().splitlines()[0] if reason.strip() else "unknown error"
    line = re.sub(r"^\{\{.*?\}\}\s*", "", line)
    line = re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", line)
    return line.rsplit("; ", 1)[-1][:300]
