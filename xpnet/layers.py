"""What sits between two products of a hidden layer: normalization, the activation, dropout and
the skip connection, each with a forward and a hand-derived backward, written once in ``xp``.

Hidden layer ``l`` of an :class:`~xpnet.MLP` (batch-first, ``m`` rows) computes::

    Z = A_{l-1} @ W_l + b_l                       (m, n_l)   the product (in the model)
    N = gamma * (Z - mu) / sqrt(var + eps) + beta            norm="batch" or "layer"; else N = Z
    F = f(N)                                                 the activation
    D = F * mask / (1 - p)                                   inverted dropout, train mode only
    A_l = A_{l-1} + D   (residual, where n_{l-1} = n_l)  or  A_l = D

and its backward pass runs the same lines in reverse: the skip passes ``dA_l`` to ``A_{l-1}``
unchanged, dropout multiplies by the same mask, the activation by its derivative, and the
normalization takes its three-term formula (below). :class:`Block` is one such layer; the
model runs its product, the block, and the next product.

Batch norm follows PyTorch's ``BatchNorm1d`` (eps 1e-5, momentum 0.1): in train mode ``mu`` and
``var`` are the batch's mean and biased variance over the rows, and the running statistics move
by ``r = 0.9 r + 0.1 s`` (with the unbiased variance); in eval mode the running ones are used.
Across data-parallel ranks the row sums go through ``row_sum`` (an ``Allreduce``: the mean and
the variance forward, the two backward sums together), so the statistics are the global batch's
(synchronized batch norm). Layer norm follows ``LayerNorm``:
``mu`` and ``var`` over each row's ``n_l`` units, the same in both modes.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .activations import ACTIVATIONS

EPS = 1e-5  # PyTorch's BatchNorm1d and LayerNorm
MOMENTUM = 0.1  # PyTorch's BatchNorm1d: running = (1 - momentum) running + momentum batch
NORMS = ("batch", "layer")


class Cache(NamedTuple):
    """What a block keeps from its forward pass for its backward pass."""

    F: Any  # (m, n) the activation's output (before dropout and the skip)
    N: Any = None  # (m, n) the activation's input, kept only where its derivative needs it
    xhat: Any = None  # (m, n) the normalized Z, before gamma and beta
    invstd: Any = None  # 1 / sqrt(var + eps): (1, n) batch norm, (m, 1) layer norm
    mask: Any = None  # (m, n) dropout's 0 or 1 / (1 - p), train mode


class Block:
    """Hidden layer ``l``'s part after its product (see the module docstring).

    Args:
        activation: a name of :data:`xpnet.activations.ACTIVATIONS`.
        norm: ``None``, ``"batch"`` or ``"layer"``.
        dropout: the rate ``p`` in ``[0, 1)``.
        residual: add the layer's input to its output (widths must match).
    """

    def __init__(self, activation: str, norm: str | None = None, dropout: float = 0.0, residual: bool = False):
        self.activation, self.norm, self.dropout, self.residual = activation, norm, float(dropout), bool(residual)
        self.act = ACTIVATIONS[activation]

    @property
    def plain(self) -> bool:
        """Only the activation, computed in place of ``Z`` (what every layer was before blocks)."""
        return self.norm is None and not self.dropout and not self.residual and not self.act.needs_input

    def forward(self, nx, Z, A_prev, norm_params=None, running=None, train: bool = False, mask=None,
                row_sum: Callable | None = None, rows: int | None = None, inplace: bool = False):
        """``(A_l, cache)`` for the product ``Z`` ``(m, n)`` (with its bias) and the layer's input ``A_prev``.

        ``norm_params``: ``(gamma, beta)``; ``running``: batch norm's ``(mean, var)`` arrays ``(n,)``,
        updated in place in train mode unless ``None``; ``mask``: this batch's dropout mask in
        train mode (``None``: no dropout); ``row_sum``/``rows``: the sum over the global batch's
        rows and their number (one process: the identity and ``m``); ``inplace``: ``nx`` honours
        ``out=`` (NumPy, CuPy: the activations write over arrays of their own). ``Z`` is the
        block's own: it may be overwritten (the normalizations center and scale it in place,
        what their backward pass keeps).
        """
        if self.plain:
            F = self.act.forward(nx, Z, out=Z if inplace else None)
            return F, Cache(F)
        xhat = invstd = None
        N = Z
        if self.norm == "batch":
            N, xhat, invstd = batch_norm_forward(nx, Z, *norm_params, running, train, row_sum, rows)
        elif self.norm == "layer":
            N, xhat, invstd = layer_norm_forward(nx, Z, *norm_params)
        F = self.act.forward(nx, N, out=N if inplace and not self.act.needs_input else None)  # N is ours, unless kept
        A = F if mask is None else F * mask
        if self.residual:
            if mask is None:
                A = A + A_prev  # F is kept for the backward pass
            else:
                A += A_prev
        return A, Cache(F, N if self.act.needs_input else None, xhat, invstd, mask)

    def backward(self, nx, dA, cache: Cache, norm_params=None, row_sum: Callable | None = None,
                 rows: int | None = None, inplace: bool = False):
        """``(dZ, d_skip, (dgamma, dbeta) or None)`` from ``dA`` ``(m, n)``, the gradient at the layer's
        output; ``d_skip`` is what the skip passes to ``A_{l-1}`` (``dA`` itself), else ``None``.
        ``dA`` is the block's own (``inplace``: see :meth:`forward`), unless the skip passes it on."""
        if self.plain:
            return self.act.backward(nx, cache.F, dA, out=dA if inplace else None), None, None
        skip = dA if self.residual else None
        dF = dA if cache.mask is None else dA * cache.mask  # dropout: the same mask
        dN = self.act.backward(nx, cache.F, dF, Z=cache.N, out=dF if inplace and dF is not skip else None)
        if self.norm is None:
            return dN, skip, None
        gamma = norm_params[0]
        if self.norm == "batch":
            dZ, dgamma, dbeta = batch_norm_backward(nx, dN, cache.xhat, cache.invstd, gamma, row_sum, rows)
        else:
            dZ, dgamma, dbeta = layer_norm_backward(nx, dN, cache.xhat, cache.invstd, gamma)
        return dZ, skip, (dgamma, dbeta)


def _summed(row_sum):
    return row_sum if row_sum is not None else (lambda a: a)


def batch_norm_forward(nx, Z, gamma, beta, running=None, train: bool = True, row_sum=None, rows=None):
    """Batch norm of ``Z`` ``(m, n)``: ``(N, xhat, invstd)``.

    Train mode normalizes with the batch's mean and biased variance over ``rows`` rows (summed
    across ranks by ``row_sum``) and, given ``running`` ``(mean, var)``, moves them in place by
    :data:`MOMENTUM` (the variance unbiased: ``var * rows / (rows - 1)``). Eval mode uses
    ``running``. 11 array operations in train mode (plus 6 for the running statistics), 6 in eval.
    """
    n = Z.shape[1]
    if not train:
        mean, var = (nx.reshape(r, (1, n)) for r in running)
        invstd = (var + EPS) ** -0.5  # (1, n)
        xhat = Z
        xhat -= mean  # in place: Z becomes xhat
        xhat *= invstd
        N = xhat * gamma
        N += beta
        return N, xhat, invstd
    total, rows = _summed(row_sum), rows or Z.shape[0]
    mean = total(nx.sum(Z, axis=0, keepdims=True)) * (1.0 / rows)  # (1, n)
    xc = Z
    xc -= mean  # (m, n), in place: Z becomes xc, then xhat
    # sums over rows as sum(a * b): NumPy's vecdot over axis -2 runs 10-30x slower (measured at 256-1024 x 512)
    var = total(nx.sum(xc * xc, axis=0, keepdims=True)) * (1.0 / rows)  # (1, n), biased
    invstd = (var + EPS) ** -0.5  # (1, n)
    xhat = xc
    xhat *= invstd
    if running is not None:  # PyTorch keeps the unbiased variance
        r_mean, r_var = running
        r_mean *= 1.0 - MOMENTUM
        r_mean += nx.reshape(mean, (n,)) * MOMENTUM
        r_var *= 1.0 - MOMENTUM
        r_var += nx.reshape(var, (n,)) * (MOMENTUM * rows / max(rows - 1, 1))
    N = xhat * gamma
    N += beta
    return N, xhat, invstd


def batch_norm_backward(nx, dN, xhat, invstd, gamma, row_sum=None, rows=None):
    """The three-term batch-norm backward: ``(dZ, dgamma, dbeta)`` from ``dN`` ``(m, n)``.

    With ``dxhat = dN * gamma`` and sums over the global batch's ``M`` rows::

        dZ = invstd / M * (M dxhat - sum(dxhat) - xhat * sum(dxhat * xhat))
           = gamma * invstd * (dN - (dbeta + xhat * dgamma) / M)

    since ``sum(dxhat) = gamma * dbeta`` and ``sum(dxhat * xhat) = gamma * dgamma``, where
    ``dbeta = sum(dN)`` and ``dgamma = sum(dN * xhat)``, summed across ranks for ``dZ``; the returned
    ``dgamma`` and ``dbeta`` are this process's rows' (the step's gradient sum adds the other ranks').
    10 array operations.
    """
    total, rows, n = _summed(row_sum), rows or dN.shape[0], dN.shape[1]
    dbeta = nx.sum(dN, axis=0)  # (n,) this process's rows: the gradient sum across ranks adds the others'
    dgamma = nx.sum(dN * xhat, axis=0)  # (n,)
    if row_sum is None:
        all_dbeta, all_dgamma = dbeta, dgamma
    else:  # the global batch's, in one sum across the ranks
        both = total(nx.concat([dbeta, dgamma]))
        all_dbeta, all_dgamma = both[:n], both[n:]
    scale = gamma * nx.reshape(invstd, (n,))  # (n,)
    inner = xhat * (all_dgamma * (1.0 / rows))  # (m, n)
    inner += all_dbeta * (1.0 / rows)
    dZ = dN - inner
    dZ *= scale
    return dZ, dgamma, dbeta


def layer_norm_forward(nx, Z, gamma, beta):
    """Layer norm of each row of ``Z`` ``(m, n)`` over its ``n`` units: ``(N, xhat, invstd)``, the
    biased variance as PyTorch's ``LayerNorm``; the same in train and eval mode. 10 array operations."""
    m, n = Z.shape
    mean = nx.sum(Z, axis=1, keepdims=True) * (1.0 / n)  # (m, 1)
    xc = Z
    xc -= mean  # in place: Z becomes xc, then xhat
    var = nx.reshape(nx.vecdot(xc, xc, axis=-1), (m, 1)) * (1.0 / n)  # (m, 1)
    invstd = (var + EPS) ** -0.5
    xhat = xc
    xhat *= invstd
    N = xhat * gamma
    N += beta
    return N, xhat, invstd


def layer_norm_backward(nx, dN, xhat, invstd, gamma):
    """Layer norm's backward, row by row: ``(dZ, dgamma, dbeta)`` from ``dN`` ``(m, n)``.

    With ``dxhat = dN * gamma`` and means over each row's ``n`` units::

        dZ = invstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat))

    and ``dgamma = sum over rows of dN * xhat``, ``dbeta = sum over rows of dN``. 12 array operations.
    """
    m, n = dN.shape
    dbeta = nx.sum(dN, axis=0)  # (n,)
    dgamma = nx.sum(dN * xhat, axis=0)  # (n,)
    dxhat = dN * gamma  # (m, n)
    mean_d = nx.sum(dxhat, axis=1, keepdims=True) * (1.0 / n)  # (m, 1)
    mean_dx = nx.reshape(nx.vecdot(dxhat, xhat, axis=-1), (m, 1)) * (1.0 / n)  # (m, 1)
    dZ = dxhat  # in place from here: dxhat is this function's own
    dZ -= mean_d
    dZ -= xhat * mean_dx
    dZ *= invstd
    return dZ, dgamma, dbeta


def build_blocks(sizes, activation: str, dropout: Any = 0.0, norm: str | None = None, residual: Any = False) -> list[Block]:
    """The hidden layers' :class:`Block` objects for widths ``sizes``, after checking the settings.

    ``dropout``: one rate for every hidden layer or a list of one rate per hidden layer, each in
    ``[0, 1)``; ``norm``: ``None``, ``"batch"`` or ``"layer"``; ``residual``: a skip wherever a
    hidden layer keeps its width (refused where none does).
    """
    hidden = len(sizes) - 2
    if isinstance(dropout, (list, tuple)):
        if len(dropout) != hidden:
            raise ValueError(f"dropout={list(dropout)!r} has {len(dropout)} rates for {hidden} hidden layers: "
                             "expected one rate per hidden layer, or one rate for all")
        rates = list(dropout)
    else:
        rates = [dropout] * hidden
    for r in rates:
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or not 0 <= r < 1:
            raise ValueError(f"dropout={dropout!r} is out of range: expected a rate 0 <= p < 1 (or one per hidden layer)")
    if norm is not None and norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not a normalization: expected None, 'batch' or 'layer'")
    if not isinstance(residual, bool):
        raise ValueError(f"residual={residual!r} is not valid: expected True or False")
    given = [(name, value) for name, value in (("dropout", dropout), ("norm", norm), ("residual", residual))
             if value and not isinstance(value, (list, tuple))]
    if hidden == 0 and given:
        raise ValueError(f"{given[0][0]}={given[0][1]!r} with sizes={list(sizes)}: there is no hidden layer to apply it to")
    skips = [residual and sizes[h] == sizes[h + 1] for h in range(hidden)]  # hidden layer h+1: n_h in, n_{h+1} out
    if residual and not any(skips):
        raise ValueError(f"residual=True with sizes={list(sizes)}: no hidden layer keeps its width (a residual block "
                         "adds a layer's input to its output, so it needs sizes[l-1] == sizes[l] for a hidden layer l)")
    return [Block(activation, norm, float(r), s) for r, s in zip(rates, skips)]


def draw_masks(backend, blocks: list[Block], sizes, dtype: str, key: tuple[int, ...], rows: int,
               part: tuple[int, int] | None = None) -> list:
    """Dropout masks for a batch of ``rows`` rows: per hidden layer a device array ``(rows, n_l)`` of
    0 and ``1 / (1 - p)`` in ``dtype``, or ``None`` where ``p`` is 0; with ``part`` ``(start, stop)``,
    only those rows of it (a data-parallel rank's share), drawn the same.

    Drawn on the host from the generator keyed ``(*key, layer)``, row by row. :func:`xpnet.fit` keys
    each step's masks ``(seed, epoch, step)`` over the global batch's rows, so a resumed run draws
    what an uninterrupted one drew and every rank's share is what one process would draw for
    those rows; the host works and the device holds one batch's masks at a time.
    """
    masks = []
    start, stop = part if part is not None else (0, rows)
    for h, block in enumerate(blocks):
        if not block.dropout:
            masks.append(None)
            continue
        host = np.random.default_rng(np.random.SeedSequence([*key, DROPOUT_STREAM, h]))
        keep = host.random((rows, sizes[h + 1]))[start:stop] >= block.dropout  # (rows, n_h), then the share
        mask = keep.astype(dtype) * np.asarray(1.0 / (1.0 - block.dropout), dtype=dtype)
        masks.append(backend.asarray(mask))
    return masks


DROPOUT_STREAM = 7  # in the masks' key, apart from the other keyed draws' (seed), (seed, epoch)
