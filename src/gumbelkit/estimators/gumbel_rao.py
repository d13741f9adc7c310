r"""Gumbel-Rao: Rao-Blackwellised straight-through Gumbel-Softmax (GR-MC\ :sub:`K`).

ST-GS uses the Jacobian of :math:`\mathrm{softmax}((\ell + g)/\tau)` at one Gumbel draw ``g``.
Its conditional expectation given the sampled category ``D`` has the same mean and a smaller
variance (Rao-Blackwell); Gumbel-Rao estimates it with ``k`` Gumbel vectors drawn *conditional
on* ``D``:

.. math::
    \hat\nabla_\ell = \frac1K \sum_{k=1}^K
        \frac{\partial\, \mathrm{softmax}((\ell + G_k)/\tau)}{\partial \ell}^{\!\top}
        \frac{\partial f}{\partial D},
    \qquad G_k \sim \mathrm{Gumbel}\ \big|\ \arg\max(\ell + G_k) = D .

Conditional sampling (the maximum of independent Gumbels is Gumbel with location
:math:`\log Z`, the others are Gumbels truncated below it), with :math:`E \sim \mathrm{Exp}(1)`:

.. math::
    z_D = \log Z - \log E_D, \qquad
    z_j = -\log\!\big(E_j e^{-\ell_j} + e^{-z_D}\big) \quad (j \ne D).

Here the first of the ``k`` perturbations is the very draw that chose ``D`` (it is itself a
sample from the conditional law), the other ``k - 1`` are fresh; so ``k = 1`` is ST-GS on the
same noise, bit for bit in the forward pass.

References:
    1. M. B. Paulus, C. J. Maddison, A. Krause, *Rao-Blackwellizing the Straight-Through
       Gumbel-Softmax Gradient Estimator*, ICLR 2021.
    2. C. J. Maddison, D. Tarlow, T. Minka, *A\* Sampling*, NeurIPS 2014 (truncated Gumbels).
"""

from __future__ import annotations

import torch
from torch import Tensor

from gumbelkit._validation import check_tau
from gumbelkit.estimators._common import (
    EstimatorSample,
    compute_dtype,
    draw_gumbel,
    mixed_softmax_st,
    prepare,
    safe_shift,
    shifted,
)
from gumbelkit.noise import exponential_noise

__all__ = ["conditional_gumbel", "gumbel_rao"]


def conditional_gumbel(
    logits: Tensor,
    index: Tensor,
    n: int,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Draw ``n`` perturbed logits :math:`\ell + G` conditional on :math:`\arg\max = ` ``index``.

    Computed in the max-subtracted frame (:math:`\ell - \max\ell`), with ``logaddexp`` instead
    of ``exp`` of raw logits, so extreme logits neither overflow nor lose the winner; masked
    (``-inf``) categories stay ``-inf``.

    Args:
        logits: ``(*, K)`` logits, categories last (any float dtype; half precision is
            computed in float32).
        index: ``(*)`` the category every draw must have as its argmax.
        n: number of draws.
        generator: optional ``torch.Generator``.

    Returns:
        ``(n, *, K)`` perturbed logits in the frame :math:`\ell - \max \ell` (a per-slice
        constant shift of :math:`\ell + G`), in the logits' dtype, whose argmax is ``index``
        (strictly: a loser that rounding to half precision would tie with the winner is moved
        one ulp below it).

    Example:
        >>> z = conditional_gumbel(torch.tensor([0.0, 1.0, 2.0]), torch.tensor(0), 4)
        >>> bool((z.argmax(-1) == 0).all())
        True
    """
    # float16 has too few bits: ~0.05% of the draws would tie with (or beat) the winner
    xs = shifted(logits.detach().to(compute_dtype(logits.dtype)))  # (*, K), max 0, -inf where masked
    lse = torch.logsumexp(xs, dim=-1, keepdim=True)  # (*, 1), in [0, log K]
    e = exponential_noise((n, *xs.shape), dtype=xs.dtype, device=xs.device, generator=generator)
    log_e = e.log()  # (n, *, K), finite: E in [2^-54, 37.4]
    idx = index.unsqueeze(-1).expand(n, *index.shape, 1)  # (n, *, 1)
    top = lse - log_e.gather(-1, idx)  # (n, *, 1): Gumbel(log Z) maximum
    # z_j = -log(E_j exp(-x_j) + exp(-top)) as a logaddexp: no exp of raw logits; -inf stays -inf
    others = -torch.logaddexp(log_e - xs, -top)  # (n, *, K)
    winner = torch.zeros_like(xs, dtype=torch.bool).scatter_(-1, index.unsqueeze(-1), True)
    if logits.dtype == xs.dtype:
        return torch.where(winner, top, others)  # (n, *, K)
    top_o, others_o = top.to(logits.dtype), others.to(logits.dtype)
    # rounding can make a loser equal the winner: move it one ulp down so the argmax stays exact
    below = torch.nextafter(top_o, torch.full_like(top_o, -torch.inf))  # (n, *, 1)
    others_o = torch.where(others_o >= top_o, below, others_o)
    return torch.where(winner, top_o, others_o)  # (n, *, K) in the logits' dtype


def gumbel_rao(
    logits: Tensor,
    tau: float = 1.0,
    dim: int = -1,
    *,
    k: int = 10,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> EstimatorSample:
    r"""Gumbel-Rao estimator with ``k`` conditional Gumbel samples.

    .. math::
        \mathrm{hard} = \mathrm{onehot}(D), \quad
        \nabla_\ell\,\mathrm{hard} := \frac1k \sum_{m=1}^{k}
        \nabla_\ell\, \mathrm{softmax}\!\left(\frac{\ell + G_m}{\tau}\right),
        \quad G_m \mid D

    Same expectation as ST-GS at the same ``tau``, variance non-increasing in ``k``. As
    :math:`\tau \to 0` the bias does not vanish but the variance stays bounded far better than
    ST-GS's; as :math:`\tau \to \infty` the gradient shrinks like :math:`1/\tau`.

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        tau: temperature (positive number). A 0-d tensor is accepted but treated as a constant
            (ValueError if it requires grad; use ``gs`` / ``st_gs`` to learn tau).
        dim: the category dimension.
        k: number of conditional Gumbel samples (``k >= 1``; ``k = 1`` is ST-GS).
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise of the logits' shape (it chooses the sample and
            is the first of the ``k`` perturbations).

    Returns:
        ``EstimatorSample(output, hard, soft, indices)`` with ``output`` = ``hard``; ``soft``
        is the mean of the ``k`` relaxed samples (differentiable, with the same Jacobian that
        ``hard`` uses).

    Example:
        >>> s = gumbel_rao(torch.randn(3, 4, requires_grad=True), tau=0.5, k=10)
        >>> s.hard.shape
        torch.Size([3, 4])
    """
    t = check_tau(tau, scalar=True, owner="gumbel_rao")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1 (number of conditional Gumbel samples), got {k!r}")
    d = prepare(logits, dim)
    g = draw_gumbel(logits, noise, generator).movedim(d, -1)  # (*, K) compute dtype
    x = logits.movedim(d, -1)  # (*, K)
    xc = x.detach().to(g.dtype)
    z0 = xc + g  # (*, K): the draw that chooses the sample
    index = z0.argmax(dim=-1)  # (*,)
    xs = shifted(xc)  # (*, K)
    shifts = safe_shift(shifted(z0), xs).unsqueeze(0)  # (1, *, K): G_1 = g up to a constant
    if k > 1:
        z = conditional_gumbel(xc, index, k - 1, generator=generator)  # (k-1, *, K)
        shifts = torch.cat([shifts, safe_shift(z, xs)], dim=0)  # (k, *, K)
    w = 1.0 / k
    hard, soft = mixed_softmax_st(x, index, shifts, (t,) * k, (w,) * k, (w,) * k)
    hard = hard.movedim(-1, d)
    return EstimatorSample(hard, hard, soft.movedim(-1, d), index)
