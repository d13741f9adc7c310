"""Tests of gumbelkit.schedules: exact values, purity (no hidden state), argument checks."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from gumbelkit import schedules
from gumbelkit.schedules import (
    ConstantTau,
    CosineTau,
    ExponentialTau,
    InverseTemperatureTau,
    LinearTau,
)


def _jang(step: int, tau0: float, rate: float, tau_min: float, every: int) -> float:
    # Jang et al. recompute tau = max(tau_min, tau0 exp(-r t)) at t = 0, N, 2N, ...
    t = every * (step // every)
    return max(tau_min, tau0 * math.exp(-rate * t))


@pytest.mark.parametrize(
    "step,expected",
    [
        (0, 1.0),
        (999, 1.0),  # held until the next recompute
        (1000, math.exp(-0.03)),
        (1999, math.exp(-0.03)),
        (2500, math.exp(-0.06)),
        (23_000, math.exp(-0.69)),  # 0.5016, still above tau_min
        (24_000, 0.5),  # exp(-0.72) = 0.487 < tau_min
        (10**7, 0.5),
    ],
)
def test_exponential_jang_values(step, expected):
    sch = ExponentialTau(tau0=1.0, tau_end=0.5, rate=3e-5, every=1000)
    assert sch(step) == pytest.approx(expected, rel=1e-14)
    assert sch(step) == pytest.approx(_jang(step, 1.0, 3e-5, 0.5, 1000), rel=1e-15)


def test_exponential_every_one_is_continuous():
    sch = ExponentialTau(tau0=2.0, tau_end=0.1, rate=1e-3, every=1)
    for step in (0, 1, 7, 500, 2995, 2996, 5000):
        assert sch(step) == pytest.approx(max(0.1, 2.0 * math.exp(-1e-3 * step)), rel=1e-14)


@pytest.mark.parametrize(
    "step,expected", [(0, 10.0), (250, 7.525), (500, 5.05), (1000, 0.1), (5000, 0.1)]
)
def test_linear_values(step, expected):
    assert LinearTau(tau0=10.0, tau_end=0.1, total=1000)(step) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize(
    "step,expected",
    [
        (0, 2.0),
        (250, 0.1 + 0.95 * (1 + math.sqrt(0.5))),
        (500, 1.05),
        (750, 0.1 + 0.95 * (1 - math.sqrt(0.5))),
        (1000, 0.1),
        (4000, 0.1),
    ],
)
def test_cosine_values(step, expected):
    assert CosineTau(tau0=2.0, tau_end=0.1, total=1000)(step) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize(
    "step,expected", [(0, 1.0), (1000, 100 ** (-1 / 3)), (1500, 0.1), (3000, 0.01), (9000, 0.01)]
)
def test_relgan_inverse_temperature_values(step, expected):
    # RelGAN: beta_t = beta_max ** (t / T); the schedule returns tau = 1 / beta_t
    sch = InverseTemperatureTau(tau0=1.0, tau_end=0.01, total=3000)  # beta_max = 100
    assert sch(step) == pytest.approx(expected, rel=1e-14)
    assert 1.0 / sch(step) == pytest.approx(100.0 ** min(step / 3000, 1.0), rel=1e-14)


def test_constant():
    sch = ConstantTau(0.7)
    assert [sch(s) for s in (0, 1, 10**9)] == [0.7, 0.7, 0.7]


ALL = [
    ConstantTau(0.3),
    ExponentialTau(tau0=1.0, tau_end=0.2, rate=1e-4, every=100),
    LinearTau(tau0=5.0, tau_end=0.5, total=700),
    CosineTau(tau0=3.0, tau_end=0.2, total=900),
    InverseTemperatureTau(tau0=1.0, tau_end=0.02, total=800),
]


@pytest.mark.parametrize("sch", ALL, ids=lambda s: type(s).__name__)
def test_pure_function_of_step(sch):
    # calling out of order, repeatedly, or on a copy gives the same values: nothing compounds
    steps = list(range(0, 3000, 37))
    forward = [sch(s) for s in steps]
    shuffled = steps[:]
    random.Random(0).shuffle(shuffled)
    by_step = {s: sch(s) for s in shuffled}
    assert [by_step[s] for s in steps] == forward
    assert [sch(s) for s in steps] == forward
    assert [dataclasses.replace(sch)(s) for s in steps] == forward
    assert all(v > 0 and math.isfinite(v) for v in forward)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sch.total = 1  # type: ignore[misc]


@pytest.mark.parametrize("sch", ALL[1:], ids=lambda s: type(s).__name__)
def test_decreasing_schedules_are_monotone(sch):
    values = [sch(s) for s in range(0, 3000, 10)]
    assert all(b <= a for a, b in zip(values, values[1:], strict=False))


def test_get_schedule_by_name():
    assert schedules.schedule_names() == ("constant", "exponential", "linear", "cosine", "relgan")
    assert schedules.get_schedule("relgan", tau_end=0.01, total=3000) == InverseTemperatureTau(1.0, 0.01, 3000)
    assert schedules.get_schedule("exponential") == ExponentialTau()
    assert schedules.get_schedule("linear", tau0=10.0)(0) == 10.0

    def fn(step: int) -> float:
        return 1.0

    assert schedules.get_schedule(fn) is fn


def test_one_parameter_convention():
    # every schedule starts at tau0 and ends at (and keeps) tau_end; no start/end/tau_min/beta_max
    for name in schedules.schedule_names():
        fields = {f.name for f in dataclasses.fields(schedules.get_schedule(name))}  # type: ignore[arg-type]
        assert "tau0" in fields and not fields & {"start", "end", "tau", "tau_min", "beta_max"}
        if name != "constant":
            sch = schedules.get_schedule(name, tau0=2.0, tau_end=0.3)
            assert sch(0) == pytest.approx(2.0, rel=1e-15)
            assert sch(10**9) == pytest.approx(0.3, rel=1e-14)


def test_get_schedule_errors():
    with pytest.raises(ValueError, match="unknown schedule 'warmup'; known: constant, exponential, linear"):
        schedules.get_schedule("warmup")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['start'\]"):
        schedules.get_schedule("linear", start=1.0)
    with pytest.raises(ValueError, match="keyword arguments"):
        schedules.get_schedule(lambda s: 1.0, total=3)


@pytest.mark.parametrize(
    "factory,match",
    [
        (lambda: ConstantTau(0.0), "tau0"),
        (lambda: ConstantTau(-1.0), "tau"),
        (lambda: ConstantTau(math.nan), "tau"),
        (lambda: ConstantTau(math.inf), "tau"),
        (lambda: ConstantTau(True), "tau"),
        (lambda: ConstantTau("1.0"), "tau"),
        (lambda: ExponentialTau(tau0=0.0), "tau0"),
        (lambda: ExponentialTau(tau_end=-0.1), "tau_end"),
        (lambda: ExponentialTau(rate=-1e-3), "rate"),
        (lambda: ExponentialTau(rate=math.nan), "rate"),
        (lambda: ExponentialTau(rate="fast"), "rate"),
        (lambda: ExponentialTau(every=0), "every"),
        (lambda: ExponentialTau(every=10.0), "every"),
        (lambda: ExponentialTau(every=True), "every"),
        (lambda: LinearTau(tau0=0.0), "tau0"),
        (lambda: LinearTau(tau_end=-1.0), "tau_end"),
        (lambda: LinearTau(total=0), "total"),
        (lambda: CosineTau(tau_end=math.inf), "tau_end"),
        (lambda: CosineTau(total=1.5), "total"),
        (lambda: InverseTemperatureTau(tau_end=0.0), "tau_end"),
        (lambda: InverseTemperatureTau(tau0=math.inf), "tau0"),
        (lambda: InverseTemperatureTau(tau_end="0.01"), "tau_end"),
        (lambda: InverseTemperatureTau(tau0=True), "tau0"),
        (lambda: InverseTemperatureTau(total=-5), "total"),
    ],
)
def test_bad_arguments(factory, match):
    with pytest.raises(ValueError, match=match):
        factory()


@pytest.mark.parametrize("sch", ALL, ids=lambda s: type(s).__name__)
@pytest.mark.parametrize("step", [-1, 1.5, True, "3", None])
def test_bad_step(sch, step):
    with pytest.raises(ValueError, match="step must be a non-negative int"):
        sch(step)
