"""The project's JSON files on disk: written atomically, read back with one-line errors.

Every JSON file pga-tf keeps (a run's config.json and features.json, evaluate.py's reports, the
results tools' state and timings, a classifier's metadata) goes through `write`, so a kill or a
full disk mid-write leaves the old file or the new one, never half of either; and through `read`,
so a file damaged anyway (cut short by a copy, emptied, hand-edited into something else) is
refused in one line that names the file, what is wrong with it and what to do, instead of a
traceback from `json` or a KeyError far from the cause.

TensorFlow-free: the command lines read these files before TensorFlow loads.
"""

from __future__ import annotations

import json
import math
import os
import threading
from typing import Any


def write(path: str, obj: Any, **dump_kwargs: Any) -> None:
    """Write `obj` as JSON to `path` atomically: into a temporary file beside it (temporary_name),
    flushed to disk, then renamed over `path` (a reader sees the old file or the new one, and of
    two writers at once the last rename wins whole). `dump_kwargs` go to json.dump; NaN
    and infinity are refused (allow_nan=False) unless the caller allows them, since no JSON
    reader but Python's accepts them.

    Raises:
      OSError: the directory is missing or unwritable, or the disk is full (`path` unchanged).
      ValueError: `obj` holds NaN or infinity.
      TypeError: `obj` holds something JSON cannot (`path` unchanged).
    """
    dump_kwargs.setdefault("allow_nan", False)
    tmp = temporary_name(path)
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(obj, f, **dump_kwargs)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def temporary_name(path: str, suffix: str = ".tmp") -> str:
    """A name beside `path` for writing it aside, its own to this process and thread: two writers
    of one file (two jobs filling one cache) must not rename each other's half-written file."""
    return f"{path}.{os.getpid()}-{threading.get_ident()}{suffix}"


def read(path: str, fix: str, error: type[Exception] = ValueError) -> dict:
    """The JSON object in `path`.

    `fix` says what the user can do about a damaged file (how it was made, what to delete); it
    ends every message, which reads "<path> <what is wrong>; <fix>". `error` is the exception
    class raised, so each caller's command line reports it as its other user errors.

    Raises:
      error: `path` cannot be read, is empty, is not UTF-8, is not JSON (cut short or edited;
        NaN and Infinity included), or holds something other than a JSON object at its top.
    """
    problem, obj = _parse(path)
    if problem:
        raise error(f"{path} {problem}; {fix}")
    return obj


def _parse(path: str) -> tuple[str, Any]:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except IsADirectoryError:
        return "is a directory, not a file", None
    except OSError as e:
        return f"cannot be read ({e.strerror})", None
    if not data.strip():
        return "is empty", None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"is not UTF-8 text (byte {e.start})", None
    try:
        obj = json.loads(text, parse_constant=_refuse_constant)
    except _NonFinite as e:
        return f"holds {e.args[0]}, which JSON does not allow", None
    except json.JSONDecodeError as e:
        # An error at the end of the text, or a string never closed, is what a cut makes.
        cut = e.pos >= len(text.rstrip()) or e.msg.startswith("Unterminated")
        return f"is not valid JSON (line {e.lineno} column {e.colno}: {e.msg}{'; cut short?' if cut else ''})", None
    except RecursionError:
        return "is not valid JSON (nested too deeply)", None
    if not isinstance(obj, dict):
        return f"does not hold a JSON object (it holds a JSON {kind(obj)})", None
    return "", obj


class _NonFinite(ValueError):
    pass


def _refuse_constant(name: str) -> None:
    raise _NonFinite(name)  # NaN, Infinity or -Infinity: Python's extension, not JSON


def is_number(value: Any, null_ok: bool = False) -> bool:
    """Whether a parsed JSON value is a finite number (true and false are not; null only with
    `null_ok`, e.g. a diverged run's FID)."""
    if value is None:
        return null_ok
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def kind(value: Any) -> str:
    """JSON's name for `value`'s type ("array", "number", "null", ...), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)
