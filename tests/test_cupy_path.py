"""The CuPy path without a GPU: static buffers, device entries, and the names it calls in CuPy 14.

Three stand-ins, each for what it can prove here:

- CuPy played by NumPy: a ``cupy`` module whose functions are NumPy's, a ``Device`` that
  records which GPU is current, and a backend named ``"cupy"``. Every branch xpnet takes for
  CuPy runs (``supports_out``, :class:`~xpnet.backend.OutHonoured`, device entries), with
  NumPy's arithmetic, so the results are checked against NumPy's bit for bit.
- A bare ``cupy`` module, for what ``nx`` resolves each name to.
- The real CuPy wheel, where installed: every name the training step calls through ``nx``,
  with its keywords, recorded from NumPy runs of the step, must exist in CuPy and accept
  those keywords. This follows the code: a new call in the step is checked without a list
  to update. No GPU is touched (no kernel is launched, no array made).
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import types

import array_api_compat
import array_api_compat.numpy as compat_numpy
import numpy as np
import pytest

import xpnet
from xpnet.backend import CUPY_OUT, Backend, Buffers, OutHonoured, OutIgnored


class StandInDevice:
    """``cupy.cuda.Device``: records each entry, keeps the current GPU, as CuPy's per thread."""

    current = 0
    entered: list[int] = []

    def __init__(self, id: int):
        self.id = id
        self._restore: list[int] = []
        self.mem_info = (1 << 40, 1 << 40)

    def __enter__(self):
        StandInDevice.entered.append(self.id)
        self._restore.append(StandInDevice.current)
        StandInDevice.current = self.id
        return self

    def __exit__(self, *exc):
        StandInDevice.current = self._restore.pop()


class DeviceFree:
    """``array_api_compat.numpy`` taking a stand-in device (and ignoring it: NumPy's is the host)."""

    def __getattr__(self, name):
        attr = getattr(compat_numpy, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def call(*args, device=None, **kwargs):
            return attr(*args, **kwargs)

        setattr(self, name, call)
        return call


@pytest.fixture
def played(monkeypatch):
    """``(backend on stand-in cuda:0, calls)``: CuPy played by NumPy; ``calls`` lists (name, current GPU)
    for every call of the stand-in ``cupy`` module's functions, which OutHonoured resolves nx to."""
    calls: list[tuple[str, int]] = []
    fake = types.ModuleType("cupy")
    fake.ndarray = type("ndarray", (), {})  # no array is one: NumPy's arrays stay NumPy's to array_api_compat

    def module_getattr(name):
        attr = getattr(np, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def call(*args, **kwargs):
            calls.append((name, StandInDevice.current))
            return attr(*args, **kwargs)

        return call

    fake.__getattr__ = module_getattr
    fake.cuda = types.SimpleNamespace(get_current_stream=lambda: types.SimpleNamespace(synchronize=lambda: None))
    fake.get_default_memory_pool = lambda: types.SimpleNamespace(free_bytes=lambda: 0)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setattr(StandInDevice, "current", 0)
    monkeypatch.setattr(StandInDevice, "entered", [])
    return (lambda index=0: Backend("cupy", DeviceFree(), StandInDevice(index), f"cuda:{index}")), calls


def _fit(backend, reuse, optimizer, **model):
    X, y = xpnet.make_moons(203, noise=0.2, seed=5)  # 203: a partial last batch
    net = xpnet.MLP([2, 9, 7, 2], backend=backend, dtype="float64", seed=3, **model)
    history = xpnet.fit(net, X, y, optimizer(), epochs=3, batch_size=32, verbose=False, reuse_buffers=reuse,
                        path="generic")
    return net, history


OPTIMIZERS = {
    "adam": lambda: xpnet.Adam(1e-2, weight_decay=0.1),
    "nesterov": lambda: xpnet.SGD(0.05, momentum=0.9, nesterov=True, weight_decay=0.01),
    "onecycle-clip": lambda: xpnet.SGD(0.05, momentum=0.9, schedule="onecycle", clip_norm=0.5),
}


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
def test_the_cupy_path_reuses_buffers_and_matches_numpy_bit_for_bit(played, optimizer):
    make, calls = played
    gpu = make(0)
    assert gpu.supports_out and isinstance(gpu.nx, OutHonoured) and Buffers(gpu).enabled
    net, history = _fit(gpu, True, OPTIMIZERS[optimizer])
    ref, ref_history = _fit(xpnet.get_backend("numpy"), True, OPTIMIZERS[optimizer])
    np.testing.assert_array_equal(xpnet.to_numpy(net.flat), xpnet.to_numpy(ref.flat))
    assert history.train_loss == ref_history.train_loss and history.train_accuracy == ref_history.train_accuracy
    # the step's out= calls went to the stand-in cupy module, with cuda:0 current
    names = {name for name, _ in calls}
    assert {"matmul", "sum", "take", "empty", "empty_like", "argmax"} <= names
    assert {gpu for _, gpu in calls} == {0}


def test_backprop_writes_the_gradient_into_its_buffer_on_the_cupy_path(played):
    make, calls = played
    net = xpnet.MLP([3, 5, 4, 3], backend=make(0), dtype="float64", seed=1)
    X = np.random.default_rng(0).normal(size=(8, 3))
    y = np.arange(8) % 3
    Xd, Yd, labels = net.device_data(X, y)
    buf = Buffers(net.backend)
    first = net.backprop(Xd, Yd, labels=labels, buf=buf)
    del calls[:]
    second = net.backprop(Xd, Yd, labels=labels, buf=buf)
    assert second.grad is first.grad is buf("grad", (net.n_params,), Xd.dtype)  # the buffer, no concat
    assert "concatenate" not in {name for name, _ in calls}
    plain = net.backprop(Xd, Yd, labels=labels)  # no buffers: the per-layer results packed
    np.testing.assert_array_equal(second.grad, plain.grad)
    assert float(second.correct) == float(plain.correct) and float(second.loss) == float(plain.loss)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", ["onehot", "labels", "one-unit", "multilabel"])
def test_the_buffered_correct_count_is_the_generic_one(dtype, case):
    """NumPy with buffers (arg-max, row starts, take) against the generic lines (take_along_axis), which
    array-api-strict counts; with ties in the logits, so that both must pick the first arg-max."""
    rng = np.random.default_rng(7)
    m, k = 37, 1 if case == "one-unit" else 4
    Z = np.round(rng.normal(size=(m, k)), 1).astype(dtype)  # rounded: ties in some rows
    Z[0] = 0.0
    idx = rng.integers(0, max(k, 2), m)
    if case == "multilabel":
        Y = (rng.random((m, k)) < 0.5).astype(dtype)
        Z[: m // 2] = np.where(Y[: m // 2] > 0, 1.0, -1.0)  # some rows all right
    else:
        Y = np.eye(max(k, 2), dtype=dtype)[idx][:, :k]
    net = xpnet.MLP([3, k], output="sigmoid" if case in ("one-unit", "multilabel") else "softmax",
                    dtype=dtype, multilabel=True if case == "multilabel" else None)
    from xpnet.labels import step_correct

    onehot, labels = case in ("onehot", "multilabel"), None if case in ("onehot", "multilabel") else idx
    buf = Buffers(net.backend)
    fast = step_correct(np, Z, Y, labels, onehot, case == "multilabel", buf)
    again = step_correct(np, Z, Y, labels, onehot, case == "multilabel", buf)  # warm: the same buffers
    generic = step_correct(OutIgnored(compat_numpy), Z, Y, labels, onehot, case == "multilabel", Buffers())
    assert fast.dtype == generic.dtype == np.dtype(dtype)
    assert float(fast) == float(again) == float(generic) > 0


# ------------------------------------------------------------ the device entries
def test_each_entry_that_writes_device_arrays_enters_the_model_s_device(played):
    """Model on stand-in cuda:1 while cuda:0 is current: each public entry that writes its arrays makes
    cuda:1 current for the write (and returns to cuda:0)."""
    make, calls = played
    net = xpnet.MLP([2, 3, 2], backend=make(1), seed=0)

    def entered(call) -> list[int]:
        StandInDevice.entered = []
        del calls[:]
        call()
        assert StandInDevice.current == 0
        return StandInDevice.entered

    W1 = np.full((2, 3), 0.5, np.float32)
    assert entered(lambda: net.params.__setitem__(0, W1)) == [1]  # ParamList._write
    np.testing.assert_array_equal(net.params[0], W1)
    assert entered(lambda: setattr(net, "params", [p * 0 + 1 for p in net.params])) == [1]  # the params setter
    opt = xpnet.Adam(0.1, weight_decay=0.1)
    assert entered(lambda: opt.attach([net.flat], net.backend, decay=[net.n_weights])) == [1]  # by hand
    grad = net.flat * 0 + 0.25
    assert entered(lambda: opt.step([net.flat], [grad])) == [1]
    assert {gpu for _, gpu in calls} == {1}  # the update's out= calls ran there
    meta, arrays = opt.state()
    assert entered(lambda: opt.load_state(meta, arrays, np.asarray)) == [1]
    assert entered(lambda: net.backend.asarray(np.zeros(3))) == [1]
    assert 1 in entered(lambda: net.to(backend=make(2))) and net.backend.label == "cuda:2"  # read on 1, written on 2
    assert entered(lambda: Buffers(net.backend)("x", (2,), np.float32)) == [2]


def test_an_optimizer_attached_without_a_backend_enters_the_arrays_gpu(monkeypatch):
    """Given CuPy arrays and no backend, attach and step make the arrays' GPU current."""
    from xpnet import optim

    class Array:
        device = StandInDevice(1)

    monkeypatch.setattr(StandInDevice, "current", 0)
    monkeypatch.setattr(StandInDevice, "entered", [])
    monkeypatch.setattr(optim.array_api_compat, "is_cupy_array", lambda a: isinstance(a, Array))
    seen = []
    monkeypatch.setattr(optim.Optimizer, "_attach", lambda self, *args: seen.append(StandInDevice.current))
    monkeypatch.setattr(optim.SGD, "update", lambda self, *args: seen.append(StandInDevice.current))
    opt = xpnet.SGD(0.1)
    opt.attach([Array()])
    opt.xp, opt._flushes = compat_numpy, False
    opt.step([Array()], [Array()])
    assert seen == [1, 1] and StandInDevice.current == 0


def test_asarray_copies_another_gpu_s_cupy_array_onto_its_own(monkeypatch):
    """A CuPy array from cuda:1 given to a cuda:0 backend: xp.asarray runs with cuda:0 current and
    device=cuda:0, where CuPy copies an array that lives on another device."""
    log = []

    class NdArray:
        pass

    fake = types.ModuleType("cupy")
    fake.ndarray = NdArray
    xp = types.ModuleType("array_api_compat.cupy")
    xp.asarray = lambda a, device=None: log.append((a, device.id, StandInDevice.current)) or a
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(sys.modules, "array_api_compat.cupy", xp)
    monkeypatch.setattr(array_api_compat, "cupy", xp, raising=False)
    monkeypatch.setattr(StandInDevice, "current", 1)
    other = NdArray()
    assert array_api_compat.is_cupy_array(other)
    Backend("cupy", xp, StandInDevice(0), "cuda:0").asarray(other)
    assert log == [(other, 0, 0)] and StandInDevice.current == 1


# ------------------------------------------------------------ what nx resolves to
def test_nx_on_cupy_is_cupy_for_out_and_array_api_compat_for_the_rest(monkeypatch):
    taken = []
    fake = types.ModuleType("cupy")
    for name in CUPY_OUT:
        setattr(fake, name, (lambda n: lambda *a, **k: (n, a, k))(name))
    fake.take = lambda a, indices, axis=None, out=None: taken.append((a, indices, axis, out)) or "taken"
    monkeypatch.setitem(sys.modules, "cupy", fake)
    xp = types.SimpleNamespace(reshape=lambda x, shape: ("reshape", x, shape), vecdot=lambda a, b: "vecdot",
                               multiply="not this one", float32=np.float32)
    nx = Backend("cupy", xp, StandInDevice(0), "cuda:0").nx
    assert isinstance(nx, OutHonoured)
    assert nx.multiply(1, 2, out="buf") == ("multiply", (1, 2), {"out": "buf"})  # CuPy's, out= kept
    assert nx.sum("a", axis=0, out="o") == ("sum", ("a",), {"axis": 0, "out": "o"})
    assert nx.take("a", "i", axis=0, out="o", mode="clip") == "taken"  # CuPy's take has no mode=
    assert taken == [("a", "i", 0, "o")]
    assert nx.reshape("x", (2,)) == ("reshape", "x", (2,))  # array_api_compat's, out= and mode= dropped
    assert nx.vecdot("a", "b", out=None) == "vecdot"
    assert nx.float32 is np.float32
    with pytest.raises(AttributeError):
        nx._private  # noqa: B018
    assert nx.multiply is nx.multiply  # resolved once


# ------------------------------------------------------------ the real CuPy's names
class Recorder:
    """NumPy as ``nx``, logging ``(name, positional count, keywords)`` of every function call."""

    def __init__(self):
        self.seen: set = set()

    def __getattr__(self, name):
        attr = getattr(np, name)
        if not callable(attr) or isinstance(attr, type):
            return attr

        def call(*args, **kwargs):
            self.seen.add((name, len(args), tuple(sorted(kwargs)), kwargs.get("out") is not None))
            return attr(*args, **kwargs)

        return call


RUNS = [  # model settings, optimizer, fit settings: every branch of the step that calls nx
    (dict(), lambda: xpnet.Adam(1e-2, weight_decay=0.1, clip_norm=1.0), dict(sample_weight=True)),
    (dict(label_smoothing=0.1, activation="tanh"), lambda: xpnet.SGD(0.1, momentum=0.9, nesterov=True,
                                                                       weight_decay=0.01, warmup_steps=3), {}),
    (dict(activation="leaky_relu", loss="mse"), lambda: xpnet.SGD(0.1, form="sklearn", momentum=0.9), {}),
    (dict(activation="sigmoid", output="sigmoid", k=1), lambda: xpnet.Adam(1e-2, form="sklearn"), {}),
    (dict(activation="identity", output="sigmoid", multilabel=True, k=3), lambda: xpnet.SGD(0.1), {}),
    (dict(output="identity", loss="huber", k=1), lambda: xpnet.SGD(0.01, weight_decay=0.1), dict(regression=True)),
    (dict(output="identity", loss="mae", k=2), lambda: xpnet.SGD(0.01), dict(regression=True)),
]


def _recorded_calls() -> set:
    """Every (name, positional count, keywords, out given) the training step called through nx."""
    numpy = xpnet.get_backend("numpy")
    recorder = numpy.__dict__["nx"] = Recorder()
    rng = np.random.default_rng(0)
    X = rng.normal(size=(70, 4))
    for settings, optimizer, fit in RUNS:
        settings = dict(settings)
        k = settings.pop("k", 2)
        if fit.get("regression"):
            y = rng.normal(size=(70, k)) if k > 1 else rng.normal(size=70)
        elif settings.get("multilabel"):
            y = (rng.random((70, k)) < 0.5).astype(np.int64)
        else:
            y = rng.integers(0, 2, 70)
        net = xpnet.MLP([4, 6, k], backend=numpy, **settings)
        weights = rng.random(70) if fit.get("sample_weight") else None
        xpnet.fit(net, X, y, optimizer(), epochs=2, batch_size=16, verbose=False, sample_weight=weights,
                  path="generic")
        if not fit.get("regression") and not settings.get("multilabel") and k > 1:  # labels: the other count
            Xd, Yd, labels = net.device_data(X, y)
            xpnet.train_step(net, optimizer(), Xd[:16, :], Yd[:16, :], labels[:16], buf=Buffers(numpy))
    return recorder.seen


def _keywords_of(fn) -> set | None:
    """The keywords CuPy's ``fn`` takes; ``None`` for any (``**kwargs``)."""
    if isinstance(fn, sys.modules["cupy"].ufunc):  # CuPy ufuncs: documented on ufunc.__call__
        doc = type(fn).__call__.__doc__
        return {word for word in ("out", "dtype", "casting") if f"{word} (" in doc or f"{word}:" in doc}
    parameters = inspect.signature(fn).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy is not installed here (the test extra has it)")
def test_every_name_the_step_calls_exists_in_cupy_with_its_keywords():
    cupy = pytest.importorskip("cupy", reason="CuPy is installed but does not import here")
    xp = pytest.importorskip("array_api_compat.cupy")
    nx = Backend("cupy", xp, StandInDevice(0), "cuda:0").nx  # no GPU: no get_backend, no array, no kernel
    seen = _recorded_calls()
    assert {"matmul", "sum", "take", "argmax", "exp", "multiply"} <= {name for name, *_ in seen}
    problems = []
    for name, n_args, keywords, out in sorted(seen):
        fn = getattr(nx, name)
        raw = getattr(cupy, name, None)
        if out and name not in CUPY_OUT:
            problems.append(f"{name}(out=...) resolves to array_api_compat.cupy, which drops out=: add it to CUPY_OUT")
            continue
        if name in CUPY_OUT:
            assert raw is not None, f"cupy.{name} does not exist in CuPy {cupy.__version__}"
            assert fn is raw or name == "take", name
            target, wanted = raw, set(keywords) - ({"mode"} if name == "take" else set())
        else:  # array_api_compat.cupy's function; out= and mode= are dropped before the call
            target, wanted = getattr(xp, name), set(keywords) - {"out", "mode"}
        accepted = _keywords_of(target)
        if accepted is not None and not wanted <= accepted:
            problems.append(f"{name}: called with {sorted(wanted)}, takes {sorted(accepted)}")
        if not isinstance(target, cupy.ufunc) and name != "matmul":
            parameters = inspect.signature(target).parameters.values()
            if not any(p.kind is p.VAR_POSITIONAL for p in parameters):
                positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
                if n_args > len(positional):
                    problems.append(f"{name}: called with {n_args} positional arguments, takes {len(positional)}")
    assert problems == []
    # take: CuPy's has out= and no mode=; matmul is a gufunc with out=
    assert "mode" not in inspect.signature(cupy.take).parameters and "out" in inspect.signature(cupy.take).parameters
    assert "out" in inspect.signature(cupy.matmul).parameters
    assert {"axis", "dtype", "out", "keepdims"} <= set(inspect.signature(cupy.sum).parameters)


def test_cuda_without_cupy_says_how_to_fix_it_even_where_cupy_is_installed(monkeypatch):
    """tests/test_backend.py's version skips where the CuPy wheel is installed; here CuPy is made absent."""
    monkeypatch.setitem(sys.modules, "cupy", None)  # import cupy raises ModuleNotFoundError
    with pytest.raises(xpnet.DeviceError) as info:
        xpnet.MLP([2, 2], device="cuda")
    message = str(info.value)
    assert "device='cuda'" in message and "CuPy" in message and "--device cpu" in message
    assert 'pip install "cupy-cuda13x[ctk]>=14"' in message


@pytest.mark.skipif(importlib.util.find_spec("cupy") is None, reason="CuPy is not installed here")
def test_cuda_with_the_real_wheel_and_no_driver_is_one_true_line():
    try:
        backend = xpnet.get_backend(device="cuda")
    except xpnet.DeviceError as exc:
        message = str(exc)
        assert "\n" not in message and message.startswith("device='cuda': ")
        if "driver version 0" in message:
            assert "no NVIDIA driver" in message and "too old" not in message
    else:
        assert backend.is_cupy  # a machine with a GPU: nothing to say
