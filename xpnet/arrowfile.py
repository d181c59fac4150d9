"""Parquet and Feather files behind :func:`xpnet.data.load_file`, read through pyarrow (optional:
``pip install "pyarrow>=15"``, the ``parquet`` extra).

Their columns have names and types, so nothing is sniffed: numeric columns (integer, float,
boolean, decimal) are features, a text column (string, or pandas' category of strings) can only
be labels. The label column or columns are chosen as in a ``.csv`` (an index, a name, several,
or a range ``"FIRST:LAST"``); pandas' index columns (``__index_level_0__``) are dropped. A missing
value (null, or NaN) in a feature or label is refused naming its row (1-based) and column, as
the CSV reader names a bad line. Row groups (record batches) are read one at a time into one
preallocated ``X``, so the peak is about the array plus one group.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from .validate import label_positions

ARROW_HINT = 'pip install "pyarrow>=15" (from a checkout, pip install ".[parquet]")'
KINDS = {".parquet": "Parquet", ".feather": "Feather"}
_BATCH_ROWS = 65_536  # rows per batch read from a Parquet file


def _pyarrow(what: str, kind: str):
    try:
        import pyarrow
        import pyarrow.feather  # noqa: F401  (the submodules are not imported with pyarrow)
        import pyarrow.ipc  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise ValueError(f"{what} is a {kind} file: reading it needs pyarrow: {ARROW_HINT}") from None
    return pyarrow


def _open(pa, p: Path, what: str, kind: str):
    """``(schema, rows, batches(columns))``: the file's schema, its row count, and a function that
    yields its record batches holding only ``columns`` (names)."""
    try:
        if kind == "Parquet":
            f = pa.parquet.ParquetFile(p)
            return f.schema_arrow, f.metadata.num_rows, lambda columns: f.iter_batches(_BATCH_ROWS, columns=columns)
        try:  # Feather 2 is the Arrow IPC file format: memory-mapped, one batch decompressed at a time
            reader = pa.ipc.open_file(pa.memory_map(str(p)))
            rows = reader.count_rows() if hasattr(reader, "count_rows") else sum(  # metadata only; pyarrow < 16 reads
                reader.get_batch(i).num_rows for i in range(reader.num_record_batches))
            return reader.schema, rows, lambda columns: (reader.get_batch(i).select(columns)
                                                           for i in range(reader.num_record_batches))
        except pa.ArrowInvalid:  # Feather 1, read whole
            table = pa.feather.read_table(p)
            return table.schema, table.num_rows, lambda columns: table.select(columns).to_batches()
    except (pa.ArrowException, OSError) as exc:
        raise ValueError(f"{what} cannot be read as a {kind} file ({str(exc).splitlines()[0][:200]})") from None


def _numeric(pa, t) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t) or pa.types.is_decimal(t)


def _text(pa, t) -> bool:
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.types.is_string(t) or pa.types.is_large_string(t) or getattr(pa.types, "is_string_view", bool)(t)


def _position(shown: str, names: list[str], column) -> int:
    """A label column's position among ``names``: an int index (negative from the end) or a name."""
    if isinstance(column, str):
        if column not in names:
            listed = ", ".join(repr(v) for v in names[:12]) + (", ..." if len(names) > 12 else "")
            raise ValueError(f"--label-column {column!r} is not a column of {shown!r}: its columns are {listed}")
        return names.index(column)
    n = len(names)
    if n < 2 or not -n <= column < n:
        raise ValueError(f"--label-column {int(column)} is out of range for {n} columns in {shown!r}")
    return int(column) % n


def _numbers(pa, what: str, name: str, column, start: int) -> np.ndarray:
    """One batch's numeric column as float64 ``(rows,)``; a null or NaN is refused naming its row
    (``start`` is the batch's first row, 0-based)."""
    if column.null_count:
        row = start + int(np.argmax(column.is_null().to_numpy(zero_copy_only=False)))
        raise ValueError(f"{what} row {row + 1}: column {name!r} is missing (null): expected a number in every row")
    values = column.cast(pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    nan = np.isnan(values)
    if nan.any():
        raise ValueError(f"{what} row {start + int(np.argmax(nan)) + 1}: column {name!r} is NaN (a missing value): "
                         "expected a number in every row")
    return values


def _strings(pa, what: str, name: str, column, start: int) -> np.ndarray:
    """One batch's text label column, stripped as the CSV reader strips them, ``(rows,)`` str; a
    null, an empty label or one holding a control character is refused naming its row."""
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    values = column.to_pylist()
    for r, v in enumerate(values):
        if v is None or not v.strip():
            raise ValueError(f"{what} row {start + r + 1}: the label (column {name!r}) is "
                             f"{'missing (null)' if v is None else 'empty'}: every row needs a label")
        bad = next((c for c in v if ord(c) < 32 or ord(c) == 127), None)
        if bad is not None:
            raise ValueError(f"{what} row {start + r + 1}: the label {v.strip()[:20]!r} (column {name!r}) holds a "
                             f"control character (U+{ord(bad):04X}): expected printable text")
    return np.strings.strip(np.asarray(values, dtype=str))


def load_arrow(p: Path, label_column, notes: list[str], shown: str | None = None,
               label_names: list | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Read the ``.parquet`` or ``.feather`` file at ``p``.

    ``label_column`` as :func:`xpnet.data.load_file` takes it; ``shown`` is the name messages give
    the file (default ``p``); ``label_names``, when a list, gets the names of several label columns.
    Returns ``(X, y)``: ``X`` ``(m, n)`` float64 (booleans as 0 and 1); ``y`` ``(m,)`` float64,
    ``(m,)`` str for a text column, ``(m, k)`` float64 for ``k`` label columns, or ``None``
    when ``label_column`` is ``None``.
    """
    shown = shown or str(p)
    what, kind = f"--data {shown!r}", KINDS[p.suffix.lower()]
    pa = _pyarrow(what, kind)
    schema, m, batches = _open(pa, p, what, kind)
    metadata = schema.pandas_metadata or {}
    index = [c for c in metadata.get("index_columns", []) if isinstance(c, str) and c in schema.names]
    if index:
        notes.append(f"dropped column{'s' if len(index) > 1 else ''} {', '.join(map(repr, index))}: pandas' row index, "
                     "not a feature")
    fields = [f for f in schema if f.name not in index]
    names = [f.name for f in fields]
    if not fields:
        raise ValueError(f"{what} has no columns: expected numeric feature columns (and a label column)")
    if len(set(names)) != len(names):
        twice = next(v for v in names if names.count(v) > 1)
        raise ValueError(f"{what} has two columns named {twice!r}: expected distinct column names")
    if isinstance(label_column, (list, tuple)) and len(label_column) == 1:
        label_column = label_column[0]
    place = functools.partial(_position, shown, names)  # a column (index or name) -> its position
    cols = [] if label_column is None else label_positions(label_column, place, len(names), shown, names)
    for j, f in enumerate(fields):
        if j in cols and len(cols) > 1 and not _numeric(pa, f.type):
            raise ValueError(f"--label-column {f.name!r} of {shown!r} holds {f.type}: several label columns are "
                             "multi-label rows of 0 and 1")
        if j in cols and len(cols) == 1 and (_numeric(pa, f.type) or _text(pa, f.type)):
            continue
        if j not in cols and _text(pa, f.type):
            raise ValueError(f"{what}: column {f.name!r} holds text ({f.type}): a text column is labels, not a "
                             f"feature: expected numbers, or --label-column {f.name!r}")
        if not _numeric(pa, f.type):
            raise ValueError(f"{what}: column {f.name!r} has type {f.type}: expected numbers (features) or text "
                             "(labels)")
    if m == 0:
        raise ValueError(f"{what} has no rows: expected at least one")
    features = [j for j in range(len(fields)) if j not in cols]
    text = len(cols) == 1 and _text(pa, fields[cols[0]].type)
    if text:
        notes.append(f"the labels (column {names[cols[0]]!r}) are text: y holds strings")
    if label_names is not None and len(cols) > 1:
        label_names[:] = [names[c] for c in cols]
    X = np.empty((m, len(features)))  # (m, n)
    y = np.empty((m, len(cols))) if cols and not text else None  # (m, k)
    labels = []  # text labels, a (rows,) str array a batch
    start = 0
    for batch in batches(names):
        rows = batch.num_rows
        for at, j in enumerate(features):
            X[start:start + rows, at] = _numbers(pa, what, names[j], batch.column(j), start)
        if text:
            labels.append(_strings(pa, what, names[cols[0]], batch.column(cols[0]), start))
        elif y is not None:
            for at, j in enumerate(cols):
                y[start:start + rows, at] = _numbers(pa, what, names[j], batch.column(j), start)
        start += rows
    if start != m:
        raise ValueError(f"{what} holds {start} rows where its metadata says {m}: the file is damaged")
    if text:
        return X, np.concatenate(labels)
    if y is None:
        return X, None
    return X, (y[:, 0].copy() if len(cols) == 1 else y)
