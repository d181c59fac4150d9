"""The CSV reader behind :func:`xpnet.data.load_file`, on the host with NumPy.

The first :data:`SNIFF_LINES` lines with data decide the format (UTF-8 byte-order mark, header,
delimiter, decimal comma, a pandas or R index column, a delimiter ending every line); a C parser
then reads the bulk: pandas' ``read_csv``, some 300,000 values at a time into one preallocated array,
when pandas is installed and the file is large (:data:`PARSER`), else np.loadtxt. When pandas
fails, or reads anything np.loadtxt would not (a missing value, a short row, a byte that is not
UTF-8), np.loadtxt reads the file again, so that values and errors are the same on both paths;
when np.loadtxt fails, the file is read line by line to name the first bad line and its text.
:func:`load_csv` picks the label column or columns (an index, a header name, several, or a range
``"FIRST:LAST"``), checks text labels, and drops columns in place.
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import sys
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .validate import label_positions

# What np.loadtxt's float parser accepts (no '1_0', no hex, unlike Python's float()), and integers
_NUMBER = re.compile(r"\s*[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|inf|infinity|nan)\s*", re.IGNORECASE)
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")
_SEPARATORS = {",": "comma", ";": "semicolon", "\t": "tab", " ": "whitespace"}
_SEPARATORS_PLURAL = {",": "commas", ";": "semicolons", "\t": "tabs", " ": "runs of spaces"}
SNIFF_LINES = 50  # lines with data that decide the format; the rest goes straight to np.loadtxt
_BLOCK = 1 << 20  # elements moved at a time when a column is squeezed out in place (8 MB of float64)
# The bulk parse of numbers: "auto" is pandas' C parser when pandas imports and either the file has
# PANDAS_BYTES or more or pandas is imported already (importing it costs about 0.4 s of CPU, what
# np.loadtxt spends on some 12 MB), else np.loadtxt; "pandas" whenever pandas imports; "numpy"
# never (the tests run the readers' messages both ways).
PARSER = "auto"
PANDAS_BYTES = 16 << 20
_CHUNK_CELLS = 300_000  # values pandas parses at a time: 5,000 rows of 60 columns (its buffers for them take ~5x their 2.4 MB)


class _CsvFormat(NamedTuple):
    """What the first lines of a ``.csv`` say about all of it."""

    delimiter: str  # " " stands for runs of whitespace (np.loadtxt's delimiter=None)
    decimal_comma: bool  # "1,5" is 1.5 (with ";" only)
    skip: int  # lines up to and including the header (0: no header)
    first_line: int  # 1-based line number of the first data row
    first_row: list[str]  # its fields, index column included
    n_fields: int  # fields per data row, index column included
    index: bool  # the first field is a row index, dropped
    names: list[str] | None  # column names, index column excluded
    trailing: bool  # every data line ends with the delimiter (spreadsheet exports): that empty last field is dropped


def _text_lines(p: Path, what: str):
    """``(line number, text)`` of each line as np.loadtxt counts them (``\\n``, ``\\r\\n`` or ``\\r``
    end a line), UTF-8 with an optional BOM; a line that is not UTF-8 is a ValueError naming it."""
    lineno = 0
    with open(p, "rb") as f:
        for raw in f:
            if lineno == 0 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{what} line {lineno + 1} is not UTF-8 text ({exc.reason} at byte "
                                 f"{exc.start}: {raw[max(exc.start - 20, 0):exc.start + 4]!r})") from None
            text = text[:-1] if text.endswith("\n") else text
            text = text[:-1] if text.endswith("\r") else text  # \r\n, or a lone \r at the very end
            for piece in text.split("\r"):  # old Mac line ends
                lineno += 1
                yield lineno, piece


def _strip_comment(text: str) -> str:
    return text.split("#", 1)[0]


def _ends_with_delimiter(body: str, delimiter: str) -> bool:
    """Whether the line ends with ``delimiter`` (spaces and the line end after it aside): an empty last field."""
    return delimiter != " " and body.rstrip(" \t\r\n".replace(delimiter, "")).endswith(delimiter)


def _drop_trailing(body: str, delimiter: str) -> str:
    """``body`` without the delimiter that ends it (and what :func:`_ends_with_delimiter` skips after it),
    or ``body`` itself when it does not end with one."""
    if not _ends_with_delimiter(body, delimiter):
        return body
    return body.rstrip(" \t\r\n".replace(delimiter, ""))[:-1]


def _fields(body: str, delimiter: str, trailing: bool = False) -> list[str]:
    """One line's fields, double quotes removed as np.loadtxt's ``quotechar='"'`` does; with
    ``trailing``, the empty field after a delimiter that ends the line is left out."""
    if trailing:
        body = _drop_trailing(body, delimiter)
    if delimiter == " ":
        return body.split()
    if '"' not in body:
        return body.split(delimiter)
    try:
        return next(csv.reader([body], delimiter=delimiter, quotechar='"'))
    except (csv.Error, StopIteration):
        return [body]


def _is_number(field: str, decimal_comma: bool) -> bool:
    return _NUMBER.fullmatch(field.replace(",", ".") if decimal_comma else field) is not None


def _names_columns(fields: list[str]) -> bool:
    """Whether a line's fields are ``0, 1, ..., n-1``: pandas' names for unnamed columns."""
    return [v.strip() for v in fields] == [str(j) for j in range(len(fields))]


def _guess_delimiter(bodies: list[str]) -> str:
    """The delimiter that splits every sampled line below the first (a header may be one name
    short) into the same number (2+) of fields, and the first into 2+.

    ``;`` is tried first: in a file of ``1,5;2,0`` both split evenly, and there the comma is
    the decimal mark. Runs of spaces (np.savetxt's default) only when no line holds , ; or tab.
    """
    for d in (";", "\t", ","):
        counts = {len(_fields(b, d)) for b in bodies[1:] or bodies}
        if len(counts) == 1 and counts.pop() > 1 and len(_fields(bodies[0], d)) > 1:
            return d
    if not any(c in b for b in bodies for c in ",;\t"):
        counts = {len(b.split()) for b in bodies}
        if len(counts) == 1 and counts.pop() > 1:
            return " "
    return next((d for d in (",", ";", "\t") if d in bodies[0]), ",")  # ragged: the first line's


def _sniff_csv(p: Path, what: str, label_column, delimiter: str | None, notes: list[str]) -> _CsvFormat:
    """Delimiter, header, index column and decimal mark, from the first :data:`SNIFF_LINES` lines."""
    with open(p, "rb") as f:
        if f.read(len(codecs.BOM_UTF8)) == codecs.BOM_UTF8:
            notes.append("removed the UTF-8 byte-order mark (BOM) at the start of the file")
    sample, comment = [], None  # (line number, text, text without its comment); the last comment line before the data
    for lineno, text in _text_lines(p, what):
        body = _strip_comment(text)
        if body.strip():
            sample.append((lineno, text, body))
            if len(sample) == SNIFF_LINES:
                break
        elif not sample and text.lstrip().startswith("#"):
            comment = text.lstrip()[1:]
    if not sample:
        raise ValueError(f"{what} is empty: expected rows of comma-separated numbers")
    bodies = [body for _, _, body in sample]
    d = delimiter or _guess_delimiter(bodies)
    if delimiter is None and d != ",":
        notes.append(f"fields are separated by {_SEPARATORS_PLURAL[d]}" + (" (a comma is the decimal mark)" if d == ";" else ""))
    decimal_comma = d == ";"
    # Spreadsheets end every line with the delimiter ("1,2,0,"): the empty field after it is no
    # column (read as the label, it would hold one class). Line 1 may be a header without it.
    ends = [_ends_with_delimiter(body, d) for body in bodies]
    trailing = d != " " and all(ends[1:])  # settled below, once it is known whether line 1 is a header
    rows = [_fields(body, d, trailing) for body in bodies]
    kinds = [[_is_number(v, decimal_comma) for v in row] for row in rows]
    n0 = len(rows[0])

    # A header is a first line with no number in it, or with a column where it holds text and
    # every line below holds numbers (so text labels in every row do not make line 1 a header).
    header = not any(kinds[0]) or (len(rows) > 1 and any(
        not kinds[0][j] and all(len(k) > j and k[j] for k in kinds[1:]) for j in range(n0)))
    header = header or (isinstance(label_column, str) and not all(kinds[0]))
    # pandas names unnamed columns 0..n-1: DataFrame(array).to_csv(index=False) writes "0,1,2,3,4"
    # above the data, a first line that is numbers and yet a header.
    header = header or (n0 >= 2 and _names_columns(rows[0]) and not any(_names_columns(row) for row in rows[1:]))
    # A data line 1 without it: not every line ends with the delimiter, and the bulk parse names
    # the first line of another width (rows[1:] are used from here on only below a header).
    trailing = trailing and (header or ends[0])
    if trailing:
        below = "every line" if ends[0] else "every line below the header"
        notes.append(f"{below} ends with a {d!r}: the empty last column was dropped")
    names = [v.strip() for v in rows[0]] if header else None
    data = slice(1, None) if header else slice(None)
    if header and len(rows) == 1:
        raise ValueError(f"{what} has a header but no data rows (line {sample[0][0]}: {sample[0][1][:60]!r})")
    first_line, first_row = sample[data][0][0], rows[data][0]
    n = len(first_row)
    if header:
        notes.append(f"line {sample[0][0]} is a header: {', '.join(names[:8])}{', ...' if len(names) > 8 else ''}")
    elif comment is not None and len(_fields(comment, d, trailing)) == n:
        names = [v.strip() for v in _fields(comment, d, trailing)]  # np.savetxt writes its header as "# a,b,label"

    # pandas' to_csv() writes its row index as an unnamed first column ("" or "Unnamed: 0");
    # R's write.csv leaves it out of the header altogether.
    unnamed = names is not None and ((len(names) == n and names[0] in ("", "Unnamed: 0")) or len(names) == n - 1)
    index = header and n >= 2 and unnamed and all(len(row) > 0 and _INTEGER.fullmatch(row[0]) for row in rows[data])
    if index:
        names = names[1:] if len(names) == n else names
        notes.append("dropped the unnamed first column: it holds the row numbers (a pandas or R index), not a feature")
    elif header and len(names) != n:
        raise ValueError(f"{what} line {sample[0][0]}: the header {sample[0][1][:60]!r} names {len(names)} columns "
                         f"but line {first_line} has {n} fields")
    return _CsvFormat(d, decimal_comma, sample[0][0] if header else 0, first_line, first_row, n, index, names,
                      trailing)


def _column_name(fmt: _CsvFormat, col: int) -> str:
    """A kept column as messages name it: its header name, else its index."""
    return repr(fmt.names[col]) if fmt.names else str(col)


def _label_indices(shown: str, fmt: _CsvFormat, label_column) -> list[int] | None:
    """The label columns' positions among the columns kept (see :func:`xpnet.validate.label_positions`), or None."""
    if label_column is None:
        return None
    return label_positions(label_column, lambda c: _label_index(shown, fmt, c), fmt.n_fields - fmt.index, shown, fmt.names)


def _label_index(shown: str, fmt: _CsvFormat, label_column) -> int | None:
    """The label's position among the columns kept (index column dropped), or None."""
    n = fmt.n_fields - fmt.index
    if label_column is None:
        return None
    if isinstance(label_column, str):
        if fmt.names is None:
            raise ValueError(f"--label-column {label_column!r} names a column, but {shown!r} has no header row: "
                             "give its index instead (-1 is the last column)")
        if label_column not in fmt.names:
            names = ", ".join(repr(v) for v in fmt.names[:12]) + (", ..." if len(fmt.names) > 12 else "")
            raise ValueError(f"--label-column {label_column!r} is not a column of {shown!r}: its header has {names}")
    if n < 2 or not (isinstance(label_column, str) or -n <= label_column < n):  # the label and 1+ features
        sep = _SEPARATORS.get(fmt.delimiter, repr(fmt.delimiter))
        hint = ""
        if fmt.n_fields == 1:  # not n: beside an index column the line does hold the delimiter
            hint = (f" (line {fmt.first_line} is one field and a trailing {sep})" if fmt.trailing
                    else f" (no {sep} in line {fmt.first_line}: is that the delimiter?)")
        column = repr(label_column) if isinstance(label_column, str) else int(label_column)
        raise ValueError(f"--label-column {column} is out of range for {n} columns in {shown!r}{hint}")
    return fmt.names.index(label_column) if isinstance(label_column, str) else int(label_column) % n


def load_csv(p: Path, label_column, delimiter: str | None, notes: list[str],
             shown: str | None = None, label_names: list | None = None, digest=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the ``.csv`` at ``p``: sniff the format from the first lines, then let np.loadtxt (C) read the bulk.

    Args are :func:`xpnet.data.load_file`'s (``delimiter`` ``None`` to detect it); ``shown`` is the
    name messages give the file (default ``p``); ``digest``, a hashlib object, is fed every byte
    of the file as the bulk parse reads it (so that a file is not read once more to hash it).
    Returns ``(X, y)``: ``X`` ``(m, n)`` float64;
    ``y`` ``(m,)`` float64, ``(m,)`` str for text labels, ``(m, k)`` float64 for ``k`` label
    columns, or ``None`` when ``label_column`` is ``None`` (load_file turns whole numbers into int64).
    """
    shown = shown or str(p)
    what = f"--data {shown!r}"
    if isinstance(label_column, (list, tuple)):  # a name among them marks a header as a name does alone
        label_column = label_column[0] if len(label_column) == 1 else list(label_column)
    named = next((c for c in label_column if isinstance(c, str)), None) if isinstance(label_column, list) else label_column
    fmt = _sniff_csv(p, what, named, delimiter, notes)
    cols = _label_indices(shown, fmt, label_column)
    if cols is not None and len(cols) > 1:  # multi-label: numeric 0/1 columns, read with the features
        for c in cols:
            if not _is_number(fmt.first_row[fmt.index + c], fmt.decimal_comma):
                raise ValueError(f"--label-column {_column_name(fmt, c)} of {shown!r} holds text "
                                 f"({fmt.first_row[fmt.index + c].strip()[:20]!r} on line {fmt.first_line}): several label "
                                 "columns are multi-label rows of 0 and 1")
        if label_names is not None:
            label_names[:] = [fmt.names[c] if fmt.names else c for c in cols]
        table = _loadtxt(p, what, fmt, None, np.float64, digest)  # (m, n_fields)
        y = table[:, [fmt.index + c for c in cols]].copy()
        return _drop_columns(table, ({0} if fmt.index else set()) | {fmt.index + c for c in cols}), y
    col = None if cols is None else cols[0]
    if col is not None and not _is_number(fmt.first_row[fmt.index + col], fmt.decimal_comma):
        # Text labels ("setosa"): the features as numbers, then the label column as strings.
        name = repr(fmt.names[col]) if fmt.names else str(col + 1)
        notes.append(f"the labels (column {name}) are text: y holds strings")
        label = fmt.index + col
        features = [k for k in range(fmt.index, fmt.n_fields) if k != label]
        X = _loadtxt(p, what, fmt, features, np.float64, digest)
        y = np.strings.strip(_loadtxt(p, what, fmt, [label], str)[:, 0])
        _check_text_labels(p, what, fmt, label, y)
        # np.loadtxt checks no row's width when it reads chosen columns: a row with an extra field
        # would give its label from the wrong column. One pass in Python (about 1 s a million rows).
        ragged = _first_bad_line(p, what, fmt, [], 0)
        if ragged is not None:
            raise ragged
        return X, y
    # Every column is read, the index too, so that np.loadtxt checks the width of every row.
    table = _loadtxt(p, what, fmt, None, np.float64, digest)  # (m, n_fields)
    drop = {0} if fmt.index else set()
    if col is None:
        return _drop_columns(table, drop), None
    y = table[:, fmt.index + col].copy()
    return _drop_columns(table, drop | {fmt.index + col}), y


_CONTROL_NAMES = {"\x00": "NUL", "\t": "tab", "\x7f": "DEL"}


def _check_text_labels(p: Path, what: str, fmt: _CsvFormat, label: int, y: np.ndarray) -> None:
    """Refuse the first empty text label, or one holding a control character (U+0000-U+001F,
    U+007F), naming its line: either would train as a class of its own. ``y`` is ``(m,)``, stripped,
    read by :func:`_loadtxt` (NUL as U+0001); ``label`` is its column in the file, 0-based."""
    codes = y.view(np.uint32).reshape(len(y), -1)  # (m, longest label): code points, 0 pads the shorter ones
    bad = (y == "") | np.any(((codes > 0) & (codes < 32)) | (codes == 127), axis=1)
    if not bad.any():
        return
    first, row = int(np.argmax(bad)), -1
    for lineno, text in _text_lines(p, what):  # the data rows as _loadtxt's lines() counts them
        body = _strip_comment(text)
        if lineno <= fmt.skip or not body.strip():
            continue
        row += 1
        if row == first:
            break
    if y[first] == "":
        raise ValueError(f"{what} line {lineno}: the label (column {label + 1}) is empty: every row needs a label")
    fields = _fields(body, fmt.delimiter, fmt.trailing)
    value = fields[label].strip() if len(fields) > label else str(y[first])  # as written: a NUL is back
    control = next(c for c in value + str(y[first]) if ord(c) < 32 or ord(c) == 127)
    name = _CONTROL_NAMES.get(control, f"U+{ord(control):04X}")
    raise ValueError(f"{what} line {lineno}: the label {value[:20]!r} (column {label + 1}) holds a control character "
                     f"({name}): expected printable text")


class _Hashed(io.RawIOBase):
    """A binary file whose every byte read also goes into ``digest``."""

    def __init__(self, f, digest):
        self.f, self.digest = f, digest

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.f.close()
        super().close()

    def readinto(self, b) -> int:
        n = self.f.readinto(b)
        self.digest.update(memoryview(b)[:n])
        return n


class _Checked(_Hashed):
    """:class:`_Hashed` that also counts the bytes read and notes whether they are all UTF-8 (pandas
    decodes only the fields it keeps as text: a stray byte elsewhere would pass unseen)."""

    def __init__(self, f, digest):
        super().__init__(f, digest)
        self.read_bytes, self.utf8 = 0, True
        self._decoder = codecs.getincrementaldecoder("utf-8")()

    def readinto(self, b) -> int:
        n = self.f.readinto(b)
        block = memoryview(b)[:n]
        if self.digest is not None:
            self.digest.update(block)
        self.read_bytes += n
        if self.utf8 and (self._decoder.getstate()[0] or not block.tobytes().isascii() or n == 0):
            try:
                self._decoder.decode(block, final=n == 0)
            except UnicodeDecodeError:
                self.utf8 = False
        return n


def _text(p: Path, digest=None):
    """``p`` opened as np.loadtxt's lines want it (UTF-8, a BOM dropped, any line end), its
    bytes also fed to ``digest`` when one is given."""
    if digest is None:
        return open(p, encoding="utf-8-sig", newline=None)
    return io.TextIOWrapper(io.BufferedReader(_Hashed(open(p, "rb"), digest)), encoding="utf-8-sig", newline=None)


def _loadtxt(p: Path, what: str, fmt: _CsvFormat, usecols: list[int] | None, dtype, digest=None) -> np.ndarray:
    """np.loadtxt over the data lines, ``(m, len(usecols))``; on failure, the first bad line.
    ``digest`` (hashlib) gets every byte of the file on the way. Numbers go through pandas'
    parser first when :func:`_pandas` says so (:func:`_read_pandas`)."""
    pd = _pandas(p) if dtype is not str and not fmt.trailing else None
    if pd is not None:
        with io.BufferedReader(_Checked(open(p, "rb"), digest), 1 << 16) as f:  # pandas may close it
            table = _read_pandas(pd, f, os.path.getsize(p), fmt, usecols)
        if digest is not None:  # any bytes pandas did not read (it stopped early) go into the digest too
            with open(p, "rb") as rest:
                rest.seek(f.raw.read_bytes)
                for block in iter(lambda: rest.read(1 << 20), b""):
                    digest.update(block)
        if table is not None and f.raw.utf8:
            return table
        del table
        digest = None  # np.loadtxt reads the file again, hashed already

    def lines():  # only data rows: np.loadtxt skips empty lines but not all-space or indented comments
        row = -1  # 0-based data row, as np.loadtxt counts them
        with _text(p, digest) as f:
            for lineno, line in enumerate(f, 1):
                body = _strip_comment(line)
                if lineno <= fmt.skip or not body.strip():
                    continue
                row += 1
                if fmt.trailing:
                    if not _ends_with_delimiter(body, fmt.delimiter):  # _first_bad_line finds it again and names it
                        raise ValueError(f"no trailing delimiter at row {row}")
                    body = _drop_trailing(body, fmt.delimiter)
                if dtype is str:  # a str array drops trailing NULs ("b\x00" reads "b"): \x01 keeps them seen
                    yield body.replace("\x00", "\x01")
                else:
                    yield body.replace(",", ".") if fmt.decimal_comma else body

    try:
        with warnings.catch_warnings():  # no rows at all is reported below, as a ValueError
            warnings.filterwarnings("ignore", "loadtxt: input contained no data", UserWarning)
            table = np.loadtxt(lines(), dtype=dtype, delimiter=None if fmt.delimiter == " " else fmt.delimiter,
                               comments=None, quotechar='"', usecols=usecols, ndmin=2)
    except ValueError as exc:  # includes UnicodeDecodeError
        checked = [k for k in (range(fmt.n_fields) if usecols is None else usecols) if k >= fmt.index]
        raise _csv_error(p, what, fmt, checked if dtype is not str else [], exc) from None
    if len(table) == 0:
        raise ValueError(f"{what} has no data rows after line {fmt.skip}")
    return table


def _pandas(p: Path):
    """The pandas module when it should parse the bulk of ``p`` (:data:`PARSER`), else None."""
    if PARSER == "numpy" or (PARSER == "auto" and "pandas" not in sys.modules and os.path.getsize(p) < PANDAS_BYTES):
        return None
    try:
        import pandas
    except Exception:  # missing, or installed but broken (a binary mismatch): np.loadtxt reads it as before
        return None
    return pandas


def _read_pandas(pd, f, size: int, fmt: _CsvFormat, usecols: list[int] | None) -> np.ndarray | None:
    """The data rows of the binary file ``f`` (``size`` bytes, read through a :class:`_Checked`) as
    float64 ``(m, len(usecols))``, parsed by pandas' C parser :data:`_CHUNK_CELLS` values at a time
    into one array grown in place; None where np.loadtxt must decide (a value that is not a
    number, "" or "NA" among them; a NaN; a row of another width; no rows), so that both paths
    give the same array or the same error."""
    n = fmt.n_fields if usecols is None else len(usecols)
    out, m = None, 0  # (capacity, n) float64, rows filled
    try:
        # Runs of spaces are sep=r"\s+"; quotes, comments and blank lines as np.loadtxt and lines() read them.
        reader = pd.read_csv(f, sep=r"\s+" if fmt.delimiter == " " else fmt.delimiter, header=None, skiprows=fmt.skip,
                             usecols=usecols, dtype=np.float64, comment="#", quotechar='"', index_col=False,
                             na_filter=False,  # "", "NA" and a short row's missing fields fail (faster, and np.loadtxt's turn)
                             decimal="," if fmt.decimal_comma else ".", encoding="utf-8", engine="c",
                             chunksize=max(_CHUNK_CELLS // max(fmt.n_fields, 1), 1))
        with reader:
            for chunk in reader:
                block = chunk.to_numpy(np.float64)  # (rows, n)
                if block.shape[1] != n or np.isnan(block).any():
                    return None
                if out is None or m + len(block) > len(out):
                    # Rows in the file, from the bytes the first chunk took (the buffer ahead of the parser
                    # makes it an underestimate: 10% more). Untouched rows cost address space, not memory,
                    # and resize grows and shrinks in place (realloc) where it can.
                    guess = int(len(block) * size / max(f.raw.read_bytes, 1) * 1.1) + len(block)
                    capacity = max(guess, m + len(block)) if out is None else max(int(len(out) * 1.25), m + len(block))
                    if out is None:
                        out = np.empty((capacity, n))
                    else:
                        out.resize((capacity, n), refcheck=False)
                out[m:m + len(block)] = block
                m += len(block)
    except (ValueError, TypeError, OverflowError):  # ParserError, EmptyDataError, UnicodeDecodeError are ValueErrors
        return None
    if m == 0:
        return None
    out.resize((m, n), refcheck=False)
    return out


def _csv_error(p: Path, what: str, fmt: _CsvFormat, checked: list[int], exc: Exception) -> ValueError:
    """The first line that np.loadtxt could not read, found again line by line: its own message
    counts data rows, not lines, and the row it names is where the checks start."""
    hint = re.search(r"at row (\d+)", str(exc))  # 0-based for a bad value, 1-based for a bad width
    start = max(int(hint.group(1)) - 1, 0) if hint else 0
    error = _first_bad_line(p, what, fmt, checked, start)
    if error is None and start > 0:  # the row number misled us: look from the top
        error = _first_bad_line(p, what, fmt, checked, 0)
    sep = _SEPARATORS.get(fmt.delimiter, f"{fmt.delimiter!r}")
    return error or ValueError(f"{what} cannot be read as {sep}-separated numbers ({exc})")


def _first_bad_line(p: Path, what: str, fmt: _CsvFormat, checked: list[int], start: int) -> ValueError | None:
    """The error for the first data row from ``start`` (0-based) on with the wrong width or a
    field in ``checked`` that is not a number; None if there is none."""
    sep = _SEPARATORS.get(fmt.delimiter, f"{fmt.delimiter!r}")
    row = -1
    for lineno, text in _text_lines(p, what):
        body = _strip_comment(text)
        if lineno <= fmt.skip or not body.strip():
            continue
        row += 1
        if row < start:
            continue
        fields = _fields(body, fmt.delimiter, fmt.trailing)
        # Widths as written: with a trailing delimiter, the empty field after it counts too.
        width, want = len(fields) + fmt.trailing, fmt.n_fields + fmt.trailing
        if fmt.trailing and not _ends_with_delimiter(body, fmt.delimiter):
            width = len(fields)  # nothing was dropped from this line
            if width == want:  # as many fields, the last one not empty
                return ValueError(f"{what} line {lineno}: {text[:60]!r} has {fields[-1].strip()[:20]!r} in column {want}, "
                                  f"which is empty on line {fmt.first_line} (it ends with a {sep}): expected every line "
                                  f"to end with a {sep}, or none")
        if width != want:
            return ValueError(f"{what} has rows of {sorted({width, want})} columns: line {lineno} "
                              f"{text[:60]!r} has {width} where line {fmt.first_line} has {want}")
        for k in checked:
            if not _is_number(fields[k], fmt.decimal_comma):
                return ValueError(f"{what} line {lineno}: {text[:60]!r} is not {sep}-separated numbers "
                                  f"({fields[k].strip()[:20]!r} in column {k + 1})")
    return None


def _drop_columns(a: np.ndarray, drop: set[int]) -> np.ndarray:
    """``a`` (m, c) without the columns in ``drop``, as (m, c - len(drop)), moved within ``a``'s
    own memory: a copy would double the peak memory of a large file."""
    m, c = a.shape
    if not drop:
        return a
    keep = c - len(drop)
    if not (a.flags.c_contiguous and a.flags.owndata) or keep < 1:
        return np.delete(a, sorted(drop), axis=1)
    runs, start = [], 0  # [first, last) column ranges kept, each copied as one slice
    for j in sorted(drop) + [c]:
        if j > start:
            runs.append((start, j))
        start = j + 1
    flat, block, moved = a.reshape(-1), None, None
    step = max(1, _BLOCK // c)
    for first in range(0, m, step):
        last = min(first + step, m)
        # The block is copied out first: its new place overlaps where it was. Later blocks lie
        # beyond last * c, out of reach of writes that end at last * keep.
        block = a[first:last].copy()  # (rows, c)
        moved = flat[first * keep:last * keep].reshape(last - first, keep)
        at = 0
        for lo, hi in runs:
            moved[:, at:at + hi - lo] = block[:, lo:hi]
            at += hi - lo
    del flat, block, moved
    # Safe without refcheck: no view of `a` is left (flat and moved are gone, y was copied out),
    # and the caller's name for it is this same object, shrunk here in place.
    a.resize((m * keep,), refcheck=False)
    return a.reshape(m, keep)
