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
    """Central differences of model.evaluate(X, y)['loss'] for every parameter."""
    host = [xpnet.to_numpy(p).copy() for p in model.params]
    backend = model.backend

    def loss_at() -> float:
        model.params = [backend.asarray(h) for h in host]
        return model.evaluate(X, y)["loss"]

    out = []
    for p in host:
        g = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            orig = p[idx]
            p[idx] = orig + eps
            up = loss_at()
            p[idx] = orig - eps
            down = loss_at()
            p[idx] = orig
            g[idx] = (up - down) / (2 * eps)
        out.append(g)
    model.params = [backend.asarray(h) for h in host]
    return out


@pytest.mark.parametrize("depth", sorted(DEPTHS))
@pytest.mark.parametrize("output,loss", PAIRS)
@pytest.mark.parametrize("activation", HIDDEN)
def test_backprop_matches_finite_differences(backend, activation, output, loss, depth):
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
