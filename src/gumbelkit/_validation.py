"""Argument checks shared by the whole library, and the global validation switch.

Checks of *data* (NaN logits, all-masked slices) cost a pass over the tensor and can be turned
off for speed with :func:`set_validate_args`, like
``torch.distributions.Distribution.set_default_validate_args``. Checks of *arguments* that
cost nothing (tau, k, dim, dtypes) always run.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from typing import Literal, TypeVar, overload

import torch
from torch import Tensor

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
) -> float: ...


@overload
def check_tau(
    tau: object,
    name: str = ...,
    *,
    minimum: float | None = ...,
    scalar: bool = ...,
    owner: str = ...,
) -> float | Tensor: ...


def check_tau(
    tau: object,
    name: str = "tau",
    *,
    minimum: float | None = None,
    scalar: bool = False,
    owner: str = "this function",
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

    Returns:
        ``float(tau)`` for a number (or with ``scalar=True``), else the tensor itself.

    A tensor's values are checked with one reduction (small for every temperature we know of).
    """
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
            bad = ~(torch.isfinite(tau) & (tau > 0))
            if minimum is not None:
                bad |= tau < minimum
            if bool(bad.any()):
                raise ValueError(_tau_message(name, minimum, tau))
            return tau
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise ValueError(f"{name} must be a positive finite number or a tensor, got {tau!r}")
    t = float(tau)
    if not (math.isfinite(t) and t > 0.0) or (minimum is not None and t < minimum):
        raise ValueError(_tau_message(name, minimum, tau))
    return t


def _tau_message(name: str, minimum: float | None, got: object) -> str:
    if minimum is None:
        return f"{name} must be positive and finite (0 < {name} < inf), got {got!r}"
    return f"{name} must be finite and >= {minimum} (allowed: {minimum} <= {name} < inf), got {got!r}"


def lookup(table: Mapping[str, T], name: object, what: str) -> T:
    """``table[name]``, or a ValueError naming ``what`` and listing the known names."""
    if not isinstance(name, str) or name not in table:
        raise ValueError(f"unknown {what} {name!r}; known: {', '.join(table)}")
    return table[name]


def check_logits(logits: Tensor, dim: int, name: str = "logits") -> None:
    """Data checks on logits: no NaN, no +inf, and no slice along ``dim`` fully masked.

    ``-inf`` marks a masked (impossible) category. Skipped when validation is off.
    """
    if not _VALIDATE_ARGS:
        return
    if bool(torch.isnan(logits).any()):
        raise ValueError(f"{name} contains NaN")
    if bool(torch.isposinf(logits).any()):
        raise ValueError(f"{name} contains +inf; use finite values, and -inf only to mask a category")
    if logits.shape[dim] == 0:
        raise ValueError(f"{name} has no categories along dim={dim} (size 0)")
    if bool(torch.isneginf(logits).all(dim=dim).any()):
        raise ValueError(
            f"{name} has a slice along dim={dim} whose entries are all -inf (every category "
            "masked); at least one category per slice must be allowed"
        )
