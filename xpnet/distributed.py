"""Data-parallel training across processes, on MPI (mpi4py), the way Horovod and ChainerMN do it.

Every rank holds the whole data set and the same weights. Each global batch (the rows a
single process would train on in one step, from the same host permutation) is cut into
``size`` contiguous shares, one per rank (shares differ by at most one row and may be
empty). Each rank computes the sum of its rows' gradients divided by the *global* batch
(``MLP.backprop(batch_size=B)``); one ``Allreduce`` of the flat gradient per step adds
them, so every rank holds the global mean gradient and applies the same update: N ranks
compute what one process computes, up to the order in which the partial sums are added.

:class:`Communicator` wraps an mpi4py communicator with what training needs: rank, size,
the rank on its node, the per-step sum (:class:`GradientSum`), agreement on errors, stops
and weights, and ``Abort``. ``Communicator()`` without MPI is the single-process stand-in:
rank 0 of 1, every collective a no-op, so :func:`xpnet.fit` has one code path.

Errors follow one rule: every rank raises the same error, or the job ends. Before
training starts (:meth:`Communicator.agree`), a failure on any rank is exchanged and every
rank raises (its own error, or :class:`PeerFailed` naming the rank that failed); during
training, an error that is not raised by every rank together ends the whole job at once
through ``MPI_Abort``, with one line naming the rank: a rank left behind in an
``Allreduce`` would otherwise wait forever.

mpi4py is imported only here and only when a :class:`Communicator` is built on MPI
(``pip install "mpi4py>=4" mpich`` brings mpi4py and the ``mpich`` wheel with ``mpiexec``; from a
checkout, ``pip install ".[mpi]"``).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import time
import traceback
import zlib
from typing import Any

import numpy as np

from .backend import to_numpy

MPI_HINT = 'pip install "mpi4py>=4" mpich (the mpich wheel brings mpiexec; from a checkout, pip install ".[mpi]")'

# (size, rank) variables set by MPI launchers: MPICH/Intel MPI/MVAPICH (hydra, PMI), Open MPI
LAUNCHER_VARIABLES = (("PMI_SIZE", "PMI_RANK"), ("OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK"),
                      ("MV2_COMM_WORLD_SIZE", "MV2_COMM_WORLD_RANK"))


def launched_copies() -> tuple[int, int]:
    """``(size, rank)`` as an MPI launcher set them in the environment; ``(1, 0)`` without one.

    Read without importing MPI, so that ``mpiexec -n 4 xpnet train`` (no ``--distributed``)
    can be refused, by rank 0 alone, before anything starts.
    """
    for size_name, rank_name in LAUNCHER_VARIABLES:
        size, rank = os.environ.get(size_name, "").strip(), os.environ.get(rank_name, "").strip()
        if size.isdigit() and rank.isdigit():
            return int(size), int(rank)
    return 1, 0


def mpi_library() -> str | None:
    """The MPI library's name and version (e.g. ``"MPICH 5.0.2, mpi4py 4.1.2"``), without
    initializing MPI; ``None`` when mpi4py is not installed or cannot load an MPI library."""
    try:
        import mpi4py

        if "mpi4py.MPI" not in sys.modules:
            mpi4py.rc.initialize = False  # MPI_Get_library_version may be called before MPI_Init
        from mpi4py import MPI

        first = MPI.Get_library_version().strip().splitlines()[0]
    except Exception:  # ImportError, or an mpi4py wheel that finds no libmpi
        return None
    name = " ".join(first.replace("Version:", "").split())  # "MPICH Version:      5.0.2" -> "MPICH 5.0.2"
    return f"{name}, mpi4py {mpi4py.__version__}"


class PeerFailed(ValueError):
    """Another rank failed before training started; every rank that did not fail raises this.

    Attributes: ``rank`` (the first rank that failed), ``kind`` (its exception's type name),
    ``exit_code`` (the code the command line ends with: 2 for a usage or input error, 130
    for an interrupt, 1 otherwise).
    """

    def __init__(self, rank: int, size: int, kind: str, message: str, exit_code: int):
        self.rank, self.kind, self.exit_code = rank, kind, exit_code
        shown = message if kind in ("ValueError", "UsageError", "DeviceError") else f"{kind}: {message}"
        super().__init__(f"rank {rank} of {size}: {shown}")


class WeightsDiffer(RuntimeError):
    """The ranks' weights differ after an epoch: the MPI library's sum was not the same on
    every rank (MPI recommends, but does not require, that it is). Every rank raises it."""

    exit_code = 1


def exit_code_of(exc: BaseException) -> int:
    """The command line's exit code for an error: 130 interrupted, 2 usage, input or memory, else 1."""
    code = getattr(exc, "exit_code", None)  # PeerFailed: the failed rank's; TrainingInterrupted: 130 / 143
    if isinstance(code, int):
        return code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else 1
    if isinstance(exc, (ValueError, OSError, MemoryError)):
        return 2
    return 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _mark_agreed(exc: BaseException) -> BaseException:
    """Tag an exception that every rank raises together (no abort needed)."""
    exc.xpnet_agreed = True
    return exc


def is_agreed(exc: BaseException) -> bool:
    """Whether every rank raises ``exc`` (or its counterpart) at the same point."""
    return getattr(exc, "xpnet_agreed", False)


class Communicator:
    """The processes of one data-parallel run: an mpi4py communicator, or one process alone.

    Attributes:
        rank, size: this process's rank and the number of ranks.
        local_rank, local_size: the same on this node (MPI's shared-memory split,
            ``Split_type(COMM_TYPE_SHARED)``); a GPU rank uses ``cuda:<local_rank % GPUs>``.
        node_cores: the cores the ranks on this node may use together (the union of
            their CPU affinities).
        cuda_aware: the MPI library takes CUDA device memory (it lists ``cuda`` in MPI
            4.1's ``mpi_memory_alloc_kinds``); the gradient is then reduced on the device.
        allreduce_seconds, allreduce_calls: time spent in the per-step sum (copies and
            waiting for the slowest rank included), and how many sums.
    """

    def __init__(self, comm: Any = None):
        self.comm = comm
        self.phase = "setup"  # "setup" until the ranks agree that training starts, then "training", "done"
        self.allreduce_seconds, self.allreduce_calls = 0.0, 0
        self.row_sum_seconds, self.row_sum_calls = 0.0, 0  # synchronized batch norm's sums (row_sum)
        own = _affinity()
        if comm is None:
            self.rank, self.size, self.local_rank, self.local_size = 0, 1, 0, 1
            self.node_cores, self.cuda_aware = len(own), False
            return
        from mpi4py import MPI

        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        local = comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        try:
            self.local_rank, self.local_size = local.Get_rank(), local.Get_size()
            # once, at start-up: the pickle-based allgather is fine outside the hot loop
            self.node_cores = len(set().union(*local.allgather(sorted(own))))
        finally:
            local.Free()
        kinds = comm.Get_info().Get("mpi_memory_alloc_kinds") or ""
        self.cuda_aware = any(kind.strip().startswith("cuda") for kind in kinds.split(","))

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size}, local_rank={self.local_rank})"

    @property
    def library(self) -> str | None:
        """The MPI library, e.g. ``"MPICH 5.0.2, mpi4py 4.1.2"`` (``None`` for one process without MPI)."""
        return None if self.comm is None else mpi_library()

    # ------------------------------------------------------------ the batches
    def share(self, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
        """This rank's contiguous part of each global batch ``(start, stop)``: as
        ``np.array_split`` cuts it (the first ``len % size`` ranks get one row more)."""
        if self.size == 1:
            return list(spans)
        out = []
        for start, stop in spans:
            q, r = divmod(stop - start, self.size)
            lo = start + self.rank * q + min(self.rank, r)
            out.append((lo, lo + q + (self.rank < r)))
        return out

    def device_for_rank(self, device: str) -> str:
        """``"cuda"`` on a rank becomes ``"cuda:<local_rank % GPUs visible>"``, one GPU per local
        rank; any other device (``"cpu"``, an explicit ``"cuda:N"``) is kept."""
        if device != "cuda" or self.size == 1:
            return device
        try:  # counting GPUs creates no CUDA context (cupy.cuda.Device(i) would, on every GPU)
            import cupy

            count = cupy.cuda.runtime.getDeviceCount()
        except Exception:  # no CuPy or no driver: resolving "cuda" reports it in one line
            return device
        return f"cuda:{self.local_rank % count}" if count else device

    # ------------------------------------------------------------ collectives
    def gradient_sum(self, backend, n: int, dtype, stop) -> GradientSum:
        """The ``grad_hook`` for :func:`xpnet.train_step`: see :class:`GradientSum`."""
        return GradientSum(self, backend, n, dtype, stop)

    def row_sum(self, backend):
        """Batch norm's sum over the ranks (synchronized batch norm): ``fn(a) -> the sum of ``a``
        over every rank``, for a small device array (a layer's per-unit sums). Each call is one
        ``Allreduce`` through the host (float64), three per batch-normed layer and step; their time and
        count add up in ``row_sum_seconds`` and ``row_sum_calls``."""
        if self.size == 1:
            return None
        from mpi4py import MPI

        def total(a):
            t0 = time.perf_counter()
            values = to_numpy(a)  # one read from the device
            host = np.array(values, dtype=np.float64, order="C")  # a copy: the Allreduce writes into it
            self.comm.Allreduce(MPI.IN_PLACE, host, op=MPI.SUM)
            out = backend.asarray(host.astype(values.dtype))
            self.row_sum_seconds += time.perf_counter() - t0
            self.row_sum_calls += 1
            return out

        return total

    def epoch_sums(self, step_losses: np.ndarray, correct: int) -> tuple[np.ndarray, int]:
        """Each step's loss and the correct count, summed over the ranks (in float64, on the host)."""
        if self.size == 1:
            return step_losses, correct
        from mpi4py import MPI

        buf = np.concatenate([np.asarray(step_losses, np.float64), [float(correct)]])
        self.comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM)
        return buf[:-1].astype(step_losses.dtype), int(round(buf[-1]))

    def agree_epoch(self, flat, signum: int | None, halt: bool) -> tuple[int | None, bool]:
        """At an epoch's end: stop (a signal seen by any rank) and halt (a callback on any rank)
        for all, and a check that every rank holds the same weights (a CRC-32 of ``flat``'s
        bytes, one host read). Returns ``(signum, halt)``, the same on every rank."""
        if self.size == 1:
            return signum, halt
        from mpi4py import MPI

        host = np.ascontiguousarray(to_numpy(flat))
        digest = zlib.crc32(host.view(np.uint8))
        flags = np.array([digest, -digest, signum == signal.SIGINT, signum == signal.SIGTERM, halt], np.int64)
        self.comm.Allreduce(MPI.IN_PLACE, flags, op=MPI.MAX)
        if flags[0] != -flags[1]:
            raise _mark_agreed(WeightsDiffer(
                f"the {self.size} ranks hold different weights (CRC-32 from {-flags[1]:#010x} to {flags[0]:#010x}): "
                f"the MPI library ({self.library}) did not give every rank the same sum; please report it"))
        agreed = signal.SIGINT if flags[2] else signal.SIGTERM if flags[3] else None
        return agreed, bool(flags[4])

    def barrier(self) -> None:
        """Wait until every rank is here (e.g. until rank 0 has renamed a checkpoint into place)."""
        if self.size > 1:
            self.comm.Barrier()

    # ------------------------------------------------------------ errors
    def agree(self, exc: BaseException | None = None) -> None:
        """The point where the ranks agree that training starts: every rank says whether its
        setup went well (one small allgather). Returns when all did. Otherwise every rank
        raises: a rank that failed its own error, the others :class:`PeerFailed` naming the
        first rank that failed (a ``KeyboardInterrupt`` is raised as one everywhere)."""
        if self.size == 1:
            if exc is not None:
                raise exc
            self.phase = "training"
            return
        report = None if exc is None else (type(exc).__name__, _one_line(exc), exit_code_of(exc))
        reports = self.comm.allgather(report)
        failed = [(rank, r) for rank, r in enumerate(reports) if r is not None]
        if not failed:
            self.phase = "training"
            return
        self.phase = "done"
        if exc is not None:
            raise _mark_agreed(exc)
        rank, (kind, message, code) = failed[0]
        if kind == "KeyboardInterrupt":
            raise _mark_agreed(KeyboardInterrupt())
        raise _mark_agreed(PeerFailed(rank, self.size, kind, message, code))

    @contextlib.contextmanager
    def running(self, agreed: tuple[type[BaseException], ...] = ()):
        """Around one training run (:func:`xpnet.fit`). An error before :meth:`agree` is agreed
        with the other ranks; after it, an error that not every rank raises together (the
        ``agreed`` types, e.g. an interrupt or divergence the ranks decided on together) ends
        the job through :meth:`abort`."""
        self.phase = "setup"
        try:
            yield self
        except BaseException as exc:
            if self.size > 1 and not is_agreed(exc) and not isinstance(exc, agreed):
                if self.phase == "setup":
                    self.agree(exc)
                self.abort(exc)
            raise
        finally:
            self.phase = "done"

    @contextlib.contextmanager
    def setup_errors(self):
        """Around the command line's work before training: an error there on any rank is agreed
        with the others (which meet it in :meth:`agree`), so every rank ends with the same code."""
        try:
            yield self
        except BaseException as exc:
            if self.size > 1 and self.phase == "setup" and not is_agreed(exc):
                self.agree(exc)
            raise

    def abort(self, exc: BaseException) -> None:
        """End every rank now (``MPI_Abort``) after one line naming this rank and the error
        (a traceback first for what is not a usage, input or memory error: a bug)."""
        code = exit_code_of(exc)
        err = sys.__stderr__
        with contextlib.suppress(Exception):
            if code == 1:
                traceback.print_exception(exc, file=err)
            err.write(f"xpnet: rank {self.rank} of {self.size} failed ({type(exc).__name__}: {_one_line(exc)}); "
                      f"ending all {self.size} ranks\n")
            err.flush()
            # MPICH's own "application called MPI_Abort" line would only repeat the one above
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)
        self.comm.Abort(code or 1)


class GradientSum:
    """The per-step ``Allreduce`` of data-parallel training, as a ``grad_hook``.

    Called between backward and update with this rank's flat gradient (its rows' sum
    divided by the global batch), it returns the sum over all ranks: the global mean.
    Two extra elements carry whether this rank saw SIGINT or SIGTERM, so that every rank
    learns of a signal in the same step and all stop after it (:attr:`signum`, the agreed
    signal, is what the training loop checks; the rank's own flag could differ).

    The sum goes through a host buffer of ``n + 2`` elements in the model's dtype (NumPy:
    one copy in; others: the gradient is copied to the host and the sum back to the
    device). Where the MPI library takes CUDA memory (``Communicator.cuda_aware``) a CuPy
    gradient is summed in a device buffer instead, after the stream is synchronized (MPI
    does not know CuPy's streams). That path has not been run yet: no GPU was at hand.
    """

    def __init__(self, comm: Communicator, backend, n: int, dtype, stop):
        self.comm, self.backend, self.n, self.stop = comm, backend, n, stop
        self.signum: int | None = None  # the agreed signal, once any rank has seen one
        self.on_device = backend.is_cupy and comm.cuda_aware
        if self.on_device:
            with backend.activate():
                self.buf = backend.xp.zeros(n + 2, dtype=backend.dtype(str(np.dtype(dtype))), device=backend.device)
        else:
            self.buf = np.zeros(n + 2, dtype=dtype)  # (n + 2,): the gradient, then SIGINT and SIGTERM counts

    def __call__(self, grad):
        from mpi4py import MPI

        t0 = time.perf_counter()
        n, mine = self.n, self.stop.signum
        flags = (float(mine == signal.SIGINT), float(mine == signal.SIGTERM))
        if self.on_device:
            with self.backend.activate():
                self.buf[:n] = grad
                self.buf[n:] = self.backend.asarray(np.array(flags, dtype=self.buf.dtype))
                self.backend.synchronize()
                self.comm.comm.Allreduce(MPI.IN_PLACE, self.buf, op=MPI.SUM)
                counts = to_numpy(self.buf[n:])
                total = self.buf[:n]
        else:
            np.copyto(self.buf[:n], to_numpy(grad))
            self.buf[n:] = flags
            self.comm.comm.Allreduce(MPI.IN_PLACE, self.buf, op=MPI.SUM)
            counts = self.buf[n:]
            total = self.buf[:n] if self.backend.is_numpy else self.backend.asarray(self.buf[:n])
        if self.signum is None and (counts[0] or counts[1]):
            self.signum = signal.SIGINT if counts[0] else signal.SIGTERM
        self.comm.allreduce_seconds += time.perf_counter() - t0
        self.comm.allreduce_calls += 1
        return total


def _affinity() -> set[int]:
    """The cores this process may run on (all of them where the OS does not tell)."""
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


_WORLD: Communicator | None = None


def world() -> Communicator:
    """The :class:`Communicator` of ``MPI.COMM_WORLD`` (MPI is initialized on first use, once
    per process). ``ValueError`` with the install hint when mpi4py or an MPI library is missing."""
    global _WORLD
    if _WORLD is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ValueError(f"--distributed needs mpi4py and an MPI library ({exc}): {MPI_HINT}") from None
        except RuntimeError as exc:  # an mpi4py wheel that finds no MPI library to load
            raise ValueError(f"--distributed: mpi4py found no usable MPI library ({_one_line(exc)}): {MPI_HINT}") from None
        if not MPI.Is_initialized():  # mpi_library() imported mpi4py without initializing MPI
            MPI.Init_thread()
            atexit.register(lambda: MPI.Is_finalized() or MPI.Finalize())
        _WORLD = Communicator(MPI.COMM_WORLD)
    return _WORLD


def as_communicator(comm: Any) -> Communicator:
    """``None`` (one process), a :class:`Communicator`, or an mpi4py communicator, as a :class:`Communicator`."""
    if comm is None:
        return Communicator()
    if isinstance(comm, Communicator):
        return comm
    if hasattr(comm, "Allreduce") and hasattr(comm, "Get_rank"):
        return Communicator(comm)
    raise ValueError(f"comm={comm!r} is not a communicator: expected None, an mpi4py communicator "
                     "(e.g. MPI.COMM_WORLD) or xpnet.distributed.Communicator")
