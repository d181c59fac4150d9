"""What the commands print: progress bars or lines, the result lines, class and
regression reports, and the line naming the figures written."""

from __future__ import annotations

import sys
from pathlib import Path

from .flags import TrainConfig


def layers_text(cfg) -> str:
    """The hidden layers' settings for a header line, where any is set: `` (gelu, dropout 0.2,
    batch norm, residual)``; ``cfg`` is a :class:`TrainConfig` or an :class:`~xpnet.MLP`."""
    dropout = cfg.dropout
    rates = ",".join(f"{p:g}" for p in dropout) if isinstance(dropout, (list, tuple)) else f"{dropout:g}" if dropout else ""
    parts = [f"dropout {rates}" if rates else "", f"{cfg.norm} norm" if cfg.norm else "",
             "residual" if cfg.residual else ""]
    parts = [p for p in parts if p]
    return f" ({', '.join([cfg.activation, *parts])})" if parts else ""


def layer_settings(model) -> dict:
    """The hidden layers' settings for --json, defaults too: activation, dropout (a rate, or a list of
    one per hidden layer), norm (null, "batch" or "layer") and residual; ``model`` is an
    :class:`~xpnet.MLP` or a :class:`TrainConfig`."""
    dropout = list(model.dropout) if isinstance(model.dropout, (list, tuple)) else model.dropout
    return {"activation": model.activation, "dropout": dropout, "norm": model.norm, "residual": bool(model.residual)}


def progress_display(cfg: TrainConfig, n_test: int):
    """The progress display for this run: bars on a terminal, lines otherwise, nothing when quiet."""
    from ..train import Callback, format_epoch

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


def report_figures(paths, plot_dir: Path, json_out: bool) -> None:
    """One line naming the figures written: on stdout, or stderr with --json (stdout's last
    line stays the JSON object)."""
    names = ", ".join(Path(p).name for p in paths)
    count = f"{len(paths)} figure{'s' if len(paths) != 1 else ''}"
    print(f"wrote {count} to {plot_dir}: {names}" if paths else f"wrote no figures to {plot_dir}: nothing to draw",
          file=sys.stderr if json_out else sys.stdout)


def class_report(model, X, y):
    """Host-side (predicted output indices, confusion matrix, per-class accuracy, class names)."""
    import numpy as np

    from ..backend import to_numpy
    from ..metrics import confusion_matrix, per_class_accuracy

    pred = to_numpy(model.predict_indices(X))
    truth = to_numpy(model.encode_labels(y)) if y.ndim == 1 else y.argmax(axis=1)
    k = model.n_label_values
    names = [str(c) for c in model.classes] if model.classes is not None else [str(j) for j in range(k)]
    cm = confusion_matrix(truth.astype(np.int64), pred.astype(np.int64), k)
    return pred, cm, per_class_accuracy(cm), names


def early_stopping_line(cfg: TrainConfig, history) -> str:
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


def score_regression(model, X, y) -> dict:
    """MAE, RMSE and R² of a regressor's outputs against real targets (host NumPy)."""
    from ..backend import to_numpy
    from ..metrics import regression_scores

    return regression_scores(y, to_numpy(model.forward(X)))


def warn_if_worse_than_mean(scores: dict, rows: str) -> None:
    """Say so (stderr) when a regressor does worse than the constant that predicts the mean (R² < 0)."""
    r2 = scores.get("r2")
    if r2 is not None and r2 < 0:
        print(f"xpnet: warning: R² {r2:.4g} on {rows}: worse than always predicting the targets' mean (R² 0); "
              "the network has not learned them (try a smaller --lr, more --epochs, or check the data)",
              file=sys.stderr)


def format_regression(scores: dict) -> str:
    r2 = "n/a (constant targets)" if scores["r2"] is None else f"{scores['r2']:.4f}"
    return f"MAE {scores['mae']:.4g}  RMSE {scores['rmse']:.4g}  R² {r2}"
