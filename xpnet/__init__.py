"""xpnet: fully connected networks trained by hand-written backprop, on any array namespace.

The same forward pass, backprop and update rules run on NumPy (CPU), CuPy (NVIDIA
GPU) and any array-API library through array-api-compat.

    >>> import xpnet
    >>> data = xpnet.load_mnist()
    >>> model = xpnet.MLP([784, 128, 64, 10], device="cpu")
    >>> history = xpnet.fit(model, data.X_train, data.y_train, xpnet.Adam(1e-3), epochs=5)
    >>> model.evaluate(data.X_test, data.y_test)["accuracy"]  # doctest: +SKIP
"""

__version__ = "0.1.0"

from .backend import Backend, DeviceError, get_backend, to_numpy
from .data import Dataset, load_mnist, load_moons, make_moons, make_xor, read_idx
from .io import load
from .model import MLP
from .optim import SGD, Adam, Constant, Cosine, StepDecay
from .train import Callback, EarlyStopping, History, OutOfMemory, TrainingDiverged, TrainingInterrupted, fit

__all__ = [
    "Adam",
    "Backend",
    "Callback",
    "Constant",
    "Cosine",
    "Dataset",
    "DeviceError",
    "EarlyStopping",
    "History",
    "MLP",
    "OutOfMemory",
    "SGD",
    "StepDecay",
    "TrainingDiverged",
    "TrainingInterrupted",
    "fit",
    "get_backend",
    "load",
    "load_mnist",
    "load_moons",
    "make_moons",
    "make_xor",
    "read_idx",
    "to_numpy",
]
