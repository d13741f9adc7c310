"""Tests of gumbelkit.subsets: exact k-subset samples, their relaxations, gradients, numerics.

Statistical tests are seeded; each states how often it would fail by chance for a correct
implementation.
"""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from scipy import stats

import gumbelkit as gk
import gumbelkit.diagnostics as D
from gumbelkit import subsets as S
from gumbelkit.noise import gumbel_noise

NAMES = S.subset_estimator_names()
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
NEG_INF = -float("inf")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _noise_for(name: str, logits: torch.Tensor, k: int, seed: int = 0, dim: int = -1) -> torch.Tensor:
    """Pre-drawn noise of the kind estimator ``name`` takes (float64)."""
    g = _gen(seed)
    if name == "l2x":
        return gumbel_noise((k, *logits.shape), dtype=torch.float64, generator=g)
    if name == "simple":
        shape = list(logits.shape)
        shape[dim] = k
        return torch.rand(shape, dtype=torch.float64, generator=g)
    return gumbel_noise(logits.shape, dtype=torch.float64, generator=g)


# --------------------------------------------------------------------------- registry and shapes


def test_registry_names_and_errors() -> None:
    assert NAMES == ("st_topk", "relaxed_topk", "l2x", "simple")
    with pytest.raises(ValueError, match="unknown k-subset estimator 'nope'; known: st_topk, relaxed_topk"):
        S.sample_subset(torch.zeros(4), 2, "nope")
    assert S.get_subset_estimator("simple") is S.subset_spec("simple").fn
    assert {S.subset_spec(n).distribution for n in NAMES} == set(D.SUBSET_DISTRIBUTIONS)
    assert gk.subsets is S and gk.sample_subset is S.sample_subset


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_any_dim_equals_last_dim_with_the_same_noise(name: str, dim: int) -> None:
    k = 2
    x = torch.randn(4, 5, 3, dtype=torch.float64, requires_grad=True)
    noise = _noise_for(name, x, k, dim=dim)
    s = S.sample_subset(x, k, name, 0.7, dim, noise=noise)
    xl = x.detach().movedim(dim, -1).clone().requires_grad_(True)
    nl = noise.movedim(dim % 3 + 1, -1) if name == "l2x" else noise.movedim(dim, -1)
    r = S.sample_subset(xl, k, name, 0.7, -1, noise=nl)
    for a, b in zip(s, r, strict=True):
        assert torch.equal(a.detach().movedim(dim, -1), b.detach())
    w = torch.randn(x.shape, dtype=torch.float64)
    (s.output * w).sum().backward()
    (r.output * w.movedim(dim, -1)).sum().backward()
    assert x.grad is not None and xl.grad is not None
    torch.testing.assert_close(x.grad.movedim(dim, -1), xl.grad)
    assert s.indices.shape[dim % 3] == k
    hard = torch.zeros_like(s.hard).scatter_(dim, s.indices, 1.0)
    assert torch.equal(hard, s.hard)  # the indices are the hard sample's ones
    if name != "l2x":
        assert torch.equal(s.hard.sum(dim), torch.full_like(s.hard.sum(dim), k))


@pytest.mark.parametrize("name", NAMES)
def test_output_field_and_module(name: str) -> None:
    x = torch.randn(3, 6)
    s = S.sample_subset(x, 3, name, 0.5, generator=_gen(1))
    field = S.subset_spec(name).output
    assert torch.equal(s.output, getattr(s, field))
    m = S.SubsetEstimator(name, k=3, tau=0.5)
    t = m(x, generator=_gen(1))
    for a, b in zip(s, t, strict=True):
        assert torch.equal(a, b)
    assert "k=3" in repr(m)


def test_functional_forms_match_the_registry() -> None:
    x = torch.randn(3, 8, dtype=torch.float64)
    g = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(2))
    s = S.sample_subset(x, 3, "st_topk", 0.3, noise=g)
    assert torch.equal(S.relaxed_topk(x, 3, 0.3, noise=g), s.soft)
    assert torch.equal(S.relaxed_topk(x, 3, 0.3, hard=True, noise=g), s.hard)
    assert torch.equal(gk.gumbel_topk(x, 3, noise=g), s.indices)
    g2 = gumbel_noise((3, *x.shape), dtype=torch.float64, generator=_gen(3))
    assert torch.equal(S.max_concrete(x, 3, 0.1, noise=g2), S.sample_subset(x, 3, "l2x", 0.1, noise=g2).soft)
    u = torch.rand(3, 3, dtype=torch.float64, generator=_gen(4))
    z = S.sample_subset(x, 3, "simple", noise=u)
    assert torch.equal(S.simple(x, 3, noise=u), z.hard)
    assert torch.equal(S.k_subset_sample(x, 3, noise=u), z.indices)
    torch.testing.assert_close(S.k_subset_marginals(x, 3), z.soft)


def test_k1_relaxed_topk_is_gumbel_softmax() -> None:
    x = torch.randn(5, 7, dtype=torch.float64)
    g = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(5))
    torch.testing.assert_close(S.relaxed_topk(x, 1, 0.6, noise=g), gk.gumbel_softmax(x, 0.6, noise=g))
    torch.testing.assert_close(S.max_concrete(x, 1, 0.6, noise=g.unsqueeze(0)), gk.gumbel_softmax(x, 0.6, noise=g))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize("name", NAMES)
def test_bad_arguments_raise_one_line_errors(name: str) -> None:
    x = torch.randn(2, 5)
    cases = [
        (dict(logits=x, k=0), "k must be an int with 1 <= k <= 5"),
        (dict(logits=x, k=6), "k must be an int with 1 <= k <= 5"),
        (dict(logits=x, k=2.0), "k must be an int"),
        (dict(logits=x, k=2, dim=2), "dim=2 is out of range"),
        (dict(logits=x.long(), k=2), "floating dtype"),
        (dict(logits=torch.tensor([0.0, NEG_INF, NEG_INF]), k=2), "k=2 is larger than the number of unmasked"),
        (dict(logits=torch.tensor([0.0, float("nan"), 1.0]), k=1), "contains NaN"),
        (dict(logits=x, k=2, noise=torch.zeros(3)), "noise must be a tensor of shape"),
    ]
    if name != "simple":
        cases.append((dict(logits=x, k=2, tau=0.0), "tau must be positive"))
    for kwargs, msg in cases:
        kw = dict(kwargs)
        with pytest.raises((ValueError, TypeError), match=msg) as exc:
            S.sample_subset(kw.pop("logits"), kw.pop("k"), name, kw.pop("tau", 0.5), **kw)
        assert "\n" not in str(exc.value)


def test_relaxed_topk_hard_flag_and_tau_shape() -> None:
    with pytest.raises(ValueError, match="hard must be True or False"):
        S.relaxed_topk(torch.zeros(4), 2, hard="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0-d tensor"):
        S.relaxed_topk(torch.zeros(4), 2, tau=torch.ones(4))
    with pytest.raises(ValueError, match="tau at construction"):
        S.SubsetEstimator("st_topk", 2, tau=torch.tensor(1.0))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- exact distributions


def _pl_subset_probs(logits: list[float], k: int) -> dict[tuple[int, ...], float]:
    """Plackett-Luce inclusion: P(S) = sum over orderings of S of the sequential draw probabilities."""
    p = [math.exp(v) for v in logits]
    total = sum(p)
    p = [v / total for v in p]
    out: dict[tuple[int, ...], float] = {}
    for order in itertools.permutations(range(len(p)), k):
        prob, left = 1.0, 1.0
        for i in order:
            prob *= p[i] / left
            left -= p[i]
        key = tuple(sorted(order))
        out[key] = out.get(key, 0.0) + prob
    return out


def _chi2_pvalue(hard: torch.Tensor, probs: dict[tuple[int, ...], float]) -> float:
    keys = sorted(probs)
    index = {key: i for i, key in enumerate(keys)}
    counts = [0] * len(keys)
    for row in hard.nonzero()[:, 1].reshape(hard.shape[0], -1).tolist():
        counts[index[tuple(row)]] += 1
    n = hard.shape[0]
    expected = [probs[key] * n for key in keys]
    return float(stats.chisquare(counts, expected).pvalue)


@pytest.mark.parametrize("name", ["st_topk", "relaxed_topk"])
def test_topk_hard_sample_has_plackett_luce_inclusion_probabilities(name: str) -> None:
    # n = 7, k = 3: 35 subsets, 2e5 draws, chi-square against exact enumeration over all 210
    # ordered draws. Fails by chance with probability 1e-3 for a correct sampler; a sampler that
    # drew from SIMPLE's distribution instead shifts the cells by up to ~30% (p ~ 0).
    logits = [1.2, 0.4, -0.3, 0.0, -1.5, 0.8, -0.7]
    x = torch.tensor(logits).expand(200_000, -1)
    s = S.sample_subset(x, 3, name, 0.5, generator=_gen(11))
    assert _chi2_pvalue(s.hard, _pl_subset_probs(logits, 3)) > 1e-3


def test_simple_sample_has_the_k_subset_distribution() -> None:
    # P(S) proportional to exp(sum of logits in S); n = 6, k = 3 (20 subsets), 1e5 draws, one
    # masked category. Fails by chance with probability 1e-3.
    logits = [0.9, -0.2, 0.0, NEG_INF, 1.4, -1.1]
    weights = {c: math.exp(sum(logits[i] for i in c)) for c in itertools.combinations(range(6), 3)}
    weights = {c: w for c, w in weights.items() if w > 0}
    z = sum(weights.values())
    x = torch.tensor(logits).expand(100_000, -1)
    s = S.sample_subset(x, 3, "simple", generator=_gen(12))
    assert s.hard[:, 3].sum() == 0
    assert _chi2_pvalue(s.hard, {c: w / z for c, w in weights.items()}) > 1e-3


def test_l2x_hard_is_the_union_of_k_categorical_draws() -> None:
    # k = 3 draws with replacement over n = 5; the union has 1..3 elements. 1e5 draws against
    # the enumerated union distribution. Fails by chance with probability 1e-3.
    logits = torch.tensor([0.5, -0.5, 1.0, 0.0, -1.0], dtype=torch.float64)
    samples, probs = D.subset_distribution(logits, 3, "max_of_k")
    table = {tuple(row.nonzero().flatten().tolist()): float(p) for row, p in zip(samples, probs, strict=True)}
    x = logits.float().expand(100_000, -1)
    s = S.sample_subset(x, 3, "l2x", 0.1, generator=_gen(13))
    keys = sorted(table)
    counts = {key: 0 for key in keys}
    for row in s.hard.bool().tolist():
        counts[tuple(i for i, b in enumerate(row) if b)] += 1
    p = stats.chisquare([counts[c] for c in keys], [table[c] * 100_000 for c in keys]).pvalue
    assert p > 1e-3


@pytest.mark.parametrize("n,k", [(1, 1), (5, 1), (6, 3), (7, 7), (9, 4)])
def test_marginals_equal_enumeration(n: int, k: int) -> None:
    gen = _gen(n * 10 + k)
    x = 2 * torch.randn(3, n, dtype=torch.float64, generator=gen)
    if n > k:
        x[1, 0] = NEG_INF
    mu = S.k_subset_marginals(x, k)
    for row in range(3):
        samples, probs = D.subset_distribution(x[row], k, "k_subset")
        torch.testing.assert_close(mu[row], probs @ samples, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mu.sum(-1), torch.full((3,), float(k), dtype=torch.float64))


def test_marginals_extreme_logits_stay_finite() -> None:
    x = torch.tensor([[1e4, -1e4, 0.0, 3e4, -2e4, 5.0]], requires_grad=True)
    mu = S.k_subset_marginals(x, 2)
    torch.testing.assert_close(mu.detach(), torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]]))
    mu.backward(torch.randn(1, 6))
    assert x.grad is not None and torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------- gradients


def test_gradcheck_k_subset_marginals_and_second_order() -> None:
    x = torch.randn(2, 6, dtype=torch.float64, generator=_gen(21)).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: S.k_subset_marginals(t, 3), (x,))
    assert torch.autograd.gradgradcheck(lambda t: S.k_subset_marginals(t, 3), (x,))
    # with a masked category (its gradient stays 0) and along dim 0
    xm = x.detach().clone()
    xm[0, 2] = NEG_INF
    xm.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: S.k_subset_marginals(t.T, 2, dim=0).T, (xm,))
    S.k_subset_marginals(xm, 2).backward(torch.randn(2, 6, dtype=torch.float64))
    assert xm.grad is not None and xm.grad[0, 2] == 0 and torch.isfinite(xm.grad).all()


def test_marginals_jacobian_is_the_covariance() -> None:
    # d mu / d logits = Cov(z) under p(S), computed independently by enumeration
    x = torch.randn(6, dtype=torch.float64, generator=_gen(22))
    samples, probs = D.subset_distribution(x, 3, "k_subset")
    mean = probs @ samples
    cov = (samples * probs[:, None]).T @ samples - torch.outer(mean, mean)
    jac = torch.autograd.functional.jacobian(lambda t: S.k_subset_marginals(t, 3), x)
    torch.testing.assert_close(jac, cov, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", ["st_topk", "relaxed_topk", "l2x"])
def test_gradcheck_relaxations_with_fixed_noise(name: str) -> None:
    x = torch.randn(2, 6, dtype=torch.float64, generator=_gen(23)).requires_grad_(True)
    noise = _noise_for(name, x, 3, seed=24)
    assert torch.autograd.gradcheck(lambda t: S.sample_subset(t, 3, name, 0.7, noise=noise).soft, (x,))
    # a masked category
    xm = x.detach().clone()
    xm[1, 4] = NEG_INF
    xm.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: S.sample_subset(t, 3, name, 0.7, noise=noise).soft, (xm,))
    # straight-through: the exact k-hot forward carries the relaxed sample's gradient
    if name == "st_topk":
        w = torch.randn(2, 6, dtype=torch.float64)
        s = S.sample_subset(x, 3, name, 0.7, noise=noise)
        g_out = torch.autograd.grad((s.output * w).sum(), x)[0]
        g_soft = torch.autograd.grad((S.relaxed_topk(x, 3, 0.7, noise=noise) * w).sum(), x)[0]
        torch.testing.assert_close(g_out, g_soft)


def test_relaxed_topk_matches_a_naive_reference() -> None:
    # the stable log(1 - p) equals the textbook recursion where the latter is accurate
    x = torch.randn(4, 9, dtype=torch.float64, generator=_gen(25)).requires_grad_(True)
    g = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(26))
    tau, k = 0.8, 4
    a, ref = x + g, torch.zeros_like(x)
    for _ in range(k):
        p = torch.softmax(a / tau, dim=-1)
        ref = ref + p
        a = a + torch.log1p(-p)
    out = S.relaxed_topk(x, k, tau, noise=g)
    torch.testing.assert_close(out, ref)
    w = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad((out * w).sum(), x)[0], torch.autograd.grad((ref * w).sum(), x)[0])


def test_learnable_tau_gets_the_gradient() -> None:
    x = torch.randn(3, 6, dtype=torch.float64)
    g = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(27))
    tau = torch.tensor(0.6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: S.relaxed_topk(x, 2, t, noise=g), (tau,))


def test_simple_gradient_is_the_marginals_vjp() -> None:
    x = torch.randn(3, 7, dtype=torch.float64, generator=_gen(28)).requires_grad_(True)
    w = torch.randn(3, 7, dtype=torch.float64)
    z = S.simple(x, 3, generator=_gen(29))
    g_simple = torch.autograd.grad((z * w).sum(), x)[0]
    g_mu = torch.autograd.grad((S.k_subset_marginals(x, 3) * w).sum(), x)[0]
    torch.testing.assert_close(g_simple, g_mu)


# --------------------------------------------------------------------------- exact-gradient diagnostics


def test_exact_subset_gradient_matches_finite_differences() -> None:
    x = torch.tensor([0.3, -0.2, 0.9, 0.0, -1.0], dtype=torch.float64)
    c = torch.randn(5, dtype=torch.float64, generator=_gen(30))

    def f(z: torch.Tensor) -> torch.Tensor:
        return (z @ c) ** 2 + z[:, 0] * z[:, 2]

    for dist in D.SUBSET_DISTRIBUTIONS:
        ex = D.exact_subset_gradient(x, 2, f, dist)
        fd = torch.zeros(5, dtype=torch.float64)
        for i in range(5):
            e = torch.zeros(5, dtype=torch.float64)
            e[i] = 1e-6
            up = D.exact_subset_gradient(x + e, 2, f, dist).value
            down = D.exact_subset_gradient(x - e, 2, f, dist).value
            fd[i] = (up - down) / 2e-6
        torch.testing.assert_close(ex.grad, fd, rtol=1e-6, atol=1e-8)


def test_simple_is_exact_for_linear_objectives_and_relaxations_are_biased() -> None:
    # SIMPLE's gradient of E[c . z] is J_mu^T c = the exact gradient, in every draw (no variance).
    x = torch.tensor([0.5, 0.0, -0.5, 1.0, 0.2, -0.8], dtype=torch.float64)
    c = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, -1.0], dtype=torch.float64)

    def f(z: torch.Tensor) -> torch.Tensor:
        return z @ c.to(z.dtype)

    row = D.subset_estimator_stats(x, 3, f, "simple", n_draws=200)
    assert row["bias_norm"] < 1e-12 and row["variance"] < 1e-20 and row["distribution"] == "k_subset"
    # the top-k relaxations point the right way on a linear objective but are biased: their bias
    # is many Monte Carlo noise floors above zero (measured: cosine > 0.99, bias > 10 floors)
    for name in ("st_topk", "relaxed_topk", "l2x"):
        r = D.subset_estimator_stats(x, 3, f, name, 0.5, n_draws=4000, seed=1)
        assert r["cosine"] > 0.95, (name, r["cosine"])
        assert r["bias_norm"] > 5 * r["noise_floor"], (name, r["bias_norm"], r["noise_floor"])


# --------------------------------------------------------------------------- tau limits and numerics


@pytest.mark.parametrize("name", ["st_topk", "relaxed_topk", "l2x"])
def test_relaxed_tends_to_the_exact_sample_as_tau_goes_to_0(name: str) -> None:
    x = torch.randn(50, 8, dtype=torch.float64, generator=_gen(31))
    x[:, 3] = NEG_INF
    noise = _noise_for(name, x, 3, seed=32)
    errors = [float((S.sample_subset(x, 3, name, t, noise=noise).soft
                     - S.sample_subset(x, 3, name, t, noise=noise).hard).abs().mean()) for t in (1.0, 0.1, 1e-3)]
    assert errors[0] > errors[1] > errors[2]
    # at tau = 1e-3 the gaps between perturbed keys (>= 1e-2 for all but a few rows) dominate
    s = S.sample_subset(x, 3, name, 1e-4, noise=noise)
    assert (s.soft - s.hard).abs().max(dim=-1).values.median() < 1e-12
    assert bool((s.soft[:, 3] == 0).all())
    # and towards uniform as tau grows
    big = S.sample_subset(x, 3, name, 1e6, noise=noise).soft
    if name != "l2x":
        torch.testing.assert_close(big[:, [0, 1, 2, 4, 5, 6, 7]], torch.full((50, 7), 3 / 7, dtype=torch.float64),
                                   rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtypes_masks_and_tiny_tau(name: str, dtype: torch.dtype) -> None:
    x = (5 * torch.randn(16, 12, generator=_gen(33))).to(dtype)
    x[:, :4] = NEG_INF
    x.requires_grad_(True)
    for tau in (1e-6, 0.1, 10.0):
        s = S.sample_subset(x, 4, name, tau, generator=_gen(34))
        for t in (s.output, s.hard, s.soft):
            assert t.dtype == dtype and torch.isfinite(t).all()
        assert bool(((s.hard == 0) | (s.hard == 1)).all())
        assert bool((s.hard[:, :4] == 0).all()) and bool((s.soft[:, :4] == 0).all())
        w = torch.randn(16, 12).to(dtype)
        (g,) = torch.autograd.grad((s.output * w).sum(), x)
        assert g.dtype == dtype and torch.isfinite(g).all() and bool((g[:, :4] == 0).all())


def test_float32_half_match_float64_when_computed_in_float32() -> None:
    x = torch.randn(8, 10, generator=_gen(35))
    g = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(36))
    ref = S.relaxed_topk(x.double(), 3, 0.5, noise=g)
    torch.testing.assert_close(S.relaxed_topk(x.half(), 3, 0.5, noise=g).double(), ref, rtol=0, atol=2e-3)
    torch.testing.assert_close(S.k_subset_marginals(x.bfloat16(), 3).double(),
                               S.k_subset_marginals(x.bfloat16().double(), 3), rtol=0, atol=1e-2)


def test_generator_reproducibility_and_vmap() -> None:
    x = torch.randn(4, 9)
    for name in NAMES:
        a = S.sample_subset(x, 3, name, 0.5, generator=_gen(40))
        b = S.sample_subset(x, 3, name, 0.5, generator=_gen(40))
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    from torch.func import grad, vmap

    def f(t: torch.Tensor) -> torch.Tensor:
        return (S.k_subset_marginals(t, 2) * torch.arange(9.0)).sum()

    batched = vmap(grad(f))(x)  # the data checks step aside inside torch.func transforms
    loop = torch.stack([torch.autograd.functional.jacobian(f, r) for r in x])
    torch.testing.assert_close(batched, loop)


def test_fast_and_twice_differentiable_tables_agree() -> None:
    from gumbelkit._ksubset import marginals as _marginals
    from gumbelkit._ksubset import marginals_hvp as _marginals_hvp

    x = 3 * torch.randn(3, 11, dtype=torch.float64, generator=_gen(41))
    x[0, 4] = NEG_INF
    v = torch.randn(3, 11, dtype=torch.float64, generator=_gen(42))
    fast, graph = _marginals(x, 4), _marginals(x, 4, graph=True)
    for a, b in zip(fast, graph, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(_marginals_hvp(x, v, 4, *fast), _marginals_hvp(x, v, 4, *graph, graph=True))


def test_marginals_keep_precision_across_a_wide_range() -> None:
    # a prefix far below the row's largest term still matters when a later item multiplies it:
    # e_2 of (1e4, 0, 3e4) is dominated by 1e4 + 3e4, so items 0 and 3 are taken
    x = torch.tensor([1e4, -1e4, 0.0, 3e4, -2e4, 5.0], dtype=torch.float64)
    torch.testing.assert_close(S.k_subset_marginals(x, 2), torch.tensor([1.0, 0, 0, 1.0, 0, 0], dtype=torch.float64))
    z = S.k_subset_sample(x.expand(100, -1), 2, generator=_gen(43))
    assert bool((z == torch.tensor([0, 3])).all())


def test_torch_compile_traces_without_graph_breaks() -> None:
    import torch._dynamo

    x = torch.randn(4, 9, generator=_gen(44), requires_grad=True)
    u = torch.rand(4, 3, dtype=torch.float64, generator=_gen(45))

    def f(t: torch.Tensor) -> torch.Tensor:
        return S.sample_subset(t, 3, "simple", noise=u).output

    assert torch._dynamo.explain(f)(x).graph_break_count == 0
    compiled = torch.compile(f, backend="aot_eager")
    w = torch.arange(9.0)
    eager, traced = f(x), compiled(x)
    torch.testing.assert_close(traced, eager)
    torch.testing.assert_close(torch.autograd.grad((traced * w).sum(), x)[0], torch.autograd.grad((eager * w).sum(), x)[0])
