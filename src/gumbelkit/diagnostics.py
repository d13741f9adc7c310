r"""Exact gradients by enumeration, and each estimator's bias, variance and MSE against them.

For a product of independent categoricals :math:`z = (z_1, \dots, z_N)`,
:math:`z_n \sim \mathrm{Cat}(\mathrm{softmax}(\ell_n))`, and a user function ``f``, the
objective :math:`F(\ell) = \mathbb E_z[f(z)] = \sum_z p_\ell(z) f(z)` is a finite sum when
:math:`K^N` is small, so its gradient is exact (:func:`exact_gradient`). Every registered
estimator (:mod:`gumbelkit.estimators`) is then drawn many times and summarised
(:func:`estimator_stats`, :func:`compare`, :func:`tau_sweep`):

.. math::
    \text{bias} = \lVert \bar g - \nabla F \rVert, \quad
    \cos = \frac{\langle \bar g, \nabla F\rangle}{\lVert\bar g\rVert\,\lVert\nabla F\rVert}, \quad
    \text{variance} = \frac{1}{n-1}\sum_d \lVert g_d - \bar g\rVert^2, \quad
    \text{MSE} = \frac1n \sum_d \lVert g_d - \nabla F\rVert^2,

with :math:`\bar g` the mean of :math:`n` independent estimates :math:`g_d`. ``noise_floor`` =
:math:`\sqrt{\text{variance}/n}` is the bias norm an *unbiased* estimator would show from Monte
Carlo error alone: a bias well above it is real.

Example (bias / variance of three estimators across tau, as a table and a plot)::

    import torch
    from gumbelkit import diagnostics as D

    logits = torch.randn(4, 3, dtype=torch.float64)             # 4 variables x 3 categories
    target = torch.randn(4, 3, dtype=torch.float64)
    f = lambda z: ((z - target) ** 2).sum(dim=(-2, -1))         # (M, 4, 3) -> (M,)
    rows = D.tau_sweep(logits, f, ["st_gs", "gumbel_rao", "reinmax"], [0.5, 1.0, 2.0])
    print(D.to_markdown(rows))
    fig = D.plot(rows)                                          # bias and variance vs tau

References:
    1. M. B. Paulus, C. J. Maddison, A. Krause, ICLR 2021 (bias / variance maps of ST-GS vs GR).
    2. L. Liu et al., NeurIPS 2023 (exact-gradient cosine similarity on an enumerable VAE).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import torch
from torch import Tensor

from gumbelkit import estimators as E
from gumbelkit import subsets as S
from gumbelkit._validation import check_float_tensor, check_logits

__all__ = [
    "ExactGradient",
    "compare",
    "enumerate_configurations",
    "estimator_stats",
    "exact_gradient",
    "exact_subset_gradient",
    "gradient_draws",
    "plot",
    "subset_distribution",
    "subset_estimator_stats",
    "subset_gradient_draws",
    "tau_sweep",
    "to_markdown",
]

Objective = Callable[[Tensor], Tensor]

#: refuse enumerations larger than this by default (K^N configurations)
MAX_CONFIGS = 2**20


class ExactGradient(NamedTuple):
    """``value`` :math:`= \\mathbb E[f(z)]` (0-d) and ``grad`` :math:`= \\nabla_\\ell` (logits' shape)."""

    value: Tensor
    grad: Tensor


FAMILIES = ("categorical", "bernoulli")


def _family(family: object) -> str:
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}; got {family!r}")
    return str(family)


def _check_bernoulli(logits: Tensor) -> None:
    check_float_tensor(logits, "logits")
    if not bool(torch.isfinite(logits).all()):
        raise ValueError("Bernoulli logits (log-odds) must be finite")


def _check(logits: Tensor) -> None:
    check_float_tensor(logits, "logits")
    if logits.ndim < 1:
        raise ValueError("logits must have at least one dimension (the categories, last)")
    check_logits(logits, logits.ndim - 1)


def enumerate_configurations(shape: Sequence[int], *, max_configs: int = MAX_CONFIGS) -> Tensor:
    """Every category assignment of ``prod(shape[:-1])`` variables with ``shape[-1]`` categories.

    Args:
        shape: the logits' shape ``(*B, K)``.
        max_configs: refuse more than this many configurations.

    Returns:
        ``(K^N, *B)`` LongTensor of category indices, in lexicographic order.
    """
    *batch, k = (int(s) for s in shape)
    n = math.prod(batch)
    total = k**n
    if total > max_configs:
        raise ValueError(
            f"{k}^{n} = {total} configurations exceed max_configs={max_configs}; use fewer variables "
            "or categories, or raise max_configs"
        )
    c = torch.arange(total)
    powers = k ** torch.arange(n - 1, -1, -1)  # (N,) most significant digit first
    return ((c[:, None] // powers) % k).reshape(total, *batch)  # (C, *B)


def exact_gradient(
    logits: Tensor, f: Objective, *, max_configs: int = MAX_CONFIGS, chunk: int = 65536,
    family: str = "categorical",
) -> ExactGradient:
    r"""Exact :math:`\mathbb E_z[f(z)]` and its gradient w.r.t. the logits, by enumeration.

    .. math::
        F(\ell) = \sum_{z} \prod_n \mathrm{softmax}(\ell_n)_{z_n}\, f(z), \qquad
        \nabla_\ell F = \sum_z p_\ell(z)\, f(z)\, \nabla_\ell \log p_\ell(z)

    Configurations that use a masked (``-inf``) category have probability 0 and are skipped.

    Args:
        logits: ``(*B, K)`` logits, categories last; ``N = prod(B)`` independent variables.
            Use float64 for reference-quality gradients. With ``family="bernoulli"``: ``(*B)``
            log-odds, one binary variable each.
        f: maps one-hot configurations ``(M, *B, K)`` (logits' dtype) to values ``(M,)``; with
            ``family="bernoulli"``, 0/1 configurations ``(M, *B)``.
        max_configs: refuse :math:`K^N` above this.
        chunk: configurations per call of ``f``.
        family: ``"categorical"`` or ``"bernoulli"`` (computed as the categorical with logits
            :math:`(\theta, 0)`).

    Returns:
        :class:`ExactGradient` ``(value, grad)`` in the logits' dtype.

    Example:
        >>> logits = torch.zeros(2, 2, dtype=torch.float64)
        >>> v, g = exact_gradient(logits, lambda z: z[:, 0, 0] * z[:, 1, 1])
        >>> round(v.item(), 4)
        0.25
    """
    if _family(family) == "bernoulli":
        _check_bernoulli(logits)
        pair = torch.stack([logits.detach(), torch.zeros_like(logits)], dim=-1)  # (*B, 2): (theta, 0)
        value, grad = exact_gradient(pair, lambda z: f(z[..., 0]), max_configs=max_configs, chunk=chunk)
        return ExactGradient(value, grad[..., 0])  # theta enters only the first logit
    _check(logits)
    idx = enumerate_configurations(logits.shape, max_configs=max_configs).to(logits.device)  # (C, *B)
    k = logits.shape[-1]
    theta = logits.detach().clone().requires_grad_(True)
    logp = torch.log_softmax(theta, dim=-1)  # (*B, K)
    flat_idx = idx.reshape(idx.shape[0], -1)  # (C, N)
    lp_all = logp.reshape(-1, k)  # (N, K)
    lp = lp_all.gather(1, flat_idx.T).T  # (C, N)
    allowed = torch.isfinite(lp).all(dim=1)  # (C,) configurations of probability > 0
    flat_idx, lp = flat_idx[allowed], lp[allowed]
    total = torch.zeros((), dtype=logits.dtype, device=logits.device)
    for start in range(0, flat_idx.shape[0], chunk):
        ii = flat_idx[start : start + chunk]  # (M, N)
        z = torch.zeros(*ii.shape, k, dtype=logits.dtype, device=logits.device)
        z.scatter_(-1, ii.unsqueeze(-1), 1.0)
        vals = f(z.reshape(ii.shape[0], *logits.shape))  # (M,)
        if not isinstance(vals, Tensor) or vals.shape != (ii.shape[0],):
            got = tuple(vals.shape) if isinstance(vals, Tensor) else type(vals).__name__
            raise ValueError(f"f must map (M, *logits.shape) one-hots to (M,) values, got shape {got}")
        total = total + (lp[start : start + chunk].sum(dim=1).exp() * vals.detach().to(logits.dtype)).sum()
    (grad,) = torch.autograd.grad(total, theta)
    return ExactGradient(total.detach(), grad)


def gradient_draws(
    logits: Tensor,
    f: Objective,
    name: str,
    tau: float = 1.0,
    *,
    n_draws: int = 1000,
    seed: int = 0,
    chunk: int = 1000,
    family: str = "categorical",
    **options: Any,
) -> Tensor:
    """``n_draws`` independent gradient estimates of :math:`\\mathbb E[f]` by estimator ``name``.

    Args:
        logits: ``(*B, K)`` logits, categories last.
        f: maps ``(M, *B, K)`` samples to ``(M,)`` values (differentiable in the sample for the
            straight-through family).
        name: a registered estimator (``gumbelkit.estimators.estimator_names()``).
        tau: temperature (ignored by ``reinforce``).
        n_draws: number of estimates.
        seed: seeds the ``torch.Generator`` used for every draw.
        chunk: estimates computed per vectorised batch.
        family: ``"categorical"`` (the registry, :func:`gumbelkit.estimators.sample`) or
            ``"bernoulli"`` (log-odds ``(*B)``, :func:`gumbelkit.estimators.sample_bernoulli`).
        **options: estimator options (``k``, ``gap``, ``n_samples`` for reinforce, ...).

    Returns:
        ``(n_draws, *B, K)`` gradients, in the logits' dtype.
    """
    bernoulli = _family(family) == "bernoulli"
    _check_bernoulli(logits) if bernoulli else _check(logits)
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 2:
        raise ValueError(f"n_draws must be an int >= 2, got {n_draws!r}")
    spec = None if bernoulli else E.spec(name)

    def loss_of(theta: Tensor, gen: torch.Generator) -> Tensor:
        m = theta.shape[0]
        if spec is None:
            return f(E.sample_bernoulli(theta, name, tau, generator=gen, **options).output)  # (m,)
        if spec.kind == "score":

            def f_batched(h: Tensor) -> Tensor:  # (S, m, *B, K) -> (S, m)
                s = h.shape[0]
                return f(h.reshape(s * m, *logits.shape)).reshape(s, m)

            return E.surrogate(theta, f_batched, name, tau, generator=gen, **options)  # (m,)
        return f(E.sample(theta, name, tau, -1, generator=gen, **options).output)  # (m,)

    return _chunked_gradients(logits, loss_of, n_draws, seed, chunk, "(M, *logits.shape)")


def _chunked_gradients(logits: Tensor, loss_of: Callable[[Tensor, torch.Generator], Tensor], n_draws: int,
                       seed: int, chunk: int, samples: str) -> Tensor:
    """``n_draws`` single-sample gradients: ``loss_of(theta, gen)`` maps ``(m, *logits.shape)``
    copies of the logits to ``(m,)`` losses, in chunks of ``chunk``; one generator seeded ``seed``."""
    gen = torch.Generator(device=logits.device).manual_seed(seed)
    out = []
    for start in range(0, n_draws, chunk):
        m = min(chunk, n_draws - start)
        theta = logits.detach().unsqueeze(0).expand(m, *logits.shape).clone().requires_grad_(True)
        loss = loss_of(theta, gen)
        if loss.shape != (m,):
            raise ValueError(f"f must map {samples} samples to (M,) values, got shape {tuple(loss.shape)}")
        (g,) = torch.autograd.grad(loss.sum(), theta)
        out.append(g)
    return torch.cat(out)


def estimator_stats(
    logits: Tensor,
    f: Objective,
    name: str,
    tau: float = 1.0,
    *,
    n_draws: int = 1000,
    seed: int = 0,
    exact: ExactGradient | tuple[Tensor, Tensor] | None = None,
    family: str = "categorical",
    **options: Any,
) -> dict[str, Any]:
    """Bias, cosine similarity, variance and MSE of one estimator against the exact gradient.

    Args:
        logits, f, name, tau, n_draws, seed, options: as :func:`gradient_draws`.
        exact: a precomputed :func:`exact_gradient` result (computed here when None).
        family: ``"categorical"`` or ``"bernoulli"`` (see :func:`gradient_draws`).

    Returns:
        A dict with ``estimator``, ``options``, ``tau``, ``n_draws``, ``bias_norm``,
        ``rel_bias`` (bias / |exact|), ``cosine`` (of the mean estimate), ``mean_cosine`` (of
        single estimates, averaged), ``variance`` (trace of the covariance), ``mse``,
        ``noise_floor`` (:math:`\\sqrt{\\text{variance}/n}`), ``exact_norm`` and ``mean_grad``.
    """
    ex = exact_gradient(logits, f, family=family) if exact is None else ExactGradient(*exact)
    g = gradient_draws(logits, f, name, tau, n_draws=n_draws, seed=seed, family=family, **options)
    return {
        "estimator": name,
        "family": family,
        "options": {k: v for k, v in options.items() if not isinstance(v, Tensor)},
        "tau": float(tau),
        **_summary(g, ex.grad),
    }


def _summary(g: Tensor, exact_grad: Tensor) -> dict[str, Any]:
    """Bias, cosines, variance, MSE and noise floor of ``n`` draws ``g`` ``(n, *S)`` of a gradient."""
    n_draws = g.shape[0]
    flat = g.reshape(n_draws, -1).to(torch.float64)  # (n, D)
    true = exact_grad.reshape(-1).to(torch.float64)  # (D,)
    mean = flat.mean(dim=0)
    bias = mean - true
    var = (flat - mean).pow(2).sum(dim=1).sum() / (n_draws - 1)
    mse = (flat - true).pow(2).sum(dim=1).mean()
    tn = true.norm()
    eps = torch.finfo(torch.float64).tiny  # a zero vector has cosine 0, not NaN
    cos = (mean @ true) / (mean.norm() * tn).clamp_min(eps)
    cos_each = (flat @ true) / (flat.norm(dim=1) * tn).clamp_min(eps)
    return {
        "n_draws": n_draws,
        "bias_norm": float(bias.norm()),
        "rel_bias": float(bias.norm() / tn.clamp_min(eps)),
        "cosine": float(cos),
        "mean_cosine": float(cos_each.mean()),
        "variance": float(var),
        "mse": float(mse),
        "noise_floor": float((var / n_draws).sqrt()),
        "exact_norm": float(tn),
        "mean_grad": mean.reshape(exact_grad.shape).tolist(),
    }


def compare(
    logits: Tensor,
    f: Objective,
    names: Sequence[str] | None = None,
    tau: float = 1.0,
    *,
    n_draws: int = 1000,
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    exact: ExactGradient | tuple[Tensor, Tensor] | None = None,
    family: str = "categorical",
) -> list[dict[str, Any]]:
    """:func:`estimator_stats` for several estimators at one temperature (one row each).

    Rows are per estimate, not normalised for cost: ``reinforce`` evaluates ``f`` at
    ``n_samples`` (default 4) samples per estimate, the pathwise estimators once; and
    ``reinforce`` ignores ``tau``, so its rows in a :func:`tau_sweep` repeat (same seed).

    ``indecater`` evaluates ``f`` at ``n_samples * (1 + V * K)`` configurations per estimate.

    Args:
        names: registered names (default: all of the family); an estimator whose temperature
            range excludes ``tau`` (ReinMax below 1) is left out.
        options: per-estimator options, e.g. ``{"gumbel_rao": {"k": 10}}``.
        exact: a precomputed :func:`exact_gradient` (shared by all rows).
        family: ``"categorical"`` or ``"bernoulli"`` (see :func:`gradient_draws`).

    Returns:
        List of row dicts (see :func:`estimator_stats`).
    """
    bernoulli = _family(family) == "bernoulli"
    ex = exact_gradient(logits, f, family=family) if exact is None else ExactGradient(*exact)
    rows = []
    default = E.bernoulli_names() if bernoulli else E.estimator_names()
    for name in default if names is None else names:
        tmin = (1.0 if name == "reinmax" else None) if bernoulli else E.spec(name).tau_min
        if tmin is not None and tau < tmin:
            continue
        opts = dict((options or {}).get(name, {}))
        rows.append(estimator_stats(logits, f, name, tau, n_draws=n_draws, seed=seed, exact=ex, family=family, **opts))
    return rows


def tau_sweep(
    logits: Tensor,
    f: Objective,
    names: Sequence[str],
    taus: Sequence[float],
    *,
    n_draws: int = 1000,
    seed: int = 0,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    family: str = "categorical",
) -> list[dict[str, Any]]:
    """:func:`compare` at every temperature in ``taus`` (the exact gradient is computed once).

    Returns:
        Rows with a ``tau`` key, ready for :func:`to_markdown` and :func:`plot`.
    """
    ex = exact_gradient(logits, f, family=family)
    rows: list[dict[str, Any]] = []
    for t in taus:
        rows += compare(logits, f, names, t, n_draws=n_draws, seed=seed, options=options, exact=ex, family=family)
    return rows


def _label(row: Mapping[str, Any]) -> str:
    opts = row.get("options") or {}
    return row.get("label") or row["estimator"] + "".join(f" {k}={v}" for k, v in opts.items())


DEFAULT_COLUMNS = ("tau", "bias_norm", "noise_floor", "rel_bias", "cosine", "mean_cosine", "variance", "mse")


def to_markdown(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] = DEFAULT_COLUMNS) -> str:
    """Render rows of :func:`estimator_stats` as a markdown table (one line per row)."""
    head = "| estimator | " + " | ".join(columns) + " |\n|---|" + "---|" * len(columns) + "\n"
    body = ""
    for r in rows:
        cells = [f"{r[c]:.4g}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in columns]
        body += f"| {_label(r)} | " + " | ".join(cells) + " |\n"
    return head + body


def plot(
    rows: Sequence[Mapping[str, Any]],
    metrics: Sequence[str] = ("bias_norm", "variance"),
    *,
    x: str = "tau",
    logy: bool = True,
    axes: Any = None,
) -> Any:
    """Plot ``metrics`` against ``x`` (default tau), one line per estimator.

    Args:
        rows: output of :func:`tau_sweep` (or any rows with the ``x`` key).
        metrics: row keys, one panel each.
        x: the horizontal axis key.
        logy: log-scale the vertical axes (log x as well when ``x`` is ``"tau"``).
        axes: optional sequence of matplotlib Axes (one per metric).

    Returns:
        The matplotlib ``Figure``: a ``matplotlib.figure.Figure`` made directly (not through
        ``pyplot``), so the process's backend and pyplot's figure list are left alone; save it
        with ``fig.savefig(path)``.
    """
    if axes is None:
        from matplotlib.figure import Figure  # matplotlib only when plotting

        fig = Figure(figsize=(4.2 * len(metrics), 3.4))
        axes = list(fig.subplots(1, len(metrics), squeeze=False)[0])
    else:
        axes = list(axes)
        fig = axes[0].figure
    labels = list(dict.fromkeys(_label(r) for r in rows))
    for ax, metric in zip(axes, metrics, strict=True):
        for lab in labels:
            pts = sorted((r[x], r[metric]) for r in rows if _label(r) == lab)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=lab)
        ax.set_xlabel(x)
        ax.set_ylabel(metric)
        if logy:
            ax.set_yscale("log")
        if x == "tau":
            ax.set_xscale("log")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- k-subsets

SUBSET_DISTRIBUTIONS = ("topk", "k_subset", "max_of_k")


def _check_subset_problem(logits: Tensor, k: object, distribution: object) -> int:
    check_float_tensor(logits, "logits")
    if logits.ndim != 1:
        raise ValueError(f"logits must be 1-d (n,) for subset enumeration, got shape {tuple(logits.shape)}")
    check_logits(logits, 0)
    n = logits.shape[0]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int with 1 <= k <= {n}, got {k!r}")
    if distribution not in SUBSET_DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {', '.join(SUBSET_DISTRIBUTIONS)}; got {distribution!r}")
    return k


def subset_distribution(
    logits: Tensor, k: int, distribution: str = "topk", *, max_configs: int = MAX_CONFIGS
) -> tuple[Tensor, Tensor]:
    r"""Every possible (k-)hot sample of a subset distribution and its probability, by enumeration.

    ``"topk"``: Gumbel-top-k (Plackett-Luce without replacement), :math:`P(S) = \sum_{\sigma}
    \prod_{m=1}^{k} p_{\sigma_m} / (1 - \sum_{l<m} p_{\sigma_l})` over the orderings of ``S``.
    ``"k_subset"``: :math:`P(S) \propto \exp\sum_{i\in S}\ell_i` (SIMPLE's distribution).
    ``"max_of_k"``: the union of ``k`` independent categorical draws (L2X's tau -> 0 limit).

    Args:
        logits: ``(n,)``; ``-inf`` masks a category.
        k: subset size (number of draws for ``"max_of_k"``).
        distribution: one of ``"topk"``, ``"k_subset"``, ``"max_of_k"``.
        max_configs: refuse enumerations larger than this.

    Returns:
        ``(samples, probs)``: ``(C, n)`` (k-)hot rows in the logits' dtype and ``(C,)``
        probabilities (differentiable in ``logits``, summing to 1). Rows of probability 0 are kept.

    Example:
        >>> z, p = subset_distribution(torch.zeros(4, dtype=torch.float64), 2, "topk")
        >>> z.shape, round(float(p.sum()), 12)
        (torch.Size([6, 4]), 1.0)
    """
    k = _check_subset_problem(logits, k, distribution)
    n = logits.shape[0]
    logp = torch.log_softmax(logits, dim=0)  # (n,)
    if distribution == "max_of_k":
        tuples = enumerate_configurations((k, n), max_configs=max_configs).to(logits.device)  # (n^k, k)
        hot = torch.zeros(tuples.shape[0], n, dtype=logits.dtype, device=logits.device).scatter_(1, tuples, 1.0)
        p_tuple = logp[tuples].sum(dim=1).exp()  # (n^k,)
        samples, inverse = torch.unique(hot, dim=0, return_inverse=True)
        probs = torch.zeros(samples.shape[0], dtype=logits.dtype, device=logits.device).index_add(0, inverse, p_tuple)
        return samples, probs
    combos = list(itertools.combinations(range(n), k))
    if len(combos) * (math.factorial(k) if distribution == "topk" else 1) > max_configs:
        raise ValueError(f"C({n},{k}) subsets exceed max_configs={max_configs}")
    sets = torch.tensor(combos, device=logits.device).reshape(len(combos), k)  # (C, k)
    samples = torch.zeros(len(combos), n, dtype=logits.dtype, device=logits.device).scatter_(1, sets, 1.0)
    if distribution == "k_subset":
        return samples, torch.softmax(logits[sets].sum(dim=1), dim=0)
    p = logp.exp()
    perms = torch.tensor(list(itertools.permutations(range(k))), device=logits.device)  # (k!, k)
    ordered = sets[:, perms]  # (C, k!, k)
    po = p[ordered]  # (C, k!, k)
    removed = torch.cumsum(po, dim=-1) - po  # mass drawn before each position
    # 1 - removed can round to 0 only for an impossible ordering, whose numerator is 0 as well
    terms = po / (1.0 - removed).clamp_min(torch.finfo(p.dtype).tiny)
    return samples, terms.prod(dim=-1).sum(dim=-1)


def exact_subset_gradient(
    logits: Tensor, k: int, f: Objective, distribution: str = "topk", *, max_configs: int = MAX_CONFIGS
) -> ExactGradient:
    r"""Exact :math:`\mathbb E_S[f(z_S)]` and its gradient w.r.t. the logits, by enumeration.

    .. math::
        F(\ell) = \sum_S P_\ell(S)\, f(z_S), \qquad \nabla_\ell F = \sum_S f(z_S)\, \nabla_\ell P_\ell(S)

    Args:
        logits: ``(n,)`` logits (float64 for reference-quality gradients).
        k: subset size.
        f: maps (k-)hot rows ``(M, n)`` to values ``(M,)``.
        distribution: see :func:`subset_distribution` (``S.subset_spec(name).distribution``
            names the one each estimator samples).
        max_configs: refuse enumerations larger than this.

    Returns:
        :class:`ExactGradient` ``(value, grad)``.

    Example:
        >>> v, g = exact_subset_gradient(torch.zeros(4, dtype=torch.float64), 2, lambda z: z[:, 0], "k_subset")
        >>> round(v.item(), 4)
        0.5
    """
    theta = logits.detach().clone().requires_grad_(True)
    samples, probs = subset_distribution(theta, k, distribution, max_configs=max_configs)
    vals = f(samples)
    if not isinstance(vals, Tensor) or vals.shape != (samples.shape[0],):
        got = tuple(vals.shape) if isinstance(vals, Tensor) else type(vals).__name__
        raise ValueError(f"f must map (M, n) subset rows to (M,) values, got shape {got}")
    value = (probs * vals.detach().to(probs.dtype)).sum()
    (grad,) = torch.autograd.grad(value, theta)
    return ExactGradient(value.detach(), grad)


def subset_gradient_draws(
    logits: Tensor,
    k: int,
    f: Objective,
    name: str,
    tau: float = 1.0,
    *,
    n_draws: int = 1000,
    seed: int = 0,
    chunk: int = 1000,
) -> Tensor:
    """``n_draws`` independent gradient estimates of :math:`\\mathbb E[f]` by k-subset estimator ``name``.

    Args:
        logits: ``(n,)`` logits.
        k: subset size.
        f: maps ``(M, n)`` samples (the estimator's ``output``) to ``(M,)`` values.
        name: a name from :func:`gumbelkit.subsets.subset_estimator_names`.
        tau: temperature (ignored by ``simple``).
        n_draws: number of estimates (``>= 2``).
        seed: seeds the generator used for every draw.
        chunk: estimates per vectorised batch.

    Returns:
        ``(n_draws, n)`` gradients in the logits' dtype.
    """
    _check_subset_problem(logits, k, S.subset_spec(name).distribution)
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 2:
        raise ValueError(f"n_draws must be an int >= 2, got {n_draws!r}")
    return _chunked_gradients(
        logits, lambda theta, gen: f(S.sample_subset(theta, k, name, tau, -1, generator=gen).output),
        n_draws, seed, chunk, "(M, n)")


def subset_estimator_stats(
    logits: Tensor,
    k: int,
    f: Objective,
    name: str,
    tau: float = 1.0,
    *,
    n_draws: int = 1000,
    seed: int = 0,
    exact: ExactGradient | tuple[Tensor, Tensor] | None = None,
) -> dict[str, Any]:
    """Bias, cosine, variance and MSE of a k-subset estimator against the exact gradient.

    The reference is the exact gradient of :math:`\\mathbb E[f]` under the distribution the
    estimator samples (``subset_spec(name).distribution``).

    Returns:
        A dict with the keys of :func:`estimator_stats` plus ``k`` and ``distribution``.

    Example:
        >>> logits = torch.tensor([0.5, 0.0, -0.5, 1.0], dtype=torch.float64)
        >>> row = subset_estimator_stats(logits, 2, lambda z: z @ torch.arange(4.0, dtype=z.dtype), "simple", n_draws=10)
        >>> row["bias_norm"] < 1e-12
        True
    """
    dist = S.subset_spec(name).distribution
    ex = exact_subset_gradient(logits, k, f, dist) if exact is None else ExactGradient(*exact)
    g = subset_gradient_draws(logits, k, f, name, tau, n_draws=n_draws, seed=seed)
    return {"estimator": name, "options": {}, "tau": float(tau), "k": k, "distribution": dist,
            **_summary(g, ex.grad)}
