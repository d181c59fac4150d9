"""Data-parallel training across processes (xpnet.distributed): mpiexec with 2 and 3 ranks on loopback.

The ranks are started by the ``mpiexec`` next to this Python (the ``mpich`` wheel of the
``mpi`` extra puts it there), every run bounded by a subprocess timeout. The library
proofs run this file as the ranks' script (``python tests/test_distributed.py MODE ...``,
see the bottom) and compare what they wrote with one process computed here.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import xpnet
from xpnet.distributed import Communicator

MPIEXEC = Path(sys.executable).parent / "mpiexec"
try:
    import mpi4py  # noqa: F401

    HAVE_MPI = MPIEXEC.exists()
except ImportError:
    HAVE_MPI = False
needs_mpi = pytest.mark.skipif(not HAVE_MPI, reason='needs mpi4py and mpiexec next to python: pip install "mpi4py>=4" mpich')

OPTIMIZERS = {
    "sgd": lambda: xpnet.SGD(0.1),
    "nesterov": lambda: xpnet.SGD(0.1, momentum=0.9, nesterov=True, weight_decay=1e-3, schedule="cosine"),
    "adam": lambda: xpnet.Adam(1e-2, weight_decay=0.01),
}
# (rows, global batch): 150 / 32 has a partial last batch; 7 / 2 on 3 ranks gives ranks empty shares
CASES = {"moons": (150, 32), "empty-shares": (7, 2)}
BACKENDS = ("numpy", "strict-device1")
CLI_RUN = ["-m", "xpnet", "train", "--distributed", "--layers", "784,32,10", "--batch-size", "16"]


def _backend(name: str):
    if name == "numpy":
        return xpnet.get_backend(device="cpu")
    import array_api_strict as xs  # the path GPU ranks take: a device other than the host's, reduced through it

    return xpnet.get_backend(xs, xs.Device("device1"))


def _train(backend: str, optimizer: str, case: str, comm=None):
    """Weights, per-epoch loss and accuracy after 3 float64 epochs on moons, on ``comm``'s ranks or alone."""
    m, batch = CASES[case]
    X, y = xpnet.make_moons(150, noise=0.2, seed=7)
    model = xpnet.MLP([2, 12, 2], activation="tanh", dtype="float64", seed=1, backend=_backend(backend))
    history = xpnet.fit(model, X[:m], y[:m], OPTIMIZERS[optimizer](), epochs=3, batch_size=batch, comm=comm,
                        verbose=False)
    return xpnet.to_numpy(model.flat).copy(), np.array(history.train_loss), np.array(history.train_accuracy)


def _mpiexec(n: int, *args: str, timeout: float = 60, env: dict | None = None) -> subprocess.CompletedProcess:
    """``mpiexec -n N python ARGS`` to completion; a hang past ``timeout`` kills the whole job and fails."""
    proc = _start(n, *args, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"mpiexec -n {n} {' '.join(args)} still ran after {timeout} s: a hang")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _start(n: int, *args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([str(MPIEXEC), "-n", str(n), sys.executable, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, **(env or {})})


def _ours(stderr: str) -> list[str]:
    """xpnet's lines on stderr (mpiexec adds its own when it forwards a Ctrl-C)."""
    return [line for line in stderr.splitlines() if line.startswith("xpnet")]


# ---------------------------------------------------------------- in one process
def test_shares_are_contiguous_parts_of_each_global_batch():
    spans = [(0, 32), (32, 64), (64, 70), (70, 71)]
    for size in (2, 3, 5):
        parts = []
        for rank in range(size):
            comm = Communicator()
            comm.rank, comm.size = rank, size
            parts.append(comm.share(spans))
        for step, (start, stop) in enumerate(spans):
            expected = np.array_split(np.arange(start, stop), size)
            got = [np.arange(*parts[rank][step]) for rank in range(size)]
            assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_one_process_stand_in_and_thread_default(monkeypatch):
    from xpnet.cli import default_threads

    comm = Communicator()
    assert (comm.rank, comm.size, comm.local_rank) == (0, 1, 0) and comm.share([(0, 5)]) == [(0, 5)]
    comm.agree()  # nothing to agree with
    assert comm.agree_epoch(None, None, False) == (None, False)
    assert comm.device_for_rank("cuda") == "cuda"
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    node = SimpleNamespace(local_size=3, node_cores=16)
    assert default_threads(node) == 5  # the node's cores divided by its ranks
    assert default_threads(SimpleNamespace(local_size=3, node_cores=2)) == 1
    with pytest.raises(ValueError, match="not a communicator"):
        xpnet.fit(xpnet.MLP([2, 2]), np.zeros((2, 2)), np.array([0, 1]), comm="world")


# ---------------------------------------------------------------- the library across ranks
@needs_mpi
@pytest.mark.parametrize("n", [2, 3])
def test_n_ranks_compute_what_one_process_computes(n, tmp_path):
    result = _mpiexec(n, __file__, "library", str(tmp_path), env={"OPENBLAS_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(n)]
    assert len(ranks[0]) == len(BACKENDS) * len(OPTIMIZERS) * len(CASES) * 3
    for key in ranks[0]:
        for other in ranks[1:]:  # every rank holds the same weights and history, bit for bit
            np.testing.assert_array_equal(other[key], ranks[0][key], err_msg=key)
    for backend in BACKENDS:
        for optimizer in OPTIMIZERS:
            for case in CASES:
                alone = _train(backend, optimizer, case)
                for what, value in zip(("flat", "loss", "accuracy"), alone):
                    # the same sums added in another order: float64 rounding apart, nothing more
                    np.testing.assert_allclose(ranks[0][f"{backend}-{optimizer}-{case}-{what}"], value, rtol=0,
                                               atol=1e-9, err_msg=f"{backend} {optimizer} {case} {what}")


@needs_mpi
def test_an_error_before_training_is_raised_by_every_rank(tmp_path):
    result = _mpiexec(3, __file__, "setup-error", str(tmp_path), env={"OPENBLAS_NUM_THREADS": "1"})
    lines = sorted(result.stdout.splitlines())
    assert result.returncode == 0 and len(lines) == 3, result.stdout + result.stderr
    assert lines[0].startswith("rank 0: PeerFailed: rank 1 of 3: epochs=0")
    assert lines[1].startswith("rank 1: ValueError: epochs=0")
    assert lines[2].startswith("rank 2: PeerFailed: rank 1 of 3: epochs=0")


@needs_mpi
@pytest.mark.parametrize("how", ["raise", "exit", "kill"])
def test_a_failing_rank_ends_the_job_in_seconds(how, tmp_path):
    t0 = time.perf_counter()
    result = _mpiexec(3, __file__, "fail", str(tmp_path), how, env={"OPENBLAS_NUM_THREADS": "1"}, timeout=30)
    seconds = time.perf_counter() - t0
    assert result.returncode != 0 and seconds < 15, (seconds, result.stderr)
    if how != "kill":  # a killed rank is reported by mpiexec itself
        assert _ours(result.stderr) == [
            f"xpnet: rank 1 of 3 failed ({'ValueError: rank 1 broke' if how == 'raise' else 'SystemExit: 3'}); "
            "ending all 3 ranks"], result.stderr
        assert result.returncode == (2 if how == "raise" else 3)
    # the checkpoint of the last complete epoch is intact: written whole or not at all
    ck = xpnet.load(tmp_path / "ck.npz")
    assert ck.sizes == [2, 12, 2]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("ck")] == ["ck.npz"]


# ---------------------------------------------------------------- the command line
@needs_mpi
def test_mpiexec_without_distributed_is_refused():
    result = _mpiexec(2, "-m", "xpnet", "train", "--epochs", "1", timeout=30)
    assert result.returncode == 2 and result.stdout == ""
    assert len(_ours(result.stderr)) == 1 and "add --distributed" in result.stderr


@needs_mpi
def test_info_shows_the_mpi_library_and_ranks():
    result = _mpiexec(2, "-m", "xpnet", "info", timeout=30)
    assert result.returncode == 0, result.stderr
    mpi = [line for line in result.stdout.splitlines() if line.startswith("MPI: ")]
    assert len(mpi) == 1 and "2 ranks" in mpi[0] and "mpi4py" in mpi[0]  # rank 0 alone prints
    assert "1 BLAS thread per rank" in result.stdout


@needs_mpi
def test_cli_interrupt_and_resume_across_ranks(tmp_path):
    """SIGINT to mpiexec stops every rank after the same step; rank 0 writes the checkpoint;
    resuming with the same N ends bit-identical to a run never interrupted; another N is refused."""
    whole, ck, resumed = tmp_path / "whole.npz", tmp_path / "ck.npz", tmp_path / "resumed.npz"
    run = [*CLI_RUN, "--epochs", "4", "--dtype", "float64"]
    done = _mpiexec(2, *run, "--save", str(whole), "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout.splitlines()[-1])
    assert summary["ranks"] == 2 and summary["blas_threads"] == 1 and summary["allreduce_seconds"] > 0
    assert _ours(done.stderr) == []

    proc = _start(2, *run, "--checkpoint", str(ck))
    try:
        header = proc.stdout.readline()
        assert "1 BLAS thread per rank, 2 ranks" in header, header
        assert proc.stdout.readline().startswith("epoch 1/4")
        proc.send_signal(signal.SIGINT)  # to mpiexec, which forwards it to every rank
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    lines = _ours(err)
    assert len(lines) == 1 and lines[0].startswith("xpnet: interrupted by SIGINT at epoch "), err
    assert "resume with: mpiexec -n 2 xpnet train --distributed" in lines[0]

    mid = tmp_path / "mid.npz"  # the interrupted run's checkpoint, kept for the other N below
    mid.write_bytes(ck.read_bytes())
    again = _mpiexec(2, *run, "--checkpoint", str(ck), "--resume", str(ck), "--save", str(resumed))
    assert again.returncode == 0, again.stderr
    a, b = xpnet.load(whole), xpnet.load(resumed)
    for p, q in zip(a.params, b.params):
        np.testing.assert_array_equal(xpnet.to_numpy(p), xpnet.to_numpy(q))

    other = _mpiexec(3, *run, "--resume", str(mid))
    assert other.returncode == 2 and _ours(other.stderr) == [
        f"xpnet: error: --resume {str(mid)!r} was written by 2 process(es) and this run has 3: the gradients would be "
        "summed in another order, so the run would not continue bit for bit; resume on 2 ranks (mpiexec -n 2 ... "
        "--distributed), or allow the change (--allow-changes; fit(..., allow_changes=True)), which the history "
        "records"], other.stderr

    # in one process (no MPI at all): refused, then allowed and recorded
    from xpnet.cli import main

    one = [a for a in run[2:] if a != "--distributed"]
    assert main([*one, "--resume", str(mid), "--quiet"]) == 2
    assert main([*one, "--resume", str(mid), "--allow-changes", "--checkpoint", str(mid), "--quiet"]) == 0
    changes = json.loads(bytes(np.load(mid)["metadata"]))["history"]["changes"]
    assert changes[-1]["changed"] == {"world_size": [2, 1]}


# ---------------------------------------------------------------- the ranks' side
def _rank_main(mode: str, out: str, *rest: str) -> None:
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    out = Path(out)
    if mode == "library":
        results = {}
        for backend in BACKENDS:
            for optimizer in OPTIMIZERS:
                for case in CASES:
                    values = _train(backend, optimizer, case, comm=world)
                    for what, value in zip(("flat", "loss", "accuracy"), values):
                        results[f"{backend}-{optimizer}-{case}-{what}"] = value
        np.savez(out / f"rank{rank}.npz", **results)
    elif mode == "setup-error":  # rank 1 alone passes a bad argument
        X, y = xpnet.make_moons(40, seed=0)
        try:
            xpnet.fit(xpnet.MLP([2, 4, 2]), X, y, epochs=0 if rank == 1 else 2, comm=world, verbose=False)
        except ValueError as exc:
            sys.stdout.write(f"rank {rank}: {type(exc).__name__}: {exc}\n")  # one write: ranks' lines stay whole
            sys.stdout.flush()
    elif mode == "fail":  # rank 1 breaks in the second epoch, while the others wait in the step's Allreduce
        how = rest[0]

        class Break(xpnet.Callback):
            steps = 0

            def on_batch_end(self, batch):
                self.steps += 1
                if rank == 1 and self.steps == 8:
                    if how == "raise":
                        raise ValueError("rank 1 broke")
                    if how == "exit":
                        sys.exit(3)
                    os._exit(3)

        X, y = xpnet.make_moons(150, noise=0.2, seed=7)
        xpnet.fit(xpnet.MLP([2, 12, 2], seed=1), X, y, epochs=50, batch_size=32, comm=world, verbose=False,
                  callbacks=[Break()], checkpoint=str(out / "ck.npz"))


if __name__ == "__main__":
    _rank_main(*sys.argv[1:])
