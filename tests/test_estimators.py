"""Tests of gumbelkit.estimators: registry, exact sampling, known identities, gradients, numerics.

Statistical tests are seeded; each states how often it would fail by chance for a correct
implementation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import stats

import gumbelkit.diagnostics as D
from gumbelkit import estimators as E
from gumbelkit._autograd import MixtureST
from gumbelkit.functional import gumbel_softmax
from gumbelkit.noise import conditional_gumbel, exponential_noise, gumbel_noise

ALL = E.estimator_names()
PATHWISE = E.estimator_names("pathwise")
NEG_INF = -float("inf")
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _tau(name: str) -> float:
    return 1.5 if name == "reinmax" else 0.7


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --------------------------------------------------------------------------- registry


def test_names_cover_the_issue() -> None:
    assert set(ALL) == {"st", "gs", "st_gs", "gumbel_rao", "gst", "reinmax", "decoupled_st", "reinforce", "indecater"}
    assert set(PATHWISE) == set(ALL) - {"reinforce", "indecater"}
    assert E.estimator_names("score") == ("reinforce", "indecater")


@pytest.mark.parametrize("name", PATHWISE)
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_sample_shapes_any_dim(name: str, dim: int) -> None:
    x = torch.randn(4, 5, 3, requires_grad=True)
    s = E.sample(x, name, _tau(name), dim, generator=_gen())
    assert isinstance(s, E.EstimatorSample)
    assert s._fields == ("output", "hard", "soft", "indices")
    assert s.output.shape == x.shape and s.hard.shape == x.shape and s.soft.shape == x.shape
    expected = list(x.shape)
    del expected[dim]
    assert list(s.indices.shape) == expected
    w = torch.randn_like(x)
    (s.output * w).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    # `hard` is the exact one-hot for every estimator, gs included; `output` carries the gradient:
    # the relaxed sample for gs (hard has no gradient path there), hard itself for the others
    assert torch.equal(s.hard, torch.nn.functional.one_hot(s.indices, x.shape[dim]).movedim(-1, dim).float())
    if name == "gs":
        assert s.output is s.soft and not s.hard.requires_grad
    else:
        assert s.output is s.hard and s.hard.requires_grad


@pytest.mark.parametrize("name", PATHWISE)
@pytest.mark.parametrize("dim", [0, 1])
def test_any_dim_equals_the_last_dim_after_movedim(name: str, dim: int) -> None:
    # the shape test above only checks shapes and finiteness; here the sample, the relaxation and
    # the gradient along `dim` must be those along the last dim of the moved tensor, same noise
    x = torch.randn(4, 5, 3, dtype=torch.float64, generator=_gen(1))
    noise = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(2))
    w = torch.randn(x.shape, dtype=torch.float64, generator=_gen(3))
    out = []
    for d, move in ((dim, lambda t: t.clone()), (-1, lambda t: t.movedim(dim, -1).contiguous())):
        xx = move(x).requires_grad_(True)
        s = E.sample(xx, name, _tau(name), d, noise=move(noise), generator=_gen(4))
        ((s.output * move(w)).sum() + (s.soft * move(w)).sum()).backward()
        out.append((s, xx.grad))
    (a, ga), (b, gb) = out
    assert torch.equal(a.indices, b.indices) and torch.equal(a.hard.movedim(dim, -1), b.hard)
    torch.testing.assert_close(a.soft.movedim(dim, -1), b.soft, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ga.movedim(dim, -1), gb, rtol=1e-12, atol=1e-14)


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="gumbel_rao.*reinmax"):
        E.sample(torch.zeros(3), "gumbel-rao")
    with pytest.raises(ValueError, match="unknown estimator"):
        E.Estimator("nope")
    with pytest.raises(ValueError, match="unknown estimator"):
        E.spec("")


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("st", {"k": 3}, "allowed: noise"),
        ("gumbel_rao", {"gap": 1.0}, "allowed: k, noise"),
        ("gumbel_rao", {"k": 0}, "k must be an int >= 1"),
        ("gumbel_rao", {"k": 2.5}, "k must be an int >= 1"),
        ("gumbel_rao", {"k": True}, "k must be an int >= 1"),
        ("gst", {"gap": "1.0"}, "gap must be"),
        ("gst", {"gap": -1.0}, "gap must be"),
        ("gst", {"gap": float("inf")}, "gap must be"),
        ("gst", {"gap": 0}, "gap must be"),
        ("reinmax", {"noise": [1.0]}, "noise must be"),
    ],
)
def test_bad_options_raise(name: str, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        E.sample(torch.zeros(2, 3), name, 1.0, **options)


@pytest.mark.parametrize("tau", [0.5, 0.999, 0.0, -1.0, float("nan"), float("inf")])
def test_reinmax_requires_tau_at_least_one(tau: float) -> None:
    with pytest.raises(ValueError, match="tau"):
        E.sample(torch.zeros(2, 3), "reinmax", tau)
    with pytest.raises(ValueError, match="tau"):
        E.Estimator("reinmax", tau=tau)


def test_reinforce_through_sample_points_to_surrogate() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        E.sample(torch.zeros(2, 3), "reinforce")
    with pytest.raises(ValueError, match="n_samples must be an int >= 2"):
        E.reinforce_loo(torch.zeros(2, 3), lambda h: h.sum((-1, -2)), n_samples=1)
    with pytest.raises(ValueError, match="f must return"):
        E.reinforce_loo(torch.zeros(2, 3), lambda h: h.sum(), n_samples=3)
    with pytest.raises(ValueError, match="allowed: n_samples"):
        E.surrogate(torch.zeros(2, 3), lambda h: h.sum((-1, -2)), "reinforce", k=3)


def test_name_or_callable() -> None:
    def mine(logits, tau, dim, *, generator=None):
        return E.st(logits, tau, dim, generator=generator)

    assert E.get_estimator(mine) is mine
    assert E.get_estimator("st") is E.st
    x = torch.randn(3, 4, generator=_gen(4))
    a = E.sample(x, mine, 1.0, generator=_gen(5))
    b = E.sample(x, "st", 1.0, generator=_gen(5))
    # the callable is dispatched to, with the same arguments and generator stream as the name
    assert torch.equal(a.indices, b.indices) and torch.equal(a.hard, b.hard) and torch.equal(a.soft, b.soft)


def test_modules() -> None:
    m = E.Estimator("gumbel_rao", tau=0.5, dim=1, k=4)
    assert "gumbel_rao" in repr(m) and "k=4" in repr(m)
    x = torch.randn(2, 6, 3, requires_grad=True)
    s = m(x, tau=0.3, generator=_gen())
    assert s.hard.shape == x.shape and s.indices.shape == (2, 3)
    # the module is `sample` with its stored name, dim and options; the call's tau overrides
    ref = E.sample(x, "gumbel_rao", 0.3, 1, generator=_gen(), k=4)
    assert torch.equal(s.indices, ref.indices) and torch.equal(s.soft, ref.soft)
    assert torch.equal(m(x, generator=_gen()).soft, E.sample(x, "gumbel_rao", 0.5, 1, generator=_gen(), k=4).soft)
    assert not torch.equal(m(x, generator=_gen()).soft, s.soft)  # the default tau 0.5 is used
    s.hard.sum().backward()
    with pytest.raises(ValueError, match="allowed"):
        E.Estimator("st", gap=1.0)
    with pytest.raises(ValueError, match="score-function"):
        E.Estimator("reinforce")
    r = E.ReinforceLOO(n_samples=3, dim=0)
    out = r(torch.zeros(4, 2, requires_grad=True), lambda h: h[:, 0].sum(-1), generator=_gen(1))
    assert out.hard.shape == (3, 4, 2) and out.loss.shape == ()
    ref = E.reinforce_loo(torch.zeros(4, 2), lambda h: h[:, 0].sum(-1), 3, dim=0, generator=_gen(1))
    assert torch.equal(out.indices, ref.indices) and torch.equal(out.loss, ref.loss)
    with pytest.raises(ValueError):
        E.ReinforceLOO(n_samples=1)


# --------------------------------------------------------------------------- exact sampling

# chi-square goodness of fit of 1e5 sampled indices against softmax(logits), masked category
# included (it must never appear). Each test fails by chance with probability 1e-4.
CHI_N = 100_000
CHI_LOGITS = torch.tensor([1.0, -0.5, NEG_INF, 0.3, -2.0, 2.2])


def _chi_square(index: torch.Tensor, logits: torch.Tensor) -> float:
    probs = torch.softmax(logits.double(), -1)
    counts = torch.bincount(index.reshape(-1), minlength=logits.numel()).double()
    allowed = probs > 0
    assert counts[~allowed].sum() == 0, "a masked category was sampled"
    return float(stats.chisquare(counts[allowed].numpy(), probs[allowed].numpy() * counts.sum().item()).pvalue)


@pytest.mark.parametrize("name", PATHWISE)
def test_forward_is_an_exact_categorical_sample(name: str, kernel_path) -> None:
    # categories along dim 0 (not last), to exercise the movedim path
    logits = CHI_LOGITS[:, None].expand(6, CHI_N).contiguous()
    opts = {"k": 2} if name == "gumbel_rao" else {}  # the sample does not depend on k
    s = E.sample(logits, name, _tau(name), 0, generator=_gen(11), **opts)
    assert _chi_square(s.indices, CHI_LOGITS) > 1e-4


def test_reinforce_samples_are_exact() -> None:
    out = E.reinforce_loo(CHI_LOGITS.expand(CHI_N // 4, 6), lambda h: h[..., 0].sum(-1), 4, generator=_gen(12))
    assert out.indices.shape == (4, CHI_N // 4)
    assert _chi_square(out.indices, CHI_LOGITS) > 1e-4


# --------------------------------------------------------------------------- identities


def _objective(w: torch.Tensor):
    def f(h: torch.Tensor) -> torch.Tensor:
        return (torch.tanh(h * w) ** 2).sum() + (h * w).sum() ** 2

    return f


def test_gumbel_rao_k1_is_st_gs_on_the_same_draw() -> None:
    x = torch.randn(3, 5, 4, dtype=torch.float64)
    x[0, 2, 1] = NEG_INF
    f = _objective(torch.randn(3, 5, 4, dtype=torch.float64))
    grads, samples = [], []
    for name, opts in (("st_gs", {}), ("gumbel_rao", {"k": 1})):
        xx = x.clone().requires_grad_(True)
        s = E.sample(xx, name, 0.4, 1, generator=_gen(3), **opts)
        f(s.hard).backward()
        grads.append(xx.grad)
        samples.append(s)
    assert torch.equal(samples[0].indices, samples[1].indices)
    assert torch.equal(samples[0].hard, samples[1].hard)
    torch.testing.assert_close(samples[0].soft, samples[1].soft, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_st_gs_backward_is_the_soft_relaxation_gradient_at_the_same_noise() -> None:
    x = torch.randn(6, 5, dtype=torch.float64)
    x[2, 0] = NEG_INF
    noise = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(4))
    f = _objective(torch.randn(6, 5, dtype=torch.float64))
    xx = x.clone().requires_grad_(True)
    s = E.sample(xx, "st_gs", 0.6, noise=noise)
    f(s.hard).backward()
    # reference: the soft relaxation at the same noise, fed df/dD evaluated at the one-hot
    hard = s.hard.detach().clone().requires_grad_(True)
    (g_hard,) = torch.autograd.grad(f(hard), hard)
    xr = x.clone().requires_grad_(True)
    (gumbel_softmax(xr, 0.6, noise=noise) * g_hard).sum().backward()
    torch.testing.assert_close(xx.grad, xr.grad, rtol=1e-12, atol=1e-14)


def _qp():
    i = torch.arange(3, dtype=torch.float64)
    q = torch.exp(-2.0 * (i[:, None] - i[None, :]).abs())
    c = torch.full((3,), 1.0 / 3.0, dtype=torch.float64)
    return lambda z: (((z - c) @ q) * (z - c)).sum(-1)


def test_reinforce_is_unbiased() -> None:
    # mean of 20000 REINFORCE-LOO estimates vs the enumerated gradient, coordinate-wise z-test
    # at |z| < 5: for 12 coordinates a correct estimator fails with probability < 1e-5
    logits = torch.tensor([[0.3, -1.0, 0.8], [NEG_INF, 0.2, -0.4], [1.5, 0.0, -1.5], [0.0, 0.0, 0.0]],
                          dtype=torch.float64)
    target = torch.randn(4, 3, dtype=torch.float64, generator=_gen(6))

    def f(z: torch.Tensor) -> torch.Tensor:  # (M, 4, 3) -> (M,), nonlinear
        return torch.sin((z * target).sum((-2, -1))) + (z[:, 0] * z[:, 2]).sum(-1)

    exact = D.exact_gradient(logits, f)
    g = D.gradient_draws(logits, f, "reinforce", n_draws=20000, seed=1, chunk=5000, n_samples=4)
    mean, se = g.mean(0), g.std(0) / math.sqrt(g.shape[0])
    free = se > 0  # masked logits have exactly zero gradient in every draw
    assert torch.equal(g[:, 1, 0], torch.zeros(20000, dtype=torch.float64))
    z = (mean - exact.grad)[free] / se[free]
    assert z.abs().max() < 5.0, z


def test_gumbel_rao_variance_decreases_with_k() -> None:
    # same seed -> the same samples D for every k (common random numbers); the measured
    # variances are ~1.2, ~0.50, ~0.42: margins of 60% and 15% against a sampling error of the
    # variance estimates of about 3% at 6000 draws (a > 5 sigma event for the closest pair)
    f = _qp()
    logits = torch.tensor([0.5, 0.0, -0.5], dtype=torch.float64)
    ex = D.exact_gradient(logits, f)
    var = [
        D.estimator_stats(logits, f, "gumbel_rao", 0.25, n_draws=6000, seed=0, exact=ex, k=k)["variance"]
        for k in (1, 10, 100)
    ]
    assert var[0] > var[1] > var[2], var


def test_gumbel_rao_mean_matches_st_gs() -> None:
    # Rao-Blackwellisation keeps the expectation: both means agree within 5 standard errors of
    # their difference (per coordinate; chance failure < 1e-5)
    f = _qp()
    logits = torch.tensor([0.5, 0.0, -0.5], dtype=torch.float64)
    a = D.gradient_draws(logits, f, "st_gs", 0.5, n_draws=20000, seed=2)
    b = D.gradient_draws(logits, f, "gumbel_rao", 0.5, n_draws=20000, seed=3, k=10)
    se = (a.var(0) / a.shape[0] + b.var(0) / b.shape[0]).sqrt()
    assert ((a.mean(0) - b.mean(0)).abs() / se).max() < 5.0


def test_reinmax_is_unbiased_on_a_quadratic_at_tau_one_and_st_is_not() -> None:
    # at tau = 1 ReinMax's expectation is the exact gradient for every f at most quadratic in the
    # one-hot. z-test of the mean of 20000 draws per coordinate at |z| < 5: 12 coordinates, chance
    # failure < 1e-5. ST on the same problem is biased: its bias must exceed ReinMax's by more
    # than 4 noise floors of ReinMax's mean. Measured: max|z| 1.1 at tau = 1 (210 at tau = 2, where
    # ReinMax is biased); bias 0.010 +- 0.018 against ST's 0.56.
    q = torch.randn(12, 12, dtype=torch.float64, generator=_gen(7))
    q = q @ q.T / 12
    b = torch.randn(12, dtype=torch.float64, generator=_gen(8))
    logits = torch.randn(4, 3, dtype=torch.float64, generator=_gen(9))

    def f(z: torch.Tensor) -> torch.Tensor:
        v = z.reshape(z.shape[0], 12)
        return ((v @ q) * v).sum(-1) + v @ b

    ex = D.exact_gradient(logits, f)
    g = D.gradient_draws(logits, f, "reinmax", 1.0, n_draws=20000, seed=0, chunk=5000)
    z = (g.mean(0) - ex.grad) / (g.std(0) / math.sqrt(g.shape[0]))
    assert z.abs().max() < 5.0, z
    rm_floor = math.sqrt(g.var(0).sum().item() / g.shape[0])  # sampling error of the mean's norm
    gs_ = D.gradient_draws(logits, f, "st", 1.0, n_draws=4000, seed=0, chunk=4000)
    rm_bias, st_bias = (g.mean(0) - ex.grad).norm().item(), (gs_.mean(0) - ex.grad).norm().item()
    assert rm_bias + 4 * rm_floor < st_bias, (rm_bias, rm_floor, st_bias)


def test_reinmax_is_exact_for_linear_objectives() -> None:
    # for f linear in the one-hot, ReinMax's gradient is E-unbiased (second-order exact); z-test
    # per coordinate at 5 sigma (chance failure < 1e-5)
    w = torch.tensor([[1.0, -2.0, 0.5, 3.0], [0.2, 0.0, -1.0, 1.0]], dtype=torch.float64)
    logits = torch.tensor([[0.5, -1.0, 2.0, NEG_INF], [0.0, 0.3, -0.3, 1.0]], dtype=torch.float64)

    def f(z):
        return (z * w).sum((-2, -1))

    ex = D.exact_gradient(logits, f)
    g = D.gradient_draws(logits, f, "reinmax", 1.0, n_draws=20000, seed=4)
    se = g.std(0) / math.sqrt(g.shape[0])
    free = se > 0
    assert ((g.mean(0) - ex.grad)[free].abs() / se[free]).max() < 5.0


def test_reinforce_per_example_gradient_matches_the_hand_formula() -> None:
    # P = (5,) per-example values, categories along dim 0: each example's gradient is
    # (1/n) sum_s (f_s - b_s) (onehot(D_s) - p) with its *own* values and leave-one-out baseline;
    # an implementation that mixed examples (one baseline, or log p summed over the batch) fails.
    x = torch.randn(4, 5, 2, dtype=torch.float64, generator=_gen(20)).requires_grad_(True)  # K=4 on dim 0
    w = torch.randn(4, 5, 2, dtype=torch.float64, generator=_gen(21))
    n = 5

    def f(h: torch.Tensor) -> torch.Tensor:  # (n, 4, 5, 2) -> (n, 5)
        return ((h * w).sum(1) ** 2).sum(-1)

    out = E.reinforce_loo(x, f, n, dim=0, generator=_gen(22))
    out.loss.sum().backward()
    v = out.values.detach()  # (n, 5)
    base = (v.sum(0, keepdim=True) - v) / (n - 1)  # (n, 5)
    p = torch.softmax(x.detach(), 0).movedim(0, -1)  # (5, 2, 4)
    onehot = torch.nn.functional.one_hot(out.indices, 4).double()  # (n, 5, 2, 4)
    ref = (((v - base)[..., None, None] * (onehot - p)).mean(0)).movedim(-1, 0)  # (4, 5, 2)
    torch.testing.assert_close(x.grad, ref, rtol=1e-12, atol=1e-14)
    # the check has power: a batch-mixed score (shared baseline over examples) differs
    vm, bm = v.sum(1, keepdim=True), (v.sum() - v.sum(1, keepdim=True)) / (n - 1)
    mixed = (((vm - bm)[..., None, None] * (onehot - p)).mean(0)).movedim(-1, 0)
    assert (mixed - ref).abs().max() > 1e-3


def test_reinforce_surrogate_value_is_the_sample_mean() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    out = E.reinforce_loo(x, lambda h: (h * torch.arange(3.0)).sum((-1, -2)), 6, generator=_gen())
    torch.testing.assert_close(out.loss, out.values.mean(0))
    per_example = E.reinforce_loo(x, lambda h: (h * torch.arange(3.0)).sum(-1), 6, generator=_gen())
    assert per_example.loss.shape == (5,)
    torch.testing.assert_close(per_example.loss, per_example.values.mean(0))
    torch.testing.assert_close(per_example.values, per_example.indices.float())  # f(D) = index here
    per_example.loss.sum().backward()
    assert torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------- gradcheck


@dataclass(frozen=True)
class _FixedShifts:
    """A MixtureST plan whose shifts are given (aux[0], (M, *, K))."""

    taus: tuple[float, ...]
    coefs: tuple[float, ...]

    @property
    def components(self) -> int:
        return len(self.taus)

    def tau(self, m: int) -> float:
        return self.taus[m]

    def c_hard(self, m: int) -> float:
        return self.coefs[m]

    def c_soft(self, m: int) -> float:
        return self.coefs[m]

    def shift(self, xs, indices, aux, start, stop):
        return aux[0][start:stop]


def _mixture_reference(x, shifts, taus, coefs):
    return sum(c * torch.softmax((x + a) / t, -1) for a, t, c in zip(shifts, taus, coefs, strict=True))


@pytest.mark.parametrize(
    ("taus", "coefs"),
    [((0.7,), (1.0,)), ((1.0, 1.0), (2.0, -0.5)), ((0.3, 0.3, 0.3), (1 / 3, 1 / 3, 1 / 3))],
)
def test_gradcheck_mixed_softmax_backward(taus, coefs) -> None:
    # the backward formula sum_m c_m/t_m (y_m*g - y_m (y_m.g)) is the true derivative of
    # soft = sum_m c_m softmax((x + a_m)/t_m): gradcheck it through the `soft` output, with a mask
    m = len(taus)
    x = torch.randn(3, 5, dtype=torch.float64, generator=_gen(1))
    x[1, 2] = NEG_INF
    shifts = torch.randn(m, 3, 5, dtype=torch.float64, generator=_gen(2))
    shifts[:, 1, 2] = 0.0  # masked entries carry a zero shift
    kw = {"dtype": torch.float64}
    plan = _FixedShifts(taus, coefs)
    idx = torch.tensor([0, 1, 4])

    def soft(xx):
        return MixtureST.apply(xx, idx, plan, shifts)[1]

    xg = x.clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: soft(v.masked_fill(torch.isinf(x), NEG_INF)), (xg,))
    assert torch.autograd.gradgradcheck(lambda v: soft(v.masked_fill(torch.isinf(x), NEG_INF)), (xg,))
    torch.testing.assert_close(soft(x), _mixture_reference(x, shifts, taus, coefs))
    # `hard` routes the incoming gradient through the very same formula (straight-through)
    g = torch.randn(3, 5, **kw, generator=_gen(3))
    xa = x.clone().requires_grad_(True)
    (MixtureST.apply(xa, idx, plan, shifts)[0] * g).sum().backward()
    xb = x.clone().requires_grad_(True)
    (_mixture_reference(xb, shifts, taus, coefs) * g).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad)


# With the noise fixed, `soft` of these estimators is a smooth function of the logits, so its
# custom backward must be its true derivative. (Gumbel-Rao's conditional Gumbels and GST's gapped
# logits are built *from* the logits and held fixed by definition of those estimators; their
# backward is covered by the fixed-shift gradcheck above and the formula tests below.)
SMOOTH_SOFT = ("st", "gs", "st_gs", "reinmax", "decoupled_st")


def test_smooth_soft_list_is_current() -> None:
    assert set(SMOOTH_SOFT) | {"gumbel_rao", "gst"} == set(PATHWISE)


@pytest.mark.parametrize("name", SMOOTH_SOFT)
def test_gradcheck_soft_output(name: str, kernel_path) -> None:
    x = torch.randn(2, 4, dtype=torch.float64, generator=_gen(5))
    mask = torch.zeros(2, 4, dtype=torch.bool)
    mask[0, 3] = True
    noise = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(6))

    def fn(v):
        return E.sample(v.masked_fill(mask, NEG_INF), name, _tau(name), generator=_gen(7), noise=noise).soft

    assert torch.autograd.gradcheck(fn, (x.clone().requires_grad_(True),))


def _hard_grad(x, name, tau, g, **opts):
    xx = x.clone().requires_grad_(True)
    s = E.sample(xx, name, tau, generator=_gen(8), **opts)
    (s.output * g).sum().backward()
    return xx.grad, s


@pytest.mark.parametrize("tau", [1.0, 2.5])
def test_reinmax_hard_gradient_matches_its_formula(tau: float, kernel_path) -> None:
    x = torch.randn(4, 5, dtype=torch.float64, generator=_gen(9))
    x[2, 1] = NEG_INF
    g = torch.randn(4, 5, dtype=torch.float64, generator=_gen(10))
    got, s = _hard_grad(x, "reinmax", tau, g)
    d = s.hard.detach()
    pi1 = 0.5 * (torch.softmax(x / tau, -1) + d)
    xr = x.clone().requires_grad_(True)
    a = torch.where(torch.isinf(x), 0.0, pi1.log() - x)  # constant
    ref = 2 * torch.softmax(xr + a, -1) - 0.5 * torch.softmax(xr, -1)
    (ref * g).sum().backward()
    torch.testing.assert_close(got, xr.grad)


@pytest.mark.parametrize("gap", [1.0, 0.3, "p"])
def test_gst_hard_gradient_matches_its_formula(gap, kernel_path) -> None:
    x = torch.randn(6, 4, dtype=torch.float64, generator=_gen(11)) * 2
    x[3, 0] = NEG_INF
    g = torch.randn(6, 4, dtype=torch.float64, generator=_gen(12))
    got, s = _hard_grad(x, "gst", 0.5, g, gap=gap)
    win = s.hard.detach().bool()
    mx = x.amax(-1, keepdim=True)
    if gap == "p":
        pi = torch.softmax(x, -1)[win].unsqueeze(-1)
        delta = -torch.log1p(-pi) / pi
    else:
        delta = torch.full((6, 1), float(gap), dtype=torch.float64)
    moved = torch.where(win, mx, torch.minimum(x, mx - delta))
    # the library's own relaxed output keeps the winner ahead by the gap: log(soft_D / soft_j) >= delta / tau
    log_soft = s.soft.detach().log()
    margin = log_soft.gather(-1, s.indices[:, None]) - log_soft.masked_fill(win, NEG_INF).amax(-1, keepdim=True)
    assert (margin >= delta / 0.5 - 1e-9).all(), margin - delta / 0.5
    xr = x.clone().requires_grad_(True)
    a = torch.where(torch.isinf(x), 0.0, moved - x)
    (torch.softmax((xr + a) / 0.5, -1) * g).sum().backward()
    torch.testing.assert_close(got, xr.grad)


@pytest.mark.parametrize("k", [1, 3])
def test_gumbel_rao_hard_gradient_matches_its_formula(k: int, kernel_path) -> None:
    # rebuild the k perturbations from the same generator stream: the draw that picks the
    # sample, then k - 1 conditional Gumbels; the gradient is the mean softmax Jacobian
    x = torch.randn(5, 4, dtype=torch.float64, generator=_gen(15))
    x[1, 2] = NEG_INF
    g = torch.randn(5, 4, dtype=torch.float64, generator=_gen(16))
    got, s = _hard_grad(x, "gumbel_rao", 0.4, g, k=k)
    gen = _gen(8)
    noise = gumbel_noise(x.shape, dtype=torch.float64, generator=gen)
    assert torch.equal((x + noise).argmax(-1), s.indices)
    pert = [x + noise]
    if k > 1:
        z = conditional_gumbel(x, s.indices, k - 1, generator=gen)  # (k-1, 5, 4), shifted frame
        assert (z.argmax(-1) == s.indices).all()
        pert += list(z)
    xr = x.clone().requires_grad_(True)
    ref = sum(torch.softmax((xr + torch.where(torch.isinf(x), 0.0, p - x)) / 0.4, -1) for p in pert) / k
    (ref * g).sum().backward()
    torch.testing.assert_close(got, xr.grad)
    torch.testing.assert_close(s.soft, ref.detach())


def test_st_hard_gradient_is_the_tempered_softmax_gradient() -> None:
    x = torch.randn(3, 6, dtype=torch.float64, generator=_gen(13))
    g = torch.randn(3, 6, dtype=torch.float64, generator=_gen(14))
    got, _ = _hard_grad(x, "st", 0.3, g)
    xr = x.clone().requires_grad_(True)
    (torch.softmax(xr / 0.3, -1) * g).sum().backward()
    torch.testing.assert_close(got, xr.grad)


def test_conditional_gumbel_has_the_right_argmax_and_law(kernel_path) -> None:
    # conditional on argmax = i, the max of l + G is Gumbel(logsumexp(l)) regardless of i:
    # Kolmogorov-Smirnov on 20000 draws, chance failure 1e-4
    logits = torch.tensor([0.5, -1.0, 2.0, NEG_INF], dtype=torch.float64)
    z = conditional_gumbel(logits, torch.tensor(1), 20000, generator=_gen(15))
    assert (z.argmax(-1) == 1).all() and torch.isneginf(z[:, 3]).all()
    top = z[:, 1] + logits.max()  # back to the un-shifted frame
    loc = torch.logsumexp(logits, 0).item()
    assert stats.kstest(top.numpy(), stats.gumbel_r(loc=loc).cdf).pvalue > 1e-4
    # extreme logits: no overflow, winner kept
    big = torch.tensor([1e30, -1e30, 0.0], dtype=torch.float32)
    zb = conditional_gumbel(big, torch.tensor(2), 10, generator=_gen(16))
    assert (zb.argmax(-1) == 2).all() and not torch.isnan(zb).any()


def _conditional_ks_min_p(sampler) -> float:
    # reference law of every coordinate of l + G given argmax = 1, by rejection: keep the
    # unconditional Gumbel-Max draws that chose category 1 (~7000 of 2e5; category 1 is the
    # least likely one), in the same max-subtracted frame
    logits = torch.tensor([0.5, -1.0, 2.0, -0.3], dtype=torch.float64)
    gen = _gen(30)
    z = logits + gumbel_noise((200_000, 4), dtype=torch.float64, generator=gen)
    ref = z[z.argmax(-1) == 1] - logits.max()  # (~7000, 4)
    got = sampler(logits, torch.tensor(1), ref.shape[0], generator=gen)  # (~7000, 4)
    return min(float(stats.ks_2samp(ref[:, j].numpy(), got[:, j].numpy()).pvalue) for j in range(4))


def _wrong_sampler_clamped(logits, index, n, *, generator=None):
    # untruncated Gumbels for the losers, clamped just below the (correct) winner
    z = conditional_gumbel(logits, index, n, generator=generator)
    xs = logits - logits.max()
    top = z[:, index].unsqueeze(-1)
    fresh = xs + gumbel_noise((n, *xs.shape), dtype=xs.dtype, generator=generator)
    win = torch.nn.functional.one_hot(index, xs.shape[-1]).bool()
    return torch.where(win, top, torch.minimum(fresh, top - 1e-9))


def _wrong_sampler_forced(logits, index, n, *, generator=None):
    # fresh unconditional Gumbels with the winner forced to be the max
    xs = logits - logits.max()
    fresh = xs + gumbel_noise((n, *xs.shape), dtype=xs.dtype, generator=generator)
    win = torch.nn.functional.one_hot(index, xs.shape[-1]).bool()
    return torch.where(win, fresh.amax(-1, keepdim=True) + 1e-6, fresh)


def _wrong_sampler_location(logits, index, n, *, generator=None):
    # right winner and right truncation, but the losers' locations are half the logits
    z = conditional_gumbel(logits, index, n, generator=generator)
    xs = logits - logits.max()
    top = z[:, index].unsqueeze(-1)
    log_e = exponential_noise((n, *xs.shape), dtype=xs.dtype, generator=generator).log()
    win = torch.nn.functional.one_hot(index, xs.shape[-1]).bool()
    return torch.where(win, top, -torch.logaddexp(log_e - 0.5 * xs, -top))


def test_conditional_gumbel_law_of_every_coordinate_matches_rejection_sampling(kernel_path) -> None:
    # two-sample Kolmogorov-Smirnov per coordinate (winner and the three losers) against
    # rejection-sampled Gumbel-Max draws. Fails if any p < 2.5e-5: by the union bound over the
    # 4 coordinates, a correct sampler fails with probability <= 1e-4.
    assert _conditional_ks_min_p(conditional_gumbel) > 2.5e-5


@pytest.mark.parametrize("wrong", [_wrong_sampler_clamped, _wrong_sampler_forced, _wrong_sampler_location])
def test_conditional_gumbel_law_test_rejects_wrong_samplers(wrong) -> None:
    # the test above has power: these wrong samplers keep the argmax (the first two also pass the
    # mean-gradient test against ST-GS) but get the losers' law wrong; measured min p ~1e-84,
    # ~1e-323 and 0
    assert _conditional_ks_min_p(wrong) < 1e-20


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_conditional_gumbel_half_precision_keeps_the_argmax(dtype) -> None:
    # computed in float32 and rounded: a naive cast ties ~0.03% of 2e5 draws with the winner here
    logits = torch.tensor([8.0, 0.0, -3.0])
    z = conditional_gumbel(logits.to(dtype), torch.tensor(2), 200_000, generator=_gen(31))
    assert z.dtype == dtype and torch.isfinite(z).all()
    assert (z[:, 2:] > z[:, :2]).all(), "a loser ties with or beats the winner"
    z32 = conditional_gumbel(logits, torch.tensor(2), 200_000, generator=_gen(31))
    torch.testing.assert_close(z.float(), z32, rtol=1e-2, atol=1e-2)  # same draws, half rounding


# --------------------------------------------------------------------------- autograd contract

TAU_CONSTANT = ("st", "gst", "gumbel_rao", "reinmax", "decoupled_st")  # treat tau as a constant


def test_tau_constant_list_is_current() -> None:
    assert set(TAU_CONSTANT) | {"gs", "st_gs"} == set(PATHWISE)


def _straight_through(soft: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.one_hot(soft.argmax(-1), soft.shape[-1]).to(soft.dtype) + soft - soft.detach()


def _surrogate_reference(name: str, x: torch.Tensor, noise: torch.Tensor, tau: float, seed: int, index):
    # independent plain-autograd surrogates (the estimators' constants rebuilt from the same noise
    # and generator stream), as functions of differentiable logits xx
    mx = x.amax(-1, keepdim=True)
    win = torch.nn.functional.one_hot(index, x.shape[-1]).bool()
    if name == "gs":
        return lambda xx: torch.softmax((xx + noise) / tau, -1)
    if name == "st_gs":
        return lambda xx: _straight_through(torch.softmax((xx + noise) / tau, -1))
    if name == "st":
        return lambda xx: win.double() + torch.softmax(xx / tau, -1) - torch.softmax(xx / tau, -1).detach()
    if name == "gst":
        a = torch.where(win, mx, torch.minimum(x, mx - 1.0)) - x
        return lambda xx: win.double() + torch.softmax((xx + a) / tau, -1) - torch.softmax((xx + a) / tau, -1).detach()
    if name == "reinmax":
        a = (0.5 * (torch.softmax(x / tau, -1) + win.double())).log() - x
        return lambda xx: win.double() + (r := 2 * torch.softmax(xx + a, -1) - 0.5 * torch.softmax(xx, -1)) - r.detach()
    if name == "decoupled_st":  # tau_forward = 1: the sample is the given draw's; backward softmax(l / tau + g)
        return lambda xx: win.double() + (r := torch.softmax(xx / tau + noise, -1)) - r.detach()
    assert name == "gumbel_rao"  # k = 3: the given noise, then 2 conditional draws from the generator
    pert = [x + noise, *conditional_gumbel(x, index, 2, generator=_gen(seed))]
    return lambda xx: win.double() + (r := sum(torch.softmax((xx + (p - x)) / tau, -1) for p in pert) / 3) - r.detach()


@pytest.mark.parametrize("name", PATHWISE)
def test_second_order_gradients_match_plain_autograd(name: str, kernel_path) -> None:
    # create_graph=True must give the surrogate's true second derivative (a Hessian-vector product
    # with an extra term that also reaches the logits: a dropped estimator term would go unnoticed
    # by autograd.grad, so compare values against an independent plain-autograd surrogate)
    x = torch.randn(3, 4, dtype=torch.float64, generator=_gen(24))
    w = torch.randn(3, 4, dtype=torch.float64, generator=_gen(25))
    noise = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(26))
    tau = _tau(name)
    opts = {"k": 3} if name == "gumbel_rao" else {}

    def second(hard_fn):
        xx = x.clone().requires_grad_(True)
        loss = ((hard_fn(xx) * w).sum(-1) ** 2).sum() + (xx**3).sum()
        (g,) = torch.autograd.grad(loss, xx, create_graph=True)
        return torch.autograd.grad((g * w).sum(), xx)[0]  # Hessian-vector product with w

    s = E.sample(x, name, tau, generator=_gen(27), noise=noise, **opts)
    h = second(lambda xx: E.sample(xx, name, tau, generator=_gen(27), noise=noise, **opts).output)
    torch.testing.assert_close(h, second(_surrogate_reference(name, x, noise, tau, 27, s.indices)), rtol=1e-9, atol=1e-11)
    assert (h - 6 * x * w).abs().max() > 1e-3  # the estimator's own term is not zero


@pytest.mark.parametrize("name", TAU_CONSTANT)
def test_tau_requiring_grad_is_refused_where_tau_is_a_constant(name: str) -> None:
    x = torch.randn(2, 3, dtype=torch.float64, generator=_gen(28))
    with pytest.raises(ValueError, match="tau requires grad.*'gs' / 'st_gs'"):
        E.sample(x, name, torch.tensor(1.5, dtype=torch.float64, requires_grad=True))
    # a constant 0-d tensor is the same as the number
    a = E.sample(x.requires_grad_(True), name, torch.tensor(1.5), generator=_gen(29))
    b = E.sample(x, name, 1.5, generator=_gen(29))
    assert torch.equal(a.hard, b.hard) and torch.equal(a.soft, b.soft)


@pytest.mark.parametrize("name", ["gs", "st_gs"])
def test_tau_gradient_flows_for_the_relaxations(name: str) -> None:
    x = torch.randn(2, 3, dtype=torch.float64, generator=_gen(28))
    tau = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    noise = gumbel_noise(x.shape, dtype=torch.float64, generator=_gen(29))
    s = E.sample(x, name, tau, noise=noise)
    (s.output * torch.arange(3.0, dtype=torch.float64)).sum().backward()
    assert tau.grad is not None and torch.isfinite(tau.grad) and tau.grad != 0
    # the value: d/dtau of softmax((x + G) / tau) (straight-through for "st_gs") at the same noise
    tau_ref = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    (torch.softmax((x + noise) / tau_ref, -1) * torch.arange(3.0, dtype=torch.float64)).sum().backward()
    torch.testing.assert_close(tau.grad, tau_ref.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("tau", [torch.ones(1, 1), torch.ones(1), torch.tensor(1), torch.ones(2)])
def test_tau_tensor_must_be_0d_float(tau: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="0-d float tensor"):
        E.sample(torch.zeros(2, 3), "st", tau)
    with pytest.raises(ValueError, match="0-d float tensor"):
        E.Estimator("gst", tau=tau)


def test_mixture_st_half_precision_is_exact_one_hot() -> None:
    x = torch.randn(5, 7).to(torch.bfloat16).requires_grad_(True)
    hard, soft = MixtureST.apply(x, torch.arange(5), _FixedShifts((0.5,), (1.0,)), torch.zeros(1, 5, 7))
    assert hard.dtype == torch.bfloat16 and torch.equal(hard, torch.eye(5, 7, dtype=torch.bfloat16))
    (hard * torch.randn(5, 7).bfloat16()).sum().backward()
    assert x.grad.dtype == torch.bfloat16


# --------------------------------------------------------------------------- property sweep


@st.composite
def _cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    shape = draw(st.sampled_from([(3, 4), (2, 3, 5), (1, 2)]))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    big = {torch.float16: 6e4, torch.bfloat16: 3e38, torch.float32: 3e38, torch.float64: 1e300}[dtype]
    scale = draw(st.sampled_from([1.0, 30.0, 1e4, big]))
    seed = draw(st.integers(0, 2**31 - 1))
    g = _gen(seed)
    x = (torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1) * min(scale, big)
    mask = torch.rand(shape, generator=g) < draw(st.sampled_from([0.0, 0.3, 0.7]))
    # keep one category per slice unmasked
    keep = torch.nn.functional.one_hot(torch.randint(0, shape[dim], (), generator=g), shape[dim]).bool()
    view = [1] * len(shape)
    view[dim] = shape[dim]
    mask &= ~keep.reshape(view)
    x = x.to(dtype).masked_fill(mask, NEG_INF)
    tau = draw(st.sampled_from([0.05, 0.5, 1.0, 3.0, 100.0]))
    return x, dim, tau, seed


@pytest.mark.parametrize("name", ALL)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=_cases())
def test_no_nan_sweep(name: str, case) -> None:
    x, dim, tau, seed = case
    if E.spec(name).tau_min is not None:
        tau = max(tau, E.spec(name).tau_min)
    xx = x.clone().requires_grad_(True)
    w = torch.randn(x.shape, generator=_gen(seed)).to(x.dtype)
    if E.spec(name).kind == "score":
        loss = E.surrogate(xx, lambda h: (h * w).sum(tuple(range(1, h.ndim))), name, dim=dim, generator=_gen(seed))
        assert torch.isfinite(loss).all()
        loss.sum().backward()
    else:
        s = E.sample(xx, name, tau, dim, generator=_gen(seed))
        assert s.output.dtype == x.dtype and s.hard.dtype == x.dtype and s.soft.dtype == x.dtype
        assert torch.isfinite(s.output).all() and torch.isfinite(s.soft).all()
        assert not torch.isneginf(x.movedim(dim, -1).gather(-1, s.indices.unsqueeze(-1))).any(), "masked sample"
        assert ((s.hard == 0) | (s.hard == 1)).all() and (s.hard.sum(dim) == 1).all()
        ((s.output * w).sum() + (s.soft * w).sum()).backward()
    assert xx.grad is not None and torch.isfinite(xx.grad).all()
    assert (xx.grad[torch.isneginf(x)] == 0).all()


@pytest.mark.parametrize("name", ALL)
def test_surrogate_every_estimator(name: str) -> None:
    x = torch.randn(3, 4, requires_grad=True)
    tau = 1.0 if name == "reinmax" else 0.5
    loss = E.surrogate(x, lambda h: (h * torch.arange(4.0)).sum((-1, -2)), name, tau, n_samples=3, generator=_gen())
    assert loss.shape == ()
    # f sums the sampled category indices of the 3 rows, averaged over 3 samples (one-hot
    # samples for all but "gs", whose `output` is the relaxed sample)
    total = 3 * loss.item()
    assert 0 <= total <= 27, total
    if name != "gs":
        assert abs(total - round(total)) < 1e-4, total
    loss.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().max() > 0
    if E.spec(name).kind == "pathwise":  # the mean over n_samples of `sample`'s own gradient
        xr = x.detach().clone().requires_grad_(True)
        s = E.sample(xr.unsqueeze(0).expand(3, 3, 4), name, tau, -1, generator=_gen())
        (s.output * torch.arange(4.0)).sum((-1, -2)).mean().backward()
        torch.testing.assert_close(x.grad, xr.grad)


@pytest.mark.parametrize(
    "module",
    ["__init__", "st", "gs", "st_gs", "gumbel_rao", "gst", "reinmax", "reinforce"],
)
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    mod = importlib.import_module("gumbelkit.estimators" + ("" if module == "__init__" else "." + module))
    result = doctest.testmod(mod, extraglobs={"torch": torch}, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0
