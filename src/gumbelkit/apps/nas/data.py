"""Image data of the architecture-search application, as ``(N, 1, H, W)`` float tensors.

* ``"digits"``: scikit-learn's 8 x 8 handwritten digits (1,797 images, shipped with the package;
  no download), pixels scaled to ``[0, 1]``, split once by a fixed permutation (seed 0) into
  1,000 train / 397 valid / 400 test images.
* ``"fashion_mnist"`` / ``"mnist"``: :func:`gumbelkit.apps.data.image_splits` (50,000 train,
  10,000 valid, 10,000 test), optionally average-pooled to 14 x 14.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DATASETS", "ImageData", "load_data"]

DATASETS = ("digits", "fashion_mnist", "mnist")
DIGITS_SPLIT = (1000, 397, 400)


class ImageData(NamedTuple):
    """Images ``(N, 1, H, W)`` in ``[0, 1]`` and int64 labels per split."""

    train_x: Tensor
    train_y: Tensor
    valid_x: Tensor
    valid_y: Tensor
    test_x: Tensor
    test_y: Tensor


def _digits() -> ImageData:
    from sklearn.datasets import load_digits  # the apps extra; the data ship with the package

    d = load_digits()
    x = torch.from_numpy((d.images / 16.0).astype(np.float32)).unsqueeze(1)  # (1797, 1, 8, 8)
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    a, b, _ = DIGITS_SPLIT
    tr, va, te = perm[:a], perm[a : a + b], perm[a + b :]
    return ImageData(x[tr], y[tr], x[va], y[va], x[te], y[te])


def load_data(name: str, *, size: int = 0, data_dir: str | None = None) -> ImageData:
    """Load ``name`` (one of :data:`DATASETS`).

    Args:
        name: ``"digits"``, ``"fashion_mnist"`` or ``"mnist"``.
        size: ``0`` keeps the native resolution; ``14`` average-pools 28 x 28 images by 2.
        data_dir: directory of the IDX files (MNIST-style datasets; None: the default source).

    Raises:
        ValueError: unknown name or size, or missing files (the message says how to get them).
    """
    if name not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {name!r}")
    if name == "digits":
        if size not in (0, 8):
            raise ValueError(f"size must be 0 or 8 for digits, got {size}")
        return _digits()
    if size not in (0, 14, 28):
        raise ValueError(f"size must be 0, 14 or 28 for {name}, got {size}")
    from gumbelkit.apps.data import image_splits

    s = image_splits(name, data_dir)

    def shape(x: Tensor) -> Tensor:
        img = x.view(-1, 1, 28, 28)
        return F.avg_pool2d(img, 2) if size == 14 else img

    return ImageData(shape(s.train), s.train_labels, shape(s.valid), s.valid_labels, shape(s.test), s.test_labels)
