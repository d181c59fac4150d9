"""Batches: which rows each step trains on, and how they are gathered on the device.

One place for what :func:`xpnet.fit` (:func:`xpnet.train.run_epoch`) and the
estimators of :mod:`xpnet.sklearn` both do each epoch: draw an order of the rows,
sort the indices inside each batch (:func:`block_sorted`), and take each batch's
rows into reused arrays (:func:`gather_batch`). The batches themselves are the
``(start, stop)`` spans of :func:`batch_spans`; with an order, batch
``i`` is the rows ``order[start:stop]``, without one the slice ``start:stop``.
"""

from __future__ import annotations

import array_api_compat

from .backend import NO_BUFFERS, Backend, Buffers


def batch_spans(m: int, batch_size: int | None) -> list[tuple[int, int]]:
    """``(start, stop)`` pairs covering ``range(m)``; ``None`` is one full batch.

    Stops are clamped to ``m``: out-of-range slices are not in the array-API standard.
    """
    size = m if batch_size is None else min(batch_size, m)
    return [(s, min(s + size, m)) for s in range(0, m, size)]


def block_sorted(order, block: int):
    """``order`` ``(n,)`` with the indices inside each run of ``block`` (a batch) sorted, as a new
    array in ``order``'s namespace and device.

    The same batches, whose rows are then gathered in address order, which the memory
    system serves faster (measured: a 1024-row gather from 60,000 x 784 float32 in ~0.9 ms
    instead of ~1.2 ms on the 2-core development machine). The sums over a batch's rows
    are the same up to rounding.
    """
    xp = array_api_compat.array_namespace(order)
    n = order.shape[0]
    full = n - n % block
    head = xp.reshape(xp.sort(xp.reshape(order[:full], (-1, block)), axis=1), (-1,))  # (full,)
    return xp.concat([head, xp.sort(order[full:])])


def gather_batch(backend: Backend, span: tuple[int, int], order, buf: Buffers = NO_BUFFERS, **arrays) -> tuple:
    """One batch of rows of each of ``arrays`` (by name; ``None`` stays ``None``), in their order.

    ``span``: ``(start, stop)``. Without an ``order``, each batch is the slice ``start:stop``
    (a view, no copy); with one (a permutation of the rows, on the device), the rows
    ``order[start:stop]`` are gathered into ``buf``'s reused arrays, keyed by the names:
    ``(rows, *shape[1:])``, overwritten by the next batch.
    """
    start, stop = span
    if order is None:
        return tuple(None if a is None else a[start:stop, ...] for a in arrays.values())
    nx, idx, rows = backend.nx, order[start:stop], stop - start
    # mode="clip" skips NumPy's bounds check, which buffers the copy; idx is a permutation
    return tuple(None if a is None else nx.take(a, idx, axis=0, out=buf(key, (rows, *a.shape[1:]), a.dtype), mode="clip")
                 for key, a in arrays.items())
