"""Output heads: each ``out_activation_`` as the xpnet output that computes it and
scikit-learn's loss per row (and the regressor's losses beyond scikit-learn's own, by their
``loss`` names); and scikit-learn's hidden activations by xpnet's names."""

from __future__ import annotations

from typing import Any, NamedTuple

from ..losses import LOSSES

# scikit-learn's names -> xpnet's; beyond scikit-learn's four, xpnet's other hidden activations by their own names
HIDDEN = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu",
          "leaky_relu": "leaky_relu", "gelu": "gelu", "silu": "silu", "elu": "elu", "softplus": "softplus"}


def _xlogy_rows(xp, Y, log_p):
    """``sum_k xlogy(y, p)`` per row, with ``log_p`` already clipped (finite)."""
    return xp.sum(Y * log_p, axis=1)


def _log_loss_rows(xp, A, Y, eps):
    P = xp.clip(A, eps, 1.0 - eps)
    return -_xlogy_rows(xp, Y, xp.log(P))


def _binary_log_loss_rows(xp, A, Y, eps):
    P = xp.clip(A, eps, 1.0 - eps)
    return -(_xlogy_rows(xp, Y, xp.log(P)) + _xlogy_rows(xp, 1.0 - Y, xp.log(1.0 - P)))


def _squared_rows(xp, A, Y, eps):
    D = A - Y
    return xp.sum(D * D, axis=1) / 2  # scikit-learn then averages over outputs too: Head.per_output


def _huber_rows(xp, A, Y, eps):
    # xpnet's huber (PyTorch's HuberLoss per element, delta 1), summed over the outputs; identity head: Z is A
    return LOSSES["huber"].rows(xp, A, A, Y)


def _absolute_rows(xp, A, Y, eps):
    return LOSSES["mae"].rows(xp, A, A, Y)


def _poisson_rows(xp, Z, Y, eps):
    # half Poisson deviance with the log link, from Z = log(prediction):
    # xlogy(y, y / exp(z)) - y + exp(z), where xlogy(0, .) = 0
    positive = Y > 0
    log_y = xp.log(xp.where(positive, Y, xp.ones_like(Y)))
    return xp.sum(xp.where(positive, Y * (log_y - Z), xp.zeros_like(Y)) - Y + xp.exp(Z), axis=1)


class Head(NamedTuple):
    """An ``out_activation_``: the xpnet output that computes it and scikit-learn's loss."""

    output: str  # xpnet's output activation for the network
    rows: Any  # (xp, outputs or Z, Y, eps) -> (m,) loss per row, scikit-learn's definition
    per_output: bool  # scikit-learn averages this loss over the outputs (squared error)
    fast: bool  # the network's own loss and gradient (backprop) are scikit-learn's, unweighted
    loss: str | None = None  # the network's loss (xpnet's name); None: the output's default


HEADS = {
    "softmax": Head("softmax", _log_loss_rows, False, True),
    "logistic": Head("sigmoid", _binary_log_loss_rows, False, True),
    "identity": Head("identity", _squared_rows, True, True),
    # exp(z) with half Poisson deviance: the network ends in identity (z); the exp and the
    # loss's gradient exp(z) - y are applied here, around MLP.backprop
    "exp": Head("identity", _poisson_rows, False, False),
}

# MLPRegressor(loss=...) beyond scikit-learn's own: identity outputs (out_activation_ 'identity'),
# summed over the outputs as xpnet's losses are, so that the gradient is the loss's (scikit-learn's
# squared error averages its loss over the outputs but not its gradient)
LOSS_HEADS = {
    "huber": Head("identity", _huber_rows, False, True, "huber"),
    "absolute_error": Head("identity", _absolute_rows, False, True, "mae"),
}
