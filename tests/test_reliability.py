"""Checkpoints, resume, signals, divergence and out-of-memory: nothing good is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import xpnet
from xpnet.train import Callback, OutOfMemory, TrainingDiverged, TrainingInterrupted

EPOCHS = 4


def _data():
    return xpnet.make_moons(150, noise=0.2, seed=7)  # 150 / 32: 5 steps per epoch, the last one partial


def _model(backend, **kw):
    return xpnet.MLP([2, 12, 2], activation="tanh", backend=backend, seed=1, **kw)


OPTIMIZERS = {"adam": lambda: xpnet.Adam(1e-2, weight_decay=0.01, schedule="cosine"),
              "nesterov": lambda: xpnet.SGD(0.1, momentum=0.9, nesterov=True, schedule="step")}


class SignalAt(Callback):
    """Sends a real signal to this process after global step ``at`` (or at an epoch's end)."""

    def __init__(self, at: int | None = None, epoch_end: int | None = None, signum=signal.SIGINT):
        self.at, self.epoch_end, self.signum, self.count, self.fired = at, epoch_end, signum, 0, False

    def on_batch_end(self, batch):
        self.count += 1
        if self.count == self.at and not self.fired:
            self.fired = True
            os.kill(os.getpid(), self.signum)

    def on_epoch_end(self, model, history):
        if history.epoch[-1] == self.epoch_end and not self.fired:
            self.fired = True
            os.kill(os.getpid(), self.signum)
        return False


def _params(model):
    return [xpnet.to_numpy(p).copy() for p in model.params]


def _same(a, b, backend):
    for x, y in zip(a, b):
        if backend.is_cupy:  # the GPU is not promised to be bit-for-bit
            np.testing.assert_allclose(x, y, rtol=1e-6)
        else:
            np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("interrupt", [dict(at=1), dict(at=7), dict(at=10), dict(at=18), dict(epoch_end=2)],
                         ids=["first-step", "mid-epoch", "epoch-boundary", "last-epoch", "during-validation"])
def test_interrupted_and_resumed_run_is_bit_identical(backend, tmp_path, optimizer, interrupt):
    X, y = _data()
    val = xpnet.make_moons(40, seed=8)
    whole = _model(backend)
    ref = xpnet.fit(whole, X, y, OPTIMIZERS[optimizer](), epochs=EPOCHS, batch_size=32, validation_data=val, verbose=False)

    ck = tmp_path / "ck.npz"
    first = _model(backend)
    with pytest.raises(TrainingInterrupted) as info:
        xpnet.fit(first, X, y, OPTIMIZERS[optimizer](), epochs=EPOCHS, batch_size=32, validation_data=val,
                  verbose=False, callbacks=[SignalAt(**interrupt)], checkpoint=str(ck))
    assert info.value.signum == signal.SIGINT and info.value.exit_code == 130 and info.value.checkpoint == str(ck)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored

    second = _model(backend, init="small")  # other starting weights: all must come from the checkpoint
    history = xpnet.fit(second, X, y, OPTIMIZERS[optimizer](), epochs=EPOCHS, batch_size=32, validation_data=val,
                        verbose=False, resume=str(ck))
    _same(_params(second), _params(whole), backend)
    assert history.epoch == ref.epoch
    if not backend.is_cupy:
        assert history.train_loss == ref.train_loss
    assert history.lr == ref.lr and history.val_loss == pytest.approx(ref.val_loss, rel=1e-6)


def test_sigterm_and_checkpoint_every(backend, tmp_path):
    X, y = _data()
    ck = tmp_path / "ck.npz"
    model = _model(backend)
    with pytest.raises(TrainingInterrupted) as info:
        xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=10, batch_size=32, verbose=False, checkpoint=str(ck),
                  checkpoint_every=3, callbacks=[SignalAt(at=23, signum=signal.SIGTERM)])
    assert info.value.exit_code == 143 and info.value.epoch == 5 and info.value.step == 3


def test_interrupt_without_checkpoint_keeps_a_consistent_model(backend):
    X, y = _data()
    model = _model(backend)
    with pytest.raises(TrainingInterrupted) as info:
        xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=3, batch_size=32, verbose=False, callbacks=[SignalAt(at=3)])
    assert info.value.checkpoint is None and "no checkpoint" in str(info.value)
    assert all(np.all(np.isfinite(p)) for p in _params(model))


def test_checkpoint_holds_what_resume_needs(backend, tmp_path):
    X, y = _data()
    ck = tmp_path / "ck.npz"
    xpnet.fit(_model(backend), X, y, xpnet.Adam(1e-2), epochs=2, batch_size=32, verbose=False, checkpoint=str(ck),
              config={"note": "from the test"})
    with np.load(ck, allow_pickle=False) as npz:
        names = set(npz.files)
        import json

        meta = json.loads(npz["metadata"].tobytes())
    assert {"param.W1", "param.b2", "opt.m.0", "opt.v.0", "position.losses"} <= names
    assert "opt.m.1" not in names  # the moments are one flat buffer each, laid out like the parameters
    assert meta["position"] == {"epoch": 2, "step": 0, "correct": 0} and meta["optimizer"]["t"] == 10
    assert meta["model"]["sizes"] == [2, 12, 2] and meta["run"]["note"] == "from the test"
    assert len(meta["history"]["train_loss"]) == 2


@pytest.mark.parametrize("change,message", [
    (dict(sizes=[2, 8, 2]), "sizes=\\[2, 12, 2\\], but this run has sizes=\\[2, 8, 2\\]"),
    (dict(activation="relu"), "activation='tanh'"),
    (dict(batch_size=16), "batch_size=32, but this run has batch_size=16"),
    (dict(seed=5), "seed=0, but this run has seed=5"),
    (dict(optimizer="sgd"), "optimizer='Adam', but this run has optimizer='SGD'"),
    (dict(rows=100), "m=150, but this run has m=100"),
])
def test_resume_refuses_a_different_run(backend, tmp_path, change, message):
    X, y = _data()
    ck = tmp_path / "ck.npz"
    xpnet.fit(_model(backend), X, y, xpnet.Adam(1e-2), epochs=1, batch_size=32, verbose=False, checkpoint=str(ck))
    model = xpnet.MLP(change.get("sizes", [2, 12, 2]), activation=change.get("activation", "tanh"), backend=backend)
    opt = xpnet.SGD(0.1) if change.get("optimizer") == "sgd" else xpnet.Adam(1e-2)
    rows = change.get("rows", 150)
    with pytest.raises(ValueError, match=message):
        xpnet.fit(model, X[:rows], y[:rows], opt, epochs=3, batch_size=change.get("batch_size", 32),
                  seed=change.get("seed", 0), verbose=False, resume=str(ck))


def test_divergence_names_epoch_and_step_and_keeps_the_good_checkpoint(backend, tmp_path):
    X, y = _data()
    ck = tmp_path / "ck.npz"
    model = _model(backend)
    xpnet.fit(model, X, y, xpnet.SGD(0.1), epochs=1, batch_size=32, verbose=False, checkpoint=str(ck))
    good = ck.read_bytes()
    with pytest.raises(TrainingDiverged, match=r"diverged at epoch 2, step \d: the loss became NaN or infinite; "
                                               r"try a lower learning rate \(e.g. --lr 1e\+37"):
        xpnet.fit(model, X, y, xpnet.SGD(1e38), epochs=3, batch_size=32, verbose=False, checkpoint=str(ck),
                  resume=str(ck), allow_changes=True)
    assert ck.read_bytes() == good


def test_out_of_memory_says_what_to_change(backend, monkeypatch):
    class OutOfMemoryError(Exception):  # the name CuPy's error has
        pass

    def boom(self, X, *args, **kwargs):
        raise OutOfMemoryError("Out of memory allocating 1,073,741,824 bytes (allocated so far: 0 bytes).")

    X, y = _data()
    model = _model(backend)
    monkeypatch.setattr(xpnet.MLP, "_forward", boom)
    with pytest.raises(OutOfMemory, match=r"out of memory on .* with batch size 32: training needs about [\d.]+ KiB .*"
                                          r"try a smaller --batch-size, e.g. 16"):
        xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=1, batch_size=32, verbose=False)


class CUDADriverError(RuntimeError):
    """Named as CuPy's: its text is cuGetErrorName and cuGetErrorString joined by ': '."""

    __module__ = "cupy_backends.cuda.api.driver"


class CUBLASError(RuntimeError):
    """Named as CuPy's: its text is the bare status name."""

    __module__ = "cupy_backends.cuda.libs.cublas"


CUDA_OUT_OF_MEMORY = [CUDADriverError("CUDA_ERROR_OUT_OF_MEMORY: out of memory"), CUBLASError("CUBLAS_STATUS_ALLOC_FAILED")]


def test_cuda_driver_and_cublas_errors_are_out_of_memory_only_when_they_say_so():
    from xpnet.faults import is_out_of_memory

    assert all(is_out_of_memory(exc) for exc in CUDA_OUT_OF_MEMORY)
    assert not is_out_of_memory(CUDADriverError("CUDA_ERROR_LAUNCH_FAILED: unspecified launch failure"))
    assert not is_out_of_memory(CUBLASError("CUBLAS_STATUS_EXECUTION_FAILED"))
    assert not is_out_of_memory(RuntimeError("CUBLAS_STATUS_ALLOC_FAILED"))  # not one of CuPy's CUDA errors


@pytest.mark.parametrize("error", CUDA_OUT_OF_MEMORY, ids=lambda e: type(e).__name__)
def test_cuda_out_of_memory_on_the_cli_is_one_line(monkeypatch, capsys, error):
    from cli_helpers import run

    def boom(self, X, *args, **kwargs):
        raise error

    monkeypatch.setattr(xpnet.MLP, "_forward", boom)
    argv = ["train", "--device", "cpu", "--dataset", "moons", "--epochs", "1", "--batch-size", "16", "--layers", "2,8,2"]
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("xpnet: error: out of memory on cpu with batch size 16: ")
    assert f"({type(error).__name__}: {error})" in err and "try a smaller --batch-size, e.g. 8" in err


def test_memory_estimate_counts_what_a_step_holds():
    from xpnet.faults import memory_estimate

    step, data = memory_estimate([784, 128, 64, 10], 256, 4, 2, 60000)
    n_params = 784 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert step == 4 * (n_params * 5 + 256 * (784 + 10 + 3 * (128 + 64 + 10)))
    assert data == 60000 * (4 * 794 + 8)


# ------------------------------------------------------------------ the CLI
CLI = [sys.executable, "-m", "xpnet", "train", "--dataset", "moons", "--epochs", "400", "--batch-size", "16",
       "--layers", "2,64,64,2"]


def _interrupt_cli(argv, signum, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    for line in proc.stdout:
        if line.startswith("epoch"):  # training is under way
            proc.send_signal(signum)
            break
    out, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.parametrize("signum,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_cli_interrupt_writes_checkpoint_and_resume_matches(device, tmp_path, signum, code):
    argv = [*CLI, "--device", device, "--epochs", "40"]
    code_got, err = _interrupt_cli([*argv, "--checkpoint", "ck.npz", "--save", "model.npz"], signum, tmp_path)
    assert code_got == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "resume with: xpnet train" in lines[0] and lines[0].endswith("--resume ck.npz")
    assert not (tmp_path / "model.npz").exists()  # --save is written only when a run completes
    resume = lines[0].split("resume with: xpnet ", 1)[1].split()
    done = subprocess.run([sys.executable, "-m", "xpnet", *resume, "--quiet"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    whole = subprocess.run([*argv, "--quiet", "--save", "whole.npz"], capture_output=True, text=True, cwd=tmp_path,
                           timeout=300)
    assert whole.returncode == 0, whole.stderr
    a, b = xpnet.load(tmp_path / "model.npz"), xpnet.load(tmp_path / "whole.npz")
    for p, q in zip(a.params, b.params):
        (np.testing.assert_array_equal if device == "cpu" else np.testing.assert_allclose)(p, q)


def test_cli_interrupt_without_checkpoint(device, tmp_path):
    code, err = _interrupt_cli([*CLI, "--device", device], signal.SIGINT, tmp_path)
    assert code == 130 and "no checkpoint was written (add --checkpoint PATH" in err and len(err.strip().splitlines()) == 1


def test_cli_divergence_exits_3_and_keeps_save(device, tmp_path):
    (tmp_path / "model.npz").write_bytes(b"the last good model")
    proc = subprocess.run([sys.executable, "-m", "xpnet", "train", "--device", device, "--dataset", "moons",
                           "--optimizer", "sgd", "--lr", "1e38", "--save", "model.npz", "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 3
    assert "diverged at epoch 1, step" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert (tmp_path / "model.npz").read_bytes() == b"the last good model"


def test_cli_out_of_memory_is_one_line(device, monkeypatch, capsys):
    from xpnet.cli import main

    def boom(self, X, *args, **kwargs):
        raise MemoryError("Unable to allocate 9.00 GiB for an array with shape (8192, 300000)")

    monkeypatch.setattr(xpnet.MLP, "_forward", boom)
    assert main(["train", "--device", device, "--epochs", "1", "--batch-size", "8192"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "batch size 8000" in err and "smaller --batch-size, e.g. 4000" in err
