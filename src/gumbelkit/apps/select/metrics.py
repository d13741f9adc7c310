"""Evaluation helpers: L2X's median rank, and nearest-neighbour / tree classifiers on selections."""

from __future__ import annotations

import numpy as np

__all__ = ["median_rank"]


def median_rank(scores: np.ndarray, true_idx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Per point, the median rank of its relevant features when all are ranked by score.

    Rank 1 is the highest score; ties are broken uniformly at random (as L2X's evaluation does
    with a random permutation). A perfect explainer of ``m`` relevant features scores
    ``(m + 1) / 2``.

    Args:
        scores: ``(N, d)`` feature scores.
        true_idx: ``(N, m)`` indices of each point's relevant features.
        rng: random source for the tie-breaking.

    Returns:
        ``(N,)`` median ranks.

    Example:
        >>> median_rank(np.array([[3.0, 2.0, 1.0]]), np.array([[0, 1]]), np.random.default_rng(0))
        array([1.5])
    """
    if scores.ndim != 2 or true_idx.ndim != 2 or len(scores) != len(true_idx):
        raise ValueError(f"scores (N, d) and true_idx (N, m) must match, got {scores.shape} and {true_idx.shape}")
    n, d = scores.shape
    tie = rng.random((n, d))
    order = np.lexsort((tie, -scores), axis=-1)  # by score descending, then the random key
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(1, d + 1), (n, d)), axis=1)
    return np.median(np.take_along_axis(ranks, true_idx, axis=1), axis=1)
