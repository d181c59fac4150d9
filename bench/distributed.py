"""Data-parallel ranks against threads on the same cores, and what a step's Allreduce costs.

A measurement, not a test. Trains ``--epochs`` (3) epochs of the default MNIST model
([784,128,64,10] ReLU, softmax, Nesterov momentum, cosine schedule, global batch
``--batch-size`` 64, float32, the bundled 8,000 digits) in each configuration of
``--configs`` (``RANKSxTHREADS``: ``1x1``, ``1x2``, ``2x1``): one process with 1 or 2 BLAS
threads, or ``mpiexec -n RANKS`` ranks (the ``mpiexec`` next to this Python) with
``THREADS`` each. Each figure is the median of ``--repeats`` (3) timed runs after one
untimed warm-up epoch::

    python bench/distributed.py
    python bench/distributed.py --configs 1x1,1x2,2x1,3x1 --json distributed.json

For the ranks it also reports the Allreduce's share of the training time, measured inside
the run (``Communicator.allreduce_seconds``: the copy to the host buffer, the sum, and
the wait for the slowest rank), and the same Allreduce alone (``--reduce-repeats``
back-to-back sums of the same buffer after a barrier: the cost of the sum without waiting).
``--norm batch`` normalizes the hidden layers with batch norm synchronized across the ranks, and
reports the time of its sums per step (three small Allreduces per layer and step)::

    python bench/distributed.py --configs 1x1,2x1 --norm batch
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np  # loads the BLAS, so that threadpoolctl can see it
from threadpoolctl import threadpool_limits

import xpnet

LAYERS = [784, 128, 64, 10]


def worker(threads: int, epochs: int, repeats: int, batch: int, reduce_repeats: int, norm: str | None = None) -> None:
    """One configuration, in this process (and its ranks, under mpiexec); rank 0 prints one JSON line."""
    from xpnet.distributed import Communicator, launched_copies

    comm = None
    if launched_copies()[0] > 1:
        from mpi4py import MPI

        comm = Communicator(MPI.COMM_WORLD)
    data = xpnet.load_mnist()
    times, shares, per_step, norm_ms = [], [], [], []
    with threadpool_limits(limits=threads):
        for run in range(repeats + 1):  # run 0: a one-epoch warm-up, not timed
            model = xpnet.MLP(LAYERS, activation="relu", output="softmax", seed=run, norm=norm)
            opt = xpnet.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine")
            if comm is not None:
                comm.barrier()
                comm.allreduce_seconds, comm.allreduce_calls = 0.0, 0
                comm.row_sum_seconds, comm.row_sum_calls = 0.0, 0
            t0 = time.perf_counter()
            xpnet.fit(model, data.X_train, data.y_train, opt, epochs=1 if run == 0 else epochs, batch_size=batch,
                      seed=run, verbose=False, comm=comm)
            seconds = time.perf_counter() - t0
            if run:
                times.append(seconds)
                if comm is not None:
                    shares.append(comm.allreduce_seconds / seconds)
                    per_step.append(comm.allreduce_seconds / comm.allreduce_calls)
                    if comm.row_sum_calls:  # synchronized batch norm: its sums per step (4 a layer)
                        norm_ms.append(1e3 * comm.row_sum_seconds / comm.allreduce_calls)
        alone = None
        if comm is not None:  # the same sum of n_params + 2 float32, back to back, nobody to wait for
            from mpi4py import MPI

            buf = np.zeros(model.n_params + 2, np.float32)
            comm.barrier()
            t0 = time.perf_counter()
            for _ in range(reduce_repeats):
                comm.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
            alone = (time.perf_counter() - t0) / reduce_repeats
    if comm is None or comm.rank == 0:
        m = len(data.X_train)
        result = {"ranks": 1 if comm is None else comm.size, "threads": threads, "seconds": statistics.median(times),
                  "samples_per_second": epochs * m / statistics.median(times), "n_params": model.n_params,
                  "allreduce_share": statistics.median(shares) if shares else None,
                  "allreduce_ms_per_step": 1e3 * statistics.median(per_step) if per_step else None,
                  "allreduce_alone_ms": 1e3 * alone if alone is not None else None, "norm": norm,
                  "norm_sums_ms_per_step": statistics.median(norm_ms) if norm_ms else None}
        print(json.dumps(result), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", default="1x1,1x2,2x1", help="RANKSxTHREADS, comma-separated (default: 1x1,1x2,2x1)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--reduce-repeats", type=int, default=500)
    p.add_argument("--json", metavar="FILE", help="also write the results here")
    p.add_argument("--norm", choices=("batch", "layer"), help="normalize the hidden layers (batch: synchronized across ranks)")
    p.add_argument("--worker", type=int, metavar="THREADS", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        worker(args.worker, args.epochs, args.repeats, args.batch_size, args.reduce_repeats, args.norm)
        return
    mpiexec = Path(sys.executable).parent / "mpiexec"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    rows = []
    print(f"{len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} usable cores, "
          f"{args.epochs} epochs of {LAYERS}, global batch {args.batch_size}, float32, median of {args.repeats}",
          flush=True)
    for config in args.configs.split(","):
        ranks, threads = (int(v) for v in config.lower().split("x"))
        command = [sys.executable, __file__, "--worker", str(threads), "--epochs", str(args.epochs), "--repeats",
                   str(args.repeats), "--batch-size", str(args.batch_size), "--reduce-repeats", str(args.reduce_repeats),
                   *(["--norm", args.norm] if args.norm else [])]
        if ranks > 1:
            command = [str(mpiexec), "-n", str(ranks), *command]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800)
        if done.returncode != 0:
            sys.exit(f"{config} failed:\n{done.stderr}")
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        share = (f"  allreduce {100 * row['allreduce_share']:.0f}% of the time, {row['allreduce_ms_per_step']:.3f} ms "
                 f"a step in the run, {row['allreduce_alone_ms']:.3f} ms alone" if row["ranks"] > 1 else "")
        if row.get("norm_sums_ms_per_step"):
            share += f"; batch norm's sums {row['norm_sums_ms_per_step']:.3f} ms a step"
        print(f"{ranks} rank{'s' if ranks > 1 else ' '} x {threads} thread{'s' if threads > 1 else ' '}: "
              f"{row['seconds']:6.2f} s  {row['samples_per_second']:>9,.0f} samples/s{share}", flush=True)
    best = min(r["seconds"] for r in rows)
    print("\n| ranks x threads | seconds | vs best | samples/s | Allreduce share | Allreduce ms/step (in run / alone) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        reduce = (f"{100 * r['allreduce_share']:.0f}% | {r['allreduce_ms_per_step']:.3f} / {r['allreduce_alone_ms']:.3f}"
                  if r["ranks"] > 1 else "- | -")
        print(f"| {r['ranks']} x {r['threads']} | {r['seconds']:.2f} | {r['seconds'] / best:.2f}x | "
              f"{r['samples_per_second']:,.0f} | {reduce} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
