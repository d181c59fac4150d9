"""The training loop: data to the device once, shuffled batches there, one read per epoch."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .backend import Buffers
from .model import MLP, batch_spans
from .optim import SGD, Optimizer
from .validate import check_positive


@dataclass
class History:
    """Per-epoch results of :func:`fit`; each list has one entry per epoch run."""

    epoch: list[int] = field(default_factory=list)  # 1-based
    train_loss: list[float] = field(default_factory=list)  # mean over the epoch's samples
    train_accuracy: list[float] = field(default_factory=list)  # during the epoch; empty for regression
    val_loss: list[float] = field(default_factory=list)  # empty without validation data
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)  # wall time of the epoch's steps
    samples_per_second: list[float] = field(default_factory=list)
    stopped_early: bool = False
    best_epoch: int | None = None  # set by EarlyStopping

    def last(self) -> dict:
        """The last epoch's values as a dict (empty before the first epoch)."""
        if not self.epoch:
            return {}
        out = {"epoch": self.epoch[-1], "train_loss": self.train_loss[-1], "lr": self.lr[-1]}
        if self.train_accuracy:
            out["train_accuracy"] = self.train_accuracy[-1]
        if self.val_loss:
            out["val_loss"] = self.val_loss[-1]
        if self.val_accuracy:
            out["val_accuracy"] = self.val_accuracy[-1]
        out["seconds"] = self.seconds[-1]
        out["samples_per_second"] = self.samples_per_second[-1]
        return out


class Callback:
    """Hooks called by :func:`fit`; override what you need. Return True from
    ``on_epoch_end`` to stop training. ``on_batch_end`` runs on the host after a
    step is queued; it must not read device arrays (that would sync every step)."""

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

    With ``restore_best`` the weights of the best epoch are copied back at the end
    (snapshots are device-side copies; nothing goes through the host).
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
        self.wait = 0

    def on_train_begin(self, model, history):
        self.best, self.best_params, self.wait = None, None, 0

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
                xp = model.xp
                self.best_params = [xp.asarray(p, copy=True) for p in model.params]
            return False
        self.wait += 1
        return self.wait >= self.patience

    def on_train_end(self, model, history):
        if self.restore_best and self.best_params is not None:
            model.params = self.best_params


def run_epoch(model: MLP, optimizer: Optimizer, Xd, Yd, labels, spans, order, buf: Buffers, callbacks=()):
    """One pass over device data in ``spans`` batches, in ``order`` (a device permutation, or
    ``None`` for slices). Returns ``(loss_sum, correct)``: 0-d device arrays (or 0), not yet
    read back, so the caller decides when to synchronize."""
    xp, nx = model.xp, model.backend.nx
    loss_sum, correct = 0.0, 0
    for batch, (start, stop) in enumerate(spans):
        if order is None:
            Xb, Yb = Xd[start:stop, :], Yd[start:stop, :]
            Lb = None if labels is None else labels[start:stop]
        else:
            idx, rows = order[start:stop], stop - start
            # mode="clip" skips NumPy's bounds check, which buffers the copy; idx is a permutation
            Xb = nx.take(Xd, idx, axis=0, out=buf("X", (rows, Xd.shape[1]), Xd.dtype), mode="clip")
            Yb = nx.take(Yd, idx, axis=0, out=buf("Y", (rows, Yd.shape[1]), Yd.dtype), mode="clip")
            Lb = None if labels is None else xp.take(labels, idx, axis=0)
        acts, Z, A = model._forward(Xb, buf)
        loss, grads = model._backward(acts, Z, A, Yb, buf)
        loss_sum = loss_sum + loss * (stop - start)
        if Lb is not None:
            correct = correct + xp.sum(xp.astype(model._labels_of(A) == Lb, xp.int64))
        optimizer.step(model.params, grads)
        for cb in callbacks:
            cb.on_batch_end(batch)
    return loss_sum, correct


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
) -> History:
    """Train ``model`` on ``(X, y)`` by mini-batch gradient descent.

    Args:
        model: the network; its parameters are updated in place.
        X: ``(m, n_in)`` features, NumPy or already on the model's backend.
        y: targets as :meth:`MLP.evaluate` takes them.
        optimizer: defaults to ``SGD(lr=0.1)``.
        epochs: passes over the data.
        batch_size: samples per step; ``None`` is full-batch gradient descent.
        shuffle: reshuffle (on the device) before every epoch.
        validation_data: ``(X_val, y_val)``, evaluated after every epoch.
        seed: the shuffling seed; epoch ``e`` uses the key ``(seed, e)``.
        verbose: print one line per epoch.
        callbacks: :class:`Callback` objects, e.g. :class:`EarlyStopping`.
        reuse_buffers: write each step's batch, activations, gradients and update
            intermediates into arrays reused across steps where the backend honours
            ``out=`` (NumPy); ``False`` allocates afresh every step (the plain path,
            same results).

    Returns:
        The :class:`History` of the run.
    """
    epochs = check_positive(epochs, "epochs", integer=True)
    if batch_size is not None:
        batch_size = check_positive(batch_size, "batch_size", integer=True)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed={seed!r} is not a seed: expected an integer >= 0")
    optimizer = SGD(lr=0.1) if optimizer is None else optimizer
    if not isinstance(optimizer, Optimizer):
        raise ValueError(f"optimizer={optimizer!r} is not an optimizer: expected xpnet.SGD or xpnet.Adam")

    backend = model.backend
    Xd = model._features(X)  # (m, n_in), on the device from here on
    m = Xd.shape[0]
    Yd, labels = model._targets(y, m)  # (m, k), (m,) or None
    val = None
    if validation_data is not None:
        try:
            Xv, yv = validation_data
        except (TypeError, ValueError):
            raise ValueError("validation_data must be a pair (X_val, y_val)") from None
        Xvd = model._features(Xv, "validation_data[0]")
        val = (Xvd, *model._targets(yv, Xvd.shape[0], "validation_data[1]"))

    buf = Buffers(backend, enabled=reuse_buffers)
    optimizer.attach(model.params, backend if reuse_buffers else None)
    spans = batch_spans(m, batch_size)
    gather = shuffle and len(spans) > 1  # a full batch needs no permutation
    history = History()
    for cb in callbacks:
        cb.on_train_begin(model, history)

    for epoch in range(epochs):
        optimizer.start_epoch(epoch, epochs)
        for cb in callbacks:
            cb.on_epoch_begin(epoch, epochs, len(spans))
        t0 = time.perf_counter()
        order = backend.random(seed, epoch).permutation(m) if gather else None
        loss_sum, correct = run_epoch(model, optimizer, Xd, Yd, labels, spans, order, buf, callbacks)
        train_loss = float(loss_sum) / m  # the epoch's device-to-host reads (and sync)
        train_accuracy = None if labels is None else int(correct) / m
        seconds = time.perf_counter() - t0

        history.epoch.append(epoch + 1)
        history.train_loss.append(train_loss)
        if train_accuracy is not None:
            history.train_accuracy.append(train_accuracy)
        history.lr.append(optimizer.current_lr)
        history.seconds.append(seconds)
        history.samples_per_second.append(m / seconds if seconds > 0 else math.inf)
        if val is not None:
            scores = model._evaluate(*val)
            history.val_loss.append(scores["loss"])
            if "accuracy" in scores:
                history.val_accuracy.append(scores["accuracy"])
        if verbose:
            print(format_epoch(history, epochs), flush=True)
        stop = False
        for cb in callbacks:
            stop = cb.on_epoch_end(model, history) or stop
        if stop:
            history.stopped_early = True
            break

    for cb in callbacks:
        cb.on_train_end(model, history)
    return history


def format_epoch(history: History, epochs: int) -> str:
    """One line for the last epoch: loss, validation scores, speed."""
    last = history.last()
    width = len(str(epochs))
    parts = [f"epoch {last['epoch']:>{width}}/{epochs}", f"loss {last['train_loss']:.4f}"]
    if "train_accuracy" in last:
        parts.append(f"acc {100 * last['train_accuracy']:.2f}%")
    if "val_loss" in last:
        parts.append(f"val_loss {last['val_loss']:.4f}")
    if "val_accuracy" in last:
        parts.append(f"val_acc {100 * last['val_accuracy']:.2f}%")
    parts.append(f"{last['seconds']:.2f}s")
    parts.append(f"{last['samples_per_second']:,.0f} samples/s")
    return "  ".join(parts)
