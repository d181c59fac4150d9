"""Speed and peak memory of ``xpnet.data.load_file`` on a large CSV: its two bulk parsers (pandas'
C parser in chunks, and np.loadtxt) side by side in one run, with np.loadtxt itself as reference.

A measurement, not a test (speed never goes in ``tests/``)::

    python bench/csv_reader.py                     # 200,000 x 60 (~112 MB), 3 runs of each reader
    python bench/csv_reader.py --rows 50000 --variants --json out.json --markdown out.md

Writes the file with np.savetxt into a temporary folder (59 float features ``%.6f`` and an
integer label, one header line), then runs each reader in a fresh subprocess: its CPU seconds
(``time.process_time`` around the read, an ``import pandas`` inside load_file included) and its
peak resident memory from ``/usr/bin/time -v`` (``getrusage`` where that is missing), reported
above a baseline process that imports numpy and xpnet.data and reads nothing, as a ratio to the
arrays read (X and y, float64), and for the pandas path also above a baseline that imported
pandas as well (importing pandas 3, which imports pyarrow, takes some 85 MB: that is the parse's
own memory). Targets: load_file through pandas (issue 24) at most 0.5x np.loadtxt's CPU time and
a parse peak at most 2x the arrays; through np.loadtxt (issue 12) at most 2x np.loadtxt's time and
1.5x the arrays + 50 MB. ``--variants`` also reads a pandas-style file
(unnamed index column, label first) and a ``;``-separated one with decimal commas.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent

# Each reader runs in its own process: `{path}` is the CSV. It prints CPU seconds, wall seconds and the arrays' bytes.
_TIMED = ("import time, numpy as np, xpnet.data, xpnet.csvfile\nxpnet.csvfile.PARSER = {parser!r}\n"
          "c, t = time.process_time(), time.perf_counter()\n{read}\n"
          "print(time.process_time() - c, time.perf_counter() - t, {nbytes})")
READERS = {
    "baseline": "import numpy as np, xpnet.data\nprint(0.0, 0.0, 0)",
    "baseline + pandas": "import numpy as np, pandas, xpnet.data\nprint(0.0, 0.0, 0)",
    "np.loadtxt": _TIMED.format(parser="numpy", read="X = np.loadtxt({path!r}, delimiter=',', skiprows=1)",
                                nbytes="X.nbytes"),
    "load_file pandas": _TIMED.format(parser="pandas", read="X, y = xpnet.data.load_file({path!r}, {label!r})",
                                      nbytes="X.nbytes + y.nbytes"),
    "load_file pandas + sha256": _TIMED.format(parser="pandas", read="X, y = xpnet.data.load_file({path!r}, {label!r}, "
                                               "identity=dict())", nbytes="X.nbytes + y.nbytes"),
    "load_file numpy": _TIMED.format(parser="numpy", read="X, y = xpnet.data.load_file({path!r}, {label!r})",
                                     nbytes="X.nbytes + y.nbytes"),
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


def run(reader: str, path: Path, label) -> tuple[float, float, int, int]:
    """(CPU seconds, wall seconds, array bytes, peak RSS bytes) of one reader in a fresh process."""
    code = READERS[reader].replace("{path!r}", repr(str(path))).replace("{label!r}", repr(label))
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    timer = Path("/usr/bin/time").exists()
    cmd = (["/usr/bin/time", "-v"] if timer else []) + [sys.executable, "-c", code if timer else code + (
        "\nimport resource; print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=__import__('sys').stderr)")]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{reader} failed:\n{done.stderr}")
    cpu, wall, nbytes = done.stdout.split()[-3:]
    if timer:
        kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    else:
        kb = int(done.stderr.split()[-1])
    return float(cpu), float(wall), int(nbytes), kb * 1024


def best(reader: str, path: Path, label, repeat: int) -> tuple[float, float, int, int]:
    """The fastest of ``repeat`` runs, and the smallest peak: both are noise upward. Runs of the readers
    compared are interleaved by the caller, so that a busy spell of the shared machine hits all alike."""
    runs = [run(reader, path, label) for _ in range(repeat)]
    return min(r[0] for r in runs), min(r[1] for r in runs), runs[0][2], min(r[3] for r in runs)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def markdown(result: dict) -> str:
    """The run as a Markdown report."""
    env = result["environment"]
    lines = [f"# bench/csv_reader.py, {env['date']}, cpu", "", f"Command: `{result['command']}`", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", f"File: {result['file']}. CPU seconds of the read (best of {result['repeat']}, runs interleaved); "
              "peak resident memory above a process that imported numpy and xpnet.data "
              f"({result['baseline_mb']:.0f} MB), and its ratio to the arrays read (X and y, float64); "
              "the parse's peak: above a process that also imported pandas "
              f"({result['baseline_pandas_mb']:.0f} MB) for the pandas path. "
              "The machine is shared: compare figures of this run only.", "",
              "| file | reader | CPU s | x np.loadtxt | wall s | peak MB | array MB | peak / array | parse peak / array "
              "| target |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['file']} | {r['reader']} | {r['cpu_s']:.2f} | {r['cpu_vs_loadtxt']:.2f} | {r['wall_s']:.2f} | "
                     f"{r['peak_mb']:.0f} | {r['array_mb']:.0f} | {r['peak_vs_array']:.2f} | {r['parse_peak_vs_array']:.2f} | "
                     f"{r['target']}{'' if r['met'] is None else (': met' if r['met'] else ': MISSED')} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--cols", type=int, default=60, help="columns in the file, label included")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--variants", action="store_true", help="also a pandas-style and a ';' decimal-comma file")
    ap.add_argument("--json", default=None, help="write the results here")
    ap.add_argument("--markdown", default=None, help="write the report here")
    args = ap.parse_args(argv)
    import pandas

    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.csv"
        write_csv(plain, args.rows, args.cols)
        file = f"{args.rows:,} x {args.cols}, {plain.stat().st_size / 1e6:.1f} MB"
        print(f"{plain.name}: {file}; python {sys.version.split()[0]}, numpy {np.__version__}, pandas "
              f"{pandas.__version__}, best of {args.repeat}")
        cases = [("plain", plain, -1)]
        if args.variants:
            for style, label in (("pandas", 0), ("semicolon", -1)):
                path = Path(tmp) / f"{style}.csv"
                write_csv(path, args.rows, args.cols, style)
                cases.append((style, path, label))
        jobs = [("baseline", "plain", plain, -1), ("baseline + pandas", "plain", plain, -1), ("np.loadtxt", "plain", plain, -1)]
        jobs += [(reader, style, path, label) for style, path, label in cases
                 for reader in ("load_file pandas", "load_file numpy")]
        jobs.insert(4, ("load_file pandas + sha256", "plain", plain, -1))  # as the CLI reads --data: hashed for the record
        runs: dict = {job[:2]: [] for job in jobs}
        for _ in range(args.repeat):  # interleaved: each round runs every reader once
            for reader, style, path, label in jobs:
                runs[reader, style].append(run(reader, path, label))
        got = {key: (min(r[0] for r in rs), min(r[1] for r in rs), rs[0][2], min(r[3] for r in rs))
               for key, rs in runs.items()}
        base, base_pandas = got["baseline", "plain"][3], got["baseline + pandas", "plain"][3]
        t_ref = got["np.loadtxt", "plain"][0]
        rows, ok = [], True
        for reader, style, _, _ in jobs[2:]:
            cpu, wall, nbytes, rss = got[reader, style]
            peak = rss - base
            parse = rss - (base_pandas if reader.startswith("load_file pandas") else base)
            if reader.startswith("load_file pandas"):
                target, met = "CPU <= 0.5x np.loadtxt, parse peak <= 2x array", cpu <= 0.5 * t_ref and parse <= 2 * nbytes
            elif reader == "load_file numpy":
                target, met = "CPU <= 2x np.loadtxt, peak <= 1.5x array + 50 MB", cpu <= 2 * t_ref and peak <= 1.5 * nbytes + 50e6
            else:
                target, met = "reference", None
            ok &= met is not False
            rows.append({"file": style, "reader": reader, "cpu_s": cpu, "cpu_vs_loadtxt": cpu / t_ref, "wall_s": wall,
                         "peak_mb": peak / 1e6, "array_mb": nbytes / 1e6, "peak_vs_array": peak / nbytes,
                         "parse_peak_vs_array": parse / nbytes,
                         "target": target, "met": met})
    env = {"date": datetime.date.today().isoformat(), "cpu": _cpu(), "cores": os.cpu_count(),
           "python": sys.version.split()[0], "numpy": np.__version__, "pandas": pandas.__version__}
    command = " ".join(["python bench/csv_reader.py", *(sys.argv[1:] if argv is None else argv)])
    result = {"command": command, "environment": env, "file": file, "repeat": args.repeat, "baseline_mb": base / 1e6,
              "baseline_pandas_mb": base_pandas / 1e6,
              "rows": rows, "targets_met": ok}
    report = markdown(result)
    print(report)
    print("targets met" if ok else "TARGETS MISSED")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        Path(args.markdown).write_text(report)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
