"""Image sources: packaged data, user roots in IDX / CIFAR formats, and typed errors."""

import gzip
import pickle

import numpy as np
import pytest
import torch

from wslgraph.errors import DataNotFoundError, UnsafeFileError
from wslgraph.zoo.data import FASHION_MNIST_ROOT, load_images


def _write_idx(path, array: np.ndarray, compress: bool) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    with (gzip.open if compress else open)(str(path) + (".gz" if compress else ""), "wb") as file:
        file.write(data)  # closed here: Python 3.12's GzipFile does not flush on garbage collection


@pytest.mark.skipif(not FASHION_MNIST_ROOT.exists(), reason="needs Debian's dataset-fashion-mnist (make setup)")
def test_fashion_mnist_from_the_debian_package() -> None:
    train, test = load_images("fashion-mnist", "train"), load_images("fashion-mnist", "test")
    assert train.images.shape == (60_000, 1, 28, 28) and test.images.shape == (10_000, 1, 28, 28)
    assert train.labels.bincount().tolist() == [6000] * 10
    assert 0 <= float(train.images.min()) and float(train.images.max()) == 1.0


def test_packaged_small_sets_and_their_fixed_splits() -> None:
    train, test = load_images("mnist5k", "train"), load_images("mnist5k", "test")
    assert len(train) == 4000 and len(test) == 1000
    assert test.labels.bincount().tolist() == [100] * 10
    assert load_images("mnist5k", "all").images.shape == (5000, 1, 28, 28)
    digits = load_images("digits", "train")
    assert digits.images.shape == (1438, 1, 8, 8) and len(load_images("digits", "test")) == 359
    assert float(digits.images.max()) == 1.0 and digits.labels.max() == 9


@pytest.mark.parametrize("compress", [True, False])
def test_user_root_with_idx_files(tmp_path, compress) -> None:
    images = np.random.default_rng(0).integers(0, 256, (5, 28, 28))
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", images, compress)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5), compress)
    loaded = load_images("mnist", "test", root=tmp_path)
    assert torch.equal(loaded.images[:, 0] * 255, torch.from_numpy(images).float())
    assert loaded.labels.tolist() == [0, 1, 2, 3, 4]


def test_truncated_idx_and_missing_data_raise_typed_errors(tmp_path) -> None:
    _write_idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((5, 28, 28)), False)
    (tmp_path / "t10k-images-idx3-ubyte").write_bytes((tmp_path / "t10k-images-idx3-ubyte").read_bytes()[:100])
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5), False)
    with pytest.raises(DataNotFoundError, match="truncated"):
        load_images("mnist", "test", root=tmp_path)
    with pytest.raises(DataNotFoundError, match="root="):
        load_images("mnist")
    with pytest.raises(DataNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_images("fashion-mnist", root=tmp_path / "empty")
    with pytest.raises(DataNotFoundError, match="cifar"):
        load_images("cifar10", root=tmp_path)
    with pytest.raises(ValueError, match="unknown image source"):
        load_images("imagenet")
    with pytest.raises(ValueError, match="split"):
        load_images("digits", "validation")


def _cifar_arrays(count: int, seed: int) -> tuple[np.ndarray, list[int]]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 3072), dtype=np.uint8), rng.integers(0, 10, count).tolist()


def test_cifar10_python_and_binary_batches(tmp_path) -> None:
    py, binary = tmp_path / "py" / "cifar-10-batches-py", tmp_path / "bin" / "cifar-10-batches-bin"
    py.mkdir(parents=True)
    binary.mkdir(parents=True)
    data, labels = _cifar_arrays(4, 0)
    for folder in (py, binary):
        (folder / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=2))
        records = np.concatenate([np.array(labels, dtype=np.uint8)[:, None], data], axis=1)
        records.tofile(folder / "test_batch.bin")
    for root in (tmp_path / "py", tmp_path / "bin"):
        loaded = load_images("cifar10", "test", root=root)
        assert loaded.images.shape == (4, 3, 32, 32) and loaded.labels.tolist() == labels
        assert torch.equal((loaded.images * 255).round().to(torch.uint8).reshape(4, -1), torch.from_numpy(data))


def test_cifar_loader_refuses_pickles_that_call_functions(tmp_path) -> None:
    class Exploit:
        def __reduce__(self):
            return (print, ("owned",))

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "test_batch").write_bytes(pickle.dumps({b"data": Exploit(), b"labels": []}))
    with pytest.raises(UnsafeFileError, match="refusing to unpickle builtins.print"):
        load_images("cifar10", "test", root=tmp_path)


def test_garbage_data_is_refused_with_what_is_wrong(tmp_path) -> None:
    idx = tmp_path / "idx"
    idx.mkdir()
    _write_idx(idx / "t10k-images-idx3-ubyte", np.zeros((3, 28, 28)), False)
    _write_idx(idx / "t10k-labels-idx1-ubyte", np.array([1, 200, 3]), False)
    with pytest.raises(DataNotFoundError, match=r"1 labels outside 0..9 \(e.g. \[200\]\)"):
        load_images("mnist", "test", root=idx)
    forged = bytes([0, 0, 8, 3]) + b"".join((2**31).to_bytes(4, "big") for _ in range(3)) + bytes(16)
    (idx / "t10k-images-idx3-ubyte").write_bytes(forged)  # a header claiming 2^93 values
    with pytest.raises(DataNotFoundError, match="truncated"):
        load_images("mnist", "test", root=idx)
    binary = tmp_path / "bin" / "cifar-10-batches-bin"
    binary.mkdir(parents=True)
    np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tofile(binary / "test_batch.bin")
    with pytest.raises(DataNotFoundError, match="not a whole number of 3,073-byte"):
        load_images("cifar10", "test", root=tmp_path / "bin")
    records = np.random.default_rng(1).integers(0, 256, (2, 3073), dtype=np.uint8)
    records[:, 0] = [3, 250]  # random bytes: labels far outside the ten classes
    records.tofile(binary / "test_batch.bin")
    with pytest.raises(DataNotFoundError, match="labels outside 0..9"):
        load_images("cifar10", "test", root=tmp_path / "bin")
    py = tmp_path / "py" / "cifar-10-batches-py"
    py.mkdir(parents=True)
    data, labels = _cifar_arrays(4, 0)
    (py / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=2)[:200])
    with pytest.raises(DataNotFoundError, match="cannot be read as a CIFAR-10 batch"):
        load_images("cifar10", "test", root=tmp_path / "py")
    (py / "test_batch").write_bytes(pickle.dumps({b"data": data, b"labels": [500, 1, 2, 3]}, protocol=2))
    with pytest.raises(DataNotFoundError, match=r"labels outside 0..9 \(e.g. \[500\]\)"):
        load_images("cifar10", "test", root=tmp_path / "py")
