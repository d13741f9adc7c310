r"""Choosing ``k`` of ``n`` with gradients: exact k-subset samples and their relaxations.

Four ways to draw a k-subset of the categories along ``dim`` and pass a gradient to the logits,
behind one registry (:func:`sample_subset`, :class:`SubsetEstimator`):

================  =========================================  ====================================
name              forward (``output``)                       gradient of ``output``
================  =========================================  ====================================
``st_topk``       exact k-hot of Gumbel-top-k                relaxed top-k (same noise)
``relaxed_topk``  relaxed top-k, successive softmaxes [1]     its own
``l2x``           max of k Concrete samples [2]              its own
``simple``        exact k-subset of the conditional          the exact marginals' Jacobian [3]
                  distribution :math:`p(S)\propto\prod_{i\in S}e^{\ell_i}`
================  =========================================  ====================================

Each returns a :class:`SubsetSample` ``(output, hard, soft, indices)``: ``output`` is the
tensor to use downstream and carries the estimator's gradient, ``hard`` the exact (k-)hot
sample that is the ``tau -> 0`` limit of ``soft`` (for ``simple``: the sample itself),
``soft`` the relaxed sample (for ``simple``: the exact marginals :math:`\mu`) and
``indices`` the chosen categories along ``dim``.

The two sampling distributions differ. Gumbel-top-k (``st_topk``, ``relaxed_topk``) is
the Plackett-Luce draw without replacement: the first category with probability
:math:`p_i = \mathrm{softmax}(\ell)_i`, the next from the rest renormalised, and so on.
``simple`` samples the exponential family over k-subsets, :math:`p(S) \propto
\exp\sum_{i\in S}\ell_i` (independent Bernoullis conditioned on a sum of ``k``), whose marginals
and samples an :math:`O(nk)` log-space dynamic programme gives exactly. ``l2x``'s limit is
the union of ``k`` independent categorical draws, which may hold fewer than ``k`` categories.

All functions take any ``dim`` (via ``movedim``), ``-inf`` masks (never chosen; ``k`` must not
exceed the unmasked count), ``generator=`` and ``noise=``, and compute float16 / bfloat16 in
float32, returning the logits' dtype.

References:
    1. S. M. Xie, S. Ermon, *Reparameterizable Subset Sampling via Continuous Relaxations*,
       IJCAI 2019.
    2. J. Chen, L. Song, M. J. Wainwright, M. I. Jordan, *Learning to Explain: An
       Information-Theoretic Perspective on Model Interpretation* (L2X), ICML 2018.
    3. K. Ahmed, Z. Zeng, M. Niepert, G. Van den Broeck, *SIMPLE: A Gradient Estimator for
       k-Subset Sampling*, ICLR 2023.
    4. W. Kool, H. van Hoof, M. Welling, *Stochastic Beams and Where to Find Them: The
       Gumbel-Top-k Trick*, ICML 2019.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from gumbelkit._validation import (
    check_dim,
    check_float_tensor,
    check_logits,
    check_tau,
    compute_dtype,
    get_validate_args,
    lookup,
)
from gumbelkit.functional import gumbel_topk, straight_through
from gumbelkit.noise import gumbel_noise

__all__ = [
    "SubsetEstimator",
    "SubsetEstimatorSpec",
    "SubsetSample",
    "get_subset_estimator",
    "k_subset_marginals",
    "k_subset_sample",
    "max_concrete",
    "relaxed_topk",
    "sample_subset",
    "simple",
    "subset_estimator_names",
    "subset_spec",
]

NEG_INF = float("-inf")


class SubsetSample(NamedTuple):
    """One k-subset draw, four views.

    Attributes:
        output: the tensor to use downstream; carries the estimator's gradient.
        hard: exact (k-)hot sample in the logits' dtype (entries exactly 0 or 1).
        soft: the relaxed sample (``simple``: the exact inclusion marginals).
        indices: ``LongTensor`` with size ``k`` along ``dim``: the chosen categories (Gumbel-top-k
            order for the top-k family, ascending for ``simple``, the ``k`` draws, possibly
            repeated, for ``l2x``).
    """

    output: Tensor
    hard: Tensor
    soft: Tensor
    indices: Tensor


# --------------------------------------------------------------------------- checks


def _check_k(k: object, n: int, dim: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int with 1 <= k <= {n} (the size of dim {dim}), got {k!r}")
    return k


def _prepare(logits: Tensor, k: object, dim: int) -> tuple[int, int]:
    """Validate ``logits``, ``dim`` and ``k``; return ``(dim, k)`` with ``dim`` normalised."""
    check_float_tensor(logits, "logits")
    d = check_dim(logits, dim)
    kk = _check_k(k, logits.shape[d], dim)
    check_logits(logits, d)
    if get_validate_args():
        allowed = (~torch.isneginf(logits)).sum(dim=d)
        if bool((allowed < kk).any()):
            raise ValueError(
                f"k={kk} is larger than the number of unmasked (not -inf) categories in some slice "
                f"along dim={dim} (smallest count: {int(allowed.min())})"
            )
    return d, kk


def _check_scalar_tau(tau: object) -> float | Tensor:
    """A positive finite number, or a 0-d positive tensor (which may require grad)."""
    t = check_tau(tau)
    if isinstance(t, Tensor) and t.ndim != 0:
        raise ValueError(f"tau must be a positive number or a 0-d tensor, got a tensor of shape {tuple(t.shape)}")
    return t


def _noise(noise: object, shape: tuple[int, ...], what: str) -> Tensor:
    if not isinstance(noise, Tensor) or tuple(noise.shape) != shape:
        got = tuple(noise.shape) if isinstance(noise, Tensor) else type(noise).__name__
        raise ValueError(f"noise must be a tensor of shape {shape} ({what}), got {got}")
    return noise.detach()


def _gumbel(logits: Tensor, noise: Tensor | None, generator: torch.Generator | None) -> Tensor:
    """Gumbel noise of the logits' shape in the compute dtype (drawn, or the given ``noise``)."""
    cdt = compute_dtype(logits.dtype)
    if noise is None:
        return gumbel_noise(logits.shape, dtype=cdt, device=logits.device, generator=generator)
    return _noise(noise, tuple(logits.shape), "Gumbel noise of the logits' shape").to(cdt)


def _k_hot(indices: Tensor, like: Tensor) -> Tensor:
    """Exact k-hot (last dim) of ``indices`` ``(*, k)`` with ``like``'s shape and dtype."""
    return torch.zeros_like(like).scatter_(-1, indices, 1.0)


# --------------------------------------------------------------------------- relaxed top-k


def _relaxed_topk_last(z: Tensor, k: int, tau: float | Tensor) -> Tensor:
    r"""Xie & Ermon's relaxed k-hot of perturbed logits ``z`` ``(*, n)`` (categories last).

    :math:`a^{(1)} = z`, :math:`p^{(j)} = \mathrm{softmax}(a^{(j)}/\tau)`,
    :math:`a^{(j+1)} = a^{(j)} + \log(1 - p^{(j)})`; returns :math:`\sum_{j\le k} p^{(j)}`.
    """
    alpha = z
    out = torch.zeros_like(z)
    neg_inf = torch.full((), NEG_INF, dtype=z.dtype, device=z.device)
    zero = torch.zeros((), dtype=z.dtype, device=z.device)
    for j in range(k):
        # shift by the (constant) max first: (alpha - max) / tau <= 0 cannot overflow for tiny tau
        u = (alpha - alpha.detach().amax(dim=-1, keepdim=True)) / tau  # (*, n)
        lse = torch.logsumexp(u, dim=-1, keepdim=True)  # (*, 1), finite: some entry is finite
        p = torch.exp(u - lse)  # (*, n)
        out = out + p
        if j == k - 1:
            break
        # log(1 - p) without cancellation: log1p(-p) is accurate for every entry but the largest
        # (p <= 1/2 there); for the largest, log(sum of the others) - lse, computed directly
        top = torch.zeros_like(u, dtype=torch.bool).scatter_(-1, u.detach().argmax(dim=-1, keepdim=True), True)
        rest = torch.logsumexp(torch.where(top, neg_inf, u), dim=-1, keepdim=True) - lse  # (*, 1)
        # where-safe: the top entry's log1p branch sees p = 0, so its unused gradient is finite
        log1m = torch.where(top, rest, torch.log1p(-torch.where(top, zero, p)))  # (*, n)
        alpha = alpha + log1m
    return out


def _topk_sample(
    logits: Tensor, k: int, tau: float | Tensor, d: int, noise: Tensor | None, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(hard, soft, indices)`` of one Gumbel-top-k draw; ``soft`` is differentiable."""
    g = _gumbel(logits, noise, generator)  # (*, n, *) compute dtype
    indices = gumbel_topk(logits.detach(), k, d, noise=g)  # (*, k, *) exact, in Gumbel order
    z = (logits.to(g.dtype) + g).movedim(d, -1)  # (*, n)
    soft = _relaxed_topk_last(z, k, tau).to(logits.dtype).movedim(-1, d)  # (*, n, *)
    hard = _k_hot(indices.movedim(d, -1), soft.detach().movedim(d, -1)).movedim(-1, d)
    return hard, soft, indices


def relaxed_topk(
    logits: Tensor,
    k: int,
    tau: float | Tensor = 1.0,
    hard: bool = False,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    r"""Relaxed k-hot sample by successive softmaxes (Xie & Ermon 2019); a differentiable top-k.

    .. math::
        z = \ell + g,\quad a^{(1)} = z,\quad p^{(j)} = \mathrm{softmax}\!\left(\frac{a^{(j)}}{\tau}\right),
        \quad a^{(j+1)} = a^{(j)} + \log\left(1 - p^{(j)}\right),\qquad y = \sum_{j=1}^{k} p^{(j)}

    Each softmax softly picks the largest remaining key and the log term softly removes it.
    :math:`y` has entries in :math:`[0, 1]` summing to ``k``. As :math:`\tau \to 0` it tends to
    the exact k-hot of the ``k`` largest :math:`\ell_i + g_i`, a Gumbel-top-k (Plackett-Luce)
    sample without replacement; as :math:`\tau \to \infty` to the uniform :math:`k/n`.

    Args:
        logits: ``(*, n, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        k: subset size, ``1 <= k <=`` the number of unmasked categories.
        tau: temperature, a positive number or a 0-d tensor (learnable: it gets a gradient).
        hard: return the exact k-hot with the relaxed sample's gradient (straight-through).
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise of the logits' shape.

    Returns:
        Tensor of the logits' shape and dtype.

    Example:
        >>> y = relaxed_topk(torch.randn(4, 10), k=3, tau=0.5)
        >>> torch.allclose(y.sum(-1), torch.full((4,), 3.0))
        True
    """
    if hard not in (True, False):
        raise ValueError(f"hard must be True or False, got {hard!r}")
    t = _check_scalar_tau(tau)
    d, kk = _prepare(logits, k, dim)
    h, soft, _ = _topk_sample(logits, kk, t, d, noise, generator)
    return straight_through(h, soft) if hard else soft


def _st_topk(
    logits: Tensor, k: int, tau: float | Tensor = 1.0, dim: int = -1, *,
    generator: torch.Generator | None = None, noise: Tensor | None = None,
) -> SubsetSample:
    t = _check_scalar_tau(tau)
    d, kk = _prepare(logits, k, dim)
    h, soft, indices = _topk_sample(logits, kk, t, d, noise, generator)
    return SubsetSample(straight_through(h, soft), h, soft, indices)


def _relaxed_topk_estimator(
    logits: Tensor, k: int, tau: float | Tensor = 1.0, dim: int = -1, *,
    generator: torch.Generator | None = None, noise: Tensor | None = None,
) -> SubsetSample:
    t = _check_scalar_tau(tau)
    d, kk = _prepare(logits, k, dim)
    h, soft, indices = _topk_sample(logits, kk, t, d, noise, generator)
    return SubsetSample(soft, h, soft, indices)


# --------------------------------------------------------------------------- L2X


def _max_concrete_sample(
    logits: Tensor, k: int, tau: float | Tensor, dim: int = -1, *,
    generator: torch.Generator | None = None, noise: Tensor | None = None,
) -> SubsetSample:
    t = _check_scalar_tau(tau)
    d, kk = _prepare(logits, k, dim)
    cdt = compute_dtype(logits.dtype)
    shape = (kk, *logits.shape)
    if noise is None:
        g = gumbel_noise(shape, dtype=cdt, device=logits.device, generator=generator)
    else:
        g = _noise(noise, shape, "k Gumbel draws of the logits' shape, stacked first").to(cdt)
    z = (logits.to(cdt).unsqueeze(0) + g).movedim(d + 1, -1)  # (k, *, n)
    u = (z - z.detach().amax(dim=-1, keepdim=True)) / t  # <= 0: no overflow for tiny tau
    soft = torch.softmax(u, dim=-1).amax(dim=0)  # (*, n) element-wise max of k Concrete samples
    draws = z.detach().argmax(dim=-1)  # (k, *) the k categorical draws (tau -> 0 limit)
    idx = draws.movedim(0, -1)  # (*, k)
    hard = _k_hot(idx, soft.detach())  # union of the k draws: at most k ones
    soft_o = soft.to(logits.dtype).movedim(-1, d)
    return SubsetSample(soft_o, hard.to(logits.dtype).movedim(-1, d), soft_o, idx.movedim(-1, d))


def max_concrete(
    logits: Tensor,
    k: int,
    tau: float | Tensor = 0.1,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    r"""L2X's relaxed k-hot: the element-wise maximum of ``k`` independent Concrete samples.

    .. math::
        y_i = \max_{j=1..k}\ \mathrm{softmax}\!\left(\frac{\ell + g^{(j)}}{\tau}\right)_i,
        \qquad g^{(j)}_i \sim \mathrm{Gumbel}(0, 1)\ \text{i.i.d.}

    As :math:`\tau \to 0` each Concrete sample tends to a one-hot categorical draw, so ``y``
    tends to the indicator of the union of ``k`` draws *with replacement* (at most ``k`` ones);
    as :math:`\tau \to \infty` to the uniform :math:`1/n`. L2X uses :math:`\tau = 0.1`.

    Args:
        logits: ``(*, n, *)`` logits; ``-inf`` masks a category.
        k: number of Concrete samples, ``1 <= k <=`` the unmasked count.
        tau: temperature (number or 0-d tensor).
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn Gumbel noise of shape ``(k, *logits.shape)``.

    Returns:
        Tensor of the logits' shape and dtype, entries in :math:`[0, 1]`.

    Example:
        >>> max_concrete(torch.randn(2, 10), k=3).shape
        torch.Size([2, 10])
    """
    return _max_concrete_sample(logits, k, tau, dim, generator=generator, noise=noise).output


# --------------------------------------------------------------------------- exact k-subsets (SIMPLE)
#
# Tables, items 0..n-1 along the last dim:
#   A[..., i, j] = log e_j(exp x_0, ..., exp x_{i-1})    (prefix of the first i items), (*, n+1, k+1)
#   B[..., m, j] = log e_j(exp x_m, ..., exp x_{n-1})    (suffix from item m),          (*, n+1, k+1)
# with e_j the elementary symmetric polynomial of degree j, so Z = e_k(exp x) = exp A[..., n, k].
# Classifying the subsets of size j by their largest item m gives
#   A[..., i, j] = logsumexp_{m < i} (x_m + A[..., m, j - 1]),
# a cumulative log-sum-exp over the items: k vectorised steps (O(nk) work). Autograd never runs
# through these forward tables; for second derivatives (create_graph=True) the backward rebuilds
# them with an item-by-item recursion whose every operation is twice differentiable at -inf.


def _prefix_tables(x: Tensor, k: int) -> Tensor:
    """``A``: ``(*, n + 1, k + 1)``, by k cumulative log-sum-exps (no autograd through it)."""
    n = x.shape[-1]
    cols = [torch.zeros((*x.shape[:-1], n + 1), dtype=x.dtype, device=x.device)]  # e_0 = 1
    first = torch.full((*x.shape[:-1], 1), NEG_INF, dtype=x.dtype, device=x.device)  # e_j(nothing) = 0
    for _ in range(k):
        # the largest item m < i of the subset, weight e^{x_m} e_{j-1}(x_{<m}); logcumsumexp keeps
        # a running maximum, so prefixes far below the row's largest term keep their precision
        cols.append(torch.cat([first, torch.logcumsumexp(x + cols[-1][..., :-1], dim=-1)], dim=-1))
    return torch.stack(cols, dim=-1)


def _prefix_expectations(x: Tensor, v: Tensor, a: Tensor, k: int) -> Tensor:
    r"""``E[..., i, j]``: mean of :math:`\sum_{m\in S} v_m` over the size-j subsets S of the first
    i items, weighted by :math:`\prod_{m\in S} e^{x_m}`: ``(*, n + 1, k + 1)``.

    Same classification by the largest item as ``A``: a weighted cumulative sum divided by the
    weights' cumulative sum ``exp(A)``, taken in log space separately for the positive and
    negative parts of the summand (each ratio is at most the summand's largest magnitude).
    """
    n = x.shape[-1]
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    cols = [torch.zeros((*x.shape[:-1], n + 1), dtype=x.dtype, device=x.device)]
    for j in range(1, k + 1):
        t = x + a[..., :-1, j - 1]  # (*, n) log weight of "largest item is m"
        c = cols[-1][..., :-1] + v  # (*, n) the mean given m: E_{j-1}(x_{<m}) + v_m
        base = a[..., 1:, j]
        base = torch.where(torch.isfinite(base), base, zero)  # an empty state gets mean 0
        pos = torch.exp(torch.logcumsumexp(t + torch.log(c.clamp(min=0)), dim=-1) - base)
        neg = torch.exp(torch.logcumsumexp(t + torch.log((-c).clamp(min=0)), dim=-1) - base)
        cols.append(torch.cat([torch.zeros_like(pos[..., :1]), pos - neg], dim=-1))
    return torch.stack(cols, dim=-1)


def _logaddexp_twice_differentiable(p: Tensor, q: Tensor) -> Tensor:
    """``logaddexp`` whose gradient is 0, not NaN, where both inputs are ``-inf``."""
    m = torch.maximum(p, q)
    ok = torch.isfinite(m)
    m0 = torch.where(ok, m, torch.zeros((), dtype=m.dtype, device=m.device))
    s = torch.exp(p - m0) + torch.exp(q - m0)
    # double where: the unused branch sees log(1), so its (discarded) gradient is finite
    s1 = torch.where(ok, s, torch.ones((), dtype=s.dtype, device=s.device))
    return torch.where(ok, m0 + torch.log(s1), m)


def _prefix_tables_graph(x: Tensor, k: int) -> Tensor:
    """``A`` item by item, ``A[i+1, j] = logaddexp(A[i, j], A[i, j-1] + x_i)``: twice differentiable."""
    first = torch.full((*x.shape[:-1], k + 1), NEG_INF, dtype=x.dtype, device=x.device)
    prev = torch.cat([torch.zeros_like(first[..., :1]), first[..., 1:]], dim=-1)  # e_0 = 1
    rows = [prev]
    for i in range(x.shape[-1]):
        grow = _logaddexp_twice_differentiable(prev[..., 1:], prev[..., :-1] + x[..., i : i + 1])  # (*, k)
        prev = torch.cat([prev[..., :1], grow], dim=-1)  # (*, k + 1)
        rows.append(prev)
    return torch.stack(rows, dim=-2)


def _prefix_expectations_graph(x: Tensor, v: Tensor, a: Tensor, k: int) -> Tensor:
    """:func:`_prefix_expectations` item by item (convex combinations): twice differentiable."""
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    prev = torch.zeros_like(a[..., 0, :])  # (*, k + 1)
    rows = [prev]
    for i in range(x.shape[-1]):
        cur = a[..., i + 1, 1:]  # (*, k)
        base = torch.where(torch.isfinite(cur), cur, zero)  # an unreachable state gets weight 0
        w_skip = torch.exp(a[..., i, 1:] - base)  # item i left out
        w_take = torch.exp(a[..., i, :-1] + x[..., i : i + 1] - base)  # item i taken
        grow = w_skip * prev[..., 1:] + w_take * (prev[..., :-1] + v[..., i : i + 1])
        prev = torch.cat([prev[..., :1], grow], dim=-1)
        rows.append(prev)
    return torch.stack(rows, dim=-2)


def _tables(x: Tensor, k: int, graph: bool = False) -> tuple[Tensor, Tensor]:
    """Prefix ``A`` and suffix ``B`` tables (``graph``: the twice-differentiable recursion)."""
    prefix = _prefix_tables_graph if graph else _prefix_tables
    return prefix(x, k), prefix(x.flip(-1), k).flip(-2)  # suffix of x = prefix of the reversed x


def _marginals(x: Tensor, k: int, graph: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    r""":math:`\mu_t = P(t \in S)` and the tables, for :math:`p(S) \propto \exp\sum_{i\in S} x_i`.

    :math:`\mu_t = e^{x_t} \sum_j e_j(x_{<t})\, e_{k-1-j}(x_{>t}) / Z`.
    """
    a, b = _tables(x, k, graph)
    log_z = a[..., -1, k : k + 1]  # (*, 1), finite: at least k unmasked categories
    pair = a[..., :-1, :k] + b[..., 1:, :k].flip(-1)  # (*, n, k): before t size j, after t size k-1-j
    mu = torch.exp(x + torch.logsumexp(pair, dim=-1) - log_z).clamp(max=1.0)  # round-off can exceed 1
    return mu, a, b


def _marginals_hvp(x: Tensor, v: Tensor, k: int, mu: Tensor, a: Tensor, b: Tensor, graph: bool = False) -> Tensor:
    r"""The Jacobian-vector product :math:`(\partial\mu/\partial x)\, v = \mathrm{Cov}(z)\, v`.

    :math:`\mathrm{Cov}(z_t, S) = \mu_t\,(v_t + \mathbb E[S_{-t} \mid z_t = 1] - \mathbb E[S])` with
    :math:`S = \sum_m v_m z_m`; the conditional mean combines prefix and suffix expectation
    tables. The Jacobian is symmetric (it is the Hessian of :math:`\log Z`), so this is also the
    vector-Jacobian product autograd needs. O(nk).
    """
    expect = _prefix_expectations_graph if graph else _prefix_expectations
    ea = expect(x, v, a, k)  # (*, n + 1, k + 1)
    eb = expect(x.flip(-1), v.flip(-1), b.flip(-2), k).flip(-2)
    pair = a[..., :-1, :k] + b[..., 1:, :k].flip(-1)  # (*, n, k)
    c = torch.logsumexp(pair, dim=-1, keepdim=True)  # (*, n, 1), finite when >= k unmasked
    zero = torch.zeros((), dtype=x.dtype, device=x.device)
    w = torch.exp(pair - torch.where(torch.isfinite(c), c, zero))  # (*, n, k), rows sum to 1
    cond = (w * (ea[..., :-1, :k] + eb[..., 1:, :k].flip(-1))).sum(dim=-1)  # (*, n)
    mean = (mu * v).sum(dim=-1, keepdim=True)  # (*, 1)
    return mu * (v + cond - mean)


class _KSubsetMarginals(torch.autograd.Function):
    """``mu = P(t in S)`` under :math:`p(S) \\propto \\exp\\sum_{t\\in S} x_t`, ``|S| = k``.

    Forward and backward are O(nk) log-space dynamic programmes (categories last, compute dtype).
    The backward is the exact Hessian-vector product of :math:`\\log Z`; under
    ``create_graph=True`` it recomputes the tables from ``x`` with a twice-differentiable
    recursion, so second derivatives are exact too. Returns ``(mu, A, B)``; the tables are
    non-differentiable by-products (the sampler reuses ``A``).
    """

    generate_vmap_rule = True

    @staticmethod
    def forward(x: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor]:  # type: ignore[override]
        return _marginals(x, k)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, ...]) -> None:
        x, k = inputs
        mu, a, b = output
        ctx.k = k  # a Python int, not a tensor
        ctx.save_for_backward(x, mu, a, b)
        ctx.mark_non_differentiable(a, b)

    @staticmethod
    def backward(ctx: Any, grad_mu: Tensor, grad_a: Tensor | None, grad_b: Tensor | None) -> tuple[Tensor, None]:  # type: ignore[override]
        x, mu, a, b = ctx.saved_tensors
        k = ctx.k
        if torch.is_grad_enabled():
            # double backward: rebuild everything from x so that the graph reaches x
            mu, a, b = _marginals(x, k, graph=True)
            return _marginals_hvp(x, grad_mu, k, mu, a, b, graph=True), None
        return _marginals_hvp(x, grad_mu, k, mu, a, b), None


def k_subset_marginals(logits: Tensor, k: int, dim: int = -1) -> Tensor:
    r"""Exact inclusion probabilities of the k-subset distribution, differentiable.

    .. math::
        p(S) = \frac{\exp\sum_{i\in S}\ell_i}{Z},\quad |S| = k,\qquad
        \mu_i = P(i \in S) = \frac{\partial \log Z}{\partial \ell_i},\qquad
        Z = e_k(e^{\ell_1}, \dots, e^{\ell_n})

    (independent Bernoulli(sigmoid(l_i)) variables conditioned on their sum being ``k``). ``Z``
    and the marginals come from an O(nk) dynamic programme in log space; the backward pass is
    the exact Hessian-vector product of :math:`\log Z` (also O(nk)). Shifting all logits by a
    constant changes nothing; as the logits' gaps grow, :math:`\mu` tends to the top-k
    indicator.

    Args:
        logits: ``(*, n, *)``; ``-inf`` masks a category (its marginal is 0).
        k: subset size, at most the number of unmasked categories.
        dim: the category dimension.

    Returns:
        ``mu`` of the logits' shape and dtype; sums to ``k`` along ``dim``.

    Example:
        >>> mu = k_subset_marginals(torch.zeros(5), k=2)
        >>> torch.allclose(mu, torch.full((5,), 0.4))
        True
    """
    d, kk = _prepare(logits, k, dim)
    x = logits.to(compute_dtype(logits.dtype)).movedim(d, -1)
    mu = _KSubsetMarginals.apply(x, kk)[0]
    return mu.to(logits.dtype).movedim(-1, d)


def _sample_from_tables(x: Tensor, a: Tensor, k: int, u: Tensor) -> Tensor:
    r"""Exact k-subset, largest item first: ``(*, n)`` bool with ``k`` True.

    Given that ``r`` items remain to be chosen among the items below ``upper``, the largest of
    them is ``m`` with probability :math:`\propto e^{x_m} e_{r-1}(x_{<m})` (``m < upper``):
    one inverse-CDF draw per chosen item, ``u`` ``(*, k)`` uniforms, k vectorised steps.
    """
    n = x.shape[-1]
    pos = torch.arange(n, device=x.device)
    upper = torch.full((*x.shape[:-1], 1), n, dtype=torch.long, device=x.device)
    chosen = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    for step, r in enumerate(range(k, 0, -1)):
        logw = torch.where(pos < upper, x + a[..., :-1, r - 1], NEG_INF)  # (*, n)
        w = torch.exp(logw - logw.amax(dim=-1, keepdim=True))  # the max is finite on a valid path
        cdf = torch.cumsum(w, dim=-1)
        target = u[..., step : step + 1] * cdf[..., -1:]
        m = (cdf <= target).sum(dim=-1, keepdim=True).clamp(max=n - 1)  # first m with cdf > target
        m = torch.minimum(m, upper - 1)  # u -> 1 rounding can only overshoot into zero-weight items
        chosen.scatter_(-1, m, True)
        upper = m
    return chosen


def k_subset_sample(
    logits: Tensor,
    k: int,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    r"""Exact sample of the k-subset distribution :math:`p(S) \propto \exp\sum_{i\in S}\ell_i`.

    Draws the chosen items from the largest position down, each with its exact conditional
    probability (O(nk) log-space tables). This is not the Gumbel-top-k distribution (use
    :func:`gumbelkit.gumbel_topk` for that).

    Args:
        logits: ``(*, n, *)``; ``-inf`` masks a category.
        k: subset size.
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn ``Uniform[0, 1)`` values of shape ``(*, k, *)`` (the logits'
            shape with ``k`` along ``dim``; float64 best).

    Returns:
        ``LongTensor`` with size ``k`` along ``dim``: the chosen categories, ascending.

    Example:
        >>> k_subset_sample(torch.zeros(6), k=2, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2])
    """
    d, kk = _prepare(logits, k, dim)
    with torch.no_grad():
        x = logits.detach().to(compute_dtype(logits.dtype)).movedim(d, -1)  # (*, n)
        u = _uniforms(logits, kk, d, generator, noise).to(x.dtype)
        hard = _sample_from_tables(x, _prefix_tables(x, kk), kk, u)
    return _sorted_indices(hard, kk).movedim(-1, d)


def _uniforms(
    logits: Tensor, k: int, d: int, generator: torch.Generator | None, noise: Tensor | None
) -> Tensor:
    """``(*, k)`` Uniform[0, 1) values, categories-last layout (float64 when drawn here)."""
    shape = list(logits.shape)
    shape[d] = k
    if noise is None:
        u = torch.rand(shape, dtype=torch.float64, device=logits.device, generator=generator)
    else:
        u = _noise(noise, tuple(shape), "Uniform[0, 1) values, the logits' shape with k along dim")
    return u.movedim(d, -1)


def _sorted_indices(hard_last: Tensor, k: int) -> Tensor:
    """Ascending positions of the ``k`` ones of a k-hot ``(*, n)``: ``(*, k)``."""
    n = hard_last.shape[-1]
    pos = torch.arange(n, device=hard_last.device)
    key = torch.where(hard_last.bool(), pos, pos + n)  # chosen first, in order
    return key.topk(k, dim=-1, largest=False).values


def _simple_sample(
    logits: Tensor, k: int, tau: float | Tensor = 1.0, dim: int = -1, *,
    generator: torch.Generator | None = None, noise: Tensor | None = None,
) -> SubsetSample:
    _check_scalar_tau(tau)  # accepted for a uniform interface; SIMPLE has no temperature
    d, kk = _prepare(logits, k, dim)
    x = logits.to(compute_dtype(logits.dtype)).movedim(d, -1)  # (*, n)
    mu_last, a, _ = _KSubsetMarginals.apply(x, kk)
    u = _uniforms(logits, kk, d, generator, noise).to(x.dtype)  # (*, k)
    with torch.no_grad():
        hard_last = _sample_from_tables(x.detach(), a, kk, u)  # (*, n) bool
    mu = mu_last.to(logits.dtype).movedim(-1, d)  # (*, n, *)
    hard = hard_last.to(logits.dtype).movedim(-1, d)
    indices = _sorted_indices(hard_last, kk).movedim(-1, d)
    return SubsetSample(straight_through(hard, mu), hard, mu, indices)


def simple(
    logits: Tensor,
    k: int,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> Tensor:
    r"""SIMPLE: an exact k-subset sample forward, the exact marginals' gradient backward.

    .. math::
        z \sim p(S) \propto \exp\sum_{i\in S}\ell_i \ (|S| = k), \qquad
        \hat\nabla_\ell f = \frac{\partial \mu}{\partial \ell}^{\!\top} \frac{\partial f}{\partial z},
        \quad \mu = \mathbb E[z]

    Both the sample and :math:`\mu` are exact (O(nk) log-space dynamic programmes); for an
    ``f`` linear in ``z`` the gradient is the exact gradient of :math:`\mathbb E[f(z)]` with no
    variance. There is no temperature.

    Args:
        logits: ``(*, n, *)``; ``-inf`` masks a category.
        k: subset size, at most the unmasked count.
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn ``Uniform[0, 1)`` values of shape ``(*, k, *)`` (the logits'
            shape with ``k`` along ``dim``).

    Returns:
        The exact k-hot (logits' shape and dtype) carrying SIMPLE's gradient.

    Example:
        >>> z = simple(torch.randn(3, 8, requires_grad=True), k=2)
        >>> z.sum(-1).tolist()
        [2.0, 2.0, 2.0]
    """
    return _simple_sample(logits, k, 1.0, dim, generator=generator, noise=noise).output


# --------------------------------------------------------------------------- registry

SubsetFn = Callable[..., SubsetSample]


@dataclass(frozen=True)
class SubsetEstimatorSpec:
    r"""One registry entry.

    Attributes:
        name: registry name.
        fn: ``fn(logits, k, tau, dim, *, generator=None, noise=None) -> SubsetSample``.
        output: which field ``output`` is (``"hard"``: exact k-hot forward; ``"soft"``: relaxed).
        distribution: what ``hard`` samples: ``"topk"`` (Gumbel-top-k, Plackett-Luce without
            replacement), ``"k_subset"`` (:math:`p(S) \propto \exp\sum_{i\in S}\ell_i`) or
            ``"max_of_k"`` (the union of ``k`` independent categorical draws).
        uses_tau: whether ``tau`` changes anything (SIMPLE has no temperature).
        noise: what ``noise=`` must hold.
        summary: one line for tables and ``--help``.
    """

    name: str
    fn: SubsetFn
    output: str
    distribution: str
    uses_tau: bool = True
    noise: str = "Gumbel noise of the logits' shape"
    summary: str = ""


_REGISTRY: dict[str, SubsetEstimatorSpec] = {
    s.name: s
    for s in (
        SubsetEstimatorSpec("st_topk", _st_topk, "hard", "topk",
                            summary="exact Gumbel-top-k k-hot, relaxed top-k gradient (straight-through)"),
        SubsetEstimatorSpec("relaxed_topk", _relaxed_topk_estimator, "soft", "topk",
                            summary="relaxed top-k by successive softmaxes (Xie & Ermon 2019)"),
        SubsetEstimatorSpec("l2x", _max_concrete_sample, "soft", "max_of_k",
                            noise="Gumbel noise of shape (k, *logits.shape)",
                            summary="max of k Concrete samples (L2X, Chen et al. 2018)"),
        SubsetEstimatorSpec("simple", _simple_sample, "hard", "k_subset", uses_tau=False,
                            noise="Uniform[0, 1) values, the logits' shape with k along dim",
                            summary="exact k-subset sample, exact marginals' gradient (SIMPLE, Ahmed et al. 2023)"),
    )
}


def subset_estimator_names() -> tuple[str, ...]:
    """Registered k-subset estimator names, in a fixed order."""
    return tuple(_REGISTRY)


def subset_spec(name: str) -> SubsetEstimatorSpec:
    """The registry entry of ``name``; ValueError listing the known names if unknown."""
    return lookup(_REGISTRY, name, "k-subset estimator")


def get_subset_estimator(name: str | SubsetFn) -> SubsetFn:
    """The sampling function of ``name``, or ``name`` itself if it is a callable."""
    if callable(name):
        return name
    return subset_spec(name).fn


def sample_subset(
    logits: Tensor,
    k: int,
    name: str | SubsetFn = "st_topk",
    tau: float | Tensor = 1.0,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    noise: Tensor | None = None,
) -> SubsetSample:
    r"""Draw a k-subset of the categories along ``dim`` with estimator ``name``'s gradient.

    .. math::
        \mathrm{output} \in \{\mathrm{hard}, \mathrm{soft}\},\qquad
        \nabla_\ell\,\mathrm{output} := \text{the estimator's gradient}

    Args:
        logits: ``(*, n, *)`` logits; ``-inf`` masks a category.
        k: subset size.
        name: a name from :func:`subset_estimator_names` or a callable with the same signature.
        tau: temperature (ignored by ``simple``).
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        noise: optional pre-drawn noise (see each entry's ``noise`` description).

    Returns:
        :class:`SubsetSample` ``(output, hard, soft, indices)``.

    Example:
        >>> s = sample_subset(torch.randn(4, 10), 3, "simple")
        >>> s.hard.sum(-1).tolist()
        [3.0, 3.0, 3.0, 3.0]
    """
    return get_subset_estimator(name)(logits, k, tau, dim, generator=generator, noise=noise)


class SubsetEstimator(nn.Module):
    """Module form of :func:`sample_subset` for a fixed estimator and ``k``.

    Args:
        name: a name from :func:`subset_estimator_names`.
        k: subset size.
        tau: default temperature (the call may pass the step's value).
        dim: the category dimension.

    Example:
        >>> layer = SubsetEstimator("st_topk", k=2, tau=0.5)
        >>> layer(torch.randn(3, 6)).hard.sum(-1).tolist()
        [2.0, 2.0, 2.0]
    """

    def __init__(self, name: str, k: int, tau: float = 1.0, dim: int = -1) -> None:
        super().__init__()
        subset_spec(name)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be an int >= 1, got {k!r}")
        if isinstance(tau, Tensor):
            raise ValueError("tau at construction must be a positive finite number; pass a tensor tau at call time")
        self.name, self.k, self.dim = name, k, dim
        self.tau = float(check_tau(tau))

    def forward(
        self, logits: Tensor, tau: float | Tensor | None = None, *, generator: torch.Generator | None = None
    ) -> SubsetSample:
        """Sample; ``tau`` overrides the default for this call."""
        t = self.tau if tau is None else tau
        return sample_subset(logits, self.k, self.name, t, self.dim, generator=generator)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, k={self.k}, tau={self.tau}, dim={self.dim}"
