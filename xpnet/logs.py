"""Logs that survive the run: one CSV row per epoch, on disk as soon as the epoch ends.

Keras's ``CSVLogger`` is the model: a row per epoch, flushed, so a run killed by SIGKILL or
a power cut keeps every epoch it measured. Here each row is also fsync'ed (about 0.3 ms),
and the file always equals the run's :class:`~xpnet.history.History`: the first row
replaces the file atomically (an older file at the path stays whole until this run has
finished an epoch), and a resumed run writes the rows of the epochs its checkpoint holds
before its own, so that epochs run after the checkpoint by the killed run are not repeated.
"""

from __future__ import annotations

import csv
import io
import os

from .history import History
from .io import atomic_write, check_writable
from .train import Callback

# the epoch line's metrics in its order, then the learning rate and the timings
COLUMNS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr", "seconds", "samples_per_second")


class CSVLogger(Callback):
    """Write one CSV row per epoch to ``path``: every value of :meth:`History.last`
    (the epoch, the losses and accuracies present in this run, the learning rate, the
    epoch's seconds and samples per second), under a header naming them.

    A classifier's file has ``train_accuracy`` (and ``val_accuracy`` with validation data);
    a regressor's has neither. Rows are written as each epoch ends, flushed and fsync'ed.
    The first row of a run rewrites the file from the history (on a resume: the epochs the
    checkpoint holds, then this run's). Under data parallelism, give it to rank 0 only.
    """

    def __init__(self, path: str | os.PathLike):
        check_writable(path, "path")
        self.path = os.fspath(path)
        self.columns: list[str] | None = None

    def on_train_begin(self, model, history):
        self.columns = None  # the header is set by the first row: the metrics of this run

    def on_epoch_end(self, model, history: History) -> bool:
        if self.columns is None:
            last = history.last()
            self.columns = [c for c in COLUMNS if c in last] + [c for c in last if c not in COLUMNS]
            text = io.StringIO()
            writer = csv.writer(text, lineterminator="\n")
            writer.writerow(self.columns)
            writer.writerows(self._row(history, i) for i in range(len(history.epoch)))
            with atomic_write(self.path) as f:  # the old file stays whole until this write is complete
                f.write(text.getvalue().encode())
            return False
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerow(self._row(history, len(history.epoch) - 1))
            f.flush()
            os.fsync(f.fileno())  # on disk, not only in the page cache: a crash keeps the row too
        return False

    def _row(self, history: History, i: int) -> list:
        """Epoch ``i``'s values in the header's order (floats as ``repr``: they read back exactly); an
        entry a history lacks for that epoch (an older checkpoint's) is left empty."""
        row = []
        for column in self.columns:
            values = getattr(history, column, None)
            row.append(values[i] if isinstance(values, list) and i < len(values) else "")
        return row
