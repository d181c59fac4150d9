"""What the user-file reader says about three kinds of file that used to mislead (each through
:func:`xpnet.data.load_file` and through ``xpnet train``): lines that all end with the delimiter
(spreadsheet exports), text labels that are empty or hold control characters, and an ``X`` with
no feature columns. Every case is a real file in tmp_path; nothing here needs a backend."""

from __future__ import annotations

import re

import numpy as np
import pytest
from cli_helpers import run

from xpnet.data import SNIFF_LINES, load_file


def write(tmp_path, name: str, text: str | bytes):
    """``text`` byte for byte (no newline translation), as a file in ``tmp_path``."""
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def load(path, **kwargs):
    """load_file with a notes list; returns (X, y, notes)."""
    notes = []
    X, y = load_file(path, notes=notes, **kwargs)
    return X, y, notes


def cli_error(path, capsys) -> str:
    """``xpnet train --data path``'s one error line, checked to be the only stderr line and exit 2."""
    capsys.readouterr()
    assert run(["train", "--data", str(path), "--epochs", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("xpnet: error: "), err
    return err[0]


def refused(path, capsys, message: str) -> None:
    """``message`` (a regex) is the ValueError of load_file and the CLI's one error line."""
    with pytest.raises(ValueError, match=message):
        load_file(path)
    assert re.search(message, cli_error(path, capsys))


ROWS = [(i / 4, i % 3, i % 2) for i in range(12)]  # two features and a 0/1 label
PLAIN = "".join(f"{a},{b},{c}\n" for a, b, c in ROWS)
TRAILING = "".join(f"{a},{b},{c},\n" for a, b, c in ROWS)
NOTE = "every line ends with a ',': the empty last column was dropped"


# ------------------------------------------------------------------ 1. a delimiter at the end of every line
@pytest.mark.parametrize("text,reference,note", [
    (TRAILING, PLAIN, NOTE),
    ("a,b,label,\n" + TRAILING, "a,b,label\n" + PLAIN, NOTE),  # the header ends with one too
    ("a,b,label\n" + TRAILING, "a,b,label\n" + PLAIN,  # or it does not
     "every line below the header ends with a ',': the empty last column was dropped"),
    (TRAILING.replace("\n", " \r\n"), PLAIN, NOTE),  # spaces after it, Windows line ends
    ("# from a spreadsheet\n" + TRAILING.replace("\n", "\n\n", 4), PLAIN, NOTE),  # comments, blank lines
    (TRAILING.replace(",", "\t"), PLAIN.replace(",", "\t"), "every line ends with a '\\t': the empty last column was dropped"),
    (TRAILING.replace(",", ";").replace(".", ","), PLAIN.replace(",", ";").replace(".", ","),
     "every line ends with a ';': the empty last column was dropped"),
    (",a,b,label,\n" + "".join(f"{i},{a},{b},{c},\n" for i, (a, b, c) in enumerate(ROWS)),  # pandas' index too
     "a,b,label\n" + PLAIN, NOTE),
])
def test_trailing_delimiter_is_dropped(tmp_path, capsys, text, reference, note):
    X, y, notes = load(write(tmp_path, "t.csv", text))
    X0, y0, _ = load(write(tmp_path, "r.csv", reference))
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)
    assert X.shape == (len(ROWS), 2) and y.dtype == np.int64 and set(y.tolist()) == {0, 1}
    assert notes.count(note) == 1
    capsys.readouterr()
    assert run(["train", "--data", str(tmp_path / "t.csv"), "--epochs", "1"]) == 0
    assert f"xpnet: note: {note}" in capsys.readouterr().err.splitlines()


def test_trailing_delimiter_with_text_labels(tmp_path, capsys):
    text = "".join(f"{a},{b},{'ab'[c]},\n" for a, b, c in ROWS)
    X, y, notes = load(write(tmp_path, "t.csv", text))
    assert X.shape == (len(ROWS), 2) and y.tolist() == ["ab"[c] for _, _, c in ROWS]
    assert notes == [NOTE, "the labels (column 3) are text: y holds strings"]
    assert run(["train", "--data", str(tmp_path / "t.csv"), "--epochs", "1", "--quiet"]) == 0


def test_one_column_and_a_trailing_delimiter(tmp_path, capsys):
    path = write(tmp_path, "t.csv", "0,\n1,\n0,\n1,\n")
    refused(path, capsys, r"--label-column -1 is out of range for 1 columns in '.*t\.csv' "
                          r"\(line 1 is one field and a trailing comma\)$")
    X, y, notes = load(path, label_column=None)
    assert X.tolist() == [[0.0], [1.0], [0.0], [1.0]] and y is None and notes == [NOTE]


def test_no_trailing_delimiter_note_for_whitespace_or_ordinary_files(tmp_path):
    for text in (PLAIN, PLAIN.replace(",", " ").replace("\n", " \n")):
        X, y, notes = load(write(tmp_path, "t.csv", text))
        assert X.shape == (len(ROWS), 2) and not any("ends with" in note for note in notes)


def lines_with(line: int, text: str) -> str:
    """100 rows that end with a comma, line ``line`` (1-based) replaced by ``text``."""
    rows = [f"{i},{i % 3},{i % 2},\n" for i in range(100)]
    rows[line - 1] = text + "\n"
    return "".join(rows)


@pytest.mark.parametrize("text,message", [
    # a line without it, within the sniffed lines and beyond them: the usual width error
    (lines_with(4, "5,6,0"), r"has rows of \[3, 4\] columns: line 4 '5,6,0' has 3 where line 1 has 4$"),
    (lines_with(SNIFF_LINES + 31, "80,2,0"), r"has rows of \[3, 4\] columns: line 81 '80,2,0' has 3 where line 1 has 4$"),
    (lines_with(SNIFF_LINES + 31, "80,2,0,7"),
     r"line 81: '80,2,0,7' has '7' in column 4, which is empty on line 1 \(it ends with a comma\): "
     r"expected every line to end with a comma, or none$"),
    (lines_with(SNIFF_LINES + 31, "80,2,0,7,"), r"has rows of \[4, 5\] columns: line 81 '80,2,0,7,' has 5 where line 1 has 4$"),
    (lines_with(SNIFF_LINES + 31, "80,2,x,"), r"line 81: '80,2,x,' is not comma-separated numbers \('x' in column 3\)$"),
    # text labels: the width is checked as the lines are read, not by np.loadtxt (which reads chosen columns)
    (lines_with(SNIFF_LINES + 31, "80,2,b").replace(",0,\n", ",a,\n").replace(",1,\n", ",b,\n"),
     r"has rows of \[3, 4\] columns: line 81 '80,2,b' has 3 where line 1 has 4$"),
    # line 1 is data without it: the lines below are wider
    ("1,2,0\n" + TRAILING, r"has rows of \[3, 4\] columns: line 2 '0.0,0,0,' has 4 where line 1 has 3$"),
])
def test_a_line_without_the_trailing_delimiter_is_named(tmp_path, capsys, text, message):
    refused(write(tmp_path, "t.csv", text), capsys, message)


# ------------------------------------------------------------------ 2. text labels that are no class
TEXT = "a,b,species\n# measured by hand\n1,2,setosa\n\n3,4,virginica\n"  # data on lines 3 and 5


@pytest.mark.parametrize("row,message", [
    ("5,6,", r"line 6: the label \(column 3\) is empty: every row needs a label$"),
    ("5,6,   ", r"line 6: the label \(column 3\) is empty: every row needs a label$"),
    ('5,6,""', r"line 6: the label \(column 3\) is empty: every row needs a label$"),
    ("5,6,setosa\x00", r"line 6: the label 'setosa\\x00' \(column 3\) holds a control character \(NUL\): "
                       r"expected printable text$"),
    ("5,6,\x00setosa", r"line 6: the label '\\x00setosa' \(column 3\) holds a control character \(NUL\)"),
    ("5,6,set\x00osa", r"line 6: the label 'set\\x00osa' \(column 3\) holds a control character \(NUL\)"),
    ("5,6,seto\x07sa", r"line 6: the label 'seto\\x07sa' \(column 3\) holds a control character \(U\+0007\)"),
    ("5,6,setosa\x7f", r"line 6: the label 'setosa\\x7f' \(column 3\) holds a control character \(DEL\)"),
    ("5,6,set\tosa", r"line 6: the label 'set\\tosa' \(column 3\) holds a control character \(tab\)"),
])
def test_empty_or_control_label_is_refused(tmp_path, capsys, row, message):
    refused(write(tmp_path, "t.csv", TEXT + row + "\n7,8,setosa\n"), capsys, r"^(xpnet: error: )?--data '.*t\.csv' " + message)


def test_bad_text_label_far_down_names_its_line(tmp_path, capsys):
    rows = [f"{i},{i % 3},{'ab'[i % 2]}" for i in range(200)]
    rows[150] = "150,0,"  # the 151st data row
    text = "x,y,label\n# c\n\n" + "\n".join(rows[:100]) + "\n\n" + "\n".join(rows[100:]) + "\n"  # 3 + 100 + 1 lines above 101
    refused(write(tmp_path, "t.csv", text), capsys, r"line 155: the label \(column 3\) is empty")
    refused(write(tmp_path, "i.csv", text.replace("\n0,0,a\n", "\n0,0,a\x00\n").replace("150,0,\n", "150,0,a\n")), capsys,
            r"line 4: the label 'a\\x00' \(column 3\) holds a control character \(NUL\)")


def test_empty_label_with_an_index_column_counts_it(tmp_path, capsys):
    text = ",a,b,species\n0,1,2,setosa\n1,3,4,\n2,5,6,virginica\n"
    refused(write(tmp_path, "t.csv", text), capsys, r"line 3: the label \(column 4\) is empty")


def test_numeric_label_cell_left_empty_still_names_the_line(tmp_path, capsys):
    refused(write(tmp_path, "t.csv", "1,2,0\n3,4,\n5,6,1\n7,8,0\n"), capsys,
            r"line 2: '3,4,' is not comma-separated numbers \('' in column 3\)$")


def test_clean_text_labels_still_train(tmp_path, capsys):
    path = write(tmp_path, "t.csv", TEXT + "5,6, setosa \n7,8,virginica\n")
    X, y, _ = load(path)
    assert y.tolist() == ["setosa", "virginica", "setosa", "virginica"] and X.shape == (4, 2)
    assert run(["train", "--data", str(path), "--epochs", "1", "--quiet"]) == 0


# ------------------------------------------------------------------ 3. no feature columns
@pytest.mark.parametrize("shape", [(10, 0), (10, 0, 5), (10, 28, 0)])
def test_npz_without_features_is_refused(tmp_path, capsys, shape):
    path = tmp_path / "d.npz"
    np.savez(path, X=np.zeros(shape), y=np.arange(10) % 2)
    refused(path, capsys, rf"--data '.*d\.npz': X has shape {re.escape(str(shape))}: expected at least one feature column$")


def test_csv_with_only_the_label_column(tmp_path, capsys):
    # A label read from a one-column file: no feature is left, and that column may be a whole line.
    refused(write(tmp_path, "t.csv", "0\n1\n0\n1\n"), capsys,
            r"--label-column -1 is out of range for 1 columns in '.*t\.csv' \(no comma in line 1: is that the delimiter\?\)$")
    refused(write(tmp_path, "h.csv", "label\n0\n1\n0\n1\n"), capsys, r"--label-column -1 is out of range for 1 columns")


def test_a_wider_row_among_text_labels_is_refused(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("1,2,a\n3,4,b\n3,4,5,b\n5,6,a\n")  # np.loadtxt with usecols would read '5' as a label
    with pytest.raises(ValueError, match=r"has rows of \[3, 4\] columns: line 3 '3,4,5,b' has 4 where line 1 has 3"):
        load_file(path)
