"""A run's config.json empty, cut short or hand-edited: one line naming the file and what is
wrong in it, the same from train.py, evaluate.py and export_savedmodel.py, and nothing written."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

from pga_tf import config as config_lib
from tests.helpers import ROOT, TINY, assert_one_line_error, snapshot


def _write(run_dir, text):
    os.makedirs(run_dir, exist_ok=True)
    with open(os.path.join(run_dir, config_lib.CONFIG_FILE), "w") as f:
        f.write(text)


def _saved(run_dir, **edits):
    """The config.json train.py writes, with `edits` (None deletes a key)."""
    raw = json.loads(config_lib.for_method("lpga", run_dir=str(run_dir)).to_json())
    for key, value in edits.items():
        if value is None:
            del raw[key]
        else:
            raw[key] = value
    return json.dumps(raw, indent=2)


def _faults(run_dir):
    whole = _saved(run_dir)
    return {
        "empty": ("", "is empty"),
        "cut short": (whole[: len(whole) // 2], "is not valid JSON"),
        "not an object": ("[1, 2]", "does not hold a JSON object"),
        "string for an integer": (_saved(run_dir, z_dim="12"), "'z_dim' is \"12\", not an integer"),
        "string for a boolean": (_saved(run_dir, use_bn="false"), "'use_bn' is \"false\", not true or false"),
        "number for a string": (_saved(run_dir, model=3), "'model' is 3, not a string"),
        "unknown key": (_saved(run_dir, lerning_rate=0.1), "unknown key(s) 'lerning_rate'"),
        "missing key": (_saved(run_dir, model=None), "lacks key(s) 'model'"),
        "invalid value": (_saved(run_dir, z_dim=0), "--z_dim must be positive"),
        "unknown method": (_saved(run_dir, method="lgpa"), "unknown method 'lgpa'"),
    }


@pytest.mark.parametrize("fault", sorted(_faults("x")))
def test_a_bad_config_json_is_one_error_naming_the_file_and_the_fault(tmp_path, fault):
    run_dir = str(tmp_path / "run")
    text, needle = _faults(run_dir)[fault]
    _write(run_dir, text)
    with pytest.raises(config_lib.ConfigError) as caught:
        config_lib.load(run_dir)
    message = str(caught.value)
    assert os.path.join(run_dir, "config.json") in message and needle in message, message
    assert "\n" not in message


def test_a_good_config_json_and_an_older_one_load(tmp_path):
    run_dir = str(tmp_path / "run")
    cfg = config_lib.for_method("wae", run_dir=run_dir, z_dim=5)
    config_lib.save(cfg, run_dir)
    assert config_lib.load(run_dir) == cfg
    # A file written before --precision, --log_det and the baselines' keys existed.
    old = json.loads(cfg.to_json())
    for key in ("precision", "log_det", "wae_lambda", "fused"):
        del old[key]
    old["mixed_precision"] = True
    _write(run_dir, json.dumps(old))
    loaded = config_lib.load(run_dir)
    assert loaded.precision == "mixed_float16" and loaded.log_det == config_lib.Config.log_det
    assert (
        dataclasses.replace(
            loaded, precision=cfg.precision, log_det=cfg.log_det, wae_lambda=cfg.wae_lambda, fused=cfg.fused
        )
        == cfg
    )


@pytest.mark.e2e
def test_every_entry_point_gives_the_same_line_and_writes_nothing(tmp_path, idx_dir):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    run_dir = str(tmp_path / "run")
    _write(run_dir, _saved(run_dir, z_dim="12", data_dir=idx_dir))
    before = snapshot(run_dir)
    commands = {
        "train.py": ["--data_dir", idx_dir, *TINY, "--train_steps=5"],
        "evaluate.py": ["--num_samples=10"],
        "export_savedmodel.py": [],
    }
    lines = set()
    for script, args in commands.items():
        proc = subprocess.run(
            [sys.executable, os.path.join(ROOT, script), f"--run_dir={run_dir}", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert_one_line_error(proc, os.path.join(run_dir, "config.json"), "'z_dim' is \"12\"")
        lines.add(proc.stderr.strip())
        assert snapshot(run_dir) == before and sorted(os.listdir(run_dir)) == ["config.json"], script
    assert len(lines) == 1, lines
