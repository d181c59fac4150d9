"""Training end to end: it learns, it is reproducible, and backends agree."""

from __future__ import annotations

import numpy as np
import pytest

import xpnet


def test_xor_is_learned_to_100_percent(backend):
    X, y = xpnet.make_xor()
    model = xpnet.MLP([2, 8, 2], activation="tanh", backend=backend, seed=1)
    xpnet.fit(model, X, y, xpnet.SGD(0.5, momentum=0.9), epochs=300, batch_size=None, verbose=False)
    assert model.evaluate(X, y)["accuracy"] == 1.0
    np.testing.assert_array_equal(xpnet.to_numpy(model.predict(X)), y)


def test_two_moons_reach_97_percent(native_backend):
    # noise 0.15: at 0.2 the classes overlap so much that ~97% is the best any classifier gets
    data = xpnet.load_moons(n=2000, noise=0.15, seed=0)
    model = xpnet.MLP([2, 32, 32, 2], activation="tanh", backend=native_backend, seed=0)
    xpnet.fit(model, data.X_train, data.y_train, xpnet.Adam(1e-2), epochs=40, batch_size=32, verbose=False)
    assert model.evaluate(data.X_test, data.y_test)["accuracy"] >= 0.97


def test_bundled_mnist_reaches_95_percent(native_backend):
    data = xpnet.load_mnist()
    assert data.X_train.shape == (8000, 784) and data.X_test.shape == (2000, 784)
    model = xpnet.MLP([784, 128, 64, 10], backend=native_backend, seed=0)
    opt = xpnet.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, schedule="cosine")
    history = xpnet.fit(model, data.X_train, data.y_train, opt, epochs=20, batch_size=64, verbose=False)
    assert history.train_loss[-1] < history.train_loss[0]
    assert model.evaluate(data.X_test, data.y_test)["accuracy"] >= 0.95


def _run(backend, seed=0, shuffle=True):
    X, y = xpnet.make_moons(200, noise=0.1, seed=3)
    model = xpnet.MLP([2, 16, 2], activation="relu", backend=backend, seed=seed)
    history = xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=3, batch_size=32, shuffle=shuffle, verbose=False)
    return [xpnet.to_numpy(p).copy() for p in model.params], history


def test_same_seed_same_result_twice(backend):
    (p1, h1), (p2, h2) = _run(backend), _run(backend)
    assert h1.train_loss == h2.train_loss
    for a, b in zip(p1, p2):
        np.testing.assert_array_equal(a, b)
    p3, _ = _run(backend, seed=1)
    assert not np.array_equal(p1[0], p3[0])


def test_same_seed_same_initial_weights_on_every_backend(backend):
    ref = xpnet.MLP([5, 7, 3], seed=11)
    other = xpnet.MLP([5, 7, 3], seed=11, backend=backend)
    for a, b in zip(ref.params, other.params):
        np.testing.assert_array_equal(xpnet.to_numpy(a), xpnet.to_numpy(b))


@pytest.mark.parametrize("shuffle", [False, True])
def test_backend_trains_like_numpy(backend, shuffle):
    """Every backend follows NumPy's trajectory, shuffled epochs too (the order is drawn
    on the host for every backend): float32 rounding apart, the same weights and losses."""
    ref, ref_history = _run(xpnet.get_backend(device="cpu"), shuffle=shuffle)
    got, history = _run(backend, shuffle=shuffle)
    np.testing.assert_allclose(history.train_loss, ref_history.train_loss, rtol=1e-4)
    for a, b in zip(ref, got):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5)


def test_full_batch_gradient_descent_is_one_step_per_epoch(backend):
    X, y = xpnet.make_moons(64, seed=1)
    model = xpnet.MLP([2, 4, 1], activation="tanh", output="sigmoid", backend=backend, dtype="float64")
    opt = xpnet.SGD(1.2)
    before = [xpnet.to_numpy(p).copy() for p in model.params]
    _, grads = model.loss_and_grads(X, y)
    expected = [b - 1.2 * xpnet.to_numpy(g) for b, g in zip(before, grads)]
    xpnet.fit(model, X, y, opt, epochs=1, batch_size=None, verbose=False)
    for p, e in zip(model.params, expected):
        np.testing.assert_allclose(xpnet.to_numpy(p), e, rtol=1e-12, atol=1e-14)


def test_batches_are_sorted_inside_and_gathered_or_sliced(backend):
    """One block sort and one gather, shared by fit and xpnet.sklearn: the same batches, rows in address order."""
    from xpnet.backend import Buffers
    from xpnet.batches import block_sorted, gather_batch

    perm = backend.random(2, 0).permutation(23)
    order = block_sorted(perm, 5)
    host, was = xpnet.to_numpy(order), xpnet.to_numpy(perm)
    for s in range(0, 23, 5):  # every batch holds the same rows, sorted; the short last one too
        np.testing.assert_array_equal(host[s:s + 5], np.sort(was[s:s + 5]))
    X = backend.asarray(np.arange(46.0).reshape(23, 2))
    w = backend.asarray(np.arange(23.0))
    Xb, none, wb = gather_batch(backend, (5, 10), order, Buffers(backend), X=X, L=None, w=w)
    assert none is None
    np.testing.assert_array_equal(xpnet.to_numpy(wb), host[5:10])
    np.testing.assert_array_equal(xpnet.to_numpy(Xb), np.arange(46.0).reshape(23, 2)[host[5:10]])
    Xs, = gather_batch(backend, (20, 23), None, X=X)  # no order: a slice
    np.testing.assert_array_equal(xpnet.to_numpy(Xs), np.arange(40.0, 46.0).reshape(3, 2))


def test_history_and_validation(backend):
    data = xpnet.load_moons(n=300, seed=2)
    model = xpnet.MLP([2, 8, 2], backend=backend)
    h = xpnet.fit(model, data.X_train, data.y_train, xpnet.Adam(1e-2), epochs=4, batch_size=50,
                  validation_data=(data.X_test, data.y_test), verbose=False)
    assert h.epoch == [1, 2, 3, 4]
    for name in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds", "samples_per_second", "lr"):
        assert len(getattr(h, name)) == 4, name
    assert all(0 <= a <= 1 for a in h.val_accuracy + h.train_accuracy)
    assert h.val_loss[-1] == pytest.approx(model.evaluate(data.X_test, data.y_test)["loss"], rel=1e-5)


def test_early_stopping_restores_the_best_weights(backend):
    data = xpnet.load_moons(n=200, noise=0.3, seed=4)
    model = xpnet.MLP([2, 64, 2], backend=backend, seed=0)
    stopper = xpnet.EarlyStopping(patience=2)
    # a learning rate high enough that validation loss soon stops improving
    h = xpnet.fit(model, data.X_train, data.y_train, xpnet.SGD(2.0, momentum=0.9), epochs=60, batch_size=16,
                  validation_data=(data.X_test, data.y_test), callbacks=[stopper], verbose=False)
    assert h.stopped_early and len(h.epoch) < 60
    best = h.val_loss[h.best_epoch - 1]
    assert best == min(h.val_loss)
    assert model.evaluate(data.X_test, data.y_test)["loss"] == pytest.approx(best, rel=1e-5)


@pytest.mark.parametrize("name,expected", [
    ("constant", [0.1, 0.1, 0.1, 0.1]),
    ("step", [0.1, 0.1, 0.1, 0.1]),  # step_size 10 by default
    ("cosine", [0.1, 0.1 * (0.5 + 0.5 * np.cos(np.pi / 4)), 0.05, 0.1 * (0.5 + 0.5 * np.cos(3 * np.pi / 4))]),
])
def test_schedules_set_the_learning_rate_per_epoch(backend, name, expected):
    X, y = xpnet.make_xor()
    model = xpnet.MLP([2, 3, 2], backend=backend)
    h = xpnet.fit(model, X, y, xpnet.SGD(0.1, schedule=name), epochs=4, verbose=False)
    np.testing.assert_allclose(h.lr, expected, rtol=1e-12)


def test_step_decay():
    sched = xpnet.StepDecay(step_size=2, gamma=0.5)
    assert [sched(e, 6) for e in range(6)] == [1, 1, 0.5, 0.5, 0.25, 0.25]


def test_regression_with_identity_output(backend):
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (256, 1))
    y = np.sin(3 * X[:, 0])
    model = xpnet.MLP([1, 32, 1], activation="tanh", output="identity", backend=backend, dtype="float64")
    xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=150, batch_size=64, verbose=False)
    scores = model.evaluate(X, y)
    assert "accuracy" not in scores and scores["loss"] < 0.01
    assert xpnet.to_numpy(model.predict(X)).shape == (256,)


def test_data_already_on_the_device(backend):
    X, y = xpnet.make_moons(100, seed=0)
    model = xpnet.MLP([2, 8, 2], backend=backend)
    Xd, yd = backend.asarray(X), backend.asarray(y)
    h = xpnet.fit(model, Xd, yd, xpnet.Adam(1e-2), epochs=2, verbose=False)
    assert h.train_loss[-1] < h.train_loss[0]
    assert model.evaluate(Xd, yd) == model.evaluate(X, y)
