"""What a user sees on the console: only our own lines, one `error:` line for a user error,
--help with the project's flags, one TensorFlow distribution, and exports others can read."""

import importlib.metadata
import os
import re
import stat
import subprocess
import sys
import textwrap

import pytest

from pga_tf import console
from tests.helpers import ROOT, TF_LINE, TINY, USER_ENV

# Any native TensorFlow log line, or abseil's notice before it initialises.

ENTRY_POINTS = {
    "train.py": ["train.py"],
    "evaluate.py": ["evaluate.py"],
    "export_savedmodel.py": ["export_savedmodel.py"],
    "bench": ["-m", "pga_tf.tools.bench"],
    "results": ["-m", "pga_tf.tools.results"],
    "classifier": ["-m", "pga_tf.evaluation.classifier"],
}


def run(argv, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env or USER_ENV, capture_output=True, text=True, timeout=timeout
    )


# ------------------------------------------------------------------------ the filter itself
def filtered(data: bytes, entries=console.harmless_entries(False)) -> bytes:
    """`data` through console.filter_stream, as the filter process sees a program's stderr."""
    src_r, src_w = os.pipe()
    dst_r, dst_w = os.pipe()
    os.write(src_w, data)
    os.close(src_w)
    console.filter_stream(src_r, dst_w, entries)
    os.close(src_r)
    os.close(dst_w)
    with os.fdopen(dst_r, "rb") as f:
        return f.read()


HARMLESS_LINES = [
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    b"I0000 00:00:1796036002.236999    6190 port.cc:153] oneDNN custom operations are on. You may "
    b"see slightly different numerical results due to floating-point round-off errors.",
    b"I0000 00:00:1796036002.237309    6190 cudart_stub.cc:31] Could not find cuda drivers on your "
    b"machine, GPU will not be used.",
    b"E0000 00:00:1796036003.178716    6190 cuda_platform.cc:52] failed call to cuInit: INTERNAL: "
    b"CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    b"I0000 00:00:1796035997.592776    6185 cpu_feature_guard.cc:227] This TensorFlow binary is "
    b"optimized to use available CPU instructions in performance-critical operations.",
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    b"TensorFlow with the appropriate compiler flags.",
    b"E1130 11:00:02.823465   11815 meta_optimizer.cc:967] remapper failed: INVALID_ARGUMENT: "
    b"Mutation::Apply error: fanout 'gradient_tape/encoder_1/LeakyRelu/LeakyReluGrad' exist for "
    b"missing node 'encoder_1/conv2d_1_1/BiasAdd'.",
    b"E0000 00:00:1796041753.906580    7849 util.cc:131] oneDNN supports DT_INT32 only on platforms "
    b"with AVX-512. Falling back to the default Eigen-based implementation if present.",
]


def test_filter_drops_the_listed_lines_and_passes_everything_else():
    ours = [b"training lpga on fashion_mnist", b"error: data_dir /x does not exist"]
    real = [  # a Python traceback, an unlisted native error, a fatal check: all must pass
        b"Traceback (most recent call last):",
        b'  File "train.py", line 3, in <module>',
        b"ValueError: boom",
        b"E0000 00:00:1796036003.178716    6190 op_kernel.cc:1830] OP_REQUIRES failed: OOM",
        b"F1130 11:00:02.823465   11815 tensor_shape.cc:45] Check failed: d >= 0 (-1 vs. 0)",
        # a continuation-looking line that follows no dropped line
        b"To enable the following instructions: this one is ours",
    ]
    stream = b"\n".join(HARMLESS_LINES[:3] + ours[:1] + HARMLESS_LINES[3:] + real + ours[1:]) + b"\n"
    assert filtered(stream) == b"\n".join(ours[:1] + real + ours[1:]) + b"\n"


def test_cuda_lines_pass_on_a_machine_with_an_nvidia_driver():
    cuda = HARMLESS_LINES[2] + b"\n" + HARMLESS_LINES[3] + b"\n"
    assert filtered(cuda + HARMLESS_LINES[1] + b"\n", console.harmless_entries(True)) == cuda
    assert filtered(cuda, console.harmless_entries(False)) == b""


def test_filter_passes_a_line_without_newline():
    assert filtered(b"E0000 a partial line with no end") == b"E0000 a partial line with no end"
    assert filtered(b"") == b""


@pytest.mark.e2e
def test_nothing_is_lost_when_the_program_dies_or_exits(tmp_path):
    # SIGKILL right after writing (no atexit runs), then a normal exit whose stderr goes to a
    # file that is read the moment the program has ended.
    program = textwrap.dedent("""
        import os, sys
        sys.path.insert(0, {root!r})
        from pga_tf import console
        console.install()
        os.write(2, {harmless!r} + b"\\n" + b"native error 1\\n")
        print("error: ours", file=sys.stderr)
        if sys.argv[1] == "kill":
            os.kill(os.getpid(), 9)
        sys.exit(1)
    """).format(root=ROOT, harmless=HARMLESS_LINES[3])
    killed = subprocess.run([sys.executable, "-c", program, "kill"], env=USER_ENV, capture_output=True, timeout=60)
    assert killed.returncode == -9 and killed.stderr == b"native error 1\nerror: ours\n"
    for i in range(5):
        with open(tmp_path / f"{i}.err", "w+b") as err:
            proc = subprocess.Popen(
                [sys.executable, "-c", program, "exit"], env=USER_ENV, stdout=subprocess.DEVNULL, stderr=err
            )
            assert proc.wait(timeout=60) == 1
            err.seek(0)
            assert err.read() == b"native error 1\nerror: ours\n"


# ------------------------------------------------------------------------ the entry points
@pytest.mark.e2e
@pytest.mark.parametrize("name", ENTRY_POINTS)
def test_a_bad_flag_is_one_error_line(name):
    proc = run(ENTRY_POINTS[name] + ["--no_such_flag=1"])
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [proc.stderr.strip()], proc.stderr
    assert proc.stderr.startswith("error: ") and "no_such_flag" in proc.stderr, proc.stderr


@pytest.mark.e2e
def test_a_bad_flag_value_is_one_error_line():
    proc = run(["train.py", "--lr=-1"])
    assert proc.returncode == 1 and proc.stderr.splitlines() == [
        "error: flag --lr=-1.0: --lr must be positive and finite (--help lists the flags)"
    ]


@pytest.mark.e2e
def test_an_error_after_tensorflow_started_is_one_line(idx_dir, tmp_path):
    # A user error that only training can find (a learning rate that blows the weights up), so
    # TensorFlow has started and printed its start-up lines by the time the error comes; the
    # user errors checked before TensorFlow loads are tests/test_early_errors.py's.
    args = ["train.py", "--dataset=mnist", f"--data_dir={idx_dir}", f"--run_dir={tmp_path / 'run'}", *TINY]
    args += ["--lr=1e30", "--train_steps=10"]
    proc = run(args)
    assert proc.returncode == 1
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith("error: non-finite "), proc.stderr
    # The switch shows what was hidden: TensorFlow was loaded and did print its start-up lines.
    shown = run(args, env={**USER_ENV, console.SHOW_ENV: "1"})
    assert shown.returncode == 1 and shown.stderr.splitlines()[-1].startswith("error: non-finite "), shown.stderr
    assert any(TF_LINE.match(line) for line in shown.stderr.splitlines()), shown.stderr


@pytest.mark.e2e
def test_a_normal_run_prints_only_our_lines(idx_dir, tmp_path):
    run_dir = tmp_path / "run"
    proc = run(
        [
            "train.py",
            f"--data_dir={idx_dir}",
            f"--run_dir={run_dir}",
            *TINY,
            "--init_steps=5",
            "--train_steps=10",
            "--export",
        ]
    )
    assert proc.returncode == 0, proc.stderr
    assert [line for line in proc.stderr.splitlines() if TF_LINE.match(line)] == [], proc.stderr
    assert proc.stderr == "", proc.stderr
    ckpt = os.path.join(str(run_dir), "checkpoints", "ckpt-10")
    assert f"SavedModel of {ckpt} (step 10) written to {run_dir / 'saved_model'}" in proc.stdout
    # The warm-up line, at the first block past --init_steps.
    warm = [line for line in proc.stdout.splitlines() if line.startswith("warm-up over")]
    assert len(warm) == 1 and "from step 6 on (--init_steps=5)" in warm[0], proc.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["train.py", "evaluate.py", "export_savedmodel.py"])
def test_help_lists_our_flags_and_exits_0(name):
    proc = run(ENTRY_POINTS[name] + ["--help"])
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    flags_shown = re.findall(r"^  --(?:\[no\])?(\w+)$", proc.stdout, re.M)
    assert "run_dir" in flags_shown and "logtostderr" not in flags_shown, proc.stdout
    if name == "train.py":
        assert {"method", "z_dim", "lr", "init_steps", "strategy", "fid_every"} <= set(flags_shown)
        titles = re.findall(r"^(\S[^\n]*):$", proc.stdout, re.M)
        assert titles[:3] == ["Main", "Coefficients (default: the method's)", "Run control"], titles
        # --helpfull: ours first, then absl's own.
        full = run(ENTRY_POINTS[name] + ["--helpfull"])
        assert full.returncode == 0
        assert full.stdout.index("--method") < full.stdout.index("absl's flags:") < full.stdout.index("logtostderr")


# ------------------------------------------------------------------------ install and export
def test_exactly_one_tensorflow_distribution_is_installed():
    names = {re.sub(r"[-_.]+", "-", d.metadata["Name"]).lower() for d in importlib.metadata.distributions()}
    tensorflows = names & {
        "tensorflow",
        "tensorflow-cpu",
        "tensorflow-intel",
        "tf-nightly",
        "tf-nightly-cpu",
        "tensorflow-gpu",
    }
    assert len(tensorflows) == 1, tensorflows


def test_an_export_is_readable_by_others_under_umask_022(tmp_path):
    import tensorflow as tf

    from pga_tf import export
    from pga_tf.nets import models

    encoder, decoder = models.build_models("conv_mnist", 4, 1, use_bn=False, variational=False)
    module = export.PGAServing(encoder, decoder, 4, (28, 28, 1), False)
    old = os.umask(0o022)
    try:
        path = export.export(module, str(tmp_path / "sm"))
    finally:
        os.umask(old)
    for root, _dirs, files in os.walk(path):
        for name in [root] + [os.path.join(root, f) for f in files]:
            mode = stat.S_IMODE(os.stat(name).st_mode)
            need = 0o755 if os.path.isdir(name) else 0o644
            assert mode & need == need, f"{name}: {oct(mode)}"
    assert tf.saved_model.load(path).signatures["decode"](z=tf.zeros([1, 4]))["images"].shape == (1, 28, 28, 1)


@pytest.mark.parametrize(
    "images, seconds, shown", [(8, 30.0, "0.267 img/s"), (640, 20.0, "32 img/s"), (6400, 17.2, "372 img/s")]
)
def test_progress_line_shows_slow_rates_to_three_figures(images, seconds, shown):
    """A big net on a CPU trains below 1 image/s: the line must not round that to 0."""
    import types

    import tensorflow as tf

    from pga_tf.training import loop

    trainer = types.SimpleNamespace(global_batch=images, step=0, cfg=types.SimpleNamespace(lr=0.1))
    lines = []
    progress = loop._Progress(trainer, 10, tf.summary.create_noop_writer(), lines.append)
    progress.add({"img_rec": 0.5}, 1, seconds)
    progress.report(1)
    assert f"| {shown} | ETA" in lines[0], lines[0]
