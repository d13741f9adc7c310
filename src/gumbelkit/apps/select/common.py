"""Small helpers shared by the selection applications: provenance, the selector lookup, ``main()``
and ``quick_run()``."""

from __future__ import annotations

import platform
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import torch
from torch import Tensor

from gumbelkit import subsets
from gumbelkit.apps.provenance import git_state
from gumbelkit.apps.training import CheckpointError, TrainConfig, TrainingDiverged, parse_config

__all__ = ["SUBSET_SELECTORS", "QuickResult", "environment", "provenance", "quick_result", "run_main", "select"]

C = TypeVar("C", bound=TrainConfig)

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


def run_main(cls: type[C], argv: Sequence[str] | None, *, prog: str, doc: str | None,
             train: Callable[[C, Sequence[str]], dict[str, Any]], summary: Callable[[C, dict[str, Any]], str]) -> int:
    """The ``main()`` of a selection application: parse ``argv`` (``sys.argv[1:]`` when None) into a
    ``cls`` config (the first paragraph of ``doc`` is the --help description), apply ``--quick``, run
    ``train(config, argv)`` and print ``summary(config, results)`` when results came back.

    Returns 0, 2 on a bad value or checkpoint (the one-line error goes to stderr), 1 on divergence.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        config = parse_config(cls, args, prog=prog, description=doc.split("\n\n")[0] if doc else None)
        if config.quick:  # type: ignore[attr-defined]
            config = config.with_quick_defaults()  # type: ignore[attr-defined]
        results = train(config, args)
    except (ValueError, CheckpointError, TrainingDiverged) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1 if isinstance(exc, TrainingDiverged) else 2
    if results:
        print(summary(config, results))
    return 0


class QuickResult(NamedTuple):
    """What a selection application's ``quick_run`` returns: the results dict and a figure (None)."""

    results: dict[str, Any]
    figure: Path | None


def quick_result(config: C, train: Callable[[C], dict[str, Any]]) -> QuickResult:
    """Validate ``config`` (a ``--quick`` one), run ``train`` on its quick defaults; no figure."""
    config.validate()
    return QuickResult(train(config.with_quick_defaults()), None)  # type: ignore[attr-defined]
