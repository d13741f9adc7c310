"""Correctness of the numpy block kernels (gumbelkit._kernels) and a smoke test of the benchmark.

The fast paths: PCG64 block noise split over threads, the fused ``logits + G``, numpy block
softmax / argmax / one-hot, and the custom autograd Function whose backward saves only the soft
sample. Each is checked against an independent torch or numpy computation. Timings are never
asserted here (benchmarks/bench_ops.py measures them).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats

import gumbelkit as gk
from gumbelkit import _kernels

NEG_INF = float("-inf")
ROOT = Path(__file__).resolve().parents[1]


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def split_threads(monkeypatch):
    """Make every draw above a few blocks run split over 2 threads (the multi-part path)."""
    monkeypatch.setattr(_kernels, "MIN_PER_THREAD", _kernels.BLOCK)
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)


# ------------------------------------------------------------------------------ noise source


def test_exponential_block_maps_the_uniform_grid_ends_to_the_documented_range():
    w = np.array([0.0, 2.0**-53, 0.5, 1.0 - 2.0**-53])
    e = _kernels.exponential_block(w.copy())
    assert e[0] == 2.0**-54  # W = 0 is read as 2^-54
    assert e[1] == pytest.approx(2.0**-53, rel=1e-15)
    assert e[2] == pytest.approx(math.log(2.0), rel=1e-15)
    assert e[3] == pytest.approx(53 * math.log(2.0), rel=1e-15)
    g = -np.log(e)
    assert g[0] == pytest.approx(gk.GUMBEL_NOISE_MAX, rel=1e-15)
    assert g[3] == pytest.approx(gk.GUMBEL_NOISE_MIN, rel=1e-15)


def test_noise_matches_an_independent_pcg64_reference():
    # rebuild the stream from the 4 x 63 seed bits the generator hands out, then apply the
    # textbook recipe G = -log(-log1p(-W)) in float64 with math.* functions
    n = 3 * _kernels.BLOCK + 123  # several blocks and a ragged tail
    r = torch.empty(4, dtype=torch.int64).random_(generator=gen(5)).tolist()
    bg = np.random.PCG64(0)
    bg.state = {
        "bit_generator": "PCG64",
        "state": {"state": ((r[0] << 63) | r[1]) % 2**128, "inc": ((((r[2] << 63) | r[3]) << 1) | 1) % 2**128},
        "has_uint32": 0,
        "uinteger": 0,
    }
    w = np.random.Generator(bg).random(n)
    assert np.all(w * 2.0**53 == np.floor(w * 2.0**53))  # the 53-bit grid
    ref = np.array([-math.log(-math.log1p(-max(x, 2.0**-54))) for x in w])
    g64 = gk.gumbel_noise(n, dtype=torch.float64, generator=gen(5)).numpy()
    np.testing.assert_allclose(g64, ref, rtol=4e-16, atol=4e-16)  # a few float64 ulps
    g32 = gk.gumbel_noise(n, generator=gen(5)).numpy()
    assert np.array_equal(g32, g64.astype(np.float32))  # float32 is the float64 value rounded once
    e64 = gk.exponential_noise(n, dtype=torch.float64, generator=gen(5)).numpy()
    np.testing.assert_allclose(e64, -np.log1p(-np.maximum(w, 2.0**-54)), rtol=4e-16, atol=0)


def test_noise_does_not_depend_on_the_thread_split(monkeypatch):
    n = 9 * _kernels.BLOCK + 7
    one = gk.gumbel_noise(n, generator=gen(2))
    monkeypatch.setattr(_kernels, "MIN_PER_THREAD", _kernels.BLOCK)
    old = torch.get_num_threads()
    try:
        for threads in (2, 3):
            torch.set_num_threads(threads)
            assert torch.equal(gk.gumbel_noise(n, generator=gen(2)), one)
    finally:
        torch.set_num_threads(old)


def test_seeding_semantics():
    a = gk.gumbel_noise((7, 11), generator=gen(3))
    assert torch.equal(a, gk.gumbel_noise((7, 11), generator=gen(3)))
    g = gen(3)
    assert not torch.equal(gk.gumbel_noise((7, 11), generator=g), gk.gumbel_noise((7, 11), generator=g))
    torch.manual_seed(11)
    b = gk.gumbel_noise((7, 11))
    torch.manual_seed(11)
    assert torch.equal(b, gk.gumbel_noise((7, 11)))


def test_threaded_gumbel_max_is_categorical(split_threads):
    # 1.2e6 draws through the 2-thread path; chi-square with 3 dof, seeded; a correct sampler
    # fails with probability 1e-4 (the threshold), i.e. never for this fixed seed
    probs = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    logits = probs.log().float().expand(300_000, 4).contiguous()
    idx = gk.gumbel_max(logits, generator=gen(8))
    counts = torch.bincount(idx, minlength=4).double()
    expected = probs * idx.numel()
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert stats.chi2.sf(chi2, df=3) > 1e-4


# ------------------------------------------------------------------------ fused samplers


# rows longer than a block, small slabs, slabs of whole rows across blocks (2, 3, 40000) and
# rows longer than a block inside slabs (3, 2, 70000): every branch of the block kernels
CASES = [
    ((5, 3 * _kernels.BLOCK // 2), -1),
    ((3, 70_000), -1),
    ((2, 6, 3, 4), 1),
    ((6, 4), 0),
    ((4, 1, 9), 0),
    ((2, 3, 40_000), 1),
    ((3, 2, 70_000), 1),
]


@pytest.mark.parametrize("shape,dim", CASES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_generator_path_equals_noise_path(shape, dim, dtype, split_threads):
    logits = torch.randn(shape, generator=gen(0), dtype=dtype) * 3
    logits.view(-1)[0] = NEG_INF
    noise = gk.gumbel_noise(shape, dtype=dtype, generator=gen(1))
    for tau in (1.0, 0.3):
        a = gk.gumbel_softmax_sample(logits, tau, dim, generator=gen(1))
        b = gk.gumbel_softmax_sample(logits, tau, dim, noise=noise)
        assert torch.equal(a.hard, b.hard) and torch.equal(a.indices, b.indices)
        # the same perturbed logits up to rounding: the generator path adds the unrounded
        # float64 noise and rounds once, so z differs by at most an ulp of |z| <= 40, which the
        # softmax turns into a relative error of that over tau
        tol = 4 * 40 * torch.finfo(dtype).eps / tau
        torch.testing.assert_close(a.soft, b.soft, rtol=tol, atol=tol * 1e-3)
        assert torch.equal(a.indices, (logits + noise).argmax(dim))
    assert torch.equal(gk.gumbel_max(logits, dim, generator=gen(1)), (logits + noise).argmax(dim))
    k = 2 if logits.shape[dim] > 2 else 1  # one category of the first slice is masked
    top = gk.gumbel_topk(logits, k, dim, generator=gen(1))
    assert torch.equal(top, (logits + noise).topk(k, dim).indices)


@pytest.mark.parametrize("shape,dim", CASES)
@pytest.mark.parametrize("tau", [1.0, 0.25, 3.0, 1e-30])
def test_block_softmax_matches_torch(shape, dim, tau):
    logits = torch.randn(shape, generator=gen(0), dtype=torch.float64) * 5
    logits.view(-1)[1] = NEG_INF
    noise = gk.gumbel_noise(shape, dtype=torch.float64, generator=gen(4))
    z = logits + noise
    ref = torch.softmax((z - z.amax(dim, keepdim=True)) / tau, dim)
    y = gk.gumbel_softmax(logits, tau, dim=dim, noise=noise)
    torch.testing.assert_close(y, ref, rtol=1e-13, atol=1e-300)
    # float32: as accurate as torch's own float32 softmax, measured against the float64 result
    y32 = gk.gumbel_softmax(logits.float(), tau, dim=dim, noise=noise.float())
    z32 = logits.float() + noise.float()
    t32 = torch.softmax((z32 - z32.amax(dim, keepdim=True)) / tau, dim)
    err_ours = float((y32.double() - ref).abs().max())
    err_torch = float((t32.double() - ref).abs().max())
    assert err_ours <= 2 * err_torch + 1e-7
    assert bool((y32[logits.float().isneginf()] == 0).all())


@pytest.mark.parametrize("shape,dim", [((50, 6), -1), ((3, 6, 4, 5), 1), ((6, 7), 0)])
def test_ties_resolve_to_the_first_maximum_like_torch(shape, dim):
    # integer-valued z has many exact ties; every path must pick torch.argmax's first index
    logits = torch.randint(0, 3, shape, generator=gen(0)).float()
    noise = torch.zeros(shape)
    want = logits.argmax(dim)
    assert torch.equal(gk.gumbel_max(logits, dim, noise=noise), want)
    s = gk.gumbel_softmax_sample(logits, 0.5, dim, noise=noise)
    assert torch.equal(s.indices, want)
    lg = logits.clone().requires_grad_(True)
    assert torch.equal(gk.gumbel_softmax_sample(lg, 0.5, dim, noise=noise).indices, want)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape,dim", [((40, 33), -1), ((2, 5, 3, 3), 1)])
def test_hard_is_exactly_one_hot(dtype, shape, dim):
    logits = (torch.randn(shape, generator=gen(0)) * 4).to(dtype)
    s = gk.gumbel_softmax_sample(logits, 0.5, dim, generator=gen(1))
    ref = torch.zeros(shape, dtype=dtype).scatter_(dim, s.indices.unsqueeze(dim), 1.0)
    assert s.hard.dtype == dtype and torch.equal(s.hard, ref)
    # the same draw through the hard-only autograd Function (logits needing a gradient)
    y = gk.gumbel_softmax(logits.clone().requires_grad_(True), 0.5, hard=True, dim=dim, generator=gen(1))
    assert y.dtype == dtype and torch.equal(y.detach(), ref)
    y.sum().backward()


# ----------------------------------------------------------------------------- autograd


def _soft_ref(x: torch.Tensor, noise: torch.Tensor, tau: float, dim: int) -> torch.Tensor:
    """softmax(((x - max) + noise) / tau): the samplers' perturbed logits, in plain autograd."""
    return torch.softmax(((x - x.detach().amax(dim, keepdim=True)) + noise) / tau, dim)


def _masked(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return x.masked_fill(mask, NEG_INF)


@pytest.mark.parametrize("shape,dim", [((3, 5), -1), ((2, 4, 3), 1), ((4, 3), 0)])
@pytest.mark.parametrize("tau", [1.0, 0.4])
def test_custom_backward_gradcheck(shape, dim, tau):
    logits = torch.randn(shape, generator=gen(0), dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask.view(-1)[1] = True
    noise = gk.gumbel_noise(shape, dtype=torch.float64, generator=gen(1))

    def f(lg):
        return gk.gumbel_softmax(_masked(lg, mask), tau, dim=dim, noise=noise)

    assert "SoftSampleBackward" in type(f(logits).grad_fn).__name__  # the custom path
    assert torch.autograd.gradcheck(f, (logits,))


@pytest.mark.parametrize("shape,dim", [((6, 7), -1), ((2, 5, 3), 1), ((2, 300, 500), 1)])
def test_hard_backward_equals_soft_gradient(shape, dim):
    # (2, 300, 500) along dim 1: the backward walks each (K, inner) slab in several row chunks
    logits = torch.randn(shape, generator=gen(0), dtype=torch.float64)
    noise = gk.gumbel_noise(shape, dtype=torch.float64, generator=gen(1))
    cot = torch.randn(shape, generator=gen(2), dtype=torch.float64)
    grads = []
    for hard in (False, True):
        lg = logits.clone().requires_grad_(True)
        gk.gumbel_softmax(lg, 0.7, hard=hard, dim=dim, noise=noise).backward(cot)
        grads.append(lg.grad)
    lr = logits.clone().requires_grad_(True)
    _soft_ref(lr, noise, 0.7, dim).backward(cot)  # independent reference
    assert torch.equal(grads[0], grads[1])
    # y * (g - <g, y>) cancels where g ~ <g, y>: an absolute tolerance of 1e-13 (the gradients
    # are O(1)) rather than a relative one; a wrong formula is off by O(1e-2)
    torch.testing.assert_close(grads[0], lr.grad, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("use_noise", [False, True])
@pytest.mark.parametrize("shape,dim", [((6, 7), -1), ((2, 5, 3), 1)])
def test_hard_function_second_and_double_backward(use_noise, shape, dim):
    # the hard Function reuses the soft sample's buffer for the first gradient; a second
    # backward (retain_graph) and a double backward must recompute the same soft sample
    logits = torch.randn(shape, generator=gen(0), dtype=torch.float64)
    cot = torch.randn(shape, generator=gen(2), dtype=torch.float64)
    noise = gk.gumbel_noise(shape, dtype=torch.float64, generator=gen(1))
    kw = {"noise": noise} if use_noise else {"generator": gen(1)}
    lg = logits.clone().requires_grad_(True)
    y = gk.gumbel_softmax(lg, 0.6, hard=True, dim=dim, **kw)
    assert "HardSampleBackward" in type(y.grad_fn).__name__
    y.backward(cot, retain_graph=True)
    first = lg.grad.clone()
    lg.grad = None
    y.backward(cot)
    assert torch.equal(lg.grad, first)
    lr = logits.clone().requires_grad_(True)
    _soft_ref(lr, noise, 0.6, dim).backward(cot)  # the same noise: gen(1) both ways
    torch.testing.assert_close(first, lr.grad, rtol=1e-12, atol=1e-15)
    # second order: d/dl <grad_l <y, cot>, u> equals the soft sample's
    u = torch.randn(shape, generator=gen(3), dtype=torch.float64)
    second = []
    for fn in (
        lambda x: gk.gumbel_softmax(x, 0.6, hard=True, dim=dim, **({"noise": noise} if use_noise else {"generator": gen(1)})),
        lambda x: _soft_ref(x, noise, 0.6, dim),
    ):
        x = logits.clone().requires_grad_(True)
        (g,) = torch.autograd.grad((fn(x) * cot).sum(), x, create_graph=True)
        (h,) = torch.autograd.grad((g * u).sum(), x)
        second.append(h)
    torch.testing.assert_close(second[0], second[1], rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("hard", [False, True])
def test_noise_that_needs_a_gradient_gets_one(hard):
    logits = torch.randn(4, 6, generator=gen(0), dtype=torch.float64, requires_grad=True)
    noise = gk.gumbel_noise((4, 6), dtype=torch.float64, generator=gen(1)).requires_grad_(True)
    cot = torch.randn(4, 6, generator=gen(2), dtype=torch.float64)
    gk.gumbel_softmax(logits, 0.5, hard=hard, noise=noise).backward(cot)
    # d/dnoise = d/dlogits for logits + noise
    assert noise.grad is not None and torch.allclose(noise.grad, logits.grad)


def test_half_precision_gradient_is_computed_in_float32():
    logits = (torch.randn(8, 6, generator=gen(0)) * 2).half().requires_grad_(True)
    noise = gk.gumbel_noise((8, 6), generator=gen(1))
    cot = torch.randn(8, 6, generator=gen(2))
    gk.gumbel_softmax(logits, 0.5, noise=noise).backward(cot.half())
    l32 = logits.detach().float().requires_grad_(True)
    torch.softmax((l32 + noise) / 0.5, -1).backward(cot.half().float())
    assert logits.grad.dtype == torch.float16
    torch.testing.assert_close(logits.grad, l32.grad.half(), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("shape,dim", [*CASES, ((2, 40, 3), 1), ((70_001, 2), 0)])
def test_topk_is_the_float64_top_k_of_the_perturbed_logits(shape, dim, split_threads):
    # every layout's top k is that of l + G in float64, so an offset of 1e6 (ulp 0.06 in
    # float32) does not reorder near-ties; other layouts than rows keep a running top k per
    # column over blocks of rows (or parts of one row), which k up to K exercises
    lo = torch.randn(shape, generator=gen(0)) * 3 + 1e6
    noise = gk.gumbel_noise(shape, dtype=torch.float64, generator=gen(1))
    for k in sorted({1, min(5, shape[dim]), shape[dim]} if shape[dim] <= 40 else {1, 5}):
        top = gk.gumbel_topk(lo, k, dim, generator=gen(1))
        assert torch.equal(top, (lo.double() + noise).topk(k, dim).indices), k


@pytest.mark.parametrize("shape,dim", [c for c in CASES if not _kernels.rows_layout(c[0], c[1])])
def test_values_are_unshifted_only_where_the_slice_maxima_are_small(shape, dim, split_threads):
    # layouts other than rows: one pass gives l + G when every slice maximum is within
    # SHIFT_FREE of 0; a larger maximum anywhere (an offset, here 1e6 on one slice) makes every
    # slice (l - max) + G, from the same noise, so the softmax sees no float32 rounding at 1e6
    from gumbelkit.noise import perturb

    g64 = gk.gumbel_noise(shape, dtype=torch.float64, generator=gen(1))
    lo = torch.randn(shape, generator=gen(0)) * 3
    lo.view(-1)[1] = NEG_INF  # masked entries keep the fast path
    lo.narrow(dim, 0, 1).clamp_(max=_kernels.SHIFT_FREE)
    dim = dim % len(shape)  # perturb takes a normalised dim
    z = perturb(lo, dim, generator=gen(1)).z
    assert torch.equal(z, (lo.double() + g64).float())
    one = lo.clone()
    one.view(-1)[0] = _kernels.SHIFT_FREE * 1.5  # one maximum over the limit: every slice shifted
    for big in (one, lo + 1e6):
        z = perturb(big, dim, generator=gen(1)).z
        m = big.amax(dim, keepdim=True)
        # shifted: within float32 rounding of (l - max) + G, which is 1e6 or 48 away from l + G
        torch.testing.assert_close(z.double(), (big.double() - m.double()) + g64, rtol=2**-22, atol=2**-20)
    a = gk.gumbel_softmax(lo, 0.5, dim=dim, generator=gen(1))
    b = gk.gumbel_softmax(lo + 1e6, 0.5, dim=dim, generator=gen(1))
    # the offset rounds the logits themselves (ulp 0.06 at 1e6), so compare with those rounded
    c = gk.gumbel_softmax((lo + 1e6).double() - 1e6, 0.5, dim=dim, generator=gen(1))
    torch.testing.assert_close(b.double(), c, rtol=1e-5, atol=1e-6)
    assert a.shape == b.shape


# ----------------------------------------------------------------------- folded validation


@pytest.mark.parametrize("bad", ["nan", "posinf", "all_masked"])
@pytest.mark.parametrize("dim", [-1, 1])
def test_folded_validation_raises_and_can_be_turned_off(bad, dim):
    logits = torch.randn(4, 5, 3, generator=gen(0)).movedim(1, dim).contiguous()
    sl = (2, slice(None), 1) if dim == 1 else (2, 1)
    if bad == "nan":
        logits[sl + (0,) if dim == -1 else sl] = float("nan")
    elif bad == "posinf":
        logits[sl + (0,) if dim == -1 else sl] = float("inf")
    else:
        logits[sl] = NEG_INF
    for call in (
        lambda: gk.gumbel_softmax(logits, dim=dim, generator=gen(1)),
        lambda: gk.gumbel_softmax(logits, hard=True, dim=dim, generator=gen(1)),
        lambda: gk.gumbel_max(logits, dim, generator=gen(1)),
        lambda: gk.gumbel_topk(logits, 2, dim, generator=gen(1)),
    ):
        with pytest.raises(ValueError, match="logits"):
            call()
        with gk.validate_args(False):
            call()  # no check, no error (and no crash on the invalid values)


@pytest.mark.parametrize("shape,dim", [((40, 9), -1), ((3, 9, 1), 1), ((9, 4), 0)])
def test_topk_matches_torch_topk_up_to_the_last_unmasked(shape, dim):
    logits = torch.randn(shape, generator=gen(0)) * 2
    logits.narrow(dim, 0, 3).fill_(NEG_INF)  # 6 unmasked per slice: k = 6 uses all of them
    noise = gk.gumbel_noise(shape, generator=gen(1))
    for k in (1, 4, 6):
        got = gk.gumbel_topk(logits, k, dim, noise=noise)
        assert torch.equal(got, (logits + noise).topk(k, dim).indices)


def test_topk_needs_k_unmasked_categories():
    logits = torch.zeros(3, 6)
    logits[1, 2:] = NEG_INF  # 2 unmasked
    gk.gumbel_topk(logits, 2, generator=gen(0))
    with pytest.raises(ValueError, match="k=3"):
        gk.gumbel_topk(logits, 3, generator=gen(0))


# --------------------------------------------------------------------------- benchmark


def test_bench_quick_smoke(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_ops
    finally:
        sys.path.pop(0)
    assert bench_ops.main(["--quick", "--repeats", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "bench_ops.json").read_text())
    assert {"machine", "results", "targets", "repeats", "memory_method"} <= set(report)
    assert report["quick"] is True
    assert {"cpu", "logical_cpus", "torch", "torch_threads"} <= set(report["machine"])
    rows = report["results"]
    assert {(r["op"], r["shape"]) for r in rows} == {
        (op, s) for op in bench_ops.OPS for s in ("lm", "dvae", "vae", "mid")
    }
    for r in rows:
        for key in ("ours_ms", "baseline_ms", "softmax_ms", "speedup", "ours_x_softmax"):
            assert isinstance(r[key], float) and r[key] > 0
        assert len(r["ours_times_ms"]) == len(r["baseline_times_ms"]) == 1
    measured = [r for r in rows if r["memory_ratio"] is not None]
    assert [(r["op"], r["shape"]) for r in measured] == [("soft_fwdbwd", "lm")]
    assert measured[0]["ours_peak_mb"] >= 0 and measured[0]["baseline_peak_mb"] > 0
    assert {t["target"] for t in report["targets"]} >= {"large fwd+bwd speed", "small shapes not slower"}
    assert all(isinstance(t["met"], bool) for t in report["targets"])
    assert "| op | shape |" in (tmp_path / "bench_ops.md").read_text()


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_threaded_draws_work_in_a_forked_child(split_threads):
    # the parent's thread pool object survives a fork without its threads; the child must not hang
    import multiprocessing as mp

    n = 4 * _kernels.BLOCK
    want = gk.gumbel_noise(n, generator=gen(6))  # creates the pool in the parent
    ctx = mp.get_context("fork")
    with ctx.Pool(1) as pool:
        got = pool.apply_async(_child_noise, (n,)).get(timeout=60)
    assert np.array_equal(got, want.numpy())


def _child_noise(n: int) -> np.ndarray:
    _kernels.MIN_PER_THREAD = _kernels.BLOCK
    torch.set_num_threads(2)
    return gk.gumbel_noise(n, generator=gen(6)).numpy()


def test_torch_op_fallbacks_used_off_cpu(monkeypatch):
    # other devices take torch ops (torch.rand noise, torch softmax, the Function's torch
    # backward); force that path on CPU and check it against references
    monkeypatch.setattr(_kernels, "numpy_path", lambda t: False)
    g = gk.gumbel_noise((5, 7), dtype=torch.float64, generator=gen(1))
    w = torch.rand((5, 7), dtype=torch.float64, generator=gen(1)).clamp_(min=2.0**-54)
    torch.testing.assert_close(g, -torch.log(-torch.log1p(-w)), rtol=1e-15, atol=1e-15)
    logits = torch.randn(2, 4, 3, generator=gen(0), dtype=torch.float64, requires_grad=True)
    noise = gk.gumbel_noise(logits.shape, dtype=torch.float64, generator=gen(2))
    for tau in (1.0, 0.3, 2.0):
        y = gk.gumbel_softmax(logits, tau, dim=1, noise=noise)
        assert "SoftSampleBackward" in type(y.grad_fn).__name__
        torch.testing.assert_close(y, torch.softmax((logits + noise) / tau, 1), rtol=1e-13, atol=1e-300)
    assert torch.autograd.gradcheck(lambda x: gk.gumbel_softmax(x, 0.3, dim=1, noise=noise), (logits,))


def test_torch_compile_traces_the_samplers():
    # dynamo cannot trace numpy generators or threads: under torch.compile the samplers take
    # torch ops (backend="eager" traces with dynamo without the slow inductor code generation)
    torch._dynamo.reset()

    def f(x):
        hard = gk.gumbel_softmax(x, 0.5, hard=True)
        soft = gk.gumbel_softmax(x, 0.7)
        return hard, soft, gk.gumbel_max(x), gk.gumbel_topk(x, 2)

    x = torch.randn(6, 9, generator=gen(0), requires_grad=True)
    hard, soft, idx, top = torch.compile(f, backend="eager")(x)
    assert bool(((hard == 0) | (hard == 1)).all()) and torch.equal(hard.sum(-1), torch.ones(6))
    torch.testing.assert_close(soft.sum(-1), torch.ones(6))
    assert idx.shape == (6,) and top.shape == (6, 2)
    (hard * soft).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


@pytest.mark.parametrize("shape,dim", [((50, 40), -1), ((7, 3), -1)])
def test_a_zero_uniform_replays_its_block_with_the_floor(shape, dim, monkeypatch):
    # the fused rows kernels skip the E >= 2^-54 floor (W = 0 has probability 2^-53) and replay
    # a block whose maximum is not finite with the floored recipe. Simulate W = 0 by turning one
    # log E into -inf: the replay must give exactly the unpatched results, and no error.
    logits = torch.randn(shape, generator=gen(0)) * 2
    want = [
        gk.gumbel_max(logits, dim, generator=gen(1)),
        gk.gumbel_topk(logits, 3, dim, generator=gen(1)),
        gk.gumbel_softmax(logits, 0.5, dim=dim, generator=gen(1)),
    ]
    original = _kernels._log_e_unfloored
    hits = []

    def with_a_zero_uniform(w):
        original(w)
        w[w.size // 2] = -np.inf  # log E of E = 0
        hits.append(1)
        return w

    monkeypatch.setattr(_kernels, "_log_e_unfloored", with_a_zero_uniform)
    got = [
        gk.gumbel_max(logits, dim, generator=gen(1)),
        gk.gumbel_topk(logits, 3, dim, generator=gen(1)),
        gk.gumbel_softmax(logits, 0.5, dim=dim, generator=gen(1)),
    ]
    assert len(hits) == 3
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def test_compare_versions_quick_smoke(tmp_path):
    # the A/B speed comparison against another commit runs and writes a ratio for every row;
    # against this very commit the median ratio is about 1 (a loose bound: timings are noisy)
    import shutil
    import subprocess

    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a git checkout (the reference is exported with git archive)")
    out = tmp_path / "cmp"
    subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_versions.py"), "HEAD", "--quick",
         "--ops", "soft_fwdbwd,gumbel_max", "--out", str(out), "--clock", "cpu", "--threads", "1"],
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    report = json.loads((out / "compare_versions.json").read_text())
    assert len(report["results"]) == 8 and report["reference_commit"] == report["checkout_commit"]
    assert report["clock"] == "cpu" and report["torch_threads"] == 1
    for row in report["results"]:
        lo, hi = row["ratio_ci95"]
        assert lo <= row["ratio_median"] <= hi and row["verdict"] in ("slower", "within", "undecided")
    ratios = [r["ratio_median"] for r in report["results"]]
    assert all(0.2 < r < 5.0 for r in ratios) and 0.5 < float(np.median(ratios)) < 2.0


def test_compare_versions_median_interval_and_verdict():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import compare_versions as cv
    finally:
        sys.path.pop(0)
    # n = 21 at 95%: P(Binomial(21, 1/2) <= 5) = 0.0133 <= 0.025 < P(<= 6) = 0.0392, so the 6th
    # and 16th order statistics (coverage 97.3%); n = 5: no pair reaches 95%, the extremes
    assert cv.median_ci([float(v) for v in range(21, 0, -1)]) == (6.0, 16.0)
    assert cv.median_ci([3.0, 1.0, 2.0, 5.0, 4.0]) == (1.0, 5.0)
    assert cv.verdict(1.06, 1.2) == "slower" and cv.verdict(0.9, 1.05) == "within"
    assert cv.verdict(1.0, 1.08) == "undecided"


def test_compare_versions_summarize_adds_intervals(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import compare_versions as cv
    finally:
        sys.path.pop(0)
    path = tmp_path / "old.json"
    path.write_text(json.dumps({"results": [{"op": "x", "ratios": [1.1 + 0.001 * i for i in range(21)]}]}))
    assert cv.main([str(path), "--summarize"]) == 0
    row = json.loads(path.read_text())["results"][0]
    assert row["ratio_ci95"] == [pytest.approx(1.105), pytest.approx(1.115)] and row["verdict"] == "slower"
