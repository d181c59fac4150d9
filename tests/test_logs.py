"""Logs that survive the run: CSVLogger and train --log, a row per epoch on disk as it ends."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys

import pytest
from cli_helpers import last_json, run

import xpnet
from xpnet.logs import CSVLogger
from xpnet.train import Callback, TrainingInterrupted

EVERYTHING = ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds", "samples_per_second"]


def _read(path):
    """``(header, rows)`` of a log, every field as written."""
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    return lines[0], lines[1:]


def _matches(path, history):
    """Every row of the log is the history's epoch, value for value (floats read back exactly)."""
    header, rows = _read(path)
    assert [int(r[0]) for r in rows] == history.epoch
    for j, name in enumerate(header):
        assert [float(r[j]) for r in rows] == [float(v) for v in getattr(history, name)], name
    return header


def _moons():
    return xpnet.make_moons(150, noise=0.2, seed=7)


@pytest.mark.parametrize("kind", ["classifier", "classifier-validated", "regressor", "regressor-validated"])
def test_rows_are_the_history_and_the_header_names_what_the_run_measures(backend, tmp_path, kind):
    X, y = _moons()
    if kind.startswith("regressor"):
        y = X[:, 0] * 2.0 - X[:, 1]
        model = xpnet.MLP([2, 8, 1], activation="tanh", output="identity", backend=backend, seed=1)
    else:
        model = xpnet.MLP([2, 8, 2], activation="tanh", backend=backend, seed=1)
    val = (X[:40], y[:40]) if kind.endswith("validated") else None
    log = tmp_path / "log.csv"
    history = xpnet.fit(model, X, y, xpnet.SGD(0.05, schedule="cosine"), epochs=4, batch_size=32, verbose=False,
                        validation_data=val, callbacks=[CSVLogger(log)])
    header = _matches(log, history)
    expected = [c for c in EVERYTHING
                if (kind.startswith("classifier") or "accuracy" not in c) and (val is not None or not c.startswith("val"))]
    assert header == expected
    assert len(set(history.lr)) > 1  # the schedule's learning rate, epoch by epoch


class FailAt(Callback):
    """Raises at the end of epoch ``epoch`` (a crash after the log's row and the checkpoint)."""

    def __init__(self, epoch):
        self.epoch = epoch

    def on_epoch_end(self, model, history):
        if history.epoch[-1] == self.epoch:
            raise RuntimeError("crash")
        return False


def test_resume_rewrites_the_log_from_the_checkpoint_without_duplicates(backend, tmp_path):
    X, y = _moons()
    log, ck = tmp_path / "log.csv", tmp_path / "ck.npz"

    def run_fit(callbacks, **kw):
        model = xpnet.MLP([2, 8, 2], activation="tanh", backend=backend, seed=1)
        return xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=6, batch_size=32, verbose=False, validation_data=(X, y),
                         checkpoint=str(ck), checkpoint_every=2, callbacks=callbacks, **kw)

    with pytest.raises(RuntimeError, match="crash"):
        run_fit([CSVLogger(log), FailAt(3)])  # epochs 1-3 logged, the checkpoint holds 1-2
    _, rows = _read(log)
    assert [r[0] for r in rows] == ["1", "2", "3"]
    first_two = log.read_text().splitlines()[:3]
    history = run_fit([CSVLogger(log)], resume=str(ck))
    assert history.epoch == [1, 2, 3, 4, 5, 6]
    _matches(log, history)  # epoch 3 once: the resumed run's, not the crashed run's
    assert log.read_text().splitlines()[:3] == first_two  # the checkpoint's epochs, as they were written


def test_an_old_log_is_kept_until_the_run_finishes_an_epoch(backend, tmp_path):
    X, y = _moons()
    log = tmp_path / "log.csv"
    log.write_text("the last good log\n")

    class Interrupt(Callback):
        def on_batch_end(self, batch):
            os.kill(os.getpid(), signal.SIGINT)

    model = xpnet.MLP([2, 8, 2], backend=backend)
    with pytest.raises(TrainingInterrupted):
        xpnet.fit(model, X, y, epochs=3, batch_size=32, verbose=False, callbacks=[CSVLogger(log), Interrupt()])
    assert log.read_text() == "the last good log\n"
    assert [p.name for p in tmp_path.iterdir()] == ["log.csv"]  # no temporary file left behind
    history = xpnet.fit(model, X, y, epochs=2, batch_size=32, verbose=False, callbacks=[CSVLogger(log)])
    _matches(log, history)  # a finished epoch replaces it


@pytest.mark.parametrize("path,message", [
    ("dir", "path='dir' is a directory"),
    ("missing/log.csv", "path='missing/log.csv': directory 'missing' does not exist"),
])
def test_csvlogger_refuses_a_path_it_cannot_write(tmp_path, monkeypatch, path, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    with pytest.raises(ValueError, match=message):
        CSVLogger(path)


# ------------------------------------------------------------------ the CLI
CLI = [sys.executable, "-m", "xpnet", "train", "--dataset", "moons", "--batch-size", "16", "--layers", "2,64,64,2"]


def test_cli_log_has_a_row_per_epoch_and_json_is_unchanged(device, tmp_path, capsys):
    log = tmp_path / "run.csv"
    assert run(["train", "--device", device, "--dataset", "moons", "--epochs", "3", "--val-fraction", "0.2",
                "--log", str(log), "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    assert "log" not in result
    header, rows = _read(log)
    assert header == EVERYTHING and [r[0] for r in rows] == ["1", "2", "3"]
    assert float(rows[-1][1]) == result["train_loss"] and float(rows[-1][2]) == result["train_accuracy"]


def test_a_killed_run_keeps_its_rows(device, tmp_path):
    """SIGKILL: no handler runs, nothing is flushed at exit; every epoch printed is in the log."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*CLI, "--device", device, "--epochs", "400", "--log", "log.csv"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    printed = []
    for line in proc.stdout:
        if line.startswith("epoch"):
            printed.append(line)
            if len(printed) == 3:
                proc.kill()
                break
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    header, rows = _read(tmp_path / "log.csv")
    assert header == ["epoch", "train_loss", "train_accuracy", "lr", "seconds", "samples_per_second"]
    assert len(rows) >= 3 and [int(r[0]) for r in rows] == list(range(1, len(rows) + 1))
    assert all(len(r) == len(header) for r in rows)  # whole rows only
    for line in printed:  # the epoch line's loss is its row's, rounded (400 epochs: every 20th is printed)
        row = rows[int(line.split()[1].split("/")[0]) - 1]
        assert f"loss {float(row[1]):.4f}" in line and f"train_acc {100 * float(row[2]):.2f}%" in line


def test_cli_resume_continues_the_log(device, tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = [*CLI, "--device", device, "--epochs", "30", "--checkpoint", "ck.npz", "--log", "log.csv"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    for line in proc.stdout:
        if line.startswith("epoch"):
            proc.send_signal(signal.SIGINT)
            break
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    resume = err.strip().split("resume with: xpnet ", 1)[1].split()
    assert "--log" in resume  # the hint repeats the flags, --log included
    done = subprocess.run([sys.executable, "-m", "xpnet", *resume, "--quiet"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    _, rows = _read(tmp_path / "log.csv")
    assert [int(r[0]) for r in rows] == list(range(1, 31))


@pytest.mark.parametrize("argv,message", [
    (["--log", "dir"], "--log 'dir' is a directory: expected a file path"),
    (["--log", "missing/log.csv"], "--log 'missing/log.csv': directory 'missing' does not exist"),
    (["--log", "./d.csv", "--data", "d.csv"], "--log './d.csv' is the same file as --data 'd.csv'"),
    (["--log", "model.npz"], "--save 'model.npz' is the same file as --log 'model.npz'"),
    (["--log", "ck.npz", "--checkpoint", "ck.npz"], "--checkpoint 'ck.npz' is the same file as --log 'ck.npz'"),
    (["--log", "ck.npz", "--resume", "ck.npz"], "--log 'ck.npz' is the same file as --resume 'ck.npz'"),
    (["--log", "link.csv"], "--save 'model.npz' is the same file as --log 'link.csv'"),
])
def test_cli_refuses_a_bad_log_path_in_one_line_and_touches_nothing(host_device, tmp_path, monkeypatch, capsys, argv,
                                                                    message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    (tmp_path / "model.npz").write_bytes(b"a good model")
    (tmp_path / "ck.npz").write_bytes(b"a good checkpoint")
    (tmp_path / "link.csv").symlink_to(tmp_path / "model.npz")
    (tmp_path / "d.csv").write_text("1,2,0\n2,2,1\n3,4,0\n4,4,1\n")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert run(["train", "--device", host_device, "--epochs", "1", "--save", "model.npz", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_log_is_in_the_help(capsys):
    assert run(["train", "-h"]) == 0
    assert "--log FILE.csv" in capsys.readouterr().out
    assert run(["sweep", "--log", "x.csv"]) == 2  # one file per run: sweep trains many
    assert "unrecognized arguments: --log" in capsys.readouterr().err
    assert xpnet.CSVLogger is CSVLogger


# ------------------------------------------------------------------ TensorBoard
def _scalars(logdir):
    """``{tag: [(step, value)]}`` of every event file in ``logdir`` (oldest first), and the steps of
    restart marks: the TFRecord framing (length, its CRC, the Event, its CRC) read here by hand."""
    import struct

    from tensorboardX.proto.event_pb2 import Event, SessionLog

    found, restarts = {}, []
    for path in sorted(logdir.iterdir(), key=lambda p: p.stat().st_mtime_ns):
        data, at = path.read_bytes(), 0
        while at < len(data):
            (n,) = struct.unpack("<Q", data[at:at + 8])
            event = Event.FromString(data[at + 12:at + 12 + n])
            at += 12 + n + 4
            if event.session_log.status == SessionLog.START:
                restarts.append(event.step)
            for value in event.summary.value:
                found.setdefault(value.tag, []).append((event.step, value.simple_value))
    return found, restarts


def test_tensorboard_scalars_are_the_history_and_a_resume_marks_its_restart(backend, tmp_path):
    pytest.importorskip("tensorboardX")
    from xpnet.logs import TensorBoardLogger

    X, y = _moons()
    tb, ck = tmp_path / "tb", tmp_path / "ck.npz"

    def run_fit(callbacks, **kw):
        model = xpnet.MLP([2, 8, 2], activation="tanh", backend=backend, seed=1)
        return xpnet.fit(model, X, y, xpnet.Adam(1e-2), epochs=5, batch_size=32, verbose=False, validation_data=(X, y),
                         checkpoint=str(ck), checkpoint_every=2, callbacks=callbacks, **kw)

    with pytest.raises(RuntimeError, match="crash"):
        run_fit([TensorBoardLogger(tb), FailAt(3)])  # epochs 1-3 written, the checkpoint holds 1-2
    history = run_fit([TensorBoardLogger(tb)], resume=str(ck))
    found, restarts = _scalars(tb)
    assert len(list(tb.iterdir())) == 2 and restarts == [3]  # TensorBoard hides the stopped run's epoch 3
    assert sorted(found) == sorted(EVERYTHING[1:])
    for name, points in found.items():
        kept = [p for p in points if p[0] < 3] + [p for p in points if p[0] >= 3][-3:]  # what TensorBoard shows
        assert [s for s, _ in kept] == history.epoch
        assert [v for _, v in kept] == pytest.approx(getattr(history, name), rel=1e-6)  # float32 in the file


def test_tensorboard_without_tensorboardx_is_one_line(host_device, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    monkeypatch.setitem(sys.modules, "tensorboardX.event_file_writer", None)
    monkeypatch.chdir(tmp_path)
    assert run(["train", "--device", host_device, "--tensorboard", "tb"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["xpnet: error: TensorBoard logs need tensorboardX, which is not installed: "
                                        "pip install tensorboardX (from a checkout: pip install \".[tensorboard]\")"]


def test_cli_tensorboard_dir(device, tmp_path, capsys):
    pytest.importorskip("tensorboardX")
    (tmp_path / "file").write_text("x")
    assert run(["train", "--device", device, "--tensorboard", str(tmp_path / "file")]) == 2
    assert f"--tensorboard '{tmp_path / 'file'}' is a file: expected a directory" in capsys.readouterr().err
    assert run(["train", "--device", device, "--dataset", "moons", "--epochs", "2", "--quiet",
                "--tensorboard", str(tmp_path / "runs" / "a")]) == 0
    found, restarts = _scalars(tmp_path / "runs" / "a")
    assert sorted(found) == ["lr", "samples_per_second", "seconds", "train_accuracy", "train_loss"]
    assert [s for s, _ in found["train_loss"]] == [1, 2] and restarts == []
