"""Binary (Bernoulli) estimators: each is its categorical namesake on logits (theta, 0), value and
gradient; the sampling law; ReinMax's exactness on quadratics and Gumbel-sigmoid ST's exact
expected gradient (a one-dimensional integral); numerics and bad input.

Statistical tests are seeded; each states how often it would fail by chance.
"""

from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, stats

import gumbelkit.diagnostics as D
from gumbelkit import estimators as E
from gumbelkit.noise import gumbel_noise

NAMES = E.bernoulli_names()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_names() -> None:
    assert NAMES == ("st", "gs", "st_gs", "reinmax", "decoupled_st")


CASES = [("st", 0.5, {}), ("st", 2.0, {}), ("gs", 0.5, {}), ("st_gs", 0.3, {}), ("st_gs", 1.7, {}),
         ("reinmax", 1.0, {}), ("reinmax", 1.8, {}), ("decoupled_st", 0.5, {"tau_forward": 2.0}),
         ("decoupled_st", 1.3, {"tau_forward": 0.4, "backward_noise": False})]


@pytest.mark.parametrize("name,tau,opts", CASES)
def test_equals_the_categorical_estimator_on_theta_and_zero(name: str, tau: float, opts: dict) -> None:
    # the categorical estimator on logits (theta, 0) with Gumbel noise (g1, g0), read on the first
    # coordinate, against the Bernoulli one with logistic noise L = g1 - g0: same sample, same
    # relaxed value, same gradient for a downstream f that uses the first coordinate
    theta = torch.randn(7, dtype=torch.float64, generator=_gen(1)) * 2
    g = gumbel_noise((7, 2), dtype=torch.float64, generator=_gen(2))
    v = torch.randn(7, dtype=torch.float64, generator=_gen(3))

    def f(z: torch.Tensor) -> torch.Tensor:  # nonlinear in the 0/1 (or relaxed) values
        return ((z * v).sum() - 0.3) ** 2 + z.sum() ** 3

    tb = theta.clone().requires_grad_(True)
    sb = E.sample_bernoulli(tb, name, tau, noise=g[:, 0] - g[:, 1], **opts)
    f(sb.output).backward()
    tc = theta.clone().requires_grad_(True)
    pair = torch.stack([tc, torch.zeros_like(tc)], -1)
    sc = E.sample(pair, name, tau, noise=g, **opts)
    f(sc.output[:, 0]).backward()
    assert torch.equal(sb.hard, sc.hard[:, 0]) and torch.equal(sb.indices, 1 - sc.indices)
    assert ((sb.hard == 0) | (sb.hard == 1)).all()
    torch.testing.assert_close(sb.soft, sc.soft[:, 0], rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(tb.grad, tc.grad, rtol=1e-10, atol=1e-12)
    assert tb.grad.abs().max() > 1e-3


@pytest.mark.parametrize("tau_f", [1.0, 0.5])
def test_samples_are_bernoulli(tau_f: float) -> None:
    # 4 units x 1e5 draws: binomial z-test per unit at 5 sigma (chance failure < 3e-6)
    theta = torch.tensor([-2.0, -0.3, 0.0, 1.5], dtype=torch.float64)
    n = 100_000
    s = E.sample_bernoulli(theta.expand(n, 4), "decoupled_st", 0.7, generator=_gen(4), tau_forward=tau_f)
    p = torch.sigmoid(theta / tau_f)
    z = (s.hard.mean(0) - p) / (p * (1 - p) / n).sqrt()
    assert z.abs().max() < 5, z


def test_reinmax_is_unbiased_on_a_quadratic_at_tau_one_and_st_is_not() -> None:
    # ReinMax's second-order exactness holds on the Bernoulli case too: for a quadratic in z its
    # mean over 20000 draws matches the enumerated gradient (z-test at 5 sigma over 6 units,
    # chance failure < 4e-6); ST's bias on the same problem is > 10 standard errors (measured 60).
    theta = torch.randn(6, dtype=torch.float64, generator=_gen(5))
    q = torch.randn(6, 6, dtype=torch.float64, generator=_gen(6))
    q = q @ q.T / 6
    b = torch.randn(6, dtype=torch.float64, generator=_gen(7))

    def f(z):
        return ((z @ q) * z).sum(-1) + z @ b

    exact = D.exact_gradient(theta, f, family="bernoulli").grad
    g = D.gradient_draws(theta, f, "reinmax", 1.0, n_draws=20000, seed=8, family="bernoulli")
    se = g.std(0) / math.sqrt(g.shape[0])
    assert ((g.mean(0) - exact) / se).abs().max() < 5
    gst = D.gradient_draws(theta, f, "st", 1.0, n_draws=20000, seed=8, family="bernoulli")
    se_st = gst.std(0) / math.sqrt(gst.shape[0])
    assert ((gst.mean(0) - exact) / se_st).abs().max() > 10


def test_gumbel_sigmoid_st_expected_gradient_is_the_exact_integral() -> None:
    # E[d/dtheta] = int sigmoid'((theta + u)/tau)/tau * f'(1[theta + u > 0]) dLogistic(u) for
    # f(z) = (z - c)^2 on one unit; mean of 2e5 draws, z-test at 5 sigma (chance failure 6e-7).
    # Using sigmoid(theta/tau) (plain ST) instead moves the mean by 80 standard errors here.
    theta, tau, c = 0.4, 0.6, 0.3

    def integrand(u: float) -> float:
        s = 1 / (1 + math.exp(-(theta + u) / tau))
        z = 1.0 if theta + u > 0 else 0.0
        return s * (1 - s) / tau * 2 * (z - c) * stats.logistic.pdf(u)

    exact = integrate.quad(integrand, -60, -theta, epsabs=1e-13)[0] + integrate.quad(integrand, -theta, 60, epsabs=1e-13)[0]
    g = D.gradient_draws(torch.tensor([theta], dtype=torch.float64), lambda z: ((z - c) ** 2).sum(-1), "st_gs", tau,
                         n_draws=200_000, seed=9, chunk=50_000, family="bernoulli")[:, 0]
    z = (g.mean().item() - exact) / (g.std().item() / math.sqrt(g.numel()))
    assert abs(z) < 5, (g.mean().item(), exact, z)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_extreme_logits_stay_finite(name: str, dtype: torch.dtype) -> None:
    big = {torch.float16: 6e4, torch.bfloat16: 3e38, torch.float32: 3e38, torch.float64: 1e300}[dtype]
    theta = torch.tensor([-big, -30.0, 0.0, 1e-3, 30.0, big], dtype=dtype).requires_grad_(True)
    tau = 1.0 if name == "reinmax" else 0.05
    s = E.sample_bernoulli(theta, name, tau, generator=_gen(10))
    assert s.output.dtype == dtype and torch.isfinite(s.output).all() and torch.isfinite(s.soft).all()
    assert s.hard[0] == 0 and s.hard[-1] == 1
    (s.output.float() * torch.arange(6.0)).sum().backward()
    assert torch.isfinite(theta.grad).all()


def test_bad_input() -> None:
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="unknown Bernoulli estimator 'gumbel_rao'; known: st, gs"):
        E.sample_bernoulli(x, "gumbel_rao")
    with pytest.raises(ValueError, match="logits must be finite"):
        E.sample_bernoulli(torch.tensor([0.0, float("inf")]), "st")
    with pytest.raises(ValueError, match="tau must be finite and >= 1"):
        E.sample_bernoulli(x, "reinmax", 0.5)
    with pytest.raises(ValueError, match="unknown option.*'st'; allowed: none"):
        E.sample_bernoulli(x, "st", tau_forward=2.0)
    with pytest.raises(ValueError, match="noise must be a tensor of the logits' shape"):
        E.sample_bernoulli(x, "st", noise=torch.zeros(2))
    with pytest.raises(ValueError, match="family must be one of categorical, bernoulli"):
        D.exact_gradient(x, lambda z: z.sum(-1), family="binary")


def test_docstring_examples() -> None:
    import doctest
    import importlib

    for name in ("bernoulli", "decoupled_st", "indecater"):
        mod = importlib.import_module(f"gumbelkit.estimators.{name}")
        result = doctest.testmod(mod, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
        assert result.failed == 0 and result.attempted > 0, mod.__name__
