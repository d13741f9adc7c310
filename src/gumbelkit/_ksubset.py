r"""Log-space dynamic programmes of the k-subset distribution (private; torch ops only).

The distribution over the subsets :math:`S` of size ``k`` of the items ``0..n-1`` (the last
dim) is :math:`p(S) \propto \exp\sum_{i\in S} x_i`. Tables:

* ``A[..., i, j] = log e_j(exp x_0, ..., exp x_{i-1})``: prefix of the first i items, ``(*, n+1, k+1)``;
* ``B[..., m, j] = log e_j(exp x_m, ..., exp x_{n-1})``: suffix from item m, ``(*, n+1, k+1)``;

with :math:`e_j` the elementary symmetric polynomial of degree j, so :math:`Z = e_k(e^x) =`
``exp A[..., n, k]``. Classifying the subsets of size j by their largest item m gives
``A[..., i, j] = logsumexp_{m < i}(x_m + A[..., m, j - 1])``, a cumulative log-sum-exp over the
items: k vectorised steps, O(nk) work. Autograd never runs through these forward tables
(:class:`gumbelkit._autograd.KSubsetMarginals` has its own backward); for second derivatives
the backward rebuilds them with an item-by-item recursion whose every operation is twice
differentiable at ``-inf``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["marginals", "marginals_hvp", "prefix_tables", "sample_from_tables", "tables"]

NEG_INF = float("-inf")


def prefix_tables(x: Tensor, k: int) -> Tensor:
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


def tables(x: Tensor, k: int, graph: bool = False) -> tuple[Tensor, Tensor]:
    """Prefix ``A`` and suffix ``B`` tables (``graph``: the twice-differentiable recursion)."""
    prefix = _prefix_tables_graph if graph else prefix_tables
    return prefix(x, k), prefix(x.flip(-1), k).flip(-2)  # suffix of x = prefix of the reversed x


def marginals(x: Tensor, k: int, graph: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    r""":math:`\mu_t = P(t \in S)` and the tables, for :math:`p(S) \propto \exp\sum_{i\in S} x_i`.

    :math:`\mu_t = e^{x_t} \sum_j e_j(x_{<t})\, e_{k-1-j}(x_{>t}) / Z`.
    """
    a, b = tables(x, k, graph)
    log_z = a[..., -1, k : k + 1]  # (*, 1), finite: at least k unmasked categories
    pair = a[..., :-1, :k] + b[..., 1:, :k].flip(-1)  # (*, n, k): before t size j, after t size k-1-j
    mu = torch.exp(x + torch.logsumexp(pair, dim=-1) - log_z).clamp(max=1.0)  # round-off can exceed 1
    return mu, a, b


def marginals_hvp(x: Tensor, v: Tensor, k: int, mu: Tensor, a: Tensor, b: Tensor, graph: bool = False) -> Tensor:
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


def sample_from_tables(x: Tensor, a: Tensor, k: int, u: Tensor) -> Tensor:
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
