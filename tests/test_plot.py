"""Every figure renders to a valid PNG of the promised size with more than one colour."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest

import xpnet

pytest.importorskip("matplotlib", reason="matplotlib (the plot extra) is not installed")
from xpnet import plot  # noqa: E402


def check_png(path, width: int, height: int) -> None:
    blob = path.read_bytes()
    assert blob[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert blob[12:16] == b"IHDR"
    assert struct.unpack(">II", blob[16:24]) == (width, height)
    import matplotlib.image

    pixels = matplotlib.image.imread(path)
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 1, f"{path} is one flat colour"


@pytest.fixture
def moons_model(backend):
    d = xpnet.load_moons(n=200, seed=0)
    model = xpnet.MLP([2, 8, 2], activation="tanh", backend=backend)
    history = xpnet.fit(model, d.X_train, d.y_train, xpnet.Adam(1e-2), epochs=3, verbose=False,
                        validation_data=(d.X_test, d.y_test))
    return model, history, d


def test_history_curves(tmp_path):
    # drawn on the host from the history's numbers: one run, whatever backend trained it
    history = xpnet.History()
    history.epoch, history.train_loss, history.val_loss = [1, 2, 3], [0.9, 0.5, 0.4], [1.0, 0.6, 0.5]
    history.train_accuracy, history.val_accuracy = [0.6, 0.8, 0.9], [0.55, 0.75, 0.85]
    check_png(plot.history_curves(history, tmp_path / "h.png"), 1000, 400)


def test_decision_boundary_and_grid(moons_model, tmp_path):
    model, _, d = moons_model
    check_png(plot.decision_boundary(model, d.X_test, d.y_test, tmp_path / "b.png"), 600, 600)
    check_png(plot.boundary_grid([model] * 4, ["a", "b", "c", "d"], d.X_test, d.y_test, tmp_path / "g.png"), 900, 600)
    with pytest.raises(ValueError, match="needs 2-D data"):
        plot.decision_boundary(model, np.zeros((3, 5)), np.zeros(3), tmp_path / "x.png")


def test_confusion_and_accuracy_vs_width(tmp_path):
    cm = np.array([[5, 1, 0], [2, 7, 1], [0, 0, 9]])
    check_png(plot.confusion(cm, tmp_path / "c.png"), 600, 600)
    check_png(plot.accuracy_vs_width([1, 2, 4], [0.6, 0.8, 0.9], [0.55, 0.75, 0.85], tmp_path / "w.png"), 600, 400)


def test_misclassified_digits(tmp_path):
    d = xpnet.load_mnist()
    pred = (d.y_test + 1) % 10
    check_png(plot.misclassified_digits(d.X_test, d.y_test, pred, tmp_path / "m.png"), 600, 600)


def test_without_matplotlib_the_message_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    with pytest.raises(ValueError, match=r'pip install "matplotlib>=3.7"'):
        plot.pyplot()
