"""Tests of gumbelkit.schedules: exact values, purity (no hidden state), argument checks."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from gumbelkit import (
    ConstantTau,
    CosineTau,
    ExponentialTau,
    InverseTemperatureTau,
    LinearTau,
    get_schedule,
    schedule_names,
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
    sch = ExponentialTau(tau0=1.0, rate=3e-5, tau_min=0.5, every=1000)
    assert sch(step) == pytest.approx(expected, rel=1e-14)
    assert sch(step) == pytest.approx(_jang(step, 1.0, 3e-5, 0.5, 1000), rel=1e-15)


def test_exponential_every_one_is_continuous():
    sch = ExponentialTau(tau0=2.0, rate=1e-3, tau_min=0.1, every=1)
    for step in (0, 1, 7, 500, 2995, 2996, 5000):
        assert sch(step) == pytest.approx(max(0.1, 2.0 * math.exp(-1e-3 * step)), rel=1e-14)


@pytest.mark.parametrize(
    "step,expected", [(0, 10.0), (250, 7.525), (500, 5.05), (1000, 0.1), (5000, 0.1)]
)
def test_linear_values(step, expected):
    assert LinearTau(start=10.0, end=0.1, total=1000)(step) == pytest.approx(expected, rel=1e-14)


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
    assert CosineTau(start=2.0, end=0.1, total=1000)(step) == pytest.approx(expected, rel=1e-14)


@pytest.mark.parametrize(
    "step,expected", [(0, 1.0), (1000, 100 ** (-1 / 3)), (1500, 0.1), (3000, 0.01), (9000, 0.01)]
)
def test_relgan_inverse_temperature_values(step, expected):
    # RelGAN: beta_t = beta_max ** (t / T); the schedule returns tau = 1 / beta_t
    sch = InverseTemperatureTau(beta_max=100.0, total=3000)
    assert sch(step) == pytest.approx(expected, rel=1e-14)
    assert 1.0 / sch(step) == pytest.approx(100.0 ** min(step / 3000, 1.0), rel=1e-14)


def test_constant():
    sch = ConstantTau(0.7)
    assert [sch(s) for s in (0, 1, 10**9)] == [0.7, 0.7, 0.7]


ALL = [
    ConstantTau(0.3),
    ExponentialTau(tau0=1.0, rate=1e-4, tau_min=0.2, every=100),
    LinearTau(start=5.0, end=0.5, total=700),
    CosineTau(start=3.0, end=0.2, total=900),
    InverseTemperatureTau(beta_max=50.0, total=800),
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
    assert schedule_names() == ["constant", "cosine", "exponential", "linear", "relgan"]
    assert get_schedule("relgan", beta_max=100.0, total=3000) == InverseTemperatureTau(100.0, 3000)
    assert get_schedule("exponential") == ExponentialTau()
    assert get_schedule("linear", start=10.0)(0) == 10.0

    def fn(step: int) -> float:
        return 1.0

    assert get_schedule(fn) is fn


def test_get_schedule_errors():
    with pytest.raises(ValueError, match="known schedules: constant, cosine, exponential"):
        get_schedule("warmup")
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['tau0'\]"):
        get_schedule("linear", tau0=1.0)
    with pytest.raises(ValueError, match="keyword arguments"):
        get_schedule(lambda s: 1.0, total=3)


@pytest.mark.parametrize(
    "factory,match",
    [
        (lambda: ConstantTau(0.0), "tau"),
        (lambda: ConstantTau(-1.0), "tau"),
        (lambda: ConstantTau(math.nan), "tau"),
        (lambda: ConstantTau(math.inf), "tau"),
        (lambda: ConstantTau(True), "tau"),
        (lambda: ConstantTau("1.0"), "tau"),
        (lambda: ExponentialTau(tau0=0.0), "tau0"),
        (lambda: ExponentialTau(tau_min=-0.1), "tau_min"),
        (lambda: ExponentialTau(rate=-1e-3), "rate"),
        (lambda: ExponentialTau(rate=math.nan), "rate"),
        (lambda: ExponentialTau(rate="fast"), "rate"),
        (lambda: ExponentialTau(every=0), "every"),
        (lambda: ExponentialTau(every=10.0), "every"),
        (lambda: ExponentialTau(every=True), "every"),
        (lambda: LinearTau(start=0.0), "start"),
        (lambda: LinearTau(end=-1.0), "end"),
        (lambda: LinearTau(total=0), "total"),
        (lambda: CosineTau(end=math.inf), "end"),
        (lambda: CosineTau(total=1.5), "total"),
        (lambda: InverseTemperatureTau(beta_max=0.5), "beta_max"),
        (lambda: InverseTemperatureTau(beta_max=math.inf), "beta_max"),
        (lambda: InverseTemperatureTau(beta_max="100"), "beta_max"),
        (lambda: InverseTemperatureTau(beta_max=True), "beta_max"),
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
