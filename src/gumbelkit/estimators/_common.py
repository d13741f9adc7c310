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
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from gumbelkit._validation import check_dim, check_float_tensor, check_logits, compute_dtype
from gumbelkit.noise import gumbel_noise


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


def prepare(logits: Tensor, dim: int) -> int:
    """Validate ``logits`` and ``dim``; return ``dim`` normalised to a non-negative int."""
    check_float_tensor(logits, "logits")
    d = check_dim(logits, dim)
    check_logits(logits, d)
    return d


def draw_gumbel(
    logits: Tensor, noise: Tensor | None, generator: torch.Generator | None
) -> Tensor:
    """Gumbel noise of the logits' shape (original layout) in the compute dtype.

    Drawn exactly as :func:`gumbelkit.functional.gumbel_softmax_sample` draws it, so the same
    generator state gives the same sample in every estimator.
    """
    cdt = compute_dtype(logits.dtype)
    if noise is None:
        return gumbel_noise(logits.shape, dtype=cdt, device=logits.device, generator=generator)
    if not isinstance(noise, Tensor) or noise.shape != logits.shape:
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise must be a tensor of the logits' shape {tuple(logits.shape)}, got {got}")
    return noise.detach().to(cdt)


def one_hot(index: Tensor, k: int, dtype: torch.dtype) -> Tensor:
    """Exact one-hot along a new last dimension of size ``k``."""
    out = torch.zeros((*index.shape, k), dtype=dtype, device=index.device)
    return out.scatter_(-1, index.unsqueeze(-1), 1.0)


def shifted(xc: Tensor) -> Tensor:
    """``x - max(x)`` along the last dim (detached). Finite where x is, ``-inf`` where masked."""
    # max-subtraction keeps every later exp() <= 1: no overflow for any finite logits
    return xc - xc.amax(dim=-1, keepdim=True)


def safe_shift(target: Tensor, xs: Tensor) -> Tensor:
    """The constant ``a`` with ``xs + a = target``, 0 where ``xs`` is ``-inf`` (masked)."""
    # -inf - (-inf) would be NaN: a masked entry stays masked with a zero shift
    return torch.where(torch.isneginf(xs), torch.zeros((), dtype=xs.dtype, device=xs.device), target - xs)


def mixed_softmax_vjp(grad: Tensor, probs: Tensor, weights: Tensor) -> Tensor:
    r""":math:`\sum_m w_m (y_m \odot g - y_m (y_m^\top g))` for ``probs`` ``(M, *, K)``, ``grad`` ``(*, K)``."""
    pg = probs * grad  # (M, *, K)
    jac = pg - probs * pg.sum(dim=-1, keepdim=True)  # (M, *, K)
    if probs.shape[0] == 1:
        return jac[0] * weights[0]
    w = weights.reshape((-1,) + (1,) * grad.ndim)  # (M, 1, ..., 1)
    return (w * jac).sum(dim=0)  # (*, K)


def _mixture_probs(xc: Tensor, shifts: Tensor | None, taus: Tensor) -> Tensor:
    """``softmax((x + a_m) / t_m)`` for every component m: ``(M, *, K)``."""
    z = xc.unsqueeze(0) if shifts is None else xc.unsqueeze(0) + shifts  # (M or 1, *, K)
    z = z - z.amax(dim=-1, keepdim=True)  # <= 0, so dividing by a small t cannot overflow
    t = taus.reshape((-1,) + (1,) * xc.ndim)
    m = taus.shape[0]
    # exp / sum by hand: torch.softmax's CPU kernel is ~5x slower for the tiny K of binary latents
    e = (z / t).exp_()  # (M, *, K), entries in [0, 1], the max is exactly 1
    return (e / e.sum(dim=-1, keepdim=True)).expand(m, *xc.shape)


class _MixedSoftmaxST(torch.autograd.Function):
    """Outputs ``(hard, soft)``; both backpropagate through the softmax-Jacobian mixture.

    ``hard`` is returned unchanged (an exact one-hot in the logits' dtype) and is differentiated
    with coefficients ``c_hard``; ``soft`` :math:`= \\sum_m c^{soft}_m y_m` is differentiated
    with ``c_soft``, which is its true Jacobian. Computation runs in float32 for half inputs.
    Twice differentiable: under ``create_graph=True`` the backward recomputes the probabilities
    from ``x`` with autograd on, so Hessian-vector products and gradient penalties see the
    surrogate's true second derivative (the shifts and temperatures are constants).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        x: Tensor,  # (*, K) logits, categories last
        shifts: Tensor | None,  # (M, *, K) constants, or None for zero
        taus: Tensor,  # (M,) per-component temperatures (compute dtype)
        c_hard: Tensor,  # (M,)
        c_soft: Tensor,  # (M,)
        hard: Tensor,  # (*, K) exact one-hot in x's dtype
    ) -> tuple[Tensor, Tensor]:
        cdt = compute_dtype(x.dtype)
        xc = x.detach().to(cdt)
        probs = _mixture_probs(xc, shifts, taus)  # (M, *, K)
        if probs.shape[0] == 1:
            soft = probs[0] * c_soft[0]  # (*, K)
        else:
            soft = (c_soft.reshape((-1,) + (1,) * xc.ndim) * probs).sum(dim=0)  # (*, K)
        ctx.save_for_backward(x, shifts, taus, probs, c_hard / taus, c_soft / taus)
        ctx.in_dtype = x.dtype
        return hard, soft.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_hard: Tensor | None, grad_soft: Tensor | None):  # type: ignore[override]
        x, shifts, taus, probs, w_hard, w_soft = ctx.saved_tensors
        if torch.is_grad_enabled():
            # create_graph=True: rebuild the probabilities from x, so that the returned gradient
            # carries a graph and second derivatives are those of the surrogate (shifts constant)
            probs = _mixture_probs(x.to(probs.dtype), shifts, taus)
        total: Tensor | None = None
        if grad_hard is not None:
            total = mixed_softmax_vjp(grad_hard.to(probs.dtype), probs, w_hard)
        if grad_soft is not None:
            g = mixed_softmax_vjp(grad_soft.to(probs.dtype), probs, w_soft)
            total = g if total is None else total + g
        gx = None if total is None else total.to(ctx.in_dtype)
        return gx, None, None, None, None, None


def mixed_softmax_st(
    x: Tensor,
    index: Tensor,
    shifts: Tensor | None,
    taus: Sequence[float],
    c_hard: Sequence[float],
    c_soft: Sequence[float],
) -> tuple[Tensor, Tensor]:
    """Exact one-hot of ``index`` carrying the mixture gradient, and the relaxed ``soft``.

    Args:
        x: ``(*, K)`` logits with categories last (any float dtype).
        index: ``(*)`` sampled categories.
        shifts: ``(M, *, K)`` finite or ``-inf`` constants (0 where ``x`` is masked), or None.
        taus, c_hard, c_soft: ``M`` temperatures and mixing coefficients.

    Returns:
        ``(hard, soft)`` in ``x``'s dtype.
    """
    cdt = compute_dtype(x.dtype)
    kw = {"dtype": cdt, "device": x.device}
    hard = one_hot(index, x.shape[-1], x.dtype)
    out = _MixedSoftmaxST.apply(
        x,
        None if shifts is None else shifts.detach(),
        torch.tensor(list(taus), **kw),  # type: ignore[arg-type]
        torch.tensor(list(c_hard), **kw),  # type: ignore[arg-type]
        torch.tensor(list(c_soft), **kw),  # type: ignore[arg-type]
        hard,
    )
    return out[0], out[1]
