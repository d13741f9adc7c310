"""Tests of gumbelkit.diagnostics: exact enumeration against closed forms, statistics, table, plot."""

from __future__ import annotations

import math

import matplotlib
import pytest
import torch

import gumbelkit.diagnostics as D

matplotlib.use("Agg")
NEG_INF = -float("inf")


def test_enumeration_order_and_limit() -> None:
    idx = D.enumerate_configurations((2, 3))
    assert idx.shape == (9, 2)
    assert idx[:4].tolist() == [[0, 0], [0, 1], [0, 2], [1, 0]]
    assert len({tuple(r) for r in idx.tolist()}) == 9
    with pytest.raises(ValueError, match="max_configs"):
        D.enumerate_configurations((30, 4))


def test_exact_gradient_of_a_linear_objective_matches_the_closed_form() -> None:
    # E[sum_n w_n . z_n] = sum_n p_n . w_n, gradient p_n * (w_n - p_n . w_n)
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 4, dtype=torch.float64, generator=g)
    logits[1, 2] = NEG_INF
    w = torch.randn(3, 4, dtype=torch.float64, generator=g)
    v, grad = D.exact_gradient(logits, lambda z: (z * w).sum((-2, -1)))
    p = torch.softmax(logits, -1)
    torch.testing.assert_close(v, (p * w).sum())
    torch.testing.assert_close(grad, p * (w - (p * w).sum(-1, keepdim=True)))
    assert grad[1, 2] == 0


def test_exact_gradient_of_a_product_matches_autograd_of_the_closed_form() -> None:
    # f(z) = z_1[a] * z_2[b]: E f = p_1[a] p_2[b]
    logits = torch.tensor([[0.2, -0.3], [1.0, 0.1]], dtype=torch.float64)
    v, grad = D.exact_gradient(logits, lambda z: z[:, 0, 1] * z[:, 1, 0])
    x = logits.clone().requires_grad_(True)
    p = torch.softmax(x, -1)
    (p[0, 1] * p[1, 0]).backward()
    torch.testing.assert_close(v, (torch.softmax(logits, -1)[0, 1] * torch.softmax(logits, -1)[1, 0]))
    torch.testing.assert_close(grad, x.grad)


def test_exact_gradient_checks_f_output() -> None:
    with pytest.raises(ValueError, match=r"\(M,\)"):
        D.exact_gradient(torch.zeros(2, 2), lambda z: z)


def test_stats_identities_and_fields() -> None:
    # MSE = |bias|^2 + (n-1)/n * variance holds exactly for the sample statistics
    logits = torch.tensor([[0.5, 0.0, -0.5], [0.1, 0.2, 0.3]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)

    def f(z):
        return ((z - target) ** 2).sum((-2, -1)) ** 2

    r = D.estimator_stats(logits, f, "st_gs", 0.5, n_draws=500, seed=1)
    n = r["n_draws"]
    assert math.isclose(r["mse"], r["bias_norm"] ** 2 + (n - 1) / n * r["variance"], rel_tol=1e-9)
    assert -1.0 <= r["cosine"] <= 1.0 and r["variance"] > 0
    assert math.isclose(r["noise_floor"], math.sqrt(r["variance"] / n))
    assert torch.tensor(r["mean_grad"]).shape == logits.shape
    # same seed, same numbers
    assert D.estimator_stats(logits, f, "st_gs", 0.5, n_draws=500, seed=1)["mse"] == r["mse"]


def test_gradient_draws_match_single_calls() -> None:
    # the vectorised draws are independent estimates: their mean over a large batch equals the
    # mean from a different chunking up to Monte Carlo error (same seed -> same stream)
    logits = torch.tensor([[0.5, 0.0, -0.5]], dtype=torch.float64)

    def f(z):
        return (z * torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)).sum((-2, -1)) ** 2

    a = D.gradient_draws(logits, f, "st", 1.0, n_draws=300, seed=3, chunk=300)
    b = D.gradient_draws(logits, f, "st", 1.0, n_draws=300, seed=3, chunk=300)
    assert torch.equal(a, b) and a.shape == (300, 1, 3)
    with pytest.raises(ValueError, match="n_draws"):
        D.gradient_draws(logits, f, "st", n_draws=1)


def test_compare_sweep_table_plot(tmp_path) -> None:
    logits = torch.tensor([[0.3, -0.2, 0.0], [1.0, 0.0, -1.0]], dtype=torch.float64)

    def f(z):
        return (z[:, 0] * z[:, 1]).sum(-1) + z[:, 0, 2]

    rows = D.tau_sweep(
        logits, f, ["st_gs", "gumbel_rao", "reinmax", "reinforce"], [0.5, 2.0], n_draws=100,
        options={"gumbel_rao": {"k": 5}},
    )
    labels = [(r["estimator"], r["tau"]) for r in rows]
    assert ("reinmax", 0.5) not in labels and ("reinmax", 2.0) in labels  # tau >= 1 only
    assert ("reinforce", 0.5) in labels
    md = D.to_markdown(rows)
    assert md.count("\n") == len(rows) + 2 and "gumbel_rao k=5" in md
    fig = D.plot(rows, ("bias_norm", "variance", "mse"))
    assert len(fig.axes) == 3 and len(fig.axes[0].lines) == 4
    fig.savefig(tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_docstring_examples() -> None:
    import doctest

    result = doctest.testmod(D, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
