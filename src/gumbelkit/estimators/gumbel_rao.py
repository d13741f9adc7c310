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
sample from the conditional law), the other ``k - 1`` are fresh
(:func:`gumbelkit.noise.conditional_gumbel`); so ``k = 1`` is ST-GS on the same noise, bit for
bit in the forward pass.

Memory: the ``k - 1`` fresh perturbations come from a replayable stream (PCG64 on the numpy
path, :func:`gumbelkit.noise.counter_uniform` elsewhere) whose state or 0-d seed is all the
backward pass keeps; it replays them a chunk at a time. Saved for backward: the logits, the first perturbation and the
sampled indices, whatever ``k`` (not ``2k + 1`` times the logits); the backward recomputes the
``k`` softmaxes, so forward + backward costs about twice the softmaxes of storing them.

References:
    1. M. B. Paulus, C. J. Maddison, A. Krause, *Rao-Blackwellizing the Straight-Through
       Gumbel-Softmax Gradient Estimator*, ICLR 2021.
    2. C. J. Maddison, D. Tarlow, T. Minka, *A\* Sampling*, NeurIPS 2014 (truncated Gumbels).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gumbelkit._autograd import MixtureST
from gumbelkit._kernels import Stream
from gumbelkit.estimators._common import EstimatorSample, preamble, safe_shift
from gumbelkit.noise import conditional_draws, draw_conditional_source

__all__ = ["gumbel_rao"]


@dataclass(frozen=True)
class _Plan:
    """``k`` terms of weight ``1/k`` at temperature ``t``: the draw that chose the sample, then
    ``k - 1`` conditional draws replayed from their source (see
    :class:`gumbelkit._autograd.MixturePlan`). ``aux[0]`` is the first perturbation
    ``(x - max) + G``; the source is ``stream`` (numpy path: two ints) or ``aux[1]`` (a 0-d
    seed tensor)."""

    t: float
    components: int
    stream: Stream | None

    def tau(self, m: int) -> float:
        return self.t

    def c_hard(self, m: int) -> float:
        return 1.0 / self.components

    def c_soft(self, m: int) -> float:
        return 1.0 / self.components

    def shift(self, xs: Tensor, indices: Tensor, aux: tuple[Tensor, ...], start: int, stop: int) -> Tensor:
        z0 = aux[0]
        source = aux[1] if self.stream is None else self.stream
        parts = []
        if start == 0:
            parts.append((z0 - z0.amax(dim=-1, keepdim=True)).unsqueeze(0))  # G_1 = g + const
        if stop > max(start, 1):
            first = max(start, 1) - 1  # conditional draw j is term j + 1
            lse = torch.logsumexp(xs, dim=-1, keepdim=True)  # (*, 1)
            parts.append(conditional_draws(xs, lse, indices, source, first, stop - 1 - first))
        z = parts[0] if len(parts) == 1 else torch.cat(parts, dim=0)  # (stop - start, *, K)
        return safe_shift(z, xs)


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
        generator: optional ``torch.Generator`` (the noise, then the seed of the conditional
            draws, as :func:`gumbelkit.noise.conditional_gumbel` draws it).
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
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1 (number of conditional Gumbel samples), got {k!r}")
    p = preamble(logits, tau, dim, noise, generator, owner="gumbel_rao")
    source = draw_conditional_source(generator, p.z)
    if isinstance(source, tuple):  # a PCG64 stream: two ints, kept in the plan
        hard, soft = MixtureST.apply(p.x, p.indices, _Plan(p.tau, k, source), p.z)
    else:  # a 0-d seed tensor: saved for backward with the rest
        hard, soft = MixtureST.apply(p.x, p.indices, _Plan(p.tau, k, None), p.z, source)
    hard = hard.movedim(-1, p.dim)
    return EstimatorSample(hard, hard, soft.movedim(-1, p.dim), p.indices)
