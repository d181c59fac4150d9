"""Multi-label classification (issue 23, item 1): one sigmoid unit per label, 0/1 rows in and out,
and the accuracy that fit, evaluate and the command line report is the subset accuracy (a row
counts when every one of its labels is right), equal to what predict's rows give by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from cli_helpers import last_json, run

import xpnet


def _labels(n: int, seed: int):
    """4 features; label j is on where feature j is positive: often several labels a row, or none."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4)).astype(np.float32)
    return X, (X[:, :3] > 0).astype(np.int64)


def test_reported_accuracy_is_the_subset_accuracy(backend):
    X, Y = _labels(600, 0)
    Xv, Yv = _labels(300, 1)
    model = xpnet.MLP([4, 32, 3], output="sigmoid", backend=backend, seed=0)
    history = xpnet.fit(model, X, Y, xpnet.Adam(1e-2), epochs=20, batch_size=32, verbose=False, validation_data=(Xv, Yv))
    assert model.multilabel is True and model.classes is None
    predicted = xpnet.to_numpy(model.predict(Xv))
    assert predicted.shape == (300, 3) and set(np.unique(predicted)) <= {0, 1}
    by_hand = np.mean(np.all(predicted == Yv, axis=1))
    scores = model.evaluate(Xv, Yv)
    assert scores["accuracy"] == pytest.approx(by_hand) and history.val_accuracy[-1] == pytest.approx(by_hand)
    assert scores["hamming_loss"] == pytest.approx(np.mean(predicted != Yv))
    assert by_hand > 0.9  # learnable labels: the old arg-max count scored such a net far lower
    argmax = np.mean(np.argmax(xpnet.to_numpy(model.predict_proba(Xv)), axis=1) == np.argmax(Yv, axis=1))
    assert argmax < 0.8  # what it used to report
    np.testing.assert_array_equal(predicted, (xpnet.to_numpy(model.predict_proba(Xv)) >= 0.5).astype(np.int64))


def test_training_accuracy_counts_whole_rows(backend):
    X, Y = _labels(256, 2)
    model = xpnet.MLP([4, 16, 3], output="sigmoid", backend=backend, seed=0)
    history = xpnet.fit(model, X, Y, xpnet.SGD(1e-30), epochs=1, batch_size=64, shuffle=False, verbose=False)
    # lr 1e-30: the weights never move (float32 rounds every update away), so the batches' counts are the fixed network's
    by_hand = np.mean(np.all(xpnet.to_numpy(model.predict(X)) == Y, axis=1))
    assert history.train_accuracy[-1] == pytest.approx(by_hand)


def test_multilabel_round_trips_and_refuses_label_vectors(backend, tmp_path):
    X, Y = _labels(100, 3)
    model = xpnet.MLP([4, 8, 3], output="sigmoid", backend=backend, seed=0)
    xpnet.fit(model, X, Y, xpnet.Adam(1e-2), epochs=2, batch_size=32, verbose=False)
    model.save(tmp_path / "m.npz")
    loaded = xpnet.load(tmp_path / "m.npz", backend=backend)
    assert loaded.multilabel is True
    np.testing.assert_array_equal(xpnet.to_numpy(loaded.predict(X)), xpnet.to_numpy(model.predict(X)))
    with pytest.raises(ValueError, match=r"y has shape \(100,\) but the model is multi-label: expected \(m, 3\) 0/1 rows"):
        loaded.evaluate(X, Y[:, 0])
    with pytest.raises(ValueError, match="multi-label"):
        loaded.predict_indices(X)


def test_label_vectors_keep_one_class_per_row(backend):
    X, Y = _labels(60, 4)
    model = xpnet.MLP([4, 8, 3], output="sigmoid", backend=backend, seed=0)
    model.prepare(X, Y[:, 0] + Y[:, 1])  # class labels 0..2 for three sigmoid units (Nielsen's network)
    assert model.multilabel is False
    with pytest.raises(ValueError, match="multi-label needs output='sigmoid' and one unit per label"):
        xpnet.MLP([4, 8, 3], output="softmax", multilabel=True, backend=backend)


def test_cli_trains_evaluates_and_predicts_multilabel_npz(device, tmp_path, capsys):
    X, Y = _labels(500, 5)
    np.savez(tmp_path / "d.npz", X=X, y=Y)
    model = tmp_path / "m.npz"
    assert run(["train", "--device", device, "--data", str(tmp_path / "d.npz"), "--epochs", "20", "--save",
                str(model), "--json"]) == 0
    trained = last_json(capsys.readouterr().out)
    assert trained["layers"][-1] == 3 and trained["test_accuracy"] > 0.85 and 0 <= trained["test_hamming_loss"] < 0.1
    assert run(["evaluate", "--device", device, "--model", str(model), "--data", str(tmp_path / "d.npz"), "--json"]) == 0
    scored = last_json(capsys.readouterr().out)
    assert run(["predict", "--device", device, "--model", str(model), "--data", str(tmp_path / "d.npz"), "--json"]) == 0
    predicted = np.array(last_json(capsys.readouterr().out)["predictions"])
    assert predicted.shape == (500, 3)
    assert scored["test_accuracy"] == pytest.approx(np.mean(np.all(predicted == Y, axis=1)))
    assert scored["test_hamming_loss"] == pytest.approx(np.mean(predicted != Y))
    assert [c["class"] for c in scored["per_class"]] == [0, 1, 2] and "confusion_matrix" not in scored
    tp = np.sum((predicted == 1) & (Y == 1), axis=0)
    assert [c["precision"] for c in scored["per_class"]] == pytest.approx(tp / predicted.sum(axis=0))
    assert run(["evaluate", "--device", device, "--model", str(model), "--data", str(tmp_path / "d.npz")]) == 0
    out = capsys.readouterr().out
    assert "(rows with every label right)" in out and "Hamming loss" in out and "per label" in out
    assert run(["predict", "--device", device, "--model", str(model), "--data", str(tmp_path / "d.npz")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == "0,1,2" and lines[1] == ",".join(map(str, predicted[0]))


def test_cli_refuses_multilabel_rows_for_softmax_or_regression(host_device, tmp_path, capsys):
    X, Y = _labels(40, 6)
    np.savez(tmp_path / "d.npz", X=X, y=Y)
    for extra in (["--output", "softmax"], ["--task", "regression"]):
        assert run(["train", "--device", host_device, "--data", str(tmp_path / "d.npz"), "--epochs", "1", *extra]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "multi-label rows (3 labels of 0/1 per row)" in err[0] and extra[-1] in err[0]
    np.savez(tmp_path / "bad.npz", X=X, y=Y * 2)
    assert run(["train", "--device", host_device, "--data", str(tmp_path / "bad.npz"), "--epochs", "1"]) == 2
    assert "a 2-D y holds multi-label rows, 0 or 1" in capsys.readouterr().err


def _csv(path, n: int, seed: int):
    X, Y = _labels(n, seed)
    with open(path, "w") as f:
        f.write("f0,f1,f2,f3,red,green,blue\n")
        for x, y in zip(X, Y):
            f.write(",".join(f"{v:.5f}" for v in x) + "," + ",".join(map(str, y)) + "\n")
    return Y


@pytest.mark.parametrize("flags", [["--label-column", "red", "--label-column", "green", "--label-column", "blue"],
                                   ["--label-column", "red:blue"], ["--label-column", "4:6"]])
def test_cli_multilabel_csv_columns(tmp_path, capsys, flags):
    Y = _csv(tmp_path / "d.csv", 400, 7)
    model = tmp_path / "m.npz"
    assert run(["train", "--data", str(tmp_path / "d.csv"), *flags, "--epochs", "20", "--save", str(model),
                "--json", "--quiet"]) == 0
    assert last_json(capsys.readouterr().out)["test_accuracy"] > 0.8
    assert xpnet.load(model).classes.tolist() == ["red", "green", "blue"]  # the header names them
    # evaluate finds the label columns in the model file's record; predict drops them by the same record
    assert run(["evaluate", "--model", str(model), "--data", str(tmp_path / "d.csv"), "--split", "test", "--json"]) == 0
    assert last_json(capsys.readouterr().out)["samples"] == 80
    assert run(["predict", "--model", str(model), "--data", str(tmp_path / "d.csv"), "--json"]) == 0
    predicted = np.array(last_json(capsys.readouterr().out)["predictions"])
    assert predicted.shape == (400, 3) and np.mean(np.all(predicted == Y, axis=1)) > 0.8


def test_cli_multilabel_csv_bad_columns(tmp_path, capsys):
    _csv(tmp_path / "d.csv", 40, 8)
    cases = {("--label-column", "blue:red"): "the range ends (column 4) before it starts (column 6)",
             ("--label-column", "red", "--label-column", "red"): "names column 'red' twice",
             ("--label-column", "f0:blue"): "takes all 7 columns",
             ("--label-column", "f0", "--label-column", "red"): None}
    for flags, message in cases.items():
        code = run(["train", "--data", str(tmp_path / "d.csv"), *flags, "--epochs", "1", "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        if message is None:  # f0 holds real numbers: no multi-label rows
            assert code == 2 and "a 2-D y holds multi-label rows, 0 or 1" in err[-1]
        else:
            assert code == 2 and len(err) == 1 and message in err[0], err


def test_one_hot_rows_stay_one_class_a_row(backend):
    X, Y = _labels(90, 9)
    onehot = np.eye(3, dtype=np.int64)[Y.sum(axis=1) % 3]  # Nielsen's vectorized targets for sigmoid units
    model = xpnet.MLP([4, 8, 3], output="sigmoid", loss="mse", backend=backend, seed=0)
    xpnet.fit(model, X, onehot, xpnet.SGD(0.5), epochs=2, batch_size=30, verbose=False)
    assert model.multilabel is False and xpnet.to_numpy(model.predict(X)).shape == (90,)
    forced = xpnet.MLP([4, 8, 3], output="sigmoid", multilabel=True, backend=backend, seed=0)
    xpnet.fit(forced, X, onehot, xpnet.SGD(0.5), epochs=1, batch_size=30, verbose=False)
    assert xpnet.to_numpy(forced.predict(X)).shape == (90, 3)


def test_resume_refuses_another_multilabel_setting(tmp_path):
    X, Y = _labels(64, 10)
    ck = str(tmp_path / "ck.npz")
    xpnet.fit(xpnet.MLP([4, 8, 3], output="sigmoid", seed=0), X, Y, xpnet.Adam(1e-2), epochs=1, batch_size=32,
              verbose=False, checkpoint=ck)
    single = xpnet.MLP([4, 8, 3], output="sigmoid", multilabel=False, seed=0)
    with pytest.raises(ValueError, match=r"was written for multilabel=True, but this run has multilabel=False"):
        xpnet.fit(single, X, Y, xpnet.Adam(1e-2), epochs=2, batch_size=32, verbose=False, resume=ck)


def test_a_scikit_learn_multilabel_estimator_saves_a_multilabel_model(tmp_path):
    sklearn_mlp = pytest.importorskip("xpnet.sklearn")
    X, Y = _labels(80, 11)
    est = sklearn_mlp.MLPClassifier(hidden_layer_sizes=(8,), max_iter=30, random_state=0)
    with warnings.catch_warnings():  # scikit-learn's ConvergenceWarning after 30 iterations, if it comes
        warnings.simplefilter("ignore")
        est.fit(X, Y)
    est.save(tmp_path / "e.npz")
    model = xpnet.load(tmp_path / "e.npz")
    assert model.multilabel is True
    np.testing.assert_array_equal(xpnet.to_numpy(model.predict(X)), est.predict(X))
