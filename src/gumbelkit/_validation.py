"""Argument checks shared by the whole library, and the global validation switch.

Checks of *data* (NaN logits, all-masked slices) cost a pass over the tensor and can be turned
off for speed with :func:`set_validate_args`, like
``torch.distributions.Distribution.set_default_validate_args``. Checks of *arguments* that
cost nothing (tau, k, dim, dtypes) always run.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import torch
from torch import Tensor

_VALIDATE_ARGS = True

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


def check_tau(tau: object, name: str = "tau") -> float | Tensor:
    """Require a positive finite number, or a tensor of positive finite values.

    Always runs (it is cheap for a number; for a tensor it is one reduction over tau, which is
    small in every use we know of).
    """
    if isinstance(tau, Tensor):
        if not tau.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor or a number, got dtype {tau.dtype}")
        bad = ~(torch.isfinite(tau) & (tau > 0))
        if bool(bad.any()):
            raise ValueError(f"{name} must be positive and finite (0 < {name} < inf), got {tau}")
        return tau
    if isinstance(tau, bool) or not isinstance(tau, (int, float)):
        raise ValueError(f"{name} must be a positive finite number or a tensor, got {tau!r}")
    t = float(tau)
    if not (math.isfinite(t) and t > 0.0):
        raise ValueError(f"{name} must be positive and finite (0 < {name} < inf), got {tau!r}")
    return t


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
