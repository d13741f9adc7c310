"""Decoupled ST (Shah et al. 2024): the formula at fixed noise, the sampling law, and the exact
expected gradient on two categories (a one-dimensional integral over the logistic noise).

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

NEG_INF = -float("inf")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("tau_f,tau_b", [(1.0, 0.5), (2.0, 0.5), (0.3, 2.0)])
@pytest.mark.parametrize("backward_noise", [True, False])
def test_hard_gradient_and_sample_match_the_formula(tau_f: float, tau_b: float, backward_noise: bool) -> None:
    # D = argmax(l / tau_f + g); gradient of softmax(l / tau_b + g) (or softmax(l / tau_b)) at the same g
    x = torch.randn(6, 5, dtype=torch.float64, generator=_gen(1)) * 2
    x[2, 3] = NEG_INF
    w = torch.randn(6, 5, dtype=torch.float64, generator=_gen(2))
    g = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(3))
    xx = x.clone().requires_grad_(True)
    s = E.sample(xx, "decoupled_st", tau_b, noise=g, tau_forward=tau_f, backward_noise=backward_noise)
    (s.output * w).sum().backward()
    assert torch.equal(s.indices, (x / tau_f + g).argmax(-1))
    assert torch.equal(s.hard, torch.nn.functional.one_hot(s.indices, 5).double())
    xr = x.clone().requires_grad_(True)
    ref = torch.softmax(xr / tau_b + g, -1) if backward_noise else torch.softmax(xr / tau_b, -1)
    (ref * w).sum().backward()
    torch.testing.assert_close(xx.grad, xr.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(s.soft, ref.detach())
    assert xx.grad[2, 3] == 0


def test_special_cases_are_st_gs_and_st_on_the_same_noise() -> None:
    # tau_f = tau_b = 1 is ST-GS at tau 1; tau_f = 1 without backward noise is ST at tau_b
    x = torch.randn(4, 3, dtype=torch.float64, generator=_gen(4))
    w = torch.randn(4, 3, dtype=torch.float64, generator=_gen(5))
    g = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(6))

    def grad(name: str, tau: float, **opts):
        xx = x.clone().requires_grad_(True)
        s = E.sample(xx, name, tau, noise=g, **opts)
        (s.output * w).sum().backward()
        return s.indices, xx.grad

    for (a_name, a_tau, a_opts), (b_name, b_tau) in [
        (("decoupled_st", 1.0, {}), ("st_gs", 1.0)),
        (("decoupled_st", 0.4, {"backward_noise": False}), ("st", 0.4)),
    ]:
        ia, ga = grad(a_name, a_tau, **a_opts)
        ib, gb = grad(b_name, b_tau)
        assert torch.equal(ia, ib)
        torch.testing.assert_close(ga, gb, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("tau_f", [0.5, 2.0])
def test_forward_samples_follow_softmax_of_logits_over_tau_forward(tau_f: float) -> None:
    # chi-square of 2e5 draws of a 5-category variable against softmax(l / tau_f); rejecting at
    # p < 1e-4 fails by chance with probability 1e-4 per case. Sampling from softmax(l) instead
    # (the wrong temperature) gives chi2 in the thousands here.
    logits = torch.tensor([1.0, 0.0, -0.5, 2.0, -1.5], dtype=torch.float64)
    n = 200_000
    s = E.sample(logits.expand(n, 5), "decoupled_st", 0.7, generator=_gen(7), tau_forward=tau_f)
    counts = torch.bincount(s.indices, minlength=5).double()
    expected = torch.softmax(logits / tau_f, 0) * n
    p = stats.chisquare(counts.numpy(), expected.numpy()).pvalue
    assert p > 1e-4, p


def _expected_two_category_gradient(theta: float, tau_f: float, tau_b: float, w: torch.Tensor, c: float,
                                    backward_noise: bool) -> float:
    # Two categories with logits (theta, 0): D_1 = 1[theta / tau_f + L > 0], L = g_1 - g_0 logistic;
    # the backward softmax(l / tau_b + g) has first coordinate sigmoid(theta / tau_b + L), so
    # d/dtheta of the surrogate is sigmoid'(theta / tau_b + L) / tau_b times (g_1 - g_0) of f's
    # gradient. f(D) = (D . w - c)^2, df/dD = 2 (D . w - c) w.
    w1, w0 = float(w[0]), float(w[1])

    def integrand(u: float) -> float:
        s_b = 1 / (1 + math.exp(-(theta / tau_b + u))) if backward_noise else 1 / (1 + math.exp(-theta / tau_b))
        d1 = 1.0 if theta / tau_f + u > 0 else 0.0
        fv = d1 * w1 + (1 - d1) * w0 - c
        return s_b * (1 - s_b) / tau_b * 2 * fv * (w1 - w0) * stats.logistic.pdf(u)

    split = -theta / tau_f  # the sample flips here: integrate the two smooth pieces
    a = integrate.quad(integrand, -60, split, limit=200, epsabs=1e-13)[0]
    b = integrate.quad(integrand, split, 60, limit=200, epsabs=1e-13)[0]
    return a + b


@pytest.mark.parametrize("backward_noise", [True, False])
def test_expected_gradient_equals_the_exact_integral_on_two_categories(backward_noise: bool) -> None:
    # The mean of 2e5 draws of the estimator against its exact expectation (quadrature over the
    # logistic noise): a z-test at 5 sigma (chance failure 6e-7). It catches a backward pass that
    # draws its own noise instead of the forward draw's, the temperature on (l + g) instead of l,
    # and sampling at tau_b or at 1: measured, those move the mean by 17 to 300 standard errors
    # (runs with 2e5 draws).
    theta, tau_f, tau_b, c = 0.7, 2.0, 0.5, 0.3
    w = torch.tensor([1.5, -0.5], dtype=torch.float64)
    logits = torch.tensor([theta, 0.0], dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:  # (M, 2) -> (M,)
        return (z @ w - c) ** 2

    g = D.gradient_draws(logits, f, "decoupled_st", tau_b, n_draws=200_000, seed=8, chunk=50_000,
                         tau_forward=tau_f, backward_noise=backward_noise)
    est = g[:, 0]  # d/d theta: the first logit
    exact = _expected_two_category_gradient(theta, tau_f, tau_b, w, c, backward_noise)
    z = (est.mean().item() - exact) / (est.std().item() / math.sqrt(est.numel()))
    assert abs(z) < 5.0, (est.mean().item(), exact, z)
    # the integral is not the true gradient: decoupled ST is biased (here by many standard errors)
    true = D.exact_gradient(logits, f).grad[0].item()
    assert abs(exact - true) > 0.05, (exact, true)


def test_bad_options() -> None:
    x = torch.randn(2, 3)
    with pytest.raises(ValueError, match="tau_forward must be positive"):
        E.sample(x, "decoupled_st", 0.5, tau_forward=0.0)
    with pytest.raises(ValueError, match="backward_noise must be True or False"):
        E.sample(x, "decoupled_st", 0.5, backward_noise=1)
    with pytest.raises(ValueError, match="unknown option.*allowed: backward_noise, noise, tau_forward"):
        E.sample(x, "decoupled_st", 0.5, k=3)
