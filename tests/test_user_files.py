"""User data as people have it (issue 12): CSVs from spreadsheets, pandas, R and np.savetxt,
and .npz files holding images or one-hot labels. Every case is a real file in tmp_path; the
loaders run on the host, so the backend fixture only puts each test in the matrix."""

from __future__ import annotations

import re

import numpy as np
import pytest

from xpnet import csvfile
from xpnet.data import load_file


def write(tmp_path, name: str, text: str | bytes):
    """``text`` byte for byte (no newline translation), as a file in ``tmp_path``."""
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def load(path, *args, **kwargs):
    """load_file with a notes list; returns (X, y, notes)."""
    notes = []
    X, y = load_file(path, *args, notes=notes, **kwargs)
    return X, y, notes


ROWS = "".join(f"{i / 4},{i % 3},{i % 2}\n" for i in range(80))  # 80 rows: two features, a 0/1 label


# ------------------------------------------------------------------ BOM and header
def test_bom_keeps_every_row(tmp_path):
    X, y, notes = load(write(tmp_path, "bom.csv", "\ufeff" + ROWS))
    assert X.shape == (80, 2) and X[0].tolist() == [0.0, 0.0] and y.dtype == np.int64
    assert notes == ["removed the UTF-8 byte-order mark (BOM) at the start of the file"]
    X, y, notes = load(write(tmp_path, "bomh.csv", "\ufeffa,b,label\n" + ROWS))
    assert X.shape == (80, 2) and len(notes) == 2 and notes[1] == "line 1 is a header: a, b, label"


def test_plain_file_has_no_notes(tmp_path):
    X, y, notes = load(write(tmp_path, "plain.csv", ROWS))
    assert X.shape == (80, 2) and notes == []
    X2, y2 = load_file(write(tmp_path, "plain.csv", ROWS), -1)  # the old signature
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)


@pytest.mark.parametrize("header,names", [
    ("x1,x2,label\n", "x1, x2, label"),
    ("0,1,label\n", "0, 1, label"),  # pandas' default column names, and a named label
    ('"x 1","x 2","label"\n', "x 1, x 2, label"),
])
def test_header_is_found_by_content(tmp_path, header, names):
    X, y, notes = load(write(tmp_path, "h.csv", header + ROWS))
    assert X.shape == (80, 2) and notes == [f"line 1 is a header: {names}"]


def test_header_after_comments_and_blank_lines(tmp_path):
    X, y, notes = load(write(tmp_path, "c.csv", "# exported 2026-01-01\n\na,b,label\n" + ROWS))
    assert X.shape == (80, 2) and notes == ["line 3 is a header: a, b, label"]


# ------------------------------------------------------------------ index columns
@pytest.mark.parametrize("first", ["", "Unnamed: 0"])
def test_pandas_index_column_is_dropped(tmp_path, first):
    rows = "".join(f"{i},{i / 4},{i % 3},{i % 2}\n" for i in range(80))
    X, y, notes = load(write(tmp_path, "p.csv", f"{first},a,b,label\n" + rows))
    assert X.shape == (80, 2) and X[3].tolist() == [0.75, 0.0] and y.tolist()[:3] == [0, 1, 0]
    assert notes[-1] == "dropped the unnamed first column: it holds the row numbers (a pandas or R index), not a feature"
    X0, y0, _ = load(write(tmp_path, "p.csv", f"{first},a,b,label\n" + rows), 0)  # indices count the columns kept
    np.testing.assert_array_equal(X0, np.column_stack([X[:, 1], y]))
    np.testing.assert_array_equal(y0, X[:, 0])
    Xn, yn, _ = load(tmp_path / "p.csv", None)
    assert Xn.shape == (80, 3) and yn is None


def test_r_style_row_names_are_dropped(tmp_path):
    # write.csv(df) in R: quoted row names, and one name fewer in the header than fields in a row
    rows = "".join(f'"{i + 1}",{i / 4},{i % 3},{i % 2}\n' for i in range(80))
    X, y, notes = load(write(tmp_path, "r.csv", '"a","b","label"\n' + rows))
    assert X.shape == (80, 2) and X[1].tolist() == [0.25, 1.0] and "dropped the unnamed first column" in notes[-1]


def test_unnamed_column_of_reals_is_a_feature(tmp_path):
    X, y, notes = load(write(tmp_path, "u.csv", ",b,label\n0.5,1,0\n1.5,2,1\n"))
    assert X.tolist() == [[0.5, 1.0], [1.5, 2.0]] and y.tolist() == [0, 1] and len(notes) == 1


# ------------------------------------------------------------------ quotes, delimiters, comments
def test_quoted_values(tmp_path):
    X, y, notes = load(write(tmp_path, "q.csv", '"1.5","2","0"\n"3",4,"1"\n'))
    assert X.tolist() == [[1.5, 2.0], [3.0, 4.0]] and y.tolist() == [0, 1] and notes == []


def test_semicolons_with_decimal_commas(tmp_path):
    path = write(tmp_path, "s.csv", "a;b;label\n1,5;2,0;1\n3;4,25;0\n-0,5;1e3;1\n")
    X, y, notes = load(path)
    assert X.tolist() == [[1.5, 2.0], [3.0, 4.25], [-0.5, 1000.0]] and y.tolist() == [1, 0, 1]
    assert notes == ["fields are separated by semicolons (a comma is the decimal mark)", "line 1 is a header: a, b, label"]
    X2, _, notes2 = load(path, delimiter=";")  # given, not detected: no note about it
    np.testing.assert_array_equal(X2, X)
    assert notes2 == notes[1:]


@pytest.mark.parametrize("sep,note", [("\t", "tabs"), ("  ", "runs of spaces")])
def test_tabs_and_spaces(tmp_path, sep, note):
    X, y, notes = load(write(tmp_path, "t.csv", ROWS.replace(",", sep)))
    assert X.shape == (80, 2) and notes == [f"fields are separated by {note}"]


def test_comments_blank_and_all_space_lines(tmp_path):
    text = "# made by hand\na,b,label  # names\n\n1,2,0 # first\n   # indented\n   \n\t\n3,4,1\n# end\n"
    X, y, notes = load(write(tmp_path, "c.csv", text))
    assert X.tolist() == [[1.0, 2.0], [3.0, 4.0]] and y.tolist() == [0, 1]


@pytest.mark.parametrize("ending", ["\r\n", "\r"])
def test_windows_and_old_mac_line_ends(tmp_path, ending):
    X, y, _ = load(write(tmp_path, "e.csv", ("a,b,label\n" + ROWS).replace("\n", ending)))
    assert X.shape == (80, 2)
    with pytest.raises(ValueError, match=r"line 4: '1,x,0' is not comma-separated numbers"):
        load_file(write(tmp_path, "e.csv", ending.join(["a,b,label", "1,2,0", "", "1,x,0", ""])))


# ------------------------------------------------------------------ labels
def test_label_by_name_and_by_index(tmp_path):
    path = write(tmp_path, "n.csv", "label,a,b\n1,0.5,2\n0,1.5,3\n")
    for label in ("label", 0, -3):
        X, y, _ = load(path, label)
        assert X.tolist() == [[0.5, 2.0], [1.5, 3.0]] and y.tolist() == [1, 0] and y.dtype == np.int64
    X, y, _ = load(path, "b")
    assert X.tolist() == [[1.0, 0.5], [0.0, 1.5]] and y.tolist() == [2, 3]


def test_label_name_from_np_savetxt_comment_header(tmp_path):
    path = tmp_path / "s.csv"
    np.savetxt(path, np.array([[1.0, 0.0, 2.0], [3.0, 1.0, 4.0]]), delimiter=",", header="a,label,b")  # "# a,label,b"
    X, y, notes = load(path, "label")
    assert X.tolist() == [[1.0, 2.0], [3.0, 4.0]] and y.tolist() == [0, 1] and notes == []


def test_text_labels_come_back_as_strings(tmp_path):
    text = 'sl,sw,species\n5.1,3.5,setosa\n4.9,3.0, versicolor \n6.3,3.3,"virginica"\n'
    X, y, notes = load(write(tmp_path, "iris.csv", text))
    assert X.tolist() == [[5.1, 3.5], [4.9, 3.0], [6.3, 3.3]]
    assert y.dtype.kind == "U" and y.tolist() == ["setosa", "versicolor", "virginica"]
    assert notes[-1] == "the labels (column 'species') are text: y holds strings"
    X, y, notes = load(write(tmp_path, "noh.csv", "setosa,5.1\nversicolor,4.9\n"), 0)
    assert X.tolist() == [[5.1], [4.9]] and y.tolist() == ["setosa", "versicolor"]
    assert notes == ["the labels (column 1) are text: y holds strings"]


def test_real_valued_labels_stay_float(tmp_path):
    X, y, _ = load(write(tmp_path, "r.csv", "a,t\n1,0.5\n2,-1.25\n3,2\n"))
    assert y.dtype == np.float64 and y.tolist() == [0.5, -1.25, 2.0]


# ------------------------------------------------------------------ errors name the real line
@pytest.mark.parametrize("text,message", [
    ("1,2\n3,x\n", r"--data '.*t.csv' line 2: '3,x' is not comma-separated numbers \('x' in column 2\)"),
    ("# c\na,b\n1,2\n\n1,2\n# x\n3,x\n4,5\n", r"line 7: '3,x' is not comma-separated numbers"),
    ("\ufeff1,2\n3,4\n5,\n", r"line 3: '5,' is not comma-separated numbers \('' in column 2\)"),
    ("a,b,c\n1,2,3\n4,5\n", r"has rows of \[2, 3\] columns: line 3 '4,5' has 2 where line 2 has 3"),
    ("a;b;c\n1,5;2;0\n3;x,5;1\n", r"line 3: '3;x,5;1' is not semicolon-separated numbers \('x,5' in column 2\)"),
    ("a,b\n" + "1,2\n" * 1000 + "3,oops\n", r"line 1002: '3,oops' is not comma-separated numbers"),
    ("a,b\n" + "1,2\n" * 1000 + "3\n", r"rows of \[1, 2\] columns: line 1002 '3' has 1 where line 2 has 2"),
    (b"a,b\n1,2\n3,\xff\n", r"line 3 is not UTF-8 text"),
    ("a,b\nc,d\n1,2\n", r"line 2: 'c,d' is not comma-separated numbers"),
    ("a,b,c\n1,2\n", r"line 1: the header 'a,b,c' names 3 columns but line 2 has 2 fields"),
    ("# only a comment\n\n", "is empty"),
    ("a,b\n", r"has a header but no data rows \(line 1: 'a,b'\)"),
    ("1,2,0\n3,4,dog\n", r"line 2: '3,4,dog' is not comma-separated numbers"),  # line 2 set numeric labels
    ("1\n2\n", r"--label-column -1 is out of range for 1 columns .*\(no comma in line 1: is that the delimiter\?\)"),
])
def test_errors_name_the_line(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        load_file(write(tmp_path, "t.csv", text))


def test_bad_label_and_delimiter_arguments(tmp_path):
    path = write(tmp_path, "t.csv", "a,b,label\n1,2,0\n")
    with pytest.raises(ValueError, match=r"--label-column 'lable' is not a column of .*: its header has 'a', 'b', 'label'"):
        load_file(path, "lable")
    with pytest.raises(ValueError, match=r"--label-column 'label' names a column, but .* has no header row"):
        load_file(write(tmp_path, "n.csv", "1,2,0\n"), "label")
    with pytest.raises(ValueError, match=r"--label-column 2.5 is not valid"):
        load_file(path, 2.5)
    with pytest.raises(ValueError, match=r"--delimiter ';;' is not valid"):
        load_file(path, delimiter=";;")


# ------------------------------------------------------------------ large files: the in-place column drop
@pytest.mark.parametrize("label", [0, 3, -1])
def test_columns_dropped_in_place_across_blocks(tmp_path, monkeypatch, label):
    monkeypatch.setattr(csvfile, "_BLOCK", 64)  # many small blocks, each overlapping where it came from
    rng = np.random.default_rng(0)
    table = np.column_stack([np.arange(500), rng.standard_normal((500, 6)).round(6)])
    path = tmp_path / "big.csv"
    np.savetxt(path, table, fmt=["%d"] + ["%.6f"] * 6, delimiter=",", header=",a,b,c,d,e,f", comments="")
    X, y, _ = load(path, label)
    features = table[:, 1:]
    np.testing.assert_array_equal(X, np.delete(features, label, axis=1))
    np.testing.assert_array_equal(y, features[:, label])
    assert X.flags.c_contiguous


# ------------------------------------------------------------------ .npz shapes
@pytest.mark.parametrize("X", [np.arange(40.0), np.float64(3.0)])
def test_npz_X_must_be_2d(tmp_path, X):
    np.savez(tmp_path / "d.npz", X=X, y=np.zeros(40))
    message = f"X has shape {X.shape}: expected (m samples, n features); a single feature is (m, 1)"
    with pytest.raises(ValueError, match=re.escape(message)):
        load_file(tmp_path / "d.npz")


@pytest.mark.parametrize("shape", [(6, 28, 28), (6, 4, 4, 3)])
def test_npz_images_are_flattened(tmp_path, shape):
    images = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    np.savez(tmp_path / "img.npz", X=images, y=np.arange(6) % 2)
    X, y, notes = load(tmp_path / "img.npz")
    n = int(np.prod(shape[1:]))
    assert X.shape == (6, n) and X.dtype == np.uint8
    np.testing.assert_array_equal(X[2], images[2].ravel())
    assert notes == [f"X flattened from {shape} to (6, {n}): one row of {n} features per sample"]


@pytest.mark.parametrize("dtype", [np.float32, np.int64, bool])
def test_npz_one_hot_y_becomes_labels(tmp_path, dtype):
    labels = np.array([2, 0, 1, 2, 1])
    np.savez(tmp_path / "d.npz", X=np.zeros((5, 3)), y=np.eye(3, dtype=dtype)[labels])
    X, y, notes = load(tmp_path / "d.npz")
    assert y.dtype == np.int64 and y.tolist() == labels.tolist()
    assert notes == ["y turned from one-hot (5, 3) into class labels 0..2"]


@pytest.mark.parametrize("y", [
    np.array([[1, 1, 0], [0, 1, 0]]),  # two ones in a row: multi-label, not one-hot
    np.array([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0]]),  # probabilities
    np.array([[0], [1]]),  # one column
])
def test_npz_other_2d_y_is_left_alone(tmp_path, y):
    np.savez(tmp_path / "d.npz", X=np.zeros((2, 3)), y=y)
    _, y2, notes = load(tmp_path / "d.npz")
    np.testing.assert_array_equal(y2, y)
    assert notes == []
