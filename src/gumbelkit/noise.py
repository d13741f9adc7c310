r"""Gumbel and exponential noise that is never :math:`\pm\infty` or NaN, in any dtype.

The standard Gumbel variable is :math:`G = -\log E` with :math:`E \sim \mathrm{Exp}(1)`, and
:math:`E = -\log(1 - W)` with :math:`W \sim \mathrm{Uniform}[0, 1)`.

How the noise is drawn, and why
--------------------------------
* ``W`` is a float64 uniform with 53 random bits (a grid of step :math:`2^{-53}`), whatever
  dtype is asked for. A float32 uniform has a grid of :math:`2^{-24}`, which caps
  :math:`-\log(-\log U)` near 16.6 and under-samples categories whose relative probability is
  below about 1e-7; half-precision uniforms are far coarser still. On CPU the 53 bits come from
  numpy's PCG64 generator seeded by four 63-bit draws of the ``torch.Generator`` (torch's
  Mersenne Twister is serial and about 3x slower); other devices use ``torch.rand``. Either
  way ``generator=`` and ``torch.manual_seed`` give reproducible draws (see
  :mod:`gumbelkit._fast`).
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

References:
    1. E. J. Gumbel, *Statistical theory of extreme values*, 1954.
    2. TensorFlow Probability, ``tfp.distributions.Gumbel`` (tiny-uniform clamping rationale).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from gumbelkit import _fast
from gumbelkit._validation import FLOAT_DTYPES, compute_dtype

__all__ = [
    "GUMBEL_NOISE_MAX",
    "GUMBEL_NOISE_MIN",
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
    if _fast.uses_fast_source(dev):  # same recipe, block by block in cache (see gumbelkit._fast)
        wide = dtype if dtype in (torch.float32, torch.float64) else torch.float64
        out = torch.empty(_shape(shape), dtype=wide, device=dev)
        return _round_positive(_fast.exponential_into(out, generator), dtype)
    w = torch.rand(_shape(shape), dtype=torch.float64, device=dev, generator=generator)
    w.clamp_(min=_W_FLOOR)  # W = 0 would give E = 0 and an infinite Gumbel value
    e = torch.log1p(w.neg_()).neg_()  # exact 1 - W in float64: tiny E keeps full precision
    return _round_positive(e, dtype)


def _round_positive(e: Tensor, dtype: torch.dtype) -> Tensor:
    """Round ``E`` to ``dtype`` keeping it > 0: float16 would flush E < 2^-25 to 0."""
    out = e.to(dtype)
    if dtype == torch.float16:
        out.clamp_(min=2.0**-24)  # its smallest subnormal; moves only P(E < 2^-25) ~ 3e-8
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
    if _fast.uses_fast_source(dev):  # same recipe, block by block in cache (see gumbelkit._fast)
        out = torch.empty(_shape(shape), dtype=compute_dtype(dtype), device=dev)
        return _fast.perturb_into(out, None, generator).to(dtype)
    e = exponential_noise(shape, dtype=compute_dtype(dtype), device=dev, generator=generator)
    return e.log_().neg_().to(dtype)


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
