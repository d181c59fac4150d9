"""What a model carries besides weights: its class list, its input scaling, and the file
format (version 2, with a reader for version 1) that keeps them; resume and interruption
details that keep a run's state whole."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet.train import Callback, TrainingInterrupted

DATA = Path(__file__).parent / "data"


def _moons(n=160, seed=1):
    return xpnet.make_moons(n, noise=0.1, seed=seed)


def _host(a):
    return xpnet.to_numpy(a)


# ------------------------------------------------------------------ classes
@pytest.mark.parametrize("labels,expected", [
    (lambda y: np.where(y == 1, "dog", "cat"), ["cat", "dog"]),
    (lambda y: np.where(y == 1, 7, 3), [3, 7]),
    (lambda y: y * 2 - 1, [-1, 1]),
])
def test_fit_learns_the_class_list_and_predict_returns_original_labels(backend, labels, expected):
    X, y = _moons()
    y_named = labels(y)
    model = xpnet.MLP([2, 16, 2], activation="tanh", backend=backend, seed=0)
    xpnet.fit(model, X, y_named, xpnet.Adam(1e-2), epochs=30, batch_size=32, verbose=False)
    assert model.classes.tolist() == expected
    predicted = _host(model.predict(X))
    assert set(predicted.tolist()) <= set(expected)
    # the labels are mapped, not re-learned: predictions agree with the output indices
    index = _host(model.predict_proba(X)).argmax(axis=1)
    assert predicted.tolist() == [expected[i] for i in index]
    assert model.evaluate(X, y_named)["accuracy"] == pytest.approx(np.mean(predicted == y_named))
    assert model.evaluate(X, y_named)["accuracy"] > 0.9


def test_labels_already_output_indices_keep_their_meaning(backend):
    X, y = _moons()
    model = xpnet.MLP([2, 8, 4], backend=backend)  # 4 outputs, labels 0 and 1 only
    xpnet.fit(model, X, y, epochs=1, verbose=False)
    assert model.classes.tolist() == [0, 1, 2, 3]


def test_labels_one_to_ten_are_ten_classes(backend):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 3)).astype(np.float32)
    y = np.arange(60) % 10 + 1
    model = xpnet.MLP([3, 8, 10], backend=backend)
    xpnet.fit(model, X, y, epochs=1, verbose=False)
    assert model.classes.tolist() == list(range(1, 11))
    assert set(_host(model.predict(X)).tolist()) <= set(range(1, 11))


def test_single_sigmoid_unit_with_named_classes(backend):
    X, y = _moons()
    model = xpnet.MLP([2, 8, 1], activation="tanh", output="sigmoid", backend=backend, seed=0)
    xpnet.fit(model, X, np.where(y == 1, 7, 3), xpnet.Adam(1e-2), epochs=20, batch_size=32, verbose=False)
    assert model.classes.tolist() == [3, 7]
    p = _host(model.predict_proba(X))[:, 0]
    np.testing.assert_array_equal(_host(model.predict(X)), np.where(p >= 0.5, 7, 3))


def test_device_labels_are_looked_up_on_the_device(backend):
    X, y = _moons()
    model = xpnet.MLP([2, 8, 2], backend=backend, classes=[3, 7])
    y_dev = backend.asarray(np.where(y == 1, 7, 3))
    xpnet.fit(model, backend.asarray(X), y_dev, epochs=2, verbose=False)
    host = model.evaluate(X, np.where(y == 1, 7, 3))
    assert model.evaluate(backend.asarray(X), y_dev) == pytest.approx(host)
    with pytest.raises(ValueError, match=r"y has label\(s\) \[5\] that are not among the model's classes \[3, 7\]"):
        model.evaluate(backend.asarray(X), backend.asarray(np.where(y == 1, 7, 5)))


CLASS_ERRORS = [
    (dict(sizes=[2, 4, 3]), np.array(["a", "b"] * 10), r"y holds 2 classes \['a', 'b'\] but the network has 3 outputs"),
    (dict(sizes=[2, 4, 2]), np.arange(20) % 3 + 5, r"y holds 3 classes \[5, 6, 7\] but the network has 2 outputs"),
    (dict(sizes=[2, 4, 1], output="sigmoid"), np.arange(20) % 3 + 5,
     r"y holds 3 classes \[5, 6, 7\] but the network has a single sigmoid unit"),
]


@pytest.mark.parametrize("kwargs,y,message", CLASS_ERRORS)
def test_classes_that_do_not_fit_the_outputs_are_refused(backend, kwargs, y, message):
    X = np.random.default_rng(0).normal(size=(20, 2)).astype(np.float32)
    model = xpnet.MLP(backend=backend, **kwargs)
    with pytest.raises(ValueError, match=message):
        xpnet.fit(model, X, y, epochs=1, verbose=False)


@pytest.mark.parametrize("kwargs,message", [
    (dict(classes=[1, 2, 3]), r"classes=\[1, 2, 3\] has 3 classes but the network predicts 2"),
    (dict(classes=["a", "a"]), r"classes=\['a', 'a'\] repeats a class"),
    (dict(classes=[[1], [2]]), r"is not a class list"),
    (dict(classes=[0, 1], output="identity", sizes=[2, 1]), r"a regressor has no classes"),
])
def test_bad_class_lists(host_backend, kwargs, message):
    with pytest.raises(ValueError, match=message):
        xpnet.MLP(**{"sizes": [2, 4, 2], **kwargs}, backend=host_backend)


def test_unknown_and_string_labels_are_named(backend):
    X, y = _moons()
    model = xpnet.MLP([2, 8, 2], backend=backend, classes=["cat", "dog"])
    with pytest.raises(ValueError, match=r"y has label\(s\) \['cow'\] that are not among the model's classes"):
        model.evaluate(X, np.where(y == 1, "dog", "cow"))
    fresh = xpnet.MLP([2, 8, 2], backend=backend)
    with pytest.raises(ValueError, match=r"y holds string labels \['cat', 'dog'\] but the model has no class list"):
        fresh.evaluate(X, np.where(y == 1, "dog", "cat"))


# ------------------------------------------------------------ input scaling
def test_scaler_fits_on_training_rows_and_is_applied_everywhere(backend):
    X = np.array([[0, 10, 5], [255, 30, 5], [128, 20, 5]], dtype=np.uint8)
    s = xpnet.fit_scaler(X, "standard")
    np.testing.assert_allclose(s.transform(X).mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(s.transform(X)[:, :2].std(axis=0), 1)
    assert s.factor[2] == 1.0  # a constant feature is only centred
    m = xpnet.fit_scaler(X, "minmax")
    np.testing.assert_allclose(m.transform(X)[:, :2].min(axis=0), 0)
    np.testing.assert_allclose(m.transform(X)[:, :2].max(axis=0), 1)
    assert xpnet.fit_scaler(X / 255.0, "auto") is None and xpnet.fit_scaler(X, "auto").kind == "standard"
    assert xpnet.fit_scaler(X, "none") is None
    with pytest.raises(ValueError, match=r"scale='zscore' is not known"):
        xpnet.fit_scaler(X, "zscore")

    model = xpnet.MLP([3, 4, 2], backend=backend, scale=s)
    plain = xpnet.MLP([3, 4, 2], backend=backend)  # the same weights (same seed), no scaling
    np.testing.assert_allclose(_host(model.forward(X)), _host(plain.forward(s.transform(X).astype(np.float32))),
                               rtol=1e-5, atol=1e-6)


def test_uint8_images_train_with_the_model_carrying_its_scaling(backend, tmp_path):
    data = xpnet.load_mnist()
    X = np.round(data.X_train[:3000] * 255).astype(np.uint8)  # raw pixels 0..255
    y = data.y_train[:3000]
    X_test = np.round(data.X_test * 255).astype(np.uint8)
    model = xpnet.MLP([784, 64, 10], backend=backend, scale="auto", seed=0)
    xpnet.fit(model, X, y, xpnet.Adam(1e-3), epochs=3, batch_size=64, verbose=False)
    assert model.scaler.kind == "standard"
    accuracy = model.evaluate(X_test, data.y_test)["accuracy"]
    assert accuracy > 0.85  # unscaled 0..255 pixels trained to chance (10%) before
    model.save(tmp_path / "m.npz")
    again = xpnet.load(tmp_path / "m.npz", backend=backend)
    assert again.scaler == model.scaler
    assert again.evaluate(X_test, data.y_test)["accuracy"] == accuracy


# --------------------------------------------------------------- model file
def test_version_2_file_keeps_classes_scaling_and_data_record(backend, tmp_path):
    X, y = _moons()
    model = xpnet.MLP([2, 8, 2], backend=backend, scale="standard")
    xpnet.fit(model, X * 50, np.where(y == 1, "b", "a"), epochs=2, verbose=False)
    model.data_info = {"source": "dataset", "name": "moons", "seed": 1}
    path = tmp_path / "m.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as npz:
        meta = json.loads(npz["metadata"].tobytes())
        assert {"scale.shift", "scale.factor"} <= set(npz.files)
    assert meta["format_version"] == 2 and meta["classes"] == ["a", "b"] and meta["scale"] == "standard"
    assert meta["data"] == {"source": "dataset", "name": "moons", "seed": 1}
    loaded = xpnet.load(path, backend=backend)
    assert loaded.classes.tolist() == ["a", "b"] and loaded.scaler == model.scaler and loaded.data_info == model.data_info
    np.testing.assert_array_equal(_host(loaded.predict(X * 50)), _host(model.predict(X * 50)))


def test_version_1_files_are_still_read(backend):
    loaded = xpnet.load(DATA / "model-v1.npz", backend=backend)
    with np.load(DATA / "model-v1.npz", allow_pickle=False) as npz:
        meta = json.loads(npz["metadata"].tobytes())
        weights = [npz[k] for k in ("W1", "b1", "W2", "b2")]
    assert meta["format_version"] == 1 and "classes" not in meta
    assert loaded.sizes == [2, 6, 2] and loaded.classes is None and loaded.scaler is None
    for got, stored in zip(loaded.params, weights):
        np.testing.assert_array_equal(_host(got), stored)
    X, _ = xpnet.make_moons(10, seed=2)
    Z = np.tanh(X @ weights[0] + weights[1]) @ weights[2] + weights[3]
    np.testing.assert_array_equal(_host(loaded.predict(X)), Z.argmax(axis=1))
    # a version 1 checkpoint is a model too
    from_checkpoint = xpnet.load(DATA / "checkpoint-v1.npz", backend=backend)
    assert from_checkpoint.sizes == [2, 6, 2]


def test_a_file_from_a_newer_xpnet_says_so(host_backend, tmp_path):
    path = tmp_path / "m.npz"
    xpnet.MLP([2, 3, 2]).save(path)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["metadata"].tobytes())
    meta.update(format_version=7, xpnet_version="9.0")
    arrays["metadata"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"was written by a newer xpnet \(9.0, format version 7\); this xpnet .* "
                                         r"reads versions 1 to 3: upgrade xpnet"):
        xpnet.load(path, backend=host_backend)


def test_checkpoint_loads_as_a_model(backend, tmp_path):
    X, y = _moons()
    ck = tmp_path / "ck.npz"
    model = xpnet.MLP([2, 8, 2], backend=backend, scale="minmax")
    xpnet.fit(model, X, y + 3, epochs=2, verbose=False, checkpoint=str(ck))
    loaded = xpnet.load(ck, backend=backend)
    assert loaded.classes.tolist() == [3, 4] and loaded.scaler == model.scaler
    np.testing.assert_array_equal(_host(loaded.predict(X)), _host(model.predict(X)))


# -------------------------------------------------------------------- resume
def test_resume_with_other_optimizer_settings_is_refused_then_recorded(backend, tmp_path):
    X, y = _moons()
    ck = tmp_path / "ck.npz"
    xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend), X, y, xpnet.SGD(0.1, momentum=0.9), epochs=1, verbose=False,
              checkpoint=str(ck))
    changed = xpnet.SGD(0.05, momentum=0.5, weight_decay=1e-3, schedule="cosine")
    with pytest.raises(ValueError, match=r"other optimizer settings: lr 0.1 \(now 0.05\), weight_decay 0.0 \(now 0.001\), "
                                         r"schedule 'constant' \(now 'cosine'\), momentum 0.9 \(now 0.5\); .*--allow-changes"):
        xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend), X, y, changed, epochs=2, verbose=False, resume=str(ck))
    history = xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend), X, y, changed, epochs=2, verbose=False, resume=str(ck),
                        allow_changes=True)
    assert history.changes == [{"epoch": 2, "step": 0, "changed": {
        "lr": [0.1, 0.05], "weight_decay": [0.0, 0.001], "schedule": ["constant", "cosine"], "momentum": [0.9, 0.5],
        "epochs": [1, 2]}}]  # a longer run is allowed, and recorded too
    assert history.lr[-1] == pytest.approx(0.05 * 0.5)  # the new rate, on its cosine at epoch 2 of 2


@pytest.mark.parametrize("forms", [("sklearn", "pytorch"), ("pytorch", "sklearn")])
def test_resume_with_the_other_form_of_the_update_rule_is_refused(backend, tmp_path, forms):
    X, y = _moons()
    ck = tmp_path / "ck.npz"
    xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend), X, y, xpnet.SGD(0.1, momentum=0.9, form=forms[0]), epochs=1,
              verbose=False, checkpoint=str(ck))
    with pytest.raises(ValueError, match="other optimizer settings: form"):
        xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend), X, y, xpnet.SGD(0.1, momentum=0.9, form=forms[1]),
                  epochs=2, verbose=False, resume=str(ck))


# ------------------------------------------------------------ interruption
class _SignalAt(Callback):
    def __init__(self, step):
        self.step, self.count = step, 0

    def on_batch_end(self, batch):
        self.count += 1
        if self.count == self.step:
            os.kill(os.getpid(), signal.SIGINT)


def test_second_ctrl_c_during_the_checkpoint_write_is_deferred(backend, tmp_path, monkeypatch):
    """A hook inside the write sends the impatient second (and third) Ctrl-C: the write finishes,
    the checkpoint is whole, and the run ends as one interruption that names it."""
    import xpnet.io

    X, y = _moons()
    ck = tmp_path / "ck.npz"
    real_savez = np.savez
    sent = []

    def slow_savez(f, **arrays):
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the write
        sent.append(1)
        real_savez(f, **arrays)
        os.kill(os.getpid(), signal.SIGINT)  # and another before the rename

    monkeypatch.setattr(xpnet.io.np, "savez", slow_savez)
    with pytest.raises(TrainingInterrupted) as info:
        xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend), X, y, xpnet.Adam(1e-2), epochs=5, batch_size=32,
                  verbose=False, checkpoint=str(ck), checkpoint_every=100, callbacks=[_SignalAt(3)])
    assert sent and info.value.checkpoint == str(ck) and info.value.step == 3
    monkeypatch.setattr(xpnet.io.np, "savez", real_savez)
    resumed = xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend), X, y, xpnet.Adam(1e-2), epochs=5, batch_size=32,
                        verbose=False, resume=str(ck))
    assert len(resumed.epoch) == 5
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_version_1_checkpoint_resumes(backend, tmp_path):
    """The committed version 1 checkpoint kept its momenta per layer: they are laid out like
    the flat buffer, and the run continues where an uninterrupted one would be."""
    X, y = xpnet.make_moons(120, seed=2)
    settings = dict(epochs=5, batch_size=32, verbose=False)
    resumed = xpnet.MLP([2, 6, 2], activation="tanh", seed=3, backend=backend)
    history = xpnet.fit(resumed, X, y, xpnet.SGD(0.1, momentum=0.9), resume=str(DATA / "checkpoint-v1.npz"), **settings)
    assert history.epoch == [1, 2, 3, 4, 5]
    whole = xpnet.MLP([2, 6, 2], activation="tanh", seed=3, backend=backend)
    xpnet.fit(whole, X, y, xpnet.SGD(0.1, momentum=0.9), **settings)
    # version 1 divided the output gradient by m where this one multiplies by 1/m: float32 rounding apart
    np.testing.assert_allclose(_host(resumed.flat), _host(whole.flat), rtol=1e-4, atol=1e-5)


def test_a_version_1_checkpoint_from_inside_an_epoch_resumes(backend):
    """Written by version 1 after step 2 of epoch 2 (per-step mean losses, per-layer Adam moments):
    the resumed run reports the losses the uninterrupted version 1 run reported."""
    X, y = xpnet.make_moons(120, seed=2)
    model = xpnet.MLP([2, 6, 2], activation="tanh", seed=3, backend=backend)
    history = xpnet.fit(model, X, y, xpnet.Adam(0.01), epochs=4, batch_size=32, verbose=False,
                        resume=str(DATA / "checkpoint-v1-mid-epoch.npz"))
    v1 = [0.7409391681353251, 0.633901838461558, 0.5523606737454733, 0.49470454454421997]  # printed by version 1
    assert history.train_loss[0] == v1[0]  # from the checkpoint's history
    np.testing.assert_allclose(history.train_loss[1:], v1[1:], rtol=1e-4)  # epoch 2 mixes saved and new steps


def test_a_longer_run_on_resume_is_recorded(backend, tmp_path):
    X, y = _moons()
    ck = tmp_path / "ck.npz"
    xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend), X, y, xpnet.SGD(0.1, schedule="cosine"), epochs=2,
              verbose=False, checkpoint=str(ck))
    history = xpnet.fit(xpnet.MLP([2, 8, 2], backend=backend), X, y, xpnet.SGD(0.1, schedule="cosine"), epochs=4,
                        verbose=False, resume=str(ck))
    assert history.changes == [{"epoch": 3, "step": 0, "changed": {"epochs": [2, 4]}}]


def test_weight_decay_on_the_flat_buffer_spares_the_biases(backend):
    """One full-batch step: weights move by lr (g + wd W), biases by lr g only."""
    X, y = _moons(40)
    for opt in (xpnet.SGD(0.5, weight_decay=0.1), xpnet.SGD(0.5, momentum=0.9, nesterov=True, weight_decay=0.1)):
        model = xpnet.MLP([2, 5, 2], backend=backend, dtype="float64", seed=4)
        before = [_host(p).copy() for p in model.params]
        _, grads = model.loss_and_grads(X, y)
        grads = [_host(g).copy() for g in grads]
        xpnet.fit(model, X, y, opt, epochs=1, batch_size=None, verbose=False)
        mu = opt.momentum
        for i, (p, g) in enumerate(zip(before, grads)):
            g = g + 0.1 * p if i % 2 == 0 else g  # W1, b1, W2, b2: decay on the weights only
            step = g + mu * g if opt.nesterov else g  # v = g after one step
            np.testing.assert_allclose(_host(model.params[i]), p - 0.5 * step, rtol=1e-12, atol=1e-14)


def test_attaching_a_flat_buffer_without_saying_where_the_weights_are_is_refused(backend):
    model = xpnet.MLP([2, 3, 2], backend=backend)
    opt = xpnet.SGD(0.1, weight_decay=0.5)
    with pytest.raises(ValueError, match=r"weight_decay=0.5 would apply to none of these arrays .*decay=\[model.n_weights\]"):
        opt.step([model.flat], [model.flat * 0])
    xpnet.SGD(0.1).step([model.flat], [model.flat * 0])  # no decay asked for: nothing to say


def test_an_unfitted_scale_is_refused_rather_than_skipped(backend):
    X, y = _moons()
    model = xpnet.MLP([2, 4, 2], backend=backend, scale="standard")
    with pytest.raises(ValueError, match=r"MLP\(scale='standard'\) is not fitted yet: call model.prepare\(X, y\)"):
        model.device_data(X * 100, y)
    model.prepare(X * 100, y)
    Xd, _, _ = model.device_data(X * 100, y)
    assert abs(float(_host(Xd).mean())) < 1e-5


def test_identity_outputs_are_returned_as_they_are(backend):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 3)).astype(np.float32)
    Y = np.stack([X[:, 0] + X[:, 1], X[:, 2] * 2], axis=1)
    model = xpnet.MLP([3, 16, 2], output="identity", backend=backend)
    xpnet.fit(model, X, Y, xpnet.Adam(1e-2), epochs=20, batch_size=10, verbose=False)
    out = _host(model.predict(X))
    assert out.shape == (30, 2) and out.dtype.kind == "f"
    np.testing.assert_allclose(out, _host(model.forward(X)))
