"""Losses: a table of name -> (terms, delta), each summed over the m samples.

``terms(xp, Z, A, Y, s)`` are the loss's ``(m, k)`` terms, one per row and output; ``value`` is
their sum over the rows and outputs (a 0-d device array) and ``rows`` their sum over the
outputs, each row's loss ``(m,)`` (for row weights); ``delta(xp, Z, A, Y, output, s)`` is its gradient with respect to the last
layer's logits, shape ``(m, k)`` (a fresh array). ``s`` are the model's :class:`LossSettings`
(Huber's delta, label smoothing); each loss names the settings it reads. Callers divide by the
batch size: the mean for one process, the global batch for data-parallel training. ``Z`` are the logits,
``A = output(Z)``, ``Y`` the float targets ``(m, k)``.

Cross-entropies are computed from the logits (log-sum-exp), so they stay finite
for logits of +-1e4, and their delta is the familiar ``A - Y``.
:func:`softmax_cross_entropy` is the training step's head for softmax outputs: the
softmax, the loss and its gradient from one max, one exp and one sum.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from .activations import ACTIVATIONS
from .validate import check_positive


class LossSettings(NamedTuple):
    """The losses' own settings (model settings: stored in the model file when not the default)."""

    huber_delta: float = 1.0  # huber: 0.5 d^2 for |d| <= delta, delta (|d| - delta / 2) beyond (PyTorch's)
    label_smoothing: float = 0.0  # cross_entropy: targets y (1 - eps) + eps / k (PyTorch's)


DEFAULT_SETTINGS = LossSettings()


class Loss(NamedTuple):
    terms: Callable  # (xp, Z, A, Y, settings) -> (m, k): one term per row and output
    delta: Callable  # (xp, Z, A, Y, output_name, settings) -> (m, k)
    outputs: tuple[str, ...]  # output activations this loss is defined for
    settings: tuple[str, ...] = ()  # the LossSettings fields it reads (others must stay at their default)

    def value(self, xp, Z, A, Y, s=DEFAULT_SETTINGS):
        """The loss summed over the rows and outputs, 0-d."""
        return xp.sum(self.terms(xp, Z, A, Y, s))

    def rows(self, xp, Z, A, Y, s=DEFAULT_SETTINGS):
        """Each row's loss, summed over its outputs, ``(m,)``."""
        return xp.sum(self.terms(xp, Z, A, Y, s), axis=1)


def smoothed(nx, Y, eps: float, out=None):
    """Targets ``Y`` ``(m, k)`` with label smoothing ``eps``: ``Y (1 - eps) + eps / k``; ``Y`` itself for 0."""
    if not eps:
        return Y
    if out is None:  # any namespace
        return Y * (1.0 - eps) + eps / Y.shape[1]
    T = nx.multiply(Y, 1.0 - eps, out=out)  # NumPy: into a reused buffer
    return nx.add(T, eps / Y.shape[1], out=T)


def _cross_entropy(xp, Z, A, Y, s=DEFAULT_SETTINGS):
    # -sum_k y_k log softmax(z)_k = sum_k y_k * (lse(z) - z_k), y smoothed
    Y = smoothed(xp, Y, s.label_smoothing)
    zmax = xp.max(Z, axis=1, keepdims=True)
    lse = zmax + xp.log(xp.sum(xp.exp(Z - zmax), axis=1, keepdims=True))  # (m, 1)
    return Y * (lse - Z)


def _cross_entropy_delta(xp, Z, A, Y, output, s=DEFAULT_SETTINGS):
    return A - smoothed(xp, Y, s.label_smoothing)


def _binary_cross_entropy(xp, Z, A, Y, s=DEFAULT_SETTINGS):
    # -[y log s(z) + (1-y) log(1-s(z))] = max(z, 0) - z y + log(1 + exp(-|z|))
    return xp.maximum(Z, 0.0) - Z * Y + xp.log1p(xp.exp(-xp.abs(Z)))


def _mse(xp, Z, A, Y, s=DEFAULT_SETTINGS):
    D = A - Y
    return D * D * 0.5  # halving is exact: the sum is the same as halving the sum


def _mse_delta(xp, Z, A, Y, output, s=DEFAULT_SETTINGS):
    return ACTIVATIONS[output].backward(xp, A, A - Y)


def _huber(xp, Z, A, Y, s=DEFAULT_SETTINGS):
    # per element, d = a - y, q = min(|d|, delta): q (|d| - q / 2) is 0.5 d^2 inside delta, delta (|d| - delta / 2) beyond
    D = xp.abs(A - Y)
    Q = xp.minimum(D, s.huber_delta)
    return Q * (D - Q / 2)


def _huber_delta(xp, Z, A, Y, output, s=DEFAULT_SETTINGS):
    # d clipped to [-delta, delta]
    return ACTIVATIONS[output].backward(xp, A, xp.clip(A - Y, -s.huber_delta, s.huber_delta))


def _mae(xp, Z, A, Y, s=DEFAULT_SETTINGS):
    return xp.abs(A - Y)


def _mae_delta(xp, Z, A, Y, output, s=DEFAULT_SETTINGS):
    # sign(a - y), 0 where a == y (PyTorch's subgradient of |d| at 0)
    return ACTIVATIONS[output].backward(xp, A, xp.sign(A - Y))


LOSSES: dict[str, Loss] = {
    "cross_entropy": Loss(_cross_entropy, _cross_entropy_delta, ("softmax",), ("label_smoothing",)),
    "binary_cross_entropy": Loss(_binary_cross_entropy, lambda xp, Z, A, Y, out, s=DEFAULT_SETTINGS: A - Y, ("sigmoid",)),
    "mse": Loss(_mse, _mse_delta, ("softmax", "sigmoid", "identity")),
    "huber": Loss(_huber, _huber_delta, ("identity",), ("huber_delta",)),  # regression
    "mae": Loss(_mae, _mae_delta, ("identity",)),  # regression: mean absolute error
}


def softmax_cross_entropy(nx, Z, Y, scale: float, buf=None, label_smoothing: float = 0.0, row_weights=None):
    """Softmax + cross-entropy from the logits ``Z`` ``(m, k)``, sharing max, exp and sum.

    Returns ``(loss summed over rows, dL/dZ * scale)``. The same numbers as
    ``cross_entropy``'s value and ``(softmax(Z) - Y) * scale``, in 11 array operations
    instead of 17. With ``label_smoothing`` ``eps > 0`` the targets ``Y`` are first smoothed to
    ``Y (1 - eps) + eps / k`` (2 more operations; the loss is the smoothed one). With ``buf``
    (NumPy) the intermediates and the gradient are reused arrays; ``Z`` and ``Y`` are only read.
    With ``row_weights`` ``(m,)`` the loss is the weighted sum over the rows (the gradient is not
    weighted here).
    """
    m, k = Z.shape
    out = (lambda key: buf(key, (m, k), Z.dtype)) if buf is not None else (lambda key: None)
    Y = smoothed(nx, Y, label_smoothing, out("ce.Y"))
    shifted = nx.subtract(Z, nx.max(Z, axis=1, keepdims=True), out=out("ce.shifted"))  # (m, k), row max 0
    E = nx.exp(shifted, out=out("ce.E"))
    total = nx.sum(E, axis=1, keepdims=True)  # (m, 1)
    A = nx.divide(E, total, out=E)  # softmax, in place of E
    # loss = sum_k y_k (log total - shifted_k), written over shifted (no longer needed)
    shifted = nx.subtract(nx.log(total), shifted, out=shifted)
    shifted = nx.multiply(shifted, Y, out=shifted)
    loss = nx.sum(shifted) if row_weights is None else nx.vecdot(nx.sum(shifted, axis=1), row_weights)
    dZ = nx.subtract(A, Y, out=A)
    dZ = nx.multiply(dZ, scale, out=dZ)
    return loss, dZ


def loss_settings(loss: str, huber_delta: Any, label_smoothing: Any) -> LossSettings:
    """The checked :class:`~xpnet.losses.LossSettings`; a setting away from its default needs a loss that reads it."""
    huber_delta = check_positive(huber_delta, "huber_delta")
    label_smoothing = check_positive(label_smoothing, "label_smoothing", allow_zero=True)
    if label_smoothing >= 1:
        raise ValueError(f"label_smoothing={label_smoothing!r} is out of range: expected 0 <= label_smoothing < 1")
    settings = LossSettings(huber_delta, label_smoothing)
    for name, value in settings._asdict().items():
        if value != getattr(LossSettings(), name) and name not in LOSSES[loss].settings:
            owner = next(k for k, v in LOSSES.items() if name in v.settings)
            raise ValueError(f"{name}={value!r} with loss={loss!r}: {name} is for loss={owner!r}")
    return settings


DEFAULT_LOSS = {"softmax": "cross_entropy", "sigmoid": "binary_cross_entropy", "identity": "mse"}
