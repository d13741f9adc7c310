"""Metrics as JSON lines (plus TensorBoard when installed) and a progress bar.

``metrics.jsonl`` holds one JSON object per line, ``{"step": ..., "split": ..., <name>: value}``.
On resume the lines after the checkpoint's step are dropped, so a resumed run's file equals an
uninterrupted run's.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

__all__ = ["MetricsLogger", "Progress", "read_metrics"]


class MetricsLogger:
    """Append metric records to ``path`` (JSON lines) and to TensorBoard if it is installed.

    Args:
        path: the ``.jsonl`` file.
        enabled: ``False`` on non-main distributed ranks (nothing is written).
        resume_step: when resuming, records with ``step > resume_step`` are removed first.
        tensorboard: also write TensorBoard events next to ``path`` when the package is present.
    """

    def __init__(self, path: str | Path, *, enabled: bool = True, resume_step: int | None = None,
                 tensorboard: bool = True) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._tb: Any = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            self.path.write_text("")
        elif self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= resume_step]
            self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard is optional
                pass
            else:
                self._tb = SummaryWriter(str(self.path.parent / "tensorboard"))

    def log(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": step, "split": split}
        for k, v in values.items():
            v = float(v)
            record[k] = v if math.isfinite(v) else str(v)
        with self.path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{split}/{k}", float(v), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file, in order."""
    lines = Path(path).read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


class Progress:
    """A tqdm bar with the live loss, tau and throughput (examples / s).

    Disabled when ``enabled`` is false or stderr is not a terminal (logs stay clean in CI).
    """

    def __init__(self, total: int, initial: int, batch_size: int, *, enabled: bool = True) -> None:
        self.batch_size = batch_size
        self.bar = tqdm(total=total, initial=initial, disable=not (enabled and sys.stderr.isatty()),
                        dynamic_ncols=True, unit="step")
        self._t0 = time.perf_counter()
        self._n = 0

    def update(self, loss: float, tau: float) -> None:
        self._n += 1
        if self.bar.disable:
            return
        rate = self._n * self.batch_size / max(time.perf_counter() - self._t0, 1e-9)
        self.bar.set_postfix(loss=f"{loss:.2f}", tau=f"{tau:.3f}", ex_s=f"{rate:.0f}", refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
