"""Every ``nn.Module`` of the library.

* :class:`GumbelSoftmax`: a thin wrapper over :func:`gumbelkit.functional.gumbel_softmax`;
* :class:`ArchitectureSampler` and :class:`MixedOp`: architecture search with one sampled
  operation per edge (GDAS), any estimator of :mod:`gumbelkit.estimators`, or DARTS's softmax
  mixture.

Modules hold default arguments; the training loop owns the step and passes the step's
temperature at call time (``module(logits, tau=schedule(step))``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from gumbelkit import estimators
from gumbelkit import functional as F
from gumbelkit._validation import check_tau

__all__ = ["ARCHITECTURE_MODES", "ArchitectureSample", "ArchitectureSampler", "GumbelSoftmax", "MixedOp"]


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


# ---------------------------------------------------------------------------------------------
# Architecture search: candidate operations on an edge, and the architecture logits
# ---------------------------------------------------------------------------------------------

#: Modes of :class:`ArchitectureSampler` that are not estimator names.
ARCHITECTURE_MODES = ("softmax", "reinforce")


class ArchitectureSample(NamedTuple):
    """One draw of an architecture from :class:`ArchitectureSampler`.

    Attributes:
        weights: ``(*S, E, K)`` edge weights carrying the gradient to alpha: exact one-hots
            for the straight-through estimators and ``reinforce`` (no gradient there), the
            relaxed sample for ``gs``, ``softmax(alpha / tau)`` for ``softmax``.
        indices: ``(*S, E)`` the operation chosen on each edge (for ``softmax``: the argmax).
        log_prob: ``(*S, E)`` :math:`\\log \\mathrm{softmax}(\\alpha)_{e, \\mathrm{indices}_e}`,
            differentiable (the score-function estimator's term).
        sparse: ``True`` when every weight row is an exact one-hot, so that
            :class:`MixedOp` may run only the chosen operation.
    """

    weights: Tensor
    indices: Tensor
    log_prob: Tensor
    sparse: bool


class ArchitectureSampler(nn.Module):
    r"""Architecture logits :math:`\alpha` (edges x operations) and one draw per call.

    Each call draws one operation per edge for the whole batch (GDAS's per-batch choice; pass
    ``sample_shape=(B,)`` for one choice per example):

    .. math::
        w_e = \mathrm{onehot}\big(\arg\max_k (\alpha_{ek} + g_{ek})\big), \qquad
        \nabla_{\alpha_e} w_e := \nabla_{\alpha_e}\, \mathrm{softmax}\!\left(\frac{\alpha_e + g_e}{\tau}\right)

    with ``estimator="st_gs"`` (GDAS); any pathwise estimator of :mod:`gumbelkit.estimators`
    can replace it. ``"softmax"`` gives DARTS's deterministic mixture
    :math:`\mathrm{softmax}(\alpha_e / \tau)` and ``"reinforce"`` an exact sample without a
    pathwise gradient plus its differentiable ``log_prob`` (for a score-function loss such as
    ``((loss - baseline).detach() * log_prob.sum()).backward()``).

    As :math:`\tau \to 0` the straight-through gradient concentrates on near-ties; as
    :math:`\tau \to \infty` it shrinks like :math:`1/\tau`. The sample itself does not depend
    on :math:`\tau`. The Gumbel noise is finite, so no draw is ever NaN or infinite and no
    resampling loop is needed.

    Args:
        num_edges: ``E``, the number of edges (independent choices).
        num_ops: ``K``, the candidate operations per edge.
        estimator: a pathwise estimator name (``estimator_names("pathwise")``), ``"softmax"``
            or ``"reinforce"``.
        tau: default temperature (the training loop passes the step's tau at call time).
        init_std: alpha is initialised ``init_std * randn`` (GDAS: 1e-3).
        **options: estimator options (``k`` for ``gumbel_rao``, ``gap`` for ``gst``).

    Example:
        >>> sampler = ArchitectureSampler(6, 5)
        >>> arch = sampler(tau=10.0)
        >>> arch.weights.shape, arch.indices.shape, arch.sparse
        (torch.Size([6, 5]), torch.Size([6]), True)

    References:
        1. X. Dong, Y. Yang, *Searching for a Robust Neural Architecture in Four GPU Hours*
           (GDAS), CVPR 2019.
        2. H. Liu, K. Simonyan, Y. Yang, *DARTS: Differentiable Architecture Search*, ICLR 2019.
    """

    def __init__(
        self,
        num_edges: int,
        num_ops: int,
        estimator: str = "st_gs",
        tau: float = 1.0,
        *,
        init_std: float = 1e-3,
        **options: Any,
    ) -> None:
        super().__init__()
        for name, value, low in (("num_edges", num_edges, 1), ("num_ops", num_ops, 2)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        if not (isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std >= 0):
            raise ValueError(f"init_std must be a finite number >= 0, got {init_std!r}")
        self.num_edges, self.num_ops = num_edges, num_ops
        self.mode = estimator
        self._estimator: estimators.Estimator | None = None
        if estimator in ARCHITECTURE_MODES:
            if options:
                raise ValueError(f"mode {estimator!r} takes no options, got {sorted(options)}")
            self.tau = check_tau(tau, scalar=True, owner="ArchitectureSampler(tau=...) (a float default)")
        elif estimator in estimators.estimator_names("pathwise"):
            self._estimator = estimators.Estimator(estimator, tau, -1, **options)
            self.tau = self._estimator.tau
        else:
            known = (*estimators.estimator_names("pathwise"), *ARCHITECTURE_MODES)
            raise ValueError(f"estimator must be one of {', '.join(known)}; got {estimator!r}")
        self.init_std = float(init_std)
        self.alpha = nn.Parameter(torch.empty(num_edges, num_ops))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """``alpha = init_std * randn`` (from torch's global generator)."""
        with torch.no_grad():
            self.alpha.normal_(0.0, 1.0).mul_(self.init_std)

    @property
    def sparse(self) -> bool:
        """Whether draws are exact one-hots (only the chosen operation needs to run)."""
        return self.mode == "reinforce" or (self.mode != "softmax" and self.mode != "gs")

    def forward(
        self,
        tau: float | None = None,
        *,
        sample_shape: tuple[int, ...] = (),
        generator: torch.Generator | None = None,
    ) -> ArchitectureSample:
        """Draw an architecture; ``tau`` overrides the default for this call.

        Args:
            tau: this step's temperature.
            sample_shape: ``()`` for one choice per edge (per batch), ``(B,)`` for one per
                example.
            generator: optional ``torch.Generator``.

        Returns:
            :class:`ArchitectureSample` with ``weights`` ``(*sample_shape, E, K)``.
        """
        t = self.tau if tau is None else tau
        shape = torch.Size(sample_shape)
        alpha = self.alpha.expand(*shape, *self.alpha.shape)  # (*S, E, K)
        log_probs = torch.log_softmax(self.alpha, dim=-1).expand_as(alpha)  # (*S, E, K)
        if self.mode == "softmax":
            t = check_tau(t, scalar=True, owner="ArchitectureSampler('softmax')")
            weights = torch.softmax(alpha / t, dim=-1)
            indices = weights.detach().argmax(dim=-1)
        elif self.mode == "reinforce":
            indices = F.gumbel_max(alpha.detach(), -1, generator=generator)  # (*S, E)
            weights = torch.zeros_like(alpha.detach()).scatter_(-1, indices.unsqueeze(-1), 1.0)
        else:
            assert self._estimator is not None
            drawn = self._estimator(alpha, t, generator=generator)
            weights, indices = drawn.output, drawn.indices
        log_prob = log_probs.gather(-1, indices.unsqueeze(-1)).squeeze(-1)  # (*S, E)
        return ArchitectureSample(weights, indices, log_prob, self.sparse)

    @torch.no_grad()
    def probs(self) -> Tensor:
        """``softmax(alpha)`` per edge, ``(E, K)``, without gradient."""
        return torch.softmax(self.alpha, dim=-1)

    @torch.no_grad()
    def derive(self) -> Tensor:
        """The final architecture: the most likely operation per edge, ``(E,)``."""
        return self.alpha.argmax(dim=-1)

    def extra_repr(self) -> str:
        return f"num_edges={self.num_edges}, num_ops={self.num_ops}, estimator={self.mode!r}, tau={self.tau}"


class MixedOp(nn.Module):
    r"""The candidate operations of one edge; runs only the chosen one when the weight is hard.

    .. math::
        \mathrm{out} = w_k\, \mathrm{op}_k(x) \quad (\text{sparse: } w = \mathrm{onehot}(k)),
        \qquad \mathrm{out} = \sum_j w_j\, \mathrm{op}_j(x) \quad (\text{dense})

    With a straight-through one-hot ``w`` the value is exactly ``op_k(x)`` and ``w_k`` carries
    the gradient to the architecture logits. The other operations are not run, so their
    weights get no gradient: the architecture gradient is the straight-through gradient of
    the dense mixture in which the unchosen operations contribute zero (GDAS). The full dense
    gradient would need every operation's output, that is, every forward pass.

    Per batch (``weights`` ``(K,)``) one operation runs on the whole batch; per example
    (``weights`` ``(B, K)``) each operation runs once on the rows that chose it, so every
    example passes through exactly one operation.

    Args:
        ops: the candidate operations (modules mapping ``x`` to outputs of one shape).

    Example:
        >>> edge = MixedOp([nn.Identity(), nn.Tanh()])
        >>> arch = ArchitectureSampler(1, 2)()
        >>> edge(torch.randn(3, 4), arch.weights[0], arch.indices[0]).shape
        torch.Size([3, 4])
    """

    def __init__(self, ops: Sequence[nn.Module]) -> None:
        super().__init__()
        ops = list(ops)
        if len(ops) < 1 or not all(isinstance(op, nn.Module) for op in ops):
            raise ValueError("ops must be a non-empty sequence of nn.Module")
        self.ops = nn.ModuleList(ops)

    def forward(self, x: Tensor, weights: Tensor, indices: Tensor | int | None = None) -> Tensor:
        """Apply the edge.

        Args:
            x: the input, ``(B, *)``.
            weights: ``(K,)`` for one choice per batch or ``(B, K)`` for one per example.
            indices: the chosen operation (an int or 0-d tensor per batch; ``(B,)`` per
                example) when ``weights`` are exact one-hots; ``None`` for a dense mixture
                (every operation runs).

        Returns:
            The edge's output.
        """
        k = len(self.ops)
        if weights.ndim not in (1, 2) or weights.shape[-1] != k:
            raise ValueError(f"weights must have shape (K,) or (B, K) with K={k}, got {tuple(weights.shape)}")
        if weights.ndim == 2 and weights.shape[0] != x.shape[0]:
            raise ValueError(f"per-example weights must have shape (B, K) with B={x.shape[0]}, got {tuple(weights.shape)}")
        if indices is None:
            if weights.ndim == 1:
                return sum((weights[j] * op(x) for j, op in enumerate(self.ops)), x.new_zeros(()))
            w = weights.T.reshape(k, -1, *([1] * (x.ndim - 1)))  # (K, B, 1, ..., 1)
            return sum((w[j] * op(x) for j, op in enumerate(self.ops)), x.new_zeros(()))
        if weights.ndim == 1:
            j = int(indices)
            if not 0 <= j < k:
                raise ValueError(f"indices must be in [0, {k}), got {j}")
            return weights[j] * self.ops[j](x)
        idx = torch.as_tensor(indices, device=weights.device)
        if idx.shape != weights.shape[:1]:
            raise ValueError(f"per-example indices must have shape ({x.shape[0]},), got {tuple(idx.shape)}")
        w = weights.gather(1, idx.unsqueeze(1)).squeeze(1)  # (B,) the chosen weight per row
        parts: list[tuple[Tensor, Tensor]] = []
        for j in torch.unique(idx).tolist():  # one host sync for the set of chosen operations
            rows = (idx == j).nonzero().squeeze(1)  # (B_j,)
            parts.append((rows, self.ops[j](x.index_select(0, rows))))
        first = parts[0][1]
        out = first.new_empty((x.shape[0], *first.shape[1:]))
        for rows, y in parts:
            out = out.index_copy(0, rows, y)
        return w.reshape(-1, *([1] * (out.ndim - 1))) * out
