"""The console scripts (pyproject.toml's [project.scripts]) are the same programs as `python train.py`
and `python -m <tool>`: the same flags, the same `error:` line, the same run."""

import os
import re
import subprocess
import sys

import pytest

from pga_tf import cli
from tests.helpers import ROOT, TINY, USER_ENV

tomllib = pytest.importorskip("tomllib")

BIN = os.path.dirname(sys.executable)  # where `pip install -e .` put the scripts of this venv

# Each script and the `python ...` form it stands for.
SCRIPTS = {
    "pga-train": ["train.py"],
    "pga-evaluate": ["evaluate.py"],
    "pga-export": ["export_savedmodel.py"],
    "pga-results": ["-m", "pga_tf.tools.results"],
    "pga-bench": ["-m", "pga_tf.tools.bench"],
    "pga-classifier": ["-m", "pga_tf.evaluation.classifier"],
    "pga-standins": ["-m", "pga_tf.tools.standins"],
}


def script(name, *args, cwd, env=None, timeout=300):
    return subprocess.run(
        [os.path.join(BIN, name), *args], cwd=cwd, env=env or USER_ENV, capture_output=True, text=True, timeout=timeout
    )


def python(name, *args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, *SCRIPTS[name], *args],
        cwd=ROOT,
        env=env or USER_ENV,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def flag_names(help_text: str) -> set[str]:
    return set(re.findall(r"--(?:\[no\])?([A-Za-z]\w*)", help_text))


def test_pyproject_declares_exactly_these_scripts():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        declared = tomllib.load(f)["project"]["scripts"]
    assert set(declared) == set(SCRIPTS)
    # cli.program recognises a console script by this prefix.
    assert all(name.startswith(cli.SCRIPT_PREFIX) for name in declared)


@pytest.mark.e2e
@pytest.mark.parametrize("name", SCRIPTS)
def test_script_help_lists_the_same_flags_as_the_python_form(name, tmp_path):
    assert os.access(os.path.join(BIN, name), os.X_OK), f"{name} not in {BIN}: pip install -e .[dev]"
    ours = script(name, "--help", cwd=tmp_path)
    theirs = python(name, "--help")
    assert ours.returncode == 0 and ours.stderr == "", ours.stderr
    assert theirs.returncode == 0 and theirs.stderr == "", theirs.stderr
    assert len(flag_names(ours.stdout)) > 3
    assert flag_names(ours.stdout) == flag_names(theirs.stdout)
    # Each names itself as the user started it.
    command = " ".join(["python", *SCRIPTS[name]])
    assert name in ours.stdout and command not in ours.stdout, ours.stdout
    assert command in theirs.stdout and name not in theirs.stdout, theirs.stdout


@pytest.mark.e2e
def test_a_bad_flag_is_one_error_line_as_with_python_train_py(tmp_path):
    flagfile = tmp_path / "bad.cfg"
    flagfile.write_text("--lr=-1\n")
    for args in (["--lr=-1"], [f"--flagfile={flagfile}"], ["--no_such_flag"], ["stray"]):
        ours = script("pga-train", *args, cwd=tmp_path)
        theirs = python("pga-train", *args)
        assert ours.returncode == theirs.returncode == 1, (args, ours.stderr)
        assert ours.stderr == theirs.stderr, args
        assert len(ours.stderr.splitlines()) == 1 and ours.stderr.startswith("error: "), ours.stderr
        assert ours.stdout == "" and os.listdir(tmp_path) == ["bad.cfg"]


@pytest.mark.e2e
def test_pga_train_trains_from_a_flagfile_in_any_directory(tmp_path, idx_dir):
    flagfile = tmp_path / "tiny.cfg"
    flagfile.write_text("\n".join(["--method=ae", f"--data_dir={idx_dir}", *TINY]) + "\n")
    proc = script("pga-train", f"--flagfile={flagfile}", "--train_steps=5", "--run_dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "training ae on fashion_mnist" in proc.stdout, proc.stdout
    assert os.path.exists(tmp_path / "run" / "config.json")


@pytest.mark.e2e
def test_importing_the_commands_defines_no_flag_and_loads_no_tensorflow():
    code = (
        "import sys\n"
        "from absl import flags\n"
        "from pga_tf.commands import evaluate, export_savedmodel, tools, train\n"
        "ours = [f.name for m, fl in flags.FLAGS.flags_by_module_dict().items() if not m.startswith('absl') "
        "for f in fl]\n"
        "print(ours, 'tensorflow' in sys.modules)"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["[]", "False"], proc.stderr


def test_program_is_the_script_name_or_the_python_form(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/venv/bin/pga-train", "--help"])
    assert cli.program("python train.py") == "pga-train"
    doc = "Usage:\n  python train.py --x=1 # a comment\n  python train.py"
    assert cli.help_text(doc=doc, command="python train.py").startswith(
        "Usage:\n  pga-train --x=1       # a comment\n  pga-train\n"
    )
    monkeypatch.setattr(sys, "argv", ["train.py", "--help"])
    assert cli.program("python train.py") == "python train.py"
    assert cli.help_text(doc=doc, command="python train.py").startswith(doc + "\n")
