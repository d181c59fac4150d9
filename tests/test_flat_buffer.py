"""One flat parameter buffer per model, the public training step, the array operations a
GPU would pay per step, and the package's one-way imports."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.backend import Buffers


def _host(a):
    return xpnet.to_numpy(a).copy()


def _trains(model, backend, steps=3):
    """A few optimizer steps change the buffer and every layer view with it."""
    X, y = xpnet.make_moons(64, seed=0)
    before = [_host(p) for p in model.params]
    xpnet.fit(model, X, y, xpnet.SGD(0.5, momentum=0.9, weight_decay=0.01), epochs=steps, batch_size=16, verbose=False)
    after = [_host(p) for p in model.params]
    assert all(not np.array_equal(a, b) for a, b in zip(before, after))
    for view, (start, stop, shape) in zip(model.params, model.layout.slices):
        np.testing.assert_array_equal(_host(view), _host(model.flat)[start:stop].reshape(shape))


def test_layout_weights_first_then_biases(backend):
    model = xpnet.MLP([3, 4, 2], backend=backend)
    assert model.flat.shape == (3 * 4 + 4 * 2 + 4 + 2,) and model.n_weights == 20
    flat = _host(model.flat)
    np.testing.assert_array_equal(flat[:12].reshape(3, 4), _host(model.params[0]))
    np.testing.assert_array_equal(flat[12:20].reshape(4, 2), _host(model.params[2]))
    np.testing.assert_array_equal(flat[20:], 0.0)  # biases start at zero
    # the same initial weights as drawing each layer on its own (the layout changed nothing)
    rng = np.random.default_rng(np.random.SeedSequence([0]))
    W1 = (rng.standard_normal((3, 4)) * np.sqrt(2 / 3)).astype(np.float32)
    np.testing.assert_array_equal(_host(model.params[0]), W1)


def test_params_are_views_that_nothing_detaches(backend, tmp_path):
    model = xpnet.MLP([2, 5, 2], activation="tanh", backend=backend, seed=1)
    W1 = backend.asarray(np.full((2, 5), 0.25, np.float32))
    model.params[0] = W1  # an item: copied into the buffer
    np.testing.assert_array_equal(_host(model.flat)[:10], 0.25)
    model.params = [backend.asarray(_host(p) * 0 + i) for i, p in enumerate(model.params)]  # all: the same
    assert _host(model.params[3]).tolist() == [3.0, 3.0]
    np.testing.assert_array_equal(_host(model.flat)[10:20], 2.0)
    with pytest.raises(ValueError, match=r"params\[1\] \(b1\) has shape \(3,\): expected \(5,\)"):
        model.params[1] = backend.asarray(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="fixed layout"):
        model.params.append(W1)
    _trains(model, backend)

    moved = xpnet.MLP([2, 5, 2], activation="tanh", seed=1).to(backend=backend)  # MLP.to
    _trains(moved, backend)
    path = tmp_path / "m.npz"
    moved.save(path)
    _trains(xpnet.load(path, backend=backend), backend)  # from_arrays
    X, y = xpnet.make_moons(64, seed=0)
    stopped = xpnet.MLP([2, 5, 2], backend=backend, seed=2)
    history = xpnet.fit(stopped, X, y, xpnet.SGD(2.0), epochs=8, batch_size=16, verbose=False,
                        validation_data=(X, y), callbacks=[xpnet.EarlyStopping(patience=1)])
    assert history.best_epoch is not None  # early stopping restored its snapshot into the buffer
    _trains(stopped, backend)


def test_checkpoint_restores_into_the_buffer(backend, tmp_path):
    X, y = xpnet.make_moons(64, seed=0)
    ck = tmp_path / "ck.npz"
    xpnet.fit(xpnet.MLP([2, 5, 2], backend=backend), X, y, xpnet.Adam(1e-2), epochs=2, batch_size=16, verbose=False,
              checkpoint=str(ck))
    model = xpnet.MLP([2, 5, 2], backend=backend, seed=9)
    flat = model.flat
    xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=4, batch_size=16, verbose=False, resume=str(ck))
    assert model.flat is flat  # written into, not replaced
    _trains(model, backend)


def test_immutable_namespaces_are_refused_with_a_reason(host_backend):
    b = xpnet.get_backend(host_backend.xp if not host_backend.is_numpy else "numpy", host_backend.device)
    b.__dict__["mutable"] = False  # what Backend.mutable says for JAX
    with pytest.raises(ValueError, match="immutable arrays .*updates its parameter buffer in place"):
        xpnet.MLP([2, 3, 2], backend=b)


def test_train_step_is_the_step_fit_takes(backend):
    """A hand-written loop over train_step reaches fit's weights exactly (same batches)."""
    X, y = xpnet.make_moons(96, seed=3)
    by_fit = xpnet.MLP([2, 8, 2], backend=backend, seed=4, dtype="float64")
    xpnet.fit(by_fit, X, y, xpnet.SGD(0.1, momentum=0.9), epochs=1, batch_size=32, shuffle=False, verbose=False)
    by_hand = xpnet.MLP([2, 8, 2], backend=backend, seed=4, dtype="float64")
    opt = xpnet.SGD(0.1, momentum=0.9)
    Xd, Yd, labels = by_hand.device_data(X, y)
    total = 0.0
    for start in range(0, 96, 32):
        loss, correct = xpnet.train_step(by_hand, opt, Xd[start:start + 32, :], Yd[start:start + 32, :],
                                         labels[start:start + 32])
        total += float(loss)
        assert 0 <= float(correct) <= 32
    np.testing.assert_allclose(_host(by_hand.flat), _host(by_fit.flat), rtol=1e-12, atol=1e-14)


def test_gradient_hook_sees_the_sum_over_rows_divided_by_the_batch_given(backend):
    """Two halves, each divided by the whole batch and added by a hook, are one full step:
    what data-parallel training does across processes."""
    X, y = xpnet.make_moons(40, seed=5)
    whole = xpnet.MLP([2, 6, 2], backend=backend, seed=1, dtype="float64")
    Xd, Yd, _ = whole.device_data(X, y)
    xpnet.train_step(whole, xpnet.SGD(0.3), Xd, Yd)

    halves = xpnet.MLP([2, 6, 2], backend=backend, seed=1, dtype="float64")
    first = halves.backprop(Xd[:15, :], Yd[:15, :], batch_size=40).grad  # another "rank"'s share
    seen = []

    def add_the_other_half(grad):
        seen.append(grad.shape)
        return grad + first

    xpnet.train_step(halves, xpnet.SGD(0.3), Xd[15:, :], Yd[15:, :], batch_size=40, grad_hook=add_the_other_half)
    assert seen == [(halves.n_params,)]
    np.testing.assert_allclose(_host(halves.flat), _host(whole.flat), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("reuse", [False, True])
def test_backprop_gradient_is_laid_out_like_the_parameters(backend, reuse):
    X, y = xpnet.make_moons(30, seed=6)
    model = xpnet.MLP([2, 5, 3, 2], activation="tanh", backend=backend, dtype="float64", seed=2)
    loss, grads = model.loss_and_grads(X, y)
    Xd, Yd, labels = model.device_data(X, y)
    out = model.backprop(Xd, Yd, labels=labels, buf=Buffers(backend, enabled=reuse))
    for g, view in zip(grads, model.views(out.grad)):
        np.testing.assert_allclose(_host(view), _host(g), rtol=1e-12, atol=1e-15)
    assert float(out.loss) / 30 == pytest.approx(loss, rel=1e-12)
    assert float(out.correct) == pytest.approx(model.evaluate(X, y)["accuracy"] * 30)


# ------------------------------------------------------- what a GPU would pay
BOUNDS = {  # optimizer -> (whole step, update alone): array operations on the generic path
    "sgd": (40, 3),
    "adam": (50, 12),
    # 8, not 6: g + wd*W, v = mu v + g and W -= lr (g + mu v) are 8 binary operations; 6 needs a
    # fused kernel (the GPU fast path), not another arrangement of standard array operations.
    "nesterov+wd": (46, 8),
}


@pytest.mark.parametrize("optimizer", sorted(BOUNDS))
def test_array_operations_per_step_stay_within_bounds(optimizer):
    pytest.importorskip("array_api_strict")
    from xpnet.opcount import ops_per_step

    counts = ops_per_step((784, 128, 64, 10), optimizer)
    step, update = BOUNDS[optimizer]
    assert counts["update"] <= update, counts
    assert counts["step"] <= step, counts
    assert counts["step"] > 30  # the counter sees the matrix products, activations and head


def test_the_counter_counts():
    xs = pytest.importorskip("array_api_strict")
    from xpnet.opcount import counting

    a = xs.ones((3, 2))
    with counting(xs) as c:
        b = a * 2.0 + 1.0  # 2 operators
        xs.sum(b)  # 1 function
        xs.reshape(b, (6,))  # a view: not counted
        b[0:1, :]  # a slice: not counted
        b[xs.asarray([0, 2]), xs.asarray([1, 0])]  # a gather: counted
        b[...] = a  # a copy: counted
    assert c.value == 5
    assert xs.sum is not None and a * 2.0 is not None  # restored


# ------------------------------------------------------------ imports one way
# Each module may import only modules of a lower rank, at the top or inside a function.
RANKS = {
    "_cuda": -1, "dlpack": -1, "_version": 0, "threads": 0, "backend": 0, "kernels": 0, "validate": 0, "activations": 0,
    "metrics": 0, "batches": 1, "layers": 1, "fused": 2, "arrowfile": 2,
    "losses": 1, "preprocess": 1, "optim": 1, "labels": 1, "faults": 1, "flat": 1, "io": 2, "csvfile": 2, "data": 3, "model": 3,
    "history": 3, "checkpoint": 4, "export": 4, "distributed": 4, "train": 5, "logs": 6, "opcount": 6, "plot": 6, "bench": 7,
    "cli.flags": 9, "cli.files": 10, "cli.reports": 10, "cli.train": 11, "cli.evaluate": 11,
    "cli.tools": 11, "cli.export": 11, "cli": 12, "_launch": 13, "__main__": 14,
    "sklearn.heads": 6, "sklearn.inputs": 6, "sklearn.solvers": 6, "sklearn.estimator": 7, "sklearn.classifier": 8,
    "sklearn.regressor": 8, "sklearn": 9,
}


def _modules(package: Path) -> dict[str, Path]:
    """Every module of the package and its sub-packages by dotted name under ``xpnet``: a
    sub-package's ``__init__.py`` is the sub-package itself (``cli``), its files ``cli.flags``."""
    found = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package).with_suffix("").parts
        if parts != ("__init__",):  # the package itself: xpnet/__init__.py
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _ranked(parts: list[str]) -> str:
    """The module ``xpnet.<parts>`` names (the longest ranked prefix; a name imported from a module
    is that module); ``__init__`` for the package itself."""
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in RANKS:
            return ".".join(parts[:n])
    return ".".join(parts) or "__init__"


def _xpnet_imports(name: str, path: Path) -> set[str]:
    """The ranked modules that module ``name`` (at ``path``) imports, at the top or in a function."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]  # where "." points
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: each dot after the first goes one package up
                base = package[:len(package) - (node.level - 1)] + (node.module.split(".") if node.module else [])
            elif node.module and node.module.split(".")[0] == "xpnet":
                base = node.module.split(".")[1:]
            else:
                continue
            found |= {_ranked(base + [a.name]) for a in node.names}  # from . import plot: the module plot
        elif isinstance(node, ast.Import):
            found |= {_ranked(a.name.split(".")[1:]) for a in node.names if a.name.split(".")[0] == "xpnet"}
    return found


def test_the_package_imports_one_way():
    modules = _modules(Path(xpnet.__file__).parent)
    assert set(modules) == set(RANKS), "rank every module: " + str(set(modules) ^ set(RANKS))
    upward = [(m, i) for m, path in modules.items() for i in _xpnet_imports(m, path)
              if i == "__init__" or RANKS.get(i, 99) >= RANKS[m]]
    assert not upward, f"imports that go up or sideways: {upward}"


def test_work_runs_with_the_model_s_device_current(backend, monkeypatch):
    """Every entry point enters backend.activate() (CuPy's cuda:N; a no-op elsewhere), so a model
    on one GPU keeps its kernels there whatever another model made current."""
    import contextlib

    entered = []
    real = type(backend).activate

    @contextlib.contextmanager
    def spy(self):
        entered.append(self)
        with real(self):
            yield

    monkeypatch.setattr(type(backend), "activate", spy)
    X, y = xpnet.make_moons(40, seed=1)
    model = xpnet.MLP([2, 4, 2], backend=backend)
    for call in (lambda: model.predict(X), lambda: model.evaluate(X, y), lambda: model.forward(X),
                 lambda: xpnet.fit(model, X, y, epochs=1, verbose=False),
                 lambda: xpnet.train_step(model, xpnet.SGD(0.1), *model.device_data(X, y)[:2])):
        entered.clear()
        call()
        assert entered and all(b is model.backend for b in entered)
