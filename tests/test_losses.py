"""The regression losses (huber, mae) and label smoothing: values by hand, gradients against
float64 finite differences on every backend, PyTorch's autograd where torch is installed, and
the settings in model files and checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
from cli_helpers import last_json, run
from test_gradients import numeric_grads

import xpnet
from xpnet.losses import LOSSES, LossSettings, softmax_cross_entropy

SIZES = [4, 5, 3]


def _model(backend, output: str, loss: str, seed: int = 1, **settings) -> xpnet.MLP:
    """A float64 tanh net with non-zero biases, so every gradient is away from the init."""
    rng = np.random.default_rng(seed)
    model = xpnet.MLP(SIZES, activation="tanh", output=output, loss=loss, init="xavier", backend=backend,
                      dtype="float64", seed=seed, **settings)
    model.params = [backend.asarray(xpnet.to_numpy(p) + 0.1 * rng.normal(size=p.shape)) for p in model.params]
    return model


def _assert_matches_finite_differences(model: xpnet.MLP, X, y) -> None:
    _, grads = model.loss_and_grads(X, y)
    for i, (g, n) in enumerate(zip(grads, numeric_grads(model, X, y))):
        g = xpnet.to_numpy(g)
        rel = np.linalg.norm(g - n) / max(np.linalg.norm(g) + np.linalg.norm(n), 1e-12)
        assert rel < 1e-6, f"param {i}: relative error {rel:.2e}"


def _residual_targets(model: xpnet.MLP, X, low: float, high: float, rng) -> np.ndarray:
    """Targets whose residuals ``a - y`` have sizes in ``[low, high)`` and random signs."""
    A = np.asarray(xpnet.to_numpy(model.forward(X)))
    size = rng.uniform(low, high, A.shape)
    return A - np.where(rng.random(A.shape) < 0.5, -size, size)


@pytest.mark.parametrize("delta", [0.3, 1.0, 2.5])
def test_huber_matches_finite_differences(backend, delta):
    """Residuals on both sides of delta (none near it), every element's branch exercised."""
    rng = np.random.default_rng(int(delta * 10))
    X = rng.normal(size=(8, SIZES[0]))
    model = _model(backend, "identity", "huber", huber_delta=delta)
    y = _residual_targets(model, X, 0.05 * delta, 3 * delta, rng)
    r = np.abs(np.asarray(xpnet.to_numpy(model.forward(X))) - y)
    assert (r < delta * 0.9).any() and (r > delta * 1.1).any()
    y[np.abs(r - delta) < 0.1 * delta] += 0.5 * delta  # keep away from the joint (FD across it is still fine)
    _assert_matches_finite_differences(model, X, y)


def test_mae_matches_finite_differences(backend):
    """Residuals away from 0, where |d| is smooth."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(8, SIZES[0]))
    model = _model(backend, "identity", "mae")
    _assert_matches_finite_differences(model, X, _residual_targets(model, X, 0.05, 2.0, rng))


@pytest.mark.parametrize("eps", [0.1, 0.35])
def test_label_smoothing_matches_finite_differences(backend, eps):
    """The fused softmax head with smoothed targets against the table's smoothed value (scores)."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(9, SIZES[0]))
    model = _model(backend, "softmax", "cross_entropy", label_smoothing=eps)
    _assert_matches_finite_differences(model, X, rng.integers(0, SIZES[-1], 9))


def test_values_by_hand(backend):
    """Each loss's value and delta from its per-element definition, summed over rows and outputs."""
    rng = np.random.default_rng(5)
    Z, Y = rng.normal(size=(6, 3)) * 2, rng.normal(size=(6, 3))
    xp = backend.xp
    Zd, Yd = backend.asarray(Z), backend.asarray(Y)
    D = Z - Y
    for delta in (0.5, 1.0, 2.0):
        s = LossSettings(huber_delta=delta)
        want = np.where(np.abs(D) <= delta, 0.5 * D * D, delta * (np.abs(D) - 0.5 * delta)).sum()
        assert float(LOSSES["huber"].value(xp, Zd, Zd, Yd, s)) == pytest.approx(want, rel=1e-12)
        got = xpnet.to_numpy(LOSSES["huber"].delta(xp, Zd, Zd, Yd, "identity", s))
        np.testing.assert_allclose(got, np.clip(D, -delta, delta), rtol=1e-12)
    assert float(LOSSES["mae"].value(xp, Zd, Zd, Yd)) == pytest.approx(np.abs(D).sum(), rel=1e-12)
    # the derivative of |d| is sign(d), and 0 at d == 0 (PyTorch's)
    got = xpnet.to_numpy(LOSSES["mae"].delta(xp, Zd, Zd, Zd, "identity"))
    assert not got.any()
    # label smoothing: the cross-entropy against y (1 - eps) + eps / k
    P = np.exp(Z - Z.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    onehot = np.eye(3)[rng.integers(0, 3, 6)]
    T = onehot * 0.8 + 0.2 / 3
    s = LossSettings(label_smoothing=0.2)
    Od = backend.asarray(onehot)
    assert float(LOSSES["cross_entropy"].value(xp, Zd, backend.asarray(P), Od, s)) == pytest.approx(
        -(T * np.log(P)).sum(), rel=1e-12)
    fused, fused_delta = softmax_cross_entropy(backend.nx, Zd, Od, 0.5, label_smoothing=0.2)
    assert float(fused) == pytest.approx(-(T * np.log(P)).sum(), rel=1e-12)
    np.testing.assert_allclose(xpnet.to_numpy(fused_delta), (P - T) * 0.5, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(xpnet.to_numpy(Od), onehot)  # the targets are only read


def test_against_torch_autograd():
    """Values and gradients of PyTorch's losses on the same weights, float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    X = rng.normal(size=(10, SIZES[0]))

    def torch_grads(model: xpnet.MLP, loss_fn, target) -> tuple[float, list[np.ndarray]]:
        params = [torch.tensor(xpnet.to_numpy(p), dtype=torch.float64, requires_grad=True) for p in model.params]
        A = torch.tensor(X)
        for l in range(0, len(params), 2):
            A = A @ params[l] + params[l + 1]
            if l < len(params) - 2:
                A = torch.tanh(A)
        value = loss_fn(A, target)
        value.backward()
        return float(value.detach()), [p.grad.numpy() for p in params]

    cases = []
    for delta in (0.5, 1.0, 2.0):
        model = _model(xpnet.get_backend("numpy"), "identity", "huber", huber_delta=delta)
        y = _residual_targets(model, X, 0.1 * delta, 3 * delta, rng)
        # summed over the outputs, averaged over the rows
        cases.append((model, y, lambda a, t, d=delta: torch.nn.HuberLoss(reduction="sum", delta=d)(a, t) / len(X),
                      torch.tensor(y)))
    model = _model(xpnet.get_backend("numpy"), "identity", "mae")
    y = _residual_targets(model, X, 0.1, 2.0, rng)
    cases.append((model, y, lambda a, t: torch.nn.L1Loss(reduction="sum")(a, t) / len(X), torch.tensor(y)))
    for eps in (0.1, 0.3):
        model = _model(xpnet.get_backend("numpy"), "softmax", "cross_entropy", label_smoothing=eps)
        y = rng.integers(0, SIZES[-1], len(X))
        cases.append((model, y, torch.nn.CrossEntropyLoss(label_smoothing=eps), torch.tensor(y)))
    for model, y, loss_fn, target in cases:
        want, want_grads = torch_grads(model, loss_fn, target)
        value, grads = model.loss_and_grads(X, y)
        assert value == pytest.approx(want, rel=1e-12), model.loss
        assert model.evaluate(X, y)["loss"] == pytest.approx(want, rel=1e-12), model.loss
        for g, w in zip(grads, want_grads):
            np.testing.assert_allclose(xpnet.to_numpy(g), w, rtol=1e-10, atol=1e-13)


def test_settings_in_the_model_file(tmp_path):
    """Stored where not the default (absent in older files: the default), and loaded back."""
    for loss, settings in (("huber", {"huber_delta": 0.25}), ("huber", {}), ("mae", {})):
        model = xpnet.MLP([3, 4, 2], output="identity", loss=loss, **settings)
        assert {k: v for k, v in model.config().items() if k in LossSettings._fields} == settings
        model.save(tmp_path / "m.npz")
        back = xpnet.load(tmp_path / "m.npz")
        assert (back.loss, back.huber_delta, back.label_smoothing) == (loss, settings.get("huber_delta", 1.0), 0.0)
    model = xpnet.MLP([3, 4, 2], label_smoothing=0.1)
    model.save(tmp_path / "c.npz")
    assert xpnet.load(tmp_path / "c.npz").label_smoothing == 0.1
    assert xpnet.MLP([3, 4, 2]).config().keys().isdisjoint(LossSettings._fields)  # default: as before


@pytest.mark.parametrize("kwargs,message", [
    ({"output": "identity", "loss": "huber", "huber_delta": 0}, "huber_delta=0 is out of range: expected > 0"),
    ({"output": "identity", "loss": "huber", "huber_delta": float("nan")}, "huber_delta=nan is out of range"),
    ({"output": "identity", "loss": "huber", "huber_delta": "1"}, "huber_delta='1' is not a number"),
    ({"label_smoothing": 1.0}, "label_smoothing=1.0 is out of range: expected 0 <= label_smoothing < 1"),
    ({"label_smoothing": -0.1}, "label_smoothing=-0.1 is out of range: expected >= 0"),
    ({"output": "sigmoid", "label_smoothing": 0.1}, "label_smoothing=0.1 with loss='binary_cross_entropy': "
                                                     "label_smoothing is for loss='cross_entropy'"),
    ({"output": "identity", "loss": "mae", "huber_delta": 2.0}, "huber_delta=2.0 with loss='mae': huber_delta is for "
                                                                "loss='huber'"),
    ({"output": "softmax", "loss": "huber"}, "loss='huber' does not fit output='softmax'"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(")", r"\)")) as info:
        xpnet.MLP([3, 4, 2], **kwargs)
    assert "\n" not in str(info.value)


def test_resume_refuses_other_settings(tmp_path):
    rng = np.random.default_rng(7)
    X, y = rng.normal(size=(20, 3)), rng.integers(0, 2, 20)
    ckpt = str(tmp_path / "run.ckpt.npz")
    xpnet.fit(xpnet.MLP([3, 4, 2], label_smoothing=0.1), X, y, epochs=1, checkpoint=ckpt, verbose=False)
    for settings in ({}, {"label_smoothing": 0.2}):
        with pytest.raises(ValueError, match="was written for label_smoothing=0.1, but this run has label_smoothing="):
            xpnet.fit(xpnet.MLP([3, 4, 2], **settings), X, y, epochs=2, resume=ckpt, verbose=False)
    xpnet.fit(xpnet.MLP([3, 4, 2], label_smoothing=0.1), X, y, epochs=2, resume=ckpt, verbose=False)


def test_cli_losses(tmp_path, monkeypatch, capsys):
    """--loss huber|mae with --huber-delta for regression, --label-smoothing for classes: stored
    in the model file, refused on resume when different, bad values refused in one line."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(8)
    X = rng.normal(size=(60, 2))
    (tmp_path / "r.csv").write_text("".join(f"{a:.4f},{b:.4f},{2 * a - b + 0.3:.4f}\n" for a, b in X))
    for loss, extra in (("huber", ["--huber-delta", "0.5"]), ("mae", [])):
        argv = ["train", "--data", "r.csv", "--task", "regression", "--loss", loss, *extra, "--epochs", "2",
                "--layers", "2,8,1", "--quiet", "--json", "--save", f"{loss}.npz"]
        assert run(argv) == 0
        assert "train_loss" in last_json(capsys.readouterr().out)
        model = xpnet.load(tmp_path / f"{loss}.npz")
        assert (model.loss, model.huber_delta) == (loss, 0.5 if extra else 1.0)
    moons = ["train", "--dataset", "moons", "--epochs", "1", "--layers", "2,8,2", "--quiet"]
    assert run([*moons, "--label-smoothing", "0.1", "--checkpoint", "c.npz"]) == 0
    assert xpnet.load(tmp_path / "c.npz").label_smoothing == 0.1
    capsys.readouterr()
    assert run([*moons, "--epochs", "2", "--resume", "c.npz"]) != 0
    err = capsys.readouterr().err.strip()
    assert "was written for label_smoothing=0.1, but this run has label_smoothing=0.0" in err and "\n" not in err
    for flags, message in ((["--label-smoothing", "1"], "argument --label-smoothing: '1' must be in [0, 1)"),
                           (["--label-smoothing", "x"], "argument --label-smoothing: 'x' is not a number"),
                           (["--huber-delta", "0"], "argument --huber-delta: '0' must be > 0"),
                           (["--huber-delta", "2"], "huber_delta=2.0 with loss='cross_entropy': huber_delta is for "
                                                    "loss='huber'")):
        assert run([*moons, *flags]) != 0
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err


@pytest.mark.parametrize("loss", ["huber", "absolute_error"])
def test_sklearn_regressor_losses(loss):
    """MLPRegressor(loss='huber'|'absolute_error'): the loss (summed over the outputs, averaged
    over the rows, plus scikit-learn's L2 term) and its gradient against finite differences, weighted too; the
    network's own loss (the fast path) gives the same numbers."""
    from xpnet.sklearn import MLPRegressor

    rng = np.random.default_rng(9)
    X, y = rng.normal(size=(30, 3)), rng.normal(size=(30, 2)) * 2
    est = MLPRegressor(loss=loss, hidden_layer_sizes=(5,), max_iter=3, dtype="float64", random_state=0, alpha=1e-3)
    with pytest.warns(Warning):  # not converged in 3 iterations
        est.fit(X, y)
    assert est.mlp_.loss == {"huber": "huber", "absolute_error": "mae"}[loss]
    A = np.asarray(est.predict(X))
    D = np.abs(A - y)
    rows = (np.where(D <= 1, 0.5 * D * D, D - 0.5) if loss == "huber" else D).sum(axis=1)
    W = [xpnet.to_numpy(p) for p in est.mlp_.params[0::2]]
    l2 = 0.5 * 1e-3 * sum((w * w).sum() for w in W) / len(X)
    assert est.loss_and_gradient(X, y)[0] == pytest.approx(rows.mean() + l2, rel=1e-12)
    for weights in (None, rng.random(30)):
        value, grad = est.loss_and_gradient(X, y, sample_weight=weights)
        if weights is None:
            fast, fast_grad = est.loss_and_gradient(X, y, exact=False)
            assert fast == pytest.approx(value, rel=1e-12)
            np.testing.assert_allclose(fast_grad, grad, rtol=1e-10, atol=1e-14)
        host, numeric = xpnet.to_numpy(est.mlp_.flat).copy(), np.zeros_like(grad)
        for i in range(host.size):
            for sign in (1, -1):
                moved = host.copy()
                moved[i] += sign * 1e-6
                est.mlp_.flat[...] = moved
                numeric[i] += sign * est.loss_and_gradient(X, y, sample_weight=weights)[0] / 2e-6
        est.mlp_.flat[...] = host
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-8)
    # warm start with another loss: the network is rebuilt with it, the weights kept
    est.set_params(loss="squared_error", warm_start=True)
    with pytest.warns(Warning):
        est.fit(X, y)
    assert est.mlp_.loss == "mse"


def test_label_smoothing_costs_two_operations_a_step():
    """The fused head smooths the targets in 2 array operations, only when asked (the default
    network's counts, held in test_flat_buffer, are unchanged)."""
    pytest.importorskip("array_api_strict")
    from xpnet.opcount import ops_per_step

    plain = ops_per_step((20, 16, 4), rows=128, batch=32)
    smoothed = ops_per_step((20, 16, 4), rows=128, batch=32, model_settings={"label_smoothing": 0.1})
    assert smoothed["step"] == plain["step"] + 2 and smoothed["update"] == plain["update"]
