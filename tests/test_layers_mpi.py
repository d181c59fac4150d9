"""Issue 22's layers across MPI ranks: synchronized batch norm (its statistics over the global batch,
every row sum through ``Communicator.row_sum``) and dropout (each row's mask keyed by its own index)
make 2 and 3 ranks compute what one process computes.

The ranks are started as in tests/test_distributed.py (the ``mpiexec`` of the ``mpich`` wheel, a
subprocess timeout); they run this file as their script (``python tests/test_layers_mpi.py OUT``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from test_distributed import _backend, _mpiexec, needs_mpi

import xpnet

BACKENDS = ("numpy", "strict-device1")
MODELS = {"batch": dict(activation="gelu", norm="batch", dropout=0.3, residual=True),
          "layer": dict(activation="silu", norm="layer", dropout=[0.1, 0.4])}
# (rows, global batch): 150 / 32 ends with a partial batch; 10 / 2 on 3 ranks gives shares of 1, 1 and 0 rows,
# where each rank's own statistics would be meaningless (a 1-row variance is 0)
CASES = {"moons": (150, 32), "tiny-shares": (10, 2)}
# SGD's step is proportional to the gradient (a gradient N times too large shows); Adam's is not
OPTIMIZERS = {"momentum": lambda: xpnet.SGD(0.1, momentum=0.9), "adam": lambda: xpnet.Adam(1e-2)}


def _train(backend: str, model_name: str, optimizer: str, case: str, comm=None) -> dict[str, np.ndarray]:
    """Weights, running statistics and per-epoch losses after 3 float64 epochs with validation, on ``comm``'s ranks or alone."""
    m, batch = CASES[case]
    X, y = xpnet.make_moons(150, noise=0.2, seed=7)
    val = xpnet.make_moons(40, seed=8)
    model = xpnet.MLP([2, 12, 12, 2], dtype="float64", seed=1, backend=_backend(backend), **MODELS[model_name])
    history = xpnet.fit(model, X[:m], y[:m], OPTIMIZERS[optimizer](), epochs=3, batch_size=batch, comm=comm, validation_data=val,
                        verbose=False)
    return {"flat": xpnet.to_numpy(model.flat).copy(), "stats": xpnet.to_numpy(model.stats).copy(),
            "loss": np.array(history.train_loss), "accuracy": np.array(history.train_accuracy),
            "val_loss": np.array(history.val_loss)}


def _rounding_noise(model_name: str) -> dict[str, np.ndarray]:
    """Where the results hold amplified rounding noise (``flat`` and ``stats`` masks): the bias right before
    batch norm has an exact zero gradient, so what it gets is rounding noise, which Adam divides by its own
    size (up to 1e-8 apart after 15 steps here); it has no effect on any output, but it moves the running means."""
    model = xpnet.MLP([2, 12, 12, 2], **MODELS[model_name])
    flat, stats = np.zeros(model.n_params, bool), np.zeros(model.stats.shape, bool)
    if model.norm == "batch":
        for l in model.normed:
            start, stop, _ = model.layout.slices[model.layout.index("b", l)]
            flat[start:stop] = True
        start = 0
        for l in model.normed:  # MLP.stats holds [mean, var] per batch-normed layer: the means
            width = model.sizes[l + 1]
            stats[start:start + width] = True
            start += 2 * width
    return {"flat": flat, "stats": stats}


@needs_mpi
@pytest.mark.parametrize("model_name", ["batch", "layer"])
@pytest.mark.parametrize("n", [2, 3])
def test_n_ranks_compute_what_one_process_computes(n, model_name, tmp_path):
    result = _mpiexec(n, __file__, model_name, str(tmp_path), env={"OPENBLAS_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr
    ranks = [dict(np.load(tmp_path / f"rank{r}.npz")) for r in range(n)]
    assert len(ranks[0]) == len(BACKENDS) * len(OPTIMIZERS) * len(CASES) * 5
    for key in ranks[0]:
        for other in ranks[1:]:  # every rank holds the same weights, statistics and history, bit for bit
            np.testing.assert_array_equal(other[key], ranks[0][key], err_msg=key)
    noise = _rounding_noise(model_name)
    for backend in BACKENDS:
        for optimizer in OPTIMIZERS:
            for case in CASES:
                alone = _train(backend, model_name, optimizer, case)
                if model_name == "batch":
                    assert not np.allclose(alone["stats"][12:24], 1.0)  # the running variance moved
                for what, value in alone.items():
                    got = ranks[0][f"{backend}-{optimizer}-{case}-{what}"]
                    where = f"{backend} {model_name} {optimizer} {case} {what}"
                    loose = noise.get(what, np.zeros(value.shape, bool))
                    if what == "val_loss" and model_name == "batch":  # eval mode reads those running means
                        loose = np.ones(value.shape, bool)
                    # the same sums added in another order: float64 rounding apart, nothing more
                    np.testing.assert_allclose(got[~loose], value[~loose], rtol=1e-9, atol=1e-9, err_msg=where)
                    np.testing.assert_allclose(got[loose], value[loose], rtol=0, atol=1e-6, err_msg=where)


def _rank_main(model_name: str, out: str) -> None:
    from mpi4py import MPI

    world = MPI.COMM_WORLD
    results = {}
    for backend in BACKENDS:
        for optimizer in OPTIMIZERS:
            for case in CASES:
                for what, value in _train(backend, model_name, optimizer, case, comm=world).items():
                    results[f"{backend}-{optimizer}-{case}-{what}"] = value
    np.savez(Path(out) / f"rank{world.Get_rank()}.npz", **results)


if __name__ == "__main__":
    _rank_main(*sys.argv[1:])
