"""Tests of gumbelkit.functional: exact sampling (Gumbel-Max, Gumbel-top-k), Gumbel-Softmax
values, limits, dtypes, dims, gradients, and agreement with torch's gumbel_softmax.

Every statistical test is seeded and states its false-failure rate (alpha) in a comment;
reference probabilities come from exact formulas (softmax, Plackett-Luce by enumeration).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as tF

from gumbelkit import (
    GumbelSoftmaxSample,
    gumbel_max,
    gumbel_noise,
    gumbel_softmax,
    gumbel_softmax_sample,
    gumbel_topk,
    straight_through,
)

NEG_INF = -math.inf
HALF_DTYPES = [torch.float16, torch.bfloat16]


def _probs(logits: torch.Tensor) -> np.ndarray:
    """Exact softmax in float64 of the logits as stored (after any rounding to their dtype)."""
    return torch.softmax(logits.double(), dim=-1).numpy()


def _counts(index: torch.Tensor, k: int) -> np.ndarray:
    return torch.bincount(index.reshape(-1), minlength=k).numpy()


# ----------------------------------------------------------------------------------------------
# gumbel_max
# ----------------------------------------------------------------------------------------------

GMAX_CASES = {
    "skewed": torch.tensor([0.1, 0.2, 0.3, 0.4]).log(),
    "tiny_1e-5": torch.tensor([1e-5, 0.25, 0.5, 0.25 - 1e-5], dtype=torch.float64).log().float(),
    "masked": torch.tensor([0.3, NEG_INF, -1.2, 2.0, NEG_INF, 0.0, 1.1]),
    "random10": torch.randn(10, generator=torch.Generator().manual_seed(0)) * 1.5,
}


@pytest.mark.parametrize("name", list(GMAX_CASES))
def test_gumbel_max_chisquare(gen, stats, name, kernel_path):
    # 1e6 draws per vector; chi-square goodness of fit, alpha = 1e-4 per vector.
    # Masked (-inf) categories must be drawn exactly 0 times (asserted by stats.chisquare).
    logits = GMAX_CASES[name]
    n, k = 1_000_000, logits.numel()
    idx = gumbel_max(logits.expand(n, k), generator=gen(100))
    assert idx.dtype == torch.long and idx.shape == (n,)
    counts = _counts(idx, k)
    probs = _probs(logits)
    stats.chisquare(counts, probs, 1e-4, name)
    if name == "masked":
        assert counts[1] == 0 and counts[4] == 0
    if name == "tiny_1e-5":
        # the 1e-5 category alone: exact binomial (~10 expected), alpha = 1e-4
        stats.binom_two_sided(counts[0], n, probs[0], 1e-4, "1e-5 category")


def test_gumbel_max_chisquare_has_power(gen, stats):
    # The same 1e6-draw chi-square rejects a 2% relative error in two probabilities
    # (0.1 -> 0.102, 0.4 -> 0.398): expected chi^2 ~ 50 on 3 dof.
    logits = GMAX_CASES["skewed"]
    counts = _counts(gumbel_max(logits.expand(1_000_000, 4), generator=gen(100)), 4)
    assert stats.chisquare_pvalue(counts, [0.102, 0.2, 0.3, 0.398]) < 1e-4


def test_gumbel_max_dim1_of_3d(gen, stats, kernel_path):
    # logits (n, K, M): three different probability vectors along dim=1 (one masked entry).
    # 3e5 draws per column; chi-square per column, alpha = 1e-4 each.
    base = torch.tensor(
        [[0.0, 1.0, -1.0], [0.5, NEG_INF, 0.0], [1.0, 0.0, 2.0], [-0.5, 0.5, 0.0], [2.0, -1.0, 1.0]]
    )  # (K=5, M=3)
    n = 300_000
    idx = gumbel_max(base.expand(n, 5, 3), dim=1, generator=gen(101))  # (n, M)
    assert idx.shape == (n, 3)
    for m in range(3):
        stats.chisquare(_counts(idx[:, m], 5), _probs(base[:, m]), 1e-4, f"column {m}")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_gumbel_max_chisquare_dtypes(gen, stats, dtype):
    # 1e6 draws; probabilities from the logits as rounded to `dtype`; alpha = 1e-4 per dtype
    logits = torch.tensor([-2.0, 0.3, 1.7, NEG_INF, 0.9]).to(dtype)
    idx = gumbel_max(logits.expand(1_000_000, 5), generator=gen(102))
    stats.chisquare(_counts(idx, 5), _probs(logits), 1e-4, str(dtype))


def test_gumbel_max_uses_the_given_noise(gen):
    logits = torch.randn(50, 6, generator=gen(0))
    noise = gumbel_noise((50, 6), generator=gen(1))
    assert torch.equal(gumbel_max(logits, noise=noise), (logits + noise).argmax(-1))
    # dim=0 as well
    assert torch.equal(gumbel_max(logits, dim=0, noise=noise), (logits + noise).argmax(0))


def test_gumbel_max_extreme_logits_pick_the_dominant_category(gen):
    # a logit 100 above the rest wins with probability 1 - O(e^-100)
    logits = torch.full((10_000, 5), -50.0)
    logits[:, 3] = 50.0
    assert bool((gumbel_max(logits, generator=gen(3)) == 3).all())


# ----------------------------------------------------------------------------------------------
# gumbel_topk
# ----------------------------------------------------------------------------------------------


def _plackett_luce(probs: np.ndarray, k: int) -> np.ndarray:
    """Exact probabilities of every ordered k-tuple (index = base-K code), by enumeration."""
    K = len(probs)
    out = np.zeros(K**k)
    for tup in itertools.permutations(range(K), k):
        pr, rest = 1.0, 1.0
        for i in tup:
            if probs[i] == 0:
                pr = 0.0
                break
            pr *= probs[i] / rest
            rest -= probs[i]
        out[_code(np.array(tup), K)] = pr
    return out


def _code(idx: np.ndarray, K: int) -> np.ndarray:
    """Base-K code of ordered tuples along the last axis."""
    k = idx.shape[-1]
    return (idx * K ** np.arange(k - 1, -1, -1)).sum(-1)


TOPK_CASES = [
    ("K5_k3", torch.tensor([0.05, 0.1, 0.15, 0.3, 0.4]).log(), 3),
    ("K6_k6", torch.tensor([0.0, 0.3, -0.4, 0.8, 0.2, -0.2]), 6),
    ("K6_k3_masked", torch.tensor([0.5, NEG_INF, -0.3, 1.0, NEG_INF, 0.0]), 3),
    ("K4_k3_all_unmasked", torch.tensor([1.0, NEG_INF, 0.0, -1.0]), 3),
]


@pytest.mark.parametrize("name,logits,k", TOPK_CASES, ids=[c[0] for c in TOPK_CASES])
def test_gumbel_topk_ordered_tuples_plackett_luce(gen, stats, name, logits, k, kernel_path):
    # 1e6 draws. Chi-square of the full ordered-tuple distribution against the exact
    # Plackett-Luce probabilities (enumeration); tuples with a repeat or a masked category have
    # probability 0 and must never occur. alpha = 1e-4 per case.
    n, K = 1_000_000, logits.numel()
    idx = gumbel_topk(logits.expand(n, K), k, generator=gen(200)).numpy()  # (n, k)
    assert idx.shape == (n, k)
    probs = _probs(logits)
    exact = _plackett_luce(probs, k)
    counts = np.bincount(_code(idx, K), minlength=K**k)
    stats.chisquare(counts, exact, 1e-4, name)

    # Marginals derived from the same enumeration.
    # First position ~ Categorical(probs): chi-square, alpha = 1e-4.
    stats.chisquare(np.bincount(idx[:, 0], minlength=K), probs, 1e-4, f"{name} first")
    # Inclusion P(i in the k drawn): exact binomial per unmasked category whose inclusion
    # probability is < 1, Bonferroni alpha = 1e-4 / K each.
    tuples = np.array(list(itertools.product(range(K), repeat=k)))  # row r has code r
    for i in range(K):
        p_incl = float(exact[(tuples == i).any(1)].sum())
        n_incl = int((idx == i).any(1).sum())
        if p_incl == 0.0:
            assert n_incl == 0
        elif p_incl >= 1.0 - 1e-12:
            assert n_incl == n
        else:
            stats.binom_two_sided(n_incl, n, p_incl, 1e-4 / K, f"{name} inclusion of {i}")


def test_gumbel_topk_distinct_and_ordered_by_perturbed_logits(gen):
    logits = torch.randn(200, 8, generator=gen(0))
    noise = gumbel_noise((200, 8), generator=gen(1))
    idx = gumbel_topk(logits, 5, noise=noise)
    assert torch.equal(idx, (logits + noise).topk(5, dim=-1).indices)
    assert idx.dtype == torch.long
    assert all(len(set(row)) == 5 for row in idx.tolist())
    # k = 1 is gumbel_max
    assert torch.equal(gumbel_topk(logits, 1, noise=noise)[:, 0], gumbel_max(logits, noise=noise))


def test_gumbel_topk_other_dim(gen, stats, kernel_path):
    # along dim=0 of a (K, M) tensor: first position per column ~ softmax; alpha = 1e-4 per column
    base = torch.tensor([[0.0, 1.0], [1.0, NEG_INF], [-1.0, 0.0], [0.5, 0.5]])  # (K=4, M=2)
    n = 200_000
    idx = gumbel_topk(base.unsqueeze(0).expand(n, 4, 2), 2, dim=1, generator=gen(201))
    assert idx.shape == (n, 2, 2)
    for m in range(2):
        stats.chisquare(_counts(idx[:, 0, m], 4), _probs(base[:, m]), 1e-4, f"column {m}")
        assert not bool((idx[:, :, m] == 1).any()) or m == 0  # masked in column 1


def test_gumbel_topk_k_too_large():
    with pytest.raises(ValueError, match="k"):
        gumbel_topk(torch.zeros(4), 5)
    with pytest.raises(ValueError, match="unmasked"):
        gumbel_topk(torch.tensor([0.0, NEG_INF, 1.0, NEG_INF]), 3)
    with pytest.raises(ValueError, match="k"):
        gumbel_topk(torch.zeros(4), 0)


# ----------------------------------------------------------------------------------------------
# gumbel_softmax: distribution of the hard sample, limits in tau
# ----------------------------------------------------------------------------------------------


def test_hard_samples_mean_matches_softmax(gen, stats, kernel_path):
    # mean of 1e6 one-hot samples = category frequencies; chi-square vs softmax, alpha = 1e-4
    logits = torch.tensor([0.4, -1.0, NEG_INF, 2.0, 0.0, 1.2])
    n = 1_000_000
    y = gumbel_softmax(logits.expand(n, 6), tau=0.5, hard=True, generator=gen(300))
    counts = y.sum(0).double().numpy()
    assert counts.sum() == n
    stats.chisquare(counts, _probs(logits), 1e-4, "hard mean")


def test_gumbel_softmax_sample_index_is_exact_categorical(gen, stats, kernel_path):
    # the index of gumbel_softmax_sample; 1e6 draws, alpha = 1e-4
    logits = torch.tensor([1e-5, 0.3, 0.6, 0.1 - 1e-5], dtype=torch.float64).log()
    s = gumbel_softmax_sample(logits.expand(1_000_000, 4), tau=2.0, generator=gen(301))
    stats.chisquare(_counts(s.indices, 4), _probs(logits), 1e-4, "index")


@pytest.mark.parametrize("masked", [False, True])
def test_tau_sweep_limits(gen, stats, masked, kernel_path):
    # 2e4 draws of the noise, shared by every tau (common random numbers). For fixed noise the
    # largest entry of softmax(z / tau) decreases and the entropy increases with tau (entropy of
    # a Gibbs distribution grows with temperature), so the trends are checked per sample and
    # hence for the means; the limits tau -> 0 (one-hot) and tau -> inf (uniform over the
    # unmasked categories) are checked numerically. No test here fails by chance beyond the
    # noise being seeded.
    logits = torch.tensor([1.0, 0.5, 0.0, -0.5, -1.0], dtype=torch.float64)
    if masked:
        logits[2] = NEG_INF
    k_eff = int(torch.isfinite(logits).sum())
    n = 20_000
    noise = gumbel_noise((n, 5), dtype=torch.float64, generator=gen(302))
    z = logits.expand(n, 5)
    taus = [10.0**e for e in np.arange(-3.0, 3.01, 0.5)]
    max_entry, entropy = [], []
    for tau in taus:
        y = gumbel_softmax(z, tau, noise=noise)
        assert bool(torch.isfinite(y).all())
        if masked:
            assert bool((y[:, 2] == 0).all())
        max_entry.append(y.max(-1).values)
        entropy.append(stats.entropy(y))
    mx, ent = torch.stack(max_entry), torch.stack(entropy)  # (T, n)
    assert bool((mx[1:] <= mx[:-1] + 1e-12).all())  # per sample, non-increasing in tau
    assert bool((ent[1:] >= ent[:-1] - 1e-12).all())  # per sample, non-decreasing in tau
    mean_mx, mean_ent = mx.mean(1), ent.mean(1)
    assert bool((mean_mx[1:] < mean_mx[:-1]).all())  # strictly, for the means
    assert bool((mean_ent[1:] > mean_ent[:-1]).all())
    # tau = 1e-3: one-hot up to e^{-gap / tau}; the argmax is the Gumbel-Max index
    assert float(mean_mx[0]) > 0.999
    y0 = gumbel_softmax(z, taus[0], noise=noise)
    hard = gumbel_softmax(z, taus[0], hard=True, noise=noise)
    assert torch.equal(y0.argmax(-1), hard.argmax(-1))
    # tau = 1e3: within (z_max - z_min) / tau of uniform in log space
    y_last = gumbel_softmax(z, taus[-1], noise=noise)
    assert float(mean_ent[-1]) > math.log(k_eff) - 1e-4
    assert float(mean_ent[-1]) <= math.log(k_eff) + 1e-12
    live = y_last[:, torch.isfinite(logits)]
    assert float((live * k_eff).log().abs().max()) < 0.05


# ----------------------------------------------------------------------------------------------
# gumbel_softmax: exact one-hot, dtypes, dims
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_hard_forward_is_exactly_one_hot(gen, dtype, kernel_path):
    logits = (torch.randn(2000, 7, generator=gen(0)) * 3).to(dtype)
    logits[::3, 2] = NEG_INF
    logits.requires_grad_(True)
    s = gumbel_softmax_sample(logits, tau=0.3, generator=gen(1))
    y = gumbel_softmax(logits, tau=0.3, hard=True, generator=gen(1))
    for h in (s.hard, y):
        assert h.dtype == dtype and h.shape == logits.shape
        assert bool(((h == 0) | (h == 1)).all())
        assert bool((h.sum(-1) == 1).all())
        assert bool((h.argmax(-1) == s.indices).all())
        assert h.requires_grad
    assert torch.equal(y, s.hard)
    assert not bool((s.indices[::3] == 2).any())


@pytest.mark.parametrize("dtype", HALF_DTYPES)
def test_half_logits_are_computed_in_float32(gen, dtype):
    # documented: float32 noise and arithmetic internally, the logits' dtype out
    logits = torch.randn(100, 9, generator=gen(0)).to(dtype)
    noise = gumbel_noise((100, 9), generator=gen(1))  # float32
    y = gumbel_softmax(logits, 0.7, noise=noise)
    assert y.dtype == dtype
    assert torch.equal(y, gumbel_softmax(logits.float(), 0.7, noise=noise).to(dtype))


@pytest.mark.parametrize("hard", [False, True])
def test_dim1_of_4d_equals_movedim(gen, hard, kernel_path):
    logits = torch.randn(2, 6, 3, 4, generator=gen(0), dtype=torch.float64)
    logits[0, 1, 2, 3] = NEG_INF
    noise = gumbel_noise(logits.shape, dtype=torch.float64, generator=gen(1))
    y = gumbel_softmax(logits, 0.5, hard=hard, dim=1, noise=noise)
    ref = gumbel_softmax(
        logits.movedim(1, -1), 0.5, hard=hard, dim=-1, noise=noise.movedim(1, -1)
    ).movedim(-1, 1)
    assert y.shape == logits.shape
    torch.testing.assert_close(y, ref, rtol=1e-14, atol=1e-15)
    if hard:
        assert torch.equal(y, ref)
    s = gumbel_softmax_sample(logits, 0.5, dim=1, noise=noise)
    assert s.indices.shape == (2, 3, 4)
    assert torch.equal(s.indices, (logits + noise).argmax(1))
    assert torch.equal(gumbel_max(logits, dim=1, noise=noise), s.indices)


def _layouts(x: torch.Tensor) -> dict[str, torch.Tensor]:
    """The same logical (B, K) values in several memory layouts."""
    t = x.t().contiguous().t()  # column-major
    wide = torch.zeros(x.shape[0], 2 * x.shape[1], dtype=x.dtype)
    wide[:, ::2] = x  # stride 2 along K
    return {"contiguous": x, "transposed": t, "strided": wide[:, ::2]}


@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_noncontiguous_inputs_match_the_reference(gen, layout):
    # with given noise every output equals the float64 reference formula whatever the layout
    logits = torch.randn(6, 5, generator=gen(0), dtype=torch.float64)
    logits[2, 1] = NEG_INF
    noise = gumbel_noise((6, 5), dtype=torch.float64, generator=gen(1))
    lg, nz = _layouts(logits)[layout], _layouts(noise)[layout]
    assert not lg.is_contiguous() and torch.equal(lg, logits)
    z = logits + noise
    ref_soft = torch.softmax((z - z.amax(-1, keepdim=True)) / 0.3, -1)
    tau_t = torch.full((6, 1), 0.3, dtype=torch.float64)
    for tau in (0.3, 2.0, tau_t):
        ref = torch.softmax((z - z.amax(-1, keepdim=True)) / tau, -1)
        torch.testing.assert_close(gumbel_softmax(lg, tau, noise=nz), ref, rtol=1e-12, atol=1e-15)
    s = gumbel_softmax_sample(lg, 0.3, noise=nz)
    torch.testing.assert_close(s.soft, ref_soft, rtol=1e-12, atol=1e-15)
    assert torch.equal(s.indices, z.argmax(-1))
    assert torch.equal(gumbel_max(lg, noise=nz), z.argmax(-1))
    assert torch.equal(gumbel_topk(lg, 3, noise=nz), z.topk(3, -1).indices)
    # and with autograd on
    lg_req = lg.clone(memory_format=torch.preserve_format).requires_grad_(True)
    y = gumbel_softmax(lg_req, 0.3, noise=nz)
    torch.testing.assert_close(y, ref_soft, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_noise_follows_logical_order_not_memory_layout(gen, layout, kernel_path):
    # the same seed gives the same sample for the same logical logits, whatever their layout
    logits = torch.randn(64, 7, generator=gen(0))
    lg = _layouts(logits)[layout]
    assert torch.equal(gumbel_max(lg, generator=gen(1)), gumbel_max(logits, generator=gen(1)))
    assert torch.equal(
        gumbel_topk(lg, 2, generator=gen(1)), gumbel_topk(logits, 2, generator=gen(1))
    )
    for hard in (False, True):
        a = gumbel_softmax(lg, 0.5, hard=hard, generator=gen(1))
        b = gumbel_softmax(logits, 0.5, hard=hard, generator=gen(1))
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_sample_views_are_consistent(gen):
    logits = torch.randn(64, 5, generator=gen(0))
    s = gumbel_softmax_sample(logits, 0.8, generator=gen(1))
    assert isinstance(s, GumbelSoftmaxSample)
    assert s.indices.dtype == torch.long and s.indices.shape == (64,)
    assert torch.equal(s.hard, tF.one_hot(s.indices, 5).float())
    assert torch.equal(s.soft, gumbel_softmax(logits, 0.8, generator=gen(1)))
    assert torch.equal(s.soft.argmax(-1), s.indices)
    torch.testing.assert_close(s.soft.sum(-1), torch.ones(64))


def test_per_row_tensor_tau_equals_scalar_calls(gen):
    logits = torch.randn(4, 6, generator=gen(0), dtype=torch.float64)
    noise = gumbel_noise((4, 6), dtype=torch.float64, generator=gen(1))
    taus = torch.tensor([[0.1], [0.5], [2.0], [30.0]], dtype=torch.float64)
    y = gumbel_softmax(logits, taus, noise=noise)
    for r in range(4):
        ref = gumbel_softmax(logits[r], float(taus[r]), noise=noise[r])
        torch.testing.assert_close(y[r], ref, rtol=1e-14, atol=1e-15)


# ----------------------------------------------------------------------------------------------
# Gradients
# ----------------------------------------------------------------------------------------------


def _masked(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return logits.masked_fill(mask, NEG_INF)


@pytest.mark.parametrize("tensor_tau", [False, True])
def test_hard_gradient_equals_soft_gradient(gen, tensor_tau, kernel_path):
    base = torch.randn(16, 7, generator=gen(0), dtype=torch.float64)
    mask = torch.zeros(16, 7, dtype=torch.bool)
    mask[::2, 4] = True
    noise = gumbel_noise((16, 7), dtype=torch.float64, generator=gen(1))
    w = torch.randn(16, 7, generator=gen(2), dtype=torch.float64)

    def grads(hard):
        logits = base.clone().requires_grad_(True)
        tau = torch.tensor(0.6, dtype=torch.float64, requires_grad=True) if tensor_tau else 0.6
        y = gumbel_softmax(_masked(logits, mask), tau, hard=hard, noise=noise)
        inputs = [logits, tau] if tensor_tau else [logits]
        return torch.autograd.grad((w * y).sum(), inputs)

    for gh, gs in zip(grads(True), grads(False), strict=True):
        assert torch.isfinite(gh).all()
        assert torch.equal(gh, gs)


def test_gradcheck_soft_path_logits_and_tensor_tau(gen, kernel_path):
    # float64 gradcheck of softmax((l + g) / tau) w.r.t. the logits and a tensor tau, with a
    # masked category (the masked logit is filled inside, so its gradient must be 0)
    logits = torch.randn(3, 5, generator=gen(0), dtype=torch.float64, requires_grad=True)
    tau = torch.tensor([[0.7], [1.3], [0.2]], dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[1, 3] = True
    noise = gumbel_noise((3, 5), dtype=torch.float64, generator=gen(1))

    def f(lg, t):
        return gumbel_softmax(_masked(lg, mask), t, noise=noise)

    assert torch.autograd.gradcheck(f, (logits, tau))
    assert torch.autograd.gradgradcheck(f, (logits, tau))


@pytest.mark.parametrize("tau_kind", ["float", "tensor_no_grad"])
@pytest.mark.parametrize("dim", [-1, 0])
def test_gradcheck_logits_only(gen, tau_kind, dim, kernel_path):
    # float64 gradcheck (and gradgradcheck) of the path taken when only the logits need a
    # gradient (tau a number, or a tensor without grad), with a masked category
    logits = torch.randn(3, 5, generator=gen(0), dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[1, 3] = True
    noise = gumbel_noise((3, 5), dtype=torch.float64, generator=gen(1))
    if tau_kind == "float":
        tau: float | torch.Tensor = 0.4
    else:  # one temperature per slice along dim
        tau = torch.tensor(
            [0.7, 1.3, 0.2] if dim == -1 else [0.7, 1.3, 0.2, 3.0, 0.5], dtype=torch.float64
        )
        tau = tau.unsqueeze(-1) if dim == -1 else tau.unsqueeze(0)

    def f(lg):
        return gumbel_softmax(_masked(lg, mask), tau, dim=dim, noise=noise)

    ref = torch.softmax((_masked(logits, mask) + noise) / tau, dim=dim)
    torch.testing.assert_close(f(logits), ref, rtol=1e-12, atol=1e-15)
    assert torch.autograd.gradcheck(f, (logits,))
    assert torch.autograd.gradgradcheck(f, (logits,))


def test_straight_through_custom_backward(gen):
    soft = torch.rand(4, 6, generator=gen(0), dtype=torch.float64, requires_grad=True)
    hard = tF.one_hot(soft.detach().argmax(-1), 6).double()
    y = straight_through(hard, soft)
    assert torch.equal(y, hard)  # forward: the hard value, bit for bit
    grad_out = torch.randn(4, 6, generator=gen(1), dtype=torch.float64)
    (g,) = torch.autograd.grad(y, soft, grad_out)
    assert torch.equal(g, grad_out)  # backward: the identity to `soft`
    # gradcheck is meaningful where forward == soft: straight_through(s, s) is the identity
    # function of s, so the numerical Jacobian is I and must match the custom backward
    assert torch.autograd.gradcheck(lambda s: straight_through(s, s), (soft,))
    assert torch.autograd.gradgradcheck(lambda s: straight_through(s, s), (soft,))
    # hard is converted to soft's dtype, never receives a gradient, and shapes must agree
    y16 = straight_through(hard.long(), soft.float())
    assert y16.dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        straight_through(hard[:, :5], soft)


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_learnable_tau_gets_finite_gradient_with_masks(gen, hard, dtype):
    logits = (torch.randn(32, 6, generator=gen(0)) * 4).to(dtype)
    logits[:, 1] = NEG_INF
    logits[::4, 5] = NEG_INF
    logits.requires_grad_(True)
    log_tau = torch.nn.Parameter(torch.tensor(-1.0))
    w = torch.randn(32, 6, generator=gen(2))
    y = gumbel_softmax(logits, log_tau.exp(), hard=hard, generator=gen(1))
    (w * y.float()).sum().backward()
    assert log_tau.grad is not None and bool(torch.isfinite(log_tau.grad))
    assert float(log_tau.grad) != 0.0
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())
    assert bool((logits.grad[:, 1] == 0).all())


def test_tau_gradient_matches_finite_difference_with_masks(gen):
    logits = torch.tensor(
        [[0.2, NEG_INF, 1.0, -0.5], [NEG_INF, 0.0, 0.3, NEG_INF]], dtype=torch.float64
    )
    noise = gumbel_noise((2, 4), dtype=torch.float64, generator=gen(0))
    tau = torch.tensor(0.9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: gumbel_softmax(logits, t, noise=noise), (tau,))


# ----------------------------------------------------------------------------------------------
# Agreement with torch.nn.functional.gumbel_softmax
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("dim", [-1, 1])
def test_matches_torch_gumbel_softmax_given_the_same_noise(hard, dim, kernel_path):
    # torch draws its noise as -empty_like(logits).exponential_().log() (see
    # torch/nn/functional.py); we reproduce that draw from the same seed and pass it as `noise`
    base = torch.randn(8, 5, 3, generator=torch.Generator().manual_seed(0))
    tau = 0.7

    def run(fn):
        logits = base.clone().requires_grad_(True)
        torch.manual_seed(1234)
        y = fn(logits)
        w = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
        (g,) = torch.autograd.grad((w * y).sum(), logits)
        return y.detach(), g

    y_ref, g_ref = run(lambda lg: tF.gumbel_softmax(lg, tau=tau, hard=hard, dim=dim))
    torch.manual_seed(1234)
    noise = (
        -torch.empty_like(base, memory_format=torch.legacy_contiguous_format).exponential_().log()
    )
    assert bool(torch.isfinite(noise).all())
    y, g = run(lambda lg: gumbel_softmax(lg, tau, hard=hard, dim=dim, noise=noise))
    if hard:
        # torch's forward is hard - soft.detach() + soft (one-hot up to rounding); ours is exact
        assert torch.equal(y.argmax(dim), y_ref.argmax(dim))
        torch.testing.assert_close(y, y_ref, rtol=0, atol=1e-6)
        assert bool(((y == 0) | (y == 1)).all())
    else:
        torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------------------------
# Reproducibility
# ----------------------------------------------------------------------------------------------

SAMPLERS = {
    "gumbel_max": lambda lg, g: gumbel_max(lg, generator=g),
    "gumbel_topk": lambda lg, g: gumbel_topk(lg, 3, generator=g),
    "gumbel_softmax": lambda lg, g: gumbel_softmax(lg, 0.5, generator=g),
    "gumbel_softmax_hard": lambda lg, g: gumbel_softmax(lg, 0.5, hard=True, generator=g),
    "gumbel_softmax_sample": lambda lg, g: torch.cat(
        [t.reshape(-1).double() for t in gumbel_softmax_sample(lg, 0.5, generator=g)]
    ),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_reproducible_with_generator(gen, name, dtype, kernel_path):
    fn = SAMPLERS[name]
    logits = torch.randn(200, 8, generator=gen(0)).to(dtype)
    state = torch.get_rng_state()
    a, b, c = fn(logits, gen(5)), fn(logits, gen(5)), fn(logits, gen(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(state, torch.get_rng_state())  # a generator leaves the global RNG alone


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_samplers_draw_gumbel_noise(gen, dtype, kernel_path):
    # documented: every sampler perturbs the logits with gumbel_noise in the compute dtype
    # (float32, float64 for float64 logits); the same seed gives the same draw
    logits = (torch.randn(300, 7, generator=gen(0)) * 3).to(dtype)
    logits[::5, 3] = NEG_INF
    cdt = torch.float64 if dtype == torch.float64 else torch.float32
    z = logits.to(cdt) + gumbel_noise(logits.shape, dtype=cdt, generator=gen(1))
    assert torch.equal(gumbel_max(logits, generator=gen(1)), z.argmax(-1))
    assert torch.equal(gumbel_topk(logits, 3, generator=gen(1)), z.topk(3, -1).indices)
    s = gumbel_softmax_sample(logits, 0.5, generator=gen(1))
    assert torch.equal(s.indices, z.argmax(-1))
    ref = torch.softmax((z - z.amax(-1, keepdim=True)) / 0.5, -1)
    tol = 2 * torch.finfo(dtype).eps
    torch.testing.assert_close(s.soft.to(cdt), ref, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------------------------
# Docstring examples of the core modules run and hold
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["noise", "functional", "nn", "schedules"])
def test_docstring_examples(module):
    import doctest
    import importlib

    mod = importlib.import_module(f"gumbelkit.{module}")
    result = doctest.testmod(mod, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


# ----------------------------------------------------------------------------------------------
# shift invariance
# ----------------------------------------------------------------------------------------------

SHIFT_BASE = torch.tensor([0.0, 0.0, 1.0, -2.0])  # two equal logits; integers stay exact below


@pytest.mark.parametrize("offset", [1e4, 1e6, 1e7])
def test_samplers_are_shift_invariant_in_float32(gen, stats, offset, kernel_path):
    # logits + 1e6 in float32 has an ulp of 0.0625 (1.0 at 1e7): perturbing the raw logits
    # rounds the noise to that grid, and ties between the two equal logits go to the first
    # (P(index 0) = 0.507 at 1e6, far more at 1e7). The samplers subtract the per-slice max
    # first. 2e5 draws per sampler, chi-square alpha = 1e-4 each.
    logits = (SHIFT_BASE.double() + offset).float()
    assert torch.equal(logits.double() - offset, SHIFT_BASE.double())  # exactly representable
    n = 200_000
    batch = logits.expand(n, 4)
    probs = _probs(SHIFT_BASE)
    stats.chisquare(_counts(gumbel_max(batch, generator=gen(7)), 4), probs, 1e-4, f"gumbel_max {offset:g}")
    s = gumbel_softmax_sample(batch, 0.5, generator=gen(8))
    stats.chisquare(_counts(s.indices, 4), probs, 1e-4, f"gumbel_softmax_sample {offset:g}")
    first = gumbel_topk(batch, 2, generator=gen(9))[:, 0]
    stats.chisquare(_counts(first, 4), probs, 1e-4, f"gumbel_topk {offset:g}")
    # the soft sample does not move with the offset either (same noise, float32 rounding only)
    noise = gumbel_noise((8, 4), generator=gen(10))
    y0 = gumbel_softmax(SHIFT_BASE.expand(8, 4), 0.5, noise=noise)
    torch.testing.assert_close(gumbel_softmax(logits.expand(8, 4), 0.5, noise=noise), y0, rtol=1e-5, atol=1e-6)


def test_half_precision_samplers_are_shift_invariant(gen, stats, kernel_path):
    # bfloat16 logits near 1e6 (spacing 4096): two equal logits and a third 4096 below, so
    # P = (1/2, 1/2, 0) up to e^-4096; computed in float32 after the max-shift. alpha = 1e-4.
    logits = torch.tensor([1e6, 1e6, 1e6 - 4096.0]).to(torch.bfloat16)
    assert logits[0] == logits[1] and logits[2] < logits[0]
    n = 200_000
    idx = gumbel_max(logits.expand(n, 3), generator=gen(11))
    stats.chisquare(_counts(idx, 3)[:2], [0.5, 0.5], 1e-4, "bfloat16 at 1e6")
    assert _counts(idx, 3)[2] == 0
