"""Dataset loaders: offline copies shipped with installed wheels and standard file formats."""

from gumbelkit.apps.data.mnist import (
    MNISTSplits,
    binarize,
    find_idx_files,
    load_mnist,
    mnist_splits,
    read_idx,
)

__all__ = ["MNISTSplits", "binarize", "find_idx_files", "load_mnist", "mnist_splits", "read_idx"]
