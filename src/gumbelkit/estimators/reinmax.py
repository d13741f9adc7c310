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

from dataclasses import dataclass

import torch
from torch import Tensor

from gumbelkit._autograd import MixtureST
from gumbelkit._kernels import one_hot, shifted_softmax
from gumbelkit.estimators._common import EstimatorSample, preamble, safe_shift

__all__ = ["TAU_MIN", "reinmax"]

#: ReinMax is defined (and analysed) for tau >= 1
TAU_MIN = 1.0


@dataclass(frozen=True)
class _Plan:
    """Two terms at temperature 1: 2 J(pi_1) - J(pi_0) / 2 for ``hard``, pi_0 for ``soft``."""

    t: float
    components: int = 2

    def tau(self, m: int) -> float:
        return 1.0

    def c_hard(self, m: int) -> float:
        return 2.0 if m == 0 else -0.5

    def c_soft(self, m: int) -> float:
        return 0.0 if m == 0 else 1.0

    def shift(self, xs: Tensor, indices: Tensor, aux: tuple[Tensor, ...], start: int, stop: int) -> Tensor:
        pi1 = 0.5 * (shifted_softmax(xs, self.t, -1) + one_hot(indices, xs, -1))
        # pi1 = softmax(x + a) for the constant a = log(pi1) - x (log 0 = -inf is fine: prob 0);
        # the second term is pi_0 = softmax(x): no shift
        a = torch.stack([safe_shift(pi1.log(), xs), torch.zeros_like(xs)])  # (2, *, K)
        return a[start:stop]


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
    p = preamble(logits, tau, dim, noise, generator, owner="reinmax", minimum=TAU_MIN)
    hard, soft = MixtureST.apply(p.x, p.indices, _Plan(p.tau))
    hard = hard.movedim(-1, p.dim)
    return EstimatorSample(hard, hard, soft.movedim(-1, p.dim), p.indices)
