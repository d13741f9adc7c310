"""Tests of gumbelkit.distributions against independent references.

References used: ``scipy.stats.gumbel_r`` (densities, CDFs, quantiles, moments), a convergent
series for the Gumbel log-survival in the lower tail (where scipy's ``log(sf)`` loses relative
precision), ``torch.distributions`` (RelaxedOneHotCategorical, RelaxedBernoulli, Categorical,
Bernoulli) where their semantics match ours, and numerical integration (``scipy.integrate.quad``).

Statistical tests are seeded; each states the probability that a *correct* implementation fails
it by chance (its alpha), i.e. the false-failure rate over random seeds.

There is no custom autograd backward in ``gumbelkit.distributions`` (the straight-through
classes reuse ``gumbelkit.functional.straight_through``, gradchecked in the functional tests);
the float64 ``gradcheck`` tests below cover the autograd paths through the masked / branched
formulas, where a NaN could hide.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate
from scipy import stats as sps

from gumbelkit.distributions import (
    Gumbel,
    RelaxedBernoulli,
    RelaxedBernoulliStraightThrough,
    RelaxedOneHotCategorical,
    RelaxedOneHotCategoricalStraightThrough,
)

F64 = torch.float64
NEG_INF = -math.inf
EPS64 = float(np.finfo(np.float64).eps)

# (loc, scale) pairs for the Gumbel checks: standard, shifted/narrow, shifted/wide
GUMBEL_PARAMS = [(0.0, 1.0), (1.5, 0.7), (-2.0, 3.0)]
# x from -4 to 40, dense, plus the exact integers
X_GRID = np.unique(np.concatenate([np.linspace(-4.0, 40.0, 881), np.arange(-4.0, 41.0)]))


def _t(a: object) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64), dtype=F64)


# ============================================================================================
# Gumbel
# ============================================================================================


def _logsf_series(z: np.ndarray) -> np.ndarray:
    """log(1 - exp(-t)), t = exp(-z), as -sum_{n>=1} exp(-n t) / n.

    Independent of the implementation's log1p / expm1 branches. For z <= -1 (t >= e) the ratio
    exp(-t) <= 0.066, so 60 terms leave a remainder below 1e-70 of the first term.
    """
    t = np.exp(-z)
    q = np.exp(-t)
    n = np.arange(1, 61)[:, None]
    return -(q[None, :] ** n / n).sum(0)


@pytest.mark.parametrize("loc,scale", GUMBEL_PARAMS)
def test_gumbel_log_prob_cdf_against_scipy(loc: float, scale: float) -> None:
    # scipy.stats.gumbel_r evaluates -z - exp(-z), -exp(-z), exp(-exp(-z)) directly, which are
    # accurate to a few ulps for every z in the grid (no cancellation), so the tolerance is tight.
    d = Gumbel(_t(loc), _t(scale))
    ref = sps.gumbel_r(loc=loc, scale=scale)
    x = _t(X_GRID)
    np.testing.assert_allclose(d.log_prob(x).numpy(), ref.logpdf(X_GRID), rtol=1e-13, atol=0)
    np.testing.assert_allclose(d.log_cdf(x).numpy(), ref.logcdf(X_GRID), rtol=1e-13, atol=0)
    np.testing.assert_allclose(d.cdf(x).numpy(), ref.cdf(X_GRID), rtol=1e-12, atol=0)
    assert torch.isfinite(d.log_prob(x)).all() and torch.isfinite(d.log_cdf(x)).all()


@pytest.mark.parametrize("loc,scale", GUMBEL_PARAMS)
def test_gumbel_log_survival_both_tails(loc: float, scale: float) -> None:
    d = Gumbel(_t(loc), _t(scale))
    x = _t(X_GRID)
    got = d.log_survival(x).numpy()
    z = (X_GRID - loc) / scale
    # scipy's logsf is log(-expm1(-exp(-z))): relative error about eps * exp(exp(-z)), i.e.
    # accurate (< 1e-12) only for z >= -2; compare there (up to z = 40 / 0.7 = 63 here).
    upper = z >= -2.0
    ref = sps.gumbel_r(loc=loc, scale=scale).logsf(X_GRID[upper])
    np.testing.assert_allclose(got[upper], ref, rtol=1e-13, atol=0)
    # lower tail (z <= -1): the series reference, accurate to ulps; the two references overlap
    # on [-2, -1], which checks the references against each other as well.
    lower = z <= -1.0
    ref_lo = _logsf_series(z[lower])
    np.testing.assert_allclose(got[lower], ref_lo, rtol=1e-13, atol=0)
    overlap = (z >= -2.0) & (z <= -1.0)
    if overlap.any():
        np.testing.assert_allclose(
            _logsf_series(z[overlap]),
            sps.gumbel_r(loc=loc, scale=scale).logsf(X_GRID[overlap]),
            rtol=1e-12,
        )
    # finite everywhere, and never rounded off to 0 where the true value -exp(-t) is a normal
    # float (t < 700); a naive log(sf) returns 0 already at z = -4 (t = 54.6)
    assert np.isfinite(got).all()
    assert (got[np.exp(-z) < 700] < 0).all()


def test_gumbel_log_survival_far_upper_tail_never_inf() -> None:
    # beyond z = 745 exp(-z) underflows to 0; the answer -z - t/2 must still be right
    d = Gumbel(_t(0.0), _t(1.0))
    x = _t([100.0, 700.0, 800.0, 1e6])
    np.testing.assert_allclose(d.log_survival(x).numpy(), -x.numpy(), rtol=1e-15)


def test_gumbel_infinite_values() -> None:
    d = Gumbel(_t(0.0), _t(1.0))
    x = _t([-math.inf, math.inf])
    assert d.log_prob(x).tolist() == [NEG_INF, NEG_INF]
    assert d.cdf(x).tolist() == [0.0, 1.0]
    assert d.log_cdf(x).tolist() == [NEG_INF, 0.0]
    assert d.log_survival(x).tolist() == [0.0, NEG_INF]


@pytest.mark.parametrize("loc,scale", GUMBEL_PARAMS)
def test_gumbel_icdf_against_scipy(loc: float, scale: float) -> None:
    q = np.concatenate(
        [np.logspace(-300, -1, 60), np.linspace(0.1, 0.9, 17), 1 - np.logspace(-15, -1, 30)]
    )
    got = Gumbel(_t(loc), _t(scale)).icdf(_t(q)).numpy()
    ref = sps.gumbel_r(loc=loc, scale=scale).ppf(q)
    # both evaluate loc - scale log(-log q) from the same float q: only rounding differs; the
    # absolute floor covers quantiles that are near 0 (relative error is meaningless there)
    np.testing.assert_allclose(got, ref, rtol=1e-13, atol=1e-13 * scale)
    assert Gumbel(_t(loc), _t(scale)).icdf(_t([0.0, 1.0])).tolist() == [NEG_INF, math.inf]


@pytest.mark.parametrize("loc,scale", GUMBEL_PARAMS)
def test_gumbel_icdf_cdf_round_trip(loc: float, scale: float) -> None:
    # x with F(x) < 1 - 1e-9 in float64 (z <= 20); round-trip error is bounded by the
    # conditioning of q -> x: one rounding of q near 1 moves x by about eps * e^z * scale.
    d = Gumbel(_t(loc), _t(scale))
    z = np.linspace(-4.0, 20.0, 961)
    x = loc + scale * z
    back = d.icdf(d.cdf(_t(x))).numpy()
    bound = 8 * EPS64 * scale * (1 + np.abs(z) + np.exp(z)) + 4 * EPS64 * np.abs(x)
    assert (np.abs(back - x) <= bound).all(), np.max(np.abs(back - x) / bound)


@pytest.mark.parametrize("loc,scale", GUMBEL_PARAMS)
def test_gumbel_moments_entropy_against_scipy(loc: float, scale: float) -> None:
    d = Gumbel(_t(loc), _t(scale))
    ref = sps.gumbel_r(loc=loc, scale=scale)
    mean, var = ref.stats(moments="mv")
    assert d.mean.item() == pytest.approx(float(mean), rel=1e-14, abs=1e-14)
    assert d.variance.item() == pytest.approx(float(var), rel=1e-14)
    assert d.stddev.item() == pytest.approx(float(ref.std()), rel=1e-14)
    assert d.entropy().item() == pytest.approx(float(ref.entropy()), rel=1e-14)
    assert d.mode.item() == loc


def test_gumbel_ks_test_of_rsample(gen, kernel_path) -> None:
    # Kolmogorov-Smirnov on 1e5 float64 samples; alpha = 1e-3: a correct sampler fails with
    # probability 1e-3 over seeds (this seed is fixed, so the run is deterministic).
    loc, scale = 0.3, 1.7
    d = Gumbel(_t(loc), _t(scale))
    x = d.rsample((100_000,), generator=gen(2024)).numpy()
    assert np.isfinite(x).all()
    p = sps.kstest(x, sps.gumbel_r(loc=loc, scale=scale).cdf).pvalue
    assert p > 1e-3, p
    # power: the same test rejects a 3% scale error at this sample size (measured p = 3.6e-5)
    assert sps.kstest(x, sps.gumbel_r(loc=loc, scale=scale * 1.03).cdf).pvalue < 1e-3


def test_gumbel_rsample_shapes_grad_and_reproducibility(gen) -> None:
    loc = torch.zeros(2, 3, dtype=F64, requires_grad=True)
    scale = torch.full((3,), 2.0, dtype=F64, requires_grad=True)
    d = Gumbel(loc, scale)
    assert d.batch_shape == (2, 3) and d.event_shape == ()
    x = d.rsample((4,), generator=gen(0))
    assert x.shape == (4, 2, 3)
    x.sum().backward()
    assert torch.equal(loc.grad, torch.full((2, 3), 4.0, dtype=F64))
    assert torch.equal(d.sample((4,), generator=gen(0)), x.detach())
    e = d.expand((5, 2, 3))
    assert e.batch_shape == (5, 2, 3) and e.sample().shape == (5, 2, 3)
    assert torch.equal(e.log_prob(x[:1].detach()), d.log_prob(x[:1].detach()).expand(5, 2, 3))
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        h = Gumbel(torch.zeros(1000, dtype=dt), torch.ones(1000, dtype=dt))
        s = h.sample(generator=gen(1))
        assert s.dtype == dt and torch.isfinite(s).all()
        # half precision is computed in float32: results are the float64 values up to one
        # rounding to dt; float32 itself loses up to ~(1 + |z| + e^-z) ulps (|z| <= 3.7 here)
        ref = Gumbel(_t(0.0), _t(1.0))
        eps = torch.finfo(dt).eps if dt != torch.float32 else 64 * torch.finfo(dt).eps
        for name in ("log_prob", "cdf", "log_cdf", "log_survival"):
            got = getattr(h, name)(s)
            assert got.dtype == dt
            want = getattr(ref, name)(s.double())
            assert torch.allclose(got.double(), want, rtol=eps, atol=1e-30), name


def test_gumbel_validation() -> None:
    with pytest.raises(ValueError, match="scale"):
        Gumbel(_t(0.0), _t(-1.0), validate_args=True)
    with pytest.raises(ValueError, match="loc"):
        Gumbel(_t(math.nan), _t(1.0), validate_args=True)
    with pytest.raises(ValueError, match="loc"):
        Gumbel(torch.tensor(1), torch.tensor(1.0))  # integer dtype
    d = Gumbel(_t(0.0), _t(1.0), validate_args=True)
    with pytest.raises(ValueError, match="support"):
        d.log_prob(_t(math.nan))
    with pytest.raises(ValueError, match="probability"):
        d.icdf(_t(1.5))


def test_gumbel_gradcheck_log_survival_branches() -> None:
    # autograd through the where-branches (t < 1e-8, t <= ln 2, t > ln 2), float64
    x = _t([-4.0, -1.0, -0.3, 0.5, 3.0, 25.0, 40.0]).requires_grad_()
    loc = _t(0.2).requires_grad_()
    scale = _t(1.3).requires_grad_()

    def f(x, loc, scale):
        d = Gumbel(loc, scale)
        return d.log_survival(x), d.log_prob(x), d.log_cdf(x), d.cdf(x)

    assert torch.autograd.gradcheck(f, (x, loc, scale))


# ============================================================================================
# RelaxedOneHotCategorical (relaxed one-hot categorical)
# ============================================================================================


@pytest.mark.parametrize("temperature", [0.05, 0.3, 1.0, 2.5])
def test_gumbel_softmax_log_prob_matches_torch(temperature: float, gen) -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 6, dtype=F64)
    ref = torch.distributions.RelaxedOneHotCategorical(_t(temperature), logits=logits)
    ours = RelaxedOneHotCategorical(temperature, logits=logits)
    y = ours.sample((200,), generator=gen(1))  # (200, 3, 6)
    # well-conditioned: no entry underflowed (torch's log_prob takes log(value) directly)
    assert (y > 0).all()
    np.testing.assert_allclose(
        ours.log_prob(y).numpy(), ref.log_prob(y).numpy(), rtol=1e-10, atol=1e-9
    )
    assert torch.allclose(ours.probs, ref.probs, rtol=1e-14)
    assert torch.allclose(ours.logits, ref.logits, rtol=1e-14)


def test_gumbel_softmax_tensor_temperature_and_probs_match_torch(gen) -> None:
    probs = torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]], dtype=F64)
    temp = _t([0.4, 1.7])
    ours = RelaxedOneHotCategorical(temp, probs=probs)
    y = ours.sample((100,), generator=gen(3))  # (100, 2, 3)
    lp = ours.log_prob(y)
    # torch's log_prob does not broadcast a batched temperature: compare one row at a time
    for i in range(2):
        ref = torch.distributions.RelaxedOneHotCategorical(temp[i], probs=probs[i])
        np.testing.assert_allclose(
            lp[:, i].numpy(), ref.log_prob(y[:, i]).numpy(), rtol=1e-10, atol=1e-9
        )


def test_gumbel_softmax_masked_log_prob(gen) -> None:
    logits = _t([0.3, NEG_INF, -1.2, 2.0, NEG_INF])
    d = RelaxedOneHotCategorical(0.7, logits=logits)
    y = d.rsample((500,), generator=gen(5))
    assert (y[:, [1, 4]] == 0).all()
    lp = d.log_prob(y)
    assert torch.isfinite(lp).all()
    # the masked distribution is the Concrete distribution of the unmasked sub-vector
    keep = [0, 2, 3]
    ref = torch.distributions.RelaxedOneHotCategorical(_t(0.7), logits=logits[keep])
    np.testing.assert_allclose(lp.numpy(), ref.log_prob(y[:, keep]).numpy(), rtol=1e-10)
    # a value with mass at a masked category has density 0: -inf, not NaN
    bad = _t([0.2, 0.1, 0.3, 0.4, 0.0])
    assert d.log_prob(bad).item() == NEG_INF
    # masks given as zero probabilities are the same distribution
    dp = RelaxedOneHotCategorical(0.7, probs=torch.softmax(logits, -1))
    np.testing.assert_allclose(dp.log_prob(y).numpy(), lp.numpy(), rtol=1e-12)


def test_gumbel_softmax_masked_gradients_are_finite(gen) -> None:
    logits = _t([[0.3, NEG_INF, -1.2, 2.0], [NEG_INF, 0.0, 1.0, NEG_INF]]).requires_grad_()
    temp = _t(0.5).requires_grad_()
    d = RelaxedOneHotCategorical(temp, logits=logits)
    y = d.rsample((50,), generator=gen(6))
    d.log_prob(y).sum().backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(temp.grad).all()
    assert (logits.grad[torch.isneginf(logits)] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_gumbel_softmax_low_temperature_log_prob_finite(dtype: torch.dtype, gen) -> None:
    torch.manual_seed(1)
    logits = (3 * torch.randn(4, 10)).to(dtype)
    logits[0, 3] = NEG_INF
    logits = logits.requires_grad_()
    d = RelaxedOneHotCategorical(0.01, logits=logits, validate_args=True)
    y = d.rsample((1000,), generator=gen(7))
    assert (y == 0).any()  # entries do underflow at this temperature: the case being tested
    lp = d.log_prob(y)
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(logits.grad).all()


def _half_integral(log_density, temperature: float) -> float:
    """Integral of exp(log_density(s)) over s in (0, 1/2], float64.

    The binary Concrete density behaves like s^(tau - 1) at 0 (singular for tau < 1). The
    substitution s = v^(1/tau) turns the integrand into a smooth function of v that tends to a
    constant at v = 0, which adaptive Gauss-Kronrod (scipy's quad) integrates to ~1e-12.
    """
    inv = 1.0 / temperature

    def g(v: float) -> float:
        s = v**inv
        return math.exp(log_density(s) + (inv - 1.0) * math.log(v) - math.log(temperature))

    val, _ = integrate.quad(g, 0.0, 0.5**temperature, epsabs=1e-13, epsrel=1e-12, limit=200)
    return val


@pytest.mark.parametrize("temperature,logit", [(0.2, 0.0), (0.5, 1.5), (1.0, -2.0), (3.0, 0.7)])
def test_gumbel_softmax_density_integrates_to_one_k2(temperature: float, logit: float) -> None:
    # the 1-simplex is {(s, 1 - s)}; each half is integrated in its small coordinate, which the
    # simplex representation keeps to full precision (so no mass near a vertex is lost)
    d = RelaxedOneHotCategorical(temperature, logits=_t([logit, 0.0]))
    first = _half_integral(lambda s: d.log_prob(_t([s, 1.0 - s])).item(), temperature)
    second = _half_integral(lambda s: d.log_prob(_t([1.0 - s, s])).item(), temperature)
    assert first + second == pytest.approx(1.0, abs=1e-9), (first, second)


def test_gumbel_softmax_k2_equals_relaxed_bernoulli() -> None:
    # two independent formulas (logsumexp form vs log-sigmoid form) of the same density
    y = _t(
        np.concatenate(
            [np.logspace(-300, -1, 40), np.linspace(0.1, 0.9, 9), 1 - np.logspace(-15, -1, 20)]
        )
    )
    for temperature, logit in [(0.01, 0.4), (0.5, -1.0), (2.0, 3.0)]:
        bern = RelaxedBernoulli(temperature, logits=_t(logit)).log_prob(y)
        cat = RelaxedOneHotCategorical(temperature, logits=_t([logit, 0.0])).log_prob(
            torch.stack([y, 1 - y], -1)
        )
        assert torch.isfinite(bern).all()
        np.testing.assert_allclose(bern.numpy(), cat.numpy(), rtol=1e-11, atol=1e-10)


def test_gumbel_softmax_argmax_frequencies_chi_square(gen, stats, kernel_path) -> None:
    # the argmax of a relaxed sample is an exact Categorical(probs) draw at any temperature;
    # chi-square on 1e5 draws, alpha = 1e-4 (the false-failure rate over seeds)
    probs = _t([0.02, 0.08, 0.15, 0.0, 0.3, 0.45])
    d = RelaxedOneHotCategorical(0.5, probs=probs)
    y = d.sample((100_000,), generator=gen(11))
    counts = torch.bincount(y.argmax(-1), minlength=6)
    stats.chisquare(counts.numpy(), probs.numpy(), alpha=1e-4, what="RelaxedOneHotCategorical argmax")
    st = RelaxedOneHotCategoricalStraightThrough(0.5, probs=probs).sample((100_000,), generator=gen(12))
    stats.chisquare(st.sum(0).numpy(), probs.numpy(), alpha=1e-4, what="straight-through one-hot")


def test_gumbel_softmax_shapes_and_expand(gen) -> None:
    logits = torch.randn(2, 3, 5, dtype=F64)
    d = RelaxedOneHotCategorical(_t([0.5, 1.0, 2.0]), logits=logits)
    assert d.batch_shape == (2, 3) and d.event_shape == (5,)
    y = d.rsample((4,), generator=gen(0))
    assert y.shape == (4, 2, 3, 5)
    assert torch.allclose(y.sum(-1), torch.ones(4, 2, 3, dtype=F64))
    assert d.log_prob(y).shape == (4, 2, 3)
    e = d.expand((6, 2, 3))
    assert e.batch_shape == (6, 2, 3) and e.event_shape == (5,)
    assert e.rsample((2,)).shape == (2, 6, 2, 3, 5)
    assert torch.equal(e.log_prob(y[0]), d.log_prob(y[0]).expand(6, 2, 3))
    # temperature broadcasts into the batch shape
    d2 = RelaxedOneHotCategorical(_t([[0.5], [2.0]]), logits=torch.randn(3, 4, dtype=F64))
    assert d2.batch_shape == (2, 3)
    assert d2.sample().shape == (2, 3, 4)
    with pytest.raises(ValueError, match="temperature"):
        RelaxedOneHotCategorical(_t([0.5, 1.0, 2.0, 3.0]), logits=logits)
    # ST expand keeps its class and its one-hot samples
    st = RelaxedOneHotCategoricalStraightThrough(1.0, logits=logits).expand((7, 2, 3))
    assert type(st) is RelaxedOneHotCategoricalStraightThrough
    s = st.sample()
    assert s.shape == (7, 2, 3, 5) and (s.sum(-1) == 1).all()


def test_gumbel_softmax_reproducible_and_equal_to_functional(gen) -> None:
    from gumbelkit.functional import gumbel_softmax

    logits = torch.randn(3, 5)
    d = RelaxedOneHotCategorical(0.8, logits=logits)
    a = d.sample((2,), generator=gen(9))
    b = d.sample((2,), generator=gen(9))
    assert torch.equal(a, b)
    ref = gumbel_softmax(d.logits.expand(2, 3, 5), 0.8, generator=gen(9))
    # Same draw; the distribution divides by a tensor temperature and the functional fast path
    # by a number, so the two may differ in the last float32 bit, not more.
    torch.testing.assert_close(a, ref, rtol=4 * torch.finfo(torch.float32).eps, atol=1e-12)
    assert torch.equal(a.argmax(-1), ref.argmax(-1))


@pytest.mark.parametrize(
    "cls",
    [
        RelaxedOneHotCategorical,
        RelaxedOneHotCategoricalStraightThrough,
        RelaxedBernoulli,
        RelaxedBernoulliStraightThrough,
    ],
)
@pytest.mark.parametrize(
    "bad", [0.0, -1.0, math.nan, math.inf, torch.tensor([1.0, 0.0]), torch.tensor(math.nan), "1.0"]
)
def test_bad_temperature_raises_naming_it(cls, bad) -> None:
    with pytest.raises(ValueError, match="temperature"):
        cls(bad, logits=torch.zeros(2))


@pytest.mark.parametrize(
    "cls",
    [
        RelaxedOneHotCategorical,
        RelaxedOneHotCategoricalStraightThrough,
        RelaxedBernoulli,
        RelaxedBernoulliStraightThrough,
    ],
)
def test_logits_probs_both_or_neither_raises(cls) -> None:
    with pytest.raises(ValueError, match="exactly one of logits or probs.*both"):
        cls(1.0, logits=torch.zeros(2), probs=torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="exactly one of logits or probs.*neither"):
        cls(1.0)


def test_gumbel_softmax_validation() -> None:
    with pytest.raises(ValueError, match="probs"):
        RelaxedOneHotCategorical(1.0, probs=_t([0.5, 0.6]), validate_args=True)  # not on the simplex
    with pytest.raises(ValueError, match="probs"):
        RelaxedOneHotCategorical(1.0, probs=_t([-0.5, 1.5]))
    with pytest.raises(ValueError, match="NaN"):
        RelaxedOneHotCategorical(1.0, logits=_t([0.0, math.nan]))
    with pytest.raises(ValueError, match="all -inf"):
        RelaxedOneHotCategorical(1.0, logits=_t([NEG_INF, NEG_INF]))
    with pytest.raises(ValueError, match="logits"):
        RelaxedOneHotCategorical(1.0, logits=torch.tensor([0, 1]))  # integer logits
    with pytest.raises(ValueError, match="logits"):
        RelaxedOneHotCategorical(1.0, logits=_t(0.0))  # no category dimension
    d = RelaxedOneHotCategorical(1.0, logits=torch.zeros(3, dtype=F64), validate_args=True)
    with pytest.raises(ValueError, match="support"):
        d.log_prob(_t([0.5, 0.6, -0.1]))
    with pytest.raises(ValueError, match="support"):
        d.log_prob(_t([0.5, 0.6, 0.1]))
    with pytest.raises(ValueError, match="event_shape"):
        d.log_prob(_t([0.5, 0.5]))
    st = RelaxedOneHotCategoricalStraightThrough(1.0, logits=torch.zeros(3, dtype=F64), validate_args=True)
    with pytest.raises(ValueError, match="support"):
        st.log_prob(_t([0.5, 0.5, 0.0]))  # not one-hot


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_gumbel_softmax_half_precision_samples_pass_validation(dtype: torch.dtype, gen) -> None:
    d = RelaxedOneHotCategorical(1.0, logits=torch.randn(8, 50).to(dtype), validate_args=True)
    y = d.rsample((20,), generator=gen(4))
    assert y.dtype == dtype
    lp = d.log_prob(y)  # validates the sample against the (dtype-aware) simplex
    assert lp.dtype == dtype and torch.isfinite(lp).all()


def test_gumbel_softmax_gradcheck_log_prob_and_rsample(gen) -> None:
    logits = _t([0.3, NEG_INF, -1.2, 2.0])
    free = _t([0.3, -1.2, 2.0]).requires_grad_()
    temp = _t(0.6).requires_grad_()
    # values from a hotter distribution stay away from the faces (entries >~ 0.05), where a
    # finite difference with step 1e-6 is accurate
    value = RelaxedOneHotCategorical(3.0, logits=logits).sample((3,), generator=gen(8))

    def lp(free, temp, vfree):
        full = torch.cat([free[:1], logits[1:2], free[1:]])
        v = torch.cat([vfree[:, :1], torch.zeros(3, 1, dtype=F64), vfree[:, 1:]], -1)
        return RelaxedOneHotCategorical(temp, logits=full, validate_args=False).log_prob(v)

    # perturbing the value leaves the simplex, but the formula is smooth there; the masked
    # entry stays exactly 0 (any other value has density 0)
    vfree = value[:, [0, 2, 3]].clone().requires_grad_()
    assert torch.autograd.gradcheck(lp, (free, temp, vfree))

    def rs(free, temp):
        full = torch.cat([free[:1], logits[1:2], free[1:]])
        return RelaxedOneHotCategorical(temp, logits=full).rsample((3,), generator=gen(8))

    assert torch.autograd.gradcheck(rs, (free, temp))


# ============================================================================================
# Straight-through
# ============================================================================================


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_straight_through_exact_one_hot_with_soft_gradient(dtype: torch.dtype, gen, kernel_path) -> None:
    torch.manual_seed(3)
    base = torch.randn(4, 7)
    base[1, 2] = NEG_INF
    w = torch.randn(64, 4, 7).to(dtype)
    grads = []
    for cls in (RelaxedOneHotCategoricalStraightThrough, RelaxedOneHotCategorical):
        logits = base.to(dtype).requires_grad_()
        temp = torch.tensor(0.7, dtype=dtype, requires_grad=True)
        y = cls(temp, logits=logits).rsample((64,), generator=gen(21))
        (w * y).sum().backward()
        grads.append((y.detach(), logits.grad, temp.grad))
    (hard, g_hard, t_hard), (soft, g_soft, t_soft) = grads
    assert hard.dtype == dtype
    assert ((hard == 0) | (hard == 1)).all() and (hard.sum(-1) == 1).all()
    assert (hard[:, 1, 2] == 0).all()
    # the one-hot sits on the largest soft entry (the same noise was used)
    assert (soft[hard == 1].reshape(64, 4) >= soft.amax(-1)).all()
    assert torch.equal(g_hard, g_soft) and torch.equal(t_hard, t_soft)
    assert torch.isfinite(g_hard).all()


def test_straight_through_log_prob_is_categorical(gen) -> None:
    logits = _t([[0.3, NEG_INF, -1.2, 2.0], [0.0, 1.0, 2.0, 3.0]])
    d = RelaxedOneHotCategoricalStraightThrough(0.5, logits=logits, validate_args=True)
    y = d.rsample((100,), generator=gen(13))
    ref = torch.distributions.OneHotCategorical(logits=logits).log_prob(y)
    np.testing.assert_allclose(d.log_prob(y).numpy(), ref.numpy(), rtol=1e-14)
    assert d.log_prob(_t([0.0, 1.0, 0.0, 0.0])).tolist()[0] == NEG_INF  # masked category
    # gradient through log_prob(rsample) is finite with masks (no 0 * -inf)
    lg = logits.clone().requires_grad_()
    dd = RelaxedOneHotCategoricalStraightThrough(0.5, logits=lg)
    dd.log_prob(dd.rsample((10,), generator=gen(14))).sum().backward()
    assert torch.isfinite(lg.grad).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_relaxed_bernoulli_straight_through_exact_with_soft_gradient(
    dtype: torch.dtype, gen
) -> None:
    base = torch.tensor([-2.0, -0.3, 0.0, 0.8, 3.0])
    w = torch.randn(200, 5).to(dtype)
    out = []
    for cls in (RelaxedBernoulliStraightThrough, RelaxedBernoulli):
        logits = base.to(dtype).requires_grad_()
        temp = torch.tensor(0.5, dtype=dtype, requires_grad=True)
        y = cls(temp, logits=logits).rsample((200,), generator=gen(31))
        (w * y).sum().backward()
        out.append((y.detach(), logits.grad, temp.grad))
    (hard, g_hard, t_hard), (soft, g_soft, t_soft) = out
    assert hard.dtype == dtype and ((hard == 0) | (hard == 1)).all()
    decided = soft != 0.5
    assert torch.equal(hard[decided], (soft[decided] > 0.5).to(dtype))
    assert torch.equal(g_hard, g_soft) and torch.equal(t_hard, t_soft)


def test_relaxed_bernoulli_straight_through_log_prob_is_bernoulli(gen) -> None:
    logits = _t([-2.0, 0.0, 4.0])
    d = RelaxedBernoulliStraightThrough(0.5, logits=logits, validate_args=True)
    b = d.sample((50,), generator=gen(2))
    ref = torch.distributions.Bernoulli(logits=logits).log_prob(b)
    np.testing.assert_allclose(d.log_prob(b).numpy(), ref.numpy(), rtol=1e-14)
    with pytest.raises(ValueError, match="support"):
        d.log_prob(_t([0.5, 0.0, 1.0]))


# ============================================================================================
# RelaxedBernoulli
# ============================================================================================


@pytest.mark.parametrize("temperature", [0.1, 0.5, 1.0, 3.0])
def test_relaxed_bernoulli_log_prob_matches_torch(temperature: float) -> None:
    # torch clamps values to [eps, 1 - eps] before its logit: compare on [1e-6, 1 - 1e-6],
    # where neither implementation clamps and both are well-conditioned
    y = _t(
        np.concatenate(
            [np.logspace(-6, -1, 30), np.linspace(0.1, 0.9, 17), 1 - np.logspace(-6, -1, 30)]
        )
    )
    logits = _t([-3.0, -0.5, 0.0, 1.0, 5.0]).unsqueeze(-1)
    ours = RelaxedBernoulli(temperature, logits=logits).log_prob(y)
    ref = torch.distributions.RelaxedBernoulli(_t(temperature), logits=logits).log_prob(y)
    np.testing.assert_allclose(ours.numpy(), ref.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    "temperature,logit", [(0.2, 0.0), (0.5, 1.0), (1.0, -2.0), (2.0, 0.5), (5.0, 3.0)]
)
def test_relaxed_bernoulli_integrates_to_one(temperature: float, logit: float) -> None:
    # float64 cannot resolve y within 1e-16 of 1, where the mass is about e^logit (1e-16)^tau
    # (6e-4 at tau = 0.2), so (1/2, 1) is integrated through the exact symmetry
    # p_l(1 - u) = p_{-l}(u), which is itself checked on the upper half first.
    lo = RelaxedBernoulli(temperature, logits=_t(logit))
    hi = RelaxedBernoulli(temperature, logits=_t(-logit))
    y = _t(1 - np.logspace(-15, np.log10(0.5), 60))  # upper half, as floats
    u = 1 - y  # exact (Sterbenz): the mirror point of each float y
    np.testing.assert_allclose(
        lo.log_prob(y).numpy(), hi.log_prob(u).numpy(), rtol=1e-12, atol=1e-12
    )
    first = _half_integral(lambda s: lo.log_prob(_t(s)).item(), temperature)
    second = _half_integral(lambda s: hi.log_prob(_t(s)).item(), temperature)
    assert first + second == pytest.approx(1.0, abs=1e-9), (first, second)
    # plain quad over (0, 1) in y agrees where the density is bounded (tau >= 1)
    if temperature >= 1:
        plain, _ = integrate.quad(
            lambda v: math.exp(lo.log_prob(_t(v)).item()), 0.0, 1.0, limit=200
        )
        assert plain == pytest.approx(1.0, abs=1e-7)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
@pytest.mark.parametrize("temperature", [0.01, 0.5, 5.0])
def test_relaxed_bernoulli_log_prob_finite_near_0_and_1(
    dtype: torch.dtype, temperature: float
) -> None:
    fi = torch.finfo(dtype)
    y = torch.tensor(
        [
            0.0,
            fi.smallest_normal / 4,
            fi.tiny,
            1e-30,
            1e-8,
            0.5,
            1 - 1e-6,
            1 - fi.eps,
            1 - fi.eps / 2,
            1.0,
        ],
        dtype=dtype,
    )
    logits = torch.tensor([-4.0, 0.0, 4.0], dtype=dtype).unsqueeze(-1)
    lp = RelaxedBernoulli(temperature, logits=logits, validate_args=True).log_prob(y)
    assert torch.isfinite(lp).all(), lp


def test_relaxed_bernoulli_low_temperature_samples(gen) -> None:
    logits = _t([-3.0, 0.0, 2.0]).requires_grad_()
    d = RelaxedBernoulli(0.01, logits=logits, validate_args=True)
    y = d.rsample((10_000,), generator=gen(17))
    assert ((y == 0) | (y == 1)).any()  # samples do round to the ends here: the tested case
    lp = d.log_prob(y)
    assert torch.isfinite(lp).all()
    lp.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_relaxed_bernoulli_threshold_frequency_binomial(gen, stats, kernel_path) -> None:
    # P(y > 1/2) = sigmoid(logit) exactly at every temperature (the whole law of the logit is
    # KS-tested below). Exact binomial test per logit on 1e5 draws, alpha = 1e-4 each:
    # false-failure rate <= 5 * 1e-4 in all.
    logits = _t([-4.0, -1.0, 0.0, 0.7, 2.5])
    n = 100_000
    y = RelaxedBernoulli(0.3, logits=logits).sample((n,), generator=gen(41))
    k = (y > 0.5).sum(0)
    for j, lg in enumerate(logits.tolist()):
        stats.binom_two_sided(int(k[j]), n, 1 / (1 + math.exp(-lg)), alpha=1e-4, what=f"logit={lg}")


def test_relaxed_bernoulli_ks_of_logit_samples(gen, kernel_path) -> None:
    # the logit of a sample is Logistic(logit / tau, 1 / tau): KS on 1e5 draws, alpha = 1e-3
    lg, tau = 0.8, 0.6
    y = RelaxedBernoulli(tau, logits=_t(lg)).sample((100_000,), generator=gen(43)).numpy()
    x = np.log(y) - np.log1p(-y)
    assert sps.kstest(x, sps.logistic(loc=lg / tau, scale=1 / tau).cdf).pvalue > 1e-3


def test_relaxed_bernoulli_shapes_probs_validation(gen) -> None:
    d = RelaxedBernoulli(_t([[0.5], [1.0]]), probs=_t([0.2, 0.5, 0.9]))
    assert d.batch_shape == (2, 3) and d.event_shape == ()
    assert torch.allclose(d.logits, torch.logit(_t([0.2, 0.5, 0.9])), rtol=1e-14)
    assert torch.allclose(d.probs, _t([0.2, 0.5, 0.9]))
    y = d.rsample((4,), generator=gen(1))
    assert y.shape == (4, 2, 3) and d.log_prob(y).shape == (4, 2, 3)
    e = d.expand((5, 2, 3))
    assert e.batch_shape == (5, 2, 3) and e.sample().shape == (5, 2, 3)
    assert torch.equal(e.log_prob(y[0]), d.log_prob(y[0]).expand(5, 2, 3))
    with pytest.raises(ValueError, match="probs"):
        RelaxedBernoulli(1.0, probs=_t([0.0, 0.5]))
    with pytest.raises(ValueError, match="logits"):
        RelaxedBernoulli(1.0, logits=_t([math.inf]))
    with pytest.raises(ValueError, match="support"):
        RelaxedBernoulli(1.0, logits=_t(0.0), validate_args=True).log_prob(_t(1.5))
    for dt in (torch.float16, torch.bfloat16):
        s = RelaxedBernoulli(0.5, logits=torch.zeros(100, dtype=dt)).sample(generator=gen(2))
        assert s.dtype == dt and ((s >= 0) & (s <= 1)).all()


def test_relaxed_bernoulli_gradcheck(gen) -> None:
    logits = _t([-1.0, 0.5, 3.0]).requires_grad_()
    temp = _t(0.7).requires_grad_()
    value = RelaxedBernoulli(0.7, logits=logits.detach()).sample((2,), generator=gen(3))

    def lp(logits, temp, value):
        return RelaxedBernoulli(temp, logits=logits, validate_args=False).log_prob(value)

    assert torch.autograd.gradcheck(lp, (logits, temp, value.clone().requires_grad_()))

    def rs(logits, temp):
        return RelaxedBernoulli(temp, logits=logits).rsample((2,), generator=gen(3))

    assert torch.autograd.gradcheck(rs, (logits, temp))


# ============================================================================================
# Porting: the same calls as torch.distributions and pyro mean the same thing
# ============================================================================================

import pyro.distributions as pyro_dist  # noqa: E402  (a dev dependency: the porting reference)
import torch.distributions as td  # noqa: E402


def _ks_two_sample(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(sps.ks_2samp(a.double().numpy().ravel(), b.double().numpy().ravel()).pvalue)


@pytest.mark.parametrize("by", ["probs_positional", "logits_keyword"])
def test_porting_relaxed_one_hot_categorical_from_torch(by, gen) -> None:
    probs = _t([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    temperature = _t(0.5)  # torch divides (*batch, K) scores by it: a per-batch tensor breaks there
    if by == "probs_positional":  # torch's order: RelaxedOneHotCategorical(temperature, probs)
        ours, theirs = RelaxedOneHotCategorical(temperature, probs), td.RelaxedOneHotCategorical(temperature, probs)
    else:
        lg = probs.log() + 3.0
        ours = RelaxedOneHotCategorical(temperature, logits=lg)
        theirs = td.RelaxedOneHotCategorical(temperature, logits=lg)
    assert ours.batch_shape == theirs.batch_shape and ours.event_shape == theirs.event_shape
    torch.testing.assert_close(ours.probs, theirs.probs, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ours.logits, theirs.logits, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ours.temperature, theirs.temperature)
    torch.manual_seed(0)
    y_theirs = theirs.sample((20_000,))
    y_ours = ours.sample((20_000,), generator=gen(3))
    torch.testing.assert_close(ours.log_prob(y_theirs), theirs.log_prob(y_theirs), rtol=1e-9, atol=1e-9)
    # the same sample distribution: two-sample KS of each coordinate and batch element
    # (6 tests, each alpha = 1e-4 / 6 by the union bound)
    for b in range(2):
        for j in range(3):
            assert _ks_two_sample(y_ours[:, b, j], y_theirs[:, b, j]) > 1e-4 / 6


@pytest.mark.parametrize("by", ["probs_positional", "logits_keyword"])
def test_porting_relaxed_bernoulli_from_torch(by, gen) -> None:
    p = _t([0.9, 0.2])
    temperature = _t(0.7)
    if by == "probs_positional":  # the example: RelaxedBernoulli(0.5, tensor([0.9])).probs
        ours, theirs = RelaxedBernoulli(temperature, p), td.RelaxedBernoulli(temperature, p)
    else:
        lg = (p / (1 - p)).log()
        ours, theirs = RelaxedBernoulli(temperature, logits=lg), td.RelaxedBernoulli(temperature, logits=lg)
    assert ours.batch_shape == theirs.batch_shape
    torch.testing.assert_close(ours.probs, theirs.probs, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(ours.logits, theirs.logits, rtol=1e-12, atol=1e-14)
    torch.manual_seed(1)
    y_theirs = theirs.sample((20_000,)).clamp(1e-6, 1 - 1e-6)
    y_ours = ours.sample((20_000,), generator=gen(4))
    torch.testing.assert_close(ours.log_prob(y_theirs), theirs.log_prob(y_theirs), rtol=1e-9, atol=1e-9)
    for b in range(2):  # alpha = 1e-4 / 2 each
        assert _ks_two_sample(y_ours[:, b], y_theirs[:, b]) > 1e-4 / 2


def _with_unquantize(hard: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """A hard value carrying pyro's ``_unquantize`` attribute (what pyro's rsample returns)."""
    v = hard.detach().clone()
    v._unquantize = soft  # type: ignore[attr-defined]
    return v


def test_porting_relaxed_one_hot_straight_through_from_pyro(gen, stats) -> None:
    probs = _t([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    ours = RelaxedOneHotCategoricalStraightThrough(0.8, probs, log_prob_of="relaxed")
    theirs = pyro_dist.RelaxedOneHotCategoricalStraightThrough(torch.tensor(0.8, dtype=F64), probs)
    torch.testing.assert_close(ours.probs, theirs.probs)
    torch.testing.assert_close(ours.logits, theirs.logits, rtol=1e-12, atol=1e-14)
    hard = ours.rsample((4,), generator=gen(5))
    soft = RelaxedOneHotCategorical(0.8, probs).rsample((4,), generator=gen(5))  # the same draw
    assert torch.equal(hard, torch.nn.functional.one_hot(soft.argmax(-1), 3).to(F64))
    # pyro's convention: log_prob of the hard sample is the Concrete density of the soft one
    torch.testing.assert_close(ours.log_prob(hard), theirs.log_prob(_with_unquantize(hard, soft)), rtol=1e-9, atol=1e-9)
    # ... also on another distribution with the same convention (a prior, as in a pyro ELBO)
    prior = RelaxedOneHotCategoricalStraightThrough(0.8, logits=torch.zeros(3, dtype=F64), log_prob_of="relaxed")
    pyro_prior = pyro_dist.RelaxedOneHotCategoricalStraightThrough(torch.tensor(0.8, dtype=F64), logits=torch.zeros(3, dtype=F64))
    torch.testing.assert_close(prior.log_prob(hard), pyro_prior.log_prob(_with_unquantize(hard, soft)), rtol=1e-9, atol=1e-9)
    assert not hasattr(hard, "_unquantize")  # nothing hangs on our tensor
    # the default convention: the categorical log-probability of the one-hot
    default = RelaxedOneHotCategoricalStraightThrough(0.8, probs)
    torch.testing.assert_close(default.log_prob(hard), td.OneHotCategorical(probs).log_prob(hard))
    # the same sample distribution: counts of each category, ours vs pyro's, for each batch
    # element (chi-square of homogeneity, alpha = 1e-4 / 2 each)
    torch.manual_seed(2)
    n = 20_000
    mine = ours.sample((n,), generator=gen(6)).sum(0)  # (2, 3)
    with torch.no_grad():
        pyros = theirs.rsample((n,)).sum(0)  # pyro's sample() is the relaxed value, rsample hard
    for b in range(2):
        table = np.stack([mine[b].numpy(), pyros[b].numpy()])
        assert sps.chi2_contingency(table)[1] > 1e-4 / 2


def test_porting_relaxed_bernoulli_straight_through_from_pyro(gen) -> None:
    p = _t([0.9, 0.2])
    ours = RelaxedBernoulliStraightThrough(0.6, p, log_prob_of="relaxed")
    theirs = pyro_dist.RelaxedBernoulliStraightThrough(torch.tensor(0.6, dtype=F64), p)
    torch.testing.assert_close(ours.probs, theirs.probs)
    hard = ours.rsample((5,), generator=gen(7))
    soft = RelaxedBernoulli(0.6, p).rsample((5,), generator=gen(7))  # the same draw
    assert torch.equal(hard, (soft > 0.5).to(F64))
    torch.testing.assert_close(ours.log_prob(hard), theirs.log_prob(_with_unquantize(hard, soft)), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(
        RelaxedBernoulliStraightThrough(0.6, p).log_prob(hard), td.Bernoulli(p).log_prob(hard)
    )
    # expand keeps the convention
    assert ours.expand((3, 2)).log_prob_of == "relaxed"
    with pytest.raises(ValueError, match="log_prob_of must be 'hard' or 'relaxed'"):
        RelaxedBernoulliStraightThrough(0.6, p, log_prob_of="pyro")
    # the same sample distribution: ours and pyro's hard samples are Bernoulli(p), for each batch
    # element. Per element: a 2x2 chi-square of homogeneity (ours vs pyro's counts of 1) and an
    # exact binomial test of each against p; 6 tests, each alpha = 1e-4 / 6, so a correct
    # implementation fails by chance with probability <= 1e-4 (union bound). Power at n = 20_000:
    # a hard sample thresholded at the wrong probability sigmoid(logits / temperature)
    # (0.975 for p = 0.9, 0.090 for p = 0.2) passes the binomial test with probability < 1e-300,
    # and a shift of p by +-0.02 is caught with probability > 0.99 (scipy.stats.binom).
    torch.manual_seed(3)
    n = 20_000
    mine = ours.sample((n,), generator=gen(8)).sum(0)  # (2,) counts of 1
    with torch.no_grad():
        pyros = theirs.rsample((n,)).sum(0)  # pyro's sample() is the relaxed value, rsample hard
    for b in range(2):
        k_ours, k_pyro = round(float(mine[b])), round(float(pyros[b]))
        table = np.array([[k_ours, n - k_ours], [k_pyro, n - k_pyro]])
        assert sps.chi2_contingency(table)[1] > 1e-4 / 6, table
        for k in (k_ours, k_pyro):
            assert sps.binomtest(k, n, float(p[b])).pvalue > 1e-4 / 6, (k, n, float(p[b]))


def test_one_validation_switch_torchs_validate_args() -> None:
    from gumbelkit import validate_args as gk_validate

    bad = torch.tensor([[0.0, float("inf"), 1.0]])
    # gumbelkit's sampler switch plays no part: validate_args=False never raises ...
    with gk_validate(True):
        RelaxedOneHotCategorical(0.5, logits=bad, validate_args=False)
        RelaxedBernoulli(0.5, logits=torch.tensor([float("nan")]), validate_args=False)
    # ... and validate_args=True always checks
    with gk_validate(False):
        with pytest.raises(ValueError, match=r"\+inf"):
            RelaxedOneHotCategorical(0.5, logits=bad, validate_args=True)
        with pytest.raises(ValueError, match="finite"):
            RelaxedBernoulli(0.5, logits=torch.tensor([float("nan")]), validate_args=True)
    # the default is torch's global default
    old = torch.distributions.Distribution._validate_args
    try:
        torch.distributions.Distribution.set_default_validate_args(False)
        RelaxedOneHotCategorical(0.5, logits=bad)
        torch.distributions.Distribution.set_default_validate_args(True)
        with pytest.raises(ValueError):
            RelaxedOneHotCategorical(0.5, logits=bad)
    finally:
        torch.distributions.Distribution.set_default_validate_args(old)


def test_simplex_support_tolerance_is_a_few_eps(gen) -> None:
    support = RelaxedOneHotCategorical(0.5, logits=torch.zeros(1000)).support
    # a float16 vector of K = 1000 summing to 1.9 is not on the simplex (a K * eps tolerance let
    # it pass)
    v = torch.full((1000,), 1.9 / 1000).half()
    assert abs(float(v.double().sum()) - 1.9) < 0.01
    assert not bool(support.check(v))
    # correct samples pass in every dtype, K up to 1000
    for dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        for k in (2, 1000):
            y = RelaxedOneHotCategorical(0.5, logits=torch.randn(50, k, generator=gen(8)).to(dtype)).sample(generator=gen(9))
            assert bool(support.check(y).all()), (dtype, k)
    # float64 is held to float64's precision: off by 1e-12 is off the simplex
    w = torch.full((4,), 0.25, dtype=F64)
    w[0] += 1e-12
    assert not bool(support.check(w))
