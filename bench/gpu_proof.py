"""The GPU proof (issue 21, items 4 and 6): one call of about six minutes on a GPU machine, most proof first.

The device tool's command (one line; ``carry: [".gpu-wheels"]``, ``timeout_s: 420``)::

    python3 bench/gpu_proof.py "$OUT" --install --budget 330

Beforehand, here (with network): ``python bench/gpu_proof.py --wheels`` fills the git-ignored
``.gpu-wheels`` with the pure-Python packages the GPU image may lack (xpnet's requirements, the
tests' and pytest-xdist/pytest-timeout); ``--install`` installs from it only what does not import,
then the project (``pip install --no-deps --no-build-isolation -e .``; the stages also put the
checkout on ``PYTHONPATH`` and call ``python -m xpnet``, so a refused install costs nothing).
Dry run on the CPU (every stage that can run on NumPy, the fused path through the C-built kernels;
each GPU part named as not run), under two minutes::

    python bench/gpu_proof.py /tmp/proof --device cpu

Stages, in order (each in its own process, killed at its time cap, skipped with a note when the
budget left is under what it needs): 1 env (versions, GPU, NVRTC registers and spills), 2 grads
(one step's gradients CPU against GPU in float64 and float32; fused against generic step), 3 nosync
(allocations and reads inside warm fused steps; host enqueue time against GPU time at batch 8192),
4 train (``xpnet train`` on the CPU, then on the GPU with CuPy's kernel cache cold, then warm),
5 pytest (``XPNET_REQUIRE_GPU=1 pytest -m cuda -n 8 --timeout``, failures rerun once with warnings
shown), 6 ops (launches per step on both paths; host against GPU time per step at batch 64 to 8192),
7 capture (the CUDA-graph probe of item 4: see bench/README.md), 8 bench (fused and generic paths
beside PyTorch eager), 9 agreement (CPU/GPU test accuracy over 5 seeds).

OUTDIR holds at most 8 files, each rewritten as it grows (a run killed keeps what it measured):
summary.md, results.json, env.json, train.txt, pytest.txt, bench.json, bench.md, failures.txt.
Exit status 0 when every stage run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEELS_DIR = os.path.join(REPO, ".gpu-wheels")
# distribution -> module: what the image may lack (xpnet's requirements, the tests', the pytest plugins)
WHEELS = {
    "array-api-compat": "array_api_compat", "threadpoolctl": "threadpoolctl", "tqdm": "tqdm",
    "hypothesis": "hypothesis", "sortedcontainers": "sortedcontainers", "attrs": "attr",
    "exceptiongroup": "exceptiongroup", "typing-extensions": "typing_extensions",
    "array-api-strict": "array_api_strict", "pytest-xdist": "xdist", "execnet": "execnet",
    "pytest-timeout": "pytest_timeout",
}
FILES = ("summary.md", "results.json", "env.json", "train.txt", "pytest.txt", "bench.json", "bench.md", "failures.txt")
SMALL, WIDE = (784, 128, 64, 10), (784, 4096, 4096, 10)
BATCHES = {"cuda": (64, 256, 1024, 8192), "cpu": (64, 256, 1024)}


class Stage:
    """One stage: its name, time cap (seconds), the least budget it needs to start, whether it needs a GPU
    whole (``gpu``), and one line for the table of contents."""

    def __init__(self, name: str, cap: int, need: int, gpu: bool, about: str):
        self.name, self.cap, self.need, self.gpu, self.about = name, cap, need, gpu, about


STAGES = [
    Stage("env", 40, 10, False, "versions, GPU, NVRTC registers/spills"),
    Stage("grads", 60, 15, False, "one step's gradients CPU vs GPU; fused vs generic step"),
    Stage("nosync", 45, 15, False, "no allocation, no read inside warm fused steps; enqueue vs GPU time"),
    Stage("train", 75, 20, False, "xpnet train: CPU, GPU cold kernel cache, GPU warm"),
    Stage("pytest", 110, 40, False, "XPNET_REQUIRE_GPU=1 pytest -m cuda (xdist, timeouts, failures rerun)"),
    Stage("ops", 50, 15, False, "launches per step, both paths; host vs GPU time per step"),
    Stage("capture", 45, 15, True, "CUDA graph of the fused step (issue 21 item 4)"),
    Stage("bench", 100, 30, False, "fused and generic beside PyTorch eager"),
    Stage("agreement", 100, 40, True, "CPU/GPU test accuracy over 5 seeds"),
]


# ------------------------------------------------------------------ files
def _write(path: str, text: str) -> None:
    """Temp file + rename: a reader (or a kill) never sees half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def load(out: str) -> dict:
    try:
        with open(os.path.join(out, "results.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {"stages": {}}


def save(out: str, results: dict) -> None:
    """results.json, and summary.md drawn from it."""
    _write(os.path.join(out, "results.json"), json.dumps(results, indent=1, default=str))
    _write(os.path.join(out, "summary.md"), summary(results))


def append(out: str, name: str, text: str) -> None:
    with open(os.path.join(out, name), "a", encoding="utf-8") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def summary(results: dict) -> str:
    """The results as markdown: a table of the stages, then each stage's lines."""
    head = results.get("run", {})
    lines = [f"# GPU proof: {head.get('device', '?')}, {head.get('started', '?')}", "",
             f"budget {head.get('budget_s', '?')} s, used {head.get('elapsed_s', '?')} s; {head.get('state', '')}", "",
             "| stage | status | s | headline |", "| --- | --- | ---: | --- |"]
    stages = results.get("stages", {})
    for name in [s.name for s in STAGES] + [n for n in stages if n not in {s.name for s in STAGES}]:
        st = stages.get(name)
        if st is None:
            continue
        headline = str(st.get("headline", "")).replace("|", "/")
        lines.append(f"| {name} | {st.get('status', '?')} | {st.get('seconds', '')} | {headline} |")
    for name, st in stages.items():
        body = st.get("lines", [])
        not_run = st.get("not_run", [])
        if not (body or not_run or st.get("note")):
            continue
        lines += ["", f"## {name}", ""]
        if st.get("note"):
            lines.append(f"- note: {st['note']}")
        lines += [f"- {line}" for line in body]
        lines += [f"- NOT RUN: {what}" for what in not_run]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ the parent: stages in order
def wheels() -> int:
    """Fill .gpu-wheels (here, with network): pure-Python wheels for CPython 3.10 to 3.14."""
    for v in ("3.10", "3.11", "3.12", "3.13", "3.14"):
        done = subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                               "--python-version", v, "--platform", "manylinux2014_x86_64", "-d", WHEELS_DIR, *WHEELS])
        if done.returncode != 0:
            return done.returncode
    print("\n".join(sorted(os.listdir(WHEELS_DIR))))
    return 0


def install() -> dict:
    """What does not import, from .gpu-wheels (no index, no dependencies); then the project, editable."""
    missing = [dist for dist, module in WHEELS.items() if importlib.util.find_spec(module) is None]
    if sys.version_info >= (3, 11) and "exceptiongroup" in missing:
        missing.remove("exceptiongroup")  # in the standard library from 3.11 on
    record: dict = {"missing_before": missing}
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-index", "--no-deps"]
    if missing:
        if os.path.isdir(WHEELS_DIR):
            done = subprocess.run([*pip, "--find-links", WHEELS_DIR, *missing], capture_output=True, text=True)
            record["wheels_rc"], record["wheels_log"] = done.returncode, (done.stdout + done.stderr)[-2000:]
        else:
            record["wheels_rc"], record["wheels_log"] = None, f"no {WHEELS_DIR}: carry it (python bench/gpu_proof.py --wheels)"
    done = subprocess.run([*pip, "--no-build-isolation", "-e", REPO], capture_output=True, text=True)
    record["project_rc"], record["project_log"] = done.returncode, (done.stdout + done.stderr)[-2000:]
    record["missing_after"] = [d for d, m in WHEELS.items() if importlib.util.find_spec(m) is None
                               and not (d == "exceptiongroup" and sys.version_info >= (3, 11))]
    return record


def child_env() -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = REPO + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def run_child(cmd: list[str], cap: float, env: dict | None = None, stdout=None) -> tuple[int | None, float]:
    """Run ``cmd``; at ``cap`` seconds SIGINT (a test runner still prints its summary), then kill.
    ``(exit status or None when killed at the cap, seconds)``."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env or child_env(), stdout=stdout, stderr=subprocess.STDOUT if stdout else None,
                            start_new_session=True)
    try:
        rc = proc.wait(timeout=max(cap, 1))
    except (subprocess.TimeoutExpired, KeyboardInterrupt) as exc:  # the cap, or this process stopped at its own
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        if isinstance(exc, KeyboardInterrupt):
            raise
        rc = None
    return rc, round(time.monotonic() - t0, 1)


def parent(args) -> int:
    out = os.path.abspath(args.outdir)
    os.makedirs(out, exist_ok=True)
    for name in FILES:  # a fresh run: no file of an earlier one left to mislead
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(out, name))
    t0 = time.monotonic()
    results = {"run": {"device": args.device, "budget_s": args.budget, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                       "command": " ".join(sys.argv), "state": "running"}, "stages": {}}
    save(out, results)
    if args.install:
        t = time.monotonic()
        rec = install()
        ok = rec["project_rc"] == 0 and not rec["missing_after"]
        status = "ok" if ok else "failed"
        if rec["project_rc"] != 0 and not rec["missing_after"]:
            status = "ok (editable install refused: the stages import the checkout through PYTHONPATH)"
        results["stages"]["install"] = {
            "status": status, "seconds": round(time.monotonic() - t, 1), "data": rec,
            "headline": f"missing before: {', '.join(rec['missing_before']) or 'none'}; after: "
                        f"{', '.join(rec['missing_after']) or 'none'}; pip install -e . exit {rec['project_rc']}"}
        if not ok:
            append(out, "failures.txt", f"== install\n{json.dumps(rec, indent=1)}")
        save(out, results)
    only = set(args.only.split(",")) if args.only else None
    failed = False
    for stage in STAGES:
        if only is not None and stage.name not in only:
            continue
        left = args.budget - (time.monotonic() - t0)
        entry = {"about": stage.about}
        if stage.gpu and args.device == "cpu":
            entry.update(status="not run", headline="GPU stage: not run with --device cpu")
        elif left < stage.need:
            entry.update(status="skipped", headline=f"budget: {left:.0f} s left, the stage needs about {stage.need} s")
        else:
            cap = min(stage.cap, left - 3)
            results["stages"][stage.name] = {**entry, "status": "running", "cap_s": round(cap)}
            save(out, results)
            print(f"== {stage.name} (cap {cap:.0f} s): {stage.about}", flush=True)
            rc, seconds = run_child([sys.executable, os.path.abspath(__file__), out, "--device", args.device,
                                     "--stage", stage.name, "--cap", str(cap)], cap)
            results = load(out)  # what the stage wrote
            entry = results["stages"].get(stage.name, entry)
            entry["seconds"] = seconds
            if rc is None:
                entry["status"] = f"TIMEOUT at {cap:.0f} s (partial)"
            elif rc != 0:
                entry["status"] = f"FAILED (exit {rc})"
            else:
                entry["status"] = "ok"
            if rc != 0:
                failed = True
                append(out, "failures.txt", f"== stage {stage.name}: {entry['status']} (tracebacks above, if any)")
        results["stages"][stage.name] = entry
        results["run"]["elapsed_s"] = round(time.monotonic() - t0, 1)
        save(out, results)
        print(f"   {stage.name}: {entry['status']}: {entry.get('headline', '')}", flush=True)
    results["run"]["elapsed_s"] = round(time.monotonic() - t0, 1)
    results["run"]["state"] = "done, every stage run passed" if not failed else "done, with failures (failures.txt)"
    save(out, results)
    print(summary(results))
    return 1 if failed else 0


# ------------------------------------------------------------------ the child: one stage
class Record:
    """The stage's part of results.json, saved after every measurement (a kill keeps what was measured)."""

    def __init__(self, out: str, name: str, device: str, cap: float):
        self.out, self.name, self.device, self.gpu = out, name, device, device == "cuda"
        self.deadline = time.monotonic() + cap - 5
        self.data: dict = {}
        self.lines: list[str] = []
        self.not_run: list[str] = []
        self.headline = ""
        self.errors = 0

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self) -> None:
        results = load(self.out)
        entry = results.setdefault("stages", {}).setdefault(self.name, {})
        entry.update(data=self.data, lines=self.lines, not_run=self.not_run, headline=self.headline, errors=self.errors)
        save(self.out, results)

    def attempt(self, key: str, fn, *args, **kwargs):
        """``data[key] = fn(...)``; an exception is recorded there (and in failures.txt), not raised."""
        try:
            value = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every outcome is a result
            value = {"error": f"{type(exc).__name__}: {exc}"[:2000]}
            self.errors += 1
            append(self.out, "failures.txt", f"== {self.name}/{key}\n{traceback.format_exc()}")
            self.lines.append(f"{key}: ERROR {value['error'][:300]}")
        self.data[key] = value
        self.save()
        return value

    def skip(self, what: str) -> None:
        self.not_run.append(what)
        self.save()


def _rel(a, b) -> float:
    """``max |a - b| / max |b|`` over host arrays (0 when both are 0)."""
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a - b))) if b.size else 0.0
    return diff / scale if scale else diff


def _mnist(rows: int):
    from xpnet.data import load_mnist

    d = load_mnist()
    return d.X_train[:rows], d.y_train[:rows].astype("int64")


def _events(gpu: bool, stream=None):
    """(record, elapsed ms) for CUDA events on ``stream`` (default: the current one); on the CPU,
    no-ops and None."""
    if not gpu:
        return (lambda: None), (lambda a, b: None)
    import cupy

    def mark():
        e = cupy.cuda.Event()
        e.record(stream)
        return e

    def elapsed(a, b):
        b.synchronize()
        return cupy.cuda.get_elapsed_time(a, b)

    return mark, elapsed


def _sync_all(backend) -> None:
    """Wait for every stream of the device (the fused step runs on a stream of its own)."""
    if backend.is_cupy:
        import cupy

        with backend.activate():
            cupy.cuda.Device().synchronize()


def fused_setup(device: str, layers, batch: int, steps: int, optimizer: str = "sgd", dtype: str = "float32",
                random_on_device: bool = False):
    """A FusedStep over ``batch * steps`` rows (one epoch = ``steps`` steps, no shuffle): ``(fs, model, kernels)``."""
    import numpy as np

    from xpnet.fused import FusedStep
    from xpnet.kernels import kernels_for
    from xpnet.model import MLP
    from xpnet.optim import SGD, Adam

    model = MLP(list(layers), device=device, dtype=dtype, seed=0)
    backend = model.backend
    opt = SGD(0.01) if optimizer == "sgd" else Adam(1e-3)
    opt.attach([model.flat], backend, decay=[model.n_weights])
    kernels = kernels_for(backend, dtype)
    rows = batch * steps
    with backend.activate():
        if random_on_device and backend.is_cupy:
            import cupy

            Xd = cupy.random.default_rng(0).random((rows, layers[0]), dtype=dtype)
            labels = cupy.random.default_rng(1).integers(0, layers[-1], rows).astype(cupy.int64)
        else:
            rng = np.random.default_rng(0)
            Xd = backend.asarray(rng.random((rows, layers[0])).astype(dtype))
            labels = backend.asarray(rng.integers(0, layers[-1], rows).astype(np.int64))
        fs = FusedStep(model, opt, kernels, Xd, labels, None, batch)
    return fs, model, kernels


def time_fused(fs, model, gpu: bool, hook=None) -> dict:
    """One epoch of ``fs.steps`` steps after a warm one: host enqueue and GPU time per step (µs),
    and the kernels' counters across the timed steps; ``hook`` (a CuPy MemoryHook) is entered
    around the timed steps alone (not the epoch's setup)."""
    backend = model.backend
    k = fs.k
    mark, elapsed = _events(gpu, getattr(k, "stream", None))  # the step's own stream (CupyKernels.stream)
    with backend.activate():
        for _warm in range(2):
            fs.start_epoch(None, 0, [0.01] * fs.steps, 0)
            _sync_all(backend)
            before = (k.launches, k.reads, k.allocations)
            with hook if (hook is not None and _warm == 1) else contextlib.nullcontext():
                e0, t0 = mark(), time.perf_counter()
                for i in range(fs.steps):
                    fs.step(i)
                host = time.perf_counter() - t0
            e1 = mark()
            gpu_ms = elapsed(e0, e1)
            _sync_all(backend)
    after = (k.launches, k.reads, k.allocations)
    n = fs.steps
    return {"steps": n, "host_us_per_step": 1e6 * host / n, "gpu_us_per_step": None if gpu_ms is None else 1e3 * gpu_ms / n,
            "launches_per_step": (after[0] - before[0]) / n, "reads": after[1] - before[1],
            "allocations": after[2] - before[2]}


def time_generic(device: str, layers, batch: int, steps: int, gpu: bool) -> dict:
    """The generic step (train_step with reused buffers) on a resident batch: host and GPU µs per step."""
    import numpy as np

    from xpnet.backend import Buffers
    from xpnet.model import MLP
    from xpnet.optim import SGD
    from xpnet.train import train_step

    model = MLP(list(layers), device=device, seed=0)
    backend, opt = model.backend, SGD(0.01)
    rng = np.random.default_rng(0)
    X, y = rng.random((batch, layers[0])).astype("float32"), rng.integers(0, layers[-1], batch)
    mark, elapsed = _events(gpu)
    with backend.activate():
        Xb, Yb, _ = model.device_data(X, y)
        buf = Buffers(backend, enabled=True)
        for _warm in range(2):
            backend.synchronize()
            e0, t0 = mark(), time.perf_counter()
            for _ in range(steps):
                train_step(model, opt, Xb, Yb, buf=buf)
            host = time.perf_counter() - t0
            e1 = mark()
            gpu_ms = elapsed(e0, e1)
            backend.synchronize()
    return {"steps": steps, "host_us_per_step": 1e6 * host / steps,
            "gpu_us_per_step": None if gpu_ms is None else 1e3 * gpu_ms / steps}


def _steps(batch: int, gpu: bool) -> int:
    return (50 if batch <= 1024 else 20) if gpu else (20 if batch <= 256 else 5)


# ------------------------------------------------------------------ stage bodies
def stage_env(r: Record) -> None:
    import numpy as np

    env = {"python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "numpy": np.__version__, "platform": platform.platform()}
    for name in ("xpnet", "cupy", "torch", "array_api_compat", "array_api_strict", "xdist", "pytest_timeout", "nvmath",
                 "cuda.bindings", "hypothesis", "pytest"):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        env[f"has_{name}"] = spec is not None
    r.data["env"] = env
    from xpnet import __version__

    env["xpnet"] = __version__
    r.save()

    def cupy_info():
        import cupy

        info = {"cupy": cupy.__version__, "CUPY_ACCELERATORS": os.environ.get("CUPY_ACCELERATORS"),
                "CUPY_CACHE_DIR": os.environ.get("CUPY_CACHE_DIR")}
        if r.gpu:  # the runtime's calls need the CUDA runtime library, which a CPU machine may lack
            rt = cupy.cuda.runtime
            info.update(cuda_runtime=rt.runtimeGetVersion(), cuda_driver=rt.driverGetVersion())
            props = rt.getDeviceProperties(0)
            name = props["name"]
            info.update(gpu=name.decode() if isinstance(name, bytes) else name, cc=f"{props['major']}.{props['minor']}",
                        sms=props["multiProcessorCount"], memory_gib=round(props["totalGlobalMem"] / 2**30, 1),
                        devices=rt.getDeviceCount())
        return info

    if r.gpu or env["has_cupy"]:
        info = r.attempt("cupy", cupy_info)
        env.update({k: v for k, v in info.items() if k != "error"})
    if env["has_torch"]:
        def torch_info():
            import torch

            return {"torch": torch.__version__, "torch_cuda": torch.version.cuda, "torch_sees_gpu": torch.cuda.is_available()}

        env.update(r.attempt("torch", torch_info))
    else:
        r.skip("PyTorch version: torch not installed here")
    if r.gpu:
        def smi():
            done = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,"
                                   "power.draw,temperature.gpu", "--format=csv,noheader"], capture_output=True, text=True,
                                  timeout=20)
            return (done.stdout + done.stderr).strip()

        env["nvidia_smi"] = r.attempt("nvidia_smi", smi)
    else:
        r.skip("GPU name, driver, nvidia-smi: no GPU with --device cpu")
    _write(os.path.join(r.out, "env.json"), json.dumps(env, indent=1, default=str))

    def nvrtc(dtype, arch):
        from xpnet.kernels import nvrtc_compile

        return nvrtc_compile(dtype, arch)

    arches = ["sm_90"] if env["has_cupy"] else []
    if not arches:
        r.skip("NVRTC registers and spills: CuPy not installed here")
    if r.gpu and isinstance(r.data.get("cupy"), dict) and "cc" in r.data["cupy"]:
        here = "sm_" + r.data["cupy"]["cc"].replace(".", "")
        arches += [here] if here != "sm_90" else []
    for arch in arches:
        for dtype in ("float32", "float64"):
            rep = r.attempt(f"nvrtc_{dtype}_{arch}", nvrtc, dtype, arch)
            if "error" not in rep:
                regs = ", ".join(f"{k} {v['registers']}" for k, v in rep.items())
                spills = sum(v.get("spill_stores", 0) + v.get("spill_loads", 0) for v in rep.values())
                r.lines.append(f"NVRTC {dtype} {arch}: registers {regs}; spill bytes {spills}")
    env["nvrtc"] = {k: v for k, v in r.data.items() if k.startswith("nvrtc_")}
    _write(os.path.join(r.out, "env.json"), json.dumps(env, indent=1, default=str))
    gpu = env.get("gpu", "no GPU")
    r.headline = (f"{gpu}; driver {env.get('cuda_driver')}, runtime {env.get('cuda_runtime')}; CuPy {env.get('cupy')}, "
                  f"NumPy {env['numpy']}, PyTorch {env.get('torch', 'absent')}; {env['cpu_count']} CPUs; Python {env['python']}")
    r.lines.insert(0, r.headline)
    r.save()


def stage_grads(r: Record) -> None:
    import numpy as np

    from xpnet.backend import to_numpy
    from xpnet.kernels import HostKernels
    from xpnet.model import MLP
    from xpnet.optim import SGD, Adam
    from xpnet.train import fit

    X, y = _mnist(256)
    heads = []

    def cpu_vs_gpu(dtype):
        cpu = MLP(list(SMALL), dtype=dtype, seed=0)
        gpu = MLP(list(SMALL), dtype=dtype, seed=0, device="cuda")
        lc, gc = cpu.loss_and_grads(X, y)
        lg, gg = gpu.loss_and_grads(X, y)
        gc, gg = [to_numpy(g) for g in gc], [to_numpy(g) for g in gg]
        per = [_rel(b, a) for a, b in zip(gc, gg)]
        flat_c, flat_g = np.concatenate([g.ravel() for g in gc]), np.concatenate([g.ravel() for g in gg])
        norm = float(np.linalg.norm(flat_g - flat_c) / np.linalg.norm(flat_c))
        return {"loss_cpu": lc, "loss_gpu": lg, "loss_rel": abs(lg - lc) / abs(lc), "max_rel_per_param": max(per),
                "per_param": per, "norm_rel": norm}

    for dtype in ("float64", "float32"):
        if r.gpu:
            v = r.attempt(f"cpu_vs_gpu_{dtype}", cpu_vs_gpu, dtype)
            if "error" not in v:
                r.lines.append(f"loss_and_grads CPU vs GPU {dtype}: max rel (per parameter) {v['max_rel_per_param']:.2e}, "
                               f"norm rel {v['norm_rel']:.2e}, loss rel {v['loss_rel']:.2e}")
                heads.append(f"{dtype} grads {v['max_rel_per_param']:.1e}")
        elif dtype == "float64":
            r.skip("loss_and_grads CPU vs GPU (float64, float32): no GPU")

    def fused_vs_generic(device, dtype, optimizer, batch_size, shuffle):
        flats, start = {}, None
        for path in ("generic", "fused"):
            model = MLP(list(SMALL), dtype=dtype, seed=0, device=device)
            start = to_numpy(model.flat).copy()
            opt = SGD(0.01, momentum=0.9, nesterov=True, weight_decay=5e-4) if optimizer == "nesterov+wd" else (
                Adam(1e-3) if optimizer == "adam" else SGD(0.01))
            chosen = path if (path == "generic" or device == "cuda") else HostKernels(dtype)
            fit(model, X, y, opt, epochs=1, batch_size=batch_size, shuffle=shuffle, verbose=False, path=chosen)
            flats[path] = to_numpy(model.flat).copy()
        dg, df = flats["generic"] - start, flats["fused"] - start
        return {"update_rel": _rel(df, dg), "flat_max_abs": float(np.max(np.abs(flats["fused"] - flats["generic"]))),
                "steps": 1 if batch_size is None else -(-len(X) // batch_size)}

    devices = ["cuda", "cpu"] if r.gpu else ["cpu"]
    for device in devices:
        for dtype in ("float64", "float32"):
            for optimizer, batch_size, shuffle in (("sgd", None, False), ("adam", None, False), ("nesterov+wd", 64, True)):
                key = f"fused_vs_generic_{device}_{dtype}_{optimizer}_{'1step' if batch_size is None else '4steps'}"
                v = r.attempt(key, fused_vs_generic, device, dtype, optimizer, batch_size, shuffle)
                if "error" not in v:
                    r.lines.append(f"fused vs generic, {device} {dtype} {optimizer}, {v['steps']} step(s): "
                                   f"update max rel {v['update_rel']:.2e}, weights max abs {v['flat_max_abs']:.2e}")
                    if optimizer == "sgd" and dtype == "float32":
                        heads.append(f"fused/generic {device} {v['update_rel']:.1e}")
    r.headline = "; ".join(heads) + (f"; {r.errors} error(s)" if r.errors else "")
    r.save()


def stage_nosync(r: Record) -> None:
    batch = 8192 if r.gpu else 1024
    steps = 20 if r.gpu else 5
    device = "cuda" if r.gpu else "cpu"
    heads = []
    for optimizer in ("sgd", "adam"):
        def one(optimizer=optimizer):
            fs, model, k = fused_setup(device, SMALL, batch, steps, optimizer)
            res = {}
            if r.gpu:
                import cupy

                class Count(cupy.cuda.MemoryHook):
                    name = "xpnet_gpu_proof"

                    def __init__(self):
                        self.pool, self.cuda_malloc = 0, 0

                    def malloc_preprocess(self, **kwargs):  # a request to CuPy's pool (every new array)
                        self.pool += 1

                    def alloc_preprocess(self, **kwargs):  # a cudaMalloc
                        self.cuda_malloc += 1

                time_fused(fs, model, r.gpu)  # warm
                hook = Count()
                res = time_fused(fs, model, r.gpu, hook)
                res.update(pool_mallocs=hook.pool, cuda_mallocs=hook.cuda_malloc)
            else:
                res = time_fused(fs, model, r.gpu)
            return res

        v = r.attempt(f"fused_{optimizer}_b{batch}", one)
        if "error" not in v:
            gpu_part = (f", GPU {v['gpu_us_per_step']:.1f} µs/step, pool mallocs {v['pool_mallocs']}, "
                        f"cudaMalloc {v['cuda_mallocs']}") if r.gpu else ""
            host = "host enqueue" if r.gpu else "host time (the step itself, on NumPy)"
            r.lines.append(f"{optimizer} b{batch}: reads {v['reads']}, allocations {v['allocations']}, launches/step "
                           f"{v['launches_per_step']:.0f}, {host} {v['host_us_per_step']:.1f} µs/step{gpu_part}")
            if r.gpu:
                heads.append(f"{optimizer}: {v['pool_mallocs']} mallocs, {v['reads']} reads, enqueue "
                             f"{v['host_us_per_step']:.0f} vs GPU {v['gpu_us_per_step']:.0f} µs/step")
            else:
                heads.append(f"{optimizer}: {v['reads']} reads, {v['allocations']} allocations in {v['steps']} steps")
    if not r.gpu:
        r.skip("cupy.cuda.MemoryHook count and CUDA-event GPU time at batch 8192: no GPU (CPU: batch 1024, counters only)")
    r.headline = "; ".join(heads)
    r.save()


def _train_run(r: Record, label: str, device: str, env: dict, cap: float) -> dict:
    cmd = [sys.executable, "-m", "xpnet", "train", "--device", device, "--json", "--quiet"]
    append(r.out, "train.txt", f"== {label}: {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=max(cap, 1))
    wall = time.perf_counter() - t0
    append(r.out, "train.txt", (done.stdout + done.stderr)[-4000:] + f"\n-- exit {done.returncode}, {wall:.1f} s wall")
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {(done.stdout + done.stderr).strip().splitlines()[-1:]}")
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return {"wall_s": wall, "fit_s": report.get("seconds"), "test_accuracy": report.get("test_accuracy"),
            "samples_per_second": report.get("samples_per_second")}


def stage_train(r: Record) -> None:
    env = child_env()
    heads = []
    runs = [("cpu", "cpu", env)]
    if r.gpu:
        cold = dict(env, CUPY_CACHE_DIR=tempfile.mkdtemp(prefix="cupy-cold-"))
        runs += [("cuda, kernel cache cold", "cuda", cold), ("cuda, kernel cache warm", "cuda", cold)]
    else:
        r.skip("xpnet train --device cuda, kernel cache cold then warm: no GPU")
    for label, device, e in runs:
        v = r.attempt(label, _train_run, r, label, device, e, min(60, r.left()))
        if "error" not in v:
            r.lines.append(f"{label}: {v['wall_s']:.1f} s wall (fit {v['fit_s']:.2f} s), test accuracy "
                           f"{100 * v['test_accuracy']:.2f}%")
            heads.append(f"{label} {v['wall_s']:.1f} s {100 * v['test_accuracy']:.2f}%")
    r.headline = "; ".join(heads)
    r.save()


_PYTEST_TOTALS = re.compile(r"(\d+) (passed|failed|skipped|errors?|xfailed|xpassed|deselected)")


def stage_pytest(r: Record) -> None:
    have_xdist = importlib.util.find_spec("xdist") is not None
    have_timeout = importlib.util.find_spec("pytest_timeout") is not None
    env = child_env()
    base = [sys.executable, "-m", "pytest", "-m", "cuda", "-q", "-p", "no:cacheprovider", "-rfEs"]
    if not r.gpu:  # the dry run: the selection and the plugins, nothing run
        cmd = [*base, "--collect-only"]
        r.skip("XPNET_REQUIRE_GPU=1 pytest -m cuda: no GPU (the dry run collects the selection only)")
    else:
        env["XPNET_REQUIRE_GPU"] = "1"
        cmd = [*base, *(["-n", "8"] if have_xdist else []), *(["--timeout", "60"] if have_timeout else [])]
    r.data["plugins"] = {"xdist": have_xdist, "timeout": have_timeout}
    if not have_xdist:
        r.lines.append("pytest-xdist absent: run serially")
    if not have_timeout:
        r.lines.append("pytest-timeout absent: only the stage's cap bounds a test")
    append(r.out, "pytest.txt", f"== {' '.join(cmd[2:])}")
    with open(os.path.join(r.out, "pytest.txt"), "a", encoding="utf-8") as log:
        rc, seconds = run_child(cmd, max(10, r.left() - (25 if r.gpu else 0)), env, stdout=log)
    text = open(os.path.join(r.out, "pytest.txt"), encoding="utf-8").read()
    tail = text.strip().splitlines()[-1] if text.strip() else ""
    totals = {kind: int(n) for n, kind in _PYTEST_TOTALS.findall(tail)}
    failed_ids = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", text, re.M)))
    r.data["first"] = {"rc": rc, "seconds": seconds, "totals": totals, "last_line": tail, "failed": failed_ids}
    collected = re.search(r"(\d+)(?:/\d+)? tests? (?:collected|selected)", text)
    if not r.gpu:
        r.lines.append(f"collected: {tail}")
        r.headline = f"dry run: {collected.group(0) if collected else tail}; plugins xdist {have_xdist}, timeout {have_timeout}"
        r.save()
        if rc not in (0, 5):
            raise SystemExit(1)
        return
    r.lines.append(f"first run: {tail} (exit {rc}, {seconds} s)")
    r.save()
    if failed_ids and r.left() > 15:
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfEs", "-W", "default",
               *(["--timeout", "60"] if have_timeout else []), *failed_ids[:40]]
        append(r.out, "pytest.txt", f"\n== rerun of the failures, warnings shown: {' '.join(cmd[2:])}")
        with open(os.path.join(r.out, "pytest.txt"), "a", encoding="utf-8") as log:
            rc2, seconds2 = run_child(cmd, r.left(), env, stdout=log)
        text2 = open(os.path.join(r.out, "pytest.txt"), encoding="utf-8").read()[len(text):]
        tail2 = text2.strip().splitlines()[-1] if text2.strip() else ""
        r.data["rerun"] = {"rc": rc2, "seconds": seconds2, "last_line": tail2,
                           "still_failing": sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", text2, re.M)))}
        r.lines.append(f"rerun of {len(failed_ids)} failure(s) with -W default: {tail2} (exit {rc2})")
    r.headline = tail + (f"; rerun: {r.data['rerun']['last_line']}" if "rerun" in r.data else "")
    r.save()
    if rc != 0:
        raise SystemExit(1)


def stage_ops(r: Record) -> None:
    from xpnet.opcount import OPTIMIZERS, ops_per_step

    counts = {}
    for path in ("generic", "fused"):
        for opt in OPTIMIZERS:
            v = r.attempt(f"ops_{path}_{opt}", ops_per_step, SMALL, opt, 512, 64, None, path)
            if "error" not in v:
                counts.setdefault(path, {})[opt] = v["step"]
    for path, per in counts.items():
        r.lines.append(f"launches per step, {path}: " + ", ".join(f"{o} {n}" for o, n in per.items()))
    device = "cuda" if r.gpu else "cpu"
    rows = []
    for batch in BATCHES[device]:
        if r.left() < 5:
            r.skip(f"per-step timing from batch {batch} on: stage cap reached")
            break
        steps = _steps(batch, r.gpu)
        g = r.attempt(f"time_generic_b{batch}", time_generic, device, SMALL, batch, steps, r.gpu)
        f = r.attempt(f"time_fused_b{batch}", lambda b=batch, s=steps: time_fused(*fused_setup(device, SMALL, b, s)[:2], r.gpu))
        if "error" not in g and "error" not in f:
            def us(x):
                return "n/a" if x is None else f"{x:.1f}"

            rows.append(f"b{batch}: generic host {us(g['host_us_per_step'])} / GPU {us(g['gpu_us_per_step'])} µs, "
                        f"fused host {us(f['host_us_per_step'])} / GPU {us(f['gpu_us_per_step'])} µs")
    r.lines += rows
    if not r.gpu:
        r.skip("GPU time per step (CUDA events) and batch 8192: no GPU (CPU: host time only)")
    r.headline = "; ".join(f"{p}: " + "/".join(str(n) for n in per.values()) for p, per in counts.items()) + \
        " launches (sgd/nesterov+wd/adam)"
    r.save()


def stage_capture(r: Record) -> None:
    """Item 4's probe: the fused step on a non-blocking stream, captured whole (expected: CuPy refuses
    cuBLAS), captured without its products (graph replay against eager launches), and with the products
    through cuBLAS called directly (ctypes, and nvmath-python where installed)."""
    import cupy

    from xpnet.backend import get_backend

    backend = get_backend(device="cuda")
    heads = []
    with backend.activate():
        batch, steps = 64, 200
        fs, model, k = fused_setup("cuda", SMALL, batch, steps, random_on_device=True)
        # the step enters its kernel set's own non-blocking stream (CupyKernels.stream); capture there
        stream = getattr(k, "stream", None) or cupy.cuda.Stream(non_blocking=True)
        r.data["stream"] = {"kernel_set_stream": getattr(k, "stream", None) is not None, "ptr": stream.ptr,
                            "null_stream": stream.ptr == 0}
        buf = fs.buffers[batch]
        state = [model.flat, fs.grad, fs.record, fs.pos, buf["X"], buf["L"], *buf["Z"], *buf["dA"]]
        snap = [a.copy() for a in state]
        cupy.cuda.Device().synchronize()

        def restore():
            for a, s in zip(state, snap):
                a[...] = s
            cupy.cuda.Device().synchronize()

        # (a) eager fused steps on the non-blocking stream, against the generic step on the default stream
        def eager_on_stream(n=10):
            from xpnet.backend import Buffers
            from xpnet.model import MLP
            from xpnet.optim import SGD
            from xpnet.train import train_step

            restore()
            start = cupy.asnumpy(model.flat)
            with stream:
                fs.start_epoch(None, 0, [0.01] * steps, 0)
                for i in range(n):
                    fs.step(i)
                stream.synchronize()
            fused = cupy.asnumpy(model.flat)
            Xh, yh = cupy.asnumpy(fs.X[: n * batch]), cupy.asnumpy(fs.labels[: n * batch])
            ref = MLP(list(SMALL), device="cuda", seed=0)
            opt, buf = SGD(0.01), Buffers(ref.backend, enabled=True)
            ref.prepare(Xh, yh)  # the class list, as fit learns it
            Xd, Yd, _ = ref.device_data(Xh, yh)
            for i in range(n):
                train_step(ref, opt, Xd[i * batch:(i + 1) * batch], Yd[i * batch:(i + 1) * batch], buf=buf)
            generic = cupy.asnumpy(ref.flat)
            restore()
            return {"steps": n, "stream_ptr": stream.ptr, "update_max_rel_vs_generic": _rel(fused - start, generic - start)}

        v = r.attempt("a_eager_non_blocking_stream", eager_on_stream)
        if "error" not in v:
            r.lines.append(f"(a) eager fused steps on the non-blocking stream (ptr {v['stream_ptr']:#x}): updates vs the "
                           f"generic step on the default stream, max rel {v['update_max_rel_vs_generic']:.1e} after "
                           f"{v['steps']} steps")

        def capture(step_fn) -> tuple:
            """Capture one step on ``stream``: ``(graph or None, error text or None, end error or None)``."""
            graph, err, end_err = None, None, None
            with stream:
                fs.start_epoch(None, 0, [0.01] * steps, 0)
                stream.synchronize()
                stream.begin_capture()
                try:
                    step_fn(0)
                except Exception as exc:  # noqa: BLE001
                    err = f"{type(exc).__name__}: {exc}"
                try:
                    graph = stream.end_capture()
                except Exception as exc:  # noqa: BLE001
                    end_err = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                stream.synchronize()
            return graph, err, end_err

        # (b) the whole step, as it is
        def whole():
            restore()
            graph, err, end_err = capture(fs.step)
            return {"captured": graph is not None and err is None, "error": err, "end_capture_error": end_err,
                    "stream_capturing_after": stream.is_capturing()}

        whole_step = r.attempt("b_whole_step_capture", whole)
        r.lines.append(f"(b) whole fused step under stream capture: error {whole_step.get('error')!r}; end_capture: "
                       f"{whole_step.get('end_capture_error')!r}")
        heads.append("whole step: " + ("captured" if whole_step.get("captured") else "refused"))

        def timed(label, run_n, n):
            """Host and GPU µs per step of ``run_n()`` (n steps) on ``stream``, after one warm call."""
            out = {}
            for _warm in range(2):
                restore()
                with stream:
                    fs.start_epoch(None, 0, [0.01] * steps, 0)
                    stream.synchronize()
                    e0 = cupy.cuda.Event()
                    e0.record(stream)
                    t0 = time.perf_counter()
                    run_n()
                    host = time.perf_counter() - t0
                    e1 = cupy.cuda.Event()
                    e1.record(stream)
                    e1.synchronize()
                    out = {"host_us_per_step": 1e6 * host / n, "gpu_us_per_step": 1e3 * cupy.cuda.get_elapsed_time(e0, e1) / n,
                           "weights": cupy.asnumpy(model.flat)}
            return out

        def graph_vs_eager(label, patch: dict, n: int = 150):
            """Capture the step with ``k``'s methods in ``patch`` replaced; time ``n`` replays against ``n`` eager steps."""
            saved = {name: getattr(k, name) for name in patch}
            try:
                for name, fn in patch.items():
                    setattr(k, name, fn)
                eager = timed(label, lambda: [fs.step(i) for i in range(n)], n)
                restore()
                graph, err, end_err = capture(fs.step)
                res = {"capture_error": err, "end_capture_error": end_err,
                       "eager": {a: b for a, b in eager.items() if a != "weights"}}
                if graph is None or err is not None:
                    return res
                graph.upload(stream)
                replay = timed(label, lambda: [graph.launch(stream) for _ in range(n)], n)
                res.update(graph={a: b for a, b in replay.items() if a != "weights"},
                           weights_max_rel_graph_vs_eager=_rel(replay["weights"], eager["weights"]), replays=n)
                return res
            finally:
                for name, fn in saved.items():
                    setattr(k, name, fn)

        def noop(*args, **kwargs):
            return None

        def report(tag, v):
            if "error" in v:  # raised outside the capture: attempt() has said so
                return
            if "graph" in v:
                e, g = v["eager"], v["graph"]
                r.lines.append(f"{tag}: {v['replays']} replays; host µs/step eager {e['host_us_per_step']:.1f} vs graph "
                               f"{g['host_us_per_step']:.1f}; GPU µs/step eager {e['gpu_us_per_step']:.1f} vs graph "
                               f"{g['gpu_us_per_step']:.1f}; weights graph vs eager max rel "
                               f"{v['weights_max_rel_graph_vs_eager']:.1e}")
                heads.append(f"{tag.split(' ')[0]} host {e['host_us_per_step']:.0f}->{g['host_us_per_step']:.0f} µs")
            else:
                r.lines.append(f"{tag}: not captured: {v.get('capture_error') or v.get('error')!r}; end_capture "
                               f"{v.get('end_capture_error')!r}")

        # (c) the fused kernels alone (products skipped), with CuPy's column sums, then without them too
        v = r.attempt("c_kernels_and_colsum", graph_vs_eager, "c", {"matmul": noop})
        report("(c) kernels + CuPy column sums, no GEMMs", v)
        v = r.attempt("c_kernels_only", graph_vs_eager, "c2", {"matmul": noop, "colsum": noop})
        report("(c2) fused kernels only", v)
        if whole_step.get("captured"):  # CuPy let cuBLAS into the capture after all: time the whole step too
            v = r.attempt("b_whole_step_graph", graph_vs_eager, "b", {})
            report("(b2) whole step as CuPy runs it", v)

        # (d) cuBLAS called directly (not through CuPy's wrapper) on the capturing stream: the whole step
        gemm = r.attempt("d_ctypes_cublas_setup", _ctypes_gemm, stream, model.dtype)
        if callable(gemm):
            r.data["d_ctypes_cublas_setup"] = "ok"
            ones = cupy.ones((1, batch), dtype=model.dtype)

            def colsum_by_gemm(a, out):
                gemm(ones[:, : a.shape[0]], a, out.reshape(1, -1))

            def check_gemm():
                rng = cupy.random.default_rng(3)
                a, b = rng.random((64, 784), dtype=model.dtype), rng.random((64, 128), dtype=model.dtype)
                out = cupy.empty((784, 128), dtype=model.dtype)
                cupy.cuda.Device().synchronize()  # made on the legacy stream, which `stream` does not wait for
                with stream:
                    gemm(a.T, b, out)
                    stream.synchronize()
                return _rel(cupy.asnumpy(out), cupy.asnumpy(a.T @ b))

            v = r.attempt("d_ctypes_gemm_vs_cupy", check_gemm)
            r.lines.append(f"(d) cuBLAS through ctypes, A^T B against cupy.matmul: max rel {v}")
            v = r.attempt("d_whole_step_ctypes_cublas", graph_vs_eager, "d", {"matmul": gemm})
            report("(d) whole step, GEMMs by ctypes cuBLAS", v)
            if v.get("capture_error") or v.get("end_capture_error"):
                v = r.attempt("d_whole_step_ctypes_cublas_colsum_gemm", graph_vs_eager, "d2",
                              {"matmul": gemm, "colsum": colsum_by_gemm})
                report("(d2) whole step, GEMMs and column sums by ctypes cuBLAS", v)
        else:
            r.lines.append(f"(d) ctypes cuBLAS: {gemm}")

        # (e) nvmath-python's cuBLAS binding, where installed
        if importlib.util.find_spec("nvmath") is None:
            r.data["e_nvmath"] = "nvmath-python not installed on this image"
            r.lines.append("(e) nvmath-python: not installed on this image")
        else:
            v = r.attempt("e_nvmath", _nvmath_probe, stream, model.dtype)
            r.lines.append(f"(e) nvmath-python cuBLAS under capture: {v}")
    r.headline = "; ".join(heads)
    r.save()


def _cublas_path() -> str:
    """The libcublas CuPy loaded (read from /proc/self/maps after a product), else the loader's search."""
    import cupy

    a = cupy.ones((8, 8), dtype=cupy.float32)
    (a @ a).sum().item()
    with open("/proc/self/maps", encoding="utf-8") as f:
        for line in f:
            path = line.split()[-1]
            if re.search(r"/libcublas\.so", path):
                return path
    for name in ("libcublas.so.13", "libcublas.so.12", "libcublas.so"):
        with contextlib.suppress(OSError):
            ctypes_cdll(name)
            return name
    raise RuntimeError("no libcublas in this process")


def ctypes_cdll(name):
    import ctypes

    return ctypes.CDLL(name)


def _ctypes_gemm(stream, dtype: str):
    """``gemm(a, b, out)``: ``out = a @ b`` by cuBLAS through ctypes, on ``stream``, with a handle of its own
    and a fixed workspace (what capture needs); ``a``, ``b`` C- or F-contiguous views (row-major calls
    turned into cuBLAS's column-major)."""
    import ctypes

    import cupy

    lib = ctypes_cdll(_cublas_path())
    handle = ctypes.c_void_p()
    check = _cublas_check
    check(lib.cublasCreate_v2(ctypes.byref(handle)), "cublasCreate_v2")
    check(lib.cublasSetStream_v2(handle, ctypes.c_void_p(stream.ptr)), "cublasSetStream_v2")
    workspace = cupy.empty(32 * 2**20, dtype=cupy.uint8)  # kept alive by the closure
    if hasattr(lib, "cublasSetWorkspace_v2"):
        check(lib.cublasSetWorkspace_v2(handle, ctypes.c_void_p(workspace.data.ptr), ctypes.c_size_t(workspace.nbytes)),
              "cublasSetWorkspace_v2")
    real, fn = (ctypes.c_float, lib.cublasSgemm_v2) if dtype == "float32" else (ctypes.c_double, lib.cublasDgemm_v2)
    alpha, beta = real(1.0), real(0.0)
    N, T = 0, 1  # CUBLAS_OP_N, CUBLAS_OP_T

    def gemm(a, b, out):
        m, kk = a.shape
        n = b.shape[1]
        opb, ldb = (N, n) if b.flags.c_contiguous else (T, kk)  # b^T in column-major terms
        opa, lda = (N, kk) if a.flags.c_contiguous else (T, m)
        status = fn(handle, opb, opa, n, m, kk, ctypes.byref(alpha), ctypes.c_void_p(b.data.ptr), ldb,
                    ctypes.c_void_p(a.data.ptr), lda, ctypes.byref(beta), ctypes.c_void_p(out.data.ptr), n)
        check(status, "gemm")
        _ = workspace

    return gemm


def _cublas_check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"{what}: cuBLAS status {status}")


def _nvmath_probe(stream, dtype: str) -> dict:
    """nvmath-python's cuBLAS binding: one product captured into a graph, replayed, checked."""
    import cupy
    import numpy as np
    from nvmath.bindings import cublas

    h = cublas.create()
    cublas.set_stream(h, stream.ptr)
    rng = cupy.random.default_rng(5)
    a, b = rng.random((256, 128), dtype=dtype), rng.random((128, 64), dtype=dtype)
    out = cupy.zeros((256, 64), dtype=dtype)
    alpha, beta = np.ones(1, dtype=dtype), np.zeros(1, dtype=dtype)
    gemm = cublas.sgemm if dtype == "float32" else cublas.dgemm
    cupy.cuda.Device().synchronize()
    with stream:
        stream.begin_capture()
        err = None
        try:
            gemm(h, 0, 0, 64, 256, 128, alpha.ctypes.data, b.data.ptr, 64, a.data.ptr, 128, beta.ctypes.data,
                 out.data.ptr, 64)
        except Exception as exc:  # noqa: BLE001
            err = f"{type(exc).__name__}: {exc}"
        graph = stream.end_capture()
        if err:
            return {"capture_error": err}
        graph.launch(stream)
        stream.synchronize()
    return {"captured": True, "max_rel_vs_cupy": _rel(cupy.asnumpy(out), cupy.asnumpy(a @ b))}


def stage_bench(r: Record) -> None:
    import xpnet.bench as xpnet_bench
    from xpnet.backend import allow_tf32
    from xpnet.bench import Case, flops_per_sample, gemm_gflops, measure, torch_available, torch_runner, xpnet_runner

    device = "cuda" if r.gpu else "cpu"
    have_torch = torch_available()
    if not have_torch:
        r.skip("PyTorch eager column: torch not installed here")
    plan = [(SMALL, b, False) for b in BATCHES["cuda"]] + [(WIDE, b, False) for b in BATCHES["cuda"]] + [(WIDE, 8192, True)]
    if not r.gpu:
        plan = [(SMALL, b, False) for b in (64, 256)]
        r.skip("the wide net [784,4096,4096,10], batches 1024 and 8192, TF32 and the GEMM rate: no GPU "
               "(CPU: small net, b64/b256)")
    rows: list[dict] = []
    bench_json = os.path.join(r.out, "bench.json")

    def write():
        _write(bench_json, json.dumps({"device": device, "rows": rows, "gemm_gflops": r.data.get("gemm")}, indent=1))
        _write(os.path.join(r.out, "bench.md"), bench_markdown(rows, r.data.get("gemm")))

    if r.gpu:
        def rates():
            return {"float32": gemm_gflops(device, "float32"), "tf32": gemm_gflops(device, "float32", tf32=True)}

        r.attempt("gemm", rates)
    before = allow_tf32(False)
    try:
        for layers, batch, tf32 in plan:
            if r.left() < 8:
                r.skip(f"bench rows from {list(layers)} b{batch}{' tf32' if tf32 else ''} on: stage cap reached")
                break
            allow_tf32(tf32)
            case = Case(tuple(layers), batch, "sgd")
            steps = max(3, min(50, int(2e10 / (flops_per_sample(case.layers) * batch))))

            def fused_runner(case=case, steps=steps):
                if hasattr(xpnet_bench, "fused_runner"):  # the harness's own, where it has one
                    return xpnet_bench.fused_runner(case, device)
                fs, model, _ = fused_setup(device, case.layers, case.batch, steps, random_on_device=True)

                def run():
                    fs.start_epoch(None, 0, [0.01] * steps, 0)
                    for i in range(steps):
                        fs.step(i)
                    _sync_all(model.backend)

                return run, steps * case.batch

            def row(case=case, tf32=tf32):
                res = {"layers": list(case.layers), "batch": case.batch, "optimizer": "sgd", "dtype": "float32",
                       "tf32": tf32, "flops_per_sample": flops_per_sample(case.layers)}
                res["generic"] = measure(xpnet_runner(case, device), 3)
                runner = fused_runner()
                res["fused"] = measure(runner, 3) if runner is not None else None
                res["torch"] = measure(torch_runner(case, device), 3) if have_torch else None
                return res

            v = r.attempt(f"row_{'-'.join(map(str, layers))}_b{batch}{'_tf32' if tf32 else ''}", row)
            if "error" not in v:
                rows.append(v)
                write()
    finally:
        allow_tf32(before)
    write()
    small = [x for x in rows if x["layers"] == list(SMALL)]
    wide = [x for x in rows if x["layers"] == list(WIDE) and not x["tf32"]]

    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "n/a"

    r.headline = ", ".join(f"{'wide' if x['layers'] == list(WIDE) else 'small'} b{x['batch']} fused/torch "
                           f"{ratio(x.get('fused'), x.get('torch'))} fused/generic {ratio(x.get('fused'), x['generic'])}"
                           for x in (small[:1] + small[-1:] + wide[-1:]))
    r.lines.append("table: bench.md")
    r.save()


def bench_markdown(rows: list[dict], gemm) -> str:
    def f(x):
        return "n/a" if x is None else f"{x:,.0f}"

    lines = []
    if isinstance(gemm, dict) and "float32" in gemm:
        lines += [f"GEMM 8192^3: float32 {gemm['float32']:,.0f} GFLOP/s, TF32 {gemm['tf32']:,.0f} GFLOP/s", ""]
    lines += ["| layers | batch | TF32 | generic samples/s | fused samples/s | fused/generic | PyTorch eager | fused/PyTorch "
              "| generic/PyTorch | fused TFLOP/s |", "| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for x in rows:
        t = x.get("torch")
        fu = x.get("fused")
        fused_vs = f"{fu / t:.2f}x" if fu and t else "n/a"
        generic_vs = f"{x['generic'] / t:.2f}x" if t else "n/a"
        fused_generic = f"{fu / x['generic']:.2f}x" if fu else "n/a"
        tflops = f"{fu * x['flops_per_sample'] / 1e12:.2f}" if fu else "n/a"
        lines.append(f"| {','.join(map(str, x['layers']))} | {x['batch']} | {'on' if x['tf32'] else 'off'} | {f(x['generic'])} "
                     f"| {f(fu)} | {fused_generic} | {f(t)} | {fused_vs} | {generic_vs} | {tflops} |")
    return "\n".join(lines) + "\n"


def stage_agreement(r: Record) -> None:
    tmp = os.path.join(tempfile.mkdtemp(prefix="xpnet-agree-"), "agreement.json")
    cmd = [sys.executable, os.path.join(REPO, "bench", "cpu_gpu_agreement.py"), "--seeds", "0", "1", "2", "3", "4", "--json", tmp]
    append(r.out, "train.txt", f"\n== CPU/GPU agreement: {' '.join(cmd[1:])}")
    with open(os.path.join(r.out, "train.txt"), "a", encoding="utf-8") as log:
        rc, seconds = run_child(cmd, r.left(), child_env(), stdout=log)
    r.data["rc"], r.data["seconds"] = rc, seconds
    try:
        with open(tmp, encoding="utf-8") as f:
            rec = json.load(f)
    except (OSError, ValueError):
        r.headline = f"no verdict (exit {rc}, {seconds} s): see train.txt"
        r.save()
        raise SystemExit(1) from None
    r.data["verdict"] = {k: rec[k] for k in ("median_test_accuracy_percent", "gap_points", "allowed_points", "agree")}
    r.data["runs"] = {d: [round(100 * x["test_accuracy"], 2) for x in xs] for d, xs in rec["runs"].items()}
    med = rec["median_test_accuracy_percent"]
    r.headline = (f"medians {', '.join(f'{d} {v:.2f}%' for d, v in med.items())}; gap {rec['gap_points']:.2f} points "
                  f"({'within' if rec['agree'] else 'MORE than'} {rec['allowed_points']})")
    r.lines += [r.headline] + [f"{d}: {v}" for d, v in r.data["runs"].items()]
    r.save()
    if rc != 0:
        raise SystemExit(1)


BODIES = {"env": stage_env, "grads": stage_grads, "nosync": stage_nosync, "train": stage_train, "pytest": stage_pytest,
          "ops": stage_ops, "capture": stage_capture, "bench": stage_bench, "agreement": stage_agreement}


def child(args) -> int:
    r = Record(os.path.abspath(args.outdir), args.stage, args.device, args.cap)

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, interrupted)
    try:
        BODIES[args.stage](r)
    except KeyboardInterrupt:
        r.lines.append("stopped at the stage's time cap: the numbers above are what it measured")
        r.save()
        return 124
    except SystemExit as exc:
        r.save()
        return int(exc.code or 0)
    except Exception:  # noqa: BLE001 - recorded, and the stage fails
        r.errors += 1
        append(r.out, "failures.txt", f"== {args.stage}\n{traceback.format_exc()}")
        r.lines.append(f"stage raised: {traceback.format_exc().strip().splitlines()[-1][:300]}")
        r.save()
        return 1
    r.save()
    return 1 if r.errors else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("outdir", nargs="?", help="where the (at most 8) result files go")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda", help="cpu: the dry run (default: cuda)")
    p.add_argument("--budget", type=float, default=330, help="seconds for all stages (default: 330)")
    p.add_argument("--install", action="store_true", help="first install what is missing from .gpu-wheels, and the project")
    p.add_argument("--wheels", action="store_true", help="fill .gpu-wheels here (needs network), then exit")
    p.add_argument("--only", help="comma-separated stages to run (default: all)")
    p.add_argument("--stage", help=argparse.SUPPRESS)  # one stage, in a child process
    p.add_argument("--cap", type=float, default=60, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.wheels:
        return wheels()
    if not args.outdir:
        p.error("OUTDIR is needed (except with --wheels)")
    if args.only and set(args.only.split(",")) - {s.name for s in STAGES}:
        p.error(f"--only {args.only}: stages are {', '.join(s.name for s in STAGES)}")
    if args.stage:
        return child(args)
    return parent(args)


if __name__ == "__main__":
    sys.exit(main())
