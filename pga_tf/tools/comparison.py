"""The fair comparison: every method under one optimiser, its learning rate chosen on held-out
training images, several seeds, intervals over seeds, precision and recall.

    python -m pga_tf.tools.results --protocol=fair --jobs=2       # runs what results.json lacks, then the section

The protocol, in the order it runs (each unit is documented train.py / evaluate.py commands run
as child processes, so every figure is what a user gets from those commands):

1. Selection. For each method and each learning rate of the grid: train on the training split
   minus its last `holdout` images (train.py --holdout) for `select_steps` steps with Adam at that
   rate, and score FID of the method's own sampler against the held-out images (evaluate.py
   --real_split=validation). The test split is never looked at. When the best rate is an end of
   the grid, the grid grows by one point past that end (once); the best point is chosen.
2. Seeds. At its chosen rate each method trains on the full training split for `steps` steps
   (10 epochs by default) once per seed of `long_seeds`, with an FID curve (--fid_every) and a
   checkpoint kept at every curve point. Each final checkpoint and the step-`short_steps` one are
   evaluated with each sampler (the method's own and the ex-post GMM): FID, KID, precision,
   recall. The learning rate is constant, so the step-`short_steps` checkpoint is exactly a
   `short_steps` run. The short rows of the other seeds come from `short_steps` runs of their own
   (the long budget needs two seeds, the short one three), and so do all of the 2-Stage VAE's,
   since its second stage must train on that first stage.
3. The report (report()): mean and standard deviation over seeds (each seed's figure the mean over
   its draws), Welch's 95% interval for the difference between the best PGA and each other
   method, the curves with a band over seeds, and a verdict line for each claim of the paper.

Every finished unit is written at once into `results.json` (in the docs dir, kept in the
repository): a later start, on this machine or another, skips what it holds and resumes the
unit in progress from its run dir's checkpoint when that dir survived.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import queue
import re
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

from pga_tf import config as config_lib
from pga_tf import jsonfile, methods
from pga_tf.tools import curves

# The standard 1-3 series of learning rates; the grid extends along it by one point.
LR_SERIES = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
SAMPLERS = ("own", "gmm")  # "own": config.default_sampler of the method
RESULTS_FILE = "results.json"
# train.py's one line when a loss turns NaN/Inf (trainer_lib.NonFiniteLoss): at a learning rate
# that diverges that is a result of the unit (the worst score), not a failure of the protocol.
DIVERGED = "error: non-finite "


@dataclasses.dataclass(frozen=True)
class Protocol:
    """What the fair comparison runs; results.json records it and refuses another one's units."""

    methods: tuple[str, ...]
    dataset: str = "fashion_mnist"
    lr_grid: tuple[float, ...] = (3e-4, 1e-3)
    holdout: int = 10000
    select_steps: int = 3000
    steps: int = 9370  # 10 epochs of Fashion-MNIST at batch 64
    short_steps: int = 3000
    seeds: tuple[int, ...] = (0, 1, 2)
    # The seeds that train the long budget (and give the short rows from their step-short_steps
    # checkpoint); the others train short_steps only.
    long_seeds: tuple[int, ...] = (0, 1)
    init_steps: int = 1000  # for the methods with a warm-up (LPGA, LVPGA), as in the short budgets
    fid_every: int = 1000
    fid_samples: int = 5000
    num_samples: int = 10000
    draws: int = 3

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


UNIT_KINDS = ("select", "seed", "short")


@dataclasses.dataclass(frozen=True)
class Unit:
    """One training run and its evaluations: kind "select" (method, lr), "seed" (method, seed)
    or "short" (a run of the short budget only: a seed outside long_seeds, or the 2-Stage VAE's)."""

    kind: str
    method: str
    lr: float | None = None
    seed: int = 0

    @property
    def key(self) -> str:
        return f"{self.method}/lr={self.lr:g}" if self.kind == "select" else run_key(self.method, self.seed)


def run_key(method: str, seed: int) -> str:
    """The key of (method, seed)'s final run in results.json's "runs" and "short_runs"."""
    return f"{method}/seed={seed}"


def seed_of(key: str) -> int:
    """The seed of a run_key."""
    return int(key.rsplit("=", 1)[1])


# ------------------------------------------------------------------------------ the plan
def grid_extension(scores: dict[float, float], grid: tuple[float, ...]) -> float | None:
    """The learning rate to add when the best of `scores` (lr -> validation FID) is an end of the
    grid tried so far and the grid has not grown past that end yet; None otherwise."""
    tried = sorted(scores)
    best = _best(scores)
    lo, hi = min(grid), max(grid)
    if best == tried[0] and best >= lo:
        step = -1
    elif best == tried[-1] and best <= hi:
        step = 1
    else:
        return None
    i = _series_index(best) + step
    return LR_SERIES[i] if 0 <= i < len(LR_SERIES) else None


def _best(scores: dict[float, float | None]) -> float:
    """The rate with the lowest FID; a diverged one (None) scores worst."""
    return min(scores, key=lambda lr: math.inf if scores[lr] is None else scores[lr])


def _series_index(lr: float) -> int:
    return min(range(len(LR_SERIES)), key=lambda i: abs(math.log(LR_SERIES[i] / lr)))


def chosen_lr(selection: dict[str, dict], grid: tuple[float, ...]) -> float | None:
    """The selected rate of one method (its selection results, keyed by "%g" of the rate), or
    None while a grid point or its extension is still to run."""
    scores = {float(lr): r["fid"] for lr, r in selection.items()}
    if not all(f"{lr:g}" in selection for lr in grid):
        return None
    extra = grid_extension(scores, grid)
    if extra is not None and f"{extra:g}" not in selection:
        return None
    if all(v is None for v in scores.values()):
        return None  # every rate diverged: nothing to choose (the selection table says so)
    return _best(scores)


def pending(protocol: Protocol, state: dict) -> list[Unit]:
    """The units that can run now, in the order they should: selection before seeds, seed 0 of
    every method before seed 1, and so on."""
    out = []
    for m in protocol.methods:
        sel = state["selection"].get(m, {})
        todo = [lr for lr in protocol.lr_grid if f"{lr:g}" not in sel]
        if not todo:
            extra = grid_extension({float(k): r["fid"] for k, r in sel.items()}, protocol.lr_grid)
            todo = [extra] if extra is not None and f"{extra:g}" not in sel else []
        out += [Unit("select", m, lr=lr) for lr in todo]
    for seed in protocol.seeds:
        for m in protocol.methods:
            lr = chosen_lr(state["selection"].get(m, {}), protocol.lr_grid)
            if lr is None:
                continue
            if seed in protocol.long_seeds and run_key(m, seed) not in state["runs"]:
                out.append(Unit("seed", m, lr=lr, seed=seed))
            if short_source(protocol, m, seed) == "short_runs" and run_key(m, seed) not in state["short_runs"]:
                out.append(Unit("short", m, lr=lr, seed=seed))
    return out


def short_source(protocol: Protocol, method: str, seed: int) -> str:
    """Which part of the state holds (method, seed)'s short-budget rows: "runs" (the long run's
    step-short_steps checkpoint) or "short_runs" (a run of its own)."""
    return "runs" if seed in protocol.long_seeds and not _needs_short_run(method) else "short_runs"


def protocol_of(state: dict) -> Protocol:
    """The Protocol a state (results.json) was written by. A file from before `long_seeds` existed
    trained every seed long (load_state migrates such a file when it is run again)."""
    p = dict(state["protocol"])
    p.setdefault("long_seeds", p.get("seeds", []))
    fields = {f.name for f in dataclasses.fields(Protocol)}
    return Protocol(**{k: tuple(v) if isinstance(v, list) else v for k, v in p.items() if k in fields})


def _needs_short_run(method: str) -> bool:
    # A method whose sampler trains after the main steps (the 2-Stage VAE's second stage) cannot
    # take its short rows from the long run's early checkpoint.
    return config_lib.default_sampler(method) != "prior"


# ------------------------------------------------------------------------------ commands
def train_command(protocol: Protocol, unit: Unit, run_dir: str, data_dir: str = "") -> list[str]:
    """train.py's arguments for `unit`: the method's flagfile, then Adam at the unit's rate and
    the unit's budget (flags after the flagfile override it)."""
    steps = {"select": protocol.select_steps, "seed": protocol.steps, "short": protocol.short_steps}[unit.kind]
    args = [
        "train.py",
        f"--flagfile=flags/{unit.method}_{protocol.dataset}.cfg",
        "--optimizer=adam",
        f"--lr={unit.lr:g}",
        f"--train_steps={steps}",
        f"--sample_every={steps}",
        "--noexport",
        f"--run_dir={run_dir}",
        f"--seed={unit.seed}",
    ]
    if methods.get(unit.method).defaults.get("init_steps", 0) > 0:
        args.append(f"--init_steps={protocol.init_steps}")
    if unit.kind == "select":
        args.append(f"--holdout={protocol.holdout}")
    if unit.kind == "seed":
        # A checkpoint at every curve point, all kept (room for a second stage twice as long).
        keep = 4 * steps // protocol.fid_every + 2
        args += [
            f"--fid_every={protocol.fid_every}",
            f"--fid_samples={protocol.fid_samples}",
            f"--ckpt_every={protocol.fid_every}",
            f"--keep_checkpoints={keep}",
        ]
    return args + ([f"--data_dir={data_dir}"] if data_dir else [])


class Interrupted(Exception):
    """A unit's training stopped before its last step (a signal: train.py saves, says so and exits
    0, since a run dir resumes); the unit is not recorded, and a restart resumes it."""


def check_finished(run_dir: str, train: list[str]) -> None:
    """Interrupted unless `run_dir`'s newest checkpoint is at the last step of the run that `train`
    (a train_command) asks for, its method's later phases included."""
    from pga_tf import runs

    main = int(next(a for a in train if a.startswith("--train_steps=")).split("=", 1)[1])
    cfg = config_lib.load(run_dir)
    total = main + (config_lib.later_steps(cfg, main) if cfg is not None else 0)
    reached = runs.latest_step(run_dir)
    if reached is None or reached < total:
        raise Interrupted(
            f"training in {run_dir} stopped at step {reached or 0} of {total} (a signal); "
            "the unit is not recorded: run the same command again to resume it"
        )


def evaluations(protocol: Protocol, unit: Unit) -> list[tuple[str, str, int | None]]:
    """(row budget, sampler, checkpoint step or None for the last) of each evaluation of `unit`."""
    own = config_lib.default_sampler(unit.method)
    if unit.kind == "select":
        return [("select", own, None)]
    samplers = [own if s == "own" else s for s in SAMPLERS]
    if unit.kind == "short":
        return [("short", s, None) for s in samplers]
    rows = [("long", s, None) for s in samplers]
    if not _needs_short_run(unit.method):
        rows += [("short", s, protocol.short_steps) for s in samplers]
    return rows


def evaluate_command(
    protocol: Protocol, unit: Unit, run_dir: str, sampler: str, step: int | None, feature_args: list[str]
) -> list[str]:
    args = [
        "evaluate.py",
        f"--run_dir={run_dir}",
        f"--sampler={sampler}",
        f"--num_samples={protocol.num_samples}",
        "--nll_examples=0",
    ]
    if unit.kind == "select":  # one draw is enough to rank; the held-out images are the real side
        args += ["--draws=1", "--real_split=validation"]
    else:
        args.append(f"--draws={protocol.draws}")
    if step is not None:
        args.append(f"--checkpoint_step={step}")
    return args + feature_args


def summary_of(report: dict) -> dict:
    """The figures a table row needs from one evaluate.py report."""
    return {
        "fid": report["fid"]["value"],
        "fid_std_draws": report["fid"]["std"],
        "kid": report["kid"]["value"],
        "precision": report["precision"]["value"],
        "recall": report["recall"]["value"],
        "step": report["step"],
        "sampler": report["sampler"]["kind"],
        "real_split": report["fid"]["real_split"],
        "features": report["features"].get("checksum"),
    }


# ------------------------------------------------------------------------------ the state
def table_order(names) -> list[str]:
    """`names` in the registry's table order (methods.names()), any it does not know last, by name."""
    known = [m for m in methods.names() if m in set(names)]
    return known + sorted(set(names) - set(known))


# A damaged results.json: how it came to be, and what to do (it is kept in the repository).
_STATE_FIX = (
    "this tool writes it as units finish; restore it (`git checkout -- <it>` for the repository's) "
    "or use another --docs_dir"
)


def read_state(path: str) -> dict:
    """The results.json at `path`, checked to have the shape this tool writes.

    Raises:
      ValueError: the file cannot be read, is not JSON (cut short, emptied), or holds something
        the report could not read (a unit without its evaluations, a figure that is not a number).
    """
    state = jsonfile.read(path, _STATE_FIX)
    problem = state_problem(state)
    if problem:
        raise ValueError(f"{path} {problem}; {_STATE_FIX}")
    return state


def state_problem(state: dict) -> str | None:
    """What in a parsed results.json this tool could not have written (as a phrase that follows
    the file's name), or None: every field the units' bookkeeping and the report read."""

    def not_an_object(what: str, value) -> str:
        return f"has {what} as a JSON {jsonfile.kind(value)}, not an object"

    protocol = state.get("protocol")
    if not isinstance(protocol, dict):
        return "has no 'protocol' object"
    names = protocol.get("methods")
    if not isinstance(names, list) or not all(isinstance(m, str) for m in names):
        return "has no list of method names in 'protocol'"
    unknown = [m for m in names if m not in methods.names()]
    if unknown:
        return f"names method(s) {', '.join(map(repr, unknown))} this installation does not have"
    for key, mine in Protocol(methods=()).to_json().items():
        # A field of the wrong type is damage, not another protocol (which load_state names).
        if key in protocol and key != "methods" and _json_type(protocol[key]) != _json_type(mine):
            return f"has protocol {key!r} {json.dumps(protocol[key])}, not a JSON {jsonfile.kind(mine)}"
    for key in ("selection", "runs", "short_runs"):
        if not isinstance(state.get(key, {}), dict):
            return not_an_object(repr(key), state[key])
    for method, by_lr in state.get("selection", {}).items():
        if not isinstance(by_lr, dict):
            return not_an_object(f"selection {method!r}", by_lr)
        for lr, result in by_lr.items():
            try:
                ok = f"{float(lr):g}" == lr and jsonfile.is_number(float(lr)) and float(lr) > 0
            except ValueError:
                ok = False
            if not ok:
                return f"has selection {method!r} keyed {lr!r}, not a learning rate written as %g"
            if (
                not isinstance(result, dict)
                or "fid" not in result
                or not jsonfile.is_number(result["fid"], null_ok=True)
            ):
                return f"has selection {method!r} at lr {lr} without an 'fid' number (or null: diverged)"
    for key in ("runs", "short_runs"):
        for name, run in state.get(key, {}).items():
            where = f"{key} {name!r}"
            method, _, seed = name.partition("/seed=")
            if not method or not re.fullmatch(r"-?[0-9]+", seed):
                return f"has {where}, not named <method>/seed=<n>"
            if not isinstance(run, dict):
                return not_an_object(where, run)
            if not jsonfile.is_number(run.get("lr")) or (
                key == "runs" and not jsonfile.is_number(run.get("train_seconds"))
            ):
                return f"has {where} without its 'lr'" + (
                    " and 'train_seconds' numbers" if key == "runs" else " number"
                )
            if "train_seconds" in run and not jsonfile.is_number(run["train_seconds"]):
                return f"has {where} with a 'train_seconds' that is not a number"
            evaluations = run.get("evaluations")
            if not isinstance(evaluations, dict) or not all(isinstance(e, dict) for e in evaluations.values()):
                return f"has {where} without an 'evaluations' object of objects"
            for label, figures in evaluations.items():
                for metric in ("fid", "kid", "precision", "recall"):
                    if metric in figures and not jsonfile.is_number(figures[metric], null_ok=True):
                        return f"has {where} {label} {metric} {json.dumps(figures[metric])}, not a number"
            curve = run.get("curve")
            if curve is not None and not curves.well_formed(curve):
                return f"has {where} with a 'curve' that is not equal-length 'steps' and 'fid' number lists"
    machines = state.get("machines", [])
    if not isinstance(machines, list) or not all(
        isinstance(m, dict) and isinstance(m.get("cpu"), str) and jsonfile.is_number(m.get("cpu_count"), null_ok=True)
        for m in machines  # os.cpu_count() may be None
    ):
        return "has a 'machines' entry without a 'cpu' name and a 'cpu_count'"
    return None


def _json_type(value) -> str:
    """jsonfile.kind, with a list's element kinds: [0, 1] and ["0"] differ."""
    if isinstance(value, list):
        return "array of " + ",".join(sorted({jsonfile.kind(v) for v in value}))
    return jsonfile.kind(value)


def load_state(path: str, protocol: Protocol) -> dict:
    """results.json's units so far (a fresh state when there is none); refuses a damaged file
    (read_state) and one written by another protocol, whose units would not be comparable."""
    if not os.path.exists(path):
        return {"protocol": protocol.to_json(), "selection": {}, "runs": {}, "short_runs": {}}
    state = read_state(path)
    theirs = {k: v for k, v in state.get("protocol", {}).items() if k != "methods"}
    if "long_seeds" not in theirs:
        # Written before long_seeds existed, when every seed trained the long budget: the same
        # protocol as ours as long as no seed outside our long_seeds has a run yet.
        ran = {seed_of(key) for key in state.get("runs", {})}
        theirs["long_seeds"] = list(protocol.long_seeds) if ran <= set(protocol.long_seeds) else theirs.get("seeds")
    mine = {k: v for k, v in protocol.to_json().items() if k != "methods"}
    if theirs != mine:
        differ = ", ".join(f"{k} {theirs.get(k)!r} there, {v!r} here" for k, v in mine.items() if theirs.get(k) != v)
        raise ValueError(
            f"{path} holds another protocol's results ({differ}); "
            "give the flags that file was run with, or use another --docs_dir"
        )
    state["protocol"] = protocol.to_json() | {
        "methods": table_order(set(state["protocol"]["methods"]) | set(protocol.methods))
    }
    for key in ("selection", "runs", "short_runs"):
        state.setdefault(key, {})
    return state


def save_state(state: dict, path: str) -> None:
    jsonfile.write(path, state, indent=1, sort_keys=True)


def record(state: dict, unit: Unit, result: dict) -> None:
    """Put a finished unit's result into the state."""
    if unit.kind == "select":
        state["selection"].setdefault(unit.method, {})[f"{unit.lr:g}"] = result
    else:
        state["runs" if unit.kind == "seed" else "short_runs"][unit.key] = result


# ------------------------------------------------------------------------------ running
def run(
    protocol: Protocol,
    runs_dir: str,
    docs_dir: str,
    execute: Callable[[list[str], str, str, int], float],
    jobs: int = 1,
    feature_args: tuple[str, ...] = (),
    data_dir: str = "",
    log: Callable[[str], None] = print,
    max_units: int = 0,
    cores: tuple[int, ...] = (),
    kinds: tuple[str, ...] = UNIT_KINDS,
) -> dict:
    """Runs every pending unit (`jobs` at a time, each on its own CPU core of `cores`, by default
    0 .. jobs - 1), recording each into <docs_dir>/results.json as it finishes; returns the state.

    Args:
      execute: (args, log path, what, core) -> wall seconds; runs `python <args>` (results._run).
      max_units: stop after this many units (0: until nothing is pending).
      kinds: the kinds of unit to run (of UNIT_KINDS), in `pending`'s order; the others wait.
        A unit cut short is lost with its run dir, so a machine with less time left than a long
        run takes can still finish short ones.
    """
    os.makedirs(runs_dir, exist_ok=True)
    os.makedirs(docs_dir, exist_ok=True)
    path = os.path.join(docs_dir, RESULTS_FILE)
    state = load_state(path, protocol)
    state.setdefault("machines", [])
    machine = _machine()
    if machine not in state["machines"]:
        state["machines"].append(machine)
    lock, free = threading.Lock(), queue.Queue()
    for core in (cores or range(jobs))[:jobs]:
        free.put(core)
    running: dict = {}
    done_units = 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        while True:
            with lock:
                todo = [u for u in pending(protocol, state) if u.kind in kinds and u.key + u.kind not in running]
            while todo and len(running) < jobs and (not max_units or done_units + len(running) < max_units):
                unit = todo.pop(0)
                running[unit.key + unit.kind] = pool.submit(
                    _run_unit, protocol, unit, runs_dir, execute, free, list(feature_args), data_dir, log
                )
            if not running:
                break
            finished, _ = wait(list(running.values()), return_when=FIRST_COMPLETED)
            for name, future in list(running.items()):
                if future in finished:
                    del running[name]
                    unit, result = future.result()  # a failed unit stops the run (others finish)
                    with lock:
                        record(state, unit, result)
                        save_state(state, path)
                    done_units += 1
                    log(f"{unit.kind} {unit.key}: done ({result.get('train_seconds', 0) / 60:.1f} min training)")
    return state


def _run_unit(
    protocol: Protocol,
    unit: Unit,
    runs_dir: str,
    execute,
    cores: queue.Queue,
    feature_args: list[str],
    data_dir: str,
    log,
) -> tuple[Unit, dict]:
    core = cores.get()
    try:
        name = {
            "select": f"select/{unit.method}_lr{unit.lr:g}",
            "seed": f"seed{unit.seed}/{unit.method}",
            "short": f"short_seed{unit.seed}/{unit.method}",
        }[unit.kind]
        run_dir = os.path.abspath(os.path.join(runs_dir, name))
        os.makedirs(os.path.dirname(run_dir), exist_ok=True)
        train = train_command(protocol, unit, run_dir, data_dir)
        log(f"{unit.kind} {unit.key} (core {core}): python {' '.join(train)}")
        # train.py resumes an interrupted run dir, and one already at its last step trains nothing.
        t0 = time.time()
        result = {"train_command": "python " + " ".join(train), "lr": unit.lr, "seed": unit.seed}
        try:
            result["train_seconds"] = execute(train, run_dir + ".train.log", f"train.py ({unit.key})", core)
        except Exception as e:  # the executor's error names the command, its last line and its log
            if DIVERGED not in str(e):
                raise
            log(f"{unit.kind} {unit.key}: diverged ({e})")
            return unit, {
                **result,
                "train_seconds": time.time() - t0,
                "diverged": str(e),
                "fid": None,
                "evaluations": {},
            }
        check_finished(run_dir, train)
        # The run's own time over all its starts: a resumed unit's last start is only a part of it.
        spent = curves.train_seconds(os.path.join(run_dir, "tb"))
        if spent is not None:
            result["train_seconds"] = spent
        evals = {}
        for row, sampler, step in evaluations(protocol, unit):
            args = evaluate_command(protocol, unit, run_dir, sampler, step, feature_args)
            seconds = execute(args, f"{run_dir}.eval-{row}-{sampler}.log", f"evaluate.py ({unit.key}, {sampler})", core)
            split = "validation" if unit.kind == "select" else "test"
            report = config_lib.eval_report_path(run_dir, sampler, step, split)
            summary = summary_of(
                jsonfile.read(report, f"evaluate.py wrote it just now; see {run_dir}.eval-{row}-{sampler}.log")
            )
            evals[f"{row}/{sampler}"] = {**summary, "eval_seconds": seconds, "command": "python " + " ".join(args)}
        if unit.kind == "select":
            result.update(evals[f"select/{config_lib.default_sampler(unit.method)}"])
        else:
            result["evaluations"] = evals
            if unit.kind == "seed":
                result["curve"] = curves.read(os.path.join(run_dir, "tb"))
        return unit, result
    finally:
        cores.put(core)


def _machine() -> dict:
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    return {"cpu": model, "cpu_count": os.cpu_count(), "platform": platform.platform()}


def copy_grids(runs_dir: str, docs_dir: str, methods: tuple[str, ...]) -> list[str]:
    """Seed 0's final sample grid of each method (own sampler) into docs_dir; the names copied."""
    copied = []
    for m in methods:
        sampler = config_lib.default_sampler(m)
        src = os.path.join(runs_dir, "seed0", m, "eval", f"samples{config_lib.sampler_suffix(sampler)}.png")
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(docs_dir, f"{m}_samples.png"))
            copied.append(m)
    return copied
