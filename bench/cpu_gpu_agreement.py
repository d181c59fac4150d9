"""Do the CPU and a GPU train to the same accuracy? The deep-mnist preset, several seeds.

    python bench/cpu_gpu_agreement.py                     # cpu and cuda, seeds 0 1 2
    python bench/cpu_gpu_agreement.py --devices cpu cuda:1 --seeds 0 1 2 3 4

Each run is ``xpnet train --preset deep-mnist --seed S --device D --json`` (in this
process, with TF32 off whatever ``CUPY_TF32`` says). Prints each run's test accuracy and losses, the
median test accuracy per device, and whether the medians agree within ``--points``
(0.3 percentage points). Exits 1 when they do not. Float32 training on two devices
differs by rounding (different summation orders in the matrix products and
reductions), and 30 epochs amplify that: single seeds may differ by more than the
medians do. Step-by-step agreement of short runs is a test
(``tests/test_training.py::test_backend_trains_like_numpy``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys

from xpnet.backend import allow_tf32
from xpnet.cli import main as xpnet_main
from xpnet.io import atomic_write


def train(device: str, seed: int, preset: str) -> dict:
    """One ``xpnet train`` run; its final JSON report."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = xpnet_main(["train", "--preset", preset, "--device", device, "--seed", str(seed), "--json", "--quiet"])
    if code != 0:
        raise SystemExit(f"xpnet train --device {device} --seed {seed} exited {code}")
    return json.loads(out.getvalue().strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", nargs=2, default=["cpu", "cuda"], metavar=("A", "B"))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--preset", default="deep-mnist")
    p.add_argument("--points", type=float, default=0.3, help="largest allowed gap of the medians, in points")
    p.add_argument("--json", metavar="FILE", help="also write the runs and the verdict here")
    args = p.parse_args(argv)
    if args.devices[0] == args.devices[1]:
        p.error(f"--devices {args.devices[0]} {args.devices[1]}: expected two different devices")
    allow_tf32(False)

    runs = {d: [] for d in args.devices}
    print(f"{'device':8s} {'seed':>4s} {'test acc':>9s} {'test loss':>10s} {'train loss':>11s} {'seconds':>8s}")
    for seed in args.seeds:
        for device in args.devices:
            r = train(device, seed, args.preset)
            runs[device].append(r)
            print(f"{device:8s} {seed:4d} {100 * r['test_accuracy']:8.2f}% {r['test_loss']:10.4f} "
                  f"{r['train_loss']:11.5f} {r['seconds']:8.1f}", flush=True)
    medians = {d: 100 * statistics.median(r["test_accuracy"] for r in rs) for d, rs in runs.items()}
    a, b = args.devices
    gap = abs(medians[a] - medians[b])
    agree = gap <= args.points
    print(f"median test accuracy: {a} {medians[a]:.2f}%, {b} {medians[b]:.2f}%; gap {gap:.2f} points "
          f"({'within' if agree else 'MORE than'} {args.points})")
    if args.json:
        record = {"preset": args.preset, "seeds": args.seeds, "runs": runs, "median_test_accuracy_percent": medians,
                  "gap_points": gap, "allowed_points": args.points, "agree": agree}
        with atomic_write(args.json) as f:
            f.write(json.dumps(record, indent=1).encode())
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
