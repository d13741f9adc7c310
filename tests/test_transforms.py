"""torch.func (grad, vmap, jacrev) and torch.compile: every sampler, distribution and pathwise
estimator works under them, with values and gradients equal to eager autograd.

The reference is eager autograd on the same path: with ``noise=`` given, the numpy block path
and the torch-op path compute the same values, so both ``kernel_path`` parameters are compared
against the transforms (which always take torch ops). Draws from a generator (the distributions'
``rsample``, Gumbel-Rao's conditional Gumbels) come from ``torch.rand`` / the counter-based
stream under transforms, so those are compared with the eager torch-op path only.
"""

from __future__ import annotations

import pytest
import torch
from torch.func import grad, jacrev, vmap

import gumbelkit as gk
from gumbelkit import _kernels
from gumbelkit import distributions as Dist
from gumbelkit import estimators as E

F64 = torch.float64
NEG_INF = float("-inf")
SHAPE = (3, 5)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _inputs():
    x = torch.randn(SHAPE, dtype=F64, generator=_gen(0))
    x[1, 3] = NEG_INF  # a mask: its gradient must stay exactly 0 under every transform
    noise = gk.gumbel_noise(SHAPE, dtype=F64, generator=_gen(1))
    w = torch.randn(SHAPE, dtype=F64, generator=_gen(2))
    return x, noise, w


def _sampler(name: str, noise: torch.Tensor):
    """Differentiable functions of the logits with the noise fixed (the draw is deterministic)."""
    if name == "soft":
        return lambda v: gk.gumbel_softmax(v, 0.6, noise=noise)
    if name == "hard":
        return lambda v: gk.gumbel_softmax(v, 0.6, hard=True, noise=noise)
    if name == "sample.soft":
        return lambda v: gk.gumbel_softmax_sample(v, 0.6, noise=noise).soft
    if name == "sample.hard":
        return lambda v: gk.gumbel_softmax_sample(v, 0.6, noise=noise).hard
    if name == "dim0":
        return lambda v: gk.gumbel_softmax(v.T.contiguous(), 0.6, dim=0, noise=noise.T.contiguous()).T
    est = name.removeprefix("est.")
    tau = 1.3 if est == "reinmax" else 0.6
    opts = {"k": 4} if est == "gumbel_rao" else {}
    return lambda v: E.sample(v, est, tau, noise=noise, generator=_gen(3), **opts).output


NAMES = ["soft", "hard", "sample.soft", "sample.hard", "dim0"] + [
    "est." + n for n in E.estimator_names("pathwise")
]


def _eager_grad(f, x, w):
    xe = x.clone().requires_grad_(True)
    (f(xe) * w).sum().backward()
    return xe.grad


def _eager_jacobian(f, x):
    xe = x.clone().requires_grad_(True)
    out = f(xe).reshape(-1)
    rows = [torch.autograd.grad(out[i], xe, retain_graph=True)[0] for i in range(out.numel())]
    return torch.stack(rows).reshape(*SHAPE, *x.shape)


@pytest.mark.parametrize("name", NAMES)
def test_grad_and_jacrev_equal_eager_autograd(name, kernel_path):
    if name == "est.gumbel_rao" and kernel_path == "numpy":
        pytest.skip("eager CPU draws Gumbel-Rao's conditional Gumbels from PCG64: torch-op path only")
    x, noise, w = _inputs()
    f = _sampler(name, noise)
    g = grad(lambda v: (f(v) * w).sum())(x)
    torch.testing.assert_close(g, _eager_grad(f, x, w), rtol=1e-12, atol=1e-14)
    assert float(g[1, 3]) == 0.0  # the masked category
    torch.testing.assert_close(jacrev(f)(x), _eager_jacobian(f, x), rtol=1e-12, atol=1e-14)
    assert float(g.abs().sum()) > 0  # the estimator's gradient is not zero


@pytest.mark.parametrize("name", NAMES)
def test_vmap_equals_a_loop(name):
    # a batch of 4 logits with 4 noises: vmap(f) equals f on each (values and, via vmap of grad,
    # per-example gradients); randomness="different" only matters for Gumbel-Rao's seed draw
    xs = torch.randn(4, *SHAPE, dtype=F64, generator=_gen(5))
    noises = gk.gumbel_noise((4, *SHAPE), dtype=F64, generator=_gen(6))
    w = torch.randn(SHAPE, dtype=F64, generator=_gen(7))

    def value(v, nz):
        return _sampler(name, nz)(v)

    def gradient(v, nz):
        return grad(lambda u: (_sampler(name, nz)(u) * w).sum())(v)

    rnd = "same" if name == "est.gumbel_rao" else "error"
    got = vmap(value, randomness=rnd)(xs, noises)
    got_g = vmap(gradient, randomness=rnd)(xs, noises)
    if name == "est.gumbel_rao":
        # under vmap the seed comes from torch.randint; reproduce its stream with the torch ops
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(_kernels, "numpy_path", lambda t: False)
            ref = [value(xs[i], noises[i]) for i in range(4)]
            ref_g = [_eager_grad(_sampler(name, noises[i]), xs[i], w) for i in range(4)]
    else:
        ref = [value(xs[i], noises[i]) for i in range(4)]
        ref_g = [_eager_grad(_sampler(name, noises[i]), xs[i], w) for i in range(4)]
    torch.testing.assert_close(got, torch.stack(ref), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(got_g, torch.stack(ref_g), rtol=1e-12, atol=1e-14)


def test_gumbel_max_and_topk_under_transforms():
    x, noise, _ = _inputs()
    want = (x + noise).argmax(-1)
    want_top = (x + noise).topk(2, -1).indices

    # inside grad / jacrev the indices are constants; the one-hot they select is differentiable
    def picked(v):
        return (v * torch.nn.functional.one_hot(gk.gumbel_max(v, noise=noise), 5)).sum()

    assert torch.equal(grad(picked)(x), torch.nn.functional.one_hot(want, 5).to(F64))
    def top_values(v):
        return v.gather(-1, gk.gumbel_topk(v, 2, noise=noise))  # (3, 2)

    xe = x.clone().requires_grad_(True)
    out = top_values(xe).reshape(-1)
    eager = torch.stack([torch.autograd.grad(out[i], xe, retain_graph=True)[0] for i in range(6)])
    assert torch.equal(jacrev(top_values)(x), eager.reshape(3, 2, *SHAPE))
    xs = x.expand(4, *SHAPE)
    assert torch.equal(vmap(lambda v, n: gk.gumbel_max(v, noise=n))(xs, noise.expand(4, *SHAPE)), want.expand(4, 3))
    assert torch.equal(vmap(lambda v: gk.gumbel_topk(v, 2, noise=noise))(xs), want_top.expand(4, 3, 2))


def test_vmap_randomness_different_samples_pass_the_chi_square(stats):
    # 2e5 vmapped draws of 4 categories; chi-square alpha = 1e-4 each (gumbel_max, the indices
    # of gumbel_softmax_sample and of an estimator). A vmap that broadcast one draw to the whole
    # batch (randomness "same" semantics) would put every draw in one category.
    logits = torch.tensor([0.1, 0.2, 0.3, 0.4]).log()
    n = 200_000
    batch = logits.expand(n, 4)
    probs = torch.softmax(logits.double(), -1).numpy()
    torch.manual_seed(0)
    for fn in (
        lambda v: gk.gumbel_max(v),
        lambda v: gk.gumbel_softmax_sample(v, 0.5).indices,
        lambda v: E.sample(v, "gumbel_rao", 0.5).indices,
    ):
        idx = vmap(fn, randomness="different")(batch)
        stats.chisquare(torch.bincount(idx, minlength=4).numpy(), probs, 1e-4, "vmap different")
    same = vmap(lambda v: gk.gumbel_max(v), randomness="same")(batch[:1000])
    assert bool((same == same[0]).all())


@pytest.mark.parametrize(
    "make",
    [
        lambda v: Dist.RelaxedOneHotCategorical(0.7, logits=v, validate_args=False),
        lambda v: Dist.RelaxedOneHotCategoricalStraightThrough(0.7, logits=v, validate_args=False),
        lambda v: Dist.RelaxedBernoulli(0.7, logits=v, validate_args=False),
        lambda v: Dist.RelaxedBernoulliStraightThrough(0.7, logits=v, validate_args=False),
        lambda v: Dist.Gumbel(v, 2.0, validate_args=False),
    ],
    ids=["RelaxedOneHotCategorical", "...StraightThrough", "RelaxedBernoulli", "...StraightThrough", "Gumbel"],
)
def test_distribution_rsample_under_transforms(make, monkeypatch):
    # rsample draws from the generator; under transforms that is torch.rand, so compare with
    # the eager torch-op path at the same seed
    monkeypatch.setattr(_kernels, "numpy_path", lambda t: False)
    x, _, w = _inputs()
    x = x.clamp(min=-5.0)  # no masks: Bernoulli / Gumbel parameters must be finite

    def f(v):
        return make(v).rsample(generator=_gen(11))

    g = grad(lambda v: (f(v) * w).sum())(x)
    torch.testing.assert_close(g, _eager_grad(f, x, w), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(jacrev(f)(x), _eager_jacobian(f, x), rtol=1e-12, atol=1e-14)
    out = vmap(lambda v: make(v).rsample(), randomness="different")(x.expand(4, *SHAPE))
    assert out.shape == (4, *SHAPE) and not torch.equal(out[0], out[1])


# ------------------------------------------------------------------------------ torch.compile


def _all_samplers(x):
    return (
        gk.gumbel_softmax(x, 0.5),
        gk.gumbel_softmax(x, 0.5, hard=True),
        gk.gumbel_softmax(x, torch.full((6, 1), 0.7)),  # a tensor tau
        gk.gumbel_softmax(x.reshape(2, 3, 9), 0.5, dim=1),
        gk.gumbel_softmax_sample(x, 0.5).soft,
        gk.gumbel_max(x).float(),
        gk.gumbel_topk(x, 2).float(),
        Dist.RelaxedOneHotCategorical(0.5, logits=x, validate_args=False).rsample(),
    )


def _all_estimators(x):
    out = [E.sample(x, n, 1.0).output for n in E.estimator_names("pathwise")]
    out.append(E.reinforce_loo(x, lambda h: h.sum((-1, -2)), 4).loss)
    return tuple(out)


@pytest.mark.parametrize("fn", [_all_samplers, _all_estimators])
def test_compile_has_no_graph_break(fn):
    # default settings (validation on): the data checks become torch._assert_async, no .item()
    torch._dynamo.reset()
    x = torch.randn(6, 9, generator=_gen(0), requires_grad=True)
    report = torch._dynamo.explain(fn)(x)
    assert report.graph_break_count == 0, [str(r.reason) for r in report.break_reasons]
    assert report.graph_count == 1 and report.op_count > 10  # it was traced, not skipped


def test_compiled_samplers_and_seed_semantics(monkeypatch):
    torch._dynamo.reset()

    def f(x):
        hard = gk.gumbel_softmax(x, 0.5, hard=True)
        soft = gk.gumbel_softmax(x, 0.7)
        return hard, soft, gk.gumbel_max(x), gk.gumbel_topk(x, 2)

    x = torch.randn(6, 9, generator=_gen(0), requires_grad=True)
    compiled = torch.compile(f, backend="eager")
    torch.manual_seed(5)
    hard, soft, idx, top = compiled(x)
    assert bool(((hard == 0) | (hard == 1)).all()) and torch.equal(hard.sum(-1), torch.ones(6))
    torch.testing.assert_close(soft.sum(-1), torch.ones(6))
    (hard * soft).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())
    # documented: a seed gives under compile (dynamo backends) what it gives in eager on the
    # torch-op path (torch.rand from the same generator), not the CPU eager draw (PCG64)
    eager_cpu = f(x.detach())
    with monkeypatch.context() as mp:
        mp.setattr(_kernels, "numpy_path", lambda t: False)
        torch.manual_seed(5)
        eager_torch = f(x.detach())
    torch.manual_seed(5)
    again = compiled(x.detach())
    for a, b in zip(again, eager_torch, strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.equal(again[2], eager_cpu[2]) or not torch.equal(again[1], eager_cpu[1])


def test_compiled_validation_is_an_assert():
    torch._dynamo.reset()
    bad = torch.zeros(3, 4)
    bad[1] = NEG_INF  # a fully masked slice
    compiled = torch.compile(lambda v: gk.gumbel_softmax(v, 0.5), backend="eager")
    with pytest.raises(RuntimeError, match="fully masked"):
        compiled(bad)
    assert torch.is_grad_enabled()  # a failed check must not leave grad mode off
    with gk.validate_args(False):
        torch._dynamo.reset()
        out = torch.compile(lambda v: gk.gumbel_softmax(v, 0.5), backend="eager")(bad)
    assert out.shape == bad.shape


def test_numpy_path_is_not_taken_under_transforms_or_compile():
    x = torch.zeros(2, 3)
    assert _kernels.numpy_path(x)
    seen = []

    def probe(v):
        seen.append(_kernels.numpy_path(v))
        return v * 2

    grad(lambda v: probe(v).sum())(x)
    vmap(probe)(x)
    assert seen == [False, False]
