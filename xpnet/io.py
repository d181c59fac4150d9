"""Files: one ``.npz`` of host NumPy arrays plus JSON metadata; no pickle.

This module knows bytes, arrays and metadata, not models or training: ``model.py``
builds a model from what it reads, ``checkpoint.py`` a run's state.

Layout (format version 2): ``W1, b1, ..., WL, bL``; with an input scaler also
``scale.shift`` and ``scale.factor`` (float64, ``(n_in,)``); and ``metadata``, the
UTF-8 bytes of a JSON object stored as a uint8 array so that
``np.load(..., allow_pickle=False)`` reads it. The metadata holds the architecture
(``sizes, activation, output, loss, init, dtype, seed``), ``classes`` (the labels the
outputs stand for, or null), ``scale`` (``"standard"``, ``"minmax"`` or null) and
``data`` (what the model was trained on: data set or file with its SHA-256, seed,
test fraction; or null). Version 1 files (no classes, scale or data) are still read.
Checkpoints hold the same model arrays with a ``param.`` prefix and can be loaded
as models too. Every write goes to a temporary file in the target's directory,
is flushed and fsync'ed, then renamed over the target: a failed or interrupted
write never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .backend import to_numpy

FORMAT = "xpnet-model"
CHECKPOINT_FORMAT = "xpnet-checkpoint"
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # version 1: no classes, input scaling or data record


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike):
    """Yield a binary file object; on success it replaces ``path`` atomically."""
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise ValueError(f"path={str(path)!r} is a directory: expected a file path to write")
    if not directory.is_dir():
        raise ValueError(f"path={str(path)!r}: directory {str(directory)!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise ValueError(f"path={str(path)!r} cannot be written ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _mode_for(path))  # mkstemp makes 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _mode_for(path: Path) -> int:
    """The existing file's permissions, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def save_arrays(path, arrays: dict[str, np.ndarray], metadata: dict) -> None:
    """Write ``arrays`` and JSON ``metadata`` to ``path`` as one ``.npz``, atomically."""
    blob = np.frombuffer(json.dumps(metadata, sort_keys=True).encode("utf-8"), dtype=np.uint8)
    with atomic_write(path) as f:
        np.savez(f, metadata=blob, **arrays)


# What np.load can raise on a damaged or hostile .npz (with allow_pickle=False)
NPZ_ERRORS = (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error, NotImplementedError, MemoryError)


def read_npz(path: Path, what: str) -> dict[str, np.ndarray]:
    """All arrays of an ``.npz``, never unpickling; any failure is a ValueError naming ``what``."""
    try:
        # our own file handle: np.load(path) leaks its handle when the zip is malformed
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except NPZ_ERRORS as exc:
        raise ValueError(f"{what} is not a readable .npz file ({type(exc).__name__}: {exc})") from None


def load_arrays(path) -> tuple[dict[str, np.ndarray], dict]:
    """Read an ``.npz`` written by :func:`save_arrays`; ``ValueError`` if it is not one."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path={str(path)!r} is a directory: expected an xpnet .npz file")
    if not path.exists():
        raise ValueError(f"path={str(path)!r} does not exist: expected an xpnet .npz file")
    arrays = read_npz(path, f"path={str(path)!r}")
    if "metadata" not in arrays:
        raise ValueError(f"path={str(path)!r} has no metadata: not an xpnet file")
    blob = arrays.pop("metadata")
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise ValueError(f"path={str(path)!r} has malformed metadata (dtype {blob.dtype}, shape {blob.shape})")
    try:
        metadata = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"path={str(path)!r} has metadata that is not JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise ValueError(f"path={str(path)!r} has metadata that is not a JSON object")
    return arrays, metadata


def model_arrays(model, prefix: str = "") -> dict[str, np.ndarray]:
    """The model's host arrays by file name: weights, biases, and the input scaler if any."""
    arrays = {}
    for l in range(model.n_layers):
        arrays[f"{prefix}W{l + 1}"] = to_numpy(model.params[2 * l])
        arrays[f"{prefix}b{l + 1}"] = to_numpy(model.params[2 * l + 1])
    if model.scaler is not None:
        arrays["scale.shift"], arrays["scale.factor"] = model.scaler.shift, model.scaler.factor
    return arrays


def model_metadata(model) -> dict:
    """Architecture, classes, input scaling kind and data record (JSON-ready)."""
    return {**model.config(), "scale": None if model.scaler is None else model.scaler.kind, "data": model.data_info}


def save_model(model, path) -> None:
    """Save ``model`` (any backend) to ``path``; see the module docstring for the layout."""
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "xpnet_version": __version__,
                **model_metadata(model)}
    save_arrays(path, model_arrays(model), metadata)


MODEL_KEYS = ("sizes", "activation", "output", "loss", "init", "dtype", "seed")
OPTIONAL_KEYS = ("classes",)  # absent from version 1 files


def checked_config(meta: Any, where: str, validate) -> dict:
    """The model config in ``meta``; ``validate(**config)`` (the model's own check, which
    draws no weights) raises for values it does not take."""
    if not isinstance(meta, dict):
        raise ValueError(f"{where} has model metadata that is not a JSON object")
    missing = [k for k in MODEL_KEYS if k not in meta]
    if missing:
        raise ValueError(f"{where} metadata lacks {', '.join(missing)}")
    config = {k: meta[k] for k in MODEL_KEYS}
    config.update({k: meta[k] for k in OPTIONAL_KEYS if meta.get(k) is not None})
    if "classes" in config and not isinstance(config["classes"], list):
        raise ValueError(f"{where} has invalid metadata: classes={config['classes']!r} is not a list")
    try:
        validate(**dict(config))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} has invalid metadata: {exc}") from None
    if isinstance(config["seed"], bool) or not isinstance(config["seed"], int) or config["seed"] < 0:
        raise ValueError(f"{where} has invalid metadata: seed={config['seed']!r}")
    return config


def checked_params(arrays: dict, config: dict, where: str, prefix: str = "") -> list[np.ndarray]:
    """``[W1, b1, ...]`` from ``arrays`` (names ``prefix + 'W1'`` ...), checked against ``config``."""
    sizes, dtype = config["sizes"], np.dtype(config["dtype"])
    out = []
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        for name, shape in ((f"{prefix}W{l}", (n_in, n_out)), (f"{prefix}b{l}", (n_out,))):
            if name not in arrays:
                raise ValueError(f"{where} arrays do not match sizes={sizes}: missing [{name!r}]")
            a = arrays[name]
            if a.shape != shape or a.dtype != dtype:
                raise ValueError(f"{where} array {name} has shape {a.shape} and dtype {a.dtype}: expected {shape} and {dtype}")
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{where} array {name} holds NaN or infinite values")
            out.append(a)
    return out


def checked_version(meta: dict, where: str, fmt: str, what: str) -> int:
    """The file's format version if this xpnet reads it; else a ValueError that says why."""
    version = meta.get("format_version")
    if meta.get("format") != fmt:
        raise ValueError(f"{where} is not {what} (format={meta.get('format')!r}, format_version={version!r})")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ValueError(f"{where} was written by a newer xpnet ({meta.get('xpnet_version', '?')}, format version "
                         f"{version}); this xpnet {__version__} reads versions {READABLE_VERSIONS[0]} to "
                         f"{FORMAT_VERSION}: upgrade xpnet")
    if version not in READABLE_VERSIONS:
        raise ValueError(f"{where} is not {what} of a known format version (format_version={version!r})")
    return version


def checked_scaler(arrays: dict, kind: Any, n_in: int, where: str):
    """The input scaler stored in ``arrays`` (or None), checked against the metadata."""
    from .preprocess import Scaler

    present = [k for k in ("scale.shift", "scale.factor") if k in arrays]
    if kind is None:
        if present:
            raise ValueError(f"{where} has arrays {present} but its metadata has no input scaling")
        return None
    if len(present) != 2:
        raise ValueError(f"{where} metadata says scale={kind!r} but the arrays scale.shift and scale.factor are missing")
    try:
        scaler = Scaler(kind, arrays["scale.shift"], arrays["scale.factor"])
    except ValueError as exc:
        raise ValueError(f"{where} has an invalid input scaler: {exc}") from None
    if scaler.n_features != n_in:
        raise ValueError(f"{where} has an input scaler for {scaler.n_features} features but sizes[0]={n_in}")
    return scaler


def check_writable(path, name: str) -> None:
    """ValueError unless a file can be created at ``path`` (nothing is written).

    ``name`` is the argument (``"checkpoint"``) or the flag (``"--save"``) to name in the message.
    """
    p = Path(path)
    directory = p.parent if str(p.parent) else Path(".")
    shown = f"{name} {str(p)!r}" if name.startswith("--") else f"{name}={str(p)!r}"
    if p.is_dir():
        raise ValueError(f"{shown} is a directory: expected a file path")
    if not directory.is_dir():
        raise ValueError(f"{shown}: directory {str(directory)!r} does not exist")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ValueError(f"{shown}: directory {str(directory)!r} is not writable")
