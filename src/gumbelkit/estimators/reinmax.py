r"""ReinMax: a second-order (Heun's method) straight-through estimator.

With :math:`\pi_0 = \mathrm{softmax}(\ell)`, a sample :math:`D \sim \mathrm{Cat}(\pi_0)` and the
mid-point :math:`\pi_1 = \tfrac12\big(D + \mathrm{softmax}(\ell/\tau)\big)`, ReinMax uses

.. math::
    \hat\nabla_\ell = \Big(2\, J(\pi_1) - \tfrac12\, J(\pi_0)\Big)\, \frac{\partial f}{\partial D},
    \qquad J(\pi) = \mathrm{diag}(\pi) - \pi\pi^\top,

which matches the true gradient to second order (ST is first order). In particular, at
:math:`\tau = 1` its expectation over ``D`` equals the exact gradient of
:math:`\mathbb E_D[f(D)]` for every ``f`` that is at most quadratic in the one-hot ``D`` (not
for cubic ``f``); at :math:`\tau > 1` it is in general biased, even for linear ``f``. The published analysis
and experiments need :math:`\tau \ge 1`; smaller temperatures are refused.

References:
    1. L. Liu, C. Dong, X. Liu, B. Yu, J. Gao, *Bridging Discrete and Backpropagation:
       Straight-Through and Beyond*, NeurIPS 2023.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gumbelkit._validation import check_tau
from gumbelkit.estimators._common import (
    EstimatorSample,
    draw_gumbel,
    mixed_softmax_st,
    one_hot,
    prepare,
    safe_shift,
    shifted,
)

__all__ = ["TAU_MIN", "reinmax"]

#: ReinMax is defined (and analysed) for tau >= 1
TAU_MIN = 1.0


def reinmax(
    logits: Tensor,
    tau: float = 1.0,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> EstimatorSample:
    r"""ReinMax estimator (requires ``tau >= 1``).

    .. math::
        \mathrm{hard} = \mathrm{onehot}(D), \quad
        \nabla_\ell\,\mathrm{hard} := 2\,\nabla \pi_1 - \tfrac12\,\nabla\pi_0, \quad
        \pi_1 = \tfrac12\big(D + \mathrm{softmax}(\ell/\tau)\big)

    (with :math:`\nabla\pi_1 := J(\pi_1)`, the softmax Jacobian at :math:`\pi_1`). As
    :math:`\tau \to \infty`, :math:`\pi_1 \to (D + 1/K)/2`.

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        tau: temperature, ``tau >= 1`` (ValueError otherwise). A 0-d tensor is accepted but
            treated as a constant (ValueError if it requires grad; use ``gs`` / ``st_gs`` to learn tau).
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise; the sample is ``argmax(logits + noise)``.

    Returns:
        ``EstimatorSample(output, hard, soft, indices)`` with ``output`` = ``hard``;
        ``soft`` :math:`= \pi_0 = \mathrm{softmax}(\ell)` (differentiable), as in the
        published API.

    Example:
        >>> s = reinmax(torch.randn(3, 4, requires_grad=True), tau=1.3)
        >>> s.hard.sum().item()
        3.0
    """
    t = check_tau(tau, minimum=TAU_MIN, scalar=True, owner="reinmax")
    d = prepare(logits, dim)
    g = draw_gumbel(logits, noise, generator).movedim(d, -1)  # (*, K)
    x = logits.movedim(d, -1)  # (*, K)
    xc = x.detach().to(g.dtype)
    index = (xc + g).argmax(dim=-1)  # (*,)
    xs = shifted(xc)  # (*, K)
    pi1 = 0.5 * (torch.softmax(xs / t, dim=-1) + one_hot(index, xs.shape[-1], xs.dtype))
    # pi1 = softmax(x + a) for the constant a = log(pi1) - x (log 0 = -inf is fine: prob 0)
    shifts = torch.stack([safe_shift(pi1.log(), xs), torch.zeros_like(xs)])  # (2, *, K)
    hard, soft = mixed_softmax_st(x, index, shifts, (1.0, 1.0), (2.0, -0.5), (0.0, 1.0))
    hard = hard.movedim(-1, d)
    return EstimatorSample(hard, hard, soft.movedim(-1, d), index)
