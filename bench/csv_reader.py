"""Speed and peak memory of ``xpnet.data.load_file`` on a large CSV, side by side with np.loadtxt.

A measurement, not a test (speed never goes in ``tests/``)::

    python bench/csv_reader.py                     # 200,000 x 60 (~110 MB), 3 runs of each reader
    python bench/csv_reader.py --rows 50000 --variants

Writes the file with np.savetxt into a temporary folder (59 float features ``%.6f`` and an
integer label, one header line), then times each reader in a fresh subprocess and reads its
peak resident memory from ``/usr/bin/time -v`` (``getrusage`` where that is missing). Memory is
reported above a baseline process that imports numpy and xpnet.data and reads nothing. Targets
(issue 12): time at most 2x np.loadtxt's, memory at most 1.5x the float64 array plus 50 MB.
``--variants`` also reads a pandas-style file (unnamed index column, label first) and a
``;``-separated one with decimal commas, each against np.loadtxt on the plain file.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# Each reader runs in its own process: `{path}` is the CSV. It prints seconds and the array bytes.
READERS = {
    "baseline": "import numpy as np, xpnet.data\nprint(0.0, 0)",
    "np.loadtxt": ("import time, numpy as np, xpnet.data\nt = time.perf_counter()\n"
                   "X = np.loadtxt({path!r}, delimiter=',', skiprows=1)\nprint(time.perf_counter() - t, X.nbytes)"),
    "load_file": ("import time, numpy as np, xpnet.data\nt = time.perf_counter()\n"
                  "X, y = xpnet.data.load_file({path!r}, {label!r})\nprint(time.perf_counter() - t, X.nbytes + y.nbytes)"),
}


def write_csv(path: Path, m: int, n: int, style: str = "plain") -> None:
    """``m`` rows of ``n - 1`` float features and an integer label (first for ``pandas``)."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((m, n - 1))
    y = rng.integers(0, 10, m)
    names = [f"x{k}" for k in range(n - 1)]
    with open(path, "w", encoding="utf-8") as f:
        if style == "plain":
            f.write(",".join([*names, "label"]) + "\n")
            np.savetxt(f, np.column_stack([X, y]), fmt=["%.6f"] * (n - 1) + ["%d"], delimiter=",")
        elif style == "pandas":  # df.to_csv(): an unnamed index column, here with the label first
            f.write(",".join(["", "label", *names]) + "\n")
            np.savetxt(f, np.column_stack([np.arange(m), y, X]), fmt=["%d", "%d"] + ["%.6f"] * (n - 1), delimiter=",")
        else:  # "semicolon": a spreadsheet in a decimal-comma locale
            f.write(";".join([*names, "label"]) + "\n")
            for start in range(0, m, 10_000):
                buf = io.StringIO()
                rows = np.column_stack([X[start:start + 10_000], y[start:start + 10_000]])
                np.savetxt(buf, rows, fmt=["%.6f"] * (n - 1) + ["%d"], delimiter=";")
                f.write(buf.getvalue().replace(".", ","))


def run(reader: str, path: Path, label) -> tuple[float, int, int]:
    """(seconds, array bytes, peak RSS bytes) of one reader in a fresh process."""
    code = READERS[reader].format(path=str(path), label=label)
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    timer = Path("/usr/bin/time").exists()
    cmd = (["/usr/bin/time", "-v"] if timer else []) + [sys.executable, "-c", code if timer else code + (
        "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=__import__('sys').stderr)")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{reader} failed:\n{done.stderr}")
    seconds, nbytes = done.stdout.split()[-2:]
    if timer:
        kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    else:
        kb = int(done.stderr.split()[-1])
    return float(seconds), int(nbytes), kb * 1024


def best(reader: str, path: Path, label, repeat: int) -> tuple[float, int, int]:
    """The fastest of ``repeat`` runs, and the smallest peak: both are noise upward."""
    runs = [run(reader, path, label) for _ in range(repeat)]
    return min(r[0] for r in runs), runs[0][1], min(r[2] for r in runs)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--cols", type=int, default=60, help="columns in the file, label included")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", action="store_true", help="also a pandas-style and a ';' decimal-comma file")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.csv"
        write_csv(plain, args.rows, args.cols)
        print(f"{plain.name}: {args.rows} x {args.cols}, {plain.stat().st_size / 1e6:.1f} MB; "
              f"python {sys.version.split()[0]}, numpy {np.__version__}, best of {args.repeat}")
        _, _, base = best("baseline", plain, -1, args.repeat)
        t_ref, _, rss_ref = best("np.loadtxt", plain, -1, args.repeat)
        print(f"baseline process (numpy + xpnet.data imported): {base / 1e6:.0f} MB")
        print(f"{'file':<14} {'reader':<12} {'seconds':>8} {'x loadtxt':>10} {'peak MB':>8} {'array MB':>9} "
              f"{'target MB':>10}")
        print(f"{'plain':<14} {'np.loadtxt':<12} {t_ref:8.2f} {1.0:10.2f} {(rss_ref - base) / 1e6:8.0f}")
        cases = [("plain", plain, -1)]
        if args.variants:
            for style, label in (("pandas", 0), ("semicolon", -1)):
                path = Path(tmp) / f"{style}.csv"
                write_csv(path, args.rows, args.cols, style)
                cases.append((style, path, label))
        ok = True
        for style, path, label in cases:
            t, nbytes, rss = best("load_file", path, label, args.repeat)
            target = 1.5 * nbytes + 50e6
            ok &= t <= 2 * t_ref and rss - base <= target
            print(f"{style:<14} {'load_file':<12} {t:8.2f} {t / t_ref:10.2f} {(rss - base) / 1e6:8.0f} "
                  f"{nbytes / 1e6:9.0f} {target / 1e6:10.0f}")
        print("targets met" if ok else "TARGETS MISSED: time <= 2x np.loadtxt, peak <= 1.5x array + 50 MB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
