r"""Plain straight-through (ST): a categorical sample forward, the softmax gradient backward.

.. math::
    D \sim \mathrm{Categorical}(\mathrm{softmax}(\ell)), \qquad
    \hat\nabla_\ell = \frac{\partial\, \mathrm{softmax}(\ell / \tau)}{\partial \ell}^{\!\top}
    \frac{\partial f}{\partial D}

References:
    1. Y. Bengio, N. Leonard, A. Courville, *Estimating or Propagating Gradients Through
       Stochastic Neurons for Conditional Computation*, 2013.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gumbelkit._autograd import MixtureST
from gumbelkit.estimators._common import EstimatorSample, OneTerm, preamble

__all__ = ["st"]


@dataclass(frozen=True)
class _Plan(OneTerm):
    """One term: softmax(x / tau), no shift (see :class:`gumbelkit._autograd.MixturePlan`)."""

    t: float
    components: int = 1

    def shift(self, xs: Tensor, indices: Tensor, aux: tuple[Tensor, ...], start: int, stop: int) -> None:
        return None


def st(
    logits: Tensor,
    tau: float = 1.0,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> EstimatorSample:
    r"""Straight-through estimator: exact categorical sample, gradient of :math:`\mathrm{softmax}(\ell/\tau)`.

    .. math::
        \mathrm{hard} = \mathrm{onehot}(D),\quad D \sim \mathrm{Cat}(\mathrm{softmax}(\ell)),
        \qquad \nabla_\ell\,\mathrm{hard} := \nabla_\ell\, \mathrm{softmax}(\ell / \tau)

    The sample does not depend on ``tau``; only the surrogate gradient does. As
    :math:`\tau \to 0` the surrogate's Jacobian vanishes except at ties; as
    :math:`\tau \to \infty` it tends to :math:`(I - \tfrac1K \mathbf{1}\mathbf{1}^\top)/(K\tau)`.

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        tau: temperature of the surrogate softmax (positive number). A 0-d tensor is accepted but treated as a constant
            (ValueError if it requires grad; use ``gs`` / ``st_gs`` to learn tau).
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise of the logits' shape (the sample is
            ``argmax(logits + noise)``).

    Returns:
        ``EstimatorSample(output, hard, soft, indices)``: ``output`` is ``hard``, the exact
        one-hot carrying the ST gradient; ``soft`` :math:`= \mathrm{softmax}(\ell/\tau)`
        (differentiable); ``indices`` the sampled category.

    Example:
        >>> s = st(torch.randn(4, 3, requires_grad=True))
        >>> s.hard.sum().item()
        4.0
    """
    p = preamble(logits, tau, dim, noise, generator, owner="st")
    hard, soft = MixtureST.apply(p.x, p.indices, _Plan(p.tau))
    hard = hard.movedim(-1, p.dim)
    return EstimatorSample(hard, hard, soft.movedim(-1, p.dim), p.indices)
