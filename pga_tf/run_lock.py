"""One training at a time per run dir: an OS lock (flock) on <run_dir>/.lock.

Two trainings on one run dir overwrite each other's checkpoints, samples and config, so the
second is refused. The lock is the kernel's: it goes away with the process that holds it, so a
run killed with kill -9 (or a crash, or a power loss) never blocks the next one, and there is no
stale pid file to remove by hand. The `.lock` file itself stays (empty); deleting it on exit would
let two processes lock two different files of the same name.

In a multi-worker run only the chief locks: it alone writes the run dir, and the other workers'
scratch dirs inside it belong to its run.
"""

from __future__ import annotations

import errno
import fcntl
import os

LOCK_FILE = ".lock"


class RunDirBusy(Exception):
    """Another process is training in the run dir; the message is one line."""


def _busy(run_dir: str) -> RunDirBusy:
    return RunDirBusy(
        f"run dir {run_dir} is in use by another training (it holds "
        f"{os.path.join(run_dir, LOCK_FILE)}); wait for it to end, or use another --run_dir"
    )


def check_free(run_dir: str) -> None:
    """Raise RunDirBusy if a process holds `run_dir`'s lock; writes nothing (a quick early check,
    before the slow start-up, so a second training is refused at once)."""
    path = os.path.join(run_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file: nobody holds it (acquire() decides for good)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise _busy(run_dir) from None
    finally:
        os.close(fd)


class RunDirLock:
    """Holds `run_dir` for this process until `release()` or the process ends."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self._fd: int | None = None

    def acquire(self) -> RunDirLock:
        """Create the run dir if needed and take its lock; RunDirBusy if another process holds it.

        OSError (an unwritable path) propagates for the caller to report.
        """
        os.makedirs(self.run_dir, exist_ok=True)
        fd = os.open(os.path.join(self.run_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise _busy(self.run_dir) from None
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the last descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
