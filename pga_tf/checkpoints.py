"""Checkpoint files of a run: list, save, prune and clean up, without ever globbing a user path.

TensorFlow's own helpers (`tf.train.latest_checkpoint`, `tf.train.CheckpointManager`, and the
V1 fallback of the checkpoint reader) look files up through a glob, so in a run dir such as
`runs/exp [v1]` they find nothing: a resumed run silently started from step 0, old checkpoints
were never pruned and export found none. Here files are found by exact names (`os.listdir`,
`os.path.exists`), and a checkpoint under such a path is read through a glob-free alias.

The `checkpoint` state file keeps TensorFlow's text format (relative `ckpt-N` names), so
`tf.train.latest_checkpoint` and TensorBoard still read run dirs with ordinary paths. It is an index
only: the checkpoints on disk are the truth. A state file that is missing, cut, hand-edited or
names a checkpoint that is gone never makes a complete checkpoint look absent (a resume from step
0 would overwrite it, the old clean-up deleted it): `newest` reads the directory itself, checks
that the newest checkpoint reads back whole, and falls back to the next one when it does not.

TensorFlow is imported by the functions that read or write tensors only, so the listing (`complete`,
`latest`, `step_of`) serves TensorFlow-free tools too (pga_tf.runs.latest_step).
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import re
import shutil
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tensorflow as tf

STATE_FILE = "checkpoint"
_NAME = re.compile(r"^ckpt-(\d+)(?:\.index|\.data-\d+-of-\d+|_temp)$")
_DATA = re.compile(r"^(ckpt-\d+)\.data-(\d+)-of-(\d+)$")
DAMAGED_DIR = "damaged"  # where a resume keeps the damaged checkpoints it steps over
# Characters TensorFlow's file-pattern matching (tsl::Env::MatchPath) treats specially.
_GLOB_CHARS = frozenset("*?[\\")


class SaveError(Exception):
    """A checkpoint could not be written (disk full, I/O error); the partial save is removed."""


class CheckpointError(Exception):
    """No checkpoint of a run can be used (every one damaged, or pruned while it was read); the
    message is one line."""


class _BadState(Exception):
    """The state file exists but is not a CheckpointState listing ckpt-N names."""


_STATE_LINE = re.compile(r'^(model_checkpoint_path|all_model_checkpoint_paths): "([^"]*)"$')


def _state(directory: str) -> list[str] | None:
    """The checkpoint names the state file lists, oldest first (latest last), or None without one.

    The file is TensorFlow's CheckpointState text proto, parsed here line by line: TensorFlow's
    own parser raises on an empty file and reads garbage as an empty state. Raises _BadState for
    a file that is empty or holds anything else.
    """
    path = os.path.join(directory, STATE_FILE)
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None
    names, latest_name = [], None
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        match = _STATE_LINE.match(line)
        if not match:
            raise _BadState("is unreadable (not TensorFlow's checkpoint state format)")
        name = os.path.basename(match.group(2))
        if match.group(1) == "model_checkpoint_path":
            latest_name = name
        elif name not in names:
            names.append(name)
    if latest_name is None:
        raise _BadState("is empty" if not text.strip() else "names no latest checkpoint")
    if latest_name not in names:
        names.append(latest_name)
    return names


def _step(name: str) -> int:
    return int(name.rsplit("-", 1)[1])


def _data_files(directory: str, name: str, entries: list[str] | None = None) -> list[str]:
    entries = os.listdir(directory) if entries is None else entries
    return sorted(e for e in entries if (m := _DATA.match(e)) and m.group(1) == name)


def _on_disk(directory: str) -> tuple[list[str], list[str], list[str]]:
    """(complete, no_data, no_index) checkpoint names in `directory`, each oldest first.

    Complete: the .index and every .data shard it was written with. No data: an .index whose
    shards are (partly) gone, i.e. damaged. No index: shards without an .index, what a save cut
    between writing its data and its index leaves (TensorFlow writes the index last).
    """
    if not os.path.isdir(directory):
        return [], [], []
    entries = os.listdir(directory)
    indexed = {e[: -len(".index")] for e in entries if re.fullmatch(r"ckpt-\d+\.index", e)}
    shards: dict[str, set[tuple[int, int]]] = {}
    for e in entries:
        if m := _DATA.match(e):
            shards.setdefault(m.group(1), set()).add((int(m.group(2)), int(m.group(3))))
    complete, no_data = [], []
    for name in indexed:
        got = shards.get(name, set())
        counts = {n for _, n in got}
        whole = len(counts) == 1 and {i for i, _ in got} == set(range(counts.pop()))
        (complete if whole else no_data).append(name)
    no_index = [n for n in shards if n not in indexed]
    return sorted(complete, key=_step), sorted(no_data, key=_step), sorted(no_index, key=_step)


def complete(directory: str) -> list[str]:
    """Prefixes of the complete checkpoints on disk in `directory` (index and data), oldest first,
    whatever the state file says."""
    return [os.path.join(directory, n) for n in _on_disk(directory)[0]]


def listed(directory: str) -> list[str]:
    """Prefixes of the complete checkpoints in `directory`, oldest first (see `complete`)."""
    return complete(directory)


def latest(directory: str) -> str | None:
    """The newest complete checkpoint's prefix (e.g. <dir>/ckpt-1000), or None; not read back
    (`newest` is what a reader uses).

    Replaces `tf.train.latest_checkpoint`, which globs `directory` and so finds nothing under a
    path holding `[`, `*`, `?` or a backslash.
    """
    found = complete(directory)
    return found[-1] if found else None


def damage(prefix: str) -> str | None:
    """Why the checkpoint at `prefix` cannot be read back whole, or None if it can.

    Every tensor is read: TensorFlow checks each one's length and CRC32C on the way, so a cut or
    overwritten .data file or a cut .index shows here, not as a traceback or as "does not fit
    this model" in the restore.
    """
    import tensorflow as tf

    try:
        path = readable(prefix)
        dtypes = tf.train.load_checkpoint(path).get_variable_to_dtype_map()
        keys = sorted(dtypes)
        # One RestoreV2 rather than get_tensor per key: it also reads the variant-typed input
        # position, which numpy cannot hold.
        tf.raw_ops.RestoreV2(
            prefix=path, tensor_names=keys, shape_and_slices=[""] * len(keys), dtypes=[dtypes[k] for k in keys]
        )
    except (tf.errors.OpError, ValueError, IndexError, RuntimeError) as e:
        message = e.message if isinstance(e, tf.errors.OpError) else str(e)
        return _short(message) or type(e).__name__
    return None


_held: dict[str, str] = {}


def _hold(prefix: str) -> bool:
    """Keep the checkpoint at `prefix` readable for the rest of the process, even if a training
    prunes it meanwhile; False if it is already gone.

    Its files are opened (an open file outlives its unlinking) and `readable` points TensorFlow
    at /proc/self/fd links to them. Without /proc, the files are read where they are.
    """
    if prefix in _held:
        return True
    directory, name = os.path.split(prefix)
    try:
        files = _data_files(directory, name) + [name + ".index"]  # the index, written last, last
    except OSError:
        return False
    if not os.path.isdir("/proc/self/fd"):
        return all(os.path.exists(os.path.join(directory, f)) for f in files)
    fds = []
    try:
        for f in files:
            fds.append(os.open(os.path.join(directory, f), os.O_RDONLY))
    except FileNotFoundError:
        for fd in fds:
            os.close(fd)
        return False
    alias = os.path.join(_alias_dir(), f"held-{len(_held)}")
    os.mkdir(alias)
    for f, fd in zip(files, fds):
        os.symlink(f"/proc/self/fd/{fd}", os.path.join(alias, f))
    _held[prefix] = os.path.join(alias, name)
    return True


@dataclasses.dataclass
class _Survey:
    directory: str
    complete: list[str]
    state_problem: str | None  # what is wrong with the state file, or None


def _survey(directory: str) -> _Survey:
    found, _, _ = _on_disk(directory)
    try:
        names = _state(directory)
    except _BadState as e:
        return _Survey(directory, found, str(e))
    if not found:
        return _Survey(directory, found, None)
    if names is None:
        return _Survey(directory, found, "is missing")
    gone = [n for n in names if n not in found]
    unlisted = [n for n in found if n not in names]
    if gone:
        return _Survey(directory, found, f"names {', '.join(gone)}, not on disk")
    if unlisted and _step(unlisted[-1]) > _step(names[-1]):
        return _Survey(directory, found, f"does not list {', '.join(unlisted)}")
    return _Survey(directory, found, None)


def _state_line(survey: _Survey, use: str) -> str:
    found = ", ".join(survey.complete) or "none"
    return (
        f"the checkpoint state file {os.path.join(survey.directory, STATE_FILE)} "
        f"{survey.state_problem}; the checkpoints on disk are the truth ({found}): {use}"
    )


def _busy(directory: str) -> bool:
    """Whether a training holds the run dir of `directory` (run_lock's OS lock)."""
    from pga_tf import run_lock

    try:
        run_lock.check_free(os.path.dirname(os.path.abspath(directory)))
    except run_lock.RunDirBusy:
        return True
    return False


def newest(directory: str, log=print, attempts: int = 5) -> str | None:
    """The newest checkpoint in `directory` that reads back whole, for a reader (export,
    evaluation, results), or None if there is no complete checkpoint at all.

    Found from the files on disk, not the state file (a line says when they disagree). A damaged
    newer checkpoint is named in one line and stepped over. The checkpoint chosen is held
    (`_hold`), so a training that prunes it while it is read does not pull it away; one pruned
    before it could be held is retried on the next newest. Writes nothing. Raises CheckpointError
    when every checkpoint is damaged, or when the run is training and its checkpoints kept
    changing while read.
    """
    vanished: list[str] = []
    for _ in range(attempts):
        survey = _survey(directory)
        if not survey.complete:
            break
        damaged: list[tuple[str, str]] = []
        for name in reversed(survey.complete):
            prefix = os.path.join(directory, name)
            if not _hold(prefix):
                vanished.append(name)
                continue
            reason = damage(prefix)
            if reason is not None:
                damaged.append((prefix, reason))
                continue
            if survey.state_problem:
                log(_state_line(survey, f"using {name}, the newest complete one"))
            for bad, why in damaged:
                log(
                    f"checkpoint {bad} is damaged ({why}); using {prefix}, the newest intact "
                    "checkpoint (train.py resumes from it too, keeping the damaged one aside)"
                )
            return prefix
        if damaged and not vanished:
            raise CheckpointError(_all_damaged(directory, damaged))
    if vanished:
        run_dir = os.path.dirname(os.path.abspath(directory))
        state = "is training and its" if _busy(directory) else "changed while reading: its"
        raise CheckpointError(
            f"run dir {run_dir} {state} checkpoints changed while reading "
            f"({', '.join(dict.fromkeys(vanished))} pruned before they could be "
            "read); run the command again"
        )
    return None


def _all_damaged(directory: str, damaged: list[tuple[str, str]]) -> str:
    return (
        f"every checkpoint in {directory} is damaged: "
        f"{'; '.join(f'{os.path.basename(p)} ({why})' for p, why in damaged)}; move them out of "
        "it to train from step 0, or use another --run_dir"
    )


def recover(directory: str, log=print) -> str | None:
    """For a resume (the caller holds the run dir's lock): the newest checkpoint that reads back
    whole, after tidying `directory` so it agrees with the disk; None to start from step 0.

    Leftovers of saves cut short are removed (`remove_partial`). Damaged checkpoints newer than the
    one chosen are moved into <directory>/damaged/, never deleted, and a later save of the same
    step cannot overwrite them. A state file that disagrees with the disk is rewritten from it.
    Each change is said in one line. Raises CheckpointError, having changed nothing, when no
    checkpoint reads back whole.
    """
    survey = _survey(directory)
    _, no_data, _ = _on_disk(directory)
    damaged: list[tuple[str, str]] = [(os.path.join(directory, n), "its .data files are missing") for n in no_data]
    chosen = None
    for name in reversed(survey.complete):
        prefix = os.path.join(directory, name)
        reason = damage(prefix)
        if reason is None:
            chosen = prefix
            break
        damaged.append((prefix, reason))
    if chosen is None and damaged:
        raise CheckpointError(_all_damaged(directory, damaged))
    removed = remove_partial(directory)
    if removed:
        log(f"removed what interrupted saves or prunes left in {directory}: {', '.join(removed)}")
    for prefix, why in damaged:
        aside = _move_aside(prefix)
        log(
            f"checkpoint {prefix} is damaged ({why}); moved aside to {aside}"
            + (f", resuming from {chosen}, the newest intact checkpoint" if chosen else "")
        )
    kept = _on_disk(directory)[0]
    if survey.state_problem or (damaged and kept):
        if kept:
            _write_state(directory, kept)
        else:
            _remove(directory, STATE_FILE)
        if survey.state_problem:
            start = f"resuming from {os.path.basename(chosen)}" if chosen else "starting from step 0"
            log(_state_line(survey, f"{'rewritten from them' if kept else 'removed'}, {start}"))
    return chosen


def _move_aside(prefix: str) -> str:
    """Move a checkpoint's files into <dir>/damaged/[<n>/], a fresh folder if one of that name is
    already kept there; returns the folder."""
    directory, name = os.path.split(prefix)
    aside = os.path.join(directory, DAMAGED_DIR)
    n = 1
    while any(e.startswith(name + ".") for e in (os.listdir(aside) if os.path.isdir(aside) else ())):
        n += 1
        aside = os.path.join(directory, DAMAGED_DIR, str(n))
    os.makedirs(aside, exist_ok=True)
    for entry in os.listdir(directory):
        if entry == name + ".index" or (_DATA.match(entry) and _DATA.match(entry).group(1) == name):
            os.replace(os.path.join(directory, entry), os.path.join(aside, entry))
    return aside


def at_step(directory: str, step: int) -> str | None:
    """The complete checkpoint on disk saved at `step`, held for reading, or None (never saved
    there, or pruned: --keep_checkpoints keeps only the newest). Raises CheckpointError if it is
    damaged."""
    found = [p for p in complete(directory) if _step(os.path.basename(p)) == step]
    if not found or not _hold(found[-1]):
        return None
    reason = damage(found[-1])
    if reason is not None:
        raise CheckpointError(f"checkpoint {found[-1]} is damaged ({reason}); choose another step")
    return found[-1]


def step_of(prefix: str) -> int:
    """The step a `ckpt-N` prefix was saved at."""
    return _step(os.path.basename(prefix))


_alias_root: str | None = None


def _alias_dir() -> str:
    global _alias_root
    if _alias_root is None:
        _alias_root = tempfile.mkdtemp(prefix="pga-ckpt-")
        atexit.register(shutil.rmtree, _alias_root, True)
    return _alias_root


def readable(prefix: str) -> str:
    """A path TensorFlow can restore `prefix` from.

    The checkpoint reader falls back to glob matching (and then fails) when the path holds glob
    characters, so such a checkpoint is read through a symlink to its directory, under a private
    temporary directory that lives as long as the process (restores may be deferred).
    """
    if prefix in _held:
        return _held[prefix]
    if not _GLOB_CHARS & set(prefix):
        return prefix
    link = tempfile.mktemp(dir=_alias_dir())
    os.symlink(os.path.dirname(os.path.abspath(prefix)), link)
    return os.path.join(link, os.path.basename(prefix))


def variable_names(prefix: str) -> set[str]:
    """The keys stored in a checkpoint (e.g. 'iterator/.ATTRIBUTES/ITERATOR_STATE')."""
    import tensorflow as tf

    return set(tf.train.load_checkpoint(readable(prefix)).get_variable_to_shape_map())


def read_tensor(prefix: str, key: str):
    import tensorflow as tf

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

    That is every `ckpt-N_temp/` (a save's shards before they are merged), the `.data` shards of
    a checkpoint without its `.index` (TensorFlow writes the index last, and Manager prunes it
    first) and a state file's temporary copy. A checkpoint with its index is never deleted here,
    listed in the state file or not. Call it only while holding the run dir (run_lock), so no
    other process is saving there.
    """
    if not os.path.isdir(directory):
        return []
    no_index = set(_on_disk(directory)[2])
    removed = []
    for entry in sorted(os.listdir(directory)):
        match = _NAME.match(entry)
        leftover = entry == STATE_FILE + ".tmp" or (
            match and (entry.endswith("_temp") or entry.split(".")[0] in no_index)
        )
        if leftover:
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

        The state file is replaced atomically after the checkpoint's files are complete, and before
        any old checkpoint is deleted, so at every moment it names complete checkpoints only. A
        pruned checkpoint loses its .index first: a process killed halfway through a prune leaves
        .data shards without an index, which `recover` tidies as a save's leftovers, never an
        index without its data, which would look like a damaged checkpoint. Raises SaveError
        (after removing the partial files) if the write fails.
        """
        import tensorflow as tf

        name = f"ckpt-{step}"
        prefix = os.path.join(self.directory, name)
        try:
            os.makedirs(self.directory, exist_ok=True)
            # As tf.train.CheckpointManager does: Checkpoint.restore expects a save counter.
            self.checkpoint.save_counter.assign_add(1)
            self.checkpoint.write(prefix)
            names = [n for n in _on_disk(self.directory)[0] if n != name] + [name]
            _write_state(self.directory, names[-self.max_to_keep :])
        except (tf.errors.OpError, OSError) as e:
            _remove(self.directory, STATE_FILE + ".tmp")
            for entry in os.listdir(self.directory) if os.path.isdir(self.directory) else ():
                if _NAME.match(entry) and entry.split(".")[0].removesuffix("_temp") == name:
                    _remove(self.directory, entry)
            reason = e.message if isinstance(e, tf.errors.OpError) else (e.strerror or str(e))
            last = self.latest_checkpoint
            raise SaveError(
                f"cannot save checkpoint {prefix} ({_short(reason)}); last good checkpoint: {last or 'none'}"
            ) from None
        for old in names[: -self.max_to_keep]:
            _remove(self.directory, old + ".index")
            for entry in os.listdir(self.directory):
                if _NAME.match(entry) and entry.split(".")[0].removesuffix("_temp") == old:
                    _remove(self.directory, entry)
        return prefix


def _short(reason: str) -> str:
    """The cause in a TensorFlow error message, e.g. 'No space left on device' out of
    '{{function_node ...SaveV2...}} <dir>/ckpt-10_temp/part-...; No space left on device [Op:SaveV2]'."""
    line = reason.strip().splitlines()[0] if reason.strip() else "unknown error"
    line = re.sub(r"^\{\{.*?\}\}\s*", "", line)
    line = re.sub(r"\s*\[Op:[^\]]*\]\s*$", "", line)
    return line.rsplit("; ", 1)[-1][:300]
