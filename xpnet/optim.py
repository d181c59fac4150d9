"""Optimizers and learning-rate schedules; each update rule written once in ``xp``.

Updates are in place (``p -= step``), so xpnet needs a namespace whose arrays are
mutable (NumPy, CuPy, array-api-strict, PyTorch); JAX's immutable arrays are
refused when a model is built. Intermediates go to one scratch array per updated
array where the namespace honours ``out=`` (see :attr:`Backend.nx`), so a NumPy or
CuPy step allocates nothing; elsewhere the same lines allocate.

Weight decay applies to weights only, not to biases (see :class:`Optimizer`).

Each rule has the variants that others write as separate optimizers as an option,
``form="pytorch"`` (the default, PyTorch's conventions) or ``form="sklearn"``
(scikit-learn's ``_stochastic_optimizers.py``: Sutskever momentum, Adam's epsilon added
to the uncorrected root), which :mod:`xpnet.sklearn` uses to follow scikit-learn step for step.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any

import array_api_compat

from .backend import OutIgnored, activated
from .validate import check_choice, check_positive


# ---------------------------------------------------------------- schedules
class Constant:
    """The base learning rate at every epoch."""

    name = "constant"

    def __call__(self, epoch: int, epochs: int) -> float:
        return 1.0


class StepDecay:
    """Multiply the rate by ``gamma`` every ``step_size`` epochs."""

    name = "step"

    def __init__(self, step_size: int = 10, gamma: float = 0.1):
        self.step_size = check_positive(step_size, "step_size", integer=True)
        self.gamma = check_positive(gamma, "gamma")

    def __call__(self, epoch: int, epochs: int) -> float:
        return self.gamma ** (epoch // self.step_size)


class Cosine:
    """Cosine decay from the base rate to ``min_factor`` times it over the run."""

    name = "cosine"

    def __init__(self, min_factor: float = 0.0):
        self.min_factor = check_positive(min_factor, "min_factor", allow_zero=True)

    def __call__(self, epoch: int, epochs: int) -> float:
        progress = epoch / max(epochs, 1)
        return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


class OneCycle:
    """PyTorch's ``OneCycleLR`` (``anneal_strategy="cos"``, ``three_phase=False``), per step: from
    ``lr / div_factor`` up to ``lr`` over the first ``pct_start`` of the steps, then down to
    ``lr / div_factor / final_div_factor``. The rate only: momentum is not cycled (PyTorch's
    ``cycle_momentum=False``)."""

    name = "onecycle"
    per_step = True  # called with (step, total steps), not (epoch, epochs)

    def __init__(self, pct_start: float = 0.3, div_factor: float = 25.0, final_div_factor: float = 1e4):
        self.pct_start = check_positive(pct_start, "pct_start")
        if self.pct_start >= 1:
            raise ValueError(f"pct_start={pct_start!r} is out of range: expected 0 < pct_start < 1")
        self.div_factor = check_positive(div_factor, "div_factor")
        self.final_div_factor = check_positive(final_div_factor, "final_div_factor")

    def __call__(self, step: int, steps: int) -> float:
        start, peak = 1.0 / self.div_factor, 1.0
        end = start / self.final_div_factor
        up = float(self.pct_start * steps) - 1  # PyTorch's phase ends, in steps
        phases = ((up, start, peak), (steps - 1, peak, end))
        begin = 0.0
        for i, (stop, a, b) in enumerate(phases):
            if step <= stop or i == len(phases) - 1:
                pct = (step - begin) / (stop - begin) if stop > begin else 1.0
                return b + (a - b) / 2.0 * (math.cos(math.pi * pct) + 1.0)
            begin = stop
        raise AssertionError("unreachable")


SCHEDULES = {"constant": Constant, "step": StepDecay, "cosine": Cosine, "onecycle": OneCycle}
FORMS = ("pytorch", "sklearn")  # whose conventions an update rule follows (see SGD and Adam)


def make_schedule(schedule: Any):
    """A schedule from a name in SCHEDULES, a schedule object, or None (constant)."""
    if schedule is None:
        return Constant()
    if isinstance(schedule, str):
        return SCHEDULES[check_choice(schedule, "schedule", tuple(SCHEDULES))]()
    if not callable(schedule):
        raise ValueError(f"schedule={schedule!r} is not a schedule: expected one of {', '.join(SCHEDULES)}")
    return schedule


# --------------------------------------------------------------- optimizers
class Optimizer:
    """Base: a learning rate, a schedule, and state made on the first step.

    An optimizer updates a list of arrays in place. :func:`~xpnet.fit` hands it one
    array, the model's flat parameter buffer (:attr:`MLP.flat`), with ``decay=[n]``:
    weight decay applies to its first ``n`` elements, where the model lays out its
    weights (biases follow). Each update is then a handful of whole-buffer
    operations, whatever the depth of the network. Given per-layer arrays instead,
    weight decay applies to the 2-D ones (weights), not to biases.

    ``warmup_steps`` (or ``warmup_epochs``): the rate rises linearly from ``lr / warmup``
    to the schedule's over the first steps, multiplying it (step ``s`` gets ``(s + 1) / warmup``:
    PyTorch's ``LinearLR(start_factor=1 / warmup, total_iters=warmup - 1)`` chained with the schedule).
    A warm-up or a per-step schedule (``"onecycle"``) sets
    each step's rate from a device vector uploaded once per epoch (:meth:`start_epoch`).
    ``clip_norm``: scale the gradient to at most this global L2 norm before each update,
    on the device (:meth:`clip`).
    """

    def __init__(self, lr: float, weight_decay: float, schedule: Any, form: str = "pytorch", *,
                 warmup_steps: int = 0, warmup_epochs: int = 0, clip_norm: float | None = None):
        self.form = check_choice(form, "form", FORMS)
        self.lr = check_positive(lr, "lr")
        self.weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
        self.schedule = make_schedule(schedule)
        self.warmup_steps = check_positive(warmup_steps, "warmup_steps", integer=True, allow_zero=True)
        self.warmup_epochs = check_positive(warmup_epochs, "warmup_epochs", integer=True, allow_zero=True)
        if self.warmup_steps and self.warmup_epochs:
            raise ValueError(f"warmup_steps={warmup_steps!r} and warmup_epochs={warmup_epochs!r}: give one of them")
        self.clip_norm = None if clip_norm is None else check_positive(clip_norm, "clip_norm")
        self.lr_scale = 1.0  # a factor on the base rate that a callback keeps (ReduceLROnPlateau)
        self.current_lr = self.lr
        self._lrs = None  # per-step mode: this epoch's per-step values on the device (see start_epoch)
        self._t0 = 0  # the step count at which those vectors start
        self.xp = None  # set by attach()
        self.nx = None
        self._device = contextlib.nullcontext  # () -> a block with the arrays' device current (attach)
        self._flushes = True  # whether _flush runs: not on CuPy (attach)
        self.bound_to = None  # the array train_step attached this optimizer to
        self.scratch: list = []
        self._decay: list = []  # per array: None, or how many leading elements decay (all: its size)
        self._wd: list = []  # per array: 0.0, the weight decay, or a (size,) mask of it

    @property
    def per_step(self) -> bool:
        """Whether the rate changes within an epoch (a warm-up, or a schedule like :class:`OneCycle`)."""
        return bool(self.warmup_steps or self.warmup_epochs or getattr(self.schedule, "per_step", False))

    def start_epoch(self, epoch: int, epochs: int, steps: int | None = None, first: int = 0) -> None:
        """Set the learning rate for ``epoch`` (0-based) of ``epochs`` of ``steps`` steps each,
        the next step being step ``first`` of the epoch (a resume inside it).

        A per-step rate (:attr:`per_step`) needs ``steps``: the rates of the epoch's steps are
        computed here on the host and uploaded once, as one device vector per value the update
        rule needs; a step takes its element by a Python index (a view: no kernel, no read back).
        The position is the step count ``t`` (kept in checkpoints), so a resumed run takes the
        same rates. ``current_lr`` is then the rate of the epoch's last step.
        """
        if not self.per_step:
            self.set_lr(self.lr * self.lr_scale * self.schedule(epoch, epochs))
            return
        if steps is None:
            raise ValueError("a warm-up or a per-step schedule needs start_epoch(epoch, epochs, steps)")
        self._t0 = getattr(self, "t", 0) - first  # the step count at the epoch's first step
        lrs = self.rates(epoch, epochs, steps, self._t0)
        self.current_lr = lrs[-1]
        self._lrs = self._per_step_vectors(lrs, self._t0) if self.xp is not None else None

    def rates(self, epoch: int, epochs: int, steps: int, t0: int | None = None) -> list[float]:
        """The learning rates of the ``steps`` steps of ``epoch`` of ``epochs``, the first being
        step ``t0`` of the run (default: the step count ``t``): computed on the host, as
        :meth:`start_epoch` uploads them."""
        base, t0 = self.lr * self.lr_scale, getattr(self, "t", 0) if t0 is None else t0
        warmup = self.warmup_steps or self.warmup_epochs * steps
        lrs = []
        for s in range(t0, t0 + steps):
            if getattr(self.schedule, "per_step", False):
                factor = self.schedule(min(s, epochs * steps - 1), epochs * steps)
            else:
                factor = self.schedule(epoch, epochs)
            if s < warmup:  # (s + 1) / warmup: PyTorch's LinearLR(1 / warmup, total_iters=warmup - 1), chained
                factor *= (s + 1) / warmup
            lrs.append(base * factor)
        return lrs

    def _per_step_vectors(self, lrs: list, t0: int) -> dict:
        """The device vectors a step indexes: ``{"lr": (steps,)}`` (an update rule may need others)."""
        return {"lr": self._upload(lrs)}

    def _upload(self, values: list):
        p = self.bound_to if self.bound_to is not None else self._like
        return self.xp.asarray([float(v) for v in values], dtype=p.dtype, device=array_api_compat.device(p))

    def _step_value(self, name: str):
        """This step's ``name`` from the per-step vectors: a 0-d device view (no kernel, no read)."""
        vector = self._lrs[name]
        return vector[min(self.t - self._t0, vector.shape[0] - 1)]

    def clip(self, grads: list) -> list:
        """Scale ``grads`` in place by ``min(1, clip_norm / (norm + 1e-6))``, ``norm`` their global
        L2 norm (PyTorch's ``clip_grad_norm_``), all on the device: no value is read back.
        Array operations for one array (the flat buffer): 6, the squared norm, then four on 0-d
        arrays (sqrt, + 1e-6, C / ., min(1, .)) and the gradient times the scale; a fused kernel
        for the 0-d part would make it 3."""
        xp = self.xp
        squares = [xp.vecdot(xp.reshape(g, (-1,)), xp.reshape(g, (-1,))) for g in grads]
        total = squares[0] if len(squares) == 1 else xp.sum(xp.stack(squares))
        scale = xp.minimum(self.clip_norm / (xp.sqrt(total) + 1e-6), 1.0)
        for g in grads:
            g *= scale
        return grads

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of the next steps: for a caller that keeps its own schedule
        (scikit-learn's ``'invscaling'`` and ``'adaptive'``, in :mod:`xpnet.sklearn`)."""
        self.current_lr = float(lr)
        self._lrs = None  # one rate for every step from here
        self._lr_changed()

    def _lr_changed(self) -> None:
        pass

    def attach(self, params: list, backend=None, decay: list | None = None) -> None:
        """Bind to ``params``'s backend (found from the arrays if not given) and make
        zeroed state for them, plus scratch arrays where ``out=`` is honoured.

        ``decay``: for each array, whether weight decay applies to it (``True``/``False``)
        or to its first ``n`` elements (an int); default: the 2-D arrays.

        The state is made, and every later :meth:`step` runs, with the arrays' device current
        (``backend.activate()``; without a backend, the GPU of CuPy arrays).
        """
        self._device = backend.activate if backend is not None else functools.partial(activated, params[0])
        with self._device():
            self._attach(params, backend, decay)

    def _attach(self, params: list, backend, decay: list | None) -> None:
        """:meth:`attach` with the device current."""
        if backend is None:
            self.xp = array_api_compat.array_namespace(*params)
            self.nx, self.scratch = OutIgnored(self.xp), [None] * len(params)
            self._flushes = not array_api_compat.is_cupy_array(params[0])
        else:
            self.xp, self.nx = backend.xp, backend.nx
            self.scratch = [self.nx.empty_like(p) if backend.supports_out else None for p in params]
            self._flushes = not backend.is_cupy
        given = decay is not None
        decay = [p.ndim == 2 for p in params] if decay is None else list(decay)
        if len(decay) != len(params):
            raise ValueError(f"decay has {len(decay)} entries for {len(params)} arrays: expected one per array")
        if self.weight_decay and not given and not any(decay):
            raise ValueError(f"weight_decay={self.weight_decay!r} would apply to none of these arrays (no 2-D one): "
                             "for a model's flat buffer attach with decay=[model.n_weights] (train_step and fit do)")
        self._decay, self._wd, self._like = [], [], params[0]
        for p, d in zip(params, decay):
            size = math.prod(p.shape)
            n = size if d is True else 0 if d is False else int(d)
            self._decay.append(n or None)
            if not self.weight_decay or not n:
                self._wd.append(0.0)
            elif n == size:
                self._wd.append(self.weight_decay)
            else:  # decay on the leading n elements only: one mask, made once, where p lives
                device = array_api_compat.device(p)
                mask = self.xp.concat([self.xp.full((n,), self.weight_decay, dtype=p.dtype, device=device),
                                       self.xp.zeros((size - n,), dtype=p.dtype, device=device)])
                self._wd.append(self.xp.reshape(mask, p.shape))
        self._init_state(params)
        self._lr_changed()

    def _init_state(self, params: list) -> None:
        pass

    STATE: tuple[str, ...] = ()  # names of the per-array state lists
    FLUSH_EVERY = 16  # steps between flushes of subnormal state values to zero (see _flush)

    def _flush(self) -> None:
        """Set state values below the dtype's normal range to zero, every FLUSH_EVERY steps.

        Where a parameter's gradient is zero (a dead ReLU unit, an unused input pixel),
        its momentum or first moment decays geometrically (``v *= 0.9``) and reaches
        float32's subnormal range after about 800 steps, where x86 arithmetic runs tens
        of times slower: measured on [784,128,64,10], an Adam epoch at batch 64 took 4.6 s
        with half of ``m`` subnormal, 1.7 s with this flush. Such values change no update
        (they are below 1.2e-38), so zeroing them is exact in effect; doing it every 16
        steps costs 3 array operations per state array, about 0.2 per step.

        Not on CuPy: its kernels are compiled with ``-ftz=true`` (``cupy/cuda/compiler.py``), so
        its state does not hold subnormals, and a GPU does not slow down on them anyway. Every
        host namespace flushes (array-api-strict computes with NumPy, on the same CPU).
        """
        if not self._flushes or self.t % self.FLUSH_EVERY:
            return
        xp = self.xp
        for name in self.STATE:
            for a in getattr(self, name) or ():
                a[...] = xp.where(xp.abs(a) < float(xp.finfo(a.dtype).smallest_normal), 0.0, a)

    def hyperparameters(self) -> dict:
        hp = {"lr": self.lr, "weight_decay": self.weight_decay, "schedule": getattr(self.schedule, "name", "custom")}
        if self.form != "pytorch":  # named only when not the default: checkpoints written before forms stay equal
            hp["form"] = self.form
        for key in ("warmup_steps", "warmup_epochs", "clip_norm"):  # likewise: named only when set
            if getattr(self, key):
                hp[key] = getattr(self, key)
        return hp

    def state(self) -> tuple[dict, dict[str, list]]:
        """``(JSON-ready settings and counters, {state name: arrays})`` for a checkpoint."""
        meta = {"type": type(self).__name__, **self.hyperparameters(), "t": getattr(self, "t", 0)}
        return meta, {name: list(getattr(self, name) or []) for name in self.STATE}

    def load_state(self, meta: dict, arrays: dict[str, list], to_device) -> None:
        """Restore what :meth:`state` returned (after :meth:`attach`); ``to_device`` moves host
        arrays. The values are copied into the state arrays made by :meth:`attach`."""
        if hasattr(self, "t"):
            self.t = int(meta["t"])
        with self._device():
            for name in self.STATE:
                mine = getattr(self, name)
                if mine is None:
                    continue
                for target, value in zip(mine, arrays[name], strict=True):
                    target[...] = to_device(value)

    def step(self, params: list, grads: list) -> None:
        """Update ``params`` (a list of arrays, each changed in place) from ``grads`` (same
        order, only read). The first call attaches to ``params`` if :meth:`attach` was not called.
        """
        if self.xp is None:
            self.attach(params)
        with self._device():  # nested in train_step's block: enters nothing
            if self.clip_norm is not None:
                grads = self.clip(grads)
            self.update(params, grads)
            self._flush()

    def update(self, params: list, grads: list) -> None:
        """The update rule alone, for an attached optimizer: ``params`` changed in place from
        ``grads``. :meth:`step` adds the attach on a first call and the flush of subnormal state."""
        raise NotImplementedError

    def _zeros_like(self, params: list) -> list:
        return [self.xp.zeros_like(p) for p in params]


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum.

    ``form="pytorch"`` (default) follows PyTorch's convention, so results compare one to one::

        g = g + weight_decay * W        (weights only)
        v = momentum * v + g
        step = g + momentum * v  (nesterov)  or  v
        W = W - lr * step

    ``form="sklearn"`` is scikit-learn's ``SGDOptimizer`` (Sutskever's momentum, the
    rate inside the velocity; ``momentum`` may be 1, and ``nesterov`` needs no momentum)::

        g = g + weight_decay * W        (weights only)
        v = momentum * v - lr * g
        W = W + momentum * v - lr * g  (nesterov, with the new v)  or  W + v

    The two agree at a constant rate; they differ when the rate changes, since
    scikit-learn's velocity carries the rates of earlier steps.
    """

    def __init__(
        self,
        lr: float = 0.1,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        schedule: Any = None,
        form: str = "pytorch",
        *,
        warmup_steps: int = 0,
        warmup_epochs: int = 0,
        clip_norm: float | None = None,
    ):
        super().__init__(lr, weight_decay, schedule, form, warmup_steps=warmup_steps, warmup_epochs=warmup_epochs,
                         clip_norm=clip_norm)
        self.momentum = check_positive(momentum, "momentum", allow_zero=True)
        if self.form == "sklearn":
            if self.momentum > 1:
                raise ValueError(f"momentum={momentum!r} is out of range: expected 0 <= momentum <= 1")
        elif self.momentum >= 1:
            raise ValueError(f"momentum={momentum!r} is out of range: expected 0 <= momentum < 1")
        elif nesterov and self.momentum == 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.nesterov = bool(nesterov)
        self.velocity: list | None = None
        self.t = 0  # steps taken (kept in checkpoints): when to flush subnormal momenta

    STATE = ("velocity",)

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "momentum": self.momentum, "nesterov": self.nesterov}

    def _init_state(self, params: list) -> None:
        self.t = 0
        self.velocity = self._zeros_like(params) if self.momentum else None

    def update(self, params: list, grads: list) -> None:
        lr = self.current_lr if self._lrs is None else self._step_value("lr")  # a float, or a 0-d device view
        self.t += 1
        if self.form == "sklearn":
            self._step_sklearn(params, grads, lr)
            return
        # Array operations per array: 2 (plain), +2 with weight decay, +2 momentum, +2 Nesterov.
        nx, mu = self.nx, self.momentum
        for i, (p, g) in enumerate(zip(params, grads)):
            s, wd = self.scratch[i], self._wd[i]  # s None: allocate
            if self._decay[i] and self.weight_decay:
                s = nx.multiply(p, wd, out=s)
                s += g
                g = s  # g + wd * p (weights only)
            if mu:
                v = self.velocity[i]
                v *= mu
                v += g
                if self.nesterov:
                    if g is s:
                        s += mu * v
                    else:
                        s = nx.multiply(v, mu, out=s)
                        s += g
                    g = s  # g + mu * v
                else:
                    g = v
            s = nx.multiply(g, lr, out=s)
            p -= s

    def _step_sklearn(self, params: list, grads: list, lr) -> None:
        # Array operations per array: 2 (plain), +2 with weight decay, +1 momentum, +2 Nesterov.
        # (lr g is subtracted before mu v is added: scikit-learn's sum, rounded in another order)
        nx, mu = self.nx, self.momentum
        for i, (p, g) in enumerate(zip(params, grads)):
            s = self.scratch[i]  # None: allocate
            if self._decay[i] and self.weight_decay:
                s = nx.multiply(p, self._wd[i], out=s)
                s += g
                s *= lr  # lr (g + wd * p) (weights only)
            else:
                s = nx.multiply(g, lr, out=s)  # lr g
            if not mu:
                p -= s
                continue
            v = self.velocity[i]
            v *= mu
            v -= s  # v = mu v - lr g
            if self.nesterov:
                p -= s
                s = nx.multiply(v, mu, out=s)
                p += s  # p + mu v - lr g
            else:
                p += v


class Adam(Optimizer):
    """Adam with decoupled weight decay (AdamW), as PyTorch's ``AdamW``::

        m = b1 m + (1 - b1) g ;  v = b2 v + (1 - b2) g^2
        W = W * (1 - lr * weight_decay)                       (weights only)
        W = W - lr / (1 - b1^t) * m / (sqrt(v / (1 - b2^t)) + eps)

    computed as ``W - c m / (sqrt(v) + eps sqrt(1 - b2^t))`` with
    ``c = lr sqrt(1 - b2^t) / (1 - b1^t)``: the same number, two array operations fewer.

    ``form="sklearn"`` is scikit-learn's ``AdamOptimizer``: ``eps`` is added to the
    uncorrected root, ``W - c m / (sqrt(v) + eps)`` (the same array operations).
    """

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        schedule: Any = None,
        form: str = "pytorch",
        *,
        warmup_steps: int = 0,
        warmup_epochs: int = 0,
        clip_norm: float | None = None,
    ):
        super().__init__(lr, weight_decay, schedule, form, warmup_steps=warmup_steps, warmup_epochs=warmup_epochs,
                         clip_norm=clip_norm)
        try:
            b1, b2 = (float(b) for b in betas)
        except (TypeError, ValueError):
            raise ValueError(f"betas={betas!r} is not a pair: expected two numbers in [0, 1)") from None
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas={betas!r} is out of range: expected two numbers in [0, 1)")
        self.betas = (b1, b2)
        self.eps = check_positive(eps, "eps")
        self.t = 0
        self.m: list | None = None
        self.v: list | None = None
        self._shrink: list = []  # per array: 1 - lr * weight decay (a scalar or a mask), set with the rate

    STATE = ("m", "v")

    def hyperparameters(self) -> dict:
        return {**super().hyperparameters(), "betas": list(self.betas), "eps": self.eps}

    def _init_state(self, params: list) -> None:
        self.t = 0
        self.m = self._zeros_like(params)
        self.v = self._zeros_like(params)

    def _lr_changed(self) -> None:
        lr = self.current_lr
        self._shrink = [1.0 - lr * wd for wd in self._wd]  # once per epoch, not per step

    def _per_step_vectors(self, lrs: list, t0: int) -> dict:
        # per step: the step size with its bias corrections, and 1 - lr * weight decay
        b1, b2 = self.betas
        sizes = [lr * math.sqrt(1.0 - b2 ** (t0 + k + 1)) / (1.0 - b1 ** (t0 + k + 1)) for k, lr in enumerate(lrs)]
        return {"step": self._upload(sizes), "shrink": self._upload([1.0 - lr * self.weight_decay for lr in lrs])}

    def update(self, params: list, grads: list) -> None:
        # Array operations per array: 12, +1 with weight decay.
        nx = self.nx
        (b1, b2), lr, eps = self.betas, self.current_lr, self.eps
        per_step = self._lrs is not None
        if per_step:  # 0-d device views of this step's values (start_epoch uploaded them)
            step_size, shrink = self._step_value("step"), self._step_value("shrink")
        self.t += 1
        root = math.sqrt(1.0 - b2**self.t)  # sqrt of the second moment's bias correction
        if not per_step:
            step_size = lr * root / (1.0 - b1**self.t)
        eps = eps if self.form == "sklearn" else eps * root
        for i, (p, g) in enumerate(zip(params, grads)):
            m, v, s = self.m[i], self.v[i], self.scratch[i]
            m *= b1
            s = nx.multiply(g, 1.0 - b1, out=s)
            m += s
            v *= b2
            s = nx.multiply(g, g, out=s)
            s *= 1.0 - b2
            v += s
            if self._decay[i] and self.weight_decay:
                if per_step:  # the decayed elements lead the array: a view of them, times a 0-d array
                    w = p if self._decay[i] == math.prod(p.shape) else self.xp.reshape(p, (-1,))[: self._decay[i]]
                    w *= shrink
                else:
                    p *= self._shrink[i]
            s = nx.sqrt(v, out=s)
            s += eps
            s = nx.divide(m, s, out=s)  # m / (sqrt(v) + eps sqrt(1 - b2^t)), sklearn: m / (sqrt(v) + eps)
            s *= step_size
            p -= s


OPTIMIZERS = {"sgd": SGD, "adam": Adam}
