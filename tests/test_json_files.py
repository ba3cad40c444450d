"""The project's JSON files damaged on disk (emptied, cut short, not an object, not UTF-8, a
directory in their place, a field of the wrong type): every reader refuses them in one line
naming the file, what is wrong and what to do, instead of a traceback, a misleading message or
a silent fallback; and every writer replaces a file whole or not at all."""

import json
import os
import shutil
import threading

import numpy as np
import pytest

from pga_tf import jsonfile
from pga_tf.evaluation import features
from pga_tf.tools import comparison
from tests.helpers import ROOT, assert_one_line_error, run_python, snapshot, write_idx

FAIR_RESULTS = os.path.join(ROOT, "docs", "fair", "results.json")


def _damage(path, how):
    """Put `how`'s damage at `path` (a file a tool wrote) and return the phrase that names it."""
    with open(path, "rb") as f:
        whole = f.read()
    os.remove(path)
    if how == "directory":
        os.makedirs(path)
        return "is a directory"
    text = {
        "empty": b"",
        "cut short": whole[: len(whole) // 2],
        "not an object": b"[1, 2]",
        "not UTF-8": b'{"a": "\xff\xfe"}',
    }[how]
    with open(path, "wb") as f:
        f.write(text)
    return {
        "empty": "is empty",
        "cut short": "is not valid JSON",
        "not an object": "does not hold a JSON object (it holds a JSON array)",
        "not UTF-8": "is not UTF-8 text",
    }[how]


DAMAGES = ("empty", "cut short", "not an object", "not UTF-8", "directory")


# ------------------------------------------------------------------------------ jsonfile itself
def test_write_then_read_gives_what_json_gives(tmp_path):
    path = str(tmp_path / "a.json")
    obj = {"b": [1, 2.5, None, True], "a": {"nested": "é"}}
    jsonfile.write(path, obj, indent=1, sort_keys=True)
    assert jsonfile.read(path, "fix") == json.loads(open(path, encoding="utf-8").read()) == obj
    assert open(path).read().endswith("}\n") and os.listdir(tmp_path) == ["a.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = str(tmp_path / "a.json")
    jsonfile.write(path, {"old": 1})
    before = open(path).read()
    with pytest.raises(TypeError):
        jsonfile.write(path, {"new": object()})  # fails halfway through the dump
    with pytest.raises(ValueError):
        jsonfile.write(path, {"new": float("nan")})  # refused by default: not JSON
    assert open(path).read() == before and os.listdir(tmp_path) == ["a.json"]
    jsonfile.write(path, {"nan": float("nan")}, allow_nan=True)
    assert "NaN" in open(path).read()


@pytest.mark.parametrize("how", DAMAGES)
def test_read_names_the_file_the_damage_and_the_fix(tmp_path, how):
    path = str(tmp_path / "a.json")
    jsonfile.write(path, {"a": 1, "b": "two"})
    phrase = _damage(path, how)
    with pytest.raises(KeyError) as caught:  # any exception class the caller reports
        jsonfile.read(path, "delete it", KeyError)
    message = caught.value.args[0]
    assert message.startswith(f"{path} {phrase}") and message.endswith("; delete it")
    assert "\n" not in message


@pytest.mark.parametrize(
    "text, phrase",
    [
        ('{"a": NaN}', "holds NaN, which JSON does not allow"),
        ('{"a": -Infinity}', "holds -Infinity, which JSON does not allow"),
        ('{"a": [1, 2', "is not valid JSON (line 1 column 12: Expecting ',' delimiter; cut short?)"),
        ('{"a": 1} {"b": 2}', "is not valid JSON (line 1 column 10: Extra data)"),
        ("[" * 100000, "is not valid JSON (nested too deeply)"),
    ],
)
def test_read_refuses_what_python_s_json_would_let_through_or_crash_on(tmp_path, text, phrase):
    path = tmp_path / "a.json"
    path.write_text(text)
    with pytest.raises(ValueError) as caught:
        jsonfile.read(str(path), "fix")
    assert str(caught.value) == f"{path} {phrase}; fix"


def test_two_writers_of_one_file_never_trip_over_each_other(tmp_path):
    """Two jobs filling one cache entry at once: each rename is whole, none fails."""
    path, errors = str(tmp_path / "a.json"), []

    def writer(n):
        try:
            for i in range(200):
                jsonfile.write(path, {"writer": n, "i": i, "pad": "x" * 4096})
        except Exception as e:  # what the shared temporary name gave: FileNotFoundError
            errors.append(e)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and jsonfile.read(path, "")["i"] == 199 and os.listdir(tmp_path) == ["a.json"]


def test_kind_is_json_s_name_of_a_type():
    assert [jsonfile.kind(v) for v in (None, True, 3, 2.5, "s", [], {})] == [
        "null",
        "boolean",
        "number",
        "number",
        "string",
        "array",
        "object",
    ]


# ------------------------------------------------------------------------ a run's features.json
def _recorded_run(tmp_path):
    run_dir = str(tmp_path / "run")
    clf = tmp_path / "clf.keras"
    clf.write_bytes(b"weights")
    features.record(run_dir, features.Choice("classifier", str(clf)), "fashion_mnist")
    return run_dir, features.Choice("classifier", str(clf))


@pytest.mark.parametrize("how", DAMAGES)
def test_a_damaged_features_json_is_refused_not_replaced_by_the_defaults(tmp_path, how):
    run_dir, used = _recorded_run(tmp_path)
    assert features.for_run(features.Choice(), False, run_dir, "fashion_mnist") == used
    path = os.path.join(run_dir, features.RECORD_FILE)
    phrase = _damage(path, how)
    for same_curve in (False, True):
        with pytest.raises(features.FeatureError) as caught:
            features.for_run(features.Choice(), False, run_dir, "fashion_mnist", same_curve=same_curve)
        message = str(caught.value)
        assert message.startswith(f"{path} {phrase}") and "to evaluate, pass the feature flags" in message
        assert "to resume, delete it" in message
    # Feature flags on the command line of an evaluation: the record is not needed, so not read.
    given = features.Choice("inception")
    assert features.for_run(given, True, run_dir, "fashion_mnist") == given


@pytest.mark.parametrize(
    "edit, phrase",
    [
        (lambda body: body.pop("sha256"), "lacks 'sha256'"),
        (lambda body: body.update(classifier=3), "has a JSON number for 'classifier'"),
        (lambda body: body.update(kind="resnet"), "has kind 'resnet', not one of classifier, inception"),
    ],
)
def test_a_features_json_with_a_field_no_run_wrote_is_refused(tmp_path, edit, phrase):
    run_dir, _ = _recorded_run(tmp_path)
    path = os.path.join(run_dir, features.RECORD_FILE)
    body = json.load(open(path))
    edit(body)
    json.dump(body, open(path, "w"))
    with pytest.raises(features.FeatureError, match=phrase):
        features.recorded(run_dir)


def test_a_run_without_features_json_uses_the_flags(tmp_path):
    assert features.recorded(str(tmp_path)) is None
    assert features.for_run(features.Choice(), False, str(tmp_path), "fashion_mnist") == features.Choice()


# ----------------------------------------------------------------- the fair comparison's state
def test_the_repository_s_results_json_has_the_shape_the_report_reads():
    state = comparison.read_state(FAIR_RESULTS)
    assert comparison.state_problem(state) is None and state["runs"]


def _edited_state(edit):
    state = json.load(open(FAIR_RESULTS))
    edit(state)
    return state


def _first(table):
    return next(iter(table.values()))


STATE_FAULTS = {
    "protocol a list": (lambda s: s.update(protocol=[]), "has no 'protocol' object"),
    "runs a list": (lambda s: s.update(runs=[]), "has 'runs' as a JSON array, not an object"),
    "a run's FID a string": (
        lambda s: _first(_first(s["runs"])["evaluations"]).update(fid="37"),
        'fid "37", not a number',
    ),
    "a run without evaluations": (lambda s: _first(s["runs"]).pop("evaluations"), "without an 'evaluations' object"),
    "a run without train time": (lambda s: _first(s["runs"]).pop("train_seconds"), "'train_seconds'"),
    "a short run's train time a string": (
        lambda s: _first(s["short_runs"]).update(train_seconds="600"),
        "'train_seconds' that is not a number",
    ),
    "a run misnamed": (lambda s: s["runs"].update({"vae-seed0": _first(s["runs"])}), "not named <method>/seed=<n>"),
    "a selection FID a string": (
        lambda s: _first(_first(s["selection"])).update(fid="x"),
        "without an 'fid' number (or null: diverged)",
    ),
    "a selection keyed by a word": (
        lambda s: _first(s["selection"]).update(fast={"fid": 1.0}),
        "keyed 'fast', not a learning rate",
    ),
    "a curve cut short": (
        lambda s: _first(s["runs"])["curve"]["fid"].pop(),
        "'curve' that is not equal-length 'steps' and 'fid'",
    ),
    "a machine without its CPU": (lambda s: s["machines"][0].pop("cpu"), "'machines' entry without a 'cpu'"),
    "a selection without its FID": (
        lambda s: _first(_first(s["selection"])).pop("fid"),
        "without an 'fid' number (or null: diverged)",
    ),
    "a selection at lr nan": (lambda s: _first(s["selection"]).update(nan={"fid": 1.0}), "keyed 'nan'"),
    "a seed in other digits": (
        lambda s: s["runs"].update({"vae/seed=\u0663": _first(s["runs"])}),
        "not named <method>/seed=<n>",
    ),
    "an unknown method": (lambda s: s["protocol"]["methods"].append("nope"), "method(s) 'nope' this installation"),
    "a protocol number as a string": (
        lambda s: s["protocol"].update(steps="9370"),
        "has protocol 'steps' \"9370\", not a JSON number",
    ),
}


@pytest.mark.parametrize("fault", sorted(STATE_FAULTS))
def test_a_results_json_no_run_wrote_is_refused_with_the_field_named(tmp_path, fault):
    edit, phrase = STATE_FAULTS[fault]
    path = str(tmp_path / "results.json")
    json.dump(_edited_state(edit), open(path, "w"))
    with pytest.raises(ValueError) as caught:
        comparison.read_state(path)
    message = str(caught.value)
    assert message.startswith(path) and phrase in message and "git checkout" in message, message


def test_a_machine_whose_core_count_python_could_not_tell_is_kept():
    state = _edited_state(lambda s: s["machines"].append({"cpu": "unknown", "cpu_count": None}))
    assert comparison.state_problem(state) is None


def _fair_report(tmp_path, docs):
    return run_python(
        [
            "-m",
            "pga_tf.tools.results",
            "--protocol=fair",
            "--report_only",
            f"--runs_dir={tmp_path / 'runs'}",
            f"--docs_dir={docs}",
            "--results_md=",
        ]
    )


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["cut short", "not an object"])
def test_the_fair_tool_refuses_a_damaged_results_json_in_one_line_and_writes_nothing(tmp_path, how):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(FAIR_RESULTS, docs / "results.json")
    phrase = _damage(str(docs / "results.json"), how)
    before = snapshot(docs)
    assert_one_line_error(_fair_report(tmp_path, docs), f"{docs / 'results.json'} {phrase}", "git checkout")
    assert snapshot(docs) == before and not (tmp_path / "runs").exists()


@pytest.mark.e2e
def test_report_only_without_a_results_json_says_to_run_the_protocol_first(tmp_path):
    docs = tmp_path / "docs"
    assert_one_line_error(_fair_report(tmp_path, docs), "--report_only: no", "run the protocol first")
    assert not docs.exists()


# ------------------------------------------------------------- the reference results tool's files
def _results_tool(tmp_path, *flags):
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    for split, n in (("train", 16), ("t10k", 8)):
        write_idx(str(data / f"{split}-images-idx3-ubyte.gz"), np.zeros((n, 28, 28), np.uint8))
    return run_python(
        [
            "-m",
            "pga_tf.tools.results",
            "--methods=ae",
            "--train_steps=2",
            f"--data_dir={data}",
            f"--runs_dir={tmp_path / 'runs'}",
            f"--docs_dir={tmp_path / 'docs'}",
            *flags,
        ]
    )


@pytest.mark.e2e
@pytest.mark.parametrize(
    "content, phrase",
    [
        (None, "is not valid JSON"),
        ({"seed": "1", "dataset": "fashion_mnist", "train_steps": 2, "epochs": 0}, 'has seed "1", not an integer'),
        (
            {"seed": 1, "dataset": "fashion_mnist", "train_steps": 2, "epochs": 0, "methods": []},
            "has no 'methods' object",
        ),
        (
            {
                "seed": 1,
                "dataset": "fashion_mnist",
                "train_steps": 2,
                "epochs": 0,
                "methods": {"ae": {"curve": {"steps": [1], "fid": [None]}}},
            },
            "a curve of 'ae' without equal-length 'steps' and 'fid' lists of numbers",
        ),
    ],
)
def test_a_damaged_extra_results_file_is_refused_before_anything_trains(tmp_path, content, phrase):
    extra = tmp_path / "seed1.json"
    extra.write_text(
        '{"seed": 1, "meth' if content is None else json.dumps({"fid_every": 0, "fid_samples": 5000, **content})
    )
    proc = _results_tool(tmp_path, f"--extra_results={extra}")
    assert_one_line_error(proc, str(extra), phrase)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "docs").exists()


@pytest.mark.e2e
@pytest.mark.parametrize(
    "text, phrase",
    [
        ('{"train_seconds": 12.5, "eval": {"pri', "is not valid JSON"),
        ('{"train_seconds": "12.5"}', 'has train_seconds "12.5", not a number'),
        ('{"train_seconds": 1, "eval": []}', "has no 'eval' object"),
        ('{"train_seconds": NaN}', "holds NaN"),
        ('{"train_seconds": 1, "eval": {"prior": {"command": "python evaluate.py"}}}', "{command, seconds}"),
    ],
)
def test_a_damaged_timing_file_is_one_line_that_says_what_deleting_it_costs(tmp_path, text, phrase):
    runs = tmp_path / "runs"
    runs.mkdir()
    timing = runs / "ae.timing.json"
    timing.write_text(text)
    proc = _results_tool(tmp_path)
    assert_one_line_error(proc, str(timing), phrase, "the trained run is kept")


@pytest.mark.e2e
def test_every_method_s_files_are_read_before_the_first_method_trains(tmp_path):
    runs = tmp_path / "runs"
    (runs / "vae").mkdir(parents=True)
    (runs / "vae" / "config.json").write_text("{")
    proc = _results_tool(tmp_path, "--methods=ae,vae")
    assert_one_line_error(proc, str(runs / "vae" / "config.json"), "is not valid JSON")
    (runs / "vae" / "config.json").unlink()
    (runs / "vae.timing.json").write_text("[]")
    proc = _results_tool(tmp_path, "--methods=ae,vae")
    assert_one_line_error(proc, str(runs / "vae.timing.json"), "does not hold a JSON object")
    assert sorted(os.listdir(runs)) == ["vae", "vae.timing.json"], "ae trained first"
