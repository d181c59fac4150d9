"""Choose the array namespace ``xp`` and the device, once, at the edge.

Everything numerical in xpnet receives a :class:`Backend` and calls ``backend.xp``;
only this module (and host-side data loading) imports NumPy or CuPy for dispatch.

- ``device="cpu"`` -> NumPy.
- ``device="cuda"`` / ``"cuda:N"`` -> CuPy on GPU N (imported lazily).
- ``backend=`` a module such as ``array_api_strict`` or ``array_api_compat.torch``
  (raw modules that array-api-compat knows, e.g. ``torch``, are wrapped), with
  ``device=`` that namespace's device object.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from functools import cached_property
from types import ModuleType
from typing import Any

import array_api_compat
import numpy as np

__all__ = ["Backend", "Buffers", "DeviceError", "NO_BUFFERS", "Random", "get_backend", "to_numpy"]

CUDA_HINT = 'install CuPy with pip install "xpnet[cuda12]" (or "xpnet[cuda13]"), or use --device cpu'


class DeviceError(ValueError):
    """The requested device or backend cannot be used on this machine."""


@dataclass(frozen=True, eq=False)
class Backend:
    """An array namespace plus the device that arrays are created on.

    ``xp`` follows the array-API standard; ``device`` is passed to every creation
    function (``None`` lets the namespace choose its default).
    """

    name: str  # "numpy", "cupy", or the namespace's own name
    xp: ModuleType
    device: Any = None
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

    def asarray(self, a, dtype=None):
        """Move ``a`` (host or device array) onto this backend's device, once."""
        if array_api_compat.is_array_api_obj(a) and not isinstance(a, np.ndarray):
            if array_api_compat.array_namespace(a) is not self.xp:
                a = to_numpy(a)  # another library's array: go through the host
        out = self.xp.asarray(a, device=self.device)
        return out if dtype is None else self.xp.astype(out, dtype, copy=False)

    @property
    def supports_out(self) -> bool:
        """Whether :attr:`nx` honours ``out=`` (NumPy); elsewhere the math allocates."""
        return self.is_numpy

    @cached_property
    def nx(self):
        """The namespace for the hot loop: NumPy itself, which honours ``out=`` (and
        ``take(mode=...)``), or for any other namespace a view of ``xp`` that accepts
        and ignores those keywords. Code written against ``nx`` passes ``out=`` as a
        hint and always uses the returned array, so one text serves both."""
        return np if self.is_numpy else _OutIgnored(self.xp)

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

            cupy.cuda.get_current_stream().synchronize()


class _OutIgnored:
    """``xp`` with ``out=`` and ``mode=`` accepted and dropped (namespaces without them)."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        attr = getattr(self._xp, name)
        if not callable(attr):
            return attr

        def call(*args, out=None, mode=None, **kwargs):
            return attr(*args, **kwargs)

        call.__name__ = name
        setattr(self, name, call)  # cache: __getattr__ runs once per name
        return call


class Buffers:
    """Reused output arrays for the hot loop, keyed by role and shape.

    Hands out ``None`` (allocate as usual) when disabled or when the backend has no
    ``out=``; the arrays it hands out are overwritten by the next step.
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
            out = self._arrays[full_key] = self._backend.nx.empty(shape, dtype=dtype)
        return out


NO_BUFFERS = Buffers()


class Random:
    """Seeded random arrays on a backend's device; the array-API standard has no RNG.

    Keyed by integers (``backend.random(seed)``, ``backend.random(seed, epoch)``)
    rather than one global state, so epoch ``e`` of a resumed run shuffles as
    epoch ``e`` of an uninterrupted one.
    """

    def __init__(self, backend: Backend, key: tuple[int, ...]):
        self.backend = backend
        self._seq = np.random.SeedSequence(list(key))
        self._host = np.random.default_rng(self._seq)
        self._device = None  # CuPy generator, made on first use

    def normal(self, shape: tuple[int, ...], dtype: str, scale: float = 1.0):
        """N(0, scale^2) draws, made on the host with NumPy and moved once.

        Host draws give the same numbers for the same key on every backend
        (CuPy's generators use other streams); initial weights are drawn once,
        so the one transfer costs nothing that matters.
        """
        host = self._host.standard_normal(shape) * scale
        return self.backend.asarray(host.astype(dtype))

    def permutation(self, n: int):
        """A random permutation of ``range(n)`` made on the device where the backend can.

        NumPy: its Generator; CuPy: a CuPy Generator on the GPU (argsort of uniform
        keys); other namespaces: drawn on the host and moved once.
        """
        b = self.backend
        if b.is_cupy:
            if self._device is None:
                import cupy

                self._device = cupy.random.default_rng(int(self._seq.generate_state(1)[0]))
            return b.xp.argsort(self._device.random(n))
        perm = self._host.permutation(n)
        return perm if b.is_numpy else b.asarray(perm)


def to_numpy(a) -> np.ndarray:
    """Return a NumPy array with the values of ``a``, from any backend or device.

    The result may share memory with ``a`` when ``a`` already lives on the host.
    """
    if isinstance(a, np.ndarray):
        return a
    if array_api_compat.is_cupy_array(a):
        return a.get()
    if array_api_compat.is_torch_array(a):
        return a.detach().cpu().numpy()
    if array_api_compat.is_array_api_obj(a):
        try:
            return np.from_dlpack(a)
        except (BufferError, RuntimeError, TypeError, ValueError):
            return np.from_dlpack(array_api_compat.to_device(a, "cpu"))
    return np.asarray(a)


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
    try:
        import cupy
    except ImportError:
        raise DeviceError(f"device={device!r} needs CuPy, which is not installed: {CUDA_HINT}") from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError, or a driver that fails to load
        raise DeviceError(
            f"device={device!r}: CuPy is installed but no CUDA GPU is visible ({exc}); use --device cpu"
        ) from None
    if count == 0:
        raise DeviceError(f"device={device!r}: CuPy is installed but no CUDA GPU is visible; use --device cpu")
    if index >= count:
        raise DeviceError(f"device={device!r}: only {count} GPU(s) visible, expected cuda:0 to cuda:{count - 1}")
    # CuPy allocates and launches on the current device, so device=None below
    # means "GPU index"; one process drives one GPU at a time.
    cupy.cuda.Device(index).use()
    import array_api_compat.cupy as xp

    return Backend("cupy", xp, None, f"cuda:{index}")
