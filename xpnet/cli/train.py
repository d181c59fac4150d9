"""``xpnet train`` and ``xpnet sweep``: the task (classes or a quantity), layer widths,
fine-tuning from a saved model, and one training run."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
import time
from pathlib import Path

from ..data import EXACT_INTEGERS
from ..io import check_writable
from ..threads import blas_threads
from .files import as_flags, check_npz, check_paths, check_plot_dir, load_data, plot_outputs
from .flags import EXIT_USAGE, MANY_CLASSES, PRESETS, ROWS_PER_CLASS, TrainConfig, UsageError, train_config
from .reports import (
    class_report,
    early_stopping_line,
    format_regression,
    layer_settings,
    layers_text,
    progress_display,
    report_figures,
    score_regression,
    warn_if_worse_than_mean,
)


def _make_optimizer(cfg: TrainConfig):
    from ..optim import SGD, Adam

    if cfg.optimizer == "adam":
        return Adam(lr=cfg.lr or 1e-3, weight_decay=cfg.weight_decay, schedule=cfg.schedule, warmup_steps=cfg.warmup,
                    clip_norm=cfg.clip_norm)
    momentum = cfg.momentum if cfg.optimizer in ("momentum", "nesterov") else 0.0
    # An identity output's squared error has an unbounded gradient, unlike cross-entropy's: at 0.1
    # with momentum 0.9 a regression on standardized targets overshoots and its ReLUs die.
    return SGD(lr=cfg.lr or (0.01 if cfg.output == "identity" else 0.1), momentum=momentum, nesterov=cfg.optimizer == "nesterov",
               weight_decay=cfg.weight_decay, schedule=cfg.schedule, warmup_steps=cfg.warmup, clip_norm=cfg.clip_norm)


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


DEFAULT_HIDDEN = (128, 64)  # the hidden widths without --layers


def _layers_for(cfg: TrainConfig, data, hidden: tuple[int, ...] = DEFAULT_HIDDEN) -> tuple[int, ...]:
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


def _rates_text(dropout) -> str:
    """--dropout as typed: ``0.2`` or ``0.2,0.1``."""
    return ",".join(f"{p:g}" for p in dropout) if isinstance(dropout, (list, tuple)) else f"{dropout:g}"


def _layers_text(cfg: TrainConfig, sizes, explicit: set[str], preset: str | None) -> str:
    """Where the widths came from, for a message: --layers as typed, a preset's, or the defaults."""
    if "layers" in explicit:
        return f"--layers {','.join(map(str, sizes))}"
    if preset is not None and cfg.layers is not None:
        return f"the layers {list(sizes)} of --preset {preset}"
    return f"the layers {list(sizes)}"


@contextlib.contextmanager
def _layer_flags(cfg: TrainConfig, sizes, explicit: set[str], preset: str | None = None):
    """Say the flags where :func:`xpnet.layers.build_blocks` (through MLP) names its arguments:
    ``dropout=[0.2, 0.1]`` becomes ``--dropout 0.2,0.1``, ``sizes=[...]`` the layers' origin."""
    try:
        yield
    except ValueError as exc:
        text = str(exc)
        dropout = list(cfg.dropout) if isinstance(cfg.dropout, tuple) else cfg.dropout
        words = [(f"dropout={dropout!r}", f"--dropout {_rates_text(cfg.dropout)}"),
                 (f"norm={cfg.norm!r}", f"--norm {cfg.norm}"), ("residual=True", "--residual"),
                 (f"sizes={list(sizes)}", _layers_text(cfg, sizes, explicit, preset)),
                 ("sizes[l-1] == sizes[l] for a hidden layer l", "two equal widths in a row, e.g. --layers 784,64,64,10")]
        if not text.startswith(("dropout=", "norm=", "residual=")):
            raise
        for library, flag in words:
            text = text.replace(library, flag)
        raise UsageError(text) from exc


def _check_layer_flags(cfg: TrainConfig, explicit: set[str], preset: str | None, sizes=None,
                       rows: int | None = None, hidden: tuple[int, ...] = DEFAULT_HIDDEN) -> None:
    """Refuse --dropout, --norm and --residual that cannot apply to the widths ``sizes`` (the
    library's own checks, in flag words). Before the data is read, ``sizes`` is ``None`` and
    only what the flags alone decide is checked: a --layers typed or from a preset (whole), else
    --dropout's rates against the ``hidden`` widths' count (the features' count decides the rest),
    and --norm batch with --batch-size 1. With the data, ``sizes`` are the run's widths and ``rows``
    its training rows."""
    from ..layers import build_blocks

    dropout = list(cfg.dropout) if isinstance(cfg.dropout, tuple) else cfg.dropout
    if sizes is None and cfg.layers is not None:
        sizes = cfg.layers
    if sizes is not None:
        with _layer_flags(cfg, sizes, explicit, preset):
            build_blocks(list(sizes), cfg.activation, dropout, cfg.norm, cfg.residual)
    else:  # n_in, hidden..., n_out: the rates per hidden layer, before the features are known
        with _layer_flags(cfg, (), explicit, preset):
            build_blocks([1, *hidden, 1], cfg.activation, dropout)
    if cfg.norm == "batch":
        size = cfg.batch_size or rows  # None: the full batch
        last = None if rows is None else rows % size or size  # the last batch's rows
        if size == 1 or last == 1:
            shown = "full" if cfg.batch_size is None else cfg.batch_size
            raise UsageError(f"--norm batch needs at least 2 rows in every batch (the variance of one row is 0): "
                             f"--batch-size {shown} leaves a batch of 1 row"
                             + (f" of the {rows} training rows" if rows is not None else "")
                             + "; choose another --batch-size, or --norm layer")


def _val_fraction(cfg: TrainConfig) -> float:
    """The share of the training rows held out for validation (0.1 for --early-stopping when unset)."""
    return cfg.val_fraction or (0.1 if cfg.early_stopping or cfg.reduce_on_plateau else 0.0)


def _split_validation(X, y, fraction: float, seed: int):
    """Hold out ``fraction`` of (X, y) for validation, by a seeded shuffle on the host
    (keyed ``[seed, 1]``: a different shuffle from the train/test split's)."""
    from ..data import split

    if fraction == 0:
        return X, y, None
    d = split(X, y, fraction, "validation", 0, [seed, 1])
    return d.X_train, d.y_train, (d.X_test, d.y_test)


def _class_weight(cfg: TrainConfig, model, quiet: bool):
    """--class-weight as fit's ``class_weight``: ``"balanced"``, or ``{label: weight}`` with each label
    matched as the data writes its labels (text, or integers); labels that are no class are refused."""
    import numpy as np

    from ..labels import preview

    if cfg.class_weight is None:
        return None
    if not model.takes_labels or model.multilabel:
        raise UsageError(f"--class-weight {cfg.class_weight} weights the rows of each class, and this run's labels are "
                         f"{'multi-label rows' if model.multilabel else 'numbers to predict'}: it is for one class per row")
    if cfg.class_weight == "balanced":
        return _weights_note(cfg, quiet, "balanced")
    known = model.classes if model.classes is not None else np.arange(model.n_label_values)
    out, unknown = {}, []
    for item in cfg.class_weight.split(","):
        label, _, weight = (s.strip() for s in item.partition("="))
        key = label if known.dtype.kind == "U" else int(label) if label.lstrip("+-").isdigit() else None
        if key is None or key not in known.tolist():
            unknown.append(label)
        out[key] = float(weight)
    if unknown:
        raise UsageError(f"--class-weight {cfg.class_weight}: {', '.join(map(repr, unknown))} "
                         f"{'is' if len(unknown) == 1 else 'are'} not among the classes {preview(known)}")
    return _weights_note(cfg, quiet, out)


def _weights_note(cfg: TrainConfig, quiet: bool, class_weight):
    """Say (stderr) that the rows are weighted and which loss is shown; returns ``class_weight``."""
    if not (quiet or cfg.quiet or cfg.json):
        print(f"xpnet: note: --class-weight {cfg.class_weight}: each row's loss is weighted by its class, and the train "
              "loss shown is the weighted one (validation and test losses are not weighted)", file=sys.stderr)
    return class_weight


def _train_one(cfg: TrainConfig, data, layers, rows, classes=None, record: dict | None = None, quiet: bool = False,
               start=None, comm=None):
    """Build (or take ``start``, a loaded model to fine-tune) and fit one model on ``rows`` (the
    ``(X, y, validation)`` of :func:`_split_validation`, split once by the caller), across the
    ranks of ``comm`` if given; returns (model, history, seconds). ``classes`` and ``record`` go
    into the model file."""
    from ..model import MLP
    from ..train import EarlyStopping, ReduceLROnPlateau, fit

    X, y, val = rows
    if start is not None:
        model = start
    else:
        kind = cfg.scale or ("auto" if cfg.data else "none")
        regression = cfg.output == "identity" and classes is None
        with _layer_flags(cfg, layers, set()):  # checked before the data was read: a last net
            model = MLP(layers, activation=cfg.activation, output=cfg.output, loss=cfg.loss, init=cfg.init,
                        huber_delta=cfg.huber_delta, label_smoothing=cfg.label_smoothing, device=cfg.device,
                        dtype=cfg.dtype, seed=cfg.seed,
                        classes=classes if cfg.output != "identity" or len(layers) and layers[-1] > 1 else None,
                        scale=kind, target_scale="standard" if regression else None,
                        multilabel=True if data.y_train.ndim == 2 else None,
                        dropout=list(cfg.dropout) if isinstance(cfg.dropout, tuple) else cfg.dropout,
                        norm=cfg.norm, residual=cfg.residual)
        # The model learns its input and target scaling from the rows it trains on (not the
        # validation or test rows), as fit would: now, so that the note can say what it did.
        model.prepare(X, y)
        if model.scaler is not None and kind == "auto" and not (quiet or cfg.quiet):
            print(f"xpnet: note: features span [{float(X.min()):g}, {float(X.max()):g}]: {model.scaler.describe()} "
                  "on the training rows (--scale auto; --scale none keeps them as they are)", file=sys.stderr)
    model.data_info = None if record is None else {**record, "val_fraction": _val_fraction(cfg)}
    if cfg.report == "nielsen":
        if len(data.X_test) == 0:
            raise UsageError("--preset nielsen reports on the test rows every epoch, and --test-fraction 0 leaves "
                             "none: give a --test-fraction above 0")
        val = (data.X_test, data.y_test)  # network.py reports on the test data every epoch
    callbacks = [EarlyStopping(cfg.early_stopping)] if cfg.early_stopping else []
    optimizer = _make_optimizer(cfg)
    if cfg.reduce_on_plateau:
        callbacks.append(ReduceLROnPlateau(optimizer, patience=cfg.reduce_on_plateau))
    if cfg.log and (comm is None or comm.rank == 0):  # rank 0 writes the files
        from ..logs import CSVLogger

        callbacks.append(CSVLogger(cfg.log))
    if cfg.tensorboard and (comm is None or comm.rank == 0):
        from ..logs import TensorBoardLogger

        callbacks.append(TensorBoardLogger(cfg.tensorboard))
    progress = None if quiet else progress_display(cfg, len(data.X_test))
    if progress:
        callbacks.append(progress)
    t0 = time.perf_counter()
    with as_flags(("resume", "--resume", cfg.resume), ("path", "--resume", cfg.resume),
                   ("checkpoint", "--checkpoint", cfg.checkpoint), ("path", "--checkpoint", cfg.checkpoint)):
        history = fit(model, X, y, optimizer, epochs=cfg.epochs, batch_size=cfg.batch_size,
                      validation_data=val, seed=cfg.seed, verbose=False, callbacks=callbacks,
                      checkpoint=cfg.checkpoint, checkpoint_every=cfg.checkpoint_every, resume=cfg.resume,
                      allow_changes=cfg.allow_changes, comm=comm, class_weight=_class_weight(cfg, model, quiet),
                      config={"flags": {k: v for k, v in dataclasses.asdict(cfg).items()
                                        if k not in ("resume", "allow_changes", "threads")}})
    return model, history, time.perf_counter() - t0


def _fine_tune_start(cfg: TrainConfig, explicit: set[str], data):
    """The model named by --init-from, checked against the data and the flags given."""
    from ..model import load

    # With --resume too (the command an interrupted fine-tune prints), this model gives the
    # architecture, classes and input scaling, and the checkpoint then gives the weights.
    check_npz("--init-from", cfg.init_from, "an xpnet model file or checkpoint")
    with as_flags(("path", "--init-from", cfg.init_from)):
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
    if "dropout" in explicit and _per_layer(cfg.dropout, len(model.blocks)) != [b.dropout for b in model.blocks]:
        raise UsageError(f"--dropout {_rates_text(cfg.dropout)} differs from the dropout "
                         f"{_rates_text(model.dropout)} of {where}: the architecture comes from the file")
    if "norm" in explicit and cfg.norm != model.norm:
        raise UsageError(f"--norm {cfg.norm} differs from the norm {model.norm or 'none'} of {where}: the architecture "
                         "comes from the file")
    if "residual" in explicit and not model.residual:
        raise UsageError(f"--residual: {where} has no residual skips: the architecture comes from the file")
    if "scale" in explicit:
        raise UsageError(f"--scale does not apply with {where}: the model keeps the input scaling it was trained with")
    return model


def _per_layer(dropout, hidden: int) -> list[float]:
    """--dropout as one rate per hidden layer."""
    return [float(p) for p in dropout] if isinstance(dropout, (list, tuple)) else [float(dropout)] * hidden


def _from_model(cfg: TrainConfig, model) -> TrainConfig:
    """The run's settings with the architecture of ``model`` (--init-from): what is printed and recorded."""
    dropout = tuple(model.dropout) if isinstance(model.dropout, list) else model.dropout
    return dataclasses.replace(cfg, activation=model.activation, dropout=dropout, norm=model.norm, residual=model.residual)


def cmd_train(args: argparse.Namespace) -> int:
    cfg = train_config(args, "train")
    comm = None
    if cfg.distributed:  # every rank runs this command; rank 0 alone prints and writes files
        from ..distributed import world

        comm = world()
        cfg = dataclasses.replace(cfg, device=comm.device_for_rank(cfg.device))  # cuda -> cuda:<local rank % GPUs>
    explicit, preset = set(vars(args)), getattr(args, "preset", None)
    if not cfg.init_from:  # with it, the architecture comes from the file (compared below)
        _check_layer_flags(cfg, explicit, preset)
    check_paths([("--data", cfg.data), ("--resume", cfg.resume), ("--init-from", cfg.init_from)],
                 [("--save", cfg.save), ("--checkpoint", cfg.checkpoint), ("--log", cfg.log),
                  *plot_outputs("train", cfg.plot)],
                 allowed={("--checkpoint", "--resume")})
    if cfg.save:
        check_writable(cfg.save, "--save")  # fail before training, not after
    if cfg.checkpoint:
        check_writable(cfg.checkpoint, "--checkpoint")
    if cfg.log:
        check_writable(cfg.log, "--log")
    if cfg.tensorboard:  # the extra installed and the directory writable, before any work
        from ..logs import TensorBoardLogger

        with as_flags(("logdir", "--tensorboard", cfg.tensorboard)):
            TensorBoardLogger(cfg.tensorboard)
    if cfg.resume and not Path(cfg.resume).is_file():
        raise UsageError(f"--resume {cfg.resume!r} is not a file: expected a checkpoint written by --checkpoint")
    check_npz("--resume", cfg.resume, "an xpnet checkpoint")
    if cfg.allow_changes and not cfg.resume:
        raise UsageError("--allow-changes applies only with --resume")
    plot_dir = check_plot_dir(cfg.plot)
    data, classes, record = load_data(cfg.dataset, cfg.data, cfg.label_column, cfg.seed, cfg.test_fraction,
                                       cfg.data_dir, cfg.mirror, cfg.delimiter, cfg.quiet)
    cfg, data, classes = _choose_task(cfg, data, classes, _given(args))
    start = _fine_tune_start(cfg, explicit, data) if cfg.init_from else None
    if start is not None:
        cfg = _from_model(cfg, start)
    layers = tuple(start.sizes) if start is not None else _layers_for(cfg, data)
    rows = _split_validation(data.X_train, data.y_train, _val_fraction(cfg), cfg.seed)  # once: counted and trained on
    _check_layer_flags(cfg, explicit, preset, layers, len(rows[0]))  # with the features and rows known
    val = rows[2]
    counts = {"train_samples": len(rows[0]), "validation_samples": 0 if val is None else len(val[1]),
              "test_samples": len(data.X_test)}
    threads = blas_threads()
    if not cfg.quiet and not cfg.json and cfg.report != "nielsen":
        held = f" / {counts['validation_samples']} validation" if val is not None else ""
        print(f"xpnet: {data.name}, {counts['train_samples']} train{held} / {counts['test_samples']} test, "
              f"layers {list(layers)}{layers_text(cfg)}, {cfg.optimizer}, {cfg.epochs} epochs, device {cfg.device}, "
              f"{threads if threads is not None else 'unknown'} BLAS thread{'s' if threads != 1 else ''}"
              + (f" per rank, {comm.size} ranks" if comm is not None else ""), flush=True)
    model, history, seconds = _train_one(cfg, data, layers, rows, classes, record, start=start, comm=comm)
    if comm is not None and comm.rank != 0:
        return 0  # every rank holds the same model and history: rank 0 reports and saves
    tested = len(data.X_test) > 0  # --test-fraction 0 holds out nothing
    test = model.evaluate(data.X_test, data.y_test) if tested else {"loss": None, "accuracy": None}
    regression = None if not tested or "accuracy" in test else score_regression(model, data.X_test, data.y_test)
    # The end of a run, most valuable first: the model, then the results, then the figures
    # (optional; a failure there is reported last and never costs the model or the report).
    if cfg.save:
        with as_flags(("path", "--save", cfg.save)):
            model.save(cfg.save)  # atomic: the old file is replaced only now, whole
    summary = {
        "dataset": data.name,
        "device": model.backend.label,
        "layers": list(layers),
        **layer_settings(model),
        **counts,
        "epochs": len(history.epoch),
        "stopped_early": history.stopped_early,
        "best_epoch": history.best_epoch,  # the epoch whose weights were kept (early stopping), else null
        "train_loss": history.train_loss[-1],  # weighted with --class-weight (train_loss_weighted)
        **({"class_weight": cfg.class_weight, "train_loss_weighted": True} if cfg.class_weight else {}),
        "final_lr": history.lr[-1],  # the last step's learning rate (after the schedule, warm-up, plateaus)
        "train_accuracy": history.train_accuracy[-1] if history.train_accuracy else None,
        "test_loss": test["loss"],
        "test_accuracy": test.get("accuracy"),  # multi-label: the subset accuracy (rows with every label right)
        **({"test_balanced_accuracy": test["balanced_accuracy"]} if "balanced_accuracy" in test else {}),
        **({"test_hamming_loss": test["hamming_loss"]} if "hamming_loss" in test else {}),
        **({f"test_{k}": v for k, v in regression.items()} if regression is not None else {}),
        "seconds": seconds,
        "samples_per_second": sum(history.samples_per_second) / len(history.samples_per_second),
        "blas_threads": threads,
        "ranks": 1 if comm is None else comm.size,
        **({"allreduce_seconds": comm.allreduce_seconds} if comm is not None else {}),
    }
    if regression is not None:
        warn_if_worse_than_mean(regression, "the test rows")
    if cfg.json:
        print(json.dumps(summary))
    else:  # the result lines are printed even with --quiet, which silences only progress
        if cfg.early_stopping and not cfg.quiet:
            print(early_stopping_line(cfg, history))
        if not tested:
            print(f"no test score: --test-fraction 0 trained on every row (train loss {history.train_loss[-1]:.4f}, "
                  f"{seconds:.1f}s)")
        elif regression is not None:
            print(f"test {format_regression(regression)}  test loss {test['loss']:.4f}  ({seconds:.1f}s)")
        elif "hamming_loss" in test:
            print(f"test accuracy {100 * test['accuracy']:.2f}% (rows with every label right)  Hamming loss "
                  f"{test['hamming_loss']:.4f}  test loss {test['loss']:.4f}  ({seconds:.1f}s)")
        elif cfg.class_weight:  # the score the weights are for, too
            print(f"test accuracy {100 * test['accuracy']:.2f}%  balanced accuracy {100 * test['balanced_accuracy']:.2f}%  "
                  f"test loss {test['loss']:.4f}  ({seconds:.1f}s)")
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
        report_figures(paths, plot_dir, cfg.json)
    return 0


def _train_plots(model, history, data, plot_dir: Path) -> list[Path]:
    from .. import plot

    paths = [plot.history_curves(history, plot_dir / "history.png")]  # in the order drawn
    if len(data.X_test) == 0:  # --test-fraction 0: the other figures are of the test rows
        return paths
    if data.X_train.shape[1] == 2:
        paths.append(plot.decision_boundary(model, data.X_test, data.y_test, plot_dir / "decision_boundary.png"))
    if model.is_classifier and not model.multilabel:  # one class per row: a confusion matrix
        pred, cm, _, names = class_report(model, data.X_test, data.y_test)
        paths.append(plot.confusion(cm, plot_dir / "confusion.png", names))
        if data.X_train.shape[1] == 784:
            truth = model.encode_labels(data.y_test)
            paths.append(plot.misclassified_digits(data.X_test, truth, pred, plot_dir / "misclassified.png"))
    return paths


def cmd_sweep(args: argparse.Namespace) -> int:
    cfg = train_config(args, "sweep")
    if cfg.layers is not None:
        raise UsageError("sweep takes --hidden, not --layers: each net has one hidden layer of each width")
    explicit, preset = set(vars(args)), getattr(args, "preset", None)
    _check_layer_flags(cfg, explicit, preset, hidden=cfg.hidden[:1])  # one hidden layer each
    check_paths([("--data", cfg.data)], plot_outputs("sweep", cfg.plot))
    plot_dir = check_plot_dir(cfg.plot)
    data, classes, record = load_data(cfg.dataset, cfg.data, cfg.label_column, cfg.seed, cfg.test_fraction,
                                       cfg.data_dir, cfg.mirror, cfg.delimiter, cfg.quiet)
    cfg, data, classes = _choose_task(cfg, data, classes, _given(args))
    rows, models = [], []
    regression = data.n_classes == 0  # a regressor's rows show R², not accuracy
    score, shown = ("r2", "R²") if regression else ("accuracy", "acc")
    rows_trained = _split_validation(data.X_train, data.y_train, _val_fraction(cfg), cfg.seed)  # once for every width
    for width in cfg.hidden:
        _check_layer_flags(cfg, explicit, preset, _layers_for(cfg, data, hidden=(width,)), len(rows_trained[0]))
    if not cfg.json:
        print(f"{'hidden':>6}  {'train ' + shown:>9}  {'test ' + shown:>8}  {'test loss':>9}  {'seconds':>7}", flush=True)
    for width in cfg.hidden:
        layers = _layers_for(cfg, data, hidden=(width,))
        model, history, seconds = _train_one(cfg, data, layers, rows_trained, classes, record, quiet=True)
        tested = len(data.X_test) > 0  # --test-fraction 0 holds out nothing
        evaluated = model.evaluate(data.X_test, data.y_test) if tested else {}  # loss (and accuracy)
        if regression:
            train = score_regression(model, data.X_train, data.y_train)
            test = score_regression(model, data.X_test, data.y_test) if tested else {}
        else:
            train, test = model.evaluate(data.X_train, data.y_train), evaluated
        row = {"hidden": width, f"train_{score}": train.get(score), f"test_{score}": test.get(score),
               "test_loss": evaluated.get("loss"), "seconds": seconds}
        rows.append(row)
        models.append(model)
        if not cfg.json:
            def fmt(a):
                return "n/a" if a is None else f"{a:.4f}" if regression else f"{100 * a:.2f}%"

            loss = "n/a" if row["test_loss"] is None else f"{row['test_loss']:.4f}"
            print(f"{width:>6}  {fmt(row[f'train_{score}']):>9}  {fmt(row[f'test_{score}']):>8}  "
                  f"{loss:>9}  {seconds:>7.2f}", flush=True)
    if plot_dir is not None:
        from .. import plot

        if data.X_train.shape[1] == 2 and not regression:
            titles = [f"{r['hidden']} hidden: {100 * (r['test_accuracy'] or 0):.1f}%" for r in rows]
            path = plot.boundary_grid(models, titles, data.X_test, data.y_test, plot_dir / "sweep_boundaries.png")
        else:
            path = plot.accuracy_vs_width([r["hidden"] for r in rows], [r[f"train_{score}"] or 0 for r in rows],
                                          [r[f"test_{score}"] or 0 for r in rows], plot_dir / "sweep_accuracy.png",
                                          metric=shown if regression else "accuracy")
    if cfg.json:
        print(json.dumps({"dataset": data.name, "device": cfg.device, "hidden": list(cfg.hidden), **layer_settings(cfg),
                          "results": rows,
                          "blas_threads": blas_threads()}))
    if plot_dir is not None:
        report_figures([path], plot_dir, cfg.json)
    return 0
