"""One live run per checkpoint file: a second run naming it (another process, another fit in
this one, however the path is spelled) is refused in one line naming the holder's pid; a
killed holder blocks nothing; no lock file outlives a run, however it ends.

The lock is taken on the host whatever the backend, so these tests take no backend fixture:
NumPy is enough. The holders are real processes (a child ``fit`` that waits on its stdin
after writing its first checkpoint); on platforms without ``fcntl`` nothing is locked.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import xpnet
from xpnet.checkpoint import CheckpointLock
from xpnet.train import TrainingDiverged, TrainingInterrupted

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: checkpoints are not locked on Windows")

# a run that writes epoch 1's checkpoint to argv[1], says "holding", and waits for a line on stdin
HOLDER = r"""
import sys
import xpnet

class Wait(xpnet.Callback):
    def on_epoch_begin(self, epoch, epochs, n_batches):
        if epoch == 1:  # epoch 1's checkpoint is in place
            print("holding", flush=True)
            sys.stdin.readline()

X, y = xpnet.make_moons(150, noise=0.2, seed=7)
xpnet.fit(xpnet.MLP([2, 12, 2], activation="tanh", seed=1), X, y, epochs=2, batch_size=32, verbose=False,
          checkpoint=sys.argv[1], callbacks=[Wait()])
print("done", flush=True)
"""

REFUSED = "is in use by {who}: two runs writing one checkpoint overwrite each other's progress; choose another " \
          "checkpoint path or wait for it to finish"


def _data():
    return xpnet.make_moons(150, noise=0.2, seed=7)


def _fit(checkpoint, **kw):
    X, y = _data()
    kw = {"epochs": 2, "batch_size": 32, "verbose": False, **kw}
    return xpnet.fit(xpnet.MLP([2, 12, 2], activation="tanh", seed=1), X, y, checkpoint=str(checkpoint), **kw)


@contextlib.contextmanager
def _holder(directory: Path):
    """A child process in the middle of a run that checkpoints to ``directory/ck.npz``."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, "ck.npz"], cwd=directory, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line == "holding\n", line + proc.stderr.read()
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def _left(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_another_process_is_refused_naming_the_holders_pid(tmp_path):
    ck = tmp_path / "ck.npz"
    with _holder(tmp_path) as proc:
        assert _left(tmp_path) == [".ck.npz.lock", "ck.npz"]
        written = ck.read_bytes()
        who = f"another running xpnet (pid {proc.pid})"
        with pytest.raises(ValueError, match=f"^{re.escape(f'checkpoint={str(ck)!r} ' + REFUSED.format(who=who))}$"):
            _fit(ck)
        assert ck.read_bytes() == written  # the refused run wrote nothing
        out, err = proc.communicate("go on\n", timeout=60)
        assert proc.returncode == 0 and out == "done\n", err
    assert _left(tmp_path) == ["ck.npz"]
    assert _fit(ck, epochs=3, resume=str(ck)).epoch == [1, 2, 3]  # free again, and the holder's file whole


def test_cli_is_refused_in_one_line_and_the_other_runs_checkpoint_is_untouched(tmp_path, monkeypatch, capsys):
    from cli_helpers import run

    monkeypatch.chdir(tmp_path)
    with _holder(tmp_path) as proc:
        written = (tmp_path / "ck.npz").read_bytes()
        assert run(["train", "--device", "cpu", "--dataset", "moons", "--epochs", "1", "--checkpoint", "ck.npz"]) == 2
        err = capsys.readouterr().err
        assert err == f"xpnet: error: --checkpoint 'ck.npz' {REFUSED.format(who=f'another running xpnet (pid {proc.pid})')}\n"
        assert (tmp_path / "ck.npz").read_bytes() == written


def test_a_killed_holder_blocks_nothing_and_its_checkpoint_resumes(tmp_path):
    ck = tmp_path / "ck.npz"
    with _holder(tmp_path) as proc:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert _left(tmp_path) == [".ck.npz.lock", "ck.npz"]  # left behind, but no process holds its lock
    history = _fit(ck, resume=str(ck))
    assert history.epoch == [1, 2]
    assert _left(tmp_path) == ["ck.npz"]


@pytest.mark.parametrize("spelled,exists", [
    ("./ck.npz", False), ("ABSOLUTE", False), ("sub/../ck.npz", False), ("linkdir/ck.npz", False),
    ("inner/../../ck.npz", False), ("link.npz", False), ("link.npz", True), ("hard.npz", True),
], ids=["dot", "absolute", "dotdot", "symlinked-directory", "dotdot-after-symlink", "symlink-dangling",
        "symlink", "hard-link"])
def test_every_spelling_of_a_held_path_is_refused(tmp_path, monkeypatch, spelled, exists):
    real = tmp_path / "real"
    (real / "sub" / "inner").mkdir(parents=True)
    monkeypatch.chdir(real)
    os.symlink(real, "linkdir")
    os.symlink(real / "sub" / "inner", "inner")  # "inner/../.." is real/ as the kernel resolves it, not tmp_path
    if exists:
        _fit("ck.npz", epochs=1)
    os.symlink("ck.npz", "link.npz")
    if spelled == "hard.npz":
        os.link("ck.npz", "hard.npz")
    spelled = str(real / "ck.npz") if spelled == "ABSOLUTE" else spelled
    before = _left(real)
    with CheckpointLock("ck.npz"):
        with pytest.raises(ValueError) as info:
            _fit(spelled)
    message = str(info.value)
    assert message.startswith(f"checkpoint={spelled!r} is in use by ")
    if spelled == "hard.npz":
        assert "which writes this same file under another name (a hard link)" in message
    else:
        assert f"is in use by another run in this process (pid {os.getpid()})" in message
    assert _left(real) == before and os.path.islink("link.npz")  # nothing written, nothing left


def test_a_second_fit_in_this_process_is_refused_also_through_a_hard_link_made_during_the_run(tmp_path):
    ck, hard = tmp_path / "ck.npz", tmp_path / "hard.npz"
    refusals = []

    class Nested(xpnet.Callback):
        def on_epoch_begin(self, epoch, epochs, n_batches):
            if epoch == 1:  # the first checkpoint is written: a file the run did not start with
                os.link(ck, hard)
                for path in (ck, hard):
                    with pytest.raises(ValueError) as info:
                        _fit(path)
                    refusals.append(str(info.value))

    _fit(ck, callbacks=[Nested()])
    assert refusals[0].startswith(f"checkpoint={str(ck)!r} is in use by another run in this process "
                                  f"(pid {os.getpid()}): ")
    assert refusals[1].startswith(f"checkpoint={str(hard)!r} is in use by another running xpnet, which writes "
                                  "this same file under another name (a hard link): ")
    assert _left(tmp_path) == ["ck.npz", "hard.npz"]


class _InterruptAt(xpnet.Callback):
    def on_batch_end(self, batch):
        if batch == 2:
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("how", ["normal", "interrupted", "diverged", "refused-resume"])
def test_no_lock_outlives_a_run_and_resuming_into_the_same_path_works(tmp_path, how):
    ck = tmp_path / "ck.npz"
    if how == "normal":
        _fit(ck)
    elif how == "interrupted":
        with pytest.raises(TrainingInterrupted):
            _fit(ck, callbacks=[_InterruptAt()])
    elif how == "diverged":
        with pytest.raises(TrainingDiverged):
            _fit(ck, optimizer=xpnet.SGD(1e38))
    else:  # a ValueError raised after the lock was taken
        _fit(tmp_path / "other.npz", seed=5)
        with pytest.raises(ValueError, match="was written with seed=5"):
            _fit(ck, resume=str(tmp_path / "other.npz"))
    assert not [name for name in _left(tmp_path) if name.endswith(".lock")]
    with CheckpointLock(ck):  # released: this process can take it again
        pass
    if how == "interrupted":  # the printed resume: --resume ck.npz --checkpoint ck.npz
        assert _fit(ck, resume=str(ck)).epoch == [1, 2]
        assert _left(tmp_path) == ["ck.npz"]


MPIEXEC = Path(sys.executable).parent / "mpiexec"


@pytest.mark.skipif(not MPIEXEC.exists(), reason='needs mpiexec next to python: pip install "xpnet[mpi]"')
def test_two_ranks_are_refused_together(tmp_path):
    pytest.importorskip("mpi4py")
    ck = tmp_path / "ck.npz"
    ck.write_bytes(b"another run's checkpoint")
    with CheckpointLock(ck):
        proc = subprocess.Popen([str(MPIEXEC), "-n", "2", sys.executable, "-m", "xpnet", "train", "--distributed",
                                 "--device", "cpu", "--dataset", "moons", "--epochs", "1", "--checkpoint", "ck.npz"],
                                cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        try:
            out, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
    assert proc.returncode == 2, err
    ours = [line for line in err.splitlines() if line.startswith("xpnet")]
    assert ours == [f"xpnet: error: --checkpoint 'ck.npz' "
                    f"{REFUSED.format(who=f'another running xpnet (pid {os.getpid()})')}"], err
    assert ck.read_bytes() == b"another run's checkpoint" and _left(tmp_path) == ["ck.npz"]
