"""The hot path (reused buffers, out=, in-place activations and updates) against the plain path."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet
from xpnet.activations import HIDDEN

OPTIMIZERS = {
    "sgd": lambda: xpnet.SGD(0.05),
    "sgd-wd": lambda: xpnet.SGD(0.05, weight_decay=0.01),
    "momentum": lambda: xpnet.SGD(0.05, momentum=0.9, weight_decay=0.01),
    "nesterov": lambda: xpnet.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "nesterov-no-wd": lambda: xpnet.SGD(0.05, momentum=0.9, nesterov=True),
    "adam": lambda: xpnet.Adam(1e-2),
    "adamw": lambda: xpnet.Adam(1e-2, weight_decay=0.1),
}


def _train(backend, activation, output, optimizer, reuse):
    X, y = xpnet.make_moons(203, noise=0.2, seed=5)  # 203: the last batch is a partial one
    k = 1 if output == "sigmoid" else 2
    model = xpnet.MLP([2, 9, 7, k], activation=activation, output=output, backend=backend, dtype="float64", seed=3)
    xpnet.fit(model, X, y, OPTIMIZERS[optimizer](), epochs=3, batch_size=32, verbose=False, reuse_buffers=reuse)
    return [xpnet.to_numpy(p).copy() for p in model.params]


@pytest.mark.parametrize("activation", HIDDEN)
@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_buffered_training_matches_the_plain_path(backend, activation, output):
    plain = _train(backend, activation, output, "adam", reuse=False)
    fast = _train(backend, activation, output, "adam", reuse=True)
    for a, b in zip(plain, fast):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_buffered_updates_match_the_plain_updates(backend, optimizer):
    plain = _train(backend, "relu", "softmax", optimizer, reuse=False)
    fast = _train(backend, "relu", "softmax", optimizer, reuse=True)
    for a, b in zip(plain, fast):
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-14)


def test_grads_are_only_read(backend):
    """The optimizer must not write into the gradients it is given."""
    params = [backend.asarray(np.ones((3, 2))), backend.asarray(np.ones(2))]
    grads = [backend.asarray(np.full((3, 2), 0.5)), backend.asarray(np.full(2, 0.5))]
    for opt in (xpnet.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=0.1), xpnet.Adam(0.1, weight_decay=0.1)):
        opt.attach(params, backend)
        opt.step(params, grads)
        opt.step(params, grads)
        for g in grads:
            assert np.all(xpnet.to_numpy(g) == 0.5)
