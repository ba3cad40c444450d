"""Improved precision and recall of generated images (Kynkäänniemi et al., NeurIPS 2019).

FID mixes two failures into one number: samples that look unlike the data, and data that no
sample resembles (dropped modes). Precision and recall separate them. Each set of features is
taken as a manifold: the union of balls around its points, each ball's radius the distance to
that point's k-th nearest neighbour in the same set (the point itself not counted).

- precision: the fraction of generated features inside the real manifold (sample quality);
- recall: the fraction of real features inside the generated manifold (coverage).

The paper uses k = 3 and equal set sizes; its reference code (kynkaat/improved-precision-and-
recall-metric, and StyleGAN2-ADA's metrics/precision_recall.py) counts a point as inside when its
distance to some centre is at most that centre's radius. Distances are Euclidean in feature space
(here the classifier features the FID uses), computed in float64 in blocks so that 10,000 x 10,000
pairs fit in memory. Pure numpy: no TensorFlow.
"""

from __future__ import annotations

import numpy as np

DEFAULT_K = 3  # the paper's choice
_BLOCK = 1024  # rows of the distance matrix held at once (1024 x 10000 float64: 80 MB)


def _squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] squared Euclidean distances, clipped at 0 against rounding."""
    d = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.maximum(d, 0.0)


def knn_radii(features: np.ndarray, k: int = DEFAULT_K) -> np.ndarray:
    """[N] distance from each point to its k-th nearest neighbour among the others.

    Raises:
      ValueError: features not [N, F], or N <= k (no k-th neighbour).
    """
    x = np.asarray(features, np.float64)
    if x.ndim != 2:
        raise ValueError(f"need [N, F] features, got shape {x.shape}")
    if k < 1 or len(x) <= k:
        raise ValueError(f"k-NN radii need 1 <= k < N; got k={k}, N={len(x)}")
    radii = np.empty(len(x))
    for i in range(0, len(x), _BLOCK):
        d = _squared_distances(x[i : i + _BLOCK], x)
        # Column k of the sorted row: column 0 is the point itself (distance 0). A duplicate of
        # the point also has distance 0 and counts as a neighbour, as in the reference code.
        radii[i : i + _BLOCK] = np.sqrt(np.partition(d, k, axis=1)[:, k])
    return radii


def coverage(points: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> float:
    """The fraction of `points` [M, F] within radii[j] of some centres[j] ([N, F], [N])."""
    p, c = np.asarray(points, np.float64), np.asarray(centres, np.float64)
    r2 = np.asarray(radii, np.float64)[None, :] ** 2
    inside = np.zeros(len(p), bool)
    for i in range(0, len(p), _BLOCK):
        inside[i : i + _BLOCK] = (_squared_distances(p[i : i + _BLOCK], c) <= r2).any(1)
    return float(inside.mean())


def precision_recall(
    real: np.ndarray, generated: np.ndarray, k: int = DEFAULT_K, real_radii: np.ndarray | None = None
) -> dict:
    """Improved precision and recall of `generated` [M, F] against `real` [N, F] features.

    Args:
      real, generated: feature rows (the same feature network for both).
      k: the neighbour that sets each ball's radius (the paper's k = 3).
      real_radii: knn_radii(real, k), when the caller scores several draws against one real set.
    Returns:
      {"precision": float in [0, 1], "recall": float in [0, 1], "k": k}.
    Raises:
      ValueError: as knn_radii, or feature widths that differ.
    """
    real, generated = np.asarray(real), np.asarray(generated)
    if real.ndim != 2 or generated.ndim != 2 or real.shape[1] != generated.shape[1]:
        raise ValueError(f"need [N, F] and [M, F] features, got {real.shape} and {generated.shape}")
    if real_radii is None:
        real_radii = knn_radii(real, k)
    return {
        "precision": coverage(generated, real, real_radii),
        "recall": coverage(real, generated, knn_radii(generated, k)),
        "k": k,
    }
