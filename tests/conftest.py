"""Every test runs on every backend through the ``backend`` fixture.

- ``numpy``: the CPU path.
- ``strict``: array-api-strict on its default device: only standard functions.
- ``strict-device1``: array-api-strict on ``Device("device1")``; combining an array
  from there with a host array raises, so passing tests prove that nothing mixes
  host and device arrays (what would break on a GPU), without a GPU.
- ``cupy``: marked ``cuda``; skipped cleanly without CuPy or a usable GPU, unless
  ``XPNET_REQUIRE_GPU=1`` is set: then a missing or unusable GPU fails the test
  (an error at setup, with the one-line reason), so ``XPNET_REQUIRE_GPU=1 pytest -m cuda``
  on a GPU machine cannot pass by skipping everything.

``native_backend`` is NumPy and CuPy only, for the long accuracy runs: every other backend
is shown to follow NumPy's trajectory step by step, so a 20-epoch run on it proves nothing more.

Only tests that run on the GPU are marked ``cuda``: those that take ``backend`` (arrays on
its device) or ``device`` (a command that resolves it). Code that runs on the host
whatever the backend (file readers, argument checks) takes ``host_backend`` (the matrix
without ``cupy``) or ``host_device`` (``--device cpu`` and ``--device cuda``, both run
everywhere). Each fixture checks its claim on the CPU: ``backend``'s strict-device1 run
must put an array on ``device1`` and ``device``'s cpu run must resolve a backend (a test
that starts a child process is taken at its word); the host fixtures must do neither.

TF32 is off for the whole run: results are compared with the CPU's at float32
tolerances, which TF32's 10-bit mantissa does not meet.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

import xpnet
from xpnet.backend import allow_tf32

# Process-wide and before any CuPy matmul: also overrides a CUPY_TF32=1 in the environment.
allow_tf32(False)

try:  # in the test extra; a bare GPU image may lack it
    from hypothesis import settings as _hypothesis_settings
except ImportError:
    _hypothesis_settings = None
if _hypothesis_settings is not None:
    # CI (CI=true) draws the same examples on every run: a test that passed on the submitted tree
    # passes in CI, and what fuzzing finds on a developer's machine becomes a fixed example in the
    # test, not a failure that comes and goes. XPNET_HYPOTHESIS_PROFILE=ci asks for it anywhere.
    _hypothesis_settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
    _profile = os.environ.get("XPNET_HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else None)
    if _profile:
        _hypothesis_settings.load_profile(_profile)

BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("strict", id="strict"),
    pytest.param("strict-device1", id="strict-device1"),
    pytest.param("cupy", id="cupy", marks=pytest.mark.cuda),
]


def gpu_required() -> bool:
    """Whether ``XPNET_REQUIRE_GPU`` asks for the GPU tests to fail rather than skip."""
    return os.environ.get("XPNET_REQUIRE_GPU", "").strip() not in ("", "0")


def _cupy_or_skip() -> xpnet.Backend:
    try:
        backend = xpnet.get_backend(device="cuda")  # CuPy missing is a DeviceError too
    except xpnet.DeviceError as exc:
        if gpu_required():
            pytest.fail(f"XPNET_REQUIRE_GPU is set but the GPU is not usable: {exc}", pytrace=False)
        pytest.skip(f"no usable GPU: {exc}")
    if backend.tf32:
        pytest.fail("TF32 is on for float32 matmuls; the tests compare at float32 tolerances", pytrace=False)
    return backend


def make_backend(name: str) -> xpnet.Backend:
    if name == "numpy":
        return xpnet.get_backend(device="cpu")
    if name == "cupy":
        return _cupy_or_skip()
    xs = pytest.importorskip("array_api_strict")
    device = xs.Device("device1") if name == "strict-device1" else None
    return xpnet.get_backend(xs, device)


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch) -> xpnet.Backend:
    """A resolved :class:`xpnet.Backend` for each backend in the matrix.

    Only for tests that put arrays on the backend's device: its ``cupy`` parameter is
    marked ``cuda``, and ``-m cuda`` should select what runs on a GPU. The
    ``strict-device1`` run checks this: a passing test that creates no array on
    ``device1`` fails, and should take :func:`host_backend`.
    """
    yield from _watched_backend(request, monkeypatch, on_device=True)


@pytest.fixture(params=[p for p in BACKENDS if p.id in ("numpy", "cupy")])
def native_backend(request) -> xpnet.Backend:
    """NumPy, and CuPy where a GPU is usable: for long runs (accuracy on the bundled MNIST)
    whose array-API runs would add minutes and prove nothing more, since every backend is
    shown to follow NumPy's trajectory step by step (tests/test_training.py)."""
    return make_backend(request.param)


@pytest.fixture(params=[p for p in BACKENDS if p.id != "cupy"])
def host_backend(request, monkeypatch) -> xpnet.Backend:
    """The matrix without its GPU parameter, for code that runs on the host whatever the
    backend (file readers, argument checks made before any array is created). The
    ``strict-device1`` run checks that nothing is put on the device after all."""
    yield from _watched_backend(request, monkeypatch, on_device=False)


def _watched_backend(request, monkeypatch, on_device: bool) -> Iterator[xpnet.Backend]:
    """Yield the parameter's backend; on strict-device1, check it was (or was not) used on the device."""
    backend = make_backend(request.param)
    if request.param != "strict-device1":
        yield backend
        return
    with _watch(monkeypatch, backend) as seen:
        yield backend
    if on_device:
        _require(request, seen.device or seen.child, "put no array on the backend's device", "host_backend")
    else:
        _require(request, not seen.device, "put an array on the backend's device", "backend")


@pytest.fixture(params=[pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)])
def device(request, monkeypatch) -> str:
    """A device string for the command line: cpu, and cuda where a GPU is usable.

    Only for commands that get as far as resolving the device; the ``cpu`` run checks
    this (a passing test that resolves no backend fails, and should take :func:`host_device`).
    """
    if request.param == "cuda":
        _cupy_or_skip()
        yield request.param
        return
    with _watch(monkeypatch) as seen:
        yield request.param
    _require(request, seen.device or seen.child, "resolved no backend", "host_device")


@pytest.fixture(params=["cpu", "cuda"])
def host_device(request, monkeypatch) -> str:
    """``--device cpu`` and ``--device cuda`` for commands that stop before resolving the
    device (usage errors, help): both run on any machine, GPU or not, and must say the
    same; a test that resolves a backend after all fails (it should take :func:`device`)."""
    with _watch(monkeypatch) as seen:
        yield request.param
    _require(request, not seen.device, "resolved a backend", "device")


# ------------------------------------- does a test run on the device it is given?


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """Keep each phase's report on the test, for the fixtures' checks at teardown."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


class _Seen:
    """What a test did, watched from inside this process."""

    device = False  # an array was put on the watched device, or (no device given) a Backend was made
    child = False  # it ran xpnet in a child process, whose work cannot be seen from here


@contextlib.contextmanager
def _watch(monkeypatch, backend: xpnet.Backend | None = None) -> Iterator[_Seen]:
    """Watch for arrays created on ``backend``'s device, or without one for any Backend made."""
    seen = _Seen()
    if backend is not None:
        from array_api_strict._array_object import Array

        backend.mutable  # noqa: B018 - its one-element probe array is made (and cached) before watching
        new = Array._new.__func__

        def array_new(cls, x, /, device):
            seen.device = seen.device or device == backend.device
            return new(cls, x, device=device)

        monkeypatch.setattr(Array, "_new", classmethod(array_new))
    else:
        init = xpnet.Backend.__init__

        def backend_init(self, *args, **kwargs):
            seen.device = True
            init(self, *args, **kwargs)

        monkeypatch.setattr(xpnet.Backend, "__init__", backend_init)
    popen = subprocess.Popen.__init__

    def popen_init(proc, args, *rest, **kwargs):
        command = " ".join(map(str, args)) if isinstance(args, (list, tuple)) else str(args)
        seen.child = seen.child or any(word in command for word in ("xpnet", "mpiexec", sys.executable))
        popen(proc, args, *rest, **kwargs)

    monkeypatch.setattr(subprocess.Popen, "__init__", popen_init)
    yield seen


def _require(request, ok: bool, what: str, instead: str) -> None:
    """Fail a passing test whose fixture does not fit what it did."""
    report = getattr(request.node, "report_call", None)
    if not ok and report is not None and report.passed:
        where = "its GPU run would run nothing there" if instead.startswith("host") else "it runs on the GPU where there is one"
        pytest.fail(f"this test {what}: {where}; take the {instead} fixture", pytrace=False)
