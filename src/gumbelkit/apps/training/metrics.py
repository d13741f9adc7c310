"""Metrics as JSON lines, always, and as TensorBoard events when asked (``--logger tensorboard``).

``metrics.jsonl`` holds one JSON object per line, ``{"step": ..., "split": ..., <name>: value}``.
On resume the records after the checkpoint's step are dropped, so a resumed run's file equals an
uninterrupted run's; a torn last line (power loss in the middle of a write) is dropped with a
warning naming the file.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

from gumbelkit.apps.training.checkpoint import atomic_write_text

__all__ = ["METRICS_NAME", "MetricsLogger", "read_metrics"]

METRICS_NAME = "metrics.jsonl"


def _parse(path: Path) -> tuple[list[dict[str, Any]], str | None]:
    """The records of ``path`` and its torn last line, if any.

    Raises:
        ValueError: a line other than the last is not a JSON object (the file is damaged).
    """
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    records: list[dict[str, Any]] = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if not isinstance(record, dict):
                raise ValueError("not an object")
        except ValueError:
            if i == len(lines) - 1:
                return records, line
            raise ValueError(f"{path} is damaged: line {i + 1} is not a JSON record ({line[:40]!r})") from None
        records.append(record)
    return records, None


def _warn_torn(path: Path, line: str) -> None:
    print(f"warning: dropped the torn last line of {path} (an interrupted write): {line[:40]!r}",
          file=sys.stderr, flush=True)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """All records of a ``metrics.jsonl`` file, in order (a torn last line is dropped, with a warning).

    Raises:
        ValueError: a line before the last is not a JSON record.
    """
    path = Path(path)
    records, torn = _parse(path)
    if torn is not None:
        _warn_torn(path, torn)
    return records


class MetricsLogger:
    """Append metric records to ``path`` (JSON lines) and, if asked, to TensorBoard.

    Args:
        path: the ``.jsonl`` file.
        enabled: ``False`` on non-main distributed ranks (nothing is written).
        resume_step: when resuming, records with ``step > resume_step`` are removed first (and a
            torn last line, with a warning).
        tensorboard: also write TensorBoard events to ``path.parent / "tensorboard"`` (needs the
            tensorboard package).
    """

    def __init__(self, path: str | Path, *, enabled: bool = True, resume_step: int | None = None,
                 tensorboard: bool = False) -> None:
        self.path = Path(path)
        self.enabled = enabled
        self._tb: Any = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_step is None:
            atomic_write_text(self.path, "")
        elif self.path.exists():
            records, torn = _parse(self.path)
            if torn is not None:
                _warn_torn(self.path, torn)
            kept = [r for r in records if r.get("step", 0) <= resume_step]
            atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.path.parent / "tensorboard"), purge_step=resume_step)

    def log(self, step: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": step, "split": split}
        for k, v in values.items():
            v = float(v)
            record[k] = v if math.isfinite(v) else str(v)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{split}/{k}", float(v), step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
