"""Logs that survive the run: one CSV row per epoch (and TensorBoard scalars), on disk as
soon as the epoch ends.

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
import time
import weakref
from pathlib import Path

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


class TensorBoardLogger(Callback):
    """The values :class:`CSVLogger` writes (but the epoch) as TensorBoard scalars, at step = the
    epoch, in an event file under ``logdir`` (made if missing); written and fsync'ed as each epoch ends.

    Needs ``tensorboardX`` (``pip install tensorboardX``; from a checkout
    ``pip install ".[tensorboard]"``): a small pure-Python writer that needs protobuf, not
    TensorFlow or PyTorch. Its synchronous ``EventsWriter`` is used (no thread,
    no queue), so a killed run keeps every epoch it finished. A resumed run marks its first epoch as
    a restart, so TensorBoard hides what the stopped run logged from there on (``purge_step``).
    Under data parallelism, give it to rank 0 only.
    """

    def __init__(self, logdir: str | os.PathLike):
        try:
            from tensorboardX.event_file_writer import EventsWriter
        except ImportError:
            raise ValueError("TensorBoard logs need tensorboardX, which is not installed: "
                             "pip install tensorboardX (from a checkout: pip install \".[tensorboard]\")") from None
        self._events_writer = EventsWriter
        self.logdir = os.fspath(logdir)
        path = Path(self.logdir)
        if path.exists() and not path.is_dir():
            raise ValueError(f"logdir={self.logdir!r} is a file: expected a directory")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValueError(f"logdir={self.logdir!r} cannot be made ({exc.strerror or exc})") from None
        if not os.access(path, os.W_OK | os.X_OK):
            raise ValueError(f"logdir={self.logdir!r} is not a writable directory")
        self.writer = None

    def on_train_begin(self, model, history):
        self.close()

    def on_epoch_end(self, model, history: History) -> bool:
        from tensorboardX.proto.event_pb2 import Event, SessionLog
        from tensorboardX.summary import scalar

        last = history.last()
        step = last["epoch"]
        if self.writer is None:
            # its name has the time in seconds: the suffix keeps a run resumed within the second from
            # replacing the stopped run's file (the writer opens it with "wb")
            self.writer = self._events_writer(os.path.join(self.logdir, "events"), f".{os.getpid()}.{time.time_ns()}")
            # closed when fit returns, or when this object goes (a run that raised), or at exit
            self._closing = weakref.finalize(self, self.writer.close)
            if len(history.epoch) > 1:  # resumed: TensorBoard drops the stopped run's events from here on
                self.writer.write_event(Event(wall_time=time.time(), step=step,
                                              session_log=SessionLog(status=SessionLog.START)))
        for name in [c for c in COLUMNS if c in last and c != "epoch"] + [c for c in last if c not in COLUMNS]:
            self.writer.write_event(Event(wall_time=time.time(), step=step, summary=scalar(name, float(last[name]))))
        self.writer.flush()  # flushed and fsync'ed
        return False

    def on_train_end(self, model, history):
        self.close()

    def close(self) -> None:
        """Close the event file (a later run with this object starts a new one)."""
        if self.writer is not None:
            self._closing()
            self.writer = None
