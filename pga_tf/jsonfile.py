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
import os
from typing import Any


def write(path: str, obj: Any, **dump_kwargs: Any) -> None:
    """Write `obj` as JSON to `path` atomically: into `path`.tmp, flushed to disk, then renamed
    over `path` (a reader sees the old file or the new one). `dump_kwargs` go to json.dump; NaN
    and infinity are refused (allow_nan=False) unless the caller allows them, since no JSON
    reader but Python's accepts them.

    Raises:
      OSError: the directory is missing or unwritable, or the disk is full (`path` unchanged).
      ValueError: `obj` holds NaN or infinity.
      TypeError: `obj` holds something JSON cannot (`path` unchanged).
    """
    dump_kwargs.setdefault("allow_nan", False)
    tmp = path + ".tmp"
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


def read(path: str, fix: str, error: type[Exception] = ValueError) -> dict:
    """The JSON object in `path`.

    `fix` says what the user can do about a damaged file (how it was made, what to delete); it
    ends every message, which reads "<path> <what is wrong>; <fix>". `error` is the exception
    class raised, so each caller's command line reports it as its other user errors.

    Raises:
      error: `path` cannot be read, is empty, is not UTF-8, is not JSON (cut short or edited),
        or holds something other than a JSON object at its top.
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
        obj = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        return "is not UTF-8 text", None
    except json.JSONDecodeError as e:
        return f"is not valid JSON (line {e.lineno} column {e.colno}: {e.msg}; cut short?)", None
    if not isinstance(obj, dict):
        return f"does not hold a JSON object (it holds a JSON {kind(obj)})", None
    return "", obj


def kind(value: Any) -> str:
    """JSON's name for `value`'s type ("array", "number", "null", ...), for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}.get(type(value), type(value).__name__)
