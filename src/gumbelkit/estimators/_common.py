r"""Shared machinery of the straight-through family of estimators (private).

Every straight-through estimator here returns an exact one-hot forward value and routes the
incoming gradient :math:`g` through a *mixture of softmax Jacobians*

.. math::
    \hat\nabla_\ell = \sum_{m} \frac{c_m}{t_m}\, \big(y_m \odot g - y_m\, (y_m^\top g)\big),
    \qquad y_m = \mathrm{softmax}\!\left(\frac{\ell + a_m}{t_m}\right),

where the shifts :math:`a_m` are constants (Gumbel noise, GST's gap, ReinMax's mid-point) and
:math:`c_m` are mixing coefficients. ST uses one term (:math:`a = 0, t = \tau`), Gumbel-Rao K
terms with :math:`c = 1/K`, ReinMax two terms with :math:`c = (2, -\tfrac12)`. The relaxed output
``soft`` :math:`= \sum_m c'_m y_m` has exactly this Jacobian with its own coefficients
:math:`c'`, which is what the float64 ``gradcheck`` in the tests verifies.

Each estimator describes its terms by a plan (Python numbers only; see
:class:`gumbelkit._autograd.MixturePlan`) and hands it with its few tensors to
:class:`gumbelkit._autograd.MixtureST`, which recomputes the terms in the backward pass instead
of storing them. :func:`preamble` is the shared start of every estimator: argument checks, the
exact sample by Gumbel-Max on the shifted logits, categories moved last.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from gumbelkit._validation import (
    check_categories,
    check_dim,
    check_float_tensor,
    check_noise,
    check_tau,
    check_valid,
    dtype_of,
)
from gumbelkit.noise import perturb


class EstimatorSample(NamedTuple):
    """One draw of a pathwise gradient estimator.

    Generic training code uses ``output`` for every estimator; ``hard`` is always the exact
    one-hot and ``indices`` the exact categorical sample.

    Attributes:
        output: the tensor to pass downstream: it carries the estimator's gradient. For the
            straight-through estimators (``st``, ``st_gs``, ``gumbel_rao``, ``gst``,
            ``reinmax``) it is ``hard`` itself; for ``gs`` it is the relaxed sample ``soft``.
        hard: exact one-hot of ``indices`` (every entry exactly 0 or 1) in the logits' dtype.
            For ``gs`` it has no gradient path to the logits.
        soft: the estimator's relaxed tensor (differentiable; see each estimator).
        indices: the sampled categories (``LongTensor``, ``dim`` removed), an exact
            Categorical(softmax(logits)) sample.
    """

    output: Tensor
    hard: Tensor
    soft: Tensor
    indices: Tensor


class Preamble(NamedTuple):
    """What every straight-through estimator starts from (see :func:`preamble`)."""

    tau: float  # checked temperature
    dim: int  # normalised category dimension
    x: Tensor  # (*, K) the logits with categories last (a view, differentiable)
    z: Tensor  # (*, K) (x - max) + G in the compute dtype, categories last, no graph
    indices: Tensor  # (*,) argmax of z: the exact sample


def preamble(
    logits: Tensor,
    tau: object,
    dim: int,
    noise: Tensor | None,
    generator: torch.Generator | None,
    *,
    owner: str,
    minimum: float | None = None,
) -> Preamble:
    """Checks, then the exact sample: ``argmax((logits - max) + G)`` along ``dim``.

    The noise is drawn exactly as :func:`gumbelkit.functional.gumbel_softmax_sample` draws it
    (:func:`gumbelkit.noise.perturb`), so the same generator state gives the same sample in
    every estimator. The data checks are folded into the per-slice maximum (eager:
    ``ValueError``; compile: ``torch._assert_async``; ``torch.func``: skipped).
    """
    t = check_tau(tau, scalar=True, minimum=minimum, owner=owner, dtype=dtype_of(logits))
    check_float_tensor(logits, "logits")
    d = check_dim(logits, dim)
    check_categories(logits, d)
    noise = check_noise(noise, logits)
    z, ok, indices, _ = perturb(logits, d, noise=noise, generator=generator, want_index=True)
    assert z is not None  # (*, K, *) compute dtype
    check_valid(ok, logits, d)
    z = z.movedim(d, -1)  # (*, K)
    return Preamble(t, d, logits.movedim(d, -1), z, z.argmax(dim=-1) if indices is None else indices)


def safe_shift(target: Tensor, xs: Tensor) -> Tensor:
    """The constant ``a`` with ``xs + a = target``, 0 where ``xs`` is ``-inf`` (masked)."""
    # -inf - (-inf) would be NaN: a masked entry stays masked with a zero shift
    return torch.where(torch.isneginf(xs), torch.zeros((), dtype=xs.dtype, device=xs.device), target - xs)


class OneTerm:
    """The term of a one-term plan (ST, GST, decoupled ST): temperature ``t``, coefficients 1.

    A plan (see :class:`gumbelkit._autograd.MixturePlan`) inherits these and gives its fields
    (``t``, ``components = 1``) and its ``shift``.
    """

    t: float

    def tau(self, m: int) -> float:
        return self.t

    def c_hard(self, m: int) -> float:
        return 1.0

    def c_soft(self, m: int) -> float:
        return 1.0
