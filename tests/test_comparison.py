"""The fair comparison's plan, commands, state and statistics (pga_tf/comparison*.py)."""

import json
import os
import pathlib
import re

import numpy as np
import pytest

from pga_tf import config as config_lib
from pga_tf.tools import comparison, comparison_report

P = comparison.Protocol(methods=("ae", "lpga", "two_stage_vae"), seeds=(0, 1))


def test_grid_grows_past_a_winning_end_once():
    grid = (3e-4, 1e-3)
    assert comparison.grid_extension({3e-4: 50.0, 1e-3: 40.0}, grid) == pytest.approx(3e-3)
    assert comparison.grid_extension({3e-4: 40.0, 1e-3: 50.0}, grid) == pytest.approx(1e-4)
    # Once grown, the new end winning again adds nothing: the grid grows by one point.
    assert comparison.grid_extension({3e-4: 50.0, 1e-3: 40.0, 3e-3: 30.0}, grid) is None
    assert comparison.grid_extension({1e-4: 30.0, 3e-4: 40.0, 1e-3: 50.0}, grid) is None
    # An interior winner: nothing to add.
    assert comparison.grid_extension({1e-4: 45.0, 3e-4: 40.0, 1e-3: 50.0}, grid) is None
    # A diverged rate (None) scores worst.
    assert comparison.grid_extension({3e-4: 50.0, 1e-3: None}, grid) == pytest.approx(1e-4)


def test_chosen_lr_waits_for_the_grid_and_its_extension():
    grid = (3e-4, 1e-3)
    assert comparison.chosen_lr({"0.0003": {"fid": 50.0}}, grid) is None
    assert comparison.chosen_lr({"0.0003": {"fid": 50.0}, "0.001": {"fid": 40.0}}, grid) is None  # 3e-3 to run
    full = {"0.0003": {"fid": 50.0}, "0.001": {"fid": 40.0}, "0.003": {"fid": 45.0}}
    assert comparison.chosen_lr(full, grid) == pytest.approx(1e-3)
    everything_diverged = {"0.0003": {"fid": None}, "0.001": {"fid": None}, "0.0001": {"fid": None}}
    assert comparison.chosen_lr(everything_diverged, grid) is None


def test_pending_orders_selection_then_seed_by_seed():
    state = {"selection": {}, "runs": {}, "short_runs": {}}
    first = comparison.pending(P, state)
    assert [(u.kind, u.method, u.lr) for u in first] == [("select", m, lr) for m in P.methods for lr in P.lr_grid]
    # The selection done, with an interior winner for each (so no extension):
    state["selection"] = {
        m: {"0.0001": {"fid": 60.0}, "0.0003": {"fid": 40.0}, "0.001": {"fid": 50.0}} for m in P.methods
    }
    todo = comparison.pending(P, state)
    assert [(u.kind, u.method, u.seed) for u in todo] == [
        ("seed", "ae", 0),
        ("seed", "lpga", 0),
        ("seed", "two_stage_vae", 0),
        ("short", "two_stage_vae", 0),
        ("seed", "ae", 1),
        ("seed", "lpga", 1),
        ("seed", "two_stage_vae", 1),
        ("short", "two_stage_vae", 1),
    ]
    assert all(u.lr == pytest.approx(3e-4) for u in todo)
    state["runs"]["ae/seed=0"] = {}
    assert ("seed", "ae", 0) not in [(u.kind, u.method, u.seed) for u in comparison.pending(P, state)]


def test_seeds_outside_long_seeds_train_the_short_budget_only():
    p3 = comparison.Protocol(methods=("ae", "lpga", "two_stage_vae"), seeds=(0, 1, 2), long_seeds=(0, 1))
    chosen = {"0.0001": {"fid": 60.0}, "0.0003": {"fid": 40.0}, "0.001": {"fid": 50.0}}
    state = {"selection": {m: chosen for m in p3.methods}, "runs": {}, "short_runs": {}}
    seed2 = [(u.kind, u.method) for u in comparison.pending(p3, state) if u.seed == 2]
    assert seed2 == [("short", "ae"), ("short", "lpga"), ("short", "two_stage_vae")]
    short = comparison.train_command(p3, comparison.Unit("short", "lpga", lr=3e-4, seed=2), "/r")
    assert "--train_steps=3000" in short and "--seed=2" in short and "--init_steps=1000" in short
    assert comparison.evaluations(p3, comparison.Unit("short", "lpga", lr=3e-4, seed=2)) == [
        ("short", "prior", None),
        ("short", "gmm", None),
    ]
    assert [comparison.short_source(p3, "lpga", seed) for seed in (0, 1, 2)] == ["runs", "runs", "short_runs"]
    assert comparison.short_source(p3, "two_stage_vae", 0) == "short_runs"


def test_short_rows_join_long_runs_checkpoints_and_short_runs(tmp_path):
    def evaluations(rows):
        return {
            f"{row}/{s}": {"fid": f, "kid": 0.01, "precision": 0.7, "recall": 0.4}
            for row, f in rows
            for s in ("prior", "gmm")
        }

    p3 = comparison.Protocol(methods=("vae",), seeds=(0, 1, 2), long_seeds=(0, 1))
    state = {
        "protocol": p3.to_json(),
        "selection": {"vae": {"0.0003": {"fid": 50.0}, "0.001": {"fid": 45.0}, "0.003": {"fid": 60.0}}},
        "runs": {
            f"vae/seed={s}": {"lr": 1e-3, "seed": s, "train_seconds": 600, "evaluations": evaluations(r)}
            for s, r in ((0, [("long", 40.0), ("short", 50.0)]), (1, [("long", 42.0), ("short", 52.0)]))
        },
        "short_runs": {"vae/seed=2": {"lr": 1e-3, "seed": 2, "evaluations": evaluations([("short", 57.0)])}},
        "machines": [],
    }
    assert comparison_report.per_seed(state, "vae", "long", "own") == [40.0, 42.0]
    assert comparison_report.per_seed(state, "vae", "short", "own") == [50.0, 52.0, 57.0]
    text = comparison_report.section(state, str(tmp_path))
    assert "| VAE | 0.001 | 2 | 41.0 ± 1.4 |" in text  # the long table: seeds 0 and 1
    assert "| VAE | 0.001 | 3 | 53.0 ± 3.6 |" in text  # the short table: 50, 52 and 57
    assert "all 3 final runs" in text  # two long runs and seed 2's short run
    # Train time: the long runs' (equal here); the short row has no run of its own with a time yet.
    assert [line.rsplit("|", 2)[1].strip() for line in text.splitlines() if line.startswith("| VAE | 0.001 |")] == [
        "10 min",
        "–",
    ]
    state["short_runs"]["vae/seed=2"]["train_seconds"] = 300.0
    text = comparison_report.section(state, str(tmp_path))
    assert [line.rsplit("|", 2)[1].strip() for line in text.splitlines() if line.startswith("| VAE | 0.001 |")] == [
        "10 min",
        "5 min",  # seed 2's run of its own, not the long runs' 10 min
    ]


def test_a_file_from_before_long_seeds_loads_while_no_other_seed_ran(tmp_path):
    path = str(tmp_path / "results.json")
    old = comparison.Protocol(methods=("ae",), seeds=(0, 1, 2)).to_json()
    del old["long_seeds"]
    unit = lambda seed: {"seed": seed, "lr": 1e-3, "train_seconds": 60.0, "evaluations": {}}  # noqa: E731
    state = {"protocol": old, "selection": {}, "runs": {"ae/seed=0": unit(0)}, "short_runs": {}}
    comparison.save_state(state, path)
    new = comparison.Protocol(methods=("ae",), seeds=(0, 1, 2), long_seeds=(0, 1))
    assert comparison.load_state(path, new)["protocol"]["long_seeds"] == [0, 1]
    state["runs"]["ae/seed=2"] = unit(2)  # a long run of seed 2: every seed was long there
    comparison.save_state(state, path)
    with pytest.raises(ValueError, match="long_seeds"):
        comparison.load_state(path, new)
    # Read as it stands (the report), such a file trained every seed long.
    assert comparison.protocol_of(state).long_seeds == (0, 1, 2)


def test_train_command_sets_adam_the_budget_and_the_holdout():
    sel = comparison.train_command(P, comparison.Unit("select", "lpga", lr=3e-4), "/r")
    assert sel[:2] == ["train.py", "--flagfile=flags/lpga_fashion_mnist.cfg"]
    # After the flagfile, so they override it.
    for flag in ("--optimizer=adam", "--lr=0.0003", "--train_steps=3000", "--holdout=10000", "--init_steps=1000"):
        assert flag in sel
    assert not any(a.startswith("--fid_every") for a in sel)
    long = comparison.train_command(P, comparison.Unit("seed", "ae", lr=1e-3, seed=2), "/r")
    assert "--train_steps=9370" in long and "--seed=2" in long and "--fid_every=1000" in long
    assert not any(a.startswith(("--holdout", "--init_steps")) for a in long)  # AE has no warm-up
    keep = int(next(a for a in long if a.startswith("--keep_checkpoints=")).split("=")[1])
    assert keep * 1000 >= 3 * 9370  # every curve point kept, room for a second stage


def test_evaluations_take_short_rows_from_the_long_run_except_two_stage():
    rows = comparison.evaluations(P, comparison.Unit("seed", "lpga", lr=1e-3))
    assert rows == [("long", "prior", None), ("long", "gmm", None), ("short", "prior", 3000), ("short", "gmm", 3000)]
    assert comparison.evaluations(P, comparison.Unit("seed", "two_stage_vae", lr=1e-3)) == [
        ("long", "two_stage", None),
        ("long", "gmm", None),
    ]
    assert comparison.evaluations(P, comparison.Unit("short", "two_stage_vae", lr=1e-3)) == [
        ("short", "two_stage", None),
        ("short", "gmm", None),
    ]
    sel = comparison.evaluate_command(P, comparison.Unit("select", "vae", lr=1e-3), "/r", "prior", None, [])
    assert "--real_split=validation" in sel and "--draws=1" in sel


def test_state_refuses_another_protocols_file(tmp_path):
    path = str(tmp_path / "results.json")
    state = comparison.load_state(path, P)
    comparison.record(state, comparison.Unit("select", "ae", lr=3e-4), {"fid": 50.0})
    comparison.save_state(state, path)
    again = comparison.load_state(path, P)
    assert again["selection"]["ae"]["0.0003"]["fid"] == 50.0
    with pytest.raises(ValueError, match="holdout 10000 there, 5000 here"):
        comparison.load_state(path, comparison.Protocol(methods=P.methods, seeds=(0, 1), holdout=5000))


def _fake_execute(calls):
    """An executor that writes what the real commands would (a last checkpoint, a report) and
    records each command in `calls`; lr 1e-3 diverges."""

    def execute(args, log_path, what, core):
        calls.append(args)
        run_dir = next(a.split("=", 1)[1] for a in args if a.startswith("--run_dir="))
        if args[0] == "train.py":
            if "--lr=0.001" in args:
                raise RuntimeError("train.py failed (exit 1): error: non-finite rec at step 7")
            steps = next(a.split("=", 1)[1] for a in args if a.startswith("--train_steps="))
            os.makedirs(os.path.join(run_dir, "checkpoints"), exist_ok=True)
            for suffix in ("index", "data-00000-of-00001"):  # its last checkpoint
                open(os.path.join(run_dir, "checkpoints", f"ckpt-{steps}.{suffix}"), "w").close()
            return 1.0
        sampler = next(a.split("=", 1)[1] for a in args if a.startswith("--sampler="))
        step = next((int(a.split("=")[1]) for a in args if a.startswith("--checkpoint_step=")), None)
        split = "validation" if "--real_split=validation" in args else "test"
        path = config_lib.eval_report_path(run_dir, sampler, step, split)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fid = 30.0 + (5.0 if "lr0.0001" in run_dir else 0.0) + (step or 0) / 1000
        with open(path, "w") as f:
            json.dump(
                {
                    "fid": {"value": fid, "std": None, "real_split": split},
                    "kid": {"value": 0.1},
                    "precision": {"value": 0.8},
                    "recall": {"value": 0.5},
                    "step": step or 9370,
                    "sampler": {"kind": sampler},
                    "features": {"checksum": "x"},
                },
                f,
            )
        return 2.0

    return execute


def test_run_records_each_unit_and_a_divergence(tmp_path, monkeypatch):
    """The scheduler with a fake executor: each train/evaluate call writes what the real command
    would (a report), and one learning rate diverges."""
    protocol = comparison.Protocol(methods=("ae",), seeds=(0,))
    calls = []
    execute = _fake_execute(calls)
    monkeypatch.setattr(comparison, "_machine", lambda: {"cpu": "test", "cpu_count": 1, "platform": "t"})
    state = comparison.run(protocol, str(tmp_path / "runs"), str(tmp_path / "docs"), execute, log=lambda s: None)
    sel = state["selection"]["ae"]
    assert sel["0.001"]["fid"] is None and "non-finite" in sel["0.001"]["diverged"]
    assert sel["0.0003"]["fid"] == 30.0 and sel["0.0001"]["fid"] == 35.0  # grown below: 1e-3 diverged
    run = state["runs"]["ae/seed=0"]
    assert run["lr"] == pytest.approx(3e-4)
    assert run["evaluations"]["short/prior"]["fid"] == pytest.approx(33.0)
    assert run["evaluations"]["long/gmm"]["fid"] == pytest.approx(30.0)
    n = len(calls)
    # Started again, nothing is pending: no command runs.
    comparison.run(protocol, str(tmp_path / "runs"), str(tmp_path / "docs"), execute, log=lambda s: None)
    assert len(calls) == n


def test_run_can_take_only_the_short_units(tmp_path, monkeypatch):
    """--unit_kinds=short: the short-budget units run, in pending's order; the long ones wait."""
    protocol = comparison.Protocol(methods=("ae", "two_stage_vae"), seeds=(0, 1, 2), long_seeds=(0, 1))
    chosen = {"0.0001": {"fid": 60.0}, "0.0003": {"fid": 40.0}, "0.001": {"fid": 50.0}}
    docs = tmp_path / "docs"
    docs.mkdir()
    comparison.save_state(
        {
            "protocol": protocol.to_json(),
            "selection": {m: chosen for m in protocol.methods},
            "runs": {},
            "short_runs": {},
        },
        str(docs / comparison.RESULTS_FILE),
    )
    calls = []
    monkeypatch.setattr(comparison, "_machine", lambda: {"cpu": "test", "cpu_count": 1, "platform": "t"})
    state = comparison.run(
        protocol, str(tmp_path / "runs"), str(docs), _fake_execute(calls), log=lambda s: None, kinds=("short",)
    )
    trained = [
        (a[1].split("/")[1].split("_fashion")[0], next(x for x in a if x.startswith("--seed=")))
        for a in calls
        if a[0] == "train.py"
    ]
    assert trained == [
        ("two_stage_vae", "--seed=0"),
        ("two_stage_vae", "--seed=1"),
        ("ae", "--seed=2"),
        ("two_stage_vae", "--seed=2"),
    ]
    assert all("--train_steps=3000" in a for a in calls if a[0] == "train.py")
    assert state["runs"] == {} and sorted(state["short_runs"]) == [
        "ae/seed=2",
        "two_stage_vae/seed=0",
        "two_stage_vae/seed=1",
        "two_stage_vae/seed=2",
    ]
    # What is left is exactly the long runs.
    assert {u.kind for u in comparison.pending(protocol, state)} == {"seed"}


def test_welch_interval_matches_scipy():
    from scipy import stats

    a, b = [40.1, 42.3, 41.0], [47.0, 45.2, 49.9, 46.1]
    out = comparison_report.welch_interval(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert out["diff"] == pytest.approx(np.mean(a) - np.mean(b))
    assert (out["low"], out["high"]) == pytest.approx((ci.low, ci.high))
    assert comparison_report.welch_interval([1.0], b)["low"] is None


def _state_with_seeds():
    def run(fid_long, fid_short, lr=1e-3):
        ev = {
            f"{row}/{s}": {"fid": f, "kid": 0.01, "precision": 0.7, "recall": 0.4}
            for row, f in (("long", fid_long), ("short", fid_short))
            for s in ("prior", "gmm")
        }
        return {"lr": lr, "train_seconds": 600, "evaluations": ev}

    return {
        "protocol": {**P.to_json(), "methods": ["vae", "lpga"], "seeds": [0, 1, 2], "long_seeds": [0, 1, 2]},
        "selection": {
            "vae": {"0.0003": {"fid": 50.0}, "0.001": {"fid": 45.0}, "0.003": {"fid": 60.0}},
            "lpga": {"0.0003": {"fid": 40.0}, "0.001": {"fid": 39.0}, "0.003": {"fid": None}},
        },
        "runs": {
            **{f"vae/seed={s}": run(f, f + 10) for s, f in enumerate([46.0, 47.0, 48.0])},
            **{f"lpga/seed={s}": run(f, f + 10) for s, f in enumerate([40.0, 41.5, 39.0])},
        },
        "short_runs": {},
        "machines": [{"cpu": "test cpu", "cpu_count": 2}],
    }


def test_section_tables_hold_the_seed_statistics(tmp_path):
    state = _state_with_seeds()
    text = comparison_report.section(state, str(tmp_path))
    assert "| VAE | 0.001 | 3 | 47.0 ± 1.0 |" in text  # mean and sample std of 46, 47, 48
    assert "| LPGA | 0.001 | 3 | 40.2 ± 1.3 |" in text
    assert "| LPGA | 40.0 | 39.0 | diverged | 0.001 |" in text
    want = comparison_report.welch_interval([40.0, 41.5, 39.0], [46.0, 47.0, 48.0])
    assert (
        f"| long budget | own sampler | LPGA | VAE | {want['diff']:+.1f} | [{want['low']:+.1f}, {want['high']:+.1f}] |"
        in text
    )
    assert "PGA better (interval below 0)" in text
    assert text.startswith(comparison_report.START) and text.rstrip().endswith(comparison_report.END)


def test_the_best_pga_is_chosen_on_the_validation_split_not_on_the_test_fids(tmp_path):
    state = _state_with_seeds()  # LPGA: validation 39.0 at its chosen rate, test FIDs 40.0, 41.5, 39.0
    state["protocol"]["methods"] = ["vae", "lpga", "vpga"]
    state["selection"]["vpga"] = {"0.0003": {"fid": 41.0}, "0.001": {"fid": 39.5}, "0.003": {"fid": 45.0}}

    def ev(fid):
        return {
            f"{row}/{s}": {"fid": fid, "kid": 0.01, "precision": 0.7, "recall": 0.4}
            for row in ("long", "short")
            for s in ("prior", "gmm")
        }

    state["runs"].update(
        {
            f"vpga/seed={s}": {"lr": 1e-3, "train_seconds": 600, "evaluations": ev(f)}
            for s, f in enumerate([30.0, 31.0, 32.0])
        }
    )
    assert comparison_report.best_pga(state) == ("lpga", 39.0)  # VPGA has the lower test FIDs
    best, diffs = comparison_report.differences(state, "long", "own")
    assert best == "lpga" and [d["against"] for d in diffs] == ["vae", "vpga"]
    assert diffs[1]["diff"] == pytest.approx(np.mean([40.0, 41.5, 39.0]) - 31.0)
    text = comparison_report.section(state, str(tmp_path))
    assert "(LPGA; validation FIDs at the chosen rates: LPGA 39.0, VPGA 39.5)" in text
    assert "| long budget | own sampler | LPGA | VPGA | +9.2 |" in text
    assert "LPGA worse (interval above 0)" in text and "PGA worse" not in text.replace("LPGA worse", "")
    # A PGA whose rate is not chosen yet (a grid point missing) is not a candidate.
    state["selection"]["lpga"].pop("0.0003")
    assert comparison_report.best_pga(state) == ("vpga", 39.5)
    # Before any PGA's rate is chosen there is no best PGA and no difference.
    state["selection"]["vpga"].pop("0.0003")
    assert comparison_report.best_pga(state) is None
    assert comparison_report.differences(state, "long", "own") == (None, [])


def test_core_hours_add_every_unit_s_training_and_evaluations():
    state = _state_with_seeds()  # six long runs of 600 s, no evaluation times
    state["selection"]["vae"]["0.001"].update(train_seconds=1800.0, eval_seconds=90.0)
    state["selection"]["lpga"]["0.003"].update(train_seconds=360.0)  # diverged: no evaluation
    state["runs"]["vae/seed=0"]["evaluations"]["long/prior"]["eval_seconds"] = 120.0
    state["runs"]["vae/seed=0"]["evaluations"]["long/gmm"]["eval_seconds"] = 150.0
    state["short_runs"]["lpga/seed=3"] = {
        "lr": 1e-3,
        "train_seconds": 540.0,
        "evaluations": {"short/prior": {"eval_seconds": 60.0}},
    }
    train, evaluation = comparison_report.core_hours(state)
    assert train == pytest.approx((6 * 600 + 1800 + 360 + 540) / 3600)
    assert evaluation == pytest.approx((90 + 120 + 150 + 60) / 3600)


def test_write_replaces_only_its_section(tmp_path):
    state = _state_with_seeds()
    (tmp_path / "docs").mkdir()
    path = tmp_path / "docs" / "results.json"
    path.write_text(json.dumps(state))
    md = tmp_path / "RESULTS.md"
    md.write_text("# Results\n\nkept above\n")
    comparison_report.write(str(path), str(tmp_path / "docs"), str(tmp_path / "runs"), str(md))
    once = md.read_text()
    assert once.startswith("# Results\n\nkept above\n") and comparison_report.START in once
    md.write_text(once + "\nkept below\n")
    comparison_report.write(str(path), str(tmp_path / "docs"), str(tmp_path / "runs"), str(md))
    twice = md.read_text()
    assert twice.count(comparison_report.START) == 1 and twice.endswith("kept below\n")
    assert (tmp_path / "docs" / "fid_curves.png").exists() is False  # no curves in this state


def test_links_of_table_md_and_results_md_resolve_from_where_each_file_is(tmp_path):
    state = _state_with_seeds()
    for seed, run in enumerate(r for k, r in state["runs"].items() if k.startswith("lpga/")):
        run["curve"] = {"steps": [1000, 2000, 3000], "fid": [60.0 + seed, 50.0, 45.0]}
    docs = tmp_path / "docs"
    (docs / "fair").mkdir(parents=True)
    (docs / "evaluation.md").write_text("# Evaluation\n")
    results = docs / "fair" / "results.json"
    results.write_text(json.dumps(state))
    md = docs / "RESULTS.md"
    md.write_text("# Results\n")
    table = comparison_report.write(str(results), str(docs / "fair"), str(tmp_path / "runs"), str(md))
    for path in (md, pathlib.Path(table)):
        targets = [t.split("#")[0] for t in re.findall(r"\]\(([^)]+)\)", path.read_text())]
        assert len(targets) == 3, targets  # results.json, evaluation.md, the curves
        for t in targets:
            assert (path.parent / t).exists(), f"{path.name}: {t}"


def test_selection_cells_say_where_a_rate_diverged_and_times_give_their_range(tmp_path):
    state = _state_with_seeds()
    state["protocol"]["methods"] = ["vae", "two_stage_vae", "lpga", "lvpga"]
    steps = state["protocol"]["select_steps"]
    state["selection"]["two_stage_vae"] = {
        "0.0003": {"fid": 44.0},
        "0.001": {"fid": 34.0},
        "0.003": {"fid": None, "diverged": f"train.py failed (exit 1): error: non-finite x at step {steps + 208}; ..."},
    }
    state["selection"]["lpga"]["0.003"]["diverged"] = "train.py failed (exit 1): error: non-finite y at step 27; ..."
    state["selection"]["lvpga"] = {"0.0003": {"fid": 43.0}, "0.001": {"fid": 29.0}, "0.003": {"fid": None}}
    for seed, seconds in enumerate([600, 1800, 11940]):
        state["runs"][f"vae/seed={seed}"]["train_seconds"] = seconds
    text = comparison_report.section(state, str(tmp_path))
    assert f"| 2-Stage VAE | 44.0 | 34.0 | diverged at step {steps + 208} (second stage) | 0.001 |" in text
    assert "| LPGA | 40.0 | 39.0 | diverged at step 27 | 0.001 |" in text
    assert "| LVPGA | 43.0 | 29.0 | diverged | 0.001 |" in text  # no step recorded
    long_vae = next(line for line in text.splitlines() if line.startswith("| VAE | 0.001 | 3 |"))
    assert long_vae.endswith("| 10–199 min |")
    assert "A cell gives the lowest–highest over a method's runs" in text and "mean over its runs" not in text
    # A method with its rate chosen and no final run yet shows that rate.
    assert "| LVPGA | 0.001 | 0 | – |" in text


def test_section_and_headline_say_done_only_when_every_final_run_is(tmp_path):
    state = _state_with_seeds()  # VAE and LPGA, three long seeds each: 6 of 6 final runs
    docs = tmp_path / "docs" / "fair"
    docs.mkdir(parents=True)
    readme, results_md = str(tmp_path / "README.md"), str(tmp_path / "docs" / "RESULTS.md")
    text = comparison_report.section(state, str(docs))
    block = comparison_report.readme_block(state, str(docs), results_md, readme)
    assert "**Done:** 6 selection runs and all 6 final runs" in text and "Progress" not in text
    assert "(all 6 runs of this budget)" in block and "so far" not in block
    assert "with three seeds a gap" in block
    del state["runs"]["lpga/seed=2"]
    text = comparison_report.section(state, str(docs))
    block = comparison_report.readme_block(state, str(docs), results_md, readme)
    assert "**Progress:** 6 selection runs done; 5 of 6 final runs done." in text and "**Done:**" not in text
    assert "(5 of 6 runs of this budget done so far)" in block
    assert "with two or three seeds a gap" in block


def test_methods_keep_the_registrys_table_order(tmp_path):
    """A results.json whose method list was stored sorted by name reads back in table order."""
    import json

    from pga_tf import methods as methods_lib
    from pga_tf.tools import comparison

    protocol = comparison.Protocol(methods=("vae", "ae"))
    path = tmp_path / "results.json"
    state = comparison.load_state(str(path), protocol)
    state["protocol"]["methods"] = sorted(methods_lib.names())
    path.write_text(json.dumps(state))
    names = comparison.load_state(str(path), protocol)["protocol"]["methods"]
    assert names == list(methods_lib.names())
    assert comparison.table_order(["lpga", "ae", "zz_unknown", "vae"]) == ["ae", "vae", "lpga", "zz_unknown"]


def test_a_unit_stopped_by_a_signal_is_not_finished(tmp_path):
    """train.py stopped by SIGTERM saves, says so and exits 0 (the run dir resumes): the driver
    must not evaluate and record that unit as if it had reached its last step."""
    from pga_tf import config
    from pga_tf.tools import comparison

    run_dir = tmp_path / "run"
    config.save(config.for_method("vae", run_dir=str(run_dir)), str(run_dir))
    ckpts = run_dir / "checkpoints"
    ckpts.mkdir()

    def checkpoint_at(step):
        (ckpts / f"ckpt-{step}.index").write_bytes(b"x")
        (ckpts / f"ckpt-{step}.data-00000-of-00001").write_bytes(b"x")

    train = ["train.py", "--flagfile=flags/vae_fashion_mnist.cfg", "--train_steps=30"]
    checkpoint_at(20)
    with pytest.raises(comparison.Interrupted, match="stopped at step 20 of 30"):
        comparison.check_finished(str(run_dir), train)
    checkpoint_at(30)
    comparison.check_finished(str(run_dir), train)  # finished: no error


@pytest.mark.e2e
@pytest.mark.parametrize("long_seeds", ["2", "0,0", "x"])
def test_long_seeds_outside_seeds_is_a_flag_error(tmp_path, long_seeds):
    from tests.helpers import assert_one_line_error, run_python

    proc = run_python(
        [
            "-m",
            "pga_tf.tools.results",
            "--protocol=fair",
            "--seeds=0,1",
            f"--long_seeds={long_seeds}",
            f"--docs_dir={tmp_path}/d",
        ]
    )
    assert_one_line_error(proc, "--long_seeds must be distinct seeds among --seeds")
    assert not os.path.exists(tmp_path / "d")


def test_verdicts_name_each_claim_with_its_interval(tmp_path):
    state = _state_with_seeds()
    text = comparison_report.verdicts(state)
    want = comparison_report.welch_interval([40.0, 41.5, 39.0], [46.0, 47.0, 48.0])
    vae = next(line for line in text.splitlines() if line.startswith("- **PGA against the VAE**"))
    assert (
        f"9370 steps: LPGA − VAE {want['diff']:+.1f} [{want['low']:+.1f}, {want['high']:+.1f}], "
        "LPGA better (interval below 0)" in vae
    )
    # No WAE, RAE or 2-Stage VAE in this state: those claims are not listed; the GMM one is.
    assert "simple-prior" not in text and "second-stage" not in text
    assert "- **Every method with the ex-post GMM sampler** (VAE; ex-post GMM). 9370 steps: LPGA − VAE" in text


def test_the_vae_claim_holds_each_pga_with_a_vae_objective_against_the_vae():
    # The abstract claims it for the PGAs combined with VAEs: VPGA and LVPGA answer it whichever
    # PGA is the best (here LPGA, on validation), and no other claim lists them.
    state = _state_with_seeds()
    state["protocol"]["methods"] = ["vae", "rae", "lpga", "vpga", "lvpga"]
    for m, val in (("rae", 45.0), ("vpga", 39.5), ("lvpga", 40.5)):
        state["selection"][m] = {"0.0003": {"fid": val + 5}, "0.001": {"fid": val}, "0.003": {"fid": val + 9}}
    fids = {"rae": [60.0, 62.0, 61.0], "vpga": [30.0, 31.0, 32.0], "lvpga": [44.0, 49.0]}
    for m, values in fids.items():
        for seed, f in enumerate(values):
            ev = {  # the short row 10 above the long one, as _state_with_seeds's VAE and LPGA
                f"{row}/{s}": {"fid": f + extra, "kid": 0.01, "precision": 0.7, "recall": 0.4}
                for row, extra in (("long", 0.0), ("short", 10.0))
                for s in ("prior", "gmm")
            }
            state["runs"][f"{m}/seed={seed}"] = {"lr": 1e-3, "train_seconds": 600, "evaluations": ev}
    assert comparison_report.best_pga(state)[0] == "lpga"
    text = comparison_report.verdicts(state)
    vae = next(line for line in text.splitlines() if line.startswith("- **PGA against the VAE**"))
    for pga, reading in (("VPGA", "VPGA better (interval below 0)"), ("LVPGA", "not resolved (interval holds 0)")):
        e = comparison_report.welch_interval(fids[pga.lower()], [46.0, 47.0, 48.0])
        assert vae.count(f"{pga} − VAE {e['diff']:+.1f} [{e['low']:+.1f}, {e['high']:+.1f}], {reading}") == 2
    assert vae.count("LPGA − VAE") == 2  # the best PGA once per budget, not again
    others = [line for line in text.splitlines() if not line.startswith("- **PGA against the VAE**")]
    assert not any("VPGA −" in line or "LVPGA −" in line for line in others)
    # With VPGA the best, it is said once per budget, not a second time as a PGA the claim names.
    state["selection"]["lpga"]["0.001"]["fid"] = 42.0
    vae = next(line for line in comparison_report.verdicts(state).splitlines() if "PGA against the VAE" in line)
    assert vae.count(": VPGA − VAE") == 2 and vae.count("; LVPGA − VAE") == 2 and "LPGA −" not in vae
    # A PGA the claim names that has not run yet is said so, not left out.
    for seed in range(2):
        del state["runs"][f"lvpga/seed={seed}"]
    vae = next(line for line in comparison_report.verdicts(state).splitlines() if "PGA against the VAE" in line)
    assert vae.count("; LVPGA − VAE not run yet") == 2


def test_rae_is_also_held_against_pga_with_the_sampler_of_its_paper():
    state = _state_with_seeds()
    state["protocol"]["methods"] = ["vae", "rae", "lpga"]
    state["selection"]["rae"] = {"0.0003": {"fid": 50.0}, "0.001": {"fid": 45.0}, "0.003": {"fid": 60.0}}
    for seed, (prior, gmm) in enumerate([(60.0, 38.0), (62.0, 39.0), (61.0, 41.0)]):
        ev = {
            f"{row}/{s}": {"fid": f, "kid": 0.01, "precision": 0.7, "recall": 0.4}
            for row in ("long", "short")
            for s, f in (("prior", prior), ("gmm", gmm))
        }
        state["runs"][f"rae/seed={seed}"] = {"lr": 1e-3, "train_seconds": 600, "evaluations": ev}
    text = comparison_report.verdicts(state)
    simple = next(line for line in text.splitlines() if line.startswith("- **PGA against the other simple-prior"))
    lpga = [40.0, 41.5, 39.0]  # LPGA's own sampler on both budgets
    own = comparison_report.welch_interval(lpga, [60.0, 62.0, 61.0])
    paper = comparison_report.welch_interval(lpga, [38.0, 39.0, 41.0])
    assert f"LPGA − RAE {own['diff']:+.1f} [{own['low']:+.1f}, {own['high']:+.1f}], LPGA better" in simple
    assert (
        f"LPGA with its own sampler − RAE with ex-post GMM, the sampler of its paper, {paper['diff']:+.1f} "
        f"[{paper['low']:+.1f}, {paper['high']:+.1f}], not resolved (interval holds 0)" in simple
    )
    # The GMM claim already holds both sides on the GMM: no second RAE item there.
    gmm = next(line for line in text.splitlines() if line.startswith("- **Every method with the ex-post GMM"))
    assert "the sampler of its paper" not in gmm


def test_the_second_stage_s_steps_are_said_from_the_evaluated_step():
    state = _state_with_seeds()
    state["protocol"]["methods"] = ["vae", "two_stage_vae", "lpga"]
    state["protocol"]["steps"], state["protocol"]["short_steps"] = 9370, 3000
    ev = {"long/two_stage": {"fid": 20.0, "step": 28110}, "long/gmm": {"fid": 9.0, "step": 28110}}
    command = "python train.py --flagfile=flags/two_stage_vae_fashion_mnist.cfg --optimizer=adam --lr=0.001"
    state["runs"]["two_stage_vae/seed=1"] = {
        "lr": 1e-3,
        "train_seconds": 60,
        "train_command": command,
        "evaluations": ev,
    }
    said = comparison_report.later_phases(state)
    assert said == (
        "The 2-Stage VAE trains the budget's steps at the chosen rate and then its later phases (a second "
        "stage) at its flagfile's settings (flags/two_stage_vae_fashion_mnist.cfg): 9370 + 18740 steps at "
        "the long budget."
    )
    assert said in comparison_report.section(state, "/nonexistent")
    short = {"short/two_stage": {"fid": 30.0, "step": 9000}}
    state["short_runs"]["two_stage_vae/seed=2"] = {"lr": 1e-3, "train_command": command, "evaluations": short}
    assert comparison_report.later_phases(state).endswith(
        "9370 + 18740 steps at the long budget, 3000 + 6000 steps at the short budget."
    )
    del state["runs"]["two_stage_vae/seed=1"], state["short_runs"]["two_stage_vae/seed=2"]
    assert comparison_report.later_phases(state) == ""


def test_readme_block_ranks_methods_and_links_the_section(tmp_path):
    state = _state_with_seeds()
    docs = tmp_path / "docs"
    (docs / "fair").mkdir(parents=True)
    results_md, readme = docs / "RESULTS.md", tmp_path / "README.md"
    for seed, fid in enumerate([20.0, 22.0, 27.0]):  # the VAE's GMM FIDs: 23.0 ± 3.6
        state["runs"][f"vae/seed={seed}"]["evaluations"]["long/gmm"]["fid"] = fid
    section = comparison_report.section(state, str(docs / "fair"))
    block = comparison_report.readme_block(state, str(docs / "fair"), str(results_md), str(readme))
    lines = block.splitlines()
    table = [line for line in lines if line.startswith("| ") and "method" not in line]
    assert table == [
        "| LPGA | 40.2 ± 1.3 | 0.70 ± 0.00 | 0.40 ± 0.00 | 40.2 ± 1.3 | 3 |",
        "| VAE | 47.0 ± 1.0 | 0.70 ± 0.00 | 0.40 ± 0.00 | 23.0 ± 3.6 | 3 |",
    ]  # ranked by the own sampler's FID
    heading = next(line for line in section.splitlines() if line.startswith("## "))
    anchor = heading[3:].lower().replace(":", "").replace(",", "").replace(" ", "-")
    assert f"](docs/RESULTS.md#{anchor})" in block
    assert "![" not in block  # no grid copied yet
    (docs / "fair" / "lpga_samples.png").write_bytes(b"png")
    block = comparison_report.readme_block(state, str(docs / "fair"), str(results_md), str(readme))
    assert "![LPGA samples, seed 0](docs/fair/lpga_samples.png)" in block


def test_write_splices_the_readme_only_between_its_markers(tmp_path):
    state = _state_with_seeds()
    (tmp_path / "docs").mkdir()
    results = tmp_path / "docs" / "results.json"
    results.write_text(json.dumps(state))
    md, readme = tmp_path / "RESULTS.md", tmp_path / "README.md"
    md.write_text("# Results\n")
    readme.write_text("# pga-tf\n\nno markers here\n")
    comparison_report.write(str(results), str(tmp_path / "docs"), str(tmp_path / "runs"), str(md), str(readme))
    assert readme.read_text() == "# pga-tf\n\nno markers here\n"
    start, end = comparison_report.HEADLINE_START, comparison_report.HEADLINE_END
    readme.write_text(f"# pga-tf\n\nabove\n\n{start}\nold\n{end}\n\nbelow\n")
    comparison_report.write(str(results), str(tmp_path / "docs"), str(tmp_path / "runs"), str(md), str(readme))
    text = readme.read_text()
    assert text.startswith("# pga-tf\n\nabove\n\n" + start) and text.endswith(end + "\n\nbelow\n")
    assert "old" not in text and "| LPGA | 40.2 ± 1.3 |" in text
