"""What the reports say: metrics checked against hand-computed values, and the lines and JSON
keys of train, evaluate, predict and sweep (early stopping, splits, regression, per-class
scores, figures, --quiet, --json) and their messages."""

from __future__ import annotations

import json
import re
import signal
import sys

import numpy as np
import pytest
from cli_helpers import last_json, run

import xpnet
from xpnet import bench
from xpnet.metrics import format_class_report, macro_average, precision_recall_f1, regression_scores

FAST = ["--epochs", "1", "--layers", "784,16,10"]


# ------------------------------------------------------------------ metrics
# 3 classes; truth down, predictions across. Class 2 is never predicted and class 3 of a
# 4-class model never occurs at all.
CM = np.array([
    [3, 1, 0, 0],
    [2, 4, 0, 0],
    [1, 1, 0, 0],
    [0, 0, 0, 0],
])


def test_precision_recall_f1_by_hand(backend):
    cm = xpnet.to_numpy(backend.asarray(CM))  # a confusion matrix read back from any backend
    s = precision_recall_f1(cm)
    # class 0: TP 3, FP 2+1, FN 1 -> precision 3/6, recall 3/4, F1 6/(6+3+1)
    # class 1: TP 4, FP 1+1, FN 2 -> precision 4/6, recall 4/6, F1 8/12
    # class 2: TP 0, never predicted (precision undefined), FN 2 -> recall 0, F1 0
    # class 3: in neither the truth nor the predictions -> all undefined
    np.testing.assert_allclose(s["precision"][:2], [3 / 6, 4 / 6])
    np.testing.assert_allclose(s["recall"][:3], [3 / 4, 4 / 6, 0.0])
    np.testing.assert_allclose(s["f1"][:3], [6 / 10, 8 / 12, 0.0])
    assert np.isnan(s["precision"][2]) and np.isnan(s["precision"][3]) and np.isnan(s["recall"][3])
    assert np.isnan(s["f1"][3])
    assert s["support"].tolist() == [4, 6, 2, 0]
    # F1 is the harmonic mean of precision and recall where both are defined
    p, r = s["precision"][:2], s["recall"][:2]
    np.testing.assert_allclose(s["f1"][:2], 2 * p * r / (p + r))
    present = (CM.sum(axis=0) + CM.sum(axis=1)) > 0  # classes 0, 1, 2
    assert macro_average(s["precision"], present) == pytest.approx((3 / 6 + 4 / 6 + 0) / 3)
    assert macro_average(s["recall"], present) == pytest.approx((3 / 4 + 4 / 6 + 0) / 3)
    assert macro_average(s["f1"], present) == pytest.approx((6 / 10 + 8 / 12 + 0) / 3)
    assert macro_average(s["f1"], np.zeros(4, bool)) is None


def test_class_report_text():
    s = precision_recall_f1(CM)
    macro = {k: macro_average(s[k], [True, True, True, False]) for k in ("precision", "recall", "f1")}
    lines = format_class_report(["cat", "dog", "eel", "fox"], s, macro).splitlines()
    assert lines[0].split() == ["class", "precision", "recall", "f1", "support"]
    assert lines[1].split() == ["cat", "50.0%", "75.0%", "60.0%", "4"]
    assert lines[3].split() == ["eel", "n/a", "0.0%", "0.0%", "2"]
    assert lines[4].split() == ["fox", "n/a", "n/a", "n/a", "0"]
    assert lines[5].split()[0] == "macro" and lines[5].split()[-1] == "12"
    assert len({len(line) for line in lines}) == 1  # aligned columns


def test_regression_scores_by_hand(backend):
    y = xpnet.to_numpy(backend.asarray(np.array([1.0, 2.0, 3.0, 4.0])))
    pred = np.array([[1.5], [2.0], [2.0], [5.0]])  # (m, 1), as a regressor's outputs
    s = regression_scores(y, pred)
    # errors 0.5, 0, -1, 1: MAE 2.5/4; MSE (0.25+0+1+1)/4 = 0.5625; SS_tot = 2.25+0.25+0.25+2.25 = 5
    assert s["mae"] == pytest.approx(0.625)
    assert s["rmse"] == pytest.approx(0.75)
    assert s["r2"] == pytest.approx(1 - 2.25 / 5)
    two = regression_scores(np.column_stack([y, 2 * y]), np.column_stack([pred, 2 * pred]))
    assert two["r2"] == pytest.approx(1 - 2.25 / 5)  # each column's R², averaged
    assert two["mae"] == pytest.approx((0.625 + 1.25) / 2)
    assert regression_scores(np.ones(3), np.array([1.0, 2.0, 0.0]))["r2"] is None  # constant targets


def test_bench_markdown_says_n_a_without_an_x():
    case = bench.Case((784, 16, 10), 64, "sgd")
    text = bench.markdown([bench.Result(case, xpnet=1000.0, reference=500.0, torch=None, gemm_gflops=10.0)])
    row = text.splitlines()[-1]
    assert "| n/a |" in row and "n/ax" not in row and "| 2.00x |" in row


# ------------------------------------------------------------------ train
def test_header_counts_train_validation_and_test_rows(device, capsys):
    assert run(["train", "--device", device, *FAST, "--val-fraction", "0.1"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    assert "mnist, 7200 train / 800 validation / 2000 test, layers [784, 16, 10]" in first
    assert re.search(r", \d+ BLAS threads?$", first), first
    assert run(["train", "--device", device, *FAST]) == 0
    assert "mnist, 8000 train / 2000 test, layers" in capsys.readouterr().out.splitlines()[0]
    assert run(["train", "--device", device, *FAST, "--val-fraction", "0.1", "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert (result["train_samples"], result["validation_samples"], result["test_samples"]) == (7200, 800, 2000)


def test_epoch_lines_label_training_accuracy(device, capsys):
    assert run(["train", "--device", device, *FAST, "--val-fraction", "0.1"]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert re.match(r"epoch 1/1  loss \d\.\d{4}  train_acc \d+\.\d\d%  val_loss \d\.\d{4}  val_acc \d+\.\d\d%", line), line
    assert " acc " not in line


def test_progress_bars_label_training_accuracy(device, monkeypatch, capsys):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # the bars are drawn on a terminal only
    assert run(["train", "--device", device, *FAST, "--val-fraction", "0.1"]) == 0
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "train_acc=" in err and "val_acc=" in err and " acc=" not in err


def test_early_stopping_says_where_it_stopped_and_what_it_kept(device, capsys):
    argv = ["train", "--device", device, "--dataset", "moons", "--epochs", "100", "--early-stopping", "2"]
    assert run(argv) == 0
    out = capsys.readouterr().out.splitlines()
    epochs = [line for line in out if line.startswith("epoch ")]
    m = re.fullmatch(r"stopped early after epoch (\d+) of 100: val_loss had not improved for 2 epochs; "
                     r"restored the weights of epoch (\d+) \(best val_loss (\d\.\d{4})\)", out[-2])
    assert m, out[-2]
    stopped, best = int(m[1]), int(m[2])
    assert stopped == len(epochs) < 100 and best == stopped - 2
    val_losses = [float(re.search(r"val_loss (\S+)", line)[1]) for line in epochs]
    assert float(m[3]) == min(val_losses) == val_losses[best - 1]
    assert out[-1].startswith("test accuracy ")
    assert run([*argv, "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["stopped_early"] is True and result["best_epoch"] == best and result["epochs"] == stopped
    assert run([*argv, "--quiet"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("test accuracy ")  # nothing else with --quiet


def test_early_stopping_that_does_not_stop_says_so(device, capsys):
    assert run(["train", "--device", device, *FAST, "--epochs", "2", "--early-stopping", "5"]) == 0
    line = capsys.readouterr().out.splitlines()[-2]
    assert line.startswith("early stopping did not stop the run (2 of 2 epochs); ")
    assert "kept the last epoch's weights" in line or "restored the weights of epoch 1" in line
    assert run(["train", "--device", device, *FAST, "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["stopped_early"] is False and result["best_epoch"] is None


@pytest.fixture
def regression_file(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = X @ np.array([1.0, 2.0, -1.0]) + 0.1 * rng.normal(size=300)
    np.savez(tmp_path / "reg.npz", X=X, y=y)
    return tmp_path / "reg.npz"


def test_regression_reports_mae_rmse_r2(device, regression_file, tmp_path, capsys):
    model_path = tmp_path / "r.npz"
    argv = ["train", "--device", device, "--data", str(regression_file), "--output", "identity", "--lr", "0.01",
            "--epochs", "30", "--seed", "1"]
    assert run([*argv, "--save", str(model_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    m = re.match(r"test MAE (\S+)  RMSE (\S+)  R² (\S+)  test loss", lines[-2])
    assert m and "n/a" not in lines[-2], lines[-2]
    assert float(m[3]) > 0.9  # a linear target is learned
    assert run([*argv, "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["test_accuracy"] is None and result["test_r2"] > 0.9
    assert result["test_rmse"] >= result["test_mae"] > 0

    # evaluate on every row of the file: the same numbers as computed here from the predictions
    assert run(["evaluate", "--model", str(model_path), "--data", str(regression_file), "--device", device,
                "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    d = np.load(regression_file)
    pred = xpnet.to_numpy(xpnet.load(model_path).predict(d["X"]))
    err = pred.astype(np.float64) - d["y"]
    assert result["test_mae"] == pytest.approx(np.abs(err).mean(), rel=1e-5)
    assert result["test_rmse"] == pytest.approx(np.sqrt((err**2).mean()), rel=1e-5)
    assert result["test_r2"] == pytest.approx(1 - (err**2).sum() / ((d["y"] - d["y"].mean()) ** 2).sum(), rel=1e-5)
    assert run(["evaluate", "--model", str(model_path), "--data", str(regression_file), "--device", device]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^MAE \S+  RMSE \S+  R² 0\.9\d+$", out, re.M) and "accuracy" not in out


# ------------------------------------------------------------------ evaluate and predict
@pytest.fixture
def mnist_model(tmp_path, capsys):
    path = tmp_path / "m.npz"
    assert run(["train", *FAST, "--quiet", "--save", str(path)]) == 0
    capsys.readouterr()
    return path


def test_evaluate_per_class_precision_recall_f1(device, mnist_model, capsys):
    assert run(["evaluate", "--model", str(mnist_model), "--device", device, "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    cm = np.array(result["confusion_matrix"])
    assert [row["class"] for row in result["per_class"]] == list(range(10)) == result["classes"]
    for j, row in enumerate(result["per_class"]):
        assert set(row) == {"class", "precision", "recall", "f1", "support"}
        assert row["support"] == cm[j].sum()
        assert row["precision"] == pytest.approx(cm[j, j] / cm[:, j].sum())
        assert row["recall"] == pytest.approx(cm[j, j] / cm[j].sum()) == pytest.approx(result["per_class_accuracy"][j])
        assert row["f1"] == pytest.approx(2 * cm[j, j] / (cm[:, j].sum() + cm[j].sum()))
    assert result["macro_recall"] == pytest.approx(np.mean([r["recall"] for r in result["per_class"]]))
    assert result["macro_f1"] == pytest.approx(np.mean([r["f1"] for r in result["per_class"]]))
    assert run(["evaluate", "--model", str(mnist_model), "--device", device]) == 0
    out = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(out) if line.split()[:2] == ["class", "precision"])
    assert [line.split()[0] for line in out[head + 1:head + 12]] == [*map(str, range(10)), "macro"]
    assert out[head + 11].split()[-1] == "2000"


def test_evaluate_quiet_prints_only_the_results(device, mnist_model, capsys):
    assert run(["evaluate", "--model", str(mnist_model), "--device", device, "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].startswith("loss ") and re.fullmatch(r"accuracy \d+\.\d\d%", out[1])


def test_predict_json(device, mnist_model, tmp_path, capsys):
    d = xpnet.load_mnist()
    np.savez(tmp_path / "x.npz", X=d.X_test[:4])
    argv = ["predict", "--model", str(mnist_model), "--data", str(tmp_path / "x.npz"), "--device", device, "--json"]
    model = xpnet.load(mnist_model)
    assert run(argv) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and json.loads(out[0]) == {"predictions": xpnet.to_numpy(model.predict(d.X_test[:4])).tolist()}
    assert run([*argv, "--proba"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["classes"] == list(range(10)) and len(result["predictions"]) == 4
    proba = np.array(result["probabilities"])
    assert proba.shape == (4, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-5)
    assert proba.argmax(axis=1).tolist() == result["predictions"]
    assert run([*argv, "--out", str(tmp_path / "p.csv")]) == 2
    assert "--json prints the predictions and --out" in capsys.readouterr().err
    assert not (tmp_path / "p.csv").exists()


def test_predict_json_with_string_classes_and_one_sigmoid_unit(device, tmp_path, capsys):
    X, y = xpnet.make_moons(200, seed=0)
    np.savez(tmp_path / "d.npz", X=X, y=np.where(y == 1, "yes", "no"))
    model = tmp_path / "m.npz"
    assert run(["train", "--device", device, "--data", str(tmp_path / "d.npz"), "--output", "sigmoid", "--layers",
                "2,8,1", "--epochs", "3", "--quiet", "--save", str(model)]) == 0
    capsys.readouterr()
    assert run(["predict", "--model", str(model), "--data", str(tmp_path / "d.npz"), "--device", device, "--json",
                "--proba"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["classes"] == ["yes"] and set(result["predictions"]) <= {"yes", "no"}
    p = np.array(result["probabilities"])
    assert p.shape == (200, 1)
    assert [("yes" if v >= 0.5 else "no") for v in p[:, 0]] == result["predictions"]


# ------------------------------------------------------------------ figures
def test_plot_says_where_it_wrote(device, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert run(["train", "--device", device, *FAST, "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"wrote 3 figures to {tmp_path}: history.png, confusion.png, misclassified.png"
    assert run(["train", "--device", device, *FAST, "--plot", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    last_json(captured.out)  # stdout's last line is still the JSON object
    assert captured.err.strip() == f"wrote 3 figures to {tmp_path}: history.png, confusion.png, misclassified.png"
    argv = ["sweep", "--device", device, "--preset", "moons-sweep", "--hidden", "2", "--epochs", "2", "--plot",
            str(tmp_path)]
    assert run(argv) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote 1 figure to {tmp_path}: sweep_boundaries.png"


# ------------------------------------------------------------------ messages
def test_no_command_prints_the_help(capsys):
    assert run([]) == 2
    captured = capsys.readouterr()
    assert captured.out.startswith("usage: xpnet") and all(c in captured.out for c in ("train", "evaluate", "bench"))
    assert captured.err == ""


def test_sweep_interrupt_does_not_suggest_a_checkpoint(host_device, monkeypatch, capsys):
    from xpnet import model
    from xpnet.train import TrainingInterrupted

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted(signal.SIGINT, 3, 7, None)

    monkeypatch.setattr(model, "MLP", interrupted)  # stops the sweep's first net before it resolves a device
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = run(["sweep", "--device", host_device, "--dataset", "moons", "--hidden", "2,4"])
    finally:
        for sig, handler in previous.items():  # main ignores further signals while it prints
            signal.signal(sig, handler)
    err = capsys.readouterr().err
    assert code == 130 and len(err.strip().splitlines()) == 1
    assert "interrupted by SIGINT at epoch 3 after step 7; sweep keeps no checkpoints: run it again" in err
    assert "--checkpoint" not in err


MODEL_FILE_ERRORS = [
    # (files, argv, message): the flag, not the library's argument name, and no "pickled data"
    ({}, ["evaluate", "--model", "none.npz"], "--model 'none.npz' does not exist: expected an xpnet .npz file"),
    ({"d.csv": "1,2,0\n3,4,1\n"}, ["evaluate", "--model", "d.csv", "--dataset", "moons"],
     "--model 'd.csv' is not an xpnet model file (.npz): it is a text file (data goes in --data)"),
    ({"d.csv": "1,2,0\n3,4,1\n"}, ["predict", "--model", "d.csv", "--data", "d.csv"],
     "--model 'd.csv' is not an xpnet model file (.npz): it is a text file"),
    ({"m.npz": b"\x00\x01\x02garbage"}, ["evaluate", "--model", "m.npz"],
     "--model 'm.npz' is not an xpnet model file (.npz): it is not a .npz (zip) archive"),
    ({"m.npz": b""}, ["evaluate", "--model", "m.npz"], "--model 'm.npz' is not an xpnet model file (.npz): it is empty"),
    ({"d.npz": "data"}, ["evaluate", "--model", "d.npz"], "--model 'd.npz' has no metadata: not an xpnet file"),
    ({"d.csv": "1,2,0\n3,4,1\n"}, ["train", "--dataset", "moons", "--init-from", "d.csv"],
     "--init-from 'd.csv' is not an xpnet model file or checkpoint (.npz): it is a text file"),
]


@pytest.mark.parametrize("files,argv,message", MODEL_FILE_ERRORS)
def test_model_file_errors_name_the_flag(host_device, files, argv, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for name, content in files.items():
        if content == "data":
            np.savez(tmp_path / name, X=np.zeros((3, 2)), y=np.zeros(3, int))
        else:
            (tmp_path / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert run([*argv, "--device", host_device]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert "path=" not in err and "pickle" not in err
