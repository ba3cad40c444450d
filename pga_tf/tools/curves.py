"""FID-versus-steps curves: read from a run's TensorBoard events, drawn with matplotlib.

train.py --fid_every writes eval/FID-<features>[-<sampler>] (fid.FIDCallback); `read` takes that
series back out of <run_dir>/tb, so `python -m pga_tf.tools.results --fid_every=...` can keep it in
results.json (run dirs are not kept) and `plot` can draw every method's curve in one figure.
"""

from __future__ import annotations

import os
import textwrap

from pga_tf import jsonfile

FID_TAG_PREFIX = "eval/FID-"


def well_formed(curve) -> bool:
    """Whether a curve parsed back from JSON is what `read` returns: equal-length lists of
    finite numbers under "steps" and "fid"."""
    return (
        isinstance(curve, dict)
        and isinstance(curve.get("steps"), list)
        and isinstance(curve.get("fid"), list)
        and len(curve["steps"]) == len(curve["fid"])
        and all(jsonfile.is_number(v) for v in curve["steps"] + curve["fid"])
    )


def read(tb_dir: str) -> dict | None:
    """The FID curve of one run: {"tag", "steps", "fid"}, steps ascending, or None without one.

    Args:
      tb_dir: the run's TensorBoard dir (<run_dir>/tb), all its event files (a resumed run
        writes one per start).
    Returns:
      The first eval/FID-* tag's values. A step written twice (a run resumed from an earlier
      checkpoint evaluates it again) keeps its last value.
    """
    if not os.path.isdir(tb_dir):
        return None
    import logging

    from tensorboard.backend.event_processing import event_accumulator

    logging.getLogger("tensorboard").setLevel(logging.WARNING)  # its "No path found after" INFO lines

    # size_guidance 0: keep every value (the default samples 10 per tag). tf.summary.scalar in
    # TF2 writes tensor summaries, hence Tensors, not Scalars.
    acc = event_accumulator.EventAccumulator(
        tb_dir, size_guidance={event_accumulator.TENSORS: 0}, purge_orphaned_data=False
    )
    acc.Reload()
    tags = sorted(t for t in acc.Tags().get("tensors", []) if t.startswith(FID_TAG_PREFIX))
    if not tags:
        return None
    import tensorflow as tf

    by_step = {}
    for event in sorted(acc.Tensors(tags[0]), key=lambda e: e.wall_time):
        by_step[int(event.step)] = float(tf.make_ndarray(event.tensor_proto))
    steps = sorted(by_step)
    return {"tag": tags[0], "steps": steps, "fid": [by_step[s] for s in steps]}


def train_seconds(tb_dir: str) -> float | None:
    """Wall seconds a run spent training, over all its starts; None without event files.

    Each start of train.py writes one event file; its first record (the file version) is
    written when training begins (after TensorFlow's start-up and the checkpoint restore), its
    last with the last step logged. The spans of all files are added: the gaps between starts
    do not count, but everything within a start does (FID curve points, a process paused or
    slowed by other jobs), and steps trained again after resuming from an earlier checkpoint
    count twice. So it is what the run cost on its machine, not a measure of its speed.
    """
    import glob

    import tensorflow as tf
    from tensorboard.compat.proto import event_pb2

    total, found = 0.0, False
    for path in sorted(glob.glob(os.path.join(tb_dir, "events.out.tfevents.*"))):
        first = last = None
        try:  # records read as tf.data reads them (tf.compat.v1's iterator prints a deprecation)
            for record in tf.data.TFRecordDataset(path, buffer_size=1 << 18):
                wall_time = event_pb2.Event.FromString(record.numpy()).wall_time
                first = wall_time if first is None else first
                last = wall_time
        except tf.errors.DataLossError:
            pass  # a file cut short by a kill: its records up to the cut still count
        if first is not None:
            total, found = total + (last - first), True
    return total if found else None


def plot(
    curves: dict[str, list[dict]],
    path: str,
    title: str = "",
    epoch_steps: int = 0,
    marks: dict[str, float] | None = None,
) -> str:
    """Draws FID against training steps, one line per method, and writes a PNG.

    Args:
      curves: label -> the curves (`read`'s dicts) of that method's runs, one per seed. One curve
        is a line; several are their mean over the steps all have, in a band from the lowest to
        the highest value.
      path: the PNG to write (its directory must exist).
      title: the figure's title.
      epoch_steps: steps per epoch; if > 0 a second x axis counts epochs.
      marks: label -> step, each drawn as a dotted vertical line (e.g. where a stage starts).
    Returns:
      `path`.
    Raises:
      ValueError: no curve at all.
    """
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")  # no display here, and none needed for a file
    import matplotlib.pyplot as plt
    import numpy as np

    drawn = {label: [c for c in runs if c and c["steps"]] for label, runs in curves.items()}
    drawn = {label: runs for label, runs in drawn.items() if runs}
    if not drawn:
        raise ValueError("no FID curve to plot")
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for label, runs in drawn.items():
        common = sorted(set.intersection(*(set(c["steps"]) for c in runs)))
        values = np.array([[dict(zip(c["steps"], c["fid"]))[s] for s in common] for c in runs])
        (line,) = ax.plot(
            common,
            values.mean(axis=0),
            marker="o",
            markersize=3,
            label=label + (f" ({len(runs)} seeds)" if len(runs) > 1 else ""),
        )
        if len(runs) > 1:
            ax.fill_between(
                common, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.2, linewidth=0
            )
    for label, step in (marks or {}).items():
        ax.axvline(step, color="0.4", linestyle=":", linewidth=1, label=label)
    ax.set_xlabel("training step")
    ax.set_ylabel("FID (log scale)")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())  # 50, not 5 x 10^1
    ax.yaxis.set_minor_formatter(matplotlib.ticker.ScalarFormatter())
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    if epoch_steps > 0:
        top = ax.secondary_xaxis("top", functions=(lambda s: s / epoch_steps, lambda e: e * epoch_steps))
        top.set_xlabel("epoch")
    if title:
        ax.set_title(textwrap.fill(title, 90), fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
