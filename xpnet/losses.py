"""Losses: a table of name -> (value, delta), each summed over the m samples.

``value(xp, Z, A, Y)`` is the loss summed over the rows, as a 0-d device array;
``delta(xp, Z, A, Y, output)`` is its gradient with respect to the last layer's logits,
shape ``(m, k)`` (a fresh array). Callers divide by the batch size: the mean for one
process, the global batch for data-parallel training. ``Z`` are the logits,
``A = output(Z)``, ``Y`` the float targets ``(m, k)``.

Cross-entropies are computed from the logits (log-sum-exp), so they stay finite
for logits of +-1e4, and their delta is the familiar ``A - Y``.
:func:`softmax_cross_entropy` is the training step's head for softmax outputs: the
softmax, the loss and its gradient from one max, one exp and one sum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .activations import ACTIVATIONS


class Loss(NamedTuple):
    value: Callable  # (xp, Z, A, Y) -> 0-d array
    delta: Callable  # (xp, Z, A, Y, output_name) -> (m, k)
    outputs: tuple[str, ...]  # output activations this loss is defined for


def _cross_entropy(xp, Z, A, Y):
    # -sum_k y_k log softmax(z)_k = sum_k y_k * (lse(z) - z_k)
    zmax = xp.max(Z, axis=1, keepdims=True)
    lse = zmax + xp.log(xp.sum(xp.exp(Z - zmax), axis=1, keepdims=True))  # (m, 1)
    return xp.sum(Y * (lse - Z))


def _binary_cross_entropy(xp, Z, A, Y):
    # -[y log s(z) + (1-y) log(1-s(z))] = max(z, 0) - z y + log(1 + exp(-|z|))
    return xp.sum(xp.maximum(Z, 0.0) - Z * Y + xp.log1p(xp.exp(-xp.abs(Z))))


def _mse(xp, Z, A, Y):
    D = A - Y
    return xp.sum(D * D) / 2


def _mse_delta(xp, Z, A, Y, output):
    return ACTIVATIONS[output].backward(xp, A, A - Y)


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss(_cross_entropy, lambda xp, Z, A, Y, out: A - Y, ("softmax",)),
    "binary_cross_entropy": Loss(_binary_cross_entropy, lambda xp, Z, A, Y, out: A - Y, ("sigmoid",)),
    "mse": Loss(_mse, _mse_delta, ("softmax", "sigmoid", "identity")),
}


def softmax_cross_entropy(nx, Z, Y, scale: float, buf=None):
    """Softmax + cross-entropy from the logits ``Z`` ``(m, k)``, sharing max, exp and sum.

    Returns ``(loss summed over rows, dL/dZ * scale)``. The same numbers as
    ``cross_entropy``'s value and ``(softmax(Z) - Y) * scale``, in 11 array operations
    instead of 17. With ``buf`` (NumPy) the intermediates and the gradient are reused
    arrays; ``Z`` is only read.
    """
    m, k = Z.shape
    out = (lambda key: buf(key, (m, k), Z.dtype)) if buf is not None else (lambda key: None)
    shifted = nx.subtract(Z, nx.max(Z, axis=1, keepdims=True), out=out("ce.shifted"))  # (m, k), row max 0
    E = nx.exp(shifted, out=out("ce.E"))
    total = nx.sum(E, axis=1, keepdims=True)  # (m, 1)
    A = nx.divide(E, total, out=E)  # softmax, in place of E
    # loss = sum_k y_k (log total - shifted_k), written over shifted (no longer needed)
    shifted = nx.subtract(nx.log(total), shifted, out=shifted)
    shifted = nx.multiply(shifted, Y, out=shifted)
    loss = nx.sum(shifted)
    dZ = nx.subtract(A, Y, out=A)
    dZ = nx.multiply(dZ, scale, out=dZ)
    return loss, dZ

DEFAULT_LOSS = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy", "identity": "mse"}
