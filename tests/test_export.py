"""ONNX export: each written file run by onnxruntime on the CPU, against the model's own
``predict_proba`` and ``predict`` on real data (MNIST, diabetes, string labels), for every output
kind, every hidden layer kind, the input and target scalers, float32 and float64; the CLI's
``xpnet export``; and what a failed export leaves (nothing)."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
from cli_helpers import run

import xpnet
from xpnet.export import ONNX_HINT, OPSET

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

TOL = {"float32": 1e-5, "float64": 1e-12}  # probabilities against predict_proba
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "sigmoid", "identity", "gelu", "silu", "elu", "softplus")


def _session(model, tmp_path, name="m.onnx"):
    """An onnxruntime session on the file that export_onnx wrote for ``model``."""
    path = tmp_path / name
    xpnet.export_onnx(model, path)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _outputs(session, X, dtype):
    """``{output name: array}`` for rows ``X``."""
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"X": np.asarray(X, dtype=dtype)})))


def _agrees(model, session, X) -> float:
    """Labels equal ``predict`` exactly and probabilities ``predict_proba`` within TOL, on every row of
    ``X``, one row, and 37 rows through the same session; returns the largest difference."""
    worst = 0.0
    for rows in (X, X[:1], X[:37]):
        got = _outputs(session, rows, model.dtype)
        if not model.is_classifier:
            assert list(got) == ["variable"]
            expected = xpnet.to_numpy(model.predict(rows)).reshape(len(rows), -1)
            assert got["variable"].shape == expected.shape and got["variable"].dtype == np.dtype(model.dtype)
            scale = max(1.0, float(np.abs(expected).max()))
            diff = float(np.abs(got["variable"] - expected).max())
            assert diff <= TOL[model.dtype] * scale
            worst = max(worst, diff / scale)
            continue
        assert list(got) == ["label", "probabilities"]  # skl2onnx's order: label first
        proba = xpnet.to_numpy(model.predict_proba(rows))
        assert got["probabilities"].shape == proba.shape and got["probabilities"].dtype == np.dtype(model.dtype)
        diff = float(np.abs(got["probabilities"] - proba).max())
        assert diff <= TOL[model.dtype]
        worst = max(worst, diff)
        expected = np.asarray(xpnet.to_numpy(model.predict(rows)))
        assert got["label"].shape == expected.shape
        np.testing.assert_array_equal(got["label"].astype(expected.dtype), expected)
    return worst


def _fit(model, X, y, epochs=3, lr=1e-2):
    xpnet.fit(model, X, y, xpnet.Adam(lr), epochs=epochs, batch_size=32, verbose=False)
    return model


@pytest.fixture(scope="module")
def mnist():
    return xpnet.load_mnist(2000)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_mnist_softmax_matches_predict(mnist, dtype, tmp_path):
    model = xpnet.MLP([784, 32, 10], dtype=dtype, seed=1)
    xpnet.fit(model, mnist.X_train, mnist.y_train, xpnet.Adam(1e-3), epochs=2, batch_size=64, verbose=False)
    session = _session(model, tmp_path)
    _agrees(model, session, mnist.X_test)
    assert session.get_inputs()[0].name == "X" and session.get_inputs()[0].shape[1] == 784
    assert onnx.load(str(tmp_path / "m.onnx")).opset_import[0].version == OPSET == 12
    label = _outputs(session, mnist.X_test, dtype)["label"]
    assert label.dtype == np.int64 and np.mean(label == mnist.y_test) > 0.7  # it learned, and the file says so


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_hidden_layer_kind(activation, tmp_path):
    """Each activation with no norm, batch norm (running statistics moved by training) and layer
    norm, with dropout and a residual block, the input scaler on and off, float32 and float64."""
    X, y = xpnet.make_moons(400, noise=0.3, seed=2)
    X = X * 3.0 + 1.0  # away from mean 0, std 1: the scaler has work to do
    for norm, scale, dtype in ((None, None, "float32"), ("batch", "standard", "float32"), ("layer", "minmax", "float64"),
                               ("batch", None, "float64"), (None, "standard", "float64"), ("layer", None, "float32")):
        model = _fit(xpnet.MLP([2, 16, 16, 2], activation=activation, dtype=dtype, norm=norm, scale=scale,
                               dropout=0.1, residual=True, seed=3), X, y)
        if norm == "batch":
            mean, var = (xpnet.to_numpy(r) for r in model.running[0])
            assert max(np.abs(mean).max(), np.abs(var - 1).max()) > 0.1  # not the initial 0 and 1
        _agrees(model, _session(model, tmp_path), X)


def test_string_labels_softmax_and_one_sigmoid_unit(tmp_path):
    X, y = xpnet.make_moons(300, seed=4)
    names = np.array(["left", "right"])[y]
    for sizes, output in (([2, 8, 2], "softmax"), ([2, 8, 1], "sigmoid")):
        model = _fit(xpnet.MLP(sizes, output=output, activation="tanh", seed=5), X, names)
        session = _session(model, tmp_path)
        _agrees(model, session, X)
        got = _outputs(session, X, "float32")
        assert got["label"].dtype == object and set(got["label"]) == {"left", "right"}
        assert got["probabilities"].shape == (300, sizes[-1])


def test_integer_labels_other_than_indices(tmp_path):
    X, y = xpnet.make_moons(200, seed=6)
    model = _fit(xpnet.MLP([2, 8, 1], output="sigmoid", seed=7), X, np.array([10, 20])[y])
    session = _session(model, tmp_path)
    _agrees(model, session, X)
    assert set(_outputs(session, X, "float32")["label"]) == {10, 20}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_multilabel_rows(dtype, tmp_path):
    rng = np.random.default_rng(8)
    X = rng.standard_normal((300, 4))
    Y = (X[:, :3] > 0).astype(np.int64)  # three labels, each on where its feature is positive
    model = _fit(xpnet.MLP([4, 16, 3], output="sigmoid", multilabel=True, dtype=dtype, norm="layer", seed=9), X, Y)
    session = _session(model, tmp_path)
    _agrees(model, session, X)
    got = _outputs(session, X, dtype)["label"]
    assert got.dtype == np.int64 and got.shape == (300, 3)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_regressor_unscales_its_targets(dtype, tmp_path):
    sk = pytest.importorskip("sklearn.datasets")
    X, y = sk.load_diabetes(return_X_y=True)  # targets 25..346
    model = _fit(xpnet.MLP([10, 32, 1], output="identity", scale="standard", target_scale="standard", dtype=dtype,
                           activation="gelu", norm="batch", seed=10), X, y, epochs=5)
    assert model.target_scaler is not None
    session = _session(model, tmp_path)
    _agrees(model, session, X)
    two = np.stack([y, np.sqrt(y)], axis=1)  # two outputs, each unscaled with its own shift and factor
    model = _fit(xpnet.MLP([10, 16, 2], output="identity", target_scale="minmax", dtype=dtype, seed=11), X, two)
    _agrees(model, _session(model, tmp_path), X)


def test_models_trained_on_any_backend(backend, tmp_path):
    X, y = xpnet.make_moons(200, seed=12)
    model = _fit(xpnet.MLP([2, 8, 8, 2], backend=backend, norm="batch", residual=True, scale="standard", seed=13), X, y)
    _agrees(model, _session(model, tmp_path), X)


def test_sklearn_estimators_export_what_they_predict(tmp_path):
    exceptions = pytest.importorskip("sklearn.exceptions")
    from xpnet.sklearn import MLPClassifier, MLPRegressor

    X, y = xpnet.make_moons(200, seed=14)
    rng = np.random.default_rng(15)
    cases = [
        (MLPClassifier((8,), max_iter=300, random_state=0), np.array(["no", "yes"])[y]),  # one logistic unit
        (MLPClassifier((8,), activation="gelu", max_iter=300, random_state=0), (y + (X[:, 0] > 1)).astype(int)),
        (MLPClassifier((8,), max_iter=300, random_state=0), np.stack([y, 1 - y, X[:, 0] > 0], axis=1).astype(int)),
        (MLPClassifier((8,), max_iter=50, random_state=0), np.full(len(y), "only")),  # one class
        (MLPRegressor(hidden_layer_sizes=(8,), max_iter=300, random_state=0), X[:, 0] * 2 + y),
        (MLPRegressor("poisson", (8,), max_iter=300, random_state=0), rng.poisson(np.exp(X[:, 1]))),
    ]
    for i, (est, target) in enumerate(cases):
        with warnings.catch_warnings():  # a few hundred iterations on 200 rows: whether they converge is not the point
            warnings.simplefilter("ignore", exceptions.ConvergenceWarning)
            est.fit(X, target)
        path = tmp_path / f"e{i}.onnx"
        est.export_onnx(path)
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = _outputs(session, X, est.mlp_.dtype)
        if "variable" in got:
            np.testing.assert_allclose(got["variable"].reshape(est.predict(X).shape), est.predict(X), rtol=1e-5, atol=1e-5)
            continue
        np.testing.assert_allclose(got["probabilities"], est.predict_proba(X), rtol=0, atol=1e-5)
        pred = est.predict(X)
        np.testing.assert_array_equal(got["label"].astype(pred.dtype), pred)


def test_cli_export_round_trip(tmp_path, capsys):
    model_path, out = str(tmp_path / "m.npz"), str(tmp_path / "m.onnx")
    assert run(["train", "--dataset", "moons", "--layers", "2,8,8,2", "--epochs", "2", "--norm", "batch",
                "--scale", "standard", "--save", model_path, "--quiet"]) == 0
    assert run(["export", "--model", model_path, "--onnx", out]) == 0
    said = capsys.readouterr().out.strip().splitlines()[-1]
    assert said.startswith(f"wrote {out}: ONNX opset 12, input X float32 (N, 2)")
    model = xpnet.load(model_path)
    X, _ = xpnet.make_moons(100, seed=16)
    _agrees(model, ort.InferenceSession(out, providers=["CPUExecutionProvider"]), X)


@pytest.mark.parametrize("args, says", [
    (["--model", "{d}/missing.npz", "--onnx", "{d}/x.onnx"], "--model '{d}/missing.npz' does not exist"),
    (["--model", "{d}/m.npz", "--onnx", "{d}/nodir/x.onnx"], "directory '{d}/nodir' does not exist"),
    (["--model", "{d}/m.npz", "--onnx", "{d}"], "is a directory"),
    (["--model", "{d}/m.npz", "--onnx", "{d}/m.npz"], "is the same file as --model"),
    (["--model", "{d}/notes.txt", "--onnx", "{d}/x.onnx"], "is not an xpnet model file (.npz): it is a text file"),
])
def test_cli_bad_paths_say_one_line_and_write_nothing(args, says, tmp_path, capsys):
    d = str(tmp_path)
    xpnet.MLP([2, 3, 2]).save(tmp_path / "m.npz")
    (tmp_path / "notes.txt").write_text("not a model\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert run(["export", *[a.format(d=d) for a in args]]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xpnet: error: ") and says.format(d=d) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_a_failed_export_leaves_no_file(tmp_path, monkeypatch):
    model = xpnet.MLP([2, 3, 2])
    target = tmp_path / "m.onnx"
    target.write_bytes(b"the old file")

    class Broken:
        def SerializeToString(self):
            raise MemoryError("out of memory while serializing")

    monkeypatch.setattr("xpnet.export.to_onnx", lambda model, head=None: Broken())
    with pytest.raises(MemoryError):
        xpnet.export_onnx(model, target)
    assert [p.name for p in tmp_path.iterdir()] == ["m.onnx"] and target.read_bytes() == b"the old file"
    unfitted = xpnet.MLP([2, 3, 2], scale="standard")
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"scale \(given as a kind\) is not fitted yet"):
        xpnet.export_onnx(unfitted, tmp_path / "u.onnx")
    assert not (tmp_path / "u.onnx").exists()


def test_without_onnx_the_error_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(ValueError) as info:
        xpnet.export_onnx(xpnet.MLP([2, 3, 2]), tmp_path / "m.onnx")
    assert str(info.value) == ONNX_HINT and "\n" not in ONNX_HINT and "xpnet[" not in ONNX_HINT
    assert 'pip install "onnx>=1.16"' in ONNX_HINT and 'pip install ".[onnx]"' in ONNX_HINT
    xpnet.MLP([2, 3, 2]).save(tmp_path / "m.npz")
    assert run(["export", "--model", str(tmp_path / "m.npz"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    assert capsys.readouterr().err == f"xpnet: error: {ONNX_HINT}\n"
    assert not (tmp_path / "m.onnx").exists()
