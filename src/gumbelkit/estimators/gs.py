r"""The Gumbel-Softmax (Concrete) relaxation, used as a gradient estimator.

The forward value is the relaxed sample itself, so the estimator is the exact gradient of a
*relaxed* objective :math:`\mathbb E_g[f(\mathrm{softmax}((\ell + g)/\tau))]`, biased for
:math:`\mathbb E_D[f(D)]` by the relaxation, and exact only as :math:`\tau \to 0`.

References:
    1. E. Jang, S. Gu, B. Poole, *Categorical Reparameterization with Gumbel-Softmax*, ICLR 2017.
    2. C. J. Maddison, A. Mnih, Y. W. Teh, *The Concrete Distribution*, ICLR 2017.
"""

from __future__ import annotations

import torch
from torch import Tensor

from gumbelkit.estimators._common import EstimatorSample
from gumbelkit.functional import gumbel_softmax_sample

__all__ = ["gs"]


def gs(
    logits: Tensor,
    tau: float | Tensor = 1.0,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> EstimatorSample:
    r"""The soft relaxation: ``output`` *is* the relaxed sample.

    .. math::
        \mathrm{output} = \mathrm{soft} = \mathrm{softmax}\!\left(\frac{\ell + g}{\tau}\right),
        \qquad \mathrm{indices} = \arg\max_i (\ell_i + g_i)

    As :math:`\tau \to 0` the relaxed sample tends to the one-hot of ``index`` (and the
    gradient's variance grows without bound); as :math:`\tau \to \infty` it tends to uniform.

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        tau: temperature (positive number, or positive tensor broadcastable to the logits).
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise of the logits' shape.

    Returns:
        ``EstimatorSample(output, hard, soft, indices)`` with ``output`` the relaxed sample
        ``soft`` (it carries the gradient) and ``hard`` the exact one-hot of ``indices``,
        without a gradient path.

    Example:
        >>> s = gs(torch.randn(2, 5), tau=0.5)
        >>> torch.equal(s.output, s.soft), bool(((s.hard == 0) | (s.hard == 1)).all())
        (True, True)
    """
    s = gumbel_softmax_sample(logits, tau, dim, generator=generator, noise=noise)
    return EstimatorSample(s.soft, s.hard.detach(), s.soft, s.indices)
