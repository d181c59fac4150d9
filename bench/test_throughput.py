"""Training throughput, side by side: xpnet, the tutorials' plain NumPy loop, PyTorch eager.

Each case is one pytest-benchmark group, so the three implementations print next to
each other; ``extra_info`` carries samples/s, FLOP/s and the roofline share. Run with
``pytest bench --benchmark-only`` (see bench/README.md). A unit of work (a number of
steps, or one epoch) ends with the device synchronized; after a warm-up, each of
pytest-benchmark's ROUNDS runs it back to back for at least 100 ms
(``bench.calls_per_window``), and the figure is the median round's time per unit.
"""

from __future__ import annotations

import pytest

from xpnet import bench


@pytest.fixture(scope="session")
def device(request):
    device = request.config.getoption("--device")
    if device.startswith("cuda"):
        from xpnet import DeviceError, get_backend

        try:
            get_backend(device=device)
        except DeviceError as exc:
            pytest.skip(str(exc))
    return device


@pytest.fixture(scope="session")
def gemm(device):
    return {dt: bench.gemm_gflops(device, dt) for dt in ("float32", "float64")}


ROUNDS = 5  # timed rounds per implementation, each at least bench.MIN_WINDOW long


def _time(benchmark, case, runner, gemm):
    """pytest-benchmark times units of work (steps or an epoch), which end synchronized."""
    run, samples = runner
    benchmark.group = case.name
    benchmark.pedantic(run, rounds=ROUNDS, warmup_rounds=0, iterations=bench.calls_per_window(run))
    rate = samples / benchmark.stats.stats.median
    flops = rate * bench.flops_per_sample(case.layers)
    benchmark.extra_info.update(samples_per_second=round(rate), gflops=flops / 1e9, roofline=flops / (gemm[case.dtype] * 1e9))


def test_xpnet(benchmark, case, device, gemm):
    _time(benchmark, case, bench.xpnet_runner(case, device), gemm)


def test_xpnet_plain_path(benchmark, case, device, gemm):
    """xpnet without reused buffers: what the hot path buys."""
    _time(benchmark, case, bench.xpnet_runner(case, device, reuse_buffers=False), gemm)


def test_plain_numpy_loop(benchmark, case, device, gemm):
    if device != "cpu":
        pytest.skip("the plain NumPy loop runs on the CPU only")
    _time(benchmark, case, bench.reference_runner(case), gemm)


def test_pytorch_eager(benchmark, case, device, gemm):
    if not bench.torch_available():
        pytest.skip("PyTorch is not installed")
    _time(benchmark, case, bench.torch_runner(case, device), gemm)


def test_gemm_roofline(benchmark, device):
    """The measured matrix-multiply rate that the roofline share divides by."""
    rate = benchmark.pedantic(bench.gemm_gflops, args=(device,), rounds=1, iterations=1)
    benchmark.extra_info["gflops"] = rate
