"""Argument checks shared by the whole library, and the samplers' validation switch.

Checks of *data* (NaN logits, all-masked slices) read the per-slice maximum the samplers
compute anyway; they can be turned off with :func:`set_validate_args`. Checks of *arguments*
that cost nothing (tau, k, dim, dtypes, shapes, an empty category dimension) always run. The
distributions follow torch's own switch, their ``validate_args`` (default:
``torch.distributions.Distribution.set_default_validate_args``), and nothing else.

Data checks need the data on the host. In eager mode they raise ``ValueError``; while
``torch.compile`` traces they become ``torch._assert_async`` (no graph break; a failure raises
``RuntimeError`` when the compiled code runs); inside ``torch.func`` transforms (``vmap``
cannot branch on data) they are skipped.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Literal, TypeVar, overload

import torch
from torch import Tensor

from gumbelkit import _kernels

_VALIDATE_ARGS = True

T = TypeVar("T")

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the library computes in: float64 stays float64, every other float dtype
    (float32, float16, bfloat16) is computed in float32."""
    # half precision has too few bits for Gumbel noise, logs and softmax sums
    return torch.float64 if dtype == torch.float64 else torch.float32


def set_validate_args(value: bool) -> None:
    """Turn the data checks (NaN / +inf logits, fully masked slices) on or off globally.

    Args:
        value: ``True`` (the default) to check, ``False`` to skip the checks for speed.
    """
    if value not in (True, False):
        raise ValueError(f"set_validate_args: value must be True or False, got {value!r}")
    global _VALIDATE_ARGS
    _VALIDATE_ARGS = bool(value)


def get_validate_args() -> bool:
    """Whether data checks are on (see :func:`set_validate_args`)."""
    return _VALIDATE_ARGS


@contextlib.contextmanager
def validate_args(value: bool) -> Iterator[None]:
    """Context manager that sets :func:`set_validate_args` and restores the old value."""
    old = get_validate_args()
    set_validate_args(value)
    try:
        yield
    finally:
        set_validate_args(old)


def check_float_tensor(x: object, name: str) -> Tensor:
    """Require a floating-point tensor (float16, bfloat16, float32 or float64)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"{name} must have a floating dtype (float16, bfloat16, float32 or float64), "
            f"got {x.dtype}"
        )
    return x


def check_dim(x: Tensor, dim: object, name: str = "dim") -> int:
    """Normalise ``dim`` against ``x.ndim``; raise ValueError naming the allowed range."""
    if isinstance(dim, bool) or not isinstance(dim, int):
        raise ValueError(f"{name} must be an int, got {dim!r}")
    if x.ndim == 0:
        raise ValueError("logits must have at least one dimension (the categories), got a 0-d tensor")
    if not -x.ndim <= dim < x.ndim:
        raise ValueError(
            f"{name}={dim} is out of range for a tensor with {x.ndim} dimensions "
            f"(allowed: {-x.ndim} to {x.ndim - 1})"
        )
    return dim % x.ndim


@overload
def check_tau(
    tau: object,
    name: str = ...,
    *,
    minimum: float | None = ...,
    scalar: Literal[True],
    owner: str = ...,
    like: Tensor | None = ...,
    dim: int = ...,
    dtype: torch.dtype | None = ...,
) -> float: ...


@overload
def check_tau(
    tau: object,
    name: str = ...,
    *,
    minimum: float | None = ...,
    scalar: bool = ...,
    owner: str = ...,
    like: Tensor | None = ...,
    dim: int = ...,
    dtype: torch.dtype | None = ...,
) -> float | Tensor: ...


def check_tau(
    tau: object,
    name: str = "tau",
    *,
    minimum: float | None = None,
    scalar: bool = False,
    owner: str = "this function",
    like: Tensor | None = None,
    dim: int = -1,
    dtype: torch.dtype | None = None,
) -> float | Tensor:
    """The one temperature check of the library: a positive finite number or tensor.

    Args:
        tau: the value to check.
        name: the argument's name in error messages (``"temperature"`` in distributions).
        minimum: smallest allowed value (ReinMax: 1.0), or None for any positive value.
        scalar: require a single number and return it as a Python float (schedules, module
            defaults, estimators that treat tau as a constant). A 0-d tensor that does not
            require grad is accepted and converted; one that requires grad is refused (the
            conversion would silently drop its gradient), and so is any other tensor.
        owner: who treats tau as a constant, for the requires-grad message.
        like, dim: the logits a tensor ``tau`` goes with: it must broadcast to their shape with
            size 1 along the category dimension ``dim`` (one temperature per slice: the
            max-shift before dividing by tau, the overflow guard, is exact only then, and so is
            the Concrete density).
        dtype: the dtype of the logits tau divides (default: ``like``'s, when given). tau must
            then also be positive and finite in the dtype they are computed in
            (:func:`compute_dtype`), or ``x / tau`` is ``x / 0`` or ``x / inf`` there and the
            sample NaN: float32 (also for float16 / bfloat16 logits) rounds tau <= 2**-150
            (7.0e-46) to 0 and tau >= 2**128 - 2**103 (3.4e38) to inf.

    Returns:
        ``float(tau)`` for a number (or with ``scalar=True``), else the tensor itself.

    A tensor's values are checked with one reduction (small for every temperature we know of):
    in eager mode always, under ``torch.compile`` with ``torch._assert_async``, and not inside
    ``torch.func`` transforms (``vmap`` cannot branch on data).
    """
    if dtype is None and like is not None:
        dtype = like.dtype
    if dtype is not None and dtype not in FLOAT_DTYPES:
        dtype = None  # the logits check reports a non-float dtype
    if isinstance(tau, Tensor):
        if scalar:
            if tau.ndim != 0 or not tau.is_floating_point():
                raise ValueError(
                    f"{name} must be a positive finite number or a 0-d float tensor, got a "
                    f"tensor of shape {tuple(tau.shape)} and dtype {tau.dtype}"
                )
            if tau.requires_grad:
                raise ValueError(
                    f"{name} requires grad, but {owner} treats {name} as a constant and would "
                    f"silently drop its gradient; pass {name}.detach(), or a tensor {name} where "
                    "it is differentiated (gumbel_softmax, 'gs' / 'st_gs', the distributions)"
                )
            tau = float(tau)
        else:
            if not tau.is_floating_point():
                raise ValueError(f"{name} must be a floating tensor or a number, got dtype {tau.dtype}")
            if like is not None:
                _check_tau_shape(tau, like, dim, name)
            good = torch.isfinite(tau) & (tau > 0)
            if minimum is not None:
                good &= tau >= minimum
            fits = good
            if dtype is not None:  # as the samplers use it: cast to the compute dtype
                tc = tau.detach().to(compute_dtype(dtype))
                fits = good & torch.isfinite(tc) & (tc > 0)
            if _kernels.compiling():
                torch._assert_async(fits.all(), _tau_message(name, minimum, "a tensor") + " in the compute dtype")
            elif not _kernels.in_transform() and not bool(fits.all()):  # one host sync when valid
                if not bool(good.all()):
                    raise ValueError(_tau_message(name, minimum, tau))
                assert dtype is not None
                _check_representable(tau, name, dtype)
            return tau
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise ValueError(f"{name} must be a positive finite number or a tensor, got {tau!r}")
    t = float(tau)
    if not (math.isfinite(t) and t > 0.0) or (minimum is not None and t < minimum):
        raise ValueError(_tau_message(name, minimum, tau))
    if dtype is not None:
        _check_representable(t, name, dtype)
    return t


def dtype_of(x: object) -> torch.dtype | None:
    """``x.dtype`` for a tensor, else ``None`` (for checks that run before the tensor check)."""
    return x.dtype if isinstance(x, Tensor) else None


def _check_representable(tau: float | Tensor, name: str, dtype: torch.dtype) -> None:
    """Raise when tau is 0 or inf in the dtype ``dtype`` logits are computed in."""
    cd = compute_dtype(dtype)
    if isinstance(tau, Tensor):
        low, high = torch.aminmax(tau.detach().to(cd).reshape(-1))
        lo, hi = float(low), float(high)
    else:
        if cd == torch.float64:
            return  # a Python float is a float64
        # float32 rounding without a conversion (this runs on every call): at most 2**-150 rounds
        # to 0, at least 2**128 - 2**103 (halfway to the next power of two) rounds to inf
        lo = 0.0 if tau <= 2.0**-150 else tau
        hi = math.inf if tau >= 2.0**128 - 2.0**103 else tau
    info = torch.finfo(cd)
    via = "" if cd == dtype else f", the dtype {str(dtype).removeprefix('torch.')} logits are computed in"
    where = f"{str(cd).removeprefix('torch.')}{via}"
    if lo == 0.0:
        raise ValueError(
            f"{name} underflows to 0 in {where} (got {tau!r}; the smallest positive value there is "
            f"{info.smallest_normal * info.eps:.3g}), so logits / {name} would be inf or NaN"
        )
    if math.isinf(hi):
        raise ValueError(
            f"{name} overflows to inf in {where} (got {tau!r}; the largest value there is {info.max:.3g}), "
            f"so logits / {name} would be 0 or NaN"
        )


def _check_tau_shape(tau: Tensor, logits: Tensor, dim: int, name: str) -> None:
    try:
        shape = torch.broadcast_shapes(tau.shape, logits.shape)
    except RuntimeError:
        shape = None
    if shape != logits.shape:
        raise ValueError(
            f"{name} must be a number or a tensor broadcastable to the logits' shape "
            f"{tuple(logits.shape)}, got shape {tuple(tau.shape)}"
        )
    d = dim % logits.ndim
    j = d - (logits.ndim - tau.ndim)  # tau's axis aligned with dim, if it has one
    if j >= 0 and tau.shape[j] != 1:
        raise ValueError(
            f"{name} must have size 1 along dim={dim} (one temperature per slice of "
            f"categories), got shape {tuple(tau.shape)} for logits {tuple(logits.shape)}"
        )


def _tau_message(name: str, minimum: float | None, got: object) -> str:
    if minimum is None:
        return f"{name} must be positive and finite (0 < {name} < inf), got {got!r}"
    return f"{name} must be finite and >= {minimum} (allowed: {minimum} <= {name} < inf), got {got!r}"


def lookup(table: Mapping[str, T], name: object, what: str) -> T:
    """``table[name]``, or a ValueError naming ``what`` and listing the known names."""
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(table)}")
    return table[name]


def check_categories(x: Tensor, dim: int, name: str = "logits") -> None:
    """An empty category dimension is an argument error (always checked, validation or not)."""
    if x.shape[dim] == 0:
        raise ValueError(f"{name} has no categories along dim={dim} (size 0); K must be >= 1")


def check_noise(noise: object, logits: Tensor) -> Tensor | None:
    """``noise`` is None or a tensor of the logits' shape (the one noise-shape check)."""
    if noise is not None and (not isinstance(noise, Tensor) or noise.shape != logits.shape):
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise must be a tensor of the logits' shape {tuple(logits.shape)}, got {got}")
    return noise


def check_logits(logits: Tensor, dim: int, name: str = "logits") -> None:
    """Data checks on logits: no NaN, no +inf, and no slice along ``dim`` fully masked.

    ``-inf`` marks a masked (impossible) category. Eager only (three passes and host syncs):
    the samplers call it only to name the problem once the folded check (:func:`check_valid`)
    has failed, and the distributions when their ``validate_args`` is on.
    """
    check_categories(logits, dim, name)
    if bool(torch.isnan(logits).any()):
        raise ValueError(f"{name} contains NaN")
    if bool(torch.isposinf(logits).any()):
        raise ValueError(f"{name} contains +inf; use finite values, and -inf only to mask a category")
    if bool(torch.isneginf(logits).all(dim=dim).any()):
        raise ValueError(
            f"{name} has a slice along dim={dim} whose entries are all -inf (every category "
            "masked); at least one category per slice must be allowed"
        )


_INVALID = (
    "gumbelkit: logits contain NaN or +inf, or a slice along the category dim is fully masked "
    "(-inf); gumbelkit.set_validate_args(False) skips this check"
)


def check_valid(ok: bool | Tensor, logits: Tensor, dim: int) -> None:
    """The samplers' folded data check: ``ok`` says every slice's maximum is finite.

    A bool (numpy path) or a 0-d bool tensor (torch-op path). On failure the full checks of
    :func:`check_logits` name the problem. Skipped when validation is off; under
    ``torch.compile`` a ``torch._assert_async``; inside ``torch.func`` transforms skipped.
    """
    if not _VALIDATE_ARGS:
        return
    if isinstance(ok, bool):
        if not ok:
            check_logits(logits, dim)
            raise ValueError(_INVALID)  # not reached: check_logits names the problem
        return
    if _kernels.compiling():
        torch._assert_async(ok, _INVALID)
        return
    if _kernels.in_transform():
        return
    if not bool(ok):
        check_logits(logits, dim)
        raise ValueError(_INVALID)
