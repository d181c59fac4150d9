"""Row weights: fit's sample_weight and class_weight, the weighted loss, balanced accuracy, --class-weight,
and MLPClassifier(class_weight=...).

The weighted loss of a batch is ``sum_i w_i loss_i`` divided by the batch's row count (not by the
weights' sum), in the gradient and in ``history.train_loss`` alike.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import last_json, run

import xpnet
from xpnet.train import _row_weights

MPIEXEC = Path(sys.executable).parent / "mpiexec"


def _imbalanced(seed: int = 0, n: int = 2000):
    """95:5 binary rows: the minority's first two features shifted by 1.5 (they overlap the majority)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.05).astype(np.int64)
    X = rng.normal(size=(n, 4))
    X[y == 1, :2] += 1.5
    return X, y


def _small(backend, n=12):
    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(n, 3)), np.arange(n) % 3
    model = xpnet.MLP([3, 4, 3], activation="tanh", dtype="float64", seed=2, backend=backend)
    return model, X, y


# ------------------------------------------------------------------ the weighted gradient
def test_weighted_gradient_is_the_weighted_loss_finite_difference(backend):
    model, X, y = _small(backend)
    Xd, Yd, _ = model.device_data(X, y)
    w = backend.asarray(np.linspace(0.0, 3.0, len(X)))
    m = len(X)

    def loss() -> float:  # the weighted loss, over the rows
        return float(model.backprop(Xd, Yd, row_weights=w, weighted_loss=True).loss) / m

    out = model.backprop(Xd, Yd, row_weights=w, weighted_loss=True)
    grad = xpnet.to_numpy(out.grad).copy()
    flat = xpnet.to_numpy(model.flat).copy()
    numeric = np.empty_like(flat)
    for i in range(flat.size):  # central differences, in float64
        ends = []
        for step in (1e-6, -1e-6):
            shifted = flat.copy()
            shifted[i] += step
            model.flat[...] = backend.asarray(shifted)
            ends.append(loss())
        numeric[i] = (ends[0] - ends[1]) / 2e-6
    model.flat[...] = backend.asarray(flat)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    # the loss is the weighted sum of the rows' own losses
    w_host, rows = xpnet.to_numpy(w), []
    for i in range(m):
        rows.append(float(model.backprop(Xd[i:i + 1, :], Yd[i:i + 1, :]).loss))
    assert float(out.loss) == pytest.approx(float(np.dot(rows, w_host)), rel=1e-12)


def test_integer_weights_equal_repeated_rows(backend):
    model, X, y = _small(backend)
    w = np.array([1, 2, 0, 3, 1, 1, 2, 1, 0, 1, 4, 1])
    Xd, Yd, _ = model.device_data(X, y)
    weighted = model.backprop(Xd, Yd, row_weights=backend.asarray(w.astype(np.float64)), weighted_loss=True,
                              batch_size=int(w.sum()))
    Xr, Yr, _ = model.device_data(np.repeat(X, w, axis=0), np.repeat(y, w))
    repeated = model.backprop(Xr, Yr)
    np.testing.assert_allclose(xpnet.to_numpy(weighted.grad), xpnet.to_numpy(repeated.grad), rtol=1e-12, atol=1e-15)
    assert float(weighted.loss) == pytest.approx(float(repeated.loss), rel=1e-12)


def test_a_weighted_fit_is_a_fit_on_repeated_rows(backend):
    """Full batch, plain SGD: weights w over n rows divide by n, the repeated rows by sum(w), so the
    learning rates differ by that ratio; the weights and the (weighted) losses then agree."""
    model, X, y = _small(backend)
    w = np.array([1, 2, 0, 3, 1, 1, 2, 1, 0, 1, 4, 1])
    n, total = len(X), int(w.sum())
    twin = xpnet.MLP([3, 4, 3], activation="tanh", dtype="float64", seed=2, backend=backend)
    h1 = xpnet.fit(model, X, y, xpnet.SGD(0.5 * n / total), epochs=5, batch_size=None, verbose=False, sample_weight=w)
    h2 = xpnet.fit(twin, np.repeat(X, w, axis=0), np.repeat(y, w), xpnet.SGD(0.5), epochs=5, batch_size=None,
                   verbose=False)
    np.testing.assert_allclose(xpnet.to_numpy(model.flat), xpnet.to_numpy(twin.flat), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(np.array(h1.train_loss) * n / total, h2.train_loss, rtol=1e-10)
    assert h1.weighted and not h2.weighted


def test_class_weight_multiplies_sample_weight_and_balanced_is_scikit_learns():
    from sklearn.utils.class_weight import compute_sample_weight

    X, y = _imbalanced(n=300)
    model = xpnet.MLP([4, 8, 2], seed=0)
    model.prepare(X, y)
    _, _, labels = model.device_data(X, y)
    np.testing.assert_allclose(_row_weights(model, labels, 300, None, "balanced"), compute_sample_weight("balanced", y))
    sw = np.linspace(0.5, 2, 300)
    both = _row_weights(model, labels, 300, sw, {1: 10.0})
    np.testing.assert_allclose(both, sw * np.where(y == 1, 10.0, 1.0))
    a, b = (xpnet.MLP([4, 8, 2], seed=0) for _ in range(2))
    ha = xpnet.fit(a, X, y, epochs=2, verbose=False, sample_weight=sw, class_weight={1: 10.0})
    hb = xpnet.fit(b, X, y, epochs=2, verbose=False, sample_weight=both)
    np.testing.assert_array_equal(xpnet.to_numpy(a.flat), xpnet.to_numpy(b.flat))
    assert ha.train_loss == hb.train_loss


def test_text_classes_take_their_labels():
    X, y = _imbalanced(n=200)
    text = np.where(y == 1, "rare", "common")
    model = xpnet.MLP([4, 8, 2], seed=0)
    history = xpnet.fit(model, X, text, epochs=1, verbose=False, class_weight={"rare": 5})
    assert history.weighted
    with pytest.raises(ValueError, match=r"class_weight has label\(s\) \['gone', 1\] that are not among the model's classes"):
        xpnet.fit(xpnet.MLP([4, 8, 2], seed=0), X, text, epochs=1, verbose=False, class_weight={"gone": 1, 1: 2})


@pytest.mark.parametrize("kwargs, message", [
    (dict(sample_weight=-np.ones(50)), "sample_weight holds negative, NaN or infinite values"),
    (dict(sample_weight=np.ones(49)), r"sample_weight has shape \(49,\) .* expected \(50,\)"),
    (dict(sample_weight=np.zeros(50)), "are all 0"),
    (dict(class_weight="even"), "class_weight='even' is not a class weighting"),
    (dict(class_weight={0: -1}), r"class_weight\[0\]=-1 is not a weight"),
    (dict(class_weight={0: float("nan")}), r"class_weight\[0\]=nan is not a weight"),
    (dict(class_weight={7: 1}), r"class_weight has label\(s\) \[7\]"),
])
def test_bad_weights_are_refused_naming_them(kwargs, message):
    X, y = _imbalanced(n=50)
    with pytest.raises(ValueError, match=message):
        xpnet.fit(xpnet.MLP([4, 8, 2], seed=0), X, y, epochs=1, verbose=False, **kwargs)


def test_class_weight_needs_one_class_per_row():
    X, _ = _imbalanced(n=50)
    with pytest.raises(ValueError, match="class_weight='balanced' weights classes, one per row, but this fit has targets"):
        xpnet.fit(xpnet.MLP([4, 8, 1], output="identity"), X, X[:, 0], epochs=1, verbose=False, class_weight="balanced")
    Y = (X[:, :3] > 0).astype(np.int64)
    with pytest.raises(ValueError, match="a multi-label model"):
        xpnet.fit(xpnet.MLP([4, 8, 3], output="sigmoid"), X, Y, epochs=1, verbose=False, class_weight={0: 2})
    # sample weights weight any rows
    assert xpnet.fit(xpnet.MLP([4, 8, 1], output="identity"), X, X[:, 0], epochs=1, verbose=False,
                     sample_weight=np.ones(50)).weighted


# ------------------------------------------------------------------ the target
def _recall_and_balanced(class_weight, seed):
    X, y = _imbalanced(seed=0)
    Xt, yt, Xs, ys = X[:1600], y[:1600], X[1600:], y[1600:]
    model = xpnet.MLP([4, 32, 2], seed=seed)
    xpnet.fit(model, Xt, yt, xpnet.SGD(0.1, momentum=0.9), epochs=20, seed=seed, verbose=False, class_weight=class_weight)
    pred = xpnet.to_numpy(model.predict(Xs))
    return float(np.mean(pred[ys == 1] == 1)), model.evaluate(Xs, ys)["balanced_accuracy"]


def test_balanced_raises_minority_recall_and_balanced_accuracy():
    """95:5, 2,000 rows: the median over 3 seeds of the minority's recall and the balanced accuracy."""
    plain = np.median([_recall_and_balanced(None, s) for s in range(3)], axis=0)
    balanced = np.median([_recall_and_balanced("balanced", s) for s in range(3)], axis=0)
    assert balanced[0] > plain[0] + 0.2, (plain, balanced)
    assert balanced[1] > plain[1] + 0.05, (plain, balanced)


# ------------------------------------------------------------------ balanced accuracy
def test_evaluate_reports_scikit_learns_balanced_accuracy(backend):
    from sklearn.metrics import balanced_accuracy_score

    X, y = _imbalanced(n=300)
    y = y + (X[:, 2] > 1)  # three classes
    model = xpnet.MLP([4, 8, 3], seed=0, backend=backend)
    xpnet.fit(model, X, y, epochs=2, verbose=False)
    pred = xpnet.to_numpy(model.predict(X))
    assert model.evaluate(X, y)["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    sigmoid = xpnet.MLP([4, 8, 1], output="sigmoid", seed=0, backend=backend)
    binary = (y > 0).astype(np.int64)
    xpnet.fit(sigmoid, X, binary, epochs=2, verbose=False)
    pred = xpnet.to_numpy(sigmoid.predict(X))
    assert sigmoid.evaluate(X, binary)["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(binary, pred))
    multi = xpnet.MLP([4, 8, 3], output="sigmoid", multilabel=True, seed=0, backend=backend)
    assert "balanced_accuracy" not in multi.evaluate(X, (X[:, :3] > 0).astype(np.int64))


# ------------------------------------------------------------------ resume and host reads
def test_resume_refuses_other_weights_and_continues_bit_for_bit(tmp_path):
    X, y = _imbalanced(n=300)
    ck = str(tmp_path / "ck.npz")

    def run_(epochs, **kw):
        model = xpnet.MLP([4, 8, 2], seed=0)
        history = xpnet.fit(model, X, y, xpnet.SGD(0.1, momentum=0.9), epochs=epochs, verbose=False, **kw)
        return model, history

    whole, h_whole = run_(4, class_weight="balanced")
    run_(2, class_weight="balanced", checkpoint=ck)
    for other in (dict(), dict(class_weight={1: 3.0}), dict(sample_weight=np.ones(300))):
        with pytest.raises(ValueError, match="was written with row_weights="):
            run_(4, resume=ck, **other)
    resumed, h_resumed = run_(4, class_weight="balanced", resume=ck)
    np.testing.assert_array_equal(xpnet.to_numpy(resumed.flat), xpnet.to_numpy(whole.flat))
    assert h_resumed.train_loss == h_whole.train_loss and h_resumed.weighted


def test_weights_are_read_back_once_an_epoch_not_once_a_step(monkeypatch):
    """The host reads of the fit loop (to_numpy and float of device arrays) do not grow with the steps."""
    import xpnet.train as train

    X, y = _imbalanced(n=400)
    counts = {}
    real = train.to_numpy

    def counting(a):
        counts["n"] = counts.get("n", 0) + 1
        return real(a)

    monkeypatch.setattr(train, "to_numpy", counting)
    reads = []
    for batch in (200, 10):  # 2 and 40 steps an epoch
        counts["n"] = 0
        xpnet.fit(xpnet.MLP([4, 8, 2], seed=0), X, y, epochs=3, batch_size=batch, verbose=False,
                  class_weight="balanced", sample_weight=np.ones(400))
        reads.append(counts["n"])
    assert reads[0] == reads[1] <= 3 * 2 + 2, reads  # the epochs' reads, and those that make the weights


# ------------------------------------------------------------------ the command line
def _csv(tmp_path, text=False):
    X, y = _imbalanced(n=400)
    labels = np.where(y == 1, "rare", "common") if text else y.astype(str)
    path = tmp_path / "imb.csv"
    path.write_text("".join(",".join(f"{v:.5f}" for v in row) + f",{lab}\n" for row, lab in zip(X, labels)))
    return str(path)


def test_cli_class_weight_balanced(tmp_path, capsys):
    data = _csv(tmp_path)
    argv = ["train", "--data", data, "--epochs", "2", "--layers", "4,8,2"]
    assert run([*argv, "--class-weight", "balanced"]) == 0
    captured = capsys.readouterr()
    assert "xpnet: note: --class-weight balanced: each row's loss is weighted by its class" in captured.err
    epochs = [line for line in captured.out.splitlines() if line.startswith("epoch")]
    assert len(epochs) == 2 and all("  weighted loss " in line for line in epochs)
    assert "balanced accuracy" in captured.out.splitlines()[-1]
    assert run([*argv, "--class-weight", "0=1,1=19", "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["class_weight"] == "0=1,1=19" and result["train_loss_weighted"] is True
    assert 0 <= result["test_balanced_accuracy"] <= 1
    assert run([*argv]) == 0  # no weights: the lines as they were
    out = capsys.readouterr().out
    assert "weighted" not in out and "balanced" not in out


def test_cli_class_weight_text_labels_and_sweep(tmp_path, capsys):
    data = _csv(tmp_path, text=True)
    assert run(["train", "--data", data, "--epochs", "1", "--class-weight", "rare=10", "--json"]) == 0
    assert last_json(capsys.readouterr().out)["train_loss_weighted"]
    assert run(["sweep", "--data", data, "--epochs", "1", "--hidden", "2", "--class-weight", "balanced", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["results"]


@pytest.mark.parametrize("value, message", [
    ("even", "expected balanced or LABEL=WEIGHT"),
    ("0=1,0=2", "gives class '0' twice"),
    ("1=-3", "'-3' must be >= 0"),
    ("1=x", "'x' is not a number"),
    ("7=2", "--class-weight 7=2: '7' is not among the classes [0, 1]"),
])
def test_cli_bad_class_weight_is_one_line(tmp_path, capsys, value, message):
    data = _csv(tmp_path)
    assert run(["train", "--data", data, "--epochs", "1", "--class-weight", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("xpnet")
    assert not [line for line in err if line.startswith("xpnet: note: --class-weight")]


def test_cli_class_weight_is_refused_for_regression(tmp_path, capsys):
    X, _ = _imbalanced(n=100)
    np.savez(tmp_path / "r.npz", X=X, y=X[:, 0] * 1.5)
    assert run(["train", "--data", str(tmp_path / "r.npz"), "--epochs", "1", "--class-weight", "balanced"]) == 2
    assert "it is for one class per row" in capsys.readouterr().err


def test_help_lists_class_weight(capsys):
    for command in ("train", "sweep"):
        assert run([command, "-h"]) == 0
        assert "--class-weight balanced|LABEL=W,..." in capsys.readouterr().out


def test_evaluate_prints_balanced_accuracy_with_the_macro_averages(tmp_path, capsys):
    data = _csv(tmp_path)
    assert run(["train", "--data", data, "--epochs", "1", "--save", str(tmp_path / "m.npz"), "--quiet"]) == 0
    capsys.readouterr()
    assert run(["evaluate", "--model", str(tmp_path / "m.npz"), "--data", data]) == 0
    out = capsys.readouterr().out.splitlines()
    at = next(i for i, line in enumerate(out) if line.startswith("balanced accuracy"))
    assert out[at - 1].startswith("macro")
    assert run(["evaluate", "--model", str(tmp_path / "m.npz"), "--data", data, "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["balanced_accuracy"] == pytest.approx(np.mean(
        [row["recall"] for row in result["per_class"] if row["support"]]))


# ------------------------------------------------------------------ scikit-learn
def test_classifier_class_weight_is_sample_weight_by_class():
    from sklearn.base import clone
    from sklearn.utils.class_weight import compute_sample_weight

    from xpnet.sklearn import MLPClassifier

    X, y = _imbalanced(n=300)
    est = MLPClassifier((8,), max_iter=3, random_state=0, class_weight="balanced")
    assert clone(est).get_params()["class_weight"] == "balanced"
    assert MLPClassifier().get_params()["class_weight"] is None
    with pytest.warns(Warning):  # not converged in 3 iterations
        a = est.fit(X, y)
    with pytest.warns(Warning):
        b = MLPClassifier((8,), max_iter=3, random_state=0).fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    for ca, cb in zip(a.coefs_, b.coefs_):
        np.testing.assert_array_equal(ca, cb)
    with pytest.raises(ValueError, match="'balanced' is not supported for partial_fit"):
        MLPClassifier(class_weight="balanced").partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="multi-label"):
        MLPClassifier(class_weight={0: 2}).fit(X, (X[:, :3] > 0).astype(int))
    with pytest.raises(ValueError, match="class_weight"):
        MLPClassifier(class_weight="even").fit(X, y)


# ------------------------------------------------------------------ data-parallel
@pytest.mark.skipif(not MPIEXEC.exists(), reason="needs mpiexec next to python (the mpi extra)")
def test_weights_follow_each_ranks_rows(tmp_path):
    result = subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, __file__, str(tmp_path)], capture_output=True,
                            text=True, timeout=120, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    ranks = np.load(tmp_path / "dp.npz")
    flat, loss = _weighted_dp()
    np.testing.assert_allclose(ranks["flat"], flat, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ranks["loss"], loss, rtol=0, atol=1e-9)


def _weighted_dp(comm=None):
    X, y = _imbalanced(n=150)
    model = xpnet.MLP([4, 8, 2], activation="tanh", dtype="float64", seed=1)
    history = xpnet.fit(model, X, y, xpnet.SGD(0.1), epochs=3, batch_size=32, comm=comm, verbose=False,
                        class_weight="balanced", sample_weight=np.linspace(0.5, 1.5, 150))
    return xpnet.to_numpy(model.flat), np.array(history.train_loss)


if __name__ == "__main__":  # a rank of test_weights_follow_each_ranks_rows
    from mpi4py import MPI

    flat, loss = _weighted_dp(MPI.COMM_WORLD)
    if MPI.COMM_WORLD.rank == 0:
        np.savez(Path(sys.argv[1]) / "dp.npz", flat=flat, loss=loss)
