"""Class labels: a model's class list inferred from ``y``, labels encoded as output indices and decoded back.

No model here: each function takes the class list (a 1-D host array of integers or strings, or
``None`` for outputs that are their own classes ``0..k-1``) and, where labels live on a device,
the :class:`~xpnet.backend.Backend`. :meth:`MLP.encode_labels <xpnet.MLP.encode_labels>` and
:meth:`MLP.decode_labels <xpnet.MLP.decode_labels>` are thin wrappers over these.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

from .backend import Backend, Buffers, to_numpy
from .validate import as_array

EXACT_INTEGERS = 2**53  # float64 holds every integer up to this magnitude exactly, and no more


def preview(values, limit: int = 6) -> str:
    """``[3, 7]`` or ``[0, 1, 2, 3, 4, 5, ...] (12 in all)``: a few values for an error message."""
    values = [v.item() if hasattr(v, "item") else v for v in values]
    shown = ", ".join(repr(v) for v in values[:limit])
    return f"[{shown}]" if len(values) <= limit else f"[{shown}, ...] ({len(values)} in all)"


def check_classes(classes: Any, n_classes: int) -> np.ndarray:
    """A class list as a 1-D host array of distinct integers or strings, ``n_classes`` long."""
    arr = np.asarray(list(classes) if not isinstance(classes, np.ndarray) else classes)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "f" and arr.size and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
        if np.max(np.abs(arr)) > EXACT_INTEGERS:  # a float64 whole number this large is not the integer written
            big = arr[np.abs(arr) > EXACT_INTEGERS][0]
            raise ValueError(f"classes hold whole numbers beyond +-2**53 (such as {big:g}), which float64 cannot hold "
                             "exactly: give such labels as integers (int64) or as text")
        arr = arr.astype(np.int64)
    if arr.dtype.kind == "O" and arr.size and all(isinstance(v, str) for v in arr.tolist()):
        arr = arr.astype(str)
    if arr.ndim != 1 or arr.dtype.kind not in "iuU":
        raise ValueError(f"classes={preview(arr.ravel().tolist())} is not a class list: "
                         "expected a 1-D list of integers or of strings")
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    if len(np.unique(arr)) != len(arr):
        raise ValueError(f"classes={preview(arr.tolist())} repeats a class: expected distinct classes")
    if len(arr) != n_classes:
        raise ValueError(f"classes={preview(arr.tolist())} has {len(arr)} classes but the network predicts "
                         f"{n_classes}: expected {n_classes} classes")
    return arr


def classes_of(y: np.ndarray) -> np.ndarray | None:
    """The sorted distinct class labels of host label vector ``y`` ``(m,)``: int64 for integers
    and booleans, strings for text; ``None`` for real-valued targets and for multi-label rows
    ``(m, k)`` (whose labels are their columns)."""
    if y.ndim == 2:
        return None
    if y.dtype.kind in "iub":
        return np.unique(y).astype(np.int64)
    if y.dtype.kind in "UO":
        return np.unique(y.astype(str))
    return None


def infer_classes(y, m: int, n_out: int) -> np.ndarray | None:
    """The class list for label vector ``y`` ``(m,)`` and a network of ``n_out`` outputs.

    Integer labels all in ``0..k-1`` give ``0..k-1`` (``k`` is ``n_out``, or 2 for one unit); any
    other labels give their sorted distinct values, which must number ``k`` (a ValueError says
    how to build the network otherwise). ``None`` for 2-D targets or real-valued ones (and for a
    ``y`` of the wrong length, which the target check then reports).
    """
    y = as_array(y, "y")
    if y.ndim != 1 or y.shape[0] != m:
        return None  # one-hot or probability targets: outputs are the classes 0..k-1
    y = to_numpy(y)
    k = max(n_out, 2)
    if y.dtype.kind in "iub" or (y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y))):
        if y.size and y.min() >= 0 and y.max() < k:
            return np.arange(k, dtype=np.int64)  # labels that are already output indices
    elif y.dtype.kind not in "UO":
        return None  # real-valued targets: check_targets says what is wrong
    found = np.unique(y.astype(str) if y.dtype.kind == "O" else y)
    if len(found) != k:
        unit = "a single sigmoid unit, which tells 2 classes apart" if n_out == 1 else f"{k} outputs"
        raise ValueError(f"y holds {len(found)} classes {preview(found)} but the network has {unit}: "
                         f"build it with sizes[-1]={len(found) if len(found) > 2 or n_out > 1 else 1} "
                         "or pass classes=[...]")
    return check_classes(found, k)


def is_identity(classes: np.ndarray | None) -> bool:
    """No class list, or the list ``0..k-1``: labels are output indices as they are."""
    return classes is None or (classes.dtype.kind == "i" and np.array_equal(classes, np.arange(len(classes))))


def encode_labels(classes: np.ndarray | None, y, backend: Backend, name: str = "y"):
    """Class labels ``(m,)`` to output indices ``0..k-1`` (int64) through ``classes``, on the array's side.

    A host ``y`` is looked up on the host, a device one on ``backend`` (one read back), another
    library's array on the host. Anything but a label vector (2-D targets), and every ``y`` when
    :func:`is_identity` holds, is returned as it is. A label not in ``classes``, or string labels
    with no class list, is a ValueError naming ``name``.
    """
    if classes is None and isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "UO":
        raise ValueError(f"{name} holds string labels {preview(np.unique(y.astype(str)))} but the model has no "
                         "class list: fit it on these labels first, or build it with classes=[...]")
    if is_identity(classes):
        return y
    y = as_array(y, name)
    if y.ndim != 1:
        return y
    xp = backend.xp
    if not isinstance(y, np.ndarray) and array_api_compat.array_namespace(y) is not xp:
        y = to_numpy(y)  # another library's array: look it up on the host
    if isinstance(y, np.ndarray):
        if y.dtype.kind == "O":
            y = y.astype(str)
        order = np.argsort(classes, kind="stable")
        ordered = classes[order]
        comparable = (y.dtype.kind in "U") == (ordered.dtype.kind == "U")
        pos = np.clip(np.searchsorted(ordered, y), 0, len(ordered) - 1) if comparable and y.size else None
        found = np.zeros(y.shape, bool) if pos is None else ordered[pos] == y
        if not np.all(found):
            raise ValueError(f"{name} has label(s) {preview(np.unique(y[~found]))} that are not among the "
                             f"model's classes {preview(classes)}")
        return order[pos].astype(np.int64)
    # a device array: numeric labels, looked up on the device
    if classes.dtype.kind == "U" or not (xp.isdtype(y.dtype, "integral") or xp.isdtype(y.dtype, "real floating")):
        raise ValueError(f"{name} is a {y.dtype} device array but the model's classes are "
                         f"{preview(classes)}: pass the labels as a NumPy array")
    order = np.argsort(classes, kind="stable")
    ordered = backend.asarray(classes[order].astype(np.float64))
    yf = xp.astype(y, xp.float64)
    pos = xp.clip(xp.searchsorted(ordered, yf), 0, len(classes) - 1)
    if not bool(xp.all(xp.take(ordered, pos) == yf)):  # one read back
        bad = to_numpy(y)[~np.isin(to_numpy(y), classes)]
        raise ValueError(f"{name} has label(s) {preview(np.unique(bad))} that are not among the "
                         f"model's classes {preview(classes)}")
    return xp.take(backend.asarray(order.astype(np.int64)), pos)


def decode_labels(classes: np.ndarray | None, idx, backend: Backend, cache: dict | None = None):
    """Output indices ``(m,)`` to class labels: ``idx`` itself when :func:`is_identity` holds, a
    device array on ``backend`` for integer classes, a host NumPy array for string classes.

    ``cache``: a dict that keeps the device copy of ``classes`` (key ``"classes"``) between calls.
    """
    if is_identity(classes):
        return idx
    if classes.dtype.kind == "U":
        return classes[to_numpy(idx)]
    table = None if cache is None else cache.get("classes")
    if table is None:
        table = backend.asarray(classes)
        if cache is not None:
            cache["classes"] = table
    return backend.xp.take(table, idx)


def class_weights(class_weight: Any, classes: np.ndarray | None, idx: np.ndarray, k: int) -> np.ndarray:
    """Each output index's weight ``(k,)`` float64 for ``class_weight``, given the rows' output
    indices ``idx`` ``(m,)`` (host int64) and the model's ``classes`` (``None``: ``0..k-1``).

    ``"balanced"`` is scikit-learn's ``m / (n_classes * count)`` over the classes present in
    ``idx`` (an absent class keeps 1: no row carries it); a dict maps class labels, as in
    ``classes``, to weights (finite, >= 0; classes left out keep 1). A label that is not a
    class, or a bad weight, is a ValueError naming it.
    """
    known = np.arange(k, dtype=np.int64) if classes is None else classes
    w = np.ones(k, np.float64)
    if isinstance(class_weight, str) and class_weight == "balanced":
        counts = np.bincount(idx, minlength=k)
        present = counts > 0
        w[present] = len(idx) / (np.count_nonzero(present) * counts[present])
        return w
    if not isinstance(class_weight, dict):
        raise ValueError(f"class_weight={class_weight!r} is not a class weighting: expected None, 'balanced' or a "
                         "dict {label: weight}")
    keys = list(class_weight)
    pos = [_class_index(known, key) for key in keys]
    unknown = [key for key, p in zip(keys, pos) if p is None]
    if unknown:
        raise ValueError(f"class_weight has label(s) {preview(unknown)} that are not among the model's classes "
                         f"{preview(known)}")
    for key, p in zip(keys, pos):
        value = class_weight[key]
        ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        if not ok or not np.isfinite(value) or value < 0:
            raise ValueError(f"class_weight[{key!r}]={value!r} is not a weight: expected a finite number >= 0")
        w[p] = float(value)
    return w


def _class_index(classes: np.ndarray, label: Any) -> int | None:
    """The position of ``label`` in ``classes``, or ``None``: integers match integer classes, text text."""
    if isinstance(label, (bool, np.bool_)):
        return None
    if classes.dtype.kind == "U":
        hits = np.flatnonzero(classes == label) if isinstance(label, (str, np.str_)) else []
    elif isinstance(label, (int, np.integer)) or (isinstance(label, (float, np.floating)) and float(label).is_integer()):
        hits = np.flatnonzero(classes == int(label))
    else:
        hits = []
    return int(hits[0]) if len(hits) else None


def labels_of(xp, A):
    """Output indices ``(m,)`` from outputs ``A`` ``(m, k)``: the argmax, or a 0.5 threshold for one unit."""
    if A.shape[1] > 1:
        return xp.argmax(A, axis=1)
    return xp.astype(A[:, 0] >= 0.5, xp.int64)


def count_correct(xp, A, labels, multilabel: bool = False):
    """How many rows of outputs ``A`` are right (0-d device array): the arg-max (or one unit's
    0.5) against ``(m,)`` indices, or every unit of a multi-label row against its 0/1 targets."""
    if multilabel:
        return xp.sum(xp.astype(xp.all((A >= 0.5) == (labels >= 0.5), axis=1), xp.int64))
    return xp.sum(xp.astype(labels_of(xp, A) == labels, xp.int64))


def step_correct(nx, Z, Y, labels, onehot: bool, multilabel: bool, buf: Buffers):
    """The correct count of a training step (0-d, in ``Z``'s dtype), or ``None`` when not asked for.

    ``Z`` ``(m, k)`` are the logits; with ``onehot``, ``Y`` ``(m, k)`` the one-hot targets (or a
    multi-label model's 0/1 rows: a row counts when every unit is on the right side of 0.5, z >= 0)
    and the count is the sum of ``Y``'s entries at the arg-max; else ``labels`` ``(m,)`` output
    indices, compared with the arg-max (one unit: z >= 0). With ``buf`` enabled (NumPy, CuPy) the
    same counts land in reused arrays without ``take_along_axis`` (5 kernels on CuPy): the arg-max
    plus each row's start in ``Y``'s flat view, one ``take``, one sum; elsewhere the generic lines.
    """
    if not buf.enabled:
        return _generic_correct(nx, Z, Y, labels, onehot, multilabel)
    m, k = Z.shape
    hits = buf("correct.hits", (m,), nx.bool)  # (m,)
    if onehot and multilabel:
        on = nx.greater_equal(Z, 0.0, out=buf("correct.on", (m, k), nx.bool))  # (m, k)
        on = nx.equal(on, nx.greater_equal(Y, 0.5, out=buf("correct.truth", (m, k), nx.bool)), out=on)
        return nx.sum(nx.all(on, axis=1, out=hits), dtype=Z.dtype)
    if onehot and k > 1:  # Y's entry at the arg-max: 1 exactly when the prediction is right
        at = nx.argmax(Z, axis=1, out=buf("correct.at", (m,), nx.int64))  # (m,)
        at += buf.row_starts(m, k)  # flat positions in Y
        return nx.sum(nx.take(nx.reshape(Y, (-1,)), at, out=buf("correct.picked", (m,), Y.dtype), mode="clip"))
    if labels is None or tuple(labels.shape) != (m,):  # (a hand-made call's other labels: the generic lines)
        return _generic_correct(nx, Z, Y, labels, onehot, multilabel)
    if k > 1:
        pred = nx.argmax(Z, axis=1, out=buf("correct.at", (m,), nx.int64))
    else:  # one unit: sigmoid(z) >= 0.5 exactly when z >= 0
        pred = nx.greater_equal(Z[:, 0], 0.0, out=buf("correct.on", (m,), nx.bool))
    return nx.sum(nx.equal(pred, labels, out=hits), dtype=Z.dtype)


def _generic_correct(nx, Z, Y, labels, onehot: bool, multilabel: bool):
    """:func:`step_correct` in standard array operations (what array-api-strict counts)."""
    m = Z.shape[0]
    if onehot and multilabel:
        return nx.sum(nx.astype(nx.all((Z >= 0.0) == (Y >= 0.5), axis=1), Z.dtype))
    if onehot and Z.shape[1] > 1:
        pick = nx.reshape(nx.argmax(Z, axis=1), (m, 1))
        return nx.sum(nx.take_along_axis(Y, pick, axis=1))
    if labels is None:
        return None
    if Z.shape[1] > 1:
        pred = nx.argmax(Z, axis=1)
    else:
        pred = nx.astype(Z[:, 0] >= 0.0, labels.dtype)
    return nx.sum(nx.astype(pred == labels, Z.dtype))
