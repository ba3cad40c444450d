"""Flags: every flagfile parses to the reference command it names; user errors end in one line."""

import glob
import os
import shlex

import pytest
from absl import flags

from pga_tf import cli, config
from tests.helpers import ROOT, parse

FLAGFILES = sorted(glob.glob(os.path.join(ROOT, "flags", "*.cfg")))

if "method" not in flags.FLAGS:
    cli.define_train_flags()

# The reference's argparse names (zj10/PGA src/train_*.py) and ours.
REFERENCE_NAMES = {
    "--dataset": "dataset",
    "--model": "model",
    "--epoch": "epochs",
    "--lr": "lr",
    "--bn": "use_bn",
    "--z_dim": "z_dim",
    "--zn_rec": "zn_rec",
    "--zh_rec": "zh_rec",
    "--nll": "nll",
    "--vrec": "vrec",
    "--vkld": "vkld",
    "--init_steps": "init_steps",
}
REFERENCE_DATASETS = {
    "mnist": "mnist",
    "cifar10": "cifar10",
    "celeba": "celeb_a",
    "fashion_mnist": "fashion_mnist",
}  # the last: ours, on the MNIST setting


def reference_config(comment: str) -> config.Config | None:
    """The Config a reference README command asks for, read independently of our flagfile."""
    words = shlex.split(comment)
    scripts = [w for w in words if w.startswith("train_") and w.endswith(".py")]
    if not scripts:
        return None
    method = scripts[0][len("train_") : -len(".py")]
    args = words[words.index(scripts[0]) + 1 :]
    values = {"dataset": "mnist", "model": "conv_mnist"}
    for name, value in zip(args[::2], args[1::2]):
        key = REFERENCE_NAMES[name]
        if key == "use_bn":
            values[key] = value.lower() in ("true", "yes")
        elif key == "dataset":
            values[key] = REFERENCE_DATASETS[value]
        elif key in ("model",):
            values[key] = value
        else:
            values[key] = (
                type(getattr(config.Config, key, 0.0))(float(value))
                if key in ("epochs", "z_dim", "init_steps")
                else float(value)
            )
    return config.for_method(method, **values)


@pytest.mark.parametrize("path", FLAGFILES, ids=os.path.basename)
def test_flagfile_parses_to_its_reference_command(path):
    cfg = parse([f"--flagfile={path}"])
    with open(path) as f:
        comment = f.readline().lstrip("# ").split(":", 1)[1]
    want = reference_config(comment)
    if want is None:  # Fashion-MNIST and baseline settings: the nets of a reference setting
        assert cfg.method in os.path.basename(path)
        return
    for key in (
        "method",
        "dataset",
        "model",
        "epochs",
        "lr",
        "use_bn",
        "z_dim",
        "init_steps",
        "zn_rec",
        "zh_rec",
        "nll",
        "vrec",
        "vkld",
        "batch_size",
        "optimizer",
    ):
        assert getattr(cfg, key) == pytest.approx(getattr(want, key)), key


def test_method_defaults_follow_the_reference_scripts():
    lpga, vpga, lvpga = (parse([f"--method={m}"]) for m in ("lpga", "vpga", "lvpga"))
    assert (lpga.z_dim, lpga.init_steps, lpga.zn_rec, lpga.nll) == (12, 3000, 6e-2, 1.5e-2)
    assert (vpga.z_dim, vpga.zn_rec, vpga.vrec, vpga.vkld) == (32, 6e-2, 1e-2, 3e-2)
    assert (lvpga.z_dim, lvpga.init_steps, lvpga.vrec, lvpga.vkld, lvpga.nll) == (32, 3000, 1.5e-2, 2e-2, 1e-2)
    assert lpga.lr == 0.1 and lpga.batch_size == 64 and lpga.epochs == 600 and not lpga.use_bn


def test_flags_override_a_flagfile():
    cfg = parse([f"--flagfile={os.path.join(ROOT, 'flags', 'lpga_cifar10.cfg')}", "--z_dim=64"])
    assert cfg.z_dim == 64 and cfg.model == "conv_32"


@pytest.mark.parametrize(
    "argv", [["--lr=0"], ["--batch_size=0"], ["--z_dim=-1"], ["--method=gan"], ["--train_steps=-5"], ["--nll=-1"]]
)
def test_bad_flags_are_rejected_at_parse_time(argv):
    with pytest.raises(flags.IllegalFlagValueError):
        parse(argv)


def test_guarded_turns_user_errors_into_one_line(capsys):
    def main(argv):
        raise OSError(28, "No space left on device", "/runs/x/ckpt")

    with pytest.raises(SystemExit) as exit_info:
        cli.guarded(main, (OSError,))(["prog"])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: [Errno 28] No space left on device: '/runs/x/ckpt'"]


# Each entry point with a flagfile whose last line is a bare path/name flag: absl hands that
# flag the next argument as its value. (entry point, the bare flag, the argument it swallows,
# further arguments that make a run end quickly if the value were accepted.)
SWALLOWING = {
    "train": (["train.py"], "--run_dir", "--seed=5", ["--data_dir=missing", "--train_steps=1"]),
    "train_data_dir": (["train.py"], "--data_dir", "--seed=5", ["--train_steps=1"]),
    "evaluate": (["evaluate.py"], "--out", "--seed=5", ["--run_dir=missing"]),
    "export": (["export_savedmodel.py"], "--export_dir", "--overwrite", ["--run_dir=missing"]),
    "results": (
        ["-m", "pga_tf.tools.results"],
        "--docs_dir",
        "--seed=5",
        ["--methods=ae", "--train_steps=1", "--data_dir=missing"],
    ),
    "classifier": (["-m", "pga_tf.evaluation.classifier"], "--name", "--seed=5", ["--data_dir=missing"]),
}


@pytest.mark.e2e
@pytest.mark.parametrize("case", SWALLOWING)
def test_a_path_flag_never_swallows_the_next_flag(case, tmp_path):
    import subprocess
    import sys

    entry, bare, swallowed, rest = SWALLOWING[case]
    flagfile = tmp_path / "bare.cfg"
    flagfile.write_text(f"{bare}\n")
    if not entry[0].startswith("-"):
        entry = [os.path.join(ROOT, entry[0])]
    env = {**os.environ, "PYTHONPATH": ROOT, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run(
        [sys.executable, *entry, *rest, f"--flagfile={flagfile}", swallowed],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert f"{bare} got '{swallowed}', which looks like a flag" in proc.stderr, proc.stderr
    assert sorted(os.listdir(tmp_path)) == ["bare.cfg"]  # nothing created, under any name


def test_a_value_starting_with_a_dash_is_refused_and_dot_slash_accepted():
    with pytest.raises(flags.IllegalFlagValueError, match="--run_dir got '-x'"):
        parse(["--run_dir=-x"])
    assert parse(["--run_dir=./-x"]).run_dir == "./-x"


@pytest.mark.parametrize(
    "argv,precision,log_det",
    [
        ([], "float32", "finite_difference"),
        (["--mixed_precision"], "mixed_float16", "jvp"),  # the old flag: an alias
        (["--precision=mixed_float16", "--mixed_precision"], "mixed_float16", "jvp"),
        (["--precision=mixed_bfloat16"], "mixed_bfloat16", "jvp"),
        (["--precision=mixed_bfloat16", "--log_det=finite_difference"], "mixed_bfloat16", "finite_difference"),
        (["--log_det=jvp"], "float32", "jvp"),
        (["--method=lvpga", "--precision=mixed_bfloat16"], "mixed_bfloat16", "finite_difference"),
    ],
)
def test_precision_and_log_det_flags(argv, precision, log_det):
    cfg = parse(argv)
    assert (cfg.precision, cfg.log_det) == (precision, log_det)
    assert cfg.mixed_precision == (precision == "mixed_float16")  # loss scaling: float16 only


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--mixed_precision", "--precision=mixed_bfloat16"], "--mixed_precision means --precision=mixed_float16"),
        (["--method=lvpga", "--log_det=jvp"], "--log_det=jvp is for --method=lpga only"),
        (["--method=vpga", "--log_det=jvp"], "--log_det=jvp is for --method=lpga only"),
    ],
)
def test_contradictory_precision_or_log_det_is_one_line_at_parse_time(argv, message):
    with pytest.raises(ValueError, match=message) as e:
        parse(argv)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("old,precision", [(True, "mixed_float16"), (False, "float32")])
def test_config_json_of_older_runs_reads_mixed_precision_as_precision(tmp_path, old, precision):
    raw = (
        config.Config()
        .replace(run_dir=str(tmp_path))
        .to_json()
        .replace('"precision": "float32"', f'"mixed_precision": {str(old).lower()}')
    )
    (tmp_path / config.CONFIG_FILE).write_text(raw)
    saved = config.load(str(tmp_path))
    assert saved.precision == precision and saved.mixed_precision == old
    # Resuming it with the flag it was trained with (old name or new) is the same run.
    for argv in (["--mixed_precision"] if old else [], [f"--precision={precision}"]):
        assert parse([f"--run_dir={tmp_path}", *argv]).mixed_precision == saved.mixed_precision


def test_resume_across_precisions_is_refused_only_where_the_checkpoint_differs():
    f32, f16, bf16 = (config.Config(precision=p) for p in config.PRECISIONS)
    assert config.conflicts(f32, bf16) == [] and config.conflicts(bf16, f32) == []
    (line,) = config.conflicts(f32, f16)
    assert line.startswith("--precision (--mixed_precision): run has 'float32', asked for 'mixed_float16'")
