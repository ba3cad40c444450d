"""Where a SavedModel export goes, and the line that reports one, without TensorFlow: export.py
writes the export, and the programs check its destination before TensorFlow loads.
"""

from __future__ import annotations

import os


class ExportError(Exception):
    """A user-caused problem with the export's destination (existing output, unwritable dir); the
    message is one line. A run that cannot be restored is runs.RunError."""


def _is_replaceable(path: str) -> bool:
    """Whether --overwrite may delete `path`: only an earlier export or an empty directory, so a
    mistyped --export_dir (a run dir, a home dir) is never wiped."""
    if not os.path.isdir(path) or os.path.islink(path):
        return False
    return not os.listdir(path) or os.path.isfile(os.path.join(path, "saved_model.pb"))


def check_destination(export_dir: str, overwrite: bool) -> str:
    """The absolute export path, or ExportError if an existing dir there may not be replaced."""
    export_dir = os.path.abspath(export_dir)
    if os.path.lexists(export_dir):
        if not overwrite:
            raise ExportError(f"export dir {export_dir} already exists; pass --overwrite to replace it")
        if not _is_replaceable(export_dir):
            raise ExportError(
                f"{export_dir} exists and is not a SavedModel; refusing to replace it (choose another --export_dir)"
            )
    return export_dir


def written(checkpoint: str, step: int, export_dir: str, sampler: str) -> str:
    """The line train.py and export_savedmodel.py end an export with; paths absolute, so it reads
    the same whichever directory the program ran in."""
    return (
        f"SavedModel of {os.path.abspath(checkpoint)} (step {step}) written to {os.path.abspath(export_dir)} "
        f"(sample: the {sampler} sampler)"
    )
