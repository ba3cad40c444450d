# A/B of the fc layer's products at the step's shapes; scratch script kept as it ran (median of 20 calls, 5 warm-up).
"""A/B of the fc layer's matmul formulations at the step's shapes (interleaved, same run)."""
import time, sys, os
import numpy as np
import tensorflow as tf

def timeit(fn, args, reps=20, warm=5):
    for _ in range(warm):
        fn(*args).numpy()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(*args).numpy(); ts.append(time.perf_counter() - t)
    return np.median(ts) * 1e3

rng = np.random.default_rng(0)
def T(*s, dt=tf.float32):
    return tf.cast(tf.constant(rng.standard_normal(s).astype(np.float32)), dt)

for dt in (tf.float32, tf.bfloat16):
    # weight gradient x^T dy
    for (n, k, m) in ((128, 6272, 1024), (64, 1024, 6272)):
        x, dy = T(n, k, dt=dt), T(n, m, dt=dt)
        v = {
          "matmul(transpose_a)": tf.function(lambda x, dy: tf.matmul(x, dy, transpose_a=True)),
          "einsum nk,nm->km": tf.function(lambda x, dy: tf.einsum("nk,nm->km", x, dy)),
          "matmul(transpose(x))": tf.function(lambda x, dy: tf.matmul(tf.transpose(x), dy)),
        }
        flops = 2 * n * k * m
        for rnd in range(2):
            for name, f in v.items():
                ms = timeit(f, (x, dy))
                print(f"{dt.name} dW {k}x{n}@{n}x{m} {name:24s} {ms:7.2f} ms {flops/ms/1e6:6.1f} GFLOP/s", flush=True)
    # forward with bias
    for (n, k, m) in ((128, 6272, 1024), (64, 1024, 6272)):
        x, w, b = T(n, k, dt=dt), T(k, m, dt=dt), T(m, dt=dt)
        v = {
          "matmul+bias_add": tf.function(lambda x, w, b: tf.nn.relu(tf.nn.bias_add(tf.matmul(x, w), b))),
          "matmul only": tf.function(lambda x, w, b: tf.matmul(x, w)),
          "einsum+b": tf.function(lambda x, w, b: tf.nn.relu(tf.einsum("nk,km->nm", x, w) + b)),
          "dy@W^T einsum": tf.function(lambda x, w, b: tf.einsum("nm,km->nk", tf.matmul(x, w), w)),
        }
        flops = 2 * n * k * m
        for rnd in range(2):
            for name, f in v.items():
                ms = timeit(f, (x, w, b))
                fl = flops * (2 if name.startswith("dy@") else 1)
                print(f"{dt.name} fwd {n}x{k}@{k}x{m} {name:24s} {ms:7.2f} ms {fl/ms/1e6:6.1f} GFLOP/s", flush=True)
a = T(2048, 2048); bb = T(2048, 2048)
f = tf.function(lambda a, b: tf.matmul(a, b))
ms = timeit(f, (a, bb))
print(f"float32 matmul 2048^2 {ms:.2f} ms {2*2048**3/ms/1e6:.1f} GFLOP/s")
a16, b16 = tf.cast(a, tf.bfloat16), tf.cast(bb, tf.bfloat16)
ms = timeit(f, (a16, b16))
print(f"bfloat16 matmul 2048^2 {ms:.2f} ms {2*2048**3/ms/1e6:.1f} GFLOP/s")
