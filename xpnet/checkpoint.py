"""Checkpoints: everything a resumed run needs, in one atomic ``.npz``.

Weights (the model file's arrays with a ``param.`` prefix, so a checkpoint loads as a
model too), optimizer state, the history, callback state, the position inside the
epoch and the run's settings. A resume refuses a checkpoint from another run
(architecture, classes, input scaling, data shape, batch size, seed, optimizer) and,
unless allowed, other optimizer settings or another number of data-parallel processes.

One live run writes a checkpoint path at a time (:class:`CheckpointLock`): a second run
naming the same file, however spelled, is refused before it trains, instead of the two
overwriting each other's progress.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from dataclasses import dataclass

import numpy as np

from ._version import __version__
from .backend import to_numpy
from .history import History
from .io import (
    CHECKPOINT_FORMAT,
    FORMAT_VERSION,
    StoredModel,
    checked_version,
    load_arrays,
    model_arrays,
    model_metadata,
    save_arrays,
)
from .losses import LossSettings
from .model import MLP

try:
    import fcntl
except ImportError:  # Windows: no flock; see CheckpointLock
    fcntl = None


@dataclass
class Position:
    """Where a run is: ``epoch`` (0-based, in progress), ``step`` (steps done in it), and the
    partial sums of that epoch, kept on the host as exact NumPy values."""

    epoch: int = 0
    step: int = 0
    losses: np.ndarray | None = None  # (step,) per-step losses summed over each batch's rows, model dtype
    correct: int = 0


# run settings that must match for a resume to continue the same run
RESUME_KEYS = ("m", "n_in", "targets", "batch_size", "seed", "shuffle", "optimizer", "row_weights")  # weights: a digest


def save_checkpoint(path, model, optimizer, history, position: dict, callbacks, run: dict) -> None:
    """Write everything a resume needs, atomically: weights, optimizer state, history,
    callback state, the position (epoch, step inside it, partial sums) and the run's settings."""
    arrays = model_arrays(model, "param.")
    opt_meta, opt_arrays = optimizer.state()
    for name, values in opt_arrays.items():
        for i, a in enumerate(values):
            arrays[f"opt.{name}.{i}"] = to_numpy(a)
    cb_meta = []
    for k, cb in enumerate(callbacks):
        if hasattr(cb, "state"):
            meta, values = cb.state()
            cb_meta.append({"index": k, "type": type(cb).__name__, "state": meta, "arrays": len(values)})
            for i, a in enumerate(values):
                arrays[f"cb.{k}.{i}"] = to_numpy(a)
    losses = position.get("losses")
    arrays["position.losses"] = np.zeros(0, model.dtype) if losses is None else np.asarray(losses)
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "format_version": FORMAT_VERSION,
        "xpnet_version": __version__,
        "model": model_metadata(model),
        "run": run,
        "position": {"epoch": position["epoch"], "step": position["step"], "correct": position["correct"]},
        "history": history.to_dict(),
        "optimizer": opt_meta,
        "callbacks": cb_meta,
    }
    save_arrays(path, arrays, metadata)


def load_checkpoint(path, model, optimizer, callbacks, run: dict, allow_changes: bool = False):
    """Restore a checkpoint into ``model``, ``optimizer`` (attached) and ``callbacks``.

    Returns ``(history, position)``. Raises ValueError for a damaged file or for one
    written by a different architecture, classes, input scaling, data shape, batch size,
    seed or optimizer; and for other optimizer hyperparameters (learning rate, momentum,
    schedule, weight decay, ...) or another number of processes (``run["world_size"]``,
    data-parallel ranks) unless ``allow_changes``, in which case the history records each
    change (``history.changes``).
    """
    arrays, meta = load_arrays(path)
    where = f"resume={str(path)!r}"
    version = checked_version(meta, where, CHECKPOINT_FORMAT, "an xpnet checkpoint")
    try:
        stored = StoredModel(arrays, meta["model"], where, "param.", MLP.check_config)  # checks the config
        config = stored.config
        saved_run, position, opt_meta = dict(meta["run"]), dict(meta["position"]), dict(meta["optimizer"])
        history = History.from_dict(dict(meta["history"]))
        epoch, step, correct = int(position["epoch"]), int(position["step"]), int(position["correct"])
        cb_meta = list(meta["callbacks"])
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ValueError) and str(exc).startswith(where):
            raise
        raise ValueError(f"{where} has malformed metadata ({type(exc).__name__}: {exc})") from None
    mine = model.config()
    for key in ("sizes", "activation", "output", "loss", "dtype", "classes"):
        if config.get(key) != mine[key] and not (key == "classes" and "classes" not in config):  # v1: no classes
            raise ValueError(f"{where} was written for {key}={config.get(key)!r}, but this run has {key}={mine[key]!r}")
    for key, default in LossSettings()._asdict().items():  # absent: the default
        if config.get(key, default) != mine.get(key, default):
            raise ValueError(f"{where} was written for {key}={config.get(key, default)!r}, but this run has "
                             f"{key}={mine.get(key, default)!r}")
    for key, default in (("dropout", 0.0), ("norm", None), ("residual", False)):  # the layers; absent: none
        if config.get(key, default) != mine.get(key, default):
            raise ValueError(f"{where} was written for {key}={config.get(key, default)!r}, but this run has "
                             f"{key}={mine.get(key, default)!r}")
    if config.get("multilabel") != mine.get("multilabel"):  # absent: not multi-label (or decided by no fit yet)
        raise ValueError(f"{where} was written for multilabel={config.get('multilabel')!r}, but this run has "
                         f"multilabel={mine.get('multilabel')!r}")
    scaler = stored.scaler()
    if scaler != model.scaler and not (scaler is None and model.scaler is None):
        kinds = [getattr(sc, "kind", "none") for sc in (scaler, model.scaler)]
        why = (f"its {kinds[0]} scaling was fitted on other rows than this run's" if kinds[0] == kinds[1]
               else f"it scales inputs by {kinds[0]}, this run by {kinds[1]}")
        raise ValueError(f"{where} was written with another input scaling ({why}): resume with the same data and "
                         "--scale, or with --init-from the model the run started from")
    target = stored.target_scaler()
    if target != model.target_scaler and not (target is None and model.target_scaler is None):
        raise ValueError(f"{where} was written with another target scaling ({getattr(target, 'kind', 'none')}, "
                         f"this run {getattr(model.target_scaler, 'kind', 'none')}, or fitted on other rows): "
                         "resume with the same data and settings")
    for key in RESUME_KEYS:
        if saved_run.get(key) != run.get(key):
            raise ValueError(f"{where} was written with {key}={saved_run.get(key)!r}, but this run has "
                             f"{key}={run.get(key)!r}: resume with the same data and settings")
    saved, now = {k: v for k, v in opt_meta.items() if k not in ("type", "t")}, optimizer.hyperparameters()
    changed = {k: [saved.get(k), now.get(k)] for k in {**now, **saved} if saved.get(k) != now.get(k)}  # e.g. form
    ranks = [saved_run.get("world_size", 1), run.get("world_size", 1)]  # processes; older checkpoints: one
    if ranks[0] != ranks[1]:
        if not allow_changes:
            same = "in one process" if ranks[0] == 1 else f"on {ranks[0]} ranks (mpiexec -n {ranks[0]} ... --distributed)"
            raise ValueError(f"{where} was written by {ranks[0]} process(es) and this run has {ranks[1]}: the gradients "
                             "would be summed in another order, so the run would not continue bit for bit; resume "
                             f"{same}, or allow the change (--allow-changes; fit(..., allow_changes=True)), which the "
                             "history records")
        changed["world_size"] = ranks
    if changed and not allow_changes:
        listed = ", ".join(f"{k} {old!r} (now {new!r})" for k, (old, new) in changed.items())
        raise ValueError(f"{where} was written with other optimizer settings: {listed}; resume with the same ones, "
                         "or allow the change (--allow-changes; fit(..., allow_changes=True)), which the history records")
    if 0 <= epoch and run["epochs"] < epoch and step >= 0 and len(history.epoch) == epoch:
        raise ValueError(f"{where} has {epoch} epoch(s) done, more than the {run['epochs']} epochs this run asks for in "
                         f"all (epochs count from the start, not from the checkpoint): ask for at least {epoch} "
                         f"(--epochs {epoch} ends the run where it stopped; more continues it)")
    if not (0 <= epoch <= run["epochs"]) or step < 0 or len(history.epoch) != epoch:
        raise ValueError(
            f"{where} has an inconsistent position (epoch {epoch}, step {step}, {len(history.epoch)} epochs of history)"
        )
    params, stats = stored.params(), stored.stats()
    opt_arrays = {}
    for name in optimizer.STATE:
        if getattr(optimizer, name) is None:
            continue
        if version == 1:  # state per layer, in the order of params: lay it out like model.flat
            values = [arrays.get(f"opt.{name}.{i}") for i in range(len(params))]
            if any(v is None or v.shape != p.shape or v.dtype != p.dtype for v, p in zip(values, params)):
                raise ValueError(f"{where} optimizer state {name!r} is missing or does not match the parameters")
            opt_arrays[name] = [model.pack(values)]
        else:
            value = arrays.get(f"opt.{name}.0")
            if value is None or value.shape != (model.n_params,) or value.dtype != np.dtype(model.dtype):
                raise ValueError(f"{where} optimizer state {name!r} is missing or does not match the parameters")
            opt_arrays[name] = [value]
    losses = arrays.get("position.losses")
    if losses is None or losses.ndim != 1 or len(losses) != step:
        raise ValueError(f"{where} has partial-epoch losses that do not match step {step}")
    if version == 1 and step:  # version 1 kept per-step means; the steps before `step` are full batches
        losses = losses * (run["batch_size"] or run["m"])
    model.params = params
    if stats is not None:  # batch norm's running statistics
        model.stats[...] = model.backend.asarray(stats)
    optimizer.load_state(opt_meta, opt_arrays, model.backend.asarray)
    # Each saved state goes to the next callback of its type, in order: a run resumed with a callback
    # added or removed before it (--early-stopping) still gets its plateau's reduced rate back.
    waiting = [cb for cb in callbacks if hasattr(cb, "load_state")]
    for entry in cb_meta:
        k = int(entry["index"])
        match = next((cb for cb in waiting if type(cb).__name__ == entry["type"]), None)
        if match is not None:
            waiting.remove(match)
            match.load_state(entry["state"], [arrays[f"cb.{k}.{i}"] for i in range(int(entry["arrays"]))], model)
    if saved_run.get("epochs") not in (None, run["epochs"]):
        # a longer (or shorter) run is allowed, but it moves a cosine or step schedule: say so in the history
        changed["epochs"] = [saved_run["epochs"], run["epochs"]]
    if changed:
        history.changes.append({"epoch": epoch + 1, "step": step, "changed": changed})
    return history, Position(epoch, step, losses if step else None, correct)


class CheckpointLock:
    """While held, no other run may write checkpoints to ``path``: the ``with`` block around a
    run that writes them (:func:`xpnet.fit` holds one from its checks to its return or raise).

    A second lock on the same file, from another process or from this one, raises a
    ``ValueError`` naming the path and the holder's pid, however the path is spelled:

    - beside the directory entry each write replaces (the directory resolved, the last name
      kept: the rename replaces a symlink there, it does not follow it), a sidecar
      ``.NAME.lock`` carries an exclusive ``flock`` and the holder's pid and host; so
      ``ck.npz``, ``./ck.npz``, an absolute path and a path through a symlinked directory
      all meet on one lock file;
    - a path that is a symlink also locks the sidecar beside the file it leads to;
    - the checkpoint file itself, when it exists, is locked too, so a hard link to it (same
      inode, another name) is refused; after each write, :meth:`moved` locks the new file.

    The locks are advisory and belong to this process's open files: the OS releases them if
    the process dies, so a killed run never blocks the next (its sidecar stays behind, empty
    of meaning, and the next holder takes it over). :meth:`release` removes the sidecars.
    Reading a checkpoint (``resume``) takes no lock: the writes are atomic renames, so a run
    that resumes from a file another run is writing reads one whole checkpoint of it, and
    goes on in its own file. On platforms without ``fcntl`` (Windows) nothing is locked.
    """

    def __init__(self, path, name: str = "checkpoint"):
        self.path, self.name = os.fspath(path), name
        self._sidecars: list[tuple[str, int]] = []  # (lock file, descriptor holding its flock)
        self._file: int | None = None  # descriptor holding the flock on the checkpoint file itself

    def __enter__(self) -> CheckpointLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False

    def acquire(self) -> None:
        """Take the locks; ValueError naming the path and the holder if another run has them."""
        if fcntl is None:
            # Windows has no flock; msvcrt.locking locks byte ranges that others cannot even read
            # (no pid to report) and forbids unlinking a file held open. Two runs there are not
            # told apart: the check is a safeguard, the atomic writes still keep each file whole.
            return
        # the entry each write replaces; realpath, not abspath, resolves "..": "link/../ck.npz"
        # is beside where "link" leads, as the kernel resolves it
        parent, base = os.path.split(self.path.rstrip(os.sep) or self.path)
        target = os.path.join(os.path.realpath(parent or os.curdir), base)
        real = os.path.realpath(self.path)  # where the path leads now, through a symlink
        try:
            self._lock_sidecar(target, required=True)
            if real != target:
                self._lock_sidecar(real, required=False, leads_to=real)
            self._file = self._lock_file(refuse=True)
        except BaseException:
            self.release()
            raise

    def moved(self) -> None:
        """After a write renamed a new file into place: lock it, and let the replaced one go."""
        if self._sidecars:
            fd = self._lock_file(refuse=False)
            if fd is not None:
                if self._file is not None:
                    os.close(self._file)
                self._file = fd

    def release(self) -> None:
        """Drop the locks and remove the sidecars (each removed while still locked: a run that
        opened it meanwhile finds, once it has the lock, that the path names no longer it, and retries)."""
        if self._file is not None:
            os.close(self._file)
            self._file = None
        while self._sidecars:
            lock_path, fd = self._sidecars.pop()
            try:
                with contextlib.suppress(OSError):
                    if _same_inode(os.fstat(fd), lock_path):
                        os.unlink(lock_path)
            finally:
                os.close(fd)

    def _refusal(self, holder: str, why: str = "") -> ValueError:
        return ValueError(f"{self.name}={self.path!r} is in use by {holder}{why}: two runs writing one checkpoint "
                          "overwrite each other's progress; choose another checkpoint path or wait for it to finish")

    def _lock_sidecar(self, checkpoint: str, required: bool, leads_to: str | None = None) -> None:
        """Lock ``.NAME.lock`` beside ``checkpoint`` and record this process in it."""
        directory, base = os.path.split(checkpoint)
        lock_path = os.path.join(directory, f".{base}.lock")
        while True:  # again only when a finishing holder removed the file between our open and our lock
            try:
                fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
            except OSError as exc:
                if not required:  # e.g. a symlink into a read-only directory: no run writes there
                    return
                raise ValueError(f"{self.name}={self.path!r} cannot be locked against other runs: "
                                 f"{lock_path!r} cannot be created ({exc.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _holder(fd)
                os.close(fd)
                why = f", which writes {leads_to!r}, where this path leads" if leads_to else ""
                raise self._refusal(holder, why) from None
            except OSError:  # a file system without locks (ENOLCK, EOPNOTSUPP): no check possible there
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(lock_path)
                return
            if _same_inode(os.fstat(fd), lock_path):
                break
            os.close(fd)
        self._sidecars.append((lock_path, fd))
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        except OSError:  # the lock holds without the record; a refused run then names no pid
            pass

    def _lock_file(self, refuse: bool) -> int | None:
        """A descriptor holding the flock on the checkpoint file (``None`` if there is none, or
        it cannot be locked); with ``refuse``, another holder is a ValueError (a hard link)."""
        try:  # non-blocking: a FIFO given as the path must not hang the open
            fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        except OSError:  # not there yet, or not readable: only the sidecar guards it
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError("not a regular file")
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if refuse:
                raise self._refusal("another running xpnet", ", which writes this same file under another name "
                                    "(a hard link)") from None
            return None
        except OSError:
            os.close(fd)
            return None
        return fd


def _same_inode(st: os.stat_result, path: str) -> bool:
    """Whether ``path`` (not followed) still names the file ``st`` describes."""
    try:
        now = os.lstat(path)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino)


def _holder(fd: int) -> str:
    """Who holds a sidecar lock, from the pid and host it recorded: for a refusal's message."""
    try:
        pid, host = os.pread(fd, 512, 0).decode("utf-8", "replace").split()[:2]
        pid = int(pid)
    except (OSError, ValueError):  # not recorded yet (the holder is between its lock and its write)
        return "another running xpnet"
    if host != socket.gethostname():
        return f"another running xpnet (pid {pid} on {host})"
    if pid == os.getpid():
        return f"another run in this process (pid {pid})"
    return f"another running xpnet (pid {pid})"
