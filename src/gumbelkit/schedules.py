r"""Temperature schedules: pure functions of the training step.

Each schedule is a frozen dataclass called as ``tau = schedule(step)``. Nothing is stored
between calls and nothing compounds, so resuming a run needs only the step
(``tau = tau * decay`` inside a loop is the classic way to get this wrong).

References:
    1. E. Jang, S. Gu, B. Poole, *Categorical Reparameterization with Gumbel-Softmax*, ICLR 2017
       (exponential annealing, recomputed every N steps).
    2. W. Nie, N. Narodytska, A. Patel, *RelGAN*, ICLR 2019 (inverse temperature
       :math:`\beta_n = \beta_{max}^{n/N}`).
    3. X. Dong, Y. Yang, *Searching for a Robust Neural Architecture in Four GPU Hours* (GDAS),
       CVPR 2019 (linear decay from 10 to 0.1).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ConstantTau",
    "CosineTau",
    "ExponentialTau",
    "InverseTemperatureTau",
    "LinearTau",
    "Schedule",
    "get_schedule",
    "schedule_names",
]

Schedule = Callable[[int], float]


def _check_step(step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    return step


def _is_number(value: object) -> bool:
    # bool is an int subclass; True as a temperature is a bug, not 1.0
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive(name: str, value: float) -> None:
    if not (_is_number(value) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


@dataclass(frozen=True)
class ConstantTau:
    """``tau(step) = tau``."""

    tau: float = 1.0

    def __post_init__(self) -> None:
        _positive("tau", self.tau)

    def __call__(self, step: int) -> float:
        _check_step(step)
        return float(self.tau)


@dataclass(frozen=True)
class ExponentialTau:
    r"""Jang et al.'s annealing, recomputed every ``every`` steps.

    .. math::
        \tau(t) = \max\!\left(\tau_{min},\ \tau_0\, e^{-r \cdot N \lfloor t / N \rfloor}\right)

    Defaults are the Gumbel-Softmax notebook's: :math:`\tau_0 = 1`, :math:`r = 3 \times 10^{-5}`,
    :math:`\tau_{min} = 0.5`, :math:`N = 1000`.
    """

    tau0: float = 1.0
    rate: float = 3e-5
    tau_min: float = 0.5
    every: int = 1000

    def __post_init__(self) -> None:
        _positive("tau0", self.tau0)
        _positive("tau_min", self.tau_min)
        if not (_is_number(self.rate) and math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"rate must be a non-negative finite number, got {self.rate!r}")
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise ValueError(f"every must be a positive int, got {self.every!r}")

    def __call__(self, step: int) -> float:
        t = (_check_step(step) // self.every) * self.every
        return max(self.tau_min, self.tau0 * math.exp(-self.rate * t))


@dataclass(frozen=True)
class LinearTau:
    r"""Linear interpolation from ``start`` to ``end`` over ``total`` steps, then ``end``.

    .. math:: \tau(t) = \tau_{start} + (\tau_{end} - \tau_{start}) \min(t / T, 1)

    GDAS uses ``start=10, end=0.1`` over the search epochs.
    """

    start: float = 10.0
    end: float = 0.1
    total: int = 1000

    def __post_init__(self) -> None:
        _positive("start", self.start)
        _positive("end", self.end)
        if isinstance(self.total, bool) or not isinstance(self.total, int) or self.total < 1:
            raise ValueError(f"total must be a positive int, got {self.total!r}")

    def __call__(self, step: int) -> float:
        frac = min(_check_step(step) / self.total, 1.0)
        return self.start + (self.end - self.start) * frac


@dataclass(frozen=True)
class CosineTau:
    r"""Cosine interpolation from ``start`` to ``end`` over ``total`` steps, then ``end``.

    .. math:: \tau(t) = \tau_{end} + \tfrac12(\tau_{start} - \tau_{end})(1 + \cos(\pi \min(t/T, 1)))
    """

    start: float = 2.0
    end: float = 0.1
    total: int = 1000

    def __post_init__(self) -> None:
        _positive("start", self.start)
        _positive("end", self.end)
        if isinstance(self.total, bool) or not isinstance(self.total, int) or self.total < 1:
            raise ValueError(f"total must be a positive int, got {self.total!r}")

    def __call__(self, step: int) -> float:
        frac = min(_check_step(step) / self.total, 1.0)
        return self.end + 0.5 * (self.start - self.end) * (1.0 + math.cos(math.pi * frac))


@dataclass(frozen=True)
class InverseTemperatureTau:
    r"""RelGAN's schedule, written as a temperature.

    RelGAN anneals the *inverse* temperature :math:`\beta_t = \beta_{max}^{t/T}` (its code calls
    :math:`\beta` "temperature"); here the temperature is returned:

    .. math:: \tau(t) = 1 / \beta_t = \beta_{max}^{-\min(t/T, 1)}

    so :math:`\tau` falls from 1 to :math:`1/\beta_{max}`.
    """

    beta_max: float = 100.0
    total: int = 3000

    def __post_init__(self) -> None:
        if not (_is_number(self.beta_max) and math.isfinite(self.beta_max) and self.beta_max >= 1):
            raise ValueError(f"beta_max must be a finite number >= 1, got {self.beta_max!r}")
        if isinstance(self.total, bool) or not isinstance(self.total, int) or self.total < 1:
            raise ValueError(f"total must be a positive int, got {self.total!r}")

    def __call__(self, step: int) -> float:
        frac = min(_check_step(step) / self.total, 1.0)
        return float(self.beta_max ** (-frac))


_SCHEDULES: dict[str, type] = {
    "constant": ConstantTau,
    "exponential": ExponentialTau,
    "linear": LinearTau,
    "cosine": CosineTau,
    "relgan": InverseTemperatureTau,
}


def schedule_names() -> list[str]:
    """Names accepted by :func:`get_schedule`."""
    return sorted(_SCHEDULES)


def get_schedule(name: str | Schedule, **kwargs: Any) -> Schedule:
    """Build a schedule by name (``constant``, ``exponential``, ``linear``, ``cosine``, ``relgan``).

    A callable is returned unchanged (``kwargs`` must then be empty).

    Raises:
        ValueError: unknown name (the message lists the known ones) or unknown keyword.
    """
    if callable(name):
        if kwargs:
            raise ValueError("get_schedule: keyword arguments are only allowed with a schedule name")
        return name
    if name not in _SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; known schedules: {', '.join(schedule_names())}")
    cls = _SCHEDULES[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(kwargs) - fields
    if unknown:
        raise ValueError(
            f"schedule {name!r} got unknown argument(s) {sorted(unknown)}; allowed: {sorted(fields)}"
        )
    return cls(**kwargs)  # type: ignore[no-any-return]
