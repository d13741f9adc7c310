r"""Straight-through Gumbel-Softmax (ST-GS).

Forward: the exact one-hot of :math:`\arg\max(\ell + g)`; backward: the gradient of the relaxed
sample :math:`\mathrm{softmax}((\ell + g)/\tau)` at the same noise.

References:
    1. E. Jang, S. Gu, B. Poole, *Categorical Reparameterization with Gumbel-Softmax*, ICLR 2017.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gumbelkit.estimators._common import EstimatorSample
from gumbelkit.functional import gumbel_softmax_sample

__all__ = ["st_gs"]


def st_gs(
    logits: Tensor,
    tau: float | Tensor = 1.0,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> EstimatorSample:
    r"""Straight-through Gumbel-Softmax.

    .. math::
        \mathrm{hard} = \mathrm{onehot}\big(\arg\max_i (\ell_i + g_i)\big), \qquad
        \nabla_\ell\,\mathrm{hard} := \nabla_\ell\,\mathrm{softmax}\!\left(\frac{\ell + g}{\tau}\right)

    As :math:`\tau \to 0` the gradient concentrates on near-ties (high variance); as
    :math:`\tau \to \infty` it shrinks like :math:`1/\tau` towards a scaled centring matrix.

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        tau: temperature (positive number, or positive tensor broadcastable to the logits).
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise of the logits' shape.

    Returns:
        ``EstimatorSample(output, hard, soft, indices)``: ``output`` is ``hard``, the fields
        of :func:`gumbelkit.functional.gumbel_softmax_sample`.

    Example:
        >>> s = st_gs(torch.randn(2, 5), tau=0.5)
        >>> bool((s.hard.argmax(-1) == s.indices).all())
        True
    """
    s = gumbel_softmax_sample(logits, tau, dim, generator=generator, noise=noise)
    return EstimatorSample(s.hard, s.hard, s.soft, s.indices)
