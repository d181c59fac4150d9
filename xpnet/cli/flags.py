"""The command line's words: the argparse parser, its flag types and help texts,
:class:`TrainConfig` (the settings of ``train`` and ``sweep``), the presets, and
:class:`UsageError` with the exit codes."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from ..activations import HIDDEN, OUTPUTS
from ..data import DATASETS
from ..layers import NORMS
from ..losses import LOSSES
from ..model import DTYPES, INITS
from ..preprocess import SCALE_CHOICES
from ..threads import default_threads

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
    task: str = "auto"  # auto | classification | regression (see xpnet.cli.train)
    loss: str | None = None  # None: the one matching --output
    huber_delta: float = 1.0  # --loss huber: quadratic for |error| <= delta, linear beyond
    label_smoothing: float = 0.0  # cross_entropy: targets y (1 - eps) + eps / k
    init: str | None = None  # None: he for relu-like, xavier otherwise
    dropout: float | tuple[float, ...] = 0.0  # inverted dropout after each hidden activation: one rate, or one per hidden layer
    norm: str | None = None  # None | batch | layer: normalize each hidden layer's product (xpnet.layers)
    residual: bool = False  # train: a skip (A_l = A_{l-1} + ...) around every hidden layer that keeps its width
    # The defaults reach ~95.5% test accuracy on the bundled digits in ~3 s on 2 cores.
    optimizer: str = "nesterov"  # sgd | momentum | nesterov | adam
    lr: float | None = None  # None: 1e-3 for adam, 0.1 for the SGD family (0.01 with an identity output)
    momentum: float = 0.9  # for momentum and nesterov
    weight_decay: float = 5e-4
    schedule: str = "cosine"  # constant | step | cosine | onecycle (per step)
    warmup: int = 0  # steps of linear warm-up, from lr / warmup up to the schedule's rate
    clip_norm: float | None = None  # scale each step's gradient to at most this global L2 norm (on the device)
    reduce_on_plateau: int | None = None  # patience: lr x 0.1 when validation loss stalls (PyTorch's ReduceLROnPlateau)
    batch_size: int | None = 64  # None: full batch
    class_weight: str | None = None  # balanced | LABEL=W,...: each row's loss times its class's weight
    epochs: int = 30
    val_fraction: float = 0.0  # share of the training set held out for per-epoch validation
    test_fraction: float = 0.2  # held-out share for generated data and --data files
    seed: int = 0
    dtype: str = "float32"
    save: str | None = None
    checkpoint: str | None = None  # written atomically every --checkpoint-every epochs and on SIGINT/SIGTERM
    checkpoint_every: int = 1
    resume: str | None = None  # continue from this checkpoint
    log: str | None = None  # train: a CSV row per epoch, written as the run goes (xpnet.logs.CSVLogger)
    tensorboard: str | None = None  # train: TensorBoard scalars per epoch in this directory (needs tensorboardX)
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


THREADS_HELP = ("BLAS threads (default: 1 where at most 2 cores are usable, else half of them: "
                "{default} here{distributed}; left to the "
                "BLAS when OMP_NUM_THREADS, OPENBLAS_NUM_THREADS or MKL_NUM_THREADS is set); more threads than "
                "free cores slow training down many times over on a busy machine")


TASKS = ("auto", "classification", "regression")
MANY_CLASSES = 20  # --task auto: more distinct integer labels than this, with
ROWS_PER_CLASS = 10  # fewer rows than this per distinct value on average, look like a quantity


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


def _class_weight(text: str) -> str:
    """--class-weight: ``balanced``, or ``LABEL=W,...`` with weights >= 0 (kept as text: the labels
    are matched against the data's own once it is read)."""
    if text == "balanced":
        return text
    seen = set()
    for item in text.split(","):
        label, eq, weight = item.partition("=")
        if not eq or not label.strip():
            raise argparse.ArgumentTypeError(f"{text!r}: expected balanced or LABEL=WEIGHT,... (e.g. 0=1,1=10)")
        if label.strip() in seen:
            raise argparse.ArgumentTypeError(f"{text!r} gives class {label.strip()!r} twice")
        seen.add(label.strip())
        _number(float, 0, low_open=False)(weight.strip())
    return text


def _rates(text: str) -> float | tuple[float, ...]:
    """--dropout: one rate, or comma-separated rates (one per hidden layer), each 0 <= p < 1."""
    rate, values = _number(float, 0, 1, low_open=False), []
    for part in text.split(","):
        try:
            values.append(rate(part.strip()))
        except argparse.ArgumentTypeError as exc:
            if "," not in text:
                raise
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}; expected one rate 0 <= P < 1, or one per hidden "
                                             "layer, comma-separated (e.g. 0.2,0.1)") from None
    return values[0] if len(values) == 1 else tuple(values)


def _batch_size(text: str) -> int | None:
    return None if text == "full" else _number(int, 0)(text)


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (no usage dump), from rank 0 alone under mpiexec."""

    def error(self, message: str):
        from ..distributed import launched_copies

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
                   help=".npz with arrays X and y, or .csv (.tsv: tabs), .parquet or .feather (these two need pyarrow) "
                        "with the label in the last column; - reads a .csv from standard input")
    p.add_argument("--label-column", type=_column, metavar="N|NAME", action="append",
                   help="label column of a .csv, .parquet or .feather: an index (negative from the end) or a header "
                        "name; given several "
                        "times, or as a range FIRST:LAST (both included; one starting with - goes as "
                        "--label-column=-3:-1), the 0/1 columns of a multi-label file "
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
    p.add_argument("--loss", choices=tuple(LOSSES),
                   help="loss (default: the one matching --output); huber and mae (absolute error) for regression")
    p.add_argument("--huber-delta", type=_number(float, 0), metavar="D",
                   help=f"--loss huber: squared below D, linear above (PyTorch's HuberLoss) (default: {d.huber_delta:g})")
    p.add_argument("--label-smoothing", type=_number(float, 0, 1, low_open=False), metavar="E",
                   help="softmax cross-entropy against targets y (1 - E) + E / classes; the loss reported is the "
                        f"smoothed one (default: {d.label_smoothing:g})")
    p.add_argument("--init", choices=tuple(INITS), help="weight init (default: he for relu-like, else xavier)")
    p.add_argument("--dropout", type=_rates, metavar="P[,P...]",
                   help="inverted dropout after each hidden layer's activation while training (off when evaluating "
                        "and predicting): one rate for every hidden layer, or comma-separated rates, one per hidden "
                        f"layer; each 0 <= P < 1 (default: {d.dropout:g}, none)")
    p.add_argument("--norm", choices=NORMS,
                   help="normalize each hidden layer's product before its activation, with a trained scale and "
                        "shift: batch (over the batch's rows; running statistics when evaluating; every batch needs "
                        "2+ rows) or layer (over each row's units) (default: none)")
    p.add_argument("--optimizer", choices=["sgd", "momentum", "nesterov", "adam"], help=f"(default: {d.optimizer})")
    p.add_argument("--lr", type=_number(float, 0),
                   help="learning rate (default: 1e-3 for adam, 0.1 for the sgd family, 0.01 with --output identity)")
    p.add_argument("--momentum", type=_number(float, 0, 1, low_open=False),
                   help=f"for --optimizer momentum|nesterov (default: {d.momentum})")
    p.add_argument("--weight-decay", type=_number(float, 0, low_open=False), help=f"(default: {d.weight_decay})")
    p.add_argument("--schedule", choices=["constant", "step", "cosine", "onecycle"],
                   help=f"learning rate over epochs; onecycle: per step, PyTorch's OneCycleLR (default: {d.schedule})")
    p.add_argument("--warmup", type=_number(int, 0, low_open=False), metavar="STEPS",
                   help="raise the learning rate linearly over the first STEPS steps, from lr/STEPS to the "
                        f"schedule's (default: {d.warmup})")
    p.add_argument("--clip-norm", type=_number(float, 0), metavar="C",
                   help="scale each step's gradient to a global L2 norm of at most C (default: no clipping)")
    p.add_argument("--reduce-on-plateau", type=_number(int, 0), nargs="?", const=10, metavar="PATIENCE",
                   help="multiply the learning rate by 0.1 when validation loss has not improved for more than "
                        "PATIENCE epochs (10 if not given; holds out --val-fraction, 0.1 if unset)")
    p.add_argument("--batch-size", type=_batch_size, help=f"samples per step, or 'full' (default: {d.batch_size})")
    p.add_argument("--class-weight", type=_class_weight, metavar="balanced|LABEL=W,...",
                   help="weight each row's loss by its class: balanced (rows / (classes * the class's rows), "
                        "scikit-learn's) or LABEL=W pairs (labels as the data writes them; others 1); the train "
                        "loss shown is then the weighted one (default: none)")
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
    """The parser of ``xpnet`` and its commands; :func:`xpnet.cli.main` runs the one named in ``args.command``."""
    from .._version import __version__

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
    t.add_argument("--residual", action="store_true",
                   help="add each hidden layer's input to its output wherever the layer keeps its width "
                        "(e.g. --layers 784,64,64,10: the second hidden layer); refused where no hidden layer does")
    t.add_argument("--save", metavar="PATH", help="write the trained model here (.npz); an old file is replaced only on success")
    t.add_argument("--checkpoint", metavar="PATH",
                   help="write a checkpoint here every --checkpoint-every epochs and when interrupted (SIGINT/SIGTERM)")
    t.add_argument("--checkpoint-every", type=_number(int, 0), metavar="N", help="epochs between checkpoints (default: 1)")
    t.add_argument("--resume", metavar="PATH", help="continue from this checkpoint (same arguments otherwise)")
    t.add_argument("--log", metavar="FILE.csv",
                   help="write one CSV row per epoch (the epoch line's metrics, the learning rate, seconds) as the "
                        "run goes, so a killed run keeps its rows; replaces FILE.csv after the first epoch, and with "
                        "--resume rewrites it from the checkpoint's epochs on")
    t.add_argument("--tensorboard", metavar="DIR",
                   help="write the same values as TensorBoard scalars, an event file per run in DIR, as the run "
                        "goes (needs the tensorboard extra: tensorboardX, without TensorFlow or PyTorch)")
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

    s = sub.add_parser("sweep", argument_default=sup, help="train one net per hidden width and compare them",
                       description="The tutorials' hidden-size experiment: one hidden layer of each width in --hidden.",
                       epilog=EXIT_CODES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_train_flags(s)
    s.add_argument("--hidden", type=_int_list("--hidden", 1), help="widths to try (default: 1,2,4,10,20,50)")

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

    p = sub.add_parser("predict", argument_default=sup, help="predict labels (or probabilities) for a file",
                       description="Predict with a saved model; a .csv, .parquet or .feather file may hold its label column(s), "
                                   "which are ignored.")
    p.add_argument("--model", required=True, metavar="PATH", help="a file written by train --save or --checkpoint")
    p.add_argument("--data", required=True, metavar="FILE",
                   help=".npz with array X, or .csv (.tsv: tabs), .parquet or .feather of features; - reads a .csv from "
                        "standard input")
    p.add_argument("--label-column", type=_column, metavar="N|NAME", action="append",
                   help="column to drop from a .csv with one extra column: an index or a header name; several, or a "
                        "range FIRST:LAST (--label-column=-3:-1 for one starting with -), for a multi-label model's "
                        "label columns (default: -1, or the columns the "
                        "model was trained with)")
    p.add_argument("--delimiter", type=_delimiter, metavar="CHAR", help="field separator of a .csv (default: detected)")
    p.add_argument("--out", metavar="FILE", help="write predictions to .csv or .npy (default: print them)")
    p.add_argument("--proba", action="store_true", help="class probabilities instead of labels")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: predictions, and with --proba classes and probabilities "
                        "(one column per class)")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: cpu)")
    _add_threads_flag(p)

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

    x = sub.add_parser("export", argument_default=sup, help="write a saved model as an ONNX file to serve elsewhere",
                       description="Write a saved model (or checkpoint) as one ONNX graph, opset 12: the input scaler, "
                                   "every layer in eval mode, the output and the class labels. Input X (N, n_features) "
                                   "in the model's dtype; outputs label and probabilities (a classifier) or variable (a "
                                   "regressor), skl2onnx's names. Opset 12 is the lowest with every operator used: GELU "
                                   "and layer norm are built from primitives (Gelu needs opset 20, LayerNormalization 17).")
    x.add_argument("--model", required=True, metavar="PATH", help="a file written by train --save or --checkpoint")
    x.add_argument("--onnx", required=True, metavar="FILE.onnx",
                   help="write the ONNX graph here (opset 12); an old file is replaced only on success (needs the onnx "
                        "extra: onnx, and onnxruntime to run it)")

    sub.add_parser("info", help="versions, BLAS, GPUs and usable backends",
                   description="Show library versions, the BLAS in use, visible GPUs and which backends work here.")
    return parser


def train_config(args: argparse.Namespace, command: str) -> TrainConfig:
    """The settings of ``train`` or ``sweep`` (``command``): a --preset's, overridden by the flags given."""
    given = {k: v for k, v in vars(args).items() if k not in ("command", "preset")}
    settings = {}
    preset = getattr(args, "preset", None)
    if preset is not None:
        preset_command, settings = PRESETS[preset]
        if preset_command != command:
            raise UsageError(f"--preset {preset} is for 'xpnet {preset_command}', not 'xpnet {command}'")
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    if "label_column" in given:
        given["label_column"] = label_columns(given["label_column"])
    return TrainConfig(**{k: v for k, v in {**settings, **given}.items() if k in names})


def label_columns(given: list):
    """--label-column as given once (an index or name) or several times (a list: multi-label)."""
    return given[0] if len(given) == 1 else list(given)
