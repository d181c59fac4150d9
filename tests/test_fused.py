"""The fused step (:mod:`xpnet.fused`) against the generic step, on the CPU.

``fit(path="fused")`` on NumPy runs the CuPy path's own sequence of calls with the kernels
built by the C compiler: the same trajectory as the generic path (float64 to 1e-12, float32
to rounding), its launches per step counted exactly, and a warm step that allocates nothing
and reads nothing back. On a GPU (``cuda``) the automatic choice takes it and matches too.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import xpnet
from xpnet import kernels as K
from xpnet.fused import FusedStep, unsupported
from xpnet.opcount import ops_per_step

needs_cc = pytest.mark.skipif(K.c_compiler() is None, reason="no C compiler (tried $CC, cc, gcc) to build the CPU kernels")
pytestmark = [pytest.mark.kernels, needs_cc]

OPTS = {
    "sgd": lambda: xpnet.SGD(0.05),
    "nesterov+wd": lambda: xpnet.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "momentum+step": lambda: xpnet.SGD(0.05, momentum=0.9, schedule="step"),
    "adamw+warmup": lambda: xpnet.Adam(2e-3, weight_decay=0.01, warmup_steps=5),
    "adam+onecycle": lambda: xpnet.Adam(2e-3, schedule="onecycle"),
}


def _data(m=150, n_in=12, k=4, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, n_in)).astype(dtype), rng.integers(0, k, m)


def _run(path, opt, dtype="float64", epochs=3, sizes=(12, 9, 7, 4), **kwargs):
    X, y = _data(n_in=sizes[0], k=sizes[-1], dtype=dtype)
    model_kw = {k: kwargs.pop(k) for k in ("activation", "label_smoothing") if k in kwargs}
    model = xpnet.MLP(list(sizes), seed=3, dtype=dtype, **model_kw)
    history = xpnet.fit(model, X, y, OPTS[opt](), epochs=epochs, batch_size=kwargs.pop("batch_size", 32), verbose=False,
                        path=path, **kwargs)
    return model, history


def _same(a, b, rtol):
    (ma, ha), (mb, hb) = a, b
    flat = np.asarray(ma.flat, np.float64)
    np.testing.assert_allclose(np.asarray(mb.flat, np.float64), flat, rtol=rtol, atol=rtol * np.max(np.abs(flat)))
    np.testing.assert_allclose(hb.train_loss, ha.train_loss, rtol=rtol * 10)
    assert hb.train_accuracy == ha.train_accuracy and hb.lr == ha.lr


@pytest.mark.parametrize("opt", list(OPTS))
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu", "identity"])
def test_the_fused_path_follows_the_generic_one(opt, activation):
    _same(_run("generic", opt, activation=activation), _run("fused", opt, activation=activation), 1e-12)


@pytest.mark.parametrize("case", [
    {"label_smoothing": 0.1},
    {"sample_weight": np.linspace(0.1, 2.0, 150)},
    {"class_weight": "balanced"},
    {"shuffle": False},
    {"batch_size": 150},  # one batch
    {"batch_size": 1},
    {"batch_size": 64},  # a last batch of 22 rows: the second shape
    {"sizes": (12, 4)},  # no hidden layer
    {"validation_data": _data(40, seed=1)},
])
def test_every_setting_of_the_fused_step_follows_the_generic_one(case):
    _same(_run("generic", "nesterov+wd", **dict(case)), _run("fused", "nesterov+wd", **dict(case)), 1e-12)


@pytest.mark.parametrize("opt", ["sgd", "adamw+warmup"])
def test_float32_follows_to_rounding(opt):
    a, b = _run("generic", opt, dtype="float32"), _run("fused", opt, dtype="float32")
    np.testing.assert_allclose(b[0].flat, a[0].flat, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b[1].train_loss, a[1].train_loss, rtol=1e-5)


def test_launches_per_step_are_counted_exactly():
    # 1 gather + L products + (L - 1) bias/activation kernels + 1 head, backward L weight products,
    # L column sums, (L - 1) input-gradient products and activation kernels, 1 update: 6 L
    for optimizer in ("sgd", "nesterov+wd", "adam"):
        assert ops_per_step(optimizer=optimizer, path="fused") == {"step": 18, "update": 1}  # [784, 128, 64, 10]
    assert ops_per_step((20, 5), path="fused", rows=64, batch=16)["step"] == 6
    assert ops_per_step((20, 16, 8, 6, 3), path="fused", rows=64, batch=16)["step"] == 24
    with pytest.raises(ValueError, match="path='cuda' is not a path"):
        ops_per_step(path="cuda")


def _warm_step(dtype="float32", batch=32, m=100):
    X, y = _data(m, n_in=20, k=5, dtype=dtype)
    model = xpnet.MLP([20, 16, 8, 5], seed=0, dtype=dtype)
    opt = xpnet.Adam(1e-3, weight_decay=0.01)
    opt.attach([model.flat], model.backend, decay=[model.n_weights])
    k = K.HostKernels(dtype)
    Xd, _, labels = model.device_data(X, y)
    step = FusedStep(model, opt, k, Xd, labels, None, batch)
    step.start_epoch(np.random.default_rng(0).permutation(m), 0, [1e-3] * step.steps, 0)
    return step, k


def test_a_warm_step_allocates_nothing_and_reads_nothing_back():
    step, k = _warm_step()
    for b in range(step.steps):  # warm: every shape once (the last batch is 4 rows)
        step.step(b)
    made, reads = k.allocations, k.reads
    step.start_epoch(None, 0, [1e-3] * step.steps, step.steps)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        for b in range(step.steps):
            step.step(b)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    assert k.allocations == made and k.reads == reads == 0
    arrays = tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)  # NumPy's array data, every byte of it
    made_during = [d for d in after.filter_traces([arrays]).compare_to(before.filter_traces([arrays]), "lineno")
                   if d.size_diff > 0 or d.count_diff > 0]
    assert not made_during, f"a warm step allocated array data: {made_during}"
    losses, correct, finite = step.finish_epoch(0, step.steps)
    assert k.reads == 1 and losses.shape == (step.steps,) and np.all(losses > 0) and 0 <= correct <= 100 and finite


def test_the_device_counter_drives_the_batches():
    step, k = _warm_step(batch=10)
    order = np.random.default_rng(1).permutation(100)
    step.start_epoch(order, 3, [1e-3] * step.steps, 3)  # a resume at step 3
    for b in range(3, step.steps):
        step.step(b)
    assert int(step.pos[0]) == step.steps and step.opt.t == step.steps - 3
    np.testing.assert_array_equal(step.buffers[10]["L"], step.labels[order[90:100]])  # the last batch's labels


def test_resume_on_the_fused_path_is_bit_identical(tmp_path):
    X, y = _data(dtype="float32")
    whole = xpnet.MLP([12, 9, 4], seed=1)
    xpnet.fit(whole, X, y, xpnet.Adam(1e-3), epochs=4, batch_size=32, verbose=False, path="fused")
    half = xpnet.MLP([12, 9, 4], seed=1)
    ckpt = str(tmp_path / "run.npz")
    xpnet.fit(half, X, y, xpnet.Adam(1e-3), epochs=2, batch_size=32, verbose=False, path="fused", checkpoint=ckpt)
    resumed = xpnet.MLP([12, 9, 4], seed=1)
    xpnet.fit(resumed, X, y, xpnet.Adam(1e-3), epochs=4, batch_size=32, verbose=False, path="fused", resume=ckpt)
    np.testing.assert_array_equal(resumed.flat, whole.flat)


def test_divergence_is_caught_from_the_epoch_s_one_read():
    X, y = _data(dtype="float32")
    X[:5] *= 1e30
    with pytest.raises(xpnet.TrainingDiverged):
        xpnet.fit(xpnet.MLP([12, 9, 4]), X, y, xpnet.SGD(1e3), epochs=2, verbose=False, path="fused")


@pytest.mark.parametrize("settings,fit_kw,reason", [
    ({"output": "sigmoid", "sizes": [12, 9, 1]}, {"y": "binary"}, "output='sigmoid'"),
    ({"output": "identity", "sizes": [12, 9, 1]}, {"y": "real"}, "output='identity'"),
    ({}, {"optimizer": xpnet.SGD(0.1, form="sklearn")}, "form='sklearn'"),
    ({}, {"clip_norm": 1.0}, "clip_norm"),
    ({}, {"y": "rows"}, "not a vector of class labels"),
])
def test_path_fused_says_what_stands_in_its_way(settings, fit_kw, reason):
    X, y = _data()
    sizes = settings.pop("sizes", [12, 9, 4])
    model = xpnet.MLP(sizes, **settings)
    if fit_kw.get("y") == "real":
        y = X[:, 0]
    elif fit_kw.get("y") == "binary":
        y = y % 2
    elif fit_kw.get("y") == "rows":
        y = np.eye(4)[y]
    fit_kw.pop("y", None)
    with pytest.raises(ValueError, match=f"path='fused' cannot train this run: .*{reason}"):
        xpnet.fit(model, X, y, epochs=1, verbose=False, path="fused", **fit_kw)
    xpnet.fit(model, X, y, epochs=1, verbose=False, path="auto", **fit_kw)  # auto: the generic path, no error


def test_bad_paths_are_named():
    X, y = _data()
    with pytest.raises(ValueError, match="path='gpu'"):
        xpnet.fit(xpnet.MLP([12, 4]), X, y, epochs=1, verbose=False, path="gpu")
    assert unsupported(xpnet.MLP([12, 4]), xpnet.SGD(0.1), True, processes=2).startswith("2 data-parallel")


def test_the_automatic_choice_is_fused_on_cupy_and_generic_on_numpy(native_backend):
    X, y = _data(dtype="float64")
    models = {}
    for path in ("generic", "auto", "fused"):
        model = xpnet.MLP([12, 9, 7, 4], seed=3, dtype="float64", backend=native_backend)
        xpnet.fit(model, X, y, xpnet.Adam(2e-3, weight_decay=0.01), epochs=3, batch_size=32, verbose=False, path=path)
        models[path] = xpnet.to_numpy(model.flat)
    np.testing.assert_allclose(models["fused"], models["generic"], rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(models["auto"], models["fused" if native_backend.is_cupy else "generic"])


def test_a_fortran_ordered_X_is_made_c_ordered_once():
    X, y = _data(dtype="float64")
    a = xpnet.MLP([12, 9, 4], seed=2, dtype="float64")
    b = xpnet.MLP([12, 9, 4], seed=2, dtype="float64")
    xpnet.fit(a, X, y, xpnet.SGD(0.1), epochs=2, verbose=False, path="fused")
    xpnet.fit(b, np.asfortranarray(X), y, xpnet.SGD(0.1), epochs=2, verbose=False, path="fused")
    np.testing.assert_array_equal(b.flat, a.flat)


def test_a_callback_that_raises_mid_epoch_leaves_the_step_s_stream_finished():
    X, y = _data(dtype="float32")
    kernels = K.HostKernels("float32")
    waited = []
    kernels.synchronize = lambda: waited.append(True)

    class Boom(xpnet.Callback):
        def on_batch_end(self, batch):
            if batch == 1:
                raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        xpnet.fit(xpnet.MLP([12, 4]), X, y, epochs=1, verbose=False, path=kernels, callbacks=[Boom()])
    assert waited == [True]


def test_the_epoch_s_correct_count_is_exact_beyond_float32():
    from xpnet.train import _epoch_record

    flat = np.zeros(3, np.float32)
    _, correct, finite = _epoch_record(np, flat, [np.float32(1.0)] * 3, [np.float32(63)] * 300001, "float32")
    assert correct == 63 * 300001 and finite
