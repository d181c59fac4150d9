"""Resolving ``device="cuda"`` on the CPU: a stand-in ``cupy`` module plays the GPU.

The stand-in is the few calls xpnet makes (device count, ``Device`` as a context
manager, one elementwise kernel, one matmul, the float32 matmul mode), computed
with NumPy, and it records which GPU is current for each call. Failures are raised
with the exception types and texts CuPy uses, so each ``DeviceError`` line is
checked against what a broken machine produces. None of this ran on a GPU; the
real path is exercised by the ``cuda``-marked tests where a GPU is present.

These tests do not take the ``backend`` fixture: they are about the CuPy path only,
which the stand-in provides on every machine.
"""

from __future__ import annotations

import importlib
import sys
import types
from pathlib import Path

import array_api_compat
import numpy as np
import pytest

import xpnet

xb = importlib.import_module("xpnet.backend")  # the module itself, whatever xpnet re-exports as `backend`
xc = importlib.import_module("xpnet._cuda")  # the first-run checks and the TF32 switch that backend calls
pytest_plugins = ["pytester"]


class CUDARuntimeError(RuntimeError):
    """Named as CuPy's ``cupy_backends.cuda.api.runtime.CUDARuntimeError``."""


class CompileException(Exception):
    """Named as CuPy's ``cupy.cuda.compiler.CompileException`` (NVRTC errors)."""


INSUFFICIENT_DRIVER = "cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version"


TBD, DEFAULT, TF32 = 0, 1, 7  # CuPy's COMPUTE_TYPE_* values


def fake_cupy(count=2, kernel_error=None, matmul_error=None, matmul_result=None, driver=13000, runtime=13000):
    """A stand-in ``cupy`` with ``count`` GPUs; ``log`` lists (what, current GPU) per call."""
    log: list[tuple[str, int]] = []
    state = types.SimpleNamespace(current=0, log=log)

    class Device:
        def __init__(self, device=None):
            self.id = state.current if device is None else int(device)
            self._restore: list[int] = []

        def __int__(self):
            return self.id

        def __eq__(self, other):
            return isinstance(other, Device) and other.id == self.id

        __hash__ = None

        def __enter__(self):
            self._restore.append(state.current)
            state.current = self.id
            return self

        def __exit__(self, *exc):
            state.current = self._restore.pop()

        def use(self):
            raise AssertionError("xpnet must not make a GPU current for the whole process")

    def ran(what):
        log.append((what, state.current))

    def version(v):
        def query():
            if isinstance(v, Exception):
                raise v
            return v

        return query

    class ElementwiseKernel:
        def __init__(self, in_params, out_params, operation, name):
            self.rhs = operation.split("=", 1)[1]  # "y = 2 * x + 1": the same text in Python

        def __call__(self, x):
            ran("kernel")
            if kernel_error is not None:
                raise kernel_error
            return eval(self.rhs, {}, {"x": x}).astype(np.float32)

    def matmul(a, b):
        ran("matmul")
        if matmul_error is not None:
            raise matmul_error
        return np.matmul(a, b) if matmul_result is None else np.asarray(matmul_result, dtype=np.float32)

    compute_types = {"float32": TBD}

    def get_compute_type(dtype):  # as CuPy: the first call reads CUPY_TF32
        if compute_types["float32"] == TBD:
            import os

            compute_types["float32"] = TF32 if int(os.getenv("CUPY_TF32", "0")) > 0 else DEFAULT
        return compute_types["float32"]

    def set_compute_type(dtype, compute_type):
        ran(f"set_compute_type {compute_type}")
        compute_types["float32"] = compute_type

    linalg = types.SimpleNamespace(
        get_compute_type=get_compute_type,
        set_compute_type=set_compute_type,
        COMPUTE_TYPE_DEFAULT=DEFAULT,
        COMPUTE_TYPE_TF32=TF32,
    )

    def rng(seed):
        ran("default_rng")
        host = np.random.default_rng(seed)
        return types.SimpleNamespace(random=lambda n: (ran("random"), host.random(n))[1])

    cupy = types.ModuleType("cupy")
    cupy.state = state
    cupy.cuda = types.SimpleNamespace(
        Device=Device,
        runtime=types.SimpleNamespace(
            getDeviceCount=count if callable(count) else (lambda: count),
            driverGetVersion=version(driver),
            runtimeGetVersion=version(runtime),
        ),
        get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: ran("synchronize")),
    )
    cupy.ElementwiseKernel = ElementwiseKernel
    cupy.asarray = lambda a: (ran("asarray"), np.array(a))[1]
    cupy.asnumpy = np.asarray
    cupy.matmul = matmul
    cupy.random = types.SimpleNamespace(default_rng=rng)
    cupy._core = types.SimpleNamespace(_routines_linalg=linalg)

    # array_api_compat.cupy, the namespace a cupy Backend carries as ``xp``
    xp = types.ModuleType("array_api_compat.cupy")
    xp.float32 = np.float32
    xp.asarray = lambda a, device=None: (ran(f"xp.asarray on {device.id}"), np.array(a))[1]
    xp.astype = lambda x, dtype, copy=True: (ran("xp.astype"), x.astype(dtype))[1]
    xp.argsort = lambda x: (ran("xp.argsort"), np.argsort(x))[1]
    cupy.xp = xp
    return cupy


@pytest.fixture(autouse=True)
def fresh_state(monkeypatch):
    """Each test starts with nothing checked, TF32 left to CUPY_TF32 (unset), CuPy's package unknown."""
    monkeypatch.setattr(xc, "_cuda_checked", {})
    monkeypatch.setattr(xc, "_tf32_choice", None)
    monkeypatch.delenv("CUPY_TF32", raising=False)
    monkeypatch.setattr(xc, "_cupy_distribution", lambda: None)


def install(monkeypatch, cupy):
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", cupy.xp)
    monkeypatch.setattr(array_api_compat, "cupy", cupy.xp, raising=False)
    return cupy


def device_error(device="cuda:0") -> str:
    with pytest.raises(xpnet.DeviceError) as info:
        xpnet.get_backend(device=device)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"device={device!r}: ")
    return message


# ------------------------------------------------------------------ the first run


def test_a_working_gpu_runs_the_check_once_on_the_chosen_device(monkeypatch):
    cupy = install(monkeypatch, fake_cupy())
    backend = xpnet.get_backend(device="cuda:1")
    assert backend.is_cupy and backend.label == "cuda:1" and backend.device == cupy.cuda.Device(1)
    assert ("kernel", 1) in cupy.state.log and ("matmul", 1) in cupy.state.log
    assert cupy.state.current == 0  # entered for the check, left afterwards; .use() would have raised
    xpnet.get_backend(device="cuda:1")
    assert [what for what, _ in cupy.state.log].count("kernel") == 1  # cached for the process
    xpnet.get_backend(device="cuda:0")
    assert ("kernel", 0) in cupy.state.log  # each GPU is checked on its own


def test_missing_nvrtc_names_the_library_and_the_ctk_extra(monkeypatch):
    nvrtc = RuntimeError(
        "CuPy failed to load libnvrtc.so.13: OSError: libnvrtc.so.13: cannot open shared object file: No such file or directory"
    )
    install(monkeypatch, fake_cupy(kernel_error=nvrtc))
    message = device_error("cuda:0")
    assert "a CUDA library or header it needs is missing (libnvrtc.so.13)" in message
    assert "elementwise kernel (compiled by NVRTC) failed (RuntimeError: CuPy failed to load libnvrtc.so.13" in message
    assert 'pip install "cupy-cuda13x[ctk]>=14" (or "cupy-cuda12x[ctk]>=14" for a CUDA 12 driver)' in message
    assert message.endswith("or use --device cpu")


def test_missing_cublas_suggests_the_extra_of_the_installed_package(monkeypatch):
    cublas = ImportError("libcublas.so.12: cannot open shared object file: No such file or directory")
    install(monkeypatch, fake_cupy(matmul_error=cublas))
    monkeypatch.setattr(xc, "_cupy_distribution", lambda: "cupy-cuda12x")
    message = device_error("cuda")
    assert "(libcublas.so.12)" in message and "matmul (cuBLAS) failed (ImportError: libcublas.so.12" in message
    assert 'get the CUDA libraries with pip install "cupy-cuda12x[ctk]>=14", or use --device cpu' in message
    assert "cuda13x" not in message


def test_nvrtc_without_cuda_headers_is_a_missing_header(monkeypatch):
    header = CompileException('/tmp/kern.cu(1): catastrophic error: cannot open source file "cuda_fp16.h"\n#include ...')
    install(monkeypatch, fake_cupy(kernel_error=header))
    message = device_error()
    assert "missing (cuda_fp16.h)" in message and "CompileException: /tmp/kern.cu(1)" in message
    assert "[ctk]>=14" in message


def test_an_old_driver_shows_both_versions_and_the_matching_cupy(monkeypatch):
    old = CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version")
    install(monkeypatch, fake_cupy(kernel_error=old, driver=12040, runtime=13000))
    monkeypatch.setattr(xc, "_cupy_distribution", lambda: "cupy-cuda13x")
    message = device_error()
    assert "the NVIDIA driver is too old for the CUDA runtime CuPy uses (driver: CUDA 12.4, CuPy's runtime: CUDA 13.0)" in message
    assert "cudaErrorInsufficientDriver" in message
    assert 'pip uninstall -y cupy-cuda13x && pip install "cupy-cuda12x[ctk]>=14"' in message


def test_an_old_driver_when_counting_gpus_is_not_called_no_gpu(monkeypatch):
    def count():
        raise CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version")

    install(monkeypatch, fake_cupy(count=count, driver=11080, runtime=12080))
    message = device_error()
    assert "driver: CUDA 11.8, CuPy's runtime: CUDA 12.8" in message and "counting GPUs failed" in message
    assert "update the NVIDIA driver" in message and "no CUDA GPU is visible" not in message


def test_an_old_driver_whose_versions_cannot_be_read(monkeypatch):
    old = CUDARuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime version")
    install(monkeypatch, fake_cupy(matmul_error=old, driver=CUDARuntimeError("no"), runtime=CUDARuntimeError("no")))
    message = device_error()
    assert "(driver: CUDA ?, CuPy's runtime: CUDA ?)" in message
    assert "nvidia-smi" in message and '"cupy-cuda12x[ctk]>=14" or "cupy-cuda13x[ctk]>=14"' in message


def test_another_gpu_failure_says_what_failed(monkeypatch):
    crash = CUDARuntimeError("cudaErrorLaunchFailure: unspecified launch failure")
    install(monkeypatch, fake_cupy(matmul_error=crash))
    message = device_error()
    assert "a small float32 matmul (cuBLAS) failed on the GPU (CUDARuntimeError: cudaErrorLaunchFailure" in message
    assert "cupy.show_config()" in message and "[ctk]" not in message


def test_wrong_results_are_refused(monkeypatch):
    install(monkeypatch, fake_cupy(matmul_result=np.zeros((2, 2))))
    message = device_error()
    assert "gave wrong results" in message and "[[0.0, 0.0], [0.0, 0.0]]" in message


def test_a_failure_is_kept_for_the_process(monkeypatch):
    nvrtc = RuntimeError("CuPy failed to load libnvrtc.so.13: OSError: cannot open shared object file")
    install(monkeypatch, fake_cupy(kernel_error=nvrtc))
    first = device_error()
    cupy = install(monkeypatch, fake_cupy())  # even a working CuPy now: CuPy keeps failed loads too
    assert device_error() == first
    assert cupy.state.log == []


def test_cupy_failing_to_import_is_not_called_missing(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def failing_import(name, *args, **kwargs):  # as CuPy's __init__ does when libcudart is absent
        if name == "cupy":
            raise ImportError("CuPy failed to load libcudart.so.13: OSError: cannot open shared object file")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr("builtins.__import__", failing_import)
    message = device_error()
    assert "importing CuPy failed" in message and "(libcudart.so.13)" in message
    assert "not installed" not in message


def test_no_driver_at_all_is_not_called_too_old(monkeypatch, capsys):
    """Without a driver the CUDA runtime answers cudaErrorInsufficientDriver and driver version 0."""
    from cli_helpers import run

    def count():
        raise CUDARuntimeError(INSUFFICIENT_DRIVER)

    install(monkeypatch, fake_cupy(count=count, driver=0, runtime=13000))
    message = device_error("cuda")
    assert "no NVIDIA driver was found (the CUDA runtime reports driver version 0): counting GPUs failed" in message
    assert "(CUDARuntimeError: cudaErrorInsufficientDriver" in message and "install the NVIDIA driver" in message
    assert "too old" not in message and "no CUDA GPU is visible" not in message
    assert message.endswith("or use --device cpu")
    assert run(["train", "--device", "cuda", "--dataset", "moons", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err == f"xpnet: error: {message}\n"


def _refused(kind: int, path: Path) -> OSError:
    """The OSError ``os.makedirs`` or ``tempfile`` raises for ``path`` (built by hand: root may write anywhere)."""
    import os

    return OSError(kind, os.strerror(kind), str(path))  # EACCES: a PermissionError, as Python's own


@pytest.mark.parametrize("where", ["import", "kernel"])
def test_an_unwritable_kernel_cache_is_named_not_called_a_missing_library(monkeypatch, tmp_path, capsys, where):
    """CuPy makes its kernel cache directory (CUPY_CACHE_DIR, else ~/.cupy/kernel_cache) with os.makedirs
    and writes each kernel there through a temporary file: under a read-only HOME the makedirs of
    ~/.cupy fails on import, on a read-only CUPY_CACHE_DIR the temporary file fails at the first kernel."""
    import builtins
    import errno

    from cli_helpers import run

    if where == "import":
        home = tmp_path / "home"
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.delenv("CUPY_CACHE_DIR", raising=False)
        refused, cache = _refused(errno.EACCES, home / ".cupy"), home / ".cupy" / "kernel_cache"
        real_import = builtins.__import__

        def failing_import(name, *args, **kwargs):
            if name == "cupy":
                raise refused
            return real_import(name, *args, **kwargs)

        monkeypatch.delitem(sys.modules, "cupy", raising=False)
        monkeypatch.setattr("builtins.__import__", failing_import)
        step, source = "importing CuPy failed (PermissionError: [Errno 13] Permission denied", "CuPy's default, under HOME"
    else:
        cache = tmp_path / "cache"
        monkeypatch.setenv("CUPY_CACHE_DIR", str(cache))
        install(monkeypatch, fake_cupy(kernel_error=_refused(errno.EROFS, cache / "tmpk2x9_q1")))
        step, source = "(compiled by NVRTC) failed (OSError: [Errno 30] Read-only file system", "CUPY_CACHE_DIR"
    message = device_error("cuda")
    assert f"CuPy's kernel cache directory {cache} ({source}) is not writable: " in message and step in message
    assert "set CUPY_CACHE_DIR to a directory you can write to" in message and message.endswith("or use --device cpu")
    assert "library" not in message
    assert run(["train", "--device", "cuda", "--dataset", "moons", "--epochs", "1"]) == 2
    assert capsys.readouterr().err == f"xpnet: error: {message}\n"


def test_a_refused_write_elsewhere_is_not_blamed_on_the_cache(monkeypatch, tmp_path):
    import errno

    monkeypatch.setenv("CUPY_CACHE_DIR", str(tmp_path / "cache"))
    install(monkeypatch, fake_cupy(kernel_error=_refused(errno.EACCES, tmp_path / "elsewhere")))
    assert "kernel cache" not in device_error()


# ------------------------------------------------------------ one GPU per backend


def test_activate_makes_the_gpu_current_only_inside(monkeypatch):
    cupy = install(monkeypatch, fake_cupy())
    one, zero = xpnet.get_backend(device="cuda:1"), xpnet.get_backend(device="cuda:0")
    assert cupy.state.current == 0
    with one.activate():
        assert cupy.state.current == 1
        with zero.activate():
            assert cupy.state.current == 0
        assert cupy.state.current == 1
    assert cupy.state.current == 0


def test_asarray_random_and_synchronize_enter_the_device(monkeypatch):
    cupy = install(monkeypatch, fake_cupy())
    backend = xpnet.get_backend(device="cuda:1")
    del cupy.state.log[:]
    backend.asarray(np.zeros(3), "float32")
    backend.random(0).normal((2, 2), "float32")
    perm = backend.random(0, 1).permutation(5)
    backend.synchronize()
    assert sorted(perm.tolist()) == list(range(5))
    assert cupy.state.current == 0
    assert [(what, gpu) for what, gpu in cupy.state.log if gpu != 1] == []
    assert [what for what, _ in cupy.state.log] == [
        # weights and shuffles are drawn on the host (the same numbers on every backend), then moved once
        "xp.asarray on 1", "xp.astype", "xp.asarray on 1", "xp.asarray on 1", "synchronize",
    ]  # fmt: skip


# ------------------------------------------------------------------------- TF32


def test_tf32_is_off_by_default(monkeypatch):
    cupy = install(monkeypatch, fake_cupy())
    assert xpnet.get_backend(device="cuda").tf32 is False
    assert not any(what.startswith("set_compute_type") for what, _ in cupy.state.log)


def test_cupy_tf32_from_the_environment_is_honoured_and_reported(monkeypatch):
    monkeypatch.setenv("CUPY_TF32", "1")
    install(monkeypatch, fake_cupy())
    assert xpnet.get_backend(device="cuda").tf32 is True


def test_allow_tf32_false_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("CUPY_TF32", "1")
    cupy = install(monkeypatch, fake_cupy())
    cupy._core._routines_linalg.get_compute_type(np.float32)  # CuPy already settled on TF32
    xb.allow_tf32(False)
    import os

    assert os.environ["CUPY_TF32"] == "0"
    assert xpnet.get_backend(device="cuda").tf32 is False


def test_allow_tf32_true_reaches_resolved_backends(monkeypatch):
    cupy = install(monkeypatch, fake_cupy())
    backend = xpnet.get_backend(device="cuda:1")
    assert backend.tf32 is False
    xb.allow_tf32(True)
    assert backend.tf32 is True
    assert (f"set_compute_type {TF32}", 0) in cupy.state.log  # process-wide, on the current GPU
    xb.allow_tf32(False)
    assert backend.tf32 is False


def test_tf32_switch_refuses_what_it_cannot_read(monkeypatch):
    with pytest.raises(ValueError, match=r"enabled='yes' is not a bool"):
        xb.allow_tf32("yes")
    install(monkeypatch, fake_cupy())
    monkeypatch.setenv("CUPY_TF32", "on")
    with pytest.raises(ValueError, match=r"CUPY_TF32='on' is not an integer"):
        xpnet.get_backend(device="cuda")


# ------------------------------------------------------------- XPNET_REQUIRE_GPU

NO_GPU = """
import sys, types

def _no_device():
    raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

sys.modules["cupy"] = types.ModuleType("cupy")
sys.modules["cupy"].cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=_no_device))
"""
NO_CUPY = """
import sys

sys.modules["cupy"] = None  # import cupy raises ModuleNotFoundError, as where CuPy is not installed
"""
GPU_TESTS = """
def test_model_on_the_gpu(backend):
    assert backend.is_cupy

def test_cli_on_the_gpu(device):
    assert device == "cuda"
"""


@pytest.mark.parametrize(
    "machine, require, expected",
    [
        pytest.param(NO_GPU, None, "skipped", id="no-gpu"),
        pytest.param(NO_GPU, "0", "skipped", id="no-gpu-require-0"),
        pytest.param(NO_GPU, "1", "CuPy is installed but no CUDA GPU is visible", id="no-gpu-require-1"),
        pytest.param(NO_CUPY, "1", "needs CuPy, which is not installed", id="no-cupy-require-1"),
    ],
)
def test_require_gpu_turns_the_skips_into_failures(pytester, monkeypatch, machine, require, expected):
    """The project's conftest, run by a child pytest on a machine without a usable GPU."""
    pytester.makeconftest(Path(__file__).with_name("conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    cuda: needs a GPU\n")
    pytester.makepyfile(machine=machine, test_gpu=GPU_TESTS)  # machine: loaded with -p, before the conftest
    root = str(Path(xpnet.__file__).resolve().parents[1])  # this checkout's xpnet, in the child too
    monkeypatch.setenv("PYTHONPATH", root)
    if require is None:
        monkeypatch.delenv("XPNET_REQUIRE_GPU", raising=False)
    else:
        monkeypatch.setenv("XPNET_REQUIRE_GPU", require)
    result = pytester.runpytest_subprocess("-p", "machine", "-m", "cuda", "-p", "no:cacheprovider", "-rs")
    if expected == "skipped":
        result.assert_outcomes(skipped=2)
        assert result.ret == 0
        assert result.stdout.str().count("no usable GPU: device='cuda': CuPy is installed but no CUDA GPU is visible") == 2
    else:
        result.assert_outcomes(errors=2)  # pytest.fail in a fixture: an error at setup, exit status 1
        assert result.ret == 1
        result.stdout.fnmatch_lines([f"*XPNET_REQUIRE_GPU is set but the GPU is not usable: device='cuda'*{expected}*"])


def test_out_of_memory_outside_fit_is_one_line(tmp_path, monkeypatch, capsys):
    """A CUDA driver out-of-memory error raised by evaluate (not fit) ends in one line, exit 2."""
    from cli_helpers import run

    from xpnet import model as model_module

    class CUDADriverError(Exception):  # CuPy's class, by name and message (cupy_backends.cuda.api.driver)
        pass

    def out_of_memory(self, X, y):
        raise CUDADriverError("CUDA_ERROR_OUT_OF_MEMORY: out of memory")

    xpnet.MLP([2, 4, 2], seed=0).save(tmp_path / "m.npz")
    X, y = xpnet.make_moons(20, seed=0)
    np.savez(tmp_path / "d.npz", X=X, y=y)
    monkeypatch.setattr(model_module.MLP, "evaluate", out_of_memory)
    assert run(["evaluate", "--model", str(tmp_path / "m.npz"), "--data", str(tmp_path / "d.npz")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["xpnet: error: out of memory (CUDADriverError: CUDA_ERROR_OUT_OF_MEMORY: out of memory); free memory "
                   "on the device, or use a smaller model or --device cpu"]
