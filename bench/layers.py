"""What the layers of issue 22 buy and cost: xpnet beside PyTorch, side by side in one run.

Three parts, each run with the same CPU thread count for both frameworks (``--threads``;
see :func:`xpnet.bench.pinned_threads`):

1. **Accuracy.** On the bundled MNIST (``xpnet.load_mnist()``: 8,000 training and 2,000 test
   digits, pixels in [0, 1]), ``[784,512,512,10]`` ReLU, softmax, cross-entropy, trained with
   one recipe for every row and both frameworks: SGD lr 0.05, momentum 0.9 (PyTorch's form),
   no weight decay, no schedule, batch 64, 30 epochs, float32. Configurations: plain,
   ``dropout=0.2``, ``norm="batch"``, ``norm="layer"``. Per seed (0, 1, 2) the PyTorch model
   (``nn.Linear`` + ``nn.BatchNorm1d``/``nn.LayerNorm`` + ``nn.ReLU`` + ``nn.Dropout(0.2)``, in
   xpnet's order: product, norm, activation, dropout) starts from xpnet's initial weights for
   that seed (He init: N(0, 2/fan_in), zero biases; scales 1, shifts 0, copied), and sees the
   same batches in the same order (xpnet's shuffle keyed (seed, epoch), with each batch's rows
   sorted, as ``fit`` draws it). Dropout masks are each framework's own (xpnet's keyed
   (seed, epoch, step, layer); PyTorch's ``nn.Dropout`` after ``torch.manual_seed(seed)``). Test
   accuracy in eval mode (batch norm's running statistics, no dropout); the median over the
   seeds. Runs are interleaved: seed by seed, configuration by configuration, xpnet then
   PyTorch. The initial eval-mode training loss of both is recorded as a check of the copy.
2. **Cost per step.** Samples/s of one training step on a resident batch (256 and 1024 rows of
   the digits, float32, SGD lr 0.01) for each layer kind: plain, dropout 0.2, batch norm and
   layer norm on ``[784,512,512,10]``, GELU (tanh form) on the same, and a residual network
   ``[784,256,256,256,10]`` (skips on the two 256-to-256 layers) beside the plain network of
   those widths. xpnet runs ``xpnet.train.train_step`` with reused buffers; for dropout each
   step draws its masks on the host (``xpnet.layers.draw_masks``) and uploads them, as ``fit``
   does, so the draw is paid as in training. PyTorch runs eager with the same layers (``nn.Dropout``
   draws its masks in the step). After a warm-up, timed windows of at least ``--window``
   seconds alternate between the two (the first in each round swapped every round) for
   ``--rounds`` rounds; reported: each one's median samples/s and the median of the rounds'
   ratios xpnet / PyTorch (above 1: xpnet faster).
3. **Array operations per step** on the generic path (``xpnet.opcount.ops_per_step``, counted
   on array-api-strict; each one a kernel launch on a GPU), plain SGD, batch 64, per kind.

Run (about 10 minutes on 2 shared cores; ``--quick``: 2 epochs, seed 0, 3 rounds, about 1 minute)::

    python bench/layers.py
    python bench/layers.py --quick
    python bench/layers.py --json out.json --markdown out.md --parts accuracy,steps,ops
    python bench/layers.py --report out.json --markdown out.md   # the report again, from a run's JSON

The machines are shared and noisy: compare only figures from the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np  # loads the BLAS, so that threadpoolctl can see it

import xpnet
from xpnet.backend import Buffers, get_backend, to_numpy
from xpnet.batches import batch_spans, block_sorted
from xpnet.bench import calls_per_window, environment, flops_per_sample, pinned_threads
from xpnet.layers import draw_masks
from xpnet.train import train_step

SIZES = (784, 512, 512, 10)
RESIDUAL_SIZES = (784, 256, 256, 256, 10)
RECIPE = {"lr": 0.05, "momentum": 0.9, "batch_size": 64, "epochs": 30}
CONFIGS = {  # accuracy: name -> MLP settings (the same layers in PyTorch)
    "plain": {},
    "dropout 0.2": {"dropout": 0.2},
    "batch norm": {"norm": "batch"},
    "layer norm": {"norm": "layer"},
}
KINDS = {  # cost per step: name -> (sizes, MLP settings)
    "plain": (SIZES, {}),
    "dropout 0.2": (SIZES, {"dropout": 0.2}),
    "batch norm": (SIZES, {"norm": "batch"}),
    "layer norm": (SIZES, {"norm": "layer"}),
    "gelu": (SIZES, {"activation": "gelu"}),
    "plain 256x3": (RESIDUAL_SIZES, {}),
    "residual 256x3": (RESIDUAL_SIZES, {"residual": True}),
}
PARTS = ("accuracy", "steps", "ops")


# ------------------------------------------------------------------ PyTorch
def torch_model(sizes, activation: str = "relu", dropout: float = 0.0, norm: str | None = None, residual: bool = False,
                given_masks: bool = False):
    """The PyTorch network with xpnet's layers: per hidden layer ``Linear``, then the norm, the
    activation, ``Dropout``, and the skip where the layer keeps its width; a last ``Linear``.
    ``given_masks``: dropout multiplies by the tensor in each dropout module's ``mask`` (set before
    every step; e.g. xpnet's masks) instead of drawing its own."""
    import torch

    nn = torch.nn
    acts = {"relu": nn.ReLU, "gelu": lambda: nn.GELU(approximate="tanh")}  # xpnet's gelu is the tanh form

    class GivenDropout(nn.Module):
        def __init__(self):
            super().__init__()
            self.mask = None  # (m, n) of 0 and 1 / (1 - p)

        def forward(self, x):
            return x * self.mask if self.training else x

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
            blocks = []
            for n in sizes[1:-1]:
                parts = [nn.BatchNorm1d(n)] if norm == "batch" else [nn.LayerNorm(n)] if norm == "layer" else []
                parts.append(acts[activation]())
                if dropout:
                    parts.append(GivenDropout() if given_masks else nn.Dropout(dropout))
                blocks.append(nn.Sequential(*parts))
            self.blocks = nn.ModuleList(blocks)
            self.skips = [bool(residual) and sizes[h] == sizes[h + 1] for h in range(len(blocks))]

        def forward(self, x):
            for linear, block, skip in zip(self.linears, self.blocks, self.skips):
                a = block(linear(x))
                x = x + a if skip else a
            return self.linears[-1](x)

    return Net()


def copy_weights(model: xpnet.MLP, net) -> None:
    """xpnet's parameters into the PyTorch network: ``W`` ``(n_in, n_out)`` is ``weight.T``; the
    norms' scale and shift likewise."""
    import torch

    index = model.layout.index
    with torch.no_grad():
        for l, linear in enumerate(net.linears):
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(to_numpy(model.params[index("W", l)]).T)))
            linear.bias.copy_(torch.from_numpy(to_numpy(model.params[index("b", l)])))
        for l in model.normed:
            norm = net.blocks[l][0]
            norm.weight.copy_(torch.from_numpy(to_numpy(model.params[index("gamma", l)])))
            norm.bias.copy_(torch.from_numpy(to_numpy(model.params[index("beta", l)])))


def torch_loss_accuracy(net, X, y) -> tuple[float, float]:
    """Eval-mode mean cross-entropy and accuracy of ``net`` on tensors ``X``, ``y``."""
    import torch

    net.eval()
    with torch.no_grad():
        logits = net(X)
        return float(torch.nn.functional.cross_entropy(logits, y)), float((logits.argmax(1) == y).float().mean())


# ----------------------------------------------------------------- accuracy
def fit_xpnet(settings: dict, seed: int, data, recipe: dict) -> dict:
    """One xpnet run: ``{"accuracy", "train_loss", "init_loss", "seconds"}``."""
    model = xpnet.MLP(SIZES, seed=seed, **settings)
    init_loss = model.evaluate(data.X_train, data.y_train)["loss"]
    opt = xpnet.SGD(recipe["lr"], momentum=recipe["momentum"])
    t0 = time.perf_counter()
    history = xpnet.fit(model, data.X_train, data.y_train, opt, epochs=recipe["epochs"], batch_size=recipe["batch_size"],
                        seed=seed, verbose=False)
    seconds = time.perf_counter() - t0
    return {"accuracy": model.evaluate(data.X_test, data.y_test)["accuracy"], "train_loss": history.train_loss[-1],
            "init_loss": init_loss, "seconds": seconds}


def fit_torch(settings: dict, seed: int, data, recipe: dict, xpnet_masks: bool = False) -> dict:
    """The same run in PyTorch: xpnet's initial weights for ``seed``, its batches, the same optimizer;
    with ``xpnet_masks`` also the dropout masks ``fit`` draws (keyed (seed, epoch, step) over each batch's rows)."""
    import torch

    torch.manual_seed(seed)  # nn.Dropout's masks
    net = torch_model(SIZES, **settings, given_masks=xpnet_masks)
    model = xpnet.MLP(SIZES, seed=seed, **settings)
    copy_weights(model, net)
    dropouts = [b[-1] for b in net.blocks] if xpnet_masks else []
    X, y = torch.from_numpy(data.X_train), torch.from_numpy(data.y_train.astype(np.int64))
    init_loss, _ = torch_loss_accuracy(net, X, y)
    opt = torch.optim.SGD(net.parameters(), lr=recipe["lr"], momentum=recipe["momentum"])
    host, m, batch = get_backend(device="cpu"), len(X), recipe["batch_size"]
    spans = batch_spans(m, batch)
    t0 = time.perf_counter()
    for epoch in range(recipe["epochs"]):
        net.train()
        host_order = block_sorted(host.random(seed, epoch).permutation(m), batch)  # as fit draws it
        order = torch.from_numpy(host_order)
        total = torch.zeros(())
        for step, (start, stop) in enumerate(spans):
            idx = order[start:stop]
            if dropouts:  # fit's masks for this step: keyed (seed, epoch, step) over the batch's rows
                masks = draw_masks(host, model.blocks, model.sizes, model.dtype, (seed, epoch, step), stop - start)
                for module, mk in zip(dropouts, masks):
                    module.mask = torch.from_numpy(mk)
            loss = torch.nn.functional.cross_entropy(net(X[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach() * (stop - start)
        train_loss = float(total) / m
    seconds = time.perf_counter() - t0
    _, accuracy = torch_loss_accuracy(net, torch.from_numpy(data.X_test), torch.from_numpy(data.y_test.astype(np.int64)))
    return {"accuracy": accuracy, "train_loss": train_loss, "init_loss": init_loss, "seconds": seconds}


def fit_torch_xpnet_masks(settings: dict, seed: int, data, recipe: dict) -> dict:
    """:func:`fit_torch` with xpnet's dropout masks."""
    return fit_torch(settings, seed, data, recipe, xpnet_masks=True)


FRAMEWORKS = {"xpnet": fit_xpnet, "pytorch": fit_torch, "pytorch, xpnet's masks": fit_torch_xpnet_masks}


def accuracy_part(seeds: list[int], recipe: dict, record) -> dict:
    """Every configuration, seed by seed, xpnet then PyTorch (and, with dropout, PyTorch fed xpnet's
    masks: what is left between the two then is rounding); the runs and the medians."""
    data = xpnet.load_mnist()
    runs = []
    for seed in seeds:
        for name, settings in CONFIGS.items():
            for framework, fit in FRAMEWORKS.items():
                if framework == "pytorch, xpnet's masks" and not settings.get("dropout"):
                    continue
                r = {"config": name, "seed": seed, "framework": framework, **fit(settings, seed, data, recipe)}
                runs.append(r)
                print(f"  {name:<12} seed {seed} {framework:<22} test {100 * r['accuracy']:6.2f}%  train loss "
                      f"{r['train_loss']:.5f}  initial loss {r['init_loss']:.6f}  {r['seconds']:6.1f} s", flush=True)
                record({"runs": runs})
    medians = {}
    for name in CONFIGS:
        row = {}
        for framework in FRAMEWORKS:
            mine = [r for r in runs if r["config"] == name and r["framework"] == framework]
            if not mine:
                continue
            row[framework] = statistics.median(r["accuracy"] for r in mine)
            row[f"{framework}_seconds"] = statistics.median(r["seconds"] for r in mine)
            row[f"{framework}_runs"] = [r["accuracy"] for r in mine]
        row["diff_points"] = 100 * (row["xpnet"] - row["pytorch"])
        if "pytorch, xpnet's masks" in row:
            row["diff_points_same_masks"] = 100 * (row["xpnet"] - row["pytorch, xpnet's masks"])
        medians[name] = row
    init_gap = max(abs(a["init_loss"] - b["init_loss"]) for a in runs for b in runs
                   if a["framework"] == "xpnet" and b["framework"] != "xpnet" and a["config"] == b["config"]
                   and a["seed"] == b["seed"])
    return {"recipe": recipe, "seeds": seeds, "runs": runs, "medians": medians, "init_loss_max_gap": init_gap}


# -------------------------------------------------------------- cost per step
def steps_per_unit(sizes, batch: int) -> int:
    """Steps in one unit of work: about 4 GFLOP (0.05-0.1 s here), at least 2."""
    return max(2, round(4e9 / (flops_per_sample(sizes) * batch)))


def xpnet_step_runner(sizes, settings: dict, batch: int, X, y):
    """``(run, samples)``: ``steps_per_unit`` xpnet training steps on a resident batch; with dropout
    the unit first draws the masks of all its rows (in a shuffled order, as ``fit`` per epoch)."""
    model = xpnet.MLP(sizes, seed=0, **settings)
    backend = model.backend
    opt, buf = xpnet.SGD(0.01), Buffers(backend)
    Xb, Yb, _ = model.device_data(X[:batch], y[:batch])
    steps = steps_per_unit(sizes, batch)
    rows = steps * batch
    dropout = any(b.dropout for b in model.blocks)
    units = iter(range(10**9))

    def run() -> None:
        unit = next(units)
        for s in range(steps):  # each step draws its masks on the host, as fit does
            masks = draw_masks(backend, model.blocks, model.sizes, model.dtype, (0, unit, s), batch) if dropout else None
            train_step(model, opt, Xb, Yb, buf=buf, masks=masks)
        backend.synchronize()

    return run, rows


def torch_step_runner(sizes, settings: dict, batch: int, X, y):
    """The same steps in PyTorch eager (``cross_entropy``, ``SGD(lr=0.01)``, train mode)."""
    import torch

    torch.manual_seed(0)
    net = torch_model(sizes, **settings)
    copy_weights(xpnet.MLP(sizes, seed=0, **settings), net)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    xb = torch.from_numpy(np.ascontiguousarray(X[:batch]))
    yb = torch.from_numpy(y[:batch].astype(np.int64))
    steps = steps_per_unit(sizes, batch)

    def run() -> None:
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    return run, steps * batch


def interleaved(runners: dict, rounds: int, window: float) -> dict:
    """Samples/s per timed window of each runner, windows alternating between the runners (the
    order reversed every other round), after each one's warm-up."""
    calls = {name: calls_per_window(run, window) for name, (run, _) in runners.items()}  # warm-up
    rates: dict = {name: [] for name in runners}
    names = list(runners)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            run, samples = runners[name]
            n, t0 = 0, time.perf_counter()
            while n < calls[name] or time.perf_counter() - t0 < window:
                run()
                n += 1
            rates[name].append(samples * n / (time.perf_counter() - t0))
    return rates


def steps_part(batches: list[int], rounds: int, window: float, record) -> list[dict]:
    """Every kind at every batch size: xpnet and PyTorch samples/s, interleaved."""
    data = xpnet.load_mnist()
    X, y = data.X_train, data.y_train
    rows = []
    for batch in batches:
        for name, (sizes, settings) in KINDS.items():
            rates = interleaved({"xpnet": xpnet_step_runner(sizes, settings, batch, X, y),
                                 "pytorch": torch_step_runner(sizes, settings, batch, X, y)}, rounds, window)
            ratios = [a / b for a, b in zip(rates["xpnet"], rates["pytorch"])]
            row = {"kind": name, "layers": list(sizes), "settings": settings, "batch": batch,
                   "xpnet": statistics.median(rates["xpnet"]), "pytorch": statistics.median(rates["pytorch"]),
                   "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
                   "xpnet_windows": rates["xpnet"], "pytorch_windows": rates["pytorch"]}
            rows.append(row)
            print(f"  {name:<15} b{batch:<5} xpnet {row['xpnet']:9,.0f}/s  pytorch {row['pytorch']:9,.0f}/s  "
                  f"xpnet/pytorch {row['ratio']:.2f}x ({row['ratio_min']:.2f}-{row['ratio_max']:.2f})", flush=True)
            record({"steps": rows})
    return rows


# -------------------------------------------------------------- op counts
def ops_part() -> list[dict] | None:
    """Array operations per SGD step on the generic path, per kind; ``None`` without array-api-strict."""
    import importlib.util

    if importlib.util.find_spec("array_api_strict") is None:
        return None
    from xpnet.opcount import ops_per_step

    rows = []
    for name, (sizes, settings) in KINDS.items():
        count = ops_per_step(sizes, "sgd", model_settings=settings)
        rows.append({"kind": name, "layers": list(sizes), "settings": settings, **count})
        print(f"  {name:<15} {count['step']:4d} operations per step ({count['update']} in the update)", flush=True)
    return rows


# ------------------------------------------------------------------ report
def markdown(result: dict) -> str:
    env = result["environment"]
    lines = [f"# bench/layers.py, {env['date']}, cpu", "", f"Command: `{result['command']}`", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()]
    lines += ["", f"Threads for both frameworks: {result['threads']}. The machine is shared: compare figures of this run only.",
              ""]
    acc = result.get("accuracy")
    if acc:
        rc = acc["recipe"]
        lines += ["## Accuracy (bundled MNIST, 8,000 train / 2,000 test)", "",
                  f"`[784,512,512,10]` ReLU, softmax cross-entropy, SGD lr {rc['lr']} momentum {rc['momentum']} "
                  f"(PyTorch's form), batch {rc['batch_size']}, {rc['epochs']} epochs, float32, no weight decay or "
                  f"schedule; the same for every row and both frameworks. PyTorch starts from xpnet's initial weights "
                  f"and sees xpnet's batches in xpnet's order; dropout masks are each framework's own. Median test "
                  f"accuracy over seeds {acc['seeds']} (eval mode).", "",
                  "| configuration | xpnet | PyTorch | xpnet - PyTorch | xpnet per seed | PyTorch per seed "
                  "| xpnet s/run | PyTorch s/run |",
                  "| --- | ---: | ---: | ---: | --- | --- | ---: | ---: |"]
        for name, r in acc["medians"].items():
            per = [" ".join(f"{100 * a:.2f}" for a in r[f"{f}_runs"]) for f in ("xpnet", "pytorch")]
            lines.append(f"| {name} | {100 * r['xpnet']:.2f}% | {100 * r['pytorch']:.2f}% | {r['diff_points']:+.2f} pt "
                         f"| {per[0]} | {per[1]} | {r['xpnet_seconds']:.1f} | {r['pytorch_seconds']:.1f} |")
        for name, r in acc["medians"].items():
            if "pytorch, xpnet's masks" in r:
                shared = r["pytorch, xpnet's masks"]
                per = " ".join(f"{100 * a:.2f}" for a in r["pytorch, xpnet's masks_runs"])
                lines += ["", f"{name} with PyTorch fed xpnet's own masks (the same batches, weights and masks: what "
                              f"is left is rounding, grown over {rc['epochs']} epochs): PyTorch "
                              f"{100 * shared:.2f}% ({per}), xpnet - PyTorch "
                              f"{r['diff_points_same_masks']:+.2f} pt."]
        plain = acc["medians"]["plain"]["xpnet"]
        lines += ["", "Issue 22's targets (xpnet medians):", ""]
        for name in ("dropout 0.2", "batch norm"):
            r = acc["medians"][name]
            lines.append(f"- {name}: {100 * r['xpnet']:.2f}% vs plain {100 * plain:.2f}% "
                         f"({'reaches' if r['xpnet'] >= plain else 'below'} the plain network's); "
                         f"{r['diff_points']:+.2f} pt from PyTorch's "
                         f"({'within' if abs(round(r['diff_points'], 6)) <= 0.3 else 'outside'} 0.3 pt)")
        lines += ["", f"Initial eval-mode training loss, largest xpnet - PyTorch gap over the runs: "
                      f"{acc['init_loss_max_gap']:.2e} (the copied weights)."]
    steps = result.get("steps")
    if steps:
        lines += ["", "## Cost per training step (CPU, float32, SGD lr 0.01, resident batch of digits)", "",
                  "Samples/s: median of the timed windows; xpnet/PyTorch: median of the rounds' ratios (range), "
                  "above 1 xpnet is faster. xpnet's dropout draws its masks on the host inside the timing (as fit "
                  "does once per epoch); PyTorch's nn.Dropout draws them in the step.", "",
                  "| kind | layers | batch | xpnet samples/s | PyTorch samples/s | xpnet/PyTorch | vs xpnet plain |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        base = {(r["batch"], tuple(r["layers"])): r["xpnet"] for r in steps if not r["settings"]}
        for r in steps:
            rel = r["xpnet"] / base[r["batch"], tuple(r["layers"])] if (r["batch"], tuple(r["layers"])) in base else None
            lines.append(f"| {r['kind']} | {','.join(map(str, r['layers']))} | {r['batch']} | {r['xpnet']:,.0f} "
                         f"| {r['pytorch']:,.0f} | {r['ratio']:.2f}x ({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) "
                         f"| {'n/a' if rel is None else f'{rel:.2f}'} |")
    ops = result.get("ops")
    if ops:
        lines += ["", "## Array operations per step (generic path, array-api-strict; each a kernel launch on a GPU)", "",
                  "SGD (no momentum), batch 64, `xpnet.opcount.ops_per_step`.", "",
                  "| kind | layers | per step | in the update |", "| --- | --- | ---: | ---: |"]
        lines += [f"| {r['kind']} | {','.join(map(str, r['layers']))} | {r['step']} | {r['update']} |" for r in ops]
    return "\n".join(lines) + "\n"


def commit() -> str | None:
    """The checkout's commit, with "+changes" where tracked files differ from it; ``None`` outside git."""
    import subprocess

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return head + (" +changes" if dirty else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 epochs, seed 0, batch 256 only, 3 rounds")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2; --quick: 0)")
    parser.add_argument("--epochs", type=int, default=None, help=f"epochs (default {RECIPE['epochs']}; --quick: 2)")
    parser.add_argument("--batches", default=None, help="step batch sizes (default 256,1024; --quick: 256)")
    parser.add_argument("--rounds", type=int, default=None, help="timed windows per framework (default 7; --quick: 3)")
    parser.add_argument("--window", type=float, default=0.25, help="seconds: the shortest timed window")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for both (default: the BLAS's count)")
    parser.add_argument("--json", default=None, help="write the results here (rewritten as they grow)")
    parser.add_argument("--markdown", default=None, help="write the report here")
    parser.add_argument("--report", default=None, metavar="JSON", help="only print (and with --markdown write) the "
                        "report of a run's JSON file")
    args = parser.parse_args(argv)
    if args.report:
        with open(args.report) as f:
            report = markdown(json.load(f))
        print(report)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(report)
        return 0
    parts = [p for p in args.parts.split(",") if p]
    if any(p not in PARTS for p in parts):
        parser.error(f"--parts={args.parts!r}: expected some of {', '.join(PARTS)}")
    seeds = [int(s) for s in (args.seeds or ("0" if args.quick else "0,1,2")).split(",")]
    recipe = {**RECIPE, "epochs": args.epochs or (2 if args.quick else RECIPE["epochs"])}
    batches = [int(b) for b in (args.batches or ("256" if args.quick else "256,1024")).split(",")]
    rounds = args.rounds or (3 if args.quick else 7)
    result: dict = {"command": "python bench/layers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "environment": {**environment("cpu"), "commit": commit()}}

    def record(update: dict) -> None:  # the JSON file grows with the run: a stopped run keeps what it measured
        if args.json:
            with open(args.json, "w") as f:
                json.dump({**result, **update}, f, indent=1)

    with pinned_threads(args.threads) as threads:
        result["threads"] = threads
        if "accuracy" in parts:
            print(f"accuracy: {len(CONFIGS)} configurations x seeds {seeds} x 2 frameworks, {recipe['epochs']} epochs",
                  flush=True)
            result["accuracy"] = accuracy_part(seeds, recipe, lambda u: record({"accuracy": u}))
            record({})
        if "steps" in parts:
            print(f"cost per step: batches {batches}, {rounds} rounds of >= {args.window} s windows", flush=True)
            result["steps"] = steps_part(batches, rounds, args.window, record)
            record({})
        if "ops" in parts:
            print("array operations per step (generic path):", flush=True)
            result["ops"] = ops_part()
            record({})
    report = markdown(result)
    print()
    print(report)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
