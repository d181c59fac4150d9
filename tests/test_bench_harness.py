"""The benchmark harness runs and reports sensibly (no timing is asserted here: speed lives in bench/)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from xpnet import bench
from xpnet.cli import main

TINY = [bench.Case((784, 16, 10), 256, "adam", mode="step", data="mnist"),
        bench.Case((784, 16, 10), 512, "sgd", mode="epoch", data="mnist")]


def test_flops_per_sample():
    # forward 2*784*128 + 2*128*64 + 2*64*10, the same again for weight gradients,
    # and input gradients for layers 2 and 3 only
    fwd = 2 * 784 * 128 + 2 * 128 * 64 + 2 * 64 * 10
    assert bench.flops_per_sample((784, 128, 64, 10)) == 2 * fwd + 2 * 128 * 64 + 2 * 64 * 10


def test_suite_cases_cover_the_issue():
    full = bench.cases("cpu")
    assert {c.layers for c in full} == {bench.SMALL, bench.WIDE}
    assert {c.batch for c in full} == {64, 256, 1024, 8192}
    assert {c.dtype for c in full} == {"float32", "float64"} and {c.mode for c in full} == {"step", "epoch"}
    assert any(c.data == "mnist" for c in full)
    gpu = bench.cases("cuda")
    assert {c.dtype for c in gpu} == {"float32"} and {c.layers for c in gpu} == {bench.SMALL, bench.WIDE_GPU}
    assert {c.batch for c in gpu} == {64, 256, 1024, 8192} and bench.WIDE_GPU == (784, 4096, 4096, 10)


def test_timed_windows_span_at_least_the_minimum(monkeypatch):
    """A unit of work far shorter than the window is repeated until the window is long
    enough (on a simulated clock: each unit takes 1/512 s, about 2 ms; binary fractions
    keep the arithmetic exact)."""
    import types

    now = [0.0]
    monkeypatch.setattr(bench, "time", types.SimpleNamespace(perf_counter=lambda: now[0]))
    calls = []

    def unit():
        calls.append(now[0])
        now[0] += 1 / 512

    assert bench.calls_per_window(unit, min_window=0.125) == 64 and len(calls) == 2  # warm-up, then one timed
    calls.clear()
    assert bench.measure((unit, 100), repeats=3, min_window=0.125) == 100 * 512
    assert len(calls) == 2 + 3 * 64


def test_the_tf32_gemm_rate_leaves_the_setting_as_it_was():
    from xpnet.backend import allow_tf32

    assert bench.gemm_gflops("cpu", "float32", n=64, repeats=1, tf32=True) > 0
    assert allow_tf32(False) is False  # what gemm_gflops restored


@pytest.mark.parametrize("case", TINY, ids=lambda c: c.mode)
def test_runners_do_their_unit_of_work(device, case):
    for runner in (bench.xpnet_runner(case, device), bench.xpnet_runner(case, device, reuse_buffers=False)):
        run, samples = runner
        run()
        assert samples > 0 and bench.measure(runner, repeats=1) > 0
    if device == "cpu":
        assert bench.measure(bench.reference_runner(case), repeats=1) > 0
    fused = bench.fused_runner(case, device)  # the C build on the CPU: None without a C compiler
    if fused is not None:
        assert fused[1] > 0 and bench.measure(fused, repeats=1) > 0


def test_xpnet_bench_command_writes_table_and_files(device, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "cases", lambda device, quick=False: TINY)
    monkeypatch.setattr(bench, "torch_available", lambda: False)  # keeps the test fast and optional-free
    js, md = tmp_path / "r.json", tmp_path / "r.md"
    assert main(["bench", "--device", device, "--quick", "--repeats", "1", "--json", str(js), "--markdown", str(md)]) == 0
    out = capsys.readouterr().out
    assert "| layers | batch | optimizer |" in out and "n/a" in out
    result = json.loads(js.read_text())
    assert len(result["results"]) == 2 and result["environment"]["device"] == device
    row = result["results"][0]
    assert row["vs_torch"] is None and (row["vs_reference"] is None) == (device != "cpu")
    assert row["mode"] == "step" and 0 < row["of_gemm_only"] and result["results"][1]["of_gemm_only"] is None
    assert set(result["op_counts"]) == {"sgd", "nesterov+wd", "adam"} and "array operations per step" in out
    assert set(result["gemm_gflops"]) == ({"float32"} if device == "cpu" else {"float32", "tf32"})
    assert "matrix multiply (the roofline's rate): float32 " in out
    assert np.isclose(row["roofline"], row["xpnet"] * bench.flops_per_sample(row["layers"]) / (row["gemm_gflops"] * 1e9))
    report = md.read_text()
    assert report.startswith(f"# xpnet bench, {result['environment']['date']}, {device}")
    command = "xpnet bench --quick" if device == "cpu" else f"xpnet bench --device {device} --quick"
    assert f"Command: `{command}`" in report and "| layers | batch |" in report
