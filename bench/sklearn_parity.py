"""xpnet.sklearn against scikit-learn's own MLPClassifier, side by side in one run.

On scikit-learn's digits (1,797 8x8 images, pixels / 16, split 75/25 with random_state=0)
and on the bundled MNIST (``xpnet.load_mnist()``: 8,000 train / 2,000 test), each
implementation is fitted with the same parameters and ``random_state`` (seeds 0, 1, 2):
Adam, ``batch_size="auto"`` (200), ``tol=0`` and ``n_iter_no_change=max_iter``, so that
both run exactly ``max_iter`` epochs. Reported: the median test accuracy and the median
fit time over the seeds, and their differences and ratios.

- ``scikit-learn``: its MLPClassifier on float64 data (what users hand it), computing in float64;
- ``scikit-learn f32``: the same on float32 data (scikit-learn then computes in float32);
- ``xpnet``: ``xpnet.sklearn.MLPClassifier`` with its defaults (float32, on the CPU).

Runs are interleaved seed by seed, after one untimed warm-up fit of each, with the BLAS
pinned to ``--threads`` (1) threads for every implementation. ``--device cuda`` adds an
``xpnet cuda`` column (a fit ends with a read from the device, so its time includes the
GPU's work)::

    python bench/sklearn_parity.py
    python bench/sklearn_parity.py --datasets digits --seeds 0 --markdown parity.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import numpy as np  # loads the BLAS, so that threadpoolctl can see it
from threadpoolctl import threadpool_limits

import xpnet

CASES = {  # data set -> MLPClassifier parameters (both implementations)
    "digits": dict(hidden_layer_sizes=(100,), max_iter=200),
    "mnist": dict(hidden_layer_sizes=(128, 64), max_iter=30),
}


def load(name: str):
    """``(X_train, X_test, y_train, y_test)`` as float64 arrays in [0, 1] and integer labels."""
    if name == "digits":
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        X, y = load_digits(return_X_y=True)
        return train_test_split(X / 16.0, y, test_size=0.25, random_state=0)
    d = xpnet.load_mnist()
    return (d.X_train.astype(np.float64), d.X_test.astype(np.float64), d.y_train, d.y_test)


def implementations(device: str | None) -> dict:
    from sklearn.neural_network import MLPClassifier as SkMLP

    from xpnet.sklearn import MLPClassifier

    impls = {
        "scikit-learn": (lambda **p: SkMLP(**p), np.float64),
        "scikit-learn f32": (lambda **p: SkMLP(**p), np.float32),
        "xpnet": (lambda **p: MLPClassifier(**p), np.float64),
    }
    if device:
        impls[f"xpnet {device}"] = (lambda **p: MLPClassifier(**p, device=device), np.float64)
    return impls


def fit_once(make, dtype, params: dict, seed: int, data) -> tuple[float, float, int]:
    """``(seconds, test accuracy, epochs)`` of one fit."""
    X_train, X_test, y_train, y_test = data
    X_train, X_test = X_train.astype(dtype), X_test.astype(dtype)
    est = make(**params, random_state=seed, tol=0.0, n_iter_no_change=params["max_iter"])
    t0 = time.perf_counter()
    est.fit(X_train, y_train)
    seconds = time.perf_counter() - t0
    return seconds, float(np.mean(est.predict(X_test) == y_test)), int(est.n_iter_)


def run(datasets: list[str], seeds: list[int], threads: int, device: str | None) -> list[dict]:
    impls = implementations(device)
    rows = []
    with threadpool_limits(limits=threads), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is reached on purpose
        for name in datasets:
            data = load(name)
            params = CASES[name]
            for make, dtype in impls.values():  # warm-up: imports, BLAS and allocator start-up
                fit_once(make, dtype, {**params, "max_iter": 1}, 0, data)
            results = {impl: [] for impl in impls}
            for seed in seeds:
                for impl, (make, dtype) in impls.items():
                    results[impl].append(fit_once(make, dtype, params, seed, data))
                    print(f"{name} seed {seed} {impl:<17} {results[impl][-1][0]:7.2f} s  "
                          f"accuracy {100 * results[impl][-1][1]:.2f}%", flush=True)
            ref_time = statistics.median(r[0] for r in results["scikit-learn"])
            ref_acc = statistics.median(r[1] for r in results["scikit-learn"])
            for impl, runs in results.items():
                seconds = statistics.median(r[0] for r in runs)
                accuracy = statistics.median(r[1] for r in runs)
                rows.append({"dataset": name, "implementation": impl, "params": params, "seeds": seeds,
                             "epochs": sorted({r[2] for r in runs}), "seconds": seconds, "accuracy": accuracy,
                             "accuracy_diff_points": 100 * (accuracy - ref_acc), "speedup": ref_time / seconds,
                             "runs": [{"seconds": r[0], "accuracy": r[1]} for r in runs]})
    return rows


def markdown(rows: list[dict], threads: int) -> str:
    lines = [f"BLAS threads: {threads}; median over seeds {rows[0]['seeds']}; speed-up = scikit-learn's fit "
             "time / this fit time.", "",
             "| data set | implementation | epochs | test accuracy | vs scikit-learn | fit seconds | speed-up |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(f"| {r['dataset']} | {r['implementation']} | {','.join(map(str, r['epochs']))} | "
                     f"{100 * r['accuracy']:.2f}% | {r['accuracy_diff_points']:+.2f} pt | {r['seconds']:.2f} | "
                     f"{r['speedup']:.2f}x |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="digits,mnist", help="comma-separated: digits, mnist")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated random_state values")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads for every implementation")
    parser.add_argument("--device", default=None, help="also time xpnet on this device (cuda, cuda:N)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--markdown", default=None, help="write the table here")
    args = parser.parse_args(argv)
    datasets = [d for d in args.datasets.split(",") if d]
    unknown = [d for d in datasets if d not in CASES]
    if unknown:
        parser.error(f"--datasets: unknown {unknown}; expected some of {', '.join(CASES)}")
    rows = run(datasets, [int(s) for s in args.seeds.split(",")], args.threads, args.device)
    table = markdown(rows, args.threads)
    print()
    print(table)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "rows": rows}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
