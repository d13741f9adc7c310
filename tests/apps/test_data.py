"""MNIST loaders: IDX parsing, the offline copy, the 50k/10k/10k split, binarization."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from gumbelkit.apps.data import binarize, find_idx_files, load_mnist, mnist_splits, read_idx
from gumbelkit.apps.data.mnist import IDX_FILES


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch thread: on a shared 2-core machine idle OpenMP workers spin and cost 10x CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)



def write_idx(path: Path, array: np.ndarray, code: int = 0x08) -> None:
    """A minimal IDX writer (independent of the reader under test)."""
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if path.name.endswith(".gz"):
        with gzip.open(path, "wb") as fh:
            fh.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist_dir(root: Path, n_train: int, n_test: int, gz: bool = False) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for key, stem in IDX_FILES.items():
        write_idx(root / (stem + (".gz" if gz else "")), arrays[key])
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path: Path, gz: bool) -> None:
    a = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    p = tmp_path / ("x.idx" + (".gz" if gz else ""))
    write_idx(p, a)
    np.testing.assert_array_equal(read_idx(p), a)


def test_read_idx_wider_types(tmp_path: Path) -> None:
    a = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    write_idx(tmp_path / "i.idx", a, code=0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / "i.idx"), a)
    f = np.array([0.5, -1.25, 3.0], dtype=np.float64)
    write_idx(tmp_path / "f.idx", f, code=0x0E)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), f)


def test_read_idx_rejects_bad_files(tmp_path: Path) -> None:
    bad_magic = tmp_path / "bad"
    bad_magic.write_bytes(b"\x01\x00\x08\x01" + struct.pack(">I", 2) + b"\x00\x00")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad_magic)
    bad_code = tmp_path / "code"
    bad_code.write_bytes(b"\x00\x00\x07\x01" + struct.pack(">I", 2) + b"\x00\x00")
    with pytest.raises(ValueError, match="type code"):
        read_idx(bad_code)
    short = tmp_path / "short"
    short.write_bytes(b"\x00\x00\x08\x01" + struct.pack(">I", 5) + b"\x00\x00")
    with pytest.raises(ValueError, match="payload"):
        read_idx(short)


def test_data_dir_without_mnist_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        find_idx_files(tmp_path)
    with pytest.raises(ValueError, match="not a directory"):
        find_idx_files(tmp_path / "nope")
    with pytest.raises(ValueError, match="does not hold the MNIST IDX files"):
        mnist_splits(tmp_path)


def test_splits_from_idx_dir(tmp_path: Path) -> None:
    arrays = write_mnist_dir(tmp_path, n_train=10_030, n_test=7, gz=True)
    s = mnist_splits(tmp_path, binarization="dynamic")
    assert s.train.shape == (30, 784) and s.valid.shape == (10_000, 784) and s.test.shape == (7, 784)
    # dynamic: train keeps the intensities, in order
    expected = torch.from_numpy(arrays["train_images"][:30].reshape(30, -1).astype(np.float32) / 255)
    torch.testing.assert_close(s.train, expected, rtol=0, atol=0)
    np.testing.assert_array_equal(s.valid_labels.numpy(), arrays["train_labels"][30:])
    np.testing.assert_array_equal(s.test_labels.numpy(), arrays["test_labels"])


def test_torchvision_root_is_found(tmp_path: Path) -> None:
    """A torchvision.datasets.MNIST root keeps the IDX files in MNIST/raw/: --data-dir ROOT works."""
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    arrays = write_mnist_dir(tmp_path / "MNIST" / "raw", n_train=10_005, n_test=3, gz=False)
    found = find_idx_files(tmp_path)
    assert all(p.parent == tmp_path / "MNIST" / "raw" for p in found.values())
    np.testing.assert_array_equal(load_mnist(tmp_path)["test_labels"], arrays["test_labels"])


@pytest.fixture(scope="module")
def offline() -> tuple:
    return mnist_splits(binarization="fixed"), mnist_splits(binarization="dynamic")


def test_offline_copy_split_sizes(offline: tuple) -> None:
    fixed, _ = offline
    assert fixed.train.shape == (50_000, 784)
    assert fixed.valid.shape == (10_000, 784)
    assert fixed.test.shape == (10_000, 784)
    assert fixed.train_labels.shape == (50_000,) and fixed.test_labels.shape == (10_000,)
    assert set(fixed.test_labels.unique().tolist()) == set(range(10))
    raw = load_mnist()
    assert raw["train_images"].shape == (60_000, 28, 28) and raw["train_images"].dtype == np.uint8


def test_fixed_binarization_is_fixed_and_binary(offline: tuple) -> None:
    fixed, dynamic = offline
    for x in (fixed.train, fixed.valid, fixed.test, dynamic.valid, dynamic.test):
        assert bool(((x == 0) | (x == 1)).all())
    again = mnist_splits(binarization="fixed")
    assert torch.equal(again.train, fixed.train) and torch.equal(again.test, fixed.test)
    # valid / test are the same fixed samples under both modes; train differs
    assert torch.equal(dynamic.valid, fixed.valid) and torch.equal(dynamic.test, fixed.test)
    assert not bool(((dynamic.train == 0) | (dynamic.train == 1)).all())
    # The fixed sample is Bernoulli(intensity): over 39.2M independent pixels the mean differs
    # from the mean intensity by N(0, <= 8e-5); 5e-4 is > 6 sigma (chance failure < 1e-9).
    assert abs(float(fixed.train.mean() - dynamic.train.mean())) < 5e-4


def test_binarize_is_bernoulli() -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.tensor([0.0, 0.3, 1.0]).repeat(1_000_000, 1)
    x = binarize(p, generator=g)
    assert float(x[:, 0].max()) == 0.0 and float(x[:, 2].min()) == 1.0
    # 1e6 draws at p = 0.3: std 4.6e-4; tolerance 2.3e-3 = 5 sigma (chance failure ~ 6e-7).
    assert abs(float(x[:, 1].mean()) - 0.3) < 2.3e-3
    # the same generator state gives the same sample (dynamic binarization is reproducible)
    assert torch.equal(binarize(p[:10], generator=torch.Generator().manual_seed(3)),
                       binarize(p[:10], generator=torch.Generator().manual_seed(3)))


def test_bad_binarization_mode() -> None:
    with pytest.raises(ValueError, match="binarization must be one of"):
        mnist_splits(binarization="otsu")


# ---- Fashion-MNIST and the dataset-by-name loader ------------------------------------------


def test_unknown_dataset_is_named() -> None:
    from gumbelkit.apps.data import image_splits

    with pytest.raises(ValueError, match="dataset must be one of mnist, fashion_mnist; got 'cifar'"):
        image_splits("cifar")


def test_fashion_mnist_from_idx_files(tmp_path: Path) -> None:
    # tiny synthetic IDX files: the loader must split train / valid and scale to [0, 1]
    from gumbelkit.apps.data import image_splits

    rng = np.random.default_rng(0)
    tr = rng.integers(0, 256, size=(30, 28, 28), dtype=np.uint8)
    te = rng.integers(0, 256, size=(7, 28, 28), dtype=np.uint8)
    write_idx(tmp_path / "train-images-idx3-ubyte", tr)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.arange(30, dtype=np.uint8) % 10)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", te)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(7, dtype=np.uint8))
    s = image_splits("fashion_mnist", tmp_path, n_valid=10)
    assert s.train.shape == (20, 784) and s.valid.shape == (10, 784) and s.test.shape == (7, 784)
    np.testing.assert_array_equal((s.valid * 255).round().numpy().astype(np.uint8), tr[20:].reshape(10, -1))
    assert s.valid_labels.tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_debian_fashion_mnist() -> None:
    from gumbelkit.apps.data import CLASS_NAMES, image_splits

    s = image_splits("fashion_mnist")
    assert s.train.shape == (50000, 784) and s.test.shape == (10000, 784)
    # the published test set is balanced: 1000 images per class
    assert s.test_labels.bincount().tolist() == [1000] * 10
    assert CLASS_NAMES["fashion_mnist"][int(s.train_labels[0])] == "ankle boot"
