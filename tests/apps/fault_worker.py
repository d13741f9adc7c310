"""A toy training run with faults injected from the environment, for ``test_faults.py``.

Run as a script (alone, or under ``torchrun`` / with ``RANK`` and ``WORLD_SIZE`` set); the
arguments are the toy config's flags. Faults (each ``RANK:N`` applies on that rank only):

* ``FAULT_RAISE=RANK:STEP``: ``training_step`` raises ``RuntimeError`` in step ``STEP`` (0-based).
* ``FAULT_CKPT_FAIL=RANK:N``: the ``N``-th checkpoint write (1-based) fails half-way with
  ``ENOSPC`` (disk full).
* ``FAULT_KILL=WHERE:N``: SIGKILL at the ``N``-th checkpoint write; ``WHERE`` is ``mid-write``
  (half the bytes written), ``before-rename`` (the temporary file complete, fsynced, not yet
  renamed) or ``after-rename`` (right after the new checkpoint replaced the old one).
* ``EXIT_FILE=PATH``: write ``{"rank", "code", "time"}`` as JSON to ``PATH.<rank>`` on exit (also
  through ``os._exit``), and
  ``{"time"}`` to ``PATH.fault`` when a fault fires (``time``: ``time.time()``).
"""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from toy_training import ToyConfig, ToyTask  # noqa: E402

from gumbelkit.apps.training import checkpoint as ckpt_module  # noqa: E402
from gumbelkit.apps.training import cli_main, parse_config, run  # noqa: E402

RANK = int(os.environ.get("RANK", "0"))
EXIT_FILE = os.environ.get("EXIT_FILE")


def _fired() -> None:
    if EXIT_FILE:
        Path(f"{EXIT_FILE}.fault").write_text(json.dumps({"rank": RANK, "time": time.time()}))


def _target(var: str) -> tuple[str, int] | None:
    value = os.environ.get(var)
    if not value:
        return None
    who, n = value.split(":")
    return who, int(n)


def _install_faults() -> None:
    raise_at = _target("FAULT_RAISE")
    if raise_at is not None and int(raise_at[0]) == RANK:
        original = ToyTask.training_step

        def training_step(self, batch, ctx):  # type: ignore[no-untyped-def]
            if ctx.step == raise_at[1]:
                _fired()
                raise RuntimeError(f"injected fault on rank {RANK}")
            return original(self, batch, ctx)

        ToyTask.training_step = training_step  # type: ignore[method-assign]

    real_save, real_replace = torch.save, os.replace
    writes = {"n": 0}
    ckpt_fail = _target("FAULT_CKPT_FAIL")
    kill = _target("FAULT_KILL")

    def save(obj, fh, *args, **kwargs):  # type: ignore[no-untyped-def]
        # torch.save as the checkpoint writer calls it (the only torch.save in this process)
        writes["n"] += 1
        buf = io.BytesIO()
        real_save(obj, buf, *args, **kwargs)
        data = buf.getvalue()
        if ckpt_fail is not None and int(ckpt_fail[0]) == RANK and writes["n"] == ckpt_fail[1]:
            fh.write(data[: len(data) // 2])
            _fired()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        if kill is not None and kill[0] == "mid-write" and writes["n"] == kill[1]:
            fh.write(data[: len(data) // 2])
            fh.flush()
            os.fsync(fh.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        fh.write(data)

    def replace(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
        is_ckpt = Path(dst).name == "checkpoint.pt"
        if is_ckpt and kill is not None and kill[0] == "before-rename" and writes["n"] == kill[1]:
            os.kill(os.getpid(), signal.SIGKILL)
        real_replace(src, dst, *args, **kwargs)
        if is_ckpt and kill is not None and kill[0] == "after-rename" and writes["n"] == kill[1]:
            os.kill(os.getpid(), signal.SIGKILL)

    ckpt_module.torch.save = save  # type: ignore[assignment]
    ckpt_module.os.replace = replace  # type: ignore[assignment]


def _write_exit(code: int) -> None:
    if EXIT_FILE:
        Path(f"{EXIT_FILE}.{RANK}").write_text(json.dumps({"rank": RANK, "code": code, "time": time.time()}))


def main() -> int:
    _install_faults()
    real_exit = os._exit

    def exit_now(code: int) -> None:  # cli_main ends a failed distributed process with os._exit
        _write_exit(code)
        real_exit(code)

    os._exit = exit_now  # type: ignore[assignment]

    def body() -> int:
        run(parse_config(ToyConfig, sys.argv[1:], prog="toy"), ToyTask)
        return 0

    code = cli_main("toy", body)
    _write_exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
