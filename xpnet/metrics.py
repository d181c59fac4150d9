"""Classification and regression metrics on the host (NumPy, after one read of the predictions)."""

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


def precision_recall_f1(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Per-class ``precision``, ``recall``, ``f1`` (float64, ``(k,)``) and ``support`` (int64)
    from a confusion matrix (row = true class, column = predicted class).

    precision = TP / (TP + FP), NaN for a class never predicted; recall = TP / (TP + FN)
    (per-class accuracy), NaN for a class with no samples; F1 = 2 TP / (2 TP + FP + FN), their
    harmonic mean, NaN only for a class that is neither in the truth nor predicted.
    """
    cm = np.asarray(cm, dtype=np.int64)
    return _scores(np.diag(cm), cm.sum(axis=0), cm.sum(axis=1))


def multilabel_scores(Y_true, Y_pred) -> dict[str, np.ndarray]:
    """Per-label ``precision``, ``recall``, ``f1`` and ``support`` (as :func:`precision_recall_f1`)
    of 0/1 rows ``(m, k)``: label ``j``'s true positives are the rows where both have it."""
    Y_true, Y_pred = np.asarray(Y_true) >= 0.5, np.asarray(Y_pred) >= 0.5
    return _scores(np.sum(Y_true & Y_pred, axis=0), Y_pred.sum(axis=0), Y_true.sum(axis=0).astype(np.int64))


def _scores(tp: np.ndarray, predicted: np.ndarray, support: np.ndarray) -> dict[str, np.ndarray]:
    """Precision, recall and F1 from true positives, predicted and true counts ``(k,)``."""
    tp = tp.astype(np.float64)
    f1_den = predicted + support  # 2 TP + FP + FN
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "precision": np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan),
            "recall": np.where(support > 0, tp / np.maximum(support, 1), np.nan),
            "f1": np.where(f1_den > 0, 2 * tp / np.maximum(f1_den, 1), np.nan),
            "support": support,
        }


def macro_average(values: np.ndarray, present: np.ndarray) -> float | None:
    """Unweighted mean of a per-class metric over the ``present`` classes (those in the truth
    or the predictions), an undefined (NaN) value counting as 0, as scikit-learn's
    ``zero_division=0``; ``None`` when no class is present."""
    chosen = np.asarray(values, dtype=np.float64)[np.asarray(present, dtype=bool)]
    return float(np.nan_to_num(chosen, nan=0.0).mean()) if chosen.size else None


def regression_scores(y_true, y_pred) -> dict[str, float | None]:
    """``{"mae", "rmse", "r2"}`` of real-valued predictions, on the host in float64.

    ``y_true`` and ``y_pred`` hold the same number of values (``(m,)``, ``(m, 1)`` or
    ``(m, k)``; reshaped to ``y_pred``'s shape). MAE and RMSE are over every value; R² =
    1 - SS_res / SS_tot per output column, averaged over the columns, and ``None`` where a
    column's targets are constant (SS_tot = 0: R² is undefined).
    """
    pred = np.asarray(y_pred, dtype=np.float64)
    pred = pred.reshape(len(pred), -1)  # (m, k)
    true = np.asarray(y_true, dtype=np.float64).reshape(pred.shape)
    err = pred - true
    ss_res = (err**2).sum(axis=0)
    ss_tot = ((true - true.mean(axis=0)) ** 2).sum(axis=0)
    r2 = None if np.any(ss_tot == 0) else float(np.mean(1.0 - ss_res / ss_tot))
    return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err**2).mean())), "r2": r2}


def format_class_report(names, scores: dict[str, np.ndarray], macro: dict[str, float | None], what: str = "class") -> str:
    """Per-class precision, recall, F1 (as percentages; n/a where undefined) and support as
    aligned text, one row per class in ``names`` (``what`` heads their column: ``"label"`` for
    multi-label) and a last row of macro averages."""
    def pct(v):
        return "n/a" if v is None or v != v else f"{100 * v:.1f}%"

    names = [str(n) for n in names]
    first = max(5, *map(len, names))
    lines = [f"{what:>{first}}  {'precision':>9}  {'recall':>7}  {'f1':>7}  {'support':>7}"]
    for i, name in enumerate(names):
        lines.append(f"{name:>{first}}  {pct(scores['precision'][i]):>9}  {pct(scores['recall'][i]):>7}  "
                     f"{pct(scores['f1'][i]):>7}  {int(scores['support'][i]):>7}")
    lines.append(f"{'macro':>{first}}  {pct(macro['precision']):>9}  {pct(macro['recall']):>7}  "
                 f"{pct(macro['f1']):>7}  {int(np.sum(scores['support'])):>7}")
    return "\n".join(lines)
