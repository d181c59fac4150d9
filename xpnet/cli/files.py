"""The user's files: reading ``--data`` (with the record that finds its split again),
refusing an output that is an input, probing the ``--plot`` directory, telling a
non-.npz ``--model`` in words, and saying the flag in a library's message."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from .flags import UsageError


def print_notes(notes: list[str], quiet: bool) -> None:
    """What a reader did without being asked (BOM, header, index column...): one line each on stderr."""
    if not quiet:
        for note in notes:
            print(f"xpnet: note: {note}", file=sys.stderr)


def read_labelled_file(path: str, label_column, delimiter: str | None = None, quiet: bool = False,
                        identity: dict | None = None, label_names: list | None = None):
    """``(X, y)`` of a user file, with the labels the CLI needs: one per row, or a row of 0/1 per
    row (multi-label). ``identity``, when a dict, gets the file's name, size and SHA-256 (of the
    bytes read: a stream is read once)."""
    import numpy as np

    from ..data import load_file

    notes: list[str] = []
    X, y = load_file(path, label_column, delimiter, notes, identity, label_names=label_names)
    print_notes(notes, quiet)
    if y is None:
        raise UsageError(f"--data {path!r} has no labels: expected an array 'y' (or a label column in a .csv)")
    if len(y) != len(X) or y.ndim not in (1, 2):
        raise UsageError(f"--data {path!r}: y has shape {y.shape} for {len(X)} rows: expected ({len(X)},), or "
                         f"({len(X)}, k) 0/1 rows for k labels (multi-label)")
    if y.ndim == 2 and not (y.shape[1] >= 2 and y.dtype.kind in "biuf" and np.all((y == 0) | (y == 1))):
        raise UsageError(f"--data {path!r}: y has shape {y.shape}: a 2-D y holds multi-label rows, 0 or 1 in each "
                         "of 2+ columns (one per label)")
    return X, y


def load_data(dataset: str, data: str | None, label_column: int | str, seed: int, test_fraction: float,
               data_dir: str | None, mirror: str | None, delimiter: str | None = None, quiet: bool = False):
    """``(Dataset, classes, record)`` from ``--data`` (split by ``test_fraction``) or ``--dataset``.

    ``classes`` are the distinct labels of the whole file (``0..k-1`` for built-in sets;
    ``None`` for real-valued targets); ``record`` identifies the data and its split for the
    model file, so that ``evaluate --split test`` can find the same rows again.
    """
    import numpy as np

    from ..data import Dataset, load_dataset
    from ..data import split as split_rows

    if data is None:
        d = load_dataset(dataset, seed, test_fraction, data_dir, mirror)
        record = {"source": "dataset", "name": dataset, "seed": seed, "test_fraction": test_fraction}
        return d, np.arange(d.n_classes, dtype=np.int64), record
    from ..labels import classes_of
    from ..validate import check_features

    identity: dict = {}
    label_names: list = []
    X, y = read_labelled_file(data, label_column, delimiter, quiet, identity, label_names)
    if len(X) < 2:
        raise UsageError(f"--data {data!r} has {len(X)} row(s): expected at least 2 (a train and a test sample)")
    check_features(X, X.shape[1] if X.ndim == 2 else 0)  # every row, test rows too, before any work
    classes = classes_of(y) if y.ndim == 1 else (np.asarray(label_names) if label_names else None)  # labels' names
    name = identity["file"]
    split = split_rows(X, y, test_fraction, name, 0, seed)
    record = {"source": "file", **identity, "label_column": label_column, "delimiter": delimiter,
              "seed": seed, "test_fraction": test_fraction}
    return Dataset(*split[:4], name, 0 if classes is None else len(classes)), classes, record


def check_plot_dir(path: str | None) -> Path | None:
    """Check matplotlib and make the --plot directory before any work is done."""
    if path is None:
        return None
    from ..plot import pyplot

    pyplot()  # ValueError with the install hint when matplotlib is missing
    import tempfile

    p = Path(path)
    if p.exists() and not p.is_dir():
        raise UsageError(f"--plot {path!r} is a file: expected a directory")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".xpnet-probe.", dir=p)  # permissions, read-only mounts, quotas
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UsageError(f"--plot {path!r} is not a writable directory ({exc.strerror or exc})") from None
    return p


# Every figure a command may write into --plot DIR, by command.


PLOT_FILES = {
    "train": ("history.png", "decision_boundary.png", "confusion.png", "misclassified.png"),
    "sweep": ("sweep_boundaries.png", "sweep_accuracy.png"),
    "evaluate": ("confusion.png",),
}


def _same_file(a: str, b: str) -> bool:
    """Whether two paths name one file, however spelled: symlinks resolved, and inode and
    device compared where both exist (hard links, bind mounts)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def check_paths(inputs, outputs, allowed=()) -> None:
    """Refuse, before any work, an output that is the same file as an input or as another output.

    ``inputs`` and ``outputs`` are ``(flag, path or None)`` pairs; ``allowed`` lists
    (output flag, input flag) pairs that may coincide: ``--checkpoint`` continuing the
    ``--resume`` file it was read from.
    """
    outs = [(flag, path) for flag, path in outputs if path]
    ins = [(flag, path) for flag, path in inputs if path]
    for i, (flag, path) in enumerate(outs):
        for other, other_path in ins:
            if (flag, other) not in allowed and _same_file(path, other_path):
                raise UsageError(f"{flag} {path!r} is the same file as {other} {other_path!r}: writing it would "
                                 "destroy the input; choose another output path")
        for other, other_path in outs[i + 1:]:
            if _same_file(path, other_path):
                raise UsageError(f"{flag} {path!r} is the same file as {other} {other_path!r}: "
                                 "expected a different path for each output")


def plot_outputs(command: str, plot: str | None) -> list[tuple[str, str]]:
    """The --plot files of ``command`` as outputs for :func:`check_paths`."""
    return [("--plot", str(Path(plot) / name)) for name in PLOT_FILES[command]] if plot else []


@contextlib.contextmanager
def as_flags(*names):
    """Say the flag where a library message names its argument: ``names`` are
    ``(argument, flag, value)``, and ``path='m.npz'`` becomes ``--model 'm.npz'``."""
    try:
        yield
    except ValueError as exc:
        text = str(exc)
        for argument, flag, value in names:
            if value is not None:
                text = text.replace(f"{argument}={str(value)!r}", f"{flag} {str(value)!r}")
        if text == str(exc):
            raise
        raise UsageError(text) from exc


def check_npz(flag: str, path: str | None, what: str) -> None:
    """Refuse a file that is no .npz archive at all (a CSV given as --model) in words a user
    knows; the loader, which would call it pickled data, is not asked. Missing files are left
    to the loader's own message."""
    if path is None:
        return
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        return
    if head.startswith(b"PK"):  # a zip archive, as every .npz is
        return
    if not head:
        kind = "it is empty"
    elif _looks_like_text(head):
        data_like = Path(path).suffix.lower() in (".csv", ".tsv", ".txt")
        kind = "it is a text file" + (" (data goes in --data)" if data_like else "")
    else:
        kind = "it is not a .npz (zip) archive"
    raise UsageError(f"{flag} {path!r} is not {what} (.npz): {kind}")


def _looks_like_text(head: bytes) -> bool:
    """Whether the first bytes of a file read as UTF-8 text (no NUL; a cut last character is fine)."""
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        return len(head) == 512 and exc.start >= len(head) - 3
    return True
