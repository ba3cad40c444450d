"""Draw 16 samples from an exported PGA model into one PNG: sample_client.py EXPORT_DIR OUT.png"""
import sys

import numpy as np
import tensorflow as tf
from PIL import Image

model = tf.saved_model.load(sys.argv[1])
out = model.signatures["sample"](num_samples=tf.constant(16), seed=tf.constant(0, tf.int64))
x = np.round((out["images"].numpy() + 1) * 127.5).astype(np.uint8)  # [-1, 1] -> [0, 255]
n, h, w, c = x.shape
grid = x.reshape(4, 4, h, w, c).transpose(0, 2, 1, 3, 4).reshape(4 * h, 4 * w, c)
Image.fromarray(grid[..., 0] if c == 1 else grid).save(sys.argv[2])
