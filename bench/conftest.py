"""Options for the benchmark suite: ``--device cpu|cuda`` and ``--quick``."""

from __future__ import annotations


def pytest_addoption(parser):
    parser.addoption("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.addoption("--quick", action="store_true", help="only [784,128,64,10] at batch 64, 256 and 1024")


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        from xpnet.bench import cases

        device = metafunc.config.getoption("--device")
        chosen = cases(device, metafunc.config.getoption("--quick"))
        metafunc.parametrize("case", chosen, ids=[c.name.replace(" ", "-") for c in chosen])
