"""Choose the array namespace ``xp`` and the device, once, at the edge.

Everything numerical in xpnet receives a :class:`Backend` and calls ``backend.xp``;
only this module (and host-side data loading) imports NumPy or CuPy for dispatch.

- ``device="cpu"`` -> NumPy.
- ``device="cuda"`` / ``"cuda:N"`` -> CuPy on GPU N (imported lazily), checked once
  per process and GPU by one tiny elementwise kernel and one small matmul, so a
  missing CUDA library or a driver too old for CuPy's runtime stops here with one
  line that says how to fix it, not later with a traceback (those checks and lines,
  and the TF32 switch, are :mod:`xpnet._cuda`). ``backend.device`` is
  that GPU's ``cupy.cuda.Device``; work on it runs inside ``with backend.activate():``,
  which makes it the current device for the block only (nothing is switched for the
  whole process, so models on two GPUs do not move each other's kernels).
- ``backend=`` a module such as ``array_api_strict`` or ``array_api_compat.torch``
  (raw modules that array-api-compat knows, e.g. ``torch``, are wrapped), with
  ``device=`` that namespace's device object.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

from ._cuda import allow_tf32, apply_tf32, cupy_tf32, explain_cuda_failure, first_line, first_run_failure, tf32_wanted
from .dlpack import DLPACK_CUDA, DLPACK_CUDA_MANAGED, dlpack_device, exportable, host_view

__all__ = ["Backend", "Buffers", "DeviceError", "NO_BUFFERS", "Random", "allow_tf32", "dlpack_device", "free_memory",
           "get_backend", "host_memory", "host_view", "to_numpy"]

CUDA_HINT = ('install CuPy with pip install "cupy-cuda13x[ctk]>=14" (or "cupy-cuda12x[ctk]>=14" for a CUDA 12 driver), '
             "or use --device cpu")


class DeviceError(ValueError):
    """The requested device or backend cannot be used on this machine."""


_CURRENT = threading.local()  # .device: the id an enclosing Backend.activate() made current on this thread


@contextlib.contextmanager
def _entered(device) -> Iterator:
    """Enter a ``cupy.cuda.Device`` and remember, for this thread, that it is current."""
    previous = getattr(_CURRENT, "device", None)
    with device:
        _CURRENT.device = device.id
        try:
            yield device
        finally:
            _CURRENT.device = previous


@dataclass(frozen=True, eq=False)
class Backend:
    """An array namespace plus the device that arrays are created on.

    ``xp`` follows the array-API standard; ``device`` is passed to every creation
    function (``None`` lets the namespace choose its default). For CuPy it is the
    GPU's ``cupy.cuda.Device``: CuPy creates arrays and launches kernels on the
    *current* device whatever ``device=`` says, so work on this backend runs inside
    ``with backend.activate():`` (``asarray``, :class:`Random` and ``synchronize``
    enter it themselves).
    """

    name: str  # "numpy", "cupy", or the namespace's own name
    xp: ModuleType
    device: Any = None  # "cpu", cupy.cuda.Device(N), or the namespace's device object
    label: str = field(default="")  # how users wrote the device: "cpu", "cuda:0", ...

    def __repr__(self) -> str:
        return f"Backend({self.name!r}, device={self.label or self.device!r})"

    @property
    def is_numpy(self) -> bool:
        return self.name == "numpy"

    @property
    def is_cupy(self) -> bool:
        return self.name == "cupy"

    def dtype(self, name: str):
        """The namespace's dtype object for ``"float32"`` or ``"float64"``."""
        return getattr(self.xp, name)

    def activate(self) -> contextlib.AbstractContextManager:
        """A context manager that makes this backend's device current inside the block.

        CuPy: enters ``cupy.cuda.Device(N)`` and restores the previous device on exit
        (re-entrant, per thread); every other namespace: a no-op. Wrap each piece of
        work that creates arrays or launches kernels: ``with backend.activate(): ...``.
        Inside a block of the same device (``fit``'s loop around ``train_step`` around
        ``backprop``), a nested call enters nothing: the device is set once per step.
        """
        if not self.is_cupy or getattr(_CURRENT, "device", None) == self.device.id:
            return contextlib.nullcontext()
        # A fresh Device object per block: CuPy keeps the device to restore on the
        # object, so sharing one between threads could restore the wrong device.
        return _entered(type(self.device)(self.device.id))

    @property
    def tf32(self) -> bool | None:
        """Whether float32 matmuls may run in TF32 on this backend (see :func:`allow_tf32`).

        CuPy: the compute type CuPy will use for float32 matmuls, read back from CuPy
        (TF32 needs compute capability 8.0+; CuPy falls back to full float32 below).
        NumPy and array-api-strict: ``False`` (CPU). Other namespaces: ``None``, not
        known here (they have their own switches, e.g. PyTorch's
        ``torch.backends.cuda.matmul.allow_tf32``).
        """
        if self.is_cupy:
            import cupy

            with self.activate():
                return cupy_tf32(cupy)
        if self.name in ("numpy", "array_api_strict"):
            return False
        return None

    def asarray(self, a, dtype=None):
        """Move ``a`` (host or device array) onto this backend's device, once; in ``dtype`` if given.

        Another library's array that already lives where this backend computes comes in by
        DLPack, without a copy: one in host memory for NumPy (a CPU torch tensor, a JAX CPU array:
        ``np.from_dlpack``, see :func:`host_view`), one on a CUDA GPU for CuPy (a torch CUDA tensor,
        a JAX GPU array: ``cupy.from_dlpack``, on CuPy's current stream, which CuPy hands the
        producer to wait on). A torch tensor that requires grad is detached first (a view). Any
        other goes through the host (:func:`to_numpy`), as does a dtype DLPack cannot carry
        (bfloat16). A CuPy array on another GPU is copied onto this one: ``xp.asarray`` runs with
        this device current, where CuPy copies an array that lives elsewhere
        (``_array_from_cupy_ndarray`` compares the array's device with the current one); an array
        already here is returned as it is. The one copy left is ``dtype``'s, where it differs
        (float64 data for a float32 model), made on this device.
        """
        with self.activate():
            if _foreign(a, self.xp):
                a = self._imported(a)
            out = self.xp.asarray(a, device=self.device)
            return out if dtype is None or out.dtype == dtype else self.xp.astype(out, dtype, copy=False)

    def _imported(self, a):
        """Another library's array ``a`` as this backend's (DLPack, no copy), or as NumPy through the host."""
        where = dlpack_device(a)
        if self.is_numpy:
            view = host_view(a)
            if view is not a:
                return view
        elif self.is_cupy and where is not None and where[0] in (DLPACK_CUDA, DLPACK_CUDA_MANAGED):
            import cupy  # the raw module's from_dlpack: it sets the producer's device and stream

            with contextlib.suppress(BufferError, RuntimeError, TypeError, ValueError, NotImplementedError):
                return cupy.from_dlpack(exportable(a))  # on the array's GPU; asarray copies it here if that is another
        return to_numpy(a)  # another device or namespace, or a dtype DLPack cannot carry: through the host

    @property
    def supports_out(self) -> bool:
        """Whether :attr:`nx` honours ``out=`` (NumPy, CuPy); elsewhere the math allocates."""
        return self.is_numpy or self.is_cupy

    @cached_property
    def nx(self):
        """The namespace for the hot loop. NumPy itself, which honours ``out=`` (and
        ``take(mode=...)``); on CuPy, :class:`OutHonoured`: CuPy's own functions for what takes
        ``out=`` there, array-api-compat's for the rest; for any other namespace a view of ``xp``
        that accepts and ignores those keywords. Code written against ``nx`` passes ``out=`` as a
        hint and always uses the returned array, so one text serves all three."""
        if self.is_numpy:
            return np
        if self.is_cupy:
            import cupy  # the raw module: array_api_compat.cupy wraps matmul and empty without out=

            return OutHonoured(cupy, self.xp)
        return OutIgnored(self.xp)

    @cached_property
    def mutable(self) -> bool:
        """Whether arrays of this namespace can be updated in place (JAX's cannot)."""
        return array_api_compat.is_writeable_array(self.asarray(np.zeros(1)))

    def random(self, *key: int) -> Random:
        """A seeded generator whose arrays land on this backend's device (see :class:`Random`)."""
        return Random(self, key)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op off the GPU); for honest timing."""
        if self.is_cupy:
            import cupy  # xp is array-api-compat's wrapper, which need not re-export cupy.cuda

            with self.activate():  # the current stream is per device
                cupy.cuda.get_current_stream().synchronize()


class OutIgnored:
    """``xp`` with ``out=`` and ``mode=`` accepted and dropped (namespaces without them)."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        attr = getattr(self._xp, name)
        if not callable(attr) or isinstance(attr, type):  # constants and dtypes (NumPy's are classes) as they are
            return attr

        def call(*args, out=None, mode=None, **kwargs):
            return attr(*args, **kwargs)

        call.__name__ = name
        setattr(self, name, call)  # cache: __getattr__ runs once per name
        return call


# What the hot loop calls with out= that CuPy 14 honours: ufuncs (out= on every one), matmul (a
# gufunc), the reductions sum/max/argmax/all, take, and the allocators. tests/test_cupy_path.py
# records every name the step calls through nx, and checks these against the installed CuPy.
CUPY_OUT = frozenset({
    "add", "subtract", "multiply", "divide", "negative", "maximum", "minimum", "abs", "exp", "log", "sqrt", "tanh",
    "equal", "greater_equal", "matmul", "sum", "max", "argmax", "all", "take", "empty", "empty_like",
})


class OutHonoured:
    """CuPy's ``nx``: the names in ``names`` are the raw ``cupy`` module's, which honour ``out=``;
    every other name is ``xp``'s (array_api_compat.cupy) with ``out=`` dropped, as :class:`OutIgnored`.

    ``take`` drops NumPy's ``mode=``, which CuPy's lacks (its indices wrap; the loop's are in range).
    """

    def __init__(self, raw, xp, names: frozenset = CUPY_OUT):
        self._raw, self._names, self._rest = raw, names, OutIgnored(xp)

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        if name not in self._names:
            attr = getattr(self._rest, name)
        elif name == "take":
            take = self._raw.take

            def attr(a, indices, axis=None, out=None, mode=None):
                return take(a, indices, axis, out)

            attr.__name__ = "take"
        else:
            attr = getattr(self._raw, name)
        setattr(self, name, attr)  # cache: __getattr__ runs once per name
        return attr


class Buffers:
    """Reused output arrays for the hot loop, keyed by role and shape, made on the backend's device.

    Hands out ``None`` (allocate as usual) when disabled or when the backend has no
    ``out=`` (every namespace but NumPy and CuPy); the arrays it hands out are overwritten by
    the next step.
    """

    def __init__(self, backend: Backend | None = None, enabled: bool = True):
        self.enabled = enabled and backend is not None and backend.supports_out
        self._backend = backend
        self._arrays: dict = {}

    def __call__(self, key, shape: tuple[int, ...], dtype):
        if not self.enabled:
            return None
        full_key = (key, shape)
        out = self._arrays.get(full_key)
        if out is None:
            with self._backend.activate():
                out = self._arrays[full_key] = self._backend.nx.empty(shape, dtype=dtype)
        return out

    def row_starts(self, m: int, k: int):
        """``(m,)`` int64 ``0, k, 2k, ...``: where each row of a C-ordered ``(m, k)`` array starts in
        its flat view; made once per ``(m, k)`` and never overwritten (``None`` when disabled)."""
        if not self.enabled:
            return None
        full_key = (("row_starts", k), (m,))
        out = self._arrays.get(full_key)
        if out is None:
            out = self._arrays[full_key] = self._backend.asarray(np.arange(0, m * k, k, dtype=np.int64))
        return out


NO_BUFFERS = Buffers()


class Random:
    """Seeded random numbers for a backend, drawn on the host; the array-API standard has no RNG.

    Keyed by integers (``backend.random(seed)``, ``backend.random(seed, epoch)``)
    rather than one global state, so epoch ``e`` of a resumed run shuffles as
    epoch ``e`` of an uninterrupted one. Every draw is made with NumPy on the host,
    so the same key gives the same numbers on every backend: CPU and GPU see the
    same initial weights and the same batches, and a checkpoint written on one
    resumes on the other along the same trajectory.
    """

    CHUNK_BYTES = 64 << 20  # float64 draws per block when filling a large array

    def __init__(self, backend: Backend, key: tuple[int, ...]):
        self.backend = backend
        self._host = np.random.default_rng(np.random.SeedSequence(list(key)))

    def normal(self, shape: tuple[int, ...], dtype: str, scale: float = 1.0):
        """N(0, scale^2) draws of ``shape``, made on the host and moved once."""
        out = np.empty(shape, dtype=dtype)
        self.fill_normal(out, scale)
        return self.backend.asarray(out)

    def fill_normal(self, out: np.ndarray, scale: float = 1.0) -> None:
        """Fill host array ``out`` with N(0, scale^2) draws, computed in float64 and cast.

        Drawn in blocks of rows: the same numbers as one ``standard_normal(out.shape)``
        call (the generator's stream is consumed in the same order), with a peak of one
        block of float64 rather than the whole array.
        """
        rows = out.reshape(out.shape[0], -1) if out.ndim > 1 else out.reshape(-1, 1)
        per_row = max(1, rows.shape[1] * 8)
        step = max(1, self.CHUNK_BYTES // per_row)
        for start in range(0, rows.shape[0], step):
            block = rows[start:start + step]
            block[...] = self._host.standard_normal(block.shape) * scale

    def permutation(self, n: int):
        """A random permutation of ``range(n)``: drawn on the host, moved to the device once
        (8 bytes a row; for NumPy, the host array itself). For batches, see
        :func:`xpnet.batches.block_sorted`."""
        perm = self._host.permutation(n)
        return perm if self.backend.is_numpy else self.backend.asarray(perm)


def _foreign(a, xp) -> bool:
    """Whether ``a`` is another library's array than namespace ``xp``'s (a NumPy array never is:
    every namespace takes one as it is)."""
    if isinstance(a, np.ndarray):
        return False
    if array_api_compat.is_array_api_obj(a):
        return array_api_compat.array_namespace(a) is not xp
    return dlpack_device(a) is not None


def to_numpy(a) -> np.ndarray:
    """Return a NumPy array with the values of ``a``, from any backend or device.

    The result may share memory with ``a`` when ``a`` already lives on the host.
    """
    if isinstance(a, np.ndarray):
        return a
    if array_api_compat.is_cupy_array(a):
        return a.get()
    if array_api_compat.is_torch_array(a):
        a = a.detach().cpu()
        return (a.float() if str(a.dtype) == "torch.bfloat16" else a).numpy()  # NumPy has no bfloat16: float32
    if array_api_compat.is_array_api_obj(a):
        try:
            return np.from_dlpack(a)
        except (BufferError, RuntimeError, TypeError, ValueError):
            return np.from_dlpack(array_api_compat.to_device(a, "cpu"))
    return np.asarray(a)


def host_memory() -> int | None:
    """Bytes the host can still give: Linux's ``MemAvailable`` (free memory plus the page cache it
    can drop, the figure ``free`` shows as available), else its physical memory; ``None`` if unknown."""
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def free_memory(backend: Backend) -> Iterator[tuple[str, int]]:
    """``(where, free bytes)``: the host's (:func:`host_memory`, when known), then on CuPy the GPU's,
    counting what CuPy's pool holds unused; ``where`` is ``""`` or ``" on cuda:N"``, for messages."""
    host = host_memory()
    if host is not None:
        yield "", host
    if backend.is_cupy:
        import cupy

        with backend.activate():
            free = backend.device.mem_info[0] + cupy.get_default_memory_pool().free_bytes()
        yield f" on {backend.label}", free


def get_backend(backend: str | ModuleType | Backend | None = None, device: Any = "cpu") -> Backend:
    """Resolve ``(backend, device)`` to a :class:`Backend`.

    Args:
        backend: ``None`` (pick from ``device``), ``"numpy"``, ``"cupy"``, the
            name of another importable array module, an array namespace module,
            or a ready :class:`Backend` (returned as is).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"``, or the namespace's own
            device object when ``backend`` is a module.

    Raises:
        DeviceError: CuPy is missing, or no GPU is visible, or ``cuda:N`` does not exist.
        ValueError: an unknown device string or backend name.
    """
    if isinstance(backend, Backend):
        return backend
    if backend is None:
        if device is None or device == "cpu":
            return Backend("numpy", np, "cpu", "cpu")
        if isinstance(device, str) and (device == "cuda" or device.startswith("cuda:")):
            return _cupy_backend(device)
        raise ValueError(f"device={device!r} is not a device: expected 'cpu', 'cuda' or 'cuda:N'")
    if isinstance(backend, str):
        if backend == "numpy":
            if device not in (None, "cpu"):
                raise ValueError(f"device={device!r} with backend='numpy': NumPy runs on 'cpu' only")
            return Backend("numpy", np, "cpu", "cpu")
        if backend == "cupy":
            return _cupy_backend("cuda" if device in (None, "cpu") else device)
        try:
            module = importlib.import_module(backend)
        except ImportError as exc:
            raise ValueError(
                f"backend={backend!r} could not be imported ({exc}): expected 'numpy', 'cupy' "
                "or the name of an installed array-API library"
            ) from None
        return get_backend(module, device)
    if isinstance(backend, ModuleType):
        return _module_backend(backend, device)
    raise ValueError(f"backend={backend!r} is not a backend: expected None, 'numpy', 'cupy' or an array namespace module")


def _module_backend(module: ModuleType, device: Any) -> Backend:
    """Wrap an array module through array-api-compat (numpy and cupy get their own paths)."""
    if array_api_compat.is_numpy_namespace(module):
        return get_backend("numpy", device)
    if array_api_compat.is_cupy_namespace(module):
        return get_backend("cupy", device)
    try:
        xp = array_api_compat.array_namespace(module.asarray(0))
    except (AttributeError, TypeError) as exc:
        raise ValueError(
            f"backend={module.__name__!r} is not an array-API namespace that array-api-compat knows ({exc})"
        ) from None
    if device is None or device == "cpu":
        info = getattr(xp, "__array_namespace_info__", None)
        device = info().default_device() if info is not None else None
    name = module.__name__.rsplit(".", 1)[-1] if module.__name__.startswith("array_api_compat.") else module.__name__
    return Backend(name, xp, device, str(device))


def _cupy_backend(device: str) -> Backend:
    """CuPy on GPU N, imported only when asked for, with errors that say how to fix them."""
    index = 0
    if device != "cuda":
        suffix = device.split(":", 1)[1] if isinstance(device, str) and ":" in device else ""
        if not suffix.isdigit():
            raise ValueError(f"device={device!r} is not a device: expected 'cpu', 'cuda' or 'cuda:N'")
        index = int(suffix)
    tf32_wanted()  # a malformed CUPY_TF32 is named here, not inside CuPy's first matmul
    try:
        import cupy
    except ModuleNotFoundError as exc:
        if exc.name != "cupy":  # CuPy is there, a module it imports is not
            raise DeviceError(explain_cuda_failure(None, device, "importing CuPy", exc)) from None
        raise DeviceError(f"device={device!r} needs CuPy, which is not installed: {CUDA_HINT}") from None
    except Exception as exc:  # CuPy is installed but a CUDA library it loads at import is not
        raise DeviceError(explain_cuda_failure(None, device, "importing CuPy", exc)) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, or a driver that fails to load
        no_gpu = f"device={device!r}: CuPy is installed but no CUDA GPU is visible ({first_line(exc)}); use --device cpu"
        raise DeviceError(explain_cuda_failure(cupy, device, "counting GPUs", exc, otherwise=no_gpu)) from None
    if count == 0:
        raise DeviceError(f"device={device!r}: CuPy is installed but no CUDA GPU is visible; use --device cpu")
    if index >= count:
        raise DeviceError(f"device={device!r}: only {count} GPU(s) visible, expected cuda:0 to cuda:{count - 1}")
    failure = first_run_failure(cupy, index, device)  # once per process and GPU
    if failure is not None:
        raise DeviceError(failure)
    gpu = cupy.cuda.Device(index)  # entered by Backend.activate(); never .use()d process-wide
    with gpu:
        apply_tf32(cupy)
    import array_api_compat.cupy as xp

    return Backend("cupy", xp, gpu, f"cuda:{index}")


def activated(a) -> contextlib.AbstractContextManager:
    """Make CuPy array ``a``'s GPU current inside the block, as :meth:`Backend.activate` does for a
    backend (re-entrant, per thread); a no-op for any other array. For code given arrays, not a backend."""
    if not array_api_compat.is_cupy_array(a):
        return contextlib.nullcontext()
    device = a.device
    if getattr(_CURRENT, "device", None) == device.id:
        return contextlib.nullcontext()
    return _entered(type(device)(device.id))


def on_device(method):
    """Run a method of an object with a ``backend`` (an MLP) with that backend's device current
    (CuPy's ``cuda:N``; a no-op elsewhere), so that a second model on another GPU never moves
    this one's kernels."""

    @functools.wraps(method)
    def wrapped(self, *args, **kwargs):
        with self.backend.activate():
            return method(self, *args, **kwargs)

    return wrapped


def mutable_backend(backend: Backend) -> Backend:
    """``backend``, if its arrays can be updated in place (every update in xpnet is)."""
    if not backend.mutable:
        raise ValueError(f"backend={backend.name!r} has immutable arrays (like JAX): xpnet updates its parameter "
                         "buffer in place; use NumPy, CuPy, array-api-strict or PyTorch")
    return backend
