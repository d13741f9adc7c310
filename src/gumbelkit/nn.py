"""Thin ``nn.Module`` wrappers over :mod:`gumbelkit.functional`.

The module holds the default arguments; the training loop owns the step and may pass the
step's temperature at call time (``module(logits, tau=schedule(step))``).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from gumbelkit import functional as F
from gumbelkit._validation import check_tau

__all__ = ["GumbelSoftmax"]


class GumbelSoftmax(nn.Module):
    """Module form of :func:`gumbelkit.functional.gumbel_softmax`.

    Args:
        tau: default temperature (positive finite number).
        hard: straight-through one-hot forward with the soft gradient.
        dim: the category dimension.

    Example:
        >>> layer = GumbelSoftmax(tau=1.0, hard=True)
        >>> y = layer(torch.randn(2, 7), tau=0.5)  # this step's temperature
        >>> y.shape
        torch.Size([2, 7])
    """

    def __init__(self, tau: float = 1.0, hard: bool = False, dim: int = -1) -> None:
        super().__init__()
        # float(tensor) would silently drop a learnable tau's gradient: such a tau is refused
        # here and passed at call time, module(logits, tau=t)
        self.tau = check_tau(
            tau, scalar=True, owner="GumbelSoftmax(tau=...) (it stores a float default)"
        )
        if hard not in (True, False):
            raise ValueError(f"hard must be True or False, got {hard!r}")
        self.hard = bool(hard)
        self.dim = dim

    def forward(
        self,
        logits: Tensor,
        tau: float | Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Sample; ``tau`` overrides the module's default for this call."""
        t = self.tau if tau is None else tau
        return F.gumbel_softmax(logits, t, hard=self.hard, dim=self.dim, generator=generator)

    def extra_repr(self) -> str:
        return f"tau={self.tau}, hard={self.hard}, dim={self.dim}"
