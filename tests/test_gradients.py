"""Backprop against central finite differences, in float64, on every backend."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet.activations import HIDDEN

# every (output, loss) pair the model accepts
PAIRS = [
    ("softmax", "cross_entropy"),
    ("softmax", "mse"),
    ("sigmoid", "binary_cross_entropy"),
    ("sigmoid", "mse"),
    ("identity", "mse"),
]
DEPTHS = {2: [4, 5, 3], 3: [4, 5, 4, 3], 4: [4, 5, 4, 5, 3]}  # weight layers -> sizes


def _targets(output: str, loss: str, m: int, k: int, rng: np.random.Generator):
    if output == "softmax":
        return rng.integers(0, k, m)  # class labels, one-hot encoded inside
    if output == "sigmoid":
        return (rng.random((m, k)) < 0.5).astype(np.float64)  # multi-label 0/1
    return rng.normal(size=(m, k))  # real targets


def numeric_grads(model: xpnet.MLP, X, y, eps: float = 1e-6) -> list[np.ndarray]:
    """Central differences of the mean loss (``model.scores``, as ``evaluate`` computes it) for
    every parameter: each entry of the flat buffer moved by +-eps in turn, the data on the
    device once."""
    data = model.device_data(X, y)
    return central_differences(model, lambda: model.scores(*data)["loss"], eps)


def central_differences(model: xpnet.MLP, loss, eps: float = 1e-6) -> list[np.ndarray]:
    """``d loss() / d p`` for every entry ``p`` of ``model.flat``, moved by +-eps in turn (float64),
    laid out as ``model.params``."""
    host = xpnet.to_numpy(model.flat).copy()  # (n_params,) float64
    backend = model.backend

    def loss_at() -> float:
        model.flat[...] = backend.asarray(host)  # the params are views into flat
        return loss()

    g = np.zeros_like(host)
    for i in range(host.size):
        orig = host[i]
        host[i] = orig + eps
        up = loss_at()
        host[i] = orig - eps
        down = loss_at()
        host[i] = orig
        g[i] = (up - down) / (2 * eps)
    model.flat[...] = backend.asarray(host)
    return [g[start:stop].reshape(shape) for start, stop, shape in model.layout.slices]


@pytest.mark.parametrize("output,loss", PAIRS)
@pytest.mark.parametrize("activation", HIDDEN)
def test_backprop_matches_finite_differences(backend, activation, output, loss):
    _check_against_finite_differences(backend, activation, output, loss, depth=2)


@pytest.mark.parametrize("depth", [3, 4])
@pytest.mark.parametrize("output,loss", PAIRS)
@pytest.mark.parametrize("activation", HIDDEN)
def test_deeper_backprop_matches_finite_differences(native_backend, activation, output, loss, depth):
    """Deeper nets run the same lines again (the layer loop): every activation and head is
    checked on every backend at depth 2 above, and at depths 3 and 4 on NumPy (and CuPy)."""
    _check_against_finite_differences(native_backend, activation, output, loss, depth)


def _check_against_finite_differences(backend, activation: str, output: str, loss: str, depth: int) -> None:
    sizes = DEPTHS[depth]
    rng = np.random.default_rng(depth * 100 + len(activation))
    m = 7
    X = rng.normal(size=(m, sizes[0]))
    y = _targets(output, loss, m, sizes[-1], rng)
    model = xpnet.MLP(sizes, activation=activation, output=output, loss=loss, init="xavier",
                      backend=backend, dtype="float64", seed=depth)
    # non-zero biases, so that every bias gradient is exercised away from the init
    model.params = [backend.asarray(xpnet.to_numpy(p) + 0.1 * rng.normal(size=p.shape)) for p in model.params]

    value, grads = model.loss_and_grads(X, y)
    assert isinstance(value, float) and math.isfinite(value)
    numeric = numeric_grads(model, X, y)
    for i, (g, n) in enumerate(zip(grads, numeric)):
        g = xpnet.to_numpy(g)
        assert g.shape == n.shape, f"grad {i} has shape {g.shape}, param has {n.shape}"
        rel = np.linalg.norm(g - n) / max(np.linalg.norm(g) + np.linalg.norm(n), 1e-12)
        assert rel < 1e-6, f"param {i}: relative error {rel:.2e}"


@pytest.mark.parametrize("n_out", [1, 2])
def test_single_sigmoid_unit_with_flat_labels(backend, n_out):
    """0/1 labels of shape (m,) for one sigmoid unit; class labels for two softmax units."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(9, 3))
    y = rng.integers(0, 2, 9)
    output = "sigmoid" if n_out == 1 else "softmax"
    model = xpnet.MLP([3, 4, n_out], activation="tanh", output=output, backend=backend, dtype="float64")
    _, grads = model.loss_and_grads(X, y)
    for g, n in zip(grads, numeric_grads(model, X, y)):
        np.testing.assert_allclose(xpnet.to_numpy(g), n, rtol=1e-6, atol=1e-9)
