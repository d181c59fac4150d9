"""``xpnet bench`` and ``xpnet info``: the speed of this machine, and what it has installed."""

from __future__ import annotations

import argparse
import json

from ..io import check_writable
from ..threads import blas_pools, blas_threads, default_threads, usable_cores
from .files import as_flags, check_paths


def cmd_bench(args: argparse.Namespace) -> int:
    from .. import bench
    from ..backend import get_backend
    from ..io import atomic_write

    device = getattr(args, "device", "cpu")
    check_paths([], [("--json", getattr(args, "json", None)), ("--markdown", getattr(args, "markdown", None))])
    get_backend(device=device)  # a clear error now if the device is not usable
    for flag in ("json", "markdown"):
        if getattr(args, flag, None):
            check_writable(getattr(args, flag), f"--{flag}")
    quick = getattr(args, "quick", False)
    env = bench.environment(device)
    print("  ".join(f"{k}: {v}" for k, v in env.items()), flush=True)
    if not bench.torch_available():
        print("PyTorch is not installed: its column is n/a", flush=True)

    def show(r) -> None:
        row = r.row()
        vs_t = f"{row['vs_torch']:.2f}x torch" if row["vs_torch"] else "torch n/a"
        vs_r = f"{row['vs_reference']:.2f}x plain" if row["vs_reference"] else "plain n/a"
        print(f"{r.case.name:55s} {r.xpnet:>11,.0f}/s  {vs_t:>12}  {vs_r:>12}  roofline {100 * r.roofline:3.0f}%", flush=True)

    counts, fused_counts = bench.op_counts(), bench.op_counts("fused")
    ops_line = ("array operations per step of [784,128,64,10] on the generic path (array-api-strict; each one a "
                "kernel launch on a GPU): " + ", ".join(f"{k} {v}" for k, v in counts.items())) if counts else (
                "array operations per step: n/a (needs array-api-strict)")
    ops_line += ("; launches per step on the fused path (xpnet.fused): " + ", ".join(
        f"{k} {v}" for k, v in fused_counts.items())) if fused_counts else "; fused path: n/a (needs a C compiler to count)"
    ops_line += ("; the fused path takes a plain stack (relu, leaky_relu, tanh, sigmoid or identity; softmax cross-entropy): "
                 "dropout, norm, residual and the other activations run the generic step on every backend")
    print(ops_line, flush=True)
    results = bench.run_suite(device, quick, getattr(args, "repeats", None), progress=show, threads=blas_threads())
    table = bench.markdown(results)
    with bench.pinned_threads(blas_threads()):
        compiled = bench.compile_comparison(results, device) if quick else []
        gemm = {"float32": next(r.gemm_gflops for r in results if r.case.dtype == "float32")}
        if device != "cpu":  # what TF32 tensor cores would give; run_suite keeps TF32 off
            gemm["tf32"] = bench.gemm_gflops(device, "float32", tf32=True)
    compile_lines = [f"- torch.compile, {row['case']}: {row['torch_compile']:,.0f} samples/s; xpnet "
                     f"{row['vs_torch_compile']:.2f}x" for row in compiled]
    gemm_line = "matrix multiply (the roofline's rate): " + ", ".join(
        f"{k} {v:,.0f} GFLOP/s" for k, v in gemm.items()) + (
        f" (TF32 {gemm['tf32'] / gemm['float32']:.2f}x float32)" if "tf32" in gemm else "")
    print()
    print(table)
    print(gemm_line)
    if compile_lines:
        print("\n".join(compile_lines))
    if getattr(args, "json", None):
        with as_flags(("path", "--json", args.json)), atomic_write(args.json) as f:
            f.write(json.dumps({"environment": env, "op_counts": counts, "fused_launches": fused_counts, "gemm_gflops": gemm,
                                "results": [r.row() for r in results], "torch_compile": compiled}, indent=1).encode())
    if getattr(args, "markdown", None):
        header = "\n".join(f"- {k}: {v}" for k, v in env.items())
        command = "xpnet bench" + (f" --device {device}" if device != "cpu" else "") + (" --quick" if quick else "")
        extra = "\n".join([f"- {ops_line}", f"- {gemm_line}", *compile_lines])
        text = f"# xpnet bench, {env['date']}, {device}\n\nCommand: `{command}`\n\n{header}\n\n{table}\n\n{extra}\n"
        with as_flags(("path", "--markdown", args.markdown)), atomic_write(args.markdown) as f:
            f.write(text.encode())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import importlib.util
    import platform

    import array_api_compat
    import numpy as np

    from .._version import __version__
    from ..distributed import MPI_HINT, launched_copies, mpi_library, world

    copies, _ = launched_copies()
    comm = world() if copies > 1 else None  # mpiexec -n N xpnet info: rank 0 prints what the ranks see
    print(f"xpnet {__version__}  (Python {platform.python_version()}, {platform.machine()})")
    print(f"numpy {np.__version__}")
    print(f"array-api-compat {array_api_compat.__version__}")
    try:
        for pool in blas_pools():
            print(f"BLAS: {pool.get('internal_api')} {pool.get('version')} ({pool.get('num_threads')} threads)")
        default = default_threads(comm)
        print(f"threads: {usable_cores()} usable core(s); the commands use "
              + ("the BLAS's own count (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS or MKL_NUM_THREADS is set)"
                 if default is None else f"{default} BLAS thread{'s' if default != 1 else ''}")
              + (" per rank" if comm is not None else "") + " unless --threads N")
    except ImportError:
        config = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
        print(f"BLAS: {config.get('name', 'unknown')} {config.get('version', '')}".rstrip())
    library = mpi_library()
    if comm is not None:
        print(f"MPI: {library}; {comm.size} ranks, {comm.local_size} on this node "
              f"({'CUDA-aware' if comm.cuda_aware else 'GPU buffers go through the host'})")
    elif library is not None:
        print(f"MPI: {library}; one process (mpiexec -n N xpnet train --distributed trains across N)")
    else:
        print(f"MPI: not installed; {MPI_HINT}")
    print("backends:")
    print("  numpy (cpu): usable")
    if importlib.util.find_spec("cupy") is None:
        print('  cupy (cuda): not installed; pip install "cupy-cuda13x[ctk]>=14" (or "cupy-cuda12x[ctk]>=14")')
    else:
        try:
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
            print(f"  cupy {cupy.__version__} (cuda): usable, {count} GPU(s)" if count else
                  f"  cupy {cupy.__version__}: installed, but no GPU visible")
            for index in range(count):
                props = cupy.cuda.runtime.getDeviceProperties(index)
                name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
                print(f"    cuda:{index}: {name}, {props['totalGlobalMem'] / 2**30:.1f} GiB")
        except Exception as exc:  # a broken driver must not stop `info`
            print(f"  cupy: installed, but CUDA is not usable ({str(exc).splitlines()[0]})")
    for module in ("array_api_strict", "torch", "jax"):
        status = "installed (use backend=...)" if importlib.util.find_spec(module) else "not installed"
        print(f"  {module}: {status}")
    return 0
