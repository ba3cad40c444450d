"""Improved precision and recall (Kynkaanniemi et al. 2019) against hand counts and brute force."""

import numpy as np
import pytest

from pga_tf.evaluation import precision_recall as pr


def test_hand_computed_one_dimensional_case():
    # k = 1. Real 0, 1, 2, 10: radii 1, 1, 1, 8. Generated 0.5, 5, 20: radii 4.5, 4.5, 15.
    # Precision: 0.5 is within 1 of 0; 5 is within 8 of 10; 20 is 10 from 10 > 8: 2/3.
    # Recall: 0, 1, 2 are within 4.5 of 0.5; 10 is within 15 of 20: 4/4.
    real = np.array([[0.0], [1.0], [2.0], [10.0]])
    gen = np.array([[0.5], [5.0], [20.0]])
    np.testing.assert_allclose(pr.knn_radii(real, 1), [1, 1, 1, 8])
    np.testing.assert_allclose(pr.knn_radii(gen, 1), [4.5, 4.5, 15])
    out = pr.precision_recall(real, gen, k=1)
    assert out["precision"] == pytest.approx(2 / 3)
    assert out["recall"] == pytest.approx(1.0)


def test_a_point_on_a_ball_edge_counts_as_inside():
    # Radius of 0 is 2 (its only neighbour); a generated point exactly 2 away is inside.
    real, gen = np.array([[0.0, 0.0], [2.0, 0.0]]), np.array([[0.0, 2.0], [0.0, 2.5]])
    assert pr.precision_recall(real, gen, k=1)["precision"] == pytest.approx(0.5)


def _brute_force(real, gen, k):
    """Loops over every pair, sorting each point's distances to its own set (itself excluded)."""

    def radii(x):
        return [sorted(np.linalg.norm(x[i] - x[j]) for j in range(len(x)) if j != i)[k - 1] for i in range(len(x))]

    def covered(points, centres, r):
        return np.mean([any(np.linalg.norm(p - c) <= rc for c, rc in zip(centres, r)) for p in points])

    return covered(gen, real, radii(real)), covered(real, gen, radii(gen))


@pytest.mark.parametrize("k", [1, 3])
def test_matches_brute_force_with_blocks_smaller_than_the_sets(k, monkeypatch):
    rng = np.random.default_rng(0)
    real = rng.normal(size=(40, 5))
    gen = rng.normal(0.7, 1.3, size=(33, 5))  # shifted and wider: neither 0 nor 1
    monkeypatch.setattr(pr, "_BLOCK", 7)  # several blocks, one ragged
    out = pr.precision_recall(real, gen, k=k)
    want_p, want_r = _brute_force(real, gen, k)
    assert 0 < want_p < 1 and 0 < want_r < 1
    assert out["precision"] == pytest.approx(want_p)
    assert out["recall"] == pytest.approx(want_r)


def test_dropped_mode_lowers_recall_not_precision():
    # Real data: two clusters. A generator that covers one cluster only makes good samples
    # (precision high) but misses half the data (recall about one half).
    rng = np.random.default_rng(1)
    real = np.concatenate([rng.normal(-10, 1, (200, 2)), rng.normal(10, 1, (200, 2))])
    one_mode = rng.normal(-10, 1, (400, 2))
    out = pr.precision_recall(real, one_mode)
    assert out["precision"] > 0.9
    assert 0.4 < out["recall"] < 0.6


def test_given_real_radii_are_used():
    rng = np.random.default_rng(2)
    real, gen = rng.normal(size=(30, 3)), rng.normal(size=(30, 3))
    radii = pr.knn_radii(real)
    assert pr.precision_recall(real, gen, real_radii=radii) == pr.precision_recall(real, gen)
    # Radii of zero leave only exact matches inside: no generated point is.
    assert pr.precision_recall(real, gen, real_radii=np.zeros(30))["precision"] == 0.0


@pytest.mark.parametrize("shapes", [((3, 2), (5, 2)), ((10, 2), (10, 3)), ((10,), (10,))])
def test_bad_shapes_raise(shapes):
    a, b = (np.zeros(s) for s in shapes)
    with pytest.raises(ValueError):
        pr.precision_recall(a, b)


def test_duplicates_count_as_neighbours():
    # Four copies of one point: each one's 3rd neighbour is another copy, radius 0, and a copy
    # is inside (distance 0 <= 0), as the reference code counts it.
    real = np.zeros((4, 2))
    np.testing.assert_array_equal(pr.knn_radii(real, 3), np.zeros(4))
    assert pr.precision_recall(real, np.zeros((4, 2)))["precision"] == 1.0
