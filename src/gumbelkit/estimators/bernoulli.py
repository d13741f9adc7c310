r"""Binary (Bernoulli) versions of the pathwise estimators, on one logit per variable.

A Bernoulli unit with log-odds :math:`\theta` is the two-category case of a categorical with
logits :math:`(\theta, 0)`: the sample is :math:`z = \mathbb 1[\theta + L > 0]` with logistic
noise :math:`L = g_1 - g_0 \sim \mathrm{Logistic}(0, 1)` (the difference of the two Gumbels), and
each estimator below is exactly its categorical namesake on :math:`(\theta, 0)` written for the
first coordinate (the tests check this identity). With :math:`\sigma` the logistic sigmoid:

==================  =============================================================  ==================
name                surrogate whose derivative ``output`` carries                  paper
==================  =============================================================  ==================
``st``              :math:`\sigma(\theta/\tau)`                                     Bengio et al. 2013
``gs``              none: ``output`` is the relaxed :math:`\sigma((\theta+L)/\tau)`  binary Concrete
``st_gs``           :math:`\sigma((\theta + L)/\tau)` (Gumbel-sigmoid ST)           Jang et al. 2017
``reinmax``         slope :math:`2a(1-a) - \tfrac12 p(1-p)`, ``tau >= 1``           Liu et al. 2023
``decoupled_st``    :math:`\sigma(\theta/\tau_b + L)`, sample at :math:`\tau_f`     Shah et al. 2024
==================  =============================================================  ==================

with :math:`p = \sigma(\theta)` and ReinMax's mid-point :math:`a = \tfrac12(\sigma(\theta/\tau) + z)`.
(Gumbel-Rao and GST are defined by their papers for categoricals only.)

Example:
    >>> from gumbelkit.estimators import sample_bernoulli
    >>> theta = torch.zeros(5, requires_grad=True)
    >>> s = sample_bernoulli(theta, "st_gs", tau=0.5)
    >>> bool(((s.hard == 0) | (s.hard == 1)).all())
    True

References:
    1. Y. Bengio, N. Leonard, A. Courville, 2013 (ST).
    2. E. Jang, S. Gu, B. Poole, ICLR 2017; C. J. Maddison, A. Mnih, Y. W. Teh, ICLR 2017
       (binary Concrete, Gumbel-sigmoid straight-through).
    3. L. Liu et al., *Bridging Discrete and Backpropagation: Straight-Through and Beyond*,
       NeurIPS 2023 (ReinMax).
    4. R. Shah, M. Yan, M. C. Mozer, D. Liu, arXiv:2410.13331, 2024 (Decoupled ST).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from gumbelkit._validation import check_float_tensor, check_tau, compute_dtype, lookup
from gumbelkit.estimators._common import EstimatorSample
from gumbelkit.noise import gumbel_noise

__all__ = ["bernoulli_names", "logistic_noise", "sample_bernoulli"]


def logistic_noise(
    shape: tuple[int, ...] | torch.Size,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Logistic(0, 1) samples as the difference of two Gumbel(0, 1) draws (finite, exact law)."""
    g1 = gumbel_noise(shape, dtype=dtype, device=device, generator=generator)
    g0 = gumbel_noise(shape, dtype=dtype, device=device, generator=generator)
    return g1 - g0


def _through(hard: Tensor, surrogate: Tensor) -> Tensor:
    # hard + (s - s) is exactly hard in value (s - s = 0 for finite s) with s's gradient
    return hard + (surrogate - surrogate.detach())


def _sample(theta: Tensor, noise: Tensor, tau_f: float = 1.0) -> Tensor:
    return (theta.detach() / tau_f + noise > 0).to(theta.dtype)  # exact Bernoulli(sigmoid(theta / tau_f))


# each returns (output, soft) for log-odds theta, noise L, temperature tau and the options
def _st(theta: Tensor, noise: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    soft = torch.sigmoid(theta / tau)
    return _through(_sample(theta, noise), soft), soft


def _gs(theta: Tensor, noise: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    soft = torch.sigmoid((theta + noise) / tau)
    return soft, soft


def _st_gs(theta: Tensor, noise: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    soft = torch.sigmoid((theta + noise) / tau)
    return _through(_sample(theta, noise), soft), soft


def _reinmax(theta: Tensor, noise: Tensor, tau: float) -> tuple[Tensor, Tensor]:
    z = _sample(theta, noise)
    th = theta.detach()
    a = 0.5 * (torch.sigmoid(th / tau) + z)  # the mid-point, in [0, 1]
    # sigmoid(theta + c) has slope a(1 - a) at theta for the constant c = logit(a) - theta
    # (c = +-inf where a is exactly 0 or 1: the slope is then 0 and sigmoid's backward stays finite)
    c = torch.logit(a) - th
    soft = torch.sigmoid(theta)  # pi_0, as the categorical ReinMax returns softmax(logits)
    return _through(z, 2.0 * torch.sigmoid(theta + c) - 0.5 * soft), soft


def _decoupled_st(theta: Tensor, noise: Tensor, tau: float, tau_forward: float = 1.0,
                  backward_noise: bool = True) -> tuple[Tensor, Tensor]:
    tf = check_tau(tau_forward, "tau_forward", scalar=True, owner="decoupled_st")
    if not isinstance(backward_noise, bool):
        raise ValueError(f"backward_noise must be True or False, got {backward_noise!r}")
    soft = torch.sigmoid(theta / tau + noise) if backward_noise else torch.sigmoid(theta / tau)
    return _through(_sample(theta, noise, tf), soft), soft


_FNS: dict[str, Callable[..., tuple[Tensor, Tensor]]] = {
    "st": _st,
    "gs": _gs,
    "st_gs": _st_gs,
    "reinmax": _reinmax,
    "decoupled_st": _decoupled_st,
}
_TAU_MIN = {"reinmax": 1.0}
_OPTIONS = {"decoupled_st": ("tau_forward", "backward_noise")}


def bernoulli_names() -> tuple[str, ...]:
    """Names accepted by :func:`sample_bernoulli`."""
    return tuple(_FNS)


def sample_bernoulli(
    logits: Tensor,
    name: str,
    tau: float = 1.0,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
    **options: Any,
) -> EstimatorSample:
    r"""Draw exact Bernoulli samples whose ``output`` carries estimator ``name``'s gradient.

    .. math::
        z = \mathbb 1[\theta + L > 0] \sim \mathrm{Bernoulli}(\sigma(\theta)), \qquad
        \nabla_\theta\, \mathrm{output} := \text{the estimator's surrogate derivative}

    (``decoupled_st`` samples :math:`\mathbb 1[\theta/\tau_f + L > 0]`.) As :math:`\tau \to 0`
    the ``st`` / ``st_gs`` slopes vanish away from :math:`\theta + L = 0`; as :math:`\tau \to \infty`
    they shrink like :math:`1/(4\tau)`.

    Args:
        logits: ``(*)`` log-odds :math:`\theta` (finite), any shape; one variable per entry.
        name: one of :func:`bernoulli_names`.
        tau: temperature (``reinmax`` needs ``tau >= 1``; for ``decoupled_st`` the backward
            temperature :math:`\tau_b`). Treated as a constant.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Logistic(0, 1) noise :math:`L` of the logits' shape.
        **options: ``decoupled_st``: ``tau_forward`` (default 1) and ``backward_noise``
            (default True), as in :func:`gumbelkit.estimators.decoupled_st`.

    Returns:
        ``EstimatorSample(output, hard, soft, indices)``: ``hard`` the exact 0/1 sample in the
        logits' dtype, ``output`` the tensor to use downstream (``hard`` with the estimator's
        gradient; the relaxed sample for ``gs``), ``soft`` the relaxed tensor, ``indices`` the
        sample as int64.

    Raises:
        ValueError: unknown name or option (listing the valid ones), non-finite logits, bad tau.
    """
    fn = lookup(_FNS, name, "Bernoulli estimator")
    allowed = _OPTIONS.get(name, ())
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for Bernoulli estimator {name!r}; "
                         f"allowed: {', '.join(allowed) or 'none'}")
    t = check_tau(tau, minimum=_TAU_MIN.get(name), scalar=True, owner=f"Bernoulli {name}")
    check_float_tensor(logits, "logits")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("logits must be finite log-odds (a Bernoulli variable has no masked category)")
    cdt = compute_dtype(logits.dtype)
    if noise is None:
        noise = logistic_noise(logits.shape, dtype=cdt, device=logits.device, generator=generator)
    elif not isinstance(noise, Tensor) or noise.shape != logits.shape:
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise must be a tensor of the logits' shape {tuple(logits.shape)}, got {got}")
    lnoise = noise.detach().to(cdt)
    theta = logits.to(cdt)
    out, soft = fn(theta, lnoise, t, **options)
    z = _sample(theta, lnoise, options.get("tau_forward", 1.0) if name == "decoupled_st" else 1.0)
    dt = logits.dtype
    return EstimatorSample(out.to(dt), z.to(dt), soft.to(dt), z.to(torch.int64))
