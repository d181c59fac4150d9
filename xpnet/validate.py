"""Checks at the points where users hand data to xpnet.

Each failure is a ``ValueError`` that names the argument, shows the bad value and
says what is expected. Checks run with the array's own namespace, so data that is
already on a GPU (or on array-api-strict's other device) is checked where it lives;
each check reads back one boolean, never the data. Another library's array in host
memory (a CPU torch tensor) is checked as the NumPy view of it that :func:`as_array`
makes, without a copy. Finiteness is one sum, not an ``(m, n)`` mask (:func:`all_finite`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np

from .dlpack import DLPACK_CPU, dlpack_device, host_view


def as_array(a: Any, name: str):
    """``a`` as an array: NumPy and device arrays pass through; another library's array in host
    memory (a CPU torch tensor, one that requires grad too) becomes a NumPy view of the same memory
    (:func:`~xpnet.backend.host_view`, DLPack: no copy); anything else goes through NumPy."""
    if isinstance(a, np.ndarray):
        return a
    view = host_view(a)
    if view is not a or array_api_compat.is_array_api_obj(a):
        return view
    where = dlpack_device(a)
    if where is not None and where[0] != DLPACK_CPU:  # a device array of a library array-api-compat does not know
        raise ValueError(f"{name} lives on a device (DLPack device type {where[0]}, id {where[1]}) that xpnet cannot take "
                         "it from: pass a CuPy or torch array, or a host (NumPy) copy")
    try:
        arr = np.asarray(a)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} could not be read as an array ({exc}): expected a numeric array") from None
    return arr


def _kind(a) -> str:
    """'b', 'i', 'f', or 'other' for bool, integer, real floating and the rest."""
    if isinstance(a, np.ndarray):
        k = a.dtype.kind
        return {"b": "b", "i": "i", "u": "i", "f": "f"}.get(k, "other")
    xp = array_api_compat.array_namespace(a)
    if xp.isdtype(a.dtype, "bool"):
        return "b"
    if xp.isdtype(a.dtype, "integral"):
        return "i"
    if xp.isdtype(a.dtype, "real floating"):
        return "f"
    return "other"


def _all(xp, cond) -> bool:
    return bool(xp.all(cond))


def all_finite(xp, X) -> bool:
    """Whether every value of floating ``X`` is finite, in one reduction and one scalar read: a sum is
    finite only if every term is (a NaN or an infinity carries into it), so only data whose sum
    overflows, or that holds non-finite values, pays for the elementwise test and its ``(m, n)``
    boolean mask (scikit-learn's ``_assert_all_finite`` does the same)."""
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the answer, not a warning
        if bool(xp.isfinite(xp.sum(X))):
            return True
    return _all(xp, xp.isfinite(X))


def check_features(X: Any, n_in: int, name: str = "X"):
    """Validate a feature matrix ``(m, n_in)``: numeric, 2-D, non-empty, finite.

    Returns the array (converted to NumPy if it was a list or similar).
    """
    X = as_array(X, name)
    kind = _kind(X)
    if kind not in ("i", "f"):
        raise ValueError(f"{name} has dtype {X.dtype}: expected real numbers (float or integer features)")
    if X.ndim != 2:
        raise ValueError(
            f"{name} has shape {tuple(X.shape)}: expected a 2-D array (m samples, {n_in} features)"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} has shape {tuple(X.shape)}: expected at least one sample")
    if X.shape[1] == 0:
        raise ValueError(f"{name} has shape {tuple(X.shape)}: expected at least one feature column")
    if X.shape[1] != n_in:
        raise ValueError(
            f"{name} has {X.shape[1]} features but the network's first size is {n_in}: "
            f"expected shape (m, {n_in}), or sizes[0]={X.shape[1]}"
        )
    if kind == "f":
        xp = array_api_compat.array_namespace(X)
        if not all_finite(xp, X):
            bad = int(xp.sum(xp.astype(~xp.isfinite(X), xp.int64)))
            raise ValueError(f"{name} contains {bad} NaN or infinite value(s): expected finite numbers")
    return X


def check_range(X: np.ndarray, dtype: str, name: str) -> None:
    """A ValueError naming ``name`` if host ``X`` (e.g. float64 features) holds values that ``dtype``
    (float32) turns into infinities, with the fixes: rescale, or a wider dtype. Two reductions, no
    ``abs(X)`` copy."""
    top = max(float(np.max(X)), -float(np.min(X)))
    limit = float(np.finfo(dtype).max)
    if top > limit:
        raise ValueError(f"{name} holds values up to {top:g}, beyond {dtype}'s range (+-{limit:.3g}): they would become "
                         f"infinite; rescale those features, or use dtype='float64' (--dtype float64)")


def check_targets(y: Any, m: int, n_out: int, output: str, name: str = "y"):
    """Validate targets for a network with ``n_out`` outputs and ``output`` activation.

    Accepted:
      - ``(m,)`` integer class labels in ``[0, n_out)`` when ``n_out > 1``;
      - ``(m,)`` or ``(m, 1)`` 0/1 labels for a single sigmoid unit;
      - ``(m,)`` real targets for a single identity unit;
      - ``(m, n_out)`` real targets (one-hot or probabilities for softmax, values in
        [0, 1] for sigmoid).

    Returns ``(y, is_labels)``: the array, and whether it is a 1-D vector of class labels.
    """
    y = as_array(y, name)
    kind = _kind(y)
    if kind not in ("i", "f"):
        raise ValueError(f"{name} has dtype {y.dtype}: expected numbers (integer class labels or real targets)")
    if y.ndim not in (1, 2):
        raise ValueError(f"{name} has shape {tuple(y.shape)}: expected (m,) labels or (m, {n_out}) targets")
    if y.shape[0] != m:
        raise ValueError(f"{name} has {y.shape[0]} samples but X has {m}: expected the same number of rows")
    xp = array_api_compat.array_namespace(y)
    if kind == "f" and not all_finite(xp, y):
        raise ValueError(f"{name} contains NaN or infinite values: expected finite targets")
    if y.ndim == 2:
        if y.shape[1] != n_out:
            hint = f"(m,) class labels or (m, {n_out}) targets"
            raise ValueError(f"{name} has shape {tuple(y.shape)} but the network has {n_out} outputs: expected {hint}")
        if output in ("softmax", "sigmoid") and not _all(xp, (y >= 0) & (y <= 1)):
            raise ValueError(
                f"{name} has values outside [0, 1]: a {output} output expects one-hot or probability targets"
            )
        return y, False
    # 1-D
    if n_out == 1:
        if output == "identity":
            return y, False
        if not _all(xp, (y == 0) | (y == 1)):
            lo, hi = float(xp.min(y)), float(xp.max(y))
            raise ValueError(f"{name} has values in [{lo:g}, {hi:g}]: a single sigmoid unit expects 0/1 labels")
        return y, True
    if kind == "f" and not _all(xp, y == xp.round(y)):
        raise ValueError(f"{name} has non-integer values: expected class labels 0..{n_out - 1}")
    if not _all(xp, (y >= 0) & (y < n_out)):
        lo, hi = float(xp.min(y)), float(xp.max(y))
        raise ValueError(
            f"{name} has labels in [{lo:g}, {hi:g}]: expected class labels 0..{n_out - 1} "
            f"for {n_out} outputs"
        )
    return y, True


def check_sizes(sizes: Any) -> list[int]:
    """Layer widths ``[n_in, hidden..., n_out]`` as a list of ints: at least 2, each an integer >= 1."""
    try:
        out = [int(s) for s in sizes]
        ok = all(float(s) == int(s) for s in sizes) and not isinstance(sizes, (str, bytes))
    except (TypeError, ValueError):
        ok = False
    if not ok or len(out) < 2 or min(out) < 1:
        raise ValueError(
            f"sizes={sizes!r} is not a list of layer widths: expected at least 2 integers >= 1, "
            "e.g. [784, 128, 64, 10]"
        )
    return out


def check_positive(value: Any, name: str, *, integer: bool = False, allow_zero: bool = False):
    """A positive finite number (or integer); returns it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        what = "an integer" if integer else "a number"
        raise ValueError(f"{name}={value!r} is not {what}: expected {'>= 0' if allow_zero else '> 0'}")
    if integer and not float(value).is_integer():
        raise ValueError(f"{name}={value!r} is not an integer: expected a whole number")
    if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name}={value!r} is out of range: expected {'>= 0' if allow_zero else '> 0'}")
    return int(value) if integer else float(value)


def check_choice(value: Any, name: str, choices) -> str:
    """One of ``choices``; returns it."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not known: expected one of {', '.join(map(repr, choices))}")
    return value


_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")


def label_positions(label_column, position: Callable[[Any], int], n_columns: int, shown: str,
                    names: list[str] | None = None) -> list[int]:
    """The label columns' positions in a file of ``n_columns`` columns (``names``: its header, or
    ``None``): one (an index or a name), several (a list), or a range ``"FIRST:LAST"``, both ends
    included (unless a column is named so). ``position(column)`` places one and raises the reader's
    own message for a bad one. Each column once, and at least one left for features: the CSV and
    Parquet readers' rule, in one place."""
    if isinstance(label_column, str) and ":" in label_column and not (names and label_column in names):
        first, last = (int(v) if _INTEGER.fullmatch(v) else v.strip() for v in label_column.split(":", 1))
        a, b = position(first), position(last)
        if b < a:
            raise ValueError(f"--label-column {label_column!r}: the range ends (column {b}) before it starts (column "
                             f"{a}): expected FIRST:LAST in the file's order")
        cols = list(range(a, b + 1))
    elif isinstance(label_column, (list, tuple)):
        cols = [position(c) for c in label_column]
    else:
        return [position(label_column)]
    repeated = sorted({c for c in cols if cols.count(c) > 1})
    if repeated:
        name = repr(names[repeated[0]]) if names else str(repeated[0])
        raise ValueError(f"--label-column names column {name} twice: expected each label column once")
    if len(cols) >= n_columns:
        raise ValueError(f"--label-column {label_column!r} takes all {len(cols)} columns of {shown!r}: expected at "
                         "least one feature column left")
    return cols
