"""Hostile .npz files: zip bombs, forged zip directories and deeply nested metadata.

Model files, checkpoints and .npz data are checked against their zip directory (member
names, declared sizes, compression) before any member is decompressed, so a refusal costs
far less memory than the bomb would: tracemalloc sees every allocation by Python, zlib's
output and NumPy, and one test shows it sees the bomb when np.load inflates it. Metadata
nested too deeply is one ValueError (CLI: one line, exit 2), not a RecursionError. The
readers run on the host, so no test here takes a backend fixture.
"""

from __future__ import annotations

import io
import json
import struct
import tracemalloc
import zipfile
import zlib

import numpy as np
import pytest
from cli_helpers import run

import xpnet
from xpnet import data
from xpnet import io as xio

BOMB = 128 * 2**20  # declared bytes of each bomb member; a few hundred kB once deflated
FAR_BELOW = BOMB // 8  # what a refusal may cost at most


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A valid model file, checkpoint and data .npz, and the data they were made from."""
    d = tmp_path_factory.mktemp("valid")
    X, y = xpnet.make_moons(40, seed=0)
    xpnet.MLP([2, 3, 2]).save(d / "model.npz")
    xpnet.fit(xpnet.MLP([2, 5, 2], seed=0), X, y, xpnet.Adam(1e-2), epochs=1, batch_size=16, verbose=False,
              checkpoint=str(d / "ck.npz"))
    np.savez(d / "data.npz", X=X, y=y)
    return {"model": d / "model.npz", "checkpoint": d / "ck.npz", "data": d / "data.npz", "X": X, "y": y}


def _peak(fn):
    """``fn()``'s result, or the ValueError it raised, and the peak of traced memory meanwhile."""
    tracemalloc.start()
    try:
        try:
            result = fn()
        except ValueError as exc:
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _npy_header(shape, dtype=np.float64) -> bytes:
    """A .npy 1.0 header for an array of ``shape`` and ``dtype``."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.dtype(dtype).str, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _vector_header(nbytes: int, dtype=np.float64) -> bytes:
    """The .npy header of a vector whose header and data are ``nbytes`` together."""
    itemsize = np.dtype(dtype).itemsize
    header = _npy_header(((nbytes - len(_npy_header((nbytes,), dtype))) // itemsize,), dtype)
    assert (nbytes - len(header)) % itemsize == 0
    return header


def _rewrite(src, dst, name, size=BOMB, method=zipfile.ZIP_DEFLATED, prefix=None):
    """Copy the .npz ``src`` to ``dst`` with member ``name`` replaced or added: ``prefix`` (a valid
    float64 .npy header by default) followed by zeros up to ``size`` bytes, compressed by ``method``."""
    prefix = _vector_header(size) if prefix is None else prefix
    with zipfile.ZipFile(src) as old, zipfile.ZipFile(dst, "w", compression=method, compresslevel=1) as new:
        for info in old.infolist():
            if info.filename != name:
                new.writestr(info, old.read(info))  # as np.savez wrote it: stored
        with new.open(name, "w") as f:
            f.write(prefix)
            left = size - len(prefix)
            while left > 0:
                f.write(bytes(min(left, 2**20)))
                left -= 2**20
    return dst


def _patch_directory(path, name, *, size=None, packed=None, crc=None):
    """Forge member ``name``'s entry in the zip's central directory: its declared uncompressed
    size, compressed size and CRC-32 (the local header is left as it was)."""
    blob = bytearray(path.read_bytes())
    end = blob.rfind(b"PK\x05\x06")
    pos = struct.unpack("<I", blob[end + 16:end + 20])[0]
    while blob[pos:pos + 4] == b"PK\x01\x02":
        n, m, k = struct.unpack("<HHH", blob[pos + 28:pos + 34])
        if blob[pos + 46:pos + 46 + n].decode() == name:
            for value, at in ((crc, 16), (packed, 20), (size, 24)):
                if value is not None:
                    blob[pos + at:pos + at + 4] = struct.pack("<I", value)
            path.write_bytes(bytes(blob))
            return path
        pos += 46 + n + m + k
    raise AssertionError(f"no member {name!r} in {path}")


def _resume(path):
    X, y = xpnet.make_moons(40, seed=0)
    return xpnet.fit(xpnet.MLP([2, 5, 2], seed=0), X, y, xpnet.Adam(1e-2), epochs=2, batch_size=16,
                     verbose=False, resume=str(path))


# ------------------------------------------------------------------ model files and checkpoints
@pytest.mark.parametrize("member,message", [
    ("extra.npy", r"member 'extra.npy', which this format does not: expected metadata, W<k>, b<k>"),
    ("W1.npy", r"member 'W1.npy' is compressed \(deflate, 134,217,728 bytes declared\): expected stored uncompressed"),
    ("metadata.npy", r"member 'metadata.npy' is compressed \(deflate"),
])
def test_model_file_bomb_is_refused_before_it_inflates(files, tmp_path, member, message):
    bomb = _rewrite(files["model"], tmp_path / "bomb.npz", member)
    assert bomb.stat().st_size < BOMB // 100
    error, peak = _peak(lambda: xpnet.load(bomb))
    assert isinstance(error, ValueError) and error.args[0].startswith(f"path={str(bomb)!r}"), error
    assert len(str(error).splitlines()) == 1
    with pytest.raises(ValueError, match=message):
        raise error
    assert peak < FAR_BELOW, peak


@pytest.mark.parametrize("member,message", [
    ("extra.npy", "member 'extra.npy', which this format does not"),
    ("opt.m.0.npy", r"member 'opt.m.0.npy' is compressed \(deflate"),
    ("position.losses.npy", r"member 'position.losses.npy' is compressed \(deflate"),
])
@pytest.mark.parametrize("loader", [xpnet.load, _resume], ids=["load", "resume"])
def test_checkpoint_bomb_is_refused_before_it_inflates(files, tmp_path, member, message, loader):
    bomb = _rewrite(files["checkpoint"], tmp_path / "ck.npz", member)
    error, peak = _peak(lambda: loader(bomb))
    with pytest.raises(ValueError, match=message):
        raise error
    assert peak < FAR_BELOW, peak


def test_stored_member_that_declares_more_than_it_stores_is_refused(files, tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(files["model"].read_bytes())
    _patch_directory(path, "W1.npy", size=BOMB)
    with pytest.raises(ValueError, match=r"member 'W1.npy' is stored uncompressed but declares 134,217,728 bytes in"):
        xpnet.load(path)
    _patch_directory(path, "W1.npy", packed=BOMB)  # both sizes agree now, but not with the file
    error, peak = _peak(lambda: xpnet.load(path))
    with pytest.raises(ValueError, match=r"declaring 134,21\d,\d{3} bytes of members in a file of [\d,]+ bytes"):
        raise error
    assert peak < FAR_BELOW, peak


def test_metadata_larger_than_the_limit_is_refused_unread(files, tmp_path):
    # stored, as xpnet writes: the file really is this large, but json.loads is never handed it
    big = _rewrite(files["model"], tmp_path / "big.npz", "metadata.npy", size=xio.METADATA_LIMIT + 1024,
                   method=zipfile.ZIP_STORED, prefix=_vector_header(xio.METADATA_LIMIT + 1024, np.uint8))
    error, peak = _peak(lambda: xpnet.load(big))
    with pytest.raises(ValueError, match=r"member 'metadata.npy' declares 67,109,888 bytes: expected at most "
                                         r"67,108,864 \(64.0 MiB\)"):
        raise error
    assert peak < FAR_BELOW, peak


def test_duplicate_members_are_refused(files, tmp_path):
    path = tmp_path / "twice.npz"
    path.write_bytes(files["model"].read_bytes())
    with zipfile.ZipFile(path, "a") as zf, pytest.warns(UserWarning, match="Duplicate name"):
        zf.writestr("W1.npy", b"")
    with pytest.raises(ValueError, match="holds member 'W1.npy' twice"):
        xpnet.load(path)


# ------------------------------------------------------------------ data .npz
def test_data_npz_never_inflates_arrays_other_than_X_and_y(files, tmp_path):
    bomb = _rewrite(files["data"], tmp_path / "d.npz", "extra.npy")
    (X, y), peak = _peak(lambda: data.load_file(bomb))
    np.testing.assert_array_equal(X, files["X"])
    np.testing.assert_array_equal(y, files["y"])
    assert peak < FAR_BELOW, peak
    # the measure is not blind: reading the extra member the way np.load does costs the whole bomb
    with open(bomb, "rb") as f, np.load(f, allow_pickle=False) as npz:
        nbytes, peak = _peak(lambda: npz["extra"].nbytes)
    assert nbytes > BOMB - 1024 and peak >= nbytes


def test_data_X_larger_than_the_memory_available_is_refused_unread(files, tmp_path, monkeypatch):
    bomb = _rewrite(files["data"], tmp_path / "d.npz", "X.npy")
    monkeypatch.setattr(xio, "host_memory", lambda: 64 * 2**20)
    error, peak = _peak(lambda: data.load_file(bomb))
    with pytest.raises(ValueError, match=r"^--data '.*d.npz' members 'y.npy', 'X.npy' declare 128.0 MiB uncompressed: "
                                         r"expected at most the 64.0 MiB of memory available$"):
        raise error
    assert peak < FAR_BELOW, peak


def test_data_member_compressed_without_a_bound_is_refused(files, tmp_path):
    # zipfile inflates bzip2 (and lzma) a whole read at a time, whatever the output
    bomb = _rewrite(files["data"], tmp_path / "d.npz", "X.npy", size=16 * 2**20, method=zipfile.ZIP_BZIP2)
    error, peak = _peak(lambda: data.load_file(bomb))
    with pytest.raises(ValueError, match=r"member 'X.npy' is compressed \(bzip2, 16,777,216 bytes declared\): "
                                         "expected stored or deflated"):
        raise error
    assert peak < 2**20, peak


def test_npy_header_larger_than_its_member_is_refused_before_allocating(files, tmp_path):
    path = tmp_path / "d.npz"
    with zipfile.ZipFile(path, "w") as zf:  # 80 TB said, 64 bytes held
        zf.writestr("X.npy", _npy_header((10**10, 1000)) + np.zeros((4, 2)).tobytes())
    error, peak = _peak(lambda: data.load_file(path))
    with pytest.raises(ValueError, match=r"member 'X.npy' has a .npy header for shape \(10000000000, 1000\) of "
                                         r"float64 \(80,000,000,000,000 bytes\) but declares 64 bytes of data"):
        raise error
    assert peak < 2**20, peak


@pytest.mark.parametrize("crc_matches", [False, True])
def test_member_longer_than_it_declares_is_never_inflated_past_its_size(files, tmp_path, crc_matches):
    """zipfile stops at the declared size: a longer stream fails its CRC-32, or, with a CRC forged
    to match the declared bytes, is simply read no further."""
    X = np.arange(8.0).reshape(4, 2)
    buf = io.BytesIO()
    np.save(buf, X)
    small = buf.getvalue()
    path = _rewrite(files["data"], tmp_path / "d.npz", "X.npy", prefix=small)  # inflates to BOMB bytes
    _patch_directory(path, "X.npy", size=len(small), crc=zlib.crc32(small) if crc_matches else None)
    result, peak = _peak(lambda: data.load_file(path))
    if crc_matches:
        np.testing.assert_array_equal(result[0], X)
    else:
        with pytest.raises(ValueError, match=r"is not a readable .npz file \(BadZipFile: Bad CRC-32 for file 'X.npy'\)"):
            raise result
    assert peak < FAR_BELOW, peak


# ------------------------------------------------------------------ deeply nested metadata
def _with_metadata(files, tmp_path, text: bytes):
    with np.load(files["model"], allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files if k != "metadata"}
    path = tmp_path / "deep.npz"
    np.savez(path, metadata=np.frombuffer(text, np.uint8), **arrays)
    return path


def _nested_in_real_metadata(files, tmp_path, depth: int):
    """The model file with a ``data`` record that takes its metadata to ``depth`` levels."""
    with np.load(files["model"], allow_pickle=False) as npz:
        meta = json.loads(npz["metadata"].tobytes())
    meta["data"] = {"note": json.loads("[" * (depth - 2) + "]" * (depth - 2))}  # 2 levels: metadata, data
    return _with_metadata(files, tmp_path, json.dumps(meta).encode())


@pytest.mark.parametrize("depth,message", [
    (100_000, "has metadata nested too deeply to parse: expected at most 64 levels"),
    (500, "has metadata nested more than 64 levels deep"),  # json parses this: later code must never see it
    (65, "has metadata nested more than 64 levels deep"),
])
def test_deeply_nested_metadata_is_one_value_error(files, tmp_path, depth, message):
    path = _with_metadata(files, tmp_path, b"[" * depth + b"]" * depth)
    with pytest.raises(ValueError, match=message):
        xpnet.load(path)


@pytest.mark.parametrize("depth", [500, 65])
def test_deeply_nested_value_in_real_metadata_is_refused(files, tmp_path, depth):
    with pytest.raises(ValueError, match="has metadata nested more than 64 levels deep"):
        xpnet.load(_nested_in_real_metadata(files, tmp_path, depth))


def test_metadata_nested_64_deep_is_read(files, tmp_path):
    model = xpnet.load(_nested_in_real_metadata(files, tmp_path, 64))
    assert model.data_info == {"note": json.loads("[" * 62 + "]" * 62)}


# ------------------------------------------------------------------ through the command line
def test_cli_refuses_a_bomb_model_in_one_line(files, tmp_path, capsys):
    bomb = _rewrite(files["model"], tmp_path / "bomb.npz", "extra.npy")
    assert run(["evaluate", "--model", str(bomb), "--dataset", "moons"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet: error: ") and len(err.strip().splitlines()) == 1, err
    assert "'extra.npy'" in err and "Traceback" not in err


def test_cli_refuses_deeply_nested_metadata_in_one_line(files, tmp_path, capsys):
    path = _with_metadata(files, tmp_path, b"[" * 100_000 + b"]" * 100_000)
    csv = tmp_path / "some.csv"
    np.savetxt(csv, files["X"], delimiter=",")
    assert run(["predict", "--model", str(path), "--data", str(csv)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xpnet: error: ") and len(err.strip().splitlines()) == 1, err
    assert "nested too deeply" in err and "Traceback" not in err
