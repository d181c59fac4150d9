"""Classification metrics on the host (after one read of the predictions)."""

from __future__ import annotations

import numpy as np


def confusion_matrix(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``(n_classes, n_classes)`` counts: row = true class, column = predicted class."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def per_class_accuracy(cm: np.ndarray) -> np.ndarray:
    """Recall per class: the diagonal over the row sums (NaN for a class with no samples)."""
    totals = cm.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(cm) / np.maximum(totals, 1), np.nan)


def format_confusion(cm: np.ndarray, names=None) -> str:
    """The matrix as aligned text, true classes down, predicted across; ``names`` label the classes."""
    k = cm.shape[0]
    names = [str(j) for j in range(k)] if names is None else [str(n) for n in names]
    width = max(len(str(int(cm.max()))), *map(len, names), 3)
    first = max(9, *map(len, names))
    corner = "true\\pred"
    head = f"{corner:>{first}} " + " ".join(f"{n:>{width}}" for n in names)
    rows = [f"{names[i]:>{first}} " + " ".join(f"{int(v):>{width}}" for v in cm[i]) for i in range(k)]
    return "\n".join([head, *rows])
