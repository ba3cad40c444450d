"""benchmarks/onednn_verbose_summary.py's FLOP counts and benchmarks/kernel_ceiling.py's replay of
oneDNN problems: hand-counted FLOPs, and each replayed op against TensorFlow's own gradient of the
same convolution (a second code path)."""

import os
import sys

import numpy as np
import pytest

from tests.helpers import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import kernel_ceiling  # noqa: E402
import onednn_verbose_summary as summary  # noqa: E402

CONV = "mb64_ic64oc128_ih14oh7kh5sh2dh0ph1_iw14ow7kw5sw2dw0pw1"


def _line(kind, impl, prop, src, problem, ms):
    return (
        f"onednn_verbose,v1,primitive,exec,cpu,{kind},{impl},{prop},src:{src}::blocked:acdb::f0 "
        f"wei:{src}::blocked:cdba::f0 dst:{src}::blocked:acdb::f0,attr-scratchpad:user,alg:x,{problem},{ms}\n"
    )


def test_flops_are_hand_counts():
    # 2 x N x C x K x P x Q x R x S for the encoder's 5x5 stride-2 conv, 14x14 -> 7x7.
    assert summary.flops("convolution", CONV) == 2 * 64 * 64 * 128 * 7 * 7 * 5 * 5
    # oneDNN leaves out the w dimensions of a square problem.
    assert summary.flops("convolution", "mb2_ic3oc4_ih8oh4kh3sh2dh0ph1") == 2 * 2 * 3 * 4 * 4 * 4 * 3 * 3
    # groups divide the input channels.
    assert summary.flops("convolution", "g2mb1_ic8oc8_ih4oh4kh1sh1dh0ph0") == 2 * 1 * 4 * 8 * 4 * 4
    assert summary.flops("matmul", "64x6272:6272x1024") == 2 * 64 * 6272 * 1024
    assert summary.flops("matmul", "3x64x10:3x10x5") == 2 * 3 * 64 * 10 * 5
    assert summary.flops("gemm_api", "1024x64:64x6272") == 2 * 1024 * 64 * 6272
    assert summary.flops("inner_product", "mb64ic1024oc6272") == 2 * 64 * 1024 * 6272
    assert summary.flops("inner_product", "mb8ic16ih7iw7oc32") == 2 * 8 * 16 * 49 * 32
    assert summary.flops("reorder", "128x64x5x5") == 0


def test_parse_counts_profiled_calls_per_direction_and_dtype():
    log = [
        _line("convolution", "brg_conv_fwd:avx512_core", "forward_training", "f32", CONV, 1.0),  # warm-up
        "== profile start\n",
        _line("convolution", "brg_conv_fwd:avx512_core", "forward_training", "f32", CONV, 4.0),
        _line("convolution", "brg_conv_fwd:avx512_core", "forward_training", "f32", CONV, 4.2),
        _line("convolution", "brgconv_strided:avx512_core", "backward_data", "f32", CONV, 5.0),
        _line("matmul", "brg_matmul:avx10_1_512_amx", "undef", "bf16", "64x6272:6272x1024", 2.0),
        _line("reorder", "jit:uni", "undef", "f32", "128x64x5x5", 0.3),
        "== profile end: lpga float32 log_det finite_difference, 2 steps in 0.400 s (200.0 ms/step)\n",
    ]
    calls, steps, seconds = kernel_ceiling.parse(log)
    Call = kernel_ceiling.Call
    assert calls == {
        Call("convolution", "forward_training", CONV, "float32"): 2,
        Call("convolution", "backward_data", CONV, "float32"): 1,
        Call("matmul", "", "64x6272:6272x1024", "bfloat16"): 1,
    }
    assert (steps, seconds) == (2, 0.4)


@pytest.mark.parametrize(
    "problem, padding",
    [
        ("mb2_ic3oc5_ih9oh5kh3sh2dh0ph1_iw8ow4kw3sw2dw0pw0", "SAME"),  # odd sizes: SAME pads after
        ("mb2_ic3oc5_ih9oh7kh3sh1dh0ph0_iw8ow6kw3sw1dw0pw0", "VALID"),
        ("mb2_ic3oc5_ih6oh6kh3sh1dh0ph2_iw6ow6kw3sw1dw0pw2", [[0, 0], [2, 0], [2, 0], [0, 0]]),
    ],
)
def test_replayed_convolutions_equal_tensorflows_gradients(problem, padding):
    import tensorflow as tf

    def replay(prop):
        return kernel_ceiling.op_for(kernel_ceiling.Call("convolution", prop, problem, "float32"))[0]

    dims = kernel_ceiling.conv_dims(problem)
    rng = np.random.default_rng(1)
    x = tf.constant(rng.standard_normal((dims["mb"], dims["ih"], dims["iw"], dims["ic"])).astype(np.float32))
    w = tf.constant(rng.standard_normal((dims["kh"], dims["kw"], dims["ic"], dims["oc"])).astype(np.float32))
    dy = tf.constant(rng.standard_normal((dims["mb"], dims["oh"], dims["ow"], dims["oc"])).astype(np.float32))
    with tf.GradientTape(persistent=True) as tape:
        tape.watch([x, w])
        y = tf.nn.conv2d(x, w, [1, dims["sh"], dims["sw"], 1], padding)
    assert y.shape == dy.shape
    np.testing.assert_allclose(replay("forward_training")(x, w), y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(replay("backward_data")(w, dy), tape.gradient(y, x, dy), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(replay("backward_weights")(x, dy), tape.gradient(y, w, dy), rtol=1e-4, atol=1e-4)
