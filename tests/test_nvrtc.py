"""The fused kernels compile for the H200 (sm_90) with NVRTC, here, without a GPU.

The text compiled is the one CuPy compiles on the device (:func:`xpnet.kernels.module_source`
with :data:`~xpnet.kernels.NVRTC_OPTIONS`), and the one the C compiler builds for the tests
of tests/test_kernels.py. ptxas's report is checked: no kernel spills, and each one's
registers stay low enough for full blocks of :data:`~xpnet.kernels.BLOCK` threads.
CI installs what this needs (the test extra: ``cupy-cuda13x`` and ``nvidia-cuda-nvrtc``).
"""

from __future__ import annotations

import pytest

from xpnet import kernels as K


def _nvrtc():
    try:
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
    except Exception as exc:  # CuPy or libnvrtc missing: ImportError, or CuPy's own error loading it
        pytest.skip(f"NVRTC is not usable here ({type(exc).__name__}: {exc}); "
                    'pip install cupy-cuda13x "nvidia-cuda-nvrtc==13.0.*" (the test extra has both)')
    return nvrtc


pytestmark = pytest.mark.nvrtc

REGISTER_LIMIT = 64  # 65,536 registers an SM: 64 a thread keeps four 256-thread blocks resident


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_every_kernel_compiles_for_sm_90_without_spills(dtype, record_property):
    _nvrtc()
    report = K.nvrtc_compile(dtype, "sm_90")
    record_property(f"ptxas_{dtype}", report)
    print(f"\nsm_90 {dtype}: " + ", ".join(f"{k} {v['registers']} registers" for k, v in report.items()))
    assert set(report) == set(K.KERNELS)
    for name, use in report.items():
        assert use["spill_stores"] == 0 and use["spill_loads"] == 0, f"{name} ({dtype}) spills: {use}"
        assert use["registers"] <= REGISTER_LIMIT, f"{name} ({dtype}) uses {use['registers']} registers"


def test_a_broken_kernel_fails_with_nvrtc_s_message(monkeypatch):
    _nvrtc()
    broken = K.module_source("float32", "cuda").replace("const real z = Z[i] + b[i % cols];", "const real z = Z[i] + nope;")
    monkeypatch.setattr(K, "module_source", lambda dtype, compiler: broken)
    with pytest.raises(RuntimeError, match=r"NVRTC could not compile the float32 kernels for sm_90(.|\n)*nope"):
        K.nvrtc_compile("float32", "sm_90")


def test_ptxas_reports_are_read_per_kernel():
    log = """ptxas info    : Compiling entry function 'sgd' for 'sm_90'
ptxas info    : Function properties for sgd
ptxas         .     0 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads
ptxas info    : Used 40 registers, used 0 barriers"""
    assert K.parse_ptxas(log) == {"sgd": {"spill_stores": 8, "spill_loads": 4, "registers": 40}}


def _documented(fn) -> str:
    """The signature line CuPy's Cython functions carry at the top of their docstring."""
    return (fn.__doc__ or "").strip().splitlines()[0]


def test_the_cupy_calls_of_the_kernel_set_exist_in_cupy_14_with_their_keywords():
    """CupyKernels cannot run here; what it calls is checked against the real wheel instead."""
    cupy = pytest.importorskip("cupy", reason="CuPy is not installed (the test extra has it)")
    from cupy._core.raw import RawKernel

    assert "code=None" in _documented(cupy.RawModule) and "tuple options=()" in _documented(cupy.RawModule)
    assert "get_function(self, str name)" in _documented(cupy.RawModule.get_function)
    assert "__call__(self, grid, block, args, \\*, shared_mem=0)" in cupy._core.raw.RawKernel.__call__.__doc__
    assert "stream" not in RawKernel.__call__.__doc__.split("Args:")[1]  # launches go to the current stream
    assert "non_blocking (bool)" in cupy.cuda.Stream.__doc__ and hasattr(cupy.cuda.Stream, "__enter__")
    assert "wait_event(self, event)" in _documented(cupy.cuda.Stream.wait_event)
    assert "record(self, event=None)" in _documented(cupy.cuda.Stream.record)
    assert "get(self, stream=None" in _documented(cupy.ndarray.get) and "blocking=True" in _documented(cupy.ndarray.get)
    assert "set(self, arr, stream=None)" in _documented(cupy.ndarray.set)
    assert callable(cupy.cuda.get_current_stream) and callable(cupy.ndarray.fill)
