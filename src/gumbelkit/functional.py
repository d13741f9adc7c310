r"""Pure tensor functions: Gumbel-Max, Gumbel-top-k and Gumbel-Softmax.

Every function takes ``logits`` (unnormalised log-probabilities, any shape, categories along
``dim``), treats ``-inf`` as a masked category that is never chosen, draws its noise with
:func:`gumbelkit.noise.gumbel_noise` semantics (53-bit uniforms, finite in every dtype) and
accepts an optional ``torch.Generator``. Half-precision logits are computed in float32 and the
results returned in the logits' dtype.

References:
    1. E. J. Gumbel, *Statistical theory of extreme values*, 1954 (the Gumbel-Max trick).
    2. E. Jang, S. Gu, B. Poole, *Categorical Reparameterization with Gumbel-Softmax*, ICLR 2017.
    3. C. J. Maddison, A. Mnih, Y. W. Teh, *The Concrete Distribution*, ICLR 2017.
    4. W. Kool, H. van Hoof, M. Welling, *Stochastic Beams and Where to Find Them: The
       Gumbel-Top-k Trick*, ICML 2019.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from gumbelkit import _fast
from gumbelkit._validation import (
    check_dim,
    check_float_tensor,
    check_logits,
    check_tau,
    compute_dtype,
    get_validate_args,
)
from gumbelkit.noise import gumbel_noise

__all__ = [
    "GumbelSoftmaxSample",
    "gumbel_max",
    "gumbel_softmax",
    "gumbel_softmax_sample",
    "gumbel_topk",
    "straight_through",
]


class GumbelSoftmaxSample(NamedTuple):
    """The three views of one Gumbel-Softmax draw (field names as torch's ``return_types``).

    Attributes:
        hard: exact one-hot of ``indices`` in the logits' dtype, carrying the gradient of
            ``soft`` (straight-through).
        soft: the relaxed sample :math:`\\mathrm{softmax}((\\ell + g) / \\tau)`.
        indices: the sampled category (``LongTensor``, ``dim`` removed); an exact
            Categorical(softmax(logits)) sample.
    """

    hard: Tensor
    soft: Tensor
    indices: Tensor


def _perturb(
    logits: Tensor, noise: Tensor | None, generator: torch.Generator | None
) -> Tensor:
    """Return ``logits + g`` in the compute dtype (float32, or float64 for float64 logits)."""
    cdt = compute_dtype(logits.dtype)
    if noise is None:
        g = gumbel_noise(logits.shape, dtype=cdt, device=logits.device, generator=generator)
    else:
        if not isinstance(noise, Tensor) or noise.shape != logits.shape:
            got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
            raise ValueError(f"noise must be a tensor of the logits' shape {tuple(logits.shape)}, got {got}")
        g = noise.to(cdt)
    return g.add_(logits.to(cdt)) if noise is None else logits.to(cdt) + g


def _prepare_cheap(logits: Tensor, dim: int) -> int:
    """Argument checks only; the data checks are folded into the sampler's max (_fast.check_max)."""
    check_float_tensor(logits, "logits")
    d = check_dim(logits, dim)
    if logits.shape[d] == 0:
        check_logits(logits, d)  # raises: no categories
    return d


def _check_noise(noise: Tensor | None, logits: Tensor) -> Tensor | None:
    if noise is not None and (not isinstance(noise, Tensor) or noise.shape != logits.shape):
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise must be a tensor of the logits' shape {tuple(logits.shape)}, got {got}")
    return noise


def gumbel_max(
    logits: Tensor,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    r"""Draw an exact sample of :math:`\mathrm{Categorical}(\mathrm{softmax}(\ell))` by Gumbel-Max.

    .. math::
        y = \arg\max_i\ (\ell_i + g_i), \quad g_i \sim \mathrm{Gumbel}(0, 1)\ \text{i.i.d.},
        \qquad \Pr(y = i) = \frac{e^{\ell_i}}{\sum_j e^{\ell_j}}

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise of the logits' shape (then ``generator`` is unused).

    Returns:
        ``LongTensor`` of the logits' shape without ``dim``.

    Raises:
        ValueError: non-floating logits, NaN or ``+inf`` logits, a slice whose logits are all
            ``-inf``, or ``dim`` out of range.

    Example:
        >>> logits = torch.tensor([[0.0, 1.0, -float("inf")]])
        >>> gumbel_max(logits, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([1])
    """
    d = _prepare_cheap(logits, dim)
    noise = _check_noise(noise, logits)
    with torch.no_grad():
        z = _fast.perturbed(logits, noise, generator)  # (*, K, *) without autograd history
        if _fast.cpu_fast(z.device):
            index, ok = _fast.argmax_numpy(z, d)  # numpy blocks: no OpenMP fork per call
            if not ok and get_validate_args():
                check_logits(logits, d)
            return index
        zmax, index = z.max(dim=d)  # one pass: the values validate, the indices are the sample
        _fast.check_max(zmax, logits, d)
        return index


def gumbel_topk(
    logits: Tensor,
    k: int,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    r"""Draw ``k`` distinct categories without replacement, in order (Gumbel-top-k).

    The indices of the ``k`` largest :math:`\ell_i + g_i` are an ordered sample without
    replacement from the Plackett-Luce model: the first is drawn with probabilities
    :math:`p_i \propto e^{\ell_i}`, the next from the rest renormalised, and so on.

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        k: number of categories, ``1 <= k <= K`` and at most the number of unmasked ones.
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise of the logits' shape.

    Returns:
        ``LongTensor`` shaped like ``logits`` with size ``k`` along ``dim``, first draw first.

    Raises:
        ValueError: as :func:`gumbel_max`, and ``k`` not an int in range, or larger than the
            number of unmasked categories of some slice.

    Example:
        >>> gumbel_topk(torch.zeros(5), 3, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3])
    """
    d = _prepare_cheap(logits, dim)
    n = logits.shape[d]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int with 1 <= k <= {n} (the size of dim {dim}), got {k!r}")
    noise = _check_noise(noise, logits)
    with torch.no_grad():
        z = _fast.perturbed(logits, noise, generator)
        if _fast.cpu_fast(z.device) and z.stride(d) == 1:  # categories contiguous (inner size 1)
            indices, ok = _fast.topk_numpy(z, d, k)  # numpy blocks of rows: no OpenMP fork
        else:
            top = z.topk(k, dim=d)
            indices, ok = top.indices, bool(torch.isfinite(top.values).all())
    # every value is finite iff no NaN / +inf and each slice has >= k unmasked categories,
    # since the noise is finite; only then are the full checks run to name the problem
    if get_validate_args() and not ok:
        check_logits(logits, d)
        allowed = (~torch.isneginf(logits)).sum(dim=d)
        if bool((allowed < k).any()):
            raise ValueError(
                f"k={k} is larger than the number of unmasked (not -inf) categories in some "
                f"slice along dim={dim} (smallest count: {int(allowed.min())})"
            )
    return indices


class _StraightThrough(torch.autograd.Function):
    """Forward: the given exact one-hot. Backward: the incoming gradient, unchanged, to ``soft``.

    ``hard - soft.detach() + soft`` is not exactly one-hot in float16 / bfloat16 (``(1 - s) + s``
    rounds), so the one-hot is returned as is and the gradient is routed by hand.
    """

    @staticmethod
    def forward(ctx, soft: Tensor, hard: Tensor) -> Tensor:  # type: ignore[override]
        return hard

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None


def straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    """Return ``hard`` in the forward pass with the gradient of ``soft`` in the backward pass.

    Unlike ``hard - soft.detach() + soft``, the forward value is ``hard`` bit for bit in every
    dtype.

    Args:
        hard: forward value (e.g. a one-hot), same shape and dtype as ``soft``.
        soft: the differentiable tensor whose gradient is used.

    Returns:
        A tensor equal to ``hard`` whose gradient flows to ``soft``.
    """
    if hard.shape != soft.shape:
        raise ValueError(f"hard and soft must have the same shape, got {tuple(hard.shape)} and {tuple(soft.shape)}")
    return _StraightThrough.apply(soft, hard.to(soft.dtype).detach())


def _one_hot(index: Tensor, like: Tensor, dim: int) -> Tensor:
    """Exact one-hot of ``index`` (``dim`` removed) with ``like``'s shape, dtype and device."""
    if _fast.cpu_fast(like.device):
        return _fast.one_hot(index, like.shape, dim, like.dtype)
    return torch.zeros_like(like, memory_format=torch.contiguous_format).scatter_(
        dim, index.unsqueeze(dim), 1.0
    )


def _soft_from_perturbed(z: Tensor, tau: float | Tensor, dim: int) -> Tensor:
    """softmax(z / tau) along ``dim``, stable for extreme z, tiny tau and -inf entries."""
    zmax = z.detach().amax(dim=dim, keepdim=True)  # finite: every slice has an unmasked entry
    if isinstance(tau, Tensor):
        tau_c = tau.to(z.dtype)
        if tau_c.requires_grad:
            # keep -inf out of the division so d/dtau never meets 0 * inf
            finite = torch.isfinite(z)
            shifted = torch.where(finite, z - zmax, torch.zeros((), dtype=z.dtype, device=z.device))
            s = torch.where(finite, shifted / tau_c, torch.full((), -torch.inf, dtype=z.dtype, device=z.device))
            return torch.softmax(s, dim=dim)
        return torch.softmax((z - zmax) / tau_c, dim=dim)
    # shifting by the max first keeps (z - max) / tau <= 0, so tiny tau cannot overflow to +inf
    return torch.softmax((z - zmax) / tau, dim=dim)


def _soft_and_index(
    logits: Tensor,
    tau: float | Tensor,
    d: int,
    noise: Tensor | None,
    generator: torch.Generator | None,
    want_index: bool,
) -> tuple[Tensor, Tensor | None]:
    """Soft sample (logits' dtype, differentiable) and, if asked, the argmax index.

    Fast path: the fused in-place sampler, under a custom autograd Function that saves only the
    soft sample when the logits need a gradient. A temperature or noise tensor that needs a
    gradient takes the plain autograd path, whose graph also differentiates with respect to it.
    """
    noise = _check_noise(noise, logits)
    plain = (isinstance(tau, Tensor) and tau.requires_grad) or (
        noise is not None and noise.requires_grad
    )
    if (plain and torch.is_grad_enabled()) or _fast.compiling():
        # gradients for tau or the noise, or torch.compile tracing: plain torch ops + autograd
        check_logits(logits, d)
        z = _perturb(logits, noise, generator)  # (*, K, *) in float32 / float64
        index = z.detach().argmax(dim=d) if want_index else None
        return _soft_from_perturbed(z, tau, d).to(logits.dtype), index
    if logits.requires_grad and torch.is_grad_enabled():
        soft, index = _fast.GumbelSoftmaxFunction.apply(logits, tau, d, noise, generator, want_index)
        return soft, (index if want_index else None)
    with torch.no_grad():
        y, index = _fast.soft_sample(logits, tau, d, noise, generator, want_index)
    return y.to(logits.dtype), index


def _check_tau_shape(tau: float | Tensor, logits: Tensor, dim: int) -> None:
    if isinstance(tau, Tensor):
        try:
            shape = torch.broadcast_shapes(tau.shape, logits.shape)
        except RuntimeError:
            shape = None
        if shape != logits.shape:
            raise ValueError(
                f"tau must be a number or a tensor broadcastable to the logits' shape "
                f"{tuple(logits.shape)}, got shape {tuple(tau.shape)}"
            )
        # one temperature per slice: the max-shift before dividing by tau (our overflow guard)
        # is exact only when tau is constant along dim, and so is the Concrete density
        j = dim - (logits.ndim - tau.ndim)  # tau's axis aligned with dim, if it has one
        if j >= 0 and tau.shape[j] != 1:
            raise ValueError(
                f"tau must have size 1 along dim={dim} (one temperature per slice of "
                f"categories), got shape {tuple(tau.shape)} for logits {tuple(logits.shape)}"
            )


def gumbel_softmax_sample(
    logits: Tensor,
    tau: float | Tensor = 1.0,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> GumbelSoftmaxSample:
    r"""One Gumbel-Softmax draw returned three ways: straight-through one-hot, relaxed, index.

    .. math::
        y^{soft} = \mathrm{softmax}\!\left(\frac{\ell + g}{\tau}\right), \quad
        i = \arg\max_j (\ell_j + g_j), \quad
        y^{hard} = \mathrm{onehot}(i) \text{ with } \nabla y^{hard} := \nabla y^{soft}

    As :math:`\tau \to 0` the soft sample tends to ``hard``; as :math:`\tau \to \infty` it tends
    to the uniform vector :math:`1/K` (masked categories stay exactly 0).

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        tau: temperature, a positive finite number or a positive tensor broadcastable to the
            logits with size 1 along ``dim`` (a learnable temperature receives gradients
            through ``soft`` and ``hard``).
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise of the logits' shape.

    Returns:
        :class:`GumbelSoftmaxSample` ``(hard, soft, indices)``; ``hard`` and ``soft`` have the
        logits' shape and dtype, ``indices`` drops ``dim``.

    Example:
        >>> s = gumbel_softmax_sample(torch.randn(4, 10), tau=0.5)
        >>> bool((s.hard.argmax(-1) == s.indices).all())
        True
    """
    tau = check_tau(tau)
    d = _prepare_cheap(logits, dim)
    _check_tau_shape(tau, logits, d)
    soft, index = _soft_and_index(logits, tau, d, noise, generator, want_index=True)
    assert index is not None
    hard = straight_through(_one_hot(index, soft, d), soft)
    return GumbelSoftmaxSample(hard, soft, index)


def gumbel_softmax(
    logits: Tensor,
    tau: float | Tensor = 1.0,
    hard: bool = False,
    eps: float = 1e-10,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    r"""Sample from the Gumbel-Softmax (Concrete) distribution, with torch's signature.

    .. math::
        y = \mathrm{softmax}\!\left(\frac{\ell + g}{\tau}\right), \quad
        g_i \sim \mathrm{Gumbel}(0, 1)\ \text{i.i.d.}

    With ``hard=True`` the forward value is the exact one-hot of :math:`\arg\max_i(\ell_i + g_i)`
    (every entry exactly 0 or 1, also in float16 / bfloat16) and the backward pass uses the
    gradient of the soft sample (straight-through Gumbel-Softmax). As :math:`\tau \to 0` the
    soft sample approaches that one-hot; as :math:`\tau \to \infty` it approaches uniform.

    Compared with ``torch.nn.functional.gumbel_softmax(logits, tau=1, hard=False, eps=1e-10,
    dim=-1)``: the same arguments in the same order, plus keyword-only ``generator`` and
    ``noise``; ``eps`` is accepted and ignored (torch ignores it too: it is deprecated there, and
    the noise here is finite by construction); noise never produces NaN/inf; ``tau`` is
    validated (``tau=0`` raises instead of returning NaN); masked ``-inf`` logits are safe; half
    precision is computed in float32.

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        tau: temperature, a positive finite number or a positive tensor broadcastable to logits
            with size 1 along ``dim`` (one temperature per slice).
        hard: return the straight-through one-hot instead of the relaxed sample.
        eps: accepted for torch compatibility and ignored.
        dim: the category dimension (any; e.g. ``dim=1`` for ``(B, K, H, W)`` dVAE logits).
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise of the logits' shape.

    Returns:
        Tensor of the logits' shape and dtype.

    Example:
        >>> y = gumbel_softmax(torch.randn(8, 5), tau=0.5, hard=True)
        >>> bool(((y == 0) | (y == 1)).all()) and bool((y.sum(-1) == 1).all())
        True

    See :func:`gumbel_softmax_sample` to get the hard, soft and index results of one draw.
    """
    if hard not in (True, False):
        raise ValueError(f"hard must be True or False, got {hard!r}")
    if hard:
        if (
            logits.requires_grad
            and torch.is_grad_enabled()
            and _fast.cpu_fast(logits.device)
            and not isinstance(tau, Tensor)
            and not (isinstance(noise, Tensor) and noise.requires_grad)
        ):
            # the soft sample is not returned: the Function reuses its buffer for the gradient
            tau = check_tau(tau)
            d = _prepare_cheap(logits, dim)
            noise = _check_noise(noise, logits)
            return _fast.GumbelSoftmaxHardFunction.apply(logits, tau, d, noise, generator)[0]
        return gumbel_softmax_sample(logits, tau, dim, generator=generator, noise=noise).hard
    tau = check_tau(tau)
    d = _prepare_cheap(logits, dim)
    _check_tau_shape(tau, logits, d)
    return _soft_and_index(logits, tau, d, noise, generator, want_index=False)[0]
