"""Backend resolution, device placement, randomness and to_numpy."""

from __future__ import annotations

import contextlib
import importlib.util

import numpy as np
import pytest

import xpnet
from xpnet.backend import Random


def test_params_live_on_the_backend_device(backend):
    model = xpnet.MLP([3, 4, 2], backend=backend)
    xp = backend.xp
    for p in model.params:
        assert type(p) is type(xp.asarray(backend.asarray(np.zeros(1))))
        if backend.device is not None and backend.name != "numpy":
            import array_api_compat

            assert array_api_compat.device(p) == backend.device
    assert [tuple(p.shape) for p in model.params] == [(3, 4), (4,), (4, 2), (2,)]
    assert model.params[0].dtype == backend.dtype("float32")


def test_permutation_is_a_permutation_on_the_device(backend):
    perm = backend.random(7, 3).permutation(1000)
    assert type(perm) is type(backend.asarray(np.zeros(1)))
    np.testing.assert_array_equal(np.sort(xpnet.to_numpy(perm)), np.arange(1000))
    again = backend.random(7, 3).permutation(1000)
    np.testing.assert_array_equal(xpnet.to_numpy(perm), xpnet.to_numpy(again))
    other = backend.random(7, 4).permutation(1000)
    assert not np.array_equal(xpnet.to_numpy(perm), xpnet.to_numpy(other))


def test_normal_draws_are_the_same_on_every_backend(backend):
    cpu = Random(xpnet.get_backend(), (5,)).normal((4, 3), "float64", scale=2.0)
    here = backend.random(5).normal((4, 3), "float64", scale=2.0)
    np.testing.assert_array_equal(xpnet.to_numpy(here), cpu)


def test_to_numpy_round_trip(backend):
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    back = xpnet.to_numpy(backend.asarray(a))
    assert isinstance(back, np.ndarray)
    np.testing.assert_array_equal(back, a)


def test_model_moves_between_devices(backend):
    model = xpnet.MLP([3, 5, 2], seed=4)
    X = np.random.default_rng(0).normal(size=(6, 3))
    ref = xpnet.to_numpy(model.forward(X))
    model.to(backend=backend)
    assert model.backend is backend
    np.testing.assert_allclose(xpnet.to_numpy(model.forward(X)), ref, rtol=1e-6)
    model.to("cpu")
    assert isinstance(model.params[0], np.ndarray)
    np.testing.assert_allclose(xpnet.to_numpy(model.forward(X)), ref, rtol=1e-6)


def test_activate_makes_the_backend_device_current(backend):
    with backend.activate():
        x = backend.asarray(np.arange(3.0))
        if backend.is_cupy:
            import cupy

            assert cupy.cuda.Device().id == backend.device.id
    np.testing.assert_array_equal(xpnet.to_numpy(x), [0.0, 1.0, 2.0])
    if backend.is_cupy:
        import array_api_compat

        assert array_api_compat.device(x) == backend.device
    else:
        assert isinstance(backend.activate(), contextlib.nullcontext)  # nothing to switch off the GPU


def test_tf32_is_off_in_the_tests(backend):
    """A float32 matmul keeps all 24 bits: 1 + 2**-12 survives it, where TF32's 11-bit
    significand would round it to 1."""
    assert backend.tf32 is False
    xp = backend.xp
    a = backend.asarray(np.full((64, 64), 1 + 2.0**-12, dtype=np.float32))
    e = backend.asarray(np.eye(64, dtype=np.float32))
    assert np.all(xpnet.to_numpy(a @ e) == np.float32(1 + 2.0**-12)), xp


def test_backend_by_name_and_module(host_backend):
    assert xpnet.get_backend(host_backend) is host_backend
    assert xpnet.get_backend("numpy").is_numpy
    assert xpnet.get_backend(np).is_numpy
    assert xpnet.get_backend(None, "cpu").is_numpy


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:-1", 3])
def test_unknown_device_strings_are_refused(device):
    with pytest.raises(ValueError, match="device="):
        xpnet.get_backend(device=device)


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="backend='no_such_array_lib'"):
        xpnet.get_backend("no_such_array_lib")
    with pytest.raises(ValueError, match="NumPy runs on 'cpu' only"):
        xpnet.get_backend("numpy", "cuda")


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_cuda_without_cupy_says_how_to_fix_it():
    with pytest.raises(xpnet.DeviceError) as info:
        xpnet.MLP([2, 2], device="cuda")
    message = str(info.value)
    assert "device='cuda'" in message and "CuPy" in message
    assert 'pip install "cupy-cuda13x[ctk]>=14"' in message and "--device cpu" in message


def test_install_advice_names_packages_an_index_has():
    """xpnet is not on a package index: `pip install "xpnet[plot]"` fails in a fresh venv. Every hint
    names the real packages (with the checkout's `pip install ".[extra]"` at most as the alternative)."""
    import re
    from pathlib import Path

    from xpnet import backend, distributed, plot

    advice = re.compile(r"pip install[^\n]*xpnet\[")
    package = Path(xpnet.__file__).parent
    offenders = [f"{path.relative_to(package)}:{number}: {line.strip()}"
                 for path in sorted(package.rglob("*.py"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if advice.search(line)]
    assert offenders == []
    assert 'pip install "cupy-cuda13x[ctk]>=14"' in backend.CUDA_HINT and '"cupy-cuda12x[ctk]>=14"' in backend.CUDA_HINT
    assert 'pip install "matplotlib>=3.7"' in plot.PLOT_HINT
    assert 'pip install "mpi4py>=4" mpich' in distributed.MPI_HINT
    for hint in (backend.CUDA_HINT, plot.PLOT_HINT, distributed.MPI_HINT):
        assert "\n" not in hint and "xpnet[" not in hint


def test_cuda_without_a_gpu_says_so(monkeypatch):
    """CuPy present but no GPU visible: simulated with a stand-in cupy module."""
    import sys
    import types

    class _Runtime:
        @staticmethod
        def getDeviceCount():
            raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=_Runtime())
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(xpnet.DeviceError, match="no CUDA GPU is visible.*--device cpu"):
        xpnet.get_backend(device="cuda:0")


def test_cuda_index_out_of_range(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=lambda: 1))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(xpnet.DeviceError, match=r"cuda:3.*only 1 GPU"):
        xpnet.get_backend(device="cuda:3")


class _CountingDevice:
    """A stand-in for cupy.cuda.Device that counts how often it is made current."""

    entered: list = []

    def __init__(self, id: int):
        self.id = id

    def __enter__(self):
        _CountingDevice.entered.append(self.id)
        return self

    def __exit__(self, *exc):
        return False


def test_a_device_is_entered_once_however_deep_the_blocks_nest():
    gpu0 = xpnet.Backend("cupy", np, _CountingDevice(0), "cuda:0")
    gpu1 = xpnet.Backend("cupy", np, _CountingDevice(1), "cuda:1")
    _CountingDevice.entered = []
    with gpu0.activate():  # fit's loop
        with gpu0.activate():  # train_step
            with gpu0.activate():  # backprop
                pass
        with gpu1.activate():  # another GPU's work inside: entered, then gpu0 is current again
            with gpu1.activate():
                pass
        with gpu0.activate():
            pass
    with gpu0.activate():  # a new step after the loop: entered again
        pass
    assert _CountingDevice.entered == [0, 1, 0]
