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


def _line(kind, impl, prop, src, problem, ms, src_tag="acdb", wei_tag="cdba", bias="undef"):
    return (
        f"onednn_verbose,v1,primitive,exec,cpu,{kind},{impl},{prop},src:{src}::blocked:{src_tag}::f0 "
        f"wei:{src}::blocked:{wei_tag}::f0 bia:{bias}::undef::: dst:{src}::blocked:acdb::f0,"
        f"attr-scratchpad:user,alg:x,{problem},{ms}\n"
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
    assert summary.flops("matmul", "1x64x10:3x10x5") == 2 * 3 * 64 * 10 * 5  # the batch broadcasts
    # 1-D (w only) and cubic 3-D (d only) problems.
    assert summary.flops("convolution", "mb1_ic3oc4_iw8ow8kw3sw1dw0pw1") == 2 * 3 * 4 * 8 * 3
    assert summary.flops("convolution", "mb1_ic3oc4_id6od6kd3sd1dd0pd1") == 2 * 3 * 4 * 6**3 * 3**3
    assert summary.flops("convolution", "not a problem") == 0
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
        _line("matmul", "brg_matmul:avx10_1_512_amx", "undef", "bf16", "64x6272:6272x1024", 2.0, "ab", "ba"),
        _line("inner_product", "x64:gemm:jit", "forward_training", "f32", "mb64ic1024oc6272", 1.5, "ab", "ba", "f32"),
        "onednn_verbose,v1,primitive,exec,cpu,gemm_api,,undef,src_f32::blocked:ba:f0 wei_f32::blocked:ab:f0 "
        "dst_f32::blocked:ab:f0,,,1024x64:64x6272,5.0\n",
        _line("reorder", "jit:uni", "undef", "f32", "128x64x5x5", 0.3),
        "== profile end: lpga float32 log_det finite_difference, 2 steps in 0.400 s (200.0 ms/step)\n",
    ]
    calls, steps, seconds = kernel_ceiling.parse(log)
    Call = kernel_ceiling.Call
    assert calls == {
        Call("convolution", "forward_training", CONV, "float32"): 2,
        Call("convolution", "backward_data", CONV, "float32"): 1,
        Call("matmul", "", "64x6272:6272x1024", "bfloat16", "b"): 1,
        Call("inner_product", "forward_training", "mb64ic1024oc6272", "float32", "", True): 1,
        Call("gemm_api", "", "1024x64:64x6272", "float32", "a"): 1,
    }
    assert (steps, seconds) == (2, 0.4)


@pytest.mark.parametrize(
    "problem, padding",
    [
        ("mb2_ic3oc5_ih9oh5kh3sh2dh0ph1_iw8ow4kw3sw2dw0pw0", "SAME"),  # odd sizes: SAME pads after
        ("mb2_ic3oc5_ih9oh7kh3sh1dh0ph0_iw8ow6kw3sw1dw0pw0", "VALID"),
        ("mb2_ic3oc5_ih6oh6kh3sh1dh0ph2_iw6ow6kw3sw1dw0pw2", [[0, 0], [2, 0], [2, 0], [0, 0]]),
        ("mb2_ic3oc5_ih8oh3kh3sh2dh0ph0_iw8ow3kw3sw2dw0pw0", "VALID"),  # strided: input left unused
    ],
)
def test_replayed_convolutions_equal_tensorflows_gradients(problem, padding):
    import tensorflow as tf

    def replay(prop):
        return kernel_ceiling.op_for(kernel_ceiling.Call("convolution", prop, problem, "float32"))[0]

    dims = summary.conv_dims(problem)
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

    # The replay asks for the padding by the name the step's op had (its kernel depends on it).
    fwd, args = kernel_ceiling.op_for(kernel_ceiling.Call("convolution", "forward_training", problem, "float32"))
    (conv,) = [op for op in fwd.get_concrete_function(*args).graph.get_operations() if op.type == "Conv2D"]
    want = padding.encode() if isinstance(padding, str) else b"EXPLICIT"
    assert conv.get_attr("padding") == want


@pytest.mark.parametrize("kind", ["matmul", "gemm_api"])
@pytest.mark.parametrize("layout", ["", "a", "b", "ab"])
def test_replayed_matmuls_keep_the_logged_layout(kind, layout):
    fn, (a, b) = kernel_ceiling.op_for(kernel_ceiling.Call(kind, "", "6x5:5x4", "float32", layout))
    # An operand logged as transposed is stored transposed: [K, M] for A, [N, K] for B.
    assert a.shape == ((5, 6) if "a" in layout else (6, 5)) and b.shape == ((4, 5) if "b" in layout else (5, 4))
    a_mk = a.numpy().T if "a" in layout else a.numpy()
    b_kn = b.numpy().T if "b" in layout else b.numpy()
    np.testing.assert_allclose(fn(a, b), a_mk @ b_kn, rtol=1e-5, atol=1e-5)
    op = {"matmul": "BatchMatMulV2", "gemm_api": "MatMul"}[kind]
    assert op in {o.type for o in fn.get_concrete_function(a, b).graph.get_operations()}


def test_what_is_not_replayed_says_so():
    Call = kernel_ceiling.Call
    with pytest.raises(ValueError, match="plain 2-D"):
        kernel_ceiling.op_for(Call("convolution", "forward_training", "mb1_ic3oc4_ih8oh8kh3sh1dh1ph2", "float32"))
    with pytest.raises(ValueError, match="forward inner products"):
        kernel_ceiling.op_for(Call("inner_product", "backward_data", "mb4ic8oc2", "float32"))
