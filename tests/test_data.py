"""Data: the IDX reader, generators, user files, and the verified MNIST download
(tested against real HTTP servers on 127.0.0.1: a good mirror, a corrupted one,
a truncating one, and a dead one)."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.server
import socket
import struct
import threading
from pathlib import Path

import numpy as np
import pytest

import xpnet
from xpnet import data


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(data.IDX_DTYPES[code]).tobytes()


# ----------------------------------------------------------------- IDX reader
@pytest.mark.parametrize("code,dtype", [(0x08, np.uint8), (0x0B, np.int16), (0x0D, np.float32), (0x0E, np.float64)])
def test_idx_round_trip(code, dtype):
    a = (np.arange(24).reshape(2, 3, 4) % 7).astype(dtype)
    raw = idx_bytes(a, code)
    for blob in (raw, gzip.compress(raw)):
        out = data.read_idx(blob)
        assert out.shape == (2, 3, 4) and out.dtype == dtype
        np.testing.assert_array_equal(out, a)


@pytest.mark.parametrize("blob,message", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "magic number"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "type code 0x07"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x01", "truncated IDX header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "holds 1 data bytes but its header \\(3,\\) needs 3"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "holds 2 data bytes"),
    (b"\x1f\x8bnot really gzip", "damaged gzip"),
    (b"", "not an IDX file"),
])
def test_idx_reader_refuses_bad_files(blob, message):
    with pytest.raises(ValueError, match=message):
        data.read_idx(blob)


def test_bundled_mnist():
    d = xpnet.load_mnist()
    assert d.X_train.dtype == np.float32 and d.X_train.shape == (8000, 784) and d.X_test.shape == (2000, 784)
    assert 0.0 <= d.X_train.min() and d.X_train.max() <= 1.0
    counts = np.bincount(np.concatenate([d.y_train, d.y_test]))
    assert counts.tolist() == [1001, 1127, 991, 1032, 980, 863, 1014, 1070, 944, 978]  # from the data's README


# ----------------------------------------------------------------- generators
@pytest.mark.parametrize("name", sorted(data.GENERATED))
def test_generators_are_seeded_and_balanced(name):
    a = data.load_dataset(name, seed=3)
    b = data.load_dataset(name, seed=3)
    c = data.load_dataset(name, seed=4)
    np.testing.assert_array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.X_train, c.X_train)
    assert a.X_train.dtype == np.float32 and a.X_train.ndim == 2 and a.n_classes == 2
    y = np.concatenate([a.y_train, a.y_test])
    assert set(np.unique(y)) == {0, 1} and 0.3 < y.mean() < 0.7
    assert len(a.X_test) == round(0.2 * (len(a.X_train) + len(a.X_test)))


def test_unknown_dataset():
    with pytest.raises(ValueError, match="dataset='cifar' is not known: expected one of mnist"):
        data.load_dataset("cifar")


# ----------------------------------------------------------------- user files
def test_load_npz_and_csv(tmp_path):
    X = np.arange(12, dtype=np.float64).reshape(4, 3)
    y = np.array([0, 1, 1, 0])
    np.savez(tmp_path / "d.npz", X=X, y=y)
    X2, y2 = data.load_file(tmp_path / "d.npz")
    np.testing.assert_array_equal(X2, X) and np.testing.assert_array_equal(y2, y)
    rows = "\n".join(",".join(map(str, [*x, t])) for x, t in zip(X, y))
    (tmp_path / "d.csv").write_text("a,b,c,label\n" + rows + "\n")
    X3, y3 = data.load_file(tmp_path / "d.csv")
    np.testing.assert_array_equal(X3, X)
    assert y3.dtype == np.int64 and y3.tolist() == y.tolist()
    (tmp_path / "first.csv").write_text("\n".join(",".join(map(str, [t, *x])) for x, t in zip(X, y)))
    X4, y4 = data.load_file(tmp_path / "first.csv", label_column=0)
    np.testing.assert_array_equal(X4, X) and np.testing.assert_array_equal(y4, y)


@pytest.mark.parametrize("name,content,message", [
    ("a.txt", "1,2", r"suffix '.txt': expected .npz, .csv or .tsv \(or - for a .csv on standard input\)"),
    ("e.csv", "", "is empty"),
    ("h.csv", "a,b\n", "header but no data rows"),
    ("r.csv", "1,2,3\n4,5\n", r"rows of \[2, 3\] columns"),
    ("t.csv", "1,2\n3,x\n", "line 2: '3,x' is not comma-separated numbers"),
    ("n.npz", b"not a zip", "not a readable .npz"),
])
def test_bad_user_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(ValueError, match=message):
        data.load_file(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        data.load_file(tmp_path / "nope.csv")
    with pytest.raises(ValueError, match="is a directory"):
        data.load_file(tmp_path)
    np.savez(tmp_path / "noX.npz", y=np.zeros(3))
    with pytest.raises(ValueError, match=r"has arrays \['y'\]: expected 'X'"):
        data.load_file(tmp_path / "noX.npz")


# -------------------------------------------------------- MNIST download
def _mnist_files(directory: Path) -> dict[str, str]:
    """Small but real IDX files under the official names; returns name -> md5."""
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (12, 28, 28)),
        "train-labels-idx1-ubyte.gz": np.arange(12) % 10,
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)),
        "t10k-labels-idx1-ubyte.gz": np.arange(5) % 10,
    }
    sums = {}
    for name, a in arrays.items():
        blob = gzip.compress(idx_bytes(a))
        (directory / name).write_bytes(blob)
        sums[name] = hashlib.md5(blob).hexdigest()
    return sums


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class _Truncating(_Quiet):
    """Promises the whole file, sends half of it, and hangs up."""

    def do_GET(self):
        body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2])


@contextlib.contextmanager
def _serve(directory: Path, handler=_Quiet):
    """An HTTP server on 127.0.0.1 for the life of the block; yields its base URL."""

    def make(*args, **kwargs):
        return handler(*args, directory=str(directory), **kwargs)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), make)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    monkeypatch.setattr(data, "MNIST_FILES", _mnist_files(served))
    monkeypatch.delenv("XPNET_MIRROR", raising=False)
    monkeypatch.delenv("XPNET_DATA_DIR", raising=False)
    return served


def test_good_mirror_downloads_once_and_caches(tmp_path, mirror):
    cache = tmp_path / "cache"
    with _serve(mirror) as url:
        d = data.load_mnist_full(cache, url)
        assert d.X_train.shape == (12, 784) and d.X_test.shape == (5, 784) and d.X_train.dtype == np.float32
        assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(data.MNIST_FILES)
    again = data.load_mnist_full(cache, url)  # the server is gone: this must come from the cache
    np.testing.assert_array_equal(again.X_test, d.X_test)


def test_corrupted_mirror_is_refused_and_nothing_cached(tmp_path, mirror):
    (mirror / "train-labels-idx1-ubyte.gz").write_bytes(b"tampered")
    with _serve(mirror) as url:
        with pytest.raises(ValueError, match=r"labels-idx1-ubyte.gz is corrupted: MD5 \w+, expected \w+; nothing was cached"):
            data.load_mnist_full(tmp_path / "cache", url)
    cached = {p.name for p in (tmp_path / "cache" / "mnist").iterdir()}
    assert "train-labels-idx1-ubyte.gz" not in cached and not any(n.endswith(".part") for n in cached)


def test_truncated_download_is_refused(tmp_path, mirror):
    with _serve(mirror, _Truncating) as url:
        with pytest.raises(ValueError, match="truncated.*nothing was cached"):
            data.load_mnist_full(tmp_path / "cache", url)
    assert list((tmp_path / "cache" / "mnist").iterdir()) == []


def test_dead_mirror_says_where_to_put_the_files(tmp_path, mirror, monkeypatch):
    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("XPNET_MIRROR", f"http://127.0.0.1:{port}/")
    monkeypatch.setenv("XPNET_DATA_DIR", str(tmp_path / "env-cache"))
    with pytest.raises(ValueError, match=r"could not download .*offline, put train-images-idx3-ubyte.gz.* in .*env-cache"):
        data.load_mnist_full()


def test_bad_cached_file_is_reported(tmp_path, mirror):
    cache = tmp_path / "cache" / "mnist"
    cache.mkdir(parents=True)
    (cache / "train-images-idx3-ubyte.gz").write_bytes(b"bitrot")
    with pytest.raises(ValueError, match="fails its MD5 check.*delete it"):
        data.load_mnist_full(tmp_path / "cache", "http://127.0.0.1:9/")


@pytest.mark.parametrize("n", [2, 3, 4])
def test_small_splits_keep_a_row_on_each_side(n):
    X, y = np.arange(2 * n, dtype=np.float32).reshape(n, 2), np.arange(n) % 2
    d = data.split(X, y, 0.2, "tiny", 2, 0)
    assert len(d.X_test) >= 1 and len(d.X_train) >= 1 and len(d.X_test) + len(d.X_train) == n
