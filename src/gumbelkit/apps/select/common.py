"""Small helpers shared by the selection applications: provenance and the selector lookup."""

from __future__ import annotations

import platform
import shlex
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from gumbelkit import subsets
from gumbelkit.apps.provenance import git_state

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
    changes to tracked files existed), from the shared :func:`gumbelkit.apps.provenance.git_state`."""
    state = git_state()
    return {"command": shlex.join([*prog.split(), *(argv or [])]), "commit": state["commit"], "dirty": state["dirty"]}


def environment(device: torch.device) -> dict[str, Any]:
    """torch / python versions, threads and device of a run."""
    return {"torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "device": str(device)}
