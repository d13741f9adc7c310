r"""Gapped straight-through (GST): a deterministic, sample-consistent perturbation.

Instead of Gumbel noise, GST moves the logits just enough that the sampled category ``D`` is
the argmax with a margin (the *gap*) over every other category, and differentiates the
tempered softmax of the moved logits:

.. math::
    \tilde\ell_D = \max_j \ell_j, \qquad
    \tilde\ell_j = \min\big(\ell_j,\ \max_i \ell_i - \delta\big)\ (j \ne D), \qquad
    \hat\nabla_\ell = \frac{\partial\, \mathrm{softmax}(\tilde\ell / \tau)}{\partial \tilde\ell}^{\!\top}
    \frac{\partial f}{\partial D}

with :math:`\partial\tilde\ell/\partial\ell := I`. GST-1.0 uses :math:`\delta = 1`; GST-p uses
:math:`\delta = -\log(1 - \pi_D)/\pi_D` with :math:`\pi = \mathrm{softmax}(\ell)`.

References:
    1. T.-H. Fan, T.-C. Chi, A. I. Rudnicky, P. J. Ramadge, *Training Discrete Deep Generative
       Models via Gapped Straight-Through Estimator*, ICML 2022.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from gumbelkit._autograd import MixtureST
from gumbelkit._kernels import one_hot
from gumbelkit.estimators._common import EstimatorSample, OneTerm, preamble, safe_shift

__all__ = ["GAP_CHOICES", "gst"]

#: the adaptive gap's name; any positive finite number is a fixed gap
GAP_CHOICES = ("p",)


def check_gap(gap: object) -> float | str:
    """A positive finite number (fixed gap, GST-1.0 is ``1.0``) or ``"p"`` (GST-p)."""
    if isinstance(gap, str):
        if gap in GAP_CHOICES:
            return gap
        raise ValueError(f"gap must be a positive number or 'p' (GST-p), got {gap!r}")
    if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not (
        math.isfinite(gap) and gap > 0
    ):
        raise ValueError(f"gap must be a positive finite number (e.g. 1.0) or 'p' (GST-p), got {gap!r}")
    return float(gap)


def _adaptive_gap(xs: Tensor, winner: Tensor) -> Tensor:
    r""":math:`-\log(1 - \pi_D) / \pi_D`, ``(*, 1)``, accurate for :math:`\pi_D` near 0 and near 1."""
    lse = torch.logsumexp(xs, dim=-1, keepdim=True)  # (*, 1)
    log_pi = xs.masked_fill(~winner, -torch.inf).amax(dim=-1, keepdim=True) - lse  # (*, 1) log pi_D
    pi = log_pi.exp()
    # near pi = 1, 1 - pi cancels: take -log(1 - pi) = lse(all) - lse(others) instead
    rest = torch.logsumexp(xs.masked_fill(winner, -torch.inf), dim=-1, keepdim=True)
    nl = torch.where(pi < 0.5, -torch.log1p(-pi), lse - rest)  # (*, 1), may be +inf if pi = 1
    # -log(1 - pi)/pi -> 1 + pi/2 as pi -> 0; avoid 0/0 when pi underflows
    tiny = pi < 1e-6
    return torch.where(tiny, 1.0 + 0.5 * pi, nl / torch.where(tiny, torch.ones_like(pi), pi))


@dataclass(frozen=True)
class _Plan(OneTerm):
    """One term: softmax of the gapped logits over tau (see :class:`gumbelkit._autograd.MixturePlan`)."""

    t: float
    gap: float | str
    components: int = 1

    def shift(self, xs: Tensor, indices: Tensor, aux: tuple[Tensor, ...], start: int, stop: int) -> Tensor:
        winner = one_hot(indices, xs, -1, torch.bool)
        delta = _adaptive_gap(xs, winner) if isinstance(self.gap, str) else self.gap
        # winner moves up to the max (0 here); the others are capped at max - gap
        moved = torch.where(winner, torch.zeros_like(xs), torch.minimum(xs, -delta * torch.ones_like(xs)))
        return safe_shift(moved, xs).unsqueeze(0)  # (1, *, K)


def gst(
    logits: Tensor,
    tau: float = 1.0,
    dim: int = -1,
    *,
    gap: float | str = 1.0,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> EstimatorSample:
    r"""Gapped straight-through estimator (GST-1.0 by default, ``gap="p"`` for GST-p).

    .. math::
        \mathrm{hard} = \mathrm{onehot}(D),\ D \sim \mathrm{Cat}(\mathrm{softmax}(\ell)), \qquad
        \nabla_\ell\,\mathrm{hard} := \nabla\, \mathrm{softmax}(\tilde\ell / \tau)

    As :math:`\tau \to 0` the surrogate saturates on ``D``: with the winner ahead by at least
    the gap :math:`\delta`, the Jacobian of :math:`\mathrm{softmax}(\tilde\ell/\tau)/\tau`
    *vanishes* like :math:`e^{-\delta/\tau}/\tau` (it does not merely stay bounded); as
    :math:`\tau \to \infty` it shrinks like :math:`1/\tau`.

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        tau: temperature (positive number). A 0-d tensor is accepted but treated as a constant
            (ValueError if it requires grad; use ``gs`` / ``st_gs`` to learn tau).
        dim: the category dimension.
        gap: ``1.0`` (GST-1.0), any positive number, or ``"p"`` for
            :math:`-\log(1-\pi_D)/\pi_D` (GST-p).
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise; the sample is ``argmax(logits + noise)``.

    Returns:
        ``EstimatorSample(output, hard, soft, indices)`` with ``output`` = ``hard``;
        ``soft`` :math:`= \mathrm{softmax}(\tilde\ell/\tau)`.

    Example:
        >>> s = gst(torch.randn(3, 4), gap="p")
        >>> s.indices.shape
        torch.Size([3])
    """
    gp = check_gap(gap)
    p = preamble(logits, tau, dim, noise, generator, owner="gst")
    hard, soft = MixtureST.apply(p.x, p.indices, _Plan(p.tau, gp))
    hard = hard.movedim(-1, p.dim)
    return EstimatorSample(hard, hard, soft.movedim(-1, p.dim), p.indices)
