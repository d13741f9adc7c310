r"""``torch.distributions`` classes for the Gumbel family, numerically safe.

* :class:`Gumbel` -- the Gumbel (type-I extreme value) distribution with stable ``log_cdf`` and
  ``log_survival`` in both tails and 53-bit, never-infinite samples.
* :class:`RelaxedOneHotCategorical` -- the relaxed one-hot categorical (Concrete,
  Gumbel-Softmax) distribution on the simplex, with a log-space ``log_prob`` that stays finite
  with ``-inf`` masked logits and at low temperature.
* :class:`RelaxedOneHotCategoricalStraightThrough` -- the same, with an exact one-hot
  ``rsample`` that carries the relaxed sample's gradient.
* :class:`RelaxedBernoulli` / :class:`RelaxedBernoulliStraightThrough` -- the binary Concrete
  distribution on :math:`(0, 1)` and its hard 0/1 straight-through variant.

Names and argument order are torch's and pyro's (``temperature, probs=None, logits=None``),
so code ported from ``torch.distributions`` or pyro means the same thing here. Every class
follows the ``torch.distributions`` contract (``arg_constraints``, ``support``,
``has_rsample``, ``batch_shape`` / ``event_shape``, ``expand``, ``rsample`` / ``sample``,
``log_prob``, ``validate_args``). ``rsample`` and ``sample`` also take a keyword-only
``generator`` for reproducible draws. Samples draw their noise with
:func:`gumbelkit.noise.gumbel_noise` (53-bit uniforms, always finite). Half-precision parameters
are computed in float32 and the results returned in their own dtype.

Validation has one switch, torch's: a distribution checks its parameters and the values passed
to ``log_prob`` exactly when its ``validate_args`` is on (default:
``torch.distributions.Distribution.set_default_validate_args``); besides torch's
``arg_constraints`` it then rejects ``+inf`` logits, fully masked slices and a non-finite
temperature. ``gumbelkit.set_validate_args`` (the samplers' switch) plays no part here. Checks
of arguments that cost nothing (dtypes, an empty category dimension, a number temperature)
always run. Inside ``torch.func.vmap`` pass ``validate_args=False``, as for torch's own
distributions.

The straight-through classes' ``log_prob`` is, by default, the log-probability of the hard
sample they return (categorical / Bernoulli); ``log_prob_of="relaxed"`` gives pyro's
convention instead (the Concrete density of the relaxed sample behind the hard one).

There are no custom autograd functions here; the straight-through classes reuse
:func:`gumbelkit.functional.straight_through`.

References:
    1. E. J. Gumbel, *Statistical theory of extreme values*, 1954.
    2. C. J. Maddison, A. Mnih, Y. W. Teh, *The Concrete Distribution: A Continuous
       Relaxation of Discrete Random Variables*, ICLR 2017.
    3. E. Jang, S. Gu, B. Poole, *Categorical Reparameterization with Gumbel-Softmax*,
       ICLR 2017.
    4. M. Maechler, *Accurately Computing log(1 - exp(-|a|))*, Rmpfr vignette, 2012.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, constraints
from torch.distributions.utils import broadcast_all, lazy_property
from torch.utils.weak import WeakTensorKeyDictionary

from gumbelkit._validation import (
    check_categories,
    check_float_tensor,
    check_logits,
    check_tau,
    compute_dtype,
)
from gumbelkit.functional import gumbel_softmax, gumbel_softmax_sample, straight_through
from gumbelkit.noise import gumbel_noise

__all__ = [
    "Gumbel",
    "RelaxedOneHotCategorical",
    "RelaxedOneHotCategoricalStraightThrough",
    "RelaxedBernoulli",
    "RelaxedBernoulliStraightThrough",
]

_EULER_GAMMA = 0.57721566490153286060651209008240243  # Euler-Mascheroni constant
_LN2 = math.log(2.0)
_Size = torch.Size | list[int] | tuple[int, ...]
_EMPTY = torch.Size()  # default sample_shape (a module-level singleton, not a call per def)


def _log1mexp(a: Tensor) -> Tensor:
    r""":math:`\log(1 - e^{-a})` for :math:`a \ge 0`, accurate for every ``a`` (Maechler 2012).

    ``log(-expm1(-a))`` is accurate for small ``a`` (``1 - e^{-a}`` is tiny) and
    ``log1p(-exp(-a))`` for large ``a`` (``e^{-a}`` is tiny); ``ln 2`` is the switch point.
    Both branches see a safe input so that no ``inf * 0`` reaches the backward pass.
    """
    small = a <= _LN2
    one = torch.ones((), dtype=a.dtype, device=a.device)
    a_small = torch.where(small, a, one)  # 1 keeps log(-expm1(-a)) finite where unused
    a_large = torch.where(small, one, a)
    return torch.where(small, torch.log(-torch.expm1(-a_small)), torch.log1p(-torch.exp(-a_large)))


# --------------------------------------------------------------------------------------------
# Gumbel
# --------------------------------------------------------------------------------------------


class _GeneratorSampling(Distribution):
    """Shared by every class here: ``sample`` is ``rsample`` without gradient, and both take a
    keyword-only ``generator``."""

    def rsample(
        self, sample_shape: _Size = _EMPTY, *, generator: torch.Generator | None = None
    ) -> Tensor:
        raise NotImplementedError

    def sample(
        self, sample_shape: _Size = _EMPTY, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Sample without gradient; see :meth:`rsample`."""
        with torch.no_grad():
            return self.rsample(sample_shape, generator=generator)


class Gumbel(_GeneratorSampling):
    r"""The Gumbel (type-I extreme value, maximum) distribution.

    With :math:`z = (x - \mu) / \beta`:

    .. math::
        \log p(x) = -z - e^{-z} - \log\beta, \qquad
        F(x) = e^{-e^{-z}}, \qquad
        F^{-1}(q) = \mu - \beta \log(-\log q),

    .. math::
        \log F(x) = -e^{-z}, \qquad
        \log(1 - F(x)) = \log\left(1 - e^{-e^{-z}}\right),

    mean :math:`\mu + \beta\gamma`, mode :math:`\mu`, variance :math:`\pi^2\beta^2/6`, entropy
    :math:`\log\beta + 1 + \gamma` (:math:`\gamma` is the Euler-Mascheroni constant).

    Numerics: ``log_survival`` uses the two-branch :math:`\log(1 - e^{-t})` of Maechler (2012)
    with :math:`t = e^{-z}`, and :math:`-z - t/2` once :math:`t < 10^{-8}` (the next term,
    :math:`t^2/24`, is below float64 resolution there), so it is accurate in both tails and
    never ``-inf`` for finite ``x``. In float64 every method is accurate to a few ulps over
    :math:`|z| \le 40` and beyond (``log_prob`` stays finite down to :math:`z \approx -709`,
    where :math:`e^{-z}` overflows and the true value is below -1e300 anyway).
    ``rsample`` is :math:`\mu + \beta G` with :math:`G` from :func:`gumbelkit.noise.gumbel_noise`,
    so samples are finite: :math:`G \in [-3.604, 37.43]`.

    Args:
        loc: location :math:`\mu`, a number or a floating tensor (broadcast with ``scale``).
        scale: scale :math:`\beta > 0`, a number or a floating tensor.
        validate_args: check parameters and values (default: torch's global default).

    Example:
        >>> d = Gumbel(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 2.0]))
        >>> d.sample((5,), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5, 2])
        >>> bool(torch.isfinite(Gumbel(0.0, 1.0).log_survival(torch.tensor(-40.0))))
        True

    References:
        1. E. J. Gumbel, *Statistical theory of extreme values*, 1954.
        2. M. Maechler, *Accurately Computing log(1 - exp(-|a|))*, 2012.
    """

    arg_constraints = {"loc": constraints.real, "scale": constraints.positive}
    support = constraints.real
    has_rsample = True

    def __init__(
        self,
        loc: Tensor | float,
        scale: Tensor | float,
        validate_args: bool | None = None,
    ) -> None:
        self.loc, self.scale = broadcast_all(loc, scale)
        check_float_tensor(self.loc, "loc")
        check_float_tensor(self.scale, "scale")
        super().__init__(self.loc.shape, torch.Size(), validate_args=validate_args)

    def expand(self, batch_shape: _Size, _instance: Gumbel | None = None) -> Gumbel:
        new = self._get_checked_instance(Gumbel, _instance)
        batch_shape = torch.Size(batch_shape)
        new.loc = self.loc.expand(batch_shape)
        new.scale = self.scale.expand(batch_shape)
        super(Gumbel, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    # ---- sampling ----------------------------------------------------------------------------

    def rsample(
        self, sample_shape: _Size = _EMPTY, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Reparameterised sample :math:`\\mu + \\beta G`, shape ``sample_shape + batch_shape``."""
        shape = self._extended_shape(torch.Size(sample_shape))
        cdt = compute_dtype(self.loc.dtype)
        g = gumbel_noise(shape, dtype=cdt, device=self.loc.device, generator=generator)
        return (self.loc.to(cdt) + self.scale.to(cdt) * g).to(self.loc.dtype)

    # ---- densities ---------------------------------------------------------------------------

    def _z(self, value: Tensor) -> tuple[Tensor, torch.dtype]:
        """``(value - loc) / scale`` in the compute dtype, and the dtype to return."""
        if self._validate_args:
            self._validate_sample(value)
        out = torch.promote_types(value.dtype, self.loc.dtype)
        cdt = compute_dtype(out)
        return (value.to(cdt) - self.loc.to(cdt)) / self.scale.to(cdt), out

    def log_prob(self, value: Tensor) -> Tensor:
        z, out = self._z(value)
        # z = -inf would give -(-inf) - inf = NaN; the density there is 0
        lp = -z - torch.exp(-z) - self.scale.to(z.dtype).log()
        return torch.where(torch.isneginf(z), torch.full_like(lp, -math.inf), lp).to(out)

    def cdf(self, value: Tensor) -> Tensor:
        z, out = self._z(value)
        return torch.exp(-torch.exp(-z)).to(out)

    def log_cdf(self, value: Tensor) -> Tensor:
        r""":math:`\log F(x) = -e^{-z}`: exact in closed form, no cancellation."""
        z, out = self._z(value)
        return (-torch.exp(-z)).to(out)

    def log_survival(self, value: Tensor) -> Tensor:
        r""":math:`\log(1 - F(x)) = \log(1 - e^{-t})`, :math:`t = e^{-z}`, stable in both tails.

        For :math:`t < 10^{-8}` (:math:`z > 18.4`) it returns :math:`-z - t/2`, the expansion
        :math:`\log t + \log\frac{1 - e^{-t}}{t} = -z - t/2 + t^2/24 - \dots`, which also
        stays finite where :math:`t` underflows to 0.
        """
        z, out = self._z(value)
        t = torch.exp(-z)
        tiny_t = t < 1e-8
        safe_t = torch.where(tiny_t, torch.ones_like(t), t)  # keep the log branch away from t = 0
        return torch.where(tiny_t, -z - 0.5 * t, _log1mexp(safe_t)).to(out)

    def icdf(self, value: Tensor) -> Tensor:
        if self._validate_args:
            if not isinstance(value, Tensor):
                raise ValueError("The value argument to icdf must be a Tensor")
            if not bool(constraints.unit_interval.check(value).all()):
                raise ValueError(f"icdf: value must be a probability in [0, 1], got {value}")
        out = torch.promote_types(value.dtype, self.loc.dtype)
        cdt = compute_dtype(out)
        q = value.to(cdt)
        return (self.loc.to(cdt) - self.scale.to(cdt) * torch.log(-torch.log(q))).to(out)

    # ---- summaries ---------------------------------------------------------------------------

    @property
    def mean(self) -> Tensor:
        return self.loc + self.scale * _EULER_GAMMA

    @property
    def mode(self) -> Tensor:
        return self.loc

    @property
    def variance(self) -> Tensor:
        return (math.pi**2 / 6.0) * self.scale.pow(2)

    @property
    def stddev(self) -> Tensor:
        return (math.pi / math.sqrt(6.0)) * self.scale

    def entropy(self) -> Tensor:
        return self.scale.log() + (1.0 + _EULER_GAMMA)


# --------------------------------------------------------------------------------------------
# shared parameter handling for the relaxed distributions
# --------------------------------------------------------------------------------------------


#: Simplex sum tolerance in units of the value dtype's eps. Correct samples are within 2 eps in
#: float16 / bfloat16 / float32 / float64 for K up to 1e5 (each entry is rounded once with a
#: relative error of eps/2, and the entries sum to 1); torch's fixed 1e-6 rejects correct
#: half-precision samples, and a tolerance growing with K lets a float16 vector summing to 1.9
#: pass at K = 1000.
SIMPLEX_TOL_EPS = 8


class _DtypeSimplex(constraints.Constraint):
    """The unit simplex (``x >= 0``, ``sum(x) = 1`` along the last dim), with a sum tolerance of
    :data:`SIMPLEX_TOL_EPS` times the value dtype's eps (the sum is taken in float64)."""

    event_dim = 1

    def check(self, value: Tensor) -> Tensor:
        eps = torch.finfo(value.dtype).eps if value.is_floating_point() else 0.0
        tol = SIMPLEX_TOL_EPS * eps
        total = value.sum(-1, dtype=torch.float64)
        return torch.all(value >= 0, dim=-1) & ((total - 1).abs() <= tol)

    def __repr__(self) -> str:
        return "Simplex()"


_simplex = _DtypeSimplex()


class _OpenUnitInterval(constraints.Constraint):
    """The open interval (0, 1): a Bernoulli probability with finite log-odds."""

    def check(self, value: Tensor) -> Tensor:
        return (value > 0) & (value < 1)

    def __repr__(self) -> str:
        return "OpenInterval(lower_bound=0.0, upper_bound=1.0)"


def _temperature(temperature: object, dtype: torch.dtype, device: torch.device) -> Tensor:
    """``temperature`` as a floating tensor. A number is checked here (free); a tensor's values
    are data, checked with the other parameters when ``validate_args`` is on."""
    if isinstance(temperature, Tensor):
        check_float_tensor(temperature, "temperature")
        return temperature
    t = check_tau(temperature, "temperature", scalar=True, dtype=dtype)
    # a number is stored in float32 or better: bfloat16 would turn 0.01 into 0.01001
    return torch.tensor(t, dtype=compute_dtype(dtype), device=device)


def _validating(validate_args: bool | None) -> bool:
    """The distribution's validation flag, resolved as torch resolves it."""
    return Distribution._validate_args if validate_args is None else bool(validate_args)


def _batch_with_temperature(param_batch: torch.Size, temperature: Tensor) -> torch.Size:
    try:
        return torch.broadcast_shapes(param_batch, temperature.shape)
    except RuntimeError:
        raise ValueError(
            f"temperature must be a number or a tensor broadcastable to the batch shape "
            f"{tuple(param_batch)}, got shape {tuple(temperature.shape)}"
        ) from None


#: hard sample -> the soft sample behind it, for ``log_prob_of="relaxed"`` (pyro's convention);
#: weak keys: an entry lives as long as the hard tensor
_RELAXED_OF: WeakTensorKeyDictionary = WeakTensorKeyDictionary()

LOG_PROB_OF = ("hard", "relaxed")


def _check_log_prob_of(value: object) -> str:
    if value not in LOG_PROB_OF:
        raise ValueError(f"log_prob_of must be 'hard' or 'relaxed' (pyro's convention), got {value!r}")
    return str(value)


def _exactly_one(logits: object, probs: object) -> None:
    if (logits is None) == (probs is None):
        raise ValueError(
            "pass exactly one of logits or probs (got "
            + ("both" if logits is not None else "neither")
            + ")"
        )


# --------------------------------------------------------------------------------------------
# RelaxedOneHotCategorical (relaxed one-hot categorical / Concrete)
# --------------------------------------------------------------------------------------------


class RelaxedOneHotCategorical(_GeneratorSampling):
    r"""The Gumbel-Softmax (Concrete, relaxed one-hot categorical) distribution on the simplex.

    A sample is

    .. math::
        y = \mathrm{softmax}\!\left(\frac{\ell + g}{\tau}\right), \quad
        g_k \sim \mathrm{Gumbel}(0, 1)\ \text{i.i.d.},

    and its density (Maddison et al. 2017, Sec. 3.2, Definition 1) with respect to Lebesgue
    measure on the first :math:`K - 1` coordinates, with :math:`\alpha_k = e^{\ell_k}`, is

    .. math::
        p(y) = (K-1)!\,\tau^{K-1}
               \frac{\prod_{k} \alpha_k y_k^{-\tau-1}}{\left(\sum_{i} \alpha_i y_i^{-\tau}\right)^K},

    evaluated in log space:

    .. math::
        \log p(y) = \log\Gamma(K) + (K-1)\log\tau + \sum_k \left(\ell_k - (\tau+1)\log y_k\right)
                    - K\, \mathrm{logsumexp}_i\left(\ell_i - \tau\log y_i\right).

    Behaviour in the temperature: as :math:`\tau \to 0` samples approach the one-hot
    :math:`\mathrm{onehot}(\arg\max_k(\ell_k + g_k))`, an exact Categorical(softmax(logits))
    draw, and the density concentrates on the vertices; as :math:`\tau \to \infty` samples
    approach the uniform vector :math:`1/K`. Only the argmax (never the relaxed value) is
    distributed as the categorical.

    Masks: a ``-inf`` logit (or a zero probability) removes the category. The distribution is
    then the Concrete distribution of the :math:`K'` unmasked categories on their sub-simplex
    (the formula above with :math:`K'` in place of :math:`K`; masked entries of a sample are
    exactly 0). A value with a nonzero entry at a masked category has ``log_prob`` ``-inf``
    (never NaN).

    Low temperature: ``rsample`` entries that underflow to exactly 0 are read by ``log_prob``
    as the smallest normal number of the compute dtype (``finfo.tiny``, the nearest interior
    point), so the ``log_prob`` of every sample ``rsample`` returns is finite, for example at
    :math:`\tau = 0.01`.

    Args:
        temperature: :math:`\tau`, a positive finite number or a positive tensor broadcastable
            to the batch shape (``(*batch)``, no category dimension); learnable tensors receive
            gradients. Anything else raises ``ValueError``.
        probs: ``(*batch, K)`` probabilities on the simplex (0 masks a category).
        logits: ``(*batch, K)`` unnormalised log-probabilities; ``-inf`` masks a category.
            Pass exactly one of ``probs`` and ``logits`` (torch's order: ``probs`` comes
            first, so ``RelaxedOneHotCategorical(t, p)`` means probabilities, as in torch).
        validate_args: check parameters and values (default: torch's global default).

    Attributes:
        logits: normalised log-probabilities ``(*batch, K)`` (``logsumexp = 0``).
        probs: ``softmax(logits)``.

    Example:
        >>> d = RelaxedOneHotCategorical(0.5, logits=torch.tensor([0.0, 1.0, -float("inf")]))
        >>> y = d.rsample((4,), generator=torch.Generator().manual_seed(0))
        >>> y.shape, bool((y[:, 2] == 0).all()), bool(torch.isfinite(d.log_prob(y)).all())
        (torch.Size([4, 3]), True, True)

    References:
        1. C. J. Maddison, A. Mnih, Y. W. Teh, *The Concrete Distribution*, ICLR 2017.
        2. E. Jang, S. Gu, B. Poole, *Categorical Reparameterization with Gumbel-Softmax*,
           ICLR 2017.
    """

    arg_constraints = {
        "probs": _simplex,
        "logits": constraints.real_vector,
        "temperature": constraints.positive,
    }
    support: constraints.Constraint = _simplex
    has_rsample = True

    def __init__(
        self,
        temperature: Tensor | float,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        validate_args: bool | None = None,
    ) -> None:
        _exactly_one(logits, probs)
        name = "probs" if probs is not None else "logits"
        given = check_float_tensor(probs if probs is not None else logits, name)
        if given.ndim == 0:
            raise ValueError(f"{name} must have at least one dimension (the categories)")
        check_categories(given, given.ndim - 1, name)  # validation off too: K = 0 is never valid
        if probs is not None:
            self.probs = probs
            pos = probs > 0
            # log 0 = -inf marks a mask; log of a safe 1 there keeps 1/p out of the backward
            raw = torch.where(pos, torch.where(pos, probs, 1.0).log(), -math.inf)
        else:
            raw = given
        self.temperature = _temperature(temperature, raw.dtype, raw.device)
        if _validating(validate_args):
            # beyond torch's arg_constraints: +inf logits, fully masked slices, NaN probs
            if probs is not None and bool(((probs < 0) | probs.isnan()).any()):
                raise ValueError("probs must be nonnegative and not NaN")
            check_logits(raw, raw.ndim - 1, name="logits" if name == "logits" else "log(probs)")
            check_tau(self.temperature, "temperature", dtype=raw.dtype)  # a tensor: positive, finite
        cdt = compute_dtype(raw.dtype)
        raw_c = raw.to(cdt)
        # normalise in float32 or better; the max is finite since no slice is fully masked
        self.logits = (raw_c - raw_c.logsumexp(-1, keepdim=True)).to(raw.dtype)
        batch_shape = _batch_with_temperature(raw.shape[:-1], self.temperature)
        super().__init__(batch_shape, raw.shape[-1:], validate_args=validate_args)

    def expand(
        self, batch_shape: _Size, _instance: RelaxedOneHotCategorical | None = None
    ) -> RelaxedOneHotCategorical:
        new = self._get_checked_instance(RelaxedOneHotCategorical, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand(batch_shape + self.event_shape)
        new.temperature = self.temperature.expand(batch_shape)
        if "probs" in self.__dict__:
            new.probs = self.probs.expand(batch_shape + self.event_shape)
        super(RelaxedOneHotCategorical, new).__init__(
            batch_shape, self.event_shape, validate_args=False
        )
        new._validate_args = self._validate_args
        return new

    @lazy_property
    def probs(self) -> Tensor:  # type: ignore[override]
        cdt = compute_dtype(self.logits.dtype)
        return torch.softmax(self.logits.to(cdt), dim=-1).to(self.logits.dtype)

    @property
    def param_shape(self) -> torch.Size:
        return self.logits.shape

    def _sample_args(self, sample_shape: _Size) -> tuple[Tensor, Tensor]:
        shape = self._extended_shape(torch.Size(sample_shape))  # (*sample, *batch, K)
        logits = self.logits.expand(shape)
        tau = self.temperature.expand(self.batch_shape).unsqueeze(-1)  # (*batch, 1)
        return logits, tau

    def rsample(
        self, sample_shape: _Size = _EMPTY, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Relaxed sample ``softmax((logits + g) / temperature)``, shape ``(*sample, *batch, K)``.

        Drawn by :func:`gumbelkit.functional.gumbel_softmax`; the same ``generator`` state gives
        the same sample as :class:`RelaxedOneHotCategoricalStraightThrough` (and as the functional API).
        """
        logits, tau = self._sample_args(sample_shape)
        return gumbel_softmax(logits, tau, hard=False, dim=-1, generator=generator)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of the Concrete distribution, computed in log space (see the class doc).

        Args:
            value: ``(*sample, *batch, K)`` points on the simplex.

        Returns:
            ``(*sample, *batch)`` log densities; ``-inf`` for a nonzero entry at a masked
            category.
        """
        if self._validate_args:
            self._validate_sample(value)
        return self._concrete_log_prob(value)

    def _concrete_log_prob(self, value: Tensor) -> Tensor:
        """The Concrete log density of ``value`` (no validation)."""
        out_dtype = torch.promote_types(value.dtype, self.logits.dtype)
        cdt = compute_dtype(out_dtype)
        logits, v = torch.broadcast_tensors(self.logits.to(cdt), value.to(cdt))  # (*, K)
        tau = self.temperature.to(cdt).unsqueeze(-1)  # (*batch, 1)
        masked = torch.isneginf(logits)
        forbidden = (masked & (v != 0)).any(-1)  # mass at a masked category: density 0
        zero = torch.zeros((), dtype=cdt, device=v.device)
        # an entry that underflowed to 0 (low temperature) is read as finfo.tiny, the nearest
        # interior point, so the log stays finite
        log_v = torch.where(masked, zero, v.clamp(min=torch.finfo(cdt).tiny).log())
        lz = torch.where(masked, zero, logits)  # masked terms drop out of the sums
        score = torch.where(
            masked, torch.full((), -math.inf, dtype=cdt, device=v.device), lz - tau * log_v
        )
        k = (~masked).sum(-1).to(cdt)  # K', the number of unmasked categories
        tau_b = tau.squeeze(-1)
        lp = (
            torch.lgamma(k)
            + (k - 1) * tau_b.log()
            + (lz - (tau + 1) * log_v).sum(-1)
            - k * score.logsumexp(-1)
        )
        lp = torch.where(forbidden, torch.full((), -math.inf, dtype=cdt, device=v.device), lp)
        return lp.to(out_dtype)


class RelaxedOneHotCategoricalStraightThrough(RelaxedOneHotCategorical):
    r"""Straight-through Gumbel-Softmax: an exact one-hot ``rsample`` with the relaxed gradient.

    .. math::
        y^{hard} = \mathrm{onehot}\!\left(\arg\max_k (\ell_k + g_k)\right), \qquad
        \nabla y^{hard} := \nabla\, \mathrm{softmax}\!\left(\frac{\ell + g}{\tau}\right)

    The forward value is exactly one-hot (every entry exactly 0.0 or 1.0, also in float16 and
    bfloat16) and is an exact Categorical(softmax(logits)) draw at every temperature; the
    temperature only shapes the gradient (small :math:`\tau`: less biased, higher variance;
    large :math:`\tau`: gradient of a near-uniform softmax). With the same ``generator`` state
    the draw uses the same noise as :meth:`RelaxedOneHotCategorical.rsample`, whose gradient it carries.

    ``log_prob``: two conventions, chosen by ``log_prob_of``.

    * ``"hard"`` (default): the **categorical** log-probability :math:`\sum_k y_k \log \pi_k`
      (:math:`= \log \pi_i` for the one-hot of :math:`i`) of the one-hot ``value``: the
      log-probability of the sample ``rsample`` actually returns, an exact categorical draw.
    * ``"relaxed"``: pyro's convention (``pyro.distributions.
      RelaxedOneHotCategoricalStraightThrough``): the relaxed (Concrete) log density of the soft
      sample behind the one-hot. ``rsample`` records that soft sample in a weak table keyed by
      the returned tensor (the tensor itself is not modified, unlike pyro, which hangs it on the
      tensor as ``_unquantize``); ``log_prob`` of that very tensor object, on this or any other
      distribution with ``log_prob_of="relaxed"`` (e.g. a prior, as in a pyro ELBO), evaluates
      the density there. A tensor without a recorded soft sample is evaluated as is, as pyro
      does. Use it when porting pyro code; the ``"hard"`` value is the one that matches what
      the sample is.

    The support is the one-hot vectors either way. For the soft sample itself use
    :func:`gumbelkit.functional.gumbel_softmax_sample`.

    Args:
        temperature, probs, logits, validate_args: as :class:`RelaxedOneHotCategorical`.
        log_prob_of: ``"hard"`` or ``"relaxed"`` (keyword-only; see above).

    Example:
        >>> logits = torch.zeros(3, requires_grad=True)
        >>> y = RelaxedOneHotCategoricalStraightThrough(1.0, logits=logits).rsample()
        >>> sorted(y.tolist())
        [0.0, 0.0, 1.0]
        >>> (y * torch.arange(3.0)).sum().backward()  # the soft sample's gradient
        >>> logits.grad.shape
        torch.Size([3])

    References:
        1. E. Jang, S. Gu, B. Poole, *Categorical Reparameterization with Gumbel-Softmax*,
           ICLR 2017 (Section 2.2, straight-through).
    """

    support: constraints.Constraint = constraints.one_hot

    def __init__(
        self,
        temperature: Tensor | float,
        probs: Tensor | None = None,
        logits: Tensor | None = None,
        validate_args: bool | None = None,
        *,
        log_prob_of: str = "hard",
    ) -> None:
        self.log_prob_of = _check_log_prob_of(log_prob_of)
        super().__init__(temperature, probs, logits, validate_args)

    def expand(
        self, batch_shape: _Size, _instance: RelaxedOneHotCategorical | None = None
    ) -> RelaxedOneHotCategorical:
        new = self._get_checked_instance(RelaxedOneHotCategoricalStraightThrough, _instance)
        new.log_prob_of = self.log_prob_of
        return super().expand(batch_shape, _instance=new)

    def rsample(
        self, sample_shape: _Size = _EMPTY, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Exact one-hot sample ``(*sample, *batch, K)`` with the soft sample's gradient."""
        logits, tau = self._sample_args(sample_shape)
        s = gumbel_softmax_sample(logits, tau, dim=-1, generator=generator)
        if self.log_prob_of == "relaxed":
            _RELAXED_OF[s.hard] = s.soft
        return s.hard

    def log_prob(self, value: Tensor) -> Tensor:
        """Log-probability of one-hot ``value``: categorical (``log_prob_of="hard"``) or the
        Concrete density of the soft sample behind it (``"relaxed"``, pyro's)."""
        if self._validate_args:
            self._validate_sample(value)
        if self.log_prob_of == "relaxed":
            return self._concrete_log_prob(_RELAXED_OF.get(value, value))
        out_dtype = torch.promote_types(value.dtype, self.logits.dtype)
        cdt = compute_dtype(out_dtype)
        logits, v = torch.broadcast_tensors(self.logits.to(cdt), value.to(cdt))
        masked = torch.isneginf(logits)
        # 0 * (-inf) would be NaN (also in the backward): masked logits are replaced by 0 in
        # the product, and mass at a masked category gives -inf explicitly
        safe = torch.where(masked, torch.zeros((), dtype=cdt, device=v.device), logits)
        lp = (v * safe).sum(-1)
        forbidden = (masked & (v != 0)).any(-1)
        lp = torch.where(forbidden, torch.full((), -math.inf, dtype=cdt, device=v.device), lp)
        return lp.to(out_dtype)


# --------------------------------------------------------------------------------------------
# RelaxedBernoulli (binary Concrete)
# --------------------------------------------------------------------------------------------


class RelaxedBernoulli(_GeneratorSampling):
    r"""The relaxed Bernoulli (binary Concrete) distribution on :math:`(0, 1)`.

    A sample is

    .. math::
        y = \sigma\!\left(\frac{\ell + L}{\tau}\right), \quad
        L = g_1 - g_2 \sim \mathrm{Logistic}(0, 1),\ g_i \sim \mathrm{Gumbel}(0, 1),

    (the :math:`K = 2` Gumbel-Softmax: :math:`y` is the first coordinate of
    ``softmax(([l, 0] + g) / tau)``), and its density (Maddison et al. 2017, Sec. 3, the
    binary case) is

    .. math::
        p(y) = \frac{\tau\, \alpha\, y^{-\tau-1} (1-y)^{-\tau-1}}
                    {\left(\alpha\, y^{-\tau} + (1-y)^{-\tau}\right)^2}, \quad \alpha = e^{\ell}.

    It is evaluated through the logit :math:`x = \log y - \log(1 - y)` and
    :math:`t = \tau x - \ell` with log-sigmoids only, so no term overflows:

    .. math::
        \log p(y) = \log\tau + \log\sigma(t) + \log\sigma(-t) - \log\sigma(x) - \log\sigma(-x).

    A value of exactly 0 or 1 (which ``rsample`` returns when the sample rounds there, e.g.
    at low temperature) is read as the nearest interior float (``finfo.tiny`` or
    ``1 - eps/2``), so ``log_prob`` is finite on the whole closed support.

    As :math:`\tau \to 0` samples approach Bernoulli(:math:`\sigma(\ell)`) 0/1 values
    (:math:`P(y > 1/2) = \sigma(\ell)` exactly, at every temperature); as :math:`\tau \to \infty`
    they approach :math:`1/2`.

    Args:
        temperature: :math:`\tau`, a positive finite number or a positive tensor broadcastable
            with the parameters.
        probs: :math:`\sigma(\ell)` in the open interval (0, 1), any shape (the batch shape).
        logits: log-odds :math:`\ell`, finite. Pass exactly one of ``probs`` and ``logits``
            (torch's order: ``RelaxedBernoulli(t, p)`` means a probability, as in torch).
        validate_args: check parameters and values (default: torch's global default).

    Example:
        >>> d = RelaxedBernoulli(0.5, logits=torch.tensor([-1.0, 2.0]))
        >>> y = d.rsample((3,), generator=torch.Generator().manual_seed(0))
        >>> y.shape, bool(torch.isfinite(d.log_prob(y)).all())
        (torch.Size([3, 2]), True)

    References:
        1. C. J. Maddison, A. Mnih, Y. W. Teh, *The Concrete Distribution*, ICLR 2017.
        2. E. Jang, S. Gu, B. Poole, *Categorical Reparameterization with Gumbel-Softmax*,
           ICLR 2017.
    """

    arg_constraints = {
        "probs": _OpenUnitInterval(),
        "logits": constraints.real,
        "temperature": constraints.positive,
    }
    support: constraints.Constraint = constraints.unit_interval
    has_rsample = True

    def __init__(
        self,
        temperature: Tensor | float,
        probs: Tensor | float | None = None,
        logits: Tensor | float | None = None,
        validate_args: bool | None = None,
    ) -> None:
        _exactly_one(logits, probs)
        validate = _validating(validate_args)
        if probs is not None:
            (p,) = broadcast_all(probs)
            check_float_tensor(p, "probs")
            if validate and not bool(((p > 0) & (p < 1)).all()):
                raise ValueError(f"probs must lie in the open interval (0, 1), got {p}")
            self.probs = p
            cdt = compute_dtype(p.dtype)
            pc = p.to(cdt)
            self.logits = (pc.log() - torch.log1p(-pc)).to(p.dtype)
        else:
            assert logits is not None
            (lg,) = broadcast_all(logits)
            check_float_tensor(lg, "logits")
            if validate and not bool(torch.isfinite(lg).all()):
                raise ValueError(f"logits must be finite (no NaN or +-inf), got {lg}")
            self.logits = lg
        self.temperature = _temperature(temperature, self.logits.dtype, self.logits.device)
        if validate:
            check_tau(self.temperature, "temperature", dtype=self.logits.dtype)  # a tensor: positive, finite
        batch_shape = _batch_with_temperature(self.logits.shape, self.temperature)
        super().__init__(batch_shape, torch.Size(), validate_args=validate_args)

    def expand(
        self, batch_shape: _Size, _instance: RelaxedBernoulli | None = None
    ) -> RelaxedBernoulli:
        new = self._get_checked_instance(RelaxedBernoulli, _instance)
        batch_shape = torch.Size(batch_shape)
        new.logits = self.logits.expand(batch_shape)
        new.temperature = self.temperature.expand(batch_shape)
        if "probs" in self.__dict__:
            new.probs = self.probs.expand(batch_shape)
        super(RelaxedBernoulli, new).__init__(batch_shape, torch.Size(), validate_args=False)
        new._validate_args = self._validate_args
        return new

    @lazy_property
    def probs(self) -> Tensor:  # type: ignore[override]
        return torch.sigmoid(self.logits)

    @property
    def param_shape(self) -> torch.Size:
        return self.logits.shape

    def _perturbed(
        self, sample_shape: _Size, generator: torch.Generator | None
    ) -> tuple[Tensor, torch.dtype]:
        """``(logits + L) / temperature`` in the compute dtype, shape ``(*sample, *batch)``."""
        shape = self._extended_shape(torch.Size(sample_shape))
        cdt = compute_dtype(self.logits.dtype)
        dev = self.logits.device
        # the difference of two 53-bit Gumbels is Logistic(0, 1), finite: |L| <= 41.04
        g1 = gumbel_noise(shape, dtype=cdt, device=dev, generator=generator)
        g2 = gumbel_noise(shape, dtype=cdt, device=dev, generator=generator)
        x = (self.logits.to(cdt) + (g1 - g2)) / self.temperature.to(cdt)
        return x, self.logits.dtype

    def rsample(
        self, sample_shape: _Size = _EMPTY, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Relaxed sample :math:`\\sigma((\\ell + L)/\\tau)`, shape ``sample_shape + batch_shape``."""
        x, dtype = self._perturbed(sample_shape, generator)
        return torch.sigmoid(x).to(dtype)

    def log_prob(self, value: Tensor) -> Tensor:
        """Log density of the binary Concrete distribution (see the class doc)."""
        if self._validate_args:
            self._validate_sample(value)
        return self._concrete_log_prob(value)

    def _concrete_log_prob(self, value: Tensor) -> Tensor:
        """The binary Concrete log density of ``value`` (no validation)."""
        out_dtype = torch.promote_types(value.dtype, self.logits.dtype)
        cdt = compute_dtype(out_dtype)
        fi = torch.finfo(cdt)
        # 0 and 1 are read as the nearest interior floats so that the logit is finite
        y = value.to(cdt).clamp(min=fi.tiny, max=1.0 - fi.eps / 2)
        x = torch.log(y) - torch.log1p(-y)  # logit(y); 1 - y is exact for y >= 1/2
        tau = self.temperature.to(cdt)
        t = tau * x - self.logits.to(cdt)
        lp = tau.log() + F.logsigmoid(t) + F.logsigmoid(-t) - F.logsigmoid(x) - F.logsigmoid(-x)
        return lp.to(out_dtype)


class RelaxedBernoulliStraightThrough(RelaxedBernoulli):
    r"""Straight-through relaxed Bernoulli: hard 0/1 ``rsample`` with the relaxed gradient.

    .. math::
        b = \mathbb{1}[\ell + L > 0] \sim \mathrm{Bernoulli}(\sigma(\ell)), \qquad
        \nabla b := \nabla\, \sigma\!\left(\frac{\ell + L}{\tau}\right)

    The forward value is exactly 0.0 or 1.0 in every dtype; with the same ``generator`` state
    it uses the same noise as :meth:`RelaxedBernoulli.rsample`, whose gradient it carries.
    ``log_prob`` is, by default (``log_prob_of="hard"``), the Bernoulli log-mass
    :math:`b\log\sigma(\ell) + (1-b)\log\sigma(-\ell)` of the hard value; ``"relaxed"`` is
    pyro's convention, the binary Concrete density of the soft sample behind it (see
    :class:`RelaxedOneHotCategoricalStraightThrough`). The support is :math:`\{0, 1\}`.

    Args:
        temperature, probs, logits, validate_args: as :class:`RelaxedBernoulli`.
        log_prob_of: ``"hard"`` or ``"relaxed"`` (keyword-only).

    Example:
        >>> y = RelaxedBernoulliStraightThrough(1.0, logits=torch.zeros(4)).rsample()
        >>> bool(((y == 0) | (y == 1)).all())
        True
    """

    support: constraints.Constraint = constraints.boolean

    def __init__(
        self,
        temperature: Tensor | float,
        probs: Tensor | float | None = None,
        logits: Tensor | float | None = None,
        validate_args: bool | None = None,
        *,
        log_prob_of: str = "hard",
    ) -> None:
        self.log_prob_of = _check_log_prob_of(log_prob_of)
        super().__init__(temperature, probs, logits, validate_args)

    def expand(
        self, batch_shape: _Size, _instance: RelaxedBernoulli | None = None
    ) -> RelaxedBernoulli:
        new = self._get_checked_instance(RelaxedBernoulliStraightThrough, _instance)
        new.log_prob_of = self.log_prob_of
        return super().expand(batch_shape, _instance=new)

    def rsample(
        self, sample_shape: _Size = _EMPTY, *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Hard 0/1 sample, shape ``sample_shape + batch_shape``, with the soft gradient."""
        x, dtype = self._perturbed(sample_shape, generator)
        soft = torch.sigmoid(x).to(dtype)
        hard = straight_through((x.detach() > 0).to(dtype), soft)  # the sign of logits + L
        if self.log_prob_of == "relaxed":
            _RELAXED_OF[hard] = soft
        return hard

    def log_prob(self, value: Tensor) -> Tensor:
        """Bernoulli log-mass :math:`b\\log\\sigma(\\ell) + (1-b)\\log\\sigma(-\\ell)` of
        ``value`` (``log_prob_of="hard"``), or the Concrete density of the soft sample behind it
        (``"relaxed"``, pyro's)."""
        if self._validate_args:
            self._validate_sample(value)
        if self.log_prob_of == "relaxed":
            return self._concrete_log_prob(_RELAXED_OF.get(value, value))
        out_dtype = torch.promote_types(value.dtype, self.logits.dtype)
        cdt = compute_dtype(out_dtype)
        b = value.to(cdt)
        lg = self.logits.to(cdt)
        return (b * F.logsigmoid(lg) + (1 - b) * F.logsigmoid(-lg)).to(out_dtype)
