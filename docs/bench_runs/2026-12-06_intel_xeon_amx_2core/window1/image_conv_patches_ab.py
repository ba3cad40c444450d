# The encoder's 1-channel conv as image patches x matrix against the convolution; scratch script kept as it ran.
import time, numpy as np, tensorflow as tf
def timeit(fn, args, reps=21, warm=5):
    for _ in range(warm): fn(*args).numpy()
    ts=[]
    for _ in range(reps):
        t=time.perf_counter(); fn(*args).numpy(); ts.append(time.perf_counter()-t)
    return np.median(ts)*1e3
rng=np.random.default_rng(0)
for n in (64,128):
    x=tf.constant(rng.standard_normal((n,28,28,1)).astype(np.float32))
    w=tf.constant(rng.standard_normal((5,5,1,64)).astype(np.float32))
    dy=tf.constant(rng.standard_normal((n,14,14,64)).astype(np.float32))
    conv=tf.function(lambda x,w: tf.nn.conv2d(x,w,2,"SAME"))
    def pm(x,w):
        p=tf.image.extract_patches(x,[1,5,5,1],[1,2,2,1],[1,1,1,1],"SAME")
        return tf.einsum("nhwk,ko->nhwo", p, tf.reshape(w,[25,64]))
    pm=tf.function(pm)
    d=np.abs(conv(x,w).numpy()-pm(x,w).numpy()).max()
    bw=tf.function(lambda x,dy: tf.raw_ops.Conv2DBackpropFilter(input=x,filter_sizes=[5,5,1,64],out_backprop=dy,strides=[1,2,2,1],padding="SAME"))
    def pbw(x,dy):
        p=tf.image.extract_patches(x,[1,5,5,1],[1,2,2,1],[1,1,1,1],"SAME")
        return tf.reshape(tf.einsum("nhwk,nhwo->ko",p,dy),[5,5,1,64])
    pbw=tf.function(pbw)
    d2=np.abs(bw(x,dy).numpy()-pbw(x,dy).numpy()).max()
    pat=tf.function(lambda x: tf.image.extract_patches(x,[1,5,5,1],[1,2,2,1],[1,1,1,1],"SAME"))
    for r in range(2):
        print(n, f"conv fwd {timeit(conv,(x,w)):.3f} ms  patches+matmul {timeit(pm,(x,w)):.3f} ms (diff {d:.1e}) | bwd_w {timeit(bw,(x,dy)):.3f} ms  patches^T dy {timeit(pbw,(x,dy)):.3f} ms (diff {d2:.1e}) | patches alone {timeit(pat,(x,)):.3f}", flush=True)
