"""Fused kernels for the common training step: one C source each, two compilers.

Each ``*.cu`` file in this folder holds one kernel written in the subset of C that is
also CUDA C++, over a type ``real`` and a handful of macros (:data:`PRELUDES`). Every
kernel is a loop over work items (``FOR_EACH``): on a GPU a grid-stride loop over
threads, on the CPU a plain loop run by one thread. So the same text is

- compiled by NVRTC for the GPU and launched by CuPy (:class:`CupyKernels`), and
- compiled by the machine's C compiler into a shared library and called through ctypes
  on NumPy arrays (:class:`HostKernels`), which is how the tests check each kernel's
  arithmetic against the generic ``xp`` code without a GPU.

Only two places depend on the threads of a GPU: ``ATOMIC_ADD`` (the head's per-row loss and
correct count, summed in double) and the benign ``bad[0] = 1`` writes of the update kernels.
On the CPU they are one thread's plain adds and writes; their GPU form is the device run's
to show (issue 21's script).

Both kernel sets count what they do: ``launches`` (calls that each start at least one kernel
on a GPU: fused kernels, matrix products, whose cuBLAS call may run two kernels (split-K),
column sums), ``reads`` (device-to-host copies) and ``allocations``; the fused step
(:mod:`xpnet.fused`) is built on these counts.

The GPU build differs from the C build in one documented way: CuPy compiles with
``-ftz=true``, so float32 subnormals (below 1.2e-38) are flushed to zero there.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
from functools import cached_property
from importlib import resources
from typing import Any, NamedTuple

import numpy as np

KERNELS = ("gather", "bias_act", "softmax_xent", "act_backward", "sgd", "adam")  # one file each: NAME.cu
ACTIVATION_CODES = {"identity": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4}  # bias_act's `act`
# What CupyKernels compiles with. --fmad=false: each product and sum rounded on its own, as in the C
# build (-ffp-contract=off) and the generic path's ufuncs (NVRTC would fuse a*b+c otherwise); the
# kernels are bound by memory, not arithmetic. CuPy adds CUPY_ADDED to every RawModule compile.
NVRTC_OPTIONS = ("-std=c++17", "--fmad=false")
CUPY_ADDED = ("-ftz=true", "--device-as-default-execution-space")  # float32 subnormals flushed on the GPU
C_OPTIONS = ("-O2", "-std=c99", "-shared", "-fPIC", "-ffp-contract=off", "-fno-fast-math")
BLOCK = 256  # threads per block on a GPU
MAX_BLOCKS = 1024  # a grid-stride loop covers the rest

_MATH = {  # the single-argument math each dtype spells its own way in C
    "float32": {"EXP": "expf", "LOG": "logf", "TANH": "tanhf", "SQRT": "sqrtf", "FABS": "fabsf"},
    "float64": {"EXP": "exp", "LOG": "log", "TANH": "tanh", "SQRT": "sqrt", "FABS": "fabs"},
}
_CTYPE = {"float32": "float", "float64": "double"}

PRELUDES = {  # compiler -> the text in front of the kernels
    "cuda": """#define KERNEL extern "C" __global__
#define FOR_EACH(i, n) for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (n); \\
                            i += (long long)blockDim.x * gridDim.x)
#define ATOMIC_ADD(p, v) atomicAdd((p), (v))
#define IS_FINITE(x) isfinite(x)
""",
    "c": """#include <math.h>
#define KERNEL
#define FOR_EACH(i, n) for (long long i = 0; i < (n); ++i)
#define ATOMIC_ADD(p, v) (*(p) += (v))
#define IS_FINITE(x) isfinite(x)
""",
}


class Param(NamedTuple):
    """One kernel parameter, as its C declaration says."""

    name: str
    kind: str  # "real*", "double*", "long long*", "int*" (pointers), or "double", "long long", "int"

    @property
    def pointer(self) -> bool:
        return self.kind.endswith("*")


def source(name: str) -> str:
    """The C text of kernel ``name`` (the file ``xpnet/kernels/NAME.cu``)."""
    return resources.files(__package__).joinpath(f"{name}.cu").read_text(encoding="utf-8")


def module_source(dtype: str, compiler: str) -> str:
    """Every kernel for ``dtype`` (``float32``/``float64``) behind ``compiler``'s prelude (``cuda``/``c``)."""
    head = [PRELUDES[compiler], f"typedef {_CTYPE[dtype]} real;"]
    head += [f"#define {macro} {fn}" for macro, fn in _MATH[dtype].items()]
    return "\n".join(head + [source(name) for name in KERNELS]) + "\n"


_DECLARATION = re.compile(r"KERNEL\s+void\s+(\w+)\s*\(([^)]*)\)", re.S)


def signature(name: str) -> list[Param]:
    """The parameters of kernel ``name``, read from its source (one declaration, two callers)."""
    match = _DECLARATION.search(source(name))
    if match is None or match.group(1) != name:
        raise RuntimeError(f"xpnet/kernels/{name}.cu declares no kernel {name!r}")
    params = []
    for decl in match.group(2).split(","):
        decl = decl.replace("const ", "").replace("__restrict__", "").strip()
        kind, _, pname = decl.rpartition(" ")
        kind = " ".join(kind.split()) + ("*" if pname.startswith("*") else "")
        kind = kind.replace(" *", "*")
        params.append(Param(pname.lstrip("*"), kind))
    return params


_NUMPY_KIND = {"real*": None, "double*": np.float64, "long long*": np.int64, "int*": np.int32}


class Kernels:
    """What the fused step calls, counted: kernels, products, column sums, reads, allocations.

    Subclasses provide the arrays (:meth:`empty`), the launches and the copies for one dtype.
    """

    def __init__(self, dtype: str):
        if dtype not in _CTYPE:
            raise ValueError(f"dtype={dtype!r} is not a kernel dtype: expected 'float32' or 'float64'")
        self.dtype = dtype
        self.launches = 0  # calls that launch: fused kernels, matrix products, column sums, fills
        self.reads = 0  # device-to-host copies
        self.allocations = 0  # arrays made by empty()
        self.signatures = {name: signature(name) for name in KERNELS}
        self._checked: set = set()  # (kernel, ids of its arguments) already checked
        self._keep: list = []  # the arrays behind those ids, kept alive so that no id is reused

    # the arrays ------------------------------------------------------------
    xp: Any = None  # the array module of this kernel set (numpy, cupy)

    def empty(self, shape, dtype=None):
        self.allocations += 1
        return self.xp.empty(shape, dtype=self.dtype if dtype is None else dtype)

    # counted work ----------------------------------------------------------
    def __call__(self, name: str, items: int, *args) -> None:
        """Launch kernel ``name`` over ``items`` work items with ``args`` in its declared order.

        The arrays are checked (dtype, C order) the first time each set of them is passed: the
        fused step passes the same arrays every step, so a warm step pays no check."""
        params = self.signatures[name]
        key = (name, *(id(a) for a in args))
        if key not in self._checked:
            self._check(name, params, args)
            self._checked.add(key)
            self._keep.append(args)
        self.launches += 1
        if items > 0:
            self._launch(name, items, params, args)

    def _check(self, name: str, params: list, args: tuple) -> None:
        if len(args) != len(params):
            raise TypeError(f"kernel {name} takes {len(params)} arguments ({', '.join(p.name for p in params)}), "
                            f"got {len(args)}")
        for p, a in zip(params, args):
            if p.pointer:
                want = np.dtype(self.dtype if _NUMPY_KIND[p.kind] is None else _NUMPY_KIND[p.kind])
                if a.dtype != want or not a.flags.c_contiguous:
                    raise TypeError(f"kernel {name}: {p.name} must be a C-contiguous {want} array, got {a.dtype}")

    def matmul(self, a, b, out) -> None:
        """``out = a @ b`` (a matrix product: one library call)."""
        self.launches += 1
        self.xp.matmul(a, b, out=out)

    def colsum(self, a, out) -> None:
        """``out = a.sum(axis=0)`` for ``a`` ``(m, n)`` (a bias gradient: one reduction)."""
        self.launches += 1
        self.xp.sum(a, axis=0, out=out)

    def on_stream(self):
        """A context manager: the block's launches go to this kernel set's stream (a no-op here)."""
        return contextlib.nullcontext()

    def follow(self) -> None:
        """Make this kernel set's stream wait for the work queued before (a no-op here)."""

    def synchronize(self) -> None:
        """Wait until this kernel set's queued work is done (a no-op here)."""

    def contiguous(self, a):
        """``a`` in C order (itself if it already is; else one copy, made before any step)."""
        return a if a.flags.c_contiguous else self.xp.ascontiguousarray(a)

    def fill(self, a, value: float = 0) -> None:
        """Set every element of device array ``a`` (between epochs, not inside a step)."""
        self.launches += 1
        a.fill(value)

    def upload(self, host: np.ndarray, out) -> None:
        """Copy host ``host`` into device array ``out`` of the same shape (between epochs)."""
        out[...] = host

    def read(self, a) -> np.ndarray:
        """The values of device array ``a`` on the host: the one read of an epoch."""
        self.reads += 1
        return self._to_host(a)

    def _launch(self, name, items, params, args) -> None:
        raise NotImplementedError

    def _to_host(self, a) -> np.ndarray:
        raise NotImplementedError


# ------------------------------------------------------------------- CPU
_BUILD_LOCK = threading.Lock()
_CDECL = {"double": ctypes.c_double, "long long": ctypes.c_longlong, "int": ctypes.c_int}


def c_compiler() -> str | None:
    """The C compiler to build the CPU kernels with: ``$CC``, else ``cc`` or ``gcc`` on the PATH."""
    for candidate in (os.environ.get("CC"), "cc", "gcc"):
        if candidate and shutil.which(candidate):
            return candidate
    return None


def build_library(dtype: str, cache_dir: str | None = None) -> str:
    """Compile the kernels for ``dtype`` into a shared library with the C compiler; its path.

    Cached by the hash of the source and options, in ``cache_dir`` (default: ``XPNET_KERNEL_CACHE``,
    else a folder in the temporary directory). Raises RuntimeError without a C compiler or on a
    compile error (with the compiler's message).
    """
    cc = c_compiler()
    if cc is None:
        raise RuntimeError("no C compiler found (tried $CC, cc, gcc): the CPU build of the fused kernels needs one")
    text = module_source(dtype, "c")
    digest = hashlib.sha256("\0".join((cc, *C_OPTIONS, text)).encode()).hexdigest()[:16]
    folder = cache_dir or os.environ.get("XPNET_KERNEL_CACHE") or os.path.join(
        tempfile.gettempdir(), f"xpnet-kernels-{os.getuid() if hasattr(os, 'getuid') else 0}")
    path = os.path.join(folder, f"kernels-{dtype}-{digest}.so")
    with _BUILD_LOCK:
        if os.path.exists(path):
            return path
        os.makedirs(folder, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder) as work:
            c_file, so_file = os.path.join(work, "kernels.c"), os.path.join(work, "kernels.so")
            with open(c_file, "w", encoding="utf-8") as f:
                f.write(text)
            done = subprocess.run([cc, *C_OPTIONS, "-o", so_file, c_file, "-lm"], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{cc} could not build the fused kernels for {dtype}:\n{done.stderr.strip()}")
            os.replace(so_file, path)  # whole or not at all, for a concurrent build
    return path


class HostKernels(Kernels):
    """The kernels built by the C compiler, run on NumPy arrays by one thread: the CPU's
    twin of :class:`CupyKernels`, for the tests and ``xpnet.opcount`` (``path="fused"``)."""

    xp = np

    def __init__(self, dtype: str, cache_dir: str | None = None):
        super().__init__(dtype)
        self.library = ctypes.CDLL(build_library(dtype, cache_dir))
        self._functions = {}
        for name, params in self.signatures.items():
            fn = getattr(self.library, name)
            fn.restype = None
            fn.argtypes = [ctypes.c_void_p if p.pointer else _CDECL[p.kind] for p in params]
            self._functions[name] = fn

    def _launch(self, name, items, params, args) -> None:
        self._functions[name](*(a.ctypes.data if p.pointer else a for p, a in zip(params, args)))

    def _to_host(self, a) -> np.ndarray:
        return a.copy()


# ------------------------------------------------------------------- GPU
class CupyKernels(Kernels):
    """The kernels compiled by NVRTC (through CuPy, on first use, cached by CuPy) and launched
    on the current CuPy device; products through ``cupy.matmul`` (cuBLAS).

    The fused step runs on a stream of its own (``stream``, non-blocking: what a CUDA graph
    capture needs), entered per step (:meth:`on_stream`). It does not wait for CuPy's default
    stream by itself: :meth:`follow` makes it wait for what was queued there (the data's upload,
    an epoch's order), and the epoch's read waits for the stream.
    """

    def __init__(self, dtype: str):
        super().__init__(dtype)
        import cupy

        self.xp = cupy
        self.stream = cupy.cuda.Stream(non_blocking=True)
        self._module = cupy.RawModule(code=module_source(dtype, "cuda"), options=NVRTC_OPTIONS)
        self._scalars = {"double": np.float64, "long long": np.int64, "int": np.int32}

    def on_stream(self):
        return self.stream

    def follow(self) -> None:
        self.stream.wait_event(self.xp.cuda.get_current_stream().record())

    def synchronize(self) -> None:
        self.stream.synchronize()

    def fill(self, a, value: float = 0) -> None:
        self.launches += 1
        with self.stream:
            a.fill(value)

    @cached_property
    def _functions(self) -> dict:
        return {name: self._module.get_function(name) for name in KERNELS}

    def _launch(self, name, items, params, args) -> None:
        blocks = min(MAX_BLOCKS, (items + BLOCK - 1) // BLOCK)
        values = tuple(a if p.pointer else self._scalars[p.kind](a) for p, a in zip(params, args))
        self._functions[name]((blocks,), (BLOCK,), values)  # on the current stream: on_stream()'s, in a step

    def upload(self, host: np.ndarray, out) -> None:
        # host to device, into out (no new device array), in order with the stream's launches
        out.set(np.ascontiguousarray(host, dtype=out.dtype), stream=self.stream)

    def _to_host(self, a) -> np.ndarray:
        return a.get(stream=self.stream)  # blocking: waits for the stream's work up to here


def nvrtc_compile(dtype: str, arch: str = "sm_90") -> dict:
    """Compile every kernel for ``dtype`` with NVRTC for ``arch``, no GPU needed.

    Returns ``{kernel: {"registers": int, "spill_stores": int, "spill_loads": int}}`` from
    ptxas's report. Raises RuntimeError with NVRTC's log on a compile error. Needs CuPy and
    NVRTC (``pip install cupy-cuda13x "nvidia-cuda-nvrtc==13.0.*"``).
    """
    from cupy.cuda import nvrtc

    text = module_source(dtype, "cuda")
    prog = nvrtc.createProgram(text, f"xpnet_kernels_{dtype}.cu", [], [])
    try:
        try:
            nvrtc.compileProgram(prog, [*NVRTC_OPTIONS, *CUPY_ADDED, f"-arch={arch}", "--ptxas-options=-v"])
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"NVRTC could not compile the {dtype} kernels for {arch}: {exc}\n"
                               f"{nvrtc.getProgramLog(prog)}") from None
        log = nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)
    report = parse_ptxas(log)
    missing = [name for name in KERNELS if "registers" not in report.get(name, {})]
    if missing:
        raise RuntimeError(f"ptxas reported nothing for {', '.join(missing)} ({dtype}, {arch}):\n{log}")
    return {name: report[name] for name in KERNELS}  # the kernels (ptxas also lists device functions)


def parse_ptxas(log: str) -> dict:
    """Registers and spills per kernel from ptxas's verbose log (``--ptxas-options=-v``)."""
    report: dict = {}
    current = None
    for line in log.splitlines():
        entry = re.search(r"Function properties for (\w+)", line) or re.search(r"Compiling entry function '(\w+)'", line)
        if entry:
            current = report.setdefault(entry.group(1), {})
            continue
        if current is None:
            continue
        spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if spills:
            current["spill_stores"], current["spill_loads"] = int(spills.group(1)), int(spills.group(2))
        registers = re.search(r"Used (\d+) registers", line)
        if registers:
            current["registers"] = int(registers.group(1))
    return report


def kernels_for(backend, dtype: str) -> Kernels:
    """The kernel set for a :class:`~xpnet.backend.Backend`: CuPy's on CuPy, the C build on NumPy."""
    if backend.is_cupy:
        with backend.activate():
            return CupyKernels(dtype)
    if backend.is_numpy:
        return HostKernels(dtype)
    raise ValueError(f"backend={backend.name!r} has no fused kernels: expected NumPy (the C build) or CuPy")
