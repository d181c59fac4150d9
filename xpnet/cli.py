"""The ``xpnet`` command line: ``main(argv) -> exit code``.

Subcommands: ``train``, ``evaluate``, ``predict``, ``sweep``, ``bench``, ``info``.

Every user error (bad flag value, unusable device, shape mismatch, unreadable
file) is printed as one line on stderr with exit code 2; there are no tracebacks
for things a user can fix. A failed run never overwrites a good ``--save`` file.
Output into a pipe whose reader has gone (``xpnet train | head -1``) ends the
command quietly with exit code 0 (see :func:`main`). The commands that compute run
with a chosen number of BLAS threads (``--threads``; :func:`default_threads`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .activations import HIDDEN, OUTPUTS
from .data import DATASETS, EXACT_INTEGERS
from .io import check_writable
from .losses import LOSSES
from .model import DTYPES, INITS
from .preprocess import SCALE_CHOICES

EXIT_USAGE = 2
EXIT_DIVERGED = 3


class UsageError(ValueError):
    """A bad command-line value; printed as one line, exit code 2."""


@dataclass(frozen=True)
class TrainConfig:
    """Settings of ``train`` and ``sweep``; the fields are the flags (``--batch-size`` is ``batch_size``)."""

    device: str = "cpu"  # cpu | cuda | cuda:N
    dataset: str = "mnist"  # see xpnet.data.DATASETS
    data: str | None = None  # user file (.npz with X, y / .csv); overrides --dataset
    label_column: int | str | list = -1  # for .csv files: an index or a header name; several (or A:B): multi-label
    delimiter: str | None = None  # for .csv files; None: detected
    scale: str | None = None  # auto | none | standard | minmax; None: auto for --data, none for built-in sets
    data_dir: str | None = None  # download cache for mnist-full
    mirror: str | None = None  # base URL for mnist-full
    layers: tuple[int, ...] | None = None  # None: n_features,128,64,n_outputs
    hidden: tuple[int, ...] = (1, 2, 4, 10, 20, 50)  # sweep: one net per hidden width
    activation: str = "relu"
    output: str = "softmax"
    task: str = "auto"  # auto | classification | regression (see _choose_task)
    loss: str | None = None  # None: the one matching --output
    init: str | None = None  # None: he for relu-like, xavier otherwise
    # The defaults reach ~95.5% test accuracy on the bundled digits in ~3 s on 2 cores.
    optimizer: str = "nesterov"  # sgd | momentum | nesterov | adam
    lr: float | None = None  # None: 1e-3 for adam, 0.1 for the SGD family (0.01 with an identity output)
    momentum: float = 0.9  # for momentum and nesterov
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # constant | step | cosine
    batch_size: int | None = 64  # None: full batch
    epochs: int = 30
    val_fraction: float = 0.0  # share of the training set held out for per-epoch validation
    test_fraction: float = 0.2  # held-out share for generated data and --data files
    seed: int = 0
    dtype: str = "float32"
    save: str | None = None
    checkpoint: str | None = None  # written atomically every --checkpoint-every epochs and on SIGINT/SIGTERM
    checkpoint_every: int = 1
    resume: str | None = None  # continue from this checkpoint
    allow_changes: bool = False  # let --resume apply other optimizer settings (recorded in the history)
    init_from: str | None = None  # start from this saved model's weights (fine-tuning)
    early_stopping: int | None = None  # patience in epochs, on validation loss (needs --val-fraction)
    plot: str | None = None  # directory for PNG figures
    json: bool = False
    quiet: bool = False
    report: str = "lines"  # lines | nielsen ("Epoch j: correct / total" on the test set)
    threads: int | None = None  # BLAS threads; None: default_threads() (applied by main, for every command)
    distributed: bool = False  # data-parallel across the ranks mpiexec started (xpnet.distributed; needs xpnet[mpi])


PRESETS = {  # name -> (command, settings); explicit flags override these
    "planar": ("train", dict(
        dataset="planar", layers=(2, 4, 1), activation="tanh", output="sigmoid", init="small",
        optimizer="sgd", lr=1.2, weight_decay=0.0, schedule="constant", batch_size=None, epochs=10000,
    )),
    "deep-mnist": ("train", dict(dataset="mnist", layers=(784, 128, 64, 10), activation="relu", output="softmax")),
    "shallow3": ("train", dict(
        dataset="sphere", layers=(3, 4, 3, 1), activation="tanh", output="sigmoid", init="xavier",
        optimizer="adam", lr=0.02, weight_decay=0.0, schedule="constant", batch_size=32, epochs=100,
    )),
    "moons-sweep": ("sweep", dict(
        dataset="moons", hidden=(1, 2, 4, 10, 20, 50), activation="tanh", output="softmax",
        optimizer="adam", lr=0.01, weight_decay=0.0, schedule="constant", batch_size=64, epochs=200,
    )),
    "nielsen": ("train", dict(
        dataset="mnist", layers=(784, 30, 10), activation="sigmoid", output="sigmoid", loss="mse", init="normal",
        optimizer="sgd", lr=3.0, weight_decay=0.0, schedule="constant", batch_size=10, epochs=30, report="nielsen",
    )),
}


PRESETS_HELP = """presets (xpnet train --preset NAME; moons-sweep is for xpnet sweep):
  planar       2-layer net, 4 tanh units, sigmoid output, full-batch GD lr 1.2, 10,000 iterations
  deep-mnist   [784,128,64,10] ReLU, softmax cross-entropy (the defaults)
  shallow3     [3,4,3,1] tanh hidden, sigmoid output, on the 3-feature sphere set
  moons-sweep  hidden widths 1,2,4,10,20,50 on noisy moons, tanh, 2 softmax outputs
  nielsen      [784,30,10] sigmoid, quadratic cost, N(0,1) init, SGD lr 3.0, batch 10, 30 epochs

"""
EXIT_CODES_HELP = """exit codes: 0 done; 2 usage or input error (or out of memory); 3 training diverged;
  130 / 143 interrupted by SIGINT / SIGTERM (after writing --checkpoint, if given)
"""


THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(comm=None) -> int | None:
    """The BLAS threads a command uses without ``--threads``: ``None`` (the BLAS's own
    choice) when one of :data:`THREAD_VARIABLES` is set; else 1 where at most 2 cores are
    usable, and half the usable cores otherwise. With several data-parallel ranks on this
    node (``comm``, an :class:`xpnet.distributed.Communicator`): each rank's part of the
    node's cores, ``node_cores // local_size``, at least 1.

    Why: OpenBLAS's threads spin while they wait for each other, so a thread more than
    there are free cores costs many times its worth. On a shared 2-core machine
    (``bench/threads.py``: 3 epochs of the default MNIST model) 1 thread was the fastest
    as the machine was and with one more busy process; 2 threads were 1.2x slower on the
    nearly idle machine and 4.7x to 23x slower with other work on it. Half the cores
    (not measured here) leaves a core free for each competing process up to half the
    machine.

    Ranks: 200 steps took 0.24 s on one rank and 7.1 s on 2 ranks and 13.9 s on 3 (on
    2 cores) with OpenBLAS's default threads, each rank spinning threads for every core,
    against 0.23 to 0.28 s with one thread each.
    """
    if any(os.environ.get(name, "").strip() for name in THREAD_VARIABLES):
        return None
    if comm is not None and comm.local_size > 1:
        return max(1, comm.node_cores // comm.local_size)
    cores = usable_cores()
    return 1 if cores <= 2 else cores // 2


THREADS_HELP = ("BLAS threads (default: 1 where at most 2 cores are usable, else half of them: "
                "{default} here{distributed}; left to the "
                "BLAS when OMP_NUM_THREADS, OPENBLAS_NUM_THREADS or MKL_NUM_THREADS is set); more threads than "
                "free cores slow training down many times over on a busy machine")


def blas_threads() -> int | None:
    """The thread count of the BLAS NumPy uses, as it stands now (``None`` if none is found)."""
    from threadpoolctl import threadpool_info

    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return counts[0] if counts else None


# ------------------------------------------------------------ flag parsers
def _int_list(flag: str, minimum: int):
    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(s) for s in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
        if min(values) < 1 or len(values) < minimum:
            need = f"at least {minimum} " if minimum > 1 else ""
            raise argparse.ArgumentTypeError(f"{text!r}: expected {need}integers >= 1, e.g. 784,128,64,10")
        return values

    return parse


def _number(kind, low: float, high: float = float("inf"), low_open: bool = True, high_open: bool = True):
    """A parser for numbers in a range, with a one-line error naming the range."""
    lo_s, hi_s = ("(" if low_open else "["), (")" if high_open else "]")

    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not {'an integer' if kind is int else 'a number'}") from None
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
        if not ok or value != value:
            if high == float("inf"):
                raise argparse.ArgumentTypeError(f"{text!r} must be {'>' if low_open else '>='} {low:g}")
            raise argparse.ArgumentTypeError(f"{text!r} must be in {lo_s}{low:g}, {high:g}{hi_s}")
        return value

    return parse


def _column(text: str) -> int | str:
    """A column index if the text is an integer, else a header name."""
    try:
        return int(text)
    except ValueError:
        return text


def _delimiter(text: str) -> str:
    if text in ("\\t", "tab"):
        return "\t"
    if len(text) != 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not one character (use tab for a tab)")
    return text


def _batch_size(text: str) -> int | None:
    return None if text == "full" else _number(int, 0)(text)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage dump), from rank 0 alone under mpiexec."""

    def error(self, message: str):
        from .distributed import launched_copies

        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n" if launched_copies()[1] == 0 else None)


def _add_threads_flag(p: argparse.ArgumentParser, distributed: bool = False) -> None:
    default = default_threads()
    ranks = "; with --distributed, the cores divided by the ranks on the node" if distributed else ""
    p.add_argument("--threads", type=_number(int, 0), metavar="N",
                   help=THREADS_HELP.format(default="the BLAS's own" if default is None else default, distributed=ranks))


def _add_data_flags(p: argparse.ArgumentParser, from_model: bool = False) -> None:
    """The data flags; ``from_model``: evaluate's, whose defaults come from the model file's record."""
    d = TrainConfig()
    recorded = "the training run's, as the model file records it, else "
    p.add_argument("--dataset", choices=DATASETS,
                   help=f"mnist: the bundled 10,000 digits (8,000 train / 2,000 test); mnist-full: official 60k+10k, "
                        f"downloaded once; planar, moons, circles, xor, sphere: generated "
                        f"(default: {recorded if from_model else ''}{d.dataset})")
    p.add_argument("--data", metavar="FILE",
                   help=".npz with arrays X and y, or .csv (.tsv: tabs) with the label in the last column; - reads a "
                        ".csv from standard input")
    p.add_argument("--label-column", type=_column, metavar="N|NAME", action="append",
                   help="label column of a .csv: an index (negative from the end) or a header name; given several "
                        "times, or as a range FIRST:LAST (both included), the 0/1 columns of a multi-label file "
                        f"(default: {recorded if from_model else ''}-1, the last)")
    p.add_argument("--delimiter", type=_delimiter, metavar="CHAR",
                   help=f"field separator of a .csv (default: {recorded if from_model else ''}detected among , ; tab "
                        "and spaces; ' ' means runs of spaces; with ; a decimal comma is read as a decimal point)")
    p.add_argument("--data-dir", metavar="DIR", help="download cache (default: $XPNET_DATA_DIR, else ~/.cache/xpnet)")
    p.add_argument("--mirror", metavar="URL", help="base URL for mnist-full (default: $XPNET_MIRROR, else the S3 mirror)")
    p.add_argument("--seed", type=_number(int, 0, low_open=False),
                   help=f"(default: {recorded if from_model else ''}{d.seed})")


def _add_train_flags(p: argparse.ArgumentParser, distributed: bool = False) -> None:
    d = TrainConfig()
    p.add_argument("--preset", choices=sorted(PRESETS), help="a tutorial's settings; explicit flags override them")
    p.add_argument("--device", help=f"cpu, cuda or cuda:N (default: {d.device})")
    _add_data_flags(p)
    p.add_argument("--activation", choices=HIDDEN, help=f"hidden activation (default: {d.activation})")
    p.add_argument("--output", choices=OUTPUTS, help=f"output activation (default: {d.output}; identity with --task regression)")
    p.add_argument("--task", choices=TASKS,
                   help="what the labels are: classification (one output per class) or regression (one "
                        "--output identity unit, targets standardized for training and outputs in their own "
                        "units); auto: text and integer labels are classes, other numbers regression targets, and "
                        f"many distinct integers (over {MANY_CLASSES}, under {ROWS_PER_CLASS} rows each) are "
                        "refused as ambiguous (default: auto)")
    p.add_argument("--loss", choices=tuple(LOSSES), help="loss (default: the one matching --output)")
    p.add_argument("--init", choices=tuple(INITS), help="weight init (default: he for relu-like, else xavier)")
    p.add_argument("--optimizer", choices=["sgd", "momentum", "nesterov", "adam"], help=f"(default: {d.optimizer})")
    p.add_argument("--lr", type=_number(float, 0),
                   help="learning rate (default: 1e-3 for adam, 0.1 for the sgd family, 0.01 with --output identity)")
    p.add_argument("--momentum", type=_number(float, 0, 1, low_open=False),
                   help=f"for --optimizer momentum|nesterov (default: {d.momentum})")
    p.add_argument("--weight-decay", type=_number(float, 0, low_open=False), help=f"(default: {d.weight_decay})")
    p.add_argument("--schedule", choices=["constant", "step", "cosine"],
                   help=f"learning rate over epochs (default: {d.schedule})")
    p.add_argument("--batch-size", type=_batch_size, help=f"samples per step, or 'full' (default: {d.batch_size})")
    p.add_argument("--epochs", type=_number(int, 0), help=f"(default: {d.epochs})")
    p.add_argument("--val-fraction", type=_number(float, 0, 1, low_open=False),
                   help=f"share of the training set held out for per-epoch validation (default: {d.val_fraction})")
    p.add_argument("--test-fraction", type=_number(float, 0, 1, low_open=False),
                   help=f"held-out share for generated data and --data; 0 trains on every row, without a test "
                        f"score (default: {d.test_fraction})")
    p.add_argument("--dtype", choices=DTYPES, help=f"(default: {d.dtype})")
    p.add_argument("--scale", choices=SCALE_CHOICES,
                   help="input scaling fitted on the training rows and saved with the model: auto leaves data in "
                        "[-1, 1] as it is and standardizes anything else (default: auto for --data, none for "
                        "built-in data sets)")
    p.add_argument("--plot", metavar="DIR", help="write PNG figures here (needs the plot extra)")
    p.add_argument("--json", action="store_true", help="print one JSON object with the results as the last line")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    _add_threads_flag(p, distributed)


def build_parser() -> argparse.ArgumentParser:
    from ._version import __version__

    parser = _Parser(prog="xpnet", description="Train fully connected networks with hand-written backprop on CPU or GPU.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    # no command: main prints this help (to stdout) and exits 2
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sup = argparse.SUPPRESS  # unset flags stay absent, so presets can fill them

    t = sub.add_parser("train", argument_default=sup, help="train a network and report its test accuracy",
                       description="Train a network; prints progress per epoch and ends with the test accuracy (a regressor's "
                                   "test MAE, RMSE and R²).",
                       epilog=PRESETS_HELP + EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_flags(t, distributed=True)
    t.add_argument("--layers", type=_int_list("--layers", 2),
                   help="comma-separated widths, e.g. 784,128,64,10 (default: n_features,128,64,n_outputs)")
    t.add_argument("--save", metavar="PATH", help="write the trained model here (.npz); an old file is replaced only on success")
    t.add_argument("--checkpoint", metavar="PATH",
                   help="write a checkpoint here every --checkpoint-every epochs and when interrupted (SIGINT/SIGTERM)")
    t.add_argument("--checkpoint-every", type=_number(int, 0), metavar="N", help="epochs between checkpoints (default: 1)")
    t.add_argument("--resume", metavar="PATH", help="continue from this checkpoint (same arguments otherwise)")
    t.add_argument("--allow-changes", action="store_true",
                   help="with --resume: apply a changed --lr, --momentum, --schedule, --weight-decay or number "
                        "of --distributed ranks (refused "
                        "otherwise) and record the change in the history")
    t.add_argument("--init-from", metavar="PATH",
                   help="start from the weights, classes and input scaling of a saved model or checkpoint "
                        "(fine-tuning); the architecture comes from the file")
    t.add_argument("--early-stopping", type=_number(int, 0), metavar="PATIENCE",
                   help="stop when validation loss has not improved for PATIENCE epochs and keep the best weights "
                        "(holds out --val-fraction, 0.1 if unset)")
    t.add_argument("--distributed", action="store_true",
                   help="train one model across the processes started by mpiexec -n N (data-parallel: --batch-size "
                        "is the global batch; rank 0 prints and writes the files); needs the mpi extra")
    t.set_defaults(handler=cmd_train)

    s = sub.add_parser("sweep", argument_default=sup, help="train one net per hidden width and compare them",
                       description="The tutorials' hidden-size experiment: one hidden layer of each width in --hidden.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_flags(s)
    s.add_argument("--hidden", type=_int_list("--hidden", 1), help="widths to try (default: 1,2,4,10,20,50)")
    s.set_defaults(handler=cmd_sweep)

    e = sub.add_parser("evaluate", argument_default=sup, help="loss, accuracy, per-class accuracy, confusion matrix",
                       description="Evaluate a saved model (or checkpoint) on every row of a file (--data), or on a "
                                   "data set's test split (--dataset). --split test|train re-derives the training "
                                   "run's own split from the seed, fraction and data identity in the model file.")
    e.add_argument("--model", required=True, metavar="PATH", help="a file written by train --save or --checkpoint")
    e.add_argument("--device", help="cpu, cuda or cuda:N (default: cpu)")
    _add_data_flags(e, from_model=True)
    e.add_argument("--split", choices=("all", "test", "train"),
                   help="rows to score (default: all rows of --data; the test split of --dataset)")
    e.add_argument("--test-fraction", type=_number(float, 0, 1),
                   help="test share of generated data (default: the model's training run's, else 0.2)")
    e.add_argument("--plot", metavar="DIR", help="write the confusion matrix as PNG here")
    e.add_argument("--json", action="store_true", help="print one JSON object with the results as the last line")
    e.add_argument("--quiet", action="store_true",
                   help="only the result lines: loss and accuracy (or MAE, RMSE and R²), without the header, "
                        "the per-class table and the confusion matrix")
    _add_threads_flag(e)
    e.set_defaults(handler=cmd_evaluate)

    p = sub.add_parser("predict", argument_default=sup, help="predict labels (or probabilities) for a file",
                       description="Predict with a saved model; a .csv may hold one extra label column, which is ignored.")
    p.add_argument("--model", required=True, metavar="PATH", help="a file written by train --save or --checkpoint")
    p.add_argument("--data", required=True, metavar="FILE",
                   help=".npz with array X, or .csv (.tsv: tabs) of features; - reads a .csv from standard input")
    p.add_argument("--label-column", type=_column, metavar="N|NAME", action="append",
                   help="column to drop from a .csv with one extra column: an index or a header name; several, or a "
                        "range FIRST:LAST, for a multi-label model's label columns (default: -1, or the columns the "
                        "model was trained with)")
    p.add_argument("--delimiter", type=_delimiter, metavar="CHAR", help="field separator of a .csv (default: detected)")
    p.add_argument("--out", metavar="FILE", help="write predictions to .csv or .npy (default: print them)")
    p.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: predictions, and with --proba classes and probabilities "
                        "(one column per class)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cpu)")
    _add_threads_flag(p)
    p.set_defaults(handler=cmd_predict)

    bn = sub.add_parser("bench", argument_default=sup, help="throughput side by side with PyTorch and plain NumPy",
                        description="Samples/s of xpnet, the tutorials' plain NumPy loop and PyTorch eager (if installed) "
                                    "on MNIST-sized networks, with ratios and the share of the measured GEMM rate.")
    bn.add_argument("--device", help="cpu, cuda or cuda:N (default: cpu)")
    bn.add_argument("--quick", action="store_true", help="[784,128,64,10] at batch 64, 256, 1024 only, 3 repeats")
    bn.add_argument("--repeats", type=_number(int, 0),
                    help="timed windows (each >= 100 ms) per figure, median taken (default: 5, quick 3)")
    bn.add_argument("--json", metavar="FILE", help="also write the results and the environment to this JSON file")
    bn.add_argument("--markdown", metavar="FILE", help="also write a markdown report (environment and table) to FILE")
    _add_threads_flag(bn)
    bn.set_defaults(handler=cmd_bench)

    i = sub.add_parser("info", help="versions, BLAS, GPUs and usable backends",
                       description="Show library versions, the BLAS in use, visible GPUs and which backends work here.")
    i.set_defaults(handler=cmd_info)
    return parser


# ------------------------------------------------------------------ helpers
def _train_config(args: argparse.Namespace, command: str) -> TrainConfig:
    given = {k: v for k, v in vars(args).items() if k not in ("handler", "command", "preset")}
    settings = {}
    preset = getattr(args, "preset", None)
    if preset is not None:
        preset_command, settings = PRESETS[preset]
        if preset_command != command:
            raise UsageError(f"--preset {preset} is for 'xpnet {preset_command}', not 'xpnet {command}'")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if "label_column" in given:
        given["label_column"] = _label_columns(given["label_column"])
    return TrainConfig(**{k: v for k, v in {**settings, **given}.items() if k in names})


def _label_columns(given: list):
    """--label-column as given once (an index or name) or several times (a list: multi-label)."""
    return given[0] if len(given) == 1 else list(given)


def _make_optimizer(cfg: TrainConfig):
    from .optim import SGD, Adam

    if cfg.optimizer == "adam":
        return Adam(lr=cfg.lr or 1e-3, weight_decay=cfg.weight_decay, schedule=cfg.schedule)
    momentum = cfg.momentum if cfg.optimizer in ("momentum", "nesterov") else 0.0
    # An identity output's squared error has an unbounded gradient, unlike cross-entropy's: at 0.1
    # with momentum 0.9 a regression on standardized targets overshoots and its ReLUs die.
    return SGD(lr=cfg.lr or (0.01 if cfg.output == "identity" else 0.1), momentum=momentum, nesterov=cfg.optimizer == "nesterov",
               weight_decay=cfg.weight_decay, schedule=cfg.schedule)


def _notes(notes: list[str], quiet: bool) -> None:
    """What a reader did without being asked (BOM, header, index column...): one line each on stderr."""
    if not quiet:
        for note in notes:
            print(f"xpnet: note: {note}", file=sys.stderr)


def _read_labelled_file(path: str, label_column, delimiter: str | None = None, quiet: bool = False,
                        identity: dict | None = None, label_names: list | None = None):
    """``(X, y)`` of a user file, with the labels the CLI needs: one per row, or a row of 0/1 per
    row (multi-label). ``identity``, when a dict, gets the file's name, size and SHA-256 (of the
    bytes read: a stream is read once)."""
    import numpy as np

    from .data import load_file

    notes: list[str] = []
    X, y = load_file(path, label_column, delimiter, notes, identity, label_names=label_names)
    _notes(notes, quiet)
    if y is None:
        raise UsageError(f"--data {path!r} has no labels: expected an array 'y' (or a label column in a .csv)")
    if len(y) != len(X) or y.ndim not in (1, 2):
        raise UsageError(f"--data {path!r}: y has shape {y.shape} for {len(X)} rows: expected ({len(X)},), or "
                         f"({len(X)}, k) 0/1 rows for k labels (multi-label)")
    if y.ndim == 2 and not (y.shape[1] >= 2 and y.dtype.kind in "biuf" and np.all((y == 0) | (y == 1))):
        raise UsageError(f"--data {path!r}: y has shape {y.shape}: a 2-D y holds multi-label rows, 0 or 1 in each "
                         "of 2+ columns (one per label)")
    return X, y


def _classes_of(y):
    """The sorted distinct class labels of a label vector, or None for real-valued targets
    (and for multi-label rows, whose labels are their columns)."""
    import numpy as np

    if y.ndim == 2:
        return None
    if y.dtype.kind in "iub":
        return np.unique(y).astype(np.int64)
    if y.dtype.kind in "UO":
        return np.unique(y.astype(str))
    return None


def _load_data(dataset: str, data: str | None, label_column: int | str, seed: int, test_fraction: float,
               data_dir: str | None, mirror: str | None, delimiter: str | None = None, quiet: bool = False):
    """``(Dataset, classes, record)`` from ``--data`` (split by ``test_fraction``) or ``--dataset``.

    ``classes`` are the distinct labels of the whole file (``0..k-1`` for built-in sets;
    ``None`` for real-valued targets); ``record`` identifies the data and its split for the
    model file, so that ``evaluate --split test`` can find the same rows again.
    """
    import numpy as np

    from .data import Dataset, _split, load_dataset

    if data is None:
        d = load_dataset(dataset, seed, test_fraction, data_dir, mirror)
        record = {"source": "dataset", "name": dataset, "seed": seed, "test_fraction": test_fraction}
        return d, np.arange(d.n_classes, dtype=np.int64), record
    from .validate import check_features

    identity: dict = {}
    label_names: list = []
    X, y = _read_labelled_file(data, label_column, delimiter, quiet, identity, label_names)
    if len(X) < 2:
        raise UsageError(f"--data {data!r} has {len(X)} row(s): expected at least 2 (a train and a test sample)")
    check_features(X, X.shape[1] if X.ndim == 2 else 0)  # every row, test rows too, before any work
    classes = _classes_of(y) if y.ndim == 1 else (np.asarray(label_names) if label_names else None)  # labels' names
    name = identity["file"]
    split = _split(X, y, test_fraction, name, 0, seed)
    record = {"source": "file", **identity, "label_column": label_column, "delimiter": delimiter,
              "seed": seed, "test_fraction": test_fraction}
    return Dataset(*split[:4], name, 0 if classes is None else len(classes)), classes, record


TASKS = ("auto", "classification", "regression")
MANY_CLASSES = 20  # --task auto: more distinct integer labels than this, with
ROWS_PER_CLASS = 10  # fewer rows than this per distinct value on average, look like a quantity


def _given(args: argparse.Namespace) -> set[str]:
    """The settings a user chose: flags on the command line and those of a --preset."""
    preset = getattr(args, "preset", None)
    return set(vars(args)) | (set(PRESETS[preset][1]) if preset is not None else set())


def _choose_task(cfg: TrainConfig, data, classes, given: set[str]):
    """Classification or regression, from ``--task``, else ``--output identity``, else the labels.

    Returns ``(cfg, data, classes)``: a regression has no classes (``data.n_classes`` 0) and an
    identity output (set here unless ``--output`` was given otherwise, which is refused).
    Integer labels of which there are many, with few rows each (scikit-learn's diabetes
    targets 25..346), are a quantity as often as classes: ``auto`` asks which.
    """
    import numpy as np

    y = np.concatenate([data.y_train, data.y_test])
    if y.ndim == 2:  # 0/1 rows: one sigmoid unit per label
        if cfg.task == "regression" or (cfg.output != "sigmoid" and "output" in given):
            asked = "--task regression" if cfg.task == "regression" else f"--output {cfg.output}"
            raise UsageError(f"--data {cfg.data!r} has multi-label rows ({y.shape[1]} labels of 0/1 per row): they are "
                             f"classified by one --output sigmoid unit per label, not {asked}")
        return dataclasses.replace(cfg, output="sigmoid"), data._replace(n_classes=y.shape[1]), classes
    text = classes is not None and classes.dtype.kind not in "iuf"
    whole = y.dtype.kind == "f" and bool(np.all(np.isfinite(y))) and bool(np.all(y == np.round(y)))
    task = cfg.task
    if task == "auto":
        if cfg.output == "identity" and not text:
            task = "regression"
        elif classes is None and whole:  # whole numbers too large to be exact labels (beyond +-2**53)
            big = y[np.abs(y) > EXACT_INTEGERS][0]
            raise UsageError(f"--data {cfg.data!r}: the labels are whole numbers, some beyond +-2**53 (such as "
                             f"{big:g}), which float64 cannot hold exactly: write them as text to keep them as "
                             "classes, or pass --task regression to fit them as numbers")
        elif classes is None:
            task = "classification" if "output" in given else "regression"
        elif not text and len(classes) > MANY_CLASSES and len(y) < ROWS_PER_CLASS * len(classes):
            raise UsageError(f"--data {cfg.data!r}: the labels are {len(classes)} distinct integers "
                             f"({classes[0]}..{classes[-1]}) in {len(y)} rows, fewer than {ROWS_PER_CLASS} rows each: "
                             "a quantity or classes? Pass --task regression to predict the number, or --task "
                             f"classification for {len(classes)} classes")
        else:
            task = "classification"
    if task == "classification":
        if text and cfg.output == "identity" and cfg.task == "auto" and not cfg.quiet:
            print(f"xpnet: note: the labels are text, so classes: --output identity fits their one-hot rows by squared "
                  f"error ({len(classes)} outputs, accuracy reported); --output softmax is the usual choice",
                  file=sys.stderr)
        if classes is None:
            asked = "--task classification" if cfg.task == "classification" else f"--output {cfg.output}"
            raise UsageError(f"{asked} needs class labels, but --data {cfg.data!r} has real-valued labels "
                             f"({', '.join(f'{v:g}' for v in y[:3])}, ...): write classes as integers or text, or "
                             "use --task regression")
        return cfg, data, classes
    if text:
        raise UsageError(f"--task regression needs numbers, but the labels of {data.name} are text "
                         f"({', '.join(map(str, classes[:3]))}, ...): use --task classification")
    if cfg.output != "identity":
        if "output" in given:
            raise UsageError(f"--task regression predicts numbers with --output identity, not --output {cfg.output}")
        cfg = dataclasses.replace(cfg, output="identity")
    return cfg, data._replace(n_classes=0), None


def _n_outputs(cfg: TrainConfig, n_classes: int) -> int:
    if cfg.output == "identity" and n_classes == 0:
        return 1
    if n_classes < 2:
        raise UsageError(f"the labels hold {n_classes} class(es): classification needs at least 2; "
                         "for real-valued targets use --output identity")
    return 1 if cfg.output == "sigmoid" and n_classes == 2 else n_classes


def _layers_for(cfg: TrainConfig, data, hidden: tuple[int, ...] = (128, 64)) -> tuple[int, ...]:
    """Layer widths: --layers checked against the data, or defaults from it."""
    n_in = data.X_train.shape[1]
    n_out = data.y_train.shape[1] if data.y_train.ndim == 2 else _n_outputs(cfg, data.n_classes)  # multi-label: k
    if cfg.layers is None:
        return (n_in, *hidden, n_out)
    layers = cfg.layers
    if layers[0] != n_in:
        raise UsageError(f"--layers starts with {layers[0]} but {data.name} has {n_in} features: "
                         f"use --layers {','.join(map(str, (n_in, *layers[1:])))}")
    ok_out = {n_out, data.n_classes} if cfg.output == "sigmoid" else {n_out}
    if layers[-1] not in ok_out:
        raise UsageError(f"--layers ends with {layers[-1]} but {data.name} needs {n_out} output(s) for "
                         f"--output {cfg.output}: use --layers {','.join(map(str, (*layers[:-1], n_out)))}")
    return layers


def _plot_dir(path: str | None) -> Path | None:
    """Check matplotlib and make the --plot directory before any work is done."""
    if path is None:
        return None
    from .plot import _pyplot

    _pyplot()  # ValueError with the install hint when matplotlib is missing
    import tempfile

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"--plot {path!r} is a file: expected a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".xpnet-probe.", dir=p)  # permissions, read-only mounts, quotas
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"--plot {path!r} is not a writable directory ({exc.strerror or exc})") from None
    return p


# Every figure a command may write into --plot DIR, by command.
PLOT_FILES = {
    "train": ("history.png", "decision_boundary.png", "confusion.png", "misclassified.png"),
    "sweep": ("sweep_boundaries.png", "sweep_accuracy.png"),
    "evaluate": ("confusion.png",),
}


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file, however spelled: symlinks resolved, and inode and
    device compared where both exist (hard links, bind mounts)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _check_paths(inputs, outputs, allowed=()) -> None:
    """Refuse, before any work, an output that is the same file as an input or as another output.

    ``inputs`` and ``outputs`` are ``(flag, path or None)`` pairs; ``allowed`` lists
    (output flag, input flag) pairs that may coincide: ``--checkpoint`` continuing the
    ``--resume`` file it was read from.
    """
    outs = [(flag, path) for flag, path in outputs if path]
    ins = [(flag, path) for flag, path in inputs if path]
    for i, (flag, path) in enumerate(outs):
        for other, other_path in ins:
            if (flag, other) not in allowed and _same_file(path, other_path):
                raise UsageError(f"{flag} {path!r} is the same file as {other} {other_path!r}: writing it would "
                                 "destroy the input; choose another output path")
        for other, other_path in outs[i + 1:]:
            if _same_file(path, other_path):
                raise UsageError(f"{flag} {path!r} is the same file as {other} {other_path!r}: "
                                 "expected a different path for each output")


def _plot_outputs(command: str, plot: str | None) -> list[tuple[str, str]]:
    """The --plot files of ``command`` as outputs for :func:`_check_paths`."""
    return [("--plot", str(Path(plot) / name)) for name in PLOT_FILES[command]] if plot else []


@contextlib.contextmanager
def _as_flags(*names):
    """Say the flag where a library message names its argument: ``names`` are
    ``(argument, flag, value)``, and ``path='m.npz'`` becomes ``--model 'm.npz'``."""
    try:
        yield
    except ValueError as exc:
        text = str(exc)
        for argument, flag, value in names:
            if value is not None:
                text = text.replace(f"{argument}={str(value)!r}", f"{flag} {str(value)!r}")
        if text == str(exc):
            raise
        raise UsageError(text) from exc


def _check_npz(flag: str, path: str | None, what: str) -> None:
    """Refuse a file that is no .npz archive at all (a CSV given as --model) in words a user
    knows; the loader, which would call it pickled data, is not asked. Missing files are left
    to the loader's own message."""
    if path is None:
        return
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return
    if head.startswith(b"PK"):  # a zip archive, as every .npz is
        return
    if not head:
        kind = "it is empty"
    elif _looks_like_text(head):
        data_like = Path(path).suffix.lower() in (".csv", ".tsv", ".txt")
        kind = "it is a text file" + (" (data goes in --data)" if data_like else "")
    else:
        kind = "it is not a .npz (zip) archive"
    raise UsageError(f"{flag} {path!r} is not {what} (.npz): {kind}")


def _looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of a file read as UTF-8 text (no NUL; a cut last character is fine)."""
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return len(head) == 512 and exc.start >= len(head) - 3
    return True


def _report_figures(paths, plot_dir: Path, json_out: bool) -> None:
    """One line naming the figures written: on stdout, or stderr with --json (stdout's last
    line stays the JSON object)."""
    names = ", ".join(Path(p).name for p in paths)
    count = f"{len(paths)} figure{'s' if len(paths) != 1 else ''}"
    print(f"wrote {count} to {plot_dir}: {names}" if paths else f"wrote no figures to {plot_dir}: nothing to draw",
          file=sys.stderr if json_out else sys.stdout)


def _val_fraction(cfg: TrainConfig) -> float:
    """The share of the training rows held out for validation (0.1 for --early-stopping when unset)."""
    return cfg.val_fraction or (0.1 if cfg.early_stopping else 0.0)


def _split_validation(X, y, fraction: float, seed: int):
    """Hold out ``fraction`` of (X, y) for validation, by a seeded shuffle on the host
    (keyed ``[seed, 1]``: a different shuffle from the train/test split's)."""
    from .data import _split

    if fraction == 0:
        return X, y, None
    d = _split(X, y, fraction, "validation", 0, [seed, 1])
    return d.X_train, d.y_train, (d.X_test, d.y_test)


def _progress(cfg: TrainConfig, n_test: int):
    """The progress display for this run: bars on a terminal, lines otherwise, nothing when quiet."""
    from .train import Callback, format_epoch

    if cfg.quiet or cfg.json:
        return None

    class Lines(Callback):
        """One line per epoch; for long runs (>100 epochs) every epochs/20-th and the last."""

        def on_epoch_end(self, model, history):
            e, epochs = history.epoch[-1], self.epochs
            if cfg.report == "nielsen":  # network.py's "Epoch j: correct / total", 0-based
                print(f"Epoch {e - 1}: {round(history.val_accuracy[-1] * n_test)} / {n_test}", flush=True)
            elif epochs <= 100 or e % max(1, epochs // 20) == 0 or e == epochs:
                print(format_epoch(history, epochs), flush=True)
            return False

        def on_epoch_begin(self, epoch, epochs, n_batches):
            self.epochs = epochs

    class Bars(Callback):
        """tqdm: one bar of batches per epoch, or one bar of epochs for long full-batch runs."""

        def __init__(self):
            self.bar = None

        def on_epoch_begin(self, epoch, epochs, n_batches):
            from tqdm import tqdm

            self.per_epoch = epochs <= 100
            if self.per_epoch:
                self.bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", unit="batch", leave=True)
            elif self.bar is None:
                self.bar = tqdm(total=epochs, desc="training", unit="epoch")

        def on_batch_end(self, batch):
            if self.per_epoch:
                self.bar.update()

        def on_epoch_end(self, model, history):
            last = history.last()
            post = {"loss": f"{last['train_loss']:.4f}"}
            if "train_accuracy" in last:
                post["train_acc"] = f"{100 * last['train_accuracy']:.2f}%"
            if "val_accuracy" in last:
                post["val_acc"] = f"{100 * last['val_accuracy']:.2f}%"
            post["samples/s"] = f"{last['samples_per_second']:,.0f}"
            self.bar.set_postfix(post, refresh=False)
            if self.per_epoch:
                self.bar.close()
            else:
                self.bar.update()
            return False

        def on_train_end(self, model, history):
            if self.bar is not None and not self.per_epoch:
                self.bar.close()

    if cfg.report == "nielsen" or not sys.stdout.isatty():
        return Lines()
    return Bars()


def _train_one(cfg: TrainConfig, data, layers, classes=None, record: dict | None = None, quiet: bool = False,
               start=None, comm=None):
    """Build (or take ``start``, a loaded model to fine-tune) and fit one model, across the ranks
    of ``comm`` if given; returns (model, history, seconds). ``classes`` and ``record`` go into
    the model file."""
    from .model import MLP
    from .preprocess import fit_scaler
    from .train import EarlyStopping, fit

    val_fraction = _val_fraction(cfg)
    X, y, val = _split_validation(data.X_train, data.y_train, val_fraction, cfg.seed)
    if start is not None:
        model = start
    else:
        kind = cfg.scale or ("auto" if cfg.data else "none")
        scaler = fit_scaler(X, kind)  # on the rows trained on, not the validation or test rows
        if scaler is not None and kind == "auto" and not (quiet or cfg.quiet):
            print(f"xpnet: note: features span [{float(X.min()):g}, {float(X.max()):g}]: {scaler.describe()} "
                  "on the training rows (--scale auto; --scale none keeps them as they are)", file=sys.stderr)
        regression = cfg.output == "identity" and classes is None
        model = MLP(layers, activation=cfg.activation, output=cfg.output, loss=cfg.loss, init=cfg.init,
                    device=cfg.device, dtype=cfg.dtype, seed=cfg.seed,
                    classes=classes if cfg.output != "identity" or len(layers) and layers[-1] > 1 else None,
                    scale=scaler, target_scale="standard" if regression else None,
                    multilabel=True if data.y_train.ndim == 2 else None)
    model.data_info = None if record is None else {**record, "val_fraction": val_fraction}
    if cfg.report == "nielsen":
        val = (data.X_test, data.y_test)  # network.py reports on the test data every epoch
    callbacks = [EarlyStopping(cfg.early_stopping)] if cfg.early_stopping else []
    progress = None if quiet else _progress(cfg, len(data.X_test))
    if progress:
        callbacks.append(progress)
    t0 = time.perf_counter()
    with _as_flags(("resume", "--resume", cfg.resume), ("path", "--resume", cfg.resume),
                   ("checkpoint", "--checkpoint", cfg.checkpoint), ("path", "--checkpoint", cfg.checkpoint)):
        history = fit(model, X, y, _make_optimizer(cfg), epochs=cfg.epochs, batch_size=cfg.batch_size,
                      validation_data=val, seed=cfg.seed, verbose=False, callbacks=callbacks,
                      checkpoint=cfg.checkpoint, checkpoint_every=cfg.checkpoint_every, resume=cfg.resume,
                      allow_changes=cfg.allow_changes, comm=comm,
                      config={"flags": {k: v for k, v in dataclasses.asdict(cfg).items()
                                        if k not in ("resume", "allow_changes", "threads")}})
    return model, history, time.perf_counter() - t0


def _class_report(model, X, y):
    """Host-side (predicted output indices, confusion matrix, per-class accuracy, class names)."""
    import numpy as np

    from .backend import to_numpy
    from .metrics import confusion_matrix, per_class_accuracy

    pred = to_numpy(model.predict_indices(X))
    truth = to_numpy(model.encode_labels(y)) if y.ndim == 1 else y.argmax(axis=1)
    k = model.n_label_values
    names = [str(c) for c in model.classes] if model.classes is not None else [str(j) for j in range(k)]
    cm = confusion_matrix(truth.astype(np.int64), pred.astype(np.int64), k)
    return pred, cm, per_class_accuracy(cm), names


def _fine_tune_start(cfg: TrainConfig, explicit: set[str], data):
    """The model named by --init-from, checked against the data and the flags given."""
    from .model import load

    # With --resume too (the command an interrupted fine-tune prints), this model gives the
    # architecture, classes and input scaling, and the checkpoint then gives the weights.
    _check_npz("--init-from", cfg.init_from, "an xpnet model file or checkpoint")
    with _as_flags(("path", "--init-from", cfg.init_from)):
        model = load(cfg.init_from, device=cfg.device)
    where = f"--init-from {cfg.init_from!r}"
    if data.X_train.shape[1] != model.sizes[0]:
        raise UsageError(f"{where} takes {model.sizes[0]} features but {data.name} has {data.X_train.shape[1]}")
    if cfg.layers is not None and list(cfg.layers) != model.sizes:
        raise UsageError(f"--layers {','.join(map(str, cfg.layers))} differs from the layers "
                         f"{','.join(map(str, model.sizes))} of {where}: the architecture comes from the file")
    for flag in ("activation", "output", "loss", "init", "dtype"):
        if flag in explicit and getattr(cfg, flag) != getattr(model, flag):
            raise UsageError(f"--{flag} {getattr(cfg, flag)} differs from the {flag} {getattr(model, flag)} of "
                             f"{where}: the architecture comes from the file")
    if "scale" in explicit:
        raise UsageError(f"--scale does not apply with {where}: the model keeps the input scaling it was trained with")
    return model


# ------------------------------------------------------------------ commands
def cmd_train(args: argparse.Namespace) -> int:
    cfg = _train_config(args, "train")
    comm = None
    if cfg.distributed:  # every rank runs this command; rank 0 alone prints and writes files
        from .distributed import world

        comm = world()
        cfg = dataclasses.replace(cfg, device=comm.device_for_rank(cfg.device))  # cuda -> cuda:<local rank % GPUs>
    explicit = set(vars(args))
    _check_paths([("--data", cfg.data), ("--resume", cfg.resume), ("--init-from", cfg.init_from)],
                 [("--save", cfg.save), ("--checkpoint", cfg.checkpoint), *_plot_outputs("train", cfg.plot)],
                 allowed={("--checkpoint", "--resume")})
    if cfg.save:
        check_writable(cfg.save, "--save")  # fail before training, not after
    if cfg.checkpoint:
        check_writable(cfg.checkpoint, "--checkpoint")
    if cfg.resume and not Path(cfg.resume).is_file():
        raise UsageError(f"--resume {cfg.resume!r} is not a file: expected a checkpoint written by --checkpoint")
    _check_npz("--resume", cfg.resume, "an xpnet checkpoint")
    if cfg.allow_changes and not cfg.resume:
        raise UsageError("--allow-changes applies only with --resume")
    plot_dir = _plot_dir(cfg.plot)
    data, classes, record = _load_data(cfg.dataset, cfg.data, cfg.label_column, cfg.seed, cfg.test_fraction,
                                       cfg.data_dir, cfg.mirror, cfg.delimiter, cfg.quiet)
    cfg, data, classes = _choose_task(cfg, data, classes, _given(args))
    start = _fine_tune_start(cfg, explicit, data) if cfg.init_from else None
    layers = tuple(start.sizes) if start is not None else _layers_for(cfg, data)
    # the row counts of the validation split _train_one will make (the same seeded split, no features copied)
    rows, _, val = _split_validation(data.X_train[:, :0], data.y_train, _val_fraction(cfg), cfg.seed)
    counts = {"train_samples": len(rows), "validation_samples": 0 if val is None else len(val[1]),
              "test_samples": len(data.X_test)}
    threads = blas_threads()
    if not cfg.quiet and not cfg.json and cfg.report != "nielsen":
        held = f" / {counts['validation_samples']} validation" if val is not None else ""
        print(f"xpnet: {data.name}, {counts['train_samples']} train{held} / {counts['test_samples']} test, "
              f"layers {list(layers)}, {cfg.optimizer}, {cfg.epochs} epochs, device {cfg.device}, "
              f"{threads if threads is not None else 'unknown'} BLAS thread{'s' if threads != 1 else ''}"
              + (f" per rank, {comm.size} ranks" if comm is not None else ""), flush=True)
    model, history, seconds = _train_one(cfg, data, layers, classes, record, start=start, comm=comm)
    if comm is not None and comm.rank != 0:
        return 0  # every rank holds the same model and history: rank 0 reports and saves
    tested = len(data.X_test) > 0  # --test-fraction 0 holds out nothing
    test = model.evaluate(data.X_test, data.y_test) if tested else {"loss": None, "accuracy": None}
    regression = None if not tested or "accuracy" in test else _regression_scores(model, data.X_test, data.y_test)
    # The end of a run, most valuable first: the model, then the results, then the figures
    # (optional; a failure there is reported last and never costs the model or the report).
    if cfg.save:
        with _as_flags(("path", "--save", cfg.save)):
            model.save(cfg.save)  # atomic: the old file is replaced only now, whole
    summary = {
        "dataset": data.name,
        "device": model.backend.label,
        "layers": list(layers),
        **counts,
        "epochs": len(history.epoch),
        "stopped_early": history.stopped_early,
        "best_epoch": history.best_epoch,  # the epoch whose weights were kept (early stopping), else null
        "train_loss": history.train_loss[-1],
        "train_accuracy": history.train_accuracy[-1] if history.train_accuracy else None,
        "test_loss": test["loss"],
        "test_accuracy": test.get("accuracy"),  # multi-label: the subset accuracy (rows with every label right)
        **({"test_hamming_loss": test["hamming_loss"]} if "hamming_loss" in test else {}),
        **({f"test_{k}": v for k, v in regression.items()} if regression is not None else {}),
        "seconds": seconds,
        "samples_per_second": sum(history.samples_per_second) / len(history.samples_per_second),
        "blas_threads": threads,
        "ranks": 1 if comm is None else comm.size,
        **({"allreduce_seconds": comm.allreduce_seconds} if comm is not None else {}),
    }
    if regression is not None:
        _warn_if_worse_than_mean(regression, "the test rows")
    if cfg.json:
        print(json.dumps(summary))
    else:  # the result lines are printed even with --quiet, which silences only progress
        if cfg.early_stopping and not cfg.quiet:
            print(_early_stopping_line(cfg, history))
        if not tested:
            print(f"no test score: --test-fraction 0 trained on every row (train loss {history.train_loss[-1]:.4f}, "
                  f"{seconds:.1f}s)")
        elif regression is not None:
            print(f"test {_format_regression(regression)}  test loss {test['loss']:.4f}  ({seconds:.1f}s)")
        elif "hamming_loss" in test:
            print(f"test accuracy {100 * test['accuracy']:.2f}% (rows with every label right)  Hamming loss "
                  f"{test['hamming_loss']:.4f}  test loss {test['loss']:.4f}  ({seconds:.1f}s)")
        else:
            print(f"test accuracy {100 * test['accuracy']:.2f}%  test loss {test['loss']:.4f}  ({seconds:.1f}s)")
        if cfg.save:
            print(f"saved model to {cfg.save}")
    if plot_dir is not None:
        try:
            paths = _train_plots(model, history, data, plot_dir)
        except (OSError, ValueError, RuntimeError) as exc:
            kept = f"the model is saved in {cfg.save} and " if cfg.save else ""
            print(f"xpnet: error: the figures could not be written to {str(plot_dir)!r} ({type(exc).__name__}: "
                  f"{exc}); {kept}the results above are complete", file=sys.stderr)
            return EXIT_USAGE
        _report_figures(paths, plot_dir, cfg.json)
    return 0


def _early_stopping_line(cfg: TrainConfig, history) -> str:
    """Where early stopping stopped (or that it did not) and which epoch's weights were kept."""
    last, best = history.epoch[-1], history.best_epoch
    if best is None:
        return "early stopping: no epoch was completed"
    best_loss = history.val_loss[history.epoch.index(best)]
    if history.stopped_early:
        where = (f"stopped early after epoch {last} of {cfg.epochs}: val_loss had not improved for "
                 f"{cfg.early_stopping} epoch{'s' if cfg.early_stopping != 1 else ''}")
    else:
        where = f"early stopping did not stop the run ({last} of {cfg.epochs} epochs)"
    kept = ("kept the last epoch's weights" if best == last else f"restored the weights of epoch {best}")
    return f"{where}; {kept} (best val_loss {best_loss:.4f})"


def _regression_scores(model, X, y) -> dict:
    """MAE, RMSE and R² of a regressor's outputs against real targets (host NumPy)."""
    from .backend import to_numpy
    from .metrics import regression_scores

    return regression_scores(y, to_numpy(model.forward(X)))


def _warn_if_worse_than_mean(scores: dict, rows: str) -> None:
    """Say so (stderr) when a regressor does worse than the constant that predicts the mean (R² < 0)."""
    r2 = scores.get("r2")
    if r2 is not None and r2 < 0:
        print(f"xpnet: warning: R² {r2:.4g} on {rows}: worse than always predicting the targets' mean (R² 0); "
              "the network has not learned them (try a smaller --lr, more --epochs, or check the data)",
              file=sys.stderr)


def _format_regression(scores: dict) -> str:
    r2 = "n/a (constant targets)" if scores["r2"] is None else f"{scores['r2']:.4f}"
    return f"MAE {scores['mae']:.4g}  RMSE {scores['rmse']:.4g}  R² {r2}"


def _train_plots(model, history, data, plot_dir: Path) -> list[Path]:
    from . import plot

    paths = [plot.history_curves(history, plot_dir / "history.png")]  # in the order drawn
    if len(data.X_test) == 0:  # --test-fraction 0: the other figures are of the test rows
        return paths
    if data.X_train.shape[1] == 2:
        paths.append(plot.decision_boundary(model, data.X_test, data.y_test, plot_dir / "decision_boundary.png"))
    if model.is_classifier and not model.multilabel:  # one class per row: a confusion matrix
        pred, cm, _, names = _class_report(model, data.X_test, data.y_test)
        paths.append(plot.confusion(cm, plot_dir / "confusion.png", names))
        if data.X_train.shape[1] == 784:
            truth = model.encode_labels(data.y_test)
            paths.append(plot.misclassified_digits(data.X_test, truth, pred, plot_dir / "misclassified.png"))
    return paths


def cmd_sweep(args: argparse.Namespace) -> int:

    cfg = _train_config(args, "sweep")
    if cfg.layers is not None:
        raise UsageError("sweep takes --hidden, not --layers: each net has one hidden layer of each width")
    _check_paths([("--data", cfg.data)], _plot_outputs("sweep", cfg.plot))
    plot_dir = _plot_dir(cfg.plot)
    data, classes, record = _load_data(cfg.dataset, cfg.data, cfg.label_column, cfg.seed, cfg.test_fraction,
                                       cfg.data_dir, cfg.mirror, cfg.delimiter, cfg.quiet)
    cfg, data, classes = _choose_task(cfg, data, classes, _given(args))
    rows, models = [], []
    regression = data.n_classes == 0  # a regressor's rows show R², not accuracy
    score, shown = ("r2", "R²") if regression else ("accuracy", "acc")
    if not cfg.json:
        print(f"{'hidden':>6}  {'train ' + shown:>9}  {'test ' + shown:>8}  {'test loss':>9}  {'seconds':>7}", flush=True)
    for width in cfg.hidden:
        layers = _layers_for(cfg, data, hidden=(width,))
        model, history, seconds = _train_one(cfg, data, layers, classes, record, quiet=True)
        tested = len(data.X_test) > 0  # --test-fraction 0 holds out nothing
        if regression:
            train, test = _regression_scores(model, data.X_train, data.y_train), {}
            if tested:
                test = _regression_scores(model, data.X_test, data.y_test)
        else:
            train = model.evaluate(data.X_train, data.y_train)
            test = model.evaluate(data.X_test, data.y_test) if tested else {}
        row = {"hidden": width, f"train_{score}": train.get(score), f"test_{score}": test.get(score),
               "test_loss": model.evaluate(data.X_test, data.y_test)["loss"] if tested else None, "seconds": seconds}
        rows.append(row)
        models.append(model)
        if not cfg.json:
            def fmt(a):
                return "n/a" if a is None else f"{a:.4f}" if regression else f"{100 * a:.2f}%"

            loss = "n/a" if row["test_loss"] is None else f"{row['test_loss']:.4f}"
            print(f"{width:>6}  {fmt(row[f'train_{score}']):>9}  {fmt(row[f'test_{score}']):>8}  "
                  f"{loss:>9}  {seconds:>7.2f}", flush=True)
    if plot_dir is not None:
        from . import plot

        if data.X_train.shape[1] == 2 and not regression:
            titles = [f"{r['hidden']} hidden: {100 * (r['test_accuracy'] or 0):.1f}%" for r in rows]
            path = plot.boundary_grid(models, titles, data.X_test, data.y_test, plot_dir / "sweep_boundaries.png")
        else:
            path = plot.accuracy_vs_width([r["hidden"] for r in rows], [r[f"train_{score}"] or 0 for r in rows],
                                          [r[f"test_{score}"] or 0 for r in rows], plot_dir / "sweep_accuracy.png",
                                          metric=shown if regression else "accuracy")
    if cfg.json:
        print(json.dumps({"dataset": data.name, "device": cfg.device, "hidden": list(cfg.hidden), "results": rows,
                          "blas_threads": blas_threads()}))
    if plot_dir is not None:
        _report_figures([path], plot_dir, cfg.json)
    return 0


def _saved_model(args: argparse.Namespace):
    """The model named by --model, with the flag (not the library's ``path=``) in any error."""
    from .model import load

    _check_npz("--model", args.model, "an xpnet model file")
    with _as_flags(("path", "--model", args.model)):
        return load(args.model, device=getattr(args, "device", "cpu"))


def _evaluation_rows(args: argparse.Namespace, model):
    """``(X, y, name, split)``: the rows ``evaluate`` scores.

    A ``--data`` file is a held-out set: every row, unless ``--split test|train`` asks for
    the training run's own split, re-derived from the seed and fraction in the model file
    after checking that the file is the one it was trained on (SHA-256). A ``--dataset``
    gives its test split, generated with the training run's seed and fraction when the
    model file records that data set (explicit ``--seed``/``--test-fraction`` win).
    """
    import numpy as np

    from .data import _split, load_dataset

    record = model.data_info or {}
    split = getattr(args, "split", None)
    data = getattr(args, "data", None)
    if data is not None:
        label_column = _label_columns(args.label_column) if hasattr(args, "label_column") else \
            record.get("label_column", -1)
        delimiter = getattr(args, "delimiter", record.get("delimiter"))
        identity: dict = {}
        X, y = _read_labelled_file(data, label_column, delimiter, getattr(args, "quiet", False) or getattr(args, "json", False),
                                   identity)
        name = identity["file"]
        if split in (None, "all"):
            return X, y, name, "all"
        if record.get("source") != "file":
            raise UsageError(f"--split {split} re-derives the training run's split, but {args.model!r} records no "
                             "training file (trained on a built-in data set, by the library, or by an older xpnet): "
                             "leave out --split to score every row of a held-out file")
        if identity["sha256"] != record.get("sha256"):
            raise UsageError(f"--split {split}: --data {data!r} is not the file {args.model!r} was trained on "
                             f"({record.get('file')!r}, SHA-256 {str(record.get('sha256'))[:12]}...)")
        d = _split(X, y, record["test_fraction"], name, 0, record["seed"])
        if split == "test" and len(d.X_test) == 0:
            raise UsageError(f"--split test: the training run of {args.model!r} held out no test rows (--test-fraction "
                             f"{record['test_fraction']:g}); score a held-out file, or --split train")
        return (d.X_test, d.y_test, name, "test") if split == "test" else (d.X_train, d.y_train, name, "train")
    dataset = getattr(args, "dataset", None)
    if dataset is None:
        if record.get("source") == "file":
            raise UsageError(f"{args.model!r} was trained on the file {record.get('file')!r}: pass --data FILE to "
                             f"score every row of a held-out file, or --data {record.get('file')} --split test")
        dataset = record.get("name", "mnist") if record.get("source") == "dataset" else "mnist"
    same = record.get("source") == "dataset" and record.get("name") == dataset
    seed = getattr(args, "seed", record.get("seed", 0) if same else 0)
    fraction = getattr(args, "test_fraction", record.get("test_fraction", 0.2) if same else 0.2)
    d = load_dataset(dataset, seed, fraction, getattr(args, "data_dir", None), getattr(args, "mirror", None))
    split = split or "test"
    if split == "test":
        return d.X_test, d.y_test, d.name, split
    if split == "train":
        return d.X_train, d.y_train, d.name, split
    return np.concatenate([d.X_train, d.X_test]), np.concatenate([d.y_train, d.y_test]), d.name, split


def cmd_evaluate(args: argparse.Namespace) -> int:
    import numpy as np

    from .backend import to_numpy
    from .metrics import format_class_report, format_confusion, macro_average, multilabel_scores, precision_recall_f1

    _check_paths([("--model", args.model), ("--data", getattr(args, "data", None))],
                 _plot_outputs("evaluate", getattr(args, "plot", None)))
    json_out, quiet = getattr(args, "json", False), getattr(args, "quiet", False)
    model = _saved_model(args)
    plot_dir = _plot_dir(getattr(args, "plot", None))
    X, y, name, split = _evaluation_rows(args, model)
    data = getattr(args, "data", None)
    if data is not None and X.shape[1] == model.sizes[0] - 1:  # the last feature was read as the labels
        raise UsageError(f"--data {data!r} has {model.sizes[0]} columns, as many as the model's features, and so no "
                         "label column: evaluate compares predictions with labels; add them (the last column, or "
                         "--label-column), or use xpnet predict for features alone")
    if X.shape[1] != model.sizes[0]:
        raise UsageError(f"the model takes {model.sizes[0]} features but {name} has {X.shape[1]}")
    if not model.takes_labels and y.dtype.kind in "UO":
        shown = ", ".join(map(str, np.unique(y.astype(str))[:3]))
        raise UsageError(f"{args.model!r} is a regressor (it predicts numbers) but the labels of {name} are text "
                         f"({shown}, ...): evaluate it on numeric targets, or evaluate a classifier on these labels")
    t0 = time.perf_counter()
    scores = model.evaluate(X, y)
    seconds = time.perf_counter() - t0
    result = {"dataset": name, "split": split, "device": model.backend.label, "layers": model.sizes,
              "samples": len(X), "test_loss": scores["loss"], "test_accuracy": scores.get("accuracy"),
              "seconds": seconds, "samples_per_second": len(X) / seconds if seconds else None,
              "blas_threads": blas_threads()}
    cm = regression = per_class = None

    def value(v):
        return None if np.isnan(v) else float(v)

    if model.multilabel:  # per label: precision, recall and F1 of its 0/1 column; no confusion matrix
        k = model.sizes[-1]
        names = [str(c) for c in model.classes] if model.classes is not None else [str(j) for j in range(k)]
        classes = model.classes.tolist() if model.classes is not None else list(range(k))
        prf = multilabel_scores(y, to_numpy(model.predict(X)))
        present = (prf["support"] > 0) | ~np.isnan(prf["precision"])
        macro = {key: macro_average(prf[key], present) for key in ("precision", "recall", "f1")}
        result["test_hamming_loss"] = scores["hamming_loss"]
    elif "accuracy" in scores:
        _, cm, per_class, names = _class_report(model, X, y)
        classes = model.classes.tolist() if model.classes is not None else list(range(len(names)))
        prf = precision_recall_f1(cm)
        present = (cm.sum(axis=0) + cm.sum(axis=1)) > 0  # in the truth or the predictions
        macro = {k: macro_average(prf[k], present) for k in ("precision", "recall", "f1")}
    if "accuracy" in scores:
        result["classes"] = classes
        result["per_class"] = [{"class": c, "precision": value(p), "recall": value(r), "f1": value(f), "support": int(n)}
                               for c, p, r, f, n in zip(classes, prf["precision"], prf["recall"], prf["f1"],
                                                        prf["support"])]
        result.update({f"macro_{k}": v for k, v in macro.items()})
        if cm is not None:
            result["per_class_accuracy"] = [value(a) for a in per_class]  # = recall; kept for older scripts
            result["confusion_matrix"] = cm.tolist()
    else:
        regression = _regression_scores(model, X, y)
        result.update({f"test_{k}": v for k, v in regression.items()})
        _warn_if_worse_than_mean(regression, f"{name} ({'every row' if split == 'all' else f'the {split} split'})")
    if json_out:
        print(json.dumps(result))
    else:
        if not quiet:
            rows = "every row" if split == "all" else f"the {split} split"
            print(f"{name} ({rows}): {len(X)} samples, layers {model.sizes}, device {model.backend.label}")
        print(f"loss {scores['loss']:.4f}")
        if regression is not None:
            print(_format_regression(regression))
        elif model.multilabel:
            print(f"accuracy {100 * scores['accuracy']:.2f}% (rows with every label right)")
            print(f"Hamming loss {scores['hamming_loss']:.4f} (share of labels wrong)")
            if not quiet:
                print("per label (macro: the unweighted mean over the labels):")
                print(format_class_report(names, prf, macro, what="label"))
        else:
            print(f"accuracy {100 * scores['accuracy']:.2f}%")
            if not quiet:
                print("per-class accuracy: " + "  ".join(  # the recall again, in the form older scripts read
                    f"{k}: {'n/a' if a is None else f'{100 * a:.1f}%'}" for k, a in zip(names, result["per_class_accuracy"])))
                print("per class (recall is the per-class accuracy; macro: the unweighted mean over the classes):")
                print(format_class_report(names, prf, macro))
                print(format_confusion(cm, names))
    if plot_dir is not None:
        paths = []
        if cm is not None:
            from . import plot

            paths.append(plot.confusion(cm, plot_dir / "confusion.png", names))
        _report_figures(paths, plot_dir, json_out)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import csv
    import io

    import numpy as np

    from .backend import to_numpy
    from .data import load_file, regular_file
    from .io import atomic_write

    out = getattr(args, "out", None)
    json_out = getattr(args, "json", False)
    if json_out and out is not None:
        raise UsageError(f"--json prints the predictions and --out {out!r} writes them to a file: use one of them")
    _check_paths([("--model", args.model), ("--data", args.data)], [("--out", out)])
    if out is not None:
        if Path(out).suffix.lower() not in (".csv", ".npy"):
            raise UsageError(f"--out {out!r}: expected a .csv or .npy file name")
        check_writable(out, "--out")
    model = _saved_model(args)
    n_in, delimiter, notes = model.sizes[0], getattr(args, "delimiter", None), []
    is_csv = args.data == "-" or Path(args.data).suffix.lower() in (".csv", ".tsv")
    if hasattr(args, "label_column"):
        label_column = _label_columns(args.label_column)
    else:  # a multi-label model's file may still hold the label columns it was trained with
        recorded = (model.data_info or {}).get("label_column") if model.multilabel else None
        label_column = recorded if isinstance(recorded, (list, str)) and recorded != -1 else -1
    n_labels = len(label_column) if isinstance(label_column, list) else (
        model.sizes[-1] if isinstance(label_column, str) and model.multilabel and ":" in label_column else 1)
    with regular_file(args.data) as path:  # a stream (--data -, a named pipe) is read once
        try:
            X, _ = load_file(path, label_column=None, delimiter=delimiter, notes=notes, name=args.data)
            extra = X.ndim == 2 and X.shape[1] == n_in + n_labels
        except ValueError:
            if not is_csv:
                raise  # a missing or unreadable file: its own one-line message
            extra = True  # e.g. a text label column that cannot be read as a feature: try it as the labels
        if extra and is_csv:  # one extra column: the labels, dropped
            notes = []
            X, _ = load_file(path, label_column=label_column, delimiter=delimiter, notes=notes,
                             name=args.data)
    _notes(notes, json_out)
    if X.ndim != 2 or X.shape[1] != n_in:
        raise UsageError(f"--data {args.data!r} has shape {X.shape}: the model expects (m, {n_in}) features")
    proba = getattr(args, "proba", False)
    result = to_numpy(model.predict_proba(X) if proba else model.predict(X))
    header = None
    if proba or model.multilabel:  # columns named by class (label); one sigmoid unit is the probability of the second
        names = ([str(c) for c in model.classes] if model.classes is not None
                 else [str(j) for j in range(model.n_label_values)])  # one unit: 0 and 1
        line = io.StringIO()
        csv.writer(line, lineterminator="").writerow(names[-1:] if model.sizes[-1] == 1 else names)  # one unit: P(classes[1])
        header = line.getvalue()
    if json_out:  # exact values (not the 6 digits of the text forms), labels as the file has them
        answer = {"predictions": (to_numpy(model.predict(X)) if proba else result).tolist()}
        if proba:
            classes = model.classes.tolist() if model.classes is not None else list(range(model.n_label_values))
            answer["classes"] = classes[-1:] if model.sizes[-1] == 1 else classes
            answer["probabilities"] = result.tolist()
        print(json.dumps(answer))
        return 0
    if out is None:
        if header is not None:
            print(header)
        for row in result:
            if proba:
                print(",".join(f"{v:.6g}" for v in row))
            elif result.ndim == 2:  # multi-label 0/1 rows (or a regressor's several outputs)
                print(",".join(f"{v:g}" for v in row))
            elif result.dtype.kind == "f":  # a regressor's outputs
                print(f"{row:g}")
            else:
                print(row)
        return 0
    with _as_flags(("path", "--out", out)), atomic_write(out) as f:
        if out.lower().endswith(".npy"):
            np.save(f, result)  # string labels are saved as a unicode array, readable without pickle
        else:
            fmt = "%.6g" if proba else ("%s" if result.dtype.kind == "U" else "%g")
            np.savetxt(f, result.reshape(len(result), -1), delimiter=",", fmt=fmt, header=header or "", comments="")
    print(f"wrote {len(result)} predictions to {out}", file=sys.stderr)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from . import bench
    from .backend import get_backend
    from .io import atomic_write

    device = getattr(args, "device", "cpu")
    _check_paths([], [("--json", getattr(args, "json", None)), ("--markdown", getattr(args, "markdown", None))])
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

    counts = bench.op_counts()
    ops_line = ("array operations per step of [784,128,64,10] on the generic path (array-api-strict; each one a "
                "kernel launch on a GPU): " + ", ".join(f"{k} {v}" for k, v in counts.items())) if counts else (
                "array operations per step: n/a (needs array-api-strict)")
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
        with _as_flags(("path", "--json", args.json)), atomic_write(args.json) as f:
            f.write(json.dumps({"environment": env, "op_counts": counts, "gemm_gflops": gemm,
                                "results": [r.row() for r in results], "torch_compile": compiled}, indent=1).encode())
    if getattr(args, "markdown", None):
        header = "\n".join(f"- {k}: {v}" for k, v in env.items())
        command = "xpnet bench" + (f" --device {device}" if device != "cpu" else "") + (" --quick" if quick else "")
        extra = "\n".join([f"- {ops_line}", f"- {gemm_line}", *compile_lines])
        text = f"# xpnet bench, {env['date']}, {device}\n\nCommand: `{command}`\n\n{header}\n\n{table}\n\n{extra}\n"
        with _as_flags(("path", "--markdown", args.markdown)), atomic_write(args.markdown) as f:
            f.write(text.encode())
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    import importlib.util
    import platform

    import array_api_compat
    import numpy as np

    from ._version import __version__
    from .distributed import MPI_HINT, launched_copies, mpi_library, world

    copies, _ = launched_copies()
    comm = world() if copies > 1 else None  # mpiexec -n N xpnet info: rank 0 prints what the ranks see
    print(f"xpnet {__version__}  (Python {platform.python_version()}, {platform.machine()})")
    print(f"numpy {np.__version__}")
    print(f"array-api-compat {array_api_compat.__version__}")
    try:
        from threadpoolctl import threadpool_info

        for pool in threadpool_info():
            if pool.get("user_api") == "blas":
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


def _resume_hint(argv: list[str], checkpoint: str) -> str:
    """The command that continues an interrupted run: the same arguments plus --resume."""
    import shlex

    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--resume":
            skip = True
            continue
        if not arg.startswith("--resume="):
            kept.append(arg)
    return "xpnet " + shlex.join([*kept, "--resume", checkpoint])


# Flags that name files a command writes: a run that has any still finishes it after stdout's reader has gone.
OUTPUT_FLAGS = ("save", "checkpoint", "out", "plot", "json", "markdown")  # json, markdown: bench's FILE
COMPUTING = ("train", "sweep", "evaluate", "predict", "bench")  # the commands that take --threads


class _ReaderGone(BaseException):
    """stdout's reader has gone (``| head``) and the command has nothing left but to print.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way
    out (a library's, a callback's) takes it for an error to handle.
    """


class _PipeGuard:
    """``sys.stdout`` or ``sys.stderr`` for one command, safe when the reader goes away.

    At the first broken pipe the stream's file descriptor is pointed at /dev/null, so that
    nothing later fails, not even the interpreter's last flush; writes then go nowhere.
    With ``stop`` (stdout of a command with no file left to write) it also raises
    :class:`_ReaderGone`, which :func:`main` turns into exit code 0.
    """

    def __init__(self, stream, stop: bool):
        self._stream, self._stop, self.gone = stream, stop, False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.gone = True
        _silence(self._stream)
        if self._stop:
            raise _ReaderGone

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


def _silence(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null (where it has one)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


@contextlib.contextmanager
def _threads_for(args: argparse.Namespace, comm=None):
    """Run a computing command with ``--threads`` (or :func:`default_threads`) BLAS threads."""
    threads = getattr(args, "threads", None) or (default_threads(comm) if args.command in COMPUTING else None)
    if threads is None:
        yield
        return
    import numpy  # noqa: F401  (loads the BLAS, so that threadpoolctl finds it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        asked, cores = getattr(args, "threads", None), usable_cores()
        if asked is not None and asked > cores and not getattr(args, "quiet", False):
            running = blas_threads()
            runs = f"the BLAS runs {running}" if running is not None else "the BLAS's own limit applies"
            capped = " (its most)" if running is not None and running < asked else ""
            print(f"xpnet: note: --threads {asked} is more than the {cores} usable core{'s' if cores != 1 else ''}: "
                  f"{runs}{capped}, and threads beyond the cores slow training down", file=sys.stderr)
        yield


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    0: done; 2: a usage or input error (one line on stderr); 3: training diverged;
    130 / 143: interrupted by SIGINT / SIGTERM (after writing the checkpoint, if any).
    ``xpnet`` with no command prints the help to stdout and returns 2 (a usage error).

    A closed pipe (``xpnet train | head -1``) is not an error: once stdout's reader has
    gone, nothing more is printed, nothing is said on stderr, and the exit code is 0.
    A command with only printing left stops at once; one with files still to write
    (``--save``, ``--checkpoint``, ``--out``, ``--plot``, ``bench --json/--markdown``)
    finishes them first. A reader of stderr going away (progress bars, notes) only
    silences stderr.
    """
    from .distributed import PeerFailed, WeightsDiffer, launched_copies
    from .train import OutOfMemory, TrainingDiverged, TrainingInterrupted

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    copies, rank = launched_copies()  # from the environment mpiexec sets; (1, 0) without it
    comm = None
    if getattr(args, "distributed", False):
        from .distributed import world

        try:
            comm = world()
        except ValueError as exc:
            if rank == 0:
                print(f"xpnet: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        rank = comm.rank
    elif copies > 1 and args.command != "info":  # N copies of one run is never what a user wants
        if rank == 0:
            print(f"xpnet: error: mpiexec started {copies} copies of 'xpnet {args.command}', each doing the whole "
                  "work alone: add --distributed to train one model across them (xpnet train --distributed), or "
                  "run xpnet without mpiexec", file=sys.stderr)
        return EXIT_USAGE
    stdout, stderr = sys.stdout, sys.stderr
    files_to_write = any(isinstance(getattr(args, flag, None), str) for flag in OUTPUT_FLAGS)
    sink = open(os.devnull, "w") if rank != 0 else None  # rank 0 speaks for all ranks
    if sink is not None:
        sys.stdout = sys.stderr = sink
    else:  # across ranks a closed pipe only silences rank 0: stopping it alone would end the job
        sys.stdout = _PipeGuard(stdout, stop=not files_to_write and comm is None)
        sys.stderr = _PipeGuard(stderr, stop=False)
    try:
        # across ranks, an error before training starts ends every rank with the same code
        with _threads_for(args, comm), (comm.setup_errors() if comm is not None else contextlib.nullcontext()):
            code = args.handler(args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is caught below
        return code
    except _ReaderGone:
        return 0
    except TrainingDiverged as exc:
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as exc:
        import signal

        # the checkpoint is written: let nothing cut this line short (main's caller gets its handlers back)
        ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        if exc.checkpoint:
            hint = _resume_hint(argv, exc.checkpoint)
            if comm is not None and comm.size > 1:
                hint = f"mpiexec -n {comm.size} {hint}"
            how = f"checkpoint written; resume with: {hint}"
            if exc.complete:  # the last epoch was trained: nothing is lost but the end of the command
                how = (f"every epoch was trained and the checkpoint {exc.checkpoint} holds the finished model (xpnet "
                       f"evaluate --model {exc.checkpoint} scores it); --save, the test score and the figures were "
                       f"not done: {hint} does them")
        elif args.command == "sweep":
            how = "sweep keeps no checkpoints: run it again (--hidden with only the widths still to do)"
        elif exc.complete:
            how = "every epoch was trained, but without --checkpoint the model is lost: --save and the report were not done"
        else:
            how = "no checkpoint was written (add --checkpoint PATH to be able to resume)"
        name = "SIGINT" if exc.signum == 2 else "SIGTERM" if exc.signum == 15 else f"signal {exc.signum}"
        print(f"xpnet: interrupted by {name} at epoch {exc.epoch} after step {exc.step}; {how}", file=sys.stderr)
        sys.stderr.flush()
        for sig, handler in ignored.items():
            signal.signal(sig, handler)
        return exc.exit_code
    except (PeerFailed, WeightsDiffer) as exc:  # every rank raises it: another rank failed, or the sums differed
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ValueError, OutOfMemory) as exc:  # includes DeviceError and UsageError
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # a closed pipe that did not go through sys.stdout: the same quiet end
        _silence(stdout)
        return 0
    except OSError as exc:  # e.g. disk full while writing; the old file is intact (atomic writes)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"xpnet: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("xpnet: interrupted", file=sys.stderr)
        return 130
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        if sink is not None:
            sink.close()
