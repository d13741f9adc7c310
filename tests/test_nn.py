"""Tests of gumbelkit.nn.GumbelSoftmax: a thin wrapper with the functional's semantics."""

from __future__ import annotations

import math

import pytest
import torch

from gumbelkit import GumbelSoftmax, gumbel_softmax


@pytest.mark.parametrize("hard", [False, True])
@pytest.mark.parametrize("dim", [-1, 1])
def test_module_equals_functional_with_same_generator(gen, hard, dim):
    logits = torch.randn(4, 6, 5, generator=gen(0))
    layer = GumbelSoftmax(tau=0.7, hard=hard, dim=dim)
    y = layer(logits, generator=gen(1))
    ref = gumbel_softmax(logits, 0.7, hard, dim=dim, generator=gen(1))
    assert torch.equal(y, ref)


def test_tau_override_at_call_time(gen):
    logits = torch.randn(8, 5, generator=gen(0))
    layer = GumbelSoftmax(tau=1.0)
    y = layer(logits, tau=0.2, generator=gen(1))
    assert torch.equal(y, gumbel_softmax(logits, 0.2, generator=gen(1)))
    assert not torch.equal(y, gumbel_softmax(logits, 1.0, generator=gen(1)))
    assert layer.tau == 1.0  # the override does not stick
    assert torch.equal(
        layer(logits, generator=gen(1)), gumbel_softmax(logits, 1.0, generator=gen(1))
    )


def test_learnable_tensor_tau_at_call_time(gen):
    logits = torch.randn(8, 5, generator=gen(0), requires_grad=True)
    log_tau = torch.nn.Parameter(torch.tensor(math.log(0.5)))
    layer = GumbelSoftmax(hard=True)
    y = layer(logits, tau=log_tau.exp(), generator=gen(1))
    assert torch.equal(y, gumbel_softmax(logits, 0.5, hard=True, generator=gen(1)))
    (y * torch.arange(5.0)).sum().backward()
    assert log_tau.grad is not None and bool(torch.isfinite(log_tau.grad))
    assert logits.grad is not None and bool(torch.isfinite(logits.grad).all())
    # the tensor tau is not detached: both gradients equal the functional's, and tau's is not 0
    lg_ref = logits.detach().clone().requires_grad_(True)
    log_tau_ref = torch.nn.Parameter(torch.tensor(math.log(0.5)))
    y_ref = gumbel_softmax(lg_ref, log_tau_ref.exp(), hard=True, generator=gen(1))
    (y_ref * torch.arange(5.0)).sum().backward()
    assert log_tau.grad != 0
    torch.testing.assert_close(log_tau.grad, log_tau_ref.grad)
    torch.testing.assert_close(logits.grad, lg_ref.grad)


def test_module_has_no_state_and_a_repr():
    layer = GumbelSoftmax(tau=0.5, hard=True, dim=1)
    assert layer.state_dict() == {}
    assert list(layer.parameters()) == []
    assert repr(layer) == "GumbelSoftmax(tau=0.5, hard=True, dim=1)"


def test_module_inside_sequential_trains(gen):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), GumbelSoftmax(tau=0.5, hard=True))
    y = model(torch.randn(10, 3, generator=gen(0)))
    assert bool(((y == 0) | (y == 1)).all()) and bool((y.sum(-1) == 1).all())
    (y * torch.arange(4.0)).sum().backward()
    assert all(
        p.grad is not None and bool(torch.isfinite(p.grad).all()) for p in model.parameters()
    )


@pytest.mark.parametrize("tau", [0.0, -1.0, math.nan, math.inf, True, "0.5", None])
def test_bad_tau_at_construction(tau):
    with pytest.raises(ValueError, match="tau"):
        GumbelSoftmax(tau=tau)


def test_tensor_tau_at_construction_is_refused():
    # float(tensor) would silently detach a learnable temperature: it is passed at call time
    with pytest.raises(ValueError, match="tau"):
        GumbelSoftmax(tau=torch.nn.Parameter(torch.tensor(1.0)))


@pytest.mark.parametrize("tau", [0.0, -2.0, math.nan, torch.tensor(0.0)])
def test_bad_tau_at_call_time(tau):
    with pytest.raises(ValueError, match="tau"):
        GumbelSoftmax()(torch.zeros(2, 3), tau=tau)


def test_bad_hard_and_dim():
    with pytest.raises(ValueError, match="hard"):
        GumbelSoftmax(hard="yes")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dim"):
        GumbelSoftmax(dim=2)(torch.zeros(2, 3))
