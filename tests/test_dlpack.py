"""Arrays from other libraries (issue 24): any array that speaks DLPack goes into ``fit``, ``predict``,
``evaluate`` and the scikit-learn estimators, and one that already lives where the model computes
comes in without a copy: a CPU torch tensor into a NumPy model (``np.from_dlpack``), a torch CUDA
tensor into a CuPy model (``cupy.from_dlpack``; the ``cupy`` runs of ``native_backend``, marked
``cuda``). Anything else goes through the host, as before.

A copy is caught two ways: the data pointer of what :meth:`xpnet.MLP.device_data` returns, and
the peak of tracemalloc, which sees NumPy's allocations but not torch's (the tensor itself is
not counted, only what xpnet allocates beside it).
"""

from __future__ import annotations

import tracemalloc
import warnings

import array_api_compat.torch
import numpy as np
import pytest

import xpnet
from xpnet.validate import check_features

torch = pytest.importorskip("torch")

MB = 1 << 20


def _on(backend: xpnet.Backend, t):
    """``t`` where ``backend`` computes: the CPU for NumPy, the model's GPU for CuPy."""
    if backend.is_numpy:
        return t
    if not torch.cuda.is_available():
        pytest.skip("this torch has no CUDA: a torch CUDA tensor cannot be made")
    return t.to(f"cuda:{backend.device.id}")


def _address(a) -> int:
    """Where ``a``'s data starts: a torch tensor, a NumPy or a CuPy array."""
    if isinstance(a, torch.Tensor):
        return a.data_ptr()
    if isinstance(a, np.ndarray):
        return a.__array_interface__["data"][0]
    return a.data.ptr  # CuPy


def _host(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(xpnet.to_numpy(a))


class DLPackOnly:
    """An array of a library xpnet has never heard of: it speaks DLPack and nothing else."""

    def __init__(self, a):
        self._a = a

    def __dlpack__(self, **kwargs):
        return self._a.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._a.__dlpack_device__()


def _data(m: int = 64, n: int = 6, k: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n)).astype(np.float32)
    y = rng.integers(0, k, m).astype(np.int64)
    return X, y


# ------------------------------------------------------------------ no copy where the model computes
@pytest.mark.parametrize("requires_grad", [False, True], ids=["plain", "requires_grad"])
def test_a_tensor_where_the_model_computes_comes_in_without_a_copy(native_backend, requires_grad):
    X, _ = _data()
    model = xpnet.MLP([6, 8, 3], seed=0, backend=native_backend)
    t = _on(native_backend, torch.from_numpy(X)).requires_grad_(requires_grad)
    Xd, _, _ = model.device_data(t)
    assert _address(Xd) == _address(t)  # the tensor's own memory: np.from_dlpack / cupy.from_dlpack
    assert type(Xd) is type(model.flat)
    expected = model.predict_proba(native_backend.asarray(X))
    np.testing.assert_array_equal(_host(model.predict_proba(t)), _host(expected))
    assert t.grad is None and t.requires_grad == requires_grad  # detached for the import, left as it was


def test_an_array_that_speaks_only_dlpack_comes_in_without_a_copy(native_backend):
    X, _ = _data()
    base = native_backend.asarray(X)
    out = native_backend.asarray(DLPackOnly(base))
    assert type(out) is type(base) and _address(out) == _address(base)
    if native_backend.is_numpy:  # a host one is read as NumPy anywhere, checks and all
        model = xpnet.MLP([6, 8, 3], seed=0)
        np.testing.assert_array_equal(model.predict(DLPackOnly(torch.from_numpy(X))), model.predict(X))


def test_a_tensor_on_another_device_goes_through_the_host(native_backend):
    X, y = _data()
    model = xpnet.MLP([6, 8, 3], seed=0, backend=native_backend)
    if native_backend.is_numpy:  # a CUDA tensor into a NumPy model
        if not torch.cuda.is_available():
            pytest.skip("this torch has no CUDA: a torch CUDA tensor cannot be made")
        t, labels = torch.from_numpy(X).cuda(), torch.from_numpy(y).cuda()
    else:  # a CPU tensor into a CuPy model: one copy onto the GPU
        t, labels = torch.from_numpy(X), torch.from_numpy(y)
    Xd, _, idx = model.device_data(t, labels)
    assert type(Xd) is type(model.flat) and _address(Xd) != _address(t)
    np.testing.assert_array_equal(xpnet.to_numpy(Xd), X)
    np.testing.assert_array_equal(xpnet.to_numpy(idx), y)


def test_predict_on_a_large_cpu_tensor_allocates_no_copy_of_it(monkeypatch):
    # 20,000 x 784 float32 (63 MB): predict works EVAL_BATCH rows at a time, so all it allocates
    # beside the tensor is one chunk's activations and the (m,) labels. tracemalloc sees NumPy's
    # allocations, not torch's: torch's own whole-tensor work (isfinite: a bool mask and more,
    # 1.75x the input) is caught by a spy, and the device data must be the tensor's own memory.
    t = torch.randn(20_000, 784)
    size = t.numel() * t.element_size()
    model = xpnet.MLP([784, 64, 10], seed=0)
    model.predict(t[:10])  # first-call costs (imports, caches) out of the measurement
    assert np.shares_memory(model.device_data(t)[0], t.numpy())
    whole = []
    for owner in (torch, array_api_compat.torch):
        real = owner.isfinite
        monkeypatch.setattr(owner, "isfinite", lambda x, *a, real=real, **k: whole.append(tuple(x.shape)) or real(x, *a, **k))
    tracemalloc.start()
    try:
        labels = model.predict(t)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert labels.shape == (20_000,)
    assert peak < size / 8, f"predict allocated {peak / MB:.1f} MB beside a {size / MB:.1f} MB tensor"
    assert (20_000, 784) not in whole  # no torch pass over the whole tensor


def test_a_bfloat16_tensor_goes_through_the_host_as_float32():
    X, y = _data()
    model = xpnet.MLP([6, 8, 3], seed=0)
    t = torch.from_numpy(X).to(torch.bfloat16)
    np.testing.assert_array_equal(model.predict(t), model.predict(t.float().numpy()))


def test_a_device_array_of_an_unknown_library_is_refused_in_one_line():
    class OnAGPU:
        def __dlpack__(self, **kwargs):
            raise BufferError("not here")

        def __dlpack_device__(self):
            return (2, 0)

    with pytest.raises(ValueError, match=r"X lives on a device \(DLPack device type 2, id 0\)"):
        xpnet.MLP([6, 8, 3]).predict(OnAGPU())


def test_a_float64_tensor_into_a_float32_model_is_converted_once():
    t = torch.randn(20_000, 784, dtype=torch.float64)
    converted = t.numel() * 4  # the float32 copy Backend.asarray makes (xp.astype): the only one
    model = xpnet.MLP([784, 64, 10], seed=0)
    model.predict(t[:10])
    tracemalloc.start()
    try:
        Xd, _, _ = model.device_data(t)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert Xd.dtype == np.float32
    np.testing.assert_array_equal(Xd, t.numpy().astype(np.float32))
    # the range check (max and min, no abs(X)) and the finiteness check (one sum) allocate nothing
    assert converted * 0.99 < peak < converted + 4 * MB, f"{peak / MB:.1f} MB for a {converted / MB:.1f} MB conversion"


def test_a_float64_tensor_beyond_float32_range_is_named():
    X, _ = _data()
    t = torch.from_numpy(X.astype(np.float64))
    t[3, 2] = 1e300
    with pytest.raises(ValueError, match=r"X holds values up to 1e\+300, beyond float32's range"):
        xpnet.MLP([6, 8, 3], seed=0).predict(t)


# ------------------------------------------------------------------ the same results as NumPy's
def _fit_pair(X, y, sizes, output="softmax", **kwargs):
    """The same model fitted on torch tensors and on NumPy arrays: ``(on torch, on NumPy)``."""
    models = []
    for wrap in (torch.from_numpy, np.asarray):
        model = xpnet.MLP(sizes, output=output, seed=0)
        xpnet.fit(model, wrap(X), wrap(y), xpnet.Adam(1e-2), epochs=3, batch_size=16, verbose=False,
                  validation_data=(wrap(X[:20]), wrap(y[:20])), **kwargs)
        models.append(model)
    return models


def test_fit_and_evaluate_with_tensors_follow_numpy():
    X, y = _data()
    on_torch, on_numpy = _fit_pair(X, y, [6, 8, 3])
    np.testing.assert_array_equal(on_torch.flat, on_numpy.flat)
    assert on_torch.evaluate(torch.from_numpy(X), torch.from_numpy(y)) == on_numpy.evaluate(X, y)
    np.testing.assert_array_equal(on_torch.predict(torch.from_numpy(X)), on_numpy.predict(X))


def test_regression_with_a_float_target_tensor_follows_numpy():
    X, _ = _data()
    y = (X[:, 0] - 2 * X[:, 1]).astype(np.float32)  # (m,) real targets for one identity unit
    on_torch, on_numpy = _fit_pair(X, y, [6, 8, 1], output="identity")
    np.testing.assert_array_equal(on_torch.flat, on_numpy.flat)
    np.testing.assert_array_equal(on_torch.predict(torch.from_numpy(X)), on_numpy.predict(X))


def test_integer_labels_that_are_not_indices_as_a_tensor():
    X, y = _data()
    labels = np.array([3, 7, 9], dtype=np.int64)[y]  # the classes are learned from them
    on_torch, on_numpy = _fit_pair(X, labels, [6, 8, 3])
    np.testing.assert_array_equal(on_torch.classes, [3, 7, 9])
    np.testing.assert_array_equal(on_torch.flat, on_numpy.flat)
    np.testing.assert_array_equal(on_torch.predict(torch.from_numpy(X)), on_numpy.predict(X))
    bad = torch.from_numpy(labels.copy())
    bad[5] = 4
    with pytest.raises(ValueError, match=r"y has label\(s\) \[4\] that are not among the model's classes"):
        on_torch.evaluate(torch.from_numpy(X), bad)


def test_fit_on_a_tensor_that_requires_grad():
    X, y = _data()
    t = torch.from_numpy(X.copy()).requires_grad_(True)
    model, reference = xpnet.MLP([6, 8, 3], seed=0), xpnet.MLP([6, 8, 3], seed=0)
    xpnet.fit(model, t, torch.from_numpy(y), epochs=2, batch_size=16, verbose=False)
    xpnet.fit(reference, X, y, epochs=2, batch_size=16, verbose=False)
    np.testing.assert_array_equal(model.flat, reference.flat)
    assert t.grad is None and t.requires_grad
    np.testing.assert_array_equal(t.detach().numpy(), X)  # read, never written


def test_a_non_contiguous_tensor_is_read_through_its_strides():
    X, y = _data()
    t = torch.from_numpy(np.ascontiguousarray(X.T)).T  # (64, 6), column-major: strides (1, 64)
    assert not t.is_contiguous()
    model, reference = xpnet.MLP([6, 8, 3], seed=0), xpnet.MLP([6, 8, 3], seed=0)
    Xd, _, _ = model.device_data(t)
    assert _address(Xd) == _address(t) and not Xd.flags.c_contiguous  # a strided view, no copy at the edge
    np.testing.assert_array_equal(model.predict_proba(t), reference.predict_proba(X))
    # training copies what it needs: each batch is gathered (and the fused path makes X contiguous once)
    xpnet.fit(model, t, torch.from_numpy(y), epochs=2, batch_size=16, verbose=False)
    xpnet.fit(reference, X, y, epochs=2, batch_size=16, verbose=False)
    np.testing.assert_array_equal(model.flat, reference.flat)


# ------------------------------------------------------------------ checks, without a mask of the data
def test_non_finite_values_in_a_tensor_are_counted():
    X, _ = _data()
    t = torch.from_numpy(X.copy())
    t[1, 1], t[2, 4] = float("nan"), float("inf")
    with pytest.raises(ValueError, match=r"X contains 2 NaN or infinite value\(s\)"):
        xpnet.MLP([6, 8, 3], seed=0).predict(t)


def test_finite_data_whose_sum_overflows_passes_the_check_without_a_warning():
    X = np.full((4, 3), 3e38, dtype=np.float32)  # finite; the sum of any two is not
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_features(torch.from_numpy(X), 3) is not None
        X[2, 1] = -np.inf
        with pytest.raises(ValueError, match=r"X contains 1 NaN or infinite value\(s\)"):
            check_features(X, 3)


# ------------------------------------------------------------------ scikit-learn's estimators
@pytest.mark.parametrize("requires_grad", [False, True], ids=["plain", "requires_grad"])
def test_the_estimators_take_tensors(native_backend, requires_grad):
    sk = pytest.importorskip("xpnet.sklearn")
    warnings.simplefilter("ignore", pytest.importorskip("sklearn.exceptions").ConvergenceWarning)  # 5 epochs on purpose
    X, y = _data(m=80)
    t = _on(native_backend, torch.from_numpy(X)).requires_grad_(requires_grad)
    Xn = native_backend.asarray(X)  # the same data as the backend's own array
    for make, target in ((sk.MLPClassifier, y), (sk.MLPRegressor, X[:, 0] - X[:, 1])):
        on_torch = make(hidden_layer_sizes=(8,), max_iter=5, random_state=0, device=native_backend)
        on_torch.fit(t, _on(native_backend, torch.from_numpy(target)))
        reference = make(hidden_layer_sizes=(8,), max_iter=5, random_state=0, device=native_backend)
        reference.fit(Xn, target)
        np.testing.assert_allclose(_host(on_torch.predict(t)), _host(reference.predict(Xn)), rtol=1e-6, atol=1e-6)
        assert on_torch.score(t, target) == pytest.approx(reference.score(Xn, target), rel=1e-6, abs=1e-6)
    np.testing.assert_allclose(_host(on_torch.mlp_.flat), _host(reference.mlp_.flat), rtol=1e-6, atol=1e-7)
    assert t.grad is None


def test_the_estimators_check_a_tensor_without_a_mask_of_it(monkeypatch):
    # torch.isfinite over an (m, n) tensor allocates 1.75 times it (abs, then two masks): out of
    # tracemalloc's sight, so watched here; the check is one sum, whose finiteness is one value
    sk = pytest.importorskip("xpnet.sklearn")
    xp = pytest.importorskip("array_api_compat.torch")
    X, y = _data(m=80)
    est = sk.MLPClassifier(hidden_layer_sizes=(8,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", pytest.importorskip("sklearn.exceptions").ConvergenceWarning)
        est.fit(X, y)
    sizes, isfinite = [], xp.isfinite
    monkeypatch.setattr(xp, "isfinite", lambda a: sizes.append(a.numel()) or isfinite(a))
    np.testing.assert_array_equal(est.predict(torch.from_numpy(X)), est.predict(X))
    assert sizes and max(sizes) == 1
