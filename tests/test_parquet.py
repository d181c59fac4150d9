"""Parquet and Feather data files through pyarrow (the ``parquet`` extra): columns chosen as in a
.csv, text columns as labels only, missing values named by row and column, and one line naming
the package when pyarrow is missing."""

from __future__ import annotations

import hashlib
import sys

import numpy as np
import pytest
from cli_helpers import last_json, run

import xpnet
from xpnet.data import load_file

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
feather = pytest.importorskip("pyarrow.feather")

SUFFIXES = (".parquet", ".feather")


def write(path, columns: dict, pandas_index: bool = False):
    """A table of ``columns`` (name -> list or array) as ``path``'s suffix says; with ``pandas_index``,
    an index column as pandas' to_parquet() writes one (``__index_level_0__``, named in the metadata)."""
    table = pa.table(columns)
    if pandas_index:
        table = table.append_column("__index_level_0__", pa.array(np.arange(table.num_rows) + 100))
        meta = b'{"index_columns": ["__index_level_0__"], "column_indexes": [], "columns": []}'
        table = table.replace_schema_metadata({b"pandas": meta})
    if path.suffix == ".parquet":
        pq.write_table(table, path, row_group_size=7)  # several row groups: rows are counted across them
    else:
        feather.write_feather(table, path, chunksize=7)
    return path


@pytest.fixture(params=SUFFIXES)
def suffix(request):
    return request.param


def table(n: int = 30) -> dict:
    rng = np.random.default_rng(0)
    return {"a": rng.normal(size=n), "b": rng.integers(0, 5, n), "c": rng.normal(size=n).astype(np.float32),
            "flag": rng.integers(0, 2, n).astype(bool), "label": rng.integers(0, 3, n)}


def test_label_column_as_in_a_csv(tmp_path, suffix):
    columns = table()
    path = write(tmp_path / f"d{suffix}", columns)
    X, y = load_file(path)  # default: the last column
    expected = np.column_stack([columns["a"], columns["b"], columns["c"].astype(np.float64), columns["flag"]])
    np.testing.assert_array_equal(X, expected)
    assert X.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(y, columns["label"])
    X, y = load_file(path, "a")
    assert X.shape == (30, 4) and y.dtype == np.float64
    np.testing.assert_array_equal(y, columns["a"])
    X, y = load_file(path, 1)
    np.testing.assert_array_equal(y, columns["b"])
    X, y = load_file(path, None)
    assert y is None and X.shape == (30, 5)


def test_several_label_columns_and_ranges(tmp_path, suffix):
    rng = np.random.default_rng(1)
    columns = {"x1": rng.normal(size=12), "x2": rng.normal(size=12), "cat": rng.integers(0, 2, 12), "dog": rng.integers(0, 2, 12)}
    path = write(tmp_path / f"m{suffix}", columns)
    names: list = []
    X, y = load_file(path, "cat:dog", label_names=names)
    assert names == ["cat", "dog"] and y.shape == (12, 2) and y.dtype == np.int64 and X.shape == (12, 2)
    X2, y2 = load_file(path, ["cat", -1])
    np.testing.assert_array_equal(y2, y)
    np.testing.assert_array_equal(load_file(path, "2:3")[1], y)
    with pytest.raises(ValueError, match=r"--label-column 'dog:cat': the range ends \(column 2\) before it starts"):
        load_file(path, "dog:cat")
    with pytest.raises(ValueError, match="takes all 4 columns"):
        load_file(path, "x1:dog")
    with pytest.raises(ValueError, match="names column 'cat' twice"):
        load_file(path, ["cat", 2])


def test_text_column_is_labels_not_features(tmp_path, suffix):
    path = write(tmp_path / f"iris{suffix}", {"w": [1.0, 2.0, 3.0, 4.0], "species": ["setosa", " versicolor", "setosa", "x"],
                                              "h": [0.5, 0.1, 0.2, 0.3]})
    notes: list = []
    X, y = load_file(path, "species", notes=notes)
    assert y.tolist() == ["setosa", "versicolor", "setosa", "x"] and X.shape == (4, 2)
    assert notes == ["the labels (column 'species') are text: y holds strings"]
    with pytest.raises(ValueError, match=r"column 'species' holds text \((large_)?string\): a text column is labels, not "
                                         r"a feature: expected numbers, or --label-column 'species'"):
        load_file(path)  # the last column, 'h', is the label: 'species' would be a feature
    with pytest.raises(ValueError, match="column 'species' holds text"):
        load_file(path, None)  # features only (predict)


def test_category_labels(tmp_path, suffix):
    species = pa.array(["a", "b", "a", "b"]).dictionary_encode()  # pandas' category dtype
    path = write(tmp_path / f"c{suffix}", {"x": [1.0, 2.0, 3.0, 4.0], "species": species})
    assert load_file(path)[1].tolist() == ["a", "b", "a", "b"]


@pytest.mark.parametrize("value,message", [
    (None, r"row 10: column 'b' is missing \(null\): expected a number in every row"),
    (float("nan"), r"row 10: column 'b' is NaN \(a missing value\): expected a number in every row"),
])
def test_missing_feature_names_its_row_and_column(tmp_path, suffix, value, message):
    b = [float(v) for v in range(20)]
    b[9] = value
    path = write(tmp_path / f"n{suffix}", {"a": np.ones(20), "b": pa.array(b, pa.float64()), "y": np.arange(20) % 2})
    with pytest.raises(ValueError, match=rf"--data '{path}' {message}$"):
        load_file(path)


@pytest.mark.parametrize("label,message", [
    ([None, "a", "b"], r"row 1: the label \(column 'y'\) is missing \(null\): every row needs a label"),
    (["a", " ", "b"], r"row 2: the label \(column 'y'\) is empty: every row needs a label"),
    (["a", "b", "c\td"], r"row 3: the label 'c\\td' \(column 'y'\) holds a control character \(U\+0009\)"),
])
def test_bad_text_labels(tmp_path, suffix, label, message):
    path = write(tmp_path / f"t{suffix}", {"x": [1.0, 2.0, 3.0], "y": label})
    with pytest.raises(ValueError, match=message):
        load_file(path)


def test_pandas_index_is_dropped(tmp_path, suffix):
    path = write(tmp_path / f"i{suffix}", {"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}, pandas_index=True)
    notes: list = []
    X, y = load_file(path, notes=notes)  # the last column is 'y', not the index after it
    assert X.tolist() == [[1.0], [2.0], [3.0]] and y.tolist() == [0, 1, 0]
    assert notes == ["dropped column '__index_level_0__': pandas' row index, not a feature"]


def test_other_types_and_damaged_files_are_refused(tmp_path, suffix):
    path = write(tmp_path / f"l{suffix}", {"x": pa.array([[1.0], [2.0]]), "y": [0, 1]})
    with pytest.raises(ValueError, match=r"column 'x' has type list<\w+: double>: expected numbers \(features\) or text"):
        load_file(path)
    broken = tmp_path / f"broken{suffix}"
    broken.write_bytes(b"a,b\n1,2\n")
    kind = "Parquet" if suffix == ".parquet" else "Feather"
    with pytest.raises(ValueError, match=rf"--data '{broken}' cannot be read as a {kind} file \("):
        load_file(broken)
    with pytest.raises(ValueError, match=rf"--delimiter ';' is for .csv files, and --data '.*' is \{suffix}: leave it out"):
        load_file(path, delimiter=";")
    with pytest.raises(ValueError, match=r"--label-column 'z' is not a column of .*: its columns are 'x', 'y'"):
        load_file(path, "z")


def test_without_pyarrow_one_line_names_the_package(tmp_path, suffix, monkeypatch, capsys):
    path = write(tmp_path / f"d{suffix}", table())
    for name in [m for m in sys.modules if m == "pyarrow" or m.startswith("pyarrow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow raises ImportError
    kind = "Parquet" if suffix == ".parquet" else "Feather"
    hint = 'pip install "pyarrow>=15" (from a checkout, pip install ".[parquet]")'
    with pytest.raises(ValueError, match=rf"is a {kind} file: reading it needs pyarrow: {hint}".replace("(", r"\(")
                       .replace(")", r"\)").replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_file(path)
    assert run(["train", "--data", str(path), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and hint in err[0] and "Traceback" not in err[0]


def test_train_and_evaluate_a_parquet_file(tmp_path, suffix, capsys):
    columns = table(60)
    path = write(tmp_path / f"d{suffix}", columns)
    model = tmp_path / "m.npz"
    assert run(["train", "--data", str(path), "--epochs", "2", "--layers", "4,8,3", "--seed", "1", "--json",
                "--save", str(model)]) == 0
    trained = last_json(capsys.readouterr().out)
    record = xpnet.load(model).data_info
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and record["file"] == path.name
    assert run(["evaluate", "--model", str(model), "--data", str(path), "--split", "test", "--json"]) == 0
    again = last_json(capsys.readouterr().out)
    assert again["test_accuracy"] == pytest.approx(trained["test_accuracy"])
    features = write(tmp_path / f"f{suffix}", {k: v for k, v in columns.items() if k != "label"})
    assert run(["predict", "--model", str(model), "--data", str(features)]) == 0
    from_features = capsys.readouterr().out.split()
    assert len(from_features) == 60
    assert run(["predict", "--model", str(model), "--data", str(path)]) == 0  # the label column is dropped
    assert capsys.readouterr().out.split() == from_features
