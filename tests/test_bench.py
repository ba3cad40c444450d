"""python -m pga_tf.tools.bench: the FLOP count, and a tiny end-to-end run writing the JSON."""

import json
import pathlib
import re
import subprocess
import sys

import pytest
import tensorflow as tf

from pga_tf import config
from pga_tf.nets import kernels
from pga_tf.tools import bench
from pga_tf.training import trainer as trainer_lib

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_graph_flops_counts_a_matmul_and_ignores_dead_ops():
    @tf.function
    def f(a, b):
        tf.linalg.matmul(b, b, transpose_a=True)  # feeds nothing: pruned before running, so not counted
        return tf.linalg.matmul(a, b)

    spec = tf.TensorSpec([8, 16])
    flops = bench.graph_flops(f.get_concrete_function(spec, tf.TensorSpec([16, 4])))
    assert flops == {"total": 2 * 8 * 16 * 4, "matmul_conv": 2 * 8 * 16 * 4}


def test_fused_step_counts_fewer_flops_than_the_plain_one():
    counts = {}
    for fused in (False, True):
        cfg = config.for_method("vpga", z_dim=4, batch_size=8, fused=fused)
        counts[fused] = bench.step_flops(trainer_lib.Trainer(cfg, (28, 28, 1)))["matmul_conv"]
    # conv_mnist's layers: the plain VPGA step is ~32 network-pass units, the fused one ~18.
    assert 0.5 < counts[True] / counts[False] < 0.6, counts


def test_reference_count_is_the_plain_step_with_stock_kernels_whatever_is_measured():
    shape = (28, 28, 1)
    plain_cfg = config.for_method("lpga", z_dim=4, batch_size=8, fused=False)
    kernels.set_enabled(False)
    try:
        expected = bench.step_flops(trainer_lib.Trainer(plain_cfg, shape))
    finally:
        kernels.set_enabled(True)
    fast = bench.step_flops(trainer_lib.Trainer(config.for_method("lpga", z_dim=4, batch_size=8), shape))
    assert fast != expected  # the measured step differs (fewer passes, phase-wise convolutions)...
    for fused in (False, True):  # ...but the work it is rated by does not
        cfg = config.for_method("lpga", z_dim=4, batch_size=8, fused=fused)
        assert bench.reference_step_flops(cfg, shape) == expected
    assert kernels.enabled()


def test_tiny_run_writes_json(tmp_path):
    out = tmp_path / "out.json"
    bench.main(
        [
            "--methods=lpga,vae",
            "--z_dim=4",
            "--batch_size=8",
            "--steps=1",
            "--blocks=1",
            "--warmup=1",
            "--sample_batch=8",
            "--sample_calls=1",
            "--matmul_n=64",
            "--data=synthetic",
            f"--json={out}",
        ]
    )
    results = json.loads(out.read_text())
    assert set(results) == {"lpga", "vae"}
    for figures in results.values():
        for key in (
            "train_images_per_s",
            "train_images_per_s_fixed_batch",
            "sample_images_per_s",
            "step_gflop",
            "reference_step_gflop",
            "fraction_of_peak",
            "effective_fraction_of_peak",
            "matmul_peak_gflop_per_s",
            "sample_gflop_per_image",
            "sample_fraction_of_peak",
        ):
            assert figures[key] > 0, key
        assert figures["train_traces"] == 1 and figures["uses_fused_step"]
        assert figures["sample_fraction_of_peak"] == pytest.approx(
            figures["sample_gflop_per_image"] * figures["sample_images_per_s"] / figures["matmul_peak_gflop_per_s"]
        )
    # The decoder at z_dim 4 is dominated by its 1024 x 6272 fc and 7x7x128 -> 14x14x64
    # transposed conv: 2 * 1024 * 6272 + 2 * 7 * 7 * 128 * 25 * 64 FLOPs, about 32.9 MFLOP.
    assert results["lpga"]["sample_gflop_per_image"] == pytest.approx(0.0329, rel=0.05)


@pytest.mark.slow_inproc
def test_precisions_and_log_dets_are_measured_interleaved_against_their_own_matmul_peak(tmp_path):
    out = tmp_path / "out.json"
    bench.main(
        [
            "--methods=lpga,vae",
            "--z_dim=4",
            "--batch_size=8",
            "--steps=1",
            "--blocks=1",
            "--warmup=1",
            "--sample_batch=8",
            "--sample_calls=1",
            "--matmul_n=64",
            "--data=synthetic",
            "--precision=float32,mixed_bfloat16",
            "--log_det=jvp",
            f"--json={out}",
        ]
    )
    results = json.loads(out.read_text())
    # jvp is LPGA's only: the VAE is measured once per precision, with its own step.
    assert set(results) == {
        "lpga/float32/jvp",
        "lpga/mixed_bfloat16/jvp",
        "vae/float32/finite_difference",
        "vae/mixed_bfloat16/finite_difference",
    }
    bf16 = results["lpga/mixed_bfloat16/jvp"]
    f32 = results["lpga/float32/jvp"]
    assert (bf16["precision"], bf16["log_det"], bf16["matmul_dtype"]) == ("mixed_bfloat16", "jvp", "bfloat16")
    assert (f32["precision"], f32["log_det"], f32["matmul_dtype"]) == ("float32", "jvp", "float32")
    assert bf16["matmul_peak_gflop_per_s"] > 0
    assert f32["matmul_peak_gflop_per_s"] == f32["matmul_peak_float32_gflop_per_s"]
    assert bf16["fraction_of_peak"] == pytest.approx(bf16["achieved_gflop_per_s"] / bf16["matmul_peak_gflop_per_s"])
    assert isinstance(bf16["cpu_flags"], list)
    assert not bf16["mixed_precision"]  # no loss scaling under bfloat16
    # train.py's start-up probe ran once for bfloat16, and each 16-bit row is held against float32.
    assert bf16["precision_probe_ratio"] > 0
    assert results["vae/mixed_bfloat16/finite_difference"]["precision_probe_ratio"] == bf16["precision_probe_ratio"]
    assert "precision_probe_ratio" not in f32 and "x_float32" not in f32
    assert bf16["x_float32"] == pytest.approx(bf16["train_images_per_s"] / f32["train_images_per_s"])
    assert bf16["x_float32_against"] == "float32/jvp"


def test_speed_vs_float32_takes_the_same_estimator_or_the_float32_default():
    def row(method, precision, log_det, rate, fixed):
        return {
            "method": method,
            "precision": precision,
            "log_det": log_det,
            "train_images_per_s": rate,
            "train_images_per_s_fixed_batch": fixed,
        }

    results = {
        "a": row("lpga", "float32", "finite_difference", 200.0, 210.0),
        "b": row("lpga", "mixed_bfloat16", "jvp", 300.0, 420.0),
        "c": row("vpga", "mixed_float16", "finite_difference", 50.0, 60.0),
    }
    lines = bench.speed_vs_float32(results)
    assert (results["b"]["x_float32"], results["b"]["x_float32_fixed_batch"]) == (1.5, 2.0)
    assert results["b"]["x_float32_against"] == "float32/finite_difference"
    assert "x_float32" not in results["c"]  # no float32 VPGA row in this run: nothing to divide by
    assert lines == [
        "lpga mixed_bfloat16 (jvp): 1.50x float32 (float32/finite_difference) with "
        "the pipeline, 2.00x with a fixed batch"
    ]


@pytest.mark.parametrize(
    "argv",
    [
        ["--methods=nope"],
        ["--steps=0"],
        ["--warmup=0"],
        ["--methods=vpga", "--log_det=jvp"],
        ["--precision=float64"],
        ["--mixed_precision", "--precision=mixed_bfloat16"],
    ],
)
def test_bad_arguments_exit(argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)


def test_graph_flops_counts_einsum():
    f = tf.function(lambda a, b: tf.einsum("nm,km->nk", a, b))
    flops = bench.graph_flops(f.get_concrete_function(tf.TensorSpec([8, 16]), tf.TensorSpec([4, 16])))
    assert flops["total"] == 2 * 8 * 16 * 4


@pytest.mark.e2e
def test_mirrored_and_mixed_precision_runs(tmp_path):
    # Logical devices must be configured before TensorFlow starts: a fresh process.
    out = tmp_path / "out.json"
    argv = [
        "--methods=lpga,vae",
        "--z_dim=4",
        "--batch_size=8",
        "--steps=1",
        "--blocks=1",
        "--warmup=1",
        "--sample_batch=8",
        "--sample_calls=1",
        "--matmul_n=64",
        "--data=synthetic",
        "--strategy=mirrored",
        "--cpu_devices=2",
        "--mixed_precision",
        f"--json={out}",
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "pga_tf.tools.bench", *argv], capture_output=True, text=True, timeout=600, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    figures = json.loads(out.read_text())["lpga"]
    assert figures["replicas"] == 2 and figures["mixed_precision"]
    # --mixed_precision is --precision=mixed_float16, where LPGA's log-det defaults to forward mode.
    assert figures["precision"] == "mixed_float16" and figures["log_det"] == "jvp"
    assert figures["matmul_dtype"] == "float16"
    assert figures["train_images_per_s"] > 0 and figures["train_traces"] == 1
    # The machine is named so figures from different CPUs are not compared by mistake.
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    name = re.search(r"^Model name:\s*(.+)$", lscpu, re.M)
    if name:
        assert figures["cpu"].startswith(name.group(1).strip())
    family = re.search(r"^CPU family:\s*(\d+)$", lscpu, re.M)
    if family:
        assert f"family {family.group(1)}," in figures["cpu"]
    # Counted on one device for the whole global batch: the same graph as an unmirrored run.
    single = bench.step_flops(
        trainer_lib.Trainer(
            config.for_method("lpga", z_dim=4, batch_size=8, precision="mixed_float16", log_det=figures["log_det"]),
            (28, 28, 1),
        )
    )
    assert figures["step_gflop"] == pytest.approx(single["total"] / 1e9)
