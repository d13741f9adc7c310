"""What a run says on stderr: a progress bar on a terminal, plain log lines everywhere else.

On a terminal (stderr is a TTY and progress is on) a tqdm bar shows the step, loss, tau and
examples per second. Elsewhere (``nohup``, SLURM, CI, ``> log 2>&1``) there is no bar and no
carriage return: one line per metric record (every ``--log-every`` steps)::

    [train] step 200/1000 (20%)  epoch 3  loss 131.8  recon 110.2  kl 21.63  tau 0.9941  8,120 examples/s  elapsed 0:00:25  ETA 0:01:40

Validation results, notes and warnings are printed in both modes. ``progress=False``
(``--no-progress``) drops the bar, the periodic lines and the start and end lines.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

__all__ = ["Console", "format_duration", "format_values"]


def format_duration(seconds: float) -> str:
    """``h:mm:ss``."""
    s = max(int(round(seconds)), 0)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def format_values(values: dict[str, Any]) -> str:
    """``name value`` pairs, numbers to 5 significant digits."""
    parts = []
    for k, v in values.items():
        parts.append(f"{k} {v:.5g}" if isinstance(v, float) else f"{k} {v}")
    return "  ".join(parts)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Console:
    """The run's terminal output (rank 0 only: ``enabled=False`` on other ranks prints nothing).

    Args:
        total: the run's last step.
        initial: the step it starts from (non-zero when resuming).
        enabled: print anything at all.
        progress: show a bar when ``stream`` is a terminal.
        stream: where to write (stderr by default).
    """

    def __init__(self, total: int, initial: int, *, enabled: bool = True, progress: bool = True,
                 stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.progress = progress
        self.total, self.initial = total, initial
        self._t0 = time.perf_counter()
        self.bar: Any = None
        if enabled and progress and _isatty(self.stream):
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, file=self.stream, dynamic_ncols=True, unit="step")

    def write(self, line: str) -> None:
        """One line (above the bar when there is one)."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def status(self, line: str) -> None:
        """A progress message (the start and end lines): only when progress is on."""
        if self.progress:
            self.write(line)

    def step(self, step: int, loss: float, tau: float, examples_per_s: float) -> None:
        """After each optimizer step: move the bar (nothing without one)."""
        if self.bar is None:
            return
        self.bar.set_postfix({"loss": f"{loss:.4g}", "tau": f"{tau:.4g}",
                              "examples/s": f"{examples_per_s:,.0f}"}, refresh=False)
        self.bar.update(step - self.bar.n)

    def train_record(self, step: int, epoch: int, values: dict[str, float], tau: float,
                     examples_per_s: float) -> None:
        """A metric record of the training window: a log line when there is no bar."""
        if self.bar is not None or not (self.enabled and self.progress):
            return
        elapsed = time.perf_counter() - self._t0
        done = step - self.initial
        eta = elapsed / done * (self.total - step) if done > 0 else float("nan")
        pct = 100.0 * step / max(self.total, 1)
        values = {k: v for k, v in sorted(values.items(), key=lambda kv: kv[0] != "loss") if k != "tau"}
        line = (f"[train] step {step}/{self.total} ({pct:.0f}%)  epoch {epoch}  {format_values(values)}  "
                f"tau {tau:.4g}  {examples_per_s:,.0f} examples/s  elapsed {format_duration(elapsed)}")
        if eta == eta:  # not NaN
            line += f"  ETA {format_duration(eta)}"
        self.write(line)

    def valid_record(self, step: int, values: dict[str, float]) -> None:
        """Validation results: printed in both modes."""
        self.write(f"[valid] step {step}/{self.total}  {format_values(values)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
