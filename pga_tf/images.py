"""Image grids for sample / reconstruction previews (PNG files and TensorBoard).

numpy only at import time; PIL is imported when a file is written.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import numpy as np


def to_uint8(images: np.ndarray) -> np.ndarray:
    """Maps [-1, 1] floats to uint8 [0, 255]; values outside the range (an untrained decoder's
    output) are clipped rather than wrapped around."""
    x = (np.asarray(images, dtype=np.float32) + 1.0) * 127.5
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def grid(images: np.ndarray, ncol: int | None = None) -> np.ndarray:
    """Tiles N images (N, H, W, C), C 1 or 3, values in [-1, 1], row-major into one uint8 array
    of shape (rows * H, ncol * W, C).

    ncol defaults to ceil(sqrt(N)), so the grid is near square. Cells past the last image stay
    black. The result keeps its channel axis, so `tf.summary.image(name, g[None])` takes it.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"grid expects images of shape (N, H, W, 1 or 3), got {images.shape}")
    n, h, w, c = images.shape
    if n == 0:
        raise ValueError("grid needs at least one image")
    ncol = ncol or math.ceil(math.sqrt(n))
    if ncol < 1:
        raise ValueError(f"ncol must be >= 1, got {ncol}")
    nrow = math.ceil(n / ncol)
    # Pad to a whole number of rows, then one reshape/transpose lays the tiles out.
    padded = np.zeros((nrow * ncol, h, w, c), np.uint8)
    padded[:n] = to_uint8(images)
    tiles = padded.reshape(nrow, ncol, h, w, c).transpose(0, 2, 1, 3, 4)
    return tiles.reshape(nrow * h, ncol * w, c)


def save_png(grid_uint8: np.ndarray, path: str) -> None:
    """Writes an (H, W, 1 or 3) uint8 array as a PNG, creating the parent directory."""
    from PIL import Image  # only needed when writing files

    arr = np.asarray(grid_uint8)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[-1] not in (1, 3):
        raise ValueError(f"save_png expects an (H, W, 1 or 3) uint8 array, got {arr.dtype} {arr.shape}")
    # PIL wants a 2-D array for greyscale ('L').
    img = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, exist_ok=True)
    img.save(path, format="PNG")


def save_grid(images: np.ndarray, path: str, ncol: int | None = None) -> None:
    """Tiles [-1, 1] images (N, H, W, C) with `grid` and writes the result as one PNG."""
    save_png(grid(images, ncol), path)


def interpolation_grid(
    images: np.ndarray, codes: np.ndarray, decode: Callable[[np.ndarray], np.ndarray], steps: int = 9
) -> np.ndarray:
    """Rows that walk in latent space between the codes of pairs of real images, as a uint8 grid.

    Pairs are (i, i + N/2). A row is the first image, `steps` decodings of (1 - t) a + t b for t
    evenly spaced in [0, 1], and the second image, as in the reference's interpolation grid, so
    a row's ends show how far the walk's end points are from the images they came from.
    """
    images, codes = np.asarray(images), np.asarray(codes, np.float32)
    half = len(images) // 2
    if half == 0 or len(codes) != len(images):
        raise ValueError(
            f"interpolation_grid needs >= 2 images and one code each, got {len(images)} images and {len(codes)} codes"
        )
    a, b = codes[:half], codes[half : 2 * half]
    walk = [np.asarray(decode((1 - t) * a + t * b)) for t in np.linspace(0.0, 1.0, steps, dtype=np.float32)]
    rows = np.stack([images[:half]] + walk + [images[half : 2 * half]], axis=1)
    return grid(rows.reshape((-1,) + images.shape[1:]), ncol=rows.shape[1])
