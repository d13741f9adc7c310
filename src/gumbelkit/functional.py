r"""Pure tensor functions: Gumbel-Max, Gumbel-top-k and Gumbel-Softmax.

Every function takes ``logits`` (unnormalised log-probabilities, any shape, categories along
``dim``), treats ``-inf`` as a masked category that is never chosen, draws its noise with
:func:`gumbelkit.noise.gumbel_noise` semantics (53-bit uniforms, finite in every dtype) and
accepts an optional ``torch.Generator``. Half-precision logits are computed in float32 and the
results returned in the logits' dtype. Every sampler perturbs ``logits - max`` (per slice), so
adding a constant to the logits never changes a sample.

Every function works under ``torch.func`` (``grad``, ``vmap`` with ``randomness="different"``
or ``"same"``, ``jacrev``) and ``torch.compile`` (no graph break). What a seed gives:

* eager, CPU: the PCG64 block source (:mod:`gumbelkit._kernels`), seeded from the generator;
* eager on other devices, inside ``torch.func`` transforms, and ``torch.compile`` with
  ``backend="eager"`` or ``"aot_eager"``: ``torch.rand`` from the same generator, so a seed gives
  the same sample in all three, but not the CPU eager one;
* ``torch.compile`` with inductor (the default backend): inductor draws its own random numbers
  (``torch._inductor.config.fallback_random = True`` restores ``torch.rand``'s), reproducible
  under ``torch.manual_seed`` but equal to none of the above. Dynamo cannot trace a
  ``torch.Generator``: a ``generator=`` argument costs graph breaks under ``torch.compile``;
  seed with ``torch.manual_seed`` there.

Under ``torch.compile`` the data checks become ``torch._assert_async`` (a ``RuntimeError`` when
the compiled code runs); inside ``torch.func`` transforms they are skipped.

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

from gumbelkit import _kernels
from gumbelkit._autograd import HardSample, SoftSample, StraightThrough, soft_forward
from gumbelkit._validation import (
    check_categories,
    check_dim,
    check_float_tensor,
    check_logits,
    check_noise,
    check_tau,
    check_valid,
    compute_dtype,
    get_validate_args,
)
from gumbelkit.noise import gumbel_noise, perturb

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


def _prepare(logits: Tensor, dim: int, noise: object) -> tuple[int, Tensor | None]:
    """Argument checks (always): float logits, ``dim`` in range, K >= 1, noise shape."""
    check_float_tensor(logits, "logits")
    d = check_dim(logits, dim)
    check_categories(logits, d)
    return d, check_noise(noise, logits)


def gumbel_max(
    logits: Tensor,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    r"""Draw an exact sample of :math:`\mathrm{Categorical}(\mathrm{softmax}(\ell))` by Gumbel-Max.

    .. math::
        y = \arg\max_i\ (\ell_i - \max_j \ell_j + g_i), \quad g_i \sim \mathrm{Gumbel}(0, 1)\
        \text{i.i.d.}, \qquad \Pr(y = i) = \frac{e^{\ell_i}}{\sum_j e^{\ell_j}}

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise of the logits' shape (then ``generator`` is unused).

    Returns:
        ``LongTensor`` of the logits' shape without ``dim``.

    Raises:
        ValueError: non-floating logits, NaN or ``+inf`` logits, a slice whose logits are all
            ``-inf``, an empty category dimension, or ``dim`` out of range.

    Example:
        >>> logits = torch.tensor([[0.0, 1.0, -float("inf")]])
        >>> gumbel_max(logits, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([1])
    """
    d, noise = _prepare(logits, dim, noise)
    # no torch.no_grad() block: z has no history anyway, and under torch.compile a failed check
    # inside one would leave grad mode off (dynamo does not restore it on an exception)
    # the numpy path finds the argmax while perturbing and writes no perturbed copy
    p = perturb(logits, d, noise=noise, generator=generator, want_index=True, values=False)
    check_valid(p.ok, logits, d)
    if p.indices is not None:
        return p.indices
    assert p.z is not None
    if _kernels.numpy_path(p.z):
        return _kernels.argmax_numpy(p.z, d)  # numpy blocks: no OpenMP fork per call
    return p.z.argmax(dim=d)


def gumbel_topk(
    logits: Tensor,
    k: int,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    r"""Draw ``k`` distinct categories without replacement, in order (Gumbel-top-k).

    The indices of the ``k`` largest :math:`\ell_i - \max\ell + g_i` are an ordered sample
    without replacement from the Plackett-Luce model: the first is drawn with probabilities
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
    d, noise = _prepare(logits, dim, noise)
    n = logits.shape[d]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int with 1 <= k <= {n} (the size of dim {dim}), got {k!r}")
    # numpy path: the top k of l + G (float64) are found while perturbing, no copy written
    z, ok_max, found, _ = perturb(logits, d, noise=noise, generator=generator, values=False, topk=k)
    ok: bool | Tensor
    if found is not None:
        # one flag for both: the k largest are finite iff the data are valid and k fit; the
        # branch below names which
        indices, ok, ok_max = found, ok_max, True
    elif z is not None and _kernels.numpy_path(z) and z.stride(d) == 1:  # categories contiguous
        indices, ok = _kernels.topk_numpy(z, d, k)  # numpy blocks of rows: no OpenMP fork
    else:
        assert z is not None
        top = z.topk(k, dim=d)
        indices, ok = top.indices, torch.isfinite(top.values).all()
    # every value is finite iff no NaN / +inf and each slice has >= k unmasked categories,
    # since the noise is finite; only then are the full checks run to name the problem
    check_valid(ok_max, logits, d)
    if get_validate_args() and isinstance(ok, Tensor) and _kernels.compiling():
        torch._assert_async(ok, f"gumbel_topk: k={k} is larger than the number of unmasked categories of a slice")
    elif get_validate_args() and not _kernels.in_transform() and not bool(ok):
        check_logits(logits, d)
        allowed = (~torch.isneginf(logits)).sum(dim=d)
        raise ValueError(
            f"k={k} is larger than the number of unmasked (not -inf) categories in some "
            f"slice along dim={dim} (smallest count: {int(allowed.min())})"
        )
    return indices


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
    hard = hard.to(soft.dtype).detach()
    if not (soft.requires_grad and torch.is_grad_enabled()):
        return hard  # no gradient to route
    return StraightThrough.apply(soft, hard)


def _noise_for(logits: Tensor, noise: Tensor | None, generator: torch.Generator | None):
    """The Function's noise inputs: ``(noise, None)``, or ``(None, stream)`` on the numpy path
    (noise fused into the kernel), or ``(torch.rand noise, None)`` on the torch-op path."""
    if noise is not None:
        return noise.detach(), None
    if _kernels.numpy_path(logits):
        return None, _kernels.draw_stream(generator)
    cdt = compute_dtype(logits.dtype)
    return gumbel_noise(logits.shape, dtype=cdt, device=logits.device, generator=generator), None


def _soft_and_index(
    logits: Tensor,
    tau: float | Tensor,
    d: int,
    noise: Tensor | None,
    generator: torch.Generator | None,
    want_index: bool,
) -> tuple[Tensor, Tensor | None]:
    """Soft sample (logits' dtype, differentiable) and, if asked, the argmax index.

    :class:`gumbelkit._autograd.SoftSample` when the logits need a gradient (it saves only the
    soft sample); a temperature or noise tensor that needs a gradient takes plain autograd ops,
    whose graph also differentiates with respect to it.
    """
    grad = torch.is_grad_enabled()
    plain = (isinstance(tau, Tensor) and tau.requires_grad) or (
        noise is not None and noise.requires_grad
    )
    if plain and grad:
        cdt = compute_dtype(logits.dtype)
        xc = logits.to(cdt)
        m = xc.detach().amax(dim=d, keepdim=True)
        g = gumbel_noise(logits.shape, dtype=cdt, device=logits.device, generator=generator) if noise is None else noise.to(cdt)
        check_valid(torch.isfinite(m).all(), logits, d)
        z = (xc - m) + g  # (*, K, *) the shift first: shift invariance in float32
        index = z.detach().argmax(dim=d) if want_index else None
        return _kernels.shifted_softmax(z, tau, d).to(logits.dtype), index
    nz, stream = _noise_for(logits, noise, generator)
    if logits.requires_grad and grad:
        y, index = SoftSample.apply(logits, tau, d, nz, stream, want_index)
        return y.to(logits.dtype), (index if want_index else None)
    # no gradient needed (none flows: tau and noise do not require grad here); no no_grad()
    # block, for the reason given in gumbel_max
    y, idx = soft_forward(logits.detach(), tau, d, nz, stream, want_index)
    return y.to(logits.dtype), idx


def gumbel_softmax_sample(
    logits: Tensor,
    tau: float | Tensor = 1.0,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> GumbelSoftmaxSample:
    r"""One Gumbel-Softmax draw returned three ways: straight-through one-hot, relaxed, indices.

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
    d, noise = _prepare(logits, dim, noise)
    tau = check_tau(tau, like=logits, dim=d)
    soft, index = _soft_and_index(logits, tau, d, noise, generator, want_index=True)
    assert index is not None
    hard = straight_through(_kernels.one_hot(index, soft, d), soft)
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
            and _kernels.numpy_path(logits)
            and not isinstance(tau, Tensor)
            and not (isinstance(noise, Tensor) and noise.requires_grad)
        ):
            # the soft sample is not returned: the Function reuses its buffer for the gradient
            tau = check_tau(tau, dtype=logits.dtype)
            d, noise = _prepare(logits, dim, noise)
            nz, stream = _noise_for(logits, noise, generator)
            return HardSample.apply(logits, tau, d, nz, stream)[0]
        return gumbel_softmax_sample(logits, tau, dim, generator=generator, noise=noise).hard
    d, noise = _prepare(logits, dim, noise)
    tau = check_tau(tau, like=logits, dim=d)
    return _soft_and_index(logits, tau, d, noise, generator, want_index=False)[0]
