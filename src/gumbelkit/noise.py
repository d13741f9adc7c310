r"""Gumbel and exponential noise that is never :math:`\pm\infty` or NaN, in any dtype.

The standard Gumbel variable is :math:`G = -\log E` with :math:`E \sim \mathrm{Exp}(1)`, and
:math:`E = -\log(1 - W)` with :math:`W \sim \mathrm{Uniform}[0, 1)`. This module holds every noise
producer of the library: :func:`gumbel_noise`, :func:`exponential_noise`, :func:`gumbel_like`,
the conditional Gumbels of Gumbel-Rao (:func:`conditional_gumbel`) and the perturbed logits
:math:`(\ell - \max \ell) + G` that every sampler starts from.

How the noise is drawn, and why
--------------------------------
* ``W`` is a float64 uniform with 53 random bits (a grid of step :math:`2^{-53}`), whatever
  dtype is asked for. A float32 uniform has a grid of :math:`2^{-24}`, which caps
  :math:`-\log(-\log U)` near 16.6 and under-samples categories whose relative probability is
  below about 1e-7; half-precision uniforms are far coarser still. On CPU the 53 bits come from
  numpy's PCG64 generator seeded by four 63-bit draws of the ``torch.Generator`` (torch's
  Mersenne Twister is serial and about 3x slower); other devices, ``torch.compile`` and
  ``torch.func`` transforms use ``torch.rand`` (see :mod:`gumbelkit._kernels`). Either way
  ``generator=`` and ``torch.manual_seed`` give reproducible draws; the two sources give
  different values for the same seed.
* ``E = -log(1 - W)`` is computed in float64: ``1 - W`` is exact there, so tiny ``E`` (the upper
  Gumbel tail) keeps its full relative precision (``log1p(-W)`` on devices other than CPU).
  ``W = 0`` (probability :math:`2^{-53}`) is read as :math:`2^{-54}` so that ``E > 0`` and ``G``
  is finite.
* ``G = -log(E)`` is computed in float64 and rounded once to float32 (or kept in float64) on
  CPU; other devices round ``E`` to float32 first. Every value is finite in every floating dtype.

Exact range of the noise (float32 and float64 results)
------------------------------------------------------
:math:`G \in [-\log(53 \ln 2),\ 54 \ln 2] \approx [-3.6040,\ 37.430]`.
The probability mass the continuous Gumbel puts outside that range is
:math:`P(G > 37.43) \approx 5.5\times10^{-17}` and :math:`P(G < -3.604) = e^{-53\ln 2}
\approx 1.1\times10^{-16}`, below what a float64 probability can resolve next to 1. Half
precision results are the float32 values rounded to float16 / bfloat16 (same range, coarser
grid); the samplers in :mod:`gumbelkit.functional` never round the noise to half precision.

Shift invariance
----------------
A float32 ``logits + G`` is rounded to the ulp of the logits (0.0625 at 1e6), which ties or
reorders near-equal categories; the categorical distribution does not depend on a constant
added to the logits, and neither do the samples here. The torch-op path perturbs
:math:`(\ell - \max_{dim}\ell) + G`; the numpy path computes :math:`\ell + G` in float64
(exact to about 1e-16 of the logits' size) and subtracts its per-slice maximum before rounding
once, or subtracts the logits' maximum first where the categories are not the last dimension;
there, when every slice maximum is within ``_kernels.SHIFT_FREE`` (32) of 0, ``l + G`` is
rounded unshifted, which near the maximum is at most 2 bits coarser, and saves a pass.

References:
    1. E. J. Gumbel, *Statistical theory of extreme values*, 1954.
    2. TensorFlow Probability, ``tfp.distributions.Gumbel`` (tiny-uniform clamping rationale).
    3. M. B. Paulus, C. J. Maddison, A. Krause, *Rao-Blackwellizing the Straight-Through
       Gumbel-Softmax Gradient Estimator*, ICLR 2021 (conditional Gumbels).
    4. G. L. Steele, D. Lea, C. H. Flood, *Fast splittable pseudorandom number generators*,
       OOPSLA 2014 (SplitMix64, the counter-based stream of :func:`conditional_gumbel`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from gumbelkit import _kernels
from gumbelkit._validation import (
    FLOAT_DTYPES,
    check_categories,
    check_dim,
    check_float_tensor,
    compute_dtype,
)

__all__ = [
    "GUMBEL_NOISE_MAX",
    "GUMBEL_NOISE_MIN",
    "conditional_gumbel",
    "exponential_noise",
    "gumbel_like",
    "gumbel_noise",
]

#: Largest value :func:`gumbel_noise` can return: :math:`54 \ln 2` (from ``W = 0`` -> :math:`2^{-54}`).
GUMBEL_NOISE_MAX: float = 54.0 * math.log(2.0)
#: Smallest value :func:`gumbel_noise` can return: :math:`-\log(53 \ln 2)` (``W = 1 - 2^{-53}``).
GUMBEL_NOISE_MIN: float = -math.log(53.0 * math.log(2.0))

_W_FLOOR = 2.0**-54  # replaces W = 0 so that E > 0; half the grid step of a float64 uniform


def _check_dtype(dtype: object) -> torch.dtype:
    if dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"dtype must be one of torch.float16, torch.bfloat16, torch.float32, torch.float64; "
            f"got {dtype!r}"
        )
    return dtype  # type: ignore[return-value]


def _device(device: torch.device | str | None) -> torch.device:
    return torch.empty(0).device if device is None else torch.device(device)


def _shape(shape: Sequence[int] | torch.Size | int) -> tuple[int, ...]:
    if isinstance(shape, int):
        return (shape,)
    return tuple(int(s) for s in shape)


def _numpy_device(device: torch.device) -> bool:
    return _kernels.numpy_path(torch.empty(0, device=device))


def _exponential_torch(shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> Tensor:
    """``E = -log(1 - W)`` in float64 from ``torch.rand`` (the torch-op path)."""
    w = torch.rand(shape, dtype=torch.float64, device=device, generator=generator)
    w = w.clamp(min=_W_FLOOR)  # W = 0 would give E = 0 and an infinite Gumbel value
    return torch.log1p(-w).neg()  # exact 1 - W in float64: tiny E keeps full precision


def exponential_noise(
    shape: Sequence[int] | torch.Size | int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Standard exponential samples :math:`E \sim \mathrm{Exp}(1)`, strictly positive and finite.

    .. math::
        E = -\log(1 - W), \quad W \sim \mathrm{Uniform}[0, 1) \text{ (float64, 53 bits)}

    Args:
        shape: output shape.
        dtype: output dtype (any floating dtype); computed in float64 and rounded.
        device: output device (default: the current default device).
        generator: optional ``torch.Generator`` for reproducible draws.

    Returns:
        Tensor of ``shape`` with values in :math:`[2^{-54},\ 53 \ln 2]`, rounded to ``dtype``
        (float16 cannot hold values below :math:`2^{-24}`; they are returned as :math:`2^{-24}`).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> exponential_noise((2, 3), generator=g).shape
        torch.Size([2, 3])
    """
    dtype = _check_dtype(dtype)
    dev = _device(device)
    if _numpy_device(dev):  # same recipe, block by block in cache (see gumbelkit._kernels)
        wide = dtype if dtype in (torch.float32, torch.float64) else torch.float64
        out = torch.empty(_shape(shape), dtype=wide, device=dev)
        return _round_positive(_kernels.exponential_into(out, _kernels.draw_stream(generator)), dtype)
    return _round_positive(_exponential_torch(_shape(shape), dev, generator), dtype)


def _round_positive(e: Tensor, dtype: torch.dtype) -> Tensor:
    """Round ``E`` to ``dtype`` keeping it > 0: float16 would flush E < 2^-25 to 0."""
    out = e.to(dtype)
    if dtype == torch.float16:
        out = out.clamp(min=2.0**-24)  # its smallest subnormal; moves only P(E < 2^-25) ~ 3e-8
    return out


def gumbel_noise(
    shape: Sequence[int] | torch.Size | int,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Standard Gumbel(0, 1) samples that are never :math:`\pm\infty` or NaN.

    .. math::
        G = -\log(-\log(1 - W)), \quad W \sim \mathrm{Uniform}[0, 1) \text{ (float64, 53 bits)}

    The density is :math:`e^{-(x + e^{-x})}`. Values lie in
    ``[GUMBEL_NOISE_MIN, GUMBEL_NOISE_MAX]`` :math:`\approx [-3.604, 37.43]`; the Gumbel mass
    outside that range is below :math:`2 \times 10^{-16}` (see the module docstring).

    Args:
        shape: output shape.
        dtype: output dtype. Noise is computed in float64 and rounded once to float32 (kept in
            float64 when asked for) on CPU, then rounded to half precision if asked;
            float16 / bfloat16 results are finite but coarse, so prefer passing float32 noise
            to your own arithmetic.
        device: output device.
        generator: optional ``torch.Generator``; the same seed gives the same samples.

    Returns:
        Tensor of ``shape`` and ``dtype``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = gumbel_noise((10000,), generator=g)
        >>> abs(x.mean().item() - 0.5772) < 0.05  # Euler-Mascheroni constant
        True
    """
    dtype = _check_dtype(dtype)
    dev = _device(device)
    if _numpy_device(dev):  # same recipe, block by block in cache (see gumbelkit._kernels)
        out = torch.empty(_shape(shape), dtype=compute_dtype(dtype), device=dev)
        return _kernels.gumbel_into(out, _kernels.draw_stream(generator)).to(dtype)
    e = _exponential_torch(_shape(shape), dev, generator).to(compute_dtype(dtype))
    return e.log().neg().to(dtype)


def gumbel_like(tensor: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
    """Gumbel(0, 1) noise with the shape, device and (floating) dtype of ``tensor``.

    A non-floating ``tensor`` gives float32 noise.

    Args:
        tensor: template tensor.
        generator: optional ``torch.Generator``.

    Returns:
        Tensor like ``tensor`` filled with independent standard Gumbel samples.
    """
    if not isinstance(tensor, Tensor):
        raise TypeError(f"tensor must be a torch.Tensor, got {type(tensor).__name__}")
    dtype = tensor.dtype if tensor.dtype in FLOAT_DTYPES else torch.float32
    return gumbel_noise(tensor.shape, dtype=dtype, device=tensor.device, generator=generator)


# ---------------------------------------------------------------------- perturbed logits


class Perturbed(NamedTuple):
    """What every sampler starts from (see :func:`perturb`).

    Attributes:
        z: the perturbed logits, shifted by a per-slice constant, in the compute dtype
            (contiguous, no autograd history); None when only the indices were asked for.
        ok: every slice's maximum is finite (a bool on the numpy path, a 0-d bool tensor on the
            torch-op path; checked by :func:`gumbelkit._validation.check_valid`).
        indices: the argmax along ``dim`` when asked for and found on the way, else None.
        max_is_zero: every slice of ``z`` has maximum exactly 0.
    """

    z: Tensor | None
    ok: bool | Tensor
    indices: Tensor | None
    max_is_zero: bool


def perturb(
    logits: Tensor,
    dim: int,
    *,
    noise: Tensor | None = None,
    generator: torch.Generator | None = None,
    stream: _kernels.Stream | None = None,
    want_index: bool = False,
    values: bool = True,
    topk: int = 0,
) -> Perturbed:
    r"""The perturbed logits every sampler starts from: :math:`\ell + G` minus a per-slice max.

    ``G`` is ``noise`` if given, else drawn: on the numpy path from the PCG64 ``stream`` (drawn
    from ``generator`` unless given, to replay an earlier draw), fused with the shift block by
    block (:func:`gumbelkit._kernels.perturb_into`); on the torch-op path from ``torch.rand``,
    as ``(logits - max) + G``. Either way the samples do not depend on a constant added to the
    logits (see "Shift invariance" above for the one unshifted case). ``values=False`` (numpy path) skips writing them when only the argmax is wanted;
    with ``topk = k`` as well, ``indices`` are the ``k`` largest, in any layout.
    """
    cdt = compute_dtype(logits.dtype)
    x = logits.detach()
    if noise is None and _kernels.numpy_path(x):
        s = _kernels.draw_stream(generator) if stream is None else stream
        z = torch.empty(x.shape, dtype=cdt) if values else None
        ok, indices, zero = _kernels.perturb_into(z, x.contiguous(), dim, s, want_index, topk)
        return Perturbed(z, ok, indices, zero)
    xc = x.to(cdt)
    m = xc.amax(dim=dim, keepdim=True)  # NaN propagates; -inf for a fully masked slice
    if noise is None:
        g = gumbel_noise(x.shape, dtype=cdt, device=x.device, generator=generator)
    else:
        g = noise.detach().to(cdt)
    z = ((xc - m) + g).contiguous()  # (*, K, *): the shift first, then the noise
    return Perturbed(z, torch.isfinite(m).all(), z.argmax(dim=dim) if want_index else None, False)


# ---------------------------------------------------------------------- conditional Gumbels

# SplitMix64 constants (Steele, Lea, Flood 2014) as signed 64-bit integers
_GAMMA = 0x9E3779B97F4A7C15 - (1 << 64)
_MIX1 = 0xBF58476D1CE4E5B9 - (1 << 64)
_MIX2 = 0x94D049BB133111EB - (1 << 64)


def _srl(z: Tensor, s: int) -> Tensor:
    """Logical right shift of int64 ``z`` (torch's ``>>`` is arithmetic)."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def draw_seed(generator: torch.Generator | None, device: torch.device) -> Tensor:
    """A 0-d int64 seed tensor for :func:`counter_uniform`, drawn from ``generator``.

    A tensor, not a Python int: no host sync, and it is saved for backward like any tensor.
    """
    return torch.randint(0, 1 << 62, (), dtype=torch.int64, device=device, generator=generator)


def counter_uniform(seed: Tensor, start: int, shape: tuple[int, ...]) -> Tensor:
    r"""53-bit uniforms on :math:`[0, 1)` number ``start, start + 1, ...`` of the stream ``seed``.

    Counter-based (SplitMix64 of ``seed + (i + 1) * gamma``), in int64 torch ops: any part of the
    stream can be recomputed from the seed alone, on any device, under ``torch.compile`` and
    ``torch.func`` (a batched seed gives one stream per batch element). Gumbel-Rao keeps only
    the seed and replays its conditional Gumbels in the backward pass.
    """
    n = math.prod(shape)
    c = torch.arange(start + 1, start + 1 + n, dtype=torch.int64, device=seed.device)
    z = seed + c.reshape(shape) * _GAMMA  # int64 arithmetic wraps modulo 2^64, as SplitMix64's
    z = (z ^ _srl(z, 30)) * _MIX1
    z = (z ^ _srl(z, 27)) * _MIX2
    z = z ^ _srl(z, 31)
    return _srl(z, 11).to(torch.float64) * 2.0**-53


ConditionalSource = Tensor | _kernels.Stream


def draw_conditional_source(generator: torch.Generator | None, like: Tensor) -> ConditionalSource:
    """Where :func:`conditional_draws` takes its exponentials from: a PCG64 stream on the numpy
    path (two ints), else a 0-d seed tensor of :func:`counter_uniform` (any device, compile,
    ``torch.func``). Either replays any draw from this value alone."""
    if _kernels.numpy_path(like):
        return _kernels.draw_stream(generator)
    return draw_seed(generator, like.device)


def conditional_draws(
    xs: Tensor, lse: Tensor, indices: Tensor, source: ConditionalSource, first: int, count: int
) -> Tensor:
    r"""Draws ``first .. first + count - 1`` of the conditional perturbations (categories last).

    ``xs`` is :math:`\ell - \max\ell` ``(*, K)`` in the compute dtype, ``lse`` its logsumexp
    ``(*, 1)``, ``source`` from :func:`draw_conditional_source`. Draw ``j`` uses exponentials
    ``j * numel .. (j + 1) * numel - 1`` of the source, so any draw can be replayed alone.
    Returns ``(count, *, K)`` in ``xs``'s dtype.
    """
    n = xs.numel()
    shape = (count, *xs.shape)
    if isinstance(source, Tensor):
        w = counter_uniform(source, first * n, shape).clamp(min=_W_FLOOR)
        log_e = torch.log1p(-w).neg().log().to(xs.dtype)  # log E, E = -log(1 - W)
    else:
        e = torch.empty(shape, dtype=xs.dtype)
        log_e = _kernels.exponential_into(e, source, offset=first * n).log_()  # log E
    idx = indices.unsqueeze(-1).expand(count, *indices.shape, 1)  # (count, *, 1)
    top = lse - log_e.gather(-1, idx)  # (count, *, 1): Gumbel(log Z) maximum
    # z_j = -log(E_j exp(-x_j) + exp(-top)) = -logaddexp(log E_j - x_j, -top): no exp of raw
    # logits, -inf stays -inf; written out (torch.logaddexp is ~5x slower on CPU)
    a = log_e - xs  # (count, *, K), +inf where masked
    b = -top
    hi = torch.maximum(a, b)
    others = -(hi + torch.log1p(torch.exp(-(a - b).abs())))  # (count, *, K)
    winner = _kernels.one_hot(indices, xs, -1, torch.bool)
    return torch.where(winner, top, others)


def conditional_gumbel(
    logits: Tensor,
    indices: Tensor,
    n: int,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    r"""Draw ``n`` perturbed logits :math:`\ell + G` conditional on :math:`\arg\max = ` ``indices``.

    The maximum of independent Gumbels :math:`\ell_j + G_j` is Gumbel with location
    :math:`\log Z = \log\sum_j e^{\ell_j}`, and the others are Gumbels truncated below it; with
    :math:`E \sim \mathrm{Exp}(1)`:

    .. math::
        z_D = \log Z - \log E_D, \qquad z_j = -\log\!\big(E_j e^{-\ell_j} + e^{-z_D}\big)\ (j \ne D).

    Computed in the max-subtracted frame (:math:`\ell - \max\ell`), with ``logaddexp`` instead of
    ``exp`` of raw logits, so extreme logits neither overflow nor lose the winner; masked
    (``-inf``) categories stay ``-inf``. The exponentials come from a replayable source drawn
    from ``generator``: a PCG64 stream on the numpy path, a counter-based stream with a 0-d seed
    tensor elsewhere (see :func:`counter_uniform`); the two give different draws for one seed.

    Args:
        logits: ``(*, K, *)`` logits, categories along ``dim`` (half precision is computed in
            float32).
        indices: the logits' shape without ``dim``: the category every draw must have as its
            argmax.
        n: number of draws.
        dim: the category dimension.
        generator: optional ``torch.Generator``.

    Returns:
        ``(n, *logits.shape)`` perturbed logits in the frame :math:`\ell - \max \ell` (a
        per-slice constant shift of :math:`\ell + G`), in the logits' dtype, whose argmax along
        ``dim + 1`` is ``indices`` (strictly: a loser that rounding to half precision would tie
        with the winner is moved one ulp below it).

    Example:
        >>> z = conditional_gumbel(torch.tensor([0.0, 1.0, 2.0]), torch.tensor(0), 4)
        >>> bool((z.argmax(-1) == 0).all())
        True
    """
    check_float_tensor(logits, "logits")
    d = check_dim(logits, dim)
    check_categories(logits, d)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1 (number of draws), got {n!r}")
    want = logits.shape[:d] + logits.shape[d + 1 :]
    if not isinstance(indices, Tensor) or indices.shape != want or indices.is_floating_point():
        got = tuple(indices.shape) if isinstance(indices, Tensor) else type(indices).__name__
        raise ValueError(f"indices must be an integer tensor of shape {tuple(want)}, got {got}")
    # float16 has too few bits: ~0.05% of the draws would tie with (or beat) the winner
    x = logits.detach().to(compute_dtype(logits.dtype)).movedim(d, -1)  # (*, K)
    xs = x - x.amax(dim=-1, keepdim=True)  # max 0, -inf where masked
    lse = torch.logsumexp(xs, dim=-1, keepdim=True)  # (*, 1), in [0, log K]
    source = draw_conditional_source(generator, x)
    z = conditional_draws(xs, lse, indices, source, 0, n)  # (n, *, K)
    if logits.dtype != z.dtype:
        top = z.gather(-1, indices.unsqueeze(-1).expand(n, *indices.shape, 1)).to(logits.dtype)
        zo = z.to(logits.dtype)
        # rounding can make a loser equal the winner: move it one ulp down so the argmax stays
        below = torch.nextafter(top, torch.full_like(top, -torch.inf))  # (n, *, 1)
        winner = _kernels.one_hot(indices, x, -1, torch.bool)  # (*, K), broadcast over n
        z = torch.where(winner, top, torch.where(zo >= top, below, zo))
    return z.movedim(-1, d + 1)
