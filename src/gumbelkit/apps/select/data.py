r"""L2X's synthetic datasets (Chen et al. 2018, section 5.1) and image patches.

``X ~ N(0, I_10)``; the label is a probability used directly as a soft target:

* ``xor``: :math:`P(y=1) = 1 / (1 + e^{x_0 x_1})`; relevant features {0, 1}, k = 2;
* ``orange``: :math:`P(y=1) = 1/(1 + e^{\sum_{i<4} x_i^2 - 4})`; {0..3}, k = 4;
* ``additive``: :math:`P(y=1) = 1/(1 + e^{-100\sin(0.2 x_0) + |x_1| + x_2 + e^{-x_3} - 2.4})`;
  {0..3}, k = 4;
* ``switch``: half the points get :math:`x_9 + 3` and the orange-skin label, the other half
  :math:`x_9 - 3` and the additive label computed from features 0..3 that are then moved to
  4..7 (and 4..7 to 0..3); rows are permuted. Relevant: {0..3, 9} or {4..7, 9}, k = 5.

Rows come from ``numpy.random.RandomState(seed).randn(n, 10)`` as in L2X's code. One difference:
L2X's code swaps the switch half's columns with ``X2[:,4:8], X2[:,:4] = X2[:,:4], X2[:,4:8]``,
which on numpy views copies 0..3 into 4..7 and leaves 0..3 unchanged (both blocks then hold the
same values); we move the blocks as the paper describes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

__all__ = ["L2X_DATASETS", "L2X_K", "L2XData", "image_patches", "l2x_synthetic", "patch_mask_to_pixels",
           "true_features"]

L2X_DATASETS = ("xor", "orange", "additive", "switch")
#: the subset size L2X uses per dataset (the number of relevant features)
L2X_K = {"xor": 2, "orange": 4, "additive": 4, "switch": 5}
N_FEATURES = 10


class L2XData(NamedTuple):
    """``x`` ``(n, 10)`` float32, ``y`` ``(n, 2)`` float32 soft labels ``[P(y=0), P(y=1)]``,
    ``branch`` ``(n,)`` int64 (switch: 0 orange-skin half, 1 additive half; else all 0)."""

    x: Tensor
    y: Tensor
    branch: Tensor


def _orange(x: np.ndarray) -> np.ndarray:
    return np.exp(np.sum(x[:, :4] ** 2, axis=1) - 4.0)


def _additive(x: np.ndarray) -> np.ndarray:
    return np.exp(-100 * np.sin(0.2 * x[:, 0]) + np.abs(x[:, 1]) + x[:, 2] + np.exp(-x[:, 3]) - 2.4)


def _soft_labels(odds: np.ndarray) -> np.ndarray:
    p1 = 1.0 / (1.0 + odds)  # P(y = 1); odds = e^{...} is finite in float64 for N(0, 1) rows
    return np.stack([1.0 - p1, p1], axis=1)


def l2x_synthetic(dataset: str, n: int, seed: int) -> L2XData:
    """``n`` points of L2X's synthetic ``dataset`` drawn with ``seed``.

    Example:
        >>> d = l2x_synthetic("xor", 1000, seed=0)
        >>> d.x.shape, d.y.shape
        (torch.Size([1000, 10]), torch.Size([1000, 2]))
    """
    if dataset not in L2X_DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(L2X_DATASETS)}; got {dataset!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an int >= 2, got {n!r}")
    rs = np.random.RandomState(seed)  # noqa: NPY002  (L2X's generator, for the same rows)
    x = rs.randn(n, N_FEATURES)
    branch = np.zeros(n, dtype=np.int64)
    if dataset == "xor":
        y = _soft_labels(np.exp(x[:, 0] * x[:, 1]))
    elif dataset == "orange":
        y = _soft_labels(_orange(x))
    elif dataset == "additive":
        y = _soft_labels(_additive(x))
    else:
        half = n // 2
        x[:half, -1] += 3.0
        x[half:, -1] -= 3.0
        y = np.concatenate([_soft_labels(_orange(x[:half])), _soft_labels(_additive(x[half:]))])
        x[half:, :8] = np.concatenate([x[half:, 4:8], x[half:, :4]], axis=1)  # move 0..3 to 4..7
        branch[half:] = 1
        perm = rs.permutation(n)
        x, y, branch = x[perm], y[perm], branch[perm]
    return L2XData(torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.float32)),
                   torch.from_numpy(branch))


def true_features(dataset: str, branch: Tensor) -> Tensor:
    """``(n, k)`` indices of each point's relevant features (the switch data: its own branch)."""
    if dataset == "xor":
        base = [[0, 1], [0, 1]]
    elif dataset in ("orange", "additive"):
        base = [[0, 1, 2, 3], [0, 1, 2, 3]]
    elif dataset == "switch":
        base = [[0, 1, 2, 3, 9], [4, 5, 6, 7, 9]]
    else:
        raise ValueError(f"dataset must be one of {', '.join(L2X_DATASETS)}; got {dataset!r}")
    return torch.tensor(base)[branch]


# --------------------------------------------------------------------------- image patches


def image_patches(images: Tensor, patch: int = 4) -> Tensor:
    """``(B, 784)`` images -> ``(B, P, patch * patch)`` patches in row-major grid order."""
    b = images.shape[0]
    side = int(round(images.shape[1] ** 0.5))
    g = side // patch
    x = images.reshape(b, g, patch, g, patch)  # (B, gy, py, gx, px)
    return x.permute(0, 1, 3, 2, 4).reshape(b, g * g, patch * patch)


def patch_mask_to_pixels(mask: Tensor, patch: int = 4, side: int = 28) -> Tensor:
    """``(B, P)`` patch mask -> ``(B, side * side)`` pixel mask (each patch value on its pixels)."""
    b = mask.shape[0]
    g = side // patch
    m = mask.reshape(b, g, 1, g, 1).expand(b, g, patch, g, patch)
    return m.reshape(b, side * side)
