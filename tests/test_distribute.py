"""tf.distribute: mirrored == single device, per-replica randomness, checkpoints across strategies,
mixed precision across replicas, and a two-process MultiWorkerMirroredStrategy run of train.py.

Logical CPU devices must be configured before TensorFlow initialises, so the 2-replica checks run
in one subprocess (this file run as a script) that prints their results as JSON.
"""

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback

import numpy as np
import pytest

from tests.helpers import ENV, ROOT, SHAPE, tiny_cfg, uniform_images

Z_DIM = 4
BATCH = 8  # global; 4 per replica

# Equivalence cases: name -> (method, use_bn, sync_bn, log_det).
EQUIVALENCE = {
    "lpga": ("lpga", False, False, "finite_difference"),
    "vpga": ("vpga", False, False, "finite_difference"),  # the global latent RMS is an all-reduce
    "vpga_sync_bn": ("vpga", True, True, "finite_difference"),
    # BN's tangent needs the global batch's means of the tangent too (BatchNorm._batch_mean).
    "lpga_jvp_sync_bn": ("lpga", True, True, "jvp"),
    "vpga_unsynced_bn": ("vpga", True, False, "finite_difference"),  # must differ: per-replica stats
}


# ------------------------------------------------------------- checks (run in the subprocess)
@functools.cache
def _mirrored():
    """One strategy per process, as in train.py: strategies created side by side hand out
    colliding collective keys ("Shape mismatch in the collective instance")."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def _weights(trainer):
    """Every model variable (BN moving statistics included) as numpy, keyed by position and the
    path within its model (Keras numbers a second model's layers differently)."""
    variables = trainer.encoder.weights + trainer.decoder.weights
    return {f"{i}:{v.path.split('/', 1)[0]}/{v.name}": v.numpy() for i, v in enumerate(variables)}


def _split(strategy, *arrays):
    """Per-replica values: replica i gets rows [i*n/2, (i+1)*n/2) of each array."""

    def value_fn(ctx):
        i, k = ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync
        return tuple(a[i * len(a) // k : (i + 1) * len(a) // k] for a in arrays)

    return strategy.experimental_distribute_values_from_function(value_fn)


def check_equivalence():
    """Two steps with the same weights, batch and noise on one device and on two replicas."""
    import tensorflow as tf

    from pga_tf.methods import parts as step_lib
    from pga_tf.training import trainer as trainer_lib

    out = {}
    strategy = _mirrored()
    rng = np.random.default_rng(0)
    steps = [
        (uniform_images(BATCH, seed=s), [rng.standard_normal((BATCH, Z_DIM)).astype(np.float32) for _ in range(3)])
        for s in range(2)
    ]
    for name, (method, use_bn, sync_bn, log_det) in EQUIVALENCE.items():
        cfg = tiny_cfg(method, use_bn=use_bn, sync_bn=sync_bn, log_det=log_det)
        tf.keras.utils.set_random_seed(0)
        single = trainer_lib.Trainer(cfg, SHAPE)
        mirrored = trainer_lib.Trainer(cfg, SHAPE, strategy)
        for src, dst in zip(
            single.encoder.weights + single.decoder.weights, mirrored.encoder.weights + mirrored.decoder.weights
        ):
            dst.assign(src)
        before = _weights(single)
        single_step = tf.function(single.replica_step)

        @tf.function
        def mirrored_step(values):
            images, *noise = values
            return strategy.run(mirrored.replica_step, args=(images, step_lib.Noise(*noise)))

        for images, noise in steps:
            single_metrics = single_step(tf.constant(images), step_lib.Noise(*map(tf.constant, noise)))
            per_replica = mirrored_step(_split(strategy, images, *noise))
        # Metrics come back as each replica's share of the global-batch mean: they sum to it.
        mirrored_metrics = {k: float(strategy.reduce("SUM", v, axis=None)) for k, v in per_replica.items()}
        w_single, w_mirrored = _weights(single), _weights(mirrored)
        out[name] = {
            # Per variable: max |difference|, max |single-device update|, and their sums of squares.
            "variables": {
                p: [
                    float(np.abs(w_mirrored[p] - w_single[p]).max()),
                    float(np.abs(w_single[p] - before[p]).max()),
                    float(np.square(w_mirrored[p] - w_single[p]).sum()),
                    float(np.square(w_single[p] - before[p]).sum()),
                ]
                for p in w_single
            },
            "metrics": [{k: float(v) for k, v in single_metrics.items()}, mirrored_metrics],
            # A MirroredVariable's copies must stay identical.
            "copies_equal": all(
                np.array_equal(*[c.numpy() for c in strategy.experimental_local_results(v.value)])
                for v in mirrored.encoder.weights + mirrored.decoder.weights
            ),
        }
    return out


def check_replica_noise():
    """The Trainer's generator gives each replica its own stream, reproducible from the seed."""
    from pga_tf.methods import parts as step_lib
    from pga_tf.training import trainer as trainer_lib

    strategy = _mirrored()

    def draws(seed):
        trainer = trainer_lib.Trainer(tiny_cfg("lpga", seed=seed), SHAPE, strategy)
        per_replica = strategy.run(lambda: step_lib.draw_noise(trainer.generator, trainer.local_batch, Z_DIM))
        state = [s.numpy().tolist() for s in strategy.experimental_local_results(trainer.generator.state)]
        return [[t.numpy() for t in strategy.experimental_local_results(field)] for field in per_replica], state

    a, state_a = draws(0)
    again, _ = draws(0)
    other, _ = draws(1)
    return {
        "replicas_differ": all(not np.allclose(r0, r1) for r0, r1 in a),
        "fields_differ": not np.allclose(a[0][0], a[1][0]),  # prior vs direction on one replica
        "same_seed_same_draws": all(np.array_equal(x, y) for f, g in zip(a, again) for x, y in zip(f, g)),
        "other_seed_other_draws": not np.allclose(a[0][0], other[0][0]),
        "state_in_sync": state_a[0] == state_a[1],
    }


def check_checkpoint_across_strategies(tmp):
    """mirrored -> default -> mirrored: weights, optimizer slots, step and random state survive."""
    import tensorflow as tf

    from pga_tf.training import trainer as trainer_lib

    cfg = tiny_cfg("lpga", use_bn=True, sync_bn=True)
    data = tf.data.Dataset.from_tensor_slices(uniform_images(32)).repeat().batch(BATCH, drop_remainder=True)

    def state(trainer):
        return {
            **_weights(trainer),
            **{f"opt/{i}": v.numpy() for i, v in enumerate(trainer.optimizer.variables)},
            "generator": trainer.generator.state.numpy(),
        }

    def same(a, b):
        return sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)

    mirrored = trainer_lib.Trainer(cfg, SHAPE, _mirrored())
    mirrored.train_steps(iter(mirrored.strategy.experimental_distribute_dataset(data)), 2)
    path = mirrored.checkpoint.save(os.path.join(tmp, "mirrored"))
    single = trainer_lib.Trainer(cfg, SHAPE)
    single.checkpoint.restore(path).assert_existing_objects_matched()
    to_default = same(state(mirrored), state(single)) and single.step == 2
    single.train_steps(iter(data), 1)
    path = single.checkpoint.save(os.path.join(tmp, "single"))
    back = trainer_lib.Trainer(cfg, SHAPE, _mirrored())
    back.checkpoint.restore(path).assert_existing_objects_matched()
    gen_copies = [g.numpy() for g in back.strategy.experimental_local_results(back.generator.state)]
    return {
        "to_default": bool(to_default),
        "back_to_mirrored": same(state(single), state(back)) and back.step == 3,
        "generator_copies_restored": all(np.array_equal(g, single.generator.state.numpy()) for g in gen_copies),
    }


def check_mixed_precision_overflow_on_one_replica():
    """An overflow on one replica only: both skip the step (and halve the loss scale)."""
    import tensorflow as tf

    from pga_tf.training import trainer as trainer_lib

    strategy = _mirrored()
    trainer = trainer_lib.Trainer(tiny_cfg("lpga", precision="mixed_float16"), SHAPE, strategy)
    before = _weights(trainer)
    scale = float(trainer.optimizer.dynamic_scale.numpy())
    images = uniform_images(BATCH)
    images[BATCH // 2 :] *= 1e5  # replica 1's half overflows float16 (max 65504)

    @tf.function
    def step(values):
        return strategy.run(trainer.replica_step, args=(values,))

    step(_split(strategy, images)[0])
    after = _weights(trainer)
    return {
        "weights_finite": all(np.isfinite(w).all() for w in after.values()),
        "weights_unchanged": all(np.array_equal(before[k], after[k]) for k in before),
        "scale_halved": float(trainer.optimizer.dynamic_scale.numpy()) == scale / 2,
        "step_counted": trainer.step == 1,
    }


def check_jit_refused():
    from pga_tf.training import trainer as trainer_lib

    try:
        trainer_lib.Trainer(tiny_cfg("lpga", jit_compile=True), SHAPE, _mirrored())
    except trainer_lib.TrainingError as e:
        return str(e)
    return None


def _run_checks(tmp):
    from pga_tf import cli

    cli.split_cpu(2)
    checks = {
        "equivalence": check_equivalence,
        "replica_noise": check_replica_noise,
        "checkpoint": lambda: check_checkpoint_across_strategies(tmp),
        "overflow": check_mixed_precision_overflow_on_one_replica,
        "jit_refused": check_jit_refused,
    }
    results = {}
    for name, fn in checks.items():
        try:
            results[name] = {"ok": fn()}
        except Exception:  # reported by the test that reads this check
            results[name] = {"error": traceback.format_exc()}
    print("RESULTS " + json.dumps(results))


# ---------------------------------------------------------------------------- the tests
@pytest.fixture(scope="module")
def two_replica(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("two_replica"))
    proc = subprocess.run(
        [sys.executable, "-m", "tests.test_distribute", tmp],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [l for l in proc.stdout.splitlines() if l.startswith("RESULTS ")]
    assert proc.returncode == 0 and lines, proc.stdout + proc.stderr
    return json.loads(lines[-1][len("RESULTS ") :])


def _result(two_replica, name):
    result = two_replica[name]
    assert "error" not in result, result.get("error")
    return result["ok"]


def _update_error(out):
    """(relative L2 error of the whole update, worst per-variable max error / max update)."""
    v = out["variables"].values()
    l2 = (sum(x[2] for x in v) / sum(x[3] for x in v)) ** 0.5
    return l2, max(diff / (update + 1e-9) for diff, update, _, _ in v)


@pytest.mark.e2e
@pytest.mark.parametrize("case", [c for c in EQUIVALENCE if c != "vpga_unsynced_bn"])
def test_mirrored_step_equals_single_device_step(two_replica, case):
    out = _result(two_replica, "equivalence")[case]
    single, mirrored = out["metrics"]
    assert mirrored == pytest.approx(single, rel=1e-3, abs=1e-6)
    # Exact in real arithmetic; in float32 the replicas run other kernels on half batches and
    # sum gradients in another order, and the log-det's finite difference (a 0.02 step)
    # amplifies that round-off in the decoder's first layer. Measured: L2 error 2e-3 (LPGA),
    # <1e-4 (the others); worst variable 6%. Unsynced BN, a real difference, gives 0.06 and 1.6.
    l2, worst = _update_error(out)
    assert l2 < 1e-2 and worst < 0.2, (l2, worst)
    assert out["copies_equal"]


@pytest.mark.e2e
def test_unsynced_batch_norm_is_not_the_single_device_step(two_replica):
    """The comparison above can fail: without sync BN each replica normalises its own half."""
    l2, worst = _update_error(_result(two_replica, "equivalence")["vpga_unsynced_bn"])
    assert l2 > 2e-2 and worst > 0.5, (l2, worst)


@pytest.mark.e2e
def test_replicas_draw_different_noise_reproducibly(two_replica):
    out = _result(two_replica, "replica_noise")
    assert out == {
        "replicas_differ": True,
        "fields_differ": True,
        "same_seed_same_draws": True,
        "other_seed_other_draws": True,
        "state_in_sync": True,
    }


@pytest.mark.e2e
def test_checkpoint_restores_across_strategies(two_replica):
    out = _result(two_replica, "checkpoint")
    assert out == {"to_default": True, "back_to_mirrored": True, "generator_copies_restored": True}


@pytest.mark.e2e
def test_mixed_precision_overflow_on_one_replica_skips_the_step_everywhere(two_replica):
    out = _result(two_replica, "overflow")
    assert out == {"weights_finite": True, "weights_unchanged": True, "scale_halved": True, "step_counted": True}


@pytest.mark.e2e
def test_jit_compile_on_logical_cpus_is_refused(two_replica):
    message = _result(two_replica, "jit_refused")
    assert message and "--jit_compile cannot run a step of 2 replicas on CPUs" in message


# ------------------------------------------------------------------------ multi-worker
def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


class _Worker:
    """A train.py worker process whose output lines are collected by a thread as they come."""

    def __init__(self, args, index, cluster):
        env = {**ENV, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        self.proc = subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self._reader.start()

    @property
    def output(self):
        return "".join(self.lines)


def _run_workers(args, n=2, on_started=None, timeout=240):
    """Run `n` train.py workers on localhost; on_started(workers) once each has logged a step.

    Returns the workers after all have exited; kills them all if any is still running at the
    timeout (a worker whose peer died waits forever in a collective)."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(n)]}
    workers = [_Worker(args, i, cluster) for i in range(n)]
    deadline = time.monotonic() + timeout
    try:
        if on_started is not None:
            while not all(any(l.startswith("step ") for l in w.lines) for w in workers):
                assert time.monotonic() < deadline and all(w.proc.poll() is None for w in workers), [
                    w.output for w in workers
                ]
                time.sleep(0.2)
            on_started(workers)
        for w in workers:
            w.proc.wait(timeout=max(deadline - time.monotonic(), 1))
            w._reader.join(timeout=10)
    finally:
        for w in workers:
            if w.proc.poll() is None:
                w.proc.kill()
                w.proc.wait()
    return workers


@pytest.mark.e2e
def test_two_workers_stop_together_resume_and_end_identical(idx_dir, tmp_path):
    """train.py as two MultiWorkerMirroredStrategy workers on localhost, sharing one run dir.

    VPGA with sync BN: its global latent RMS and the BN statistics are all-reduced across
    workers. A SIGTERM to one worker stops both at the same step with a checkpoint (neither is
    left waiting in a collective); both then resume from the chief's checkpoint and print equal
    digests of their final weights, which the chief's checkpoint holds.
    """
    from pga_tf import export
    from pga_tf.training import distribution

    run_dir = str(tmp_path / "run")
    args = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--strategy=multi_worker",
        "--dataset=mnist",
        f"--data_dir={idx_dir}",
        f"--run_dir={run_dir}",
        "--method=vpga",
        "--use_bn",
        "--sync_bn",
        f"--z_dim={Z_DIM}",
        f"--batch_size={BATCH}",
        "--lr=0.01",
        "--steps_per_loop=2",
        "--log_every=2",
        "--ckpt_every=1000",
        "--sample_every=1000",
    ]
    first = _run_workers(args + ["--train_steps=1000"], on_started=lambda ws: ws[1].proc.send_signal(signal.SIGTERM))
    stops = [re.findall(r"stopped at step (\d+)", w.output) for w in first]
    assert all(w.proc.returncode == 0 for w in first) and stops[0] and stops[0] == stops[1], [w.output for w in first]
    step = int(stops[0][0])
    assert "another worker's signal: stopped" in first[0].output
    assert not os.path.exists(os.path.join(run_dir, ".worker-worker-1"))  # scratch removed

    second = _run_workers(args + [f"--train_steps={step + 2}"])
    for w in second:
        assert w.proc.returncode == 0, w.output
        assert "on 2 replica(s)" in w.output and f"at step {step}" in w.output  # resumed
    digests = [
        re.findall(rf"finished at step {step + 2}; weights digest \(sha256, first 16 hex digits\) (\w+)", w.output)
        for w in second
    ]
    assert digests[0] and digests[0] == digests[1], [w.output for w in second]
    module = export.from_run(run_dir)  # the chief's config.json and latest checkpoint
    assert distribution.weights_digest(module.encoder, module.decoder) == digests[0][0]
    # .lock: the chief's run-dir lock (run_lock), an empty file that outlives the run.
    assert sorted(os.listdir(run_dir)) == [".lock", "checkpoints", "config.json", "samples", "saved_model", "tb"]


def _lone_worker(idx_dir, run_dir, index, n, worker_timeout):
    """train.py as worker `index` of an `n`-worker TF_CONFIG cluster whose other workers never start."""
    cluster = {"worker": [f"127.0.0.1:{p}" for p in _free_ports(n)]}
    args = [
        sys.executable,
        os.path.join(ROOT, "train.py"),
        "--strategy=multi_worker",
        "--dataset=mnist",
        f"--data_dir={idx_dir}",
        f"--run_dir={run_dir}",
        f"--z_dim={Z_DIM}",
        f"--batch_size={BATCH}",
        "--train_steps=2",
    ]
    if worker_timeout is not None:
        args.append(f"--worker_timeout={worker_timeout}")
    return _Worker(args, index, cluster), cluster["worker"]


@pytest.mark.e2e
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_worker_waiting_for_its_peer_says_so_and_stops_on_a_signal(idx_dir, tmp_path, sig):
    """Worker 1 alone: it names the worker it waits for, and Ctrl-C or SIGTERM ends the wait at
    once with one error line, the run dir untouched (TensorFlow's own wait ignores both)."""
    run_dir = tmp_path / "run"
    worker, addresses = _lone_worker(idx_dir, run_dir, index=1, n=2, worker_timeout=None)
    waiting = f"waiting for worker 0 ({addresses[0]}) to start (--worker_timeout=600 s"
    try:
        deadline = time.monotonic() + 60
        while not any(waiting in line for line in worker.lines):
            assert time.monotonic() < deadline and worker.proc.poll() is None, worker.output
            time.sleep(0.2)
        worker.proc.send_signal(sig)
        worker.proc.wait(timeout=20)  # a worker that ignores the signal fails here
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
    worker._reader.join(timeout=10)
    assert worker.proc.returncode == 1, worker.output
    assert worker.lines[-1].strip() == (
        f"error: {sig.name} while waiting for worker 0 ({addresses[0]}); stopped, nothing written"
    ), worker.output
    assert "Traceback" not in worker.output
    assert not run_dir.exists()


@pytest.mark.e2e
@pytest.mark.parametrize("index, n", [(1, 2), (0, 3)], ids=["worker1_of_2", "chief_of_3"])
def test_a_worker_whose_peers_never_come_gives_up_after_worker_timeout(idx_dir, tmp_path, index, n):
    run_dir = tmp_path / "run"
    worker, addresses = _lone_worker(idx_dir, run_dir, index=index, n=n, worker_timeout=2)
    try:
        worker.proc.wait(timeout=120)
    finally:
        if worker.proc.poll() is None:
            worker.proc.kill()
            worker.proc.wait()
    worker._reader.join(timeout=10)
    missing = ", ".join(f"worker {i} ({a})" for i, a in enumerate(addresses) if i != index)
    assert worker.proc.returncode == 1, worker.output
    assert f"waiting for {missing} to start (--worker_timeout=2 s" in worker.output
    assert worker.lines[-1].startswith(f"error: {missing} did not start within --worker_timeout=2 s"), worker.output
    assert "Traceback" not in worker.output and not run_dir.exists()


if __name__ == "__main__":
    _run_checks(sys.argv[1])
