"""Arrays that speak DLPack (``__dlpack__``, ``__dlpack_device__``): where they live, and a host
one as a NumPy view of the same memory. No xpnet import: :mod:`xpnet.backend` and
:mod:`xpnet.validate` both use it."""

from __future__ import annotations

import array_api_compat
import numpy as np

# DLPack's device types (dlpack.h ``DLDeviceType``) that xpnet imports from
DLPACK_CPU, DLPACK_CUDA, DLPACK_CUDA_MANAGED = 1, 2, 13


def dlpack_device(a) -> tuple[int, int] | None:
    """``(device type, device id)`` of an array that speaks DLPack (``__dlpack__`` and
    ``__dlpack_device__``): ``(1, 0)`` in host memory, ``(2, N)`` on CUDA GPU N; else ``None``."""
    if not (hasattr(a, "__dlpack__") and hasattr(a, "__dlpack_device__")):
        return None
    try:
        kind, index = a.__dlpack_device__()
        return int(kind), int(index)
    except (AttributeError, BufferError, RuntimeError, TypeError, ValueError):
        return None


def exportable(a):
    """``a`` ready for ``__dlpack__``: a torch tensor that requires grad detached (a view of the same
    memory; torch refuses to export a tensor that is part of a graph)."""
    if array_api_compat.is_torch_array(a) and a.requires_grad:
        return a.detach()
    return a


def host_view(a):
    """Another library's array in host memory (a CPU torch tensor, a JAX CPU array, any object that
    speaks DLPack from the CPU) as a NumPy array over the same memory: ``np.from_dlpack``, no copy,
    its strides kept (a non-contiguous tensor stays a strided view). Anything else is returned as it
    is: NumPy arrays, device arrays (a torch CUDA tensor: :meth:`Backend.asarray` takes it), a dtype
    NumPy lacks (bfloat16), and array-api-strict's arrays, whose devices are simulated in host
    memory (its ``device1`` answers DLPack as the CPU too) and must keep them: its tests rely on
    arrays of two devices refusing to mix."""
    if isinstance(a, np.ndarray) or type(a).__module__.startswith("array_api_strict"):
        return a
    where = dlpack_device(a)
    if where is None or where[0] != DLPACK_CPU:
        return a
    try:
        return np.from_dlpack(exportable(a))
    except (BufferError, RuntimeError, TypeError, ValueError):
        return a  # a dtype or layout NumPy cannot take: as before, through the array's own library
