"""Model files: round trips across backends, atomic writes, refusal of bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest

import xpnet


def _model(backend, **kw):
    return xpnet.MLP([4, 6, 3], activation="tanh", backend=backend, seed=2, **kw)


def test_save_on_backend_load_anywhere(backend, tmp_path):
    X = np.random.default_rng(0).normal(size=(5, 4))
    model = _model(backend)
    path = tmp_path / "m.npz"
    model.save(path)
    for target in (backend, xpnet.get_backend("numpy")):
        loaded = xpnet.load(path, backend=target)
        assert loaded.config() == model.config() and loaded.backend is target
        np.testing.assert_array_equal(xpnet.to_numpy(loaded.forward(X)), xpnet.to_numpy(model.forward(X)))
    cpu_file = tmp_path / "cpu.npz"
    xpnet.load(path).save(cpu_file)  # saved from the CPU, loaded back onto the backend
    again = xpnet.load(cpu_file, backend=backend)
    for a, b in zip(again.params, model.params):
        np.testing.assert_array_equal(xpnet.to_numpy(a), xpnet.to_numpy(b))


def test_file_is_plain_arrays_and_json(backend, tmp_path):
    path = tmp_path / "m.npz"
    _model(backend, dtype="float64").save(path)
    with np.load(path, allow_pickle=False) as npz:
        assert sorted(npz.files) == ["W1", "W2", "b1", "b2", "metadata"]
        meta = json.loads(npz["metadata"].tobytes())
    assert meta["sizes"] == [4, 6, 3] and meta["dtype"] == "float64" and meta["activation"] == "tanh"
    assert meta["xpnet_version"] == xpnet.__version__ and meta["format"] == "xpnet-model"


def test_failed_write_leaves_the_old_file_alone(backend, tmp_path, monkeypatch):
    path = tmp_path / "m.npz"
    _model(backend).save(path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(OSError, match="disk full"):
        _model(backend, init="small").save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temp file left behind


def _rewrite(path, tmp_path, **changes):
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    out = tmp_path / "bad.npz"
    np.savez(out, **arrays)
    return out


def _meta(**changes):
    meta = {"format": "xpnet-model", "format_version": 1, "sizes": [4, 6, 3], "activation": "tanh",
            "output": "softmax", "loss": "cross_entropy", "init": "xavier", "dtype": "float32", "seed": 2}
    meta.update(changes)
    return np.frombuffer(json.dumps(meta).encode(), np.uint8)


@pytest.mark.parametrize("changes,message", [
    ({"W1": np.zeros((4, 5), np.float32)}, "W1 has shape"),
    ({"W1": np.zeros((4, 6), np.float64)}, "W1 has shape .* dtype float64"),
    ({"b2": None}, "missing \\['b2'\\]"),
    ({"W9": np.zeros(2, np.float32)}, "unexpected \\['W9'\\]"),
    ({"metadata": None}, "no metadata"),
    ({"metadata": np.frombuffer(b"{not json", np.uint8)}, "not JSON"),
    ({"metadata": _meta(format="other")}, "not an xpnet model"),
    ({"metadata": _meta(activation="swish")}, "activation='swish'"),
    ({"metadata": _meta(sizes=[4, 0, 3])}, "sizes="),
    ({"b1": np.full(6, np.nan, np.float32)}, "NaN"),
    ({"metadata": np.array(["text"])}, "malformed metadata"),
])
def test_bad_model_files_are_refused(backend, tmp_path, changes, message):
    path = tmp_path / "m.npz"
    _model(backend).save(path)
    bad = _rewrite(path, tmp_path, **changes)
    with pytest.raises(ValueError, match=message):
        xpnet.load(bad, backend=backend)


def test_pickled_object_is_refused_not_run(host_backend, tmp_path):
    path = tmp_path / "pickle.npz"
    np.savez(path, metadata=np.array([{"boom": 1}], dtype=object))
    with pytest.raises(ValueError, match="not a readable .npz"):
        xpnet.load(path, backend=host_backend)


@pytest.mark.parametrize("content", [b"", b"garbage" * 10, b"PK\x03\x04truncated"])
def test_garbage_files_are_refused(host_backend, tmp_path, content):
    path = tmp_path / "g.npz"
    path.write_bytes(content)
    with pytest.raises(ValueError, match="path="):
        xpnet.load(path, backend=host_backend)


def test_truncated_file_is_refused(backend, tmp_path):
    path = tmp_path / "m.npz"
    _model(backend).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError):
        xpnet.load(path, backend=backend)


def test_missing_file_and_directory(backend, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        xpnet.load(tmp_path / "nope.npz", backend=backend)
    with pytest.raises(ValueError, match="is a directory"):
        xpnet.load(tmp_path, backend=backend)
    with pytest.raises(ValueError, match="is a directory"):
        _model(backend).save(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        _model(backend).save(tmp_path / "no" / "m.npz")
