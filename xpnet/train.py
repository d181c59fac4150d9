"""The training loop: data to the device once, batches gathered there in an order drawn on
the host (the same on every backend), one read back per epoch.

:func:`train_step` is the one training step (forward, backward, gradient hook,
update) that :func:`fit`, the benchmarks and a user's own loop all call.

Reliability lives here too: checkpoints (with the position inside an epoch),
resume that reproduces an uninterrupted run bit for bit on the CPU, SIGINT/SIGTERM
handled between steps, and divergence reported with its epoch and step (the faults
themselves, and the signal catcher, are :mod:`xpnet.faults`).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import Any

import array_api_compat
import numpy as np

from .backend import NO_BUFFERS, Buffers, to_numpy
from .batches import batch_spans, block_sorted, gather_batch
from .checkpoint import CheckpointLock, Position, load_checkpoint, save_checkpoint
from .distributed import as_communicator
from .faults import OutOfMemory, StopOnSignal, TrainingDiverged, TrainingInterrupted, is_out_of_memory, memory_estimate
from .fused import PATHS, FusedStep, unsupported
from .history import History
from .io import check_writable
from .kernels import Kernels, kernels_for
from .layers import draw_masks
from .model import MLP
from .optim import SGD, Optimizer
from .validate import check_choice, check_positive


class Callback:
    """Hooks called by :func:`fit`; override what you need. Return True from
    ``on_epoch_end`` to stop training. ``on_batch_end`` runs on the host after a
    step is queued; it must not read device arrays (that would sync every step), nor
    write them (on CuPy's fused path the step runs on a stream of its own: see :func:`fit`'s ``path``).
    A callback with state that a checkpoint should keep defines ``state()`` ->
    ``(dict, list of arrays)`` and ``load_state(dict, arrays, model)``."""

    def on_train_begin(self, model: MLP, history: History) -> None:
        pass

    def on_epoch_begin(self, epoch: int, epochs: int, n_batches: int) -> None:
        pass

    def on_batch_end(self, batch: int) -> None:
        pass

    def on_epoch_end(self, model: MLP, history: History) -> bool:
        return False

    def on_train_end(self, model: MLP, history: History) -> None:
        pass


class EarlyStopping(Callback):
    """Stop when ``monitor`` has not improved by ``min_delta`` for ``patience`` epochs.

    With ``restore_best`` the weights of the best epoch, and batch norm's running statistics
    with them, are copied back at the end (snapshots are device-side copies; nothing goes
    through the host).
    """

    def __init__(self, patience: int = 5, monitor: str = "val_loss", min_delta: float = 0.0, restore_best: bool = True):
        self.patience = check_positive(patience, "patience", integer=True)
        if monitor not in ("val_loss", "val_accuracy", "train_loss"):
            raise ValueError(f"monitor={monitor!r} is not known: expected 'val_loss', 'val_accuracy' or 'train_loss'")
        self.monitor = monitor
        self.min_delta = check_positive(min_delta, "min_delta", allow_zero=True)
        self.restore_best = restore_best
        self.best: float | None = None
        self.best_params: list | None = None
        self.best_stats = None  # batch norm's running statistics of the best epoch
        self.wait = 0

    def on_train_begin(self, model, history):
        self.best, self.best_params, self.best_stats, self.wait = None, None, None, 0

    def on_epoch_end(self, model, history):
        values = getattr(history, self.monitor)
        if not values:
            raise ValueError(f"EarlyStopping(monitor={self.monitor!r}) needs validation_data in fit()")
        value = values[-1]
        sign = 1.0 if self.monitor == "val_accuracy" else -1.0  # larger is better after the sign
        if self.best is None or sign * (value - self.best) > self.min_delta:
            self.best, self.wait = value, 0
            history.best_epoch = history.epoch[-1]
            if self.restore_best:
                self.best_params = [model.xp.asarray(model.flat, copy=True)]  # one device-side copy
                self.best_stats = model.xp.asarray(model.stats, copy=True) if model.stats.shape[0] else None
            return False
        self.wait += 1
        return self.wait >= self.patience

    def on_train_end(self, model, history):
        if self.restore_best and self.best_params is not None:
            model.flat[...] = self.best_params[0]  # into the buffer: params, optimizer stay attached
            if self.best_stats is not None:
                model.stats[...] = self.best_stats

    def state(self) -> tuple[dict, list]:
        stats = [] if self.best_stats is None else [self.best_stats]
        return {"best": self.best, "wait": self.wait, **({"stats": True} if stats else {})}, list(self.best_params or []) + stats

    def load_state(self, meta: dict, arrays: list, model: MLP) -> None:
        self.best, self.wait = meta["best"], meta["wait"]
        self.best_stats = None
        if meta.get("stats"):  # the snapshot, then its running statistics
            arrays, self.best_stats = arrays[:-1], model.backend.asarray(arrays[-1])
        elif len(arrays) > 1:  # a version 1 checkpoint kept the snapshot per layer
            arrays = [model.pack(arrays)]
        self.best_params = [model.backend.asarray(a) for a in arrays] or None


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by ``factor`` when ``monitor`` has not improved for more than
    ``patience`` epochs: PyTorch's ``ReduceLROnPlateau`` (relative ``threshold``, ``cooldown``,
    ``min_lr``, ``eps``; mode ``min``, or ``max`` for ``val_accuracy``).

    It scales the optimizer's base rate (``optimizer.lr_scale``), under its schedule, from the
    next epoch on; its counters and the scale are kept in checkpoints.
    """

    def __init__(self, optimizer: Optimizer, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, cooldown: int = 0, min_lr: float = 0.0, eps: float = 1e-8):
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"optimizer={optimizer!r} is not an optimizer: expected the xpnet.SGD or xpnet.Adam fit uses")
        if monitor not in ("val_loss", "val_accuracy", "train_loss"):
            raise ValueError(f"monitor={monitor!r} is not known: expected 'val_loss', 'val_accuracy' or 'train_loss'")
        self.optimizer, self.monitor = optimizer, monitor
        self.factor = check_positive(factor, "factor")
        if self.factor >= 1:
            raise ValueError(f"factor={factor!r} is out of range: expected 0 < factor < 1")
        self.patience = check_positive(patience, "patience", integer=True, allow_zero=True)
        self.threshold = check_positive(threshold, "threshold", allow_zero=True)
        self.cooldown = check_positive(cooldown, "cooldown", integer=True, allow_zero=True)
        self.min_lr = check_positive(min_lr, "min_lr", allow_zero=True)
        self.eps = check_positive(eps, "eps", allow_zero=True)
        self.best: float | None = None
        self.bad_epochs = self.cooldown_left = 0

    def on_train_begin(self, model, history):
        self.best, self.bad_epochs, self.cooldown_left = None, 0, 0
        self.optimizer.lr_scale = 1.0

    def on_epoch_end(self, model, history):
        values = getattr(history, self.monitor)
        if not values:
            raise ValueError(f"ReduceLROnPlateau(monitor={self.monitor!r}) needs validation_data in fit()")
        value, sign = values[-1], (-1.0 if self.monitor == "val_accuracy" else 1.0)  # min mode after the sign
        if self.best is None or sign * value < sign * self.best * (1.0 - sign * self.threshold):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            opt = self.optimizer
            old = opt.lr * opt.lr_scale
            new = max(old * self.factor, self.min_lr)
            if old - new > self.eps:
                opt.lr_scale = new / opt.lr
            self.cooldown_left, self.bad_epochs = self.cooldown, 0
        return False

    def state(self) -> tuple[dict, list]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "cooldown_left": self.cooldown_left,
                "lr_scale": self.optimizer.lr_scale}, []

    def load_state(self, meta: dict, arrays: list, model: MLP) -> None:
        self.best, self.bad_epochs, self.cooldown_left = meta["best"], meta["bad_epochs"], meta["cooldown_left"]
        self.optimizer.lr_scale = float(meta["lr_scale"])


def train_step(model: MLP, optimizer: Optimizer, X, Y, labels=None, *, batch_size: int | None = None,
               onehot: bool = False, grad_hook: Callable | None = None, buf: Buffers = NO_BUFFERS, row_weights=None,
               masks=None, row_sum: Callable | None = None):
    """One training step on a batch already on the device: forward, backward, update.

    Args:
        model, optimizer: the optimizer is attached to ``model.flat`` on first use
            (weight decay on the weights only).
        X, Y: ``(m, n_in)`` features and ``(m, n_out)`` targets, as
            :meth:`MLP.device_data` returns them (slice or gather your batches from there).
        labels: ``(m,)`` device output indices, to count correct predictions.
        batch_size: the gradient is the sum over these ``m`` rows divided by this
            (default ``m``: the mean).
        onehot: ``Y`` is one-hot (or a multi-label model's 0/1 rows): correct predictions are
            counted from it.
        grad_hook: ``hook(grad)`` called between backward and update with the flat
            gradient (:attr:`MLP.flat`'s layout); it may change it in place or return a
            replacement (data-parallel training sums it across processes here).
        buf: reused arrays for NumPy and CuPy (:class:`~xpnet.backend.Buffers`).
        row_weights: ``(m,)`` device weights of the rows (model dtype), or ``None``: each row's
            loss and gradient term times its weight, still divided by ``batch_size`` rows.
        masks: the batch's dropout masks (see :meth:`MLP.backprop`); for a model with dropout,
            ``None`` draws them keyed ``(model.seed, optimizer step)`` (:func:`xpnet.layers.draw_masks`):
            the same on every data-parallel rank, so a loop of your own across ranks passes each
            rank's share of one draw (:func:`fit` does).
        row_sum: across data-parallel ranks, the sum over the ranks for synchronized batch norm.

    Returns:
        ``(loss, correct)``: the loss summed over the rows (weighted with ``row_weights``) and the correct count, as
        0-d device arrays (``correct`` is ``None`` unless asked for); nothing is read
        back to the host.
    """
    with model.backend.activate():
        if optimizer.xp is None or optimizer.bound_to is not model.flat:
            optimizer.attach([model.flat], model.backend if buf.enabled else None, decay=[model.n_weights])
            optimizer.bound_to = model.flat
        if masks is None and any(b.dropout for b in model.blocks):  # a user's own loop: this step's own masks
            masks = draw_masks(model.backend, model.blocks, model.sizes, model.dtype, (model.seed, 1, optimizer.t),
                               X.shape[0])
        out = model.backprop(X, Y, batch_size=batch_size, labels=labels, onehot=onehot, row_weights=row_weights,
                             weighted_loss=True, buf=buf, masks=masks, row_sum=row_sum)
        grad = out.grad
        if grad_hook is not None:
            replaced = grad_hook(grad)
            grad = grad if replaced is None else replaced
        optimizer.step([model.flat], [grad])
    return out.loss, out.correct


def run_epoch(model: MLP, optimizer: Optimizer, Xd, Yd, labels, spans, order, buf: Buffers,
              callbacks=(), first: int = 0, stop: StopOnSignal | None = None, onehot: bool = False,
              batch_sizes: Sequence[int] | None = None, grad_hook: Callable | None = None, weights=None,
              masks=None, row_sum: Callable | None = None):
    """Steps ``first, first + 1, ...`` of one pass over device data in ``spans`` batches, in
    ``order`` (a device permutation, or ``None`` for slices).

    Data-parallel training passes this rank's share of each global batch as ``spans``, the
    global batches' sizes as ``batch_sizes`` (what each step's gradient is divided by) and
    the per-step sum across ranks as ``grad_hook``; ``stop`` is then the ranks' agreed flag.
    ``weights``: ``(m,)`` device row weights, gathered with the rows (see :func:`train_step`).
    ``masks``: ``masks(step)``, the step's dropout masks for these rows (see :func:`train_step`), or
    ``None``; ``row_sum``: see :func:`train_step`.

    Returns ``(losses, corrects, steps)``: each step's loss summed over its rows and its
    correct count as 0-d device arrays (nothing is read back here; ``corrects`` is empty
    without labels), and the index after the last step run (less than ``len(spans)`` if
    ``stop`` was signalled). With ``onehot`` the counts come from ``Yd`` and ``labels``
    is not gathered.
    """
    losses, corrects = [], []
    count = labels is not None
    for batch in range(first, len(spans)):
        Xb, Yb, Lb, Wb = gather_batch(model.backend, spans[batch], order, buf, X=Xd, Y=Yd,
                                      L=labels if count and not onehot else None, W=weights)
        size = None if batch_sizes is None else batch_sizes[batch]  # across ranks: the global batch's rows
        step_masks = None if masks is None else masks(batch)
        loss, correct = train_step(model, optimizer, Xb, Yb, Lb, batch_size=size, onehot=count and onehot,
                                   grad_hook=grad_hook, buf=buf, row_weights=Wb, masks=step_masks, row_sum=row_sum)
        losses.append(loss)
        if correct is not None:
            corrects.append(correct)
        for cb in callbacks:
            cb.on_batch_end(batch)
        if stop is not None and stop.signum is not None:
            return losses, corrects, batch + 1
    return losses, corrects, len(spans)


def fit(
    model: MLP,
    X: Any,
    y: Any,
    optimizer: Optimizer | None = None,
    epochs: int = 10,
    batch_size: int | None = 64,
    shuffle: bool = True,
    validation_data: tuple[Any, Any] | None = None,
    seed: int = 0,
    verbose: bool = True,
    callbacks: Sequence[Callback] = (),
    reuse_buffers: bool = True,
    checkpoint: str | None = None,
    checkpoint_every: int = 1,
    resume: str | None = None,
    config: dict | None = None,
    allow_changes: bool = False,
    comm: Any = None,
    clip_norm: float | None = None,
    sample_weight: Any = None,
    class_weight: Any = None,
    path: Any = "auto",
) -> History:
    """Train ``model`` on ``(X, y)`` by mini-batch gradient descent.

    Args:
        model: the network; its parameters are updated in place.
        X: ``(m, n_in)`` features, NumPy or already on the model's backend.
        y: targets as :meth:`MLP.evaluate` takes them.
        optimizer: defaults to ``SGD(lr=0.1)``.
        epochs: passes over the data (in total, counting those before a resume).
        batch_size: samples per step; ``None`` is full-batch gradient descent.
        shuffle: reshuffle before every epoch (an order drawn on the host, keyed
            ``(seed, epoch)``, uploaded once; each batch's rows are gathered in ascending order).
        validation_data: ``(X_val, y_val)``, evaluated after every epoch.
        seed: the shuffling seed; epoch ``e`` uses the key ``(seed, e)``.
        verbose: print one line per epoch.
        callbacks: :class:`Callback` objects, e.g. :class:`EarlyStopping`.
        reuse_buffers: write each step's batch, activations, gradients and update
            intermediates into arrays reused across steps where the backend honours
            ``out=`` (NumPy); ``False`` allocates afresh every step (the plain path,
            same results).
        checkpoint: write a checkpoint here (atomically) every ``checkpoint_every``
            epochs, after the last one, and when interrupted. The run holds the path for
            itself until ``fit`` returns or raises: another run that names the same file
            (however spelled: symlinks, hard links) is refused with a ``ValueError``
            naming the holder's pid (:class:`~xpnet.checkpoint.CheckpointLock`).
        checkpoint_every: epochs between checkpoints.
        resume: continue from this checkpoint. The architecture, data shape, batch
            size, seed and optimizer type must match the checkpoint's; the result is
            then bit-identical on the CPU to a run that was never interrupted.
        config: extra JSON-ready settings recorded in checkpoints (the CLI's flags).
        allow_changes: on ``resume``, apply optimizer settings (learning rate, momentum,
            schedule, weight decay, ...) or a number of processes that differ from the
            checkpoint's and record them in ``history.changes``; by default such a resume is
            refused, naming each one.
        comm: data-parallel training across processes (see :mod:`xpnet.distributed`): an
            mpi4py communicator (e.g. ``MPI.COMM_WORLD``) or a
            :class:`~xpnet.distributed.Communicator`; every rank calls ``fit`` with the same
            arguments and whole data set. ``batch_size`` is the global batch: each rank trains
            on its share of every batch and one ``Allreduce`` per step sums the gradients, so
            N ranks compute what one process computes (up to the order of the sums) and every
            rank ends with the same weights, losses and accuracies (not timings). Only rank 0
            prints and writes the checkpoint. An error on one rank during training ends the
            job (``MPI_Abort``).
        clip_norm: scale each step's gradient to at most this global L2 norm, on the device
            (sets ``optimizer.clip_norm``; see :meth:`~xpnet.optim.Optimizer.clip`).

    Returns:
        The :class:`History` of the run (including the epochs before a resume).

    Raises:
        TrainingInterrupted: SIGINT or SIGTERM arrived (after the step in flight and
            the checkpoint, if any, were finished).
        TrainingDiverged: the loss or a weight became NaN or infinite; the
            checkpoint on disk is the last good one.
        OutOfMemory: the device ran out of memory; the message gives the batch
            size and an estimate of the memory needed.
        xpnet.distributed.PeerFailed: with ``comm``, another rank failed before training
            started (every rank raises its own error or this one).
        sample_weight: ``(m,)`` weights of the rows (finite, >= 0, not all 0), or ``None``.
        class_weight: ``None``, ``"balanced"`` (scikit-learn's ``m / (n_classes * count)``) or a
            dict ``{class label: weight}`` (labels as in ``model.classes``; others keep 1); for
            one class per row. It multiplies ``sample_weight``. With either, each row's loss and
            gradient term is times its weight and still divided by the batch's row count (not the
            weights' sum: Keras's ``sum_over_batch_size``; a batch's weight sum varies with its
            class mix, the row count does not, and data-parallel ranks need nothing more), so
            ``history.train_loss`` is the weighted loss ``sum_i w_i loss_i / m``. Validation
            losses stay unweighted. A resume must use the same weights (their digest is checked).
        path: how each step runs. ``"generic"``: :func:`train_step`, written once in ``xp``;
            ``"fused"``: :class:`xpnet.fused.FusedStep`, the same math in 18 launches a step from
            fused kernels (on CuPy compiled by NVRTC; on NumPy built by the C compiler, for tests
            and counts), for a softmax cross-entropy classifier with class-label ``y``, trained by
            SGD or Adam (``form="pytorch"``, no ``clip_norm``) in one process; a ``ValueError``
            says what else stands in the way. ``"auto"`` (default): fused on CuPy where it
            applies and ``reuse_buffers`` is on, generic otherwise. On the fused path a step
            runs on a stream of its own, and an epoch's rates are set when it starts: a callback's
            ``on_batch_end`` should not write device arrays (the weights may be mid-update) and a
            rate it sets takes effect from the next epoch. A :class:`xpnet.kernels.Kernels`
            object is ``"fused"`` with that kernel set (its counts of launches, reads and
            allocations are then the caller's to read).
    """
    comm = as_communicator(comm)
    # across ranks, an error before training starts is raised by every rank; one during it ends the job
    with comm.running(agreed=(TrainingInterrupted, TrainingDiverged)):
        epochs = check_positive(epochs, "epochs", integer=True)
        checkpoint_every = check_positive(checkpoint_every, "checkpoint_every", integer=True)
        if batch_size is not None:
            batch_size = check_positive(batch_size, "batch_size", integer=True)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} is not a seed: expected an integer >= 0")
        if not isinstance(path, Kernels):
            path = check_choice(path, "path", PATHS)
        optimizer = SGD(lr=0.1) if optimizer is None else optimizer
        if not isinstance(optimizer, Optimizer):
            raise ValueError(f"optimizer={optimizer!r} is not an optimizer: expected xpnet.SGD or xpnet.Adam")
        if clip_norm is not None:
            optimizer.clip_norm = check_positive(clip_norm, "clip_norm")
        if checkpoint is not None:
            check_writable(checkpoint, "checkpoint")
        # one live run per checkpoint file: the writer (rank 0) locks it before any work, until
        # fit returns or raises; a refusal here is a setup error, which every rank raises
        lock = CheckpointLock(checkpoint) if checkpoint is not None and comm.rank == 0 else None

        try:
            # the model's GPU is current for the whole run (a no-op off CuPy)
            with lock or contextlib.nullcontext(), model.backend.activate():
                return _fit(model, X, y, optimizer, epochs, batch_size, shuffle, validation_data, seed, verbose,
                            callbacks, reuse_buffers, checkpoint, checkpoint_every, resume, config, allow_changes,
                            comm, lock, sample_weight, class_weight, path)
        except Exception as exc:
            if not is_out_of_memory(exc) or isinstance(exc, OutOfMemory):
                raise
            m = len(X) if hasattr(X, "__len__") else 0
            rows = m if batch_size is None else min(batch_size, m or batch_size)
            state = len(getattr(optimizer, "STATE", ()))
            itemsize = 8 if model.dtype == "float64" else 4
            step_bytes, data_bytes = memory_estimate(model.sizes, rows, itemsize, state, m)
            raise OutOfMemory(model.backend.label, rows, step_bytes, data_bytes, exc) from exc


def _fit(model, X, y, optimizer, epochs, batch_size, shuffle, validation_data, seed, verbose, callbacks,
         reuse_buffers, checkpoint, checkpoint_every, resume, config, allow_changes, comm, lock,
         sample_weight=None, class_weight=None, path="auto") -> History:
    """The body of :func:`fit`, after its arguments are checked."""
    from .validate import as_array

    backend, xp = model.backend, model.xp
    model.prepare(X, y)  # the input scaler and the class list, if still to be learned from the data
    Xd, Yd, labels = model.device_data(X, y)  # (m, n_in), (m, k), (m,) or None: on the device from here on
    m = Xd.shape[0]
    weights = _row_weights(model, labels, m, sample_weight, class_weight)  # (m,) float64 on the host, or None
    Wd = None if weights is None else backend.asarray(weights.astype(model.dtype))  # on the device once
    # class labels became one-hot targets: the correct count can come from them, no labels gathered
    # (a multi-label model's targets are its labels: counted from them the same way)
    label_vector = labels is not None and as_array(y, "y").ndim == 1  # y was class labels, not target rows
    onehot = labels is not None and Yd.shape[1] > 1 and (label_vector or bool(model.multilabel))
    val = None
    if validation_data is not None:
        try:
            Xv, yv = validation_data
        except (TypeError, ValueError):
            raise ValueError("validation_data must be a pair (X_val, y_val)") from None
        val = model.device_data(Xv, yv, ("validation_data[0]", "validation_data[1]"))

    buf = Buffers(backend, enabled=reuse_buffers)
    optimizer.attach([model.flat], backend if reuse_buffers else None, decay=[model.n_weights])
    optimizer.bound_to = model.flat
    spans = batch_spans(m, batch_size)  # the global batches
    if model.norm == "batch" and any(stop_row - start < 2 for start, stop_row in spans):
        raise ValueError(f"norm='batch' needs at least 2 rows in every batch (a variance over one row is 0): "
                         f"batch_size={batch_size} leaves a batch of 1 row of m={m}; choose another batch_size")
    fused = _fused_step(model, optimizer, path, reuse_buffers, label_vector,
                        comm.size, Xd, labels, Wd, batch_size)
    mine = comm.share(spans)  # this rank's contiguous rows of each (all of them in one process)
    gather = shuffle and len(spans) > 1  # a full batch needs no permutation
    history, pos = History(), Position()
    history.weighted = weights is not None
    for cb in callbacks:
        cb.on_train_begin(model, history)
    run_info = {"m": m, "n_in": Xd.shape[1], "targets": list(Yd.shape), "batch_size": batch_size, "seed": seed,
                "shuffle": shuffle, "optimizer": type(optimizer).__name__, "epochs": epochs,
                "world_size": comm.size, "row_weights": _digest(weights), **(config or {})}
    if resume is not None:
        history, pos = load_checkpoint(resume, model, optimizer, callbacks, run_info, allow_changes)
        history.weighted = weights is not None  # the same weights as the checkpoint's (checked)

    def save(position: Position) -> None:
        if comm.rank == 0:
            save_checkpoint(checkpoint, model, optimizer, history, asdict(position), callbacks, run_info)
            lock.moved()  # the path names a new file now: a hard link made to it is refused too
        comm.barrier()  # no rank goes on (or exits) before the file is in place

    comm.agree()  # every rank's setup went well, or every rank raises here
    # Overflow and NaN are checked for explicitly (TrainingDiverged names the epoch and step),
    # so NumPy's own warnings about them would only be noise before that message.
    with StopOnSignal() as stop, np.errstate(over="ignore", invalid="ignore"):
        # across ranks: one Allreduce per step sums the gradients and carries the stop flag, and
        # the loop stops on the agreed flag, so that every rank stops after the same step
        hook = comm.gradient_sum(backend, model.n_params, model.dtype, stop) if comm.size > 1 else None
        agreed = stop if hook is None else hook
        row_sum = comm.row_sum(backend) if model.norm == "batch" else None  # synchronized batch norm
        sizes = [stop_row - start for start, stop_row in spans] if hook is not None else None
        for epoch in range(pos.epoch, epochs):
            # per-step rates (a warm-up, onecycle): uploaded once per epoch, from the step it resumes at
            optimizer.start_epoch(epoch, epochs, len(spans), pos.step if epoch == pos.epoch else 0)
            for cb in callbacks:
                cb.on_epoch_begin(epoch, epochs, len(spans))
            t0 = time.perf_counter()
            # keyed (seed, epoch), drawn on the host: every backend sees the same batches
            order = block_sorted(backend.random(seed, epoch).permutation(m), batch_size) if gather else None
            masks = _step_masks(model, seed, epoch, spans, mine)
            first = pos.step if epoch == pos.epoch else 0
            if fused is not None:
                t_before = optimizer.t - first  # steps taken before the epoch's first
                rates = (optimizer.rates(epoch, epochs, len(spans), t_before) if optimizer.per_step
                         else [optimizer.current_lr] * len(spans))
                fused.start_epoch(order, first, rates, t_before)
                try:
                    done = _run_fused(fused, first, callbacks, agreed)
                finally:  # whatever raised, nothing of the step's stream still runs on freed buffers
                    fused.k.synchronize()
                step_losses, correct, finite = fused.finish_epoch(first, done)  # the epoch's one read
            else:
                losses, corrects, done = run_epoch(model, optimizer, Xd, Yd, labels, mine, order, buf, callbacks,
                                                   first=first, stop=agreed, onehot=onehot, batch_sizes=sizes,
                                                   grad_hook=hook, weights=Wd, masks=masks, row_sum=row_sum)
                step_losses, correct, finite = _epoch_record(xp, model.flat, losses, corrects, model.dtype)  # one read
            step_losses, correct = comm.epoch_sums(step_losses, correct)  # over the ranks: the same on each
            if first:  # resumed inside this epoch: prepend what the checkpoint had
                step_losses = np.concatenate([pos.losses, step_losses])
                correct += pos.correct
            bad = np.flatnonzero(~np.isfinite(step_losses))
            if bad.size:
                raise TrainingDiverged(epoch + 1, int(bad[0]) + 1, "the loss", optimizer.current_lr)
            if not finite:
                raise TrainingDiverged(epoch + 1, None, "a weight", optimizer.current_lr)
            if done < len(spans):  # interrupted: keep the position inside the epoch
                position = Position(epoch, done, step_losses, correct)
                if checkpoint is not None:
                    save(position)
                raise TrainingInterrupted(agreed.signum, epoch + 1, done, checkpoint)
            seconds = time.perf_counter() - t0
            # the per-step sums over rows, added on the host in float64
            train_loss = float(np.sum(step_losses, dtype=np.float64)) / m

            history.epoch.append(epoch + 1)
            history.train_loss.append(train_loss)
            if labels is not None:
                history.train_accuracy.append(correct / m)
            history.lr.append(optimizer.current_lr)
            history.seconds.append(seconds)
            history.samples_per_second.append((m - spans[first][0]) / seconds if seconds > 0 else math.inf)
            if val is not None:
                scores = model.scores(*val)
                history.val_loss.append(scores["loss"])
                if "accuracy" in scores:
                    history.val_accuracy.append(scores["accuracy"])
            if verbose and comm.rank == 0:
                print(format_epoch(history, epochs), flush=True)
            halt = False
            for cb in callbacks:
                halt = cb.on_epoch_end(model, history) or halt
            # across ranks: a signal or a halt on any rank is one for all (and the weights are checked equal)
            signum, halt = comm.agree_epoch(model.flat, stop.signum, halt)
            due = halt or epoch + 1 == epochs or (epoch + 1) % checkpoint_every == 0
            if checkpoint is not None and (due or signum is not None):
                save(Position(epoch + 1))
            if signum is not None:  # the signal came during validation or the callbacks
                raise TrainingInterrupted(signum, epoch + 1, len(spans), checkpoint, complete=epoch + 1 == epochs)
            if halt:
                history.stopped_early = True
                break

    for cb in callbacks:
        cb.on_train_end(model, history)
    return history


def _epoch_record(xp, flat, losses: list, corrects: list, dtype: str) -> tuple[np.ndarray, int, bool]:
    """An epoch of the generic path, read back at once: ``(each step's loss (host array, the
    model dtype), the correct count, whether every weight in ``flat`` is finite)``, from the
    steps' 0-d device losses and counts: one device read (and sync) for the three."""
    wide = xp.float64  # the correct count summed exactly (float32 would lose a row above 2^24)
    parts = [xp.astype(xp.stack(losses), wide)] if losses else []
    count = (xp.sum(xp.astype(xp.stack(corrects), wide)) if corrects
             else xp.zeros((), dtype=wide, device=array_api_compat.device(flat)))
    parts += [xp.reshape(count, (1,)), xp.reshape(xp.astype(xp.all(xp.isfinite(flat)), wide), (1,))]
    record = to_numpy(xp.concat(parts))
    return record[:-2].astype(dtype), int(round(float(record[-2]))), bool(record[-1])


def _step_masks(model: MLP, seed: int, epoch: int, spans, mine) -> Callable | None:
    """``masks(step)``: the step's dropout masks for this rank's rows (``None`` without dropout), keyed
    ``(seed, epoch, step)`` over the global batch's rows (``spans``), of which this rank takes its
    share (``mine``): a resumed epoch and every rank draw what one uninterrupted process draws."""
    if not any(b.dropout for b in model.blocks):
        return None

    def masks(step: int) -> list:
        (g0, g1), (s0, s1) = spans[step], mine[step]
        return draw_masks(model.backend, model.blocks, model.sizes, model.dtype, (seed, epoch, step), g1 - g0,
                          (s0 - g0, s1 - g0))

    return masks


def _fused_step(model, optimizer, path, reuse_buffers, label_vector, processes, Xd, labels, Wd, batch_size):
    """The run's :class:`~xpnet.fused.FusedStep`, or ``None`` for the generic step (see :func:`fit`'s ``path``)."""
    if path == "generic" or (path == "auto" and not (reuse_buffers and model.backend.is_cupy)):
        return None
    reason = unsupported(model, optimizer, label_vector, processes)
    if reason is not None:
        if path != "auto":
            raise ValueError(f"path='fused' cannot train this run: {reason}; use path='generic' or 'auto'")
        return None
    kernels = path if isinstance(path, Kernels) else kernels_for(model.backend, model.dtype)
    return FusedStep(model, optimizer, kernels, Xd, labels, Wd, batch_size)


def _run_fused(fused: FusedStep, first: int, callbacks, stop) -> int:
    """Steps ``first, first + 1, ...`` of the epoch on the fused path; the index after the last one
    run (less than the epoch's steps if ``stop`` was signalled). Nothing is read back here."""
    for batch in range(first, fused.steps):
        fused.step(batch)
        for cb in callbacks:
            cb.on_batch_end(batch)
        if stop is not None and stop.signum is not None:
            return batch + 1
    return fused.steps


def _row_weights(model: MLP, labels, m: int, sample_weight, class_weight) -> np.ndarray | None:
    """fit's ``sample_weight`` times its ``class_weight`` for each row ``(m,)`` float64, or ``None``."""
    from .labels import class_weights
    from .validate import as_array

    w = None
    if sample_weight is not None:
        w = np.asarray(to_numpy(as_array(sample_weight, "sample_weight")))
        if w.shape != (m,) or w.dtype.kind not in "iuf":
            raise ValueError(f"sample_weight has shape {w.shape} and dtype {w.dtype}: expected ({m},) numbers, one per row")
        w = w.astype(np.float64)
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError("sample_weight holds negative, NaN or infinite values: expected finite weights >= 0")
    if class_weight is not None:
        if labels is None or model.multilabel:
            what = "a multi-label model" if model.multilabel else "targets that are not class labels"
            raise ValueError(f"class_weight={class_weight!r} weights classes, one per row, but this fit has {what}: "
                             "use sample_weight")
        idx = to_numpy(labels)  # (m,) output indices: one read, before training
        by_row = class_weights(class_weight, model.classes, idx, model.n_label_values)[idx]
        w = by_row if w is None else w * by_row
    if w is not None and not np.any(w > 0):
        raise ValueError("the row weights (sample_weight times class_weight) are all 0: nothing to learn from")
    return w


def _digest(weights: np.ndarray | None) -> str | None:
    """A short SHA-256 of the row weights (float64 bytes), kept in checkpoints so a resume uses the same."""
    import hashlib

    return None if weights is None else hashlib.sha256(np.ascontiguousarray(weights, np.float64).tobytes()).hexdigest()[:16]


def format_epoch(history: History, epochs: int) -> str:
    """One line for the last epoch: training loss, training accuracy (``train_acc``: on the
    batches as they were trained, during the epoch), validation scores, speed."""
    last = history.last()
    width = len(str(epochs))
    loss = "weighted loss" if history.weighted else "loss"  # fit's sample_weight or class_weight
    parts = [f"epoch {last['epoch']:>{width}}/{epochs}", f"{loss} {last['train_loss']:.4f}"]
    if "train_accuracy" in last:
        parts.append(f"train_acc {100 * last['train_accuracy']:.2f}%")
    if "val_loss" in last:
        parts.append(f"val_loss {last['val_loss']:.4f}")
    if "val_accuracy" in last:
        parts.append(f"val_acc {100 * last['val_accuracy']:.2f}%")
    parts.append(f"{last['seconds']:.2f}s")
    parts.append(f"{last['samples_per_second']:,.0f} samples/s")
    return "  ".join(parts)

