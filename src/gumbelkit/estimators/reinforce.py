r"""REINFORCE (score function) with a leave-one-out baseline: the unbiased reference.

The score-function estimator needs the downstream value :math:`f(D)` of each sample, not its
gradient, so it cannot be carried by a single one-hot tensor like the straight-through family.
It is offered in *surrogate-loss* form: :func:`reinforce_loo` draws ``n`` samples, evaluates
``f`` on them and returns a tensor whose value is the Monte Carlo objective and whose gradient
with respect to the logits is

.. math::
    \hat\nabla_\ell = \frac1n \sum_{s=1}^n \big(f(D_s) - b_s\big)\, \nabla_\ell \log p_\ell(D_s),
    \qquad b_s = \frac{1}{n-1}\sum_{r \ne s} f(D_r),

unbiased for :math:`\nabla_\ell\, \mathbb E_{D \sim p_\ell}[f(D)]` because each baseline
:math:`b_s` is independent of :math:`D_s`. Gradients with respect to parameters inside ``f``
are the ordinary pathwise ones, averaged over the samples.

Usage::

    out = reinforce_loo(logits, lambda d: decoder_loss(d), n_samples=8)
    out.loss.mean().backward()   # value: mean f; gradient: REINFORCE-LOO + pathwise for f's params

References:
    1. R. J. Williams, *Simple Statistical Gradient-Following Algorithms for Connectionist
       Reinforcement Learning*, 1992.
    2. W. Kool, H. van Hoof, M. Welling, *Buy 4 REINFORCE Samples, Get a Baseline for Free!*,
       ICLR Workshop 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from gumbelkit._validation import compute_dtype
from gumbelkit.estimators._score import draws

__all__ = ["ReinforceSample", "reinforce_loo"]


class ReinforceSample(NamedTuple):
    """Result of :func:`reinforce_loo`.

    Attributes:
        loss: ``(*P)`` surrogate: value = mean of ``f`` over the samples, gradient = REINFORCE-LOO
            (plus the pathwise gradient for parameters inside ``f``).
        hard: ``(n, *logits.shape)`` exact one-hot samples (no gradient path to the logits).
        indices: ``(n, *batch)`` sampled categories (``dim`` removed).
        values: ``(n, *P)`` the values ``f(hard)``.
    """

    loss: Tensor
    hard: Tensor
    indices: Tensor
    values: Tensor


def reinforce_loo(
    logits: Tensor,
    f: Callable[[Tensor], Tensor],
    n_samples: int = 4,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
) -> ReinforceSample:
    r"""Score-function estimator with a leave-one-out baseline, as a surrogate loss.

    .. math::
        \mathcal L = \frac1n\sum_s \Big[f(D_s) + \mathrm{sg}\big(f(D_s) - b_s\big)
        \big(\log p(D_s) - \mathrm{sg}(\log p(D_s))\big)\Big]

    (``sg`` = stop-gradient) so :math:`\mathcal L` equals the sample mean of ``f`` and
    :math:`\nabla_\ell \mathcal L` is the REINFORCE-LOO estimate. The samples are exact
    (Gumbel-Max); the estimator does not depend on a temperature.

    Args:
        logits: ``(*B, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category. All
            non-category dimensions ``B`` are independent categorical variables.
        f: maps the one-hot samples ``(n, *logits.shape)`` to values of shape ``(n, *P)``, where
            ``P`` is a prefix of the batch shape ``B`` (categories moved last): ``(n,)`` for one
            scalar per sample, ``(n, batch)`` for a per-example loss (then each example gets its
            own baseline and only its own variables' log-probability).
        n_samples: samples per estimate, ``>= 2`` (the baseline of each leaves it out).
        dim: the category dimension.
        generator: optional ``torch.Generator``.

    Returns:
        :class:`ReinforceSample` ``(loss, hard, indices, values)``.

    Example:
        >>> logits = torch.zeros(3, 2, requires_grad=True)
        >>> out = reinforce_loo(logits, lambda d: d[..., 0].sum(-1), n_samples=4)
        >>> out.loss.backward(); logits.grad.shape
        torch.Size([3, 2])
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples must be an int >= 2 (the leave-one-out baseline needs two), got {n_samples!r}")
    if not callable(f):
        raise ValueError(f"f must be a callable mapping one-hot samples to values, got {type(f).__name__}")
    d, _, index, hard, values = draws(logits, f, n_samples, dim, generator)
    cdt = compute_dtype(logits.dtype)
    n = n_samples
    xc = logits.movedim(d, -1).to(cdt)  # (*B, K)
    logp = torch.log_softmax(xc, dim=-1)  # (*B, K), -inf where masked (never sampled)
    logp_s = logp.unsqueeze(0).expand(n, *logp.shape).gather(-1, index.unsqueeze(-1)).squeeze(-1)
    keep = values.ndim - 1
    if logp_s.ndim - 1 > keep:
        logp_s = logp_s.sum(dim=tuple(range(1 + keep, logp_s.ndim)))  # (n, *P)
    v = values.detach().to(cdt)
    baseline = (v.sum(dim=0, keepdim=True) - v) / (n - 1)  # (n, *P) leave-one-out means
    score = ((v - baseline) * (logp_s - logp_s.detach())).mean(dim=0)  # value exactly 0
    loss = values.mean(dim=0) + score.to(values.dtype)
    return ReinforceSample(loss, hard, index, values)
