"""scikit-learn's solvers: :mod:`xpnet.optim`'s update rules in scikit-learn's form, and what the
estimator keeps around them (the rate of ``'invscaling'`` and ``'adaptive'``, when to stop)."""

from __future__ import annotations

import math

import numpy as np

from ..backend import Backend, to_numpy
from ..optim import OPTIMIZERS, SGD, Adam, Optimizer


class SGDRule:
    """scikit-learn's ``SGDOptimizer``: the update is :class:`xpnet.SGD` with ``form="sklearn"``
    (Sutskever momentum, whole-buffer operations on the flat parameter array); what this
    class adds is the estimator's bookkeeping around it, the rate and when to stop:

    ``lr_schedule``: ``'constant'``; ``'invscaling'`` sets ``learning_rate_init / (t + 1) **
    power_t`` at the end of each epoch, ``t`` the samples seen so far (the estimator's
    ``t_``); ``'adaptive'`` divides the rate by 5 each time progress stalls
    (:meth:`trigger_stopping`) and stops once it is at most 1e-6.
    """

    def __init__(self, learning_rate_init: float = 0.1, lr_schedule: str = "constant", momentum: float = 0.9,
                 nesterov: bool = True, power_t: float = 0.5):
        self.learning_rate_init = float(learning_rate_init)
        self.lr_schedule, self.power_t = lr_schedule, power_t
        self.optimizer: Optimizer = SGD(self.learning_rate_init, momentum=momentum, nesterov=nesterov, form="sklearn")

    @property
    def learning_rate(self) -> float:
        """The current rate (scikit-learn's ``learning_rate``)."""
        return self.optimizer.current_lr

    @learning_rate.setter
    def learning_rate(self, value: float) -> None:
        self.optimizer.set_lr(value)

    def update(self, backend: Backend, p, g) -> None:
        """Update ``p`` ``(n,)`` in place from gradient ``g`` (only read)."""
        if self.optimizer.bound_to is not p:
            self._bind(backend, p)
        self.optimizer.step([p], [g])

    def _bind(self, backend: Backend, p) -> None:
        """Attach the optimizer to ``p`` (first step, another device or dtype, unpickled), its state carried over."""
        opt = self.optimizer
        held = self.__dict__.pop("_held", None) or (self._host_state() if opt.xp is not None else None)
        opt.attach([p], backend, decay=[False])
        opt.bound_to = p
        if held is not None:
            opt.load_state(*held, lambda a: backend.asarray(a, p.dtype))

    def _host_state(self) -> tuple[dict, dict]:
        meta, arrays = self.optimizer.state()
        return meta, {k: [np.array(to_numpy(a), copy=True) for a in v] for k, v in arrays.items()}

    def iteration_ends(self, time_step: int) -> None:
        if self.lr_schedule == "invscaling":
            self.learning_rate = self.learning_rate_init / (time_step + 1) ** self.power_t

    def trigger_stopping(self, msg: str, verbose) -> bool:
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(f"{msg} Setting learning rate to {self.learning_rate:f}")
        return False

    def __getstate__(self) -> dict:
        """The optimizer as its settings, rate and host state (it holds its namespace, a module)."""
        state = dict(self.__dict__)
        opt = state.pop("optimizer")
        if opt.xp is not None:
            state["_held"] = self._host_state()
        state["_optimizer"] = (type(opt).__name__, opt.hyperparameters(), opt.current_lr)
        return state

    def __setstate__(self, state: dict) -> None:
        name, hyperparameters, lr = state.pop("_optimizer")
        self.__dict__.update(state)
        self.optimizer = OPTIMIZERS[name.lower()](**hyperparameters)
        self.optimizer.set_lr(lr)


class AdamRule(SGDRule):
    """scikit-learn's ``AdamOptimizer``: :class:`xpnet.Adam` with ``form="sklearn"`` (epsilon
    added to ``sqrt(v)``, not to the bias-corrected root). No schedule: a stall always stops.
    """

    def __init__(self, learning_rate_init: float = 0.001, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8):
        self.learning_rate_init = float(learning_rate_init)
        self.lr_schedule, self.power_t = "constant", 0.5
        self.optimizer = Adam(self.learning_rate_init, betas=(beta_1, beta_2), eps=epsilon, form="sklearn")

    @property
    def learning_rate(self) -> float:
        """The last step's bias-corrected rate, ``lr sqrt(1 - b2^t) / (1 - b1^t)`` (scikit-learn's ``learning_rate``)."""
        opt = self.optimizer
        (b1, b2), t = opt.betas, opt.t
        return opt.current_lr * math.sqrt(1 - b2**t) / (1 - b1**t) if t else opt.current_lr

    def trigger_stopping(self, msg: str, verbose) -> bool:
        if verbose:
            print(msg + " Stopping.")
        return True
