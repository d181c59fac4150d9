"""What users pass in, checked as scikit-learn checks it: arrays on a device, sparse ``X``, ``sample_weight``."""

from __future__ import annotations

import numbers

import array_api_compat
import numpy as np
from sklearn.utils.validation import check_array

from ..backend import to_numpy


def on_device(a) -> bool:
    """A non-NumPy array-API array (CuPy, array-api-strict, torch, JAX): kept off scikit-learn's checks, which
    would read it through ``np.asarray`` (a copy off a GPU; refused for a tensor that requires grad); the
    model takes it by DLPack, without a copy where it already lives (:meth:`xpnet.Backend.asarray`)."""
    return array_api_compat.is_array_api_obj(a) and not isinstance(a, np.ndarray)


def dense(X):
    return X.toarray() if hasattr(X, "toarray") else X


def check_sample_weight(sample_weight, n: int):
    """scikit-learn's checks (and messages) for ``sample_weight``: ``(n,)`` float64 host array or None."""
    if sample_weight is None:
        return None
    if on_device(sample_weight):
        sample_weight = to_numpy(sample_weight)
    if isinstance(sample_weight, numbers.Number):
        sw = np.full(n, sample_weight, dtype=np.float64)
    else:
        sw = check_array(sample_weight, accept_sparse=False, ensure_2d=False, dtype=np.float64, order="C",
                         input_name="sample_weight")
        if sw.ndim != 1:
            raise ValueError("Sample weights must be 1D array or scalar")
        if sw.shape != (n,):
            raise ValueError(f"sample_weight.shape == {sw.shape}, expected {(n,)}!")
    if np.all(sw == 0):
        raise ValueError("Sample weights must contain at least one non-zero number.")
    return sw
