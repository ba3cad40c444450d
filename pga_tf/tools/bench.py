"""Training and sampling throughput of each method, and how close the step gets to the hardware.

    python -m pga_tf.tools.bench --methods=lpga,vpga,lvpga,vae --json=out.json

For each method it prints and (with --json) writes:

* ``train_images_per_s``: training images/s with a real input pipeline (tf.data over
  Fashion-MNIST when the dataset's files are on the machine, otherwise over synthetic uint8 images
  with the same shuffle/map/batch/prefetch stages); ``train_images_per_s_fixed_batch``: the same
  step fed one batch over and over (``Dataset.from_tensors(batch).repeat()``), i.e. with the
  pipeline taken out. Each is the median over ``--blocks`` timed blocks of ``--steps`` steps,
  after ``--warmup`` steps; every block is one ``Trainer.train_steps`` call (one tf.function
  call for all its steps), exactly as ``train.py`` runs.
* ``sample_images_per_s``: decoder images/s in inference mode (``training=False``) at
  ``--sample_batch`` (256), median over blocks.
* ``step_gflop``: floating-point operations of one training step, counted from the graph: the
  traced step (forward, gradients, optimizer update) is pruned to the ops that feed its outputs
  or side effects (the gradient code also builds ops nothing uses; TensorFlow prunes them before
  running), then each op's registered ``flops`` statistic is summed (what
  ``tf.compat.v1.profiler`` counts: matmuls, convolutions and their gradients, and common
  elementwise ops; Einsum, which has no statistic, is counted from its equation; activations
  without a registered count are left out, a fraction of a percent here). These are the
  operations the measured step executes, the zero taps of pga_tf.nets.kernels' phase-wise
  convolutions included; ``step_gflop_matmul_conv`` is the matmul/convolution share.
  ``reference_step_gflop`` is the same count for the straightforward step of the same method
  (``--fused=off --fast_kernels=off``): the work a straightforward implementation does.
* ``achieved_gflop_per_s`` = step FLOPs x steps/s (fixed batch), and ``fraction_of_peak`` = that
  over ``matmul_peak_gflop_per_s``, the float32 rate `tf.linalg.matmul` reaches on
  ``--matmul_n``-square matrices measured in the same run on the same device: how well the
  step uses the hardware. ``effective_gflop_per_s`` and ``effective_fraction_of_peak`` credit
  the step with the reference FLOPs instead: above 1 means it is faster than any
  straightforward step could be, by doing less work.

By default it measures what ``train.py`` runs (the fused step, pga_tf.nets.kernels on); ``--fused=off
--fast_kernels=off`` measures the straightforward step (method_losses, two backward passes,
stock Keras layers), and ``--jit_compile`` the XLA-compiled one. ``--strategy=mirrored`` (with
``--cpu_devices=N`` on a CPU), ``--precision`` (``--mixed_precision`` is its mixed_float16 alias)
and ``--log_det`` measure train.py's flags of the same names. Under a mixed precision the
fraction of peak is taken against a matmul peak in the policy's compute dtype (bfloat16 or
float16, ``matmul_peak_gflop_per_s``), measured in the same run as the float32 one
(``matmul_peak_float32_gflop_per_s``); ``cpu_flags`` records the CPU's AVX-512/AMX extensions,
which decide whether 16-bit matmuls run natively. Each 16-bit row also gets ``x_float32`` (its
images/s over the same method's float32 row of the run, ``x_float32_fixed_batch`` likewise) and
``precision_probe_ratio``, the ratio train.py's start-up probe (pga_tf.training.precision_probe) measured
in this run: how well the probe predicts the step.

The load average (``os.getloadavg``) is recorded with every figure: on a shared machine the
numbers are only comparable at similar load. Everything runs on TensorFlow's default device, so
the same command measures a GPU where there is one.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import time
from collections.abc import Callable

from pga_tf import cli, jsonfile, machine  # no TensorFlow: flags are checked before it loads
from pga_tf import config as config_lib
from pga_tf import methods as methods_lib


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = cli.ArgumentParser(prog=cli.program("python -m pga_tf.tools.bench"), description=__doc__.split("\n")[0])
    p.add_argument(
        "--methods", default="lpga,vpga,lvpga,vae", help=f"comma-separated methods ({','.join(methods_lib.names())})"
    )
    p.add_argument("--model", default="conv_mnist", choices=config_lib.MODELS)
    p.add_argument("--channels", type=int, default=None, help="image channels (default: 1 for conv_mnist, else 3)")
    p.add_argument("--batch_size", type=int, default=64)
    p.add_argument("--z_dim", type=int, default=0, help="latent size (default: the method's)")
    p.add_argument("--steps", type=int, default=20, help="training steps per timed block")
    p.add_argument("--blocks", type=int, default=5, help="timed blocks (the median is reported)")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps first (tracing, autotune)")
    p.add_argument(
        "--jit_compile",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="XLA-compile the step and the sampler",
    )
    p.add_argument(
        "--strategy",
        choices=("default", "mirrored"),
        default="default",
        help="tf.distribute strategy (mirrored: every GPU, or every --cpu_devices)",
    )
    p.add_argument(
        "--cpu_devices", type=int, default=0, help="split the CPU into this many logical devices (as train.py does)"
    )
    p.add_argument(
        "--precision",
        default=None,
        help="Keras dtype policy of the nets (default float32), as train.py; a "
        "comma-separated list measures each, interleaved per method (same load)",
    )
    p.add_argument("--mixed_precision", action="store_true", help="alias of --precision=mixed_float16, as train.py")
    p.add_argument(
        "--log_det",
        default=None,
        help="LPGA's log-det estimator (default: as train.py, by precision); a comma-separated list measures each",
    )
    p.add_argument(
        "--fused",
        choices=("on", "off"),
        default="on" if config_lib.Config().fused else "off",
        help="the fused training step (methods/pga.py fused_method_losses; plain with BN on)",
    )
    p.add_argument(
        "--fast_kernels",
        choices=("on", "off"),
        default="on",
        help="pga_tf.nets.kernels' formulations of the slow ops (off: stock Keras layers)",
    )
    p.add_argument(
        "--data",
        choices=("auto", "fashion_mnist", "synthetic"),
        default="auto",
        help="input pipeline source for the with-pipeline figure",
    )
    p.add_argument("--sample_batch", type=int, default=256)
    p.add_argument("--sample_calls", type=int, default=10, help="decoder calls per timed block")
    p.add_argument("--matmul_n", type=int, default=2048, help="matrix size of the peak measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="", help="write the results here")
    args = p.parse_args(argv)
    if args.channels is None:
        args.channels = 1 if args.model == "conv_mnist" else 3
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in methods_lib.names()]
    if bad or not methods:
        p.error(f"unknown method(s) {bad}; choose from {', '.join(methods_lib.names())}")
    if args.cpu_devices < 0:
        p.error("--cpu_devices must be >= 0")
    for name in ("batch_size", "steps", "blocks", "sample_batch", "matmul_n"):
        if getattr(args, name) <= 0:
            p.error(f"--{name} must be positive")
    if args.warmup < 1:
        p.error("--warmup must be >= 1 (the first call traces)")
    problem = args.json and config_lib.output_path_problem("json", args.json)
    if problem:
        p.error(problem)
    precisions = args.precision.split(",") if args.precision else [None]
    log_dets = args.log_det.split(",") if args.log_det else [None]
    bad = [v for v in precisions if v not in (None, *config_lib.PRECISIONS)]
    bad += [v for v in log_dets if v not in (None, *config_lib.LOG_DETS)]
    if bad:
        p.error(
            f"unknown --precision/--log_det value(s) {bad}; choose from "
            f"{', '.join(config_lib.PRECISIONS)} / {', '.join(config_lib.LOG_DETS)}"
        )
    try:
        args.precisions = [cli.resolve_precision(v, args.mixed_precision) for v in precisions]
    except ValueError as e:
        p.error(str(e))
    able = [m for m in methods_lib.names() if methods_lib.get(m).forward_mode_log_det]
    if "jvp" in log_dets and not set(able) & set(methods):
        p.error(
            f"--log_det=jvp is for --method={' or '.join(able)} only (the other methods are "
            "measured with their finite difference)"
        )
    args.log_dets = log_dets
    args.methods = methods
    return args


if __name__ == "__main__":
    from pga_tf import console

    console.install()  # before TensorFlow loads: its harmless native lines stay off stderr
    parse_args(sys.argv[1:])  # a flag mistake is said before TensorFlow loads; main parses again

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from tensorflow.python.framework import ops as tf_ops  # noqa: E402

from pga_tf import data  # noqa: E402
from pga_tf.nets import kernels, models  # noqa: E402
from pga_tf.training import precision_probe  # noqa: E402
from pga_tf.training import trainer as trainer_lib  # noqa: E402

MATMUL_CONV_OPS = frozenset(
    {
        "MatMul",
        "BatchMatMul",
        "BatchMatMulV2",
        "BatchMatMulV3",
        "Einsum",
        "Conv2D",
        "Conv2DBackpropInput",
        "Conv2DBackpropFilter",
    }
)


def load() -> float:
    return round(os.getloadavg()[0], 2)


def _median_rate(run_block: Callable[[], None], units_per_block: float, blocks: int) -> tuple[float, list[float]]:
    rates = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        run_block()
        rates.append(units_per_block / (time.perf_counter() - t0))
    return statistics.median(rates), rates


# --------------------------------------------------------------------------------- FLOP count
def _live_ops(graph: tf.Graph) -> list:
    """Ops that feed the function's outputs or its side effects (what actually runs)."""
    seeds = [t.op for t in graph.outputs] + list(getattr(graph, "control_outputs", []))
    seen, stack = set(), list(seeds)
    while stack:
        op = stack.pop()
        if op.name in seen:
            continue
        seen.add(op.name)
        stack.extend(t.op for t in op.inputs)
        stack.extend(op.control_inputs)
    return [op for op in graph.get_operations() if op.name in seen]


def _einsum_flops(op) -> int | None:
    """2 x the product of every index's size (a multiply and an add per term), or None."""
    equation = op.get_attr("equation").decode()
    inputs = equation.split("->")[0].split(",")
    sizes = {}
    for spec, tensor in zip(inputs, op.inputs):
        shape = tensor.shape
        if "." in spec or shape.rank != len(spec) or not shape.is_fully_defined():
            return None
        sizes.update(zip(spec, shape.as_list()))
    return 2 * math.prod(sizes.values())


def graph_flops(concrete: Callable) -> dict[str, float]:
    """FLOPs of a concrete function's graph (live ops only) by registered op statistics.

    Einsum has no registered statistic; it is counted here (2 x the product of its index sizes).
    """
    graph = concrete.graph
    total = matmul_conv = 0
    for op in _live_ops(graph):
        if op.type == "Einsum":
            value = _einsum_flops(op)
        else:
            try:
                value = tf_ops.get_stats_for_node_def(graph, op.node_def, "flops").value
            except (ValueError, TypeError):  # shapes unknown: not counted
                value = None
        if value:
            total += value
            if op.type in MATMUL_CONV_OPS:
                matmul_conv += value
    return {"total": float(total), "matmul_conv": float(matmul_conv)}


def step_flops(trainer: trainer_lib.Trainer) -> dict[str, float]:
    """FLOPs of one training step of `trainer`, counted on its traced graph (not run)."""
    spec = tf.TensorSpec([trainer.local_batch, *trainer.image_shape], tf.float32)
    concrete = tf.function(trainer.replica_step).get_concrete_function(spec)
    return graph_flops(concrete)


def reference_step_flops(cfg: config_lib.Config, image_shape: tuple[int, int, int]) -> dict[str, float]:
    """FLOPs of the straightforward step (plain losses, stock Keras kernels) for the same method.

    The faster steps do less work (fewer passes) or more (zero taps): rating every configuration
    by this one count makes GFLOP/s and the fraction of peak a measure of useful work done.
    """
    was = kernels.enabled()
    kernels.set_enabled(False)
    try:
        # float32 and the reference's finite difference, whatever is measured: one yardstick.
        plain = trainer_lib.Trainer(
            dataclasses.replace(cfg, fused=False, jit_compile=False, precision="float32", log_det="finite_difference"),
            image_shape,
        )
        return step_flops(plain)
    finally:
        kernels.set_enabled(was)


# --------------------------------------------------------------------------------- peaks
def matmul_peak(n: int, blocks: int = 5, calls: int = 5, dtype: str = "float32") -> float:
    """GFLOP/s of tf.linalg.matmul on [n, n] x [n, n] in `dtype`, median over blocks."""
    a = tf.cast(tf.random.normal([n, n]), dtype)
    b = tf.cast(tf.random.normal([n, n]), dtype)

    @tf.function
    def chain(a, b):
        acc = tf.zeros([], tf.float32)
        for _ in range(calls):
            # [:1, :1] keeps each product live
            acc += tf.cast(tf.reduce_sum(tf.linalg.matmul(a, b)[:1, :1]), tf.float32)
            a = a + tf.cast(1e-2, dtype)  # a distinct product each time: nothing is deduplicated
        return acc

    chain(a, b).numpy()
    rate, _ = _median_rate(lambda: chain(a, b).numpy(), calls * 2.0 * n**3 / 1e9, blocks)
    return rate


# --------------------------------------------------------------------------------- data
def _synthetic_dataset(batch_size: int, shape: tuple[int, int, int], seed: int) -> tf.data.Dataset:
    """The train pipeline's stages over random uint8 images (when no dataset is on disk)."""
    raw = np.random.default_rng(seed).integers(0, 256, (10000, *shape), dtype=np.uint8)
    ds = tf.data.Dataset.from_tensor_slices(raw).shuffle(10000, seed=seed).repeat()
    ds = ds.map(data.scale, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def input_pipeline(source: str, batch_size: int, shape: tuple[int, int, int], seed: int) -> tuple[tf.data.Dataset, str]:
    if source in ("auto", "fashion_mnist") and shape == data.image_shape("fashion_mnist"):
        try:
            return data.make_train_dataset("fashion_mnist", batch_size, seed=seed), "fashion_mnist"
        except (data.DataError, OSError, ValueError):
            if source == "fashion_mnist":
                raise
    return _synthetic_dataset(batch_size, shape, seed), "synthetic"


# --------------------------------------------------------------------------------- one method
def bench_method(
    method: str,
    args: argparse.Namespace,
    peak: float,
    log: Callable[[str], None],
    strategy: tf.distribute.Strategy,
    precision: str = "float32",
    log_det: str | None = None,
) -> dict:
    """One method's figures; `peak` is the matmul GFLOP/s in `precision`'s compute dtype."""
    overrides = dict(
        model=args.model,
        batch_size=args.batch_size,
        jit_compile=args.jit_compile,
        steps_per_loop=args.steps,
        seed=args.seed,
        strategy=args.strategy,
        precision=precision,
        log_det=config_lib.resolve_log_det(method, precision, log_det),
    )
    overrides["fused"] = args.fused == "on"
    if args.z_dim:
        overrides["z_dim"] = args.z_dim
    cfg = config_lib.for_method(method, **overrides)
    hw = models.IMAGE_SHAPES[args.model]
    shape = (*hw, args.channels)
    trainer = trainer_lib.Trainer(cfg, shape, strategy)
    out: dict = {
        "method": method,
        "model": args.model,
        "batch_size": args.batch_size,
        "z_dim": cfg.z_dim,
        "jit_compile": cfg.jit_compile,
        "fused": cfg.fused,
        "uses_fused_step": trainer.fused,
        "fast_kernels": kernels.enabled(),
        "strategy": cfg.strategy,
        "replicas": strategy.num_replicas_in_sync,
        "mixed_precision": cfg.mixed_precision,
        "precision": cfg.precision,
        "log_det": cfg.log_det,
    }

    def steps(it, n: int) -> None:
        # A speed figure does not need finite weights: a non-finite loss is recorded, not fatal.
        try:
            trainer.train_steps(it, n)
        except trainer_lib.NonFiniteLoss as e:
            out.setdefault("non_finite_at_step", e.step)

    def train_rate(ds: tf.data.Dataset) -> tuple[float, list[float]]:
        it = iter(strategy.experimental_distribute_dataset(ds))
        steps(it, args.warmup)
        return _median_rate(lambda: steps(it, args.steps), args.steps * args.batch_size, args.blocks)

    # Pipeline excluded: one batch, fed again and again.
    pipe, source = input_pipeline(args.data, args.batch_size, shape, args.seed)
    batch = next(iter(pipe))
    out["load_before"] = load()
    out["train_images_per_s_fixed_batch"], fixed_blocks = train_rate(tf.data.Dataset.from_tensors(batch).repeat())
    out["train_images_per_s"], pipe_blocks = train_rate(pipe)
    out["data"] = source
    # 1: the compiled loop was traced once for both iterators and every n (no retracing).
    out["train_traces"] = trainer._train_n.experimental_get_tracing_count()
    out["train_blocks_fixed_batch"] = [round(r, 1) for r in fixed_blocks]
    out["train_blocks"] = [round(r, 1) for r in pipe_blocks]

    # Sampling: the decoder alone, inference mode.
    sample = tf.function(lambda z: trainer.decoder(z, training=False), jit_compile=cfg.jit_compile)
    z = tf.random.normal([args.sample_batch, cfg.z_dim], seed=args.seed)
    calls = max(1, args.sample_calls)

    def sample_block():
        for _ in range(calls):
            x = sample(z)
        x.numpy()

    sample_block()
    out["sample_images_per_s"], _ = _median_rate(sample_block, calls * args.sample_batch, args.blocks)
    out["load_after"] = load()
    # Sampling's distance from the matmul peak: how much faster it could possibly run here.
    out["sample_gflop_per_image"] = graph_flops(sample.get_concrete_function(z))["total"] / 1e9 / args.sample_batch
    out["sample_fraction_of_peak"] = out["sample_gflop_per_image"] * out["sample_images_per_s"] / peak

    # The step's graph is counted on one device: the replicas together do the same work.
    flops = step_flops(
        trainer
        if strategy.num_replicas_in_sync == 1
        else trainer_lib.Trainer(dataclasses.replace(cfg, strategy="default"), shape)
    )
    reference = reference_step_flops(cfg, shape)
    steps_per_s = out["train_images_per_s_fixed_batch"] / args.batch_size
    out["flop_count"] = "graph"
    out["step_gflop"] = flops["total"] / 1e9
    out["step_gflop_matmul_conv"] = flops["matmul_conv"] / 1e9
    out["reference_step_gflop"] = reference["total"] / 1e9
    out["achieved_gflop_per_s"] = out["step_gflop"] * steps_per_s
    out["effective_gflop_per_s"] = out["reference_step_gflop"] * steps_per_s
    out["matmul_peak_gflop_per_s"] = peak
    out["fraction_of_peak"] = out["achieved_gflop_per_s"] / peak
    out["effective_fraction_of_peak"] = out["effective_gflop_per_s"] / peak
    log(
        f"{method:6s} [{cfg.strategy} x{strategy.num_replicas_in_sync}"
        f"{', xla' if cfg.jit_compile else ''}, {cfg.precision}"
        f"{', log_det ' + cfg.log_det if methods_lib.get(method).forward_mode_log_det else ''}, "
        f"fused {trainer.fused}, fast kernels {kernels.enabled()}] "
        f"train {out['train_images_per_s']:7.1f} img/s ({source} pipeline)  "
        f"{out['train_images_per_s_fixed_batch']:7.1f} img/s (fixed batch)  "
        f"sample {out['sample_images_per_s']:8.0f} img/s ({100 * out['sample_fraction_of_peak']:.0f}% of peak)  "
        f"step {out['step_gflop']:.3f} GFLOP, {out['achieved_gflop_per_s']:.0f} GFLOP/s = "
        f"{100 * out['fraction_of_peak']:.0f}% of matmul peak (as the plain step's "
        f"{out['reference_step_gflop']:.3f} GFLOP: {100 * out['effective_fraction_of_peak']:.0f}%)  "
        f"[load {out['load_before']}->{out['load_after']}]"
        + (f"  (non-finite loss from step {out['non_finite_at_step']})" if "non_finite_at_step" in out else "")
    )
    return out


def speed_vs_float32(results: dict) -> list[str]:
    """Add `x_float32` (images/s with the pipeline over the same method's float32 row of this
    run) to each 16-bit row, and return one line per row for the console.

    The float32 row is the one with the same log-det estimator where there is one, else the
    method's float32 default (finite difference): bfloat16's LPGA default is jvp.
    """
    lines = []
    for figures in results.values():
        if figures["precision"] == "float32":
            continue
        same = [f for f in results.values() if f["method"] == figures["method"] and f["precision"] == "float32"]
        ref = [f for f in same if f["log_det"] == figures["log_det"]] or [
            f for f in same if f["log_det"] == "finite_difference"
        ]
        if not ref:
            continue
        figures["x_float32"] = figures["train_images_per_s"] / ref[0]["train_images_per_s"]
        figures["x_float32_fixed_batch"] = (
            figures["train_images_per_s_fixed_batch"] / ref[0]["train_images_per_s_fixed_batch"]
        )
        figures["x_float32_against"] = f"float32/{ref[0]['log_det']}"
        probe = figures.get("precision_probe_ratio")
        lines.append(
            f"{figures['method']} {figures['precision']} ({figures['log_det']}): "
            f"{figures['x_float32']:.2f}x float32 ({figures['x_float32_against']}) "
            f"with the pipeline, {figures['x_float32_fixed_batch']:.2f}x with a fixed batch"
            + (f"; start-up probe {probe:.2f}x" if probe is not None else "")
        )
    return lines


def _label(method: str, precision: str, log_det: str, several: bool) -> str:
    """The results key: the method alone, or with its precision and log-det when several run."""
    return f"{method}/{precision}/{log_det}" if several else method


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    tf.get_logger().setLevel("ERROR")  # the graph-statistics API's deprecation notice
    kernels.set_enabled(args.fast_kernels == "on")
    cli.split_cpu(args.cpu_devices)
    log = lambda s: print(s, flush=True)  # noqa: E731
    device = (tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))[0].name
    cpu, cpu_flags = machine.cpu_model(), machine.precision_flags()
    peak32 = matmul_peak(args.matmul_n)
    log(
        f"device {device}, {cpu}, {os.cpu_count()} cores, {' '.join(cpu_flags)}; "
        f"float32 matmul {args.matmul_n}^2: {peak32:.0f} GFLOP/s [load {load()}]"
    )
    peaks = {"float32": peak32}
    probes = {}
    for precision in args.precisions:
        dtype = precision.replace("mixed_", "")
        if dtype not in peaks:
            peaks[dtype] = matmul_peak(args.matmul_n, dtype=dtype)
            log(f"{dtype} matmul {args.matmul_n}^2: {peaks[dtype]:.0f} GFLOP/s [load {load()}]")
            # train.py's start-up probe, so its ratio can be held against the measured steps'.
            probes[precision] = precision_probe.measure(precision)
            log(f"{precision} start-up probe (train.py's): {probes[precision]:.2f}x float32 [load {load()}]")
    # One strategy for all methods: a second MirroredStrategy over the same devices in one process
    # reuses the first one's collective keys, and its first all-reduce fails on a shape mismatch.
    strategy = trainer_lib.make_strategy(args.strategy)
    results: dict = {}
    several = len(args.precisions) * len(args.log_dets) > 1
    for method in args.methods:
        for precision in args.precisions:
            # --log_det is LPGA's: the other methods run once per precision, finite difference.
            for log_det in args.log_dets if methods_lib.get(method).forward_mode_log_det else [None]:
                dtype = precision.replace("mixed_", "")
                figures = bench_method(method, args, peaks[dtype], log, strategy, precision, log_det)
                figures["matmul_dtype"] = dtype
                results[_label(method, precision, figures["log_det"], several)] = figures
    peaks_after = {dtype: matmul_peak(args.matmul_n, dtype=dtype) for dtype in peaks}
    log("matmul again: " + ", ".join(f"{d} {v:.0f} GFLOP/s" for d, v in peaks_after.items()) + f" [load {load()}]")
    run = {
        "device": device,
        "tensorflow": tf.__version__,
        "matmul_peak_float32_gflop_per_s": peak32,
        "cpu": cpu,
        "cpu_flags": cpu_flags,
        "cpu_count": os.cpu_count(),
        "argv": sys.argv[1:] if argv is None else argv,
    }
    for figures in results.values():
        figures.update(run)
        figures["matmul_peak_after_gflop_per_s"] = peaks_after[figures["matmul_dtype"]]
        if figures["precision"] in probes:
            figures["precision_probe_ratio"] = probes[figures["precision"]]
    for line in speed_vs_float32(results):
        log(line)
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)  # as parse_args allowed
        jsonfile.write(args.json, results, indent=2, sort_keys=True, allow_nan=True)
    return results


if __name__ == "__main__":
    main()
