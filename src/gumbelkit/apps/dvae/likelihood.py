r"""Pixel likelihoods of the discrete VAE: Bernoulli, discretized logistic, discretized logit-Laplace.

Every likelihood maps the decoder's output ``(B, C_out, 28, 28)`` and the data ``(B, 784)`` to
per-image :math:`-\log p(x|z)` in nats, and to a point reconstruction in ``[0, 1]`` (the Bernoulli
mean; the clamped logistic location; DALL-E's mapped-back sigmoid of the logit-Laplace location):

* ``bernoulli`` (binary pixels, ``C_out = 1``): binary cross-entropy with logits.
* ``logistic`` (8-bit grey levels, ``C_out = 2``: location and log-scale): the logistic
  distribution integrated over each of the 256 bins of width 1/255 around :math:`k/255`, the two
  end bins taking the tails (Salimans et al., PixelCNN++), so the probabilities of the 256 levels
  sum to one and :math:`-\log p` in bits per dimension is a code length.
* ``logit_laplace`` (8-bit grey levels, ``C_out = 2``): DALL-E's logit-Laplace. The pixel is mapped
  to :math:`y = \epsilon + (1 - 2\epsilon) x` with :math:`\epsilon = 0.1`, and
  :math:`\mathrm{logit}(y) \sim \mathrm{Laplace}(\mu, b)`. Here it is integrated over the same 256
  bins (their edges mapped the same way), so it too is a proper distribution over the grey levels.

References:
    1. T. Salimans, A. Karpathy, X. Chen, D. P. Kingma, *PixelCNN++*, ICLR 2017.
    2. A. Ramesh et al., *Zero-Shot Text-to-Image Generation* (DALL-E), ICML 2021, Sec. A.3.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["LIKELIHOODS", "LOGIT_LAPLACE_EPS", "channels", "mean_image", "neg_log_likelihood"]

LIKELIHOODS = ("bernoulli", "logistic", "logit_laplace")
LOGIT_LAPLACE_EPS = 0.1
_LEVELS = 255.0
# log-scales are clamped to this range: below it the bin probability is already 1 in float32 and the
# gradient only pushes further (PixelCNN++ uses -7 too); above it the density is flat over [0, 1]
_LOG_SCALE_MIN, _LOG_SCALE_MAX = -7.0, 7.0


def _check(name: str) -> str:
    if name not in LIKELIHOODS:
        raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}; got {name!r}")
    return name


def channels(name: str) -> int:
    """Decoder output channels the likelihood needs (1 for Bernoulli, 2 otherwise)."""
    return 1 if _check(name) == "bernoulli" else 2


def _log_sub_sigmoid(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`\log(\sigma(b) - \sigma(a))` for ``a < b``, without cancellation.

    :math:`\sigma(b) - \sigma(a) = e^b (1 - e^{a-b}) / ((1 + e^a)(1 + e^b))`.
    """
    return b + torch.log(-torch.expm1(a - b)) - F.softplus(a) - F.softplus(b)


def _laplace_log_cdf(u: Tensor) -> Tensor:
    """``log F(u)`` of the standard Laplace distribution."""
    neg = u.clamp(max=0.0)
    pos = u.clamp(min=0.0)
    # each branch is evaluated on a clamped input so the unused one cannot produce inf / NaN gradients
    return torch.where(u < 0, neg + math.log(0.5), torch.log1p(-0.5 * torch.exp(-pos)))


def _log_sub_laplace(a: Tensor, b: Tensor) -> Tensor:
    r""":math:`\log(F(b) - F(a))` of the standard Laplace distribution for ``a < b``."""
    both_neg = math.log(0.5) + b.clamp(max=0.0) + torch.log(-torch.expm1(a - b))
    both_pos = math.log(0.5) - a.clamp(min=0.0) + torch.log(-torch.expm1(a - b))
    # straddling 0: F(b) - F(a) = -(expm1(-b) + expm1(a)) / 2, a sum of two non-positive terms
    mid = torch.log(-0.5 * (torch.expm1(-b.clamp(min=0.0)) + torch.expm1(a.clamp(max=0.0))))
    return torch.where(b <= 0, both_neg, torch.where(a >= 0, both_pos, mid))


def _levels(x: Tensor) -> Tensor:
    """Integer grey levels 0..255 of ``x`` in ``[0, 1]``."""
    return torch.round(x * _LEVELS)


def neg_log_likelihood(name: str, out: Tensor, x: Tensor) -> Tensor:
    r"""Per-image :math:`-\log p(x|z)` in nats.

    Args:
        name: one of :data:`LIKELIHOODS`.
        out: ``(B, C_out, 28, 28)`` decoder output.
        x: ``(B, 784)`` data in ``[0, 1]`` (binary for ``bernoulli``, multiples of 1/255 otherwise).

    Returns:
        ``(B,)`` nats.
    """
    _check(name)
    B = out.shape[0]
    xi = x.view(B, 1, *out.shape[2:])  # (B, 1, H, W)
    if name == "bernoulli":
        return F.binary_cross_entropy_with_logits(out, xi, reduction="none").flatten(1).sum(1)
    loc, log_scale = out[:, :1], out[:, 1:2].clamp(_LOG_SCALE_MIN, _LOG_SCALE_MAX)  # (B, 1, H, W)
    inv_scale = torch.exp(-log_scale)
    k = _levels(xi)
    lo_x, hi_x = (k - 0.5) / _LEVELS, (k + 0.5) / _LEVELS  # bin edges in pixel space
    if name == "logistic":
        lo, hi = (lo_x - loc) * inv_scale, (hi_x - loc) * inv_scale
        first = -F.softplus(-hi)  # log sigma(hi): the bin [-inf, 0.5/255]
        last = -F.softplus(lo)  # log (1 - sigma(lo)): the bin [254.5/255, inf]
        middle = _log_sub_sigmoid(lo, hi)
    else:
        eps = LOGIT_LAPLACE_EPS

        def to_z(v: Tensor) -> Tensor:
            y = (eps + (1 - 2 * eps) * v).clamp(eps / 2, 1 - eps / 2)  # the end edges are outside
            return torch.log(y) - torch.log1p(-y)

        lo, hi = (to_z(lo_x) - loc) * inv_scale, (to_z(hi_x) - loc) * inv_scale
        first = _laplace_log_cdf(hi)
        last = _laplace_log_cdf(-lo)  # log(1 - F(lo)) = log F(-lo) by symmetry
        middle = _log_sub_laplace(lo, hi)
    logp = torch.where(k <= 0, first, torch.where(k >= _LEVELS, last, middle))
    return -logp.flatten(1).sum(1)


def mean_image(name: str, out: Tensor) -> Tensor:
    r"""The point reconstruction ``(B, 784)`` in ``[0, 1]``: Bernoulli mean, clamped logistic location,
    or DALL-E's :math:`(\sigma(\mu) - \epsilon) / (1 - 2\epsilon)` clamped, for the logit-Laplace."""
    _check(name)
    B = out.shape[0]
    if name == "bernoulli":
        return torch.sigmoid(out).view(B, -1)
    loc = out[:, 0]
    if name == "logistic":
        return loc.clamp(0.0, 1.0).reshape(B, -1)
    eps = LOGIT_LAPLACE_EPS
    return ((torch.sigmoid(loc) - eps) / (1 - 2 * eps)).clamp(0.0, 1.0).reshape(B, -1)
