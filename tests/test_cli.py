"""The command line: it trains, reports, and turns every user error into one line and exit 2."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from cli_helpers import last_json, run

import xpnet
from xpnet.cli import PRESETS

FAST = ["--epochs", "1", "--layers", "784,16,10"]



def test_train_prints_epochs_and_test_accuracy(device, capsys):
    assert run(["train", "--device", device, *FAST, "--epochs", "2"]) == 0
    out = capsys.readouterr().out  # not a terminal here: plain lines, no bars
    assert "epoch 1/2" in out and "epoch 2/2" in out and "train_acc " in out and "samples/s" in out
    assert out.strip().splitlines()[-1].startswith("test accuracy ")


def test_train_json_and_save(device, tmp_path, capsys):
    path = tmp_path / "model.npz"
    assert run(["train", "--device", device, *FAST, "--json", "--save", str(path), "--val-fraction", "0.1"]) == 0
    result = last_json(capsys.readouterr().out)
    for key in ("dataset", "device", "layers", "epochs", "train_loss", "test_accuracy", "seconds", "samples_per_second"):
        assert key in result
    assert result["layers"] == [784, 16, 10] and result["dataset"] == "mnist" and 0 < result["test_accuracy"] <= 1
    assert xpnet.load(path).sizes == [784, 16, 10]


def test_presets_set_values_and_flags_override_them(device, capsys):
    assert run(["train", "--device", device, "--preset", "shallow3", "--epochs", "3", "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["layers"] == [3, 4, 3, 1] and result["dataset"] == "sphere" and result["epochs"] == 3


def test_nielsen_preset_prints_network_py_lines(device, capsys):
    assert run(["train", "--device", device, "--preset", "nielsen", "--epochs", "2"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("Epoch 0: ") and lines[0].endswith(" / 2000")
    assert lines[1].startswith("Epoch 1: ")
    correct = int(lines[1].split()[2])
    assert 1000 < correct <= 2000


def test_planar_preset_reaches_about_90_percent(device, capsys):
    assert run(["train", "--device", device, "--preset", "planar", "--epochs", "2000", "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert result["layers"] == [2, 4, 1] and result["train_accuracy"] > 0.85 and result["test_accuracy"] > 0.85


def test_sweep_table_and_plot(device, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    argv = ["sweep", "--device", device, "--preset", "moons-sweep", "--hidden", "1,4", "--epochs", "20"]
    assert run([*argv, "--plot", str(tmp_path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["hidden", "train", "acc", "test", "acc", "test", "loss", "seconds"]
    assert out[1].split()[0] == "1" and out[2].split()[0] == "4"
    assert (tmp_path / "sweep_boundaries.png").stat().st_size > 1000
    assert run([*argv, "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert [r["hidden"] for r in result["results"]] == [1, 4]


def test_train_on_user_files(device, tmp_path, capsys):
    X, y = xpnet.make_moons(300, seed=1)
    np.savez(tmp_path / "moons.npz", X=X, y=y)
    np.savetxt(tmp_path / "moons.csv", np.column_stack([X, y]), delimiter=",", header="x1,x2,label", comments="")
    for name in ("moons.npz", "moons.csv"):
        assert run(["train", "--device", device, "--data", str(tmp_path / name), "--epochs", "30", "--json"]) == 0
        result = last_json(capsys.readouterr().out)
        assert result["layers"] == [2, 128, 64, 2] and result["test_accuracy"] > 0.8, name


def test_evaluate_and_predict(device, tmp_path, capsys):
    model_path = tmp_path / "m.npz"
    assert run(["train", "--device", device, *FAST, "--quiet", "--save", str(model_path)]) == 0
    capsys.readouterr()
    assert run(["evaluate", "--model", str(model_path), "--device", device]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "recall is the per-class accuracy" in out and "true\\pred" in out
    assert run(["evaluate", "--model", str(model_path), "--device", device, "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert len(result["per_class_accuracy"]) == 10 and np.array(result["confusion_matrix"]).sum() == 2000

    d = xpnet.load_mnist()
    np.savez(tmp_path / "x.npz", X=d.X_test[:5])
    assert run(["predict", "--model", str(model_path), "--data", str(tmp_path / "x.npz"), "--device", device]) == 0
    printed = [int(v) for v in capsys.readouterr().out.split()]
    expected = xpnet.to_numpy(xpnet.load(model_path).predict(d.X_test[:5])).tolist()
    assert printed == expected
    for out_name in ("p.csv", "p.npy"):
        target = tmp_path / out_name
        assert run(["predict", "--model", str(model_path), "--data", str(tmp_path / "x.npz"), "--proba",
                    "--out", str(target), "--device", device]) == 0
        if out_name.endswith(".csv"):  # a header row names each column by its class
            assert target.read_text().splitlines()[0] == "0,1,2,3,4,5,6,7,8,9"
        proba = np.load(target) if out_name.endswith(".npy") else np.loadtxt(target, delimiter=",", skiprows=1)
        assert proba.shape == (5, 10) and np.allclose(proba.sum(axis=1), 1, atol=1e-4)


def test_train_plots(device, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    assert run(["train", "--device", device, *FAST, "--quiet", "--plot", str(tmp_path)]) == 0
    assert {p.name for p in tmp_path.iterdir()} == {"history.png", "confusion.png", "misclassified.png"}
    assert run(["train", "--device", device, "--dataset", "circles", "--epochs", "2", "--quiet", "--plot", str(tmp_path)]) == 0
    assert (tmp_path / "decision_boundary.png").exists()


def test_info(capsys):
    assert run(["info"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"xpnet {xpnet.__version__}") and "numpy" in out and "backends:" in out and "cupy" in out


ERRORS = [
    (["train", "--epochs", "0"], "--epochs: '0' must be > 0"),
    (["train", "--lr", "-1"], "--lr: '-1' must be > 0"),
    (["train", "--lr", "fast"], "--lr: 'fast' is not a number"),
    (["train", "--batch-size", "0"], "--batch-size: '0' must be > 0"),
    (["train", "--batch-size", "half"], "--batch-size: 'half' is not an integer"),
    (["train", "--layers", "784,abc,10"], "--layers: '784,abc,10' is not a comma-separated list"),
    (["train", "--layers", "784"], "expected at least 2 integers >= 1"),
    (["train", "--layers", "100,10"], "--layers starts with 100 but mnist has 784 features: use --layers 784,10"),
    (["train", "--layers", "784,32,7"], "--layers ends with 7 but mnist needs 10 output(s) for --output softmax"),
    (["train", "--activation", "swish"], "--activation: invalid choice: 'swish'"),
    (["train", "--dataset", "cifar"], "--dataset: invalid choice: 'cifar'"),
    (["train", "--val-fraction", "1.5"], "--val-fraction: '1.5' must be in [0, 1)"),
    (["train", "--momentum", "1"], "--momentum: '1' must be in [0, 1)"),
    (["train", "--device", "tpu"], "device='tpu' is not a device"),
    (["train", "--loss", "binary_cross_entropy"], "loss='binary_cross_entropy' does not fit output='softmax'"),
    (["train", "--preset", "moons-sweep"], "--preset moons-sweep is for 'xpnet sweep', not 'xpnet train'"),
    (["train", "--preset", "nope"], "--preset: invalid choice: 'nope'"),
    (["train", "--data", "/no/such/file.csv"], "--data '/no/such/file.csv' does not exist"),
    (["train", "--data", "/"], "--data '/' is a directory"),
    (["sweep", "--layers", "2,3,2"], "unrecognized arguments: --layers"),
    (["evaluate"], "the following arguments are required: --model"),
    (["evaluate", "--model", "/no/such.npz"], "--model '/no/such.npz' does not exist"),
    (["predict", "--model", "m.npz"], "the following arguments are required: --data"),
    (["bogus"], "invalid choice: 'bogus'"),
    (["train", "--threads", "0"], "--threads: '0' must be > 0"),
    (["bench", "--threads", "two"], "--threads: 'two' is not an integer"),
]


@pytest.mark.parametrize("argv,message", ERRORS)
def test_errors_are_one_line_and_exit_2(host_device, argv, message, capsys):
    """Bad flags are named before any device is resolved: the same line with --device cuda,
    GPU or not."""
    code = run(argv if "--device" in argv else [*argv, "--device", host_device])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert message in err and "Traceback" not in err


def test_file_errors_in_evaluate_and_predict(device, tmp_path, capsys):
    model_path = tmp_path / "m.npz"
    assert run(["train", "--device", device, "--dataset", "moons", "--epochs", "1", "--quiet", "--save", str(model_path)]) == 0
    capsys.readouterr()
    wide = str(tmp_path / "wide.npz")
    np.savez(wide, X=np.zeros((3, 5)))
    cases = [
        (["evaluate", "--model", str(model_path), "--dataset", "mnist"], "the model takes 2 features but mnist has 784"),
        (["predict", "--model", str(model_path), "--data", wide], "has shape (3, 5): the model expects (m, 2)"),
        (["predict", "--model", str(model_path), "--data", wide, "--out", "p.txt"], "--out 'p.txt': expected a .csv or .npy"),
        (["evaluate", "--model", str(tmp_path / "wide.npz")], "has no metadata"),
    ]
    for argv, message in cases:
        assert run([*argv, "--device", device]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_failed_run_leaves_an_existing_save_file_alone(host_device, tmp_path, capsys):
    path = tmp_path / "model.npz"
    path.write_bytes(b"good model")
    assert run(["train", "--device", host_device, *FAST, "--layers", "5,10", "--save", str(path)]) == 2
    assert path.read_bytes() == b"good model"
    assert run(["train", "--device", host_device, *FAST, "--save", str(tmp_path / "missing" / "m.npz")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert run(["train", "--device", host_device, *FAST, "--save", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_plot_without_matplotlib_says_how_to_install(host_device, monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert run(["train", "--device", host_device, *FAST, "--plot", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err
    assert 'pip install "matplotlib>=3.7"' in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "p").exists()


@pytest.mark.skipif(shutil.which("xpnet") is None, reason="the xpnet console script is not installed")
def test_console_script_runs(device):
    proc = subprocess.run(["xpnet", "train", "--device", device, *FAST, "--quiet"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "xpnet", "train", "--epochs", "0"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["train", "sweep", "evaluate", "predict", "bench", "info"])
def test_help_is_complete(command, capsys):
    assert run([command, "--help"]) == 0
    out = capsys.readouterr().out
    if command != "info":  # every command that computes takes --threads and states the default's rule
        assert "--threads" in out and "1 where at most 2 cores are usable, else half of them" in " ".join(out.split())
    if command in ("train", "sweep"):
        for flag in ("--device", "--dataset", "--data", "--label-column", "--activation", "--output", "--loss", "--init",
                     "--optimizer", "--lr", "--momentum", "--weight-decay", "--schedule", "--batch-size", "--epochs",
                     "--val-fraction", "--seed", "--dtype", "--plot", "--json", "--quiet", "--preset"):
            assert flag in out, flag
    assert run(["--help"]) == 0
    top = capsys.readouterr().out
    assert all(c in top for c in ("train", "sweep", "evaluate", "predict", "info"))


def test_every_preset_names_real_settings():
    from dataclasses import fields

    from xpnet.cli import PRESETS_HELP, TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    for preset, (command, settings) in PRESETS.items():
        assert command in ("train", "sweep") and set(settings) <= names, preset
        assert f"\n  {preset} " in PRESETS_HELP, f"{preset} is missing from train --help"


# ------------------------------------------------------------ threads
def test_threads_flag_sets_the_blas_threads(device, capsys):
    from xpnet.cli import blas_threads

    before = blas_threads()
    for n in (1, 2):
        assert run(["train", "--device", device, *FAST, "--threads", str(n), "--json"]) == 0
        assert last_json(capsys.readouterr().out)["blas_threads"] == n
    assert run(["train", "--device", device, *FAST, "--threads", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[0].endswith(", 2 BLAS threads")
    assert blas_threads() == before  # restored when the command ends


def test_default_threads_rule(device, monkeypatch, capsys):
    from xpnet import threads

    for name in threads.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for cores, count in ((1, 1), (2, 1), (3, 1), (4, 2), (16, 8)):
        monkeypatch.setattr(threads, "usable_cores", lambda cores=cores: cores)
        assert threads.default_threads() == count, cores
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert run(["train", "--device", device, *FAST, "--json"]) == 0
    assert last_json(capsys.readouterr().out)["blas_threads"] == 1
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")  # the user's own setting is left to the BLAS
    assert threads.default_threads() is None


def test_bench_pins_every_implementation_to_one_thread_count(host_device, monkeypatch):
    import types

    from xpnet import bench
    from xpnet.cli import blas_threads

    fake_torch = types.SimpleNamespace(threads=4)
    fake_torch.get_num_threads = lambda: fake_torch.threads
    fake_torch.set_num_threads = lambda n: setattr(fake_torch, "threads", n)
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setattr(bench, "torch_available", lambda: True)
    monkeypatch.setattr(bench, "cases", lambda device, quick=False: [bench.Case((784, 16, 10), 64, "sgd")])
    for name in ("xpnet_runner", "torch_runner", "gemm_only_runner", "fused_runner"):
        monkeypatch.setattr(bench, name, lambda case, device="cpu", name=name: name)
    monkeypatch.setattr(bench, "reference_runner", lambda case: "reference_runner")
    monkeypatch.setattr(bench, "gemm_gflops", lambda device, dtype, tf32=False: 1.0)
    seen = {}

    def measure(runner, repeats=3):  # records the thread counts each implementation runs with
        seen[runner] = (blas_threads(), fake_torch.threads)
        return 1.0

    monkeypatch.setattr(bench, "measure", measure)
    before = blas_threads()
    bench.run_suite(host_device, threads=1)
    expected = {"xpnet_runner", "torch_runner", "gemm_only_runner"}
    assert set(seen) == expected | ({"reference_runner"} if host_device == "cpu" else {"fused_runner"})
    assert set(seen.values()) == {(1, 1)}
    assert blas_threads() == before and fake_torch.threads == 4  # both restored


# ------------------------------------------------------------ a closed pipe
def _xpnet(*argv: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "xpnet", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            **kwargs)


def test_closed_pipe_during_epoch_lines_exits_0_quietly(device, tmp_path):
    proc = _xpnet("train", "--device", device, "--layers", "784,16,10", "--epochs", "30", cwd=tmp_path)
    assert proc.stdout.readline().startswith(b"xpnet: mnist, 8000 train")
    proc.stdout.close()  # like `| head -1`
    _, err = proc.communicate(timeout=120)  # stdout is closed: reads stderr to its end, and closes it
    assert proc.returncode == 0 and err == b"", err
    assert sorted(tmp_path.iterdir()) == []


def test_closed_pipe_before_the_final_json_exits_0_quietly(device, tmp_path):
    proc = _xpnet("train", "--device", device, "--layers", "784,16,10", "--epochs", "2", "--json", cwd=tmp_path)
    proc.stdout.close()  # gone before the one line --json prints
    _, err = proc.communicate(timeout=120)  # stdout is closed: reads stderr to its end, and closes it
    assert proc.returncode == 0 and err == b"", err


def test_closed_pipe_still_writes_the_files_asked_for(device, tmp_path):
    proc = _xpnet("train", "--device", device, "--layers", "784,16,10", "--epochs", "3", "--save", "m.npz",
                  cwd=tmp_path)
    proc.stdout.readline()
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)  # stdout is closed: reads stderr to its end, and closes it
    assert proc.returncode == 0 and err == b"", err
    assert xpnet.load(tmp_path / "m.npz").sizes == [784, 16, 10]  # the run went on to its end


def test_closed_pipe_during_progress_bars(device, tmp_path):
    import os
    import pty

    primary, terminal = pty.openpty()  # stdout on a terminal: progress bars on stderr, a pipe here
    proc = subprocess.Popen([sys.executable, "-m", "xpnet", "train", "--device", device, "--layers", "784,16,10",
                             "--epochs", "5"], stdout=terminal, stderr=subprocess.PIPE, cwd=tmp_path)
    os.close(terminal)
    assert b"epoch 1/5" in proc.stderr.readline()  # the first bar, finished
    proc.stderr.close()
    screen = b""
    while True:  # what the terminal shows, until the process closes it
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # EIO: the other side has closed
            break
        if not chunk:
            break
        screen += chunk
    os.close(primary)
    assert proc.wait(timeout=120) == 0
    assert b"test accuracy" in screen and b"Traceback" not in screen  # the run finished; stdout was still read
