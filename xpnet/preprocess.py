"""Input scaling that a model carries with it: fitted on the training rows, saved in the model file.

A :class:`Scaler` maps each feature ``x`` to ``(x - shift) * factor``:

- ``standard``: ``shift`` is the mean, ``factor`` is ``1 / std``; a constant feature is only
  centred (``factor`` 1), so nothing divides by zero.
- ``minmax``: ``shift`` is the minimum, ``factor`` is ``1 / (max - min)``: the training rows land
  in ``[0, 1]``; a constant feature maps to 0.

:func:`fit_scaler` also knows ``auto`` (leave data that already lies in ``[-1, 1]`` alone,
standardize anything else) and ``none``. Statistics are computed on the host in float64.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCALE_CHOICES = ("auto", "none", "standard", "minmax")


class Scaler:
    """A fitted per-feature affine input transform ``(x - shift) * factor``.

    Args:
        kind: ``"standard"`` or ``"minmax"`` (how it was fitted; kept for reports).
        shift, factor: ``(n_features,)`` finite numbers; ``factor`` must be non-zero.
    """

    KINDS = ("standard", "minmax")

    def __init__(self, kind: str, shift: Any, factor: Any):
        if kind not in self.KINDS:
            raise ValueError(f"kind={kind!r} is not known: expected one of {', '.join(map(repr, self.KINDS))}")
        shift = np.asarray(shift, dtype=np.float64)
        factor = np.asarray(factor, dtype=np.float64)
        if shift.ndim != 1 or factor.shape != shift.shape or shift.size == 0:
            raise ValueError(f"shift and factor have shapes {shift.shape} and {factor.shape}: "
                             "expected two equal 1-D shapes (n_features,)")
        if not (np.all(np.isfinite(shift)) and np.all(np.isfinite(factor)) and np.all(factor != 0)):
            raise ValueError("shift and factor must be finite, and factor non-zero")
        self.kind, self.shift, self.factor = kind, shift, factor

    @property
    def n_features(self) -> int:
        return self.shift.shape[0]

    def transform(self, X) -> np.ndarray:
        """``(X - shift) * factor`` on the host, float64, ``(m, n_features)``."""
        return (np.asarray(X, dtype=np.float64) - self.shift) * self.factor

    def describe(self) -> str:
        """One phrase for reports, e.g. ``standardized per feature (fitted on 8000 rows)``."""
        return {"standard": "standardized per feature (mean 0, std 1)",
                "minmax": "min-max scaled per feature to [0, 1]"}[self.kind]

    def __eq__(self, other) -> bool:
        return (isinstance(other, Scaler) and self.kind == other.kind
                and np.array_equal(self.shift, other.shift) and np.array_equal(self.factor, other.factor))

    def __repr__(self) -> str:
        return f"Scaler({self.kind!r}, n_features={self.n_features})"


def fit_scaler(X: Any, kind: str = "standard") -> Scaler | None:
    """Fit a :class:`Scaler` on the rows of ``X`` ``(m, n)``; ``None`` for no scaling.

    ``kind``: ``standard``, ``minmax``, ``none`` (returns ``None``) or ``auto``
    (``None`` when every value already lies in ``[-1, 1]``, else ``standard``).
    """
    if kind not in SCALE_CHOICES:
        raise ValueError(f"scale={kind!r} is not known: expected one of {', '.join(map(repr, SCALE_CHOICES))}")
    if kind == "none":
        return None
    from .backend import to_numpy
    from .validate import as_array, check_features

    X = as_array(X, "X")
    return scaler_for(to_numpy(check_features(X, X.shape[1] if X.ndim == 2 else 0)), kind)  # numeric, 2-D, finite


def scaler_for(X: np.ndarray, kind: str) -> Scaler | None:
    """:func:`fit_scaler` for a host ``X`` ``(m, n)`` already checked (numbers, 2-D, non-empty,
    finite), as :meth:`~xpnet.MLP.prepare` has it: the check is not made twice."""
    if kind not in SCALE_CHOICES:
        raise ValueError(f"scale={kind!r} is not known: expected one of {', '.join(map(repr, SCALE_CHOICES))}")
    if kind == "none":
        return None
    lo, hi = X.min(axis=0).astype(np.float64), X.max(axis=0).astype(np.float64)
    if kind == "auto":
        if lo.min() >= -1.0 and hi.max() <= 1.0:
            return None
        kind = "standard"
    if kind == "minmax":
        with np.errstate(over="ignore"):
            spread = hi - lo  # inf for values near float64's limits: a span too wide to divide by
        return Scaler("minmax", lo, _reciprocal(spread))
    with np.errstate(over="ignore", invalid="ignore"):
        shift, spread = X.mean(axis=0, dtype=np.float64), X.std(axis=0, dtype=np.float64)
    if not (np.all(np.isfinite(shift)) and np.all(np.isfinite(spread))):
        # values near float64's limits (1e300) overflow the sums: take the moments of X / peak instead
        peak = np.maximum(np.abs(lo), np.abs(hi))
        peak[peak == 0] = 1.0
        scaled = X / peak
        shift = scaled.mean(axis=0, dtype=np.float64) * peak
        spread = scaled.std(axis=0, dtype=np.float64) * peak
    return Scaler("standard", shift, _reciprocal(spread))


def _reciprocal(spread: np.ndarray) -> np.ndarray:
    """``1 / spread``, and 1 where the feature is constant (spread 0, or too small to invert)."""
    with np.errstate(divide="ignore", over="ignore"):
        inv = 1.0 / spread
    return np.where((spread > 0) & np.isfinite(inv), inv, 1.0)
