r"""IndeCateR (De Smet et al. 2023): unbiased gradients by exact marginalisation of one variable at a time.

For independent categoricals :math:`z = (z_1, \dots, z_V)`, :math:`z_v \sim \mathrm{Cat}(p_v)`,
:math:`p_v = \mathrm{softmax}(\ell_v)`, the CatLog-derivative trick sums each variable out exactly
while the others stay at their sampled values:

.. math::
    \nabla_\ell\, \mathbb E_z[f(z)] = \sum_{v=1}^{V} \mathbb E_{z}\Big[\sum_{k=1}^{K}
        \nabla_\ell\, p_v(k)\; f\big(z_{<v},\, k,\, z_{>v}\big)\Big]
    \approx \frac1n \sum_{s=1}^{n} \sum_{v=1}^{V} \sum_{k=1}^{K}
        \nabla_\ell\, p_v(k)\; f\big(z^{(s)}_{<v},\, k,\, z^{(s)}_{>v}\big).

It is unbiased (each term is a conditional expectation of REINFORCE's, a Rao-Blackwellisation,
so its variance is at most REINFORCE's), and exact when ``f`` is a sum of one-variable terms.
Because :math:`\sum_k \nabla p_v(k) = 0`, a constant baseline changes nothing.

**Cost**: ``n * V * K`` evaluations of ``f`` (the rows of its input) per estimate, where ``V``
counts the variables each value of ``f`` depends on: on a categorical VAE with ``L`` latents of
``C`` classes, ``L * C`` decoder passes per example and sample (200 for Jang's 20 x 10), against
one for a straight-through estimator. ``chunk`` bounds the rows per call of ``f``.

References:
    1. L. De Smet, E. Sansone, P. Zuidberg Dos Martires, *Differentiable Sampling of Categorical
       Distributions Using the CatLog-Derivative Trick*, NeurIPS 2023.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from gumbelkit._validation import compute_dtype
from gumbelkit.estimators._score import draws

__all__ = ["IndeCateRSample", "indecater"]


class IndeCateRSample(NamedTuple):
    """Result of :func:`indecater`.

    Attributes:
        loss: ``(*P)`` surrogate: value = mean of ``f`` over the ``n`` samples; gradient w.r.t.
            the logits = the IndeCateR estimate (plus the pathwise gradient for parameters
            inside ``f``, at the samples).
        hard: ``(n, *logits.shape)`` exact one-hot samples.
        indices: ``(n, *B)`` sampled categories (``dim`` removed).
        values: ``(n, *P)`` the values ``f(hard)``.
        evaluations: rows of ``f``'s input evaluated, ``n * (1 + V * K)``.
    """

    loss: Tensor
    hard: Tensor
    indices: Tensor
    values: Tensor
    evaluations: int


def indecater(
    logits: Tensor,
    f: Callable[[Tensor], Tensor],
    n_samples: int = 1,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    chunk: int = 65536,
) -> IndeCateRSample:
    r"""IndeCateR gradient estimate of :math:`\mathbb E_z[f(z)]`, as a surrogate loss.

    .. math::
        \mathcal L = \frac1n\sum_s \Big[f(z^{(s)}) + \sum_{v,k}
            \mathrm{sg}\big(f(z^{(s)}_{v \leftarrow k})\big)\big(p_v(k) - \mathrm{sg}(p_v(k))\big)\Big]

    (``sg`` = stop-gradient): its value is the sample mean of ``f`` and its gradient the
    IndeCateR estimate. Configurations that put a variable on a masked (``-inf``) category have
    probability 0 and contribute nothing.

    Args:
        logits: ``(*B, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category. The
            non-category dimensions ``B = P + Q`` hold independent variables.
        f: maps one-hot configurations ``(M, *logits.shape)`` to values ``(M, *P)``, ``P`` a
            prefix of ``B`` (categories moved last): ``(M,)`` for one scalar per configuration,
            ``(M, batch)`` for a per-example loss (each example then marginalises only its own
            ``V = prod(Q)`` variables). Evaluated without gradient on the marginalised
            configurations.
        n_samples: samples per estimate (``>= 1``).
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        chunk: most configurations per call of ``f`` on the marginalised configurations.

    Returns:
        :class:`IndeCateRSample` ``(loss, hard, indices, values, evaluations)``.

    Example:
        >>> logits = torch.zeros(3, 2, requires_grad=True)
        >>> out = indecater(logits, lambda z: z[..., 0].sum(-1))
        >>> out.loss.backward(); logits.grad[:, 0]  # f is a sum of one-variable terms: exact
        tensor([0.2500, 0.2500, 0.2500])
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be an int >= 1, got {chunk!r}")
    if not callable(f):
        raise ValueError(f"f must be a callable mapping one-hot samples to values, got {type(f).__name__}")
    d, batch, index, hard, values = draws(logits, f, n_samples, dim, generator)
    cdt = compute_dtype(logits.dtype)
    n = n_samples
    x = logits.movedim(d, -1)  # (*B, K)
    k = x.shape[-1]
    p_shape = batch[: values.ndim - 1]
    q_shape = batch[values.ndim - 1 :]
    v = math.prod(q_shape)  # variables per value of f
    # every sample with variable j set to category c: (n, V, K, *P, V) indices
    base = index.reshape(n, *p_shape, v)  # (n, *P, V)
    mod = base.unsqueeze(1).unsqueeze(1).expand(n, v, k, *p_shape, v).clone()
    view = (1, v, 1) + (1,) * len(p_shape) + (1,)
    pos = torch.arange(v, device=logits.device).reshape(view).expand(n, v, k, *p_shape, 1)
    cat = torch.arange(k, device=logits.device).reshape(1, 1, k, *([1] * len(p_shape)), 1)
    mod.scatter_(-1, pos, cat.expand(n, v, k, *p_shape, 1))
    flat = mod.reshape(n * v * k, *batch)  # (n V K, *B)
    with torch.no_grad():
        outs = []
        for start in range(0, flat.shape[0], chunk):
            part = flat[start : start + chunk]  # (m, *B)
            zc = torch.nn.functional.one_hot(part, k).to(logits.dtype).movedim(-1, d + 1)  # (m, *logits.shape)
            outs.append(f(zc).detach().to(cdt))
        fvals = torch.cat(outs).reshape(n, v, k, *p_shape)  # (n, V, K, *P)
    # (n, V, K, *P) -> (*P, V, K): the mean over samples of f at (variable v <- category c)
    fbar = fvals.mean(dim=0).movedim((0, 1), (-2, -1))
    probs = torch.softmax(x.to(cdt), dim=-1).reshape(*p_shape, v, k)  # (*P, V, K)
    # a masked category has p = 0 and no gradient; f there may be anything (inf, NaN): zero it
    fbar = torch.where(probs.detach() > 0, fbar, torch.zeros((), dtype=cdt, device=fbar.device))
    score = (fbar * (probs - probs.detach())).sum(dim=(-2, -1))  # (*P), value exactly 0
    loss = values.mean(dim=0) + score.to(values.dtype)
    return IndeCateRSample(loss, hard, index, values, n * (1 + v * k))
