"""The multilayer perceptron: parameters, forward pass, backprop, predictions.

Batch-first notation: ``X`` is ``(m, n_in)``, layer ``l`` has ``W`` of shape
``(n_{l-1}, n_l)`` and ``b`` of shape ``(n_l,)``, and ``Z = A_prev @ W + b``.
The classic tutorials keep samples as columns and write ``Z = W X + b`` with
``W`` of shape ``(n_l, n_{l-1})``: their ``W`` is our ``W.T`` and their ``Z`` our ``Z.T``.

Every array operation goes through ``self.backend.xp``, or in the training step
``self.backend.nx`` (the same namespace, plus ``out=`` where NumPy and CuPy honour it), so
the same code runs on NumPy, CuPy and any array-API namespace.

Parameters live in one contiguous buffer per model, :attr:`MLP.flat`: the weights
``W1 ... WL`` first, then the biases ``b1 ... bL``. :attr:`MLP.params` are views into
it, so ``W1`` is still ``W1`` to the reader, while an optimizer updates the whole
network in a handful of whole-buffer operations and data-parallel training reduces
one array. Gradients come back in the same layout (:mod:`xpnet.flat`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from . import io
from .activations import ACTIVATIONS, HIDDEN, OUTPUTS
from .backend import NO_BUFFERS, Backend, Buffers, get_backend, mutable_backend, on_device, to_numpy
from .batches import batch_spans
from .faults import check_memory
from .flat import Layout, ParamList
from .labels import check_classes, count_correct, decode_labels, encode_labels, infer_classes, labels_of, preview, step_correct
from .layers import build_blocks
from .losses import DEFAULT_LOSS, LOSSES, LossSettings, loss_settings, softmax_cross_entropy
from .preprocess import SCALE_CHOICES, Scaler, fit_scaler, scaler_for
from .validate import as_array, check_choice, check_features, check_range, check_sizes, check_targets

INITS = {  # name -> std of N(0, std^2) as a function of fan-in; biases start at zero
    "small": lambda n_in: 0.01,  # the tutorials' np.random.randn(...) * 0.01
    "xavier": lambda n_in: 1.0 / math.sqrt(n_in),
    "he": lambda n_in: math.sqrt(2.0 / n_in),
    "normal": lambda n_in: 1.0,  # Nielsen's network.py
}
DTYPES = ("float32", "float64")
EVAL_BATCH = 8192  # rows per forward pass in evaluate/predict: bounds memory, not results


class Gradient(NamedTuple):
    """What :meth:`MLP.backprop` returns for one batch."""

    loss: Any  # 0-d device array: the loss summed over the batch's rows
    correct: Any  # 0-d device count of correct predictions, or None when not asked for
    grad: Any  # (n_params,) device array in the layout of MLP.flat: the sum over rows / batch_size


class MLP:
    """A fully connected network trained by hand-written backprop.

    Args:
        sizes: layer widths ``[n_in, hidden..., n_out]``.
        activation: hidden activation, one of ``sigmoid, tanh, relu, leaky_relu, identity``, ``gelu``
            (its tanh form), ``silu``, ``elu`` (alpha 1) or ``softplus``. GELU and SiLU keep each layer's
            input for the backward pass: one more ``(m, n_l)`` array per hidden layer.
        output: output activation, one of ``softmax, sigmoid, identity``.
        loss: ``cross_entropy`` (softmax), ``binary_cross_entropy`` (sigmoid), ``mse`` (any
            output), or for regression (identity output) ``huber`` and ``mae`` (absolute error;
            its gradient at 0 is 0, as PyTorch's); each summed over the outputs and averaged over
            the rows. ``None`` picks the one that matches ``output``.
        huber_delta: ``huber``'s ``delta > 0``: per element ``0.5 d^2`` for ``|d| <= delta``,
            ``delta (|d| - delta / 2)`` beyond (PyTorch's ``HuberLoss``); default 1.
        label_smoothing: ``0 <= eps < 1`` for ``cross_entropy``: the targets become
            ``y (1 - eps) + eps / k`` (PyTorch's ``CrossEntropyLoss(label_smoothing=eps)``); the loss
            that ``fit`` and :meth:`evaluate` report is then the smoothed one. Default 0.
        init: ``small, xavier, he, normal``; ``None`` is ``he`` for relu-like
            activations, ``xavier`` otherwise.
        backend, device: where the parameters live (see :func:`xpnet.get_backend`).
        dtype: ``float32`` or ``float64``.
        seed: the seed for the initial weights; the same seed gives the same
            weights on every backend.
        classes: the class labels that the outputs stand for (integers or strings, like
            scikit-learn's ``classes_``): output ``j`` is ``classes[j]``, and a single
            sigmoid unit's 0/1 are ``classes[0]``/``classes[1]``. ``None``: :func:`~xpnet.fit`
            infers it from ``y`` (integer labels that are all in ``0..k-1`` give
            ``0..k-1``; any other labels give their sorted distinct values, which must
            number ``k``). ``predict`` returns these labels; ``evaluate`` and ``fit`` take them.
        scale: an input transform the model carries and applies to every ``X`` it is
            given: ``None`` (off), a fitted :class:`~xpnet.Scaler`, or ``"standard"``,
            ``"minmax"``, ``"auto"`` to be fitted by :func:`~xpnet.fit` on the training rows
            (``auto`` leaves data already in ``[-1, 1]`` alone and standardizes the rest).
        multilabel: for ``output="sigmoid"`` with 2+ units: each unit is a label of its own, on
            when its probability is 0.5 or more; targets are ``(m, k)`` 0/1 rows, :meth:`predict`
            returns such rows and accuracy is the subset accuracy (a row counts when every label
            is right), as scikit-learn's. ``None``: :func:`~xpnet.fit` decides from ``y``: a 2-D
            0/1 ``y`` is multi-label unless every row is one-hot (one 1 a row: classes, as
            class labels are); ``True`` makes even one-hot rows multi-label.
        target_scale: for a regressor (identity output with real targets), a transform of
            the targets the model trains on: ``None`` (off), a fitted :class:`~xpnet.Scaler`
            over the ``n_out`` outputs, or ``"standard"`` / ``"minmax"`` to be fitted by
            :func:`~xpnet.fit` on the training targets. The network then learns
            ``(y - shift) * factor``, and :meth:`forward` and :meth:`predict` undo it: outputs are
            in the targets' own units. The loss (of ``fit`` and :meth:`evaluate`) is the one
            trained, on the scaled targets. Targets like 25..346 trained unscaled need a far
            smaller learning rate and still start with a loss in the thousands.

        dropout: inverted dropout after each hidden layer's activation, in training only: one
            rate ``0 <= p < 1`` for every hidden layer, or a list of one per hidden layer; masks are
            drawn on the host per step keyed by seed, epoch, step and layer over the global batch's
            rows (:func:`xpnet.layers.draw_masks`).
        norm: ``None``, ``"batch"`` or ``"layer"``: a normalization between each hidden layer's
            product and its activation, with a trained scale (from 1) and shift (from 0); batch
            norm keeps running statistics for eval mode (PyTorch's conventions: :mod:`xpnet.layers`).
        residual: add each hidden layer's input to its output where the widths match
            (``A_l = A_{l-1} + dropout(f(norm(A_{l-1} W_l + b_l)))``); refused where no hidden layer
            keeps its width.

    Attributes:
        params: ``[W1, b1, W2, b2, ...]``, backend arrays; ``W`` is ``(n_{l-1}, n_l)``; a normalized
            layer adds its ``gamma, beta`` after its ``b`` (``layout.names`` says which is which).
        stats, running: batch norm's running means and variances, one array and its per-layer
            ``(mean, var)`` views (``None`` for a layer without batch norm); saved, not trained.
        flat, layout, n_weights: the one buffer ``params`` are views of, where each lies in it (an
            :class:`xpnet.flat.Layout`) and where its biases begin (after the weights).
        classes: ``None`` or the host array of class labels.
        scaler: ``None`` or the fitted :class:`~xpnet.Scaler`.
        target_scaler: ``None`` or the fitted :class:`~xpnet.Scaler` of a regressor's targets.
        data_info: ``None`` or a JSON-ready record of the data the model was trained on
            (the CLI stores the data set or file, seed and split here); saved with the model.
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        output: str = "softmax",
        loss: str | None = None,
        init: str | None = None,
        backend: Any = None,
        device: Any = "cpu",
        dtype: str = "float32",
        seed: int = 0,
        classes: Sequence | None = None,
        scale: str | Scaler | None = None,
        target_scale: str | Scaler | None = None,
        multilabel: bool | None = None,
        huber_delta: float = 1.0,
        label_smoothing: float = 0.0,
        dropout: float | Sequence[float] = 0.0,
        norm: str | None = None,
        residual: bool = False,
    ):
        self._configure(sizes, activation, output, loss, init, dtype, classes, multilabel, huber_delta, label_smoothing,
                        dropout, norm, residual)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} is not a seed: expected an integer >= 0")
        self.seed = seed
        self._set_scale(scale, target_scale)
        self.data_info: dict | None = None
        self.backend: Backend = mutable_backend(get_backend(backend, device))
        check_memory(self.n_params, np.dtype(self.dtype).itemsize, self.sizes, self.backend)
        # Drawn on the host, layer by layer in blocks of rows, straight into the flat layout:
        # the same numbers on every backend, and a peak near the final float32 buffer.
        rng, host = self.backend.random(seed), np.zeros(self.n_params, dtype=self.dtype)
        for l in range(self.n_layers):
            start, stop, shape = self.layout.slices[self.layout.index("W", l)]
            rng.fill_normal(host[start:stop].reshape(shape), scale=INITS[self.init](shape[0]))
        for l in self.normed:  # a normalization's scale starts at 1 (its shift at 0)
            start, stop, _ = self.layout.slices[self.layout.index("gamma", l)]
            host[start:stop] = 1.0
        self._bind(self.backend.asarray(host))  # one transfer
        self._init_running()

    def _configure(self, sizes, activation, output, loss, init, dtype, classes=None, multilabel=None,
                   huber_delta=1.0, label_smoothing=0.0, dropout=0.0, norm=None, residual=False) -> None:
        self.sizes = check_sizes(sizes)
        self.activation = check_choice(activation, "activation", HIDDEN)
        self.blocks = build_blocks(self.sizes, self.activation, dropout, norm, residual)  # per hidden layer
        rates = [b.dropout for b in self.blocks]
        self.dropout = rates if len(set(rates)) > 1 else (rates[0] if rates else 0.0)  # one rate, or one per layer
        self.norm, self.residual = norm, bool(residual)
        self.normed = [l for l, b in enumerate(self.blocks) if b.norm]  # layers with a scale and shift
        self.output = check_choice(output, "output", OUTPUTS)
        self.loss = DEFAULT_LOSS[output] if loss is None else check_choice(loss, "loss", tuple(LOSSES))
        if output not in LOSSES[self.loss].outputs:
            raise ValueError(
                f"loss={self.loss!r} does not fit output={output!r}: "
                f"{self.loss} expects output {' or '.join(LOSSES[self.loss].outputs)}; "
                f"use loss={DEFAULT_LOSS[output]!r} (the default for output={output!r})"
                + ("" if DEFAULT_LOSS[output] == "mse" else " or 'mse'")
            )
        self.loss_settings = loss_settings(self.loss, huber_delta, label_smoothing)
        self.huber_delta, self.label_smoothing = self.loss_settings
        if output == "softmax" and self.sizes[-1] < 2:
            raise ValueError(
                f"sizes[-1]={self.sizes[-1]} with output='softmax': softmax needs >= 2 units; "
                "use output='sigmoid' for a single unit"
            )
        if init is None:
            init = "he" if self.activation in ("relu", "leaky_relu") else "xavier"
        self.init = check_choice(init, "init", tuple(INITS))
        self.dtype = check_choice(dtype, "dtype", DTYPES)
        self.layout = Layout(self.sizes, self.normed)  # where each parameter lives in flat: weights, biases, norms
        self.n_weights = self.layout.n_weights  # where the biases begin
        if classes is not None and not self.takes_labels:
            raise ValueError(f"classes={preview(list(classes))} with a single identity output: a regressor has no classes")
        self.classes = None if classes is None else check_classes(classes, self.n_label_values)
        if multilabel is not None and not isinstance(multilabel, bool):
            raise ValueError(f"multilabel={multilabel!r} is not valid: expected True, False or None (decided by fit)")
        if multilabel and (self.output != "sigmoid" or self.sizes[-1] < 2):
            raise ValueError(f"multilabel=True with output={self.output!r} and sizes[-1]={self.sizes[-1]}: multi-label "
                             "needs output='sigmoid' and one unit per label (2 or more)")
        self.multilabel = multilabel if self.output == "sigmoid" and self.sizes[-1] >= 2 else None

    def _set_scale(self, scale, target_scale=None) -> None:
        """``scaler`` and ``target_scaler`` now (a Scaler or None), or kinds that :meth:`prepare` fits later."""
        self._scale_to_fit = self._target_scale_to_fit = None
        self.scaler: Scaler | None = None
        self.target_scaler: Scaler | None = None
        if isinstance(scale, Scaler):
            if scale.n_features != self.sizes[0]:
                raise ValueError(f"scale has {scale.n_features} features but sizes[0]={self.sizes[0]}: "
                                 "expected a Scaler fitted on data of the network's width")
            self.scaler = scale
        elif scale is not None:
            self._scale_to_fit = check_choice(scale, "scale", SCALE_CHOICES + (None,))
        if target_scale is not None and self.output != "identity":
            raise ValueError(f"target_scale={target_scale!r} with output={self.output!r}: only a regressor "
                             "(output='identity') has targets to scale")
        if isinstance(target_scale, Scaler):
            if target_scale.n_features != self.sizes[-1]:
                raise ValueError(f"target_scale has {target_scale.n_features} outputs but sizes[-1]={self.sizes[-1]}: "
                                 "expected a Scaler fitted on targets of the network's output width")
            self.target_scaler = target_scale
        elif target_scale is not None:
            self._target_scale_to_fit = check_choice(target_scale, "target_scale", Scaler.KINDS)
        self._device_cache: dict = {}

    # ------------------------------------------------------- the flat buffer
    def _bind(self, flat) -> None:
        """Make ``flat`` the parameter buffer and :attr:`params` views into it."""
        self.flat = flat
        self._params = ParamList(self.layout, self.views(flat), self.backend, self.backend.dtype(self.dtype))

    def views(self, flat) -> list:
        """Per-layer views ``[W1, b1, W2, b2, ...]`` of any array in the flat layout
        (the parameters, a gradient, an optimizer's moments)."""
        return self.layout.views(self.xp, flat)

    @on_device
    def pack(self, arrays: Sequence):
        """Arrays ``[W1, b1, ...]`` (host or device) as one new device array in the flat layout."""
        return self.layout.pack(self.backend, arrays, self.backend.dtype(self.dtype))

    @property
    def params(self) -> ParamList:
        """``[W1, b1, W2, b2, ...]``: views into :attr:`flat`; ``W`` is ``(n_{l-1}, n_l)``."""
        return self._params

    @params.setter
    @on_device
    def params(self, arrays: Sequence) -> None:
        arrays = list(arrays)
        if len(arrays) != len(self.layout):
            raise ValueError(f"params takes {len(self.layout)} arrays [W1, b1, ...], got {len(arrays)}")
        for i, a in enumerate(arrays):
            self.layout.check(i, a)
        self.flat[...] = self.pack(arrays)  # into the same buffer: views and optimizers stay attached

    def _init_running(self, host=None) -> None:
        """Batch norm's running mean and variance (state that is saved, not trained): one array
        :attr:`stats` laid out ``[mean, var]`` per batch-normed layer, with views ``running[l]``;
        mean 0 and variance 1 to start (PyTorch's), or the values of ``host``."""
        widths = [self.sizes[l + 1] for l in self.normed] if self.norm == "batch" else []
        if host is None:
            host = np.concatenate([np.concatenate([np.zeros(n), np.ones(n)]) for n in widths] or [np.zeros(0)])
        with self.backend.activate():
            self.stats = self.backend.asarray(np.asarray(host, dtype=self.dtype))
        self.running: list = [None] * len(self.blocks)
        start = 0
        for l, n in zip(self.normed if widths else [], widths):
            self.running[l] = (self.stats[start:start + n], self.stats[start + n:start + 2 * n])
            start += 2 * n

    # ------------------------------------------------------------------ basics
    @property
    def xp(self):
        return self.backend.xp

    @property
    def n_layers(self) -> int:
        """Number of weight layers (``len(sizes) - 1``)."""
        return len(self.sizes) - 1

    @property
    def n_params(self) -> int:
        return self.layout.size

    @property
    def is_classifier(self) -> bool:
        return self.output != "identity"

    @property
    def takes_labels(self) -> bool:
        """Whether ``y`` may be a vector of class labels (all but a single identity unit)."""
        return not (self.sizes[-1] == 1 and self.output == "identity")

    @property
    def n_label_values(self) -> int:
        """How many classes the outputs tell apart: ``sizes[-1]``, or 2 for a single unit."""
        return max(self.sizes[-1], 2)

    def config(self) -> dict:
        """The constructor arguments that define this network (JSON-ready)."""
        return {
            "sizes": list(self.sizes),
            "activation": self.activation,
            "output": self.output,
            "loss": self.loss,
            "init": self.init,
            "dtype": self.dtype,
            "seed": self.seed,
            "classes": None if self.classes is None else self.classes.tolist(),
            **({"multilabel": self.multilabel} if self.multilabel is not None else {}),
            # the losses' settings where not the default (absent from older files: the default)
            **{k: v for k, v in self.loss_settings._asdict().items() if v != getattr(LossSettings(), k)},
            **self.layer_config(),
        }

    def layer_config(self) -> dict:
        """``dropout``, ``norm`` and ``residual`` where not the default (files before them had none)."""
        return {k: v for k, v in (("dropout", self.dropout), ("norm", self.norm), ("residual", self.residual)) if v}

    def __repr__(self) -> str:
        layers = "".join(f", {k}={v!r}" for k, v in self.layer_config().items())
        return (
            f"MLP({self.sizes}, activation={self.activation!r}{layers}, output={self.output!r}, "
            f"loss={self.loss!r}, dtype={self.dtype!r}, backend={self.backend})"
        )

    # ------------------------------------------------- classes and input scale
    @on_device
    def prepare(self, X, y=None) -> None:
        """Fit what the model learns from its training data before the first step.

        Fits the input scaler if ``scale`` was given as a kind (``"standard"``, ...) and
        not fitted yet, the target scaler likewise from ``y`` (``target_scale``), and infers
        :attr:`classes` from label vector ``y`` if it is ``None``. All are kept from then on
        (a second call changes nothing).
        :func:`~xpnet.fit` calls this; call it yourself for a hand-written loop.
        """
        learns_from_y = y is not None and (
            (self.multilabel is None and self.output == "sigmoid" and self.sizes[-1] >= 2)
            or (self.classes is None and self.takes_labels) or self._target_scale_to_fit is not None)
        if self._scale_to_fit is None and not learns_from_y:
            return  # nothing left to learn (fit's own call after a first one): X is checked where it is used
        # bad X is reported as such, before anything is learned from it
        X = check_features(X, self.sizes[0])
        if self._scale_to_fit is not None:
            self.scaler, self._scale_to_fit = scaler_for(to_numpy(X), self._scale_to_fit), None
            self._device_cache.clear()
        if y is not None and self.multilabel is None and self.output == "sigmoid" and self.sizes[-1] >= 2:
            # 0/1 rows are multi-label unless every row holds exactly one 1: one-hot rows stay classes
            # (Nielsen's vectorized targets for sigmoid units); multilabel=True says so up front
            rows = to_numpy(as_array(y, "y"))
            self.multilabel = rows.ndim == 2 and not bool(np.all(np.count_nonzero(rows, axis=1) == 1))
        if y is not None and self.classes is None and self.takes_labels and not self.multilabel:
            self.classes = infer_classes(y, X.shape[0], self.sizes[-1])
            self._device_cache.clear()
        if y is not None and self._target_scale_to_fit is not None:
            Y, is_labels = check_targets(y, X.shape[0], self.sizes[-1], self.output)
            if is_labels:
                raise ValueError(f"target_scale={self._target_scale_to_fit!r} scales real-valued targets, but y holds "
                                 "class labels for the network's outputs: leave target_scale out for classes")
            Y = to_numpy(Y).astype(np.float64)
            self.target_scaler = fit_scaler(Y.reshape(len(Y), -1), self._target_scale_to_fit)
            self._target_scale_to_fit = None
            self._device_cache.clear()

    @property
    def unfitted(self) -> tuple[str, ...]:
        """The arguments given as kinds that :meth:`prepare` has not fitted yet: ``"scale"``,
        ``"target_scale"``, or neither (``()``). An exporter needs them fitted."""
        return tuple(name for name, kind in (("scale", self._scale_to_fit), ("target_scale", self._target_scale_to_fit))
                     if kind is not None)

    def encode_labels(self, y, name: str = "y"):
        """Class labels ``(m,)`` to output indices ``0..k-1`` (int64), on the array's side.

        Anything but a label vector (2-D targets, regression targets), and every ``y``
        when the classes are ``0..k-1``, is returned as it is. A label not in
        :attr:`classes` is a ValueError naming it.
        """
        if not self.takes_labels and self.classes is not None:
            return y
        return encode_labels(self.classes, y, self.backend, name)  # xpnet.labels.encode_labels

    def decode_labels(self, idx):
        """Output indices ``(m,)`` to class labels: a device array for integer classes,
        a host NumPy array of strings for string classes."""
        return decode_labels(self.classes, idx, self.backend, self._device_cache)  # xpnet.labels.decode_labels

    def _scale_arrays(self, which: str = "scale"):
        """The input scaler's (``"scale"``) or target scaler's (``"target"``) shift and factor on
        the device in the model dtype, made once."""
        pair = self._device_cache.get(which)
        if pair is None:
            scaler = self.scaler if which == "scale" else self.target_scaler
            dtype = self.backend.dtype(self.dtype)
            pair = self._device_cache[which] = (self.backend.asarray(scaler.shift, dtype),
                                                self.backend.asarray(scaler.factor, dtype))
        return pair

    def _unscaled(self, A):
        """A regressor's outputs ``(m, n_out)`` in the targets' own units (new array)."""
        if self.target_scaler is None:
            return A
        shift, factor = self._scale_arrays("target")
        return A / factor + shift

    # --------------------------------------------------------- data to device
    def _features(self, X, name: str = "X"):
        """Validate ``X`` and return it on the device in the model dtype, scaled, ``(m, n_in)``."""
        if self._scale_to_fit is not None:
            raise ValueError(f"MLP(scale={self._scale_to_fit!r}) is not fitted yet: call model.prepare(X, y) on the "
                             "training data first (fit does), so that every X is scaled the same way")
        X = check_features(X, self.sizes[0], name)
        if isinstance(X, np.ndarray) and X.dtype.itemsize > np.dtype(self.dtype).itemsize and X.size:
            check_range(X, self.dtype, name)  # a host array only: no read back from a device
        Xd = self.backend.asarray(X, self.backend.dtype(self.dtype))
        if self.scaler is not None:
            shift, factor = self._scale_arrays()
            Xd = (Xd - shift) * factor  # new arrays: the caller's X is never changed
        return Xd

    def _targets(self, y, m: int, name: str = "y"):
        """Validate ``y``; return ``(Y, labels)`` on the device.

        ``Y`` is ``(m, k)`` in the model dtype (one-hot for class labels); ``labels``
        is ``(m,)`` int64 output indices for accuracy, or ``None`` for regression.
        Class labels go through :attr:`classes` first.
        """
        xp, k = self.xp, self.sizes[-1]
        y, is_labels = check_targets(self.encode_labels(y, name), m, k, self.output, name)
        yd = self.backend.asarray(y)
        dtype = self.backend.dtype(self.dtype)
        if self.multilabel and yd.ndim != 2:
            raise ValueError(f"{name} has shape {tuple(yd.shape)} but the model is multi-label: expected (m, "
                             f"{k}) 0/1 rows, one column per label")
        if yd.ndim == 2:
            Y = xp.astype(yd, dtype)
            if not self.is_classifier:
                return self._scaled_targets(Y), None
            if self.multilabel:
                return Y, Y  # each row's labels are the targets themselves
            labels = xp.argmax(Y, axis=1) if k > 1 else xp.astype(Y[:, 0] >= 0.5, xp.int64)
            return Y, xp.astype(labels, xp.int64)
        if not is_labels:  # a single identity unit: real targets
            Y = xp.reshape(xp.astype(yd, dtype), (m, 1))
            return self._scaled_targets(Y), None
        labels = xp.astype(yd, xp.int64)
        if k == 1:
            return xp.reshape(xp.astype(yd, dtype), (m, 1)), labels
        onehot = xp.reshape(labels, (m, 1)) == xp.arange(k, device=self.backend.device)
        return xp.astype(onehot, dtype), labels

    def _scaled_targets(self, Y):
        """A regressor's targets ``(m, n_out)`` as the network learns them (target scaling applied)."""
        if self._target_scale_to_fit is not None:
            raise ValueError(f"MLP(target_scale={self._target_scale_to_fit!r}) is not fitted yet: call "
                             "model.prepare(X, y) on the training data first (fit does)")
        if self.target_scaler is None:
            return Y
        shift, factor = self._scale_arrays("target")
        return (Y - shift) * factor

    # ------------------------------------------------------------ the math
    def _forward(self, X, buf: Buffers = NO_BUFFERS, train: bool = False, masks=None, row_sum=None, rows=None,
                 track: bool = False):
        """Forward pass up to the logits; returns ``(acts, caches, Z)``.

        ``acts = [X, A_1, ..., A_{L-1}]`` are the inputs of each layer, ``caches`` what each
        hidden layer's :class:`~xpnet.layers.Block` keeps for its backward pass, and ``Z`` the
        logits ``(m, n_out)``. ``train``: batch statistics (moved into the running ones if
        ``track``) and the dropout ``masks``; else eval mode. With ``buf``, results land in
        reused arrays (see :class:`~xpnet.backend.Buffers`).
        """
        nx, index = self.backend.nx, self.layout.index
        acts, caches, A = [X], [], X
        m, last = X.shape[0], self.n_layers - 1
        for l in range(self.n_layers):
            W, b = self.params[index("W", l)], self.params[index("b", l)]
            Z = nx.matmul(A, W, out=buf(("Z", l), (m, W.shape[1]), W.dtype))  # (m, n_l)
            Z += b  # Z is ours (fresh or a buffer): add the bias in place
            if l < last:  # a plain block computes the activation in place: its backward pass needs only A
                running = self.running[l] if track or not train else None
                A, cache = self.blocks[l].forward(nx, Z, A, self._norm_params(l), running, train,
                                                  masks[l] if masks else None, row_sum, rows, buf.enabled)
                acts.append(A)
                caches.append(cache)
        return acts, caches, Z

    def _norm_params(self, l: int):
        """Layer ``l``'s ``(gamma, beta)`` views, or ``None``."""
        if l not in self.normed:
            return None
        return self.params[self.layout.index("gamma", l)], self.params[self.layout.index("beta", l)]

    def _output(self, Z):
        return ACTIVATIONS[self.output].forward(self.backend.nx, Z)

    @on_device
    def backprop(self, X, Y, *, batch_size: int | None = None, labels=None, onehot: bool = False,
                 row_weights=None, weighted_loss: bool = False, buf: Buffers = NO_BUFFERS, masks=None,
                 row_sum=None, track: bool = True) -> Gradient:
        """Forward and backward pass over one batch already on the device.

        Args:
            X: ``(m, n_in)`` features and ``Y`` ``(m, n_out)`` targets, as
                :meth:`device_data` returns them.
            batch_size: what the gradient is divided by (default ``m``). Data-parallel
                training passes the global batch, so that the per-process gradients
                sum to the global mean.
            labels: ``(m,)`` device class indices; with them the correct predictions
                are counted.
            onehot: ``Y`` is one-hot (class labels), or a multi-label model's 0/1 rows: the
                correct predictions are then counted from ``Y`` itself, without labels.
            row_weights: ``(m,)`` device weights in the model dtype: row ``i``'s term of the
                gradient is multiplied by ``row_weights[i]`` (scikit-learn's ``sample_weight``); it
                is still divided by ``batch_size`` (the rows, not the weights' sum). The returned
                loss stays the unweighted sum, unless ``weighted_loss``.
            weighted_loss: with ``row_weights``, return the weighted sum ``sum_i w_i loss_i``
                instead (:func:`xpnet.fit`'s; one more evaluation of the output and the loss).
            buf: reused arrays (NumPy, CuPy); the gradient is then a buffer of ``buf``,
                written in place (no concatenation), valid until the next call.
            masks: per hidden layer this batch's dropout mask ``(m, n_l)`` (0 or ``1 / (1 - p)``) or
                ``None`` (no dropout there); see :func:`xpnet.layers.draw_masks`.
            row_sum: across data-parallel ranks, the sum of a device array over the ranks (batch
                norm's statistics over the global batch of ``batch_size`` rows); ``None`` in one process.
            track: move batch norm's running statistics (train mode always uses the batch's).

        Returns:
            :class:`Gradient`: the loss summed over the rows (0-d), the correct count
            (0-d, or ``None``) and the flat gradient ``sum over rows / batch_size``.
        """
        nx = self.backend.nx
        m = X.shape[0]
        scale = 1.0 / (batch_size or m)
        if row_sum is not None and batch_size is None:
            raise ValueError("row_sum (batch norm's sum across ranks) needs batch_size, the global batch's rows")
        rows = m if row_sum is None else batch_size  # the rows batch norm's statistics are taken over
        acts, caches, Z = self._forward(X, buf, True, masks, row_sum, rows, track)
        weights = row_weights if weighted_loss else None  # the loss too is the weighted sum over the rows
        if self.output == "softmax" and self.loss == "cross_entropy":
            # one head: max, exp and sum shared by the softmax, the loss and its gradient
            value, dZ = softmax_cross_entropy(nx, Z, Y, scale, buf, self.label_smoothing, weights)
        else:
            A, loss = self._output(Z), LOSSES[self.loss]
            value = (loss.value(nx, Z, A, Y, self.loss_settings) if weights is None
                     else nx.vecdot(loss.rows(nx, Z, A, Y, self.loss_settings), weights))
            dZ = loss.delta(nx, Z, A, Y, self.output, self.loss_settings)
            dZ *= scale  # dZ is a fresh array here
        if row_weights is not None:  # dZ is ours (fresh or a buffer): weight its rows in place
            dZ *= nx.reshape(row_weights, (m, 1))
        correct = step_correct(nx, Z, Y, labels, onehot, bool(self.multilabel), buf)
        grad_flat = buf("grad", (self.n_params,), Z.dtype)
        grads = [None] * len(self.layout) if grad_flat is None else self.views(grad_flat)
        index, skip = self.layout.index, None
        for l in reversed(range(self.n_layers)):
            A_prev, W, iW, ib = acts[l], self.params[index("W", l)], index("W", l), index("b", l)  # (m, n_{l-1}), W
            grads[iW] = nx.matmul(A_prev.T, dZ, out=grads[iW])  # (n_{l-1}, n_l)
            grads[ib] = nx.sum(dZ, axis=0, out=grads[ib])  # (n_l,)
            if l > 0:
                dA = nx.matmul(dZ, W.T, out=buf(("dA", l), A_prev.shape, W.dtype))  # (m, n_{l-1})
                if skip is not None:  # the skip of the block above carries its gradient past it
                    dA += skip
                dZ, skip, dnorm = self.blocks[l - 1].backward(nx, dA, caches[l - 1], self._norm_params(l - 1), row_sum,
                                                              rows, buf.enabled)
                if dnorm is not None:
                    for kind, g in zip(("gamma", "beta"), dnorm):
                        i = index(kind, l - 1)
                        if grads[i] is None:
                            grads[i] = g
                        else:
                            grads[i][...] = g
        if grad_flat is None:  # no out=: the per-layer results, laid out in one array (one concat)
            grad_flat = self.pack(grads)
        return Gradient(value, correct, grad_flat)

    # ------------------------------------------------------------- public API
    @on_device
    def device_data(self, X, y=None, names: tuple[str, str] = ("X", "y")):
        """Validate and move a data set to the device once: ``(X, Y, labels)``.

        ``X`` ``(m, n_in)`` in the model dtype with the input scaling applied; ``Y``
        ``(m, n_out)`` targets (one-hot for class labels, which go through
        :attr:`classes`); ``labels`` ``(m,)`` int64 output indices, or ``None`` for
        regression. Without ``y``, ``Y`` and ``labels`` are ``None``. ``names`` are the
        arguments' names in error messages.
        """
        Xd = self._features(X, names[0])
        if y is None:
            return Xd, None, None
        Y, labels = self._targets(y, Xd.shape[0], names[1])
        return Xd, Y, labels

    @on_device
    def forward(self, X):
        """Network outputs ``(m, n_out)`` for ``X`` ``(m, n_in)``, as a backend array (a
        regressor's in its targets' own units: any target scaling undone), computed
        :data:`EVAL_BATCH` rows at a time so that a large ``X`` does not hold every layer's
        activations at once."""
        return self._unscaled(self._outputs(self._features(X)))

    @on_device
    def loss_and_grads(self, X, y, masks=None) -> tuple[float, list]:
        """Mean loss over the samples and its gradient for every parameter, in train mode: batch
        norm with the statistics of these rows (its running ones left as they are), dropout with
        ``masks`` (per hidden layer ``(m, n_l)`` or ``None``; none at all by default).

        Returns ``(loss, grads)`` with ``grads`` in the order of :attr:`params`
        (views into one flat gradient, laid out like :attr:`flat`).
        """
        Xd, Y, _ = self.device_data(X, y)
        value, _, grad = self.backprop(Xd, Y, masks=masks, track=False)
        return float(value) / Xd.shape[0], self.views(grad)

    def _outputs(self, Xd):
        """Outputs for device ``Xd`` in chunks of EVAL_BATCH rows."""
        chunks = [self._output(self._forward(Xd[s:e, :])[-1]) for s, e in batch_spans(Xd.shape[0], EVAL_BATCH)]
        return chunks[0] if len(chunks) == 1 else self.xp.concat(chunks, axis=0)

    @on_device
    def predict_proba(self, X):
        """Class probabilities ``(m, n_out)`` (softmax or sigmoid outputs); column ``j`` is
        ``classes[j]`` (for one sigmoid unit, the probability of ``classes[1]``)."""
        if not self.is_classifier:
            raise ValueError("predict_proba needs output='softmax' or 'sigmoid'; this network's output is 'identity'")
        return self._outputs(self._features(X))

    @on_device
    def predict(self, X):
        """Class labels ``(m,)``: argmax over outputs, or ``p >= 0.5`` for one sigmoid unit,
        as the labels in :attr:`classes` (a host array when those are strings).

        An identity output is a regressor: its outputs are returned, ``(m,)`` for a single
        unit, else ``(m, n_out)``.
        """
        A = self._outputs(self._features(X))
        if not self.is_classifier:
            A = self._unscaled(A)
            return A[:, 0] if A.shape[1] == 1 else A
        if self.multilabel:
            return self.xp.astype(A >= 0.5, self.xp.int64)  # (m, k): label j is on where its unit says 0.5+
        return self.decode_labels(labels_of(self.xp, A))

    @on_device
    def predict_indices(self, X):
        """The predicted output index ``(m,)`` (0..k-1), whatever the class labels are: the
        argmax, or ``p >= 0.5`` for one sigmoid unit. For confusion matrices and plots."""
        if not self.is_classifier:
            raise ValueError("predict_indices needs output='softmax' or 'sigmoid'; this network's output is 'identity'")
        if self.multilabel:
            raise ValueError("predict_indices is for one class per row; this model is multi-label: predict gives its "
                             "(m, k) 0/1 rows")
        return labels_of(self.xp, self._outputs(self._features(X)))

    @on_device
    def evaluate(self, X, y) -> dict:
        """``{"loss": mean loss, "accuracy": fraction correct}`` on ``(X, y)``; for a multi-label
        model the accuracy is the subset accuracy (rows with every label right) and
        ``hamming_loss`` the share of labels wrong. A classifier of one class per row adds
        ``balanced_accuracy``: the mean over the classes present in ``y`` of each one's recall.

        ``accuracy`` is left out for regression (identity output with real targets); a
        regressor's loss is on its scaled targets when it has a ``target_scaler`` (the loss it
        was trained on), and a classifier's the label-smoothed one when it has ``label_smoothing``.
        Values are summed on the device and read back at the end.
        """
        return self.scores(*self.device_data(X, y), balanced=True)

    @on_device
    def scores(self, Xd, Y, labels, balanced: bool = False) -> dict:
        """:meth:`evaluate` for data already on the device, as :meth:`device_data` returns it;
        the balanced accuracy only when asked (``balanced``): fit's validation each epoch needs
        the loss and accuracy alone."""
        xp, m = self.xp, Xd.shape[0]
        loss = LOSSES[self.loss].value
        total, correct, wrong, hits, counts = 0.0, 0, 0, 0, 0
        per_class = balanced and labels is not None and not self.multilabel  # for the balanced accuracy
        ks = self.backend.asarray(np.arange(self.n_label_values, dtype=np.int64)) if per_class else None  # (k,)
        for s, e in batch_spans(m, EVAL_BATCH):
            Z = self._forward(Xd[s:e, :])[-1]
            A = self._output(Z)
            total = total + loss(xp, Z, A, Y[s:e, :], self.loss_settings)  # summed over the rows
            if labels is not None:
                correct = correct + count_correct(self.xp, A, labels[s:e, ...], bool(self.multilabel))
                if per_class:  # (k,) rows of each class, and those predicted right
                    truth = xp.reshape(labels[s:e, ...], (-1, 1)) == xp.reshape(ks, (1, -1))  # (m, k)
                    right = xp.reshape(labels_of(self.xp, A) == labels[s:e, ...], (-1, 1))  # (m, 1)
                    counts = counts + xp.sum(xp.astype(truth, xp.int64), axis=0)
                    hits = hits + xp.sum(xp.astype(truth & right, xp.int64), axis=0)
                if self.multilabel:  # labels that differ, over every row and unit
                    wrong = wrong + xp.sum(xp.astype((A >= 0.5) != (labels[s:e, ...] >= 0.5), xp.int64))
        out = {"loss": float(total) / m}
        if labels is not None:
            out["accuracy"] = int(correct) / m
        if labels is not None and self.multilabel:
            out["hamming_loss"] = int(wrong) / (m * self.sizes[-1])
        if per_class and m:  # the mean recall over the classes present in the truth (scikit-learn's)
            counts, hits = to_numpy(counts), to_numpy(hits)
            present = counts > 0
            out["balanced_accuracy"] = float(np.mean(hits[present] / counts[present]))
        return out

    @on_device
    def to(self, device: Any = "cpu", backend: Any = None) -> MLP:
        """Move the parameters to another device or backend, in place; returns self.

        The model gets a new flat buffer there: an optimizer attached to the old one must
        be attached again (:func:`~xpnet.fit` attaches on every call). Read here with the old
        device current, written with the new one current.
        """
        target = mutable_backend(get_backend(backend, device))
        host, stats = to_numpy(self.flat), to_numpy(self.stats)
        with target.activate():
            self.backend = target
            self._bind(target.asarray(host))
            self._init_running(stats)
        self._device_cache.clear()
        return self

    def save(self, path) -> None:
        """Write the model to ``path``: an ``.npz`` of host arrays plus JSON metadata (atomic);
        the layout is described in :mod:`xpnet.io`."""
        io.save_model(self, path)

    @classmethod
    def check_config(cls, **config) -> None:
        """Raise ValueError for :meth:`config` values this class does not take (builds nothing)."""
        config = dict(config)
        seed = config.pop("seed", 0)
        cls.__new__(cls)._configure(**config)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} is not a seed: expected an integer >= 0")

    @classmethod
    def from_arrays(cls, arrays: Sequence, *, backend: Any = None, device: Any = "cpu", scale: Scaler | None = None,
                    data_info: dict | None = None, target_scale: Scaler | None = None, stats=None, **config) -> MLP:
        """Build a model from host arrays ``[W1, b1, ...]`` (in the order of :attr:`params`), :meth:`config`
        values, and optionally a fitted ``scale``, a fitted ``target_scale``, a ``data_info`` record
        and batch norm's running statistics ``stats`` (see :attr:`stats`; default: mean 0, variance 1)."""
        cls.check_config(**config)
        seed = config.pop("seed", 0)
        self = cls.__new__(cls)
        self._configure(**config)
        self.seed = seed
        self._set_scale(scale, target_scale)
        self.data_info = data_info
        self.backend = mutable_backend(get_backend(backend, device))
        arrays = list(arrays)
        if len(arrays) != len(self.layout):
            raise ValueError(f"arrays has {len(arrays)} entries: expected {len(self.layout)}, [W1, b1, ...] "
                             f"for sizes={self.sizes}")
        for i, a in enumerate(arrays):
            self.layout.check(i, a)
        self._bind(self.pack(arrays))
        expected = 2 * sum(self.sizes[l + 1] for l in self.normed) if self.norm == "batch" else 0
        if stats is not None and np.shape(stats) != (expected,):
            raise ValueError(f"stats has shape {np.shape(stats)}: expected ({expected},), the running mean and variance of "
                             "each batch-normed layer")
        self._init_running(stats)
        return self


def load(path, device: Any = "cpu", backend: Any = None) -> MLP:
    """Load a model saved by :meth:`MLP.save` (format version 1 or 2), or the model inside a
    checkpoint written by :func:`~xpnet.fit`, onto any backend and device.

    Raises:
        ValueError: the file is missing, unreadable, not an xpnet model or checkpoint,
            from a newer xpnet, or its arrays do not match its metadata. Nothing in the
            file is executed.
    """
    stored, extra = io.read_model(path, MLP.check_config)  # checked: the model is built from these alone
    model = MLP.from_arrays(backend=backend, device=device, **stored)
    if extra:
        raise ValueError(f"path={str(path)!r} arrays do not match sizes={model.sizes}: unexpected {extra}")
    return model
