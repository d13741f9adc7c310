"""Small helpers shared by the selection applications: provenance and the selector lookup."""

from __future__ import annotations

import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from gumbelkit import subsets

__all__ = ["SUBSET_SELECTORS", "environment", "provenance", "select"]

#: the k-subset estimators of the library, usable by every selection application
SUBSET_SELECTORS: tuple[str, ...] = subsets.subset_estimator_names()


def select(logits: Tensor, k: int, selector: str, tau: float, *, generator: torch.Generator | None = None) -> Tensor:
    """A differentiable k-subset mask from ``logits`` ``(*, n)``: the estimator's ``output``.

    ``st_topk`` and ``simple`` give an exact k-hot forward, ``relaxed_topk`` and ``l2x`` a relaxed one.
    """
    return subsets.sample_subset(logits, k, selector, tau, -1, generator=generator).output


def provenance(prog: str, argv: Sequence[str] | None) -> dict[str, Any]:
    """The command that made a result and the git commit it ran at (``dirty`` if uncommitted
    changes to tracked files existed)."""
    root = Path(__file__).resolve().parents[4]

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"command": " ".join([prog, *(argv or [])]), "commit": commit,
            "dirty": None if status is None else bool(status)}


def environment(device: torch.device) -> dict[str, Any]:
    """torch / python versions, threads and device of a run."""
    return {"torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "device": str(device)}
