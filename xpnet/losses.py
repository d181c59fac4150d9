"""Losses: a table of name -> (value, delta), each a mean over the m samples.

``value(xp, Z, A, Y)`` is the loss as a 0-d device array; ``delta(xp, Z, A, Y, output)``
is dL/dZ of the last layer, shape ``(m, k)``, already divided by m. ``Z`` are the
logits, ``A = output(Z)``, ``Y`` the float targets ``(m, k)``.

Cross-entropies are computed from the logits (log-sum-exp), so they stay finite
for logits of +-1e4, and their delta is the familiar ``(A - Y) / m``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from .activations import ACTIVATIONS


class Loss(NamedTuple):
    value: Callable  # (xp, Z, A, Y) -> 0-d array
    delta: Callable  # (xp, Z, A, Y, output_name) -> (m, k)
    outputs: tuple[str, ...]  # output activations this loss is defined for


def _m(Z) -> int:
    return Z.shape[0]


def _cross_entropy(xp, Z, A, Y):
    # -sum_k y_k log softmax(z)_k = sum_k y_k * (lse(z) - z_k)
    zmax = xp.max(Z, axis=1, keepdims=True)
    lse = zmax + xp.log(xp.sum(xp.exp(Z - zmax), axis=1, keepdims=True))  # (m, 1)
    return xp.sum(Y * (lse - Z)) / _m(Z)


def _binary_cross_entropy(xp, Z, A, Y):
    # -[y log s(z) + (1-y) log(1-s(z))] = max(z, 0) - z y + log(1 + exp(-|z|))
    return xp.sum(xp.maximum(Z, 0.0) - Z * Y + xp.log1p(xp.exp(-xp.abs(Z)))) / _m(Z)


def _mse(xp, Z, A, Y):
    D = A - Y
    return xp.sum(D * D) / (2 * _m(Z))


def _mse_delta(xp, Z, A, Y, output):
    return ACTIVATIONS[output].backward(xp, A, (A - Y) / _m(Z))


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss(_cross_entropy, lambda xp, Z, A, Y, out: (A - Y) / _m(Z), ("softmax",)),
    "binary_cross_entropy": Loss(_binary_cross_entropy, lambda xp, Z, A, Y, out: (A - Y) / _m(Z), ("sigmoid",)),
    "mse": Loss(_mse, _mse_delta, ("softmax", "sigmoid", "identity")),
}

DEFAULT_LOSS = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy", "identity": "mse"}
