"""The CSV bulk parse through pandas' C parser (xpnet.csvfile.PARSER): the same arrays, notes,
errors and SHA-256 as np.loadtxt's path, whatever the file; np.loadtxt decides wherever pandas
would read something it does not."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from xpnet import csvfile
from xpnet.data import load_file

pytest.importorskip("pandas")
READ_PANDAS = csvfile._read_pandas


def read(path, parser: str, monkeypatch, **kw):
    """``(X, y, notes, sha256, pandas_used)`` of load_file on ``parser``'s path, or the error's text."""
    used = []

    def spy(*args):
        table = READ_PANDAS(*args)
        used.append(table is not None)
        return table

    monkeypatch.setattr(csvfile, "PARSER", parser)
    monkeypatch.setattr(csvfile, "_read_pandas", spy)
    notes: list = []
    identity: dict = {}
    try:
        X, y = load_file(path, notes=notes, identity=identity, **kw)
    except ValueError as exc:
        return str(exc), used
    return (X, y, notes, identity["sha256"]), used


def same(path, monkeypatch, **kw) -> list:
    """Both paths' results, checked equal (bit for bit); what pandas did on its path."""
    old, none = read(path, "numpy", monkeypatch, **kw)
    new, used = read(path, "pandas", monkeypatch, **kw)
    assert none == []
    if isinstance(old, str):
        assert new == old
    else:
        assert not isinstance(new, str), new
        for a, b in zip(old[:2], new[:2]):
            assert (a is None and b is None) or (
                a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"))
        assert new[2:] == old[2:]
        assert new[3] == hashlib.sha256(path.read_bytes()).hexdigest()
    return used


def numbers(rows: int = 40, cols: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((rows, cols)) * 10.0 ** rng.integers(-20, 20, (rows, cols))


@pytest.mark.parametrize("name,text", [
    ("plain", "a,b,label\n" + "".join(f"{v:.17g},{-v:.6f},{int(v * 9) % 3}\n" for v in numbers(40, 1)[:, 0])),
    ("no header", "".join(f"{v:.17g},{v * 2:.3e},1\n" for v in numbers(40, 1)[:, 0])),
    ("bom, comments, blank lines", "\ufeff# made by hand\nx,y,label\n1,2,0\n\n3,4,1 # a comment\n# more\n5,6,0\n"),
    ("crlf", "x,y,label\r\n1,2,0\r\n3,4,1\r\n"),
    ("old mac", "x,y,label\r1,2,0\r3,4,1\r"),
    ("semicolons", "x;y;label\n1,5;2;0\n3;4,25;1\n-1,5e3;0;1\n"),
    ("tabs", "x\ty\tlabel\n1\t2\t0\n3\t4\t1\n"),
    ("spaces", "1.0 2.0 0\n  3.0   4.0 1\n5 6 0\n"),
    ("pandas index", ",x,label\n0,1.5,0\n1,2.5,1\n2,3.5,0\n"),
    ("quoted", '"x","y","label"\n"1","2",0\n3,"4",1\n'),
    ("inf and big", "x,y,label\ninf,1e400,0\n-Infinity,123456789012345678901,1\n+1.,.5,0\n"),
    ("text labels", "x,y,species\n1,2,setosa\n3,4, virginica\n5,6,setosa\n"),
])
def test_both_paths_read_files_alike(tmp_path, monkeypatch, name, text):
    path = tmp_path / "d.csv"
    path.write_bytes(text.encode())
    assert same(path, monkeypatch) == [True]  # pandas read it: no fallback


@pytest.mark.parametrize("name,text", [
    ("nan", "x,y,label\n1,nan,0\n3,4,1\n"),
    ("NA", "x,y,label\n1,NA,0\n3,4,1\n"),
    ("empty field", "x,y,label\n1,,0\n3,4,1\n"),
    ("short row", "x,y,label\n1,2,0\n3,4\n"),
    ("long row", "x,y,label\n1,2,0\n3,4,1,5\n"),
    ("word", "x,y,label\n1,2,0\n3,four,1\n"),
    ("underscore", "x,y,label\n1,2,0\n3,1_0,1\n"),
    ("true", "x,y,label\n1,2,0\nTrue,4,1\n"),
    ("not utf-8 in a comment", b"x,y,label\n1,2,0 # caf\xe9\n3,4,1\n"),
    ("decimal point among commas", "x;y;label\n1,5;2;0\n3.5;4;1\n"),
    ("no data rows", "x,y,label\n# nothing\n"),
    ("indented comment", "x,y,label\n1,2,0\n   # note\n3,4,1\n"),
])
def test_pandas_leaves_np_loadtxt_to_decide(tmp_path, monkeypatch, name, text):
    path = tmp_path / "d.csv"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    assert True not in same(path, monkeypatch)


def test_trailing_delimiter_files_take_np_loadtxt(tmp_path, monkeypatch):
    path = tmp_path / "d.csv"
    path.write_text("x,y,label,\n1,2,0,\n3,4,1,\n")
    assert same(path, monkeypatch) == []  # never handed to pandas: a missing trailing field reads as missing


def test_chunks_grow_the_array_and_a_late_failure_hashes_once(tmp_path, monkeypatch):
    """Long rows first make the first guess of the row count too small: the array grows in place.
    A bad value after several chunks falls back with the digest fed each byte exactly once."""
    monkeypatch.setattr(csvfile, "_CHUNK_CELLS", 250)  # 50 rows of 5
    long = numbers(100, 4, 1)
    lines = [",".join(f"{v:.17g}" for v in row) + ",1" for row in long] + ["0,0,0,0,2"] * 900
    path = tmp_path / "d.csv"
    path.write_text("\n".join(lines) + "\n")
    assert same(path, monkeypatch) == [True]
    lines[700] = "0,x,0,0,2"
    path.write_text("\n".join(lines) + "\n")
    assert same(path, monkeypatch) == [False]
    message = f"--data '{path}' line 701: '0,x,0,0,2' is not comma-separated numbers ('x' in column 2)"
    assert read(path, "pandas", monkeypatch)[0] == message


def test_label_choices_and_multilabel(tmp_path, monkeypatch):
    path = tmp_path / "d.csv"
    path.write_text("a,b,c,d\n" + "".join(f"{i * 0.5},{i % 2},{(i + 1) % 2},{i}\n" for i in range(30)))
    for label in (0, "b", ["b", "c"], "b:c", None):
        assert True in same(path, monkeypatch, label_column=label)


def test_auto_uses_pandas_for_large_files_or_once_imported(tmp_path, monkeypatch):
    path = tmp_path / "d.csv"
    path.write_text("x,label\n1,0\n2,1\n")
    monkeypatch.setattr(csvfile, "PARSER", "auto")
    assert csvfile._pandas(path) is not None  # imported already (by this module): nothing to pay
    monkeypatch.delitem(csvfile.sys.modules, "pandas")  # as if not imported: a small file is left to np.loadtxt
    assert csvfile._pandas(path) is None
    monkeypatch.setattr(csvfile, "PARSER", "numpy")
    monkeypatch.setattr(csvfile, "PANDAS_BYTES", 1)
    assert csvfile._pandas(path) is None


def test_random_damage_reads_alike(tmp_path, monkeypatch):
    """Bytes inserted, deleted or replaced anywhere in a valid file: both paths give the same array,
    or the same error."""
    rng = np.random.default_rng(7)
    base = ("x,y,z,label\n" + "".join(f"{a:.4g},{b:.3f},{int(c)},{i % 3}\n" for i, (a, b, c) in
                                      enumerate(numbers(30, 3, 2)))).encode()
    alphabet = b'0123456789.,;-+eE \t\n\r#"xna\xef\xbb\xbf\xe9'
    path = tmp_path / "d.csv"
    for _ in range(150):
        data = bytearray(base)
        for _ in range(int(rng.integers(1, 4))):
            at, byte = int(rng.integers(0, len(data))), alphabet[int(rng.integers(0, len(alphabet)))]
            kind = rng.integers(0, 3)
            if kind == 0:
                data.insert(at, byte)
            elif kind == 1:
                del data[at]
            else:
                data[at] = byte
        path.write_bytes(bytes(data))
        same(path, monkeypatch)
