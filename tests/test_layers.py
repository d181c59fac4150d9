"""Issue 22's layers (dropout, batch and layer norm, residual blocks) and activations (gelu, silu,
elu, softplus): backprop against central finite differences (every backend) and against PyTorch's
autograd, train and eval mode, resume, model files, bad values, array operations per step.

The MPI proof (N ranks compute what one process computes with batch norm and dropout) is in
tests/test_layers_mpi.py.
"""

from __future__ import annotations

import json
import os
import signal
import sys

import numpy as np
import pytest
from test_gradients import central_differences

import xpnet
from xpnet.activations import ACTIVATIONS
from xpnet.layers import EPS, MOMENTUM, draw_masks
from xpnet.train import Callback, TrainingInterrupted

NEW_ACTIVATIONS = ("gelu", "silu", "elu", "softplus")
M = 8  # rows in the gradient checks

# name -> (sizes, MLP keyword arguments): each layer and activation alone, then combined
CASES = {
    "gelu": ([3, 5, 4, 2], dict(activation="gelu")),
    "silu": ([3, 5, 4, 2], dict(activation="silu")),
    "elu": ([3, 5, 4, 2], dict(activation="elu")),
    "softplus": ([3, 5, 4, 2], dict(activation="softplus")),
    "batch": ([3, 5, 4, 2], dict(activation="tanh", norm="batch")),
    "layer": ([3, 5, 4, 2], dict(activation="tanh", norm="layer")),
    "residual": ([4, 4, 4, 3], dict(activation="tanh", residual=True)),  # both hidden layers skip, the first from X
    "dropout": ([3, 5, 4, 2], dict(activation="tanh", dropout=0.5)),
    "gelu+batch+residual+dropout": ([3, 4, 4, 2], dict(activation="gelu", norm="batch", residual=True, dropout=0.3)),
    "silu+layer+dropout-list": ([3, 5, 4, 2], dict(activation="silu", norm="layer", dropout=[0.2, 0.5])),
    "softplus+layer+residual": ([3, 4, 4, 2], dict(activation="softplus", norm="layer", residual=True)),
    "elu+batch+dropout": ([3, 5, 4, 2], dict(activation="elu", norm="batch", dropout=0.4)),
}


def _model(backend, sizes, seed=0, **settings) -> xpnet.MLP:
    """A float64 model with every parameter moved off its initial value (biases, scales and shifts
    non-zero), so that each gradient is exercised away from the init."""
    model = xpnet.MLP(sizes, init="xavier", backend=backend, dtype="float64", seed=seed, **settings)
    rng = np.random.default_rng(seed + 10)
    model.params = [backend.asarray(xpnet.to_numpy(p) + 0.2 * rng.normal(size=p.shape)) for p in model.params]
    return model


def _data(sizes, seed=0, m=M):
    rng = np.random.default_rng(seed + 20)
    return rng.normal(size=(m, sizes[0])), rng.integers(0, sizes[-1], m)


def _masks(model, m=M, key=(3,)):
    """Fixed dropout masks for ``m`` rows (device arrays, ``None`` where a layer has no dropout), or ``None``."""
    if not any(b.dropout for b in model.blocks):
        return None
    return draw_masks(model.backend, model.blocks, model.sizes, model.dtype, key, m)


def _host(a) -> np.ndarray:
    return xpnet.to_numpy(a).copy()


def train_numeric_grads(model: xpnet.MLP, X, y, masks, eps: float = 1e-6) -> list[np.ndarray]:
    """Central differences of the train-mode mean loss (``loss_and_grads``'s value: batch statistics,
    the given dropout masks) for every entry of the flat buffer in turn.

    tests/test_gradients.py's ``numeric_grads`` differentiates ``scores``, the eval-mode loss, which is
    another function once a model has batch norm or dropout.
    """
    return central_differences(model, lambda: model.loss_and_grads(X, y, masks)[0], eps)


def _assert_grads_close(names, grads, reference, tol: float) -> None:
    """Each parameter's gradient within ``tol`` in norm, relative to its own size or, for a gradient
    near zero (the bias right before batch norm has an exact zero), to the whole gradient's."""
    total = np.sqrt(sum(float(np.sum(r * r)) for r in reference))
    assert total > 0
    flat_g = np.concatenate([g.ravel() for g in grads])
    flat_r = np.concatenate([r.ravel() for r in reference])
    whole = np.linalg.norm(flat_g - flat_r) / total
    assert whole < tol, f"the whole gradient: relative error {whole:.2e}"
    for name, g, r in zip(names, grads, reference):
        assert g.shape == r.shape, f"{name}: shape {g.shape}, expected {r.shape}"
        err = np.linalg.norm(g - r)
        scale = max(np.linalg.norm(g) + np.linalg.norm(r), total)
        assert err <= tol * scale, f"{name}: error {err:.2e} against {scale:.2e} (relative {err / scale:.2e})"


# ---------------------------------------------------------------- 1. finite differences
@pytest.mark.parametrize("case", list(CASES))
def test_backprop_matches_finite_differences(backend, case):
    sizes, settings = CASES[case]
    model = _model(backend, sizes, **settings)
    X, y = _data(sizes)
    masks = _masks(model)
    stats = _host(model.stats)
    value, grads = model.loss_and_grads(X, y, masks)
    grads = [_host(g) for g in grads]
    numeric = train_numeric_grads(model, X, y, masks)
    _assert_grads_close(model.layout.names, grads, numeric, 1e-6)
    assert model.loss_and_grads(X, y, masks)[0] == value  # flat restored, nothing else moved
    np.testing.assert_array_equal(_host(model.stats), stats)  # train mode in loss_and_grads leaves running stats
    if model.norm == "batch":  # a bias right before batch norm is subtracted away with the mean: its gradient is 0
        total = np.sqrt(sum(float(np.sum(n * n)) for n in numeric))
        for l in model.normed:
            b = grads[model.layout.index("b", l)]
            assert np.max(np.abs(b)) <= 1e-12 * total, f"b{l + 1} before batch norm: {b}"


def test_dropout_mask_is_what_the_gradient_sees(backend):
    """A unit dropped in every row gets no gradient into its incoming weights; a mask of all
    1/(1-p) is the same network with the activations scaled."""
    sizes = [3, 5, 4, 2]
    model = _model(backend, sizes, activation="tanh", dropout=0.5)
    X, y = _data(sizes)
    host = [np.full((M, 5), 2.0), np.full((M, 4), 2.0)]
    host[0][:, 1] = 0.0  # unit 2 of hidden layer 1 dropped in every row
    masks = [backend.asarray(h) for h in host]
    _, grads = model.loss_and_grads(X, y, masks)
    assert np.all(_host(grads[model.layout.index("W", 0)])[:, 1] == 0)
    assert np.all(_host(grads[model.layout.index("b", 0)])[1] == 0)
    assert np.all(_host(grads[model.layout.index("W", 1)])[1, :] == 0)  # its (zero) output feeds W2's row 2
    assert np.any(_host(grads[model.layout.index("W", 1)])[0, :] != 0)


# ---------------------------------------------------------------- 2. PyTorch's autograd
def _torch():
    return pytest.importorskip("torch")


def torch_reference(model: xpnet.MLP, X, labels, masks=None, train: bool = True, running=None):
    """PyTorch's loss, outputs and gradients (in the order of ``model.params``) for the same weights,
    its modules (``BatchNorm1d``, ``LayerNorm``, the activations) in train or eval mode; with batch
    norm, ``running`` gives the modules' running statistics to start from (default: PyTorch's 0 and 1).
    Returns ``(loss, outputs, grads, norms)``, ``norms`` the normalization modules by hidden layer."""
    torch = _torch()
    f64 = torch.float64
    acts = {"gelu": lambda: torch.nn.GELU(approximate="tanh"), "silu": torch.nn.SiLU, "elu": torch.nn.ELU,
            "softplus": torch.nn.Softplus, "tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}
    leaves = {name: torch.tensor(_host(p), dtype=f64, requires_grad=True) for name, p in zip(model.layout.names, model.params)}
    A = torch.tensor(np.asarray(X, dtype=np.float64))
    norms: dict[int, object] = {}
    for l in range(model.n_layers):
        Z = A @ leaves[f"W{l + 1}"] + leaves[f"b{l + 1}"]  # batch-first, as xpnet
        if l == model.n_layers - 1:
            break
        block, n = model.blocks[l], model.sizes[l + 1]
        N = Z
        if block.norm is not None:
            module = (torch.nn.BatchNorm1d(n, eps=EPS, momentum=MOMENTUM, dtype=f64) if block.norm == "batch"
                      else torch.nn.LayerNorm(n, eps=EPS, dtype=f64))
            with torch.no_grad():
                module.weight.copy_(torch.tensor(_host(model.params[model.layout.index("gamma", l)])))
                module.bias.copy_(torch.tensor(_host(model.params[model.layout.index("beta", l)])))
                if block.norm == "batch" and running is not None:
                    module.running_mean.copy_(torch.tensor(running[l][0]))
                    module.running_var.copy_(torch.tensor(running[l][1]))
            module.train(train)
            norms[l] = module
            N = module(Z)
        F = acts[block.activation]()(N)
        D = F * torch.tensor(_host(masks[l])) if train and masks is not None and masks[l] is not None else F
        A = A + D if block.residual else D
    loss = torch.nn.functional.cross_entropy(Z, torch.tensor(np.asarray(labels)))  # the mean over rows
    loss.backward()
    grads = []
    for name in model.layout.names:
        kind = name.rstrip("0123456789")
        l = int(name.removeprefix(kind)) - 1
        if kind in ("gamma", "beta"):
            grads.append((norms[l].weight if kind == "gamma" else norms[l].bias).grad.numpy().copy())
        else:
            grads.append(leaves[name].grad.numpy().copy())
    return float(loss.detach()), torch.softmax(Z, dim=1).detach().numpy(), grads, norms


@pytest.mark.parametrize("case", list(CASES))
def test_loss_and_gradients_match_torch_autograd(backend, case):
    _torch()
    sizes, settings = CASES[case]
    model = _model(backend, sizes, seed=1, **settings)
    X, y = _data(sizes, seed=1, m=16)
    X = 1.5 * X  # inputs to the activations well spread, still |z| < 20 (Softplus's threshold)
    masks = _masks(model, m=16)
    value, grads = model.loss_and_grads(X, y, masks)
    t_value, _, t_grads, _ = torch_reference(model, X, y, masks)
    assert value == pytest.approx(t_value, rel=1e-12, abs=0)
    _assert_grads_close(model.layout.names, [_host(g) for g in grads], t_grads, 1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1].get("norm") == "batch"])
def test_batch_norm_running_stats_and_eval_mode_match_torch(backend, case):
    """One train step moves the running mean and (unbiased) variance as BatchNorm1d does (momentum
    0.1); eval mode then normalizes with them, as PyTorch's eval mode, and uses no dropout."""
    _torch()
    sizes, settings = CASES[case]
    model = _model(backend, sizes, seed=2, **settings)
    X, y = _data(sizes, seed=2, m=16)
    masks = _masks(model, m=16)
    Xd, Y, _ = model.device_data(X, y)
    model.backprop(Xd, Y, masks=masks)  # train mode, tracking the running statistics (fit's step)
    _, _, _, norms = torch_reference(model, X, y, masks)
    for l in model.normed:
        mean, var = (_host(r) for r in model.running[l])
        np.testing.assert_allclose(mean, norms[l].running_mean.numpy(), rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(var, norms[l].running_var.numpy(), rtol=1e-12)
        assert not np.allclose(var, 1.0)  # moved from PyTorch's start
    running = {l: tuple(_host(r) for r in model.running[l]) for l in model.normed}
    X2, y2 = _data(sizes, seed=3, m=5)  # other rows, fewer: eval mode does not use the batch's statistics
    t_loss, t_out, _, _ = torch_reference(model, X2, y2, train=False, running=running)
    np.testing.assert_allclose(_host(model.forward(X2)), t_out, rtol=1e-12, atol=1e-15)
    assert model.evaluate(X2, y2)["loss"] == pytest.approx(t_loss, rel=1e-12)


@pytest.mark.parametrize("case", [c for c in CASES if CASES[c][1].get("norm") != "batch"])
def test_eval_mode_matches_torch_eval(backend, case):
    _torch()
    sizes, settings = CASES[case]
    model = _model(backend, sizes, seed=4, **settings)
    X, y = _data(sizes, seed=4, m=6)
    t_loss, t_out, _, _ = torch_reference(model, X, y, masks=_masks(model, m=6), train=False)
    np.testing.assert_allclose(_host(model.forward(X)), t_out, rtol=1e-12, atol=1e-15)
    assert model.evaluate(X, y)["loss"] == pytest.approx(t_loss, rel=1e-12)


@pytest.mark.parametrize("name", NEW_ACTIVATIONS)
def test_activation_tables_match_torch_elementwise(backend, name):
    """Each new activation and its derivative over -19.5..19.5 (below Softplus's threshold of 20),
    against GELU(approximate="tanh"), SiLU, ELU and Softplus: 1e-12 relative, with an absolute floor
    of 1e-14 times the upstream gradient where a value near 0 comes from cancellation in both."""
    torch = _torch()
    module = {"gelu": torch.nn.GELU(approximate="tanh"), "silu": torch.nn.SiLU(), "elu": torch.nn.ELU(),
              "softplus": torch.nn.Softplus()}[name]
    rng = np.random.default_rng(5)
    z = np.concatenate([np.linspace(-19.5, 19.5, 391), rng.normal(size=200), [0.0, 1e-8, -1e-8]])
    dA = rng.uniform(0.5, 2.0, size=z.shape)
    act, nx = ACTIVATIONS[name], backend.nx
    Zd = backend.asarray(z.reshape(-1, 1))
    A = act.forward(nx, Zd)
    dZ = act.backward(nx, A, backend.asarray(dA.reshape(-1, 1)), Z=Zd if act.needs_input else None)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    out = module(zt)
    out.backward(torch.tensor(dA))
    np.testing.assert_allclose(_host(A).ravel(), out.detach().numpy(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(_host(dZ).ravel(), zt.grad.numpy(), rtol=1e-12, atol=1e-14 * dA.max())


# ---------------------------------------------------------------- 3. train and eval mode
def _moons(n=96, seed=7):
    return xpnet.make_moons(n, noise=0.2, seed=seed)


def test_predict_is_deterministic_and_drops_nothing(backend):
    X, y = _moons()
    model = xpnet.MLP([2, 16, 16, 2], activation="gelu", dropout=0.5, backend=backend, seed=1, dtype="float64")
    xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=2, batch_size=32, verbose=False)
    first, second = _host(model.forward(X)), _host(model.forward(X))
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(_host(model.predict(X)), _host(model.predict(X)))
    plain = xpnet.MLP([2, 16, 16, 2], activation="gelu", backend=backend, seed=5, dtype="float64")
    plain.params = model.params  # the same weights, no dropout at all
    np.testing.assert_array_equal(_host(plain.forward(X)), first)  # eval mode: no dropout, no rescaling
    assert model.evaluate(X, y) == plain.evaluate(X, y)
    # train mode with a mask is another function of the same weights
    masked = model.loss_and_grads(X, y, _masks(model, m=len(X)))[0]
    assert masked != pytest.approx(model.evaluate(X, y)["loss"], rel=1e-3)
    assert model.loss_and_grads(X, y)[0] == pytest.approx(model.evaluate(X, y)["loss"], rel=1e-12)  # no masks: none


def test_batch_norm_eval_mode_uses_the_running_statistics(backend):
    X, y = _moons()
    model = xpnet.MLP([2, 8, 8, 2], activation="tanh", norm="batch", backend=backend, seed=1, dtype="float64")
    start = _host(model.stats)
    np.testing.assert_array_equal(start, np.tile(np.r_[np.zeros(8), np.ones(8)], 2))  # PyTorch's start
    xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=2, batch_size=32, verbose=False)
    stats = _host(model.stats)
    assert not np.allclose(stats, start)  # fit's steps moved them
    # eval mode: a row's output does not depend on the rows beside it (no batch statistics)
    np.testing.assert_allclose(_host(model.forward(X[:5])), _host(model.forward(X))[:5], rtol=1e-12, atol=1e-15)
    # it equals the layers computed by hand from the running statistics
    A = X
    p = {name: _host(v) for name, v in zip(model.layout.names, model.params)}
    for l in range(2):
        mean, var = (_host(r) for r in model.running[l])
        Z = A @ p[f"W{l + 1}"] + p[f"b{l + 1}"]
        A = np.tanh((Z - mean) / np.sqrt(var + EPS) * p[f"gamma{l + 1}"] + p[f"beta{l + 1}"])
    Z = A @ p["W3"] + p["b3"]
    E = np.exp(Z - Z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(_host(model.forward(X)), E / E.sum(axis=1, keepdims=True), rtol=1e-10, atol=1e-13)
    # the batch's own statistics give another loss (train mode), and eval leaves the running ones alone
    assert model.loss_and_grads(X[:5], y[:5])[0] != pytest.approx(model.evaluate(X[:5], y[:5])["loss"], rel=1e-6)
    model.predict(X)
    model.evaluate(X, y)
    np.testing.assert_array_equal(_host(model.stats), stats)


@pytest.mark.parametrize("settings", [dict(dropout=0.5), dict(norm="batch", dropout=0.2)], ids=["dropout", "batch+dropout"])
def test_validation_in_fit_is_eval_mode(backend, settings):
    X, y = _moons()
    Xv, yv = _moons(40, seed=8)
    model = xpnet.MLP([2, 12, 12, 2], activation="silu", backend=backend, seed=2, dtype="float64", **settings)
    history = xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=2, batch_size=32, validation_data=(Xv, yv), verbose=False)
    scores = model.evaluate(Xv, yv)
    assert history.val_loss[-1] == pytest.approx(scores["loss"], rel=1e-12)
    assert history.val_accuracy[-1] == scores["accuracy"]
    masked = model.loss_and_grads(Xv, yv, _masks(model, m=len(Xv)))[0]  # train mode on the same rows
    assert history.val_loss[-1] != pytest.approx(masked, rel=1e-6)


def test_batch_norm_refuses_a_one_row_batch(backend):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(33, 3)), np.arange(33) % 2
    model = xpnet.MLP([3, 4, 2], norm="batch", backend=backend)
    before = _host(model.flat)
    with pytest.raises(ValueError, match=r"norm='batch' needs at least 2 rows in every batch .* batch_size=32 leaves "
                                         r"a batch of 1 row of m=33"):
        xpnet.fit(model, X, y, epochs=1, batch_size=32, verbose=False)
    np.testing.assert_array_equal(_host(model.flat), before)  # refused before any step
    with pytest.raises(ValueError, match="batch_size=None leaves a batch of 1 row of m=1"):
        xpnet.fit(model, X[:1], y[:1], epochs=1, batch_size=None, verbose=False)
    xpnet.fit(model, X, y, epochs=1, batch_size=11, verbose=False)  # 3 batches of 11 rows: trains
    assert not np.array_equal(_host(model.flat), before)


# ---------------------------------------------------------------- 4. resume, bit for bit
class SignalAt(Callback):
    """Sends SIGINT to this process after global step ``at`` (as tests/test_reliability.py does)."""

    def __init__(self, at: int):
        self.at, self.count = at, 0

    def on_batch_end(self, batch):
        self.count += 1
        if self.count == self.at:
            os.kill(os.getpid(), signal.SIGINT)


RESUMED = {"dropout": dict(activation="relu", dropout=0.3),
           "batch+dropout+residual": dict(activation="gelu", norm="batch", dropout=[0.2, 0.4], residual=True)}


@pytest.mark.parametrize("at", [3, 5, 7], ids=["inside-epoch-1", "epoch-boundary", "inside-epoch-2"])
@pytest.mark.parametrize("case", list(RESUMED))
def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, case, at):
    """150 rows in batches of 32: 5 steps an epoch (the last of 22 rows). The resumed run draws the
    same dropout masks (keyed by epoch and row) and restores batch norm's running statistics."""
    backend = xpnet.get_backend(device="cpu")
    X, y = xpnet.make_moons(150, noise=0.2, seed=7)
    val = xpnet.make_moons(40, seed=8)

    def model(**kw):
        return xpnet.MLP([2, 12, 12, 2], backend=backend, seed=1, **RESUMED[case], **kw)

    def run(m, **kw):
        return xpnet.fit(m, X, y, xpnet.Adam(1e-2, schedule="cosine"), epochs=3, batch_size=32, validation_data=val,
                         verbose=False, **kw)

    whole = model()
    ref = run(whole)
    ck = tmp_path / "ck.npz"
    first = model()
    with pytest.raises(TrainingInterrupted) as info:
        run(first, callbacks=[SignalAt(at)], checkpoint=str(ck))
    assert info.value.checkpoint == str(ck)
    with np.load(ck, allow_pickle=False) as npz:
        position = json.loads(npz["metadata"].tobytes())["position"]
        if whole.norm == "batch":
            assert {"param.gamma1", "param.beta2", "param.running_mean1", "param.running_var2"} <= set(npz.files)
    assert (position["epoch"], position["step"]) == ((at - 1) // 5 + (at % 5 == 0), at % 5)
    saved = xpnet.load(ck)  # the checkpoint's model carries the running statistics of the interruption
    np.testing.assert_array_equal(_host(saved.stats), _host(first.stats))
    np.testing.assert_array_equal(_host(saved.flat), _host(first.flat))

    second = model(init="small")  # other starting weights: all must come from the checkpoint
    second.stats[...] = backend.asarray(np.full(second.stats.shape, 0.5))  # and other running statistics
    history = run(second, resume=str(ck))
    np.testing.assert_array_equal(_host(second.flat), _host(whole.flat))
    np.testing.assert_array_equal(_host(second.stats), _host(whole.stats))
    assert history.train_loss == ref.train_loss and history.val_loss == ref.val_loss
    assert history.train_accuracy == ref.train_accuracy


def test_resume_with_other_layers_is_refused(tmp_path):
    X, y = xpnet.make_moons(64, seed=7)
    ck = tmp_path / "ck.npz"
    xpnet.fit(xpnet.MLP([2, 8, 8, 2], dropout=0.2, norm="batch"), X, y, epochs=1, batch_size=32, verbose=False,
              checkpoint=str(ck))
    for change, message in ((dict(dropout=0.3, norm="batch"), "dropout=0.2, but this run has dropout=0.3"),
                            (dict(dropout=0.2, norm="layer"), "norm='batch', but this run has norm='layer'"),
                            (dict(dropout=0.2, norm="batch", residual=True), "residual=False, but this run has residual=True")):
        with pytest.raises(ValueError, match=message):
            xpnet.fit(xpnet.MLP([2, 8, 8, 2], **change), X, y, epochs=2, batch_size=32, verbose=False, resume=str(ck))


# ---------------------------------------------------------------- 5. synchronized batch norm, in one process
# (tests/test_layers_mpi.py runs fit on 2 and 3 MPI ranks; here the ranks are threads, so the sums are checked
# step by step on every backend, MPI or not)


def _ranks_as_threads(model: xpnet.MLP, Xd, Y, masks, shares: list[tuple[int, int]]) -> list:
    """Each contiguous share ``(start, stop)`` of the rows' ``backprop`` (train mode, divided by the global
    batch) in a thread of its own, batch norm's sums exchanged as ``Communicator.row_sum`` would (in rank
    order, float64 on the host)."""
    import threading

    n, backend = len(shares), model.backend
    barrier, slots, out = threading.Barrier(n), [None] * n, [None] * n

    def rank(r: int) -> None:
        def total(a):
            slots[r] = np.asarray(xpnet.to_numpy(a), dtype=np.float64)
            barrier.wait()
            summed = sum(slots[1:], slots[0].copy())
            barrier.wait()  # every rank has read the slots before the next sum writes them
            return backend.asarray(summed.astype(xpnet.to_numpy(a).dtype))

        start, stop = shares[r]
        mine = None if masks is None else [None if mk is None else mk[start:stop, :] for mk in masks]  # as run_epoch
        with backend.activate():
            out[r] = model.backprop(Xd[start:stop, :], Y[start:stop, :], batch_size=Xd.shape[0], masks=mine,
                                    row_sum=total, track=False)

    threads = [threading.Thread(target=rank, args=(r,)) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert all(o is not None for o in out), "a rank failed"
    return out


SHARES = {"2-ranks": (8, 2), "3-ranks": (8, 3), "1-row-shares": (4, 3), "empty-share": (2, 3)}  # (rows, ranks)


def _synchronized(backend, split):
    m, n = SHARES[split]
    sizes = [3, 4, 4, 2]
    model = _model(backend, sizes, seed=6, activation="gelu", norm="batch", residual=True, dropout=0.3)
    X, y = _data(sizes, seed=6, m=m)
    masks = _masks(model, m=m)
    Xd, Y, _ = model.device_data(X, y)
    whole = model.backprop(Xd, Y, masks=masks, track=False)
    shares = [(int(a[0]), int(a[0]) + len(a)) if len(a) else (m, m) for a in np.array_split(np.arange(m), n)]
    parts = _ranks_as_threads(model, Xd, Y, masks, shares)
    summed = sum(_host(p.grad) for p in parts)  # what GradientSum's Allreduce adds up
    views = dict(zip(model.layout.names, model.layout.views(np, summed)))
    reference = dict(zip(model.layout.names, model.layout.views(np, _host(whole.grad))))
    assert float(sum(float(p.loss) for p in parts)) == pytest.approx(float(whole.loss), rel=1e-13)
    return model, views, reference


@pytest.mark.parametrize("split", list(SHARES))
def test_synchronized_batch_norm_gives_the_weights_the_global_gradient(backend, split):
    model, summed, reference = _synchronized(backend, split)
    for name in model.layout.names:
        if not name.startswith(("gamma", "beta")):
            np.testing.assert_allclose(summed[name], reference[name], rtol=1e-12, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("split", list(SHARES))
def test_synchronized_batch_norm_gives_gamma_and_beta_the_global_gradient(backend, split):
    model, summed, reference = _synchronized(backend, split)
    for name in model.layout.names:
        if name.startswith(("gamma", "beta")):
            np.testing.assert_allclose(summed[name], reference[name], rtol=1e-12, atol=1e-14, err_msg=name)




@pytest.mark.parametrize("name", ["numpy", "strict-device1"])
def test_row_sum_leaves_its_argument_alone(monkeypatch, name):
    """The per-unit sums batch norm hands to ``row_sum`` stay this rank's own: the sum is a new array.
    (Harmless while every caller passes a temporary; batch norm's backward needs its local sums for
    gamma and beta, whose gradients the step's Allreduce sums once more.) MPI is stood in for by a
    communicator of 2 ranks whose other rank holds the same values."""
    import types

    from xpnet.distributed import Communicator

    class World:
        def Allreduce(self, sendbuf, recvbuf, op):
            recvbuf *= 2  # MPI.IN_PLACE: the buffer holds the sum over 2 ranks of the same values

    monkeypatch.setitem(sys.modules, "mpi4py", types.SimpleNamespace(MPI=types.SimpleNamespace(IN_PLACE=None, SUM=None)))
    if name == "numpy":
        backend = xpnet.get_backend(device="cpu")
    else:
        xs = pytest.importorskip("array_api_strict")
        backend = xpnet.get_backend(xs, xs.Device("device1"))
    comm = Communicator()
    comm.size, comm.comm = 2, World()
    a = backend.asarray(np.array([1.0, 2.0]))
    total = comm.row_sum(backend)(a)
    np.testing.assert_array_equal(_host(total), [2.0, 4.0])
    np.testing.assert_array_equal(_host(a), [1.0, 2.0])


# ---------------------------------------------------------------- 6. model files
FILES = {
    "plain": (dict(activation="relu"), 2),
    "gelu": (dict(activation="gelu"), 3),  # a newer activation: version 2 readers would not know it
    "dropout": (dict(activation="tanh", dropout=[0.1, 0.3]), 3),
    "batch": (dict(activation="elu", norm="batch"), 3),
    "layer": (dict(activation="silu", norm="layer"), 3),
    "residual": (dict(activation="softplus", residual=True), 3),
    "all": (dict(activation="gelu", norm="batch", dropout=0.2, residual=True), 3),
}


@pytest.mark.parametrize("kind", list(FILES))
def test_model_files_round_trip(backend, tmp_path, kind):
    settings, version = FILES[kind]
    X, y = _moons(64)
    model = xpnet.MLP([2, 8, 8, 2], backend=backend, seed=3, **settings)
    xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=2, batch_size=16, verbose=False)  # scales, shifts and stats move
    path = tmp_path / "model.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["metadata"].tobytes())
        files = set(npz.files)
    assert meta["format_version"] == version
    names = {"W1", "b1", "W2", "b2", "W3", "b3"}
    if model.norm:
        names |= {"gamma1", "beta1", "gamma2", "beta2"}
    if model.norm == "batch":
        names |= {"running_mean1", "running_var1", "running_mean2", "running_var2"}
    assert files == names | {"metadata"}
    for key in ("dropout", "norm", "residual"):  # in the metadata only where set: a version 2 file has none
        assert meta.get(key) == model.layer_config().get(key)
    loaded = xpnet.load(path, backend=backend)
    assert loaded.config() == model.config() and loaded.layout.names == model.layout.names
    for a, b in zip(loaded.params, model.params):
        np.testing.assert_array_equal(_host(a), _host(b))
    np.testing.assert_array_equal(_host(loaded.stats), _host(model.stats))
    if model.norm == "batch":
        assert not np.allclose(_host(loaded.running[1][1]), 1.0)
    np.testing.assert_array_equal(_host(loaded.forward(X)), _host(model.forward(X)))
    np.testing.assert_array_equal(_host(loaded.predict(X)), _host(model.predict(X)))


# ---------------------------------------------------------------- 7. bad values
@pytest.mark.parametrize("sizes,settings,message", [
    ([4, 8, 3], dict(dropout=1), r"dropout=1 is out of range: expected a rate 0 <= p < 1"),
    ([4, 8, 3], dict(dropout=-0.1), r"dropout=-0.1 is out of range"),
    ([4, 8, 3], dict(dropout=1.5), r"dropout=1.5 is out of range"),
    ([4, 8, 3], dict(dropout=[0.5, 1.0]), r"dropout=\[0.5, 1.0\] has 2 rates for 1 hidden layers"),
    ([4, 8, 8, 3], dict(dropout=[0.1]), r"dropout=\[0.1\] has 1 rates for 2 hidden layers"),
    ([4, 8, 8, 3], dict(dropout=[0.1, 1.0]), r"dropout=\[0.1, 1.0\] is out of range"),
    ([4, 8, 8, 3], dict(dropout="0.1"), r"dropout='0.1' is out of range"),
    ([4, 8, 3], dict(dropout=True), r"dropout=True is out of range"),
    ([4, 8, 3], dict(norm="group"), r"norm='group' is not a normalization: expected None, 'batch' or 'layer'"),
    ([4, 8, 3], dict(residual=True), r"residual=True with sizes=\[4, 8, 3\]: no hidden layer keeps its width"),
    ([4, 8, 3], dict(residual="yes"), r"residual='yes' is not valid: expected True or False"),
    ([4, 3], dict(dropout=0.5), r"dropout=0.5 with sizes=\[4, 3\]: there is no hidden layer to apply it to"),
    ([4, 3], dict(norm="batch"), r"norm='batch' with sizes=\[4, 3\]: there is no hidden layer"),
    ([4, 8, 3], dict(activation="swish"), r"activation='swish'"),
])
def test_bad_layer_settings_are_refused(host_backend, sizes, settings, message):
    with pytest.raises(ValueError, match=message) as info:
        xpnet.MLP(sizes, backend=host_backend, **settings)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)
    with pytest.raises(ValueError, match=message):  # the config check (load, the CLI) says the same
        xpnet.MLP.check_config(sizes=sizes, activation=settings.get("activation", "relu"), output="softmax", loss=None,
                               init=None, dtype="float32", **{k: v for k, v in settings.items() if k != "activation"})


# ---------------------------------------------------------------- 8. array operations per step
def test_array_operations_per_step():
    """The generic step on array-api-strict (one operation, one launch on a GPU) for the default
    [784, 128, 64, 10] with SGD: plain 39; dropout adds exactly 2 per hidden layer (the mask in the
    forward and the backward pass); batch norm adds 27 per layer (11 forward, 6 for the running
    statistics, 10 backward); layer norm 22 (10 forward, 12 backward)."""
    pytest.importorskip("array_api_strict")
    from xpnet.opcount import ops_per_step

    layers = (784, 128, 64, 10)
    counts = {name: ops_per_step(layers, "sgd", model_settings=settings)
              for name, settings in (("plain", {}), ("dropout", dict(dropout=0.2)), ("batch", dict(norm="batch")),
                                     ("layer", dict(norm="layer")))}
    hidden = len(layers) - 2
    assert {name: c["step"] for name, c in counts.items()} == {"plain": 39, "dropout": 43, "batch": 93, "layer": 83}
    assert all(c["update"] == 2 for c in counts.values())  # the flat buffer's update is the same whatever the layers
    assert counts["dropout"]["step"] - counts["plain"]["step"] == 2 * hidden  # the target: at most 2
    assert counts["batch"]["step"] - counts["plain"]["step"] == 27 * hidden
    assert counts["layer"]["step"] - counts["plain"]["step"] == 22 * hidden


# ---------------------------------------------------------------- found while testing
def test_early_stopping_restores_the_best_epochs_running_statistics():
    X, y = xpnet.make_moons(200, noise=0.3, seed=7)
    Xv, yv = xpnet.make_moons(60, noise=0.3, seed=8)
    model = xpnet.MLP([2, 16, 16, 2], norm="batch", seed=1, dtype="float64")
    history = xpnet.fit(model, X, y, xpnet.SGD(0.5), epochs=40, batch_size=16, validation_data=(Xv, yv),
                        callbacks=[xpnet.EarlyStopping(patience=2)], verbose=False)
    assert history.best_epoch == 4 and history.epoch[-1] == 6  # stopped 2 epochs after the best: its weights came back
    assert model.evaluate(Xv, yv)["loss"] == pytest.approx(history.val_loss[history.best_epoch - 1], rel=1e-12)


def test_batch_norm_takes_its_statistics_over_the_rows_it_has_whatever_batch_size_divides():
    """``batch_size`` divides the gradient (accumulating steps, data-parallel shares); in one process the
    statistics are still the given rows': twice the rows' gradient over ``batch_size=2m`` is the mean's."""
    X, y = np.random.default_rng(3).normal(size=(64, 2)), np.arange(64) % 2
    model = xpnet.MLP([2, 8, 8, 2], norm="batch", dtype="float64", seed=1)
    Xd, Y, _ = model.device_data(X, y)
    half = model.backprop(Xd, Y, batch_size=128, track=False).grad
    np.testing.assert_allclose(2 * np.asarray(half), np.asarray(model.backprop(Xd, Y, track=False).grad), rtol=1e-12)
    with pytest.raises(ValueError, match="row_sum .* needs batch_size"):
        model.backprop(Xd, Y, row_sum=lambda a: a)


def test_a_numpy_scalar_is_a_dropout_rate():
    assert xpnet.MLP([3, 4, 2], dropout=np.float32(0.25)).dropout == 0.25
    assert xpnet.MLP([3, 4, 4, 2], dropout=[np.float64(0.1), np.int64(0)]).dropout == [0.1, 0.0]


def test_fit_holds_one_batch_of_dropout_masks_at_a_time(monkeypatch):
    """Masks are drawn per step for the step's rows, not for the epoch's: memory O(batch x width)."""
    import xpnet.train as train

    drawn = []
    real = train.draw_masks
    monkeypatch.setattr(train, "draw_masks", lambda *a, **k: drawn.append(a[5]) or real(*a, **k))
    X, y = np.random.default_rng(0).normal(size=(100, 3)), np.arange(100) % 2
    xpnet.fit(xpnet.MLP([3, 6, 2], dropout=0.5), X, y, epochs=1, batch_size=32, verbose=False)
    assert drawn == [32, 32, 32, 4]
