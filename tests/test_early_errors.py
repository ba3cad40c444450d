"""User errors every program can see before TensorFlow loads are reported before it loads.

Each program runs in a subprocess whose `import tensorflow` (and keras, TFDS) fails loudly: a
sitecustomize.py on PYTHONPATH puts a finder first on sys.meta_path that prints a line and raises.
A program that still ends in exactly one `error:` line with the right message did not need
TensorFlow to find the mistake, whatever the machine's speed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from pga_tf import config
from tests.helpers import ROOT, assert_one_line_error, write_idx

BLOCKED = "TensorFlow was imported"
_SITECUSTOMIZE = f'''
import sys


class _NoTensorFlow:
    """Makes the test fail if the program imports TensorFlow (or what loads it)."""

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf_keras", "tensorflow_datasets"):
            sys.stderr.write("{BLOCKED}: " + name + "\\n")
            raise RuntimeError("{BLOCKED}: " + name)
        return None


sys.meta_path.insert(0, _NoTensorFlow())
'''


@pytest.fixture(scope="module")
def no_tf(tmp_path_factory) -> str:
    """A PYTHONPATH entry whose sitecustomize.py makes `import tensorflow` fail loudly."""
    d = tmp_path_factory.mktemp("no_tf")
    (d / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    return str(d)


def run_without_tf(no_tf: str, args: list[str], cwd: str = ROOT) -> subprocess.CompletedProcess:
    """`python <args>` with TensorFlow unimportable."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([no_tf, ROOT]), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def train(no_tf, *args):
    return run_without_tf(no_tf, [os.path.join(ROOT, "train.py"), *args])


def evaluate(no_tf, *args):
    return run_without_tf(no_tf, [os.path.join(ROOT, "evaluate.py"), *args])


def export(no_tf, *args):
    return run_without_tf(no_tf, [os.path.join(ROOT, "export_savedmodel.py"), *args])


def assert_early_error(proc, *needles):
    assert BLOCKED not in proc.stderr, proc.stderr
    assert_one_line_error(proc, *needles)


@pytest.fixture(scope="module")
def idx_dir(tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("idx")
    rng = np.random.default_rng(0)
    write_idx(d / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (32, 28, 28)))
    write_idx(d / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (16, 28, 28)))
    return str(d)


@pytest.fixture
def run_dir(tmp_path, idx_dir) -> str:
    """A run dir as training leaves it, as far as the early checks read it: its config.json and
    the names of a checkpoint at step 5 (the early checks list checkpoints, never read them)."""
    path = str(tmp_path / "run")
    config.save(config.resolve("lpga", z_dim=4, run_dir=path, data_dir=idx_dir), path)
    os.makedirs(os.path.join(path, "checkpoints"))
    for name in ("ckpt-5.index", "ckpt-5.data-00000-of-00001"):
        open(os.path.join(path, "checkpoints", name), "wb").close()
    return path


# ----------------------------------------------------------------------------- the harness
@pytest.mark.e2e
def test_the_harness_stops_a_program_that_imports_tensorflow(no_tf, run_dir, idx_dir, tmp_path):
    proc = train(no_tf, f"--run_dir={tmp_path / 'fresh'}", f"--data_dir={idx_dir}", "--train_steps=1")
    assert proc.returncode != 0 and BLOCKED in proc.stderr, proc.stderr
    proc = run_without_tf(no_tf, ["-c", "import tensorflow"])
    assert proc.returncode != 0 and BLOCKED in proc.stderr


# ---------------------------------------------------------------------------------- train.py
@pytest.mark.e2e
def test_train_missing_data_dir(no_tf, tmp_path):
    proc = train(no_tf, f"--run_dir={tmp_path / 'r'}", f"--data_dir={tmp_path / 'nope'}")
    assert_early_error(proc, f"{tmp_path / 'nope'} does not exist")
    assert not os.path.exists(tmp_path / "r")


@pytest.mark.e2e
def test_train_data_dir_one_level_too_high_suggests_the_subfolder(no_tf, tmp_path, idx_dir):
    above = tmp_path / "datasets"
    above.mkdir()
    os.symlink(idx_dir, above / "fashion-mnist")
    proc = train(no_tf, f"--run_dir={tmp_path / 'r'}", f"--data_dir={above}")
    assert_early_error(
        proc,
        "train-images-idx3-ubyte[.gz]",
        ".png/.jpg/.jpeg/.bmp",
        "all its subfolders",
        f"did you mean --data_dir={above / 'fashion-mnist'}?",
    )


@pytest.mark.e2e
def test_train_refuses_a_busy_run_dir(no_tf, run_dir, idx_dir):
    fd = os.open(os.path.join(run_dir, ".lock"), os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        proc = train(no_tf, f"--run_dir={run_dir}", "--z_dim=4", f"--data_dir={idx_dir}")
    finally:
        os.close(fd)
    assert_early_error(proc, f"run dir {run_dir} is in use by another training")


@pytest.mark.e2e
def test_train_refuses_another_runs_dir(no_tf, run_dir, idx_dir):
    proc = train(no_tf, f"--run_dir={run_dir}", "--z_dim=8", f"--data_dir={idx_dir}")
    assert_early_error(
        proc, f"{run_dir} holds a different run", "--z_dim: run has 4, asked for 8", "the flagfile) it was trained with"
    )


@pytest.mark.e2e
def test_train_refuses_a_damaged_config_json(no_tf, run_dir, idx_dir):
    with open(os.path.join(run_dir, config.CONFIG_FILE), "w") as f:
        f.write("{not json")
    proc = train(no_tf, f"--run_dir={run_dir}", f"--data_dir={idx_dir}")
    assert_early_error(proc, config.CONFIG_FILE)


@pytest.mark.e2e
def test_train_bad_flag_and_unreadable_flagfile(no_tf, tmp_path):
    assert_early_error(train(no_tf, "--z_dim=0"), "--z_dim must be positive")
    assert_early_error(train(no_tf, f"--flagfile={tmp_path / 'nope.cfg'}"), "nope.cfg")


@pytest.mark.e2e
def test_a_flagfile_that_is_not_utf8_is_named_in_one_line_even_when_another_names_it(no_tf, tmp_path):
    bad, outer = tmp_path / "latin1.cfg", tmp_path / "outer.cfg"
    bad.write_bytes("--method=lpga\n--run_dir=runs/caf\xe9\n".encode("latin-1"))  # a Latin-1 editor's save
    outer.write_text(f"--flagfile={bad}\n")
    for flagfile in (bad, outer):
        proc = train(no_tf, f"--flagfile={flagfile}")
        assert_early_error(proc, f"{bad} is not UTF-8 text (byte 32: b'\\xe9')")
    assert_early_error(evaluate(no_tf, f"--flagfile={bad}"), f"{bad} is not UTF-8 text")
    # absl's other spellings, and a bad byte past its 8 KB read chunk, counted in the file.
    assert_early_error(train(no_tf, f"-flagfile={bad}"), f"{bad} is not UTF-8 text")
    big = tmp_path / "big.cfg"
    big.write_bytes(b"# " + b"x" * 15000 + b"\n--run_dir=caf\xe9\n")
    assert_early_error(train(no_tf, "--flagfile", str(big)), f"{big} is not UTF-8 text (byte 15016:")


@pytest.mark.e2e
@pytest.mark.parametrize("flag", ["--lr=inf", "--lr=nan", "--zn_rec=inf", "--wae_lambda=1e999"])
def test_a_float_flag_that_is_not_finite_is_refused_at_parse_time(no_tf, flag, tmp_path):
    """inf passed "positive" and reached config.json, which JSON cannot hold: a traceback."""
    name = flag.split("=")[0]
    assert_early_error(train(no_tf, "--method=wae", flag, f"--run_dir={tmp_path / 'run'}"), f"{name} must be")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------- evaluate.py
@pytest.mark.e2e
def test_evaluate_missing_run_dir(no_tf, tmp_path):
    assert_early_error(evaluate(no_tf, f"--run_dir={tmp_path / 'nope'}"), "does not exist")


@pytest.mark.e2e
def test_evaluate_data_dir_without_the_test_split(no_tf, run_dir, tmp_path):
    proc = evaluate(no_tf, f"--run_dir={run_dir}", f"--data_dir={tmp_path / 'nope'}")
    assert_early_error(proc, f"{tmp_path / 'nope'} does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = evaluate(no_tf, f"--run_dir={run_dir}", f"--data_dir={empty}")
    assert_early_error(proc, "for the test split", "t10k-images-idx3-ubyte[.gz]", "DIR/test/")


@pytest.mark.e2e
def test_evaluate_refuses_a_dataset_other_than_the_runs(no_tf, run_dir):
    proc = evaluate(no_tf, f"--run_dir={run_dir}", "--dataset=cifar10")
    assert_early_error(proc, "--dataset=cifar10 is for --baselines", "trained on fashion_mnist")
    assert sorted(os.listdir(run_dir)) == ["checkpoints", "config.json"]


@pytest.mark.e2e
def test_evaluate_a_checkpoint_step_not_kept_or_no_checkpoint(no_tf, run_dir):
    proc = evaluate(no_tf, f"--run_dir={run_dir}", "--checkpoint_step=3")
    assert_early_error(proc, "keeps no checkpoint at step 3 (it keeps steps 5;")
    assert not os.path.exists(os.path.join(run_dir, "eval"))
    shutil.rmtree(os.path.join(run_dir, "checkpoints"))
    assert_early_error(evaluate(no_tf, f"--run_dir={run_dir}"), "has no checkpoint yet")
    assert_early_error(export(no_tf, f"--run_dir={run_dir}"), "has no checkpoint yet")
    assert sorted(os.listdir(run_dir)) == ["config.json"]


@pytest.mark.e2e
def test_evaluate_validation_of_a_run_without_holdout(no_tf, run_dir):
    proc = evaluate(no_tf, f"--run_dir={run_dir}", "--real_split=validation")
    assert_early_error(proc, "--real_split=validation needs a run trained with --holdout=N")


@pytest.mark.e2e
def test_evaluate_baselines_without_data(no_tf, tmp_path):
    proc = evaluate(no_tf, "--baselines", f"--data_dir={tmp_path / 'nope'}")
    assert_early_error(proc, f"{tmp_path / 'nope'} does not exist")


# ----------------------------------------------------------------------- export_savedmodel.py
@pytest.mark.e2e
def test_export_refuses_an_existing_export_dir(no_tf, run_dir, tmp_path):
    existing = tmp_path / "exported"
    existing.mkdir()
    (existing / "saved_model.pb").write_bytes(b"an earlier export")
    proc = export(no_tf, f"--run_dir={run_dir}", f"--export_dir={existing}")
    assert_early_error(proc, f"export dir {existing} already exists; pass --overwrite")
    assert (existing / "saved_model.pb").read_bytes() == b"an earlier export"


@pytest.mark.e2e
def test_export_missing_run_dir_and_run_dir_without_config(no_tf, tmp_path):
    assert_early_error(export(no_tf, f"--run_dir={tmp_path / 'nope'}"), "does not exist")
    bare = tmp_path / "bare"
    bare.mkdir()
    assert_early_error(export(no_tf, f"--run_dir={bare}"), f"{bare} has no config.json")
    assert os.listdir(bare) == []


@pytest.mark.e2e
def test_export_data_dir_without_the_training_images(no_tf, run_dir, tmp_path):
    proc = export(no_tf, f"--run_dir={run_dir}", "--sampler=gmm", f"--data_dir={tmp_path / 'nope'}")
    assert_early_error(proc, f"{tmp_path / 'nope'} does not exist")
    assert not os.path.exists(os.path.join(run_dir, "saved_model"))


def test_config_json_written_by_the_fixture_reads_back(run_dir):
    with open(os.path.join(run_dir, config.CONFIG_FILE)) as f:
        assert json.load(f)["z_dim"] == 4


# ------------------------------------------------------------------------------------- tools
def tool(no_tf, module, *args):
    return run_without_tf(no_tf, ["-m", module, *args])


@pytest.mark.e2e
def test_bench_flag_mistakes_as_module_and_console_script(no_tf):
    assert_early_error(tool(no_tf, "pga_tf.tools.bench", "--methods=nope"), "unknown method(s) ['nope']")
    assert_early_error(tool(no_tf, "pga_tf.tools.bench", "--steps=0"), "--steps must be positive")
    script = os.path.join(os.path.dirname(sys.executable), "pga-bench")
    assert_early_error(run_without_tf(no_tf, [script, "--methods=nope"]), "unknown method(s) ['nope']")


@pytest.mark.e2e
def test_log_det_precision_run_dir_and_flag_mistakes(no_tf, tmp_path, run_dir):
    module = "pga_tf.tools.log_det_precision"
    assert_early_error(tool(no_tf, module, f"--run_dir={tmp_path / 'nope'}"), "does not exist")
    assert_early_error(tool(no_tf, module), "--run_dir")
    assert_early_error(tool(no_tf, module, f"--run_dir={run_dir}", "--examples=x"), "--examples")


@pytest.mark.e2e
def test_classifier_data_mistakes(no_tf, tmp_path, idx_dir):
    module = "pga_tf.evaluation.classifier"
    out = tmp_path / "classifiers"
    proc = tool(no_tf, module, f"--data_dir={tmp_path / 'nope'}", f"--out={out}")
    assert_early_error(proc, f"data_dir {tmp_path / 'nope'} does not exist", "train-labels-idx1-ubyte[.gz]")
    above = tmp_path / "datasets"
    above.mkdir()
    os.symlink(idx_dir, above / "fashion-mnist")
    proc = tool(no_tf, module, f"--data_dir={above}", f"--out={out}")
    assert_early_error(proc, f"did you mean --data_dir={above / 'fashion-mnist'}?")
    proc = tool(no_tf, module, f"--data_dir={idx_dir}", f"--out={out}")  # images, no labels
    assert_early_error(proc, f"{idx_dir} has no train-labels-idx1-ubyte[.gz]")
    assert not out.exists()


@pytest.mark.e2e
def test_classifier_out_and_name_mistakes_are_found_before_training(no_tf, tmp_path, idx_dir):
    module = "pga_tf.evaluation.classifier"
    for name in ("../evil", "a/b", ".hidden", ".."):
        proc = tool(no_tf, module, f"--data_dir={idx_dir}", f"--out={tmp_path / 'o'}", f"--name={name}")
        assert_early_error(proc, f"--name={name!r} must be a file name without directories")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    proc = tool(no_tf, module, f"--data_dir={idx_dir}", f"--out={afile}")
    assert_early_error(proc, f"--out={afile} is a file, not a directory")
    proc = tool(no_tf, module, f"--data_dir={idx_dir}", f"--out={afile / 'x'}")
    assert_early_error(proc, f"--out={afile / 'x'}: {afile} is a file, not a directory")
    held = tmp_path / "held"
    held.mkdir()
    (held / "mine.keras").write_bytes(b"old")
    proc = tool(no_tf, module, f"--data_dir={idx_dir}", f"--out={held}", "--name=mine")
    assert_early_error(proc, f"{held / 'mine.keras'} exists", "pass --overwrite to replace it")
    assert sorted(os.listdir(tmp_path)) == ["afile", "held"] and os.listdir(held) == ["mine.keras"]
    assert afile.read_text() == "keep" and (held / "mine.keras").read_bytes() == b"old"


@pytest.mark.e2e
def test_an_output_file_that_cannot_be_written_is_refused_before_any_work(no_tf, run_dir, tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    adir = tmp_path / "adir"
    adir.mkdir()
    cases = [
        (["evaluate.py", f"--run_dir={run_dir}"], "out"),
        (["evaluate.py", "--baselines"], "out"),
        (["-m", "pga_tf.tools.bench"], "json"),
        (["-m", "pga_tf.tools.log_det_precision", f"--run_dir={run_dir}"], "json"),
    ]
    for program, flag in cases:
        for path, why in ((afile / "x.json", f"{afile} is a file, not a directory"), (adir, "is a directory")):
            proc = run_without_tf(no_tf, [*program, f"--{flag}={path}"])
            assert_early_error(proc, f"--{flag}={path}", why)
    assert afile.read_text() == "keep" and os.listdir(adir) == []
    assert sorted(os.listdir(run_dir)) == ["checkpoints", "config.json"]


@pytest.mark.parametrize("directory", [False, True])
def test_output_path_problems_against_the_filesystem(tmp_path, directory):
    problem = lambda path: config.output_path_problem("o", str(path), directory)  # noqa: E731
    afile, adir = tmp_path / "afile", tmp_path / "adir"
    afile.write_text("x")
    adir.mkdir()
    os.symlink(tmp_path / "gone", tmp_path / "dangling")
    os.symlink(adir, tmp_path / "todir")
    assert problem("") == f"--o is empty; give a {'directory' if directory else 'file'} path"
    assert (
        problem(tmp_path / "dangling")
        == f"--o={tmp_path / 'dangling'} is a broken symbolic link (to {tmp_path / 'gone'})"
    )
    assert problem(afile / "x") == f"--o={afile / 'x'}: {afile} is a file, not a directory"
    assert problem(tmp_path / "new" / "deeper") is None  # missing parents are made
    if directory:
        assert problem(f"{afile}/") == f"--o={afile} is a file, not a directory"  # the slash changes nothing
        assert problem(adir) is None and problem(f"{adir}/") is None and problem(tmp_path / "todir") is None
    else:
        assert problem(adir) == f"--o={adir} is a directory; give a file path"
        assert problem(f"{afile}/") == f"--o={afile}/ ends in a separator; give a file path"
        assert problem(afile) is None  # replaced


@pytest.mark.e2e
def test_results_output_mistakes_are_refused_before_any_run(no_tf, tmp_path, idx_dir):
    afile = tmp_path / "afile"
    afile.write_text("keep")
    base = ["pga_tf.tools.results", f"--data_dir={idx_dir}", "--methods=ae", "--train_steps=1"]
    dirs = [f"--runs_dir={tmp_path / 'r'}", f"--docs_dir={tmp_path / 'd'}"]
    proc = tool(no_tf, *base, f"--runs_dir={afile / 'r'}", f"--docs_dir={tmp_path / 'd'}")
    assert_early_error(proc, f"--runs_dir={afile / 'r'}: {afile} is a file")
    proc = tool(no_tf, *base, f"--runs_dir={tmp_path / 'r'}", f"--docs_dir={afile}")
    assert_early_error(proc, f"--docs_dir={afile} is a file, not a directory")
    fair = [*base, "--protocol=fair", *dirs]
    assert_early_error(tool(no_tf, *fair, f"--results_md={tmp_path}"), f"--results_md={tmp_path} is a directory")
    proc = tool(no_tf, *fair, f"--readme={tmp_path / 'nope.md'}")
    assert_early_error(proc, f"--readme={tmp_path / 'nope.md'} does not exist")
    assert sorted(os.listdir(tmp_path)) == ["afile"] and afile.read_text() == "keep"
    # --protocol=fair's own default dirs (runs/fair, docs/fair) are the ones checked.
    work = tmp_path / "work"
    (work / "runs").mkdir(parents=True)
    (work / "runs" / "fair").write_text("a file")
    proc = run_without_tf(no_tf, ["-m", *base, "--protocol=fair"], cwd=work)
    assert_early_error(proc, "--runs_dir=runs/fair is a file, not a directory")
    (work / "runs" / "results").write_text("the other protocol's default: not used by fair")
    (work / "runs" / "fair").unlink()
    proc = run_without_tf(no_tf, ["-m", *base, "--protocol=fair", "--report_only", "--results_md="], cwd=work)
    assert "--runs_dir=runs/results" not in proc.stderr, proc.stderr


@pytest.mark.e2e
def test_standins_missing_source(no_tf, tmp_path):
    proc = tool(no_tf, "pga_tf.tools.standins", f"--source_dir={tmp_path / 'nope'}", f"--out={tmp_path / 'out'}")
    assert_early_error(proc, "train-images-idx3-ubyte[.gz]")
    assert not (tmp_path / "out").exists()


@pytest.mark.e2e
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--out", "--train_count=10"], "--out got '--train_count=10', which looks like a flag"),
        (["--out={out}", "--train_count=-5"], "--train_count"),
        (["--out={out}", "--test_count=-3"], "--test_count"),
        (["--out={out}", "--source_dir", "--train_count=10"], "--source_dir got '--train_count=10'"),
    ],
)
def test_standins_flag_mistakes_write_nothing(no_tf, tmp_path, args, needle):
    proc = run_without_tf(
        no_tf, ["-m", "pga_tf.tools.standins", *(a.format(out=tmp_path / "out") for a in args)], cwd=tmp_path
    )
    assert_early_error(proc, needle)
    assert os.listdir(tmp_path) == []  # neither --out nor a directory named after a flag


@pytest.mark.e2e
def test_results_data_dir_without_the_data_writes_nothing(no_tf, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    runs_dir, docs_dir = tmp_path / "runs", tmp_path / "docs"
    proc = tool(
        no_tf, "pga_tf.tools.results", f"--data_dir={empty}", f"--runs_dir={runs_dir}", f"--docs_dir={docs_dir}"
    )
    assert_early_error(proc, f"no fashion_mnist data in {empty}", "an empty directory")
    assert not runs_dir.exists() and not docs_dir.exists()


@pytest.mark.e2e
def test_train_model_and_dataset_of_other_image_sizes(no_tf, tmp_path):
    proc = train(no_tf, f"--run_dir={tmp_path / 'r'}", "--model=conv_32")
    assert_early_error(proc, "--model conv_32 takes 32x32 images; --dataset fashion_mnist has 28x28")
    assert not os.path.exists(tmp_path / "r")


@pytest.mark.e2e
def test_missing_classifier_or_inception_weights(no_tf, run_dir, tmp_path):
    nope = tmp_path / "nope.keras"
    assert_early_error(
        evaluate(no_tf, f"--run_dir={run_dir}", f"--classifier={nope}"), f"no domain classifier at {nope}"
    )
    weights = tmp_path / "nope.h5"
    proc = evaluate(no_tf, "--baselines", "--features=inception", f"--inception_weights={weights}")
    assert_early_error(proc, f"Inception weights file {weights} does not exist")
    proc = train(no_tf, f"--run_dir={tmp_path / 'r'}", "--fid_every=10", f"--classifier={nope}")
    assert_early_error(proc, f"no domain classifier at {nope}")
    assert not os.path.exists(tmp_path / "r")


@pytest.mark.e2e
def test_a_classifier_of_another_dataset(no_tf, tmp_path):
    """The repository's Fashion-MNIST classifier, asked to score MNIST baselines."""
    classifier = os.path.join(ROOT, "classifiers", "fashion_mnist_cnn.keras")
    if not os.path.exists(classifier):
        pytest.skip("no trained classifier in classifiers/")
    proc = evaluate(no_tf, "--baselines", "--dataset=mnist", f"--classifier={classifier}", f"--data_dir={tmp_path}")
    assert_one_line_error(proc)  # the data dir is checked first: empty
    idx = tmp_path / "mnist"
    idx.mkdir()
    write_idx(idx / "train-images-idx3-ubyte.gz", np.zeros((4, 28, 28)))
    write_idx(idx / "t10k-images-idx3-ubyte.gz", np.zeros((4, 28, 28)))
    proc = evaluate(no_tf, "--baselines", "--dataset=mnist", f"--classifier={classifier}", f"--data_dir={idx}")
    assert_early_error(proc, "was trained on fashion_mnist, not mnist")


@pytest.mark.e2e
def test_the_fair_protocol_refuses_a_learning_rate_that_is_not_finite(no_tf):
    proc = tool(no_tf, "pga_tf.tools.results", "--protocol=fair", "--lr_grid=3e-4,inf")
    assert_early_error(proc, "--lr_grid must be positive finite numbers")


@pytest.mark.e2e
@pytest.mark.parametrize("flags", [["--cores=4096"], ["--jobs=4096"], ["--cores=a"]])
def test_the_fair_protocol_refuses_cores_this_machine_does_not_let_it_use(no_tf, flags, tmp_path):
    """taskset would refuse each unit's command only once its run dir was made."""
    proc = tool(no_tf, "pga_tf.tools.results", "--protocol=fair", *flags, f"--runs_dir={tmp_path / 'runs'}")
    assert_early_error(proc, "--cores must be core numbers this machine lets it use")
    assert not (tmp_path / "runs").exists()


@pytest.mark.e2e
def test_the_fair_protocol_refuses_an_unknown_unit_kind(no_tf, tmp_path):
    proc = tool(no_tf, "pga_tf.tools.results", "--protocol=fair", "--unit_kinds=short,long", f"--runs_dir={tmp_path}/r")
    assert_early_error(proc, "--unit_kinds must be a subset of select,seed,short")
    assert not (tmp_path / "r").exists()
