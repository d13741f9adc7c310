"""Property-based numerics sweep (hypothesis): no NaN / inf in outputs or gradients.

Swept: shapes of rank 1-3, every dim, float32 / float64 / float16 / bfloat16 logits of any scale
up to +-1e4 (including exactly +-1e4), random ``-inf`` masks (never a fully masked slice), and
tau from 1e-4 to 1e4 as a number or as a learnable float32 tensor broadcast against the logits.
The profile (tests/conftest.py) is derandomized with no deadline, so every run checks the same
examples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gumbelkit import (
    gumbel_max,
    gumbel_softmax,
    gumbel_softmax_sample,
    gumbel_topk,
)

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]


@dataclass
class Problem:
    logits: torch.Tensor  # leaf, requires_grad
    mask: torch.Tensor  # True where -inf
    dim: int
    tau: float | torch.Tensor
    seed: int

    @property
    def dtype(self) -> torch.dtype:
        return self.logits.dtype


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 5)) for _ in range(ndim))
    dim = draw(st.integers(-ndim, ndim - 1))
    dtype = draw(st.sampled_from(DTYPES))
    scale = draw(st.sampled_from([0.0, 1e-3, 1.0, 30.0, 1e3, 1e4]))
    extremes = draw(st.booleans())
    mask_rate = draw(st.sampled_from([0.0, 0.3, 0.9]))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)

    x = (torch.randn(shape, generator=g, dtype=torch.float64) * scale).clamp(-1e4, 1e4)
    if extremes:  # about half the entries at exactly +-1e4
        pick = torch.rand(shape, generator=g) < 0.5
        sign = torch.where(torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).double()
        x = torch.where(pick, 1e4 * sign, x)
    mask = torch.rand(shape, generator=g) < mask_rate
    # keep one random category per slice along dim unmasked
    d = dim % ndim
    keep_idx = torch.randint(shape[d], shape[:d] + (1,) + shape[d + 1 :], generator=g)
    keep = torch.zeros(shape, dtype=torch.bool).scatter_(d, keep_idx, True)
    mask &= ~keep
    logits = x.to(dtype).masked_fill(mask, -math.inf).requires_grad_(True)

    log10_tau = draw(st.floats(-4.0, 4.0))
    if draw(st.booleans()):
        tau: float | torch.Tensor = 10.0**log10_tau
    else:
        # a float32 tensor tau broadcastable to the logits: per axis either 1 or the full size,
        # possibly with fewer leading axes; values spread around 10**log10_tau within [1e-4, 1e4]
        # (size 1 along dim: one temperature per slice of categories)
        n_lead = draw(st.integers(0, ndim))
        tshape = tuple(
            1 if i == d else draw(st.sampled_from([1, s]))
            for i, s in enumerate(shape)
            if i >= n_lead
        )
        spread = torch.empty(tshape).uniform_(-1.0, 1.0, generator=g)
        t = (10.0 ** (log10_tau + spread)).clamp(1e-4, 1e4)
        tau = t.requires_grad_(True)
    return Problem(logits=logits, mask=mask, dim=dim, tau=tau, seed=seed)


def _weights(p: Problem) -> torch.Tensor:
    # bounded upstream gradient: at tau = 1e-4 the true logit gradient is up to |w| / (2 tau),
    # which must stay inside float16's range (65504) for the half-precision cases
    g = torch.Generator().manual_seed(p.seed + 1)
    return torch.empty(p.logits.shape, dtype=torch.float64).uniform_(-1.0, 1.0, generator=g)


def _check_grads(p: Problem, out: torch.Tensor, with_tau: bool = True) -> None:
    loss = (_weights(p).to(out.dtype) * out).sum()
    inputs = [p.logits] + ([p.tau] if with_tau and isinstance(p.tau, torch.Tensor) else [])
    grads = torch.autograd.grad(loss, inputs, allow_unused=False)
    for gr in grads:
        assert bool(torch.isfinite(gr).all()), gr
    assert bool((grads[0][p.mask] == 0).all())  # masked logits get exactly zero gradient


def _check_one_hot(h: torch.Tensor, p: Problem) -> None:
    assert h.dtype == p.dtype and h.shape == p.logits.shape
    assert bool(((h == 0) | (h == 1)).all())
    assert bool((h.sum(p.dim) == 1).all())
    assert bool((h[p.mask] == 0).all())


def _gen(p: Problem) -> torch.Generator:
    return torch.Generator().manual_seed(p.seed + 2)


GRAD_MODES = ["logits_and_tau", "logits_only", "no_grad"]


def _detached(p: Problem, mode: str) -> tuple[torch.Tensor, float | torch.Tensor]:
    """The problem's logits and tau with gradients as ``mode`` says (each takes its own path)."""
    logits = p.logits if mode != "no_grad" else p.logits.detach()
    tau = p.tau
    if isinstance(tau, torch.Tensor) and mode != "logits_and_tau":
        tau = tau.detach()
    return logits, tau


@settings(max_examples=1000)
@given(problems(), st.booleans(), st.sampled_from(GRAD_MODES))
def test_gumbel_softmax_finite(p: Problem, hard: bool, mode: str):
    logits, tau = _detached(p, mode)
    y = gumbel_softmax(logits, tau, hard=hard, dim=p.dim, generator=_gen(p))
    assert y.dtype == p.dtype and y.shape == p.logits.shape
    assert bool(torch.isfinite(y).all())
    if hard:
        _check_one_hot(y, p)
    else:
        assert bool(((y >= 0) & (y <= 1)).all())
        assert bool((y[p.mask] == 0).all())
        k = p.logits.shape[p.dim]
        eps = torch.finfo(p.dtype).eps
        assert float((y.detach().double().sum(p.dim) - 1).abs().max()) <= k * eps
    if mode != "no_grad":
        _check_grads(p, y, with_tau=mode == "logits_and_tau")
    # every gradient mode takes its own code path; they must draw the same sample
    other = GRAD_MODES[(GRAD_MODES.index(mode) + 1) % 3]
    lo, to = _detached(p, other)
    y2 = gumbel_softmax(lo, to, hard=hard, dim=p.dim, generator=_gen(p)).detach()
    if hard:
        assert torch.equal(y.detach(), y2)
    else:
        # same z = logits + g in both; only the rounding of (z - max) / tau may differ
        cdt = torch.float64 if p.dtype == torch.float64 else torch.float32
        big = float(p.logits.detach().float().nan_to_num(0.0, 0.0, 0.0).abs().max()) + 40.0
        tau_min = float(p.tau.detach().min()) if isinstance(p.tau, torch.Tensor) else p.tau
        tol = torch.finfo(p.dtype).eps + 64 * torch.finfo(cdt).eps * (1.0 + big / tau_min)
        torch.testing.assert_close(y.detach(), y2, rtol=0.0, atol=min(tol, 1.0))


@settings(max_examples=500)
@given(problems())
def test_gumbel_softmax_sample_finite(p: Problem):
    s = gumbel_softmax_sample(p.logits, p.tau, dim=p.dim, generator=_gen(p))
    assert bool(torch.isfinite(s.soft).all())
    _check_one_hot(s.hard, p)
    assert torch.equal(s.hard.argmax(p.dim), s.indices)
    assert not bool(p.mask.gather(p.dim % p.mask.ndim, s.indices.unsqueeze(p.dim)).any())
    _check_grads(p, s.hard + s.soft)


@settings(max_examples=500)
@given(problems())
def test_gumbel_max_never_masked(p: Problem):
    idx = gumbel_max(p.logits, dim=p.dim, generator=_gen(p))
    d = p.dim % p.logits.ndim
    assert idx.dtype == torch.long
    assert idx.shape == p.logits.shape[:d] + p.logits.shape[d + 1 :]
    assert bool(((idx >= 0) & (idx < p.logits.shape[d])).all())
    assert not bool(p.mask.gather(d, idx.unsqueeze(d)).any())


@settings(max_examples=500)
@given(problems(), st.data())
def test_gumbel_topk_distinct_and_never_masked(p: Problem, data: st.DataObject):
    d = p.dim % p.logits.ndim
    allowed = int((~p.mask).sum(d).min())
    k = data.draw(st.integers(1, allowed), label="k")
    idx = gumbel_topk(p.logits, k, dim=p.dim, generator=_gen(p))
    assert idx.shape == p.logits.shape[:d] + (k,) + p.logits.shape[d + 1 :]
    assert not bool(p.mask.gather(d, idx).any())
    srt = idx.sort(dim=d).values
    assert bool((srt.diff(dim=d) > 0).all()) if k > 1 else True  # k distinct categories


@pytest.mark.parametrize("shape,dim", [((20_000, 7), -1), ((30, 7, 500), 1), ((7, 20_000), 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_large_extreme_inputs_agree_across_code_paths(monkeypatch, shape, dim, dtype):
    # Large tensors (block / multi-thread paths: split forced over 2 threads) with logits up to
    # +-1e4, half of them masked, tau at both ends of the range. The number-tau path (block
    # softmax, custom backward) must match the tensor-tau path (plain autograd) drawing the same
    # noise: identical one-hot samples, finite and matching gradients.
    from gumbelkit import _kernels

    monkeypatch.setattr(_kernels, "MIN_PER_THREAD", _kernels.BLOCK)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(0)
        d = dim % len(shape)
        base = (torch.randn(shape, generator=g, dtype=torch.float64) * 1e4).clamp(-1e4, 1e4)
        mask = torch.rand(shape, generator=g) < 0.5
        mask.select(d, 0).fill_(False)  # never a fully masked slice
        logits = base.to(dtype).masked_fill(mask, -math.inf)
        w = (torch.rand(shape, generator=g) * 2 - 1).to(dtype)
        for tau in (1e-4, 1.0, 1e4):
            outs = []
            for tau_arg in (tau, torch.tensor(tau, requires_grad=True)):
                lg = logits.clone().requires_grad_(True)
                s = gumbel_softmax_sample(
                    lg, tau_arg, dim=dim, generator=torch.Generator().manual_seed(5)
                )
                grads = torch.autograd.grad((w * (s.hard + s.soft)).sum(), lg)
                assert all(bool(torch.isfinite(t).all()) for t in (s.soft, grads[0]))
                assert bool((grads[0][mask] == 0).all())
                outs.append((s, grads[0]))
            (s1, g1), (s2, g2) = outs
            assert torch.equal(s1.indices, s2.indices) and torch.equal(s1.hard, s2.hard)
            assert not bool(mask.gather(d, s1.indices.unsqueeze(d)).any())
            scale = float(g2.double().abs().max()) + 1e-30
            assert float((g1.double() - g2.double()).abs().max()) <= 1e-2 * scale
    finally:
        torch.set_num_threads(old)
