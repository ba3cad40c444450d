"""Regenerate the results tables: train each method, evaluate it, score the floor and ceiling rows.

    python -m pga_tf.tools.results                       # docs/results/: table.md, results.json, PNGs
    python -m pga_tf.tools.results --epochs=10 --fid_every=1000 --samplers=own,gmm   # + FID curves

For each method, `train.py --flagfile=flags/<method>_<dataset>.cfg` runs for --train_steps (or
--epochs; methods with a warm-up get --init_steps instead of their default, so their latent
terms switch on within a short budget), unless its run dir already holds a checkpoint at that
step. Then `evaluate.py --sampler=<s>` scores it once per sampler in --samplers (--draws draws
of --num_samples samples; `gmm` fits RAE's ex-post Gaussian mixture on the training codes), unless
the same command already scored that checkpoint. `evaluate.py --baselines` scores real training
images (the floor) and Gaussian noise (a ceiling) the same way. With --fid_every, train.py
records FID every that many steps; the curves (read back from TensorBoard, pga_tf/tools/curves.py) go
into results.json and fid_curves.png. Each step is the documented command run as a child
process, so the table is exactly what a user gets from those commands. The wall time of each
training and evaluation is recorded beside its figures.
"""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time

if __name__ == "__main__":
    from pga_tf import console

    console.install()  # the same console as the commands it runs

from absl import flags  # noqa: E402

from pga_tf import cli, jsonfile, runs  # noqa: E402
from pga_tf import config as config_lib
from pga_tf import methods as methods_lib
from pga_tf.config import SAMPLERS, default_sampler, eval_report_path, sampler_suffix  # noqa: E402
from pga_tf.tools import comparison, curves  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout
METHODS = methods_lib.names()  # table order
# docs/RESULTS.md's table at the reference settings: the PGA family (the PGAs and the AE/VAE on
# their step).
DEFAULT_METHODS = tuple(m.name for m in methods_lib.all_methods() if m.family == "pga")
label = methods_lib.label  # a method's name in tables and plots

flags.DEFINE_list("methods", list(DEFAULT_METHODS), f"Methods, in table order (any of {','.join(METHODS)}).")
flags.DEFINE_enum("dataset", "fashion_mnist", cli.DATASETS, "Dataset (flags/<method>_<dataset>.cfg).")
flags.DEFINE_integer(
    "train_steps",
    3000,
    "Training steps, the same for every method (the 2-Stage "
    "VAE's first stage; its second stage trains after, as its flagfile says).",
)
flags.DEFINE_integer(
    "epochs",
    0,
    "Train for this many epochs instead of --train_steps: steps = epochs x "
    "(training images // the flagfile's batch size), as train.py --epochs counts them.",
)
flags.DEFINE_integer(
    "fid_every",
    0,
    "FID every N training steps (train.py --fid_every, prior or the "
    "method's own sampler); each run's curve goes in results.json and fid_curves.png, "
    "and a checkpoint is kept at every point (evaluate.py --checkpoint_step). 0: none.",
)
flags.DEFINE_integer("fid_samples", 5000, "Generated (and real test) images per FID of the curves.")
flags.DEFINE_list(
    "extra_results",
    [],
    "results.json files of the same command with other --seed: their "
    "curves join the plot (a band from the lowest to the highest FID per step).",
)
flags.DEFINE_integer("init_steps", 1000, "Warm-up steps for the methods that have one (LPGA, LVPGA).")
flags.DEFINE_string(
    "runs_dir", os.path.join("runs", "results"), "Run dirs: <runs_dir>/<method> (--protocol=fair: runs/fair)."
)
flags.DEFINE_string(
    "docs_dir", os.path.join("docs", "results"), "Where the table, JSON and PNGs go (--protocol=fair: docs/fair)."
)
flags.DEFINE_integer("num_samples", 10000, "Samples per draw for FID/KID.")
flags.DEFINE_integer("draws", 3, "Draws of --num_samples samples (mean and std over draws).")
flags.DEFINE_string("classifier", "", "Domain classifier for the features (default: evaluate.py's).")
flags.DEFINE_string("stats_cache", "", "Real-statistics cache dir (default: evaluate.py's).")
flags.DEFINE_string("data_dir", "", "Data directory (default: the dataset's local copy).")
flags.DEFINE_integer("seed", 0, "Training seed (train.py --seed), to see how much a retrained model moves.")
# "own": each method's own generative model (config.default_sampler): the prior, but the 2-Stage
# VAE's second stage, so one column compares every method as its paper samples it.
TABLE_SAMPLERS = ("own",) + SAMPLERS
flags.DEFINE_list(
    "samplers",
    ["prior"],
    "Latent samplers each run is evaluated with "
    f"({', '.join(TABLE_SAMPLERS)}; own: the method's own, the prior but for the 2-Stage VAE); "
    "the table has FID and KID columns for each.",
)
flags.register_validator(
    "methods",
    lambda v: bool(v) and set(v) <= set(METHODS),
    message=f"--methods must be a subset of {','.join(METHODS)}",
)
for _name in ("train_steps", "num_samples", "draws"):
    flags.register_validator(_name, lambda v: v > 0, message=f"--{_name} must be positive")
for _name in ("epochs", "fid_every"):
    flags.register_validator(_name, lambda v: v >= 0, message=f"--{_name} must be >= 0")
flags.register_validator("fid_samples", lambda v: v >= 2, message="--fid_samples must be >= 2")
flags.register_validator("init_steps", lambda v: v >= 0, message="--init_steps must be >= 0")
flags.register_validator(
    "samplers",
    lambda v: bool(v) and set(v) <= set(TABLE_SAMPLERS) and len(set(v)) == len(v),
    message=f"--samplers must be distinct names from {','.join(TABLE_SAMPLERS)}",
)
# The fair comparison (pga_tf/tools/comparison.py): one optimiser, a learning rate chosen on held-out
# training images, several seeds. Its flags below; --methods, --dataset, --num_samples, --draws,
# --fid_every (default 1000 there), --fid_samples, --init_steps and the feature flags apply too.
flags.DEFINE_enum(
    "protocol",
    "reference",
    ("reference", "fair"),
    "reference: each method's own "
    "flagfile settings (docs/results*/); fair: Adam for every method at a learning rate "
    "chosen on a validation split, --seeds seeds, intervals (docs/fair/).",
)
flags.DEFINE_list(
    "lr_grid",
    ["3e-4", "1e-3"],
    "--protocol=fair: Adam learning rates tried per method (the grid grows by one point when an end wins).",
)
flags.DEFINE_integer("holdout", 10000, "--protocol=fair: training images held out for the selection.")
flags.DEFINE_integer("select_steps", 3000, "--protocol=fair: training steps of each selection run.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "--protocol=fair: seeds of the final runs (the short budget's rows).")
flags.DEFINE_list(
    "long_seeds",
    ["0", "1"],
    "--protocol=fair: the seeds that train the long budget (the others train --short_steps only).",
)
flags.DEFINE_integer(
    "short_steps",
    3000,
    "--protocol=fair: the shorter budget's steps (a long run's rows come from its checkpoint at that step).",
)
flags.DEFINE_integer(
    "jobs", 1, "--protocol=fair: units run at once, job i pinned to CPU core i (taskset) at low priority (nice 19)."
)
flags.DEFINE_list("cores", [], "--protocol=fair: the CPU cores the --jobs run on (default 0 .. jobs-1).")
flags.DEFINE_integer("max_units", 0, "--protocol=fair: stop after this many units (0: all).")
flags.DEFINE_list(
    "unit_kinds",
    list(comparison.UNIT_KINDS),
    "--protocol=fair: the kinds of unit to run (select: a learning-rate selection run; seed: a "
    "final run of the long budget; short: a short-budget run of its own). A unit cut short is "
    "lost, so with less time left than a long run takes, --unit_kinds=short finishes short ones.",
)
flags.register_validator(
    "unit_kinds",
    lambda v: bool(v) and set(v) <= set(comparison.UNIT_KINDS),
    message=f"--unit_kinds must be a subset of {','.join(comparison.UNIT_KINDS)}",
)
flags.DEFINE_string(
    "results_md",
    os.path.join("docs", "RESULTS.md"),
    "--protocol=fair: the document whose fair-comparison section (between its markers) is rewritten; '' for none.",
)
flags.DEFINE_string(
    "readme",
    "README.md",
    "--protocol=fair: the README whose headline block (between its markers) is rewritten with "
    "--results_md; '' for none.",
)
flags.DEFINE_boolean("report_only", False, "--protocol=fair: write the section from results.json, run nothing.")
flags.register_validator("jobs", lambda v: v >= 1, message="--jobs must be >= 1")


def _usable_cores() -> list[int]:
    """The CPU cores this process may run on (taskset -c takes only these)."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))


flags.register_multi_flags_validator(
    ["jobs", "cores"],
    lambda f: (
        all(c.isdigit() for c in f["cores"])
        and {int(c) for c in f["cores"] or range(f["jobs"])} <= set(_usable_cores())
    ),
    message=f"--cores must be core numbers this machine lets it use ({','.join(map(str, _usable_cores()))}); "
    "without --cores, --jobs runs on cores 0 .. jobs-1",
)
flags.register_validator(
    "lr_grid",
    lambda v: bool(v) and all(_positive_float(x) for x in v),
    message="--lr_grid must be positive finite numbers",
)
flags.register_validator(
    "seeds",
    lambda v: bool(v) and all(x.lstrip("-").isdigit() for x in v) and len(set(v)) == len(v),
    message="--seeds must be distinct integers",
)
flags.register_multi_flags_validator(
    ["seeds", "long_seeds"],
    lambda f: (
        bool(f["long_seeds"])
        and len(set(map(_int_or_none, f["long_seeds"]))) == len(f["long_seeds"])
        and set(map(_int_or_none, f["long_seeds"])) <= set(map(_int_or_none, f["seeds"])) - {None}
    ),
    message="--long_seeds must be distinct seeds among --seeds",
)
cli.forbid_flag_like_values()
FLAGS = flags.FLAGS


def _int_or_none(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _positive_float(text: str) -> bool:
    try:
        return math.isfinite(float(text)) and float(text) > 0
    except ValueError:
        return False


class ResultsError(Exception):
    """A child command failed; the message names it and its log."""


def checkpoint_step(run_dir: str) -> int:
    """Step of the run's newest complete checkpoint on disk (runs.latest_step), or -1 if none."""
    step = runs.latest_step(run_dir)
    return -1 if step is None else step


def final_step(run_dir: str, train_steps: int) -> int:
    """The step a run trained for `train_steps` ends at: train_steps, plus the 2-Stage VAE's
    second stage (read from the run's config.json; without one the run is not trained)."""
    cfg = config_lib.load(run_dir)
    return train_steps + (config_lib.later_steps(cfg, train_steps) if cfg is not None else 0)


def _run(args: list[str], log_path: str, what: str, core: int | None = None) -> float:
    """Runs `python <args>` in the repo with output to log_path; its wall time in seconds. With
    `core`, pinned to that CPU core (taskset) at the lowest priority (nice 19), so that two
    jobs share a 2-core machine without moving between cores."""
    t0 = time.time()
    prefix = (
        ["nice", "-n", "19"] + (["taskset", "-c", str(core)] if shutil.which("taskset") else [])
        if core is not None
        else []
    )
    with open(log_path, "w") as log:
        proc = subprocess.run([*prefix, sys.executable, *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        with open(log_path, encoding="utf-8", errors="replace") as f:  # a child's bytes, whatever they are
            lines = [line.strip() for line in f if line.strip()]
        last = next((line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else "")
        raise ResultsError(f"{what} failed (exit {proc.returncode}): {last} [log: {log_path}]")
    return time.time() - t0


def _feature_args() -> list[str]:
    return (
        ([f"--classifier={FLAGS.classifier}"] if FLAGS.classifier else [])
        + ([f"--stats_cache={FLAGS.stats_cache}"] if FLAGS.stats_cache else [])
        + ([f"--data_dir={FLAGS.data_dir}"] if FLAGS.data_dir else [])
    )


def stage1_steps(method: str) -> int:
    """The training steps of `method` (its first stage for the 2-Stage VAE): --train_steps, or
    with --epochs, epochs x (training images // the flagfile's batch size), train.py's count."""
    if not FLAGS.epochs:
        return FLAGS.train_steps
    from pga_tf import data  # TensorFlow loads here for TFDS data only, to count the training images

    batch_size = config_lib.Config.batch_size
    path = os.path.join(ROOT, "flags", f"{method}_{FLAGS.dataset}.cfg")
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ResultsError(f"cannot read the flagfile {path} ({e}); restore it (`git checkout -- flags/`)") from None
    for line in lines:
        if line.strip().startswith("--batch_size="):
            value = line.strip().split("=", 1)[1]
            if not value.isdigit() or int(value) < 1:
                raise ResultsError(f"{path} has --batch_size={value}, not a positive integer; restore it")
            batch_size = int(value)
    return FLAGS.epochs * (data.num_examples(FLAGS.dataset, "train", FLAGS.data_dir or None) // batch_size)


def train_and_evaluate(method: str, print_fn=print) -> dict:
    run_dir = os.path.abspath(os.path.join(FLAGS.runs_dir, method))
    timing_path = run_dir + ".timing.json"
    timing = _timing(timing_path) if os.path.lexists(timing_path) else {}
    steps = stage1_steps(method)
    saved = config_lib.load(run_dir)
    if saved is not None and saved.seed != FLAGS.seed:
        raise ResultsError(
            f"{run_dir} holds a run with --seed={saved.seed}, not {FLAGS.seed}; give each seed its own --runs_dir"
        )
    train = [
        "train.py",
        f"--flagfile=flags/{method}_{FLAGS.dataset}.cfg",
        f"--train_steps={steps}",
        f"--sample_every={steps}",
        "--noexport",
        f"--run_dir={run_dir}",
        f"--seed={FLAGS.seed}",
    ] + ([f"--data_dir={FLAGS.data_dir}"] if FLAGS.data_dir else [])
    if methods_lib.get(method).defaults.get("init_steps", 0) > 0:
        train.append(f"--init_steps={FLAGS.init_steps}")
    if FLAGS.fid_every:
        # A checkpoint at every point of the curve, all kept: any point can be evaluated
        # afterwards in full (evaluate.py --checkpoint_step, e.g. both samplers at 3000 steps).
        # (4 x: room for the 2-Stage VAE's second stage, twice the first by its flagfiles.)
        keep = 4 * steps // FLAGS.fid_every + 2
        train += [
            f"--fid_every={FLAGS.fid_every}",
            f"--fid_samples={FLAGS.fid_samples}",
            f"--ckpt_every={FLAGS.fid_every}",
            f"--keep_checkpoints={keep}",
        ] + [a for a in _feature_args() if not a.startswith("--data_dir=")]
    if checkpoint_step(run_dir) >= final_step(run_dir, steps):
        print_fn(f"{method}: {run_dir} is trained to step {checkpoint_step(run_dir)}; not training")
    else:
        print_fn(f"{method}: python {' '.join(train)}")
        timing = {
            "train_seconds": _run(train, run_dir + ".train.log", f"train.py ({method})"),
            "train_command": "python " + " ".join(train),
            "load_after_train": os.getloadavg()[0],
        }
        jsonfile.write(timing_path, timing, indent=2)
    reports, evals = {}, timing.get("eval", {})
    timing["eval"] = {}
    os.makedirs(FLAGS.docs_dir, exist_ok=True)
    for column in FLAGS.samplers:
        sampler = default_sampler(method) if column == "own" else column
        suffix = sampler_suffix(sampler)
        evaluate = [
            "evaluate.py",
            f"--run_dir={run_dir}",
            f"--sampler={sampler}",
            f"--num_samples={FLAGS.num_samples}",
            f"--draws={FLAGS.draws}",
        ] + _feature_args()
        command = "python " + " ".join(evaluate)
        report_path = eval_report_path(run_dir, sampler)
        # (Keyed by the sampler, so "own" and the sampler it stands for share one evaluation;
        # timings written before that were keyed by the column.)
        done = timing["eval"].get(sampler) or evals.get(sampler) or evals.get(column) or {}
        if _reusable(done, command, report_path, checkpoint_step(run_dir), sampler):
            print_fn(f"{method}: {report_path} is {command!r} of step {checkpoint_step(run_dir)}; not evaluating")
            timing["eval"][sampler] = done
        else:
            print_fn(f"{method}: {command}")
            seconds = _run(evaluate, f"{run_dir}.eval{suffix}.log", f"evaluate.py --sampler={sampler} ({method})")
            timing["eval"][sampler] = {"seconds": seconds, "command": command}
            jsonfile.write(timing_path, timing, indent=2)
        reports[column] = jsonfile.read(
            report_path, f"evaluate.py wrote it; see {run_dir}.eval{suffix}.log", ResultsError
        )
        # Named by the sampler, not the column: the 2-Stage VAE's own grid is samples-two_stage.
        shutil.copyfile(
            reports[column]["grids"]["samples"], os.path.join(FLAGS.docs_dir, f"{method}_samples{suffix}.png")
        )
    first = default_sampler(method) if FLAGS.samplers[0] == "own" else FLAGS.samplers[0]
    shutil.copyfile(
        reports[FLAGS.samplers[0]]["grids"]["interpolations"],
        os.path.join(FLAGS.docs_dir, f"{method}_interpolations.png"),
    )
    timing["eval_seconds"] = sum(e["seconds"] for e in timing["eval"].values())
    timing["eval_command"] = timing["eval"][first]["command"]
    # "report" is the first sampler's (the prior's by default), as before samplers were named.
    result = {"report": reports[FLAGS.samplers[0]], "reports": reports, "timing": timing, "train_steps": steps}
    if FLAGS.fid_every:
        result["curve"] = curves.read(os.path.join(run_dir, "tb"))
    return result


def _reusable(done: dict, command: str, report_path: str, step: int, sampler: str) -> bool:
    """Whether the report at report_path is what `command` would write now: the same command
    made it (timing.json says so), of the run's current checkpoint, and it still holds that
    command's sampler, sample count and draws (an evaluate.py run by hand since, with other flags,
    overwrites the same file). That its features are the table's is checked once for all
    (check_features)."""
    if done.get("command") != command or not os.path.exists(report_path):
        return False
    try:
        report = jsonfile.read(report_path, "")
    except ValueError:  # damaged since: evaluated again, which writes it afresh
        return False
    fid, sampler_there, grids = report.get("fid"), report.get("sampler"), report.get("grids")
    return (
        isinstance(fid, dict)
        and isinstance(sampler_there, dict)
        and isinstance(grids, dict)
        and all(isinstance(grids.get(g), str) for g in ("samples", "interpolations"))
        and report.get("step") == step
        and sampler_there.get("kind") == sampler
        and fid.get("num_generated") == FLAGS.num_samples
        and fid.get("draws") == FLAGS.draws
    )


def _timing(path: str) -> dict:
    """<run_dir>.timing.json: the run's train time and the evaluations made of it.

    Raises:
      ResultsError: the file is damaged (then deleting it costs the evaluations, not the run).
    """
    fix = (
        "this tool writes it beside the run; delete it and run again (the trained run is kept, "
        "its evaluations are made again and its train time shows as –)"
    )
    timing = jsonfile.read(path, fix, ResultsError)
    seconds, evals = timing.get("train_seconds", 0), timing.get("eval", {})
    if not jsonfile.is_number(seconds):
        raise ResultsError(f"{path} has train_seconds {json.dumps(seconds)}, not a number; {fix}")
    if not isinstance(evals, dict) or not all(
        isinstance(e, dict) and isinstance(e.get("command"), str) and jsonfile.is_number(e.get("seconds"))
        for e in evals.values()
    ):
        raise ResultsError(f"{path} has no 'eval' object of one {{command, seconds}} object per sampler; {fix}")
    return timing


def check_features(results: dict, baselines: dict) -> None:
    """Every report must use the baselines' feature network (the same checksum): FIDs from two
    classifiers are not comparable, and a reused report may predate a retrained one."""
    want = baselines["features"].get("checksum")
    for method, r in results.items():
        for column, report in r["reports"].items():
            got = report["features"].get("checksum")
            if got != want:
                raise ResultsError(
                    f"{method}'s {column} report ({report['features'].get('path', '?')}, "
                    f"checksum {str(got)[:12]}) used other features than the baselines "
                    f"({str(want)[:12]}); remove {report['run_dir']}/eval and run again"
                )


def _suffix(column: str) -> str:
    """A table column's suffix in headers: none for the prior and for "own"."""
    return "" if column == "own" else sampler_suffix(column)


def _pm(entry: dict, digits: int) -> str:
    if entry.get("value") is None:
        return "–"
    std = entry.get("std")
    return f"{entry['value']:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def table(results: dict, baselines: dict, samplers: list[str] = ("prior",)) -> str:
    """The markdown table: one row per method, then the floor and ceiling rows. FID and KID have
    one column per sampler (FID-<features>[-<sampler>], no suffix for the prior; "own sampler":
    each method's own, the prior but for the 2-Stage VAE's second stage)."""
    fid_name = baselines["features"]["name"]
    head_of = lambda s: " (own sampler)" if s == "own" else _suffix(s)  # noqa: E731
    fids = " | ".join(f"FID-{fid_name}{head_of(s)}" for s in samplers)
    kids = " | ".join(f"KID-{fid_name}{head_of(s)}" for s in samplers)
    head = (
        f"| method | {fids} | {kids} | rec. MSE | latent NLL (nats) | "
        "exact log\\|det J_h\\| | training estimate (minus exact) | train time | eval time |"
    )
    rows = [head, "|" + "---|" * (7 + 2 * len(samplers))]
    for method, r in results.items():
        rep, t = r["report"], r["timing"]
        reports = r.get("reports", {samplers[0]: rep})
        fid_cells = " | ".join(_pm(reports[s]["fid"], 1) for s in samplers)
        kid_cells = " | ".join(_pm(reports[s]["kid"], 3) for s in samplers)
        nll = rep["latent_nll"]
        if nll:
            fd = nll["finite_difference"][f"{method}_direction"]
            like = (
                f"{nll['nll_exact']['mean']:.1f} | {nll['log_det_exact']['mean']:.2f} | "
                f"{fd['log_det']['mean']:.2f} ({fd['minus_exact']['mean']:+.2f})"
            )
        else:
            like = "– | – | –"
        train_time = f"{t['train_seconds'] / 60:.1f} min" if "train_seconds" in t else "–"
        rows.append(
            f"| {label(method)} | {fid_cells} | {kid_cells} | "
            f"{rep['reconstruction']['mean']:.4f} | {like} | {train_time} | {t['eval_seconds']:.0f} s |"
        )
    for name, row_name in (("floor", "real train images (floor)"), ("ceiling", "Gaussian noise (ceiling)")):
        b = baselines[name]
        # The floor and ceiling do not sample codes: the same value under every sampler column.
        cells = " | ".join([_pm(b["fid"], 2)] * len(samplers) + [_pm(b["kid"], 3)] * len(samplers))
        rows.append(f"| {row_name} | {cells} | – | – | – | – | – | – |")
    return "\n".join(rows) + "\n"


def extra_curves() -> list[tuple[int, dict]]:
    """(seed, {method: curve}) of each --extra_results file, checked to be the same command with
    another seed (the same dataset, budget and curve settings) and to hold curves: read before
    any training, so a wrong file is refused now and not after hours of runs.

    Raises:
      ResultsError: a file is missing or damaged, holds no curves of the shape this tool
        writes, or is another command's or another seed's than it should be.
    """
    out, seeds = [], {FLAGS.seed}
    for path in FLAGS.extra_results:
        fix = "--extra_results takes results.json files this tool wrote (in its --docs_dir) with another --seed"
        other = jsonfile.read(path, fix, ResultsError)
        mine = {
            "dataset": FLAGS.dataset,
            "train_steps": FLAGS.train_steps,
            "epochs": FLAGS.epochs,
            "fid_every": FLAGS.fid_every,
            "fid_samples": FLAGS.fid_samples,
        }
        differ = [f"--{k} {other.get(k)!r} there, {v!r} here" for k, v in mine.items() if other.get(k) != v]
        if differ:
            raise ResultsError(f"--extra_results {path} is not this command with another seed ({'; '.join(differ)})")
        seed, runs = other.get("seed"), other.get("methods")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ResultsError(f"{path} has seed {json.dumps(seed)}, not an integer; {fix}")
        if seed in seeds:
            raise ResultsError(f"--extra_results {path} has seed {seed}, which is already plotted")
        seeds.add(seed)
        if not isinstance(runs, dict) or not all(isinstance(r, dict) for r in runs.values()):
            raise ResultsError(f"{path} has no 'methods' object of one object per method; {fix}")
        curves_there = {m: r["curve"] for m, r in runs.items() if r.get("curve")}
        for m, curve in curves_there.items():
            if not curves.well_formed(curve):
                raise ResultsError(
                    f"{path} has a curve of {m!r} without equal-length 'steps' and 'fid' lists of numbers; {fix}"
                )
        out.append((seed, curves_there))
    return out


def curve_section(results: dict, fid_name: str, extra: list[tuple[int, dict]] = ()) -> str:
    """fid_curves.png (with `extra`, the --extra_results seeds' curves, extra_curves) and a
    table of the curves' values."""
    seeds = [(FLAGS.seed, {m: r["curve"] for m, r in results.items() if r.get("curve")})]
    seeds += [(seed, {m: c for m, c in curves_there.items() if m in results}) for seed, curves_there in extra]
    runs = {m: [c[m] for _, c in seeds if m in c] for m in results if any(m in c for _, c in seeds)}
    if not runs:
        return "\nNo FID curve was recorded (train.py --fid_every wrote none).\n"
    labels = {label(m): c for m, c in runs.items()}
    steps_per_epoch = stage1_steps(next(iter(runs))) // FLAGS.epochs if FLAGS.epochs else 0
    marks = {f"{label(m)}: phase 2 starts": stage1_steps(m) for m in runs if methods_lib.get(m).later_phases}
    seed_list = ", ".join(str(seed) for seed, _ in seeds)
    curves.plot(
        labels,
        os.path.join(FLAGS.docs_dir, "fid_curves.png"),
        epoch_steps=steps_per_epoch,
        marks=marks,
        title=f"FID-{fid_name} of {FLAGS.fid_samples} samples every {FLAGS.fid_every} steps, "
        f"{FLAGS.dataset}, seed(s) {seed_list}; z ~ N(0,I) (the 2-Stage VAE's too until "
        "its second stage trains, after the first's steps)",
    )
    steps = sorted({s for cs in runs.values() for c in cs for s in c["steps"]})
    rows = ["| method | " + " | ".join(str(s) for s in steps) + " |", "|---|" + "---|" * len(steps)]
    for m in runs:
        # Only the seeds this method was run with: a method with one seed shows plain values.
        by_seed = [dict(zip(c[m]["steps"], c[m]["fid"])) for _, c in seeds if m in c]
        cells = [" / ".join(f"{b[s]:.1f}" if s in b else "–" for b in by_seed) for s in steps]
        rows.append(f"| {label(m)} | " + " | ".join(cells) + " |")
    several = [
        f"{label(m)} seeds {' / '.join(str(s) for s, c in seeds if m in c)}"
        for m in runs
        if sum(m in c for _, c in seeds) > 1
    ]
    which = f"seed {FLAGS.seed}" + (f"; {', '.join(several)}" if several else "")
    return (
        "\n![FID against training steps](fid_curves.png)\n\nFID-"
        + fid_name
        + f" of {FLAGS.fid_samples} samples at each step ({which}):\n\n"
        + "\n".join(rows)
        + "\n"
    )


def fair(say) -> None:
    """--protocol=fair: pga_tf/tools/comparison.py's units, then its section."""
    from pga_tf.tools import comparison_report

    runs_dir, docs_dir = _dirs()
    methods = tuple(FLAGS.methods) if FLAGS["methods"].present else METHODS
    protocol = comparison.Protocol(
        methods=methods,
        dataset=FLAGS.dataset,
        lr_grid=tuple(float(x) for x in FLAGS.lr_grid),
        holdout=FLAGS.holdout,
        select_steps=FLAGS.select_steps,
        steps=stage1_steps(methods[0])
        if FLAGS.epochs
        else (FLAGS.train_steps if FLAGS["train_steps"].present else 9370),
        short_steps=FLAGS.short_steps,
        seeds=tuple(sorted(int(x) for x in FLAGS.seeds)),
        long_seeds=tuple(sorted(int(x) for x in FLAGS.long_seeds)),
        init_steps=FLAGS.init_steps,
        fid_every=FLAGS.fid_every or 1000,
        fid_samples=FLAGS.fid_samples,
        num_samples=FLAGS.num_samples,
        draws=FLAGS.draws,
    )
    path = os.path.join(docs_dir, comparison.RESULTS_FILE)
    if FLAGS.report_only and not os.path.lexists(path):
        raise ResultsError(
            f"--report_only: no {path} yet; run the protocol first (the same command without "
            "--report_only), or give the --docs_dir that holds one"
        )
    if os.path.exists(path):
        # Written back at once, so a file from an older protocol version carries what it was
        # migrated to before anything reads it (the report included).
        try:
            comparison.save_state(comparison.load_state(path, protocol), path)
        except ValueError as e:  # results.json of another protocol
            raise ResultsError(str(e)) from None
    if not FLAGS.report_only:
        try:
            comparison.run(
                protocol,
                runs_dir,
                docs_dir,
                _run,
                jobs=FLAGS.jobs,
                feature_args=tuple(_feature_args()),
                data_dir=FLAGS.data_dir,
                log=say,
                max_units=FLAGS.max_units,
                cores=tuple(int(c) for c in FLAGS.cores),
                kinds=tuple(FLAGS.unit_kinds),
            )
        except ValueError as e:  # results.json of another protocol
            raise ResultsError(str(e)) from None
    try:
        path = comparison_report.write(
            os.path.join(docs_dir, comparison.RESULTS_FILE), docs_dir, runs_dir, FLAGS.results_md, FLAGS.readme
        )
    except ValueError as e:  # a damaged results.json, or none yet (--report_only before any unit)
        raise ResultsError(str(e)) from None
    say(f"fair comparison: {path}")


def _dirs() -> tuple[str, str]:
    """(runs dir, docs dir): the flags', or with --protocol=fair and a flag left at its default,
    runs/fair and docs/fair, so the two protocols never share a directory."""
    if FLAGS.protocol != "fair":
        return FLAGS.runs_dir, FLAGS.docs_dir
    runs_dir = os.path.join("runs", "fair") if FLAGS.runs_dir == FLAGS["runs_dir"].default else FLAGS.runs_dir
    docs_dir = os.path.join("docs", "fair") if FLAGS.docs_dir == FLAGS["docs_dir"].default else FLAGS.docs_dir
    return runs_dir, docs_dir


def _output_problem() -> str | None:
    """Why an output flag cannot be written, or None: the run and docs dirs, and the documents
    --protocol=fair splices (a missing one named on the command line is refused, not skipped)."""
    for flag, path in zip(("runs_dir", "docs_dir"), _dirs()):
        problem = config_lib.output_path_problem(flag, path, directory=True)
        if problem:
            return problem
    if FLAGS.protocol != "fair":
        return None
    for flag in ("results_md", "readme"):
        path = FLAGS[flag].value
        if not path:
            continue
        if os.path.isdir(path):
            return f"--{flag}={path} is a directory; give the Markdown file (or '' for none)"
        if FLAGS[flag].present and not os.path.exists(path):
            return f"--{flag}={path} does not exist; give an existing Markdown file (or '' for none)"
    return None


def main(argv):
    if len(argv) > 1:
        cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
    say = lambda line: print(line, flush=True)  # noqa: E731
    from pga_tf import data

    problem = _output_problem()
    if problem:  # found now, not when the report is written after hours of runs
        cli.fail(problem)
    try:  # each child would say it too, but only after this has made its dirs
        for split in () if FLAGS.report_only else ("train", "test"):
            data.check(FLAGS.dataset, split, FLAGS.data_dir or None)
    except data.DataError as e:
        cli.fail(str(e))
    if FLAGS.protocol == "fair":
        return fair(say)
    extra = extra_curves()  # before anything is trained or written
    for method in FLAGS.methods:  # each method's files too, not after the methods before it trained
        run_dir = os.path.abspath(os.path.join(FLAGS.runs_dir, method))
        config_lib.load(run_dir)
        if os.path.lexists(run_dir + ".timing.json"):
            _timing(run_dir + ".timing.json")
    os.makedirs(FLAGS.runs_dir, exist_ok=True)
    os.makedirs(FLAGS.docs_dir, exist_ok=True)
    t0 = time.time()
    results = {m: train_and_evaluate(m, say) for m in FLAGS.methods}
    base_out = os.path.abspath(os.path.join(FLAGS.runs_dir, f"baselines_{FLAGS.dataset}.json"))
    base = [
        "evaluate.py",
        "--baselines",
        f"--dataset={FLAGS.dataset}",
        f"--num_samples={FLAGS.num_samples}",
        f"--draws={FLAGS.draws}",
        f"--out={base_out}",
    ] + _feature_args()
    say(f"baselines: python {' '.join(base)}")
    base_seconds = _run(base, base_out[:-5] + ".log", "evaluate.py --baselines")
    baselines = jsonfile.read(base_out, f"evaluate.py --baselines wrote it; see {base_out[:-5]}.log", ResultsError)
    check_features(results, baselines)
    text = table(results, baselines, FLAGS.samplers)
    # evaluate.py's warnings (an FID from too few samples) go under the table they qualify.
    reports = [rep for r in results.values() for rep in r.get("reports", {"": r["report"]}).values()]
    warnings = list(dict.fromkeys(w for rep in reports + [baselines] for w in rep.get("warnings", [])))
    for warning in warnings:
        say(f"warning: {warning}")
    text += "".join(f"\n**Warning:** {w}.\n" for w in warnings)
    if FLAGS.fid_every:
        text += curve_section(results, baselines["features"]["name"], extra)
    with open(os.path.join(FLAGS.docs_dir, "table.md"), "w") as f:
        f.write(text)
    summary = {
        "argv": sys.argv,
        "dataset": FLAGS.dataset,
        "train_steps": FLAGS.train_steps,
        "epochs": FLAGS.epochs,
        "fid_every": FLAGS.fid_every,
        "fid_samples": FLAGS.fid_samples,
        "seed": FLAGS.seed,
        "samplers": FLAGS.samplers,
        "methods": results,
        "baselines": {**baselines, "seconds_wall": base_seconds},
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()},
        "total_seconds": time.time() - t0,
    }
    jsonfile.write(os.path.join(FLAGS.docs_dir, "results.json"), summary, indent=2)
    say(text)
    say(
        f"written to {FLAGS.docs_dir}/ (table.md, results.json, <method>_samples[-<sampler>].png, "
        f"<method>_interpolations.png) in {time.time() - t0:.0f} s"
    )


def run() -> None:
    """`pga-results` and `python -m pga_tf.tools.results` (its flags are defined on import)."""
    cli.run(
        main,
        (ResultsError, comparison.Interrupted, config_lib.ConfigError, OSError),
        doc=__doc__,
        command="python -m pga_tf.tools.results",
    )


if __name__ == "__main__":
    run()
