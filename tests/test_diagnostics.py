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


def test_gradient_draws_do_not_depend_on_the_chunking() -> None:
    # 3000 draws in one batch vs in chunks of 7 (the last one partial): each draw is an
    # independent estimate, so the means agree within Monte Carlo error. z-test per coordinate
    # at |z| < 5 on the difference (3 coordinates, chance failure < 2e-6); different seeds, so
    # the test does not rely on the two chunkings consuming the generator identically.
    logits = torch.tensor([[0.5, 0.0, -0.5]], dtype=torch.float64)

    def f(z):
        return (z * torch.tensor([1.0, 2.0, 4.0], dtype=torch.float64)).sum((-2, -1)) ** 2

    a = D.gradient_draws(logits, f, "st_gs", 0.5, n_draws=3000, seed=3, chunk=3000)
    b = D.gradient_draws(logits, f, "st_gs", 0.5, n_draws=3000, seed=4, chunk=7)
    assert a.shape == b.shape == (3000, 1, 3)
    assert not torch.equal(b[:7], b[7:14])  # chunks are independent draws, not repeats
    se = (a.var(0) / 3000 + b.var(0) / 3000).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() / se).max() < 5.0
    # same seed, same chunking -> the same stream
    assert torch.equal(b, D.gradient_draws(logits, f, "st_gs", 0.5, n_draws=3000, seed=4, chunk=7))
    with pytest.raises(ValueError, match="n_draws"):
        D.gradient_draws(logits, f, "st", n_draws=1)


def test_exact_gradient_chunking_is_exact() -> None:
    # f is evaluated in chunks of configurations: chunk=4 (5 calls, the last one partial, a masked
    # category) must give the single-call result to round-off
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 3, dtype=torch.float64, generator=g)
    logits[1, 1] = NEG_INF
    w = torch.randn(9, dtype=torch.float64, generator=g)
    calls = []

    def f(z):
        calls.append(z.shape[0])
        return (z.reshape(z.shape[0], 9) @ w) ** 3

    a = D.exact_gradient(logits, f)
    b = D.exact_gradient(logits, f, chunk=4)
    assert calls == [18, 4, 4, 4, 4, 2]  # 3 * 2 * 3 allowed configurations
    torch.testing.assert_close(b.value, a.value, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(b.grad, a.grad, rtol=1e-12, atol=1e-13)


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


def test_plot_leaves_the_matplotlib_backend_and_pyplot_alone() -> None:
    # plot() builds a matplotlib.figure.Figure: it used to call matplotlib.use("Agg") and
    # pyplot.subplots, switching an interactive session's backend and registering a figure
    import matplotlib.pyplot as plt

    rows = [
        {"estimator": "st", "tau": t, "bias_norm": 1.0 / t, "variance": t}
        for t in (0.5, 1.0, 2.0)
    ]
    old = matplotlib.get_backend()
    plt.close("all")
    try:
        matplotlib.use("pdf")
        fig = D.plot(rows)
        assert matplotlib.get_backend() == "pdf"
        assert plt.get_fignums() == []
        assert type(fig).__module__ == "matplotlib.figure" and len(fig.axes) == 2
    finally:
        matplotlib.use(old)
