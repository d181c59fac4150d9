"""How many BLAS threads should the command line use? A measurement, not a test.

Times ``--epochs`` (3) epochs of the default MNIST model ([784,128,64,10] ReLU, softmax,
Nesterov momentum, cosine schedule, batch 64, float32, on the bundled digits) with each
thread count in ``--threads`` (1 and 2), in two situations: the machine as it is
("idle"), and with ``--busy`` (1) processes competing for the cores ("busy": children
running ``python -c "while True: pass"``, started and killed by this script). Each figure
is the median of ``--repeats`` (3) timed runs after one untimed warm-up epoch::

    python bench/threads.py
    python bench/threads.py --threads 1,2,4,8 --busy 2 --json threads.json

The table gives seconds and the ratio to the best thread count of the same situation;
the last lines name the thread counts within 1.5x of the best in every situation, the
rule behind the command line's ``--threads`` default (see ``xpnet train --help``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np  # loads the BLAS, so that threadpoolctl can see it
from threadpoolctl import threadpool_info, threadpool_limits

import xpnet

TOLERANCE = 1.5  # a default must stay within this factor of the best count in every situation


def time_epochs(data, threads: int, epochs: int, repeats: int) -> float:
    """Median seconds of ``epochs`` epochs of the default model, with ``threads`` BLAS threads."""
    times = []
    with threadpool_limits(limits=threads):
        for run in range(repeats + 1):  # run 0: a one-epoch warm-up, not timed
            model = xpnet.MLP([784, 128, 64, 10], activation="relu", output="softmax", seed=run)
            opt = xpnet.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine")
            t0 = time.perf_counter()
            xpnet.fit(model, data.X_train, data.y_train, opt, epochs=1 if run == 0 else epochs, batch_size=64,
                      seed=run, verbose=False)
            if run:
                times.append(time.perf_counter() - t0)
    return statistics.median(times)


def start_busy(n: int) -> list[subprocess.Popen]:
    """``n`` processes that each keep one core busy."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    time.sleep(0.5)  # let them start spinning
    return procs


def stop_busy(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.kill()
    for p in procs:
        p.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default="1,2", help="thread counts to time (default: 1,2)")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per timed run (default: 3)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per figure, median taken (default: 3)")
    ap.add_argument("--busy", type=int, default=1, help="competing busy processes in the 'busy' runs (default: 1)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures to this JSON file")
    args = ap.parse_args(argv)
    counts = [int(t) for t in args.threads.split(",")]

    np.ones((2, 2)) @ np.ones((2, 2))
    blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    env = {
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "blas": f"{blas[0]['internal_api']} {blas[0]['version']}, {blas[0]['num_threads']} threads by default" if blas
        else "none found",
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "epochs": args.epochs,
        "repeats": args.repeats,
        "busy_processes": args.busy,
    }
    print("  ".join(f"{k}: {v}" for k, v in env.items()), flush=True)
    data = xpnet.load_mnist()

    seconds: dict[str, dict[int, float]] = {"idle": {}, "busy": {}}
    for situation in ("idle", "busy"):
        procs = start_busy(args.busy) if situation == "busy" else []
        try:
            for n in counts:
                seconds[situation][n] = time_epochs(data, n, args.epochs, args.repeats)
                print(f"  {situation} {n} thread(s): {seconds[situation][n]:.2f}s", flush=True)
        finally:
            stop_busy(procs)

    print()
    print(f"| situation | threads | seconds for {args.epochs} epochs | vs best |")
    print("| --- | ---: | ---: | ---: |")
    worst = {n: 0.0 for n in counts}
    for situation, by_count in seconds.items():
        best = min(by_count.values())
        for n, s in by_count.items():
            worst[n] = max(worst[n], s / best)
            print(f"| {situation} | {n} | {s:.2f} | {s / best:.2f}x |")
    ok = [n for n in counts if worst[n] <= TOLERANCE]
    print()
    print("worst ratio to the best, over both situations: " + ", ".join(f"{n} thread(s) {worst[n]:.2f}x" for n in counts))
    print(f"within {TOLERANCE}x of the best in both: {', '.join(map(str, ok)) or 'none'}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": env, "seconds": seconds, "worst_ratio": worst}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
