"""The command line with users' data: which rows evaluate scores, classes and scaling that
travel in the model file, outputs that may never overwrite inputs, and stops that lose nothing."""

from __future__ import annotations

import builtins
import json
import os
import signal

import numpy as np
import pytest
from cli_helpers import last_json, run

import xpnet


@pytest.fixture
def noise(tmp_path):
    """Features with no relation to the labels: any score well above chance is leaked training rows."""
    rng = np.random.default_rng(5)
    path = tmp_path / "noise.npz"
    np.savez(path, X=rng.normal(size=(200, 4)).astype(np.float32), y=rng.integers(0, 2, 200))
    return path


def test_evaluate_scores_every_row_of_a_file_and_split_test_finds_the_run_s_own(device, tmp_path, noise, capsys):
    model = tmp_path / "n.npz"
    assert run(["train", "--device", device, "--data", str(noise), "--seed", "3", "--epochs", "60", "--layers",
                "4,64,2", "--json", "--save", str(model)]) == 0
    trained = last_json(capsys.readouterr().out)
    assert run(["evaluate", "--device", device, "--model", str(model), "--data", str(noise), "--json"]) == 0
    every = last_json(capsys.readouterr().out)
    assert every["samples"] == 200 and every["split"] == "all"
    assert run(["evaluate", "--device", device, "--model", str(model), "--data", str(noise), "--split", "test",
                "--json"]) == 0
    test = last_json(capsys.readouterr().out)
    assert test["samples"] == 40 and test["test_accuracy"] == pytest.approx(trained["test_accuracy"])
    assert test["test_accuracy"] < every["test_accuracy"]  # the whole file includes the memorized training rows

    other = tmp_path / "other.npz"
    np.savez(other, X=np.zeros((10, 4), np.float32), y=np.arange(10) % 2)
    assert run(["evaluate", "--model", str(model), "--data", str(other), "--split", "test"]) == 2
    assert "is not the file" in capsys.readouterr().err
    assert run(["evaluate", "--model", str(model)]) == 2  # no data: it says which file it was trained on
    assert "was trained on the file 'noise.npz': pass --data FILE" in capsys.readouterr().err


def test_evaluate_dataset_uses_the_training_run_s_seed_and_split(device, tmp_path, capsys):
    model = tmp_path / "m.npz"
    assert run(["train", "--device", device, "--dataset", "moons", "--seed", "3", "--epochs", "3", "--json",
                "--save", str(model)]) == 0
    trained = last_json(capsys.readouterr().out)
    assert run(["evaluate", "--device", device, "--model", str(model), "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["dataset"] == "moons" and result["split"] == "test" and result["samples"] == 200
    assert result["test_accuracy"] == pytest.approx(trained["test_accuracy"])


def test_labels_as_users_have_them(device, tmp_path, capsys):
    X, y = xpnet.make_moons(300, noise=0.1, seed=1)
    path = tmp_path / "pets.npz"
    np.savez(path, X=X * 40 + 100, y=np.where(y == 1, "dog", "cat"))  # string labels, features far from [-1, 1]
    model = tmp_path / "m.npz"
    assert run(["train", "--device", device, "--data", str(path), "--epochs", "20", "--json", "--save", str(model)]) == 0
    captured = capsys.readouterr()
    assert "--scale auto" in captured.err and "standardized per feature" in captured.err
    result = last_json(captured.out)
    assert result["layers"] == [2, 128, 64, 2] and result["test_accuracy"] > 0.9
    loaded = xpnet.load(model)
    assert loaded.classes.tolist() == ["cat", "dog"] and loaded.scaler.kind == "standard"
    np.savez(tmp_path / "x.npz", X=X[:4] * 40 + 100)
    assert run(["predict", "--model", str(model), "--data", str(tmp_path / "x.npz")]) == 0
    assert capsys.readouterr().out.split() == np.where(y[:4] == 1, "dog", "cat").tolist()
    assert run(["predict", "--model", str(model), "--data", str(tmp_path / "x.npz"), "--proba"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "cat,dog"
    assert run(["evaluate", "--model", str(model), "--data", str(path)]) == 0
    out = capsys.readouterr().out
    assert "per-class accuracy: cat: " in out and " dog: " in out

    seven = tmp_path / "seven.npz"
    np.savez(seven, X=X, y=np.where(y == 1, 7, 3))  # labels {3, 7}: 2 outputs, not 8
    assert run(["train", "--device", device, "--data", str(seven), "--epochs", "2", "--json", "--save", str(model)]) == 0
    assert last_json(capsys.readouterr().out)["layers"] == [2, 128, 64, 2]
    assert xpnet.load(model).classes.tolist() == [3, 7]


def test_uint8_images_are_scaled_by_default_for_files(device, tmp_path, capsys):
    d = xpnet.load_mnist()
    path = tmp_path / "raw.npz"
    np.savez(path, X=np.round(d.X_train[:2500] * 255).astype(np.uint8), y=d.y_train[:2500])
    argv = ["train", "--device", device, "--data", str(path), "--layers", "784,64,10", "--epochs", "3", "--json"]
    assert run(argv) == 0
    assert last_json(capsys.readouterr().out)["test_accuracy"] > 0.8
    assert run([*argv, "--scale", "none", "--quiet"]) == 0  # as before: 0..255 inputs do not train
    assert "standardized" not in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["predict", "--model", "m.npz", "--data", "d.csv", "--out", "d.csv"], "--out 'd.csv' is the same file as --data"),
    (["predict", "--model", "m.npz", "--data", "d.csv", "--out", "./m.npz"], "--out './m.npz' is the same file as --model"),
    (["evaluate", "--model", "m.npz", "--data", "d.csv", "--plot", "."], None),  # different files: fine
    (["evaluate", "--model", "confusion.png", "--plot", "."], "--plot 'confusion.png' is the same file as --model"),
    (["bench", "--json", "r.txt", "--markdown", "./r.txt"], "--json 'r.txt' is the same file as --markdown './r.txt'"),
])
def test_outputs_never_overwrite_inputs(tmp_path, monkeypatch, capsys, argv, message):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    X, y = xpnet.make_moons(20, seed=0)
    np.savetxt("d.csv", np.column_stack([X, y]), delimiter=",")
    xpnet.MLP([2, 4, 2]).save("m.npz")
    (tmp_path / "confusion.png").write_bytes(b"a file that is not a figure")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    code = run(argv)
    err = capsys.readouterr().err
    if message is None:
        assert code == 0, err
        return
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_failed_figures_cost_neither_the_model_nor_the_report(device, tmp_path, monkeypatch, capsys):
    pytest.importorskip("matplotlib")
    from xpnet import plot

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(plot, "history_curves", disk_full)
    model = tmp_path / "m.npz"
    code = run(["train", "--device", device, "--epochs", "1", "--layers", "784,16,10", "--json", "--save", str(model),
                "--plot", str(tmp_path / "figs")])
    captured = capsys.readouterr()
    assert code == 2 and "the figures could not be written" in captured.err and "No space left" in captured.err
    assert len(captured.err.strip().splitlines()) == 1
    assert last_json(captured.out)["test_accuracy"] > 0.5  # the report is whole
    assert xpnet.load(model).sizes == [784, 16, 10]  # and so is the model


def test_resume_refuses_changed_settings_unless_allowed(device, tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    base = ["train", "--device", device, "--dataset", "moons", "--epochs", "2", "--quiet", "--checkpoint", str(ck)]
    assert run([*base, "--epochs", "1"]) == 0
    capsys.readouterr()
    assert run([*base, "--resume", str(ck), "--lr", "0.05", "--momentum", "0.5"]) == 2
    err = capsys.readouterr().err
    assert "lr 0.1 (now 0.05), momentum 0.9 (now 0.5)" in err and "--allow-changes" in err
    assert run([*base, "--resume", str(ck), "--lr", "0.05", "--allow-changes"]) == 0
    with np.load(ck, allow_pickle=False) as npz:
        history = json.loads(npz["metadata"].tobytes())["history"]
    assert history["changes"][0]["changed"]["lr"] == [0.1, 0.05]


def test_init_from_fine_tunes_a_model_or_checkpoint(device, tmp_path, capsys):
    X, y = xpnet.make_moons(300, noise=0.1, seed=1)
    path = tmp_path / "d.npz"
    np.savez(path, X=X * 40 + 100, y=np.where(y == 1, 7, 3))
    ck, tuned = tmp_path / "ck.npz", tmp_path / "tuned.npz"
    assert run(["train", "--device", device, "--data", str(path), "--epochs", "2", "--quiet", "--layers", "2,16,2",
                "--checkpoint", str(ck)]) == 0
    assert run(["evaluate", "--device", device, "--model", str(ck), "--data", str(path), "--json"]) == 0
    before = last_json(capsys.readouterr().out)["test_accuracy"]
    assert run(["train", "--device", device, "--data", str(path), "--epochs", "20", "--json", "--init-from", str(ck),
                "--save", str(tuned)]) == 0
    assert last_json(capsys.readouterr().out)["layers"] == [2, 16, 2]
    fine = xpnet.load(tuned)
    assert fine.classes.tolist() == [3, 7] and fine.scaler == xpnet.load(ck).scaler
    assert fine.evaluate(X * 40 + 100, np.where(y == 1, 7, 3))["accuracy"] >= before


def test_second_ctrl_c_while_the_checkpoint_is_written_keeps_it(device, tmp_path, monkeypatch, capsys):
    """Signals sent from inside the write (a hook, not a sleep): the first asks to stop, the
    second and third are the impatient user. Exit 130, one line naming a whole checkpoint."""
    import xpnet.io

    real_savez, calls = np.savez, []

    def savez_with_signals(f, **arrays):
        calls.append(1)
        os.kill(os.getpid(), signal.SIGINT)
        real_savez(f, **arrays)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(xpnet.io.np, "savez", savez_with_signals)
    ck = tmp_path / "ck.npz"
    code = run(["train", "--device", device, "--dataset", "moons", "--epochs", "5", "--quiet", "--checkpoint", str(ck)])
    err = capsys.readouterr().err
    assert code == 130 and len(err.strip().splitlines()) == 1 and f"--resume {ck}" in err, err
    monkeypatch.setattr(xpnet.io.np, "savez", real_savez)
    assert calls and xpnet.load(ck).sizes == [2, 128, 64, 2]  # whole, and loadable
    signal.signal(signal.SIGINT, signal.default_int_handler)  # main() ignored further signals while printing
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_ctrl_c_during_start_up_is_one_line(monkeypatch, capsys):
    import sys

    from xpnet import _launch

    real_import = builtins.__import__

    def interrupted_import(name, *args, **kwargs):
        if name == "cli" or name.endswith("xpnet.cli"):
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "xpnet.cli")
    monkeypatch.setattr(builtins, "__import__", interrupted_import)
    with pytest.raises(SystemExit) as info:
        _launch.run()
    assert info.value.code == 130
    assert capsys.readouterr().err == "xpnet: interrupted\n"


def test_csv_as_users_write_it(device, tmp_path, capsys):
    """A BOM, a pandas index column, a header, ';' with decimal commas and text labels by name."""
    X, y = xpnet.make_moons(200, noise=0.1, seed=2)
    lines = [";x one;x two;species"] + [
        f"{i};{a:.5f};{b:.5f};{'setosa' if t else 'virginica'}".replace(".", ",") for i, ((a, b), t) in enumerate(zip(X, y))
    ]
    path = tmp_path / "iris.csv"
    path.write_bytes("\ufeff".encode() + "\n".join(lines).encode() + b"\n")
    model = tmp_path / "m.npz"
    assert run(["train", "--device", device, "--data", str(path), "--label-column", "species", "--epochs", "20",
                "--json", "--save", str(model)]) == 0
    captured = capsys.readouterr()
    assert "xpnet: note:" in captured.err and "semicolons" in captured.err and "index" in captured.err
    result = last_json(captured.out)
    assert result["layers"] == [2, 128, 64, 2] and result["test_accuracy"] > 0.9
    assert xpnet.load(model).classes.tolist() == ["setosa", "virginica"]
    # predict on the same file: the text label column is recognised as the extra one and dropped
    assert run(["predict", "--model", str(model), "--data", str(path), "--label-column", "species"]) == 0
    predicted = capsys.readouterr().out.split()
    assert len(predicted) == 200 and set(predicted) <= {"setosa", "virginica"}
    assert np.mean(np.array(predicted) == np.where(y == 1, "setosa", "virginica")) > 0.9
    assert run(["train", "--data", str(path), "--delimiter", "::"]) == 2
    assert "--delimiter: '::' is not one character" in capsys.readouterr().err


def test_identity_output_on_whole_number_targets_is_a_regressor(device, tmp_path, capsys):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 3))
    y = np.round(50 + 10 * X[:, 0] + 5 * X[:, 1])  # whole numbers, read back as int64: still targets, not classes
    path = tmp_path / "reg.csv"
    np.savetxt(path, np.column_stack([X, y]), delimiter=",", fmt="%.6f")
    model = tmp_path / "m.npz"
    assert run(["train", "--device", device, "--data", str(path), "--output", "identity", "--scale", "standard",
                "--optimizer", "adam", "--lr", "0.01", "--epochs", "60", "--json", "--save", str(model)]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["layers"] == [3, 128, 64, 1] and result["test_r2"] > 0.9
    loaded = xpnet.load(model)
    assert loaded.classes is None and loaded.sizes[-1] == 1


def test_predict_reports_unreadable_files_in_one_line(tmp_path, capsys):
    xpnet.MLP([2, 4, 2]).save(tmp_path / "m.npz")
    for data, message in ((tmp_path / "missing.npz", "does not exist"), (tmp_path / "m.npz", "has arrays")):
        assert run(["predict", "--model", str(tmp_path / "m.npz"), "--data", str(data)]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def test_proba_of_one_sigmoid_unit_is_named_by_its_class(tmp_path, capsys):
    X, y = xpnet.make_moons(60, seed=0)
    model = xpnet.MLP([2, 4, 1], output="sigmoid")  # no class list: the unit is P(class 1)
    model.save(tmp_path / "m.npz")
    np.savez(tmp_path / "x.npz", X=X[:3])
    assert run(["predict", "--model", str(tmp_path / "m.npz"), "--data", str(tmp_path / "x.npz"), "--proba"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "1"


def test_an_interrupted_fine_tune_resumes_with_the_command_it_printed(device, tmp_path, capsys):
    X, y = xpnet.make_moons(200, seed=1)
    data = tmp_path / "d.npz"
    np.savez(data, X=X * 40 + 100, y=y)
    base = tmp_path / "base.npz"
    assert run(["train", "--device", device, "--data", str(data), "--epochs", "2", "--quiet", "--save", str(base),
                "--layers", "2,16,2"]) == 0
    ck = tmp_path / "ck.npz"
    argv = ["train", "--device", device, "--data", str(data), "--epochs", "3", "--quiet", "--init-from", str(base),
            "--checkpoint", str(ck), "--checkpoint-every", "1"]
    assert run([*argv, "--epochs", "1"]) == 0  # stands in for a run stopped after epoch 1
    capsys.readouterr()
    assert run([*argv, "--resume", str(ck), "--allow-changes", "--json"]) == 0  # --init-from kept, as the hint keeps it
    result = last_json(capsys.readouterr().out)
    assert result["epochs"] == 3 and result["layers"] == [2, 16, 2]
