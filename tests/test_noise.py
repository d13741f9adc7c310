"""Tests of gumbelkit.noise: range, distribution, tail resolution, dtypes, reproducibility.

References for the expected values: the standard Gumbel has mean = Euler's gamma, variance
pi^2 / 6 and excess kurtosis 12 / 5; ``scipy.stats.gumbel_r`` / ``expon`` are the reference CDFs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import stats as sps

from gumbelkit import (
    GUMBEL_NOISE_MAX,
    GUMBEL_NOISE_MIN,
    exponential_noise,
    gumbel_like,
    gumbel_noise,
)

EULER_GAMMA = 0.5772156649015329
GUMBEL_VAR = math.pi**2 / 6
ALL_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]


@pytest.fixture(autouse=True)
def _both_sources(kernel_path: str) -> str:
    """Every test here runs on the numpy path (CPU: PCG64 blocks) and the torch-op path (torch.rand)."""
    return kernel_path


@pytest.fixture
def exp_1e7() -> torch.Tensor:
    """10^7 float64 exponential draws for the tail tests (~0.3 s)."""
    return exponential_noise(10**7, dtype=torch.float64, generator=torch.Generator().manual_seed(7))


def _bound(value: float, dtype: torch.dtype) -> float:
    # the noise is computed in float32 (float64 for float64) and then rounded; rounding is
    # monotone, so rounding the bound the same way gives the bound of the rounded values
    cdt = torch.float64 if dtype == torch.float64 else torch.float32
    return float(torch.tensor(value, dtype=torch.float64).to(cdt).to(dtype))


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_gumbel_noise_finite_and_within_documented_range(gen, dtype):
    x = gumbel_noise((1000, 1000), dtype=dtype, generator=gen(1))
    assert x.dtype == dtype and x.shape == (1000, 1000)
    assert bool(torch.isfinite(x).all())
    assert float(x.min()) >= _bound(GUMBEL_NOISE_MIN, dtype)
    assert float(x.max()) <= _bound(GUMBEL_NOISE_MAX, dtype)


def test_documented_range_constants():
    # G = -log E with E in [2^-54, 53 ln 2] (the exponential_noise docstring)
    assert GUMBEL_NOISE_MAX == pytest.approx(-math.log(2.0**-54), rel=1e-15)
    assert GUMBEL_NOISE_MIN == pytest.approx(-math.log(53 * math.log(2.0)), rel=1e-15)
    # the Gumbel mass outside the representable range is below 2e-16, as documented
    outside = sps.gumbel_r.sf(GUMBEL_NOISE_MAX) + sps.gumbel_r.cdf(GUMBEL_NOISE_MIN)
    assert outside < 2e-16


def test_exponential_noise_range(exp_1e7):
    assert float(exp_1e7.min()) >= 2.0**-54
    assert float(exp_1e7.max()) <= 53 * math.log(2.0)
    assert exp_1e7.dtype == torch.float64


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gumbel_noise_ks_against_scipy(gen, dtype):
    # KS test on 2e5 draws; false-failure rate alpha = 1e-4 per dtype
    x = gumbel_noise(200_000, dtype=dtype, generator=gen(2)).double().numpy()
    assert sps.kstest(x, sps.gumbel_r.cdf).pvalue > 1e-4


def test_exponential_noise_ks_against_scipy(gen):
    # KS test on 2e5 draws; alpha = 1e-4
    x = exponential_noise(200_000, dtype=torch.float64, generator=gen(3)).numpy()
    assert sps.kstest(x, sps.expon.cdf).pvalue > 1e-4


def test_gumbel_noise_mean_and_variance_z_tests(gen, stats):
    # n = 1e6 float64 draws. z-test of the mean (sd of the mean: sqrt(pi^2/6 / n)) and of the
    # sample variance (sd: sqrt((mu4 - sigma^4) / n) with mu4 = (3 + 12/5) sigma^4).
    # Two-sided, alpha = 1e-5 each.
    n = 1_000_000
    x = gumbel_noise(n, dtype=torch.float64, generator=gen(4))
    mean, var = float(x.mean()), float(x.var())
    z_mean = (mean - EULER_GAMMA) / math.sqrt(GUMBEL_VAR / n)
    z_var = (var - GUMBEL_VAR) / math.sqrt((5.4 - 1.0) * GUMBEL_VAR**2 / n)
    bound = stats.z_bound(1e-5)
    assert abs(z_mean) < bound, (mean, z_mean)
    assert abs(z_var) < bound, (var, z_var)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_noise_is_float32_noise_rounded(gen, dtype):
    # documented: half-precision noise is the float32 noise of the same draw, rounded
    a = gumbel_noise(100_000, dtype=dtype, generator=gen(5))
    b = gumbel_noise(100_000, dtype=torch.float32, generator=gen(5))
    assert torch.equal(a, b.to(dtype))


def test_exponential_small_values_have_the_right_rate(exp_1e7, stats):
    # P(E < 1e-5) = 1 - exp(-1e-5); ~100 expected in 1e7 draws. Exact binomial, alpha = 1e-4.
    # (Resolution is tested separately below: a 2^-24 uniform grid would still pass this.)
    t = 1e-5
    k = int((exp_1e7 < t).sum())
    stats.binom_two_sided(k, exp_1e7.numel(), -math.expm1(-t), 1e-4, "P(E < 1e-5)")


def test_exponential_small_values_are_not_on_a_coarse_grid(exp_1e7):
    # Resolution of the upper Gumbel tail. Values E < 2^-14 (~610 expected in 1e7 draws).
    # * From uniforms on a 2^-24 grid, E could only take ~2^10 distinct values there, so ~150
    #   of the ~610 draws would repeat a value: this test fails such an implementation.
    # * From 53-bit uniforms there are 2^39 grid values below 2^-14: the chance of any repeat
    #   is about 610^2 / 2 / 2^39 = 3.4e-7 (the false-failure rate).
    small = exp_1e7[exp_1e7 < 2.0**-14]
    assert small.numel() > 400  # 610 expected; P(< 400) ~ 1e-18
    assert torch.unique(small).numel() == small.numel()
    # and they are not multiples of 2^-24 either (a 24-bit grid gives E = k 2^-24 (1 + O(k 2^-25))):
    r = small * 2.0**24
    near_integer = (r - r.round()).abs() < 1e-3  # P = 2e-3 each for continuous E; ~1.2 expected
    # Poisson(1.2) >= 15 has chance ~1e-12; a simulated 24-bit grid gives ~100 (32-bit: 0)
    assert int(near_integer.sum()) < 15


def test_gumbel_upper_tail_rate_and_resolution(gen, stats):
    # G > 12 has probability 1 - exp(-e^-12) = 6.1e-6; ~61 expected in 1e7 float32 draws.
    # Exact binomial test of the count, alpha = 1e-4.
    n = 10**7
    g = gumbel_noise(n, dtype=torch.float32, generator=gen(8))
    top = g[g > 12.0]
    stats.binom_two_sided(top.numel(), n, -math.expm1(-math.exp(-12.0)), 1e-4, "P(G > 12)")
    # Above 12 a 2^-24 uniform grid leaves ~100 possible values, so ~15 of ~61 draws would
    # collide (13 in a simulation); with 53-bit uniforms the values are float32-resolved
    # (spacing 2^-20 on [8, 16)):
    # expected repeats ~ 61^2 / 2 * 2^-20 * 0.5 < 1e-3, so >= 3 repeats has chance < 1e-9.
    assert top.numel() - torch.unique(top).numel() < 3


def test_same_seed_same_samples_different_seed_different(gen):
    for fn in (gumbel_noise, exponential_noise):
        for dtype in ALL_DTYPES:
            a = fn((64, 33), dtype=dtype, generator=gen(11))
            b = fn((64, 33), dtype=dtype, generator=gen(11))
            c = fn((64, 33), dtype=dtype, generator=gen(12))
            assert torch.equal(a, b)
            assert not torch.equal(a, c)
    x = torch.empty(5, 7, dtype=torch.float64)
    assert torch.equal(gumbel_like(x, generator=gen(3)), gumbel_like(x, generator=gen(3)))


def test_generator_does_not_touch_global_rng(gen):
    state = torch.get_rng_state()
    gumbel_noise(1000, generator=gen(0))
    exponential_noise(1000, generator=gen(0))
    gumbel_like(torch.empty(10), generator=gen(0))
    assert torch.equal(state, torch.get_rng_state())


def test_global_rng_is_used_without_generator():
    torch.manual_seed(123)
    a = gumbel_noise(100)
    torch.manual_seed(123)
    b = gumbel_noise(100)
    assert torch.equal(a, b)


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_gumbel_like_shape_dtype_device(gen, dtype):
    x = torch.zeros(3, 4, 5, dtype=dtype)
    g = gumbel_like(x, generator=gen(0))
    assert g.shape == x.shape and g.dtype == dtype and g.device == x.device
    assert bool(torch.isfinite(g).all())
    # same draw as gumbel_noise with the same seed
    assert torch.equal(g, gumbel_noise(x.shape, dtype=dtype, generator=gen(0)))


def test_gumbel_like_non_float_template_gives_float32():
    g = gumbel_like(torch.zeros(4, dtype=torch.int64))
    assert g.dtype == torch.float32 and g.shape == (4,)


def test_gumbel_like_rejects_non_tensor():
    with pytest.raises(TypeError, match="tensor"):
        gumbel_like([1.0, 2.0])  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(), 5, (0,), (2, 0, 3), torch.Size([2, 3])])
def test_shapes(shape):
    x = gumbel_noise(shape)
    expected = (shape,) if isinstance(shape, int) else tuple(shape)
    assert tuple(x.shape) == expected
    assert tuple(exponential_noise(shape).shape) == expected


@pytest.mark.parametrize("fn", [gumbel_noise, exponential_noise])
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64, "float32"])
def test_bad_dtype(fn, dtype):
    with pytest.raises(ValueError, match="dtype"):
        fn(3, dtype=dtype)


def test_exponential_mean_matches(gen, stats):
    # sanity of the scale: mean 1, sd of the mean 1/sqrt(n); two-sided alpha = 1e-5
    n = 1_000_000
    e = exponential_noise(n, dtype=torch.float64, generator=gen(9)).numpy()
    assert abs((e.mean() - 1.0) * math.sqrt(n)) < stats.z_bound(1e-5)
    assert np.all(e > 0)


def test_torch_rand_branch_maps_the_uniform_grid_ends(monkeypatch):
    # Feed the torch.rand branch the extreme 53-bit uniforms (W = 0, the smallest nonzero W,
    # 2^-30, 1/2 and the largest W) and check the documented mapping and range exactly.
    # (The PCG64 block source has the same check in tests/test_perf_paths.py.)
    from gumbelkit import _kernels

    monkeypatch.setattr(_kernels, "numpy_path", lambda t: False)
    w = torch.tensor([0.0, 2.0**-53, 2.0**-30, 0.5, 1.0 - 2.0**-53], dtype=torch.float64)
    real_rand = torch.rand

    def fake_rand(*shape, dtype=None, **kwargs):
        if dtype != torch.float64 or tuple(shape[0] if len(shape) == 1 else shape) != (5,):
            return real_rand(*shape, dtype=dtype, **kwargs)
        return w.clone()

    monkeypatch.setattr(torch, "rand", fake_rand)
    e = exponential_noise(5, dtype=torch.float64)
    expected_e = -np.log1p(-np.maximum(w.numpy(), 2.0**-54))
    np.testing.assert_allclose(e.numpy(), expected_e, rtol=1e-15)
    assert float(e[0]) == 2.0**-54 and float(e[-1]) == pytest.approx(53 * math.log(2.0), rel=1e-15)
    g = gumbel_noise(5, dtype=torch.float64)
    assert float(g[0]) == pytest.approx(GUMBEL_NOISE_MAX, rel=1e-15)
    assert float(g[-1]) == pytest.approx(GUMBEL_NOISE_MIN, rel=1e-15)
    assert float(g[1]) == pytest.approx(53 * math.log(2.0), rel=1e-15)  # -log(2^-53)
    for dtype in ALL_DTYPES:
        e_d = exponential_noise(5, dtype=dtype)
        g_d = gumbel_noise(5, dtype=dtype)
        assert bool(torch.isfinite(e_d).all()) and bool(torch.isfinite(g_d).all())
        assert bool((e_d > 0).all()), (dtype, e_d)  # strictly positive, float16 included
        assert float(g_d.max()) <= _bound(GUMBEL_NOISE_MAX, dtype)
        assert float(g_d.min()) >= _bound(GUMBEL_NOISE_MIN, dtype)
