r"""Decoupled straight-through (Shah et al. 2024): one temperature to sample, another to differentiate.

Straight-through Gumbel-Softmax ties two choices to one temperature: how random the forward sample
is, and how the backward gradient spreads over the categories. Decoupled ST separates them. With
one Gumbel draw :math:`g` shared by both passes, written (as the paper writes it) with the
temperature on the logits only:

.. math::
    D = \arg\max_i \big(\ell_i / \tau_f + g_i\big) \sim \mathrm{Cat}\big(\mathrm{softmax}(\ell/\tau_f)\big),
    \qquad
    \hat\nabla_\ell = \frac{\partial\, y^b}{\partial \ell}^{\!\top} \frac{\partial f}{\partial D},
    \quad y^b = \mathrm{softmax}\big(\ell/\tau_b + g\big),

so :math:`\partial y^b / \partial \ell = (\mathrm{diag}(y^b) - y^b {y^b}^\top) / \tau_b`. The forward
temperature :math:`\tau_f` sets the sampling distribution (exploration: :math:`\tau_f > 1` flattens
it, :math:`\tau_f \to 0` is the deterministic argmax); the backward temperature :math:`\tau_b` sets
the gradient. :math:`\tau_f = \tau_b` is the paper's single-temperature ST-GS baseline (note: in
this "temperature on the logits" form, not the :math:`\mathrm{softmax}((\ell + g)/\tau)` of
:func:`~gumbelkit.estimators.st_gs`); the paper finds the best pairs far off that diagonal.

``backward_noise=False`` drops :math:`g` from the backward pass, :math:`y^b = \mathrm{softmax}(\ell/\tau_b)`
(a softmax-ST backward at :math:`\tau_b`; with :math:`\tau_f = 1` this is :func:`~gumbelkit.estimators.st`).

A model whose distribution is :math:`\mathrm{softmax}(\ell)` should use :math:`\tau_f = 1` (or treat
:math:`\ell/\tau_f` as its logits, e.g. in a KL term): with :math:`\tau_f \ne 1` the samples come
from :math:`\mathrm{softmax}(\ell/\tau_f)`.

References:
    1. R. Shah, M. Yan, M. C. Mozer, D. Liu, *Improving Discrete Optimisation Via Decoupled
       Straight-Through Gumbel-Softmax*, arXiv:2410.13331 (v1, 2024; v2 "Decoupled
       Straight-Through Estimator").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from gumbelkit._autograd import MixtureST
from gumbelkit._validation import check_tau
from gumbelkit.estimators._common import EstimatorSample, OneTerm, preamble

__all__ = ["decoupled_st"]


@dataclass(frozen=True)
class _Plan(OneTerm):
    """One term: softmax((x + tau_b g) / tau_b) = softmax(x / tau_b + g), or softmax(x / tau_b)
    without the noise (see :class:`gumbelkit._autograd.MixturePlan`); ``aux`` is ``(g,)``."""

    t: float
    noisy: bool
    components: int = 1

    def shift(self, xs: Tensor, indices: Tensor, aux: tuple[Tensor, ...], start: int, stop: int) -> Tensor | None:
        if not self.noisy:
            return None
        # the constant a = tau_b * g; 0 where the logit is masked, so -inf stays -inf
        zero = torch.zeros((), dtype=xs.dtype, device=xs.device)
        return torch.where(torch.isneginf(xs), zero, self.t * aux[0].to(xs.dtype)).unsqueeze(0)


def decoupled_st(
    logits: Tensor,
    tau: float = 1.0,
    dim: int = -1,
    *,
    tau_forward: float = 1.0,
    backward_noise: bool = True,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> EstimatorSample:
    r"""Decoupled ST: sample at ``tau_forward``, differentiate at ``tau`` (the backward temperature).

    .. math::
        \mathrm{hard} = \mathrm{onehot}\big(\arg\max(\ell/\tau_f + g)\big), \qquad
        \nabla_\ell\,\mathrm{hard} := \nabla_\ell\, \mathrm{softmax}(\ell/\tau_b + g)

    As :math:`\tau_b \to 0` the backward softmax saturates and the gradient vanishes except at
    near-ties; as :math:`\tau_b \to \infty` it shrinks like :math:`1/\tau_b` (and
    :math:`y^b \to \mathrm{softmax}(g)`). As :math:`\tau_f \to 0` the sample becomes
    :math:`\arg\max \ell`; as :math:`\tau_f \to \infty`, uniform.

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        tau: the backward temperature :math:`\tau_b` (positive number; treated as a constant).
        dim: the category dimension.
        tau_forward: the forward (sampling) temperature :math:`\tau_f`; 1 samples from
            :math:`\mathrm{softmax}(\ell)`.
        backward_noise: use the forward draw's Gumbel noise in the backward softmax (the
            paper's algorithm, default) or not (:math:`y^b = \mathrm{softmax}(\ell/\tau_b)`).
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise :math:`g` of the logits' shape.

    Returns:
        ``EstimatorSample(output, hard, soft, indices)``: ``output`` is ``hard``, the exact
        one-hot of ``indices`` carrying the decoupled gradient; ``soft`` is :math:`y^b`
        (differentiable, with the same Jacobian).

    Example:
        >>> s = decoupled_st(torch.randn(4, 3, requires_grad=True), tau=0.5, tau_forward=2.0)
        >>> s.hard.sum().item()
        4.0
    """
    tf = check_tau(tau_forward, "tau_forward", scalar=True, owner="decoupled_st")
    if not isinstance(backward_noise, bool):
        raise ValueError(f"backward_noise must be True or False, got {backward_noise!r}")
    p = preamble(logits, tau, dim, noise, generator, owner="decoupled_st")
    xs = p.x.detach().to(p.z.dtype)
    xs = xs - xs.amax(dim=-1, keepdim=True)  # (*, K), max 0: xs / tau_f cannot overflow upwards
    finite = torch.isfinite(xs)
    # the draw's Gumbel noise up to a per-slice constant (z is l + G shifted by a per-slice
    # constant), which changes neither the argmax below nor the backward softmax
    g = torch.where(finite, p.z - xs, torch.zeros((), dtype=xs.dtype, device=xs.device))  # (*, K)
    # an exact Cat(softmax(logits / tau_f)) sample from the same draw (tau_f = 1: the preamble's)
    index = p.indices if tf == 1.0 else torch.where(finite, xs / tf + g, xs).argmax(dim=-1)  # (*,)
    hard, soft = MixtureST.apply(p.x, index, _Plan(p.tau, backward_noise), g)
    hard = hard.movedim(-1, p.dim)
    return EstimatorSample(hard, hard, soft.movedim(-1, p.dim), index)

