"""The multilayer perceptron: parameters, forward pass, backprop, predictions.

Batch-first notation: ``X`` is ``(m, n_in)``, layer ``l`` has ``W`` of shape
``(n_{l-1}, n_l)`` and ``b`` of shape ``(n_l,)``, and ``Z = A_prev @ W + b``.
The classic tutorials keep samples as columns and write ``Z = W X + b`` with
``W`` of shape ``(n_l, n_{l-1})``: their ``W`` is our ``W.T`` and their ``Z`` our ``Z.T``.

Every array operation goes through ``self.backend.xp``, or in the training step
``self.backend.nx`` (the same namespace, plus ``out=`` where NumPy honours it), so
the same code runs on NumPy, CuPy and any array-API namespace.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .activations import ACTIVATIONS, HIDDEN, OUTPUTS
from .backend import NO_BUFFERS, Backend, Buffers, get_backend, to_numpy
from .losses import DEFAULT_LOSS, LOSSES
from .validate import check_choice, check_features, check_targets

INITS = {  # name -> std of N(0, std^2) as a function of fan-in; biases start at zero
    "small": lambda n_in: 0.01,  # the tutorials' np.random.randn(...) * 0.01
    "xavier": lambda n_in: 1.0 / math.sqrt(n_in),
    "he": lambda n_in: math.sqrt(2.0 / n_in),
    "normal": lambda n_in: 1.0,  # Nielsen's network.py
}
DTYPES = ("float32", "float64")
EVAL_BATCH = 8192  # rows per forward pass in evaluate/predict: bounds memory, not results


def batch_spans(m: int, batch_size: int | None) -> list[tuple[int, int]]:
    """``(start, stop)`` pairs covering ``range(m)``; ``None`` is one full batch.

    Stops are clamped to ``m``: out-of-range slices are not in the array-API standard.
    """
    size = m if batch_size is None else min(batch_size, m)
    return [(s, min(s + size, m)) for s in range(0, m, size)]


def _check_sizes(sizes: Any) -> list[int]:
    try:
        out = [int(s) for s in sizes]
        ok = all(float(s) == int(s) for s in sizes) and not isinstance(sizes, (str, bytes))
    except (TypeError, ValueError):
        ok = False
    if not ok or len(out) < 2 or min(out) < 1:
        raise ValueError(
            f"sizes={sizes!r} is not a list of layer widths: expected at least 2 integers >= 1, "
            "e.g. [784, 128, 64, 10]"
        )
    return out


class MLP:
    """A fully connected network trained by hand-written backprop.

    Args:
        sizes: layer widths ``[n_in, hidden..., n_out]``.
        activation: hidden activation, one of ``sigmoid, tanh, relu, leaky_relu, identity``.
        output: output activation, one of ``softmax, sigmoid, identity``.
        loss: ``cross_entropy`` (softmax), ``binary_cross_entropy`` (sigmoid) or ``mse``
            (any output); ``None`` picks the one that matches ``output``.
        init: ``small, xavier, he, normal``; ``None`` is ``he`` for relu-like
            activations, ``xavier`` otherwise.
        backend, device: where the parameters live (see :func:`xpnet.get_backend`).
        dtype: ``float32`` or ``float64``.
        seed: the seed for the initial weights; the same seed gives the same
            weights on every backend.

    Attributes:
        params: ``[W1, b1, W2, b2, ...]``, backend arrays; ``W`` is ``(n_{l-1}, n_l)``.
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
    ):
        self._configure(sizes, activation, output, loss, init, dtype)
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed={seed!r} is not a seed: expected an integer >= 0")
        self.seed = seed
        self.backend: Backend = get_backend(backend, device)
        rng = self.backend.random(seed)
        self.params = []
        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:]):
            W = rng.normal((n_in, n_out), dtype, scale=INITS[self.init](n_in))
            b = self.xp.zeros((n_out,), dtype=self.backend.dtype(dtype), device=self.backend.device)
            self.params += [W, b]

    def _configure(self, sizes, activation, output, loss, init, dtype) -> None:
        self.sizes = _check_sizes(sizes)
        self.activation = check_choice(activation, "activation", HIDDEN)
        self.output = check_choice(output, "output", OUTPUTS)
        self.loss = DEFAULT_LOSS[output] if loss is None else check_choice(loss, "loss", tuple(LOSSES))
        if output not in LOSSES[self.loss].outputs:
            raise ValueError(
                f"loss={self.loss!r} does not fit output={output!r}: "
                f"{self.loss} expects output {' or '.join(LOSSES[self.loss].outputs)}; "
                f"use loss={DEFAULT_LOSS[output]!r} or 'mse'"
            )
        if output == "softmax" and self.sizes[-1] < 2:
            raise ValueError(
                f"sizes[-1]={self.sizes[-1]} with output='softmax': softmax needs >= 2 units; "
                "use output='sigmoid' for a single unit"
            )
        if init is None:
            init = "he" if self.activation in ("relu", "leaky_relu") else "xavier"
        self.init = check_choice(init, "init", tuple(INITS))
        self.dtype = check_choice(dtype, "dtype", DTYPES)

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
        return sum(a * b + b for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    @property
    def is_classifier(self) -> bool:
        return self.output != "identity"

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
        }

    def __repr__(self) -> str:
        return (
            f"MLP({self.sizes}, activation={self.activation!r}, output={self.output!r}, "
            f"loss={self.loss!r}, dtype={self.dtype!r}, backend={self.backend})"
        )

    # --------------------------------------------------------- data to device
    def _features(self, X, name: str = "X"):
        """Validate ``X`` and return it on the device in the model dtype, ``(m, n_in)``."""
        X = check_features(X, self.sizes[0], name)
        return self.backend.asarray(X, self.backend.dtype(self.dtype))

    def _targets(self, y, m: int, name: str = "y"):
        """Validate ``y``; return ``(Y, labels)`` on the device.

        ``Y`` is ``(m, k)`` in the model dtype (one-hot for class labels); ``labels``
        is ``(m,)`` int64 class labels for accuracy, or ``None`` for regression.
        """
        xp, k = self.xp, self.sizes[-1]
        y, is_labels = check_targets(y, m, k, self.output, name)
        yd = self.backend.asarray(y)
        dtype = self.backend.dtype(self.dtype)
        if yd.ndim == 2:
            Y = xp.astype(yd, dtype)
            if not self.is_classifier:
                return Y, None
            labels = xp.argmax(Y, axis=1) if k > 1 else xp.astype(Y[:, 0] >= 0.5, xp.int64)
            return Y, xp.astype(labels, xp.int64)
        if not is_labels:  # a single identity unit: real targets
            return xp.reshape(xp.astype(yd, dtype), (m, 1)), None
        labels = xp.astype(yd, xp.int64)
        if k == 1:
            return xp.reshape(xp.astype(yd, dtype), (m, 1)), labels
        onehot = xp.reshape(labels, (m, 1)) == xp.arange(k, device=self.backend.device)
        return xp.astype(onehot, dtype), labels

    # ------------------------------------------------------------ the math
    def _forward(self, X, buf: Buffers = NO_BUFFERS):
        """Forward pass; returns ``(acts, Z, A)``.

        ``acts = [X, A_1, ..., A_{L-1}]`` are the inputs of each layer, ``Z`` the
        logits ``(m, n_out)`` and ``A`` the outputs ``(m, n_out)``. With ``buf``,
        results land in reused arrays (see :class:`~xpnet.backend.Buffers`).
        """
        nx = self.backend.nx
        hidden = ACTIVATIONS[self.activation].forward
        acts = [X]
        A = X
        m, last = X.shape[0], self.n_layers - 1
        for l in range(self.n_layers):
            W, b = self.params[2 * l], self.params[2 * l + 1]
            Z = nx.matmul(A, W, out=buf(("Z", l), (m, W.shape[1]), W.dtype))  # (m, n_l)
            Z += b  # Z is ours (fresh or a buffer): add the bias in place
            if l < last:
                A = hidden(nx, Z, out=Z if buf.enabled else None)  # in place: the backward pass needs only A
                acts.append(A)
        return acts, Z, ACTIVATIONS[self.output].forward(nx, Z)

    def _backward(self, acts, Z, A, Y, buf: Buffers = NO_BUFFERS):
        """Backprop from the loss; returns ``(loss as a 0-d device array, grads)``.

        With ``buf`` the gradients are reused arrays, valid until the next call.
        """
        nx = self.backend.nx
        loss = LOSSES[self.loss]
        value = loss.value(nx, Z, A, Y)
        dZ = loss.delta(nx, Z, A, Y, self.output)  # (m, n_L), already divided by m
        hidden_backward = ACTIVATIONS[self.activation].backward
        grads = [None] * len(self.params)
        for l in reversed(range(self.n_layers)):
            A_prev, W = acts[l], self.params[2 * l]  # (m, n_{l-1}), (n_{l-1}, n_l)
            grads[2 * l] = nx.matmul(A_prev.T, dZ, out=buf(("dW", l), W.shape, W.dtype))  # (n_{l-1}, n_l)
            grads[2 * l + 1] = nx.sum(dZ, axis=0, out=buf(("db", l), (W.shape[1],), W.dtype))  # (n_l,)
            if l > 0:
                dA = nx.matmul(dZ, W.T, out=buf(("dA", l), A_prev.shape, W.dtype))  # (m, n_{l-1})
                dZ = hidden_backward(nx, A_prev, dA, out=dA if buf.enabled else None)
        return value, grads

    # ------------------------------------------------------------- public API
    def forward(self, X):
        """Network outputs ``(m, n_out)`` for ``X`` ``(m, n_in)``, as a backend array."""
        return self._forward(self._features(X))[2]

    def loss_and_grads(self, X, y) -> tuple[float, list]:
        """Mean loss over the samples and its gradient for every parameter.

        Returns ``(loss, grads)`` with ``grads`` in the order of :attr:`params`.
        """
        Xd = self._features(X)
        Y, _ = self._targets(y, Xd.shape[0])
        value, grads = self._backward(*self._forward(Xd), Y)
        return float(value), grads

    def _outputs(self, Xd):
        """Outputs for device ``Xd`` in chunks of EVAL_BATCH rows."""
        chunks = [self._forward(Xd[s:e, :])[2] for s, e in batch_spans(Xd.shape[0], EVAL_BATCH)]
        return chunks[0] if len(chunks) == 1 else self.xp.concat(chunks, axis=0)

    def _labels_of(self, A):
        """Class labels ``(m,)`` from outputs: argmax, or a 0.5 threshold for one unit."""
        xp = self.xp
        if A.shape[1] > 1:
            return xp.argmax(A, axis=1)
        return xp.astype(A[:, 0] >= 0.5, xp.int64)

    def predict_proba(self, X):
        """Class probabilities ``(m, n_out)`` (softmax or sigmoid outputs)."""
        if not self.is_classifier:
            raise ValueError("predict_proba needs output='softmax' or 'sigmoid'; this network's output is 'identity'")
        return self._outputs(self._features(X))

    def predict(self, X):
        """Class labels ``(m,)``: argmax over outputs, or ``p >= 0.5`` for one sigmoid unit.

        A single identity unit is a regressor: its ``(m,)`` outputs are returned.
        """
        A = self._outputs(self._features(X))
        if A.shape[1] == 1 and self.output == "identity":
            return A[:, 0]
        return self._labels_of(A)

    def evaluate(self, X, y) -> dict:
        """``{"loss": mean loss, "accuracy": fraction correct}`` on ``(X, y)``.

        ``accuracy`` is left out for regression (identity output with real targets).
        Values are summed on the device and read back once.
        """
        Xd = self._features(X)
        m = Xd.shape[0]
        Y, labels = self._targets(y, m)
        return self._evaluate(Xd, Y, labels)

    def _evaluate(self, Xd, Y, labels) -> dict:
        xp, m = self.xp, Xd.shape[0]
        loss = LOSSES[self.loss].value
        total, correct = 0.0, 0
        for s, e in batch_spans(m, EVAL_BATCH):
            _, Z, A = self._forward(Xd[s:e, :])
            total = total + loss(xp, Z, A, Y[s:e, :]) * (e - s)
            if labels is not None:
                correct = correct + xp.sum(xp.astype(self._labels_of(A) == labels[s:e], xp.int64))
        out = {"loss": float(total) / m}
        if labels is not None:
            out["accuracy"] = int(correct) / m
        return out

    def to(self, device: Any = "cpu", backend: Any = None) -> MLP:
        """Move the parameters to another device or backend, in place; returns self."""
        target = get_backend(backend, device)
        self.params = [target.asarray(to_numpy(p)) for p in self.params]
        self.backend = target
        return self

    def save(self, path) -> None:
        """Write the model to ``path``: an ``.npz`` of host arrays plus JSON metadata (atomic)."""
        from .io import save_model

        save_model(self, path)

    @classmethod
    def from_arrays(cls, arrays: Sequence, *, backend: Any = None, device: Any = "cpu", **config) -> MLP:
        """Build a model from host arrays ``[W1, b1, ...]`` and :meth:`config` values."""
        seed = config.pop("seed", 0)
        self = cls.__new__(cls)
        self._configure(**config)
        self.seed = seed
        self.backend = get_backend(backend, device)
        dtype = self.backend.dtype(self.dtype)
        self.params = [self.backend.asarray(a, dtype) for a in arrays]
        return self

