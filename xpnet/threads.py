"""BLAS threads, in one place: how many cores this process may use, how many threads a
command takes without ``--threads`` (:func:`default_threads`), and what the BLAS runs now
(:func:`blas_pools`, :func:`blas_threads`; the CLI, ``xpnet info`` and the benchmarks read
them here). Light on purpose: the command line imports it before NumPy."""

from __future__ import annotations

import os

THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells, else all)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def default_threads(comm=None) -> int | None:
    """The BLAS threads a command uses without ``--threads``: ``None`` (the BLAS's own
    choice) when one of :data:`THREAD_VARIABLES` is set; else 1 where at most 2 cores are
    usable, and half the usable cores otherwise. With several data-parallel ranks on this
    node (``comm``, an :class:`xpnet.distributed.Communicator`): each rank's part of the
    node's cores, ``node_cores // local_size``, at least 1.

    Why: OpenBLAS's threads spin while they wait for each other, so a thread more than
    there are free cores costs many times its worth. On a shared 2-core machine
    (``bench/threads.py``: 3 epochs of the default MNIST model) 1 thread was the fastest
    as the machine was and with one more busy process; 2 threads were 1.2x slower on the
    nearly idle machine and 4.7x to 23x slower with other work on it. Half the cores
    (not measured here) leaves a core free for each competing process up to half the
    machine.

    Ranks: 200 steps took 0.24 s on one rank and 7.1 s on 2 ranks and 13.9 s on 3 (on
    2 cores) with OpenBLAS's default threads, each rank spinning threads for every core,
    against 0.23 to 0.28 s with one thread each.
    """
    if any(os.environ.get(name, "").strip() for name in THREAD_VARIABLES):
        return None
    if comm is not None and comm.local_size > 1:
        return max(1, comm.node_cores // comm.local_size)
    cores = usable_cores()
    return 1 if cores <= 2 else cores // 2


def blas_pools() -> list[dict]:
    """threadpoolctl's description of each BLAS loaded (``internal_api``, ``version``,
    ``num_threads``...), as it stands now; NumPy's is loaded first."""
    import numpy  # noqa: F401  (loads the BLAS, so that threadpoolctl finds it)
    from threadpoolctl import threadpool_info

    return [p for p in threadpool_info() if p.get("user_api") == "blas"]


def blas_threads() -> int | None:
    """The thread count of the BLAS NumPy uses, as it stands now (``None`` if none is found)."""
    pools = blas_pools()
    return pools[0]["num_threads"] if pools else None
