r"""Gradient estimators for discrete samples, behind one entry point and a registry.

Every *pathwise* estimator draws an exact sample :math:`D \sim \mathrm{Categorical}(\mathrm{softmax}(\ell))`
and returns an :class:`EstimatorSample` ``(output, hard, soft, indices)``: ``output`` is the
tensor to use downstream and carries the estimator's gradient, ``hard`` is always the exact
one-hot of ``indices``. Generic training code uses ``output`` whatever the estimator:

==============  ========  ===============================================  ======================
name            output    gradient of ``output``                           options
==============  ========  ===============================================  ======================
``st``          ``hard``  :math:`\nabla \mathrm{softmax}(\ell/\tau)`         --
``gs``          ``soft``  the relaxed sample's own                         --
``st_gs``       ``hard``  :math:`\nabla \mathrm{softmax}((\ell+g)/\tau)`     --
``gumbel_rao``  ``hard``  mean over ``k`` conditional Gumbels               ``k=10``
``gst``         ``hard``  softmax of gapped, sample-consistent logits      ``gap=1.0`` or ``"p"``
``reinmax``     ``hard``  :math:`2J(\pi_1) - \tfrac12 J(\pi_0)`, tau >= 1    --
``decoupled_st`` ``hard`` :math:`\nabla \mathrm{softmax}(\ell/\tau + g)`,     ``tau_forward=1.0``
                          sample at ``tau_forward``                        ``backward_noise=True``
==============  ========  ===============================================  ======================

and the unbiased *score-function* estimators ``reinforce`` (leave-one-out baseline) and
``indecater`` (per-variable exact marginalisation, ``n * V * K`` evaluations of ``f``) need the
downstream function, so they are used through :func:`surrogate`, :func:`reinforce_loo` or
:func:`indecater`. Binary (Bernoulli) versions of the pathwise estimators, on one logit per
variable, are in :func:`sample_bernoulli`.
Every pathwise estimator also accepts ``noise=`` (pre-drawn Gumbel noise of the logits' shape;
the same noise gives the same sample in every estimator).

Example:
    >>> import torch
    >>> from gumbelkit import estimators
    >>> logits = torch.randn(8, 5, requires_grad=True)
    >>> s = estimators.sample(logits, "gumbel_rao", tau=0.5, k=10)
    >>> loss = (s.output * torch.arange(5.0)).sum()
    >>> loss.backward()
    >>> estimators.estimator_names()
    ('st', 'gs', 'st_gs', 'gumbel_rao', 'gst', 'reinmax', 'decoupled_st', 'reinforce', 'indecater')

Each estimator works along any ``dim``, in float16 / bfloat16 (computed in float32) / float32 /
float64, and with ``-inf`` masks; :class:`Estimator` is the ``nn.Module`` form.

References:
    1. Y. Bengio, N. Leonard, A. Courville, 2013 (ST).
    2. E. Jang, S. Gu, B. Poole, ICLR 2017; C. J. Maddison, A. Mnih, Y. W. Teh, ICLR 2017 (GS).
    3. M. B. Paulus, C. J. Maddison, A. Krause, ICLR 2021 (Gumbel-Rao).
    4. T.-H. Fan et al., ICML 2022 (GST).
    5. L. Liu et al., NeurIPS 2023 (ReinMax).
    6. W. Kool, H. van Hoof, M. Welling, 2019 (REINFORCE with leave-one-out baseline).
    7. R. Shah, M. Yan, M. C. Mozer, D. Liu, arXiv:2410.13331, 2024 (Decoupled ST).
    8. L. De Smet, E. Sansone, P. Zuidberg Dos Martires, NeurIPS 2023 (IndeCateR).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from gumbelkit._validation import check_dim, check_float_tensor, check_tau, lookup
from gumbelkit.estimators._common import EstimatorSample
from gumbelkit.estimators.bernoulli import bernoulli_names, logistic_noise, sample_bernoulli
from gumbelkit.estimators.decoupled_st import decoupled_st
from gumbelkit.estimators.gs import gs
from gumbelkit.estimators.gst import check_gap, gst
from gumbelkit.estimators.gumbel_rao import gumbel_rao
from gumbelkit.estimators.indecater import IndeCateRSample, indecater
from gumbelkit.estimators.reinforce import ReinforceSample, reinforce_loo
from gumbelkit.estimators.reinmax import reinmax
from gumbelkit.estimators.st import st
from gumbelkit.estimators.st_gs import st_gs

__all__ = [
    "Estimator",
    "EstimatorSample",
    "EstimatorSpec",
    "IndeCateRSample",
    "ReinforceLOO",
    "ReinforceSample",
    "bernoulli_names",
    "decoupled_st",
    "estimator_names",
    "get_estimator",
    "gs",
    "gst",
    "gumbel_rao",
    "indecater",
    "logistic_noise",
    "reinforce_loo",
    "reinmax",
    "sample",
    "sample_bernoulli",
    "spec",
    "st",
    "st_gs",
    "surrogate",
]

SampleFn = Callable[..., EstimatorSample]


def _int_at_least(low: int, name: str) -> Callable[[object], int]:
    def check(v: object) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{name} must be an int >= {low}, got {v!r}")
        return v

    return check


def _positive(name: str) -> Callable[[object], float]:
    def check(v: object) -> float:
        return check_tau(v, name, scalar=True, owner="this estimator")

    return check


def _bool(name: str) -> Callable[[object], bool]:
    def check(v: object) -> bool:
        if not isinstance(v, bool):
            raise ValueError(f"{name} must be True or False, got {v!r}")
        return v

    return check


def _any_noise(v: object) -> object:
    if v is not None and not isinstance(v, Tensor):
        raise ValueError(f"noise must be None or a tensor of the logits' shape, got {type(v).__name__}")
    return v


@dataclass(frozen=True)
class EstimatorSpec:
    """One registry entry.

    Attributes:
        name: registry name.
        fn: the function (``sample_fn(logits, tau, dim, *, generator, **options)`` for pathwise
            estimators; :func:`reinforce_loo` for the score-function one).
        kind: ``"pathwise"`` (the gradient rides on ``output``) or ``"score"`` (needs ``f``).
        options: option name -> validator (raises ValueError, returns the checked value).
        defaults: default option values (documentation; the function has the same defaults).
        tau_min: smallest allowed temperature (ReinMax: 1.0), or None.
        summary: one line for tables and ``--help``.
    """

    name: str
    fn: Callable[..., Any]
    kind: str
    options: dict[str, Callable[[object], object]] = field(default_factory=dict)
    defaults: dict[str, object] = field(default_factory=dict)
    tau_min: float | None = None
    summary: str = ""


_COMMON = {"noise": _any_noise}

_REGISTRY: dict[str, EstimatorSpec] = {
    s.name: s
    for s in (
        EstimatorSpec("st", st, "pathwise", dict(_COMMON), summary="straight-through, softmax(l/tau) gradient"),
        EstimatorSpec("gs", gs, "pathwise", dict(_COMMON), summary="Gumbel-Softmax relaxation (soft forward)"),
        EstimatorSpec("st_gs", st_gs, "pathwise", dict(_COMMON), summary="straight-through Gumbel-Softmax"),
        EstimatorSpec(
            "gumbel_rao",
            gumbel_rao,
            "pathwise",
            {"k": _int_at_least(1, "k"), **_COMMON},
            {"k": 10},
            summary="Rao-Blackwellised ST-GS with k conditional Gumbels",
        ),
        EstimatorSpec(
            "gst",
            gst,
            "pathwise",
            {"gap": check_gap, **_COMMON},
            {"gap": 1.0},
            summary="gapped straight-through (gap=1.0: GST-1.0, gap='p': GST-p)",
        ),
        EstimatorSpec(
            "reinmax", reinmax, "pathwise", dict(_COMMON), tau_min=1.0, summary="ReinMax, second order (tau >= 1)"
        ),
        EstimatorSpec(
            "decoupled_st",
            decoupled_st,
            "pathwise",
            {"tau_forward": _positive("tau_forward"), "backward_noise": _bool("backward_noise"), **_COMMON},
            {"tau_forward": 1.0, "backward_noise": True},
            summary="decoupled ST: sample at tau_forward, softmax(l/tau + g) gradient at tau",
        ),
        EstimatorSpec(
            "reinforce",
            reinforce_loo,
            "score",
            {"n_samples": _int_at_least(2, "n_samples")},
            {"n_samples": 4},
            summary="REINFORCE with leave-one-out baseline (unbiased; needs f)",
        ),
        EstimatorSpec(
            "indecater",
            indecater,
            "score",
            {"n_samples": _int_at_least(1, "n_samples"), "chunk": _int_at_least(1, "chunk")},
            {"n_samples": 1},
            summary="IndeCateR, per-variable exact marginalisation (unbiased; n*V*K evaluations of f)",
        ),
    )
}


def estimator_names(kind: str | None = None) -> tuple[str, ...]:
    """Registered estimator names, in a fixed order.

    Args:
        kind: ``None`` for all, ``"pathwise"`` for those :func:`sample` accepts, ``"score"``
            for the score-function ones (use :func:`surrogate` or :func:`reinforce_loo`).

    Returns:
        Tuple of names.
    """
    if kind not in (None, "pathwise", "score"):
        raise ValueError(f"kind must be None, 'pathwise' or 'score', got {kind!r}")
    return tuple(n for n, s in _REGISTRY.items() if kind is None or s.kind == kind)


def spec(name: str) -> EstimatorSpec:
    """The registry entry of ``name`` (ValueError listing the known names otherwise)."""
    return lookup(_REGISTRY, name, "estimator")


def get_estimator(name: str | SampleFn) -> SampleFn:
    """Name-or-callable lookup (like timm's ``get_act_fn``).

    Args:
        name: a registered pathwise name, or a callable with the signature
            ``fn(logits, tau, dim, *, generator=None, **options) -> EstimatorSample``,
            returned as is.

    Returns:
        The sampling function.

    Raises:
        ValueError: unknown name (the message lists the known ones), or a score-function name.
    """
    if callable(name):
        return name
    s = spec(name)
    if s.kind != "pathwise":
        raise ValueError(
            f"{name!r} is a score-function estimator: it needs the downstream function f. Use "
            f"gumbelkit.estimators.surrogate(logits, f, {name!r}, ...) or {s.fn.__name__}(logits, f, "
            f"n_samples); sample() accepts: {', '.join(estimator_names('pathwise'))}"
        )
    return s.fn


def _check_options(s: EstimatorSpec, options: dict[str, object]) -> dict[str, object]:
    unknown = sorted(set(options) - set(s.options))
    if unknown:
        allowed = ", ".join(sorted(s.options)) or "none"
        raise ValueError(f"unknown option(s) {', '.join(unknown)} for estimator {s.name!r}; allowed: {allowed}")
    return {k: s.options[k](v) for k, v in options.items()}


def sample(
    logits: Tensor,
    name: str | SampleFn,
    tau: float | Tensor = 1.0,
    dim: int = -1,
    *,
    generator: torch.Generator | None = None,
    **options: Any,
) -> EstimatorSample:
    r"""Draw one exact categorical sample whose ``output`` carries estimator ``name``'s gradient.

    .. math::
        \mathrm{hard} = \mathrm{onehot}(D),\quad D \sim \mathrm{Cat}(\mathrm{softmax}(\ell)),
        \qquad \nabla_\ell\, \mathrm{output} := \text{the estimator's surrogate Jacobian}

    ``output`` is ``hard`` for every straight-through estimator and the relaxed sample ``soft``
    for ``gs``.

    Args:
        logits: ``(*, K, *)`` unnormalised log-probabilities; ``-inf`` masks a category.
        name: a name from ``estimator_names("pathwise")`` or a callable (see :func:`get_estimator`).
        tau: temperature (``reinmax`` needs ``tau >= 1``). Only ``gs`` and ``st_gs``
            differentiate through a tensor ``tau``; ``st``, ``gst``, ``gumbel_rao`` and
            ``reinmax`` treat it as a constant and raise ValueError if it requires grad.
        dim: the category dimension.
        generator: optional ``torch.Generator``.
        **options: estimator options (``k`` for gumbel_rao, ``gap`` for gst, ``noise`` for all).

    Returns:
        :class:`EstimatorSample` ``(output, hard, soft, indices)``: ``output``, ``hard`` and
        ``soft`` of the logits' shape and dtype, ``indices`` with ``dim`` removed.

    Raises:
        ValueError: unknown name or option (listing the valid ones), bad option values, bad
            ``tau`` (including ``tau < 1`` for reinmax), and the logits checks of
            :func:`gumbelkit.gumbel_softmax`.

    Example:
        >>> s = sample(torch.randn(4, 6), "st_gs", tau=0.5)
        >>> s.output.shape, s.indices.shape
        (torch.Size([4, 6]), torch.Size([4]))
    """
    if callable(name):
        return name(logits, tau, dim, generator=generator, **options)
    fn = get_estimator(name)
    opts = _check_options(_REGISTRY[name], options)
    return fn(logits, tau, dim, generator=generator, **opts)


def surrogate(
    logits: Tensor,
    f: Callable[[Tensor], Tensor],
    name: str,
    tau: float = 1.0,
    dim: int = -1,
    *,
    n_samples: int | None = None,
    generator: torch.Generator | None = None,
    **options: Any,
) -> Tensor:
    r"""Monte Carlo objective :math:`\frac1n\sum_s f(D_s)` whose gradient is estimator ``name``'s.

    One interface for every registered estimator, pathwise or score-function: useful for
    comparisons (see :mod:`gumbelkit.diagnostics`).

    Args:
        logits: ``(*B, K, *)`` logits; ``-inf`` masks a category.
        f: maps samples ``(n, *logits.shape)`` to ``(n, *P)`` values, ``P`` a prefix of the
            batch shape (e.g. ``(n,)``).
        name: a registered name (``estimator_names()``).
        tau: temperature (ignored by ``reinforce``).
        dim: the category dimension.
        n_samples: samples to average (default 1 for pathwise estimators, 4 for reinforce).
        generator: optional ``torch.Generator``.
        **options: estimator options.

    Returns:
        ``(*P)`` tensor: the mean of ``f`` over the samples, carrying the estimator's gradient.

    Example:
        >>> logits = torch.zeros(3, 2, requires_grad=True)
        >>> surrogate(logits, lambda d: d[..., 0].sum(-1), "reinmax").backward()
    """
    s = spec(name)
    if s.kind == "score":
        n = s.defaults.get("n_samples", 1) if n_samples is None else n_samples
        opts = _check_options(s, {"n_samples": n, **options})
        return s.fn(logits, f, dim=dim, generator=generator, **opts).loss  # type: ignore[no-any-return]
    n = 1 if n_samples is None else _int_at_least(1, "n_samples")(n_samples)
    check_float_tensor(logits, "logits")
    d = check_dim(logits, dim)
    rep = logits.unsqueeze(0).expand(n, *logits.shape)  # (n, *logits.shape)
    out = sample(rep, name, tau, d + 1, generator=generator, **options)
    return f(out.output).mean(dim=0)


class Estimator(nn.Module):
    """Module form of :func:`sample` for a fixed estimator (like timm's activation modules).

    Args:
        name: a name from ``estimator_names("pathwise")``.
        tau: default temperature (the call may override it with the step's value).
        dim: the category dimension.
        **options: estimator options, checked now.

    Example:
        >>> layer = Estimator("gumbel_rao", tau=0.5, k=10)
        >>> layer(torch.randn(2, 4)).output.shape
        torch.Size([2, 4])
    """

    def __init__(self, name: str, tau: float = 1.0, dim: int = -1, **options: Any) -> None:
        super().__init__()
        get_estimator(name)  # raises for unknown / score-function names
        self.name = name
        self.options = _check_options(_REGISTRY[name], options)
        s = _REGISTRY[name]
        # stored as a float: a learnable tau is passed at call time, ``layer(logits, tau=t)``
        self.tau = check_tau(
            tau, minimum=s.tau_min, scalar=True, owner=f"Estimator({name!r}) (it stores a float default)"
        )
        self.dim = dim

    def forward(
        self,
        logits: Tensor,
        tau: float | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> EstimatorSample:
        """Sample; ``tau`` overrides the default for this call."""
        t = self.tau if tau is None else tau
        return sample(logits, self.name, t, self.dim, generator=generator, **self.options)

    def extra_repr(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"name={self.name!r}, tau={self.tau}, dim={self.dim}{opts}"


class ReinforceLOO(nn.Module):
    """Module form of :func:`reinforce_loo`: ``module(logits, f) -> ReinforceSample``.

    Args:
        n_samples: samples per estimate (``>= 2``).
        dim: the category dimension.

    Example:
        >>> m = ReinforceLOO(n_samples=4)
        >>> m(torch.zeros(3, 2), lambda d: d[..., 0].sum(-1)).loss.shape
        torch.Size([])
    """

    def __init__(self, n_samples: int = 4, dim: int = -1) -> None:
        super().__init__()
        self.n_samples = _int_at_least(2, "n_samples")(n_samples)
        self.dim = dim

    def forward(
        self,
        logits: Tensor,
        f: Callable[[Tensor], Tensor],
        *,
        generator: torch.Generator | None = None,
    ) -> ReinforceSample:
        """Draw ``n_samples`` samples, evaluate ``f``, return the surrogate."""
        return reinforce_loo(logits, f, self.n_samples, self.dim, generator=generator)

    def extra_repr(self) -> str:
        return f"n_samples={self.n_samples}, dim={self.dim}"

