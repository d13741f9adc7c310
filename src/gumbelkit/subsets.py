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
from typing import NamedTuple

import torch
from torch import Tensor, nn

from gumbelkit import _kernels
from gumbelkit._autograd import KSubsetMarginals
from gumbelkit._ksubset import prefix_tables, sample_from_tables
from gumbelkit._validation import (
    check_categories,
    check_dim,
    check_float_tensor,
    check_logits,
    check_tau,
    compute_dtype,
    get_validate_args,
    lookup,
)
from gumbelkit.functional import straight_through
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
    """Validate ``logits``, ``dim`` and ``k``; return ``(dim, k)`` with ``dim`` normalised.

    The data check is folded into one 0-d flag (no NaN, no ``+inf``, at least ``k`` unmasked
    categories per slice), as the other samplers do: a ``torch._assert_async`` under
    ``torch.compile``, skipped inside ``torch.func`` transforms and when validation is off.
    """
    check_float_tensor(logits, "logits")
    d = check_dim(logits, dim)
    check_categories(logits, d)
    kk = _check_k(k, logits.shape[d], dim)
    if not get_validate_args():
        return d, kk
    allowed = (~torch.isneginf(logits)).sum(dim=d)  # (*) unmasked categories per slice
    ok = (~(torch.isnan(logits) | torch.isposinf(logits))).all() & (allowed >= kk).all()
    if _kernels.compiling():
        torch._assert_async(ok, f"gumbelkit: NaN / +inf logits, or fewer than k={kk} unmasked categories in a slice")
    elif not _kernels.in_transform(logits) and not bool(ok):
        check_logits(logits, d)  # names NaN / +inf / a fully masked slice
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
    """``(hard, soft, indices)`` of one Gumbel-top-k draw; ``soft`` is differentiable.

    The keys are ``(logits - max) + G`` in the compute dtype, as :func:`gumbelkit.gumbel_topk`
    forms them, so ``indices`` equal ``gumbel_topk(logits, k, dim, noise=G)``; the relaxed
    sample is computed from the same keys (it does not depend on the shift).
    """
    g = _gumbel(logits, noise, generator)  # (*, n, *) compute dtype
    x = logits.to(g.dtype).movedim(d, -1)  # (*, n)
    z = (x - x.detach().amax(dim=-1, keepdim=True)) + g.movedim(d, -1)  # (*, n) keys
    indices = z.detach().topk(k, dim=-1).indices  # (*, k) exact, largest key first
    soft = _relaxed_topk_last(z, k, tau).to(logits.dtype)  # (*, n)
    hard = _k_hot(indices, soft.detach())
    return hard.movedim(-1, d), soft.movedim(-1, d), indices.movedim(-1, d)


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
    mu = KSubsetMarginals.apply(x, kk)[0]
    return mu.to(logits.dtype).movedim(-1, d)


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
        hard = sample_from_tables(x, prefix_tables(x, kk), kk, u)
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
    mu_last, a, _ = KSubsetMarginals.apply(x, kk)
    u = _uniforms(logits, kk, d, generator, noise).to(x.dtype)  # (*, k)
    with torch.no_grad():
        hard_last = sample_from_tables(x.detach(), a, kk, u)  # (*, n) bool
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
