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

import torch
from torch import Tensor

from gumbelkit._validation import check_tau
from gumbelkit.estimators._common import (
    EstimatorSample,
    draw_gumbel,
    mixed_softmax_st,
    prepare,
)

__all__ = ["st"]


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
    t = check_tau(tau, scalar=True, owner="st")
    d = prepare(logits, dim)
    g = draw_gumbel(logits, noise, generator).movedim(d, -1)  # (*, K)
    x = logits.movedim(d, -1)  # (*, K)
    index = (x.detach().to(g.dtype) + g).argmax(dim=-1)  # (*,) exact Gumbel-Max sample
    hard, soft = mixed_softmax_st(x, index, None, (t,), (1.0,), (1.0,))
    hard = hard.movedim(-1, d)
    return EstimatorSample(hard, hard, soft.movedim(-1, d), index)
