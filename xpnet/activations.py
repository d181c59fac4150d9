"""Activation functions: a table of name -> (forward, backward), written once.

``forward(nx, Z, out=None) -> A`` and ``backward(nx, A, dA, out=None) -> dZ``.
``nx`` is :attr:`Backend.nx` or any array namespace. Callers pass ``out`` only where the namespace
honours it (NumPy); relu, tanh and identity then write the result there (``out``
may be ``Z`` or ``dA`` itself: in place), the others return a new array. Callers
always use the return value.

The backward pass is written in terms of the output ``A`` (never ``Z``), so the
forward pass keeps one array per layer and may overwrite ``Z``: sigmoid' = A(1-A),
tanh' = 1-A^2, and relu/leaky_relu are increasing, so ``A > 0`` exactly where
``Z > 0``. Softmax's backward is its full Jacobian-vector product, which makes
softmax + mse exact too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

LEAKY_SLOPE = 0.01


class Activation(NamedTuple):
    forward: Callable  # (nx, Z, out=None) -> A
    backward: Callable  # (nx, A, dA, out=None) -> dZ


def sigmoid(nx, Z, out=None):
    """1 / (1 + exp(-Z)) without overflow: exp only ever sees -|Z| <= 0."""
    E = nx.exp(-nx.abs(Z))  # (m, n) in (0, 1]
    return nx.where(Z >= 0, 1.0 / (1.0 + E), E / (1.0 + E))


def softmax(nx, Z, out=None):
    """Row-wise softmax, shifted by the row max so exp never overflows."""
    E = nx.exp(Z - nx.max(Z, axis=1, keepdims=True))
    return E / nx.sum(E, axis=1, keepdims=True)


def _softmax_backward(nx, A, dA, out=None):
    # J^T dA for J = diag(a) - a a^T, row by row
    return A * (dA - nx.sum(dA * A, axis=1, keepdims=True))


def _relu(nx, Z, out=None):
    return nx.maximum(Z, 0.0) if out is None else nx.maximum(Z, 0.0, out=out)


def _relu_backward(nx, A, dA, out=None):
    if out is None:  # the array-API spelling; standard namespaces do not multiply by booleans
        return nx.where(A > 0, dA, 0.0)
    return nx.multiply(dA, A > 0, out=out)  # NumPy: in place, no float mask


def _leaky_relu(nx, Z, out=None):
    return nx.where(Z > 0, Z, LEAKY_SLOPE * Z)


def _leaky_relu_backward(nx, A, dA, out=None):
    return nx.where(A > 0, dA, LEAKY_SLOPE * dA)


def _tanh(nx, Z, out=None):
    return nx.tanh(Z) if out is None else nx.tanh(Z, out=out)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(sigmoid, lambda nx, A, dA, out=None: dA * A * (1.0 - A)),
    "tanh": Activation(_tanh, lambda nx, A, dA, out=None: dA * (1.0 - A * A)),
    "relu": Activation(_relu, _relu_backward),
    "leaky_relu": Activation(_leaky_relu, _leaky_relu_backward),
    "identity": Activation(lambda nx, Z, out=None: Z, lambda nx, A, dA, out=None: dA),
    "softmax": Activation(softmax, _softmax_backward),
}

HIDDEN = ("sigmoid", "tanh", "relu", "leaky_relu", "identity")  # allowed between layers
OUTPUTS = ("softmax", "sigmoid", "identity")  # allowed on the last layer
