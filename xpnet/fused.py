"""The fused training step: the common step in 18 launching calls, from :mod:`xpnet.kernels`.

The generic step (:func:`xpnet.train.train_step`) is written once in ``xp`` and issues one
array operation per elementwise step: on a GPU each is a kernel launch, and at MNIST sizes
their host time, not the arithmetic, bounds a step. This step does the same math for the
common case, a softmax cross-entropy classifier trained by SGD or AdamW, in

- 1 gather (the batch's rows, labels and weights, from a device step counter),
- per layer 1 product and, for hidden layers, 1 bias + activation kernel,
- 1 softmax cross-entropy head (loss, its gradient, the correct count),
- per layer 2 products and 1 column sum backward (none of the input-gradient product for the
  first layer), and per hidden layer 1 activation-backward kernel,
- 1 update over the flat buffer (which also checks the weights are finite and advances the
  step counter):

18 calls for ``[784, 128, 64, 10]`` with SGD, momentum or AdamW alike, each at least one kernel
launch (a cuBLAS product may run two, split-K); the generic path on a GPU: 39 to 49 array
operations, each at least one launch. Every array is made before the
first step; a step reads nothing back to the host and allocates nothing; the epoch's per-step
losses, correct count and weight check come back in one read (:meth:`FusedStep.finish_epoch`).
The learning rate and the step count live on the device (``sched``, ``step``), so a step is
the same sequence of launches with the same arguments every time: what a CUDA graph captures.

It runs on CuPy (NVRTC-compiled kernels, cuBLAS products) and, with the same calls in the same
order, on NumPy with the kernels built by the C compiler: that is how the tests prove it equal
to the generic path on a machine without a GPU. :func:`unsupported` says why a run cannot take
it; :func:`xpnet.fit` then takes the generic path (``path="auto"``) or refuses (``"fused"``).
"""

from __future__ import annotations

import numpy as np

from .batches import batch_spans
from .kernels import ACTIVATION_CODES, Kernels
from .optim import SGD, Adam

PATHS = ("auto", "generic", "fused")


def unsupported(model, optimizer, label_vector: bool, processes: int = 1) -> str | None:
    """Why ``(model, optimizer)`` cannot take the fused step, or ``None`` when it can.

    ``label_vector``: ``y`` is a vector of class labels (the head reads class indices, not
    target rows); ``processes``: data-parallel ranks (the fused step has no gradient hook).
    """
    if not (model.backend.is_numpy or model.backend.is_cupy):
        return f"backend {model.backend.name!r} has no fused kernels (NumPy with a C compiler, or CuPy)"
    if model.output != "softmax" or model.loss != "cross_entropy":
        return f"output={model.output!r} with loss={model.loss!r} (the fused head is softmax with cross_entropy)"
    if model.activation not in ACTIVATION_CODES:
        return f"activation={model.activation!r}"
    if not all(block.plain for block in model.blocks):
        return "dropout, norm or residual layers (the fused kernels are for a plain stack)"
    if type(optimizer) not in (SGD, Adam) or optimizer.form != "pytorch":
        form = getattr(optimizer, "form", None)
        return f"optimizer {type(optimizer).__name__}(form={form!r}) (fused: SGD or Adam, form='pytorch')"
    if optimizer.clip_norm is not None:
        return "clip_norm (gradient clipping runs on the generic path)"
    if not label_vector:
        return "targets given as rows, not a vector of class labels"
    if processes > 1:
        return f"{processes} data-parallel processes (the gradient sum runs on the generic path)"
    return None


class FusedStep:
    """Every array of one model's fused step, made once; :meth:`step` runs one batch.

    Args:
        model: the :class:`~xpnet.MLP` (parameters updated in place in ``model.flat``).
        optimizer: an :class:`~xpnet.SGD` or :class:`~xpnet.Adam` attached to ``[model.flat]``
            (its state arrays are the ones updated, so checkpoints hold them as usual).
        kernels: the kernel set (:func:`xpnet.kernels.kernels_for`), in the model's dtype.
        X: ``(m, n_in)`` device features, ``labels`` ``(m,)`` int64 class indices, ``weights``
            ``(m,)`` row weights or ``None``: the whole training set, on the device.
        batch_size: rows per step (``None``: one batch).
    """

    def __init__(self, model, optimizer, kernels: Kernels, X, labels, weights, batch_size: int | None):
        if kernels.dtype != model.dtype:
            raise ValueError(f"kernels for {kernels.dtype} with a {model.dtype} model")
        k, self.k, self.model, self.opt = kernels, kernels, model, optimizer
        # the kernels index rows by hand: C order (a Fortran-ordered X, a pandas frame's, is copied once)
        self.X, self.labels = k.contiguous(X), k.contiguous(labels)
        self.weights = None if weights is None else k.contiguous(weights)
        self.spans = batch_spans(X.shape[0], batch_size)
        self.batch = self.spans[0][1] - self.spans[0][0]
        self.steps = len(self.spans)
        self.act = ACTIVATION_CODES[model.activation]
        self.eps = float(model.label_smoothing)
        self.pos = k.empty((1,), np.int64)  # the epoch's next step, advanced by the update kernel
        self.sched = k.empty((1 + self.steps,), np.float64)  # [steps before the epoch, each step's rate]
        self.scalars = k.empty((2,), np.float64)  # this step's [rate, t], written by the gather
        # the epoch's one read: each step's loss, then the correct count, then the weight check
        self.record = k.empty((self.steps + 2,), np.float64)
        self.correct, self.bad = self.record[self.steps:self.steps + 1], self.record[self.steps + 1:]
        self.grad = k.empty((model.n_params,))
        self.grads = model.views(self.grad)
        self.none_i64, self.none_real = k.empty((1,), np.int64), k.empty((1,))  # for the unused pointers
        self.order = self.none_i64
        self.shuffled = False
        self.buffers = {}
        for start, stop in self.spans:  # at most two shapes: the full batch and the last
            rows = stop - start
            if rows not in self.buffers:
                self.buffers[rows] = self._buffers(rows)

    def _buffers(self, rows: int) -> dict:
        k, sizes = self.k, self.model.sizes
        return {
            "X": k.empty((rows, sizes[0])),
            "L": k.empty((rows,), np.int64),
            "W": k.empty((rows,)) if self.weights is not None else self.none_real,
            "Z": [k.empty((rows, n)) for n in sizes[1:]],  # each layer's product, then its output (in place)
            "dA": [k.empty((rows, n)) for n in sizes[1:-1]],  # the gradient at each hidden layer's output
        }

    def start_epoch(self, order, first: int, rates, t_before: int) -> None:
        """Set the epoch up (host to device, a few fills: outside any step).

        ``order``: ``(m,)`` device int64 permutation of the rows, or ``None`` for slices;
        ``first``: the step to start at (a resume); ``rates``: the learning rate of each of the
        epoch's steps; ``t_before``: the optimizer's step count before the epoch's first step.
        """
        self.shuffled = order is not None
        self.order = order if order is not None else self.none_i64
        self.k.follow()  # the step's stream waits for what was queued before it (data, order, weights)
        self.k.upload(np.array([first], dtype=np.int64), self.pos)
        self.k.upload(np.array([t_before, *rates], dtype=np.float64), self.sched)
        self.k.fill(self.record, 0)

    def step(self, batch: int) -> None:
        """Train on the epoch's batch ``batch``: gather, forward, head, backward, update.

        The batch's position comes from the device counter; ``batch`` only picks the buffers
        of its row count and is checked against the host's count of steps.
        """
        with self.k.on_stream():
            self._step(batch)
        self.opt.t += 1  # the host's count, for checkpoints (the device's comes from sched)

    def _step(self, batch: int) -> None:
        k, model, opt = self.k, self.model, self.opt
        rows = self.spans[batch][1] - self.spans[batch][0]
        buf, params, sizes = self.buffers[rows], model.params, model.sizes
        weighted = self.weights is not None
        k("gather", rows * sizes[0], self.X, self.labels, self.weights if weighted else self.none_real, self.order,
          self.pos, self.sched, self.batch, rows, sizes[0], int(self.shuffled), int(weighted), buf["X"], buf["L"],
          buf["W"], self.scalars)
        acts, last = [buf["X"]], model.n_layers - 1
        for l in range(model.n_layers):  # Z_l = A_{l-1} @ W_l, then A_l = f(Z_l + b_l) in place
            Z = buf["Z"][l]
            k.matmul(acts[-1], params[2 * l], out=Z)
            if l < last:
                k("bias_act", rows * sizes[l + 1], Z, params[2 * l + 1], rows, sizes[l + 1], self.act)
                acts.append(Z)
        dZ = buf["Z"][last]  # the head writes dL/dZ over the logits
        k("softmax_xent", rows, dZ, params[2 * last + 1], buf["L"], buf["W"], self.pos, rows, sizes[-1], self.eps,
          1.0 / rows, int(weighted), self.record, self.correct)
        for l in reversed(range(model.n_layers)):
            k.matmul(acts[l].T, dZ, out=self.grads[2 * l])  # (n_{l-1}, n_l)
            k.colsum(dZ, out=self.grads[2 * l + 1])  # (n_l,)
            if l > 0:
                dA = buf["dA"][l - 1]
                k.matmul(dZ, params[2 * l].T, out=dA)  # (m, n_{l-1})
                k("act_backward", rows * sizes[l], dA, acts[l], rows * sizes[l], self.act)
                dZ = dA
        n, n_decay = model.n_params, model.n_weights
        if isinstance(opt, Adam):
            (b1, b2) = opt.betas
            k("adam", n, model.flat, self.grad, opt.m[0], opt.v[0], self.scalars, n, n_decay, b1, b2, opt.eps,
              opt.weight_decay, self.pos, self.bad)
        else:
            velocity = opt.velocity[0] if opt.momentum else self.none_real
            k("sgd", n, model.flat, self.grad, velocity, self.scalars, n, n_decay, opt.momentum, opt.weight_decay,
              int(opt.nesterov), self.pos, self.bad)

    def finish_epoch(self, first: int, done: int) -> tuple[np.ndarray, int, bool]:
        """The epoch's one read: ``(losses of steps first..done-1 (summed over their rows), correct
        count, whether every weight is finite)``. On CuPy it waits for the step's stream, so
        what runs after it on the default stream (validation, a checkpoint) sees the weights."""
        record = self.k.read(self.record)
        return record[first:done].astype(self.model.dtype), int(round(record[self.steps])), record[self.steps + 1] == 0
