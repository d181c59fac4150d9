"""Activations and losses at extreme inputs, and against their plain formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet
from xpnet.activations import ACTIVATIONS
from xpnet.backend import Buffers
from xpnet.losses import LOSSES, softmax_cross_entropy


def _dev(backend, a):
    return backend.asarray(np.asarray(a, dtype=np.float64))


def test_sigmoid_is_stable_at_any_z(backend):
    z = _dev(backend, [[-1e4, -800.0, -30.0, 0.0, 30.0, 800.0, 1e4]])
    a = xpnet.to_numpy(ACTIVATIONS["sigmoid"].forward(backend.xp, z))  # warnings are errors in this suite
    assert np.all(np.isfinite(a)) and np.all((a >= 0) & (a <= 1))
    assert a[0, 0] == 0.0 and a[0, 3] == 0.5 and a[0, -1] == 1.0
    z32 = backend.asarray(np.array([[-1e4, 1e4]], dtype=np.float32))
    assert np.all(np.isfinite(xpnet.to_numpy(ACTIVATIONS["sigmoid"].forward(backend.xp, z32))))


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "relu", "leaky_relu", "identity", "softmax"])
def test_activations_match_their_formulas(backend, name):
    z = np.random.default_rng(1).normal(size=(5, 4)) * 3
    expected = {
        "sigmoid": 1 / (1 + np.exp(-z)),
        "tanh": np.tanh(z),
        "relu": np.maximum(z, 0),
        "leaky_relu": np.where(z > 0, z, 0.01 * z),
        "identity": z,
        "softmax": np.exp(z) / np.exp(z).sum(axis=1, keepdims=True),
    }[name]
    got = xpnet.to_numpy(ACTIVATIONS[name].forward(backend.xp, _dev(backend, z)))
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


def test_cross_entropy_is_finite_for_huge_logits(backend):
    xp = backend.xp
    Z = _dev(backend, [[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
    Y = _dev(backend, [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])
    A = ACTIVATIONS["softmax"].forward(xp, Z)
    value = float(LOSSES["cross_entropy"].value(xp, Z, A, Y))
    assert value == pytest.approx(2e4, rel=1e-12)  # summed over rows: the first is 2e4 wrong, the second right
    delta = xpnet.to_numpy(LOSSES["cross_entropy"].delta(xp, Z, A, Y, "softmax"))
    assert np.all(np.isfinite(delta))
    fused, fused_delta = softmax_cross_entropy(backend.nx, Z, Y, 0.5)
    assert float(fused) == pytest.approx(2e4, rel=1e-12)
    np.testing.assert_allclose(xpnet.to_numpy(fused_delta), 0.5 * delta, rtol=1e-12, atol=0)


def test_binary_cross_entropy_is_finite_for_huge_logits(backend):
    xp = backend.xp
    Z = _dev(backend, [[1e4], [-1e4], [0.0]])
    Y = _dev(backend, [[0.0], [0.0], [1.0]])
    A = ACTIVATIONS["sigmoid"].forward(xp, Z)
    value = float(LOSSES["binary_cross_entropy"].value(xp, Z, A, Y))
    assert value == pytest.approx(1e4 + 0.0 + math.log(2), rel=1e-12)  # summed over the rows


def test_losses_match_their_formulas(backend):
    rng = np.random.default_rng(2)
    z = rng.normal(size=(6, 3))
    y_onehot = np.eye(3)[rng.integers(0, 3, 6)]
    y01 = (rng.random((6, 3)) < 0.5).astype(float)
    xp = backend.xp
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    s = 1 / (1 + np.exp(-z))
    cases = [
        ("cross_entropy", "softmax", y_onehot, -np.sum(y_onehot * np.log(p))),  # losses sum over rows
        ("binary_cross_entropy", "sigmoid", y01, -np.sum(y01 * np.log(s) + (1 - y01) * np.log(1 - s))),
        ("mse", "sigmoid", y01, np.sum((s - y01) ** 2) / 2),
        ("mse", "identity", y01, np.sum((z - y01) ** 2) / 2),
    ]
    for loss, output, y, expected in cases:
        Z = _dev(backend, z)
        A = ACTIVATIONS[output].forward(xp, Z)
        assert float(LOSSES[loss].value(xp, Z, A, _dev(backend, y))) == pytest.approx(expected, rel=1e-12), loss


@pytest.mark.parametrize("reuse", [False, True], ids=["allocating", "buffers"])
def test_fused_softmax_head_matches_softmax_and_cross_entropy(backend, reuse):
    """One head (shared max, exp, sum) gives the generic pair's loss and gradient; Z is only read."""
    rng = np.random.default_rng(4)
    z = rng.normal(size=(7, 5)) * 4
    y = np.eye(5)[rng.integers(0, 5, 7)] * 0.9 + 0.02  # soft targets too
    Z, Y = _dev(backend, z), _dev(backend, y)
    A = ACTIVATIONS["softmax"].forward(backend.xp, Z)
    value = float(LOSSES["cross_entropy"].value(backend.xp, Z, A, Y))
    delta = xpnet.to_numpy(LOSSES["cross_entropy"].delta(backend.xp, Z, A, Y, "softmax"))
    buf = Buffers(backend, enabled=reuse)
    fused, fused_delta = softmax_cross_entropy(backend.nx, Z, Y, 1 / 7, buf)
    assert float(fused) == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(xpnet.to_numpy(fused_delta), delta / 7, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(xpnet.to_numpy(Z), z)
