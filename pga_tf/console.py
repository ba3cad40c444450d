"""A console of our own lines: TensorFlow's known-harmless native log lines kept off stderr.

TensorFlow's C++ runtime writes straight to file descriptor 2. Some of it comes before absl's
logging is initialised, where TF_CPP_MIN_LOG_LEVEL does not reach (`WARNING: All log messages
before absl::InitializeLog() ...`, the oneDNN notice, `Could not find cuda drivers`, at error
level `failed call to cuInit` on a machine without a GPU), and Grappler reports a skipped
optimisation at error level (`remapper failed: ... LeakyReluGrad`) though the graph runs
unoptimised and correct. A user reads those as failures.

`install()`, called by each entry point before TensorFlow is imported, routes descriptor 2
through a filter process that drops the lines listed in HARMLESS and passes everything else
unchanged: our own lines, Python tracebacks and warnings, any native error not listed (the CUDA
lines too, on a machine with an NVIDIA driver, where they say why the GPU is unused). The
filter is a separate process, not a thread, so that a native crash (an abort, a segfault) or a
kill -9 loses nothing: the filter reads the pipe to its end after the program has died. At a
normal exit the program waits for the filter, so all of stderr is out when the program ends.

`PGA_TF_SHOW_TF_LOGS=1` turns all of it off: no filter, TF_CPP_MIN_LOG_LEVEL left as the
environment sets it, and TensorFlow's Python loggers at their defaults (see cli.quiet_tensorflow).

This module imports only the standard library, so that it can run before anything else and as
the filter itself (`python -I -S pga_tf/console.py` reads stdin, writes stdout).
"""

from __future__ import annotations

import atexit
import os
import re
import select
import signal
import subprocess
import sys

SHOW_ENV = "PGA_TF_SHOW_TF_LOGS"

# One line of native logging, before or after absl initialises, e.g.
#   I0000 00:00:1796036002.236999    6190 port.cc:153] oneDNN custom operations are on. ...
#   E1130 10:53:21.123456    6190 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: ...
_NATIVE = re.compile(rb"^[IWEF]\d{4} \S+\s+\d+ (?P<file>[\w.-]+):\d+\] (?P<message>.*)$")


def _entries(*rows: tuple[str, str, str | None]) -> tuple:
    return tuple((f.encode(), re.compile(m.encode()), re.compile(c.encode()) if c else None) for f, m, c in rows)


# (source file, start of the message, start of a continuation line or None). Every other
# native line passes, whatever its level.
HARMLESS = _entries(
    # Which optional CPU kernels are on: no action possible or needed.
    ("port.cc", r"oneDNN custom operations are on", None),
    ("cpu_feature_guard.cc", r"This TensorFlow binary is optimized", r"To enable the following instructions"),
    # Grappler's meta-optimizer logs a failed pass and runs the graph without that pass: the
    # result is the same, only that optimisation is skipped.
    ("meta_optimizer.cc", r"\w+ failed: ", None),
    # oneDNN has no int32 kernel for an op here (the GMM sampler's categorical draw, say) and
    # TensorFlow runs Eigen's instead, with the same result.
    ("util.cc", r"oneDNN supports DT_INT32 only on platforms with AVX-512", None),
)
# The `tensorflow` wheel is built with CUDA and looks for a GPU at start-up. Harmless only where
# there is no NVIDIA driver: on a GPU machine these lines say why the GPU is not used.
NO_GPU_HARMLESS = _entries(
    ("cudart_stub.cc", r"Could not find cuda drivers", None),
    ("cuda_platform.cc", r"failed call to cuInit", None),
    ("cuda_executor.cc", r"failed call to cuInit", None),
)
NVIDIA_DRIVER = "/proc/driver/nvidia"


def harmless_entries(nvidia_driver: bool) -> tuple:
    """The entries to drop on a machine with or without an NVIDIA driver."""
    return HARMLESS if nvidia_driver else HARMLESS + NO_GPU_HARMLESS


# Printed once per copy of abseil in TensorFlow's shared libraries, before absl initialises.
_ABSL_PREAMBLE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"

# How long a line without its newline may wait before it is passed as it is (a prompt, say).
_PARTIAL_WAIT_S = 0.2
# How long a normal exit waits for the filter to write what is left.
_EXIT_WAIT_S = 10.0

HarmlessEntry = tuple  # one element of harmless_entries()

_filter: subprocess.Popen | None = None
_original_stderr: int | None = None


def showing_tf_logs() -> bool:
    """Whether the user asked for TensorFlow's own logs (PGA_TF_SHOW_TF_LOGS=1)."""
    return os.environ.get(SHOW_ENV, "").strip().lower() not in ("", "0", "false", "no")


def install() -> None:
    """Keep TensorFlow's known-harmless lines off stderr from here on; call before importing it.

    Sets TF_CPP_MIN_LOG_LEVEL=2 unless the environment sets it (native INFO and WARNING lines
    after absl initialises), and routes file descriptor 2 through the filter process. Does
    nothing under PGA_TF_SHOW_TF_LOGS=1, or if already installed in this process.
    """
    global _filter, _original_stderr
    if showing_tf_logs() or _filter is not None:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if sys.stderr is None:  # started without a stderr: nothing to keep clean
        return
    sys.stderr.flush()
    try:
        original = os.dup(2)
    except OSError:
        return
    read_end, write_end = os.pipe()
    try:
        _filter = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__)],
            stdin=read_end,
            stdout=original,
            stderr=original,
            close_fds=True,
        )
    except OSError:  # no filter is better than no program
        for fd in (read_end, write_end, original):
            os.close(fd)
        return
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    _original_stderr = original
    atexit.register(_drain)


def _drain() -> None:
    """At exit: give descriptor 2 back and wait until the filter has written everything."""
    global _filter
    if _filter is None or _original_stderr is None:
        return
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # closed by the program, or its reader went away
            pass
    os.dup2(_original_stderr, 2)  # closes our end of the pipe: the filter reads to its end
    try:
        _filter.wait(timeout=_EXIT_WAIT_S)
    except subprocess.TimeoutExpired:  # a child of ours still holds the pipe; it will finish
        pass
    _filter = None


def is_harmless(
    line: bytes, previous_dropped: HarmlessEntry | None, entries: tuple = HARMLESS + NO_GPU_HARMLESS
) -> tuple[bool, HarmlessEntry | None]:
    """Whether to drop `line` (without its newline), and the entry whose continuation may follow.

    `previous_dropped` is what the previous call returned: a multi-line message's later lines
    are dropped only right after its first line was.
    """
    text = line.rstrip(b"\r")
    if text == _ABSL_PREAMBLE:
        return True, None
    if previous_dropped is not None and previous_dropped[2] is not None and previous_dropped[2].match(text):
        return True, previous_dropped
    native = _NATIVE.match(text)
    if native:
        for entry in entries:
            if native["file"] == entry[0] and entry[1].match(native["message"]):
                return True, entry
    return False, None


def filter_stream(source: int, sink: int, entries: tuple = HARMLESS + NO_GPU_HARMLESS) -> None:
    """Copy `source` to `sink` line by line, leaving out the `entries` lines, until end of file."""
    pending = b""
    previous = None
    while True:
        if pending and not select.select([source], [], [], _PARTIAL_WAIT_S)[0]:
            _write(sink, pending)  # a partial line that stays partial: pass it as it is
            pending, previous = b"", None
            continue
        chunk = os.read(source, 1 << 16)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = []
        for line in lines:
            drop, previous = is_harmless(line, previous, entries)
            if not drop:
                kept.append(line + b"\n")
        if kept:
            _write(sink, b"".join(kept))
    if pending:
        _write(sink, pending)


def _write(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:  # the reader went away; keep draining so the program never blocks
        pass


if __name__ == "__main__":
    # Ctrl-C, SIGTERM to the process group and a closing terminal reach the filter too: it must
    # outlive the program to pass on its last lines, and it ends when the pipe does.
    for _sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(_sig, signal.SIG_IGN)
    filter_stream(0, 1, harmless_entries(os.path.exists(NVIDIA_DRIVER)))
