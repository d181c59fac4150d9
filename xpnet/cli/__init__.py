"""The ``xpnet`` command line: ``main(argv) -> exit code``.

Subcommands: ``train``, ``evaluate``, ``predict``, ``sweep``, ``export``, ``bench``, ``info``.

Every user error (bad flag value, unusable device, shape mismatch, unreadable
file) is printed as one line on stderr with exit code 2; there are no tracebacks
for things a user can fix. A failed run never overwrites a good ``--save`` file.
Output into a pipe whose reader has gone (``xpnet train | head -1``) ends the
command quietly with exit code 0 (see :func:`main`). The commands that compute run
with a chosen number of BLAS threads (``--threads``; :func:`default_threads`).

Which file does what, lowest first (each imports only from those before it):
``flags.py`` (with ``xpnet/threads.py``, which counts cores and BLAS threads) holds the parser, its flag
types and help texts, :class:`TrainConfig` and the presets; ``files.py`` reads
``--data`` and checks the user's files and output paths; ``reports.py`` prints
progress, results and class or regression reports; ``train.py`` runs ``train`` and
``sweep``, ``evaluate.py`` runs ``evaluate`` and ``predict``, ``export.py`` runs ``export``,
``tools.py`` runs ``bench`` and ``info``; this file parses, dispatches and turns exceptions, signals
and a closed pipe into exit codes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from ..threads import blas_threads, default_threads, usable_cores
from .evaluate import cmd_evaluate, cmd_predict
from .export import cmd_export
from .flags import EXIT_DIVERGED, EXIT_USAGE, PRESETS, PRESETS_HELP, TrainConfig, UsageError, build_parser
from .tools import cmd_bench, cmd_info
from .train import cmd_sweep, cmd_train

__all__ = ["PRESETS", "PRESETS_HELP", "TrainConfig", "UsageError", "blas_threads", "default_threads", "main",
           "usable_cores"]

COMMANDS = {"train": cmd_train, "sweep": cmd_sweep, "evaluate": cmd_evaluate, "predict": cmd_predict,
            "export": cmd_export, "bench": cmd_bench, "info": cmd_info}  # command -> handler(args) -> exit code


def _resume_hint(argv: list[str], checkpoint: str) -> str:
    """The command that continues an interrupted run: the same arguments plus --resume."""
    import shlex

    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--resume":
            skip = True
            continue
        if not arg.startswith("--resume="):
            kept.append(arg)
    return "xpnet " + shlex.join([*kept, "--resume", checkpoint])


# Flags that name files a command writes: a run that has any still finishes it after stdout's reader has gone.


OUTPUT_FLAGS = ("save", "checkpoint", "out", "plot", "json", "markdown", "onnx")  # json, markdown: bench's FILE
COMPUTING = ("train", "sweep", "evaluate", "predict", "bench")  # the commands that take --threads


class _ReaderGone(BaseException):
    """stdout's reader has gone (``| head``) and the command has nothing left but to print.

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` on the way
    out (a library's, a callback's) takes it for an error to handle.
    """


class _PipeGuard:
    """``sys.stdout`` or ``sys.stderr`` for one command, safe when the reader goes away.

    At the first broken pipe the stream's file descriptor is pointed at /dev/null, so that
    nothing later fails, not even the interpreter's last flush; writes then go nowhere.
    With ``stop`` (stdout of a command with no file left to write) it also raises
    :class:`_ReaderGone`, which :func:`main` turns into exit code 0.
    """

    def __init__(self, stream, stop: bool):
        self._stream, self._stop, self.gone = stream, stop, False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._reader_gone()
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._reader_gone()

    def _reader_gone(self) -> None:
        self.gone = True
        _silence(self._stream)
        if self._stop:
            raise _ReaderGone

    def __getattr__(self, name: str):  # isatty, fileno, encoding, ...: the stream's own
        return getattr(self._stream, name)


def _silence(stream) -> None:
    """Point ``stream``'s file descriptor at /dev/null (where it has one)."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # io.UnsupportedOperation is both
        fd = stream.fileno()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, fd)
        os.close(devnull)


@contextlib.contextmanager
def _threads_for(args: argparse.Namespace, comm=None):
    """Run a computing command with ``--threads`` (or :func:`default_threads`) BLAS threads."""
    threads = getattr(args, "threads", None) or (default_threads(comm) if args.command in COMPUTING else None)
    if threads is None:
        yield
        return
    import numpy  # noqa: F401  (loads the BLAS, so that threadpoolctl finds it)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        asked, cores = getattr(args, "threads", None), usable_cores()
        if asked is not None and asked > cores and not getattr(args, "quiet", False):
            running = blas_threads()
            runs = f"the BLAS runs {running}" if running is not None else "the BLAS's own limit applies"
            capped = " (its most)" if running is not None and running < asked else ""
            print(f"xpnet: note: --threads {asked} is more than the {cores} usable core{'s' if cores != 1 else ''}: "
                  f"{runs}{capped}, and threads beyond the cores slow training down", file=sys.stderr)
        yield


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code.

    0: done; 2: a usage or input error (one line on stderr); 3: training diverged;
    130 / 143: interrupted by SIGINT / SIGTERM (after writing the checkpoint, if any).
    ``xpnet`` with no command prints the help to stdout and returns 2 (a usage error).

    A closed pipe (``xpnet train | head -1``) is not an error: once stdout's reader has
    gone, nothing more is printed, nothing is said on stderr, and the exit code is 0.
    A command with only printing left stops at once; one with files still to write
    (``--save``, ``--checkpoint``, ``--out``, ``--plot``, ``bench --json/--markdown``)
    finishes them first. A reader of stderr going away (progress bars, notes) only
    silences stderr.
    """
    from ..distributed import PeerFailed, WeightsDiffer, launched_copies
    from ..train import OutOfMemory, TrainingDiverged, TrainingInterrupted

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    copies, rank = launched_copies()  # from the environment mpiexec sets; (1, 0) without it
    comm = None
    if getattr(args, "distributed", False):
        from ..distributed import world

        try:
            comm = world()
        except ValueError as exc:
            if rank == 0:
                print(f"xpnet: error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        rank = comm.rank
    elif copies > 1 and args.command != "info":  # N copies of one run is never what a user wants
        if rank == 0:
            print(f"xpnet: error: mpiexec started {copies} copies of 'xpnet {args.command}', each doing the whole "
                  "work alone: add --distributed to train one model across them (xpnet train --distributed), or "
                  "run xpnet without mpiexec", file=sys.stderr)
        return EXIT_USAGE
    stdout, stderr = sys.stdout, sys.stderr
    files_to_write = any(isinstance(getattr(args, flag, None), str) for flag in OUTPUT_FLAGS)
    sink = open(os.devnull, "w") if rank != 0 else None  # rank 0 speaks for all ranks
    if sink is not None:
        sys.stdout = sys.stderr = sink
    else:  # across ranks a closed pipe only silences rank 0: stopping it alone would end the job
        sys.stdout = _PipeGuard(stdout, stop=not files_to_write and comm is None)
        sys.stderr = _PipeGuard(stderr, stop=False)
    try:
        # across ranks, an error before training starts ends every rank with the same code
        with _threads_for(args, comm), (comm.setup_errors() if comm is not None else contextlib.nullcontext()):
            code = COMMANDS[args.command](args)
        sys.stdout.flush()  # here, not at exit: a closed pipe is caught below
        return code
    except _ReaderGone:
        return 0
    except TrainingDiverged as exc:
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as exc:
        import signal

        # the checkpoint is written: let nothing cut this line short (main's caller gets its handlers back)
        ignored = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
        if exc.checkpoint:
            hint = _resume_hint(argv, exc.checkpoint)
            if comm is not None and comm.size > 1:
                hint = f"mpiexec -n {comm.size} {hint}"
            how = f"checkpoint written; resume with: {hint}"
            if exc.complete:  # the last epoch was trained: nothing is lost but the end of the command
                how = (f"every epoch was trained and the checkpoint {exc.checkpoint} holds the finished model (xpnet "
                       f"evaluate --model {exc.checkpoint} scores it); --save, the test score and the figures were "
                       f"not done: {hint} does them")
        elif args.command == "sweep":
            how = "sweep keeps no checkpoints: run it again (--hidden with only the widths still to do)"
        elif exc.complete:
            how = "every epoch was trained, but without --checkpoint the model is lost: --save and the report were not done"
        else:
            how = "no checkpoint was written (add --checkpoint PATH to be able to resume)"
        name = "SIGINT" if exc.signum == 2 else "SIGTERM" if exc.signum == 15 else f"signal {exc.signum}"
        print(f"xpnet: interrupted by {name} at epoch {exc.epoch} after step {exc.step}; {how}", file=sys.stderr)
        sys.stderr.flush()
        for sig, handler in ignored.items():
            signal.signal(sig, handler)
        return exc.exit_code
    except (PeerFailed, WeightsDiffer) as exc:  # every rank raises it: another rank failed, or the sums differed
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (ValueError, OutOfMemory) as exc:  # includes DeviceError and UsageError
        print(f"xpnet: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # a closed pipe that did not go through sys.stdout: the same quiet end
        _silence(stdout)
        return 0
    except OSError as exc:  # e.g. disk full while writing; the old file is intact (atomic writes)
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"xpnet: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("xpnet: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # out of memory outside fit (evaluate, predict, building a model): one line too
        from ..faults import is_out_of_memory

        if not is_out_of_memory(exc):
            raise
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        print(f"xpnet: error: out of memory ({type(exc).__name__}: {detail}); free memory on the device, or use a "
              "smaller model or --device cpu", file=sys.stderr)
        return EXIT_USAGE
    finally:
        sys.stdout, sys.stderr = stdout, stderr
        if sink is not None:
            sink.close()
