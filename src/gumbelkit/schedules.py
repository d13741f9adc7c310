r"""Temperature schedules: pure functions of the training step.

Each schedule is a frozen dataclass called as ``tau = schedule(step)``. Nothing is stored
between calls and nothing compounds, so resuming a run needs only the step
(``tau = tau * decay`` inside a loop is the classic way to get this wrong).

Every schedule names its parameters the same way: ``tau0`` is the temperature at step 0,
``tau_end`` the temperature it ends at (and keeps), ``total`` the number of steps to get there
(``ExponentialTau`` reaches ``tau_end`` at the rate ``rate`` instead). :func:`get_schedule` builds
one by name (:func:`schedule_names` lists them) or returns a callable unchanged.

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

from gumbelkit._validation import check_tau, lookup

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


def _check_total(total: object, name: str = "total") -> None:
    if isinstance(total, bool) or not isinstance(total, int) or total < 1:
        raise ValueError(f"{name} must be a positive int, got {total!r}")


def _check_taus(*pairs: tuple[str, object]) -> None:
    for name, value in pairs:
        check_tau(value, name, scalar=True, owner="a schedule")


def _fraction(step: int, total: int) -> float:
    return min(_check_step(step) / total, 1.0)


class _Interpolation:
    """Base of the schedules that go from ``tau0`` to ``tau_end`` in ``total`` steps: the checks."""

    tau0: float
    tau_end: float
    total: int

    def __post_init__(self) -> None:
        _check_taus(("tau0", self.tau0), ("tau_end", self.tau_end))
        _check_total(self.total)


@dataclass(frozen=True)
class ConstantTau:
    """``tau(step) = tau0``."""

    tau0: float = 1.0

    def __post_init__(self) -> None:
        _check_taus(("tau0", self.tau0))

    def __call__(self, step: int) -> float:
        _check_step(step)
        return float(self.tau0)


@dataclass(frozen=True)
class ExponentialTau:
    r"""Jang et al.'s annealing, recomputed every ``every`` steps, floored at ``tau_end``.

    .. math::
        \tau(t) = \max\!\left(\tau_{end},\ \tau_0\, e^{-r \cdot N \lfloor t / N \rfloor}\right)

    Defaults are the Gumbel-Softmax notebook's: :math:`\tau_0 = 1`, :math:`r = 3 \times 10^{-5}`,
    :math:`\tau_{end} = 0.5` (its ``tau_min``), :math:`N = 1000`.
    """

    tau0: float = 1.0
    tau_end: float = 0.5
    rate: float = 3e-5
    every: int = 1000

    def __post_init__(self) -> None:
        _check_taus(("tau0", self.tau0), ("tau_end", self.tau_end))
        if not (_is_number(self.rate) and math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"rate must be a non-negative finite number, got {self.rate!r}")
        _check_total(self.every, "every")

    def __call__(self, step: int) -> float:
        t = (_check_step(step) // self.every) * self.every
        return max(self.tau_end, self.tau0 * math.exp(-self.rate * t))


@dataclass(frozen=True)
class LinearTau(_Interpolation):
    r"""Linear interpolation from ``tau0`` to ``tau_end`` over ``total`` steps, then ``tau_end``.

    .. math:: \tau(t) = \tau_0 + (\tau_{end} - \tau_0) \min(t / T, 1)

    GDAS uses ``tau0=10, tau_end=0.1`` over the search epochs.
    """

    tau0: float = 10.0
    tau_end: float = 0.1
    total: int = 1000

    def __call__(self, step: int) -> float:
        return self.tau0 + (self.tau_end - self.tau0) * _fraction(step, self.total)


@dataclass(frozen=True)
class CosineTau(_Interpolation):
    r"""Cosine interpolation from ``tau0`` to ``tau_end`` over ``total`` steps, then ``tau_end``.

    .. math:: \tau(t) = \tau_{end} + \tfrac12(\tau_0 - \tau_{end})(1 + \cos(\pi \min(t/T, 1)))
    """

    tau0: float = 2.0
    tau_end: float = 0.1
    total: int = 1000

    def __call__(self, step: int) -> float:
        frac = _fraction(step, self.total)
        return self.tau_end + 0.5 * (self.tau0 - self.tau_end) * (1.0 + math.cos(math.pi * frac))


@dataclass(frozen=True)
class InverseTemperatureTau(_Interpolation):
    r"""RelGAN's schedule, written as a temperature (geometric from ``tau0`` to ``tau_end``).

    RelGAN anneals the *inverse* temperature :math:`\beta_t = \beta_{max}^{t/T}` from 1 to
    :math:`\beta_{max}` (its code calls :math:`\beta` "temperature"); here the temperature is
    returned, with :math:`\tau_0 = 1` and :math:`\tau_{end} = 1/\beta_{max}` for RelGAN's:

    .. math:: \tau(t) = 1/\beta_t = \tau_0 \left(\tau_{end}/\tau_0\right)^{\min(t/T, 1)}

    The defaults are RelGAN's :math:`\beta_{max} = 100` (``tau_end = 0.01``).
    """

    tau0: float = 1.0
    tau_end: float = 0.01
    total: int = 3000

    def __call__(self, step: int) -> float:
        frac = _fraction(step, self.total)
        return float(self.tau0 * (self.tau_end / self.tau0) ** frac)


def _is_number(value: object) -> bool:
    # bool is an int subclass; True as a rate is a bug, not 1.0
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_SCHEDULES: dict[str, type] = {
    "constant": ConstantTau,
    "exponential": ExponentialTau,
    "linear": LinearTau,
    "cosine": CosineTau,
    "relgan": InverseTemperatureTau,
}


def schedule_names() -> tuple[str, ...]:
    """Names accepted by :func:`get_schedule`, in a fixed order."""
    return tuple(_SCHEDULES)


def get_schedule(name: str | Schedule, **kwargs: Any) -> Schedule:
    """Build a schedule by name, or return a callable unchanged (like timm's ``get_act_fn``).

    Args:
        name: one of :func:`schedule_names` (``constant``, ``exponential``, ``linear``, ``cosine``,
            ``relgan``), or a callable ``tau = schedule(step)`` (then ``kwargs`` must be empty).
        **kwargs: the schedule's parameters (``tau0``, ``tau_end``, ``total``, ...).

    Raises:
        ValueError: unknown name (the message lists the known ones) or unknown keyword.

    Example:
        >>> get_schedule("linear", tau0=10.0, tau_end=0.1, total=100)(50)
        5.05
    """
    if callable(name):
        if kwargs:
            raise ValueError("get_schedule: keyword arguments are only allowed with a schedule name")
        return name
    cls = lookup(_SCHEDULES, name, "schedule")
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(kwargs) - fields
    if unknown:
        raise ValueError(
            f"schedule {name!r} got unknown argument(s) {sorted(unknown)}; allowed: {sorted(fields)}"
        )
    return cls(**kwargs)  # type: ignore[no-any-return]
