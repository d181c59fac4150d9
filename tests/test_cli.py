"""The command line: it trains, reports, and turns every user error into one line and exit 2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from xpnet.cli import main

FAST = ["--epochs", "1", "--layers", "784,16,10"]


def test_train_prints_epochs_and_test_accuracy(device, capsys):
    assert main(["train", "--device", device, *FAST, "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    assert "epoch 1/2" in out and "epoch 2/2" in out and "acc " in out
    assert out.strip().splitlines()[-1].startswith("test accuracy ")


def test_train_json_and_save(device, tmp_path, capsys):
    path = tmp_path / "model.npz"
    assert main(["train", "--device", device, *FAST, "--json", "--save", str(path), "--val-fraction", "0.1"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    result = json.loads(last)
    for key in ("dataset", "device", "layers", "epochs", "train_loss", "test_accuracy", "seconds", "samples_per_second"):
        assert key in result
    assert result["layers"] == [784, 16, 10] and result["dataset"] == "mnist" and 0 < result["test_accuracy"] <= 1
    import xpnet

    model = xpnet.load(path)
    assert model.sizes == [784, 16, 10]


@pytest.mark.parametrize("argv,message", [
    (["train", "--epochs", "0"], "--epochs: '0' must be > 0"),
    (["train", "--lr", "-1"], "--lr: '-1' must be > 0"),
    (["train", "--lr", "fast"], "--lr: 'fast' is not a number"),
    (["train", "--batch-size", "0"], "--batch-size: '0' must be > 0"),
    (["train", "--layers", "784,abc,10"], "--layers '784,abc,10' is not a comma-separated list"),
    (["train", "--layers", "784"], "expected at least two widths"),
    (["train", "--layers", "100,10"], "--layers starts with 100 but mnist has 784 features: use 784"),
    (["train", "--activation", "swish"], "--activation: invalid choice: 'swish'"),
    (["train", "--val-fraction", "1.5"], "--val-fraction: '1.5' must be in [0, 1)"),
    (["train", "--device", "tpu"], "device='tpu' is not a device"),
    (["train", "--loss", "binary_cross_entropy"], "loss='binary_cross_entropy' does not fit output='softmax'"),
    (["train", "--optimizer", "adam", "--momentum", "-1"], "--momentum: '-1' must be a finite number >= 0"),
    (["bogus"], "invalid choice: 'bogus'"),
    ([], "the following arguments are required: COMMAND"),
])
def test_errors_are_one_line_and_exit_2(device, argv, message, capsys):
    code = _run(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err


def _run(argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse exits itself
        return exc.code


def test_failed_run_leaves_an_existing_save_file_alone(device, tmp_path, capsys):
    path = tmp_path / "model.npz"
    path.write_bytes(b"good model")
    assert _run(["train", "--device", device, *FAST, "--layers", "5,10", "--save", str(path)]) == 2
    assert path.read_bytes() == b"good model"
    assert _run(["train", "--device", device, *FAST, "--save", str(tmp_path / "missing" / "m.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("xpnet") is None, reason="the xpnet console script is not installed")
def test_console_script_runs(device):
    proc = subprocess.run(["xpnet", "train", "--device", device, *FAST, "--quiet"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "xpnet", "train", "--epochs", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


def test_help_lists_every_flag(device, capsys):
    assert _run(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--device", "--layers", "--activation", "--output", "--loss", "--init", "--optimizer", "--lr",
                 "--momentum", "--weight-decay", "--schedule", "--batch-size", "--epochs", "--val-fraction", "--seed",
                 "--dtype", "--save", "--json", "--quiet"):
        assert flag in out
