"""Peak resident memory of ``model.predict`` on a large torch CPU tensor: is a second copy made?

A measurement, not a test (tests/test_dlpack.py checks a small case with tracemalloc). Builds
``--rows`` x 784 (default 1,000,000: 2,991 MiB in float32) as a torch CPU tensor, or as a NumPy
array (``--kind numpy``), then reports the peak resident set during one ``predict`` of the
[784,128,64,10] model above the resident set just before it (Linux: ``/proc/self/clear_refs``
resets the peak, ``VmHWM`` reads it). ``--kind torch64`` passes a float64 tensor to the float32
model (one float32 copy is expected); ``--kind torch-grad`` one that requires grad::

    python bench/dlpack_memory.py                 # torch float32
    python bench/dlpack_memory.py --kind numpy    # the same data as a NumPy array, for comparison
"""

from __future__ import annotations

import argparse
import time


def status(key: str) -> int:
    """Bytes of ``key`` (``VmRSS``, ``VmHWM``) in /proc/self/status."""
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"/proc/self/status has no {key}: Linux only")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--kind", choices=("torch", "torch64", "torch-grad", "numpy"), default="torch")
    args = p.parse_args()
    import torch

    import xpnet

    torch.manual_seed(0)
    X = torch.randn(args.rows, 784, dtype=torch.float64 if args.kind == "torch64" else torch.float32)
    if args.kind == "torch-grad":
        X.requires_grad_(True)
    nbytes = X.numel() * X.element_size()
    if args.kind == "numpy":
        X = X.numpy()
    model = xpnet.MLP([784, 128, 64, 10], seed=0)
    model.predict(X[:100])  # warm-up: imports, caches, BLAS threads
    with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
        f.write("5")  # the peak (VmHWM) back to the current resident set
    before = status("VmRSS")
    t0 = time.perf_counter()
    labels = model.predict(X)
    seconds = time.perf_counter() - t0
    peak = status("VmHWM")
    print(f"{args.kind}: input {nbytes / 2**20:,.0f} MiB; peak during predict {(peak - before) / 2**20:,.1f} MiB above "
          f"the resident set before it; {seconds:.1f} s; {tuple(labels.shape)} labels")


if __name__ == "__main__":
    main()
