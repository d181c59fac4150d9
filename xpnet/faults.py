"""Training faults: what stops a run and how it is said.

- :class:`TrainingInterrupted`: SIGINT or SIGTERM, caught between steps by :class:`StopOnSignal`.
- :class:`TrainingDiverged`: the loss or a weight became NaN or infinite.
- :class:`OutOfMemory`: the device or host ran out during training, with :func:`memory_estimate`'s
  figures; :func:`check_memory` refuses a network too large to build before anything is allocated.

Nothing here imports the model or the training loop: :mod:`xpnet.train` and :mod:`xpnet.model` raise these.
"""

from __future__ import annotations

import re
import signal
import threading
from collections.abc import Sequence

from .backend import Backend, free_memory


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived; training stopped after the step in flight.

    Attributes: ``signum``, ``epoch`` (1-based, the one in progress), ``step``
    (steps done in it), ``checkpoint`` (the path written, or ``None``), ``complete``
    (every epoch had been trained: the signal came after the last one's steps).
    """

    def __init__(self, signum: int, epoch: int, step: int, checkpoint: str | None, complete: bool = False):
        self.signum, self.epoch, self.step, self.checkpoint = signum, epoch, step, checkpoint
        self.complete = complete
        name = signal.Signals(signum).name
        where = f"epoch {epoch}, after step {step}"
        saved = f"; checkpoint written to {checkpoint}" if checkpoint else "; no checkpoint (none was asked for)"
        super().__init__(f"{name} received: stopped at {where}{saved}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # 130 for SIGINT, 143 for SIGTERM


class TrainingDiverged(ValueError):
    """The loss or a weight became NaN or infinite. Attributes: ``epoch``, ``step`` (1-based)."""

    def __init__(self, epoch: int, step: int | None, what: str, lr: float):
        self.epoch, self.step = epoch, step
        at = f"epoch {epoch}, step {step}" if step is not None else f"the end of epoch {epoch}"
        super().__init__(
            f"training diverged at {at}: {what} became NaN or infinite; "
            f"try a lower learning rate (e.g. --lr {lr / 10:g}, a tenth of {lr:g})"
        )


class OutOfMemory(MemoryError):
    """The device (or host) ran out of memory; says how much a step needs and what to change."""

    def __init__(self, device: str, batch_size: int, step_bytes: int, data_bytes: int, original: BaseException):
        self.batch_size, self.step_bytes, self.data_bytes = batch_size, step_bytes, data_bytes
        smaller = max(1, batch_size // 2)
        super().__init__(
            f"out of memory on {device} with batch size {batch_size}: training needs about {_human(step_bytes)} "
            f"for weights, optimizer state, activations and gradients, plus {_human(data_bytes)} for the data "
            f"({type(original).__name__}: {str(original).splitlines()[0] if str(original) else 'no detail'}); "
            f"try a smaller --batch-size, e.g. {smaller}"
        )


def _human(n: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def memory_estimate(sizes: Sequence[int], batch_size: int, itemsize: int, state_per_param: int, m: int) -> tuple[int, int]:
    """``(step bytes, data bytes)`` for training ``sizes`` at ``batch_size``.

    Step: weights, gradients, scratch and ``state_per_param`` optimizer arrays per
    parameter, plus per sample the gathered inputs and targets and, per layer, the
    activations, the upstream gradient and a temporary. Data: ``m`` rows of inputs
    and one-hot targets, plus int64 labels.
    """
    n_params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    per_sample = sizes[0] + sizes[-1] + 3 * sum(sizes[1:])
    step = itemsize * (n_params * (3 + state_per_param) + batch_size * per_sample)
    data = m * (itemsize * (sizes[0] + sizes[-1]) + 8)
    return step, data


# CuPy's CUDA errors (matched by class name: CuPy need not be importable) and the texts that mean
# out of memory: the runtime's "cudaErrorMemoryAllocation: out of memory", the driver's
# "CUDA_ERROR_OUT_OF_MEMORY: out of memory", cuBLAS's bare "CUBLAS_STATUS_ALLOC_FAILED".
_CUDA_ERRORS = ("CUDARuntimeError", "CUDADriverError", "CUBLASError")
_OUT_OF_MEMORY = re.compile(r"out of memory|\bcudaErrorMemoryAllocation\b|\bCUDA_ERROR_OUT_OF_MEMORY\b"
                            r"|\bCUBLAS_STATUS_ALLOC_FAILED\b", re.I)


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is running out of memory: a MemoryError, CuPy's OutOfMemoryError, or a CUDA
    runtime, driver or cuBLAS error saying so (CuPy's classes matched by name and message)."""
    name = type(exc).__name__
    return (isinstance(exc, MemoryError) or name == "OutOfMemoryError"
            or (name in _CUDA_ERRORS and _OUT_OF_MEMORY.search(str(exc)) is not None))


def check_memory(n_params: int, itemsize: int, sizes: list[int], backend: Backend) -> None:
    """Refuse with a ValueError, before anything is allocated, a network of ``sizes`` whose
    ``n_params`` weights of ``itemsize`` bytes do not fit the host's free memory (they are drawn
    there) or, on CuPy, the GPU's."""
    need = n_params * itemsize
    for where, free in free_memory(backend):
        if need > free:
            raise ValueError(f"sizes={sizes} needs {need / 2**30:.1f} GiB for its {n_params:,} parameters alone "
                             f"({itemsize} bytes each), more than the {free / 2**30:.1f} GiB of free memory{where}: "
                             "use narrower layers")


class StopOnSignal:
    """While active, SIGINT/SIGTERM set a flag instead of raising (main thread only).

    The loop checks the flag between steps, so a step is never cut in half. Further
    signals while stopping are counted and otherwise deferred: an impatient second
    Ctrl-C must not cut the checkpoint's write short (it would lose the run's state),
    so the stop always ends with the checkpoint renamed into place and
    :class:`TrainingInterrupted` naming it.
    """

    def __init__(self):
        self.signum: int | None = None
        self.count = 0
        self._previous: dict = {}

    def _handle(self, signum, frame):
        self.count += 1
        if self.signum is None:
            self.signum = signum

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False
