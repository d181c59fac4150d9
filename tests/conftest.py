"""Every test runs on every backend through the ``backend`` fixture.

- ``numpy``: the CPU path.
- ``strict``: array-api-strict on its default device: only standard functions.
- ``strict-device1``: array-api-strict on ``Device("device1")``; combining an array
  from there with a host array raises, so passing tests prove that nothing mixes
  host and device arrays (what would break on a GPU), without a GPU.
- ``cupy``: marked ``cuda``; skipped cleanly without CuPy or a visible GPU.
"""

from __future__ import annotations

import pytest

import xpnet

BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("strict", id="strict"),
    pytest.param("strict-device1", id="strict-device1"),
    pytest.param("cupy", id="cupy", marks=pytest.mark.cuda),
]


def _cupy_or_skip() -> xpnet.Backend:
    pytest.importorskip("cupy", reason="CuPy is not installed")
    try:
        return xpnet.get_backend(device="cuda")
    except xpnet.DeviceError as exc:
        pytest.skip(f"no usable GPU: {exc}")


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
