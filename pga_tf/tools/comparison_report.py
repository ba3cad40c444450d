"""The fair comparison's section: tables over seeds, Welch intervals, curves with bands, verdicts.

Reads the results.json that pga_tf/tools/comparison.py writes (nothing here trains or evaluates) and
writes <docs_dir>/table.md, <docs_dir>/fid_curves.png and the same text between the markers
below in docs/RESULTS.md, so the section is regenerated, never edited by hand.

Intervals: for the difference of mean FID between two methods over their seeds, Welch's t
interval (unequal variances; Welch-Satterthwaite degrees of freedom), 95% by default. With three
seeds per method it is wide: a difference whose interval holds 0 is reported as unresolved. The
PGA held against the others is chosen on the validation split (best_pga), not on the test FIDs.
"""

from __future__ import annotations

import math
import os
import re

import numpy as np

from pga_tf import config as config_lib
from pga_tf import jsonfile, methods
from pga_tf.methods import label
from pga_tf.tools import comparison

START, END = "<!-- fair-comparison:start -->", "<!-- fair-comparison:end -->"
# The README's headline block (readme_block), regenerated like the section.
HEADLINE_START, HEADLINE_END = "<!-- fair-headline:start -->", "<!-- fair-headline:end -->"
# The paper's claims, each as (what is claimed, the `claim` of the baselines PGA is held against,
# or None for every baseline, the sampler on both sides, a Method attribute naming the PGAs the
# claim is made for, each held against those baselines besides the best PGA, or ""): "own" is
# each method's own sampler, "gmm" the ex-post GMM for every method. The abstract's VAE claim is
# for the PGAs "combined with VAEs" (VPGA, LVPGA), so each of them answers it, chosen or not.
CLAIMS = (
    ("PGA against the VAE", "vae_baseline", "own", "variational"),
    ("PGA against the other simple-prior models", "simple_prior", "own", ""),
    ("PGA's N(0, I) prior against a learned second-stage prior", "learned_prior", "own", ""),
    ("Every method with the ex-post GMM sampler", None, "gmm", ""),
)
ROWS = (("long", "long budget"), ("short", "short budget"))
SAMPLER_NAMES = {"own": "own sampler", "gmm": "ex-post GMM"}
DATASET_NAMES = {"fashion_mnist": "Fashion-MNIST", "mnist": "MNIST", "cifar10": "CIFAR-10", "celeb_a": "CelebA"}
_NUMBER_WORDS = {0: "no", 1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def welch_interval(a: list[float], b: list[float], level: float = 0.95) -> dict:
    """Welch's t interval for mean(a) - mean(b).

    Args:
      a, b: per-seed values of two methods (at least 2 each).
    Returns:
      {"diff", "low", "high", "df", "level"}; low/high/df None when either side has < 2 values.
    """
    from scipy import stats

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    diff = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "low": None, "high": None, "df": None, "level": level}
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return {"diff": diff, "low": diff, "high": diff, "df": float("inf"), "level": level}
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return {"diff": diff, "low": diff - half, "high": diff + half, "df": float(df), "level": level}


def per_seed(state: dict, method: str, row: str, sampler: str, metric: str = "fid") -> list[float]:
    """One value per seed (each the mean over its draws) of `metric` in `row` ("long"/"short")."""
    protocol = comparison.protocol_of(state)
    name = config_lib.default_sampler(method) if sampler == "own" else sampler
    out = []
    for seed in protocol.seeds:
        kind = comparison.short_source(protocol, method, seed) if row == "short" else "runs"
        run = state[kind].get(comparison.run_key(method, seed))
        value = run and run["evaluations"].get(f"{row}/{name}", {}).get(metric)
        if value is not None:
            out.append(float(value))
    return out


def core_hours(state: dict) -> tuple[float, float]:
    """(training, evaluation) core-hours of every unit results.json holds: each unit ran on one
    core, so the sum of its train.py and evaluate.py wall times is what the protocol has cost."""
    units = [r for sel in state["selection"].values() for r in sel.values()]
    units += [r for key in ("runs", "short_runs") for r in state[key].values()]
    evals = [r for r in units if "evaluations" not in r]  # a selection unit holds its one evaluation
    evals += [e for r in units for e in r.get("evaluations", {}).values()]

    def hours(records: list[dict], key: str) -> float:
        return sum(r[key] for r in records if jsonfile.is_number(r.get(key))) / 3600

    return hours(units, "train_seconds"), hours(evals, "eval_seconds")


def max_draw_spread(state: dict) -> float:
    """The largest standard deviation of FID between the draws of one final run's evaluation."""
    spreads = [
        e["fid_std_draws"]
        for key in ("runs", "short_runs")
        for r in state[key].values()
        for e in r["evaluations"].values()
        if jsonfile.is_number(e.get("fid_std_draws"))
    ]
    return max(spreads, default=0.0)


def _pm(values: list[float], digits: int) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{np.mean(values):.{digits}f} ± {np.std(values, ddof=1):.{digits}f}"


def _diverged(state: dict, method: str, record: dict) -> str:
    """The selection table's cell for a diverged grid point: where it diverged, and whether in a
    later phase (the 2-Stage VAE's second stage trains at its flagfile's rate on the first stage's
    latents, so a first stage at too high a rate can show there)."""
    found = re.search(r"at step (\d+)", record.get("diverged", ""))
    if not found:
        return "diverged"
    step = int(found.group(1))
    later = methods.get(method).later_phases and step > state["protocol"]["select_steps"]
    return f"diverged at step {step}" + (" (second stage)" if later else "")


def selection_table(state: dict) -> str:
    grid = sorted({float(lr) for sel in state["selection"].values() for lr in sel})
    head = "| method | " + " | ".join(f"lr {lr:g}" for lr in grid) + " | chosen |"
    rows = [head, "|---|" + "---|" * (len(grid) + 1)]
    for m in comparison.table_order(state["protocol"]["methods"]):
        sel = state["selection"].get(m, {})
        chosen = comparison.chosen_lr(sel, tuple(state["protocol"]["lr_grid"]))
        cells = [
            (
                "–"
                if f"{lr:g}" not in sel
                else _diverged(state, m, sel[f"{lr:g}"])
                if sel[f"{lr:g}"]["fid"] is None
                else f"{sel[f'{lr:g}']['fid']:.1f}"
            )
            for lr in grid
        ]
        rows.append(
            f"| {label(m)} | " + " | ".join(cells) + f" | {chosen:g} |"
            if chosen
            else f"| {label(m)} | " + " | ".join(cells) + " | (pending) |"
        )
    return "\n".join(rows) + "\n"


def budget_table(state: dict, row: str) -> str:
    head = (
        "| method | lr | seeds | FID (own) | KID (own) | precision (own) | recall (own) | "
        "FID (GMM) | KID (GMM) | precision (GMM) | recall (GMM) | train time |"
    )
    rows = [head, "|---|" + "---|" * 11]
    for m in comparison.table_order(state["protocol"]["methods"]):
        cells = []
        for sampler in ("own", "gmm"):
            cells += [
                _pm(per_seed(state, m, row, sampler, "fid"), 1),
                _pm(per_seed(state, m, row, sampler, "kid"), 3),
                _pm(per_seed(state, m, row, sampler, "precision"), 2),
                _pm(per_seed(state, m, row, sampler, "recall"), 2),
            ]
        runs = [r for k, r in state["runs"].items() if k.startswith(f"{m}/seed=")]
        own_runs = [r for k, r in state["short_runs"].items() if k.startswith(f"{m}/seed=")]
        n = len(per_seed(state, m, row, "own"))
        chosen = comparison.chosen_lr(state["selection"].get(m, {}), tuple(state["protocol"]["lr_grid"]))
        lr = f"{(runs or own_runs)[0]['lr']:g}" if runs or own_runs else f"{chosen:g}" if chosen else "–"
        # A short row read from a long run's checkpoint has no time of its own, so the short
        # budget's time is that of its runs of their own.
        minutes = [r["train_seconds"] / 60 for r in (runs if row == "long" else own_runs) if "train_seconds" in r]
        rows.append(f"| {label(m)} | {lr} | {n} | " + " | ".join(cells) + f" | {_time_range(minutes)} |")
    return "\n".join(rows) + "\n"


def _time_range(minutes: list[float]) -> str:
    """A train-time cell: the range, not a mean (one run beside the test suite can take several
    times another); one figure when the runs round alike; a dash with no run."""
    if not minutes:
        return "–"
    low, high = round(min(minutes)), round(max(minutes))
    return f"{low} min" if low == high else f"{low}–{high} min"


def pga_scores(state: dict) -> dict[str, float]:
    """Validation FID at its chosen rate of every PGA whose rate is chosen, in table order."""
    p = state["protocol"]
    scores = {}
    for m in comparison.table_order(p["methods"]):
        sel = state["selection"].get(m, {})
        lr = comparison.chosen_lr(sel, tuple(p["lr_grid"])) if methods.get(m).perceptual else None
        if lr is not None:
            scores[m] = sel[f"{lr:g}"]["fid"]
    return scores


def best_pga(state: dict) -> tuple[str, float] | None:
    """The PGA held against the other methods, with its validation FID: of the PGAs whose rate is
    chosen, the one with the lowest validation FID at that rate (the selection's score).

    Chosen on the held-out training images like the rates, never on the test split: picking the
    best of three PGAs by the same test FIDs that are then compared would bias every difference
    in PGA's favour (the winner's curse), more so with few seeds. None before any PGA's rate is
    chosen.
    """
    scores = pga_scores(state)
    if not scores:
        return None
    best = min(scores, key=scores.get)
    return best, scores[best]


def differences(state: dict, row: str, sampler: str) -> tuple[str | None, list[dict]]:
    """best_pga's Welch interval against every other method with a result in `row` and `sampler`
    (an empty list while best_pga has none there)."""
    chosen = best_pga(state)
    if chosen is None or not per_seed(state, chosen[0], row, sampler):
        return None, []
    best = chosen[0]
    out = []
    for other in comparison.table_order(state["protocol"]["methods"]):
        theirs = per_seed(state, other, row, sampler)
        if other == best or not theirs:
            continue
        out.append({"against": other, **welch_interval(per_seed(state, best, row, sampler), theirs)})
    return best, out


def best_pga_text(state: dict) -> str:
    ranked = sorted(pga_scores(state).items(), key=lambda kv: kv[1])  # best_pga's pick first
    which = (
        f"{label(ranked[0][0])}; validation FIDs at the chosen rates: "
        + ", ".join(f"{label(m)} {v:.1f}" for m, v in ranked)
        if ranked
        else "none yet: no PGA's rate is chosen"
    )
    return (
        f"The best PGA is the one with the lowest validation FID in the selection above ({which}), "
        "chosen before the test split is looked at: picking the best of the PGAs on the test FIDs "
        "that are then compared would favour PGA in every difference. It rests on one 3000-step run "
        "per PGA, so PGAs a point or two apart there are a toss-up, and another PGA may do better on "
        "the test split (the other PGAs are in the tables above, and against the best one below). "
        "Difference = best PGA minus the other method; Welch's t interval over seeds, "
        "95% for each comparison on its own (not corrected for the several comparisons)."
    )


def _verdict(d: dict, best: str) -> str:
    if d["low"] is None:
        return "too few seeds for an interval"
    if d["high"] < 0:
        return f"{label(best)} better (interval below 0)"
    if d["low"] > 0:
        return f"{label(best)} worse (interval above 0)"
    return "not resolved (interval holds 0)"


def difference_table(state: dict) -> str:
    rows = [
        "| budget | sampler | best PGA | against | FID difference | 95% interval (Welch) | reading |",
        "|---|---|---|---|---|---|---|",
    ]
    for row, name in ROWS:
        for sampler in ("own", "gmm"):
            best, diffs = differences(state, row, sampler)
            for d in diffs:
                interval = f"[{d['low']:+.1f}, {d['high']:+.1f}]" if d["low"] is not None else "–"
                rows.append(
                    f"| {name} | {SAMPLER_NAMES[sampler]} | {label(best)} | {label(d['against'])} | "
                    f"{d['diff']:+.1f} | {interval} | {_verdict(d, best)} |"
                )
    return "\n".join(rows) + "\n"


def verdicts(state: dict) -> str:
    """One bullet per claim of the paper (CLAIMS): per budget, the best PGA's FID difference from
    each method it is held against (and, for a claim made for some PGAs, each of theirs), its
    Welch interval and what that reads as."""
    p = state["protocol"]
    order = comparison.table_order(p["methods"])
    lines = []
    for claim, against, sampler, made_for in CLAIMS:
        others = [m for m in order if not methods.get(m).perceptual and against in (None, methods.get(m).claim)]
        if not others:
            continue
        named = [m for m in order if made_for and methods.get(m).perceptual and getattr(methods.get(m), made_for)]
        parts = []
        for row, budget in (("long", f"{p['steps']} steps"), ("short", f"{p['short_steps']} steps")):
            best, diffs = differences(state, row, sampler)
            found = [d for d in diffs if d["against"] in others]
            if best is None or not found:
                parts.append(f"{budget}: not run yet")
                continue
            said = []
            for d in found:
                said.append(f"{label(best)} − {label(d['against'])} {_said(d, best)}")
                paper = methods.get(d["against"]).paper_sampler
                theirs = per_seed(state, d["against"], row, paper) if paper and paper != sampler else []
                if theirs:
                    e = welch_interval(per_seed(state, best, row, sampler), theirs)
                    said.append(
                        f"{label(best)} with its {SAMPLER_NAMES[sampler]} − {label(d['against'])} with "
                        f"{SAMPLER_NAMES[paper]}, the sampler of its paper, {_said(e, best)}"
                    )
                for pga in (m for m in named if m != best):
                    ours = per_seed(state, pga, row, sampler)
                    e = ours and welch_interval(ours, per_seed(state, d["against"], row, sampler))
                    said.append(f"{label(pga)} − {label(d['against'])} " + (_said(e, pga) if ours else "not run yet"))
            parts.append(f"{budget}: " + "; ".join(said))
        names = ", ".join(label(m) for m in others)
        lines.append(f"- **{claim}** ({names}; {SAMPLER_NAMES[sampler]}). " + ". ".join(parts) + ".")
    return "\n".join(lines) + "\n"


def _said(d: dict, best: str) -> str:
    interval = f" [{d['low']:+.1f}, {d['high']:+.1f}]" if d["low"] is not None else ""
    return f"{d['diff']:+.1f}{interval}, {_verdict(d, best)}"


def _anchor(title: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def later_phases(state: dict) -> str:
    """What the methods with later phases (the 2-Stage VAE's second stage) train beyond the
    budget's steps, read from the steps their evaluations record; "" when none has run."""
    p = state["protocol"]
    out = []
    for m in comparison.table_order(p["methods"]):
        if not methods.get(m).later_phases:
            continue
        said, flagfile = [], ""
        for row, key, steps in (("long", "runs", p["steps"]), ("short", "short_runs", p["short_steps"])):
            for seed in comparison.protocol_of(state).seeds:
                run = state[key].get(comparison.run_key(m, seed))
                step = run and next((e.get("step") for k, e in run["evaluations"].items() if k.startswith(row)), None)
                if jsonfile.is_number(step):
                    args = run.get("train_command", "").split()
                    flagfile = next((a.split("=", 1)[1] for a in args if a.startswith("--flagfile=")), flagfile)
                    said.append(f"{steps} + {int(step) - steps} steps at the {row} budget")
                    break
        if said:
            where = f" ({flagfile})" if flagfile else ""
            out.append(
                f"The {label(m)} trains the budget's steps at the chosen rate and then its later phases (a "
                f"second stage) at its flagfile's settings{where}: " + ", ".join(said) + "."
            )
    return " ".join(out)


def section_title(state: dict) -> str:
    protocol = comparison.protocol_of(state)
    n_long, n_all = len(protocol.long_seeds), len(protocol.seeds)
    seeds = f"{n_all} seeds" if n_long == n_all else f"{n_long} seeds ({n_all} at the short budget)"
    return f"Fair comparison: one optimiser, a learning rate chosen on a validation split, {seeds}"


def readme_block(state: dict, docs_dir: str, results_md: str, readme: str) -> str:
    """The README's headline: the long budget's FID, precision and recall per method (own sampler)
    and its FID with the ex-post GMM, best first by the former, one sample grid and a link to the
    full section; paths relative to `readme`."""
    p = state["protocol"]
    protocol = comparison.protocol_of(state)
    here = os.path.dirname(os.path.abspath(readme))
    rows = []  # (mean FID or inf, method, table line)
    seeds = set()  # how many seeds the methods with a run have
    for m in comparison.table_order(p["methods"]):
        fid = per_seed(state, m, "long", "own")
        if fid:
            seeds.add(len(fid))
        precision, recall = (per_seed(state, m, "long", "own", k) for k in ("precision", "recall"))
        gmm = _pm(per_seed(state, m, "long", "gmm"), 1)
        line = f"| {label(m)} | {_pm(fid, 1)} | {_pm(precision, 2)} | {_pm(recall, 2)} | {gmm} | {len(fid)} |"
        rows.append((float(np.mean(fid)) if fid else math.inf, m, line))
    rows.sort(key=lambda r: r[0])
    counts = sorted(seeds) or [0]
    seed_words = [_NUMBER_WORDS.get(n, str(n)) for n in counts]
    seeds_said = (seed_words[0] if len(seed_words) == 1 else ", ".join(seed_words[:-1]) + " or " + seed_words[-1]) + (
        " seed" if counts == [1] else " seeds"
    )
    section_link = os.path.relpath(os.path.abspath(results_md), here) + "#" + _anchor(section_title(state))
    n_long = len(p["methods"]) * len(protocol.long_seeds)
    done = sum(1 for k in state["runs"] if comparison.seed_of(k) in protocol.long_seeds)
    progress = (
        f"all {n_long} runs of this budget" if done >= n_long else f"{done} of {n_long} runs of this budget done so far"
    )
    phases = later_phases(state)
    text = [
        HEADLINE_START,
        f"{DATASET_NAMES.get(p['dataset'], p['dataset'])}, {p['steps']} steps, every method trained with Adam "
        "at a learning rate chosen on "
        f"{p['holdout']} held-out training images; FID on classifier features against the test split "
        "(lower is better) and improved precision and recall (k = 3) of the same samples, from each method's "
        "own sampler: z ~ N(0, I), or the 2-Stage VAE's second stage. The AE and RAE train no prior, so "
        "N(0, I) is not their generative model (RAE's paper samples from a GMM fitted to the training "
        "codes afterwards); the last FID column gives every method with that ex-post GMM. Mean ± standard "
        f"deviation over seeds ({progress}), best first by the own "
        f"sampler's FID: with {seeds_said} a gap of a few points is within the spread between seeds. "
        + (f"{phases} " if phases else "")
        + f"[The full comparison]({section_link}) has the {p['short_steps']}-step budget, the GMM's "
        "precision and recall, the intervals and the verdicts.",
        "",
        "| method | FID | precision | recall | FID, ex-post GMM | seeds |",
        "|---|---|---|---|---|---|",
        *(line for _, _, line in rows),
        "",
    ]
    best = rows[0][1] if rows and rows[0][0] < math.inf else None
    grid = best and os.path.join(docs_dir, f"{best}_samples.png")
    if grid and os.path.exists(grid):
        text += [f"![{label(best)} samples, seed 0]({os.path.relpath(os.path.abspath(grid), here)})", ""]
    text.append(HEADLINE_END)
    return "\n".join(text) + "\n"


def _splice(path: str, text: str, start: str, end: str, append: bool) -> None:
    """Replace what lies between `start` and `end` in the file at `path` by `text` (which holds
    both markers), or append it when `append` and the markers are missing."""
    with open(path) as f:
        doc = f.read()
    if start in doc and end in doc:
        doc = doc[: doc.index(start)] + text.rstrip("\n") + doc[doc.index(end) + len(end) :]
    elif append:
        doc = doc.rstrip("\n") + "\n\n" + text
    else:
        return
    with open(path + ".tmp", "w") as f:
        f.write(doc)
    os.replace(path + ".tmp", path)


def curves_plot(state: dict, docs_dir: str) -> str | None:
    from pga_tf.tools import curves

    runs = {
        label(m): [r["curve"] for k, r in state["runs"].items() if k.startswith(f"{m}/seed=") and r.get("curve")]
        for m in comparison.table_order(state["protocol"]["methods"])
    }
    runs = {k: v for k, v in runs.items() if v}
    if not runs:
        return None
    path = os.path.join(docs_dir, "fid_curves.png")
    p = state["protocol"]
    marks = {
        f"{label(m)}: phase 2 starts": p["steps"]
        for m in comparison.table_order(p["methods"])
        if methods.get(m).later_phases
    }
    curves.plot(
        runs,
        path,
        title=f"FID of {p['fid_samples']} samples every {p['fid_every']} steps, "
        f"{p['dataset']}, Adam at each method's chosen lr; mean and band (min-max) over seeds",
        marks=marks,
    )
    return path


def section(state: dict, docs_dir: str, base_dir: str | None = None) -> str:
    """The section's Markdown, its links relative to `base_dir` (the directory of the file it goes
    into; default: docs_dir's parent, where RESULTS.md is)."""
    p = state["protocol"]
    protocol = comparison.protocol_of(state)
    long_name = f"{p['steps']} steps"
    base_dir = os.path.abspath(base_dir or os.path.dirname(os.path.abspath(docs_dir)))

    def link(path: str) -> str:
        return os.path.relpath(os.path.abspath(path), base_dir)

    guide = os.path.join(os.path.dirname(os.path.abspath(docs_dir)), "evaluation.md")
    # The link's text names results.json from the repo root (docs/fair/results.json) in either file.
    shown = "/".join((*os.path.abspath(docs_dir).split(os.sep)[-2:], "results.json"))
    n_long, n_all = len(protocol.long_seeds), len(protocol.seeds)
    text = [
        START,
        f"## {section_title(state)}",
        "",
        "Generated by `.venv/bin/python -m pga_tf.tools.results --protocol=fair --jobs=2` "
        f"(pga_tf/tools/comparison.py) from [{shown}]"
        f"({link(os.path.join(docs_dir, 'results.json'))}); do not edit by hand. How to run, resume and "
        f"move it to another machine: [docs/evaluation.md]({link(guide)}#the-fair-comparison).",
        "",
        "- **Optimiser:** Adam (Keras defaults) for all methods, overriding each flagfile's; the "
        "2-Stage VAE's second stage keeps its own Adam at its flagfile's rate. The methods with a "
        f"warm-up (LPGA, LVPGA) switch their latent terms on after {p['init_steps']} steps, not their "
        "reference settings' 3000, so that they act within the short budget. Everything else is each "
        "method's flagfile.",
        f"- **Learning rate:** per method, the best of {', '.join(f'{x:g}' for x in p['lr_grid'])}, grown once by "
        "one point past an end that wins and not again (a rate chosen at the grown end, the table's last "
        "column, may not be the best one further out), "
        f"by FID of its own sampler against {p['holdout']} training "
        f"images held out of training (training on the rest for {p['select_steps']} steps, the 2-Stage VAE "
        f"then its second stage, seed 0, one draw of {p['num_samples']}). The test split is not used for "
        "the choice. The rate chosen at "
        f"{p['select_steps']} steps is kept for the long budget; for the AE and RAE it is chosen on the "
        "N(0, I) prior's FID, though their GMM rows might favour another rate; and rates whose validation "
        "FIDs differ by less than the spread over seeds in the tables below are a toss-up, not a finding.",
        f"- **Final runs:** on the full training split at the chosen rate. Long budget: {long_name}, "
        f"seeds {', '.join(map(str, protocol.long_seeds))}. Short budget: {p['short_steps']} steps, seeds "
        f"{', '.join(map(str, protocol.seeds))}: for seeds {', '.join(map(str, protocol.long_seeds))} read from "
        "the long run's checkpoint at that step (the rate is constant, so it is that run), for the others a "
        "run of its own; the 2-Stage VAE's short rows are all runs of their own (its second stage trains "
        "on that first stage). " + later_phases(state),
        f"- **Scores:** FID/KID of {p['draws']} draws of {p['num_samples']} samples against the test split "
        "(each seed's figure the mean over its draws; the table's ± is the standard deviation over "
        "seeds; between a seed's draws the FID's standard deviation is at most "
        f"{max_draw_spread(state):.1f}), KID as the unscaled squared MMD (not ×1000), and improved "
        "precision/recall (Kynkäänniemi et al. 2019, k = 3) on the same classifier features. Own sampler: "
        "z ~ N(0, I) for every method but the 2-Stage VAE (its second stage); the AE and RAE train no prior, "
        "so for them it is a reference point, and RAE's paper samples with the ex-post GMM (the GMM "
        "columns; the verdicts hold PGA against both).",
        "- **Train time:** wall time of train.py over all of a run's starts (FID curve points included), "
        "on 2-core machines running two units at once beside other work: what a run cost here, not which "
        "method is faster (docs/BENCHMARKS.md times the steps). A cell gives the lowest–highest over a "
        "method's runs; the short budget's counts only its runs of their own (a row read from a long "
        "run's checkpoint has no time of its own; the 2-Stage VAE's includes its second stage).",
        "",
    ]
    n_final = len(p["methods"]) * len(protocol.long_seeds)
    n_short = sum(
        comparison.short_source(protocol, m, seed) == "short_runs" for m in p["methods"] for seed in protocol.seeds
    )
    done = len(state["runs"]) + len(state["short_runs"])
    selected = sum(map(len, state["selection"].values()))
    spent = "{:.1f} core-hours of training and {:.1f} of evaluation".format(*core_hours(state))
    text += [
        f"**Done:** {selected} selection runs and all {done} final runs; they spent {spent} (the wall times "
        "of each unit on its core, beside other work as the train times are)."
        if done >= n_final + n_short
        else f"**Progress:** {selected} selection runs done; {done} of {n_final + n_short} final runs done. "
        "Rows fill in as `--protocol=fair` finishes them (a dash: not run yet). Spent so far: "
        f"{spent} (the wall times of each unit on its core, beside other work as the train times are).",
        "",
    ]
    text += ["### Learning-rate selection (validation FID, own sampler)", "", selection_table(state)]
    text += [f"### Long budget ({long_name})", "", budget_table(state, "long")]
    text += [f"### Short budget ({p['short_steps']} steps)", "", budget_table(state, "short")]
    text += [
        "### Best PGA against each other method (FID, lower is better)",
        "",
        best_pga_text(state),
        "",
        difference_table(state),
        "### Verdicts on the paper's claims",
        "",
        "Difference of mean FID, best PGA minus the other method (negative: PGA better), with its "
        "95% Welch interval over seeds, each on its own (not corrected for the number of comparisons). "
        f"With {n_long} seeds a side (the long budget) an interval has {n_long - 1} to {2 * n_long - 2} "
        f"degrees of freedom, with {n_all} (the short) {n_all - 1} to {2 * n_all - 2}, so only large gaps "
        "resolve: read an unresolved difference as not shown either way. At the short budget the "
        "seeds that share a long run are that run's step-"
        f"{p['short_steps']} checkpoint, so a finding at both budgets is not two independent "
        "confirmations. The paper makes its VAE claim "
        'for the PGAs "combined with VAEs" (VPGA, LVPGA), so that claim also tests each of them against '
        "the VAE, whichever PGA is the best. A budget counts the 2-Stage VAE's first stage; its second "
        "stage trains on top (Final runs, above).",
        "",
        verdicts(state),
    ]
    if curves_plot(state, docs_dir):
        text += [
            "### FID during training",
            "",
            f"![FID curves, band over seeds]({link(os.path.join(docs_dir, 'fid_curves.png'))})",
            "",
            f"Each point is the FID of {p['fid_samples']} samples against the first {p['fid_samples']} test "
            f"images, which reads higher than the tables' FIDs of {p['num_samples']} (FID is biased upward "
            "at fewer samples): compare the curves with each other, not with the tables. A band (lowest "
            "to highest over seeds) shows where a method has two or more seeds.",
            "",
        ]
    # One entry per kind of CPU (a machine's record also names its kernel build).
    machines = "; ".join(dict.fromkeys(f"{m['cpu']} ({m['cpu_count']} cores)" for m in state.get("machines", [])))
    text += [f"Machines that ran units: {machines or 'none yet'}.", "", END]
    return "\n".join(text) + "\n"


def write(results_path: str, docs_dir: str, runs_dir: str, results_md: str, readme: str = "") -> str:
    """Write <docs_dir>/table.md, splice the section into `results_md` and the headline into
    `readme` (between their markers; a README without them is left alone); returns table.md's path."""
    state = comparison.read_state(results_path)
    # Only the grids of recorded units: a run dir may hold one of a unit still being evaluated.
    recorded = [
        m for m in comparison.table_order(state["protocol"]["methods"]) if comparison.run_key(m, 0) in state["runs"]
    ]
    comparison.copy_grids(runs_dir, docs_dir, tuple(recorded))
    out = os.path.join(docs_dir, "table.md")
    with open(out, "w") as f:
        f.write(section(state, docs_dir, base_dir=docs_dir))
    if results_md and os.path.exists(results_md):
        _splice(
            results_md,
            section(state, docs_dir, base_dir=os.path.dirname(os.path.abspath(results_md))),
            START,
            END,
            append=True,
        )
        if readme and os.path.exists(readme):
            _splice(readme, readme_block(state, docs_dir, results_md, readme), HEADLINE_START, HEADLINE_END, False)
    return out
