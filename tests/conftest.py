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

TF32 is off for the whole run: results are compared with the CPU's at float32
tolerances, which TF32's 10-bit mantissa does not meet.
"""

from __future__ import annotations

import os

import pytest

import xpnet
from xpnet.backend import allow_tf32

# Process-wide and before any CuPy matmul: also overrides a CUPY_TF32=1 in the environment.
allow_tf32(False)

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
def backend(request) -> xpnet.Backend:
    """A resolved :class:`xpnet.Backend` for each backend in the matrix."""
    return make_backend(request.param)


@pytest.fixture(params=[pytest.param("cpu", id="cpu"), pytest.param("cuda", id="cuda", marks=pytest.mark.cuda)])
def device(request) -> str:
    """A device string for the command line: cpu, and cuda where a GPU is usable."""
    if request.param == "cuda":
        _cupy_or_skip()
    return request.param
