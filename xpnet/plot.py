"""Figures with matplotlib (the ``plot`` extra), drawn off-screen with the Agg backend.

Each function writes one PNG atomically and returns its path. Inputs are host
NumPy arrays; models are evaluated on their own device and read back once.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .backend import to_numpy
from .io import atomic_write

PLOT_HINT = 'plotting needs matplotlib: pip install "matplotlib>=3.7" (from a checkout, pip install ".[plot]")'
DPI = 100


def pyplot():
    """matplotlib.pyplot on the off-screen Agg backend; a ValueError with the install hint without matplotlib."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError(f"--plot: {PLOT_HINT}") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    plt = pyplot()
    path = Path(path)
    with atomic_write(path) as f:
        fig.savefig(f, format="png", dpi=DPI)
    plt.close(fig)
    return path


def history_curves(history, path) -> Path:
    """Loss (train, validation) and accuracy curves per epoch, side by side (1000 x 400 px);
    a regressor, which has no accuracy, gets the loss panel alone (500 x 400 px)."""
    plt = pyplot()
    accuracy = bool(history.train_accuracy or history.val_accuracy)
    fig, axes = plt.subplots(1, 2 if accuracy else 1, figsize=(10 if accuracy else 5, 4), squeeze=False)
    ax_loss = axes[0, 0]
    ax_loss.plot(history.epoch, history.train_loss, label="train")
    if history.val_loss:
        ax_loss.plot(history.epoch, history.val_loss, label="validation")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_loss.legend()
    if accuracy:
        ax_acc = axes[0, 1]
        if history.train_accuracy:
            ax_acc.plot(history.epoch, history.train_accuracy, label="train")
        if history.val_accuracy:
            ax_acc.plot(history.epoch, history.val_accuracy, label="validation")
        ax_acc.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        ax_acc.legend()
    fig.tight_layout()
    return _save(fig, path)


def _grid(X: np.ndarray, steps: int = 200):
    lo, hi = X.min(axis=0), X.max(axis=0)
    pad = 0.1 * (hi - lo) + 1e-6
    xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], steps)
    ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], steps)
    gx, gy = np.meshgrid(xs, ys)
    return gx, gy, np.stack([gx.ravel(), gy.ravel()], axis=1).astype(np.float32)


def _class_index(model, X: np.ndarray) -> np.ndarray:
    """Predicted output index per row (a classifier), or the prediction itself (a regressor):
    numbers to colour by, whatever the model's class labels are."""
    if not model.is_classifier:
        return to_numpy(model.predict(X))
    return to_numpy(model.predict_indices(X))


def _boundary(ax, model, X: np.ndarray, y: np.ndarray, title: str) -> None:
    gx, gy, points = _grid(X)
    labels = _class_index(model, points).reshape(gx.shape)
    ax.contourf(gx, gy, labels, alpha=0.35, cmap="coolwarm")
    colours = to_numpy(model.encode_labels(y)) if y.ndim == 1 else y.argmax(axis=1)
    ax.scatter(X[:, 0], X[:, 1], c=colours, s=10, cmap="coolwarm", edgecolors="k", linewidths=0.2)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def decision_boundary(model, X: np.ndarray, y: np.ndarray, path, title: str = "decision boundary") -> Path:
    """The predicted class over the plane, with the points on top (2-D data; 600 x 600 px)."""
    if X.shape[1] != 2:
        raise ValueError(f"a decision boundary needs 2-D data; X has {X.shape[1]} features")
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 6))
    _boundary(ax, model, X, y, title)
    fig.tight_layout()
    return _save(fig, path)


def boundary_grid(models: Sequence, titles: Sequence[str], X: np.ndarray, y: np.ndarray, path) -> Path:
    """Decision boundaries of several models, 3 per row (the hidden-width sweep; 300 px per panel)."""
    plt = pyplot()
    cols = min(3, len(models))
    rows = -(-len(models) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax in axes.ravel()[len(models):]:
        ax.set_axis_off()
    for ax, model, title in zip(axes.ravel(), models, titles):
        _boundary(ax, model, X, y, title)
    fig.tight_layout()
    return _save(fig, path)


def accuracy_vs_width(widths: Sequence[int], train_acc: Sequence[float], test_acc: Sequence[float], path,
                      metric: str = "accuracy") -> Path:
    """Train and test accuracy (or another ``metric``, such as a regressor's R²) against hidden
    width, log-scaled x (600 x 400 px)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(widths, train_acc, "o-", label="train")
    ax.plot(widths, test_acc, "s-", label="test")
    ax.set_xscale("log")
    ax.set(xlabel="hidden units", ylabel=metric, title=f"{metric} vs hidden width")
    ax.legend()
    fig.tight_layout()
    return _save(fig, path)


def confusion(cm: np.ndarray, path, names: Sequence[str] | None = None) -> Path:
    """The confusion matrix as a heat map with counts (600 x 600 px); ``names`` label the classes."""
    plt = pyplot()
    k = cm.shape[0]
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.imshow(cm, cmap="Blues")
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(cm[i, j])), ha="center", va="center",
                    color="white" if cm[i, j] > cm.max() / 2 else "black", fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title="confusion matrix", xticks=range(k), yticks=range(k))
    if names is not None:
        ax.set_xticklabels(names, rotation=90 if max(map(len, names)) > 3 else 0)
        ax.set_yticklabels(names)
    fig.tight_layout()
    return _save(fig, path)


def misclassified_digits(X: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, path, n: int = 36) -> Path:
    """Up to ``n`` misclassified 28x28 digits, titled "true -> predicted" (600 x 600 px)."""
    plt = pyplot()
    wrong = np.flatnonzero(y_true != y_pred)[:n]
    side = 6
    fig, axes = plt.subplots(side, side, figsize=(6, 6))
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, i in zip(axes.ravel(), wrong):
        ax.imshow(X[i].reshape(28, 28), cmap="gray_r")
        ax.set_title(f"{y_true[i]}->{y_pred[i]}", fontsize=8)
    fig.suptitle(f"{len(np.flatnonzero(y_true != y_pred))} misclassified (first {len(wrong)} shown)")
    fig.tight_layout()
    return _save(fig, path)
