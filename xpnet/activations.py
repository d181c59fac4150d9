"""Activation functions: a table of name -> (forward, backward), written once in ``xp``.

``forward(xp, Z) -> A`` and ``backward(xp, A, dA) -> dZ``. The backward pass is
written in terms of the output ``A`` (never ``Z``), so the forward pass keeps only
one array per layer: sigmoid' = A(1-A), tanh' = 1-A^2, and relu/leaky_relu are
increasing, so ``A > 0`` exactly where ``Z > 0``. Softmax's backward is its full
Jacobian-vector product, which makes softmax + mse exact too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

LEAKY_SLOPE = 0.01


class Activation(NamedTuple):
    forward: Callable  # (xp, Z) -> A
    backward: Callable  # (xp, A, dA) -> dZ


def sigmoid(xp, Z):
    """1 / (1 + exp(-Z)) without overflow: exp only ever sees -|Z| <= 0."""
    E = xp.exp(-xp.abs(Z))  # (m, n) in (0, 1]
    return xp.where(Z >= 0, 1.0 / (1.0 + E), E / (1.0 + E))


def softmax(xp, Z):
    """Row-wise softmax, shifted by the row max so exp never overflows."""
    E = xp.exp(Z - xp.max(Z, axis=1, keepdims=True))
    return E / xp.sum(E, axis=1, keepdims=True)


def _softmax_backward(xp, A, dA):
    # J^T dA for J = diag(a) - a a^T, row by row
    return A * (dA - xp.sum(dA * A, axis=1, keepdims=True))


def _relu(xp, Z):
    return xp.maximum(Z, 0.0)


def _leaky_relu(xp, Z):
    return xp.where(Z > 0, Z, LEAKY_SLOPE * Z)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(sigmoid, lambda xp, A, dA: dA * A * (1.0 - A)),
    "tanh": Activation(lambda xp, Z: xp.tanh(Z), lambda xp, A, dA: dA * (1.0 - A * A)),
    "relu": Activation(_relu, lambda xp, A, dA: xp.where(A > 0, dA, 0.0)),
    "leaky_relu": Activation(_leaky_relu, lambda xp, A, dA: xp.where(A > 0, dA, LEAKY_SLOPE * dA)),
    "identity": Activation(lambda xp, Z: Z, lambda xp, A, dA: dA),
    "softmax": Activation(softmax, _softmax_backward),
}

HIDDEN = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")  # allowed between layers
OUTPUTS = ("softmax", "sigmoid", "identity")  # allowed on the last layer
