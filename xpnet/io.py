"""Files: one ``.npz`` of host NumPy arrays plus JSON metadata; no pickle.

This module knows bytes, arrays and metadata, not models or training: ``model.py``
builds a model from what it reads (:func:`read_model`), ``checkpoint.py`` a run's state.

Layout (format version 3): ``W1, b1, ..., WL, bL``, and for a model with normalized hidden
layers their scales and shifts ``gamma1, beta1, ...`` and, for batch norm, the running
statistics ``running_mean1, running_var1, ...`` (float arrays of the layer's width); with an input scaler also
``scale.shift`` and ``scale.factor`` (float64, ``(n_in,)``); and ``metadata``, the
UTF-8 bytes of a JSON object stored as a uint8 array so that
``np.load(..., allow_pickle=False)`` reads it. The metadata holds the architecture
(``sizes, activation, output, loss, init, dtype, seed``, and ``dropout``, ``norm``, ``residual``
where set), ``classes`` (the labels the
outputs stand for, or null), ``scale`` (``"standard"``, ``"minmax"`` or null) and
``data`` (what the model was trained on: data set or file with its SHA-256, seed,
test fraction; or null). A regressor trained on scaled targets also has ``target.shift``
and ``target.factor`` (float64, ``(n_out,)``) and ``target_scale`` in the metadata (its
outputs are unscaled with them). Version 1 files (no classes, scale or data) and version 2 files
(no layers) are still read; a model without layers or a newer activation is written as version 2,
so that an older xpnet reads it.
Checkpoints hold the same model arrays with a ``param.`` prefix and can be loaded
as models too. Every write goes to a temporary file in the target's directory,
is flushed and fsync'ed, then renamed over the target: a failed or interrupted
write never leaves a half-written file where a good one was.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tempfile
import zipfile
import zlib
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from ._version import __version__
from .backend import host_memory, to_numpy
from .flat import Layout

FORMAT = "xpnet-model"
CHECKPOINT_FORMAT = "xpnet-checkpoint"
FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)  # version 1: no classes, input scaling or data record; 2: no layers
V2_ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")  # what version 2 knew


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
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and type(exc) is not FileNotFoundError and exc.filename in (None, tmp):
            # a full disk fails a write to the temporary file, or to none at all: name the file meant
            raise type(exc)(exc.errno, f"{exc.strerror or exc} (nothing was written: what was there is unchanged)",
                            str(path)) from exc
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

# The arrays a model file or checkpoint may hold (each stored as NAME.npy); load_arrays reads both
MODEL_MEMBERS = re.compile(r"metadata|(param\.)?([Wb]|gamma|beta|running_mean|running_var)[0-9]+"
                           r"|(scale|target)\.(shift|factor)|opt\.[A-Za-z_][A-Za-z0-9_]*\.[0-9]+|cb\.[0-9]+\.[0-9]+"
                           r"|position\.losses")
MODEL_MEMBERS_TEXT = ("metadata, W<k>, b<k>, gamma<k>, beta<k>, running_mean<k>, running_var<k>, scale.shift, scale.factor, "
                      "target.shift, target.factor and, in a checkpoint, the same with a param. prefix, opt.<name>.<i>, "
                      "cb.<k>.<i>, position.losses")
# A model's metadata is a few kB; a checkpoint's history grows by 80 to 160 bytes an epoch, so
# 64 MiB holds 400,000 epochs and still bounds what json.loads is handed
METADATA_LIMIT = 64 * 2**20
METADATA_DEPTH = 64  # levels of lists and objects; xpnet's own metadata nests about 6 (a checkpoint's changes)
_METHODS = {zipfile.ZIP_STORED: "stored", zipfile.ZIP_DEFLATED: "deflate", zipfile.ZIP_BZIP2: "bzip2",
            zipfile.ZIP_LZMA: "lzma"}


class _Refused(ValueError):
    """A refusal already worded for the user: :func:`read_npz` passes it on unchanged."""


def read_npz(path: Path, what: str, *, names: re.Pattern[str] | None = None, described: str = "",
             read: Collection[str] | None = None, stored: bool = False,
             limits: dict[str, int] | None = None) -> dict[str, np.ndarray | None]:
    """Arrays of an ``.npz`` by name, never unpickling; any failure is a ValueError naming ``what``.

    The zip directory is checked before any member is decompressed, so that a small file cannot
    make this inflate gigabytes: member names are unique and, with ``names``, each is ``NAME.npy``
    with ``NAME`` matching it (``described`` says which names in the message); the members'
    stored bytes fit in the file. Only the arrays named in ``read`` are read (all with None;
    the others are listed with the value None, never decompressed), each stored or deflated
    (``stored``: stored uncompressed only, as np.savez writes), its declared size within
    ``limits`` (array name -> bytes), all together within the host's available memory, and its
    .npy header's shape and dtype within that size before the array is allocated. Python's
    zipfile never inflates more than a member's declared size, and a member longer than it
    declares fails its CRC.
    """
    try:
        # our own file handle: np.load(path) leaks its handle when the zip is malformed
        with open(path, "rb") as f, zipfile.ZipFile(f) as zf:
            chosen = _checked_members(zf, os.fstat(f.fileno()).st_size, what, names, described, read, stored,
                                      limits or {})
            listed = [n[:-4] if n.endswith(".npy") else n for n in zf.namelist()]
            return {name: _read_member(zf, chosen[name], what) if name in chosen else None for name in listed}
    except _Refused:
        raise
    except NPZ_ERRORS as exc:
        raise ValueError(f"{what} is not a readable .npz file ({type(exc).__name__}: {exc})") from None


def _checked_members(zf: zipfile.ZipFile, file_bytes: int, what: str, names, described: str, read, stored: bool,
                     limits: dict[str, int]) -> dict[str, zipfile.ZipInfo]:
    """The members :func:`read_npz` is to read, by array name, once the zip directory says that is safe."""
    infos = zf.infolist()
    seen = set()
    for info in infos:
        if info.filename in seen:
            raise _Refused(f"{what} holds member {info.filename!r} twice: expected each array once")
        seen.add(info.filename)
    if names is not None and names.fullmatch("metadata") and "metadata.npy" not in seen:  # e.g. a data file as --model
        shown = ", ".join(repr(n[:-4] if n.endswith(".npy") else n) for n in sorted(seen)[:6])
        raise _Refused(f"{what} has no metadata: not an xpnet file (it holds {shown or 'nothing'})")
    for info in infos:
        if names is not None and not (info.filename.endswith(".npy") and names.fullmatch(info.filename[:-4])):
            raise _Refused(f"{what} holds member {info.filename!r}, which this format does not: expected {described}")
    packed = sum(info.compress_size for info in infos)
    if packed > file_bytes:  # members that overlap, or sizes that lie
        raise _Refused(f"{what} has a zip directory declaring {packed:,} bytes of members in a file of "
                       f"{file_bytes:,} bytes: expected members that fit in the file")
    chosen = {}
    for info in infos:
        name = info.filename[:-4] if info.filename.endswith(".npy") else info.filename
        if read is not None and (name not in read or not info.filename.endswith(".npy")):
            continue  # never decompressed
        member = f"{what} member {info.filename!r}"
        if info.flag_bits & 0x1:
            raise _Refused(f"{member} is encrypted: expected plain members, as np.savez writes")
        if info.compress_type != zipfile.ZIP_STORED and (stored or info.compress_type != zipfile.ZIP_DEFLATED):
            # zipfile inflates bzip2 and lzma a whole read at a time, without a bound on the output
            method = _METHODS.get(info.compress_type, f"method {info.compress_type}")
            expected = ("stored uncompressed, as xpnet writes it" if stored
                        else "stored or deflated, as np.savez and np.savez_compressed write")
            raise _Refused(f"{member} is compressed ({method}, {info.file_size:,} bytes declared): expected {expected}")
        if info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size:
            raise _Refused(f"{member} is stored uncompressed but declares {info.file_size:,} bytes in "
                           f"{info.compress_size:,}: expected equal sizes")
        limit = limits.get(name)
        if limit is not None and info.file_size > limit:
            raise _Refused(f"{member} declares {info.file_size:,} bytes: expected at most {limit:,} ({_size(limit)})")
        chosen[name] = info
    total, available = sum(info.file_size for info in chosen.values()), host_memory()
    if available is not None and total > available:
        listed = ", ".join(repr(info.filename) for info in chosen.values())
        raise _Refused(f"{what} members {listed} declare {_size(total)} uncompressed: expected at most the "
                       f"{_size(available)} of memory available")
    return chosen


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, what: str) -> np.ndarray:
    """One member's array; its .npy header is checked against the member's size before the array is allocated."""
    fmt = np.lib.format
    with zf.open(info) as fp:
        version = fmt.read_magic(fp)
        if version not in ((1, 0), (2, 0), (3, 0)):
            raise ValueError(f"member {info.filename!r} has .npy format version {version}: expected 1.0 to 3.0")
        # 3.0 differs from 2.0 only in the header's text encoding (UTF-8): the shape and dtype read the same
        shape, _, dtype = (fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0)(fp)
        if dtype.hasobject:
            raise ValueError(f"member {info.filename!r} holds Python objects (pickled), which are never loaded")
        need, room = math.prod(shape) * dtype.itemsize, info.file_size - fp.tell()
        if need > room:
            raise _Refused(f"{what} member {info.filename!r} has a .npy header for shape {shape} of {dtype} "
                           f"({need:,} bytes) but declares {room:,} bytes of data: expected the two to agree")
    with zf.open(info) as fp:
        return fmt.read_array(fp, allow_pickle=False)


def _size(n: int) -> str:
    """``n`` bytes in words: ``'512 bytes'``, ``'200.0 MiB'``, ``'1.5 GiB'``."""
    if n < 2**20:
        return f"{n:,} bytes"
    return f"{n / 2**20:.1f} MiB" if n < 2**30 else f"{n / 2**30:.1f} GiB"


def _nesting(value: Any, limit: int) -> int:
    """How many levels of lists and objects nest in parsed JSON ``value`` (0 for a scalar), without
    recursion; counting stops once past ``limit``."""
    deepest, todo = 0, [(value, 1)]
    while todo and deepest <= limit:
        item, depth = todo.pop()
        if isinstance(item, (list, dict)):
            deepest = max(deepest, depth)
            todo.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def load_arrays(path) -> tuple[dict[str, np.ndarray], dict]:
    """Read an ``.npz`` written by :func:`save_arrays`; ``ValueError`` if it is not one.

    Model files and checkpoints alike: the zip directory must name only their arrays
    (:data:`MODEL_MEMBERS`), stored uncompressed as np.savez writes them, so that reading costs
    no more memory than the file's size, with at most :data:`METADATA_LIMIT` bytes of metadata
    nested at most :data:`METADATA_DEPTH` levels deep.
    """
    path = Path(path)
    where = f"path={str(path)!r}"
    if path.is_dir():
        raise ValueError(f"{where} is a directory: expected an xpnet .npz file")
    if not path.exists():
        raise ValueError(f"{where} does not exist: expected an xpnet .npz file")
    arrays = read_npz(path, where, names=MODEL_MEMBERS, described=MODEL_MEMBERS_TEXT, stored=True,
                      limits={"metadata": METADATA_LIMIT})
    if "metadata" not in arrays:
        raise ValueError(f"{where} has no metadata: not an xpnet file")
    blob = arrays.pop("metadata")
    if blob.dtype != np.uint8 or blob.ndim != 1:
        raise ValueError(f"{where} has malformed metadata (dtype {blob.dtype}, shape {blob.shape})")
    try:
        metadata = json.loads(blob.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{where} has metadata that is not JSON ({exc})") from None
    except RecursionError:
        raise ValueError(f"{where} has metadata nested too deeply to parse: expected at most {METADATA_DEPTH} "
                         "levels of lists and objects") from None
    if _nesting(metadata, METADATA_DEPTH) > METADATA_DEPTH:  # later code compares and copies it recursively
        raise ValueError(f"{where} has metadata nested more than {METADATA_DEPTH} levels deep: expected at most "
                         f"{METADATA_DEPTH} levels of lists and objects")
    if not isinstance(metadata, dict):
        raise ValueError(f"{where} has metadata that is not a JSON object")
    return arrays, metadata


def model_arrays(model, prefix: str = "") -> dict[str, np.ndarray]:
    """The model's host arrays by file name: weights, biases, normalizations' scales and shifts and
    batch norm's running statistics, and the input and target scalers if any."""
    arrays = {f"{prefix}{name}": to_numpy(p) for name, p in zip(model.layout.names, model.params)}
    for l, running in enumerate(model.running):
        if running is not None:
            arrays[f"{prefix}running_mean{l + 1}"], arrays[f"{prefix}running_var{l + 1}"] = (to_numpy(r) for r in running)
    if model.scaler is not None:
        arrays["scale.shift"], arrays["scale.factor"] = model.scaler.shift, model.scaler.factor
    if model.target_scaler is not None:
        arrays["target.shift"], arrays["target.factor"] = model.target_scaler.shift, model.target_scaler.factor
    return arrays


def model_metadata(model) -> dict:
    """Architecture, classes, input and target scaling kinds and data record (JSON-ready); a
    model without target scaling has no ``target_scale`` key, as files before it had none."""
    target = {} if model.target_scaler is None else {"target_scale": model.target_scaler.kind}
    return {**model.config(), "scale": None if model.scaler is None else model.scaler.kind, **target,
            "data": model.data_info}


def save_model(model, path) -> None:
    """Save ``model`` (any backend) to ``path``; see the module docstring for the layout."""
    # version 3 only where a version 2 reader could not build the model: other files stay readable by older xpnet
    version = FORMAT_VERSION if model.layer_config() or model.activation not in V2_ACTIVATIONS else 2
    metadata = {"format": FORMAT, "format_version": version, "xpnet_version": __version__, **model_metadata(model)}
    save_arrays(path, model_arrays(model), metadata)


MODEL_KEYS = ("sizes", "activation", "output", "loss", "init", "dtype", "seed")
# absent from version 1 files; multilabel only where decided; the losses' settings only where not the default
OPTIONAL_KEYS = ("classes", "multilabel", "huber_delta", "label_smoothing", "dropout", "norm", "residual")


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


def stored_layout(config: dict) -> tuple[Layout, list[str]]:
    """The parameter layout a stored ``config`` describes, and the names of its running statistics
    (batch norm's, per hidden layer: ``running_mean1, running_var1, ...``)."""
    sizes, norm = config["sizes"], config.get("norm")
    hidden = range(len(sizes) - 2) if norm else ()
    stats = [f"running_{kind}{l + 1}" for l in hidden for kind in ("mean", "var")] if norm == "batch" else []
    return Layout(sizes, list(hidden)), stats


def _checked(arrays: dict, name: str, shape: tuple, dtype, where: str) -> np.ndarray:
    a = arrays[name]
    if a.shape != shape or a.dtype != dtype:
        raise ValueError(f"{where} array {name} has shape {a.shape} and dtype {a.dtype}: expected {shape} and {dtype}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{where} array {name} holds NaN or infinite values")
    return a


def checked_params(arrays: dict, config: dict, where: str, prefix: str = "") -> list[np.ndarray]:
    """``[W1, b1, ...]`` (with ``gamma, beta`` per normalized layer) from ``arrays`` (names
    ``prefix + 'W1'`` ...), checked against ``config``."""
    layout, dtype = stored_layout(config)[0], np.dtype(config["dtype"])
    missing = [f"{prefix}{name}" for name in layout.names if f"{prefix}{name}" not in arrays]
    if missing:
        raise ValueError(f"{where} arrays do not match sizes={config['sizes']}"
                         f"{', norm=' + repr(config['norm']) if config.get('norm') else ''}: missing {missing[:4]}")
    return [_checked(arrays, f"{prefix}{name}", shape, dtype, where) for name, (_, _, shape) in zip(layout.names, layout.slices)]


def checked_stats(arrays: dict, config: dict, where: str, prefix: str = "") -> np.ndarray | None:
    """Batch norm's running statistics, laid out as ``MLP.stats``, or ``None`` without batch norm."""
    names = stored_layout(config)[1]
    if not names:
        return None
    missing = [f"{prefix}{name}" for name in names if f"{prefix}{name}" not in arrays]
    if missing:
        raise ValueError(f"{where} has norm='batch' but lacks its running statistics {missing[:4]}")
    sizes, dtype = config["sizes"], np.dtype(config["dtype"])
    parts = []
    for name in names:  # running_mean{l}, running_var{l}: layer l's width
        l = int(name.removeprefix("running_mean").removeprefix("running_var"))
        value = _checked(arrays, f"{prefix}{name}", (sizes[l],), dtype, where)
        if name.startswith("running_var") and np.any(value < 0):
            raise ValueError(f"{where} array {prefix}{name} holds a negative variance")
        parts.append(value)
    return np.concatenate(parts)


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


def checked_scaler(arrays: dict, kind: Any, n_in: int, where: str, prefix: str = "scale"):
    """The input scaler (``prefix`` ``"scale"``, for ``n_in`` features) or a regressor's target
    scaler (``"target"``, ``n_in`` its outputs) stored in ``arrays``, or None; checked against
    the metadata's ``kind``."""
    from .preprocess import Scaler

    what, width = ("input", "sizes[0]") if prefix == "scale" else ("target", "sizes[-1]")
    key = "scale" if prefix == "scale" else "target_scale"
    names = (f"{prefix}.shift", f"{prefix}.factor")
    present = [k for k in names if k in arrays]
    if kind is None:
        if present:
            raise ValueError(f"{where} has arrays {present} but its metadata has no {what} scaling")
        return None
    if len(present) != 2:
        raise ValueError(f"{where} metadata says {key}={kind!r} but the arrays {names[0]} and {names[1]} are missing")
    try:
        scaler = Scaler(kind, arrays[names[0]], arrays[names[1]])
    except ValueError as exc:
        raise ValueError(f"{where} has an invalid {what} scaler: {exc}") from None
    if scaler.n_features != n_in:
        values = "features" if prefix == "scale" else "outputs"  # version 2's wording for the input scaler
        raise ValueError(f"{where} has {'an' if what == 'input' else 'a'} {what} scaler for {scaler.n_features} {values} "
                         f"but {width}={n_in}")
    return scaler


def read_model(path, validate) -> tuple[dict, list[str]]:
    """The model stored at ``path`` (a model file of format version 1 or 2, or the model inside a
    checkpoint), checked: keyword arguments for :meth:`MLP.from_arrays <xpnet.MLP.from_arrays>`
    (``arrays``, ``scale``, ``target_scale``, ``data_info`` and the config), and the sorted names
    of any arrays a model file holds beyond them, which the caller refuses once the model is
    built. ``validate`` is the model's config check (see :func:`checked_config`).
    """
    arrays, meta = load_arrays(path)
    where = f"path={str(path)!r}"
    if meta.get("format") == CHECKPOINT_FORMAT:
        checked_version(meta, where, CHECKPOINT_FORMAT, "an xpnet checkpoint")
        model_meta = meta.get("model")
        if not isinstance(model_meta, dict):
            raise ValueError(f"{where} has malformed metadata: no model description")
        return StoredModel(arrays, model_meta, where, "param.", validate).kwargs(), []
    checked_version(meta, where, FORMAT, "an xpnet model file")
    stored = StoredModel(arrays, meta, where, "", validate).kwargs()
    layout, stats = stored_layout(stored)
    expected = set(layout.names) | set(stats)
    if stored["scale"] is not None:
        expected |= {"scale.shift", "scale.factor"}
    if stored["target_scale"] is not None:
        expected |= {"target.shift", "target.factor"}
    return stored, sorted(set(arrays) - expected)


class StoredModel:
    """The model described by ``meta`` and ``arrays`` (names ``prefix + 'W1'`` ...), checked part by
    part: the config at once (``validate`` is the model's config check, see :func:`checked_config`),
    each other part when asked for, so that a caller checks them in its own order.

    :func:`read_model` takes :meth:`kwargs` (weights, scalers, data record); a checkpoint's resume
    compares the config and each scaler with its run as it reads them, and takes the weights last.
    """

    def __init__(self, arrays: dict, meta: Any, where: str, prefix: str, validate):
        self.config = checked_config(meta, where, validate)
        self.arrays, self.meta, self.where, self.prefix = arrays, meta, where, prefix

    def params(self) -> list[np.ndarray]:
        """``[W1, b1, ...]``, checked against the config."""
        return checked_params(self.arrays, self.config, self.where, self.prefix)

    def stats(self) -> np.ndarray | None:
        """Batch norm's running statistics (as ``MLP.stats``), or None."""
        return checked_stats(self.arrays, self.config, self.where, self.prefix)

    def scaler(self):
        """The input scaler, or None."""
        return checked_scaler(self.arrays, self.meta.get("scale"), self.config["sizes"][0], self.where)

    def target_scaler(self):
        """A regressor's target scaler, or None."""
        return checked_scaler(self.arrays, self.meta.get("target_scale"), self.config["sizes"][-1], self.where, "target")

    def kwargs(self) -> dict:
        """:func:`read_model`'s keyword arguments, checked in this order: weights, input scaler, target
        scaler (an identity output's only), data record."""
        config, meta, where = self.config, self.meta, self.where
        params, stats, scaler, target = self.params(), self.stats(), self.scaler(), self.target_scaler()
        if target is not None and config["output"] != "identity":
            raise ValueError(f"{where} has invalid metadata: target_scale={target.kind!r} with output={config['output']!r}")
        data_info = meta.get("data")
        if data_info is not None and not isinstance(data_info, dict):
            raise ValueError(f"{where} has invalid metadata: data={data_info!r} is not a JSON object")
        return {"arrays": params, "stats": stats, "scale": scaler, "target_scale": target, "data_info": data_info, **config}


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
