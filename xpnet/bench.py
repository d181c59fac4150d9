"""Throughput benchmarks, side by side in one run: xpnet, the tutorials' plain NumPy
loop, PyTorch eager, and the machine's measured matrix-multiply rate.

Used by ``xpnet bench`` and by the pytest-benchmark suite in ``bench/``. It lives in
the package (not only in ``bench/``) so that ``xpnet bench`` works from an install.

Timing: a warm-up run first (on a GPU it compiles the kernels); every unit of work
ends with the device synchronized; each timed window repeats the unit until it
spans at least ``MIN_WINDOW`` (100 ms), so that a 5 ms unit on a GPU is not timed
alone; data is resident on the device; each figure is the median of ``repeats``
windows.
FLOPs per sample count ``2 n_in n_out`` per layer for the forward pass, the same
for the weight gradient, and the same for the input gradient of every layer but
the first. Roofline share = achieved training FLOP/s / measured GEMM FLOP/s.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

SMALL = (784, 128, 64, 10)
WIDE = (784, 1024, 1024, 10)  # the wide network on the CPU
WIDE_GPU = (784, 4096, 4096, 10)  # and on a GPU, where 1024 wide leaves most of it idle
N_SAMPLES = 60_000  # synthetic MNIST-shaped data
MIN_WINDOW = 0.1  # seconds: the shortest timed window


@dataclass(frozen=True)
class Case:
    """One benchmark configuration."""

    layers: tuple[int, ...]
    batch: int
    optimizer: str  # sgd | adam
    dtype: str = "float32"
    mode: str = "step"  # step: one step on a resident batch; epoch: a shuffled pass over the data
    data: str = "synthetic"  # synthetic (60,000 x 784) | mnist (the bundled digits)

    @property
    def name(self) -> str:
        widths = ",".join(map(str, self.layers))
        return f"[{widths}] b{self.batch} {self.optimizer} {self.dtype} {self.mode} {self.data}"


def flops_per_sample(layers: Sequence[int]) -> int:
    """Training FLOPs per sample: forward, weight gradient, input gradient (not the first layer)."""
    pairs = list(zip(layers[:-1], layers[1:]))
    per_layer = [2 * a * b for a, b in pairs]
    return 2 * sum(per_layer) + sum(per_layer[1:])


def cases(device: str = "cpu", quick: bool = False) -> list[Case]:
    """The suite's cases: both networks (the wide one is 1024 wide on the CPU, 4096 on a
    GPU), four batch sizes, SGD and Adam, float32 (and float64 on the CPU), one step and
    one epoch, plus one epoch on the real digits."""
    if quick:
        out = [Case(SMALL, b, o, mode=m) for b in (64, 256, 1024) for o in ("sgd", "adam") for m in ("step", "epoch")]
        return out + [Case(SMALL, 256, "adam", mode="epoch", data="mnist")]
    on_cpu = device == "cpu"
    dtypes = ("float32", "float64") if on_cpu else ("float32",)
    out = [
        Case(layers, b, o, dt, m)
        for layers in (SMALL, WIDE if on_cpu else WIDE_GPU)
        for b in (64, 256, 1024, 8192)
        for o in ("sgd", "adam")
        for dt in dtypes
        for m in ("step", "epoch")
    ]
    return out + [Case(SMALL, 256, "adam", mode="epoch", data="mnist")]


def synthetic(dtype: str, n: int = N_SAMPLES, n_in: int = 784, n_out: int = 10, seed: int = 0):
    """MNIST-shaped random data: ``X`` ``(n, n_in)`` in [0, 1), labels in ``range(n_out)``."""
    rng = np.random.default_rng(seed)
    return rng.random((n, n_in)).astype(dtype), rng.integers(0, n_out, n)


def dataset(case: Case):
    if case.data == "mnist":
        from .data import load_mnist

        d = load_mnist()
        return d.X_train.astype(case.dtype), d.y_train.astype(np.int64)
    return synthetic(case.dtype, n_in=case.layers[0], n_out=case.layers[-1])


def _steps_for(case: Case) -> int:
    """Steps per step-mode unit of work: about 0.2 s on a 2-core CPU, at least 3 (a timed
    window repeats the unit until it spans :data:`MIN_WINDOW`)."""
    return max(3, min(50, int(2e10 / (flops_per_sample(case.layers) * case.batch))))


# --------------------------------------------------------------------- xpnet
Runner = tuple[Callable[[], None], int]  # (one timed unit of work, ending synchronized; samples it processes)


def calls_per_window(run: Callable[[], None], min_window: float = MIN_WINDOW) -> int:
    """Warm ``run`` up (kernels compiled, caches and memory pools filled), time a second,
    warm call, and return how many calls back to back span ``min_window`` seconds."""
    run()
    t0 = time.perf_counter()
    run()
    return max(1, math.ceil(min_window / max(time.perf_counter() - t0, 1e-9)))


def measure(runner: Runner, repeats: int = 3, min_window: float = MIN_WINDOW) -> float:
    """Samples/s over the median of ``repeats`` timed windows, after a warm-up.

    A window runs the unit of work back to back as often as :func:`calls_per_window`
    says, and on until it spans ``min_window``; the unit ends synchronized, so every
    window does too.
    """
    run, samples = runner
    k = calls_per_window(run, min_window)
    times = []
    for _ in range(repeats):
        calls, t0 = 0, time.perf_counter()
        while calls < k or time.perf_counter() - t0 < min_window:  # k, or more where they ran faster
            run()
            calls += 1
        times.append((time.perf_counter() - t0) / calls)
    return samples / statistics.median(times)


def xpnet_runner(case: Case, device: str = "cpu", reuse_buffers: bool = True) -> Runner:
    """xpnet: ``_steps_for(case)`` steps on a resident batch, or one shuffled epoch
    (:func:`xpnet.train.run_epoch`, the loop body of ``fit``), data on the device."""
    from .backend import Buffers, to_numpy
    from .batches import batch_spans, block_sorted
    from .model import MLP
    from .optim import SGD, Adam
    from .train import run_epoch, train_step

    X, y = dataset(case)
    model = MLP(case.layers, device=device, dtype=case.dtype)
    backend = model.backend
    opt = SGD(0.01) if case.optimizer == "sgd" else Adam(1e-3)
    buf = Buffers(backend, enabled=reuse_buffers)
    if case.mode == "epoch":
        Xd, Yd, labels = model.device_data(X, y)
        spans = batch_spans(len(X), case.batch)
        epochs = iter(range(10**9))

        def epoch() -> None:
            order = block_sorted(backend.random(0, next(epochs)).permutation(len(X)), case.batch)  # as fit draws it
            losses, corrects, _ = run_epoch(model, opt, Xd, Yd, labels, spans, order, buf, onehot=True)
            # what fit reads once per epoch; also the synchronize
            to_numpy(model.xp.stack(losses)), float(model.xp.sum(model.xp.stack(corrects)))

        return epoch, len(X)

    Xb, Yb, _ = model.device_data(X[: case.batch], y[: case.batch])
    steps = _steps_for(case)

    def run() -> None:
        for _ in range(steps):
            train_step(model, opt, Xb, Yb, buf=buf)
        backend.synchronize()

    return run, steps * case.batch


def fused_runner(case: Case, device: str = "cpu") -> Runner | None:
    """xpnet's fused step (:class:`xpnet.fused.FusedStep`): ``_steps_for(case)`` steps over as many
    resident batches, or one shuffled epoch, data on the device; ``None`` where it has no
    kernels (on the CPU: no C compiler; there it runs the C build, one thread)."""
    from .batches import block_sorted
    from .fused import FusedStep
    from .kernels import c_compiler, kernels_for
    from .model import MLP
    from .optim import SGD, Adam

    if device == "cpu" and c_compiler() is None:
        return None
    X, y = dataset(case)
    model = MLP(case.layers, device=device, dtype=case.dtype)
    backend = model.backend
    opt = SGD(0.01) if case.optimizer == "sgd" else Adam(1e-3)
    opt.attach([model.flat], backend, decay=[model.n_weights])
    rows = len(X) if case.mode == "epoch" else min(len(X), _steps_for(case) * case.batch)
    with backend.activate():
        Xd, _, labels = model.device_data(X[:rows], y[:rows])
        step = FusedStep(model, opt, kernels_for(backend, case.dtype), Xd, labels, None, case.batch)
    epochs = iter(range(10**9))

    def run() -> None:
        with backend.activate():
            order = None
            if case.mode == "epoch":  # as fit draws it
                order = block_sorted(backend.random(0, next(epochs)).permutation(rows), case.batch)
            step.start_epoch(order, 0, [opt.current_lr] * step.steps, opt.t)
            for b in range(step.steps):
                step.step(b)
            step.finish_epoch(0, step.steps)  # the epoch's one read, and the synchronize

    return run, rows


# ------------------------------------------------- the tutorials' plain loop
def reference_runner(case: Case) -> Runner:
    """The tutorials' plain vectorized NumPy loop (CPU only).

    Written as the L-layer tutorials write it: samples in columns, ``Z = W A + b``,
    a cache per layer, fresh arrays for every intermediate, mini-batches sliced
    from a column-shuffled copy made each epoch, ReLU hidden, softmax output,
    cross-entropy, SGD or Adam.
    """
    dtype = np.dtype(case.dtype)
    X, y = dataset(case)
    X = np.ascontiguousarray(X.T)  # (n_in, m), as in the tutorials
    Y = np.eye(case.layers[-1], dtype=dtype)[y].T  # (k, m) one-hot
    rng = np.random.default_rng(0)
    sizes = case.layers
    W = [(rng.standard_normal((b, a)) * np.sqrt(2.0 / a)).astype(dtype) for a, b in zip(sizes[:-1], sizes[1:])]
    b = [np.zeros((n, 1), dtype) for n in sizes[1:]]
    adam = case.optimizer == "adam"
    state = {"t": 0, "m": [np.zeros_like(p) for p in W + b], "v": [np.zeros_like(p) for p in W + b]}

    def step(Xb, Yb):
        m = Xb.shape[1]
        caches, A = [], Xb
        for l in range(len(W)):
            Z = W[l] @ A + b[l]
            caches.append((A, Z))
            if l < len(W) - 1:
                A = np.maximum(0, Z)
            else:
                E = np.exp(Z - Z.max(axis=0, keepdims=True))
                A = E / E.sum(axis=0, keepdims=True)
        dZ = A - Yb
        grads = []
        for l in reversed(range(len(W))):
            A_prev, _ = caches[l]
            dW = dZ @ A_prev.T / m
            db = np.sum(dZ, axis=1, keepdims=True) / m
            grads.append((l, dW, db))
            if l > 0:
                dA = W[l].T @ dZ
                dZ = dA * (caches[l - 1][1] > 0)
        if not adam:
            for l, dW, db in grads:
                W[l] = W[l] - 0.01 * dW
                b[l] = b[l] - 0.01 * db
            return
        state["t"] += 1
        t, b1, b2, eps, lr = state["t"], 0.9, 0.999, 1e-8, 1e-3
        for l, dW, db in grads:
            for i, (p, g) in enumerate(((W[l], dW), (b[l], db))):
                k = l + i * len(W)
                state["m"][k] = b1 * state["m"][k] + (1 - b1) * g
                state["v"][k] = b2 * state["v"][k] + (1 - b2) * g**2
                m_hat = state["m"][k] / (1 - b1**t)
                v_hat = state["v"][k] / (1 - b2**t)
                new = p - lr * m_hat / (np.sqrt(v_hat) + eps)
                if i == 0:
                    W[l] = new
                else:
                    b[l] = new

    if case.mode == "epoch":
        n = X.shape[1]

        def epoch() -> None:
            perm = rng.permutation(n)
            Xs, Ys = X[:, perm], Y[:, perm]
            for s in range(0, n, case.batch):
                step(Xs[:, s : s + case.batch], Ys[:, s : s + case.batch])

        return epoch, n

    Xb, Yb = np.ascontiguousarray(X[:, : case.batch]), np.ascontiguousarray(Y[:, : case.batch])
    steps = _steps_for(case)

    def run() -> None:
        for _ in range(steps):
            step(Xb, Yb)

    return run, steps * case.batch


# ---------------------------------------------------------------- PyTorch
def torch_available() -> bool:
    return importlib.util.find_spec("torch") is not None


def torch_runner(case: Case, device: str = "cpu", compile_model: bool = False) -> Runner:
    """PyTorch eager (or with ``torch.compile``) with the same model, optimizer, batch and dtype."""
    import torch

    from .backend import get_backend

    dev = torch.device("cuda" if device.startswith("cuda") else "cpu", int(device.split(":")[1]) if ":" in device else None)
    if dev.type == "cuda":  # the same float32 matmul mode as xpnet's (off unless allow_tf32)
        tf32 = bool(get_backend(device=device).tf32)
        matmul = torch.backends.cuda.matmul
        if hasattr(matmul, "fp32_precision"):  # PyTorch >= 2.9 warns about allow_tf32
            matmul.fp32_precision = "tf32" if tf32 else "ieee"
        else:
            matmul.allow_tf32 = tf32
    dtype = getattr(torch, case.dtype)
    X, y = dataset(case)
    Xt, yt = torch.as_tensor(X, device=dev), torch.as_tensor(y, device=dev)
    mods = []
    for i, (a, b) in enumerate(zip(case.layers[:-1], case.layers[1:])):
        mods.append(torch.nn.Linear(a, b, dtype=dtype, device=dev))
        if i < len(case.layers) - 2:
            mods.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*mods)
    params = list(model.parameters())
    if compile_model:
        model = torch.compile(model)
    opt = torch.optim.SGD(params, lr=0.01) if case.optimizer == "sgd" else torch.optim.Adam(params, lr=1e-3)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step(xb, yb):
        loss = torch.nn.functional.cross_entropy(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if case.mode == "epoch":
        n = len(X)

        def epoch() -> None:
            perm = torch.randperm(n, device=dev)
            for s in range(0, n, case.batch):
                idx = perm[s : s + case.batch]
                step(Xt[idx], yt[idx])
            sync()

        return epoch, n

    xb, yb = Xt[: case.batch].contiguous(), yt[: case.batch].contiguous()
    steps = _steps_for(case)

    def run() -> None:
        for _ in range(steps):
            step(xb, yb)
        sync()

    return run, steps * case.batch


def torch_compile_runner(case: Case, device: str = "cpu") -> Runner | None:
    """PyTorch with ``torch.compile`` (its default mode), the same step as :func:`torch_runner`;
    ``None`` where compiling is not possible here (no compiler, an unsupported platform)."""

    try:
        run, samples = torch_runner(case, device, compile_model=True)
        run()  # compiles now, so that a failure shows here and not inside the timing
    except Exception:  # noqa: BLE001 - any compiler or backend failure means: not available here
        return None
    return run, samples


def gemm_only_runner(case: Case, device: str = "cpu") -> Runner:
    """The step's matrix products alone, same shapes, same library, results into reused
    arrays: forward ``A W`` and weight gradient ``A^T dZ`` for every layer, input gradient
    ``dZ W^T`` for all but the first (8 products for 3 layers). No implementation of this
    step can be faster; at small batches these products run far below the big-GEMM rate,
    so this is the honest limit there."""
    from .backend import get_backend

    backend = get_backend(device=device)
    nx, rng, b = backend.nx, np.random.default_rng(0), case.batch
    pairs = list(zip(case.layers[:-1], case.layers[1:]))

    def arr(*shape):
        return backend.asarray(rng.random(shape).astype(case.dtype))

    A = [arr(b, n_in) for n_in, _ in pairs]
    W = [arr(n_in, n_out) for n_in, n_out in pairs]
    dZ = [arr(b, n_out) for _, n_out in pairs]
    out_Z = [arr(b, n_out) for _, n_out in pairs]
    out_dW = [arr(n_in, n_out) for n_in, n_out in pairs]
    out_dA = [arr(b, n_in) for n_in, _ in pairs]
    steps = _steps_for(case)

    def run() -> None:
        for _ in range(steps):
            for l in range(len(pairs)):
                nx.matmul(A[l], W[l], out=out_Z[l])
                nx.matmul(A[l].T, dZ[l], out=out_dW[l])
                if l > 0:
                    nx.matmul(dZ[l], W[l].T, out=out_dA[l])
        backend.synchronize()

    return run, steps * b


def op_counts(path: str = "generic") -> dict[str, int] | None:
    """Array operations per training step of [784,128,64,10] (what each costs a GPU in launches),
    per optimizer, on the generic path (``None`` without array-api-strict) or the fused one
    (``None`` without a C compiler)."""
    from .kernels import c_compiler

    if importlib.util.find_spec("array_api_strict") is None if path == "generic" else c_compiler() is None:
        return None
    from .opcount import OPTIMIZERS, ops_per_step

    return {name: ops_per_step(SMALL, name, path=path)["step"] for name in OPTIMIZERS}


# ------------------------------------------------------------------ roofline
def gemm_gflops(device: str = "cpu", dtype: str = "float32", n: int | None = None, repeats: int = 5,
                tf32: bool = False) -> float:
    """Measured matrix-multiply rate: median GFLOP/s of an ``n x n x n`` product (``n``:
    2048 on the CPU, 8192 on a GPU). ``tf32=True`` times float32 with TF32 tensor cores
    allowed (CuPy), then restores the process's setting."""
    from .backend import allow_tf32, get_backend

    backend = get_backend(device=device)
    n = n or (2048 if device == "cpu" else 8192)
    rng = np.random.default_rng(0)
    a = backend.asarray(rng.random((n, n)).astype(dtype))
    b = backend.asarray(rng.random((n, n)).astype(dtype))

    def run() -> None:
        a @ b
        backend.synchronize()

    before = allow_tf32(tf32)
    try:
        backend.synchronize()
        return measure((run, 2 * n**3), repeats) / 1e9
    finally:
        allow_tf32(before)


# -------------------------------------------------------------------- table
@dataclass
class Result:
    case: Case
    xpnet: float  # samples/s
    reference: float | None
    torch: float | None
    gemm_gflops: float
    gemm_only: float | None = None  # samples/s of the step's matrix products alone (step mode)
    fused: float | None = None  # samples/s of the fused step (xpnet.fused), where it has kernels

    @property
    def roofline(self) -> float:
        return self.xpnet * flops_per_sample(self.case.layers) / (self.gemm_gflops * 1e9)

    def row(self) -> dict:
        out = {**asdict(self.case), "layers": list(self.case.layers), "xpnet": self.xpnet, "reference": self.reference,
               "torch": self.torch, "gemm_gflops": self.gemm_gflops, "roofline": self.roofline}
        out["vs_torch"] = self.xpnet / self.torch if self.torch else None
        out["vs_reference"] = self.xpnet / self.reference if self.reference else None
        out["of_gemm_only"] = self.xpnet / self.gemm_only if self.gemm_only else None
        out["fused"] = self.fused
        out["fused_vs_torch"] = self.fused / self.torch if self.fused and self.torch else None
        return out


# ------------------------------------------------------------------- threads
@contextlib.contextmanager
def pinned_threads(threads: int | None = None) -> Iterator[int]:
    """Run the block with one CPU thread count for every implementation compared: NumPy's
    BLAS (and any other pool threadpoolctl finds) and PyTorch's intra-op pool
    (``torch.set_num_threads``); both are restored afterwards. ``None`` keeps the BLAS's
    current count and gives PyTorch the same. Yields the count."""
    from threadpoolctl import threadpool_limits

    from .threads import blas_threads

    if threads is None:
        threads = blas_threads() or (os.cpu_count() or 1)
    torch, previous = None, None
    if torch_available():  # imported first, so that the limits below reach its libraries too
        import torch

        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=threads):
            yield threads
    finally:
        if torch is not None:
            torch.set_num_threads(previous)


def run_suite(device: str = "cpu", quick: bool = False, repeats: int | None = None,
              progress: Callable[[Result], None] | None = None, threads: int | None = None) -> list[Result]:
    """Run every case of :func:`cases`, side by side, every implementation with the same CPU
    thread count (``threads``; see :func:`pinned_threads`); returns the results in order."""
    from .backend import allow_tf32

    repeats = repeats or (3 if quick else 5)
    tf32_before = allow_tf32(False)  # float32 means float32 here, for xpnet and PyTorch alike
    try:
        return _run_cases(device, quick, repeats, progress, threads)
    finally:
        allow_tf32(tf32_before)


def _run_cases(device, quick, repeats, progress, threads) -> list[Result]:
    """:func:`run_suite`'s loop."""
    with pinned_threads(threads):
        gemm = {dt: gemm_gflops(device, dt) for dt in ({c.dtype for c in cases(device, quick)})}
        have_torch = torch_available()
        results = []
        for case in cases(device, quick):
            r = Result(
                case,
                xpnet=measure(xpnet_runner(case, device), repeats),
                reference=measure(reference_runner(case), repeats) if device == "cpu" else None,
                torch=measure(torch_runner(case, device), repeats) if have_torch else None,
                gemm_gflops=gemm[case.dtype],
                gemm_only=measure(gemm_only_runner(case, device), repeats) if case.mode == "step" else None,
            )
            # on a GPU only: the CPU's build of the kernels is one thread, for the tests' proof, not for speed
            fused = fused_runner(case, device) if case.data == "synthetic" and device != "cpu" else None
            r.fused = measure(fused, repeats) if fused is not None else None
            results.append(r)
            if progress is not None:
                progress(r)
    return results


def compile_comparison(results: list[Result], device: str = "cpu", repeats: int = 3) -> list[dict]:
    """``torch.compile`` beside xpnet for the quick suite's step cases at batch 64 and 256 (SGD):
    compiling takes about half a minute per case on 2 cores, so not for every case. Empty
    without PyTorch or where compiling fails."""
    if not torch_available():
        return []
    rows = []
    for r in results:
        c = r.case
        if c.layers == SMALL and c.batch in (64, 256) and c.optimizer == "sgd" and c.mode == "step" and c.dtype == "float32":
            runner = torch_compile_runner(c, device)
            if runner is None:
                return []
            compiled = measure(runner, repeats)
            rows.append({"case": c.name, "xpnet": r.xpnet, "torch_compile": compiled, "vs_torch_compile": r.xpnet / compiled})
    return rows


def markdown(results: list[Result]) -> str:
    """The results as a markdown table."""
    def ratio(v):  # "1.23x", or "n/a" where the other side was not run
        return "n/a" if v is None else f"{v:.2f}x"

    def share(v):
        return "n/a" if v is None else f"{100 * v:.0f}%"

    lines = [
        "| layers | batch | optimizer | dtype | mode | data | xpnet samples/s | vs PyTorch | vs plain NumPy | roofline "
        "| of GEMM-only | fused samples/s | fused vs PyTorch |",
        "| --- | ---: | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        row = r.row()
        lines.append(
            f"| {','.join(map(str, r.case.layers))} | {r.case.batch} | {r.case.optimizer} | {r.case.dtype} | {r.case.mode} "
            f"| {r.case.data} | {r.xpnet:,.0f} | {ratio(row['vs_torch'])} | {ratio(row['vs_reference'])} "
            f"| {100 * r.roofline:.0f}% | {share(row['of_gemm_only'])} | {'n/a' if r.fused is None else f'{r.fused:,.0f}'} "
            f"| {ratio(row['fused_vs_torch'])} |"
        )
    return "\n".join(lines)


def environment(device: str = "cpu") -> dict:
    """Date, machine, library versions and BLAS, for the results file."""
    import os
    import platform

    import array_api_compat

    from ._version import __version__

    env = {
        "date": time.strftime("%Y-%m-%d"),
        "device": device,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "xpnet": __version__,
        "numpy": np.__version__,
        "array_api_compat": array_api_compat.__version__,
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            env["cpu"] = names[0]
    except OSError:
        pass
    try:
        from .threads import blas_pools

        blas = blas_pools()
        if blas:
            env["blas"] = f"{blas[0].get('internal_api')} {blas[0].get('version')}, {blas[0].get('num_threads')} threads"
    except ImportError:
        pass
    if torch_available():
        import torch

        env["torch"] = torch.__version__
    if device.startswith("cuda"):
        import cupy

        from .backend import get_backend

        gpu = get_backend(device=device)
        env["cupy"] = cupy.__version__
        runtime = cupy.cuda.runtime
        props = runtime.getDeviceProperties(gpu.device.id)
        env["gpu"] = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        env["cuda"] = f"runtime {runtime.runtimeGetVersion()}, driver {runtime.driverGetVersion()}"
    return env
