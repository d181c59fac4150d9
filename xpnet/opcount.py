"""Count the array operations (kernel launches on a GPU) a training step issues, on either path.

On CuPy every elementwise operation, reduction, product, gather and copy is a kernel
launch costing 5-20 us of host time, while an H100 needs 2-4 us to run one at
MNIST sizes: the number of operations per step, not the arithmetic, is what a GPU
pays first. That number can be measured without a GPU: run the same code on
array-api-strict (the generic path, the one CuPy takes) with every computing call
counted.

Counted: every call of a namespace function that computes (not ``reshape`` and the
like, which make views), every arithmetic, comparison and bitwise operator on an
array (in-place ones too), every ``x[...] = y`` and every gather ``x[index_array]``.
Only the outermost call counts, so a function that calls others inside
array-api-strict counts once.
"""

from __future__ import annotations

import contextlib
import statistics
from collections.abc import Iterator

import numpy as np

from .optim import SGD, Adam

# namespace functions that only describe or reshape arrays: views and metadata, no kernel
NOT_COMPUTING = frozenset({
    "reshape", "permute_dims", "matrix_transpose", "expand_dims", "squeeze", "broadcast_to", "broadcast_arrays",
    "isdtype", "result_type", "can_cast", "finfo", "iinfo", "from_dlpack", "asarray", "set_array_api_strict_flags",
    "get_array_api_strict_flags", "reset_array_api_strict_flags", "ArrayAPIStrictFlags",
})
OPERATORS = tuple(f"__{op}__" for op in (
    "add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor", "lshift", "rshift",
    "radd", "rsub", "rmul", "rtruediv", "rfloordiv", "rmod", "rpow", "rmatmul", "rand", "ror", "rxor",
    "iadd", "isub", "imul", "itruediv", "ifloordiv", "imod", "ipow", "imatmul", "iand", "ior", "ixor",
    "lt", "le", "gt", "ge", "eq", "ne", "neg", "pos", "abs", "invert",
))


class Counter:
    """The running count; ``value`` is read between steps."""

    def __init__(self):
        self.value = 0
        self._depth = 0

    def wrap(self, fn, counts=lambda *args: True):
        def counted(*args, **kwargs):
            outer = self._depth == 0
            self._depth += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._depth -= 1
                if outer and counts(*args):
                    self.value += 1

        counted.__name__ = getattr(fn, "__name__", "counted")
        return counted


def _is_gather(array, key, *rest) -> bool:
    keys = key if isinstance(key, tuple) else (key,)
    return any(hasattr(k, "shape") and getattr(k, "ndim", 0) > 0 for k in keys)


@contextlib.contextmanager
def counting(module) -> Iterator[Counter]:
    """Count computing calls on ``module`` (array-api-strict) and its arrays while inside.

    Backends resolved inside see the counting functions; restore happens on exit.
    """
    counter = Counter()
    array_type = type(module.asarray(0))
    saved_functions, saved_methods = {}, {}
    try:
        for name in dir(module):
            fn = getattr(module, name)
            if name.startswith("_") or name in NOT_COMPUTING or isinstance(fn, type) or not callable(fn):
                continue
            saved_functions[name] = fn
            setattr(module, name, counter.wrap(fn))
        for name in (*OPERATORS, "__setitem__"):
            if hasattr(array_type, name):
                saved_methods[name] = getattr(array_type, name)
                setattr(array_type, name, counter.wrap(saved_methods[name]))
        saved_methods["__getitem__"] = array_type.__getitem__
        array_type.__getitem__ = counter.wrap(saved_methods["__getitem__"], _is_gather)
        yield counter
    finally:
        for name, fn in saved_functions.items():
            setattr(module, name, fn)
        for name, fn in saved_methods.items():
            setattr(array_type, name, fn)


OPTIMIZERS = {  # name -> factory; the settings that change the number of operations
    "sgd": lambda: SGD(0.01),
    "nesterov+wd": lambda: SGD(0.01, momentum=0.9, nesterov=True, weight_decay=5e-4),
    "adam": lambda: Adam(1e-3),
}


def ops_per_step(layers=(784, 128, 64, 10), optimizer: str = "sgd", rows: int = 512, batch: int = 64,
                 model_settings: dict | None = None, path: str = "generic") -> dict:
    """``{"step": ..., "update": ...}``: array operations per training step in :func:`xpnet.fit`
    (median over an epoch's full batches) and in the optimizer's update alone, for an
    ``MLP(layers, **model_settings)``.

    ``path="generic"`` (default): the generic step, counted on array-api-strict (needs the test
    extra), each operation one launch on a GPU. ``path="fused"``: :class:`xpnet.fused.FusedStep`
    run on NumPy with the kernels built by the C compiler (:class:`xpnet.kernels.HostKernels`), the
    same sequence of calls as on CuPy, its launches counted (kernels, products, column sums).
    """
    if path == "fused":
        return _fused_launches(layers, optimizer, rows, batch, model_settings)
    if path != "generic":
        raise ValueError(f"path={path!r} is not a path: expected 'generic' or 'fused'")
    import array_api_strict

    from .model import MLP
    from .train import Callback, fit

    X = np.random.default_rng(0).normal(size=(rows, layers[0])).astype(np.float32)
    y = np.arange(rows) % layers[-1]
    marks: list[int] = []
    update_counts: list[int] = []

    class Mark(Callback):
        def on_batch_end(self, batch):
            marks.append(counter.value)

    with counting(array_api_strict) as counter:
        model = MLP(list(layers), backend=array_api_strict, seed=0, **(model_settings or {}))
        opt = OPTIMIZERS[optimizer]()
        inner = opt.update

        def counted_step(params, grads):
            before = counter.value
            inner(params, grads)
            update_counts.append(counter.value - before)

        opt.update = counted_step
        fit(model, X, y, opt, epochs=1, batch_size=batch, verbose=False, callbacks=[Mark()])
    steps = [b - a for a, b in zip(marks[:-1], marks[1:])]
    return {"step": int(statistics.median(steps)), "update": int(statistics.median(update_counts))}


def _fused_launches(layers, optimizer: str, rows: int, batch: int, model_settings: dict | None) -> dict:
    """:func:`ops_per_step` for ``path="fused"``."""
    from .kernels import HostKernels
    from .model import MLP
    from .train import Callback, fit

    settings = dict(model_settings or {})
    kernels = HostKernels(settings.get("dtype", "float32"))
    X = np.random.default_rng(0).normal(size=(rows, layers[0])).astype(settings.get("dtype", "float32"))
    y = np.arange(rows) % layers[-1]
    marks: list[int] = []

    class Mark(Callback):
        def on_batch_end(self, batch):
            marks.append(kernels.launches)

    model = MLP(list(layers), seed=0, **settings)
    fit(model, X, y, OPTIMIZERS[optimizer](), epochs=1, batch_size=batch, verbose=False, callbacks=[Mark()], path=kernels)
    steps = [b - a for a, b in zip(marks[:-1], marks[1:])]
    return {"step": int(statistics.median(steps)), "update": 1}  # one kernel updates the whole flat buffer
