"""Layers where a user meets a model (issue 22): the CLI's --dropout, --norm, --residual and the
new --activation names, and the scikit-learn estimators' dropout, norm and residual parameters.
The layers' arithmetic (forward, backward, gradients) is tests/test_layers.py's."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pytest
from cli_helpers import last_json, run

SMALL = ["--epochs", "1", "--layers", "784,16,16,10"]


@pytest.mark.parametrize("flags,expected", [
    (["--dropout", "0.2"], dict(dropout=0.2, norm=None, residual=False)),
    (["--dropout", "0.2,0.1", "--norm", "batch", "--residual", "--activation", "gelu"],
     dict(dropout=[0.2, 0.1], norm="batch", residual=True, activation="gelu")),
    (["--norm", "layer", "--activation", "silu"], dict(norm="layer", activation="silu")),
])
def test_train_with_layers_json(device, flags, expected, capsys):
    assert run(["train", "--device", device, *SMALL, *flags, "--json", "--quiet"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["layers"] == [784, 16, 16, 10] and 0 < result["test_accuracy"] <= 1
    assert {k: result[k] for k in expected} == expected


def test_header_line_shows_the_layers(device, capsys):
    assert run(["train", "--device", device, *SMALL, "--dropout", "0.1", "--norm", "batch", "--residual"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "layers [784, 16, 16, 10] (relu, dropout 0.1, batch norm, residual)" in first
    assert run(["train", "--device", device, *SMALL]) == 0
    assert "layers [784, 16, 16, 10]," in capsys.readouterr().out.splitlines()[0]  # nothing added by default


def test_saved_model_keeps_its_layers(device, tmp_path, capsys):
    path = str(tmp_path / "m.npz")
    assert run(["train", "--device", device, *SMALL, "--dropout", "0.3", "--norm", "batch", "--activation", "elu",
                "--save", path, "--quiet"]) == 0
    capsys.readouterr()
    assert run(["evaluate", "--model", path, "--device", device, "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert (result["activation"], result["dropout"], result["norm"], result["residual"]) == ("elu", 0.3, "batch", False)
    # the file's architecture: other layer flags with --init-from are refused
    assert run(["train", "--device", device, "--init-from", path, "--epochs", "1", "--norm", "layer"]) == 2
    assert "--norm layer differs from the norm batch" in capsys.readouterr().err


def test_sweep_and_presets_take_the_flags(device, capsys):
    assert run(["sweep", "--device", device, "--dataset", "moons", "--hidden", "4,8", "--epochs", "1",
                "--dropout", "0.1", "--norm", "layer", "--activation", "softplus", "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert (result["dropout"], result["norm"], result["activation"]) == (0.1, "layer", "softplus")
    assert len(result["results"]) == 2
    assert run(["train", "--device", device, "--preset", "shallow3", "--epochs", "1", "--dropout", "0.1",
                "--norm", "batch", "--json", "--quiet"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["layers"] == [3, 4, 3, 1] and (result["dropout"], result["norm"]) == (0.1, "batch")


BAD = [
    (["train", "--dropout", "1"], "argument --dropout: '1' must be in [0, 1)"),
    (["train", "--dropout", "-0.1"], "argument --dropout: '-0.1' must be in [0, 1)"),
    (["train", "--dropout", "0.2,x"], "argument --dropout: '0.2,x': 'x' is not a number"),
    (["train", "--norm", "group"], "argument --norm: invalid choice: 'group'"),
    (["train", "--layers", "784,32,16,10", "--residual"], "--residual with --layers 784,32,16,10: no hidden layer keeps"),
    (["train", "--residual"], "--residual with the layers [784, 128, 64, 10]: no hidden layer keeps its width"),
    (["train", "--preset", "planar", "--residual"], "--residual with the layers [2, 4, 1] of --preset planar"),
    (["train", "--layers", "784,32,10", "--dropout", "0.1,0.2"], "--dropout 0.1,0.2 has 2 rates for 1 hidden layers"),
    (["train", "--dropout", "0.1,0.2,0.3"], "--dropout 0.1,0.2,0.3 has 3 rates for 2 hidden layers"),
    (["train", "--layers", "784,10", "--dropout", "0.3"], "--dropout 0.3 with --layers 784,10: there is no hidden layer"),
    (["train", "--norm", "batch", "--batch-size", "1"], "--norm batch needs at least 2 rows in every batch"),
    (["train", "--norm", "batch", "--batch-size", "7999"], "--batch-size 7999 leaves a batch of 1 row of the 8000"),
    (["sweep", "--dropout", "0.1,0.2"], "--dropout 0.1,0.2 has 2 rates for 1 hidden layers"),
    (["sweep", "--residual"], "unrecognized arguments: --residual"),
]


@pytest.mark.parametrize("argv,message", BAD)
def test_bad_layer_flags_are_one_line_exit_2_and_write_nothing(host_device, tmp_path, argv, message, capsys):
    save = tmp_path / "m.npz"
    extra = ["--save", str(save), "--checkpoint", str(tmp_path / "c.npz")] if argv[0] == "train" else []
    assert run([*argv, "--device", host_device, "--epochs", "1", *extra]) == 2
    captured = capsys.readouterr()
    assert len(captured.err.strip().splitlines()) == 1, captured.err
    assert message in captured.err and "Traceback" not in captured.err
    assert "epoch" not in captured.out  # refused before training
    assert list(tmp_path.iterdir()) == []


def test_help_lists_the_flags_and_activations(capsys):
    assert run(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for word in ("--dropout", "--norm", "--residual", "gelu", "silu", "elu", "softplus"):
        assert word in out, word


# ---------------------------------------------------------------------- estimators
sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402

from xpnet.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

RNG = np.random.RandomState(0)
X = RNG.randn(96, 5)
Y = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)  # 3 classes
YR = X @ RNG.randn(5)


def _fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # few epochs: ConvergenceWarning
        return est.fit(*args, **kwargs)


LAYERED = [
    dict(dropout=0.3),
    dict(norm="batch"),
    dict(norm="layer", activation="gelu"),
    dict(hidden_layer_sizes=(8, 8), residual=True, activation="silu"),
    dict(hidden_layer_sizes=(8, 8), dropout=[0.2, 0.4], norm="batch", residual=True, activation="elu"),
    dict(norm="batch", early_stopping=True, activation="softplus"),
]


@pytest.mark.parametrize("params", LAYERED)
def test_estimators_fit_and_predict_with_layers(params):
    params = {"hidden_layer_sizes": (16,), **params}
    clf = _fit(MLPClassifier(**params, max_iter=15, random_state=0, batch_size=32), X, Y)
    mlp = clf.mlp_
    assert (mlp.norm, mlp.residual) == (params.get("norm"), params.get("residual", False))
    assert [b.dropout for b in mlp.blocks] == (list(params["dropout"]) if isinstance(params.get("dropout"), list)
                                               else [params.get("dropout", 0.0)] * len(mlp.blocks))
    first, second = clf.predict_proba(X), clf.predict_proba(X)
    assert np.array_equal(first, second)  # dropout off and batch norm's running statistics in predict
    assert np.array_equal(clf.predict(X), np.asarray(mlp.predict(X)))
    assert np.allclose(first, np.asarray(mlp.predict_proba(X)))
    # coefs_ and intercepts_: the linear layers, also with a scale and shift per normed layer
    sizes = [5, *params["hidden_layer_sizes"], 3]
    assert [c.shape for c in clf.coefs_] == list(zip(sizes[:-1], sizes[1:]))
    assert [b.shape for b in clf.intercepts_] == [(n,) for n in sizes[1:]]
    assert np.array_equal(clf.coefs_[-1], np.asarray(mlp.params[mlp.layout.index("W", mlp.n_layers - 1)]))
    reg = _fit(MLPRegressor(**params, max_iter=15, random_state=0, batch_size=32), X, YR)
    assert np.array_equal(reg.predict(X), reg.predict(X))


def test_estimator_params_clone_and_pickle():
    clf = MLPClassifier(hidden_layer_sizes=(8, 8), dropout=[0.1, 0.2], norm="batch", residual=True, activation="gelu")
    params = clf.get_params()
    assert (params["dropout"], params["norm"], params["residual"], params["activation"]) == ([0.1, 0.2], "batch", True,
                                                                                             "gelu")
    copy = clone(clf)
    assert copy.get_params()["dropout"] == [0.1, 0.2] and copy.get_params()["norm"] == "batch"
    copy.set_params(dropout=0.0, norm=None, residual=False)
    assert (copy.dropout, copy.norm, copy.residual) == (0.0, None, False)
    _fit(clf.set_params(max_iter=5, random_state=0), X, Y)
    again = pickle.loads(pickle.dumps(clf))  # batch norm's running statistics travel with the network
    assert np.array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_estimator_defaults_train_as_before():
    """The new parameters' defaults build the plain network (scikit-learn parity is test_sklearn.py's)."""
    clf = _fit(MLPClassifier(hidden_layer_sizes=(8,), max_iter=3, random_state=0), X, Y)
    assert clf.mlp_.layer_config() == {} and len(clf.mlp_.params) == 4


def test_dropout_is_drawn_from_random_state():
    a = _fit(MLPClassifier(hidden_layer_sizes=(16,), dropout=0.5, max_iter=5, random_state=1), X, Y)
    b = _fit(MLPClassifier(hidden_layer_sizes=(16,), dropout=0.5, max_iter=5, random_state=1), X, Y)
    c = _fit(MLPClassifier(hidden_layer_sizes=(16,), dropout=0.0, max_iter=5, random_state=1), X, Y)
    assert np.array_equal(a.coefs_[0], b.coefs_[0]) and not np.array_equal(a.coefs_[0], c.coefs_[0])


@pytest.mark.parametrize("est,message", [
    (MLPClassifier(hidden_layer_sizes=(8,), dropout=[0.1, 0.2]), "dropout=[0.1, 0.2] has 2 rates for 1 hidden layers"),
    (MLPClassifier(hidden_layer_sizes=(8, 4), residual=True), "residual=True with sizes=[5, 8, 4, 3]"),
    (MLPClassifier(hidden_layer_sizes=(8,), dropout=0.2, solver="lbfgs"), "solver='lbfgs' with dropout=0.2"),
    (MLPClassifier(hidden_layer_sizes=(8,), norm="batch", solver="lbfgs"), "solver='lbfgs' with norm='batch'"),
    (MLPRegressor(hidden_layer_sizes=(8,), norm="batch", loss="poisson"), "loss='poisson' with norm='batch'"),
    (MLPClassifier(hidden_layer_sizes=(8,), norm="batch", batch_size=19), "norm='batch' needs at least 2 samples"),
])
def test_estimator_refusals(est, message):
    y = np.abs(YR) if isinstance(est, MLPRegressor) else Y
    with pytest.raises(ValueError) as info:
        _fit(est.set_params(max_iter=2), X, y)
    assert message in str(info.value)


def test_estimator_rejects_bad_layer_params():
    from sklearn.utils._param_validation import InvalidParameterError

    for params in (dict(norm="group"), dict(dropout=1.0), dict(dropout=-0.1), dict(activation="swish")):
        with pytest.raises(InvalidParameterError):
            MLPClassifier(**params).fit(X, Y)
