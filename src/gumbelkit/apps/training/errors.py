"""The training package's errors and how a command reports them (one line, a fixed exit code).

Exit codes of :func:`cli_main`:

* ``0``: success;
* ``1``: the run failed (it diverged, or a bug: then the traceback is printed too);
* ``2``: the request cannot be carried out as given: a bad value, a run directory that holds
  another run, an unreadable or incompatible checkpoint, a filesystem or device error
  (the message names the path or device);
* ``130``: interrupted (Ctrl-C).

In a distributed run every rank exits with the failing rank's code and message.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable

from gumbelkit.apps.training.checkpoint import CheckpointError
from gumbelkit.apps.training.distributed import DistributedError, one_line

__all__ = ["RunDirectoryError", "TrainingDiverged", "cli_main", "describe", "exit_code"]


class TrainingDiverged(RuntimeError):
    """A loss, gradient or parameter became NaN or infinite; the last good checkpoint is kept.

    The message names the step, the cause and the last good checkpoint.
    """


class RunDirectoryError(ValueError):
    """The run directory cannot be used as asked (it holds another run, or is not a directory)."""


def _is_user_error(exc: BaseException) -> bool:
    import torch.distributed as dist

    return isinstance(exc, (ValueError, OSError, CheckpointError, dist.DistError))


def exit_code(exc: BaseException) -> int:
    """The exit code a command returns for ``exc`` (see the module docstring)."""
    if isinstance(exc, DistributedError):
        return exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    if isinstance(exc, TrainingDiverged):
        return 1
    return 2 if _is_user_error(exc) else 1


def describe(exc: BaseException) -> str:
    """One line for ``exc``: its message (an ``OSError``'s names the path) and any notes."""
    line = one_line(exc)
    if not isinstance(exc, (ValueError, OSError, CheckpointError, TrainingDiverged, DistributedError)):
        line = f"{type(exc).__name__}: {line}"
    notes = [n for n in getattr(exc, "__notes__", []) if n]
    return line + (f" ({'; '.join(notes)})" if notes else "")


def _record_for_torchrun(message: str, details: str) -> None:
    """Under torchrun, write the error file its failure summary prints (the format of
    ``torch.distributed.elastic``'s ``ErrorHandler``)."""
    path = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if not path:
        return
    data = {"message": {"message": message,
                        "extraInfo": {"py_callstack": details, "timestamp": str(int(time.time()))}}}
    try:
        with open(path, "w") as fh:
            json.dump(data, fh)
    except OSError:
        pass  # the one-line message on stderr is the report that matters


def cli_main(prog: str, body: Callable[[], int | None]) -> int:
    """Run a command's ``body`` and turn any error into one line on stderr and an exit code.

    Errors of the user's request (bad values, paths, devices, checkpoints) and a diverged run are
    reported as ``PROG: error: <one line>`` alone; any other exception (a bug) also prints its
    traceback first. Every application's ``main`` uses this, so all report errors alike.

    Returns:
        The exit code (see the module docstring).
    """
    try:
        return int(body() or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001  (the command's last line of defence)
        cause = exc.__cause__ if isinstance(exc, DistributedError) else exc
        details = ""
        if cause is not None and not (_is_user_error(cause) or isinstance(cause, (TrainingDiverged, DistributedError))):
            details = "".join(traceback.format_exception(cause))
            sys.stderr.write(details)
        line = f"{prog}: error: {describe(exc)}"
        print(line, file=sys.stderr, flush=True)
        _record_for_torchrun(line, details + line)
        code = exit_code(exc)
        if isinstance(exc, DistributedError) and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # A failed distributed process ends here, at once: the interpreter's teardown takes
            # seconds (torchrun may stop a rank midway, with SIGTERM) and C++ destructors of the
            # process group's threads can abort it ("terminate called without an active
            # exception"). Every file of the run is closed by now.
            sys.stdout.flush()
            os._exit(code)
        return code
