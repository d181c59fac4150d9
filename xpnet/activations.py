"""Activation functions: a table of name -> (forward, backward), written once.

``forward(nx, Z, out=None) -> A`` and ``backward(nx, A, dA, out=None, Z=None) -> dZ``.
``nx`` is :attr:`Backend.nx` or any array namespace. Callers pass ``out`` only where the namespace
honours it (NumPy); relu, tanh and identity then write the result there (``out``
may be ``Z`` or ``dA`` itself: in place), the others return a new array. Callers
always use the return value.

The backward pass is written in terms of the output ``A`` (never ``Z``), so the
forward pass keeps one array per layer and may overwrite ``Z``: sigmoid' = A(1-A),
tanh' = 1-A^2, elu' = 1 or A + 1, softplus' = sigmoid(Z) = 1 - exp(-A), and relu/leaky_relu
are increasing, so ``A > 0`` exactly where ``Z > 0``. GELU's and SiLU's derivatives are not
functions of their output: those two are marked ``needs_input``, and a layer that uses them
keeps its input ``Z`` for the backward pass (one more ``(m, n)`` array per layer) and passes
it as ``Z``. Softmax's backward is its full Jacobian-vector product, which makes softmax +
mse exact too.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

LEAKY_SLOPE = 0.01
GELU_C = math.sqrt(2.0 / math.pi)  # GELU's tanh form: 0.5 z (1 + tanh(c (z + 0.044715 z^3)))
GELU_K = 0.044715


class Activation(NamedTuple):
    forward: Callable  # (nx, Z, out=None) -> A
    backward: Callable  # (nx, A, dA, out=None, Z=None) -> dZ
    needs_input: bool = False  # backward needs Z, not only A (GELU, SiLU)


def sigmoid(nx, Z, out=None):
    """1 / (1 + exp(-Z)) without overflow: exp only ever sees -|Z| <= 0."""
    E = nx.exp(-nx.abs(Z))  # (m, n) in (0, 1]
    return nx.where(Z >= 0, 1.0 / (1.0 + E), E / (1.0 + E))


def softmax(nx, Z, out=None):
    """Row-wise softmax, shifted by the row max so exp never overflows."""
    E = nx.exp(Z - nx.max(Z, axis=1, keepdims=True))
    return E / nx.sum(E, axis=1, keepdims=True)


def _softmax_backward(nx, A, dA, out=None, Z=None):
    # J^T dA for J = diag(a) - a a^T, row by row
    return A * (dA - nx.sum(dA * A, axis=1, keepdims=True))


def _relu(nx, Z, out=None):
    return nx.maximum(Z, 0.0) if out is None else nx.maximum(Z, 0.0, out=out)


def _relu_backward(nx, A, dA, out=None, Z=None):
    if out is None:  # the array-API spelling; standard namespaces do not multiply by booleans
        return nx.where(A > 0, dA, 0.0)
    return nx.multiply(dA, A > 0, out=out)  # NumPy: in place, no float mask


def _leaky_relu(nx, Z, out=None):
    return nx.where(Z > 0, Z, LEAKY_SLOPE * Z)


def _leaky_relu_backward(nx, A, dA, out=None, Z=None):
    return nx.where(A > 0, dA, LEAKY_SLOPE * dA)


def _tanh(nx, Z, out=None):
    return nx.tanh(Z) if out is None else nx.tanh(Z, out=out)


def _gelu(nx, Z, out=None):
    """GELU in its tanh form (PyTorch's ``GELU(approximate="tanh")``)."""
    return 0.5 * Z * (1.0 + nx.tanh(GELU_C * (Z + GELU_K * Z * Z * Z)))


def _gelu_backward(nx, A, dA, out=None, Z=None):
    # d/dz = 0.5 (1 + t) + 0.5 z (1 - t^2) c (1 + 3 k z^2),  t = tanh(c (z + k z^3))
    Z2 = Z * Z
    t = nx.tanh(GELU_C * (Z + GELU_K * Z2 * Z))
    return dA * (0.5 * (1.0 + t) + 0.5 * Z * (1.0 - t * t) * (GELU_C * (1.0 + 3.0 * GELU_K * Z2)))


def _silu(nx, Z, out=None):
    """SiLU (swish): z sigmoid(z)."""
    return Z * sigmoid(nx, Z)


def _silu_backward(nx, A, dA, out=None, Z=None):
    s = sigmoid(nx, Z)  # d/dz = s (1 + z (1 - s))
    return dA * (s * (1.0 + Z * (1.0 - s)))


def _elu(nx, Z, out=None):
    """ELU with alpha 1: z for z > 0, exp(z) - 1 below."""
    return nx.where(Z > 0, Z, nx.expm1(nx.minimum(Z, 0.0)))  # expm1 of min(z, 0): no overflow where unused


def _elu_backward(nx, A, dA, out=None, Z=None):
    return nx.where(A > 0, dA, dA * (A + 1.0))  # exp(z) = A + 1 below 0


def _softplus(nx, Z, out=None):
    """log(1 + exp(z)) without overflow: log1p(exp(-|z|)) + max(z, 0) (PyTorch's ``Softplus``
    switches to z itself above z = 20, where the two differ by under 2e-9)."""
    return nx.log1p(nx.exp(-nx.abs(Z))) + nx.maximum(Z, 0.0)


def _softplus_backward(nx, A, dA, out=None, Z=None):
    return dA * -nx.expm1(-A)  # sigmoid(z) = 1 - exp(-A)


ACTIVATIONS: dict[str, Activation] = {
    "sigmoid": Activation(sigmoid, lambda nx, A, dA, out=None, Z=None: dA * A * (1.0 - A)),
    "tanh": Activation(_tanh, lambda nx, A, dA, out=None, Z=None: dA * (1.0 - A * A)),
    "relu": Activation(_relu, _relu_backward),
    "leaky_relu": Activation(_leaky_relu, _leaky_relu_backward),
    "identity": Activation(lambda nx, Z, out=None: Z, lambda nx, A, dA, out=None, Z=None: dA),
    "gelu": Activation(_gelu, _gelu_backward, needs_input=True),
    "silu": Activation(_silu, _silu_backward, needs_input=True),
    "elu": Activation(_elu, _elu_backward),
    "softplus": Activation(_softplus, _softplus_backward),
    "softmax": Activation(softmax, _softmax_backward),
}

# allowed between layers
HIDDEN = ("sigmoid", "tanh", "relu", "leaky_relu", "identity", "gelu", "silu", "elu", "softplus")
OUTPUTS = ("softmax", "sigmoid", "identity")  # allowed on the last layer
