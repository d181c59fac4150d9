"""``xpnet evaluate`` and ``xpnet predict``: a saved model on the rows of a file or a data set."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from ..io import check_writable
from ..threads import blas_threads
from .files import as_flags, check_npz, check_paths, check_plot_dir, plot_outputs, print_notes, read_labelled_file
from .flags import UsageError, label_columns
from .reports import (
    class_report,
    format_regression,
    layer_settings,
    layers_text,
    report_figures,
    score_regression,
    warn_if_worse_than_mean,
)


def _saved_model(args: argparse.Namespace):
    """The model named by --model, with the flag (not the library's ``path=``) in any error."""
    from ..model import load

    check_npz("--model", args.model, "an xpnet model file")
    with as_flags(("path", "--model", args.model)):
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

    from ..data import load_dataset
    from ..data import split as split_rows

    record = model.data_info or {}
    split = getattr(args, "split", None)
    data = getattr(args, "data", None)
    if data is not None:
        label_column = label_columns(args.label_column) if hasattr(args, "label_column") else \
            record.get("label_column", -1)
        delimiter = getattr(args, "delimiter", record.get("delimiter"))
        identity: dict = {}
        X, y = read_labelled_file(data, label_column, delimiter, getattr(args, "quiet", False) or getattr(args, "json", False),
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
        d = split_rows(X, y, record["test_fraction"], name, 0, record["seed"])
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

    from ..backend import to_numpy
    from ..metrics import format_class_report, format_confusion, macro_average, multilabel_scores, precision_recall_f1

    check_paths([("--model", args.model), ("--data", getattr(args, "data", None))],
                 plot_outputs("evaluate", getattr(args, "plot", None)))
    json_out, quiet = getattr(args, "json", False), getattr(args, "quiet", False)
    model = _saved_model(args)
    plot_dir = check_plot_dir(getattr(args, "plot", None))
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
              **layer_settings(model), "samples": len(X), "test_loss": scores["loss"], "test_accuracy": scores.get("accuracy"),
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
        _, cm, per_class, names = class_report(model, X, y)
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
        if "balanced_accuracy" in scores:  # the mean recall over the classes in the truth (scikit-learn's)
            result["balanced_accuracy"] = scores["balanced_accuracy"]
        if cm is not None:
            result["per_class_accuracy"] = [value(a) for a in per_class]  # = recall; kept for older scripts
            result["confusion_matrix"] = cm.tolist()
    else:
        regression = score_regression(model, X, y)
        result.update({f"test_{k}": v for k, v in regression.items()})
        warn_if_worse_than_mean(regression, f"{name} ({'every row' if split == 'all' else f'the {split} split'})")
    if json_out:
        print(json.dumps(result))
    else:
        if not quiet:
            rows = "every row" if split == "all" else f"the {split} split"
            print(f"{name} ({rows}): {len(X)} samples, layers {model.sizes}{layers_text(model)}, device "
                  f"{model.backend.label}")
        print(f"loss {scores['loss']:.4f}")
        if regression is not None:
            print(format_regression(regression))
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
                if "balanced_accuracy" in scores:
                    print(f"balanced accuracy {100 * scores['balanced_accuracy']:.2f}% (the mean recall over the classes "
                          "present in the labels)")
                print(format_confusion(cm, names))
    if plot_dir is not None:
        paths = []
        if cm is not None:
            from .. import plot

            paths.append(plot.confusion(cm, plot_dir / "confusion.png", names))
        report_figures(paths, plot_dir, json_out)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import csv
    import io

    import numpy as np

    from ..backend import to_numpy
    from ..data import load_file, regular_file
    from ..io import atomic_write

    out = getattr(args, "out", None)
    json_out = getattr(args, "json", False)
    if json_out and out is not None:
        raise UsageError(f"--json prints the predictions and --out {out!r} writes them to a file: use one of them")
    check_paths([("--model", args.model), ("--data", args.data)], [("--out", out)])
    if out is not None:
        if Path(out).suffix.lower() not in (".csv", ".npy"):
            raise UsageError(f"--out {out!r}: expected a .csv or .npy file name")
        check_writable(out, "--out")
    model = _saved_model(args)
    n_in, delimiter, notes = model.sizes[0], getattr(args, "delimiter", None), []
    tabular = args.data == "-" or Path(args.data).suffix.lower() in (".csv", ".tsv", ".parquet", ".feather")  # columns
    if hasattr(args, "label_column"):
        label_column = label_columns(args.label_column)
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
            if not tabular:
                raise  # a missing or unreadable file: its own one-line message
            extra = True  # e.g. a text label column that cannot be read as a feature: try it as the labels
        if extra and tabular:  # one extra column: the labels, dropped
            notes = []
            X, _ = load_file(path, label_column=label_column, delimiter=delimiter, notes=notes,
                             name=args.data)
    print_notes(notes, json_out)
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
    with as_flags(("path", "--out", out)), atomic_write(out) as f:
        if out.lower().endswith(".npy"):
            np.save(f, result)  # string labels are saved as a unicode array, readable without pickle
        else:
            fmt = "%.6g" if proba else ("%s" if result.dtype.kind == "U" else "%g")
            np.savetxt(f, result.reshape(len(result), -1), delimiter=",", fmt=fmt, header=header or "", comments="")
    print(f"wrote {len(result)} predictions to {out}", file=sys.stderr)
    return 0
