"""Tests of gumbelkit.nn.ArchitectureSampler and gumbelkit.nn.MixedOp (architecture search).

What they catch: an edge that runs more than the sampled operation; a weight that does not
carry the estimator's gradient (detached, soft instead of hard, the wrong entry); a sample that
is not an exact categorical draw; NaN / inf under extreme logits and temperatures.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from gumbelkit import estimators
from gumbelkit.nn import ARCHITECTURE_MODES, ArchitectureSampler, MixedOp

SPARSE = tuple(n for n in estimators.estimator_names("pathwise") if n != "gs")


class Counted(nn.Module):
    """A fixed map ``x -> a * x + b * x^2`` that counts its calls and the rows it saw."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a, self.b = a, b
        self.calls = 0
        self.rows = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        self.rows += x.shape[0]
        return self.a * x + self.b * x * x


def counted_ops(k: int = 4) -> list[Counted]:
    return [Counted(1.0 + j, 0.5 - 0.3 * j) for j in range(k)]


def _tau(name: str) -> float:
    return 1.5 if name == "reinmax" else 0.7


@pytest.mark.parametrize("name", [*estimators.estimator_names("pathwise"), *ARCHITECTURE_MODES])
def test_each_edge_runs_exactly_the_sampled_operation(name: str, gen) -> None:
    n_edges, k = 6, 4
    edges = [MixedOp(counted_ops(k)) for _ in range(n_edges)]
    sampler = ArchitectureSampler(n_edges, k, name, tau=_tau(name))
    x = torch.randn(5, 3, generator=gen(0))
    for call in range(1, 21):
        arch = sampler(generator=gen(call))
        idx = arch.indices.tolist() if arch.sparse else [None] * n_edges
        h = x
        for e, edge in enumerate(edges):
            h = torch.tanh(edge(h, arch.weights[e], idx[e]))
        if name in ("gs", "softmax"):  # a dense mixture: every operation runs once per call
            assert not arch.sparse
            assert all(op.calls == call for edge in edges for op in edge.ops)  # type: ignore[attr-defined]
        else:
            assert arch.sparse
            for edge in edges:
                assert sum(op.calls for op in edge.ops) == call  # type: ignore[attr-defined]


def test_per_example_choices_run_each_example_through_one_operation(gen) -> None:
    k, b = 4, 64
    edge = MixedOp(counted_ops(k))
    sampler = ArchitectureSampler(1, k)
    x = torch.randn(b, 3, generator=gen(0))
    arch = sampler(1.0, sample_shape=(b,), generator=gen(1))  # weights (B, 1, K)
    out = edge(x, arch.weights[:, 0], arch.indices[:, 0])
    assert sum(op.rows for op in edge.ops) == b  # type: ignore[attr-defined]
    assert all(op.calls <= 1 for op in edge.ops)  # type: ignore[attr-defined]
    for i in range(b):  # the value is exactly the chosen operation's output (weight 1.0)
        j = int(arch.indices[i, 0])
        assert torch.equal(out[i], edge.ops[j](x[i : i + 1])[0])
    assert len(set(arch.indices[:, 0].tolist())) > 1  # the examples did choose differently


@pytest.mark.parametrize("name", SPARSE + ("reinforce",))
def test_sparse_value_is_the_chosen_operation_and_equals_the_dense_mixture(name: str, gen) -> None:
    edge = MixedOp(counted_ops())
    sampler = ArchitectureSampler(1, 4, name, tau=_tau(name))
    x = torch.randn(7, 3, generator=gen(0))
    arch = sampler(generator=gen(1))
    k = int(arch.indices[0])
    sparse = edge(x, arch.weights[0], k)
    dense = edge(x, arch.weights[0], None)
    assert torch.equal(sparse, edge.ops[k](x))
    torch.testing.assert_close(dense, sparse, rtol=0, atol=0)


def _objective(out: torch.Tensor) -> torch.Tensor:
    return (out.sin() * torch.linspace(-1.0, 2.0, out.numel(), dtype=out.dtype).view_as(out)).sum()


def test_alpha_gradient_is_the_st_gs_gradient_of_the_dense_computation(gen) -> None:
    """Sparse GDAS gradient = the ST-GS gradient of the dense mixture sum_j w_j op_j(x) in which
    the operations that did not run contribute zero: v_k y_k (e_k - y) / tau with
    y = softmax((alpha + g) / tau), v_k = <dL/dout, op_k(x)>. The full dense gradient differs by
    exactly the unrun operations' terms sum_{j != k} v_j y_j (e_j - y) / tau."""
    torch.set_default_dtype(torch.float64)
    try:
        k_ops, tau = 5, 0.6
        edge = MixedOp(counted_ops(k_ops))
        sampler = ArchitectureSampler(1, k_ops, "st_gs")
        with torch.no_grad():
            sampler.alpha.copy_(torch.randn(1, k_ops, generator=gen(0)))
        x = torch.randn(6, 3, generator=gen(1))
        for draw in range(10):
            arch = sampler(tau, generator=gen(100 + draw))
            k = int(arch.indices[0])
            (g_sparse,) = torch.autograd.grad(_objective(edge(x, arch.weights[0], k)), sampler.alpha)
            # the same draw from the estimator directly: its relaxed sample y and the one-hot
            s = estimators.sample(sampler.alpha, "st_gs", tau, generator=gen(100 + draw))
            assert int(s.indices[0]) == k
            y = s.soft.detach()[0]  # (K,)
            outs = [op(x) for op in edge.ops]
            out_k = outs[k].detach().requires_grad_(True)
            (grad_out,) = torch.autograd.grad(_objective(out_k), out_k)
            v = torch.stack([(grad_out * o).sum() for o in outs])  # (K,) dL/dw_j of the dense mixture
            e = torch.eye(k_ops)
            expected = v[k] * y[k] * (e[k] - y) / tau
            torch.testing.assert_close(g_sparse[0], expected, rtol=1e-10, atol=1e-12)
            # the full dense ST-GS gradient (every operation run) = sparse + the unrun terms
            (g_dense,) = torch.autograd.grad(_objective(edge(x, s.output[0], None)), sampler.alpha)
            unrun = sum(v[j] * y[j] * (e[j] - y) / tau for j in range(k_ops) if j != k)
            torch.testing.assert_close(g_dense[0], g_sparse[0] + unrun, rtol=1e-10, atol=1e-12)
            assert g_sparse.abs().sum() > 0
    finally:
        torch.set_default_dtype(torch.float32)


@pytest.mark.parametrize("name", SPARSE)
def test_every_estimator_routes_its_gradient_through_the_chosen_weight(name: str, gen) -> None:
    """For any registered straight-through estimator, the edge's alpha gradient is the
    estimator's Jacobian applied to (dL/dw_k) e_k, computed here through ``s.output`` directly."""
    k_ops, tau = 4, _tau(name)
    edge = MixedOp(counted_ops(k_ops))
    sampler = ArchitectureSampler(3, k_ops, name, tau=tau)
    with torch.no_grad():
        sampler.alpha.copy_(torch.randn(3, k_ops, generator=gen(0)))
    x = torch.randn(4, 2, generator=gen(1))
    arch = sampler(generator=gen(2))
    idx = arch.indices.tolist()
    h = sum(torch.tanh(edge(x, arch.weights[e], idx[e])) * (e + 1) for e in range(3))
    (g_module,) = torch.autograd.grad(_objective(h), sampler.alpha)

    s = estimators.sample(sampler.alpha, name, tau, generator=gen(2))
    assert s.indices.tolist() == idx
    coeff = torch.zeros(3, k_ops)
    for e in range(3):  # dL/dw_e of the chosen weight, by autograd on a scalar stand-in
        w = torch.ones((), requires_grad=True)
        total = sum(torch.tanh((w if ee == e else 1.0) * edge.ops[idx[ee]](x)) * (ee + 1) for ee in range(3))
        (dw,) = torch.autograd.grad(_objective(total), w)
        coeff[e, idx[e]] = dw
    (g_ref,) = torch.autograd.grad((s.output * coeff).sum(), sampler.alpha)
    torch.testing.assert_close(g_module, g_ref, rtol=1e-5, atol=1e-7)
    assert g_module.abs().sum() > 0


def test_softmax_mode_is_the_darts_mixture(gen) -> None:
    edge = MixedOp(counted_ops())
    sampler = ArchitectureSampler(1, 4, "softmax")
    with torch.no_grad():
        sampler.alpha.copy_(torch.randn(1, 4, generator=gen(0)))
    x = torch.randn(3, 2, generator=gen(1))
    arch = sampler(2.0)
    p = torch.softmax(sampler.alpha / 2.0, -1)[0]
    torch.testing.assert_close(arch.weights[0], p)
    expected = sum(p[j] * edge.ops[j](x) for j in range(4))
    torch.testing.assert_close(edge(x, arch.weights[0]), expected)
    assert arch.indices.tolist() == [int(p.argmax())]


@pytest.mark.parametrize("name", ["st_gs", "reinforce"])
def test_draws_are_exact_categorical_samples(name: str, gen, stats) -> None:
    sampler = ArchitectureSampler(2, 5, name)
    with torch.no_grad():
        sampler.alpha.copy_(torch.tensor([[0.0, 1.0, -1.0, 2.0, 0.5], [3.0, -2.0, 0.0, 0.0, 1.0]]))
    arch = sampler(1.0, sample_shape=(100_000,), generator=gen(3))
    p = torch.softmax(sampler.alpha.detach(), -1)
    for e in range(2):
        counts = torch.bincount(arch.indices[:, e], minlength=5)
        stats.chisquare(counts, p[e], alpha=1e-4, what=f"{name} edge {e}")  # fails by chance 1 in 10^4
        assert torch.equal(arch.weights[:, e].detach().argmax(-1), arch.indices[:, e])


def test_log_prob_and_its_gradient(gen) -> None:
    sampler = ArchitectureSampler(3, 4, "reinforce")
    with torch.no_grad():
        sampler.alpha.copy_(torch.randn(3, 4, generator=gen(0)))
    arch = sampler(generator=gen(1))
    logp = torch.log_softmax(sampler.alpha.detach(), -1)
    torch.testing.assert_close(arch.log_prob.detach(), logp.gather(1, arch.indices[:, None])[:, 0])
    assert not arch.weights.requires_grad  # no pathwise gradient: the score function's job
    (g,) = torch.autograd.grad(arch.log_prob.sum(), sampler.alpha)
    expected = torch.eye(4)[arch.indices] - logp.exp()  # d log p_k / d alpha = e_k - p
    torch.testing.assert_close(g, expected)


@pytest.mark.parametrize("scale", [0.0, 1.0, 1e3, 1e6, 1e30])
@pytest.mark.parametrize("tau", [1e-4, 0.1, 10.0, 1e4])
def test_no_nan_ever_without_resampling(scale: float, tau: float, gen) -> None:
    """Every draw is finite and an exact one-hot, and the gradient is finite, for extreme logits
    (including -inf masks) and temperatures; there is no resampling loop to hide a bad draw."""
    edge = MixedOp(counted_ops(5))
    sampler = ArchitectureSampler(4, 5)
    with torch.no_grad():
        a = torch.randn(4, 5, generator=gen(0)) * scale
        a[1, 2] = -math.inf  # a masked operation is never drawn
        a[3] = torch.tensor([scale, -scale, 0.0, scale, -math.inf])
        sampler.alpha.copy_(a)
    x = torch.randn(3, 2, generator=gen(1))
    arch = sampler(tau, sample_shape=(2000,), generator=gen(2))
    w = arch.weights.detach()
    assert torch.isfinite(w).all()
    assert torch.equal(w, torch.nn.functional.one_hot(arch.indices, 5).to(w.dtype))
    assert not (arch.indices[:, 1] == 2).any() and not (arch.indices[:, 3] == 4).any()
    for i in range(0, 2000, 97):
        idx = arch.indices[i].tolist()
        h = sum(edge(x, arch.weights[i, e], idx[e]) for e in range(4))
        (g,) = torch.autograd.grad(_objective(h), sampler.alpha, retain_graph=True)
        finite = torch.isfinite(g) | torch.isneginf(sampler.alpha.detach())  # masked entries may be 0 or -0
        assert finite.all(), (scale, tau, g)


def test_alpha_is_a_parameter_in_the_state_dict() -> None:
    sampler = ArchitectureSampler(6, 5)
    assert isinstance(sampler.alpha, nn.Parameter)
    assert "alpha" in sampler.state_dict()
    assert sampler.alpha.abs().max() < 0.01  # GDAS's 1e-3 * randn
    assert sampler.derive().shape == (6,) and torch.allclose(sampler.probs().sum(-1), torch.ones(6))


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="estimator must be one of .*st_gs.*softmax.*reinforce"):
        ArchitectureSampler(2, 3, "nope")
    with pytest.raises(ValueError, match="num_ops must be an int >= 2"):
        ArchitectureSampler(2, 1)
    with pytest.raises(ValueError, match="num_edges"):
        ArchitectureSampler(0, 3)
    with pytest.raises(ValueError, match="tau must be .*>= 1"):
        ArchitectureSampler(2, 3, "reinmax", tau=0.5)
    edge = MixedOp(counted_ops(3))
    with pytest.raises(ValueError, match="weights must have shape"):
        edge(torch.zeros(2, 1), torch.zeros(4))
    with pytest.raises(ValueError, match="indices must be in"):
        edge(torch.zeros(2, 1), torch.zeros(3), 3)
    with pytest.raises(ValueError, match="ops must be a non-empty sequence"):
        MixedOp([])
