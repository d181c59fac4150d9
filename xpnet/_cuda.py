"""CuPy's first run on a GPU, its failures as one true line each, and the TF32 switch.

:mod:`xpnet.backend` resolves ``device="cuda:N"`` to a :class:`~xpnet.Backend` and calls in here:
:func:`first_run_failure` runs one tiny kernel and one small matmul per GPU and process, and
:func:`explain_cuda_failure` turns an unwritable kernel cache directory, no NVIDIA driver at all, a
missing CUDA library or header, a driver older than CuPy's runtime, or any other failure into one
line that says how to fix it. :func:`allow_tf32` is the process-wide switch for TF32 matmuls (off
by default, as CuPy's), :func:`apply_tf32` puts it into CuPy. Nothing here imports CuPy: the caller
passes the module in.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys

import numpy as np

# ---------------------------------------------------------------- the GPU's first run

_cuda_checked: dict[int, str | None] = {}  # GPU index -> None (it works) or the DeviceError message


def first_run_failure(cupy, index: int, device: str) -> str | None:
    """Run one tiny elementwise kernel and one small matmul on GPU ``index``, once per process:
    ``None`` if it works, else why not, in one line for a :class:`~xpnet.DeviceError`.

    CuPy imports and counts GPUs with the driver alone; the first kernel needs NVRTC
    and the first matmul cuBLAS, and a driver older than CuPy's CUDA runtime fails
    there too. Checking here turns those tracebacks into one line at resolution time.
    The outcome, good or bad, is kept for the process (CuPy keeps failed loads too).
    """
    if index not in _cuda_checked:
        _cuda_checked[index] = _first_run(cupy, index, device)
    return _cuda_checked[index]


def _first_run(cupy, index: int, device: str) -> str | None:
    """None if GPU ``index`` runs a kernel and a matmul correctly, else why not (one line)."""
    step = f"selecting GPU {index}"
    try:
        with cupy.cuda.Device(index):
            step = "a tiny elementwise kernel (compiled by NVRTC)"
            twice_plus_one = cupy.ElementwiseKernel("float32 x", "float32 y", "y = 2 * x + 1", "xpnet_first_kernel")
            y = cupy.asnumpy(twice_plus_one(cupy.asarray(np.arange(4, dtype=np.float32))))  # (4,)
            step = "a small float32 matmul (cuBLAS)"
            a = cupy.asarray(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
            c = cupy.asnumpy(cupy.matmul(a, a))  # (2, 2); small integers: exact even in TF32
    except Exception as exc:
        return explain_cuda_failure(cupy, device, step, exc)
    if not (np.array_equal(y, [1.0, 3.0, 5.0, 7.0]) and np.array_equal(c, [[7.0, 10.0], [15.0, 22.0]])):
        return (
            f"device={device!r}: GPU {index} gave wrong results in its first kernel and matmul "
            f"(2x+1 of [0 1 2 3] -> {np.asarray(y).tolist()}, [[1 2] [3 4]]^2 -> {np.asarray(c).tolist()}); "
            'check the driver and CuPy install (python -c "import cupy; cupy.show_config()"), or use --device cpu'
        )
    return None


_DRIVER_TOO_OLD = re.compile(
    r"InsufficientDriver|driver version is insufficient|UNSUPPORTED_PTX_VERSION|UnsupportedPtxVersion", re.I
)
_LIBRARY_MISSING = re.compile(
    r"cannot open shared object|cannot open source file|failed to load|could not (?:find|load)|no such file"
    r"|DynamicLibNotFound|\blib[\w-]+\.so|[\w-]+\.dll\b",
    re.I,
)
_LIBRARY_ERRORS = ("ImportError", "OSError", "CompileException", "DynamicLibNotFoundError")
_LIBRARY_NAME = re.compile(r"\blib[\w-]+\.so(?:\.\d+)*|\b[\w-]+\.dll\b|\bcuda_\w+\.h\b")


def first_line(exc: BaseException, limit: int = 240) -> str:
    """``Type: message`` for an error message: the first non-empty line only, cut to ``limit`` characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def explain_cuda_failure(cupy, device: str, step: str, exc: BaseException, otherwise: str | None = None) -> str:
    """One line for a CUDA failure: ``device`` as the user wrote it, the ``step`` that raised ``exc``, and
    the fix for an unwritable kernel cache, no driver, a missing library or an old driver; ``otherwise``
    (when given) for any other failure."""
    text = f"{type(exc).__name__}: {exc}"
    kinds = {k.__name__ for k in type(exc).__mro__}
    detail = first_line(exc)
    cache = _unwritable_cache(exc)
    if cache is not None:
        where = "CUPY_CACHE_DIR" if os.environ.get("CUPY_CACHE_DIR") else "CuPy's default, under HOME"
        return (
            f"device={device!r}: CuPy's kernel cache directory {cache} ({where}) is not writable: {step} failed "
            f"({detail}); set CUPY_CACHE_DIR to a directory you can write to (e.g. CUPY_CACHE_DIR=/tmp/cupy-kernel-cache), "
            "or use --device cpu"
        )
    if _driver_version(cupy) == 0:  # the CUDA runtime's answer when it finds no driver at all
        return (
            f"device={device!r}: no NVIDIA driver was found (the CUDA runtime reports driver version 0): "
            f"{step} failed ({detail}); install the NVIDIA driver (nvidia-smi checks it; in a container, "
            "start it with the GPUs passed in, e.g. docker run --gpus all), or use --device cpu"
        )
    if _DRIVER_TOO_OLD.search(text):
        return _driver_too_old(cupy, device, step, detail)
    if _LIBRARY_MISSING.search(text) or kinds & set(_LIBRARY_ERRORS):
        name = _LIBRARY_NAME.search(text)
        what = f" ({name.group(0)})" if name else ""
        package = _cupy_distribution()
        if package in ("cupy-cuda12x", "cupy-cuda13x"):
            fix = f'pip install "{package}[ctk]>=14"'
        else:
            fix = 'pip install "cupy-cuda13x[ctk]>=14" (or "cupy-cuda12x[ctk]>=14" for a CUDA 12 driver)'
        return (
            f"device={device!r}: CuPy is installed but a CUDA library or header it needs is missing{what}: "
            f"{step} failed ({detail}); get the CUDA libraries with {fix}, or use --device cpu"
        )
    if otherwise is not None:
        return otherwise
    return (
        f"device={device!r}: {step} failed on the GPU ({detail}); "
        'python -c "import cupy; cupy.show_config()" shows what CuPy found, or use --device cpu'
    )


def _driver_too_old(cupy, device: str, step: str, detail: str) -> str:
    """The driver/runtime mismatch line, with both CUDA versions where CuPy can read them."""
    runtime = getattr(getattr(cupy, "cuda", None), "runtime", None)
    driver = _cuda_version(getattr(runtime, "driverGetVersion", None))
    used = _cuda_version(getattr(runtime, "runtimeGetVersion", None))
    versions = f"driver: CUDA {_dotted(driver)}, CuPy's runtime: CUDA {_dotted(used)}"
    package = _cupy_distribution()
    if driver is not None and driver[0] in (12, 13) and package != f"cupy-cuda{driver[0]}x":
        remove = f"pip uninstall -y {package} && " if package else ""
        fix = f'install the CuPy for CUDA {driver[0]}: {remove}pip install "cupy-cuda{driver[0]}x[ctk]>=14"'
    elif driver is not None and driver[0] < 12:
        fix = "update the NVIDIA driver (xpnet's CuPy needs a driver for CUDA 12 or newer)"
    elif driver is not None:
        fix = f"update the NVIDIA driver to one for CUDA {_dotted(used) if used else driver[0]} or newer"
    else:
        fix = (
            "install the CuPy whose CUDA major version matches the driver (nvidia-smi shows it): "
            '"cupy-cuda12x[ctk]>=14" or "cupy-cuda13x[ctk]>=14", or update the NVIDIA driver'
        )
    return (
        f"device={device!r}: the NVIDIA driver is too old for the CUDA runtime CuPy uses ({versions}): "
        f"{step} failed ({detail}); {fix}, or use --device cpu"
    )


def _driver_version(cupy) -> int | None:
    """The CUDA driver version as CuPy's runtime reports it (12040; 0 where there is no driver), or None if unreadable."""
    query = getattr(getattr(getattr(cupy, "cuda", None), "runtime", None), "driverGetVersion", None)
    try:
        return int(query())
    except Exception:  # no CuPy module yet (a failed import), a missing runtime, a fake
        return None


def _cache_dir() -> str:
    """CuPy's kernel cache directory, found as CuPy finds it: CUPY_CACHE_DIR, else ~/.cupy/kernel_cache."""
    return os.path.abspath(os.environ.get("CUPY_CACHE_DIR") or os.path.expanduser("~/.cupy/kernel_cache"))


def _unwritable_cache(exc: BaseException) -> str | None:
    """CuPy's kernel cache directory if ``exc`` (or what it wraps) is a refused write in it or on
    the way to it (permission denied, read-only file system), else None."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and exc.filename:
            path, cache = os.path.abspath(os.fsdecode(exc.filename)), _cache_dir()
            # makedirs fails on the first directory it cannot create (~/.cupy under a read-only HOME);
            # a write fails on a file inside the directory (its temporary file)
            if path == cache or cache.startswith(path.rstrip(os.sep) + os.sep) or path.startswith(cache + os.sep):
                return cache
        exc = exc.__cause__ or exc.__context__
    return None


def _cuda_version(query) -> tuple[int, int] | None:
    """(major, minor) from a CUDA version query such as ``driverGetVersion`` (12040 -> (12, 4))."""
    try:
        v = int(query())
    except Exception:  # not readable: a missing runtime, a fake, no driver
        return None
    return (v // 1000, v % 1000 // 10) if v > 0 else None


def _dotted(version: tuple[int, int] | None) -> str:
    return "?" if version is None else f"{version[0]}.{version[1]}"


def _cupy_distribution() -> str | None:
    """The pip package that installed CuPy (``cupy-cuda13x``, ...), or None if unknown."""
    from importlib import metadata

    for name in ("cupy-cuda13x", "cupy-cuda12x", "cupy-cuda11x", "cupy"):
        try:
            metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        return name
    return None


# --------------------------------------------------------- TF32: one process-wide switch

_tf32_choice: bool | None = None  # set by allow_tf32; None: CUPY_TF32 decides, as in CuPy (default off)


def allow_tf32(enabled: bool) -> bool:
    """Let float32 matmuls on CuPy GPUs use TF32 tensor cores, for the whole process;
    returns the setting it replaces (``allow_tf32(previous)`` puts it back).

    Off by default. TF32 rounds matmul inputs to a 10-bit mantissa (relative error
    about 1e-3 instead of 1e-7): much faster on compute capability 8.0+ (Ampere and
    newer), but not float32, so results differ from the CPU's beyond float32 rounding.
    CuPy's setting is process-wide, so this is too: it holds for every CuPy backend,
    resolved before or after the call. ``allow_tf32(False)`` turns it off again and
    overrides CuPy's own ``CUPY_TF32=1`` (honoured while this was never called).
    ``Backend.tf32`` reports what is in force, for run reports.

    Raises:
        ValueError: ``enabled`` is not a bool.
    """
    global _tf32_choice
    if not isinstance(enabled, bool):
        raise ValueError(f"enabled={enabled!r} is not a bool: expected True or False")
    previous = tf32_wanted()
    _tf32_choice = enabled
    # CuPy reads CUPY_TF32 when it first needs float32's matmul mode: setting it covers
    # a CuPy not imported yet, and one whose internal setter below has moved.
    os.environ["CUPY_TF32"] = "1" if enabled else "0"
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        # Applied again, with any error explained, whenever a cuda backend is resolved.
        with contextlib.suppress(Exception):
            apply_tf32(cupy)
    return previous


def tf32_wanted() -> bool:
    """Whether TF32 is wanted: :func:`allow_tf32`'s choice, else ``CUPY_TF32`` read the way CuPy
    reads it (``int(...) > 0``); a malformed ``CUPY_TF32`` is a ValueError naming it."""
    if _tf32_choice is not None:
        return _tf32_choice
    value = os.environ.get("CUPY_TF32", "").strip() or "0"
    try:
        return int(value) > 0
    except ValueError:
        raise ValueError(f"CUPY_TF32={value!r} is not an integer: expected 0 (TF32 off) or 1 (on)") from None


def _cupy_linalg(cupy):
    """CuPy's module that holds the float32 matmul mode, or None where it is not found.

    ``cupy._core._routines_linalg`` is CuPy-internal (its own tests drive TF32 through
    it); without it only the ``CUPY_TF32`` variable reaches CuPy.
    """
    linalg = getattr(getattr(cupy, "_core", None), "_routines_linalg", None)
    needed = ("get_compute_type", "set_compute_type", "COMPUTE_TYPE_TF32", "COMPUTE_TYPE_DEFAULT")
    return linalg if linalg is not None and all(hasattr(linalg, n) for n in needed) else None


def apply_tf32(cupy) -> None:
    """Make CuPy's float32 matmul mode match :func:`allow_tf32` (call inside the GPU's context)."""
    linalg = _cupy_linalg(cupy)
    if linalg is None:
        return
    want = tf32_wanted()
    if want != (linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_TF32):
        linalg.set_compute_type(np.float32, linalg.COMPUTE_TYPE_TF32 if want else linalg.COMPUTE_TYPE_DEFAULT)


def cupy_tf32(cupy) -> bool:
    """Whether CuPy will run float32 matmuls in TF32 (read back from CuPy where it can be)."""
    linalg = _cupy_linalg(cupy)
    if linalg is None:
        return tf32_wanted()
    return linalg.get_compute_type(np.float32) == linalg.COMPUTE_TYPE_TF32
