"""One SGD step of the tutorials' [3, 4, 3, 1] tanh/sigmoid net, against a scalar reference.

The reference below is written neuron by neuron with Python floats and the math
module, straight from the chain rule; it shares no code with xpnet.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import xpnet

SIZES = [3, 4, 3, 1]
X = [[0.5, -1.0, 2.0], [-0.3, 0.8, 0.1]]
Y = [1.0, 0.0]
LR = 0.5


def _weights():
    """Simple, distinct starting weights: W[l][i][j] from input i to unit j (batch-first)."""
    Ws, bs = [], []
    for l, (n_in, n_out) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        Ws.append([[0.1 * ((i + 2 * j + l) % 5) - 0.2 for j in range(n_out)] for i in range(n_in)])
        bs.append([0.05 * (j - l) for j in range(n_out)])
    return Ws, bs


def _reference_step(Ws, bs):
    """Loss before the step and the weights after one full-batch SGD step, by hand."""
    m, L = len(X), len(Ws)
    gW = [[[0.0] * len(row) for row in W] for W in Ws]
    gb = [[0.0] * len(b) for b in bs]
    loss = 0.0
    for x, y in zip(X, Y):
        acts = [list(x)]
        for l in range(L):
            a_prev = acts[-1]
            z = [sum(a_prev[i] * Ws[l][i][j] for i in range(len(a_prev))) + bs[l][j] for j in range(len(bs[l]))]
            if l < L - 1:
                acts.append([math.tanh(v) for v in z])
            else:
                a_out = 1.0 / (1.0 + math.exp(-z[0]))
        loss += -(y * math.log(a_out) + (1 - y) * math.log(1 - a_out)) / m
        delta = [(a_out - y) / m]  # dL/dz of the sigmoid unit under binary cross-entropy
        for l in reversed(range(L)):
            a_prev = acts[l]
            for i in range(len(a_prev)):
                for j in range(len(delta)):
                    gW[l][i][j] += a_prev[i] * delta[j]
            for j in range(len(delta)):
                gb[l][j] += delta[j]
            if l > 0:  # through W, then through tanh: 1 - a^2
                delta = [sum(Ws[l][i][j] * delta[j] for j in range(len(delta))) * (1 - a_prev[i] ** 2)
                         for i in range(len(a_prev))]
    new_W = [[[w - LR * g for w, g in zip(rw, rg)] for rw, rg in zip(W, G)] for W, G in zip(Ws, gW)]
    new_b = [[v - LR * g for v, g in zip(b, G)] for b, G in zip(bs, gb)]
    return loss, new_W, new_b


def test_one_sgd_step_matches_the_hand_computation(backend):
    Ws, bs = _weights()
    arrays = [a for W, b in zip(Ws, bs) for a in (np.array(W), np.array(b))]
    model = xpnet.MLP.from_arrays(arrays, backend=backend, sizes=SIZES, activation="tanh", output="sigmoid",
                                  loss="binary_cross_entropy", init="xavier", dtype="float64")
    loss, grads = model.loss_and_grads(np.array(X), np.array(Y))
    xpnet.SGD(lr=LR).step(model.params, grads)

    ref_loss, ref_W, ref_b = _reference_step(Ws, bs)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    for l in range(len(Ws)):
        np.testing.assert_allclose(xpnet.to_numpy(model.params[2 * l]), ref_W[l], rtol=0, atol=1e-14)
        np.testing.assert_allclose(xpnet.to_numpy(model.params[2 * l + 1]), ref_b[l], rtol=0, atol=1e-14)


def test_zero_weights_give_log2_and_the_obvious_output_gradient(backend):
    """Worked on paper: all weights 0 -> every a = sigmoid(0) = 1/2, so the loss is
    log 2 and dL/db_out = mean(1/2 - y) = (1/2 - 1 + 1/2 - 0) / 2 = 0."""
    arrays = [np.zeros((3, 4)), np.zeros(4), np.zeros((4, 3)), np.zeros(3), np.zeros((3, 1)), np.zeros(1)]
    model = xpnet.MLP.from_arrays(arrays, backend=backend, sizes=SIZES, activation="tanh", output="sigmoid",
                                  loss=None, init=None, dtype="float64")
    loss, grads = model.loss_and_grads(np.array(X), np.array(Y))
    assert loss == pytest.approx(math.log(2), rel=1e-15)
    assert float(xpnet.to_numpy(grads[-1])[0]) == 0.0
    # and every other gradient is zero too: tanh(0) = 0 zeroes each A_prev, and W = 0 each delta
    assert all(not np.any(xpnet.to_numpy(g)) for g in grads)
