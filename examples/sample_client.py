"""Draw 16 samples from an exported PGA model into one PNG: sample_client.py EXPORT_DIR OUT.png

Needs only TensorFlow, numpy and Pillow. With pga_tf installed (pip install -e .), TensorFlow's
harmless start-up lines are filtered as in pga-tf's own programs (pga_tf/console.py).
"""

import sys

try:
    from pga_tf import console

    console.install()  # before TensorFlow loads
except ImportError:  # a serving machine without pga_tf: TensorFlow's own start-up lines show
    pass

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image  # noqa: E402

model = tf.saved_model.load(sys.argv[1])
out = model.signatures["sample"](num_samples=tf.constant(16), seed=tf.constant(0, tf.int64))
x = np.round((out["images"].numpy() + 1) * 127.5).astype(np.uint8)  # [-1, 1] -> [0, 255]
n, h, w, c = x.shape
grid = x.reshape(4, 4, h, w, c).transpose(0, 2, 1, 3, 4).reshape(4 * h, 4 * w, c)
Image.fromarray(grid[..., 0] if c == 1 else grid).save(sys.argv[2])
