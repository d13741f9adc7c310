"""Shared start of the score-function estimators (private): checks, exact draws, ``f`` at them."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from gumbelkit._kernels import one_hot
from gumbelkit._validation import check_categories, check_dim, check_float_tensor, check_valid
from gumbelkit.noise import perturb


class Draws(NamedTuple):
    """What :func:`draws` returns."""

    dim: int  # normalised category dimension
    batch: tuple[int, ...]  # B, the logits' shape without the category dimension
    indices: Tensor  # (n, *B) sampled categories
    hard: Tensor  # (n, *logits.shape) exact one-hot samples, no graph
    values: Tensor  # (n, *P) f(hard)


def draws(
    logits: Tensor, f: Callable[[Tensor], Tensor], n: int, dim: int, generator: torch.Generator | None
) -> Draws:
    """Check ``logits`` and ``dim``, draw ``n`` exact Gumbel-Max samples and evaluate ``f`` there.

    ``f`` must return ``(n, *P)`` with ``P`` a prefix of ``B`` (``ValueError`` otherwise).
    """
    check_float_tensor(logits, "logits")
    d = check_dim(logits, dim)
    check_categories(logits, d)
    rep = logits.detach().unsqueeze(0).expand(n, *logits.shape)  # (n, *logits.shape)
    p = perturb(rep, d + 1, generator=generator, want_index=True, values=False)  # n Gumbel-Max draws
    check_valid(p.ok, logits, d)
    if p.indices is not None:
        index = p.indices  # (n, *B)
    else:
        assert p.z is not None
        index = p.z.movedim(d + 1, -1).argmax(dim=-1)  # (n, *B)
    hard = one_hot(index, rep.movedim(d + 1, -1), -1, logits.dtype).movedim(-1, d + 1)  # (n, *logits.shape)
    values = f(hard)
    batch = tuple(logits.movedim(d, -1).shape[:-1])
    if not isinstance(values, Tensor) or values.ndim < 1 or values.shape[0] != n or (
        tuple(values.shape[1:]) != batch[: values.ndim - 1]
    ):
        got = tuple(values.shape) if isinstance(values, Tensor) else type(values).__name__
        raise ValueError(
            f"f must return a tensor of shape (n_samples, *P) with P a prefix of the batch shape "
            f"{batch} (categories removed): e.g. ({n},) or ({n}, {batch[0] if batch else '...'}); got {got}"
        )
    return Draws(d, batch, index, hard, values)
