"""Tests of gumbelkit.estimators: registry, exact sampling, known identities, gradients, numerics."""

from __future__ import annotations

import pytest
import torch

from gumbelkit import estimators as E

PATHWISE = E.names("pathwise")


def _tau(name: str) -> float:
    return 1.5 if name == "reinmax" else 0.7


@pytest.mark.parametrize("name", PATHWISE)
def test_registry_names_sample_and_backward(name: str) -> None:
    x = torch.randn(3, 5, requires_grad=True)
    s = E.sample(x, name, _tau(name), generator=torch.Generator().manual_seed(0))
    assert s.hard.shape == x.shape and s.index.shape == (3,)
    (s.hard * torch.arange(5.0)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(ValueError, match="gumbel_rao"):
        E.sample(torch.zeros(3), "gumbel-rao")
