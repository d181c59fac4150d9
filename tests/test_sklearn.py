"""xpnet.sklearn: scikit-learn's MLPClassifier and MLPRegressor on xpnet's engine.

Checked against scikit-learn itself: its check_estimator suite, and its own MLPs fitted
side by side in float64 (same weights, losses and stopping, to rounding). Gradients of
every loss and penalty scikit-learn adds are checked against central differences in
float64, and the update rules against scikit-learn's optimizer classes, on every backend.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

import xpnet

sklearn = pytest.importorskip("sklearn")
pytest.importorskip("pandas")  # check_estimator checks feature names with it

from sklearn import neural_network as sk  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

from xpnet.sklearn import AdamRule, MLPClassifier, MLPRegressor, SGDRule, expected_failed_checks  # noqa: E402

# Fits that stop at max_iter warn, as scikit-learn's do; the tests below use few epochs on purpose.
quiet = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RNG = np.random.RandomState(0)
X = RNG.randn(120, 5)
Y3 = (X[:, 0] + X[:, 1] > 0).astype(int) + (X[:, 2] > 0.5)  # 3 classes
YB = (X[:, 0] > 0).astype(int)
YML = np.c_[X[:, 0] > 0, X[:, 1] > 0, X[:, 2] > 0].astype(int)  # multi-label indicator
YR = X @ RNG.randn(5) + 0.1 * RNG.randn(120)
YR2 = np.c_[YR, X[:, 0] ** 2]
YPOIS = RNG.poisson(np.exp(0.3 * X[:, 0])).astype(float)
SW = RNG.randint(0, 4, 120).astype(float)


def _max_diff(a: sk.MLPClassifier, b) -> float:
    return max(float(np.max(np.abs(p - q))) for p, q in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_))


# ------------------------------------------------------------------ packaging
def test_importing_xpnet_does_not_import_sklearn():
    code = ("import sys, xpnet; xpnet.MLP; xpnet.fit; xpnet.load_mnist; import xpnet.train, xpnet.cli; "
            "assert 'sklearn' not in sys.modules, sorted(m for m in sys.modules if 'sklearn' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------ check_estimator
@quiet  # check_estimator fits with max_iter=100, as scikit-learn configures its own MLPs
@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_check_estimator_passes(Estimator):
    est = Estimator(max_iter=100)
    xfail = expected_failed_checks(est)
    assert len(xfail) <= 3 and all(reason for reason in xfail.values())
    results = check_estimator(est, on_fail=None, on_skip=None, expected_failed_checks=xfail)
    by_status = {}
    for r in results:
        by_status.setdefault(r["status"], []).append(r["check_name"])
    assert not by_status.get("failed"), [(r["check_name"], r["exception"]) for r in results if r["status"] == "failed"]
    assert sorted(set(by_status.get("xfail", []))) == sorted(xfail)
    assert len(by_status["passed"]) >= 55
    # what is skipped is skipped for scikit-learn's MLPs too: array-API input (needs SCIPY_ARRAY_API)
    # and, for classifiers, the decision_function format (neither estimator has one)
    assert set(by_status.get("skipped", [])) <= {"check_array_api_input",
                                                  "check_classifiers_multilabel_output_format_decision_function"}


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
def test_the_expected_failures_are_float32_only(Estimator):
    from sklearn.utils.estimator_checks import check_sample_weight_equivalence_on_dense_data as check

    assert expected_failed_checks(Estimator(dtype="float64")) == {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(Estimator.__name__, Estimator(max_iter=100, dtype="float64"))  # passes in float64


# -------------------------------------------- side by side with scikit-learn, float64
CASES = {
    "adam-strings": ("C", np.array(["a", "b", "c"])[Y3], dict(), None),
    "sgd-invscaling": ("C", Y3, dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1), None),
    "sgd-adaptive-classic-momentum": ("C", Y3, dict(solver="sgd", learning_rate="adaptive", nesterovs_momentum=False,
                                                   batch_size=32, tol=1e-2, n_iter_no_change=2), None),
    "binary-early-stopping": ("C", YB, dict(early_stopping=True, batch_size=40), None),
    "multiclass-early-stopping": ("C", Y3, dict(early_stopping=True, batch_size=40), None),
    "multilabel-logistic": ("C", YML, dict(activation="logistic", batch_size=50), None),
    "weighted-alpha": ("C", Y3, dict(alpha=0.1, batch_size=50), SW),
    "lbfgs": ("C", Y3, dict(solver="lbfgs", max_iter=40), None),
    "lbfgs-weighted-binary": ("C", YB, dict(solver="lbfgs", max_iter=40), SW),
    "regression-tanh": ("R", YR, dict(activation="tanh", batch_size=64), None),
    "two-targets-sgd": ("R", YR2, dict(solver="sgd", learning_rate_init=0.01, batch_size=64), None),
    "weighted-early-stopping": ("R", YR, dict(early_stopping=True, batch_size=40), SW),
    "poisson": ("R", YPOIS, dict(loss="poisson", batch_size=64), None),
    "poisson-weighted": ("R", YPOIS, dict(loss="poisson", batch_size=64), SW),
    "lbfgs-regression": ("R", YR, dict(solver="lbfgs", max_iter=40), None),
}


def _pair(kind: str, params: dict, device="cpu"):
    params = {"hidden_layer_sizes": (7, 4), "random_state": 1, "max_iter": 25, **params}
    ours = MLPClassifier if kind == "C" else MLPRegressor
    theirs = sk.MLPClassifier if kind == "C" else sk.MLPRegressor
    return theirs(**params), ours(**params, dtype="float64", device=device)


def _assert_same_fit(a, b, X_test):
    assert b.n_iter_ == a.n_iter_ and b.t_ == a.t_
    assert _max_diff(a, b) < 1e-9
    assert b.loss_ == pytest.approx(a.loss_, rel=1e-9, abs=1e-12)
    for name in ("loss_curve_", "validation_scores_"):
        if getattr(a, name, None) is not None:
            np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-9, atol=1e-12)
    for name in ("best_loss_", "best_validation_score_"):
        if getattr(a, name, None) is not None:
            assert getattr(b, name) == pytest.approx(getattr(a, name), rel=1e-9, abs=1e-12)
    assert b.out_activation_ == a.out_activation_ and b.n_layers_ == a.n_layers_ and b.n_outputs_ == a.n_outputs_
    if hasattr(a, "classes_"):
        np.testing.assert_array_equal(b.classes_, a.classes_)
        np.testing.assert_array_equal(b.predict(X_test), a.predict(X_test))
        np.testing.assert_allclose(b.predict_proba(X_test), a.predict_proba(X_test), rtol=1e-8, atol=1e-12)
    else:
        np.testing.assert_allclose(b.predict(X_test), a.predict(X_test), rtol=1e-8, atol=1e-10)


@quiet
@pytest.mark.parametrize("case", sorted(CASES))
def test_float64_fit_follows_scikit_learn_step_for_step(case):
    kind, y, params, sw = CASES[case]
    a, b = _pair(kind, params)
    a.fit(X, y, sample_weight=sw)
    b.fit(X, y, sample_weight=sw)
    _assert_same_fit(a, b, X[:30] + 0.1)


@quiet
@pytest.mark.parametrize("case", ["sgd-invscaling", "poisson-weighted", "multilabel-logistic"])
def test_every_backend_follows_scikit_learn(backend, case):
    kind, y, params, sw = CASES[case]
    a, b = _pair(kind, params, device=backend)
    a.fit(X, y, sample_weight=sw)
    b.fit(X, y, sample_weight=sw)
    _assert_same_fit(a, b, X[:30] + 0.1)


@quiet
@pytest.mark.parametrize("kind,y", [("C", Y3), ("R", YR)])
def test_warm_start_and_partial_fit_follow_scikit_learn(kind, y):
    a, b = _pair(kind, dict(solver="sgd", learning_rate="invscaling", learning_rate_init=0.05, warm_start=True,
                            max_iter=5))
    for est in (a, b):
        est.fit(X, y)
        est.fit(X[:80], y[:80])  # warm start: the same network, a new optimizer, t_ counting on
    _assert_same_fit(a, b, X)
    a, b = _pair(kind, dict(learning_rate_init=0.01))
    extra = {"classes": np.unique(y)} if kind == "C" else {}
    for est in (a, b):
        for start in range(0, 120, 40):  # the optimizer state carries over between calls
            est.partial_fit(X[start:start + 40], y[start:start + 40], **extra)
    _assert_same_fit(a, b, X)


# ----------------------------------------------------------- gradients, float64
def _fitted(kind: str, y, backend, **params):
    est = (MLPClassifier if kind == "C" else MLPRegressor)(hidden_layer_sizes=(4,), max_iter=1, random_state=0,
                                                            dtype="float64", device=backend, **params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(X[:12, :3], y[:12])


def _finite_differences(est, X, y, sw=None, eps=1e-6) -> np.ndarray:
    flat = est.mlp_.flat
    host = xpnet.to_numpy(flat).copy()
    out = np.zeros_like(host)
    for i in range(host.size):
        for sign in (1, -1):
            trial = host.copy()
            trial[i] += sign * eps
            flat[...] = est.mlp_.backend.asarray(trial)
            out[i] += sign * est.loss_and_gradient(X, y, sw)[0] / (2 * eps)
    flat[...] = est.mlp_.backend.asarray(host)
    return out


HEADS = {  # out_activation_ -> (estimator, targets, parameters)
    "softmax": ("C", Y3, {}),
    "logistic-binary": ("C", YB, {}),
    "logistic-multilabel": ("C", YML, {}),
    "identity": ("R", YR, {}),
    "exp-poisson": ("R", YPOIS, {"loss": "poisson"}),
}


def _check_gradient(backend, head, alpha, weighted):
    kind, y, params = HEADS[head]
    est = _fitted(kind, y, backend, alpha=alpha, activation="tanh", **params)
    Xb, yb, sw = X[20:30, :3], y[20:30], (SW[20:30] + 0.5 if weighted else None)
    loss, grad = est.loss_and_gradient(Xb, yb, sw)
    numeric = _finite_differences(est, Xb, yb, sw)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)
    # the stochastic solvers' own path (unweighted: the network's loss, from the logits) agrees
    fast_loss, fast_grad = est.loss_and_gradient(Xb, yb, sw, exact=False)
    assert fast_loss == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(fast_grad, grad, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("alpha", [0.0, 0.3])
@pytest.mark.parametrize("head", sorted(HEADS))
def test_loss_gradient_matches_finite_differences(head, alpha, weighted):
    _check_gradient(xpnet.get_backend(device="cpu"), head, alpha, weighted)


@pytest.mark.parametrize("head", sorted(HEADS))
def test_loss_gradient_matches_finite_differences_on_every_backend(backend, head):
    _check_gradient(backend, head, alpha=0.3, weighted=True)  # every term at once


def test_squared_error_steps_along_the_sum_over_outputs_as_scikit_learn_does(backend):
    # scikit-learn reports the squared error averaged over the outputs but steps along the
    # gradient of its sum over them: with 2 targets the gradient is that of 2 * loss_
    est = _fitted("R", YR2, backend, alpha=0.0)
    loss, grad = est.loss_and_gradient(X[20:30, :3], YR2[20:30])
    numeric = _finite_differences(est, X[20:30, :3], YR2[20:30])
    np.testing.assert_allclose(grad, 2 * numeric, rtol=1e-6, atol=1e-8)


def test_row_weights_weight_each_rows_share_of_the_gradient(backend):
    """MLP.backprop(row_weights=w): the gradient is sum_i w_i grad_i / m; the loss stays unweighted."""
    model = xpnet.MLP([3, 5, 2], activation="tanh", dtype="float64", backend=backend)
    Xd, Yd, _ = model.device_data(X[:6, :3], YB[:6])
    w = np.array([0.0, 1.0, 2.5, 0.5, 3.0, 1.0])
    weighted = model.backprop(Xd, Yd, row_weights=backend.asarray(w))
    rows = [xpnet.to_numpy(model.backprop(Xd[i:i + 1, :], Yd[i:i + 1, :]).grad) for i in range(6)]
    np.testing.assert_allclose(xpnet.to_numpy(weighted.grad), sum(wi * r for wi, r in zip(w, rows)) / 6,
                               rtol=1e-12, atol=1e-15)
    plain = model.backprop(Xd, Yd)
    ones = model.backprop(Xd, Yd, row_weights=backend.asarray(np.ones(6)))
    np.testing.assert_array_equal(xpnet.to_numpy(ones.grad), xpnet.to_numpy(plain.grad))
    assert float(weighted.loss) == float(plain.loss)


# ------------------------------------------------------------ the update rules
def _rule_pairs():
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer, SGDOptimizer

    return {
        "sgd-nesterov": (lambda p: SGDOptimizer(p, 0.1, "constant", 0.9, True), lambda: SGDRule(0.1, "constant", 0.9)),
        "sgd-classic-invscaling": (lambda p: SGDOptimizer(p, 0.1, "invscaling", 0.5, False, 0.25),
                                   lambda: SGDRule(0.1, "invscaling", 0.5, False, 0.25)),
        "sgd-adaptive": (lambda p: SGDOptimizer(p, 0.1, "adaptive", 0.0, False),
                         lambda: SGDRule(0.1, "adaptive", 0.0, False)),
        "adam": (lambda p: AdamOptimizer(p, 0.01, 0.8, 0.99, 1e-3), lambda: AdamRule(0.01, 0.8, 0.99, 1e-3)),
    }


@pytest.mark.parametrize("rule", ["sgd-nesterov", "sgd-classic-invscaling", "sgd-adaptive", "adam"])
def test_update_rules_match_scikit_learns_optimizers(backend, rule):
    make_theirs, make_ours = _rule_pairs()[rule]
    rng = np.random.default_rng(3)
    shapes = [(4, 3), (3, 2), (3,), (2,)]  # W1, W2, b1, b2: the flat layout's order
    params = [rng.normal(size=s) for s in shapes]
    theirs, ours = make_theirs(params), make_ours()
    flat = backend.asarray(np.concatenate([p.ravel() for p in params]))
    for epoch in range(3):
        for _ in range(4):
            grads = [rng.normal(size=s) for s in shapes]
            theirs.update_params(params, grads)
            ours.update(backend, flat, backend.asarray(np.concatenate([g.ravel() for g in grads])))
        theirs.iteration_ends(100 * (epoch + 1))
        ours.iteration_ends(100 * (epoch + 1))
        assert ours.trigger_stopping("", False) == theirs.trigger_stopping("", False)
        assert ours.learning_rate == pytest.approx(theirs.learning_rate, rel=1e-15)
    np.testing.assert_allclose(xpnet.to_numpy(flat), np.concatenate([p.ravel() for p in params]), rtol=1e-13,
                               atol=1e-15)


# --------------------------------------------------------------------- labels
@quiet
@pytest.mark.parametrize("labels", [np.array(["no", "yes", "maybe"]), np.array([3.0, -1.0, 7.0]),
                                    np.array([-5, 0, 12])], ids=["str", "float", "int"])
def test_any_label_type_comes_back_through_classes_(labels):
    y = labels[Y3]
    clf = MLPClassifier((8,), max_iter=30, random_state=0, learning_rate_init=0.05).fit(X, y)
    np.testing.assert_array_equal(clf.classes_, np.unique(y))
    pred = clf.predict(X)
    assert pred.dtype == clf.classes_.dtype and set(pred) <= set(y)
    assert clf.score(X, y) > 0.8
    np.testing.assert_array_equal(clf.mlp_.classes, np.asarray(clf.classes_.tolist()))  # the network's class list


@quiet
def test_binary_multilabel_and_single_class():
    clf = MLPClassifier((8,), max_iter=30, random_state=0, learning_rate_init=0.05)
    assert clf.fit(X, np.where(YB, "pos", "neg")).out_activation_ == "logistic"
    assert clf.n_outputs_ == 1 and clf.predict_proba(X).shape == (120, 2)
    clf.fit(X, YML)
    assert clf.n_outputs_ == 3 and clf.predict(X).shape == (120, 3) and set(np.unique(clf.predict(X))) <= {0, 1}
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    clf.fit(X, np.full(120, "only"))
    assert list(clf.predict(X[:3])) == ["only"] * 3


def test_partial_fit_rules():
    clf = MLPClassifier((4,))
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, Y3)
    clf.partial_fit(X[:50], Y3[:50], classes=[0, 1, 2])
    assert clf.n_iter_ == 1 and clf.t_ == 50 and len(clf.loss_curve_) == 1
    clf.partial_fit(X[50:], Y3[50:])
    assert clf.t_ == 120 and len(clf.loss_curve_) == 2
    with pytest.raises(ValueError, match="`y` has classes not in `self.classes_`"):
        clf.partial_fit(X, Y3 + 5)
    with pytest.raises(ValueError, match="is not the same as on last call"):
        clf.partial_fit(X, Y3, classes=[0, 1])
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping=True"):
        MLPRegressor(early_stopping=True).partial_fit(X, YR)
    assert not hasattr(MLPRegressor(solver="lbfgs"), "partial_fit")  # stochastic solvers only, as scikit-learn


def test_parameters_are_checked_as_scikit_learn_checks_them():
    from sklearn.utils._param_validation import InvalidParameterError

    for bad in [dict(solver="newton"), dict(alpha=-1.0), dict(momentum=1.5), dict(device=3), dict(dtype="float16"),
                dict(threads=0), dict(batch_size=0)]:
        with pytest.raises(InvalidParameterError):
            MLPClassifier(**bad).fit(X, Y3)
    with pytest.raises(ValueError, match="hidden_layer_sizes must be > 0"):
        MLPClassifier(hidden_layer_sizes=(4, 0)).fit(X, Y3)
    with pytest.raises(ValueError, match="device='gpu' is not a device"):
        MLPClassifier(device="gpu").fit(X, Y3)
    with pytest.raises(ValueError, match="Unknown label type"):
        MLPClassifier().fit(X, YR)


# --------------------------------------------- where scikit-learn users put estimators
@quiet
def test_pipeline_grid_search_and_cross_validation():
    pipe = make_pipeline(StandardScaler(), MLPClassifier((8,), max_iter=20, random_state=0))
    grid = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1e-1], "mlpclassifier__learning_rate_init": [0.01]},
                        cv=3).fit(X, Y3)
    assert grid.best_score_ > 0.6
    assert grid.best_estimator_[-1].get_params()["learning_rate_init"] == 0.01
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=30, learning_rate_init=0.01, random_state=0)
    scores = cross_val_score(reg, X, YR, cv=3)
    assert scores.mean() > 0.5


def test_clone_keeps_parameters_not_state(host_backend):
    est = MLPClassifier((5,), alpha=0.5, device=host_backend, threads=1, random_state=3)
    twin = clone(est)
    assert twin.get_params() == est.get_params() and twin is not est
    assert twin.set_params(alpha=0.1).alpha == 0.1 and est.alpha == 0.5


@quiet
def test_pickle_keeps_network_and_optimizer_state():
    clf = MLPClassifier((8,), max_iter=5, random_state=0).fit(X, Y3)
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    for est in (clf, copy):  # Adam's moments and step count came along: the next epoch is the same
        est.partial_fit(X, Y3)
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    assert isinstance(copy.coefs_[0], np.ndarray) and copy.mlp_ is not clf.mlp_


@quiet
def test_save_and_load_without_pickle(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(5)])
    for est, y in [(MLPClassifier((6,), max_iter=10, random_state=0), np.array(["x", "y", "z"])[Y3]),
                   (MLPClassifier((6,), max_iter=10, random_state=0), YML),
                   (MLPRegressor(loss="poisson", max_iter=10, random_state=0), YPOIS)]:
        est.fit(frame, y)
        path = tmp_path / f"{type(est).__name__}.npz"
        est.save(path)
        back = type(est).load(path)
        np.testing.assert_array_equal(back.predict(frame), est.predict(frame))
        np.testing.assert_array_equal(back.feature_names_in_, est.feature_names_in_)
        assert back.get_params() == est.get_params() and back.out_activation_ == est.out_activation_
    with pytest.raises(ValueError, match="holds an 'MLPRegressor', not an MLPClassifier"):
        MLPClassifier.load(path)
    plain = tmp_path / "plain.npz"
    xpnet.MLP([5, 3]).save(plain)
    with pytest.raises(ValueError, match="not one saved by xpnet.sklearn"):
        MLPClassifier.load(plain)


# ------------------------------------------------------------ data on a device
@quiet
def test_device_input_stays_on_the_device(backend):
    xp = backend.xp
    Xd, yd = backend.asarray(X), backend.asarray(Y3)
    clf = MLPClassifier((6,), max_iter=5, random_state=0, device=backend, dtype="float64").fit(Xd, yd)
    pred, proba = clf.predict(Xd), clf.predict_proba(Xd)
    if not backend.is_numpy:
        assert not isinstance(pred, np.ndarray) and not isinstance(proba, np.ndarray)
    assert xp.isdtype(proba.dtype, "real floating") and tuple(proba.shape) == (120, 3)
    host = MLPClassifier((6,), max_iter=5, random_state=0, dtype="float64").fit(X, Y3)
    np.testing.assert_allclose(xpnet.to_numpy(proba), host.predict_proba(X), rtol=1e-12, atol=1e-14)
    assert clf.score(Xd, yd) == host.score(X, Y3)
    reg = MLPRegressor(hidden_layer_sizes=(6,), max_iter=5, random_state=0, device=backend)
    reg.fit(Xd, backend.asarray(YR))
    assert tuple(reg.predict(Xd).shape) == (120,)
    with pytest.raises(ValueError, match="X has 4 features, but MLPRegressor is expecting 5 features"):
        reg.predict(Xd[:, :4])


def test_float32_by_default_and_outputs_in_the_inputs_float_type():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg = MLPRegressor(hidden_layer_sizes=(6,), max_iter=3, random_state=0).fit(X, YR)
    assert reg.mlp_.dtype == "float32" and reg.coefs_[0].dtype == np.float32
    assert reg.predict(X).dtype == np.float64 and reg.predict(X.astype(np.float32)).dtype == np.float32


@quiet
def test_threads_limit_blas_during_fit():
    from threadpoolctl import threadpool_info

    seen = []  # the BLAS thread counts while the estimator fits
    est = MLPRegressor(hidden_layer_sizes=(4,), max_iter=2, threads=1)
    real = est._fit_body

    def spy(*args):
        seen.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        return real(*args)

    est._fit_body = spy
    est.fit(X, YR)
    assert seen and all(n == 1 for n in seen[0])
