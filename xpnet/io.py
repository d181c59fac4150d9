"""Model files: one ``.npz`` of host NumPy arrays plus JSON metadata; no pickle.

Layout: ``W1, b1, ..., WL, bL`` and ``metadata`` (the UTF-8 bytes of a JSON
object, stored as a uint8 array so that ``np.load(..., allow_pickle=False)``
reads it). Every write goes to a temporary file in the target's directory,
is flushed and fsync'ed, then renamed over the target: a failed or interrupted
write never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .backend import to_numpy

FORMAT = "xpnet-model"
FORMAT_VERSION = 1


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


def load_arrays(path) -> tuple[dict[str, np.ndarray], dict]:
    """Read an ``.npz`` written by :func:`save_arrays`; ``ValueError`` if it is not one."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path={str(path)!r} is a directory: expected an xpnet .npz file")
    if not path.exists():
        raise ValueError(f"path={str(path)!r} does not exist: expected an xpnet .npz file")
    try:
        # our own file handle: np.load(path) leaks its handle when the zip is malformed
        with open(path, "rb") as f, np.load(f, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise ValueError(f"path={str(path)!r} is not a readable .npz file ({exc})") from None
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


def save_model(model, path) -> None:
    """Save ``model`` (any backend) to ``path``; see the module docstring for the layout."""
    arrays = {}
    for l in range(model.n_layers):
        arrays[f"W{l + 1}"] = to_numpy(model.params[2 * l])
        arrays[f"b{l + 1}"] = to_numpy(model.params[2 * l + 1])
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "xpnet_version": __version__, **model.config()}
    save_arrays(path, arrays, metadata)


def load(path, device: Any = "cpu", backend: Any = None):
    """Load a model saved by :meth:`MLP.save` onto any backend and device.

    Raises:
        ValueError: the file is missing, unreadable, not an xpnet model, or its
            arrays do not match its metadata. Nothing in the file is executed.
    """
    from .model import MLP

    arrays, meta = load_arrays(path)
    where = f"path={str(path)!r}"
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{where} is not an xpnet model file of format version {FORMAT_VERSION} "
            f"(format={meta.get('format')!r}, format_version={meta.get('format_version')!r})"
        )
    keys = ("sizes", "activation", "output", "loss", "init", "dtype", "seed")
    missing = [k for k in keys if k not in meta]
    if missing:
        raise ValueError(f"{where} metadata lacks {', '.join(missing)}")
    config = {k: meta[k] for k in keys}
    try:
        model = MLP.from_arrays([], backend="numpy", **config)  # validates the config only
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where} has invalid metadata: {exc}") from None
    sizes = model.sizes
    expected = {}
    for l, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
        expected[f"W{l}"], expected[f"b{l}"] = (n_in, n_out), (n_out,)
    if set(arrays) != set(expected):
        extra, lacking = sorted(set(arrays) - set(expected)), sorted(set(expected) - set(arrays))
        raise ValueError(f"{where} arrays do not match sizes={sizes}: missing {lacking}, unexpected {extra}")
    ordered = []
    for name, shape in expected.items():
        a = arrays[name]
        if a.shape != shape or a.dtype != np.dtype(model.dtype):
            raise ValueError(
                f"{where} array {name} has shape {a.shape} and dtype {a.dtype}: "
                f"expected {shape} and {model.dtype}"
            )
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{where} array {name} holds NaN or infinite values")
        ordered.append(a)
    return MLP.from_arrays(ordered, backend=backend, device=device, **config)
