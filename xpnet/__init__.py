"""xpnet: fully connected networks trained by hand-written backprop, on any array namespace.

The same forward pass, backprop and update rules run on NumPy (CPU), CuPy (NVIDIA
GPU) and any array-API library through array-api-compat.

    >>> import xpnet
    >>> data = xpnet.load_mnist()
    >>> model = xpnet.MLP([784, 128, 64, 10], device="cpu")
    >>> history = xpnet.fit(model, data.X_train, data.y_train, xpnet.Adam(1e-3), epochs=5)
    >>> model.evaluate(data.X_test, data.y_test)["accuracy"]  # doctest: +SKIP

The public names are imported on first use (PEP 562), so ``import xpnet`` itself is
instant: the command line can catch a Ctrl-C during start-up, and importing one
module does not import them all.

The house, one room per step, data flowing one way (a room imports only rooms below it;
a test walks every import): ``cli/`` (one file per command family: ``flags``, ``files``
for user files and output checks, ``reports``, ``train`` for train and sweep,
``evaluate`` for evaluate and predict, ``tools`` for bench and info) turns flags into
calls; ``data`` reads data sets and the user's ``.npz`` (``csvfile`` reads CSVs, ``arrowfile``
Parquet and Feather) on the host; ``dlpack`` takes other libraries' arrays without a copy;
``backend`` resolves the device to a namespace ``xp`` (``_cuda`` diagnoses CuPy's
failures and owns TF32; ``threads`` reads and sets the BLAS threads); ``model`` is the
``MLP``: forward, backprop and predict over one flat buffer (``flat`` lays it out),
with ``activations`` and ``losses`` as tables, ``layers`` for what sits between two products
(normalization, dropout, skips: each a forward and a hand-derived backward), ``labels`` for class lists and
``preprocess`` for input and target scaling; ``optim`` writes every update rule once
over the flat buffer (PyTorch's and scikit-learn's forms as options); ``batches`` orders
and gathers the rows of each step; ``kernels/`` holds the fused kernels (one C source each, for NVRTC
and the C compiler) and ``fused`` the step built on them; ``train`` is ``fit`` and ``train_step``, with
``faults`` for interruptions, divergence and memory; ``io`` and ``checkpoint`` write and
read model files and checkpoints (npz + JSON, no pickle), ``export`` writes a model as one ONNX graph; ``distributed`` is MPI,
``sklearn/`` scikit-learn's estimator contract, ``metrics``, ``plot``, ``logs`` (a CSV
row and TensorBoard scalars per epoch, on disk as it ends), ``bench`` and ``opcount`` report.
"""

from __future__ import annotations

import importlib

from ._version import __version__ as __version__  # re-exported

_EXPORTS = {  # public name -> the module that defines it
    "Backend": "backend", "DeviceError": "backend", "get_backend": "backend", "to_numpy": "backend",
    "Dataset": "data", "load_mnist": "data", "load_moons": "data", "make_moons": "data", "make_xor": "data",
    "read_idx": "data",
    "load": "model",
    "MLP": "model",
    "SGD": "optim", "Adam": "optim", "Constant": "optim", "Cosine": "optim", "StepDecay": "optim",
    "OneCycle": "optim",
    "Scaler": "preprocess", "fit_scaler": "preprocess",
    "History": "history",
    "OutOfMemory": "faults", "TrainingDiverged": "faults", "TrainingInterrupted": "faults",
    "Callback": "train", "EarlyStopping": "train", "fit": "train", "train_step": "train",
    "ReduceLROnPlateau": "train",
    "CSVLogger": "logs", "TensorBoardLogger": "logs",
    "export_onnx": "export", "to_onnx": "export",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'xpnet' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
